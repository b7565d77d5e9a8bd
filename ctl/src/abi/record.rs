// SPDX-License-Identifier: GPL-2.0

//! The records read from `/dev/tcplog`.
//!
//! A read returns whole records, back to back. Every record starts with a [`RecordHeader`]; its
//! `len` covers the header, the type's body and any variable part, and is a multiple of
//! [`RECORD_ALIGN`], so the next record starts `len` bytes later. `magic` lets a reader of a
//! damaged stream find the next record, like HP-UX ipl's `ipl_magic`. `seq` increases by exactly
//! one per record the module produces, so a gap in it is a loss; a reader that fell behind the
//! ring is told so by a [`LostBody`] record in its stream, before the records that follow the gap.

use core::mem::{offset_of, size_of};

use super::pod::Pod;

/// `magic` of every record: the bytes `TLOG` in memory order on little-endian machines.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"TLOG");

/// Records are padded to a multiple of this many bytes.
pub const RECORD_ALIGN: usize = 8;

/// No record is longer than this.
pub const MAX_RECORD_LEN: usize = 8192;

/// Rounds a length up to a multiple of [`RECORD_ALIGN`].
pub const fn record_len(unpadded: usize) -> usize {
    (unpadded + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// Record types (`RecordHeader::rtype`).
pub mod rtype {
    /// This reader missed records: [`LostBody`](super::LostBody).
    pub const LOST: u16 = 1;
    /// A state change made through an ioctl: [`ConfigBody`](super::ConfigBody).
    pub const CONFIG: u16 = 2;
    /// A socket operation: [`EventBody`](super::EventBody).
    pub const EVENT: u16 = 3;
    /// A TCP connection ended: [`SummaryBody`](super::SummaryBody).
    pub const SUMMARY: u16 = 4;
    /// A packet a rule logged: [`PacketBody`](super::PacketBody) and the packet's bytes.
    pub const PACKET: u16 = 5;
    /// A source exceeded a rule's connection limit: [`LimitBody`](super::LimitBody).
    pub const LIMIT: u16 = 6;
    /// A marker written through `TCPLOG_IOC_MARK`: [`MarkBody`](super::MarkBody).
    pub const MARK: u16 = 7;
    /// An open TCP connection's counters so far, written every `Config::interim_s` seconds
    /// (NetFlow's active timeout): [`InterimBody`](super::InterimBody).
    pub const INTERIM: u16 = 8;
}

/// One more than the largest record type: the length of the per-type counters in `Status`.
pub const RECORD_TYPE_COUNT: usize = 9;

/// The header of every record. 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// [`RECORD_MAGIC`].
    pub magic: u32,
    /// One of [`rtype`].
    pub rtype: u16,
    /// Length of the whole record in bytes, header included; a multiple of [`RECORD_ALIGN`].
    pub len: u16,
    /// Sequence number: one more than the previous record the module produced. A LOST record is
    /// made for one reader and carries the sequence number of the first record it missed.
    pub seq: u64,
    /// When the record was made: `CLOCK_REALTIME`, in nanoseconds since the epoch.
    pub time_ns: u64,
    /// The same instant on `CLOCK_BOOTTIME`, in nanoseconds since boot (never jumps).
    pub boot_ns: u64,
    /// The CPU that made the record.
    pub cpu: u32,
    /// Reserved; zero.
    pub flags: u32,
}

/// Body of a LOST record: records this reader missed, because the ring overwrote them before it
/// read them or a flush discarded them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LostBody {
    /// How many records were missed.
    pub count: u64,
    /// Sequence number of the first missed record.
    pub first_seq: u64,
    /// Sequence number of the last missed record.
    pub last_seq: u64,
}

/// What a CONFIG record reports as changed (`ConfigBody::item`).
pub mod config_item {
    /// Logging enabled (`new` = 1) or disabled (`new` = 0).
    pub const ENABLED: u32 = 1;
    /// The ring was flushed: `old` = records discarded, `new` = bytes discarded.
    pub const FLUSH: u32 = 2;
    /// `Config::event_mask` changed.
    pub const EVENT_MASK: u32 = 3;
    /// `Config::options` changed.
    pub const OPTIONS: u32 = 4;
    /// `Config::snap_len` changed.
    pub const SNAP_LEN: u32 = 5;
    /// The filter was replaced: `old` and `new` count the criteria before and after.
    pub const FILTER: u32 = 6;
    /// The packet rules were replaced: `old` and `new` count the rules before and after.
    pub const RULES: u32 = 7;
    /// `Config::interim_s` changed.
    pub const INTERIM: u32 = 8;
}

/// Length of a command name, as the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// Body of a CONFIG record: an audit of one state change made through an ioctl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigBody {
    /// One of [`config_item`].
    pub item: u32,
    /// Process (thread group) id of the process that made the change.
    pub pid: u32,
    /// Its real user id, as seen from the initial user namespace.
    pub uid: u32,
    /// Reserved; zero.
    pub _pad: u32,
    /// Value before the change.
    pub old: u64,
    /// Value after the change.
    pub new: u64,
    /// Its command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Body of a MARK record: a marker a process wrote into the log (to annotate it, or to measure
/// the ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarkBody {
    /// The value given with the ioctl.
    pub value: u64,
    /// Which of the `count` records of one ioctl this is, from 0.
    pub index: u32,
    /// Process id of the writer.
    pub pid: u32,
    /// Its real user id, as seen from the initial user namespace.
    pub uid: u32,
    /// Reserved; zero.
    pub _pad: u32,
    /// Its command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Socket operations (`EventBody::op`), after AIX inetsock's monitor files. The event mask has
/// bit `1 << op` for each.
pub mod op {
    /// A TCP socket was created (streamCreate).
    pub const TCP_CREATE: u16 = 1;
    /// A TCP socket was bound, with the result (streamBind).
    pub const TCP_BIND: u16 = 2;
    /// A TCP socket started listening, with the result (streamListen).
    pub const TCP_LISTEN: u16 = 3;
    /// A connection was accepted; attributed to the process that called accept (streamAccept).
    pub const TCP_ACCEPT: u16 = 4;
    /// A connect, with its result; a non-blocking connect's outcome comes later as a second
    /// event with `EVF_ASYNC` (streamConnect).
    pub const TCP_CONNECT: u16 = 5;
    /// An established connection began to close: FIN sent or received, or reset
    /// (streamDisconnect).
    pub const TCP_DISCONNECT: u16 = 6;
    /// A process closed a TCP socket (streamClose).
    pub const TCP_CLOSE: u16 = 7;
    /// A UDP socket was created (dgramCreate).
    pub const UDP_CREATE: u16 = 8;
    /// A UDP socket was bound: explicitly, or implicitly by a send or connect (`EVF_IMPLICIT`,
    /// inetsock's dynamic bind) (dgramBind).
    pub const UDP_BIND: u16 = 9;
    /// A UDP socket was connected, with the result.
    pub const UDP_CONNECT: u16 = 10;
    /// A process closed a UDP socket (dgramClose).
    pub const UDP_CLOSE: u16 = 11;
    /// The largest operation number.
    pub const MAX: u16 = 11;
}

/// `EventBody::flags`: the bind was implicit (a send or connect bound the socket).
pub const EVF_IMPLICIT: u16 = 1 << 0;
/// `EventBody::flags`: the outcome of an earlier non-blocking connect.
pub const EVF_ASYNC: u16 = 1 << 1;
/// `EventBody::flags`: pid, uid and comm are the socket owner's, because the event happened in
/// softirq context where no process is responsible.
pub const EVF_OWNER: u16 = 1 << 2;
/// `EventBody::flags`: the process is unknown (softirq context, no owner recorded).
pub const EVF_NO_PROCESS: u16 = 1 << 3;
/// `EventBody::flags`: the socket is an MPTCP socket (`protocol` is TCP's, as on the wire).
pub const EVF_MPTCP: u16 = 1 << 4;

/// Address families (`family` fields): Linux's `AF_INET` and `AF_INET6`.
pub const AF_INET: u16 = 2;
/// See [`AF_INET`].
pub const AF_INET6: u16 = 10;
/// Protocols (`protocol` fields): `IPPROTO_TCP` and `IPPROTO_UDP`.
pub const IPPROTO_TCP: u8 = 6;
/// See [`IPPROTO_TCP`].
pub const IPPROTO_UDP: u8 = 17;

/// Body of an EVENT record: one socket operation, with AIX inetsock's fields.
///
/// Addresses are in network byte order: an IPv4 address in the first 4 bytes, the rest zero.
/// Ports are in host byte order; 0 where the socket has none yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBody {
    /// Identifies the socket: its cookie, the kernel's id of the socket, unique since boot (the
    /// `sk:` that `ss -e` shows, and what `bpf_get_socket_cookie` returns).
    pub sock_id: u64,
    /// The network namespace: its inode number, as `ls -l /proc/PID/ns/net` shows it.
    pub netns: u32,
    /// Process id (thread group id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id, in the initial user namespace.
    pub uid: u32,
    /// 0, or the positive errno the operation failed with.
    pub result: i32,
    /// One of [`op`].
    pub op: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// Socket type: 1 `SOCK_STREAM`, 2 `SOCK_DGRAM`.
    pub sock_type: u8,
    /// `EVF_*` bits.
    pub flags: u16,
    /// Local port.
    pub lport: u16,
    /// Foreign port.
    pub rport: u16,
    /// Local address.
    pub laddr: [u8; 16],
    /// Foreign address.
    pub raddr: [u8; 16],
    /// Command name (inetsock's PROG_NAME), NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// Parent process id.
    pub ppid: u32,
    /// Reserved; zero.
    pub _pad: u32,
    /// The process's cgroup (v2): its id, the inode number of its directory under
    /// `/sys/fs/cgroup`.
    pub cgroup_id: u64,
    /// The outcome of a connect (`EVF_ASYNC`, or a connect that did not return
    /// `EINPROGRESS`): nanoseconds from the connect call to the connection's establishment or
    /// failure (tcpconnlat's number). 0 for other events.
    pub latency_ns: u64,
}

/// How a connection was opened (`SummaryBody::open`).
pub mod open {
    /// Not known: the connection predates tracking.
    pub const UNKNOWN: u8 = 0;
    /// This side connected.
    pub const ACTIVE: u8 = 1;
    /// This side accepted.
    pub const PASSIVE: u8 = 2;
}

/// How a connection ended (`SummaryBody::close`).
pub mod close {
    /// Not known.
    pub const UNKNOWN: u8 = 0;
    /// Orderly: FIN both ways.
    pub const FIN: u8 = 1;
    /// This side sent a reset.
    pub const RST_SENT: u8 = 2;
    /// The peer sent a reset.
    pub const RST_RECEIVED: u8 = 3;
    /// Retransmissions or keepalives timed out, or the connection was aborted.
    pub const TIMEOUT: u8 = 4;
}

/// `SummaryBody::flags`: the connection existed before tracking began (module load or enable),
/// so what happened before is unknown; unknown fields are flagged, not zero.
pub const SUMF_PARTIAL: u16 = 1 << 0;
/// `SummaryBody::flags`: `pid`, `uid` and `comm` are unknown.
pub const SUMF_OWNER_UNKNOWN: u16 = 1 << 1;
/// `SummaryBody::flags`: `start_ns` and `duration_ns` are unknown.
pub const SUMF_START_UNKNOWN: u16 = 1 << 2;
/// `SummaryBody::flags`: the IP-layer counters (`pkts_*`, `ip_bytes_*`, `max_idle_ns`) are valid.
pub const SUMF_IP_COUNTERS: u16 = 1 << 3;
/// `SummaryBody::flags`: an MPTCP connection (its data bytes are MPTCP's, each way; its TCP
/// subflows have summaries of their own, with `parent_id` this one's `sock_id`).
pub const SUMF_MPTCP: u16 = 1 << 4;
/// `SummaryBody::flags`: `first_tx_ns` is known (a data byte was sent).
pub const SUMF_FIRST_TX: u16 = 1 << 5;
/// `SummaryBody::flags`: `first_rx_ns` is known (a data byte was received).
pub const SUMF_FIRST_RX: u16 = 1 << 6;
/// `SummaryBody::flags`: `connect_latency_ns` is known (an active open seen from its SYN).
pub const SUMF_LATENCY: u16 = 1 << 7;
/// `SummaryBody::flags`: this side closed first and the kernel retired the socket while it
/// still waited for the peer's FIN (FIN_WAIT2; what is left of the connection is a TIME_WAIT
/// remnant that is no longer a socket): the peer's FIN and this side's last ACK, if they come,
/// come after the summary and are not in its IP counters.
pub const SUMF_FIN_WAIT2: u16 = 1 << 8;

/// Body of a SUMMARY record: one TCP connection, when it closed (Apple TCPLogger's record).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SummaryBody {
    /// As [`EventBody::sock_id`].
    pub sock_id: u64,
    /// When the connection opened (`CLOCK_REALTIME`, ns).
    pub start_ns: u64,
    /// How long it lasted, ns.
    pub duration_ns: u64,
    /// Bytes of data sent, each byte once however often it was retransmitted: the sequence
    /// space sent after the handshake, less the FIN (for a partial summary, where the handshake
    /// was not seen: tcpi_bytes_sent - tcpi_bytes_retrans).
    pub bytes_sent: u64,
    /// Bytes of data received (tcpi_bytes_received, less the one the kernel counts for the FIN).
    pub bytes_received: u64,
    /// Segments received.
    pub segs_in: u32,
    /// Segments sent.
    pub segs_out: u32,
    /// Segments retransmitted.
    pub retrans: u32,
    /// Smoothed round-trip time, microseconds.
    pub srtt_us: u32,
    /// As [`EventBody::netns`].
    pub netns: u32,
    /// Owner: the process that connected or accepted.
    pub pid: u32,
    /// Owner's real uid.
    pub uid: u32,
    /// `SUMF_*` bits.
    pub flags: u16,
    /// One of [`open`].
    pub open: u8,
    /// One of [`close`].
    pub close: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Local port.
    pub lport: u16,
    /// Foreign port.
    pub rport: u16,
    /// Reserved; zero.
    pub _pad: u16,
    /// Local address.
    pub laddr: [u8; 16],
    /// Foreign address.
    pub raddr: [u8; 16],
    /// Owner's command name.
    pub comm: [u8; COMM_LEN],
    /// IP packets received (when `SUMF_IP_COUNTERS`).
    pub pkts_in: u64,
    /// IP packets sent.
    pub pkts_out: u64,
    /// IP bytes received, headers included.
    pub ip_bytes_in: u64,
    /// IP bytes sent, headers included.
    pub ip_bytes_out: u64,
    /// Owner's parent process id.
    pub ppid: u32,
    /// Minimum round-trip time seen, microseconds (tcpi_min_rtt).
    pub min_rtt_us: u32,
    /// Owner's cgroup (v2) id.
    pub cgroup_id: u64,
    /// For an MPTCP subflow: the `sock_id` of the MPTCP connection it carries; else 0.
    pub parent_id: u64,
    /// Active opens: from the SYN sent to established (tcpconnlat's number), ns
    /// (`SUMF_LATENCY`).
    pub connect_latency_ns: u64,
    /// The last delivery-rate sample, bytes per second (tcpi_delivery_rate).
    pub delivery_rate: u64,
    /// Time with data outstanding, microseconds (tcpi_busy_time).
    pub busy_us: u64,
    /// Of that, time limited by the receiver's window (tcpi_rwnd_limited).
    pub rwnd_limited_us: u64,
    /// Of that, time limited by the send buffer: the application (tcpi_sndbuf_limited).
    pub sndbuf_limited_us: u64,
    /// From the start to the first data byte sent, ns (`SUMF_FIRST_TX`).
    pub first_tx_ns: u64,
    /// From the start to the first data byte received, ns (`SUMF_FIRST_RX`).
    pub first_rx_ns: u64,
    /// The longest time without a packet either way, ns (with the IP counters).
    pub max_idle_ns: u64,
}

/// Body of an INTERIM record, and an entry of `TCPLOG_IOC_GET_CONNS`: an open connection now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterimBody {
    /// Everything since the connection began, as its summary would say now (`duration_ns`: its
    /// age; the IP counters only with `SUMF_IP_COUNTERS`).
    pub summary: SummaryBody,
    /// TCP state now (`TCP_ESTABLISHED` = 1 ...).
    pub state: u8,
    /// Reserved; zero.
    pub _pad: [u8; 7],
    /// When the interval these deltas cover began (`CLOCK_REALTIME`, ns): the previous interim
    /// record of this connection, or its start.
    pub since_ns: u64,
    /// Data bytes sent in the interval.
    pub delta_bytes_sent: u64,
    /// Data bytes received in the interval.
    pub delta_bytes_received: u64,
    /// IP packets received in the interval.
    pub delta_pkts_in: u64,
    /// IP packets sent in the interval.
    pub delta_pkts_out: u64,
    /// IP bytes received in the interval.
    pub delta_ip_bytes_in: u64,
    /// IP bytes sent in the interval.
    pub delta_ip_bytes_out: u64,
}

/// `PacketBody::flags`: payload was cut at the snap length (`orig_len` says how much there was).
pub const PKF_TRUNCATED: u16 = 1 << 0;
/// `PacketBody::flags`: the IP header is not included: it was longer than a record can hold
/// (the whole header or nothing, ipl's rule), or the packet was malformed.
pub const PKF_NO_HEADER: u16 = 1 << 1;
/// `PacketBody::flags`: the rule asked for the body (`LOG_BODY`).
pub const PKF_BODY: u16 = 1 << 2;

/// Body of a PACKET record. The packet's bytes follow it: `ip_hlen` bytes of IP header (the
/// whole header with options or IPv6 extension headers), then `l4_hlen` bytes of TCP or UDP
/// header, then `payload_len` bytes of payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketBody {
    /// Network namespace inode.
    pub netns: u32,
    /// Interface index (the interface the packet came in on, or goes out by).
    pub ifindex: u32,
    /// Interface name, NUL-padded.
    pub ifname: [u8; COMM_LEN],
    /// Length of the whole IP packet as it was (IPv4 total length; IPv6 40 + payload length).
    pub orig_len: u32,
    /// How many identical packets in a row this record stands for (ipl's `ipl_count`).
    pub count: u32,
    /// The rule that matched, numbered from 1.
    pub rule: u16,
    /// Netfilter hook: 1 LOCAL_IN, 2 FORWARD, 3 LOCAL_OUT.
    pub hook: u8,
    /// `direction::IN`, `OUT` or `FORWARD`.
    pub direction: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// IP protocol of the transport header.
    pub protocol: u8,
    /// TCP flags, 0 for other protocols.
    pub tcp_flags: u8,
    /// `PKF_*` bits.
    pub flags: u16,
    /// Bytes of IP header that follow.
    pub ip_hlen: u16,
    /// Bytes of TCP or UDP header that follow the IP header.
    pub l4_hlen: u16,
    /// Bytes of payload that follow.
    pub payload_len: u16,
    /// When the last of `count` packets was seen (`CLOCK_REALTIME`, ns); the record's header
    /// time is the first.
    pub last_ns: u64,
}

/// `LimitBody::limit_type`: concurrent connections from one source address.
pub const LIMIT_CONNS_PER_SOURCE: u32 = 1;

/// Body of a LIMIT record: a source address exceeded a rule's connection limit (HP-UX ipl's
/// limit type, threshold, current count and times exceeded). Nothing is blocked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitBody {
    /// Network namespace inode.
    pub netns: u32,
    /// The rule, numbered from 1.
    pub rule: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// [`LIMIT_CONNS_PER_SOURCE`].
    pub limit_type: u32,
    /// The rule's threshold.
    pub threshold: u32,
    /// Connections from this source now.
    pub current: u32,
    /// Times this source went over the threshold, this one included.
    pub exceeded: u32,
    /// The source address.
    pub src: [u8; 16],
}

// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
unsafe impl Pod for PacketBody {}
// SAFETY: As above.
unsafe impl Pod for LimitBody {}
// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
unsafe impl Pod for EventBody {}
// SAFETY: As above.
unsafe impl Pod for SummaryBody {}
// SAFETY: As above.
unsafe impl Pod for InterimBody {}
// SAFETY: As above.
unsafe impl Pod for RecordHeader {}
// SAFETY: As above.
unsafe impl Pod for MarkBody {}
// SAFETY: As above.
unsafe impl Pod for LostBody {}
// SAFETY: As above.
unsafe impl Pod for ConfigBody {}

const _: () = {
    assert!(size_of::<RecordHeader>() == 40);
    assert!(offset_of!(RecordHeader, magic) == 0);
    assert!(offset_of!(RecordHeader, rtype) == 4);
    assert!(offset_of!(RecordHeader, len) == 6);
    assert!(offset_of!(RecordHeader, seq) == 8);
    assert!(offset_of!(RecordHeader, time_ns) == 16);
    assert!(offset_of!(RecordHeader, boot_ns) == 24);
    assert!(offset_of!(RecordHeader, cpu) == 32);
    assert!(offset_of!(RecordHeader, flags) == 36);

    assert!(size_of::<LostBody>() == 24);
    assert!(offset_of!(LostBody, count) == 0);
    assert!(offset_of!(LostBody, first_seq) == 8);
    assert!(offset_of!(LostBody, last_seq) == 16);

    assert!(size_of::<ConfigBody>() == 48);
    assert!(offset_of!(ConfigBody, item) == 0);
    assert!(offset_of!(ConfigBody, pid) == 4);
    assert!(offset_of!(ConfigBody, uid) == 8);
    assert!(offset_of!(ConfigBody, old) == 16);
    assert!(offset_of!(ConfigBody, new) == 24);
    assert!(offset_of!(ConfigBody, comm) == 32);

    assert!(size_of::<EventBody>() == 112);
    assert!(offset_of!(EventBody, ppid) == 88);
    assert!(offset_of!(EventBody, cgroup_id) == 96);
    assert!(offset_of!(EventBody, latency_ns) == 104);
    assert!(offset_of!(EventBody, netns) == 8);
    assert!(offset_of!(EventBody, result) == 24);
    assert!(offset_of!(EventBody, op) == 28);
    assert!(offset_of!(EventBody, family) == 30);
    assert!(offset_of!(EventBody, protocol) == 32);
    assert!(offset_of!(EventBody, flags) == 34);
    assert!(offset_of!(EventBody, lport) == 36);
    assert!(offset_of!(EventBody, laddr) == 40);
    assert!(offset_of!(EventBody, raddr) == 56);
    assert!(offset_of!(EventBody, comm) == 72);

    assert!(size_of::<SummaryBody>() == 248);
    assert!(offset_of!(SummaryBody, ppid) == 160);
    assert!(offset_of!(SummaryBody, cgroup_id) == 168);
    assert!(offset_of!(SummaryBody, max_idle_ns) == 240);
    assert!(size_of::<InterimBody>() == 248 + 64);
    assert!(offset_of!(InterimBody, since_ns) == 256);
    assert!(offset_of!(SummaryBody, bytes_sent) == 24);
    assert!(offset_of!(SummaryBody, segs_in) == 40);
    assert!(offset_of!(SummaryBody, srtt_us) == 52);
    assert!(offset_of!(SummaryBody, netns) == 56);
    assert!(offset_of!(SummaryBody, flags) == 68);
    assert!(offset_of!(SummaryBody, open) == 70);
    assert!(offset_of!(SummaryBody, close) == 71);
    assert!(offset_of!(SummaryBody, family) == 72);
    assert!(offset_of!(SummaryBody, laddr) == 80);
    assert!(offset_of!(SummaryBody, comm) == 112);
    assert!(offset_of!(SummaryBody, pkts_in) == 128);
    assert!(offset_of!(SummaryBody, ip_bytes_out) == 152);

    assert!(size_of::<PacketBody>() == 56);
    assert!(offset_of!(PacketBody, ifname) == 8);
    assert!(offset_of!(PacketBody, orig_len) == 24);
    assert!(offset_of!(PacketBody, rule) == 32);
    assert!(offset_of!(PacketBody, family) == 36);
    assert!(offset_of!(PacketBody, flags) == 40);
    assert!(offset_of!(PacketBody, payload_len) == 46);
    assert!(offset_of!(PacketBody, last_ns) == 48);

    assert!(size_of::<LimitBody>() == 40);
    assert!(offset_of!(LimitBody, current) == 16);
    assert!(offset_of!(LimitBody, src) == 24);

    assert!(size_of::<MarkBody>() == 40);
    assert!(offset_of!(MarkBody, index) == 8);
    assert!(offset_of!(MarkBody, pid) == 12);
    assert!(offset_of!(MarkBody, comm) == 24);

    // A mask, not `%`: newer clippy wants `is_multiple_of`, which Debian 13's rustc lacks.
    assert!(size_of::<RecordHeader>() & (RECORD_ALIGN - 1) == 0);
    assert!(RECORD_ALIGN.is_power_of_two());
    assert!(MAX_RECORD_LEN <= u16::MAX as usize);
};

/// Length of a LOST record.
pub const LOST_RECORD_LEN: usize = record_len(size_of::<RecordHeader>() + size_of::<LostBody>());
/// Length of an EVENT record.
pub const EVENT_RECORD_LEN: usize = record_len(size_of::<RecordHeader>() + size_of::<EventBody>());
/// Length of a SUMMARY record.
pub const SUMMARY_RECORD_LEN: usize =
    record_len(size_of::<RecordHeader>() + size_of::<SummaryBody>());
/// Length of an INTERIM record.
pub const INTERIM_RECORD_LEN: usize =
    record_len(size_of::<RecordHeader>() + size_of::<InterimBody>());
/// Length of a LIMIT record.
pub const LIMIT_RECORD_LEN: usize = record_len(size_of::<RecordHeader>() + size_of::<LimitBody>());
/// Length of a MARK record.
pub const MARK_RECORD_LEN: usize = record_len(size_of::<RecordHeader>() + size_of::<MarkBody>());
/// Length of a CONFIG record.
pub const CONFIG_RECORD_LEN: usize =
    record_len(size_of::<RecordHeader>() + size_of::<ConfigBody>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_reads_tlog() {
        assert_eq!(&RECORD_MAGIC.to_le_bytes(), b"TLOG");
    }

    #[test]
    fn lengths_are_aligned() {
        assert_eq!(LOST_RECORD_LEN, 64);
        assert_eq!(CONFIG_RECORD_LEN, 88);
        assert_eq!(MARK_RECORD_LEN, 80);
        assert_eq!(EVENT_RECORD_LEN, 152);
        assert_eq!(SUMMARY_RECORD_LEN, 288);
        assert_eq!(INTERIM_RECORD_LEN, 352);
        assert_eq!(record_len(41), 48);
        assert_eq!(record_len(40), 40);
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let h = RecordHeader {
            magic: RECORD_MAGIC,
            rtype: rtype::CONFIG,
            len: CONFIG_RECORD_LEN as u16,
            seq: 0x0102_0304_0506_0708,
            time_ns: 1,
            boot_ns: 2,
            cpu: 3,
            flags: 0,
        };
        let bytes = h.as_bytes();
        assert_eq!(bytes.len(), 40);
        assert_eq!(&bytes[0..4], b"TLOG");
        assert_eq!(bytes[4..6], rtype::CONFIG.to_ne_bytes());
        assert_eq!(bytes[8..16], 0x0102_0304_0506_0708u64.to_ne_bytes());
        // Unaligned source.
        let mut buf = [0u8; 41];
        buf[1..].copy_from_slice(bytes);
        assert_eq!(RecordHeader::read_from(&buf[1..]), Some(h));
        assert_eq!(RecordHeader::read_from(&buf[..39]), None);
    }
}
