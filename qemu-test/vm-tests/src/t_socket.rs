//! Socket-operation hooks: events with inetsock's fields, TCPLogger's summaries, the event mask
//! and the in-kernel criteria, on loopback and across network namespaces joined by veth.

// Filters are built field by field, the way the tool builds them from a command line.
#![allow(clippy::field_reassign_with_default)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, close, op, open, EventBody, Pod, SummaryBody};

use crate::dev::{self, Dev, Rec};
use crate::fixtures::{
    collect, exchange, fresh, netns_named, nsum, set_filter, settle, summaries, veth, Exchange,
    IN_A, IN_B,
};
use crate::harness::{Harness, TestResult};
use crate::peer;
use crate::sys;
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "socket: TCP events over loopback carry inetsock's fields",
        tcp_events,
    );
    h.run(
        "socket: summaries count 100000 and 54321 bytes exactly, both sides",
        tcp_summaries,
    );
    h.run(
        "socket: accept is attributed to the accepting process",
        accept_attribution,
    );
    h.run(
        "socket: a refused connect reports ECONNREFUSED",
        connect_refused,
    );
    h.run(
        "socket: a non-blocking refused connect reports EINPROGRESS, then ECONNREFUSED",
        connect_async,
    );
    h.run(
        "socket: binding a taken port reports EADDRINUSE and the port asked for",
        bind_in_use,
    );
    h.run(
        "socket: UDP create, bind, implicit bind by send and by connect, close",
        udp_events,
    );
    h.run("socket: IPv6 over ::1: events and exact summaries", ipv6);
    h.run(
        "socket: veth between namespaces: fields, bytes and netns match /proc",
        veth_namespaces,
    );
    h.run(
        "socket: the event mask chooses operations; summaries can be turned off",
        event_mask,
    );
    h.run("socket: criteria: ports and port ranges", crit_ports);
    h.run(
        "socket: criteria: addresses with prefixes, v4 and v6",
        crit_addrs,
    );
    h.run("socket: criteria: uid, pid and command name", crit_identity);
    h.run(
        "socket: criteria: network namespace, family, protocol",
        crit_ns_family_proto,
    );
    h.run(
        "socket: invalid criteria are refused with EINVAL",
        crit_invalid,
    );
    h.run(
        "socket: a reset is rst_sent on one side and rst_received on the other",
        reset_ends,
    );
    h.run(
        "socket: a connection opened before enable gets a partial summary",
        partial_summary,
    );
    h.run(
        "socket: 1000 concurrent connections all get exact summaries",
        thousand,
    );
    h.run(
        "socket: a full connection table is counted; its connections get partial summaries",
        table_full,
    );
    h.run(
        "socket: JSON carries the documented field names",
        json_fields,
    );
    h.run(
        "socket: tcplog events and tcplog filter choose what is logged, audited",
        tool_choices,
    );
    h.run("socket: no probe missed a call", || {
        ensure_eq!(Dev::open(false, true)?.status()?.probes_missed, 0);
        Ok(())
    });
}

// Helpers.

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0; 16];
    x[..4].copy_from_slice(&a);
    x
}

const LO: [u8; 16] = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const LO6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn comm(s: &str) -> [u8; 16] {
    let mut c = [0; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

const ME: &str = "tcplog-vm-tests";

/// The inode of a process's network namespace, as `ls -l /proc/PID/ns/net` shows it.
fn netns_of(pid: &str) -> Result<u32, String> {
    let l = std::fs::read_link(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
    let s = l.to_string_lossy();
    s.trim_start_matches("net:[")
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("odd link {s}"))
}

fn events(recs: &[Rec]) -> Vec<EventBody> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::EVENT)
        .map(|r| EventBody::read_from(&r.body).unwrap())
        .collect()
}

fn find(evs: &[EventBody], op: u16, pid: u32) -> Result<&EventBody, String> {
    evs.iter()
        .find(|e| e.op == op && e.pid == pid)
        .ok_or_else(|| format!("no op {op} event of pid {pid} among {} events", evs.len()))
}

// Tests.

fn tcp_events() -> TestResult {
    let d = fresh()?;
    let x = exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 10, 10)?;
    let evs = events(&collect(&d, nsum(2))?);
    let ns = netns_of("self")?;
    let (s, c) = (x.server_pid, x.client_pid);
    for (op, pid) in [
        (op::TCP_CREATE, s),
        (op::TCP_BIND, s),
        (op::TCP_LISTEN, s),
        (op::TCP_ACCEPT, s),
        (op::TCP_CREATE, c),
        (op::TCP_CONNECT, c),
        (op::TCP_CLOSE, c),
    ] {
        let e = find(&evs, op, pid)?;
        ensure_eq!(e.family, abi::AF_INET, "family of op {op}");
        ensure_eq!(e.protocol, abi::IPPROTO_TCP);
        ensure_eq!(e.sock_type, 1, "SOCK_STREAM");
        ensure_eq!(e.uid, 0);
        ensure_eq!(e.tid, pid, "single-threaded helper: tid is pid");
        ensure_eq!(e.comm, comm(ME));
        ensure_eq!(e.netns, ns, "netns of op {op}");
        ensure_eq!(e.result, 0);
    }
    let conn = find(&evs, op::TCP_CONNECT, c)?;
    ensure_eq!((conn.raddr, conn.rport), (LO, x.port));
    ensure_eq!(conn.laddr, LO);
    ensure!(conn.lport != 0, "no local port");
    let acc = find(&evs, op::TCP_ACCEPT, s)?;
    ensure_eq!((acc.laddr, acc.lport), (LO, x.port));
    ensure_eq!((acc.raddr, acc.rport), (LO, conn.lport));
    let bind = find(&evs, op::TCP_BIND, s)?;
    ensure_eq!((bind.laddr, bind.lport), (LO, x.port));
    // One id per socket, across all its records.
    let client_ids: Vec<u64> = evs
        .iter()
        .filter(|e| e.pid == c)
        .map(|e| e.sock_id)
        .collect();
    ensure!(
        client_ids.iter().all(|&i| i == conn.sock_id),
        "client events with other ids"
    );
    ensure!(
        acc.sock_id != conn.sock_id && acc.sock_id != bind.sock_id,
        "ids not distinct"
    );
    let disc: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_DISCONNECT).collect();
    ensure_eq!(disc.len(), 2, "one disconnect per side");
    Ok(())
}

fn check_pair(
    sums: &[SummaryBody],
    x: &Exchange,
    up: u64,
    down: u64,
    laddr: [u8; 16],
) -> TestResult {
    let cl = sums
        .iter()
        .find(|s| s.rport == x.port && s.pid == x.client_pid)
        .ok_or("no client summary")?;
    let sv = sums
        .iter()
        .find(|s| s.lport == x.port && s.pid == x.server_pid)
        .ok_or("no server summary")?;
    ensure_eq!(
        (cl.bytes_sent, cl.bytes_received),
        (up, down),
        "client bytes"
    );
    ensure_eq!(
        (sv.bytes_sent, sv.bytes_received),
        (down, up),
        "server bytes"
    );
    ensure_eq!((cl.open, sv.open), (open::ACTIVE, open::PASSIVE));
    ensure_eq!((cl.close, sv.close), (close::FIN, close::FIN));
    ensure_eq!(
        (cl.flags & abi::SUMF_PARTIAL, sv.flags & abi::SUMF_PARTIAL),
        (0, 0)
    );
    ensure_eq!((cl.lport, cl.rport), (sv.rport, sv.lport), "mirror ports");
    ensure_eq!(
        (cl.laddr, cl.raddr),
        (sv.raddr, sv.laddr),
        "mirror addresses"
    );
    ensure_eq!(cl.raddr, laddr);
    ensure_eq!((cl.comm, sv.comm), (comm(ME), comm(ME)));
    ensure!(
        cl.duration_ns > 0 && cl.duration_ns < 60_000_000_000,
        "duration {}",
        cl.duration_ns
    );
    ensure!(
        cl.start_ns > 1_600_000_000_000_000_000,
        "start {}",
        cl.start_ns
    );
    ensure!(
        cl.segs_out > 0 && cl.segs_in > 0 && sv.segs_in > 0,
        "segment counts"
    );
    ensure!(cl.srtt_us > 0, "srtt");
    ensure_eq!(cl.retrans, 0);
    Ok(())
}

fn tcp_summaries() -> TestResult {
    let d = fresh()?;
    let x = exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 100_000, 54_321)?;
    let sums = summaries(&collect(&d, nsum(2))?);
    ensure_eq!(sums.len(), 2);
    check_pair(&sums, &x, 100_000, 54_321, LO)
}

fn accept_attribution() -> TestResult {
    let d = fresh()?;
    let x = exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 1, 1)?;
    let recs = collect(&d, nsum(2))?;
    let evs = events(&recs);
    ensure!(x.server_pid != x.client_pid, "same process");
    let acc: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_ACCEPT).collect();
    ensure_eq!(acc.len(), 1);
    // On loopback the handshake completes in the client's softirq: attributing there would name
    // the client.
    ensure_eq!(acc[0].pid, x.server_pid, "accept's pid");
    let sv = summaries(&recs)
        .into_iter()
        .find(|s| s.open == open::PASSIVE)
        .ok_or("no passive summary")?;
    ensure_eq!(sv.pid, x.server_pid, "passive summary's owner");
    Ok(())
}

fn closed_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().unwrap().port())
}

fn connect_refused() -> TestResult {
    let d = fresh()?;
    let port = closed_port()?;
    let err = TcpStream::connect(("127.0.0.1", port))
        .err()
        .ok_or("connect succeeded")?;
    ensure_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    let evs = events(&collect(&d, |r| {
        events(r).iter().any(|e| e.op == op::TCP_CONNECT)
    })?);
    let c = find(&evs, op::TCP_CONNECT, std::process::id())?;
    ensure_eq!(c.result, libc::ECONNREFUSED);
    ensure_eq!((c.raddr, c.rport), (LO, port));
    ensure_eq!(c.flags & abi::EVF_ASYNC, 0);
    ensure_eq!(
        summaries(&settle(&d)?).len(),
        0,
        "a refused connect is no connection"
    );
    Ok(())
}

fn connect_async() -> TestResult {
    let d = fresh()?;
    let port = closed_port()?;
    // SAFETY: Plain socket syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        ensure!(fd >= 0, "socket");
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), 16);
        ensure_eq!((rc, sys::errno()), (-1, libc::EINPROGRESS));
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        libc::poll(&mut p, 1, 2000);
        libc::close(fd);
    }
    let evs = events(&collect(&d, |r| {
        events(r).iter().filter(|e| e.op == op::TCP_CONNECT).count() >= 2
    })?);
    let conns: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_CONNECT).collect();
    ensure_eq!(conns.len(), 2);
    ensure_eq!(
        (conns[0].result, conns[0].flags & abi::EVF_ASYNC),
        (libc::EINPROGRESS, 0)
    );
    ensure_eq!(
        (conns[1].result, conns[1].flags & abi::EVF_ASYNC),
        (libc::ECONNREFUSED, abi::EVF_ASYNC)
    );
    ensure_eq!(conns[1].sock_id, conns[0].sock_id);
    ensure_eq!(conns[1].rport, port);
    Ok(())
}

fn bind_in_use() -> TestResult {
    let d = fresh()?;
    let first = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = first.local_addr().unwrap().port();
    let err = TcpListener::bind(("127.0.0.1", port))
        .err()
        .ok_or("second bind succeeded")?;
    ensure_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    let evs = events(&collect(&d, |r| {
        events(r).iter().filter(|e| e.op == op::TCP_BIND).count() >= 2
    })?);
    let binds: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_BIND).collect();
    ensure_eq!(binds.len(), 2);
    ensure_eq!((binds[0].result, binds[0].lport), (0, port));
    ensure_eq!((binds[1].result, binds[1].lport), (libc::EADDRINUSE, port));
    ensure_eq!(binds[1].laddr, LO);
    Ok(())
}

fn udp_events() -> TestResult {
    let d = fresh()?;
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let rx_port = rx.local_addr().unwrap().port();
    // Implicit bind by a send.
    let tx = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    drop(tx);
    // SAFETY: Plain socket syscalls on descriptors this function owns.
    let (s1_port, s2_port) = unsafe {
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: rx_port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let port_of = |fd: i32| {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            let mut len = 16u32;
            libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len);
            u16::from_be(sa.sin_port)
        };
        let s1 = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let n = libc::sendto(
            s1,
            b"hello".as_ptr().cast(),
            5,
            0,
            (&dst as *const libc::sockaddr_in).cast(),
            16,
        );
        ensure_eq!(n, 5, "sendto");
        let p1 = port_of(s1);
        // Implicit bind by a connect.
        let s2 = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        ensure_eq!(
            libc::connect(s2, (&dst as *const libc::sockaddr_in).cast(), 16),
            0,
            "connect"
        );
        let p2 = port_of(s2);
        libc::close(s1);
        libc::close(s2);
        (p1, p2)
    };
    let mut buf = [0u8; 16];
    let _ = rx.recv(&mut buf);
    drop(rx);
    let evs = events(&collect(&d, |r| {
        events(r).iter().filter(|e| e.op == op::UDP_CLOSE).count() >= 4
    })?);
    let me = std::process::id();
    let of = |op: u16| {
        evs.iter()
            .filter(|e| e.op == op && e.pid == me)
            .collect::<Vec<_>>()
    };
    ensure_eq!(of(op::UDP_CREATE).len(), 4, "four UDP sockets");
    ensure_eq!(of(op::UDP_CLOSE).len(), 4);
    let binds = of(op::UDP_BIND);
    let explicit: Vec<_> = binds
        .iter()
        .filter(|e| e.flags & abi::EVF_IMPLICIT == 0)
        .collect();
    let implicit: Vec<_> = binds
        .iter()
        .filter(|e| e.flags & abi::EVF_IMPLICIT != 0)
        .collect();
    ensure_eq!(explicit.len(), 2, "two explicit binds");
    ensure_eq!(explicit[0].lport, rx_port);
    ensure_eq!(implicit.len(), 2, "implicit binds by send and by connect");
    ensure_eq!(implicit[0].lport, s1_port);
    ensure_eq!(implicit[1].lport, s2_port);
    ensure!(
        implicit
            .iter()
            .all(|e| e.protocol == abi::IPPROTO_UDP && e.sock_type == 2),
        "UDP fields"
    );
    let conns = of(op::UDP_CONNECT);
    ensure_eq!(conns.len(), 1);
    ensure_eq!(
        (conns[0].result, conns[0].raddr, conns[0].rport),
        (0, LO, rx_port)
    );
    ensure_eq!(conns[0].lport, s2_port);
    ensure_eq!(summaries(&evs_recs(&d)?).len(), 0, "UDP has no summaries");
    Ok(())
}

fn evs_recs(d: &Dev) -> Result<Vec<Rec>, String> {
    settle(d)
}

fn ipv6() -> TestResult {
    let d = fresh()?;
    let x = exchange(&[], "[::1]:0", &[], "[::1]", 70_000, 12_345)?;
    let recs = collect(&d, nsum(2))?;
    let sums = summaries(&recs);
    ensure_eq!(sums.len(), 2);
    ensure!(sums.iter().all(|s| s.family == abi::AF_INET6), "family");
    check_pair(&sums, &x, 70_000, 12_345, LO6)?;
    let evs = events(&recs);
    let c = find(&evs, op::TCP_CONNECT, x.client_pid)?;
    ensure_eq!((c.family, c.laddr, c.raddr), (abi::AF_INET6, LO6, LO6));
    Ok(())
}

fn veth_namespaces() -> TestResult {
    veth()?;
    let d = fresh()?;
    let x = exchange(&IN_B, "10.99.0.2:0", &IN_A, "10.99.0.2", 100_000, 54_321)?;
    let recs = collect(&d, nsum(2))?;
    let sums = summaries(&recs);
    ensure_eq!(sums.len(), 2);
    check_pair(&sums, &x, 100_000, 54_321, v4([10, 99, 0, 2]))?;
    let (a, b) = (netns_named("tla")?, netns_named("tlb")?);
    ensure!(a != b && a != netns_of("self")?, "namespaces not distinct");
    let cl = sums.iter().find(|s| s.open == open::ACTIVE).unwrap();
    let sv = sums.iter().find(|s| s.open == open::PASSIVE).unwrap();
    ensure_eq!((cl.netns, sv.netns), (a, b), "summary netns");
    ensure_eq!(cl.laddr, v4([10, 99, 0, 1]));
    let evs = events(&recs);
    ensure_eq!(find(&evs, op::TCP_CONNECT, x.client_pid)?.netns, a);
    ensure_eq!(find(&evs, op::TCP_ACCEPT, x.server_pid)?.netns, b);
    Ok(())
}

fn event_mask() -> TestResult {
    let d = fresh()?;
    let mut c = abi::Config::DEFAULT;
    c.event_mask = (1 << op::TCP_CONNECT) | (1 << op::TCP_ACCEPT);
    d.set_config(&c).map_err(sys::errno_name)?;
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 5, 5)?;
    let recs = collect(&d, nsum(2))?;
    let ops: Vec<u16> = events(&recs).iter().map(|e| e.op).collect();
    ensure_eq!(ops.len(), 2, "ops {ops:?}");
    ensure!(
        ops.contains(&op::TCP_CONNECT) && ops.contains(&op::TCP_ACCEPT),
        "ops {ops:?}"
    );
    ensure_eq!(summaries(&recs).len(), 2);
    c.options = 0;
    c.event_mask = 1 << op::TCP_CLOSE;
    d.set_config(&c).map_err(sys::errno_name)?;
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 5, 5)?;
    let recs = settle(&d)?;
    let recs: Vec<Rec> = recs
        .into_iter()
        .filter(|r| r.hdr.rtype != abi::rtype::CONFIG)
        .collect();
    ensure_eq!(summaries(&recs).len(), 0, "summaries off");
    ensure!(
        events(&recs).iter().all(|e| e.op == op::TCP_CLOSE),
        "only closes"
    );
    ensure_eq!(events(&recs).len(), 3, "listener, client, accepted socket");
    d.set_config(&abi::Config::DEFAULT)
        .map_err(sys::errno_name)?;
    Ok(())
}

/// Runs two exchanges and returns the summaries seen with `f` set.
fn with_filter(
    f: &abi::Filter,
    run: impl FnOnce() -> Result<(), String>,
) -> Result<(Vec<EventBody>, Vec<SummaryBody>), String> {
    let d = fresh()?;
    set_filter(&d, f)?;
    d.drain()?;
    run()?;
    let recs = settle(&d)?;
    set_filter(&d, &abi::Filter::default())?;
    let recs: Vec<Rec> = recs
        .into_iter()
        .filter(|r| r.hdr.rtype != abi::rtype::CONFIG)
        .collect();
    Ok((events(&recs), summaries(&recs)))
}

fn crit_ports() -> TestResult {
    let mut f = abi::Filter::default();
    let mut ports = (0, 0);
    f.n_ports = 1;
    // The range is set once the servers' ports are known: servers first, filter, then clients.
    let a = peer::server(&[], "127.0.0.1:0", 3, 3)?;
    let b = peer::server(&[], "127.0.0.1:0", 3, 3)?;
    ports.0 = a.port;
    ports.1 = b.port;
    f.ports[0] = abi::PortRange {
        lo: a.port,
        hi: a.port,
    };
    let (evs, sums) = with_filter(&f, || {
        peer::client(&[], &format!("127.0.0.1:{}", ports.0), 3, 3)?;
        peer::client(&[], &format!("127.0.0.1:{}", ports.1), 3, 3)?;
        a.finish()?;
        b.finish()?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 2, "both ends of the connection to port A");
    ensure!(
        sums.iter()
            .all(|s| s.lport == ports.0 || s.rport == ports.0),
        "other port"
    );
    ensure!(
        evs.iter().all(|e| e.lport == ports.0 || e.rport == ports.0),
        "event of another port"
    );
    ensure!(!evs.is_empty(), "no events");
    // A range covering both.
    let (lo, hi) = (ports.0.min(ports.1), ports.0.max(ports.1));
    f.ports[0] = abi::PortRange { lo, hi };
    let a = peer::server(&[], &format!("127.0.0.1:{lo}"), 1, 1)?;
    let (_, sums) = with_filter(&f, || {
        peer::client(&[], &format!("127.0.0.1:{lo}"), 1, 1)?;
        a.finish()?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 2, "range");
    Ok(())
}

fn crit_addrs() -> TestResult {
    let mut f = abi::Filter::default();
    f.n_addrs = 1;
    f.addrs[0] = abi::AddrPrefix {
        family: abi::AF_INET,
        prefix_len: 32,
        _pad: 0,
        addr: v4([127, 0, 0, 2]),
    };
    let (_, sums) = with_filter(&f, || {
        exchange(&[], "127.0.0.2:0", &[], "127.0.0.2", 2, 2)?;
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 2, "only the connection to 127.0.0.2");
    ensure!(
        sums.iter()
            .all(|s| s.laddr == v4([127, 0, 0, 2]) || s.raddr == v4([127, 0, 0, 2])),
        "address"
    );
    // A /8 takes both.
    f.addrs[0] = abi::AddrPrefix {
        family: abi::AF_INET,
        prefix_len: 8,
        _pad: 0,
        addr: v4([127, 0, 0, 0]),
    };
    let (_, sums) = with_filter(&f, || {
        exchange(&[], "127.0.0.2:0", &[], "127.0.0.2", 2, 2)?;
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
        exchange(&[], "[::1]:0", &[], "[::1]", 2, 2)?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 4, "127/8 takes both v4 connections, not ::1");
    // An IPv6 prefix.
    f.addrs[0] = abi::AddrPrefix {
        family: abi::AF_INET6,
        prefix_len: 128,
        _pad: 0,
        addr: LO6,
    };
    let (_, sums) = with_filter(&f, || {
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
        exchange(&[], "[::1]:0", &[], "[::1]", 2, 2)?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 2, "::1/128");
    ensure!(sums.iter().all(|s| s.family == abi::AF_INET6), "family");
    Ok(())
}

fn crit_identity() -> TestResult {
    // uid: a client run as nobody.
    let mut f = abi::Filter::default();
    f.n_uids = 1;
    f.uids[0] = sys::NOBODY;
    let (evs, sums) = with_filter(&f, || {
        let srv = peer::server(&[], "127.0.0.1:0", 2, 2)?;
        let me = std::env::current_exe()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = sys::run_as_nobody(
            &me,
            &["--tcp-client", &format!("127.0.0.1:{}", srv.port), "2", "2"],
        )?;
        ensure!(out.status.success(), "nobody's client failed");
        srv.finish()?;
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
        Ok(())
    })?;
    ensure!(
        !evs.is_empty() && evs.iter().all(|e| e.uid == sys::NOBODY),
        "uid events"
    );
    ensure_eq!(sums.len(), 1, "only nobody's side");
    ensure_eq!(sums[0].uid, sys::NOBODY);
    // pid.
    let srv = peer::server(&[], "127.0.0.1:0", 2, 2)?;
    f = abi::Filter::default();
    f.n_pids = 1;
    f.pids[0] = srv.child.id();
    let server_pid = srv.child.id();
    let (evs, sums) = with_filter(&f, || {
        peer::client(&[], &format!("127.0.0.1:{}", srv.port), 2, 2)?;
        srv.finish()?;
        Ok(())
    })?;
    ensure!(
        !evs.is_empty() && evs.iter().all(|e| e.pid == server_pid),
        "pid events"
    );
    ensure_eq!(sums.len(), 1, "only the server's side");
    ensure_eq!((sums[0].pid, sums[0].open), (server_pid, open::PASSIVE));
    // comm: a client started under another name.
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), "/tmp/othername").ok();
    f = abi::Filter::default();
    f.n_comms = 1;
    f.comms[0] = comm("othername");
    let (evs, sums) = with_filter(&f, || {
        let srv = peer::server(&[], "127.0.0.1:0", 2, 2)?;
        peer::client_as(
            &[],
            Some("/tmp/othername"),
            &format!("127.0.0.1:{}", srv.port),
            2,
            2,
        )?;
        srv.finish()?;
        Ok(())
    })?;
    ensure!(
        !evs.is_empty() && evs.iter().all(|e| e.comm == comm("othername")),
        "comm events"
    );
    ensure_eq!(sums.len(), 1);
    ensure_eq!(
        (sums[0].comm, sums[0].open),
        (comm("othername"), open::ACTIVE)
    );
    Ok(())
}

fn crit_ns_family_proto() -> TestResult {
    veth()?;
    let mut f = abi::Filter::default();
    f.n_netns = 1;
    f.netns[0] = netns_named("tlb")?;
    let (evs, sums) = with_filter(&f, || {
        exchange(&IN_B, "10.99.0.2:0", &IN_A, "10.99.0.2", 3, 3)?;
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 3, 3)?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 1, "only the side in tlb");
    ensure_eq!(sums[0].open, open::PASSIVE);
    ensure!(evs.iter().all(|e| e.netns == f.netns[0]), "netns events");
    f = abi::Filter::default();
    f.families = abi::FAMILY_INET6;
    let (evs, sums) = with_filter(&f, || {
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 3, 3)?;
        exchange(&[], "[::1]:0", &[], "[::1]", 3, 3)?;
        Ok(())
    })?;
    ensure_eq!(sums.len(), 2, "family inet6");
    ensure!(
        evs.iter()
            .chain([].iter())
            .all(|e| e.family == abi::AF_INET6),
        "family events"
    );
    f = abi::Filter::default();
    f.protocols = abi::PROTO_UDP;
    let (evs, sums) = with_filter(&f, || {
        exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 3, 3)?;
        let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        drop(u);
        Ok(())
    })?;
    ensure_eq!(sums.len(), 0, "no TCP summaries");
    ensure!(
        evs.len() >= 3 && evs.iter().all(|e| e.protocol == abi::IPPROTO_UDP),
        "UDP only"
    );
    Ok(())
}

fn crit_invalid() -> TestResult {
    let d = Dev::rw()?;
    let before = {
        let mut g = abi::Filter::default();
        d.ioctl(abi::TCPLOG_IOC_GET_FILTER, &mut g)
            .map_err(sys::errno_name)?;
        g
    };
    let mut f = abi::Filter::default();
    f.n_ports = 1;
    f.ports[0] = abi::PortRange { lo: 90, hi: 80 };
    let mut g = f;
    ensure_eq!(
        d.ioctl(abi::TCPLOG_IOC_SET_FILTER, &mut g),
        Err(libc::EINVAL),
        "reversed range"
    );
    f = abi::Filter::default();
    f.n_addrs = 1;
    f.addrs[0] = abi::AddrPrefix {
        family: abi::AF_INET,
        prefix_len: 8,
        _pad: 0,
        addr: v4([10, 1, 2, 3]),
    };
    let mut g = f;
    ensure_eq!(
        d.ioctl(abi::TCPLOG_IOC_SET_FILTER, &mut g),
        Err(libc::EINVAL),
        "host bits"
    );
    let mut after = abi::Filter::default();
    d.ioctl(abi::TCPLOG_IOC_GET_FILTER, &mut after)
        .map_err(sys::errno_name)?;
    ensure_eq!(after, before, "a refused filter changed the filter");
    Ok(())
}

fn reset_ends() -> TestResult {
    let d = fresh()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (s, _) = l.accept().map_err(|e| e.to_string())?;
    c.write_all(b"never read").map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(100));
    // Closing with unread data makes the kernel reset the connection (RFC 2525).
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let sums = summaries(&collect(&d, nsum(2))?);
    ensure_eq!(sums.len(), 2);
    let sv = sums
        .iter()
        .find(|s| s.lport == port)
        .ok_or("no server summary")?;
    let cl = sums
        .iter()
        .find(|s| s.rport == port)
        .ok_or("no client summary")?;
    ensure_eq!(sv.close, close::RST_SENT, "the side that reset");
    ensure_eq!(cl.close, close::RST_RECEIVED, "the side that was reset");
    ensure_eq!((cl.bytes_sent, sv.bytes_received), (10, 10));
    Ok(())
}

fn partial_summary() -> TestResult {
    let d = fresh()?;
    d.ioctl_none(abi::TCPLOG_IOC_DISABLE)
        .map_err(sys::errno_name)?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    c.write_all(&[1; 300]).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 300];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    d.ioctl_none(abi::TCPLOG_IOC_ENABLE)
        .map_err(sys::errno_name)?;
    s.write_all(&[2; 200]).map_err(|e| e.to_string())?;
    c.read_exact(&mut buf[..200]).map_err(|e| e.to_string())?;
    drop(c);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    drop(s);
    let sums = summaries(&collect(&d, nsum(2))?);
    ensure_eq!(sums.len(), 2);
    for sm in &sums {
        let f = sm.flags;
        ensure!(f & abi::SUMF_PARTIAL != 0, "not flagged partial");
        ensure!(
            f & abi::SUMF_START_UNKNOWN != 0 && f & abi::SUMF_OWNER_UNKNOWN != 0,
            "unknowns not flagged"
        );
        ensure_eq!(sm.open, open::UNKNOWN);
    }
    let cl = sums
        .iter()
        .find(|s| s.rport == port)
        .ok_or("no client summary")?;
    // What TCP counted is known even for an old connection: the bytes are exact.
    ensure_eq!((cl.bytes_sent, cl.bytes_received), (300, 200));
    Ok(())
}

fn raise_nofile(n: u64) {
    let r = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: A valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
}

/// Opens `n` connections at once, exchanges `100 + i` bytes up and `50 + i` down on each, then
/// closes them all; returns the listener's port and the per-connection client ports.
fn many(n: usize) -> Result<(u16, Vec<(u16, usize)>), String> {
    raise_nofile(8192);
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {i}: {e}"))?;
        let (s, _) = l.accept().map_err(|e| format!("accept {i}: {e}"))?;
        pairs.push((c, s));
    }
    let mut ports = Vec::with_capacity(n);
    for (i, (c, s)) in pairs.iter_mut().enumerate() {
        c.write_all(&vec![7; 100 + i]).map_err(|e| e.to_string())?;
        let mut up = vec![0; 100 + i];
        s.read_exact(&mut up).map_err(|e| e.to_string())?;
        s.write_all(&vec![8; 50 + i]).map_err(|e| e.to_string())?;
        let mut down = vec![0; 50 + i];
        c.read_exact(&mut down).map_err(|e| e.to_string())?;
        ports.push((c.local_addr().unwrap().port(), i));
    }
    for (c, s) in pairs {
        drop(c);
        drop(s);
    }
    Ok((port, ports))
}

fn thousand() -> TestResult {
    const N: usize = 1000;
    let d = fresh()?;
    let start = d.status()?.records_produced;
    let reader = std::thread::spawn(move || -> Result<Vec<Rec>, String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut all = Vec::new();
        while summaries(&all).len() < 2 * N && Instant::now() < deadline {
            all.extend(d.drain()?);
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(all)
    });
    let (port, ports) = many(N)?;
    let recs = reader.join().map_err(|_| "reader panicked")??;
    let lost: u64 = recs.iter().filter_map(|r| r.lost()).map(|l| l.count).sum();
    ensure_eq!(lost, 0, "records lost with a 4 MiB ring");
    dev::account(&recs, start)?;
    let sums = summaries(&recs);
    ensure_eq!(sums.len(), 2 * N, "summaries");
    let by_port: std::collections::HashMap<u16, usize> = ports.into_iter().collect();
    let mut bad = 0;
    for s in &sums {
        let (cport, mirror) = if s.rport == port {
            (s.lport, false)
        } else {
            (s.rport, true)
        };
        let i = *by_port
            .get(&cport)
            .ok_or("summary of an unknown connection")?;
        let (up, down) = ((100 + i) as u64, (50 + i) as u64);
        let want = if mirror { (down, up) } else { (up, down) };
        if (s.bytes_sent, s.bytes_received) != want || s.flags & abi::SUMF_PARTIAL != 0 {
            bad += 1;
        }
    }
    ensure_eq!(bad, 0, "summaries with wrong totals");
    Ok(())
}

fn table_full() -> TestResult {
    const N: usize = 100;
    dev::reload(&["max_conns=64"])?;
    let d = fresh()?;
    let s0 = d.status()?;
    ensure_eq!(s0.conn_table_size, 64);
    let (_, _) = many(N)?;
    let sums = summaries(&collect(&d, nsum(2 * N))?);
    let s1 = d.status()?;
    ensure_eq!(sums.len(), 2 * N, "every connection has a summary");
    let partial = sums
        .iter()
        .filter(|s| s.flags & abi::SUMF_PARTIAL != 0)
        .count() as u64;
    ensure_eq!(
        s1.conns_untracked - s0.conns_untracked,
        partial,
        "untracked = partial summaries"
    );
    ensure!(partial >= (2 * N - 64) as u64, "{partial} partial");
    ensure_eq!(s1.conns_tracked, 0, "table empty after all closed");
    drop(d);
    dev::reload(&[])
}

fn json_fields() -> TestResult {
    let d = fresh()?;
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 4, 4)?;
    collect(&d, nsum(2))?;
    let out = sys::run_ok(sys::TOOL, &["dump", "--json"])?;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let ev = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "event" && v["op"] == "connect")
        .ok_or("no connect")?;
    for k in [
        "type", "seq", "time", "time_ns", "op", "family", "proto", "pid", "tid", "uid", "comm",
        "laddr", "lport", "raddr", "rport", "netns", "sock_id", "result",
    ] {
        ensure!(ev.get(k).is_some(), "event lacks {k}: {ev}");
    }
    ensure_eq!(ev["family"], "inet");
    ensure_eq!(ev["proto"], "tcp");
    ensure_eq!(ev["laddr"], "127.0.0.1");
    let sm = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "summary")
        .ok_or("no summary")?;
    for k in [
        "bytes_sent",
        "bytes_received",
        "segs_in",
        "segs_out",
        "retrans",
        "srtt_us",
        "duration_ns",
        "open",
        "close",
        "partial",
        "laddr",
        "lport",
        "raddr",
        "rport",
        "pid",
        "uid",
        "comm",
        "netns",
        "sock_id",
    ] {
        ensure!(sm.get(k).is_some(), "summary lacks {k}: {sm}");
    }
    ensure_eq!(
        sm["bytes_sent"].as_u64().unwrap() + sm["bytes_received"].as_u64().unwrap(),
        8
    );
    ensure_eq!(sm["close"], "fin");
    ensure_eq!(sm["partial"], false);
    Ok(())
}

fn tool_choices() -> TestResult {
    let d = fresh()?;
    let out = sys::run_ok(
        sys::TOOL,
        &["events", "tcp:connect", "accept", "--summaries", "off"],
    )?;
    ensure_eq!(
        out,
        "events              tcp:accept tcp:connect\nsummaries           off\n"
    );
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
    let recs = settle(&d)?;
    let cfg: Vec<_> = recs.iter().filter_map(|r| r.config()).collect();
    ensure_eq!(cfg.len(), 2, "event mask and options audited");
    ensure_eq!(
        (cfg[0].item, cfg[0].old, cfg[0].new),
        (abi::config_item::EVENT_MASK, abi::VALID_EVENT_MASK, 0x30)
    );
    ensure_eq!(
        (cfg[1].item, cfg[1].old, cfg[1].new),
        (abi::config_item::OPTIONS, 1, 0)
    );
    let ops: Vec<u16> = events(&recs).iter().map(|e| e.op).collect();
    ensure_eq!(ops.len(), 2, "{ops:?}");
    ensure_eq!(summaries(&recs).len(), 0);
    sys::run_ok(sys::TOOL, &["events", "all", "--summaries", "on"])?;

    let srv = peer::server(&[], "127.0.0.1:0", 2, 2)?;
    let port = srv.port.to_string();
    let out = sys::run_ok(
        sys::TOOL,
        &["filter", "set", "--port", &port, "--proto", "tcp"],
    )?;
    ensure_eq!(out.trim(), format!("--port {port} --proto tcp"));
    d.drain()?;
    peer::client(&[], &format!("127.0.0.1:{port}"), 2, 2)?;
    srv.finish()?;
    exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 2, 2)?;
    let sums = summaries(&settle(&d)?);
    ensure_eq!(sums.len(), 2, "only the connection to the filtered port");
    let out = sys::run_ok(sys::TOOL, &["filter", "clear"])?;
    ensure_eq!(out.trim(), "no criteria: everything is logged");
    let recs = settle(&d)?;
    let c = recs
        .iter()
        .find_map(|r| r.config())
        .ok_or("clear not audited")?;
    ensure_eq!((c.item, c.old, c.new), (abi::config_item::FILTER, 2, 0));

    for (args, want) in [
        (
            &["filter", "set", "--addr", "10.1.2.3/8"][..],
            "bits are set past the prefix length",
        ),
        (
            &["filter", "set", "--port", "9-1"][..],
            "the range is reversed",
        ),
        (&["events", "tcp:frob"][..], "unknown operation 'tcp:frob'"),
    ] {
        let out = sys::run(sys::TOOL, args)?;
        ensure_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(err.contains(want), "{args:?}: {err}");
    }
    Ok(())
}
