// SPDX-License-Identifier: GPL-2.0

//! Plain-old-data: structures that are safe to view as bytes and to read back from bytes.

use core::mem::size_of;

/// A type whose values can be copied to and from raw bytes.
///
/// # Safety
///
/// Implementors are `#[repr(C)]`, hold only integers and arrays of integers, and have no implicit
/// padding (every padding byte is an explicit field). So every byte of a value is initialised, and
/// every byte pattern of the right length is a valid value.
pub unsafe trait Pod: Copy + 'static {
    /// The value's bytes, in native byte order.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: By the trait's contract all `size_of::<Self>()` bytes of `self` are initialised,
        // and the slice borrows `self`, so it cannot outlive it.
        unsafe {
            core::slice::from_raw_parts(core::ptr::from_ref(self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// Reads a value from the start of `bytes`, which need not be aligned.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: `bytes` holds at least `size_of::<Self>()` readable bytes, `read_unaligned` has
        // no alignment requirement, and by the trait's contract any byte pattern is a valid `Self`.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

// SAFETY: Integers have no padding and every bit pattern is valid.
unsafe impl Pod for u32 {}
// SAFETY: As above.
unsafe impl Pod for u64 {}
// SAFETY: As above.
unsafe impl Pod for i32 {}
