// SPDX-License-Identifier: GPL-2.0

//! The connection table: what the module remembers about each TCP connection it tracks, from
//! open to the summary at close.
//!
//! Entries are keyed by the address of the `struct sock`. They live from the connect (SYN sent)
//! or the end of the handshake until the socket is destroyed, and are never freed before the
//! socket is, so a key is never confused with a later socket at the same address. The table is
//! preallocated at load and bounded; when it is full a new connection is not tracked, which is
//! counted, and the connection gets a partial summary.

use kernel::{
    prelude::*,
    sync::atomic::{ordering::Relaxed, Atomic},
};

use crate::abi;
use crate::clock::Stamp;
use crate::compat::{new_spinlock_irq, SpinLockIrq};
use crate::events::Who;
use crate::identity::Identity;
use crate::keys::HashKeys;
use crate::limits::LimitRef;
use crate::sock::{SockInfo, TcpStats};
use crate::table::Table;

/// Smallest and largest `max_conns`.
pub(crate) const MIN_CONNS: usize = 64;
pub(crate) const MAX_CONNS: usize = 1 << 20;

/// The state of a connection when it reached CLOSE: what its summary reports.
#[derive(Clone, Copy, Default)]
pub(crate) struct Closed {
    pub(crate) end_boot: u64,
    pub(crate) info: SockInfo,
    pub(crate) stats: TcpStats,
    /// `sk_err` at close.
    pub(crate) err: i32,
    /// It closed from FIN_WAIT2: retired before the peer's FIN came.
    pub(crate) fin_wait2: bool,
}

/// What the module knows about one connection.
#[derive(Clone, Copy, Default)]
pub(crate) struct Conn {
    /// When it opened: `CLOCK_REALTIME` and `CLOCK_BOOTTIME`, ns.
    pub(crate) start_ns: u64,
    pub(crate) start_boot: u64,
    /// The process that connected or accepted, once known.
    pub(crate) owner: Option<Identity>,
    /// `abi::open::*`.
    pub(crate) open: u8,
    pub(crate) established: bool,
    /// `TcpStats::seq_sent` when the connection was established: what the handshake took.
    pub(crate) sent_base: Option<u64>,
    /// When it was established (`CLOCK_BOOTTIME`, ns); 0 before.
    pub(crate) established_boot: u64,
    /// A non-blocking connect's EINPROGRESS was reported: asking again (EALREADY, EISCONN)
    /// is not reported, its outcome is.
    pub(crate) in_progress_reported: bool,
    /// This side queued its FIN (it went through FIN_WAIT1 or LAST_ACK).
    pub(crate) fin_queued: bool,
    /// A non-blocking connect returned EINPROGRESS: its outcome is reported later.
    pub(crate) async_connect: bool,
    pub(crate) rst_sent: bool,
    pub(crate) rst_received: bool,
    pub(crate) closed: Option<Closed>,
    /// Counted against a rule's connection limit (passive connections).
    pub(crate) limit: Option<LimitRef>,
    /// An MPTCP connection (its socket is an `mptcp_sock`, never read as TCP).
    pub(crate) mptcp: bool,
    /// What the last interim record said, for the next one's deltas.
    pub(crate) last_interim: Option<Interim>,
}

impl Conn {
    /// A connection this process opens now (a connect's SYN is about to leave).
    pub(crate) fn connecting(mptcp: bool) -> Self {
        let at = Stamp::now();
        Conn {
            start_ns: at.real,
            start_boot: at.boot,
            owner: Who::process().identity(),
            open: abi::open::ACTIVE,
            mptcp,
            ..Conn::default()
        }
    }
}

/// What an interim record reported: where the next one's deltas start.
#[derive(Clone, Copy, Default)]
pub(crate) struct Interim {
    pub(crate) at_ns: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) pkts_in: u64,
    pub(crate) pkts_out: u64,
    pub(crate) ip_bytes_in: u64,
    pub(crate) ip_bytes_out: u64,
}

/// An open TCP connection now: what interim records and `TCPLOG_IOC_GET_CONNS` report.
#[derive(Clone, Copy)]
pub(crate) struct Open {
    pub(crate) key: usize,
    pub(crate) conn: Conn,
    pub(crate) now: Closed,
    pub(crate) state: u8,
}

/// The tracked connections, under an IRQ-safe lock (the hooks run in softirq context too).
#[pin_data]
pub(crate) struct Conns {
    #[pin]
    table: SpinLockIrq<Table<usize, Conn>>,
    keys: HashKeys,
    /// Connections not tracked because the table was full.
    untracked: Atomic<u64>,
}

impl Conns {
    pub(crate) fn new(max: usize, keys: HashKeys) -> Result<impl PinInit<Self, Error>> {
        if !(MIN_CONNS..=MAX_CONNS).contains(&max) {
            return Err(EINVAL);
        }
        let table = Table::new(max)?;
        Ok(try_pin_init!(Conns {
            table <- new_spinlock_irq!(table, "tcplog_conns"),
            keys,
            untracked: Atomic::new(0),
        }))
    }

    fn hash(&self, key: usize) -> u64 {
        self.keys.hash_word(key as u64)
    }

    /// Starts tracking the connection of socket `key`; a full table is counted.
    pub(crate) fn track(&self, key: usize, conn: Conn) {
        let h = self.hash(key);
        if self.table.lock().insert(key, h, conn).is_err() {
            self.untracked.add(1, Relaxed);
        }
    }

    /// Runs `f` on the connection of socket `key`, if tracked; returns what `f` returned.
    pub(crate) fn update<R>(&self, key: usize, f: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        let h = self.hash(key);
        self.table.lock().get_mut(&key, h).map(f)
    }

    /// Runs `f` on the connection of socket `key` (or `None`), and removes it if `f` says so.
    pub(crate) fn update_or_remove<R>(
        &self,
        key: usize,
        f: impl FnOnce(Option<&mut Conn>) -> (R, bool),
    ) -> R {
        let h = self.hash(key);
        let mut t = self.table.lock();
        let (r, remove) = f(t.get_mut(&key, h));
        if remove {
            t.remove(&key, h);
        }
        r
    }

    /// Stops tracking socket `key`; returns what was known.
    pub(crate) fn remove(&self, key: usize) -> Option<Conn> {
        let h = self.hash(key);
        self.table.lock().remove(&key, h)
    }

    /// Removes socket `key` if its connection has closed (its summary is due); returns it.
    pub(crate) fn take_closed(&self, key: usize) -> Option<Conn> {
        let h = self.hash(key);
        let mut t = self.table.lock();
        match t.get_mut(&key, h) {
            Some(c) if c.closed.is_some() => t.remove(&key, h),
            _ => None,
        }
    }

    /// Snapshots open, established TCP connections from slot `from` on into `out`; returns how
    /// many, and where to resume (`None`: the whole table was seen).
    pub(crate) fn open_batch(
        &self,
        from: usize,
        out: &mut [Option<Open>],
    ) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut t = self.table.lock();
        let end_boot = crate::clock::boot_ns();
        let next = t.walk(from, 4 * out.len(), |&key, c| {
            if !c.established || c.closed.is_some() || c.mptcp {
                return true;
            }
            // SAFETY: A tracked TCP socket is alive while its entry exists: `tcp_destroy_sock`
            // removes the entry under this lock before the socket is freed, and the lock is held.
            let sock = unsafe { crate::sock::Sock::from_ptr(key as *const crate::bindings::sock) };
            let Some(tcp) = sock.and_then(|s| s.tcp()) else {
                return true;
            };
            out[n] = Some(Open {
                key,
                conn: *c,
                now: Closed {
                    end_boot,
                    info: tcp.inet().info(),
                    stats: tcp.stats(),
                    err: 0,
                    fin_wait2: false,
                },
                state: tcp.sock().state(),
            });
            n += 1;
            n < out.len()
        });
        (n, next)
    }

    /// Forgets every connection, in constant time.
    pub(crate) fn clear(&self) {
        self.table.lock().clear();
    }

    /// (capacity, tracked now, never tracked for want of room).
    pub(crate) fn counts(&self) -> (usize, usize, u64) {
        let t = self.table.lock();
        (t.capacity(), t.len(), self.untracked.load(Relaxed))
    }
}
