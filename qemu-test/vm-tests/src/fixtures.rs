//! Helpers shared by the VM suite's test files: fresh readers, collecting records, connections
//! between helper processes, namespaces joined by veth, packet rules and packet records.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tcplog_ctl::{self as abi, PacketBody, Pod, SummaryBody};

use crate::dev::{Dev, Rec};
use crate::peer;
use crate::sys;

/// The inode of a named network namespace (`ip netns add NAME`).
pub fn netns_named(name: &str) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(format!("/run/netns/{name}")).map_err(|e| e.to_string())?;
    Ok(md.ino() as u32)
}

/// A reader positioned after everything buffered, with the default configuration and no filter.
pub fn fresh() -> Result<Dev, String> {
    let d = Dev::rw()?;
    d.set_config(&abi::Config::DEFAULT)
        .map_err(sys::errno_name)?;
    set_filter(&d, &abi::Filter::default())?;
    d.seek_end()?;
    Ok(d)
}

/// Replaces the in-kernel criteria.
pub fn set_filter(d: &Dev, f: &abi::Filter) -> Result<(), String> {
    let mut f = *f;
    d.ioctl(abi::TCPLOG_IOC_SET_FILTER, &mut f)
        .map(|_| ())
        .map_err(|e| format!("SET_FILTER: {}", sys::errno_name(e)))
}

/// Reads until `done` says enough arrived, or five seconds pass.
pub fn collect(d: &Dev, done: impl Fn(&[Rec]) -> bool) -> Result<Vec<Rec>, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut recs = Vec::new();
    loop {
        recs.extend(d.drain()?);
        if done(&recs) || Instant::now() > deadline {
            return Ok(recs);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads for a short while, when what matters is that nothing (more) arrives.
pub fn settle(d: &Dev) -> Result<Vec<Rec>, String> {
    std::thread::sleep(Duration::from_millis(300));
    d.drain()
}

/// The SUMMARY records among `recs`.
pub fn summaries(recs: &[Rec]) -> Vec<SummaryBody> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::SUMMARY)
        .map(|r| SummaryBody::read_from(&r.body).unwrap())
        .collect()
}

/// A `collect` condition: at least `n` summaries.
pub fn nsum(n: usize) -> impl Fn(&[Rec]) -> bool {
    move |r: &[Rec]| summaries(r).len() >= n
}

/// One connection between helper processes: the server reads `up` bytes and answers `down`.
pub struct Exchange {
    pub server_pid: u32,
    pub client_pid: u32,
    pub port: u16,
}

/// Runs one connection between helper processes (each prefixed by its `wrap`, e.g. `ip netns
/// exec NS`): the client sends `up` bytes, the server answers `down`.
pub fn exchange(
    server_wrap: &[&str],
    bind: &str,
    client_wrap: &[&str],
    connect_host: &str,
    up: usize,
    down: usize,
) -> Result<Exchange, String> {
    let srv = peer::server(server_wrap, bind, up, down)?;
    let port = srv.port;
    let client_pid = peer::client(client_wrap, &format!("{connect_host}:{port}"), up, down)?;
    let server_pid = srv.finish()?;
    Ok(Exchange {
        server_pid,
        client_pid,
        port,
    })
}

/// Two namespaces joined by a veth pair: tla has 10.99.0.1, tlb 10.99.0.2 (and fd99::1, fd99::2).
pub fn veth() -> Result<(), String> {
    if std::path::Path::new("/run/netns/tlb").exists() {
        return Ok(());
    }
    sys::run_ok("modprobe", &["veth"])?;
    for cmd in [
        "netns add tla",
        "netns add tlb",
        "link add va netns tla type veth peer name vb netns tlb",
        "-n tla addr add 10.99.0.1/24 dev va",
        "-n tlb addr add 10.99.0.2/24 dev vb",
        "-n tla addr add fd99::1/64 dev va nodad",
        "-n tlb addr add fd99::2/64 dev vb nodad",
        "-n tla link set va up",
        "-n tlb link set vb up",
        "-n tla link set lo up",
        "-n tlb link set lo up",
    ] {
        sys::run_ok("ip", &cmd.split(' ').collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Prefixes that run a helper in tla or tlb.
pub const IN_A: [&str; 4] = ["ip", "netns", "exec", "tla"];
pub const IN_B: [&str; 4] = ["ip", "netns", "exec", "tlb"];

/// Runs `f` on a thread that lives in network namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a namespace file it holds open.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns".to_owned());
        }
        f()
    })
    .join()
    .map_err(|_| "thread panicked".to_owned())?
}

/// Sets the packet rules with the tool (`rules set`), or clears them when `r` is empty.
pub fn rules(r: &[&str]) -> Result<(), String> {
    let mut args = vec!["rules"];
    if r.is_empty() {
        args.push("clear");
    } else {
        args.push("set");
        args.extend_from_slice(r);
    }
    sys::run_ok(sys::TOOL, &args).map(|_| ())
}

/// What each packet rule matched.
pub fn stats() -> Result<abi::RuleStats, String> {
    let d = Dev::open(false, true)?;
    let mut s = abi::RuleStats::default();
    d.ioctl(abi::TCPLOG_IOC_GET_RULE_STATS, &mut s)
        .map_err(sys::errno_name)?;
    Ok(s)
}

/// A PACKET record: its header, body and the packet bytes it kept.
pub struct Pkt {
    pub hdr: abi::RecordHeader,
    pub body: PacketBody,
    pub data: Vec<u8>,
}

/// The PACKET records among `recs`.
pub fn packets(recs: &[Rec]) -> Vec<Pkt> {
    recs.iter()
        .filter(|r| r.hdr.rtype == abi::rtype::PACKET)
        .map(|r| {
            let body = PacketBody::read_from(&r.body).unwrap();
            let n = std::mem::size_of::<PacketBody>();
            let len = usize::from(body.ip_hlen)
                + usize::from(body.l4_hlen)
                + usize::from(body.payload_len);
            Pkt {
                hdr: r.hdr,
                body,
                data: r.body[n..n + len].to_vec(),
            }
        })
        .collect()
}

/// Waits past the repeat window, so that a record waiting for repeats is written.
pub fn settle_packets(d: &Dev) -> Result<Vec<Rec>, String> {
    std::thread::sleep(Duration::from_millis(400));
    settle(d)
}
