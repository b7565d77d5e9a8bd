//! The rule syntax of `tcplog rules`, to the ABI's `Rule` and back.
//!
//! One rule is a line of words:
//!
//! ```text
//! ACTION [in|out|fwd] [proto tcp|udp] [from ADDR[/LEN]] [to ADDR[/LEN]]
//!        [sport PORT[-PORT]] [dport PORT[-PORT]] [iface NAME] [flags SET[/MASK]] [limit N]
//! ```
//!
//! ACTION is `count`, `log` (the IP header, whole with its options, and the TCP or UDP header)
//! or `log body` (the headers and up to the snap length of payload). `flags SYN/SYN,ACK` matches
//! packets with SYN set and ACK clear; `flags SYN` is `flags SYN/SYN`. `limit N` writes a LIMIT
//! record when one source has more than N connections open that the rule matches.

use tcplog_ctl::{self as abi, action, direction, tcp_flag, AddrPrefix, PortRange, Rule};

use crate::criteria::{parse_port_range, parse_prefix};

use crate::record::ip;

const FLAGS: [(u8, &str); 8] = [
    (tcp_flag::FIN, "FIN"),
    (tcp_flag::SYN, "SYN"),
    (tcp_flag::RST, "RST"),
    (tcp_flag::PSH, "PSH"),
    (tcp_flag::ACK, "ACK"),
    (tcp_flag::URG, "URG"),
    (tcp_flag::ECE, "ECE"),
    (tcp_flag::CWR, "CWR"),
];

/// TCP flags as `SYN,ACK`.
pub fn flags_str(f: u8) -> String {
    let names: Vec<&str> = FLAGS
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join(",")
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut v = 0;
    for name in s.split(',') {
        let (bit, _) = FLAGS
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("'{name}' is not a TCP flag (FIN SYN RST PSH ACK URG ECE CWR)")
            })?;
        v |= bit;
    }
    Ok(v)
}

/// Parses one rule.
pub fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut words = line.split_whitespace().peekable();
    let act = match words.next() {
        Some("count") => action::COUNT,
        Some("log") if words.peek() == Some(&"body") => {
            words.next();
            action::LOG_BODY
        }
        Some("log") => action::LOG_HEADER,
        Some(w) => {
            return Err(format!(
                "a rule starts with count, log or log body, not '{w}'"
            ))
        }
        None => return Err("the rule is empty".into()),
    };
    let mut r = Rule {
        action: act,
        ..Rule::default()
    };
    if let Some(&d) = words.peek() {
        let dir = match d {
            "in" => Some(direction::IN),
            "out" => Some(direction::OUT),
            "fwd" | "forward" => Some(direction::FORWARD),
            _ => None,
        };
        if let Some(dir) = dir {
            r.direction = dir;
            words.next();
        }
    }
    while let Some(key) = words.next() {
        let val = words
            .next()
            .ok_or_else(|| format!("'{key}' needs a value"))?;
        let what = |e: String| format!("{key} {val}: {e}");
        match key {
            "proto" => {
                r.protocol = match val {
                    "tcp" => abi::IPPROTO_TCP,
                    "udp" => abi::IPPROTO_UDP,
                    _ => return Err(what("use tcp or udp".into())),
                }
            }
            "from" => r.src = parse_prefix(val).map_err(what)?,
            "to" => r.dst = parse_prefix(val).map_err(what)?,
            "sport" => r.sport = parse_port_range(val).map_err(what)?,
            "dport" => r.dport = parse_port_range(val).map_err(what)?,
            "iface" => {
                if val.is_empty() || val.len() >= 16 {
                    return Err(what("an interface name is 1 to 15 bytes".into()));
                }
                r.ifname[..val.len()].copy_from_slice(val.as_bytes());
            }
            "flags" => {
                let (set, mask) = val.split_once('/').unwrap_or((val, val));
                r.tcp_flags = parse_flags(set).map_err(what)?;
                r.tcp_flags_mask = parse_flags(mask).map_err(what)?;
                if r.tcp_flags & !r.tcp_flags_mask != 0 {
                    return Err(what(
                        "the flags that must be set are not all in the mask".into(),
                    ));
                }
            }
            "limit" => {
                r.conn_limit =
                    val.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        what("a limit is a number of connections, 1 or more".into())
                    })?
            }
            _ => {
                return Err(format!(
                    "unknown word '{key}' (proto, from, to, sport, dport, iface, flags, limit)"
                ))
            }
        }
    }
    if (r.sport != PortRange::default() || r.dport != PortRange::default()) && r.protocol == 0 {
        return Err("ports need 'proto tcp' or 'proto udp'".into());
    }
    if r.tcp_flags_mask != 0 && r.protocol != abi::IPPROTO_TCP {
        return Err("flags need 'proto tcp'".into());
    }
    if r.conn_limit != 0 && r.protocol != abi::IPPROTO_TCP {
        return Err("a connection limit needs 'proto tcp'".into());
    }
    if r.src.family != 0 && r.dst.family != 0 && r.src.family != r.dst.family {
        return Err("from and to are of different address families".into());
    }
    debug_assert!(r.is_valid());
    Ok(r)
}

/// Parses rules, one per entry; says which rule is wrong and why.
pub fn parse_rules<S: AsRef<str>>(lines: &[S]) -> Result<abi::RuleSet, String> {
    let rules: Vec<&str> = lines
        .iter()
        .map(|l| l.as_ref().split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if rules.len() > abi::MAX_RULES {
        return Err(format!("{} rules; at most {}", rules.len(), abi::MAX_RULES));
    }
    let mut set = abi::RuleSet::default();
    for (i, line) in rules.iter().enumerate() {
        set.rules[i] = parse_rule(line).map_err(|e| format!("rule {} ({line}): {e}", i + 1))?;
    }
    set.n_rules = rules.len() as u32;
    Ok(set)
}

fn prefix_str(p: &AddrPrefix) -> String {
    let full = if p.family == abi::AF_INET { 32 } else { 128 };
    if p.prefix_len == full {
        ip(p.family, &p.addr).to_string()
    } else {
        format!("{}/{}", ip(p.family, &p.addr), p.prefix_len)
    }
}

fn ports_str(p: &PortRange) -> String {
    if p.lo == p.hi {
        p.lo.to_string()
    } else {
        format!("{}-{}", p.lo, p.hi)
    }
}

/// A rule in the syntax `parse_rule` reads.
pub fn rule_str(r: &Rule) -> String {
    let mut w = vec![match r.action {
        action::COUNT => "count".to_owned(),
        action::LOG_HEADER => "log".to_owned(),
        _ => "log body".to_owned(),
    }];
    match r.direction {
        direction::IN => w.push("in".into()),
        direction::OUT => w.push("out".into()),
        direction::FORWARD => w.push("fwd".into()),
        _ => {}
    }
    match r.protocol {
        abi::IPPROTO_TCP => w.push("proto tcp".into()),
        abi::IPPROTO_UDP => w.push("proto udp".into()),
        _ => {}
    }
    if r.src.family != 0 {
        w.push(format!("from {}", prefix_str(&r.src)));
    }
    if r.dst.family != 0 {
        w.push(format!("to {}", prefix_str(&r.dst)));
    }
    if r.sport != PortRange::default() {
        w.push(format!("sport {}", ports_str(&r.sport)));
    }
    if r.dport != PortRange::default() {
        w.push(format!("dport {}", ports_str(&r.dport)));
    }
    if r.ifname[0] != 0 {
        w.push(format!(
            "iface {}",
            crate::escape::word(crate::escape::until_nul(&r.ifname))
        ));
    }
    if r.tcp_flags_mask != 0 {
        if r.tcp_flags == r.tcp_flags_mask {
            w.push(format!("flags {}", flags_str(r.tcp_flags)));
        } else {
            w.push(format!(
                "flags {}/{}",
                flags_str(r.tcp_flags),
                flags_str(r.tcp_flags_mask)
            ));
        }
    }
    if r.conn_limit != 0 {
        w.push(format!("limit {}", r.conn_limit));
    }
    w.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        for line in [
            "count",
            "log body in proto tcp dport 80",
            "log out proto udp from 10.0.0.0/8 to 192.168.1.7 sport 1000-2000",
            "count in proto tcp dport 22 flags SYN/SYN,ACK limit 5",
            "log fwd proto tcp to fd00::/8 iface eth0 flags RST",
        ] {
            let r = parse_rule(line).unwrap();
            assert!(r.is_valid(), "{line}");
            assert_eq!(rule_str(&r), line);
        }
    }

    #[test]
    fn fields_land_where_they_belong() {
        let r = parse_rule("count in proto tcp dport 22 flags SYN/SYN,ACK limit 5").unwrap();
        assert_eq!(r.action, action::COUNT);
        assert_eq!(r.direction, direction::IN);
        assert_eq!(r.dport, PortRange { lo: 22, hi: 22 });
        assert_eq!(
            (r.tcp_flags, r.tcp_flags_mask),
            (tcp_flag::SYN, tcp_flag::SYN | tcp_flag::ACK)
        );
        assert_eq!(r.conn_limit, 5);
    }

    #[test]
    fn errors_say_which_rule_and_why() {
        let e = parse_rules(&["count proto udp", "log proto tcp dport http"]).unwrap_err();
        assert_eq!(
            e,
            "rule 2 (log proto tcp dport http): dport http: 'http' is not a port (1 to 65535)"
        );
        for (line, want) in [
            ("drop", "starts with count, log or log body"),
            ("count dport 80", "ports need 'proto tcp'"),
            ("count proto udp flags SYN", "flags need 'proto tcp'"),
            ("count proto tcp flags SYN,FIN/SYN", "not all in the mask"),
            ("count proto tcp flags SYNACK", "'SYNACK' is not a TCP flag"),
            ("count from 10.1.2.3/8", "bits are set past the prefix"),
            ("count from 10.0.0.0/8 to ::1", "different address families"),
            ("count proto udp limit 3", "needs 'proto tcp'"),
            ("count proto", "'proto' needs a value"),
            ("count colour red", "unknown word 'colour'"),
        ] {
            let e = parse_rule(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        let many: Vec<String> = (0..33).map(|_| "count".to_owned()).collect();
        assert!(parse_rules(&many).unwrap_err().contains("at most 32"));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let set = parse_rules(&["# web", "", "log body proto tcp dport 80  # all of it"]).unwrap();
        assert_eq!(set.n_rules, 1);
    }
}
