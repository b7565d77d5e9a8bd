//! Loading, the device node, the version ioctl, permissions, unloading, a clean kernel log.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tcplog_ctl as abi;

use crate::harness::{Harness, TestResult};
use crate::sys::{self, errno_name};
use crate::{ensure, ensure_eq};

pub fn load(h: &mut Harness) {
    h.run("insmod succeeds", || {
        sys::insmod(&[])?;
        ensure!(
            sys::module_loaded(),
            "tcplog is not in /proc/modules after insmod"
        );
        Ok(())
    });
}

pub fn device(h: &mut Harness) {
    h.run(
        "/dev/tcplog is a root-owned char device with mode 0600",
        device_node,
    );
    h.run("version ioctl returns the ABI version", version_ioctl);
    h.run(
        "tcplog status reports the matching ABI version",
        status_matches,
    );
    h.run("tcplog status --json reports both versions", status_json);
    h.run("unknown ioctl fails with ENOTTY", unknown_ioctl);
    h.run(
        "version ioctl with a bad pointer fails with EFAULT",
        bad_pointer,
    );
    h.run("non-root cannot open the device (EACCES)", nobody_open);
    h.run(
        "tcplog status as non-root says permission denied, exit 4",
        nobody_status,
    );
}

pub fn unload(h: &mut Harness) {
    h.run("rmmod succeeds and removes the device", || {
        sys::rmmod()?;
        ensure!(!sys::module_loaded(), "tcplog still in /proc/modules");
        ensure!(
            std::fs::metadata(sys::DEVICE).is_err(),
            "{} still exists",
            sys::DEVICE
        );
        Ok(())
    });
    h.run(
        "tcplog status without the module says not loaded, exit 3",
        || {
            let out = sys::run(sys::TOOL, &["status"])?;
            ensure_eq!(out.status.code(), Some(3), "exit code");
            let err = String::from_utf8_lossy(&out.stderr);
            ensure!(
                err.contains("not loaded") && err.contains("insmod"),
                "stderr does not say how to load the module: {err}"
            );
            Ok(())
        },
    );
}

pub fn kernel_log(h: &mut Harness) {
    h.run(
        "kernel log has no WARN, BUG, Oops or lockdep report",
        || {
            let log = sys::dmesg();
            ensure!(!log.is_empty(), "dmesg printed nothing");
            let bad: Vec<&str> = log.lines().filter(|l| crate::klog::is_report(l)).collect();
            ensure!(bad.is_empty(), "kernel log:\n{}", bad.join("\n"));
            Ok(())
        },
    );
}

fn device_node() -> TestResult {
    let md = std::fs::metadata(sys::DEVICE).map_err(|e| format!("stat {}: {e}", sys::DEVICE))?;
    ensure!(md.file_type().is_char_device(), "not a char device");
    ensure_eq!(md.mode() & 0o7777, 0o600, "mode");
    ensure_eq!(md.uid(), 0, "owner uid");
    ensure_eq!(md.gid(), 0, "owner gid");
    // A misc device: major 10.
    ensure_eq!(libc::major(md.rdev()), 10, "major number");
    Ok(())
}

fn version_ioctl() -> TestResult {
    let f = sys::open_device(false).map_err(|e| format!("open: {e}"))?;
    let mut v: u32 = 0xdead_beef;
    sys::ioctl_ptr(&f, abi::TCPLOG_IOC_VERSION, &mut v).map_err(errno_name)?;
    ensure_eq!(v, abi::ABI_VERSION);
    Ok(())
}

fn status_matches() -> TestResult {
    let out = sys::run_ok(sys::TOOL, &["status"])?;
    let version = abi::ABI_VERSION.to_string();
    for what in ["module ABI", "tool ABI"] {
        ensure!(
            out.lines()
                .any(|l| l.starts_with(what)
                    && l.split_whitespace().last() == Some(version.as_str())),
            "no line '{what} ... {version}' in:\n{out}"
        );
    }
    Ok(())
}

fn status_json() -> TestResult {
    let out = sys::run_ok(sys::TOOL, &["status", "--json"])?;
    let want_m = format!("\"module_abi_version\":{}", abi::ABI_VERSION);
    let want_t = format!("\"tool_abi_version\":{}", abi::ABI_VERSION);
    ensure!(
        out.contains(&want_m) && out.contains(&want_t),
        "JSON lacks the versions: {out}"
    );
    Ok(())
}

fn unknown_ioctl() -> TestResult {
    let f = sys::open_device(true).map_err(|e| format!("open: {e}"))?;
    let mut v: u32 = 0;
    let cmd = abi::ior::<u32>(abi::TCPLOG_IOC_TYPE, 0xfe);
    match sys::ioctl_ptr(&f, cmd, &mut v) {
        Err(libc::ENOTTY) => Ok(()),
        other => Err(format!("got {:?}, want ENOTTY", other.map_err(errno_name))),
    }
}

fn bad_pointer() -> TestResult {
    let f = sys::open_device(false).map_err(|e| format!("open: {e}"))?;
    match sys::ioctl_ptr(&f, abi::TCPLOG_IOC_VERSION, 8usize as *mut u32) {
        Err(libc::EFAULT) => Ok(()),
        other => Err(format!("got {:?}, want EFAULT", other.map_err(errno_name))),
    }
}

fn nobody_open() -> TestResult {
    // The open must happen in a process that really is unprivileged: the tool run as nobody.
    let out = sys::run_as_nobody("/bin/sh", &["-c", &format!("exec 3<{}", sys::DEVICE)])?;
    ensure!(!out.status.success(), "nobody could open {}", sys::DEVICE);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("denied"),
        "open failed for another reason: {err}"
    );
    Ok(())
}

fn nobody_status() -> TestResult {
    let out = sys::run_as_nobody(sys::TOOL, &["status"])?;
    ensure_eq!(out.status.code(), Some(4), "exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("permission denied") && err.contains("root"),
        "stderr: {err}"
    );
    Ok(())
}
