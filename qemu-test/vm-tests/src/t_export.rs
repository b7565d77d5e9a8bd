//! `tcplog export ipfix` to a real collector (issue #13): nfdump's nfcapd, from Debian, receives
//! what the tool exports, and what nfdump then reads from nfcapd's file is compared with the
//! summaries the module wrote for the same connections.
//!
//! nfcapd receives over UDP only (nfdump 1.7 has no IPFIX over TCP or SCTP). Over TCP, the
//! collector is the test's own listener, which keeps the stream of each connection it accepts,
//! goes away and comes back; libfixbuf's ipfixDump, from Debian, then decodes each stream.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, InterimBody, Pod, SummaryBody};

use crate::fixtures::{collect, exchange, fresh, nsum, summaries};
use crate::harness::Harness;
use crate::sys;
use crate::{ensure, ensure_eq};

const NFCAPD: &str = "/usr/local/bin/nfcapd";
const NFDUMP: &str = "/usr/local/bin/nfdump";
const IPFIXDUMP: &str = "/usr/local/bin/ipfixDump";
const PORT: u16 = 9995;
const FLOW_DIR: &str = "/tmp/nfcapd";

/// The connections made over loopback: (the server's address, the host the client connects
/// to, bytes up, bytes down).
const CONNS: [(&str, &str, usize, usize); 3] = [
    ("127.0.0.1:0", "127.0.0.1", 1000, 2000),
    ("127.0.0.1:0", "127.0.0.1", 70_000, 10),
    ("[::1]:0", "[::1]", 4321, 54_321),
];

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "export: tcplog export ipfix --udp to nfdump's nfcapd: what nfdump reads has the addresses, ports, packets, bytes each way and times (ms) of the module's summaries (v4, v6, both ends), nothing lost",
        || with_nfcapd(export_and_compare),
    );
    h.run(
        "export: with interim records every second, nfdump reads each as a flow of its interval: since and age, the deltas each way of packets and IP bytes (both ends), then the summaries",
        || with_nfcapd(interim_to_nfcapd),
    );
    h.run(
        "export: tcplog export ipfix --tcp across a collector restart: records made while it is away (the lost connection's own included) come on the next connection, a new session (sequence 0, templates first), each record once, as ipfixDump decodes them",
        tcp_restart,
    );
}

/// One flow as nfdump shows it, or as the summary says it should be: start and end (ms since
/// the epoch), source, source port, destination, destination port, and packets and bytes from
/// the source and from the destination.
type Row = (u64, u64, IpAddr, u16, IpAddr, u16, u64, u64, u64, u64);

fn addr(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == abi::AF_INET6 {
        IpAddr::from(*a)
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    }
}

/// What a summary should become: a biflow with the end that opened the connection as its source
/// (RFC 5103), its counters as sent by each end.
fn expected(s: &SummaryBody) -> Row {
    let (l, r) = (addr(s.family, &s.laddr), addr(s.family, &s.raddr));
    let start_ms = s.start_ns / 1_000_000;
    let end_ms = (s.start_ns + s.duration_ns) / 1_000_000;
    if s.open == abi::open::PASSIVE {
        (
            start_ms,
            end_ms,
            r,
            s.rport,
            l,
            s.lport,
            s.pkts_in,
            s.ip_bytes_in,
            s.pkts_out,
            s.ip_bytes_out,
        )
    } else {
        (
            start_ms,
            end_ms,
            l,
            s.lport,
            r,
            s.rport,
            s.pkts_out,
            s.ip_bytes_out,
            s.pkts_in,
            s.ip_bytes_in,
        )
    }
}

/// `SECONDS.MILLIS` as nfdump's `%tsr` prints it, in milliseconds.
fn ms(s: &str) -> Result<u64, String> {
    let (secs, frac) = s.split_once('.').ok_or_else(|| format!("time '{s}'"))?;
    let n = |t: &str| t.parse::<u64>().map_err(|e| format!("time '{s}': {e}"));
    ensure!(frac.len() == 3, "time '{s}': not milliseconds");
    Ok(n(secs)? * 1000 + n(frac)?)
}

/// The format nfdump prints each flow in.
const FMT: &str = "fmt:%tsr|%ter|%pr|%sa|%sp|%da|%dp|%ipkt|%ibyt|%opkt|%obyt";

fn parse_row(line: &str) -> Result<Row, String> {
    let f: Vec<&str> = line.split('|').map(str::trim).collect();
    ensure!(f.len() == 11, "nfdump line '{line}': {} fields", f.len());
    ensure_eq!(f[2], "TCP");
    let ip = |t: &str| t.parse::<IpAddr>().map_err(|e| format!("'{t}': {e}"));
    let num = |t: &str| t.parse::<u64>().map_err(|e| format!("'{t}': {e}"));
    let port = |t: &str| t.parse::<u16>().map_err(|e| format!("'{t}': {e}"));
    Ok((
        ms(f[0])?,
        ms(f[1])?,
        ip(f[3])?,
        port(f[4])?,
        ip(f[5])?,
        port(f[6])?,
        num(f[7])?,
        num(f[8])?,
        num(f[9])?,
        num(f[10])?,
    ))
}

/// Whether something listens on UDP port `port` (in /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").ends_with(&want))
        })
    })
}

/// Sends SIGINT or SIGTERM and waits for the process (at most 20 s).
fn stop(child: &mut Child, sig: i32) -> Result<std::process::ExitStatus, String> {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("did not stop within 20 s of the signal".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the exporter's stderr until its first line (it has opened the device and the socket).
fn first_line(err: &mut BufReader<ChildStderr>) -> Result<String, String> {
    let mut line = String::new();
    err.read_line(&mut line).map_err(|e| e.to_string())?;
    Ok(line)
}

/// Runs `test` with nfcapd receiving on 127.0.0.1:PORT into an empty FLOW_DIR.
fn with_nfcapd(test: impl FnOnce(&mut Child) -> Result<(), String>) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(FLOW_DIR);
    std::fs::create_dir_all(FLOW_DIR).map_err(|e| e.to_string())?;
    let mut collector = Command::new(NFCAPD)
        .args([
            "-w",
            FLOW_DIR,
            "-b",
            "127.0.0.1",
            "-p",
            &PORT.to_string(),
            "-t",
            "3600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {NFCAPD}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !udp_bound(PORT) {
        if Instant::now() > deadline {
            let _ = collector.kill();
            return Err(format!("nfcapd did not bind UDP port {PORT} in 20 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let res = test(&mut collector);
    let _ = collector.kill();
    let _ = collector.wait();
    res
}

fn export_and_compare(collector: &mut Child) -> Result<(), String> {
    let d = fresh()?;
    let target = format!("127.0.0.1:{PORT}");
    let mut exporter = Command::new(sys::TOOL)
        .args(["export", "ipfix", &target, "--udp", "--new"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tcplog export: {e}"))?;
    let mut err = BufReader::new(exporter.stderr.take().unwrap());
    let started = first_line(&mut err)?;
    ensure_eq!(
        started.trim_end(),
        format!("tcplog: exporting IPFIX over udp to {target}")
    );
    let mut ports = Vec::new();
    for (bind, host, up, down) in CONNS {
        ports.push(exchange(&[], bind, &[], host, up, down)?.port);
    }
    // Both ends of each connection write a summary.
    let mut recs = collect(&d, nsum(2 * CONNS.len()))?;
    // The exporter sends within its 250 ms poll: give it a second, and see what else came.
    std::thread::sleep(Duration::from_secs(1));
    recs.extend(d.drain()?);
    let sums: Vec<SummaryBody> = summaries(&recs)
        .into_iter()
        .filter(|s| ports.contains(&s.lport) || ports.contains(&s.rport))
        .collect();
    ensure_eq!(sums.len(), 2 * CONNS.len());
    for s in &sums {
        ensure!(
            s.flags & abi::SUMF_IP_COUNTERS != 0,
            "a summary without IP counters: {s:?}"
        );
        let (up, down) = CONNS
            .iter()
            .zip(&ports)
            .find(|(_, p)| **p == s.lport || **p == s.rport)
            .map(|((_, _, u, d), _)| (*u as u64, *d as u64))
            .unwrap();
        let (sent, received) = if s.open == abi::open::ACTIVE {
            (up, down)
        } else {
            (down, up)
        };
        ensure_eq!((s.bytes_sent, s.bytes_received), (sent, received));
    }
    // Every record the module wrote while the exporter ran, ours and any other (an INTERIM
    // record, a connection of the system's), is one the exporter sent.
    let all_flows = recs
        .iter()
        .filter(|r| r.hdr.rtype == abi::rtype::SUMMARY || r.hdr.rtype == abi::rtype::INTERIM)
        .count();
    let rows = stop_and_read(exporter, err, collector, all_flows)?;
    let mut got: Vec<Row> = rows
        .into_iter()
        .filter(|r| ports.contains(&r.3) || ports.contains(&r.5))
        .collect();
    let mut want: Vec<Row> = sums.iter().map(expected).collect();
    got.sort();
    want.sort();
    if got != want {
        return Err(format!(
            "nfdump has\n{}\nthe summaries say\n{}",
            rows_text(&got),
            rows_text(&want)
        ));
    }
    // Both ends' summaries of a connection make a biflow from its client, the initiator.
    for (port, (_, host, _, _)) in ports.iter().zip(CONNS) {
        let ends: Vec<&Row> = want.iter().filter(|r| r.5 == *port).collect();
        ensure_eq!(ends.len(), 2);
        let client: IpAddr = host.trim_matches(['[', ']']).parse().unwrap();
        ensure!(
            ends.iter().all(|r| r.2 == client && r.4 == client),
            "port {port}: {ends:?}"
        );
    }
    Ok(())
}

/// Stops the exporter, checks that it exported `all_flows` records and lost none, stops
/// nfcapd and returns what nfdump reads from its file (as many flows).
fn stop_and_read(
    mut exporter: Child,
    mut err: BufReader<ChildStderr>,
    collector: &mut Child,
    all_flows: usize,
) -> Result<Vec<Row>, String> {
    let st = stop(&mut exporter, libc::SIGINT)?;
    let mut rest = String::new();
    err.read_to_string(&mut rest).map_err(|e| e.to_string())?;
    ensure!(st.success(), "tcplog export exited with {st}: {rest}");
    let last = rest.lines().last().unwrap_or_default();
    ensure!(
        last.starts_with(&format!(
            "tcplog: {all_flows} records exported over udp in "
        )) && last.ends_with(" messages, 0 lost"),
        "the exporter's totals: '{last}' (all it said: {rest}), for {all_flows} records"
    );
    // nfcapd writes its file when it stops.
    let st = stop(collector, libc::SIGTERM)?;
    ensure!(st.success(), "nfcapd exited with {st}");
    // Usually one file; two if the test crossed the hour nfcapd rotates its files on.
    let files: Vec<String> = std::fs::read_dir(FLOW_DIR)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| !p.ends_with(".current") && p.contains("nfcapd."))
        .collect();
    ensure!(!files.is_empty(), "nfcapd wrote no file in {FLOW_DIR}");
    let mut rows: Vec<Row> = Vec::new();
    for f in &files {
        let out = sys::run_ok(NFDUMP, &["-q", "-r", f, "-o", FMT])?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            rows.push(parse_row(line)?);
        }
    }
    ensure_eq!(rows.len(), all_flows);
    Ok(rows)
}

fn rows_text(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| format!("  {r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts `tcplog export ipfix TARGET ARGS...` and waits for its first line.
fn start_exporter(target: &str, args: &[&str]) -> Result<(Child, BufReader<ChildStderr>), String> {
    let mut exporter = Command::new(sys::TOOL)
        .args(["export", "ipfix", target])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tcplog export: {e}"))?;
    let mut err = BufReader::new(exporter.stderr.take().unwrap());
    let started = first_line(&mut err)?;
    ensure!(
        started.starts_with("tcplog: exporting IPFIX over "),
        "tcplog export said: {started}"
    );
    Ok((exporter, err))
}

/// Accepts one connection within 20 s.
fn accept(l: &TcpListener) -> Result<TcpStream, String> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
        ensure!(
            Instant::now() < deadline,
            "no connection from the exporter in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads what comes until nothing has come for 1.5 s.
fn read_until_idle(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut last = Instant::now();
    let mut buf = [0u8; 65536];
    while last.elapsed() < Duration::from_millis(1500) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(got)
}

/// A flow record as ipfixDump shows it: element name to value, for the elements compared.
type Fields = BTreeMap<String, String>;

/// What ipfixDump decodes from a stream: the sequence number of its first message, whether
/// templates come before the first flow record, and the flow records.
fn ipfix_dump(stream: &[u8], path: &str) -> Result<(u32, bool, Vec<Fields>), String> {
    std::fs::write(path, stream).map_err(|e| e.to_string())?;
    let out = sys::run_ok(IPFIXDUMP, &["--rfc5610", "-i", path])?;
    const KEEP: [&str; 6] = [
        "sourceTransportPort",
        "destinationTransportPort",
        "octetTotalCount",
        "reverseOctetTotalCount",
        "packetTotalCount",
        "reversePacketTotalCount",
    ];
    let mut first_seq = None;
    let mut template_seen = false;
    let mut templates_first = false;
    let mut flows: Vec<Fields> = Vec::new();
    let mut current: Option<Fields> = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("message length:") {
            if first_seq.is_none() {
                let n = rest
                    .split("sequence number:")
                    .nth(1)
                    .and_then(|x| x.split_whitespace().next())
                    .ok_or_else(|| format!("ipfixDump line '{t}'"))?;
                first_seq = Some(n.parse::<u32>().map_err(|e| e.to_string())?);
            }
        } else if t == "--- template record ---" {
            template_seen = true;
        } else if t.starts_with("--- data record") {
            flows.extend(current.take().filter(|f| !f.is_empty()));
            current = Some(Fields::new());
        } else if let (Some(f), Some((name, value))) = (current.as_mut(), t.split_once(" : ")) {
            // "(29305/85)        reverseOctetTotalCount : 2416"
            let name = name.split_whitespace().last().unwrap_or_default();
            let name = name.rsplit(')').next().unwrap_or(name);
            if KEEP.contains(&name) {
                if f.is_empty() && flows.is_empty() {
                    templates_first = template_seen;
                }
                f.insert(name.to_owned(), value.trim().to_owned());
            }
        }
    }
    flows.extend(current.take().filter(|f| !f.is_empty()));
    Ok((first_seq.unwrap_or(u32::MAX), templates_first, flows))
}

/// The fields ipfixDump should show for the flow of a summary (times are compared with
/// nfdump's, over UDP).
fn expected_fields(s: &SummaryBody) -> Fields {
    let r = expected(s);
    let mut f = Fields::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_owned(), v);
    };
    put("sourceTransportPort", r.3.to_string());
    put("destinationTransportPort", r.5.to_string());
    put("packetTotalCount", r.6.to_string());
    put("octetTotalCount", r.7.to_string());
    put("reversePacketTotalCount", r.8.to_string());
    put("reverseOctetTotalCount", r.9.to_string());
    f
}

fn tcp_restart() -> Result<(), String> {
    let d = fresh()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let target = format!("127.0.0.1:{port}");
    let (mut exporter, mut err) = start_exporter(&target, &["--tcp", "--new"])?;
    let mut c1 = accept(&l)?;
    let a = exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 3000, 4000)?.port;
    let mut recs = collect(&d, nsum(2))?;
    let s1 = read_until_idle(&mut c1)?;
    // The collector goes away: its connection and its listener.
    drop(c1);
    drop(l);
    std::thread::sleep(Duration::from_millis(700));
    let b = exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 5000, 6000)?.port;
    // The exporter's connection to the collector is a TCP connection like any other: both its
    // ends' summaries are records to export, on the next connection.
    let of = |ports: [u16; 2]| {
        move |r: &[crate::dev::Rec]| {
            summaries(r)
                .iter()
                .filter(|s| ports.contains(&s.lport) || ports.contains(&s.rport))
                .count()
                >= 4
        }
    };
    recs.extend(collect(&d, of([b, port]))?);
    // And comes back on the same port.
    let l = TcpListener::bind(&target).map_err(|e| e.to_string())?;
    let mut c2 = accept(&l)?;
    let s2 = read_until_idle(&mut c2)?;
    let st = stop(&mut exporter, libc::SIGINT)?;
    let mut rest = String::new();
    err.read_to_string(&mut rest).map_err(|e| e.to_string())?;
    ensure!(st.success(), "tcplog export exited with {st}: {rest}");
    let last = rest.lines().last().unwrap_or_default();
    ensure!(
        last.starts_with("tcplog: 6 records exported over tcp in ")
            && last.ends_with(" messages, 0 lost, 0 sent again; 2 connections"),
        "the exporter's totals: '{last}' (all it said: {rest})"
    );
    ensure!(
        rest.contains("lost the connection") && rest.contains("connected to"),
        "the exporter's notes: {rest}"
    );
    let sums = summaries(&recs);
    let want = |ports: &[u16]| -> Vec<Fields> {
        let mut v: Vec<Fields> = sums
            .iter()
            .filter(|s| ports.contains(&s.lport) || ports.contains(&s.rport))
            .map(expected_fields)
            .collect();
        v.sort();
        v
    };
    let (first, second) = ([a], [b, port]);
    for (stream, ports, path) in [
        (&s1, &first[..], "/tmp/tcp1.ipfix"),
        (&s2, &second[..], "/tmp/tcp2.ipfix"),
    ] {
        let (seq, templates_first, mut flows) = ipfix_dump(stream, path)?;
        ensure_eq!(seq, 0);
        ensure!(templates_first, "{path}: a flow record before any template");
        flows.sort();
        let expect = want(ports);
        ensure_eq!(expect.len(), 2 * ports.len());
        if flows != expect {
            return Err(format!(
                "{path}: ipfixDump has\n{flows:#?}\nthe summaries say\n{expect:#?}"
            ));
        }
    }
    Ok(())
}

/// What an interim record should become: a flow of its interval (since the previous one, or the
/// start, to its time), with the deltas of that interval, oriented as the summary's.
fn expected_interim(i: &InterimBody) -> Row {
    let s = &i.summary;
    let (l, r) = (addr(s.family, &s.laddr), addr(s.family, &s.raddr));
    let start_ms = i.since_ns / 1_000_000;
    let end_ms = (s.start_ns + s.duration_ns) / 1_000_000;
    if s.open == abi::open::PASSIVE {
        (
            start_ms,
            end_ms,
            r,
            s.rport,
            l,
            s.lport,
            i.delta_pkts_in,
            i.delta_ip_bytes_in,
            i.delta_pkts_out,
            i.delta_ip_bytes_out,
        )
    } else {
        (
            start_ms,
            end_ms,
            l,
            s.lport,
            r,
            s.rport,
            i.delta_pkts_out,
            i.delta_ip_bytes_out,
            i.delta_pkts_in,
            i.delta_ip_bytes_in,
        )
    }
}

fn interim_to_nfcapd(collector: &mut Child) -> Result<(), String> {
    let d = fresh()?;
    sys::run_ok(sys::TOOL, &["config", "--interim", "1"])?;
    let res = interim_rows(collector, &d);
    sys::run_ok(sys::TOOL, &["config", "--interim", "off"])?;
    res
}

fn interim_rows(collector: &mut Child, d: &crate::dev::Dev) -> Result<(), String> {
    let target = format!("127.0.0.1:{PORT}");
    let (exporter, err) = start_exporter(&target, &["--udp", "--new"])?;
    // One connection, with data every 250 ms for 2.6 s: three intervals or so, none idle.
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (mut server, _) = l.accept().map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        server.read_to_end(&mut sink).map(|_| sink.len())
    });
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(2600) {
        std::io::Write::write_all(&mut client, &[7u8; 500]).map_err(|e| e.to_string())?;
        sent += 500;
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(client);
    let got = reader
        .join()
        .map_err(|_| "the reader panicked".to_string())?
        .map_err(|e| e.to_string())?;
    ensure_eq!(got, sent);
    let mut recs = collect(d, nsum(2))?;
    std::thread::sleep(Duration::from_secs(1));
    recs.extend(d.drain()?);
    let ours = |s: &SummaryBody| s.lport == port || s.rport == port;
    let interims: Vec<InterimBody> = recs
        .iter()
        .filter(|r| r.hdr.rtype == abi::rtype::INTERIM)
        .map(|r| InterimBody::read_from(&r.body).unwrap())
        .filter(|i| ours(&i.summary))
        .collect();
    ensure!(
        interims.len() >= 4,
        "{} interim records of the connection's two ends in 2.6 s at 1 s",
        interims.len()
    );
    let all_flows = recs
        .iter()
        .filter(|r| r.hdr.rtype == abi::rtype::SUMMARY || r.hdr.rtype == abi::rtype::INTERIM)
        .count();
    let rows = stop_and_read(exporter, err, collector, all_flows)?;
    let mut got: Vec<Row> = rows
        .into_iter()
        .filter(|r| r.3 == port || r.5 == port)
        .collect();
    let mut want: Vec<Row> = interims.iter().map(expected_interim).collect();
    want.extend(summaries(&recs).iter().filter(|s| ours(s)).map(expected));
    got.sort();
    want.sort();
    if got != want {
        return Err(format!(
            "nfdump has\n{}\nthe interim records and summaries say\n{}",
            rows_text(&got),
            rows_text(&want)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfdump_lines_are_read_to_the_millisecond() {
        // As nfdump 1.7.5 prints a flow with FMT.
        let line = "1700000000.123|1700000002.623|TCP  |       127.0.0.1| 40000|             ::1|    80|       9|    1468|       8|    2416";
        assert_eq!(
            parse_row(line),
            Ok((
                1_700_000_000_123,
                1_700_000_002_623,
                IpAddr::from([127, 0, 0, 1]),
                40000,
                "::1".parse().unwrap(),
                80,
                9,
                1468,
                8,
                2416
            ))
        );
        assert_eq!(
            ms("1700000000.5"),
            Err("time '1700000000.5': not milliseconds".into())
        );
        assert!(
            parse_row("1700000000.123|1700000002.623|UDP|1.2.3.4|1|1.2.3.4|2|1|2|3|4").is_err()
        );
    }
}
