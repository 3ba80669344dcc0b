//! Writes the benchmark's ~1 MB Sync response (100 mails) to the file given, or stdout,
//! so `scripts/bench-wbxml.sh` can time other tools on the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fixture, not shipped

#[path = "../benches/support/sync_response.rs"]
mod sync_response;

use std::io::Write;

fn main() -> std::process::ExitCode {
    let doc = sync_response::sync_response(100);
    let written = match std::env::args_os().nth(1) {
        Some(path) => std::fs::write(path, &doc),
        None => std::io::stdout().lock().write_all(&doc),
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync_response: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
