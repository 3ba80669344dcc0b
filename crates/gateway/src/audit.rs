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
use tokio::time::Instant;

use crate::state::Gateway;

pub mod sink;

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
    /// Who the request was, once identified: the association gets the final status, and the
    /// `response` line takes its facts from here instead of parsing the query again.
    pub device: Option<Arc<crate::identity::DeviceIdentity>>,
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
        if !sink::enabled() {
            return;
        }
        sink::emit(|b| {
            b.extend_from_slice(b"{\"event\":\"request\",\"time\":\"");
            push_time(b);
            b.extend_from_slice(b"\",\"use_case_id\":\"");
            self.push_use_case_id(b);
            b.extend_from_slice(b"\",\"request_id\":\"");
            self.push_request_id(b);
            b.extend_from_slice(b"\",\"client\":");
            push_ip(b, &self.client);
            b.extend_from_slice(b",\"user\":");
            push_str(b, &id.user);
            b.extend_from_slice(b",\"user_key\":");
            push_str(b, &id.key.user);
            b.extend_from_slice(b",\"user_source\":\"");
            b.extend_from_slice(id.source.as_str().as_bytes());
            b.extend_from_slice(b"\",\"device_id\":");
            push_str(b, &id.device_id);
            b.extend_from_slice(b",\"device_type\":");
            push_str(b, &id.device_type);
            b.extend_from_slice(b",\"command\":");
            push_str(b, &id.command_name);
            b.extend_from_slice(b",\"protocol_version\":");
            push_opt(b, id.version.map(eas::ProtocolVersion::as_str));
            b.extend_from_slice(b",\"service\":");
            push_str(b, self.service.as_ref().map_or("-", |s| s.name.as_str()));
            b.extend_from_slice(b",\"action\":\"");
            b.extend_from_slice(self.action.as_str().as_bytes());
            b.extend_from_slice(b"\",\"rule\":");
            push_str(b, self.rule);
            b.extend_from_slice(if self.would_block {
                b",\"would_block\":true}"
            } else {
                b",\"would_block\":false}"
            });
        });
    }

    /// `{boot:x}-{conn_id:x}-{seq}`, as [`Exchange::use_case_id`].
    fn push_use_case_id(&self, b: &mut Vec<u8>) {
        push_hex(b, boot_id());
        b.push(b'-');
        self.push_request_id(b);
    }

    /// `{conn_id:x}-{seq}`.
    fn push_request_id(&self, b: &mut Vec<u8>) {
        push_hex(b, self.conn_id);
        push_num(b, b"-", u64::from(self.seq));
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let service = self.service.as_ref().map_or("-", |s| s.name.as_str());
        let server = self.server.as_deref().unwrap_or("-");
        self.gw
            .metrics
            .request_finished(service, server, self.status, self.command, elapsed);
        if let Some(who) = &self.device {
            self.gw
                .access
                .record_response_key(&who.key, self.status, self.server.as_deref());
        }
        if !sink::enabled() {
            return;
        }
        // Requests refused before they were identified: what the query says.
        let facts = match &self.device {
            Some(_) => crate::activesync::QueryFacts::default(),
            None => crate::activesync::query_facts(self.uri.query()),
        };
        let (user, device_id, device_type, command) = match &self.device {
            Some(w) => (
                Some(std::borrow::Cow::Borrowed(w.user.as_str())),
                Some(w.device_id.as_str()),
                Some(w.device_type.as_str()),
                w.command_name.as_str(),
            ),
            None => (
                facts
                    .user
                    .as_deref()
                    .map(std::borrow::Cow::Borrowed)
                    .or_else(|| {
                        self.authorization
                            .as_ref()
                            .and_then(basic_user)
                            .map(std::borrow::Cow::Owned)
                    }),
                facts.device_id.as_deref(),
                facts.device_type.as_deref(),
                facts.command.as_deref().unwrap_or(self.command),
            ),
        };
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        sink::emit(|b| {
            b.extend_from_slice(b"{\"event\":\"response\",\"use_case_id\":\"");
            self.push_use_case_id(b);
            b.extend_from_slice(b"\",\"rule\":");
            push_str(b, self.rule);
            b.extend_from_slice(b",\"time\":\"");
            push_time(b);
            b.extend_from_slice(b"\",\"request_id\":\"");
            self.push_request_id(b);
            b.extend_from_slice(b"\",\"client\":");
            push_ip(b, &self.client);
            b.extend_from_slice(b",\"user\":");
            push_opt(b, user.as_deref());
            b.extend_from_slice(b",\"device_id\":");
            push_opt(b, device_id);
            b.extend_from_slice(b",\"device_type\":");
            push_opt(b, device_type);
            b.extend_from_slice(b",\"command\":");
            push_str(b, command);
            b.extend_from_slice(b",\"service\":");
            push_str(b, service);
            b.extend_from_slice(b",\"server\":");
            push_str(b, server);
            push_num(b, b",\"status\":", u64::from(self.status));
            push_num(b, b",\"bytes_in\":", bytes_in);
            push_num(b, b",\"bytes_out\":", self.bytes_out);
            push_num(b, b",\"duration_ms\":", elapsed.as_millis() as u64);
            b.extend_from_slice(b",\"action\":\"");
            b.extend_from_slice(self.action.as_str().as_bytes());
            b.push(b'"');
            if let Some(note) = &self.attachments {
                b.extend_from_slice(b",\"attachments\":");
                if serde_json::to_writer(&mut *b, note).is_err() {
                    b.extend_from_slice(b"null");
                }
            }
            b.push(b'}');
        });
    }
}

/// A JSON string (escaped as serde_json does).
fn push_str(b: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b'"');
    let bytes = s.as_bytes();
    // Most values (user, DeviceId, names) need no escaping: copied in one go.
    if bytes.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
        b.extend_from_slice(bytes);
        b.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                b.extend_from_slice(&bytes[start..i]);
                b.extend_from_slice(b"\\u00");
                b.push(HEX[usize::from(c >> 4)]);
                b.push(HEX[usize::from(c & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        b.extend_from_slice(&bytes[start..i]);
        b.extend_from_slice(esc);
        start = i + 1;
    }
    b.extend_from_slice(&bytes[start..]);
    b.push(b'"');
}

fn push_opt(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(b, s),
        None => b.extend_from_slice(b"null"),
    }
}

/// A client address, quoted (no JSON escaping needed). IPv4, the common case, is built in a
/// stack buffer and copied once.
fn push_ip(b: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0u8; 17];
            out[0] = b'"';
            let mut i = 1;
            for (k, o) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    out[i] = b'.';
                    i += 1;
                }
                if o >= 100 {
                    out[i] = b'0' + o / 100;
                    i += 1;
                }
                if o >= 10 {
                    out[i] = b'0' + o / 10 % 10;
                    i += 1;
                }
                out[i] = b'0' + o % 10;
                i += 1;
            }
            out[i] = b'"';
            b.extend_from_slice(&out[..=i]);
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            let _ = write!(b, "\"{ip}\"");
        }
    }
}

/// Lowercase hex without leading zeros, as `{:x}`.
fn push_hex(b: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&digits[i..]);
}

fn push_num(b: &mut Vec<u8>, key: &[u8], n: u64) {
    b.extend_from_slice(key);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&digits[i..]);
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
fn push_time(b: &mut Vec<u8>) {
    push_time_at(
        b,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    );
}

/// `d` after the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn push_time_at(b: &mut Vec<u8>, d: std::time::Duration) {
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
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let ms = u64::from(d.subsec_millis());
    let fields = [
        year / 100,
        year % 100,
        month as u64,
        day as u64,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    ];
    // YYYY-MM-DDTHH:MM:SS.mmmZ, built in place and copied once.
    let mut out = *b"0000-00-00T00:00:00.000Z";
    for (at, v) in [0, 2, 5, 8, 11, 14, 17].into_iter().zip(fields) {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    }
    out[20] = b'0' + (ms / 100 % 10) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    b.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_as_serde_json() {
        for s in [
            "",
            "plain",
            "quote\" back\\slash",
            "ctl\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}",
            "ünïcödé ✓ 😀",
            "</script>",
        ] {
            let mut b = Vec::new();
            push_str(&mut b, s);
            assert_eq!(
                String::from_utf8(b).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        let mut b = Vec::new();
        push_num(&mut b, b"", 0);
        push_num(&mut b, b",", u64::MAX);
        assert_eq!(b, format!("0,{}", u64::MAX).into_bytes());
        for n in [0u64, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            let mut b = Vec::new();
            push_hex(&mut b, n);
            assert_eq!(b, format!("{n:x}").into_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.30.255",
            "255.255.255.255",
            "1.22.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut b = Vec::new();
            push_ip(&mut b, &ip);
            assert_eq!(b, format!("\"{ip}\"").into_bytes());
        }
    }

    #[test]
    fn basic_user_only() {
        let v = HeaderValue::from_static("Basic dXNlcjE6c2VjcmV0"); // user1:secret
        assert_eq!(basic_user(&v).as_deref(), Some("user1"));
        assert_eq!(basic_user(&HeaderValue::from_static("NTLM abc")), None);
        assert_eq!(basic_user(&HeaderValue::from_static("Basic")), None);
    }

    #[test]
    fn time_format() {
        let mut b = Vec::new();
        push_time(&mut b);
        let t = String::from_utf8(b).unwrap();
        assert_eq!(t.len(), 24);
        assert!(t.starts_with("20"));
        for (secs, ms, want) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.007Z"),
            (1_795_651_199, 999, "2026-11-25T23:59:59.999Z"),
            (4_107_542_400, 120, "2100-03-01T00:00:00.120Z"),
        ] {
            let mut b = Vec::new();
            push_time_at(&mut b, std::time::Duration::from_millis(secs * 1000 + ms));
            assert_eq!(String::from_utf8(b).unwrap(), want);
        }
    }
}
