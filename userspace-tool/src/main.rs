//! `tcplog`: control the tcplog kernel module and show its records.

mod cgroup;
mod cli;
mod conns;
mod control;
mod criteria;
mod device;
mod error;
mod escape;
mod events;
mod export;
mod ipfix;
mod logfile;
mod output;
mod pcap_out;
mod record;
mod rules;
mod select;
mod status;
mod stream;
mod transcript;
mod verdict;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::Error;

fn run(cli: &Cli, out: &mut dyn Write) -> error::Result<()> {
    let dev = cli.device.as_path();
    match &cli.command {
        Command::Status { json } => status::run(dev, *json, out),
        Command::Enable => control::set_enabled(dev, true),
        Command::Disable => control::set_enabled(dev, false),
        Command::Flush => control::flush(dev, out),
        Command::Dump { output, write } => stream::dump(dev, output, write, out),
        Command::Follow {
            output,
            write,
            new,
            quiet,
        } => stream::follow(dev, output, write, *new, *quiet, out),
        Command::Read { files, output } => stream::read(files, output, out),
        Command::Transcript { file, root } => stream::transcript(file, root, out),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "tcplog", out);
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(out)
                .map_err(|e| Error::io("writing the manual page", e))
        }
        Command::Mark { value, count } => control::mark(dev, *value, *count),
        Command::Events {
            ops,
            summaries,
            json,
        } => control::events(dev, ops, summaries.map(|s| s == cli::OnOff::On), *json, out),
        Command::Filter { action, json } => control::filter(dev, action.as_ref(), *json, out),
        Command::Rules { action, json } => control::rules(dev, action.as_ref(), *json, out),
        Command::Conns {
            json,
            wide,
            criteria,
        } => conns::run(dev, *json, *wide, criteria, out),
        Command::Config {
            snap_len,
            forward,
            interim,
            json,
        } => {
            let change = control::ConfigChange {
                snap_len: *snap_len,
                forward: forward.map(|f| f == cli::OnOff::On),
                interim_s: *interim,
            };
            control::config(dev, &change, *json, out)
        }
        Command::Export {
            format: cli::ExportFormat::Ipfix(args),
        } => export::ipfix(dev, args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = io::stdout().lock();
    match run(&cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`tcplog dump | head`) ends the output, quietly, like other Unix tools.
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcplog: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
