// SPDX-License-Identifier: GPL-2.0

//! A kernel timer (`timer_list`), armed from any context and shut down for good before what its
//! callback touches goes away.
//!
//! (`kernel::time::hrtimer` hands out a handle per start that cancels on drop and may wait for
//! the callback: the hooks arm these timers in softirq and under spinlocks, where no such
//! handle could be dropped. So the C timer it is, with its two one-line helpers.)

use kernel::{prelude::*, types::Opaque};

use crate::bindings::{self, timer_list};

/// The timer.
///
/// # Invariants
///
/// `t` was set up with `timer_setup` in `new`, and is shut down (`timer_shutdown_sync`) at the
/// latest when the `Timer` is dropped.
#[repr(transparent)]
#[pin_data(PinnedDrop)]
pub(crate) struct Timer {
    #[pin]
    t: Opaque<timer_list>,
}

// SAFETY: The timer is only touched through the timer API, which synchronises itself.
unsafe impl Send for Timer {}
// SAFETY: As above.
unsafe impl Sync for Timer {}

impl Timer {
    /// A timer that calls `f` with its own `timer_list` when it expires.
    pub(crate) fn new(f: unsafe extern "C" fn(*mut timer_list)) -> impl PinInit<Self> {
        pin_init!(Timer {
            // SAFETY: `slot` is valid for the timer to be set up in; it is pinned, and the timer
            // is shut down before the memory goes (`PinnedDrop`).
            // INVARIANT: Set up here.
            t <- Opaque::ffi_init(move |slot| unsafe { bindings::tcplog_timer_setup(slot, Some(f)) }),
        })
    }

    /// Arms it to fire `ms` milliseconds from now (re-arms it if armed). Callable from any
    /// context; does nothing once it is shut down.
    pub(crate) fn arm(&self, ms: u32) {
        // SAFETY: By the type invariant the timer was set up.
        unsafe { bindings::tcplog_timer_arm(self.t.get(), ms) };
    }

    /// Stops it for good, waiting for a running callback. Callers are in process context.
    pub(crate) fn shutdown(&self) {
        // SAFETY: By the type invariant the timer was set up; shutting it down again is harmless.
        unsafe { bindings::timer_shutdown_sync(self.t.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for Timer {
    fn drop(self: Pin<&mut Self>) {
        self.shutdown();
    }
}
