//! The base64-encoded query value of MS-ASHTTP 2.2.1.1.1.1, decoded and encoded.
//!
//! Layout: `[version][command][locale u16 LE][devid len][devid][key len 0|4][key u32 LE]
//! [devtype len][devtype]` then `[tag][len][value]` command parameters until the end. Every read
//! is bounds-checked and a short field is reported with its name and offset.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::command::{Command, CommandRef};
use crate::error::{EasError, clip, clip_bytes};
use crate::version::ProtocolVersion;

/// Standard alphabet; padding optional on input (some clients strip it), written on output.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Bits of the Options parameter (tag 7).
pub mod options {
    /// Save the sent message in Sent Items (SendMail, SmartForward, SmartReply).
    pub const SAVE_IN_SENT: u8 = 0x01;
    /// Answer ItemOperations in multipart form.
    pub const ACCEPT_MULTIPART: u8 = 0x02;
}

/// Command parameter tags (MS-ASHTTP 2.2.1.1.1.1.3). 2 and 5 are the legacy CollectionName /
/// ParentId of the 12.x collection commands; still decoded so old clients are not refused.
mod tag {
    pub const ATTACHMENT_NAME: u8 = 0;
    pub const COLLECTION_ID: u8 = 1;
    pub const COLLECTION_NAME: u8 = 2;
    pub const ITEM_ID: u8 = 3;
    pub const LONG_ID: u8 = 4;
    pub const PARENT_ID: u8 = 5;
    pub const OCCURRENCE: u8 = 6;
    pub const OPTIONS: u8 = 7;
    pub const USER: u8 = 8;
}

/// A decoded base64 query. Byte fields stay raw (`device_id` may be a binary GUID); the request
/// model ([`crate::EasRequest`]) validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Query {
    pub version: ProtocolVersion,
    /// Raw command code; see [`Base64Query::command`].
    pub command_code: u8,
    /// Response language (MS-LCID), e.g. 0x0409.
    pub locale: u16,
    pub device_id: Vec<u8>,
    pub policy_key: Option<u32>,
    pub device_type: Vec<u8>,
    pub attachment_name: Option<String>,
    pub collection_id: Option<String>,
    pub collection_name: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub parent_id: Option<String>,
    pub occurrence: Option<String>,
    /// Raw Options byte (see [`options`]); unknown bits are kept.
    pub options: Option<u8>,
    pub user: Option<String>,
}

impl Base64Query {
    /// A query with the fixed fields set and no parameters.
    pub fn new(
        version: ProtocolVersion,
        command: Command,
        locale: u16,
        device_id: &[u8],
        device_type: &[u8],
    ) -> Self {
        Self {
            version,
            command_code: command.code(),
            locale,
            device_id: device_id.to_vec(),
            policy_key: None,
            device_type: device_type.to_vec(),
            attachment_name: None,
            collection_id: None,
            collection_name: None,
            item_id: None,
            long_id: None,
            parent_id: None,
            occurrence: None,
            options: None,
            user: None,
        }
    }

    /// The command, known or raw.
    pub fn command(&self) -> CommandRef {
        CommandRef::from_code(self.command_code)
    }

    /// Options bit 0x01.
    pub fn save_in_sent(&self) -> bool {
        self.options.unwrap_or(0) & options::SAVE_IN_SENT != 0
    }

    /// Options bit 0x02.
    pub fn accept_multipart(&self) -> bool {
        self.options.unwrap_or(0) & options::ACCEPT_MULTIPART != 0
    }

    /// Decode a query string (the part after `?`). Percent-escapes are undone first (`%2B`,
    /// `%2F`, `%3D` appear when a client URL-encodes the value); `+` stays `+`.
    pub fn decode(query: &str) -> Result<Self, EasError> {
        let unescaped = crate::query::percent_decode(query.as_bytes(), false)?;
        let bytes = B64
            .decode(&unescaped)
            .map_err(|_| EasError::InvalidBase64 { value: clip(query) })?;
        Self::from_bytes(&bytes)
    }

    /// Decode the raw byte sequence.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EasError> {
        let mut r = Cursor { bytes, pos: 0 };
        let version_byte = r.u8("Protocol version")?;
        let version = ProtocolVersion::from_byte(version_byte)?;
        if !version.supports_base64_query() {
            return Err(EasError::Base64NotAllowed { version });
        }
        let command_code = r.u8("Command code")?;
        let locale = u16::from_le_bytes(r.array::<2>("Locale")?);
        let at = r.pos;
        let dev_len = r.u8("Device ID length")?;
        if dev_len == 0 {
            return Err(EasError::InvalidField {
                field: "Device ID length",
                offset: at,
                reason: "must be greater than 0",
            });
        }
        let device_id = r.take(usize::from(dev_len), "Device ID")?.to_vec();
        let at = r.pos;
        let key_len = r.u8("Policy key length")?;
        let policy_key = match key_len {
            0 => None,
            4 => Some(u32::from_le_bytes(r.array::<4>("Policy key")?)),
            len => return Err(EasError::InvalidPolicyKeyLength { len, offset: at }),
        };
        let type_len = r.u8("Device type length")?;
        let device_type = r.take(usize::from(type_len), "Device type")?.to_vec();

        let mut q = Self {
            version,
            command_code,
            locale,
            device_id,
            policy_key,
            device_type,
            attachment_name: None,
            collection_id: None,
            collection_name: None,
            item_id: None,
            long_id: None,
            parent_id: None,
            occurrence: None,
            options: None,
            user: None,
        };
        while r.pos < bytes.len() {
            let at = r.pos;
            let t = r.u8("parameter tag")?;
            let len = r.u8("parameter length")?;
            let value = r.take(usize::from(len), "parameter value")?;
            let (name, slot) = match t {
                tag::ATTACHMENT_NAME => ("AttachmentName", &mut q.attachment_name),
                tag::COLLECTION_ID => ("CollectionId", &mut q.collection_id),
                tag::COLLECTION_NAME => ("CollectionName", &mut q.collection_name),
                tag::ITEM_ID => ("ItemId", &mut q.item_id),
                tag::LONG_ID => ("LongId", &mut q.long_id),
                tag::PARENT_ID => ("ParentId", &mut q.parent_id),
                tag::OCCURRENCE => ("Occurrence", &mut q.occurrence),
                tag::USER => ("User", &mut q.user),
                tag::OPTIONS => {
                    if q.options.is_some() {
                        return Err(EasError::DuplicateParameter { name: "Options" });
                    }
                    let [bits] = value else {
                        return Err(EasError::InvalidField {
                            field: "Options",
                            offset: at,
                            reason: "length must be 1",
                        });
                    };
                    q.options = Some(*bits);
                    continue;
                }
                other => {
                    return Err(EasError::UnknownParameterTag {
                        tag: other,
                        offset: at,
                    });
                }
            };
            if slot.is_some() {
                return Err(EasError::DuplicateParameter { name });
            }
            let text = std::str::from_utf8(value).map_err(|_| EasError::InvalidParameter {
                name,
                value: clip_bytes(value),
                expected: "UTF-8 text",
            })?;
            *slot = Some(text.to_owned());
        }
        Ok(q)
    }

    /// The raw byte sequence. Fails when a field is longer than its one-byte length allows.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EasError> {
        if !self.version.supports_base64_query() {
            return Err(EasError::Build {
                what: "base64 query",
                reason: format!("version {} must use the plain query", self.version),
            });
        }
        if self.device_id.is_empty() {
            return Err(EasError::Build {
                what: "base64 query",
                reason: "DeviceId is empty".into(),
            });
        }
        let mut out = Vec::with_capacity(16 + self.device_id.len() + self.device_type.len());
        out.push(self.version.as_byte());
        out.push(self.command_code);
        out.extend_from_slice(&self.locale.to_le_bytes());
        push_field(&mut out, "DeviceId", &self.device_id)?;
        match self.policy_key {
            Some(k) => {
                out.push(4);
                out.extend_from_slice(&k.to_le_bytes());
            }
            None => out.push(0),
        }
        push_field(&mut out, "DeviceType", &self.device_type)?;
        let text_params = [
            (
                tag::ATTACHMENT_NAME,
                "AttachmentName",
                &self.attachment_name,
            ),
            (tag::COLLECTION_ID, "CollectionId", &self.collection_id),
            (
                tag::COLLECTION_NAME,
                "CollectionName",
                &self.collection_name,
            ),
            (tag::ITEM_ID, "ItemId", &self.item_id),
            (tag::LONG_ID, "LongId", &self.long_id),
            (tag::PARENT_ID, "ParentId", &self.parent_id),
            (tag::OCCURRENCE, "Occurrence", &self.occurrence),
        ];
        for (t, name, value) in text_params {
            if let Some(v) = value {
                out.push(t);
                push_field(&mut out, name, v.as_bytes())?;
            }
        }
        if let Some(bits) = self.options {
            out.extend_from_slice(&[tag::OPTIONS, 1, bits]);
        }
        if let Some(user) = &self.user {
            out.push(tag::USER);
            push_field(&mut out, "User", user.as_bytes())?;
        }
        Ok(out)
    }

    /// The query string (standard base64, padded), ready to follow `?`. `+`, `/` and `=` are
    /// legal in a URI query, so no further escaping is applied.
    pub fn encode(&self) -> Result<String, EasError> {
        Ok(B64.encode(self.to_bytes()?))
    }
}

fn push_field(out: &mut Vec<u8>, field: &'static str, value: &[u8]) -> Result<(), EasError> {
    let len = u8::try_from(value.len()).map_err(|_| EasError::FieldTooLong {
        field,
        len: value.len(),
    })?;
    out.push(len);
    out.extend_from_slice(value);
    Ok(())
}

/// Bounds-checked reader over the decoded bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EasError> {
        let available = self.bytes.len().saturating_sub(self.pos);
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(EasError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available,
            }),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EasError> {
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EasError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_decodes() {
        let q = Base64Query::decode("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l").unwrap();
        assert_eq!(q.version, ProtocolVersion::V14_0);
        assert_eq!(q.command(), CommandRef::Known(Command::Sync));
        assert_eq!(q.locale, 0x0409);
        assert_eq!(q.device_id, b"v140Device");
        assert_eq!(q.policy_key, None);
        assert_eq!(q.device_type, b"SmartPhone");
        assert_eq!(q.user, None);
        assert_eq!(q.encode().unwrap(), "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l");
    }

    #[test]
    fn sogo_verified_example_decodes() {
        let q = Base64Query::decode("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=").unwrap();
        assert_eq!(q.version, ProtocolVersion::V14_1);
        assert_eq!(q.command(), CommandRef::Known(Command::FolderSync));
        assert_eq!(q.device_id, b"B64DEV01");
        assert_eq!(q.device_type, b"curl");
        assert_eq!(q.user.as_deref(), Some("user1"));
        assert_eq!(q.encode().unwrap(), "jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=");
        // Unpadded and percent-escaped padding decode the same.
        assert_eq!(
            Base64Query::decode("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE").unwrap(),
            q
        );
        assert_eq!(
            Base64Query::decode("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE%3D").unwrap(),
            q
        );
    }

    fn base() -> Vec<u8> {
        // 14.1 ItemOperations, locale 0x0409, DeviceId "D1", key 0x01020304, type "T".
        vec![141, 19, 0x09, 0x04, 2, b'D', b'1', 4, 4, 3, 2, 1, 1, b'T']
    }

    #[test]
    fn policy_key_and_parameters() {
        let mut b = base();
        b.extend_from_slice(&[7, 1, 0x03]); // Options: SaveInSent|AcceptMultiPart
        b.extend_from_slice(&[0, 3, b'a', b'/', b'b']); // AttachmentName
        b.extend_from_slice(&[1, 1, b'5', 3, 2, b'9', b'9', 4, 1, b'L', 6, 1, b'O']);
        b.extend_from_slice(&[2, 1, b'N', 5, 1, b'P', 8, 1, b'u']);
        let q = Base64Query::from_bytes(&b).unwrap();
        assert_eq!(q.policy_key, Some(0x0102_0304));
        assert_eq!(q.command(), CommandRef::Known(Command::ItemOperations));
        assert!(q.save_in_sent() && q.accept_multipart());
        assert_eq!(q.attachment_name.as_deref(), Some("a/b"));
        assert_eq!(q.collection_id.as_deref(), Some("5"));
        assert_eq!(q.item_id.as_deref(), Some("99"));
        assert_eq!(q.long_id.as_deref(), Some("L"));
        assert_eq!(q.occurrence.as_deref(), Some("O"));
        assert_eq!(q.collection_name.as_deref(), Some("N"));
        assert_eq!(q.parent_id.as_deref(), Some("P"));
        assert_eq!(q.user.as_deref(), Some("u"));
        let again = Base64Query::from_bytes(&q.to_bytes().unwrap()).unwrap();
        assert_eq!(again, q);
    }

    #[test]
    fn every_truncation_names_its_field_and_offset() {
        let full = base();
        let expect = [
            (0, "Protocol version"),
            (1, "Command code"),
            (2, "Locale"),
            (3, "Locale"),
            (4, "Device ID length"),
            (5, "Device ID"),
            (6, "Device ID"),
            (7, "Policy key length"),
            (8, "Policy key"),
            (11, "Policy key"),
            (12, "Device type length"),
            (13, "Device type"),
        ];
        for (cut, field) in expect {
            match Base64Query::from_bytes(&full[..cut]) {
                Err(EasError::Truncated { field: f, .. }) => assert_eq!(f, field, "cut {cut}"),
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        let e = Base64Query::from_bytes(&full[..6]).unwrap_err();
        assert_eq!(
            e,
            EasError::Truncated {
                field: "Device ID",
                offset: 5,
                needed: 2,
                available: 1
            }
        );
        // Truncated parameters.
        let mut b = full.clone();
        b.push(8);
        assert!(matches!(
            Base64Query::from_bytes(&b),
            Err(EasError::Truncated {
                field: "parameter length",
                offset: 15,
                ..
            })
        ));
        b.extend_from_slice(&[5, b'a']);
        assert!(matches!(
            Base64Query::from_bytes(&b),
            Err(EasError::Truncated {
                field: "parameter value",
                needed: 5,
                available: 1,
                ..
            })
        ));
    }

    #[test]
    fn field_errors() {
        let mut b = base();
        b[4] = 0;
        assert!(matches!(
            Base64Query::from_bytes(&b),
            Err(EasError::InvalidField {
                field: "Device ID length",
                offset: 4,
                ..
            })
        ));
        let mut b = base();
        b[7] = 2;
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::InvalidPolicyKeyLength { len: 2, offset: 7 })
        );
        let mut b = base();
        b[0] = 99;
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::UnknownVersionByte { byte: 99 })
        );
        let mut b = base();
        b[0] = 120;
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::Base64NotAllowed {
                version: ProtocolVersion::V12_0
            })
        );
        let mut b = base();
        b.extend_from_slice(&[9, 0]);
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::UnknownParameterTag { tag: 9, offset: 14 })
        );
        let mut b = base();
        b.extend_from_slice(&[7, 2, 1, 1]);
        assert!(matches!(
            Base64Query::from_bytes(&b),
            Err(EasError::InvalidField {
                field: "Options",
                ..
            })
        ));
        let mut b = base();
        b.extend_from_slice(&[7, 1, 1, 7, 1, 2]);
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::DuplicateParameter { name: "Options" })
        );
        let mut b = base();
        b.extend_from_slice(&[8, 1, b'a', 8, 1, b'b']);
        assert_eq!(
            Base64Query::from_bytes(&b),
            Err(EasError::DuplicateParameter { name: "User" })
        );
        let mut b = base();
        b.extend_from_slice(&[8, 1, 0xff]);
        assert!(matches!(
            Base64Query::from_bytes(&b),
            Err(EasError::InvalidParameter { name: "User", .. })
        ));
    }

    #[test]
    fn unknown_command_code_is_kept_raw() {
        let mut b = base();
        b[1] = 0x40;
        let q = Base64Query::from_bytes(&b).unwrap();
        assert_eq!(q.command(), CommandRef::UnknownCode(0x40));
        assert_eq!(
            q.command().known(),
            Err(EasError::UnknownCommandCode { code: 0x40 })
        );
    }

    #[test]
    fn invalid_base64_is_reported() {
        for bad in ["!!!!", "jAAJ*", "a", "%zz"] {
            assert!(
                matches!(
                    Base64Query::decode(bad),
                    Err(EasError::InvalidBase64 { .. } | EasError::InvalidPercentEncoding { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn encoder_rejects_oversized_fields_and_old_versions() {
        let mut q = Base64Query::new(ProtocolVersion::V14_1, Command::Ping, 0x0409, b"D", b"T");
        q.user = Some("u".repeat(256));
        assert_eq!(
            q.encode(),
            Err(EasError::FieldTooLong {
                field: "User",
                len: 256
            })
        );
        q.user = Some("u".repeat(255));
        assert!(q.encode().is_ok());
        let q = Base64Query::new(ProtocolVersion::V12_0, Command::Ping, 0, b"D", b"T");
        assert!(matches!(q.encode(), Err(EasError::Build { .. })));
        let q = Base64Query::new(ProtocolVersion::V14_1, Command::Ping, 0, b"", b"T");
        assert!(matches!(q.encode(), Err(EasError::Build { .. })));
    }
}
