//! Issue 3, items 4 and 5 (passive health, background health check), with time paused:
//! `dead_threshold` transport failures within `failure_window` mark a server dead (HTTP statuses
//! never count); with the check off it is tried again after `dead_time`; with it on it stays
//! Unreachable until `live_threshold` consecutive good checks. The check is `OPTIONS` on the
//! ActiveSync path with the server's host name, and any HTTP answer (401 included) is good.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::health::{Reachability, spawn_checker};
use gateway::model::HealthCheckPolicy;
use http::StatusCode;
use support::*;
use tokio::net::TcpListener;

fn named(name: &'static str) -> Handler {
    handler(move |_s: Seen| async move { reply(200, name) })
}

#[tokio::test(start_paused = true)]
async fn dead_after_threshold_in_window_then_retried_after_dead_time() {
    let a_addr = refused_addr().await;
    let b = backend(named("b")).await;
    let mut rt = runtime(&[addr_of(a_addr), b.server()]);
    rt.servers.dead_threshold = 2;
    rt.servers.failure_window = Duration::from_secs(60);
    rt.servers.dead_time = Duration::from_secs(300);
    let gw = start(rt).await;
    let status = |gw: &RunningGateway| {
        gw.gw.health.snapshot(&gw.gw.current()).services[0].servers[0].clone()
    };
    let mut d = device(gw.addr, None, false).await;

    // Two failures 61 s apart: the first has left the window, so still live.
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"b"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let mut d = device(gw.addr, None, false).await;
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"b"
    );
    assert_eq!(status(&gw).state, Reachability::Reachable);
    assert_eq!(status(&gw).failures_in_window, 1);
    // A third within the window: dead.
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"b"
    );
    let s = status(&gw);
    assert_eq!(s.state, Reachability::Unreachable);
    assert!(s.dead_until_unix_ms.is_some());
    assert_eq!(s.failures_total, 3);

    // The server comes back, but is not tried before dead_time has passed.
    let a = backend_on(TcpListener::bind(a_addr).await.unwrap(), named("a"), None).await;
    tokio::time::advance(Duration::from_secs(299)).await;
    let mut d = device(gw.addr, None, false).await;
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"b"
    );
    assert_eq!(a.conns.load(Ordering::SeqCst), 0);
    assert_eq!(
        status(&gw).failures_total,
        3,
        "a dead server is skipped, not tried"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut d = device(gw.addr, None, false).await;
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"a",
        "retried after dead_time"
    );
    assert_eq!(status(&gw).state, Reachability::Reachable);
}

#[tokio::test(start_paused = true)]
async fn http_error_statuses_do_not_count() {
    let a = backend(handler(|_s: Seen| async move { reply(500, "boom") })).await;
    let b = backend(named("b")).await;
    let mut rt = runtime(&[a.server(), b.server()]);
    rt.servers.dead_threshold = 1;
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    for _ in 0..5 {
        let (status, _, body) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::INTERNAL_SERVER_ERROR, &b"boom"[..])
        );
    }
    let s = &gw.gw.health.snapshot(&gw.gw.current()).services[0].servers[0];
    assert_eq!((s.state, s.failures_total), (Reachability::Reachable, 0));
    assert_eq!(b.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_health_check_dead_servers_need_live_threshold_good_checks() {
    let a_addr = refused_addr().await;
    let b = backend(named("b")).await;
    let mut rt = runtime(&[addr_of(a_addr), b.server()]);
    rt.servers.dead_threshold = 1;
    rt.servers.dead_time = Duration::from_secs(300);
    rt.activesync.health_check = Some(HealthCheckPolicy {
        interval: Duration::from_secs(60),
        live_threshold: 3,
    });
    let gw = start(rt).await;
    let status = |gw: &RunningGateway| {
        gw.gw.health.snapshot(&gw.gw.current()).services[0].servers[0].clone()
    };
    let mut d = device(gw.addr, None, false).await;
    assert_eq!(
        &d.send(eas("gw", "Sync", "u", "D1", empty())).await.2[..],
        b"b"
    );
    assert_eq!(status(&gw).state, Reachability::Unreachable);
    let checker = spawn_checker(gw.gw.clone());

    // Past dead_time: with the check on, still Unreachable (its checks keep failing).
    tokio::time::sleep(Duration::from_secs(400)).await;
    assert_eq!(status(&gw).state, Reachability::Unreachable);
    assert!(
        b.seen().iter().any(|s| s.method == http::Method::OPTIONS),
        "the live server is checked too"
    );

    // The server comes back answering 401 to everything: each check is a success.
    let a = backend_on(
        TcpListener::bind(a_addr).await.unwrap(),
        handler(|_s: Seen| async move { reply(401, "") }),
        None,
    )
    .await;
    let mut seen_good = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let s = status(&gw);
        seen_good.push(s.consecutive_good_checks);
        if s.state == Reachability::Reachable {
            break;
        }
        assert!(s.consecutive_good_checks < 3);
    }
    assert_eq!(status(&gw).state, Reachability::Reachable, "{seen_good:?}");
    assert!(
        seen_good.contains(&1) && seen_good.contains(&2),
        "came back only after 3 good checks: {seen_good:?}"
    );
    let checks = a.seen();
    assert!(checks.len() >= 3);
    for c in &checks {
        assert_eq!(c.method, http::Method::OPTIONS);
        assert_eq!(c.uri, "/Microsoft-Server-ActiveSync");
        assert_eq!(
            c.headers["host"],
            a.server().to_string(),
            "checked with the server's host name"
        );
    }
    // Requests go to it again (priority).
    let mut d = device(gw.addr, None, false).await;
    assert_eq!(
        d.send(eas("gw", "Sync", "u", "D1", empty())).await.0,
        StatusCode::UNAUTHORIZED
    );
    checker.abort();
}

#[tokio::test(start_paused = true)]
async fn health_check_failures_mark_a_silent_server_dead() {
    // Accepts TCP, never answers: no answer within connect + response timeouts = failure.
    let hang = backend(handler(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(100_000)).await;
        reply(200, "")
    }))
    .await;
    let mut rt = runtime(&[hang.server()]);
    rt.servers.dead_threshold = 2;
    rt.servers.failure_window = Duration::from_secs(600);
    rt.activesync.health_check = Some(HealthCheckPolicy {
        interval: Duration::from_secs(10),
        live_threshold: 1,
    });
    let gw = start(rt).await;
    let checker = spawn_checker(gw.gw.clone());
    tokio::time::sleep(Duration::from_secs(200)).await;
    let s = &gw.gw.health.snapshot(&gw.gw.current()).services[0].servers[0];
    assert_eq!(s.state, Reachability::Unreachable, "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("no response"),
        "{s:?}"
    );
    let mut d = device(gw.addr, None, false).await;
    let (status, headers, _) = d.send(eas("gw", "Sync", "u", "D1", empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "10", "interval x live_threshold");
    checker.abort();
}
