//! Issue 3, item 6 (server TLS): SNI and host-name verification against the configured roots;
//! a verification failure is a connect failure (next server, nothing sent) and is reported with
//! the names the certificate was issued to.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use gateway::model::ServerAddr;
use http::StatusCode;
use support::*;

fn ok() -> Handler {
    handler(|_s: Seen| async move { reply(200, "tls-ok") })
}

#[tokio::test]
async fn sni_and_verified_name() {
    let (cfg, cert) = server_config(&["localhost"], &[]);
    let be = backend_tls(ok(), cfg).await;
    let mut rt = runtime(&[ServerAddr {
        host: "localhost".into(),
        port: be.addr.port(),
    }]);
    rt.activesync.server_tls = Some(client_config(&cert, &[]));
    let tls = device_tls();
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), false).await;
    let (status, _, body) = d
        .send(eas("mail.example.com", "FolderSync", "u", "D1", empty()))
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"tls-ok"[..]));
    assert_eq!(
        be.sni.lock()[0].as_deref(),
        Some("localhost"),
        "SNI is the server's host name"
    );
    assert_eq!(
        be.seen()[0].headers["host"],
        format!("localhost:{}", be.addr.port())
    );
}

#[tokio::test]
async fn name_mismatch_is_reported_with_the_certificate_names_and_moves_on() {
    let (bad_cfg, bad_cert) = server_config(&["other.example", "www.other.example"], &[]);
    let bad = backend_tls(ok(), bad_cfg).await;
    let (good_cfg, good_cert) = server_config(&["127.0.0.1"], &[]);
    let good = backend_tls(
        handler(|_s: Seen| async move { reply(200, "good") }),
        good_cfg,
    )
    .await;

    // Both certificates are trusted; only the host name is wrong for the first server.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(bad_cert).unwrap();
    roots.add(good_cert).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut rt = runtime(&[bad.server(), good.server()]);
    rt.activesync.server_tls = Some(std::sync::Arc::new(client));
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, _, body) = d.send(eas("gw", "Sync", "u", "D1", full("x"))).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"good"[..]));
    assert_eq!(
        bad.count(),
        0,
        "nothing is sent over an unverified connection"
    );
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    let err = snap.services[0].servers[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        err.contains("issued to other.example, www.other.example"),
        "{err}"
    );
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let (cfg, _) = server_config(&["127.0.0.1"], &[]);
    let be = backend_tls(ok(), cfg).await;
    let (_, unrelated) = server_config(&["127.0.0.1"], &[]);
    let mut rt = runtime(&[be.server()]);
    rt.activesync.server_tls = Some(client_config(&unrelated, &[]));
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, headers, _) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(be.count(), 0);
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert!(
        snap.services[0].servers[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("TLS")
    );
}
