//! Issue 3, item 3 (scheduling): priority and round robin over live servers; a connect failure
//! (refused, timeout, TLS) moves the same request to the next live server; a failure after the
//! request went out is never retried (502, or 504 on a response timeout); every server dead →
//! 503 with Retry-After. Also: a pooled connection the server closed silently (SOGo) is not used.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::model::Scheduling;
use http::StatusCode;
use support::*;
use tokio::io::AsyncWriteExt;

fn named(name: &'static str) -> Handler {
    handler(move |_s: Seen| async move { reply(200, name) })
}

#[tokio::test]
async fn priority_uses_the_first_live_server() {
    let a = backend(named("a")).await;
    let b = backend(named("b")).await;
    let gw = start(runtime(&[a.server(), b.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    for _ in 0..5 {
        let (_, _, body) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
        assert_eq!(&body[..], b"a");
    }
    assert_eq!((a.count(), b.count()), (5, 0));
}

#[tokio::test]
async fn round_robin_takes_live_servers_in_turn() {
    let a = backend(named("a")).await;
    let b = backend(named("b")).await;
    let c = backend(named("c")).await;
    let mut rt = runtime(&[a.server(), b.server(), c.server()]);
    rt.servers.scheduling = Scheduling::RoundRobin;
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let mut order = Vec::new();
    for _ in 0..6 {
        let (_, _, body) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
        order.push(String::from_utf8_lossy(&body).into_owned());
    }
    assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test]
async fn connect_refused_moves_the_same_request_to_the_next_server() {
    let dead = refused_addr().await;
    let b = backend(handler(|s: Seen| async move { reply(200, s.body) })).await;
    let gw = start(runtime(&[addr_of(dead), b.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, _, body) = d
        .send(eas("gw", "SendMail", "u", "D1", full("the-mail")))
        .await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"the-mail"[..]),
        "same request, body intact"
    );
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(snap.services[0].servers[0].failures_total, 1);
}

#[tokio::test]
async fn connect_timeout_in_tls_handshake_moves_on() {
    // Accepts TCP but never answers the ClientHello: connect = TCP + TLS must time out.
    let (silent, _, _task) = raw_backend(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let (tls_cfg, cert) = server_config(&["127.0.0.1"], &[]);
    let b = backend_tls(named("b"), tls_cfg).await;
    let mut rt = runtime(&[addr_of(silent), b.server()]);
    rt.activesync.server_tls = Some(client_config(&cert, &[]));
    rt.timeouts.server_connect = Duration::from_millis(200);
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let t0 = tokio::time::Instant::now();
    let (status, _, body) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"b"[..]));
    assert!(t0.elapsed() >= Duration::from_millis(180) && t0.elapsed() < Duration::from_secs(5));
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert!(
        snap.services[0].servers[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out")
    );
}

#[tokio::test]
async fn reset_after_request_sent_is_502_and_never_resent() {
    // Reads the request, then resets the connection.
    let (resetter, conns, _task) = raw_backend(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let b = backend(named("b")).await;
    let gw = start(runtime(&[addr_of(resetter), b.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, _, _) = d.send(eas("gw", "SendMail", "u", "D1", full("once"))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    assert_eq!(
        b.count(),
        0,
        "a request that went out is never sent to another server"
    );
}

#[tokio::test]
async fn response_timeout_is_504_and_never_resent() {
    let hang = backend(handler(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        reply(200, "late")
    }))
    .await;
    let b = backend(named("b")).await;
    let mut rt = runtime(&[hang.server(), b.server()]);
    rt.timeouts.server_response = Duration::from_millis(300);
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let t0 = tokio::time::Instant::now();
    let (status, _, _) = d.send(eas("gw", "FolderSync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(t0.elapsed() >= Duration::from_millis(280));
    assert_eq!((hang.count(), b.count()), (1, 0));
}

#[tokio::test]
async fn every_server_dead_is_503_with_retry_after() {
    let x = refused_addr().await;
    let y = refused_addr().await;
    let mut rt = runtime(&[addr_of(x), addr_of(y)]);
    rt.servers.dead_threshold = 1;
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    // First request: both refuse (both now dead).
    let (status, headers, _) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    // Second: nothing live at all; Retry-After is the remaining dead time.
    let (status, headers, _) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let ra: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((290..=300).contains(&ra), "{ra}");
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(
        snap.services[0].servers[0].failures_total, 1,
        "dead servers are not tried"
    );
}

#[tokio::test]
async fn silently_closed_pooled_connections_are_not_used() {
    // SOGo-style: answers with Content-Length, no `Connection: close`, then closes.
    let (addr, conns, _task) = raw_backend(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
        let _ = s.shutdown().await;
    })
    .await;
    let gw = start(runtime(&[addr_of(addr)])).await;
    let mut d = device(gw.addr, None, false).await;
    for i in 0..20 {
        let (status, _, body) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"ok"[..]),
            "request {i}"
        );
    }
    assert_eq!(conns.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn pooled_connections_are_reused() {
    let a = backend(named("a")).await;
    let gw = start(runtime(&[a.server()])).await;
    let mut d1 = device(gw.addr, None, false).await;
    let mut d2 = device(gw.addr, None, false).await;
    for _ in 0..5 {
        assert_eq!(
            d1.send(eas("gw", "Sync", "u", "D1", empty())).await.0,
            StatusCode::OK
        );
        assert_eq!(
            d2.send(eas("gw", "Sync", "v", "D2", empty())).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        a.conns.load(Ordering::SeqCst),
        1,
        "Basic-auth traffic shares one pooled connection"
    );
}
