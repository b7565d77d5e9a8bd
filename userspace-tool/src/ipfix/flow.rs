//! A connection record as IPFIX sees it: a biflow (RFC 5103) with the initiator as its source.
//!
//! A SUMMARY becomes an end-of-flow record with totals; an INTERIM record an active-timeout
//! record with the counters of its interval. Which end is the source: the initiator, the end
//! that sent the first SYN (RFC 5103 section 5.1): the remote end of a connection this host
//! accepted, this host's own end of one it opened. When who opened it is not known (a partial
//! summary, of a connection older than tracking), this host's end is the source and
//! `biflowDirection` says the direction is arbitrary. The forward counters are the source's
//! sending; the reverse ones, the destination's.

use tcplog_ctl::{self as abi, close, open, InterimBody, RecordHeader, SummaryBody};

use super::ie::{biflow, direction, end_reason, tcp};
use crate::record::{Body, Record};

/// The IP-layer counters of a flow, `[forward, reverse]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCounts {
    pub octets: [u64; 2],
    pub packets: [u64; 2],
}

/// One record to export.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// An interim record (active timeout: deltas) rather than the connection's end (totals).
    pub interim: bool,
    pub v6: bool,
    /// Source and destination addresses (IPv4 in the first four bytes) and ports.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub biflow_direction: u8,
    pub flow_direction: u8,
    /// tcplog's `sock_id`, the same in every record of the connection.
    pub flow_id: u64,
    /// When the flow (an interim record: its interval) began, if known.
    pub start_ns: Option<u64>,
    /// When it ended (an interim record: when the record was taken).
    pub end_ns: u64,
    pub end_reason: u8,
    /// TCP flags the connection's life implies, `[forward, reverse]`.
    pub tcp_flags: [u16; 2],
    /// The IP-layer counters (totals, or an interim record's deltas), when known.
    pub ip: Option<IpCounts>,
    /// Data bytes `[forward, reverse]` (totals, or an interim record's deltas).
    pub data_octets: [u64; 2],
    /// TCP segments `[forward, reverse]` (end-of-flow records only).
    pub segments: [u32; 2],
    pub retrans: u32,
    pub srtt_us: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub netns: u32,
    pub cgroup_id: u64,
    pub parent_id: u64,
    pub close: u8,
    pub flags: u16,
    pub state: u8,
}

/// Bits of a flow's shape: which template it takes.
pub mod shape {
    pub const V6: u16 = 1;
    pub const INTERIM: u16 = 2;
    pub const IP_COUNTERS: u16 = 4;
    pub const START: u16 = 8;
    /// How many shapes there are.
    pub const COUNT: u16 = 16;
}

/// The uid that says "unknown" (`(uid_t)-1`).
pub const UID_UNKNOWN: u32 = u32::MAX;

impl Flow {
    /// The flow of a SUMMARY or INTERIM record; `None` for other records and for an MPTCP
    /// connection's own records (what it carried crossed the network in its subflows, which are
    /// TCP connections with records of their own).
    pub fn from_record(r: &Record) -> Option<Flow> {
        match &r.body {
            Body::Summary(s) if s.flags & abi::SUMF_MPTCP == 0 => Some(Flow::end(&r.header, s)),
            Body::Interim(i) if i.summary.flags & abi::SUMF_MPTCP == 0 => {
                Some(Flow::interim(&r.header, i))
            }
            _ => None,
        }
    }

    /// Which template this flow takes (a combination of [`shape`] bits).
    pub fn shape(&self) -> u16 {
        let mut s = 0;
        if self.v6 {
            s |= shape::V6;
        }
        if self.interim {
            s |= shape::INTERIM;
        }
        if self.ip.is_some() {
            s |= shape::IP_COUNTERS;
        }
        if self.start_ns.is_some() {
            s |= shape::START;
        }
        s
    }

    /// What both kinds share, oriented: `local` is this host's `[sent, received]` pair of each
    /// counter, which becomes `[forward, reverse]`.
    fn common(h: &RecordHeader, s: &SummaryBody) -> (Flow, bool) {
        // This host is the source unless the remote end opened the connection.
        let local_is_source = s.open != open::PASSIVE;
        let (src, dst, sport, dport) = if local_is_source {
            (s.laddr, s.raddr, s.lport, s.rport)
        } else {
            (s.raddr, s.laddr, s.rport, s.lport)
        };
        let owner_known = s.flags & abi::SUMF_OWNER_UNKNOWN == 0;
        let f = Flow {
            v6: s.family == abi::AF_INET6,
            src,
            dst,
            sport,
            dport,
            biflow_direction: if s.open == open::UNKNOWN {
                biflow::ARBITRARY
            } else {
                biflow::INITIATOR
            },
            flow_direction: if local_is_source {
                direction::EGRESS
            } else {
                direction::INGRESS
            },
            flow_id: s.sock_id,
            end_ns: if s.flags & abi::SUMF_START_UNKNOWN == 0 {
                s.start_ns.saturating_add(s.duration_ns)
            } else {
                h.time_ns
            },
            retrans: s.retrans,
            srtt_us: s.srtt_us,
            pid: if owner_known { s.pid } else { 0 },
            ppid: if owner_known { s.ppid } else { 0 },
            uid: if owner_known { s.uid } else { UID_UNKNOWN },
            comm: if owner_known {
                String::from_utf8_lossy(crate::escape::until_nul(&s.comm)).into_owned()
            } else {
                String::new()
            },
            netns: s.netns,
            cgroup_id: if owner_known { s.cgroup_id } else { 0 },
            parent_id: s.parent_id,
            close: s.close,
            flags: s.flags,
            ..Flow::default()
        };
        (f, local_is_source)
    }

    /// An end-of-flow record: the connection's totals.
    pub fn end(h: &RecordHeader, s: &SummaryBody) -> Flow {
        let (mut f, local_is_source) = Flow::common(h, s);
        let orient = |sent: u64, received: u64| {
            if local_is_source {
                [sent, received]
            } else {
                [received, sent]
            }
        };
        if s.flags & abi::SUMF_START_UNKNOWN == 0 {
            f.start_ns = Some(s.start_ns);
        }
        f.end_reason = match s.close {
            close::TIMEOUT => end_reason::IDLE_TIMEOUT,
            _ => end_reason::END_OF_FLOW,
        };
        if s.flags & abi::SUMF_IP_COUNTERS != 0 {
            f.ip = Some(IpCounts {
                octets: orient(s.ip_bytes_out, s.ip_bytes_in),
                packets: orient(s.pkts_out, s.pkts_in),
            });
        }
        f.data_octets = orient(s.bytes_sent, s.bytes_received);
        let segs = orient(u64::from(s.segs_out), u64::from(s.segs_in));
        f.segments = [segs[0] as u32, segs[1] as u32];
        let [local, remote] = implied_flags(s, false);
        f.tcp_flags = if local_is_source {
            [local, remote]
        } else {
            [remote, local]
        };
        f
    }

    /// An active-timeout record: the counters of the interval from `since_ns` to now.
    pub fn interim(h: &RecordHeader, i: &InterimBody) -> Flow {
        let s = &i.summary;
        let (mut f, local_is_source) = Flow::common(h, s);
        let orient = |sent: u64, received: u64| {
            if local_is_source {
                [sent, received]
            } else {
                [received, sent]
            }
        };
        f.interim = true;
        f.state = i.state;
        f.close = close::UNKNOWN;
        if i.since_ns != 0 {
            f.start_ns = Some(i.since_ns);
        }
        f.end_reason = end_reason::ACTIVE_TIMEOUT;
        if s.flags & abi::SUMF_IP_COUNTERS != 0 {
            f.ip = Some(IpCounts {
                octets: orient(i.delta_ip_bytes_out, i.delta_ip_bytes_in),
                packets: orient(i.delta_pkts_out, i.delta_pkts_in),
            });
        }
        f.data_octets = orient(i.delta_bytes_sent, i.delta_bytes_received);
        let [local, remote] = implied_flags(s, true);
        f.tcp_flags = if local_is_source {
            [local, remote]
        } else {
            [remote, local]
        };
        f
    }
}

/// The TCP flags a connection's record implies each end sent, `[local, remote]`: SYN and ACK
/// from both ends of a handshake that was seen to complete (the initiator's SYN and ACK, the
/// responder's SYN-ACK), the initiator's SYN alone for one that was not; ACK from both ends of
/// a connection older than tracking; FIN from the end(s) that closed with one; RST from the end
/// that reset. Packets are not what these come from: tcplog's summaries do not keep each
/// packet's flags.
fn implied_flags(s: &SummaryBody, interim: bool) -> [u16; 2] {
    use tcp::*;
    let (mut local, mut remote) = (0, 0);
    let established = match s.open {
        open::ACTIVE => s.flags & abi::SUMF_LATENCY != 0 || interim,
        open::PASSIVE => true,
        _ => {
            local |= ACK;
            remote |= ACK;
            false
        }
    };
    match (s.open, established) {
        (open::ACTIVE | open::PASSIVE, true) => {
            local |= SYN | ACK;
            remote |= SYN | ACK;
        }
        (open::ACTIVE, false) => local |= SYN,
        _ => {}
    }
    if interim {
        return [local, remote];
    }
    match s.close {
        close::FIN if established || s.open == open::UNKNOWN => {
            local |= FIN;
            if s.flags & abi::SUMF_FIN_WAIT2 == 0 {
                remote |= FIN;
            }
        }
        close::RST_SENT => local |= RST,
        close::RST_RECEIVED => remote |= RST,
        _ => {}
    }
    [local, remote]
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A summary of an IPv4 connection this host opened (127.0.0.1:40000 to 127.0.0.2:80),
    /// 1000 bytes up and 2000 down, with its IP counters.
    pub fn summary() -> SummaryBody {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut laddr = [0u8; 16];
        laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut raddr = [0u8; 16];
        raddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        SummaryBody {
            sock_id: 0x1122_3344_5566_7788,
            start_ns: 1_700_000_000_123_456_789,
            duration_ns: 2_500_000_001,
            bytes_sent: 1000,
            bytes_received: 2000,
            segs_in: 7,
            segs_out: 6,
            retrans: 1,
            srtt_us: 345,
            netns: 4026531840,
            pid: 4242,
            uid: 1000,
            flags: abi::SUMF_IP_COUNTERS | abi::SUMF_LATENCY,
            open: open::ACTIVE,
            close: close::FIN,
            family: abi::AF_INET,
            lport: 40000,
            rport: 80,
            laddr,
            raddr,
            comm,
            pkts_in: 8,
            pkts_out: 9,
            ip_bytes_in: 2416,
            ip_bytes_out: 1468,
            ppid: 1,
            cgroup_id: 7001,
            ..SummaryBody::default()
        }
    }

    pub fn header(time_ns: u64) -> RecordHeader {
        RecordHeader {
            magic: abi::RECORD_MAGIC,
            time_ns,
            ..RecordHeader::default()
        }
    }

    #[test]
    fn an_active_open_has_this_host_as_source() {
        let s = summary();
        let f = Flow::end(&header(5), &s);
        assert_eq!(
            (f.src, f.dst, f.sport, f.dport),
            (s.laddr, s.raddr, 40000, 80)
        );
        assert_eq!(f.biflow_direction, biflow::INITIATOR);
        assert_eq!(f.flow_direction, direction::EGRESS);
        assert_eq!(
            f.ip,
            Some(IpCounts {
                octets: [1468, 2416],
                packets: [9, 8]
            })
        );
        assert_eq!(f.data_octets, [1000, 2000]);
        assert_eq!(f.segments, [6, 7]);
        assert_eq!(f.start_ns, Some(s.start_ns));
        assert_eq!(f.end_ns, s.start_ns + s.duration_ns);
        assert_eq!(f.end_reason, end_reason::END_OF_FLOW);
        use tcp::*;
        assert_eq!(f.tcp_flags, [SYN | ACK | FIN, SYN | ACK | FIN]);
        assert_eq!((f.comm.as_str(), f.uid, f.pid), ("curl", 1000, 4242));
        assert_eq!(f.shape(), shape::IP_COUNTERS | shape::START);
    }

    #[test]
    fn a_passive_open_has_the_remote_initiator_as_source() {
        let mut s = summary();
        s.open = open::PASSIVE;
        s.close = close::RST_SENT;
        s.flags &= !abi::SUMF_LATENCY;
        let f = Flow::end(&header(5), &s);
        assert_eq!(
            (f.src, f.dst, f.sport, f.dport),
            (s.raddr, s.laddr, 80, 40000)
        );
        assert_eq!(f.flow_direction, direction::INGRESS);
        assert_eq!(f.ip.unwrap().octets, [2416, 1468]);
        assert_eq!(f.data_octets, [2000, 1000]);
        use tcp::*;
        assert_eq!(f.tcp_flags, [SYN | ACK, SYN | ACK | RST], "this host reset");
    }

    #[test]
    fn what_is_unknown_is_left_out_or_said_so() {
        let mut s = summary();
        s.flags = abi::SUMF_PARTIAL | abi::SUMF_OWNER_UNKNOWN | abi::SUMF_START_UNKNOWN;
        s.open = open::UNKNOWN;
        s.close = close::TIMEOUT;
        let f = Flow::end(&header(1_800_000_000_000_000_000), &s);
        assert_eq!(f.biflow_direction, biflow::ARBITRARY);
        assert_eq!(f.src, s.laddr, "this host, arbitrarily");
        assert_eq!(f.start_ns, None);
        assert_eq!(f.end_ns, 1_800_000_000_000_000_000, "the record's time");
        assert_eq!(f.ip, None);
        assert_eq!((f.pid, f.uid, f.comm.as_str()), (0, UID_UNKNOWN, ""));
        assert_eq!(f.end_reason, end_reason::IDLE_TIMEOUT);
        assert_eq!(f.shape(), 0);
        assert_eq!(f.tcp_flags, [tcp::ACK, tcp::ACK]);
    }

    #[test]
    fn an_interim_record_covers_its_interval() {
        let s = summary();
        let i = InterimBody {
            summary: s,
            state: 1,
            since_ns: s.start_ns + 1_000_000_000,
            delta_bytes_sent: 10,
            delta_bytes_received: 20,
            delta_pkts_in: 3,
            delta_pkts_out: 4,
            delta_ip_bytes_in: 176,
            delta_ip_bytes_out: 218,
            ..InterimBody::default()
        };
        let f = Flow::interim(&header(5), &i);
        assert!(f.interim);
        assert_eq!(f.start_ns, Some(i.since_ns));
        assert_eq!(f.end_ns, s.start_ns + s.duration_ns);
        assert_eq!(f.end_reason, end_reason::ACTIVE_TIMEOUT);
        assert_eq!(
            f.ip,
            Some(IpCounts {
                octets: [218, 176],
                packets: [4, 3]
            })
        );
        assert_eq!(f.data_octets, [10, 20]);
        assert_eq!(f.tcp_flags, [tcp::SYN | tcp::ACK, tcp::SYN | tcp::ACK]);
        assert_eq!(f.state, 1);
        assert_eq!(
            f.shape(),
            shape::INTERIM | shape::IP_COUNTERS | shape::START
        );
    }

    #[test]
    fn mptcp_connections_are_left_to_their_subflows() {
        let mut s = summary();
        s.flags |= abi::SUMF_MPTCP;
        let r = Record {
            header: header(1),
            body: Body::Summary(s),
        };
        assert_eq!(Flow::from_record(&r), None);
        s.flags &= !abi::SUMF_MPTCP;
        s.parent_id = 99;
        let r = Record {
            header: header(1),
            body: Body::Summary(s),
        };
        assert_eq!(Flow::from_record(&r).unwrap().parent_id, 99, "a subflow");
    }
}
