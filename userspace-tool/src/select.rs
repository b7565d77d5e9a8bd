//! Which records `dump`, `follow` and `read` show: by type, and by the same criteria the
//! module's filter takes (`--port`, `--addr`, `--pid`, ...), applied here to what is read.
//! LOST records are always shown.

use tcplog_ctl::{rtype, Filter, Subject};

use crate::criteria::CriteriaArgs;
use crate::record::{Body, Record};

/// Record type names, as `--type` and JSON's `type` spell them.
pub const TYPES: [(u16, &str); 8] = [
    (rtype::EVENT, "event"),
    (rtype::SUMMARY, "summary"),
    (rtype::INTERIM, "interim"),
    (rtype::PACKET, "packet"),
    (rtype::LIMIT, "limit"),
    (rtype::CONFIG, "config"),
    (rtype::MARK, "mark"),
    (rtype::LOST, "lost"),
];

#[derive(Debug, Default)]
pub struct Selection {
    types: Vec<u16>,
    filter: Filter,
}

impl Selection {
    pub fn new(types: &[String], criteria: &CriteriaArgs) -> Result<Self, String> {
        let mut t = Vec::new();
        for name in types.iter().flat_map(|s| s.split(',')) {
            let (ty, _) = TYPES.iter().find(|(_, n)| *n == name).ok_or_else(|| {
                let names: Vec<&str> = TYPES.iter().map(|(_, n)| *n).collect();
                format!("--type {name}: use one of {}", names.join(", "))
            })?;
            t.push(*ty);
        }
        Ok(Selection {
            types: t,
            filter: criteria.to_filter()?,
        })
    }

    pub fn passes(&self, r: &Record) -> bool {
        let ty = r.header.rtype;
        if ty == rtype::LOST {
            return true;
        }
        if !self.types.is_empty() && !self.types.contains(&ty) {
            return false;
        }
        if self.filter.is_empty() {
            return true;
        }
        let none = [0u8; 16];
        let s = match &r.body {
            Body::Event(e) => e.subject(),
            Body::Summary(b) => b.subject(),
            Body::Interim(i) => i.summary.subject(),
            Body::Packet(p, d) => {
                let v = crate::output::packet_view(p, d);
                let addr = |a: Option<std::net::IpAddr>| match a {
                    Some(std::net::IpAddr::V4(v)) => {
                        let mut x = [0u8; 16];
                        x[..4].copy_from_slice(&v.octets());
                        x
                    }
                    Some(std::net::IpAddr::V6(v)) => v.octets(),
                    None => [0; 16],
                };
                let (sa, da) = (addr(v.saddr), addr(v.daddr));
                // The process is not known for a packet: uid, pid and comm criteria fail.
                let s = Subject {
                    family: p.family,
                    protocol: p.protocol,
                    has_endpoints: v.saddr.is_some(),
                    lport: v.sport.unwrap_or(0),
                    rport: v.dport.unwrap_or(0),
                    laddr: &sa,
                    raddr: &da,
                    uid: u32::MAX,
                    pid: 0,
                    netns: p.netns,
                    comm: &none,
                    mptcp: false,
                    cgroup_id: u64::MAX,
                };
                return self.filter.matches(&s);
            }
            Body::Config(c) => self.identity(c.pid, c.uid, &c.comm),
            Body::Mark(m) => self.identity(m.pid, m.uid, &m.comm),
            Body::Limit(_) | Body::Lost(_) | Body::Unknown(_) => return false,
        };
        self.filter.matches(&s)
    }

    /// Records that name a process but no socket.
    fn identity<'a>(&self, pid: u32, uid: u32, comm: &'a [u8; 16]) -> Subject<'a> {
        const NONE: [u8; 16] = [0; 16];
        Subject {
            family: 0,
            protocol: 0,
            has_endpoints: false,
            lport: 0,
            rport: 0,
            laddr: &NONE,
            raddr: &NONE,
            uid,
            pid,
            netns: 0,
            comm,
            mptcp: false,
            cgroup_id: u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{mark, udp_packet};
    use crate::record::{Decoder, Item};

    fn one(b: &[u8]) -> Record {
        match Decoder::new(b).next_item() {
            Some(Item::Record(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn types_and_criteria_select() {
        let pkt = one(&udp_packet(1, b"x", 128, 1));
        let mk = one(&mark(2, 7));
        let s = Selection::new(&["packet".into()], &CriteriaArgs::default()).unwrap();
        assert!(s.passes(&pkt) && !s.passes(&mk));
        let c = CriteriaArgs {
            ports: vec!["53".into()],
            ..Default::default()
        };
        let s = Selection::new(&[], &c).unwrap();
        assert!(s.passes(&pkt), "dport 53");
        assert!(!s.passes(&mk), "a mark has no port");
        let c = CriteriaArgs {
            pids: vec![42],
            ..Default::default()
        };
        let s = Selection::new(&[], &c).unwrap();
        assert!(s.passes(&mk) && !s.passes(&pkt));
        // The sample's records: an IPv6 TCP summary of cgroup 7001, MPTCP events and summary of
        // cgroup 7002, a subflow's TCP summary, an interim record of cgroup 7001.
        let recs: Vec<Record> = {
            let buf = crate::output::tests::sample_stream();
            let mut d = Decoder::new(&buf);
            std::iter::from_fn(|| match d.next_item() {
                Some(Item::Record(r)) => Some(r),
                _ => None,
            })
            .collect()
        };
        let picked = |types: &[String], c: CriteriaArgs| -> Vec<u64> {
            let s = Selection::new(types, &c).unwrap();
            recs.iter()
                .filter(|r| r.header.rtype != rtype::LOST && s.passes(r))
                .map(|r| r.header.seq)
                .collect()
        };
        let mptcp = CriteriaArgs {
            protos: vec!["mptcp".into()],
            ..Default::default()
        };
        assert_eq!(
            picked(&[], mptcp),
            [16, 17, 18],
            "MPTCP events and summary, not the subflow"
        );
        let cg = CriteriaArgs {
            cgroups: vec!["7001".into()],
            ..Default::default()
        };
        assert_eq!(picked(&[], cg.clone()), [12, 20]);
        assert_eq!(picked(&["interim".into()], cg), [20]);
        let e = Selection::new(&["bogus".into()], &CriteriaArgs::default()).unwrap_err();
        assert!(
            e.contains("--type bogus: use one of event, summary, interim"),
            "{e}"
        );
    }
}
