//! `[attachment_control]` configuration, validation and the platform classification of a
//! request (DeviceType / User-Agent → [`PlatformClass`] → [`Action`]).
//!
//! ```toml
//! [attachment_control]
//! enabled = false
//! exclusions = "ics,vcf"
//! max_nesting = 4
//! max_body_bytes = 33554432
//! on_oversize = "block"
//! [attachment_control.platform.ios_native]
//! action = "remove"
//! [attachment_control.platform.secure_apps]
//! action = "encrypt"
//! [attachment_control.platform.other]
//! action = "remove"
//! [attachment_control.encryption]
//! recipients = ["certs/attachment-reader.pem"]
//! # optional; replaces the default rules below when given
//! [[attachment_control.rules]]
//! class = "secure_apps"
//! device_type = "Boxer"
//! ```
//!
//! Default rules (first match wins; patterns are case-insensitive globs, `*` = any run):
//!
//! | class | DeviceType | User-Agent | client |
//! | --- | --- | --- | --- |
//! | secure_apps | `Outlook` | | Outlook for iOS / Android |
//! | secure_apps | | `Outlook-iOS/*`, `Outlook-Android/*` | Outlook mobile |
//! | secure_apps | `Boxer`, `WorkspaceONE*`, `AirWatch*` | `Boxer/*` | Workspace ONE Boxer (unverified names: check the audit log) |
//! | secure_apps | `EmailPlus*` | `EmailPlus*`, `Email+*` | Ivanti (MobileIron) Email+ (unverified names) |
//! | ios_native | `iPhone`, `iPad`, `iPod` | `Apple-iPhone*`, `Apple-iPad*`, `Apple-iPod*` | Apple Mail on iOS / iPadOS (UA `Apple-iPhone14C2/2001.48`) |
//! | other | `Android*`, `SAMSUNG*` | `Android-Mail/*`, `SAMSUNG-*`, `Nine*` | Gmail, Samsung Email, Nine, other Android apps |
//! | other | anything else | | |

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Decision, Exclusions, Policy, Recipients};

/// The platform class of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformClass {
    /// Apple Mail on iOS / iPadOS.
    IosNative,
    /// Managed / containerised apps (Outlook mobile, Workspace ONE Boxer, Ivanti Email+).
    SecureApps,
    /// Everything else (Android mail apps, desktop clients, unknown).
    Other,
}

/// What to do with attachments for a platform class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Pass attachments through.
    Deliver,
    /// Remove attachments (default: fail closed).
    #[default]
    Remove,
    /// Encrypt attachments to `encryption.recipients` (CMS, `.p7m`).
    Encrypt,
}

/// What to do with a body larger than `max_body_bytes` (or one that cannot be parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnOversize {
    /// Refuse the response (the device sees an error; nothing leaks). Default.
    #[default]
    Block,
    /// Pass the body through unchanged.
    Deliver,
}

/// `[attachment_control.platform.<class>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformPolicy {
    /// deliver | remove | encrypt. Default remove.
    pub action: Action,
}

/// `[attachment_control.platform]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformPolicies {
    /// Apple Mail on iOS. Default remove.
    pub ios_native: PlatformPolicy,
    /// Managed apps. Default encrypt.
    pub secure_apps: PlatformPolicy,
    /// Everything else. Default remove.
    pub other: PlatformPolicy,
}

impl Default for PlatformPolicies {
    fn default() -> Self {
        PlatformPolicies {
            ios_native: PlatformPolicy {
                action: Action::Remove,
            },
            secure_apps: PlatformPolicy {
                action: Action::Encrypt,
            },
            other: PlatformPolicy {
                action: Action::Remove,
            },
        }
    }
}

impl PlatformPolicies {
    /// The action of `class`.
    pub fn action(&self, class: PlatformClass) -> Action {
        match class {
            PlatformClass::IosNative => self.ios_native.action,
            PlatformClass::SecureApps => self.secure_apps.action,
            PlatformClass::Other => self.other.action,
        }
    }
}

/// `[attachment_control.encryption]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// PEM certificate files (RSA or EC P-256 keys) attachments are encrypted to; the gateway
    /// loads them and hands the bytes to [`Recipients::from_pem`] (one call per file, joined
    /// with [`Recipients::extend`]). Relative paths: to the config file.
    pub recipients: Vec<PathBuf>,
}

/// One classification rule: every given pattern must match (case-insensitive glob, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformRule {
    /// Class given to a matching request.
    pub class: PlatformClass,
    /// Pattern for the DeviceType query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Pattern for the User-Agent header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl PlatformRule {
    fn new(class: PlatformClass, device_type: Option<&str>, user_agent: Option<&str>) -> Self {
        PlatformRule {
            class,
            device_type: device_type.map(str::to_owned),
            user_agent: user_agent.map(str::to_owned),
        }
    }

    /// True if every given pattern matches (a missing value matches no pattern).
    pub fn matches(&self, device_type: Option<&str>, user_agent: Option<&str>) -> bool {
        let one = |pat: &Option<String>, value: Option<&str>| match pat {
            None => true,
            Some(p) => value.is_some_and(|v| glob_match(p, v)),
        };
        (self.device_type.is_some() || self.user_agent.is_some())
            && one(&self.device_type, device_type)
            && one(&self.user_agent, user_agent)
    }

    /// The default rules (see the module doc).
    pub fn defaults() -> Vec<PlatformRule> {
        use PlatformClass::*;
        let mut v = vec![
            PlatformRule::new(SecureApps, Some("Outlook"), None),
            PlatformRule::new(SecureApps, None, Some("Outlook-iOS/*")),
            PlatformRule::new(SecureApps, None, Some("Outlook-Android/*")),
            PlatformRule::new(SecureApps, Some("Boxer"), None),
            PlatformRule::new(SecureApps, Some("WorkspaceONE*"), None),
            PlatformRule::new(SecureApps, Some("AirWatch*"), None),
            PlatformRule::new(SecureApps, None, Some("Boxer/*")),
            PlatformRule::new(SecureApps, Some("EmailPlus*"), None),
            PlatformRule::new(SecureApps, None, Some("EmailPlus*")),
            PlatformRule::new(SecureApps, None, Some("Email+*")),
        ];
        for d in ["iPhone", "iPad", "iPod"] {
            v.push(PlatformRule::new(IosNative, Some(d), None));
        }
        for u in ["Apple-iPhone*", "Apple-iPad*", "Apple-iPod*"] {
            v.push(PlatformRule::new(IosNative, None, Some(u)));
        }
        for d in ["Android*", "SAMSUNG*"] {
            v.push(PlatformRule::new(Other, Some(d), None));
        }
        for u in ["Android-Mail/*", "SAMSUNG-*", "Nine*"] {
            v.push(PlatformRule::new(Other, None, Some(u)));
        }
        v
    }
}

/// Case-insensitive ASCII glob with `*` only; O(pattern × value) worst case, no recursion.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p = pattern.as_bytes();
    let v = value.as_bytes();
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&v[vi]) => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// `[attachment_control]` as in the config file. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentControlConfig {
    /// Master switch. Default false (everything delivered, nothing parsed).
    pub enabled: bool,
    /// File Name Exclusion List: comma-separated extensions always delivered as-is
    /// (case-insensitive, without dot). Default `"ics,vcf"`.
    pub exclusions: String,
    /// Embedded `message/rfc822` levels handled (0..=16); deeper = the whole embedded
    /// message is treated as one attachment. Default 4.
    pub max_nesting: u32,
    /// Largest response / request body (bytes) buffered for rewriting (1 KiB ..= 1 GiB).
    /// Default 33554432 (32 MiB).
    pub max_body_bytes: u64,
    /// block | deliver for bodies above `max_body_bytes` or that cannot be parsed. Default block.
    pub on_oversize: OnOversize,
    /// Action per platform class.
    pub platform: PlatformPolicies,
    /// Certificates for "encrypt".
    pub encryption: EncryptionConfig,
    /// Classification rules, first match wins; empty = [`PlatformRule::defaults`].
    pub rules: Vec<PlatformRule>,
}

impl Default for AttachmentControlConfig {
    fn default() -> Self {
        AttachmentControlConfig {
            enabled: false,
            exclusions: "ics,vcf".into(),
            max_nesting: 4,
            max_body_bytes: 32 << 20,
            on_oversize: OnOversize::Block,
            platform: PlatformPolicies::default(),
            encryption: EncryptionConfig::default(),
            rules: Vec::new(),
        }
    }
}

/// One configuration error: dotted field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Largest `max_nesting` accepted.
pub const MAX_NESTING_LIMIT: u32 = 16;
/// Largest `max_body_bytes` accepted (1 GiB).
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

impl AttachmentControlConfig {
    /// Checks every field; all errors at once (field paths under `attachment_control.`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: format!("attachment_control.{field}"),
                message,
            })
        };
        for ext in self.exclusions.split(',').map(str::trim) {
            let e = ext.trim_start_matches('.');
            if !e.is_empty()
                && (e.len() > 32
                    || !e
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            {
                err(
                    "exclusions",
                    format!(
                        "{ext:?} is not a file extension (letters, digits, '-', '_', at most 32)"
                    ),
                );
            }
        }
        if self.max_nesting > MAX_NESTING_LIMIT {
            err(
                "max_nesting",
                format!(
                    "{} is above the limit of {MAX_NESTING_LIMIT}",
                    self.max_nesting
                ),
            );
        }
        if !(1024..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            err(
                "max_body_bytes",
                format!("{} is outside 1024..={MAX_BODY_LIMIT}", self.max_body_bytes),
            );
        }
        let encrypts = [
            self.platform.ios_native.action,
            self.platform.secure_apps.action,
            self.platform.other.action,
        ]
        .contains(&Action::Encrypt);
        if self.enabled && encrypts && self.encryption.recipients.is_empty() {
            err(
                "encryption.recipients",
                "an action is \"encrypt\" but no recipient certificate is configured".into(),
            );
        }
        for (i, p) in self.encryption.recipients.iter().enumerate() {
            if p.as_os_str().is_empty() {
                err(&format!("encryption.recipients[{i}]"), "empty path".into());
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.device_type.is_none() && r.user_agent.is_none() {
                err(
                    &format!("rules[{i}]"),
                    "needs device_type or user_agent".into(),
                );
            }
            for (name, pat) in [
                ("device_type", &r.device_type),
                ("user_agent", &r.user_agent),
            ] {
                if let Some(p) = pat
                    && (p.is_empty() || p.len() > 256 || !p.is_ascii())
                {
                    err(
                        &format!("rules[{i}].{name}"),
                        format!("{p:?} must be 1..=256 ASCII characters"),
                    );
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// The compiled, immutable attachment control of one config generation: build it on every
/// reload (cheap), keep it in the gateway's swappable state, ask [`AttachmentControl::policy_for`]
/// per request.
#[derive(Debug, Clone)]
pub struct AttachmentControl {
    pub enabled: bool,
    pub on_oversize: OnOversize,
    pub platform: PlatformPolicies,
    rules: Vec<PlatformRule>,
    exclusions: Exclusions,
    max_nesting: usize,
    max_body_bytes: usize,
    recipients: Option<Arc<Recipients>>,
}

impl AttachmentControl {
    /// Compiles a validated config with the loaded recipient certificates (`None` if no
    /// action is encrypt). Errors: validation errors, or encrypt without recipients.
    pub fn new(
        config: &AttachmentControlConfig,
        recipients: Option<Arc<Recipients>>,
    ) -> Result<Self, Vec<FieldError>> {
        config.validate()?;
        let encrypts = [
            config.platform.ios_native.action,
            config.platform.secure_apps.action,
            config.platform.other.action,
        ]
        .contains(&Action::Encrypt);
        if config.enabled && encrypts && recipients.as_ref().is_none_or(|r| r.is_empty()) {
            return Err(vec![FieldError {
                field: "attachment_control.encryption.recipients".into(),
                message: "no certificate could be loaded".into(),
            }]);
        }
        Ok(AttachmentControl {
            enabled: config.enabled,
            on_oversize: config.on_oversize,
            platform: config.platform,
            rules: if config.rules.is_empty() {
                PlatformRule::defaults()
            } else {
                config.rules.clone()
            },
            exclusions: Exclusions::parse(&config.exclusions),
            max_nesting: config.max_nesting as usize,
            max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            recipients,
        })
    }

    /// The class of a request (first matching rule; [`PlatformClass::Other`] if none).
    pub fn classify(&self, device_type: Option<&str>, user_agent: Option<&str>) -> PlatformClass {
        classify(&self.rules, device_type, user_agent)
    }

    /// The policy for one request; `Deliver` when disabled.
    pub fn policy_for(&self, device_type: Option<&str>, user_agent: Option<&str>) -> Policy {
        let decision = if !self.enabled {
            Decision::Deliver
        } else {
            match self.platform.action(self.classify(device_type, user_agent)) {
                Action::Deliver => Decision::Deliver,
                Action::Remove => Decision::Remove,
                // `new` guarantees recipients when enabled; fail closed otherwise.
                Action::Encrypt => match &self.recipients {
                    Some(r) if !r.is_empty() => Decision::Encrypt(r.clone()),
                    _ => Decision::Remove,
                },
            }
        };
        Policy {
            decision,
            exclusions: self.exclusions.clone(),
            max_nesting: self.max_nesting,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// First matching rule's class, [`PlatformClass::Other`] if none.
pub fn classify(
    rules: &[PlatformRule],
    device_type: Option<&str>,
    user_agent: Option<&str>,
) -> PlatformClass {
    rules
        .iter()
        .find(|r| r.matches(device_type, user_agent))
        .map_or(PlatformClass::Other, |r| r.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("Apple-iPhone*", "apple-iphone14C2/2001.48"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("Outlook", "OUTLOOK"));
        assert!(!glob_match("Outlook", "Outlook2"));
    }

    #[test]
    fn default_classes() {
        let r = PlatformRule::defaults();
        let c = |d: Option<&str>, u: Option<&str>| classify(&r, d, u);
        assert_eq!(
            c(Some("iPhone"), Some("Apple-iPhone14C2/2001.48")),
            PlatformClass::IosNative
        );
        assert_eq!(c(Some("iPad"), None), PlatformClass::IosNative);
        assert_eq!(
            c(Some("Outlook"), Some("Outlook-iOS/2.0")),
            PlatformClass::SecureApps
        );
        assert_eq!(
            c(Some("iPhone"), Some("Outlook-iOS/2.0")),
            PlatformClass::SecureApps
        );
        assert_eq!(
            c(Some("Android"), Some("Outlook-Android/2.0")),
            PlatformClass::SecureApps
        );
        assert_eq!(
            c(Some("Android"), Some("Android-Mail/2023.1")),
            PlatformClass::Other
        );
        assert_eq!(
            c(Some("SAMSUNGSMG991B"), Some("SAMSUNG-SM-G991B/101.3")),
            PlatformClass::Other
        );
        assert_eq!(c(None, None), PlatformClass::Other);
    }
}
