//! Records as text for people: a header line, then one line per record in tcplife's columns.
//!
//! A record is always exactly one line of printable characters: names from outside are shown
//! through [`escape::word`], one word each, whatever bytes they hold.
//!
//! Two layouts ([`Layout`]): the compact one (the default) shows each end as `ADDR:PORT`
//! (`[ADDR]:PORT` for IPv6) in columns as wide as the widest end shown so far, at least an IPv4
//! end's; the wide one (`--wide`) has separate address and port columns, each wide enough for any
//! IPv6 address.

use std::net::IpAddr;

use tcplog_ctl::{self as abi, EventBody, InterimBody, PacketBody, SummaryBody};

use super::{direction_name, owner, packet_view, rfc3339, Context};
use crate::escape::{self, until_nul};
use crate::record::{
    close_name, config_item_name, errno_name, event_proto_name, ip, op_name, open_name, proto_name,
    tcp_state_name, type_name, Body, Record,
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

/// The narrowest an end's column is in the compact layout: `127.0.0.1:40000`.
const MIN_END: usize = 15;

/// The columns of the text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    wide: bool,
    local: usize,
    remote: usize,
}

/// Both ends of a record that has them.
type Ends = (IpAddr, u16, IpAddr, u16);

fn ends(r: &Record) -> Option<Ends> {
    match &r.body {
        Body::Event(e) => Some((
            ip(e.family, &e.laddr),
            e.lport,
            ip(e.family, &e.raddr),
            e.rport,
        )),
        _ => super::summary_of(r).map(|s| {
            (
                ip(s.family, &s.laddr),
                s.lport,
                ip(s.family, &s.raddr),
                s.rport,
            )
        }),
    }
}

/// An end as the compact layout shows it: `10.0.0.1:80`, `[fd00::1]:80`; `*` for no port.
pub fn end(a: IpAddr, port: u16) -> String {
    let port = if port == 0 {
        "*".to_owned()
    } else {
        port.to_string()
    };
    match a {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

impl Layout {
    /// The compact layout, as narrow as IPv4 ends allow until wider ones come.
    pub fn compact() -> Self {
        Layout {
            wide: false,
            local: MIN_END,
            remote: MIN_END,
        }
    }

    /// The wide layout: address and port columns for any IPv6 address.
    pub fn wide() -> Self {
        Layout {
            wide: true,
            local: 0,
            remote: 0,
        }
    }

    /// Widens the end columns to hold `r`'s ends; returns whether they changed (the header
    /// should then be shown again).
    pub fn fit(&mut self, r: &Record) -> bool {
        if self.wide {
            return false;
        }
        let Some((la, lp, ra, rp)) = ends(r) else {
            return false;
        };
        let (l, r) = (end(la, lp).len(), end(ra, rp).len());
        let changed = l > self.local || r > self.remote;
        self.local = self.local.max(l);
        self.remote = self.remote.max(r);
        changed
    }

    /// The header line.
    pub fn header(&self) -> String {
        if self.wide {
            format!(
                "{:<15} {:<7} {:>7} {:<15} {:<39} {:>5} {:<39} {:>5} {:>10} {:>10} {:>10} DETAIL",
                "TIME", "TYPE", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "TX", "RX", "MS"
            )
        } else {
            format!(
                "{:<15} {:<7} {:>7} {:<15} {:<lw$} {:<rw$} {:>10} {:>10} {:>10} DETAIL",
                "TIME",
                "TYPE",
                "PID",
                "COMM",
                "LOCAL",
                "REMOTE",
                "TX",
                "RX",
                "MS",
                lw = self.local,
                rw = self.remote
            )
        }
    }

    /// One text line: the common columns, "-" where a record has no such thing, then the detail.
    fn columns(
        &self,
        time_ns: u64,
        ty: &str,
        who: Option<(u32, &[u8])>,
        ends: Option<Ends>,
        traffic: Option<(u64, u64, Option<f64>)>,
        detail: &str,
    ) -> String {
        let (pid, comm) = match who {
            Some((p, c)) => (p.to_string(), escape::word(until_nul(c))),
            None => ("-".into(), "-".into()),
        };
        let (tx, rx, ms) = match traffic {
            Some((tx, rx, ms)) => (
                tx.to_string(),
                rx.to_string(),
                ms.map_or_else(|| "?".to_owned(), |m| format!("{m:.3}")),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let line = if self.wide {
            let (la, lp, ra, rp) = match ends {
                Some((la, lp, ra, rp)) => (
                    la.to_string(),
                    lp.to_string(),
                    ra.to_string(),
                    rp.to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
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
        } else {
            let (l, r) = match ends {
                Some((la, lp, ra, rp)) => (end(la, lp), end(ra, rp)),
                None => ("-".into(), "-".into()),
            };
            format!(
                "{:<15} {:<7} {:>7} {:<15} {:<lw$} {:<rw$} {:>10} {:>10} {:>10} {}",
                clock(time_ns),
                ty,
                pid,
                comm,
                l,
                r,
                tx,
                rx,
                ms,
                detail,
                lw = self.local,
                rw = self.remote
            )
        };
        line.trim_end().to_owned()
    }

    /// A record as one line of text.
    pub fn line(&self, r: &Record, ctx: &Context<'_>) -> String {
        let h = &r.header;
        let ty = type_name(h.rtype);
        let t = h.time_ns;
        let cols = |who, traffic, detail: &str| self.columns(t, ty, who, ends(r), traffic, detail);
        let owner = owner_text(r, ctx);
        match &r.body {
            Body::Event(e) => {
                let who = (e.flags & abi::EVF_NO_PROCESS == 0).then_some((e.pid, &e.comm[..]));
                cols(who, None, &with_owner(event_detail(e), &owner))
            }
            Body::Summary(s) => cols(
                summary_who(s),
                Some(summary_traffic(s)),
                &with_owner(summary_detail(s), &owner),
            ),
            Body::Interim(i) => cols(
                summary_who(&i.summary),
                Some(summary_traffic(&i.summary)),
                &with_owner(interim_detail(i), &owner),
            ),
            Body::Packet(p, d) => format!("{} {:<7} {}", clock(t), ty, packet_text(p, d)),
            Body::Limit(l) => self.columns(
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
            Body::Lost(l) => self.columns(
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
            Body::Config(c) => self.columns(
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
            Body::Mark(k) => self.columns(
                t,
                ty,
                Some((k.pid, &k.comm[..])),
                None,
                None,
                &format!("value {} #{} (uid {})", k.value, k.index, k.uid),
            ),
            Body::Unknown(bytes) => self.columns(
                t,
                ty,
                None,
                None,
                None,
                &format!("type {} ({} bytes)", h.rtype, bytes.len()),
            ),
        }
    }
}

fn summary_who(s: &SummaryBody) -> Option<(u32, &[u8])> {
    (s.flags & abi::SUMF_OWNER_UNKNOWN == 0).then_some((s.pid, &s.comm[..]))
}

/// TX, RX and MS: data bytes each way and the duration (an open connection's age).
fn summary_traffic(s: &SummaryBody) -> (u64, u64, Option<f64>) {
    let ms = (s.flags & abi::SUMF_START_UNKNOWN == 0).then(|| s.duration_ns as f64 / 1e6);
    (s.bytes_sent, s.bytes_received, ms)
}

/// Where the owner runs, for DETAIL: its container (`docker:` and the id's first 12 digits, as
/// `docker ps` shows it; an nspawn machine's name), else its cgroup's path unless that is the
/// root; nothing when not known.
pub fn owner_text(r: &Record, ctx: &Context<'_>) -> String {
    let Some(o) = owner(r, ctx) else {
        return String::new();
    };
    if let Some(c) = &o.container {
        let short = if c.runtime == "nspawn" {
            &c.id[..]
        } else {
            &c.id[..12.min(c.id.len())]
        };
        return format!("{}:{}", c.runtime, escape::word(short));
    }
    match o.path {
        Some(p) if p != b"/" => format!("cgroup {}", escape::word(p)),
        _ => String::new(),
    }
}

fn with_owner(mut detail: String, owner: &str) -> String {
    if !owner.is_empty() {
        detail.push(' ');
        detail.push_str(owner);
    }
    detail
}

/// A duration in ms, as DETAIL shows latencies.
fn ms(ns: u64) -> String {
    format!("{:.3}ms", ns as f64 / 1e6)
}

fn event_detail(e: &EventBody) -> String {
    let mut s = format!("{} {}", event_proto_name(e), op_name(e.op));
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
    if super::json::connect_outcome(e) {
        s.push_str(&format!(" in {}", ms(e.latency_ns)));
    }
    s
}

/// What summaries and interim records add to DETAIL beyond their first words.
fn summary_tail(s: &SummaryBody, d: &mut String) {
    if s.flags & abi::SUMF_IP_COUNTERS != 0 {
        d.push_str(&format!(" pkts {}/{}", s.pkts_out, s.pkts_in));
    }
    if s.flags & abi::SUMF_PARTIAL != 0 {
        d.push_str(" partial");
    }
    if s.flags & abi::SUMF_FIN_WAIT2 != 0 {
        d.push_str(" fin_wait2");
    }
    if s.flags & abi::SUMF_MPTCP != 0 {
        d.push_str(&format!(" mptcp {:016x}", s.sock_id));
    }
    if s.parent_id != 0 {
        d.push_str(&format!(" subflow of {:016x}", s.parent_id));
    }
    if let Some(v) = crate::verdict::limited_by(s) {
        d.push_str(&format!(" {v}-limited"));
    }
}

fn summary_detail(s: &SummaryBody) -> String {
    let mut d = format!("{} {}", open_name(s.open), close_name(s.close));
    summary_tail(s, &mut d);
    d
}

fn interim_detail(i: &InterimBody) -> String {
    let mut d = format!(
        "{} {} +{}/+{}",
        tcp_state_name(i.state),
        open_name(i.summary.open),
        i.delta_bytes_sent,
        i.delta_bytes_received
    );
    summary_tail(&i.summary, &mut d);
    d
}
