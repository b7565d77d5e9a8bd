// SPDX-License-Identifier: GPL-2.0

//! The secret key of the module's table hashes, drawn once at load.
//!
//! Remote peers choose the addresses and ports of inbound packets, so the flow and limit tables
//! hash with a key nobody outside can know: their chains cannot be flooded on purpose. The hash
//! is the kernel's `hsiphash` (SipHash-1-3 on 64-bit machines), which is made for hash tables
//! whose hashes stay inside: half the rounds of SipHash-2-4, on every packet. (Socket ids are
//! the kernel's socket cookies, see `sock.rs`: no hash of an address.) The key is a value that
//! `TcpLog::init` makes and hands to whoever hashes; nothing hashes before it exists.

use kernel::bindings;

/// The key.
#[derive(Clone, Copy)]
pub(crate) struct HashKeys {
    table: bindings::hsiphash_key_t,
}

/// A table hash from a 32-bit `hsiphash`: in the high half, where the tables take their bucket
/// from.
fn wide(h: u32) -> u64 {
    u64::from(h) << 32
}

impl HashKeys {
    /// Draws a new key from the kernel's random pool.
    pub(crate) fn new() -> Self {
        let mut table = bindings::hsiphash_key_t::default();
        // SAFETY: `table.key` is writable for its size.
        unsafe {
            bindings::get_random_bytes(
                table.key.as_mut_ptr().cast(),
                core::mem::size_of_val(&table.key),
            )
        };
        HashKeys { table }
    }

    /// The hash of `bytes`.
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        // SAFETY: `bytes` is readable for its length (no alignment needed) and the key is valid.
        wide(unsafe {
            bindings::__hsiphash_unaligned(bytes.as_ptr().cast(), bytes.len(), &self.table)
        })
    }

    /// The hash of one word: cheaper than [`HashKeys::hash`] of its bytes.
    pub(crate) fn hash_word(&self, w: u64) -> u64 {
        // SAFETY: The key is valid.
        wide(unsafe { bindings::hsiphash_2u32(w as u32, (w >> 32) as u32, &self.table) })
    }

    /// The hash of two words.
    pub(crate) fn hash_words(&self, a: u64, b: u64) -> u64 {
        // SAFETY: The key is valid.
        wide(unsafe {
            bindings::hsiphash_4u32(
                a as u32,
                (a >> 32) as u32,
                b as u32,
                (b >> 32) as u32,
                &self.table,
            )
        })
    }
}
