//! The device node `/dev/tcplog` and its ioctls.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use tcplog_ctl as abi;

use crate::error::{Error, Result};

/// An open descriptor of the tcplog device.
pub struct Device {
    file: File,
    path: String,
}

/// How to open the device: read-only for reading records and querying, read-write for commands
/// that change the module's state (the module insists on it, like ipl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Device {
    pub fn open(path: &str, access: Access) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotLoaded {
                    path: path.to_owned(),
                },
                io::ErrorKind::PermissionDenied => Error::Permission {
                    path: path.to_owned(),
                },
                _ => Error::io(format!("cannot open {path}"), e),
            })?;
        Ok(Device {
            file,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Issues an ioctl whose argument is a pointer to `T`.
    fn ioctl_ptr<T>(&self, cmd: u32, what: &str, arg: *mut T) -> Result<libc::c_int> {
        // SAFETY: `arg` points to a live, properly aligned `T`, and every command of the ABI that
        // takes a pointer transfers exactly `size_of::<T>()` bytes (encoded in `cmd`).
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as _, arg) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission {
                    path: self.path.clone(),
                },
                _ => Error::io(format!("{what} on {}", self.path), e),
            });
        }
        Ok(rc)
    }

    /// The ABI version the loaded module speaks.
    pub fn abi_version(&self) -> Result<u32> {
        let mut v: u32 = 0;
        self.ioctl_ptr(abi::TCPLOG_IOC_VERSION, "TCPLOG_IOC_VERSION", &mut v)?;
        Ok(v)
    }
}
