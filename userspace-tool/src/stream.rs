//! `tcplog dump` and `tcplog follow`: reading records from the device and printing them.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::output::{to_json, to_text, Format};
use crate::record::{Body, Decoder, Item};

/// Reads per call: large enough for many records at once.
const READ_SIZE: usize = 256 * 1024;

/// Prints records as they are decoded and keeps the totals `follow` reports.
pub struct Printer<'a> {
    format: Format,
    out: &'a mut dyn Write,
    pub records: u64,
    pub lost: u64,
}

impl<'a> Printer<'a> {
    pub fn new(format: Format, out: &'a mut dyn Write) -> Self {
        Printer {
            format,
            out,
            records: 0,
            lost: 0,
        }
    }

    /// Prints every record in `buf`; returns the highest sequence number seen.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<u64>> {
        let mut dec = Decoder::new(buf);
        let mut last = None;
        while let Some(item) = dec.next_item() {
            match item {
                Item::Record(r) => {
                    self.records += 1;
                    if let Body::Lost(l) = &r.body {
                        self.lost += l.count;
                    }
                    last = Some(r.header.seq);
                    let line = match self.format {
                        Format::Text => to_text(&r),
                        Format::Json => to_json(&r).to_string(),
                    };
                    writeln!(self.out, "{line}").map_err(|e| Error::io("writing records", e))?;
                }
                Item::Damaged { offset, len } => {
                    eprintln!("tcplog: skipped {len} damaged bytes at offset {offset}");
                }
            }
        }
        if dec.offset() < buf.len() {
            eprintln!(
                "tcplog: {} bytes of a truncated record at the end of a read",
                buf.len() - dec.offset()
            );
        }
        self.out
            .flush()
            .map_err(|e| Error::io("writing records", e))?;
        Ok(last)
    }
}

/// Prints what is buffered now, then exits.
pub fn dump(path: &str, format: Format, out: &mut dyn Write) -> Result<()> {
    let mut dev = Device::open_checked(path, Access::ReadOnly)?;
    // Stop at what was produced when we started, however fast records keep coming.
    let end = dev.status()?.records_produced;
    let mut printer = Printer::new(format, out);
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = dev.read_records(&mut buf)?;
        if n == 0 {
            break;
        }
        match printer.feed(&buf[..n])? {
            Some(seq) if seq + 1 >= end => break,
            _ => {}
        }
    }
    Ok(())
}

/// Prints records as they arrive until interrupted (SIGINT or SIGTERM), then the totals.
pub fn follow(path: &str, format: Format, new_only: bool, out: &mut dyn Write) -> Result<()> {
    let mut dev = Device::open_checked(path, Access::ReadOnly)?;
    if new_only {
        dev.seek_end()?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("installing a signal handler", e))?;
    }
    let mut printer = Printer::new(format, out);
    let mut buf = vec![0u8; READ_SIZE];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: dev.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, 250) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", e));
        }
        if rc == 0 {
            continue;
        }
        loop {
            let n = dev.read_records(&mut buf)?;
            if n == 0 {
                break;
            }
            printer.feed(&buf[..n])?;
        }
    }
    eprintln!(
        "tcplog: {} records, lost {} records in total",
        printer.records, printer.lost
    );
    Ok(())
}
