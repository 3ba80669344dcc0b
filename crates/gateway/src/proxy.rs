//! The request path, as stages: accept (in [`crate::listener`]) → authenticate device → decide
//! access → route → pick server → forward → filter response. Each stage is one function so the
//! next issues (device authentication, access decisions, response filtering) slot in without
//! reshaping the path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::activesync::{self, Command, LongPoll};
use crate::audit::{Action, Exchange};
use crate::connect;
use crate::error::{Blame, Error, Result};
use crate::forward::{self, DownBody, Home, RespBody, Reuse, UpBody};
use crate::health::ServerHealth;
use crate::model::{Runtime, ServiceModel};
use crate::route;
use crate::state::Gateway;
use crate::timeout;

/// Largest Ping/Sync body prefix read to find the heartbeat. Ping bodies are a few hundred
/// bytes; a Sync larger than this carries changes, so the server answers it at once anyway.
const MAX_LONG_POLL_BODY: usize = 16 * 1024;

/// Pooled connections tried before opening a new one (each may turn out closed, unsent).
const MAX_IDLE_TRIES: usize = 4;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// One device connection: its address, and the server connection it is pinned to once it uses
/// connection-bound authentication (NTLM / Negotiate).
pub struct DeviceConn {
    pub id: u64,
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer address as a header value (`X-Forwarded-For`), made once per connection.
    peer_value: HeaderValue,
    seq: AtomicU32,
    /// Requests waiting for their response headers (HTTP/2 idle detection).
    active: AtomicU32,
    conn_auth: AtomicBool,
    pinned: parking_lot::Mutex<Option<Pinned>>,
}

struct Pinned {
    sender: SendRequest<UpBody>,
    server: Arc<ServerHealth>,
    tls: bool,
}

impl DeviceConn {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        Self {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            tls,
            peer_value: HeaderValue::try_from(peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            seq: AtomicU32::new(0),
            active: AtomicU32::new(0),
            conn_auth: AtomicBool::new(false),
            pinned: parking_lot::Mutex::new(None),
        }
    }

    /// Keeps `sender` for this device connection only (called when a response completes).
    pub fn pin(&self, sender: SendRequest<UpBody>, server: Arc<ServerHealth>, tls: bool) {
        if !sender.is_closed() {
            *self.pinned.lock() = Some(Pinned {
                sender,
                server,
                tls,
            });
        }
    }

    fn take_pinned(&self) -> Option<Pinned> {
        self.pinned.lock().take()
    }

    /// Resolves once the connection has had no request in flight and no new request for a
    /// whole `idle` period (HTTP/2 has no header-read timeout to close idle connections).
    pub async fn idle_for(&self, idle: Duration) {
        let mut last = self.seq.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(idle).await;
            let now = self.seq.load(Ordering::Relaxed);
            if now == last && self.active.load(Ordering::Relaxed) == 0 {
                return;
            }
            last = now;
        }
    }
}

/// Counts a request as in flight on its device connection until dropped.
struct Active<'a>(&'a DeviceConn);

impl<'a> Active<'a> {
    fn new(conn: &'a DeviceConn) -> Self {
        conn.active.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one device request. Never fails: errors become their status (see [`Error::status`]).
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<DeviceConn>,
    req: Request<Incoming>,
) -> std::result::Result<Response<RespBody>, Infallible> {
    let rt = gw.current();
    let _active = Active::new(&conn);
    let seq = conn.seq.fetch_add(1, Ordering::Relaxed);
    let command = activesync::command_name(req.uri().query());
    let mut ex = Exchange::new(
        gw.clone(),
        conn.id,
        seq,
        conn.peer.ip(),
        req.uri().clone(),
        command,
    );
    ex.authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let mut ex = Some(ex);
    let resp = match serve(&gw, &rt, &conn, req, &mut ex).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &conn),
    };
    if let Some(mut ex) = ex {
        ex.status = resp.status().as_u16();
    }
    Ok(resp)
}

async fn serve(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    req: Request<Incoming>,
    ex: &mut Option<Exchange>,
) -> Result<Response<RespBody>> {
    authenticate_device(&req)?;
    let action = decide_access(&req);
    let svc = route_request(rt, &req)?.clone();
    if let Some(ex) = ex.as_mut() {
        ex.action = action;
        ex.service = Some(svc.clone());
    }
    let limit = rt.limits.max_body_bytes;
    if req.body().size_hint().lower() > limit {
        return Err(Error::BodyTooLarge { limit });
    }

    let (mut parts, body) = req.into_parts();
    let bytes_in = ex.as_ref().map(|e| e.bytes_in.clone());
    let silence = rt.timeouts.socket_read_write;
    let command = activesync::command(parts.uri.query());
    let (body, poll) = match command {
        Command::Ping | Command::Sync => {
            read_long_poll(gw, &parts, command, body, limit, silence, bytes_in).await?
        }
        _ => (
            UpBody::new(None, Some(body), limit, silence, bytes_in),
            LongPoll::No,
        ),
    };
    let remembered = match poll {
        LongPoll::Unknown if command == Command::Ping => {
            device_key(&parts).and_then(|(u, d)| gw.heartbeats.recall(&u, &d))
        }
        _ => None,
    };
    let response_timeout = timeout::response_timeout(&rt.timeouts, poll, remembered);

    forward::strip_hop_by_hop(&mut parts.headers);
    let trusted =
        !rt.trusted_proxies.is_empty() && forward::is_trusted(conn.peer.ip(), &rt.trusted_proxies);
    let client = forward::set_forwarded(
        &mut parts.headers,
        conn.peer.ip(),
        &conn.peer_value,
        trusted,
        conn.tls,
    );
    if let Some(ex) = ex.as_mut() {
        ex.client = client;
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    let pin = forward::is_connection_auth(&parts.headers) || conn.conn_auth.load(Ordering::Relaxed);
    if pin {
        conn.conn_auth.store(true, Ordering::Relaxed);
    }
    let req = Request::from_parts(parts, body);

    let parked = (poll != LongPoll::No).then(|| gw.metrics.parked());
    let (resp, reuse) = pick_and_send(gw, rt, conn, &svc, req, response_timeout, pin).await?;
    drop(parked);

    filter_response(rt, resp, reuse, ex)
}

/// Device authentication (certificates, tokens) comes with the next issue; every device passes.
fn authenticate_device(_req: &Request<Incoming>) -> Result<()> {
    Ok(())
}

/// Access decision (device list, block reasons) comes with the next issue; always ALLOW.
fn decide_access(_req: &Request<Incoming>) -> Action {
    Action::Allow
}

/// Only ActiveSync paths, only while ActiveSync is enabled; then the service by host.
fn route_request<'a>(rt: &'a Runtime, req: &Request<Incoming>) -> Result<&'a Arc<ServiceModel>> {
    let path = req.uri().path();
    if !route::is_activesync_path(path) {
        let path = path.chars().take(200).collect();
        return Err(Error::NotActiveSync { path });
    }
    if !rt.activesync.enabled {
        return Err(Error::ActiveSyncDisabled);
    }
    let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    route::service(rt, authority).ok_or_else(|| Error::NoLiveServer {
        service: "default".into(),
        retry_after: Duration::from_secs(60),
    })
}

/// Response headers pass through minus hop-by-hop ones; the body streams back.
fn filter_response(
    rt: &Runtime,
    resp: Response<Incoming>,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
) -> Result<Response<RespBody>> {
    let (mut parts, body) = resp.into_parts();
    forward::strip_hop_by_hop(&mut parts.headers);
    let Some(mut exchange) = ex.take() else {
        return Err(Error::DeviceBody {
            reason: "request record lost".into(),
        });
    };
    exchange.status = parts.status.as_u16();
    exchange.server = Some(reuse.server.label.clone());
    let body = DownBody::new(
        body,
        rt.timeouts.socket_read_write,
        reuse,
        exchange,
        rt.servers,
    );
    Ok(Response::from_parts(parts, RespBody::Server { body }))
}

/// `(user, DeviceId)` of a request, for the heartbeat memory (Pings only, so the full `eas`
/// parse is affordable). The user falls back to the Basic login; DeviceIds compare
/// case-insensitively.
fn device_key(parts: &http::request::Parts) -> Option<(String, String)> {
    let req = eas::EasRequest::parse(&parts.method, &parts.uri, &parts.headers).ok()?;
    Some((req.user_name()?.to_string(), req.device_id.as_ref()?.key()))
}

/// Reads at most [`MAX_LONG_POLL_BODY`] of a Ping/Sync body to find its heartbeat; the bytes
/// read are forwarded first, the rest (if any) streams after them.
async fn read_long_poll(
    gw: &Gateway,
    parts: &http::request::Parts,
    command: Command,
    mut body: Incoming,
    limit: u64,
    silence: Duration,
    bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Result<(UpBody, LongPoll)> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut len = 0usize;
    let mut complete = body.is_end_stream();
    while !complete && len < MAX_LONG_POLL_BODY {
        let frame = match tokio::time::timeout(silence, body.frame()).await {
            Err(_) => {
                return Err(Error::DeviceBody {
                    reason: format!("no request body bytes for {silence:?}"),
                });
            }
            Ok(None) => {
                complete = true;
                break;
            }
            Ok(Some(Err(e))) => {
                return Err(Error::DeviceBody {
                    reason: e.to_string(),
                });
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len as u64 > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m = BytesMut::with_capacity(f.len() + data.len());
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
        complete = body.is_end_stream();
    }
    let head = match more {
        Some(m) => m.freeze(),
        None => first.unwrap_or_default(),
    };
    let poll = match (command, complete) {
        (Command::Sync, false) => LongPoll::No,
        _ => activesync::long_poll(command, &head),
    };
    if let (Command::Ping, LongPoll::Heartbeat(secs)) = (command, poll)
        && let Some((user, device)) = device_key(parts)
    {
        gw.heartbeats.remember(&user, &device, secs);
    }
    let rest = (!complete).then_some(body);
    Ok((
        UpBody::new(Some(head), rest, limit, silence, bytes_in),
        poll,
    ))
}

/// `/path?query` only: servers get origin-form, never the device's absolute URI.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(_) if uri.scheme().is_none() && uri.authority().is_none() => uri.clone(),
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

type SendFailure = (Error, Option<Request<UpBody>>);

/// Picks a live server and sends; a connect failure (nothing sent) moves on to the next live
/// server. A device pinned by NTLM/Negotiate reuses its own server connection.
async fn pick_and_send(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    svc: &ServiceModel,
    mut req: Request<UpBody>,
    rto: Duration,
    pin: bool,
) -> Result<(Response<Incoming>, Reuse)> {
    let tls = rt.activesync.server_tls.is_some();
    if pin
        && let Some(mut p) = conn.take_pinned()
        && p.tls == tls
        && svc.servers.contains(&p.server.addr)
        && ready(&mut p.sender, rt.timeouts.server_connect).await
    {
        req.headers_mut()
            .insert(header::HOST, p.server.host_header(tls));
        match send_on(p.sender, req, rto, &p.server).await {
            Ok((resp, sender)) => {
                let reuse = Reuse {
                    sender,
                    home: Home::Pinned(conn.clone()),
                    tls,
                    server: p.server,
                };
                return Ok((resp, reuse));
            }
            Err((e, Some(r))) => {
                tracing::debug!(error = %e, "pinned server connection closed before use");
                req = r;
            }
            Err((e, None)) => return Err(server_failed(gw, rt, &p.server, e)),
        }
    }
    let hc_on = rt.activesync.health_check.is_some();
    let mut last: Option<Error> = None;
    for i in gw.round_robin.order(svc, rt.servers.scheduling) {
        let server = gw.health.get(&svc.servers[i]);
        if !server.is_live(hc_on) {
            continue;
        }
        req.headers_mut()
            .insert(header::HOST, server.host_header(tls));
        match send_to(gw, rt, conn, &server, req, rto, pin).await {
            Ok(ok) => return Ok(ok),
            Err((e, Some(r))) => {
                tracing::warn!(server = %server.addr, error = %e, "server not reachable, trying the next one");
                gw.metrics.upstream_failure(&server.label, failure_kind(&e));
                server.record_failure(&rt.servers, &e);
                req = r;
                last = Some(e);
            }
            Err((e, None)) => return Err(server_failed(gw, rt, &server, e)),
        }
    }
    let retry_after = retry_after(gw, rt, svc);
    tracing::warn!(service = %svc.name, last_error = ?last.as_ref().map(ToString::to_string), "no live server");
    Err(Error::NoLiveServer {
        service: svc.name.clone(),
        retry_after,
    })
}

/// Counts a failure after the request went out (server's fault only) and passes it on.
fn server_failed(gw: &Gateway, rt: &Runtime, server: &ServerHealth, e: Error) -> Error {
    if e.blame() == Blame::Server {
        gw.metrics.upstream_failure(&server.label, failure_kind(&e));
        server.record_failure(&rt.servers, &e);
    }
    e
}

fn failure_kind(e: &Error) -> &'static str {
    match e {
        Error::Connect { .. } => "connect",
        Error::ConnectTimeout { .. } => "connect_timeout",
        Error::ServerTls { .. } => "tls",
        Error::ResponseTimeout { .. } => "response_timeout",
        _ => "upstream",
    }
}

/// Seconds until a dead server of `svc` may be tried again (1..=300).
fn retry_after(gw: &Gateway, rt: &Runtime, svc: &ServiceModel) -> Duration {
    let soonest = svc
        .servers
        .iter()
        .filter_map(|s| gw.health.get(s).dead_remaining())
        .min();
    let d = match (soonest, rt.activesync.health_check) {
        (_, Some(hc)) => hc.interval * hc.live_threshold,
        (Some(d), None) => d,
        (None, None) => Duration::from_secs(30),
    };
    Duration::from_secs(d.as_secs_f64().ceil() as u64)
        .clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// One server: pooled connections first (a stale one gives the request back unsent), then a
/// fresh connection.
async fn send_to(
    gw: &Gateway,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    server: &Arc<ServerHealth>,
    mut req: Request<UpBody>,
    rto: Duration,
    pin: bool,
) -> std::result::Result<(Response<Incoming>, Reuse), SendFailure> {
    let tls_cfg = rt.activesync.server_tls.as_ref();
    let tls = tls_cfg.is_some();
    let idle = gw.pool.idle(&server.addr);
    let home = |idle: &Arc<connect::IdleList>| {
        if pin {
            Home::Pinned(conn.clone())
        } else {
            Home::Shared(idle.clone())
        }
    };
    for _ in 0..MAX_IDLE_TRIES {
        let Some(mut sender) = idle.take(tls, rt.timeouts.server_pool_idle) else {
            break;
        };
        if !ready(&mut sender, rt.timeouts.server_connect).await {
            continue;
        }
        match send_on(sender, req, rto, server).await {
            Ok((resp, sender)) => {
                return Ok((
                    resp,
                    Reuse {
                        sender,
                        home: home(&idle),
                        tls,
                        server: server.clone(),
                    },
                ));
            }
            Err((_, Some(r))) => req = r,
            Err((e, None)) => return Err((e, None)),
        }
    }
    let io = match connect::connect(&server.addr, tls_cfg, rt.timeouts.server_connect).await {
        Ok(io) => io,
        Err(e) => return Err((e, Some(req))),
    };
    let sender = match connect::handshake(&server.addr, io).await {
        Ok(s) => s,
        Err(e) => return Err((e, Some(req))),
    };
    let (resp, sender) = send_on(sender, req, rto, server).await?;
    Ok((
        resp,
        Reuse {
            sender,
            home: home(&idle),
            tls,
            server: server.clone(),
        },
    ))
}

/// Waits until a kept connection can take a request (it finishes the previous exchange first);
/// false when it closed meanwhile.
async fn ready(sender: &mut SendRequest<UpBody>, within: Duration) -> bool {
    !sender.is_closed()
        && matches!(
            tokio::time::timeout(within, sender.ready()).await,
            Ok(Ok(()))
        )
}

/// Sends on one connection and waits for the response headers within `rto`. The request comes
/// back only if hyper never started writing it.
async fn send_on(
    mut sender: SendRequest<UpBody>,
    req: Request<UpBody>,
    rto: Duration,
    server: &ServerHealth,
) -> std::result::Result<(Response<Incoming>, SendRequest<UpBody>), SendFailure> {
    let sent = sender.try_send_request(req);
    match tokio::time::timeout(rto, sent).await {
        Ok(Ok(resp)) => Ok((resp, sender)),
        Ok(Err(mut e)) => {
            let unsent = e.take_message();
            let source = e.into_error();
            match unsent {
                Some(r) => Err((
                    Error::Handshake {
                        server: server.addr.clone(),
                        source,
                    },
                    Some(r),
                )),
                None => Err((classify(source, server), None)),
            }
        }
        Err(_) => Err((
            Error::ResponseTimeout {
                server: server.addr.clone(),
                timeout: rto,
            },
            None,
        )),
    }
}

/// A send failure caused by the device's body (too large, stalled) is the device's, not the
/// server's.
fn classify(source: hyper::Error, server: &ServerHealth) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&source);
    while let Some(c) = cause {
        if let Some(e) = c.downcast_ref::<Error>() {
            match e {
                Error::BodyTooLarge { limit } => return Error::BodyTooLarge { limit: *limit },
                Error::DeviceBody { reason } => {
                    return Error::DeviceBody {
                        reason: reason.clone(),
                    };
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    Error::Upstream {
        server: server.addr.clone(),
        source,
    }
}

/// The device's answer for an error: its status, `Retry-After` for 503, empty body.
fn error_response(e: &Error, conn: &DeviceConn) -> Response<RespBody> {
    match e.blame() {
        Blame::Device => tracing::debug!(peer = %conn.peer, error = %e, "device request refused"),
        Blame::Server => tracing::warn!(peer = %conn.peer, error = %e, "request failed"),
        Blame::Config => {
            tracing::info!(peer = %conn.peer, error = %e, "request refused by configuration")
        }
    }
    let mut resp = Response::new(RespBody::empty());
    *resp.status_mut() = e.status();
    if let Some(ra) = e.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(ra.as_secs().max(1)));
    }
    resp
}
