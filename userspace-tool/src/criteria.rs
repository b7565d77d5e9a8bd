//! Filter criteria from the command line (`tcplog filter set`, and the selection of `dump`,
//! `follow` and `read`), and back to text.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use tcplog_ctl::{self as abi, AddrPrefix, Filter, PortRange};

use crate::escape;

/// Criteria as given on the command line, one list per kind.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CriteriaArgs {
    /// A port or range LO-HI, matching either end (repeatable).
    #[arg(long = "port", value_name = "PORT[-PORT]")]
    pub ports: Vec<String>,
    /// An address with an optional prefix length, v4 or v6 (repeatable): 10.0.0.0/8, fd00::/8.
    #[arg(long = "addr", value_name = "ADDR[/LEN]")]
    pub addrs: Vec<String>,
    /// A user id (repeatable).
    #[arg(long = "uid")]
    pub uids: Vec<u32>,
    /// A process id (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A command name, up to 15 bytes, any but NUL (repeatable).
    #[arg(long = "comm")]
    pub comms: Vec<OsString>,
    /// A network namespace inode, as `ls -l /proc/PID/ns/net` shows (repeatable).
    #[arg(long = "netns")]
    pub netns: Vec<u32>,
    /// inet or inet6 (repeatable).
    #[arg(long = "family")]
    pub families: Vec<String>,
    /// tcp, udp or mptcp (repeatable): mptcp is MPTCP sockets and connections, tcp the rest of
    /// TCP (MPTCP's subflows included).
    #[arg(long = "proto")]
    pub protos: Vec<String>,
    /// A cgroup (v2): its path under the cgroup2 mount (/system.slice/x.service), the
    /// directory itself (/sys/fs/cgroup/...), or its id; records of processes in exactly that
    /// cgroup (repeatable).
    #[arg(long = "cgroup", value_name = "PATH|ID")]
    pub cgroups: Vec<OsString>,
}

fn too_many(what: &str, max: usize) -> String {
    format!("at most {max} --{what} criteria")
}

/// Parses `PORT` or `LO-HI`; the error says why, without naming the option.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let num = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("'{p}' is not a port (1 to 65535)"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if lo > hi {
        return Err("the range is reversed".into());
    }
    Ok(PortRange { lo, hi })
}

/// Parses `ADDR` or `ADDR/LEN`, IPv4 or IPv6; the error says why, without naming the option.
pub fn parse_prefix(s: &str) -> Result<AddrPrefix, String> {
    let (a, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("'{a}' is not an IP address"))?;
    let (family, max, bytes) = match ip {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (abi::AF_INET, 32u8, b)
        }
        IpAddr::V6(v) => (abi::AF_INET6, 128u8, v.octets()),
    };
    let prefix_len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("the prefix length must be 0 to {max}"))?,
    };
    let p = AddrPrefix {
        family,
        prefix_len,
        _pad: 0,
        addr: bytes,
    };
    if !p.is_valid() {
        return Err("bits are set past the prefix length".into());
    }
    Ok(p)
}

impl CriteriaArgs {
    /// Builds the filter, or says which argument is wrong and why.
    pub fn to_filter(&self) -> Result<Filter, String> {
        let mut f = Filter::default();
        let check = |n: usize, max: usize, what: &str| {
            if n > max {
                Err(too_many(what, max))
            } else {
                Ok(())
            }
        };
        check(self.ports.len(), abi::MAX_FILTER_PORTS, "port")?;
        check(self.addrs.len(), abi::MAX_FILTER_ADDRS, "addr")?;
        check(self.uids.len(), abi::MAX_FILTER_IDS, "uid")?;
        check(self.pids.len(), abi::MAX_FILTER_IDS, "pid")?;
        check(self.comms.len(), abi::MAX_FILTER_COMMS, "comm")?;
        check(self.netns.len(), abi::MAX_FILTER_NETNS, "netns")?;
        check(self.cgroups.len(), abi::MAX_FILTER_CGROUPS, "cgroup")?;
        if !self.cgroups.is_empty() {
            let root = crate::cgroup::root();
            for (i, c) in self.cgroups.iter().enumerate() {
                f.cgroups[i] = crate::cgroup::cgroup_id(&root, c)
                    .map_err(|e| format!("--cgroup {}: {e}", escape::text(c.as_bytes())))?;
            }
            f.n_cgroups = self.cgroups.len() as u32;
        }
        for (i, p) in self.ports.iter().enumerate() {
            f.ports[i] = parse_port_range(p).map_err(|e| format!("--port {p}: {e}"))?;
        }
        f.n_ports = self.ports.len() as u32;
        for (i, a) in self.addrs.iter().enumerate() {
            f.addrs[i] = parse_prefix(a).map_err(|e| format!("--addr {a}: {e}"))?;
        }
        f.n_addrs = self.addrs.len() as u32;
        f.uids[..self.uids.len()].copy_from_slice(&self.uids);
        f.n_uids = self.uids.len() as u32;
        f.pids[..self.pids.len()].copy_from_slice(&self.pids);
        f.n_pids = self.pids.len() as u32;
        f.netns[..self.netns.len()].copy_from_slice(&self.netns);
        f.n_netns = self.netns.len() as u32;
        for (i, c) in self.comms.iter().enumerate() {
            let c = c.as_bytes();
            if c.is_empty() || c.len() >= abi::COMM_LEN || c.contains(&0) {
                return Err(format!(
                    "--comm '{}': a command name is 1 to 15 bytes",
                    String::from_utf8_lossy(c)
                ));
            }
            f.comms[i][..c.len()].copy_from_slice(c);
        }
        f.n_comms = self.comms.len() as u32;
        for fam in &self.families {
            f.families |= match fam.as_str() {
                "inet" | "ipv4" | "4" => abi::FAMILY_INET,
                "inet6" | "ipv6" | "6" => abi::FAMILY_INET6,
                _ => return Err(format!("--family {fam}: use inet or inet6")),
            };
        }
        for p in &self.protos {
            f.protocols |= match p.as_str() {
                "tcp" => abi::PROTO_TCP,
                "udp" => abi::PROTO_UDP,
                "mptcp" => abi::PROTO_MPTCP,
                _ => return Err(format!("--proto {p}: use tcp, udp or mptcp")),
            };
        }
        debug_assert!(f.is_valid());
        Ok(f)
    }
}

/// The filter as `--option value` text, the way it would be set; empty for no criteria. Cgroups
/// are shown by path where `path` finds one (escaped), else by id.
pub fn describe(f: &Filter, path: &dyn Fn(u64) -> Option<Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for p in &f.ports[..f.n_ports as usize] {
        out.push(if p.lo == p.hi {
            format!("--port {}", p.lo)
        } else {
            format!("--port {}-{}", p.lo, p.hi)
        });
    }
    for a in &f.addrs[..f.n_addrs as usize] {
        out.push(format!(
            "--addr {}/{}",
            crate::record::ip(a.family, &a.addr),
            a.prefix_len
        ));
    }
    out.extend(
        f.uids[..f.n_uids as usize]
            .iter()
            .map(|u| format!("--uid {u}")),
    );
    out.extend(
        f.pids[..f.n_pids as usize]
            .iter()
            .map(|p| format!("--pid {p}")),
    );
    out.extend(
        f.comms[..f.n_comms as usize]
            .iter()
            .map(|c| format!("--comm {}", escape::word(escape::until_nul(c)))),
    );
    out.extend(
        f.netns[..f.n_netns as usize]
            .iter()
            .map(|n| format!("--netns {n}")),
    );
    if f.families & abi::FAMILY_INET != 0 {
        out.push("--family inet".into());
    }
    if f.families & abi::FAMILY_INET6 != 0 {
        out.push("--family inet6".into());
    }
    if f.protocols & abi::PROTO_TCP != 0 {
        out.push("--proto tcp".into());
    }
    if f.protocols & abi::PROTO_UDP != 0 {
        out.push("--proto udp".into());
    }
    if f.protocols & abi::PROTO_MPTCP != 0 {
        out.push("--proto mptcp".into());
    }
    out.extend(
        f.cgroups[..f.n_cgroups as usize]
            .iter()
            .map(|&id| match path(id) {
                Some(p) => format!("--cgroup {}", escape::word(&p)),
                None => format!("--cgroup {id}"),
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_filter_and_describes_it_back() {
        let a = CriteriaArgs {
            ports: vec!["80".into(), "8000-8999".into()],
            addrs: vec!["10.0.0.0/8".into(), "fd00::/8".into(), "192.168.1.7".into()],
            uids: vec![1000],
            pids: vec![],
            comms: vec!["curl".into()],
            netns: vec![4026531840],
            families: vec!["inet".into()],
            protos: vec!["tcp".into(), "mptcp".into()],
            cgroups: vec!["4242".into()],
        };
        let f = a.to_filter().unwrap();
        assert!(f.is_valid());
        assert_eq!(f.n_ports, 2);
        assert_eq!(f.ports[1], PortRange { lo: 8000, hi: 8999 });
        assert_eq!(f.addrs[2].prefix_len, 32);
        assert_eq!(f.protocols, abi::PROTO_TCP | abi::PROTO_MPTCP);
        assert_eq!((f.n_cgroups, f.cgroups[0]), (1, 4242));
        assert_eq!(
            describe(&f, &|id| (id == 4242).then(|| b"/a b".to_vec())),
            [
                "--port 80",
                "--port 8000-8999",
                "--addr 10.0.0.0/8",
                "--addr fd00::/8",
                "--addr 192.168.1.7/32",
                "--uid 1000",
                "--comm curl",
                "--netns 4026531840",
                "--family inet",
                "--proto tcp",
                "--proto mptcp",
                r"--cgroup /a\x20b"
            ]
        );
        assert_eq!(describe(&f, &|_| None).last().unwrap(), "--cgroup 4242");
    }

    #[test]
    fn a_command_name_may_be_any_bytes_and_is_described_escaped() {
        use std::os::unix::ffi::OsStringExt;
        let name = b"\x1b[2J\"a,b\n\xff\xfe".to_vec();
        let f = CriteriaArgs {
            comms: vec![OsString::from_vec(name.clone())],
            ..Default::default()
        }
        .to_filter()
        .unwrap();
        assert_eq!(escape::until_nul(&f.comms[0]), name);
        assert_eq!(
            describe(&f, &|_| None),
            [r"--comm \x1b[2J\x22a,b\n\xff\xfe"]
        );
    }

    #[test]
    fn bad_criteria_say_what_and_why() {
        let bad = |a: CriteriaArgs| a.to_filter().unwrap_err();
        let e = bad(CriteriaArgs {
            ports: vec!["90-80".into()],
            ..Default::default()
        });
        assert!(e.contains("--port 90-80") && e.contains("reversed"), "{e}");
        let e = bad(CriteriaArgs {
            ports: vec!["http".into()],
            ..Default::default()
        });
        assert!(e.contains("'http' is not a port"), "{e}");
        let e = bad(CriteriaArgs {
            addrs: vec!["10.1.2.3/8".into()],
            ..Default::default()
        });
        assert!(e.contains("past the prefix"), "{e}");
        let e = bad(CriteriaArgs {
            addrs: vec!["10.0.0.0/33".into()],
            ..Default::default()
        });
        assert!(e.contains("0 to 32"), "{e}");
        let e = bad(CriteriaArgs {
            comms: vec!["a-very-long-command-name".into()],
            ..Default::default()
        });
        assert!(e.contains("1 to 15 bytes"), "{e}");
        let e = bad(CriteriaArgs {
            uids: vec![1; 9],
            ..Default::default()
        });
        assert!(e.contains("at most 8 --uid"), "{e}");
        let e = bad(CriteriaArgs {
            protos: vec!["sctp".into()],
            ..Default::default()
        });
        assert!(e.contains("use tcp, udp or mptcp"), "{e}");
        let e = bad(CriteriaArgs {
            cgroups: vec!["/no/such/cgroup\x1b".into()],
            ..Default::default()
        });
        assert!(
            e.starts_with(r"--cgroup /no/such/cgroup\x1b: ") && e.contains("a cgroup id"),
            "{e}"
        );
        let e = bad(CriteriaArgs {
            cgroups: vec!["1".into(); 5],
            ..Default::default()
        });
        assert!(e.contains("at most 4 --cgroup"), "{e}");
    }
}
