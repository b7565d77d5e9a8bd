// SPDX-License-Identifier: GPL-2.0

//! Packet records (IPFilter ipl's): the whole IP header or nothing, the transport header, and
//! the payload up to the snap length; consecutive identical packets collapse into one record
//! with a repeat count (ipl's `ipl_count`), written when a different packet comes or
//! [`REPEAT_WINDOW_MS`] after the first, by a timer.
//!
//! The timer runs in softirq context and writes to the log; [`PacketLog::shutdown`] stops it for
//! good (`timer_shutdown_sync`) once the hooks that arm it are gone, before the log is freed.

use core::mem::size_of;

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Relaxed, Atomic},
};

use crate::abi::{self, action, PacketBody, Pod, PKF_BODY, PKF_NO_HEADER, PKF_TRUNCATED};
use crate::bindings::timer_list;
use crate::clock::Stamp;
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::log::Log;
use crate::parse::{PacketBytes, Parsed};
use crate::timer::Timer;

/// Room for a packet's bytes in a record.
const MAX_DATA: usize =
    abi::MAX_RECORD_LEN - size_of::<abi::RecordHeader>() - size_of::<PacketBody>();
/// An IP header longer than this is not logged (the whole header or nothing): with the largest
/// TCP header and snap length, the record still fits.
const MAX_IP_HEADER: usize = MAX_DATA - 60 - abi::MAX_SNAP_LEN as usize;
/// How long a record waits for repeats of its packet before it is written.
const REPEAT_WINDOW_MS: u32 = 250;

/// A packet record being built, or waiting for repeats.
struct PacketRec {
    body: PacketBody,
    at: Stamp,
    data: KVVec<u8>,
    len: usize,
}

impl PacketRec {
    fn new() -> Result<Self> {
        Ok(PacketRec {
            body: PacketBody::default(),
            at: Stamp::default(),
            data: KVVec::from_elem(0u8, MAX_DATA, GFP_KERNEL)?,
            len: 0,
        })
    }

    /// The byte ranges of `data` that differ between otherwise identical packets: the IPv4
    /// identification and header checksum, and the transport checksum.
    fn volatile_ranges(&self) -> [(usize, usize); 3] {
        let b = &self.body;
        let ip = usize::from(b.ip_hlen);
        let mut r = [(0, 0); 3];
        if ip != 0 && b.family == abi::AF_INET {
            r[0] = (4, 2);
            r[1] = (10, 2);
        }
        let csum = match b.protocol {
            abi::IPPROTO_TCP => 16,
            abi::IPPROTO_UDP => 6,
            _ => return r,
        };
        if usize::from(b.l4_hlen) >= csum + 2 {
            r[2] = (ip + csum, 2);
        }
        r
    }

    /// Whether `other` is the same packet again.
    fn same_as(&self, other: &PacketRec) -> bool {
        let (a, b) = (&self.body, &other.body);
        let same_meta = PacketBody {
            count: 0,
            last_ns: 0,
            ..*a
        } == PacketBody {
            count: 0,
            last_ns: 0,
            ..*b
        };
        if !same_meta || self.len != other.len {
            return false;
        }
        let skip = self.volatile_ranges();
        let x = &self.data[..self.len];
        let y = &other.data[..other.len];
        x.iter()
            .zip(y)
            .enumerate()
            .all(|(i, (p, q))| p == q || skip.iter().any(|&(off, n)| (off..off + n).contains(&i)))
    }

    fn emit(&self, log: &Log) {
        log.emit_at(
            abi::rtype::PACKET,
            &[self.body.as_bytes(), &self.data[..self.len]],
            self.at,
        );
    }
}

/// The record waiting for repeats, and scratch space for the next one.
struct Pending {
    waiting: bool,
    held: PacketRec,
    next: PacketRec,
}

/// Where a packet was seen, for its record.
pub(crate) struct Seen {
    pub(crate) netns: u32,
    pub(crate) ifindex: u32,
    pub(crate) ifname: [u8; 16],
    pub(crate) hook: u8,
    pub(crate) direction: u8,
}

/// Packet records and their repeat collapse.
#[pin_data]
pub(crate) struct PacketLog {
    #[pin]
    pending: SpinLockIrq<Pending>,
    /// Writes the waiting record when no repeat came in time.
    #[pin]
    timer: Timer,
    repeated: Atomic<u64>,
}

impl PacketLog {
    pub(crate) fn new() -> Result<impl PinInit<Self, Error>> {
        let pending = Pending {
            waiting: false,
            held: PacketRec::new()?,
            next: PacketRec::new()?,
        };
        Ok(try_pin_init!(PacketLog {
            pending <- new_spinlock_irq!(pending, "tcplog_pending"),
            timer <- Timer::new(pending_timer),
            repeated: Atomic::new(0),
        }))
    }

    /// Packets folded into an earlier record's repeat count.
    pub(crate) fn repeated(&self) -> u64 {
        self.repeated.load(Relaxed)
    }

    /// Records packet `pkt` (parsed as `p`) that rule `rule` (from 0) with `act` logs.
    pub(crate) fn record<P: PacketBytes + ?Sized>(
        &self,
        log: &Log,
        pkt: &P,
        p: &Parsed,
        rule: usize,
        act: u8,
        seen: &Seen,
    ) {
        let snap = log.snap_len() as usize;
        let mut pending = self.pending.lock();
        let pend = &mut *pending;
        let rec = &mut pend.next;
        rec.at = Stamp::now();
        rec.body = PacketBody {
            netns: seen.netns,
            ifindex: seen.ifindex,
            ifname: seen.ifname,
            orig_len: p.orig_len,
            count: 1,
            rule: rule as u16 + 1,
            hook: seen.hook,
            direction: seen.direction,
            family: p.family,
            protocol: p.protocol,
            tcp_flags: p.tcp_flags,
            flags: if act == action::LOG_BODY { PKF_BODY } else { 0 },
            last_ns: rec.at.real,
            ..PacketBody::default()
        };
        rec.len = 0;
        if p.ip_hlen > MAX_IP_HEADER {
            rec.body.flags |= PKF_NO_HEADER;
        } else {
            let headers = p.ip_hlen + p.l4_hlen;
            let payload = if act == action::LOG_BODY {
                let avail = (p.orig_len as usize).min(pkt.len()).saturating_sub(headers);
                if avail > snap {
                    rec.body.flags |= PKF_TRUNCATED;
                }
                avail.min(snap)
            } else {
                0
            };
            let total = (headers + payload).min(MAX_DATA);
            if pkt.copy(0, &mut rec.data[..total]) {
                rec.len = total;
                rec.body.ip_hlen = p.ip_hlen as u16;
                rec.body.l4_hlen = p.l4_hlen as u16;
                rec.body.payload_len = (total - headers) as u16;
            } else {
                rec.body.flags |= PKF_NO_HEADER;
            }
        }
        if pend.waiting && pend.held.same_as(&pend.next) {
            pend.held.body.count += 1;
            pend.held.body.last_ns = pend.next.at.real;
            self.repeated.add(1, Relaxed);
            return;
        }
        if pend.waiting {
            pend.held.emit(log);
        }
        core::mem::swap(&mut pend.held, &mut pend.next);
        pend.waiting = true;
        drop(pending);
        self.timer.arm(REPEAT_WINDOW_MS);
    }

    /// Writes the waiting record now, if any.
    pub(crate) fn flush(&self, log: &Log) {
        let mut p = self.pending.lock();
        if core::mem::take(&mut p.waiting) {
            p.held.emit(log);
        }
    }

    /// Stops the timer for good and waits for a running callback; writes the waiting record.
    /// Called once nothing arms the timer anymore (the hooks are unregistered).
    pub(crate) fn shutdown(&self, log: &Log) {
        self.timer.shutdown();
        self.flush(log);
    }
}

/// The timer: writes the waiting record.
///
/// # Safety
///
/// Called by the timer core with the timer of a live `PacketLog`, itself the `packets` field of
/// a live `Log`.
unsafe extern "C" fn pending_timer(t: *mut timer_list) {
    // SAFETY: The timer is the `timer` field of a `PacketLog` (`Timer` is laid out as its
    // `timer_list`), which is the `packets` field of a `Log`; both live until the timer is shut
    // down.
    let log = unsafe {
        let packets = kernel::container_of!(t.cast::<Timer>(), PacketLog, timer);
        &*kernel::container_of!(packets, Log, packets)
    };
    log.packets.flush(log);
}
