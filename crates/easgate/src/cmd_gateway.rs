//! `easgate gateway` and `easgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Config file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct CheckConfigArgs {
    /// Config file (TOML).
    pub file: PathBuf,
}

pub fn run_gateway(_args: GatewayArgs) -> ExitCode {
    eprintln!("easgate gateway: not built yet");
    ExitCode::FAILURE
}

pub fn check_config(_args: CheckConfigArgs) -> ExitCode {
    eprintln!("easgate check-config: not built yet");
    ExitCode::FAILURE
}
