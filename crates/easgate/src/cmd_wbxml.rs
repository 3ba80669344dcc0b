//! `easgate wbxml decode|encode [FILE]`: the libwbxml-compatible XML bridge for humans and
//! scripts (stdin when no file; output to stdout; errors to stderr with exit code 1).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum WbxmlCommand {
    /// WBXML -> XML (the shape of `wbxml2xml -l ACTIVESYNC -m 1`).
    Decode { file: Option<PathBuf> },
    /// XML -> WBXML (binary on stdout, like `xml2wbxml -a -n`).
    Encode { file: Option<PathBuf> },
}

pub fn run(cmd: WbxmlCommand) -> ExitCode {
    let (verb, file) = match &cmd {
        WbxmlCommand::Decode { file } => ("decode", file),
        WbxmlCommand::Encode { file } => ("encode", file),
    };
    let source = file
        .as_ref()
        .map_or_else(|| "stdin".to_owned(), |f| f.display().to_string());
    match convert(&cmd) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
                eprintln!("easgate wbxml {verb}: writing stdout: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("easgate wbxml {verb}: {source}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(file: &Option<PathBuf>) -> Result<Vec<u8>, String> {
    // Bound what is read: a document larger than the codec accepts is refused anyway.
    let max = wbxml::Limits::default()
        .max_document_bytes
        .saturating_mul(2) as u64;
    let mut buf = Vec::new();
    let read = match file {
        Some(path) => std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut buf)),
        None => std::io::stdin().lock().take(max + 1).read_to_end(&mut buf),
    };
    read.map_err(|e| e.to_string())?;
    Ok(buf)
}

fn convert(cmd: &WbxmlCommand) -> Result<Vec<u8>, String> {
    match cmd {
        WbxmlCommand::Decode { file } => {
            let input = read_input(file)?;
            wbxml::xml::to_xml(&input)
                .map(String::into_bytes)
                .map_err(|e| e.to_string())
        }
        WbxmlCommand::Encode { file } => {
            let input = read_input(file)?;
            let text =
                std::str::from_utf8(&input).map_err(|e| format!("input is not UTF-8: {e}"))?;
            wbxml::xml::from_xml(text).map_err(|e| e.to_string())
        }
    }
}
