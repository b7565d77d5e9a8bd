//! `tcplog conns`: the open TCP connections tracked now (`TCPLOG_IOC_GET_CONNS`), what `ss -tip`
//! shows with who opened each one and since when.

use std::io::Write;
use std::path::Path;

use serde_json::Value;
use tcplog_ctl::{self as abi, InterimBody, RecordHeader};

use crate::cgroup::Cgroups;
use crate::criteria::CriteriaArgs;
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::escape::{self, until_nul};
use crate::output::json::{to_json, to_line};
use crate::output::text::{end, owner_text};
use crate::output::Context;
use crate::record::{ip, open_name, tcp_state_name, Body, Record};

/// An entry as a record (an INTERIM one made now), so that it is shown as records are.
fn as_record(c: &InterimBody, now_ns: u64) -> Record {
    Record {
        header: RecordHeader {
            magic: abi::RECORD_MAGIC,
            rtype: abi::rtype::INTERIM,
            time_ns: now_ns,
            ..RecordHeader::default()
        },
        body: Body::Interim(*c),
    }
}

/// An entry as one JSON object: `type` `conn`, the time of the listing, then the fields of an
/// interim record without the deltas (which a listing does not have).
pub fn conn_json(c: &InterimBody, now_ns: u64, ctx: &Context<'_>) -> Value {
    let mut v = to_json(&as_record(c, now_ns), ctx);
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), "conn".into());
        for k in [
            "seq",
            "boot_ns",
            "cpu",
            "close",
            "since",
            "since_ns",
            "delta_bytes_sent",
            "delta_bytes_received",
            "delta_pkts_in",
            "delta_pkts_out",
            "delta_ip_bytes_in",
            "delta_ip_bytes_out",
        ] {
            m.remove(k);
        }
    }
    v
}

/// Seconds, as AGE shows them: `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..60 => format!("{:.1}s", ns as f64 / 1e9),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The text listing: a header and a line per connection, ends sized to what is shown.
pub fn conns_text(list: &[InterimBody], wide: bool, now_ns: u64, ctx: &Context<'_>) -> String {
    let ends: Vec<(String, String)> = list
        .iter()
        .map(|c| {
            let s = &c.summary;
            let (la, ra) = (ip(s.family, &s.laddr), ip(s.family, &s.raddr));
            if wide {
                (
                    format!("{la} {:>5}", s.lport),
                    format!("{ra} {:>5}", s.rport),
                )
            } else {
                (end(la, s.lport), end(ra, s.rport))
            }
        })
        .collect();
    let width = |f: fn(&(String, String)) -> usize, min: usize| {
        ends.iter().map(f).max().unwrap_or(0).max(min)
    };
    let (lw, rw) = if wide {
        (45, 45)
    } else {
        (width(|e| e.0.len(), 15), width(|e| e.1.len(), 15))
    };
    let mut out = format!(
        "{:<11} {:>7} {:<15} {:<lw$} {:<rw$} {:>8} {:>10} {:>10} {:>8} DETAIL\n",
        "STATE", "PID", "COMM", "LOCAL", "REMOTE", "AGE", "TX", "RX", "RTT_MS"
    );
    for (c, (l, r)) in list.iter().zip(&ends) {
        let s = &c.summary;
        let (pid, comm) = if s.flags & abi::SUMF_OWNER_UNKNOWN == 0 {
            (s.pid.to_string(), escape::word(until_nul(&s.comm)))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        let age = if s.flags & abi::SUMF_START_UNKNOWN == 0 {
            age(s.duration_ns)
        } else {
            "?".to_owned()
        };
        let mut detail = open_name(s.open).to_owned();
        if s.flags & abi::SUMF_OWNER_UNKNOWN == 0 {
            detail.push_str(&format!(" ppid {}", s.ppid));
        }
        if s.flags & abi::SUMF_IP_COUNTERS != 0 {
            detail.push_str(&format!(" pkts {}/{}", s.pkts_out, s.pkts_in));
        }
        if s.retrans != 0 {
            detail.push_str(&format!(" retrans {}", s.retrans));
        }
        if s.parent_id != 0 {
            detail.push_str(&format!(" subflow of {:016x}", s.parent_id));
        }
        if let Some(v) = crate::verdict::limited_by(s) {
            detail.push_str(&format!(" {v}-limited"));
        }
        let owner = owner_text(&as_record(c, now_ns), ctx);
        if !owner.is_empty() {
            detail.push(' ');
            detail.push_str(&owner);
        }
        let line = format!(
            "{:<11} {:>7} {:<15} {:<lw$} {:<rw$} {:>8} {:>10} {:>10} {:>8.3} {}",
            tcp_state_name(c.state),
            pid,
            comm,
            l,
            r,
            age,
            s.bytes_sent,
            s.bytes_received,
            f64::from(s.srtt_us) / 1000.0,
            detail
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn run(
    path: &Path,
    json: bool,
    wide: bool,
    criteria: &CriteriaArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let filter = criteria.to_filter().map_err(Error::bad_input)?;
    let dev = Device::open_checked(path, Access::ReadOnly)?;
    let mut list: Vec<InterimBody> = dev
        .conns()?
        .into_iter()
        .filter(|c| filter.matches(&c.summary.subject()))
        .collect();
    list.sort_by_key(|c| (c.summary.start_ns, c.summary.sock_id));
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut cgroups = Cgroups::new(crate::cgroup::root());
    for c in &list {
        cgroups.learn(c.summary.cgroup_id);
    }
    let ctx = Context {
        cgroups: Some(&cgroups),
    };
    let text = if json {
        list.iter()
            .map(|c| to_line(&conn_json(c, now_ns, &ctx)) + "\n")
            .collect()
    } else {
        conns_text(&list, wide, now_ns, &ctx)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing the connections", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(age(12_345_000_000), "12.3s");
        assert_eq!(age(245_000_000_000), "4m05s");
        assert_eq!(age(7_380_000_000_000), "2h03m");
        assert_eq!(age(273_600_000_000_000), "3d04h");
    }

    fn conn(v6: bool) -> InterimBody {
        let mut c = InterimBody::default();
        let s = &mut c.summary;
        s.sock_id = 0xabc;
        s.family = if v6 { abi::AF_INET6 } else { abi::AF_INET };
        if v6 {
            s.laddr[0] = 0xfd;
            s.laddr[15] = 1;
            s.raddr[0] = 0xfd;
            s.raddr[15] = 2;
        } else {
            s.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
            s.raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        }
        s.lport = 40000;
        s.rport = 80;
        s.pid = 42;
        s.ppid = 1;
        s.comm[..4].copy_from_slice(b"curl");
        s.open = abi::open::ACTIVE;
        s.flags = abi::SUMF_IP_COUNTERS;
        s.duration_ns = 65_000_000_000;
        s.bytes_sent = 100;
        s.bytes_received = 200;
        s.pkts_out = 3;
        s.pkts_in = 4;
        s.srtt_us = 1500;
        c.state = 1;
        c
    }

    #[test]
    fn listing_as_text_fits_its_addresses() {
        let ctx = Context::default();
        let t = conns_text(&[conn(false)], false, 0, &ctx);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("STATE "), "{t}");
        assert_eq!(
            lines[1],
            "established      42 curl            10.0.0.1:40000  10.0.0.2:80        1m05s        \
             100        200    1.500 active ppid 1 pkts 3/4"
        );
        let wide = conns_text(&[conn(false)], true, 0, &ctx);
        assert!(
            lines[1].len() + 50 < wide.lines().nth(1).unwrap().len(),
            "{t}{wide}"
        );
        let t = conns_text(&[conn(false), conn(true)], false, 0, &ctx);
        assert!(t.contains("[fd00::1]:40000 [fd00::2]:80"), "{t}");
        assert!(wide.contains("10.0.0.1 40000"), "{wide}");
    }

    #[test]
    fn listing_as_json() {
        let v = conn_json(&conn(false), 1_700_000_000_000_000_000, &Context::default());
        assert_eq!(v["type"], "conn");
        assert_eq!(v["state"], "established");
        assert_eq!(v["duration_ns"], 65_000_000_000u64);
        assert_eq!(v["ppid"], 1);
        assert_eq!(v["pkts_in"], 4);
        assert_eq!(v["cgroup"], Value::Null);
        for gone in ["seq", "close", "delta_bytes_sent", "since_ns"] {
            assert!(v.get(gone).is_none(), "{gone}");
        }
    }
}
