//! Benchmarks: numbers, not verdicts. Run with `qemu-test/run-vm.sh bench [WORDS]`.
//!
//! The VM runs under TCG (instruction emulation), so absolute numbers are far below a real
//! machine's; compare them with each other, within one run.
//!
//! Every configuration (the module not loaded, loaded but disabled, enabled with and without
//! readers, the floor of tcplog's hooks doing nothing (`floor.rs`), the peers: tcpdump,
//! bpftrace's tcplife, conntrack) runs every workload once in each
//! of several rounds. A round runs the configurations one after another, in an order shuffled
//! afresh for each round, so that drift in the emulator's speed (on a host shared with other work)
//! and what one configuration leaves behind hit them all alike. A row of the table shows the median round, the spread (the lowest
//! and the highest round), the ratio of the median to the median of the module not loaded, the
//! CPU time per connection or MiB (both CPUs, not idle) with its spread and ratio, the records
//! produced per second and the records lost.
//!
//! WORDS (`tlvm_filter` on the kernel command line), joined by commas: `quick` for fewer rounds of
//! smaller workloads, and the sections to run: `ring`, `churn`, `churn2`, `bulk`, `memory` (all
//! by default).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tcplog_ctl as abi;

use crate::dev::{self, account, Dev};
use crate::sys;

/// What a run does: the sections asked for, and how much of each.
struct Plan {
    quick: bool,
    /// The VM's clock counts instructions (run-vm.sh gave QEMU `-icount`).
    icount: bool,
    sections: Vec<String>,
    rounds: usize,
    /// Connections per churn measurement.
    conns: u32,
    /// Bytes per bulk measurement.
    bytes: usize,
}

const SECTIONS: [&str; 5] = ["ring", "churn", "churn2", "bulk", "memory"];

impl Plan {
    fn parse(words: Option<&str>) -> Result<Plan, String> {
        let mut quick = false;
        let mut icount = false;
        let mut sections = Vec::new();
        for w in words.unwrap_or("").split(',').filter(|w| !w.is_empty()) {
            if w == "quick" {
                quick = true;
            } else if w == "icount" {
                icount = true;
            } else if SECTIONS.contains(&w) {
                sections.push(w.to_owned());
            } else {
                return Err(format!(
                    "unknown word '{w}' (quick, icount, {})",
                    SECTIONS.join(", ")
                ));
            }
        }
        Ok(Plan {
            quick,
            icount,
            sections,
            rounds: if quick { 3 } else { 5 },
            conns: if quick { 600 } else { 2000 },
            bytes: if quick { 16 << 20 } else { 64 << 20 },
        })
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

/// `--bench [WORDS]`.
pub fn main(words: Option<&str>) -> Result<(), String> {
    let plan = Plan::parse(words)?;
    let start = Instant::now();
    println!(
        "bench: {} rounds{}{}; {} connections per churn, {} MiB per bulk transfer",
        plan.rounds,
        if plan.quick { " (quick)" } else { "" },
        if plan.icount {
            ", one CPU whose clock counts instructions (-icount): times and rates are instruction counts"
        } else {
            ""
        },
        plan.conns,
        plan.bytes >> 20
    );
    // What every timestamp costs depends on it (a TSC read, or an emulated device's register).
    let clock = std::fs::read_to_string(CLOCKSOURCE).unwrap_or_default();
    println!("bench: clocksource {}", clock.trim());
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    if plan.wants("ring") {
        ring()?;
    }
    let works: Vec<Work> = Work::ALL
        .into_iter()
        .filter(|w| plan.wants(w.section()))
        // One CPU under -icount: no producers on two.
        .filter(|w| !(plan.icount && *w == Work::Churn2))
        .collect();
    let mut tables = String::new();
    if !works.is_empty() {
        tables = compare(&plan, &works)?;
    }
    if plan.wants("memory") {
        tables.push_str(&memory()?);
    }
    println!("bench: results ({} s)", start.elapsed().as_secs());
    for line in tables.lines() {
        println!("bench {line}");
    }
    Ok(())
}

const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

// ---------------------------------------------------------------------------------------------
// The ring alone: MARK records, no socket.

fn report(what: &str, records: u64, secs: f64) {
    println!(
        "bench {what:<44} {records:>9} records in {secs:>6.3} s = {:>10.0} records/s, {:>7.1} MB/s",
        records as f64 / secs,
        records as f64 * abi::MARK_RECORD_LEN as f64 / secs / 1e6
    );
}

/// Produces `calls` MARK batches of the largest size.
fn produce(w: &Dev, calls: u32) -> Result<u64, String> {
    for _ in 0..calls {
        w.mark(0, abi::MAX_MARK_COUNT)?;
    }
    Ok(u64::from(calls) * u64::from(abi::MAX_MARK_COUNT))
}

pub fn ring() -> Result<(), String> {
    dev::reload(&[])?;
    let w = Dev::rw()?;
    let ring = w.status()?.ring_size;
    println!(
        "bench ring of {} KiB, MARK records of {} bytes",
        ring / 1024,
        abi::MARK_RECORD_LEN
    );

    // Producing with no reader: the ring overwrites its oldest records.
    let t = Instant::now();
    let n = produce(&w, 16)?;
    report("produce, no reader", n, t.elapsed().as_secs_f64());

    // Consuming a full ring.
    let r = Dev::open(false, true)?;
    let t = Instant::now();
    let recs = r.drain()?;
    report(
        "consume a full ring (1 MiB reads)",
        recs.len() as u64,
        t.elapsed().as_secs_f64(),
    );
    drop(r);

    // Producing with a reader draining at the same time on the other CPU.
    let r = Dev::open(false, false)?;
    r.seek_end()?;
    let start = r.status()?.records_produced;
    let t = Instant::now();
    let producer = thread::spawn(move || -> Result<u64, String> { produce(&Dev::rw()?, 16) });
    let mut delivered = 0u64;
    let mut lost = 0u64;
    let mut next = start;
    while !producer.is_finished() || r.fionread()? > 0 {
        if r.fionread()? == 0 {
            thread::yield_now();
            continue;
        }
        let recs = r.read(1 << 20)?;
        let (d, l, nx) = account(&recs, next)?;
        delivered += d;
        lost += l;
        next = nx;
    }
    let produced = producer.join().map_err(|_| "producer panicked")??;
    let secs = t.elapsed().as_secs_f64();
    report("produce, with a reader draining", produced, secs);
    report("  of which consumed", delivered, secs);
    println!(
        "bench   lost {lost} ({:.1}%), delivered + lost = {}",
        lost as f64 * 100.0 / produced as f64,
        delivered + lost
    );
    drop((r, w));
    sys::rmmod()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// The workloads, each measured under every configuration that applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    /// Connect, accept, 16 bytes each way, close, over loopback, one thread.
    Churn,
    /// The same in two threads at once: producers on both CPUs.
    Churn2,
    /// One TCP connection sending `Plan::bytes` over loopback.
    BulkLo,
    /// The same over a veth pair between two namespaces.
    BulkVeth,
}

impl Work {
    const ALL: [Work; 4] = [Work::Churn, Work::Churn2, Work::BulkLo, Work::BulkVeth];

    fn section(self) -> &'static str {
        match self {
            Work::Churn => "churn",
            Work::Churn2 => "churn2",
            Work::BulkLo | Work::BulkVeth => "bulk",
        }
    }

    fn title(self, plan: &Plan) -> String {
        match self {
            Work::Churn => format!(
                "churn, 1 thread: connect, accept, 16 bytes each way, close; {} connections over loopback",
                plan.conns
            ),
            Work::Churn2 => format!(
                "churn, 2 threads (producers on both CPUs): {} connections each over loopback",
                plan.conns / 2
            ),
            Work::BulkLo => format!("bulk TCP over loopback: {} MiB", plan.bytes >> 20),
            Work::BulkVeth => format!(
                "bulk TCP over veth between two namespaces: {} MiB",
                plan.bytes >> 20
            ),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Work::Churn | Work::Churn2 => "conn/s",
            Work::BulkLo | Work::BulkVeth => "MB/s",
        }
    }

    /// What one run does, in the unit its CPU time is given per: connections, or MiB.
    fn amount(self, plan: &Plan) -> f64 {
        match self {
            Work::Churn => f64::from(plan.conns),
            Work::Churn2 => f64::from(plan.conns / 2 * 2),
            Work::BulkLo | Work::BulkVeth => (plan.bytes >> 20) as f64,
        }
    }

    /// The CPU time column's unit, and microseconds per that unit.
    fn cpu_unit(self) -> (&'static str, f64) {
        match self {
            Work::Churn | Work::Churn2 => ("cpu us/conn", 1.0),
            Work::BulkLo | Work::BulkVeth => ("cpu ms/MiB", 1000.0),
        }
    }

    /// Connections per second, or MB per second.
    fn run(self, plan: &Plan) -> Result<f64, String> {
        match self {
            Work::Churn => churn(1, plan.conns),
            Work::Churn2 => churn(2, plan.conns / 2),
            Work::BulkLo => bulk(None, None, "127.0.0.1:0", plan.bytes),
            Work::BulkVeth => bulk(Some("tla"), Some("tlb"), "10.99.0.2:0", plan.bytes),
        }
    }

    /// The namespaces a peer that watches one namespace must watch (None: this one), and where
    /// tcpdump listens.
    fn namespaces(self) -> &'static [Option<&'static str>] {
        match self {
            Work::BulkVeth => &[Some("tla"), Some("tlb")],
            _ => &[None],
        }
    }

    fn capture(self) -> (Option<&'static str>, &'static str) {
        match self {
            Work::BulkVeth => (Some("tlb"), "vb"),
            _ => (None, "lo"),
        }
    }
}

/// One thread's churn: `n` times connect, accept, 16 bytes each way, close.
fn churn_loop(n: u32) -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        c.write_all(&buf).map_err(|e| e.to_string())?;
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(&buf).map_err(|e| e.to_string())?;
        c.read_exact(&mut buf).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Churn in `threads` threads of `n` connections each; connections per second, all threads'.
fn churn(threads: u32, n: u32) -> Result<f64, String> {
    let go = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let go = go.clone();
            thread::spawn(move || {
                go.wait();
                churn_loop(n)
            })
        })
        .collect();
    go.wait();
    let t = Instant::now();
    for w in workers {
        w.join().map_err(|_| "churn thread panicked")??;
    }
    Ok(f64::from(threads * n) / t.elapsed().as_secs_f64())
}

/// Enters network namespace `ns` (None: stays) on the calling thread.
fn enter(ns: Option<&str>) -> Result<(), String> {
    if let Some(ns) = ns {
        let f = File::open(format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
        // SAFETY: setns on the calling thread, with a namespace file held open.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {ns}"));
        }
    }
    Ok(())
}

/// Sends `bytes` over one TCP connection, the client in namespace `client_ns` and the server in
/// `server_ns` (None: this one), bound to `bind`; MB/s.
fn bulk(
    client_ns: Option<&str>,
    server_ns: Option<&str>,
    bind: &str,
    bytes: usize,
) -> Result<f64, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = server_ns.map(str::to_owned);
    let bind = bind.to_owned();
    let server = thread::spawn(move || -> Result<usize, String> {
        enter(server_ns.as_deref())?;
        let l = TcpListener::bind(&bind).map_err(|e| e.to_string())?;
        ready_tx
            .send(l.local_addr().map_err(|e| e.to_string())?)
            .ok();
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k,
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let addr = ready_rx.recv().map_err(|_| "server did not start")?;
    let client_ns = client_ns.map(str::to_owned);
    let t = Instant::now();
    let client = thread::spawn(move || -> Result<(), String> {
        enter(client_ns.as_deref())?;
        let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let chunk = vec![7u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let k = left.min(chunk.len());
            c.write_all(&chunk[..k]).map_err(|e| e.to_string())?;
            left -= k;
        }
        Ok(())
    });
    client.join().map_err(|_| "client panicked")??;
    let got = server.join().map_err(|_| "server panicked")??;
    if got != bytes {
        return Err(format!("received {got} of {bytes} bytes"));
    }
    Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e6)
}

// ---------------------------------------------------------------------------------------------
// Background processes: tcplog's readers and the peers.

/// A process started for a measurement, its output going to files on tmpfs.
struct Proc {
    what: String,
    child: Option<Child>,
    out: String,
    err: String,
}

impl Proc {
    /// Starts `prog args` in network namespace `ns` (None: this one), stdout to `out` and
    /// stderr to `err`.
    fn spawn(ns: Option<&str>, prog: &str, args: &[&str], out: &str) -> Result<Proc, String> {
        let err = format!("{out}.err");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, prog]);
                c
            }
            None => Command::new(prog),
        };
        let create = |p: &str| File::create(p).map_err(|e| format!("{p}: {e}"));
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(out)?)
            .stderr(create(&err)?)
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))?;
        Ok(Proc {
            what: format!("{prog} {}", args.join(" ")),
            child: Some(child),
            out: out.to_owned(),
            err,
        })
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing if the process ends first or `secs` pass.
    fn wait_ready(
        &mut self,
        secs: u64,
        mut ready: impl FnMut(&Proc) -> bool,
    ) -> Result<(), String> {
        let t = Instant::now();
        loop {
            if ready(self) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("{} exited ({st}): {}", self.what, self.stderr()));
                }
            }
            if t.elapsed() > Duration::from_secs(secs) {
                return Err(format!(
                    "{} not ready after {secs} s: {}",
                    self.what,
                    self.stderr()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Interrupts the process and waits for it; its stderr.
    fn stop(mut self) -> Result<String, String> {
        let Some(mut c) = self.child.take() else {
            return Err(format!("{} is not running", self.what));
        };
        // SAFETY: Signalling our own child (`ip netns exec` execs the program in place).
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if t.elapsed() < Duration::from_secs(60) => {
                    thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    c.kill().ok();
                    c.wait().ok();
                    return Err(format!("{} did not stop: {}", self.what, self.stderr()));
                }
            }
        }
        Ok(self.stderr())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// The first number in `text` right before `suffix`, e.g. "12" in "12 packets captured".
fn number_before(text: &str, suffix: &str) -> Option<u64> {
    let i = text.find(suffix)?;
    text[..i].split_whitespace().last()?.parse().ok()
}

/// Netlink sockets of protocol `proto` bound to multicast groups, in the namespace of `pid`.
fn has_netlink_listener(pid: i32, proto: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/net/netlink"))
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].parse() == Ok(proto) && !f[3].trim_start_matches('0').is_empty()
            })
        })
        .unwrap_or(false)
}

/// The module's status, through a descriptor of its own (closed again at once).
fn status() -> Result<abi::Status, String> {
    Dev::open(false, true)?.status()
}

fn tcplog(args: &[&str]) -> Result<(), String> {
    sys::run_ok(sys::TOOL, args).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Configurations.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cfg {
    Unloaded,
    Disabled,
    Enabled,
    FollowFile,
    FollowJson,
    Headers,
    Floor,
    FloorProbes,
    Tcpdump,
    Bpftrace,
    Conntrack,
}

const TCPLIFE: &str = "/usr/share/tcplog/tcplife.bt";
/// NETLINK_NETFILTER.
const NETLINK_NETFILTER: u32 = 12;
const CONNTRACK_MODULES: [&str; 4] = [
    "nf_conntrack_netlink",
    "nf_conntrack",
    "nf_defrag_ipv6",
    "nf_defrag_ipv4",
];

impl Cfg {
    const ALL: [Cfg; 11] = [
        Cfg::Unloaded,
        Cfg::Disabled,
        Cfg::Enabled,
        Cfg::FollowFile,
        Cfg::FollowJson,
        Cfg::Headers,
        Cfg::Floor,
        Cfg::FloorProbes,
        Cfg::Tcpdump,
        Cfg::Bpftrace,
        Cfg::Conntrack,
    ];

    fn name(self) -> &'static str {
        match self {
            Cfg::Unloaded => "module not loaded",
            Cfg::Disabled => "loaded, disabled (enabled=0)",
            Cfg::Enabled => "enabled, no reader",
            Cfg::FollowFile => "enabled, follow -q -w FILE",
            Cfg::FollowJson => "enabled, follow --json > FILE",
            Cfg::Headers => "log body, snap 128, follow -w",
            Cfg::Floor => "floor: tcplog's hooks, empty",
            Cfg::FloorProbes => "floor without netfilter",
            Cfg::Tcpdump => "peer: tcpdump -s 128 -w FILE",
            Cfg::Bpftrace => "peer: bpftrace tcplife.bt",
            Cfg::Conntrack => "peer: conntrack acct, -E",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Cfg::Unloaded => "unloaded",
            Cfg::Disabled => "disabled",
            Cfg::Enabled => "enabled",
            Cfg::FollowFile => "follow-w",
            Cfg::FollowJson => "json",
            Cfg::Headers => "headers",
            Cfg::Floor => "floor",
            Cfg::FloorProbes => "floor-probes",
            Cfg::Tcpdump => "tcpdump",
            Cfg::Bpftrace => "bpftrace",
            Cfg::Conntrack => "conntrack",
        }
    }

    /// Not tcplog: left out of later rounds if it fails.
    fn peer(self) -> bool {
        matches!(
            self,
            Cfg::Floor | Cfg::FloorProbes | Cfg::Tcpdump | Cfg::Bpftrace | Cfg::Conntrack
        )
    }

    fn applies(self, w: Work) -> bool {
        match w {
            Work::Churn => true,
            Work::Churn2 => !matches!(
                self,
                Cfg::FollowJson | Cfg::Headers | Cfg::Tcpdump | Cfg::FloorProbes
            ),
            // tcplife's cost is per connection: one connection shows nothing.
            Work::BulkLo => !matches!(self, Cfg::FollowJson | Cfg::Bpftrace | Cfg::FloorProbes),
            // The floor's netfilter chains are in this namespace only.
            Work::BulkVeth => !matches!(
                self,
                Cfg::FollowJson | Cfg::Bpftrace | Cfg::Floor | Cfg::FloorProbes
            ),
        }
    }

    fn module(self) -> bool {
        matches!(
            self,
            Cfg::Disabled | Cfg::Enabled | Cfg::FollowFile | Cfg::FollowJson | Cfg::Headers
        )
    }

    /// Sets up what lasts across the workloads of one round: the module, bpftrace, conntrack.
    fn setup(self) -> Result<Option<Proc>, String> {
        match self {
            Cfg::Unloaded | Cfg::Tcpdump => Ok(None),
            Cfg::Floor => crate::floor::arm(true).map(|()| None),
            Cfg::FloorProbes => crate::floor::arm(false).map(|()| None),
            Cfg::Disabled => sys::insmod(&["enabled=0"]).map(|()| None),
            Cfg::Enabled | Cfg::FollowFile | Cfg::FollowJson => sys::insmod(&[]).map(|()| None),
            Cfg::Headers => {
                sys::insmod(&[])?;
                tcplog(&["config", "--snap-len", "128"])?;
                tcplog(&["rules", "set", "log body proto tcp"])?;
                Ok(None)
            }
            Cfg::Bpftrace => {
                let mut p = Proc::spawn(None, "bpftrace", &[TCPLIFE], "/tmp/bench.tcplife")?;
                // BEGIN prints the header once every probe is attached; under TCG, compiling
                // the script takes a while.
                p.wait_ready(300, |p| p.stdout().contains("PID"))?;
                Ok(Some(p))
            }
            Cfg::Conntrack => {
                // nf_conntrack registers its hooks only when a ruleset needs them, unless told.
                sys::run_ok("modprobe", &["nf_conntrack", "enable_hooks=1", "acct=1"])?;
                sys::run_ok("modprobe", &["nf_conntrack_netlink"])?;
                sys::run_ok("sysctl", &["-w", "net.netfilter.nf_conntrack_acct=1"])?;
                Ok(None)
            }
        }
    }

    fn teardown(self, kept: Option<Proc>) -> Result<(), String> {
        if let Some(p) = kept {
            p.stop()?;
        }
        if self.module() {
            sys::rmmod()?;
        }
        if matches!(self, Cfg::Floor | Cfg::FloorProbes) {
            crate::floor::disarm()?;
        }
        if self == Cfg::Conntrack {
            for m in CONNTRACK_MODULES {
                sys::run_ok("rmmod", &[m])?;
            }
        }
        Ok(())
    }

    /// Undoes what a setup that failed half way did; passes its error on.
    fn cleanup(self, e: String) -> String {
        if self.module() && sys::module_loaded() {
            sys::rmmod().ok();
        }
        if matches!(self, Cfg::Floor | Cfg::FloorProbes) {
            crate::floor::disarm().ok();
        }
        if self == Cfg::Conntrack {
            for m in CONNTRACK_MODULES {
                sys::run("rmmod", &[m]).ok();
            }
        }
        e
    }

    /// Starts what reads during one workload.
    fn readers(self, w: Work) -> Result<Vec<Proc>, String> {
        let follow = |args: &[&str], out: &str| -> Result<Vec<Proc>, String> {
            let mut p = Proc::spawn(None, sys::TOOL, args, out)?;
            // Ready once it holds the device open (besides the descriptor `status` opens).
            p.wait_ready(60, |_| status().is_ok_and(|s| s.readers >= 2))?;
            thread::sleep(Duration::from_millis(100));
            Ok(vec![p])
        };
        match self {
            Cfg::FollowFile | Cfg::Headers => follow(
                &["follow", "--new", "-q", "-w", "/tmp/bench.tlog"],
                "/tmp/bench.follow",
            ),
            Cfg::FollowJson => follow(&["follow", "--new", "--json"], "/tmp/bench.json"),
            Cfg::Tcpdump => {
                let (ns, dev) = w.capture();
                let mut p = Proc::spawn(
                    ns,
                    "tcpdump",
                    &[
                        "-i",
                        dev,
                        "-s",
                        "128",
                        "-w",
                        "/tmp/bench.pcap",
                        "-Z",
                        "root",
                    ],
                    "/tmp/bench.tcpdump",
                )?;
                p.wait_ready(60, |p| p.stderr().contains("listening on"))?;
                Ok(vec![p])
            }
            Cfg::Conntrack => w
                .namespaces()
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    let mut p =
                        Proc::spawn(*ns, "conntrack", &["-E"], &format!("/tmp/bench.ct{i}"))?;
                    p.wait_ready(60, |p| has_netlink_listener(p.pid(), NETLINK_NETFILTER))?;
                    Ok(p)
                })
                .collect(),
            _ => Ok(Vec::new()),
        }
    }
}

/// What the readers of one measurement said: records they wrote, records they lost.
fn stop_readers(c: Cfg, readers: Vec<Proc>) -> Result<(Option<u64>, Option<u64>), String> {
    let (mut records, mut lost) = (None::<u64>, None::<u64>);
    let add = |slot: &mut Option<u64>, v: Option<u64>| {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0) + v);
        }
    };
    // Let the readers catch up with what the workload produced; tcpdump hands packets over in
    // blocks it retires after a second, and counts only what it was handed.
    thread::sleep(Duration::from_millis(if c == Cfg::Tcpdump {
        1200
    } else {
        200
    }));
    for p in readers {
        let err = p.stop()?;
        match c {
            Cfg::FollowFile | Cfg::FollowJson | Cfg::Headers => {
                // "tcplog: N records, lost M records in total"
                let line = err.lines().rfind(|l| l.contains(" records, lost "));
                let line = line.ok_or_else(|| format!("the tool did not report: {err}"))?;
                add(&mut records, number_before(line, " records, lost"));
                add(&mut lost, number_before(line, " records in total"));
            }
            Cfg::Tcpdump => {
                add(&mut records, number_before(&err, " packets captured"));
                add(&mut lost, number_before(&err, " packets dropped by kernel"));
            }
            Cfg::Conntrack => {
                add(&mut records, number_before(&err, " flow events"));
                add(&mut lost, Some(err.matches("ENOBUFS").count() as u64));
            }
            _ => {}
        }
    }
    for f in [
        "/tmp/bench.tlog",
        "/tmp/bench.json",
        "/tmp/bench.pcap",
        "/tmp/bench.ct0",
        "/tmp/bench.ct1",
    ] {
        std::fs::remove_file(f).ok();
    }
    Ok((records, lost))
}

/// Lines tcplife has printed (one per closed connection) and events it says it lost.
fn tcplife_counts(p: &Proc) -> (u64, u64) {
    let out = p.stdout();
    let lines = out
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count() as u64;
    let lost = out
        .lines()
        .chain(p.stderr().lines())
        .filter_map(|l| l.strip_prefix("Lost "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    (lines, lost)
}

/// CPU time spent by every CPU, not idle (user, system, interrupts, steal), in microseconds,
/// from `/proc/stat` (USER_HZ ticks). A connection churn is latency-bound (one thread waits on
/// the other side, and the CPUs idle between), so its rate says little about what each
/// connection costs; the CPU time it took does: every producer's and every reader's.
fn busy_us() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| e.to_string())?;
    let ticks: Vec<u64> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or("/proc/stat has no cpu line")?
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| format!("/proc/stat: '{t}'")))
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in user already).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // SAFETY: `sysconf` has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(busy as f64 * 1e6 / hz.max(1) as f64)
}

/// One measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rate: f64,
    /// CPU time per unit of work (see [`Work::cpu_unit`]).
    cpu: f64,
    /// Records per second: produced by the module, or written by a peer.
    records_per_s: Option<f64>,
    lost: Option<u64>,
}

fn measure(plan: &Plan, w: Work, c: Cfg, kept: Option<&Proc>) -> Result<Sample, String> {
    let readers = c.readers(w)?;
    let produced = || -> Result<Option<u64>, String> {
        if c.module() {
            Ok(Some(status()?.records_produced))
        } else {
            Ok(None)
        }
    };
    let before = produced()?;
    let life_before = kept.map(tcplife_counts);
    let busy_before = busy_us()?;
    let t = Instant::now();
    let rate = w.run(plan)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = (busy_us()? - busy_before) / w.cpu_unit().1 / w.amount(plan);
    let after = produced()?;
    let (records, lost) = stop_readers(c, readers)?;
    let (records, lost) = match (c, kept) {
        (Cfg::Bpftrace, Some(p)) => {
            let (l0, x0) = life_before.unwrap_or_default();
            let (l1, x1) = tcplife_counts(p);
            (Some(l1 - l0), Some(x1 - x0))
        }
        _ => (
            before.zip(after).map(|(b, a)| a - b).or(records),
            if c == Cfg::Enabled || c == Cfg::Disabled {
                None
            } else {
                lost
            },
        ),
    };
    Ok(Sample {
        rate,
        cpu,
        records_per_s: records.map(|r| r as f64 / secs),
        lost,
    })
}

/// Runs every workload under every configuration, in interleaved rounds; the tables.
fn compare(plan: &Plan, works: &[Work]) -> Result<String, String> {
    if works.contains(&Work::BulkVeth) {
        crate::fixtures::veth()?;
    }
    // Warm up the stack, the page cache and the emulator's translation cache.
    for w in works {
        let small = Plan {
            conns: 200,
            bytes: 4 << 20,
            sections: Vec::new(),
            ..*plan
        };
        w.run(&small)?;
    }
    let cfgs: Vec<Cfg> = Cfg::ALL
        .into_iter()
        .filter(|c| works.iter().any(|w| c.applies(*w)))
        .collect();
    let mut samples: BTreeMap<(Work, Cfg), Vec<Sample>> = BTreeMap::new();
    // A peer that fails is left out of the later rounds (and said so); tcplog failing ends the run.
    let mut failed: BTreeMap<Cfg, String> = BTreeMap::new();
    for round in 0..plan.rounds {
        let t = Instant::now();
        let mut took = Vec::new();
        for c in order(&cfgs, round) {
            if failed.contains_key(&c) {
                continue;
            }
            // What the previous configuration left behind (RCU callbacks, work items) settles.
            thread::sleep(Duration::from_millis(500));
            let t = Instant::now();
            let res = c.setup().map_err(|e| c.cleanup(e)).and_then(|kept| {
                let mut res = Ok(());
                for &w in works.iter().filter(|w| c.applies(**w)) {
                    match measure(plan, w, c, kept.as_ref()) {
                        Ok(s) => samples.entry((w, c)).or_default().push(s),
                        Err(e) => {
                            res = Err(format!("{}: {e}", w.section()));
                            break;
                        }
                    }
                }
                let down = c.teardown(kept);
                res.and(down)
            });
            took.push(format!("{} {}", c.short(), t.elapsed().as_secs()));
            if let Err(e) = res {
                if !c.peer() {
                    return Err(format!("'{}': {e}", c.name()));
                }
                println!("bench '{}' failed, left out from now on: {e}", c.name());
                failed.insert(c, e);
            }
        }
        println!(
            "bench round {} of {} took {} s: {}",
            round + 1,
            plan.rounds,
            t.elapsed().as_secs(),
            took.join(", ")
        );
    }
    let mut out = String::new();
    for &w in works {
        out.push_str(&table(plan, w, &samples));
    }
    for (c, e) in &failed {
        out.push_str(&format!("\n'{}' failed: {e}\n", c.name()));
    }
    out.push_str(
        "\nratio: the median over the median of the module not loaded.\n\
         cpu: CPU time of both CPUs, not idle (producers, readers, peers, softirqs), per\n\
         \x20 connection or MiB (/proc/stat, 10 ms ticks); cost: its median over the baseline's.\n\
         records/s (median): tcplog rows, records the module produced; tcpdump, packets written;\n\
         \x20 bpftrace, lines tcplife printed; conntrack, events conntrack -E printed.\n\
         lost (all rounds): tcplog, records its reader lost (LOST records); tcpdump, packets\n\
         \x20 dropped by the kernel; bpftrace, lost events; conntrack, ENOBUFS overruns (each\n\
         \x20 loses an unknown number of events).\n",
    );
    Ok(out)
}

/// The configurations in the order round `round` runs them: a shuffle that differs from round to
/// round (and is the same from run to run), so that no configuration always follows the same one
/// or comes at the same place.
fn order(cfgs: &[Cfg], round: usize) -> Vec<Cfg> {
    let mut v = cfgs.to_vec();
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (round as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    for i in (1..v.len()).rev() {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
    v
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A number with a precision that suits its size.
fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn table(plan: &Plan, w: Work, samples: &BTreeMap<(Work, Cfg), Vec<Sample>>) -> String {
    let mut out = format!("\n{}; median of {} rounds\n", w.title(plan), plan.rounds);
    let (cpu_unit, _) = w.cpu_unit();
    out.push_str(&format!(
        "{:<32} {:>8} {:>13} {:>5} {:>11} {:>11} {:>5} {:>9} {:>5}\n",
        "configuration",
        w.unit(),
        "min-max",
        "ratio",
        cpu_unit,
        "min-max",
        "cost",
        "records/s",
        "lost"
    ));
    let base_of = |f: fn(&Sample) -> f64| {
        samples
            .get(&(w, Cfg::Unloaded))
            .map(|s| median(&s.iter().map(f).collect::<Vec<_>>()))
    };
    let (base, base_cpu) = (base_of(|s| s.rate), base_of(|s| s.cpu));
    for c in Cfg::ALL {
        let Some(s) = samples.get(&(w, c)) else {
            continue;
        };
        let spread = |f: fn(&Sample) -> f64| {
            let v: Vec<f64> = s.iter().map(f).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            (median(&v), format!("{}-{}", num(lo), num(hi)))
        };
        let (m, range) = spread(|s| s.rate);
        let (cpu, cpu_range) = spread(|s| s.cpu);
        let ratio = |b: Option<f64>, x: f64| b.map_or("-".to_owned(), |b| format!("{:.2}", x / b));
        let rps: Vec<f64> = s.iter().filter_map(|s| s.records_per_s).collect();
        let rps = if rps.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", median(&rps))
        };
        let lost = s
            .iter()
            .map(|s| s.lost)
            .try_fold(0u64, |a, l| l.map(|l| a + l))
            .map_or("-".to_owned(), |l| l.to_string());
        out.push_str(&format!(
            "{:<32} {:>8} {:>13} {:>5} {:>11} {:>11} {:>5} {:>9} {:>5}\n",
            c.name(),
            num(m),
            range,
            ratio(base, m),
            num(cpu),
            cpu_range,
            ratio(base_cpu, cpu),
            rps,
            lost
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Kernel memory.

/// /proc/meminfo, in KiB.
fn meminfo() -> Result<BTreeMap<String, i64>, String> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect())
}

/// The memory one load of the module took, in KiB.
struct Load {
    /// MemFree's fall across insmod (the module's code included).
    taken: i64,
    /// MemFree's rise across rmmod: what the module gave back.
    freed: i64,
    /// VmallocUsed's and SUnreclaim's fall across rmmod (large kmalloc allocations count as
    /// unreclaimable slab).
    vmalloc: i64,
    slab: i64,
    /// The module's code and data (/sys/module/tcplog/coresize).
    text: i64,
    status: abi::Status,
}

fn load(params: &[&str]) -> Result<Load, String> {
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3").ok();
    thread::sleep(Duration::from_millis(300));
    let before = meminfo()?;
    sys::insmod(params)?;
    thread::sleep(Duration::from_millis(300));
    let loaded = meminfo()?;
    let status = status()?;
    let text = std::fs::read_to_string("/sys/module/tcplog/coresize")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    sys::rmmod()?;
    thread::sleep(Duration::from_millis(500));
    let after = meminfo()?;
    let get = |m: &BTreeMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
    Ok(Load {
        taken: get(&before, "MemFree") - get(&loaded, "MemFree"),
        freed: get(&after, "MemFree") - get(&loaded, "MemFree"),
        vmalloc: get(&loaded, "VmallocUsed") - get(&after, "VmallocUsed"),
        slab: get(&loaded, "SUnreclaim") - get(&after, "SUnreclaim"),
        text: text / 1024,
        status,
    })
}

/// What the module takes at its defaults and at its largest parameters, measured by
/// /proc/meminfo across insmod and rmmod (in a VM that does nothing else meanwhile), beside the
/// sizes its status reports.
fn memory() -> Result<String, String> {
    const MAX: [&str; 2] = ["ring_kib=262144", "max_conns=1048576"];
    let mut out = String::from(
        "\nkernel memory of the module (KiB): MemFree's fall at insmod and rise at rmmod, and which kind was freed\n",
    );
    out.push_str(&format!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8}\n",
        "parameters", "insmod", "rmmod", "vmalloc", "slab", "code", "ring", "entries"
    ));
    let row = |what: &str, l: &Load| {
        format!(
            "{:<34} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8}\n",
            what,
            l.taken,
            l.freed,
            l.vmalloc,
            l.slab,
            l.text,
            l.status.ring_size / 1024,
            l.status.conn_table_size,
        )
    };
    // A first load fills caches that outlive it (module code is carved from cached huge pages).
    load(&[])?;
    // The median of three loads at the defaults, by what rmmod freed.
    let mut defaults = vec![load(&[])?, load(&[])?, load(&[])?];
    defaults.sort_by_key(|l| l.freed);
    let def = defaults.swap_remove(1);
    out.push_str(&row("defaults (median of 3 loads)", &def));
    match load(&MAX) {
        Ok(max) => {
            out.push_str(&row(&MAX.join(" "), &max));
            let ring = (max.status.ring_size - def.status.ring_size) as i64 / 1024;
            let conns = i64::from(max.status.conn_table_size - def.status.conn_table_size);
            out.push_str(&format!(
                "about {} bytes per connection the module can track (its connection and flow entries), \
                 from the two loads less the rings\n",
                (max.freed - def.freed - ring) * 1024 / conns.max(1)
            ));
        }
        Err(e) => out.push_str(&format!("{:<34} could not load: {e}\n", MAX.join(" "))),
    }
    out.push_str(&format!(
        "(entries: the connection table's; the flow table has as many, {} at the defaults)\n",
        def.status.flow_table_size
    ));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Profile.

/// `--profile [WORDS]`: where the time goes, by perf's cpu-clock sampling of both CPUs with
/// call chains, in churn and bulk workloads with the module enabled and `tcplog follow -q -w`
/// reading. WORDS: `quick`, and the workloads (`churn`, `bulk`; both by default).
///
/// cpu-clock samples are taken by a timer interrupt, so time spent with interrupts disabled
/// shows in the function that enables them again (`_raw_spin_unlock_irqrestore`): the inclusive
/// share of tcplog's functions (with what they call) counts it where it belongs.
pub fn profile(words: Option<&str>) -> Result<(), String> {
    let plan = Plan::parse(words)?;
    let works: Vec<Work> = [Work::Churn, Work::BulkLo, Work::BulkVeth]
        .into_iter()
        .filter(|w| plan.wants(w.section()))
        .collect();
    if works.contains(&Work::BulkVeth) {
        crate::fixtures::veth()?;
    }
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    sys::insmod(&[])?;
    let own = module_symbols("tcplog")?;
    // Sampling interrupts are slow under TCG, and the kernel would lower the sampling rate to
    // keep their share of the CPU small: let it sample at the rate asked.
    std::fs::write("/proc/sys/kernel/perf_cpu_time_max_percent", "0").ok();
    // More work than a benchmark round, so that the samples are many.
    let big = Plan {
        conns: plan.conns * 2,
        bytes: plan.bytes * 4,
        sections: Vec::new(),
        ..plan
    };
    for w in works {
        let readers = Cfg::FollowFile.readers(w)?;
        std::fs::remove_file(PERF_DATA).ok();
        let mut perf = Proc::spawn(
            None,
            "perf",
            &[
                "record",
                "-a",
                "-g",
                "-e",
                "cpu-clock",
                "-F",
                // Under -icount a second is a billion instructions, which the churn runs through
                // in a fraction of a wall-clock second: sample more often.
                if plan.icount { "9999" } else { "999" },
                "-o",
                PERF_DATA,
            ],
            "/tmp/perf.out",
        )?;
        // perf writes its file's header once its events are open.
        perf.wait_ready(60, |_| {
            std::fs::metadata(PERF_DATA).is_ok_and(|m| m.len() > 0)
        })?;
        thread::sleep(Duration::from_millis(500));
        let rate = w.run(&big)?;
        let said = perf.stop()?;
        let (records, lost) = stop_readers(Cfg::FollowFile, readers)?;
        println!(
            "profile {}: {} {} under perf, the reader got {} records, lost {}",
            w.title(&big),
            num(rate),
            w.unit(),
            records.unwrap_or(0),
            lost.unwrap_or(0)
        );
        // "[ perf record: Captured and wrote 1.2 MB /tmp/perf.data (3456 samples) ]"
        for l in said.lines().filter(|l| l.contains("perf record:")) {
            println!("profile  {l}");
        }
        let by_comm = sys::run_ok(
            "perf",
            &[
                "report", "-i", PERF_DATA, "--stdio", "-q", "-g", "none", "--sort", "comm",
            ],
        )?;
        println!("profile  samples by command:");
        for l in by_comm.lines().filter(|l| !l.trim().is_empty()).take(6) {
            println!("profile   {l}");
        }
        // Shares of the samples taken in the workload's threads and the reader.
        let report = |children: bool| -> Result<String, String> {
            sys::run_ok(
                "perf",
                &[
                    "report",
                    "-i",
                    PERF_DATA,
                    "--stdio",
                    "-q",
                    "-g",
                    "none",
                    if children {
                        "--children"
                    } else {
                        "--no-children"
                    },
                    "--sort",
                    "sym",
                    "--comms",
                    "tcplog-vm-tests,tcplog",
                    "--percentage",
                    "relative",
                ],
            )
        };
        // Lines "[children%] self% [k] symbol".
        let rows = |text: &str| -> Vec<(Vec<String>, String)> {
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let sym = (*f.last()?).to_owned();
                    let pcts = f.iter().take_while(|x| x.ends_with('%'));
                    Some((pcts.map(|x| (*x).to_owned()).collect::<Vec<_>>(), sym))
                })
                .filter(|(p, _)| !p.is_empty())
                .collect()
        };
        let inclusive = report(true)?;
        let mine: Vec<_> = rows(&inclusive)
            .into_iter()
            .filter(|(_, sym)| own.contains(sym))
            .collect();
        println!(
            "profile  tcplog's own functions, % of the workload's and the reader's samples (with callees, self):"
        );
        for (p, sym) in mine.iter().take(15) {
            println!(
                "profile   {:>8} {:>8}  {}",
                p.first().map_or("", String::as_str),
                p.get(1).map_or("", String::as_str),
                demangle(sym)
            );
        }
        let total: f64 = mine
            .iter()
            .filter_map(|(p, _)| p.get(1)?.trim_end_matches('%').parse::<f64>().ok())
            .sum();
        println!("profile   {total:>17.2}%  all of tcplog's functions, self");
        // perf's "parent": the first function on a sample's stack that matches a pattern.
        let parents = sys::run_ok(
            "perf",
            &[
                "report",
                "-i",
                PERF_DATA,
                "--stdio",
                "-q",
                "-g",
                "none",
                "--no-children",
                "--comms",
                "tcplog-vm-tests,tcplog",
                "--percentage",
                "relative",
                "--sort",
                "parent",
                "--parent",
                "tcplog_mod",
            ],
        )?;
        let inside: f64 = parents
            .lines()
            .filter(|l| !l.contains("[other]"))
            .filter_map(|l| {
                l.split_whitespace()
                    .next()?
                    .strip_suffix('%')?
                    .parse::<f64>()
                    .ok()
            })
            .sum();
        println!(
            "profile   {inside:>8.2}%           with a tcplog function on the stack (inclusive)"
        );
        let flat = rows(&report(false)?);
        // Where interrupts come back on, the samples of the time they were off land: how much of
        // that is under tcplog.
        for sym in [
            "_raw_spin_unlock_irqrestore",
            "_raw_spin_unlock_irq_enable",
            "_raw_spin_unlock_irq",
        ] {
            let rows = sys::run_ok(
                "perf",
                &[
                    "report",
                    "-i",
                    PERF_DATA,
                    "--stdio",
                    "-q",
                    "-g",
                    "none",
                    "--no-children",
                    "--comms",
                    "tcplog-vm-tests,tcplog",
                    "--percentage",
                    "relative",
                    "--sort",
                    "sym,parent",
                    "--parent",
                    "tcplog_mod",
                    "--symbols",
                    sym,
                ],
            )?;
            let pct = |l: &str| {
                l.split_whitespace()
                    .next()
                    .and_then(|p| p.strip_suffix('%')?.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let all: f64 = rows.lines().map(pct).sum();
            let under: f64 = rows
                .lines()
                .filter(|l| !l.contains("[other]"))
                .map(pct)
                .sum();
            // The shares above are of this function's samples; those below, of all of them.
            let share = flat
                .iter()
                .find(|(_, s)| s == sym)
                .and_then(|(p, _)| p.first()?.trim_end_matches('%').parse::<f64>().ok())
                .unwrap_or(0.0);
            if all > 0.0 && share > 0.0 {
                println!(
                    "profile   {:>8.2}% of {share:.2}%   in {sym} with tcplog on the stack",
                    share * under / all
                );
                // Which function it was nearest to: tcplog's own, or a wake-up (of a reader).
                let near = sys::run_ok(
                    "perf",
                    &[
                        "report",
                        "-i",
                        PERF_DATA,
                        "--stdio",
                        "-q",
                        "-g",
                        "none",
                        "--no-children",
                        "--comms",
                        "tcplog-vm-tests,tcplog",
                        "--percentage",
                        "relative",
                        "--sort",
                        "parent",
                        "--parent",
                        "tcplog_mod|wake_up",
                        "--symbols",
                        sym,
                    ],
                )?;
                for l in near
                    .lines()
                    .filter(|l| !l.contains("[other]") && pct(l) > 0.0)
                    .take(4)
                {
                    let name = l.split_whitespace().last().unwrap_or("");
                    println!(
                        "profile   {:>8.2}%             of which nearest to {}",
                        share * pct(l) / all,
                        demangle(name)
                    );
                }
            }
        }
        println!("profile  top functions, % of the workload's and the reader's samples (self):");
        for (p, sym) in flat.iter().take(30) {
            let tag = if own.contains(sym) { " [tcplog]" } else { "" };
            println!(
                "profile   {:>8}  {}{tag}",
                p.first().map_or("", String::as_str),
                demangle(sym)
            );
        }
    }
    std::fs::remove_file(PERF_DATA).ok();
    sys::rmmod()?;
    Ok(())
}

const PERF_DATA: &str = "/tmp/perf.data";

/// The symbols /proc/kallsyms lists for `module`.
fn module_symbols(module: &str) -> Result<std::collections::BTreeSet<String>, String> {
    let tag = format!("[{module}]");
    let text = std::fs::read_to_string("/proc/kallsyms").map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|l| l.ends_with(&tag))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect())
}

/// A readable form of a Rust (v0) symbol: its identifiers joined by `::`, e.g.
/// `tcplog_mod::netfilter::hook`; other symbols unchanged. Only for display: generic arguments
/// and disambiguators are dropped.
fn demangle(sym: &str) -> String {
    let Some(body) = sym.strip_prefix("_R") else {
        return sym.to_owned();
    };
    let b = body.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n: usize = body[start..i].parse().unwrap_or(0);
            // A `_` separates an identifier from digits it starts with.
            if i < b.len() && b[i] == b'_' {
                i += 1;
            }
            if n == 0 || i + n > b.len() {
                continue;
            }
            parts.push(&body[i..i + n]);
            i += n;
        } else if c == b's' || c == b'B' {
            // A disambiguator or a back-reference: base-62 digits up to `_`.
            match body[i..].find('_') {
                Some(k) => i += k + 1,
                None => break,
            }
        } else {
            i += 1;
        }
    }
    if parts.is_empty() {
        sym.to_owned()
    } else {
        parts.join("::")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_symbols_for_display() {
        assert_eq!(
            demangle("_RNvNtCs30PYUqMmpdw_10tcplog_mod9tcp_state12on_set_state"),
            "tcplog_mod::tcp_state::on_set_state"
        );
        assert_eq!(
            demangle("_RNvMNtNtCsb5MLIFMWygY_6kernel4sync4pollNtB2_9PollTable13register_wait"),
            "kernel::sync::poll::PollTable::register_wait"
        );
        assert_eq!(demangle("tcp_v4_rcv"), "tcp_v4_rcv");
    }

    #[test]
    fn reads_the_peers_totals() {
        let tcpdump = "listening on lo\n3 packets captured\n5 packets received by filter\n0 packets dropped by kernel\n";
        assert_eq!(number_before(tcpdump, " packets captured"), Some(3));
        assert_eq!(
            number_before(tcpdump, " packets dropped by kernel"),
            Some(0)
        );
        let tool = "tcplog: 1234 records, lost 5 records in total";
        assert_eq!(number_before(tool, " records, lost"), Some(1234));
        assert_eq!(number_before(tool, " records in total"), Some(5));
        let ct = "conntrack v1.4.8 (conntrack-tools): 21 flow events have been shown.\n";
        assert_eq!(number_before(ct, " flow events"), Some(21));
    }

    #[test]
    fn rounds_shuffle_every_configuration_in() {
        let orders: Vec<Vec<Cfg>> = (0..5).map(|r| order(&Cfg::ALL, r)).collect();
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, Cfg::ALL);
        }
        assert!(orders.windows(2).all(|w| w[0] != w[1]), "{orders:?}");
        assert_eq!(order(&Cfg::ALL, 3), order(&Cfg::ALL, 3));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn plans() {
        let p = Plan::parse(Some("quick,churn")).unwrap();
        assert!(p.quick && !p.icount && p.wants("churn") && !p.wants("bulk"));
        assert!(Plan::parse(Some("icount,churn")).unwrap().icount);
        assert!(Plan::parse(None).unwrap().wants("memory"));
        assert!(Plan::parse(Some("fast")).is_err());
    }
}
