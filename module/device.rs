// SPDX-License-Identifier: GPL-2.0

//! The misc device `/dev/tcplog`: registration, file operations and ioctls.
//!
//! The module builds its own `file_operations` rather than using `kernel::miscdevice`, because
//! the device needs `poll` and a node mode of 0600, which that abstraction does not offer.
//! `owner` pins the module while any descriptor is open, so `rmmod` is refused until the last
//! one closes and no file operation can outlive the code it runs.

use core::mem::{size_of, size_of_val, MaybeUninit};

use kernel::{
    bindings,
    error::to_result,
    ffi::{c_char, c_int, c_long, c_uint, c_ulong},
    fs::File,
    prelude::*,
    sync::{poll::PollTable, Arc},
    transmute::{AsBytes, FromBytes},
    types::{ForeignOwnable, Opaque},
    uaccess::{UserPtr, UserSlice},
};

use crate::abi;
use crate::hooks::Hooks;
use crate::identity::Identity;
use crate::reader::Reader;

/// Makes a C operations table usable as a `static`.
struct AssertSync<T>(T);

// SAFETY: The wrapped tables are immutable after construction and only read by the kernel.
unsafe impl<T> Sync for AssertSync<T> {}

static FOPS: AssertSync<bindings::file_operations> = AssertSync(bindings::file_operations {
    owner: crate::compat::this_module(),
    open: Some(tcplog_open),
    release: Some(tcplog_release),
    read: Some(tcplog_read),
    poll: Some(tcplog_poll),
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
    hooks: Arc<Hooks>,
}

// SAFETY: `misc_deregister()` may be called from any thread, and a shared reference gives no
// access to the `miscdevice` but through the VFS, which synchronises itself.
unsafe impl Send for Registration {}
// SAFETY: As above; `Hooks` is `Sync`.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers the device node `/dev/tcplog`, mode 0600, owned by root, reading from the
    /// log of `hooks`.
    pub(crate) fn register(hooks: Arc<Hooks>) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            hooks,
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

/// Whether the descriptor was opened for writing.
fn opened_for_writing(file: &File) -> bool {
    file.flags() & bindings::O_ACCMODE != bindings::O_RDONLY
}

/// Lets the kernel's user-copy functions move ABI structures: each is `Pod` (`repr(C)`,
/// integers only, no padding), so any bytes are a valid value and every byte of a value is
/// initialised.
macro_rules! user_copyable {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: `$t` is `Pod`, see above.
        unsafe impl FromBytes for $t {}
        // SAFETY: As above.
        unsafe impl AsBytes for $t {}
    )*};
}

user_copyable!(
    abi::ConnQuery,
    abi::InterimBody,
    abi::Config,
    abi::Mark,
    abi::Status,
    abi::Filter,
    abi::RuleSet,
    abi::RuleStats,
);

/// Reads the ioctl argument `T` from userspace.
fn read_arg<T: FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .reader()
        .read()
}

/// Reads the ioctl argument `T` from userspace straight into the heap (for arguments of a few
/// KiB, which have no business on the kernel stack).
fn read_arg_boxed<T: FromBytes>(arg: usize) -> Result<KBox<T>> {
    let mut b = KBox::<T>::new_uninit(GFP_KERNEL)?;
    // SAFETY: The box holds `size_of::<T>()` bytes, which may be viewed as uninitialised bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<MaybeUninit<u8>>(), size_of::<T>())
    };
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .reader()
        .read_raw(bytes)?;
    // SAFETY: Every byte was written, and by `FromBytes` any bytes are a valid `T`.
    Ok(unsafe { b.assume_init() })
}

/// Writes the ioctl result `T` to userspace.
fn write_arg<T: AsBytes>(arg: usize, value: &T) -> Result<isize> {
    UserSlice::new(UserPtr::from_addr(arg), size_of_val(value))
        .writer()
        .write(value)?;
    Ok(0)
}

/// Whether the descriptor's opener had CAP_NET_ADMIN (in the initial user namespace). Rights
/// belong to the opener, as for the kernel's own devices and netlink sockets: a privileged
/// program that opened the device keeps them after it drops privileges, and a descriptor opened
/// without them gains nothing from whoever later calls on it.
fn opener_may_change_state(file: &File) -> bool {
    // SAFETY: `file` is a valid file; `init_user_ns` is a static that lives forever.
    unsafe {
        bindings::file_ns_capable(
            file.as_ptr(),
            core::ptr::addr_of_mut!(bindings::init_user_ns),
            bindings::CAP_NET_ADMIN as c_int,
        )
    }
}

/// Writes up to `max` entries about the open TCP connections to the user array at `buf`;
/// returns how many.
fn list_conns(log: &crate::log::Log, buf: usize, max: u32) -> Result<u32> {
    let size = size_of::<abi::InterimBody>();
    let len = (max as usize).checked_mul(size).ok_or(EINVAL)?;
    let mut out = UserSlice::new(UserPtr::from_addr(buf), len).writer();
    let mut written = 0u32;
    let mut from = Some(0);
    while let Some(start) = from {
        if written == max {
            break;
        }
        let mut batch = [None; 16];
        let room = ((max - written) as usize).min(batch.len());
        let (n, next) = log.conns.open_batch(start, &mut batch[..room]);
        for o in batch[..n].iter().flatten() {
            out.write(&crate::worker::interim(log, o))?;
            written += 1;
        }
        from = next;
    }
    Ok(written)
}

/// Handles one ioctl of a descriptor.
fn ioctl(reader: &Reader, file: &File, cmd: u32, arg: usize) -> Result<isize> {
    let log = reader.log();
    let changes_state = matches!(
        cmd,
        abi::TCPLOG_IOC_ENABLE
            | abi::TCPLOG_IOC_DISABLE
            | abi::TCPLOG_IOC_FLUSH
            | abi::TCPLOG_IOC_SET_CONFIG
            | abi::TCPLOG_IOC_SET_FILTER
            | abi::TCPLOG_IOC_SET_RULES
            | abi::TCPLOG_IOC_MARK
    );
    if changes_state {
        if !opened_for_writing(file) {
            return Err(EBADF);
        }
        if !opener_may_change_state(file) {
            return Err(EPERM);
        }
    }
    match cmd {
        abi::TCPLOG_IOC_VERSION => write_arg(arg, &abi::ABI_VERSION),
        abi::TCPLOG_IOC_ENABLE => {
            reader.set_enabled(true, &Identity::current())?;
            Ok(0)
        }
        abi::TCPLOG_IOC_DISABLE => {
            reader.set_enabled(false, &Identity::current())?;
            Ok(0)
        }
        abi::TCPLOG_IOC_STATUS => write_arg(arg, &reader.status()),
        abi::TCPLOG_IOC_FLUSH => {
            // Read the destination first, so a bad pointer fails before anything is discarded.
            let _: u64 = read_arg(arg)?;
            let bytes = log.flush(&Identity::current());
            write_arg(arg, &bytes)
        }
        abi::TCPLOG_IOC_GET_CONFIG => write_arg(arg, &log.config()),
        abi::TCPLOG_IOC_SET_CONFIG => {
            let cfg: abi::Config = read_arg(arg)?;
            log.set_config(&cfg, &Identity::current())?;
            Ok(0)
        }
        abi::TCPLOG_IOC_GET_FILTER => write_arg(arg, &log.filter()),
        abi::TCPLOG_IOC_SET_FILTER => {
            let f: abi::Filter = read_arg(arg)?;
            log.set_filter(&f, &Identity::current())?;
            Ok(0)
        }
        abi::TCPLOG_IOC_GET_RULES => write_arg(arg, &*log.rules.get()?),
        abi::TCPLOG_IOC_GET_RULE_STATS => {
            write_arg(arg, &*KBox::new(log.rules.stats(), GFP_KERNEL)?)
        }
        abi::TCPLOG_IOC_SET_RULES => {
            let set: KBox<abi::RuleSet> = read_arg_boxed(arg)?;
            log.set_rules(&set, &Identity::current())?;
            Ok(0)
        }
        abi::TCPLOG_IOC_SEEK_END => {
            reader.seek_end();
            Ok(0)
        }
        abi::TCPLOG_IOC_MARK => {
            let mark: abi::Mark = read_arg(arg)?;
            if mark.count == 0 || mark.count > abi::MAX_MARK_COUNT || mark._pad != 0 {
                return Err(EINVAL);
            }
            log.mark(mark.value, mark.count, &Identity::current());
            Ok(0)
        }
        abi::TCPLOG_IOC_GET_CONNS => {
            let mut q: abi::ConnQuery = read_arg(arg)?;
            if q._pad != 0 || q.written != 0 || q.tracked != 0 {
                return Err(EINVAL);
            }
            q.written = list_conns(log, q.buf as usize, q.max)?;
            q.tracked = log.conns.counts().1 as u32;
            write_arg(arg, &q)
        }
        abi::FIONREAD => {
            let n = i32::try_from(reader.available()).unwrap_or(i32::MAX);
            write_arg(arg, &n)
        }
        _ => Err(ENOTTY),
    }
}

/// # Safety
///
/// `file` must be a file of the device; its `private_data` was set by `tcplog_open` and is not
/// yet released.
unsafe fn reader_of<'a>(file: *mut bindings::file) -> Pin<&'a Reader> {
    // SAFETY: By the function's safety requirements, `private_data` holds the pointer returned
    // by `into_foreign` in `tcplog_open`, and `tcplog_release` has not run yet.
    unsafe { <Pin<KBox<Reader>> as ForeignOwnable>::borrow((*file).private_data) }
}

/// # Safety
///
/// Called by the VFS (through `misc_open`) with a valid inode and a file being opened on the
/// device, whose `private_data` points at the `miscdevice` of a live [`Registration`].
unsafe extern "C" fn tcplog_open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `misc_open` stores the `miscdevice` in `private_data` before calling us, and the
    // registration cannot go away during the call: the device is still registered.
    let misc = unsafe { (*file).private_data }.cast::<bindings::miscdevice>();
    // SAFETY: Every `miscdevice` with these fops is the `misc` field of a `Registration`
    // (`Opaque<T>` has the layout of `T`).
    let reg = unsafe {
        &*kernel::container_of!(
            misc.cast::<Opaque<bindings::miscdevice>>(),
            Registration,
            misc
        )
    };
    // SAFETY: The VFS passes a valid inode and file being opened.
    let ret = unsafe { bindings::stream_open(inode, file) };
    if ret != 0 {
        return ret;
    }
    match Reader::new(reg.hooks.clone()) {
        Ok(reader) => {
            // SAFETY: The file is being opened: nothing else uses `private_data` yet; from now
            // on it holds the reader, until `tcplog_release` takes it back.
            unsafe { (*file).private_data = reader.into_foreign().cast() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the VFS once, when the last reference to a file opened by `tcplog_open` goes.
unsafe extern "C" fn tcplog_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `private_data` holds the reader stored by `tcplog_open`; this is its last use.
    drop(unsafe { <Pin<KBox<Reader>> as ForeignOwnable>::from_foreign((*file).private_data) });
    0
}

/// # Safety
///
/// Called by the VFS with a file of the device and a userspace buffer of `len` bytes.
unsafe extern "C" fn tcplog_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    len: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `file` is a file of the device, open for the duration of the call.
    let reader = unsafe { reader_of(file) };
    // SAFETY: As above.
    let nonblock = unsafe { File::from_raw_file(file) }.flags() & bindings::O_NONBLOCK != 0;
    let mut out = UserSlice::new(UserPtr::from_ptr(buf.cast()), len).writer();
    match reader.read(&mut out, len, nonblock) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS with a file of the device and a poll table that is valid or null.
unsafe extern "C" fn tcplog_poll(
    file: *mut bindings::file,
    table: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: `file` is a file of the device, open for the duration of the call.
    let reader = unsafe { reader_of(file) };
    // SAFETY: As above.
    let f = unsafe { File::from_raw_file(file) };
    // SAFETY: The VFS passes a poll table valid for the call, or null.
    let table = unsafe { PollTable::from_raw(table) };
    reader.poll(f, &table)
}

/// # Safety
///
/// Called by the VFS with a file of the device.
unsafe extern "C" fn tcplog_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `file` is a file of the device, open for the duration of the call.
    let reader = unsafe { reader_of(file) };
    // SAFETY: As above.
    let f = unsafe { File::from_raw_file(file) };
    match ioctl(&reader, f, cmd, arg) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}
