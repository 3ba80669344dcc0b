//! ActiveSync protocol versions (MS-ASHTTP 2.2.1.1.2.6): a closed set, ordered, so the gateway
//! can compare a device's version with a configured limit.

use std::fmt;
use std::str::FromStr;

use crate::error::{EasError, clip};

/// One ActiveSync protocol version. `Ord` follows the protocol's order (2.5 < 12.0 < … < 16.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V2_5,
    V12_0,
    V12_1,
    V14_0,
    V14_1,
    V16_0,
    V16_1,
}

impl ProtocolVersion {
    /// Every version, oldest first.
    pub const ALL: [ProtocolVersion; 7] = [
        Self::V2_5,
        Self::V12_0,
        Self::V12_1,
        Self::V14_0,
        Self::V14_1,
        Self::V16_0,
        Self::V16_1,
    ];

    /// The header spelling (`"14.1"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2_5 => "2.5",
            Self::V12_0 => "12.0",
            Self::V12_1 => "12.1",
            Self::V14_0 => "14.0",
            Self::V14_1 => "14.1",
            Self::V16_0 => "16.0",
            Self::V16_1 => "16.1",
        }
    }

    /// The base64 query's version byte: version × 10 (14.1 -> 141).
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::V2_5 => 25,
            Self::V12_0 => 120,
            Self::V12_1 => 121,
            Self::V14_0 => 140,
            Self::V14_1 => 141,
            Self::V16_0 => 160,
            Self::V16_1 => 161,
        }
    }

    /// Version from the base64 query's version byte.
    pub fn from_byte(byte: u8) -> Result<Self, EasError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_byte() == byte)
            .ok_or(EasError::UnknownVersionByte { byte })
    }

    /// Version from an `MS-ASProtocolVersion` header value (surrounding blanks ignored).
    pub fn from_header(value: &str) -> Result<Self, EasError> {
        let v = value.trim();
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == v)
            .ok_or_else(|| EasError::UnknownVersion { value: clip(value) })
    }

    /// Only 12.1 and later may use the base64 query (MS-ASHTTP 2.2.1.1.1.1).
    pub fn supports_base64_query(self) -> bool {
        self >= Self::V12_1
    }

    /// From 14.0 on, servers signal "provision first" with a WBXML Status (140/142/143/144)
    /// instead of HTTP 449 (MS-ASPROV 3.2.5.2).
    pub fn uses_status_for_provisioning(self) -> bool {
        self >= Self::V14_0
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtocolVersion {
    type Err = EasError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_header(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_byte_forms_round_trip() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::from_header(v.as_str()), Ok(v));
            assert_eq!(ProtocolVersion::from_byte(v.as_byte()), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
            assert_eq!(v.as_str().parse::<ProtocolVersion>(), Ok(v));
        }
    }

    #[test]
    fn spec_bytes() {
        assert_eq!(ProtocolVersion::from_byte(0x8c), Ok(ProtocolVersion::V14_0));
        assert_eq!(ProtocolVersion::from_byte(0x8d), Ok(ProtocolVersion::V14_1));
        assert_eq!(ProtocolVersion::from_byte(161), Ok(ProtocolVersion::V16_1));
        assert_eq!(
            ProtocolVersion::from_byte(150),
            Err(EasError::UnknownVersionByte { byte: 150 })
        );
    }

    #[test]
    fn header_trims_and_rejects_unknown() {
        assert_eq!(
            ProtocolVersion::from_header(" 14.1 "),
            Ok(ProtocolVersion::V14_1)
        );
        for bad in ["", "14", "14.10", "15.0", "2.50", "v14.1"] {
            assert_eq!(
                ProtocolVersion::from_header(bad),
                Err(EasError::UnknownVersion {
                    value: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn ordering_follows_protocol() {
        let mut sorted = ProtocolVersion::ALL;
        sorted.sort();
        assert_eq!(sorted, ProtocolVersion::ALL);
        assert!(ProtocolVersion::V2_5 < ProtocolVersion::V12_0);
        assert!(ProtocolVersion::V14_1 < ProtocolVersion::V16_0);
        assert!(!ProtocolVersion::V12_0.supports_base64_query());
        assert!(ProtocolVersion::V12_1.supports_base64_query());
        assert!(!ProtocolVersion::V12_1.uses_status_for_provisioning());
        assert!(ProtocolVersion::V14_0.uses_status_for_provisioning());
    }
}
