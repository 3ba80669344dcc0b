//! `easgate wbxml decode|encode [FILE]` (stdin when no file; output to stdout).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum WbxmlCommand {
    /// WBXML -> XML.
    Decode { file: Option<PathBuf> },
    /// XML -> WBXML (binary on stdout).
    Encode { file: Option<PathBuf> },
}

pub fn run(_cmd: WbxmlCommand) -> ExitCode {
    eprintln!("easgate wbxml: not built yet");
    ExitCode::FAILURE
}
