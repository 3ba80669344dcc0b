//! Device access: the access list (who may sync), the one decision function, remote-wipe state,
//! the associations the gateway reports, and their persistence in one state file.
//!
//! Self-contained core: no HTTP here. The request path calls [`DeviceAccess::check`] once per
//! device request (decision + association update, no disk, no await) and
//! [`DeviceAccess::record_response`] when the answer is known; parked Pings select on
//! [`DeviceAccess::blocked_signal`]. The management API calls [`DeviceAccess::replace`] /
//! [`DeviceAccess::patch`] (`PUT`/`PATCH /v1/devices`), [`DeviceAccess::explain`]
//! (`GET /v1/explain`) and [`DeviceAccess::associations`] (`GET /v1/associations`).
//!
//! Keys: `(user, DeviceId)`, both compared case-insensitively — normalised once into a
//! [`DeviceKey`] (user Unicode-lower-cased, DeviceId ASCII-lower-cased); the spelling the portal or
//! device used is kept for display.

mod associations;
mod config;
mod decide;
mod list;
mod naming;
mod store;
mod time;

use std::fmt;
use std::path::PathBuf;

pub use associations::{Association, AssociationPage, AssociationQuery, MAX_PAGE, RequestInfo};
pub use config::{AccessMode, AccessPolicy, AllowBlock, DeviceAccessConfig, OpaqueCredentials};
pub use decide::{AccessInputs, Action, Decision, PortalSync, Rule, decide};
pub use list::{
    AccessEntry, AccessList, AccessState, ChangeKind, ChangeReport, EntrySpec, ListChange,
    MAX_LIST_ENTRIES, Reason, Reasons, WipeRecord, parse_patch, parse_replace, validate_key,
};
pub use naming::UserNaming;
pub use store::{AccessChange, AccessChanges, DeviceAccess, WipeAck};
pub use time::{Clock, ManualClock, Timestamp, WallClock};

/// The normalised `(user, DeviceId)` key of the access list and the associations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// The user as [`UserNaming::key`] spells it (lower case, one spelling per user).
    pub user: String,
    /// Lower-cased DeviceId (always ASCII once validated).
    pub device: String,
}

impl DeviceKey {
    /// Normalise once, here, so no other code compares raw spellings.
    pub fn new(naming: &UserNaming, user: &str, device_id: &str) -> Self {
        Self {
            user: naming.key(user),
            device: device_id.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.device)
    }
}

/// Whose fault an [`AccessError`] is, so the caller picks the status and log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The management client sent a body we refuse (4xx; nothing changed).
    Client,
    /// The host: disk full, permissions, a state file that is not ours (5xx / refuse to start).
    Host,
}

/// One thing wrong in a management body or the `[device_access]` section, named the way the
/// admin wrote it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// e.g. `devices[3].device_id` or `device_access.mode`.
    pub field: String,
    /// The offending value (clipped to 80 characters, control characters escaped), empty when
    /// the field is missing.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, value: &str, allowed: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: clip(value),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: must be {}", self.field, self.allowed)
        } else {
            write!(
                f,
                "{} = {:?}: must be {}",
                self.field, self.value, self.allowed
            )
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Clip a value for an error message or log line: bounded length, control characters escaped
/// (so a hostile value cannot forge log lines).
pub(crate) fn clip(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Errors of the access module. The lead folds this into the crate's error enum.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The management body is not the JSON we accept (syntax, wrong type, unknown field).
    #[error("invalid JSON body: {message}")]
    BadJson { message: String },

    /// The body parsed but some entries are invalid. Nothing was changed.
    #[error("invalid device list: {}", join(errors))]
    InvalidBody { errors: Vec<FieldError> },

    /// Applying the body would exceed the bound on the access list. Nothing was changed.
    #[error("the access list would hold {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },

    /// Reading or writing the state file failed. For a management change the change is in
    /// force in memory but not on disk (the flusher retries).
    #[error("device state file {path}: {source}")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The state file exists but is not a state file this gateway wrote. The gateway refuses to
    /// start (fail closed: an empty list would let blocked and wiped devices in).
    #[error(
        "device state file {path} is unreadable: {reason}; a copy was kept at {}; fix or remove the file to start (the portal resends the list)",
        copy.as_ref().map_or_else(|| "<copy failed>".to_owned(), |p| p.display().to_string())
    )]
    CorruptState {
        path: PathBuf,
        copy: Option<PathBuf>,
        reason: String,
    },

    /// `[device_access]` section errors.
    #[error("invalid [device_access] config: {}", join(errors))]
    InvalidConfig { errors: Vec<FieldError> },
}

impl AccessError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::BadJson { .. } | Self::InvalidBody { .. } | Self::TooManyEntries { .. } => {
                Fault::Client
            }
            Self::StateIo { .. } | Self::CorruptState { .. } | Self::InvalidConfig { .. } => {
                Fault::Host
            }
        }
    }

    /// The HTTP status the management API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadJson { .. } => 400,
            Self::InvalidBody { .. } | Self::InvalidConfig { .. } => 422,
            Self::TooManyEntries { .. } => 413,
            Self::StateIo { .. } | Self::CorruptState { .. } => 500,
        }
    }
}

/// The validated policy of a `[device_access]` section, or — when it does not validate (the
/// config validation refuses such a file, so only a caller that skipped it gets here) — a policy
/// that blocks every unlisted device: fail closed.
pub fn policy_or_fail_closed(cfg: &DeviceAccessConfig) -> AccessPolicy {
    match cfg.validate() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "[device_access] is invalid: blocking unlisted devices");
            AccessPolicy {
                unregistered: AllowBlock::Block,
                when_portal_unreachable: AllowBlock::Block,
                ..AccessPolicy::default()
            }
        }
    }
}
