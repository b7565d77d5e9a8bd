//! Log files: the raw record stream, as read from the device, behind a small header.
//!
//! `tcplog follow -w FILE` writes them (optionally rotating by size); `tcplog read FILE` reads
//! them back. The header says what wrote the records, so a file can be read on another machine:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `TCPLOG\0\x01` |
//! | 8 | 4 | byte-order mark `0x01020304`, in the writer's byte order (the records' too) |
//! | 12 | 4 | ABI version of the records |
//! | 16 | 4 | header length (256) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | when the file was started, ns since the epoch |
//! | 32 | 64 | host name, NUL-padded |
//! | 96 | 65 | kernel release (`uname -r`), NUL-padded |
//! | 161 | 95 | reserved, 0 |

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tcplog_ctl as abi;

use crate::error::{Error, FileProblem, Result};
use crate::escape::{self, until_nul};
use crate::record::{Decoder, Item, Record};

pub const FILE_MAGIC: [u8; 8] = *b"TCPLOG\x00\x01";
pub const HEADER_LEN: usize = 256;
const BYTE_ORDER: u32 = 0x0102_0304;

/// What a log file's header says. The host name and kernel release are bytes, as the writing
/// machine gave them (and as a file from anywhere may hold them): shown only through
/// [`escape`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub abi_version: u32,
    pub created_ns: u64,
    pub host: Vec<u8>,
    pub kernel: Vec<u8>,
}

fn uname() -> (Vec<u8>, Vec<u8>) {
    // SAFETY: `uname` fills a zeroed `utsname`, whose fields are NUL-terminated arrays.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return (Vec::new(), Vec::new());
        }
        let s = |f: &[libc::c_char]| {
            until_nul(&f.iter().map(|&c| c as u8).collect::<Vec<u8>>()).to_vec()
        };
        (s(&u.nodename), s(&u.release))
    }
}

impl FileInfo {
    /// This machine, now.
    pub fn here() -> Self {
        let (host, kernel) = uname();
        FileInfo {
            abi_version: abi::ABI_VERSION,
            created_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            host,
            kernel,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&FILE_MAGIC);
        h[8..12].copy_from_slice(&BYTE_ORDER.to_ne_bytes());
        h[12..16].copy_from_slice(&self.abi_version.to_ne_bytes());
        h[16..20].copy_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
        h[24..32].copy_from_slice(&self.created_ns.to_ne_bytes());
        let host = until_nul(&self.host);
        h[32..32 + host.len().min(63)].copy_from_slice(&host[..host.len().min(63)]);
        let k = until_nul(&self.kernel);
        h[96..96 + k.len().min(64)].copy_from_slice(&k[..k.len().min(64)]);
        h
    }

    /// Reads a header; says what is wrong with it otherwise.
    pub fn decode(h: &[u8]) -> std::result::Result<Self, HeaderError> {
        if h.len() < 8 || h[..8] != FILE_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if h.len() < HEADER_LEN {
            return Err(HeaderError::TooShort { len: h.len() });
        }
        let u32_at = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().unwrap());
        if u32_at(8) != BYTE_ORDER {
            return Err(HeaderError::ByteOrder);
        }
        if u32_at(16) as usize != HEADER_LEN {
            return Err(HeaderError::HeaderLength { len: u32_at(16) });
        }
        Ok(FileInfo {
            abi_version: u32_at(12),
            created_ns: u64::from_ne_bytes(h[24..32].try_into().unwrap()),
            host: until_nul(&h[32..96]).to_vec(),
            kernel: until_nul(&h[96..161]).to_vec(),
        })
    }
}

/// What is wrong with a log file's header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a tcplog log file (bad magic)")]
    BadMagic,
    #[error("{len} bytes: too short for a tcplog file header")]
    TooShort { len: usize },
    #[error("written on a machine of the other byte order")]
    ByteOrder,
    #[error("header length {len} is not {HEADER_LEN}")]
    HeaderLength { len: u32 },
}

/// Writes a log file, rotating it when it would grow past `rotate` bytes: FILE is always the
/// newest, older ones are FILE.1, FILE.2, ... up to `keep` of them. With rotation, a FILE that
/// already holds records (a restarted service's earlier log) is rotated away first, not
/// overwritten.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotate: Option<u64>,
    keep: u32,
}

impl LogWriter {
    pub fn create(path: &Path, rotate: Option<u64>, keep: u32) -> Result<Self> {
        if rotate.is_some()
            && fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > HEADER_LEN as u64)
        {
            shift_older(path, keep)?;
        }
        let (file, size) = Self::start(path)?;
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            rotate,
            keep,
        })
    }

    /// Puts what was written on disk, so that a log a stopped service leaves is there after a
    /// crash or power loss too.
    pub fn finish(self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::file("writing", &self.path, e))
    }

    fn start(path: &Path) -> Result<(File, u64)> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::file("cannot create", path, e))?;
        file.write_all(&FileInfo::here().encode())
            .map_err(|e| Error::file("writing", path, e))?;
        Ok((file, HEADER_LEN as u64))
    }

    fn rotate_now(&mut self) -> Result<()> {
        shift_older(&self.path, self.keep)?;
        let (file, size) = Self::start(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    /// Appends whole records (as read from the device), rotating between records when needed.
    pub fn write(&mut self, records: &[u8]) -> Result<()> {
        let Some(limit) = self.rotate else {
            return self.flush_range(records);
        };
        let mut dec = Decoder::new(records);
        let mut start = 0;
        let mut rec_start = 0;
        while dec.next_item().is_some() {
            let rec_end = dec.offset();
            let pending_before = (rec_start - start) as u64;
            let grows_past = self.size + (rec_end - start) as u64 > limit;
            // Rotate before this record, unless the file would then hold no record at all.
            if grows_past && self.size + pending_before > HEADER_LEN as u64 {
                self.flush_range(&records[start..rec_start])?;
                self.rotate_now()?;
                start = rec_start;
            }
            rec_start = rec_end;
        }
        self.flush_range(&records[start..])
    }

    fn flush_range(&mut self, b: &[u8]) -> Result<()> {
        self.file
            .write_all(b)
            .map_err(|e| Error::file("writing", &self.path, e))?;
        self.size += b.len() as u64;
        Ok(())
    }
}

/// Renames FILE to FILE.1, FILE.1 to FILE.2, ..., dropping what would become FILE.(keep+1); with
/// `keep` 0, FILE is left to be overwritten.
fn shift_older(path: &Path, keep: u32) -> Result<()> {
    let name = |i: u32| {
        let mut p = path.to_path_buf().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    let _ = fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        let _ = fs::rename(name(i), name(i + 1));
    }
    if keep > 0 {
        fs::rename(path, name(1)).map_err(|e| Error::file("rotating", path, e))?;
    }
    Ok(())
}

/// Problems found in a file, reported after its good records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// (offset in the file, bytes) of spans that were not records.
    pub skipped: Vec<(u64, u64)>,
    /// Bytes of an incomplete record at the end, and where it starts.
    pub truncated: Option<(u64, u64)>,
}

impl Damage {
    pub fn is_clean(&self) -> bool {
        self.skipped.is_empty() && self.truncated.is_none()
    }

    /// One line per problem, for stderr.
    pub fn describe(&self, path: &Path) -> Vec<String> {
        let path = escape::path(path);
        let mut out: Vec<String> = self
            .skipped
            .iter()
            .map(|(off, n)| format!("{path}: {n} damaged bytes at offset {off} skipped; reading resumed at the next record"))
            .collect();
        if let Some((off, n)) = self.truncated {
            out.push(format!("{path}: the file ends in the middle of a record: {n} bytes at offset {off} (it was cut short)"));
        }
        out
    }
}

/// Reads a whole log file: its header, its records, and what was wrong with it.
pub fn read(path: &Path) -> Result<(FileInfo, Vec<Record>, Damage)> {
    let bad = |problem: FileProblem| Error::BadFile {
        path: path.to_owned(),
        problem,
    };
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad(FileProblem::Missing),
        _ => Error::file("cannot read", path, e),
    })?;
    let info = FileInfo::decode(&bytes).map_err(|e| bad(e.into()))?;
    if info.abi_version != abi::ABI_VERSION {
        return Err(bad(FileProblem::AbiVersion {
            file: info.abi_version,
            tool: abi::ABI_VERSION,
            host: info.host,
            kernel: info.kernel,
        }));
    }
    let body = &bytes[HEADER_LEN..];
    let mut dec = Decoder::new(body);
    let mut records = Vec::new();
    let mut damage = Damage::default();
    while let Some(item) = dec.next_item() {
        match item {
            Item::Record(r) => records.push(r),
            Item::Damaged { offset, len } => damage
                .skipped
                .push(((offset + HEADER_LEN) as u64, len as u64)),
        }
    }
    if dec.offset() < body.len() {
        damage.truncated = Some((
            (dec.offset() + HEADER_LEN) as u64,
            (body.len() - dec.offset()) as u64,
        ));
    }
    Ok((info, records, damage))
}

/// Parses a size: `1048576`, `512K`, `10M`, `1G`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (like 10M)"))?;
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if v < 4096 {
        return Err(format!("'{s}': a file must hold at least 4096 bytes"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::mark;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tcplog-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d.join("log.tlog")
    }

    #[test]
    fn header_round_trips() {
        let i = FileInfo {
            abi_version: 4,
            created_ns: 1_700_000_000_000_000_000,
            host: b"box".to_vec(),
            kernel: b"7.3.4+deb13-amd64".to_vec(),
        };
        let h = i.encode();
        assert_eq!(&h[..8], b"TCPLOG\0\x01");
        assert_eq!(FileInfo::decode(&h).unwrap(), i);
        let mut bad = h;
        bad[0] = b'X';
        assert!(FileInfo::decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
        assert!(FileInfo::decode(&h[..100])
            .unwrap_err()
            .to_string()
            .contains("too short"));
    }

    #[test]
    fn header_strings_keep_their_bytes_and_are_shown_escaped() {
        let p = tmp("hostile-header");
        let mut h = FileInfo {
            abi_version: abi::ABI_VERSION + 1,
            created_ns: 1_700_000_000_000_000_000,
            host: b"\x1b[2Jbox\nfake\xff".to_vec(),
            kernel: "7.3\u{202e}\u{9b}".as_bytes().to_vec(),
        }
        .encode();
        assert_eq!(FileInfo::decode(&h).unwrap().host, b"\x1b[2Jbox\nfake\xff");
        h[12..16].copy_from_slice(&(abi::ABI_VERSION + 1).to_ne_bytes());
        fs::write(&p, h).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains(r"(written on \x1b[2Jbox\nfake\xff, kernel 7.3\u{202e}\u{9b})"),
            "{e}"
        );
        assert!(!e.chars().any(escape::is_unsafe), "{e:?}");
    }

    #[test]
    fn written_records_read_back_and_damage_is_reported() {
        let p = tmp("rw");
        let mut w = LogWriter::create(&p, None, 0).unwrap();
        let mut chunk = Vec::new();
        for i in 0..10 {
            chunk.extend(mark(i, i * 10));
        }
        w.write(&chunk).unwrap();
        drop(w);
        let (info, recs, damage) = read(&p).unwrap();
        assert_eq!(info.abi_version, abi::ABI_VERSION);
        assert_eq!(recs.len(), 10);
        assert!(damage.is_clean());

        // Damage the third record's magic and cut the last record short.
        let mut bytes = fs::read(&p).unwrap();
        let rec = abi::MARK_RECORD_LEN;
        bytes[HEADER_LEN + 2 * rec] ^= 0xff;
        bytes.truncate(bytes.len() - 30);
        fs::write(&p, &bytes).unwrap();
        let (_, recs, damage) = read(&p).unwrap();
        let seqs: Vec<u64> = recs.iter().map(|r| r.header.seq).collect();
        assert_eq!(seqs, [0, 1, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            damage.skipped,
            [((HEADER_LEN + 2 * rec) as u64, rec as u64)]
        );
        assert_eq!(
            damage.truncated,
            Some(((HEADER_LEN + 9 * rec) as u64, (rec - 30) as u64))
        );
        let lines = damage.describe(Path::new("f"));
        let hostile = damage.describe(Path::new("f\u{1b}[2J\n"));
        assert!(
            hostile[0].starts_with(r"f\x1b[2J\n: 80 damaged bytes"),
            "{hostile:?}"
        );
        assert!(
            lines[0].contains("80 damaged bytes at offset 416"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("ends in the middle of a record: 50 bytes"),
            "{lines:?}"
        );
    }

    #[test]
    fn rotation_keeps_whole_records_and_headers() {
        let p = tmp("rot");
        let limit = (HEADER_LEN + 5 * abi::MARK_RECORD_LEN) as u64;
        let mut w = LogWriter::create(&p, Some(limit), 2).unwrap();
        for i in 0..4 {
            let chunk: Vec<u8> = (0..4).flat_map(|j| mark(i * 4 + j, 0)).collect();
            w.write(&chunk).unwrap();
        }
        drop(w);
        let mut all = Vec::new();
        for name in [".2", ".1", ""] {
            let f = format!("{}{name}", p.display());
            let (_, recs, damage) = read(Path::new(&f)).unwrap();
            assert!(damage.is_clean(), "{f}");
            assert!(fs::metadata(&f).unwrap().len() <= limit, "{f} too large");
            all.extend(recs.iter().map(|r| r.header.seq));
        }
        // 16 records in files of 5: the oldest file (seq 0-4) rotated away.
        assert_eq!(all, (5..16).collect::<Vec<u64>>());
    }

    /// A restarted writer (a service started again, after a reload or a reboot) moves the earlier
    /// log to FILE.1 instead of overwriting it; a file holding only a header is simply reused.
    #[test]
    fn a_restarted_rotating_writer_keeps_the_earlier_log() {
        let p = tmp("restart");
        let limit = 1 << 20;
        let mut w = LogWriter::create(&p, Some(limit), 3).unwrap();
        w.write(&mark(0, 0)).unwrap();
        w.finish().unwrap();
        LogWriter::create(&p, Some(limit), 3)
            .unwrap()
            .finish()
            .unwrap();
        let mut w = LogWriter::create(&p, Some(limit), 3).unwrap();
        w.write(&mark(1, 0)).unwrap();
        w.finish().unwrap();
        let seqs = |f: &str| -> Vec<u64> {
            let (_, recs, damage) = read(Path::new(&format!("{}{f}", p.display()))).unwrap();
            assert!(damage.is_clean());
            recs.iter().map(|r| r.header.seq).collect()
        };
        assert_eq!(seqs(".1"), [0]);
        assert_eq!(seqs(""), [1]);
        assert!(!Path::new(&format!("{}.2", p.display())).exists());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("8192").unwrap(), 8192);
        assert!(parse_size("1").unwrap_err().contains("at least 4096"));
        assert!(parse_size("ten").is_err());
    }
}
