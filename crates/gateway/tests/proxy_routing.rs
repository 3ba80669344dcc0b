//! Issue 3, item 2 (routing): the Host header (or HTTP/2 `:authority`), port stripped, compared
//! case-insensitively with the service names; no match → the `default` service.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use http::StatusCode;
use support::*;

fn named(name: &'static str) -> Handler {
    handler(move |_s: Seen| async move { reply(200, name) })
}

#[tokio::test]
async fn host_header_picks_the_service_and_unknown_hosts_go_to_default() {
    let def = backend(named("default")).await;
    let eu = backend(named("eu")).await;
    let tls = device_tls();
    let mut rt = runtime(&[def.server()]);
    rt.activesync
        .services
        .push(service("mail-eu.example.com", &[eu.server()]));
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), false).await;

    for (host, want) in [
        ("mail-eu.example.com", "eu"),
        ("MAIL-EU.Example.COM", "eu"),
        ("mail-eu.example.com:443", "eu"),
        ("mail-eu.example.com.", "eu"),
        ("mail.example.com", "default"),
        ("127.0.0.1:8443", "default"),
        ("default", "default"),
    ] {
        let (status, _, body) = d.send(eas(host, "FolderSync", "u", "D1", empty())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], want.as_bytes(), "host {host}");
    }
    assert_eq!(eu.count(), 4);
    assert_eq!(def.count(), 3);
}

#[tokio::test]
async fn http2_authority_picks_the_service() {
    let def = backend(named("default")).await;
    let eu = backend(named("eu")).await;
    let tls = device_tls();
    let mut rt = runtime(&[def.server()]);
    rt.activesync
        .services
        .push(service("mail-eu.example.com", &[eu.server()]));
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), true).await;
    let (status, _, body) = d
        .send(eas_h2("Mail-EU.example.com:443", "Sync", empty()))
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"eu"[..]));
    let (_, _, body) = d.send(eas_h2("other.example.com", "Sync", empty())).await;
    assert_eq!(&body[..], b"default");
    // The server gets its own host name, never the device's absolute URI.
    assert_eq!(eu.seen()[0].headers["host"], eu.server().to_string());
    assert!(
        eu.seen()[0]
            .uri
            .starts_with("/Microsoft-Server-ActiveSync?")
    );
}
