//! Applying a new config to a running gateway: SIGHUP (re-read the file) and `PUT /v1/config`
//! (a body) share one path — parse → validate → (persist) → swap.
//!
//! The swap is one atomic pointer store ([`crate::state::Gateway::runtime`]): requests already in
//! flight, parked Pings included, keep the `Runtime` they loaded; new requests see the new one.
//! Nothing is restarted, which is the incumbents' most common complaint (a save dropped every
//! Ping). A config that fails validation changes nothing, in memory or on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::atomic_file;
use crate::config::Config;
use crate::error::Error;
use crate::model::{ListenAddrs, Runtime};
use crate::state::Gateway;
use crate::validate::{self, DevCertMode, Format};

/// What the management API and the signal handler act on: the shared gateway state plus what only
/// the control plane needs (where the config lives, when we started, reload counters).
pub struct ControlPlane {
    gateway: Arc<Gateway>,
    config_path: PathBuf,
    /// Addresses the listeners were bound to at start; a new config cannot move them.
    bound: ListenAddrs,
    /// One apply at a time, so two `PUT`s (or a `PUT` and a SIGHUP) cannot interleave their
    /// validate → persist → swap steps.
    apply_lock: tokio::sync::Mutex<()>,
    started: tokio::time::Instant,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// The outcome of a successful apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Settings that changed but take effect only after a restart (listen addresses).
    pub restart_required: Vec<String>,
}

impl ControlPlane {
    /// `config_path` is the file SIGHUP re-reads and `PUT /v1/config` rewrites.
    pub fn new(gateway: Arc<Gateway>, config_path: impl Into<PathBuf>) -> Arc<Self> {
        let bound = gateway.current().listen;
        Arc::new(Self {
            gateway,
            config_path: config_path.into(),
            bound,
            apply_lock: tokio::sync::Mutex::new(()),
            started: tokio::time::Instant::now(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Successful and failed applies since start (for `/metrics`).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// SIGHUP: re-reads the config file and applies it. On failure the old config stays in force
    /// and every problem is logged.
    pub async fn reload_from_file(&self) -> Result<Applied, Error> {
        let _guard = self.apply_lock.lock().await;
        let path = self.config_path.clone();
        let result = blocking(move || validate::load_file(&path, DevCertMode::Persist)).await;
        match result {
            Ok(runtime) => Ok(self.install(runtime, "SIGHUP")),
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for e in &errors {
                    tracing::error!(file = %self.config_path.display(), "config reload rejected: {e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "config reload rejected: the previous config stays in force"
                );
                Err(Error::InvalidConfig { errors })
            }
        }
    }

    /// `PUT /v1/config`: parses `body`, validates it, saves it atomically to the config file and
    /// swaps it in. A TOML body is saved verbatim (the admin's comments survive); a JSON body is
    /// saved as TOML. Either everything happens or nothing does.
    pub async fn apply_body(&self, body: &[u8], format: Format) -> Result<Applied, Error> {
        let _guard = self.apply_lock.lock().await;
        let config = validate::parse(body, format).map_err(|errors| self.rejected(errors))?;
        let text = match format {
            Format::Toml => String::from_utf8_lossy(body).into_owned(),
            Format::Json => to_toml(&config)?,
        };
        let base_dir = validate::base_dir_of(&self.config_path);
        let runtime =
            blocking(move || validate::validate(&config, &base_dir, DevCertMode::Persist))
                .await
                .map_err(|errors| self.rejected(errors))?;

        let path = self.config_path.clone();
        blocking(move || persist(&path, &text)).await.map_err(|e| {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(file = %self.config_path.display(), error = %e, "config not saved: the previous config stays in force");
            e
        })?;
        Ok(self.install(runtime, "PUT /v1/config"))
    }

    fn rejected(&self, errors: Vec<validate::FieldError>) -> Error {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            errors = errors.len(),
            "config from the management API rejected"
        );
        Error::InvalidConfig { errors }
    }

    /// The swap itself, and what it could not change.
    fn install(&self, runtime: Runtime, origin: &str) -> Applied {
        let mut restart_required = Vec::new();
        if runtime.listen.devices != self.bound.devices {
            restart_required.push("listen.devices".to_string());
        }
        if runtime.listen.management != self.bound.management {
            restart_required.push("listen.management".to_string());
        }
        for field in &restart_required {
            tracing::warn!(
                field = %field,
                "{field} changed: the listener keeps its current address until easgate is restarted"
            );
        }
        let previous = self.gateway.current();
        if runtime.source.device_access.state_file != previous.source.device_access.state_file {
            restart_required.push("device_access.state_file".to_string());
        }
        // Access keys were made with the naming rules of the start (see `DeviceAccess::naming`).
        let (now, then) = (
            &runtime.source.device_access,
            &previous.source.device_access,
        );
        for (field, changed) in [
            ("default_domain", now.default_domain != then.default_domain),
            ("domain_aliases", now.domain_aliases != then.domain_aliases),
        ] {
            if changed {
                tracing::warn!(
                    "device_access.{field} changed: access keys keep the current naming until easgate is restarted"
                );
                restart_required.push(format!("device_access.{field}"));
            }
        }
        if runtime.source.advanced.device_workers != previous.source.advanced.device_workers {
            tracing::warn!(
                "advanced.device_workers changed: the device worker threads stay as they are until easgate is restarted"
            );
            restart_required.push("advanced.device_workers".to_string());
        }
        // New requests decide with the new `[device_access]`; parked ones re-check.
        self.gateway
            .access
            .set_policy(crate::access::policy_or_fail_closed(
                &runtime.source.device_access,
            ));
        let services = runtime.activesync.services.len();
        self.gateway.runtime.store(Arc::new(runtime));
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            origin,
            services,
            "config applied to new requests; in-flight requests keep the previous one"
        );
        Applied { restart_required }
    }
}

/// Validation reads files and may generate a key: keep it off the async worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn to_toml(config: &Config) -> Result<String, Error> {
    toml::to_string_pretty(config).map_err(|e| Error::ConfigSave {
        path: PathBuf::new(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// Replaces the config file atomically, keeping its mode (new files: 0600, they may name
/// secrets' paths). A symlinked config is written through to its target so the link survives.
fn persist(path: &Path, text: &str) -> Result<(), Error> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mode = atomic_file::mode_of(&target).unwrap_or(0o600);
    atomic_file::write_atomic(&target, text.as_bytes(), mode).map_err(|source| Error::ConfigSave {
        path: target.clone(),
        source,
    })
}
