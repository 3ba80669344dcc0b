//! The request-path and management API of `gateway::access` end to end (no HTTP): every rule
//! through `check`, the wipe exchange's state transitions, parked-request signals, the
//! association inventory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::sync::Arc;
use std::time::Duration;

use gateway::access::{
    AccessMode, AccessPolicy, AccessState, Action, AllowBlock, AssociationQuery, DeviceAccess,
    ManualClock, PortalSync, Reason, Reasons, RequestInfo, Rule, Timestamp, WipeAck,
};

fn req<'a>(user: &'a str, device_id: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        user,
        device_id,
        device_type: Some("iPhone"),
        user_agent: Some("Apple-iPhone/1"),
        protocol_version: Some("14.1"),
        command: Some("Sync"),
    }
}

fn access(policy: AccessPolicy) -> Arc<DeviceAccess> {
    DeviceAccess::in_memory(policy)
}

async fn patch(a: &DeviceAccess, body: &str) {
    a.patch(body.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn unregistered_allow_and_block() {
    let a = access(AccessPolicy::default());
    let d = a.check(&req("alice", "D1"));
    assert_eq!(
        (d.action, d.rule),
        (Action::Allow, Rule::UnregisteredAllowed)
    );

    let a = access(AccessPolicy {
        unregistered: AllowBlock::Block,
        ..AccessPolicy::default()
    });
    let d = a.check(&req("alice", "D1"));
    assert_eq!(
        (d.action, d.rule),
        (Action::Block, Rule::UnregisteredBlocked)
    );
    patch(&a, r#"{"devices":[{"user":"alice","device_id":"d1","state":"allowed","reasons":["registered"]}]}"#).await;
    let d = a.check(&req("ALICE", "D1"));
    assert_eq!((d.action, d.rule), (Action::Allow, Rule::ListedAllowed));
    assert_eq!(d.reasons, Reasons::of(&[Reason::Registered]));
}

#[tokio::test]
async fn manual_block_and_unblock() {
    let a = access(AccessPolicy::default());
    assert_eq!(a.check(&req("bob", "Phone1")).action, Action::Allow);
    patch(&a, r#"{"devices":[{"user":"Bob","device_id":"PHONE1","state":"blocked","reasons":["manual"]}]}"#).await;
    let d = a.check(&req("bob", "phone1"));
    assert_eq!((d.action, d.rule), (Action::Block, Rule::ListedBlocked));
    patch(&a, r#"{"remove":[{"user":"bob","device_id":"phone1"}]}"#).await;
    assert_eq!(a.check(&req("bob", "Phone1")).action, Action::Allow);
}

/// A device the gateway let through, then its server's answer (what admits it).
fn seen(a: &DeviceAccess, user: &str, dev: &str, status: u16) -> Action {
    let action = a.check(&req(user, dev)).action;
    if action == Action::Allow {
        a.record_response(user, dev, status, Some("exch1:443"));
    }
    action
}

#[tokio::test]
async fn per_mailbox_limit_counts_admitted_devices() {
    let a = access(AccessPolicy {
        max_devices_per_mailbox: 2,
        ..AccessPolicy::default()
    });
    assert_eq!(seen(&a, "carol", "d1", 200), Action::Allow);
    assert_eq!(seen(&a, "carol", "d2", 449), Action::Allow);
    let third = a.check(&req("carol", "d3"));
    assert_eq!(
        (third.action, third.rule),
        (Action::Block, Rule::PerMailboxLimit { limit: 2, count: 2 })
    );
    // Existing devices keep working; the blocked one stays blocked and does not count.
    assert_eq!(a.check(&req("carol", "D1")).action, Action::Allow);
    assert_eq!(a.check(&req("carol", "d3")).action, Action::Block);
    // Other users are not affected.
    assert_eq!(a.check(&req("dave", "d3")).action, Action::Allow);
    // Blocking an admitted device frees its slot.
    patch(&a, r#"{"devices":[{"user":"carol","device_id":"d1","state":"blocked","reasons":["compromised"]}]}"#).await;
    assert_eq!(seen(&a, "carol", "d3", 200), Action::Allow);
    // Removing an association frees a slot too.
    assert!(a.remove_association("carol", "d2"));
    assert_eq!(seen(&a, "carol", "d4", 200), Action::Allow);
    assert_eq!(a.check(&req("carol", "d5")).action, Action::Block);
}

/// Issue 13, item 2: devices whose credentials no server accepted (401, or the gateway's own
/// refusals that reached no server) do not use up the mailbox's slots.
#[tokio::test]
async fn only_devices_a_server_accepted_count_against_the_limit() {
    let a = access(AccessPolicy {
        max_devices_per_mailbox: 3,
        ..AccessPolicy::default()
    });
    for junk in ["junk1", "junk2", "junk3", "junk4"] {
        assert_eq!(seen(&a, "carol", junk, 401), Action::Allow, "{junk}");
    }
    // Answered by nobody (no server): not an acceptance either.
    a.check(&req("carol", "junk5"));
    a.record_response("carol", "junk5", 200, None);
    for status in [403, 451, 500, 503] {
        assert_eq!(
            seen(&a, "carol", &format!("x{status}"), status),
            Action::Allow
        );
    }
    // Carol's real phone gets in, and is admitted by its 200.
    assert_eq!(seen(&a, "carol", "iPhoneReal", 200), Action::Allow);
    assert!(a.association("carol", "iPhoneReal").unwrap().admitted);
    assert!(!a.association("carol", "junk1").unwrap().admitted);
    assert_eq!(a.check(&req("carol", "iPhoneReal")).action, Action::Allow);
}

#[tokio::test]
async fn portal_unreachable_new_devices() {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let a = DeviceAccess::in_memory_with_clock(
        AccessPolicy {
            when_portal_unreachable: AllowBlock::Block,
            ..AccessPolicy::default()
        },
        clock.clone(),
    );
    a.set_portal(PortalSync::InSync);
    assert_eq!(a.check(&req("erin", "old")).action, Action::Allow);
    clock.advance(Duration::from_millis(1));
    a.set_portal(PortalSync::Unreachable { since: a.now() });
    let d = a.check(&req("erin", "new"));
    assert_eq!(
        (d.action, d.rule),
        (Action::Block, Rule::PortalUnreachableNewBlocked)
    );
    // A device seen before the outage keeps its rule.
    assert_eq!(a.check(&req("erin", "old")).rule, Rule::UnregisteredAllowed);
    a.set_portal(PortalSync::InSync);
    assert_eq!(a.check(&req("erin", "new")).rule, Rule::UnregisteredAllowed);
}

#[tokio::test]
async fn report_only_lets_everything_through() {
    let a = access(AccessPolicy {
        mode: AccessMode::ReportOnly,
        unregistered: AllowBlock::Block,
        ..AccessPolicy::default()
    });
    let d = a.check(&req("frank", "d1"));
    assert_eq!(d.action, Action::Allow);
    assert!(d.would_block);
    assert_eq!(d.rule.effective(), &Rule::UnregisteredBlocked);
    // The association records what enforce would have done.
    let assoc = a.association("frank", "D1").unwrap();
    assert_eq!(
        (assoc.access, assoc.rule.as_str(), assoc.admitted),
        (Action::Block, "unregistered_blocked", false)
    );
}

#[tokio::test]
async fn wipe_exchange_state_transitions() {
    let a = access(AccessPolicy::default());
    a.check(&req("gina", "lost1"));
    patch(
        &a,
        r#"{"devices":[{"user":"gina","device_id":"lost1","state":"wipe","reasons":["manual"]}]}"#,
    )
    .await;
    let d = a.check(&req("gina", "lost1"));
    assert_eq!((d.action, d.rule), (Action::Wipe, Rule::ListedWipe));
    assert!(a.wipe_sent("gina", "LOST1"));
    assert_eq!(
        a.wipe_acknowledged("gina", "lost1", 2),
        WipeAck::Failed { status: 2 }
    );
    let e = a.entry("gina", "lost1").unwrap();
    assert_eq!(e.state, AccessState::Wipe);
    let w = e.wipe.unwrap();
    assert_eq!((w.sent_count, w.last_failure_status), (1, Some(2)));
    assert!(a.wipe_sent("gina", "lost1"));
    assert_eq!(a.wipe_acknowledged("gina", "lost1", 1), WipeAck::Wiped);
    let e = a.entry("gina", "lost1").unwrap();
    assert_eq!(e.state, AccessState::Wiped);
    assert!(e.wipe.unwrap().acknowledged_at.is_some());
    let assoc = a.association("gina", "lost1").unwrap();
    assert_eq!(assoc.state, Some(AccessState::Wiped));
    assert!(assoc.wiped_at.is_some());
    // After the wipe: blocked, and no second directive.
    let d = a.check(&req("gina", "lost1"));
    assert_eq!((d.action, d.rule), (Action::Block, Rule::Wiped));
    assert!(!a.wipe_sent("gina", "lost1"));
    assert_eq!(a.wipe_acknowledged("gina", "lost1", 1), WipeAck::NotPending);
    // The portal repeating "wipe" does not re-arm it.
    patch(
        &a,
        r#"{"devices":[{"user":"gina","device_id":"lost1","state":"wipe","reasons":["manual"]}]}"#,
    )
    .await;
    assert_eq!(a.entry("gina", "lost1").unwrap().state, AccessState::Wiped);
    // Not marked: nothing recorded.
    assert!(!a.wipe_sent("gina", "other"));
    assert_eq!(a.wipe_acknowledged("gina", "other", 1), WipeAck::NotPending);
}

#[tokio::test]
async fn invalid_body_changes_nothing() {
    let a = access(AccessPolicy::default());
    patch(
        &a,
        r#"{"devices":[{"user":"h","device_id":"d1","state":"blocked"}]}"#,
    )
    .await;
    let before = a.entries();
    let err = a
        .patch(br#"{"devices":[{"user":"h","device_id":"d2","state":"allowed"},{"user":"h","device_id":"bad id","state":"allowed"}],"remove":[{"user":"h","device_id":"d1"}]}"#)
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 422);
    assert!(err.to_string().contains("devices[1].device_id"), "{err}");
    assert_eq!(a.entries(), before);
    let err = a
        .replace(br#"{"devices":[{"user":"h","device_id":"d2","state":"wiped"}]}"#)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("devices[0].state"), "{err}");
    assert_eq!(a.entries(), before);
}

#[tokio::test]
async fn blocked_signal_ends_parked_requests() {
    let a = access(AccessPolicy::default());
    assert_eq!(a.check(&req("ivan", "pinger")).action, Action::Allow);
    let signal = a.blocked_signal("ivan", "pinger");
    let other = a.blocked_signal("ivan", "bystander");
    let parked = tokio::spawn(signal);
    let bystander = tokio::spawn(other);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!parked.is_finished());
    // A change to someone else does not end it.
    patch(
        &a,
        r#"{"devices":[{"user":"ivan","device_id":"x","state":"blocked"}]}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!parked.is_finished());
    patch(&a, r#"{"devices":[{"user":"IVAN","device_id":"PINGER","state":"blocked","reasons":["manual"]}]}"#).await;
    let d = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.action, d.rule), (Action::Block, Rule::ListedBlocked));
    assert!(!bystander.is_finished());
    bystander.abort();

    // Already blocked when the signal is created: resolves at once (no lost change).
    let d = tokio::time::timeout(Duration::from_secs(5), a.blocked_signal("ivan", "pinger"))
        .await
        .unwrap();
    assert_eq!(d.action, Action::Block);

    // A policy change that blocks unregistered devices reaches parked requests too.
    let parked = tokio::spawn(a.blocked_signal("judy", "d"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    a.check(&req("judy", "d"));
    a.set_policy(AccessPolicy {
        unregistered: AllowBlock::Block,
        ..AccessPolicy::default()
    });
    let d = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.rule, Rule::UnregisteredBlocked);

    // Wipe ends a parked request as well.
    let a = access(AccessPolicy::default());
    let parked = tokio::spawn(a.blocked_signal("k", "d"));
    patch(
        &a,
        r#"{"devices":[{"user":"k","device_id":"d","state":"wipe"}]}"#,
    )
    .await;
    let d = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.action, Action::Wipe);
}

#[tokio::test]
async fn associations_record_query_and_bound() {
    let a = access(AccessPolicy {
        max_associations: 64,
        ..AccessPolicy::default()
    });
    let r = RequestInfo {
        command: Some("FolderSync"),
        ..req("Lena", "ApplXYZ")
    };
    a.check(&r);
    a.record_response("lena", "applxyz", 200, Some("exch1.corp.example:443"));
    a.check(&req("lena", "APPLXYZ"));
    let assoc = a.association("LENA", "applxyz").unwrap();
    assert_eq!(assoc.request_count, 2);
    assert_eq!(assoc.device_id, "APPLXYZ");
    assert_eq!(assoc.last_command.as_deref(), Some("Sync"));
    assert_eq!(
        (assoc.last_status, assoc.last_server.as_deref()),
        (Some(200), Some("exch1.corp.example:443"))
    );
    assert_eq!(
        (assoc.access, assoc.rule.as_str()),
        (Action::Allow, "unregistered_allowed")
    );
    assert!(assoc.first_seen <= assoc.last_seen);
    let json = serde_json::to_value(&assoc).unwrap();
    assert!(json["first_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json["access"], "ALLOW");

    for i in 0..30 {
        a.check(&req("m", &format!("dev{i:02}")));
    }
    let page = a.associations(&AssociationQuery {
        user: Some("M".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(
        (page.total, page.items.len(), page.next_offset),
        (30, 10, Some(10))
    );
    assert_eq!(page.items[0].device_id, "dev00");
    let page2 = a.associations(&AssociationQuery {
        user: Some("m".into()),
        offset: 20,
        limit: 10,
        ..Default::default()
    });
    assert_eq!(
        (page2.items[0].device_id.as_str(), page2.next_offset),
        ("dev20", None)
    );
    let by_dev = a.associations(&AssociationQuery {
        device_id: Some("DEV05".into()),
        ..Default::default()
    });
    assert_eq!(by_dev.total, 1);
    let all = a.associations(&AssociationQuery::default());
    assert_eq!(all.total, 31);
    assert_eq!(all.items[0].user, "lena"); // the last spelling the device used

    // Over the bound: the oldest last_seen go first; the newest stay.
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        a.check(&req("n", &format!("d{i:03}")));
    }
    let total = a.associations(&AssociationQuery::default()).total;
    assert!(total <= 64, "{total}");
    assert!(a.association("n", "d099").is_some());
    assert!(a.association("lena", "applxyz").is_none());
}

#[tokio::test]
async fn hostile_request_fields_are_bounded_in_associations() {
    let a = access(AccessPolicy::default());
    let ua = format!("evil\r\nline{}", "x".repeat(10_000));
    a.check(&RequestInfo {
        user_agent: Some(&ua),
        ..req("o", "d")
    });
    let assoc = a.association("o", "d").unwrap();
    let kept = assoc.user_agent.unwrap();
    assert!(kept.len() <= 260, "{}", kept.len());
    assert!(!kept.contains('\n'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_devices_respect_the_limit_exactly() {
    let a = access(AccessPolicy {
        max_devices_per_mailbox: 3,
        ..AccessPolicy::default()
    });
    // 64 new devices at once, each accepted by its server: three are admitted, however the
    // decisions and answers interleave.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { seen(&a, "paul", &format!("dev{i}"), 200) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = (0..64)
        .filter(|i| a.association("paul", &format!("dev{i}")).unwrap().admitted)
        .count();
    assert_eq!(admitted, 3);
    // From now on only those three get through.
    let allowed = (0..64)
        .filter(|i| a.check(&req("paul", &format!("dev{i}"))).action == Action::Allow)
        .count();
    assert_eq!(allowed, 3);
}

#[tokio::test]
async fn explain_json_for_the_management_api() {
    let a = access(AccessPolicy::default());
    a.patch(
        br#"{"devices":[{"user":"q","device_id":"d","state":"blocked","reasons":["os_version"]}]}"#,
    )
    .await
    .unwrap();
    a.check(&req("q", "d"));
    let v = a.explain_json("Q", "D").unwrap();
    assert_eq!(v["decision"], "BLOCK");
    assert_eq!(v["rule"], "listed_blocked");
    assert_eq!(v["reasons"], serde_json::json!(["os_version"]));
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["listed"]["state"], "blocked");
    assert_eq!(v["association"]["request_count"], 1);
    let v = a.explain_json("q", "never").unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["listed"].is_null()),
        (Some("ALLOW"), true)
    );
    let err = a.explain_json("q", "bad/id").unwrap_err();
    assert_eq!(err.http_status(), 422);
    assert!(err.to_string().contains("device_id"), "{err}");
    // explain never records anything.
    assert!(a.association("q", "never").is_none());
}
