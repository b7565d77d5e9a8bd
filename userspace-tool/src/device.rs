//! The device node `/dev/tcplog` and its ioctls.
//!
//! Each ioctl the tool issues is a typed constant ([`ReadCmd`], [`WriteCmd`], [`BareCmd`]) whose
//! argument type is checked against the size and direction the command number encodes when the
//! constant is made, at compile time; the one `unsafe` call, in [`Device::ioctl`], checks the same
//! again before it runs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tcplog_ctl::{self as abi, Pod};

use crate::error::{Error, Result};

/// An `_IOR` command: the module fills a `T`. Made only by [`ReadCmd::new`], which checks the
/// pairing.
#[derive(Clone, Copy)]
struct ReadCmd<T> {
    nr: u32,
    name: &'static str,
    arg: PhantomData<fn() -> T>,
}

/// An `_IOW` command: the module reads a `T`.
#[derive(Clone, Copy)]
struct WriteCmd<T> {
    nr: u32,
    name: &'static str,
    arg: PhantomData<fn(T)>,
}

/// An `_IOWR` command: the module reads a `T` and writes it back changed.
#[derive(Clone, Copy)]
struct ReadWriteCmd<T> {
    nr: u32,
    name: &'static str,
    arg: PhantomData<fn(T) -> T>,
}

impl<T: Pod> ReadWriteCmd<T> {
    /// Fails (at compile time, for a constant) unless `nr` is `_IOWR` of a `T`.
    const fn new(nr: u32, name: &'static str) -> Self {
        assert!(
            abi::ioc_dir(nr) == abi::IOC_READ | abi::IOC_WRITE,
            "not an _IOWR command"
        );
        assert!(
            abi::ioc_size(nr) == size_of::<T>(),
            "the command's size is not the type's"
        );
        ReadWriteCmd {
            nr,
            name,
            arg: PhantomData,
        }
    }
}

/// An `_IO` command: no argument.
#[derive(Clone, Copy)]
struct BareCmd {
    nr: u32,
    name: &'static str,
}

impl<T: Pod> ReadCmd<T> {
    /// Fails (at compile time, for a constant) unless `nr` is `_IOR` of a `T`.
    const fn new(nr: u32, name: &'static str) -> Self {
        assert!(abi::ioc_dir(nr) == abi::IOC_READ, "not an _IOR command");
        assert!(
            abi::ioc_size(nr) == size_of::<T>(),
            "the command's size is not the type's"
        );
        ReadCmd {
            nr,
            name,
            arg: PhantomData,
        }
    }
}

impl<T: Pod> WriteCmd<T> {
    /// Fails (at compile time, for a constant) unless `nr` is `_IOW` of a `T`.
    const fn new(nr: u32, name: &'static str) -> Self {
        assert!(abi::ioc_dir(nr) == abi::IOC_WRITE, "not an _IOW command");
        assert!(
            abi::ioc_size(nr) == size_of::<T>(),
            "the command's size is not the type's"
        );
        WriteCmd {
            nr,
            name,
            arg: PhantomData,
        }
    }
}

impl BareCmd {
    /// Fails (at compile time, for a constant) unless `nr` is `_IO`.
    const fn new(nr: u32, name: &'static str) -> Self {
        assert!(
            abi::ioc_dir(nr) == abi::IOC_NONE && abi::ioc_size(nr) == 0,
            "not an _IO command"
        );
        BareCmd { nr, name }
    }
}

// Every command the tool issues, with the type of its argument: a wrong pairing does not compile.
const VERSION: ReadCmd<u32> = ReadCmd::new(abi::TCPLOG_IOC_VERSION, "TCPLOG_IOC_VERSION");
const ENABLE: BareCmd = BareCmd::new(abi::TCPLOG_IOC_ENABLE, "TCPLOG_IOC_ENABLE");
const DISABLE: BareCmd = BareCmd::new(abi::TCPLOG_IOC_DISABLE, "TCPLOG_IOC_DISABLE");
const STATUS: ReadCmd<abi::Status> = ReadCmd::new(abi::TCPLOG_IOC_STATUS, "TCPLOG_IOC_STATUS");
const FLUSH: ReadCmd<u64> = ReadCmd::new(abi::TCPLOG_IOC_FLUSH, "TCPLOG_IOC_FLUSH");
const GET_CONFIG: ReadCmd<abi::Config> =
    ReadCmd::new(abi::TCPLOG_IOC_GET_CONFIG, "TCPLOG_IOC_GET_CONFIG");
const SET_CONFIG: WriteCmd<abi::Config> =
    WriteCmd::new(abi::TCPLOG_IOC_SET_CONFIG, "TCPLOG_IOC_SET_CONFIG");
const SEEK_END: BareCmd = BareCmd::new(abi::TCPLOG_IOC_SEEK_END, "TCPLOG_IOC_SEEK_END");
const MARK: WriteCmd<abi::Mark> = WriteCmd::new(abi::TCPLOG_IOC_MARK, "TCPLOG_IOC_MARK");
const GET_CONNS: ReadWriteCmd<abi::ConnQuery> =
    ReadWriteCmd::new(abi::TCPLOG_IOC_GET_CONNS, "TCPLOG_IOC_GET_CONNS");
const SET_FILTER: WriteCmd<abi::Filter> =
    WriteCmd::new(abi::TCPLOG_IOC_SET_FILTER, "TCPLOG_IOC_SET_FILTER");
const GET_FILTER: ReadCmd<abi::Filter> =
    ReadCmd::new(abi::TCPLOG_IOC_GET_FILTER, "TCPLOG_IOC_GET_FILTER");
const SET_RULES: WriteCmd<abi::RuleSet> =
    WriteCmd::new(abi::TCPLOG_IOC_SET_RULES, "TCPLOG_IOC_SET_RULES");
const GET_RULES: ReadCmd<abi::RuleSet> =
    ReadCmd::new(abi::TCPLOG_IOC_GET_RULES, "TCPLOG_IOC_GET_RULES");
const GET_RULE_STATS: ReadCmd<abi::RuleStats> =
    ReadCmd::new(abi::TCPLOG_IOC_GET_RULE_STATS, "TCPLOG_IOC_GET_RULE_STATS");

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

    /// Issues the ioctl `nr` with `arg`: a `T` the kernel reads or fills, or nothing for an `_IO`
    /// command. Whatever the caller, the pairing is checked before anything is issued: the size
    /// the number encodes must be `T`'s (0 without an argument), and its direction bits must say
    /// that data moves exactly when there is an argument. The typed commands below
    /// ([`ReadCmd`], [`WriteCmd`], [`BareCmd`]) are checked the same way when they are made, at
    /// compile time, so this check never fails for them.
    fn ioctl<T: Pod>(&self, nr: u32, name: &'static str, arg: Option<&mut T>) -> Result<()> {
        let (moves_data, size) = match arg {
            Some(_) => (true, size_of::<T>()),
            None => (false, 0),
        };
        assert!(
            abi::ioc_size(nr) == size && (abi::ioc_dir(nr) != abi::IOC_NONE) == moves_data,
            "{name} ({nr:#x}) does not take {size} bytes"
        );
        let ptr = arg.map_or(std::ptr::null_mut(), |a| {
            (a as *mut T).cast::<libc::c_void>()
        });
        // SAFETY: `ptr` is null for a command that moves no data, or else points to a live `T`
        // that we borrow exclusively for the call. By `_IOC`'s encoding, which the module follows
        // (ctl defines both sides' numbers), the kernel reads and writes at most `ioc_size(nr)`
        // bytes there, and we just checked that this is `size_of::<T>()`. Every byte of a `Pod`
        // is initialised, so the kernel reads nothing undefined, and any bytes it writes make a
        // valid `T`.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), nr as _, ptr) };
        if rc < 0 {
            return Err(self.fail(name, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Issues an `_IOR` command: returns the `T` the module fills.
    fn get<T: Pod + Default>(&self, cmd: ReadCmd<T>) -> Result<T> {
        let mut v = T::default();
        self.ioctl(cmd.nr, cmd.name, Some(&mut v))?;
        Ok(v)
    }

    /// Issues an `_IOW` command with `arg`.
    fn set<T: Pod>(&self, cmd: WriteCmd<T>, arg: &T) -> Result<()> {
        let mut v = *arg;
        self.ioctl(cmd.nr, cmd.name, Some(&mut v))
    }

    /// Issues an `_IO` command.
    fn call(&self, cmd: BareCmd) -> Result<()> {
        self.ioctl::<u32>(cmd.nr, cmd.name, None)
    }

    /// The ABI version the loaded module speaks.
    pub fn abi_version(&self) -> Result<u32> {
        self.get(VERSION)
    }

    pub fn status(&self) -> Result<abi::Status> {
        self.get(STATUS)
    }

    pub fn set_enabled(&self, on: bool) -> Result<()> {
        self.call(if on { ENABLE } else { DISABLE })
    }

    /// Discards every buffered record; returns the bytes discarded.
    pub fn flush(&self) -> Result<u64> {
        self.get(FLUSH)
    }

    pub fn config(&self) -> Result<abi::Config> {
        self.get(GET_CONFIG)
    }

    pub fn set_config(&self, cfg: &abi::Config) -> Result<()> {
        self.set(SET_CONFIG, cfg)
    }

    pub fn filter(&self) -> Result<abi::Filter> {
        self.get(GET_FILTER)
    }

    pub fn set_filter(&self, f: &abi::Filter) -> Result<()> {
        self.set(SET_FILTER, f)
    }

    pub fn rules(&self) -> Result<abi::RuleSet> {
        self.get(GET_RULES)
    }

    pub fn rule_stats(&self) -> Result<abi::RuleStats> {
        self.get(GET_RULE_STATS)
    }

    pub fn set_rules(&self, set: &abi::RuleSet) -> Result<()> {
        self.set(SET_RULES, set)
    }

    pub fn mark(&self, value: u64, count: u32) -> Result<()> {
        let m = abi::Mark {
            value,
            count,
            _pad: 0,
        };
        self.set(MARK, &m)
    }

    /// The open TCP connections tracked now, all of them: asks again with more room while the
    /// module says it tracks more than fitted.
    pub fn conns(&self) -> Result<Vec<abi::InterimBody>> {
        let mut room = 256usize;
        loop {
            let mut buf = vec![abi::InterimBody::default(); room];
            let mut q = abi::ConnQuery {
                buf: buf.as_mut_ptr() as u64,
                max: room as u32,
                ..abi::ConnQuery::default()
            };
            // The module writes at most `max` entries at `buf`, which has room for `room` of
            // them and lives across the call; any bytes make valid entries (Pod).
            self.ioctl(GET_CONNS.nr, GET_CONNS.name, Some(&mut q))?;
            let written = (q.written as usize).min(room);
            if q.tracked as usize <= written || room >= 1 << 21 {
                buf.truncate(written);
                return Ok(buf);
            }
            room = (q.tracked as usize + 64).next_power_of_two();
        }
    }

    /// Skips what is buffered: later reads return only new records.
    pub fn seek_end(&self) -> Result<()> {
        self.call(SEEK_END)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor that is not the device: every ioctl fails with ENOTTY, but the checks before
    /// it run.
    fn not_the_device() -> Device {
        Device {
            file: File::open("/dev/null").unwrap(),
            path: "/dev/null".into(),
        }
    }

    #[test]
    fn commands_reach_the_kernel_and_fail_as_device_errors() {
        let d = not_the_device();
        let e = d.seek_end().unwrap_err();
        assert!(
            matches!(&e, Error::Device { op: "TCPLOG_IOC_SEEK_END", source, .. } if source.raw_os_error() == Some(libc::ENOTTY)),
            "{e:?}"
        );
        assert!(matches!(
            d.status(),
            Err(Error::Device {
                op: "TCPLOG_IOC_STATUS",
                ..
            })
        ));
        assert!(matches!(
            d.mark(1, 1),
            Err(Error::Device {
                op: "TCPLOG_IOC_MARK",
                ..
            })
        ));
    }

    #[test]
    #[should_panic(expected = "the command's size is not the type's")]
    fn a_command_of_another_size_is_refused() {
        ReadCmd::<u64>::new(abi::TCPLOG_IOC_VERSION, "TCPLOG_IOC_VERSION");
    }

    #[test]
    #[should_panic(expected = "not an _IOW command")]
    fn a_command_of_another_direction_is_refused() {
        WriteCmd::<abi::Config>::new(abi::TCPLOG_IOC_GET_CONFIG, "TCPLOG_IOC_GET_CONFIG");
    }

    #[test]
    #[should_panic(expected = "not an _IOWR command")]
    fn a_read_command_is_not_read_write() {
        ReadWriteCmd::<abi::Config>::new(abi::TCPLOG_IOC_GET_CONFIG, "TCPLOG_IOC_GET_CONFIG");
    }

    #[test]
    fn listing_connections_reaches_the_kernel() {
        assert!(matches!(
            not_the_device().conns(),
            Err(Error::Device {
                op: "TCPLOG_IOC_GET_CONNS",
                ..
            })
        ));
    }

    #[test]
    #[should_panic(expected = "not an _IO command")]
    fn a_command_with_an_argument_is_not_bare() {
        BareCmd::new(abi::TCPLOG_IOC_FLUSH, "TCPLOG_IOC_FLUSH");
    }

    #[test]
    #[should_panic(expected = "does not take 8 bytes")]
    fn the_unsafe_call_checks_the_pairing_itself() {
        let mut v = 0u64;
        let _ = not_the_device().ioctl(abi::TCPLOG_IOC_VERSION, "TCPLOG_IOC_VERSION", Some(&mut v));
    }

    #[test]
    #[should_panic(expected = "does not take 0 bytes")]
    fn no_argument_for_a_command_that_moves_data() {
        let _ = not_the_device().ioctl::<u64>(abi::TCPLOG_IOC_FLUSH, "TCPLOG_IOC_FLUSH", None);
    }
}
