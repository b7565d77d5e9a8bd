//! IPFIX messages (RFC 7011): templates, data sets, and tcplog's element descriptions (RFC 5610).
//!
//! Every flow takes one of 16 templates, by its shape (IPv4 or IPv6, end of flow or interim,
//! with or without IP counters, with or without a start time): a field that is not known is
//! left out of the record rather than sent as zero. Template ids are 256 + the shape. A
//! template is sent before the first record that uses it in a session (the same message, or an
//! earlier one of the same TCP connection); [`Encoder::refresh`] makes every template and the
//! element descriptions go out again (UDP's template refresh).

use super::flow::{shape, Flow};
use super::ie::{self, iana, tcplog, FieldSpec, ELEMENT_TYPES, ELEMENT_TYPE_FIELDS, VARLEN};

/// Nanoseconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// `dateTimeNanoseconds`: the NTP timestamp format of RFC 5905 (seconds since 1900 in the high
/// 32 bits, fractions of a second in units of 2^-32 s in the low 32), as RFC 7011 section
/// 6.1.10 encodes it; rounded to the nearest fraction, so that decoding recovers the
/// nanosecond. The seconds wrap in 2036 (NTP era 1), as the format does.
pub fn ntp_timestamp(unix_ns: u64) -> u64 {
    let secs = unix_ns / 1_000_000_000 + NTP_UNIX_OFFSET_S;
    let ns = u128::from(unix_ns % 1_000_000_000);
    let frac = ((ns << 32) + 500_000_000) / 1_000_000_000;
    (u64::from(secs as u32) << 32) | frac as u64
}

/// The inverse of [`ntp_timestamp`], for timestamps of NTP era 0 (before 2036).
#[cfg(test)]
pub fn unix_ns(ntp: u64) -> u64 {
    let secs = (ntp >> 32) - NTP_UNIX_OFFSET_S;
    let ns = ((u128::from(ntp & 0xFFFF_FFFF) * 1_000_000_000) + (1 << 31)) >> 32;
    secs * 1_000_000_000 + ns as u64
}

/// One field of a flow template: which element, and where its value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    SrcPort,
    DstPort,
    Protocol,
    BiflowDirection,
    FlowDirection,
    FlowId,
    StartNs,
    StartMs,
    EndNs,
    EndMs,
    EndReason,
    TcpFlags(usize),
    Octets { delta: bool, dir: usize },
    Packets { delta: bool, dir: usize },
    DataOctets { delta: bool, dir: usize },
    Segments(usize),
    Retrans,
    Srtt,
    Pid,
    Ppid,
    Uid,
    Comm,
    Netns,
    Cgroup,
    ParentId,
    Close,
    Flags,
    State,
}

/// The fields of a template for flows of `shape`, in order.
fn fields(s: u16) -> Vec<Field> {
    use Field::*;
    let interim = s & shape::INTERIM != 0;
    let mut f = if s & shape::V6 != 0 {
        vec![SrcV6, DstV6]
    } else {
        vec![SrcV4, DstV4]
    };
    f.extend([
        SrcPort,
        DstPort,
        Protocol,
        BiflowDirection,
        FlowDirection,
        FlowId,
    ]);
    if s & shape::START != 0 {
        f.extend([StartNs, StartMs]);
    }
    f.extend([EndNs, EndMs, EndReason, TcpFlags(0), TcpFlags(1)]);
    if s & shape::IP_COUNTERS != 0 {
        for dir in 0..2 {
            f.push(Octets {
                delta: interim,
                dir,
            });
        }
        for dir in 0..2 {
            f.push(Packets {
                delta: interim,
                dir,
            });
        }
    }
    for dir in 0..2 {
        f.push(DataOctets {
            delta: interim,
            dir,
        });
    }
    if !interim {
        f.extend([Segments(0), Segments(1)]);
    }
    f.extend([
        Retrans, Srtt, Pid, Ppid, Uid, Comm, Netns, Cgroup, ParentId, Flags,
    ]);
    f.push(if interim { State } else { Close });
    f
}

impl Field {
    /// The element and its length; `pen` is tcplog's enterprise number.
    fn spec(self, pen: u32) -> FieldSpec {
        use Field::*;
        let std = |id, len| FieldSpec { id, len, pen: 0 };
        // A reverse element: IANA's under RFC 5103's enterprise, tcplog's with the reverse bit.
        let std_dir = |id, len, dir: usize| FieldSpec {
            id,
            len,
            pen: if dir == 0 { 0 } else { ie::PEN_REVERSE },
        };
        let own = |id, len| FieldSpec { id, len, pen };
        let own_dir = |id: u16, len, dir: usize| FieldSpec {
            id: if dir == 0 { id } else { id | ie::REVERSE_BIT },
            len,
            pen,
        };
        match self {
            SrcV4 => std(iana::SOURCE_IPV4_ADDRESS, 4),
            DstV4 => std(iana::DESTINATION_IPV4_ADDRESS, 4),
            SrcV6 => std(iana::SOURCE_IPV6_ADDRESS, 16),
            DstV6 => std(iana::DESTINATION_IPV6_ADDRESS, 16),
            SrcPort => std(iana::SOURCE_TRANSPORT_PORT, 2),
            DstPort => std(iana::DESTINATION_TRANSPORT_PORT, 2),
            Protocol => std(iana::PROTOCOL_IDENTIFIER, 1),
            BiflowDirection => std(iana::BIFLOW_DIRECTION, 1),
            FlowDirection => std(iana::FLOW_DIRECTION, 1),
            FlowId => std(iana::FLOW_ID, 8),
            StartNs => std(iana::FLOW_START_NANOSECONDS, 8),
            StartMs => std(iana::FLOW_START_MILLISECONDS, 8),
            EndNs => std(iana::FLOW_END_NANOSECONDS, 8),
            EndMs => std(iana::FLOW_END_MILLISECONDS, 8),
            EndReason => std(iana::FLOW_END_REASON, 1),
            TcpFlags(dir) => std_dir(iana::TCP_CONTROL_BITS, 2, dir),
            Octets { delta, dir } => std_dir(
                if delta {
                    iana::OCTET_DELTA_COUNT
                } else {
                    iana::OCTET_TOTAL_COUNT
                },
                8,
                dir,
            ),
            Packets { delta, dir } => std_dir(
                if delta {
                    iana::PACKET_DELTA_COUNT
                } else {
                    iana::PACKET_TOTAL_COUNT
                },
                8,
                dir,
            ),
            DataOctets { delta, dir } => own_dir(
                if delta {
                    tcplog::DATA_OCTET_DELTA_COUNT
                } else {
                    tcplog::DATA_OCTET_TOTAL_COUNT
                },
                8,
                dir,
            ),
            Segments(dir) => own_dir(tcplog::SEGMENT_TOTAL_COUNT, 4, dir),
            Retrans => own(tcplog::RETRANSMITTED_SEGMENT_TOTAL_COUNT, 4),
            Srtt => own(tcplog::SMOOTHED_RTT_MICROSECONDS, 4),
            Pid => own(tcplog::PROCESS_ID, 4),
            Ppid => own(tcplog::PARENT_PROCESS_ID, 4),
            Uid => own(tcplog::USER_ID, 4),
            Comm => own(tcplog::COMMAND, VARLEN),
            Netns => own(tcplog::NETWORK_NAMESPACE, 4),
            Cgroup => own(tcplog::CGROUP_ID, 8),
            ParentId => own(tcplog::PARENT_FLOW_ID, 8),
            Close => own(tcplog::CLOSE_REASON, 1),
            Flags => own(tcplog::RECORD_FLAGS, 2),
            State => own(tcplog::TCP_STATE, 1),
        }
    }

    /// Appends this field's value for `f`.
    fn write(self, f: &Flow, out: &mut Vec<u8>) {
        use Field::*;
        let ip = f.ip.unwrap_or_default();
        match self {
            SrcV4 => out.extend_from_slice(&f.src[..4]),
            DstV4 => out.extend_from_slice(&f.dst[..4]),
            SrcV6 => out.extend_from_slice(&f.src),
            DstV6 => out.extend_from_slice(&f.dst),
            SrcPort => out.extend_from_slice(&f.sport.to_be_bytes()),
            DstPort => out.extend_from_slice(&f.dport.to_be_bytes()),
            Protocol => out.push(tcplog_ctl::IPPROTO_TCP),
            BiflowDirection => out.push(f.biflow_direction),
            FlowDirection => out.push(f.flow_direction),
            FlowId => out.extend_from_slice(&f.flow_id.to_be_bytes()),
            StartNs => out.extend_from_slice(&ntp_timestamp(f.start_ns.unwrap_or(0)).to_be_bytes()),
            StartMs => out.extend_from_slice(&(f.start_ns.unwrap_or(0) / 1_000_000).to_be_bytes()),
            EndNs => out.extend_from_slice(&ntp_timestamp(f.end_ns).to_be_bytes()),
            EndMs => out.extend_from_slice(&(f.end_ns / 1_000_000).to_be_bytes()),
            EndReason => out.push(f.end_reason),
            TcpFlags(d) => out.extend_from_slice(&f.tcp_flags[d].to_be_bytes()),
            Octets { dir, .. } => out.extend_from_slice(&ip.octets[dir].to_be_bytes()),
            Packets { dir, .. } => out.extend_from_slice(&ip.packets[dir].to_be_bytes()),
            DataOctets { dir, .. } => out.extend_from_slice(&f.data_octets[dir].to_be_bytes()),
            Segments(d) => out.extend_from_slice(&f.segments[d].to_be_bytes()),
            Retrans => out.extend_from_slice(&f.retrans.to_be_bytes()),
            Srtt => out.extend_from_slice(&f.srtt_us.to_be_bytes()),
            Pid => out.extend_from_slice(&f.pid.to_be_bytes()),
            Ppid => out.extend_from_slice(&f.ppid.to_be_bytes()),
            Uid => out.extend_from_slice(&f.uid.to_be_bytes()),
            Comm => varlen(f.comm.as_bytes(), out),
            Netns => out.extend_from_slice(&f.netns.to_be_bytes()),
            Cgroup => out.extend_from_slice(&f.cgroup_id.to_be_bytes()),
            ParentId => out.extend_from_slice(&f.parent_id.to_be_bytes()),
            Close => out.push(f.close),
            Flags => out.extend_from_slice(&f.flags.to_be_bytes()),
            State => out.push(f.state),
        }
    }
}

/// A variable-length value (RFC 7011 section 7): one length byte below 255, else 255 and two.
fn varlen(v: &[u8], out: &mut Vec<u8>) {
    let v = &v[..v.len().min(usize::from(u16::MAX))];
    if v.len() < 255 {
        out.push(v.len() as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(v);
}

/// Appends a field specifier.
fn spec_bytes(s: FieldSpec, out: &mut Vec<u8>) {
    if s.pen == 0 {
        out.extend_from_slice(&s.id.to_be_bytes());
        out.extend_from_slice(&s.len.to_be_bytes());
    } else {
        out.extend_from_slice(&(s.id | ie::ENTERPRISE_BIT).to_be_bytes());
        out.extend_from_slice(&s.len.to_be_bytes());
        out.extend_from_slice(&s.pen.to_be_bytes());
    }
}

/// The template id of a flow shape.
pub fn template_id(s: u16) -> u16 {
    ie::FIRST_TEMPLATE_ID + s
}

/// The template id of the RFC 5610 element-description options template.
pub const ELEMENT_TYPES_TEMPLATE_ID: u16 = ie::FIRST_TEMPLATE_ID + shape::COUNT;

/// A template record (id, field count, field specifiers) for flows of shape `s`.
fn template_record(s: u16, pen: u32) -> Vec<u8> {
    let f = fields(s);
    let mut out = Vec::new();
    out.extend_from_slice(&template_id(s).to_be_bytes());
    out.extend_from_slice(&(f.len() as u16).to_be_bytes());
    for field in f {
        spec_bytes(field.spec(pen), &mut out);
    }
    out
}

/// The options template record describing tcplog's elements (RFC 5610).
fn element_types_template() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&ELEMENT_TYPES_TEMPLATE_ID.to_be_bytes());
    out.extend_from_slice(&(ELEMENT_TYPE_FIELDS.len() as u16).to_be_bytes());
    out.extend_from_slice(&ie::ELEMENT_TYPE_SCOPE.to_be_bytes());
    for f in ELEMENT_TYPE_FIELDS {
        spec_bytes(f, &mut out);
    }
    out
}

/// The options record describing element `i` of [`ELEMENT_TYPES`].
fn element_type_record(i: usize, pen: u32) -> Vec<u8> {
    let e = &ELEMENT_TYPES[i];
    let mut out = Vec::new();
    out.extend_from_slice(&pen.to_be_bytes());
    out.extend_from_slice(&e.id.to_be_bytes());
    out.push(e.data_type);
    out.push(e.semantics);
    out.extend_from_slice(&e.units.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    varlen(e.name.as_bytes(), &mut out);
    varlen(e.description.as_bytes(), &mut out);
    out
}

/// An encoded message and how many flows it carries (taken from the front of the queue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub flows: usize,
    /// Data records in it: its flows and any element descriptions.
    pub records: u32,
}

/// The state of one IPFIX stream: its sequence number and what the collector has been told.
#[derive(Clone, Debug)]
pub struct Encoder {
    domain: u32,
    pen: u32,
    max_len: usize,
    /// Data records sent in this session, modulo 2^32 (the next message's sequence number).
    seq: u32,
    /// Which flow templates were sent (bit per shape).
    announced: u32,
    /// Whether the element-description options template was sent, and how many of the
    /// descriptions.
    types_template_sent: bool,
    types_sent: usize,
}

/// The smallest message size the encoder accepts: room for the largest template or record.
pub const MIN_MESSAGE_LEN: usize = 512;

impl Encoder {
    /// `max_len`: the largest message to make (at least [`MIN_MESSAGE_LEN`], at most 65535).
    pub fn new(domain: u32, pen: u32, max_len: usize) -> Self {
        Encoder {
            domain,
            pen,
            max_len: max_len.clamp(MIN_MESSAGE_LEN, usize::from(u16::MAX)),
            seq: 0,
            announced: 0,
            types_template_sent: false,
            types_sent: 0,
        }
    }

    /// A new transport session (a TCP connection): sequence numbers start again at 0 and
    /// everything must be announced again.
    pub fn new_session(&mut self) {
        self.seq = 0;
        self.refresh();
    }

    /// Sends every template and the element descriptions again before what needs them (a
    /// template refresh).
    pub fn refresh(&mut self) {
        self.announced = 0;
        self.types_template_sent = false;
        self.types_sent = 0;
    }

    /// The sequence number of the next message.
    #[cfg(test)]
    pub fn sequence(&self) -> u32 {
        self.seq
    }

    /// Whether a message is due even without flows: element descriptions not yet sent.
    pub fn has_announcements(&self) -> bool {
        !self.types_template_sent || self.types_sent < ELEMENT_TYPES.len()
    }

    /// Encodes one message with as many of `flows` (from the front) as fit, preceded by the
    /// element descriptions and templates not yet sent; `None` when there is nothing to send.
    pub fn message<'a>(
        &mut self,
        flows: impl IntoIterator<Item = &'a Flow>,
        export_secs: u32,
    ) -> Option<Message> {
        let mut m = Builder::new(self.max_len);
        let mut records = 0u32;
        // Element descriptions first: a collector that reads them (RFC 5610) then knows the
        // fields of the templates that follow.
        if !self.types_template_sent {
            m.add(ie::SET_OPTIONS_TEMPLATE, &element_types_template());
            self.types_template_sent = true;
        }
        while self.types_sent < ELEMENT_TYPES.len() {
            if !m.add(
                ELEMENT_TYPES_TEMPLATE_ID,
                &element_type_record(self.types_sent, self.pen),
            ) {
                break;
            }
            self.types_sent += 1;
            records += 1;
        }
        let mut taken = 0;
        if !self.has_announcements() {
            for f in flows {
                let s = f.shape();
                let bit = 1u32 << s;
                let mut rec = Vec::new();
                for field in fields(s) {
                    field.write(f, &mut rec);
                }
                let tmpl = (self.announced & bit == 0).then(|| template_record(s, self.pen));
                if !m.fits(tmpl.as_deref(), template_id(s), rec.len()) {
                    break;
                }
                if let Some(t) = tmpl {
                    m.add(ie::SET_TEMPLATE, &t);
                    self.announced |= bit;
                }
                m.add(template_id(s), &rec);
                taken += 1;
                records += 1;
            }
        }
        if m.is_empty() {
            return None;
        }
        let bytes = m.finish(export_secs, self.seq, self.domain);
        self.seq = self.seq.wrapping_add(records);
        Some(Message {
            bytes,
            flows: taken,
            records,
        })
    }
}

/// Builds one message: sets of records, each set padded to a multiple of 4 bytes.
struct Builder {
    buf: Vec<u8>,
    max: usize,
    /// The open set: where its header is, and its id.
    set: Option<(usize, u16)>,
}

impl Builder {
    fn new(max: usize) -> Self {
        Builder {
            buf: vec![0; ie::MESSAGE_HEADER_LEN],
            max,
            set: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.buf.len() == ie::MESSAGE_HEADER_LEN
    }

    /// Bytes adding `rec` to set `id` takes: the record, and a set header (and the padding of
    /// the set it closes) if it opens a new set.
    fn cost(&self, id: u16, rec: usize) -> usize {
        match self.set {
            Some((_, open)) if open == id => rec,
            _ => 3 + ie::SET_HEADER_LEN + rec,
        }
    }

    /// Whether a record of `rec` bytes for template `id`, after `tmpl` if any, fits (with the
    /// padding of the set it ends up in).
    fn fits(&self, tmpl: Option<&[u8]>, id: u16, rec: usize) -> bool {
        let need = match tmpl {
            Some(t) => self.cost(ie::SET_TEMPLATE, t.len()) + 3 + ie::SET_HEADER_LEN + rec,
            None => self.cost(id, rec),
        };
        self.buf.len() + need + 3 <= self.max
    }

    /// Adds a record to set `id` (opening it if another set is open); false if it does not fit.
    fn add(&mut self, id: u16, rec: &[u8]) -> bool {
        if self.buf.len() + self.cost(id, rec.len()) + 3 > self.max {
            return false;
        }
        if !matches!(self.set, Some((_, open)) if open == id) {
            self.close_set();
            self.set = Some((self.buf.len(), id));
            self.buf.extend_from_slice(&id.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        self.buf.extend_from_slice(rec);
        true
    }

    /// Pads the open set to a multiple of 4 bytes and writes its length.
    fn close_set(&mut self) {
        if let Some((at, _)) = self.set.take() {
            while (self.buf.len() - at) % 4 != 0 {
                self.buf.push(0);
            }
            let len = (self.buf.len() - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn finish(mut self, export_secs: u32, seq: u32, domain: u32) -> Vec<u8> {
        self.close_set();
        let len = self.buf.len() as u16;
        self.buf[0..2].copy_from_slice(&ie::VERSION.to_be_bytes());
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        self.buf[4..8].copy_from_slice(&export_secs.to_be_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_be_bytes());
        self.buf[12..16].copy_from_slice(&domain.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfix::decode::{self, Session};
    use crate::ipfix::flow::tests::{header, summary};
    use crate::ipfix::ie::{PEN_DOCUMENTATION as PEN, PEN_REVERSE};

    fn flow() -> Flow {
        let s = summary();
        Flow::end(&header(5), &s)
    }

    /// An encoder past its element descriptions (the first messages of a session).
    fn described(max: usize) -> (Encoder, Session, Vec<decode::Decoded>) {
        let mut e = Encoder::new(7, PEN, max);
        let mut s = Session::default();
        let mut out = Vec::new();
        while e.has_announcements() {
            let m = e.message(&[], 1_700_000_000).unwrap();
            assert_eq!(m.flows, 0);
            out.push(s.message(&m.bytes).unwrap());
        }
        (e, s, out)
    }

    #[test]
    fn ntp_timestamps_round_trip_to_the_nanosecond() {
        for ns in [
            0u64,
            1,
            999_999_999,
            1_700_000_000_123_456_789,
            1_700_000_000_999_999_999,
            2_000_000_000_000_000_001,
        ] {
            assert_eq!(unix_ns(ntp_timestamp(ns)), ns, "{ns}");
        }
        // The Unix epoch is 2208988800 s after NTP's; half a second is 2^31.
        assert_eq!(
            ntp_timestamp(500_000_000),
            (2_208_988_800u64 << 32) | (1 << 31)
        );
    }

    /// The bytes of a message with one summary, after the element descriptions: the message
    /// header (length 400, export time, sequence number 18: the element descriptions were
    /// data records, domain 7); a template set with template 268 (IPv4, end of flow, IP
    /// counters, start known: 34 fields, reverse ones under PEN 29305 or with bit 0x4000,
    /// tcplog's under 32473 = 0x7ed9, the command variable-length); a data set with the record
    /// (the command `socat` as length 5 and its bytes) and 3 bytes of padding to a multiple of 4.
    const GOLDEN: &str = "\
        000a 0194 6553f100 00000012 00000007 \
        0002 00d8 \
            010c 0022 \
            0008 0004  000c 0004  0007 0002  000b 0002  0004 0001  00ef 0001  003d 0001 \
            0094 0008  009c 0008  0098 0008  009d 0008  0099 0008  0088 0001 \
            0006 0002  8006 0002 00007279 \
            0055 0008  8055 0008 00007279  0056 0008  8056 0008 00007279 \
            8001 0008 00007ed9  c001 0008 00007ed9  8003 0004 00007ed9  c003 0004 00007ed9 \
            8004 0004 00007ed9  8005 0004 00007ed9  8006 0004 00007ed9  800f 0004 00007ed9 \
            8007 0004 00007ed9  8008 ffff 00007ed9  8009 0004 00007ed9  800a 0008 00007ed9 \
            800b 0008 00007ed9  800d 0002 00007ed9  800c 0001 00007ed9 \
        010c 00ac \
            7f000001 7f000002 9c40 0050 06 01 01 \
            1122334455667788 \
            e8fe6f80 1f9add37  0000018bcfe5687b \
            e8fe6f82 9f9add3c  0000018bcfe5723f  03 \
            0013 0013 \
            00000000000005bc 0000000000000970 0000000000000009 0000000000000008 \
            00000000000003e8 00000000000007d0 00000006 00000007 \
            00000001 00000159 00001092 00000001 000003e8 05 736f636174 f0000000 \
            0000000000001b59 0000000000000000 0088 01 \
            000000";

    fn golden() -> Vec<u8> {
        let hex: String = GOLDEN.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_summary_encodes_to_the_golden_bytes() {
        let (mut e, _, _) = described(1400);
        let seq = e.sequence();
        assert_eq!(
            seq,
            ELEMENT_TYPES.len() as u32,
            "descriptions are data records"
        );
        let mut f = flow();
        f.comm = "socat".into();
        let m = e.message([&f], 0x6553_f100).unwrap();
        assert_eq!(m.flows, 1);
        let want = golden();
        if m.bytes != want {
            let hex: Vec<String> = m.bytes.iter().map(|b| format!("{b:02x}")).collect();
            panic!("got {}", hex.join(""));
        }
        assert_eq!(e.sequence(), seq + 1);
    }

    #[test]
    fn records_round_trip_through_a_decoder() {
        let (mut e, mut s, first) = described(1400);
        // The descriptions: an options template with 2 scope fields, then one record per
        // element, named, under tcplog's enterprise number.
        let (id, scope, fields) = &first[0].templates[0];
        assert_eq!(
            (*id, *scope, fields.len()),
            (ELEMENT_TYPES_TEMPLATE_ID, 2, 9)
        );
        let described: Vec<_> = first.iter().flat_map(|d| d.records.clone()).collect();
        assert_eq!(described.len(), ELEMENT_TYPES.len());
        let names: Vec<String> = described
            .iter()
            .map(|(_, r)| {
                String::from_utf8(decode::bytes(r, 0, iana::INFORMATION_ELEMENT_NAME).unwrap())
                    .unwrap()
            })
            .collect();
        assert!(
            names.contains(&"reverseTcplogDataOctetTotalCount".to_owned()),
            "{names:?}"
        );
        assert!(described.iter().all(
            |(_, r)| decode::num(r, 0, iana::PRIVATE_ENTERPRISE_NUMBER) == Some(u64::from(PEN))
        ));

        let sum = summary();
        let f = flow();
        let d = s.message(&e.message([&f], 1).unwrap().bytes).unwrap();
        let (tid, r) = &d.records[0];
        assert_eq!(*tid, template_id(f.shape()));
        let n = |pen, id| decode::num(r, pen, id).unwrap();
        assert_eq!(
            decode::bytes(r, 0, iana::SOURCE_IPV4_ADDRESS).unwrap(),
            sum.laddr[..4]
        );
        assert_eq!(
            decode::bytes(r, 0, iana::DESTINATION_IPV4_ADDRESS).unwrap(),
            sum.raddr[..4]
        );
        assert_eq!(n(0, iana::SOURCE_TRANSPORT_PORT), 40000);
        assert_eq!(n(0, iana::DESTINATION_TRANSPORT_PORT), 80);
        assert_eq!(n(0, iana::PROTOCOL_IDENTIFIER), 6);
        assert_eq!(n(0, iana::OCTET_TOTAL_COUNT), sum.ip_bytes_out);
        assert_eq!(n(PEN_REVERSE, iana::OCTET_TOTAL_COUNT), sum.ip_bytes_in);
        assert_eq!(n(0, iana::PACKET_TOTAL_COUNT), sum.pkts_out);
        assert_eq!(n(PEN_REVERSE, iana::PACKET_TOTAL_COUNT), sum.pkts_in);
        assert_eq!(unix_ns(n(0, iana::FLOW_START_NANOSECONDS)), sum.start_ns);
        assert_eq!(
            unix_ns(n(0, iana::FLOW_END_NANOSECONDS)),
            sum.start_ns + sum.duration_ns
        );
        assert_eq!(
            n(0, iana::FLOW_START_MILLISECONDS),
            sum.start_ns / 1_000_000
        );
        assert_eq!(n(0, iana::FLOW_ID), sum.sock_id);
        assert_eq!(n(PEN, tcplog::DATA_OCTET_TOTAL_COUNT), 1000);
        assert_eq!(
            n(PEN, tcplog::DATA_OCTET_TOTAL_COUNT | ie::REVERSE_BIT),
            2000
        );
        assert_eq!(n(PEN, tcplog::USER_ID), 1000);
        assert_eq!(decode::bytes(r, PEN, tcplog::COMMAND).unwrap(), b"curl");
        assert_eq!(d.seq, ELEMENT_TYPES.len() as u32);
        assert_eq!(d.domain, 7);

        // Every shape: IPv6, interim, no IP counters, no start; each template once per session.
        let mut shapes = Vec::new();
        for sh in 0..shape::COUNT {
            let mut g = f.clone();
            g.v6 = sh & shape::V6 != 0;
            g.interim = sh & shape::INTERIM != 0;
            if sh & shape::IP_COUNTERS == 0 {
                g.ip = None;
            }
            if sh & shape::START == 0 {
                g.start_ns = None;
            }
            g.src[15] = sh as u8;
            shapes.push(g);
        }
        let mut queue: Vec<Flow> = shapes.iter().chain(shapes.iter()).cloned().collect();
        let mut got = Vec::new();
        let mut templates = 0;
        while let Some(m) = e.message(&queue, 2) {
            assert!(m.bytes.len() <= 1400);
            queue.drain(..m.flows);
            let d = s.message(&m.bytes).unwrap();
            templates += d.templates.len();
            got.extend(d.records);
        }
        assert_eq!(templates, 15, "the 15 shapes not sent yet, once each");
        assert_eq!(got.len(), 32);
        for ((tid, r), g) in got.iter().zip(shapes.iter().chain(shapes.iter())) {
            assert_eq!(*tid, template_id(g.shape()));
            let v6 = g.v6;
            let src = if v6 {
                decode::bytes(r, 0, iana::SOURCE_IPV6_ADDRESS).unwrap()
            } else {
                decode::bytes(r, 0, iana::SOURCE_IPV4_ADDRESS).unwrap()
            };
            assert_eq!(src, if v6 { &g.src[..] } else { &g.src[..4] });
            let (octets, delta) = (
                decode::num(r, 0, iana::OCTET_TOTAL_COUNT),
                decode::num(r, 0, iana::OCTET_DELTA_COUNT),
            );
            match (g.ip, g.interim) {
                (None, _) => assert_eq!((octets, delta), (None, None)),
                (Some(ip), false) => assert_eq!((octets, delta), (Some(ip.octets[0]), None)),
                (Some(ip), true) => assert_eq!((octets, delta), (None, Some(ip.octets[0]))),
            }
            assert_eq!(
                decode::num(r, 0, iana::FLOW_START_NANOSECONDS).is_some(),
                g.start_ns.is_some()
            );
            assert_eq!(
                decode::num(r, PEN, tcplog::SEGMENT_TOTAL_COUNT).is_some(),
                !g.interim,
                "segments in end-of-flow records only"
            );
        }
    }

    #[test]
    fn sequence_numbers_count_data_records_sent_before_the_message() {
        let (mut e, mut s, _) = described(600);
        let first = e.sequence();
        let flows: Vec<Flow> = (0..10).map(|_| flow()).collect();
        let mut queue = flows.clone();
        let mut expect = first;
        let mut messages = 0;
        while let Some(m) = e.message(&queue, 1) {
            let d = s.message(&m.bytes).unwrap();
            assert_eq!(d.seq, expect);
            assert!(m.bytes.len() <= 600);
            expect += d.records.len() as u32;
            queue.drain(..m.flows);
            messages += 1;
        }
        assert!(
            messages > 2,
            "600-byte messages hold few records: {messages}"
        );
        assert_eq!(e.sequence(), first + 10);
        // A message made and never delivered (a UDP send that failed) keeps its numbers.
        let dropped = e.message(&flows[..3], 1).unwrap();
        assert_eq!(dropped.records, 3);
        let d = s
            .message(&e.message([&flows[0]], 1).unwrap().bytes)
            .unwrap();
        assert_eq!(
            d.seq,
            first + 13,
            "records that could not be sent leave a gap"
        );
        // A new session starts again at 0, with everything announced again.
        e.new_session();
        let mut s2 = Session::default();
        let mut seqs = Vec::new();
        while let Some(m) = e.message([&flows[0]], 1) {
            seqs.push(s2.message(&m.bytes).unwrap().seq);
            if m.flows == 1 {
                break;
            }
        }
        assert_eq!(seqs[0], 0);
        assert_eq!(*seqs.last().unwrap(), ELEMENT_TYPES.len() as u32);
    }

    #[test]
    fn a_refresh_sends_templates_again() {
        let (mut e, mut s, _) = described(1400);
        let f = flow();
        let d = s.message(&e.message([&f], 1).unwrap().bytes).unwrap();
        assert_eq!(d.templates.len(), 1);
        let d = s.message(&e.message([&f], 1).unwrap().bytes).unwrap();
        assert_eq!(d.templates.len(), 0, "once per session");
        e.refresh();
        assert!(e.has_announcements());
        let mut templates = Vec::new();
        while let Some(m) = e.message([&f], 1) {
            let d = s.message(&m.bytes).unwrap();
            templates.extend(d.templates.iter().map(|t| t.0));
            if m.flows == 1 {
                break;
            }
        }
        assert_eq!(
            templates,
            [ELEMENT_TYPES_TEMPLATE_ID, template_id(f.shape())],
            "descriptions, then the flow's template"
        );
    }

    #[test]
    fn long_and_odd_names_are_variable_length_strings() {
        let (mut e, mut s, _) = described(1400);
        for comm in ["", "x", "名前", &"y".repeat(300)] {
            let mut f = flow();
            f.comm = comm.to_owned();
            let d = s.message(&e.message([&f], 1).unwrap().bytes).unwrap();
            let (_, r) = &d.records[0];
            assert_eq!(
                decode::bytes(r, PEN, tcplog::COMMAND).unwrap(),
                comm.as_bytes()
            );
        }
    }
}
