//! Per-connection transcripts in netrecord's format, from the payload that packet records kept.
//!
//! netrecord writes, per connection, `c <ts> con\n` first, then `c <ts> <n>\n<bytes>` for what
//! the client sent and `s <ts> <n>\n<bytes>` for what the server sent, and `c|s <ts> hup\n`
//! (a FIN) or `c|s <ts> err\n` (a reset) when a side ends; `<ts>` is seconds since recording
//! started. tcplog writes the same from inside the kernel, with no proxy in the way: each
//! direction is put back in order by TCP sequence number (segments seen twice, as on loopback
//! where a packet leaves and arrives, or retransmitted, count once). What was never captured is
//! said plainly, in a line of its own that netrecord never writes: `c|s <ts> missing <n>\n` for
//! `n` bytes of that side's stream that are not in the log: cut at the snap length, or not logged
//! at all. The client is the side that sent the first SYN; without one, the side that sent first.

use std::collections::BTreeMap;
use std::io::Write;

use tcplog_ctl::{self as abi, tcp_flag, PacketBody};

use crate::record::{Body, Record};

/// One side of a connection: address bytes (IPv4 in the first 4) and port.
type End = ([u8; 16], u16);

/// A TCP segment as a packet record kept it.
#[derive(Clone, Debug)]
struct Segment {
    time_ns: u64,
    seq: u32,
    flags: u8,
    /// The payload the record kept.
    data: Vec<u8>,
    /// The payload the packet had.
    full_len: u32,
}

#[derive(Default)]
struct Conn {
    first_ns: u64,
    /// Who sent the first SYN (without ACK), or else the first packet.
    client: Option<End>,
    syn_seen: bool,
    /// Segments, per sending side.
    segs: BTreeMap<End, Vec<Segment>>,
}

/// A line of the transcript, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Data(Vec<u8>),
    Missing(u64),
    Hup,
    Err,
}

/// What a transcript holds, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub client: String,
    pub server: String,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub client_missing: u64,
    pub server_missing: u64,
    pub client_guessed: bool,
}

/// Parses a TCP packet record into (from, to, segment).
fn segment(time_ns: u64, p: &PacketBody, d: &[u8]) -> Option<(End, End, u32, Segment)> {
    if p.protocol != abi::IPPROTO_TCP || p.ip_hlen == 0 || p.l4_hlen < 20 {
        return None;
    }
    let ip = usize::from(p.ip_hlen);
    let tcp = d.get(ip..ip + usize::from(p.l4_hlen))?;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if p.family == abi::AF_INET {
        src[..4].copy_from_slice(d.get(12..16)?);
        dst[..4].copy_from_slice(d.get(16..20)?);
    } else {
        src.copy_from_slice(d.get(8..24)?);
        dst.copy_from_slice(d.get(24..40)?);
    }
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let headers = u32::from(p.ip_hlen) + u32::from(p.l4_hlen);
    let kept = d.get(ip + usize::from(p.l4_hlen)..)?;
    Some((
        (src, sport),
        (dst, dport),
        p.netns,
        Segment {
            time_ns,
            seq,
            flags: p.tcp_flags,
            data: kept.to_vec(),
            full_len: p.orig_len.saturating_sub(headers),
        },
    ))
}

/// Puts one side's stream back in order; returns its entries with their times, the bytes it
/// sent, and the bytes missing.
fn reassemble(segs: &[Segment]) -> (Vec<(u64, Entry)>, u64, u64) {
    let mut out = Vec::new();
    let syn = segs.iter().find(|s| s.flags & tcp_flag::SYN != 0);
    // Stream offsets relative to the first data byte.
    let base = match syn {
        Some(s) => s.seq.wrapping_add(1),
        None => segs.iter().map(|s| s.seq).min().unwrap_or(0),
    };
    let mut order: Vec<&Segment> = segs.iter().collect();
    order.sort_by_key(|s| (s.seq.wrapping_sub(base), s.time_ns));
    let (mut next, mut sent, mut missing) = (0u64, 0u64, 0u64);
    let mut ended = false;
    for s in order {
        let start = if s.flags & tcp_flag::SYN != 0 {
            0
        } else {
            u64::from(s.seq.wrapping_sub(base))
        };
        let end = start + u64::from(s.full_len);
        if end > next {
            if start > next {
                out.push((s.time_ns, Entry::Missing(start - next)));
                missing += start - next;
                next = start;
            }
            let kept_end = (start + s.data.len() as u64).min(end);
            if kept_end > next {
                let from = (next - start) as usize;
                let to = (kept_end - start) as usize;
                out.push((s.time_ns, Entry::Data(s.data[from..to].to_vec())));
                sent += (to - from) as u64;
                next = kept_end;
            }
            if end > next {
                out.push((s.time_ns, Entry::Missing(end - next)));
                missing += end - next;
                sent += end - next;
                next = end;
            }
        }
        if !ended && s.flags & tcp_flag::RST != 0 {
            out.push((s.time_ns, Entry::Err));
            ended = true;
        } else if !ended && s.flags & tcp_flag::FIN != 0 && end >= next {
            out.push((s.time_ns, Entry::Hup));
            ended = true;
        }
        if s.flags & tcp_flag::FIN != 0 {
            // The FIN takes a sequence number of its own: the final ACK comes after it.
            next = next.max(end + 1);
        }
    }
    // Both the data and its "missing" share a packet's time: keep stream order within a side.
    (out, sent, missing)
}

/// Builds the transcripts of every TCP connection whose packets are in `records`. Returns, in the
/// order the connections started, each transcript's bytes and its report. `start_ns` is time 0.
pub fn build(records: &[Record], start_ns: u64) -> Vec<(Vec<u8>, Report)> {
    let mut conns: BTreeMap<(u32, End, End), Conn> = BTreeMap::new();
    for r in records {
        let Body::Packet(p, d) = &r.body else {
            continue;
        };
        let Some((from, to, netns, seg)) = segment(r.header.time_ns, p, d) else {
            continue;
        };
        let key = if from <= to {
            (netns, from, to)
        } else {
            (netns, to, from)
        };
        let c = conns.entry(key).or_default();
        if c.segs.is_empty() {
            c.first_ns = seg.time_ns;
            c.client = Some(from);
        }
        let syn_only = seg.flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN;
        if syn_only && !c.syn_seen {
            c.syn_seen = true;
            c.client = Some(from);
            c.first_ns = c.first_ns.min(seg.time_ns);
        }
        // A record standing for repeats is one segment, retransmitted: once is enough.
        c.segs.entry(from).or_default().push(seg);
    }
    let mut out: Vec<(u64, Vec<u8>, Report)> = Vec::new();
    for ((_, a, b), c) in conns {
        let client = c.client.unwrap_or(a);
        let server = if client == a { b } else { a };
        let empty = Vec::new();
        let (ce, cs, cm) = reassemble(c.segs.get(&client).unwrap_or(&empty));
        let (se, ss, sm) = reassemble(c.segs.get(&server).unwrap_or(&empty));
        let ts = |t: u64| format!("{:.6}", t.saturating_sub(start_ns) as f64 / 1e9);
        let mut text = Vec::new();
        let _ = writeln!(text, "c {} con", ts(c.first_ns));
        // Merge the two sides by time, each kept in its own stream order.
        let (mut i, mut j) = (0, 0);
        while i < ce.len() || j < se.len() {
            let take_client = j >= se.len() || (i < ce.len() && ce[i].0 <= se[j].0);
            let (side, (t, e)) = if take_client {
                i += 1;
                ('c', &ce[i - 1])
            } else {
                j += 1;
                ('s', &se[j - 1])
            };
            let _ = match e {
                Entry::Data(bytes) => {
                    let _ = writeln!(text, "{side} {} {}", ts(*t), bytes.len());
                    text.write_all(bytes)
                }
                Entry::Missing(n) => writeln!(text, "{side} {} missing {n}", ts(*t)),
                Entry::Hup => writeln!(text, "{side} {} hup", ts(*t)),
                Entry::Err => writeln!(text, "{side} {} err", ts(*t)),
            };
        }
        let end = |e: End, family6: bool| {
            let ip = crate::record::ip(if family6 { abi::AF_INET6 } else { abi::AF_INET }, &e.0);
            if family6 {
                format!("[{ip}]:{}", e.1)
            } else {
                format!("{ip}:{}", e.1)
            }
        };
        let v6 = client.0[4..].iter().any(|&b| b != 0) || server.0[4..].iter().any(|&b| b != 0);
        out.push((
            c.first_ns,
            text,
            Report {
                client: end(client, v6),
                server: end(server, v6),
                client_bytes: cs,
                server_bytes: ss,
                client_missing: cm,
                server_missing: sm,
                client_guessed: !c.syn_seen,
            },
        ));
    }
    out.sort_by_key(|(t, _, _)| *t);
    out.into_iter().map(|(_, t, r)| (t, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{ipv4_packet, Ipv4Packet};
    use crate::record::{Decoder, Item};

    const T0: u64 = 1_700_000_000_000_000_000;

    /// A TCP packet record from `from` to `to` (127.0.0.1 ports), kept to `snap` bytes.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        seq_no: u64,
        t_ms: u64,
        from: u16,
        to: u16,
        seq: u32,
        flags: u8,
        payload: &[u8],
        snap: usize,
    ) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&from.to_be_bytes());
        h[2..4].copy_from_slice(&to.to_be_bytes());
        h[4..8].copy_from_slice(&seq.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        ipv4_packet(&Ipv4Packet {
            seq: seq_no,
            time_ns: T0 + t_ms * 1_000_000,
            dst: [127, 0, 0, 1],
            protocol: abi::IPPROTO_TCP,
            tcp_flags: flags,
            l4: &h,
            payload,
            snap,
            count: 1,
        })
    }

    fn records(buf: &[u8]) -> Vec<Record> {
        let mut d = Decoder::new(buf);
        let mut v = Vec::new();
        while let Some(Item::Record(r)) = d.next_item() {
            v.push(r);
        }
        v
    }

    const SYN: u8 = tcp_flag::SYN;
    const ACK: u8 = tcp_flag::ACK;
    const FIN: u8 = tcp_flag::FIN;
    const PSH: u8 = tcp_flag::PSH;

    #[test]
    fn a_conversation_byte_for_byte() {
        let (c, s) = (40000u16, 80u16);
        let mut buf = Vec::new();
        let mut n = 0;
        // Every packet twice, as on loopback (out and in), one of them out of order.
        for (t, from, to, seq, flags, data) in [
            (0, c, s, 1000u32, SYN, &b""[..]),
            (1, s, c, 5000, SYN | ACK, b""),
            (2, c, s, 1001, ACK, b""),
            (10, c, s, 1001, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"),
            (20, s, c, 5001, PSH | ACK, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            (30, c, s, 1019, FIN | ACK, b""),
            (31, s, c, 5025, FIN | ACK, b""),
            (32, c, s, 1020, ACK, b""),
        ] {
            for _ in 0..2 {
                buf.extend(tcp(n, t, from, to, seq, flags, data, 128));
                n += 1;
            }
        }
        let t = build(&records(&buf), T0);
        assert_eq!(t.len(), 1);
        let (text, report) = &t[0];
        let want: &[u8] = b"c 0.000000 con\n\
c 0.010000 18\nGET / HTTP/1.0\r\n\r\n\
s 0.020000 24\nHTTP/1.0 200 OK\r\n\r\nhello\
c 0.030000 hup\n\
s 0.031000 hup\n";
        assert_eq!(String::from_utf8_lossy(text), String::from_utf8_lossy(want));
        assert_eq!(report.client, "127.0.0.1:40000");
        assert_eq!((report.client_bytes, report.server_bytes), (18, 24));
        assert_eq!((report.client_missing, report.server_missing), (0, 0));
        assert!(!report.client_guessed);
    }

    #[test]
    fn what_the_snap_length_cut_is_said_plainly() {
        let (c, s) = (40001u16, 81u16);
        let big: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut buf = Vec::new();
        buf.extend(tcp(0, 0, c, s, 100, SYN, b"", 128));
        buf.extend(tcp(1, 5, c, s, 101, PSH | ACK, &big, 128));
        // A segment never logged (bytes 300..310), then 4 more bytes.
        buf.extend(tcp(2, 9, c, s, 411, PSH | ACK, b"tail", 128));
        buf.extend(tcp(3, 12, c, s, 415, tcp_flag::RST, b"", 128));
        let t = build(&records(&buf), T0);
        let (text, report) = &t[0];
        let mut want = b"c 0.000000 con\nc 0.005000 128\n".to_vec();
        want.extend(&big[..128]);
        want.extend(
            b"c 0.005000 missing 172\nc 0.009000 missing 10\nc 0.009000 4\ntailc 0.012000 err\n",
        );
        assert_eq!(
            String::from_utf8_lossy(text),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(report.client_missing, 182);
        assert_eq!(report.client_bytes, 128 + 172 + 4);
        // 10 bytes were never seen at all: they are missing but not counted as sent data.
    }
}
