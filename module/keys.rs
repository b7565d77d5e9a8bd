// SPDX-License-Identifier: GPL-2.0

//! The secret keys of the module's hashes, drawn once at load.
//!
//! Remote peers choose the addresses and ports of inbound packets, so the flow and limit tables
//! hash with a key nobody outside can know: their chains cannot be flooded on purpose. Socket
//! ids are keyed hashes of socket addresses, so records never reveal kernel addresses. The keys
//! are a value that `TcpLog::init` makes and hands to whoever hashes; nothing hashes before it
//! exists.

use kernel::bindings;

/// The keys; one for table hashing, one for socket ids, so neither output helps to guess the
/// other.
#[derive(Clone, Copy)]
pub(crate) struct HashKeys {
    table: bindings::siphash_key_t,
    ids: bindings::siphash_key_t,
}

impl HashKeys {
    /// Draws new keys from the kernel's random pool.
    pub(crate) fn new() -> Self {
        let mut k = [0u64; 4];
        // SAFETY: `k` is 32 writable bytes.
        unsafe { bindings::get_random_bytes(k.as_mut_ptr().cast(), core::mem::size_of_val(&k)) };
        HashKeys {
            table: bindings::siphash_key_t { key: [k[0], k[1]] },
            ids: bindings::siphash_key_t { key: [k[2], k[3]] },
        }
    }

    /// SipHash of `bytes` with the table key.
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        // SAFETY: `bytes` is readable for its length (no alignment needed) and the key is valid.
        unsafe { bindings::__siphash_unaligned(bytes.as_ptr().cast(), bytes.len(), &self.table) }
    }

    /// SipHash of one word with the table key: cheaper than [`HashKeys::hash`] of its bytes.
    pub(crate) fn hash_word(&self, w: u64) -> u64 {
        // SAFETY: The key is valid.
        unsafe { bindings::siphash_1u64(w, &self.table) }
    }

    /// SipHash of two words with the table key.
    pub(crate) fn hash_words(&self, a: u64, b: u64) -> u64 {
        // SAFETY: The key is valid.
        unsafe { bindings::siphash_2u64(a, b, &self.table) }
    }

    /// The id of the socket at `addr` in records: the same for every record about one socket,
    /// distinct among sockets that exist at once, and no clue to where the kernel keeps it.
    pub(crate) fn sock_id(&self, addr: usize) -> u64 {
        // SAFETY: The key is valid; the address is only hashed.
        unsafe { bindings::siphash_1u64(addr as u64, &self.ids) }
    }
}
