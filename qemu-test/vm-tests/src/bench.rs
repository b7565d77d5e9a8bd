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
