//! Records as JSON Lines: one object per record, with a `type` field.
//!
//! Names that come from outside (`comm`, `ifname`) are strings: the name itself when it is valid
//! UTF-8; otherwise with U+FFFD in place of each invalid sequence, and the exact bytes beside it
//! in hex, in a field of the same name ending in `_hex` (`comm_hex`), which only such names have.
//! Every line is written through [`SafeFormatter`], which escapes as `\uXXXX` the characters
//! that terminals act on or that hide ([`escape::is_unsafe`]), so no control or bidi character
//! reaches a terminal even from JSON, and the parsed strings are unchanged.
//!
//! A record is serialized field by field ([`Json`]), straight into the output: `follow --json`
//! makes no map, key or number string per record.

use std::borrow::Cow;
use std::fmt::Display;
use std::io;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::ser::Formatter;
use serde_json::Value;

use tcplog_ctl::{self as abi, EventBody, InterimBody, LimitBody, PacketBody, SummaryBody};

use super::{direction_name, names_with_owner, owner, packet_view, rfc3339_shown, Context, Owner};
use crate::escape::{self, hex, until_nul};
use crate::record::{
    close_name, config_item_name, errno_name, event_proto_name, family_name, ip, op_name,
    open_name, proto_name, summary_proto_name, tcp_state_name, type_name, Body, Record,
};

/// A NUL-padded name as a JSON string: exact if it is UTF-8 (see the module's doc otherwise).
fn name(field: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(until_nul(field))
}

/// A value shown as a JSON string through its `Display`, with no `String` in between.
struct Shown<T>(T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

fn time(ns: u64) -> Shown<impl Display> {
    Shown(rfc3339_shown(ns))
}

fn addr(family: u16, a: &[u8; 16]) -> Shown<std::net::IpAddr> {
    Shown(ip(family, a))
}

/// Writes JSON as serde_json's compact form does, but with the characters of
/// [`escape::is_unsafe`] that JSON would leave raw (DEL, C1 controls, bidi and invisible
/// characters, Unicode line separators) escaped as `\uXXXX`: the same strings, and a line of
/// only printable characters.
struct SafeFormatter;

impl Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        // serde_json escapes C0 controls itself, so an ASCII fragment without DEL (nearly every
        // one: every key, number-like and address string) is safe as it is.
        if bytes.iter().all(|&b| b < 0x7f) {
            return w.write_all(bytes);
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if escape::is_unsafe(c) {
                w.write_all(&bytes[start..i])?;
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&bytes[start..])
    }
}

/// A JSON value as one line of printable text (without the newline).
pub fn to_line(v: &Value) -> String {
    let mut buf = Vec::new();
    write_value(&mut buf, v).expect("a Value always serializes to memory");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

fn write_value<W: io::Write, T: Serialize + ?Sized>(w: W, v: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, SafeFormatter);
    v.serialize(&mut ser).map_err(io::Error::from)
}

/// Writes a record as one line of JSON and its newline.
pub fn write_line<W: io::Write>(mut w: W, r: &Record, ctx: &Context<'_>) -> io::Result<()> {
    write_value(&mut w, &Json { r, ctx: *ctx })?;
    w.write_all(b"\n")
}

/// A record as one JSON object.
pub fn to_json(r: &Record, ctx: &Context<'_>) -> Value {
    serde_json::to_value(Json { r, ctx: *ctx }).expect("a record always serializes")
}

/// A record in its context, serialized as one JSON object: the header's fields, the body's, the
/// owner's (for records that name a process), then the `_hex` form of names that are not UTF-8.
struct Json<'a> {
    r: &'a Record,
    ctx: Context<'a>,
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, ctx) = (self.r, &self.ctx);
        let h = &r.header;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", type_name(h.rtype))?;
        m.serialize_entry("seq", &h.seq)?;
        m.serialize_entry("time", &time(h.time_ns))?;
        m.serialize_entry("time_ns", &h.time_ns)?;
        m.serialize_entry("boot_ns", &h.boot_ns)?;
        m.serialize_entry("cpu", &h.cpu)?;
        match &r.body {
            Body::Lost(l) => {
                m.serialize_entry("count", &l.count)?;
                m.serialize_entry("first_seq", &l.first_seq)?;
                m.serialize_entry("last_seq", &l.last_seq)?;
            }
            Body::Config(c) => {
                m.serialize_entry("item", config_item_name(c.item))?;
                m.serialize_entry("old", &c.old)?;
                m.serialize_entry("new", &c.new)?;
                m.serialize_entry("pid", &c.pid)?;
                m.serialize_entry("uid", &c.uid)?;
                m.serialize_entry("comm", &name(&c.comm))?;
            }
            Body::Event(e) => event(&mut m, e)?,
            Body::Summary(s) => summary(&mut m, s, close_name(s.close).into())?,
            Body::Interim(i) => interim(&mut m, i)?,
            Body::Packet(p, d) => packet(&mut m, p, d)?,
            Body::Limit(l) => limit(&mut m, l)?,
            Body::Mark(k) => {
                m.serialize_entry("value", &k.value)?;
                m.serialize_entry("index", &k.index)?;
                m.serialize_entry("pid", &k.pid)?;
                m.serialize_entry("uid", &k.uid)?;
                m.serialize_entry("comm", &name(&k.comm))?;
            }
            Body::Unknown(bytes) => {
                m.serialize_entry("rtype", &h.rtype)?;
                m.serialize_entry("body_len", &bytes.len())?;
            }
        }
        let o = owner(r, ctx);
        if matches!(r.body, Body::Event(_) | Body::Summary(_) | Body::Interim(_)) {
            owner_entries(&mut m, o.as_ref())?;
        }
        for (key, bytes) in names_with_owner(r, o.as_ref()) {
            if std::str::from_utf8(bytes).is_err() {
                m.serialize_entry(&format!("{key}_hex"), &hex(bytes))?;
            }
        }
        m.end()
    }
}

/// `ppid`, `cgroup_id`, and the cgroup's path and container where known: all `null` when the
/// record names no process.
fn owner_entries<M: SerializeMap>(m: &mut M, o: Option<&Owner<'_>>) -> Result<(), M::Error> {
    let path = o.and_then(|o| o.path);
    let container = o.and_then(|o| o.container.as_ref());
    m.serialize_entry("ppid", &o.map(|o| o.ppid))?;
    m.serialize_entry("cgroup_id", &o.map(|o| o.cgroup_id))?;
    m.serialize_entry("cgroup", &path.map(String::from_utf8_lossy))?;
    m.serialize_entry(
        "container",
        &container.map(|c| String::from_utf8_lossy(&c.id)),
    )?;
    m.serialize_entry("container_runtime", &container.map(|c| c.runtime))
}

fn event<M: SerializeMap>(m: &mut M, e: &EventBody) -> Result<(), M::Error> {
    let process = e.flags & abi::EVF_NO_PROCESS == 0;
    m.serialize_entry("op", op_name(e.op))?;
    m.serialize_entry("family", family_name(e.family))?;
    m.serialize_entry("proto", event_proto_name(e))?;
    m.serialize_entry("sock_type", &e.sock_type)?;
    m.serialize_entry("pid", &process.then_some(e.pid))?;
    m.serialize_entry("tid", &process.then_some(e.tid))?;
    m.serialize_entry("uid", &process.then_some(e.uid))?;
    m.serialize_entry("comm", &process.then(|| name(&e.comm)))?;
    m.serialize_entry("laddr", &addr(e.family, &e.laddr))?;
    m.serialize_entry("lport", &e.lport)?;
    m.serialize_entry("raddr", &addr(e.family, &e.raddr))?;
    m.serialize_entry("rport", &e.rport)?;
    m.serialize_entry("netns", &e.netns)?;
    m.serialize_entry("sock_id", &e.sock_id)?;
    m.serialize_entry("result", &e.result)?;
    m.serialize_entry("implicit", &(e.flags & abi::EVF_IMPLICIT != 0))?;
    m.serialize_entry("async", &(e.flags & abi::EVF_ASYNC != 0))?;
    m.serialize_entry("owner_attributed", &(e.flags & abi::EVF_OWNER != 0))?;
    m.serialize_entry("latency_ns", &connect_outcome(e).then_some(e.latency_ns))?;
    if e.result != 0 {
        m.serialize_entry("error", &errno_name(e.result))?;
    }
    Ok(())
}

/// Whether an event is a TCP connect's outcome, which carries its latency: a connect that
/// returned something other than `EINPROGRESS`, or the later outcome of one that did.
pub fn connect_outcome(e: &EventBody) -> bool {
    e.op == abi::op::TCP_CONNECT && e.result != libc::EINPROGRESS
}

/// A summary's fields; `close` is given (an interim record has none yet).
fn summary<M: SerializeMap>(
    m: &mut M,
    s: &SummaryBody,
    close: Option<&str>,
) -> Result<(), M::Error> {
    let flag = |f: u16| s.flags & f != 0;
    let owner_known = !flag(abi::SUMF_OWNER_UNKNOWN);
    let start_known = !flag(abi::SUMF_START_UNKNOWN);
    let ip_counted = flag(abi::SUMF_IP_COUNTERS);
    m.serialize_entry("family", family_name(s.family))?;
    m.serialize_entry("proto", summary_proto_name(s))?;
    m.serialize_entry("laddr", &addr(s.family, &s.laddr))?;
    m.serialize_entry("lport", &s.lport)?;
    m.serialize_entry("raddr", &addr(s.family, &s.raddr))?;
    m.serialize_entry("rport", &s.rport)?;
    m.serialize_entry("pid", &owner_known.then_some(s.pid))?;
    m.serialize_entry("uid", &owner_known.then_some(s.uid))?;
    m.serialize_entry("comm", &owner_known.then(|| name(&s.comm)))?;
    m.serialize_entry("netns", &s.netns)?;
    m.serialize_entry("sock_id", &s.sock_id)?;
    m.serialize_entry("open", open_name(s.open))?;
    m.serialize_entry("close", &close)?;
    m.serialize_entry("partial", &flag(abi::SUMF_PARTIAL))?;
    m.serialize_entry("fin_wait2", &flag(abi::SUMF_FIN_WAIT2))?;
    m.serialize_entry("start", &start_known.then(|| time(s.start_ns)))?;
    m.serialize_entry("start_ns", &start_known.then_some(s.start_ns))?;
    m.serialize_entry("duration_ns", &start_known.then_some(s.duration_ns))?;
    m.serialize_entry("bytes_sent", &s.bytes_sent)?;
    m.serialize_entry("bytes_received", &s.bytes_received)?;
    m.serialize_entry("segs_in", &s.segs_in)?;
    m.serialize_entry("segs_out", &s.segs_out)?;
    m.serialize_entry("retrans", &s.retrans)?;
    m.serialize_entry("srtt_us", &s.srtt_us)?;
    m.serialize_entry("pkts_in", &ip_counted.then_some(s.pkts_in))?;
    m.serialize_entry("pkts_out", &ip_counted.then_some(s.pkts_out))?;
    m.serialize_entry("ip_bytes_in", &ip_counted.then_some(s.ip_bytes_in))?;
    m.serialize_entry("ip_bytes_out", &ip_counted.then_some(s.ip_bytes_out))?;
    m.serialize_entry("parent_id", &(s.parent_id != 0).then_some(s.parent_id))?;
    m.serialize_entry("min_rtt_us", &s.min_rtt_us)?;
    m.serialize_entry(
        "connect_latency_ns",
        &flag(abi::SUMF_LATENCY).then_some(s.connect_latency_ns),
    )?;
    m.serialize_entry("delivery_rate", &s.delivery_rate)?;
    m.serialize_entry("busy_us", &s.busy_us)?;
    m.serialize_entry("rwnd_limited_us", &s.rwnd_limited_us)?;
    m.serialize_entry("sndbuf_limited_us", &s.sndbuf_limited_us)?;
    m.serialize_entry(
        "first_tx_ns",
        &flag(abi::SUMF_FIRST_TX).then_some(s.first_tx_ns),
    )?;
    m.serialize_entry(
        "first_rx_ns",
        &flag(abi::SUMF_FIRST_RX).then_some(s.first_rx_ns),
    )?;
    m.serialize_entry("max_idle_ns", &ip_counted.then_some(s.max_idle_ns))?;
    m.serialize_entry("limited_by", &crate::verdict::limited_by(s))
}

/// An interim record, or a `tcplog conns` entry: the summary so far (`close` is `null`: the
/// connection is open; `duration_ns` is its age), its state, and what changed since `since`.
fn interim<M: SerializeMap>(m: &mut M, i: &InterimBody) -> Result<(), M::Error> {
    let ip_counted = i.summary.flags & abi::SUMF_IP_COUNTERS != 0;
    summary(m, &i.summary, None)?;
    m.serialize_entry("state", tcp_state_name(i.state))?;
    m.serialize_entry("since", &time(i.since_ns))?;
    m.serialize_entry("since_ns", &i.since_ns)?;
    m.serialize_entry("delta_bytes_sent", &i.delta_bytes_sent)?;
    m.serialize_entry("delta_bytes_received", &i.delta_bytes_received)?;
    m.serialize_entry("delta_pkts_in", &ip_counted.then_some(i.delta_pkts_in))?;
    m.serialize_entry("delta_pkts_out", &ip_counted.then_some(i.delta_pkts_out))?;
    m.serialize_entry(
        "delta_ip_bytes_in",
        &ip_counted.then_some(i.delta_ip_bytes_in),
    )?;
    m.serialize_entry(
        "delta_ip_bytes_out",
        &ip_counted.then_some(i.delta_ip_bytes_out),
    )
}

fn packet<M: SerializeMap>(m: &mut M, p: &PacketBody, d: &[u8]) -> Result<(), M::Error> {
    let v = packet_view(p, d);
    m.serialize_entry("netns", &p.netns)?;
    m.serialize_entry("ifname", &name(&p.ifname))?;
    m.serialize_entry("ifindex", &p.ifindex)?;
    m.serialize_entry("direction", direction_name(p.direction))?;
    m.serialize_entry("hook", &p.hook)?;
    m.serialize_entry("rule", &p.rule)?;
    m.serialize_entry("family", family_name(p.family))?;
    m.serialize_entry("proto", proto_name(p.protocol))?;
    m.serialize_entry("protocol", &p.protocol)?;
    m.serialize_entry("saddr", &v.saddr.map(Shown))?;
    m.serialize_entry("daddr", &v.daddr.map(Shown))?;
    m.serialize_entry("sport", &v.sport)?;
    m.serialize_entry("dport", &v.dport)?;
    m.serialize_entry("tcp_flags", &crate::rules::flags_str(p.tcp_flags))?;
    m.serialize_entry("orig_len", &p.orig_len)?;
    m.serialize_entry("count", &p.count)?;
    m.serialize_entry("last", &time(p.last_ns))?;
    m.serialize_entry("last_ns", &p.last_ns)?;
    m.serialize_entry("truncated", &(p.flags & abi::PKF_TRUNCATED != 0))?;
    m.serialize_entry("no_header", &(p.flags & abi::PKF_NO_HEADER != 0))?;
    m.serialize_entry("ip_hlen", &p.ip_hlen)?;
    m.serialize_entry("l4_hlen", &p.l4_hlen)?;
    m.serialize_entry("payload_len", &p.payload_len)?;
    m.serialize_entry("ip_header", &hex(v.ip_header))?;
    m.serialize_entry("l4_header", &hex(v.l4_header))?;
    m.serialize_entry("payload", &hex(v.payload))
}

fn limit<M: SerializeMap>(m: &mut M, l: &LimitBody) -> Result<(), M::Error> {
    let kind = if l.limit_type == abi::LIMIT_CONNS_PER_SOURCE {
        "conns_per_source"
    } else {
        "unknown"
    };
    m.serialize_entry("netns", &l.netns)?;
    m.serialize_entry("rule", &l.rule)?;
    m.serialize_entry("family", family_name(l.family))?;
    m.serialize_entry("src", &addr(l.family, &l.src))?;
    m.serialize_entry("limit_type", kind)?;
    m.serialize_entry("threshold", &l.threshold)?;
    m.serialize_entry("current", &l.current)?;
    m.serialize_entry("exceeded", &l.exceeded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::one;
    use crate::record::tests::mark;

    #[test]
    fn mark_as_json() {
        let v = to_json(&one(&mark(5, 77)), &Context::default());
        assert_eq!(v["type"], "mark");
        assert_eq!(v["seq"], 5);
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["time_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(v["value"], 77);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["comm"], "test");
    }
}
