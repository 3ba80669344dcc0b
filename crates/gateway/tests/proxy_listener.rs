//! Issue 3, item 1 (listener): HTTP/1.1 and HTTP/2 by ALPN over device TLS, plain HTTP when
//! client TLS is off, only ActiveSync paths served (everything else 404 from the gateway, never
//! forwarded), ActiveSync disabled → 503, header and body limits (431 / 413), the device request
//! timeout, and graceful drain of parked requests on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn echo() -> Handler {
    handler(|s: Seen| async move { reply(200, [&b"echo:"[..], &s.body].concat()) })
}

#[tokio::test]
async fn tls_http1_and_http2_by_alpn_reach_the_server() {
    let be = backend(echo()).await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;

    let mut h1 = device(gw.addr, Some(&tls.cert), false).await;
    let (status, _, body) = h1
        .send(eas(
            "mail.example.com",
            "FolderSync",
            "u",
            "D1",
            full("wbxml-1"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Bytes::from_static(b"echo:wbxml-1"));
    // Keep-alive: a second request on the same device connection.
    let (status, _, body) = h1
        .send(eas("mail.example.com", "Sync", "u", "D1", full("wbxml-2")))
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"echo:wbxml-2"[..]));

    let mut h2 = device(gw.addr, Some(&tls.cert), true).await;
    let (status, _, body) = h2
        .send(eas_h2("mail.example.com", "FolderSync", full("over-h2")))
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"echo:over-h2"[..]));

    let seen = be.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.uri.starts_with("/Microsoft-Server-ActiveSync?Cmd=")),
        "origin-form: {seen:?}"
    );
    assert_eq!(seen[2].headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn plain_http_when_client_tls_is_off() {
    let be = backend(echo()).await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, _, body) = d.send(eas("gw", "Ping", "u", "D1", full("x"))).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"echo:x"[..]));
    assert_eq!(be.seen()[0].headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn only_activesync_paths_are_served() {
    let be = backend(echo()).await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), false).await;
    for path in [
        "/owa/",
        "/ecp/",
        "/",
        "/EWS/Exchange.asmx",
        "/Microsoft-Server-ActiveSync/../owa",
        "/Microsoft-Server-ActiveSync/%2e%2e/ecp",
        "/autodiscover/autodiscover.xml",
    ] {
        let req = Request::get(path)
            .header("host", "gw")
            .body(empty())
            .unwrap();
        let (status, _, _) = d.send(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(be.count(), 0, "nothing but ActiveSync may reach a server");
    for path in [
        "/microsoft-server-activesync",
        "/MICROSOFT-SERVER-ACTIVESYNC",
        "/traveler",
        "/servlet/traveler/x",
    ] {
        let req = Request::builder()
            .method("OPTIONS")
            .uri(path)
            .header("host", "gw")
            .body(empty())
            .unwrap();
        let (status, _, _) = d.send(req).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert_eq!(be.count(), 4);
}

#[tokio::test]
async fn activesync_disabled_answers_503() {
    let be = backend(echo()).await;
    let mut rt = runtime(&[be.server()]);
    rt.activesync.enabled = false;
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, headers, _) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(be.count(), 0);
}

#[tokio::test]
async fn oversized_head_gets_431_and_body_413() {
    let be = backend(echo()).await;
    let mut rt = runtime(&[be.server()]);
    rt.limits.max_header_bytes = 16 * 1024;
    rt.limits.max_body_bytes = 1000;
    let gw = start(rt).await;

    // 431: raw socket, a 40 KiB header.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let big = "a".repeat(40 * 1024);
    let head = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: gw\r\nX-Big: {big}\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // 413 by Content-Length, before anything is forwarded.
    let mut d = device(gw.addr, None, false).await;
    let (status, _, _) = d
        .send(eas("gw", "SendMail", "u", "D1", full(vec![b'x'; 5000])))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(be.count(), 0);

    // 413 for a streamed (chunked, no length) body that grows past the limit.
    let mut d = device(gw.addr, None, false).await;
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send(Bytes::from(vec![b'y'; 400])).await.is_err() {
                break;
            }
        }
    });
    let (status, _, _) = d.send(eas("gw", "SendMail", "u", "D1", body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn device_request_timeout_closes_silent_and_idle_connections() {
    let be = backend(echo()).await;
    let mut rt = runtime(&[be.server()]);
    rt.timeouts.device_request = Duration::from_millis(300);
    let gw = start(rt).await;

    // Opens and says nothing: closed after the device request timeout.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time");
    let _ = n;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );

    // Half a request head, then silence: closed too.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time");
    if let Ok(n) = r {
        // hyper may answer 408 before closing.
        assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    }
    assert_eq!(be.count(), 0);

    // A served request, then an idle keep-alive connection: closed after the same timeout.
    let mut d = device(gw.addr, None, false).await;
    let (status, _, _) = d.send(eas("gw", "Sync", "u", "D1", full("a"))).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let Device::H1(s) = &mut d else {
        unreachable!()
    };
    assert!(
        s.is_closed(),
        "idle keep-alive connection closed after device_request timeout"
    );
}

#[tokio::test]
async fn idle_http2_connections_close_but_parked_requests_stay() {
    let be = backend(handler(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        reply(200, "pong")
    }))
    .await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    rt.timeouts.device_request = Duration::from_millis(300);
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), true).await;
    let (status, _, body) = d.send(eas_h2("gw", "Ping", full(ping_body(60)))).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"pong"[..]),
        "a parked request is not idle"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let Device::H2(s) = &mut d else {
        unreachable!()
    };
    assert!(
        s.is_closed(),
        "idle HTTP/2 connection closed after device_request timeout"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_parked_requests() {
    let be = backend(handler(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        reply(200, "pong")
    }))
    .await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let parked = tokio::spawn(async move {
        d.send(eas("gw", "Ping", "u", "D1", full(ping_body(60))))
            .await
    });
    eventually("ping parked at the server", || {
        be.conns.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    gw.stop.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "listener closed on shutdown"
    );
    let (status, _, body) = parked.await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"pong"[..]),
        "in-flight Ping finished during drain"
    );
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("serve_devices returned")
        .unwrap();
}

#[tokio::test]
async fn drain_timeout_cuts_requests_that_outlive_it() {
    let be = backend(handler(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        reply(200, "late")
    }))
    .await;
    let mut rt = runtime(&[be.server()]);
    rt.timeouts.drain = Duration::from_millis(200);
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let parked = tokio::spawn(async move {
        d.send_raw(eas("gw", "Ping", "u", "D1", full(ping_body(900))))
            .await
    });
    eventually("ping parked", || be.count() == 1).await;
    let t0 = tokio::time::Instant::now();
    gw.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("returned after drain")
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert!(
        parked.await.unwrap().is_err(),
        "the device connection is closed after the drain timeout"
    );
}

/// One runtime per core, as `easgate gateway` serves devices: connections handed to device
/// worker threads are served over TLS (HTTP/1.1 and HTTP/2), each worker reuses its own pooled
/// server connection (two workers, four sequential device connections: exactly two server
/// connections), and a shutdown drains a Ping parked on a worker.
#[tokio::test]
async fn device_workers_serve_keep_alive_pool_per_worker_and_drain() {
    let be = backend(handler(|s: Seen| async move {
        if s.uri.contains("Cmd=Ping") {
            tokio::time::sleep(Duration::from_millis(400)).await;
            return reply(200, "pong");
        }
        reply(200, [&b"echo:"[..], &s.body].concat())
    }))
    .await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let (gw, workers) = start_with_workers(rt, 2).await;
    assert_eq!(workers.len(), 2);
    for c in 0..4 {
        let h2 = c == 3;
        let mut d = device(gw.addr, Some(&tls.cert), h2).await;
        for i in 0..3 {
            let body = format!("c{c}r{i}");
            let req = if h2 {
                eas_h2("gw", "Sync", full(body.clone()))
            } else {
                eas("gw", "Sync", "u", "D1", full(body.clone()))
            };
            let (status, _, got) = d.send(req).await;
            assert_eq!(status, StatusCode::OK, "connection {c} request {i}");
            assert_eq!(got, Bytes::from(format!("echo:{body}")));
        }
    }
    assert_eq!(be.count(), 12);
    assert_eq!(
        be.conns.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one pooled server connection per worker"
    );
    let mut d = device(gw.addr, Some(&tls.cert), false).await;
    let parked = tokio::spawn(async move {
        d.send(eas("gw", "Ping", "u", "D2", full(ping_body(60))))
            .await
    });
    eventually("ping parked at the server", || be.count() == 13).await;
    gw.stop.send(true).unwrap();
    let (status, _, body) = parked.await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"pong"[..]));
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("serve_devices_on returned")
        .unwrap();
    stop_workers(workers).await;
}
