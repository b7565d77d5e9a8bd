//! The command line, defined once for parsing, help, completions and the man page.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tcplog", version, about = "Control the tcplog kernel module and show its records")]
pub struct Cli {
    /// The device node of the module.
    #[arg(long, global = true, default_value = tcplog_ctl::DEVICE_PATH, value_name = "PATH")]
    pub device: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the module's state and ABI version.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
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
        assert_eq!(cli.device, "/dev/tcplog");
        assert!(matches!(cli.command, Command::Status { json: true }));
    }

    #[test]
    fn device_can_be_overridden() {
        let cli = Cli::try_parse_from(["tcplog", "--device", "/tmp/x", "status"]).unwrap();
        assert_eq!(cli.device, "/tmp/x");
    }
}
