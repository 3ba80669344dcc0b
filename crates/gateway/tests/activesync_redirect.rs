//! Issue 4, 451 redirect processing over real sockets: an allowed 451 is followed (the same
//! request replayed at the target, the device never sees the 451) and remembered for the user;
//! with redirect processing off the 451 passes unchanged; a 451 to a host outside the service's
//! servers and `redirect_allowed_hosts` is refused with 502 and the target sees nothing; a body
//! too large to replay lets the 451 through; a blocked device never reaches a 451 target.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::net::SocketAddr;

use http::{Request, StatusCode};
use support::*;

/// A server that answers every request with 451 to `location`.
async fn moved(location: String) -> Backend {
    backend(handler(move |_| {
        let location = location.clone();
        async move {
            let mut r = reply(451, "");
            r.headers_mut()
                .insert("x-ms-location", location.parse().unwrap());
            r
        }
    }))
    .await
}

async fn echo() -> Backend {
    backend(handler(|s| async move {
        let mut r = reply(200, s.body.clone());
        r.headers_mut()
            .insert("x-served-by", "target".parse().unwrap());
        r
    }))
    .await
}

fn location(addr: SocketAddr) -> String {
    format!("http://{addr}/Microsoft-Server-ActiveSync")
}

async fn post(
    gw: &RunningGateway,
    user: &str,
    dev: &str,
    body: &'static [u8],
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let mut d = device(gw.addr, None, false).await;
    d.send(eas("gw.test", "Sync", user, dev, full(body))).await
}

#[tokio::test]
async fn an_allowed_451_is_followed_replayed_and_remembered_for_the_user() {
    let target = echo().await;
    let origin = moved(location(target.addr)).await;
    let mut rt = runtime(&[origin.server()]);
    rt.source.activesync.redirect_allowed_hosts = vec![target.addr.to_string()];
    let gw = start(rt).await;

    let (st, h, body) = post(&gw, "olga", "P1", b"sync-body").await;
    assert_eq!(st, StatusCode::OK, "the device never sees the 451");
    assert_eq!(h["x-served-by"], "target");
    assert!(h.get("x-ms-location").is_none());
    assert_eq!(&body[..], b"sync-body");
    assert_eq!(origin.count(), 1);
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, http::Method::POST);
    assert_eq!(
        s.uri,
        "/Microsoft-Server-ActiveSync?Cmd=Sync&User=olga&DeviceId=P1&DeviceType=iPhone"
    );
    assert_eq!(&s.body[..], b"sync-body");
    assert_eq!(s.headers["host"], target.addr.to_string());
    assert_eq!(s.headers["ms-asprotocolversion"], "14.1");

    // Later requests of that user go straight to the target.
    let (st, _, _) = post(&gw, "OLGA", "P2", b"again").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        origin.count(),
        1,
        "remembered: the origin is not asked again"
    );
    assert_eq!(target.count(), 2);
    // Another user still starts at the service's server.
    post(&gw, "pete", "P3", b"x").await;
    assert_eq!(origin.count(), 2);
    let text = gw.gw.metrics.render();
    assert!(
        text.contains("easgate_redirects_total{outcome=\"followed\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_451_to_another_server_of_the_service_needs_no_allow_list_entry() {
    let target = echo().await;
    let origin = moved(location(target.addr)).await;
    let gw = start(runtime(&[origin.server(), target.server()])).await;
    let (st, _, body) = post(&gw, "quin", "Q1", b"q").await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"q"[..]));
    assert_eq!((origin.count(), target.count()), (1, 1));
}

#[tokio::test]
async fn with_redirect_processing_off_the_451_passes_unchanged() {
    let target = echo().await;
    let loc = location(target.addr);
    let origin = moved(loc.clone()).await;
    let mut rt = runtime(&[origin.server()]);
    rt.activesync.redirect_processing = false;
    rt.source.activesync.redirect_allowed_hosts = vec![target.addr.to_string()];
    let gw = start(rt).await;
    let (st, h, _) = post(&gw, "rita", "R1", b"r").await;
    assert_eq!(st.as_u16(), 451);
    assert_eq!(h["x-ms-location"], loc.as_str());
    assert_eq!(target.count(), 0);
}

#[tokio::test]
async fn a_451_outside_the_allow_list_is_refused_with_502_and_never_followed() {
    let target = echo().await;
    for loc in [
        location(target.addr),
        "https://evil.example/Microsoft-Server-ActiveSync".to_string(),
        format!("http://{}/owa/", target.addr),
        "not a url".to_string(),
    ] {
        let origin = moved(loc.clone()).await;
        let mut rt = runtime(&[origin.server()]);
        rt.source.activesync.redirect_allowed_hosts = vec!["mail2.corp.example".into()];
        let gw = start(rt).await;
        let (st, h, _) = post(&gw, "sam", "S1", b"s").await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{loc}");
        assert!(h.get("x-ms-location").is_none());
        assert!(gw.gw.redirects.is_empty());
    }
    assert_eq!(target.count(), 0, "the unlisted host saw nothing");
}

#[tokio::test]
async fn a_body_too_large_to_replay_lets_the_451_through() {
    let target = echo().await;
    let loc = location(target.addr);
    let origin = moved(loc.clone()).await;
    let mut rt = runtime(&[origin.server()]);
    rt.source.activesync.redirect_allowed_hosts = vec![target.addr.to_string()];
    let gw = start(rt).await;
    let big = vec![b'x'; gateway::redirect::REPLAY_MAX_BYTES + 1];
    let mut d = device(gw.addr, None, false).await;
    let (st, h, _) = d
        .send(eas("gw.test", "SendMail", "tess", "T1", full(big)))
        .await;
    assert_eq!(st.as_u16(), 451);
    assert_eq!(h["x-ms-location"], loc.as_str());
    assert_eq!(target.count(), 0);
    assert_eq!(
        origin.seen()[0].body.len(),
        gateway::redirect::REPLAY_MAX_BYTES + 1
    );
}

#[tokio::test]
async fn a_blocked_device_never_reaches_a_remembered_451_target() {
    let target = echo().await;
    let origin = moved(location(target.addr)).await;
    let mut rt = runtime(&[origin.server()]);
    rt.source.activesync.redirect_allowed_hosts = vec![target.addr.to_string()];
    let gw = start(rt).await;
    assert_eq!(post(&gw, "uma", "U1", b"u").await.0, StatusCode::OK);
    assert_eq!(target.count(), 1);
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"uma","device_id":"U1","state":"blocked"}]}"#)
        .await
        .unwrap();
    assert_eq!(post(&gw, "uma", "U1", b"u").await.0, StatusCode::FORBIDDEN);
    assert_eq!((origin.count(), target.count()), (1, 1));
    // A redirect target that is no longer allowed is forgotten, not used.
    let rt2 = {
        let mut rt = (*gw.gw.current()).clone();
        rt.source.activesync.redirect_allowed_hosts.clear();
        rt
    };
    gw.gw.runtime.store(std::sync::Arc::new(rt2));
    let (st, _, _) = post(&gw, "uma", "U2", b"u").await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(target.count(), 1);
    let _ = Request::<()>::default();
}
