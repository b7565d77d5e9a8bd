//! The device as the tests drive it: raw syscalls, so every errno is the kernel's own.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use tcplog_ctl::{self as abi, ConfigBody, LostBody, MarkBody, Pod, RecordHeader};

use crate::sys::{self, errno, errno_name};

/// An open descriptor of `/dev/tcplog`.
pub struct Dev {
    pub file: File,
}

/// A record as read from the device.
#[derive(Clone, Debug)]
pub struct Rec {
    pub hdr: RecordHeader,
    pub body: Vec<u8>,
}

impl Rec {
    pub fn lost(&self) -> Option<LostBody> {
        (self.hdr.rtype == abi::rtype::LOST).then(|| LostBody::read_from(&self.body).unwrap())
    }
    pub fn config(&self) -> Option<ConfigBody> {
        (self.hdr.rtype == abi::rtype::CONFIG).then(|| ConfigBody::read_from(&self.body).unwrap())
    }
    pub fn mark(&self) -> Option<MarkBody> {
        (self.hdr.rtype == abi::rtype::MARK).then(|| MarkBody::read_from(&self.body).unwrap())
    }
}

/// Splits a read's bytes into records, checking that they are whole and well formed.
pub fn parse(buf: &[u8]) -> Result<Vec<Rec>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    let hl = std::mem::size_of::<RecordHeader>();
    while off < buf.len() {
        let hdr = RecordHeader::read_from(&buf[off..])
            .ok_or_else(|| format!("partial header at offset {off} of {}", buf.len()))?;
        let len = usize::from(hdr.len);
        if hdr.magic != abi::RECORD_MAGIC {
            return Err(format!("bad magic {:#x} at offset {off}", hdr.magic));
        }
        if len < hl || len % abi::RECORD_ALIGN != 0 || off + len > buf.len() {
            return Err(format!("bad length {len} at offset {off} of {}", buf.len()));
        }
        out.push(Rec {
            hdr,
            body: buf[off + hl..off + len].to_vec(),
        });
        off += len;
    }
    Ok(out)
}

impl Dev {
    pub fn open(write: bool, nonblock: bool) -> Result<Dev, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(if nonblock { libc::O_NONBLOCK } else { 0 })
            .open(sys::DEVICE)
            .map_err(|e| format!("open {}: {e}", sys::DEVICE))?;
        Ok(Dev { file })
    }

    /// Read-write, non-blocking: the usual test descriptor.
    pub fn rw() -> Result<Dev, String> {
        Dev::open(true, true)
    }

    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// ioctl with a pointer argument; the errno on failure.
    pub fn ioctl<T>(&self, cmd: u32, arg: *mut T) -> Result<i32, i32> {
        sys::ioctl_ptr(&self.file, cmd, arg)
    }

    pub fn ioctl_none(&self, cmd: u32) -> Result<i32, i32> {
        sys::ioctl_ptr(&self.file, cmd, std::ptr::null_mut::<u8>())
    }

    pub fn status(&self) -> Result<abi::Status, String> {
        let mut s = abi::Status::default();
        self.ioctl(abi::TCPLOG_IOC_STATUS, &mut s)
            .map_err(|e| format!("STATUS: {}", errno_name(e)))?;
        Ok(s)
    }

    pub fn config(&self) -> Result<abi::Config, String> {
        let mut c = abi::Config::default();
        self.ioctl(abi::TCPLOG_IOC_GET_CONFIG, &mut c)
            .map_err(|e| format!("GET_CONFIG: {}", errno_name(e)))?;
        Ok(c)
    }

    pub fn set_config(&self, c: &abi::Config) -> Result<(), i32> {
        let mut c = *c;
        self.ioctl(abi::TCPLOG_IOC_SET_CONFIG, &mut c).map(|_| ())
    }

    pub fn mark(&self, value: u64, count: u32) -> Result<(), String> {
        let mut m = abi::Mark {
            value,
            count,
            _pad: 0,
        };
        self.ioctl(abi::TCPLOG_IOC_MARK, &mut m)
            .map(|_| ())
            .map_err(|e| format!("MARK: {}", errno_name(e)))
    }

    pub fn flush(&self) -> Result<u64, String> {
        let mut n = 0u64;
        self.ioctl(abi::TCPLOG_IOC_FLUSH, &mut n)
            .map_err(|e| format!("FLUSH: {}", errno_name(e)))?;
        Ok(n)
    }

    pub fn seek_end(&self) -> Result<(), String> {
        self.ioctl_none(abi::TCPLOG_IOC_SEEK_END)
            .map(|_| ())
            .map_err(|e| format!("SEEK_END: {}", errno_name(e)))
    }

    pub fn fionread(&self) -> Result<i32, String> {
        let mut n: i32 = -1;
        self.ioctl(abi::FIONREAD, &mut n)
            .map_err(|e| format!("FIONREAD: {}", errno_name(e)))?;
        Ok(n)
    }

    /// One read(2) into a buffer of `len` bytes; the errno on failure.
    pub fn read_raw(&self, len: usize) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has `len` writable bytes.
        let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), len) };
        if n < 0 {
            return Err(errno());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// One read, parsed.
    pub fn read(&self, len: usize) -> Result<Vec<Rec>, String> {
        let buf = self
            .read_raw(len)
            .map_err(|e| format!("read: {}", errno_name(e)))?;
        parse(&buf)
    }

    /// Reads until EAGAIN (the descriptor must be non-blocking); all records in order.
    pub fn drain(&self) -> Result<Vec<Rec>, String> {
        let mut all = Vec::new();
        loop {
            match self.read_raw(1 << 20) {
                Ok(buf) => all.extend(parse(&buf)?),
                Err(libc::EAGAIN) => return Ok(all),
                Err(e) => return Err(format!("read: {}", errno_name(e))),
            }
        }
    }
}

/// Unloads the module if loaded, then loads it with `params`.
pub fn reload(params: &[&str]) -> Result<(), String> {
    if sys::module_loaded() {
        sys::rmmod()?;
    }
    sys::insmod(params)
}

/// Checks that records cover sequence numbers `from..` without holes: LOST records stand for the
/// records they report. Returns (delivered, lost, next expected seq).
pub fn account(recs: &[Rec], from: u64) -> Result<(u64, u64, u64), String> {
    let (mut delivered, mut lost, mut next) = (0u64, 0u64, from);
    for r in recs {
        if let Some(l) = r.lost() {
            if l.first_seq != next || r.hdr.seq != next {
                return Err(format!(
                    "LOST for {}..={} (header seq {}) where seq {next} was expected",
                    l.first_seq, l.last_seq, r.hdr.seq
                ));
            }
            if l.count != l.last_seq - l.first_seq + 1 || l.count == 0 {
                return Err(format!(
                    "LOST count {} for {}..={}",
                    l.count, l.first_seq, l.last_seq
                ));
            }
            lost += l.count;
            next = l.last_seq + 1;
        } else {
            if r.hdr.seq != next {
                return Err(format!(
                    "record seq {} where {next} was expected",
                    r.hdr.seq
                ));
            }
            delivered += 1;
            next += 1;
        }
    }
    Ok((delivered, lost, next))
}
