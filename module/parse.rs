// SPDX-License-Identifier: GPL-2.0

//! Reading a packet's IP and transport headers, from any source of bytes that starts at the IP
//! header (an skb in the hooks, a byte array in the KUnit tests).
//!
//! Nothing is trusted: every length is checked against the bytes there are. A packet whose IP
//! header is malformed is reported as such (and counted by the caller); a TCP or UDP packet
//! without its whole transport header (truncated, or an IPv6 fragment after the first: IPv6
//! packets reach the hooks before reassembly unless conntrack's defragmentation is loaded) is
//! parsed as far as its IP header goes, and flagged.

use kernel::prelude::*;

use crate::abi;

/// Where a packet's bytes come from.
pub(crate) trait PacketBytes {
    /// Bytes from the IP header to the end of the packet.
    fn len(&self) -> usize;
    /// Copies `out.len()` bytes from offset `off`; false if the packet is shorter.
    fn copy(&self, off: usize, out: &mut [u8]) -> bool;
}

impl PacketBytes for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn copy(&self, off: usize, out: &mut [u8]) -> bool {
        match off
            .checked_add(out.len())
            .and_then(|end| self.get(off..end))
        {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// What the hooks learn from a packet's headers.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) family: u16,
    pub(crate) protocol: u8,
    /// Bytes of IP header, options or extension headers included.
    pub(crate) ip_hlen: usize,
    /// Bytes of TCP or UDP header; 0 when there is none (`transport` false).
    pub(crate) l4_hlen: usize,
    /// The whole TCP or UDP header is there, and ports, flags and sequence are read from it.
    pub(crate) transport: bool,
    pub(crate) saddr: [u8; 16],
    pub(crate) daddr: [u8; 16],
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) tcp_flags: u8,
    pub(crate) seq: u32,
    /// Bytes of the packet from its IP header (a GSO packet counts once, as interfaces count).
    pub(crate) len: u32,
    /// The IP packet's own length: the length field, or the bytes there are for a BIG TCP
    /// packet whose length field is 0.
    pub(crate) orig_len: u32,
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

// IPv6 extension headers that chain to a next header.
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const DSTOPTS: u8 = 60;
/// Extension headers followed, at most: a packet with more is malformed for our purposes.
const MAX_EXTHDRS: usize = 16;

/// Largest length an IPv4 or IPv6 length field can give.
const MAX_FIELD_LEN: usize = 65535;

/// Reads the headers of an IPv4 (`family` `AF_INET`) or IPv6 packet.
pub(crate) fn parse<P: PacketBytes + ?Sized>(pkt: &P, family: u16) -> Result<Parsed, Malformed> {
    let len = pkt.len();
    let mut p = Parsed {
        family,
        len: len.min(u32::MAX as usize) as u32,
        ..Parsed::default()
    };
    let l4_off;
    let later_fragment;
    if family == abi::AF_INET {
        let mut h = [0u8; 20];
        if !pkt.copy(0, &mut h) || h[0] >> 4 != 4 {
            return Err(Malformed);
        }
        let ihl = usize::from(h[0] & 0xf) * 4;
        let tot = usize::from(be16(&h[2..]));
        if ihl < 20 || ihl > len {
            return Err(Malformed);
        }
        p.orig_len = if tot == 0 && len > MAX_FIELD_LEN {
            // BIG TCP: a GSO packet longer than the field can say.
            len as u32
        } else if tot < ihl || tot > len {
            return Err(Malformed);
        } else {
            tot as u32
        };
        p.ip_hlen = ihl;
        p.protocol = h[9];
        later_fragment = be16(&h[6..]) & 0x1fff != 0;
        p.saddr[..4].copy_from_slice(&h[12..16]);
        p.daddr[..4].copy_from_slice(&h[16..20]);
        l4_off = ihl;
    } else {
        let mut h = [0u8; 40];
        if !pkt.copy(0, &mut h) || h[0] >> 4 != 6 {
            return Err(Malformed);
        }
        let payload = usize::from(be16(&h[4..]));
        p.orig_len = if payload == 0 && len > 40 + MAX_FIELD_LEN {
            // BIG TCP over IPv6: the jumbo payload length is not in the header the stack keeps.
            len as u32
        } else if 40 + payload > len {
            return Err(Malformed);
        } else {
            (40 + payload) as u32
        };
        p.saddr.copy_from_slice(&h[8..24]);
        p.daddr.copy_from_slice(&h[24..40]);
        let (next, off, frag) = skip_exthdrs(pkt, h[6], p.orig_len as usize)?;
        p.protocol = next;
        p.ip_hlen = off;
        later_fragment = frag;
        l4_off = off;
    }
    if later_fragment {
        return Ok(p);
    }
    let end = p.orig_len as usize;
    match p.protocol {
        abi::IPPROTO_TCP => {
            let mut t = [0u8; 20];
            if !pkt.copy(l4_off, &mut t) || l4_off + 20 > end {
                return Ok(p);
            }
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || l4_off + doff > end || l4_off + doff > len {
                return Ok(p);
            }
            p.sport = be16(&t[0..]);
            p.dport = be16(&t[2..]);
            p.seq = be32(&t[4..]);
            p.tcp_flags = t[13];
            p.l4_hlen = doff;
            p.transport = true;
        }
        abi::IPPROTO_UDP => {
            let mut u = [0u8; 8];
            if !pkt.copy(l4_off, &mut u) || l4_off + 8 > end {
                return Ok(p);
            }
            p.sport = be16(&u[0..]);
            p.dport = be16(&u[2..]);
            p.l4_hlen = 8;
            p.transport = true;
        }
        _ => {}
    }
    Ok(p)
}

/// Walks IPv6 extension headers from the fixed header: returns the upper-layer protocol, its
/// offset, and whether this is a fragment other than the first.
fn skip_exthdrs<P: PacketBytes + ?Sized>(
    pkt: &P,
    mut next: u8,
    end: usize,
) -> Result<(u8, usize, bool), Malformed> {
    let mut off = 40;
    for _ in 0..MAX_EXTHDRS {
        let mut e = [0u8; 8];
        match next {
            HOPOPTS | ROUTING | DSTOPTS | AH | FRAGMENT => {
                if off + 8 > end || !pkt.copy(off, &mut e) {
                    return Err(Malformed);
                }
            }
            _ => return Ok((next, off, false)),
        }
        let hdr_len = match next {
            FRAGMENT => {
                if be16(&e[2..]) & !7 != 0 {
                    // A later fragment: what follows is payload, not a header.
                    return Ok((e[0], off + 8, true));
                }
                8
            }
            AH => (usize::from(e[1]) + 2) * 4,
            _ => (usize::from(e[1]) + 1) * 8,
        };
        next = e[0];
        off += hdr_len;
        if off > end {
            return Err(Malformed);
        }
    }
    Err(Malformed)
}

#[kunit_tests(tcplog_parse)]
mod tests {
    use super::*;

    /// An IPv4 header of `total` bytes, IHL 5, protocol `proto`, 10.0.0.1 -> 10.0.0.2.
    fn v4(total: u16, proto: u8) -> [u8; 20] {
        let t = total.to_be_bytes();
        [
            0x45, 0, t[0], t[1], 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]
    }

    fn tcp(sport: u16, dport: u16, seq: u32, doff_words: u8, flags: u8) -> [u8; 20] {
        let (s, d, q) = (sport.to_be_bytes(), dport.to_be_bytes(), seq.to_be_bytes());
        [
            s[0],
            s[1],
            d[0],
            d[1],
            q[0],
            q[1],
            q[2],
            q[3],
            0,
            0,
            0,
            0,
            doff_words << 4,
            flags,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ]
    }

    fn cat(parts: &[&[u8]]) -> Result<KVec<u8>> {
        let mut v = KVec::new();
        for p in parts {
            v.extend_from_slice(p, GFP_KERNEL)?;
        }
        Ok(v)
    }

    #[test]
    fn ipv4_tcp_syn() -> Result {
        let pkt = cat(&[&v4(40, 6), &tcp(40000, 80, 7, 5, 0x02)])?;
        let p = parse(&pkt[..], abi::AF_INET).map_err(|_| EINVAL)?;
        assert!(p.transport);
        assert_eq!((p.sport, p.dport, p.seq, p.tcp_flags), (40000, 80, 7, 0x02));
        assert_eq!((p.ip_hlen, p.l4_hlen, p.orig_len, p.len), (20, 20, 40, 40));
        assert_eq!(&p.daddr[..4], &[10, 0, 0, 2]);
        Ok(())
    }

    #[test]
    fn ipv4_malformed_headers() -> Result {
        for ihl in 0..5u8 {
            let mut h = v4(40, 6);
            h[0] = 0x40 | ihl;
            let pkt = cat(&[&h, &tcp(1, 2, 3, 5, 0x02)])?;
            assert_eq!(parse(&pkt[..], abi::AF_INET), Err(Malformed));
        }
        // IHL past the packet; total length past the packet; total length below the header.
        let mut h = v4(40, 6);
        h[0] = 0x4f;
        assert_eq!(
            parse(&cat(&[&h, &[0; 20]])?[..], abi::AF_INET),
            Err(Malformed)
        );
        assert_eq!(
            parse(&cat(&[&v4(41, 6), &[0; 20]])?[..], abi::AF_INET),
            Err(Malformed)
        );
        assert_eq!(
            parse(&cat(&[&v4(10, 6), &[0; 20]])?[..], abi::AF_INET),
            Err(Malformed)
        );
        // Total length 0 on a short packet is not BIG TCP.
        assert_eq!(
            parse(&cat(&[&v4(0, 6), &[0; 20]])?[..], abi::AF_INET),
            Err(Malformed)
        );
        // A truncated header, and wrong versions.
        assert_eq!(parse(&[0x45u8, 0, 0][..], abi::AF_INET), Err(Malformed));
        let mut h6 = v4(40, 6);
        h6[0] = 0x65;
        assert_eq!(
            parse(&cat(&[&h6, &[0; 20]])?[..], abi::AF_INET),
            Err(Malformed)
        );
        Ok(())
    }

    #[test]
    fn truncated_tcp_header_has_no_transport() -> Result {
        // Data offset 15 words, but only 20 bytes of TCP header.
        let pkt = cat(&[&v4(40, 6), &tcp(1, 2, 3, 15, 0x10)])?;
        let p = parse(&pkt[..], abi::AF_INET).map_err(|_| EINVAL)?;
        assert!(!p.transport);
        assert_eq!((p.sport, p.dport, p.l4_hlen), (0, 0, 0));
        // Ten bytes of a TCP header.
        let pkt = cat(&[&v4(30, 6), &[0u8; 10]])?;
        let p = parse(&pkt[..], abi::AF_INET).map_err(|_| EINVAL)?;
        assert!(!p.transport);
        Ok(())
    }

    #[test]
    fn ipv4_later_fragment() -> Result {
        let mut h = v4(40, 6);
        h[6] = 0x00;
        h[7] = 0x10; // Offset 128 bytes.
        let pkt = cat(&[&h, &tcp(1, 2, 3, 5, 0x02)])?;
        let p = parse(&pkt[..], abi::AF_INET).map_err(|_| EINVAL)?;
        assert!(!p.transport);
        assert_eq!(p.sport, 0);
        Ok(())
    }

    fn v6(payload: u16, next: u8) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&payload.to_be_bytes());
        h[6] = next;
        h[7] = 64;
        h[23] = 1;
        h[39] = 2;
        h
    }

    #[test]
    fn ipv6_extension_headers() -> Result {
        // Hop-by-hop (8 bytes), destination options (16 bytes), then UDP.
        let hbh = [60u8, 0, 1, 4, 0, 0, 0, 0];
        let dst = [17u8, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let udp = [0x13u8, 0x88, 0x00, 0x35, 0, 8, 0, 0];
        let pkt = cat(&[&v6(32, 0), &hbh, &dst, &udp])?;
        let p = parse(&pkt[..], abi::AF_INET6).map_err(|_| EINVAL)?;
        assert_eq!((p.protocol, p.ip_hlen, p.l4_hlen), (17, 64, 8));
        assert_eq!((p.sport, p.dport), (5000, 53));
        assert!(p.transport);
        // A destination-options header claiming more bytes than the packet has.
        let bad = [17u8, 200, 1, 12, 0, 0, 0, 0];
        let pkt = cat(&[&v6(16, 60), &bad, &udp])?;
        assert_eq!(parse(&pkt[..], abi::AF_INET6), Err(Malformed));
        // Payload length past the packet.
        assert_eq!(
            parse(&cat(&[&v6(100, 17), &udp])?[..], abi::AF_INET6),
            Err(Malformed)
        );
        Ok(())
    }

    #[test]
    fn ipv6_fragments() -> Result {
        // First fragment (offset 0, more fragments): the TCP header follows.
        let frag0 = [6u8, 0, 0x00, 0x01, 0, 0, 0, 9];
        let pkt = cat(&[&v6(28, 44), &frag0, &tcp(1, 2, 3, 5, 0x18)])?;
        let p = parse(&pkt[..], abi::AF_INET6).map_err(|_| EINVAL)?;
        assert!(p.transport);
        assert_eq!((p.ip_hlen, p.sport), (48, 1));
        // A later fragment: no transport header.
        let frag1 = [6u8, 0, 0x00, 0x08, 0, 0, 0, 9];
        let pkt = cat(&[&v6(28, 44), &frag1, &[0xaa; 20]])?;
        let p = parse(&pkt[..], abi::AF_INET6).map_err(|_| EINVAL)?;
        assert!(!p.transport);
        assert_eq!((p.protocol, p.sport), (6, 0));
        Ok(())
    }
}
