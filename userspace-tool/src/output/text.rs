//! Records as text for people: a header line, then one line per record in tcplife's columns.
//!
//! A record is always exactly one line of printable characters: names from outside are shown
//! through [`escape::word`], one word each, whatever bytes they hold.

use tcplog_ctl::{self as abi, EventBody, PacketBody, SummaryBody};

use super::{direction_name, packet_view, rfc3339};
use crate::escape::{self, until_nul};
use crate::record::{
    close_name, config_item_name, errno_name, ip, op_name, open_name, proto_name, type_name, Body,
    Record,
};

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
        escape::word(until_nul(&p.ifname)),
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
        Some((p, c)) => (p.to_string(), escape::word(until_nul(c))),
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
