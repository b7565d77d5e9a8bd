// SPDX-License-Identifier: GPL-2.0

//! A checked view of a packet at a netfilter hook: its bytes from the IP header on, read with
//! `skb_copy_bits`, which checks every access against the packet (linear or paged).

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::ffi::c_int;

use crate::bindings::{self, sk_buff};
use crate::parse::PacketBytes;

/// A packet, alive while the view is.
///
/// # Invariants
///
/// `ptr` points to a `struct sk_buff` that stays alive and unchanged in length for `'a`;
/// `net` is the offset of its network header from `skb->data` (0 or more), `len` the bytes from
/// there to the end.
pub(crate) struct Skb<'a> {
    ptr: NonNull<sk_buff>,
    net: usize,
    len: usize,
    _alive: PhantomData<&'a sk_buff>,
}

impl<'a> Skb<'a> {
    /// A view of `skb` from its network header.
    ///
    /// # Safety
    ///
    /// `skb` must point to a packet that stays alive for `'a` and that nothing else changes
    /// meanwhile (netfilter hands a hook such a packet for the duration of the call).
    pub(crate) unsafe fn from_ptr(skb: *const sk_buff) -> Option<Self> {
        let ptr = NonNull::new(skb.cast_mut())?;
        // SAFETY: By the function's requirements the packet is alive and stable.
        let (off, total) = unsafe { (bindings::tcplog_skb_network_offset(skb), (*skb).len) };
        let net = usize::try_from(off).ok()?;
        let len = (total as usize).checked_sub(net)?;
        // INVARIANT: As just computed from the live packet.
        Some(Skb {
            ptr,
            net,
            len,
            _alive: PhantomData,
        })
    }
}

impl PacketBytes for Skb<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn copy(&self, off: usize, out: &mut [u8]) -> bool {
        let (Some(start), Ok(n)) = (self.net.checked_add(off), c_int::try_from(out.len())) else {
            return false;
        };
        let Ok(start) = c_int::try_from(start) else {
            return false;
        };
        // SAFETY: By the type invariant the packet is alive; `out` is writable for `n` bytes,
        // and `skb_copy_bits` checks `start + n` against the packet and fails without writing
        // past `out`.
        unsafe {
            bindings::skb_copy_bits(self.ptr.as_ptr(), start, out.as_mut_ptr().cast(), n) == 0
        }
    }
}
