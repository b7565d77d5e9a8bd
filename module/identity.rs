// SPDX-License-Identifier: GPL-2.0

//! Who is running: the identity recorded with events and configuration changes.

use kernel::{bindings, current};

use crate::abi::COMM_LEN;

/// A process's id, thread id, parent's id, real uid, cgroup and command name.
///
/// Ids are global: pids as the initial pid namespace numbers them, uids as the initial user
/// namespace does, so records from containers stay comparable.
#[derive(Clone, Copy, Default)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) ppid: u32,
    pub(crate) uid: u32,
    /// The cgroup (v2) id: the inode number of its directory in the cgroup filesystem.
    pub(crate) cgroup_id: u64,
    pub(crate) comm: [u8; COMM_LEN],
}

/// Whether a process is running on its own behalf now, and so may be named by what happens:
/// not in an interrupt, not in a section with bottom halves disabled (threaded NAPI and busy
/// polling process other connections' packets there, in task context), not a kernel thread.
pub(crate) fn in_process() -> bool {
    // SAFETY: Reads the preempt count and the current task's flags; callable from any context.
    unsafe { crate::bindings::tcplog_in_process() }
}

impl Identity {
    /// The task running now. Callable from any context; callers that may run on behalf of
    /// someone else check [`in_process`] first.
    pub(crate) fn current() -> Self {
        let task = current!();
        // SAFETY: `init_user_ns` is a static that lives forever; `Kuid` wraps a valid kuid.
        let uid = unsafe {
            bindings::from_kuid_munged(
                core::ptr::addr_of_mut!(bindings::init_user_ns),
                task.uid().into_raw(),
            )
        };
        // SAFETY: `comm` is an inline array of the running task, which outlives this call.
        // Another task may rewrite it (through /proc/PID/comm) while we copy it; a volatile read
        // tolerates that as the kernel's own `get_task_comm()` does with a plain copy: at worst
        // the name is torn, never out of bounds.
        let raw = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*task.as_ptr()).comm)) };
        let mut comm = [0u8; COMM_LEN];
        for (d, s) in comm.iter_mut().zip(raw.iter()) {
            *d = *s;
        }
        // The last byte is always NUL, whatever a torn copy produced.
        comm[COMM_LEN - 1] = 0;
        // SAFETY: Both read the running task (its parent and cgroup under RCU, which the
        // helpers take); callable from any context.
        let (ppid, cgroup_id) = unsafe {
            (
                crate::bindings::tcplog_current_ppid(),
                crate::bindings::tcplog_current_cgroup_id(),
            )
        };
        Identity {
            pid: crate::compat::tgid(task) as u32,
            tid: task.pid() as u32,
            ppid: ppid as u32,
            uid,
            cgroup_id,
            comm,
        }
    }
}
