// SPDX-License-Identifier: GPL-2.0

//! Hooks on socket operations: create, bind, listen, accept, connect and close of TCP and UDP
//! sockets, IPv4 and IPv6 (AIX inetsock's operations).
//!
//! No tracepoint marks these operations, so fprobes sit on the inet socket operations that every
//! such socket goes through, and on the LSM hook that follows a successful create. They run in
//! the calling process, which is therefore the one an event names: an accepted connection is
//! attributed to the process that called accept, never to the softirq that finished the
//! handshake. Operations that sleep (a blocking connect or accept) keep their per-call data on
//! the caller's own stack of returns, so parked calls take nothing from anyone else's.
//!
//! Only TCP and UDP sockets are reported, told apart by family, type and whole protocol number;
//! MPTCP, raw, UDP-Lite and the kernel's own sockets are not.

use crate::abi::{self, op};
use crate::bindings::{self, sock, socket};
use crate::clock;
use crate::events::{self, errno_of, Who};
use crate::log::Log;
use crate::probes::{Hook, Regs};
use crate::sock::{InetSock, Kind, Sock};

/// A requested endpoint, from a `struct sockaddr` given to bind or connect.
#[derive(Clone, Copy, Default)]
pub(crate) struct Endpoint {
    port: u16,
    addr: [u8; 16],
}

/// The biggest `sockaddr` read: a `sockaddr_in6`.
const SOCKADDR_MAX: usize = core::mem::size_of::<bindings::sockaddr_in6>();

/// Reads the endpoint of the `struct sockaddr` of `len` bytes at `sa`.
///
/// # Safety
///
/// `sa` must be null or point to `len` bytes (if `len` is positive) readable for the call.
unsafe fn endpoint(sa: usize, len: i32) -> Endpoint {
    use core::mem::offset_of;
    let mut b = [0u8; SOCKADDR_MAX];
    let n = usize::try_from(len).unwrap_or(0).min(SOCKADDR_MAX);
    if sa == 0 || n < 2 {
        return Endpoint::default();
    }
    // SAFETY: By the function's requirements `n <= len` bytes at `sa` are readable; `b` holds
    // `n` bytes.
    unsafe { core::ptr::copy_nonoverlapping(sa as *const u8, b.as_mut_ptr(), n) };
    let b = &b[..n];
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let field = |off: usize, size: usize| b.get(off..off + size);
    let mut e = Endpoint::default();
    let (port, addr) = match family {
        abi::AF_INET => (
            field(offset_of!(bindings::sockaddr_in, sin_port), 2),
            field(offset_of!(bindings::sockaddr_in, sin_addr), 4),
        ),
        abi::AF_INET6 => (
            field(offset_of!(bindings::sockaddr_in6, sin6_port), 2),
            field(offset_of!(bindings::sockaddr_in6, sin6_addr), 16),
        ),
        _ => (None, None),
    };
    if let Some(p) = port {
        e.port = u16::from_be_bytes([p[0], p[1]]);
    }
    if let Some(a) = addr {
        e.addr[..a.len()].copy_from_slice(a);
    }
    e
}

/// A process's TCP (or MPTCP) or UDP socket, with the operation to report for each protocol.
fn user_socket(sk: Option<Sock<'_>>, tcp: u16, udp: u16) -> Option<(InetSock<'_>, u16)> {
    let sk = sk?;
    if sk.is_kernel() {
        return None;
    }
    let inet = sk.inet()?;
    let op = match inet.kind() {
        Kind::Tcp | Kind::Mptcp if tcp != 0 => tcp,
        Kind::Udp if udp != 0 => udp,
        _ => return None,
    };
    Some((inet, op))
}

/// The socket that is argument `n` of a probed socket operation.
///
/// # Safety
///
/// Argument `n` of the probed call must be a `struct socket *` that the caller holds for the
/// duration of the call.
unsafe fn socket_arg<'a>(regs: &Regs<'a>, n: u32) -> Option<Sock<'a>> {
    // SAFETY: As the function requires.
    unsafe { Sock::of_socket(regs.arg(n) as *const socket) }
}

/// A socket an entry handler saw, again at the return of the same call.
///
/// # Safety
///
/// `addr` must be the address of a full socket that the probed call, still running, holds.
unsafe fn again<'a>(addr: usize) -> Option<Sock<'a>> {
    // SAFETY: As the function requires.
    unsafe { Sock::from_ptr(addr as *const sock) }
}

/// `inet_create(net, sock, protocol, kern)`, `inet6_create(...)`: a socket was made, if it
/// returns 0. (The LSM hook that follows a create exists only in kernels built with
/// `CONFIG_SECURITY`; these are always there.)
pub(crate) struct Create;

impl Hook for Create {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_create", c"inet6_create"];
    const HAS_EXIT: bool = true;
    /// The socket being made.
    type Data = usize;

    fn entry(log: &Log, regs: &Regs<'_>, sock: &mut usize) -> bool {
        // The kernel's own sockets are not any process's activity.
        if !log.enabled() || regs.arg_int(3) != 0 {
            return false;
        }
        *sock = regs.arg(1);
        true
    }

    fn exit(log: &Log, regs: &Regs<'_>, sock: &usize) {
        if regs.ret_int() != 0 {
            return;
        }
        // SAFETY: The socket being made, held by the creator; on success it has its sock.
        let sk = unsafe { Sock::of_socket(*sock as *const socket) };
        if let Some((inet, op)) = user_socket(sk, op::TCP_CREATE, op::UDP_CREATE) {
            if log.wants(op) {
                events::emit(log, op, &inet.info(), 0, 0, &Who::process());
            }
        }
    }
}

/// Per-call data of bind, listen and connect: the socket, the endpoint asked for, and when
/// the call began (`CLOCK_BOOTTIME`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Call {
    sk: usize,
    req: Endpoint,
    start: u64,
    /// The socket had no local port when the call began.
    was_unbound: bool,
}

/// `inet_bind(sock, uaddr, addr_len)`, `inet6_bind(...)`. A failed bind reports the endpoint
/// that was asked for.
pub(crate) struct Bind;

impl Hook for Bind {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_bind", c"inet6_bind"];
    const HAS_EXIT: bool = true;
    type Data = Call;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Call) -> bool {
        // SAFETY: Argument 0 is the socket being bound, held by the caller.
        let sk = unsafe { socket_arg(regs, 0) };
        let Some((inet, op)) = user_socket(sk, op::TCP_BIND, op::UDP_BIND) else {
            return false;
        };
        if !log.wants(op) {
            return false;
        }
        call.sk = inet.sock().addr();
        // SAFETY: Argument 1 is the kernel's copy of the address, of argument 2's length.
        call.req = unsafe { endpoint(regs.arg(1), regs.arg_int(2)) };
        true
    }

    fn exit(log: &Log, regs: &Regs<'_>, call: &Call) {
        // SAFETY: The socket is the one the entry saw; the caller holds it until it returns.
        let sk = unsafe { again(call.sk) };
        let Some((inet, op)) = user_socket(sk, op::TCP_BIND, op::UDP_BIND) else {
            return;
        };
        let result = errno_of(regs.ret_int());
        let mut info = inet.info();
        if result != 0 {
            info.lport = call.req.port;
            info.laddr = call.req.addr;
        }
        events::emit(log, op, &info, result, 0, &Who::process());
    }
}

/// `inet_listen(sock, backlog)`.
pub(crate) struct Listen;

impl Hook for Listen {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_listen"];
    const HAS_EXIT: bool = true;
    type Data = Call;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Call) -> bool {
        // SAFETY: Argument 0 is the socket, held by the caller.
        let sk = unsafe { socket_arg(regs, 0) };
        match user_socket(sk, op::TCP_LISTEN, 0) {
            Some((inet, op)) if log.wants(op) => {
                call.sk = inet.sock().addr();
                true
            }
            _ => false,
        }
    }

    fn exit(log: &Log, regs: &Regs<'_>, call: &Call) {
        // SAFETY: As for `Bind::exit`.
        let sk = unsafe { again(call.sk) };
        if let Some((inet, op)) = user_socket(sk, op::TCP_LISTEN, 0) {
            let result = errno_of(regs.ret_int());
            events::emit(log, op, &inet.info(), result, 0, &Who::process());
        }
    }
}

/// `inet_accept(sock, newsock, arg)`: the accepting process becomes the connection's owner.
pub(crate) struct Accept;

impl Hook for Accept {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_accept"];
    const HAS_EXIT: bool = true;
    /// The socket that receives the connection.
    type Data = usize;

    fn entry(log: &Log, regs: &Regs<'_>, newsock: &mut usize) -> bool {
        *newsock = regs.arg(1);
        log.enabled()
    }

    fn exit(log: &Log, regs: &Regs<'_>, newsock: &usize) {
        if regs.ret_int() != 0 {
            return;
        }
        // SAFETY: The caller's new socket, which on success holds the accepted sock; the
        // caller holds it until it returns.
        let sk = unsafe { Sock::of_socket(*newsock as *const socket) };
        let Some((inet, op)) = user_socket(sk, op::TCP_ACCEPT, 0) else {
            return;
        };
        let who = Who::process();
        if let Some(id) = who.identity() {
            log.conns.update(inet.sock().addr(), |c| c.owner = Some(id));
        }
        events::emit(log, op, &inet.info(), 0, 0, &who);
    }
}

/// The kernel's internal errnos for a system call a signal interrupted (`ERESTARTSYS` and
/// its kin, srctree/include/linux/errno.h): never seen by a process.
fn is_restart(errno: i32) -> bool {
    (512..=516).contains(&errno)
}

/// What a connect's return found about its connection.
enum Outcome {
    /// Still in progress: its outcome is reported when it is known.
    Pending,
    /// Established already (on loopback it can be, inside the call).
    Established,
    /// Failed already.
    Failed,
    /// A call that only asked about a connection in progress: not reported.
    Asked,
    /// Nothing more to say.
    Done,
}

/// `inet_stream_connect(sock, uaddr, addr_len, flags)`: TCP and MPTCP connect. A connect still
/// in progress (`EINPROGRESS`) is reported again with its outcome, flagged `async`; calls that
/// then only ask about it (`EALREADY`, `EISCONN`: a program polling, or io_uring retrying for
/// its caller) are not reported.
pub(crate) struct Connect;

impl Hook for Connect {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_stream_connect"];
    const HAS_EXIT: bool = true;
    type Data = Call;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Call) -> bool {
        // SAFETY: Argument 0 is the socket, held by the caller.
        let sk = unsafe { socket_arg(regs, 0) };
        let Some((inet, op)) = user_socket(sk, op::TCP_CONNECT, 0) else {
            return false;
        };
        if !log.wants(op) {
            return false;
        }
        call.sk = inet.sock().addr();
        call.start = clock::boot_ns();
        // SAFETY: Argument 1 is the kernel's copy of the address, of argument 2's length.
        call.req = unsafe { endpoint(regs.arg(1), regs.arg_int(2)) };
        true
    }

    fn exit(log: &Log, regs: &Regs<'_>, call: &Call) {
        // SAFETY: As for `Bind::exit`.
        let sk = unsafe { again(call.sk) };
        let Some((inet, op)) = user_socket(sk, op::TCP_CONNECT, 0) else {
            return;
        };
        let r = regs.ret_int();
        // A signal interrupted a blocking connect: the process sees EINTR (or its handler
        // restarts the call), never the kernel's internal restart codes; the connection goes
        // on, and its outcome is reported when known, as for a non-blocking connect.
        let interrupted = is_restart(errno_of(r));
        let err = if interrupted {
            kernel::bindings::EINTR as i32
        } else {
            errno_of(r)
        };
        let mut info = inet.info();
        if info.rport == 0 {
            // It failed before the socket took the destination.
            info.rport = call.req.port;
            info.raddr = call.req.addr;
        }
        let who = Who::process();
        let closed = u32::from(inet.sock().state()) == bindings::TCP_CLOSE;
        let asking =
            err == kernel::bindings::EALREADY as i32 || err == kernel::bindings::EISCONN as i32;
        let in_progress = err == kernel::bindings::EINPROGRESS as i32 || interrupted;
        let outcome = log.conns.update_or_remove(call.sk, |c| match c {
            // Once an in-progress connect was reported, later calls only ask about it: with
            // EALREADY, EISCONN, or 0 once it is established (io_uring's retry gets 0).
            Some(c)
                if c.in_progress_reported
                    && (asking || (err == 0 && c.established && !c.async_connect)) =>
            {
                (Outcome::Asked, false)
            }
            Some(c) if in_progress && c.established => {
                c.in_progress_reported = true;
                (Outcome::Established, false)
            }
            Some(c) if in_progress => {
                c.async_connect = true;
                c.in_progress_reported = true;
                (Outcome::Pending, false)
            }
            None if in_progress && closed => (Outcome::Failed, false),
            _ => (Outcome::Done, false),
        });
        let now = clock::boot_ns();
        let latency = now.saturating_sub(call.start);
        match outcome {
            Outcome::Asked => {}
            Outcome::Done => {
                // The call's own outcome: its duration is the connect's latency, unless it
                // failed before trying (nothing was sent).
                events::emit_with_latency(log, op, &info, err, 0, &who, latency);
            }
            Outcome::Pending => events::emit(log, op, &info, err, 0, &who),
            Outcome::Established => {
                events::emit(log, op, &info, err, 0, &who);
                events::emit_with_latency(log, op, &info, 0, abi::EVF_ASYNC, &who, latency);
            }
            Outcome::Failed => {
                events::emit(log, op, &info, err, 0, &who);
                let failure = match inet.sock().error() {
                    0 => kernel::bindings::ECONNREFUSED as i32,
                    e => e,
                };
                events::emit_with_latency(log, op, &info, failure, abi::EVF_ASYNC, &who, latency);
            }
        }
    }
}

/// `inet_dgram_connect(sock, uaddr, addr_len, flags)`: UDP connect. Connecting an unbound
/// socket binds it first: reported as an implicit bind, before the connect.
pub(crate) struct DgramConnect;

impl Hook for DgramConnect {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_dgram_connect"];
    const HAS_EXIT: bool = true;
    type Data = Call;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Call) -> bool {
        // SAFETY: Argument 0 is the socket, held by the caller.
        let sk = unsafe { socket_arg(regs, 0) };
        let Some((inet, op)) = user_socket(sk, 0, op::UDP_CONNECT) else {
            return false;
        };
        if !log.wants(op) && !log.wants(op::UDP_BIND) {
            return false;
        }
        call.sk = inet.sock().addr();
        call.was_unbound = inet.bound_port() == 0;
        // SAFETY: Argument 1 is the kernel's copy of the address, of argument 2's length.
        call.req = unsafe { endpoint(regs.arg(1), regs.arg_int(2)) };
        true
    }

    fn exit(log: &Log, regs: &Regs<'_>, call: &Call) {
        if call.was_unbound && log.wants(op::UDP_BIND) {
            implicit_bind(log, call.sk);
        }
        // SAFETY: As for `Bind::exit`.
        let sk = unsafe { again(call.sk) };
        let Some((inet, op)) = user_socket(sk, 0, op::UDP_CONNECT) else {
            return;
        };
        let r = regs.ret_int();
        let mut info = inet.info();
        if r != 0 || info.rport == 0 {
            info.rport = call.req.port;
            info.raddr = call.req.addr;
        }
        events::emit(log, op, &info, errno_of(r), 0, &Who::process());
    }
}

/// `inet_sendmsg(sock, msg, size)`, `inet6_sendmsg(...)`: a send on an unbound UDP socket
/// binds it to an ephemeral port first (inetsock's dynamic bind), reported as an implicit bind.
/// (The function that binds, `inet_autobind`, is static and may be inlined; these are always
/// called through the socket's operations, never inlined.) Only unbound UDP sockets get a
/// return handler, so other sends cost the entry check alone.
pub(crate) struct Send;

impl Hook for Send {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_sendmsg", c"inet6_sendmsg"];
    const HAS_EXIT: bool = true;
    type Data = Call;

    fn entry(log: &Log, regs: &Regs<'_>, call: &mut Call) -> bool {
        // SAFETY: Argument 0 is the socket sent on, held by the caller.
        let sk = unsafe { socket_arg(regs, 0) };
        match user_socket(sk, 0, op::UDP_BIND) {
            Some((inet, op)) if inet.bound_port() == 0 && log.wants(op) => {
                call.sk = inet.sock().addr();
                true
            }
            _ => false,
        }
    }

    fn exit(log: &Log, _regs: &Regs<'_>, call: &Call) {
        implicit_bind(log, call.sk);
    }
}

/// Reports an implicit bind if the UDP socket at `sk`, unbound when a call began, is bound now.
fn implicit_bind(log: &Log, sk: usize) {
    // SAFETY: As for `Bind::exit`.
    let sk = unsafe { again(sk) };
    if let Some((inet, op)) = user_socket(sk, 0, op::UDP_BIND) {
        if inet.bound_port() != 0 {
            let info = inet.info();
            events::emit(log, op, &info, 0, abi::EVF_IMPLICIT, &Who::process());
        }
    }
}

/// `inet_release(sock)`: a process closes a socket (IPv6 sockets too: `inet6_release` calls it).
pub(crate) struct Release;

impl Hook for Release {
    const SYMBOLS: &'static [&'static kernel::str::CStr] = &[c"inet_release"];
    const HAS_EXIT: bool = false;
    type Data = ();

    fn entry(log: &Log, regs: &Regs<'_>, _unit: &mut ()) -> bool {
        // SAFETY: Argument 0 is the socket being released; its sock is still attached.
        let sk = unsafe { socket_arg(regs, 0) };
        if let Some((inet, op)) = user_socket(sk, op::TCP_CLOSE, op::UDP_CLOSE) {
            if log.wants(op) {
                events::emit(log, op, &inet.info(), 0, 0, &Who::process());
            }
        }
        false
    }
}

/// The same hook on MPTCP's own socket operation, which kernels without MPTCP lack.
macro_rules! mptcp_variant {
    ($name:ident, $of:ident, $sym:literal) => {
        #[doc = concat!("As [`", stringify!($of), "`], on MPTCP's own operation.")]
        pub(crate) struct $name;

        impl Hook for $name {
            const SYMBOLS: &'static [&'static kernel::str::CStr] = &[$sym];
            const HAS_EXIT: bool = true;
            const OPTIONAL: bool = true;
            type Data = <$of as Hook>::Data;

            fn entry(log: &Log, regs: &Regs<'_>, data: &mut Self::Data) -> bool {
                $of::entry(log, regs, data)
            }

            fn exit(log: &Log, regs: &Regs<'_>, data: &Self::Data) {
                $of::exit(log, regs, data)
            }
        }
    };
}

mptcp_variant!(MptcpBind, Bind, c"mptcp_bind");
mptcp_variant!(MptcpListen, Listen, c"mptcp_listen");
mptcp_variant!(MptcpAccept, Accept, c"mptcp_stream_accept");
