//! Limit Protocol Version (`activesync.limit_protocol_version`): the gateway removes versions
//! above the limit from `MS-ASProtocolVersions` (OPTIONS answers) and from `X-MS-RP` (any
//! answer), and clamps `MS-Server-ActiveSync` to it, so newly configured devices pick at most the
//! limit. Devices that already use a higher version are forwarded, logged and counted
//! (`easgate_requests_above_version_limit_total{version}`): the admin re-pushes the Exchange
//! profile to move them down.

use eas::ProtocolVersion;
use eas::headers::{MS_AS_PROTOCOL_VERSIONS, MS_SERVER_ACTIVESYNC, X_MS_RP};
use eas::options::{clamp_server_version, filter_protocol_versions};
use http::{HeaderMap, HeaderValue};

use crate::model::Runtime;
use crate::state::Gateway;

/// The configured limit (validated at load; an unparsable value means no limit).
pub fn limit(rt: &Runtime) -> Option<ProtocolVersion> {
    rt.activesync
        .limit_protocol_version
        .as_deref()
        .and_then(|v| ProtocolVersion::from_header(v).ok())
}

/// A device request: count and log it when it uses a version above the limit (it is forwarded).
pub fn note_request(gw: &Gateway, rt: &Runtime, version: Option<ProtocolVersion>, user: &str) {
    if let (Some(limit), Some(v)) = (limit(rt), version)
        && v > limit
    {
        gw.metrics.above_version_limit(v.as_str());
        tracing::info!(
            user = %crate::access::clip(user),
            version = v.as_str(),
            limit = limit.as_str(),
            "device uses a protocol version above limit_protocol_version; forwarded (re-push the Exchange profile to lower it)"
        );
    }
}

/// Filter a server's response headers to the limit. `options`: the answer to an OPTIONS request
/// (the version list is filtered there; `X-MS-RP` in every answer).
pub fn filter_response_headers(headers: &mut HeaderMap, limit: ProtocolVersion, options: bool) {
    if options {
        filter_list(headers, &MS_AS_PROTOCOL_VERSIONS, limit);
    }
    filter_list(headers, &X_MS_RP, limit);
    if let Some(v) = headers
        .get(&MS_SERVER_ACTIVESYNC)
        .and_then(|v| v.to_str().ok())
    {
        let clamped = clamp_server_version(v, limit);
        if clamped != v
            && let Ok(value) = HeaderValue::from_str(&clamped)
        {
            headers.insert(MS_SERVER_ACTIVESYNC, value);
        }
    } else if options && headers.contains_key(&MS_AS_PROTOCOL_VERSIONS) {
        headers.insert(
            MS_SERVER_ACTIVESYNC,
            HeaderValue::from_static(limit.as_str()),
        );
    }
}

fn filter_list(headers: &mut HeaderMap, name: &http::HeaderName, limit: ProtocolVersion) {
    if !headers.contains_key(name) {
        return;
    }
    // Several header lines are one comma list (RFC 9110 5.3).
    let joined = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let filtered = filter_protocol_versions(&joined, limit);
    match HeaderValue::from_str(&filtered) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_every_list_and_clamps_the_server_version() {
        let mut h = HeaderMap::new();
        h.insert(
            MS_AS_PROTOCOL_VERSIONS,
            HeaderValue::from_static("2.5,12.0,12.1,14.0,14.1,16.0,16.1"),
        );
        h.insert(X_MS_RP, HeaderValue::from_static("14.0,14.1,16.0"));
        h.insert(MS_SERVER_ACTIVESYNC, HeaderValue::from_static("16.1"));
        filter_response_headers(&mut h, ProtocolVersion::V14_0, true);
        assert_eq!(h[&MS_AS_PROTOCOL_VERSIONS], "2.5,12.0,12.1,14.0");
        assert_eq!(h[&X_MS_RP], "14.0");
        assert_eq!(h[&MS_SERVER_ACTIVESYNC], "14.0");
        let mut h = HeaderMap::new();
        h.insert(
            MS_AS_PROTOCOL_VERSIONS,
            HeaderValue::from_static("2.5,14.1"),
        );
        filter_response_headers(&mut h, ProtocolVersion::V14_0, false);
        assert_eq!(
            h[&MS_AS_PROTOCOL_VERSIONS], "2.5,14.1",
            "only OPTIONS answers"
        );
    }
}
