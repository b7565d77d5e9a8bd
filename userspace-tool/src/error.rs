//! Errors of the tool and the exit codes they map to.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::escape;
use crate::logfile::HeaderError;

/// Exit codes, documented in README.md.
pub mod exit {
    /// Any error not listed below.
    pub const FAILURE: i32 = 1;
    /// A bad command line: clap's own code, and ours for criteria it cannot check.
    pub const USAGE: i32 = 2;
    /// The module is not loaded: the device node does not exist.
    pub const NOT_LOADED: i32 = 3;
    /// Permission denied: root or CAP_NET_ADMIN is needed.
    pub const PERMISSION: i32 = 4;
    /// The module speaks another ABI version than the tool.
    pub const ABI_MISMATCH: i32 = 5;
    /// A log file cannot be read (missing, not a log file, another ABI version).
    pub const BAD_FILE: i32 = 6;
    /// A log file was read, but parts of it were damaged or cut short (the good records were
    /// printed).
    pub const DAMAGED_FILE: i32 = 7;
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "{} does not exist: the tcplog module is not loaded\n\
         load it with `insmod tcplog.ko` (or `modprobe tcplog` if it is installed)",
        escape::path(.path)
    )]
    NotLoaded { path: PathBuf },

    #[error(
        "permission denied opening {}: root or CAP_NET_ADMIN is needed",
        escape::path(.path)
    )]
    Permission { path: PathBuf },

    #[error(
        "ABI version mismatch: the module speaks version {module}, this tool speaks version {tool}\n\
         rebuild the tool and the module from the same source"
    )]
    AbiMismatch { module: u32, tool: u32 },

    /// A value the command line accepted but that makes no sense (a bad filter criterion or
    /// rule). `problem` is the parser's message, which quotes the value (from a rules file, say):
    /// it is shown escaped.
    #[error("{}", escape::text(.problem.as_bytes()))]
    BadInput { problem: String },

    /// A log file that cannot be read at all.
    #[error("{}: {problem}", escape::path(.path))]
    BadFile { path: PathBuf, problem: FileProblem },

    /// Log files that were read, but with damaged or cut-short parts.
    #[error("{} damaged; every record that could be read was shown", paths_list(.paths))]
    Damaged { paths: Vec<PathBuf> },

    /// An ioctl or a read on the device failed (but for permission, which is [`Error::Permission`]).
    #[error("{op} on {}: {source}", escape::path(.path))]
    Device {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Any other I/O error: what the tool was doing, and to which file, if to a file.
    #[error("{action}{}: {source}", .path.as_deref().map(|p| format!(" {}", escape::path(p))).unwrap_or_default())]
    Io {
        action: &'static str,
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
}

/// Why a log file cannot be read.
#[derive(Debug, Error)]
pub enum FileProblem {
    #[error("no such file")]
    Missing,
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// Its records are of another ABI version; the header says where they were written.
    #[error(
        "its records are of ABI version {file} (written on {}, kernel {}), this tool reads version {tool}",
        escape::text(.host),
        escape::text(.kernel)
    )]
    AbiVersion {
        file: u32,
        tool: u32,
        host: Vec<u8>,
        kernel: Vec<u8>,
    },
}

fn paths_list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| escape::path(p)).collect();
    names.join(", ")
}

impl Error {
    /// An I/O error not about a file: `action` says what the tool was doing ("writing records").
    pub fn io(action: &'static str, source: io::Error) -> Self {
        Error::Io {
            action,
            path: None,
            source,
        }
    }

    /// An I/O error about a file: `action` says what the tool was doing ("cannot create").
    pub fn file(action: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            action,
            path: Some(path.to_owned()),
            source,
        }
    }

    pub fn bad_input(problem: String) -> Self {
        Error::BadInput { problem }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotLoaded { .. } => exit::NOT_LOADED,
            Error::Permission { .. } => exit::PERMISSION,
            Error::AbiMismatch { .. } => exit::ABI_MISMATCH,
            Error::BadInput { .. } => exit::USAGE,
            Error::BadFile { .. } => exit::BAD_FILE,
            Error::Damaged { .. } => exit::DAMAGED_FILE,
            Error::Device { .. } | Error::Io { .. } => exit::FAILURE,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::NotLoaded {
            path: "/dev/tcplog".into(),
        };
        assert_eq!(e.exit_code(), exit::NOT_LOADED);
        assert!(e.to_string().contains("insmod tcplog.ko"));

        let e = Error::Permission {
            path: "/dev/tcplog".into(),
        };
        assert_eq!(e.exit_code(), exit::PERMISSION);
        assert!(e.to_string().contains("root or CAP_NET_ADMIN"));

        let e = Error::AbiMismatch { module: 7, tool: 1 };
        assert_eq!(e.exit_code(), exit::ABI_MISMATCH);
        let s = e.to_string();
        assert!(s.contains("version 7") && s.contains("version 1"), "{s}");
    }

    #[test]
    fn file_names_and_input_are_shown_escaped() {
        use std::os::unix::ffi::OsStringExt;
        let p = PathBuf::from(std::ffi::OsString::from_vec(
            b"/tmp/\x1b[2J\nx\xff".to_vec(),
        ));
        let shown = r"/tmp/\x1b[2J\nx\xff";
        let one_line = [
            Error::Permission { path: p.clone() },
            Error::BadFile {
                path: p.clone(),
                problem: FileProblem::Missing,
            },
            Error::Damaged {
                paths: vec!["a.tlog".into(), p.clone()],
            },
            Error::file("writing", &p, io::Error::other("disk full")),
            Error::Device {
                op: "read",
                path: p.clone(),
                source: io::Error::other("gone"),
            },
        ];
        for e in one_line {
            let s = e.to_string();
            assert!(s.contains(shown), "{s}");
            assert!(!s.chars().any(escape::is_unsafe), "{s:?}");
        }
        let s = Error::NotLoaded { path: p }.to_string();
        assert!(s.starts_with(&format!("{shown} does not exist")), "{s}");
        let s = Error::bad_input("rule 1 (count \u{1b}[2J): unknown word".into()).to_string();
        assert_eq!(s, r"rule 1 (count \x1b[2J): unknown word");
    }
}
