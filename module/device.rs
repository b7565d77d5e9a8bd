// SPDX-License-Identifier: GPL-2.0

//! The misc device `/dev/tcplog`.
//!
//! The module builds its own `file_operations` rather than using `kernel::miscdevice`, because
//! the device needs `poll` and a node mode of 0600, which that abstraction does not offer.

use kernel::ffi::{c_int, c_long, c_uint, c_ulong};

use kernel::{
    bindings,
    error::to_result,
    prelude::*,
    types::Opaque,
    uaccess::{UserPtr, UserSlice},
};

use crate::abi;

/// Makes a C operations table usable as a `static`.
struct AssertSync<T>(T);

// SAFETY: The wrapped tables are immutable after construction and only read by the kernel.
unsafe impl<T> Sync for AssertSync<T> {}

static FOPS: AssertSync<bindings::file_operations> = AssertSync(bindings::file_operations {
    owner: kernel::module::this_module::<crate::LocalModule>().as_ptr(),
    open: Some(tcplog_open),
    release: Some(tcplog_release),
    unlocked_ioctl: Some(tcplog_ioctl),
    compat_ioctl: bindings::compat_ptr_ioctl,
    llseek: Some(bindings::noop_llseek),
    ..pin_init::zeroed()
});

/// The registration of `/dev/tcplog`.
///
/// # Invariants
///
/// `misc` holds a `struct miscdevice` registered with `misc_register()` for as long as the
/// `Registration` exists; it is deregistered exactly once, in `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
}

// SAFETY: `misc_deregister()` may be called from any thread, and `Registration` offers no
// methods that touch the `miscdevice` through a shared reference.
unsafe impl Send for Registration {}
// SAFETY: See above: a shared reference gives no access to the inner `miscdevice`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers the device node `/dev/tcplog`, mode 0600, owned by root.
    pub(crate) fn register() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            misc <- Opaque::try_ffi_init(|slot: *mut bindings::miscdevice| {
                let misc = bindings::miscdevice {
                    minor: bindings::MISC_DYNAMIC_MINOR as c_int,
                    name: c"tcplog".as_ptr().cast(),
                    fops: &FOPS.0,
                    mode: 0o600,
                    ..pin_init::zeroed()
                };
                // SAFETY: `slot` is valid for writes: the initialiser owns it.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a fully initialised `miscdevice` whose name and fops are
                // statics. The memory is pinned and `PinnedDrop` deregisters the device before it
                // is freed.
                // INVARIANT: On success, `misc` holds a registered device.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for Registration {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the device is registered, and this is the only place
        // that deregisters it.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// Handles one ioctl; `arg` is the userspace pointer of the command.
fn ioctl(cmd: u32, arg: usize) -> Result<isize> {
    match cmd {
        abi::TCPLOG_IOC_VERSION => {
            let mut w =
                UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<u32>()).writer();
            w.write(&abi::ABI_VERSION)?;
            Ok(0)
        }
        _ => Err(ENOTTY),
    }
}

/// # Safety
///
/// Called by the VFS with a valid inode and a file being opened on the misc device.
unsafe extern "C" fn tcplog_open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: The VFS passes a valid inode and file being opened.
    unsafe { bindings::stream_open(inode, file) }
}

/// # Safety
///
/// Called by the VFS once, when the last reference to an open file of the device goes away.
unsafe extern "C" fn tcplog_release(_inode: *mut bindings::inode, _file: *mut bindings::file) -> c_int {
    0
}

/// # Safety
///
/// Called by the VFS with a valid file of the device.
unsafe extern "C" fn tcplog_ioctl(_file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    match ioctl(cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}
