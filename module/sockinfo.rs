// SPDX-License-Identifier: GPL-2.0

//! What a `struct sock` says about itself: family, protocol, endpoints, namespace, identity, and
//! for TCP the connection's counters.
//!
//! Fields are read volatile: a hook may look at a socket whose lock it does not hold, and the
//! kernel updates these fields with plain stores (its own readers use `READ_ONCE` or the lock).
//! A torn or stale value is at worst a wrong address in one record, never unsafety.

use kernel::sync::atomic::{ordering::Relaxed, Atomic};

use crate::abi;
use crate::bindings::{self, sock};

/// The key of [`sock_id`] and [`keyed_hash`], drawn at load.
static ID_KEY: [Atomic<u64>; 2] = [Atomic::new(0), Atomic::new(0)];

/// Draws the key of [`sock_id`] and [`keyed_hash`]. Called once, before any hook runs.
pub(crate) fn init_ids() {
    let mut key = [0u64; 2];
    // SAFETY: `key` is 16 writable bytes.
    unsafe { bindings::get_random_bytes(key.as_mut_ptr().cast(), 16) };
    ID_KEY[0].store(key[0], Relaxed);
    ID_KEY[1].store(key[1], Relaxed);
}

/// The id of a socket in records: a keyed hash of its address. It is the same for every record
/// about one socket, tells apart all sockets that exist at the same time, and does not reveal
/// kernel addresses. (The kernel's socket cookie would be better, but its generator is not
/// exported to modules.)
pub(crate) fn sock_id(sk: *const sock) -> u64 {
    let key = bindings::siphash_key_t {
        key: [ID_KEY[0].load(Relaxed), ID_KEY[1].load(Relaxed)],
    };
    // SAFETY: `key` is a valid key for the call; the address is only hashed, not dereferenced.
    unsafe { bindings::siphash_1u64(sk as u64, &key) }
}

macro_rules! rd {
    ($place:expr) => {
        core::ptr::read_volatile(core::ptr::addr_of!($place))
    };
}

/// A hash of four words that nobody outside can predict (the key is drawn at load), for tables
/// whose keys remote peers choose: their chains cannot be flooded on purpose.
pub(crate) fn keyed_hash(w: [u64; 4]) -> u64 {
    let key = bindings::siphash_key_t {
        key: [ID_KEY[0].load(Relaxed), ID_KEY[1].load(Relaxed)],
    };
    // SAFETY: `key` is a valid key for the call.
    unsafe { bindings::siphash_4u64(w[0], w[1], w[2], w[3], &key) }
}

/// A socket's description, as records carry it.
#[derive(Clone, Copy, Default)]
pub(crate) struct SockInfo {
    pub(crate) sock_id: u64,
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
    pub(crate) bytes_received: u64,
    pub(crate) segs_in: u32,
    pub(crate) segs_out: u32,
    pub(crate) retrans: u32,
    pub(crate) srtt_us: u32,
}

fn v4(addr: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    // `__be32` holds the address in network order in memory.
    a[..4].copy_from_slice(&addr.to_ne_bytes());
    a
}

/// Reads a socket's family, protocol and type.
///
/// # Safety
///
/// `sk` must point to a live `struct sock`.
pub(crate) unsafe fn family_protocol(sk: *const sock) -> (u16, u8, u8) {
    // SAFETY: By the function's requirement `sk` is live; see the module's note on volatile.
    unsafe {
        (
            rd!((*sk).__sk_common.skc_family),
            rd!((*sk).sk_protocol) as u8,
            rd!((*sk).sk_type) as u8,
        )
    }
}

/// The TCP state of a socket (`TCP_ESTABLISHED` ...).
///
/// # Safety
///
/// `sk` must point to a live `struct sock`.
pub(crate) unsafe fn state(sk: *const sock) -> u8 {
    // SAFETY: By the function's requirement `sk` is live.
    unsafe { rd!((*sk).__sk_common.skc_state) }
}

/// The socket's pending error (`sk_err`), a positive errno or 0.
///
/// # Safety
///
/// `sk` must point to a live `struct sock`.
pub(crate) unsafe fn error(sk: *const sock) -> i32 {
    // SAFETY: By the function's requirement `sk` is live.
    unsafe { rd!((*sk).sk_err) }
}

/// Whether a socket is one of the kernel's own (`sk_kern_sock`), not any process's.
///
/// # Safety
///
/// `sk` must point to a live `struct sock`.
pub(crate) unsafe fn is_kernel(sk: *const sock) -> bool {
    // SAFETY: By the function's requirement `sk` is live; the bit is set at creation and never
    // changes, and the raw accessor reads it without making a reference to the whole struct.
    unsafe { sock::sk_kern_sock_raw(sk) != 0 }
}

/// The local port (`inet_num`), 0 while unbound.
///
/// # Safety
///
/// `sk` must point to a live `struct sock` of an inet socket.
pub(crate) unsafe fn local_port(sk: *const sock) -> u16 {
    // SAFETY: By the function's requirement `sk` is live.
    unsafe { rd!((*sk).__sk_common.__bindgen_anon_3.__bindgen_anon_1.skc_num) }
}

/// Describes an inet socket.
///
/// # Safety
///
/// `sk` must point to a live `struct sock` of an `AF_INET` or `AF_INET6` socket.
pub(crate) unsafe fn read(sk: *const sock) -> SockInfo {
    // SAFETY: By the function's requirement `sk` is a live inet socket, so it is the first
    // member of a `struct inet_sock`, and `skc_net` points to its live namespace (a socket holds
    // a reference to it, or belongs to a namespace that outlives it).
    unsafe {
        let c = &(*sk).__sk_common;
        let (family, protocol, sock_type) = family_protocol(sk);
        let (laddr, raddr) = if family == abi::AF_INET6 {
            (
                rd!(c.skc_v6_rcv_saddr).in6_u.u6_addr8,
                rd!(c.skc_v6_daddr).in6_u.u6_addr8,
            )
        } else {
            let mut local = rd!(c.__bindgen_anon_1.__bindgen_anon_1.skc_rcv_saddr);
            if local == 0 {
                // Bound to any address: after a connect, the source address chosen.
                local = rd!((*sk.cast::<bindings::inet_sock>()).inet_saddr);
            }
            (
                v4(local),
                v4(rd!(c.__bindgen_anon_1.__bindgen_anon_1.skc_daddr)),
            )
        };
        let net = rd!(c.skc_net.net);
        SockInfo {
            sock_id: sock_id(sk),
            netns: if net.is_null() {
                0
            } else {
                rd!((*net).ns.inum)
            },
            family,
            protocol,
            sock_type,
            // `inet_sport`, not `inet_num`: the kernel clears the latter when it unhashes a
            // socket at close, and records about closing sockets still need the port.
            lport: u16::from_be(rd!((*sk.cast::<bindings::inet_sock>()).inet_sport)),
            rport: u16::from_be(rd!(c.__bindgen_anon_3.__bindgen_anon_1.skc_dport)),
            laddr,
            raddr,
        }
    }
}

/// Reads a TCP connection's counters.
///
/// # Safety
///
/// `sk` must point to a live `struct sock` that is a full TCP socket (a `struct tcp_sock`).
pub(crate) unsafe fn tcp_stats(sk: *const sock) -> TcpStats {
    // SAFETY: By the function's requirement `sk` is the first member of a live `tcp_sock`.
    unsafe {
        let tp = sk.cast::<bindings::tcp_sock>();
        // The kernel's `bytes_received` follows `rcv_nxt`, so it counts the peer's FIN as a
        // byte; `SOCK_DONE` says a FIN arrived. `bytes_sent` counts retransmitted data again.
        let flags = rd!((*sk).__sk_common.__bindgen_anon_5.skc_flags);
        let fin_received = flags & (1 << bindings::sock_flags_SOCK_DONE) != 0;
        let (una, nxt) = (rd!((*tp).snd_una), rd!((*tp).snd_nxt));
        TcpStats {
            bytes_sent: rd!((*tp).bytes_sent).saturating_sub(rd!((*tp).bytes_retrans)),
            seq_sent: rd!((*tp).bytes_acked) + u64::from(nxt.wrapping_sub(una)),
            all_sent: nxt == rd!((*tp).write_seq),
            bytes_received: rd!((*tp).bytes_received).saturating_sub(u64::from(fin_received)),
            segs_in: rd!((*tp).segs_in),
            segs_out: rd!((*tp).segs_out),
            retrans: rd!((*tp).total_retrans),
            srtt_us: rd!((*tp).srtt_us) >> 3,
        }
    }
}
