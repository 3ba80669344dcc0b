//! The TOML config file, as admins write it. Names mirror the Standalone Sentry admin form and are
//! a contract with the portal and the admin docs: add fields, never rename them.
//!
//! This is only the serde shape. [`crate::model::Runtime`] is the validated, immutable form the
//! data plane uses; `validate` (in `validate.rs`) is the one place that turns one into the other.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sentry: Sentry,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub tls: Tls,
    pub activesync: ActiveSync,
    #[serde(default)]
    pub global_server: GlobalServer,
    #[serde(default)]
    pub advanced: Advanced,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub storage: Storage,
    /// Device access control (`[device_access]`): access list, unregistered devices, remote wipe.
    #[serde(default)]
    pub device_access: crate::access::DeviceAccessConfig,
    /// Attachment control (`[attachment_control]`, issue 5): remove, encrypt or deliver
    /// attachments per platform class. See `crate::attachments`.
    #[serde(default)]
    pub attachment_control: eas::attachment::AttachmentControlConfig,
}

/// "Sentry Host / IP" and "Sentry Port" of the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sentry {
    /// Host name (or IP) devices and the portal use to reach this gateway.
    pub host: String,
    /// Management API port. Default 9090.
    #[serde(default = "default_sentry_port")]
    pub port: u16,
}

/// Listening addresses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Device listener, `addr:port`. Default `0.0.0.0:443`.
    pub devices: Option<String>,
    /// Management API listener. Default: all addresses on `sentry.port`.
    pub management: Option<String>,
    /// Source addresses of TLS-offloading load balancers whose `X-Forwarded-For` is believed
    /// (IPs or CIDRs). Empty: `X-Forwarded-For` from devices is ignored and replaced.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// Who may manage this gateway. At least one of the two must be set: nothing is open by default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// File holding the bearer token (one line). Must not be readable by group or others (0600).
    pub token_file: Option<String>,
    /// PEM bundles whose client certificates may manage the gateway (mutual TLS).
    #[serde(default)]
    pub client_ca: Vec<String>,
}

/// Device-facing certificate. Absent while `client_tls` is on: a development certificate is
/// generated in the data dir, with a warning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// "ActiveSync" section of the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSync {
    /// Enable ActiveSync. Off: every device request gets 503.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Server Authentication: `pass-through` | `kerberos` (kerberos: not yet supported, rejected).
    #[serde(default = "default_server_auth")]
    pub server_auth: String,
    /// Enable Server TLS: HTTPS to servers, certificate and host name verified.
    #[serde(default = "yes")]
    pub server_tls: bool,
    /// Extra PEM bundles trusted for server certificates, beside the system roots.
    #[serde(default)]
    pub server_ca: Vec<String>,
    /// Enable Redirect Processing (HTTP 451).
    #[serde(default = "yes")]
    pub redirect_processing: bool,
    /// Hosts (`host` or `host:port`) a 451 redirect may send a device to, beside the service's
    /// own servers. A 451 to any other host is refused (502), never followed.
    #[serde(default)]
    pub redirect_allowed_hosts: Vec<String>,
    /// Limit Protocol Version, e.g. "14.1"; empty = no limit.
    #[serde(default)]
    pub limit_protocol_version: String,
    /// Enable Client TLS: devices must use TLS.
    #[serde(default = "yes")]
    pub client_tls: bool,
    /// Enable Background Health Check.
    #[serde(default = "yes")]
    pub health_check: bool,
    /// Seconds between background checks of each server. 10..=600, default 60.
    #[serde(default = "default_health_interval")]
    pub health_check_interval_s: u64,
    /// Consecutive good checks that bring an Unreachable server back. 1..=10, default 3.
    #[serde(default = "default_live_threshold")]
    pub live_threshold: u32,
    /// ActiveSync services; the first is always `default`.
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
}

/// One ActiveSync service: a Host-header name and its servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `default`, or the host name devices use (matched case-insensitively, port ignored).
    pub name: String,
    /// `host[:port]` or `[v6]:port`, `;`-separated, at most 4000 characters. Port default: 443
    /// with server TLS, 80 without.
    pub servers: String,
}

/// "Global Server" section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalServer {
    /// `priority` (first live server in list order) | `round-robin`.
    #[serde(default = "default_scheduling")]
    pub scheduling: String,
    /// Failures within `failure_window_ms` that mark a server dead. 1..=1000, default 3.
    #[serde(default = "default_dead_threshold")]
    pub dead_threshold: u32,
    /// Milliseconds. 1..=86400000, default 60000.
    #[serde(default = "default_failure_window")]
    pub failure_window_ms: u64,
    /// Milliseconds a dead server is skipped when the health check is off. 1..=172800000,
    /// default 300000.
    #[serde(default = "default_dead_time")]
    pub dead_time_ms: u64,
}

/// "Advanced" section: timeouts in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advanced {
    /// Longest silence while bytes move on either socket. >= 1, default 10000.
    #[serde(default = "default_10s")]
    pub socket_read_write_timeout_ms: u64,
    /// TCP + TLS connect to a server. >= 1, default 10000.
    #[serde(default = "default_10s")]
    pub server_connection_timeout_ms: u64,
    /// Request sent → response headers (long polls use their heartbeat instead). >= 1,
    /// default 60000.
    #[serde(default = "default_60s")]
    pub server_response_timeout_ms: u64,
    /// Connection open or idle keep-alive → complete request received. >= 1, default 10000.
    #[serde(default = "default_10s")]
    pub device_request_timeout_ms: u64,
    /// Complete request head → complete request body (with `Expect: 100-continue`: from the
    /// `100 Continue`). Bounds a body trickled slower than the silence timeout would notice.
    /// 1..=86400000, default 600000.
    #[serde(default = "default_device_body")]
    pub device_body_timeout_ms: u64,
    /// Added to a long poll's heartbeat to get its response timeout. Default 120000.
    #[serde(default = "default_long_poll_margin")]
    pub long_poll_margin_ms: u64,
    /// On SIGTERM, how long in-flight requests (parked Pings included) may finish. Default 30000.
    #[serde(default = "default_drain")]
    pub drain_timeout_ms: u64,
    /// Idle server connections are closed after this (keep it below the server's keep-alive,
    /// IIS: 120 s). Default 90000.
    #[serde(default = "default_pool_idle")]
    pub server_pool_idle_timeout_ms: u64,
    /// Threads serving device connections, each with its own pool of server connections.
    /// 0 = one per CPU the process may use (cgroup quotas included), like nginx's
    /// `worker_processes auto`. 0..=256, default 0. Takes effect at the next start.
    #[serde(default)]
    pub device_workers: u32,
}

/// Size limits on device requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request head (request line + headers), bytes. Default 65536 (431 above it).
    #[serde(default = "default_max_header")]
    pub max_request_header_bytes: usize,
    /// Largest request body, bytes. Default 67108864 = 64 MiB (413 above it).
    #[serde(default = "default_max_body")]
    pub max_request_body_bytes: u64,
}

/// Where the gateway keeps what it generates and persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Data directory (generated dev certificate, persisted config). Relative paths in the
    /// config are resolved against the config file's directory. Default `data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
}

fn yes() -> bool {
    true
}
fn default_sentry_port() -> u16 {
    9090
}
fn default_server_auth() -> String {
    "pass-through".into()
}
fn default_health_interval() -> u64 {
    60
}
fn default_live_threshold() -> u32 {
    3
}
fn default_scheduling() -> String {
    "priority".into()
}
fn default_dead_threshold() -> u32 {
    3
}
fn default_failure_window() -> u64 {
    60_000
}
fn default_dead_time() -> u64 {
    300_000
}
fn default_10s() -> u64 {
    10_000
}
fn default_60s() -> u64 {
    60_000
}
/// Ten minutes: a 25 MB SendMail over a 0.35 Mbit/s uplink.
fn default_device_body() -> u64 {
    600_000
}
fn default_long_poll_margin() -> u64 {
    120_000
}
fn default_drain() -> u64 {
    30_000
}
fn default_pool_idle() -> u64 {
    90_000
}
fn default_max_header() -> usize {
    65_536
}
fn default_max_body() -> u64 {
    64 * 1024 * 1024
}
fn default_data_dir() -> String {
    "data".into()
}

impl Default for GlobalServer {
    fn default() -> Self {
        Self {
            scheduling: default_scheduling(),
            dead_threshold: default_dead_threshold(),
            failure_window_ms: default_failure_window(),
            dead_time_ms: default_dead_time(),
        }
    }
}

impl Default for Advanced {
    fn default() -> Self {
        Self {
            socket_read_write_timeout_ms: default_10s(),
            server_connection_timeout_ms: default_10s(),
            server_response_timeout_ms: default_60s(),
            device_request_timeout_ms: default_10s(),
            device_body_timeout_ms: default_device_body(),
            long_poll_margin_ms: default_long_poll_margin(),
            drain_timeout_ms: default_drain(),
            server_pool_idle_timeout_ms: default_pool_idle(),
            device_workers: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_header_bytes: default_max_header(),
            max_request_body_bytes: default_max_body(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
        }
    }
}
