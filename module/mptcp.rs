// SPDX-License-Identifier: GPL-2.0

//! MPTCP connections: which MPTCP connection each TCP subflow carries, and the summaries of the
//! MPTCP connections themselves.
//!
//! An MPTCP socket's events come from the same socket operations as TCP's (flagged MPTCP); its
//! TCP subflows are the kernel's own TCP sockets, summarised like any TCP connection, with the
//! `sock_id` of their MPTCP connection as `parent_id`. The link is learnt where MPTCP makes a
//! subflow for a connection: `mptcp_subflow_create_socket` (connecting side) and
//! `mptcp_sk_clone_init` (accepting side).
//!
//! An MPTCP connection's data bytes each way are MPTCP's own counters, which only
//! `mptcp_diag_fill_info` reads, and it may sleep: so when an MPTCP connection closes, its
//! socket is held and handed to the worker, which writes the summary from process context.
//! That function is looked up at load, so the module also loads on kernels without MPTCP.

use core::ffi::c_void;

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Acquire, ordering::Release, Atomic},
};

use crate::abi::{self, SummaryBody};
use crate::bindings::{self, mptcp_info, sock, socket};
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::keys::HashKeys;
use crate::log::Log;
use crate::probes::{Hook, Regs};
use crate::sock::Sock;
use crate::summary;
use crate::table::Table;

/// `mptcp_diag_fill_info(msk, info)`.
type FillInfo = unsafe extern "C" fn(*mut bindings::mptcp_sock, *mut mptcp_info);

/// Looks up `mptcp_diag_fill_info`, if this kernel has MPTCP.
fn find_fill_info() -> Option<FillInfo> {
    // SAFETY: `__symbol_get` looks up an exported symbol by a NUL-terminated name; for a symbol
    // of the kernel proper it takes no reference that would need putting back.
    let p = unsafe { bindings::__symbol_get(c"mptcp_diag_fill_info".as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: The kernel exports `mptcp_diag_fill_info` with exactly this signature
    // (srctree/include/net/mptcp.h), and it stays for as long as the kernel runs.
    Some(unsafe { core::mem::transmute::<*mut c_void, FillInfo>(p) })
}

/// MPTCP's part of the log.
#[pin_data]
pub(crate) struct Mptcp {
    fill_info: Option<FillInfo>,
    /// The MPTCP connection (its `sock_id`) of each subflow socket.
    #[pin]
    parents: SpinLockIrq<Table<usize, u64>>,
    /// How many links `parents` holds, stored under its lock: every TCP socket's end asks for
    /// its link, and without MPTCP in use the answer is known without the lock.
    linked: Atomic<usize>,
    /// Closed MPTCP connections (sockets held) whose summaries the worker writes.
    #[pin]
    closed: SpinLockIrq<KVVec<usize>>,
    keys: HashKeys,
}

impl Mptcp {
    pub(crate) fn new(max: usize, keys: HashKeys) -> Result<impl PinInit<Self, Error>> {
        let parents = Table::new(max)?;
        let closed = KVVec::with_capacity(max, GFP_KERNEL)?;
        Ok(try_pin_init!(Mptcp {
            fill_info: find_fill_info(),
            parents <- new_spinlock_irq!(parents, "tcplog_mptcp_parents"),
            linked: Atomic::new(0),
            closed <- new_spinlock_irq!(closed, "tcplog_mptcp_closed"),
            keys,
        }))
    }

    /// Subflow socket `subflow` belongs to the MPTCP connection whose socket id is `id`.
    fn link(&self, subflow: usize, id: u64) {
        let h = self.keys.hash_word(subflow as u64);
        // A full table leaves the subflow without a parent: its summary says 0.
        let mut t = self.parents.lock();
        let _ = t.insert(subflow, h, id);
        self.linked.store(t.len(), Release);
    }

    /// The MPTCP connection of subflow socket `subflow`, forgotten (at its end).
    pub(crate) fn take_parent(&self, subflow: usize) -> Option<u64> {
        // A link is stored (Release) while its subflow is being made, before the subflow's end
        // can come: the end's load sees a count that includes it.
        if self.linked.load(Acquire) == 0 {
            return None;
        }
        let h = self.keys.hash_word(subflow as u64);
        let mut t = self.parents.lock();
        let parent = t.remove(&subflow, h);
        self.linked.store(t.len(), Release);
        parent
    }

    /// An MPTCP connection closed: holds its socket for the worker, which writes its summary.
    /// Returns false if it could not be queued.
    pub(crate) fn queue_closed(&self, msk: Sock<'_>) -> bool {
        if self.fill_info.is_none() {
            return false;
        }
        let mut q = self.closed.lock();
        // Never full: each queued connection is a tracked one, and the queue has room for as
        // many as the connection table.
        if q.len() == q.capacity() {
            return false;
        }
        // SAFETY: `msk` is a live socket (the view's invariant); the reference taken keeps it
        // so until the worker puts it back.
        unsafe { bindings::tcplog_sock_hold(msk.addr() as *mut sock) };
        // Capacity was checked: this does not allocate.
        let _ = q.push(msk.addr(), GFP_ATOMIC);
        true
    }

    /// Takes the queued MPTCP connections: each a socket with a reference the caller must put.
    fn take_closed(&self, out: &mut [usize]) -> usize {
        let mut q = self.closed.lock();
        let mut n = 0;
        while n < out.len() {
            let Some(sk) = q.pop() else { break };
            out[n] = sk;
            n += 1;
        }
        n
    }

    /// Writes the summaries of closed MPTCP connections (from the worker, in process context),
    /// or only lets go of them if logging is disabled.
    pub(crate) fn write_summaries(&self, log: &Log) {
        let mut batch = [0usize; 32];
        loop {
            let n = self.take_closed(&mut batch);
            if n == 0 {
                return;
            }
            for &sk in &batch[..n] {
                self.write_one(log, sk);
                // SAFETY: `sk` was held by `queue_closed`; this gives that reference back.
                unsafe { bindings::tcplog_sock_put(sk as *mut sock) };
            }
        }
    }

    fn write_one(&self, log: &Log, sk: usize) {
        let Some(conn) = log.conns.remove(sk) else {
            return;
        };
        let (Some(closed), Some(fill)) = (conn.closed, self.fill_info) else {
            return;
        };
        // SAFETY: All-zero is a valid `mptcp_info` (integers only), which the call fills.
        let mut info: mptcp_info = unsafe { core::mem::zeroed() };
        // SAFETY: `sk` is a held MPTCP socket (its kind was checked when it was queued), so an
        // `mptcp_sock`; this runs in process context with no lock held, as the function (which
        // takes the socket's lock) requires; `info` is writable.
        unsafe { fill(sk as *mut bindings::mptcp_sock, &mut info) };
        let mut b: SummaryBody = summary::build(Some(&conn), &closed);
        b.bytes_sent = info.mptcpi_bytes_sent;
        b.bytes_received = info.mptcpi_bytes_received;
        b.retrans = info.mptcpi_retransmits;
        b.flags |= abi::SUMF_MPTCP;
        log.summary(&b);
    }

    /// Lets go of every queued connection without a summary (logging was disabled).
    pub(crate) fn drop_closed(&self) {
        let mut batch = [0usize; 32];
        loop {
            let n = self.take_closed(&mut batch);
            if n == 0 {
                return;
            }
            for &sk in &batch[..n] {
                // SAFETY: As in `write_summaries`.
                unsafe { bindings::tcplog_sock_put(sk as *mut sock) };
            }
        }
    }

    /// Forgets the subflow links (logging was disabled).
    pub(crate) fn clear(&self) {
        let mut t = self.parents.lock();
        t.clear();
        self.linked.store(0, Release);
    }
}

/// `mptcp_subflow_create_socket(sk, family, new_sock)`: the connecting side makes a subflow of
/// MPTCP connection `sk`; on success `*new_sock` is its socket.
pub(crate) struct SubflowCreate;

/// Per-call data: the MPTCP socket and where the new socket is written.
#[derive(Clone, Copy, Default)]
pub(crate) struct Create {
    msk: usize,
    new_sock: usize,
}

impl Hook for SubflowCreate {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"mptcp_subflow_create_socket"];
    const HAS_EXIT: bool = true;
    type Data = Create;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Create) -> bool {
        call.msk = regs.arg(0);
        call.new_sock = regs.arg(2);
        log.enabled() && call.msk != 0 && call.new_sock != 0
    }

    fn exit(log: &Log, regs: &Regs<'_>, call: &Create) {
        if regs.ret_int() != 0 {
            return;
        }
        // SAFETY: On success the third argument, a `struct socket **` of the caller, holds the
        // new subflow's socket, which the MPTCP socket (held by the caller) owns.
        let ssk = unsafe {
            let sock = core::ptr::read(call.new_sock as *const *const socket);
            Sock::of_socket(sock)
        };
        // SAFETY: The caller holds the MPTCP socket for the call, which has not returned yet.
        let msk = unsafe { Sock::from_ptr(call.msk as *const sock) };
        if let (Some(ssk), Some(msk)) = (ssk, msk) {
            log.mptcp.link(ssk.addr(), msk.cookie());
        }
    }
}

/// `mptcp_sk_clone_init(sk, mp_opt, ssk, req)`: the accepting side makes the MPTCP connection
/// that subflow `ssk` carries; it returns the new MPTCP socket.
pub(crate) struct CloneInit;

impl Hook for CloneInit {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"mptcp_sk_clone_init"];
    const HAS_EXIT: bool = true;
    /// The subflow socket.
    type Data = usize;

    fn entry(log: &Log, regs: &Regs<'_>, ssk: &mut usize) -> bool {
        *ssk = regs.arg(2);
        log.enabled() && *ssk != 0
    }

    fn exit(log: &Log, regs: &Regs<'_>, ssk: &usize) {
        // SAFETY: The function returns the new MPTCP socket (or null), which its caller holds a
        // reference to.
        let msk = unsafe { Sock::from_ptr(regs.ret() as *const sock) };
        if let Some(msk) = msk {
            log.mptcp.link(*ssk, msk.cookie());
        }
    }
}
