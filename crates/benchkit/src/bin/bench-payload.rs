//! Writes the benchmark's WBXML bodies to files, for wrk's Lua script and for curl checks.
//!
//! `bench-payload DIR` → `DIR/sync-request-1k.wbxml` (1024 B), `DIR/sync-response-4k.wbxml`
//! (4096 B, what bench-backend answers), `DIR/ping-request.wbxml` (HeartbeatInterval 900).
#![forbid(unsafe_code)]

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("sync-request-1k.wbxml"),
        benchkit::wbxml::sync_request(1024),
    )?;
    std::fs::write(
        dir.join("sync-response-4k.wbxml"),
        benchkit::wbxml::sync_response(4096),
    )?;
    std::fs::write(
        dir.join("ping-request.wbxml"),
        benchkit::wbxml::PING_REQUEST_HB900,
    )?;
    Ok(())
}
