//! Issue 3, item 9 (forwarding): hop-by-hop headers removed both ways, `X-Forwarded-For` /
//! `X-Forwarded-Proto` added (incoming ones believed only from trusted proxies), header case
//! preserved, bodies streamed in both directions (nothing waits for a whole body).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::model::IpNet;
use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raw backend that records the request head bytes and answers with hop-by-hop headers.
async fn raw_recorder() -> (std::net::SocketAddr, Arc<parking_lot::Mutex<Vec<String>>>) {
    let heads = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let h2 = heads.clone();
    let (addr, _, task) = raw_backend(move |mut s| {
        let heads = h2.clone();
        async move {
            let head = read_head(&mut s).await;
            heads.lock().push(String::from_utf8_lossy(&head).into_owned());
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
                      Proxy-Authenticate: Basic\r\nMS-Server-ActiveSync: 14.1\r\nX-MS-RP: 14.1\r\nContent-Length: 2\r\n\r\nok",
                )
                .await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    std::mem::forget(task);
    (addr, heads)
}

async fn raw_exchange(gw: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"ok") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hop_by_hop_removed_and_header_case_preserved_both_ways() {
    let (addr, heads) = raw_recorder().await;
    let gw = start(runtime(&[addr_of(addr)])).await;
    let resp = raw_exchange(
        gw.addr,
        "POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=user1&DeviceId=D1&DeviceType=x HTTP/1.1\r\n\
         Host: mail.example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers\r\nProxy-Authorization: Basic eA==\r\nMS-ASProtocolVersion: 14.1\r\nX-MS-PolicyKey: 0\r\n\
         Authorization: Basic dXNlcjE6c2VjcmV0\r\nX-Forwarded-For: 6.6.6.6\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let head = heads.lock()[0].clone();
    for gone in [
        "X-Hop",
        "Keep-Alive",
        "TE:",
        "Proxy-Authorization",
        "6.6.6.6",
        "keep-alive, X-Hop",
    ] {
        assert!(
            !head.contains(gone),
            "{gone} must not reach the server:\n{head}"
        );
    }
    for kept in [
        "MS-ASProtocolVersion: 14.1\r\n",
        "X-MS-PolicyKey: 0\r\n",
        "Authorization: Basic dXNlcjE6c2VjcmV0\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-proto: http\r\n",
    ] {
        assert!(
            head.to_ascii_lowercase()
                .contains(&kept.to_ascii_lowercase()),
            "{kept:?} missing:\n{head}"
        );
    }
    assert!(
        head.contains("MS-ASProtocolVersion: 14.1"),
        "case preserved:\n{head}"
    );
    assert!(
        head.contains(&format!("Host: {addr}\r\n")),
        "server's own host name:\n{head}"
    );

    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.contains("MS-Server-ActiveSync: 14.1\r\n") && resp.contains("X-MS-RP: 14.1\r\n"),
        "case preserved:\n{resp}"
    );
    for gone in ["X-Resp-Hop", "Keep-Alive: timeout", "Proxy-Authenticate"] {
        assert!(
            !resp.contains(gone),
            "{gone} must not reach the device:\n{resp}"
        );
    }
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let be = backend(handler(|_s: Seen| async move { reply(200, "ok") })).await;
    let mut rt = runtime(&[be.server()]);
    rt.trusted_proxies = vec![IpNet {
        addr: "127.0.0.1".parse().unwrap(),
        prefix: 32,
    }];
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let mut req = eas("gw", "Sync", "u", "D1", empty());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    assert_eq!(d.send(req).await.0, StatusCode::OK);
    let seen = be.seen();
    assert_eq!(seen[0].headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(
        seen[0].headers["x-forwarded-proto"], "https",
        "the load balancer terminated TLS"
    );

    // Not trusted: replaced.
    let be2 = backend(handler(|_s: Seen| async move { reply(200, "ok") })).await;
    let mut rt = runtime(&[be2.server()]);
    rt.trusted_proxies = vec![IpNet {
        addr: "10.0.0.0".parse().unwrap(),
        prefix: 8,
    }];
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let mut req = eas("gw", "Sync", "u", "D1", empty());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    assert_eq!(d.send(req).await.0, StatusCode::OK);
    assert_eq!(be2.seen()[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(be2.seen()[0].headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn bodies_stream_in_both_directions() {
    // Streaming, not store-and-forward, each way: the server sees the first request chunk while
    // the device still holds back the second; the device gets the first response chunk while
    // the server still holds back the second. (HTTP/1.1 exchanges are half duplex here: the
    // response is read once the request is sent, as ActiveSync servers answer.)
    let server_has_first = Arc::new(tokio::sync::Notify::new());
    let device_has_first = Arc::new(tokio::sync::Notify::new());
    let (g, n) = (server_has_first.clone(), device_has_first.clone());
    let (addr, _, _task) = raw_backend(move |mut s| {
        let (g, n) = (g.clone(), n.clone());
        async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut told = false;
            for _ in 0..1000 {
                if !told && seen.windows(9).any(|w| w == b"chunk-one") {
                    g.notify_one();
                    told = true;
                }
                if seen.windows(5).any(|w| w == b"0\r\n\r\n") {
                    break;
                }
                let Ok(k) = s.read(&mut buf).await else {
                    return;
                };
                if k == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..k]);
            }
            assert!(seen.windows(9).any(|w| w == b"chunk-two"));
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nresp-one-\r\n",
                )
                .await;
            n.notified().await;
            let _ = s.write_all(b"8\r\nresp-two\r\n0\r\n\r\n").await;
        }
    })
    .await;
    let tls = device_tls();
    let mut rt = runtime(&[addr_of(addr)]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), false).await;
    let (tx, body) = channel_body();
    tx.send(Bytes::from_static(b"chunk-one")).await.unwrap();
    let sending =
        tokio::spawn(async move { d.send_raw(eas("gw", "SendMail", "u", "D1", body)).await });
    tokio::time::timeout(Duration::from_secs(5), server_has_first.notified())
        .await
        .expect("the server gets the first request chunk before the device sends the rest");
    tx.send(Bytes::from_static(b"chunk-two")).await.unwrap();
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .expect("response headers arrive")
        .unwrap()
        .unwrap();
    use http_body_util::BodyExt;
    let mut rbody = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), rbody.frame())
        .await
        .expect("the first response chunk arrives before the server sends the rest")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"resp-one-");
    device_has_first.notify_one();
    let rest = rbody.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"resp-two");
}

#[tokio::test]
async fn large_bodies_pass_intact() {
    let be = backend(handler(|s: Seen| async move { reply(200, s.body) })).await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), true).await;
    let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = d.send(eas_h2("gw", "SendMail", full(big.clone()))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == big, "4 MiB echoed intact over HTTP/2 + TLS");
}
