//! Issue 4, bad input: random query strings and ActiveSync headers through the real HTTP layer.
//! The gateway answers 4xx or forwards, never panics (it keeps answering), and never forwards a
//! request that does not name a valid DeviceId: everything the backend receives parses with
//! `eas::EasRequest` and has one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::Arc;

use base64::Engine as _;
use http::{Method, Request, StatusCode, Uri};
use proptest::prelude::*;
use support::*;

fn query_strategy() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("Cmd".to_string()),
        Just("User".to_string()),
        Just("DeviceId".to_string()),
        Just("DeviceType".to_string()),
        Just("deviceid".to_string()),
        Just("CollectionId".to_string()),
        Just("SaveInSent".to_string()),
        "[A-Za-z]{0,6}",
    ];
    let value = prop_oneof![
        Just("Sync".to_string()),
        Just("Ping".to_string()),
        Just("Dev1".to_string()),
        "[A-Za-z0-9_-]{0,40}",
        "[A-Za-z0-9%+._~!$'()*,;:@/?=-]{0,24}",
    ];
    let pair =
        (key, value, any::<bool>()).prop_map(|(k, v, eq)| if eq { format!("{k}={v}") } else { k });
    let plain = prop::collection::vec(pair, 0..7).prop_map(|v| v.join("&"));
    let b64 = prop::collection::vec(any::<u8>(), 0..60)
        .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    // A valid base64 query head with random tail bytes.
    let b64_head = prop::collection::vec(any::<u8>(), 0..30).prop_map(|tail| {
        let mut b = vec![
            141u8, 9, 9, 4, 4, b'D', b'E', b'V', b'1', 0, 4, b'c', b'u', b'r', b'l',
        ];
        b.extend(tail);
        base64::engine::general_purpose::STANDARD.encode(b)
    });
    prop_oneof![plain, b64, b64_head, "[ -~]{0,40}"]
}

fn header_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("ms-asprotocolversion"),
        Just("x-ms-policykey"),
        Just("authorization"),
        Just("ms-asacceptmultipart"),
        Just("user-agent"),
    ];
    let value = prop_oneof![
        Just("14.1".to_string()),
        Just("Basic dXNlcjE6c2VjcmV0".to_string()),
        "[ -~]{0,20}",
    ];
    prop::collection::vec((name, value).prop_map(|(n, v)| (n.to_string(), v)), 0..4)
}

#[test]
fn random_queries_and_headers_are_refused_or_forwarded_with_a_valid_device_id() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (b, gw) = rt.block_on(async {
        let b = backend(handler(|_| async { reply(200, "") })).await;
        let gw = start(runtime(&[b.server()])).await;
        (b, gw)
    });
    let b = Arc::new(b);
    let config = ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(q in query_strategy(), headers in header_strategy(), post in any::<bool>())| {
        let uri = format!("/Microsoft-Server-ActiveSync?{q}");
        prop_assume!(uri.parse::<Uri>().is_ok());
        let mut req = Request::builder()
            .method(if post { Method::POST } else { Method::PUT })
            .uri(uri.as_str())
            .header("host", "gw.test");
        for (n, v) in &headers {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                req = req.header(n.as_str(), v);
            }
        }
        let req = req.body(empty()).unwrap();
        let before = b.count();
        let status = rt.block_on(async {
            let mut d = device(gw.addr, None, false).await;
            d.send(req).await.0
        });
        let after = b.count();
        if after > before {
            prop_assert_eq!(status, StatusCode::OK);
            let seen = b.seen().pop().unwrap();
            let parsed = eas::EasRequest::parse(&seen.method, &seen.uri.parse().unwrap(), &seen.headers);
            prop_assert!(parsed.as_ref().is_ok_and(|r| r.device_id.is_some()), "forwarded {uri}: {parsed:?}");
        } else {
            prop_assert!(status.is_client_error(), "{uri} -> {status}");
        }
    });
    // Still answering after all of it.
    let st = rt.block_on(async {
        let mut d = device(gw.addr, None, false).await;
        d.send(eas("gw.test", "Sync", "u", "D1", empty())).await.0
    });
    assert_eq!(st, StatusCode::OK);
}
