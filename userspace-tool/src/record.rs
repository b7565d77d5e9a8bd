//! Decoding the record stream of `/dev/tcplog` (and of files that hold it).
//!
//! [`Decoder`] walks a byte buffer record by record. A record whose header does not make sense
//! (wrong magic, impossible length, truncated) is not trusted: the decoder reports the damage and
//! resynchronises on the next aligned record magic, like a reader of HP-UX ipl's stream would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tcplog_ctl::{
    self as abi, close, config_item, op, open, rtype, ConfigBody, EventBody, InterimBody,
    LimitBody, LostBody, MarkBody, PacketBody, Pod, RecordHeader, SummaryBody,
};

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub header: RecordHeader,
    pub body: Body,
}

/// The type-specific part of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Lost(LostBody),
    Config(ConfigBody),
    Event(EventBody),
    Summary(SummaryBody),
    /// An open connection's counters so far, and since the previous such record.
    Interim(InterimBody),
    /// The fixed part, then the packet's bytes (IP header, transport header, payload).
    Packet(PacketBody, Vec<u8>),
    Limit(LimitBody),
    Mark(MarkBody),
    /// A type this tool does not know (a newer module): kept as raw bytes.
    Unknown(Vec<u8>),
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
// Nearly every item is a record, moved once to its consumer: boxing it would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Record(Record),
    /// Bytes that are not a record, skipped to reach the next one.
    Damaged {
        offset: usize,
        len: usize,
    },
}

/// Walks a buffer of records.
pub struct Decoder<'a> {
    buf: &'a [u8],
    off: usize,
}

const HDR: usize = std::mem::size_of::<RecordHeader>();

/// Whether a header's `len` could be a record's.
fn plausible_len(len: usize) -> bool {
    (HDR..=abi::MAX_RECORD_LEN).contains(&len) && len % abi::RECORD_ALIGN == 0
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, off: 0 }
    }

    /// Bytes consumed so far; a trailing partial record is not consumed.
    pub fn offset(&self) -> usize {
        self.off
    }

    /// Whether the header at `off` is plausible and its whole record is in the buffer.
    fn record_at(&self, off: usize) -> Option<(RecordHeader, usize)> {
        let h = RecordHeader::read_from(&self.buf[off..])?;
        let len = usize::from(h.len);
        let plausible = h.magic == abi::RECORD_MAGIC && plausible_len(len);
        (plausible && off + len <= self.buf.len()).then_some((h, len))
    }

    /// Whether `off` starts something that looks like a record header, complete or not.
    fn magic_at(&self, off: usize) -> bool {
        self.buf
            .get(off..off + 4)
            .is_some_and(|m| m == abi::RECORD_MAGIC.to_ne_bytes())
    }

    /// The next record or damaged span; `None` at the end of the buffer or before a record that
    /// is not complete yet (so that a stream reader can append more bytes and go on).
    pub fn next_item(&mut self) -> Option<Item> {
        if self.off >= self.buf.len() {
            return None;
        }
        if let Some((header, len)) = self.record_at(self.off) {
            let body_bytes = &self.buf[self.off + HDR..self.off + len];
            self.off += len;
            return Some(Item::Record(Record {
                header,
                body: decode_body(header.rtype, body_bytes),
            }));
        }
        // A plausible header whose record runs past the end: wait for more.
        if self.magic_at(self.off) {
            if let Some(h) = RecordHeader::read_from(&self.buf[self.off..]) {
                if plausible_len(usize::from(h.len)) {
                    return None;
                }
            } else {
                return None;
            }
        }
        // Damage: skip to the next magic, at any offset (bytes may have been lost or inserted,
        // not only changed).
        let start = self.off;
        let mut off = start + 1;
        while off < self.buf.len() && !self.magic_at(off) {
            off += 1;
        }
        self.off = off;
        Some(Item::Damaged {
            offset: start,
            len: off - start,
        })
    }
}

fn decode_body(ty: u16, bytes: &[u8]) -> Body {
    let parsed = match ty {
        rtype::LOST => LostBody::read_from(bytes).map(Body::Lost),
        rtype::CONFIG => ConfigBody::read_from(bytes).map(Body::Config),
        rtype::EVENT => EventBody::read_from(bytes).map(Body::Event),
        rtype::SUMMARY => SummaryBody::read_from(bytes).map(Body::Summary),
        rtype::PACKET => PacketBody::read_from(bytes).and_then(|p| {
            let n = std::mem::size_of::<PacketBody>();
            let len = usize::from(p.ip_hlen) + usize::from(p.l4_hlen) + usize::from(p.payload_len);
            bytes.get(n..n + len).map(|d| Body::Packet(p, d.to_vec()))
        }),
        rtype::LIMIT => LimitBody::read_from(bytes).map(Body::Limit),
        rtype::MARK => MarkBody::read_from(bytes).map(Body::Mark),
        rtype::INTERIM => InterimBody::read_from(bytes).map(Body::Interim),
        _ => None,
    };
    parsed.unwrap_or_else(|| Body::Unknown(bytes.to_vec()))
}

/// The name of a record type, as JSON's `type` field spells it.
pub fn type_name(ty: u16) -> &'static str {
    match ty {
        rtype::LOST => "lost",
        rtype::CONFIG => "config",
        rtype::EVENT => "event",
        rtype::SUMMARY => "summary",
        rtype::PACKET => "packet",
        rtype::LIMIT => "limit",
        rtype::MARK => "mark",
        rtype::INTERIM => "interim",
        _ => "unknown",
    }
}

/// The name of a configuration item.
pub fn config_item_name(item: u32) -> &'static str {
    match item {
        config_item::ENABLED => "enabled",
        config_item::FLUSH => "flush",
        config_item::EVENT_MASK => "event_mask",
        config_item::OPTIONS => "options",
        config_item::SNAP_LEN => "snap_len",
        config_item::FILTER => "filter",
        config_item::RULES => "rules",
        config_item::INTERIM => "interim",
        _ => "unknown",
    }
}

/// The name of a socket operation, without its protocol (JSON's `op`).
pub fn op_name(o: u16) -> &'static str {
    match o {
        op::TCP_CREATE | op::UDP_CREATE => "create",
        op::TCP_BIND | op::UDP_BIND => "bind",
        op::TCP_LISTEN => "listen",
        op::TCP_ACCEPT => "accept",
        op::TCP_CONNECT | op::UDP_CONNECT => "connect",
        op::TCP_DISCONNECT => "disconnect",
        op::TCP_CLOSE | op::UDP_CLOSE => "close",
        _ => "unknown",
    }
}

/// JSON's `family`.
pub fn family_name(f: u16) -> &'static str {
    match f {
        abi::AF_INET => "inet",
        abi::AF_INET6 => "inet6",
        _ => "unknown",
    }
}

/// JSON's `proto`.
pub fn proto_name(p: u8) -> &'static str {
    match p {
        abi::IPPROTO_TCP => "tcp",
        abi::IPPROTO_UDP => "udp",
        _ => "unknown",
    }
}

/// JSON's `proto` of an event: MPTCP sockets say so (their `protocol` is TCP's).
pub fn event_proto_name(e: &EventBody) -> &'static str {
    if e.flags & abi::EVF_MPTCP != 0 {
        "mptcp"
    } else {
        proto_name(e.protocol)
    }
}

/// JSON's `proto` of a summary: `mptcp` for an MPTCP connection's own summary, else `tcp` (its
/// subflows are TCP connections).
pub fn summary_proto_name(s: &SummaryBody) -> &'static str {
    if s.flags & abi::SUMF_MPTCP != 0 {
        "mptcp"
    } else {
        "tcp"
    }
}

/// The name of a TCP state (`InterimBody::state`), as `ss` spells them.
pub fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        13 => "bound_inactive",
        _ => "unknown",
    }
}

/// JSON's `open`.
pub fn open_name(o: u8) -> &'static str {
    match o {
        open::ACTIVE => "active",
        open::PASSIVE => "passive",
        _ => "unknown",
    }
}

/// JSON's `close`.
pub fn close_name(c: u8) -> &'static str {
    match c {
        close::FIN => "fin",
        close::RST_SENT => "rst_sent",
        close::RST_RECEIVED => "rst_received",
        close::TIMEOUT => "timeout",
        _ => "unknown",
    }
}

/// An address as records carry it (network order; IPv4 in the first 4 bytes).
pub fn ip(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == abi::AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// The symbolic name of an errno, where the tool knows it.
pub fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EAGAIN => "EAGAIN",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EALREADY => "EALREADY",
        libc::EISCONN => "EISCONN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        _ => return None,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Encodes a record the way the module does, for tests.
    pub fn encode(ty: u16, seq: u64, body: &[u8]) -> Vec<u8> {
        let len = abi::record_len(HDR + body.len());
        let h = RecordHeader {
            magic: abi::RECORD_MAGIC,
            rtype: ty,
            len: len as u16,
            seq,
            time_ns: 1_700_000_000_123_456_789,
            boot_ns: 5_000_000_000,
            cpu: 1,
            flags: 0,
        };
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(body);
        v.resize(len, 0);
        v
    }

    pub fn mark(seq: u64, value: u64) -> Vec<u8> {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        let b = MarkBody {
            value,
            index: 0,
            pid: 42,
            uid: 0,
            _pad: 0,
            comm,
        };
        encode(rtype::MARK, seq, b.as_bytes())
    }

    /// An IPv4 UDP packet record, as the module writes one: `payload` kept to `snap` bytes,
    /// standing for `count` packets 1 ms apart.
    pub fn udp_packet(seq: u64, payload: &[u8], snap: usize, count: u32) -> Vec<u8> {
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ipv4_packet(&Ipv4Packet {
            seq,
            time_ns: 1_700_000_000_000_000_000,
            dst: [127, 0, 0, 2],
            protocol: abi::IPPROTO_UDP,
            tcp_flags: 0,
            l4: &udp,
            payload,
            snap,
            count,
        })
    }

    /// What [`ipv4_packet`] builds: a packet from 127.0.0.1.
    pub struct Ipv4Packet<'a> {
        pub seq: u64,
        /// When the first of `count` packets was seen; the others follow 1 ms apart.
        pub time_ns: u64,
        pub dst: [u8; 4],
        pub protocol: u8,
        pub tcp_flags: u8,
        /// The transport header.
        pub l4: &'a [u8],
        pub payload: &'a [u8],
        pub snap: usize,
        pub count: u32,
    }

    /// An IPv4 packet record, as the module writes one for a `log body` rule on lo.
    pub fn ipv4_packet(p: &Ipv4Packet<'_>) -> Vec<u8> {
        let kept = p.payload.len().min(p.snap);
        let total = 20 + p.l4.len() + p.payload.len();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, p.protocol, 0, 0, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend(p.dst);
        let mut ifname = [0u8; 16];
        ifname[..2].copy_from_slice(b"lo");
        let b = abi::PacketBody {
            netns: 4026531840,
            ifindex: 1,
            ifname,
            orig_len: total as u32,
            count: p.count,
            rule: 1,
            hook: 1,
            direction: abi::direction::IN,
            family: abi::AF_INET,
            protocol: p.protocol,
            tcp_flags: p.tcp_flags,
            flags: abi::PKF_BODY
                | if kept < p.payload.len() {
                    abi::PKF_TRUNCATED
                } else {
                    0
                },
            ip_hlen: 20,
            l4_hlen: p.l4.len() as u16,
            payload_len: kept as u16,
            last_ns: p.time_ns + u64::from(p.count - 1) * 1_000_000,
        };
        let mut body = b.as_bytes().to_vec();
        body.extend(ip);
        body.extend(p.l4);
        body.extend(&p.payload[..kept]);
        encode_at(rtype::PACKET, p.seq, &body, p.time_ns)
    }

    /// As [`encode`], at a given time.
    pub fn encode_at(ty: u16, seq: u64, body: &[u8], time_ns: u64) -> Vec<u8> {
        let mut v = encode(ty, seq, body);
        v[16..24].copy_from_slice(&time_ns.to_ne_bytes());
        v
    }

    #[test]
    fn decodes_back_to_back_records() {
        let mut buf = mark(1, 10);
        buf.extend(mark(2, 20));
        let mut d = Decoder::new(&buf);
        let Some(Item::Record(r)) = d.next_item() else {
            panic!("no record")
        };
        assert_eq!(r.header.seq, 1);
        assert!(matches!(
            r.body,
            Body::Mark(MarkBody {
                value: 10,
                pid: 42,
                ..
            })
        ));
        let Some(Item::Record(r)) = d.next_item() else {
            panic!("no record")
        };
        assert_eq!(r.header.seq, 2);
        assert_eq!(d.next_item(), None);
        assert_eq!(d.offset(), buf.len());
    }

    #[test]
    fn waits_for_a_partial_record() {
        let buf = mark(1, 10);
        let mut d = Decoder::new(&buf[..50]);
        assert_eq!(d.next_item(), None);
        assert_eq!(d.offset(), 0);
    }

    #[test]
    fn resynchronises_after_damage() {
        let mut buf = vec![0xffu8; 24];
        buf.extend(mark(7, 70));
        let mut d = Decoder::new(&buf);
        assert_eq!(d.next_item(), Some(Item::Damaged { offset: 0, len: 24 }));
        let Some(Item::Record(r)) = d.next_item() else {
            panic!("no record after damage")
        };
        assert_eq!(r.header.seq, 7);
    }

    proptest::proptest! {
        /// Arbitrary bytes never make the decoder panic or stall, and every byte is accounted
        /// for: consumed as records, skipped as damage, or left as an incomplete tail.
        #[test]
        fn arbitrary_bytes_are_handled(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let mut d = Decoder::new(&bytes);
            let mut seen = 0usize;
            let mut steps = 0usize;
            while let Some(item) = d.next_item() {
                steps += 1;
                proptest::prop_assert!(steps <= bytes.len() + 1, "no progress");
                seen = match item {
                    Item::Record(r) => seen + usize::from(r.header.len),
                    Item::Damaged { offset, len } => {
                        proptest::prop_assert_eq!(offset, seen);
                        proptest::prop_assert!(len > 0);
                        seen + len
                    }
                };
                proptest::prop_assert_eq!(seen, d.offset());
            }
            proptest::prop_assert!(d.offset() <= bytes.len());
        }

        /// Whatever garbage comes first, the records after it are found again, all of them.
        #[test]
        fn resynchronises_after_any_garbage(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            values in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..20),
        ) {
            let magic = abi::RECORD_MAGIC.to_ne_bytes();
            proptest::prop_assume!(!garbage.windows(4).any(|w| w == magic));
            let mut buf = garbage.clone();
            for (i, v) in values.iter().enumerate() {
                buf.extend(mark(i as u64, *v));
            }
            let mut d = Decoder::new(&buf);
            let mut found = Vec::new();
            while let Some(item) = d.next_item() {
                if let Item::Record(r) = item {
                    if let Body::Mark(m) = r.body {
                        found.push(m.value);
                    }
                }
            }
            // Garbage ending in part of a magic could swallow nothing of the records.
            proptest::prop_assert_eq!(found, values);
        }
    }

    #[test]
    fn unknown_types_are_kept() {
        let buf = encode(99, 3, &[1, 2, 3]);
        let mut d = Decoder::new(&buf);
        let Some(Item::Record(r)) = d.next_item() else {
            panic!()
        };
        assert_eq!(r.body, Body::Unknown(vec![1, 2, 3, 0, 0, 0, 0, 0]));
        assert_eq!(type_name(r.header.rtype), "unknown");
    }
}
