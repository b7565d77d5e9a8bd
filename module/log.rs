// SPDX-License-Identifier: GPL-2.0

//! The log: the record ring, the wait queue of its readers, and the switches and configuration
//! that the hooks read on every event.
//!
//! Producers call [`Log::emit`] from any context. Configuration is read lock-free from atomics;
//! changes go through a mutex so that each one is audited by exactly one CONFIG record. Hooks
//! write events and summaries through [`Log::event`] and [`Log::summary`], which apply the event
//! mask, the options and the filter before anything reaches the ring.

use kernel::{
    new_mutex, new_poll_condvar, new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{ordering::Relaxed, Atomic},
        poll::PollCondVar,
        Arc, Mutex, SpinLockIrq,
    },
};

use crate::abi::{self, config_item, ConfigBody, EventBody, Pod, Subject, SummaryBody};
use crate::conns::{Conn, ConnTable};
use crate::flows::{FlowCounts, FlowKey, FlowTable};
use crate::identity::Identity;
use crate::packet::PacketState;
use crate::ring::{Cursor, ReadError, Ring};

/// The state every hook and every reader shares.
#[pin_data]
pub(crate) struct Log {
    #[pin]
    ring: SpinLockIrq<Ring>,
    /// Signalled after every record produced.
    #[pin]
    readable: PollCondVar,
    /// Serialises configuration changes.
    #[pin]
    config_lock: Mutex<()>,
    /// The connections being tracked.
    #[pin]
    conns: SpinLockIrq<ConnTable>,
    #[pin]
    filter: SpinLockIrq<abi::Filter>,
    /// IP-layer counters of TCP connections.
    #[pin]
    flows: SpinLockIrq<FlowTable>,
    flows_untracked: Atomic<u64>,
    /// Rules, packet records, connection limits.
    #[pin]
    pub(crate) packets: PacketState,
    /// Whether `filter` holds any criterion: hooks skip its lock when not.
    filter_on: Atomic<bool>,
    filtered: Atomic<u64>,
    untracked: Atomic<u64>,
    enabled: Atomic<bool>,
    event_mask: Atomic<u64>,
    options: Atomic<u64>,
    snap_len: Atomic<u32>,
    readers: Atomic<u32>,
    dropped: Atomic<u64>,
}

impl Log {
    /// Makes the log with a ring of `ring_size` bytes and room to track `max_conns` connections.
    pub(crate) fn new(ring_size: usize, max_conns: usize, enabled: bool) -> Result<Arc<Self>> {
        let ring = Ring::new(ring_size)?;
        let conns = ConnTable::new(max_conns)?;
        let flows = FlowTable::new(max_conns)?;
        let packets = PacketState::new()?;
        let cfg = abi::Config::DEFAULT;
        Arc::pin_init(
            try_pin_init!(Log {
                ring <- new_spinlock_irq!(ring, "tcplog_ring"),
                readable <- new_poll_condvar!("tcplog_readable"),
                config_lock <- new_mutex!((), "tcplog_config"),
                conns <- new_spinlock_irq!(conns, "tcplog_conns"),
                filter <- new_spinlock_irq!(abi::Filter::default(), "tcplog_filter"),
                flows <- new_spinlock_irq!(flows, "tcplog_flows"),
                flows_untracked: Atomic::new(0),
                packets <- packets,
                filter_on: Atomic::new(false),
                filtered: Atomic::new(0),
                untracked: Atomic::new(0),
                enabled: Atomic::new(enabled),
                event_mask: Atomic::new(cfg.event_mask),
                options: Atomic::new(cfg.options),
                snap_len: Atomic::new(cfg.snap_len),
                readers: Atomic::new(0),
                dropped: Atomic::new(0),
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

    /// As [`Log::emit`], stamped with the given times rather than now.
    pub(crate) fn emit_at(&self, rtype: u16, parts: &[&[u8]], time_ns: u64, boot_ns: u64) {
        self.emit_inner(rtype, parts, Some((time_ns, boot_ns)));
    }

    fn emit_inner(&self, rtype: u16, parts: &[&[u8]], at: Option<(u64, u64)>) {
        if self.ring.lock().push_at(rtype, parts, at).is_err() {
            self.dropped.add(1, Relaxed);
            return;
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

    /// Turns logging on or off; audited if it changed anything. Disabling forgets the tracked
    /// connections: while disabled the hooks do nothing, so what they knew would go stale, and a
    /// connection that outlives the pause gets a summary flagged partial. `arm` arms or disarms
    /// the hooks; it runs under the configuration lock, so toggles cannot interleave.
    pub(crate) fn set_enabled(&self, on: bool, who: &Identity, arm: impl FnOnce(bool)) {
        let _guard = self.config_lock.lock();
        let was = self.enabled.xchg(on, Relaxed);
        if was != on {
            arm(on);
        }
        if !on {
            // After the store: an insert that takes the lock after this sees `enabled` false.
            self.conns.lock().clear();
            self.flows.lock().clear();
            self.packets.clear_limits();
            self.packets.flush_pending(self);
        }
        if was != on {
            self.emit_config(config_item::ENABLED, u64::from(was), u64::from(on), who);
        }
    }

    /// Whether hooks should report operation `op`.
    pub(crate) fn wants(&self, op: u16) -> bool {
        self.enabled() && self.event_mask.load(Relaxed) & (1 << op) != 0
    }

    fn passes(&self, s: &Subject<'_>) -> bool {
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

    /// Starts tracking a connection, unless logging is disabled. A full table is counted, and the
    /// connection will get a partial summary.
    pub(crate) fn track(&self, key: usize, conn: Conn) {
        let mut table = self.conns.lock();
        if !self.enabled() {
            return;
        }
        if table.insert(key, conn).is_err() {
            self.untracked.add(1, Relaxed);
        }
    }

    /// Whether the packet rules apply to forwarded packets.
    pub(crate) fn forwarding(&self) -> bool {
        self.options.load(Relaxed) & abi::OPT_FORWARD != 0
    }

    pub(crate) fn packets(&self) -> &PacketState {
        &self.packets
    }

    /// Counts a TCP packet for its connection's summary.
    pub(crate) fn count_flow(&self, key: &FlowKey, inbound: bool, bytes: u64, syn: bool) {
        // SAFETY: No preconditions; callable from any context.
        let now = unsafe { kernel::bindings::ktime_get_boot_fast_ns() };
        if !self.flows.lock().account(key, inbound, bytes, syn, now) {
            self.flows_untracked.add(1, Relaxed);
        }
    }

    /// Takes a connection's IP counters.
    pub(crate) fn take_flow(&self, key: &FlowKey) -> Option<FlowCounts> {
        self.flows.lock().take(key)
    }

    /// Replaces the packet rules; audited with the number of rules before and after.
    pub(crate) fn set_rules(&self, set: &abi::RuleSet, who: &Identity) -> Result {
        let _guard = self.config_lock.lock();
        let old = self.packets.rules().n_rules;
        self.packets.set_rules(set)?;
        self.emit_config(
            config_item::RULES,
            u64::from(old),
            u64::from(set.n_rules),
            who,
        );
        Ok(())
    }

    /// Runs `f` on a tracked connection, if the connection is tracked; returns what `f` did.
    pub(crate) fn update_conn<R>(&self, key: usize, f: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        self.conns.lock().get_mut(key).map(f)
    }

    /// Runs `f` on the connection table.
    pub(crate) fn with_conns<R>(&self, f: impl FnOnce(&mut ConnTable) -> R) -> R {
        f(&mut self.conns.lock())
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
        let flushed = self.ring.lock().flush();
        self.emit_config(config_item::FLUSH, flushed.records, flushed.bytes, who);
        flushed.bytes
    }

    pub(crate) fn config(&self) -> abi::Config {
        abi::Config {
            event_mask: self.event_mask.load(Relaxed),
            options: self.options.load(Relaxed),
            snap_len: self.snap_len.load(Relaxed),
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
        let changes = [
            (config_item::EVENT_MASK, old.event_mask, new.event_mask),
            (config_item::OPTIONS, old.options, new.options),
            (
                config_item::SNAP_LEN,
                u64::from(old.snap_len),
                u64::from(new.snap_len),
            ),
        ];
        for (item, was, now) in changes {
            if was != now {
                self.emit_config(item, was, now, who);
            }
        }
        Ok(())
    }

    /// The module's state; `probes_missed` comes from the hooks, which the log does not own.
    pub(crate) fn status(&self, probes_missed: u64) -> abi::Status {
        let s = self.ring.lock().stats();
        let (conn_table_size, conns_tracked) = self.with_conns(|t| (t.capacity(), t.len()));
        let (flow_table_size, flows_tracked) = {
            let f = self.flows.lock();
            (f.capacity(), f.len())
        };
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
            conns_untracked: self.untracked.load(Relaxed),
            probes_missed,
            records_filtered: self.filtered.load(Relaxed),
            flow_table_size: flow_table_size as u32,
            flows_tracked: flows_tracked as u32,
            flows_untracked: self.flows_untracked.load(Relaxed),
            packets_repeated: self.packets.repeated(),
            produced_by_type: s.produced_by_type,
            ..abi::Status::default()
        }
    }

    // The reader's side.

    /// A cursor at the oldest record held: where a new reader starts.
    pub(crate) fn oldest(&self) -> Cursor {
        self.ring.lock().oldest()
    }

    pub(crate) fn reader_opened(&self) {
        self.readers.add(1, Relaxed);
    }

    pub(crate) fn reader_closed(&self) {
        self.readers.fetch_sub(1, Relaxed);
    }

    pub(crate) fn newest(&self) -> Cursor {
        self.ring.lock().newest()
    }

    pub(crate) fn available(&self, cur: Cursor) -> u64 {
        self.ring.lock().available(cur)
    }

    pub(crate) fn read(&self, cur: Cursor, out: &mut [u8]) -> Result<(usize, Cursor), ReadError> {
        self.ring.lock().read(cur, out)
    }

    /// Sleeps until a reader at `seq` has something to read. Returns `ERESTARTSYS` if a signal
    /// arrived first.
    pub(crate) fn wait_readable(&self, seq: u64) -> Result {
        let mut ring = self.ring.lock();
        while !ring.readable(seq) {
            if self.readable.wait_interruptible(&mut ring) {
                return Err(ERESTARTSYS);
            }
        }
        Ok(())
    }

    /// Whether a reader at `seq` has something to read.
    pub(crate) fn readable(&self, seq: u64) -> bool {
        self.ring.lock().readable(seq)
    }

    pub(crate) fn poll_wait(
        &self,
        file: &kernel::fs::File,
        table: &kernel::sync::poll::PollTable<'_>,
    ) {
        table.register_wait(file, &self.readable);
    }
}
