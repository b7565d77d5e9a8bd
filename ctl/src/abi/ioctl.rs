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

/// Returns the module's [`ABI_VERSION`](super::ABI_VERSION) as a `u32`.
///
/// Needs no write access and no capability: it is how a reader checks that it can parse records.
pub const TCPLOG_IOC_VERSION: u32 = ior::<u32>(TCPLOG_IOC_TYPE, 0x00);

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
    fn version_command() {
        assert_eq!(TCPLOG_IOC_VERSION, 0x8004_b900);
    }
}
