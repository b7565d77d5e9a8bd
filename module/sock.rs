// SPDX-License-Identifier: GPL-2.0

//! Checked views of a `struct sock`: what a socket says about itself, read through types that
//! can only be made from a socket checked to be of the right kind.
//!
//! - [`Sock`]: a full socket (not a request or timewait mini-socket), alive while the view is.
//! - [`InetSock`]: a `Sock` of family `AF_INET` or `AF_INET6`, so the first member of a
//!   `struct inet_sock`: endpoints and ports can be read.
//! - [`TcpSock`]: an `InetSock` of type `SOCK_STREAM` and protocol `IPPROTO_TCP`, compared
//!   whole (an MPTCP socket's protocol, 262, is 6 in a byte): a `struct tcp_sock`, whose
//!   counters can be read.
//!
//! The unsafe reads are in this file only, each inside a constructor's checked guarantee.
//! Fields are read volatile: a hook may look at a socket whose lock it does not hold, and the
//! kernel updates these fields with plain stores (its own lockless readers use `READ_ONCE`). A
//! torn or stale value is at worst a wrong number in one record, never unsafety. The offsets
//! come from the module's own bindgen run, checked against the kernel's at load (`layout.rs`).

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::abi;
use crate::bindings::{self, sock};

macro_rules! rd {
    ($place:expr) => {
        core::ptr::read_volatile(core::ptr::addr_of!($place))
    };
}

/// `SOCK_STREAM`, `SOCK_DGRAM`, as `sk_type` holds them.
const SOCK_STREAM: u16 = bindings::sock_type_SOCK_STREAM as u16;
const SOCK_DGRAM: u16 = bindings::sock_type_SOCK_DGRAM as u16;
/// The protocols, as `sk_protocol` (16 bits) holds them.
const IPPROTO_TCP: u16 = bindings::IPPROTO_TCP as u16;
const IPPROTO_UDP: u16 = bindings::IPPROTO_UDP as u16;
const IPPROTO_MPTCP: u16 = bindings::IPPROTO_MPTCP as u16;

/// What kind of inet socket this is, by family, type and the whole protocol number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Tcp,
    Udp,
    Mptcp,
    /// Raw, ping, UDP-Lite, SCTP, ...: not logged.
    Other,
}

/// A full `struct sock`.
///
/// # Invariants
///
/// `ptr` points to a `struct sock` that stays alive for `'a` and is a full socket: not a
/// `request_sock` or `inet_timewait_sock`, which share only `struct sock_common` with it.
#[derive(Clone, Copy)]
pub(crate) struct Sock<'a> {
    ptr: NonNull<sock>,
    _alive: PhantomData<&'a sock>,
}

// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV`: the states of the mini-sockets.
const MINI_STATES: u32 = (1 << bindings::TCP_TIME_WAIT) | (1 << bindings::TCP_NEW_SYN_RECV);

impl<'a> Sock<'a> {
    /// A view of `sk`, or `None` if it is null or not a full socket.
    ///
    /// # Safety
    ///
    /// `sk` must be null or point to a live `struct sock_common` (a socket of any kind, mini
    /// sockets included) that stays alive for `'a`.
    pub(crate) unsafe fn from_ptr(sk: *const sock) -> Option<Self> {
        let ptr = NonNull::new(sk.cast_mut())?;
        // SAFETY: By the function's requirements `sk` is live; `skc_state` is in the
        // `sock_common` that every kind of socket begins with.
        let state = unsafe { rd!((*sk).__sk_common.skc_state) };
        if u32::from(state) < 32 && MINI_STATES & (1 << state) != 0 {
            return None;
        }
        // INVARIANT: Live for `'a` by the requirements, and not a mini socket by its state.
        Some(Sock {
            ptr,
            _alive: PhantomData,
        })
    }

    /// The `struct sock` of a `struct socket`, if it has one.
    ///
    /// # Safety
    ///
    /// `sock` must be null or point to a live `struct socket` that keeps its `sk` alive for `'a`
    /// (as a socket does for the duration of a call on it).
    pub(crate) unsafe fn of_socket(sock: *const bindings::socket) -> Option<Self> {
        if sock.is_null() {
            return None;
        }
        // SAFETY: By the function's requirements `sock` is live.
        let sk = unsafe { rd!((*sock).sk) };
        // SAFETY: A socket's `sk` is null or its full, live sock, alive for `'a` as required.
        unsafe { Sock::from_ptr(sk) }
    }

    fn raw(&self) -> *const sock {
        self.ptr.as_ptr()
    }

    /// The socket's address: the key of the connection table (never dereferenced there).
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The socket's cookie, its id in records: the kernel's own id of the socket, made on first
    /// use and unique since boot (an address is reused, a cookie never), the `sk:` that `ss -e`
    /// shows and `bpf_get_socket_cookie` returns. No clue to where the kernel keeps the socket.
    pub(crate) fn cookie(&self) -> u64 {
        let mut c = [0u32; 2];
        // SAFETY: By the type invariant the socket is live. `sock_diag_save_cookie` reads its
        // cookie, or sets it if unset (atomically, with preemption disabled: callable in any
        // context), and writes it to the two `u32`s of `c`.
        unsafe { bindings::sock_diag_save_cookie(self.ptr.as_ptr(), c.as_mut_ptr()) };
        u64::from(c[0]) | u64::from(c[1]) << 32
    }

    pub(crate) fn family(&self) -> u16 {
        // SAFETY: By the type invariant the socket is live.
        unsafe { rd!((*self.raw()).__sk_common.skc_family) }
    }

    /// The TCP state (`TCP_ESTABLISHED` ...), or the state UDP keeps in the same field.
    pub(crate) fn state(&self) -> u8 {
        // SAFETY: By the type invariant the socket is live.
        unsafe { rd!((*self.raw()).__sk_common.skc_state) }
    }

    /// The pending error (`sk_err`): a positive errno, or 0.
    pub(crate) fn error(&self) -> i32 {
        // SAFETY: By the type invariant the socket is live and full, so `sk_err` exists.
        unsafe { rd!((*self.raw()).sk_err) }
    }

    /// Whether it is one of the kernel's own sockets (`sk_kern_sock`), not any process's.
    pub(crate) fn is_kernel(&self) -> bool {
        // SAFETY: By the type invariant the socket is live and full.
        unsafe { bindings::tcplog_sk_kern(self.raw()) }
    }

    /// Its kind; `None` unless it is an inet socket.
    pub(crate) fn inet(self) -> Option<InetSock<'a>> {
        let family = self.family();
        if family != abi::AF_INET && family != abi::AF_INET6 {
            return None;
        }
        // INVARIANT: An `AF_INET` or `AF_INET6` socket is the first member of an `inet_sock`.
        Some(InetSock(self))
    }

    /// A TCP socket's view, if this is one.
    pub(crate) fn tcp(self) -> Option<TcpSock<'a>> {
        self.inet()?.tcp()
    }
}

/// An `AF_INET` or `AF_INET6` socket.
///
/// # Invariants
///
/// The socket's family is `AF_INET` or `AF_INET6`, so it is the first member of a live
/// `struct inet_sock`.
#[derive(Clone, Copy)]
pub(crate) struct InetSock<'a>(Sock<'a>);

impl<'a> InetSock<'a> {
    pub(crate) fn sock(&self) -> Sock<'a> {
        self.0
    }

    fn raw(&self) -> *const sock {
        self.0.raw()
    }

    /// Its kind, by type and the whole protocol number.
    pub(crate) fn kind(&self) -> Kind {
        // SAFETY: By the invariants the socket is live and full.
        let (ty, proto) = unsafe { (rd!((*self.raw()).sk_type), rd!((*self.raw()).sk_protocol)) };
        match (ty, proto) {
            (SOCK_STREAM, IPPROTO_TCP) => Kind::Tcp,
            (SOCK_STREAM, IPPROTO_MPTCP) => Kind::Mptcp,
            (SOCK_DGRAM, IPPROTO_UDP) => Kind::Udp,
            _ => Kind::Other,
        }
    }

    /// The TCP view, if this is a TCP socket.
    pub(crate) fn tcp(self) -> Option<TcpSock<'a>> {
        // INVARIANT: An inet stream socket of protocol `IPPROTO_TCP` is a `struct tcp_sock`.
        (self.kind() == Kind::Tcp).then_some(TcpSock(self))
    }

    /// The local port the socket is bound to (`inet_num`), 0 while unbound.
    pub(crate) fn bound_port(&self) -> u16 {
        // SAFETY: By the invariants the socket is live.
        unsafe {
            rd!((*self.raw())
                .__sk_common
                .__bindgen_anon_3
                .__bindgen_anon_1
                .skc_num)
        }
    }

    /// The socket's description as records carry it.
    pub(crate) fn info(&self) -> SockInfo {
        let sk = self.raw();
        // SAFETY: By the invariants `sk` is the first member of a live `inet_sock`, and
        // `skc_net` points to its live namespace (a socket holds a reference to it, or belongs
        // to the kernel's own namespace that outlives it).
        unsafe {
            let c = &(*sk).__sk_common;
            let inet = sk.cast::<bindings::inet_sock>();
            let family = rd!(c.skc_family);
            let (laddr, raddr) = if family == abi::AF_INET6 {
                (
                    rd!(c.skc_v6_rcv_saddr).in6_u.u6_addr8,
                    rd!(c.skc_v6_daddr).in6_u.u6_addr8,
                )
            } else {
                let mut local = rd!(c.__bindgen_anon_1.__bindgen_anon_1.skc_rcv_saddr);
                if local == 0 {
                    // Bound to any address: after a connect, the source address chosen.
                    local = rd!((*inet).inet_saddr);
                }
                (
                    v4(local),
                    v4(rd!(c.__bindgen_anon_1.__bindgen_anon_1.skc_daddr)),
                )
            };
            let net = rd!(c.skc_net.net);
            let (ty, proto) = (rd!((*sk).sk_type), rd!((*sk).sk_protocol));
            let mptcp = proto == IPPROTO_MPTCP;
            SockInfo {
                sock_id: self.sock().cookie(),
                mptcp,
                netns: if net.is_null() {
                    0
                } else {
                    rd!((*net).ns.inum)
                },
                family,
                // Only TCP, MPTCP (TCP on the wire) and UDP sockets are described; the byte holds
                // their IP protocol numbers whole.
                protocol: if mptcp {
                    IPPROTO_TCP as u8
                } else {
                    proto as u8
                },
                sock_type: ty as u8,
                // `inet_sport`, not `inet_num`: the kernel clears the latter when it unhashes a
                // socket at close, and records about closing sockets still need the port.
                lport: u16::from_be(rd!((*inet).inet_sport)),
                rport: u16::from_be(rd!(c.__bindgen_anon_3.__bindgen_anon_1.skc_dport)),
                laddr,
                raddr,
            }
        }
    }
}

/// A full TCP socket.
///
/// # Invariants
///
/// The socket is a live `struct tcp_sock`: inet family, `SOCK_STREAM`, `IPPROTO_TCP`, full.
#[derive(Clone, Copy)]
pub(crate) struct TcpSock<'a>(InetSock<'a>);

impl<'a> TcpSock<'a> {
    pub(crate) fn inet(&self) -> InetSock<'a> {
        self.0
    }

    pub(crate) fn sock(&self) -> Sock<'a> {
        self.0.sock()
    }

    /// The connection's counters.
    pub(crate) fn stats(&self) -> TcpStats {
        let sk = self.0.raw();
        // SAFETY: By the invariants `sk` is the first member of a live `tcp_sock`.
        unsafe {
            let tp = sk.cast::<bindings::tcp_sock>();
            // The kernel's `bytes_received` follows `rcv_nxt`, so it counts the peer's FIN as a
            // byte; `SOCK_DONE` says a FIN arrived. `bytes_sent` counts retransmitted data again.
            let flags = rd!((*sk).__sk_common.__bindgen_anon_5.skc_flags);
            let fin_received = flags & (1 << bindings::sock_flags_SOCK_DONE) != 0;
            let (una, nxt) = (rd!((*tp).snd_una), rd!((*tp).snd_nxt));
            // tcp_info's chronographs: jiffies busy, receive-window limited, send-buffer limited,
            // the one running now counted up to now.
            let mut chrono = rd!((*tp).chrono_stat).map(u64::from);
            let running = usize::from(rd!((*tp).chrono_type));
            if (1..=3).contains(&running) {
                let now = bindings::tcplog_jiffies32();
                chrono[running - 1] += u64::from(now.wrapping_sub(rd!((*tp).chrono_start)));
            }
            let us_per_jiffy = 1_000_000 / u64::from(bindings::tcplog_hz().max(1));
            let chrono = chrono.map(|j| j * us_per_jiffy);
            let (rate, interval) = (rd!((*tp).rate_delivered), rd!((*tp).rate_interval_us));
            let delivery_rate = if rate != 0 && interval != 0 {
                u64::from(rate) * u64::from(rd!((*tp).mss_cache)) * 1_000_000 / u64::from(interval)
            } else {
                0
            };
            let min_rtt = rd!((*tp).rtt_min.s[0].v);
            TcpStats {
                fin_received,
                min_rtt_us: if min_rtt == u32::MAX { 0 } else { min_rtt },
                delivery_rate,
                busy_us: chrono.iter().sum(),
                rwnd_limited_us: chrono[1],
                sndbuf_limited_us: chrono[2],
                bytes_sent: rd!((*tp).bytes_sent).saturating_sub(rd!((*tp).bytes_retrans)),
                seq_sent: rd!((*tp).bytes_acked).wrapping_add(u64::from(nxt.wrapping_sub(una))),
                all_sent: nxt == rd!((*tp).write_seq),
                bytes_received: rd!((*tp).bytes_received).saturating_sub(u64::from(fin_received)),
                segs_in: rd!((*tp).segs_in),
                segs_out: rd!((*tp).segs_out),
                retrans: rd!((*tp).total_retrans),
                srtt_us: rd!((*tp).srtt_us) >> 3,
            }
        }
    }
}

/// A socket's description, as records carry it.
#[derive(Clone, Copy, Default)]
pub(crate) struct SockInfo {
    pub(crate) sock_id: u64,
    /// An MPTCP socket (`protocol` is then TCP's).
    pub(crate) mptcp: bool,
    pub(crate) netns: u32,
    pub(crate) family: u16,
    pub(crate) protocol: u8,
    pub(crate) sock_type: u8,
    pub(crate) lport: u16,
    pub(crate) rport: u16,
    pub(crate) laddr: [u8; 16],
    pub(crate) raddr: [u8; 16],
}

/// A TCP connection's counters: data bytes only, each counted once.
#[derive(Clone, Copy, Default)]
pub(crate) struct TcpStats {
    /// Data bytes sent, from the kernel's byte counters: exact unless retransmissions failed
    /// before they left (those count as sent but not as retransmitted). Used when the
    /// connection's start was not seen; otherwise `seq_sent` gives the exact figure.
    pub(crate) bytes_sent: u64,
    /// Sequence numbers sent so far (SYN and FIN included): bytes acknowledged plus bytes in
    /// flight, 64 bits wide.
    pub(crate) seq_sent: u64,
    /// Everything queued has been sent (`snd_nxt == write_seq`): a FIN queued has gone out.
    pub(crate) all_sent: bool,
    /// The peer's FIN has arrived (`SOCK_DONE`).
    pub(crate) fin_received: bool,
    pub(crate) bytes_received: u64,
    pub(crate) segs_in: u32,
    pub(crate) segs_out: u32,
    pub(crate) retrans: u32,
    pub(crate) srtt_us: u32,
    /// Minimum RTT seen, µs (0: none yet).
    pub(crate) min_rtt_us: u32,
    /// The last delivery-rate sample, bytes/s.
    pub(crate) delivery_rate: u64,
    /// tcp_info's chronographs, µs: busy (data outstanding), and of that limited by the
    /// receive window or the send buffer.
    pub(crate) busy_us: u64,
    pub(crate) rwnd_limited_us: u64,
    pub(crate) sndbuf_limited_us: u64,
}

fn v4(addr: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    // `__be32` holds the address in network order in memory.
    a[..4].copy_from_slice(&addr.to_ne_bytes());
    a
}
