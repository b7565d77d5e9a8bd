//! `tcplog export ipfix`: connection summaries and interim records from the device to an IPFIX
//! collector, until SIGINT or SIGTERM; then what was exported and what was lost.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::IpfixArgs;
use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::ipfix::flow::Flow;
use crate::ipfix::transport::{Exporter, Options, Proto, Stats};
use crate::record::{Body, Decoder, Item};

/// Reads per call: large enough for many records at once.
const READ_SIZE: usize = 256 * 1024;
/// The longest sleep between looks at the stop flag.
const TICK: Duration = Duration::from_millis(250);
/// How long the exporter tries to deliver what it holds once told to stop.
const DRAIN: Duration = Duration::from_secs(5);

/// What the exporter learnt from the device besides flows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Taken {
    /// Records the module overwrote before they were read (its LOST records).
    overwritten: u64,
}

fn options(a: &IpfixArgs) -> Options {
    let proto = if a.tcp { Proto::Tcp } else { Proto::Udp };
    Options {
        domain: a.domain,
        pen: a.enterprise,
        refresh: a.refresh,
        refresh_messages: a.refresh_messages,
        buffer: a.buffer as usize,
        ..Options::new(proto)
    }
}

/// Hands the flows of whole records read from the device to the exporter.
fn take(buf: &[u8], x: &mut Exporter, taken: &mut Taken) {
    let mut dec = Decoder::new(buf);
    while let Some(item) = dec.next_item() {
        match item {
            Item::Record(r) => {
                if let Body::Lost(l) = &r.body {
                    taken.overwritten += l.count;
                } else if let Some(f) = Flow::from_record(&r) {
                    x.push(f);
                }
            }
            Item::Damaged { offset, len } => {
                eprintln!("tcplog: skipped {len} damaged bytes at offset {offset}");
            }
        }
    }
}

/// The closing line: what was given to the exporter, and what became of it.
fn totals(proto: Proto, st: &Stats, taken: &Taken) -> String {
    let mut s = format!(
        "{} records exported over {} in {} messages, {} lost",
        st.exported,
        proto.name(),
        st.messages,
        st.lost
    );
    if proto == Proto::Tcp {
        s += &format!(", {} sent again; {} connections", st.resent, st.connections);
    }
    if taken.overwritten > 0 {
        s += &format!(
            "; {} records overwritten in the module before they were read",
            taken.overwritten
        );
    }
    s
}

fn print_notes(x: &mut Exporter) {
    for n in x.take_notes() {
        eprintln!("tcplog: {n}");
    }
}

pub fn ipfix(path: &Path, a: &IpfixArgs) -> Result<()> {
    let opts = options(a);
    let proto = opts.proto;
    let mut dev = Device::open_checked(path, Access::ReadOnly)?;
    if a.new {
        dev.seek_end()?;
    }
    let mut x = Exporter::new(&a.collector, opts)
        .map_err(|e| Error::bad_input(format!("collector {}: {e}", a.collector)))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("installing a signal handler", e))?;
    }
    eprintln!(
        "tcplog: exporting IPFIX over {} to {}",
        proto.name(),
        a.collector
    );
    let mut taken = Taken::default();
    let mut buf = vec![0u8; READ_SIZE];
    while !stop.load(Ordering::Relaxed) {
        let timeout = x.wakeup(Instant::now()).map_or(TICK, |w| w.min(TICK));
        let mut fds = vec![libc::pollfd {
            fd: dev.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some((fd, events)) = x.poll_fd() {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
        // SAFETY: `fds` holds valid pollfds for the duration of the call. An error (EINTR
        // from a signal) only ends the wait early.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
        loop {
            let n = dev.read_records(&mut buf)?;
            if n == 0 {
                break;
            }
            take(&buf[..n], &mut x, &mut taken);
        }
        x.pump(Instant::now());
        print_notes(&mut x);
    }
    x.finish(Instant::now() + DRAIN);
    print_notes(&mut x);
    eprintln!("tcplog: {}", totals(proto, &x.stats(), &taken));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, ExportFormat};

    fn args(line: &[&str]) -> IpfixArgs {
        let cli = Cli::try_parse_from(line).unwrap();
        let Command::Export {
            format: ExportFormat::Ipfix(a),
        } = cli.command
        else {
            panic!()
        };
        a
    }

    #[test]
    fn the_command_line_chooses_transport_and_refresh() {
        let o = options(&args(&["tcplog", "export", "ipfix", "10.0.0.1:4739"]));
        assert_eq!(o.proto, Proto::Udp);
        assert_eq!(
            (o.refresh, o.refresh_messages, o.buffer, o.pen, o.domain),
            (Duration::from_secs(600), 1000, 100_000, 32473, 0)
        );
        let o = options(&args(&[
            "tcplog",
            "export",
            "ipfix",
            "[::1]:9995",
            "--tcp",
            "--buffer",
            "10",
            "--domain",
            "7",
            "--refresh",
            "30s",
        ]));
        assert_eq!(o.proto, Proto::Tcp);
        assert_eq!(
            (o.refresh, o.buffer, o.domain),
            (Duration::from_secs(30), 10, 7)
        );
    }

    #[test]
    fn bad_collectors_and_options_are_refused_with_the_reason() {
        let err = |line: &[&str]| Cli::try_parse_from(line).unwrap_err().to_string();
        let e = err(&["tcplog", "export", "ipfix", "collector"]);
        assert!(e.contains("'collector': no port"), "{e}");
        let e = err(&["tcplog", "export", "ipfix", "h:99999"]);
        assert!(e.contains("'99999' is not a port (1 to 65535)"), "{e}");
        let e = err(&["tcplog", "export", "ipfix", "h:1", "--udp", "--tcp"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&["tcplog", "export", "ipfix", "h:1", "--refresh", "10ms"]);
        assert!(e.contains("at least 1s"), "{e}");
    }

    #[test]
    fn totals_say_what_was_lost_and_why() {
        let st = Stats {
            records: 12,
            exported: 9,
            lost: 3,
            resent: 4,
            messages: 5,
            connections: 2,
        };
        let none = Taken::default();
        assert_eq!(
            totals(Proto::Udp, &st, &none),
            "9 records exported over udp in 5 messages, 3 lost"
        );
        let some = Taken { overwritten: 7 };
        assert_eq!(
            totals(Proto::Tcp, &st, &some),
            "9 records exported over tcp in 5 messages, 3 lost, 4 sent again; 2 connections; \
             7 records overwritten in the module before they were read"
        );
    }
}
