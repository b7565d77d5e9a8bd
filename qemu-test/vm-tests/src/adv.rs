//! Shared pieces of the adversarial suites (`t_adv_socket`, `t_adv_blind`): socket calls made
//! with raw syscalls (so every kind of socket, errno and flag is the kernel's own), helper
//! processes run under other credentials, notes the tests leave for the report, and the checks
//! every record must pass whatever made it.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, close, open, EventBody, Pod, SummaryBody};

use crate::dev::Rec;
use crate::ensure_eq;
use crate::harness::{Harness, TestResult};
use crate::sys::{self, errno, errno_name};

// Notes: what a test found that the report should say (kernel behaviour, counts, timings).

static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Leaves a line for the report; printed after the test's result line.
pub fn note(line: impl Into<String>) {
    NOTES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(line.into());
}

/// Runs one test, then prints the notes it left.
pub fn run(h: &mut Harness, name: &str, test: impl FnOnce() -> TestResult) {
    NOTES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    h.run(name, test);
    let notes = std::mem::take(&mut *NOTES.lock().unwrap_or_else(|e| e.into_inner()));
    for n in notes {
        h.note(&format!("  {n}"));
    }
}

// Records.

pub fn events(recs: &[Rec]) -> Vec<EventBody> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::EVENT)
        .map(|r| EventBody::read_from(&r.body).unwrap())
        .collect()
}

pub fn comm_str(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

pub fn comm(s: &str) -> [u8; 16] {
    let mut c = [0; 16];
    let n = s.len().min(15);
    c[..n].copy_from_slice(&s.as_bytes()[..n]);
    c
}

/// One line describing an event, for failure messages.
pub fn ev_line(e: &EventBody) -> String {
    format!(
        "op {} proto {} type {} pid {} tid {} uid {} comm {:?} {}:{} -> {}:{} result {} flags {:#x} id {:#x}",
        e.op,
        e.protocol,
        e.sock_type,
        e.pid,
        e.tid,
        e.uid,
        comm_str(&e.comm),
        addr_str(e.family, &e.laddr),
        e.lport,
        addr_str(e.family, &e.raddr),
        e.rport,
        e.result,
        e.flags,
        e.sock_id
    )
}

/// One line describing a summary, for failure messages and notes.
pub fn sum_line(s: &SummaryBody) -> String {
    format!(
        "{}:{} -> {}:{} open {} close {} flags {:#x} pid {} comm {:?} sent {} recv {} segs {}/{} retrans {} srtt {} id {:#x}",
        addr_str(s.family, &s.laddr),
        s.lport,
        addr_str(s.family, &s.raddr),
        s.rport,
        s.open,
        s.close,
        s.flags,
        s.pid,
        comm_str(&s.comm),
        s.bytes_sent,
        s.bytes_received,
        s.segs_in,
        s.segs_out,
        s.retrans,
        s.srtt_us,
        s.sock_id
    )
}

pub fn addr_str(family: u16, a: &[u8; 16]) -> String {
    if family == abi::AF_INET6 {
        std::net::Ipv6Addr::from(*a).to_string()
    } else {
        std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    }
}

/// What no summary may ever hold, whatever socket it is about: values that can only come from
/// reading memory that is not a `tcp_sock` (all ones, SLUB's poison, counters beyond what the
/// VM could carry while the suite runs).
pub fn sane_summary(s: &SummaryBody) -> Result<(), String> {
    const POISON: u32 = 0x5a5a_5a5a;
    let bad = s.bytes_sent > 1 << 40
        || s.bytes_received > 1 << 40
        || s.segs_in > 1 << 24
        || s.segs_out > 1 << 24
        || s.retrans > 1 << 20
        || [s.segs_in, s.segs_out, s.retrans, s.srtt_us].contains(&POISON)
        || s.srtt_us > 60_000_000
        || s.duration_ns > 3600 * 1_000_000_000
        || s.open > abi::open::PASSIVE
        || s.close > abi::close::TIMEOUT;
    if bad {
        return Err(format!("garbage summary: {}", sum_line(s)));
    }
    Ok(())
}

/// Every summary among `recs` is sane.
pub fn all_sane(recs: &[Rec]) -> TestResult {
    for s in crate::fixtures::summaries(recs) {
        sane_summary(&s)?;
    }
    Ok(())
}

// Addresses and raw socket calls.

pub const LO4: [u8; 4] = [127, 0, 0, 1];
pub const LO6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A socket address of either family, as the kernel takes it.
#[derive(Clone, Copy)]
pub struct Sa {
    st: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl Sa {
    pub fn v4(ip: [u8; 4], port: u16) -> Sa {
        // SAFETY: All-zero is a valid sockaddr_storage.
        let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
        unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
        Sa {
            st,
            len: std::mem::size_of::<libc::sockaddr_in>() as u32,
        }
    }

    pub fn v6(ip: [u8; 16], port: u16) -> Sa {
        // SAFETY: All-zero is a valid sockaddr_storage.
        let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as u16,
            sin6_port: port.to_be(),
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr { s6_addr: ip },
            sin6_scope_id: 0,
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
        unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
        Sa {
            st,
            len: std::mem::size_of::<libc::sockaddr_in6>() as u32,
        }
    }

    /// The loopback address of `family` with `port`.
    pub fn lo(family: i32, port: u16) -> Sa {
        if family == libc::AF_INET6 {
            Sa::v6(LO6, port)
        } else {
            Sa::v4(LO4, port)
        }
    }

    pub fn ptr(&self) -> *const libc::sockaddr {
        (&self.st as *const libc::sockaddr_storage).cast()
    }

    pub fn port(&self) -> u16 {
        // Both sockaddr_in and sockaddr_in6 keep the port at offset 2.
        // SAFETY: The storage is at least 4 bytes long.
        let p = unsafe { std::ptr::read_unaligned(self.ptr().cast::<u8>().add(2).cast::<u16>()) };
        u16::from_be(p)
    }
}

fn check(what: &str, rc: isize) -> Result<isize, String> {
    if rc < 0 {
        Err(format!("{what}: {}", errno_name(errno())))
    } else {
        Ok(rc)
    }
}

/// `socket(2)`; the errno on failure.
pub fn socket_raw(domain: i32, ty: i32, proto: i32) -> Result<OwnedFd, i32> {
    // SAFETY: A plain syscall; a nonnegative result is a descriptor nobody else owns.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        Err(errno())
    } else {
        // SAFETY: As above.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

pub fn socket(domain: i32, ty: i32, proto: i32) -> Result<OwnedFd, String> {
    socket_raw(domain, ty, proto)
        .map_err(|e| format!("socket({domain}, {ty}, {proto}): {}", errno_name(e)))
}

pub fn bind(fd: &OwnedFd, sa: &Sa) -> Result<(), String> {
    // SAFETY: `sa` is a valid address of `len` bytes.
    check(
        "bind",
        unsafe { libc::bind(fd.as_raw_fd(), sa.ptr(), sa.len) } as isize,
    )
    .map(|_| ())
}

/// `connect(2)`; the errno on failure.
pub fn connect_raw(fd: RawFd, sa: &Sa) -> Result<(), i32> {
    // SAFETY: `sa` is a valid address of `len` bytes.
    if unsafe { libc::connect(fd, sa.ptr(), sa.len) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn connect(fd: &OwnedFd, sa: &Sa) -> Result<(), String> {
    connect_raw(fd.as_raw_fd(), sa).map_err(|e| format!("connect: {}", errno_name(e)))
}

pub fn listen(fd: &OwnedFd, backlog: i32) -> Result<(), String> {
    // SAFETY: A plain syscall.
    check("listen", unsafe { libc::listen(fd.as_raw_fd(), backlog) }
        as isize)
    .map(|_| ())
}

/// `accept4(2)` without the peer's address; the errno on failure.
pub fn accept_raw(fd: RawFd) -> Result<OwnedFd, i32> {
    // SAFETY: Null address pointers are allowed.
    let n = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if n < 0 {
        Err(errno())
    } else {
        // SAFETY: A new descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    }
}

pub fn accept(fd: &OwnedFd) -> Result<OwnedFd, String> {
    accept_raw(fd.as_raw_fd()).map_err(|e| format!("accept: {}", errno_name(e)))
}

pub fn local(fd: &OwnedFd) -> Result<Sa, String> {
    // SAFETY: All-zero is a valid sockaddr_storage.
    let mut sa = Sa {
        st: unsafe { std::mem::zeroed() },
        len: std::mem::size_of::<libc::sockaddr_storage>() as u32,
    };
    // SAFETY: `sa.st` has `len` writable bytes.
    check("getsockname", unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa.st as *mut libc::sockaddr_storage).cast(),
            &mut sa.len,
        )
    } as isize)?;
    Ok(sa)
}

/// The peer's address of a connected socket.
pub fn peer(fd: &OwnedFd) -> Result<Sa, String> {
    // SAFETY: All-zero is a valid sockaddr_storage.
    let mut sa = Sa {
        st: unsafe { std::mem::zeroed() },
        len: std::mem::size_of::<libc::sockaddr_storage>() as u32,
    };
    // SAFETY: `sa.st` has `len` writable bytes.
    check("getpeername", unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut sa.st as *mut libc::sockaddr_storage).cast(),
            &mut sa.len,
        )
    } as isize)?;
    Ok(sa)
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, v: i32) -> Result<(), i32> {
    // SAFETY: `v` is a readable int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, v: &[u8]) -> Result<(), i32> {
    // SAFETY: `v` has `len` readable bytes.
    let rc = unsafe { libc::setsockopt(fd, level, name, v.as_ptr().cast(), v.len() as u32) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `getsockopt(2)` into a buffer of `len` bytes; the bytes the kernel wrote.
pub fn getsockopt_bytes(fd: RawFd, level: i32, name: i32, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let mut l = len as u32;
    // SAFETY: `buf` has `l` writable bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut l) };
    if rc < 0 {
        return Err(errno());
    }
    buf.truncate(l as usize);
    Ok(buf)
}

pub fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        // SAFETY: `data` is readable for its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(format!("write: {}", errno_name(errno())));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

pub fn read_exact(fd: RawFd, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: `buf[got..]` is writable.
        let r = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), n - got) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(format!("read after {got} of {n}: {}", errno_name(errno())));
        }
        if r == 0 {
            return Err(format!("EOF after {got} of {n} bytes"));
        }
        got += r as usize;
    }
    Ok(buf)
}

/// Reads until EOF; how many bytes came.
pub fn read_to_eof(fd: RawFd) -> Result<usize, String> {
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        // SAFETY: `buf` is writable.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(format!("read after {total}: {}", errno_name(errno())));
        }
        if r == 0 {
            return Ok(total);
        }
        total += r as usize;
    }
}

pub fn shutdown(fd: RawFd, how: i32) -> Result<(), String> {
    // SAFETY: A plain syscall.
    check("shutdown", unsafe { libc::shutdown(fd, how) } as isize).map(|_| ())
}

pub fn gettid() -> u32 {
    // SAFETY: No arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// A connected pair of Unix stream sockets.
pub fn unix_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    check("socketpair", unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } as isize)?;
    // SAFETY: Two new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends descriptor `fd` over the Unix socket `over` (SCM_RIGHTS), with one byte of data.
/// Async-signal-safe: callable in a forked child.
pub fn send_fd(over: RawFd, fd: RawFd) -> Result<(), i32> {
    const SPACE: usize = 64;
    let mut cbuf = [0u64; SPACE / 8];
    let mut byte = [b'F'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: The message points at live buffers; CMSG_* stay within `cbuf`, which is large
    // and aligned enough for one header and one int.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        if libc::sendmsg(over, &msg, 0) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Receives a descriptor sent by [`send_fd`].
pub fn recv_fd(over: RawFd) -> Result<OwnedFd, String> {
    let mut cbuf = [0u64; 8];
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: As in `send_fd`; the descriptor read is one the kernel installed for us.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(over, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            return Err(format!("recvmsg: {n}, {}", errno_name(errno())));
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err("no descriptor came".into());
        }
        Ok(OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(c).cast::<i32>(),
        )))
    }
}

// Helper processes: this binary re-executed with `--adv-...` arguments.

/// The test binary's path.
pub fn me() -> String {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/bin/tcplog-vm-tests".into())
}

/// A symlink to this binary named `name`, so that a helper runs with that command name.
pub fn named_exe(name: &str) -> Result<String, String> {
    let path = format!("/tmp/{name}");
    if std::fs::symlink_metadata(&path).is_err() {
        std::os::unix::fs::symlink(me(), &path).map_err(|e| format!("symlink {path}: {e}"))?;
    }
    Ok(path)
}

/// A running helper whose stdout is read line by line.
pub struct Helper {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts `exe args`, as `uid` if given (gid likewise, no supplementary groups, no
    /// capabilities), with `stdin` as its standard input.
    pub fn spawn(
        exe: &str,
        args: &[&str],
        uid: Option<u32>,
        stdin: Option<OwnedFd>,
    ) -> Result<Helper, String> {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdout(Stdio::piped());
        if let Some(u) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(u).gid(u);
        }
        if let Some(fd) = stdin {
            cmd.stdin(Stdio::from(fd));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {exe} {args:?}: {e}"))?;
        let out = BufReader::new(child.stdout.take().unwrap());
        Ok(Helper { child, out })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the helper prints (without the newline); an error at EOF.
    pub fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        let n = self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the helper exited without a word".into());
        }
        Ok(l.trim_end().to_owned())
    }

    /// Reads lines until one starts with `key `; returns the rest.
    pub fn expect(&mut self, key: &str) -> Result<String, String> {
        loop {
            let l = self.line()?;
            if let Some(rest) = l.strip_prefix(key) {
                if let Some(rest) = rest.strip_prefix(' ') {
                    return Ok(rest.to_owned());
                }
                if rest.is_empty() {
                    return Ok(String::new());
                }
            }
            if let Some(e) = l.strip_prefix("error ") {
                return Err(format!("helper: {e}"));
            }
        }
    }

    /// Waits for the helper to exit 0.
    pub fn finish(mut self) -> Result<(), String> {
        let st = self.child.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            let mut rest = String::new();
            while let Ok(l) = self.line() {
                rest.push_str(&l);
                rest.push('\n');
            }
            return Err(format!("helper exited with {st}: {rest}"));
        }
        Ok(())
    }
}

/// Parses `key value` pairs out of a helper's line: `port 1234 cport 5678`.
pub fn field(line: &str, key: &str) -> Result<u64, String> {
    let mut it = line.split_whitespace();
    while let Some(k) = it.next() {
        let v = it.next();
        if k == key {
            return v
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{key} in {line:?}"));
        }
    }
    Err(format!("no {key} in {line:?}"))
}

/// Runs a helper mode if the arguments ask for one; returns whether it did.
pub fn main_if_helper() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        return false;
    };
    if !mode.starts_with("--adv-") {
        return false;
    }
    let rest: Vec<&str> = args[1..].iter().map(|s| s.as_str()).collect();
    let r = crate::t_adv_socket::helper(mode, &rest)
        .or_else(|| crate::t_adv_blind::helper(mode, &rest))
        .unwrap_or_else(|| Err(format!("unknown helper mode {mode}")));
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    }
}

/// Prints one line at once (helpers talk to the test through a pipe).
pub fn say(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

// Waiting.

/// Polls `cond` every 20 ms until it holds or `secs` pass; whether it held.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The syscall a task is blocked in (`/proc/PID/task/TID/syscall`'s first field), if any.
pub fn blocked_in(pid: u32, tid: u32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The thread ids of a process.
pub fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a sysctl (or any /proc or /sys file); returns what it held before.
pub fn set_knob(path: &str, value: &str) -> Result<String, String> {
    let old = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    std::fs::write(path, value).map_err(|e| format!("write {value} to {path}: {e}"))?;
    Ok(old.trim().to_owned())
}

/// `ip ARGS...`, failing on a nonzero exit.
pub fn ip(args: &str) -> Result<(), String> {
    sys::run_ok("ip", &args.split_whitespace().collect::<Vec<_>>()).map(|_| ())
}

/// A counter of `/proc/net/netstat` or `/proc/net/snmp` (`TcpExt` `TCPFastOpenPassive`, say).
pub fn netstat(group: &str, name: &str) -> Result<u64, String> {
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [keys, vals] = pair else { continue };
            let prefix = format!("{group}:");
            if !keys.starts_with(&prefix) || !vals.starts_with(&prefix) {
                continue;
            }
            let ks = keys.split_whitespace().skip(1);
            let vs = vals.split_whitespace().skip(1);
            for (k, v) in ks.zip(vs) {
                if k == name {
                    return v.parse().map_err(|_| format!("{name} = {v}"));
                }
            }
        }
    }
    Err(format!("no {group} {name}"))
}

/// Reads until `done` says enough arrived or `secs` pass, then for 300 ms more, so that records
/// that should not exist but follow the expected ones are seen too.
pub fn gather(
    d: &crate::dev::Dev,
    secs: u64,
    done: impl Fn(&[Rec]) -> bool,
) -> Result<Vec<Rec>, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut recs = Vec::new();
    loop {
        recs.extend(d.drain()?);
        if done(&recs) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    recs.extend(d.drain()?);
    Ok(recs)
}

/// The summaries among `recs` whose ports are `a` and `b`, either way round.
pub fn sums_between(recs: &[Rec], a: u16, b: u16) -> Vec<SummaryBody> {
    crate::fixtures::summaries(recs)
        .into_iter()
        .filter(|s| (s.lport, s.rport) == (a, b) || (s.lport, s.rport) == (b, a))
        .collect()
}

/// The TCP state, options and byte counters of a socket, from `TCP_INFO`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpInfo {
    pub state: u8,
    pub options: u8,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub bytes_retrans: u64,
    pub segs_out: u32,
    pub segs_in: u32,
}

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE_WAIT: u8 = 8;
/// `tcpi_options`: data sent in the SYN was acknowledged (TCP Fast Open).
pub const TCPI_OPT_SYN_DATA: u8 = 32;

/// Parses a `struct tcp_info` (offsets of Linux 7.3's uapi header).
pub fn parse_tcp_info(b: &[u8]) -> TcpInfo {
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap()))
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map_or(0, |s| u32::from_ne_bytes(s.try_into().unwrap()))
    };
    TcpInfo {
        state: b.first().copied().unwrap_or(0),
        options: b.get(5).copied().unwrap_or(0),
        bytes_acked: u64_at(120),
        bytes_received: u64_at(128),
        segs_out: u32_at(136),
        segs_in: u32_at(140),
        bytes_sent: u64_at(200),
        bytes_retrans: u64_at(208),
    }
}

pub const TCP_INFO_LEN: usize = 280;

pub fn tcp_info(fd: RawFd) -> Result<TcpInfo, String> {
    getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, TCP_INFO_LEN)
        .map(|b| parse_tcp_info(&b))
        .map_err(|e| format!("TCP_INFO: {}", errno_name(e)))
}

// A destination whose SYNs leave and are never answered.

/// Where SYNs go and are dropped: 10.66.0.2, behind the veth `tbh0`. The peer end sits, up and
/// without an address, in namespace `tlbh`; a permanent neighbour entry sends the frames there
/// with a MAC address that is not its own, so it drops them (PACKET_OTHERHOST) and nothing, not
/// even an ICMP error, comes back.
pub const BLACKHOLE: [u8; 4] = [10, 66, 0, 2];

pub fn blackhole() -> Result<(), String> {
    if std::path::Path::new("/run/netns/tlbh").exists() {
        return Ok(());
    }
    sys::run_ok("modprobe", &["veth"])?;
    for cmd in [
        "netns add tlbh",
        "link add tbh0 type veth peer name tbh1 netns tlbh",
        "addr add 10.66.0.1/24 dev tbh0",
        "link set tbh0 up",
        "-n tlbh link set tbh1 address 02:00:00:00:66:01",
        "-n tlbh link set tbh1 up",
        "neigh replace 10.66.0.2 lladdr 02:00:00:00:66:02 dev tbh0 nud permanent",
    ] {
        ip(cmd)?;
    }
    Ok(())
}

/// Checks that the kernel log holds no memory-safety report (KASAN, KFENCE, UBSAN, BUG, WARN,
/// Oops); the offending lines otherwise.
pub fn kernel_log_clean() -> TestResult {
    let log = sys::dmesg();
    let bad: Vec<&str> = log.lines().filter(|l| crate::klog::is_report(l)).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("kernel log:\n{}", bad.join("\n")))
    }
}

// Connections.

fn rawfd(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// A listener on the loopback address of `family`, and its port.
pub fn listener(family: i32) -> Result<(OwnedFd, u16), String> {
    let l = socket(family, libc::SOCK_STREAM, 0)?;
    setsockopt_int(rawfd(&l), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(errno_name)?;
    bind(&l, &Sa::lo(family, 0))?;
    listen(&l, 64)?;
    let port = local(&l)?.port();
    Ok((l, port))
}

/// A connected pair over loopback: (client, server, listener port, client port).
pub fn pair(family: i32) -> Result<(OwnedFd, OwnedFd, u16, u16), String> {
    let (l, port) = listener(family)?;
    let c = socket(family, libc::SOCK_STREAM, 0)?;
    connect(&c, &Sa::lo(family, port))?;
    let s = accept(&l)?;
    let cport = local(&c)?.port();
    Ok((c, s, port, cport))
}

pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// The client's and the server's summaries of the connection between `port` (server) and
/// `cport` (client), checked for exact bytes, orderly closes, full tracking and owner `pid`.
pub fn check_exact(
    recs: &[Rec],
    port: u16,
    cport: u16,
    up: u64,
    down: u64,
    owner: u32,
) -> Result<(SummaryBody, SummaryBody), String> {
    let sums = sums_between(recs, port, cport);
    let show = || {
        sums.iter().fold(String::new(), |mut o, s| {
            o.push_str("\n  ");
            o.push_str(&sum_line(s));
            o
        })
    };
    ensure_eq!(sums.len(), 2, "summaries of {cport} -> {port}:{}", show());
    let cl = sums
        .iter()
        .find(|s| s.lport == cport)
        .ok_or("no client summary")?;
    let sv = sums
        .iter()
        .find(|s| s.lport == port)
        .ok_or("no server summary")?;
    for s in [cl, sv] {
        sane_summary(s)?;
        ensure_eq!(s.flags & abi::SUMF_PARTIAL, 0, "partial: {}", sum_line(s));
        ensure_eq!(s.pid, owner, "owner of {}", sum_line(s));
        ensure_eq!(s.uid, 0, "owner uid");
    }
    ensure_eq!(
        (cl.bytes_sent, cl.bytes_received),
        (up, down),
        "client bytes: {}",
        sum_line(cl)
    );
    ensure_eq!(
        (sv.bytes_sent, sv.bytes_received),
        (down, up),
        "server bytes: {}",
        sum_line(sv)
    );
    ensure_eq!((cl.open, sv.open), (open::ACTIVE, open::PASSIVE), "open");
    ensure_eq!((cl.close, sv.close), (close::FIN, close::FIN), "close");
    Ok((*cl, *sv))
}
