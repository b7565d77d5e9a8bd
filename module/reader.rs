// SPDX-License-Identifier: GPL-2.0

//! One open descriptor of `/dev/tcplog`: its place in the ring and how it reads.
//!
//! Reads return whole records only (ipl's rule): as many as fit, EINVAL if not even the next one
//! fits. Records reach userspace through a per-descriptor bounce buffer, because the ring's lock
//! is a spinlock and copying to userspace may fault; the cursor advances only after the copy
//! succeeded, so a read that fails with EFAULT loses nothing.

use kernel::{
    fs::File,
    new_mutex,
    prelude::*,
    sync::{poll::PollTable, Arc, Mutex},
    uaccess::UserSliceWriter,
};

use crate::abi::MAX_RECORD_LEN;
use crate::log::Log;
use crate::ring::{Cursor, ReadError};
use crate::socket_hooks::SocketHooks;

/// Size of the bounce buffer: a read copies up to this much per hold of the ring's lock.
const BOUNCE_SIZE: usize = 32 * 1024;

const _: () = assert!(BOUNCE_SIZE >= MAX_RECORD_LEN);

struct ReaderState {
    cursor: Cursor,
    bounce: KVVec<u8>,
}

/// The state of one open descriptor.
#[pin_data(PinnedDrop)]
pub(crate) struct Reader {
    log: Arc<Log>,
    hooks: Arc<SocketHooks>,
    #[pin]
    state: Mutex<ReaderState>,
}

impl Reader {
    /// A reader that starts at the oldest record held.
    pub(crate) fn new(log: Arc<Log>, hooks: Arc<SocketHooks>) -> Result<Pin<KBox<Self>>> {
        let bounce = KVVec::from_elem(0u8, BOUNCE_SIZE, GFP_KERNEL)?;
        let cursor = log.oldest();
        let reader = KBox::pin_init(
            try_pin_init!(Reader {
                log,
                hooks,
                state <- new_mutex!(ReaderState { cursor, bounce }, "tcplog_reader"),
            }),
            GFP_KERNEL,
        )?;
        // Counted only once it exists, so that `PinnedDrop` undoes exactly this.
        reader.log.reader_opened();
        Ok(reader)
    }

    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    /// Turns logging on or off, arming or disarming the hooks with it.
    pub(crate) fn set_enabled(&self, on: bool, who: &crate::identity::Identity) {
        self.log.set_enabled(on, who, |on| self.hooks.set_armed(on));
    }

    /// The module's state, with the hooks' count of missed calls.
    pub(crate) fn status(&self) -> crate::abi::Status {
        self.log.status(self.hooks.missed())
    }

    /// Reads whole records into `out`, which has room for `len` bytes; blocks unless `nonblock`.
    pub(crate) fn read(
        &self,
        out: &mut UserSliceWriter,
        len: usize,
        nonblock: bool,
    ) -> Result<usize> {
        loop {
            let seq = {
                let mut guard = self.state.lock();
                let n = self.copy_records(&mut guard, out, len)?;
                if n > 0 {
                    return Ok(n);
                }
                guard.cursor.seq
            };
            if nonblock {
                return Err(EAGAIN);
            }
            self.log.wait_readable(seq)?;
        }
    }

    fn copy_records(
        &self,
        st: &mut ReaderState,
        out: &mut UserSliceWriter,
        len: usize,
    ) -> Result<usize> {
        let mut total = 0;
        while total < len {
            let room = (len - total).min(st.bounce.len());
            let (n, next) = match self.log.read(st.cursor, &mut st.bounce[..room]) {
                Ok(r) => r,
                // The bounce buffer holds any record, so only the caller's buffer is too small.
                Err(ReadError::TooSmall) if total == 0 => return Err(EINVAL),
                Err(ReadError::TooSmall) => break,
            };
            if n == 0 {
                break;
            }
            if let Err(e) = out.write_slice(&st.bounce[..n]) {
                // Nothing of this chunk counts as read: the cursor stays before it.
                if total == 0 {
                    return Err(e);
                }
                break;
            }
            st.cursor = next;
            total += n;
        }
        Ok(total)
    }

    /// Bytes the next read can return (FIONREAD).
    pub(crate) fn available(&self) -> u64 {
        let cursor = self.state.lock().cursor;
        self.log.available(cursor)
    }

    /// Skips everything buffered: only records produced from now on will be read.
    pub(crate) fn seek_end(&self) {
        self.state.lock().cursor = self.log.newest();
    }

    /// Poll readiness: readable when a record (or a LOST record) awaits this reader.
    pub(crate) fn poll(&self, file: &File, table: &PollTable<'_>) -> u32 {
        self.log.poll_wait(file, table);
        let seq = self.state.lock().cursor.seq;
        if self.log.readable(seq) {
            kernel::bindings::POLLIN | kernel::bindings::POLLRDNORM
        } else {
            0
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Reader {
    fn drop(self: Pin<&mut Self>) {
        self.log.reader_closed();
    }
}
