// SPDX-License-Identifier: GPL-2.0

//! Who is running: the identity recorded with events and configuration changes.

use kernel::bindings;

use crate::abi::COMM_LEN;

/// The current task's process id, thread id, real uid and command name.
///
/// Ids are global: pids as the initial pid namespace numbers them, uids as the initial user
/// namespace does, so records from containers stay comparable.
#[derive(Clone, Copy, Default)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) uid: u32,
    pub(crate) comm: [u8; COMM_LEN],
}

impl Identity {
    /// The identity of the task running now. Callable from any context; in softirq it names
    /// whatever task was interrupted, so hooks that run there must not use it for attribution.
    pub(crate) fn current() -> Self {
        // SAFETY: `get_current()` always returns the running task, valid while it runs.
        let task = unsafe { bindings::get_current() };
        // SAFETY: `task` is the running task. `task_uid()` reads its credentials under RCU and
        // `init_user_ns` is a static that lives forever.
        let uid = unsafe {
            bindings::from_kuid_munged(
                core::ptr::addr_of_mut!(bindings::init_user_ns),
                bindings::task_uid(task),
            )
        };
        // SAFETY: `task` is valid (see above); its `pid` and `tgid` never change.
        let (tid, pid) = unsafe { ((*task).pid, (*task).tgid) };
        // SAFETY: `comm` is an inline array of the live task. Another task may rewrite it (through
        // /proc/PID/comm) while we copy it; a volatile read, as the kernel's own `get_task_comm()`
        // does with a plain copy, tolerates that: at worst the name is torn, never out of bounds.
        let raw = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*task).comm)) };
        let mut comm = [0u8; COMM_LEN];
        for (d, s) in comm.iter_mut().zip(raw.iter()) {
            *d = *s as u8;
        }
        // The last byte is always NUL, whatever a torn copy produced.
        comm[COMM_LEN - 1] = 0;
        Identity {
            pid: pid as u32,
            tid: tid as u32,
            uid,
            comm,
        }
    }
}
