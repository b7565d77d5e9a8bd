//! How records are shown: text lines for people, JSON objects for scripts.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use tcplog_ctl::{self as abi, direction, EventBody, LimitBody, PacketBody, SummaryBody};

use crate::record::{
    close_name, comm_str, config_item_name, errno_name, family_name, ip, op_name, open_name,
    proto_name, type_name, Body, Record,
};

/// Output formats of `dump` and `follow`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text, a line per record.
    #[default]
    Text,
    /// JSON Lines: one object per record, with a `type` field.
    Json,
    /// CSV with a header row.
    Csv,
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

/// Time of day, UTC, to the microsecond.
fn clock(time_ns: u64) -> String {
    rfc3339(time_ns)[11..26].to_owned()
}

/// The columns every text line starts with; summaries and events fill them all.
pub fn text_header() -> String {
    format!(
        "{:<15} {:<7} {:>7} {:<15} {:<39} {:>5} {:<39} {:>5} {:>10} {:>10} {:>10} DETAIL",
        "TIME", "TYPE", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "TX", "RX", "MS"
    )
}

/// One text line: the common columns, "-" where a record has no such thing, then the detail.
#[allow(clippy::too_many_arguments)]
fn columns(
    time_ns: u64,
    ty: &str,
    who: Option<(u32, &[u8])>,
    ends: Option<(std::net::IpAddr, u16, std::net::IpAddr, u16)>,
    traffic: Option<(u64, u64, Option<f64>)>,
    detail: &str,
) -> String {
    let (pid, comm) = match who {
        Some((p, c)) => (p.to_string(), comm_str(c)),
        None => ("-".into(), "-".into()),
    };
    let (la, lp, ra, rp) = match ends {
        Some((la, lp, ra, rp)) => (
            la.to_string(),
            lp.to_string(),
            ra.to_string(),
            rp.to_string(),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    let (tx, rx, ms) = match traffic {
        Some((tx, rx, ms)) => (
            tx.to_string(),
            rx.to_string(),
            ms.map_or_else(|| "?".to_owned(), |m| format!("{m:.3}")),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    format!(
        "{:<15} {:<7} {:>7} {:<15} {:<39} {:>5} {:<39} {:>5} {:>10} {:>10} {:>10} {}",
        clock(time_ns),
        ty,
        pid,
        comm,
        la,
        lp,
        ra,
        rp,
        tx,
        rx,
        ms,
        detail
    )
    .trim_end()
    .to_owned()
}

fn event_detail(e: &EventBody) -> String {
    let mut s = format!("{} {}", proto_name(e.protocol), op_name(e.op));
    if e.flags & abi::EVF_IMPLICIT != 0 {
        s.push_str(" (implicit)");
    }
    if e.flags & abi::EVF_ASYNC != 0 {
        s.push_str(" (async)");
    }
    if e.result != 0 {
        let name =
            errno_name(e.result).map_or_else(|| format!("errno {}", e.result), str::to_owned);
        s.push_str(&format!(" = {name}"));
    }
    s
}

fn summary_detail(s: &SummaryBody) -> String {
    let mut d = format!("{} {}", open_name(s.open), close_name(s.close));
    if s.flags & abi::SUMF_IP_COUNTERS != 0 {
        d.push_str(&format!(" pkts {}/{}", s.pkts_out, s.pkts_in));
    }
    if s.flags & abi::SUMF_PARTIAL != 0 {
        d.push_str(" partial");
    }
    d
}

/// A record as one line of text.
pub fn to_text(r: &Record) -> String {
    let h = &r.header;
    let ty = type_name(h.rtype);
    let t = h.time_ns;
    match &r.body {
        Body::Event(e) => {
            let who = (e.flags & abi::EVF_NO_PROCESS == 0).then_some((e.pid, &e.comm[..]));
            let ends = (
                ip(e.family, &e.laddr),
                e.lport,
                ip(e.family, &e.raddr),
                e.rport,
            );
            columns(t, ty, who, Some(ends), None, &event_detail(e))
        }
        Body::Summary(s) => {
            let who = (s.flags & abi::SUMF_OWNER_UNKNOWN == 0).then_some((s.pid, &s.comm[..]));
            let ends = (
                ip(s.family, &s.laddr),
                s.lport,
                ip(s.family, &s.raddr),
                s.rport,
            );
            let ms = (s.flags & abi::SUMF_START_UNKNOWN == 0).then(|| s.duration_ns as f64 / 1e6);
            columns(
                t,
                ty,
                who,
                Some(ends),
                Some((s.bytes_sent, s.bytes_received, ms)),
                &summary_detail(s),
            )
        }
        Body::Packet(p, d) => format!("{} {:<7} {}", clock(t), ty, packet_text(p, d)),
        Body::Limit(l) => columns(
            t,
            ty,
            None,
            None,
            None,
            &format!(
                "rule {}: source {} has {} connections, over the limit of {} ({} times)",
                l.rule,
                ip(l.family, &l.src),
                l.current,
                l.threshold,
                l.exceeded
            ),
        ),
        Body::Lost(l) => columns(
            t,
            ty,
            None,
            None,
            None,
            &format!(
                "lost {} records (seq {}..={})",
                l.count, l.first_seq, l.last_seq
            ),
        ),
        Body::Config(c) => columns(
            t,
            ty,
            Some((c.pid, &c.comm[..])),
            None,
            None,
            &format!(
                "{} {} -> {} (uid {})",
                config_item_name(c.item),
                c.old,
                c.new,
                c.uid
            ),
        ),
        Body::Mark(k) => columns(
            t,
            ty,
            Some((k.pid, &k.comm[..])),
            None,
            None,
            &format!("value {} #{} (uid {})", k.value, k.index, k.uid),
        ),
        Body::Unknown(bytes) => columns(
            t,
            ty,
            None,
            None,
            None,
            &format!("type {} ({} bytes)", h.rtype, bytes.len()),
        ),
    }
}

/// The columns of `--format csv`: what the JSON objects hold, one column per field, empty where
/// a record has no such field.
pub const CSV_COLUMNS: [&str; 44] = [
    "type",
    "seq",
    "time",
    "time_ns",
    "cpu",
    "op",
    "family",
    "proto",
    "pid",
    "tid",
    "uid",
    "comm",
    "laddr",
    "lport",
    "raddr",
    "rport",
    "netns",
    "sock_id",
    "result",
    "error",
    "open",
    "close",
    "partial",
    "duration_ns",
    "bytes_sent",
    "bytes_received",
    "segs_in",
    "segs_out",
    "retrans",
    "srtt_us",
    "pkts_in",
    "pkts_out",
    "ip_bytes_in",
    "ip_bytes_out",
    "ifname",
    "direction",
    "rule",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "tcp_flags",
    "orig_len",
    "count",
];

/// A record as a CSV row of [`CSV_COLUMNS`]; fields only some types have beyond those (a
/// packet's bytes, a config record's values) are in JSON, not here.
pub fn to_csv_row(r: &Record) -> Vec<String> {
    let v = to_json(r);
    CSV_COLUMNS
        .iter()
        .map(|k| match &v[*k] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
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

    /// A recorded stream with one record of every type.
    pub fn sample_stream() -> Vec<u8> {
        use crate::record::tests::{encode_at, udp_packet};
        use tcplog_ctl::{rtype, Pod};
        let t = 1_700_000_000_123_456_789u64;
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let v4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            x
        };
        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        v6[15] = 2;
        let mut s = Vec::new();
        s.extend(encode_at(
            rtype::LOST,
            0,
            abi::LostBody {
                count: 10,
                first_seq: 0,
                last_seq: 9,
            }
            .as_bytes(),
            t,
        ));
        s.extend(encode_at(
            rtype::CONFIG,
            10,
            abi::ConfigBody {
                item: abi::config_item::ENABLED,
                pid: 7,
                uid: 0,
                _pad: 0,
                old: 0,
                new: 1,
                comm,
            }
            .as_bytes(),
            t + 1,
        ));
        s.extend(encode_at(
            rtype::EVENT,
            11,
            EventBody {
                sock_id: 99,
                netns: 4026531840,
                pid: 42,
                tid: 43,
                uid: 1000,
                result: libc::ECONNREFUSED,
                op: abi::op::TCP_CONNECT,
                family: abi::AF_INET,
                protocol: abi::IPPROTO_TCP,
                sock_type: 1,
                flags: 0,
                lport: 40000,
                rport: 80,
                laddr: v4([10, 0, 0, 1]),
                raddr: v4([10, 0, 0, 2]),
                comm,
            }
            .as_bytes(),
            t + 2,
        ));
        s.extend(encode_at(
            rtype::SUMMARY,
            12,
            SummaryBody {
                sock_id: 98,
                start_ns: t - 2_500_000_000,
                duration_ns: 2_500_000_000,
                bytes_sent: 100_000,
                bytes_received: 54_321,
                segs_in: 40,
                segs_out: 80,
                retrans: 1,
                srtt_us: 120,
                netns: 4026531840,
                pid: 42,
                uid: 1000,
                flags: abi::SUMF_IP_COUNTERS,
                open: abi::open::ACTIVE,
                close: abi::close::FIN,
                family: abi::AF_INET6,
                lport: 40001,
                rport: 443,
                _pad: 0,
                laddr: v6,
                raddr: v6,
                comm,
                pkts_in: 41,
                pkts_out: 81,
                ip_bytes_in: 56_000,
                ip_bytes_out: 105_000,
            }
            .as_bytes(),
            t + 3,
        ));
        s.extend(udp_packet(13, b"hello", 128, 2));
        s.extend(encode_at(
            rtype::LIMIT,
            14,
            LimitBody {
                netns: 4026531840,
                rule: 1,
                family: abi::AF_INET,
                limit_type: abi::LIMIT_CONNS_PER_SOURCE,
                threshold: 2,
                current: 3,
                exceeded: 1,
                src: v4([10, 0, 0, 9]),
            }
            .as_bytes(),
            t + 4,
        ));
        s.extend(crate::record::tests::mark(15, 77));
        s
    }

    fn records() -> Vec<Record> {
        let buf = sample_stream();
        let mut d = Decoder::new(&buf);
        let mut v = Vec::new();
        while let Some(item) = d.next_item() {
            match item {
                Item::Record(r) => v.push(r),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(v.len(), 7);
        v
    }

    /// Compares with a golden file; `UPDATE_GOLDEN=1 cargo test` rewrites them.
    fn golden(name: &str, got: &str) {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{path} differs (UPDATE_GOLDEN=1 rewrites it)");
    }

    #[test]
    fn golden_text() {
        let mut s = text_header() + "\n";
        for r in records() {
            s.push_str(&to_text(&r));
            s.push('\n');
        }
        golden("golden.txt", &s);
    }

    #[test]
    fn golden_json() {
        let s: String = records()
            .iter()
            .map(|r| to_json(r).to_string() + "\n")
            .collect();
        golden("golden.jsonl", &s);
    }

    #[test]
    fn golden_csv() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(CSV_COLUMNS).unwrap();
        for r in records() {
            w.write_record(to_csv_row(&r)).unwrap();
        }
        golden(
            "golden.csv",
            &String::from_utf8(w.into_inner().unwrap()).unwrap(),
        );
    }
}
