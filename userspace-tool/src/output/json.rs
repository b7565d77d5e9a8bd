//! Records as JSON Lines: one object per record, with a `type` field.
//!
//! Names that come from outside (`comm`, `ifname`) are strings: the name itself when it is valid
//! UTF-8; otherwise with U+FFFD in place of each invalid sequence, and the exact bytes beside it
//! in hex, in a field of the same name ending in `_hex` (`comm_hex`), which only such names have.
//! Every line is written by [`to_line`], which escapes as `\uXXXX` the characters that terminals
//! act on or that hide ([`escape::is_unsafe`]), so no control or bidi character reaches a
//! terminal even from JSON, and the parsed strings are unchanged.

use std::io;

use serde_json::ser::Formatter;
use serde_json::{json, Map, Value};

use tcplog_ctl::{self as abi, EventBody, InterimBody, LimitBody, PacketBody, SummaryBody};

use super::{direction_name, outside_names, owner, packet_view, rfc3339, Context};
use crate::escape::{self, hex, until_nul};
use crate::record::{
    close_name, config_item_name, errno_name, event_proto_name, family_name, ip, op_name,
    open_name, proto_name, summary_proto_name, tcp_state_name, type_name, Body, Record,
};

/// A NUL-padded name as a JSON string: exact if it is UTF-8 (see the module's doc otherwise).
fn name(field: &[u8]) -> String {
    String::from_utf8_lossy(until_nul(field)).into_owned()
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
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if escape::is_unsafe(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// A JSON value as one line of printable text (without the newline).
pub fn to_line(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, SafeFormatter);
    serde::Serialize::serialize(v, &mut ser).expect("a Value always serializes");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// A record as one JSON object.
pub fn to_json(r: &Record, ctx: &Context<'_>) -> Value {
    let h = &r.header;
    let mut m = Map::new();
    m.insert("type".into(), type_name(h.rtype).into());
    m.insert("seq".into(), h.seq.into());
    m.insert("time".into(), rfc3339(h.time_ns).into());
    m.insert("time_ns".into(), h.time_ns.into());
    m.insert("boot_ns".into(), h.boot_ns.into());
    m.insert("cpu".into(), h.cpu.into());
    let body = match &r.body {
        Body::Lost(l) => json!({
            "count": l.count,
            "first_seq": l.first_seq,
            "last_seq": l.last_seq,
        }),
        Body::Config(c) => json!({
            "item": config_item_name(c.item),
            "old": c.old,
            "new": c.new,
            "pid": c.pid,
            "uid": c.uid,
            "comm": name(&c.comm),
        }),
        Body::Event(e) => event_json(e),
        Body::Summary(s) => summary_json(s),
        Body::Interim(i) => interim_json(i),
        Body::Packet(p, d) => packet_json(p, d),
        Body::Limit(l) => limit_json(l),
        Body::Mark(k) => json!({
            "value": k.value,
            "index": k.index,
            "pid": k.pid,
            "uid": k.uid,
            "comm": name(&k.comm),
        }),
        Body::Unknown(bytes) => json!({ "rtype": h.rtype, "body_len": bytes.len() }),
    };
    if let Value::Object(b) = body {
        m.extend(b);
    }
    if matches!(r.body, Body::Event(_) | Body::Summary(_) | Body::Interim(_)) {
        owner_json(r, ctx, &mut m);
    }
    for (key, bytes) in outside_names(r, ctx) {
        if std::str::from_utf8(&bytes).is_err() {
            m.insert(format!("{key}_hex"), hex(&bytes).into());
        }
    }
    Value::Object(m)
}

/// `ppid`, `cgroup_id`, and the cgroup's path and container where known: all `null` when the
/// record names no process.
fn owner_json(r: &Record, ctx: &Context<'_>, m: &mut Map<String, Value>) {
    let o = owner(r, ctx);
    let path = o.as_ref().and_then(|o| o.path);
    let container = o.as_ref().and_then(|o| o.container.as_ref());
    m.insert("ppid".into(), o.as_ref().map(|o| o.ppid).into());
    m.insert("cgroup_id".into(), o.as_ref().map(|o| o.cgroup_id).into());
    m.insert(
        "cgroup".into(),
        path.map(|p| String::from_utf8_lossy(p).into_owned()).into(),
    );
    m.insert(
        "container".into(),
        container
            .map(|c| String::from_utf8_lossy(&c.id).into_owned())
            .into(),
    );
    m.insert(
        "container_runtime".into(),
        container.map(|c| c.runtime).into(),
    );
}

fn event_json(e: &EventBody) -> Value {
    let mut v = json!({
        "op": op_name(e.op),
        "family": family_name(e.family),
        "proto": event_proto_name(e),
        "sock_type": e.sock_type,
        "pid": e.pid,
        "tid": e.tid,
        "uid": e.uid,
        "comm": name(&e.comm),
        "laddr": ip(e.family, &e.laddr).to_string(),
        "lport": e.lport,
        "raddr": ip(e.family, &e.raddr).to_string(),
        "rport": e.rport,
        "netns": e.netns,
        "sock_id": e.sock_id,
        "result": e.result,
        "implicit": e.flags & abi::EVF_IMPLICIT != 0,
        "async": e.flags & abi::EVF_ASYNC != 0,
        "owner_attributed": e.flags & abi::EVF_OWNER != 0,
        "latency_ns": connect_outcome(e).then_some(e.latency_ns),
    });
    if e.result != 0 {
        v["error"] = errno_name(e.result).map_or(Value::Null, Into::into);
    }
    if e.flags & abi::EVF_NO_PROCESS != 0 {
        for k in ["pid", "tid", "uid", "comm"] {
            v[k] = Value::Null;
        }
    }
    v
}

/// Whether an event is a TCP connect's outcome, which carries its latency: a connect that
/// returned something other than `EINPROGRESS`, or the later outcome of one that did.
pub fn connect_outcome(e: &EventBody) -> bool {
    e.op == abi::op::TCP_CONNECT && e.result != libc::EINPROGRESS
}

fn summary_json(s: &SummaryBody) -> Value {
    let owner_known = s.flags & abi::SUMF_OWNER_UNKNOWN == 0;
    let start_known = s.flags & abi::SUMF_START_UNKNOWN == 0;
    let ip_counted = s.flags & abi::SUMF_IP_COUNTERS != 0;
    let flag = |f: u16| s.flags & f != 0;
    let known = |ok: bool, v: Value| if ok { v } else { Value::Null };
    json!({
        "family": family_name(s.family),
        "proto": summary_proto_name(s),
        "laddr": ip(s.family, &s.laddr).to_string(),
        "lport": s.lport,
        "raddr": ip(s.family, &s.raddr).to_string(),
        "rport": s.rport,
        "pid": known(owner_known, s.pid.into()),
        "uid": known(owner_known, s.uid.into()),
        "comm": known(owner_known, name(&s.comm).into()),
        "netns": s.netns,
        "sock_id": s.sock_id,
        "open": open_name(s.open),
        "close": close_name(s.close),
        "partial": s.flags & abi::SUMF_PARTIAL != 0,
        "fin_wait2": flag(abi::SUMF_FIN_WAIT2),
        "start": known(start_known, rfc3339(s.start_ns).into()),
        "start_ns": known(start_known, s.start_ns.into()),
        "duration_ns": known(start_known, s.duration_ns.into()),
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "segs_in": s.segs_in,
        "segs_out": s.segs_out,
        "retrans": s.retrans,
        "srtt_us": s.srtt_us,
        "pkts_in": known(ip_counted, s.pkts_in.into()),
        "pkts_out": known(ip_counted, s.pkts_out.into()),
        "ip_bytes_in": known(ip_counted, s.ip_bytes_in.into()),
        "ip_bytes_out": known(ip_counted, s.ip_bytes_out.into()),
        "parent_id": (s.parent_id != 0).then_some(s.parent_id),
        "min_rtt_us": s.min_rtt_us,
        "connect_latency_ns": known(flag(abi::SUMF_LATENCY), s.connect_latency_ns.into()),
        "delivery_rate": s.delivery_rate,
        "busy_us": s.busy_us,
        "rwnd_limited_us": s.rwnd_limited_us,
        "sndbuf_limited_us": s.sndbuf_limited_us,
        "first_tx_ns": known(flag(abi::SUMF_FIRST_TX), s.first_tx_ns.into()),
        "first_rx_ns": known(flag(abi::SUMF_FIRST_RX), s.first_rx_ns.into()),
        "max_idle_ns": known(ip_counted, s.max_idle_ns.into()),
        "limited_by": crate::verdict::limited_by(s),
    })
}

/// An interim record, or a `tcplog conns` entry: the summary so far (`close` is `null`: the
/// connection is open; `duration_ns` is its age), its state, and what changed since `since`.
pub fn interim_json(i: &InterimBody) -> Value {
    let s = &i.summary;
    let mut v = summary_json(s);
    let ip_counted = s.flags & abi::SUMF_IP_COUNTERS != 0;
    let known = |v: u64| if ip_counted { v.into() } else { Value::Null };
    v["close"] = Value::Null;
    let extra = json!({
        "state": tcp_state_name(i.state),
        "since": rfc3339(i.since_ns),
        "since_ns": i.since_ns,
        "delta_bytes_sent": i.delta_bytes_sent,
        "delta_bytes_received": i.delta_bytes_received,
        "delta_pkts_in": known(i.delta_pkts_in),
        "delta_pkts_out": known(i.delta_pkts_out),
        "delta_ip_bytes_in": known(i.delta_ip_bytes_in),
        "delta_ip_bytes_out": known(i.delta_ip_bytes_out),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

fn packet_json(p: &PacketBody, d: &[u8]) -> Value {
    let v = packet_view(p, d);
    json!({
        "netns": p.netns,
        "ifname": name(&p.ifname),
        "ifindex": p.ifindex,
        "direction": direction_name(p.direction),
        "hook": p.hook,
        "rule": p.rule,
        "family": family_name(p.family),
        "proto": proto_name(p.protocol),
        "protocol": p.protocol,
        "saddr": v.saddr.map(|a| a.to_string()),
        "daddr": v.daddr.map(|a| a.to_string()),
        "sport": v.sport,
        "dport": v.dport,
        "tcp_flags": crate::rules::flags_str(p.tcp_flags),
        "orig_len": p.orig_len,
        "count": p.count,
        "last": rfc3339(p.last_ns),
        "last_ns": p.last_ns,
        "truncated": p.flags & abi::PKF_TRUNCATED != 0,
        "no_header": p.flags & abi::PKF_NO_HEADER != 0,
        "ip_hlen": p.ip_hlen,
        "l4_hlen": p.l4_hlen,
        "payload_len": p.payload_len,
        "ip_header": hex(v.ip_header),
        "l4_header": hex(v.l4_header),
        "payload": hex(v.payload),
    })
}

fn limit_json(l: &LimitBody) -> Value {
    json!({
        "netns": l.netns,
        "rule": l.rule,
        "family": family_name(l.family),
        "src": ip(l.family, &l.src).to_string(),
        "limit_type": if l.limit_type == abi::LIMIT_CONNS_PER_SOURCE { "conns_per_source" } else { "unknown" },
        "threshold": l.threshold,
        "current": l.current,
        "exceeded": l.exceeded,
    })
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
