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
