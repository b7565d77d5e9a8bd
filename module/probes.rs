// SPDX-License-Identifier: GPL-2.0

//! Probe points: fprobes on kernel functions, and probes on tracepoints.
//!
//! fprobes ride on ftrace: an entry handler costs a call through the function's ftrace
//! trampoline, and an exit handler keeps its per-call data on the calling task's own shadow
//! stack (function graph tracing), not in a global pool. So a call that sleeps (a blocking
//! connect or accept) holds nothing that other tasks' calls need: no number of parked calls can
//! make the probe miss anyone else's (kretprobes' `maxactive` pool could be exhausted so). What
//! an fprobe still misses (a full shadow stack) it counts, and [`FProbe::missed`] reports.
//!
//! Handlers are written as [`Hook`]s: safe functions of the log, the call's arguments and its
//! per-call data. The trampolines below are the only unsafe glue between them and the kernel.
//!
//! Unregistering an fprobe waits for an RCU grace period, after which no handler of it runs
//! (function returns still pending are skipped); tracepoint probes need [`sync_tracepoints`]
//! after they are removed.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};

use kernel::{
    error::to_result,
    ffi::{c_char, c_int, c_ulong},
    prelude::*,
    str::CStr,
    sync::Arc,
    types::Opaque,
};

use crate::bindings::{self, fprobe, ftrace_regs};
use crate::log::Log;

/// The registers of a probed call, at its entry or its return.
///
/// # Invariants
///
/// `fregs` is the `ftrace_regs` ftrace handed the running handler, valid for `'a`.
pub(crate) struct Regs<'a> {
    fregs: *mut ftrace_regs,
    _call: PhantomData<&'a ()>,
}

impl Regs<'_> {
    /// Argument `n` (from 0) of the call, as a machine word (valid at entry).
    pub(crate) fn arg(&self, n: u32) -> usize {
        // SAFETY: By the type invariant `fregs` is valid.
        unsafe { bindings::tcplog_fregs_arg(self.fregs, n) as usize }
    }

    /// Argument `n`, declared `int`: the low half of its register (the upper half of an `int`
    /// argument is undefined in the x86-64 calling convention; clang leaves garbage there).
    pub(crate) fn arg_int(&self, n: u32) -> i32 {
        self.arg(n) as u32 as i32
    }

    /// The return value, as a machine word (valid at return).
    pub(crate) fn ret(&self) -> usize {
        // SAFETY: By the type invariant `fregs` is valid.
        unsafe { bindings::tcplog_fregs_return(self.fregs) as usize }
    }

    /// The return value of a function returning `int` (valid at return), read likewise.
    pub(crate) fn ret_int(&self) -> i32 {
        // SAFETY: By the type invariant `fregs` is valid.
        unsafe { bindings::tcplog_fregs_return(self.fregs) as u32 as i32 }
    }
}

/// A probe on kernel functions: which, and what to do at their entry and exit.
pub(crate) trait Hook {
    /// The functions probed (all with the same arguments).
    const SYMBOLS: &'static [&'static CStr];
    /// Whether [`Hook::exit`] runs: only then is `Data` kept from entry to exit.
    const HAS_EXIT: bool;
    /// Whether the functions may be missing from a kernel (MPTCP's): then the hook is left out
    /// without an error.
    const OPTIONAL: bool = false;
    /// What entry hands to exit.
    type Data: Copy + Default;

    /// At entry; returns whether `exit` should run for this call.
    fn entry(log: &Log, regs: &Regs<'_>, data: &mut Self::Data) -> bool;

    /// At return.
    fn exit(_log: &Log, _regs: &Regs<'_>, _data: &Self::Data) {}
}

/// Room ftrace keeps per call for an exit handler's data (`MAX_FPROBE_DATA_SIZE`).
const MAX_DATA: usize = 15 * size_of::<c_ulong>();
/// Functions one hook may probe.
const MAX_SYMBOLS: usize = 4;

/// An fprobe, registered for as long as it exists, whose handlers write to a [`Log`].
///
/// # Invariants
///
/// `fp` holds a `struct fprobe` registered with `register_fprobe_syms()` whose handlers are the
/// trampolines of one `Hook` type, until `drop` unregisters it; the handlers write to `log`.
#[pin_data(PinnedDrop)]
pub(crate) struct FProbe {
    #[pin]
    fp: Opaque<fprobe>,
    log: Arc<Log>,
}

// SAFETY: The fprobe is only touched by the fprobe core (which synchronises itself), by `missed`
// (a racy but harmless read of a counter) and by `drop`; `Arc<Log>` is `Send` and `Sync`.
unsafe impl Send for FProbe {}
// SAFETY: As above.
unsafe impl Sync for FProbe {}

impl FProbe {
    /// Registers hook `H` on its symbols, writing to `log`.
    pub(crate) fn register<H: Hook>(log: Arc<Log>) -> impl PinInit<Self, Error> {
        const {
            assert!(size_of::<H::Data>() <= MAX_DATA && align_of::<H::Data>() <= 8);
            assert!(H::SYMBOLS.len() <= MAX_SYMBOLS);
        };
        try_pin_init!(Self {
            log,
            fp <- Opaque::try_ffi_init(move |slot: *mut fprobe| {
                // SAFETY: All-zero is a valid unregistered `fprobe` (no handlers, no data, no
                // hash list), which `register_fprobe_syms` initialises further.
                let mut fp: fprobe = unsafe { core::mem::zeroed() };
                fp.entry_handler = Some(entry_trampoline::<H>);
                if H::HAS_EXIT {
                    fp.exit_handler = Some(exit_trampoline::<H>);
                    fp.entry_data_size = size_of::<H::Data>();
                }
                // SAFETY: `slot` is valid for writes: the initialiser owns it.
                unsafe { slot.write(fp) };
                let mut syms = [core::ptr::null::<c_char>(); MAX_SYMBOLS];
                for (s, name) in syms.iter_mut().zip(H::SYMBOLS) {
                    *s = name.as_char_ptr();
                }
                let n = H::SYMBOLS.len();
                // SAFETY: `slot` holds an initialised fprobe, pinned until `PinnedDrop`
                // unregisters it; `syms` holds `n` static NUL-terminated names and is only read
                // during the call.
                // INVARIANT: On success the fprobe is registered with `H`'s trampolines.
                let r = to_result(unsafe {
                    bindings::register_fprobe_syms(slot, syms.as_mut_ptr(), n as c_int)
                });
                match r {
                    Err(e) if H::OPTIONAL => {
                        pr_info!("not probing {} ({:?}): left out\n", H::SYMBOLS[0], e);
                    }
                    Err(e) => {
                        pr_err!("cannot probe {}: {:?}; is it in this kernel?\n", H::SYMBOLS[0], e);
                    }
                    Ok(()) => {}
                }
                r
            }),
        })
    }

    /// Calls this probe missed since it was registered.
    pub(crate) fn missed(&self) -> u64 {
        // SAFETY: `fp` is our fprobe; `nmissed` is a plain counter the fprobe core updates, read
        // volatile since it may change under us.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.fp.get()).nmissed)) as u64 }
    }
}

#[pinned_drop]
impl PinnedDrop for FProbe {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the fprobe is registered, and this is the only place
        // that unregisters it. The call waits for an RCU grace period: no handler of it runs
        // after it returns.
        unsafe { bindings::unregister_fprobe(self.fp.get()) };
    }
}

/// The log of the `FProbe` that `fp` is part of.
///
/// # Safety
///
/// `fp` must be the `fp` field of a registered `FProbe`.
unsafe fn log_of<'a>(fp: *mut fprobe) -> &'a Log {
    // SAFETY: By the function's requirement `fp` is in an `FProbe` (`Opaque<T>` is laid out as
    // `T`), which holds a reference to its log for as long as it is registered, during which
    // handlers run.
    unsafe {
        let probe = kernel::container_of!(fp.cast::<Opaque<fprobe>>(), FProbe, fp);
        &*Arc::as_ptr(&(*probe).log)
    }
}

/// # Safety
///
/// Called by the fprobe core for a call of a function `H` probes, with `fp` registered by
/// `FProbe::register::<H>`, `fregs` valid for the call and `data` null (entry-only probes) or
/// `entry_data_size` bytes of per-call data, 8-aligned.
unsafe extern "C" fn entry_trampoline<H: Hook>(
    fp: *mut fprobe,
    _ip: c_ulong,
    _ret_ip: c_ulong,
    fregs: *mut ftrace_regs,
    data: *mut c_void,
) -> c_int {
    // SAFETY: As the function requires.
    let log = unsafe { log_of(fp) };
    // INVARIANT: `fregs` is valid for this call.
    let regs = Regs {
        fregs,
        _call: PhantomData,
    };
    let mut local = H::Data::default();
    let d = if H::HAS_EXIT && !data.is_null() {
        // SAFETY: With an exit handler, `data` is this call's own `size_of::<H::Data>()` bytes,
        // aligned for `H::Data` (at most 8), used by no one else until the exit handler.
        unsafe {
            let d = data.cast::<H::Data>();
            d.write(H::Data::default());
            &mut *d
        }
    } else {
        &mut local
    };
    // Nonzero tells the fprobe core to skip the exit handler of this call.
    c_int::from(!H::entry(log, &regs, d))
}

/// # Safety
///
/// Called by the fprobe core at the return of a call whose entry handler returned 0, with the
/// same `fp` and `data` as that entry and `fregs` valid for the return.
unsafe extern "C" fn exit_trampoline<H: Hook>(
    fp: *mut fprobe,
    _ip: c_ulong,
    _ret_ip: c_ulong,
    fregs: *mut ftrace_regs,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: As the function requires.
    let log = unsafe { log_of(fp) };
    // INVARIANT: `fregs` is valid for this return.
    let regs = Regs {
        fregs,
        _call: PhantomData,
    };
    // SAFETY: `data` holds the `H::Data` the entry trampoline wrote for this call.
    let d = unsafe { &*data.cast::<H::Data>() };
    H::exit(log, &regs, d);
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
    // SAFETY: No preconditions; it sleeps, and callers are in process context.
    unsafe { bindings::tcplog_tracepoint_sync() };
}
