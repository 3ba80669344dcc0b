//! The OPTIONS answer (MS-ASHTTP 2.2.2.1.2.x) and the protocol version limit: the gateway
//! either answers OPTIONS itself or filters a server's version lists so devices pick at most
//! the configured version.

use http::HeaderValue;
use http::header::{ALLOW, HeaderName};

use crate::command::Command;
use crate::headers::{
    MS_AS_PROTOCOL_COMMANDS, MS_AS_PROTOCOL_VERSIONS, MS_SERVER_ACTIVESYNC, PUBLIC,
};
use crate::version::ProtocolVersion;

/// `MS-ASProtocolVersions` value listing every version up to `max` (`2.5,12.0,...,max`).
pub fn protocol_versions_value(max: ProtocolVersion) -> String {
    ProtocolVersion::ALL
        .iter()
        .filter(|v| **v <= max)
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `MS-ASProtocolCommands` value: every command a server of version `max` offers, in code order
/// (the order Exchange and SOGo list them).
pub fn protocol_commands_value(max: ProtocolVersion) -> String {
    Command::ALL
        .iter()
        .filter(|c| c.since() <= max)
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// The headers of a self-answered OPTIONS response, advertising at most `max`.
pub fn options_headers(max: ProtocolVersion) -> Vec<(HeaderName, HeaderValue)> {
    let text = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    vec![
        (ALLOW, HeaderValue::from_static("OPTIONS,POST")),
        (PUBLIC, HeaderValue::from_static("OPTIONS,POST")),
        (MS_SERVER_ACTIVESYNC, HeaderValue::from_static(max.as_str())),
        (MS_AS_PROTOCOL_VERSIONS, text(&protocol_versions_value(max))),
        (MS_AS_PROTOCOL_COMMANDS, text(&protocol_commands_value(max))),
    ]
}

/// Numeric form of a version token (`"14.1"` -> (14, 1)); `None` if it is not `N.N`.
fn numeric(token: &str) -> Option<(u16, u16)> {
    let (major, minor) = token.trim().split_once('.')?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(major) || !ok(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn numeric_limit(limit: ProtocolVersion) -> (u16, u16) {
    numeric(limit.as_str()).unwrap_or((0, 0))
}

/// Filter a server's `MS-ASProtocolVersions` / `X-MS-RP` list to the versions `<= limit`,
/// keeping the server's order and spelling and dropping tokens that are not versions.
/// Unknown but well-formed versions (e.g. a future `17.0`) compare numerically.
pub fn filter_protocol_versions(value: &str, limit: ProtocolVersion) -> String {
    let max = numeric_limit(limit);
    value
        .split(',')
        .map(str::trim)
        .filter(|t| numeric(t).is_some_and(|v| v <= max))
        .collect::<Vec<_>>()
        .join(",")
}

/// `MS-Server-ActiveSync` consistent with a limit: the server's value when it is not above the
/// limit, otherwise the limit. Values like `15.1 (Build 2507.6)` compare by their leading number.
pub fn clamp_server_version(value: &str, limit: ProtocolVersion) -> String {
    let lead = value.split_whitespace().next().unwrap_or("");
    // `14.1` / `15.1.2507.6`: compare major.minor.
    let mut it = lead.split('.');
    let parsed = match (it.next(), it.next()) {
        (Some(a), Some(b)) => numeric(&format!("{a}.{b}")),
        _ => None,
    };
    match parsed {
        Some(v) if v <= numeric_limit(limit) => value.to_owned(),
        _ => limit.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_up_to_max() {
        assert_eq!(
            protocol_versions_value(ProtocolVersion::V14_1),
            "2.5,12.0,12.1,14.0,14.1"
        );
        assert_eq!(protocol_versions_value(ProtocolVersion::V2_5), "2.5");
        assert_eq!(
            protocol_versions_value(ProtocolVersion::V16_1),
            "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
        );
    }

    #[test]
    fn commands_like_exchange() {
        let v = protocol_commands_value(ProtocolVersion::V14_1);
        assert!(v.starts_with("Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,"));
        assert!(v.ends_with("ItemOperations,Provision,ResolveRecipients,ValidateCert"));
        assert!(!v.contains("Find"));
        assert!(protocol_commands_value(ProtocolVersion::V16_1).ends_with(",ValidateCert,Find"));
    }

    #[test]
    fn options_header_set() {
        let h = options_headers(ProtocolVersion::V14_0);
        let get = |n: &HeaderName| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
                .unwrap()
        };
        assert_eq!(get(&MS_AS_PROTOCOL_VERSIONS), "2.5,12.0,12.1,14.0");
        assert_eq!(get(&MS_SERVER_ACTIVESYNC), "14.0");
        assert_eq!(get(&ALLOW), "OPTIONS,POST");
        assert_eq!(get(&PUBLIC), "OPTIONS,POST");
        assert!(get(&MS_AS_PROTOCOL_COMMANDS).contains("Ping"));
    }

    #[test]
    fn filter_server_lists() {
        let sogo = "2.5,12.0,12.1,14.0,14.1";
        assert_eq!(
            filter_protocol_versions(sogo, ProtocolVersion::V14_0),
            "2.5,12.0,12.1,14.0"
        );
        assert_eq!(filter_protocol_versions(sogo, ProtocolVersion::V16_1), sogo);
        assert_eq!(filter_protocol_versions(sogo, ProtocolVersion::V2_5), "2.5");
        assert_eq!(
            filter_protocol_versions(" 2.5, 12.0 ,16.1,17.0,junk,,1x.0", ProtocolVersion::V12_1),
            "2.5,12.0"
        );
        // 12.10 is not 12.1: numeric comparison of minor parts.
        assert_eq!(
            filter_protocol_versions("12.10,12.1", ProtocolVersion::V12_1),
            "12.1"
        );
        assert_eq!(filter_protocol_versions("", ProtocolVersion::V14_1), "");
    }

    #[test]
    fn clamp_server_header() {
        assert_eq!(clamp_server_version("14.1", ProtocolVersion::V16_1), "14.1");
        assert_eq!(clamp_server_version("14.1", ProtocolVersion::V14_0), "14.0");
        assert_eq!(
            clamp_server_version("15.1 (Build 2507.6)", ProtocolVersion::V14_1),
            "14.1"
        );
        assert_eq!(
            clamp_server_version("14.0.722.0", ProtocolVersion::V14_1),
            "14.0.722.0"
        );
        assert_eq!(
            clamp_server_version("garbage", ProtocolVersion::V14_1),
            "14.1"
        );
    }
}
