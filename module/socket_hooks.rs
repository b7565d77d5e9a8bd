// SPDX-License-Identifier: GPL-2.0

//! Socket-operation hooks: TCP and UDP lifecycle events, and the connection summaries.
//!
//! No tracepoint marks socket create, bind, listen, accept, connect or close, so kretprobes sit
//! on the inet socket operations that every IPv4 and IPv6 TCP and UDP socket goes through (and
//! on the LSM hook that follows a successful create). Their handlers run in the calling process,
//! which is therefore the one the event names: an accepted connection is attributed to the
//! process that called accept, never to the softirq that finished the handshake. TCP state
//! changes, resets and socket destruction come from tracepoints (`sock:inet_sock_set_state`,
//! `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`, `tcp:tcp_destroy_sock`), found by name since
//! they are not exported to modules.
//!
//! A connection is tracked from its connect (SYN sent) or the end of its handshake; at CLOSE its
//! counters are snapshotted, and the summary is written when the socket is destroyed, after any
//! reset the close itself sends. Connections not tracked (older than tracking, or the table was
//! full) still get a summary at CLOSE, flagged partial.

use core::ffi::c_void;
use core::mem::size_of;

use kernel::{
    ffi::c_int,
    prelude::*,
    sync::{
        atomic::{ordering::Acquire, ordering::Release, Atomic},
        Arc,
    },
};

use crate::abi::{self, close, op, EventBody, SummaryBody};
use crate::bindings::{self, kretprobe_instance, pt_regs, sock, socket};
use crate::conns::{Closed, Conn};
use crate::flows::FlowKey;
use crate::identity::Identity;
use crate::log::Log;
use crate::probes::{self, arg, data, ret, Handler, RetProbe, TracepointProbe};
use crate::sockinfo::{self, SockInfo};

/// The log the handlers write to: set before the first probe is registered, cleared after the
/// last is gone (see `SocketHooks`).
static LOG: Atomic<*const Log> = Atomic::new(core::ptr::null());

/// The log, if the hooks are installed.
fn log() -> Option<&'static Log> {
    let p = LOG.load(Acquire);
    // SAFETY: `LOG` is non-null only while `SocketHooks` exists: it is set from the `Arc<Log>`
    // the hooks hold before any probe is registered, and cleared after every probe has been
    // unregistered and every running handler has finished, before that `Arc` is dropped. So a
    // handler that sees it non-null may use it for as long as it runs.
    unsafe { p.as_ref() }
}

/// The log, if the hooks are installed and logging is enabled.
fn active() -> Option<&'static Log> {
    log().filter(|l| l.enabled())
}

/// A requested endpoint, from a `struct sockaddr` given to bind or connect.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Endpoint {
    family: u16,
    port: u16,
    addr: [u8; 16],
}

/// Per-call data of the kretprobes.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Call {
    sk: usize,
    newsock: usize,
    req: Endpoint,
    was_unbound: bool,
}

/// Reads the endpoint of a `struct sockaddr` of `len` bytes.
///
/// # Safety
///
/// `sa` must be null or point to `len` readable bytes.
unsafe fn endpoint(sa: *const u8, len: usize) -> Endpoint {
    let mut e = Endpoint::default();
    if sa.is_null() || len < 2 {
        return e;
    }
    // SAFETY: By the function's requirement the bytes up to `len` are readable, and every read
    // below is bounded by `len`. `sockaddr_in` and `sockaddr_in6` keep the port at offset 2 and
    // their addresses at 4 and 8.
    unsafe {
        e.family = core::ptr::read_unaligned(sa.cast::<u16>());
        if len >= 4 {
            e.port = u16::from_be(core::ptr::read_unaligned(sa.add(2).cast::<u16>()));
        }
        if e.family == abi::AF_INET && len >= 8 {
            core::ptr::copy_nonoverlapping(sa.add(4), e.addr.as_mut_ptr(), 4);
        } else if e.family == abi::AF_INET6 && len >= 24 {
            core::ptr::copy_nonoverlapping(sa.add(8), e.addr.as_mut_ptr(), 16);
        }
    }
    e
}

/// The `struct sock` of a `struct socket`, or null.
///
/// # Safety
///
/// `sock` must be null or point to a live `struct socket`.
unsafe fn sk_of(sock: *const socket) -> *mut sock {
    if sock.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: By the function's requirement `sock` is live.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*sock).sk)) }
}

/// The TCP or UDP variant of an operation for an inet socket, or `None` for anything else.
/// The kernel's own sockets (NFS's, say) are left out: events are about what processes do.
///
/// # Safety
///
/// `sk` must be null or point to a live `struct sock`.
unsafe fn op_for(sk: *const sock, tcp: u16, udp: u16) -> Option<u16> {
    // SAFETY: By the function's requirement `sk` is live when not null.
    if sk.is_null() || unsafe { sockinfo::is_kernel(sk) } {
        return None;
    }
    // SAFETY: By the function's requirement `sk` is live.
    let (family, protocol, _) = unsafe { sockinfo::family_protocol(sk) };
    if family != abi::AF_INET && family != abi::AF_INET6 {
        return None;
    }
    match protocol {
        abi::IPPROTO_TCP => Some(tcp),
        abi::IPPROTO_UDP => Some(udp),
        _ => None,
    }
}

/// Who an event is about, and the `EVF_*` flags that say how that was decided.
fn current_or_owner(owner: Option<Identity>) -> (Identity, u16) {
    // SAFETY: `tcplog_in_task()` only reads the preempt count.
    if unsafe { bindings::tcplog_in_task() } {
        (Identity::current(), 0)
    } else if let Some(o) = owner {
        (o, abi::EVF_OWNER)
    } else {
        (Identity::default(), abi::EVF_NO_PROCESS)
    }
}

/// The errno of a kernel function's `int` result: 0 for success.
fn errno_of(ret: i32) -> i32 {
    if ret < 0 {
        -ret
    } else {
        0
    }
}

/// Writes an event about socket `info`.
fn event(log: &Log, op: u16, info: &SockInfo, result: i32, flags: u16, who: (Identity, u16)) {
    let (id, who_flags) = who;
    let e = EventBody {
        sock_id: info.sock_id,
        netns: info.netns,
        pid: id.pid,
        tid: id.tid,
        uid: id.uid,
        result,
        op,
        family: info.family,
        protocol: info.protocol,
        sock_type: info.sock_type,
        flags: flags | who_flags,
        lport: info.lport,
        rport: info.rport,
        laddr: info.laddr,
        raddr: info.raddr,
        comm: id.comm,
    };
    log.event(&e);
}

fn now_boot() -> u64 {
    // SAFETY: No preconditions; callable from any context.
    unsafe { kernel::bindings::ktime_get_boot_fast_ns() }
}

fn now_real() -> u64 {
    // SAFETY: As above.
    unsafe { kernel::bindings::ktime_get_real_fast_ns() }
}

// Handlers. Each is `unsafe extern "C"`, called by the kprobes core with a valid instance and
// registers of a call of the probed function, whose arguments are described in a comment.

/// Returns the `Call` of a kretprobe instance.
///
/// # Safety
///
/// `ri` must be an instance of one of this file's kretprobes (registered with room for a `Call`).
unsafe fn call<'a>(ri: *mut kretprobe_instance) -> &'a mut Call {
    // SAFETY: By the function's requirement the data area holds room for a `Call`, and only the
    // running handler of this instance uses it.
    unsafe { &mut *data::<Call>(ri) }
}

/// `security_socket_post_create(sock, family, type, protocol, kern)`: a socket was made.
unsafe extern "C" fn create_entry(_ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: `regs` are the registers of this call, whose first argument is a live socket.
    unsafe {
        let sock = arg(regs, 0) as *const socket;
        if arg(regs, 4) != 0 {
            return 1; // The kernel's own sockets are not any process's activity.
        }
        let sk = sk_of(sock);
        let Some(op) = op_for(sk, op::TCP_CREATE, op::UDP_CREATE) else {
            return 1;
        };
        if log.wants(op) {
            event(log, op, &sockinfo::read(sk), 0, 0, (Identity::current(), 0));
        }
    }
    1
}

/// `inet_bind(sock, uaddr, addr_len)`, `inet6_bind(...)`: entry.
unsafe extern "C" fn bind_entry(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: The arguments are a live socket and a kernel copy of `addr_len` address bytes.
    unsafe {
        let sk = sk_of(arg(regs, 0) as *const socket);
        let Some(op) = op_for(sk, op::TCP_BIND, op::UDP_BIND) else {
            return 1;
        };
        if !log.wants(op) {
            return 1;
        }
        *call(ri) = Call {
            sk: sk as usize,
            req: endpoint(arg(regs, 1) as *const u8, arg(regs, 2)),
            ..Call::default()
        };
    }
    0
}

/// `inet_bind`, `inet6_bind`: return. A failed bind reports the endpoint that was asked for.
unsafe extern "C" fn bind_ret(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = log() else { return 0 };
    // SAFETY: The entry handler stored the socket, which the caller still holds.
    unsafe {
        let c = *call(ri);
        let sk = c.sk as *const sock;
        let result = errno_of(ret(regs));
        let Some(op) = op_for(sk, op::TCP_BIND, op::UDP_BIND) else {
            return 0;
        };
        let mut info = sockinfo::read(sk);
        if result != 0 {
            info.lport = c.req.port;
            info.laddr = c.req.addr;
        }
        event(log, op, &info, result, 0, (Identity::current(), 0));
    }
    0
}

/// Entry of calls whose return handler needs only the socket: `inet_listen(sock, backlog)`,
/// `inet_release(sock)`.
unsafe extern "C" fn listen_entry(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: The first argument is a live socket.
    unsafe {
        let sk = sk_of(arg(regs, 0) as *const socket);
        if op_for(sk, op::TCP_LISTEN, 0) != Some(op::TCP_LISTEN) || !log.wants(op::TCP_LISTEN) {
            return 1;
        }
        *call(ri) = Call {
            sk: sk as usize,
            ..Call::default()
        };
    }
    0
}

/// `inet_listen`: return.
unsafe extern "C" fn listen_ret(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = log() else { return 0 };
    // SAFETY: The entry handler stored the socket, which the caller still holds.
    unsafe {
        let sk = call(ri).sk as *const sock;
        let result = errno_of(ret(regs));
        event(
            log,
            op::TCP_LISTEN,
            &sockinfo::read(sk),
            result,
            0,
            (Identity::current(), 0),
        );
    }
    0
}

/// `inet_accept(sock, newsock, arg)`: entry.
unsafe extern "C" fn accept_entry(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    if active().is_none() {
        return 1;
    }
    // SAFETY: The second argument is the live socket that will receive the connection.
    unsafe {
        *call(ri) = Call {
            newsock: arg(regs, 1),
            ..Call::default()
        };
    }
    0
}

/// `inet_accept`: return. The accepting process becomes the connection's owner.
unsafe extern "C" fn accept_ret(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = log() else { return 0 };
    // SAFETY: `newsock` is the caller's socket; on success it holds the accepted, live sock.
    unsafe {
        if ret(regs) != 0 {
            return 0;
        }
        let sk = sk_of(call(ri).newsock as *const socket);
        if op_for(sk, op::TCP_ACCEPT, 0) != Some(op::TCP_ACCEPT) {
            return 0;
        }
        let who = Identity::current();
        log.update_conn(sk as usize, |c| c.owner = Some(who));
        event(log, op::TCP_ACCEPT, &sockinfo::read(sk), 0, 0, (who, 0));
    }
    0
}

/// `inet_stream_connect(sock, uaddr, addr_len, flags)` and `inet_dgram_connect(...)`: entry.
unsafe extern "C" fn connect_entry(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: The arguments are a live socket and a kernel copy of `addr_len` address bytes.
    unsafe {
        let sk = sk_of(arg(regs, 0) as *const socket);
        let Some(op) = op_for(sk, op::TCP_CONNECT, op::UDP_CONNECT) else {
            return 1;
        };
        if !log.wants(op) && !(op == op::UDP_CONNECT && log.wants(op::UDP_BIND)) {
            return 1;
        }
        *call(ri) = Call {
            sk: sk as usize,
            req: endpoint(arg(regs, 1) as *const u8, arg(regs, 2)),
            was_unbound: sockinfo::local_port(sk) == 0,
            ..Call::default()
        };
    }
    0
}

/// Connect: return. A UDP connect of an unbound socket binds it first: that is reported as an
/// implicit bind (inetsock's dynamic bind). A TCP connect that is still in progress is reported
/// again with its outcome.
unsafe extern "C" fn connect_ret(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = log() else { return 0 };
    // SAFETY: The entry handler stored the socket, which the caller still holds.
    unsafe {
        let c = *call(ri);
        let sk = c.sk as *const sock;
        let r = ret(regs);
        let Some(op) = op_for(sk, op::TCP_CONNECT, op::UDP_CONNECT) else {
            return 0;
        };
        let mut info = sockinfo::read(sk);
        let who = (Identity::current(), 0);
        if op == op::UDP_CONNECT && c.was_unbound && info.lport != 0 {
            event(log, op::UDP_BIND, &info, 0, abi::EVF_IMPLICIT, who);
        }
        let in_progress = r == -(kernel::bindings::EINPROGRESS as i32);
        // The outcome of a non-blocking connect is reported when the connection closes, if it
        // fails. On loopback it may have failed already, inside this very call: the tracked
        // entry is gone then, and the outcome is reported right after this event.
        let failed_already = in_progress
            && log.with_conns(|t| match t.get_mut(sk as usize) {
                Some(conn) => {
                    conn.async_connect = true;
                    false
                }
                None => c_int::from(sockinfo::state(sk)) == TCP_CLOSE,
            });
        if info.rport == 0 {
            // It failed before the socket took the destination.
            info.rport = c.req.port;
            info.raddr = c.req.addr;
        }
        event(log, op, &info, errno_of(r), 0, who);
        if failed_already {
            let err = match sockinfo::error(sk) {
                0 => kernel::bindings::ECONNREFUSED as i32,
                e => e,
            };
            event(log, op, &info, err, abi::EVF_ASYNC, who);
        }
    }
    0
}

/// `inet_release(sock)`: a process closes a socket (IPv6 sockets too: `inet6_release` calls it).
unsafe extern "C" fn release_entry(_ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: The argument is a live socket; its sock, if any, is still attached.
    unsafe {
        let sk = sk_of(arg(regs, 0) as *const socket);
        let Some(op) = op_for(sk, op::TCP_CLOSE, op::UDP_CLOSE) else {
            return 1;
        };
        if log.wants(op) {
            event(log, op, &sockinfo::read(sk), 0, 0, (Identity::current(), 0));
        }
    }
    1
}

/// `inet_send_prepare(sk)`: before every send; binds an unbound UDP socket. Only such sockets
/// get a return handler, so the cost on other sends is the entry check alone.
unsafe extern "C" fn send_entry(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = active() else { return 1 };
    // SAFETY: The argument is a live sock.
    unsafe {
        let sk = arg(regs, 0) as *const sock;
        if op_for(sk, 0, op::UDP_BIND) != Some(op::UDP_BIND)
            || sockinfo::local_port(sk) != 0
            || !log.wants(op::UDP_BIND)
        {
            return 1;
        }
        *call(ri) = Call {
            sk: sk as usize,
            ..Call::default()
        };
    }
    0
}

/// `inet_send_prepare`: return.
unsafe extern "C" fn send_ret(ri: *mut kretprobe_instance, regs: *mut pt_regs) -> c_int {
    let Some(log) = log() else { return 0 };
    // SAFETY: The entry handler stored the sock, which the caller still holds.
    unsafe {
        let sk = call(ri).sk as *const sock;
        if ret(regs) == 0 && sockinfo::local_port(sk) != 0 {
            let info = sockinfo::read(sk);
            event(
                log,
                op::UDP_BIND,
                &info,
                0,
                abi::EVF_IMPLICIT,
                (Identity::current(), 0),
            );
        }
    }
    0
}

// TCP states, as `include/net/tcp_states.h` numbers them.
const TCP_ESTABLISHED: c_int = bindings::TCP_ESTABLISHED as c_int;
const TCP_SYN_SENT: c_int = bindings::TCP_SYN_SENT as c_int;
const TCP_SYN_RECV: c_int = bindings::TCP_SYN_RECV as c_int;
const TCP_FIN_WAIT1: c_int = bindings::TCP_FIN_WAIT1 as c_int;
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

/// How a connection ended, from what was seen and its final error.
fn close_reason(rst_received: bool, rst_sent: bool, err: i32) -> u8 {
    if rst_received || err == kernel::bindings::ECONNRESET as i32 {
        close::RST_RECEIVED
    } else if rst_sent {
        close::RST_SENT
    } else if err != 0 {
        close::TIMEOUT
    } else {
        close::FIN
    }
}

/// Builds a summary from what was known and what was snapshotted at CLOSE.
fn summary(conn: Option<&Conn>, closed: &Closed) -> SummaryBody {
    let i = &closed.info;
    let st = &closed.stats;
    let mut b = SummaryBody {
        sock_id: i.sock_id,
        bytes_sent: st.bytes_sent,
        bytes_received: st.bytes_received,
        segs_in: st.segs_in,
        segs_out: st.segs_out,
        retrans: st.retrans,
        srtt_us: st.srtt_us,
        netns: i.netns,
        family: i.family,
        lport: i.lport,
        rport: i.rport,
        laddr: i.laddr,
        raddr: i.raddr,
        ..SummaryBody::default()
    };
    match conn {
        Some(c) => {
            if let Some(base) = c.sent_base {
                // Sequence numbers sent since the handshake, less our FIN if it went out.
                let fin = u64::from(c.fin_queued && st.all_sent);
                b.bytes_sent = st.seq_sent.saturating_sub(base).saturating_sub(fin);
            }
            b.start_ns = c.start_ns;
            b.duration_ns = closed.end_boot.saturating_sub(c.start_boot);
            b.open = c.open;
            b.close = close_reason(c.rst_received, c.rst_sent, closed.err);
            match c.owner {
                Some(o) => {
                    b.pid = o.pid;
                    b.uid = o.uid;
                    b.comm = o.comm;
                }
                None => b.flags |= abi::SUMF_OWNER_UNKNOWN,
            }
        }
        None => {
            b.flags |= abi::SUMF_PARTIAL | abi::SUMF_OWNER_UNKNOWN | abi::SUMF_START_UNKNOWN;
            b.open = abi::open::UNKNOWN;
            b.close = close_reason(false, false, closed.err);
        }
    }
    b
}

/// Writes a summary, with the connection's IP-layer counters when the packet hooks saw all of
/// its packets (from its SYN on).
fn emit_summary(log: &Log, mut b: SummaryBody) {
    let key = FlowKey::new(b.netns, b.family, b.laddr, b.lport, b.raddr, b.rport);
    if let Some(f) = log.take_flow(&key).filter(|f| f.complete) {
        b.pkts_in = f.pkts_in;
        b.pkts_out = f.pkts_out;
        b.ip_bytes_in = f.bytes_in;
        b.ip_bytes_out = f.bytes_out;
        b.flags |= abi::SUMF_IP_COUNTERS;
    }
    log.summary(&b);
}

/// What to do after a connection reached CLOSE, decided under the table's lock.
enum AtClose {
    Nothing,
    /// Snapshotted; the summary follows at destroy.
    Deferred,
    /// A non-blocking connect failed: report its outcome.
    ConnectFailed,
    /// Not tracked: write a partial summary now.
    Partial(Closed),
}

/// # Safety
///
/// `sk` must point to a live TCP `struct sock` that just moved to CLOSE from `old`.
unsafe fn at_close(log: &Log, sk: *const sock, old: c_int) {
    // SAFETY: By the function's requirement `sk` is a live full TCP socket.
    let closed = unsafe {
        Closed {
            end_boot: now_boot(),
            info: sockinfo::read(sk),
            stats: sockinfo::tcp_stats(sk),
            err: sockinfo::error(sk),
        }
    };
    let what = log.with_conns(|t| match t.get_mut(sk as usize) {
        Some(c) if c.established => {
            c.closed = Some(closed);
            AtClose::Deferred
        }
        Some(c) => {
            let failed = c.async_connect;
            t.remove(sk as usize);
            if failed {
                AtClose::ConnectFailed
            } else {
                AtClose::Nothing
            }
        }
        None if was_connected(old) => AtClose::Partial(closed),
        None => AtClose::Nothing,
    });
    match what {
        AtClose::Partial(closed) => emit_summary(log, summary(None, &closed)),
        AtClose::ConnectFailed => {
            let err = if closed.err != 0 {
                closed.err
            } else {
                kernel::bindings::ECONNREFUSED as i32
            };
            let who = current_or_owner(None);
            event(log, op::TCP_CONNECT, &closed.info, err, abi::EVF_ASYNC, who);
        }
        AtClose::Deferred | AtClose::Nothing => {}
    }
}

/// Writes the summary of a tracked connection that has closed, and forgets it.
fn finish(log: &Log, key: usize) {
    let done = log.with_conns(|t| match t.get_mut(key) {
        Some(c) if c.closed.is_some() => t.remove(key),
        _ => None,
    });
    if let Some(c) = done {
        if let Some(l) = c.limit {
            log.packets().limit_disconnect(l);
        }
        if let Some(closed) = c.closed {
            emit_summary(log, summary(Some(&c), &closed));
        }
    }
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`.
unsafe extern "C" fn on_set_state(_data: *mut c_void, sk: *const sock, old: c_int, new: c_int) {
    let Some(log) = log() else { return };
    // SAFETY: The tracepoint passes a live socket that the caller holds, locked.
    unsafe {
        // Every TCP connection, the kernel's own too: a summary is about the connection.
        if sockinfo::family_protocol(sk).1 != abi::IPPROTO_TCP {
            return;
        }
        let key = sk as usize;
        match (old, new) {
            (TCP_CLOSE, TCP_SYN_SENT) => {
                // A socket may connect again after a closed connection: report that one first.
                finish(log, key);
                let owner = current_or_owner(None);
                log.track(
                    key,
                    Conn {
                        start_ns: now_real(),
                        start_boot: now_boot(),
                        owner: (owner.1 == 0).then_some(owner.0),
                        open: abi::open::ACTIVE,
                        ..Conn::default()
                    },
                );
            }
            (TCP_SYN_SENT, TCP_ESTABLISHED) => {
                let base = sockinfo::tcp_stats(sk).seq_sent;
                log.update_conn(key, |c| {
                    c.established = true;
                    c.sent_base = Some(base);
                });
            }
            (TCP_SYN_RECV, TCP_ESTABLISHED) => {
                log.track(
                    key,
                    Conn {
                        start_ns: now_real(),
                        start_boot: now_boot(),
                        open: abi::open::PASSIVE,
                        established: true,
                        sent_base: Some(sockinfo::tcp_stats(sk).seq_sent),
                        ..Conn::default()
                    },
                );
                count_limit(log, sk);
            }
            _ => {}
        }
        if old == TCP_ESTABLISHED
            && (new == TCP_FIN_WAIT1 || new == TCP_CLOSE_WAIT || new == TCP_CLOSE)
            && log.wants(op::TCP_DISCONNECT)
            && !sockinfo::is_kernel(sk)
        {
            let owner = log.with_conns(|t| t.get_mut(key).and_then(|c| c.owner));
            let info = sockinfo::read(sk);
            event(
                log,
                op::TCP_DISCONNECT,
                &info,
                0,
                0,
                current_or_owner(owner),
            );
        }
        if new == TCP_FIN_WAIT1 || new == TCP_LAST_ACK {
            log.update_conn(key, |c| c.fin_queued = true);
        }
        if new == TCP_CLOSE {
            at_close(log, sk, old);
        }
    }
}

/// Counts an accepted connection against the rules' connection limits.
///
/// # Safety
///
/// `sk` must point to a live TCP `struct sock`.
unsafe fn count_limit(log: &Log, sk: *const sock) {
    if !log.enabled() {
        return;
    }
    // SAFETY: By the function's requirement `sk` is live.
    let i = unsafe { sockinfo::read(sk) };
    let noif = [0u8; 16];
    let meta = crate::packet::inbound_syn(i.family, &i.raddr, &i.laddr, i.rport, i.lport, &noif);
    if let Some(l) = log.packets().limit_connect(log, &meta, i.netns) {
        let kept = log.with_conns(|t| match t.get_mut(sk as usize) {
            Some(c) => {
                c.limit = Some(l);
                true
            }
            None => false,
        });
        if !kept {
            // Not tracked (table full): nothing would uncount it.
            log.packets().limit_disconnect(l);
        }
    }
}

/// `tcp:tcp_send_reset(sk, skb, reason)`: `sk` may be null, a listener or a timewait socket,
/// so it is only compared, never read.
unsafe extern "C" fn on_send_reset(
    _data: *mut c_void,
    sk: *const sock,
    _skb: *const c_void,
    _reason: c_int,
) {
    if let Some(log) = log() {
        log.update_conn(sk as usize, |c| c.rst_sent = true);
    }
}

/// `tcp:tcp_receive_reset(sk)`.
unsafe extern "C" fn on_receive_reset(_data: *mut c_void, sk: *const sock) {
    if let Some(log) = log() {
        log.update_conn(sk as usize, |c| c.rst_received = true);
    }
}

/// `tcp:tcp_destroy_sock(sk)`: the last moment the socket exists.
unsafe extern "C" fn on_destroy(_data: *mut c_void, sk: *const sock) {
    if let Some(log) = log() {
        finish(log, sk as usize);
        // A tracked socket destroyed without a summary due (it never established) is dropped.
        log.with_conns(|t| t.remove(sk as usize));
    }
}

/// The installed hooks. Dropping them removes every probe and waits for running handlers.
pub(crate) struct SocketHooks {
    retprobes: KVec<Pin<KBox<RetProbe>>>,
    tracepoints: KVec<TracepointProbe>,
    _log: Arc<Log>,
}

/// kretprobes: (symbol, entry, return, calls in flight at most).
const RETPROBES: [(&CStr, Handler, Option<Handler>, i32); 9] = [
    (c"security_socket_post_create", create_entry, None, 64),
    (c"inet_bind", bind_entry, Some(bind_ret), 256),
    (c"inet6_bind", bind_entry, Some(bind_ret), 256),
    (c"inet_listen", listen_entry, Some(listen_ret), 64),
    (c"inet_accept", accept_entry, Some(accept_ret), 4096),
    (
        c"inet_stream_connect",
        connect_entry,
        Some(connect_ret),
        4096,
    ),
    (c"inet_dgram_connect", connect_entry, Some(connect_ret), 256),
    (c"inet_release", release_entry, None, 64),
    (c"inet_send_prepare", send_entry, Some(send_ret), 256),
];

impl SocketHooks {
    /// Installs every hook, writing to `log`. On failure, what was installed is removed again.
    pub(crate) fn install(log: Arc<Log>) -> Result<Self> {
        sockinfo::init_ids();
        LOG.store(Arc::as_ptr(&log), Release);
        let mut hooks = SocketHooks {
            retprobes: KVec::new(),
            tracepoints: KVec::new(),
            _log: log,
        };
        for (symbol, entry, ret, maxactive) in RETPROBES {
            let p = KBox::pin_init(
                RetProbe::register(symbol, entry, ret, size_of::<Call>(), maxactive),
                GFP_KERNEL,
            )?;
            hooks.retprobes.push(p, GFP_KERNEL)?;
        }
        // SAFETY: Each probe is a function with the tracepoint's signature (`data` first), and
        // `data` is unused.
        unsafe {
            let none = core::ptr::null_mut();
            for (name, probe) in [
                (c"inet_sock_set_state", on_set_state as *mut c_void),
                (c"tcp_send_reset", on_send_reset as *mut c_void),
                (c"tcp_receive_reset", on_receive_reset as *mut c_void),
                (c"tcp_destroy_sock", on_destroy as *mut c_void),
            ] {
                let tp = TracepointProbe::register(name, probe, none)?;
                hooks.tracepoints.push(tp, GFP_KERNEL)?;
            }
        }
        Ok(hooks)
    }

    /// Arms or disarms the kretprobes, so that disabled logging costs the socket calls nothing.
    /// (The tracepoint probes stay: they are cheap, and keep the connection table honest.)
    pub(crate) fn set_armed(&self, on: bool) {
        for p in &self.retprobes {
            p.set_armed(on);
        }
    }

    /// Calls the kretprobes missed (their events are missing).
    pub(crate) fn missed(&self) -> u64 {
        self.retprobes.iter().map(|p| p.nmissed()).sum()
    }
}

impl Drop for SocketHooks {
    fn drop(&mut self) {
        self.tracepoints.clear();
        probes::sync_tracepoints();
        // Each unregistration waits for that probe's running handlers.
        for p in self.retprobes.drain_all() {
            drop(p);
        }
        LOG.store(core::ptr::null(), Release);
    }
}
