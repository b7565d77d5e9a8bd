// SPDX-License-Identifier: GPL-2.0

//! The two clocks records carry: `CLOCK_REALTIME` for people, `CLOCK_BOOTTIME` for durations
//! (it never jumps). Both are read with the NMI-safe fast accessors, callable from any context.

use kernel::bindings;

/// `CLOCK_REALTIME` now, ns since the epoch.
pub(crate) fn real_ns() -> u64 {
    // SAFETY: No preconditions; callable from any context.
    unsafe { bindings::ktime_get_real_fast_ns() }
}

/// `CLOCK_BOOTTIME` now, ns since boot.
pub(crate) fn boot_ns() -> u64 {
    // SAFETY: No preconditions; callable from any context.
    unsafe { bindings::ktime_get_boot_fast_ns() }
}

/// One instant on both clocks.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stamp {
    pub(crate) real: u64,
    pub(crate) boot: u64,
}

impl Stamp {
    pub(crate) fn now() -> Self {
        Stamp {
            real: real_ns(),
            boot: boot_ns(),
        }
    }
}
