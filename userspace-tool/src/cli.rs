//! The command line, defined once for parsing, help, completions and the man page.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::control::{parse_interim, parse_mark_count, parse_snap_len};
use crate::criteria::CriteriaArgs;
use crate::logfile::parse_size;
use crate::output::Format;

/// How `dump`, `follow` and `read` show records, and which.
#[derive(Debug, Default, clap::Args)]
pub struct OutputArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// No header line (text and CSV).
    #[arg(long)]
    pub no_header: bool,
    /// Text: separate address and port columns, wide enough for any IPv6 address (the default
    /// sizes ADDR:PORT columns to the ends shown).
    #[arg(long)]
    pub wide: bool,
    /// Only records of these types (repeatable): event, summary, interim, packet, limit, config,
    /// mark, lost. LOST records are always shown.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    #[command(flatten)]
    pub criteria: CriteriaArgs,
    /// Also write the packet records to FILE as pcap (readable by tcpdump and tshark).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// Writing the raw record stream to a log file.
#[derive(Debug, Default, clap::Args)]
pub struct WriteArgs {
    /// Write every record read, raw, to FILE (a log file `tcplog read` replays).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Start a new file when FILE would grow past SIZE (like 10M); older ones become FILE.1, ...
    /// An existing FILE that holds records becomes FILE.1 first: a restart keeps the earlier log.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "write")]
    pub rotate: Option<u64>,
    /// How many rotated files to keep.
    #[arg(long, default_value_t = 5, requires = "rotate")]
    pub keep: u32,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// What `tcplog rules` does.
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// Replace the rules with these, in order (each one quoted, or one per line of --file).
    Set {
        #[arg(value_name = "RULE")]
        rules: Vec<String>,
        /// Read the rules from a file, one per line (`#` starts a comment).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Remove every rule.
    Clear,
}

/// What `tcplog filter` does.
#[derive(Debug, Subcommand)]
// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum FilterAction {
    /// Replace the criteria: a record passes if, for every kind given, it matches one of them.
    Set(CriteriaArgs),
    /// Remove every criterion: log everything.
    Clear,
}

#[derive(Debug, Parser)]
#[command(
    name = "tcplog",
    version,
    about = "Control the tcplog kernel module and show its records"
)]
pub struct Cli {
    /// The device node of the module.
    #[arg(long, global = true, default_value = tcplog_ctl::DEVICE_PATH, value_name = "PATH")]
    pub device: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the module's state: ring usage, counters, readers, ABI version.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enable logging.
    Enable,
    /// Disable logging (what is buffered stays readable).
    Disable,
    /// Discard every buffered record; prints the bytes discarded.
    Flush,
    /// Print the records buffered now, then exit.
    Dump {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print (and write) records as they arrive, until interrupted; then the totals.
    Follow {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        write: WriteArgs,
        /// Skip what is buffered: only records produced from now on.
        #[arg(long)]
        new: bool,
        /// Print nothing (with -w: only write the log).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Replay saved log files (from -w) with the same formats and selection.
    Read {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write netrecord-style transcripts of the TCP connections in a log file: ROOT1, ROOT2, ...
    /// (needs packet records with payload: a rule like 'log body proto tcp').
    Transcript {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(value_name = "ROOT", default_value = "transcript.")]
        root: OsString,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
    /// Write MARK records into the log (to annotate it).
    Mark {
        /// The value the records carry.
        #[arg(long, default_value_t = 0)]
        value: u64,
        /// How many records to write.
        #[arg(long, default_value_t = 1, value_parser = parse_mark_count)]
        count: u32,
    },
    /// Show which socket operations are logged, or choose them (inetsock's monitor files).
    ///
    /// OPS replace the current set: tcp:create, tcp:bind, tcp:listen, tcp:accept, tcp:connect,
    /// tcp:disconnect, tcp:close, udp:create, udp:bind, udp:connect, udp:close; a bare name
    /// (connect) for both protocols; tcp or udp for all of one; all; none.
    Events {
        #[arg(value_name = "OPS")]
        ops: Vec<String>,
        /// Write a summary record when a TCP connection closes.
        #[arg(long, value_enum)]
        summaries: Option<OnOff>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the in-kernel filter, or set or clear it.
    Filter {
        #[command(subcommand)]
        action: Option<FilterAction>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the packet rules with what each matched, or set or clear them.
    ///
    /// A rule: ACTION [in|out|fwd] [proto tcp|udp] [from ADDR[/LEN]] [to ADDR[/LEN]]
    /// [sport P[-P]] [dport P[-P]] [iface NAME] [flags SET[/MASK]] [limit N], where ACTION is
    /// count, log (headers) or log body (headers and payload up to the snap length).
    Rules {
        #[command(subcommand)]
        action: Option<RulesAction>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the open TCP connections being tracked now, with owner, age and live counters.
    Conns {
        /// Print JSON Lines: one object per connection.
        #[arg(long)]
        json: bool,
        /// Separate address and port columns, wide enough for any IPv6 address.
        #[arg(long)]
        wide: bool,
        #[command(flatten)]
        criteria: CriteriaArgs,
    },
    /// Show the configuration, or change it.
    Config {
        /// Bytes of packet payload kept in packet records.
        #[arg(long, value_parser = parse_snap_len, value_name = "BYTES")]
        snap_len: Option<u32>,
        /// Write an INTERIM record for each open TCP connection every DURATION (60s, 5m, 1h;
        /// whole seconds, at most a day); 0 or off for none.
        #[arg(long, value_parser = parse_interim, value_name = "DURATION")]
        interim: Option<u32>,
        /// Apply the packet rules to forwarded packets too.
        #[arg(long, value_enum)]
        forward: Option<OnOff>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export connection summaries and interim records to a flow collector, until interrupted.
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
}

/// What `tcplog export` sends.
#[derive(Debug, Subcommand)]
pub enum ExportFormat {
    /// IPFIX (RFC 7011): each summary and interim record as a biflow (RFC 5103), with
    /// tcplog's own elements under its enterprise number; counts of what was exported and lost
    /// are printed at the end.
    Ipfix(IpfixArgs),
}

/// `tcplog export ipfix`.
#[derive(Debug, clap::Args)]
pub struct IpfixArgs {
    /// The collector: HOST:PORT, or [ADDR]:PORT for an IPv6 address.
    #[arg(value_name = "HOST:PORT", value_parser = crate::ipfix::transport::parse_target)]
    pub collector: crate::ipfix::transport::Target,
    /// Send over UDP (the default): one datagram per message, templates sent again
    /// periodically; what cannot be sent is counted as lost.
    #[arg(long, conflicts_with = "tcp")]
    pub udp: bool,
    /// Send over TCP: templates once per connection; records wait (at most --buffer) while the
    /// collector is away, and the connection is made again.
    #[arg(long)]
    pub tcp: bool,
    /// UDP: send the templates again this often.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_refresh)]
    pub refresh: std::time::Duration,
    /// UDP: and after this many messages (0: by time only).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub refresh_messages: u64,
    /// Records held at most while they cannot be sent (TCP); beyond, the oldest are dropped.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub buffer: u64,
    /// The observation domain id of the messages.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub domain: u32,
    /// The Private Enterprise Number of tcplog's own elements (the default, 32473, is IANA's
    /// number for documentation: use one registered to you for records you keep).
    #[arg(long, value_name = "PEN", default_value_t = crate::ipfix::ie::PEN_DOCUMENTATION)]
    pub enterprise: u32,
    /// Skip what is buffered in the module: only records produced from now on.
    #[arg(long)]
    pub new: bool,
}

/// A template refresh interval: a duration (30s, 10m) of at least a second.
fn parse_refresh(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("'{s}': {e}"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("'{s}': at least 1s"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_parses_with_defaults() {
        let cli = Cli::try_parse_from(["tcplog", "status", "--json"]).unwrap();
        assert_eq!(cli.device, PathBuf::from("/dev/tcplog"));
        assert!(matches!(cli.command, Command::Status { json: true }));
    }

    #[test]
    fn device_can_be_overridden() {
        let cli = Cli::try_parse_from(["tcplog", "--device", "/tmp/x", "status"]).unwrap();
        assert_eq!(cli.device, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn follow_json_with_a_log_file() {
        let cli = Cli::try_parse_from([
            "tcplog", "follow", "--json", "--new", "-w", "x.tlog", "--rotate", "1M", "--port", "80",
        ])
        .unwrap();
        let Command::Follow {
            output,
            write,
            new,
            quiet,
        } = cli.command
        else {
            panic!()
        };
        assert!(new && output.json && !quiet);
        assert_eq!(write.write, Some(PathBuf::from("x.tlog")));
        assert_eq!((write.rotate, write.keep), (Some(1 << 20), 5));
        assert_eq!(output.criteria.ports, ["80"]);
        assert!(
            Cli::try_parse_from(["tcplog", "follow", "--rotate", "1M"]).is_err(),
            "rotate needs -w"
        );
    }

    #[test]
    fn completions_and_manual_come_from_the_same_definition() {
        let mut cmd = Cli::command();
        let mut bash = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "tcplog", &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        for word in ["follow", "transcript", "--pcap", "--rotate"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH tcplog"),
            "{}",
            &man[..80]
        );
        assert!(man.contains("Control the tcplog kernel module"));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let e = Cli::try_parse_from(["tcplog", "config", "--snap-len", "5000"]).unwrap_err();
        assert!(e.to_string().contains("at most 4096"), "{e}");
        let e = Cli::try_parse_from(["tcplog", "mark", "--count", "0"]).unwrap_err();
        assert!(e.to_string().contains("1 to 65536"), "{e}");
        let e = Cli::try_parse_from(["tcplog", "config", "--interim", "2d"]).unwrap_err();
        assert!(e.to_string().contains("at most 86400 s"), "{e}");
        let e = Cli::try_parse_from(["tcplog", "config", "--interim", "1500ms"]).unwrap_err();
        assert!(e.to_string().contains("whole seconds"), "{e}");
    }

    #[test]
    fn interim_durations() {
        for (arg, want) in [
            ("60s", 60),
            ("2", 2),
            ("5m", 300),
            ("1h", 3600),
            ("0", 0),
            ("off", 0),
        ] {
            let cli = Cli::try_parse_from(["tcplog", "config", "--interim", arg]).unwrap();
            let Command::Config { interim, .. } = cli.command else {
                panic!()
            };
            assert_eq!(interim, Some(want), "{arg}");
        }
    }
}
