//! Errors of the tool and the exit codes they map to.

use std::io;

use thiserror::Error;

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
        "{path} does not exist: the tcplog module is not loaded\n\
         load it with `insmod tcplog.ko` (or `modprobe tcplog` if it is installed)"
    )]
    NotLoaded { path: String },

    #[error("permission denied opening {path}: root or CAP_NET_ADMIN is needed")]
    Permission { path: String },

    #[error(
        "ABI version mismatch: the module speaks version {module}, this tool speaks version {tool}\n\
         rebuild the tool and the module from the same source"
    )]
    AbiMismatch { module: u32, tool: u32 },

    /// A value the command line accepted but that makes no sense (a bad filter criterion).
    #[error("{0}")]
    BadInput(String),

    /// A log file that cannot be read at all (missing, not a log file, another ABI version).
    #[error("{0}")]
    BadFile(String),

    /// Log files that were read, but with damaged or cut-short parts.
    #[error("{0}")]
    Damaged(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotLoaded { .. } => exit::NOT_LOADED,
            Error::Permission { .. } => exit::PERMISSION,
            Error::AbiMismatch { .. } => exit::ABI_MISMATCH,
            Error::BadInput(_) => exit::USAGE,
            Error::BadFile(_) => exit::BAD_FILE,
            Error::Damaged(_) => exit::DAMAGED_FILE,
            Error::Io { .. } => exit::FAILURE,
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
}
