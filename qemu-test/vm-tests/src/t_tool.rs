//! The tcplog tool against the real device: control commands, dump, follow, errors.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dev::Dev;
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "tool: mark then dump --json shows the records",
        mark_and_dump,
    );
    h.run(
        "tool: disable and enable change status and are audited",
        enable_disable,
    );
    h.run("tool: flush prints the bytes flushed", flush);
    h.run(
        "tool: follow --json prints records as they arrive and totals on SIGINT",
        follow,
    );
    h.run(
        "tool: follow shows lost records and their total",
        follow_lost,
    );
    h.run(
        "tool: config sets snap_len; out-of-range values are refused",
        config,
    );
    h.run("tool: dump into a closed pipe exits quietly", broken_pipe);
    h.run(
        "tool: non-root enable says permission denied, exit 4",
        nobody_enable,
    );
}

fn tool(args: &[&str]) -> Result<String, String> {
    sys::run_ok(sys::TOOL, args)
}

fn json_lines(s: &str) -> Result<Vec<Value>, String> {
    s.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn mark_and_dump() -> TestResult {
    Dev::rw()?.flush()?;
    tool(&["mark", "--value", "55", "--count", "3"])?;
    let recs = json_lines(&tool(&["dump", "--json"])?)?;
    ensure_eq!(recs.len(), 4, "the flush's CONFIG record and 3 marks");
    ensure_eq!(recs[0]["type"], "config");
    ensure_eq!(recs[0]["item"], "flush");
    for (i, r) in recs[1..].iter().enumerate() {
        ensure_eq!(r["type"], "mark");
        ensure_eq!(r["value"], 55);
        ensure_eq!(r["index"], i as u64);
        ensure_eq!(r["comm"], "tcplog");
        ensure_eq!(r["seq"], recs[0]["seq"].as_u64().unwrap() + 1 + i as u64);
        let time = r["time"].as_str().ok_or("no time")?;
        ensure!(
            time.ends_with('Z') && time.len() == 30,
            "time {time:?} is not RFC 3339 with ns"
        );
        ensure!(r["time_ns"].as_u64().is_some(), "no time_ns");
    }
    let text = tool(&["dump"])?;
    ensure_eq!(text.lines().count(), 4);
    ensure!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains(" mark    value 55 #0 by pid "),
        "{text}"
    );
    Ok(())
}

fn status_json() -> Result<Value, String> {
    serde_json::from_str(&tool(&["status", "--json"])?).map_err(|e| e.to_string())
}

fn enable_disable() -> TestResult {
    let d = Dev::open(false, true)?;
    d.seek_end()?;
    tool(&["disable"])?;
    ensure_eq!(status_json()?["enabled"], false);
    tool(&["enable"])?;
    ensure_eq!(status_json()?["enabled"], true);
    ensure_eq!(d.drain()?.len(), 2);
    let text = tool(&["status"])?;
    ensure!(text.contains("logging             enabled"), "{text}");
    Ok(())
}

fn flush() -> TestResult {
    tool(&["mark", "--count", "10"])?;
    let used = status_json()?["bytes_used"]
        .as_u64()
        .ok_or("no bytes_used")?;
    let out = tool(&["flush"])?;
    ensure_eq!(out.trim(), format!("flushed {used} bytes"));
    Ok(())
}

/// Sends a signal to a child process.
fn kill(pid: u32, sig: i32) {
    // SAFETY: Signalling our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

fn follow() -> TestResult {
    let mut child = Command::new(sys::TOOL)
        .args(["follow", "--json", "--new"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    tool(&["mark", "--value", "66", "--count", "2"])?;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        stdout.read_line(&mut l).map_err(|e| e.to_string())?;
        lines.push(l);
    }
    let latency = t0.elapsed();
    kill(child.id(), libc::SIGINT);
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    ensure!(status.success(), "follow exited with {status}: {err}");
    let recs = json_lines(&lines.concat())?;
    ensure_eq!(recs[0]["value"], 66);
    ensure_eq!(recs[1]["index"], 1);
    ensure!(
        err.contains("2 records, lost 0 records in total"),
        "stderr: {err}"
    );
    ensure!(
        latency < Duration::from_secs(5),
        "records took {latency:?} to show"
    );
    Ok(())
}

fn follow_lost() -> TestResult {
    let mut child = Command::new(sys::TOOL)
        .args(["follow", "--new"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    // Stopped, it cannot keep up: two full rings of marks overwrite what it has not read.
    kill(child.id(), libc::SIGSTOP);
    let ring = status_json()?["ring_size"].as_u64().ok_or("no ring_size")?;
    let n = ring * 2 / tcplog_ctl::MARK_RECORD_LEN as u64;
    let w = Dev::rw()?;
    let mut left = n;
    while left > 0 {
        let c = left.min(u64::from(tcplog_ctl::MAX_MARK_COUNT));
        w.mark(77, c as u32)?;
        left -= c;
    }
    let held = w.status()?.records_held;
    kill(child.id(), libc::SIGCONT);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    // Everything arrives: the LOST line and the records still held.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 1 << 16];
    while out.lines().count() < held as usize + 1 && Instant::now() < deadline {
        let k = stdout.read(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
    kill(child.id(), libc::SIGINT);
    child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    let lost = n - held;
    ensure!(
        out.lines()
            .next()
            .unwrap_or("")
            .contains(&format!("lost {lost} records")),
        "first line: {:?}",
        out.lines().next()
    );
    ensure!(
        err.contains(&format!("lost {lost} records in total")),
        "stderr: {err}"
    );
    Ok(())
}

fn config() -> TestResult {
    let out = tool(&["config", "--snap-len", "256"])?;
    ensure!(out.contains("snap_len            256"), "{out}");
    let out = sys::run(sys::TOOL, &["config", "--snap-len", "5000"])?;
    ensure_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("at most 4096"), "{err}");
    let v: Value = serde_json::from_str(&tool(&["config", "--json", "--snap-len", "128"])?)
        .map_err(|e| e.to_string())?;
    ensure_eq!(v["snap_len"], 128);
    Ok(())
}

fn broken_pipe() -> TestResult {
    tool(&["mark", "--count", "3000"])?;
    let mut child = Command::new(sys::TOOL)
        .arg("dump")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .map_err(|e| e.to_string())?;
    // The reader end is closed now.
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    ensure!(status.success(), "exit {status}");
    ensure!(err.is_empty(), "stderr: {err}");
    ensure!(!first.is_empty(), "no output at all");
    Ok(())
}

fn nobody_enable() -> TestResult {
    let out = sys::run_as_nobody(sys::TOOL, &["enable"])?;
    ensure_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("root or CAP_NET_ADMIN"), "{err}");
    Ok(())
}
