//! Packets built byte by byte (IPv4, IPv6 with extension headers, TCP, UDP, Ethernet), the raw
//! sockets that send them, and a reader of the pcap files tcpdump writes: what the hostile peer
//! tests send, and how they count what crossed the wire.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::adv_kit::ename;
use crate::sys;

/// The Internet checksum of `data`, starting from `sum`.
pub fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header sum of a transport segment of `len` bytes.
fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for c in src.chunks(2).chain(dst.chunks(2)) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    s + u32::from(proto) + (len as u32 & 0xffff) + (len as u32 >> 16)
}

/// A TCP segment.
#[derive(Clone)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// The data offset to write, in 32-bit words; None for the true one.
    pub doff: Option<u8>,
    /// Cut the segment to this many bytes after the checksum is made.
    pub cut: Option<usize>,
}

impl Tcp {
    pub fn new(sport: u16, dport: u16, flags: u8) -> Tcp {
        Tcp {
            sport,
            dport,
            seq: 1,
            ack: 0,
            flags,
            options: Vec::new(),
            payload: Vec::new(),
            doff: None,
            cut: None,
        }
    }

    /// The segment's bytes, with the checksum for addresses `src` and `dst` (4 or 16 bytes).
    pub fn bytes(&self, src: &[u8], dst: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        let mut t = vec![0u8; hl];
        t[0..2].copy_from_slice(&self.sport.to_be_bytes());
        t[2..4].copy_from_slice(&self.dport.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = self.doff.unwrap_or((hl / 4) as u8) << 4;
        t[13] = self.flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[20..].copy_from_slice(&self.options);
        t.extend_from_slice(&self.payload);
        let c = csum(&t, pseudo(src, dst, 6, t.len()));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        if let Some(n) = self.cut {
            t.truncate(n);
        }
        t
    }
}

/// A UDP datagram's bytes, cut to `cut` bytes if given; `len_field` overrides the length field.
pub fn udp(
    src: &[u8],
    dst: &[u8],
    sport: u16,
    dport: u16,
    payload: &[u8],
    len_field: Option<u16>,
    cut: Option<usize>,
) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    let len = (8 + payload.len()) as u16;
    u[4..6].copy_from_slice(&len_field.unwrap_or(len).to_be_bytes());
    u.extend_from_slice(payload);
    let c = csum(&u, pseudo(src, dst, 17, u.len()));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    if let Some(n) = cut {
        u.truncate(n);
    }
    u
}

/// An IPv4 packet.
#[derive(Clone)]
pub struct Ip4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub ttl: u8,
    pub id: u16,
    pub options: Vec<u8>,
    pub version: u8,
    /// The header length field to write, in words; None for the true one.
    pub ihl: Option<u8>,
    /// The total length to write; None for the true one.
    pub total: Option<u16>,
    /// Fragment offset in 8-byte units, and more-fragments.
    pub frag: (u16, bool),
    pub bad_checksum: bool,
}

impl Ip4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Ip4 {
        Ip4 {
            src,
            dst,
            proto,
            ttl: 64,
            id: 0x4242,
            options: Vec::new(),
            version: 4,
            ihl: None,
            total: None,
            frag: (0, false),
            bad_checksum: false,
        }
    }

    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        let mut h = vec![0u8; hl];
        h[0] = (self.version << 4) | (self.ihl.unwrap_or((hl / 4) as u8) & 0xf);
        let total = self.total.unwrap_or((hl + payload.len()) as u16);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        let frag = self.frag.0 & 0x1fff | if self.frag.1 { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src);
        h[16..20].copy_from_slice(&self.dst);
        h[20..].copy_from_slice(&self.options);
        let c = csum(&h, 0) ^ if self.bad_checksum { 0x5555 } else { 0 };
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// An IPv6 packet: fixed header, then `ext` (extension headers, already chained), then payload.
#[derive(Clone)]
pub struct Ip6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The first next-header value.
    pub next: u8,
    pub version: u8,
    pub hop_limit: u8,
    /// The payload length to write; None for the true one.
    pub payload_len: Option<u16>,
}

impl Ip6 {
    pub fn new(src: [u8; 16], dst: [u8; 16], next: u8) -> Ip6 {
        Ip6 {
            src,
            dst,
            next,
            version: 6,
            hop_limit: 64,
            payload_len: None,
        }
    }

    pub fn bytes(&self, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = self.version << 4;
        let pl = self.payload_len.unwrap_or(rest.len() as u16);
        h[4..6].copy_from_slice(&pl.to_be_bytes());
        h[6] = self.next;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src);
        h[24..40].copy_from_slice(&self.dst);
        h.extend_from_slice(rest);
        h
    }
}

/// An extension header of the options kind (Hop-by-Hop, Destination): `next`, the length field
/// as given (in 8-byte units beyond the first 8), and PadN filling `8 * (real_units + 1)` bytes.
pub fn ext_opts(next: u8, len_field: u8, real_units: u8) -> Vec<u8> {
    let total = 8 * (usize::from(real_units) + 1);
    let mut e = vec![0u8; total];
    e[0] = next;
    e[1] = len_field;
    // PadN covering the rest.
    e[2] = 1;
    e[3] = (total - 4) as u8;
    e
}

/// A Fragment header.
pub fn ext_frag(next: u8, offset_units: u16, more: bool, id: u32) -> Vec<u8> {
    let mut e = vec![0u8; 8];
    e[0] = next;
    let off = (offset_units << 3) | u16::from(more);
    e[2..4].copy_from_slice(&off.to_be_bytes());
    e[4..8].copy_from_slice(&id.to_be_bytes());
    e
}

/// An Ethernet frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Raw sockets made inside a network namespace (they stay in it, whichever thread uses them).
pub struct Raw {
    /// AF_PACKET, for frames onto the interface.
    pub packet: i32,
    pub ifindex: i32,
    /// AF_INET with the IP header included.
    pub ip4: i32,
    /// AF_INET6 with the IP header included.
    pub ip6: i32,
}

impl Raw {
    /// Opens the three sockets in namespace `ns`, for the interface `dev`.
    pub fn open(ns: &str, dev: &str) -> Result<Raw, String> {
        let dev = std::ffi::CString::new(dev).unwrap();
        crate::fixtures::in_ns(ns, move || {
            // SAFETY: Plain socket calls; the name is NUL-terminated.
            unsafe {
                let packet = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
                let ip4 = libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_RAW,
                );
                let ip6 = libc::socket(
                    libc::AF_INET6,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_RAW,
                );
                let ifindex = libc::if_nametoindex(dev.as_ptr()) as i32;
                if packet < 0 || ip4 < 0 || ip6 < 0 || ifindex == 0 {
                    return Err(format!("raw sockets: {}", ename(sys::errno())));
                }
                Ok(Raw {
                    packet,
                    ifindex,
                    ip4,
                    ip6,
                })
            }
        })
    }

    /// Sends a frame out of the interface; Ok or the errno.
    pub fn frame(&self, frame: &[u8]) -> Result<(), i32> {
        // SAFETY: A zeroed sockaddr_ll is valid; we fill the fields AF_PACKET needs.
        let rc = unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = self.ifindex;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&frame[..6]);
            libc::sendto(
                self.packet,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            Err(sys::errno())
        } else {
            Ok(())
        }
    }

    /// Sends an IPv4 packet, header included, routed to `dst`.
    pub fn ip4(&self, pkt: &[u8], dst: [u8; 4]) -> Result<(), i32> {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: Our socket, buffer and address.
        let rc = unsafe {
            libc::sendto(
                self.ip4,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                16,
            )
        };
        if rc < 0 {
            Err(sys::errno())
        } else {
            Ok(())
        }
    }

    /// Sends an IPv6 packet, header included, routed to `dst`.
    pub fn ip6(&self, pkt: &[u8], dst: [u8; 16]) -> Result<(), i32> {
        // SAFETY: A zeroed sockaddr_in6 is valid; we fill family and address.
        let rc = unsafe {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr = dst;
            libc::sendto(
                self.ip6,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        };
        if rc < 0 {
            Err(sys::errno())
        } else {
            Ok(())
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: Our sockets.
        unsafe {
            libc::close(self.packet);
            libc::close(self.ip4);
            libc::close(self.ip6);
        }
    }
}

/// A packet tcpdump captured: what the tests compare with the module's counters.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub flags: u8,
    /// Bytes at the IP layer: the frame's original length less the Ethernet header.
    pub ip_len: u64,
}

/// tcpdump capturing into a file, in a namespace.
pub struct Capture {
    child: Child,
    file: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts tcpdump on `dev` in namespace `ns` with the filter `expr`, and waits until it
    /// listens.
    pub fn start(ns: &str, dev: &str, expr: &str, file: &str) -> Result<Capture, String> {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-i", dev, "-nn", "-U", "-B", "8192",
            ])
            .args(["-s", "96", "-Z", "root", "-w", file, expr])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tcpdump: {e}"))?;
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("tcpdump on {dev} in {ns} did not start"));
                }
            }
        }
        Ok(Capture {
            child,
            file: file.to_owned(),
            stderr: rx,
        })
    }

    /// Stops tcpdump; the frames it wrote. Fails if the kernel dropped any.
    pub fn stop(mut self) -> Result<Vec<Frame>, String> {
        // Let the last packets reach the file: tcpdump (-U) writes each packet as it takes it
        // from its buffer, and on SIGINT leaves what it has not taken yet. On a slow kernel it
        // can lag by seconds, so wait until the file has not grown for a second.
        let size = || std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut last, mut since) = (size(), Instant::now());
        while since.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = size();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        // SAFETY: Signalling our own child (ip execs tcpdump in place).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().map_err(|e| e.to_string())?;
        let mut dropped = None;
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
                dropped = n.trim().parse::<u64>().ok();
            }
        }
        if dropped != Some(0) {
            return Err(format!(
                "tcpdump ({}) dropped packets: {dropped:?}",
                self.file
            ));
        }
        read_pcap(&self.file)
    }
}

/// The IPv4 TCP frames of a pcap file (link type Ethernet).
pub fn read_pcap(path: &str) -> Result<Vec<Frame>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if b.len() < 24 || !matches!(&b[..4], [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) {
        return Err(format!("{path}: not a little-endian pcap file"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    if u32_at(20) != 1 {
        return Err(format!("{path}: link type {}", u32_at(20)));
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let (incl, orig) = (u32_at(off + 8) as usize, u64::from(u32_at(off + 12)));
        let f = &b[off + 16..(off + 16 + incl).min(b.len())];
        off += 16 + incl;
        if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0xf) * 4;
        if ip.len() < ihl + 14 {
            continue;
        }
        let t = &ip[ihl..];
        out.push(Frame {
            src: ip[12..16].try_into().unwrap(),
            dst: ip[16..20].try_into().unwrap(),
            sport: u16::from_be_bytes([t[0], t[1]]),
            dport: u16::from_be_bytes([t[2], t[3]]),
            ttl: ip[8],
            flags: t[13],
            ip_len: orig - 14,
        });
    }
    Ok(out)
}

/// Packets and IP bytes of the frames from `from` to `to` (address, port), leaving out those
/// with TTL `skip_ttl`.
pub fn tally(
    frames: &[Frame],
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    skip_ttl: Option<u8>,
) -> (u64, u64) {
    frames
        .iter()
        .filter(|f| (f.src, f.sport) == from && (f.dst, f.dport) == to)
        .filter(|f| Some(f.ttl) != skip_ttl)
        .fold((0, 0), |(n, b), f| (n + 1, b + f.ip_len))
}

/// A TCP socket in namespace `ns` bound to `addr:port`, then connected or listening.
pub fn tcp_socket(
    ns: &str,
    bind: ([u8; 4], u16),
    connect: Option<([u8; 4], u16)>,
) -> Result<i32, String> {
    crate::fixtures::in_ns(ns, move || {
        let sa = |a: [u8; 4], p: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: p.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: Plain socket calls on a socket of ours.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                4,
            );
            let b = sa(bind.0, bind.1);
            if libc::bind(fd, (&b as *const libc::sockaddr_in).cast(), 16) != 0 {
                return Err(format!("bind: {}", ename(sys::errno())));
            }
            let rc = match connect {
                Some((a, p)) => {
                    let c = sa(a, p);
                    libc::connect(fd, (&c as *const libc::sockaddr_in).cast(), 16)
                }
                None => libc::listen(fd, 128),
            };
            if rc != 0 {
                return Err(format!("connect/listen: {}", ename(sys::errno())));
            }
            Ok(fd)
        }
    })
}

/// Turns a socket descriptor into a `TcpStream` (or listener) that owns it.
pub fn stream(fd: i32) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is a connected TCP socket that nothing else owns.
    unsafe { std::net::TcpStream::from_raw_fd(fd) }
}

/// See [`stream`].
pub fn listener(fd: i32) -> std::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is a listening TCP socket that nothing else owns.
    unsafe { std::net::TcpListener::from_raw_fd(fd) }
}

/// (rx dropped, tx dropped) of an interface in a namespace.
pub fn drops(ns: &str, dev: &str) -> Result<(u64, u64), String> {
    let out = sys::run_ok("ip", &["-n", ns, "-s", "-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &v[0]["stats64"];
    Ok((
        s["rx"]["dropped"].as_u64().unwrap_or(0),
        s["tx"]["dropped"].as_u64().unwrap_or(0),
    ))
}
