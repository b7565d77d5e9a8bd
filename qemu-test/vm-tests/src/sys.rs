//! Thin helpers over the system: commands, the device, errnos, other users.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Where the init script puts the module and the tool inside the VM.
pub const MODULE_PATH: &str = "/lib/tcplog/tcplog.ko";
pub const TOOL: &str = "/usr/bin/tcplog";
pub const DEVICE: &str = tcplog_ctl::DEVICE_PATH;

/// An unprivileged uid and gid (`nobody`).
pub const NOBODY: u32 = 65534;

/// Runs a command to completion, capturing its output.
pub fn run(prog: &str, args: &[&str]) -> Result<Output, String> {
    Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))
}

/// Runs a command and fails unless it exits 0; returns its stdout.
pub fn run_ok(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = run(prog, args)?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {} exited with {}: {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command as an unprivileged user with no capabilities (std drops the supplementary
/// groups when root sets a uid).
pub fn run_as_nobody(prog: &str, args: &[&str]) -> Result<Output, String> {
    Command::new(prog)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .map_err(|e| format!("cannot run {prog} as nobody: {e}"))
}

pub fn open_device(write: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(write).open(DEVICE)
}

/// Issues an ioctl with a pointer argument; returns the errno on failure.
pub fn ioctl_ptr<T>(f: &File, cmd: u32, arg: *mut T) -> Result<libc::c_int, i32> {
    // SAFETY: callers pass a pointer to a live `T` whose size is the one encoded in `cmd`, or a
    // deliberately bad pointer that the kernel must reject with EFAULT without touching memory.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, arg) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

/// `ioctl(fd, cmd, arg)` on a raw descriptor; `Err(errno)` on failure.
pub fn ioctl_raw<T>(fd: i32, cmd: u32, arg: *mut T) -> Result<libc::c_int, i32> {
    // SAFETY: As for `ioctl_ptr`; `fd` is a descriptor the caller owns.
    let rc = unsafe { libc::ioctl(fd, cmd as _, arg) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The symbolic name of an errno, for readable failure messages.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

/// The kernel log so far.
pub fn dmesg() -> String {
    run("dmesg", &[])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Is the module loaded (listed in /proc/modules)?
pub fn module_loaded() -> bool {
    std::fs::read_to_string("/proc/modules")
        .map(|m| m.lines().any(|l| l.starts_with("tcplog ")))
        .unwrap_or(false)
}

pub fn insmod(params: &[&str]) -> Result<(), String> {
    let mut args = vec![MODULE_PATH];
    args.extend_from_slice(params);
    run_ok("insmod", &args).map(|_| ())
}

pub fn rmmod() -> Result<(), String> {
    run_ok("rmmod", &["tcplog"]).map(|_| ())
}

/// Loads the module with its defaults unless it is loaded (for suites run on their own).
pub fn ensure_loaded() {
    if !module_loaded() {
        if let Err(e) = insmod(&[]) {
            println!("#    could not load the module: {e}");
        }
    }
}
