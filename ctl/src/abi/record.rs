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
    /// A marker written through `TCPLOG_IOC_MARK`: [`MarkBody`](super::MarkBody).
    pub const MARK: u16 = 7;
}

/// One more than the largest record type: the length of the per-type counters in `Status`.
pub const RECORD_TYPE_COUNT: usize = 8;

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

// SAFETY: `repr(C)`, integers only, and the size assertions below prove there is no padding.
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

    assert!(size_of::<MarkBody>() == 40);
    assert!(offset_of!(MarkBody, index) == 8);
    assert!(offset_of!(MarkBody, pid) == 12);
    assert!(offset_of!(MarkBody, comm) == 24);

    assert!(size_of::<RecordHeader>() % RECORD_ALIGN == 0);
    assert!(MAX_RECORD_LEN <= u16::MAX as usize);
};

/// Length of a LOST record.
pub const LOST_RECORD_LEN: usize = record_len(size_of::<RecordHeader>() + size_of::<LostBody>());
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
