//! A minimal io_uring, made by hand: `io_uring_setup` and `io_uring_enter` as raw syscalls, the
//! submission and completion rings mapped and driven directly (no liburing), enough to accept,
//! connect, send, receive and close sockets through the kernel's asynchronous path.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::{errno, errno_name};

const SYS_IO_URING_SETUP: libc::c_long = 425;
const SYS_IO_URING_ENTER: libc::c_long = 426;
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_ENTER_GETEVENTS: u32 = 1;

pub const OP_ACCEPT: u8 = 13;
pub const OP_CONNECT: u8 = 16;
pub const OP_CLOSE: u8 = 19;
pub const OP_SEND: u8 = 26;
pub const OP_RECV: u8 = 27;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// A submission queue entry (64 bytes, `struct io_uring_sqe`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    /// `off` / `addr2`: for connect, the address length.
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    /// `accept_flags`, `msg_flags`, ...
    pub op_flags: u32,
    pub user_data: u64,
    pub buf_index: u16,
    pub personality: u16,
    pub file_index: i32,
    pub addr3: u64,
    pub pad2: u64,
}

/// A completion (`struct io_uring_cqe`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

const _: () = assert!(std::mem::size_of::<Sqe>() == 64);
const _: () = assert!(std::mem::size_of::<Params>() == 120);

struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are a mapping made by `map` and not unmapped elsewhere.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn map(fd: i32, len: usize, off: i64) -> Result<Map, String> {
    // SAFETY: A fresh shared mapping of the ring descriptor; the kernel checks the offset.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap ring at {off:#x}: {}", errno_name(errno())));
    }
    Ok(Map { ptr: p.cast(), len })
}

/// An io_uring instance with its rings mapped.
pub struct Ring {
    fd: OwnedFd,
    sq: Map,
    cq: Option<Map>,
    sqes: Map,
    p: Params,
}

impl Ring {
    /// `io_uring_setup(entries)`; the errno on failure (io_uring may be disabled by sysctl).
    pub fn new(entries: u32) -> Result<Ring, String> {
        let mut p = Params::default();
        // SAFETY: `p` is a writable io_uring_params.
        let fd = unsafe { libc::syscall(SYS_IO_URING_SETUP, entries, &mut p as *mut Params) };
        if fd < 0 {
            return Err(format!("io_uring_setup: {}", errno_name(errno())));
        }
        // SAFETY: A new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
        let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
        let sq = map(
            fd.as_raw_fd(),
            if single { sq_len.max(cq_len) } else { sq_len },
            IORING_OFF_SQ_RING,
        )?;
        let cq = if single {
            None
        } else {
            Some(map(fd.as_raw_fd(), cq_len, IORING_OFF_CQ_RING)?)
        };
        let sqes = map(
            fd.as_raw_fd(),
            p.sq_entries as usize * std::mem::size_of::<Sqe>(),
            IORING_OFF_SQES,
        )?;
        Ok(Ring {
            fd,
            sq,
            cq,
            sqes,
            p,
        })
    }

    fn cq_base(&self) -> *mut u8 {
        self.cq.as_ref().map_or(self.sq.ptr, |m| m.ptr)
    }

    fn word(base: *mut u8, off: u32) -> &'static AtomicU32 {
        // SAFETY: `off` is an offset the kernel gave for this ring, of an aligned u32 that lives
        // as long as the mapping; the kernel and we access it atomically.
        unsafe { &*(base.add(off as usize) as *const AtomicU32) }
    }

    /// Queues one entry (not yet submitted).
    pub fn push(&mut self, sqe: Sqe) -> Result<(), String> {
        let o = &self.p.sq_off;
        let base = self.sq.ptr;
        let head = Self::word(base, o.head).load(Ordering::Acquire);
        let tail = Self::word(base, o.tail).load(Ordering::Relaxed);
        if tail.wrapping_sub(head) >= self.p.sq_entries {
            return Err("submission queue full".into());
        }
        let mask = Self::word(base, o.ring_mask).load(Ordering::Relaxed);
        let idx = tail & mask;
        // SAFETY: `idx` is within the ring (masked); the entry and the array slot are ours
        // until the tail is published.
        unsafe {
            std::ptr::write(self.sqes.ptr.cast::<Sqe>().add(idx as usize), sqe);
            std::ptr::write(
                base.add(o.array as usize).cast::<u32>().add(idx as usize),
                idx,
            );
        }
        Self::word(base, o.tail).store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// `io_uring_enter(to_submit, min_complete, GETEVENTS)`; returns how many were submitted.
    pub fn enter(&self, to_submit: u32, min_complete: u32) -> Result<u32, String> {
        loop {
            // SAFETY: The ring descriptor is ours; no signal mask is passed.
            let n = unsafe {
                libc::syscall(
                    SYS_IO_URING_ENTER,
                    self.fd.as_raw_fd(),
                    to_submit,
                    min_complete,
                    if min_complete > 0 {
                        IORING_ENTER_GETEVENTS
                    } else {
                        0
                    },
                    std::ptr::null::<u8>(),
                    0usize,
                )
            };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(format!("io_uring_enter: {}", errno_name(errno())));
            }
            return Ok(n as u32);
        }
    }

    /// Takes every completion available now.
    pub fn reap(&mut self) -> Vec<Cqe> {
        let o = &self.p.cq_off;
        let base = self.cq_base();
        let mut head = Self::word(base, o.head).load(Ordering::Relaxed);
        let tail = Self::word(base, o.tail).load(Ordering::Acquire);
        let mask = Self::word(base, o.ring_mask).load(Ordering::Relaxed);
        let mut out = Vec::new();
        while head != tail {
            // SAFETY: Entries between head and tail are the kernel's completed ones.
            let c = unsafe {
                std::ptr::read(
                    base.add(o.cqes as usize)
                        .cast::<Cqe>()
                        .add((head & mask) as usize),
                )
            };
            out.push(c);
            head = head.wrapping_add(1);
        }
        Self::word(base, o.head).store(head, Ordering::Release);
        out
    }

    /// Submits what is queued and waits until `n` completions have come; returns them.
    pub fn submit_and_wait(&mut self, queued: u32, n: usize) -> Result<Vec<Cqe>, String> {
        let mut done = Vec::new();
        let mut to_submit = queued;
        while done.len() < n {
            let want = (n - done.len()) as u32;
            let s = self.enter(to_submit, want)?;
            to_submit = to_submit.saturating_sub(s);
            done.extend(self.reap());
        }
        Ok(done)
    }
}
