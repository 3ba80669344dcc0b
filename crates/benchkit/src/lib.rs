//! Load tools for `scripts/bench-gateway.sh` (easgate vs nginx on one backend, all on loopback).
//!
//! - `bench-backend`: the shared HTTP/1.1 backend (4 KiB WBXML answers, parks `Cmd=Ping`).
//! - `bench-parker`: holds thousands of TLS connections with a Ping in flight (or idle).
//! - `bench-payload`: writes the request bodies the script hands to wrk.
//!
//! The WBXML bodies are built here by hand so they are byte-exact and need no codec: tag tokens
//! are those of MS-ASWBXML (AirSync page 0, Email 2, Ping 13, AirSyncBase 17, Notes 23).
#![forbid(unsafe_code)]

pub mod wbxml;

use std::net::SocketAddr;

/// Only loopback targets: these tools generate load and must never point elsewhere.
pub fn require_loopback(addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "{addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
        ))
    }
}

/// `clap` value parser for a loopback `ip:port`.
pub fn parse_loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e| format!("{s}: {e}"))?;
    require_loopback(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(parse_loopback("127.0.0.1:80").is_ok());
        assert!(parse_loopback("[::1]:80").is_ok());
        assert!(parse_loopback("10.0.0.1:80").is_err());
        assert!(parse_loopback("0.0.0.0:80").is_err());
    }
}
