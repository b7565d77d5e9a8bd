// SPDX-License-Identifier: GPL-2.0

//! Socket events (AIX inetsock's): who an event is about, and writing one.

use crate::abi::{self, EventBody};
use crate::identity::{self, Identity};
use crate::log::Log;
use crate::sock::SockInfo;

/// Who an event names, and the `EVF_*` flags that say how that was decided.
#[derive(Clone, Copy)]
pub(crate) struct Who {
    pub(crate) id: Identity,
    pub(crate) flags: u16,
}

impl Who {
    /// The process running now, if it runs on its own behalf; else nobody.
    pub(crate) fn process() -> Self {
        Who::process_or(None)
    }

    /// The process running now if it runs on its own behalf, else `owner` (flagged as such),
    /// else nobody.
    pub(crate) fn process_or(owner: Option<Identity>) -> Self {
        if identity::in_process() {
            Who {
                id: Identity::current(),
                flags: 0,
            }
        } else if let Some(id) = owner {
            Who {
                id,
                flags: abi::EVF_OWNER,
            }
        } else {
            Who {
                id: Identity::default(),
                flags: abi::EVF_NO_PROCESS,
            }
        }
    }

    /// The process, if one is known.
    pub(crate) fn identity(&self) -> Option<Identity> {
        (self.flags & abi::EVF_NO_PROCESS == 0).then_some(self.id)
    }
}

/// The errno of a kernel function's `int` result: 0 for success.
pub(crate) fn errno_of(ret: i32) -> i32 {
    if ret < 0 {
        ret.saturating_neg()
    } else {
        0
    }
}

/// Writes an event about socket `info`, if the mask and filter let it through.
pub(crate) fn emit(log: &Log, op: u16, info: &SockInfo, result: i32, flags: u16, who: &Who) {
    emit_with_latency(log, op, info, result, flags, who, 0);
}

/// As [`emit`], for a connect's outcome `latency_ns` after the call.
pub(crate) fn emit_with_latency(
    log: &Log,
    op: u16,
    info: &SockInfo,
    result: i32,
    flags: u16,
    who: &Who,
    latency_ns: u64,
) {
    let mptcp = if info.mptcp { abi::EVF_MPTCP } else { 0 };
    let e = EventBody {
        sock_id: info.sock_id,
        netns: info.netns,
        pid: who.id.pid,
        tid: who.id.tid,
        uid: who.id.uid,
        result,
        op,
        family: info.family,
        protocol: info.protocol,
        sock_type: info.sock_type,
        flags: flags | who.flags | mptcp,
        lport: info.lport,
        rport: info.rport,
        laddr: info.laddr,
        raddr: info.raddr,
        comm: who.id.comm,
        ppid: who.id.ppid,
        _pad: 0,
        cgroup_id: who.id.cgroup_id,
        latency_ns,
    };
    log.event(&e);
}
