// SPDX-License-Identifier: GPL-2.0

//! A bounded hash table, preallocated at load, that never allocates afterwards: the connection,
//! flow and connection-limit tables are all one of these.
//!
//! Entries live in a fixed array of slots and are chained per bucket through slot indices.
//! Callers hash keys themselves (with [`crate::keys::HashKeys`]), so the hashing can happen
//! before the caller takes the lock that guards the table. Emptying the table is O(1): every
//! bucket and slot carries the generation it was written in, and bumping the table's generation
//! makes all of them stale at once, so `tcplog disable` never walks hundreds of megabytes with
//! interrupts off. The table is not synchronised itself.

use kernel::prelude::*;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Bucket {
    generation: u32,
    head: u32,
}

#[derive(Clone, Copy, Default)]
struct Slot<K, V> {
    /// The generation the entry was inserted in; the entry is live only if it is the table's.
    generation: u32,
    live: bool,
    hash: u64,
    next: u32,
    key: K,
    value: V,
}

/// Why an entry could not be inserted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// The table.
///
/// # Invariants
///
/// - `buckets.len()` is a power of two, `slots.len()` at most `u32::MAX - 1`.
/// - A slot is live iff `live` and its `generation` equals the table's; each live slot is in
///   exactly one chain: that of a bucket of the table's generation, the one its `hash` selects.
///   Chains link live slots only and end with `NIL`.
/// - Free slots are those on the free list (from `free`, linked through `next`) and those at
///   `fresh` and after; no live slot is in either. `used` counts the live slots.
pub(crate) struct Table<K, V> {
    slots: KVVec<Slot<K, V>>,
    buckets: KVVec<Bucket>,
    shift: u32,
    generation: u32,
    free: u32,
    fresh: u32,
    used: u32,
    /// Where [`Table::evict_one`] resumes its search.
    hand: u32,
}

impl<K: Copy + Default + PartialEq, V: Copy + Default> Table<K, V> {
    /// A table with room for `capacity` entries (at least 1).
    pub(crate) fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 || capacity >= NIL as usize {
            return Err(EINVAL);
        }
        let nbuckets = capacity.next_power_of_two();
        // INVARIANT: Generation 1 is not that of any bucket or slot (all 0): everything is free.
        Ok(Table {
            slots: KVVec::from_elem(Slot::default(), capacity, GFP_KERNEL)?,
            buckets: KVVec::from_elem(Bucket::default(), nbuckets, GFP_KERNEL)?,
            shift: 64 - nbuckets.trailing_zeros(),
            generation: 1,
            free: NIL,
            fresh: 0,
            used: 0,
            hand: 0,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.used as usize
    }

    fn bucket(&self, hash: u64) -> usize {
        // `shift` is at least 1 for tables of two buckets or more; a one-bucket table has shift
        // 64, where `checked_shr` gives 0.
        hash.checked_shr(self.shift).unwrap_or(0) as usize
    }

    fn head(&self, b: usize) -> u32 {
        let bucket = self.buckets[b];
        if bucket.generation == self.generation {
            bucket.head
        } else {
            NIL
        }
    }

    fn find(&self, key: &K, hash: u64) -> Option<usize> {
        let mut i = self.head(self.bucket(hash));
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.hash == hash && s.key == *key {
                return Some(i as usize);
            }
            i = s.next;
        }
        None
    }

    /// The value of `key` (whose hash is `hash`), if present.
    pub(crate) fn get_mut(&mut self, key: &K, hash: u64) -> Option<&mut V> {
        let i = self.find(key, hash)?;
        Some(&mut self.slots[i].value)
    }

    /// Inserts `key` with `value`, or replaces the value it has. Fails when the table is full.
    pub(crate) fn insert(&mut self, key: K, hash: u64, value: V) -> Result<&mut V, Full> {
        if let Some(i) = self.find(&key, hash) {
            self.slots[i].value = value;
            return Ok(&mut self.slots[i].value);
        }
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            i
        } else if (self.fresh as usize) < self.slots.len() {
            self.fresh += 1;
            self.fresh - 1
        } else {
            return Err(Full);
        };
        let b = self.bucket(hash);
        let head = self.head(b);
        // INVARIANT: Slot `i` came off the free list or the fresh range and becomes the head of
        // its bucket's chain, in the current generation.
        self.buckets[b] = Bucket {
            generation: self.generation,
            head: i,
        };
        self.slots[i as usize] = Slot {
            generation: self.generation,
            live: true,
            hash,
            next: head,
            key,
            value,
        };
        self.used += 1;
        Ok(&mut self.slots[i as usize].value)
    }

    /// Unlinks live slot `i` and frees it; returns its value.
    fn unlink(&mut self, i: usize) -> V {
        let b = self.bucket(self.slots[i].hash);
        let next = self.slots[i].next;
        let mut j = self.head(b);
        if j == i as u32 {
            self.buckets[b].head = next;
        } else {
            while j != NIL {
                let s = &mut self.slots[j as usize];
                if s.next == i as u32 {
                    s.next = next;
                    break;
                }
                j = s.next;
            }
        }
        let value = self.slots[i].value;
        // INVARIANT: Slot `i` leaves its chain for the free list.
        self.slots[i] = Slot {
            next: self.free,
            ..Slot::default()
        };
        self.free = i as u32;
        self.used -= 1;
        value
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&mut self, key: &K, hash: u64) -> Option<V> {
        let i = self.find(key, hash)?;
        Some(self.unlink(i))
    }

    /// Removes one entry for which `pred` holds, looking at no more than `budget` slots from
    /// where the last search stopped (a clock hand). Returns whether one was removed.
    pub(crate) fn evict_one(&mut self, budget: usize, pred: impl Fn(&K, &V) -> bool) -> bool {
        let n = self.slots.len();
        for _ in 0..budget.min(n) {
            let i = self.hand as usize % n;
            self.hand = ((i + 1) % n) as u32;
            let s = &self.slots[i];
            if s.live && s.generation == self.generation && pred(&s.key, &s.value) {
                self.unlink(i);
                return true;
            }
        }
        false
    }

    /// Calls `f` on live entries from slot `from` on, until it has seen `budget` slots or `f`
    /// returns false; returns where to resume, or `None` at the end. For walking a big table a
    /// batch at a time, releasing its lock in between (entries may come and go meanwhile).
    pub(crate) fn walk(
        &mut self,
        from: usize,
        budget: usize,
        mut f: impl FnMut(&K, &mut V) -> bool,
    ) -> Option<usize> {
        let end = self.fresh as usize;
        let mut i = from;
        while i < end && i - from < budget {
            let generation = self.generation;
            let s = &mut self.slots[i];
            i += 1;
            if s.live && s.generation == generation && !f(&s.key, &mut s.value) {
                break;
            }
        }
        (i < end).then_some(i)
    }

    /// Forgets every entry, in constant time.
    pub(crate) fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 clears the generations would repeat: wipe everything once instead.
            self.slots.iter_mut().for_each(|s| *s = Slot::default());
            self.buckets.iter_mut().for_each(|b| *b = Bucket::default());
            self.generation = 1;
        }
        // INVARIANT: No bucket or slot has the new generation: every slot is free, in the fresh
        // range.
        self.free = NIL;
        self.fresh = 0;
        self.used = 0;
        self.hand = 0;
    }
}

#[kunit_tests(tcplog_table)]
mod tests {
    use super::*;

    fn h(k: u32) -> u64 {
        // Deliberately colliding: every key lands in one of four buckets' worth of hashes.
        u64::from(k % 4) << 62 | u64::from(k)
    }

    #[test]
    fn insert_get_remove() -> Result {
        let mut t: Table<u32, u64> = Table::new(8)?;
        for k in 0..8 {
            assert!(t.insert(k, h(k), u64::from(k) * 10).is_ok());
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.insert(100, h(100), 1), Err(Full));
        // Replacing needs no room.
        assert!(t.insert(3, h(3), 33).is_ok());
        assert_eq!(t.get_mut(&3, h(3)).copied(), Some(33));
        assert_eq!(t.remove(&5, h(5)), Some(50));
        assert_eq!(t.remove(&5, h(5)), None);
        assert_eq!(t.get_mut(&5, h(5)), None);
        assert!(t.insert(100, h(100), 1).is_ok());
        for k in [0, 1, 2, 4, 6, 7] {
            assert_eq!(t.get_mut(&k, h(k)).copied(), Some(u64::from(k) * 10));
        }
        assert_eq!(t.len(), 8);
        Ok(())
    }

    #[test]
    fn clear_is_complete() -> Result {
        let mut t: Table<u32, u32> = Table::new(16)?;
        for round in 0..3u32 {
            for k in 0..16 {
                assert!(t.insert(k + round, h(k + round), k).is_ok());
            }
            assert_eq!(t.insert(999, h(999), 0), Err(Full));
            t.clear();
            assert_eq!(t.len(), 0);
            for k in 0..20 {
                assert_eq!(t.get_mut(&k, h(k)), None);
            }
        }
        Ok(())
    }

    #[test]
    fn walk_sees_every_entry_once() -> Result {
        let mut t: Table<u32, u32> = Table::new(64)?;
        for k in 0..50 {
            assert!(t.insert(k, h(k), 1).is_ok());
        }
        for k in (0..50).step_by(3) {
            assert!(t.remove(&k, h(k)).is_some());
        }
        let (mut seen, mut from) = (0, Some(0));
        while let Some(i) = from {
            from = t.walk(i, 7, |_, v| {
                *v += 1;
                seen += 1;
                true
            });
        }
        assert_eq!(seen, t.len());
        for k in (1..50).filter(|k| k % 3 != 0) {
            assert_eq!(t.get_mut(&k, h(k)).copied(), Some(2));
        }
        Ok(())
    }

    #[test]
    fn evict_one_respects_the_predicate() -> Result {
        let mut t: Table<u32, bool> = Table::new(4)?;
        for k in 0..4 {
            assert!(t.insert(k, h(k), k == 2).is_ok());
        }
        assert!(t.evict_one(4, |_, v| *v));
        assert_eq!(t.get_mut(&2, h(2)), None);
        assert!(!t.evict_one(4, |_, v| *v));
        assert_eq!(t.len(), 3);
        Ok(())
    }
}
