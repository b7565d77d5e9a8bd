// SPDX-License-Identifier: GPL-2.0

//! One open descriptor of `/dev/tcplog`: its place in the ring and how it reads.
//!
//! Reads return whole records only (ipl's rule): as many as fit, EINVAL if not even the next one
//! fits. Records reach userspace through a per-descriptor bounce buffer, because the ring's lock
//! is a spinlock and copying to userspace may fault; the cursor advances only after the copy
//! succeeded, so a read that fails with EFAULT loses nothing.
//!
//! No lock is held while a read copies to userspace (a fault there may take as long as its
//! handler likes: userfaultfd, or a slow disk). A read claims the descriptor instead; a second
//! read of the same descriptor waits for it, interruptibly. `poll`, FIONREAD and SEEK_END never
//! wait for a read.

use kernel::{
    current,
    fs::File,
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        atomic::{ordering::Relaxed, Atomic},
        poll::PollTable,
        Arc, CondVar, Mutex,
    },
    uaccess::UserSliceWriter,
};

use crate::abi::MAX_RECORD_LEN;
use crate::hooks::Hooks;
use crate::identity::Identity;
use crate::log::Log;
use crate::ring::{Cursor, ReadError};

/// Size of the bounce buffer: a read copies up to this much per hold of the ring's lock.
const BOUNCE_SIZE: usize = 32 * 1024;

const _: () = assert!(BOUNCE_SIZE >= MAX_RECORD_LEN);

struct ReaderState {
    cursor: Cursor,
    /// Bumped by every move of the cursor not made by a read (SEEK_END): a read in flight does
    /// not commit over it.
    moves: u64,
    /// A read holds the descriptor (and the bounce buffer, taken out of here).
    busy: bool,
    bounce: KVVec<u8>,
}

/// The state of one open descriptor.
#[pin_data(PinnedDrop)]
pub(crate) struct Reader {
    hooks: Arc<Hooks>,
    #[pin]
    state: Mutex<ReaderState>,
    /// Signalled when a read gives the descriptor back.
    #[pin]
    idle: CondVar,
    /// `state.cursor.seq`, for `poll` to read without the lock.
    seq: Atomic<u64>,
}

impl Reader {
    /// A reader that starts at the oldest record held.
    pub(crate) fn new(hooks: Arc<Hooks>) -> Result<Pin<KBox<Self>>> {
        let bounce = KVVec::from_elem(0u8, BOUNCE_SIZE, GFP_KERNEL)?;
        let cursor = hooks.log().oldest();
        let reader = KBox::pin_init(
            try_pin_init!(Reader {
                hooks,
                state <- new_mutex!(
                    ReaderState {
                        cursor,
                        moves: 0,
                        busy: false,
                        bounce,
                    },
                    "tcplog_reader"
                ),
                idle <- new_condvar!("tcplog_reader_idle"),
                seq: Atomic::new(cursor.seq),
            }),
            GFP_KERNEL,
        )?;
        // Counted only once it exists, so that `PinnedDrop` undoes exactly this.
        reader.log().reader_opened();
        Ok(reader)
    }

    pub(crate) fn log(&self) -> &Log {
        self.hooks.log()
    }

    /// Turns logging on or off, arming or disarming the hooks with it.
    pub(crate) fn set_enabled(&self, on: bool, who: &Identity) -> Result {
        self.hooks.set_enabled(on, who)
    }

    /// The module's state, with the hooks' count of missed calls.
    pub(crate) fn status(&self) -> crate::abi::Status {
        self.log().status(self.hooks.missed())
    }

    /// Reads whole records into `out`, which has room for `len` bytes; blocks unless `nonblock`.
    pub(crate) fn read(
        &self,
        out: &mut UserSliceWriter,
        len: usize,
        nonblock: bool,
    ) -> Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        let (start, moves, mut bounce) = {
            let mut st = self.state.lock();
            while st.busy {
                if nonblock {
                    return Err(EAGAIN);
                }
                if self.idle.wait_interruptible(&mut st) {
                    return Err(ERESTARTSYS);
                }
            }
            st.busy = true;
            (st.cursor, st.moves, core::mem::take(&mut st.bounce))
        };
        let r = self.read_claimed(start, &mut bounce, out, len, nonblock);
        let mut st = self.state.lock();
        st.bounce = bounce;
        st.busy = false;
        if let Ok((n, next)) = r {
            if n > 0 && st.moves == moves {
                st.cursor = next;
                self.seq.store(next.seq, Relaxed);
            }
        }
        drop(st);
        self.idle.notify_one();
        r.map(|(n, _)| n)
    }

    /// Reads for the claim holder, from `cur`; returns the bytes read and the cursor after them.
    fn read_claimed(
        &self,
        mut cur: Cursor,
        bounce: &mut KVVec<u8>,
        out: &mut UserSliceWriter,
        len: usize,
        nonblock: bool,
    ) -> Result<(usize, Cursor)> {
        loop {
            let (n, next) = self.copy_records(cur, bounce, out, len)?;
            if n > 0 {
                return Ok((n, next));
            }
            cur = next;
            if nonblock {
                return Err(EAGAIN);
            }
            if current!().signal_pending() {
                return Err(ERESTARTSYS);
            }
            self.log().wait_readable(cur.seq)?;
        }
    }

    fn copy_records(
        &self,
        mut cur: Cursor,
        bounce: &mut KVVec<u8>,
        out: &mut UserSliceWriter,
        len: usize,
    ) -> Result<(usize, Cursor)> {
        let mut total = 0;
        while total < len {
            let room = (len - total).min(bounce.len());
            let (n, next) = match self.log().read(cur, &mut bounce[..room]) {
                Ok(r) => r,
                // The bounce buffer holds any record, so only the caller's buffer is too small.
                Err(ReadError::TooSmall) if total == 0 => return Err(EINVAL),
                Err(ReadError::TooSmall) => break,
            };
            if n == 0 {
                break;
            }
            if let Err(e) = out.write_slice(&bounce[..n]) {
                // Nothing of this chunk counts as read: the cursor stays before it.
                if total == 0 {
                    return Err(e);
                }
                break;
            }
            cur = next;
            total += n;
            // A read with room for the whole ring, while producers keep it full, can go on for
            // long: let others run, and end it early (with what it has) for a signal.
            if current!().signal_pending() {
                break;
            }
            // SAFETY: A read, in process context; no lock is held here.
            unsafe { crate::bindings::tcplog_cond_resched() };
        }
        Ok((total, cur))
    }

    /// Bytes the next read can return (FIONREAD).
    pub(crate) fn available(&self) -> u64 {
        let cursor = self.state.lock().cursor;
        self.log().available(cursor)
    }

    /// Skips everything buffered: only records produced from now on will be read.
    pub(crate) fn seek_end(&self) {
        let mut st = self.state.lock();
        st.cursor = self.log().newest();
        st.moves += 1;
        self.seq.store(st.cursor.seq, Relaxed);
    }

    /// Poll readiness: readable when a record (or a LOST record) awaits this reader.
    pub(crate) fn poll(&self, file: &File, table: &PollTable<'_>) -> u32 {
        self.log().poll_wait(file, table);
        if self.log().readable(self.seq.load(Relaxed)) {
            kernel::bindings::POLLIN | kernel::bindings::POLLRDNORM
        } else {
            0
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Reader {
    fn drop(self: Pin<&mut Self>) {
        self.log().reader_closed();
    }
}
