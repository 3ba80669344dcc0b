//! Routing: which requests are served at all (ActiveSync paths only: the gateway is not an open
//! proxy to OWA/ECP) and which service a request belongs to (Host / `:authority`, port stripped,
//! case-insensitive; no match → `default`).

use std::sync::Arc;

use crate::model::{Runtime, ServiceModel};

/// `/Microsoft-Server-ActiveSync` (any case, optionally followed by `/...`), `/traveler...` and
/// `/servlet/traveler...` (HCL Traveler). Dot segments and encoded dots or backslashes are
/// refused so no path can climb out of the ActiveSync tree on the server.
pub fn is_activesync_path(path: &str) -> bool {
    if path.contains("/.") || path.contains('\\') {
        return false;
    }
    // Encoded dots, backslashes and slashes: looked for only when there is a `%` at all.
    if path.contains('%')
        && (contains_ci(path, "%2e") || contains_ci(path, "%5c") || contains_ci(path, "%2f"))
    {
        return false;
    }
    if let Some(rest) = strip_prefix_ci(path, "/microsoft-server-activesync") {
        return rest.is_empty() || rest.starts_with('/');
    }
    strip_prefix_ci(path, "/traveler").is_some()
        || strip_prefix_ci(path, "/servlet/traveler").is_some()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn contains_ci(s: &str, needle: &str) -> bool {
    s.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The host part of a Host header or authority: port, IPv6 brackets and a trailing dot removed.
pub fn host_name(authority: &str) -> &str {
    let h = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        })
    };
    h.strip_suffix('.').unwrap_or(h)
}

/// The service for this host; `default` (always `services[0]`) when none matches.
pub fn service<'a>(rt: &'a Runtime, authority: Option<&str>) -> Option<&'a Arc<ServiceModel>> {
    let services = &rt.activesync.services;
    if let Some(a) = authority {
        let host = host_name(a);
        if let Some(s) = services
            .iter()
            .skip(1)
            .find(|s| s.name.eq_ignore_ascii_case(host))
        {
            return Some(s);
        }
    }
    services.first()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "/Microsoft-Server-ActiveSync",
            "/microsoft-server-activesync",
            "/MICROSOFT-SERVER-ACTIVESYNC/",
            "/traveler",
            "/traveler/Microsoft-Server-ActiveSync",
            "/servlet/traveler",
        ] {
            assert!(is_activesync_path(ok), "{ok}");
        }
        for bad in [
            "/",
            "/owa",
            "/ecp/",
            "/Microsoft-Server-ActiveSyncX",
            "/Microsoft-Server-ActiveSync/../owa",
            "/Microsoft-Server-ActiveSync/%2e%2e/ecp",
            "/Microsoft-Server-ActiveSync\\..\\owa",
            "/Microsoft-Server-ActiveSync/%2F..%2Fecp",
            "",
            "/Micro",
        ] {
            assert!(!is_activesync_path(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_name("Mail.Example.com:443"), "Mail.Example.com");
        assert_eq!(host_name("mail.example.com."), "mail.example.com");
        assert_eq!(host_name("[::1]:8443"), "::1");
        assert_eq!(host_name("mail"), "mail");
    }
}
