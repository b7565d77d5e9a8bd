//! The device: ring, reads, poll, ioctls, permissions, loss accounting.

use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, config_item};

use crate::dev::{self, account, Dev};
use crate::harness::{Harness, TestResult};
use crate::sys::{self, errno_name};
use crate::{ensure, ensure_eq};

/// The ring the device tests load the module with: small, to overflow quickly.
const RING_KIB: u64 = 64;

pub fn all(h: &mut Harness) {
    h.run(
        "device: insmod refuses ring_kib out of range",
        ring_size_bounds,
    );
    h.run(
        "device: module loads with ring_kib=64; status reports the ring",
        || {
            dev::reload(&["ring_kib=64"])?;
            let s = Dev::open(false, true)?.status()?;
            ensure_eq!(s.ring_size, RING_KIB * 1024);
            ensure_eq!(s.enabled, 1);
            ensure_eq!(s.readers, 1, "readers counts this descriptor");
            ensure_eq!(s.records_dropped, 0);
            Ok(())
        },
    );
    h.run(
        "device: enable/disable are audited by CONFIG records, once per change",
        enable_disable,
    );
    h.run(
        "device: a new reader starts at the oldest record; SEEK_END starts from now",
        start_positions,
    );
    h.run(
        "device: overflow overwrites the oldest; the LOST count is exact",
        overflow,
    );
    h.run(
        "device: two readers see the same records independently",
        two_readers,
    );
    h.run(
        "device: reads return whole records, as many as fit",
        whole_records,
    );
    h.run(
        "device: a short buffer gives EINVAL and the record waits for a larger read",
        short_buffer,
    );
    h.run(
        "device: FIONREAD equals what the next read returns",
        fionread,
    );
    h.run(
        "device: O_NONBLOCK read with nothing to read gives EAGAIN",
        nonblock,
    );
    h.run(
        "device: a blocked reader wakes on a new record",
        blocked_reader_wakes,
    );
    h.run(
        "device: a signal interrupts a blocked read with EINTR",
        signal_interrupts,
    );
    h.run(
        "device: poll and epoll report readable exactly when records wait",
        poll_readable,
    );
    h.run(
        "device: EFAULT on a bad buffer, and the record is not lost",
        efault_keeps_record,
    );
    h.run(
        "device: flush returns the bytes it discarded and is audited",
        flush,
    );
    h.run(
        "device: SET_CONFIG validates, applies and audits each change",
        set_config,
    );
    h.run(
        "device: MARK refuses counts of 0 and above the maximum (EINVAL)",
        mark_bounds,
    );
    h.run(
        "device: state changes need a writable descriptor (EBADF)",
        needs_write,
    );
    h.run(
        "device: state changes need an opener with CAP_NET_ADMIN (EPERM), whoever calls",
        needs_cap,
    );
    h.run(
        "device: an opener's rights survive its dropping privileges",
        opener_rights_survive_setuid,
    );
    h.run(
        "device: queries work on a read-only descriptor",
        read_only_queries,
    );
    h.run(
        "device: producers on two CPUs lose nothing uncounted",
        two_cpus,
    );
    h.run(
        "device: rmmod is refused while a reader is blocked, works after",
        rmmod_while_open,
    );
}

fn ring_size_bounds() -> TestResult {
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    for bad in ["ring_kib=1", "ring_kib=300000"] {
        let out = sys::run("insmod", &[sys::MODULE_PATH, bad])?;
        ensure!(!out.status.success(), "insmod {bad} succeeded");
        ensure!(!sys::module_loaded(), "module loaded with {bad}");
    }
    ensure!(
        sys::dmesg().contains("ring_kib=1 is out of range (64 to 262144)"),
        "no clear message in the kernel log"
    );
    Ok(())
}

fn comm_of(c: &[u8]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

fn enable_disable() -> TestResult {
    let d = Dev::rw()?;
    d.seek_end()?;
    let me = std::process::id();
    d.ioctl_none(abi::TCPLOG_IOC_DISABLE).map_err(errno_name)?;
    ensure_eq!(d.status()?.enabled, 0);
    d.ioctl_none(abi::TCPLOG_IOC_DISABLE).map_err(errno_name)?;
    d.ioctl_none(abi::TCPLOG_IOC_ENABLE).map_err(errno_name)?;
    ensure_eq!(d.status()?.enabled, 1);
    let recs = d.drain()?;
    ensure_eq!(
        recs.len(),
        2,
        "one record per change, none for the repeated disable"
    );
    let (off, on) = (
        recs[0].config().ok_or("not CONFIG")?,
        recs[1].config().ok_or("not CONFIG")?,
    );
    ensure_eq!((off.item, off.old, off.new), (config_item::ENABLED, 1, 0));
    ensure_eq!((on.item, on.old, on.new), (config_item::ENABLED, 0, 1));
    ensure_eq!(off.pid, me);
    ensure_eq!(off.uid, 0);
    ensure_eq!(comm_of(&off.comm), "tcplog-vm-tests");
    ensure!(
        recs[1].hdr.seq == recs[0].hdr.seq + 1,
        "sequence numbers not consecutive"
    );
    ensure!(
        recs[1].hdr.boot_ns >= recs[0].hdr.boot_ns,
        "time went backwards"
    );
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    ensure!(
        now_ns.abs_diff(recs[1].hdr.time_ns) < 10_000_000_000,
        "wall-clock time {} far from now {now_ns}",
        recs[1].hdr.time_ns
    );
    Ok(())
}

fn start_positions() -> TestResult {
    let w = Dev::rw()?;
    w.flush()?;
    w.mark(1, 3)?;
    let oldest = Dev::open(false, true)?;
    let fresh = Dev::open(false, true)?;
    fresh.seek_end()?;
    w.mark(2, 1)?;
    let a = oldest.drain()?;
    let b = fresh.drain()?;
    // The oldest record held is the flush's CONFIG record.
    ensure_eq!(a.len(), 5, "CONFIG(flush) + 3 old marks + 1 new");
    ensure_eq!(a[0].config().map(|c| c.item), Some(config_item::FLUSH));
    ensure_eq!(b.len(), 1, "only the new mark");
    ensure_eq!(b[0].mark().map(|m| m.value), Some(2));
    ensure_eq!(b[0].hdr.seq, a[4].hdr.seq);
    Ok(())
}

fn overflow() -> TestResult {
    let w = Dev::rw()?;
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    let start = w.status()?.records_produced;
    // 80-byte records, 4 ring-fulls.
    let n = (RING_KIB * 1024 * 4 / abi::MARK_RECORD_LEN as u64) as u32;
    w.mark(7, n)?;
    let s = w.status()?;
    ensure_eq!(s.records_produced, start + u64::from(n));
    let held = s.records_held;
    ensure!(held > 0 && held < u64::from(n), "held {held} of {n}");
    ensure_eq!(
        s.bytes_used,
        held * abi::MARK_RECORD_LEN as u64,
        "all held records are marks"
    );
    let recs = r.drain()?;
    let (delivered, lost, next) = account(&recs, start)?;
    ensure_eq!(next, start + u64::from(n));
    ensure_eq!(
        delivered + lost,
        u64::from(n),
        "delivered + lost = produced since start"
    );
    ensure_eq!(delivered, held, "everything still held was delivered");
    ensure!(
        recs[0].lost().is_some(),
        "the stream does not start with LOST"
    );
    ensure_eq!(recs.iter().filter(|r| r.lost().is_some()).count(), 1);
    // The marks delivered are the newest ones, in order.
    let first_index = recs[1].mark().ok_or("not a mark")?.index;
    ensure_eq!(u64::from(first_index), lost);
    Ok(())
}

fn two_readers() -> TestResult {
    let w = Dev::rw()?;
    let a = Dev::open(false, true)?;
    let b = Dev::open(false, true)?;
    a.seek_end()?;
    b.seek_end()?;
    w.mark(11, 10)?;
    let ra = a.read_raw(1 << 16).map_err(errno_name)?;
    w.mark(12, 5)?;
    let rb = b.read_raw(1 << 16).map_err(errno_name)?;
    let ra2 = a.read_raw(1 << 16).map_err(errno_name)?;
    ensure_eq!(ra.len(), 10 * abi::MARK_RECORD_LEN);
    ensure_eq!(
        rb.len(),
        15 * abi::MARK_RECORD_LEN,
        "b reads all 15 at once"
    );
    ensure_eq!(ra2.len(), 5 * abi::MARK_RECORD_LEN);
    ensure!(
        rb[..ra.len()] == ra[..] && rb[ra.len()..] == ra2[..],
        "a and b saw different bytes"
    );
    Ok(())
}

fn whole_records() -> TestResult {
    let w = Dev::rw()?;
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    w.mark(3, 10)?;
    // Room for 3.5 records: 3 come back.
    let got = r
        .read_raw(abi::MARK_RECORD_LEN * 7 / 2)
        .map_err(errno_name)?;
    ensure_eq!(got.len(), 3 * abi::MARK_RECORD_LEN);
    let rest = dev::parse(&r.read_raw(1 << 16).map_err(errno_name)?)?;
    ensure_eq!(rest.len(), 7);
    ensure_eq!(rest[0].mark().map(|m| m.index), Some(3));
    Ok(())
}

fn short_buffer() -> TestResult {
    let w = Dev::rw()?;
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    w.mark(4, 1)?;
    ensure_eq!(
        r.read_raw(abi::MARK_RECORD_LEN - 1),
        Err(libc::EINVAL),
        "short read"
    );
    ensure_eq!(r.read_raw(10), Err(libc::EINVAL), "tiny read");
    let recs = r.read(abi::MARK_RECORD_LEN)?;
    ensure_eq!(recs.len(), 1);
    ensure_eq!(recs[0].mark().map(|m| m.value), Some(4));
    Ok(())
}

fn fionread() -> TestResult {
    let w = Dev::rw()?;
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    ensure_eq!(r.fionread()?, 0);
    w.mark(5, 3)?;
    ensure_eq!(r.fionread()?, 3 * abi::MARK_RECORD_LEN as i32);
    let n = r.read_raw(1 << 16).map_err(errno_name)?.len();
    ensure_eq!(n, 3 * abi::MARK_RECORD_LEN);
    ensure_eq!(r.fionread()?, 0);
    // Behind the tail, FIONREAD includes the LOST record, exactly as the read returns it.
    w.mark(
        6,
        (RING_KIB * 1024 * 2 / abi::MARK_RECORD_LEN as u64) as u32,
    )?;
    let avail = r.fionread()?;
    let got = r.read_raw(1 << 20).map_err(errno_name)?;
    ensure_eq!(avail as usize, got.len());
    ensure!(
        dev::parse(&got)?[0].lost().is_some(),
        "no LOST record first"
    );
    Ok(())
}

fn nonblock() -> TestResult {
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    ensure_eq!(r.read_raw(4096), Err(libc::EAGAIN));
    Ok(())
}

fn blocked_reader_wakes() -> TestResult {
    let r = Dev::open(false, false)?;
    r.seek_end()?;
    let reader = thread::spawn(move || {
        let t = Instant::now();
        let got = r.read(4096);
        (t.elapsed(), got)
    });
    thread::sleep(Duration::from_millis(300));
    Dev::rw()?.mark(8, 1)?;
    let (waited, got) = reader.join().map_err(|_| "reader panicked")?;
    let recs = got?;
    ensure_eq!(recs.len(), 1);
    ensure_eq!(recs[0].mark().map(|m| m.value), Some(8));
    ensure!(
        waited >= Duration::from_millis(250),
        "read returned after {waited:?}, before the record"
    );
    Ok(())
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

fn signal_interrupts() -> TestResult {
    // A handler without SA_RESTART: the interrupted read must fail with EINTR.
    // SAFETY: A zeroed sigaction with a valid handler and an empty mask is well formed.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        ensure!(
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) == 0,
            "sigaction"
        );
    }
    let r = Dev::open(false, false)?;
    r.seek_end()?;
    let reader = thread::spawn(move || r.read_raw(4096));
    thread::sleep(Duration::from_millis(300));
    // SAFETY: The thread is alive: it is blocked in read until the signal arrives.
    let rc = unsafe { libc::pthread_kill(reader.as_pthread_t(), libc::SIGUSR1) };
    ensure_eq!(rc, 0, "pthread_kill");
    let got = reader.join().map_err(|_| "reader panicked")?;
    ensure_eq!(got.map(|b| b.len()), Err(libc::EINTR));
    Ok(())
}

fn poll_once(fd: i32, timeout_ms: i32) -> Result<i16, String> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: One valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    ensure!(rc >= 0, "poll: {}", errno_name(sys::errno()));
    Ok(p.revents)
}

fn poll_readable() -> TestResult {
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    ensure_eq!(poll_once(r.fd(), 0)?, 0, "readable with nothing to read");
    // SAFETY: Plain epoll syscalls on descriptors this function owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    ensure!(ep >= 0, "epoll_create1");
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY: As above.
    let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, r.fd(), &mut ev) };
    ensure_eq!(rc, 0, "epoll_ctl");
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
    // SAFETY: As above.
    ensure_eq!(
        unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 2, 0) },
        0,
        "epoll before"
    );
    // A poll that waits is woken by the record.
    let fd = r.fd();
    let waiter = thread::spawn(move || poll_once(fd, 5000));
    thread::sleep(Duration::from_millis(200));
    Dev::rw()?.mark(9, 1)?;
    let rev = waiter.join().map_err(|_| "poller panicked")??;
    ensure!(rev & libc::POLLIN != 0, "poll woke with revents {rev:#x}");
    // SAFETY: As above.
    let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 2, 1000) };
    ensure_eq!(n, 1, "epoll after");
    let data = out[0].u64; // a packed field: copy it out
    ensure_eq!(data, 7);
    r.drain()?;
    ensure_eq!(poll_once(r.fd(), 0)?, 0, "readable after draining");
    // SAFETY: `ep` is ours.
    unsafe { libc::close(ep) };
    Ok(())
}

fn efault_keeps_record() -> TestResult {
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    Dev::rw()?.mark(10, 1)?;
    // SAFETY: A deliberately invalid user pointer: the kernel must refuse it without writing.
    let n = unsafe { libc::read(r.fd(), 8usize as *mut libc::c_void, 4096) };
    ensure_eq!((n, sys::errno()), (-1, libc::EFAULT));
    ensure_eq!(
        r.fionread()?,
        abi::MARK_RECORD_LEN as i32,
        "record still pending"
    );
    let recs = r.read(4096)?;
    ensure_eq!(recs.len(), 1);
    ensure_eq!(recs[0].mark().map(|m| m.value), Some(10));
    Ok(())
}

fn flush() -> TestResult {
    let w = Dev::rw()?;
    w.flush()?;
    // This reader starts at the flush's CONFIG record and falls behind.
    let behind = Dev::open(false, true)?;
    let s0 = behind.status()?.oldest_seq;
    w.mark(12, 20)?;
    let before = w.status()?;
    let bytes = w.flush()?;
    ensure_eq!(
        bytes,
        before.bytes_used,
        "flush returns the bytes that were held"
    );
    ensure_eq!(
        bytes,
        abi::CONFIG_RECORD_LEN as u64 + 20 * abi::MARK_RECORD_LEN as u64
    );
    let after = w.status()?;
    ensure_eq!(after.records_flushed, before.records_flushed + 21);
    ensure_eq!(after.bytes_flushed, before.bytes_flushed + bytes);
    ensure_eq!(after.records_held, 1, "only the flush's own CONFIG record");
    let recs = Dev::open(false, true)?.drain()?;
    ensure_eq!(recs.len(), 1);
    let c = recs[0].config().ok_or("not CONFIG")?;
    ensure_eq!((c.item, c.old, c.new), (config_item::FLUSH, 21, bytes));
    // The reader that was behind learns of the flushed records as lost, exactly.
    let recs = behind.drain()?;
    ensure_eq!(recs.len(), 2);
    let l = recs[0].lost().ok_or("no LOST record")?;
    ensure_eq!((l.count, l.first_seq, l.last_seq), (21, s0, s0 + 20));
    ensure_eq!(recs[1].config().map(|c| c.item), Some(config_item::FLUSH));
    Ok(())
}

fn set_config() -> TestResult {
    let d = Dev::rw()?;
    d.seek_end()?;
    let orig = d.config()?;
    ensure_eq!(orig, abi::Config::DEFAULT);
    let mut c = orig;
    c.snap_len = abi::MAX_SNAP_LEN + 1;
    ensure_eq!(d.set_config(&c), Err(libc::EINVAL), "snap_len too large");
    c = orig;
    c._reserved[0] = 1;
    ensure_eq!(d.set_config(&c), Err(libc::EINVAL), "reserved field set");
    c = orig;
    c.event_mask = u64::MAX;
    ensure_eq!(d.set_config(&c), Err(libc::EINVAL), "unknown event bits");
    ensure_eq!(d.config()?, orig, "a refused change changed something");
    c = orig;
    c.snap_len = 256;
    d.set_config(&c).map_err(errno_name)?;
    ensure_eq!(d.config()?.snap_len, 256);
    d.set_config(&c).map_err(errno_name)?;
    d.set_config(&orig).map_err(errno_name)?;
    let recs = d.drain()?;
    ensure_eq!(recs.len(), 2, "two changes, no record for the no-op");
    let a = recs[0].config().ok_or("not CONFIG")?;
    let b = recs[1].config().ok_or("not CONFIG")?;
    ensure_eq!((a.item, a.old, a.new), (config_item::SNAP_LEN, 128, 256));
    ensure_eq!((b.item, b.old, b.new), (config_item::SNAP_LEN, 256, 128));
    Ok(())
}

fn mark_bounds() -> TestResult {
    let d = Dev::rw()?;
    for count in [0, abi::MAX_MARK_COUNT + 1] {
        let mut m = abi::Mark {
            value: 0,
            count,
            _pad: 0,
        };
        ensure_eq!(
            d.ioctl(abi::TCPLOG_IOC_MARK, &mut m),
            Err(libc::EINVAL),
            "count {count}"
        );
    }
    Ok(())
}

const STATE_CHANGES: [u32; 5] = [
    abi::TCPLOG_IOC_ENABLE,
    abi::TCPLOG_IOC_DISABLE,
    abi::TCPLOG_IOC_FLUSH,
    abi::TCPLOG_IOC_SET_CONFIG,
    abi::TCPLOG_IOC_MARK,
];

/// An argument buffer large enough and valid for every command.
fn arg_for(cmd: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    if cmd == abi::TCPLOG_IOC_SET_CONFIG {
        buf[..56].copy_from_slice(abi::Pod::as_bytes(&abi::Config::DEFAULT));
    }
    if cmd == abi::TCPLOG_IOC_MARK {
        buf[8] = 1;
    }
    buf
}

fn needs_write() -> TestResult {
    let ro = Dev::open(false, true)?;
    let before = ro.status()?.records_produced;
    for cmd in STATE_CHANGES {
        let mut arg = arg_for(cmd);
        ensure_eq!(
            ro.ioctl(cmd, arg.as_mut_ptr()),
            Err(libc::EBADF),
            "command {cmd:#x}"
        );
    }
    ensure_eq!(
        ro.status()?.records_produced,
        before,
        "a refused command produced a record"
    );
    Ok(())
}

/// Drops CAP_NET_ADMIN from this process's effective and permitted sets.
fn drop_net_admin() -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: `h` and `d` are the header and the two data words capget and capset expect.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return Err(sys::errno());
        }
        let bit = 1u32 << 12; // CAP_NET_ADMIN
        d[0].effective &= !bit;
        d[0].permitted &= !bit;
        if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
            return Err(sys::errno());
        }
    }
    Ok(())
}

fn needs_cap() -> TestResult {
    // A root process without CAP_NET_ADMIN opens the device for writing; its descriptor is then
    // used by this process, which has every capability: rights are the opener's, never the
    // caller's, so every state change is refused.
    let mut ready = [0i32; 2];
    // SAFETY: `ready` has room for the two descriptors of a pipe.
    ensure!(unsafe { libc::pipe(ready.as_mut_ptr()) } == 0, "pipe");
    // SAFETY: The child only makes plain syscalls before it exits or is killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match drop_net_admin() {
            Err(e) => e,
            Ok(()) => match Dev::rw() {
                Err(_) => 201,
                Ok(d) => {
                    let fd = d.fd();
                    std::mem::forget(d);
                    // SAFETY: Writing an int to our end of the pipe, then waiting to be killed.
                    unsafe {
                        libc::write(ready[1], (&raw const fd).cast(), 4);
                        libc::pause();
                    }
                    0
                }
            },
        };
        // SAFETY: Leaving the child.
        unsafe { libc::_exit(code) };
    }
    let mut child_fd = -1i32;
    // SAFETY: Reading an int from our end of the pipe.
    let n = unsafe { libc::read(ready[0], (&raw mut child_fd).cast(), 4) };
    let taken = if n == 4 {
        // SAFETY: Plain syscalls on our own child.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, child_fd, 0) as i32;
            libc::close(pidfd);
            fd
        }
    } else {
        -1
    };
    let result = (|| -> TestResult {
        ensure!(
            taken >= 0,
            "could not take the child's descriptor (read {n} bytes)"
        );
        for cmd in STATE_CHANGES {
            let mut arg = arg_for(cmd);
            let rc = sys::ioctl_raw(taken, cmd, arg.as_mut_ptr());
            ensure_eq!(rc, Err(libc::EPERM), "command {cmd:#x}");
        }
        Ok(())
    })();
    // SAFETY: Ending our own child and closing our descriptors.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        if taken >= 0 {
            libc::close(taken);
        }
        libc::close(ready[0]);
        libc::close(ready[1]);
    }
    result
}

fn opener_rights_survive_setuid() -> TestResult {
    // The descriptor is root's and writable; the process using it dropped to nobody after
    // inheriting it: a daemon that opens the device and then drops privileges keeps its rights.
    let rw = Dev::rw()?;
    let before = rw.status()?.records_produced;
    // SAFETY: The child only makes async-signal-safe calls (setgid, setuid, ioctl, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: Plain syscalls in the child.
        unsafe {
            if libc::setgid(sys::NOBODY) != 0 || libc::setuid(sys::NOBODY) != 0 {
                libc::_exit(200);
            }
            for (i, cmd) in STATE_CHANGES.iter().enumerate() {
                let mut arg = arg_for(*cmd);
                if libc::ioctl(rw.fd(), *cmd as _, arg.as_mut_ptr()) < 0 {
                    libc::_exit(100 + i as i32);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: Waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(libc::WIFEXITED(status), "child died");
    ensure_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the first refused command's index + 100"
    );
    // Enable and config change nothing (no record); disable and flush are audited, and the
    // mark writes one record.
    let after = rw.status()?;
    ensure!(
        after.records_produced >= before + 3 && after.enabled == 0,
        "the changes were not made: {} records after {before}, enabled {}",
        after.records_produced,
        after.enabled
    );
    rw.ioctl_none(abi::TCPLOG_IOC_ENABLE).map_err(errno_name)?;
    Ok(())
}

fn read_only_queries() -> TestResult {
    let ro = Dev::open(false, true)?;
    ro.status()?;
    ro.config()?;
    ro.fionread()?;
    ro.seek_end()?;
    let mut v = 0u32;
    ro.ioctl(abi::TCPLOG_IOC_VERSION, &mut v)
        .map_err(errno_name)?;
    ensure_eq!(v, abi::ABI_VERSION);
    Ok(())
}

fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: A zeroed cpu_set_t is an empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        ensure!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0,
            "sched_setaffinity({cpu}): {}",
            errno_name(sys::errno())
        );
    }
    Ok(())
}

fn two_cpus() -> TestResult {
    const PER_CALL: u32 = 5000;
    const CALLS: u32 = 20;
    let ncpu = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    ensure!(ncpu >= 2, "the VM has {ncpu} CPU");
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    let start = r.status()?.records_produced;
    let go = Arc::new(Barrier::new(3));
    let producers: Vec<_> = (0..2)
        .map(|cpu| {
            let go = Arc::clone(&go);
            thread::spawn(move || -> Result<(), String> {
                pin_to_cpu(cpu)?;
                let w = Dev::rw()?;
                go.wait();
                for _ in 0..CALLS {
                    w.mark(100 + cpu as u64, PER_CALL)?;
                }
                Ok(())
            })
        })
        .collect();
    go.wait();
    // Read while they produce.
    let mut recs = Vec::new();
    while producers.iter().any(|p| !p.is_finished()) {
        recs.extend(r.drain()?);
    }
    for p in producers {
        p.join().map_err(|_| "producer panicked")??;
    }
    recs.extend(r.drain()?);
    let total = u64::from(2 * PER_CALL * CALLS);
    let end = r.status()?.records_produced;
    ensure_eq!(end - start, total, "records produced");
    let (delivered, lost, next) = account(&recs, start)?;
    ensure_eq!(next, end);
    ensure_eq!(delivered + lost, total, "delivered + lost = produced");
    let cpus: std::collections::BTreeSet<u32> = recs
        .iter()
        .filter(|r| r.mark().is_some())
        .map(|r| r.hdr.cpu)
        .collect();
    ensure!(cpus.len() >= 2, "records came from CPUs {cpus:?} only");
    ensure!(delivered > 0, "nothing delivered");
    Ok(())
}

fn rmmod_while_open() -> TestResult {
    let r = Dev::open(false, false)?;
    r.seek_end()?;
    let reader = thread::spawn(move || r.read(4096));
    thread::sleep(Duration::from_millis(200));
    let out = sys::run("rmmod", &["tcplog"])?;
    ensure!(
        !out.status.success(),
        "rmmod succeeded with a reader blocked"
    );
    ensure!(sys::module_loaded(), "module gone");
    Dev::rw()?.mark(13, 1)?;
    let recs = reader.join().map_err(|_| "reader panicked")??;
    ensure_eq!(recs[0].mark().map(|m| m.value), Some(13));
    // The reader's descriptor closed with its thread.
    sys::rmmod()?;
    ensure!(!sys::module_loaded(), "module still loaded");
    // Leave the module loaded with its defaults for what follows.
    sys::insmod(&[])
}
