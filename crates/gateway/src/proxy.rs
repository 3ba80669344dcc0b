//! The request path, as stages: accept (in [`crate::listener`]) → identify device
//! ([`crate::identity`]) → decide access ([`crate::access`], remote wipe in [`crate::wipe`]) →
//! route → pick server → forward (451 redirects in [`crate::redirect`]) → filter response
//! (protocol version limit in [`crate::versions`]). Each stage is one function.

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

use crate::access::DeviceKey;
use crate::access::{Action, Decision};
use crate::activesync::{self, Command, LongPoll};
use crate::audit::Exchange;
use crate::connect;
use crate::error::{Blame, Error, Result};
use crate::forward::{self, DownBody, Home, RespBody, Reuse, UpBody};
use crate::h1::client::{Outbound, SendFailure, Sent, ServerBody, ServerConn};
use crate::h1::server::DeviceBody;
use crate::health::ServerHealth;
use crate::identity::{self, DeviceIdentity, Identified, UserSource};
use crate::model::{Runtime, ServiceModel};
use crate::state::Gateway;
use crate::{attachments, redirect, route, timeout, versions, wipe};

/// Largest Ping/Sync body prefix read to find the heartbeat. Ping bodies are a few hundred
/// bytes; a Sync larger than this carries changes, so the server answers it at once anyway.
const MAX_LONG_POLL_BODY: usize = 16 * 1024;

/// Most body frames read into the prefix; the rest streams.
const MAX_PREFIX_FRAMES: usize = 4096;

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
    /// The login of the last NTLM AUTHENTICATE on this connection: the user of its later
    /// requests, which carry no credential of their own.
    ntlm_login: parking_lot::Mutex<Option<Box<str>>>,
    pinned: parking_lot::Mutex<Option<Pinned>>,
}

struct Pinned {
    conn: ServerConn,
    server: Arc<ServerHealth>,
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
            ntlm_login: parking_lot::Mutex::new(None),
            pinned: parking_lot::Mutex::new(None),
        }
    }

    /// Keeps `conn` for this device connection only (called when a response completes).
    pub fn pin(&self, conn: ServerConn, server: Arc<ServerHealth>) {
        *self.pinned.lock() = Some(Pinned { conn, server });
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
///
/// The request comes boxed: an `async fn` keeps room for each by-value argument for its whole
/// life, at every level it passes through, so a 264-byte request would be held three times by
/// a parked Ping (and copied at every stage).
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<DeviceConn>,
    req: Box<Request<DeviceBody>>,
) -> std::result::Result<Response<RespBody>, Infallible> {
    let rt = gw.current();
    let _active = Active::new(&conn);
    let seq = conn.seq.fetch_add(1, Ordering::Relaxed);
    let command = activesync::command_name(req.uri().query());
    let mut ex = Some(Exchange::new(
        gw.clone(),
        conn.id,
        seq,
        conn.peer.ip(),
        req.uri().clone(),
        command,
    ));
    if let Some(ex) = ex.as_mut() {
        ex.authorization = req.headers().get(header::AUTHORIZATION).cloned();
    }
    let resp = match serve(&gw, &rt, &conn, req, &mut ex).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &conn),
    };
    if let Some(mut ex) = ex {
        ex.status = resp.status().as_u16();
    }
    Ok(resp)
}

/// A request on its way to a server (`R`: the request, or `()` once it is written), and what its
/// response needs.
struct Flight<R = Outbound> {
    req: R,
    device: Option<Arc<DeviceIdentity>>,
    svc: Arc<ServiceModel>,
    att: Option<attachments::Plan>,
    replay: Option<Box<Replay>>,
    poll: LongPoll,
    rto: Duration,
    pin: bool,
}

enum Dispatched {
    Answered(Box<Response<RespBody>>),
    Sent(Box<(Sent, Reuse, Flight<()>)>),
}

/// [`prepare`], then [`dispatch`]: the request is written to a server when this returns.
async fn prepare_and_dispatch(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    req: Box<Request<DeviceBody>>,
    ex: &mut Option<Exchange>,
) -> Result<Dispatched> {
    let f = match prepare(gw, rt, conn, req, ex).await? {
        Prepared::Answered(resp) => return Ok(Dispatched::Answered(resp)),
        Prepared::Forward(f) => *f,
    };
    let Flight {
        req,
        device,
        svc,
        att,
        replay,
        poll,
        rto,
        pin,
    } = f;
    let user = device.as_ref().map(|d| d.key.user.as_str());
    let (sent, reuse) = dispatch(gw, rt, conn, &svc, req, user, pin).await?;
    let flight = Flight {
        req: (),
        device,
        svc,
        att,
        replay,
        poll,
        rto,
        pin,
    };
    Ok(Dispatched::Sent(Box::new((sent, reuse, flight))))
}

enum Prepared {
    /// Answered by the gateway (remote wipe).
    Answered(Box<Response<RespBody>>),
    Forward(Box<Flight>),
}

/// The request path in three parts, each its own future: `prepare` (identify, decide, route,
/// read the long-poll prefix) and the response filters are boxed and freed around the wait for
/// the server's answer, so what a parked Ping holds for up to an hour is the wait alone.
async fn serve(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    req: Box<Request<DeviceBody>>,
    ex: &mut Option<Exchange>,
) -> Result<Response<RespBody>> {
    // Prepare and dispatch share one box (one allocation): both are over before the wait.
    let (sent, reuse, flight) = match Box::pin(prepare_and_dispatch(gw, rt, conn, req, ex)).await? {
        Dispatched::Answered(resp) => return Ok(*resp),
        Dispatched::Sent(d) => *d,
    };
    let poll = flight.poll;
    let parked = (poll != LongPoll::No).then(|| gw.metrics.parked());
    let wait = async {
        match sent.response(flight.rto, &reuse.server.addr).await {
            Ok(resp) => Ok((resp, reuse)),
            Err(e) => Err(server_failed(gw, rt, &reuse.server, e)),
        }
    };
    // Ended early if the device becomes blocked meanwhile.
    let (resp, reuse) = match &flight.device {
        Some(id) => {
            let watch = AccessWatch {
                immediate: poll != LongPoll::No,
            };
            tokio::select! {
                r = wait => r?,
                d = Box::pin(watch.blocked(gw, id)) => return ended_by_access(gw, id, &d, ex),
            }
        }
        None => wait.await?,
    };
    drop(parked);
    let answer = Answer {
        svc: flight.svc,
        device: flight.device,
        att: flight.att,
        replay: flight.replay,
        rto: flight.rto,
        pin: flight.pin,
    };
    Box::pin(after_response(gw, rt, conn, answer, resp, reuse, ex)).await
}

/// What the response stages need from the request.
struct Answer {
    svc: Arc<ServiceModel>,
    device: Option<Arc<DeviceIdentity>>,
    att: Option<attachments::Plan>,
    replay: Option<Box<Replay>>,
    rto: Duration,
    pin: bool,
}

/// 451 processing, attachment control, then the response filter.
async fn after_response(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    a: Answer,
    resp: Response<ServerBody>,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
) -> Result<Response<RespBody>> {
    let user = a.device.as_ref().map(|d| d.key.user.as_str());
    let (resp, reuse) = if resp.status().as_u16() == 451 && rt.activesync.redirect_processing {
        // Rare paths (451, attachment control) are boxed: this future is allocated per request.
        Box::pin(follow_451(
            gw, rt, conn, &a.svc, resp, reuse, a.replay, user, a.rto, a.pin,
        ))
        .await?
    } else {
        (resp, reuse)
    };
    let (resp, reuse) = match a.att.as_ref().filter(|p| p.rewrites_response()) {
        Some(p) => {
            match Box::pin(attachments::filter_response(gw, rt, p, resp, reuse, ex)).await? {
                attachments::Filtered::Pass(resp, reuse) => (resp, reuse),
                attachments::Filtered::Done(resp) => return Ok(*resp),
            }
        }
        None => (resp, reuse),
    };
    filter_response(rt, resp, reuse, ex, a.device.is_none())
}

async fn prepare(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    req: Box<Request<DeviceBody>>,
    ex: &mut Option<Exchange>,
) -> Result<Prepared> {
    // Identify device (404 for non-ActiveSync paths, 400 for a POST naming no device or a
    // `User` that is not the authenticated user).
    let device = match identify(gw, conn, &req, ex)? {
        Identified::Options(pair) => {
            if let Some(key) = pair {
                refuse_blocked_options(gw, &key, ex)?;
            }
            None
        }
        // Shared with the audit record (no copies of its strings).
        Identified::Device(id) => Some(Arc::new(id)),
    };
    // Decide access: a blocked device never reaches a server; a wiped one is answered here.
    if let Some(id) = &device {
        let decision = decide_access(gw, id, ex);
        match decision.action {
            Action::Allow => versions::note_request(gw, rt, id.version, &id.user),
            Action::Block => {
                log_request_line(ex, id, None);
                return Err(Error::Blocked {
                    status: gw.access.policy().blocked_response,
                    rule: decision.rule.name(),
                });
            }
            Action::Wipe => {
                log_request_line(ex, id, None);
                if !rt.activesync.enabled {
                    return Err(Error::ActiveSyncDisabled);
                }
                let silence = rt.timeouts.socket_read_write;
                // Rare: boxed so it does not grow every request's future.
                let resp = Box::pin(wipe::answer(gw, id, req.into_body(), silence)).await?;
                return Ok(Prepared::Answered(Box::new(resp)));
            }
        }
    }
    // Route.
    let svc = route_request(rt, &req)?.clone();
    if let Some(ex) = ex.as_mut() {
        ex.service = Some(svc.clone());
    }
    if let Some(id) = &device {
        log_request_line(ex, id, Some(&svc));
    }
    let limit = rt.limits.max_body_bytes;
    if req.body().size_hint().lower() > limit {
        return Err(Error::BodyTooLarge { limit });
    }

    let (mut parts, body) = req.into_parts();
    // Attachment control (issue 5): the policy of this request, if one applies.
    let att = device
        .as_ref()
        .and_then(|id| attachments::plan(rt, id, parts.uri.query()));
    if let Some(p) = &att {
        attachments::before_forward(gw, p, &mut parts.headers, ex)?;
    }
    let bytes_in = ex.as_ref().map(|e| e.bytes_in.clone());
    let silence = rt.timeouts.socket_read_write;
    // Named once per request (by `handle`, for the audit record).
    let command = match ex.as_ref() {
        Some(e) => Command::of_name(e.command),
        None => activesync::command(parts.uri.query()),
    };
    let redirecting = rt.activesync.redirect_processing;
    // A body kept for a 451 replay must be read whole before it is sent: only bodies that
    // declare a length within the replay limit are (a few KiB for EAS commands); everything
    // else streams as it arrives.
    let declared = body.size_hint().upper();
    let replayable = redirecting
        && device.is_some()
        && declared.is_some_and(|n| n <= redirect::REPLAY_MAX_BYTES as u64);
    let prefix = match (command, replayable) {
        (_, true) => redirect::REPLAY_MAX_BYTES,
        (Command::Ping | Command::Sync, false) => MAX_LONG_POLL_BODY,
        _ => 0,
    };
    let key = device
        .as_ref()
        .map(|d| (d.user.as_str(), d.key.device.as_str()));
    let (body, poll, complete) = match att.as_ref().filter(|p| p.rewrites_request()) {
        // Boxed (as every stage that is over before the server answers): a parked Ping keeps
        // this future for up to an hour, and its size is that of its largest stage.
        Some(p) => {
            Box::pin(attachments::compose_request(
                gw, p, &mut parts, body, limit, silence, bytes_in, ex,
            ))
            .await?
        }
        None => {
            Box::pin(read_prefix(
                gw, key, command, body, prefix, limit, silence, bytes_in,
            ))
            .await?
        }
    };
    let remembered = match poll {
        LongPoll::Unknown if command == Command::Ping => {
            key.as_ref().and_then(|(u, d)| gw.heartbeats.recall(u, d))
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
    // Kept for a 451 replay: only a body read completely can be sent again.
    let replay = match (replayable, complete) {
        (true, Some(b)) => Some(Box::new(Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: b,
        })),
        _ => None,
    };
    let req = Box::new(Request::from_parts(parts, body));
    Ok(Prepared::Forward(Box::new(Flight {
        req,
        device,
        svc,
        att,
        replay,
        poll,
        rto: response_timeout,
        pin,
    })))
}

/// Stage "identify device", with what the connection knows (an earlier NTLM login). An identity
/// refusal is logged, counted and audited under its rule here.
fn identify(
    gw: &Gateway,
    conn: &DeviceConn,
    req: &Request<DeviceBody>,
    ex: &mut Option<Exchange>,
) -> Result<Identified> {
    let policy = gw.access.policy();
    let connection_login = conn.ntlm_login.lock().clone();
    let with = identity::IdentifyWith {
        naming: gw.access.naming(),
        opaque: policy.opaque_credentials,
        connection_login: connection_login.as_deref(),
    };
    let identified = identity::identify(req, &with);
    match &identified {
        Ok(Identified::Device(id)) if id.source == UserSource::Ntlm => {
            // Connection-bound: later requests on this connection carry no credential.
            *conn.ntlm_login.lock() = Some(id.user.as_str().into());
        }
        Err(e) => {
            if let Some(rule) = e.identity_rule() {
                gw.metrics.access_decision("BLOCK", rule);
                tracing::warn!(peer = %conn.peer, error = %e, rule, "device request refused: who it is cannot be trusted");
                if let Some(ex) = ex.as_mut() {
                    ex.action = Action::Block;
                    ex.rule = rule;
                }
            }
        }
        Ok(_) => {}
    }
    identified
}

/// An OPTIONS whose query names a blocked (or wiped) pair is refused: forwarded with its
/// `Authorization`, it would tell a blocked device whether a password is right.
fn refuse_blocked_options(gw: &Gateway, key: &DeviceKey, ex: &mut Option<Exchange>) -> Result<()> {
    let d = gw.access.peek_key(key);
    if d.action == Action::Allow || d.would_block {
        return Ok(());
    }
    gw.metrics
        .access_decision("BLOCK", "options_blocked_device");
    tracing::info!(user = %crate::access::clip(&key.user), device_id = %key.device, rule = d.rule.name(), "OPTIONS from a blocked device not forwarded");
    if let Some(ex) = ex.as_mut() {
        ex.action = Action::Block;
        ex.rule = d.rule.name();
    }
    Err(Error::Blocked {
        status: gw.access.policy().blocked_response,
        rule: d.rule.name(),
    })
}

/// Stage "decide access": the one access check per device request (decision + association),
/// recorded on the audit record.
fn decide_access(gw: &Gateway, id: &Arc<DeviceIdentity>, ex: &mut Option<Exchange>) -> Decision {
    let d = gw.access.check_key(&id.key, &id.request_info());
    if d.would_block {
        gw.metrics
            .access_decision("REPORT", d.rule.effective().name());
        tracing::warn!(
            user = %crate::access::clip(&id.user),
            device_id = %id.device_id,
            would = d.enforced_action().as_str(),
            rule = d.rule.effective().name(),
            "report-only: device let through; enforce mode would not"
        );
    } else if d.action != Action::Allow {
        gw.metrics.access_decision(d.action.as_str(), d.rule.name());
        tracing::info!(
            user = %crate::access::clip(&id.user),
            device_id = %id.device_id,
            action = d.action.as_str(),
            rule = d.rule.name(),
            "device request not forwarded"
        );
    }
    if let Some(ex) = ex.as_mut() {
        ex.action = d.action;
        ex.rule = d.rule.name();
        ex.would_block = d.would_block;
        ex.device = Some(id.clone());
    }
    d
}

fn log_request_line(
    ex: &mut Option<Exchange>,
    id: &DeviceIdentity,
    svc: Option<&Arc<ServiceModel>>,
) {
    if let Some(ex) = ex.as_mut() {
        if let Some(svc) = svc {
            ex.service = Some(svc.clone());
        }
        ex.log_request(id);
    }
}

/// When an in-flight request watches for its device becoming blocked: long polls at once;
/// ordinary requests only once they have taken [`WATCH_AFTER`] (a subscription per request
/// would put a shared lock on the hot path for answers that come in milliseconds).
struct AccessWatch {
    immediate: bool,
}

/// Ordinary requests start watching for a block after this long.
const WATCH_AFTER: Duration = Duration::from_secs(1);

impl AccessWatch {
    async fn blocked(self, gw: &Gateway, id: &DeviceIdentity) -> Decision {
        if gw.access.policy().mode == crate::access::AccessMode::ReportOnly {
            return std::future::pending().await;
        }
        if !self.immediate {
            tokio::time::sleep(WATCH_AFTER).await;
        }
        gw.access.blocked_signal(&id.user, &id.device_id).await
    }
}

/// An in-flight request of a device that became blocked (or marked for wipe) is ended: the
/// blocked status, or the answer that makes it provision for the wipe.
fn ended_by_access(
    gw: &Gateway,
    id: &DeviceIdentity,
    d: &Decision,
    ex: &mut Option<Exchange>,
) -> Result<Response<RespBody>> {
    tracing::info!(
        user = %crate::access::clip(&id.user),
        device_id = %id.device_id,
        action = d.action.as_str(),
        rule = d.rule.name(),
        "in-flight request ended: the device's access changed"
    );
    if let Some(ex) = ex.as_mut() {
        ex.action = d.action;
        ex.rule = d.rule.name();
    }
    match d.action {
        Action::Wipe => Ok(wipe::demand(id.version, id.command)),
        _ => Err(Error::Blocked {
            status: gw.access.policy().blocked_response,
            rule: d.rule.name(),
        }),
    }
}

/// A request kept for a 451 replay.
struct Replay {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Replay {
    fn request(self: Box<Self>, target: &redirect::Target, tls: bool) -> Outbound {
        let this = *self;
        let mut r = Request::new(UpBody::full(this.body));
        *r.method_mut() = this.method;
        *r.uri_mut() = target.uri(&this.uri);
        *r.headers_mut() = this.headers;
        *r.version_mut() = Version::HTTP_11;
        r.headers_mut()
            .insert(header::HOST, forward::host_header(&target.addr, tls));
        Box::new(r)
    }
}

/// Stage "pick server → forward": a user a 451 moved goes straight to the remembered target,
/// everyone else to a live server of the service. Returns once the request is written.
async fn dispatch(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    svc: &Arc<ServiceModel>,
    req: Outbound,
    user: Option<&str>,
    pin: bool,
) -> Result<(Sent, Reuse)> {
    match user.filter(|_| rt.activesync.redirect_processing) {
        Some(u) => match to_remembered(gw, rt, conn, svc, req, u, pin).await? {
            Ok(ok) => Ok(ok),
            Err(req) => pick_and_send(gw, rt, conn, svc, req, pin).await,
        },
        None => pick_and_send(gw, rt, conn, svc, req, pin).await,
    }
}

/// 451 redirect processing (see [`crate::redirect`]): a fresh 451 to an allowed host is
/// replayed there (one hop), to any other host refused.
#[allow(clippy::too_many_arguments)]
async fn follow_451(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    svc: &Arc<ServiceModel>,
    resp: Response<ServerBody>,
    reuse: Reuse,
    replay: Option<Box<Replay>>,
    user: Option<&str>,
    rto: Duration,
    pin: bool,
) -> Result<(Response<ServerBody>, Reuse)> {
    let tls = rt.activesync.server_tls.is_some();
    let allowed_hosts = &rt.source.activesync.redirect_allowed_hosts;

    let Some(location) = resp.headers().get(eas::headers::X_MS_LOCATION) else {
        gw.metrics.redirect("passed_no_location");
        return Ok((resp, reuse));
    };
    let from = reuse.server.label.to_string();
    let target = redirect::parse_location(location)
        .filter(|t| redirect::is_allowed(&t.addr, svc, allowed_hosts, tls));
    let Some(target) = target else {
        gw.metrics.redirect("refused");
        let location = crate::access::clip(&String::from_utf8_lossy(location.as_bytes()));
        tracing::warn!(server = %from, %location, "451 redirect to a host outside the service's servers and redirect_allowed_hosts: refused");
        return Err(Error::RedirectRefused {
            server: from,
            location,
        });
    };
    let Some(replay) = replay else {
        gw.metrics.redirect("passed_body_too_large");
        tracing::info!(server = %from, target_server = %target.addr, "451 passed to the device: the request body was too large to replay");
        return Ok((resp, reuse));
    };
    if let Some(u) = user {
        gw.redirects.remember(u, target.clone());
    }
    // The 451's connection is not reused (its body is not read).
    drop(resp);
    drop(reuse);
    let server = gw.health.get(&target.addr);
    tracing::info!(server = %from, target_server = %target.addr, "451 redirect followed");
    let replayed = replay.request(&target, tls);
    let sent = match send_to(gw, rt, conn, &server, replayed, pin).await {
        Ok((sent, _)) => sent.response(rto, &server.addr).await,
        Err((e, _)) => Err(e),
    };
    match sent {
        Ok(resp) => {
            gw.metrics.redirect("followed");
            Ok((resp, Reuse { server }))
        }
        Err(e) => {
            gw.metrics.redirect("target_failed");
            if let Some(u) = user {
                gw.redirects.forget(u);
            }
            Err(server_failed(gw, rt, &server, e))
        }
    }
}

/// A user a 451 moved goes straight to the remembered target (while it is still allowed). The
/// request comes back (`Ok(Err(req))`) when there is none or it could not be reached unsent.
#[allow(clippy::too_many_arguments)]
async fn to_remembered(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    svc: &ServiceModel,
    mut req: Outbound,
    user: &str,
    pin: bool,
) -> Result<std::result::Result<(Sent, Reuse), Outbound>> {
    let Some(target) = gw.redirects.get(user) else {
        return Ok(Err(req));
    };
    let tls = rt.activesync.server_tls.is_some();
    if !redirect::is_allowed(
        &target.addr,
        svc,
        &rt.source.activesync.redirect_allowed_hosts,
        tls,
    ) {
        gw.redirects.forget(user);
        return Ok(Err(req));
    }
    let original = req.uri().clone();
    *req.uri_mut() = target.uri(&original);
    req.headers_mut()
        .insert(header::HOST, forward::host_header(&target.addr, tls));
    let server = gw.health.get(&target.addr);
    match send_to(gw, rt, conn, &server, req, pin).await {
        Ok(ok) => Ok(Ok(ok)),
        Err((e, Some(mut r))) => {
            tracing::warn!(target_server = %target.addr, error = %e, "remembered 451 target unreachable; forgetting it");
            gw.metrics.redirect("remembered_failed");
            gw.redirects.forget(user);
            *r.uri_mut() = original;
            Ok(Err(r))
        }
        Err((e, None)) => Err(server_failed(gw, rt, &server, e)),
    }
}

/// Only ActiveSync paths, only while ActiveSync is enabled; then the service by host.
fn route_request<'a>(rt: &'a Runtime, req: &Request<DeviceBody>) -> Result<&'a Arc<ServiceModel>> {
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

/// Stage "filter response": hop-by-hop headers removed, protocol versions held to
/// `limit_protocol_version`; the body streams back.
fn filter_response(
    rt: &Runtime,
    resp: Response<ServerBody>,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
    options: bool,
) -> Result<Response<RespBody>> {
    let (mut parts, body) = resp.into_parts();
    forward::strip_hop_by_hop(&mut parts.headers);
    if let Some(limit) = versions::limit(rt) {
        versions::filter_response_headers(&mut parts.headers, limit, options);
    }
    let body = stream_down(rt, parts.status, body, reuse, ex)?;
    Ok(Response::from_parts(parts, RespBody::Server { body }))
}

/// A server response body streamed to the device: it takes over the request's audit record
/// (noting `status` and the server) and finishes it when the response ends.
pub(crate) fn stream_down(
    rt: &Runtime,
    status: http::StatusCode,
    body: ServerBody,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
) -> Result<DownBody> {
    let Some(mut exchange) = ex.take() else {
        return Err(Error::DeviceBody {
            reason: "request record lost".into(),
        });
    };
    exchange.status = status.as_u16();
    exchange.server = Some(reuse.server.label.clone());
    Ok(DownBody::new(
        body,
        rt.timeouts.socket_read_write,
        reuse,
        exchange,
        rt.servers,
    ))
}

/// Reads at most `prefix` bytes of the body (the long-poll bytes that say the heartbeat, and the
/// body kept for a 451 replay); the bytes read are forwarded first, the rest (if any) streams
/// after them. Returns the body, the long poll, and the whole body when it fit in the prefix.
#[allow(clippy::too_many_arguments)]
async fn read_prefix(
    gw: &Gateway,
    device: Option<(&str, &str)>,
    command: Command,
    mut body: DeviceBody,
    prefix: usize,
    limit: u64,
    silence: Duration,
    bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Result<(UpBody, LongPoll, Option<Bytes>)> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut len = 0usize;
    let mut complete = body.is_end_stream();
    if prefix == 0 && !complete {
        return Ok((
            UpBody::new(None, Some(body), limit, silence, bytes_in),
            LongPoll::No,
            None,
        ));
    }
    // Bounded by bytes and by frames (empty DATA frames add no bytes).
    let mut frames = 0usize;
    while !complete && len < prefix && frames < MAX_PREFIX_FRAMES {
        frames += 1;
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
            Ok(Some(Err(e))) => return Err(Error::device_body(&e)),
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
        && let Some((user, device)) = device
    {
        gw.heartbeats.remember(user, device, secs);
    }
    // A last frame may overshoot the prefix: only a body within it counts as kept whole.
    let whole = (complete && head.len() <= prefix).then(|| head.clone());
    let rest = (!complete).then_some(body);
    Ok((
        UpBody::new(Some(head), rest, limit, silence, bytes_in),
        poll,
        whole,
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

/// Picks a live server and sends; a connect failure (nothing sent) moves on to the next live
/// server. A device pinned by NTLM/Negotiate reuses its own server connection.
async fn pick_and_send(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    conn: &Arc<DeviceConn>,
    svc: &ServiceModel,
    mut req: Outbound,
    pin: bool,
) -> Result<(Sent, Reuse)> {
    let tls = rt.activesync.server_tls.is_some();
    if pin
        && let Some(p) = conn.take_pinned()
        && p.conn.is_tls() == tls
        && svc.servers.contains(&p.server.addr)
        && p.conn.idle_is_clean()
    {
        req.headers_mut()
            .insert(header::HOST, p.server.host_header(tls));
        let home = Home::Pinned {
            conn: conn.clone(),
            server: p.server.clone(),
        };
        let silence = rt.timeouts.socket_read_write;
        match p.conn.write(req, silence, &p.server.addr, Some(home)).await {
            Ok(sent) => return Ok((sent, Reuse { server: p.server })),
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
        match send_to(gw, rt, conn, &server, req, pin).await {
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
    mut req: Outbound,
    pin: bool,
) -> std::result::Result<(Sent, Reuse), SendFailure> {
    let tls_cfg = rt.activesync.server_tls.as_ref();
    let tls = tls_cfg.is_some();
    let idle = gw.pool.idle(&server.addr);
    let silence = rt.timeouts.socket_read_write;
    let home = || {
        Some(if pin {
            Home::Pinned {
                conn: conn.clone(),
                server: server.clone(),
            }
        } else {
            Home::Shared(idle.clone())
        })
    };
    let reuse = || Reuse {
        server: server.clone(),
    };
    for _ in 0..MAX_IDLE_TRIES {
        let Some(c) = idle.take(tls, rt.timeouts.server_pool_idle) else {
            break;
        };
        match c.write(req, silence, &server.addr, home()).await {
            Ok(sent) => return Ok((sent, reuse())),
            Err((_, Some(r))) => req = r,
            Err((e, None)) => return Err((e, None)),
        }
    }
    let io = match connect::connect(&server.addr, tls_cfg, rt.timeouts.server_connect).await {
        Ok(io) => io,
        Err(e) => return Err((e, Some(req))),
    };
    let sent = ServerConn::new(io)
        .write(req, silence, &server.addr, home())
        .await?;
    Ok((sent, reuse()))
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
