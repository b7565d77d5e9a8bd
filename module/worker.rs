// SPDX-License-Identifier: GPL-2.0

//! The module's worker: what must run in process context or on a schedule, on the system
//! workqueue.
//!
//! - Summaries of MPTCP connections, whose counters can only be read where sleeping is allowed.
//! - INTERIM records (NetFlow's active timeout): every `interim_s` seconds, one record per open
//!   TCP connection, with its counters since it began and since the previous interim record.
//!
//! [`Worker::shutdown`] stops it for good (`disable_delayed_work_sync`) once the hooks that kick
//! it are gone, before the log is freed.

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Relaxed, Atomic},
    types::Opaque,
};

use crate::abi::{self, InterimBody, Pod};
use crate::bindings::{self, delayed_work, work_struct};
use crate::clock;
use crate::conns::{Interim, Open};
use crate::log::Log;
use crate::summary;

/// Connections snapshotted per hold of the table's lock.
const BATCH: usize = 16;

#[pin_data(PinnedDrop)]
pub(crate) struct Worker {
    #[pin]
    work: Opaque<delayed_work>,
    /// When the next round of interim records is due (`CLOCK_BOOTTIME`, ns); 0: not scheduled.
    next_interim: Atomic<u64>,
}

// SAFETY: The work item is only touched through the workqueue API, which synchronises itself.
unsafe impl Send for Worker {}
// SAFETY: As above.
unsafe impl Sync for Worker {}

impl Worker {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Worker {
            // SAFETY: `slot` is valid for the work to be set up in; it is pinned, and the work
            // is disabled (in `shutdown`, and again in `PinnedDrop`) before the memory goes.
            work <- Opaque::ffi_init(|slot| unsafe {
                bindings::tcplog_work_setup(slot, Some(run))
            }),
            next_interim: Atomic::new(0),
        })
    }

    /// Runs the worker soon. Callable from any context.
    pub(crate) fn kick(&self) {
        self.run_in(0);
    }

    fn run_in(&self, ms: u64) {
        // SAFETY: The work was set up in `new`; once disabled, queueing it does nothing.
        unsafe { bindings::tcplog_work_queue(self.work.get(), ms.min(u64::from(u32::MAX)) as u32) };
    }

    /// The interval of interim records changed: start the schedule afresh.
    pub(crate) fn interim_changed(&self) {
        self.next_interim.store(0, Relaxed);
        self.kick();
    }

    /// Stops the worker for good, waiting for a running round.
    pub(crate) fn shutdown(&self) {
        // SAFETY: The work was set up in `new`; this waits for it and keeps it from being
        // queued again.
        unsafe { bindings::disable_delayed_work_sync(self.work.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for Worker {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: As in `shutdown`; disabling twice is harmless.
        unsafe { bindings::disable_delayed_work_sync(self.work.get()) };
    }
}

/// The work function.
///
/// # Safety
///
/// Called by the workqueue with the work of a live `Worker`, the `worker` field of a live `Log`.
unsafe extern "C" fn run(w: *mut work_struct) {
    // SAFETY: `work_struct` is the first member of `delayed_work` (checked at load), which is
    // the `work` field of a `Worker` (`Opaque<T>` is laid out as `T`), itself the `worker`
    // field of a `Log`; all live until the work is disabled.
    let log = unsafe {
        let worker = kernel::container_of!(w.cast::<Opaque<delayed_work>>(), Worker, work);
        &*kernel::container_of!(worker, Log, worker)
    };
    round(log);
}

fn round(log: &Log) {
    if log.enabled() {
        log.mptcp.write_summaries(log);
    } else {
        log.mptcp.drop_closed();
    }
    let every = u64::from(log.interim_s());
    if every == 0 || !log.enabled() {
        log.worker.next_interim.store(0, Relaxed);
        return;
    }
    let every_ns = every * 1_000_000_000;
    let now = clock::boot_ns();
    let due = log.worker.next_interim.load(Relaxed);
    let next = if due == 0 {
        now + every_ns
    } else if now >= due {
        write_interims(log);
        now + every_ns
    } else {
        due
    };
    log.worker.next_interim.store(next, Relaxed);
    log.worker.run_in((next - now) / 1_000_000);
}

/// What an open connection's interim record or listing entry says.
pub(crate) fn interim(log: &Log, o: &Open) -> InterimBody {
    let mut b = summary::build(Some(&o.conn), &o.now);
    b.duration_ns = o.now.end_boot.saturating_sub(o.conn.start_boot);
    if let Some(f) = log.flows.peek(&summary::flow_key(&b), o.key) {
        summary::add_flow(&mut b, &f);
    }
    InterimBody {
        summary: b,
        state: o.state,
        since_ns: o.conn.start_ns,
        ..InterimBody::default()
    }
}

/// One interim record per open TCP connection, with deltas since the previous one.
fn write_interims(log: &Log) {
    let now_real = clock::real_ns();
    let mut from = Some(0);
    while let Some(start) = from {
        let mut batch = [None; BATCH];
        let (n, next) = log.conns.open_batch(start, &mut batch);
        for o in batch[..n].iter().flatten() {
            let mut rec = interim(log, o);
            let b = &rec.summary;
            let last = o.conn.last_interim.unwrap_or(Interim {
                at_ns: o.conn.start_ns,
                ..Interim::default()
            });
            let now = Interim {
                at_ns: now_real,
                bytes_sent: b.bytes_sent,
                bytes_received: b.bytes_received,
                pkts_in: b.pkts_in,
                pkts_out: b.pkts_out,
                ip_bytes_in: b.ip_bytes_in,
                ip_bytes_out: b.ip_bytes_out,
            };
            rec.since_ns = last.at_ns;
            rec.delta_bytes_sent = now.bytes_sent.saturating_sub(last.bytes_sent);
            rec.delta_bytes_received = now.bytes_received.saturating_sub(last.bytes_received);
            rec.delta_pkts_in = now.pkts_in.saturating_sub(last.pkts_in);
            rec.delta_pkts_out = now.pkts_out.saturating_sub(last.pkts_out);
            rec.delta_ip_bytes_in = now.ip_bytes_in.saturating_sub(last.ip_bytes_in);
            rec.delta_ip_bytes_out = now.ip_bytes_out.saturating_sub(last.ip_bytes_out);
            log.conns.update(o.key, |c| c.last_interim = Some(now));
            if log.passes(&rec.summary.subject()) {
                log.emit(abi::rtype::INTERIM, &[rec.as_bytes()]);
            }
        }
        from = next;
        // SAFETY: The worker runs in process context with no lock held.
        unsafe { bindings::tcplog_cond_resched() };
    }
}
