//! Benchmarks: numbers, not verdicts. Run with `qemu-test/run-vm.sh bench`.
//!
//! The VM runs under TCG (instruction emulation), so absolute numbers are far below a real
//! machine's; compare them with each other and across changes.

use std::thread;
use std::time::Instant;

use tcplog_ctl as abi;

use crate::dev::{self, account, Dev};
use crate::sys;

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

/// Connects, accepts, exchanges 16 bytes each way and closes, `n` times; connections per second.
fn churn_rate(n: u32) -> Result<f64, String> {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        c.write_all(&buf).map_err(|e| e.to_string())?;
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(&buf).map_err(|e| e.to_string())?;
        c.read_exact(&mut buf).map_err(|e| e.to_string())?;
    }
    Ok(f64::from(n) / t.elapsed().as_secs_f64())
}

/// Churn with a reader draining the device meanwhile; returns the rate, records read and lost.
fn churn_with_reader(n: u32) -> Result<(f64, u64, u64), String> {
    let r = Dev::open(false, false)?;
    r.seek_end()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = thread::spawn(move || -> Result<(u64, u64), String> {
        let (mut records, mut lost) = (0u64, 0u64);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || r.fionread()? > 0 {
            if r.fionread()? == 0 {
                thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            for rec in r.read(1 << 20)? {
                records += 1;
                lost += rec.lost().map_or(0, |l| l.count);
            }
        }
        Ok((records, lost))
    });
    let rate = churn_rate(n);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (records, lost) = reader.join().map_err(|_| "reader panicked")??;
    Ok((rate?, records, lost))
}

pub fn churn() -> Result<(), String> {
    const N: u32 = 1500;
    const ROUNDS: usize = 3;
    const NAMES: [&str; 4] = [
        "module not loaded",
        "loaded, disabled",
        "enabled, no reader",
        "enabled, a reader draining",
    ];
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    // Warm up the stack (and the page cache of this binary) before measuring.
    churn_rate(200)?;
    // Rounds interleave the configurations, so that drift in the emulator's speed hits all of
    // them alike; each configuration's best round is reported.
    let mut best = [0f64; 4];
    let (mut records, mut lost) = (0u64, 0u64);
    for _ in 0..ROUNDS {
        best[0] = best[0].max(churn_rate(N)?);
        sys::insmod(&["enabled=0"])?;
        best[1] = best[1].max(churn_rate(N)?);
        Dev::rw()?
            .ioctl_none(abi::TCPLOG_IOC_ENABLE)
            .map_err(sys::errno_name)?;
        best[2] = best[2].max(churn_rate(N)?);
        let (rate, r, l) = churn_with_reader(N)?;
        best[3] = best[3].max(rate);
        records += r;
        lost += l;
        sys::rmmod()?;
    }
    println!(
        "bench connection churn: connect, accept, 16 bytes each way, close; {N} connections, best of {ROUNDS} rounds"
    );
    for (what, rate) in NAMES.iter().zip(best) {
        println!(
            "bench   {what:<28} {rate:>8.0} connections/s  ratio {:.2}",
            rate / best[0]
        );
    }
    println!(
        "bench   the reader got {records} records ({:.1} per connection), lost {lost}",
        records as f64 / f64::from(N) / ROUNDS as f64
    );
    Ok(())
}

/// Sends `bytes` over one TCP connection, the client in namespace `client_ns` and the server in
/// `server_ns` (None: this one), to `addr`; MB/s.
fn bulk(
    client_ns: Option<&str>,
    server_ns: Option<&str>,
    bind: &str,
    bytes: usize,
) -> Result<f64, String> {
    use std::io::{Read, Write};
    fn enter(ns: Option<&str>) -> Result<(), String> {
        if let Some(ns) = ns {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
            // SAFETY: setns on the calling thread, with a namespace file held open.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0
            {
                return Err(format!("setns {ns}"));
            }
        }
        Ok(())
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = server_ns.map(str::to_owned);
    let bind = bind.to_owned();
    let server = thread::spawn(move || -> Result<usize, String> {
        enter(server_ns.as_deref())?;
        let l = std::net::TcpListener::bind(&bind).map_err(|e| e.to_string())?;
        ready_tx.send(l.local_addr().unwrap()).ok();
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
        let mut c = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
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

/// Runs `f` with a reader draining the device on another thread.
fn with_reader<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let r = Dev::open(false, true)?;
    r.seek_end()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: `buf` has room for its length.
            let n = unsafe { libc::read(r.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().ok();
    out
}

/// Runs `f` while tcpdump captures 128 bytes of every packet on `dev` (in namespace `ns`).
fn with_tcpdump<T>(
    ns: Option<&str>,
    dev: &str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "tcpdump"]);
            c
        }
        None => std::process::Command::new("tcpdump"),
    };
    let mut child = cmd
        .args([
            "-i",
            dev,
            "-s",
            "128",
            "-w",
            "/dev/null",
            "-Z",
            "root",
            "-q",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("tcpdump: {e}"))?;
    thread::sleep(std::time::Duration::from_millis(1500));
    let out = f();
    // SAFETY: Signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait().ok();
    out
}

/// A path bulk traffic takes: where each end lives, and where tcpdump listens.
struct Path {
    name: &'static str,
    client_ns: Option<&'static str>,
    server_ns: Option<&'static str>,
    bind: &'static str,
    dev: &'static str,
    dev_ns: Option<&'static str>,
}

const PATHS: [Path; 2] = [
    Path {
        name: "loopback",
        client_ns: None,
        server_ns: None,
        bind: "127.0.0.1:0",
        dev: "lo",
        dev_ns: None,
    },
    Path {
        name: "veth",
        client_ns: Some("tla"),
        server_ns: Some("tlb"),
        bind: "10.99.0.2:0",
        dev: "vb",
        dev_ns: Some("tlb"),
    },
];

/// Measures one configuration (0: no module, 1: counters, 2: logging, 3: tcpdump).
fn measure(p: &Path, config: usize, bytes: usize) -> Result<f64, String> {
    let run = || bulk(p.client_ns, p.server_ns, p.bind, bytes);
    match config {
        0 => run(),
        1 => {
            sys::insmod(&[])?;
            let r = run();
            sys::rmmod()?;
            r
        }
        2 => {
            sys::insmod(&[])?;
            sys::run_ok("/usr/bin/tcplog", &["rules", "set", "log body proto tcp"])?;
            let r = with_reader(run);
            sys::rmmod()?;
            r
        }
        _ => with_tcpdump(p.dev_ns, p.dev, run),
    }
}

pub fn throughput() -> Result<(), String> {
    const BYTES: usize = 64 << 20;
    const ROUNDS: usize = 3;
    const NAMES: [&str; 4] = [
        "module not loaded",
        "loaded: counters only",
        "logging headers + 128 bytes (reader draining)",
        "tcpdump -s 128 -w /dev/null, no module",
    ];
    crate::fixtures::veth()?;
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    for p in &PATHS {
        bulk(p.client_ns, p.server_ns, p.bind, 8 << 20)?;
        let mut best = [0f64; 4];
        // Each round starts with another configuration, so drift hits them all alike.
        for round in 0..ROUNDS {
            for k in 0..4 {
                let c = (round + k) % 4;
                best[c] = best[c].max(measure(p, c, BYTES)?);
            }
        }
        println!(
            "bench bulk TCP over {}: {} MiB, best of {ROUNDS} rounds",
            p.name,
            BYTES >> 20
        );
        for (what, rate) in NAMES.iter().zip(best) {
            println!(
                "bench   {what:<46} {rate:>8.1} MB/s  ratio {:.2}",
                rate / best[0]
            );
        }
    }
    Ok(())
}
