//! The management API on `[listen] management`: status, config read/replace, Prometheus metrics.
//!
//! Always TLS (the device certificate), and nothing is open: every request needs either a client
//! certificate that chains to `management.client_ca` or `Authorization: Bearer <token>` matching
//! `management.token_file`. The handlers only read state and call [`ControlPlane::apply_body`];
//! no request input ever reaches a shell or a file name (the incumbent's CVSS 10 was a command
//! injection in exactly this kind of API).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;
use crate::model::ManagementAuth;
use crate::reload::ControlPlane;
use crate::validate::Format;

/// Largest `PUT /v1/config` body. A config with 4000-character server lists for a few hundred
/// services stays far below it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// From accept to the first complete request head, TLS handshake included (one deadline), and
/// for each later head: a management client is a script or the portal on an admin network, never
/// a phone on a slow one, so a silent socket is closed after a few seconds instead of holding
/// one of the [`MAX_CONNECTIONS`] for long.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole `PUT` body deadline: 1 MiB arrives well within it on any admin network.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent management connections; more are closed at once. The portal and a few admin
/// scripts need a handful; the cap keeps a flood on this port from starving the device side.
const MAX_CONNECTIONS: usize = 64;
/// Concurrent management connections from one IPv4 address or IPv6 /64 (one host can pick any
/// address in its /64); more are closed at once, so silent sockets from one source cannot take
/// all [`MAX_CONNECTIONS`] and lock out admins elsewhere.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
/// At most one `info` line per this long about refused management connections (the rest are
/// `debug` and counted): a flood must not flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How a connection proved itself at the TLS layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// A client certificate was presented and verified against `management.client_ca`.
    VerifiedCert,
    Anonymous,
}

/// Serves the management API until `shutdown` turns true. Connections are TLS with the config in
/// force when they are accepted, so a new certificate or CA applies to new connections.
pub async fn serve_management(
    cp: Arc<ControlPlane>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(PerAddress::default());
    let mut refusals = RefusalLog::default();
    loop {
        let (tcp, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "management accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        let metrics = &cp.gateway().metrics;
        let Some(slot) = per_address.clone().admit(source(peer_addr.ip())) else {
            metrics.management_refused("per_address_cap");
            refusals.refused(peer_addr, "per_address_cap");
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.management_refused("connection_cap");
            refusals.refused(peer_addr, "connection_cap");
            continue;
        };
        let cp = cp.clone();
        tokio::spawn(async move {
            let _held = (permit, slot);
            if let Err(e) = serve_connection(cp, tcp, peer_addr).await {
                tracing::debug!(peer = %peer_addr, error = %e, "management connection ended with an error");
            }
        });
    }
}

/// What [`MAX_CONNECTIONS_PER_ADDRESS`] counts by: the IPv4 address (an IPv4-mapped IPv6
/// address counts as its IPv4 address), or the IPv6 /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Open management connections per source (see [`source`]), for
/// [`MAX_CONNECTIONS_PER_ADDRESS`]. Holds only sources with a connection open, so at most
/// [`MAX_CONNECTIONS`] entries.
#[derive(Default)]
struct PerAddress(parking_lot::Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// A slot for one more connection from `ip` (given back when dropped), or `None` at the cap.
    fn admit(self: Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        {
            let mut open = self.0.lock();
            let n = open.entry(ip).or_default();
            if *n >= MAX_CONNECTIONS_PER_ADDRESS {
                return None;
            }
            *n += 1;
        }
        Some(AddressSlot { of: self, ip })
    }
}

/// One open connection from `ip`, counted in `of` while it lives.
struct AddressSlot {
    of: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.of.0.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Logs refused management connections: every one at `debug`, and at most one `info` line per
/// [`REFUSAL_LOG_EVERY`] with how many were refused since the last one.
#[derive(Default)]
struct RefusalLog {
    last_info: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, reason: &'static str) {
        tracing::debug!(%peer, reason, "management connection refused");
        self.since += 1;
        let now = Instant::now();
        if self
            .last_info
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        tracing::info!(%peer, reason, refused = self.since,
            "management connections refused (too many at once, from this address or in all); counted in easgate_management_refusals_total");
        self.last_info = Some(now);
        self.since = 0;
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One management connection: TLS handshake and the first request head by one deadline from
/// accept ([`FIRST_REQUEST_TIMEOUT`]), then requests until it closes.
async fn serve_connection(
    cp: Arc<ControlPlane>,
    tcp: tokio::net::TcpStream,
    peer_addr: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let first = Instant::now() + FIRST_REQUEST_TIMEOUT;
    let acceptor = TlsAcceptor::from(cp.gateway().current().management.tls.clone());
    let Ok(tls) = tokio::time::timeout_at(first, acceptor.accept(tcp)).await else {
        return Err(no_request_in_time(&cp));
    };
    let tls = tls?;
    let peer = if tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty())
    {
        Peer::VerifiedCert
    } else {
        Peer::Anonymous
    };
    let seen = Arc::new(AtomicBool::new(false));
    let handled = seen.clone();
    let service_cp = cp.clone();
    let service = hyper::service::service_fn(move |req| {
        handled.store(true, Ordering::Relaxed);
        let cp = service_cp.clone();
        async move { Ok::<_, Infallible>(handle(&cp, peer, peer_addr, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(FIRST_REQUEST_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let no_request = async {
        tokio::time::sleep_until(first).await;
        if seen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => r?,
        () = no_request => return Err(no_request_in_time(&cp)),
    }
    Ok(())
}

/// A management connection without a complete request head by its deadline: counted, and
/// closed (and logged at `debug`, with the peer) by the caller.
fn no_request_in_time(cp: &ControlPlane) -> Box<dyn std::error::Error + Send + Sync> {
    cp.gateway()
        .metrics
        .management_refused("first_request_timeout");
    format!(
        "no request within {} s of connecting: closed",
        FIRST_REQUEST_TIMEOUT.as_secs()
    )
    .into()
}

async fn handle(
    cp: &ControlPlane,
    peer: Peer,
    peer_addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let runtime = cp.gateway().current();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(credential) = authorize(&runtime.management, peer, req.headers()) else {
        tracing::warn!(target: "easgate::management", peer = %peer_addr, %method, %path, "management request without a valid credential");
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "a client certificate or bearer token is required" }),
        );
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"easgate\""),
        );
        return resp;
    };
    let resp = match (path.as_str(), &method) {
        ("/v1/status", &Method::GET) => json_response(StatusCode::OK, &status(cp)),
        ("/v1/config", &Method::GET) => json_response(StatusCode::OK, &runtime.source),
        ("/v1/config", &Method::PUT) => put_config(cp, req).await,
        ("/metrics", &Method::GET) => {
            let mut resp = Response::new(Full::new(Bytes::from(metrics_text(cp))));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        ("/v1/status" | "/metrics", _) => method_not_allowed("GET"),
        ("/v1/config", _) => method_not_allowed("GET, PUT"),
        // Device access list, explain, associations (issue 4).
        (p, _) if crate::access_api::handles(p) => {
            crate::access_api::handle(cp.gateway(), req).await
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
    };
    tracing::info!(target: "easgate::management", peer = %peer_addr, credential, %method, %path, status = resp.status().as_u16(), "management request");
    resp
}

/// Which credential admitted the request, or `None`. The token compare takes the same time
/// wherever the first differing byte is.
fn authorize(auth: &ManagementAuth, peer: Peer, headers: &HeaderMap) -> Option<&'static str> {
    if peer == Peer::VerifiedCert && !auth.client_ca.is_empty() {
        return Some("client-cert");
    }
    let expected = auth.token.as_deref()?;
    let presented = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = presented.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    constant_time_eq(presented[7..].trim_ascii(), expected.as_bytes()).then_some("token")
}

/// Compares without an early exit, so response timing does not reveal how much of a guess was
/// right. (The length is not secret: it is visible in the token file's size anyway.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn put_config(cp: &ControlPlane, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json" => Format::Json,
        "application/toml" | "text/toml" | "text/x-toml" => Format::Toml,
        _ => {
            return json_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &json!({ "error": "Content-Type must be application/json or application/toml" }),
            );
        }
    };
    let collect = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
        return json_response(
            StatusCode::REQUEST_TIMEOUT,
            &json!({ "error": "the config body did not arrive in time" }),
        );
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({ "error": format!("config body larger than {MAX_BODY_BYTES} bytes") }),
            );
        }
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("reading the body: {e}") }),
            );
        }
    };
    match cp.apply_body(&body, format).await {
        Ok(applied) => json_response(
            StatusCode::OK,
            &json!({ "applied": true, "persisted": true, "restart_required": applied.restart_required }),
        ),
        Err(Error::InvalidConfig { errors }) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "errors": errors }),
        ),
        Err(e) => json_response(e.status(), &json!({ "error": e.to_string() })),
    }
}

/// `GET /v1/status`: what an admin checks first when mail stops.
fn status(cp: &ControlPlane) -> serde_json::Value {
    let gw = cp.gateway();
    let runtime = gw.current();
    let health = gw.health.snapshot(&runtime);
    let (reloads_ok, reloads_failed) = cp.reload_counts();
    json!({
        "sentry_host": runtime.sentry_host,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": cp.uptime().as_secs(),
        "activesync_enabled": runtime.activesync.enabled,
        "listen": { "devices": runtime.listen.devices.to_string(), "management": runtime.listen.management.to_string() },
        "health_check": health.health_check,
        "services": health.services,
        "counters": {
            "requests_in_flight": gw.metrics.in_flight(),
            "pings_parked": gw.metrics.parked_now(),
            "config_applied": reloads_ok,
            "config_rejected": reloads_failed,
        },
    })
}

/// `GET /metrics` in the Prometheus text format (version 0.0.4).
fn metrics_text(cp: &ControlPlane) -> String {
    use std::fmt::Write;
    let runtime = cp.gateway().current();
    let (ok, failed) = cp.reload_counts();
    let servers: usize = runtime
        .activesync
        .services
        .iter()
        .map(|s| s.servers.len())
        .sum();
    let mut out = String::with_capacity(1024);
    let _ = writeln!(out, "# HELP easgate_build_info easgate version.");
    let _ = writeln!(out, "# TYPE easgate_build_info gauge");
    let _ = writeln!(
        out,
        "easgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP easgate_uptime_seconds Seconds since the gateway started."
    );
    let _ = writeln!(out, "# TYPE easgate_uptime_seconds gauge");
    let _ = writeln!(out, "easgate_uptime_seconds {}", cp.uptime().as_secs_f64());
    let _ = writeln!(
        out,
        "# HELP easgate_config_applies_total Configs applied (SIGHUP or PUT /v1/config), by result."
    );
    let _ = writeln!(out, "# TYPE easgate_config_applies_total counter");
    let _ = writeln!(out, "easgate_config_applies_total{{result=\"ok\"}} {ok}");
    let _ = writeln!(
        out,
        "easgate_config_applies_total{{result=\"rejected\"}} {failed}"
    );
    let _ = writeln!(
        out,
        "# HELP easgate_services ActiveSync services configured."
    );
    let _ = writeln!(out, "# TYPE easgate_services gauge");
    let _ = writeln!(
        out,
        "easgate_services {}",
        runtime.activesync.services.len()
    );
    let _ = writeln!(
        out,
        "# HELP easgate_servers Servers configured, over all services."
    );
    let _ = writeln!(out, "# TYPE easgate_servers gauge");
    let _ = writeln!(out, "easgate_servers {servers}");
    out.push_str(&cp.gateway().metrics.render());
    out
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({ "error": "method not allowed" }),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_ipv4_address_or_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_ne!(source(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        let open = Arc::new(PerAddress::default());
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_ADDRESS)
            .map(|_| open.clone().admit(ip("192.0.2.7")).unwrap())
            .collect();
        assert!(open.clone().admit(ip("192.0.2.7")).is_none());
        assert!(open.clone().admit(ip("192.0.2.8")).is_some());
        drop(held);
        assert!(
            open.0.lock().is_empty(),
            "closed connections leave no entry"
        );
        assert!(open.clone().admit(ip("192.0.2.7")).is_some());
    }

    #[test]
    fn constant_time_eq_matches_plain_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
