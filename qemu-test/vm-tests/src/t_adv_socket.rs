//! Adversarial sockets: every kind of socket a program can make, and the odd ways to use the
//! ordinary ones, each checked against the exact fields of the records the device returns.
//!
//! - MPTCP (`IPPROTO_MPTCP`, made by an unprivileged user): its sockets are not TCP sockets; no
//!   event or summary may describe them as TCP, and their TCP subflows (kernel sockets) get
//!   summaries whose counts the kernel's own per-subflow counters confirm.
//! - Raw sockets of protocol TCP or UDP, ICMP datagram ("ping") sockets, UDP-Lite: no events,
//!   no summaries.
//! - TCP Fast Open (data in the SYN), TCP_REPAIR (connected without a handshake), SO_REUSEPORT
//!   groups, SCM_RIGHTS, close and shutdown from another thread while one is blocked, io_uring,
//!   sendfile and splice, every kind of shutdown: exact owners and exact byte counts.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tcplog_ctl::{self as abi, close, op, open, EventBody};

use crate::adv::{
    self, accept, accept_raw, bind, blocked_in, check_exact, comm, comm_str, connect, connect_raw,
    ev_line, events, field, gather, gettid, listen, listener, local, pair, pattern, read_exact,
    read_to_eof, say, set_knob, setsockopt_int, shutdown, socket, socket_raw, sum_line,
    sums_between, tcp_info, wait_for, write_all, Helper, Sa,
};
use crate::dev::Rec;
use crate::fixtures::{fresh, summaries};
use crate::harness::{Harness, TestResult};
use crate::sys::{self, errno_name};
use crate::{ensure, ensure_eq};

const IPPROTO_MPTCP: i32 = 262;
const SOL_MPTCP: i32 = 284;
const MPTCP_INFO: i32 = 1;
const MPTCP_TCPINFO: i32 = 2;
const MPTCP_INFO_FLAG_FALLBACK: u32 = 1;
const IPPROTO_UDPLITE: i32 = 136;
const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCP_FASTOPEN: i32 = 23;
const SYS_ACCEPT4: i64 = 288;
const SYS_CONNECT: i64 = 42;
const SOCK_RAW: u8 = 3;

const ME: &str = "tcplog-vm-tests";

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    adv::run(
        h,
        "adv socket: MPTCP over 127.0.0.1 by nobody: no TCP record for MPTCP sockets, subflows exact",
        || mptcp(libc::AF_INET),
    );
    adv::run(
        h,
        "adv socket: MPTCP over ::1 by nobody: no TCP record for MPTCP sockets, subflows exact",
        || mptcp(libc::AF_INET6),
    );
    adv::run(
        h,
        "adv socket: raw TCP and UDP sockets (v4, v6) and ping sockets make no events, no summaries",
        raw_kinds,
    );
    adv::run(h, "adv socket: UDP-Lite is not reported as UDP", udplite);
    adv::run(
        h,
        "adv socket: TCP Fast Open: data in the SYN, exact summaries both sides",
        fast_open,
    );
    adv::run(
        h,
        "adv socket: TCP_REPAIR: connected without a handshake, closed in repair mode",
        repair_alone,
    );
    adv::run(
        h,
        "adv socket: TCP_REPAIR: two repaired sockets become a connection; its data counted exactly",
        repair_pair,
    );
    adv::run(
        h,
        "adv socket: SO_REUSEPORT group of 3 processes: each accept names the process that accepted",
        reuseport,
    );
    adv::run(
        h,
        "adv socket: a socket passed over SCM_RIGHTS and closed elsewhere: close names the closer",
        scm_rights,
    );
    adv::run(
        h,
        "adv socket: shutdown or close from another thread while one is blocked in accept",
        blocked_accept,
    );
    adv::run(
        h,
        "adv socket: shutdown or close from another thread while one is blocked in connect",
        blocked_connect,
    );
    adv::run(
        h,
        "adv socket: connects interrupted by signals or death: results are errnos a process sees",
        interrupted_connect,
    );
    adv::run(
        h,
        "adv socket: io_uring accept, connect, send, recv, close: right process, exact summaries",
        io_uring,
    );
    adv::run(
        h,
        "adv socket: sendfile and splice: exact summary bytes",
        sendfile_splice,
    );
    adv::run(
        h,
        "adv socket: shutdown SHUT_WR, SHUT_RD, SHUT_RDWR: close reason and bytes exact",
        shutdowns,
    );
    adv::run(
        h,
        "adv socket: no KASAN, KFENCE, BUG or WARN in the kernel log",
        adv::kernel_log_clean,
    );
}

/// Helper modes of this file (run as separate processes).
pub fn helper(mode: &str, args: &[&str]) -> Option<TestResult> {
    Some(match mode {
        "--adv-mptcp" => h_mptcp(args),
        "--adv-rp-listen" => h_reuseport(args),
        "--adv-scm-close" => h_scm_close(args),
        "--adv-connect-hang" => h_connect_hang(),
        _ => return None,
    })
}

fn me() -> u32 {
    std::process::id()
}

fn num(args: &[&str], i: usize) -> Result<u64, String> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("argument {i} missing in {args:?}"))
}

fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

// MPTCP.

/// `--adv-mptcp FAMILY BYTES`: an MPTCP listener and an MPTCP client on loopback in one process
/// (run as nobody); BYTES each way, then the client closes, the server reads EOF and closes.
/// Prints `done port P cport C ...` with what the kernel says of the connection.
fn h_mptcp(args: &[&str]) -> TestResult {
    let family = if num(args, 0)? == 6 {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let n = num(args, 1)? as usize;
    let l = match socket_raw(family, libc::SOCK_STREAM, IPPROTO_MPTCP) {
        Ok(l) => l,
        Err(e) => {
            say(&format!("unsupported {}", errno_name(e)));
            return Ok(());
        }
    };
    bind(&l, &Sa::lo(family, 0))?;
    listen(&l, 8)?;
    let port = local(&l)?.port();
    let c = socket(family, libc::SOCK_STREAM, IPPROTO_MPTCP)?;
    connect(&c, &Sa::lo(family, port))?;
    let s = accept(&l)?;
    let cport = local(&c)?.port();
    write_all(raw(&c), &pattern(n, 1))?;
    read_exact(raw(&s), n)?;
    write_all(raw(&s), &pattern(n, 2))?;
    read_exact(raw(&c), n)?;
    let proto = adv::getsockopt_bytes(raw(&c), libc::SOL_SOCKET, libc::SO_PROTOCOL, 4)
        .map(|b| i32::from_ne_bytes(b[..4].try_into().unwrap()))
        .unwrap_or(-1);
    let info = |fd: RawFd| -> (u32, u8) {
        match adv::getsockopt_bytes(fd, SOL_MPTCP, MPTCP_INFO, 96) {
            Ok(b) if b.len() >= 12 => (u32::from_ne_bytes(b[8..12].try_into().unwrap()), b[0]),
            _ => (u32::MAX, 0),
        }
    };
    let (cflags, csub) = info(raw(&c));
    let (sflags, ssub) = info(raw(&s));
    let (cn, cs, cr) = subflow_counts(raw(&c));
    let (sn, ss, sr) = subflow_counts(raw(&s));
    drop(c);
    let eof = read_to_eof(raw(&s))?;
    drop(s);
    drop(l);
    say(&format!(
        "done port {port} cport {cport} proto {proto} cflags {cflags} sflags {sflags} \
         csub {csub} ssub {ssub} cn {cn} csent {cs} crecv {cr} sn {sn} ssent {ss} srecv {sr} eof {eof}"
    ));
    Ok(())
}

/// The kernel's own counters of an MPTCP socket's subflows (`MPTCP_TCPINFO`): how many, and
/// the first one's data bytes sent (less retransmitted) and received.
fn subflow_counts(fd: RawFd) -> (u32, u64, u64) {
    const HDR: usize = 16;
    let mut buf = vec![0u8; HDR + 4 * adv::TCP_INFO_LEN];
    buf[0..4].copy_from_slice(&(HDR as u32).to_ne_bytes());
    buf[12..16].copy_from_slice(&(adv::TCP_INFO_LEN as u32).to_ne_bytes());
    let mut len = buf.len() as u32;
    // SAFETY: `buf` has `len` writable bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_MPTCP,
            MPTCP_TCPINFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return (u32::MAX, u64::MAX, u64::MAX);
    }
    let n = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    if n == 0 {
        return (0, 0, 0);
    }
    let t = adv::parse_tcp_info(&buf[HDR..HDR + adv::TCP_INFO_LEN]);
    (n, t.bytes_sent - t.bytes_retrans, t.bytes_received)
}

fn mptcp(family: i32) -> TestResult {
    const N: u64 = 12345;
    let d = fresh()?;
    let fam = if family == libc::AF_INET6 { "6" } else { "4" };
    let mut h = Helper::spawn(
        &adv::me(),
        &["--adv-mptcp", fam, &N.to_string()],
        Some(sys::NOBODY),
        None,
    )?;
    let pid = h.pid();
    let line = h.line()?;
    h.finish()?;
    ensure!(!line.starts_with("unsupported"), "MPTCP: {line}");
    let line = line
        .strip_prefix("done ")
        .ok_or_else(|| format!("helper said {line:?}"))?;
    adv::note(format!("kernel: {line}"));
    let port = field(line, "port")? as u16;
    let cport = field(line, "cport")? as u16;
    ensure_eq!(
        field(line, "proto")?,
        262,
        "SO_PROTOCOL of the MPTCP socket"
    );
    for side in ["cflags", "sflags"] {
        ensure_eq!(
            field(line, side)? & u64::from(MPTCP_INFO_FLAG_FALLBACK),
            0,
            "{side}: the connection fell back to TCP"
        );
    }
    // The kernel's per-subflow counters, read while the connection was open.
    let (cn, sn) = (field(line, "cn")?, field(line, "sn")?);
    ensure_eq!((cn, sn), (1, 1), "subflows per side");
    let kernel = (
        field(line, "csent")?,
        field(line, "crecv")?,
        field(line, "ssent")?,
        field(line, "srecv")?,
    );
    ensure_eq!(
        kernel,
        (N, N, N, N),
        "the kernel's subflow counters (client sent, received, server sent, received)"
    );
    // The subflows end after the MPTCP sockets; wait for both summaries.
    let recs = gather(&d, 20, |r| sums_between(r, port, cport).len() >= 2)?;
    let mut problems = Vec::new();
    // Every event about the MPTCP sockets says MPTCP: not the helper's, and not one made in
    // softirq about them (attributed to an owner or to no process). Their TCP subflows are
    // the kernel's own sockets and make no events.
    let about = |e: &&abi::EventBody| e.pid == pid || e.lport == port || e.rport == port;
    let evs = events(&recs);
    for e in evs.iter().filter(about) {
        if e.flags & abi::EVF_MPTCP == 0 || e.protocol != abi::IPPROTO_TCP {
            problems.push(format!("event does not say MPTCP: {}", ev_line(e)));
        }
    }
    if !evs
        .iter()
        .filter(about)
        .any(|e| e.op == abi::op::TCP_CONNECT && e.result == 0)
    {
        problems.push("no successful MPTCP connect event".to_owned());
    }
    // No summary may be garbage; one per MPTCP connection (MPTCP's data bytes) and one per
    // subflow (TCP's), linked to its MPTCP connection.
    for s in summaries(&recs) {
        if let Err(e) = adv::sane_summary(&s) {
            problems.push(e);
        }
    }
    let all = sums_between(&recs, port, cport);
    for s in &all {
        adv::note(format!("summary: {}", sum_line(s)));
    }
    let (msks, sums): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|s| s.flags & abi::SUMF_MPTCP != 0);
    if msks.len() != 2 {
        problems.push(format!(
            "{} MPTCP summaries, where each side has one",
            msks.len()
        ));
    }
    for m in &msks {
        if (m.bytes_sent, m.bytes_received) != (N, N) || m.flags & abi::SUMF_PARTIAL != 0 {
            problems.push(format!("MPTCP summary not exact: {}", sum_line(m)));
        }
    }
    let fam = if family == libc::AF_INET6 {
        abi::AF_INET6
    } else {
        abi::AF_INET
    };
    let cl: Vec<_> = sums.iter().filter(|s| s.lport == cport).collect();
    let sv: Vec<_> = sums.iter().filter(|s| s.lport == port).collect();
    if cl.len() != 1 || sv.len() != 1 {
        problems.push(format!(
            "{} client-side and {} server-side summaries, where each subflow has one",
            cl.len(),
            sv.len()
        ));
    }
    for (s, open) in cl
        .iter()
        .map(|s| (s, open::ACTIVE))
        .chain(sv.iter().map(|s| (s, open::PASSIVE)))
    {
        // The kernel's counters said N each way; nothing was retransmitted.
        if (s.bytes_sent, s.bytes_received, s.retrans) != (N, N, 0)
            || s.open != open
            || s.flags & abi::SUMF_PARTIAL != 0
            || s.family != fam
        {
            problems.push(format!("subflow summary not exact: {}", sum_line(s)));
        }
        // Its MPTCP connection is the one on the same side (same local port).
        if !msks
            .iter()
            .any(|m| m.sock_id == s.parent_id && m.lport == s.lport)
        {
            problems.push(format!(
                "subflow's parent_id {:#x} is no MPTCP summary of its side",
                s.parent_id
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n  "));
    Ok(())
}

// Raw, ping and UDP-Lite sockets.

/// A TCP header (20 bytes) with only RST set: nobody answers a reset.
fn tcp_rst(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x04;
    h
}

/// A UDP header and payload.
fn udp_dgram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A TCP socket made and closed, proving that logging works while the sockets under test make
/// nothing: returns when its close event is read, with every record until then.
fn sentinel(d: &crate::dev::Dev, mut recs: Vec<Rec>) -> Result<Vec<Rec>, String> {
    let s = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    drop(s);
    let more = gather(d, 5, |r| {
        events(r)
            .iter()
            .any(|e| e.op == op::TCP_CLOSE && e.pid == me())
    })?;
    recs.extend(more);
    Ok(recs)
}

/// Of `evs`, the ones from this process other than the sentinel's create and close.
fn ours_but_sentinel(evs: &[EventBody]) -> Result<Vec<EventBody>, String> {
    let mine: Vec<EventBody> = evs.iter().filter(|e| e.pid == me()).copied().collect();
    let close = mine
        .iter()
        .rev()
        .find(|e| e.op == op::TCP_CLOSE && e.sock_type == 1)
        .ok_or("the sentinel socket's close was not logged")?;
    let id = close.sock_id;
    let create = mine
        .iter()
        .any(|e| e.op == op::TCP_CREATE && e.sock_id == id);
    ensure!(create, "the sentinel socket's create was not logged");
    Ok(mine.into_iter().filter(|e| e.sock_id != id).collect())
}

fn raw_kinds() -> TestResult {
    let d = fresh()?;
    let mut done = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        for proto in [libc::IPPROTO_TCP, libc::IPPROTO_UDP] {
            let s = socket(family, libc::SOCK_RAW, proto)?;
            bind(&s, &Sa::lo(family, 0))?;
            connect(&s, &Sa::lo(family, 9))?;
            let pkt = if proto == libc::IPPROTO_TCP {
                tcp_rst(40000, 9)
            } else {
                udp_dgram(40000, 9, b"raw datagram")
            };
            write_all(raw(&s), &pkt)?;
            drop(s);
            done.push(format!("raw {family}/{proto}"));
        }
    }
    // ICMP datagram sockets, allowed to gid 0 for the test.
    let old = set_knob("/proc/sys/net/ipv4/ping_group_range", "0 0")?;
    let r = (|| -> TestResult {
        for (family, proto, ty) in [
            (libc::AF_INET, libc::IPPROTO_ICMP, 8u8),
            (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8),
        ] {
            let s = socket(family, libc::SOCK_DGRAM, proto)?;
            bind(&s, &Sa::lo(family, 0))?;
            connect(&s, &Sa::lo(family, 0))?;
            write_all(raw(&s), &[ty, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g'])?;
            drop(s);
        }
        Ok(())
    })();
    set_knob(
        "/proc/sys/net/ipv4/ping_group_range",
        &old.replace('\t', " "),
    )?;
    r?;
    let recs = sentinel(&d, Vec::new())?;
    let evs = events(&recs);
    let others = ours_but_sentinel(&evs)?;
    ensure!(
        others.is_empty(),
        "events about raw or ping sockets:\n  {}",
        others.iter().map(ev_line).collect::<Vec<_>>().join("\n  ")
    );
    let raw_evs: Vec<String> = evs
        .iter()
        .filter(|e| e.sock_type == SOCK_RAW)
        .map(ev_line)
        .collect();
    ensure!(raw_evs.is_empty(), "SOCK_RAW events: {raw_evs:?}");
    let sums = summaries(&recs);
    ensure!(
        sums.is_empty(),
        "summaries: {:?}",
        sums.iter().map(sum_line).collect::<Vec<_>>()
    );
    Ok(())
}

fn udplite() -> TestResult {
    let d = fresh()?;
    for family in [libc::AF_INET, libc::AF_INET6] {
        match socket_raw(family, libc::SOCK_DGRAM, IPPROTO_UDPLITE) {
            Err(e) => adv::note(format!(
                "kernel: socket({family}, SOCK_DGRAM, IPPROTO_UDPLITE) fails with {} (no UDP-Lite in this kernel)",
                errno_name(e)
            )),
            Ok(s) => {
                adv::note(format!("kernel: UDP-Lite socket of family {family} made"));
                bind(&s, &Sa::lo(family, 0))?;
                connect(&s, &Sa::lo(family, 9))?;
                write_all(raw(&s), b"lite")?;
                drop(s);
            }
        }
    }
    let recs = sentinel(&d, Vec::new())?;
    let others = ours_but_sentinel(&events(&recs))?;
    ensure!(
        others.is_empty(),
        "events about UDP-Lite sockets:\n  {}",
        others.iter().map(ev_line).collect::<Vec<_>>().join("\n  ")
    );
    Ok(())
}

// TCP Fast Open.

fn fast_open() -> TestResult {
    let knob = "/proc/sys/net/ipv4/tcp_fastopen";
    let old = set_knob(knob, "3")?;
    let r = fast_open_inner();
    set_knob(knob, &old)?;
    r
}

fn fast_open_inner() -> TestResult {
    let d = fresh()?;
    let passive0 = adv::netstat("TcpExt", "TCPFastOpenPassive")?;
    let l = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    setsockopt_int(raw(&l), libc::IPPROTO_TCP, TCP_FASTOPEN, 16).map_err(errno_name)?;
    bind(&l, &Sa::lo(libc::AF_INET, 0))?;
    listen(&l, 16)?;
    let port = local(&l)?.port();
    let dst = Sa::lo(libc::AF_INET, port);
    // The first connection asks for a cookie; the second sends its first 3000 bytes in the SYN.
    let mut conns = Vec::new();
    for round in 0..2u64 {
        let (in_syn, up, down) = (3000usize, 5000 + round as usize, 4000 + round as usize);
        let data = pattern(up, 3);
        let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
        // SAFETY: `data` and `dst` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                raw(&c),
                data.as_ptr().cast(),
                in_syn,
                libc::MSG_FASTOPEN,
                dst.ptr(),
                dst.len,
            )
        };
        ensure!(n >= 0, "sendto MSG_FASTOPEN: {}", errno_name(sys::errno()));
        let s = accept(&l)?;
        write_all(raw(&c), &data[n as usize..])?;
        read_exact(raw(&s), up)?;
        write_all(raw(&s), &pattern(down, 4))?;
        read_exact(raw(&c), down)?;
        let ti = tcp_info(raw(&c))?;
        let cport = local(&c)?.port();
        drop(c);
        read_to_eof(raw(&s))?;
        drop(s);
        conns.push((cport, up as u64, down as u64, ti));
    }
    drop(l);
    let passive = adv::netstat("TcpExt", "TCPFastOpenPassive")? - passive0;
    let syn_data = conns[1].3.options & adv::TCPI_OPT_SYN_DATA != 0;
    adv::note(format!(
        "kernel: second connection's SYN data acknowledged: {syn_data}; TCPFastOpenPassive +{passive}; first connection's options {:#x}",
        conns[0].3.options
    ));
    ensure!(
        syn_data && passive == 1,
        "Fast Open was not used (SYN data acked {syn_data}, TCPFastOpenPassive +{passive})"
    );
    let recs = gather(&d, 10, |r| summaries(r).len() >= 4)?;
    adv::all_sane(&recs)?;
    for (i, (cport, up, down, _)) in conns.iter().enumerate() {
        check_exact(&recs, port, *cport, *up, *down, me()).map_err(|e| {
            format!(
                "connection {} ({}): {e}",
                i + 1,
                ["cookie request", "data in SYN"][i]
            )
        })?;
    }
    Ok(())
}

// TCP_REPAIR.

fn repair_on(fd: RawFd, send_seq: u32, recv_seq: u32) -> TestResult {
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1)
        .map_err(|e| format!("TCP_REPAIR: {}", errno_name(e)))?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE).map_err(errno_name)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, send_seq as i32).map_err(errno_name)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE).map_err(errno_name)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, recv_seq as i32).map_err(errno_name)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, 0).map_err(errno_name)?;
    Ok(())
}

/// A closed port: a listener's, closed again.
fn closed_port() -> Result<u16, String> {
    let (l, port) = listener(libc::AF_INET)?;
    drop(l);
    Ok(port)
}

fn repair_alone() -> TestResult {
    let d = fresh()?;
    let dport = closed_port()?;
    let s = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    // Sequence numbers just short of wrapping, both ways.
    repair_on(raw(&s), 0xffff_ff00, 0x7fff_fff0)?;
    bind(&s, &Sa::lo(libc::AF_INET, 0))?;
    connect(&s, &Sa::lo(libc::AF_INET, dport))?;
    let lport = local(&s)?.port();
    let ti = tcp_info(raw(&s))?;
    ensure_eq!(
        ti.state,
        adv::TCP_ESTABLISHED,
        "state after a repair-mode connect"
    );
    adv::note(format!(
        "kernel: after a repair-mode connect: segments in/out {}/{}, bytes sent {} received {}",
        ti.segs_in, ti.segs_out, ti.bytes_sent, ti.bytes_received
    ));
    // Closed while still in repair mode: the kernel aborts it quietly (tcp_disconnect: no
    // packet, sk_err ECONNABORTED).
    drop(s);
    let recs = gather(&d, 5, |r| !sums_between(r, lport, dport).is_empty())?;
    adv::all_sane(&recs)?;
    let evs: Vec<EventBody> = events(&recs)
        .into_iter()
        .filter(|e| e.pid == me())
        .collect();
    for e in &evs {
        adv::note(format!("event: {}", ev_line(e)));
    }
    let conn = evs
        .iter()
        .find(|e| e.op == op::TCP_CONNECT)
        .ok_or("no connect event")?;
    ensure_eq!(
        (conn.result, conn.lport, conn.rport),
        (0, lport, dport),
        "connect event"
    );
    let sums = sums_between(&recs, lport, dport);
    for s in &sums {
        adv::note(format!("summary: {}", sum_line(s)));
    }
    ensure!(sums.len() <= 1, "{} summaries", sums.len());
    if let Some(s) = sums.first() {
        // Nothing went on the wire, nothing came: zero is exact; the close was an abort.
        ensure_eq!(
            (
                s.bytes_sent,
                s.bytes_received,
                s.segs_in,
                s.segs_out,
                s.retrans
            ),
            (0, 0, 0, 0, 0),
            "counters: {}",
            sum_line(s)
        );
        // tcp_disconnect() aborts it (sk_err ECONNABORTED): no FIN went either way.
        ensure!(
            s.close == close::TIMEOUT || s.close == close::UNKNOWN,
            "close {} for a connection aborted in repair mode: {}",
            s.close,
            sum_line(s)
        );
        if s.flags & abi::SUMF_PARTIAL == 0 {
            ensure_eq!((s.open, s.pid), (open::ACTIVE, me()), "owner");
        }
    }
    Ok(())
}

/// `struct tcp_repair_window`.
fn repair_window(fd: RawFd, peer_seq: u32, own_rcv_nxt: u32) -> TestResult {
    let w: [u32; 5] = [peer_seq, 65535, 65535, 65535, own_rcv_nxt];
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_ne_bytes()).collect();
    adv::setsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &bytes)
        .map_err(|e| format!("TCP_REPAIR_WINDOW: {}", errno_name(e)))
}

fn repair_pair() -> TestResult {
    const X: u32 = 0xffff_f000; // A's sequence numbers: they wrap after 4096 bytes.
    const Y: u32 = 0x1000_0000; // B's.
    const UP: usize = 7000;
    const DOWN: usize = 3000;
    let d = fresh()?;
    let a = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let b = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    repair_on(raw(&a), X, Y)?;
    repair_on(raw(&b), Y, X)?;
    bind(&a, &Sa::lo(libc::AF_INET, 0))?;
    bind(&b, &Sa::lo(libc::AF_INET, 0))?;
    let (pa, pb) = (local(&a)?.port(), local(&b)?.port());
    connect(&a, &Sa::lo(libc::AF_INET, pb))?;
    connect(&b, &Sa::lo(libc::AF_INET, pa))?;
    repair_window(raw(&a), Y, Y)?;
    repair_window(raw(&b), X, X)?;
    for s in [&a, &b] {
        setsockopt_int(raw(s), libc::IPPROTO_TCP, TCP_REPAIR, 0).map_err(errno_name)?;
    }
    write_all(raw(&a), &pattern(UP, 5))?;
    read_exact(raw(&b), UP)?;
    write_all(raw(&b), &pattern(DOWN, 6))?;
    read_exact(raw(&a), DOWN)?;
    let (ta, tb) = (tcp_info(raw(&a))?, tcp_info(raw(&b))?);
    adv::note(format!(
        "kernel: A acked {} sent {} recv {}; B acked {} sent {} recv {}",
        ta.bytes_acked,
        ta.bytes_sent,
        ta.bytes_received,
        tb.bytes_acked,
        tb.bytes_sent,
        tb.bytes_received
    ));
    drop(a);
    read_to_eof(raw(&b))?;
    drop(b);
    let recs = gather(&d, 10, |r| sums_between(r, pa, pb).len() >= 2)?;
    adv::all_sane(&recs)?;
    let sums = sums_between(&recs, pa, pb);
    for s in &sums {
        adv::note(format!("summary: {}", sum_line(s)));
    }
    ensure_eq!(sums.len(), 2, "summaries");
    let sa = sums
        .iter()
        .find(|s| s.lport == pa)
        .ok_or("no summary of A")?;
    let sb = sums
        .iter()
        .find(|s| s.lport == pb)
        .ok_or("no summary of B")?;
    for (s, sent, recv) in [(sa, UP, DOWN), (sb, DOWN, UP)] {
        if s.flags & abi::SUMF_PARTIAL != 0 {
            continue;
        }
        ensure_eq!(
            (s.bytes_sent, s.bytes_received),
            (sent as u64, recv as u64),
            "bytes of {}",
            sum_line(s)
        );
        ensure_eq!(
            (s.open, s.pid, s.close),
            (open::ACTIVE, me(), close::FIN),
            "{}",
            sum_line(s)
        );
    }
    Ok(())
}

// SO_REUSEPORT.

/// `--adv-rp-listen PORT`: joins the SO_REUSEPORT group on 127.0.0.1:PORT (0: makes it), prints
/// `port P`, then serves connections (reads a byte, writes one, closes), printing `acc CPORT`
/// for each, until its standard input closes.
fn h_reuseport(args: &[&str]) -> TestResult {
    let l = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    setsockopt_int(raw(&l), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).map_err(errno_name)?;
    bind(&l, &Sa::v4(adv::LO4, num(args, 0)? as u16))?;
    listen(&l, 64)?;
    say(&format!("port {}", local(&l)?.port()));
    loop {
        let mut p = [
            libc::pollfd {
                fd: raw(&l),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `p` holds two pollfds.
        unsafe { libc::poll(p.as_mut_ptr(), 2, 10_000) };
        if p[0].revents & libc::POLLIN != 0 {
            let s = accept(&l)?;
            let peer = adv::peer(&s)?;
            read_exact(raw(&s), 1)?;
            write_all(raw(&s), b"y")?;
            drop(s);
            say(&format!("acc {}", peer.port()));
            continue;
        }
        if p[1].revents != 0 {
            return Ok(());
        }
    }
}

fn reuseport() -> TestResult {
    const CONNS: usize = 12;
    let d = fresh()?;
    let mut helpers = Vec::new();
    let mut port = 0u16;
    for i in 0..3 {
        let name = format!("adv-rp-{i}");
        let exe = adv::named_exe(&name)?;
        let (ours, theirs) = adv::unix_pair()?;
        let mut h = Helper::spawn(
            &exe,
            &["--adv-rp-listen", &port.to_string()],
            None,
            Some(theirs),
        )?;
        port = h.expect("port")?.parse().map_err(|_| "port")?;
        helpers.push((h, ours, name));
    }
    let mut cports = Vec::new();
    for _ in 0..CONNS {
        let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
        connect(&c, &Sa::lo(libc::AF_INET, port))?;
        write_all(raw(&c), b"x")?;
        read_exact(raw(&c), 1)?;
        cports.push(local(&c)?.port());
    }
    // Who accepted what, as the helpers say.
    let mut who = std::collections::HashMap::new();
    let mut per = Vec::new();
    for (mut h, ours, name) in helpers {
        drop(ours);
        let pid = h.pid();
        let mut n = 0;
        while let Ok(l) = h.line() {
            if let Some(p) = l.strip_prefix("acc ") {
                who.insert(p.parse::<u16>().map_err(|_| "acc")?, (pid, name.clone()));
                n += 1;
            }
        }
        h.finish()?;
        per.push(n);
    }
    adv::note(format!("kernel: connections per listener {per:?}"));
    ensure_eq!(who.len(), CONNS, "connections accepted");
    let recs = gather(&d, 10, |r| summaries(r).len() >= 2 * CONNS)?;
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    for cp in &cports {
        let (pid, name) = who.get(cp).ok_or("a connection nobody accepted")?;
        let acc: Vec<&EventBody> = evs
            .iter()
            .filter(|e| e.op == op::TCP_ACCEPT && e.rport == *cp)
            .collect();
        ensure_eq!(acc.len(), 1, "accept events of client port {cp}");
        let e = acc[0];
        ensure_eq!(
            (e.pid, e.tid, comm_str(&e.comm), e.lport),
            (*pid, *pid, name.clone(), port),
            "accept of {cp}: {}",
            ev_line(e)
        );
        let sv = sums_between(&recs, port, *cp);
        let sv = sv
            .iter()
            .find(|s| s.lport == port)
            .ok_or("no server summary")?;
        ensure_eq!(
            (sv.pid, sv.comm, sv.bytes_sent, sv.bytes_received),
            (*pid, comm(name), 1, 1),
            "server summary of {cp}"
        );
    }
    Ok(())
}

// SCM_RIGHTS.

/// `--adv-scm-close BYTES`: receives a socket on standard input (SCM_RIGHTS), writes BYTES on
/// it, closes it, prints `closed`.
fn h_scm_close(args: &[&str]) -> TestResult {
    let n = num(args, 0)? as usize;
    let fd = adv::recv_fd(0)?;
    write_all(raw(&fd), &pattern(n, 7))?;
    drop(fd);
    say("closed");
    Ok(())
}

fn scm_rights() -> TestResult {
    let d = fresh()?;
    let (c, s, port, cport) = pair(libc::AF_INET)?;
    write_all(raw(&c), &pattern(10, 8))?;
    let (ours, theirs) = adv::unix_pair()?;
    let exe = adv::named_exe("adv-closer")?;
    let mut h = Helper::spawn(&exe, &["--adv-scm-close", "100"], None, Some(theirs))?;
    let closer = h.pid();
    adv::send_fd(raw(&ours), raw(&c)).map_err(errno_name)?;
    drop(c);
    h.expect("closed")?;
    h.finish()?;
    read_exact(raw(&s), 110)?;
    ensure_eq!(read_to_eof(raw(&s))?, 0, "bytes after the 110");
    drop(s);
    let recs = gather(&d, 5, |r| sums_between(r, port, cport).len() >= 2)?;
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    let conn = evs
        .iter()
        .find(|e| e.op == op::TCP_CONNECT && e.lport == cport)
        .ok_or("no connect event")?;
    ensure_eq!(conn.pid, me(), "connect");
    let of = |o: u16| -> Vec<&EventBody> {
        evs.iter()
            .filter(|e| e.op == o && e.sock_id == conn.sock_id)
            .collect()
    };
    let closes = of(op::TCP_CLOSE);
    ensure_eq!(closes.len(), 1, "close events of the passed socket");
    ensure_eq!(
        (closes[0].pid, closes[0].tid, comm_str(&closes[0].comm)),
        (closer, closer, "adv-closer".to_owned()),
        "close: {}",
        ev_line(closes[0])
    );
    let disc = of(op::TCP_DISCONNECT);
    ensure_eq!(disc.len(), 1, "disconnect events of the passed socket");
    ensure_eq!(
        (
            disc[0].pid,
            disc[0].flags & (abi::EVF_OWNER | abi::EVF_NO_PROCESS)
        ),
        (closer, 0),
        "the FIN is sent by the closer's close: {}",
        ev_line(disc[0])
    );
    // The connection's owner is who connected; the bytes are everyone's.
    check_exact(&recs, port, cport, 110, 0, me())?;
    Ok(())
}

// Blocked in accept or connect while another thread shuts down or closes.

/// Starts `f` in a thread and waits until that thread is blocked in syscall `nr`; returns the
/// thread's handle and id.
fn blocked_thread<T: Send + 'static>(
    nr: i64,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<(std::thread::JoinHandle<T>, u32), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(gettid()).ok();
        f()
    });
    let tid = rx.recv().map_err(|_| "thread died")?;
    ensure!(
        wait_for(10, || blocked_in(me(), tid) == Some(nr)),
        "thread {tid} never blocked in syscall {nr}"
    );
    // Blocked in the syscall is not yet asleep in it: give it a moment.
    std::thread::sleep(Duration::from_millis(100));
    Ok((t, tid))
}

fn blocked_accept() -> TestResult {
    let d = fresh()?;
    let main = gettid();
    // 1. shutdown(SHUT_RDWR) wakes the accept with EINVAL; then the listener is closed.
    let (l1, p1) = listener(libc::AF_INET)?;
    let fd1 = raw(&l1);
    let (t, _) = blocked_thread(SYS_ACCEPT4, move || accept_raw(fd1).map(drop))?;
    shutdown(fd1, libc::SHUT_RDWR)?;
    let r1 = t.join().map_err(|_| "thread panicked")?;
    ensure_eq!(r1, Err(libc::EINVAL), "accept after shutdown");
    drop(l1);
    // 2. close() does not wake it (the accept holds the file); a connection does, and the
    // listener's last reference goes when the accept returns, in the accepting thread.
    let (l2, p2) = listener(libc::AF_INET)?;
    let fd2 = l2.into_raw_fd();
    let (t, tid2) = blocked_thread(SYS_ACCEPT4, move || -> Result<(), String> {
        let s = accept_raw(fd2).map_err(errno_name)?;
        write_all(raw(&s), b"hello")?;
        Ok(())
    })?;
    // SAFETY: Closing the descriptor this function owns; the thread only uses it in accept.
    ensure_eq!(unsafe { libc::close(fd2) }, 0, "close the listener");
    std::thread::sleep(Duration::from_millis(100));
    ensure!(
        blocked_in(me(), tid2) == Some(SYS_ACCEPT4),
        "close woke the accept"
    );
    let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    connect(&c, &Sa::lo(libc::AF_INET, p2))?;
    let cport = local(&c)?.port();
    t.join().map_err(|_| "thread panicked")??;
    read_exact(raw(&c), 5)?;
    ensure_eq!(read_to_eof(raw(&c))?, 0, "after hello");
    drop(c);
    let recs = gather(&d, 5, |r| sums_between(r, p2, cport).len() >= 2)?;
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    for e in evs.iter().filter(|e| e.pid == me()) {
        adv::note(format!("event: {}", ev_line(e)));
    }
    // Listener 1: no accept; its close by the main thread.
    let l1_ev: Vec<&EventBody> = evs.iter().filter(|e| e.lport == p1).collect();
    ensure!(
        l1_ev.iter().all(|e| e.op != op::TCP_ACCEPT),
        "an accept that failed was logged"
    );
    let c1: Vec<_> = l1_ev.iter().filter(|e| e.op == op::TCP_CLOSE).collect();
    ensure_eq!(c1.len(), 1, "close events of listener 1");
    ensure_eq!((c1[0].pid, c1[0].tid), (me(), main), "close of listener 1");
    // Listener 2: the accept, and the listener's close, both in the accepting thread.
    let acc: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_ACCEPT).collect();
    ensure_eq!(acc.len(), 1, "accept events");
    ensure_eq!(
        (acc[0].pid, acc[0].tid, acc[0].lport, acc[0].rport),
        (me(), tid2, p2, cport),
        "accept: {}",
        ev_line(acc[0])
    );
    let listen2 = evs
        .iter()
        .find(|e| e.op == op::TCP_LISTEN && e.lport == p2)
        .ok_or("no listen event of listener 2")?;
    let c2: Vec<_> = evs
        .iter()
        .filter(|e| e.op == op::TCP_CLOSE && e.sock_id == listen2.sock_id)
        .collect();
    ensure_eq!(c2.len(), 1, "close events of listener 2");
    ensure_eq!(
        (c2[0].pid, c2[0].tid),
        (me(), tid2),
        "listener 2's close comes with its last reference, in the accepting thread"
    );
    check_exact(&recs, p2, cport, 0, 5, me())?;
    Ok(())
}

fn blocked_connect() -> TestResult {
    adv::blackhole()?;
    let d = fresh()?;
    let main = gettid();
    let dst = Sa::v4(adv::BLACKHOLE, 9);
    // 1. shutdown(SHUT_RDWR) of a socket whose SYNs get no answer ends the connect.
    let c1 = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let fd1 = raw(&c1);
    let (t, tid1) = blocked_thread(SYS_CONNECT, move || connect_raw(fd1, &dst))?;
    shutdown(fd1, libc::SHUT_RDWR)?;
    let r1 = t.join().map_err(|_| "thread panicked")?;
    adv::note(format!(
        "kernel: a blocked connect ends with {:?} when another thread shuts the socket down",
        r1.map_err(errno_name)
    ));
    let err1 = r1.err().ok_or("the connect succeeded")?;
    let port1 = local(&c1)?.port();
    drop(c1);
    // 2. close() does not end it; its send timeout does (EINPROGRESS), and the socket goes with
    // the connect's reference, in the connecting thread.
    let c2 = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 500_000,
    };
    // SAFETY: `tv` is a readable timeval.
    let rc = unsafe {
        libc::setsockopt(
            raw(&c2),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    ensure_eq!(rc, 0, "SO_SNDTIMEO");
    let fd2 = c2.into_raw_fd();
    let (t, tid2) = blocked_thread(SYS_CONNECT, move || connect_raw(fd2, &dst))?;
    // SAFETY: Closing the descriptor this function owns; the thread only uses it in connect.
    ensure_eq!(unsafe { libc::close(fd2) }, 0, "close");
    let r2 = t.join().map_err(|_| "thread panicked")?;
    ensure_eq!(r2, Err(libc::EINPROGRESS), "connect after its send timeout");
    let recs = gather(&d, 5, |r| {
        events(r)
            .iter()
            .filter(|e| e.op == op::TCP_CLOSE && e.pid == me())
            .count()
            >= 2
    })?;
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    for e in evs.iter().filter(|e| e.pid == me() || e.rport == 9) {
        adv::note(format!("event: {}", ev_line(e)));
    }
    let conns: Vec<&EventBody> = evs.iter().filter(|e| e.op == op::TCP_CONNECT).collect();
    let first: Vec<_> = conns.iter().filter(|e| e.tid == tid1).collect();
    ensure_eq!(first.len(), 1, "connect events of socket 1");
    ensure_eq!(
        (
            first[0].pid,
            first[0].result,
            first[0].raddr[..4].to_vec(),
            first[0].rport,
            first[0].lport
        ),
        (me(), err1, adv::BLACKHOLE.to_vec(), 9, port1),
        "connect of socket 1: {}",
        ev_line(first[0])
    );
    let id1 = first[0].sock_id;
    let close1: Vec<_> = evs
        .iter()
        .filter(|e| e.op == op::TCP_CLOSE && e.sock_id == id1 && e.lport == port1)
        .collect();
    ensure_eq!(close1.len(), 1, "close events of socket 1");
    ensure_eq!(close1[0].tid, main, "socket 1 closed by the main thread");
    let second: Vec<_> = conns.iter().filter(|e| e.tid == tid2).collect();
    ensure!(!second.is_empty(), "no connect event of socket 2");
    ensure_eq!(
        (
            second[0].pid,
            second[0].result,
            second[0].flags & abi::EVF_ASYNC
        ),
        (me(), libc::EINPROGRESS, 0),
        "connect of socket 2: {}",
        ev_line(second[0])
    );
    let (id2, port2) = (second[0].sock_id, second[0].lport);
    // Its outcome: no RST came, so it was not refused.
    for e in &second[1..] {
        ensure!(
            e.flags & abi::EVF_ASYNC != 0 && e.result != libc::ECONNREFUSED,
            "socket 2's later connect event claims {}: {}",
            errno_name(e.result),
            ev_line(e)
        );
    }
    let close2: Vec<_> = evs
        .iter()
        .filter(|e| e.op == op::TCP_CLOSE && e.sock_id == id2 && e.lport == port2)
        .collect();
    ensure_eq!(close2.len(), 1, "close events of socket 2");
    ensure_eq!(
        close2[0].tid,
        tid2,
        "socket 2 goes with the connect's reference, in the connecting thread"
    );
    let sums: Vec<_> = summaries(&recs)
        .into_iter()
        .filter(|s| s.rport == 9)
        .collect();
    ensure!(
        sums.is_empty(),
        "summaries of connections that never were: {:?}",
        sums.iter().map(sum_line).collect::<Vec<_>>()
    );
    Ok(())
}

// Interrupted connects.

/// `--adv-connect-hang`: blocks in connect() to the black hole until killed.
fn h_connect_hang() -> TestResult {
    let s = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let r = connect_raw(raw(&s), &Sa::v4(adv::BLACKHOLE, 9));
    Err(format!("connect returned {r:?}"))
}

extern "C" fn on_signal(_: libc::c_int) {}

fn handle(sig: i32, flags: i32) -> TestResult {
    // SAFETY: A zeroed sigaction with a handler that does nothing, installed for one signal.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        ensure!(
            libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0,
            "sigaction {sig}"
        );
    }
    Ok(())
}

fn interrupted_connect() -> TestResult {
    use std::os::unix::thread::JoinHandleExt;
    adv::blackhole()?;
    let d = fresh()?;
    let dst = Sa::v4(adv::BLACKHOLE, 9);
    handle(libc::SIGUSR1, 0)?;
    handle(libc::SIGUSR2, libc::SA_RESTART)?;
    // 1. A signal without SA_RESTART: the connect fails with EINTR.
    let c1 = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let fd1 = raw(&c1);
    let (t, tid1) = blocked_thread(SYS_CONNECT, move || connect_raw(fd1, &dst))?;
    // SAFETY: The thread is alive (blocked in connect).
    unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR1) };
    let r1 = t.join().map_err(|_| "thread panicked")?;
    ensure_eq!(
        r1,
        Err(libc::EINTR),
        "connect interrupted without SA_RESTART"
    );
    drop(c1);
    // 2. A signal with SA_RESTART: the process never sees it; the connect goes on until a
    // shutdown ends it.
    let c2 = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let fd2 = raw(&c2);
    let (t, tid2) = blocked_thread(SYS_CONNECT, move || connect_raw(fd2, &dst))?;
    // SAFETY: As above.
    unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR2) };
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        wait_for(5, || blocked_in(me(), tid2) == Some(SYS_CONNECT)),
        "the connect did not restart"
    );
    std::thread::sleep(Duration::from_millis(200));
    shutdown(fd2, libc::SHUT_RDWR)?;
    let r2 = t.join().map_err(|_| "thread panicked")?;
    let err2 = r2.err().ok_or("connect 2 succeeded")?;
    drop(c2);
    // 3. A process killed in connect sees nothing at all.
    let mut h = Helper::spawn(&adv::me(), &["--adv-connect-hang"], None, None)?;
    let hp = h.pid();
    ensure!(
        wait_for(10, || blocked_in(hp, hp) == Some(SYS_CONNECT)),
        "the helper never blocked in connect"
    );
    std::thread::sleep(Duration::from_millis(200));
    h.child.kill().map_err(|e| e.to_string())?;
    let _ = h.child.wait();
    let recs = gather(&d, 5, |r| {
        events(r)
            .iter()
            .any(|e| e.op == op::TCP_CLOSE && e.pid == hp)
    })?;
    let evs = events(&recs);
    let conns = |pred: &dyn Fn(&EventBody) -> bool| -> Vec<EventBody> {
        evs.iter()
            .filter(|e| e.op == op::TCP_CONNECT && pred(e))
            .copied()
            .collect()
    };
    let mut problems = Vec::new();
    for (what, got, want) in [
        (
            "no SA_RESTART",
            conns(&|e| e.tid == tid1),
            vec![libc::EINTR],
        ),
        ("SA_RESTART", conns(&|e| e.tid == tid2), vec![err2]),
    ] {
        let results: Vec<i32> = got.iter().map(|e| e.result).collect();
        adv::note(format!("{what}: connect results logged {results:?}"));
        // The process saw one connect call with one result; a restart it never saw may add
        // events, but none with an errno it cannot see, and the last one is what it saw.
        if results.last() != want.last() || results.iter().any(|&r| r >= 512) {
            problems.push(format!(
                "{what}: logged {results:?}, the process saw {want:?}"
            ));
        }
    }
    let killed: Vec<i32> = conns(&|e| e.pid == hp).iter().map(|e| e.result).collect();
    adv::note(format!("killed in connect: results logged {killed:?}"));
    if killed.iter().any(|&r| r >= 512) {
        problems.push(format!(
            "killed in connect: logged {killed:?}, a kernel-internal errno"
        ));
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

// io_uring.

fn io_uring() -> TestResult {
    use crate::uring::{self, Ring, Sqe};
    const UP: usize = 3333;
    const DOWN: usize = 2222;
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    ensure!(
        disabled.trim() == "0" || disabled.is_empty(),
        "io_uring is disabled (kernel.io_uring_disabled = {})",
        disabled.trim()
    );
    let d = fresh()?;
    let mut ring = Ring::new(16)?;
    let (l, port) = listener(libc::AF_INET)?;
    let c = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let dst = Sa::lo(libc::AF_INET, port);
    let (lfd, cfd) = (l.into_raw_fd(), c.into_raw_fd());
    ring.push(Sqe {
        opcode: uring::OP_ACCEPT,
        fd: lfd,
        op_flags: libc::SOCK_CLOEXEC as u32,
        user_data: 1,
        ..Sqe::default()
    })?;
    ring.push(Sqe {
        opcode: uring::OP_CONNECT,
        fd: cfd,
        addr: dst.ptr() as u64,
        off: u64::from(dst.len),
        user_data: 2,
        ..Sqe::default()
    })?;
    let done = ring.submit_and_wait(2, 2)?;
    let res = |v: &[uring::Cqe], u: u64| v.iter().find(|c| c.user_data == u).map(|c| c.res);
    let sfd = res(&done, 1).ok_or("no accept completion")?;
    ensure!(sfd >= 0, "io_uring accept: {}", errno_name(-sfd));
    ensure_eq!(res(&done, 2), Some(0), "io_uring connect");
    // SAFETY: Wrapping our own descriptor only to ask its port; forgotten right after.
    let cport = {
        let tmp = unsafe { OwnedFd::from_raw_fd(cfd) };
        let p = local(&tmp)?.port();
        let _ = tmp.into_raw_fd();
        p
    };
    let up = pattern(UP, 9);
    let mut got = vec![0u8; UP];
    let down = pattern(DOWN, 10);
    let mut got_down = vec![0u8; DOWN];
    let io = |ring: &mut Ring, fd: i32, opcode: u8, buf: *const u8, len: usize, ud: u64| {
        ring.push(Sqe {
            opcode,
            fd,
            addr: buf as u64,
            len: len as u32,
            op_flags: if opcode == uring::OP_RECV {
                libc::MSG_WAITALL as u32
            } else {
                0
            },
            user_data: ud,
            ..Sqe::default()
        })
    };
    io(&mut ring, cfd, uring::OP_SEND, up.as_ptr(), UP, 3)?;
    io(&mut ring, sfd, uring::OP_RECV, got.as_mut_ptr(), UP, 4)?;
    let done = ring.submit_and_wait(2, 2)?;
    ensure_eq!(
        (res(&done, 3), res(&done, 4)),
        (Some(UP as i32), Some(UP as i32)),
        "send and recv up"
    );
    ensure!(got == up, "data up differs");
    io(&mut ring, sfd, uring::OP_SEND, down.as_ptr(), DOWN, 5)?;
    io(
        &mut ring,
        cfd,
        uring::OP_RECV,
        got_down.as_mut_ptr(),
        DOWN,
        6,
    )?;
    let done = ring.submit_and_wait(2, 2)?;
    ensure_eq!(
        (res(&done, 5), res(&done, 6)),
        (Some(DOWN as i32), Some(DOWN as i32)),
        "send and recv down"
    );
    ensure!(got_down == down, "data down differs");
    // Close the client, then the server and the listener, all through the ring.
    for (i, fd) in [cfd, sfd, lfd].into_iter().enumerate() {
        ring.push(Sqe {
            opcode: uring::OP_CLOSE,
            fd,
            user_data: 10 + i as u64,
            ..Sqe::default()
        })?;
        let done = ring.submit_and_wait(1, 1)?;
        ensure_eq!(done[0].res, 0, "io_uring close of fd {fd}");
    }
    drop(ring);
    let recs = gather(&d, 5, |r| sums_between(r, port, cport).len() >= 2)?;
    adv::all_sane(&recs)?;
    let evs = events(&recs);
    for e in evs
        .iter()
        .filter(|e| e.lport == port || e.rport == port || e.lport == cport)
    {
        adv::note(format!("event: {}", ev_line(e)));
    }
    let by_me = |e: &EventBody| {
        e.pid == me() && e.uid == 0 && (e.comm == comm(ME) || comm_str(&e.comm).starts_with("iou-"))
    };
    let acc: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_ACCEPT).collect();
    ensure_eq!(acc.len(), 1, "accept events");
    ensure!(by_me(acc[0]), "accept: {}", ev_line(acc[0]));
    ensure_eq!((acc[0].lport, acc[0].rport), (port, cport), "accept ports");
    let conn: Vec<_> = evs
        .iter()
        .filter(|e| e.op == op::TCP_CONNECT && e.lport == cport)
        .collect();
    // io_uring tries the connect without blocking (EINPROGRESS unless it completed at once),
    // then, once the socket is writable, calls connect again, which returns 0: that call only
    // asks about the connect in progress, whose outcome is reported once, async; it is not
    // reported (README: calls that only ask are not).
    ensure!(!conn.is_empty(), "no connect event");
    for e in &conn {
        ensure!(by_me(e), "connect: {}", ev_line(e));
    }
    let results: Vec<i32> = conn.iter().map(|e| e.result).collect();
    adv::note(format!(
        "kernel: io_uring's connect calls returned {results:?} (async outcomes included)"
    ));
    let sync: Vec<i32> = conn
        .iter()
        .filter(|e| e.flags & abi::EVF_ASYNC == 0)
        .map(|e| e.result)
        .collect();
    let asynchronous: Vec<i32> = conn
        .iter()
        .filter(|e| e.flags & abi::EVF_ASYNC != 0)
        .map(|e| e.result)
        .collect();
    ensure!(
        sync == [0] || sync == [libc::EINPROGRESS],
        "connect calls logged with {sync:?}"
    );
    // A connect that returned EINPROGRESS has its outcome reported once: established (0).
    if sync[0] == libc::EINPROGRESS {
        ensure_eq!(asynchronous, vec![0], "the asynchronous outcome");
    } else {
        ensure_eq!(
            asynchronous,
            Vec::<i32>::new(),
            "an outcome of a connect that completed"
        );
    }
    let closes: Vec<_> = evs.iter().filter(|e| e.op == op::TCP_CLOSE).collect();
    ensure_eq!(closes.len(), 3, "close events (client, server, listener)");
    for e in &closes {
        ensure!(by_me(e), "close: {}", ev_line(e));
    }
    check_exact(&recs, port, cport, UP as u64, DOWN as u64, me())?;
    Ok(())
}

// sendfile and splice.

fn sendfile_splice() -> TestResult {
    const UP: usize = 100_000;
    const DOWN: usize = 54_321;
    let d = fresh()?;
    let path = "/tmp/adv-sendfile";
    std::fs::write(path, pattern(UP, 11)).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let (c, s, port, cport) = pair(libc::AF_INET)?;
    let sender = std::thread::spawn({
        let cfd = raw(&c);
        let ffd = file.as_raw_fd();
        move || -> Result<(), String> {
            let mut left = UP;
            while left > 0 {
                // SAFETY: Descriptors this test owns; a null offset uses the file's.
                let n = unsafe { libc::sendfile(cfd, ffd, std::ptr::null_mut(), left) };
                ensure!(n > 0, "sendfile: {} ({})", n, errno_name(sys::errno()));
                left -= n as usize;
            }
            Ok(())
        }
    });
    // The server takes the bytes out of its socket with splice, through a pipe.
    let mut p = [0; 2];
    // SAFETY: `p` has room for two descriptors.
    ensure_eq!(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe"
    );
    // SAFETY: Two new descriptors nobody else owns.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    while got < UP {
        // SAFETY: Descriptors this test owns; null offsets for a socket and a pipe.
        let n = unsafe {
            libc::splice(
                raw(&s),
                std::ptr::null_mut(),
                raw(&pw),
                std::ptr::null_mut(),
                UP - got,
                0,
            )
        };
        ensure!(
            n > 0,
            "splice from the socket: {} ({})",
            n,
            errno_name(sys::errno())
        );
        let mut left = n as usize;
        while left > 0 {
            // SAFETY: `buf` is writable.
            let r = unsafe { libc::read(raw(&pr), buf.as_mut_ptr().cast(), left.min(buf.len())) };
            ensure!(r > 0, "read the pipe");
            left -= r as usize;
        }
        got += n as usize;
    }
    sender.join().map_err(|_| "sender panicked")??;
    // And answers with splice from a pipe into the socket.
    write_all(raw(&pw), &pattern(DOWN, 12))?;
    let mut left = DOWN;
    while left > 0 {
        // SAFETY: As above.
        let n = unsafe {
            libc::splice(
                raw(&pr),
                std::ptr::null_mut(),
                raw(&s),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        ensure!(
            n > 0,
            "splice into the socket: {}",
            errno_name(sys::errno())
        );
        left -= n as usize;
    }
    read_exact(raw(&c), DOWN)?;
    drop(c);
    ensure_eq!(read_to_eof(raw(&s))?, 0, "after the data");
    drop(s);
    let recs = gather(&d, 5, |r| sums_between(r, port, cport).len() >= 2)?;
    adv::all_sane(&recs)?;
    check_exact(&recs, port, cport, UP as u64, DOWN as u64, me())?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

// shutdown.

fn shutdowns() -> TestResult {
    const UP: usize = 1111;
    const DOWN: usize = 2222;
    let d = fresh()?;
    let mut conns = Vec::new();
    // 1. The client half-closes (SHUT_WR) after sending; the server answers, then closes.
    {
        let (c, s, port, cport) = pair(libc::AF_INET)?;
        write_all(raw(&c), &pattern(UP, 13))?;
        shutdown(raw(&c), libc::SHUT_WR)?;
        ensure_eq!(read_to_eof(raw(&s))?, UP, "server reads to the half-close");
        write_all(raw(&s), &pattern(DOWN, 14))?;
        drop(s);
        ensure_eq!(read_to_eof(raw(&c))?, DOWN, "client reads the answer");
        drop(c);
        conns.push(("client SHUT_WR", port, cport, close::FIN, close::FIN));
    }
    // 2. The client shuts its receiving side (SHUT_RD: nothing is sent), the server answers and
    // closes; the client reads what came (Linux still queues and delivers it), then closes.
    {
        let (c, s, port, cport) = pair(libc::AF_INET)?;
        write_all(raw(&c), &pattern(UP, 15))?;
        shutdown(raw(&c), libc::SHUT_RD)?;
        read_exact(raw(&s), UP)?;
        write_all(raw(&s), &pattern(DOWN, 16))?;
        drop(s);
        ensure!(
            wait_for(5, || tcp_info(raw(&c)).map(|t| t.state)
                == Ok(adv::TCP_CLOSE_WAIT)),
            "the server's FIN never came"
        );
        let app = read_to_eof(raw(&c))?;
        adv::note(format!(
            "kernel: after SHUT_RD, read() still returned {app} of the {DOWN} bytes that arrived"
        ));
        drop(c);
        // What the application left unread, the close resets (RFC 2525).
        let (cc, sc) = if app == DOWN {
            (close::FIN, close::FIN)
        } else {
            (close::RST_SENT, close::RST_RECEIVED)
        };
        conns.push(("client SHUT_RD", port, cport, cc, sc));
    }
    // 3. After the exchange the client shuts both ways (SHUT_RDWR), then closes.
    {
        let (c, s, port, cport) = pair(libc::AF_INET)?;
        write_all(raw(&c), &pattern(UP, 17))?;
        read_exact(raw(&s), UP)?;
        write_all(raw(&s), &pattern(DOWN, 18))?;
        read_exact(raw(&c), DOWN)?;
        shutdown(raw(&c), libc::SHUT_RDWR)?;
        ensure_eq!(read_to_eof(raw(&s))?, 0, "server reads EOF");
        drop(s);
        drop(c);
        conns.push(("client SHUT_RDWR", port, cport, close::FIN, close::FIN));
    }
    // 4. The server half-closes first (SHUT_WR on the passive side).
    {
        let (c, s, port, cport) = pair(libc::AF_INET)?;
        write_all(raw(&s), &pattern(DOWN, 19))?;
        shutdown(raw(&s), libc::SHUT_WR)?;
        ensure_eq!(
            read_to_eof(raw(&c))?,
            DOWN,
            "client reads to the half-close"
        );
        write_all(raw(&c), &pattern(UP, 20))?;
        drop(c);
        ensure_eq!(read_to_eof(raw(&s))?, UP, "server reads the rest");
        drop(s);
        conns.push(("server SHUT_WR", port, cport, close::FIN, close::FIN));
    }
    let recs = gather(&d, 5, |r| summaries(r).len() >= 2 * conns.len())?;
    adv::all_sane(&recs)?;
    for (what, port, cport, cc, sc) in conns {
        let sums = sums_between(&recs, port, cport);
        for s in &sums {
            adv::note(format!("{what}: {}", sum_line(s)));
        }
        ensure_eq!(sums.len(), 2, "{what}: summaries");
        let cl = sums.iter().find(|s| s.lport == cport).ok_or("client")?;
        let sv = sums.iter().find(|s| s.lport == port).ok_or("server")?;
        ensure_eq!(
            (
                cl.bytes_sent,
                cl.bytes_received,
                sv.bytes_sent,
                sv.bytes_received
            ),
            (UP as u64, DOWN as u64, DOWN as u64, UP as u64),
            "{what}: bytes"
        );
        ensure_eq!((cl.close, sv.close), (cc, sc), "{what}: close reasons");
        ensure_eq!((cl.pid, sv.pid), (me(), me()), "{what}: owners");
        ensure_eq!(
            (cl.flags & abi::SUMF_PARTIAL, sv.flags & abi::SUMF_PARTIAL),
            (0, 0),
            "{what}: partial"
        );
    }
    Ok(())
}
