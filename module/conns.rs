// SPDX-License-Identifier: GPL-2.0

//! The connection table: what the module remembers about each TCP connection it tracks, from
//! open to the summary at close.
//!
//! Entries are keyed by the address of the `struct sock` (and carry its cookie), live from the
//! connect or the end of the handshake until the socket is destroyed, and are never freed before
//! the socket is, so a key is never confused with a later socket at the same address. The table
//! is preallocated at load, bounded, and never allocates; when full, a new connection is not
//! tracked and the caller counts it. It is not synchronised itself: `Log` keeps it under a
//! spinlock taken with interrupts disabled.

use kernel::prelude::*;

use crate::identity::Identity;
use crate::packet::LimitRef;
use crate::sockinfo::{SockInfo, TcpStats};

/// Smallest and largest `max_conns`.
pub(crate) const MIN_CONNS: usize = 64;
pub(crate) const MAX_CONNS: usize = 1 << 20;

/// The state of a connection when it reached CLOSE: what its summary reports.
#[derive(Clone, Copy, Default)]
pub(crate) struct Closed {
    pub(crate) end_boot: u64,
    pub(crate) info: SockInfo,
    pub(crate) stats: TcpStats,
    /// `sk_err` at close.
    pub(crate) err: i32,
}

/// What the module knows about one connection.
#[derive(Clone, Copy, Default)]
pub(crate) struct Conn {
    /// When it opened: `CLOCK_REALTIME` and `CLOCK_BOOTTIME`, ns.
    pub(crate) start_ns: u64,
    pub(crate) start_boot: u64,
    /// The process that connected or accepted, once known.
    pub(crate) owner: Option<Identity>,
    /// `abi::open::*`.
    pub(crate) open: u8,
    pub(crate) established: bool,
    /// `TcpStats::seq_sent` when the connection was established: what the handshake took.
    pub(crate) sent_base: Option<u64>,
    /// This side queued its FIN (it went through FIN_WAIT1 or LAST_ACK).
    pub(crate) fin_queued: bool,
    /// A non-blocking connect returned EINPROGRESS: its outcome is reported later.
    pub(crate) async_connect: bool,
    pub(crate) rst_sent: bool,
    pub(crate) rst_received: bool,
    pub(crate) closed: Option<Closed>,
    /// Counted against a rule's connection limit (passive connections).
    pub(crate) limit: Option<LimitRef>,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: usize,
    next: u32,
    conn: Conn,
}

/// A fixed-size hash table of connections, with chaining through slot indices.
///
/// # Invariants
///
/// - `slots.len()` is between `MIN_CONNS` and `MAX_CONNS`; `buckets.len()` is a power of two.
/// - Every slot index is in exactly one list: the free list from `free`, or the chain of the
///   bucket its key hashes to; lists link through `Slot::next` and end with `NIL`.
/// - `used` is the number of slots in chains, and keys in chains are distinct and nonzero.
pub(crate) struct ConnTable {
    slots: KVVec<Slot>,
    buckets: KVVec<u32>,
    free: u32,
    used: u32,
}

impl ConnTable {
    pub(crate) fn new(max: usize) -> Result<Self> {
        if !(MIN_CONNS..=MAX_CONNS).contains(&max) {
            return Err(EINVAL);
        }
        let mut slots = KVVec::from_elem(Slot::default(), max, GFP_KERNEL)?;
        for (i, s) in slots.iter_mut().enumerate() {
            s.next = if i + 1 < max { (i + 1) as u32 } else { NIL };
        }
        let buckets = KVVec::from_elem(NIL, max.next_power_of_two(), GFP_KERNEL)?;
        // INVARIANT: All slots are on the free list, in order; every chain is empty.
        Ok(ConnTable {
            slots,
            buckets,
            free: 0,
            used: 0,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.used as usize
    }

    fn bucket(&self, key: usize) -> usize {
        // Fibonacci hashing of the address, whose low bits are alignment.
        let h = ((key >> 6) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - self.buckets.len().trailing_zeros())) as usize
    }

    fn find(&self, key: usize) -> Option<usize> {
        let mut i = self.buckets[self.bucket(key)];
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.key == key {
                return Some(i as usize);
            }
            i = s.next;
        }
        None
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        let i = self.find(key)?;
        Some(&mut self.slots[i].conn)
    }

    /// Tracks a connection, replacing any entry with the same key. Fails when the table is full.
    pub(crate) fn insert(&mut self, key: usize, conn: Conn) -> Result<(), ()> {
        if let Some(i) = self.find(key) {
            self.slots[i].conn = conn;
            return Ok(());
        }
        if self.free == NIL || key == 0 {
            return Err(());
        }
        let i = self.free as usize;
        let b = self.bucket(key);
        self.free = self.slots[i].next;
        // INVARIANT: Slot `i` moves from the free list to the head of its key's chain.
        self.slots[i] = Slot {
            key,
            next: self.buckets[b],
            conn,
        };
        self.buckets[b] = i as u32;
        self.used += 1;
        Ok(())
    }

    /// Stops tracking a connection; returns what was known.
    pub(crate) fn remove(&mut self, key: usize) -> Option<Conn> {
        let b = self.bucket(key);
        let mut prev = NIL;
        let mut i = self.buckets[b];
        while i != NIL {
            let next = self.slots[i as usize].next;
            if self.slots[i as usize].key == key {
                if prev == NIL {
                    self.buckets[b] = next;
                } else {
                    self.slots[prev as usize].next = next;
                }
                let conn = self.slots[i as usize].conn;
                // INVARIANT: Slot `i` leaves its chain for the free list.
                self.slots[i as usize] = Slot {
                    key: 0,
                    next: self.free,
                    conn: Conn::default(),
                };
                self.free = i;
                self.used -= 1;
                return Some(conn);
            }
            prev = i;
            i = next;
        }
        None
    }

    /// Forgets every connection.
    pub(crate) fn clear(&mut self) {
        let n = self.slots.len();
        for (i, s) in self.slots.iter_mut().enumerate() {
            *s = Slot {
                key: 0,
                next: if i + 1 < n { (i + 1) as u32 } else { NIL },
                conn: Conn::default(),
            };
        }
        self.buckets.iter_mut().for_each(|b| *b = NIL);
        // INVARIANT: As after `new`.
        self.free = 0;
        self.used = 0;
    }
}
