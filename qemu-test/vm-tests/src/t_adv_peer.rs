//! A hostile peer in another network namespace, with raw sockets, against a legitimate
//! long-lived TCP connection over a veth pair (hpa: client and attacker, 10.95.0.1 and fd95::1;
//! hpb: server, 10.95.0.2 and fd95::2).
//!
//! The oracle is tcpdump on each end of the veth pair, counting the packets of exactly the
//! connection's 4-tuple each way and their IP lengths. Spoofed SYNs that carry the tuple are
//! packets of the connection on the wire, so they count in the server's capture and summary
//! alike; on the client's side (where they leave by AF_PACKET, under the client's stack, marked
//! with TTL 33) the capture leaves them out, as the client's stack never saw them.
//!
//! Malformed packets are counted per packet: each is sent on its own, and the status counters'
//! growth compared with where the hook sees it and what it is. What reaches the hook follows the
//! kernel: IPv4 and IPv6 headers that `ip_rcv`/`ipv6_rcv` refuse (version, header length, lengths
//! past the end, a bad checksum, a Hop-by-Hop header past the end) never reach LOCAL_IN; a local
//! raw IPv4 socket may not send a header length below 5 or past the end (EINVAL) and has its
//! total length rewritten, so only a wrong version reaches LOCAL_OUT malformed; a local raw
//! IPv6 socket sends anything. Where the expected semantics leave room (TCP data offset below 5,
//! a UDP length field past the end, an unknown next header), either "no transport" or nothing
//! is accepted, and the test says which it saw.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, SummaryBody};

use crate::adv_kit::{self as adv, note, Rng};
use crate::craft::{self, ext_frag, ext_opts, Capture, Ip4, Ip6, Raw, Tcp};
use crate::dev::Dev;
use crate::fixtures::{self, collect, fresh, summaries};
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::{ensure, ensure_eq};

const NS_A: &str = "hpa";
const NS_B: &str = "hpb";
const MAC_A: [u8; 6] = [2, 0, 0, 0, 9, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 9, 2];
const A4: [u8; 4] = [10, 95, 0, 1];
const B4: [u8; 4] = [10, 95, 0, 2];
/// On hpb's subnet but not hpb's: what hpa sends there is seen only as it leaves hpa.
const X4: [u8; 4] = [10, 95, 0, 99];
const A6: [u8; 16] = [0xfd, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const X6: [u8; 16] = [0xfd, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
/// The TTL that marks spoofed packets, so that the client's capture can leave them out.
const SPOOF_TTL: u8 = 33;
const SYN: u8 = abi::tcp_flag::SYN;
const RST: u8 = abi::tcp_flag::RST;

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    adv::run(
        h,
        "adv peer: spoofed SYNs, a SYN scan, an RST storm and malformed packets: the live connection's summary equals the capture",
        live_connection,
    );
    adv::run(
        h,
        "adv peer: malformed and truncated packets, from the wire and from local raw sockets, are counted exactly",
        malformed_counted,
    );
    adv::run(
        h,
        "adv peer: right after a SYN scan and an RST storm fill the flow table, a new connection's counters are exact",
        after_the_storm,
    );
    fixtures::rules(&[]).ok();
}

/// The two namespaces and their veth pair, quiet: fixed MAC addresses, permanent neighbours, no
/// link-local addresses (so no neighbour discovery or MLD), no DAD.
fn setup() -> Result<(), String> {
    if std::path::Path::new("/run/netns/hpb").exists() {
        return Ok(());
    }
    sys::run_ok("modprobe", &["veth"])?;
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let (ma, mb) = (mac(MAC_A), mac(MAC_B));
    let cmds = [
        "netns add hpa".to_owned(),
        "netns add hpb".to_owned(),
        format!("link add ha address {ma} netns hpa type veth peer name hb address {mb} netns hpb"),
        "-n hpa link set ha addrgenmode none".to_owned(),
        "-n hpb link set hb addrgenmode none".to_owned(),
        "-n hpa addr add 10.95.0.1/24 dev ha".to_owned(),
        "-n hpb addr add 10.95.0.2/24 dev hb".to_owned(),
        "-n hpa addr add fd95::1/64 dev ha nodad".to_owned(),
        "-n hpb addr add fd95::2/64 dev hb nodad".to_owned(),
        format!("-n hpa neigh add 10.95.0.2 lladdr {mb} dev ha nud permanent"),
        format!("-n hpa neigh add 10.95.0.99 lladdr {mb} dev ha nud permanent"),
        format!("-n hpa neigh add fd95::2 lladdr {mb} dev ha nud permanent"),
        format!("-n hpa neigh add fd95::99 lladdr {mb} dev ha nud permanent"),
        format!("-n hpb neigh add 10.95.0.1 lladdr {ma} dev hb nud permanent"),
        format!("-n hpb neigh add fd95::1 lladdr {ma} dev hb nud permanent"),
        "-n hpa link set lo up".to_owned(),
        "-n hpb link set lo up".to_owned(),
        "-n hpa link set ha up".to_owned(),
        "-n hpb link set hb up".to_owned(),
    ];
    for c in cmds {
        sys::run_ok("ip", &c.split(' ').collect::<Vec<_>>())?;
    }
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    if modules.contains("nf_defrag_ipv6") || modules.contains("nf_conntrack") {
        note("nf_defrag/conntrack is loaded: fragments may be reassembled before the hooks");
    }
    Ok(())
}

/// The legitimate connection: client in hpa, server in hpb, both ends in this process.
struct Conn {
    c: std::net::TcpStream,
    s: std::net::TcpStream,
    cport: u16,
    sport: u16,
    up: u64,
    down: u64,
}

/// Ports for a connection: (client, server).
fn ports(rng: &mut Rng) -> (u16, u16) {
    (
        rng.range(20000, 29999) as u16,
        rng.range(30000, 39999) as u16,
    )
}

/// The capture filter of a connection's tuple.
fn tuple_filter((cport, sport): (u16, u16)) -> String {
    format!("tcp and host 10.95.0.1 and host 10.95.0.2 and port {cport} and port {sport}")
}

impl Conn {
    fn open((cport, sport): (u16, u16)) -> Result<Conn, String> {
        let l = craft::listener(craft::tcp_socket(NS_B, (B4, sport), None)?);
        let c = craft::stream(craft::tcp_socket(NS_A, (A4, cport), Some((B4, sport)))?);
        let (s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        for x in [&c, &s] {
            x.set_read_timeout(Some(Duration::from_secs(20))).ok();
        }
        Ok(Conn {
            c,
            s,
            cport,
            sport,
            up: 0,
            down: 0,
        })
    }

    /// The client sends `up` bytes, the server answers `down`.
    fn talk(&mut self, up: usize, down: usize) -> Result<(), String> {
        let e = |e: std::io::Error| format!("the live connection: {e}");
        self.c.write_all(&vec![b'c'; up]).map_err(e)?;
        let mut buf = vec![0u8; up.max(down)];
        self.s.read_exact(&mut buf[..up]).map_err(e)?;
        self.s.write_all(&vec![b's'; down]).map_err(e)?;
        self.c.read_exact(&mut buf[..down]).map_err(e)?;
        self.up += up as u64;
        self.down += down as u64;
        Ok(())
    }

    /// The client ends its side first (a shutdown, so that its socket is not orphaned and
    /// retired in FIN_WAIT2 before the server's FIN), the server reads the end and closes, the
    /// client reads the server's end and closes: every packet then belongs to both summaries.
    fn close(self) -> Result<(u64, u64), String> {
        let (up, down) = (self.up, self.down);
        let Conn { mut c, mut s, .. } = self;
        c.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("client shutdown: {e}"))?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .map_err(|e| format!("server reading the end: {e}"))?;
        drop(s);
        c.read_to_end(&mut rest)
            .map_err(|e| format!("client reading the end: {e}"))?;
        drop(c);
        Ok((up, down))
    }
}

/// Captures on both ends of the pair, for one connection.
struct Oracle {
    a: Capture,
    b: Capture,
}

impl Oracle {
    fn start(tuple: (u16, u16), tag: &str) -> Result<Oracle, String> {
        let f = tuple_filter(tuple);
        Ok(Oracle {
            a: Capture::start(NS_A, "ha", &f, &format!("/tmp/{tag}-ha.pcap"))?,
            b: Capture::start(NS_B, "hb", &f, &format!("/tmp/{tag}-hb.pcap"))?,
        })
    }

    fn stop(self) -> Result<(Vec<craft::Frame>, Vec<craft::Frame>), String> {
        Ok((self.a.stop()?, self.b.stop()?))
    }
}

/// Compares the two summaries of a connection with what the captures saw; the differences.
fn compare(
    sums: &[SummaryBody],
    cport: u16,
    sport: u16,
    fa: &[craft::Frame],
    fb: &[craft::Frame],
    bytes: (u64, u64),
) -> Vec<String> {
    let mut bad = Vec::new();
    let cl = sums.iter().find(|s| s.lport == cport && s.rport == sport);
    let sv = sums.iter().find(|s| s.lport == sport && s.rport == cport);
    let (Some(cl), Some(sv)) = (cl, sv) else {
        return vec![format!("summaries missing: {} found", sums.len())];
    };
    // Client side: what left the client's stack and what reached it (not the spoofed SYNs).
    let (c, s) = ((A4, cport), (B4, sport));
    let c_out = craft::tally(fa, c, s, Some(SPOOF_TTL));
    let c_in = craft::tally(fa, s, c, None);
    // Server side: everything of the tuple that arrived, spoofed SYNs included.
    let s_in = craft::tally(fb, c, s, None);
    let s_out = craft::tally(fb, s, c, None);
    for (who, s, inb, outb) in [("client", cl, c_in, c_out), ("server", sv, s_in, s_out)] {
        if s.flags & abi::SUMF_FIN_WAIT2 != 0 {
            // The flag says the peer's FIN and the last ACK are not counted; after a shutdown
            // the socket is not retired early and they are, so the counts are compared whole.
            note(format!(
                "{who}'s summary is flagged FIN_WAIT2 though it was not retired early"
            ));
        }
        if s.flags & abi::SUMF_IP_COUNTERS == 0 {
            bad.push(format!(
                "{who}: IP counters null (capture: in {inb:?}, out {outb:?})"
            ));
            continue;
        }
        let got = (s.pkts_in, s.ip_bytes_in, s.pkts_out, s.ip_bytes_out);
        let want = (inb.0, inb.1, outb.0, outb.1);
        if got != want {
            bad.push(format!(
                "{who}: (pkts_in, ip_bytes_in, pkts_out, ip_bytes_out) {got:?}, capture {want:?}"
            ));
        }
    }
    if (cl.bytes_sent, cl.bytes_received) != bytes {
        bad.push(format!(
            "client bytes sent/received ({}, {}), sent {bytes:?}",
            cl.bytes_sent, cl.bytes_received
        ));
    }
    if (sv.bytes_received, sv.bytes_sent) != bytes {
        bad.push(format!(
            "server bytes received/sent ({}, {}), sent {bytes:?}",
            sv.bytes_received, sv.bytes_sent
        ));
    }
    bad
}

/// Waits for both summaries of a connection.
fn both_summaries(d: &Dev, cport: u16, sport: u16) -> Result<Vec<SummaryBody>, String> {
    let recs = collect(d, |r| {
        summaries(r)
            .iter()
            .filter(|s| {
                (s.lport, s.rport) == (cport, sport) || (s.lport, s.rport) == (sport, cport)
            })
            .count()
            >= 2
    })?;
    Ok(summaries(&recs))
}

/// A bare SYN that carries the connection's tuple, from the wire.
fn spoofed_syn(conn: &Conn, rng: &mut Rng) -> Vec<u8> {
    let mut t = Tcp::new(conn.cport, conn.sport, SYN);
    t.seq = rng.next_u64() as u32;
    let mut ip = Ip4::new(A4, B4, 6);
    ip.ttl = SPOOF_TTL;
    ip.id = rng.next_u64() as u16;
    craft::eth(MAC_B, MAC_A, 0x0800, &ip.bytes(&t.bytes(&A4, &B4)))
}

/// Sends `n` packets from a local raw socket to hpb, `make` choosing each; returns how many
/// were sent and the errors by errno.
fn blast(raw: &Raw, n: u32, mut make: impl FnMut(u32) -> Vec<u8>) -> (u32, u32) {
    let (mut sent, mut failed) = (0, 0);
    for i in 0..n {
        match raw.ip4(&make(i), B4) {
            Ok(()) => sent += 1,
            Err(_) => failed += 1,
        }
        // Let hpb keep up now and then: its backlog holds 1000 packets.
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    (sent, failed)
}

/// A SYN scan of hpb from hpa: `n` SYNs to successive ports, from random source ports.
fn syn_scan(raw: &Raw, n: u32, avoid: u16, rng: &mut Rng) -> (u32, u32) {
    let mut r = Rng::new(rng.next_u64());
    blast(raw, n, |i| {
        let mut sport = r.range(1024, 65535) as u16;
        if sport == avoid {
            sport += 1;
        }
        let mut t = Tcp::new(sport, (i % 65535 + 1) as u16, SYN);
        t.seq = r.next_u64() as u32;
        Ip4::new(A4, B4, 6).bytes(&t.bytes(&A4, &B4))
    })
}

/// An RST storm: `n` resets to random ports of hpb (never the live connection's pair).
fn rst_storm(raw: &Raw, n: u32, live: (u16, u16), rng: &mut Rng) -> (u32, u32) {
    let mut r = Rng::new(rng.next_u64());
    blast(raw, n, |_| {
        let (mut sp, dp) = (r.range(1024, 65535) as u16, r.range(1, 65535) as u16);
        if (sp, dp) == live {
            sp ^= 1;
        }
        let mut t = Tcp::new(sp, dp, RST | abi::tcp_flag::ACK);
        t.seq = r.next_u64() as u32;
        t.ack = r.next_u64() as u32;
        Ip4::new(A4, B4, 6).bytes(&t.bytes(&A4, &B4))
    })
}

fn status() -> Result<abi::Status, String> {
    Dev::open(false, true)?.status()
}

fn live_connection() -> TestResult {
    const SPOOFED: u32 = 400;
    const SCAN: u32 = 15000;
    const STORM: u32 = 15000;
    setup()?;
    let mark = adv::log_mark();
    let mut rng = Rng::for_test("live_connection");
    fixtures::rules(&[])?;
    let d = fresh()?;
    let raw = Raw::open(NS_A, "ha")?;
    let s0 = status()?;
    let tuple = ports(&mut rng);
    let oracle = Oracle::start(tuple, "live")?;
    let mut conn = Conn::open(tuple)?;
    conn.talk(1000, 500)?;
    let mut sent = 0u32;
    let t = Instant::now();
    // Bare SYNs with the connection's tuple, from the wire.
    let mut spoof_fail = 0;
    for i in 0..SPOOFED {
        if raw.frame(&spoofed_syn(&conn, &mut rng)).is_err() {
            spoof_fail += 1;
        }
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sent += SPOOFED - spoof_fail;
    conn.talk(700, 300)?;
    let t_spoof = t.elapsed();
    let t = Instant::now();
    let (scan, scan_fail) = syn_scan(&raw, SCAN, conn.cport, &mut rng);
    conn.talk(500, 800)?;
    let t_scan = t.elapsed();
    let t = Instant::now();
    let (storm, storm_fail) = rst_storm(&raw, STORM, (conn.cport, conn.sport), &mut rng);
    conn.talk(300, 200)?;
    let t_storm = t.elapsed();
    sent += scan + storm;
    // The malformed set, logged in full, while the connection lives.
    fixtures::rules(&["log body proto tcp", "log body"])?;
    let probes = probes(&mut rng);
    for p in &probes {
        if p.send(&raw).is_ok() {
            sent += 1;
        }
    }
    fixtures::rules(&[])?;
    conn.talk(100, 100)?;
    let (cport, sport) = (conn.cport, conn.sport);
    let bytes = conn.close()?;
    let sums = both_summaries(&d, cport, sport)?;
    std::thread::sleep(Duration::from_millis(300));
    let (fa, fb) = oracle.stop()?;
    let s1 = status()?;
    let spoofs_seen = fb
        .iter()
        .filter(|f| f.ttl == SPOOF_TTL && f.flags == SYN)
        .count();
    note(format!(
        "sent {sent} packets: {} spoofed SYNs with the tuple ({spoofs_seen} captured at hpb) in {:.1} s, a {scan}-SYN scan in {:.1} s, a {storm}-RST storm in {:.1} s, {} malformed; {} sends refused",
        SPOOFED - spoof_fail,
        t_spoof.as_secs_f64(),
        t_scan.as_secs_f64(),
        t_storm.as_secs_f64(),
        probes.len(),
        spoof_fail + scan_fail + storm_fail
    ));
    note(format!(
        "captured for the tuple: {} frames at ha, {} at hb; flows evicted +{}, untracked +{}, malformed +{}, no transport +{}",
        fa.len(),
        fb.len(),
        s1.flows_evicted - s0.flows_evicted,
        s1.flows_untracked - s0.flows_untracked,
        s1.packets_malformed - s0.packets_malformed,
        s1.packets_no_transport - s0.packets_no_transport
    ));
    for s in sums
        .iter()
        .filter(|s| (s.lport, s.rport) == (cport, sport) || (s.lport, s.rport) == (sport, cport))
    {
        note(format!(
            "{} summary: pkts in/out {}/{}, IP bytes in/out {}/{}, data sent/received {}/{}",
            if s.lport == cport { "client" } else { "server" },
            s.pkts_in,
            s.pkts_out,
            s.ip_bytes_in,
            s.ip_bytes_out,
            s.bytes_sent,
            s.bytes_received
        ));
    }
    let bad = compare(&sums, cport, sport, &fa, &fb, bytes);
    adv::no_reports_since(mark)?;
    ensure!(bad.is_empty(), "{}", bad.join("; "));
    Ok(())
}

/// What a packet is, to the hook that sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// A whole TCP or UDP header, or another protocol: neither counter.
    Normal,
    /// `packets_malformed`.
    Malformed,
    /// `packets_no_transport`.
    NoTransport,
    /// Where the expected semantics leave room: `packets_no_transport`, or neither.
    NoTransportOrNormal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    /// A frame onto the wire from hpa: seen, if at all, by hpb's LOCAL_IN.
    Wire,
    /// A local raw IPv4 socket in hpa, to 10.95.0.99: seen by hpa's LOCAL_OUT if sent.
    Raw4,
    /// A local raw IPv6 socket in hpa, to fd95::99: seen by hpa's LOCAL_OUT if sent.
    Raw6,
}

struct Probe {
    name: &'static str,
    via: Via,
    bytes: Vec<u8>,
    /// For `Wire`: whether the receiving stack lets it reach LOCAL_IN.
    reaches: bool,
    class: Class,
}

impl Probe {
    fn send(&self, raw: &Raw) -> Result<(), i32> {
        match self.via {
            Via::Wire => {
                let ty = if self.bytes[0] >> 4 == 6 || self.name.contains("IPv6") {
                    0x86dd
                } else {
                    0x0800
                };
                raw.frame(&craft::eth(MAC_B, MAC_A, ty, &self.bytes))
            }
            Via::Raw4 => raw.ip4(&self.bytes, X4),
            Via::Raw6 => raw.ip6(&self.bytes, X6),
        }
    }
}

/// The malformed and truncated packets, each with where it is seen and what it is.
fn probes(rng: &mut Rng) -> Vec<Probe> {
    use Class::*;
    use Via::*;
    let sp = || 50000u16;
    let tcp4 = |t: &Tcp, dst: [u8; 4]| t.bytes(&A4, &dst);
    let tcp6 = |t: &Tcp, dst: [u8; 16]| t.bytes(&A6, &dst);
    let whole = Tcp::new(sp(), 9, SYN);
    let cut = |n| {
        let mut t = Tcp::new(sp(), 9, SYN);
        t.cut = Some(n);
        t
    };
    let doff = |d| {
        let mut t = Tcp::new(sp(), 9, SYN);
        t.doff = Some(d);
        t
    };
    let with_opts = |o: &[u8]| {
        let mut t = Tcp::new(sp(), 9, SYN);
        t.options = o.to_vec();
        t
    };
    let v4 = |f: &dyn Fn(&mut Ip4), dst: [u8; 4], l4: Vec<u8>| {
        let mut ip = Ip4::new(A4, dst, 6);
        f(&mut ip);
        ip.bytes(&l4)
    };
    let v6 = |f: &dyn Fn(&mut Ip6), dst: [u8; 16], next: u8, rest: Vec<u8>| {
        let mut ip = Ip6::new(A6, dst, next);
        f(&mut ip);
        ip.bytes(&rest)
    };
    let none4 = |_: &mut Ip4| {};
    let none6 = |_: &mut Ip6| {};
    let cat = |a: Vec<u8>, b: Vec<u8>| [a, b].concat();
    let mut id = || rng.next_u64() as u32;
    let (f1, f2, f3, f4) = (id(), id(), id(), id());
    let mut tcp24 = Tcp::new(sp(), 9, SYN);
    tcp24.payload = vec![0x61; 4];
    let p = |name, via, bytes, reaches, class| Probe {
        name,
        via,
        bytes,
        reaches,
        class,
    };
    vec![
        // IPv4 from the wire: what ip_rcv refuses never reaches the hook.
        p(
            "IPv4 version 5",
            Wire,
            v4(&|i| i.version = 5, B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 IHL 4",
            Wire,
            v4(&|i| i.ihl = Some(4), B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 IHL 0",
            Wire,
            v4(&|i| i.ihl = Some(0), B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 IHL 15 past the end",
            Wire,
            v4(&|i| i.ihl = Some(15), B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 total length 0",
            Wire,
            v4(&|i| i.total = Some(0), B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 total length past the end",
            Wire,
            v4(&|i| i.total = Some(1400), B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 bad header checksum",
            Wire,
            v4(&|i| i.bad_checksum = true, B4, tcp4(&whole, B4)),
            false,
            Malformed,
        ),
        p(
            "IPv4 with NOP options, whole TCP",
            Wire,
            v4(&|i| i.options = vec![1, 1, 1, 0], B4, tcp4(&whole, B4)),
            true,
            Normal,
        ),
        p(
            "IPv4, protocol TCP, no TCP bytes",
            Wire,
            v4(&none4, B4, vec![]),
            true,
            NoTransport,
        ),
        p(
            "TCP cut at 12 bytes",
            Wire,
            v4(&none4, B4, tcp4(&cut(12), B4)),
            true,
            NoTransport,
        ),
        p(
            "TCP data offset 15, 20 bytes there",
            Wire,
            v4(&none4, B4, tcp4(&doff(15), B4)),
            true,
            NoTransport,
        ),
        p(
            "TCP data offset 2",
            Wire,
            v4(&none4, B4, tcp4(&doff(2), B4)),
            true,
            NoTransportOrNormal,
        ),
        p(
            "TCP options cut inside a whole header",
            Wire,
            v4(
                &none4,
                B4,
                tcp4(&with_opts(&[2, 4, 5, 0xb4, 8, 10, 0, 0, 0, 0, 0, 0]), B4),
            ),
            true,
            Normal,
        ),
        p(
            "TCP option length 255",
            Wire,
            v4(&none4, B4, tcp4(&with_opts(&[3, 255, 0, 0]), B4)),
            true,
            Normal,
        ),
        p(
            "UDP cut at 4 bytes",
            Wire,
            {
                let mut ip = Ip4::new(A4, B4, 17);
                ip.ttl = 64;
                ip.bytes(&craft::udp(&A4, &B4, sp(), 9, b"x", None, Some(4)))
            },
            true,
            NoTransport,
        ),
        p(
            "UDP length field past the end",
            Wire,
            Ip4::new(A4, B4, 17).bytes(&craft::udp(&A4, &B4, sp(), 9, b"abcd", Some(300), None)),
            true,
            NoTransportOrNormal,
        ),
        // IPv6 from the wire: ipv6_rcv refuses a wrong version, a payload length past the end
        // and a Hop-by-Hop header past the end; everything else reaches LOCAL_IN, fragments
        // unassembled.
        p(
            "IPv6 version 4 in an IPv6 frame",
            Wire,
            v6(&|i| i.version = 4, B6, 6, tcp6(&whole, B6)),
            false,
            Malformed,
        ),
        p(
            "IPv6 payload length past the end",
            Wire,
            v6(&|i| i.payload_len = Some(200), B6, 6, tcp6(&whole, B6)),
            false,
            Malformed,
        ),
        p(
            "IPv6 Hop-by-Hop length past the end",
            Wire,
            v6(&none6, B6, 0, cat(ext_opts(6, 200, 0), tcp6(&whole, B6))),
            false,
            Malformed,
        ),
        p(
            "IPv6 Hop-by-Hop, then whole TCP",
            Wire,
            v6(&none6, B6, 0, cat(ext_opts(6, 0, 0), tcp6(&whole, B6))),
            true,
            Normal,
        ),
        p(
            "IPv6 Destination Options length past the end",
            Wire,
            v6(&none6, B6, 60, cat(ext_opts(6, 200, 0), tcp6(&whole, B6))),
            true,
            Malformed,
        ),
        p(
            "IPv6 Authentication header length past the end",
            Wire,
            v6(
                &none6,
                B6,
                51,
                cat(vec![6, 200, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], tcp6(&whole, B6)),
            ),
            true,
            Malformed,
        ),
        p(
            "IPv6 unknown next header 253",
            Wire,
            v6(&none6, B6, 253, vec![0x5a; 16]),
            true,
            NoTransportOrNormal,
        ),
        p(
            "IPv6 payload length 0, next header TCP",
            Wire,
            v6(&|i| i.payload_len = Some(0), B6, 6, tcp6(&whole, B6)),
            true,
            NoTransport,
        ),
        p(
            "IPv6 first fragment, whole TCP",
            Wire,
            v6(
                &none6,
                B6,
                44,
                cat(ext_frag(6, 0, true, f1), tcp6(&tcp24, B6)),
            ),
            true,
            Normal,
        ),
        p(
            "IPv6 fragment after the first",
            Wire,
            v6(
                &none6,
                B6,
                44,
                cat(ext_frag(6, 8, false, f2), vec![0x62; 16]),
            ),
            true,
            NoTransport,
        ),
        p(
            "IPv6 first fragment with 8 bytes of TCP",
            Wire,
            v6(
                &none6,
                B6,
                44,
                cat(ext_frag(6, 0, true, f3), tcp6(&cut(8), B6)),
            ),
            true,
            NoTransport,
        ),
        p(
            "IPv6 overlapping fragments: the first",
            Wire,
            v6(
                &none6,
                B6,
                44,
                cat(ext_frag(6, 0, true, f4), tcp6(&tcp24, B6)),
            ),
            true,
            Normal,
        ),
        p(
            "IPv6 overlapping fragments: the second, over it",
            Wire,
            v6(
                &none6,
                B6,
                44,
                cat(ext_frag(6, 1, false, f4), vec![0x63; 24]),
            ),
            true,
            NoTransport,
        ),
        p(
            "IPv6 TCP cut at 12 bytes",
            Wire,
            v6(&none6, B6, 6, tcp6(&cut(12), B6)),
            true,
            NoTransport,
        ),
        p(
            "IPv6 TCP data offset 15, 20 bytes there",
            Wire,
            v6(&none6, B6, 6, tcp6(&doff(15), B6)),
            true,
            NoTransport,
        ),
        p(
            "IPv6 UDP cut at 4 bytes",
            Wire,
            v6(
                &none6,
                B6,
                17,
                craft::udp(&A6, &B6, sp(), 9, b"x", None, Some(4)),
            ),
            true,
            NoTransport,
        ),
        // A local raw IPv4 socket: 7.3 refuses IHL < 5 and IHL past the end, and rewrites the
        // total length; a wrong version goes out as it is.
        p(
            "raw IPv4 version 5",
            Raw4,
            v4(&|i| i.version = 5, X4, tcp4(&whole, X4)),
            true,
            Malformed,
        ),
        p(
            "raw IPv4 version 0",
            Raw4,
            v4(&|i| i.version = 0, X4, tcp4(&whole, X4)),
            true,
            Malformed,
        ),
        p(
            "raw IPv4 IHL 4",
            Raw4,
            v4(&|i| i.ihl = Some(4), X4, tcp4(&whole, X4)),
            true,
            Malformed,
        ),
        p(
            "raw IPv4 IHL 0",
            Raw4,
            v4(&|i| i.ihl = Some(0), X4, tcp4(&whole, X4)),
            true,
            Malformed,
        ),
        p(
            "raw IPv4 IHL 15 past the end",
            Raw4,
            v4(&|i| i.ihl = Some(15), X4, tcp4(&whole, X4)),
            true,
            Malformed,
        ),
        p(
            "raw IPv4 total length 0 (rewritten)",
            Raw4,
            v4(&|i| i.total = Some(0), X4, tcp4(&whole, X4)),
            true,
            Normal,
        ),
        p(
            "raw IPv4 total length past the end (rewritten)",
            Raw4,
            v4(&|i| i.total = Some(9999), X4, tcp4(&whole, X4)),
            true,
            Normal,
        ),
        p(
            "raw IPv4 fragment after the first",
            Raw4,
            v4(&|i| i.frag = (8, false), X4, vec![0x64; 16]),
            true,
            NoTransport,
        ),
        p(
            "raw IPv4 TCP cut at 12 bytes",
            Raw4,
            v4(&none4, X4, tcp4(&cut(12), X4)),
            true,
            NoTransport,
        ),
        p(
            "raw IPv4 TCP data offset 15, 20 bytes there",
            Raw4,
            v4(&none4, X4, tcp4(&doff(15), X4)),
            true,
            NoTransport,
        ),
        // A local raw IPv6 socket sends anything to LOCAL_OUT.
        p(
            "raw IPv6 version 4",
            Raw6,
            v6(&|i| i.version = 4, X6, 6, tcp6(&whole, X6)),
            true,
            Malformed,
        ),
        p(
            "raw IPv6 payload length past the end",
            Raw6,
            v6(&|i| i.payload_len = Some(300), X6, 6, tcp6(&whole, X6)),
            true,
            Malformed,
        ),
        p(
            "raw IPv6 Hop-by-Hop length past the end",
            Raw6,
            v6(&none6, X6, 0, cat(ext_opts(6, 200, 0), tcp6(&whole, X6))),
            true,
            Malformed,
        ),
        p(
            "raw IPv6 Destination Options length past the end",
            Raw6,
            v6(&none6, X6, 60, cat(ext_opts(6, 200, 0), tcp6(&whole, X6))),
            true,
            Malformed,
        ),
        p(
            "raw IPv6 fragment after the first",
            Raw6,
            v6(
                &none6,
                X6,
                44,
                cat(ext_frag(6, 8, false, f2 ^ 1), vec![0x65; 16]),
            ),
            true,
            NoTransport,
        ),
        p(
            "raw IPv6 first fragment, whole TCP",
            Raw6,
            v6(
                &none6,
                X6,
                44,
                cat(ext_frag(6, 0, true, f1 ^ 1), tcp6(&tcp24, X6)),
            ),
            true,
            Normal,
        ),
        p(
            "raw IPv6 TCP cut at 12 bytes",
            Raw6,
            v6(&none6, X6, 6, tcp6(&cut(12), X6)),
            true,
            NoTransport,
        ),
        p(
            "raw IPv6 unknown next header 253",
            Raw6,
            v6(&none6, X6, 253, vec![0x5a; 16]),
            true,
            NoTransportOrNormal,
        ),
    ]
}

fn malformed_counted() -> TestResult {
    setup()?;
    let mark = adv::log_mark();
    let mut rng = Rng::for_test("malformed_counted");
    let raw = Raw::open(NS_A, "ha")?;
    let probes = probes(&mut rng);
    let mut wrong = Vec::new();
    let mut either = Vec::new();
    let (mut sent, mut refused) = (0, Vec::new());
    let drops0 = (craft::drops(NS_A, "ha")?, craft::drops(NS_B, "hb")?);
    // Each packet on its own, once without rules and once logged in full (the record path).
    for round in 0..2 {
        if round == 1 {
            fixtures::rules(&["log body proto tcp", "log body"])?;
        }
        std::thread::sleep(Duration::from_millis(300));
        for p in &probes {
            let before = status()?;
            let res = p.send(&raw);
            std::thread::sleep(Duration::from_millis(30));
            let after = status()?;
            let got = (
                after.packets_malformed - before.packets_malformed,
                after.packets_no_transport - before.packets_no_transport,
            );
            let seen = match p.via {
                Via::Wire => res.is_ok() && p.reaches,
                _ => res.is_ok(),
            };
            match res {
                Ok(()) => sent += 1,
                Err(e) if round == 0 => refused.push(format!("{} ({})", p.name, adv::ename(e))),
                Err(_) => {}
            }
            let n = u64::from(seen);
            let ok = match p.class {
                Class::Normal => got == (0, 0),
                Class::Malformed => got == (n, 0),
                Class::NoTransport => got == (0, n),
                Class::NoTransportOrNormal => {
                    if got.1 == n && n == 1 && round == 0 {
                        either.push(format!("{}: no transport", p.name));
                    } else if got == (0, 0) && n == 1 && round == 0 {
                        either.push(format!("{}: neither", p.name));
                    }
                    got.0 == 0 && got.1 <= n
                }
            };
            if !ok {
                wrong.push(format!(
                    "{} (round {round}): expected {} {:?}, counters grew (malformed {}, no transport {})",
                    p.name,
                    if seen { "seen as" } else { "unseen," },
                    p.class,
                    got.0,
                    got.1
                ));
            }
        }
    }
    fixtures::rules(&[])?;
    let drops1 = (craft::drops(NS_A, "ha")?, craft::drops(NS_B, "hb")?);
    note(format!(
        "{sent} packets sent ({} probes, twice); refused by the sending kernel: {}",
        probes.len(),
        if refused.is_empty() {
            "none".to_owned()
        } else {
            refused.join(", ")
        }
    ));
    if !either.is_empty() {
        note(format!("where either was allowed: {}", either.join("; ")));
    }
    adv::no_reports_since(mark)?;
    ensure!(
        drops0 == drops1,
        "the veth pair dropped packets ({drops0:?} -> {drops1:?}): the expectations do not hold"
    );
    ensure!(
        wrong.is_empty(),
        "{} of {} sends counted otherwise: {}",
        wrong.len(),
        2 * probes.len(),
        wrong.join("; ")
    );
    Ok(())
}

fn after_the_storm() -> TestResult {
    setup()?;
    let mark = adv::log_mark();
    let mut rng = Rng::for_test("after_the_storm");
    // A small flow table fills quickly; with the module pinned, the default one and more SYNs.
    let reloaded = adv::pinned().is_none();
    adv::reload_if_possible(&["max_conns=2048"])?;
    let n = if reloaded { 3000 } else { 12000 };
    fixtures::rules(&[])?;
    let d = fresh()?;
    let raw = Raw::open(NS_A, "ha")?;
    let s0 = status()?;
    let t = Instant::now();
    let (scan, _) = syn_scan(&raw, n, 0, &mut rng);
    let (storm, _) = rst_storm(&raw, n, (0, 0), &mut rng);
    let t_storm = t.elapsed();
    let s1 = status()?;
    // At once: a new connection, with its capture.
    let tuple = ports(&mut rng);
    let oracle = Oracle::start(tuple, "after")?;
    let mut conn = Conn::open(tuple)?;
    conn.talk(3000, 2000)?;
    let (cport, sport) = (conn.cport, conn.sport);
    let bytes = conn.close()?;
    let sums = both_summaries(&d, cport, sport)?;
    std::thread::sleep(Duration::from_millis(300));
    let (fa, fb) = oracle.stop()?;
    let s2 = status()?;
    note(format!(
        "sent {} packets ({scan} SYNs, {storm} RSTs) in {:.1} s, flow table of {}: {} flows tracked after, evicted +{}, untracked +{}; then the connection: evicted +{}, untracked +{}",
        scan + storm,
        t_storm.as_secs_f64(),
        s1.flow_table_size,
        s1.flows_tracked,
        s1.flows_evicted - s0.flows_evicted,
        s1.flows_untracked - s0.flows_untracked,
        s2.flows_evicted - s1.flows_evicted,
        s2.flows_untracked - s1.flows_untracked
    ));
    let bad = compare(&sums, cport, sport, &fa, &fb, bytes);
    drop(d);
    if reloaded {
        adv::reload_if_possible(&[])?;
    }
    adv::no_reports_since(mark)?;
    ensure!(bad.is_empty(), "{}", bad.join("; "));
    ensure_eq!(
        sums.iter()
            .filter(|s| s.lport == cport || s.lport == sport)
            .count(),
        2
    );
    Ok(())
}
