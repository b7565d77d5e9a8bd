// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel releases tcplog builds for, in one place.
//!
//! Kbuild sets `tcplog_kernel_ge_7_3` on 7.3 and later. The rest of the module uses the names
//! here and does not look at the kernel's version. Before 7.3 the `kernel` crate has no
//! interrupt-disabling spinlock, no `Task::tgid`, no `rcu::synchronize_rcu`, no
//! `module::this_module`, and module parameter values are read by reference; `bool` parameters
//! are missing too, which `tcplog_mod.rs` handles where it declares the module.

use kernel::bindings;

#[cfg(tcplog_kernel_ge_7_3)]
pub(crate) use kernel::{new_spinlock_irq, sync::SpinLockIrq};

#[cfg(not(tcplog_kernel_ge_7_3))]
pub(crate) use irq_lock::{new_spinlock_irq, SpinLockIrq};

/// A spinlock that disables local interrupts while held, saving and restoring their state, as
/// 7.3's `SpinLockIrq` does: the ring and the tables are taken from process context, softirqs
/// and whatever context a probe fires in.
#[cfg(not(tcplog_kernel_ge_7_3))]
mod irq_lock {
    use kernel::{bindings, ffi::c_ulong, sync::lock::Backend};

    /// The backend of [`SpinLockIrq`]: `spin_lock_irqsave` and `spin_unlock_irqrestore`.
    pub(crate) struct IrqSaveBackend;

    /// A spinlock taken with local interrupts disabled.
    pub(crate) type SpinLockIrq<T> = kernel::sync::lock::Lock<T, IrqSaveBackend>;

    /// Creates a [`SpinLockIrq`] initialiser with the given name and a new lock class.
    macro_rules! new_spinlock_irq {
        ($inner:expr $(, $name:literal)? $(,)?) => {
            $crate::compat::SpinLockIrq::new(
                $inner,
                ::kernel::optional_name!($($name)?),
                ::kernel::static_lock_class!(),
            )
        };
    }
    pub(crate) use new_spinlock_irq;

    // SAFETY: `lock` and `try_lock` leave the spinlock held with local interrupts disabled and
    // return the interrupt state that `unlock` restores as it releases the lock, so the data is
    // accessed by one holder at a time, in any context.
    unsafe impl Backend for IrqSaveBackend {
        type State = bindings::spinlock_t;
        type GuardState = c_ulong;

        unsafe fn init(
            ptr: *mut Self::State,
            name: *const kernel::ffi::c_char,
            key: *mut bindings::lock_class_key,
        ) {
            // SAFETY: The caller passes a `ptr` valid for writes, and `name` and `key` valid for
            // reads for as long as the lock lives.
            unsafe { bindings::__spin_lock_init(ptr, name, key) }
        }

        unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
            // SAFETY: The caller passes an initialised lock; the module's bindings name the same
            // C type.
            unsafe { crate::bindings::tcplog_spin_lock_irqsave(ptr.cast()) }
        }

        unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
            let mut flags: c_ulong = 0;
            // SAFETY: As in `lock`; `flags` is a valid place for the saved interrupt state.
            unsafe { crate::bindings::tcplog_spin_trylock_irqsave(ptr.cast(), &mut flags) }
                .then_some(flags)
        }

        unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
            // SAFETY: The caller holds the lock, taken by `lock` or `try_lock` that returned
            // `flags`.
            unsafe { crate::bindings::tcplog_spin_unlock_irqrestore(ptr.cast(), *flags) }
        }

        unsafe fn assert_is_held(ptr: *mut Self::State) {
            // SAFETY: The caller passes an initialised lock.
            unsafe { bindings::spin_assert_is_held(ptr) }
        }
    }
}

/// The running task's process (thread group) ID, in the initial PID namespace.
pub(crate) fn tgid(task: &kernel::task::CurrentTask) -> i32 {
    #[cfg(tcplog_kernel_ge_7_3)]
    let tgid = task.tgid();
    // The thread group's leader's PID is the group's ID.
    #[cfg(not(tcplog_kernel_ge_7_3))]
    let tgid = task.group_leader().pid();
    tgid
}

/// Waits for a full RCU grace period. Must be called in process context, not under a lock.
pub(crate) fn synchronize_rcu() {
    #[cfg(tcplog_kernel_ge_7_3)]
    kernel::sync::rcu::synchronize_rcu();
    // SAFETY: Callers are in process context, as `synchronize_rcu()` requires.
    #[cfg(not(tcplog_kernel_ge_7_3))]
    unsafe {
        bindings::synchronize_rcu()
    };
}

/// `THIS_MODULE`: the module's own `struct module`.
pub(crate) const fn this_module() -> *mut bindings::module {
    #[cfg(tcplog_kernel_ge_7_3)]
    let m = kernel::module::this_module::<crate::LocalModule>().as_ptr();
    #[cfg(not(tcplog_kernel_ge_7_3))]
    let m = crate::THIS_MODULE.as_ptr();
    m
}

/// The module parameters' values at load.
pub(crate) struct Params {
    /// `ring_kib`: the record ring's size in KiB.
    pub(crate) ring_kib: u32,
    /// `enabled`: whether logging starts enabled.
    pub(crate) enabled: bool,
    /// `max_conns`: how many TCP connections are tracked at once.
    pub(crate) max_conns: u32,
}

impl Params {
    /// Reads the parameters' values.
    pub(crate) fn read() -> Self {
        use crate::module_parameters as p;
        #[cfg(tcplog_kernel_ge_7_3)]
        let params = Params {
            ring_kib: p::ring_kib.value(),
            enabled: p::enabled.value(),
            max_conns: p::max_conns.value(),
        };
        // `enabled` is a 0-or-1 integer parameter there.
        #[cfg(not(tcplog_kernel_ge_7_3))]
        let params = Params {
            ring_kib: *p::ring_kib.value(),
            enabled: *p::enabled.value() != 0,
            max_conns: *p::max_conns.value(),
        };
        params
    }
}
