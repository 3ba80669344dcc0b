//! Attachment control (issue 5) on the request path. The rewriting itself is the I/O-free engine
//! in `eas::attachment`; this module decides, per request, whether it applies and does the I/O
//! around it:
//!
//! - [`compile`]: `[attachment_control]` → an immutable [`AttachmentControl`] (recipient
//!   certificates loaded) kept in the [`Runtime`], so a reload applies to the next request while
//!   requests in flight (parked Pings) keep theirs.
//! - [`plan`]: the policy of one request (platform class from DeviceType / User-Agent). `None`
//!   when control is off, the command carries no attachment, or the decision is "deliver": then
//!   the request and response stream untouched, byte for byte.
//! - [`before_forward`]: a GetAttachment the policy removes is refused here (the server is never
//!   asked); responses that will be rewritten are asked for without `Content-Encoding` (the
//!   request's `Accept-Encoding` is removed; a server that encodes anyway gets `on_oversize`).
//! - [`compose_request`]: SmartForward / SmartReply bodies are read whole (bounded by
//!   `max_body_bytes`) and rewritten so that the server cannot re-attach the original's
//!   attachments (`ReplaceMime` inserted for 14.0+, `Cmd=SendMail` for a 12.x
//!   `message/rfc822` body). A request that cannot be made safe is refused, never forwarded.
//! - [`filter_response`]: Sync / Search / ItemOperations (WBXML or multipart) and GetAttachment
//!   200 responses are read whole (bounded by `max_body_bytes`), rewritten, and sent with an
//!   exact `Content-Length`. Above the bound, content-encoded or unparsable: `on_oversize`
//!   (block → HTTP 500, the body is never passed; deliver → passed unchanged). Any other failure
//!   (encryption, certificates) blocks.
//!
//! FileReferences of excluded attachments (seen in Sync / Search metadata) are remembered per user
//! in [`ExcludedRefs`] (bounded) so that fetching them later is delivered as-is; an unknown
//! reference is not excluded (fail closed).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::h1::client::ServerBody;
use crate::h1::server::DeviceBody;
use bytes::{Bytes, BytesMut};
use eas::attachment::compose::{self, ComposeFix};
use eas::attachment::wbxml_rewrite::{self, GetAttachmentOutcome};
use eas::attachment::{
    AttachmentControl, AttachmentControlConfig, AttachmentError, Decision, FieldError, OnOversize,
    Place, Policy, Recipients, Summary,
};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use serde::Serialize;
use tokio::time::Instant;

use crate::activesync::LongPoll;
use crate::audit::Exchange;
use crate::error::{Blame, Error, Result};
use crate::forward::{self, RespBody, Reuse, UpBody};
use crate::identity::DeviceIdentity;
use crate::model::Runtime;
use crate::state::Gateway;

/// How a 14.0+ SmartForward / SmartReply is kept from re-attaching the original's attachments.
/// `ReplaceMime` keeps the reply/forward link on the server; verified with SOGo 5.8 (the
/// forwarded mail reaches SMTP without the original's attachments, see `interop_sogo.rs`).
pub const COMPOSE_FIX: ComposeFix = ComposeFix::ReplaceMime;

/// Whether the device's own MIME parts are rewritten too in SmartForward / SmartReply. They
/// carry only what the device already had (its own files, or `.p7m` under "encrypt"), so no.
const STRIP_DEVICE_ATTACHMENTS: bool = false;

/// HTTP status for a response or request attachment control blocks.
const BLOCKED_STATUS: u16 = 500;

/// Users whose excluded FileReferences are remembered, and references per user.
const MAX_USERS: usize = 10_000;
const MAX_REFS_PER_USER: usize = 2_000;
/// Longest FileReference remembered (real ones are well under 200 bytes).
const MAX_REF_LEN: usize = 1024;

/// `[attachment_control]` compiled for one config generation: validated, recipient
/// certificates loaded (relative paths against `base_dir`, the config file's directory).
/// `Ok(None)` when disabled. Errors name `attachment_control.<field>`.
pub fn compile(
    cfg: &AttachmentControlConfig,
    base_dir: &Path,
) -> Result<Option<Arc<AttachmentControl>>, Vec<FieldError>> {
    cfg.validate()?;
    if !cfg.enabled {
        return Ok(None);
    }
    let mut recipients = Recipients::default();
    let mut errors = Vec::new();
    for (i, p) in cfg.encryption.recipients.iter().enumerate() {
        let path = if p.is_absolute() {
            p.clone()
        } else {
            base_dir.join(p)
        };
        let loaded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Recipients::from_pem(&bytes).map_err(|e| e.to_string()));
        match loaded {
            Ok(r) => recipients.extend(r),
            Err(message) => errors.push(FieldError {
                field: format!("attachment_control.encryption.recipients[{i}]"),
                message: format!("{}: {message}", path.display()),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let recipients = (!recipients.is_empty()).then(|| Arc::new(recipients));
    AttachmentControl::new(cfg, recipients).map(|c| Some(Arc::new(c)))
}

/// FileReferences of excluded attachments, per user (bounded: [`MAX_USERS`] users,
/// [`MAX_REFS_PER_USER`] references each, oldest forgotten first).
#[derive(Default)]
pub struct ExcludedRefs {
    users: parking_lot::Mutex<HashMap<String, UserRefs>>,
}

#[derive(Default)]
struct UserRefs {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl ExcludedRefs {
    /// Remembers `refs` for `user`.
    pub fn remember(&self, user: &str, refs: &[String]) {
        if refs.is_empty() {
            return;
        }
        let key = user.to_ascii_lowercase();
        let mut users = self.users.lock();
        if !users.contains_key(&key)
            && users.len() >= MAX_USERS
            && let Some(k) = users.keys().next().cloned()
        {
            users.remove(&k);
        }
        let u = users.entry(key).or_default();
        for r in refs.iter().take(MAX_REFS_PER_USER) {
            if r.len() > MAX_REF_LEN || u.set.contains(r) {
                continue;
            }
            if u.order.len() >= MAX_REFS_PER_USER
                && let Some(old) = u.order.pop_front()
            {
                u.set.remove(&old);
            }
            u.set.insert(r.clone());
            u.order.push_back(r.clone());
        }
    }

    /// True if `file_ref` was seen as an excluded attachment of `user`.
    pub fn contains(&self, user: &str, file_ref: &str) -> bool {
        self.users
            .lock()
            .get(&user.to_ascii_lowercase())
            .is_some_and(|u| u.set.contains(file_ref))
    }
}

/// What attachment control did to one request, for the audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditNote {
    /// remove | encrypt.
    pub action: &'static str,
    /// rewritten, unchanged, refused, blocked, oversize_delivered, replace_mime,
    /// sent_as_sendmail.
    pub outcome: &'static str,
    pub removed: u32,
    pub encrypted: u32,
    pub excluded: u32,
}

/// The attachment policy of one request that attachment control applies to.
#[derive(Debug, Clone)]
pub struct Plan {
    place: Place,
    label: &'static str,
    policy: Policy,
    on_oversize: OnOversize,
    user: String,
    attachment_name: String,
}

impl Plan {
    /// True for SmartForward / SmartReply (the request body is rewritten).
    pub fn rewrites_request(&self) -> bool {
        self.place == Place::ComposeRequest
    }

    /// True for Sync / Search / ItemOperations / GetAttachment (the response is filtered).
    pub fn rewrites_response(&self) -> bool {
        matches!(self.place, Place::Response | Place::GetAttachment)
    }

    fn action(&self) -> &'static str {
        match self.policy.decision {
            Decision::Deliver => "deliver",
            Decision::Remove => "remove",
            Decision::Encrypt(_) => "encrypt",
        }
    }

    fn note(&self, ex: &mut Option<Exchange>, outcome: &'static str, s: &Summary) {
        if let Some(ex) = ex.as_mut() {
            ex.attachments = Some(AuditNote {
                action: self.action(),
                outcome,
                removed: s.removed,
                encrypted: s.encrypted,
                excluded: s.excluded,
            });
        }
    }
}

/// The policy for a device request, or `None` when nothing is to be done (control off, a
/// command without attachments, or "deliver": the request streams untouched).
pub fn plan(rt: &Runtime, id: &DeviceIdentity, query: Option<&str>) -> Option<Plan> {
    let control = rt.attachments.as_ref()?;
    let command = id.command?;
    let place = Place::of(command);
    if place == Place::None {
        return None;
    }
    let policy = control.policy_for(Some(&id.device_type), id.user_agent.as_deref());
    if policy.decision.is_deliver() {
        return None;
    }
    let attachment_name = match place {
        Place::GetAttachment => query.and_then(attachment_name).unwrap_or_default(),
        _ => String::new(),
    };
    Some(Plan {
        place,
        label: label(command),
        policy,
        on_oversize: control.on_oversize,
        user: id.user.clone(),
        attachment_name,
    })
}

fn label(command: eas::Command) -> &'static str {
    use eas::Command as C;
    match command {
        C::Sync => "sync",
        C::Search => "search",
        C::ItemOperations => "itemoperations",
        C::GetAttachment => "getattachment",
        C::SmartForward => "smartforward",
        C::SmartReply => "smartreply",
        _ => "other",
    }
}

/// `AttachmentName` of a plain or base64 query.
fn attachment_name(query: &str) -> Option<String> {
    match eas::Query::parse(query).ok()? {
        eas::Query::Plain(p) => p.attachment_name,
        eas::Query::Base64(b) => b.attachment_name,
    }
}

/// Before forwarding: refuses a GetAttachment the policy removes (the server is not asked), and
/// asks the server for an unencoded body where the response will be rewritten.
pub fn before_forward(
    gw: &Gateway,
    plan: &Plan,
    headers: &mut HeaderMap,
    ex: &mut Option<Exchange>,
) -> Result<()> {
    if plan.place == Place::GetAttachment {
        let excluded = |r: &str| gw.excluded_refs.contains(&plan.user, r);
        if let Some(status) =
            wbxml_rewrite::get_attachment_precheck(&plan.attachment_name, &plan.policy, &excluded)
        {
            gw.metrics.attachment_event("removed", plan.label);
            let s = Summary {
                removed: 1,
                ..Summary::default()
            };
            plan.note(ex, "refused", &s);
            return Err(Error::AttachmentPolicy {
                status,
                reason: "GetAttachment refused: attachments are removed for this device".into(),
                blame: Blame::Config,
            });
        }
    }
    if plan.rewrites_response() {
        headers.remove(header::ACCEPT_ENCODING);
    }
    Ok(())
}

/// The bytes of a rewrite: the input itself when unchanged (no copy).
fn bytes_of(body: std::borrow::Cow<'_, [u8]>, input: &Bytes) -> Bytes {
    match body {
        std::borrow::Cow::Borrowed(_) => input.clone(),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    }
}

fn blame_of(e: &AttachmentError) -> Blame {
    match e.fault() {
        eas::Fault::Server => Blame::Server,
        eas::Fault::Device => Blame::Device,
        _ => Blame::Config,
    }
}

/// Outcome of reading a body whole.
enum Read {
    All(Bytes),
    /// Above the bound: the bytes read so far (the rest is still in the body).
    Over(Bytes),
    Failed(std::io::Error),
    Silent,
}

/// Reads `body` to its end, at most `cap` bytes, each frame within `silence`.
async fn read_all<B>(body: &mut B, cap: usize, silence: Duration) -> Read
where
    B: http_body::Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    let hint = body.size_hint().exact().unwrap_or(0);
    let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0).min(cap));
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(silence, body.frame()).await {
            Err(_) => return Read::Silent,
            Ok(None) => break,
            Ok(Some(Err(e))) => return Read::Failed(e),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > cap {
            return Read::Over(buf.freeze());
        }
    }
    Read::All(buf.freeze())
}

/// SmartForward / SmartReply: reads the device's body whole (bounded), rewrites it so the server
/// sends only the MIME the device composed, and retargets a 12.x request to SendMail. A request
/// that cannot be made safe (too large, unparsable) is refused, never forwarded.
#[allow(clippy::too_many_arguments)]
pub async fn compose_request(
    gw: &Gateway,
    plan: &Plan,
    parts: &mut http::request::Parts,
    mut body: DeviceBody,
    limit: u64,
    silence: Duration,
    bytes_in: Option<Arc<AtomicU64>>,
    ex: &mut Option<Exchange>,
) -> Result<(UpBody, LongPoll, Option<Bytes>)> {
    let cap = plan
        .policy
        .max_body_bytes
        .min(usize::try_from(limit).unwrap_or(usize::MAX));
    let whole = match read_all(&mut body, cap, silence).await {
        Read::All(b) => b,
        Read::Over(_) => {
            gw.metrics.attachment_event("blocked", plan.label);
            plan.note(ex, "blocked", &Summary::default());
            if plan.policy.max_body_bytes as u64 >= limit {
                return Err(Error::BodyTooLarge { limit });
            }
            return Err(Error::AttachmentPolicy {
                status: BLOCKED_STATUS,
                reason: format!(
                    "{} body above max_body_bytes ({}) cannot be checked",
                    plan.label, plan.policy.max_body_bytes
                ),
                blame: Blame::Device,
            });
        }
        // 408 when the body passed its deadline, 400 otherwise.
        Read::Failed(e) => return Err(Error::device_body(&e)),
        Read::Silent => {
            return Err(Error::DeviceBody {
                reason: format!("no request body bytes for {silence:?}"),
            });
        }
    };
    let rfc822 = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..14)
                .is_some_and(|p| p.eq_ignore_ascii_case("message/rfc822"))
        });
    let started = Instant::now();
    let rewritten = if rfc822 {
        compose::rfc822_compose(&whole, &plan.policy, STRIP_DEVICE_ATTACHMENTS)
            .map(|(r, retarget)| (bytes_of(r.body, &whole), r.summary, retarget))
    } else {
        compose::rewrite_compose_request(
            &whole,
            &plan.policy,
            COMPOSE_FIX,
            STRIP_DEVICE_ATTACHMENTS,
        )
        .map(|r| (bytes_of(r.body, &whole), r.summary, r.retarget_to_sendmail))
    };
    let retargeted = match rewritten {
        Ok((b, s, true)) => compose::retarget_query_to_sendmail(parts.uri.query().unwrap_or(""))
            .and_then(|q| {
                format!("{}?{q}", parts.uri.path())
                    .parse::<http::Uri>()
                    .map_err(|_| AttachmentError::Refused {
                        command: "SmartForward/SmartReply",
                        reason: "retargeted query is not a valid URI",
                    })
            })
            .map(|uri| (b, s, Some(uri))),
        Ok((b, s, false)) => Ok((b, s, None)),
        Err(e) => Err(e),
    };
    let (new_body, summary, uri) = match retargeted {
        Ok(v) => v,
        Err(e) => {
            gw.metrics.attachment_event("blocked", plan.label);
            plan.note(ex, "blocked", &Summary::default());
            return Err(Error::AttachmentPolicy {
                status: BLOCKED_STATUS,
                reason: e.to_string(),
                blame: blame_of(&e),
            });
        }
    };
    let outcome = match uri {
        Some(u) => {
            parts.uri = u;
            "sent_as_sendmail"
        }
        None => "replace_mime",
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(new_body.len()));
    gw.metrics.attachment_rewrite(
        plan.label,
        summary.removed,
        summary.encrypted,
        summary.excluded,
        started.elapsed(),
    );
    plan.note(ex, outcome, &summary);
    Ok((
        UpBody::new(Some(new_body.clone()), None, limit, silence, bytes_in),
        LongPoll::No,
        Some(new_body),
    ))
}

/// The result of [`filter_response`].
pub enum Filtered {
    /// Not for attachment control (an error status, an empty body) or delivered unchecked by
    /// `on_oversize = "deliver"`: the normal streaming path sends it.
    Pass(Response<ServerBody>, Reuse),
    /// The answer to send (rewritten, or the unchecked body streamed after its first bytes).
    Done(Box<Response<RespBody>>),
}

/// Filters a response the plan applies to (see the module doc).
pub async fn filter_response(
    gw: &Gateway,
    rt: &Runtime,
    plan: &Plan,
    resp: Response<ServerBody>,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
) -> Result<Filtered> {
    if resp.status() != StatusCode::OK || resp.body().is_end_stream() {
        return Ok(Filtered::Pass(resp, reuse));
    }
    let encoded = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return unchecked(
            gw,
            rt,
            plan,
            resp,
            None,
            reuse,
            ex,
            "content-encoded".into(),
        );
    }
    let cap = plan.policy.max_body_bytes;
    if resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > cap as u64)
    {
        let reason = format!("body above max_body_bytes ({cap})");
        return unchecked(gw, rt, plan, resp, None, reuse, ex, reason);
    }
    let (parts, mut body) = resp.into_parts();
    let silence = rt.timeouts.socket_read_write;
    let server = reuse.server.clone();
    let whole = match read_all(&mut body, cap, silence).await {
        // The connection went home when the body ended.
        Read::All(b) => b,
        Read::Over(prefix) => {
            let resp = Response::from_parts(parts, body);
            let reason = format!("body above max_body_bytes ({cap})");
            return unchecked(gw, rt, plan, resp, Some(prefix), reuse, ex, reason);
        }
        Read::Failed(reason) => {
            let reason = reason.to_string();
            let e = Error::AttachmentPolicy {
                status: 502,
                reason: format!("server {} response body failed: {reason}", server.addr),
                blame: Blame::Server,
            };
            server.record_failure(&rt.servers, &e);
            return Err(e);
        }
        Read::Silent => {
            let e = Error::ResponseTimeout {
                server: server.addr.clone(),
                timeout: silence,
            };
            server.record_failure(&rt.servers, &e);
            return Err(e);
        }
    };

    let excluded = |r: &str| gw.excluded_refs.contains(&plan.user, r);
    let started = Instant::now();
    let mut parts = parts;
    let result: std::result::Result<(Bytes, Summary), AttachmentError> = match plan.place {
        Place::GetAttachment => {
            wbxml_rewrite::get_attachment(&whole, &plan.attachment_name, &plan.policy, &excluded)
                .and_then(|(outcome, summary)| match outcome {
                    GetAttachmentOutcome::Deliver(b) => Ok((bytes_of(b, &whole), summary)),
                    GetAttachmentOutcome::Encrypted { body, content_type } => {
                        parts
                            .headers
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                        // The server's name is the plaintext's (e.g. report.pdf); the device knows the
                        // attachment as `<name>.p7m` from the rewritten metadata.
                        parts.headers.remove(header::CONTENT_DISPOSITION);
                        Ok((Bytes::from(body), summary))
                    }
                    GetAttachmentOutcome::Refuse { .. } => Err(AttachmentError::Refused {
                        command: "GetAttachment",
                        reason: "attachments are removed for this device",
                    }),
                })
        }
        _ => {
            let multipart = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("multipart"));
            let r = if multipart {
                wbxml_rewrite::rewrite_multipart(&whole, &plan.policy, &excluded)
            } else {
                wbxml_rewrite::rewrite_response(&whole, &plan.policy, &excluded)
            };
            r.map(|rw| (bytes_of(rw.body, &whole), rw.summary))
        }
    };
    let took = started.elapsed();
    match result {
        Ok((out, summary)) => {
            gw.excluded_refs
                .remember(&plan.user, &summary.excluded_refs);
            gw.metrics.attachment_rewrite(
                plan.label,
                summary.removed,
                summary.encrypted,
                summary.excluded,
                took,
            );
            let outcome = if summary.changed() {
                "rewritten"
            } else {
                "unchanged"
            };
            plan.note(ex, outcome, &summary);
            Ok(Filtered::Done(Box::new(local(
                rt,
                parts,
                out,
                &server.label,
                ex,
            ))))
        }
        Err(AttachmentError::Refused { .. }) if plan.place == Place::GetAttachment => {
            gw.metrics.attachment_event("removed", plan.label);
            let s = Summary {
                removed: 1,
                ..Summary::default()
            };
            plan.note(ex, "refused", &s);
            Err(Error::AttachmentPolicy {
                status: wbxml_rewrite::GET_ATTACHMENT_REFUSED_STATUS,
                reason: "GetAttachment refused: attachments are removed for this device".into(),
                blame: Blame::Config,
            })
        }
        Err(e) if e.applies_on_oversize() && plan.on_oversize == OnOversize::Deliver => {
            gw.metrics
                .attachment_event("oversize_delivered", plan.label);
            plan.note(ex, "oversize_delivered", &Summary::default());
            tracing::warn!(command = plan.label, error = %e, "attachment control: body delivered unchecked (on_oversize = \"deliver\")");
            Ok(Filtered::Done(Box::new(local(
                rt,
                parts,
                whole,
                &server.label,
                ex,
            ))))
        }
        Err(e) => {
            gw.metrics.attachment_event("blocked", plan.label);
            plan.note(ex, "blocked", &Summary::default());
            Err(Error::AttachmentPolicy {
                status: BLOCKED_STATUS,
                reason: format!("{} response not passed: {e}", plan.label),
                blame: blame_of(&e),
            })
        }
    }
}

/// A body the gateway could not check (too large, encoded, unparsable): `on_oversize` decides.
#[allow(clippy::too_many_arguments)]
fn unchecked(
    gw: &Gateway,
    rt: &Runtime,
    plan: &Plan,
    resp: Response<ServerBody>,
    prefix: Option<Bytes>,
    reuse: Reuse,
    ex: &mut Option<Exchange>,
    reason: String,
) -> Result<Filtered> {
    if plan.on_oversize == OnOversize::Block {
        gw.metrics.attachment_event("oversize_blocked", plan.label);
        plan.note(ex, "blocked", &Summary::default());
        return Err(Error::AttachmentPolicy {
            status: BLOCKED_STATUS,
            reason: format!(
                "{} response not passed ({reason}; on_oversize = \"block\")",
                plan.label
            ),
            blame: Blame::Server,
        });
    }
    gw.metrics
        .attachment_event("oversize_delivered", plan.label);
    plan.note(ex, "oversize_delivered", &Summary::default());
    tracing::warn!(command = plan.label, %reason, "attachment control: body delivered unchecked (on_oversize = \"deliver\")");
    let Some(head) = prefix else {
        return Ok(Filtered::Pass(resp, reuse));
    };
    let (mut parts, rest) = resp.into_parts();
    filter_headers(rt, &mut parts.headers);
    let body = crate::proxy::stream_down(rt, parts.status, rest, reuse, ex)?;
    Ok(Filtered::Done(Box::new(Response::from_parts(
        parts,
        RespBody::Prefixed {
            head: Some(head),
            body,
        },
    ))))
}

/// Hop-by-hop headers removed and protocol versions held to the limit, as for streamed
/// responses.
fn filter_headers(rt: &Runtime, headers: &mut HeaderMap) {
    forward::strip_hop_by_hop(headers);
    if let Some(limit) = crate::versions::limit(rt) {
        crate::versions::filter_response_headers(headers, limit, false);
    }
}

/// The rewritten answer, with its exact `Content-Length`; the audit record gets the status,
/// server and size (it is written when the request ends).
fn local(
    rt: &Runtime,
    mut parts: http::response::Parts,
    body: Bytes,
    server: &Arc<str>,
    ex: &mut Option<Exchange>,
) -> Response<RespBody> {
    filter_headers(rt, &mut parts.headers);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(ex) = ex.as_mut() {
        ex.status = parts.status.as_u16();
        ex.server = Some(server.clone());
        ex.bytes_out = body.len() as u64;
    }
    Response::from_parts(parts, RespBody::Local { data: Some(body) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_refs_are_bounded_per_user() {
        let refs = ExcludedRefs::default();
        let many: Vec<String> = (0..MAX_REFS_PER_USER + 10)
            .map(|i| format!("mail/INBOX/{i}/2"))
            .collect();
        refs.remember("Alice", &many[..MAX_REFS_PER_USER]);
        refs.remember("alice", &many[MAX_REFS_PER_USER..]);
        assert!(refs.contains("ALICE", &many[MAX_REFS_PER_USER + 9]));
        assert!(!refs.contains("alice", &many[0]), "oldest forgotten");
        assert!(!refs.contains("bob", &many[20]));
        refs.remember("alice", &["x".repeat(MAX_REF_LEN + 1)]);
        assert!(!refs.contains("alice", &"x".repeat(MAX_REF_LEN + 1)));
    }

    #[test]
    fn attachment_name_from_both_query_forms() {
        assert_eq!(
            attachment_name(
                "Cmd=GetAttachment&AttachmentName=mail%2FINBOX%2F2%2F2&User=u&DeviceId=D&DeviceType=iPhone"
            )
            .as_deref(),
            Some("mail/INBOX/2/2")
        );
        assert_eq!(
            attachment_name("Cmd=Sync&User=u&DeviceId=D&DeviceType=x"),
            None
        );
    }
}
