//! Issue 3, item 7 (timeouts). Long polls with time paused: a Ping or a Sync with Wait /
//! HeartbeatInterval waits heartbeat + margin for its server (an empty Ping: the device's last
//! heartbeat, 3540 s when unknown) instead of the 60 s response timeout. Socket silence while a
//! body is moving (either direction) is cut after `socket_read_write`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn holder(secs: u64) -> Handler {
    handler(move |_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        reply(200, "changes")
    })
}

/// Sends and returns (status, virtual seconds until the answer).
async fn timed(d: &mut Device, req: http::Request<TBody>) -> (StatusCode, u64) {
    let t0 = Instant::now();
    let (status, _, _) = d.send(req).await;
    (status, t0.elapsed().as_secs())
}

#[tokio::test(start_paused = true)]
async fn ping_with_unknown_heartbeat_may_park_for_an_hour() {
    let be = backend(holder(3000)).await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, secs) = timed(&mut d, eas("gw", "Ping", "u", "NEW1", empty())).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "not cut at the 60 s response timeout"
    );
    assert_eq!(secs, 3000);
}

#[tokio::test(start_paused = true)]
async fn ping_timeouts_follow_the_heartbeat() {
    let be = backend(holder(1_000_000)).await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;

    // Unknown heartbeat: 3540 s + 120 s margin.
    let (status, secs) = timed(&mut d, eas("gw", "Ping", "u", "DEV1", empty())).await;
    assert_eq!((status, secs), (StatusCode::GATEWAY_TIMEOUT, 3660));

    // Heartbeat 480 s in the body: 600 s.
    let mut d = device(gw.addr, None, false).await;
    let parked = {
        let gw = gw.gw.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                if gw.metrics.parked_now() == 1 {
                    return true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            false
        })
    };
    let (status, secs) = timed(&mut d, eas("gw", "Ping", "u", "DEV1", full(ping_body(480)))).await;
    assert_eq!((status, secs), (StatusCode::GATEWAY_TIMEOUT, 600));
    assert!(
        parked.await.unwrap(),
        "the parked long-poll gauge counted it"
    );
    assert_eq!(gw.gw.metrics.parked_now(), 0);

    // Empty Ping of the same user and device: its last heartbeat again.
    let mut d = device(gw.addr, None, false).await;
    let (status, secs) = timed(&mut d, eas("gw", "Ping", "u", "DEV1", empty())).await;
    assert_eq!((status, secs), (StatusCode::GATEWAY_TIMEOUT, 600));

    // Another device is unknown: 3660 s.
    let mut d = device(gw.addr, None, false).await;
    let (_, secs) = timed(&mut d, eas("gw", "Ping", "u", "DEV2", empty())).await;
    assert_eq!(secs, 3660);
}

#[tokio::test(start_paused = true)]
async fn sync_with_wait_is_a_long_poll_and_other_commands_get_the_response_timeout() {
    let be = backend(holder(1_000_000)).await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let (status, secs) = timed(
        &mut d,
        eas("gw", "Sync", "u", "D1", full(sync_wait_body(5))),
    )
    .await;
    assert_eq!((status, secs), (StatusCode::GATEWAY_TIMEOUT, 5 * 60 + 120));
    let mut d = device(gw.addr, None, false).await;
    let (status, secs) = timed(&mut d, eas("gw", "FolderSync", "u", "D1", full("x"))).await;
    assert_eq!((status, secs), (StatusCode::GATEWAY_TIMEOUT, 60));
    // A Sync whose body asks for no wait is not a long poll either.
    let mut d = device(gw.addr, None, false).await;
    let plain_sync = Bytes::from_static(&[3, 1, 0x6A, 0, 0x45, 0x1C, 1]);
    let (_, secs) = timed(&mut d, eas("gw", "Sync", "u", "D1", full(plain_sync))).await;
    assert_eq!(secs, 60);
}

#[tokio::test]
async fn silent_server_mid_body_is_cut_after_socket_timeout() {
    let be = backend(handler(|_s: Seen| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"first")).await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let mut r = http::Response::new(body);
        r.headers_mut()
            .insert("content-length", "100".parse().unwrap());
        r
    }))
    .await;
    let mut rt = runtime(&[be.server()]);
    rt.timeouts.socket_read_write = Duration::from_millis(300);
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let resp = d
        .send_raw(eas("gw", "ItemOperations", "u", "D1", empty()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let t0 = Instant::now();
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first");
    let rest = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("cut in time");
    assert!(!matches!(rest, Some(Ok(_))), "body must fail, got {rest:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(
        snap.services[0].servers[0].failures_total, 1,
        "a stalled server counts as a failure"
    );
}

#[tokio::test]
async fn silent_device_mid_body_is_cut_after_socket_timeout() {
    let be = backend(handler(|_s: Seen| async move { reply(200, "ok") })).await;
    let mut rt = runtime(&[be.server()]);
    rt.timeouts.socket_read_write = Duration::from_millis(300);
    let gw = start(rt).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /Microsoft-Server-ActiveSync?Cmd=SendMail&User=u&DeviceId=D1&DeviceType=x HTTP/1.1\r\n\
          Host: gw\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(
        snap.services[0].servers[0].failures_total, 0,
        "a slow device is not the server's fault"
    );
}
