//! What the device, cycle and peer adversarial tests share: the seed and a small generator drawn
//! from it, child processes that may get stuck in the kernel, the kernel log since a point in
//! time, and whether the module can still be unloaded. (Notes go through `adv.rs`, shared with
//! the socket suites.)
//!
//! The seed comes from the kernel command line (`tlvm_seed=N`, which the kernel hands to init as
//! an environment variable; `TCPLOG_VM_SEED=N ./qemu-test/run-vm.sh test FILTER` puts it there),
//! else from the clock. Every test prints it, and draws from a generator seeded with it and the
//! test's name, so that one test run on its own (with a filter) repeats the same choices.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{Harness, TestResult};
use crate::sys;

/// The suite's seed.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("tlvm_seed")
            .ok()
            .or_else(|| std::env::var("TCPLOG_VM_SEED").ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                // Small enough to type back in.
                (t.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_000
            })
    })
}

/// `full` scaled to the suite's size: `tlvm_adv_percent=N` on the kernel command line runs N% of
/// the full size (the debug lane runs a quarter: KASAN and lockdep under emulation make every call
/// several times slower); 100 by default.
pub fn scaled(full: u64) -> u64 {
    let percent = std::env::var("tlvm_adv_percent")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    (full * percent / 100).max(1)
}

/// splitmix64: small, fast, and good enough to choose test inputs.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of the test called `name`.
    pub fn for_test(name: &str) -> Rng {
        // FNV-1a of the name, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(seed() ^ h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_ne_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Leaves a line for the harness to print after the test's result (the adversarial suites'
/// one notes mechanism, in `adv.rs`).
pub use crate::adv::note;

/// Runs a test as [`crate::adv::run`] does (result, then notes), then the seed and the time it
/// took.
pub fn run(h: &mut Harness, name: &str, test: impl FnOnce() -> TestResult) {
    let t = Instant::now();
    let mut ran = false;
    crate::adv::run(h, name, || {
        ran = true;
        test()
    });
    if ran {
        h.note(&format!(
            "  seed {} (TCPLOG_VM_SEED={} repeats it), {:.1} s",
            seed(),
            seed(),
            t.elapsed().as_secs_f64()
        ));
    }
}

static PINNED: Mutex<Option<String>> = Mutex::new(None);

/// Records that the module can no longer be unloaded (a descriptor is held by a process stuck in
/// the kernel), and why.
pub fn set_pinned(why: String) {
    let mut p = PINNED.lock().unwrap();
    if p.is_none() {
        *p = Some(why);
    }
}

/// Why the module cannot be unloaded, if it cannot.
pub fn pinned() -> Option<String> {
    PINNED.lock().unwrap().clone()
}

/// Fails at once, without running anything, if the module cannot be unloaded.
pub fn need_rmmod() -> TestResult {
    match pinned() {
        Some(why) => Err(format!(
            "not run: the module cannot be unloaded any more: {why}"
        )),
        None => Ok(()),
    }
}

/// Unloads the module if loaded, then loads it with `params`; with the module pinned, leaves it
/// as it is and says so in a note.
pub fn reload_if_possible(params: &[&str]) -> Result<(), String> {
    if let Some(why) = pinned() {
        note(format!(
            "module not reloaded with {params:?} (pinned: {why})"
        ));
        sys::ensure_loaded();
        return Ok(());
    }
    crate::dev::reload(params)
}

/// Forks a child that runs `f` and exits with what it returns.
///
/// `f` runs in a copy of a multithreaded process: it must only make system calls (no allocation,
/// no locks, no printing).
pub fn fork_child(f: impl FnOnce() -> i32) -> Result<i32, String> {
    // SAFETY: The child runs only `f`, which by this function's contract only makes system
    // calls, then `_exit`s without running destructors or atexit handlers.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", sys::errno_name(sys::errno())));
    }
    if pid == 0 {
        let code = f();
        // SAFETY: Ends the child.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits up to `timeout` for a child to end; its wait status, or None if it is still there.
pub fn wait_for(pid: i32, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: Waiting for our own child, without blocking.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid || (rc < 0 && sys::errno() == libc::ECHILD) {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a task is doing: its state, where it sleeps, its kernel stack (as root may read it).
pub fn describe_task(pid: i32, tid: i32) -> String {
    let base = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or("?")
        .to_owned();
    let wchan = std::fs::read_to_string(format!("{base}/wchan")).unwrap_or_default();
    let stack = std::fs::read_to_string(format!("{base}/stack")).unwrap_or_default();
    let stack: Vec<&str> = stack
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(l))
        .take(8)
        .collect();
    format!(
        "task {tid} state {state}, wchan {}, stack [{}]",
        if wchan.is_empty() { "?" } else { &wchan },
        stack.join(" < ")
    )
}

/// Kills a child with SIGKILL and reaps it. If it does not end within `timeout`, it is stuck in
/// the kernel: the error says where, the module is marked pinned when `holds_device`, and the
/// child's threads are moved to SCHED_IDLE, so that if they spin they take only the CPU time
/// that nothing else wants.
pub fn kill_and_reap(pid: i32, timeout: Duration, holds_device: bool) -> Result<(), String> {
    // SAFETY: Signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if wait_for(pid, timeout).is_some() {
        return Ok(());
    }
    let why = format!(
        "child {pid} survived SIGKILL for {:?}: {}",
        timeout,
        describe_task(pid, pid)
    );
    quarantine(pid);
    if holds_device {
        set_pinned(why.clone());
    }
    Err(why)
}

/// The thread ids of a process.
pub fn tasks_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Moves every thread of a process to SCHED_IDLE.
pub fn quarantine(pid: i32) {
    let p = libc::sched_param { sched_priority: 0 };
    for tid in tasks_of(pid) {
        // SAFETY: Changes only the scheduling class of a task of ours.
        unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &p) };
    }
}

/// The symbolic name of an errno, for the ones the adversarial tests meet.
pub fn ename(e: i32) -> String {
    match e {
        libc::ESPIPE => "ESPIPE".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EMFILE => "EMFILE".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::ENOBUFS => "ENOBUFS".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::EMSGSIZE => "EMSGSIZE".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::ECHILD => "ECHILD".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EIO => "EIO".into(),
        libc::ERESTART => "ERESTART".into(),
        512..=530 => format!("kernel-internal errno {e}"),
        _ => sys::errno_name(e),
    }
}

/// The kernel's own time stamp of a `dmesg` line, in seconds.
fn stamp(line: &str) -> Option<f64> {
    let l = line.strip_prefix('[')?;
    l.split_once(']')?.0.trim().parse().ok()
}

/// A point in the kernel log: the time stamp of its last line.
pub fn log_mark() -> f64 {
    sys::dmesg().lines().filter_map(stamp).fold(0.0, f64::max)
}

/// Kernel log lines since `mark` that report a bug, a stall or a lockup.
pub fn reports_since(mark: f64) -> Vec<String> {
    sys::dmesg()
        .lines()
        .filter(|l| stamp(l).is_some_and(|t| t > mark))
        .filter(|l| crate::klog::is_report(l))
        .map(str::to_owned)
        .collect()
}

/// Fails if the kernel reported anything since `mark`; the report's first lines are the error.
pub fn no_reports_since(mark: f64) -> TestResult {
    let r = reports_since(mark);
    if r.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = sys::dmesg()
        .lines()
        .filter(|l| stamp(l).is_some_and(|t| t > mark))
        .take(60)
        .map(str::to_owned)
        .collect();
    Err(format!(
        "the kernel reported {} problem line(s); the log since the test began:\n{}",
        r.len(),
        all.join("\n")
    ))
}

/// The thread id of the caller.
pub fn gettid() -> i32 {
    // SAFETY: No arguments, no memory.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// An anonymous private mapping with protection `prot`.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: The mapping is plain memory; users coordinate access themselves (the tests hand it to
// the kernel to write into, or deliberately make it inaccessible).
unsafe impl Send for Mapping {}
// SAFETY: As above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new(len: usize, prot: i32) -> Result<Mapping, String> {
        // SAFETY: A fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", sys::errno_name(sys::errno())));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Unmaps exactly the mapping this value made.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Opens the device with raw flags; the descriptor or the errno.
pub fn open_dev(flags: i32) -> Result<i32, i32> {
    // SAFETY: A NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/tcplog".as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(sys::errno())
    } else {
        Ok(fd)
    }
}
