//! Decoding the record stream of `/dev/tcplog` (and of files that hold it).
//!
//! [`Decoder`] walks a byte buffer record by record. A record whose header does not make sense
//! (wrong magic, impossible length, truncated) is not trusted: the decoder reports the damage and
//! resynchronises on the next aligned record magic, like a reader of HP-UX ipl's stream would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tcplog_ctl::{
    self as abi, close, config_item, op, open, rtype, ConfigBody, EventBody, LimitBody, LostBody,
    MarkBody, PacketBody, Pod, RecordHeader, SummaryBody,
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
    /// The fixed part, then the packet's bytes (IP header, transport header, payload).
    Packet(PacketBody, Vec<u8>),
    Limit(LimitBody),
    Mark(MarkBody),
    /// A type this tool does not know (a newer module): kept as raw bytes.
    Unknown(Vec<u8>),
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
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
        // Damage: skip to the next aligned magic that starts a plausible record.
        let start = self.off;
        let mut off = start + abi::RECORD_ALIGN;
        while off < self.buf.len() {
            if self.magic_at(off) {
                break;
            }
            off += abi::RECORD_ALIGN;
        }
        let off = off.min(self.buf.len());
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

/// A NUL-padded command name as text.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
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
