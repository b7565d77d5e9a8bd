// SPDX-License-Identifier: GPL-2.0

//! IP-layer packet and byte counters of TCP connections, as the netfilter hooks see them, until
//! the connection's summary takes them.
//!
//! Flows are keyed by their endpoints as this host sees them (namespace, local and remote
//! address and port), so both ends of a loopback connection are separate flows, as they are
//! separate connections. Only a connection's first SYN (SYN without ACK) starts a flow; every
//! packet of the 4-tuple after it is counted, a retransmitted or forged SYN included (it is a
//! packet of that tuple on the wire, as a capture shows it). So counts are the whole
//! connection's from its first packet, or there is no flow and the summary's IP counters are
//! null: never a partial count claimed exact.
//!
//! A flow is *confirmed* when its socket reaches ESTABLISHED, and then belongs to that socket.
//! Scans, floods of SYNs and handshakes that never finish make unconfirmed flows only: when the
//! table is full, one of those is evicted to make room (counted), never a confirmed one. A SYN
//! with a new initial sequence number on a flow that is unconfirmed or already closed starts it
//! afresh (a new connection on the same ports). The table is preallocated and bounded.
//!
//! A connection's packets end with its socket: once it reached CLOSE, or sent a reset, the
//! only packet still its own is the reset its close sends (which TCP sends after unhashing the
//! socket). The peer's segments that cross that end find no socket, and the resets the kernel
//! answers them with come from its control socket: neither is the connection's. The sending
//! socket of an outgoing packet (the hook's `sk`) tells the two resets apart.

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Relaxed, Atomic},
};

use crate::abi;
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::keys::HashKeys;
use crate::table::Table;

/// A flow's endpoints, IPv4-mapped IPv6 addresses folded to IPv4 (a dual-stack socket's
/// packets are IPv4 packets).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub(crate) netns: u32,
    pub(crate) family: u16,
    pub(crate) lport: u16,
    pub(crate) rport: u16,
    pub(crate) laddr: [u8; 16],
    pub(crate) raddr: [u8; 16],
}

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl FlowKey {
    pub(crate) fn new(
        netns: u32,
        family: u16,
        laddr: [u8; 16],
        lport: u16,
        raddr: [u8; 16],
        rport: u16,
    ) -> Self {
        let fold = |a: [u8; 16]| {
            let mut v4 = [0u8; 16];
            v4[..4].copy_from_slice(&a[12..]);
            v4
        };
        if family == abi::AF_INET6 && laddr[..12] == V4_MAPPED && raddr[..12] == V4_MAPPED {
            return FlowKey {
                netns,
                family: abi::AF_INET,
                lport,
                rport,
                laddr: fold(laddr),
                raddr: fold(raddr),
            };
        }
        FlowKey {
            netns,
            family,
            lport,
            rport,
            laddr,
            raddr,
        }
    }

    /// Every byte of the key, for the keyed hash (no folding that would make collisions
    /// independent of the key).
    fn bytes(&self) -> [u8; 42] {
        let mut b = [0u8; 42];
        b[..4].copy_from_slice(&self.netns.to_ne_bytes());
        b[4..6].copy_from_slice(&self.family.to_ne_bytes());
        b[6..8].copy_from_slice(&self.lport.to_ne_bytes());
        b[8..10].copy_from_slice(&self.rport.to_ne_bytes());
        b[10..26].copy_from_slice(&self.laddr);
        b[26..42].copy_from_slice(&self.raddr);
        b
    }
}

/// What a flow counted.
#[derive(Clone, Copy, Default)]
pub(crate) struct FlowCounts {
    pub(crate) pkts_in: u64,
    pub(crate) pkts_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// From the first SYN to the first packet carrying data out / in, ns.
    pub(crate) first_tx_ns: Option<u64>,
    pub(crate) first_rx_ns: Option<u64>,
    /// The longest time between two packets, either way, ns.
    pub(crate) max_idle_ns: u64,
    /// The peer's FIN was counted.
    pub(crate) fin_in: bool,
}

/// When things happened to a flow (`CLOCK_BOOTTIME`, ns).
#[derive(Clone, Copy, Default)]
struct Times {
    start: u64,
    last: u64,
    first_tx: Option<u64>,
    first_rx: Option<u64>,
    max_idle: u64,
}

#[derive(Clone, Copy, Default)]
struct Flow {
    counts: FlowCounts,
    times: Times,
    /// The initial sequence number of the SYN that started the flow.
    isn: u32,
    /// The socket that owns it, once confirmed (its address; 0 before).
    owner: usize,
    confirmed: bool,
    /// Its connection reached CLOSE: a new connection may reuse the ports.
    closed: bool,
    /// Its socket sent a reset: the connection ended with it.
    reset_out: bool,
}

/// A packet, as the flow table needs it.
pub(crate) struct FlowPacket {
    pub(crate) inbound: bool,
    /// IP bytes, headers included.
    pub(crate) bytes: u64,
    /// It carries data (payload beyond the headers).
    pub(crate) data: bool,
    /// A connection's first segment: SYN without ACK.
    pub(crate) first_syn: bool,
    /// It carries RST, FIN.
    pub(crate) rst: bool,
    pub(crate) fin: bool,
    pub(crate) seq: u32,
    /// The socket sending an outgoing packet (its address, only compared; 0 for none).
    pub(crate) sender: usize,
    /// When it was seen (`CLOCK_BOOTTIME`, ns).
    pub(crate) now: u64,
}

/// Slots looked at, at most, for a handshake to evict.
const EVICT_BUDGET: usize = 64;

/// The flows, under an IRQ-safe lock.
#[pin_data]
pub(crate) struct Flows {
    #[pin]
    table: SpinLockIrq<Table<FlowKey, Flow>>,
    keys: HashKeys,
    /// First SYNs that found no room: their connections' counters are null.
    untracked: Atomic<u64>,
    /// Unconfirmed flows evicted to make room.
    evicted: Atomic<u64>,
}

impl Flows {
    pub(crate) fn new(max: usize, keys: HashKeys) -> Result<impl PinInit<Self, Error>> {
        let table = Table::new(max)?;
        Ok(try_pin_init!(Flows {
            table <- new_spinlock_irq!(table, "tcplog_flows"),
            keys,
            untracked: Atomic::new(0),
            evicted: Atomic::new(0),
        }))
    }

    /// An IPv4 key fits in two words, hashed as such (half the rounds of hashing its 42 bytes,
    /// on every packet); an IPv6 key is hashed whole.
    fn hash(&self, key: &FlowKey) -> u64 {
        if key.family == abi::AF_INET {
            let v4 = |a: &[u8; 16]| u64::from(u32::from_ne_bytes([a[0], a[1], a[2], a[3]]));
            let ends = u64::from(key.netns)
                | u64::from(key.lport) << 32
                | u64::from(key.rport) << 48;
            self.keys.hash_words(ends, v4(&key.laddr) | v4(&key.raddr) << 32)
        } else {
            self.keys.hash(&key.bytes())
        }
    }

    /// Counts a TCP packet of flow `key`.
    pub(crate) fn count(&self, key: &FlowKey, p: &FlowPacket) {
        let h = self.hash(key);
        let mut t = self.table.lock();
        if let Some(f) = t.get_mut(key, h) {
            let restart = p.first_syn && p.seq != f.isn && (!f.confirmed || f.closed);
            if !restart {
                if belongs(f, p) {
                    add(f, p);
                }
                return;
            }
        } else if !p.first_syn {
            // Not a connection the hooks saw start: nothing to count it in.
            return;
        }
        let mut flow = Flow {
            isn: p.seq,
            times: Times {
                start: p.now,
                last: p.now,
                ..Times::default()
            },
            ..Flow::default()
        };
        add(&mut flow, p);
        if t.insert(*key, h, flow).is_ok() {
            return;
        }
        if t.evict_one(EVICT_BUDGET, |_, f| !f.confirmed) {
            self.evicted.add(1, Relaxed);
            if t.insert(*key, h, flow).is_ok() {
                return;
            }
        }
        self.untracked.add(1, Relaxed);
    }

    /// The connection of socket `owner` on flow `key` is established: its flow is confirmed.
    pub(crate) fn confirm(&self, key: &FlowKey, owner: usize) {
        let h = self.hash(key);
        if let Some(f) = self.table.lock().get_mut(key, h) {
            f.confirmed = true;
            f.owner = owner;
            f.closed = false;
        }
    }

    /// The connection of socket `owner` reached CLOSE.
    pub(crate) fn close(&self, key: &FlowKey, owner: usize) {
        let h = self.hash(key);
        if let Some(f) = self.table.lock().get_mut(key, h) {
            if f.owner == owner {
                f.closed = true;
            }
        }
    }

    /// Takes the counts of the flow socket `owner` confirmed (for its summary) and forgets it.
    pub(crate) fn take(&self, key: &FlowKey, owner: usize) -> Option<FlowCounts> {
        let h = self.hash(key);
        let mut t = self.table.lock();
        match t.get_mut(key, h) {
            Some(f) if f.confirmed && f.owner == owner => t.remove(key, h).map(|f| f.result()),
            _ => None,
        }
    }

    /// The counts so far of the flow socket `owner` confirmed (for interim records).
    pub(crate) fn peek(&self, key: &FlowKey, owner: usize) -> Option<FlowCounts> {
        let h = self.hash(key);
        match self.table.lock().get_mut(key, h) {
            Some(f) if f.confirmed && f.owner == owner => Some(f.result()),
            _ => None,
        }
    }

    /// Forgets the flow of a connection attempt that ended before it was established.
    pub(crate) fn forget_unconfirmed(&self, key: &FlowKey) {
        let h = self.hash(key);
        let mut t = self.table.lock();
        if matches!(t.get_mut(key, h), Some(f) if !f.confirmed) {
            t.remove(key, h);
        }
    }

    /// Forgets every flow, in constant time.
    pub(crate) fn clear(&self) {
        self.table.lock().clear();
    }

    /// (capacity, flows now, first SYNs left uncounted, handshakes evicted).
    pub(crate) fn counts(&self) -> (usize, usize, u64, u64) {
        let t = self.table.lock();
        (
            t.capacity(),
            t.len(),
            self.untracked.load(Relaxed),
            self.evicted.load(Relaxed),
        )
    }
}

/// Whether a packet of an existing flow is its connection's (see the module's documentation).
fn belongs(f: &Flow, p: &FlowPacket) -> bool {
    !f.reset_out && (!f.closed || (!p.inbound && p.sender == f.owner))
}

fn add(f: &mut Flow, p: &FlowPacket) {
    f.reset_out |= p.rst && !p.inbound && f.owner != 0 && p.sender == f.owner;
    f.counts.fin_in |= p.fin && p.inbound;
    let (c, t) = (&mut f.counts, &mut f.times);
    if p.inbound {
        c.pkts_in += 1;
        c.bytes_in += p.bytes;
    } else {
        c.pkts_out += 1;
        c.bytes_out += p.bytes;
    }
    if p.data {
        let first = if p.inbound {
            &mut t.first_rx
        } else {
            &mut t.first_tx
        };
        first.get_or_insert(p.now);
    }
    t.max_idle = t.max_idle.max(p.now.saturating_sub(t.last));
    t.last = t.last.max(p.now);
}

impl Flow {
    fn result(&self) -> FlowCounts {
        let t = &self.times;
        FlowCounts {
            first_tx_ns: t.first_tx.map(|f| f.saturating_sub(t.start)),
            first_rx_ns: t.first_rx.map(|f| f.saturating_sub(t.start)),
            max_idle_ns: t.max_idle,
            ..self.counts
        }
    }
}

#[kunit_tests(tcplog_flows)]
mod tests {
    use super::*;

    fn key(rport: u16) -> FlowKey {
        let mut raddr = [0u8; 16];
        raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        FlowKey::new(
            1,
            abi::AF_INET,
            [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            80,
            raddr,
            rport,
        )
    }

    fn pkt(inbound: bool, bytes: u64, first_syn: bool, seq: u32) -> FlowPacket {
        FlowPacket {
            inbound,
            bytes,
            data: bytes > 60,
            first_syn,
            rst: false,
            fin: false,
            seq,
            sender: if inbound { 0 } else { OWNER },
            now: bytes * 1000,
        }
    }

    /// A reset of `bytes` that `sender` sends.
    fn reset(bytes: u64, sender: usize) -> FlowPacket {
        FlowPacket {
            rst: true,
            sender,
            ..pkt(false, bytes, false, 0)
        }
    }

    fn flows(max: usize) -> Result<Pin<KBox<Flows>>> {
        KBox::pin_init(Flows::new(max, HashKeys::new())?, GFP_KERNEL)
    }

    /// The socket of the tests' connections, and the kernel's control socket.
    const OWNER: usize = 0x1000;
    const CONTROL: usize = 0x9000;

    #[test]
    fn a_connection_ends_with_its_sockets_reset() -> Result {
        let f = flows(8)?;
        f.count(&key(1), &pkt(false, 60, true, 7));
        f.count(&key(1), &pkt(true, 60, false, 0));
        f.confirm(&key(1), OWNER);
        let fin = FlowPacket {
            fin: true,
            ..pkt(true, 52, false, 0)
        };
        f.count(&key(1), &fin);
        f.count(&key(1), &reset(52, OWNER));
        // What crosses the reset: the peer's segment in flight, the kernel's answer to it.
        f.count(&key(1), &pkt(true, 52, false, 0));
        f.count(&key(1), &reset(52, CONTROL));
        let c = f.take(&key(1), OWNER).ok_or(EINVAL)?;
        assert_eq!(
            (c.pkts_in, c.bytes_in, c.pkts_out, c.bytes_out),
            (2, 112, 2, 112)
        );
        assert!(c.fin_in);
        Ok(())
    }

    #[test]
    fn after_close_only_the_sockets_own_reset_counts() -> Result {
        // TCP unhashes the socket (CLOSE) before its close sends the reset: a peer segment in
        // between finds no socket, and the kernel's reply to it may go out first.
        let f = flows(8)?;
        f.count(&key(4), &pkt(false, 60, true, 7));
        f.count(&key(4), &pkt(true, 60, false, 0));
        f.confirm(&key(4), OWNER);
        f.close(&key(4), OWNER);
        f.count(&key(4), &pkt(true, 52, false, 0));
        f.count(&key(4), &reset(40, CONTROL));
        f.count(&key(4), &reset(52, OWNER));
        f.count(&key(4), &reset(40, CONTROL));
        let c = f.take(&key(4), OWNER).ok_or(EINVAL)?;
        assert_eq!(
            (c.pkts_in, c.bytes_in, c.pkts_out, c.bytes_out),
            (1, 60, 2, 112)
        );
        Ok(())
    }

    #[test]
    fn only_a_first_syn_starts_a_flow() -> Result {
        let f = flows(8)?;
        f.count(&key(1), &pkt(true, 52, false, 0));
        assert_eq!(f.counts().1, 0);
        f.count(&key(1), &pkt(true, 60, true, 7));
        f.count(&key(1), &pkt(false, 60, false, 0));
        f.count(&key(1), &pkt(true, 52, false, 0));
        f.confirm(&key(1), OWNER);
        let c = f.take(&key(1), OWNER).ok_or(EINVAL)?;
        assert_eq!(
            (c.pkts_in, c.bytes_in, c.pkts_out, c.bytes_out),
            (2, 112, 1, 60)
        );
        assert!(c.first_tx_ns.is_none() && c.first_rx_ns.is_none());
        assert_eq!(f.counts().1, 0);
        Ok(())
    }

    #[test]
    fn a_confirmed_flow_is_never_restarted() -> Result {
        let f = flows(8)?;
        f.count(&key(2), &pkt(true, 60, true, 7));
        f.confirm(&key(2), 0x2000);
        // A forged SYN with another sequence number is one more packet of the tuple.
        f.count(&key(2), &pkt(true, 40, true, 99));
        let c = f.take(&key(2), 0x2000).ok_or(EINVAL)?;
        assert_eq!((c.pkts_in, c.bytes_in), (2, 100));
        Ok(())
    }

    #[test]
    fn a_new_attempt_restarts_an_unconfirmed_flow() -> Result {
        let f = flows(8)?;
        f.count(&key(3), &pkt(true, 60, true, 7));
        f.count(&key(3), &pkt(true, 60, true, 7)); // Retransmitted: counted.
        f.count(&key(3), &pkt(true, 64, true, 8)); // A new attempt: afresh.
        f.confirm(&key(3), 0x3000);
        let c = f.take(&key(3), 0x3000).ok_or(EINVAL)?;
        assert_eq!((c.pkts_in, c.bytes_in), (1, 64));
        // Only the owner takes a flow.
        f.count(&key(3), &pkt(true, 60, true, 9));
        f.confirm(&key(3), 0x3000);
        assert!(f.take(&key(3), 0x4000).is_none());
        Ok(())
    }

    #[test]
    fn handshakes_are_evicted_confirmed_flows_never() -> Result {
        let f = flows(4)?;
        for p in 0..4 {
            f.count(&key(10 + p), &pkt(false, 60, true, 1));
        }
        f.confirm(&key(10), 0x10);
        f.confirm(&key(11), 0x11);
        // Room is made by evicting a handshake.
        f.count(&key(20), &pkt(false, 60, true, 1));
        assert_eq!(f.counts().3, 1);
        f.confirm(&key(20), 0x20);
        f.count(&key(21), &pkt(false, 60, true, 1));
        f.confirm(&key(21), 0x21);
        // Only confirmed flows are left: the next SYN is not counted.
        f.count(&key(22), &pkt(false, 60, true, 1));
        assert_eq!(f.counts().2, 1);
        for (p, owner) in [(10, 0x10), (11, 0x11), (20, 0x20), (21, 0x21)] {
            assert!(f.take(&key(p), owner).is_some());
        }
        Ok(())
    }
}
