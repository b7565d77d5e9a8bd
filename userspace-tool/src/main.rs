//! `tcplog`: control the tcplog kernel module and show its records.

mod cli;
mod device;
mod error;
mod status;

use std::io;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = io::stdout().lock();
    let res = match cli.command {
        Command::Status { json } => status::run(&cli.device, json, &mut stdout),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcplog: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
