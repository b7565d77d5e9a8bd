// SPDX-License-Identifier: GPL-2.0

//! Hooks on TCP's own life: state changes, resets and the end of a socket, from the tracepoints
//! `sock:inet_sock_set_state`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset` and
//! `tcp:tcp_destroy_sock` (not exported to modules: found by name).
//!
//! A connection is tracked from its connect (SYN sent) or the end of its handshake; at CLOSE its
//! counters are snapshotted, and the summary is written when the socket is destroyed, after any
//! reset the close itself sends. Connections not tracked (older than tracking, or the table was
//! full) still get a summary at CLOSE, flagged partial. These hooks also report what happens to
//! a connection without a system call: its disconnect, and the outcome of a non-blocking connect.

use core::ffi::c_void;

use kernel::{ffi::c_int, prelude::*};

use crate::abi::{self, op};
use crate::bindings::{self, sock};
use crate::clock::{self, Stamp};
use crate::conns::{Closed, Conn};
use crate::events::{self, Who};
use crate::flows::FlowKey;
use crate::identity::Identity;
use crate::limits::LimitRef;
use crate::log::Log;
use crate::probes::TracepointProbe;
use crate::sock::{InetSock, Kind, SockInfo, TcpSock};
use crate::summary;

// TCP states, as `srctree/include/net/tcp_states.h` numbers them.
const TCP_ESTABLISHED: c_int = bindings::TCP_ESTABLISHED as c_int;
const TCP_SYN_SENT: c_int = bindings::TCP_SYN_SENT as c_int;
const TCP_SYN_RECV: c_int = bindings::TCP_SYN_RECV as c_int;
const TCP_FIN_WAIT1: c_int = bindings::TCP_FIN_WAIT1 as c_int;
const TCP_FIN_WAIT2: c_int = bindings::TCP_FIN_WAIT2 as c_int;
const TCP_CLOSE: c_int = bindings::TCP_CLOSE as c_int;
const TCP_CLOSE_WAIT: c_int = bindings::TCP_CLOSE_WAIT as c_int;
const TCP_LAST_ACK: c_int = bindings::TCP_LAST_ACK as c_int;

/// States in which a connection is synchronised: data may have flowed.
fn was_connected(state: c_int) -> bool {
    const SYNCED: u32 = (1 << bindings::TCP_ESTABLISHED)
        | (1 << bindings::TCP_FIN_WAIT1)
        | (1 << bindings::TCP_FIN_WAIT2)
        | (1 << bindings::TCP_CLOSE_WAIT)
        | (1 << bindings::TCP_LAST_ACK)
        | (1 << bindings::TCP_CLOSING);
    (0..32).contains(&state) && SYNCED & (1 << state) != 0
}

fn flow_key(i: &SockInfo) -> FlowKey {
    FlowKey::new(i.netns, i.family, i.laddr, i.lport, i.raddr, i.rport)
}

/// The log a tracepoint probe was registered with.
///
/// # Safety
///
/// `data` must be the `data` a probe of [`register_all`] was registered with.
unsafe fn log_of<'a>(data: *mut c_void) -> &'a Log {
    // SAFETY: `register_all` registers every probe with a `Log` that outlives the registration.
    unsafe { &*data.cast::<Log>() }
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`.
///
/// # Safety
///
/// Called by the tracepoint with the `data` it was registered with and a live socket that the
/// caller holds.
unsafe extern "C" fn on_set_state(data: *mut c_void, sk: *const sock, old: c_int, new: c_int) {
    // SAFETY: As the function requires.
    let log = unsafe { log_of(data) };
    // SAFETY: The tracepoint's socket is live and held for the call.
    let Some(inet) = unsafe { crate::sock::Sock::from_ptr(sk) }.and_then(|s| s.inet()) else {
        return;
    };
    if !log.enabled() {
        return;
    }
    match inet.kind() {
        Kind::Tcp => {
            if let Some(tcp) = inet.tcp() {
                set_state(log, tcp, old, new);
            }
        }
        Kind::Mptcp => set_state_mptcp(log, inet, old, new),
        _ => {}
    }
}

/// A non-blocking connect's outcome: established `latency_ns` after the call, on behalf of the
/// connection's owner.
fn async_connect_done(log: &Log, info: &SockInfo, owner: Option<Identity>, latency_ns: u64) {
    let who = Who::process_or(owner);
    events::emit_with_latency(
        log,
        op::TCP_CONNECT,
        info,
        0,
        abi::EVF_ASYNC,
        &who,
        latency_ns,
    );
}

/// An MPTCP connection's state change: tracking, events, and at CLOSE its summary, written by
/// the worker (MPTCP's counters can only be read where sleeping is allowed).
fn set_state_mptcp(log: &Log, inet: InetSock<'_>, old: c_int, new: c_int) {
    let key = inet.sock().addr();
    let user = !inet.sock().is_kernel();
    if old == TCP_CLOSE && new == TCP_SYN_SENT {
        log.conns.track(key, Conn::connecting(true));
    } else if new == TCP_ESTABLISHED && old != TCP_ESTABLISHED {
        let now = Stamp::now();
        let done = log.conns.update(key, |c| {
            c.established = true;
            c.established_boot = now.boot;
            (core::mem::take(&mut c.async_connect), c.owner, c.start_boot)
        });
        match done {
            Some((true, owner, start)) if user && log.wants(op::TCP_CONNECT) => {
                let info = inet.info();
                async_connect_done(log, &info, owner, now.boot.saturating_sub(start));
            }
            Some(_) => {}
            None => log.conns.track(
                key,
                Conn {
                    start_ns: now.real,
                    start_boot: now.boot,
                    open: abi::open::PASSIVE,
                    established: true,
                    established_boot: now.boot,
                    mptcp: true,
                    ..Conn::default()
                },
            ),
        }
    }
    if old == TCP_ESTABLISHED
        && (new == TCP_FIN_WAIT1 || new == TCP_CLOSE_WAIT || new == TCP_CLOSE)
        && user
        && log.wants(op::TCP_DISCONNECT)
    {
        let owner = log.conns.update(key, |c| c.owner).flatten();
        let info = inet.info();
        events::emit(
            log,
            op::TCP_DISCONNECT,
            &info,
            0,
            0,
            &Who::process_or(owner),
        );
    }
    if new != TCP_CLOSE {
        return;
    }
    let closed = Closed {
        end_boot: clock::boot_ns(),
        info: inet.info(),
        stats: Default::default(),
        err: inet.sock().error(),
        fin_wait2: false,
    };
    let summary_due = log.conns.update_or_remove(key, |c| match c {
        Some(c) if c.established && c.closed.is_none() => {
            c.closed = Some(closed);
            (true, false)
        }
        Some(c) if c.established => (false, false),
        Some(_) => (false, true),
        None => (false, false),
    });
    if summary_due {
        if log.mptcp.queue_closed(inet.sock()) {
            log.worker.kick();
        } else {
            log.conns.remove(key);
        }
    }
}

/// Every TCP connection, the kernel's own too: a summary is about the connection.
fn set_state(log: &Log, tcp: TcpSock<'_>, old: c_int, new: c_int) {
    let key = tcp.sock().addr();
    match (old, new) {
        (TCP_CLOSE, TCP_SYN_SENT) => {
            // A socket may connect again after a closed connection: report that one first.
            finish(log, key, None);
            log.conns.track(key, Conn::connecting(false));
        }
        (TCP_SYN_SENT, TCP_ESTABLISHED) => {
            // Sequence space counts from the initial sequence number, so the SYN is its first
            // number (the data a Fast Open SYN carries comes after it): unless no SYN went out
            // (a repaired socket connects without one).
            let base = u64::from(tcp.stats().segs_out > 0);
            let info = tcp.inet().info();
            log.flows.confirm(&flow_key(&info), key);
            let now = clock::boot_ns();
            let done = log.conns.update(key, |c| {
                c.established = true;
                c.established_boot = now;
                c.sent_base = Some(base);
                (core::mem::take(&mut c.async_connect), c.owner, c.start_boot)
            });
            if let Some((true, owner, start)) = done {
                if log.wants(op::TCP_CONNECT) && !tcp.sock().is_kernel() {
                    async_connect_done(log, &info, owner, now.saturating_sub(start));
                }
            }
        }
        (TCP_SYN_RECV, TCP_ESTABLISHED) => {
            let at = Stamp::now();
            let info = tcp.inet().info();
            log.flows.confirm(&flow_key(&info), key);
            log.conns.track(
                key,
                Conn {
                    start_ns: at.real,
                    start_boot: at.boot,
                    open: abi::open::PASSIVE,
                    established: true,
                    established_boot: at.boot,
                    // An accepted socket's sequence space starts after its SYN-ACK.
                    sent_base: Some(0),
                    ..Conn::default()
                },
            );
            count_limit(log, key, &info);
        }
        _ => {}
    }
    let disconnect = old == TCP_ESTABLISHED
        && (new == TCP_FIN_WAIT1 || new == TCP_CLOSE_WAIT || new == TCP_CLOSE)
        && log.wants(op::TCP_DISCONNECT)
        && !tcp.sock().is_kernel();
    let fin_queued = new == TCP_FIN_WAIT1 || new == TCP_LAST_ACK;
    if disconnect || fin_queued {
        // One visit to the table for both.
        let owner = log
            .conns
            .update(key, |c| {
                c.fin_queued |= fin_queued;
                c.owner
            })
            .flatten();
        if disconnect {
            let info = tcp.inet().info();
            events::emit(
                log,
                op::TCP_DISCONNECT,
                &info,
                0,
                0,
                &Who::process_or(owner),
            );
        }
    }
    if new == TCP_CLOSE {
        at_close(log, tcp, old);
    }
}

/// What to do after a connection reached CLOSE, decided under the table's lock.
enum AtClose {
    Nothing,
    /// Snapshotted; the summary follows at destroy.
    Deferred,
    /// A connection attempt ended: a non-blocking connect's failure to report, a limit to
    /// uncount.
    Attempt {
        connect_failed: bool,
        owner: Option<Identity>,
        limit: Option<LimitRef>,
        start_boot: u64,
    },
    /// Not tracked: write a partial summary now.
    Partial,
}

fn at_close(log: &Log, tcp: TcpSock<'_>, old: c_int) {
    let key = tcp.sock().addr();
    let stats = tcp.stats();
    let closed = Closed {
        end_boot: clock::boot_ns(),
        info: tcp.inet().info(),
        stats,
        err: tcp.sock().error(),
        // A socket leaves FIN_WAIT2 for CLOSE either when the peer's FIN came (it goes on as a
        // TIME_WAIT remnant after acknowledging it) or retired before it came: only the latter
        // leaves the peer's FIN and the last ACK out.
        fin_wait2: old == TCP_FIN_WAIT2 && !stats.fin_received,
    };
    let what = log.conns.update_or_remove(key, |c| match c {
        Some(c) if c.established => {
            c.closed = Some(closed);
            (AtClose::Deferred, false)
        }
        Some(c) => (
            AtClose::Attempt {
                connect_failed: c.async_connect,
                owner: c.owner,
                limit: c.limit,
                start_boot: c.start_boot,
            },
            true,
        ),
        None if was_connected(old) => (AtClose::Partial, false),
        None => (AtClose::Nothing, false),
    });
    let fk = flow_key(&closed.info);
    match what {
        AtClose::Deferred => log.flows.close(&fk, key),
        AtClose::Partial => {
            log.flows.close(&fk, key);
            let mut b = summary::build(None, &closed);
            b.parent_id = log.mptcp.take_parent(key).unwrap_or(0);
            summary::emit(log, b, key);
        }
        AtClose::Attempt {
            connect_failed,
            owner,
            limit,
            start_boot,
        } => {
            log.flows.forget_unconfirmed(&fk);
            if let Some(l) = limit {
                log.limits.disconnect(l);
            }
            // With no error, nothing failed: its owner closed it while it was in progress, and
            // the close event says so.
            if connect_failed && closed.err != 0 && !tcp.sock().is_kernel() {
                let err = closed.err;
                let who = Who::process_or(owner);
                let latency = closed.end_boot.saturating_sub(start_boot);
                events::emit_with_latency(
                    log,
                    op::TCP_CONNECT,
                    &closed.info,
                    err,
                    abi::EVF_ASYNC,
                    &who,
                    latency,
                );
            }
        }
        AtClose::Nothing => log.flows.forget_unconfirmed(&fk),
    }
}

/// Writes the summary of a tracked connection that has closed, and forgets it. `err` is the
/// socket's error now, if known: an abort (a repaired socket's close) sets it after CLOSE.
fn finish(log: &Log, key: usize, err: Option<i32>) {
    if let Some(c) = log.conns.take_closed(key) {
        end(log, key, c, err);
    }
}

/// Ends tracked connection `c` of socket `key`, taken out of the table: uncounts it from its
/// limit, and writes its summary if it has closed.
fn end(log: &Log, key: usize, c: Conn, err: Option<i32>) {
    if let Some(l) = c.limit {
        log.limits.disconnect(l);
    }
    if let Some(mut closed) = c.closed {
        if closed.err == 0 {
            closed.err = err.unwrap_or(0);
        }
        let mut b = summary::build(Some(&c), &closed);
        b.parent_id = log.mptcp.take_parent(key).unwrap_or(0);
        summary::emit(log, b, key);
    }
}

/// Counts an accepted connection against the rules' connection limits.
fn count_limit(log: &Log, key: usize, i: &SockInfo) {
    let noif = [0u8; 16];
    let meta = abi::PacketMeta {
        family: i.family,
        protocol: abi::IPPROTO_TCP,
        direction: abi::direction::IN,
        saddr: &i.raddr,
        daddr: &i.laddr,
        sport: i.rport,
        dport: i.lport,
        tcp_flags: abi::tcp_flag::SYN,
        ifname: &noif,
    };
    let Some(lim) = log.rules.limit_for(&meta) else {
        return;
    };
    let (r, over) = log.limits.connect(&lim, &meta, i.netns);
    if let Some(body) = over {
        log.emit(abi::rtype::LIMIT, &[abi::Pod::as_bytes(&body)]);
    }
    if let Some(r) = r {
        if log.conns.update(key, |c| c.limit = Some(r)).is_none() {
            // Not tracked (table full): nothing would uncount it.
            log.limits.disconnect(r);
        }
    }
}

/// `tcp:tcp_send_reset(sk, skb, reason)`: `sk` may be null, a listener or a timewait socket,
/// so it is only compared, never read.
///
/// # Safety
///
/// Called by the tracepoint with the `data` it was registered with.
unsafe extern "C" fn on_send_reset(
    data: *mut c_void,
    sk: *const sock,
    _skb: *const c_void,
    _reason: c_int,
) {
    // SAFETY: As the function requires.
    let log = unsafe { log_of(data) };
    log.conns.update(sk as usize, |c| c.rst_sent = true);
}

/// `tcp:tcp_receive_reset(sk)`.
///
/// # Safety
///
/// As for `on_send_reset`.
unsafe extern "C" fn on_receive_reset(data: *mut c_void, sk: *const sock) {
    // SAFETY: As the function requires.
    let log = unsafe { log_of(data) };
    log.conns.update(sk as usize, |c| c.rst_received = true);
}

/// `tcp:tcp_destroy_sock(sk)`: the last moment the socket exists.
///
/// # Safety
///
/// As for `on_send_reset`.
unsafe extern "C" fn on_destroy(data: *mut c_void, sk: *const sock) {
    // SAFETY: As the function requires.
    let log = unsafe { log_of(data) };
    let key = sk as usize;
    // SAFETY: The tracepoint's socket is live for the call.
    let err = unsafe { crate::sock::Sock::from_ptr(sk) }.map(|s| s.error());
    // Its summary, if one is due; a socket that never established is just forgotten.
    if let Some(c) = log.conns.remove(key) {
        end(log, key, c, err);
    }
    log.mptcp.take_parent(key);
}

/// Registers the probes on the four tracepoints into `out`, writing to `log`. On failure, those
/// registered already stay in `out`, to be unregistered by its owner.
///
/// # Safety
///
/// `log` must stay alive until every probe in `out` is dropped and [`sync_tracepoints`] has
/// returned after that.
///
/// [`sync_tracepoints`]: crate::probes::sync_tracepoints
pub(crate) unsafe fn register_all(log: &Log, out: &mut KVec<TracepointProbe>) -> Result {
    let data = core::ptr::from_ref(log).cast_mut().cast::<c_void>();
    for (name, probe) in [
        (c"inet_sock_set_state", on_set_state as *mut c_void),
        (c"tcp_send_reset", on_send_reset as *mut c_void),
        (c"tcp_receive_reset", on_receive_reset as *mut c_void),
        (c"tcp_destroy_sock", on_destroy as *mut c_void),
    ] {
        // SAFETY: Each probe is a function with its tracepoint's signature (`data` first); `data`
        // is `log`, which by the function's requirement outlives the registration.
        let tp = unsafe { TracepointProbe::register(name, probe, data)? };
        out.push(tp, GFP_KERNEL)?;
    }
    Ok(())
}
