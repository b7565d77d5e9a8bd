//! How records are shown: text lines for people ([`text`]), JSON Lines for scripts ([`json`]),
//! CSV for spreadsheets ([`csv`]); and what the three share.

use std::time::{Duration, UNIX_EPOCH};

use tcplog_ctl::{self as abi, direction, PacketBody};

pub mod csv;
pub mod json;
pub mod text;

pub use self::csv::{to_csv_row, CSV_COLUMNS};
pub use self::json::to_json;
pub use self::text::{text_header, to_text};

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
    use crate::record::{Decoder, Item, Record};
    use tcplog_ctl::{EventBody, LimitBody, SummaryBody};

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
        let mut w = ::csv::Writer::from_writer(Vec::new());
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
