// SPDX-License-Identifier: GPL-2.0

//! Probe points: kretprobes on kernel functions and probes on tracepoints.
//!
//! Both register at module load and unregister at unload. Unregistering a kretprobe waits for
//! its handlers to finish; tracepoint probes need [`sync_tracepoints`] after they are removed.
//! So once a [`RetProbe`] is dropped and `sync_tracepoints` has returned, no handler of this
//! module runs anymore.

use core::ffi::c_void;
use core::mem::size_of;

use kernel::{error::to_result, ffi::c_int, prelude::*, str::CStr, types::Opaque};

use crate::bindings::{self, kretprobe_instance, pt_regs};

/// A kretprobe handler, entry or return.
pub(crate) type Handler = unsafe extern "C" fn(*mut kretprobe_instance, *mut pt_regs) -> c_int;

/// Argument `n` (from 0) of the probed function, valid in an entry handler.
///
/// # Safety
///
/// `regs` must be the registers a kretprobe handler was given.
pub(crate) unsafe fn arg(regs: *mut pt_regs, n: u32) -> usize {
    // SAFETY: By the function's requirement, `regs` is valid.
    unsafe { bindings::tcplog_regs_arg(regs, n) as usize }
}

/// The return value of a probed function that returns `int`, valid in a return handler.
///
/// An `int` comes back in the low half of the return register; the upper half is not its sign
/// extension, so the value is truncated to 32 bits before it is read as signed.
///
/// # Safety
///
/// `regs` must be the registers a kretprobe return handler was given.
pub(crate) unsafe fn ret(regs: *mut pt_regs) -> i32 {
    // SAFETY: By the function's requirement, `regs` is valid.
    unsafe { bindings::tcplog_regs_return(regs) as u32 as i32 }
}

/// The per-call data area of a kretprobe instance, as a `T`.
///
/// # Safety
///
/// `ri` must be an instance of a kretprobe registered with `data_size >= size_of::<T>()`.
pub(crate) unsafe fn data<T>(ri: *mut kretprobe_instance) -> *mut T {
    // SAFETY: By the function's requirement the flexible `data` array has room for a `T`; it
    // follows a pointer-aligned header, so it is aligned for any `T` of alignment up to 8.
    unsafe { core::ptr::addr_of_mut!((*ri).data).cast::<T>() }
}

/// A registered kretprobe.
///
/// # Invariants
///
/// `kp` holds a `struct kretprobe` registered with `register_kretprobe()` for as long as the
/// object exists; it is unregistered exactly once, in `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct RetProbe {
    #[pin]
    kp: Opaque<bindings::kretprobe>,
}

// SAFETY: The kretprobe is only touched by the kprobes core (which synchronises itself), by
// `nmissed` (a racy but harmless read of counters) and by `drop`.
unsafe impl Send for RetProbe {}
// SAFETY: As above.
unsafe impl Sync for RetProbe {}

impl RetProbe {
    /// Probes `symbol`: `entry` runs when it is called (returning nonzero skips the return
    /// handler for that call), `ret` when it returns; each call has `data_size` bytes of its own,
    /// and at most `maxactive` calls can be in flight at once (more are counted as missed).
    pub(crate) fn register(
        symbol: &'static CStr,
        entry: Handler,
        ret: Option<Handler>,
        data_size: usize,
        maxactive: i32,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            kp <- Opaque::try_ffi_init(move |slot: *mut bindings::kretprobe| {
                // SAFETY: All-zero is a valid `kretprobe` (null pointers, no handlers, zero
                // counts), and the state `register_kretprobe` expects besides what is set below.
                let mut krp: bindings::kretprobe = unsafe { core::mem::zeroed() };
                krp.kp.symbol_name = symbol.as_char_ptr();
                krp.entry_handler = Some(entry);
                krp.handler = ret;
                krp.data_size = data_size;
                krp.maxactive = maxactive;
                // SAFETY: `slot` is valid for writes: the initialiser owns it.
                unsafe { slot.write(krp) };
                // SAFETY: `slot` holds an initialised kretprobe whose symbol name is a static
                // string and whose handlers are functions of this module. It is pinned and
                // `PinnedDrop` unregisters it before the memory goes.
                // INVARIANT: On success the kretprobe is registered.
                let r = to_result(unsafe { bindings::register_kretprobe(slot) });
                if r.is_err() {
                    pr_err!("cannot probe {}: is it in this kernel?\n", symbol);
                }
                r
            }),
        })
    }

    /// Arms or disarms the probe. A disarmed probe costs the probed function nothing; calls
    /// already in flight still run their return handlers.
    pub(crate) fn set_armed(&self, on: bool) {
        // SAFETY: By the type invariant the kretprobe is registered; `enable_kprobe` and
        // `disable_kprobe` take the kprobes mutex and may sleep, and callers are in process
        // context.
        unsafe {
            let kp = core::ptr::addr_of_mut!((*self.kp.get()).kp);
            if on {
                bindings::enable_kprobe(kp);
            } else {
                bindings::disable_kprobe(kp);
            }
        }
    }

    /// Calls this probe missed: instances exhausted, or the probe hit itself.
    pub(crate) fn nmissed(&self) -> u64 {
        let p = self.kp.get();
        // SAFETY: `p` is our registered kretprobe; the counters are plain integers the kprobes
        // core updates, read volatile since they may change under us.
        unsafe {
            let krp = core::ptr::read_volatile(core::ptr::addr_of!((*p).nmissed));
            let kp = core::ptr::read_volatile(core::ptr::addr_of!((*p).kp.nmissed));
            krp.max(0) as u64 + kp as u64
        }
    }
}

#[pinned_drop]
impl PinnedDrop for RetProbe {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the kretprobe is registered, and this is the only place
        // that unregisters it. The call waits until no handler runs anymore.
        unsafe { bindings::unregister_kretprobe(self.kp.get()) };
    }
}

/// A probe function attached to a tracepoint.
///
/// # Invariants
///
/// `probe` with `data` is registered on `tp` for as long as the object exists; it is unregistered
/// exactly once, in `drop`.
pub(crate) struct TracepointProbe {
    tp: *mut bindings::tracepoint,
    probe: *mut c_void,
    data: *mut c_void,
}

// SAFETY: The pointers are only handed back to the tracepoint core, which synchronises itself.
unsafe impl Send for TracepointProbe {}
// SAFETY: As above; `&self` offers nothing.
unsafe impl Sync for TracepointProbe {}

struct Search<'a> {
    name: &'a CStr,
    found: *mut bindings::tracepoint,
}

/// # Safety
///
/// Called by `for_each_kernel_tracepoint` with a valid tracepoint and the `Search` passed to it.
unsafe extern "C" fn match_tracepoint(tp: *mut bindings::tracepoint, priv_: *mut c_void) {
    // SAFETY: `priv_` is the `Search` `find` passed, alive for the whole iteration.
    let search = unsafe { &mut *priv_.cast::<Search<'_>>() };
    // SAFETY: Every kernel tracepoint has a static, NUL-terminated name.
    let name = unsafe { CStr::from_char_ptr((*tp).name) };
    if name == search.name {
        search.found = tp;
    }
}

impl TracepointProbe {
    /// Attaches `probe` (a function whose arguments are `data` followed by the tracepoint's own)
    /// to the core kernel tracepoint `name`. Tracepoints that are not exported to modules are
    /// found this way.
    ///
    /// # Safety
    ///
    /// `probe` must be an `unsafe extern "C" fn` whose signature is that of the tracepoint's
    /// probes, and `data` must stay valid for as long as the probe is registered.
    pub(crate) unsafe fn register(
        name: &'static CStr,
        probe: *mut c_void,
        data: *mut c_void,
    ) -> Result<Self> {
        let mut search = Search {
            name,
            found: core::ptr::null_mut(),
        };
        // SAFETY: The callback only reads tracepoint names and writes `search`, which lives
        // across the call.
        unsafe {
            bindings::for_each_kernel_tracepoint(
                Some(match_tracepoint),
                core::ptr::from_mut(&mut search).cast(),
            )
        };
        if search.found.is_null() {
            pr_err!("tracepoint {} not found\n", name);
            return Err(ENOENT);
        }
        // SAFETY: `found` is a kernel tracepoint; by the function's requirements `probe` has the
        // right signature and `data` outlives the registration.
        to_result(unsafe { bindings::tracepoint_probe_register(search.found, probe, data) })?;
        // INVARIANT: Registered above.
        Ok(TracepointProbe {
            tp: search.found,
            probe,
            data,
        })
    }
}

impl Drop for TracepointProbe {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the probe is registered, and this is the only place that
        // unregisters it. Callers wait with `sync_tracepoints` before freeing what `data` uses.
        unsafe { bindings::tracepoint_probe_unregister(self.tp, self.probe, self.data) };
    }
}

/// Waits until no tracepoint probe removed before the call is still running.
pub(crate) fn sync_tracepoints() {
    // SAFETY: No preconditions; it sleeps, and unload runs in process context.
    unsafe { bindings::tcplog_tracepoint_sync() };
}

const _: () = assert!(size_of::<usize>() == 8);
