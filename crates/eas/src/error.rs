//! The crate's one error type. Every variant carries the failing value (clipped, so a hostile
//! request cannot blow up a log line) and [`EasError::fault`] says whose input was wrong, which is
//! what the gateway needs to pick an answer (400 / 401 to the device, 502 for a server's reply).

use crate::version::ProtocolVersion;

/// Longest value an error keeps verbatim; longer values are cut and marked with `…`.
const CLIP: usize = 64;

/// Cut a value for an error message (on a char boundary).
pub(crate) fn clip(value: &str) -> String {
    if value.len() <= CLIP {
        return value.to_owned();
    }
    let mut end = CLIP;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = value[..end].to_owned();
    s.push('…');
    s
}

/// Lossy, clipped text of raw bytes for an error message.
pub(crate) fn clip_bytes(value: &[u8]) -> String {
    let cut = &value[..value.len().min(CLIP)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if value.len() > CLIP {
        s.push('…');
    }
    s
}

/// Whose input was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The device sent something malformed: answer 400 (401 for credentials), never forward.
    Device,
    /// A server's response is malformed (e.g. a multipart body): answer 502.
    Server,
    /// The gateway asked a builder for something the protocol cannot express (a bug or bad config).
    Gateway,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EasError {
    // ---- request line ----
    #[error("HTTP method {method} is not used by ActiveSync (POST and OPTIONS are)")]
    UnsupportedMethod { method: String },
    #[error("the query has no Cmd parameter")]
    MissingCommand,
    #[error("unknown command name {name:?}")]
    UnknownCommand { name: String },
    #[error("unknown command code 0x{code:02x} in the base64 query")]
    UnknownCommandCode { code: u8 },
    #[error("the query has no DeviceId parameter")]
    MissingDeviceId,
    #[error("DeviceId {value:?} is {len} characters, over the limit of 32")]
    DeviceIdTooLong { value: String, len: usize },
    #[error(
        "DeviceId {value:?} has {ch:?} at position {position}; only ASCII letters, digits, '-' and '_' are allowed"
    )]
    DeviceIdInvalidChar {
        value: String,
        ch: char,
        position: usize,
    },
    #[error("the query has no DeviceType parameter")]
    MissingDeviceType,
    #[error("query parameter {name} has invalid value {value:?}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("query parameter {name} appears more than once")]
    DuplicateParameter { name: &'static str },
    #[error("invalid percent-encoding at byte {offset} of the query")]
    InvalidPercentEncoding { offset: usize },
    #[error("query parameter {name} is not UTF-8 after percent-decoding")]
    InvalidUtf8 { name: &'static str },

    // ---- base64 query (MS-ASHTTP 2.2.1.1.1.1) ----
    #[error("the base64 query {value:?} is not valid base64")]
    InvalidBase64 { value: String },
    #[error(
        "base64 query truncated in field {field} at offset {offset}: needs {needed} bytes, {available} left"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("base64 query field {field} at offset {offset}: {reason}")]
    InvalidField {
        field: &'static str,
        offset: usize,
        reason: &'static str,
    },
    #[error("base64 query policy key length {len} at offset {offset} (must be 0 or 4)")]
    InvalidPolicyKeyLength { len: u8, offset: usize },
    #[error("unknown command parameter tag {tag} at offset {offset} of the base64 query")]
    UnknownParameterTag { tag: u8, offset: usize },
    #[error("protocol version byte {byte} is not an ActiveSync version")]
    UnknownVersionByte { byte: u8 },
    #[error("protocol version {version} may not use the base64 query (12.1 and later only)")]
    Base64NotAllowed { version: ProtocolVersion },
    #[error("base64 query field {field} is {len} bytes, over the limit of 255")]
    FieldTooLong { field: &'static str, len: usize },

    // ---- headers ----
    #[error("unknown ActiveSync protocol version {value:?}")]
    UnknownVersion { value: String },
    #[error("header {name} has invalid value {value:?}: {expected}")]
    InvalidHeader {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("header {name} appears more than once")]
    DuplicateHeader { name: &'static str },
    #[error("header {name} ({header:?}) contradicts the base64 query ({query:?})")]
    Conflicting {
        name: &'static str,
        header: String,
        query: String,
    },
    #[error("Authorization header is malformed: {reason}")]
    InvalidAuthorization { reason: &'static str },

    // ---- bodies ----
    #[error("{command} body is not valid EAS WBXML: {detail}")]
    Wbxml {
        command: &'static str,
        detail: String,
    },
    #[error("{command} body starts with {found}, expected {expected}")]
    UnexpectedRoot {
        command: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{command} body element {element} has invalid value {value:?}: {expected}")]
    InvalidBodyValue {
        command: &'static str,
        element: &'static str,
        value: String,
        expected: &'static str,
    },

    // ---- multipart (MS-ASCMD 2.2.1.10.1) ----
    #[error(
        "multipart body truncated in {field} at offset {offset}: needs {needed} bytes, has {available}"
    )]
    MultipartTruncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error(
        "multipart part {index} (offset {offset}, length {len}) lies outside the {body_len}-byte body or inside its header"
    )]
    MultipartPartOutOfBounds {
        index: usize,
        offset: u32,
        len: u32,
        body_len: usize,
    },
    #[error("multipart body declares {count} parts (must be at least 1)")]
    MultipartNoParts { count: u32 },
    #[error("multipart body too large to describe with u32 offsets ({len} bytes)")]
    MultipartTooLarge { len: usize },

    // ---- builders ----
    #[error("cannot build {what}: {reason}")]
    Build { what: &'static str, reason: String },

    // ---- attachment control (issue 5) ----
    /// A rewrite under attachment control failed; its own `fault()` says whose.
    #[error(transparent)]
    Attachment(#[from] crate::attachment::AttachmentError),
}

impl EasError {
    /// Whose input caused this error.
    pub fn fault(&self) -> Fault {
        use EasError::*;
        match self {
            MultipartTruncated { .. }
            | MultipartPartOutOfBounds { .. }
            | MultipartNoParts { .. } => Fault::Server,
            MultipartTooLarge { .. } | FieldTooLong { .. } | Build { .. } => Fault::Gateway,
            Attachment(e) => e.fault(),
            _ => Fault::Device,
        }
    }

    /// The HTTP status the gateway should give the device when this error is the device's
    /// fault: 401 for credentials (so the client prompts), 400 for everything else.
    pub fn device_status(&self) -> u16 {
        match self {
            EasError::InvalidAuthorization { .. } => 401,
            _ => 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones_on_char_boundary() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.ends_with('…'));
        assert!(c.len() <= CLIP + '…'.len_utf8());
        assert_eq!(clip_bytes(&[0xff; 3]), "\u{fffd}\u{fffd}\u{fffd}");
        assert!(clip_bytes(&[b'a'; 100]).ends_with('…'));
    }

    #[test]
    fn faults_and_statuses() {
        assert_eq!(EasError::MissingCommand.fault(), Fault::Device);
        assert_eq!(EasError::MissingCommand.device_status(), 400);
        let auth = EasError::InvalidAuthorization { reason: "x" };
        assert_eq!(auth.device_status(), 401);
        assert_eq!(
            EasError::MultipartNoParts { count: 0 }.fault(),
            Fault::Server
        );
        let b = EasError::FieldTooLong {
            field: "DeviceId",
            len: 300,
        };
        assert_eq!(b.fault(), Fault::Gateway);
        assert!(b.to_string().contains("300"));
    }

    #[test]
    fn messages_name_the_failing_value() {
        let e = EasError::UnknownCommandCode { code: 0x2a };
        assert_eq!(
            e.to_string(),
            "unknown command code 0x2a in the base64 query"
        );
        let e = EasError::Truncated {
            field: "DeviceId",
            offset: 5,
            needed: 10,
            available: 3,
        };
        assert!(e.to_string().contains("DeviceId at offset 5"));
    }
}
