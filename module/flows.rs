// SPDX-License-Identifier: GPL-2.0

//! The flow table: packets and bytes of each TCP connection at the IP layer, as the netfilter
//! hooks see them, until the connection's summary takes them.
//!
//! Flows are keyed by their endpoints as this host sees them (namespace, local and remote
//! address and port), so both ends of a loopback connection are separate flows, as they are
//! separate connections. A SYN starts a flow afresh, so counts never leak from an earlier
//! connection on the same ports; only flows that saw their SYN are complete. The table (keyed
//! hash, so that remote peers cannot flood a chain) is
//! preallocated and bounded: when it is full, the stalest flow idle for a while is reused (flows
//! outlive their connection by at most a final ACK or a stray reset), else the packet goes
//! uncounted and is counted as such. Not synchronised itself: `Log` keeps it under a spinlock.

use kernel::prelude::*;

use crate::abi;
use crate::sockinfo::keyed_hash;

/// A flow's endpoints, IPv4-mapped IPv6 addresses folded to IPv4 (a dual-stack socket's
/// packets are IPv4 packets).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub(crate) netns: u32,
    pub(crate) family: u16,
    pub(crate) lport: u16,
    pub(crate) rport: u16,
    pub(crate) laddr: [u8; 16],
    pub(crate) raddr: [u8; 16],
}

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl FlowKey {
    pub(crate) fn new(
        netns: u32,
        family: u16,
        laddr: [u8; 16],
        lport: u16,
        raddr: [u8; 16],
        rport: u16,
    ) -> Self {
        let fold = |a: [u8; 16]| {
            let mut v4 = [0u8; 16];
            v4[..4].copy_from_slice(&a[12..]);
            v4
        };
        if family == abi::AF_INET6 && laddr[..12] == V4_MAPPED && raddr[..12] == V4_MAPPED {
            return FlowKey {
                netns,
                family: abi::AF_INET,
                lport,
                rport,
                laddr: fold(laddr),
                raddr: fold(raddr),
            };
        }
        FlowKey {
            netns,
            family,
            lport,
            rport,
            laddr,
            raddr,
        }
    }

    /// A keyed hash: remote peers choose the addresses and ports of inbound packets.
    fn hash(&self) -> u64 {
        let w =
            |a: &[u8; 16], i: usize| u64::from_ne_bytes(a[i..i + 8].try_into().unwrap_or_default());
        // Fold the addresses' halves together; the ports, family and namespace go in whole.
        let a = w(&self.laddr, 0) ^ w(&self.raddr, 8).rotate_left(17);
        let b = w(&self.laddr, 8) ^ w(&self.raddr, 0).rotate_left(31);
        let c = u64::from(self.netns) << 32 | u64::from(self.family) << 16 | u64::from(self.lport);
        keyed_hash([a, b, c, u64::from(self.rport)])
    }
}

/// What a flow counted.
#[derive(Clone, Copy, Default)]
pub(crate) struct FlowCounts {
    pub(crate) pkts_in: u64,
    pub(crate) pkts_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// The flow saw the connection's first SYN: the counts are the whole connection's.
    pub(crate) complete: bool,
}

const NIL: u32 = u32::MAX;

/// A flow idle this long may be reused when the table is full.
const STALE_NS: u64 = 10_000_000_000;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: FlowKey,
    used: bool,
    next: u32,
    last_seen: u64,
    counts: FlowCounts,
}

/// The flows, in a fixed-size hash table chained through slot indices.
///
/// # Invariants
///
/// Every slot index is in exactly one list: the free list from `free` (slots not `used`), or the
/// chain of the bucket its key hashes to (slots `used`, keys distinct); `used_count` counts the
/// latter; `buckets.len()` is a power of two.
pub(crate) struct FlowTable {
    slots: KVVec<Slot>,
    buckets: KVVec<u32>,
    free: u32,
    used_count: u32,
    /// Where the search for a stale flow resumes.
    hand: usize,
}

impl FlowTable {
    pub(crate) fn new(max: usize) -> Result<Self> {
        let mut slots = KVVec::from_elem(Slot::default(), max, GFP_KERNEL)?;
        for (i, s) in slots.iter_mut().enumerate() {
            s.next = if i + 1 < max { (i + 1) as u32 } else { NIL };
        }
        // INVARIANT: All slots are free, every chain empty.
        Ok(FlowTable {
            slots,
            buckets: KVVec::from_elem(NIL, max.next_power_of_two(), GFP_KERNEL)?,
            free: 0,
            used_count: 0,
            hand: 0,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.used_count as usize
    }

    fn bucket(&self, key: &FlowKey) -> usize {
        (key.hash() >> (64 - self.buckets.len().trailing_zeros())) as usize
    }

    fn find(&self, key: &FlowKey) -> Option<usize> {
        let mut i = self.buckets[self.bucket(key)];
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.key == *key {
                return Some(i as usize);
            }
            i = s.next;
        }
        None
    }

    fn unlink(&mut self, i: usize) {
        let b = self.bucket(&self.slots[i].key);
        let next = self.slots[i].next;
        if self.buckets[b] == i as u32 {
            self.buckets[b] = next;
        } else {
            let mut j = self.buckets[b];
            while j != NIL && self.slots[j as usize].next != i as u32 {
                j = self.slots[j as usize].next;
            }
            if j != NIL {
                self.slots[j as usize].next = next;
            }
        }
        // INVARIANT: Slot `i` leaves its chain for the free list.
        self.slots[i] = Slot {
            next: self.free,
            ..Slot::default()
        };
        self.free = i as u32;
        self.used_count -= 1;
    }

    /// Frees a flow idle for `STALE_NS`, looking at a bounded number of slots.
    fn reclaim(&mut self, now: u64) -> bool {
        let n = self.slots.len();
        for _ in 0..64.min(n) {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let s = &self.slots[i];
            if s.used && now.saturating_sub(s.last_seen) > STALE_NS {
                self.unlink(i);
                return true;
            }
        }
        false
    }

    /// Counts a packet of `bytes` bytes; `syn` starts the flow afresh. Returns false if the
    /// packet could not be counted (the table is full of active flows).
    pub(crate) fn account(
        &mut self,
        key: &FlowKey,
        inbound: bool,
        bytes: u64,
        syn: bool,
        now: u64,
    ) -> bool {
        let i = match self.find(key) {
            Some(i) => i,
            None => {
                if self.free == NIL && !self.reclaim(now) {
                    return false;
                }
                let i = self.free as usize;
                let b = self.bucket(key);
                self.free = self.slots[i].next;
                // INVARIANT: Slot `i` moves from the free list to the head of its key's chain.
                self.slots[i] = Slot {
                    key: *key,
                    used: true,
                    next: self.buckets[b],
                    last_seen: now,
                    counts: FlowCounts::default(),
                };
                self.buckets[b] = i as u32;
                self.used_count += 1;
                i
            }
        };
        let s = &mut self.slots[i];
        if syn {
            s.counts = FlowCounts {
                complete: true,
                ..FlowCounts::default()
            };
        }
        s.last_seen = now;
        let c = &mut s.counts;
        if inbound {
            c.pkts_in += 1;
            c.bytes_in += bytes;
        } else {
            c.pkts_out += 1;
            c.bytes_out += bytes;
        }
        true
    }

    /// Takes a flow's counts (for its connection's summary) and forgets it.
    pub(crate) fn take(&mut self, key: &FlowKey) -> Option<FlowCounts> {
        let i = self.find(key)?;
        let c = self.slots[i].counts;
        self.unlink(i);
        Some(c)
    }

    pub(crate) fn clear(&mut self) {
        let n = self.slots.len();
        for (i, s) in self.slots.iter_mut().enumerate() {
            *s = Slot {
                next: if i + 1 < n { (i + 1) as u32 } else { NIL },
                ..Slot::default()
            };
        }
        self.buckets.iter_mut().for_each(|b| *b = NIL);
        // INVARIANT: As after `new`.
        self.free = 0;
        self.used_count = 0;
    }
}
