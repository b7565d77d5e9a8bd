//! A minimal test harness: one line per test, a closing `N passed, N failed`.
//!
//! Results go to stdout (the VM's console) and, when present, to the second serial port, which
//! the host reads so that kernel messages on the console cannot garble them.

use std::fs::OpenOptions;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};

/// What a test returns: `Err` carries the reason it failed.
pub type TestResult = Result<(), String>;

pub struct Harness {
    passed: u32,
    failed: u32,
    filter: Option<String>,
    report: Option<std::fs::File>,
}

impl Harness {
    pub fn new(filter: Option<String>, report_path: &str) -> Self {
        let report = OpenOptions::new().write(true).open(report_path).ok();
        Harness {
            passed: 0,
            failed: 0,
            filter,
            report,
        }
    }

    fn emit(&mut self, line: &str) {
        println!("{line}");
        if let Some(r) = self.report.as_mut() {
            let _ = writeln!(r, "{line}");
        }
    }

    /// Runs one test unless the filter excludes it. A panic counts as a failure.
    pub fn run(&mut self, name: &str, test: impl FnOnce() -> TestResult) {
        if let Some(f) = &self.filter {
            // A filter cannot hold spaces (it travels on the kernel command line): `_` stands
            // for a space.
            if !name.contains(f.as_str()) && !name.contains(&f.replace('_', " ")) {
                return;
            }
        }
        let res = panic::catch_unwind(AssertUnwindSafe(test))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))));
        match res {
            Ok(()) => {
                self.passed += 1;
                self.emit(&format!("ok   {name}"));
            }
            Err(why) => {
                self.failed += 1;
                self.emit(&format!("FAIL {name}: {why}"));
            }
        }
    }

    /// Prints a line that is not a result (a section title, a benchmark number).
    pub fn note(&mut self, line: &str) {
        self.emit(&format!("#    {line}"));
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    pub fn finish(&mut self) {
        let line = format!("{} passed, {} failed", self.passed, self.failed);
        self.emit(&line);
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Fails the test with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Fails the test unless the two values are equal, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!(
                "{} == {}: left {:?}, right {:?}",
                stringify!($left),
                stringify!($right),
                l,
                r
            ));
        }
    }};
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: left {:?}, right {:?}", format!($($fmt)+), l, r));
        }
    }};
}
