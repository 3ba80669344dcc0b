//! Issue 4, Limit Protocol Version over real sockets: for every limit value (2.5 … 16.1) the
//! OPTIONS answer lists only versions up to it and `MS-Server-ActiveSync` matches; `X-MS-RP` is
//! filtered in any answer; a device already on a higher version is forwarded and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use eas::ProtocolVersion;
use http::{Request, StatusCode};
use support::*;

const ALL: &str = "2.5,12.0,12.1,14.0,14.1,16.0,16.1";

async fn server_16_1() -> Backend {
    backend(handler(|_| async {
        let mut r = reply(200, "");
        let h = r.headers_mut();
        h.insert("ms-asprotocolversions", ALL.parse().unwrap());
        h.insert("ms-server-activesync", "16.1".parse().unwrap());
        h.insert("x-ms-rp", ALL.parse().unwrap());
        h.insert(
            "ms-asprotocolcommands",
            "Sync,FolderSync,Ping".parse().unwrap(),
        );
        r
    }))
    .await
}

fn options() -> Request<TBody> {
    Request::options("/Microsoft-Server-ActiveSync")
        .header("host", "gw.test")
        .body(empty())
        .unwrap()
}

#[tokio::test]
async fn options_answers_are_filtered_for_every_limit_value() {
    let b = server_16_1().await;
    for limit in ProtocolVersion::ALL {
        let mut rt = runtime(&[b.server()]);
        rt.activesync.limit_protocol_version = Some(limit.as_str().into());
        let gw = start(rt).await;
        let mut d = device(gw.addr, None, false).await;
        let (st, h, _) = d.send(options()).await;
        assert_eq!(st, StatusCode::OK);
        let expected: Vec<&str> = ProtocolVersion::ALL
            .iter()
            .filter(|v| **v <= limit)
            .map(|v| v.as_str())
            .collect();
        let expected = expected.join(",");
        assert_eq!(
            h["ms-asprotocolversions"],
            expected.as_str(),
            "limit {limit}"
        );
        assert_eq!(h["x-ms-rp"], expected.as_str(), "limit {limit}");
        assert_eq!(h["ms-server-activesync"], limit.as_str(), "limit {limit}");
        assert_eq!(h["ms-asprotocolcommands"], "Sync,FolderSync,Ping");
    }
    // No limit: unchanged.
    let gw = start(runtime(&[b.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (_, h, _) = d.send(options()).await;
    assert_eq!(h["ms-asprotocolversions"], ALL);
    assert_eq!(h["ms-server-activesync"], "16.1");
}

#[tokio::test]
async fn x_ms_rp_is_filtered_in_any_answer_and_higher_version_devices_are_forwarded_and_counted() {
    let b = server_16_1().await;
    let mut rt = runtime(&[b.server()]);
    rt.activesync.limit_protocol_version = Some("14.0".into());
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let (st, h, _) = d
        .send(eas_v("FolderSync", "vic", "V1", "16.1", empty()))
        .await;
    assert_eq!(st, StatusCode::OK, "forwarded");
    assert_eq!(h["x-ms-rp"], "2.5,12.0,12.1,14.0");
    assert_eq!(
        h["ms-asprotocolversions"], ALL,
        "only OPTIONS answers carry the advertised list"
    );
    assert_eq!(b.count(), 1);
    assert_eq!(b.seen()[0].headers["ms-asprotocolversion"], "16.1");
    d.send(eas_v("Sync", "vic", "V1", "16.1", empty())).await;
    d.send(eas_v("Sync", "vic", "V2", "14.0", empty())).await;
    let text = gw.gw.metrics.render();
    assert!(
        text.contains("easgate_requests_above_version_limit_total{version=\"16.1\"} 2"),
        "{text}"
    );
    assert!(!text.contains("easgate_requests_above_version_limit_total{version=\"14.0\"}"));
}
