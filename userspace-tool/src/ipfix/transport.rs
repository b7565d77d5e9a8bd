//! Sending IPFIX messages to a collector, over UDP or TCP, and what happens when it is away.
//!
//! UDP: each message is one datagram, sent as soon as it is made. Nothing says whether it
//! arrived: a datagram the network or a down collector drops is a gap in the sequence numbers
//! for the collector to see. What tcplog knows it could not send (the send failed: the
//! collector's host refused the previous datagram, no route, ...) it counts as lost. Templates
//! and element descriptions go out again every refresh interval (and every N messages, if set).
//!
//! TCP: one connection. Records wait in a bounded buffer while there is none, and a record
//! leaves the buffer only when the collector's TCP has acknowledged every byte of the message
//! that carried it (the socket's unacknowledged bytes, `SIOCOUTQ`). When the connection breaks
//! (the collector closed it, reset it, or a write failed), the records of the messages not
//! acknowledged go back to the front of the buffer, and the exporter connects again, backing
//! off from 0.5 s to 30 s; every new connection is a new session: sequence numbers from 0, the
//! element descriptions and templates first. Records dropped because the buffer is full (the
//! oldest first), and records still held when the exporter stops, are counted as lost. What
//! TCP acknowledged but a collector killed before it read is lost without a trace here: TCP
//! cannot tell.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::encode::Encoder;
use super::flow::Flow;

/// The transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// How to export.
#[derive(Clone, Debug)]
pub struct Options {
    pub proto: Proto,
    pub domain: u32,
    /// tcplog's Private Enterprise Number.
    pub pen: u32,
    /// The largest message, bytes.
    pub max_message: usize,
    /// UDP: resend templates this often.
    pub refresh: Duration,
    /// UDP: and every this many messages (0: only by time).
    pub refresh_messages: u64,
    /// Records held at most (waiting to be sent, or sent over TCP and not yet acknowledged).
    pub buffer: usize,
    /// TCP: the first and the longest wait between connection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// TCP: how long a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Options {
    pub fn new(proto: Proto) -> Self {
        Options {
            proto,
            domain: 0,
            pen: super::ie::PEN_DOCUMENTATION,
            max_message: match proto {
                Proto::Udp => 1400,
                Proto::Tcp => 16384,
            },
            refresh: Duration::from_secs(600),
            refresh_messages: 0,
            buffer: 100_000,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// What happened to the records given to the exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records given to the exporter.
    pub records: u64,
    /// Records delivered: UDP, sent without error; TCP, acknowledged by the collector's TCP.
    pub exported: u64,
    /// Records lost: sends that failed (UDP), dropped from a full buffer, or held at the end.
    pub lost: u64,
    /// TCP: records sent again on a new connection (not acknowledged when one broke).
    pub resent: u64,
    /// Messages sent.
    pub messages: u64,
    /// TCP: connections made.
    pub connections: u64,
}

/// A TCP connection and what is in flight on it.
struct Conn {
    stream: TcpStream,
    /// The message being written, and how much of it is written.
    out: Vec<u8>,
    out_off: usize,
    /// Bytes handed to the socket on this connection.
    written: u64,
    /// Messages handed to the socket and not yet acknowledged: where each ends in the stream,
    /// and its flows.
    inflight: VecDeque<(u64, Vec<Flow>)>,
    inflight_flows: usize,
}

enum Link {
    Udp {
        sock: UdpSocket,
        refresh: RefreshSchedule,
        /// Whether the last send failed (so a run of failures is reported once).
        failing: bool,
    },
    TcpDown {
        retry_at: Instant,
        backoff: Duration,
        /// Failed attempts since the last connection (reported once).
        attempts: u32,
    },
    TcpUp(Box<Conn>),
}

/// Exports flows to one collector.
pub struct Exporter {
    target: Target,
    opts: Options,
    enc: Encoder,
    stats: Stats,
    pending: VecDeque<Flow>,
    link: Link,
    notes: Vec<String>,
}

fn export_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// A collector's address as given: `HOST:PORT`, or `[ADDR]:PORT` for an IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT` (a name or an IPv4 address) or `[ADDR]:PORT` (IPv6), saying what is wrong
/// with anything else. Names are resolved later, by [`resolve`].
pub fn parse_target(s: &str) -> Result<Target, String> {
    const FORM: &str = "expected HOST:PORT, or [ADDR]:PORT for IPv6";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("'{s}': '[' without ']': {FORM}"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{addr}' is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("'{s}': no port: {FORM}"));
        };
        (addr, port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("'{s}': no port: {FORM}"));
        };
        if host.contains(':') {
            return Err(format!(
                "'{s}': an IPv6 address needs brackets: [ADDR]:PORT"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("'{s}': no host: {FORM}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Target {
            host: host.to_owned(),
            port: p,
        }),
        _ => Err(format!("'{port}' is not a port (1 to 65535)")),
    }
}

/// The addresses of a collector.
pub fn resolve(t: &Target) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (t.host.as_str(), t.port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(ErrorKind::NotFound, "no address"));
    }
    Ok(addrs)
}

/// When UDP's templates are due again (RFC 7011 section 8.4): every `every`, and every
/// `every_messages` messages if that is not 0, whichever comes first.
#[derive(Clone, Debug)]
pub struct RefreshSchedule {
    every: Duration,
    every_messages: u64,
    last: Instant,
    since: u64,
}

impl RefreshSchedule {
    /// A schedule whose first period starts at `now` (the first message announces everything
    /// anyway).
    pub fn new(every: Duration, every_messages: u64, now: Instant) -> Self {
        RefreshSchedule {
            every,
            every_messages,
            last: now,
            since: 0,
        }
    }

    /// Whether the templates are due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.every
            || (self.every_messages > 0 && self.since >= self.every_messages)
    }

    /// A message was sent.
    pub fn sent(&mut self) {
        self.since += 1;
    }

    /// The templates were (made to be) sent again at `now`: a new period starts.
    pub fn refreshed(&mut self, now: Instant) {
        self.last = now;
        self.since = 0;
    }
}

/// The wait after `current` before the next connection attempt: twice as long, at most `max`.
pub fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

/// A connection to the first address of `target` that answers.
fn connect(target: &Target, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::NotFound, "no address");
    for a in resolve(target)? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Exporter {
    /// An exporter to `target`. UDP: the socket is made and connected now (an address that
    /// cannot be resolved or reached fails here); TCP: the first connection is tried by the
    /// first [`Exporter::pump`].
    pub fn new(target: &Target, opts: Options) -> io::Result<Exporter> {
        let now = Instant::now();
        let link = match opts.proto {
            Proto::Udp => {
                let addr = resolve(target)?[0];
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().unwrap()
                } else {
                    "[::]:0".parse().unwrap()
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(addr)?;
                Link::Udp {
                    sock,
                    refresh: RefreshSchedule::new(opts.refresh, opts.refresh_messages, now),
                    failing: false,
                }
            }
            Proto::Tcp => {
                resolve(target)?;
                Link::TcpDown {
                    retry_at: now,
                    backoff: opts.backoff_min,
                    attempts: 0,
                }
            }
        };
        Ok(Exporter {
            target: target.clone(),
            enc: Encoder::new(opts.domain, opts.pen, opts.max_message),
            opts,
            stats: Stats::default(),
            pending: VecDeque::new(),
            link,
            notes: Vec::new(),
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What happened that a person should hear of (connections made and lost, send errors):
    /// one line each, taken.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn in_flight(&self) -> usize {
        match &self.link {
            Link::TcpUp(c) => c.inflight_flows,
            _ => 0,
        }
    }

    /// Records held: waiting, or in flight.
    pub fn held(&self) -> usize {
        self.pending.len() + self.in_flight()
    }

    /// Whether another record can be taken without dropping one.
    #[cfg(test)]
    pub fn has_room(&self) -> bool {
        self.held() < self.opts.buffer
    }

    /// Whether nothing is held and nothing is being written.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && match &self.link {
                Link::TcpUp(c) => c.inflight.is_empty() && c.out.is_empty(),
                _ => true,
            }
    }

    /// Takes a record to export. When the buffer is full the oldest waiting record is dropped
    /// (and counted lost).
    pub fn push(&mut self, f: Flow) {
        self.stats.records += 1;
        self.pending.push_back(f);
        if self.held() > self.opts.buffer {
            if self.pending.len() > 1 {
                self.pending.pop_front();
            } else {
                self.pending.pop_back();
            }
            self.stats.lost += 1;
        }
    }

    /// The descriptor to poll and for what, when there is one (a TCP connection).
    pub fn poll_fd(&self) -> Option<(RawFd, i16)> {
        match &self.link {
            Link::TcpUp(c) => {
                let mut ev = libc::POLLIN | libc::POLLRDHUP;
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                Some((c.stream.as_raw_fd(), ev))
            }
            _ => None,
        }
    }

    /// How long the caller may sleep before the exporter has something to do (a connection
    /// attempt, acknowledgements to look for); `None`: until a descriptor is ready.
    pub fn wakeup(&self, now: Instant) -> Option<Duration> {
        match &self.link {
            Link::TcpDown { retry_at, .. } => Some(retry_at.saturating_duration_since(now)),
            Link::TcpUp(c) if !c.inflight.is_empty() => Some(Duration::from_millis(20)),
            _ => None,
        }
    }

    /// Does what can be done now: connect, send, look for acknowledgements and for a
    /// connection that broke.
    pub fn pump(&mut self, now: Instant) {
        match self.opts.proto {
            Proto::Udp => self.pump_udp(now),
            Proto::Tcp => self.pump_tcp(now),
        }
    }

    fn pump_udp(&mut self, now: Instant) {
        let Link::Udp {
            sock,
            refresh,
            failing,
        } = &mut self.link
        else {
            return;
        };
        if refresh.due(now) {
            self.enc.refresh();
            refresh.refreshed(now);
        }
        if self.pending.is_empty() {
            return;
        }
        while let Some(m) = self.enc.message(&self.pending, export_secs()) {
            self.pending.drain(..m.flows);
            match sock.send(&m.bytes) {
                Ok(_) => {
                    self.stats.exported += m.flows as u64;
                    self.stats.messages += 1;
                    refresh.sent();
                    if *failing {
                        self.notes
                            .push(format!("sending to {} works again", self.target));
                        *failing = false;
                    }
                }
                Err(e) => {
                    // The message's sequence numbers stay used: the collector sees the gap.
                    self.stats.lost += m.flows as u64;
                    if !*failing {
                        self.notes.push(format!(
                            "cannot send to {}: {e}; what cannot be sent is counted as lost",
                            self.target
                        ));
                        *failing = true;
                    }
                    // What this message announced may not have arrived: announce it again,
                    // with the next message (not now: that would fail the same way).
                    self.enc.refresh();
                    refresh.refreshed(now);
                    break;
                }
            }
        }
    }

    fn pump_tcp(&mut self, now: Instant) {
        if let Link::TcpDown {
            retry_at,
            backoff,
            attempts,
        } = &mut self.link
        {
            if now < *retry_at {
                return;
            }
            match connect(&self.target, self.opts.connect_timeout) {
                Ok(stream) => {
                    self.stats.connections += 1;
                    self.notes.push(format!(
                        "connected to {} ({} records waiting)",
                        self.target,
                        self.pending.len()
                    ));
                    self.enc.new_session();
                    self.link = Link::TcpUp(Box::new(Conn {
                        stream,
                        out: Vec::new(),
                        out_off: 0,
                        written: 0,
                        inflight: VecDeque::new(),
                        inflight_flows: 0,
                    }));
                }
                Err(e) => {
                    if *attempts == 0 {
                        self.notes.push(format!(
                            "cannot connect to {}: {e}; records wait (at most {}) and it is tried again, every {:?} to {:?}",
                            self.target, self.opts.buffer, self.opts.backoff_min, self.opts.backoff_max
                        ));
                    }
                    *attempts += 1;
                    *retry_at = Instant::now() + *backoff;
                    *backoff = next_backoff(*backoff, self.opts.backoff_max);
                    return;
                }
            }
        }
        if let Err(why) = self.service_conn() {
            self.disconnect(&why);
        }
    }

    /// Writes what can be written, counts what was acknowledged; `Err` when the connection is
    /// gone.
    fn service_conn(&mut self) -> Result<(), String> {
        let Link::TcpUp(c) = &mut self.link else {
            return Ok(());
        };
        // A collector sends nothing: anything readable is its end of the connection.
        let mut scratch = [0u8; 512];
        loop {
            match c.stream.read(&mut scratch) {
                Ok(0) => return Err("the collector closed the connection".into()),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        loop {
            if c.out.is_empty() {
                let Some(m) = self.enc.message(&self.pending, export_secs()) else {
                    break;
                };
                let flows: Vec<Flow> = self.pending.drain(..m.flows).collect();
                c.written += m.bytes.len() as u64;
                c.inflight_flows += flows.len();
                c.inflight.push_back((c.written, flows));
                c.out = m.bytes;
                c.out_off = 0;
                self.stats.messages += 1;
            }
            match c.stream.write(&c.out[c.out_off..]) {
                Ok(n) => {
                    c.out_off += n;
                    if c.out_off == c.out.len() {
                        c.out.clear();
                        c.out_off = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        // Bytes not acknowledged: queued in the socket, or on their way.
        let mut unacked: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int; the descriptor is this connection's.
        if unsafe { libc::ioctl(c.stream.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) } < 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        let handed = c.written - (c.out.len() - c.out_off) as u64;
        let acked = handed.saturating_sub(unacked.max(0) as u64);
        while let Some((end, _)) = c.inflight.front() {
            if *end > acked {
                break;
            }
            let (_, flows) = c.inflight.pop_front().unwrap();
            c.inflight_flows -= flows.len();
            self.stats.exported += flows.len() as u64;
        }
        Ok(())
    }

    /// The connection is gone: what it did not deliver waits again, in order, and a new one is
    /// tried after the shortest backoff.
    fn disconnect(&mut self, why: &str) {
        let old = std::mem::replace(
            &mut self.link,
            Link::TcpDown {
                retry_at: Instant::now() + self.opts.backoff_min,
                backoff: next_backoff(self.opts.backoff_min, self.opts.backoff_max),
                attempts: 0,
            },
        );
        if let Link::TcpUp(c) = old {
            let mut back = 0;
            for (_, flows) in c.inflight.into_iter().rev() {
                back += flows.len();
                for f in flows.into_iter().rev() {
                    self.pending.push_front(f);
                }
            }
            self.stats.resent += back as u64;
            self.notes.push(format!(
                "lost the connection to {}: {why}; {back} records not acknowledged will be sent again, {} wait in all; reconnecting",
                self.target,
                self.pending.len()
            ));
        }
    }

    /// Waits up to `timeout` for the connection to be ready (or a connection attempt to be
    /// due), then pumps.
    pub fn wait(&mut self, timeout: Duration) {
        let now = Instant::now();
        let t = self.wakeup(now).map_or(timeout, |w| w.min(timeout));
        match self.poll_fd() {
            Some((fd, events)) => {
                let mut p = libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut p, 1, t.as_millis().min(i32::MAX as u128) as i32) };
            }
            None => std::thread::sleep(t),
        }
        self.pump(Instant::now());
    }

    /// Tries until `deadline` to deliver everything held, then counts what is left as lost and
    /// closes the connection.
    pub fn finish(&mut self, deadline: Instant) {
        self.pump(Instant::now());
        while !self.is_idle() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.wait((deadline - now).min(Duration::from_millis(100)));
        }
        let left = self.held() as u64;
        self.stats.lost += left;
        self.pending.clear();
        if let Link::TcpUp(c) = &mut self.link {
            c.inflight.clear();
            c.inflight_flows = 0;
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if left > 0 {
            self.notes.push(format!(
                "{left} records could not be delivered to {} in time",
                self.target
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;

    use super::*;
    use crate::ipfix::decode::{self, Session};
    use crate::ipfix::encode;
    use crate::ipfix::flow::tests::{header, summary};
    use crate::ipfix::ie::iana;

    fn flows(from: u64, n: u64) -> Vec<Flow> {
        (from..from + n)
            .map(|i| {
                let mut f = Flow::end(&header(5), &summary());
                f.flow_id = i;
                f
            })
            .collect()
    }

    fn target_of(a: SocketAddr) -> Target {
        parse_target(&a.to_string()).unwrap()
    }

    fn fast(proto: Proto) -> Options {
        Options {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            ..Options::new(proto)
        }
    }

    /// The flow ids of the records of one message, and its sequence number and templates.
    fn ids(d: &decode::Decoded) -> Vec<u64> {
        d.records
            .iter()
            .filter_map(|(_, r)| decode::num(r, 0, iana::FLOW_ID))
            .collect()
    }

    /// Reads whole messages from a stream until `want` flow records came, or 5 s passed.
    fn read_messages(s: &mut TcpStream, sess: &mut Session, want: usize) -> Vec<decode::Decoded> {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = Vec::new();
        let mut out: Vec<decode::Decoded> = Vec::new();
        while out.iter().map(|d| ids(d).len()).sum::<usize>() < want && Instant::now() < deadline {
            let mut chunk = [0u8; 65536];
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => continue,
            }
            while buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < len {
                    break;
                }
                let m: Vec<u8> = buf.drain(..len).collect();
                out.push(sess.message(&m).expect("a valid message"));
            }
        }
        out
    }

    fn pump_until(x: &mut Exporter, cond: impl Fn(&Exporter) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond(x) && Instant::now() < deadline {
            x.wait(Duration::from_millis(10));
        }
        assert!(cond(x), "{:?}", x.stats());
    }

    #[test]
    fn udp_sends_each_message_as_a_datagram() {
        let col = UdpSocket::bind("127.0.0.1:0").unwrap();
        col.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut x = Exporter::new(&target_of(col.local_addr().unwrap()), fast(Proto::Udp)).unwrap();
        for f in flows(0, 20) {
            x.push(f);
        }
        x.pump(Instant::now());
        assert_eq!(x.stats().exported, 20);
        let mut sess = Session::default();
        let (mut got, mut seq) = (Vec::new(), 0);
        let mut buf = [0u8; 65536];
        while got.len() < 20 {
            let n = col.recv(&mut buf).unwrap();
            assert!(n <= 1400, "{n}-byte datagram");
            let d = sess.message(&buf[..n]).unwrap();
            assert_eq!(d.seq, seq, "sequence numbers count the data records before");
            seq += d.records.len() as u32;
            got.extend(ids(&d));
        }
        assert_eq!(got, (0..20).collect::<Vec<u64>>());
        assert_eq!(x.stats().lost, 0);
    }

    #[test]
    fn udp_counts_what_it_could_not_send_and_leaves_a_gap() {
        // A port nobody listens on: the host answers a datagram with "port unreachable", and
        // the next send fails with ECONNREFUSED.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = format!("127.0.0.1:{port}");
        let mut x = Exporter::new(&parse_target(&target).unwrap(), fast(Proto::Udp)).unwrap();
        for f in flows(0, 10) {
            x.push(f);
            x.pump(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = x.stats();
        assert!(st.lost >= 1, "{st:?}");
        assert_eq!(st.exported + st.lost, 10, "{st:?}");
        assert!(x.take_notes().iter().any(|n| n.contains("cannot send")));
        // The collector comes up: the next message tells, by its sequence number, how many
        // data records were meant to come before it.
        let col = UdpSocket::bind(&target).unwrap();
        col.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let before = x.enc.sequence();
        x.push(flows(10, 1).pop().unwrap());
        x.pump(Instant::now());
        let mut buf = [0u8; 65536];
        let mut sess = Session::default();
        let mut got = Vec::new();
        while let Ok(n) = col.recv(&mut buf) {
            got.push(sess.message(&buf[..n]).unwrap());
            if ids(got.last().unwrap()) == [10] {
                break;
            }
        }
        assert_eq!(got[0].seq, before, "the lost records' numbers stay used");
        assert!(
            got.iter().any(|d| !d.templates.is_empty()),
            "templates go out again after a failed send"
        );
        assert_eq!(got.iter().flat_map(ids).collect::<Vec<u64>>(), [10]);
    }

    #[test]
    fn templates_are_due_by_time_or_by_messages() {
        let t0 = Instant::now();
        let mut r = RefreshSchedule::new(Duration::from_secs(60), 3, t0);
        assert!(!r.due(t0));
        r.sent();
        r.sent();
        assert!(!r.due(t0 + Duration::from_secs(59)));
        r.sent();
        assert!(r.due(t0), "the third message since the last refresh");
        r.refreshed(t0 + Duration::from_secs(10));
        assert!(!r.due(t0 + Duration::from_secs(69)));
        assert!(
            r.due(t0 + Duration::from_secs(70)),
            "60 s after the last refresh"
        );
        // By time only.
        let mut r = RefreshSchedule::new(Duration::from_secs(60), 0, t0);
        for _ in 0..1000 {
            r.sent();
        }
        assert!(!r.due(t0 + Duration::from_secs(59)));
        assert!(r.due(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn reconnection_backs_off_doubling_up_to_the_longest_wait() {
        let (mut b, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut waits = vec![b];
        for _ in 0..8 {
            b = next_backoff(b, max);
            waits.push(b);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn udp_refresh_resends_templates_with_the_next_message() {
        let col = UdpSocket::bind("127.0.0.1:0").unwrap();
        col.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 65536];
        // Flow templates (ids below the options template's) seen in one pump's datagrams.
        let mut templates_of_pump = |x: &mut Exporter, sess: &mut Session, f: Flow| {
            let before = x.stats().messages;
            x.push(f);
            x.pump(Instant::now());
            let sent = x.stats().messages - before;
            let mut n_templates = 0;
            for _ in 0..sent {
                let n = col.recv(&mut buf).unwrap();
                n_templates += sess
                    .message(&buf[..n])
                    .map(|d| {
                        d.templates
                            .iter()
                            .filter(|t| t.0 < encode::ELEMENT_TYPES_TEMPLATE_ID)
                            .count()
                    })
                    .unwrap();
            }
            n_templates
        };
        let target = target_of(col.local_addr().unwrap());
        let mut x = Exporter::new(&target, fast(Proto::Udp)).unwrap();
        let mut sess = Session::default();
        let by_pump: Vec<usize> = flows(0, 3)
            .into_iter()
            .map(|f| templates_of_pump(&mut x, &mut sess, f))
            .collect();
        assert_eq!(by_pump, [1, 0, 0], "once, while no refresh is due");
        let opts = Options {
            refresh: Duration::ZERO,
            ..fast(Proto::Udp)
        };
        let mut x = Exporter::new(&target, opts).unwrap();
        let mut sess = Session::default();
        let by_pump: Vec<usize> = flows(0, 3)
            .into_iter()
            .map(|f| templates_of_pump(&mut x, &mut sess, f))
            .collect();
        assert_eq!(
            by_pump,
            [1, 1, 1],
            "with every message when the refresh is always due"
        );
    }

    #[test]
    fn a_full_buffer_keeps_the_newest_records() {
        // TCP connects only when pumped: nothing here touches the network.
        let opts = Options {
            buffer: 3,
            ..fast(Proto::Tcp)
        };
        let mut x = Exporter::new(&parse_target("127.0.0.1:9").unwrap(), opts).unwrap();
        for f in flows(0, 5) {
            assert!(x.has_room() || x.held() == 3);
            x.push(f);
        }
        let held: Vec<u64> = x.pending.iter().map(|f| f.flow_id).collect();
        assert_eq!(held, [2, 3, 4]);
        assert_eq!((x.stats().records, x.stats().lost), (5, 2));
        assert!(!x.has_room());
    }

    #[test]
    fn collector_addresses_are_checked_with_reasons() {
        let t = |s: &str| parse_target(s).map(|t| t.to_string());
        assert_eq!(t("127.0.0.1:4739"), Ok("127.0.0.1:4739".into()));
        assert_eq!(
            t("collector.example:9995"),
            Ok("collector.example:9995".into())
        );
        assert_eq!(t("[::1]:4739"), Ok("[::1]:4739".into()));
        assert_eq!(
            t("127.0.0.1"),
            Err("'127.0.0.1': no port: expected HOST:PORT, or [ADDR]:PORT for IPv6".into())
        );
        assert_eq!(
            t("127.0.0.1:0"),
            Err("'0' is not a port (1 to 65535)".into())
        );
        assert_eq!(
            t("host:65536"),
            Err("'65536' is not a port (1 to 65535)".into())
        );
        assert_eq!(
            t("host:ipfix"),
            Err("'ipfix' is not a port (1 to 65535)".into())
        );
        assert_eq!(
            t("::1:4739"),
            Err("'::1:4739': an IPv6 address needs brackets: [ADDR]:PORT".into())
        );
        assert_eq!(
            t("[::1:4739"),
            Err("'[::1:4739': '[' without ']': expected HOST:PORT, or [ADDR]:PORT for IPv6".into())
        );
        assert_eq!(
            t("[1.2.3.4]:80"),
            Err("'1.2.3.4' is not an IPv6 address".into())
        );
        assert_eq!(
            t(":4739"),
            Err("':4739': no host: expected HOST:PORT, or [ADDR]:PORT for IPv6".into())
        );
        assert_eq!(
            resolve(&parse_target("[::1]:4739").unwrap()).unwrap(),
            ["[::1]:4739".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn tcp_buffers_while_the_collector_restarts_and_loses_nothing() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let (down_tx, down_rx) = mpsc::channel();
        // The collector: reads 5 records, closes and goes away for 300 ms, comes back on the
        // same port and reads 5 more.
        let col = std::thread::spawn(move || {
            let mut l = Some(l);
            for round in 0..2 {
                let listener = l.take().unwrap_or_else(|| TcpListener::bind(addr).unwrap());
                let (mut s, _) = listener.accept().unwrap();
                let mut sess = Session::default();
                let got = read_messages(&mut s, &mut sess, 5);
                tx.send(got).unwrap();
                if round == 0 {
                    drop(s);
                    drop(listener);
                    down_tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        });
        let mut x = Exporter::new(&target_of(addr), fast(Proto::Tcp)).unwrap();
        for f in flows(0, 5) {
            x.push(f);
        }
        pump_until(&mut x, |x| x.stats().exported == 5);
        let first = rx.recv().unwrap();
        down_rx.recv().unwrap();
        // Made while the collector is away.
        for f in flows(5, 5) {
            x.push(f);
        }
        pump_until(&mut x, |x| x.stats().exported == 10);
        let second = rx.recv().unwrap();
        col.join().unwrap();
        let got: Vec<u64> = first.iter().chain(&second).flat_map(ids).collect();
        assert_eq!(
            got,
            (0..10).collect::<Vec<u64>>(),
            "each record once, in order"
        );
        assert_eq!(second[0].seq, 0, "a new connection is a new session");
        assert!(
            !second[0].templates.is_empty(),
            "the descriptions and templates come first again"
        );
        let st = x.stats();
        assert_eq!(
            (st.records, st.exported, st.lost, st.connections),
            (10, 10, 0, 2),
            "{st:?}"
        );
        let notes = x.take_notes().join("\n");
        assert!(
            notes.contains("lost the connection") && notes.contains("cannot connect"),
            "{notes}"
        );
    }

    #[test]
    fn tcp_sends_again_what_was_not_acknowledged() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // A small receive buffer: the collector's TCP acknowledges little while it does not
        // read, and the rest waits, unacknowledged, in the exporter's socket.
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt with a pointer to an int of the size given.
        unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let mut x = Exporter::new(&target_of(l.local_addr().unwrap()), fast(Proto::Tcp)).unwrap();
        x.pump(Instant::now());
        let (stalled, _) = l.accept().unwrap();
        for f in flows(0, 2000) {
            x.push(f);
        }
        for _ in 0..50 {
            x.wait(Duration::from_millis(5));
        }
        let acked = x.stats().exported;
        assert!(acked < 2000 && x.in_flight() > 0, "{:?}", x.stats());
        // The collector dies without reading: what its TCP acknowledged is gone with it; the
        // rest is sent again on the next connection.
        drop(stalled);
        pump_until(&mut x, |x| x.stats().connections == 2);
        let (mut s, _) = l.accept().unwrap();
        let want = (2000 - acked) as usize;
        let got: Vec<u64> = read_messages(&mut s, &mut Session::default(), want)
            .iter()
            .flat_map(ids)
            .collect();
        assert_eq!(got, (acked..2000).collect::<Vec<u64>>());
        pump_until(&mut x, |x| x.stats().exported == 2000);
        let st = x.stats();
        assert_eq!(st.resent, 2000 - acked, "{st:?}");
        assert_eq!(st.lost, 0);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = format!("127.0.0.1:{port}");
        let opts = Options {
            buffer: 3,
            ..fast(Proto::Tcp)
        };
        let mut x = Exporter::new(&parse_target(&target).unwrap(), opts).unwrap();
        x.pump(Instant::now());
        for f in flows(0, 5) {
            x.push(f);
            x.pump(Instant::now());
        }
        assert_eq!(x.stats().lost, 2);
        assert!(!x.has_room());
        let l = TcpListener::bind(&target).unwrap();
        pump_until(&mut x, |x| x.stats().connections == 1);
        let (mut s, _) = l.accept().unwrap();
        pump_until(&mut x, |x| x.stats().exported == 3);
        let got: Vec<u64> = read_messages(&mut s, &mut Session::default(), 3)
            .iter()
            .flat_map(ids)
            .collect();
        assert_eq!(got, [2, 3, 4], "the newest three");
        // Stopping with records held, the collector gone: they are counted as lost.
        drop(s);
        drop(l);
        x.push(flows(5, 1).pop().unwrap());
        x.finish(Instant::now() + Duration::from_millis(200));
        let st = x.stats();
        assert_eq!((st.records, st.exported, st.lost), (6, 3, 3), "{st:?}");
    }
}
