//! How records are shown: text lines for people, JSON objects for scripts.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use tcplog_ctl::{self as abi, direction, EventBody, LimitBody, PacketBody, SummaryBody};

use crate::record::{
    close_name, comm_str, config_item_name, errno_name, family_name, ip, op_name, open_name,
    proto_name, type_name, Body, Record,
};

/// Output formats of `dump` and `follow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text, a line per record.
    Text,
    /// JSON Lines: one object per record, with a `type` field.
    Json,
}

/// RFC 3339 time with nanoseconds, in UTC.
pub fn rfc3339(time_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(time_ns)).to_string()
}

/// A record as one JSON object.
pub fn to_json(r: &Record) -> Value {
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
            "comm": comm_str(&c.comm),
        }),
        Body::Event(e) => event_json(e),
        Body::Summary(s) => summary_json(s),
        Body::Packet(p, d) => packet_json(p, d),
        Body::Limit(l) => limit_json(l),
        Body::Mark(k) => json!({
            "value": k.value,
            "index": k.index,
            "pid": k.pid,
            "uid": k.uid,
            "comm": comm_str(&k.comm),
        }),
        Body::Unknown(bytes) => json!({ "rtype": h.rtype, "body_len": bytes.len() }),
    };
    if let Value::Object(b) = body {
        m.extend(b);
    }
    Value::Object(m)
}

fn event_json(e: &EventBody) -> Value {
    let mut v = json!({
        "op": op_name(e.op),
        "family": family_name(e.family),
        "proto": proto_name(e.protocol),
        "sock_type": e.sock_type,
        "pid": e.pid,
        "tid": e.tid,
        "uid": e.uid,
        "comm": comm_str(&e.comm),
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

fn summary_json(s: &SummaryBody) -> Value {
    let owner_known = s.flags & abi::SUMF_OWNER_UNKNOWN == 0;
    let start_known = s.flags & abi::SUMF_START_UNKNOWN == 0;
    let ip_counted = s.flags & abi::SUMF_IP_COUNTERS != 0;
    let known = |ok: bool, v: Value| if ok { v } else { Value::Null };
    json!({
        "family": family_name(s.family),
        "proto": "tcp",
        "laddr": ip(s.family, &s.laddr).to_string(),
        "lport": s.lport,
        "raddr": ip(s.family, &s.raddr).to_string(),
        "rport": s.rport,
        "pid": known(owner_known, s.pid.into()),
        "uid": known(owner_known, s.uid.into()),
        "comm": known(owner_known, comm_str(&s.comm).into()),
        "netns": s.netns,
        "sock_id": s.sock_id,
        "open": open_name(s.open),
        "close": close_name(s.close),
        "partial": s.flags & abi::SUMF_PARTIAL != 0,
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
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The packet's addresses and ports, read from its saved headers.
pub struct PacketView<'a> {
    pub ip_header: &'a [u8],
    pub l4_header: &'a [u8],
    pub payload: &'a [u8],
    pub saddr: Option<std::net::IpAddr>,
    pub daddr: Option<std::net::IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

pub fn packet_view<'a>(p: &PacketBody, d: &'a [u8]) -> PacketView<'a> {
    let ip_len = usize::from(p.ip_hlen);
    let l4_len = usize::from(p.l4_hlen);
    let ip_header = &d[..ip_len.min(d.len())];
    let l4_header = d.get(ip_len..ip_len + l4_len).unwrap_or(&[]);
    let payload = d.get(ip_len + l4_len..).unwrap_or(&[]);
    let (saddr, daddr) = if p.family == abi::AF_INET && ip_header.len() >= 20 {
        let a = |o: usize| {
            std::net::IpAddr::from([
                ip_header[o],
                ip_header[o + 1],
                ip_header[o + 2],
                ip_header[o + 3],
            ])
        };
        (Some(a(12)), Some(a(16)))
    } else if p.family == abi::AF_INET6 && ip_header.len() >= 40 {
        let a = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&ip_header[o..o + 16]);
            std::net::IpAddr::from(b)
        };
        (Some(a(8)), Some(a(24)))
    } else {
        (None, None)
    };
    let port = |o: usize| {
        (l4_header.len() >= o + 2).then(|| u16::from_be_bytes([l4_header[o], l4_header[o + 1]]))
    };
    PacketView {
        ip_header,
        l4_header,
        payload,
        saddr,
        daddr,
        sport: port(0),
        dport: port(2),
    }
}

fn direction_name(d: u8) -> &'static str {
    match d {
        direction::IN => "in",
        direction::OUT => "out",
        direction::FORWARD => "forward",
        _ => "unknown",
    }
}

fn packet_json(p: &PacketBody, d: &[u8]) -> Value {
    let v = packet_view(p, d);
    json!({
        "netns": p.netns,
        "ifname": comm_str(&p.ifname),
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

/// A packet in the manner of ipmon: interface, rule, direction, endpoints, protocol, lengths,
/// flags, repeats.
fn packet_text(p: &PacketBody, d: &[u8]) -> String {
    let v = packet_view(p, d);
    let end = |a: Option<std::net::IpAddr>, port: Option<u16>| match (a, port) {
        (Some(a), Some(p)) => format!("{a},{p}"),
        (Some(a), None) => a.to_string(),
        _ => "?".to_owned(),
    };
    let mut s = format!(
        "{} @{} {} {} -> {} PR {} len {} {}",
        comm_str(&p.ifname),
        p.rule,
        direction_name(p.direction),
        end(v.saddr, v.sport),
        end(v.daddr, v.dport),
        proto_name(p.protocol),
        p.ip_hlen,
        p.orig_len
    );
    if p.protocol == abi::IPPROTO_TCP {
        s.push_str(&format!(" -{}", crate::rules::flags_str(p.tcp_flags)));
    }
    if p.count > 1 {
        s.push_str(&format!(" {} times", p.count));
    }
    if p.flags & abi::PKF_TRUNCATED != 0 {
        s.push_str(&format!(
            " (payload {} of {})",
            p.payload_len,
            p.orig_len as usize - usize::from(p.ip_hlen) - usize::from(p.l4_hlen)
        ));
    }
    s
}

/// `addr:port`, with IPv6 addresses in brackets.
fn endpoint(family: u16, a: &[u8; 16], port: u16) -> String {
    match ip(family, a) {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        v4 => format!("{v4}:{port}"),
    }
}

fn event_text(e: &EventBody) -> String {
    let who = if e.flags & abi::EVF_NO_PROCESS != 0 {
        "-".to_owned()
    } else {
        format!("{}/{}", e.pid, comm_str(&e.comm))
    };
    let mut s = format!(
        "{:<4} {:<10} {:<20} {} -> {}",
        proto_name(e.protocol),
        op_name(e.op),
        who,
        endpoint(e.family, &e.laddr, e.lport),
        endpoint(e.family, &e.raddr, e.rport)
    );
    if e.flags & abi::EVF_IMPLICIT != 0 {
        s.push_str(" (implicit)");
    }
    if e.result != 0 {
        let name =
            errno_name(e.result).map_or_else(|| format!("errno {}", e.result), str::to_owned);
        s.push_str(&format!(" = {name}"));
    }
    s
}

fn summary_text(s: &SummaryBody) -> String {
    let who = if s.flags & abi::SUMF_OWNER_UNKNOWN != 0 {
        "-".to_owned()
    } else {
        format!("{}/{}", s.pid, comm_str(&s.comm))
    };
    let ms = if s.flags & abi::SUMF_START_UNKNOWN != 0 {
        "?".to_owned()
    } else {
        format!("{:.3}", s.duration_ns as f64 / 1e6)
    };
    format!(
        "tcp  {:<10} {:<20} {} -> {} tx {} rx {} ms {}{}",
        open_name(s.open),
        who,
        endpoint(s.family, &s.laddr, s.lport),
        endpoint(s.family, &s.raddr, s.rport),
        s.bytes_sent,
        s.bytes_received,
        ms,
        if s.flags & abi::SUMF_PARTIAL != 0 {
            " (partial)"
        } else {
            ""
        }
    )
}

/// A record as one line of text.
pub fn to_text(r: &Record) -> String {
    let h = &r.header;
    let detail = match &r.body {
        Body::Lost(l) => format!(
            "lost {} records (seq {}..={})",
            l.count, l.first_seq, l.last_seq
        ),
        Body::Config(c) => format!(
            "{} {} -> {} by pid {} uid {} ({})",
            config_item_name(c.item),
            c.old,
            c.new,
            c.pid,
            c.uid,
            comm_str(&c.comm)
        ),
        Body::Event(e) => event_text(e),
        Body::Summary(s) => summary_text(s),
        Body::Packet(p, d) => packet_text(p, d),
        Body::Limit(l) => format!(
            "rule {} source {} has {} connections, over the limit of {} ({} times)",
            l.rule,
            ip(l.family, &l.src),
            l.current,
            l.threshold,
            l.exceeded
        ),
        Body::Mark(k) => format!(
            "value {} #{} by pid {} uid {} ({})",
            k.value,
            k.index,
            k.pid,
            k.uid,
            comm_str(&k.comm)
        ),
        Body::Unknown(bytes) => format!("type {} ({} bytes)", h.rtype, bytes.len()),
    };
    format!(
        "{} {:>8} {:<7} {}",
        rfc3339(h.time_ns),
        h.seq,
        type_name(h.rtype),
        detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::mark;
    use crate::record::{Decoder, Item};

    fn one(buf: &[u8]) -> Record {
        match Decoder::new(buf).next_item() {
            Some(Item::Record(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn mark_as_json() {
        let v = to_json(&one(&mark(5, 77)));
        assert_eq!(v["type"], "mark");
        assert_eq!(v["seq"], 5);
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["time_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(v["value"], 77);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["comm"], "test");
    }

    #[test]
    fn mark_as_text() {
        assert_eq!(
            to_text(&one(&mark(5, 77))),
            "2023-11-14T22:13:20.123456789Z        5 mark    value 77 #0 by pid 42 uid 0 (test)"
        );
    }
}
