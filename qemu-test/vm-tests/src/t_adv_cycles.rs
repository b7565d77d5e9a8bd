//! 100 cycles of insmod and rmmod while the system is busy: TCP connections over loopback (IPv4
//! and IPv6) and over a veth pair between namespaces, long-lived connections that span cycles,
//! UDP with bursts of identical datagrams that a `log` rule collapses (so a repeat timer is
//! pending when the module goes), network namespaces made and destroyed all the while, and, in
//! each cycle, child processes blocked in read and in poll and one replacing the rules, the
//! filter and the switches. At the end of a cycle the children are killed and the module is
//! unloaded at once, traffic still flowing: every rmmod must succeed, and the kernel must report
//! nothing.
//!
//! Under QEMU's multi-threaded TCG (two vCPUs on two host threads) this ends, within tens of
//! cycles, in `Oops: int3` at a jump-label or fentry site that insmod or rmmod is patching (a
//! tracepoint's or a netfilter hook's static key, a probed function's entry): the same oops comes
//! without tcplog ever loaded, from kretprobes and tracepoints switched on and off through tracefs
//! under the same traffic, and neither comes with `TCPLOG_VM_ACCEL=tcg,thread=single` (100
//! cycles took 350 s there). So this test runs last of the adversarial ones; `tlvm_cycles=N` on
//! the kernel command line runs fewer cycles.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tcplog_ctl as abi;

use crate::adv_kit::{self as adv, fork_child, note, open_dev, Rng};
use crate::ensure;
use crate::fixtures;
use crate::harness::{Harness, TestResult};
use crate::sys;

/// Cycles run: 100 scaled to the suite's size (`adv::scaled`), or `tlvm_cycles=N` from the kernel
/// command line.
fn cycles_wanted() -> u32 {
    std::env::var("tlvm_cycles")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| adv::scaled(100) as u32)
}

/// How long a killed child may take to end: one inside ENABLE re-registers every hook of the
/// module, which under emulation takes seconds, and SIGKILL waits for it.
const KILL_LIMIT: Duration = Duration::from_secs(30);

pub fn all(h: &mut Harness) {
    adv::run(
        h,
        &format!(
            "adv cycles: {} insmod/rmmod cycles under TCP and UDP traffic, blocked readers and pollers, pending repeats, namespace churn and rules replaced",
            cycles_wanted()
        ),
        cycles,
    );
}

/// Counters shared with the children (a shared anonymous mapping: they survive the fork).
struct Shm {
    ptr: *mut AtomicU64,
}

// SAFETY: The mapping holds atomics only.
unsafe impl Send for Shm {}
// SAFETY: As above.
unsafe impl Sync for Shm {}

const SHM_RULES: usize = 0;
const SHM_READS: usize = 1;
const SHM_POLLS: usize = 2;
const SHM_TOGGLES: usize = 3;

impl Shm {
    fn new() -> Result<Shm, String> {
        // SAFETY: A fresh shared anonymous mapping; zeroed memory is valid for atomics.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err("mmap".into());
        }
        Ok(Shm { ptr: p.cast() })
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        // SAFETY: `i` is one of the SHM_ indices, well inside the page.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: Our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

/// Counts of what the traffic threads did.
#[derive(Default)]
struct Counts {
    lo_conns: AtomicU64,
    veth_conns: AtomicU64,
    long_lived: AtomicU64,
    datagrams: AtomicU64,
    netns: AtomicU64,
    errors: AtomicU64,
}

/// The traffic threads; stopped and joined when dropped, whatever happened.
struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().ok();
        }
    }
}

fn tcp_round(l: &TcpListener, addr: std::net::SocketAddr, n: usize) -> std::io::Result<()> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    let (mut s, _) = l.accept()?;
    c.write_all(&vec![1u8; n])?;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    s.write_all(&buf[..n / 2])?;
    c.read_exact(&mut buf[..n / 2])?;
    Ok(())
}

/// Brings up `lo` in the calling thread's network namespace.
fn lo_up() {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: i16,
        _pad: [u8; 22],
    }
    let mut r = IfReq {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    r.name[..2].copy_from_slice(b"lo");
    // SAFETY: A socket of our own and a well-formed ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut r);
        r.flags |= libc::IFF_UP as i16;
        libc::ioctl(s, libc::SIOCSIFFLAGS as _, &mut r);
        libc::close(s);
    }
}

fn start_traffic(rng: &mut Rng, udp_port: u16, counts: Arc<Counts>) -> Result<Traffic, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let e = |e: std::io::Error| e.to_string();
    // Loopback, IPv4 and IPv6, one connection after another.
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        let l4 = TcpListener::bind("127.0.0.1:0").map_err(e)?;
        let l6 = TcpListener::bind("[::1]:0").map_err(e)?;
        let mut rng = Rng::new(rng.next_u64());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let l = if rng.percent(70) { &l4 } else { &l6 };
                let addr = l.local_addr().unwrap();
                match tcp_round(l, addr, rng.range(1, 3000) as usize) {
                    Ok(()) => counts.lo_conns.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(rng.range(1, 8)));
            }
        }));
    }
    // Over veth: the listener lives in tlb, this thread in tla.
    {
        fixtures::veth()?;
        let (stop, counts) = (stop.clone(), counts.clone());
        let l = fixtures::in_ns("tlb", || {
            TcpListener::bind("10.99.0.2:0").map_err(|e| e.to_string())
        })?;
        let ns = std::fs::File::open("/run/netns/tla").map_err(e)?;
        let mut rng = Rng::new(rng.next_u64());
        threads.push(thread::spawn(move || {
            // SAFETY: setns on this thread only, with a namespace file it holds open.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let addr = l.local_addr().unwrap();
            while !stop.load(Ordering::Relaxed) {
                match tcp_round(&l, addr, rng.range(1, 20000) as usize) {
                    Ok(()) => counts.veth_conns.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(rng.range(1, 8)));
            }
        }));
    }
    // Long-lived connections across cycles: a few held open, talking now and then, one
    // replaced every so often.
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        let l = TcpListener::bind("127.0.0.1:0").map_err(e)?;
        let mut rng = Rng::new(rng.next_u64());
        threads.push(thread::spawn(move || {
            let addr = l.local_addr().unwrap();
            let open = |l: &TcpListener| -> std::io::Result<(TcpStream, TcpStream)> {
                let c = TcpStream::connect(addr)?;
                let (s, _) = l.accept()?;
                Ok((c, s))
            };
            let mut conns: Vec<(TcpStream, TcpStream)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if conns.len() < 4 || rng.percent(10) {
                    if conns.len() >= 4 {
                        conns.remove(rng.below(4) as usize);
                    }
                    match open(&l) {
                        Ok(p) => {
                            conns.push(p);
                            counts.long_lived.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if let Some((c, s)) = conns.get_mut(rng.below(4) as usize) {
                    let mut b = [0u8; 10];
                    if c.write_all(&b).and_then(|()| s.read_exact(&mut b)).is_err() {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(rng.range(20, 200)));
            }
        }));
    }
    // UDP: bursts of identical datagrams (one record with a repeat count, written by a timer),
    // and distinct ones, IPv4 and IPv6.
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        let rx = UdpSocket::bind(("127.0.0.1", udp_port)).map_err(e)?;
        let tx = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
        let rx6 = UdpSocket::bind(("::1", udp_port)).map_err(e)?;
        let tx6 = UdpSocket::bind("[::1]:0").map_err(e)?;
        rx.set_nonblocking(true).map_err(e)?;
        rx6.set_nonblocking(true).map_err(e)?;
        let mut rng = Rng::new(rng.next_u64());
        threads.push(thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (tx, dst) = if rng.percent(70) {
                    (&tx, ("127.0.0.1", udp_port))
                } else {
                    (&tx6, ("::1", udp_port))
                };
                for _ in 0..rng.range(1, 8) {
                    if tx.send_to(b"the same datagram", dst).is_ok() {
                        n += 1;
                    }
                }
                if tx.send_to(&n.to_be_bytes(), dst).is_ok() {
                    n += 1;
                }
                while rx.recv(&mut buf).is_ok() || rx6.recv(&mut buf).is_ok() {}
                counts.datagrams.store(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(rng.range(5, 25)));
            }
        }));
    }
    // Network namespaces made and destroyed: each lives on a thread of its own, which sends a
    // datagram and makes a connection inside it, then ends (and the namespace with it).
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        let mut rng = Rng::new(rng.next_u64());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = thread::spawn(|| -> Result<(), String> {
                    // SAFETY: Moves this thread alone into a new network namespace.
                    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                        return Err("unshare".into());
                    }
                    lo_up();
                    let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    u.send_to(b"x", "127.0.0.1:9").map_err(|e| e.to_string())?;
                    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    tcp_round(&l, l.local_addr().unwrap(), 100).map_err(|e| e.to_string())
                });
                match t.join() {
                    Ok(Ok(())) => counts.netns.fetch_add(1, Ordering::Relaxed),
                    _ => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(rng.range(30, 150)));
            }
        }));
    }
    Ok(Traffic { stop, threads })
}

/// Two rule sets, both logging the UDP port of the repeated datagrams.
fn rule_sets(udp_port: u16, veth_first: bool) -> [abi::RuleSet; 2] {
    let udp_log = abi::Rule {
        action: abi::action::LOG_HEADER,
        protocol: abi::IPPROTO_UDP,
        dport: abi::PortRange {
            lo: udp_port,
            hi: udp_port,
        },
        ..Default::default()
    };
    let mut a = abi::RuleSet {
        n_rules: 3,
        ..Default::default()
    };
    a.rules[0] = udp_log;
    a.rules[1] = abi::Rule {
        action: abi::action::LOG_BODY,
        direction: abi::direction::IN,
        protocol: abi::IPPROTO_TCP,
        ..Default::default()
    };
    a.rules[2] = abi::Rule {
        action: abi::action::COUNT,
        ..Default::default()
    };
    let mut b = abi::RuleSet {
        n_rules: 2,
        ..Default::default()
    };
    b.rules[0] = abi::Rule {
        action: abi::action::COUNT,
        direction: abi::direction::IN,
        protocol: abi::IPPROTO_TCP,
        tcp_flags: abi::tcp_flag::SYN,
        tcp_flags_mask: abi::tcp_flag::SYN | abi::tcp_flag::ACK,
        conn_limit: 2,
        ..Default::default()
    };
    b.rules[1] = udp_log;
    if veth_first {
        [b, a]
    } else {
        [a, b]
    }
}

/// What a child does until it is killed.
#[derive(Clone, Copy)]
enum Role {
    Reader,
    Poller,
    /// Replaces rules and the filter, flushes; with `true`, also disables and enables logging
    /// once.
    Changer(bool),
}

/// The body of a child: only system calls (it is a fork of a multithreaded process).
fn child(role: Role, sets: &[abi::RuleSet; 2], shm: &Shm) -> i32 {
    let flags = if matches!(role, Role::Changer(_)) {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    let Ok(fd) = open_dev(flags) else {
        return 2;
    };
    let mut buf = [0u8; 16384];
    // SAFETY: System calls on our own descriptor, buffers and the shared counters' mapping.
    unsafe {
        match role {
            Role::Reader => {
                libc::ioctl(fd, abi::TCPLOG_IOC_SEEK_END as _, 0);
                loop {
                    libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    shm.at(SHM_READS).fetch_add(1, Ordering::Relaxed);
                }
            }
            Role::Poller => loop {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut p, 1, -1);
                libc::ioctl(fd, abi::TCPLOG_IOC_SEEK_END as _, 0);
                shm.at(SHM_POLLS).fetch_add(1, Ordering::Relaxed);
            },
            Role::Changer(toggle) => {
                let mut i = 0u64;
                loop {
                    let mut set = sets[(i % 2) as usize];
                    libc::ioctl(fd, abi::TCPLOG_IOC_SET_RULES as _, &mut set);
                    shm.at(SHM_RULES).fetch_add(1, Ordering::Relaxed);
                    if i % 7 == 3 {
                        let mut f = abi::Filter {
                            protocols: if i % 2 == 0 { abi::PROTO_TCP } else { 0 },
                            ..Default::default()
                        };
                        libc::ioctl(fd, abi::TCPLOG_IOC_SET_FILTER as _, &mut f);
                    }
                    if toggle && i == 2 {
                        // Counted as begun: a kill may land while it re-registers the hooks.
                        shm.at(SHM_TOGGLES).fetch_add(1, Ordering::Relaxed);
                        libc::ioctl(fd, abi::TCPLOG_IOC_DISABLE as _, 0);
                        libc::ioctl(fd, abi::TCPLOG_IOC_ENABLE as _, 0);
                    }
                    if i % 13 == 0 {
                        let mut n = 0u64;
                        libc::ioctl(fd, abi::TCPLOG_IOC_FLUSH as _, &mut n);
                    }
                    let ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 3_000_000 + (i % 5) as i64 * 2_000_000,
                    };
                    libc::nanosleep(&ts, std::ptr::null_mut());
                    i += 1;
                }
            }
        }
    }
}

fn cycles() -> TestResult {
    adv::need_rmmod()?;
    let mut rng = Rng::for_test("cycles");
    let mark = adv::log_mark();
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    let udp_port = {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        s.local_addr().unwrap().port()
    };
    let shm = Shm::new()?;
    let counts = Arc::new(Counts::default());
    let traffic = start_traffic(&mut rng, udp_port, counts.clone())?;
    let (mut t_insmod, mut t_rmmod) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    let mut failure = None;
    let mut children_total = 0;
    let wanted = cycles_wanted();
    let mut slowest_kill = Duration::ZERO;
    for cycle in 0..wanted {
        let ring = rng.pick(&["64", "256", "1024", "4096"]);
        let conns = rng.pick(&["64", "256", "4096", "16384"]);
        let enabled = if rng.percent(80) { "1" } else { "0" };
        let params = [
            format!("ring_kib={ring}"),
            format!("max_conns={conns}"),
            format!("enabled={enabled}"),
        ];
        let t = Instant::now();
        if let Err(e) = sys::insmod(&params.iter().map(String::as_str).collect::<Vec<_>>()) {
            failure = Some(format!("cycle {cycle}: insmod {params:?}: {e}"));
            break;
        }
        t_insmod += t.elapsed();
        let sets = rule_sets(udp_port, rng.percent(50));
        let mut roles = vec![
            Role::Reader,
            Role::Reader,
            Role::Poller,
            Role::Changer(rng.percent(33)),
        ];
        if rng.percent(50) {
            roles.push(Role::Poller);
        }
        let mut pids = Vec::new();
        for role in roles {
            match fork_child(|| child(role, &sets, &shm)) {
                Ok(pid) => pids.push(pid),
                Err(e) => {
                    failure = Some(format!("cycle {cycle}: {e}"));
                    break;
                }
            }
        }
        children_total += pids.len();
        thread::sleep(Duration::from_millis(rng.range(50, 250)));
        // Identical datagrams just before the end: the module goes with a repeat pending.
        if let Ok(tx) = UdpSocket::bind("127.0.0.1:0") {
            for _ in 0..5 {
                let _ = tx.send_to(b"pending at unload", ("127.0.0.1", udp_port));
            }
        }
        for pid in &pids {
            // SAFETY: Our children.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let t = Instant::now();
        for pid in pids {
            if let Err(e) = adv::kill_and_reap(pid, KILL_LIMIT, true) {
                failure.get_or_insert(format!("cycle {cycle}: {e}"));
            }
        }
        slowest_kill = slowest_kill.max(t.elapsed());
        if failure.is_some() {
            break;
        }
        let t = Instant::now();
        if let Err(e) = sys::rmmod() {
            thread::sleep(Duration::from_secs(1));
            let again = sys::rmmod();
            failure = Some(format!(
                "cycle {cycle}: rmmod right after the children were reaped: {e}; one second later: {}",
                match again {
                    Ok(()) => "succeeded".to_owned(),
                    Err(e) => e,
                }
            ));
            break;
        }
        t_rmmod += t.elapsed();
        done += 1;
    }
    drop(traffic);
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    note(format!(
        "{done} cycles (insmod {:.0} ms, rmmod {:.0} ms on average); {children_total} children killed, all of a cycle's reaped within {:.1} s at worst",
        t_insmod.as_secs_f64() * 1000.0 / f64::from(done.max(1)),
        t_rmmod.as_secs_f64() * 1000.0 / f64::from(done.max(1)),
        slowest_kill.as_secs_f64()
    ));
    note(format!(
        "traffic: {} loopback and {} veth connections, {} long-lived, {} datagrams, {} namespaces made and destroyed, {} errors",
        c(&counts.lo_conns),
        c(&counts.veth_conns),
        c(&counts.long_lived),
        c(&counts.datagrams),
        c(&counts.netns),
        c(&counts.errors)
    ));
    note(format!(
        "children: {} rule replacements, {} disable/enable toggles begun, {} reads, {} polls",
        c(shm.at(SHM_RULES)),
        c(shm.at(SHM_TOGGLES)),
        c(shm.at(SHM_READS)),
        c(shm.at(SHM_POLLS))
    ));
    if !sys::module_loaded() {
        sys::insmod(&[])?;
    }
    adv::no_reports_since(mark)?;
    if let Some(f) = failure {
        return Err(f);
    }
    ensure!(done == wanted, "only {done} of {wanted} cycles");
    ensure!(
        c(&counts.lo_conns) > 0 && c(&counts.veth_conns) > 0 && c(&counts.netns) > 0,
        "some traffic never flowed"
    );
    Ok(())
}
