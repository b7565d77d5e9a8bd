//! How records are shown: text lines for people ([`text`]), JSON Lines for scripts ([`json`]),
//! CSV for spreadsheets ([`csv`]); and what the three share.

use std::time::{Duration, UNIX_EPOCH};

use tcplog_ctl::{self as abi, direction, PacketBody};

use crate::cgroup::{self, Cgroups};
use crate::escape::until_nul;
use crate::record::{Body, Record};

pub mod csv;
pub mod json;
pub mod text;

pub use self::csv::{to_csv_row, CSV_COLUMNS};
pub use self::text::Layout;

/// What the formats show beyond the record itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// Cgroup paths by id, for records read live from this machine's device; `None` shows ids
    /// only (log files, which may come from elsewhere).
    pub cgroups: Option<&'a Cgroups>,
}

/// The process a record names, where it names one: its cgroup and parent.
pub struct Owner<'a> {
    pub cgroup_id: u64,
    pub ppid: u32,
    /// The cgroup's path, where known.
    pub path: Option<&'a [u8]>,
    /// The container that path names, if any.
    pub container: Option<cgroup::Container>,
}

/// The summary part of a record, for summaries and interim records alike.
pub fn summary_of(r: &Record) -> Option<&abi::SummaryBody> {
    match &r.body {
        Body::Summary(s) => Some(s),
        Body::Interim(i) => Some(&i.summary),
        _ => None,
    }
}

/// The owner's cgroup and parent, where the record knows its process.
pub fn owner<'a>(r: &Record, ctx: &Context<'a>) -> Option<Owner<'a>> {
    let (cgroup_id, ppid) = match &r.body {
        Body::Event(e) if e.flags & abi::EVF_NO_PROCESS == 0 => (e.cgroup_id, e.ppid),
        _ => match summary_of(r) {
            Some(s) if s.flags & abi::SUMF_OWNER_UNKNOWN == 0 => (s.cgroup_id, s.ppid),
            _ => return None,
        },
    };
    let path = ctx.cgroups.and_then(|c| c.path(cgroup_id));
    Some(Owner {
        cgroup_id,
        ppid,
        path,
        container: path.and_then(cgroup::container),
    })
}

/// Output formats of `dump`, `follow` and `read`.
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
    rfc3339_shown(time_ns).to_string()
}

/// [`rfc3339`] before it is made a string.
pub fn rfc3339_shown(time_ns: u64) -> impl std::fmt::Display {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(time_ns))
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

/// The strings a record's output holds that come from outside: their JSON field names and
/// bytes (a name up to its NUL). A process names itself, a user with a network namespace names
/// its interfaces, and whoever makes a cgroup (a container runtime, a user with a delegated
/// subtree) names it, so these can be any bytes: every format shows them through
/// [`crate::escape`].
pub fn outside_names<'r>(r: &'r Record, ctx: &Context<'r>) -> Vec<(&'static str, Vec<u8>)> {
    let o = owner(r, ctx);
    names_with_owner(r, o.as_ref())
        .map(|(key, bytes)| (key, bytes.to_vec()))
        .collect()
}

/// [`outside_names`], borrowed, for a record whose [`owner`] is already known.
pub fn names_with_owner<'a>(
    r: &'a Record,
    o: Option<&'a Owner<'a>>,
) -> impl Iterator<Item = (&'static str, &'a [u8])> {
    let path = o.and_then(|o| o.path).map(|p| ("cgroup", p));
    let container = o
        .and_then(|o| o.container.as_ref())
        .map(|c| ("container", c.id.as_slice()));
    own_name(r).into_iter().chain(path).chain(container)
}

/// The name the record itself carries from outside, if any: a process's `comm` (where the
/// record knows its process) or a packet's `ifname`.
fn own_name(r: &Record) -> Option<(&'static str, &[u8])> {
    fn comm(c: &[u8; 16]) -> (&'static str, &[u8]) {
        ("comm", until_nul(c))
    }
    match &r.body {
        Body::Event(e) if e.flags & abi::EVF_NO_PROCESS == 0 => Some(comm(&e.comm)),
        Body::Event(_) => None,
        Body::Config(c) => Some(comm(&c.comm)),
        Body::Mark(k) => Some(comm(&k.comm)),
        Body::Packet(p, _) => Some(("ifname", until_nul(&p.ifname))),
        _ => summary_of(r)
            .filter(|s| s.flags & abi::SUMF_OWNER_UNKNOWN == 0)
            .map(|s| comm(&s.comm)),
    }
}

pub(crate) fn direction_name(d: u8) -> &'static str {
    match d {
        direction::IN => "in",
        direction::OUT => "out",
        direction::FORWARD => "forward",
        _ => "unknown",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{Decoder, Item};
    use serde_json::Value;
    use tcplog_ctl::{EventBody, LimitBody, SummaryBody};

    use crate::cgroup::Cgroups;

    pub fn one(buf: &[u8]) -> Record {
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
                ..EventBody::default()
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
                ppid: 1,
                min_rtt_us: 80,
                cgroup_id: 7001,
                connect_latency_ns: 250_000,
                delivery_rate: 1_250_000,
                busy_us: 2_000_000,
                rwnd_limited_us: 1_500_000,
                sndbuf_limited_us: 0,
                first_tx_ns: 300_000,
                max_idle_ns: 1_000_000_000,
                flags: abi::SUMF_IP_COUNTERS | abi::SUMF_LATENCY | abi::SUMF_FIRST_TX,
                ..SummaryBody::default()
            }
            .as_bytes(),
            t + 3,
        ));
        // An MPTCP connection's connect, and its asynchronous outcome with its latency.
        let mptcp_connect = EventBody {
            sock_id: 97,
            netns: 4026531840,
            pid: 42,
            tid: 42,
            uid: 1000,
            result: libc::EINPROGRESS,
            op: abi::op::TCP_CONNECT,
            family: abi::AF_INET,
            protocol: abi::IPPROTO_TCP,
            sock_type: 1,
            flags: abi::EVF_MPTCP,
            lport: 40002,
            rport: 8080,
            laddr: v4([10, 0, 0, 1]),
            raddr: v4([10, 0, 0, 2]),
            comm,
            ppid: 1,
            cgroup_id: 7002,
            latency_ns: 0,
            ..EventBody::default()
        };
        s.extend(encode_at(rtype::EVENT, 16, mptcp_connect.as_bytes(), t + 5));
        let outcome = EventBody {
            result: 0,
            flags: abi::EVF_MPTCP | abi::EVF_ASYNC,
            latency_ns: 1_234_567,
            ..mptcp_connect
        };
        s.extend(encode_at(rtype::EVENT, 17, outcome.as_bytes(), t + 6));
        // Its summary, and one of its subflows'.
        let mptcp_sum = SummaryBody {
            sock_id: 97,
            start_ns: t - 1_000_000_000,
            duration_ns: 1_000_000_000,
            bytes_sent: 12345,
            bytes_received: 12345,
            netns: 4026531840,
            pid: 42,
            uid: 1000,
            ppid: 1,
            cgroup_id: 7002,
            flags: abi::SUMF_MPTCP,
            open: abi::open::ACTIVE,
            close: abi::close::FIN,
            family: abi::AF_INET,
            lport: 40002,
            rport: 8080,
            laddr: v4([10, 0, 0, 1]),
            raddr: v4([10, 0, 0, 2]),
            comm,
            ..SummaryBody::default()
        };
        s.extend(encode_at(rtype::SUMMARY, 18, mptcp_sum.as_bytes(), t + 7));
        let subflow = SummaryBody {
            sock_id: 96,
            parent_id: 97,
            flags: abi::SUMF_IP_COUNTERS | abi::SUMF_FIN_WAIT2,
            pkts_in: 12,
            pkts_out: 13,
            ip_bytes_in: 13_000,
            ip_bytes_out: 13_100,
            ..mptcp_sum
        };
        s.extend(encode_at(rtype::SUMMARY, 19, subflow.as_bytes(), t + 8));
        // An open connection's interim record.
        let interim = abi::InterimBody {
            summary: SummaryBody {
                sock_id: 95,
                start_ns: t - 6_000_000_000,
                duration_ns: 6_000_000_000,
                bytes_sent: 3000,
                bytes_received: 300,
                netns: 4026531840,
                pid: 42,
                uid: 1000,
                ppid: 1,
                cgroup_id: 7001,
                flags: abi::SUMF_IP_COUNTERS,
                open: abi::open::PASSIVE,
                family: abi::AF_INET,
                lport: 8080,
                rport: 40003,
                laddr: v4([10, 0, 0, 2]),
                raddr: v4([10, 0, 0, 1]),
                comm,
                pkts_in: 9,
                pkts_out: 10,
                ip_bytes_in: 500,
                ip_bytes_out: 3600,
                busy_us: 100_000,
                ..SummaryBody::default()
            },
            state: 1,
            since_ns: t - 2_000_000_000,
            delta_bytes_sent: 1000,
            delta_bytes_received: 100,
            delta_pkts_in: 3,
            delta_pkts_out: 3,
            delta_ip_bytes_in: 160,
            delta_ip_bytes_out: 1120,
            ..abi::InterimBody::default()
        };
        s.extend(encode_at(rtype::INTERIM, 20, interim.as_bytes(), t + 9));
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

    fn decode_all(buf: &[u8]) -> Vec<Record> {
        let mut d = Decoder::new(buf);
        let mut v = Vec::new();
        while let Some(item) = d.next_item() {
            match item {
                Item::Record(r) => v.push(r),
                other => panic!("{other:?}"),
            }
        }
        v
    }

    fn records() -> Vec<Record> {
        let v = decode_all(&sample_stream());
        assert_eq!(v.len(), 12);
        v
    }

    /// Cgroup paths of the sample's owners: a Docker container and a systemd service.
    fn sample_cgroups() -> Cgroups {
        Cgroups::from_paths(&[
            (
                7001,
                b"/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
            ),
            (7002, b"/system.slice/web.service"),
        ])
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

    fn as_text_with(records: &[Record], mut layout: Layout, ctx: &Context<'_>) -> String {
        for r in records {
            layout.fit(r);
        }
        let mut s = layout.header() + "\n";
        for r in records {
            s.push_str(&layout.line(r, ctx));
            s.push('\n');
        }
        s
    }

    fn as_text(records: &[Record]) -> String {
        as_text_with(records, Layout::compact(), &Context::default())
    }

    /// The lines `follow --json` writes; the same as the `Value`s that CSV and `conns` build.
    fn as_json_with(records: &[Record], ctx: &Context<'_>) -> String {
        let mut out = Vec::new();
        for r in records {
            json::write_line(&mut out, r, ctx).unwrap();
        }
        let out = String::from_utf8(out).unwrap();
        let via_value: String = records
            .iter()
            .map(|r| json::to_line(&json::to_json(r, ctx)) + "\n")
            .collect();
        assert_eq!(out, via_value);
        out
    }

    fn as_json(records: &[Record]) -> String {
        as_json_with(records, &Context::default())
    }

    fn as_csv_with(records: &[Record], ctx: &Context<'_>) -> String {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(CSV_COLUMNS).unwrap();
        for r in records {
            w.write_record(to_csv_row(r, ctx)).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    fn as_csv(records: &[Record]) -> String {
        as_csv_with(records, &Context::default())
    }

    #[test]
    fn golden_text() {
        let cg = sample_cgroups();
        let ctx = Context { cgroups: Some(&cg) };
        golden(
            "golden.txt",
            &as_text_with(&records(), Layout::compact(), &ctx),
        );
        golden(
            "golden-wide.txt",
            &as_text_with(&records(), Layout::wide(), &ctx),
        );
    }

    #[test]
    fn golden_json() {
        let cg = sample_cgroups();
        golden(
            "golden.jsonl",
            &as_json_with(&records(), &Context { cgroups: Some(&cg) }),
        );
    }

    #[test]
    fn golden_csv() {
        let cg = sample_cgroups();
        golden(
            "golden.csv",
            &as_csv_with(&records(), &Context { cgroups: Some(&cg) }),
        );
    }

    /// IPv4 ends only: the compact layout is far narrower than the wide one, and a v6 end
    /// widens it.
    #[test]
    fn compact_columns_fit_the_ends_shown() {
        let recs = records();
        let v4: Vec<Record> = recs
            .iter()
            .filter(|r| summary_of(r).is_none_or(|s| s.family == abi::AF_INET))
            .cloned()
            .collect();
        let compact = as_text(&v4);
        let wide = as_text_with(&v4, Layout::wide(), &Context::default());
        let longest = |s: &str| s.lines().map(str::len).max().unwrap();
        assert!(longest(&compact) + 30 < longest(&wide), "{compact}\n{wide}");
        let header = compact.lines().next().unwrap();
        assert!(header.len() <= 120, "{} columns: {header}", header.len());
        let mut l = Layout::compact();
        for r in &v4 {
            assert!(!l.fit(r), "IPv4 ends fit the narrowest columns");
        }
        let mut six = recs
            .iter()
            .find(|r| summary_of(r).is_some_and(|s| s.family == abi::AF_INET6))
            .unwrap()
            .clone();
        if let Body::Summary(s) = &mut six.body {
            s.raddr = [
                0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
            ];
        }
        assert!(l.fit(&six), "an IPv6 end widens them");
        assert!(!l.fit(&six), "once");
        assert!(
            l.header().contains("REMOTE                 "),
            "{}",
            l.header()
        );
        // Every line's columns line up under the header's.
        let all = as_text(&recs);
        let at = all.lines().next().unwrap().find("REMOTE").unwrap();
        for line in all.lines().skip(1).filter(|l| !l.contains(" packet ")) {
            assert_eq!(&line[at - 1..at], " ", "{line}");
        }
    }

    /// Cgroup paths are names from outside: escaped in text and CSV, exact in JSON.
    #[test]
    fn hostile_cgroup_paths() {
        let recs = records();
        let path = b"/machine.slice/machine-x\x1b[2J\n\xff.scope";
        let cg = Cgroups::from_paths(&[(7001, &path[..]), (7002, b"/a b/\xe2\x80\xae")]);
        let ctx = Context { cgroups: Some(&cg) };
        let text = as_text_with(&recs, Layout::compact(), &ctx);
        assert!(!text.replace('\n', "").chars().any(crate::escape::is_unsafe));
        assert_eq!(text.lines().count(), 1 + recs.len());
        assert!(
            text.lines().any(|l| l.ends_with(r" nspawn:x\x1b[2J\n\xff")),
            "{text}"
        );
        assert!(text.contains(r" cgroup /a\x20b/\u{202e}"), "{text}");
        let json = as_json_with(&recs, &ctx);
        assert!(json.contains(r#""cgroup_hex":""#), "{json}");
        assert!(json.contains(r#""container_runtime":"nspawn""#), "{json}");
        assert!(!json
            .chars()
            .any(|c| c != '\n' && crate::escape::is_unsafe(c)));
        let csv = as_csv_with(&recs, &ctx);
        assert_eq!(csv.lines().count(), 1 + recs.len());
        assert!(
            csv.contains(r"/machine.slice/machine-x\x1b[2J\n\xff.scope"),
            "{csv}"
        );
    }

    /// Names nobody here chose, one per record: issue #16's (ESC [ 2 J " a , b LF 0xff 0xfe);
    /// a space, a right-to-left override and a C1 CSI; a formula with DEL and a backslash; `-`;
    /// nothing; valid UTF-8 with a zero-width space; and an interface name with ESC, an invalid
    /// byte and a line separator.
    pub const HOSTILE_NAMES: [&[u8]; 7] = [
        b"\x1b[2J\"a,b\n\xff\xfe",
        "a b\u{202e}\u{9b}x".as_bytes(),
        b"=1+1 \x7f\\",
        b"-",
        b"",
        "名前\u{200b}".as_bytes(),
        b"e\x1bth\xff\xe2\x80\xa8",
    ];

    fn name16(b: &[u8]) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..b.len()].copy_from_slice(b);
        n
    }

    /// Records that carry [`HOSTILE_NAMES`], in that order.
    pub fn hostile_stream() -> Vec<u8> {
        use crate::record::tests::{encode_at, udp_packet};
        use tcplog_ctl::{rtype, Pod};
        let t = 1_700_000_000_123_456_789u64;
        let n = HOSTILE_NAMES.map(name16);
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let event = |seq: u64, comm: [u8; 16]| {
            let e = EventBody {
                sock_id: 7,
                netns: 4026531840,
                pid: 4242,
                tid: 4242,
                uid: 1000,
                result: 0,
                op: abi::op::TCP_CONNECT,
                family: abi::AF_INET,
                protocol: abi::IPPROTO_TCP,
                sock_type: 1,
                flags: 0,
                lport: 40000,
                rport: 8080,
                laddr: v4,
                raddr: v4,
                comm,
                ..EventBody::default()
            };
            encode_at(rtype::EVENT, seq, e.as_bytes(), t + seq)
        };
        let mark = |seq: u64, comm: [u8; 16]| {
            let m = abi::MarkBody {
                value: seq,
                index: 0,
                pid: 4242,
                uid: 1000,
                _pad: 0,
                comm,
            };
            encode_at(rtype::MARK, seq, m.as_bytes(), t + seq)
        };
        let mut s = event(0, n[0]);
        let summary = SummaryBody {
            sock_id: 7,
            start_ns: t - 1_000_000,
            duration_ns: 1_000_000,
            bytes_sent: 1,
            bytes_received: 2,
            segs_in: 3,
            segs_out: 4,
            retrans: 0,
            srtt_us: 50,
            netns: 4026531840,
            pid: 4242,
            uid: 1000,
            flags: 0,
            open: abi::open::ACTIVE,
            close: abi::close::FIN,
            family: abi::AF_INET,
            lport: 40000,
            rport: 8080,
            _pad: 0,
            laddr: v4,
            raddr: v4,
            comm: n[1],
            pkts_in: 0,
            pkts_out: 0,
            ip_bytes_in: 0,
            ip_bytes_out: 0,
            ..SummaryBody::default()
        };
        s.extend(encode_at(rtype::SUMMARY, 1, summary.as_bytes(), t + 1));
        let config = abi::ConfigBody {
            item: abi::config_item::ENABLED,
            pid: 4242,
            uid: 0,
            _pad: 0,
            old: 0,
            new: 1,
            comm: n[2],
        };
        s.extend(encode_at(rtype::CONFIG, 2, config.as_bytes(), t + 2));
        s.extend(mark(3, n[3]));
        s.extend(mark(4, n[4]));
        s.extend(event(5, n[5]));
        // A packet on an interface of that name.
        let Body::Packet(mut p, d) = one(&udp_packet(6, b"hi", 128, 1)).body else {
            panic!("not a packet")
        };
        p.ifname = n[6];
        let mut body = p.as_bytes().to_vec();
        body.extend(&d);
        s.extend(encode_at(rtype::PACKET, 6, &body, t + 6));
        s
    }

    /// Every character of a line of output is printable: no C0 or C1 control, DEL, bidi or
    /// invisible character, no line or paragraph separator.
    fn printable(line: &str) -> bool {
        !line.chars().any(crate::escape::is_unsafe)
    }

    #[test]
    fn hostile_names_as_text() {
        let recs = decode_all(&hostile_stream());
        let s = as_text(&recs);
        golden("hostile.txt", &s);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 1 + recs.len(), "exactly one line per record");
        let header_cols = lines[0].split_whitespace().count();
        for (line, name) in lines[1..].iter().zip(HOSTILE_NAMES) {
            assert!(printable(line), "{line:?}");
            // The name is one column, whatever it holds, and says which bytes it holds.
            let col = if line.contains(" packet ") { 2 } else { 3 };
            let word = line.split_whitespace().nth(col).unwrap();
            assert_eq!(crate::escape::unescape_word(word).unwrap(), name, "{line}");
            if !line.contains(" packet ") {
                assert!(line.split_whitespace().count() >= header_cols - 1, "{line}");
            }
        }
        assert!(
            lines[1].contains(r" \x1b[2J\x22a,b\n\xff\xfe "),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn hostile_names_as_json() {
        let recs = decode_all(&hostile_stream());
        let s = as_json(&recs);
        golden("hostile.jsonl", &s);
        for (line, name) in s.lines().zip(HOSTILE_NAMES) {
            assert!(printable(line), "{line:?}");
            let v: Value = serde_json::from_str(line).unwrap();
            let key = if v["type"] == "packet" {
                "ifname"
            } else {
                "comm"
            };
            let shown = v[key].as_str().expect("a string");
            // The exact bytes: the string's own when it is UTF-8, else the _hex field's.
            let exact = match v.get(format!("{key}_hex")) {
                Some(h) => {
                    let h = h.as_str().unwrap();
                    assert!(std::str::from_utf8(name).is_err(), "{line}");
                    (0..h.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                        .collect()
                }
                None => shown.as_bytes().to_vec(),
            };
            assert_eq!(exact, name, "{line}");
            assert_eq!(shown, String::from_utf8_lossy(name), "{line}");
        }
    }

    #[test]
    fn hostile_names_as_csv() {
        let recs = decode_all(&hostile_stream());
        let s = as_csv(&recs);
        golden("hostile.csv", &s);
        assert_eq!(s.lines().count(), 1 + recs.len(), "one row per line");
        assert!(printable(&s.replace('\n', "")));
        let mut rd = ::csv::Reader::from_reader(s.as_bytes());
        let head = rd.headers().unwrap().clone();
        for (row, name) in rd.records().zip(HOSTILE_NAMES) {
            let row = row.unwrap();
            let key = if &row[0] == "packet" {
                "ifname"
            } else {
                "comm"
            };
            let i = head.iter().position(|h| h == key).unwrap();
            assert_eq!(crate::escape::unescape(&row[i]).unwrap(), name);
            for f in row.iter() {
                assert!(!f.starts_with(['=', '+', '-', '@']), "formula {f:?}");
            }
        }
    }
}
