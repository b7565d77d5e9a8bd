//! 100,000 random calls on `/dev/tcplog` from several threads, in a child process of its own
//! (`tcplog-vm-tests --adv-fuzz SEED CALLS THREADS`), so that a call stuck in the kernel for good
//! cannot take the suite with it.
//!
//! The threads share eight descriptors (fixed numbers 200 to 207, reopened with random flags,
//! mostly non-blocking, and closed under each other's feet) and make these calls, each checked against the errnos it may
//! give:
//!
//! | call | allowed outcome |
//! | --- | --- |
//! | read, any length and buffer | a buffer in the kernel's half: EFAULT (access_ok), even for length 0. Else length 0: 0. Else whole records (a multiple of 8 bytes, no more than asked, parsed when the buffer is ours), or EAGAIN, EINTR, EBADF; EINVAL only for lengths below 8192 (the largest record); EFAULT only when the buffer is not writable for the length; never bytes into memory that is not writable |
//! | readv | as read, without parsing |
//! | ioctl, tcplog's commands exactly | 0; EFAULT only when the argument cannot be read or written as the command needs; EINVAL only for SET_CONFIG, SET_FILTER, SET_RULES, MARK; EBADF (read-only or closed descriptor); EINTR; never success on an argument it could not have read or written, nor a state change through a read-only descriptor |
//! | ioctl, type 0xB9, anything else | ENOTTY, EBADF |
//! | ioctl, other types | 0, ENOTTY, EINVAL, EFAULT, EBADF, EOPNOTSUPP, EPERM |
//! | poll, epoll | a count, EINTR, EBADF (epoll_ctl of a closed descriptor), EFAULT only for a read-only pollfd array |
//! | write, lseek, mmap | EINVAL or EBADF; ESPIPE or EBADF; ENODEV, EACCES or EBADF |
//! | close, reopen (dup2), fstat | 0 or EBADF |
//! | fork: a child reads or polls an inherited descriptor, the parent replaces its own or kills the child | the child ends: by itself, or on SIGKILL |
//!
//! Meanwhile one thread writes a MARK every 2 ms (so every blocked read has something to
//! return), another sends SIGUSR1 to random workers (handler with and without SA_RESTART, in
//! turns), and a watchdog reports any call that has not returned within 10 s, with the thread's
//! kernel stack. ENABLE and DISABLE go through at most once every two seconds (STATUS instead).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, Pod};

use crate::adv_kit::ename as errno_name;
use crate::adv_kit::{self as adv, note, open_dev, Mapping, Rng};
use crate::dev::{self, Dev};
use crate::ensure;
use crate::harness::TestResult;
use crate::sys;

/// Calls made at the suite's full size (see `adv::scaled`).
pub const CALLS: u64 = 100_000;
pub const THREADS: usize = 8;
const SLOTS: i32 = 8;
const SLOT_BASE: i32 = 200;
const STUCK: Duration = Duration::from_secs(10);
/// Where the kernel's half of the address space begins.
const KERNEL_HALF: u64 = 1 << 63;
const VALID_LEN: usize = 8 << 20;

/// The test: runs the fuzzer in a child process and judges what it reports.
pub fn run_fuzz() -> TestResult {
    adv::reload_if_possible(&["ring_kib=64"])?;
    let mark = adv::log_mark();
    let seed = Rng::for_test("fuzz").next_u64();
    if no_zero_reads() {
        note("zero-length reads left out (tlvm_fuzz_nozero)");
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(me)
        .args([
            "--adv-fuzz",
            &seed.to_string(),
            &adv::scaled(CALLS).to_string(),
            &THREADS.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn the fuzzer: {e}"))?;
    let pid = child.id() as i32;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let (mut violations, mut stuck, mut stats) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = None;
    while done.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                if let Some(v) = l.strip_prefix("violation ") {
                    violations.push(v.to_owned());
                } else if let Some(s) = l.strip_prefix("stuck ") {
                    stuck.push(s.to_owned());
                } else if let Some(s) = l.strip_prefix("pinned ") {
                    adv::set_pinned(s.to_owned());
                } else if let Some(s) = l.strip_prefix("stat ") {
                    stats.push(s.to_owned());
                } else if let Some(d) = l.strip_prefix("done ") {
                    done = Some(d.to_owned());
                }
            }
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    // The fuzzer exits after its last line; a thread stuck in the kernel keeps it from ending.
    let ended = adv::wait_for(pid, Duration::from_secs(10)).is_some()
        || adv::kill_and_reap(pid, Duration::from_secs(5), true).is_ok();
    if !ended {
        let tasks: Vec<String> = adv::tasks_of(pid)
            .into_iter()
            .map(|tid| adv::describe_task(pid, tid))
            .collect();
        stuck.push(format!("the fuzzer survives SIGKILL: {}", tasks.join("; ")));
    }
    note(format!(
        "fuzzer seed {seed}: {}, in {:.1} s",
        done.as_deref().unwrap_or("no final line"),
        took.as_secs_f64()
    ));
    for s in &stats {
        note(s.clone());
    }
    restore()?;
    adv::no_reports_since(mark)?;
    let mut failures = Vec::new();
    if !stuck.is_empty() {
        failures.push(format!(
            "{} call(s) never returned: {}",
            stuck.len(),
            stuck.join(" | ")
        ));
    }
    if done.is_none() {
        failures.push(format!("the fuzzer did not finish within {took:?}"));
    }
    if !violations.is_empty() {
        failures.push(format!(
            "call(s) gave what they may not (the first {}): {}",
            violations.len(),
            violations.join(" | ")
        ));
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// With `tlvm_fuzz_nozero=1` on the kernel command line, reads (and readv segments) of length 0
/// are left out: to see what else the fuzzer finds on a module where such reads never return.
fn no_zero_reads() -> bool {
    std::env::var("tlvm_fuzz_nozero").is_ok_and(|v| v == "1")
}

/// Puts back what random state-changing calls may have changed.
fn restore() -> Result<(), String> {
    let d = Dev::rw()?;
    d.set_config(&abi::Config::DEFAULT).map_err(errno_name)?;
    crate::fixtures::set_filter(&d, &abi::Filter::default())?;
    let mut rules = abi::RuleSet::default();
    d.ioctl(abi::TCPLOG_IOC_SET_RULES, &mut rules)
        .map_err(errno_name)?;
    d.ioctl_none(abi::TCPLOG_IOC_ENABLE).map_err(errno_name)?;
    Ok(())
}

/// Runs the fuzzer if the arguments ask for it; returns whether it did.
pub fn main_if_fuzz() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--adv-fuzz") {
        return false;
    }
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let code = match fuzz_main(num(2), num(3), num(4) as usize) {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("violation setup: {e}"));
            say("done calls=0 (setup failed)");
            1
        }
    };
    // Not `exit`: threads stuck in the kernel would keep destructors waiting.
    // SAFETY: Ends the process.
    unsafe { libc::_exit(code) }
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Read,
    Readv,
    IoctlKnown,
    IoctlTcplog,
    IoctlOther,
    Poll,
    Epoll,
    Reopen,
    Close,
    Fork,
    Write,
    Lseek,
    Mmap,
    Fstat,
}

const WEIGHTS: [(Kind, u64); 14] = [
    (Kind::Read, 30),
    (Kind::Readv, 4),
    (Kind::IoctlKnown, 18),
    (Kind::IoctlTcplog, 10),
    (Kind::IoctlOther, 6),
    (Kind::Poll, 12),
    (Kind::Epoll, 3),
    (Kind::Reopen, 7),
    (Kind::Close, 2),
    (Kind::Fork, 1),
    (Kind::Write, 2),
    (Kind::Lseek, 2),
    (Kind::Mmap, 1),
    (Kind::Fstat, 1),
];

/// Where a call's buffer or argument points.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ptr {
    /// The thread's own 8 MiB, guarded by an inaccessible page.
    Valid,
    /// The same, 1 to 7 bytes in.
    Misaligned,
    /// A page followed by an inaccessible one, some way before the boundary.
    Straddle,
    ReadOnly,
    NoAccess,
    Null,
    Low,
    Kernel,
}

/// Good buffers three times out of eleven, so that plenty of calls get as far as copying.
const PTRS: [Ptr; 11] = [
    Ptr::Valid,
    Ptr::Valid,
    Ptr::Valid,
    Ptr::Misaligned,
    Ptr::Straddle,
    Ptr::ReadOnly,
    Ptr::NoAccess,
    Ptr::Null,
    Ptr::Low,
    Ptr::Kernel,
    Ptr::Straddle,
];

/// Memory the threads share: none of it writable, so no thread's bytes can change under
/// another's parse.
struct Mem {
    ro: Mapping,
    none: Mapping,
}

/// A thread's own memory: 8 MiB and a page, each followed by an inaccessible page.
struct Own {
    buf: Mapping,
    straddle: Mapping,
}

impl Own {
    fn new() -> Result<Own, String> {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let buf = Mapping::new(VALID_LEN + 4096, rw)?;
        let straddle = Mapping::new(8192, rw)?;
        // SAFETY: The last page of each of our own mappings.
        unsafe {
            libc::mprotect(buf.ptr.add(VALID_LEN).cast(), 4096, libc::PROT_NONE);
            libc::mprotect(straddle.ptr.add(4096).cast(), 4096, libc::PROT_NONE);
        }
        Ok(Own { buf, straddle })
    }
}

/// A pointer of kind `p`: (address, bytes writable from it, bytes readable from it).
fn pointer(p: Ptr, own: &Own, mem: &Mem, rng: &mut Rng) -> (usize, usize, usize) {
    match p {
        Ptr::Valid => (own.buf.addr(), VALID_LEN, VALID_LEN),
        Ptr::Misaligned => {
            let off = rng.range(1, 7) as usize;
            (own.buf.addr() + off, VALID_LEN - off, VALID_LEN - off)
        }
        Ptr::Straddle => {
            let room = rng.range(1, 4096) as usize;
            (own.straddle.addr() + 4096 - room, room, room)
        }
        Ptr::ReadOnly => (mem.ro.addr() + 8 * rng.below(512) as usize, 0, 4096),
        Ptr::NoAccess => (mem.none.addr() + 8 * rng.below(512) as usize, 0, 0),
        Ptr::Null => (0, 0, 0),
        Ptr::Low => (rng.pick(&[8usize, 0x1000, 0xfff0]), 0, 0),
        Ptr::Kernel => (
            rng.pick(&[
                0xffff_8880_0000_0000usize,
                0xffff_ffff_8100_0000,
                0xffff_ffff_ff60_0000,
                0x8000_0000_0000_0000,
                0xffff_ffff_ffff_fff8,
            ]),
            0,
            0,
        ),
    }
}

struct Worker {
    tid: AtomicI32,
    /// Milliseconds since the start when the current call began, plus one; 0 between calls.
    busy_since: AtomicU64,
    what: Mutex<String>,
    stuck: AtomicBool,
    done: AtomicBool,
}

struct Shared {
    t0: Instant,
    /// When the last ENABLE or DISABLE went through (ms since the start, plus one), and how many.
    last_toggle: AtomicU64,
    toggles: AtomicU64,
    calls: AtomicU64,
    by_kind: Mutex<BTreeMap<(Kind, String), u64>>,
    violations: AtomicU64,
    workers: Vec<Worker>,
    stop: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// ENABLE and DISABLE at most once every two seconds (else STATUS): each re-registers every
    /// hook of the module, which is slow under emulation and patches kernel text, and QEMU's
    /// multi-threaded TCG can fault on text being patched (see `t_adv_cycles`).
    fn toggle_or_status(&self, cmd: u32) -> u32 {
        if cmd != abi::TCPLOG_IOC_ENABLE && cmd != abi::TCPLOG_IOC_DISABLE {
            return cmd;
        }
        let now = self.now_ms() + 1;
        let last = self.last_toggle.load(Ordering::Relaxed);
        if (last == 0 || now - last >= 2000)
            && self
                .last_toggle
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.toggles.fetch_add(1, Ordering::Relaxed);
            cmd
        } else {
            abi::TCPLOG_IOC_STATUS
        }
    }

    fn violation(&self, what: &str, why: &str) {
        if self.violations.fetch_add(1, Ordering::Relaxed) < 20 {
            say(&format!("violation {what}: {why}"));
        }
    }

    fn outcome(&self, kind: Kind, rc: &Result<isize, i32>) {
        let key = match rc {
            Ok(_) => "ok".to_owned(),
            Err(e) => errno_name(*e),
        };
        *self.by_kind.lock().unwrap().entry((kind, key)).or_default() += 1;
    }
}

fn ret(rc: isize) -> Result<isize, i32> {
    if rc < 0 {
        Err(sys::errno())
    } else {
        Ok(rc)
    }
}

fn slot_fd(rng: &mut Rng) -> i32 {
    SLOT_BASE + rng.below(SLOTS as u64) as i32
}

fn random_open_flags(rng: &mut Rng) -> i32 {
    let mode = rng.pick(&[
        libc::O_RDONLY,
        libc::O_RDONLY,
        libc::O_RDONLY,
        libc::O_RDWR,
        libc::O_RDWR,
        libc::O_RDWR,
        libc::O_RDWR,
        libc::O_WRONLY,
    ]);
    // Mostly non-blocking: blocking reads of one descriptor queue behind each other, each
    // waiting for the next record, and a fifth of them is enough to keep that path busy.
    mode | if rng.percent(80) { libc::O_NONBLOCK } else { 0 }
}

/// Opens a descriptor with random flags at `fd`'s number, replacing what was there.
fn reopen(fd: i32, rng: &mut Rng) -> Result<isize, i32> {
    let tmp = open_dev(random_open_flags(rng))?;
    // SAFETY: Plain descriptor calls; the slot numbers belong to the fuzzer.
    let rc = unsafe { libc::dup2(tmp, fd) };
    let r = ret(rc as isize);
    // SAFETY: Our temporary descriptor.
    unsafe { libc::close(tmp) };
    r
}

fn fuzz_main(seed: u64, calls: u64, threads: usize) -> Result<(), String> {
    crate::t_adv_device::sigusr1_handler(false)?;
    let mut rng = Rng::new(seed);
    let mem = Arc::new(Mem {
        ro: Mapping::new(64 << 10, libc::PROT_READ)?,
        none: Mapping::new(64 << 10, libc::PROT_NONE)?,
    });
    for k in 0..SLOTS {
        reopen(SLOT_BASE + k, &mut rng).map_err(|e| format!("open: {}", errno_name(e)))?;
    }
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        last_toggle: AtomicU64::new(0),
        toggles: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        by_kind: Mutex::new(BTreeMap::new()),
        violations: AtomicU64::new(0),
        workers: (0..threads)
            .map(|_| Worker {
                tid: AtomicI32::new(0),
                busy_since: AtomicU64::new(0),
                what: Mutex::new(String::new()),
                stuck: AtomicBool::new(false),
                done: AtomicBool::new(false),
            })
            .collect(),
        stop: AtomicBool::new(false),
    });
    let per_thread = calls / threads as u64;
    let mut handles = Vec::new();
    for w in 0..threads {
        let (shared, mem) = (shared.clone(), mem.clone());
        let mut rng = Rng::new(rng.next_u64());
        handles.push(thread::spawn(move || {
            shared.workers[w]
                .tid
                .store(adv::gettid(), Ordering::Relaxed);
            let own = match Own::new() {
                Ok(m) => m,
                Err(e) => {
                    shared.violation("setup", &e);
                    shared.workers[w].done.store(true, Ordering::Relaxed);
                    return;
                }
            };
            for _ in 0..per_thread {
                one_call(&shared, w, &own, &mem, &mut rng);
            }
            shared.workers[w].done.store(true, Ordering::Relaxed);
        }));
    }
    // The ticker: a record every 2 ms, so that blocked reads always have something coming.
    let ticker = {
        let shared = shared.clone();
        thread::spawn(move || {
            let Ok(fd) = open_dev(libc::O_RDWR | libc::O_NONBLOCK) else {
                return;
            };
            while !shared.stop.load(Ordering::Relaxed) {
                let mut m = abi::Mark {
                    value: 0x71c,
                    count: 1,
                    _pad: 0,
                };
                // SAFETY: A valid `Mark`.
                unsafe { libc::ioctl(fd, abi::TCPLOG_IOC_MARK as _, &mut m) };
                thread::sleep(Duration::from_millis(2));
            }
            // SAFETY: Our descriptor.
            unsafe { libc::close(fd) };
        })
    };
    // The signaller: SIGUSR1 to random workers; SA_RESTART on and off every half second.
    let signaller = {
        let shared = shared.clone();
        let mut rng = Rng::new(rng.next_u64());
        thread::spawn(move || {
            let (mut sent, mut restart, mut flip) = (0u64, false, Instant::now());
            while !shared.stop.load(Ordering::Relaxed) {
                let w = &shared.workers[rng.below(shared.workers.len() as u64) as usize];
                let tid = w.tid.load(Ordering::Relaxed);
                if tid != 0 && !w.done.load(Ordering::Relaxed) {
                    // SAFETY: Signalling a thread of this process; the tid stays ours until
                    // the worker ends, and a finished worker is skipped.
                    unsafe {
                        libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1)
                    };
                    sent += 1;
                }
                if flip.elapsed() > Duration::from_millis(500) {
                    restart = !restart;
                    let _ = crate::t_adv_device::sigusr1_handler(restart);
                    flip = Instant::now();
                }
                thread::sleep(Duration::from_millis(rng.range(2, 10)));
            }
            sent
        })
    };
    // The watchdog, on this thread: every call returns within 10 s, or is reported.
    let mut last_progress = Instant::now();
    loop {
        let mut active = 0;
        for (i, w) in shared.workers.iter().enumerate() {
            if w.done.load(Ordering::Relaxed) || w.stuck.load(Ordering::Relaxed) {
                continue;
            }
            active += 1;
            let since = w.busy_since.load(Ordering::Relaxed);
            if since != 0 && shared.now_ms().saturating_sub(since - 1) > STUCK.as_millis() as u64 {
                w.stuck.store(true, Ordering::Relaxed);
                let what = w.what.lock().map(|s| s.clone()).unwrap_or_default();
                let tid = w.tid.load(Ordering::Relaxed);
                say(&format!(
                    "stuck worker {i} for {STUCK:?} in {what}: {}",
                    adv::describe_task(std::process::id() as i32, tid)
                ));
            }
        }
        if active == 0 {
            break;
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "tcplog-vm-tests fuzzer: {} calls",
                shared.calls.load(Ordering::Relaxed)
            );
            last_progress = Instant::now();
        }
        thread::sleep(Duration::from_millis(200));
    }
    shared.stop.store(true, Ordering::Relaxed);
    ticker.join().ok();
    let signals = signaller.join().unwrap_or(0);
    for (i, h) in handles.into_iter().enumerate() {
        if !shared.workers[i].stuck.load(Ordering::Relaxed) {
            h.join().ok();
        }
    }
    let by_kind = shared.by_kind.lock().unwrap().clone();
    let mut per: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for ((k, what), n) in by_kind {
        per.entry(k).or_default().push(format!("{what} {n}"));
    }
    for (k, v) in per {
        say(&format!("stat {k:?}: {}", v.join(", ")));
    }
    let stuck = shared
        .workers
        .iter()
        .filter(|w| w.stuck.load(Ordering::Relaxed))
        .count();
    say(&format!(
        "done calls={} threads={threads} signals={signals} enable/disable={} violations={} stuck={stuck}",
        shared.calls.load(Ordering::Relaxed),
        shared.toggles.load(Ordering::Relaxed),
        shared.violations.load(Ordering::Relaxed)
    ));
    Ok(())
}

fn pick_kind(rng: &mut Rng) -> Kind {
    let total: u64 = WEIGHTS.iter().map(|w| w.1).sum();
    let mut x = rng.below(total);
    for (k, w) in WEIGHTS {
        if x < w {
            return k;
        }
        x -= w;
    }
    Kind::Read
}

const READ_LENS: [usize; 19] = [
    0,
    1,
    7,
    39,
    40,
    41,
    79,
    80,
    81,
    4095,
    4096,
    65536,
    1 << 20,
    8 << 20,
    1 << 30,
    1 << 40,
    usize::MAX,
    isize::MAX as usize,
    12345,
];

fn one_call(sh: &Shared, w: usize, own: &Own, mem: &Mem, rng: &mut Rng) {
    let kind = pick_kind(rng);
    let fd = slot_fd(rng);
    let worker = &sh.workers[w];
    let begin = |what: String| {
        *worker.what.lock().unwrap() = what;
        worker.busy_since.store(sh.now_ms() + 1, Ordering::Relaxed);
    };
    match kind {
        Kind::Read => {
            let mut len = rng.pick(&READ_LENS);
            if len == 0 && no_zero_reads() {
                len = 1;
            }
            let p = rng.pick(&PTRS);
            let (addr, room, _) = pointer(p, own, mem, rng);
            begin(format!("read(fd {fd}, {p:?} {addr:#x}, {len})"));
            // SAFETY: The buffer is ours and writable for `room` bytes, or deliberately bad
            // (not ours to corrupt: read-only, inaccessible, or outside user memory); the
            // kernel's copies stop at the guard page after `room`.
            let rc = ret(unsafe { libc::read(fd, addr as *mut libc::c_void, len) });
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            if let Some(why) = judge_read(rc, p, addr, room, len) {
                sh.violation(&worker.what.lock().unwrap(), &why);
            }
        }
        Kind::Readv => {
            let n = rng.range(1, 3) as usize;
            let mut iov = Vec::with_capacity(n);
            for _ in 0..n {
                let p = rng.pick(&PTRS);
                let (addr, room, _) = pointer(p, own, mem, rng);
                let mut len = if p == Ptr::Valid || p == Ptr::Misaligned {
                    rng.pick(&[0usize, 1, 80, 4096, 65536]).min(room / n)
                } else {
                    rng.pick(&[0usize, 1, 80, 4096])
                };
                if len == 0 && no_zero_reads() {
                    len = 1;
                }
                iov.push(libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: len,
                });
            }
            let lens: Vec<usize> = iov.iter().map(|v| v.iov_len).collect();
            begin(format!("readv(fd {fd}, lengths {lens:?})"));
            // SAFETY: As for read; the segments of Valid buffers may overlap, which only
            // garbles bytes we do not parse.
            let rc = ret(unsafe { libc::readv(fd, iov.as_ptr(), n as i32) });
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            match rc {
                Ok(got) if got as usize > lens.iter().sum::<usize>() => sh.violation(
                    &worker.what.lock().unwrap(),
                    &format!("returned {got} bytes"),
                ),
                Err(e)
                    if ![
                        libc::EAGAIN,
                        libc::EINVAL,
                        libc::EFAULT,
                        libc::EINTR,
                        libc::EBADF,
                    ]
                    .contains(&e) =>
                {
                    sh.violation(&worker.what.lock().unwrap(), &errno_name(e))
                }
                _ => {}
            }
        }
        Kind::IoctlKnown | Kind::IoctlTcplog | Kind::IoctlOther => {
            let cmd = match kind {
                Kind::IoctlKnown => rng.pick(&KNOWN).0,
                Kind::IoctlTcplog => {
                    let dir = rng.below(4) as u32;
                    let nr = if rng.percent(80) {
                        rng.below(32) as u8
                    } else {
                        rng.below(256) as u8
                    };
                    let any = rng.below(1 << 14) as usize;
                    let size = rng.pick(&[
                        0usize,
                        4,
                        8,
                        16,
                        56,
                        std::mem::size_of::<abi::Status>(),
                        std::mem::size_of::<abi::Filter>(),
                        std::mem::size_of::<abi::RuleSet>(),
                        any,
                    ]);
                    abi::ioc(dir, abi::TCPLOG_IOC_TYPE, nr, size)
                }
                _ => other_cmd(rng),
            };
            let cmd = sh.toggle_or_status(cmd);
            let p = rng.pick(&PTRS);
            let (mut addr, writable, readable) = pointer(p, own, mem, rng);
            if p == Ptr::Valid || p == Ptr::Misaligned {
                fill_arg(cmd, addr, rng);
            }
            // Now and then a plain number where a pointer belongs.
            if rng.percent(3) {
                addr = rng.below(4) as usize;
            }
            begin(format!("ioctl(fd {fd}, {cmd:#010x}, {p:?} {addr:#x})"));
            let mode_before = fd_access(fd);
            // SAFETY: As for read: the argument is ours, or deliberately bad.
            let rc = ret(unsafe { libc::ioctl(fd, cmd as _, addr) } as isize);
            worker.busy_since.store(0, Ordering::Relaxed);
            let k = if KNOWN.iter().any(|c| c.0 == cmd) {
                Kind::IoctlKnown
            } else if (cmd >> 8) & 0xff == u32::from(abi::TCPLOG_IOC_TYPE) {
                Kind::IoctlTcplog
            } else {
                Kind::IoctlOther
            };
            sh.outcome(k, &rc);
            // Another thread may have reopened the descriptor meanwhile: only a mode seen before
            // and after the call counts.
            let mode_after = fd_access(fd);
            let fd_mode = if mode_before == mode_after {
                mode_after
            } else {
                -1
            };
            let small = addr < 4;
            if let Some(why) = judge_ioctl(k, cmd, rc, readable, writable, small, fd_mode) {
                sh.violation(&worker.what.lock().unwrap(), &why);
            }
        }
        Kind::Poll => {
            let n = rng.range(1, 4) as usize;
            let timeout = rng.pick(&[0, 1, 5, 10]);
            let in_ro = rng.percent(5);
            let mut fds: Vec<libc::pollfd> = (0..n)
                .map(|_| libc::pollfd {
                    fd: slot_fd(rng),
                    events: libc::POLLIN | (rng.below(0x40) as i16 & !libc::POLLIN),
                    revents: 0,
                })
                .collect();
            let ptr = if in_ro {
                mem.ro.ptr.cast::<libc::pollfd>()
            } else {
                fds.as_mut_ptr()
            };
            begin(format!(
                "poll({n} fds, {timeout} ms, read-only array {in_ro})"
            ));
            // SAFETY: `ptr` points at `n` pollfds: ours, or a read-only page's zeros.
            let rc = ret(unsafe { libc::poll(ptr, n as libc::nfds_t, timeout) } as isize);
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            if let Err(e) = rc {
                if e != libc::EINTR && !(in_ro && e == libc::EFAULT) {
                    sh.violation(&worker.what.lock().unwrap(), &errno_name(e));
                }
            }
        }
        Kind::Epoll => {
            begin(format!("epoll on fd {fd}"));
            // SAFETY: Plain epoll calls on a descriptor of our own.
            let rc = unsafe {
                let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
                let mut ev = libc::epoll_event {
                    events: (libc::EPOLLIN
                        | if rng.percent(30) { libc::EPOLLET } else { 0 }
                        | if rng.percent(20) {
                            libc::EPOLLONESHOT
                        } else {
                            0
                        }) as u32,
                    u64: 0,
                };
                let mut rc = ret(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) as isize);
                if rc.is_ok() {
                    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
                    rc = ret(
                        libc::epoll_wait(ep, out.as_mut_ptr(), 2, rng.range(0, 10) as i32) as isize,
                    );
                }
                libc::close(ep);
                rc
            };
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            if let Err(e) = rc {
                if e != libc::EINTR && e != libc::EBADF {
                    sh.violation(&worker.what.lock().unwrap(), &errno_name(e));
                }
            }
        }
        Kind::Reopen | Kind::Close => {
            begin(format!("{kind:?} fd {fd}"));
            let rc = if kind == Kind::Reopen {
                reopen(fd, rng)
            } else {
                // SAFETY: A slot number of ours; another thread may be using it, which is
                // the point.
                ret(unsafe { libc::close(fd) } as isize)
            };
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            if let Err(e) = rc {
                if e != libc::EBADF {
                    sh.violation(&worker.what.lock().unwrap(), &errno_name(e));
                }
            }
        }
        Kind::Fork => fork_call(sh, w, fd, rng),
        Kind::Write | Kind::Lseek | Kind::Mmap | Kind::Fstat => {
            begin(format!("{kind:?} fd {fd}"));
            // SAFETY: Calls on a descriptor of ours with our own buffers; a mapping that
            // should not exist is removed at once.
            let rc = unsafe {
                match kind {
                    Kind::Write => ret(libc::write(
                        fd,
                        own.buf.ptr.cast(),
                        rng.below(4096) as usize,
                    )),
                    Kind::Lseek => {
                        ret(libc::lseek(fd, rng.below(1000) as i64, libc::SEEK_SET) as isize)
                    }
                    Kind::Mmap => {
                        let p = libc::mmap(
                            std::ptr::null_mut(),
                            4096,
                            libc::PROT_READ,
                            libc::MAP_SHARED,
                            fd,
                            0,
                        );
                        if p == libc::MAP_FAILED {
                            Err(sys::errno())
                        } else {
                            libc::munmap(p, 4096);
                            Ok(0)
                        }
                    }
                    _ => {
                        let mut st: libc::stat = std::mem::zeroed();
                        ret(libc::fstat(fd, &mut st) as isize)
                    }
                }
            };
            worker.busy_since.store(0, Ordering::Relaxed);
            sh.outcome(kind, &rc);
            let allowed: &[i32] = match kind {
                Kind::Write => &[libc::EINVAL, libc::EBADF],
                Kind::Lseek => &[libc::ESPIPE, libc::EBADF],
                Kind::Mmap => &[libc::ENODEV, libc::EACCES, libc::EBADF],
                _ => &[libc::EBADF],
            };
            let bad = match rc {
                Ok(_) => kind != Kind::Fstat,
                Err(e) => !allowed.contains(&e),
            };
            if bad {
                sh.violation(&worker.what.lock().unwrap(), &format!("{rc:?}"));
            }
        }
    }
    sh.calls.fetch_add(1, Ordering::Relaxed);
}

/// Whether a descriptor number is open, and for what: O_RDONLY, O_WRONLY, O_RDWR, or -1.
fn fd_access(fd: i32) -> i32 {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        -1
    } else {
        fl & libc::O_ACCMODE
    }
}

fn judge_read(
    rc: Result<isize, i32>,
    p: Ptr,
    addr: usize,
    room: usize,
    len: usize,
) -> Option<String> {
    // A range that starts in the kernel's half (or wraps) is refused by access_ok, whatever the
    // length; one that starts in user memory and runs past its end may be accepted (with
    // address masking the limit is 2^63), and then fails only where the copy faults.
    let kernel_range =
        addr as u64 >= KERNEL_HALF || (addr as u64).checked_add(len as u64).is_none();
    let ours = matches!(p, Ptr::Valid | Ptr::Misaligned | Ptr::Straddle);
    match rc {
        Err(libc::EBADF) => None,
        Err(libc::EFAULT) if kernel_range => None,
        _ if kernel_range => Some(format!(
            "{rc:?} for a buffer in the kernel's half (access_ok must refuse it)"
        )),
        _ if len == 0 => (rc != Ok(0)).then(|| format!("a zero-length read gave {rc:?}")),
        Err(libc::EFAULT) if !ours || len > room => None,
        Err(libc::EFAULT) => Some("EFAULT on a buffer writable for the length".into()),
        Err(libc::EINVAL) if len < abi::MAX_RECORD_LEN => None,
        Err(libc::EINVAL) => Some(format!("EINVAL with room for {len} bytes")),
        Err(libc::EAGAIN | libc::EINTR) => None,
        Err(e) => Some(format!("errno {}", errno_name(e))),
        Ok(0) => Some("returned 0 for a non-zero length".into()),
        Ok(n) => {
            let n = n as usize;
            if !ours {
                Some(format!("wrote {n} bytes into memory that is not writable"))
            } else if n > len || n > room || n % abi::RECORD_ALIGN != 0 {
                Some(format!("returned {n} bytes (room {room})"))
            } else {
                // SAFETY: The kernel wrote `n` bytes at `addr`, within our mapping.
                let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, n) };
                dev::parse(bytes)
                    .err()
                    .map(|e| format!("not whole records: {e}"))
            }
        }
    }
}

/// tcplog's commands: (command, reads its argument, writes it, changes state).
const KNOWN: [(u32, bool, bool, bool); 15] = [
    (abi::TCPLOG_IOC_VERSION, false, true, false),
    (abi::TCPLOG_IOC_ENABLE, false, false, true),
    (abi::TCPLOG_IOC_DISABLE, false, false, true),
    (abi::TCPLOG_IOC_STATUS, false, true, false),
    (abi::TCPLOG_IOC_FLUSH, true, true, true),
    (abi::TCPLOG_IOC_GET_CONFIG, false, true, false),
    (abi::TCPLOG_IOC_SET_CONFIG, true, false, true),
    (abi::TCPLOG_IOC_SEEK_END, false, false, false),
    (abi::TCPLOG_IOC_MARK, true, false, true),
    (abi::TCPLOG_IOC_SET_FILTER, true, false, true),
    (abi::TCPLOG_IOC_GET_FILTER, false, true, false),
    (abi::TCPLOG_IOC_SET_RULES, true, false, true),
    (abi::TCPLOG_IOC_GET_RULES, false, true, false),
    (abi::TCPLOG_IOC_GET_RULE_STATS, false, true, false),
    (abi::FIONREAD, false, true, false),
];

/// Generic ioctls the VFS handles itself, and others that are not tcplog's.
fn other_cmd(rng: &mut Rng) -> u32 {
    const FIONBIO: u32 = 0x5421;
    const FIOCLEX: u32 = 0x5451;
    const FIONCLEX: u32 = 0x5450;
    const FIOASYNC: u32 = 0x5452;
    const FIOQSIZE: u32 = 0x5460;
    const TCGETS: u32 = 0x5401;
    const TIOCGWINSZ: u32 = 0x5413;
    const SIOCGIFNAME: u32 = 0x8910;
    if rng.percent(60) {
        return rng.pick(&[
            FIONBIO,
            FIOCLEX,
            FIONCLEX,
            FIOASYNC,
            FIOQSIZE,
            TCGETS,
            TIOCGWINSZ,
            SIOCGIFNAME,
        ]);
    }
    // Anything, but not the types whose generic commands change the file system or the
    // inode (FS_IOC_*, FIFREEZE, FICLONE, ...) nor tcplog's own.
    loop {
        let c = rng.next_u64() as u32;
        let ty = (c >> 8) & 0xff;
        if ![0x66, 0x58, 0x94, 0x15, u32::from(abi::TCPLOG_IOC_TYPE)].contains(&ty) {
            return c;
        }
    }
}

/// Fills an argument in our own memory: zeros, random bytes, or a well-formed structure.
fn fill_arg(cmd: u32, addr: usize, rng: &mut Rng) {
    let mut buf = vec![0u8; 2048];
    match rng.below(3) {
        0 => {}
        1 => rng.fill(&mut buf),
        _ => match cmd {
            abi::TCPLOG_IOC_SET_CONFIG => {
                let mut c = abi::Config::DEFAULT;
                c.snap_len = rng.range(0, 4096) as u32;
                c.event_mask &= rng.next_u64();
                buf[..c.as_bytes().len()].copy_from_slice(c.as_bytes());
            }
            abi::TCPLOG_IOC_MARK => {
                let m = abi::Mark {
                    value: rng.next_u64(),
                    count: rng.range(1, 200) as u32,
                    _pad: 0,
                };
                buf[..m.as_bytes().len()].copy_from_slice(m.as_bytes());
            }
            _ => {}
        },
    }
    // SAFETY: `addr` is in the thread's own 8 MiB (at most 7 bytes in), room for 2048 bytes.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), addr as *mut u8, buf.len()) };
}

fn judge_ioctl(
    k: Kind,
    cmd: u32,
    rc: Result<isize, i32>,
    readable: usize,
    writable: usize,
    small: bool,
    fd_mode: i32,
) -> Option<String> {
    if rc == Err(libc::EBADF) {
        return None;
    }
    match k {
        Kind::IoctlKnown => {
            let (_, reads, writes, changes) = *KNOWN.iter().find(|c| c.0 == cmd)?;
            let size = abi::ioc_size(cmd).max(if cmd == abi::FIONREAD { 4 } else { 0 });
            let can_read = !small && readable >= size;
            let can_write = !small && writable >= size;
            let unreachable = (reads && !can_read) || (writes && !can_write);
            match rc {
                Ok(0) if changes && fd_mode == libc::O_RDONLY => {
                    Some("a state change through a read-only descriptor succeeded".into())
                }
                Ok(0) if unreachable => Some(format!(
                    "succeeded with an argument it cannot {} (readable {readable}, writable {writable})",
                    if writes && !can_write { "write" } else { "read" }
                )),
                Ok(0) => None,
                Ok(v) => Some(format!("returned {v}")),
                Err(libc::EFAULT) if unreachable => None,
                Err(libc::EFAULT) => Some("EFAULT on a good argument".into()),
                Err(libc::EINVAL)
                    if [
                        abi::TCPLOG_IOC_SET_CONFIG,
                        abi::TCPLOG_IOC_SET_FILTER,
                        abi::TCPLOG_IOC_SET_RULES,
                        abi::TCPLOG_IOC_MARK,
                    ]
                    .contains(&cmd) =>
                {
                    None
                }
                Err(libc::EINTR) => None,
                Err(e) => Some(errno_name(e)),
            }
        }
        Kind::IoctlTcplog => match rc {
            Err(libc::ENOTTY) => None,
            other => Some(format!("{other:?} for an unknown command of type 0xB9")),
        },
        _ => match rc {
            Ok(_) => None,
            Err(e) => (![
                libc::ENOTTY,
                libc::EINVAL,
                libc::EFAULT,
                libc::EOPNOTSUPP,
                libc::EPERM,
            ]
            .contains(&e))
            .then(|| errno_name(e)),
        },
    }
}

/// A child reads or polls an inherited descriptor; the parent replaces its own copy, or kills
/// the child. The child must end either way: its blocking read may rightly wait for a record that
/// never comes (logging off, nobody marking), so it arms SIGALRM, whose default action ends it,
/// and a read that signals cannot end is what this catches.
fn fork_call(sh: &Shared, w: usize, fd: i32, rng: &mut Rng) {
    let worker = &sh.workers[w];
    let poll = rng.percent(30);
    let kill = rng.percent(50);
    let delay = Duration::from_millis(rng.below(10));
    *worker.what.lock().unwrap() = format!(
        "fork: child {} fd {fd}, parent {}",
        if poll { "polls" } else { "reads" },
        if kill {
            "kills it"
        } else {
            "replaces the descriptor"
        }
    );
    worker.busy_since.store(sh.now_ms() + 1, Ordering::Relaxed);
    let child = adv::fork_child(|| {
        let mut buf = [0u8; 4096];
        // SAFETY: alarm() has no preconditions; then the inherited descriptor and a stack buffer.
        unsafe {
            libc::alarm(1);
            if poll {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut p, 1, 200);
            } else {
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            }
        }
        0
    });
    let rc = match child {
        Err(_) => Err(sys::errno()),
        Ok(pid) => {
            thread::sleep(delay);
            if kill {
                // SAFETY: Our child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            } else {
                let _ = reopen(fd, rng);
            }
            if adv::wait_for(pid, STUCK).is_some() {
                Ok(0)
            } else {
                let state = adv::describe_task(pid, pid);
                match adv::kill_and_reap(pid, Duration::from_secs(5), false) {
                    Ok(()) => sh.violation(
                        &worker.what.lock().unwrap(),
                        &format!("the child did not end within {STUCK:?}: {state}"),
                    ),
                    Err(e) => {
                        say(&format!("pinned {e}"));
                        sh.violation(&worker.what.lock().unwrap(), &e);
                    }
                }
                Ok(1)
            }
        }
    };
    worker.busy_since.store(0, Ordering::Relaxed);
    sh.outcome(Kind::Fork, &rc);
}
