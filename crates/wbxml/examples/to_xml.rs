//! `to_xml FILE [RUNS]`: the XML bridge as a one-shot process, so `scripts/bench-wbxml.sh` can
//! time it exactly like libwbxml2's `wbxml2xml` (start, read, convert, write). The product CLI is
//! `easgate wbxml decode`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fixture, not shipped

use std::io::Write;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: to_xml FILE");
        return std::process::ExitCode::FAILURE;
    };
    let result = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|doc| wbxml::xml::to_xml(&doc).map_err(|e| e.to_string()))
        .and_then(|xml| {
            std::io::stdout()
                .lock()
                .write_all(xml.as_bytes())
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("to_xml: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
