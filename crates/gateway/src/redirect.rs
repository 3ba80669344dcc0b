//! 451 redirect processing (`activesync.redirect_processing`).
//!
//! When a server answers 451 with `X-MS-Location` (MS-ASHTTP 3.1.5.2.2: the mailbox lives
//! elsewhere), the gateway checks the target host against the service's servers plus
//! `activesync.redirect_allowed_hosts`, remembers user → target (TTL [`TTL`], at most
//! [`MAX_ENTRIES`] users), replays the same request there and returns that answer; the device
//! never sees the 451. Later requests of that user go straight to the remembered target.
//!
//! - A target outside the allow-list is refused with 502 (logged with the location): the gateway
//!   is the enforcement point, and passing such a 451 on would tell the device to bypass it.
//! - Request bodies that declare a length of at most [`REPLAY_MAX_BYTES`] are read whole and kept
//!   for the replay; larger or chunked bodies stream as they arrive, cannot be replayed, and their
//!   451 passes through unchanged.
//! - A target is reached like the service's servers: TLS per `activesync.server_tls`, port from
//!   the location (else 443 / 80 by its scheme), the location's path with the request's query.
//! - Off: 451 and `X-MS-Location` pass to the device unchanged.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderValue, Uri};
use tokio::time::Instant;

use crate::model::{ServerAddr, ServiceModel};
use crate::route;

/// How long a user's redirect target is remembered after it was last confirmed.
pub const TTL: Duration = Duration::from_secs(3600);
/// Most users remembered; beyond it expired entries go first, then the oldest.
pub const MAX_ENTRIES: usize = 100_000;
/// Largest request body kept for a replay.
pub const REPLAY_MAX_BYTES: usize = 64 * 1024;

/// Where a 451 sends a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: ServerAddr,
    /// The location's path (an ActiveSync path).
    pub path: String,
}

impl Target {
    /// The URI for a replayed request: the target's path with the original query.
    pub fn uri(&self, original: &Uri) -> Uri {
        let pq = match original.query() {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
    }
}

/// Parse an `X-MS-Location` value: `http(s)://host[:port]/ActiveSync-path`. `None` when it is
/// not such a URL (then the 451 is refused like a target outside the allow-list).
pub fn parse_location(value: &HeaderValue) -> Option<Target> {
    let text = value.to_str().ok()?;
    let uri: Uri = text.trim().parse().ok()?;
    let default_port = match uri.scheme_str()? {
        s if s.eq_ignore_ascii_case("https") => 443,
        s if s.eq_ignore_ascii_case("http") => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let path = uri.path();
    let path = if path.is_empty() || path == "/" {
        "/Microsoft-Server-ActiveSync"
    } else {
        path
    };
    if !route::is_activesync_path(path) {
        return None;
    }
    Some(Target {
        addr: ServerAddr {
            host,
            port: authority.port_u16().unwrap_or(default_port),
        },
        path: path.to_owned(),
    })
}

/// One `redirect_allowed_hosts` entry: `host`, `host:port`, `[v6]` or `[v6]:port`, lower-cased.
/// Without a port the default port applies (443 with server TLS, 80 without), as in `servers`.
pub fn parse_allowed(entry: &str, server_tls: bool) -> Option<ServerAddr> {
    let e = entry.trim();
    let default = if server_tls { 443 } else { 80 };
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => default,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (h, port)
    } else {
        match e.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().ok()?),
            Some(_) => return None,
            None => (e, default),
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    ok.then(|| ServerAddr {
        host: host.to_ascii_lowercase(),
        port,
    })
    .filter(|a| a.port != 0)
}

/// Errors in `activesync.redirect_allowed_hosts` (`field`, value, allowed), for config validation.
pub fn validate_allowed(entries: &[String]) -> Vec<(String, String, String)> {
    let mut errors = Vec::new();
    if entries.len() > 1000 {
        errors.push((
            "activesync.redirect_allowed_hosts".to_owned(),
            format!("{} entries", entries.len()),
            "at most 1000 entries".to_owned(),
        ));
    }
    for (i, e) in entries.iter().enumerate().take(1000) {
        if parse_allowed(e, true).is_none() {
            errors.push((
                format!("activesync.redirect_allowed_hosts[{i}]"),
                e.chars().take(80).collect(),
                "host, host:port, [v6] or [v6]:port".to_owned(),
            ));
        }
    }
    errors
}

/// Whether a device may be sent to `target`: one of the service's servers, or an allowed host.
pub fn is_allowed(
    target: &ServerAddr,
    service: &ServiceModel,
    allowed_hosts: &[String],
    server_tls: bool,
) -> bool {
    service.servers.iter().any(|s| s == target)
        || allowed_hosts
            .iter()
            .filter_map(|e| parse_allowed(e, server_tls))
            .any(|a| &a == target)
}

struct Entry {
    target: Target,
    expires: Instant,
}

/// User → redirect target, with a TTL and a bound on entries. Keys are lower-cased users.
#[derive(Default)]
pub struct Redirects {
    map: parking_lot::Mutex<HashMap<String, Entry>>,
}

impl Redirects {
    /// The remembered target of `user`, if not expired.
    pub fn get(&self, user: &str) -> Option<Target> {
        let key = user.to_lowercase();
        let mut map = self.map.lock();
        match map.get(&key) {
            Some(e) if e.expires > Instant::now() => Some(e.target.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remember (or refresh) `user` → `target`.
    pub fn remember(&self, user: &str, target: Target) {
        let now = Instant::now();
        let key = user.to_lowercase();
        let mut map = self.map.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= MAX_ENTRIES {
                // Evict the entry closest to expiry (oldest confirmed); one O(n) pass, rare.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            key,
            Entry {
                target,
                expires: now + TTL,
            },
        );
    }

    /// Forget `user`'s target (it failed or is no longer allowed).
    pub fn forget(&self, user: &str) {
        self.map.lock().remove(&user.to_lowercase());
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn locations() {
        let t = parse_location(&hv(
            "https://Mail2.Corp.Example/Microsoft-Server-ActiveSync",
        ))
        .unwrap();
        assert_eq!(
            t.addr,
            ServerAddr {
                host: "mail2.corp.example".into(),
                port: 443
            }
        );
        let t = parse_location(&hv("http://127.0.0.1:8080/Microsoft-Server-ActiveSync")).unwrap();
        assert_eq!(t.addr.port, 8080);
        let q: Uri = "/Microsoft-Server-ActiveSync?Cmd=Sync".parse().unwrap();
        assert_eq!(t.uri(&q), "/Microsoft-Server-ActiveSync?Cmd=Sync");
        assert!(parse_location(&hv("https://[::1]:9443/Microsoft-Server-ActiveSync")).is_some());
        for bad in [
            "ftp://x/Microsoft-Server-ActiveSync",
            "/Microsoft-Server-ActiveSync",
            "https://x/owa/",
            "https://u:p@x/Microsoft-Server-ActiveSync",
            "https://x/Microsoft-Server-ActiveSync/../owa",
        ] {
            assert!(parse_location(&hv(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn allow_list() {
        let svc = ServiceModel {
            name: "default".into(),
            servers: vec![ServerAddr {
                host: "exch1".into(),
                port: 443,
            }],
        };
        let allowed = vec![
            "mail2.corp.example".to_string(),
            "10.1.2.3:8443".to_string(),
        ];
        let ok = |h: &str, p| {
            is_allowed(
                &ServerAddr {
                    host: h.into(),
                    port: p,
                },
                &svc,
                &allowed,
                true,
            )
        };
        assert!(ok("exch1", 443));
        assert!(ok("mail2.corp.example", 443));
        assert!(ok("10.1.2.3", 8443));
        assert!(!ok("10.1.2.3", 443));
        assert!(!ok("evil.example", 443));
        assert!(validate_allowed(&["a b".into(), "x:99999".into(), "[::1]:443".into()]).len() == 2);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_has_ttl_and_bound() {
        let r = Redirects::default();
        let t = Target {
            addr: ServerAddr {
                host: "a".into(),
                port: 1,
            },
            path: "/Microsoft-Server-ActiveSync".into(),
        };
        r.remember("Alice", t.clone());
        assert_eq!(r.get("alice"), Some(t.clone()));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert_eq!(r.get("alice"), None);
        for i in 0..MAX_ENTRIES + 10 {
            r.remember(&format!("u{i}"), t.clone());
        }
        assert_eq!(r.len(), MAX_ENTRIES);
    }
}
