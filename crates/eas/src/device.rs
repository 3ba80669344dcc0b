//! Identity values of a request: the DeviceId, the DeviceType and login names
//! (`DOMAIN\user`, `user@domain`). Validated once here so the gateway's access list, logs and
//! state file only ever see well-formed keys.

use std::fmt;

use crate::error::{EasError, clip};

/// Longest DeviceId accepted: 32 characters (the EAS client guidance; Exchange answers 108
/// DeviceIdMissingOrInvalid beyond it). A 16-byte binary GUID from a base64 query becomes 32 hex
/// digits, so it fits.
pub const MAX_DEVICE_ID: usize = 32;
/// Longest DeviceType accepted. MS-ASHTTP sets no number; 64 is generous for real types
/// (`iPhone`, `Android`, `SAMSUNGSMG991B`, `Outlook`).
pub const MAX_DEVICE_TYPE: usize = 64;
/// Longest `User` / login name accepted.
pub const MAX_USER: usize = 256;

/// A validated DeviceId: 1..=32 ASCII letters, digits, `-` or `_`. MS-ASHTTP 2.2.1.1.1.2.3 only
/// says "no commas or special characters"; this set covers every real client (iOS `ApplF17…`,
/// Android `androidc…`, GUID forms with hyphens) and keeps the value safe as a log field and map key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// Validate a textual DeviceId.
    pub fn parse(value: &str) -> Result<Self, EasError> {
        if value.is_empty() {
            return Err(EasError::MissingDeviceId);
        }
        let len = value.chars().count();
        if len > MAX_DEVICE_ID {
            return Err(EasError::DeviceIdTooLong {
                value: clip(value),
                len,
            });
        }
        if let Some((position, ch)) = value
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(EasError::DeviceIdInvalidChar {
                value: clip(value),
                ch,
                position,
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// DeviceId from the base64 query's bytes: text when the bytes are a valid textual id,
    /// otherwise (a binary GUID, as Windows Mobile sends) upper-case hex of the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EasError> {
        if bytes.is_empty() {
            return Err(EasError::MissingDeviceId);
        }
        if let Ok(text) = std::str::from_utf8(bytes)
            && let Ok(id) = Self::parse(text)
        {
            return Ok(id);
        }
        if bytes.iter().all(|b| b.is_ascii_graphic()) {
            // Printable but not a valid id: report it as text, not as hex.
            return Self::parse(&String::from_utf8_lossy(bytes));
        }
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push_str(&format!("{b:02X}"));
        }
        Self::parse(&hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validated id, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The access-list key: DeviceIds compare case-insensitively.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// Case-insensitive equality (how the access list compares DeviceIds).
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Validate a DeviceType: 1..=64 characters, no control characters, no comma.
pub fn validate_device_type(value: &str) -> Result<(), EasError> {
    if value.is_empty() {
        return Err(EasError::MissingDeviceType);
    }
    let bad = if value.chars().count() > MAX_DEVICE_TYPE {
        Some("at most 64 characters")
    } else if value.chars().any(|c| c.is_control() || c == ',') {
        Some("no control characters or commas")
    } else {
        None
    };
    match bad {
        Some(expected) => Err(EasError::InvalidParameter {
            name: "DeviceType",
            value: clip(value),
            expected,
        }),
        None => Ok(()),
    }
}

/// Validate a `User` value (query parameter or login name): 1..=256 characters, no control
/// characters (they would forge log lines).
pub fn validate_user(name: &'static str, value: &str) -> Result<(), EasError> {
    let bad = if value.is_empty() {
        Some("not empty")
    } else if value.chars().count() > MAX_USER {
        Some("at most 256 characters")
    } else if value.chars().any(char::is_control) {
        Some("no control characters")
    } else {
        None
    };
    match bad {
        Some(expected) => Err(EasError::InvalidParameter {
            name,
            value: clip(value),
            expected,
        }),
        None => Ok(()),
    }
}

/// How a login name was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginForm {
    /// `alice`
    Bare,
    /// `CORP\alice` (down-level logon name)
    DownLevel,
    /// `alice@corp.example` (user principal name)
    Upn,
}

/// A login name split into user and domain. The raw spelling is kept because servers and the
/// access list key on what the device sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName {
    pub raw: String,
    pub user: String,
    pub domain: Option<String>,
    pub form: LoginForm,
}

impl LoginName {
    /// Split `DOMAIN\user`, `user@domain` or `user`. A name with both (`CORP\a@b`) is down-level:
    /// the part after the backslash is the user, `@` and all.
    pub fn parse(raw: &str) -> Self {
        if let Some((domain, user)) = raw.split_once('\\')
            && !domain.is_empty()
            && !user.is_empty()
        {
            return Self {
                raw: raw.to_owned(),
                user: user.to_owned(),
                domain: Some(domain.to_owned()),
                form: LoginForm::DownLevel,
            };
        }
        if let Some((user, domain)) = raw.rsplit_once('@')
            && !domain.is_empty()
            && !user.is_empty()
        {
            return Self {
                raw: raw.to_owned(),
                user: user.to_owned(),
                domain: Some(domain.to_owned()),
                form: LoginForm::Upn,
            };
        }
        Self {
            raw: raw.to_owned(),
            user: raw.to_owned(),
            domain: None,
            form: LoginForm::Bare,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_accepts_real_ids() {
        for ok in [
            "v140Device",
            "ApplF17XYZ1234",
            "androidc1234567890",
            "B64DEV01",
            "a",
            "0123456789abcdef0123456789ABCDEF",
            "3a4b-77_x",
        ] {
            assert_eq!(DeviceId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn device_id_rejects_long_empty_and_special() {
        let long = "a".repeat(33);
        assert_eq!(
            DeviceId::parse(&long),
            Err(EasError::DeviceIdTooLong {
                value: long.clone(),
                len: 33
            })
        );
        assert_eq!(DeviceId::parse(""), Err(EasError::MissingDeviceId));
        assert_eq!(
            DeviceId::parse("ab,c"),
            Err(EasError::DeviceIdInvalidChar {
                value: "ab,c".into(),
                ch: ',',
                position: 2
            })
        );
        for bad in ["a b", "a/b", "a%b", "é", "a\nb", "a.b"] {
            assert!(
                matches!(
                    DeviceId::parse(bad),
                    Err(EasError::DeviceIdInvalidChar { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn device_id_compares_case_insensitively() {
        let d = DeviceId::parse("ApplXYZ").unwrap();
        assert!(d.matches("applxyz"));
        assert_eq!(d.key(), "applxyz");
        assert_eq!(format!("{d:?}"), "\"ApplXYZ\"");
        assert_eq!(d.to_string(), "ApplXYZ");
    }

    #[test]
    fn device_id_from_binary_guid_is_hex() {
        let guid = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            DeviceId::from_bytes(&guid).unwrap().as_str(),
            "00112233445566778899AABBCCDDEEFF"
        );
        assert_eq!(DeviceId::from_bytes(b"Dev1").unwrap().as_str(), "Dev1");
        assert!(matches!(
            DeviceId::from_bytes(b"a,b"),
            Err(EasError::DeviceIdInvalidChar { ch: ',', .. })
        ));
        assert!(matches!(
            DeviceId::from_bytes(&[0u8; 17]),
            Err(EasError::DeviceIdTooLong { len: 34, .. })
        ));
        assert_eq!(DeviceId::from_bytes(&[]), Err(EasError::MissingDeviceId));
    }

    #[test]
    fn device_type_rules() {
        assert!(validate_device_type("SmartPhone").is_ok());
        assert!(validate_device_type("SAMSUNG SM-G991B").is_ok());
        assert_eq!(validate_device_type(""), Err(EasError::MissingDeviceType));
        assert!(validate_device_type(&"x".repeat(65)).is_err());
        assert!(validate_device_type("a\u{7}").is_err());
        assert!(validate_device_type("a,b").is_err());
    }

    #[test]
    fn user_rules() {
        assert!(validate_user("User", "alice@corp.example").is_ok());
        assert!(validate_user("User", "").is_err());
        assert!(validate_user("User", "a\r\nb").is_err());
        assert!(validate_user("User", &"u".repeat(257)).is_err());
    }

    #[test]
    fn login_name_forms() {
        let n = LoginName::parse("CORP\\alice");
        assert_eq!(
            (n.user.as_str(), n.domain.as_deref(), n.form),
            ("alice", Some("CORP"), LoginForm::DownLevel)
        );
        let n = LoginName::parse("alice@corp.example");
        assert_eq!(
            (n.user.as_str(), n.domain.as_deref(), n.form),
            ("alice", Some("corp.example"), LoginForm::Upn)
        );
        let n = LoginName::parse("alice");
        assert_eq!(
            (n.user.as_str(), n.domain, n.form),
            ("alice", None, LoginForm::Bare)
        );
        let n = LoginName::parse("CORP\\a@b");
        assert_eq!((n.user.as_str(), n.form), ("a@b", LoginForm::DownLevel));
        // Degenerate separators stay bare.
        for raw in ["\\alice", "alice\\", "@corp", "alice@"] {
            assert_eq!(LoginName::parse(raw).form, LoginForm::Bare, "{raw}");
        }
        assert_eq!(LoginName::parse("CORP\\alice").raw, "CORP\\alice");
    }
}
