// SPDX-License-Identifier: GPL-2.0

//! Per-source connection limits (HP-UX ipl's): a TCP rule with `limit N` counts, per source
//! address, the connections this host accepts that match it, and when a source has more than N
//! open a LIMIT record says so. Nothing is blocked.
//!
//! Counts live in a bounded table keyed by (namespace, rule, source); an entry goes away when
//! its count drops to zero, so the table holds only sources with connections open now. When it
//! is full, the connection is not counted, and that is counted. Counts belong to one
//! publication of the rules: replacing the rules starts them afresh.

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Relaxed, Atomic},
};

use crate::abi::{self, LimitBody, PacketMeta};
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::keys::HashKeys;
use crate::table::Table;

/// Sources tracked at once for connection limits.
const LIMIT_SLOTS: usize = 4096;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitKey {
    generation: u64,
    netns: u32,
    rule: u16,
    family: u16,
    src: [u8; 16],
}

impl LimitKey {
    fn bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.generation.to_ne_bytes());
        b[8..12].copy_from_slice(&self.netns.to_ne_bytes());
        b[12..14].copy_from_slice(&self.rule.to_ne_bytes());
        b[14..16].copy_from_slice(&self.family.to_ne_bytes());
        b[16..].copy_from_slice(&self.src);
        b
    }
}

#[derive(Clone, Copy, Default)]
struct Count {
    current: u32,
    exceeded: u32,
}

/// A connection counted against a limit, to uncount when it ends.
#[derive(Clone, Copy, Default)]
pub(crate) struct LimitRef {
    key: LimitKey,
}

/// What the rules say about a new connection: its rule (from 0), that rule's threshold, and the
/// publication of the rules it belongs to.
pub(crate) struct Limited {
    pub(crate) rule: usize,
    pub(crate) threshold: u32,
    pub(crate) generation: u64,
}

#[pin_data]
pub(crate) struct Limits {
    #[pin]
    table: SpinLockIrq<Table<LimitKey, Count>>,
    keys: HashKeys,
    /// Connections not counted for want of room.
    untracked: Atomic<u64>,
}

impl Limits {
    pub(crate) fn new(keys: HashKeys) -> Result<impl PinInit<Self, Error>> {
        let table = Table::new(LIMIT_SLOTS)?;
        Ok(try_pin_init!(Limits {
            table <- new_spinlock_irq!(table, "tcplog_limits"),
            keys,
            untracked: Atomic::new(0),
        }))
    }

    /// Counts a connection from `meta.saddr` against `lim`; returns what to uncount when it
    /// ends, and the LIMIT record to write if the source is over the threshold now.
    pub(crate) fn connect(
        &self,
        lim: &Limited,
        meta: &PacketMeta<'_>,
        netns: u32,
    ) -> (Option<LimitRef>, Option<LimitBody>) {
        let key = LimitKey {
            generation: lim.generation,
            netns,
            rule: lim.rule as u16,
            family: meta.family,
            src: *meta.saddr,
        };
        let h = self.keys.hash(&key.bytes());
        let mut t = self.table.lock();
        let c = match t.get_mut(&key, h) {
            Some(c) => c,
            None => match t.insert(key, h, Count::default()) {
                Ok(c) => c,
                Err(_) => {
                    drop(t);
                    self.untracked.add(1, Relaxed);
                    return (None, None);
                }
            },
        };
        c.current += 1;
        let over = (c.current > lim.threshold).then(|| {
            c.exceeded += 1;
            LimitBody {
                netns,
                rule: lim.rule as u16 + 1,
                family: meta.family,
                limit_type: abi::LIMIT_CONNS_PER_SOURCE,
                threshold: lim.threshold,
                current: c.current,
                exceeded: c.exceeded,
                src: *meta.saddr,
            }
        });
        (Some(LimitRef { key }), over)
    }

    /// Uncounts a connection that ended; forgets its source at zero.
    pub(crate) fn disconnect(&self, r: LimitRef) {
        let h = self.keys.hash(&r.key.bytes());
        let mut t = self.table.lock();
        let zero = match t.get_mut(&r.key, h) {
            Some(c) => {
                c.current = c.current.saturating_sub(1);
                c.current == 0
            }
            None => false,
        };
        if zero {
            t.remove(&r.key, h);
        }
    }

    /// Forgets every count (the rules were replaced, or logging disabled).
    pub(crate) fn clear(&self) {
        self.table.lock().clear();
    }

    pub(crate) fn untracked(&self) -> u64 {
        self.untracked.load(Relaxed)
    }
}
