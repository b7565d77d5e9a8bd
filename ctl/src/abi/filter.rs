// SPDX-License-Identifier: GPL-2.0

//! Criteria that choose, inside the kernel, which events and summaries are written.
//!
//! A [`Filter`] holds lists of criteria of several kinds. A record passes when, for every kind
//! whose list is not empty, it matches at least one entry: kinds AND together, entries of one
//! kind OR. An empty filter passes everything. Port and address criteria match either end of the
//! socket, local or foreign; a record without ports or addresses (a create event) does not match
//! them. The matching code here is the one the module runs.

use core::mem::{offset_of, size_of};

use super::pod::Pod;
use super::record::{
    op, EventBody, SummaryBody, AF_INET, AF_INET6, COMM_LEN, EVF_MPTCP, IPPROTO_TCP, IPPROTO_UDP,
    SUMF_MPTCP,
};

/// Most entries of each kind.
pub const MAX_FILTER_PORTS: usize = 8;
/// See [`MAX_FILTER_PORTS`].
pub const MAX_FILTER_ADDRS: usize = 8;
/// See [`MAX_FILTER_PORTS`].
pub const MAX_FILTER_IDS: usize = 8;
/// See [`MAX_FILTER_PORTS`].
pub const MAX_FILTER_COMMS: usize = 4;
/// See [`MAX_FILTER_PORTS`].
pub const MAX_FILTER_NETNS: usize = 4;
/// See [`MAX_FILTER_PORTS`].
pub const MAX_FILTER_CGROUPS: usize = 4;

/// `Filter::families` bits.
pub const FAMILY_INET: u32 = 1 << 0;
/// See [`FAMILY_INET`].
pub const FAMILY_INET6: u32 = 1 << 1;
/// `Filter::protocols` bits.
pub const PROTO_TCP: u32 = 1 << 0;
/// See [`PROTO_TCP`].
pub const PROTO_UDP: u32 = 1 << 1;
/// See [`PROTO_TCP`]. MPTCP connections (not their TCP subflows).
pub const PROTO_MPTCP: u32 = 1 << 2;

/// An inclusive range of ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

/// An address prefix: `addr/prefix_len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrPrefix {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Bits of `addr` that must match: at most 32 for IPv4, 128 for IPv6.
    pub prefix_len: u8,
    /// Reserved; zero.
    pub _pad: u8,
    /// The address, network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
}

/// The filter set with `TCPLOG_IOC_SET_FILTER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `FAMILY_*` bits; 0 for any.
    pub families: u32,
    /// `PROTO_*` bits; 0 for any.
    pub protocols: u32,
    pub n_ports: u32,
    pub n_addrs: u32,
    pub n_uids: u32,
    pub n_pids: u32,
    pub n_netns: u32,
    pub n_comms: u32,
    pub ports: [PortRange; MAX_FILTER_PORTS],
    pub addrs: [AddrPrefix; MAX_FILTER_ADDRS],
    pub uids: [u32; MAX_FILTER_IDS],
    pub pids: [u32; MAX_FILTER_IDS],
    pub netns: [u32; MAX_FILTER_NETNS],
    /// Command names, NUL-padded; the last byte is always NUL.
    pub comms: [[u8; COMM_LEN]; MAX_FILTER_COMMS],
    pub n_cgroups: u32,
    /// Reserved; zero.
    pub _pad: u32,
    /// Cgroup (v2) ids: records of processes in exactly one of these cgroups.
    pub cgroups: [u64; MAX_FILTER_CGROUPS],
}

// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
unsafe impl Pod for PortRange {}
// SAFETY: As above.
unsafe impl Pod for AddrPrefix {}
// SAFETY: As above.
unsafe impl Pod for Filter {}

const _: () = {
    assert!(size_of::<PortRange>() == 4);
    assert!(size_of::<AddrPrefix>() == 20);
    assert!(offset_of!(AddrPrefix, addr) == 4);
    assert!(size_of::<Filter>() == 408);
    assert!(offset_of!(Filter, cgroups) == 376);
    assert!(offset_of!(Filter, ports) == 32);
    assert!(offset_of!(Filter, addrs) == 64);
    assert!(offset_of!(Filter, uids) == 224);
    assert!(offset_of!(Filter, pids) == 256);
    assert!(offset_of!(Filter, netns) == 288);
    assert!(offset_of!(Filter, comms) == 304);
};

/// What a record says about its socket and process, for matching.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub family: u16,
    pub protocol: u8,
    /// An MPTCP socket (whose `protocol` is TCP's).
    pub mptcp: bool,
    /// Whether the record carries ports and addresses at all.
    pub has_endpoints: bool,
    pub lport: u16,
    pub rport: u16,
    pub laddr: &'a [u8; 16],
    pub raddr: &'a [u8; 16],
    pub uid: u32,
    pub pid: u32,
    pub netns: u32,
    pub comm: &'a [u8; COMM_LEN],
    pub cgroup_id: u64,
}

impl EventBody {
    /// What the filter looks at in this event. Create events have no endpoints yet.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            family: self.family,
            protocol: self.protocol,
            mptcp: self.flags & EVF_MPTCP != 0,
            has_endpoints: self.op != op::TCP_CREATE && self.op != op::UDP_CREATE,
            lport: self.lport,
            rport: self.rport,
            laddr: &self.laddr,
            raddr: &self.raddr,
            uid: self.uid,
            pid: self.pid,
            netns: self.netns,
            comm: &self.comm,
            cgroup_id: self.cgroup_id,
        }
    }
}

impl SummaryBody {
    /// What the filter looks at in this summary.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            family: self.family,
            protocol: IPPROTO_TCP,
            mptcp: self.flags & SUMF_MPTCP != 0,
            has_endpoints: true,
            lport: self.lport,
            rport: self.rport,
            laddr: &self.laddr,
            raddr: &self.raddr,
            uid: self.uid,
            pid: self.pid,
            netns: self.netns,
            comm: &self.comm,
            cgroup_id: self.cgroup_id,
        }
    }
}

const ZERO_ADDR: [u8; 16] = [0; 16];
const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// `addr` with every bit from `bits` on cleared.
fn masked(addr: &[u8; 16], bits: u8) -> [u8; 16] {
    let mut out = *addr;
    for (i, byte) in out.iter_mut().enumerate() {
        let start = i * 8;
        let bits = usize::from(bits);
        if start >= bits {
            *byte = 0;
        } else if start + 8 > bits {
            *byte &= 0xffu8 << (8 - (bits - start));
        }
    }
    out
}

impl AddrPrefix {
    /// A known family, a prefix no longer than the address, and no bits set past the prefix:
    /// `10.1.2.3/8` is refused, `10.0.0.0/8` accepted.
    pub fn is_valid(&self) -> bool {
        let max = match self.family {
            AF_INET => 32,
            AF_INET6 => 128,
            _ => return false,
        };
        self.prefix_len <= max && self._pad == 0 && masked(&self.addr, self.prefix_len) == self.addr
    }

    /// Whether an address of a socket of `family` lies in this prefix. IPv4-mapped IPv6
    /// addresses (`::ffff:a.b.c.d`) match IPv4 prefixes.
    pub fn contains(&self, family: u16, addr: &[u8; 16]) -> bool {
        match (self.family, family) {
            (AF_INET, AF_INET) => prefix_eq(&self.addr[..4], &addr[..4], self.prefix_len),
            (AF_INET, AF_INET6) => {
                addr[..12] == V4_MAPPED && prefix_eq(&self.addr[..4], &addr[12..], self.prefix_len)
            }
            (AF_INET6, AF_INET6) => prefix_eq(&self.addr, addr, self.prefix_len),
            _ => false,
        }
    }
}

impl Filter {
    /// Whether the filter is well formed: counts within bounds, entries beyond the counts and
    /// reserved bits zero, ranges ordered, prefixes valid, names NUL-terminated.
    pub fn is_valid(&self) -> bool {
        let n = |v: u32, max: usize| (v as usize) <= max;
        if self.families & !(FAMILY_INET | FAMILY_INET6) != 0
            || self.protocols & !(PROTO_TCP | PROTO_UDP | PROTO_MPTCP) != 0
            || !n(self.n_cgroups, MAX_FILTER_CGROUPS)
            || self._pad != 0
            || !n(self.n_ports, MAX_FILTER_PORTS)
            || !n(self.n_addrs, MAX_FILTER_ADDRS)
            || !n(self.n_uids, MAX_FILTER_IDS)
            || !n(self.n_pids, MAX_FILTER_IDS)
            || !n(self.n_netns, MAX_FILTER_NETNS)
            || !n(self.n_comms, MAX_FILTER_COMMS)
        {
            return false;
        }
        let (np, na) = (self.n_ports as usize, self.n_addrs as usize);
        let (nu, ni) = (self.n_uids as usize, self.n_pids as usize);
        let (nn, nc) = (self.n_netns as usize, self.n_comms as usize);
        self.ports[..np].iter().all(|p| p.lo <= p.hi)
            && self.ports[np..].iter().all(|p| *p == PortRange::default())
            && self.addrs[..na].iter().all(AddrPrefix::is_valid)
            && self.addrs[na..].iter().all(|a| *a == AddrPrefix::default())
            && self.uids[nu..].iter().all(|&v| v == 0)
            && self.pids[ni..].iter().all(|&v| v == 0)
            && self.netns[nn..].iter().all(|&v| v == 0)
            && self.cgroups[self.n_cgroups as usize..]
                .iter()
                .all(|&v| v == 0)
            && self.comms[..nc]
                .iter()
                .all(|c| c[COMM_LEN - 1] == 0 && c[0] != 0)
            && self.comms[nc..].iter().all(|c| *c == [0; COMM_LEN])
    }

    /// How many criteria the filter holds (for the audit record).
    pub fn criteria(&self) -> u64 {
        u64::from(self.families.count_ones() + self.protocols.count_ones())
            + u64::from(self.n_ports + self.n_addrs + self.n_uids)
            + u64::from(self.n_pids + self.n_netns + self.n_comms + self.n_cgroups)
    }

    /// Whether the filter passes everything.
    pub fn is_empty(&self) -> bool {
        self.criteria() == 0
    }

    /// Whether a record about `s` passes. The filter must be valid.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        if self.families != 0 {
            let bit = match s.family {
                AF_INET => FAMILY_INET,
                AF_INET6 => FAMILY_INET6,
                _ => 0,
            };
            if self.families & bit == 0 {
                return false;
            }
        }
        if self.protocols != 0 {
            let bit = match s.protocol {
                IPPROTO_TCP if s.mptcp => PROTO_MPTCP,
                IPPROTO_TCP => PROTO_TCP,
                IPPROTO_UDP => PROTO_UDP,
                _ => 0,
            };
            if self.protocols & bit == 0 {
                return false;
            }
        }
        let ports = &self.ports[..self.n_ports as usize];
        if !ports.is_empty() {
            let in_range = |p: u16| p != 0 && ports.iter().any(|r| r.lo <= p && p <= r.hi);
            if !s.has_endpoints || !(in_range(s.lport) || in_range(s.rport)) {
                return false;
            }
        }
        let addrs = &self.addrs[..self.n_addrs as usize];
        if !addrs.is_empty() {
            let inside =
                |a: &[u8; 16]| *a != ZERO_ADDR && addrs.iter().any(|p| p.contains(s.family, a));
            if !s.has_endpoints || !(inside(s.laddr) || inside(s.raddr)) {
                return false;
            }
        }
        let one_of = |list: &[u32], v: u32| list.is_empty() || list.contains(&v);
        one_of(&self.uids[..self.n_uids as usize], s.uid)
            && one_of(&self.pids[..self.n_pids as usize], s.pid)
            && one_of(&self.netns[..self.n_netns as usize], s.netns)
            && {
                let comms = &self.comms[..self.n_comms as usize];
                comms.is_empty() || comms.contains(s.comm)
            }
            && {
                let cgroups = &self.cgroups[..self.n_cgroups as usize];
                cgroups.is_empty() || cgroups.contains(&s.cgroup_id)
            }
    }
}

#[cfg(test)]
// The tests build filters field by field, the way the tool does from a command line.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    fn comm(s: &str) -> [u8; 16] {
        let mut c = [0; 16];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    struct Owned {
        laddr: [u8; 16],
        raddr: [u8; 16],
        comm: [u8; 16],
    }

    fn subject(o: &Owned, family: u16, lport: u16, rport: u16) -> Subject<'_> {
        Subject {
            family,
            protocol: IPPROTO_TCP,
            has_endpoints: true,
            lport,
            rport,
            laddr: &o.laddr,
            raddr: &o.raddr,
            uid: 1000,
            pid: 42,
            netns: 4026531840,
            comm: &o.comm,
            mptcp: false,
            cgroup_id: 7,
        }
    }

    fn conn() -> Owned {
        Owned {
            laddr: v4([10, 0, 0, 1]),
            raddr: v4([192, 168, 7, 9]),
            comm: comm("curl"),
        }
    }

    #[test]
    fn empty_passes_everything() {
        let f = Filter::default();
        assert!(f.is_valid() && f.is_empty());
        let o = conn();
        assert!(f.matches(&subject(&o, AF_INET, 40000, 80)));
    }

    #[test]
    fn ports_match_either_end() {
        let mut f = Filter::default();
        f.n_ports = 2;
        f.ports[0] = PortRange { lo: 80, hi: 80 };
        f.ports[1] = PortRange { lo: 8000, hi: 8999 };
        assert!(f.is_valid());
        let o = conn();
        assert!(f.matches(&subject(&o, AF_INET, 40000, 80)));
        assert!(f.matches(&subject(&o, AF_INET, 8500, 1)));
        assert!(!f.matches(&subject(&o, AF_INET, 40000, 443)));
        let mut s = subject(&o, AF_INET, 0, 0);
        s.has_endpoints = false;
        assert!(!f.matches(&s), "a create event has no ports to match");
    }

    #[test]
    fn prefixes_v4_v6_and_mapped() {
        let mut f = Filter::default();
        f.n_addrs = 1;
        f.addrs[0] = AddrPrefix {
            family: AF_INET,
            prefix_len: 16,
            _pad: 0,
            addr: v4([192, 168, 0, 0]),
        };
        assert!(f.is_valid());
        let o = conn();
        assert!(f.matches(&subject(&o, AF_INET, 1, 2)));
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 168, 1, 1]);
        let o6 = Owned {
            laddr: [0; 16],
            raddr: mapped,
            comm: comm("x"),
        };
        assert!(
            f.matches(&subject(&o6, AF_INET6, 1, 2)),
            "v4-mapped matches a v4 prefix"
        );
        f.addrs[0].addr = v4([192, 169, 0, 0]);
        assert!(!f.matches(&subject(&o, AF_INET, 1, 2)));

        let mut g = Filter::default();
        g.n_addrs = 1;
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        g.addrs[0] = AddrPrefix {
            family: AF_INET6,
            prefix_len: 8,
            _pad: 0,
            addr: a,
        };
        assert!(g.is_valid());
        let mut r = [0u8; 16];
        r[0] = 0xfd;
        r[15] = 2;
        let o = Owned {
            laddr: [0; 16],
            raddr: r,
            comm: comm("x"),
        };
        assert!(g.matches(&subject(&o, AF_INET6, 1, 2)));
        assert!(!g.matches(&subject(&conn(), AF_INET, 1, 2)));
    }

    #[test]
    fn identity_criteria_and_together() {
        let mut f = Filter::default();
        f.n_uids = 1;
        f.uids[0] = 1000;
        f.n_comms = 1;
        f.comms[0] = comm("curl");
        f.protocols = PROTO_TCP;
        assert!(f.is_valid());
        let o = conn();
        assert!(f.matches(&subject(&o, AF_INET, 1, 2)));
        f.comms[0] = comm("wget");
        assert!(!f.matches(&subject(&o, AF_INET, 1, 2)));
        f.comms[0] = comm("curl");
        f.protocols = PROTO_UDP;
        assert!(!f.matches(&subject(&o, AF_INET, 1, 2)));
        assert_eq!(f.criteria(), 3);
    }

    #[test]
    fn malformed_filters_are_invalid() {
        let mut f = Filter::default();
        f.n_ports = 9;
        assert!(!f.is_valid(), "too many ports");
        f = Filter::default();
        f.n_ports = 1;
        f.ports[0] = PortRange { lo: 9, hi: 8 };
        assert!(!f.is_valid(), "reversed range");
        f = Filter::default();
        f.ports[3] = PortRange { lo: 1, hi: 1 };
        assert!(!f.is_valid(), "entry beyond the count");
        f = Filter::default();
        f.n_addrs = 1;
        f.addrs[0] = AddrPrefix {
            family: AF_INET,
            prefix_len: 33,
            _pad: 0,
            addr: [0; 16],
        };
        assert!(!f.is_valid(), "prefix too long");
        f.addrs[0].prefix_len = 8;
        f.addrs[0].addr = v4([10, 1, 2, 3]);
        assert!(!f.is_valid(), "host bits set");
        f.addrs[0].addr = v4([10, 0, 0, 0]);
        assert!(f.is_valid());
        f.addrs[0].family = 7;
        assert!(!f.is_valid(), "unknown family");
        f = Filter::default();
        f.families = 4;
        assert!(!f.is_valid(), "unknown family bit");
    }

    #[test]
    fn cgroups_and_mptcp() {
        let o = conn();
        let mut f = Filter::default();
        f.n_cgroups = 1;
        f.cgroups[0] = 7;
        assert!(f.is_valid());
        assert!(f.matches(&subject(&o, AF_INET, 1, 2)));
        f.cgroups[0] = 8;
        assert!(!f.matches(&subject(&o, AF_INET, 1, 2)));
        f.cgroups[1] = 9;
        assert!(!f.is_valid(), "an entry past n_cgroups");
        let mut f = Filter::default();
        f.protocols = PROTO_MPTCP;
        assert!(!f.matches(&subject(&o, AF_INET, 1, 2)));
        let mut s = subject(&o, AF_INET, 1, 2);
        s.mptcp = true;
        assert!(f.matches(&s));
        f.protocols = PROTO_TCP;
        assert!(!f.matches(&s), "an MPTCP connection is not TCP");
    }
}
