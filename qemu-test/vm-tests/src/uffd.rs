//! userfaultfd, to hold a read(2) of the device inside its copy to userspace for as long as a
//! test likes: the read's buffer is registered memory that nobody has touched, so the kernel's
//! copy faults, and the fault waits until the test resolves it (or the task is killed).
//!
//! The VM runs the suite as root, so the kernel's own faults may be handled (no
//! `UFFD_USER_MODE_ONLY`).

use tcplog_ctl as abi;

use crate::adv_kit::Mapping;
use crate::sys::{self, errno_name};

const UFFD_API: u64 = 0xAA;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const PAGE: u64 = 4096;

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct Register {
    range: Range,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Zeropage {
    range: Range,
    mode: u64,
    zeropage: i64,
}

const fn uffdio(nr: u8, size: usize) -> u32 {
    abi::ioc(abi::IOC_READ | abi::IOC_WRITE, 0xAA, nr, size)
}
const UFFDIO_API: u32 = uffdio(0x3F, std::mem::size_of::<Api>());
const UFFDIO_REGISTER: u32 = uffdio(0x00, std::mem::size_of::<Register>());
const UFFDIO_ZEROPAGE: u32 = uffdio(0x04, std::mem::size_of::<Zeropage>());

/// A userfaultfd with one registered region: the first touch of each of its pages waits.
pub struct Uffd {
    fd: i32,
    pub region: Mapping,
}

/// Makes a userfaultfd and registers `region` with it (missing-page faults). Only system calls:
/// usable in a forked child. Returns the descriptor, or a negative step number that failed.
///
/// # Safety
///
/// `start..start + len` must be a private anonymous mapping of the caller that nothing has
/// touched.
pub unsafe fn raw_register(start: usize, len: usize) -> i32 {
    // SAFETY: Plain system calls on our own descriptor and mapping.
    unsafe {
        let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) as i32;
        if fd < 0 {
            return -1;
        }
        let mut api = Api {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        if libc::ioctl(fd, UFFDIO_API as _, &mut api) != 0 {
            return -2;
        }
        let mut reg = Register {
            range: Range {
                start: start as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        if libc::ioctl(fd, UFFDIO_REGISTER as _, &mut reg) != 0 {
            return -3;
        }
        fd
    }
}

impl Uffd {
    /// A region of `pages` pages whose every first touch waits for [`Uffd::zero`].
    pub fn new(pages: usize) -> Result<Uffd, String> {
        let len = pages * PAGE as usize;
        let region = Mapping::new(len, libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: `region` is a fresh anonymous mapping nothing has touched.
        let fd = unsafe { raw_register(region.addr(), len) };
        if fd < 0 {
            return Err(format!(
                "userfaultfd setup step {} failed: {}",
                -fd,
                errno_name(sys::errno())
            ));
        }
        Ok(Uffd { fd, region })
    }

    /// Waits up to `timeout_ms` for a fault in the region; the faulting address.
    pub fn wait_fault(&self, timeout_ms: i32) -> Result<u64, String> {
        let mut p = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: One valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n <= 0 {
            return Err(format!("no fault within {timeout_ms} ms"));
        }
        let mut msg = [0u8; 32];
        // SAFETY: `msg` has room for one `struct uffd_msg` (32 bytes).
        let r = unsafe { libc::read(self.fd, msg.as_mut_ptr().cast(), 32) };
        if r != 32 {
            return Err(format!("reading the fault: {}", errno_name(sys::errno())));
        }
        if msg[0] != UFFD_EVENT_PAGEFAULT {
            return Err(format!("event {:#x}, not a page fault", msg[0]));
        }
        Ok(u64::from_ne_bytes(msg[16..24].try_into().unwrap()))
    }

    /// Resolves the fault at `addr` with a page of zeros; the waiting task goes on.
    pub fn zero(&self, addr: u64) -> Result<(), String> {
        let mut z = Zeropage {
            range: Range {
                start: addr & !(PAGE - 1),
                len: PAGE,
            },
            mode: 0,
            zeropage: 0,
        };
        // SAFETY: A valid argument for our own descriptor.
        let rc = unsafe { libc::ioctl(self.fd, UFFDIO_ZEROPAGE as _, &mut z) };
        if rc != 0 && sys::errno() != libc::EEXIST {
            return Err(format!("UFFDIO_ZEROPAGE: {}", errno_name(sys::errno())));
        }
        Ok(())
    }

    /// Resolves every page of the region.
    pub fn zero_all(&self) {
        let mut a = self.region.addr() as u64;
        while a < (self.region.addr() + self.region.len) as u64 {
            let _ = self.zero(a);
            a += PAGE;
        }
    }
}

impl Drop for Uffd {
    fn drop(&mut self) {
        self.zero_all();
        // SAFETY: Our own descriptor; closing it also wakes any fault still waiting.
        unsafe { libc::close(self.fd) };
    }
}
