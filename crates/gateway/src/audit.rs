//! JSON audit lines on the tracing target `easgate::audit`: a `request` line once the access
//! decision is made (device requests), and a `response` line when the request is over (response
//! body sent, failed or abandoned) with the final status, byte counts and duration. Both carry
//! the same `use_case_id`, the access decision (`ALLOW` / `BLOCK` / `WIPE`) and its rule. The query is parsed for user and device only when the line is
//! actually written; credentials never are (only the Basic user name, when the query has none).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderValue, Uri};
use serde::Serialize;
use tokio::time::Instant;

use crate::state::Gateway;

/// The decision of the access stage (`ALLOW` / `BLOCK` / `WIPE`).
pub use crate::access::Action;

/// Distinguishes this process's use-case ids from an earlier run's (start time, seconds).
fn boot_id() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// One request from accept to the end of its response. Dropping it records metrics and writes the
/// audit line, so every path (success, error, device hang-up) is logged exactly once.
pub struct Exchange {
    gw: Arc<Gateway>,
    pub conn_id: u64,
    pub seq: u32,
    pub start: Instant,
    pub client: IpAddr,
    pub uri: Uri,
    /// Kept only to name a Basic user when the query has no `User`; never logged as is.
    pub authorization: Option<HeaderValue>,
    pub command: &'static str,
    pub service: Option<Arc<crate::model::ServiceModel>>,
    pub server: Option<Arc<str>>,
    pub status: u16,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: u64,
    pub action: Action,
    /// The access rule (`unregistered_allowed`, `listed_blocked`, …; `-` for OPTIONS/refused).
    pub rule: &'static str,
    /// Report-only: enforce mode would have blocked or wiped.
    pub would_block: bool,
    /// `(user, DeviceId)` once identified: the association gets the final status.
    pub device: Option<(String, String)>,
    /// What attachment control did to this request (issue 5), when it applied.
    pub attachments: Option<crate::attachments::AuditNote>,
}

impl Exchange {
    pub fn new(
        gw: Arc<Gateway>,
        conn_id: u64,
        seq: u32,
        client: IpAddr,
        uri: Uri,
        command: &'static str,
    ) -> Self {
        gw.metrics.request_started();
        Self {
            gw,
            conn_id,
            seq,
            start: Instant::now(),
            client,
            uri,
            authorization: None,
            command,
            service: None,
            server: None,
            status: 0,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            action: Action::Allow,
            rule: "-",
            would_block: false,
            device: None,
            attachments: None,
        }
    }

    /// Pairs this request's `request` and `response` audit lines.
    pub fn use_case_id(&self) -> String {
        format!("{:x}-{:x}-{}", boot_id(), self.conn_id, self.seq)
    }

    /// Writes the `request` line (after the access decision).
    pub fn log_request(&self, id: &crate::identity::DeviceIdentity) {
        if !tracing::enabled!(target: "easgate::audit", tracing::Level::INFO) {
            return;
        }
        let line = RequestLine {
            event: "request",
            time: rfc3339_now(),
            use_case_id: self.use_case_id(),
            request_id: format!("{:x}-{}", self.conn_id, self.seq),
            client: self.client,
            user: &id.user,
            device_id: &id.device_id,
            device_type: &id.device_type,
            command: &id.command_name,
            protocol_version: id.version.map(eas::ProtocolVersion::as_str),
            service: self.service.as_ref().map_or("-", |s| s.name.as_str()),
            action: self.action,
            rule: self.rule,
            would_block: self.would_block,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            tracing::info!(target: "easgate::audit", "{json}");
        }
    }
}

#[derive(Serialize)]
struct RequestLine<'a> {
    event: &'static str,
    time: String,
    use_case_id: String,
    request_id: String,
    client: IpAddr,
    user: &'a str,
    device_id: &'a str,
    device_type: &'a str,
    command: &'a str,
    protocol_version: Option<&'static str>,
    service: &'a str,
    action: Action,
    rule: &'static str,
    would_block: bool,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let service = self.service.as_ref().map_or("-", |s| s.name.as_str());
        let server = self.server.as_deref().unwrap_or("-");
        self.gw
            .metrics
            .request_finished(service, server, self.status, self.command, elapsed);
        if let Some((user, device)) = &self.device {
            self.gw
                .access
                .record_response(user, device, self.status, self.server.as_deref());
        }
        if !tracing::enabled!(target: "easgate::audit", tracing::Level::INFO) {
            return;
        }
        let facts = crate::activesync::query_facts(self.uri.query());
        let user = facts
            .user
            .or_else(|| self.authorization.as_ref().and_then(basic_user));
        let line = Line {
            event: "response",
            use_case_id: self.use_case_id(),
            rule: self.rule,
            time: rfc3339_now(),
            request_id: format!("{:x}-{}", self.conn_id, self.seq),
            client: self.client,
            user: user.as_deref(),
            device_id: facts.device_id.as_deref(),
            device_type: facts.device_type.as_deref(),
            command: facts.command.as_deref().unwrap_or(self.command),
            service,
            server,
            status: self.status,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
            duration_ms: elapsed.as_millis() as u64,
            action: self.action,
            attachments: self.attachments.as_ref(),
        };
        if let Ok(json) = serde_json::to_string(&line) {
            tracing::info!(target: "easgate::audit", "{json}");
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    event: &'static str,
    use_case_id: String,
    rule: &'static str,
    time: String,
    request_id: String,
    client: IpAddr,
    user: Option<&'a str>,
    device_id: Option<&'a str>,
    device_type: Option<&'a str>,
    command: &'a str,
    service: &'a str,
    server: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<&'a crate::attachments::AuditNote>,
}

/// The user name of a Basic `Authorization` (the password is dropped here).
fn basic_user(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    let rest = b
        .get(6..)
        .filter(|_| b.len() > 6 && b[..6].eq_ignore_ascii_case(b"basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let user = decoded.split(|c| *c == b':').next()?;
    Some(String::from_utf8_lossy(user).into_owned())
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to civil date (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_user_only() {
        let v = HeaderValue::from_static("Basic dXNlcjE6c2VjcmV0"); // user1:secret
        assert_eq!(basic_user(&v).as_deref(), Some("user1"));
        assert_eq!(basic_user(&HeaderValue::from_static("NTLM abc")), None);
        assert_eq!(basic_user(&HeaderValue::from_static("Basic")), None);
    }

    #[test]
    fn time_format() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24);
        assert!(t.starts_with("20"));
    }
}
