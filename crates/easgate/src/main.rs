//! The `easgate` binary: one executable, several roles.
//!
//! - `easgate gateway --config FILE`: the data plane (device listener + management API).
//! - `easgate check-config FILE`: validate a config, print every error, exit non-zero on any.
//! - `easgate wbxml decode|encode [FILE]`: the libwbxml-compatible XML bridge.
#![forbid(unsafe_code)]

/// mimalloc: per-thread free lists make the gateway's many small, short-lived request
/// allocations cheaper than glibc malloc (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cmd_gateway;
mod cmd_wbxml;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "easgate",
    version,
    about = "Exchange ActiveSync security gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (device listener and management API).
    Gateway(cmd_gateway::GatewayArgs),
    /// Validate a config file; print every error and exit non-zero if there is any.
    CheckConfig(cmd_gateway::CheckConfigArgs),
    /// WBXML <-> XML in the shape of libwbxml2's `wbxml2xml -l ACTIVESYNC`.
    #[command(subcommand)]
    Wbxml(cmd_wbxml::WbxmlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway(args) => cmd_gateway::run_gateway(args),
        Command::CheckConfig(args) => cmd_gateway::check_config(args),
        Command::Wbxml(cmd) => cmd_wbxml::run(cmd),
    }
}
