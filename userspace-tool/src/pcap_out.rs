//! Packet records as a pcap file that tcpdump, tshark and Wireshark read.
//!
//! Link type RAW (IPv4 and IPv6 packets with no link header), nanosecond timestamps. Each packet
//! is what the record kept: the IP header, the transport header and the payload up to the snap
//! length; its original length is the packet's own, so readers see how much was cut. A record
//! that stands for `count` identical packets becomes `count` packets, stamped from the first
//! packet's time to the last's. Records without the IP header are skipped (they cannot make a
//! packet) and counted.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use tcplog_ctl::{self as abi, PacketBody};

use crate::error::{Error, Result};

pub struct PcapOut {
    writer: PcapWriter<BufWriter<File>>,
    path: PathBuf,
    pub packets: u64,
    pub skipped: u64,
}

fn pcap_err(path: &Path, e: pcap_file::PcapError) -> Error {
    let source = match e {
        pcap_file::PcapError::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    };
    Error::file("writing", path, source)
}

impl PcapOut {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::file("cannot create", path, e))?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 65535,
            datalink: DataLink::RAW,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        let writer =
            PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| pcap_err(path, e))?;
        Ok(PcapOut {
            writer,
            path: path.to_owned(),
            packets: 0,
            skipped: 0,
        })
    }

    /// Writes the packet(s) of one packet record; `first_ns` is the record's header time.
    pub fn write(&mut self, p: &PacketBody, data: &[u8], first_ns: u64) -> Result<()> {
        if p.flags & abi::PKF_NO_HEADER != 0 || p.ip_hlen == 0 {
            self.skipped += 1;
            return Ok(());
        }
        let n = u64::from(p.count.max(1));
        let span = p.last_ns.saturating_sub(first_ns);
        for i in 0..n {
            let t = if n == 1 {
                first_ns
            } else {
                first_ns + span * i / (n - 1)
            };
            let pkt = PcapPacket::new(
                Duration::from_nanos(t),
                p.orig_len.max(data.len() as u32),
                data,
            );
            self.writer
                .write_packet(&pkt)
                .map_err(|e| pcap_err(&self.path, e))?;
            self.packets += 1;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let mut w = self.writer.into_writer();
        std::io::Write::flush(&mut w).map_err(|e| Error::file("writing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    use crate::record::tests::udp_packet;
    use crate::record::{Body, Decoder, Item};

    #[test]
    fn packets_read_back_with_their_lengths_and_times() {
        let dir = std::env::temp_dir().join(format!("tcplog-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file name is any bytes: this one is not even UTF-8.
        let path = dir.join(std::ffi::OsStr::from_bytes(b"t\xff\x1b.pcap"));
        let mut out = PcapOut::create(&path).unwrap();
        // A datagram of 1000 bytes kept to 128, seen 3 times; then one of 5 bytes.
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut recs = udp_packet(1, &payload, 128, 3);
        recs.extend(udp_packet(2, b"hello", 128, 1));
        let mut dec = Decoder::new(&recs);
        while let Some(Item::Record(r)) = dec.next_item() {
            let Body::Packet(p, d) = &r.body else {
                panic!()
            };
            out.write(p, d, r.header.time_ns).unwrap();
        }
        assert_eq!(out.packets, 4);
        out.finish().unwrap();

        let mut rd = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(rd.header().datalink, DataLink::RAW);
        let mut got = Vec::new();
        while let Some(p) = rd.next_packet() {
            let p = p.unwrap();
            got.push((p.timestamp.as_nanos() as u64, p.orig_len, p.data.to_vec()));
        }
        assert_eq!(got.len(), 4);
        let first = &got[0];
        assert_eq!(first.1, 20 + 8 + 1000, "original length");
        assert_eq!(first.2.len(), 20 + 8 + 128, "captured length");
        assert_eq!(&first.2[28..], &payload[..128]);
        assert_eq!(first.2[0], 0x45, "an IPv4 header");
        // Repeats spread from the first packet's time to the last's.
        assert_eq!(got[0].0, 1_700_000_000_000_000_000);
        assert_eq!(got[2].0, 1_700_000_000_002_000_000);
        assert!(got[0].0 < got[1].0 && got[1].0 < got[2].0);
        assert_eq!(&got[3].2[28..], b"hello");
    }
}
