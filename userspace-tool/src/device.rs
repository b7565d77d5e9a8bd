//! The device node `/dev/tcplog` and its ioctls.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tcplog_ctl::{self as abi, Pod};

use crate::error::{Error, Result};

/// An open descriptor of the tcplog device.
pub struct Device {
    file: File,
    path: PathBuf,
}

/// How to open the device: read-only for reading records and querying, read-write for commands
/// that change the module's state (the module insists on it, like ipl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Device {
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotLoaded {
                    path: path.to_owned(),
                },
                io::ErrorKind::PermissionDenied => Error::Permission {
                    path: path.to_owned(),
                },
                _ => Error::file("cannot open", path, e),
            })?;
        Ok(Device {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens the device and fails unless the module speaks this tool's ABI version.
    pub fn open_checked(path: &Path, access: Access) -> Result<Self> {
        let dev = Device::open(path, access)?;
        let module = dev.abi_version()?;
        if module != abi::ABI_VERSION {
            return Err(Error::AbiMismatch {
                module,
                tool: abi::ABI_VERSION,
            });
        }
        Ok(dev)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, what: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission {
                path: self.path.clone(),
            },
            _ => Error::Device {
                op: what,
                path: self.path.clone(),
                source: e,
            },
        }
    }

    /// Issues an ioctl whose argument is a pointer to `T` (or none, for `_IO` commands).
    fn ioctl<T>(&self, cmd: u32, what: &'static str, arg: *mut T) -> Result<()> {
        // SAFETY: `arg` is null (for commands without an argument) or points to a live, aligned
        // `T`, and each command transfers exactly `size_of::<T>()` bytes (encoded in `cmd`).
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as _, arg) };
        if rc < 0 {
            return Err(self.fail(what, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn get<T: Pod + Default>(&self, cmd: u32, what: &'static str) -> Result<T> {
        let mut v = T::default();
        self.ioctl(cmd, what, &mut v)?;
        Ok(v)
    }

    /// The ABI version the loaded module speaks.
    pub fn abi_version(&self) -> Result<u32> {
        self.get(abi::TCPLOG_IOC_VERSION, "TCPLOG_IOC_VERSION")
    }

    pub fn status(&self) -> Result<abi::Status> {
        self.get(abi::TCPLOG_IOC_STATUS, "TCPLOG_IOC_STATUS")
    }

    pub fn set_enabled(&self, on: bool) -> Result<()> {
        let (cmd, what) = if on {
            (abi::TCPLOG_IOC_ENABLE, "TCPLOG_IOC_ENABLE")
        } else {
            (abi::TCPLOG_IOC_DISABLE, "TCPLOG_IOC_DISABLE")
        };
        self.ioctl(cmd, what, std::ptr::null_mut::<u8>())
    }

    /// Discards every buffered record; returns the bytes discarded.
    pub fn flush(&self) -> Result<u64> {
        self.get(abi::TCPLOG_IOC_FLUSH, "TCPLOG_IOC_FLUSH")
    }

    pub fn config(&self) -> Result<abi::Config> {
        self.get(abi::TCPLOG_IOC_GET_CONFIG, "TCPLOG_IOC_GET_CONFIG")
    }

    pub fn set_config(&self, cfg: &abi::Config) -> Result<()> {
        let mut c = *cfg;
        self.ioctl(abi::TCPLOG_IOC_SET_CONFIG, "TCPLOG_IOC_SET_CONFIG", &mut c)
    }

    pub fn filter(&self) -> Result<abi::Filter> {
        self.get(abi::TCPLOG_IOC_GET_FILTER, "TCPLOG_IOC_GET_FILTER")
    }

    pub fn set_filter(&self, f: &abi::Filter) -> Result<()> {
        let mut f = *f;
        self.ioctl(abi::TCPLOG_IOC_SET_FILTER, "TCPLOG_IOC_SET_FILTER", &mut f)
    }

    pub fn rules(&self) -> Result<abi::RuleSet> {
        self.get(abi::TCPLOG_IOC_GET_RULES, "TCPLOG_IOC_GET_RULES")
    }

    pub fn rule_stats(&self) -> Result<abi::RuleStats> {
        self.get(abi::TCPLOG_IOC_GET_RULE_STATS, "TCPLOG_IOC_GET_RULE_STATS")
    }

    pub fn set_rules(&self, set: &abi::RuleSet) -> Result<()> {
        let mut s = *set;
        self.ioctl(abi::TCPLOG_IOC_SET_RULES, "TCPLOG_IOC_SET_RULES", &mut s)
    }

    pub fn mark(&self, value: u64, count: u32) -> Result<()> {
        let mut m = abi::Mark {
            value,
            count,
            _pad: 0,
        };
        self.ioctl(abi::TCPLOG_IOC_MARK, "TCPLOG_IOC_MARK", &mut m)
    }

    /// Skips what is buffered: later reads return only new records.
    pub fn seek_end(&self) -> Result<()> {
        self.ioctl(
            abi::TCPLOG_IOC_SEEK_END,
            "TCPLOG_IOC_SEEK_END",
            std::ptr::null_mut::<u8>(),
        )
    }

    /// Reads whole records without blocking; `Ok(0)` when nothing is buffered for us.
    pub fn read_records(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self.file.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(self.fail("read", e)),
        }
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
