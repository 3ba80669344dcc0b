//! The validated, immutable runtime model built once from [`crate::config::Config`] and swapped
//! atomically (`ArcSwap<Runtime>`) on reload. The data plane reads only this, never the TOML
//! structs: every value here has been range-checked and every file has been loaded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// Everything the gateway needs to serve, validated.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The config it was built from (served by `GET /v1/config`, persisted by `PUT`).
    pub source: crate::config::Config,
    pub sentry_host: String,
    pub listen: ListenAddrs,
    pub management: ManagementAuth,
    /// `None` when `client_tls = false` (plain HTTP behind a TLS-offloading load balancer).
    pub device_tls: Option<Arc<rustls::ServerConfig>>,
    pub trusted_proxies: Vec<IpNet>,
    pub activesync: ActiveSyncModel,
    pub servers: ServerPolicy,
    pub timeouts: Timeouts,
    pub limits: RequestLimits,
    /// Absolute data directory.
    pub data_dir: std::path::PathBuf,
    /// `[attachment_control]` compiled (recipient certificates loaded); `None` when disabled.
    pub attachments: Option<Arc<eas::attachment::AttachmentControl>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddrs {
    pub devices: SocketAddr,
    pub management: SocketAddr,
}

/// Credentials accepted on the management port. At least one is present.
#[derive(Clone)]
pub struct ManagementAuth {
    /// Bearer token (never logged; `Debug` redacts it).
    pub token: Option<Arc<str>>,
    /// Roots for management client certificates (mutual TLS).
    pub client_ca: Vec<CertificateDer<'static>>,
    /// TLS config for the management listener (same certificate as devices, client certs
    /// requested when `client_ca` is set).
    pub tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ManagementAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_ca", &self.client_ca.len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAuth {
    PassThrough,
}

#[derive(Debug, Clone)]
pub struct ActiveSyncModel {
    pub enabled: bool,
    pub server_auth: ServerAuth,
    /// `Some` = HTTPS to servers with this verifier config (system roots + `server_ca`).
    pub server_tls: Option<Arc<rustls::ClientConfig>>,
    pub redirect_processing: bool,
    /// e.g. "14.1"; `None` = no limit. (Behaviour comes with the ActiveSync-aware gateway issue.)
    pub limit_protocol_version: Option<String>,
    /// `None` when the background health check is off.
    pub health_check: Option<HealthCheckPolicy>,
    /// `services[0]` is always `default`.
    pub services: Vec<Arc<ServiceModel>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckPolicy {
    pub interval: Duration,
    pub live_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    /// Lower-cased service name (`default` or a host name).
    pub name: String,
    pub servers: Vec<ServerAddr>,
}

/// One server of a service. Identity for health state is `(host, port)`, so health survives a
/// reload that keeps the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerAddr {
    /// Host name or IP literal (no brackets), lower-cased.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    Priority,
    RoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPolicy {
    pub scheduling: Scheduling,
    pub dead_threshold: u32,
    pub failure_window: Duration,
    pub dead_time: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub socket_read_write: Duration,
    pub server_connect: Duration,
    pub server_response: Duration,
    pub device_request: Duration,
    /// End of the request head → end of the request body (see `advanced.device_body_timeout_ms`).
    pub device_body: Duration,
    pub long_poll_margin: Duration,
    pub drain: Duration,
    pub server_pool_idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}
