// SPDX-License-Identifier: GPL-2.0

//! The log: the record ring with its readers' wait queue, the configuration the hooks read on
//! every event, and the tables they keep. One `Log` exists while the module is loaded; every
//! hook reaches it through its own registration (probe data, netfilter `priv`), and readers
//! through their descriptor.
//!
//! Producers call [`Log::emit`] from any context. Configuration is read lock-free from atomics;
//! changes go through a mutex so that each one is audited by exactly one CONFIG record. Hooks
//! write events and summaries through [`Log::event`] and [`Log::summary`], which apply the event
//! mask, the options and the filter before anything reaches the ring.

use kernel::{
    new_mutex, new_poll_condvar,
    prelude::*,
    sync::{
        atomic::{ordering::Relaxed, Atomic},
        poll::PollCondVar,
        Arc, Mutex, MutexGuard,
    },
};

use crate::abi::{self, config_item, ConfigBody, EventBody, Pod, Subject, SummaryBody};
use crate::clock::Stamp;
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::conns::Conns;
use crate::flows::Flows;
use crate::identity::Identity;
use crate::keys::HashKeys;
use crate::limits::Limits;
use crate::mptcp::Mptcp;
use crate::packet_log::PacketLog;
use crate::ring::{Cursor, ReadError, Ring};
use crate::rules::Rules;
use crate::timer::Timer;
use crate::worker::Worker;

/// Readers are woken when this many bytes of records wait unannounced...
const WAKE_BYTES: usize = 32 * 1024;
/// ...or this long after the first of them: a lone record is never stranded.
const WAKE_DELAY_MS: u32 = 10;

/// The ring, and what its readers have not been woken for yet.
struct Buffered {
    ring: Ring,
    /// Bytes produced since readers were last woken.
    unannounced: usize,
    /// The wake timer is armed.
    timer_armed: bool,
}

/// The state every hook and every reader shares.
#[pin_data(PinnedDrop)]
pub(crate) struct Log {
    #[pin]
    ring: SpinLockIrq<Buffered>,
    /// Signalled when records wait: every [`WAKE_BYTES`] or [`WAKE_DELAY_MS`] after the first,
    /// whichever comes first, so that a busy log wakes a reader for batches, not per record.
    #[pin]
    readable: PollCondVar,
    /// Wakes readers for records that wait unannounced.
    #[pin]
    wake_timer: Timer,
    /// Serialises configuration changes.
    #[pin]
    config_lock: Mutex<()>,
    pub(crate) keys: HashKeys,
    /// The TCP connections being tracked.
    #[pin]
    pub(crate) conns: Conns,
    /// IP-layer counters of TCP connections.
    #[pin]
    pub(crate) flows: Flows,
    #[pin]
    filter: SpinLockIrq<abi::Filter>,
    /// Whether `filter` holds any criterion: hooks skip its lock when not.
    filter_on: Atomic<bool>,
    pub(crate) rules: Rules,
    #[pin]
    pub(crate) limits: Limits,
    /// Packet records and their repeats.
    #[pin]
    pub(crate) packets: PacketLog,
    /// MPTCP's subflow links and pending summaries.
    #[pin]
    pub(crate) mptcp: Mptcp,
    /// What runs in process context or on a schedule.
    #[pin]
    pub(crate) worker: Worker,
    interim_s: Atomic<u32>,
    filtered: Atomic<u64>,
    dropped: Atomic<u64>,
    packets_malformed: Atomic<u64>,
    packets_no_transport: Atomic<u64>,
    enabled: Atomic<bool>,
    event_mask: Atomic<u64>,
    options: Atomic<u64>,
    snap_len: Atomic<u32>,
    readers: Atomic<u32>,
}

impl Log {
    /// Makes the log with a ring of `ring_size` bytes and room to track `max_conns` connections.
    /// Logging starts disabled: the hooks that enable it are installed afterwards.
    pub(crate) fn new(ring_size: usize, max_conns: usize, keys: HashKeys) -> Result<Arc<Self>> {
        let ring = Ring::new(ring_size)?;
        let conns = Conns::new(max_conns, keys)?;
        let flows = Flows::new(max_conns, keys)?;
        let limits = Limits::new(keys)?;
        let packets = PacketLog::new()?;
        let mptcp = Mptcp::new(max_conns, keys)?;
        let rules = Rules::new()?;
        let cfg = abi::Config::DEFAULT;
        Arc::pin_init(
            try_pin_init!(Log {
                ring <- new_spinlock_irq!(
                    Buffered {
                        ring,
                        unannounced: 0,
                        timer_armed: false,
                    },
                    "tcplog_ring"
                ),
                readable <- new_poll_condvar!("tcplog_readable"),
                wake_timer <- Timer::new(wake_timer),
                config_lock <- new_mutex!((), "tcplog_config"),
                keys,
                conns <- conns,
                flows <- flows,
                filter <- new_spinlock_irq!(abi::Filter::default(), "tcplog_filter"),
                filter_on: Atomic::new(false),
                rules,
                limits <- limits,
                packets <- packets,
                mptcp <- mptcp,
                worker <- Worker::new(),
                interim_s: Atomic::new(cfg.interim_s),
                filtered: Atomic::new(0),
                dropped: Atomic::new(0),
                packets_malformed: Atomic::new(0),
                packets_no_transport: Atomic::new(0),
                enabled: Atomic::new(false),
                event_mask: Atomic::new(cfg.event_mask),
                options: Atomic::new(cfg.options),
                snap_len: Atomic::new(cfg.snap_len),
                readers: Atomic::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// Whether the hooks should produce records.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Appends a record whose body is the concatenation of `parts`, and wakes readers.
    /// Never sleeps and never allocates.
    pub(crate) fn emit(&self, rtype: u16, parts: &[&[u8]]) {
        self.emit_inner(rtype, parts, None);
    }

    /// As [`Log::emit`], stamped with the given time rather than now.
    pub(crate) fn emit_at(&self, rtype: u16, parts: &[&[u8]], at: Stamp) {
        self.emit_inner(rtype, parts, Some(at));
    }

    fn emit_inner(&self, rtype: u16, parts: &[&[u8]], at: Option<Stamp>) {
        let (wake_now, arm) = {
            let mut b = self.ring.lock();
            if b.ring.push_at(rtype, parts, at).is_err() {
                drop(b);
                self.dropped.add(1, Relaxed);
                return;
            }
            b.unannounced += parts.iter().map(|p| p.len()).sum::<usize>();
            if b.unannounced >= WAKE_BYTES {
                b.unannounced = 0;
                (true, false)
            } else {
                (false, !core::mem::replace(&mut b.timer_armed, true))
            }
        };
        if wake_now {
            self.readable.notify_all();
        } else if arm {
            self.wake_timer.arm(WAKE_DELAY_MS);
        }
    }

    /// Wakes readers for whatever waits (the wake timer's work).
    fn wake_readers(&self) {
        {
            let mut b = self.ring.lock();
            b.unannounced = 0;
            b.timer_armed = false;
        }
        self.readable.notify_all();
    }

    fn emit_config(&self, item: u32, old: u64, new: u64, who: &Identity) {
        let body = ConfigBody {
            item,
            pid: who.pid,
            uid: who.uid,
            _pad: 0,
            old,
            new,
            comm: who.comm,
        };
        self.emit(abi::rtype::CONFIG, &[body.as_bytes()]);
    }

    /// Holds the configuration lock for a change made elsewhere (arming the hooks).
    pub(crate) fn config_guard(&self) -> MutexGuard<'_, ()> {
        self.config_lock.lock()
    }

    /// Sets the switch the hooks read; audited if it changed. The caller holds the
    /// configuration lock and arms or disarms the hooks around it.
    pub(crate) fn set_enabled_locked(&self, on: bool, who: &Identity) {
        let was = self.enabled.xchg(on, Relaxed);
        if was != on {
            self.emit_config(config_item::ENABLED, u64::from(was), u64::from(on), who);
        }
    }

    /// Sets the switch without an audit record (at load).
    pub(crate) fn set_enabled_quietly(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    /// Forgets what the hooks knew: tracked connections, flows, limit counts. Called with the
    /// hooks disarmed, so that nothing they remember goes stale unseen.
    pub(crate) fn forget_tracking(&self) {
        self.conns.clear();
        self.flows.clear();
        self.limits.clear();
        self.mptcp.clear();
        self.mptcp.drop_closed();
        self.packets.flush(self);
    }

    /// Whether hooks should report operation `op`.
    pub(crate) fn wants(&self, op: u16) -> bool {
        self.enabled() && self.event_mask.load(Relaxed) & (1 << op) != 0
    }

    /// Whether the filter lets a record about `s` through (counted if not).
    pub(crate) fn passes(&self, s: &Subject<'_>) -> bool {
        if !self.filter_on.load(Relaxed) || self.filter.lock().matches(s) {
            return true;
        }
        self.filtered.add(1, Relaxed);
        false
    }

    /// Writes an event record if the mask and the filter let it through.
    pub(crate) fn event(&self, e: &EventBody) {
        if self.wants(e.op) && self.passes(&e.subject()) {
            self.emit(abi::rtype::EVENT, &[e.as_bytes()]);
        }
    }

    /// Writes a summary record if summaries are on and the filter lets it through.
    pub(crate) fn summary(&self, b: &SummaryBody) {
        let on = self.enabled() && self.options.load(Relaxed) & abi::OPT_SUMMARIES != 0;
        if on && self.passes(&b.subject()) {
            self.emit(abi::rtype::SUMMARY, &[b.as_bytes()]);
        }
    }

    /// Whether the packet rules apply to forwarded packets.
    pub(crate) fn forwarding(&self) -> bool {
        self.options.load(Relaxed) & abi::OPT_FORWARD != 0
    }

    pub(crate) fn snap_len(&self) -> u32 {
        self.snap_len.load(Relaxed)
    }

    /// Seconds between interim records; 0 for none.
    pub(crate) fn interim_s(&self) -> u32 {
        self.interim_s.load(Relaxed)
    }

    /// Counts a packet whose IP header is malformed.
    pub(crate) fn count_malformed(&self) {
        self.packets_malformed.add(1, Relaxed);
    }

    /// Counts a TCP or UDP packet without its whole transport header.
    pub(crate) fn count_no_transport(&self) {
        self.packets_no_transport.add(1, Relaxed);
    }

    /// Replaces the packet rules; audited with the number of rules before and after.
    pub(crate) fn set_rules(&self, set: &abi::RuleSet, who: &Identity) -> Result {
        let _guard = self.config_lock.lock();
        let old = self.rules.n_rules();
        self.rules.replace(set)?;
        // Limits count against the rules of one publication: start afresh.
        self.limits.clear();
        self.emit_config(
            config_item::RULES,
            u64::from(old),
            u64::from(set.n_rules),
            who,
        );
        Ok(())
    }

    pub(crate) fn filter(&self) -> abi::Filter {
        *self.filter.lock()
    }

    /// Replaces the filter; audited with the number of criteria before and after.
    pub(crate) fn set_filter(&self, f: &abi::Filter, who: &Identity) -> Result {
        if !f.is_valid() {
            return Err(EINVAL);
        }
        let _guard = self.config_lock.lock();
        let old = core::mem::replace(&mut *self.filter.lock(), *f);
        self.filter_on.store(!f.is_empty(), Relaxed);
        self.emit_config(config_item::FILTER, old.criteria(), f.criteria(), who);
        Ok(())
    }

    /// Discards everything buffered; returns the bytes discarded. Always audited.
    pub(crate) fn flush(&self, who: &Identity) -> u64 {
        let _guard = self.config_lock.lock();
        let flushed = self.ring.lock().ring.flush();
        self.emit_config(config_item::FLUSH, flushed.records, flushed.bytes, who);
        flushed.bytes
    }

    pub(crate) fn config(&self) -> abi::Config {
        abi::Config {
            event_mask: self.event_mask.load(Relaxed),
            options: self.options.load(Relaxed),
            snap_len: self.snap_len.load(Relaxed),
            interim_s: self.interim_s.load(Relaxed),
            ..abi::Config::DEFAULT
        }
    }

    /// Replaces the configuration; one CONFIG record per field that changed.
    pub(crate) fn set_config(&self, new: &abi::Config, who: &Identity) -> Result {
        if !new.is_valid() {
            return Err(EINVAL);
        }
        let _guard = self.config_lock.lock();
        let old = self.config();
        self.event_mask.store(new.event_mask, Relaxed);
        self.options.store(new.options, Relaxed);
        self.snap_len.store(new.snap_len, Relaxed);
        self.interim_s.store(new.interim_s, Relaxed);
        if old.interim_s != new.interim_s {
            self.worker.interim_changed();
        }
        let changes = [
            (config_item::EVENT_MASK, old.event_mask, new.event_mask),
            (config_item::OPTIONS, old.options, new.options),
            (
                config_item::SNAP_LEN,
                u64::from(old.snap_len),
                u64::from(new.snap_len),
            ),
            (
                config_item::INTERIM,
                u64::from(old.interim_s),
                u64::from(new.interim_s),
            ),
        ];
        for (item, was, now) in changes {
            if was != now {
                self.emit_config(item, was, now, who);
            }
        }
        Ok(())
    }

    /// Writes `count` MARK records; yields the CPU now and then, as the count may be large.
    pub(crate) fn mark(&self, value: u64, count: u32, who: &Identity) {
        for index in 0..count {
            let body = abi::MarkBody {
                value,
                index,
                pid: who.pid,
                uid: who.uid,
                _pad: 0,
                comm: who.comm,
            };
            self.emit(abi::rtype::MARK, &[body.as_bytes()]);
            if index % 1024 == 1023 {
                // SAFETY: Called from the ioctl, in process context with no lock held.
                unsafe { crate::bindings::tcplog_cond_resched() };
            }
        }
    }

    /// The module's state; `probes_missed` comes from the hooks, which the log does not own.
    pub(crate) fn status(&self, probes_missed: u64) -> abi::Status {
        let s = self.ring.lock().ring.stats();
        let (conn_table_size, conns_tracked, conns_untracked) = self.conns.counts();
        let (flow_table_size, flows_tracked, flows_untracked, flows_evicted) = self.flows.counts();
        abi::Status {
            abi_version: abi::ABI_VERSION,
            enabled: u32::from(self.enabled()),
            ring_size: s.size,
            bytes_used: s.bytes_used,
            records_held: s.records_held,
            records_produced: s.head_seq,
            records_overwritten: s.overwritten,
            records_flushed: s.flushed_records,
            bytes_flushed: s.flushed_bytes,
            oldest_seq: s.tail_seq,
            readers: self.readers.load(Relaxed),
            conn_table_size: conn_table_size as u32,
            conns_tracked: conns_tracked as u32,
            _pad: 0,
            records_dropped: self.dropped.load(Relaxed),
            conns_untracked,
            probes_missed,
            records_filtered: self.filtered.load(Relaxed),
            flow_table_size: flow_table_size as u32,
            flows_tracked: flows_tracked as u32,
            flows_untracked,
            packets_repeated: self.packets.repeated(),
            produced_by_type: s.produced_by_type,
            packets_malformed: self.packets_malformed.load(Relaxed),
            packets_no_transport: self.packets_no_transport.load(Relaxed),
            flows_evicted,
            limits_untracked: self.limits.untracked(),
            _reserved: [0; 8],
        }
    }

    // The reader's side.

    /// A cursor at the oldest record held: where a new reader starts.
    pub(crate) fn oldest(&self) -> Cursor {
        self.ring.lock().ring.oldest()
    }

    pub(crate) fn reader_opened(&self) {
        self.readers.add(1, Relaxed);
    }

    pub(crate) fn reader_closed(&self) {
        self.readers.fetch_sub(1, Relaxed);
    }

    pub(crate) fn newest(&self) -> Cursor {
        self.ring.lock().ring.newest()
    }

    pub(crate) fn available(&self, cur: Cursor) -> u64 {
        self.ring.lock().ring.available(cur)
    }

    pub(crate) fn read(&self, cur: Cursor, out: &mut [u8]) -> Result<(usize, Cursor), ReadError> {
        self.ring.lock().ring.read(cur, out)
    }

    /// Sleeps until a reader at `seq` has something to read. Returns `ERESTARTSYS` if a signal
    /// arrived first (the sleep is interruptible: any signal, SIGKILL included, ends it).
    pub(crate) fn wait_readable(&self, seq: u64) -> Result {
        let mut b = self.ring.lock();
        while !b.ring.readable(seq) {
            if self.readable.wait_interruptible(&mut b) {
                return Err(ERESTARTSYS);
            }
        }
        Ok(())
    }

    /// Whether a reader at `seq` has something to read.
    pub(crate) fn readable(&self, seq: u64) -> bool {
        self.ring.lock().ring.readable(seq)
    }

    pub(crate) fn poll_wait(
        &self,
        file: &kernel::fs::File,
        table: &kernel::sync::poll::PollTable<'_>,
    ) {
        table.register_wait(file, &self.readable);
    }
}

#[pinned_drop]
impl PinnedDrop for Log {
    fn drop(self: Pin<&mut Self>) {
        // What runs on its own (the worker, the repeat timer) writes to the ring and reads the
        // tables: stop it for good before any field goes, whatever their order. (The module's
        // unload has done so already, after the hooks; stopping twice is harmless.)
        self.worker.shutdown();
        self.packets.shutdown(&self);
        self.mptcp.drop_closed();
        // Last: the others above may have produced records, arming it.
        self.wake_timer.shutdown();
    }
}

/// The wake timer.
///
/// # Safety
///
/// Called by the timer core with the `wake_timer` of a live `Log`.
unsafe extern "C" fn wake_timer(t: *mut crate::bindings::timer_list) {
    // SAFETY: The timer is the `wake_timer` field of a `Log` (`Timer` is laid out as its
    // `timer_list`), which lives until the timer is shut down.
    let log = unsafe { &*kernel::container_of!(t.cast::<Timer>(), Log, wake_timer) };
    log.wake_readers();
}
