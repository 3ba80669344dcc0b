//! [`Config`] → [`Runtime`]: the one place every setting is checked and every file is loaded.
//!
//! Validation collects *all* problems instead of stopping at the first, because an admin fixing a
//! config (or the portal showing a 422) wants the whole list at once. Each [`FieldError`] names the
//! field path as written in the TOML file, the value found and what is allowed.
//!
//! Relative paths in the config resolve against the config file's directory, so a config behaves
//! the same whatever the working directory of the process is.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::config::Config;
use crate::dev_certificate;
use crate::model::{
    ActiveSyncModel, HealthCheckPolicy, IpNet, ListenAddrs, ManagementAuth, RequestLimits, Runtime,
    Scheduling, ServerAddr, ServerAuth, ServerPolicy, ServiceModel, Timeouts,
};

/// One thing wrong with a config, in terms the admin wrote it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path as in the TOML file, e.g. `activesync.service[1].name`.
    pub field: String,
    /// The offending value as written (strings quoted), empty when the field is missing.
    pub value: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.message)
        } else {
            write!(f, "{} = {}: {}", self.field, self.value, self.message)
        }
    }
}

impl FieldError {
    /// All errors on one line, for log lines and error messages.
    pub fn join(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The body formats `PUT /v1/config` accepts (and the file format, TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// Whether a missing development certificate may be written to the data directory.
/// `check-config` must not change anything on disk, so it uses [`DevCertMode::InMemory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevCertMode {
    Persist,
    InMemory,
}

/// Service names are matched against the Host header and used in URLs by the portal.
const FORBIDDEN_NAME_CHARS: &[char] = &['/', ';', '?', '*', '<', '>', '|', '"', ' '];
/// EAS versions a device may be limited to (MS-ASHTTP `MS-ASProtocolVersions`).
pub const PROTOCOL_VERSIONS: &[&str] = &["2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1"];
/// `servers` is a form field with this maximum length in the incumbent's portal.
const MAX_SERVERS_CHARS: usize = 4000;
/// Upper bound on timeouts: none of them makes sense beyond a year, and it keeps deadline
/// arithmetic (`Instant + Duration`) far from overflow.
const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;
/// hyper refuses a read buffer below 8 KiB; above 1 MiB a header block is an attack, not a device.
const HEADER_BYTES: RangeInclusive<u64> = 8192..=1_048_576;

/// Reads, parses and validates the config file at `path`; the dev certificate may be written.
pub fn load_file(path: &Path, mode: DevCertMode) -> Result<Runtime, Vec<FieldError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![FieldError {
            field: "config file".into(),
            value: quote(&path.display().to_string()),
            message: e.to_string(),
        }]
    })?;
    let config = parse(text.as_bytes(), Format::Toml)?;
    validate(&config, &base_dir_of(path), mode)
}

/// The directory relative paths resolve against: the config file's own directory, absolute and
/// with symlinks resolved (so `../data` means the same to us as to the kernel).
pub fn base_dir_of(config_path: &Path) -> PathBuf {
    let absolute = if config_path.is_absolute() {
        config_path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_default()
            .join(config_path)
    };
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    std::fs::canonicalize(&dir).unwrap_or_else(|_| clean(&dir))
}

/// Removes `.` and `..` lexically, so paths in logs and errors read as the admin expects.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses a config body. Syntax and type errors come back as field errors with a position, so a
/// `PUT` and `check-config` report them the same way as range errors.
pub fn parse(body: &[u8], format: Format) -> Result<Config, Vec<FieldError>> {
    match format {
        Format::Toml => {
            let text = std::str::from_utf8(body).map_err(|e| {
                vec![FieldError {
                    field: "config".into(),
                    value: String::new(),
                    message: format!("not UTF-8: {e}"),
                }]
            })?;
            toml::from_str::<Config>(text).map_err(|e| {
                let field = match e.span() {
                    Some(span) => {
                        let (line, col) = line_col(text, span.start);
                        format!("config line {line}, column {col}")
                    }
                    None => "config".into(),
                };
                vec![FieldError {
                    field,
                    value: String::new(),
                    message: e.message().trim().to_string(),
                }]
            })
        }
        Format::Json => serde_json::from_slice::<Config>(body).map_err(|e| {
            vec![FieldError {
                field: format!("config line {}, column {}", e.line(), e.column()),
                value: String::new(),
                message: e.to_string(),
            }]
        }),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Validates `config`, loading every file it names; relative paths resolve against `base_dir`.
pub fn validate(
    config: &Config,
    base_dir: &Path,
    mode: DevCertMode,
) -> Result<Runtime, Vec<FieldError>> {
    let mut c = Checker {
        base_dir,
        errors: Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // [sentry]
    let sentry_host = config.sentry.host.trim().to_ascii_lowercase();
    if !is_host(&sentry_host) {
        c.err(
            "sentry.host",
            quote(&config.sentry.host),
            "must be a host name (letters, digits, '-', '.') or an IP address: the name devices and the portal use",
        );
    }
    if config.sentry.port == 0 {
        c.err("sentry.port", "0", "out of range: allowed 1..=65535");
    }

    // [listen]
    let devices = c.socket_addr(
        "listen.devices",
        config.listen.devices.as_deref(),
        SocketAddr::from(([0, 0, 0, 0], 443)),
    );
    let management = c.socket_addr(
        "listen.management",
        config.listen.management.as_deref(),
        SocketAddr::from(([0, 0, 0, 0], config.sentry.port.max(1))),
    );
    if let (Some(d), Some(m)) = (devices, management)
        && d.port() == m.port()
        && (d.ip() == m.ip() || d.ip().is_unspecified() || m.ip().is_unspecified())
    {
        c.err(
            "listen.management",
            quote(&m.to_string()),
            format!("must not be the device address {d}"),
        );
    }
    let trusted_proxies: Vec<IpNet> = config
        .listen
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match parse_ip_net(s) {
            Ok(net) => Some(net),
            Err(msg) => {
                c.err(format!("listen.trusted_proxies[{i}]"), quote(s), msg);
                None
            }
        })
        .collect();

    // [storage]
    let data_dir = if config.storage.data_dir.trim().is_empty() {
        c.err(
            "storage.data_dir",
            quote(&config.storage.data_dir),
            "must not be empty",
        );
        None
    } else {
        Some(c.resolve(&config.storage.data_dir))
    };

    // [tls]: one certificate for devices and the management API.
    let identity = c.identity(config, &sentry_host, data_dir.as_deref(), mode);

    // [management]
    let token = config
        .management
        .token_file
        .as_deref()
        .and_then(|p| c.token_file(p));
    let client_ca = c.pem_bundles("management.client_ca", &config.management.client_ca);
    if config.management.token_file.is_none() && config.management.client_ca.is_empty() {
        c.err(
            "management",
            "",
            "set token_file or client_ca (or both): the management API is never open without a credential",
        );
    }

    // [activesync]
    let a = &config.activesync;
    let server_auth = match a.server_auth.as_str() {
        "pass-through" => Some(ServerAuth::PassThrough),
        "kerberos" => {
            c.err(
                "activesync.server_auth",
                quote(&a.server_auth),
                "kerberos (constrained delegation) is not supported yet: use \"pass-through\"",
            );
            None
        }
        _ => {
            c.err(
                "activesync.server_auth",
                quote(&a.server_auth),
                "allowed: \"pass-through\" (\"kerberos\" not supported yet)",
            );
            None
        }
    };
    let server_tls = if a.server_tls {
        c.server_tls(&a.server_ca, &provider)
    } else {
        None
    };
    if !a.server_tls {
        // Still load them so a typo in a path is caught before someone turns server TLS on.
        c.pem_bundles("activesync.server_ca", &a.server_ca);
    }
    let limit_protocol_version = match a.limit_protocol_version.trim() {
        "" => None,
        v if PROTOCOL_VERSIONS.contains(&v) => Some(v.to_string()),
        _ => {
            c.err(
                "activesync.limit_protocol_version",
                quote(&a.limit_protocol_version),
                format!(
                    "allowed: \"\" (no limit) or one of {}",
                    PROTOCOL_VERSIONS.join(", ")
                ),
            );
            None
        }
    };
    let interval = c.range(
        "activesync.health_check_interval_s",
        a.health_check_interval_s,
        10..=600,
        "seconds",
    );
    let live_threshold = c.range(
        "activesync.live_threshold",
        u64::from(a.live_threshold),
        1..=10,
        "checks",
    );
    let services = c.services(config);

    // [global_server]
    let g = &config.global_server;
    let scheduling = match g.scheduling.as_str() {
        "priority" => Some(Scheduling::Priority),
        "round-robin" => Some(Scheduling::RoundRobin),
        _ => {
            c.err(
                "global_server.scheduling",
                quote(&g.scheduling),
                "allowed: \"priority\" | \"round-robin\"",
            );
            None
        }
    };
    let dead_threshold = c.range(
        "global_server.dead_threshold",
        u64::from(g.dead_threshold),
        1..=1000,
        "failures",
    );
    let failure_window = c.range(
        "global_server.failure_window_ms",
        g.failure_window_ms,
        1..=86_400_000,
        "ms",
    );
    let dead_time = c.range(
        "global_server.dead_time_ms",
        g.dead_time_ms,
        1..=172_800_000,
        "ms",
    );

    // [advanced]
    let adv = &config.advanced;
    let timeout = |c: &mut Checker, field: &str, v: u64| {
        c.range(&format!("advanced.{field}"), v, 1..=MAX_TIMEOUT_MS, "ms")
    };
    let socket_read_write = timeout(
        &mut c,
        "socket_read_write_timeout_ms",
        adv.socket_read_write_timeout_ms,
    );
    let server_connect = timeout(
        &mut c,
        "server_connection_timeout_ms",
        adv.server_connection_timeout_ms,
    );
    let server_response = timeout(
        &mut c,
        "server_response_timeout_ms",
        adv.server_response_timeout_ms,
    );
    let device_request = timeout(
        &mut c,
        "device_request_timeout_ms",
        adv.device_request_timeout_ms,
    );
    let device_body = c.range(
        "advanced.device_body_timeout_ms",
        adv.device_body_timeout_ms,
        1..=86_400_000,
        "ms",
    );
    let long_poll_margin = c.range(
        "advanced.long_poll_margin_ms",
        adv.long_poll_margin_ms,
        0..=3_600_000,
        "ms",
    );
    let drain = c.range(
        "advanced.drain_timeout_ms",
        adv.drain_timeout_ms,
        0..=86_400_000,
        "ms",
    );
    let server_pool_idle = c.range(
        "advanced.server_pool_idle_timeout_ms",
        adv.server_pool_idle_timeout_ms,
        1..=86_400_000,
        "ms",
    );
    c.range(
        "advanced.device_workers",
        u64::from(adv.device_workers),
        0..=256,
        "threads",
    );

    // [limits]
    let l = &config.limits;
    let max_header = c.range(
        "limits.max_request_header_bytes",
        l.max_request_header_bytes as u64,
        HEADER_BYTES,
        "bytes",
    );
    let max_body = c.range(
        "limits.max_request_body_bytes",
        l.max_request_body_bytes,
        1..=u64::MAX,
        "bytes",
    );

    // Issue 4: `[device_access]` and the 451 allow-list (their own validators; errors collected
    // with the others).
    if let Err(crate::access::AccessError::InvalidConfig { errors }) =
        config.device_access.validate()
    {
        for e in errors {
            c.err(e.field, e.value, format!("allowed: {}", e.allowed));
        }
    }
    for (field, value, allowed) in
        crate::redirect::validate_allowed(&config.activesync.redirect_allowed_hosts)
    {
        c.err(field, value, format!("allowed: {allowed}"));
    }

    // Issue 5: `[attachment_control]` (the engine's validator; certificates loaded here).
    let attachments = match crate::attachments::compile(&config.attachment_control, base_dir) {
        Ok(a) => a,
        Err(errors) => {
            for e in errors {
                c.err(e.field, String::new(), e.message);
            }
            None
        }
    };

    // TLS configs need the identity and the management roots; build them last.
    let tls_configs = identity.and_then(|(chain, key)| {
        c.server_configs(config, chain, key, client_ca.as_deref(), &provider)
    });

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    // Every `None` above pushed an error, so everything is present here.
    let missing = || {
        vec![FieldError {
            field: "config".into(),
            value: String::new(),
            message: "internal: incomplete validation".into(),
        }]
    };
    let ms = Duration::from_millis;
    let (device_tls, management_tls) = tls_configs.ok_or_else(missing)?;
    Ok(Runtime {
        source: config.clone(),
        sentry_host,
        listen: ListenAddrs {
            devices: devices.ok_or_else(missing)?,
            management: management.ok_or_else(missing)?,
        },
        management: ManagementAuth {
            token,
            client_ca: client_ca.unwrap_or_default(),
            tls: management_tls,
        },
        device_tls: a.client_tls.then_some(device_tls),
        trusted_proxies,
        activesync: ActiveSyncModel {
            enabled: a.enabled,
            server_auth: server_auth.ok_or_else(missing)?,
            server_tls,
            redirect_processing: a.redirect_processing,
            limit_protocol_version,
            health_check: a.health_check.then(|| HealthCheckPolicy {
                interval: Duration::from_secs(interval.unwrap_or(60)),
                live_threshold: live_threshold.unwrap_or(3) as u32,
            }),
            services: services.ok_or_else(missing)?,
        },
        servers: ServerPolicy {
            scheduling: scheduling.ok_or_else(missing)?,
            dead_threshold: dead_threshold.ok_or_else(missing)? as u32,
            failure_window: ms(failure_window.ok_or_else(missing)?),
            dead_time: ms(dead_time.ok_or_else(missing)?),
        },
        timeouts: Timeouts {
            socket_read_write: ms(socket_read_write.ok_or_else(missing)?),
            server_connect: ms(server_connect.ok_or_else(missing)?),
            server_response: ms(server_response.ok_or_else(missing)?),
            device_request: ms(device_request.ok_or_else(missing)?),
            device_body: ms(device_body.ok_or_else(missing)?),
            long_poll_margin: ms(long_poll_margin.ok_or_else(missing)?),
            drain: ms(drain.ok_or_else(missing)?),
            server_pool_idle: ms(server_pool_idle.ok_or_else(missing)?),
        },
        limits: RequestLimits {
            max_header_bytes: max_header.ok_or_else(missing)? as usize,
            max_body_bytes: max_body.ok_or_else(missing)?,
        },
        data_dir: data_dir.ok_or_else(missing)?,
        attachments,
    })
}

/// Collects errors while each section is checked.
struct Checker<'a> {
    base_dir: &'a Path,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn err(
        &mut self,
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(FieldError {
            field: field.into(),
            value: value.into(),
            message: message.into(),
        });
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            clean(&self.base_dir.join(p))
        }
    }

    fn range(
        &mut self,
        field: &str,
        value: u64,
        allowed: RangeInclusive<u64>,
        unit: &str,
    ) -> Option<u64> {
        if allowed.contains(&value) {
            return Some(value);
        }
        let range = if *allowed.end() == u64::MAX {
            format!(">= {}", allowed.start())
        } else if *allowed.end() == MAX_TIMEOUT_MS {
            format!(">= {} (at most {})", allowed.start(), allowed.end())
        } else {
            format!("{}..={}", allowed.start(), allowed.end())
        };
        self.err(
            field,
            value.to_string(),
            format!("out of range: allowed {range} ({unit})"),
        );
        None
    }

    fn socket_addr(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: SocketAddr,
    ) -> Option<SocketAddr> {
        let Some(text) = value else {
            return Some(default);
        };
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Some(addr),
            Ok(_) => {
                self.err(field, quote(text), "port 0 is not allowed: use 1..=65535");
                None
            }
            Err(_) => {
                self.err(
                    field,
                    quote(text),
                    "must be ip:port, e.g. \"0.0.0.0:443\" or \"[::]:443\"",
                );
                None
            }
        }
    }

    /// Reads the bearer token; the file must be private to its owner (like an SSH key).
    fn token_file(&mut self, path: &str) -> Option<Arc<str>> {
        const FIELD: &str = "management.token_file";
        let full = self.resolve(path);
        let meta = match std::fs::metadata(&full) {
            Ok(m) => m,
            Err(e) => {
                self.err(
                    FIELD,
                    quote(path),
                    format!("cannot read {}: {e}", full.display()),
                );
                return None;
            }
        };
        if !meta.is_file() {
            self.err(
                FIELD,
                quote(path),
                format!("{} is not a regular file", full.display()),
            );
            return None;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.err(
                FIELD,
                quote(path),
                format!("mode {mode:04o} lets group or others read the token: allowed 0600 or stricter (chmod 600)"),
            );
            return None;
        }
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.err(
                    FIELD,
                    quote(path),
                    format!("cannot read {}: {e}", full.display()),
                );
                return None;
            }
        };
        let token = text.trim();
        if token.is_empty() {
            self.err(
                FIELD,
                quote(path),
                "the token file is empty: allowed one line of visible ASCII characters",
            );
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            // Never echo the token itself, not even in an error.
            self.err(
                FIELD,
                quote(path),
                "the token must be one line of visible ASCII characters without spaces",
            );
            return None;
        }
        Some(Arc::from(token))
    }

    /// Loads PEM certificate bundles; `None` when any fails (its error is recorded).
    fn pem_bundles(
        &mut self,
        field: &str,
        paths: &[String],
    ) -> Option<Vec<CertificateDer<'static>>> {
        let mut all = Vec::new();
        let mut ok = true;
        for (i, path) in paths.iter().enumerate() {
            match read_certs(&self.resolve(path)) {
                Ok(certs) => all.extend(certs),
                Err(msg) => {
                    self.err(format!("{field}[{i}]"), quote(path), msg);
                    ok = false;
                }
            }
        }
        ok.then_some(all)
    }

    /// The gateway's certificate and key: from `[tls]`, or the development certificate.
    fn identity(
        &mut self,
        config: &Config,
        sentry_host: &str,
        data_dir: Option<&Path>,
        mode: DevCertMode,
    ) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                let chain = match read_certs(&self.resolve(cert)) {
                    Ok(c) => Some(c),
                    Err(msg) => {
                        self.err("tls.cert", quote(cert), msg);
                        None
                    }
                };
                let key_der = match read_key(&self.resolve(key)) {
                    Ok(k) => Some(k),
                    Err(msg) => {
                        self.err("tls.key", quote(key), msg);
                        None
                    }
                };
                Some((chain?, key_der?))
            }
            (Some(_), None) => {
                self.err(
                    "tls.key",
                    "",
                    "missing: tls.cert and tls.key are set together (or both left out)",
                );
                None
            }
            (None, Some(_)) => {
                self.err(
                    "tls.cert",
                    "",
                    "missing: tls.cert and tls.key are set together (or both left out)",
                );
                None
            }
            (None, None) => {
                let data_dir = data_dir?;
                match dev_certificate::load_or_generate(data_dir, sentry_host, mode) {
                    Ok(dev) => Some((dev.chain, dev.key)),
                    Err(msg) => {
                        self.err(
                            "tls",
                            "",
                            format!(
                                "no [tls] cert/key and the development certificate failed: {msg}"
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Device and management `ServerConfig`s from one identity.
    fn server_configs(
        &mut self,
        config: &Config,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_ca: Option<&[CertificateDer<'static>]>,
        provider: &Arc<CryptoProvider>,
    ) -> Option<(Arc<ServerConfig>, Arc<ServerConfig>)> {
        let key_field = || config.tls.key.as_deref().map(quote).unwrap_or_default();
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        };
        let mut device = match builder().map(|b| {
            b.with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
        }) {
            Ok(Ok(cfg)) => cfg,
            Ok(Err(e)) | Err(e) => {
                let message = match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the key does not match the certificate in tls.cert".to_string()
                    }
                    other => format!("unusable certificate or key: {other}"),
                };
                self.err("tls.key", key_field(), message);
                return None;
            }
        };
        device.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        // Management: a client certificate is optional at the TLS layer (a bearer token may be used
        // instead) but, when one is sent, it must chain to `client_ca`.
        let client_ca = client_ca?;
        let verifier = if client_ca.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for (i, cert) in client_ca.iter().enumerate() {
                if let Err(e) = roots.add(cert.clone()) {
                    self.err(
                        "management.client_ca",
                        "",
                        format!("certificate #{} is not a usable CA: {e}", i + 1),
                    );
                    return None;
                }
            }
            match WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
            {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(
                        "management.client_ca",
                        "",
                        format!("cannot verify client certificates: {e}"),
                    );
                    return None;
                }
            }
        };
        let management = builder().and_then(|b| match verifier {
            Some(v) => b.with_client_cert_verifier(v).with_single_cert(chain, key),
            None => b.with_no_client_auth().with_single_cert(chain, key),
        });
        match management {
            Ok(mut cfg) => {
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some((Arc::new(device), Arc::new(cfg)))
            }
            Err(e) => {
                self.err(
                    "tls.key",
                    key_field(),
                    format!("unusable certificate or key: {e}"),
                );
                None
            }
        }
    }

    /// Client config for HTTPS to servers: system roots plus `server_ca`.
    fn server_tls(
        &mut self,
        server_ca: &[String],
        provider: &Arc<CryptoProvider>,
    ) -> Option<Arc<ClientConfig>> {
        let extra = self.pem_bundles("activesync.server_ca", server_ca)?;
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for (i, cert) in extra.into_iter().enumerate() {
            if let Err(e) = roots.add(cert) {
                self.err(
                    "activesync.server_ca",
                    "",
                    format!("certificate #{} is not a usable CA: {e}", i + 1),
                );
                return None;
            }
        }
        if roots.is_empty() {
            self.err(
                "activesync.server_tls",
                "true",
                "no trusted roots: the system store is empty and server_ca is empty (install ca-certificates or set server_ca)",
            );
            return None;
        }
        let mut cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(cfg))
    }

    fn services(&mut self, config: &Config) -> Option<Vec<Arc<ServiceModel>>> {
        let services = &config.activesync.services;
        let default_port = if config.activesync.server_tls {
            443
        } else {
            80
        };
        if services.is_empty() {
            self.err(
                "activesync.service",
                "",
                "missing: the first [[activesync.service]] must be name = \"default\" (it cannot be removed)",
            );
            return None;
        }
        let mut ok = true;
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            let field = format!("activesync.service[{i}].name");
            let name = s.name.to_ascii_lowercase();
            if i == 0 && name != "default" {
                self.err(
                    field,
                    quote(&s.name),
                    "the first service is always \"default\": it cannot be renamed or removed",
                );
                ok = false;
            } else if s.name.is_empty() {
                self.err(field, quote(&s.name), "must not be empty");
                ok = false;
            } else if let Some(bad) = s
                .name
                .chars()
                .find(|ch| FORBIDDEN_NAME_CHARS.contains(ch) || ch.is_control())
            {
                self.err(
                    field,
                    quote(&s.name),
                    format!("contains {bad:?}: a service name must not contain / ; ? * < > | \" or space"),
                );
                ok = false;
            } else if let Some(first) = seen.iter().position(|n| *n == name) {
                self.err(
                    field,
                    quote(&s.name),
                    format!("duplicate of activesync.service[{first}].name (names are compared case-insensitively)"),
                );
                ok = false;
            }
            seen.push(name.clone());
            match parse_servers(&s.servers, default_port) {
                Ok(servers) => out.push(Arc::new(ServiceModel { name, servers })),
                Err(msg) => {
                    self.err(
                        format!("activesync.service[{i}].servers"),
                        quote(&truncate(&s.servers, 200)),
                        msg,
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// Parses a `;`-separated server list: `host[:port]`, `[v6]:port` (or `[v6]`).
pub fn parse_servers(list: &str, default_port: u16) -> Result<Vec<ServerAddr>, String> {
    if list.chars().count() > MAX_SERVERS_CHARS {
        return Err(format!(
            "too long: {} characters, allowed at most {MAX_SERVERS_CHARS}",
            list.chars().count()
        ));
    }
    let mut servers: Vec<ServerAddr> = Vec::new();
    for entry in list.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let server = parse_server(entry, default_port)?;
        if servers.contains(&server) {
            return Err(format!("server {server} is listed twice"));
        }
        servers.push(server);
    }
    if servers.is_empty() {
        return Err("no server: allowed host[:port] or [v6]:port entries separated by ';'".into());
    }
    Ok(servers)
}

fn parse_server(entry: &str, default_port: u16) -> Result<ServerAddr, String> {
    let bad = |why: &str| format!("{entry:?}: {why}; allowed host[:port] or [v6]:port");
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| bad("not an IPv6 address inside [ ]"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("expected ':port' after ']'"))?,
            ),
        };
        (ip.to_string(), port)
    } else if entry.matches(':').count() > 1 {
        return Err(bad("an IPv6 address needs brackets"));
    } else {
        let (host, port) = match entry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        };
        let host = host.to_ascii_lowercase();
        if !is_host(&host) {
            return Err(bad("not a valid host name or IPv4 address"));
        }
        (host, port)
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(bad("port must be 1..=65535")),
        },
    };
    Ok(ServerAddr { host, port })
}

/// A DNS host name (RFC 1123 labels; `_` tolerated as in real AD names) or an IP literal.
fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // An all-numeric dotted name is a malformed IPv4 address, not a host name.
        && !s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// `ip` or `ip/prefix`; host bits are cleared so matching is a plain prefix compare.
pub fn parse_ip_net(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match s.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s.trim(), None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "not an IP address: allowed an IP or a CIDR such as 10.0.0.0/8".to_string())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("prefix length must be 0..={max}")),
        },
    };
    let addr = match addr {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::from((u32::from(v4) & mask).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::from((u128::from(v6) & mask).to_be_bytes())
        }
    };
    Ok(IpNet { addr, prefix })
}

/// All certificates in a PEM file; an error message when none or unreadable.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no \"BEGIN CERTIFICATE\" block",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{} holds no PEM private key", path.display())
        }
        other => format!("{} is not a valid PEM private key: {other}", path.display()),
    })
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_accept_the_documented_shapes() {
        let s = parse_servers(
            "exch1.corp.example:443; EXCH2.corp.example ;[::1]:8443;10.0.0.1;",
            443,
        )
        .unwrap();
        let shown: Vec<String> = s.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "exch1.corp.example:443",
                "exch2.corp.example:443",
                "[::1]:8443",
                "10.0.0.1:443"
            ]
        );
    }

    #[test]
    fn servers_reject_unbracketed_v6_and_bad_ports() {
        assert!(
            parse_servers("::1:443", 443)
                .unwrap_err()
                .contains("brackets")
        );
        assert!(
            parse_servers("a.example:0", 443)
                .unwrap_err()
                .contains("1..=65535")
        );
        assert!(parse_servers("a.example:99999", 443).is_err());
        assert!(parse_servers("bad host", 443).is_err());
        assert!(parse_servers("a;a", 443).unwrap_err().contains("twice"));
        assert!(parse_servers("1.2.3", 443).is_err());
    }

    #[test]
    fn cidr_clears_host_bits() {
        let net = parse_ip_net("10.1.2.3/8").unwrap();
        assert_eq!(net.addr, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(net.prefix, 8);
        assert_eq!(parse_ip_net("::1").unwrap().prefix, 128);
        assert!(parse_ip_net("10.0.0.0/33").is_err());
        assert!(parse_ip_net("nope").is_err());
    }

    #[test]
    fn toml_errors_carry_a_position() {
        let errs = parse(b"[sentry]\nhost = 1\n", Format::Toml).unwrap_err();
        assert!(errs[0].field.starts_with("config line 2"), "{errs:?}");
    }
}
