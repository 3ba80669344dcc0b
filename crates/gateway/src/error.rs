//! The gateway's one error type. Every variant carries the value that failed, says whether the
//! request may be retried on another server (only when provably nothing was sent) and whose fault
//! it is, so the proxy picks the status in one place ([`Error::status`]) and health accounting
//! knows which failures count against a server.

use std::time::Duration;

use http::StatusCode;

use crate::model::ServerAddr;

/// Who caused a failure: decides the log level and whether a server's health suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The device sent something we refuse (bad path, too large, too slow).
    Device,
    /// A server failed (connect, TLS, reset, timeout).
    Server,
    /// The gateway's own configuration (service disabled, unusable server name).
    Config,
}

/// Everything that can go wrong on the request path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not an ActiveSync endpoint: the gateway is not an open proxy.
    #[error("not an ActiveSync path: {path}")]
    NotActiveSync { path: String },

    /// `activesync.enabled = false`.
    #[error("ActiveSync is disabled")]
    ActiveSyncDisabled,

    /// Request body larger than `limits.max_request_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },

    /// The device stopped sending its request body for longer than the socket timeout, or the
    /// body stream broke.
    #[error("device request body failed: {reason}")]
    DeviceBody { reason: String },

    /// The device's request body was not complete within `advanced.device_body_timeout_ms`
    /// although bytes kept coming (a trickle that the silence timeout never catches): 408.
    #[error("request body not complete within {timeout:?}")]
    DeviceBodyTimeout { timeout: Duration },

    /// No server of the service is live (or none could be connected to).
    #[error("no live server for service {service}")]
    NoLiveServer {
        service: String,
        retry_after: Duration,
    },

    /// TCP connect to a server failed (refused, unreachable). Nothing was sent.
    #[error("connect to {server} failed: {source}")]
    Connect {
        server: ServerAddr,
        source: std::io::Error,
    },

    /// TCP + TLS connect did not finish within `server_connection_timeout`.
    #[error("connect to {server} timed out after {timeout:?}")]
    ConnectTimeout {
        server: ServerAddr,
        timeout: Duration,
    },

    /// TLS handshake with a server failed (certificate, name, protocol). Nothing was sent.
    #[error("TLS to {server} failed: {reason}")]
    ServerTls { server: ServerAddr, reason: String },

    /// The server host is not a valid TLS server name.
    #[error("server name {name} is not valid for TLS")]
    InvalidServerName { name: String },

    /// A server connection could not take the request (closed before any of it was written).
    /// Nothing was sent.
    #[error("server connection to {server} closed before the request: {source}")]
    Handshake {
        server: ServerAddr,
        source: std::io::Error,
    },

    /// The server connection broke after request bytes went out, or the server answered
    /// something that is not HTTP/1.1: never resent.
    #[error("server {server} failed after the request was sent: {source}")]
    Upstream {
        server: ServerAddr,
        source: std::io::Error,
    },

    /// The server stopped taking the request body part-way (a server refusing an upload it
    /// finds too large answers and closes). Not counted against the server's health: one device
    /// must not be able to mark a server dead with its uploads.
    #[error("server {server} stopped reading the request body: {source}")]
    UploadRefused {
        server: ServerAddr,
        source: std::io::Error,
    },

    /// A device request head or framing the gateway refuses to interpret (smuggling-prone or
    /// malformed): 400, never forwarded.
    #[error("malformed request: {reason}")]
    BadRequest { reason: String },

    /// A request head above `limits.max_header_bytes` (or with too many header lines): 431.
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },

    /// The device started a request but did not finish its head within the device request
    /// timeout: 408.
    #[error("request head not complete within the device request timeout")]
    RequestHeadTimeout,

    /// No response headers within the response timeout (long polls: heartbeat + margin).
    #[error("server {server} sent no response within {timeout:?}")]
    ResponseTimeout {
        server: ServerAddr,
        timeout: Duration,
    },

    // --- ActiveSync awareness (identity, access, redirects) ---
    /// The request does not say which device it is, or says it malformed (query or headers).
    #[error("request refused: {source}")]
    Identity { source: eas::EasError },

    /// A device request that names no user (no `User` parameter, no Basic login): the access
    /// list is keyed by user, so it cannot be evaluated — refused (fail closed).
    #[error("request names no user (no User parameter and no Basic login)")]
    NoUser,

    /// The query's `User=` names someone other than the user the credential names (after
    /// [`crate::access::UserNaming::key`]): 400, never forwarded — the access decision keys on
    /// who authenticates, and the two must agree.
    #[error("User {claimed:?} is not the authenticated user {login:?}")]
    UserMismatch { login: String, claimed: String },
    /// A credential that names no user the gateway can read (Kerberos, an opaque Bearer token)
    /// while `device_access.opaque_credentials = "refuse"`: 403, never forwarded.
    #[error(
        "{scheme} credentials name no user the gateway can read (device_access.opaque_credentials = refuse)"
    )]
    OpaqueCredentials { scheme: String },
    /// The device is blocked (`device_access.blocked_response`, 403 or 456).
    #[error("device blocked by rule {rule}")]
    Blocked { status: u16, rule: &'static str },

    /// A server answered 451 with an `X-MS-Location` outside the service's servers and
    /// `activesync.redirect_allowed_hosts`: not followed, not passed on.
    #[error("server {server} redirected to {location}, which is not an allowed host")]
    RedirectRefused { server: String, location: String },

    /// Attachment control (issue 5) refused a body it could not check (too large, unparsable,
    /// encryption failed), a request it cannot make safe, or a fetch its policy removes.
    #[error("attachment control: {reason}")]
    AttachmentPolicy {
        status: u16,
        reason: String,
        blame: Blame,
    },

    /// The device access state (management API, state file).
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),

    // --- Control plane (config, management API, process lifecycle) ---
    /// A config failed validation; every problem is listed (the management API answers 422).
    #[error("invalid config: {}", crate::validate::FieldError::join(errors))]
    InvalidConfig {
        errors: Vec<crate::validate::FieldError>,
    },

    /// Saving the config file failed; the previous config stays in force.
    #[error("cannot save config to {}: {source}", path.display())]
    ConfigSave {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    /// A listener could not be bound (address in use, no permission for a low port).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },

    /// A signal handler could not be installed.
    #[error("cannot handle {name}: {source}")]
    Signal {
        name: &'static str,
        source: std::io::Error,
    },
    /// The device worker threads could not be started.
    #[error("cannot start the device worker threads: {0}")]
    Workers(std::io::Error),
}

impl Error {
    /// True when nothing reached a server, so the same request may go to the next live one.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::ServerTls { .. }
                | Error::Handshake { .. }
        )
    }

    /// Whose fault it is.
    pub fn blame(&self) -> Blame {
        match self {
            Error::NotActiveSync { .. }
            | Error::BodyTooLarge { .. }
            | Error::DeviceBody { .. }
            | Error::DeviceBodyTimeout { .. }
            | Error::Identity { .. }
            | Error::NoUser
            | Error::UserMismatch { .. }
            | Error::OpaqueCredentials { .. }
            | Error::BadRequest { .. }
            | Error::HeadTooLarge { .. }
            | Error::RequestHeadTimeout
            | Error::UploadRefused { .. }
            | Error::Blocked { .. } => Blame::Device,
            Error::Access(e) => match e.fault() {
                crate::access::Fault::Client => Blame::Device,
                crate::access::Fault::Host => Blame::Config,
            },
            Error::RedirectRefused { .. } => Blame::Config,
            Error::AttachmentPolicy { blame, .. } => *blame,
            Error::ActiveSyncDisabled
            | Error::InvalidServerName { .. }
            | Error::InvalidConfig { .. }
            | Error::ConfigSave { .. }
            | Error::Bind { .. }
            | Error::Signal { .. }
            | Error::Workers(_) => Blame::Config,
            Error::NoLiveServer { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::ServerTls { .. }
            | Error::Handshake { .. }
            | Error::Upstream { .. }
            | Error::ResponseTimeout { .. } => Blame::Server,
        }
    }

    /// The server this error is about, if any (for health accounting and logs).
    pub fn server(&self) -> Option<&ServerAddr> {
        match self {
            Error::Connect { server, .. }
            | Error::ConnectTimeout { server, .. }
            | Error::ServerTls { server, .. }
            | Error::Handshake { server, .. }
            | Error::Upstream { server, .. }
            | Error::UploadRefused { server, .. }
            | Error::ResponseTimeout { server, .. } => Some(server),
            _ => None,
        }
    }

    /// The one mapping from errors to the HTTP status the device sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotActiveSync { .. } => StatusCode::NOT_FOUND,
            Error::ActiveSyncDisabled | Error::NoLiveServer { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::DeviceBody { .. }
            | Error::NoUser
            | Error::UserMismatch { .. }
            | Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::OpaqueCredentials { .. } => StatusCode::FORBIDDEN,
            Error::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::RequestHeadTimeout | Error::DeviceBodyTimeout { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
            Error::Identity { source } => {
                StatusCode::from_u16(source.device_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Error::Blocked { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            Error::Access(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::RedirectRefused { .. } => StatusCode::BAD_GATEWAY,
            Error::AttachmentPolicy { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::InvalidConfig { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::ConfigSave { .. }
            | Error::Bind { .. }
            | Error::Signal { .. }
            | Error::Workers(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::ServerTls { .. }
            | Error::InvalidServerName { .. }
            | Error::Handshake { .. }
            | Error::Upstream { .. }
            | Error::UploadRefused { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The rule an identity refusal is audited and counted under (`None` for other errors).
    pub fn identity_rule(&self) -> Option<&'static str> {
        match self {
            Error::UserMismatch { .. } => Some("user_mismatch"),
            Error::OpaqueCredentials { .. } => Some("opaque_credentials"),
            Error::NoUser => Some("no_user"),
            _ => None,
        }
    }

    /// A device body's read error as the request path reports it: 408 when the body passed its
    /// deadline (the error carries a [`BodyDeadline`]), 400 for anything else.
    pub fn device_body(e: &std::io::Error) -> Error {
        match e.get_ref().and_then(|i| i.downcast_ref::<BodyDeadline>()) {
            Some(d) => Error::DeviceBodyTimeout { timeout: d.0 },
            None => Error::DeviceBody {
                reason: e.to_string(),
            },
        }
    }

    /// `Retry-After` seconds for 503 answers (ActiveSync clients honour it).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::NoLiveServer { retry_after, .. } => Some(*retry_after),
            Error::ActiveSyncDisabled => Some(Duration::from_secs(300)),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Carried inside the `io::Error` of a device body that passed its overall deadline, so the
/// layers between the body and the request path (which see only `io::Error`) keep it apart
/// from a stall or a broken stream ([`Error::device_body`]).
#[derive(Debug, thiserror::Error)]
#[error("request body not complete within {0:?}")]
pub struct BodyDeadline(pub Duration);

impl BodyDeadline {
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry() {
        let s = ServerAddr {
            host: "a".into(),
            port: 1,
        };
        let refused = Error::Connect {
            server: s.clone(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.retryable());
        assert_eq!(refused.blame(), Blame::Server);
        let t = Error::ResponseTimeout {
            server: s,
            timeout: Duration::from_secs(1),
        };
        assert!(!t.retryable());
        assert_eq!(t.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            Error::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let slow = BodyDeadline(Duration::from_secs(1)).into_io();
        assert_eq!(
            Error::device_body(&slow).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        let stalled = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            Error::device_body(&stalled).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Error::NotActiveSync {
                path: "/owa".into()
            }
            .blame(),
            Blame::Device
        );
    }
}
