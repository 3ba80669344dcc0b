//! Issue 4, device access over real sockets: identity of every request (400 without a device),
//! unregistered allow/block, the per-mailbox limit, manual block and unblock through the
//! management API (TLS + bearer token), report-only, portal-unreachable behaviour, a restart on
//! the persisted list, a parked Ping ended by a block, plain and base64 queries. The scripted
//! backend records every request: each block test asserts it got nothing from the blocked device.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::Arc;
use std::time::Duration;

use gateway::access::{DeviceAccess, ManualClock, PortalSync, Timestamp};
use gateway::state::Gateway;
use http::{Request, StatusCode};
use support::*;

async fn ok_backend() -> Backend {
    backend(handler(|_| async { reply(200, "ok") })).await
}

async fn send(gw: &RunningGateway, req: Request<TBody>) -> StatusCode {
    let mut d = device(gw.addr, None, false).await;
    d.send(req).await.0
}

async fn sync(gw: &RunningGateway, user: &str, dev: &str) -> StatusCode {
    send(gw, eas("gw.test", "FolderSync", user, dev, empty())).await
}

#[tokio::test]
async fn a_request_that_names_no_device_gets_400_and_never_reaches_a_server() {
    let b = ok_backend().await;
    let gw = start(runtime(&[b.server()])).await;
    for q in [
        "Cmd=Sync&User=alice&DeviceType=iPhone",
        "Cmd=Sync&User=alice&DeviceId=&DeviceType=iPhone",
        "Cmd=Sync&User=alice&DeviceId=bad%zz&DeviceType=iPhone",
        "Cmd=Sync&User=alice&DeviceId=has.dot&DeviceType=iPhone",
        "Cmd=Sync&User=alice&DeviceId=D1",
        "DeviceId=D1&DeviceType=iPhone&User=alice",
        "Cmd=Sync&DeviceId=D1&DeviceType=iPhone",
        "jAAJBAp2MTQw",
        "%%%",
        "",
    ] {
        let req = Request::post(format!("/Microsoft-Server-ActiveSync?{q}"))
            .header("host", "gw.test")
            .body(empty())
            .unwrap();
        assert_eq!(send(&gw, req).await, StatusCode::BAD_REQUEST, "{q}");
    }
    // A malformed ActiveSync header is refused too.
    let mut req = eas("gw.test", "Sync", "alice", "D1", empty());
    req.headers_mut()
        .insert("ms-asprotocolversion", "99.9".parse().unwrap());
    assert_eq!(send(&gw, req).await, StatusCode::BAD_REQUEST);
    assert_eq!(b.count(), 0, "nothing reached the server");
    // OPTIONS carries no device and is forwarded.
    let req = Request::options("/Microsoft-Server-ActiveSync")
        .header("host", "gw.test")
        .body(empty())
        .unwrap();
    assert_eq!(send(&gw, req).await, StatusCode::OK);
    assert_eq!(b.count(), 1);
}

#[tokio::test]
async fn unregistered_devices_are_allowed_by_default_and_blocked_when_auto_block_is_on() {
    let b = ok_backend().await;
    let gw = start(runtime(&[b.server()])).await;
    assert_eq!(sync(&gw, "alice", "Dev1").await, StatusCode::OK);
    assert_eq!(seen_from(&b, "Dev1"), 1);
    let a = gw.gw.access.association("alice", "dev1").unwrap();
    assert_eq!(a.rule, "unregistered_allowed");
    assert_eq!(a.last_status, Some(200));

    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "unregistered = \"block\"");
    let gw = start(rt).await;
    assert_eq!(sync(&gw, "alice", "Dev1").await, StatusCode::FORBIDDEN);
    assert_eq!(
        seen_from(&b, "Dev1"),
        0,
        "blocked device reached the server"
    );
    let a = gw.gw.access.association("alice", "Dev1").unwrap();
    assert_eq!(
        (a.rule.as_str(), a.last_status),
        ("unregistered_blocked", Some(403))
    );
    // Listed allowed (registered) devices pass.
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"Alice","device_id":"DEV2","state":"allowed","reasons":["registered"]}]}"#)
        .await
        .unwrap();
    assert_eq!(sync(&gw, "alice", "dev2").await, StatusCode::OK);
    assert_eq!(seen_from(&b, "dev2"), 1);
}

#[tokio::test]
async fn the_device_beyond_the_per_mailbox_limit_is_blocked_existing_ones_keep_working() {
    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    device_access(
        &mut rt,
        "max_devices_per_mailbox = 2\nblocked_response = 456",
    );
    let gw = start(rt).await;
    assert_eq!(sync(&gw, "bob", "PhoneA").await, StatusCode::OK);
    assert_eq!(sync(&gw, "bob", "PhoneB").await, StatusCode::OK);
    assert_eq!(sync(&gw, "bob", "PhoneC").await.as_u16(), 456);
    assert_eq!(sync(&gw, "BOB", "phonea").await, StatusCode::OK);
    assert_eq!(
        sync(&gw, "carol", "PhoneC").await,
        StatusCode::OK,
        "per user"
    );
    assert_eq!(seen_from(&b, "PhoneC"), 1, "only carol's");
    let explain = gw.gw.access.explain_json("bob", "PhoneC").unwrap();
    assert_eq!(explain["rule"], "per_mailbox_limit");
    assert_eq!(explain["limit"], 2);
}

#[tokio::test]
async fn report_only_lets_everything_through_and_says_what_enforce_would_do() {
    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "mode = \"report-only\"\nunregistered = \"block\"");
    let gw = start(rt).await;
    assert_eq!(sync(&gw, "dave", "Dev9").await, StatusCode::OK);
    assert_eq!(seen_from(&b, "Dev9"), 1);
    let e = gw.gw.access.explain_json("dave", "Dev9").unwrap();
    assert_eq!(e["decision"], "ALLOW");
    assert_eq!(e["report_only"]["would"], "BLOCK");
    assert_eq!(e["report_only"]["rule"], "unregistered_blocked");
    let text = gw.gw.metrics.render();
    assert!(
        text.contains(
            "easgate_access_decisions_total{action=\"REPORT\",rule=\"unregistered_blocked\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn while_the_portal_is_unreachable_new_devices_follow_when_portal_unreachable() {
    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "when_portal_unreachable = \"block\"");
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let policy = gateway::access::policy_or_fail_closed(&rt.source.device_access);
    let access = DeviceAccess::in_memory_with_clock(policy, clock.clone());
    let gw = start_gw(Gateway::with_access(rt, access)).await;
    assert_eq!(sync(&gw, "erin", "Known1").await, StatusCode::OK);
    clock.advance(Duration::from_millis(1));
    gw.gw.access.set_portal(PortalSync::Unreachable {
        since: gw.gw.access.now(),
    });
    assert_eq!(sync(&gw, "erin", "New1").await, StatusCode::FORBIDDEN);
    assert_eq!(sync(&gw, "erin", "Known1").await, StatusCode::OK);
    assert_eq!(seen_from(&b, "New1"), 0);
    assert_eq!(
        gw.gw.access.explain_json("erin", "New1").unwrap()["rule"],
        "portal_unreachable_new_blocked"
    );

    // Default (allow): new devices pass while the portal is away.
    let b = ok_backend().await;
    let gw = start(runtime(&[b.server()])).await;
    gw.gw.access.set_portal(PortalSync::Unreachable {
        since: Timestamp::now(),
    });
    assert_eq!(sync(&gw, "erin", "New2").await, StatusCode::OK);
    assert_eq!(
        gw.gw.access.association("erin", "New2").unwrap().rule,
        "portal_unreachable_new_allowed"
    );
}

#[tokio::test]
async fn after_a_restart_the_persisted_list_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/devices.json");
    let b = ok_backend().await;
    let rt = runtime(&[b.server()]);
    let policy = rt.source.device_access.validate().unwrap();
    {
        let access = DeviceAccess::load(policy.clone(), path.clone())
            .await
            .unwrap();
        let gw = start_gw(Gateway::with_access(rt.clone(), access.clone())).await;
        assert_eq!(sync(&gw, "frank", "Lost1").await, StatusCode::OK);
        access
            .patch(br#"{"devices":[{"user":"frank","device_id":"Lost1","state":"blocked","reasons":["manual"]}]}"#)
            .await
            .unwrap();
        assert_eq!(sync(&gw, "frank", "Lost1").await, StatusCode::FORBIDDEN);
        access.flush().await.unwrap();
        let _ = gw.stop.send(true);
    }
    let before = seen_from(&b, "Lost1");
    let access: Arc<DeviceAccess> = DeviceAccess::load(policy, path).await.unwrap();
    assert_eq!(
        access.entry("frank", "lost1").unwrap().state.as_str(),
        "blocked"
    );
    let gw = start_gw(Gateway::with_access(rt, access.clone())).await;
    assert_eq!(sync(&gw, "frank", "Lost1").await, StatusCode::FORBIDDEN);
    assert_eq!(
        seen_from(&b, "Lost1"),
        before,
        "blocked device reached the server"
    );
    let a = access.association("frank", "Lost1").unwrap();
    assert!(a.request_count >= 3, "association persisted: {a:?}");
}

#[tokio::test]
async fn a_parked_ping_is_ended_when_the_device_is_blocked_and_the_server_sees_nothing_more() {
    let b = backend(handler(|s| async move {
        if s.uri.contains("Cmd=Ping") {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        reply(200, "")
    }))
    .await;
    let mut rt = runtime(&[b.server()]);
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;

    let addr = gw.addr;
    let parked = tokio::spawn(async move {
        let mut d = device(addr, None, false).await;
        d.send(eas(
            "gw.test",
            "Ping",
            "gina",
            "Phone7",
            full(ping_body(900)),
        ))
        .await
    });
    eventually("the Ping parked at the backend", || {
        seen_from(&b, "Phone7") == 1
    })
    .await;
    assert_eq!(gw.gw.metrics.parked_now(), 1);

    mgmt.set_state("gina", "phone7", "blocked").await;
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("the parked Ping must end at once")
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(sync(&gw, "gina", "Phone7").await, StatusCode::FORBIDDEN);
    assert_eq!(
        seen_from(&b, "Phone7"),
        1,
        "nothing more reached the server"
    );
    eventually("parked gauge back to 0", || gw.gw.metrics.parked_now() == 0).await;
}

#[tokio::test]
async fn manual_block_and_unblock_through_the_management_api() {
    let b = ok_backend().await;
    let eu = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    rt.activesync
        .services
        .push(service("mail-eu.example.com", &[eu.server()]));
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;

    assert_eq!(sync(&gw, "hank", "Tab1").await, StatusCode::OK);
    // No token, wrong token: 401 and nothing changes.
    let body = r#"{"devices":[{"user":"hank","device_id":"Tab1","state":"blocked","reasons":["manual"]}]}"#;
    for token in [None, Some("wrong")] {
        let (st, _) = mgmt
            .call_with(
                "PATCH",
                "/v1/devices",
                token,
                Some("application/json"),
                body,
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(sync(&gw, "hank", "Tab1").await, StatusCode::OK);

    let (st, v) = mgmt.call("PATCH", "/v1/devices", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["added"], 1);
    let n = seen_from(&b, "Tab1");
    assert_eq!(sync(&gw, "hank", "TAB1").await, StatusCode::FORBIDDEN);
    assert_eq!(
        seen_from(&b, "Tab1"),
        n,
        "blocked device reached the server"
    );
    // Not through a second service either.
    assert_eq!(
        send(
            &gw,
            eas("mail-eu.example.com", "Sync", "hank", "Tab1", empty())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(eu.count(), 0, "second service's server saw nothing");

    let (st, v) = mgmt
        .call("GET", "/v1/explain?user=hank&device_id=tab1", "")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (v["decision"].as_str(), v["rule"].as_str()),
        (Some("BLOCK"), Some("listed_blocked"))
    );
    assert_eq!(v["reasons"], serde_json::json!(["manual"]));
    let (_, v) = mgmt.call("GET", "/v1/devices", "").await;
    assert_eq!(v["devices"][0]["state"], "blocked");

    mgmt.set_state("hank", "Tab1", "allowed").await;
    assert_eq!(sync(&gw, "hank", "Tab1").await, StatusCode::OK);
    // PATCH remove: back to unregistered (allowed by default).
    let (st, v) = mgmt
        .call(
            "PATCH",
            "/v1/devices",
            r#"{"remove":[{"user":"hank","device_id":"TAB1"}]}"#,
        )
        .await;
    assert_eq!(
        (st, v["result"]["removed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
}

#[tokio::test]
async fn malformed_or_oversized_management_requests_get_4xx_with_a_message_and_change_nothing() {
    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;
    mgmt.set_state("ivy", "Keep1", "blocked").await;

    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("PUT", "{not json".into(), Some("application/json"), 400),
        ("PATCH", r#"{"devices":[{"user":"ivy","device_id":"ok1","state":"allowed"},{"user":"","device_id":"a b","state":"gone"}]}"#.into(), Some("application/json"), 422),
        ("PUT", r#"{"devices":[],"remove":[]}"#.into(), Some("application/json"), 422),
        ("PUT", "{}".into(), Some("application/json"), 422),
        ("PUT", r#"{"devices":[]}"#.into(), Some("text/plain"), 415),
        ("PATCH", r#"{"devices":[],"extra":1}"#.into(), Some("application/json"), 400),
        ("PUT", format!(r#"{{"devices":[],"pad":"{}"}}"#, "x".repeat(65 * 1024 * 1024)), Some("application/json"), 413),
    ];
    for (method, body, ct, want) in cases {
        let (st, v) = mgmt
            .call_with(method, "/v1/devices", Some(MGMT_TOKEN), ct, body.clone())
            .await;
        assert_eq!(
            st.as_u16(),
            want,
            "{method} {}: {v}",
            &body[..body.len().min(80)]
        );
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (_, v) = mgmt.call("GET", "/v1/devices", "").await;
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "nothing changed: {v}");
    assert_eq!(devices[0]["device_id"], "Keep1");
    // Field errors name the field.
    let (_, v) = mgmt
        .call(
            "PATCH",
            "/v1/devices",
            r#"{"devices":[{"user":"ivy","device_id":"a b","state":"allowed"}]}"#,
        )
        .await;
    assert_eq!(v["errors"][0]["field"], "devices[0].device_id", "{v}");
    for q in [
        "/v1/explain?user=ivy",
        "/v1/explain?user=ivy&device_id=x&x=1",
        "/v1/associations?limit=abc",
        "/v1/associations?limit=100000",
    ] {
        let (st, v) = mgmt.call("GET", q, "").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
    }
    let (st, _) = mgmt.call("DELETE", "/v1/devices", "").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn associations_are_reported_with_filter_and_pagination() {
    let b = ok_backend().await;
    let mut rt = runtime(&[b.server()]);
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;
    for (u, d) in [("jo", "A1"), ("jo", "A2"), ("jo", "A3"), ("kim", "B1")] {
        assert_eq!(sync(&gw, u, d).await, StatusCode::OK);
    }
    let (st, v) = mgmt
        .call("GET", "/v1/associations?user=JO&limit=2", "")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["next_offset"].as_u64()),
        (Some(3), Some(2))
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let a = &items[0];
    assert_eq!(
        (a["user"].as_str(), a["device_id"].as_str()),
        (Some("jo"), Some("A1"))
    );
    assert_eq!(a["device_type"], "iPhone");
    assert_eq!(a["protocol_version"], "14.1");
    assert_eq!(a["last_command"], "FolderSync");
    assert_eq!(a["last_status"], 200);
    assert_eq!(a["last_server"], b.server().to_string());
    assert_eq!(a["access"], "ALLOW");
    assert_eq!(a["request_count"], 1);
    let (_, v) = mgmt
        .call("GET", "/v1/associations?user=jo&offset=2&limit=2", "")
        .await;
    assert_eq!(v["items"][0]["device_id"], "A3");
    assert!(v.get("next_offset").is_none());
    let (_, v) = mgmt.call("GET", "/v1/associations?device_id=b1", "").await;
    assert_eq!(v["total"], 1);
}

#[tokio::test]
async fn plain_and_base64_queries_identify_the_same_way() {
    let b = ok_backend().await;
    let gw = start(runtime(&[b.server()])).await;
    // 14.1 FolderSync, DeviceId B64DEV01, DeviceType curl, User user1 (verified on SOGo).
    let b64 = || {
        Request::post("/Microsoft-Server-ActiveSync?jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=")
            .header("host", "gw.test")
            .body(empty())
            .unwrap()
    };
    assert_eq!(send(&gw, b64()).await, StatusCode::OK);
    let a = gw.gw.access.association("user1", "b64dev01").unwrap();
    assert_eq!(
        (
            a.device_type.as_deref(),
            a.protocol_version.as_deref(),
            a.last_command.as_deref()
        ),
        (Some("curl"), Some("14.1"), Some("FolderSync"))
    );
    assert_eq!(sync(&gw, "USER1", "B64DEV01").await, StatusCode::OK);
    assert_eq!(
        gw.gw
            .access
            .association("user1", "B64DEV01")
            .unwrap()
            .request_count,
        2,
        "plain and base64 are one association"
    );
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"user1","device_id":"B64DEV01","state":"blocked"}]}"#)
        .await
        .unwrap();
    let n = b.count();
    assert_eq!(send(&gw, b64()).await, StatusCode::FORBIDDEN);
    assert_eq!(sync(&gw, "user1", "b64dev01").await, StatusCode::FORBIDDEN);
    assert_eq!(b.count(), n, "blocked device reached the server");
}
