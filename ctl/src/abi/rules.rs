// SPDX-License-Identifier: GPL-2.0

//! Packet rules: an ordered list the packet path checks every packet against. The first rule
//! that matches decides: count the packet, or log its header, or its header and body (up to the
//! snap length), like ipl. A rule may also set a threshold on concurrent connections per source
//! address; exceeding it writes a LIMIT record (HP-UX ipl's limit fields), blocking nothing.

use core::mem::{offset_of, size_of};

use super::filter::{AddrPrefix, PortRange};
use super::pod::Pod;
use super::record::{AF_INET, AF_INET6, COMM_LEN, IPPROTO_TCP, IPPROTO_UDP};

const _: () = assert!(AF_INET6 != AF_INET);

/// Most rules in a set.
pub const MAX_RULES: usize = 32;

/// `Rule::action`.
pub mod action {
    /// Count matching packets (see `TCPLOG_IOC_GET_RULE_STATS`).
    pub const COUNT: u8 = 1;
    /// Log the IP header (whole, options included) and the TCP or UDP header.
    pub const LOG_HEADER: u8 = 2;
    /// Log the headers and up to the snap length of payload.
    pub const LOG_BODY: u8 = 3;
}

/// `Rule::direction`, and `PacketBody::direction`.
pub mod direction {
    /// Any direction (rules only).
    pub const ANY: u8 = 0;
    /// Received by this host (netfilter LOCAL_IN).
    pub const IN: u8 = 1;
    /// Sent by this host (LOCAL_OUT).
    pub const OUT: u8 = 2;
    /// Forwarded through this host (FORWARD; only with `OPT_FORWARD`).
    pub const FORWARD: u8 = 3;
}

/// TCP flag bits, as in the TCP header.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// One rule. Every field that is zero (or empty) matches anything.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Source prefix; family 0 for any.
    pub src: AddrPrefix,
    /// Destination prefix; family 0 for any.
    pub dst: AddrPrefix,
    /// Source ports; 0-0 for any.
    pub sport: PortRange,
    /// Destination ports; 0-0 for any.
    pub dport: PortRange,
    /// Interface name (the one the packet arrives on or leaves by), NUL-padded; empty for any.
    pub ifname: [u8; COMM_LEN],
    /// Concurrent connections per source address above which a LIMIT record is written; 0 for
    /// no limit. Counted for connections this host accepts that the rule matches.
    pub conn_limit: u32,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 for any.
    pub protocol: u8,
    /// One of [`direction`].
    pub direction: u8,
    /// One of [`action`].
    pub action: u8,
    /// TCP flags to look at: the rule matches when `flags & tcp_flags_mask == tcp_flags`.
    pub tcp_flags_mask: u8,
    /// See `tcp_flags_mask`.
    pub tcp_flags: u8,
    /// Reserved; zero.
    pub _pad: [u8; 7],
}

/// A rule set, for `TCPLOG_IOC_SET_RULES` and `TCPLOG_IOC_GET_RULES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub n_rules: u32,
    /// Reserved; zero.
    pub _pad: u32,
    pub rules: [Rule; MAX_RULES],
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            n_rules: 0,
            _pad: 0,
            rules: [Rule::default(); MAX_RULES],
        }
    }
}

/// What each rule matched, from `TCPLOG_IOC_GET_RULE_STATS`; counts start at zero whenever the
/// rule set is replaced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleStats {
    pub packets: [u64; MAX_RULES],
    pub bytes: [u64; MAX_RULES],
}

impl Default for RuleStats {
    fn default() -> Self {
        RuleStats {
            packets: [0; MAX_RULES],
            bytes: [0; MAX_RULES],
        }
    }
}

// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
unsafe impl Pod for Rule {}
// SAFETY: As above.
unsafe impl Pod for RuleSet {}
// SAFETY: As above.
unsafe impl Pod for RuleStats {}

const _: () = {
    assert!(size_of::<Rule>() == 80);
    assert!(offset_of!(Rule, sport) == 40);
    assert!(offset_of!(Rule, ifname) == 48);
    assert!(offset_of!(Rule, conn_limit) == 64);
    assert!(offset_of!(Rule, protocol) == 68);
    assert!(offset_of!(Rule, tcp_flags) == 72);
    assert!(size_of::<RuleSet>() == 8 + 80 * MAX_RULES);
    assert!(size_of::<RuleStats>() == 16 * MAX_RULES);
};

/// What the packet path knows of a packet, for matching.
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta<'a> {
    pub family: u16,
    pub protocol: u8,
    pub direction: u8,
    pub saddr: &'a [u8; 16],
    pub daddr: &'a [u8; 16],
    /// Ports, for TCP and UDP (0 otherwise).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    pub ifname: &'a [u8; COMM_LEN],
}

fn ports_match(r: &PortRange, p: u16) -> bool {
    (r.lo == 0 && r.hi == 0) || (r.lo <= p && p <= r.hi)
}

fn prefix_match(a: &AddrPrefix, family: u16, addr: &[u8; 16]) -> bool {
    a.family == 0 || a.contains(family, addr)
}

impl Rule {
    /// Whether the rule is well formed.
    pub fn is_valid(&self) -> bool {
        let prefix_ok = |a: &AddrPrefix| *a == AddrPrefix::default() || a.is_valid();
        let ports_ok = |p: &PortRange| (p.lo == 0 && p.hi == 0) || (p.lo != 0 && p.lo <= p.hi);
        let ports_need_l4 =
            self.sport != PortRange::default() || self.dport != PortRange::default();
        prefix_ok(&self.src)
            && prefix_ok(&self.dst)
            && (self.src.family == 0 || self.dst.family == 0 || self.src.family == self.dst.family)
            && ports_ok(&self.sport)
            && ports_ok(&self.dport)
            && matches!(self.protocol, 0 | IPPROTO_TCP | IPPROTO_UDP)
            && (!ports_need_l4 || self.protocol != 0)
            && (self.tcp_flags_mask == 0 || self.protocol == IPPROTO_TCP)
            && self.tcp_flags & !self.tcp_flags_mask == 0
            && self.direction <= direction::FORWARD
            && (action::COUNT..=action::LOG_BODY).contains(&self.action)
            && self.ifname[COMM_LEN - 1] == 0
            && (self.conn_limit == 0 || self.protocol == IPPROTO_TCP)
            && self._pad == [0; 7]
    }

    /// The family the rule's addresses restrict it to, if any.
    fn family(&self) -> u16 {
        if self.src.family != 0 {
            self.src.family
        } else {
            self.dst.family
        }
    }

    /// Whether a packet matches the rule.
    pub fn matches(&self, p: &PacketMeta<'_>) -> bool {
        let fam = self.family();
        if fam != 0 && fam != p.family && !(fam == AF_INET && p.family == AF_INET6) {
            return false;
        }
        (self.protocol == 0 || self.protocol == p.protocol)
            && (self.direction == direction::ANY || self.direction == p.direction)
            && prefix_match(&self.src, p.family, p.saddr)
            && prefix_match(&self.dst, p.family, p.daddr)
            && ports_match(&self.sport, p.sport)
            && ports_match(&self.dport, p.dport)
            && p.tcp_flags & self.tcp_flags_mask == self.tcp_flags
            && (self.ifname[0] == 0 || self.ifname == *p.ifname)
    }
}

impl RuleSet {
    pub fn is_valid(&self) -> bool {
        let n = self.n_rules as usize;
        n <= MAX_RULES
            && self._pad == 0
            && self.rules[..n].iter().all(Rule::is_valid)
            && self.rules[n..].iter().all(|r| *r == Rule::default())
    }

    /// The index of the first rule that matches.
    pub fn first_match(&self, p: &PacketMeta<'_>) -> Option<usize> {
        self.rules[..self.n_rules as usize]
            .iter()
            .position(|r| r.matches(p))
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    fn pkt<'a>(s: &'a [u8; 16], d: &'a [u8; 16], ifn: &'a [u8; 16]) -> PacketMeta<'a> {
        PacketMeta {
            family: AF_INET,
            protocol: IPPROTO_TCP,
            direction: direction::IN,
            saddr: s,
            daddr: d,
            sport: 40000,
            dport: 80,
            tcp_flags: tcp_flag::SYN,
            ifname: ifn,
        }
    }

    #[test]
    fn first_match_decides() {
        let mut set = RuleSet::default();
        set.n_rules = 2;
        set.rules[0] = Rule {
            protocol: IPPROTO_UDP,
            action: action::LOG_BODY,
            ..Rule::default()
        };
        set.rules[1] = Rule {
            protocol: IPPROTO_TCP,
            dport: PortRange { lo: 80, hi: 80 },
            tcp_flags_mask: tcp_flag::SYN | tcp_flag::ACK,
            tcp_flags: tcp_flag::SYN,
            action: action::LOG_HEADER,
            ..Rule::default()
        };
        assert!(set.is_valid());
        let (s, d) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
        let mut ifn = [0u8; 16];
        ifn[..2].copy_from_slice(b"lo");
        let mut p = pkt(&s, &d, &ifn);
        assert_eq!(set.first_match(&p), Some(1));
        p.tcp_flags = tcp_flag::SYN | tcp_flag::ACK;
        assert_eq!(set.first_match(&p), None, "a SYN-ACK is not a SYN alone");
        p.protocol = IPPROTO_UDP;
        assert_eq!(set.first_match(&p), Some(0));
    }

    #[test]
    fn fields_select() {
        let (s, d) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
        let mut lo = [0u8; 16];
        lo[..2].copy_from_slice(b"lo");
        let p = pkt(&s, &d, &lo);
        let mut r = Rule {
            action: action::COUNT,
            ..Rule::default()
        };
        assert!(r.matches(&p), "an empty rule matches everything");
        r.src = AddrPrefix {
            family: AF_INET,
            prefix_len: 24,
            _pad: 0,
            addr: v4([10, 0, 0, 0]),
        };
        assert!(r.matches(&p));
        r.dst = AddrPrefix {
            family: AF_INET,
            prefix_len: 32,
            _pad: 0,
            addr: v4([10, 0, 0, 3]),
        };
        assert!(!r.matches(&p));
        r = Rule {
            action: action::COUNT,
            direction: direction::OUT,
            ..Rule::default()
        };
        assert!(!r.matches(&p));
        r.direction = direction::IN;
        r.ifname[..4].copy_from_slice(b"eth0");
        assert!(!r.matches(&p));
        r.ifname = lo;
        assert!(r.matches(&p));
    }

    #[test]
    fn malformed_rules_are_invalid() {
        let ok = Rule {
            action: action::COUNT,
            ..Rule::default()
        };
        assert!(ok.is_valid());
        let bad = [
            Rule { action: 0, ..ok },
            Rule { action: 4, ..ok },
            Rule { direction: 4, ..ok },
            Rule { protocol: 1, ..ok },
            Rule {
                dport: PortRange { lo: 80, hi: 80 },
                ..ok
            },
            Rule {
                protocol: IPPROTO_UDP,
                tcp_flags_mask: tcp_flag::SYN,
                tcp_flags: tcp_flag::SYN,
                ..ok
            },
            Rule {
                protocol: IPPROTO_TCP,
                tcp_flags_mask: tcp_flag::SYN,
                tcp_flags: tcp_flag::FIN,
                ..ok
            },
            Rule {
                conn_limit: 5,
                ..ok
            },
        ];
        for (i, r) in bad.iter().enumerate() {
            assert!(!r.is_valid(), "rule {i} should be invalid: {r:?}");
        }
        let mut set = RuleSet::default();
        set.n_rules = 33;
        assert!(!set.is_valid());
    }
}
