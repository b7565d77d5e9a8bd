//! Records flowing from the device or a file to the outputs: `dump`, `follow`, `read`.
//!
//! A [`Pipeline`] takes whole records as they are read. It writes them, all of them, raw to a
//! log file (`-w`); decodes them; counts LOST records; and passes the ones the selection keeps to
//! the printer (text, JSON Lines or CSV) and the pcap writer (`--pcap`).

use std::ffi::OsStr;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cgroup::Cgroups;
use crate::cli::{OutputArgs, WriteArgs};
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::escape;
use crate::logfile::{self, LogWriter};
use crate::output::{json, to_csv_row, Context, Format, Layout, CSV_COLUMNS};
use crate::pcap_out::PcapOut;
use crate::record::{Body, Decoder, Item, Record};
use crate::select::Selection;

/// Reads per call: large enough for many records at once.
const READ_SIZE: usize = 256 * 1024;

/// Lines are gathered and written once per batch of records read ([`Pipeline::feed`] flushes):
/// standard output is line-buffered, and a write per record cost more CPU than the module
/// spends producing it.
type Out<'a> = BufWriter<&'a mut dyn Write>;

enum Printer<'a> {
    Text {
        out: Out<'a>,
        /// Whether a header line is wanted, before the first line and whenever the columns
        /// widen.
        header: bool,
        layout: Layout,
        /// Whether the next line needs a header first.
        header_due: bool,
    },
    Json(Out<'a>),
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Quiet,
}

pub struct Pipeline<'a> {
    printer: Printer<'a>,
    select: Selection,
    raw: Option<LogWriter>,
    pcap: Option<PcapOut>,
    /// Cgroup paths, for records read live from the device.
    cgroups: Option<Cgroups>,
    pub records: u64,
    pub lost: u64,
}

fn write_err(e: io::Error) -> Error {
    Error::io("writing records", e)
}

impl<'a> Pipeline<'a> {
    /// `live`: the records come from this machine's device, so cgroup ids can be shown as
    /// paths (a log file's may come from elsewhere: ids only).
    pub fn new(
        o: &OutputArgs,
        w: Option<&WriteArgs>,
        quiet: bool,
        live: bool,
        out: &'a mut dyn Write,
    ) -> Result<Self> {
        let format = if o.json { Format::Json } else { o.format };
        let printer = match (quiet, format) {
            (true, _) => Printer::Quiet,
            (false, Format::Text) => Printer::Text {
                out: BufWriter::with_capacity(READ_SIZE, out),
                header: !o.no_header,
                layout: if o.wide {
                    Layout::wide()
                } else {
                    Layout::compact()
                },
                header_due: !o.no_header,
            },
            (false, Format::Json) => Printer::Json(BufWriter::with_capacity(READ_SIZE, out)),
            (false, Format::Csv) => {
                let mut c = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out);
                if !o.no_header {
                    c.write_record(CSV_COLUMNS)
                        .map_err(|e| write_err(e.into()))?;
                }
                Printer::Csv(Box::new(c))
            }
        };
        let raw = match w.and_then(|w| w.write.as_ref().map(|f| (f, w))) {
            Some((f, w)) => Some(LogWriter::create(Path::new(f), w.rotate, w.keep)?),
            None => None,
        };
        let pcap = o.pcap.as_deref().map(PcapOut::create).transpose()?;
        Ok(Pipeline {
            printer,
            select: Selection::new(&o.types, &o.criteria).map_err(Error::bad_input)?,
            raw,
            pcap,
            // Only printed records show cgroup paths: a quiet follow walks no cgroup tree.
            cgroups: (live && !quiet).then(|| Cgroups::new(crate::cgroup::root())),
            records: 0,
            lost: 0,
        })
    }

    /// Takes whole records as read from the device; returns the highest sequence number seen.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<u64>> {
        if let Some(w) = self.raw.as_mut() {
            w.write(buf)?;
        }
        let mut dec = Decoder::new(buf);
        let mut records = Vec::new();
        while let Some(item) = dec.next_item() {
            match item {
                Item::Record(r) => records.push(r),
                Item::Damaged { offset, len } => {
                    eprintln!("tcplog: skipped {len} damaged bytes at offset {offset}");
                }
            }
        }
        let last = records.last().map(|r| r.header.seq);
        self.records(&records)?;
        self.flush()?;
        Ok(last)
    }

    /// Shows records, those the selection keeps; text columns are sized to all of them first.
    pub fn records(&mut self, recs: &[Record]) -> Result<()> {
        if let Printer::Text {
            layout, header_due, ..
        } = &mut self.printer
        {
            let mut widened = false;
            for r in recs.iter().filter(|r| self.select.passes(r)) {
                widened |= layout.fit(r);
            }
            *header_due |= widened;
        }
        for r in recs {
            self.record(r)?;
        }
        Ok(())
    }

    /// Shows one record, if the selection keeps it.
    fn record(&mut self, r: &Record) -> Result<()> {
        self.records += 1;
        if let Body::Lost(l) = &r.body {
            self.lost += l.count;
        }
        if !self.select.passes(r) {
            return Ok(());
        }
        if let (Some(c), Some(o)) = (
            self.cgroups.as_mut(),
            crate::output::owner(r, &Context::default()),
        ) {
            c.learn(o.cgroup_id);
        }
        let ctx = Context {
            cgroups: self.cgroups.as_ref(),
        };
        match &mut self.printer {
            Printer::Text {
                out,
                header,
                layout,
                header_due,
            } => {
                // Columns may widen for a record the batch did not hold (a follow's next read).
                if layout.fit(r) || std::mem::take(header_due) {
                    if *header {
                        writeln!(out, "{}", layout.header()).map_err(write_err)?;
                    }
                    *header_due = false;
                }
                writeln!(out, "{}", layout.line(r, &ctx)).map_err(write_err)?;
            }
            Printer::Json(out) => json::write_line(out, r, &ctx).map_err(write_err)?,
            Printer::Csv(c) => c
                .write_record(to_csv_row(r, &ctx))
                .map_err(|e| write_err(e.into()))?,
            Printer::Quiet => {}
        }
        if let (Some(p), Body::Packet(b, d)) = (self.pcap.as_mut(), &r.body) {
            p.write(b, d, r.header.time_ns)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        match &mut self.printer {
            Printer::Text { out, .. } | Printer::Json(out) => out.flush().map_err(write_err),
            Printer::Csv(c) => c.flush().map_err(write_err),
            Printer::Quiet => Ok(()),
        }
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        if let Some(w) = self.raw.take() {
            w.finish()?;
        }
        if let Some(p) = self.pcap.take() {
            let skipped = p.skipped;
            p.finish()?;
            if skipped > 0 {
                eprintln!("tcplog: {skipped} packet records had no IP header and are not in the pcap file");
            }
        }
        Ok(())
    }
}

/// Prints what is buffered now, then exits.
pub fn dump(path: &Path, o: &OutputArgs, w: &WriteArgs, out: &mut dyn Write) -> Result<()> {
    let mut dev = Device::open_checked(path, Access::ReadOnly)?;
    // Stop at what was produced when we started, however fast records keep coming.
    let end = dev.status()?.records_produced;
    let mut p = Pipeline::new(o, Some(w), false, true, out)?;
    let mut buf = vec![0u8; READ_SIZE];
    read_until(&mut dev, &mut p, &mut buf, end)?;
    p.finish()
}

/// Reads and feeds records until the one before sequence number `end` (or until none is left).
fn read_until(dev: &mut Device, p: &mut Pipeline<'_>, buf: &mut [u8], end: u64) -> Result<()> {
    loop {
        let n = dev.read_records(buf)?;
        if n == 0 {
            break;
        }
        match p.feed(&buf[..n])? {
            Some(seq) if seq + 1 >= end => break,
            _ => {}
        }
    }
    Ok(())
}

/// Prints (and writes) records as they arrive until interrupted (SIGINT or SIGTERM), then the
/// totals: TCPLogger's loop that displays and writes. A signal only sets a flag: the batch being
/// written is finished, then what was produced until the signal is read and written too, so a
/// stopped follow leaves whole records, up to the moment it was told to stop.
pub fn follow(
    path: &Path,
    o: &OutputArgs,
    w: &WriteArgs,
    new_only: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut dev = Device::open_checked(path, Access::ReadOnly)?;
    if new_only {
        dev.seek_end()?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("installing a signal handler", e))?;
    }
    let mut p = Pipeline::new(o, Some(w), quiet, true, out)?;
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
        // Records may come faster than they are read: the flag is checked between reads too.
        while !stop.load(Ordering::Relaxed) {
            let n = dev.read_records(&mut buf)?;
            if n == 0 {
                break;
            }
            p.feed(&buf[..n])?;
        }
    }
    // What was produced until now still goes into the log, and nothing after: however fast
    // records keep coming, stopping takes as long as reading the ring once.
    let end = dev.status()?.records_produced;
    read_until(&mut dev, &mut p, &mut buf, end)?;
    let (records, lost) = (p.records, p.lost);
    p.finish()?;
    eprintln!("tcplog: {records} records, lost {lost} records in total");
    Ok(())
}

/// Replays saved log files with the same formats and selection.
pub fn read(files: &[PathBuf], o: &OutputArgs, out: &mut dyn Write) -> Result<()> {
    let mut p = Pipeline::new(o, None, false, false, out)?;
    let mut damaged = Vec::new();
    for f in files {
        let (_, records, damage) = logfile::read(f)?;
        p.records(&records)?;
        // What a file held comes before what is said of its damage.
        p.flush()?;
        for line in damage.describe(f) {
            eprintln!("tcplog: {line}");
        }
        if !damage.is_clean() {
            damaged.push(f.clone());
        }
    }
    p.finish()?;
    if !damaged.is_empty() {
        return Err(Error::Damaged { paths: damaged });
    }
    Ok(())
}

/// Writes netrecord transcripts of the TCP connections in a log file: ROOT1, ROOT2, ...
pub fn transcript(file: &Path, root: &OsStr, out: &mut dyn Write) -> Result<()> {
    let (info, records, damage) = logfile::read(file)?;
    for line in damage.describe(file) {
        eprintln!("tcplog: {line}");
    }
    let start = records
        .first()
        .map_or(info.created_ns, |r| r.header.time_ns);
    let all = crate::transcript::build(&records, start);
    if all.is_empty() {
        writeln!(
            out,
            "no TCP payload in {}: log it with a rule like 'log body proto tcp'",
            escape::path(file)
        )
        .map_err(write_err)?;
    }
    for (i, (text, rep)) in all.iter().enumerate() {
        let mut name = root.to_owned();
        name.push((i + 1).to_string());
        let name = PathBuf::from(name);
        std::fs::write(&name, text).map_err(|e| Error::file("writing", &name, e))?;
        let mut line = format!(
            "{}: client {} -> server {}: client sent {} bytes, server sent {}",
            escape::path(&name),
            rep.client,
            rep.server,
            rep.client_bytes,
            rep.server_bytes
        );
        if rep.client_missing + rep.server_missing > 0 {
            line.push_str(&format!(
                "; missing from the log: {} bytes of the client's, {} of the server's (cut at the snap length or not logged)",
                rep.client_missing, rep.server_missing
            ));
        }
        if rep.client_guessed {
            line.push_str("; no SYN was logged: the client is a guess");
        }
        writeln!(out, "{line}").map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// A log file whose name holds ESC and a newline: what `read` and `transcript` say about it
    /// is one line of printable text each.
    #[test]
    fn file_names_are_shown_escaped() {
        let dir = std::env::temp_dir().join(format!("tcplog-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(OsStr::from_bytes(b"x\x1b[2J\n\xff.tlog"));
        let mut w = LogWriter::create(&f, None, 0).unwrap();
        let mut recs = crate::record::tests::mark(1, 1);
        recs.extend(&recs.clone()[..30]);
        w.write(&recs).unwrap();
        drop(w);
        let shown = r"x\x1b[2J\n\xff.tlog";
        let mut out = Vec::new();
        transcript(&f, OsStr::new("t."), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with(&format!(
                "no TCP payload in {}/{shown}:",
                escape::path(&dir)
            )),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1);
        let e = read(&[f], &OutputArgs::default(), &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}/{shown} damaged", escape::path(&dir))),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
