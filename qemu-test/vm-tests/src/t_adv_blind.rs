//! Adversarial users of the logger: an unprivileged user who tries to blind it, events made in
//! a kernel thread that must not be pinned on that thread, and descriptors of the device that
//! change hands (whose credentials decide what a descriptor may do).
//!
//! Blinding: uid 65534 parks thousands of threads in blocking accept() on its own listener
//! (nobody ever connects to it, so the exclusive, FIFO wait queue never lets one go), or in
//! blocking connect() to an address whose SYNs leave and are never answered. Meanwhile root
//! makes 20 connections on loopback. Every one of root's operations must be logged with exact
//! fields, and every miss must be counted in `probes_missed`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, close, op, open, EventBody, SummaryBody};

use crate::adv::{
    self, accept, accept_raw, blocked_in, connect_raw, ev_line, events, gather, listener, local,
    pattern, read_exact, read_to_eof, say, socket, sum_line, tasks, write_all, Helper, Sa,
};
use crate::dev::{Dev, Rec};
use crate::fixtures::{fresh, summaries};
use crate::harness::{Harness, TestResult};
use crate::sys::{self, errno, errno_name};
use crate::{ensure, ensure_eq};

const SYS_ACCEPT4: i64 = 288;
const SYS_CONNECT: i64 = 42;
const SYS_READ: i64 = 0;
/// How many threads the attacker parks per phase: more than the 4096 calls the old module's
/// kretprobes could hold, within what the VM's 1 GiB allows (threads-max is about 7,800 there,
/// shared by everything). Scaled to the suite's size (`adv::scaled`).
const PARK: usize = 4500;

fn park() -> usize {
    crate::adv_kit::scaled(PARK as u64) as usize
}
const ROUNDS: usize = 20;
/// Threads per attacking process (each blocked call holds a descriptor; the VM's hard limit
/// on descriptors is 4096).
const PER_PROC: usize = 1500;

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    let park = park();
    for kind in [Park::Accept, Park::Connect] {
        let what = kind.name();
        adv::run(
            h,
            &format!(
                "adv user: blinding: {park} {what}s parked by nobody: root's {ROUNDS} connections all logged, nothing missed"
            ),
            || blind(kind),
        );
        adv::run(
            h,
            &format!(
                "adv user: blinding: {park} {what}s parked by nobody: every event missing is counted in probes_missed"
            ),
            || counted(kind),
        );
    }
    adv::run(
        h,
        "adv user: attribution: a passive close in a threaded-NAPI kthread is not pinned on the kthread",
        napi_attribution,
    );
    adv::run(
        h,
        "adv user: credentials: a descriptor opened by root keeps its rights after the process drops to nobody",
        opener_drops_privileges,
    );
    adv::run(
        h,
        "adv user: credentials: a descriptor opened without CAP_NET_ADMIN cannot change state, even in root's hands",
        opener_without_cap,
    );
    adv::run(
        h,
        "adv user: no KASAN, KFENCE, BUG or WARN in the kernel log",
        adv::kernel_log_clean,
    );
}

/// Helper modes of this file.
pub fn helper(mode: &str, args: &[&str]) -> Option<TestResult> {
    Some(match mode {
        "--adv-park" => h_park(args),
        _ => return None,
    })
}

fn me() -> u32 {
    std::process::id()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Park {
    Accept,
    Connect,
}

impl Park {
    fn name(self) -> &'static str {
        match self {
            Park::Accept => "accept",
            Park::Connect => "connect",
        }
    }
}

// The attacker.

/// `--adv-park accept|connect N`: parks N threads in blocking accept() on a listener of its
/// own, or in blocking connect() to the black hole; prints `parked K` (how many threads it
/// could make), then waits for its standard input to close.
fn h_park(args: &[&str]) -> TestResult {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FAILED: AtomicUsize = AtomicUsize::new(0);
    let kind = args.first().copied().unwrap_or("");
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .ok_or("N missing")?;
    // A blocked accept holds a descriptor for the socket it will return, a blocked connect
    // its socket's: the soft limit goes up to the hard one, as any user may do.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: A valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let l = if kind == "accept" {
        let (l, port) = listener(libc::AF_INET)?;
        say(&format!("port {port}"));
        Some(l)
    } else {
        None
    };
    let lfd = l.as_ref().map(|l| l.as_raw_fd());
    let dst = Sa::v4(adv::BLACKHOLE, 9);
    let mut made = 0;
    let mut why = String::new();
    for _ in 0..n {
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || match lfd {
                Some(fd) => {
                    if accept_raw(fd).err() == Some(libc::EMFILE) {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => match socket(libc::AF_INET, libc::SOCK_STREAM, 0) {
                    Ok(s) => {
                        // More SYN retries than the default 6 (about 127 s), as any user may
                        // ask: parking thousands of threads can take longer than that on a
                        // slow kernel, and the first connects must still be blocked at the end.
                        let syncnt: libc::c_int = 12;
                        // SAFETY: An int option of a socket we own.
                        unsafe {
                            libc::setsockopt(
                                s.as_raw_fd(),
                                libc::IPPROTO_TCP,
                                libc::TCP_SYNCNT,
                                (&syncnt as *const libc::c_int).cast(),
                                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                            )
                        };
                        let _ = connect_raw(s.as_raw_fd(), &dst);
                        // Keep the socket until the process ends.
                        std::mem::forget(s);
                    }
                    Err(_) => {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                    }
                },
            });
        match r {
            Ok(t) => {
                std::mem::forget(t);
                made += 1;
            }
            Err(e) => {
                why = e.to_string();
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    say(&format!(
        "parked {made} failed {} nofile {} {why}",
        FAILED.load(Ordering::Relaxed),
        lim.rlim_cur
    ));
    // Wait for the end: standard input closes.
    let mut b = [0u8; 1];
    // SAFETY: `b` is writable.
    while unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) } > 0 {}
    drop(l);
    std::process::exit(0);
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn nr_tasks() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// What one blinding phase observed, kept for the second test of the pair.
#[derive(Clone, Default)]
struct Outcome {
    parked: usize,
    missed_parking: u64,
    missed_victim: u64,
    /// `probes_missed` of `tcplog status --json`, and of the STATUS ioctl just before it.
    tool_missed: u64,
    ioctl_missed: u64,
    /// Expected (op, where) items of the victim that no event matched.
    missing: Vec<String>,
    /// Events of the victim's connections that should not exist.
    extra: Vec<String>,
    /// Problems with the victim's summaries other than an owner lost with a missing accept.
    bad_sums: Vec<String>,
    /// Records that lost their owner because the accept that names it was missed: passive
    /// summaries without an owner, passive closes that name no process.
    owner_lost: usize,
    error: Option<String>,
}

static OUTCOMES: Mutex<Vec<(Park, Outcome)>> = Mutex::new(Vec::new());

fn outcome(kind: Park) -> Result<Outcome, String> {
    if let Some((_, o)) = OUTCOMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == kind)
    {
        return Ok(o.clone());
    }
    let o = phase(kind).unwrap_or_else(|e| Outcome {
        error: Some(e),
        ..Outcome::default()
    });
    OUTCOMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((kind, o.clone()));
    Ok(o)
}

fn blind(kind: Park) -> TestResult {
    let o = outcome(kind)?;
    if let Some(e) = &o.error {
        return Err(e.clone());
    }
    ensure!(
        o.parked >= park(),
        "only {} of {} threads parked",
        o.parked,
        park()
    );
    ensure!(
        o.missing.is_empty(),
        "{} of root's events missing (probes_missed +{} while root ran): {}",
        o.missing.len(),
        o.missed_victim,
        o.missing.join(", ")
    );
    ensure!(
        o.extra.is_empty(),
        "unexpected events: {}",
        o.extra.join("; ")
    );
    ensure!(
        o.bad_sums.is_empty(),
        "summaries: {}",
        o.bad_sums.join("; ")
    );
    ensure_eq!(o.owner_lost, 0, "records without their owner");
    ensure_eq!(
        (o.missed_parking, o.missed_victim),
        (0, 0),
        "probes_missed while the attacker parked, and while root ran"
    );
    Ok(())
}

fn counted(kind: Park) -> TestResult {
    let o = outcome(kind)?;
    if let Some(e) = &o.error {
        return Err(e.clone());
    }
    ensure!(
        o.extra.is_empty(),
        "unexpected events: {}",
        o.extra.join("; ")
    );
    ensure!(
        o.bad_sums.is_empty(),
        "summaries: {}",
        o.bad_sums.join("; ")
    );
    ensure_eq!(
        o.tool_missed,
        o.ioctl_missed,
        "probes_missed of tcplog status --json and of the STATUS ioctl"
    );
    ensure_eq!(
        o.missed_victim,
        o.missing.len() as u64,
        "probes_missed while root ran vs root's events missing ({})",
        o.missing.join(", ")
    );
    let accepts = o.missing.iter().filter(|m| m.ends_with(":accept")).count();
    ensure!(
        o.owner_lost <= 2 * accepts,
        "{} records lost their owner, {accepts} accepts missing",
        o.owner_lost
    );
    Ok(())
}

/// One round of the victim: root listens, connects, accepts, sends both ways, closes.
struct Round {
    port: u16,
    cport: u16,
    up: u64,
    down: u64,
}

fn victim(rounds: usize) -> Result<Vec<Round>, String> {
    let mut out = Vec::new();
    for i in 0..rounds {
        let (up, down) = (1000 + i, 500 + i);
        let (l, port) = listener(libc::AF_INET)?;
        let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
        adv::connect(&c, &Sa::lo(libc::AF_INET, port))?;
        let s = accept(&l)?;
        let cport = local(&c)?.port();
        write_all(c.as_raw_fd(), &pattern(up, 1))?;
        read_exact(s.as_raw_fd(), up)?;
        write_all(s.as_raw_fd(), &pattern(down, 2))?;
        read_exact(c.as_raw_fd(), down)?;
        drop(c);
        read_to_eof(s.as_raw_fd())?;
        drop(s);
        drop(l);
        out.push(Round {
            port,
            cport,
            up: up as u64,
            down: down as u64,
        });
    }
    Ok(out)
}

/// Matches the victim's records against what each round must have produced.
fn judge(o: &mut Outcome, rounds: &[Round], recs: &[Rec]) {
    // The victim's events: its own, and those about its connections made in softirq with no
    // process to name (a passive close, when the owner is unknown).
    let ours = |e: &EventBody| {
        e.pid == me()
            || (e.flags & abi::EVF_NO_PROCESS != 0
                && rounds
                    .iter()
                    .any(|r| e.lport == r.port || e.lport == r.cport))
    };
    let evs: Vec<EventBody> = events(recs).into_iter().filter(ours).collect();
    let mut used = vec![false; evs.len()];
    let mut take = |what: String, o: &mut Outcome, f: &dyn Fn(&EventBody) -> bool| match evs
        .iter()
        .enumerate()
        .find(|(i, e)| !used[*i] && f(e))
    {
        Some((i, e)) => {
            used[i] = true;
            Some(*e)
        }
        None => {
            o.missing.push(what);
            None
        }
    };
    for (i, r) in rounds.iter().enumerate() {
        let (p, c) = (r.port, r.cport);
        let mut got = Vec::new();
        got.push(take(format!("{i}:create"), o, &|e| e.op == op::TCP_CREATE));
        got.push(take(format!("{i}:create"), o, &|e| e.op == op::TCP_CREATE));
        got.push(take(format!("{i}:bind"), o, &|e| {
            e.op == op::TCP_BIND && e.lport == p
        }));
        got.push(take(format!("{i}:listen"), o, &|e| {
            e.op == op::TCP_LISTEN && e.lport == p
        }));
        got.push(take(format!("{i}:connect"), o, &|e| {
            e.op == op::TCP_CONNECT && e.lport == c && e.rport == p
        }));
        got.push(take(format!("{i}:accept"), o, &|e| {
            e.op == op::TCP_ACCEPT && e.lport == p && e.rport == c
        }));
        let accept_missing = o.missing.contains(&format!("{i}:accept"));
        got.push(take(format!("{i}:disconnect client"), o, &|e| {
            e.op == op::TCP_DISCONNECT && e.lport == c
        }));
        // The passive close happens in the client's softirq: it names the owner the accept
        // recorded, or no process if the accept was missed.
        let sd = take(format!("{i}:disconnect server"), o, &|e| {
            e.op == op::TCP_DISCONNECT && e.lport == p && e.rport == c
        });
        match sd {
            Some(e) if e.flags & abi::EVF_NO_PROCESS != 0 && accept_missing => o.owner_lost += 1,
            other => got.push(other),
        }
        got.push(take(format!("{i}:close client"), o, &|e| {
            e.op == op::TCP_CLOSE && e.lport == c
        }));
        got.push(take(format!("{i}:close server"), o, &|e| {
            e.op == op::TCP_CLOSE && e.lport == p && e.rport == c
        }));
        got.push(take(format!("{i}:close listener"), o, &|e| {
            e.op == op::TCP_CLOSE && e.lport == p && e.rport == 0
        }));
        for e in got.into_iter().flatten() {
            if e.pid != me() || e.uid != 0 || e.result != 0 || e.flags & abi::EVF_NO_PROCESS != 0 {
                o.extra.push(format!("{i}: wrong fields: {}", ev_line(&e)));
            }
        }
        let two = adv::sums_between(recs, p, c);
        let cl = two.iter().find(|s| s.lport == c);
        let sv = two.iter().find(|s| s.lport == p);
        let accept_missing = o.missing.contains(&format!("{i}:accept"));
        let mut check = |s: Option<&SummaryBody>, sent: u64, recv: u64, open: u8| {
            let Some(s) = s else {
                o.bad_sums.push(format!("{i}: a summary is missing"));
                return;
            };
            let owner_ok = s.pid == me() && s.uid == 0 && s.flags & abi::SUMF_OWNER_UNKNOWN == 0;
            if !owner_ok && open == abi::open::PASSIVE && accept_missing {
                o.owner_lost += 1;
            } else if !owner_ok {
                o.bad_sums.push(format!("{i}: owner of {}", sum_line(s)));
            }
            if (s.bytes_sent, s.bytes_received, s.open, s.close) != (sent, recv, open, close::FIN)
                || s.flags & abi::SUMF_PARTIAL != 0
            {
                o.bad_sums.push(format!("{i}: {}", sum_line(s)));
            }
        };
        check(cl, r.up, r.down, open::ACTIVE);
        check(sv, r.down, r.up, open::PASSIVE);
        if two.len() != 2 {
            o.bad_sums.push(format!("{i}: {} summaries", two.len()));
        }
    }
    // Any other event of the victim's is one too many.
    for (i, e) in evs.iter().enumerate() {
        if !used[i] {
            o.extra.push(ev_line(e));
        }
    }
}

/// Runs one blinding phase: park, let root work, judge, end the attacker.
fn phase(kind: Park) -> Result<Outcome, String> {
    if kind == Park::Connect {
        adv::blackhole()?;
    }
    let d = fresh()?;
    let st = |d: &Dev| d.status().map(|s| s.probes_missed);
    // Room for the attacker's threads: root lifts RLIMIT_NPROC, which the helper inherits
    // (the VM's default is threads-max / 2, below 4096; hosts with more memory have more).
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: Valid rlimit structures.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NPROC, &mut old);
        libc::setrlimit(libc::RLIMIT_NPROC, &unlimited);
    }
    let threads_max = std::fs::read_to_string("/proc/sys/kernel/threads-max").unwrap_or_default();
    let (mem0, tasks0) = (meminfo("MemAvailable:"), nr_tasks());
    let t0 = Instant::now();
    let m0 = st(&d)?;
    // Several processes, each within its descriptor limit (4096 in the VM).
    let mut helpers = Vec::new();
    let mut left = park();
    let mut spawn_err = None;
    while left > 0 {
        let n = left.min(PER_PROC);
        left -= n;
        let (ours, theirs) = match adv::unix_pair() {
            Ok(p) => p,
            Err(e) => {
                spawn_err = Some(e);
                break;
            }
        };
        match Helper::spawn(
            &adv::me(),
            &["--adv-park", kind.name(), &n.to_string()],
            Some(sys::NOBODY),
            Some(theirs),
        ) {
            Ok(h) => helpers.push((h, ours)),
            Err(e) => {
                spawn_err = Some(e);
                break;
            }
        }
    }
    // SAFETY: As above.
    unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &old) };
    let pids: Vec<u32> = helpers.iter().map(|(h, _)| h.pid()).collect();
    let r = (|| -> Result<Outcome, String> {
        if let Some(e) = spawn_err.take() {
            return Err(e);
        }
        let mut parked = 0usize;
        for (h, _) in helpers.iter_mut() {
            let l = h.expect("parked")?;
            adv::note(format!("attacker {}: parked {l}", h.pid()));
            parked += adv::field(&format!("parked {l}"), "parked")? as usize;
        }
        let nr = if kind == Park::Accept {
            SYS_ACCEPT4
        } else {
            SYS_CONNECT
        };
        // Every thread asleep in its call (or no progress for 15 s).
        let count = || -> (usize, Vec<String>) {
            let mut n = 0;
            let mut odd = Vec::new();
            for &pid in &pids {
                for t in tasks(pid).into_iter().filter(|&t| t != pid) {
                    if blocked_in(pid, t) == Some(nr) {
                        n += 1;
                    } else if odd.len() < 3 {
                        let f = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/syscall"));
                        odd.push(format!("{t}: {f:?}"));
                    }
                }
            }
            (n, odd)
        };
        let (mut asleep, mut odd) = count();
        let mut last_change = Instant::now();
        while asleep < parked && last_change.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(500));
            let (n, o) = count();
            if n != asleep {
                last_change = Instant::now();
            }
            (asleep, odd) = (n, o);
        }
        ensure!(
            asleep >= parked,
            "{asleep} of {parked} threads blocked; others: {odd:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let park_time = t0.elapsed();
        let m1 = st(&d)?;
        adv::note(format!(
            "{parked} threads parked in {} by uid {} in {:.1} s (threads-max {}, tasks {tasks0} before); MemAvailable {} -> {} MiB; probes_missed +{} while parking",
            kind.name(),
            sys::NOBODY,
            park_time.as_secs_f64(),
            threads_max.trim(),
            mem0 / 1024,
            meminfo("MemAvailable:") / 1024,
            m1 - m0
        ));
        // The victim.
        d.drain()?;
        let t1 = Instant::now();
        let rounds = victim(ROUNDS)?;
        let recs = gather(&d, 10, |r| {
            summaries(r)
                .iter()
                .filter(|s| {
                    rounds
                        .iter()
                        .any(|x| s.lport == x.cport || s.rport == x.cport)
                })
                .count()
                >= 2 * ROUNDS
        })?;
        let m2 = st(&d)?;
        // What the tool reports is what the ioctl says.
        let json = sys::run_ok(sys::TOOL, &["status", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        let tool_missed = v["probes_missed"]
            .as_u64()
            .ok_or_else(|| format!("no probes_missed in {json}"))?;
        adv::note(format!(
            "root's {ROUNDS} rounds took {:.1} s; probes_missed +{} meanwhile",
            t1.elapsed().as_secs_f64(),
            m2 - m1
        ));
        let mut o = Outcome {
            parked,
            missed_parking: m1 - m0,
            missed_victim: m2 - m1,
            tool_missed,
            ioctl_missed: m2,
            ..Outcome::default()
        };
        adv::all_sane(&recs)?;
        judge(&mut o, &rounds, &recs);
        Ok(o)
    })();
    // End the attacker: its standard input closes, it exits, its threads die.
    let t2 = Instant::now();
    for (mut h, ours) in helpers {
        drop(ours);
        let _ = h.child.wait();
    }
    let gone = adv::wait_for(60, || {
        pids.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    });
    let tail = gather(&d, 2, |_| false)?;
    let theirs: Vec<EventBody> = events(&tail)
        .into_iter()
        .filter(|e| pids.contains(&e.pid))
        .collect();
    let mut results: Vec<(i32, usize)> = Vec::new();
    for e in theirs.iter().filter(|e| e.op == op::TCP_CONNECT) {
        match results.iter_mut().find(|(r, _)| *r == e.result) {
            Some(x) => x.1 += 1,
            None => results.push((e.result, 1)),
        }
    }
    adv::note(format!(
        "the attacker ended in {:.1} s (gone: {gone}); its connect events as it died: {:?} (result, count)",
        t2.elapsed().as_secs_f64(),
        results
    ));
    r
}

// Attribution: threaded NAPI.

/// Sets a legacy ethtool flag (SIOCETHTOOL with a `struct ethtool_value`) of `dev` in this
/// thread's network namespace.
fn ethtool_set(dev: &str, cmd: u32, value: u32) -> TestResult {
    const SIOCETHTOOL: u64 = 0x8946;
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut val: [u32; 2] = [cmd, value];
    let mut ifr = [0u8; 40];
    ifr[..dev.len()].copy_from_slice(dev.as_bytes());
    let p = val.as_mut_ptr() as u64;
    ifr[16..24].copy_from_slice(&p.to_ne_bytes());
    // SAFETY: `ifr` is a struct ifreq whose data pointer points at `val`, both live.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), SIOCETHTOOL as _, ifr.as_mut_ptr()) };
    ensure!(
        rc == 0,
        "ethtool command {cmd:#x} on {dev}: {}",
        errno_name(errno())
    );
    Ok(())
}

const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Runs `f` in a thread that has joined network namespace `name`.
fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: A namespace descriptor; the change affects this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", errno_name(errno())));
        }
        f()
    })
    .join()
    .map_err(|_| "thread panicked".to_owned())?
}

fn ctxt_switches(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// The ids of the kernel threads whose name starts with `prefix`.
fn kthreads(prefix: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                c.starts_with(prefix).then(|| (pid, c.trim().to_owned()))
            })
            .collect()
        })
        .unwrap_or_default()
}

fn napi_attribution() -> TestResult {
    if !std::path::Path::new("/run/netns/tln").exists() {
        sys::run_ok("modprobe", &["veth"])?;
        for cmd in [
            "netns add tln",
            "link add tnx0 type veth peer name tnx1 netns tln",
            "addr add 10.67.0.1/24 dev tnx0",
            "link set tnx0 up",
            "-n tln addr add 10.67.0.2/24 dev tnx1",
            "-n tln link set tnx1 up",
            "-n tln link set lo up",
        ] {
            adv::ip(cmd)?;
        }
        // tnx0 receives through NAPI once GRO is on; veth hands a packet to NAPI only if the
        // sending device does no TSO (veth_skb_is_eligible_for_gro), so tnx1 does none.
        ethtool_set("tnx0", ETHTOOL_SGRO, 1)?;
        in_netns("tln", || ethtool_set("tnx1", ETHTOOL_STSO, 0))?;
        adv::set_knob("/sys/class/net/tnx0/threaded", "1")?;
    }
    let napi = kthreads("napi/tnx0");
    ensure!(
        !napi.is_empty(),
        "no napi/tnx0 kernel thread after GRO on and threaded=1"
    );
    adv::note(format!("kernel: NAPI threads of tnx0: {napi:?}"));
    let switches0: u64 = napi.iter().map(|(p, _)| ctxt_switches(*p)).sum();
    let d = fresh()?;
    // The server (a thread of this process) receives through tnx0's NAPI thread. The client,
    // in namespace tln, closes only once the server sleeps in read(), so the FIN is handled
    // in the kthread, not from the socket's backlog in the server's own context.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let l = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
        adv::bind(&l, &Sa::v4([10, 67, 0, 1], 0))?;
        adv::listen(&l, 4)?;
        let port = local(&l)?.port();
        let server_tid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let st = std::sync::Arc::clone(&server_tid);
        let server = std::thread::spawn(move || -> Result<(), String> {
            let s = accept(&l)?;
            read_exact(s.as_raw_fd(), 3000)?;
            write_all(s.as_raw_fd(), &pattern(2000, 3))?;
            st.store(adv::gettid(), std::sync::atomic::Ordering::SeqCst);
            read_to_eof(s.as_raw_fd())?;
            Ok(())
        });
        let st = std::sync::Arc::clone(&server_tid);
        let cport = in_netns("tln", move || {
            let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
            adv::connect(&c, &Sa::v4([10, 67, 0, 1], port))?;
            write_all(c.as_raw_fd(), &pattern(3000, 4))?;
            read_exact(c.as_raw_fd(), 2000)?;
            let asleep = adv::wait_for(10, || {
                let t = st.load(std::sync::atomic::Ordering::SeqCst);
                t != 0 && blocked_in(me(), t) == Some(SYS_READ)
            });
            ensure!(asleep, "the server never slept in read()");
            std::thread::sleep(Duration::from_millis(100));
            Ok(local(&c)?.port())
        })?;
        server.join().map_err(|_| "server panicked")??;
        rounds.push((
            port,
            cport,
            server_tid.load(std::sync::atomic::Ordering::SeqCst),
        ));
    }
    let recs = gather(&d, 10, |r| summaries(r).len() >= 6)?;
    let switches = napi.iter().map(|(p, _)| ctxt_switches(*p)).sum::<u64>() - switches0;
    adv::note(format!("the NAPI threads ran {switches} times meanwhile"));
    ensure!(
        switches > 0,
        "the NAPI thread never ran: the test tests nothing"
    );
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    for (port, cport, tid) in rounds {
        let disc: Vec<&EventBody> = evs
            .iter()
            .filter(|e| e.op == op::TCP_DISCONNECT && e.lport == port)
            .collect();
        ensure_eq!(disc.len(), 1, "the server's disconnect events");
        let e = disc[0];
        adv::note(format!("server disconnect: {}", ev_line(e)));
        ensure!(
            !adv::comm_str(&e.comm).starts_with("napi/") && !napi.iter().any(|(p, _)| *p == e.pid),
            "a disconnect is pinned on the NAPI kthread: {}",
            ev_line(e)
        );
        // Made in the kthread: the owner (the accepting thread), flagged, or no process.
        let owner = e.flags & abi::EVF_OWNER != 0 && (e.pid, e.tid, e.uid) == (me(), tid, 0);
        let nobody = e.flags & abi::EVF_NO_PROCESS != 0 && e.pid == 0;
        ensure!(
            owner || nobody,
            "the passive close names pid {} tid {} flags {:#x} (the server is {} / {tid}): {}",
            e.pid,
            e.tid,
            e.flags,
            me(),
            ev_line(e)
        );
        // Both ends are this process's (the client's in another namespace).
        adv::check_exact(&recs, port, cport, 3000, 2000, me())
            .map_err(|err| format!("summaries of {cport} -> {port}: {err}"))?;
    }
    Ok(())
}

// Credentials of device descriptors.

/// The state-changing commands tried, with their arguments.
fn changes() -> Vec<(u32, &'static str)> {
    vec![
        (abi::TCPLOG_IOC_DISABLE, "DISABLE"),
        (abi::TCPLOG_IOC_ENABLE, "ENABLE"),
    ]
}

fn opener_drops_privileges() -> TestResult {
    let d = fresh()?;
    let path = std::ffi::CString::new(sys::DEVICE).unwrap();
    let mut p = [0; 2];
    // SAFETY: `p` has room for two descriptors.
    ensure_eq!(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe"
    );
    let cmds = changes();
    // SAFETY: The child makes only async-signal-safe calls (open, setgroups, setresgid,
    // setresuid, ioctl, write, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: As above.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            if fd < 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(sys::NOBODY, sys::NOBODY, sys::NOBODY) != 0
                || libc::setresuid(sys::NOBODY, sys::NOBODY, sys::NOBODY) != 0
            {
                libc::_exit(100);
            }
            let mut res = [0i32; 4];
            for (i, (cmd, _)) in cmds.iter().enumerate() {
                res[i] = if libc::ioctl(fd, *cmd as _, 0usize) < 0 {
                    errno()
                } else {
                    0
                };
            }
            libc::write(p[1], res.as_ptr().cast(), 16);
            libc::_exit(0);
        }
    }
    // SAFETY: Our end of the pipe; the child's end closes on our side.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    drop(w);
    let mut status = 0;
    // SAFETY: Waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let res = read_exact(r.as_raw_fd(), 16);
    // Whatever happened, logging is on again.
    d.ioctl_none(abi::TCPLOG_IOC_ENABLE).map_err(errno_name)?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    let res = res?;
    let mut got = Vec::new();
    for (i, (_, name)) in cmds.iter().enumerate() {
        let e = i32::from_ne_bytes(res[4 * i..4 * i + 4].try_into().unwrap());
        got.push((
            *name,
            if e == 0 {
                "ok".to_owned()
            } else {
                errno_name(e)
            },
        ));
    }
    ensure_eq!(
        got,
        vec![("DISABLE", "ok".to_owned()), ("ENABLE", "ok".to_owned())],
        "ioctls of the child (uid {}, no capabilities) on root's descriptor",
        sys::NOBODY
    );
    // Both changes audited, as made by the child.
    let recs = adv::gather(&d, 3, |r| {
        r.iter().filter(|x| x.config().is_some()).count() >= 2
    })?;
    let cfg: Vec<_> = recs.iter().filter_map(|r| r.config()).collect();
    ensure!(cfg.len() >= 2, "{} CONFIG records", cfg.len());
    ensure_eq!(
        (cfg[0].item, cfg[0].old, cfg[0].new, cfg[0].pid),
        (abi::config_item::ENABLED, 1, 0, pid as u32),
        "disable audited"
    );
    ensure_eq!(
        (cfg[1].item, cfg[1].old, cfg[1].new, cfg[1].pid),
        (abi::config_item::ENABLED, 0, 1, pid as u32),
        "enable audited"
    );
    adv::note(format!(
        "audit records name uid {} and {}",
        cfg[0].uid, cfg[1].uid
    ));
    Ok(())
}

fn opener_without_cap() -> TestResult {
    const CAP_NET_ADMIN: u32 = 12;
    let d = fresh()?;
    let path = std::ffi::CString::new(sys::DEVICE).unwrap();
    let (ours, theirs) = adv::unix_pair()?;
    let theirs_fd = theirs.as_raw_fd();
    // SAFETY: The child makes only async-signal-safe calls (capget, capset, open, sendmsg,
    // ioctl, write, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: As above. `hdr` and `data` are the capget/capset structures of version 3.
        unsafe {
            let mut hdr: [u32; 2] = [0x2008_0522, 0];
            let mut data = [0u32; 6];
            if libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()) != 0 {
                libc::_exit(101);
            }
            // effective, permitted, inheritable of the low 32 capabilities.
            for w in &mut data[0..3] {
                *w &= !(1 << CAP_NET_ADMIN);
            }
            if libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()) != 0 {
                libc::_exit(102);
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            if fd < 0 {
                libc::_exit(103);
            }
            // Its own attempt, then the descriptor goes to root.
            let own = if libc::ioctl(fd, abi::TCPLOG_IOC_DISABLE as _, 0usize) < 0 {
                errno()
            } else {
                0
            };
            if adv::send_fd(theirs_fd, fd).is_err() {
                libc::_exit(104);
            }
            libc::write(theirs_fd, (&own as *const i32).cast(), 4);
            libc::_exit(0);
        }
    }
    drop(theirs);
    let mut status = 0;
    // SAFETY: Waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child exit {}",
        libc::WEXITSTATUS(status)
    );
    let fd = adv::recv_fd(ours.as_raw_fd())?;
    let own = read_exact(ours.as_raw_fd(), 4)?;
    let own = i32::from_ne_bytes(own[..4].try_into().unwrap());
    let before = d.status()?.records_produced;
    let dev = Dev {
        file: std::fs::File::from(fd),
    };
    let mut got = Vec::new();
    for (cmd, name) in [
        (abi::TCPLOG_IOC_DISABLE, "DISABLE"),
        (abi::TCPLOG_IOC_ENABLE, "ENABLE"),
    ] {
        got.push((name, dev.ioctl_none(cmd).map(|_| ()).map_err(errno_name)));
    }
    let mut n = 0u64;
    got.push((
        "FLUSH",
        dev.ioctl(abi::TCPLOG_IOC_FLUSH, &mut n)
            .map(|_| ())
            .map_err(errno_name),
    ));
    // Whatever happened, logging is on again.
    d.ioctl_none(abi::TCPLOG_IOC_ENABLE).map_err(errno_name)?;
    let after = d.status()?;
    ensure_eq!(
        errno_name(own),
        "EPERM",
        "the opener's own DISABLE without CAP_NET_ADMIN"
    );
    let eperm = Err("EPERM".to_owned());
    ensure_eq!(
        got,
        vec![
            ("DISABLE", eperm.clone()),
            ("ENABLE", eperm.clone()),
            ("FLUSH", eperm)
        ],
        "root (CAP_NET_ADMIN) using a descriptor opened without CAP_NET_ADMIN"
    );
    ensure_eq!(
        after.records_produced,
        before,
        "a refused command produced a record"
    );
    Ok(())
}
