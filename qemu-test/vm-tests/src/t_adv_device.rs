//! The device under attack: reads and waits that must end (on a record, a signal, SIGKILL), poll
//! beside a read stuck in a page fault, the largest MARK and whole-ring reads, signals and fork
//! around blocked reads, and 100,000 random calls from several threads (see `fuzz.rs`); after
//! all that, a fresh reader's accounting, and the module still unloads.
//!
//! Zero-length reads come after the others ([`last`]): on a module where such a read spins in the
//! kernel, the child that made it can never be killed, and the module never unloaded again; the
//! tests that need rmmod then say so instead of running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tcplog_ctl as abi;

use crate::adv_kit::ename as errno_name;
use crate::adv_kit::{self as adv, fork_child, kill_and_reap, note, open_dev, wait_for, Rng};
use crate::dev::{self, Dev};
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::uffd::{self, Uffd};
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    adv::run(
        h,
        "adv device: SIGKILL ends a read waiting for records, one faulting on its buffer, and one queued behind that",
        sigkill_ends_reads,
    );
    adv::run(
        h,
        "adv device: poll and epoll return at once while a read of the descriptor waits in a page fault",
        poll_beside_faulting_read,
    );
    adv::run(
        h,
        "adv device: MARK 65536 and whole-ring reads of a 64 MiB ring: no stall, no lockup",
        big_marks_and_reads,
    );
    adv::run(
        h,
        "adv device: SIGUSR1 and SIGKILL during blocked reads and polls; fork with an open descriptor",
        signals_and_fork,
    );
    adv::run(
        h,
        &format!(
            "adv device: {} random calls from {} threads: allowed errnos only, none hangs",
            adv::scaled(crate::fuzz::CALLS),
            crate::fuzz::THREADS
        ),
        crate::fuzz::run_fuzz,
    );
    adv::run(
        h,
        "adv device: afterwards, readers are counted right, a fresh reader's accounting holds, the module unloads",
        aftermath,
    );
}

/// Runs after every other adversarial test: see the module's documentation.
pub fn last(h: &mut Harness) {
    adv::run(
        h,
        "adv device: read(fd, buf, 0) returns 0 at once, with records waiting or not",
        zero_length_reads,
    );
}

fn mark_raw(fd: i32, value: u64, count: u32) -> i32 {
    let mut m = abi::Mark {
        value,
        count,
        _pad: 0,
    };
    // SAFETY: A valid `Mark` for the MARK command.
    unsafe { libc::ioctl(fd, abi::TCPLOG_IOC_MARK as _, &mut m) }
}

/// A child that opens the device, skips what is buffered and blocks in read (only system calls).
fn child_blocked_read() -> i32 {
    let Ok(fd) = open_dev(libc::O_RDONLY) else {
        return 2;
    };
    let mut buf = [0u8; 4096];
    // SAFETY: Plain system calls on our own descriptor and stack buffer.
    unsafe {
        libc::ioctl(fd, abi::TCPLOG_IOC_SEEK_END as _, 0);
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
    }
    0
}

/// A child whose read faults on a buffer registered with its own userfaultfd, which nobody
/// serves: the read waits in the fault until the child is killed.
fn child_faulting_read() -> i32 {
    // SAFETY: Only system calls, on memory and descriptors of this child.
    unsafe {
        let len = 4096;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return 2;
        }
        if uffd::raw_register(p as usize, len) < 0 {
            return 3;
        }
        let Ok(fd) = open_dev(libc::O_RDWR) else {
            return 4;
        };
        if mark_raw(fd, 0xfa, 1) != 0 {
            return 5;
        }
        libc::read(fd, p, len);
    }
    0
}

/// Holds a read of `fd` in a page fault on `u`'s region, on a thread of its own; returns when
/// the fault has happened.
fn start_faulting_read(fd: i32, u: &Uffd) -> Result<thread::JoinHandle<isize>, String> {
    let addr = u.region.addr();
    let t = thread::spawn(move || {
        // SAFETY: The region is ours and mapped; the kernel's copy into it faults and waits.
        unsafe { libc::read(fd, addr as *mut libc::c_void, 4096) }
    });
    u.wait_fault(5000)
        .map_err(|e| format!("the read did not fault on its buffer: {e}"))?;
    Ok(t)
}

fn sigkill_ends_reads() -> TestResult {
    let mut failures = Vec::new();
    // 1. Waiting for a record.
    let pid = fork_child(child_blocked_read)?;
    thread::sleep(Duration::from_millis(300));
    ensure!(
        wait_for(pid, Duration::ZERO).is_none(),
        "the waiting reader ended by itself"
    );
    note(format!("waiting read: {}", adv::describe_task(pid, pid)));
    if let Err(e) = kill_and_reap(pid, Duration::from_secs(3), true) {
        failures.push(format!("a read waiting for records: {e}"));
    }
    // 2. Faulting on its own buffer (the child's userfaultfd has no handler).
    let pid = fork_child(child_faulting_read)?;
    thread::sleep(Duration::from_millis(500));
    if let Some(st) = wait_for(pid, Duration::ZERO) {
        return Err(format!(
            "the faulting reader exited with {} before the kill (its setup failed)",
            libc::WEXITSTATUS(st)
        ));
    }
    note(format!("faulting read: {}", adv::describe_task(pid, pid)));
    if let Err(e) = kill_and_reap(pid, Duration::from_secs(3), true) {
        failures.push(format!("a read faulting on its buffer: {e}"));
    }
    // 3. Queued behind another read of the same descriptor that waits in a page fault.
    let u = Uffd::new(1)?;
    let fd = open_dev(libc::O_RDWR).map_err(errno_name)?;
    ensure_eq!(mark_raw(fd, 0xfb, 1), 0, "MARK");
    let faulting = start_faulting_read(fd, &u)?;
    let pid = fork_child(|| {
        let mut buf = [0u8; 4096];
        // SAFETY: The inherited descriptor and a stack buffer.
        unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        0
    })?;
    thread::sleep(Duration::from_millis(300));
    let state = adv::describe_task(pid, pid);
    note(format!("read queued behind the faulting one: {state}"));
    if let Err(e) = kill_and_reap(pid, Duration::from_secs(3), false) {
        failures.push(format!(
            "a read queued behind a read waiting in a page fault: {e}"
        ));
        // Let the faulting read finish; the queued one then sees its SIGKILL.
        u.zero_all();
        if wait_for(pid, Duration::from_secs(5)).is_none() {
            adv::set_pinned(format!("child {pid} never ended: {state}"));
        }
    }
    u.zero_all();
    let n = faulting.join().map_err(|_| "faulting reader panicked")?;
    note(format!(
        "the faulting read returned {n} once its fault was served"
    ));
    // SAFETY: Our descriptor.
    unsafe { libc::close(fd) };
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// Runs `f` on a thread that sends its result and how long it took; the caller waits on the
/// receiver as long as it likes (the thread may stay blocked).
fn timed<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (mpsc::Receiver<(T, Duration)>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let start = Instant::now();
        let v = f();
        let _ = tx.send((v, start.elapsed()));
    });
    (rx, t)
}

fn poll_beside_faulting_read() -> TestResult {
    let u = Uffd::new(1)?;
    let fd = open_dev(libc::O_RDWR).map_err(errno_name)?;
    ensure_eq!(mark_raw(fd, 0xfc, 1), 0, "MARK");
    // SAFETY: Plain epoll calls on descriptors this function owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    ensure!(ep >= 0, "epoll_create1");
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 1,
    };
    // SAFETY: As above; this registration polls the device once, before any fault.
    ensure_eq!(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) },
        0,
        "epoll_ctl"
    );
    let faulting = start_faulting_read(fd, &u)?;
    type Probe = (&'static str, Box<dyn FnOnce() -> i64 + Send>);
    let probes: Vec<Probe> = vec![
        (
            "poll(timeout 0)",
            Box::new(move || {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: One valid pollfd.
                i64::from(unsafe { libc::poll(&mut p, 1, 0) })
            }),
        ),
        (
            "poll(timeout 100 ms)",
            Box::new(move || {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: One valid pollfd.
                i64::from(unsafe { libc::poll(&mut p, 1, 100) })
            }),
        ),
        (
            "epoll_wait(timeout 0)",
            Box::new(move || {
                let mut out = [libc::epoll_event { events: 0, u64: 0 }; 1];
                // SAFETY: Room for one event.
                i64::from(unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 1, 0) })
            }),
        ),
    ];
    let mut blocked = Vec::new();
    let mut pending = Vec::new();
    for (name, f) in probes {
        let (rx, t) = timed(f);
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((rc, took)) => note(format!("{name} returned {rc} in {took:?}")),
            Err(_) => {
                blocked.push(name);
                pending.push((name, rx, t));
            }
        }
    }
    // Not asserted: FIONREAD, beside the faulting read.
    let (rx, t) = timed(move || {
        let mut n: i32 = 0;
        // SAFETY: Room for the int.
        i64::from(unsafe { libc::ioctl(fd, abi::FIONREAD as _, &mut n) })
    });
    let fionread = rx.recv_timeout(Duration::from_secs(2));
    u.zero_all();
    for (name, rx, t) in pending {
        let (_, took) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("{name} still blocked after the fault was served"))?;
        note(format!(
            "{name} returned only after the fault was served: {took:?}"
        ));
        t.join().ok();
    }
    match fionread {
        Ok((rc, took)) => note(format!("FIONREAD returned {rc} in {took:?}")),
        Err(_) => note("FIONREAD blocked while the read waited in its fault (not asserted)"),
    }
    let _ = rx.recv_timeout(Duration::from_secs(10));
    t.join().ok();
    faulting.join().map_err(|_| "faulting reader panicked")?;
    // SAFETY: Our descriptors.
    unsafe {
        libc::close(ep);
        libc::close(fd);
    }
    ensure!(
        blocked.is_empty(),
        "blocked for more than 2 s while another thread's read waited in a page fault: {}",
        blocked.join(", ")
    );
    Ok(())
}

/// Records of a ring of `kib` KiB that MARK records fill.
fn marks_per_ring(kib: u64) -> u64 {
    kib * 1024 / abi::MARK_RECORD_LEN as u64
}

fn big_marks_and_reads() -> TestResult {
    const RING_KIB: u64 = 65536;
    // A bound that says "hung", not a speed: a read with room for the whole ring goes on while
    // producers keep the ring full (13 s on the KASAN kernel under emulation). Stalls and
    // lockups are the kernel's detectors' to report, and the log scan's to catch.
    const LIMIT: Duration = Duration::from_secs(60);
    adv::reload_if_possible(&[&format!("ring_kib={RING_KIB}")])?;
    let mark = adv::log_mark();
    let w = Dev::rw()?;
    let ring = w.status()?.ring_size;
    let per_ring = marks_per_ring(ring / 1024);
    let mut slow = Vec::new();
    // Fill the ring and overflow it, 65536 records a call.
    let mut calls = 0u32;
    let t = Instant::now();
    while w.status()?.records_overwritten == 0 {
        let c = Instant::now();
        w.mark(calls.into(), abi::MAX_MARK_COUNT)?;
        calls += 1;
        if c.elapsed() > LIMIT {
            slow.push(format!("MARK 65536 took {:?}", c.elapsed()));
        }
        ensure!(calls < 64, "the ring never filled");
    }
    note(format!(
        "{calls} MARK 65536 calls filled the {} MiB ring ({per_ring} records) in {:.1} s",
        ring >> 20,
        t.elapsed().as_secs_f64()
    ));
    // One read of the whole ring, with room for all of it.
    let big = ring as usize + 4096;
    let r = Dev::open(false, true)?;
    let c = Instant::now();
    let got = r.read_raw(big).map_err(errno_name)?;
    let took = c.elapsed();
    let held = w.status()?.bytes_used;
    note(format!("one read of {} MiB took {took:?}", got.len() >> 20));
    if took > LIMIT {
        slow.push(format!("a whole-ring read took {took:?}"));
    }
    ensure_eq!(
        got.len() as u64,
        held,
        "a new reader's read with room for the whole ring returns all it holds"
    );
    drop(got);
    // Then two producers and two whole-ring readers at once.
    let stop = Arc::new(AtomicBool::new(false));
    let start_seq = {
        r.seek_end()?;
        w.status()?.records_produced
    };
    let producers: Vec<_> = (0..2u64)
        .map(|i| {
            thread::spawn(move || -> Result<Vec<Duration>, String> {
                let w = Dev::rw()?;
                let mut times = Vec::new();
                for _ in 0..6 {
                    let c = Instant::now();
                    w.mark(100 + i, abi::MAX_MARK_COUNT)?;
                    times.push(c.elapsed());
                }
                Ok(times)
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || -> Result<(u64, Vec<Duration>), String> {
                let r = Dev::open(false, true)?;
                if i == 1 {
                    r.seek_end()?;
                }
                let mut buf = vec![0u8; big];
                let (mut bytes, mut times) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let c = Instant::now();
                    // SAFETY: `buf` has room for its length.
                    let n = unsafe { libc::read(r.fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    times.push(c.elapsed());
                    if n > 0 {
                        bytes += n as u64;
                    } else {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                Ok((bytes, times))
            })
        })
        .collect();
    // Read this reader's stream as well, accounting for every record as it comes.
    let (mut delivered, mut lost, mut next) = (0u64, 0u64, start_seq);
    let mut take = |recs: Vec<dev::Rec>| -> Result<(), String> {
        let (d, l, n) = dev::account(&recs, next)?;
        delivered += d;
        lost += l;
        next = n;
        Ok(())
    };
    let mut all_times = Vec::new();
    while producers.iter().any(|p| !p.is_finished()) {
        take(r.drain()?)?;
        thread::sleep(Duration::from_millis(50));
    }
    for p in producers {
        all_times.extend(p.join().map_err(|_| "producer panicked")??);
    }
    take(r.drain()?)?;
    stop.store(true, Ordering::Relaxed);
    let mut read_bytes = 0;
    for t in readers {
        let (b, times) = t.join().map_err(|_| "reader panicked")??;
        read_bytes += b;
        if let Some(m) = times.iter().max() {
            if *m > LIMIT {
                slow.push(format!("a read took {m:?}"));
            }
        }
    }
    if let Some(m) = all_times.iter().max() {
        note(format!(
            "12 concurrent MARK 65536 calls, slowest {m:?}; the readers read {} MiB",
            read_bytes >> 20
        ));
        if *m > LIMIT {
            slow.push(format!("a concurrent MARK 65536 took {m:?}"));
        }
    }
    let end = w.status()?.records_produced;
    ensure_eq!(
        next,
        end,
        "the reader's stream ends at the last record produced"
    );
    ensure_eq!(
        delivered + lost,
        end - start_seq,
        "delivered + lost = produced"
    );
    // Let a stall or lockup detector speak, if it is going to.
    thread::sleep(Duration::from_secs(2));
    adv::no_reports_since(mark)?;
    ensure!(slow.is_empty(), "{}", slow.join("; "));
    drop((r, w));
    adv::reload_if_possible(&[])
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Installs the SIGUSR1 handler, with or without SA_RESTART.
pub fn sigusr1_handler(restart: bool) -> Result<(), String> {
    // SAFETY: A zeroed sigaction with a valid handler and an empty mask is well formed.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) != 0 {
            return Err("sigaction".into());
        }
    }
    Ok(())
}

/// Starts a thread that blocks in a read (`what` = "read") or an endless poll of `fd`; the
/// receiver gives its tid, the handle its result (the errno on failure).
fn blocked_call(
    what: &'static str,
    fd: i32,
) -> (mpsc::Receiver<i32>, thread::JoinHandle<Result<isize, i32>>) {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(adv::gettid());
        let mut buf = [0u8; 4096];
        // SAFETY: Plain system calls on a descriptor the caller keeps open, and our buffer.
        let rc = unsafe {
            if what == "read" {
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
            } else {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut p, 1, -1) as isize
            }
        };
        if rc < 0 {
            Err(sys::errno())
        } else {
            Ok(rc)
        }
    });
    (rx, t)
}

fn signals_and_fork() -> TestResult {
    const ROUNDS: u32 = 40;
    let mut rng = Rng::for_test("signals_and_fork");
    let w = Dev::rw()?;
    let mut counts = [0u32; 5];
    for round in 0..ROUNDS {
        let kind = rng.below(5) as usize;
        counts[kind] += 1;
        let delay = Duration::from_millis(rng.range(5, 80));
        match kind {
            // SIGUSR1 without SA_RESTART: the blocked read or poll fails with EINTR.
            0 | 1 => {
                sigusr1_handler(false)?;
                let r = Dev::open(false, false)?;
                r.seek_end()?;
                let what = if kind == 0 { "read" } else { "poll" };
                let (rx, t) = blocked_call(what, r.fd());
                let tid = rx.recv().map_err(|e| e.to_string())?;
                thread::sleep(delay);
                // SAFETY: Signalling a thread of this process that is still alive (it is
                // blocked until a record or a signal comes).
                unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
                let got = join_within(t, Duration::from_secs(5)).map_err(|e| {
                    format!("round {round}: {what} not interrupted by SIGUSR1: {e}")
                })?;
                ensure_eq!(got, Err(libc::EINTR), "round {round}: {what} after SIGUSR1");
            }
            // SIGUSR1 with SA_RESTART: the read goes on, and returns the record that comes.
            2 => {
                sigusr1_handler(true)?;
                let r = Dev::open(false, false)?;
                r.seek_end()?;
                let (rx, t) = blocked_call("read", r.fd());
                let tid = rx.recv().map_err(|e| e.to_string())?;
                thread::sleep(delay);
                // SAFETY: As above.
                unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
                thread::sleep(Duration::from_millis(50));
                ensure!(!t.is_finished(), "round {round}: a restarted read returned");
                w.mark(u64::from(round), 1)?;
                let got = join_within(t, Duration::from_secs(5))
                    .map_err(|e| format!("round {round}: restarted read: {e}"))?;
                ensure_eq!(
                    got,
                    Ok(abi::MARK_RECORD_LEN as isize),
                    "round {round}: restarted read"
                );
                sigusr1_handler(false)?;
            }
            // SIGKILL of a child blocked in read.
            3 => {
                let pid = fork_child(child_blocked_read)?;
                thread::sleep(delay);
                kill_and_reap(pid, Duration::from_secs(3), true)
                    .map_err(|e| format!("round {round}: {e}"))?;
            }
            // Fork with an open descriptor: the child reads, the parent closes its copy.
            _ => {
                let fd = open_dev(libc::O_RDONLY).map_err(errno_name)?;
                // SAFETY: Our descriptor.
                unsafe { libc::ioctl(fd, abi::TCPLOG_IOC_SEEK_END as _, 0) };
                let n = rng.range(1, 20) as u32;
                w.mark(u64::from(round), n)?;
                let pid = fork_child(|| {
                    let mut buf = [0u8; 4096];
                    // SAFETY: The inherited descriptor and a stack buffer.
                    let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if got == (n as usize * abi::MARK_RECORD_LEN) as isize {
                        0
                    } else {
                        1
                    }
                })?;
                // SAFETY: Our copy of the descriptor; the child has its own.
                unsafe { libc::close(fd) };
                let st = wait_for(pid, Duration::from_secs(5));
                match st {
                    None => {
                        kill_and_reap(pid, Duration::from_secs(3), true).ok();
                        return Err(format!("round {round}: the forked reader never returned"));
                    }
                    Some(st) => ensure!(
                        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                        "round {round}: the forked reader did not read the {n} records (status {st:#x})"
                    ),
                }
            }
        }
    }
    note(format!(
        "{ROUNDS} rounds: {} reads and {} polls interrupted, {} restarted reads, {} children killed in read, {} forks",
        counts[0], counts[1], counts[2], counts[3], counts[4]
    ));
    let readers = w.status()?.readers;
    ensure_eq!(readers, 1, "descriptors still counted as open");
    Ok(())
}

/// Joins a thread if it ends within `limit`.
fn join_within<T>(t: thread::JoinHandle<T>, limit: Duration) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    while !t.is_finished() {
        if Instant::now() > deadline {
            return Err(format!("still blocked after {limit:?}"));
        }
        thread::sleep(Duration::from_millis(5));
    }
    t.join().map_err(|_| "thread panicked".to_owned())
}

fn aftermath() -> TestResult {
    let mut rng = Rng::for_test("aftermath");
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    let start = r.status()?.records_produced;
    let producers: Vec<_> = (0..2u64)
        .map(|i| {
            let mut rng = Rng::new(rng.next_u64());
            thread::spawn(move || -> Result<(), String> {
                let w = Dev::rw()?;
                for _ in 0..40 {
                    if rng.percent(10) {
                        w.flush()?;
                    } else {
                        w.mark(i, rng.range(1, 3000) as u32)?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut recs = Vec::new();
    while producers.iter().any(|p| !p.is_finished()) {
        recs.extend(r.drain()?);
    }
    for p in producers {
        p.join().map_err(|_| "producer panicked")??;
    }
    recs.extend(r.drain()?);
    let end = r.status()?.records_produced;
    ensure!(!recs.is_empty(), "nothing read");
    ensure_eq!(recs[0].hdr.seq, start, "the first record read");
    let (delivered, lost, next) = dev::account(&recs, start)?;
    ensure_eq!(next, end, "the stream ends at the last record produced");
    ensure_eq!(delivered + lost, end - start, "delivered + lost = produced");
    note(format!(
        "fresh reader: {delivered} records delivered + {lost} reported lost = {} produced",
        end - start
    ));
    let readers = r.status()?.readers;
    if let Some(why) = adv::pinned() {
        note(format!(
            "{readers} descriptors open (this test's, and those of a process stuck in the kernel: {why})"
        ));
    } else {
        ensure_eq!(
            readers,
            1,
            "descriptors counted as open (this test holds one)"
        );
    }
    drop(r);
    adv::need_rmmod()?;
    sys::rmmod()?;
    ensure!(!sys::module_loaded(), "module still loaded");
    sys::insmod(&[])
}

fn zero_length_reads() -> TestResult {
    Dev::rw()?.mark(0x2e, 1)?;
    let mut failures = Vec::new();
    // (name, open flags, skip what is buffered); the case that may spin for good comes last.
    let cases: [(&str, i32, bool); 4] = [
        ("non-blocking, nothing to read", libc::O_NONBLOCK, true),
        ("non-blocking, records waiting", libc::O_NONBLOCK, false),
        ("blocking, nothing to read", 0, true),
        ("blocking, records waiting", 0, false),
    ];
    for (name, flags, skip) in cases {
        let pid = fork_child(|| {
            // SAFETY: Only system calls.
            unsafe {
                let Ok(fd) = open_dev(libc::O_RDONLY | flags) else {
                    return 2;
                };
                if skip {
                    libc::ioctl(fd, abi::TCPLOG_IOC_SEEK_END as _, 0);
                }
                let mut buf = [0u8; 8];
                let n = libc::read(fd, buf.as_mut_ptr().cast(), 0);
                match n {
                    0 => 0,
                    n if n > 0 => 3,
                    _ => 100 + sys::errno().min(100),
                }
            }
        })?;
        match wait_for(pid, Duration::from_secs(3)) {
            Some(st) if libc::WIFEXITED(st) => match libc::WEXITSTATUS(st) {
                0 => note(format!("{name}: 0")),
                c if c >= 100 => failures.push(format!("{name}: {}", errno_name(c - 100))),
                c => failures.push(format!("{name}: child exited with {c}")),
            },
            Some(st) => failures.push(format!("{name}: child ended with status {st:#x}")),
            None => {
                let state = adv::describe_task(pid, pid);
                let killed = kill_and_reap(pid, Duration::from_secs(3), true);
                failures.push(format!(
                    "{name}: no return within 3 s ({state}); {}",
                    match killed {
                        Ok(()) => "SIGKILL ended it".to_owned(),
                        Err(_) => "SIGKILL does not end it: the module can never be unloaded now"
                            .to_owned(),
                    }
                ));
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
