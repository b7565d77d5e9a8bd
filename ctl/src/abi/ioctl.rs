// SPDX-License-Identifier: GPL-2.0

//! ioctl numbers of `/dev/tcplog`, in the Linux `_IOC` encoding.
//!
//! The encoding (as in `include/uapi/asm-generic/ioctl.h`, which x86 uses) packs, from the top
//! bit: 2 bits of direction, 14 bits of argument size, 8 bits of type and 8 bits of number.

/// No data transfer.
pub const IOC_NONE: u32 = 0;
/// Userspace writes, the kernel reads.
pub const IOC_WRITE: u32 = 1;
/// The kernel writes, userspace reads.
pub const IOC_READ: u32 = 2;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;

const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// Encodes an ioctl command number, like the kernel's `_IOC()`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS), "ioctl argument too large");
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `_IO(ty, nr)`.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(ty, nr, T)`.
pub const fn ior<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ, ty, nr, core::mem::size_of::<T>())
}

/// `_IOW(ty, nr, T)`.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// `_IOWR(ty, nr, T)`.
pub const fn iowr<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// Direction bits of an encoded command (`_IOC_DIR`).
pub const fn ioc_dir(cmd: u32) -> u32 {
    cmd >> IOC_DIRSHIFT
}

/// Argument size of an encoded command (`_IOC_SIZE`).
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

/// The ioctl type byte of tcplog.
///
/// 0xB9 is unassigned in `Documentation/userspace-api/ioctl/ioctl-number.rst`.
pub const TCPLOG_IOC_TYPE: u8 = 0xB9;

// Commands that change the module's state need the descriptor opened for writing (else EBADF,
// ipl's rule) and CAP_NET_ADMIN (else EPERM). The others need neither.

/// Returns the module's [`ABI_VERSION`](super::ABI_VERSION) as a `u32`.
///
/// Needs no write access and no capability: it is how a reader checks that it can parse records.
pub const TCPLOG_IOC_VERSION: u32 = ior::<u32>(TCPLOG_IOC_TYPE, 0x00);

/// Enables logging. Changes state. Logs a CONFIG record if the state changed.
pub const TCPLOG_IOC_ENABLE: u32 = io(TCPLOG_IOC_TYPE, 0x01);

/// Disables logging: the hooks stop producing records; what is buffered stays readable.
/// Changes state. Logs a CONFIG record if the state changed.
pub const TCPLOG_IOC_DISABLE: u32 = io(TCPLOG_IOC_TYPE, 0x02);

/// Fills a [`Status`].
pub const TCPLOG_IOC_STATUS: u32 = ior::<Status>(TCPLOG_IOC_TYPE, 0x03);

/// Discards every buffered record and writes the number of bytes discarded to the `u64`, like
/// ipl's SIOCIPFFB. Changes state. Then logs a CONFIG record (item FLUSH).
pub const TCPLOG_IOC_FLUSH: u32 = ior::<u64>(TCPLOG_IOC_TYPE, 0x04);

/// Fills a [`Config`] with the current configuration.
pub const TCPLOG_IOC_GET_CONFIG: u32 = ior::<Config>(TCPLOG_IOC_TYPE, 0x05);

/// Replaces the configuration with a [`Config`]; EINVAL if any field is out of range or a
/// reserved field is not zero. Changes state. Logs a CONFIG record per field that changed.
pub const TCPLOG_IOC_SET_CONFIG: u32 = iow::<Config>(TCPLOG_IOC_TYPE, 0x06);

/// Moves this descriptor past everything buffered: its next read returns only records produced
/// after this call ("start from now"). Affects only this descriptor.
pub const TCPLOG_IOC_SEEK_END: u32 = io(TCPLOG_IOC_TYPE, 0x07);

/// Replaces the [`Filter`](super::Filter); EINVAL unless it is valid. Changes state. Logs a
/// CONFIG record (item FILTER).
pub const TCPLOG_IOC_SET_FILTER: u32 = iow::<super::Filter>(TCPLOG_IOC_TYPE, 0x09);

/// Fills a [`Filter`](super::Filter) with the current one.
pub const TCPLOG_IOC_GET_FILTER: u32 = ior::<super::Filter>(TCPLOG_IOC_TYPE, 0x0a);

/// Replaces the packet rules with a [`RuleSet`](super::RuleSet), atomically: the packet path
/// sees the old set or the new one, never a mix. EINVAL unless valid. Changes state. Logs a
/// CONFIG record (item RULES). Resets the rule counters and connection-limit counts.
pub const TCPLOG_IOC_SET_RULES: u32 = iow::<super::RuleSet>(TCPLOG_IOC_TYPE, 0x0b);

/// Fills a [`RuleSet`](super::RuleSet) with the current rules.
pub const TCPLOG_IOC_GET_RULES: u32 = ior::<super::RuleSet>(TCPLOG_IOC_TYPE, 0x0c);

/// Fills a [`RuleStats`](super::RuleStats): what each rule matched.
pub const TCPLOG_IOC_GET_RULE_STATS: u32 = ior::<super::RuleStats>(TCPLOG_IOC_TYPE, 0x0d);

/// Writes `Mark::count` MARK records carrying `Mark::value`, whether logging is enabled or not.
/// Changes state (it writes into the log). EINVAL unless `1 <= count <= MAX_MARK_COUNT`.
pub const TCPLOG_IOC_MARK: u32 = iow::<Mark>(TCPLOG_IOC_TYPE, 0x08);

/// Fills the caller's array with the open TCP connections being tracked now, as
/// [`InterimBody`](super::InterimBody) entries (counters since the start, state, owner; no
/// deltas): see [`ConnQuery`].
pub const TCPLOG_IOC_GET_CONNS: u32 = iowr::<ConnQuery>(TCPLOG_IOC_TYPE, 0x0e);

/// The argument of [`TCPLOG_IOC_GET_CONNS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnQuery {
    /// Where to write the entries: room for `max` of them.
    pub buf: u64,
    /// How many entries fit in `buf`.
    pub max: u32,
    /// Out: entries written.
    pub written: u32,
    /// Out: connections tracked now (more than `written` if `buf` was too small).
    pub tracked: u32,
    /// Reserved; zero.
    pub _pad: u32,
}

/// Most records one [`TCPLOG_IOC_MARK`] may write.
pub const MAX_MARK_COUNT: u32 = 65536;

/// The argument of [`TCPLOG_IOC_MARK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Carried in every record written.
    pub value: u64,
    /// How many records to write.
    pub count: u32,
    /// Reserved; zero.
    pub _pad: u32,
}

/// The standard `FIONREAD` (`int *`): the bytes this descriptor can read now, a pending LOST
/// record included; exactly what the next large enough read returns, if no record arrives between.
pub const FIONREAD: u32 = 0x541B;

/// The module's state, from [`TCPLOG_IOC_STATUS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// [`ABI_VERSION`](super::ABI_VERSION) of the module.
    pub abi_version: u32,
    /// 1 if logging is enabled, else 0.
    pub enabled: u32,
    /// Size of the ring in bytes.
    pub ring_size: u64,
    /// Bytes of the ring holding records now.
    pub bytes_used: u64,
    /// Records held now.
    pub records_held: u64,
    /// Records produced since load (the next record's sequence number).
    pub records_produced: u64,
    /// Records overwritten, oldest first, to make room for new ones.
    pub records_overwritten: u64,
    /// Records discarded by flushes.
    pub records_flushed: u64,
    /// Bytes discarded by flushes.
    pub bytes_flushed: u64,
    /// Sequence number of the oldest record held (equal to `records_produced` when empty).
    pub oldest_seq: u64,
    /// Open descriptors of the device.
    pub readers: u32,
    /// Entries of the connection table (the `max_conns` module parameter).
    pub conn_table_size: u32,
    /// Connections tracked now.
    pub conns_tracked: u32,
    /// Reserved; zero.
    pub _pad: u32,
    /// Records a producer could not write at all (longer than `MAX_RECORD_LEN`: a bug if ever
    /// nonzero, but counted rather than silent).
    pub records_dropped: u64,
    /// Connections not tracked because the table was full; each still gets a summary at close,
    /// flagged partial.
    pub conns_untracked: u64,
    /// Socket operations the probes missed (kretprobe instances exhausted): their events are
    /// missing.
    pub probes_missed: u64,
    /// Events and summaries the filter kept out.
    pub records_filtered: u64,
    /// Entries of the flow table (IP counters of TCP connections).
    pub flow_table_size: u32,
    /// Flows counted now.
    pub flows_tracked: u32,
    /// Packets of flows that found the flow table full of active flows: not counted in any
    /// summary (whose IP counters then stay flagged unknown).
    pub flows_untracked: u64,
    /// Packets folded into an earlier packet record's repeat count.
    pub packets_repeated: u64,
    /// Records produced since load, by type ([`rtype`](super::rtype)).
    pub produced_by_type: [u64; super::RECORD_TYPE_COUNT],
    /// Packets whose IP header is malformed (wrong version, IPv4 header length below 20 bytes,
    /// lengths past the end of the packet): accepted unchanged, matched by no rule, counted in no
    /// connection.
    pub packets_malformed: u64,
    /// Packets without a whole TCP or UDP header (truncated headers, IPv6 fragments after the
    /// first): rules match them by address only, and no connection's IP counters include them.
    pub packets_no_transport: u64,
    /// Flows still in their handshake that were evicted to make room for new ones (the table
    /// was full): their connections' IP counters are null.
    pub flows_evicted: u64,
    /// Connections a rule's connection limit could not count (no room in the limit table).
    pub limits_untracked: u64,
    /// Reserved for counters to come; zero.
    pub _reserved: [u64; 8],
}

/// Maximum of [`Config::interim_s`]: a day.
pub const MAX_INTERIM_S: u32 = 86400;
/// Maximum of [`Config::snap_len`].
pub const MAX_SNAP_LEN: u32 = 4096;
/// Default of [`Config::snap_len`], as ipl's 128 bytes of packet body.
pub const DEFAULT_SNAP_LEN: u32 = 128;

/// What the module logs, from [`TCPLOG_IOC_GET_CONFIG`] and for [`TCPLOG_IOC_SET_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Socket operations to log, a bit per operation.
    pub event_mask: u64,
    /// Option bits.
    pub options: u64,
    /// Bytes of packet payload kept in packet records, at most [`MAX_SNAP_LEN`].
    pub snap_len: u32,
    /// Seconds between INTERIM records of each open TCP connection (NetFlow's active timeout),
    /// at most [`MAX_INTERIM_S`]; 0 for none.
    pub interim_s: u32,
    /// Reserved for later fields; zero.
    pub _reserved: [u64; 4],
}

/// Bits of [`Config::event_mask`] that name an operation: `1 << op` for each of
/// [`op`](super::op).
pub const VALID_EVENT_MASK: u64 = ((1 << (super::op::MAX + 1)) - 1) & !1;
/// [`Config::options`]: write a SUMMARY record when a TCP connection closes.
pub const OPT_SUMMARIES: u64 = 1 << 0;
/// [`Config::options`]: apply the packet rules to forwarded packets too (netfilter FORWARD).
pub const OPT_FORWARD: u64 = 1 << 1;
/// Bits of [`Config::options`] that name an option.
pub const VALID_OPTIONS: u64 = OPT_SUMMARIES | OPT_FORWARD;

impl Config {
    /// The configuration the module loads with.
    pub const DEFAULT: Config = Config {
        event_mask: VALID_EVENT_MASK,
        options: OPT_SUMMARIES,
        snap_len: DEFAULT_SNAP_LEN,
        interim_s: 0,
        _reserved: [0; 4],
    };

    /// Whether every field is in range and every reserved field zero.
    pub fn is_valid(&self) -> bool {
        self.event_mask & !VALID_EVENT_MASK == 0
            && self.options & !VALID_OPTIONS == 0
            && self.snap_len <= MAX_SNAP_LEN
            && self.interim_s <= MAX_INTERIM_S
            && self._reserved == [0; 4]
    }
}

// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
unsafe impl super::Pod for Status {}
// SAFETY: As above.
unsafe impl super::Pod for Config {}
// SAFETY: As above.
unsafe impl super::Pod for Mark {}
// SAFETY: As above.
unsafe impl super::Pod for ConnQuery {}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Status>() == 144 + 8 * super::RECORD_TYPE_COUNT + 8 * 12);
    assert!(super::RECORD_TYPE_COUNT == 9);
    assert!(offset_of!(Status, packets_malformed) == 144 + 8 * super::RECORD_TYPE_COUNT);
    assert!(offset_of!(Status, ring_size) == 8);
    assert!(offset_of!(Status, oldest_seq) == 64);
    assert!(offset_of!(Status, readers) == 72);
    assert!(offset_of!(Status, conns_tracked) == 80);
    assert!(offset_of!(Status, records_dropped) == 88);
    assert!(offset_of!(Status, records_filtered) == 112);
    assert!(offset_of!(Status, flow_table_size) == 120);
    assert!(offset_of!(Status, packets_repeated) == 136);
    assert!(offset_of!(Status, produced_by_type) == 144);
    assert!(size_of::<Config>() == 56);
    assert!(size_of::<Mark>() == 16);
    assert!(size_of::<ConnQuery>() == 24);
    assert!(offset_of!(Config, options) == 8);
    assert!(offset_of!(Config, snap_len) == 16);
    assert!(offset_of!(Config, interim_s) == 20);
    assert!(offset_of!(Config, _reserved) == 24);
};

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values are the kernel's own encodings of existing commands.
    #[test]
    fn encoding_matches_the_kernel() {
        // TUNSETIFF = _IOW('T', 202, int)
        assert_eq!(iow::<i32>(b'T', 202), 0x4004_54ca);
        // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
        assert_eq!(ior::<u64>(0x12, 114), 0x8008_1272);
        // NS_GET_USERNS = _IO(0xb7, 0x1)
        assert_eq!(io(0xb7, 0x1), 0xb701);
        // VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability), 104 bytes
        assert_eq!(ior::<[u8; 104]>(b'V', 0), 0x8068_5600);
        // _IOWR('T', 0xff, [u8; 16])
        assert_eq!(iowr::<[u8; 16]>(b'T', 0xff), 0xc010_54ff);
    }

    #[test]
    fn decoding_round_trips() {
        let cmd = iowr::<[u64; 5]>(TCPLOG_IOC_TYPE, 7);
        assert_eq!(ioc_dir(cmd), IOC_READ | IOC_WRITE);
        assert_eq!(ioc_size(cmd), 40);
        assert_eq!((cmd >> 8) & 0xff, TCPLOG_IOC_TYPE as u32);
        assert_eq!(cmd & 0xff, 7);
    }

    #[test]
    fn command_numbers_are_stable() {
        assert_eq!(TCPLOG_IOC_VERSION, 0x8004_b900);
        assert_eq!(TCPLOG_IOC_ENABLE, 0xb901);
        assert_eq!(TCPLOG_IOC_DISABLE, 0xb902);
        assert_eq!(TCPLOG_IOC_STATUS, 0x8138_b903);
        assert_eq!(TCPLOG_IOC_GET_CONNS, 0xc018_b90e);
        assert_eq!(TCPLOG_IOC_FLUSH, 0x8008_b904);
        assert_eq!(TCPLOG_IOC_GET_CONFIG, 0x8038_b905);
        assert_eq!(TCPLOG_IOC_SET_CONFIG, 0x4038_b906);
        assert_eq!(TCPLOG_IOC_SEEK_END, 0xb907);
        assert_eq!(TCPLOG_IOC_MARK, 0x4010_b908);
        assert_eq!(TCPLOG_IOC_SET_FILTER, 0x4198_b909);
        assert_eq!(TCPLOG_IOC_GET_FILTER, 0x8198_b90a);
        assert_eq!(VALID_EVENT_MASK, 0xffe);
        assert_eq!(TCPLOG_IOC_SET_RULES, 0x4a08_b90b);
        assert_eq!(TCPLOG_IOC_GET_RULE_STATS, 0x8200_b90d);
    }

    #[test]
    fn default_config_is_valid() {
        assert!(Config::DEFAULT.is_valid());
        let mut c = Config::DEFAULT;
        c.snap_len = MAX_SNAP_LEN + 1;
        assert!(!c.is_valid());
        c = Config::DEFAULT;
        c._reserved[3] = 1;
        assert!(!c.is_valid());
        c = Config::DEFAULT;
        c.event_mask = 1 << 63;
        assert!(!c.is_valid());
    }
}
