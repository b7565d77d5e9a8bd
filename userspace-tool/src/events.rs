//! Names of socket operations, and the event mask they make (`tcplog events`).

use tcplog_ctl::{op, VALID_EVENT_MASK};

/// Every operation with its name, `proto:op` (inetsock's streamCreate is `tcp:create`).
pub const OPS: [(u16, &str); 11] = [
    (op::TCP_CREATE, "tcp:create"),
    (op::TCP_BIND, "tcp:bind"),
    (op::TCP_LISTEN, "tcp:listen"),
    (op::TCP_ACCEPT, "tcp:accept"),
    (op::TCP_CONNECT, "tcp:connect"),
    (op::TCP_DISCONNECT, "tcp:disconnect"),
    (op::TCP_CLOSE, "tcp:close"),
    (op::UDP_CREATE, "udp:create"),
    (op::UDP_BIND, "udp:bind"),
    (op::UDP_CONNECT, "udp:connect"),
    (op::UDP_CLOSE, "udp:close"),
];

/// Parses a list of operations into a mask. Each word is `tcp:OP` or `udp:OP`, a bare `OP`
/// (both protocols), `tcp` or `udp` (all of one protocol), `all` or `none`. Words may be
/// separated by commas.
pub fn parse_mask(words: &[String]) -> Result<u64, String> {
    let mut mask = 0u64;
    for word in words
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|w| !w.is_empty())
    {
        let w = word.to_ascii_lowercase();
        let bits: u64 = match w.as_str() {
            "all" => VALID_EVENT_MASK,
            "none" => 0,
            "tcp" | "udp" => OPS
                .iter()
                .filter(|(_, n)| n.starts_with(&format!("{w}:")))
                .map(|(o, _)| 1 << o)
                .sum(),
            _ => {
                let matching: u64 = OPS
                    .iter()
                    .filter(|(_, n)| *n == w || n.split_once(':').map(|(_, o)| o) == Some(&w))
                    .map(|(o, _)| 1 << o)
                    .sum();
                if matching == 0 {
                    let known: Vec<&str> = OPS.iter().map(|(_, n)| *n).collect();
                    return Err(format!(
                        "unknown operation '{word}': use one of {}, a bare operation name, tcp, udp, all or none",
                        known.join(", ")
                    ));
                }
                matching
            }
        };
        mask |= bits;
    }
    Ok(mask)
}

/// The names of the operations in a mask.
pub fn mask_names(mask: u64) -> Vec<&'static str> {
    OPS.iter()
        .filter(|(o, _)| mask & (1 << o) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<u64, String> {
        parse_mask(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn names_and_groups() {
        assert_eq!(p("tcp:connect").unwrap(), 1 << op::TCP_CONNECT);
        assert_eq!(
            p("connect").unwrap(),
            (1 << op::TCP_CONNECT) | (1 << op::UDP_CONNECT)
        );
        assert_eq!(p("udp").unwrap(), 0xf << op::UDP_CREATE);
        assert_eq!(p("all").unwrap(), VALID_EVENT_MASK);
        assert_eq!(p("none").unwrap(), 0);
        assert_eq!(
            p("tcp:accept,udp:bind").unwrap(),
            (1 << op::TCP_ACCEPT) | (1 << op::UDP_BIND)
        );
        assert_eq!(p("TCP:Listen").unwrap(), 1 << op::TCP_LISTEN);
    }

    #[test]
    fn unknown_names_say_what_is_known() {
        let e = p("tcp:frobnicate").unwrap_err();
        assert!(
            e.contains("unknown operation 'tcp:frobnicate'") && e.contains("tcp:accept"),
            "{e}"
        );
        assert!(p("udp:listen").is_err(), "UDP does not listen");
    }

    #[test]
    fn names_round_trip() {
        let all: Vec<String> = mask_names(VALID_EVENT_MASK)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(all.len(), 11);
        assert_eq!(parse_mask(&all).unwrap(), VALID_EVENT_MASK);
    }
}
