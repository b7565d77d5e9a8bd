// SPDX-License-Identifier: GPL-2.0

//! The record ring: whole records in one fixed byte buffer, the oldest overwritten when full.
//!
//! Positions are byte counts since load (`u64`, they never wrap in practice); the byte at position
//! `p` lives at `buf[p % size]`, so a record may straddle the end of the buffer. Each reader keeps
//! its own [`Cursor`]; the ring never waits for readers, and a reader that falls behind the tail is
//! handed a LOST record that says exactly which sequence numbers it missed.
//!
//! The ring itself is not synchronised: [`crate::log::Log`] keeps it under a spinlock that is
//! taken with interrupts disabled, so producers may run in any context and on any CPU.

use core::mem::{offset_of, size_of};

use kernel::{bindings, prelude::*};

use crate::abi::{self, LostBody, Pod, RecordHeader, RECORD_TYPE_COUNT};
use crate::clock::Stamp;

/// Smallest ring, in bytes: it must hold at least a few of the largest records.
pub(crate) const MIN_RING_SIZE: usize = 64 * 1024;
/// Largest ring, in bytes.
pub(crate) const MAX_RING_SIZE: usize = 256 * 1024 * 1024;

const _: () = assert!(MIN_RING_SIZE >= 4 * abi::MAX_RECORD_LEN);

/// A reader's place in the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    /// Sequence number of the next record the reader wants.
    pub(crate) seq: u64,
    /// Byte position of that record; meaningful while `tail_seq <= seq <= head_seq`.
    pub(crate) pos: u64,
}

/// Why a read produced nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The next record is longer than the space offered.
    TooSmall,
}

/// What a flush discarded.
pub(crate) struct Flushed {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// The ring's counters, for the status ioctl.
pub(crate) struct RingStats {
    pub(crate) size: u64,
    pub(crate) bytes_used: u64,
    pub(crate) records_held: u64,
    pub(crate) head_seq: u64,
    pub(crate) tail_seq: u64,
    pub(crate) overwritten: u64,
    pub(crate) flushed_records: u64,
    pub(crate) flushed_bytes: u64,
    pub(crate) produced_by_type: [u64; RECORD_TYPE_COUNT],
}

/// The ring buffer.
///
/// # Invariants
///
/// - `buf.len()` is between [`MIN_RING_SIZE`] and [`MAX_RING_SIZE`].
/// - `tail <= head` and `head - tail <= buf.len()`.
/// - The bytes from `tail` to `head` are exactly `head_seq - tail_seq` whole records, back to
///   back, each beginning with a [`RecordHeader`] whose `len` is the record's length (at least
///   `size_of::<RecordHeader>()`, a multiple of [`abi::RECORD_ALIGN`]) and whose `seq` counts up
///   by one from `tail_seq`.
pub(crate) struct Ring {
    buf: KVVec<u8>,
    head: u64,
    tail: u64,
    head_seq: u64,
    tail_seq: u64,
    overwritten: u64,
    flushed_records: u64,
    flushed_bytes: u64,
    produced_by_type: [u64; RECORD_TYPE_COUNT],
}

const ZEROS: [u8; abi::RECORD_ALIGN] = [0; abi::RECORD_ALIGN];

/// Fills a record header stamped with the given times (or now) and the current CPU.
fn header(rtype: u16, len: usize, seq: u64, at: Option<Stamp>) -> RecordHeader {
    let at = at.unwrap_or_else(Stamp::now);
    RecordHeader {
        magic: abi::RECORD_MAGIC,
        rtype,
        // Every record is at most `MAX_RECORD_LEN`, which fits in a `u16`.
        len: len as u16,
        seq,
        time_ns: at.real,
        boot_ns: at.boot,
        // SAFETY: No preconditions; the value may be stale if the task migrates, which is
        // harmless here (producers hold a spinlock, so it is exact for them).
        cpu: unsafe { bindings::raw_smp_processor_id() },
        flags: 0,
    }
}

impl Ring {
    /// Allocates a ring of `size` bytes; `size` must be within the bounds above.
    pub(crate) fn new(size: usize) -> Result<Self> {
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&size) {
            return Err(EINVAL);
        }
        // INVARIANT: The size is checked above; the ring starts empty.
        Ok(Ring {
            buf: KVVec::from_elem(0u8, size, GFP_KERNEL)?,
            head: 0,
            tail: 0,
            head_seq: 0,
            tail_seq: 0,
            overwritten: 0,
            flushed_records: 0,
            flushed_bytes: 0,
            produced_by_type: [0; RECORD_TYPE_COUNT],
        })
    }

    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    fn index(&self, pos: u64) -> usize {
        (pos % self.size()) as usize
    }

    /// Copies `data` into the ring at `pos`, wrapping at the end. `data` is never longer than the ring.
    fn copy_in(&mut self, pos: u64, data: &[u8]) {
        let start = self.index(pos);
        let first = data.len().min(self.buf.len() - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Copies bytes out of the ring from `pos`, wrapping at the end.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let start = self.index(pos);
        let first = out.len().min(self.buf.len() - start);
        let n = out.len();
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        out[first..].copy_from_slice(&self.buf[..n - first]);
    }

    /// Length of the record at `pos`, which must be the start of a record between tail and head.
    fn len_at(&self, pos: u64) -> usize {
        let mut len = [0u8; 2];
        self.copy_out(pos + offset_of!(RecordHeader, len) as u64, &mut len);
        usize::from(u16::from_ne_bytes(len))
    }

    /// Appends a record of type `rtype` whose body is the concatenation of `parts`, overwriting
    /// the oldest records as needed, stamped with the given times (`CLOCK_REALTIME`,
    /// `CLOCK_BOOTTIME`) or else now (a packet record is stamped with its first packet). Returns
    /// its sequence number.
    ///
    /// The caller bounds the body so that the record is at most [`abi::MAX_RECORD_LEN`]; a
    /// longer one is a bug, caught here and refused.
    pub(crate) fn push_at(
        &mut self,
        rtype: u16,
        parts: &[&[u8]],
        at: Option<Stamp>,
    ) -> Result<u64> {
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let unpadded = size_of::<RecordHeader>() + body;
        let len = abi::record_len(unpadded);
        if len > abi::MAX_RECORD_LEN {
            return Err(EMSGSIZE);
        }
        // Evict from the tail until the record fits. This ends: an empty ring has room for any
        // record, since `MIN_RING_SIZE` exceeds `MAX_RECORD_LEN`.
        while self.size() - (self.head - self.tail) < len as u64 {
            // By the invariant, `tail` starts a record of nonzero length.
            self.tail += self.len_at(self.tail) as u64;
            self.tail_seq += 1;
            self.overwritten += 1;
        }
        let seq = self.head_seq;
        let mut pos = self.head;
        self.copy_in(pos, header(rtype, len, seq, at).as_bytes());
        pos += size_of::<RecordHeader>() as u64;
        for part in parts {
            self.copy_in(pos, part);
            pos += part.len() as u64;
        }
        self.copy_in(pos, &ZEROS[..len - unpadded]);
        // INVARIANT: A whole record of `len` bytes with sequence number `head_seq` now follows
        // the previous head, and there is still at most `size` bytes between tail and head.
        self.head += len as u64;
        self.head_seq += 1;
        if let Some(n) = self.produced_by_type.get_mut(usize::from(rtype)) {
            *n += 1;
        }
        Ok(seq)
    }

    /// A cursor at the oldest record held.
    pub(crate) fn oldest(&self) -> Cursor {
        Cursor {
            seq: self.tail_seq,
            pos: self.tail,
        }
    }

    /// A cursor after the newest record: only records produced from now on.
    pub(crate) fn newest(&self) -> Cursor {
        Cursor {
            seq: self.head_seq,
            pos: self.head,
        }
    }

    /// Whether a reader at `seq` has something to read (records, or a LOST record).
    pub(crate) fn readable(&self, seq: u64) -> bool {
        seq < self.head_seq
    }

    /// The bytes a reader at `cur` can read now, a pending LOST record included.
    pub(crate) fn available(&self, cur: Cursor) -> u64 {
        if cur.seq < self.tail_seq {
            abi::LOST_RECORD_LEN as u64 + (self.head - self.tail)
        } else {
            self.head - cur.pos
        }
    }

    /// Copies as many whole records as fit into `out`, for a reader at `cur`, starting with a
    /// LOST record if the reader fell behind. Returns the bytes written and the cursor after
    /// them; the caller commits that cursor only once the bytes have reached the reader.
    pub(crate) fn read(
        &self,
        mut cur: Cursor,
        out: &mut [u8],
    ) -> Result<(usize, Cursor), ReadError> {
        let mut n = 0;
        if cur.seq < self.tail_seq {
            if out.len() < abi::LOST_RECORD_LEN {
                return Err(ReadError::TooSmall);
            }
            let lost = LostBody {
                count: self.tail_seq - cur.seq,
                first_seq: cur.seq,
                last_seq: self.tail_seq - 1,
            };
            let hdr = header(abi::rtype::LOST, abi::LOST_RECORD_LEN, cur.seq, None);
            let h = size_of::<RecordHeader>();
            out[..h].copy_from_slice(hdr.as_bytes());
            out[h..h + size_of::<LostBody>()].copy_from_slice(lost.as_bytes());
            out[h + size_of::<LostBody>()..abi::LOST_RECORD_LEN].fill(0);
            n = abi::LOST_RECORD_LEN;
            cur = self.oldest();
        }
        while cur.seq < self.head_seq {
            let len = self.len_at(cur.pos);
            if out.len() - n < len {
                if n == 0 {
                    return Err(ReadError::TooSmall);
                }
                break;
            }
            self.copy_out(cur.pos, &mut out[n..n + len]);
            n += len;
            cur.pos += len as u64;
            cur.seq += 1;
        }
        Ok((n, cur))
    }

    /// Discards every record held.
    pub(crate) fn flush(&mut self) -> Flushed {
        let flushed = Flushed {
            records: self.head_seq - self.tail_seq,
            bytes: self.head - self.tail,
        };
        // INVARIANT: An empty ring trivially satisfies the invariant.
        self.tail = self.head;
        self.tail_seq = self.head_seq;
        self.flushed_records += flushed.records;
        self.flushed_bytes += flushed.bytes;
        flushed
    }

    pub(crate) fn stats(&self) -> RingStats {
        RingStats {
            size: self.size(),
            bytes_used: self.head - self.tail,
            records_held: self.head_seq - self.tail_seq,
            head_seq: self.head_seq,
            tail_seq: self.tail_seq,
            overwritten: self.overwritten,
            flushed_records: self.flushed_records,
            flushed_bytes: self.flushed_bytes,
            produced_by_type: self.produced_by_type,
        }
    }
}

#[kunit_tests(tcplog_ring)]
mod tests {
    use super::*;

    fn body(n: usize) -> [u8; 64] {
        [n as u8; 64]
    }

    fn seqs(ring: &Ring, cur: Cursor, out: &mut [u8]) -> (usize, Cursor) {
        ring.read(cur, out).unwrap_or((0, cur))
    }

    #[test]
    fn records_come_back_whole_and_in_order() -> Result {
        let mut ring = Ring::new(MIN_RING_SIZE)?;
        let start = ring.oldest();
        for n in 0..10 {
            assert_eq!(
                ring.push_at(abi::rtype::MARK, &[&body(n)], None),
                Ok(n as u64)
            );
        }
        let mut out = KVVec::from_elem(0u8, 4096, GFP_KERNEL)?;
        let (len, cur) = seqs(&ring, start, &mut out);
        assert_eq!(len, 10 * 104);
        assert_eq!(cur.seq, 10);
        for n in 0..10 {
            let h = RecordHeader::read_from(&out[n * 104..]).ok_or(EINVAL)?;
            assert_eq!(
                (h.magic, h.rtype, h.len, h.seq),
                (abi::RECORD_MAGIC, abi::rtype::MARK, 104, n as u64)
            );
            assert_eq!(out[n * 104 + 40], n as u8);
        }
        Ok(())
    }

    #[test]
    fn a_short_buffer_gets_nothing() -> Result {
        let mut ring = Ring::new(MIN_RING_SIZE)?;
        let start = ring.oldest();
        assert!(ring.push_at(abi::rtype::MARK, &[&body(1)], None).is_ok());
        let mut out = [0u8; 103];
        assert_eq!(ring.read(start, &mut out).err(), Some(ReadError::TooSmall));
        Ok(())
    }

    #[test]
    fn overwriting_is_reported_exactly() -> Result {
        let mut ring = Ring::new(MIN_RING_SIZE)?;
        let start = ring.oldest();
        let total = 2 * MIN_RING_SIZE / 104;
        for n in 0..total {
            assert!(ring.push_at(abi::rtype::MARK, &[&body(n)], None).is_ok());
        }
        let s = ring.stats();
        assert_eq!(s.head_seq, total as u64);
        assert_eq!(s.overwritten, s.tail_seq);
        assert_eq!(s.records_held + s.overwritten, total as u64);
        let mut out = KVVec::from_elem(0u8, 2 * MIN_RING_SIZE, GFP_KERNEL)?;
        let (len, cur) = seqs(&ring, start, &mut out);
        let lost = LostBody::read_from(&out[size_of::<RecordHeader>()..]).ok_or(EINVAL)?;
        assert_eq!(
            (lost.count, lost.first_seq, lost.last_seq),
            (s.tail_seq, 0, s.tail_seq - 1)
        );
        assert_eq!(len, abi::LOST_RECORD_LEN + s.records_held as usize * 104);
        assert_eq!(cur.seq, total as u64);
        // Records delivered + records reported lost = records produced.
        assert_eq!(lost.count + s.records_held, total as u64);
        Ok(())
    }

    #[test]
    fn an_oversized_record_is_refused() -> Result {
        let mut ring = Ring::new(MIN_RING_SIZE)?;
        let big = KVVec::from_elem(0u8, abi::MAX_RECORD_LEN, GFP_KERNEL)?;
        assert!(ring.push_at(abi::rtype::MARK, &[&big], None).is_err());
        assert_eq!(ring.stats().head_seq, 0);
        Ok(())
    }
}
