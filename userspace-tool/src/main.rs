//! `tcplog`: control the tcplog kernel module and show its records.

mod cli;
mod control;
mod criteria;
mod device;
mod error;
mod events;
mod output;
mod record;
mod rules;
mod status;
mod stream;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::Error;

fn run(cli: &Cli, out: &mut dyn Write) -> error::Result<()> {
    let dev = cli.device.as_str();
    match &cli.command {
        Command::Status { json } => status::run(dev, *json, out),
        Command::Enable => control::set_enabled(dev, true),
        Command::Disable => control::set_enabled(dev, false),
        Command::Flush => control::flush(dev, out),
        Command::Dump { format, json } => stream::dump(dev, Command::format(*format, *json), out),
        Command::Follow { format, json, new } => {
            stream::follow(dev, Command::format(*format, *json), *new, out)
        }
        Command::Mark { value, count } => control::mark(dev, *value, *count),
        Command::Events {
            ops,
            summaries,
            json,
        } => control::events(dev, ops, summaries.map(|s| s == cli::OnOff::On), *json, out),
        Command::Filter { action, json } => control::filter(dev, action.as_ref(), *json, out),
        Command::Rules { action, json } => control::rules(dev, action.as_ref(), *json, out),
        Command::Config {
            snap_len,
            forward,
            json,
        } => {
            let change = control::ConfigChange {
                snap_len: *snap_len,
                forward: forward.map(|f| f == cli::OnOff::On),
            };
            control::config(dev, &change, *json, out)
        }
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
