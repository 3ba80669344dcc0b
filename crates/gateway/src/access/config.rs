//! The `[device_access]` config section (serde shape, strings as admins write them) and its
//! validated form [`AccessPolicy`], the only thing the decision reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AccessError, FieldError, UserNaming};

/// `[device_access]` as written in the config file. Every field has a default, so the section
/// may be omitted (defaults follow the incumbent: allow unregistered, allow new devices while the
/// portal is unreachable, 403 for blocked devices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceAccessConfig {
    /// `enforce` | `report-only` (decide and log, let everything through). Default `enforce`.
    pub mode: String,
    /// Unlisted (unregistered) devices: `allow` | `block` ("Auto Block Unregistered Devices").
    /// Default `allow`.
    pub unregistered: String,
    /// Distinct DeviceIds admitted per user; the (N+1)th new one is blocked, existing ones keep
    /// working. Applies to unlisted devices (a listed `allowed` device is the portal's call).
    /// `0` = no limit (default), at most 1000.
    pub max_devices_per_mailbox: u32,
    /// A device not on the list, first seen while the portal is unreachable (or has not synced
    /// since start-up): `allow` | `block`. Default `allow`.
    pub when_portal_unreachable: String,
    /// HTTP status a blocked device gets: `403` (user not enabled) or `456` (account blocked).
    /// Default 403.
    pub blocked_response: u16,
    /// Persisted access list and associations (JSON, mode 0600). Relative paths are resolved by
    /// the caller against the data dir. Default `state/devices.json`.
    pub state_file: String,
    /// Most associations kept; beyond it the ones with the oldest `last_seen` are evicted.
    /// 1..=10000000, default 200000.
    pub max_associations: usize,
    /// Seconds between background writes of the state file (request-path changes such as
    /// `last_seen` are coalesced; management changes and wipe acknowledgements are written at
    /// once). Each write serialises the whole state, so keep it in minutes for large inventories.
    /// 1..=3600, default 60.
    pub flush_interval_s: u64,
    /// UPN suffix of the users (e.g. `corp.example`): with it, access keys are `user@domain`
    /// and a bare login takes this domain; empty (default): one domain, keys are the bare user
    /// name whatever domain form a device sends. Read at start (a change needs a restart).
    pub default_domain: String,
    /// Other spellings of a domain → the domain (e.g. `CORP = "corp.example"`,
    /// `"corp.local" = "corp.example"`); needs `default_domain`. At most 64. Default none.
    /// Read at start.
    pub domain_aliases: BTreeMap<String, String>,
    /// A credential that names no one the gateway can read (Kerberos in `Negotiate`, a Bearer
    /// token that is not a JWT): `refuse` (default, 403: the decision cannot be keyed on who
    /// authenticated) or `query-user` (key on the query's `User=`, trusting the device's word).
    pub opaque_credentials: String,
}

impl Default for DeviceAccessConfig {
    fn default() -> Self {
        Self {
            mode: "enforce".into(),
            unregistered: "allow".into(),
            max_devices_per_mailbox: 0,
            when_portal_unreachable: "allow".into(),
            blocked_response: 403,
            state_file: "state/devices.json".into(),
            max_associations: 200_000,
            flush_interval_s: 60,
            default_domain: String::new(),
            domain_aliases: BTreeMap::new(),
            opaque_credentials: "refuse".into(),
        }
    }
}

/// `enforce` | `report-only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    Enforce,
    ReportOnly,
}

/// `allow` | `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllowBlock {
    Allow,
    Block,
}

/// `opaque_credentials`: what a credential naming no readable user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpaqueCredentials {
    Refuse,
    QueryUser,
}

/// The validated `[device_access]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub mode: AccessMode,
    pub unregistered: AllowBlock,
    pub max_devices_per_mailbox: u32,
    pub when_portal_unreachable: AllowBlock,
    /// 403 or 456.
    pub blocked_response: u16,
    /// As written; the caller resolves it against the data dir.
    pub state_file: PathBuf,
    pub max_associations: usize,
    pub flush_interval: Duration,
    /// How user names become access keys.
    pub naming: UserNaming,
    pub opaque_credentials: OpaqueCredentials,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            mode: AccessMode::Enforce,
            unregistered: AllowBlock::Allow,
            max_devices_per_mailbox: 0,
            when_portal_unreachable: AllowBlock::Allow,
            blocked_response: 403,
            state_file: PathBuf::from("state/devices.json"),
            max_associations: 200_000,
            flush_interval: Duration::from_secs(60),
            naming: UserNaming::default(),
            opaque_credentials: OpaqueCredentials::Refuse,
        }
    }
}

/// Most `domain_aliases` entries.
pub const MAX_DOMAIN_ALIASES: usize = 64;

/// A DNS domain or NetBIOS name as admins write them: 1..=253 letters, digits, `-`, `_`, `.`.
fn is_domain_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
        && !s.ends_with('.')
}

pub const MAX_DEVICES_PER_MAILBOX: u32 = 1000;
pub const MAX_ASSOCIATIONS: usize = 10_000_000;

fn allow_block(field: &str, value: &str, errors: &mut Vec<FieldError>) -> AllowBlock {
    match value {
        "allow" => AllowBlock::Allow,
        "block" => AllowBlock::Block,
        _ => {
            errors.push(FieldError::new(
                format!("device_access.{field}"),
                value,
                "one of: allow, block",
            ));
            AllowBlock::Allow
        }
    }
}

impl DeviceAccessConfig {
    /// Check every field; all errors at once, each naming the field, the value and what is allowed.
    pub fn validate(&self) -> Result<AccessPolicy, AccessError> {
        let mut errors = Vec::new();
        let mode = match self.mode.as_str() {
            "enforce" => AccessMode::Enforce,
            "report-only" => AccessMode::ReportOnly,
            other => {
                errors.push(FieldError::new(
                    "device_access.mode",
                    other,
                    "one of: enforce, report-only",
                ));
                AccessMode::Enforce
            }
        };
        let unregistered = allow_block("unregistered", &self.unregistered, &mut errors);
        let when_portal_unreachable = allow_block(
            "when_portal_unreachable",
            &self.when_portal_unreachable,
            &mut errors,
        );
        if self.max_devices_per_mailbox > MAX_DEVICES_PER_MAILBOX {
            errors.push(FieldError::new(
                "device_access.max_devices_per_mailbox",
                &self.max_devices_per_mailbox.to_string(),
                "0..=1000 (0 = no limit)",
            ));
        }
        if !matches!(self.blocked_response, 403 | 456) {
            errors.push(FieldError::new(
                "device_access.blocked_response",
                &self.blocked_response.to_string(),
                "403 or 456",
            ));
        }
        if self.state_file.trim().is_empty()
            || self.state_file.contains('\0')
            || self.state_file.ends_with('/')
        {
            errors.push(FieldError::new(
                "device_access.state_file",
                &self.state_file,
                "a file path (not empty, not a directory)",
            ));
        }
        if !(1..=MAX_ASSOCIATIONS).contains(&self.max_associations) {
            errors.push(FieldError::new(
                "device_access.max_associations",
                &self.max_associations.to_string(),
                "1..=10000000",
            ));
        }
        if !(1..=3600).contains(&self.flush_interval_s) {
            errors.push(FieldError::new(
                "device_access.flush_interval_s",
                &self.flush_interval_s.to_string(),
                "1..=3600 seconds",
            ));
        }
        let opaque_credentials = match self.opaque_credentials.as_str() {
            "refuse" => OpaqueCredentials::Refuse,
            "query-user" => OpaqueCredentials::QueryUser,
            other => {
                errors.push(FieldError::new(
                    "device_access.opaque_credentials",
                    other,
                    "one of: refuse, query-user",
                ));
                OpaqueCredentials::Refuse
            }
        };
        let domain = self.default_domain.trim();
        if !domain.is_empty() && !is_domain_name(domain) {
            errors.push(FieldError::new(
                "device_access.default_domain",
                &self.default_domain,
                "empty, or a domain name (letters, digits, '-', '_', '.'; at most 253)",
            ));
        }
        if !self.domain_aliases.is_empty() && domain.is_empty() {
            errors.push(FieldError::new(
                "device_access.domain_aliases",
                "",
                "empty unless default_domain is set (with one domain, keys have no domain)",
            ));
        }
        if self.domain_aliases.len() > MAX_DOMAIN_ALIASES {
            errors.push(FieldError::new(
                "device_access.domain_aliases",
                "",
                "at most 64 entries",
            ));
        }
        for (alias, target) in &self.domain_aliases {
            if !is_domain_name(alias.trim()) {
                errors.push(FieldError::new(
                    "device_access.domain_aliases",
                    alias,
                    "keys that are domain or NetBIOS names",
                ));
            }
            if !is_domain_name(target.trim()) {
                errors.push(FieldError::new(
                    format!("device_access.domain_aliases.{}", super::clip(alias)),
                    target,
                    "a domain name",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(AccessError::InvalidConfig { errors });
        }
        Ok(AccessPolicy {
            mode,
            unregistered,
            max_devices_per_mailbox: self.max_devices_per_mailbox,
            when_portal_unreachable,
            blocked_response: self.blocked_response,
            state_file: PathBuf::from(&self.state_file),
            max_associations: self.max_associations,
            flush_interval: Duration::from_secs(self.flush_interval_s),
            naming: UserNaming::new(domain, &self.domain_aliases),
            opaque_credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_to_default_policy() {
        assert_eq!(
            DeviceAccessConfig::default().validate().unwrap(),
            AccessPolicy::default()
        );
        let parsed: DeviceAccessConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, DeviceAccessConfig::default());
    }

    #[test]
    fn issue_example_parses() {
        let cfg: DeviceAccessConfig = toml::from_str(
            r#"
mode = "report-only"
unregistered = "block"
max_devices_per_mailbox = 2
when_portal_unreachable = "block"
blocked_response = 456
state_file = "state/devices.json"
"#,
        )
        .unwrap();
        let p = cfg.validate().unwrap();
        assert_eq!(p.mode, AccessMode::ReportOnly);
        assert_eq!(p.unregistered, AllowBlock::Block);
        assert_eq!(p.when_portal_unreachable, AllowBlock::Block);
        assert_eq!((p.max_devices_per_mailbox, p.blocked_response), (2, 456));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let cfg = DeviceAccessConfig {
            mode: "audit".into(),
            unregistered: "Allow".into(),
            max_devices_per_mailbox: 1001,
            when_portal_unreachable: "maybe".into(),
            blocked_response: 401,
            state_file: String::new(),
            max_associations: 0,
            flush_interval_s: 0,
            default_domain: "corp example".into(),
            domain_aliases: [("CORP".to_string(), "corp/example".to_string())].into(),
            opaque_credentials: "allow".into(),
        };
        let Err(AccessError::InvalidConfig { errors }) = cfg.validate() else {
            panic!("must fail")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "device_access.mode",
                "device_access.unregistered",
                "device_access.when_portal_unreachable",
                "device_access.max_devices_per_mailbox",
                "device_access.blocked_response",
                "device_access.state_file",
                "device_access.max_associations",
                "device_access.flush_interval_s",
                "device_access.opaque_credentials",
                "device_access.default_domain",
                "device_access.domain_aliases.CORP",
            ]
        );
        assert_eq!(errors[0].value, "audit");
        assert!(errors[0].allowed.contains("report-only"));
        assert!(toml::from_str::<DeviceAccessConfig>("bogus = 1").is_err());
    }

    #[test]
    fn aliases_need_a_default_domain() {
        let cfg = DeviceAccessConfig {
            domain_aliases: [("CORP".to_string(), "corp.example".to_string())].into(),
            ..DeviceAccessConfig::default()
        };
        let Err(AccessError::InvalidConfig { errors }) = cfg.validate() else {
            panic!("must fail")
        };
        assert_eq!(errors[0].field, "device_access.domain_aliases");
        let cfg = DeviceAccessConfig {
            default_domain: "corp.example".into(),
            ..cfg
        };
        let p = cfg.validate().unwrap();
        assert_eq!(p.naming.key("CORP\\Alice"), "alice@corp.example");
    }
}
