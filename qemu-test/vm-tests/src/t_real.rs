//! Sockets as real programs use them (issue #10): curl, busybox httpd and socat from Debian, with
//! tcpdump capturing the same traffic as the oracle; connect outcomes and their latency; INTERIM
//! records and `tcplog conns`; cgroups; MPTCP.
//!
//! Every count is compared with the capture, both sides of every connection, and where they
//! differ the test fails saying which connection, which side, which direction, and which packets
//! the capture has after the summary was written.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tcplog_ctl::{self as abi, EventBody, InterimBody, Pod, SummaryBody};

use crate::dev::{Dev, Rec};
use crate::fixtures::{collect, fresh, summaries};
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::uring;
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "real: curl, busybox httpd and socat, v4 and v6, FIN either way and RST: every summary's bytes, packets and IP bytes equal tcpdump's, both sides",
        real_programs,
    );
    h.run(
        "real: curl's non-blocking connects: EINPROGRESS, then the async outcome with its latency, as the capture times it",
        curl_connect_latency,
    );
    h.run(
        "real: a connection open across three 2 s intervals: INTERIM records exact against tcpdump; tcplog conns lists it, then not",
        interim_and_conns,
    );
    h.run(
        "real: a process in a child cgroup: its id in events and summaries, --cgroup selects it, the tool names the container",
        cgroups,
    );
    h.run(
        "real: MPTCP: events say mptcp, the connection's summary has 12345 bytes each way, its subflows point to it",
        mptcp,
    );
    h.run(
        "real: a closer retired in FIN_WAIT2 before the peer's late FIN says so (fin_wait2) and lacks exactly that FIN and its last ACK (v4, v6)",
        late_peer_fin,
    );
    h.run(
        "real: a reset (SO_LINGER 0) is rst_sent and rst_received, with every packet, as tcpdump has them (v4, v6)",
        resets,
    );
    h.run(
        "real: io_uring connect and accept: EINPROGRESS and the outcome (not the retry), the accept is the process's, exact summaries",
        io_uring,
    );
    h.run(
        "real: socket ids are the cookies ss -e shows (sk:), in both ends' events and summaries",
        ss_cookies,
    );
}

// Helper processes: `--mptcp-server ADDR RECV SEND` and `--mptcp-client ADDR SEND RECV`, as the
// TCP ones of `peer`, over IPPROTO_MPTCP sockets.

const IPPROTO_MPTCP: i32 = 262;

fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: All-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: As above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn helper_fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("mptcp helper: {what}: {e}");
    std::process::exit(1);
}

/// An MPTCP socket for `a`'s family.
fn mptcp_socket(a: &SocketAddr) -> i32 {
    let fam = if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: A plain socket call.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM, IPPROTO_MPTCP) };
    if fd < 0 {
        helper_fail("socket(IPPROTO_MPTCP)", std::io::Error::last_os_error());
    }
    fd
}

/// Runs a helper mode if the arguments ask for one; returns whether it did.
pub fn main_if_helper() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(addr), Some(a), Some(b)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        return false;
    };
    if mode != "--mptcp-server" && mode != "--mptcp-client" {
        return false;
    }
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| helper_fail("address", e));
    let (a, b): (usize, usize) = (
        a.parse().unwrap_or_else(|e| helper_fail("count", e)),
        b.parse().unwrap_or_else(|e| helper_fail("count", e)),
    );
    let fd = mptcp_socket(&addr);
    let (ss, len) = sockaddr(&addr);
    let sa = (&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    if mode == "--mptcp-server" {
        // SAFETY: `fd` is ours; `sa` points to `len` valid bytes.
        if unsafe { libc::bind(fd, sa, len) } < 0 || unsafe { libc::listen(fd, 1) } < 0 {
            helper_fail("bind/listen", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a listening stream socket we own, handed over to the listener.
        let l = unsafe { TcpListener::from_raw_fd(fd) };
        println!("port {}", l.local_addr().unwrap().port());
        std::io::stdout().flush().ok();
        let (mut s, _) = l.accept().unwrap_or_else(|e| helper_fail("accept", e));
        drop(l);
        let mut buf = vec![0u8; a];
        s.read_exact(&mut buf)
            .unwrap_or_else(|e| helper_fail("read", e));
        s.write_all(&vec![b's'; b])
            .unwrap_or_else(|e| helper_fail("write", e));
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .unwrap_or_else(|e| helper_fail("read to EOF", e));
    } else {
        // SAFETY: As above.
        if unsafe { libc::connect(fd, sa, len) } < 0 {
            helper_fail("connect", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a connected stream socket we own, handed over to the stream.
        let mut s = unsafe { TcpStream::from_raw_fd(fd) };
        s.write_all(&vec![b'c'; a])
            .unwrap_or_else(|e| helper_fail("write", e));
        let mut buf = vec![0u8; b];
        s.read_exact(&mut buf)
            .unwrap_or_else(|e| helper_fail("read", e));
    }
    true
}

// The capture.

/// One TCP packet as tcpdump captured it.
#[derive(Clone, Debug)]
struct Pkt {
    ts_ns: u64,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    /// It carries the timestamp option. A socket stamps every segment of a connection that
    /// negotiated timestamps, its resets included; the resets the kernel sends from no socket
    /// (`tcp_v4_send_reset`, `tcp_v6_send_reset`) carry none.
    ts_opt: bool,
    /// IP length: the IPv4 total length, or 40 + the IPv6 payload length.
    ip_len: u64,
    payload: u64,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn flag_names(f: u8) -> String {
    let mut v = Vec::new();
    for (bit, n) in [(SYN, "S"), (FIN, "F"), (RST, "R"), (0x08, "P"), (ACK, ".")] {
        if f & bit != 0 {
            v.push(n);
        }
    }
    v.concat()
}

/// Parses a pcap file of Ethernet frames (tcpdump -i lo) with nanosecond times.
fn parse_pcap(b: &[u8]) -> Result<Vec<Pkt>, String> {
    let u32le = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    ensure!(b.len() >= 24, "pcap of {} bytes", b.len());
    let nano = match u32le(0) {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        m => return Err(format!("pcap magic {m:#x}")),
    };
    ensure_eq!(u32le(20), 1, "link type Ethernet");
    let mut out = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let (sec, frac, caplen) = (u32le(o), u32le(o + 4), u32le(o + 8) as usize);
        let ts_ns = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nano { 1 } else { 1000 };
        let f = &b[o + 16..(o + 16 + caplen).min(b.len())];
        o += 16 + caplen;
        let be16 = |x: &[u8], i: usize| u16::from_be_bytes([x[i], x[i + 1]]);
        if f.len() < 14 {
            continue;
        }
        let ip = &f[14..];
        let (src, dst, ip_len, l4) = match be16(f, 12) {
            0x0800 if ip.len() >= 20 && ip[9] == 6 => {
                let hl = usize::from(ip[0] & 0xf) * 4;
                let a = |i: usize| IpAddr::from([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
                (
                    a(12),
                    a(16),
                    u64::from(be16(ip, 2)),
                    &ip[hl.min(ip.len())..],
                )
            }
            0x86dd if ip.len() >= 40 && ip[6] == 6 => {
                let a = |i: usize| {
                    let mut x = [0u8; 16];
                    x.copy_from_slice(&ip[i..i + 16]);
                    IpAddr::from(x)
                };
                (a(8), a(24), 40 + u64::from(be16(ip, 4)), &ip[40..])
            }
            _ => continue,
        };
        if l4.len() < 20 {
            return Err(format!("a TCP header cut short at {ts_ns}"));
        }
        let ip_hl = match src {
            IpAddr::V4(_) => u64::from(ip[0] & 0xf) * 4,
            IpAddr::V6(_) => 40,
        };
        let tcp_hl = u64::from(l4[12] >> 4) * 4;
        out.push(Pkt {
            ack: u32::from_be_bytes(l4[8..12].try_into().unwrap()),
            ts_opt: has_timestamp(&l4[20..(tcp_hl as usize).clamp(20, l4.len())]),
            ts_ns,
            src: (src, be16(l4, 0)),
            dst: (dst, be16(l4, 2)),
            flags: l4[13],
            seq: u32::from_be_bytes(l4[4..8].try_into().unwrap()),
            ip_len,
            payload: ip_len - ip_hl - tcp_hl,
        });
    }
    Ok(out)
}

/// Whether TCP options `o` hold a timestamp (kind 8).
fn has_timestamp(mut o: &[u8]) -> bool {
    while let Some(&kind) = o.first() {
        match kind {
            0 => return false,
            1 => o = &o[1..],
            8 => return true,
            _ => match o.get(1) {
                Some(&len) if len >= 2 => o = &o[usize::from(len).min(o.len())..],
                _ => return false,
            },
        }
    }
    false
}

/// tcpdump capturing TCP on lo into a file.
struct Capture {
    child: Child,
    path: String,
}

fn capture(name: &str, filter: &str) -> Result<Capture, String> {
    let path = format!("/tmp/{name}.pcap");
    let mut args = vec![
        "-i",
        "lo",
        "-nn",
        "-U",
        "-s",
        "200",
        "--time-stamp-precision=nano",
        // Each packet to the file as it comes: without it, what is still in the capture
        // buffer when tcpdump is stopped is neither written nor counted as dropped.
        "--immediate-mode",
        "-Z",
        "root",
        "-w",
        &path,
    ];
    args.extend(filter.split(' '));
    let mut child = Command::new("tcpdump")
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tcpdump: {e}"))?;
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).map_err(|e| e.to_string())?;
    ensure!(line.contains("listening on"), "tcpdump said {line:?}");
    // The rest of stderr (the counts at exit) is read when it stops.
    child.stderr = Some(err.into_inner());
    Ok(Capture { child, path })
}

impl Capture {
    /// Stops the capture (after a moment for the last packets) and parses it.
    fn stop(mut self) -> Result<Vec<Pkt>, String> {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: Signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().map_err(|e| e.to_string())?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).ok();
        }
        ensure!(
            err.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump dropped packets: {err}"
        );
        parse_pcap(&std::fs::read(&self.path).map_err(|e| e.to_string())?)
    }
}

/// One connection in the capture, from its first SYN: what went each way.
#[derive(Debug, Default, Clone)]
struct Flow {
    client: Option<(IpAddr, u16)>,
    server: Option<(IpAddr, u16)>,
    /// Client to server, then server to client: packets, IP bytes, data bytes.
    pkts: [u64; 2],
    ip_bytes: [u64; 2],
    data: [u64; 2],
    syn_ns: u64,
    synack_ns: u64,
    /// Highest sequence number of data seen each way (for retransmissions).
    next_seq: [Option<u32>; 2],
    packets: Vec<Pkt>,
}

/// What of a connection's last packets a side's counters leave out, and what they may count
/// or not (each packet of `either` independently: which came first is a race between CPUs).
#[derive(Debug, Default, PartialEq)]
struct Tail {
    left_out: Vec<usize>,
    either: Vec<usize>,
}

/// How a captured connection ended.
struct Ending {
    /// Both SYNs carried timestamps, so a socket's segments all do (`Pkt::ts_opt`).
    stamped: bool,
    /// The reset that ended the connection, if one did.
    reset: Option<usize>,
}

impl Flow {
    /// A packet's TCP sequence space: data, and one each for SYN and FIN.
    fn seq_len(p: &Pkt) -> u32 {
        p.payload as u32 + u32::from(p.flags & SYN != 0) + u32::from(p.flags & FIN != 0)
    }

    /// Where the orderly close completed: the acknowledgement of the second side's FIN.
    fn orderly_close(&self) -> Option<usize> {
        let client = self.client?;
        let first_fin = |from_client: bool| {
            self.packets
                .iter()
                .position(|p| (p.src == client) == from_client && p.flags & FIN != 0)
        };
        let last = first_fin(true)?.max(first_fin(false)?);
        let fin = &self.packets[last];
        let want = fin.seq.wrapping_add(Self::seq_len(fin));
        self.packets[last + 1..]
            .iter()
            .position(|p| p.src != fin.src && p.flags & (ACK | RST) == ACK && p.ack == want)
            .map(|j| last + 1 + j)
    }

    /// The reset that ended the connection: the first one before the orderly close completed
    /// (after it, resets come from no socket or a TIME_WAIT remnant, as replies to strays). Where
    /// the connection is stamped, a socket's own reset (stamped) is preferred: the capture stamps
    /// a loopback packet as it is delivered, so a reply from no socket to a segment that crossed
    /// the reset can be delivered before it.
    fn ending(&self) -> Ending {
        let first = |acked: bool| {
            self.packets
                .iter()
                .find(|p| p.flags & (SYN | ACK) == if acked { SYN | ACK } else { SYN })
                .is_some_and(|p| p.ts_opt)
        };
        let stamped = first(false) && first(true);
        let end = self.orderly_close().unwrap_or(self.packets.len());
        let resets: Vec<usize> = (0..end)
            .filter(|&i| self.packets[i].flags & RST != 0)
            .collect();
        let reset = resets
            .iter()
            .copied()
            .find(|&i| stamped && self.packets[i].ts_opt)
            .or(resets.first().copied());
        Ending { stamped, reset }
    }

    /// What is not the connection's of side `me` that reset it, and what may or may not be.
    ///
    /// Its socket's packets end with its reset: TCP moves the socket to CLOSE (where the hooks
    /// stop counting what comes in) and unhashes it just before sending the reset. Where the
    /// reset is the socket's own (stamped), left out are: the peer's segments captured after it
    /// (the capture takes a packet as it is sent, so these reached `me` after the CLOSE), and
    /// `me`'s unstamped resets, the replies from no socket to the peer's segments that crossed
    /// the close. A segment so answered found no socket, but it may have passed LOCAL_IN just
    /// before the CLOSE, on another CPU: if captured before the reset, it may be counted or not.
    /// Otherwise (no timestamps) everything captured after this side's first reset is left out.
    fn after_reset(&self, me: (IpAddr, u16), e: &Ending) -> Tail {
        let own = e.reset.filter(|&i| self.packets[i].src == me).or_else(|| {
            self.packets
                .iter()
                .position(|p| p.src == me && p.flags & RST != 0)
        });
        let Some(r) = own else {
            return Tail::default();
        };
        if !(e.stamped && self.packets[r].ts_opt) {
            return Tail {
                left_out: (r + 1..self.packets.len()).collect(),
                either: Vec::new(),
            };
        }
        let mut left_out: Vec<usize> = (r + 1..self.packets.len())
            .filter(|&i| self.packets[i].src != me)
            .collect();
        let mut answered: Vec<usize> = Vec::new();
        for (q, reply) in self.packets.iter().enumerate() {
            if reply.src != me || reply.flags & RST == 0 || reply.ts_opt {
                continue;
            }
            left_out.push(q);
            // RFC 793's reply: to a segment with ACK, a RST whose sequence is that
            // acknowledgement; to one without, a RST|ACK acknowledging the segment. Each
            // answers one segment, the latest not yet answered: the socket took the earlier.
            let answers = |p: &Pkt| {
                if reply.flags & ACK != 0 {
                    reply.ack == p.seq.wrapping_add(Self::seq_len(p))
                } else {
                    p.flags & ACK != 0 && reply.seq == p.ack
                }
            };
            if let Some(a) = (0..q).rev().find(|&i| {
                self.packets[i].src != me && answers(&self.packets[i]) && !answered.contains(&i)
            }) {
                answered.push(a);
            }
        }
        left_out.sort_unstable();
        left_out.dedup();
        answered.retain(|a| !left_out.contains(a));
        answered.sort_unstable();
        Tail {
            left_out,
            either: answered,
        }
    }

    /// What a summary of side `me` flagged fin_wait2 leaves out: the peer's FIN and `me`'s last
    /// ACK, which came after the kernel retired the socket in FIN_WAIT2. What the peer sent
    /// between its ACK of `me`'s FIN and its own FIN (an MPTCP subflow's data ACKs) came before
    /// or after that moment, which the capture does not show: each may be counted or not.
    fn after_fin_wait2(&self, me: (IpAddr, u16)) -> Tail {
        let mut tail = Tail::default();
        let Some(fin) = (0..self.packets.len())
            .find(|&i| self.packets[i].src != me && self.packets[i].flags & FIN != 0)
        else {
            return tail;
        };
        tail.left_out.push(fin);
        let last_ack = self.packets[fin + 1..]
            .iter()
            .position(|p| p.src == me && p.flags & (SYN | FIN | RST) == 0 && p.payload == 0);
        tail.left_out.extend(last_ack.map(|j| fin + 1 + j));
        let my_fin = self
            .packets
            .iter()
            .position(|p| p.src == me && p.flags & FIN != 0);
        let acked = my_fin.and_then(|m| {
            let want = self.packets[m]
                .seq
                .wrapping_add(Self::seq_len(&self.packets[m]));
            (m + 1..fin).find(|&i| {
                let p = &self.packets[i];
                p.src != me && p.flags & ACK != 0 && p.ack == want
            })
        });
        if let Some(a) = acked {
            tail.either = (a + 1..fin)
                .filter(|&i| self.packets[i].src != me)
                .collect();
        }
        tail
    }

    /// What of side `me`'s connection the kernel's TIME_WAIT remnant answered, after the socket
    /// was gone (its summary written at `summary_ns`): the peer's FIN sent again (the same
    /// sequence number as an earlier FIN of the peer), captured after the summary, and `me`'s
    /// pure ACKs after it. README: a connection's packets end with its socket. (Seen on the
    /// unstable lane under load: the socket's own ACK of the peer's FIN never went out, and the
    /// FIN came again 200 ms later, answered by the remnant.)
    fn after_timewait(&self, me: (IpAddr, u16), summary_ns: u64) -> Vec<usize> {
        let peer_fin = |p: &Pkt| p.src != me && p.flags & FIN != 0;
        let Some(first) = self.packets.iter().position(peer_fin) else {
            return Vec::new();
        };
        let seq = self.packets[first].seq;
        let Some(again) = (first + 1..self.packets.len()).find(|&i| {
            let p = &self.packets[i];
            peer_fin(p) && p.seq == seq && p.ts_ns > summary_ns
        }) else {
            return Vec::new();
        };
        (again..self.packets.len())
            .filter(|&i| {
                let p = &self.packets[i];
                (peer_fin(p) && p.seq == seq)
                    || (p.src == me && p.flags & (SYN | FIN | RST) == 0 && p.payload == 0)
            })
            .collect()
    }

    /// The peer's resets after the first of them, of side `me` that a reset ended: each may
    /// or may not be the connection's. The first (the peer socket's own reset, or the reply from
    /// no socket to a segment of `me` that crossed it) closed `me`'s socket, and a closed
    /// socket's connection takes nothing inbound; but a reset that came close behind it may
    /// have passed the hooks (netfilter's LOCAL_IN, before TCP) while the socket was still
    /// open, its first reset waiting in the socket's backlog. The peer sends nothing else then:
    /// its socket is gone.
    fn after_received_reset(&self, me: (IpAddr, u16)) -> Vec<usize> {
        let peer_rst = |i: &usize| self.packets[*i].src != me && self.packets[*i].flags & RST != 0;
        let Some(r) = (0..self.packets.len()).find(peer_rst) else {
            return Vec::new();
        };
        (r + 1..self.packets.len()).filter(peer_rst).collect()
    }
}

/// The capture's connections, by (client, server).
type FlowKey = ((IpAddr, u16), (IpAddr, u16));

fn flows(pkts: &[Pkt]) -> BTreeMap<FlowKey, Flow> {
    let mut m: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    for p in pkts {
        let fwd = (p.src, p.dst);
        let rev = (p.dst, p.src);
        let (key, dir) = if m.contains_key(&fwd) {
            (fwd, 0)
        } else if m.contains_key(&rev) {
            (rev, 1)
        } else if p.flags & (SYN | ACK) == SYN {
            (fwd, 0)
        } else {
            continue;
        };
        let f = m.entry(key).or_default();
        if f.client.is_none() {
            f.client = Some(p.src);
            f.server = Some(p.dst);
            f.syn_ns = p.ts_ns;
        }
        if dir == 1 && p.flags & (SYN | ACK) == SYN | ACK && f.synack_ns == 0 {
            f.synack_ns = p.ts_ns;
        }
        f.pkts[dir] += 1;
        f.ip_bytes[dir] += p.ip_len;
        if p.payload > 0 {
            // New data only: a retransmission repeats sequence space already counted.
            let end = p.seq.wrapping_add(p.payload as u32);
            match f.next_seq[dir] {
                None => {
                    f.data[dir] += p.payload;
                    f.next_seq[dir] = Some(end);
                }
                Some(n) => {
                    let ahead = end.wrapping_sub(n) as i32;
                    if ahead > 0 {
                        f.data[dir] += u64::from(ahead as u32).min(p.payload);
                        f.next_seq[dir] = Some(end);
                    }
                }
            }
        }
        f.packets.push(p.clone());
    }
    m
}

fn end_of(s: &SummaryBody, local: bool) -> (IpAddr, u16) {
    let (a, p) = if local {
        (s.laddr, s.lport)
    } else {
        (s.raddr, s.rport)
    };
    // A dual-stack server's IPv4 peers are IPv4-mapped IPv6 addresses: IPv4 on the wire.
    let ip = if s.family == abi::AF_INET6 {
        IpAddr::from(a).to_canonical()
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    };
    (ip, p)
}

/// A summary with the time it was written.
type Timed = (u64, SummaryBody);

/// The summaries of a flow: (client's, server's), with the times they were written.
fn sides_of<'a>(f: &Flow, sums: &'a [Timed]) -> (Option<&'a Timed>, Option<&'a Timed>) {
    let (c, s) = (f.client.unwrap(), f.server.unwrap());
    let find = |l: (IpAddr, u16), r: (IpAddr, u16)| {
        sums.iter().find(|(_, x)| {
            x.flags & abi::SUMF_MPTCP == 0 && end_of(x, true) == l && end_of(x, false) == r
        })
    };
    (find(c, s), find(s, c))
}

/// Compares a side's summary with the capture; returns what differs, precisely.
fn compare(f: &Flow, side: &str, time_ns: u64, s: &SummaryBody, client: bool) -> Vec<String> {
    let (out, inn) = if client { (0, 1) } else { (1, 0) };
    let mut bad = Vec::new();
    let who = format!(
        "{}:{} -> {}:{} {side}",
        f.client.unwrap().0,
        f.client.unwrap().1,
        f.server.unwrap().0,
        f.server.unwrap().1
    );
    if s.flags & abi::SUMF_IP_COUNTERS == 0 {
        bad.push(format!("{who}: no IP counters (flags {:#x})", s.flags));
        return bad;
    }
    let me = if client { f.client } else { f.server }.unwrap();
    // A summary flagged fin_wait2 leaves out, as README says, the peer's FIN and this side's
    // last ACK (they come after it); every other summary holds every packet.
    // Each packet of `either` may be counted or not (see `Flow::after_fin_wait2`,
    // `Flow::after_reset` and `Flow::after_received_reset`); the counts must be those of one
    // choice, exactly.
    let (mut left_out, mut either) = (Vec::new(), Vec::new());
    if s.flags & abi::SUMF_FIN_WAIT2 != 0 {
        let tail = f.after_fin_wait2(me);
        left_out = tail.left_out;
        either = tail.either;
    }
    // A connection this side reset ends with that reset, as README says: what crosses it (the
    // peer's FIN, and the resets the kernel answers with from no socket) is not the connection's.
    let ending = f.ending();
    if s.close == abi::close::RST_SENT {
        let tail = f.after_reset(me, &ending);
        left_out.extend(tail.left_out);
        either = tail.either;
    } else if s.close == abi::close::RST_RECEIVED {
        either = f.after_received_reset(me);
    }
    left_out.extend(&either);
    left_out.extend(f.after_timewait(me, time_ns));
    let (mut pkts, mut ip_bytes) = ([0u64; 2], [0u64; 2]);
    for (i, p) in f.packets.iter().enumerate() {
        if !left_out.contains(&i) {
            let dir = usize::from(p.src != f.client.unwrap());
            pkts[dir] += 1;
            ip_bytes[dir] += p.ip_len;
        }
    }
    let counted_in = |choice: usize| {
        either
            .iter()
            .enumerate()
            .filter(|(k, _)| choice & (1 << k) != 0)
            .fold((pkts[inn], ip_bytes[inn]), |(n, b), (_, &i)| {
                (n + 1, b + f.packets[i].ip_len)
            })
    };
    if let Some((n, b)) = (0..1usize << either.len().min(6))
        .map(counted_in)
        .find(|&c| c == (s.pkts_in, s.ip_bytes_in))
    {
        (pkts[inn], ip_bytes[inn]) = (n, b);
    }
    let every = [f.pkts[out], f.pkts[inn], f.ip_bytes[out], f.ip_bytes[inn]];
    if s.flags & abi::SUMF_FIN_WAIT2 != 0
        && !left_out.is_empty()
        && [s.pkts_out, s.pkts_in, s.ip_bytes_out, s.ip_bytes_in] == every
    {
        bad.push(format!(
            "{who}: flagged fin_wait2 (flags {:#x}), yet it counts every packet, the peer's FIN and the last ACK included",
            s.flags
        ));
        return bad;
    }
    for (what, got, want) in [
        ("bytes_sent", s.bytes_sent, f.data[out]),
        ("bytes_received", s.bytes_received, f.data[inn]),
        ("pkts_out", s.pkts_out, pkts[out]),
        ("pkts_in", s.pkts_in, pkts[inn]),
        ("ip_bytes_out", s.ip_bytes_out, ip_bytes[out]),
        ("ip_bytes_in", s.ip_bytes_in, ip_bytes[inn]),
    ] {
        if got != want {
            bad.push(format!(
                "{who}: {what} {got}, tcpdump {want}{}",
                if left_out.is_empty() {
                    ""
                } else if s.close == abi::close::RST_SENT {
                    " (without what came after this side's reset)"
                } else if s.close == abi::close::RST_RECEIVED {
                    " (with none of the peer's resets after its first, or any of them)"
                } else {
                    " (without the peer's FIN and the last ACK: fin_wait2)"
                }
            ));
        }
    }
    // (The capture's timestamps are no oracle for which packets precede the summary: tcpdump
    // stamps a loopback packet when it is delivered, after the hook counted it on its way out.
    // The counts are.)
    // How it ended, as the capture shows it: the reset that ended it (`Flow::ending`), or FINs.
    let rst_from = ending.reset.map(|i| f.packets[i].src);
    let want_close = match rst_from {
        Some(src) if src == me => abi::close::RST_SENT,
        Some(_) => abi::close::RST_RECEIVED,
        None => abi::close::FIN,
    };
    if s.close != want_close {
        bad.push(format!(
            "{who}: close {}, tcpdump says {want_close} ({})",
            s.close,
            match rst_from {
                Some(src) if src == me => "this side sent a reset",
                Some(_) => "the peer sent a reset",
                None => "no reset before the orderly close completed",
            }
        ));
    }
    if !bad.is_empty() {
        let late: Vec<String> = f
            .packets
            .iter()
            .filter(|p| p.ts_ns > time_ns)
            .map(|p| {
                let dir = if p.src == f.client.unwrap() {
                    "c->s"
                } else {
                    "s->c"
                };
                format!(
                    "{dir} [{}] len {} +{}us",
                    flag_names(p.flags),
                    p.ip_len,
                    (p.ts_ns - time_ns) / 1000
                )
            })
            .collect();
        // The whole exchange, for a failure that does not come back when run again.
        let every: Vec<String> = f
            .packets
            .iter()
            .map(|p| {
                format!(
                    "{} [{}] len {} data {} at {}",
                    if p.src == f.client.unwrap() {
                        "c->s"
                    } else {
                        "s->c"
                    },
                    flag_names(p.flags),
                    p.ip_len,
                    p.payload,
                    p.ts_ns
                )
            })
            .collect();
        bad.push(format!(
            "{who}: summary written at {time_ns} (close {}, flags {:#x}); captured after it: {late:?}; every packet: {every:?}",
            s.close,
            s.flags
        ));
    }
    bad
}

fn events_of(recs: &[Rec]) -> Vec<(u64, EventBody)> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::EVENT)
        .map(|r| (r.hdr.time_ns, EventBody::read_from(&r.body).unwrap()))
        .collect()
}

fn timed_summaries(recs: &[Rec]) -> Vec<(u64, SummaryBody)> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::SUMMARY)
        .map(|r| (r.hdr.time_ns, SummaryBody::read_from(&r.body).unwrap()))
        .collect()
}

fn interims(recs: &[Rec]) -> Vec<(u64, InterimBody)> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::INTERIM)
        .map(|r| (r.hdr.time_ns, InterimBody::read_from(&r.body).unwrap()))
        .collect()
}

/// A free port on lo (bound and let go).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().unwrap().port())
}

/// A background program, killed when dropped.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bg(prog: &str, args: &[&str]) -> Result<Bg, String> {
    Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Bg)
        .map_err(|e| format!("{prog}: {e}"))
}

/// Waits until something listens on `port` of lo (v4 or v6).
fn wait_listening(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let hex = format!(":{port:04X} ");
    while Instant::now() < deadline {
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let t = std::fs::read_to_string(f).unwrap_or_default();
            if t.lines().any(|l| l.contains(&hex) && l.contains(" 0A ")) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on port {port}"))
}

const BODY: usize = 12345;

fn www() -> Result<(), String> {
    std::fs::create_dir_all("/tmp/www").map_err(|e| e.to_string())?;
    let body: Vec<u8> = (0..BODY).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write("/tmp/www/f", body).map_err(|e| e.to_string())
}

/// Waits for summaries of `n` connections (both sides: 2n), MPTCP ones aside.
fn wait_summaries(d: &Dev, recs: &mut Vec<Rec>, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        recs.extend(d.drain()?);
        let k = timed_summaries(recs)
            .iter()
            .filter(|(_, s)| s.flags & abi::SUMF_MPTCP == 0)
            .count();
        if k >= 2 * n || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every flow of the capture against both its summaries; every difference listed.
fn check_flows(flows: &BTreeMap<FlowKey, Flow>, sums: &[(u64, SummaryBody)]) -> TestResult {
    let mut bad = Vec::new();
    for f in flows.values() {
        let (c, s) = sides_of(f, sums);
        for (side, sum, client) in [("client", c, true), ("server", s, false)] {
            match sum {
                Some((t, x)) => bad.extend(compare(f, side, *t, x, client)),
                None => bad.push(format!(
                    "{:?} -> {:?}: no {side} summary",
                    f.client.unwrap(),
                    f.server.unwrap()
                )),
            }
        }
    }
    ensure!(
        bad.is_empty(),
        "{} differences with tcpdump over {} connections:\n  {}",
        bad.len(),
        flows.len(),
        bad.join("\n  ")
    );
    Ok(())
}

// Tests.

fn real_programs() -> TestResult {
    www()?;
    let (h4, h6, s4, s6) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let filter = format!("tcp and (port {h4} or port {h6} or port {s4} or port {s6})");
    let d = fresh()?;
    let cap = capture("real", &filter)?;
    let _httpd4 = bg(
        "httpd",
        &["-f", "-p", &format!("127.0.0.1:{h4}"), "-h", "/tmp/www"],
    )?;
    let _httpd6 = bg(
        "httpd",
        &["-f", "-p", &format!("[::1]:{h6}"), "-h", "/tmp/www"],
    )?;
    let _socat4 = bg(
        "socat",
        &[
            "-u",
            &format!("TCP4-LISTEN:{s4},bind=127.0.0.1,reuseaddr,fork"),
            "OPEN:/dev/null",
        ],
    )?;
    let _socat6 = bg(
        "socat",
        &[
            "-u",
            &format!("TCP6-LISTEN:{s6},bind=[::1],reuseaddr,fork"),
            "OPEN:/dev/null",
        ],
    )?;
    for p in [h4, h6, s4, s6] {
        wait_listening(p)?;
    }
    let mut n = 0;
    for _ in 0..3 {
        // The server closes first (HTTP/1.0 httpd): it goes to TIME_WAIT.
        for url in [
            format!("http://127.0.0.1:{h4}/f"),
            format!("http://[::1]:{h6}/f"),
        ] {
            let got = sys::run_ok(
                "curl",
                &["-sS", "-o", "/dev/null", "-w", "%{size_download}", &url],
            )?;
            ensure_eq!(got.trim(), BODY.to_string(), "curl {url}");
            n += 1;
        }
        // The client sends a file and closes first; then one that resets (SO_LINGER 0).
        for (dst, linger) in [
            (format!("TCP4:127.0.0.1:{s4}"), ""),
            (format!("TCP6:[::1]:{s6}"), ""),
            (format!("TCP4:127.0.0.1:{s4}"), ",linger=0,shut-none"),
            (format!("TCP6:[::1]:{s6}"), ",linger=0,shut-none"),
        ] {
            sys::run_ok(
                "socat",
                &["-u", "OPEN:/tmp/www/f", &format!("{dst}{linger}")],
            )?;
            n += 1;
        }
    }
    let mut recs = Vec::new();
    wait_summaries(&d, &mut recs, n)?;
    // Time for late packets (a FIN retransmitted, a last ACK) to reach the capture.
    std::thread::sleep(Duration::from_secs(1));
    recs.extend(d.drain()?);
    let pkts = cap.stop()?;
    let flows = flows(&pkts);
    ensure_eq!(flows.len(), n, "connections in the capture");
    let sums = timed_summaries(&recs);
    let closes: Vec<u8> = sums.iter().map(|(_, s)| s.close).collect();
    ensure!(
        closes.contains(&abi::close::FIN),
        "no orderly close among {closes:?}"
    );
    // socat with SO_LINGER 0 resets the connection when its close comes before the peer's FIN,
    // which depends on timing: each close is checked against the capture (`compare`), and
    // resets are tested for sure by `resets`.
    check_flows(&flows, &sums)?;
    // The programs are who the records say.
    for (_, s) in &sums {
        let n = s.comm.iter().position(|&b| b == 0).unwrap_or(16);
        let comm = String::from_utf8_lossy(&s.comm[..n]).into_owned();
        ensure!(
            ["curl", "httpd", "socat"].contains(&comm.as_str()),
            "a summary owned by {comm:?}"
        );
    }
    Ok(())
}

fn curl_connect_latency() -> TestResult {
    www()?;
    let port = free_port()?;
    let d = fresh()?;
    let cap = capture("lat", &format!("tcp port {port}"))?;
    let _httpd = bg(
        "httpd",
        &["-f", "-p", &format!("[::]:{port}"), "-h", "/tmp/www"],
    )?;
    wait_listening(port)?;
    let mut pids = Vec::new();
    for url in [
        format!("http://127.0.0.1:{port}/f"),
        format!("http://[::1]:{port}/f"),
    ] {
        let child = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", &url])
            .spawn()
            .map_err(|e| e.to_string())?;
        pids.push(child.id());
        let st = child.wait_with_output().map_err(|e| e.to_string())?;
        ensure!(st.status.success(), "curl {url}: {}", st.status);
    }
    let mut recs = Vec::new();
    wait_summaries(&d, &mut recs, 2)?;
    let pkts = cap.stop()?;
    let flows = flows(&pkts);
    let evs = events_of(&recs);
    let sums = timed_summaries(&recs);
    for pid in pids {
        let conns: Vec<&(u64, EventBody)> = evs
            .iter()
            .filter(|(_, e)| e.pid == pid && e.op == abi::op::TCP_CONNECT)
            .collect();
        ensure_eq!(
            conns
                .iter()
                .map(|(_, e)| (e.result, e.flags & abi::EVF_ASYNC != 0))
                .collect::<Vec<_>>(),
            vec![(libc::EINPROGRESS, false), (0, true)],
            "curl {pid}'s connects"
        );
        let (t_out, out) = conns[1];
        ensure_eq!(out.sock_id, conns[0].1.sock_id);
        let cl = sums
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.sock_id == out.sock_id && s.open == abi::open::ACTIVE)
            .ok_or("no summary of curl's connection")?;
        let key = (end_of(cl, true), end_of(cl, false));
        let f = flows.get(&key).ok_or(format!(
            "curl's connection {key:?} is not in the capture, which has {:?}; its packets: {:?}",
            flows.keys().collect::<Vec<_>>(),
            pkts.iter()
                .map(|p| format!(
                    "{}:{}>{}:{} [{}] {}",
                    p.src.0,
                    p.src.1,
                    p.dst.0,
                    p.dst.1,
                    flag_names(p.flags),
                    p.ts_ns
                ))
                .collect::<Vec<_>>()
        ))?;
        let wire = f.synack_ns - f.syn_ns;
        // The connect call came before the SYN left, and the outcome after the SYN-ACK came.
        ensure!(
            out.latency_ns >= wire && out.latency_ns < 1_000_000_000,
            "event latency {} ns, SYN to SYN-ACK on the wire {wire} ns",
            out.latency_ns
        );
        ensure!(
            t_out + 1000 >= f.synack_ns,
            "the outcome ({t_out}) before the SYN-ACK ({})",
            f.synack_ns
        );
        ensure!(
            cl.flags & abi::SUMF_LATENCY != 0
                && cl.connect_latency_ns + 1000 >= wire
                && cl.connect_latency_ns <= out.latency_ns,
            "summary connect_latency_ns {} (flags {:#x}); wire {wire}, event {}",
            cl.connect_latency_ns,
            cl.flags,
            out.latency_ns
        );
        // The text and JSON the tool shows for it.
        let json = sys::run_ok(
            sys::TOOL,
            &[
                "dump",
                "--json",
                "--pid",
                &pid.to_string(),
                "--type",
                "event",
            ],
        )?;
        let v: Vec<Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let o = v
            .iter()
            .find(|v| v["op"] == "connect" && v["async"] == true)
            .ok_or("no async connect in dump --json")?;
        ensure_eq!(o["latency_ns"], out.latency_ns);
        ensure_eq!(o["result"], 0);
    }
    check_flows(&flows, &sums)
}

fn tool_json(args: &[&str]) -> Result<Vec<Value>, String> {
    sys::run_ok(sys::TOOL, args)?
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{l}: {e}")))
        .collect()
}

fn interim_and_conns() -> TestResult {
    let d = fresh()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let cap = capture("interim", &format!("tcp port {port}"))?;
    let out = sys::run_ok(sys::TOOL, &["config", "--interim", "2s"])?;
    ensure!(out.contains("interim             2s"), "{out}");
    let res = (|| -> TestResult {
        let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        let cport = c.local_addr().unwrap().port();
        let me = std::process::id();

        // Listed now, both sides, with the owner and live counters; text and JSON.
        let listed = tool_json(&["conns", "--json", "--port", &port.to_string()])?;
        ensure_eq!(listed.len(), 2, "conns --json: {listed:?}");
        for v in &listed {
            ensure_eq!(v["type"], "conn");
            ensure_eq!(v["state"], "established");
            ensure_eq!(v["pid"], me);
            ensure_eq!(v["ppid"], 1, "the suite's parent is init");
            ensure!(v["duration_ns"].as_u64().is_some(), "{v}");
        }
        let text = sys::run_ok(sys::TOOL, &["conns"])?;
        let line = text
            .lines()
            .find(|l| l.contains(&format!("127.0.0.1:{cport} ")))
            .ok_or(format!("not in tcplog conns: {text}"))?;
        ensure!(
            line.starts_with("established") && line.contains("tcplog-vm-test"),
            "{line}"
        );

        // Three intervals, each with its own traffic, sent right after an interim round so
        // that none is in flight when the next round is taken.
        let script = [(1000usize, 2000usize), (3000, 0), (0, 5000)];
        let mut seen: Vec<(u64, InterimBody)> = Vec::new();
        let round = |d: &Dev, seen: &mut Vec<(u64, InterimBody)>, k: usize| -> TestResult {
            let deadline = Instant::now() + Duration::from_secs(8);
            while seen.len() < 2 * k && Instant::now() < deadline {
                let recs = d.drain()?;
                seen.extend(
                    interims(&recs)
                        .into_iter()
                        .filter(|(_, i)| i.summary.lport == port || i.summary.rport == port),
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            ensure!(
                seen.len() >= 2 * k,
                "{} interim records after round {k}",
                seen.len()
            );
            Ok(())
        };
        round(&d, &mut seen, 1)?;
        for (i, (up, down)) in script.iter().enumerate() {
            c.write_all(&vec![b'u'; *up]).map_err(|e| e.to_string())?;
            let mut b = vec![0u8; *up];
            s.read_exact(&mut b).map_err(|e| e.to_string())?;
            s.write_all(&vec![b'd'; *down]).map_err(|e| e.to_string())?;
            let mut b = vec![0u8; *down];
            c.read_exact(&mut b).map_err(|e| e.to_string())?;
            round(&d, &mut seen, i + 2)?;
        }
        let tcplog_says = tool_json(&[
            "dump",
            "--json",
            "--type",
            "interim",
            "--port",
            &port.to_string(),
        ])?;
        drop(c);
        drop(s);
        let mut recs = Vec::new();
        wait_summaries(&d, &mut recs, 1)?;
        std::thread::sleep(Duration::from_millis(500));
        let after = tool_json(&["conns", "--json", "--port", &port.to_string()])?;
        ensure!(after.is_empty(), "closed, yet listed: {after:?}");
        let pkts = cap.stop()?;
        let flows = flows(&pkts);
        ensure_eq!(flows.len(), 1);
        let f = flows.values().next().unwrap();
        // Each record: counters since the start and since the previous record, against the
        // packets the capture has before it.
        let mut bad = Vec::new();
        let mut prev: BTreeMap<bool, (u64, [u64; 6])> = BTreeMap::new();
        let mut per_side = BTreeMap::new();
        for (t, i) in &seen {
            let s = &i.summary;
            let client = s.lport == cport;
            *per_side.entry(client).or_insert(0) += 1;
            let (o, n) = if client { (0, 1) } else { (1, 0) };
            let before: Vec<&Pkt> = f.packets.iter().filter(|p| p.ts_ns < *t).collect();
            let count = |dir: usize, what: fn(&Pkt) -> u64| -> u64 {
                before
                    .iter()
                    .filter(|p| (p.src == f.client.unwrap()) == (dir == 0))
                    .map(|p| what(p))
                    .sum()
            };
            let total = [
                count(o, |p| p.payload),
                count(n, |p| p.payload),
                count(n, |_| 1),
                count(o, |_| 1),
                count(n, |p| p.ip_len),
                count(o, |p| p.ip_len),
            ];
            let got = [
                s.bytes_sent,
                s.bytes_received,
                s.pkts_in,
                s.pkts_out,
                s.ip_bytes_in,
                s.ip_bytes_out,
            ];
            let (since, last) = prev.get(&client).copied().unwrap_or((s.start_ns, [0; 6]));
            let delta = [
                i.delta_bytes_sent,
                i.delta_bytes_received,
                i.delta_pkts_in,
                i.delta_pkts_out,
                i.delta_ip_bytes_in,
                i.delta_ip_bytes_out,
            ];
            let want_delta: Vec<u64> = total.iter().zip(last).map(|(a, b)| a - b).collect();
            let side = if client { "client" } else { "server" };
            if got != total || delta[..] != want_delta[..] || i.state != 1 {
                bad.push(format!(
                    "{side} at {t}: totals {got:?} (sent, received, pkts in, out, ip bytes in, out), tcpdump {total:?}; deltas {delta:?}, tcpdump {want_delta:?}; state {}",
                    i.state
                ));
            }
            if i.since_ns < since || i.since_ns > *t || s.flags & abi::SUMF_IP_COUNTERS == 0 {
                bad.push(format!(
                    "{side} at {t}: since_ns {} (previous {since}), flags {:#x}",
                    i.since_ns, s.flags
                ));
            }
            prev.insert(client, (i.since_ns, total));
        }
        ensure!(
            bad.is_empty(),
            "interim records differ:\n  {}",
            bad.join("\n  ")
        );
        ensure_eq!(
            per_side.values().copied().collect::<Vec<_>>(),
            vec![4, 4],
            "records per side (one round before the traffic and three with it)"
        );
        // The tool decodes them as they are.
        let last_client = seen
            .iter()
            .rev()
            .find(|(_, i)| i.summary.lport == cport)
            .unwrap();
        let v = tcplog_says
            .iter()
            .rev()
            .find(|v| v["lport"] == cport)
            .ok_or("no interim record in dump --json")?;
        ensure_eq!(v["type"], "interim");
        ensure_eq!(v["state"], "established");
        ensure_eq!(v["bytes_sent"], last_client.1.summary.bytes_sent);
        ensure_eq!(
            v["delta_bytes_received"],
            last_client.1.delta_bytes_received
        );
        ensure_eq!(v["delta_pkts_in"], last_client.1.delta_pkts_in);
        check_flows(&flows, &timed_summaries(&recs))
    })();
    sys::run_ok(sys::TOOL, &["config", "--interim", "0"])?;
    res
}

const CG_ROOT: &str = "/sys/fs/cgroup";
const CONTAINER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn cgroup2_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(CG_ROOT) && l.split(' ').nth(2) == Some("cgroup2"))
}

/// Runs the TCP client helper inside cgroup `dir`; returns its pid.
fn client_in(dir: Option<&str>, addr: &str) -> Result<u32, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy();
    let script = match dir {
        Some(d) => format!("echo $$ > {d}/cgroup.procs && exec {me} --tcp-client {addr} 100 200"),
        None => format!("exec {me} --tcp-client {addr} 100 200"),
    };
    let child = Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure!(out.status.success(), "client: {}", out.status);
    Ok(pid)
}

fn cgroups() -> TestResult {
    let mounted_here = !cgroup2_mounted();
    if mounted_here {
        sys::run_ok("mount", &["-t", "cgroup2", "none", CG_ROOT])?;
    }
    let rel = format!("/system.slice/docker-{CONTAINER}.scope");
    let dir = format!("{CG_ROOT}{rel}");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let res = (|| -> TestResult {
        let id = std::fs::metadata(&dir).map_err(|e| e.to_string())?.ino();
        let root_id = std::fs::metadata(CG_ROOT).map_err(|e| e.to_string())?.ino();
        let me = std::process::id();

        // Unfiltered: the process in the child cgroup has its id, the server the root's.
        let d = fresh()?;
        let srv = crate::peer::server(&[], "127.0.0.1:0", 100, 200)?;
        let addr = format!("127.0.0.1:{}", srv.port);
        let inside = client_in(Some(&dir), &addr)?;
        let server = srv.finish()?;
        let recs = collect(&d, |r| summaries(r).len() >= 2)?;
        let evs = events_of(&recs);
        let mine: Vec<&EventBody> = evs
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.pid == inside)
            .collect();
        ensure!(mine.len() >= 3, "{} events of the client", mine.len());
        for e in &mine {
            ensure_eq!((e.cgroup_id, e.ppid), (id, me), "event op {}", e.op);
        }
        for (_, e) in evs.iter().filter(|(_, e)| e.pid == server) {
            ensure_eq!(e.cgroup_id, root_id, "server event op {}", e.op);
        }
        let sums = summaries(&recs);
        let cl = sums
            .iter()
            .find(|s| s.pid == inside)
            .ok_or("no client summary")?;
        ensure_eq!((cl.cgroup_id, cl.ppid), (id, me));
        let sv = sums
            .iter()
            .find(|s| s.pid == server)
            .ok_or("no server summary")?;
        ensure_eq!(sv.cgroup_id, root_id);

        // The tool shows the path and the container; --cgroup selects by path.
        let v = tool_json(&["dump", "--json", "--cgroup", &rel])?;
        ensure!(!v.is_empty(), "dump --cgroup {rel} selected nothing");
        for r in &v {
            ensure_eq!(r["pid"], inside, "{r}");
            ensure_eq!(r["cgroup_id"], id);
            ensure_eq!(r["cgroup"], rel.as_str());
            ensure_eq!(r["container"], CONTAINER);
            ensure_eq!(r["container_runtime"], "docker");
        }
        let text = sys::run_ok(sys::TOOL, &["dump", "--cgroup", &dir, "--type", "summary"])?;
        ensure!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.ends_with(" docker:0123456789ab")),
            "{text}"
        );

        // The kernel filter: only the process in that cgroup is logged.
        let d = fresh()?;
        let out = sys::run_ok(sys::TOOL, &["filter", "set", "--cgroup", &rel])?;
        ensure_eq!(out.trim(), format!("--cgroup {rel}"));
        let srv = crate::peer::server(&[], "127.0.0.1:0", 100, 200)?;
        let addr = format!("127.0.0.1:{}", srv.port);
        let outside = client_in(None, &addr)?;
        srv.finish()?;
        let srv = crate::peer::server(&[], "127.0.0.1:0", 100, 200)?;
        let addr = format!("127.0.0.1:{}", srv.port);
        let inside = client_in(Some(&dir), &addr)?;
        srv.finish()?;
        let recs = collect(&d, |r| !summaries(r).is_empty())?;
        std::thread::sleep(Duration::from_millis(300));
        let mut recs = recs;
        recs.extend(d.drain()?);
        sys::run_ok(sys::TOOL, &["filter", "clear"])?;
        let evs = events_of(&recs);
        ensure!(!evs.is_empty(), "no events passed");
        for (_, e) in &evs {
            ensure_eq!(
                e.pid,
                inside,
                "op {} of pid {} passed (outside: {outside})",
                e.op,
                e.pid
            );
        }
        let sums = summaries(&recs);
        ensure_eq!(sums.len(), 1, "only the client's summary: {sums:?}");
        ensure_eq!(sums[0].pid, inside);
        Ok(())
    })();
    let _ = sys::run(sys::TOOL, &["filter", "clear"]);
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(format!("{CG_ROOT}/system.slice"));
    if mounted_here {
        let _ = sys::run("umount", &[CG_ROOT]);
    }
    res
}

/// Starts the MPTCP server helper; returns it and its port.
fn mptcp_server(bind: &str, recv: usize, send: usize) -> Result<(Child, u16), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(me)
        .args(["--mptcp-server", bind, &recv.to_string(), &send.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or(format!("mptcp server said {line:?}"))?;
    Ok((child, port))
}

fn mptcp() -> TestResult {
    let mut bad = Vec::new();
    for (bind, host) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "[::1]")] {
        let d = fresh()?;
        let (mut srv, port) = mptcp_server(bind, BODY, BODY)?;
        let cap = capture("mptcp", &format!("tcp port {port}"))?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let cl = Command::new(me)
            .args([
                "--mptcp-client",
                &format!("{host}:{port}"),
                &BODY.to_string(),
                &BODY.to_string(),
            ])
            .spawn()
            .map_err(|e| e.to_string())?;
        let cpid = cl.id();
        let st = cl.wait_with_output().map_err(|e| e.to_string())?;
        ensure!(st.status.success(), "mptcp client: {}", st.status);
        let spid = srv.id();
        ensure!(
            srv.wait().map_err(|e| e.to_string())?.success(),
            "mptcp server failed"
        );
        // Two MPTCP summaries (the worker writes them) and two subflow summaries.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut recs = Vec::new();
        while Instant::now() < deadline {
            recs.extend(d.drain()?);
            if timed_summaries(&recs).len() >= 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        recs.extend(d.drain()?);
        let pkts = cap.stop()?;
        let sums = timed_summaries(&recs);
        let evs = events_of(&recs);
        for (pid, op) in [
            (cpid, abi::op::TCP_CONNECT),
            (spid, abi::op::TCP_LISTEN),
            (spid, abi::op::TCP_ACCEPT),
        ] {
            let e = evs
                .iter()
                .map(|(_, e)| e)
                .find(|e| e.pid == pid && e.op == op)
                .ok_or(format!("{host}: no op {op} event of pid {pid}"))?;
            ensure!(
                e.flags & abi::EVF_MPTCP != 0 && e.protocol == abi::IPPROTO_TCP,
                "{host}: op {op} flags {:#x} protocol {}",
                e.flags,
                e.protocol
            );
        }
        let m: Vec<&SummaryBody> = sums
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.flags & abi::SUMF_MPTCP != 0)
            .collect();
        ensure_eq!(m.len(), 2, "{host}: MPTCP summaries: {sums:?}");
        for s in &m {
            let who = if s.pid == cpid { "client" } else { "server" };
            if (s.bytes_sent, s.bytes_received) != (BODY as u64, BODY as u64) {
                bad.push(format!(
                    "{host} MPTCP {who}: bytes_sent {}, bytes_received {}, want {BODY} each",
                    s.bytes_sent, s.bytes_received
                ));
            }
            let subs: Vec<&SummaryBody> = sums
                .iter()
                .map(|(_, x)| x)
                .filter(|x| x.parent_id == s.sock_id)
                .collect();
            if subs.len() != 1 {
                bad.push(format!(
                    "{host} MPTCP {who}: {} subflows point to it",
                    subs.len()
                ));
                continue;
            }
            let sub = subs[0];
            if (sub.bytes_sent, sub.bytes_received) != (BODY as u64, BODY as u64)
                || sub.flags & abi::SUMF_MPTCP != 0
            {
                bad.push(format!(
                    "{host} subflow of the {who}: bytes {}/{}, flags {:#x}",
                    sub.bytes_sent, sub.bytes_received, sub.flags
                ));
            }
            if (sub.lport, sub.rport) != (s.lport, s.rport) {
                bad.push(format!(
                    "{host} subflow of the {who}: ports {}/{} against {}/{}",
                    sub.lport, sub.rport, s.lport, s.rport
                ));
            }
        }
        // The subflows' counters against the capture.
        let subs: Vec<(u64, SummaryBody)> = sums
            .iter()
            .filter(|(_, s)| s.parent_id != 0)
            .cloned()
            .collect();
        if let Err(e) = check_flows(&flows(&pkts), &subs) {
            bad.push(format!("{host}: {e}"));
        }
        // The tool says mptcp.
        let v = tool_json(&[
            "dump",
            "--json",
            "--proto",
            "mptcp",
            "--pid",
            &cpid.to_string(),
        ])?;
        ensure!(
            v.iter()
                .any(|r| r["type"] == "summary" && r["proto"] == "mptcp")
                && v.iter().all(|r| r["proto"] == "mptcp"),
            "{host}: dump --proto mptcp: {v:?}"
        );
    }
    // A real MPTCP client: curl --mptcp, against busybox httpd, which speaks TCP: the connection
    // falls back to TCP, and is still an MPTCP socket with an MPTCP summary of curl's.
    www()?;
    let port = free_port()?;
    let d = fresh()?;
    let cap = capture("curl-mptcp", &format!("tcp port {port}"))?;
    let _httpd = bg(
        "httpd",
        &["-f", "-p", &format!("127.0.0.1:{port}"), "-h", "/tmp/www"],
    )?;
    wait_listening(port)?;
    let child = Command::new("curl")
        .args([
            "-sS",
            "--mptcp",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/f"),
        ])
        .spawn()
        .map_err(|e| e.to_string())?;
    let curl = child.id();
    let st = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure!(st.status.success(), "curl --mptcp: {}", st.status);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recs = Vec::new();
    while Instant::now() < deadline {
        recs.extend(d.drain()?);
        if timed_summaries(&recs)
            .iter()
            .any(|(_, s)| s.flags & abi::SUMF_MPTCP != 0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    recs.extend(d.drain()?);
    let flows = flows(&cap.stop()?);
    ensure_eq!(flows.len(), 1, "curl --mptcp's connections");
    let f = flows.values().next().unwrap();
    let evs = events_of(&recs);
    let conn: Vec<&EventBody> = evs
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.pid == curl && e.op == abi::op::TCP_CONNECT)
        .collect();
    ensure!(
        !conn.is_empty() && conn.iter().all(|e| e.flags & abi::EVF_MPTCP != 0),
        "curl --mptcp's connect events: {conn:?}"
    );
    let sums = timed_summaries(&recs);
    let m = sums
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.flags & abi::SUMF_MPTCP != 0 && s.pid == curl)
        .ok_or(format!("no MPTCP summary of curl among {sums:?}"))?;
    if (m.bytes_sent, m.bytes_received) != (f.data[0], f.data[1]) {
        bad.push(format!(
            "curl --mptcp (fallback to TCP): MPTCP summary bytes {}/{}, tcpdump {}/{}",
            m.bytes_sent, m.bytes_received, f.data[0], f.data[1]
        ));
    }
    ensure!(bad.is_empty(), "MPTCP:\n  {}", bad.join("\n  "));
    Ok(())
}

/// The client closes (its socket orphaned: FIN_WAIT1, then FIN_WAIT2 once its FIN is acked,
/// where the kernel retires it); the server reads to the end and closes 300 ms later. The
/// client's summary says fin_wait2 and lacks exactly the server's FIN and its own last ACK; the
/// server's holds every packet.
fn late_peer_fin() -> TestResult {
    let mut out = Vec::new();
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let d = fresh()?;
        let l = TcpListener::bind(bind).map_err(|e| e.to_string())?;
        let addr = l.local_addr().unwrap();
        let cap = capture("late", &format!("tcp port {}", addr.port()))?;
        let server = std::thread::spawn(move || -> Result<(), String> {
            let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
            let mut all = Vec::new();
            s.read_to_end(&mut all).map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        c.write_all(&[b'x'; 1000]).map_err(|e| e.to_string())?;
        drop(c);
        server.join().map_err(|_| "server panicked")??;
        let mut recs = Vec::new();
        wait_summaries(&d, &mut recs, 1)?;
        std::thread::sleep(Duration::from_millis(300));
        recs.extend(d.drain()?);
        let flows = flows(&cap.stop()?);
        ensure_eq!(flows.len(), 1);
        let sums = timed_summaries(&recs);
        let flagged: Vec<(u8, bool)> = sums
            .iter()
            .map(|(_, s)| (s.open, s.flags & abi::SUMF_FIN_WAIT2 != 0))
            .collect();
        if !flagged.contains(&(abi::open::ACTIVE, true))
            || !flagged.contains(&(abi::open::PASSIVE, false))
        {
            out.push(format!(
                "{bind}: (open, fin_wait2) of the summaries: {flagged:?}"
            ));
        }
        if let Err(e) = check_flows(&flows, &sums) {
            out.push(format!("{bind}: {e}"));
        }
    }
    ensure!(out.is_empty(), "{}", out.join("\n"));
    Ok(())
}

/// The client sends 1000 bytes and closes with SO_LINGER 0 while the server still has the
/// connection open: a reset.
fn resets() -> TestResult {
    let mut out = Vec::new();
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let d = fresh()?;
        let l = TcpListener::bind(bind).map_err(|e| e.to_string())?;
        let addr = l.local_addr().unwrap();
        let cap = capture("rst", &format!("tcp port {}", addr.port()))?;
        let c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        (&c).write_all(&[b'x'; 1000]).map_err(|e| e.to_string())?;
        let mut b = [0u8; 1000];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a linger struct of the right size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&c),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&lg as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        ensure_eq!(rc, 0, "SO_LINGER");
        drop(c);
        let mut rest = Vec::new();
        let e = s.read_to_end(&mut rest).unwrap_err();
        ensure_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
        drop(s);
        let mut recs = Vec::new();
        wait_summaries(&d, &mut recs, 1)?;
        let flows = flows(&cap.stop()?);
        ensure_eq!(flows.len(), 1);
        let sums = timed_summaries(&recs);
        let closes: Vec<(u8, u8)> = sums.iter().map(|(_, s)| (s.open, s.close)).collect();
        if !(closes.contains(&(abi::open::ACTIVE, abi::close::RST_SENT))
            && closes.contains(&(abi::open::PASSIVE, abi::close::RST_RECEIVED)))
        {
            out.push(format!(
                "{bind}: (open, close) of the summaries: {closes:?}"
            ));
        }
        if let Err(e) = check_flows(&flows, &sums) {
            out.push(format!("{bind}: {e}"));
        }
    }
    ensure!(out.is_empty(), "{}", out.join("\n"));
    Ok(())
}

fn io_uring() -> TestResult {
    let d = fresh()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().unwrap();
    let (ss, len) = sockaddr(&addr);
    // SAFETY: A plain socket call.
    let cfd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    ensure!(cfd >= 0, "socket");
    // SAFETY: `cfd` is a stream socket we own, handed over to the stream.
    let mut c = unsafe { TcpStream::from_raw_fd(cfd) };
    let lfd = std::os::fd::AsRawFd::as_raw_fd(&l);
    let mut ring = uring::Ring::new(8)?;
    ring.push(uring::Sqe {
        opcode: uring::OP_ACCEPT,
        fd: lfd,
        user_data: 1,
        ..uring::Sqe::default()
    })?;
    ring.push(uring::Sqe {
        opcode: uring::OP_CONNECT,
        fd: cfd,
        addr: &ss as *const libc::sockaddr_storage as u64,
        off: u64::from(len),
        user_data: 2,
        ..uring::Sqe::default()
    })?;
    let done = ring.submit_and_wait(2, 2)?;
    let res = |u: u64| done.iter().find(|c| c.user_data == u).map(|c| c.res);
    ensure_eq!(res(2), Some(0), "io_uring connect: {done:?}");
    let afd = res(1).ok_or(format!("no accept completion: {done:?}"))?;
    ensure!(afd >= 0, "io_uring accept: {afd}");
    // SAFETY: The accepted descriptor is ours now.
    let mut s = unsafe { TcpStream::from_raw_fd(afd) };
    c.write_all(&[b'u'; 1000]).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1000];
    s.read_exact(&mut b).map_err(|e| e.to_string())?;
    s.write_all(&[b'd'; 2000]).map_err(|e| e.to_string())?;
    let mut b = [0u8; 2000];
    c.read_exact(&mut b).map_err(|e| e.to_string())?;
    let cport = c.local_addr().unwrap().port();
    drop(c);
    drop(s);
    let recs = collect(&d, |r| summaries(r).len() >= 2)?;
    let me = std::process::id();
    let evs: Vec<EventBody> = events_of(&recs).into_iter().map(|(_, e)| e).collect();
    let conns: Vec<(i32, bool)> = evs
        .iter()
        .filter(|e| e.op == abi::op::TCP_CONNECT && e.lport == cport)
        .map(|e| (e.result, e.flags & abi::EVF_ASYNC != 0))
        .collect();
    // io_uring tries the connect without blocking, then again when the socket is writable
    // (EISCONN, which says it succeeded): the first and the outcome are logged, not the retry.
    ensure_eq!(
        conns,
        vec![(libc::EINPROGRESS, false), (0, true)],
        "io_uring's connect events"
    );
    let outcome = evs
        .iter()
        .find(|e| e.op == abi::op::TCP_CONNECT && e.lport == cport && e.result == 0)
        .unwrap();
    ensure!(
        outcome.latency_ns > 0 && outcome.latency_ns < 1_000_000_000,
        "latency {}",
        outcome.latency_ns
    );
    let acc = evs
        .iter()
        .find(|e| e.op == abi::op::TCP_ACCEPT && e.rport == cport)
        .ok_or("no accept event")?;
    ensure_eq!(acc.pid, me, "the accept is the process's (its ring's)");
    let sums = summaries(&recs);
    let cl = sums
        .iter()
        .find(|s| s.lport == cport)
        .ok_or("no client summary")?;
    let sv = sums
        .iter()
        .find(|s| s.rport == cport)
        .ok_or("no server summary")?;
    ensure_eq!((cl.bytes_sent, cl.bytes_received), (1000, 2000));
    ensure_eq!((sv.bytes_sent, sv.bytes_received), (2000, 1000));
    ensure_eq!((cl.open, sv.open), (abi::open::ACTIVE, abi::open::PASSIVE));
    ensure!(
        cl.flags & abi::SUMF_LATENCY != 0,
        "client summary flags {:#x}",
        cl.flags
    );
    Ok(())
}

/// The socket cookies `ss -tne` shows for TCP sockets with local port `port`, by remote port.
fn ss_cookies_of(port: u16) -> Result<BTreeMap<u16, u64>, String> {
    let out = sys::run_ok("ss", &["-tne", "state", "established"])?;
    let port_of = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let mut by_peer = BTreeMap::new();
    // "0 0 127.0.0.1:PORT 127.0.0.1:PEER uid:0 ino:123 sk:1f cgroup:/ <->" (no state column
    // when one state is asked for).
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(local), Some(peer)) = (f.get(2), f.get(3)) else {
            continue;
        };
        if port_of(local) != Some(port) {
            continue;
        }
        let sk = f
            .iter()
            .find_map(|w| w.strip_prefix("sk:"))
            .ok_or(format!("no sk: in {l:?}"))?;
        let cookie = u64::from_str_radix(sk, 16).map_err(|e| format!("{l:?}: {e}"))?;
        by_peer.insert(port_of(peer).ok_or(format!("{l:?}"))?, cookie);
    }
    Ok(by_peer)
}

fn ss_cookies() -> TestResult {
    // ss asks sock_diag, whose TCP part is a module in Debian's kernel.
    sys::run_ok("modprobe", &["tcp_diag"])?;
    let d = fresh()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (s, _) = l.accept().map_err(|e| e.to_string())?;
    let cport = c.local_addr().unwrap().port();
    let client = ss_cookies_of(cport)?;
    let server = ss_cookies_of(port)?;
    let (Some(&ck), Some(&sk)) = (client.get(&port), server.get(&cport)) else {
        return Err(format!(
            "ss -tne lists client {client:?}, server {server:?}"
        ));
    };
    ensure!(ck != sk, "one cookie for two sockets: {ck:#x}");
    drop(c);
    drop(s);
    let mut recs = Vec::new();
    wait_summaries(&d, &mut recs, 1)?;
    let evs = events_of(&recs);
    let id_of = |op: u16, lport: u16| {
        evs.iter()
            .find(|(_, e)| e.op == op && e.lport == lport)
            .map(|(_, e)| e.sock_id)
    };
    ensure_eq!(
        id_of(abi::op::TCP_CONNECT, cport),
        Some(ck),
        "the connect's socket id"
    );
    ensure_eq!(
        id_of(abi::op::TCP_ACCEPT, port),
        Some(sk),
        "the accept's socket id"
    );
    ensure_eq!(
        id_of(abi::op::TCP_CLOSE, cport),
        Some(ck),
        "the client's close"
    );
    ensure_eq!(
        id_of(abi::op::TCP_CLOSE, port),
        Some(sk),
        "the server's close"
    );
    let sums = timed_summaries(&recs);
    let sum_of = |lport: u16, rport: u16| {
        sums.iter()
            .find(|(_, s)| s.lport == lport && s.rport == rport)
            .map(|(_, s)| s.sock_id)
    };
    ensure_eq!(sum_of(cport, port), Some(ck), "the client's summary");
    ensure_eq!(sum_of(port, cport), Some(sk), "the server's summary");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: (IpAddr, u16) = (IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 36800);
    const S: (IpAddr, u16) = (IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 38923);

    /// A packet: (from client, flags, seq, ack, stamped, payload).
    type P = (bool, u8, u32, u32, bool, u64);

    /// The handshake every case starts with (packets 0 to 2): ISNs 100 and 500, stamped.
    const OPEN: [P; 3] = [
        (true, SYN, 100, 0, true, 0),
        (false, SYN | ACK, 500, 101, true, 0),
        (true, ACK, 101, 501, true, 0),
    ];

    /// Then (packets 3 to 5) 10 bytes from the client, acknowledged, and the client's FIN.
    const SENT_AND_FIN: [P; 3] = [
        (true, ACK | 0x08, 101, 501, true, 10),
        (false, ACK, 501, 111, true, 0),
        (true, FIN | ACK, 111, 501, true, 0),
    ];

    /// A flow of the packets of `parts`, in capture order.
    /// A summary that closed so, with IP counters: data bytes (sent, received), then (packets,
    /// IP bytes) out and in.
    fn with_counters(close: u8, data: (u64, u64), out: (u64, u64), inn: (u64, u64)) -> SummaryBody {
        SummaryBody {
            flags: abi::SUMF_IP_COUNTERS,
            close,
            bytes_sent: data.0,
            bytes_received: data.1,
            pkts_out: out.0,
            ip_bytes_out: out.1,
            pkts_in: inn.0,
            ip_bytes_in: inn.1,
            ..SummaryBody::default()
        }
    }

    fn flow(parts: &[&[P]]) -> Flow {
        let v: Vec<Pkt> = parts
            .concat()
            .iter()
            .enumerate()
            .map(|(i, &(c, flags, seq, ack, ts_opt, payload))| Pkt {
                ts_ns: i as u64,
                src: if c { C } else { S },
                dst: if c { S } else { C },
                flags,
                seq,
                ack,
                ts_opt,
                ip_len: 52 + payload,
                payload,
            })
            .collect();
        flows(&v).into_values().next().unwrap()
    }

    #[test]
    fn a_fin_crossing_the_reset_and_its_reply_from_no_socket_are_not_the_resetters() {
        // Seen in CI: the server's FIN crossed the client's reset; the reply to it from no
        // socket was delivered before the reset itself.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, FIN | ACK, 501, 112, true, 0),
                (true, RST, 112, 0, false, 0),
                (true, RST | ACK, 112, 501, true, 0),
            ],
        ]);
        let e = f.ending();
        assert!(e.stamped);
        assert_eq!(e.reset, Some(8));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![7],
                either: vec![6]
            }
        );
    }

    #[test]
    fn each_reply_from_no_socket_answers_one_segment() {
        // Seen in CI: the client's socket was unhashed before the server's ACK of its FIN and
        // the server's FIN came; both got replies from no socket before the socket's reset.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (true, RST, 112, 0, false, 0),
                (true, RST, 112, 0, false, 0),
                (true, RST | ACK, 112, 501, true, 0),
            ],
        ]);
        let e = f.ending();
        assert_eq!(e.reset, Some(10));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![8, 9],
                either: vec![6, 7]
            }
        );
    }

    #[test]
    fn a_reply_answers_the_crossing_fin_not_the_ack_before_the_reset() {
        // Seen in CI: the server acknowledged the client's FIN long before the client's reset;
        // its FIN crossed the reset and got the reply from no socket. The ACK is the client's:
        // the FIN, captured after the reset, is the segment the reply answers.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (true, RST | ACK, 112, 501, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (true, RST, 112, 0, false, 0),
            ],
        ]);
        let e = f.ending();
        assert_eq!(e.reset, Some(7));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![8, 9],
                either: vec![]
            }
        );
    }

    #[test]
    fn the_reset_side_takes_nothing_after_the_first_reset_it_got() {
        // Seen on the debug lane: the server's ACK of the client's FIN crossed the client's
        // reset and was answered from no socket; that reply reached the server's socket after
        // the reset had closed it.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (true, RST | ACK, 112, 501, true, 0),
                (false, ACK, 501, 112, true, 0),
                (true, RST, 112, 0, false, 0),
            ],
        ]);
        let e = f.ending();
        assert_eq!(e.reset, Some(6));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![7, 8],
                either: vec![]
            }
        );
        assert_eq!(f.after_received_reset(S), vec![8]);
        // The other order: the reply arrives first and closes the server; the socket's own
        // reset comes to no socket.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (true, RST, 112, 0, false, 0),
                (true, RST | ACK, 112, 501, true, 0),
            ],
        ]);
        assert_eq!(f.after_received_reset(S), vec![8]);
        assert_eq!(f.after_received_reset(C), Vec::<usize>::new());
    }

    #[test]
    fn a_reset_close_behind_the_first_may_be_counted_or_not_but_exactly() {
        // Seen on the stock lane: the client's reset crossed the server's FIN, whose reply from
        // no socket came right behind it; the server counted both.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (true, RST | ACK, 112, 502, true, 0),
                (true, RST, 112, 0, false, 0),
            ],
        ]);
        assert_eq!(f.after_received_reset(S), vec![9]);
        let server = |pkts_in, ip_bytes_in| {
            with_counters(
                abi::close::RST_RECEIVED,
                (0, 10),
                (4, 4 * 52),
                (pkts_in, ip_bytes_in),
            )
        };
        // Before the reply the client sent 5 packets: its data (62 bytes), 4 of 52 bytes with
        // its reset among them. The reply (52) is counted or not; nothing else is allowed.
        let before = 4 * 52 + 62;
        assert_eq!(
            compare(&f, "server", 0, &server(5, before), false),
            Vec::<String>::new()
        );
        assert_eq!(
            compare(&f, "server", 0, &server(6, before + 52), false),
            Vec::<String>::new()
        );
        assert_eq!(
            compare(&f, "server", 0, &server(4, before - 52), false).len(),
            3
        );
        assert_eq!(
            compare(&f, "server", 0, &server(6, before + 40), false).len(),
            3
        );
    }

    #[test]
    fn a_segment_answered_from_no_socket_may_have_been_counted() {
        // Seen on the stock lane: the server's FIN passed the client's LOCAL_IN just before
        // its socket reached CLOSE, then found it unhashed and got a reply from no socket; the
        // client counted it.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, FIN | ACK, 501, 112, true, 0),
                (true, RST | ACK, 112, 502, true, 0),
                (true, RST, 112, 0, false, 0),
            ],
        ]);
        let e = f.ending();
        assert_eq!(e.reset, Some(7));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![8],
                either: vec![6]
            }
        );
        let client = |pkts_in, ip_bytes_in| {
            with_counters(
                abi::close::RST_SENT,
                (10, 0),
                (5, 4 * 52 + 62),
                (pkts_in, ip_bytes_in),
            )
        };
        // The server's SYN-ACK and ACK; its FIN (52) may be counted.
        for (n, b) in [(2, 104), (3, 156)] {
            assert_eq!(
                compare(&f, "client", 0, &client(n, b), true),
                Vec::<String>::new()
            );
        }
        assert_eq!(compare(&f, "client", 0, &client(4, 208), true).len(), 3);
    }

    #[test]
    fn after_fin_wait2_the_peers_acks_before_its_fin_may_be_counted_or_not() {
        // Seen on the debug lane: an MPTCP subflow retired in FIN_WAIT2; the server's data ACK
        // that came between its ACK of the client's FIN and its own FIN was not counted.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (false, ACK, 501, 112, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (true, ACK, 112, 502, true, 0),
            ],
        ]);
        assert_eq!(
            f.after_fin_wait2(C),
            Tail {
                left_out: vec![8, 9],
                either: vec![7]
            }
        );
    }

    #[test]
    fn a_fin_sent_again_after_the_summary_and_its_ack_are_the_remnants() {
        // Seen on the unstable lane: the client's ACK of the server's FIN never went out; the
        // FIN came again after the client's summary (written at time 7), the remnant's ACK too.
        let f = flow(&[
            &OPEN,
            &SENT_AND_FIN,
            &[
                (false, ACK, 501, 112, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (false, FIN | ACK, 501, 112, true, 0),
                (true, ACK, 112, 502, true, 0),
            ],
        ]);
        assert_eq!(f.after_timewait(C, 7), vec![8, 9]);
        // Before the summary, the same packets are the connection's; a FIN sent once is.
        assert!(f.after_timewait(C, 8).is_empty());
        assert!(flow(&[&OPEN, &SENT_AND_FIN])
            .after_timewait(C, 0)
            .is_empty());
        let client = with_counters(abi::close::FIN, (10, 0), (4, 4 * 52 + 10), (4, 4 * 52));
        assert_eq!(
            compare(&f, "client", 7, &client, true),
            Vec::<String>::new()
        );
        assert!(!compare(&f, "client", 8, &client, true).is_empty());
    }

    #[test]
    fn resets_after_the_orderly_close_do_not_end_it() {
        // Seen in CI: a stray ACK after both FINs, answered by the closed server from no socket.
        let f = flow(&[
            &OPEN,
            &[
                (true, FIN | ACK, 101, 501, true, 0),
                (false, FIN | ACK, 501, 102, true, 0),
                (true, ACK, 102, 502, true, 0),
                (false, ACK, 502, 102, true, 0),
                (true, ACK, 102, 502, true, 0),
                (false, RST, 502, 0, false, 0),
            ],
        ]);
        assert_eq!(f.orderly_close(), Some(5));
        assert_eq!(f.ending().reset, None);
    }

    #[test]
    fn a_reset_before_any_fin_ends_the_connection_and_what_follows_is_not_the_resetters() {
        let f = flow(&[
            &OPEN,
            &[
                (true, RST | ACK, 101, 501, true, 0),
                (false, FIN | ACK, 501, 101, true, 0),
            ],
        ]);
        let e = f.ending();
        assert_eq!(e.reset, Some(3));
        assert_eq!(
            f.after_reset(C, &e),
            Tail {
                left_out: vec![4],
                either: vec![]
            }
        );
        assert_eq!(f.after_reset(S, &e), Tail::default());
    }

    #[test]
    fn timestamp_options_are_found_among_others() {
        assert!(has_timestamp(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]));
        assert!(has_timestamp(&[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!has_timestamp(&[2, 4, 5, 180, 1, 1, 4, 2]));
        assert!(!has_timestamp(&[0, 8, 10]));
        assert!(!has_timestamp(&[3, 0, 8]));
    }
}
