//! The netfilter packet path: IP counters in summaries, packet records (whole IP header, snap
//! length, repeats), each rule field, IPv6, namespaces, atomic rule replacement, limits.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tcplog_ctl::{self as abi, close, open, Pod};

use crate::dev::Dev;
use crate::fixtures::{
    collect, exchange, fresh, in_ns, netns_named, nsum, packets, rules, settle, settle_packets,
    stats, summaries, veth,
};
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "packet: IP counters in summaries match the veth link counters exactly",
        counters_exact,
    );
    h.run(
        "socket: a connection whose peer vanishes ends in timeout",
        peer_vanishes,
    );
    h.run(
        "packet: a packet with IP options is logged with its whole header",
        ip_options,
    );
    h.run(
        "packet: payload is cut at the snap length; the original length is kept",
        snap_length,
    );
    h.run(
        "packet: identical packets collapse into one record with their count",
        repeats,
    );
    h.run(
        "packet: each rule field selects what it should and nothing else",
        rule_fields,
    );
    h.run("packet: IPv6 packets are logged with their header", ipv6);
    h.run(
        "packet: traffic between namespaces is seen in both",
        namespaces,
    );
    h.run(
        "packet: namespaces created after load are hooked; removing them is clean",
        namespaces_come_and_go,
    );
    h.run(
        "packet: rules replaced while traffic flows lose nothing uncounted",
        replace_under_load,
    );
    h.run(
        "packet: a connection limit writes LIMIT records with its four numbers",
        limits,
    );
    h.run(
        "packet: forwarded packets only with the forward option",
        forwarding,
    );
    h.run(
        "packet: invalid rules are refused, with the rule and the reason",
        invalid_rules,
    );
    h.run(
        "packet: tcplog rules lists the rules with their counters",
        rules_listing,
    );
    rules(&[]).ok();
}

fn udp_port() -> Result<(UdpSocket, u16), String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let p = s.local_addr().unwrap().port();
    Ok((s, p))
}

/// A veth pair between namespaces tpa (10.97.0.1) and tpb (10.97.0.2) that carries nothing but
/// what the test sends: no IPv6, fixed MAC addresses, permanent neighbour entries.
fn quiet_veth() -> Result<(), String> {
    if std::path::Path::new("/run/netns/tpb").exists() {
        return Ok(());
    }
    sys::run_ok("modprobe", &["veth"])?;
    for cmd in [
        "netns add tpa",
        "netns add tpb",
        "link add pa address 02:00:00:00:00:01 netns tpa type veth peer name pb address 02:00:00:00:00:02 netns tpb",
        "-n tpa link set pa addrgenmode none",
        "-n tpb link set pb addrgenmode none",
        "-n tpa addr add 10.97.0.1/24 dev pa",
        "-n tpb addr add 10.97.0.2/24 dev pb",
        "-n tpa neigh add 10.97.0.2 lladdr 02:00:00:00:00:02 dev pa nud permanent",
        "-n tpb neigh add 10.97.0.1 lladdr 02:00:00:00:00:01 dev pb nud permanent",
        "-n tpa link set lo up",
        "-n tpb link set lo up",
        "-n tpa link set pa up",
        "-n tpb link set pb up",
    ] {
        sys::run_ok("ip", &cmd.split(' ').collect::<Vec<_>>())?;
    }
    Ok(())
}

/// (rx packets, rx bytes, tx packets, tx bytes) of an interface in a namespace.
fn link_stats(ns: &str, dev: &str) -> Result<[u64; 4], String> {
    let out = sys::run_ok("ip", &["-n", ns, "-s", "-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &v[0]["stats64"];
    let n = |d: &str, k: &str| {
        s[d][k]
            .as_u64()
            .ok_or_else(|| format!("no {d}.{k} in {out}"))
    };
    Ok([
        n("rx", "packets")?,
        n("rx", "bytes")?,
        n("tx", "packets")?,
        n("tx", "bytes")?,
    ])
}

fn counters_exact() -> TestResult {
    quiet_veth()?;
    let d = fresh()?;
    let a0 = link_stats("tpa", "pa")?;
    let b0 = link_stats("tpb", "pb")?;
    let in_a = ["ip", "netns", "exec", "tpa"];
    let in_b = ["ip", "netns", "exec", "tpb"];
    exchange(&in_b, "10.97.0.2:0", &in_a, "10.97.0.2", 100_000, 54_321)?;
    let sums = summaries(&collect(&d, nsum(2))?);
    ensure_eq!(sums.len(), 2);
    let a1 = link_stats("tpa", "pa")?;
    let b1 = link_stats("tpb", "pb")?;
    let delta = |x: [u64; 4], y: [u64; 4]| [y[0] - x[0], y[1] - x[1], y[2] - x[2], y[3] - x[3]];
    let (a, b) = (delta(a0, a1), delta(b0, b1));
    const ETH: u64 = 14;
    let cl = sums
        .iter()
        .find(|s| s.open == open::ACTIVE)
        .ok_or("no client")?;
    let sv = sums
        .iter()
        .find(|s| s.open == open::PASSIVE)
        .ok_or("no server")?;
    for s in [cl, sv] {
        ensure!(
            s.flags & abi::SUMF_IP_COUNTERS != 0,
            "IP counters not valid"
        );
    }
    // Every packet that crossed the link belongs to this connection, the handshake and the
    // final ACK included (the closing side sends that before it becomes a TIME_WAIT socket).
    ensure_eq!(
        (sv.pkts_in, sv.pkts_out),
        (b[0], b[2]),
        "server packets vs pb"
    );
    ensure_eq!(
        (sv.ip_bytes_in, sv.ip_bytes_out),
        (b[1] - ETH * b[0], b[3] - ETH * b[2]),
        "server bytes"
    );
    ensure_eq!(
        (cl.pkts_in, cl.pkts_out),
        (a[0], a[2]),
        "client packets vs pa"
    );
    ensure_eq!(
        (cl.ip_bytes_in, cl.ip_bytes_out),
        (a[1] - ETH * a[0], a[3] - ETH * a[2]),
        "client bytes"
    );
    // What one side sent, the other received.
    ensure_eq!(
        (cl.pkts_out, cl.ip_bytes_out),
        (sv.pkts_in, sv.ip_bytes_in),
        "mirror"
    );
    // The data is in there too.
    ensure!(
        cl.ip_bytes_out > 100_000 && sv.ip_bytes_out > 54_321,
        "too few bytes"
    );
    Ok(())
}

fn peer_vanishes() -> TestResult {
    use std::io::Write;
    quiet_veth()?;
    let d = fresh()?;
    let l = in_ns("tpb", || {
        std::net::TcpListener::bind("10.97.0.2:0").map_err(|e| e.to_string())
    })?;
    let port = l.local_addr().unwrap().port();
    let c = in_ns("tpa", move || {
        std::net::TcpStream::connect(("10.97.0.2", port)).map_err(|e| e.to_string())
    })?;
    let (s, _) = l.accept().map_err(|e| e.to_string())?;
    // Give up after one second of unacknowledged data.
    let ms: libc::c_uint = 1000;
    // SAFETY: A valid socket and option value.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            4,
        )
    };
    ensure_eq!(rc, 0, "TCP_USER_TIMEOUT");
    // The peer vanishes: its address goes, so segments still leave (and count as
    // retransmissions) but are dropped on arrival, unanswered.
    sys::run_ok(
        "ip",
        &["-n", "tpb", "addr", "del", "10.97.0.2/24", "dev", "pb"],
    )?;
    let mut c2 = &c;
    c2.write_all(b"into the void").map_err(|e| e.to_string())?;
    // The process learns of the timeout, and closes the socket; then the summary is written.
    let mut buf = [0u8; 8];
    let err = std::io::Read::read(&mut c2, &mut buf)
        .err()
        .map(|e| e.raw_os_error());
    sys::run_ok(
        "ip",
        &["-n", "tpb", "addr", "add", "10.97.0.2/24", "dev", "pb"],
    )?;
    ensure_eq!(err, Some(Some(libc::ETIMEDOUT)), "the client's read");
    drop((c, s));
    let recs = collect(&d, |r| summaries(r).iter().any(|s| s.rport == port));
    let sums = summaries(&recs?);
    let cl = sums
        .iter()
        .find(|s| s.rport == port)
        .ok_or("no summary of the client")?;
    ensure_eq!(cl.close, close::TIMEOUT);
    ensure!(cl.retrans > 0, "no retransmissions before the timeout");
    ensure_eq!(
        cl.bytes_sent,
        13,
        "the data was sent (and sent again), once counted"
    );
    Ok(())
}

fn ip_options() -> TestResult {
    let (rx, port) = udp_port()?;
    let d = fresh()?;
    rules(&[&format!("log body proto udp dport {port}")])?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    // Three NOPs and an end-of-options: the header grows from 20 to 24 bytes.
    let opts = [1u8, 1, 1, 0];
    // SAFETY: A valid socket and option buffer.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            opts.as_ptr().cast(),
            4,
        )
    };
    ensure_eq!(rc, 0, "IP_OPTIONS");
    tx.send_to(b"with options", ("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    rx.recv(&mut buf).map_err(|e| e.to_string())?;
    let pk = packets(&settle_packets(&d)?);
    rules(&[])?;
    ensure_eq!(pk.len(), 2, "out and in");
    for p in &pk {
        ensure_eq!(p.body.ip_hlen, 24, "whole header with options");
        ensure_eq!(p.data[0], 0x46, "version 4, IHL 6");
        ensure_eq!(&p.data[20..24], &opts[..], "the options themselves");
        ensure_eq!((p.body.l4_hlen, p.body.payload_len), (8, 12));
        ensure_eq!(&p.data[32..], b"with options");
        ensure_eq!(p.body.orig_len, 24 + 8 + 12);
    }
    ensure_eq!(pk[0].body.direction, abi::direction::OUT);
    ensure_eq!(pk[1].body.direction, abi::direction::IN);
    ensure_eq!(&pk[0].body.ifname[..3], b"lo\0");
    Ok(())
}

fn snap_length() -> TestResult {
    let (rx, port) = udp_port()?;
    let d = fresh()?;
    rules(&[&format!("log body in proto udp dport {port}")])?;
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    tx.send_to(&payload, ("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2000];
    rx.recv(&mut buf).map_err(|e| e.to_string())?;
    // And with a snap length of 300.
    sys::run_ok(sys::TOOL, &["config", "--snap-len", "300"])?;
    tx.send_to(&payload[..999], ("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    rx.recv(&mut buf).map_err(|e| e.to_string())?;
    sys::run_ok(sys::TOOL, &["config", "--snap-len", "128"])?;
    let pk = packets(&settle_packets(&d)?);
    rules(&[])?;
    ensure_eq!(pk.len(), 2);
    for (p, snap, sent) in [(&pk[0], 128usize, 1000usize), (&pk[1], 300, 999)] {
        ensure!(
            p.body.flags & abi::PKF_TRUNCATED != 0,
            "not flagged truncated"
        );
        ensure_eq!(usize::from(p.body.payload_len), snap);
        ensure_eq!(p.body.orig_len as usize, 20 + 8 + sent, "original length");
        ensure_eq!(
            &p.data[28..],
            &payload[..snap],
            "the first bytes of the payload"
        );
    }
    Ok(())
}

fn repeats() -> TestResult {
    let (rx, port) = udp_port()?;
    let d = fresh()?;
    let before = d.status()?.packets_repeated;
    rules(&[&format!("log body in proto udp dport {port}")])?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    // Sent back to back, well inside the 250 ms a record waits for repeats; read afterwards.
    for _ in 0..5 {
        tx.send_to(b"same", ("127.0.0.1", port))
            .map_err(|e| e.to_string())?;
    }
    for _ in 0..5 {
        rx.recv(&mut buf).map_err(|e| e.to_string())?;
    }
    tx.send_to(b"different", ("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    rx.recv(&mut buf).map_err(|e| e.to_string())?;
    let pk = packets(&settle_packets(&d)?);
    let after = d.status()?.packets_repeated;
    rules(&[])?;
    ensure_eq!(
        pk.len(),
        2,
        "one record for the five, one for the different one"
    );
    ensure_eq!(pk[0].body.count, 5);
    ensure_eq!(&pk[0].data[28..], b"same");
    ensure!(pk[0].body.last_ns >= pk[0].hdr.time_ns, "last before first");
    ensure_eq!(pk[1].body.count, 1);
    ensure_eq!(&pk[1].data[28..], b"different");
    ensure_eq!(after - before, 4, "repeats counted in status");
    Ok(())
}

/// Sends one datagram from `src` to `dst:port` and receives it.
fn udp_once(src: &str, dst: &str, port: u16, rx: &UdpSocket) -> Result<(), String> {
    let tx = UdpSocket::bind((src, 0)).map_err(|e| e.to_string())?;
    tx.send_to(b"x", (dst, port)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    rx.recv(&mut buf).map_err(|e| e.to_string())?;
    Ok(())
}

fn rule_fields() -> TestResult {
    let rx = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let port = rx.local_addr().unwrap().port();
    let p = port.to_string();
    let r = [
        format!("count out proto udp dport {p}"),
        format!("count in proto udp from 127.0.0.2 dport {p}"),
        format!("count in proto udp to 127.0.0.3 dport {p}"),
        format!("count in proto udp sport 40000-40010 dport {p}"),
        format!("count in proto udp iface lo dport {p}"),
        "count in proto tcp flags SYN/SYN,ACK dport 1-65535".to_owned(),
        "count in proto tcp flags RST".to_owned(),
    ];
    let rr: Vec<&str> = r.iter().map(String::as_str).collect();
    rules(&rr)?;
    // 1: out, once per datagram. 2: only from 127.0.0.2. 3: only to 127.0.0.3 (not 2: first
    // match). 4: a datagram from source port 40005 sent to 127.0.0.1. 5: everything else in.
    udp_once("127.0.0.2", "127.0.0.1", port, &rx)?;
    udp_once("127.0.0.1", "127.0.0.3", port, &rx)?;
    {
        let tx = UdpSocket::bind("127.0.0.1:40005").map_err(|e| e.to_string())?;
        tx.send_to(b"x", ("127.0.0.1", port))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        rx.recv(&mut buf).map_err(|e| e.to_string())?;
    }
    udp_once("127.0.0.1", "127.0.0.1", port, &rx)?;
    // A TCP connection: one SYN in (on the listener's side), and a refused one: one RST in.
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 1, 1)?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let cport = closed.local_addr().unwrap().port();
    drop(closed);
    let _ = std::net::TcpStream::connect(("127.0.0.1", cport));
    let s = stats()?;
    rules(&[])?;
    // The refused connect's SYN also counts for rule 6, as a SYN in.
    ensure_eq!(
        &s.packets[..7],
        &[4, 1, 1, 1, 1, 2, 1][..],
        "packets per rule"
    );
    ensure_eq!(s.bytes[1], 29, "20 IP + 8 UDP + 1");
    Ok(())
}

fn ipv6() -> TestResult {
    let rx = UdpSocket::bind("[::1]:0").map_err(|e| e.to_string())?;
    let port = rx.local_addr().unwrap().port();
    let d = fresh()?;
    rules(&[&format!("log in proto udp to ::1 dport {port}")])?;
    udp_once("::1", "::1", port, &rx)?;
    let pk = packets(&settle_packets(&d)?);
    rules(&[])?;
    ensure_eq!(pk.len(), 1);
    let p = &pk[0];
    ensure_eq!(p.body.family, abi::AF_INET6);
    ensure_eq!(
        (p.body.ip_hlen, p.body.l4_hlen, p.body.payload_len),
        (40, 8, 0),
        "log: headers only"
    );
    ensure_eq!(p.data[0] >> 4, 6);
    ensure_eq!(p.data[39], 1, "daddr ::1");
    ensure_eq!(p.body.orig_len, 40 + 8 + 1);
    ensure_eq!(
        u16::from_be_bytes([p.data[42], p.data[43]]),
        port,
        "dport in the UDP header"
    );
    Ok(())
}

fn namespaces() -> TestResult {
    veth()?;
    let d = fresh()?;
    rules(&["log proto udp dport 5353"])?;
    // No receiver is needed: LOCAL_IN sees the datagram before any socket lookup.
    let ns = std::fs::File::open("/run/netns/tla").map_err(|e| e.to_string())?;
    let t = std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: setns on this thread only, with a namespace file we hold open.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns".into());
        }
        let s = UdpSocket::bind("10.99.0.1:0").map_err(|e| e.to_string())?;
        s.send_to(b"hello", "10.99.0.2:5353")
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    t.join().map_err(|_| "sender panicked")??;
    let pk = packets(&settle_packets(&d)?);
    rules(&[])?;
    let (a, b) = (netns_named("tla")?, netns_named("tlb")?);
    let out: Vec<_> = pk.iter().filter(|p| p.body.netns == a).collect();
    let inn: Vec<_> = pk.iter().filter(|p| p.body.netns == b).collect();
    ensure_eq!(out.len(), 1, "seen leaving tla");
    ensure_eq!(inn.len(), 1, "seen arriving in tlb");
    ensure_eq!(
        (out[0].body.direction, &out[0].body.ifname[..3]),
        (abi::direction::OUT, &b"va\0"[..])
    );
    ensure_eq!(
        (inn[0].body.direction, &inn[0].body.ifname[..3]),
        (abi::direction::IN, &b"vb\0"[..])
    );
    Ok(())
}

fn namespaces_come_and_go() -> TestResult {
    const N: u32 = 5;
    rules(&["count proto udp dport 6161"])?;
    for i in 0..N {
        let name = format!("tmp{i}");
        sys::run_ok("ip", &["netns", "add", &name])?;
        sys::run_ok("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        let ns = std::fs::File::open(format!("/run/netns/{name}")).map_err(|e| e.to_string())?;
        std::thread::spawn(move || -> Result<(), String> {
            // SAFETY: setns on this thread only, with a namespace file held open.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err("setns".into());
            }
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            s.send_to(b"x", "127.0.0.1:6161")
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .join()
        .map_err(|_| "sender panicked")??;
        sys::run_ok("ip", &["netns", "del", &name])?;
    }
    let s = stats()?;
    rules(&[])?;
    // Out and in, in each namespace, all made after the module was loaded.
    ensure_eq!(s.packets[0], u64::from(2 * N));
    Ok(())
}

fn replace_under_load() -> TestResult {
    const SWAPS: usize = 40;
    let (rx, port) = udp_port()?;
    drop(rx);
    let d = fresh()?;
    // Set A logs the port; set B puts another rule first. Both log every datagram.
    let log_port = abi::Rule {
        action: abi::action::LOG_HEADER,
        direction: abi::direction::IN,
        protocol: abi::IPPROTO_UDP,
        dport: abi::PortRange { lo: port, hi: port },
        ..Default::default()
    };
    let mut a = abi::RuleSet {
        n_rules: 1,
        ..Default::default()
    };
    a.rules[0] = log_port;
    let mut b = abi::RuleSet {
        n_rules: 2,
        ..Default::default()
    };
    b.rules[0] = abi::Rule {
        action: abi::action::COUNT,
        protocol: abi::IPPROTO_TCP,
        dport: abi::PortRange { lo: 1, hi: 1 },
        ..Default::default()
    };
    b.rules[1] = log_port;
    let mut set = a;
    d.ioctl(abi::TCPLOG_IOC_SET_RULES, &mut set)
        .map_err(sys::errno_name)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || -> Result<u32, String> {
        let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let mut sent = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            // Distinct payloads: no repeats to collapse.
            tx.send_to(&sent.to_be_bytes(), ("127.0.0.1", port))
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
        Ok(sent)
    });
    for i in 0..SWAPS {
        let mut set = if i % 2 == 0 { b } else { a };
        d.ioctl(abi::TCPLOG_IOC_SET_RULES, &mut set)
            .map_err(sys::errno_name)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "sender panicked")??;
    let recs = settle_packets(&d)?;
    rules(&[])?;
    let lost: u64 = recs.iter().filter_map(|r| r.lost()).map(|l| l.count).sum();
    ensure_eq!(lost, 0);
    crate::dev::account(&recs, recs.first().map_or(0, |r| r.hdr.seq))?;
    let logged: u32 = packets(&recs).iter().map(|p| p.body.count).sum();
    // Every datagram passed LOCAL_IN under one complete set or the other.
    ensure_eq!(logged, sent, "every datagram sent was logged once");
    ensure!(sent > 100, "only {sent} datagrams during the replacements");
    let cfg = recs.iter().filter(|r| r.config().is_some()).count();
    ensure_eq!(cfg, SWAPS + 1, "each replacement audited");
    Ok(())
}

fn limits() -> TestResult {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let d = fresh()?;
    rules(&[&format!("count in proto tcp dport {port} limit 2")])?;
    let mut conns = Vec::new();
    for _ in 0..4 {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let (s, _) = l.accept().map_err(|e| e.to_string())?;
        conns.push((c, s));
    }
    let recs = settle(&d)?;
    let lim: Vec<abi::LimitBody> = recs
        .iter()
        .filter(|r| r.hdr.rtype == abi::rtype::LIMIT)
        .map(|r| abi::LimitBody::read_from(&r.body).unwrap())
        .collect();
    ensure_eq!(lim.len(), 2, "the 3rd and 4th connection");
    for (i, l) in lim.iter().enumerate() {
        ensure_eq!(l.limit_type, abi::LIMIT_CONNS_PER_SOURCE);
        ensure_eq!((l.rule, l.threshold), (1, 2));
        ensure_eq!((l.current, l.exceeded), (3 + i as u32, 1 + i as u32));
        ensure_eq!(&l.src[..4], &[127, 0, 0, 1][..]);
    }
    // Closing three and opening one stays within the limit (2 of 2): no record.
    conns.truncate(1);
    std::thread::sleep(Duration::from_millis(300));
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (_s, _) = l.accept().map_err(|e| e.to_string())?;
    let recs = settle(&d)?;
    rules(&[])?;
    drop(c);
    ensure_eq!(
        recs.iter()
            .filter(|r| r.hdr.rtype == abi::rtype::LIMIT)
            .count(),
        0,
        "2 of 2 is within the limit"
    );
    Ok(())
}

/// Namespaces fa - fr - fb: fr routes between 10.96.1.0/24 and 10.96.2.0/24.
fn routed() -> Result<(), String> {
    if std::path::Path::new("/run/netns/fr").exists() {
        return Ok(());
    }
    sys::run_ok("modprobe", &["veth"])?;
    for cmd in [
        "netns add fa",
        "netns add fr",
        "netns add fb",
        "link add fa0 netns fa type veth peer name fr0 netns fr",
        "link add fb0 netns fb type veth peer name fr1 netns fr",
        "-n fa addr add 10.96.1.1/24 dev fa0",
        "-n fr addr add 10.96.1.2/24 dev fr0",
        "-n fr addr add 10.96.2.2/24 dev fr1",
        "-n fb addr add 10.96.2.1/24 dev fb0",
        "-n fa link set fa0 up",
        "-n fr link set fr0 up",
        "-n fr link set fr1 up",
        "-n fb link set fb0 up",
        "-n fa route add default via 10.96.1.2",
        "-n fb route add default via 10.96.2.2",
    ] {
        sys::run_ok("ip", &cmd.split(' ').collect::<Vec<_>>())?;
    }
    sys::run_ok(
        "ip",
        &[
            "netns",
            "exec",
            "fr",
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ],
    )?;
    Ok(())
}

/// Sends `n` datagrams from namespace fa to fb through fr.
fn send_through(n: u32) -> Result<(), String> {
    let fa = std::fs::File::open("/run/netns/fa").map_err(|e| e.to_string())?;
    std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: setns on this thread only, with a namespace file we hold open.
        if unsafe { libc::setns(fa.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns".into());
        }
        let s = UdpSocket::bind("10.96.1.1:0").map_err(|e| e.to_string())?;
        for _ in 0..n {
            s.send_to(b"through", "10.96.2.1:7777")
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender panicked")?
}

fn forwarding() -> TestResult {
    routed()?;
    rules(&["count fwd proto udp dport 7777"])?;
    send_through(3)?;
    std::thread::sleep(Duration::from_millis(200));
    let off = stats()?.packets[0];
    sys::run_ok(sys::TOOL, &["config", "--forward", "on"])?;
    rules(&["count fwd proto udp dport 7777"])?;
    send_through(3)?;
    std::thread::sleep(Duration::from_millis(200));
    let on = stats()?.packets[0];
    sys::run_ok(sys::TOOL, &["config", "--forward", "off"])?;
    rules(&[])?;
    ensure_eq!(
        (off, on),
        (0, 3),
        "forwarded datagrams counted only with the option"
    );
    Ok(())
}

fn invalid_rules() -> TestResult {
    rules(&["count proto udp"])?;
    for (rule, want) in [
        (
            "count proto tcp dport http",
            "rule 1 (count proto tcp dport http): dport http: 'http' is not a port",
        ),
        ("log from 10.1.2.3/8", "bits are set past the prefix length"),
        ("drop everything", "starts with count, log or log body"),
    ] {
        let out = sys::run(sys::TOOL, &["rules", "set", rule])?;
        ensure_eq!(out.status.code(), Some(2), "{rule}");
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(err.contains(want), "{rule}: {err}");
    }
    // And through the ioctl: a malformed set is refused whole, the old one stays.
    let d = Dev::rw()?;
    let mut set = abi::RuleSet {
        n_rules: 1,
        ..Default::default()
    };
    set.rules[0].action = 9;
    ensure_eq!(
        d.ioctl(abi::TCPLOG_IOC_SET_RULES, &mut set),
        Err(libc::EINVAL)
    );
    let mut now = abi::RuleSet::default();
    d.ioctl(abi::TCPLOG_IOC_GET_RULES, &mut now)
        .map_err(sys::errno_name)?;
    ensure_eq!(now.n_rules, 1, "the old set stays");
    rules(&[])?;
    Ok(())
}

fn rules_listing() -> TestResult {
    let (rx, port) = udp_port()?;
    rules(&[
        &format!("count in proto udp dport {port}"),
        "log body proto tcp dport 80",
    ])?;
    udp_once("127.0.0.1", "127.0.0.1", port, &rx)?;
    let out = sys::run_ok(sys::TOOL, &["rules"])?;
    let lines: Vec<&str> = out.lines().collect();
    rules(&[])?;
    ensure_eq!(lines.len(), 2, "{out}");
    ensure!(
        lines[0].starts_with(" 1  count in proto udp dport")
            && lines[0].ends_with("1 packets, 29 bytes"),
        "{out}"
    );
    ensure!(
        lines[1].contains("log body proto tcp dport 80")
            && lines[1].ends_with("0 packets, 0 bytes"),
        "{out}"
    );
    Ok(())
}
