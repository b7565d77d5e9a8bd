// SPDX-License-Identifier: GPL-2.0

//! The packet rules, published with RCU: a packet sees the old set or the new one, never half of
//! either; each set carries the counters of what its rules matched.

use kernel::{
    alloc::flags::__GFP_ZERO,
    prelude::*,
    sync::atomic::{ordering::Acquire, ordering::Full, ordering::Relaxed, Atomic},
};

use crate::abi::{PacketMeta, RuleSet, RuleStats, MAX_RULES};
use crate::limits::Limited;

/// A published rule set with its counters.
struct ActiveRules {
    set: RuleSet,
    packets: [Atomic<u64>; MAX_RULES],
    bytes: [Atomic<u64>; MAX_RULES],
    /// Which publication this is: connection-limit counts belong to one.
    generation: u64,
}

impl ActiveRules {
    /// A set built in place on the heap: a few KiB that have no business on the kernel stack.
    fn new(set: &RuleSet, generation: u64) -> Result<KBox<Self>> {
        let b = KBox::<ActiveRules>::new_uninit(GFP_KERNEL | __GFP_ZERO)?;
        // SAFETY: The memory is zeroed, and all-zero is a valid `ActiveRules`: the rule set and
        // the generation are integers and arrays of integers, and an `Atomic<u64>` holds a `u64`.
        let mut b = unsafe { b.assume_init() };
        b.set = *set;
        b.generation = generation;
        Ok(b)
    }
}

/// A rule's decision about a packet: which rule (from 0) and its action.
pub(crate) struct Match {
    pub(crate) rule: usize,
    pub(crate) action: u8,
}

/// The published rules.
///
/// # Invariants
///
/// `current` is never null: it comes from `KBox::into_raw` of an `ActiveRules`, and a set
/// replaced by another is freed only after an RCU grace period.
pub(crate) struct Rules {
    current: Atomic<*const ActiveRules>,
}

// SAFETY: The pointer is only swapped atomically and read under RCU; `ActiveRules` is `Sync`.
unsafe impl Send for Rules {}
// SAFETY: As above.
unsafe impl Sync for Rules {}

impl Rules {
    /// No rules.
    pub(crate) fn new() -> Result<Self> {
        let first = KBox::into_raw(ActiveRules::new(&RuleSet::default(), 0)?);
        // INVARIANT: `first` is a boxed set.
        Ok(Rules {
            current: Atomic::new(first.cast_const()),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&ActiveRules) -> R) -> R {
        let _rcu = kernel::sync::rcu::read_lock();
        // SAFETY: By the type invariant `current` is valid for as long as this RCU read-side
        // critical section lasts.
        f(unsafe { &*self.current.load(Acquire) })
    }

    /// A copy of the rules, made on the heap (callers copy it out to userspace).
    pub(crate) fn get(&self) -> Result<KBox<RuleSet>> {
        let mut b = KBox::<RuleSet>::new_uninit(GFP_KERNEL)?;
        self.with(|r| {
            // SAFETY: `b` is valid for writing one `RuleSet`; `r.set` is a different object.
            unsafe { core::ptr::copy_nonoverlapping(&r.set, b.as_mut_ptr(), 1) }
        });
        // SAFETY: Initialised just above.
        Ok(unsafe { b.assume_init() })
    }

    pub(crate) fn n_rules(&self) -> u32 {
        self.with(|r| r.set.n_rules)
    }

    /// Whether any rule is published: a packet needs no more than its counters without.
    pub(crate) fn any(&self) -> bool {
        self.n_rules() != 0
    }

    pub(crate) fn stats(&self) -> RuleStats {
        self.with(|r| RuleStats {
            packets: core::array::from_fn(|i| r.packets[i].load(Relaxed)),
            bytes: core::array::from_fn(|i| r.bytes[i].load(Relaxed)),
        })
    }

    /// Publishes a new rule set and frees the old one. Callers serialise (the configuration
    /// lock); this sleeps.
    pub(crate) fn replace(&self, set: &RuleSet) -> Result {
        if !set.is_valid() {
            return Err(EINVAL);
        }
        let generation = self.with(|r| r.generation) + 1;
        let new = KBox::into_raw(ActiveRules::new(set, generation)?);
        // INVARIANT: `new` is a boxed set; the old one is freed after a grace period below.
        let old = self.current.xchg(new.cast_const(), Full);
        crate::compat::synchronize_rcu();
        // SAFETY: `old` came from `KBox::into_raw` and is unpublished; after the grace period no
        // reader holds it.
        drop(unsafe { KBox::from_raw(old.cast_mut()) });
        Ok(())
    }

    /// The first rule matching a packet of `bytes` bytes, counted for it; `None` with no match.
    pub(crate) fn decide(&self, meta: &PacketMeta<'_>, bytes: u64) -> Option<Match> {
        self.with(|r| {
            if r.set.n_rules == 0 {
                return None;
            }
            let i = r.set.first_match(meta)?;
            r.packets[i].add(1, Relaxed);
            r.bytes[i].add(bytes, Relaxed);
            Some(Match {
                rule: i,
                action: r.set.rules[i].action,
            })
        })
    }

    /// The connection limit that applies to an accepted connection described by `meta`.
    pub(crate) fn limit_for(&self, meta: &PacketMeta<'_>) -> Option<Limited> {
        self.with(|r| {
            let i = r.set.first_match(meta)?;
            let threshold = r.set.rules[i].conn_limit;
            (threshold != 0).then_some(Limited {
                rule: i,
                threshold,
                generation: r.generation,
            })
        })
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        // SAFETY: Nothing reads the rules anymore (the hooks are gone before the state that
        // holds them); the pointer came from `KBox::into_raw`.
        drop(unsafe { KBox::from_raw(self.current.load(Acquire).cast_mut()) });
    }
}
