//! The module's own KUnit suites (`tcplog*`): on a kernel with KUnit they run when the module
//! loads, and their results stay in debugfs while it is loaded. Not run on a kernel without KUnit.

use std::path::Path;

use crate::harness::{Harness, TestResult};
use crate::sys;

const DEBUGFS: &str = "/sys/kernel/debug";
const KUNIT_DIR: &str = "/sys/kernel/debug/kunit";
/// The prefix of the module's suite names.
const SUITE_PREFIX: &str = "tcplog";

pub fn all(h: &mut Harness) {
    if !Path::new(KUNIT_DIR).is_dir() {
        // debugfs may not be mounted yet.
        let _ = sys::run("mount", &["-t", "debugfs", "debugfs", DEBUGFS]);
    }
    if !Path::new(KUNIT_DIR).is_dir() {
        h.note("this kernel has no KUnit: the module's KUnit suites are not checked");
        return;
    }
    // The suites run as the module loads: load it if no earlier test did (a filtered run).
    sys::ensure_loaded();
    h.run("kunit: every tcplog suite passed", || {
        suites_passed(KUNIT_DIR, SUITE_PREFIX)
    });
}

/// Reads the results of every suite in `dir` whose name starts with `prefix`; fails on a failed
/// case and when there is no such suite.
fn suites_passed(dir: &str, prefix: &str) -> TestResult {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no KUnit suite named {prefix}* in {dir}"));
    }
    let mut failures = Vec::new();
    for name in &names {
        let path = format!("{dir}/{name}/results");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        if let Err(why) = verdict(&text) {
            failures.push(format!("suite {name}: {why}\n{text}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Judges one suite's KTAP results (debugfs' `results` file): every case must have a result line
/// and none may be `not ok`. Returns the number of cases that passed or were skipped.
fn verdict(ktap: &str) -> Result<usize, String> {
    let mut cases = 0;
    let mut bad = Vec::new();
    for line in ktap.lines() {
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let l = line.trim_start();
        if l.starts_with("not ok ") {
            bad.push(l.to_owned());
        } else if indented && l.starts_with("ok ") {
            cases += 1;
        }
    }
    if !bad.is_empty() {
        return Err(format!("failed: {}", bad.join("; ")));
    }
    if cases == 0 {
        return Err("no test case reported a result".to_owned());
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::verdict;

    // The shape of debugfs' results file (lib/kunit/debugfs.c): a KTAP header, the suite's
    // subtest with each case's log and result, then the suite's own result line.
    const PASS: &str = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: tcplog_ring\n    1..2\n    ok 1 wraps\n        # skipped: not on this arch\n    ok 2 lost # SKIP not on this arch\nok 1 tcplog_ring\n";
    const FAIL: &str = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: tcplog_ring\n    1..2\n    ok 1 wraps\n    # lost: EXPECTATION FAILED at module/ring.rs:10\n    not ok 2 lost\nnot ok 1 tcplog_ring\n";
    const PARAM_FAIL: &str = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: tcplog_p\n    1..1\n        KTAP version 1\n        # Subtest: cases\n        ok 1 a\n        not ok 2 b\n    not ok 1 cases\nnot ok 1 tcplog_p\n";
    const EMPTY: &str = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: tcplog_x\n    1..0\nok 1 tcplog_x\n";

    #[test]
    fn passing_suite() {
        assert_eq!(verdict(PASS), Ok(2));
    }

    #[test]
    fn failed_case_fails() {
        let e = verdict(FAIL).unwrap_err();
        assert!(e.contains("not ok 2 lost"), "{e}");
        assert!(verdict(PARAM_FAIL).unwrap_err().contains("not ok 2 b"));
    }

    #[test]
    fn suite_without_results_fails() {
        assert!(verdict(EMPTY).is_err());
    }
}
