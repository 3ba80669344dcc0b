//! The state file: write, "restart" (a new instance loads it) and get the same decisions; atomic
//! mode-0600 writes; a corrupt file refuses to start and is kept for the admin.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use gateway::access::{
    AccessError, AccessPolicy, AccessState, Action, AllowBlock, DeviceAccess, PortalSync,
    RequestInfo, Rule, Timestamp, WipeAck,
};

fn req<'a>(user: &'a str, device_id: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        user,
        device_id,
        device_type: Some("Android"),
        command: Some("Ping"),
        ..Default::default()
    }
}

fn policy() -> AccessPolicy {
    AccessPolicy {
        max_devices_per_mailbox: 2,
        ..AccessPolicy::default()
    }
}

async fn load(path: &Path, policy: AccessPolicy) -> Arc<DeviceAccess> {
    DeviceAccess::load(policy, path.to_path_buf())
        .await
        .unwrap()
}

#[tokio::test]
async fn restart_keeps_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("devices.json");

    let a = load(&path, policy()).await;
    assert!(
        !path.exists(),
        "missing file: start empty, nothing written yet"
    );
    a.patch(
        br#"{"devices":[
            {"user":"alice","device_id":"ApplF17XYZ","state":"allowed","reasons":["registered"]},
            {"user":"bob","device_id":"B1","state":"blocked","reasons":["manual","compromised"]},
            {"user":"carl","device_id":"Lost","state":"wipe","reasons":["manual"]},
            {"user":"dora","device_id":"W1","state":"wipe"}]}"#,
    )
    .await
    .unwrap();
    // The management change is on disk before patch returns.
    assert!(path.exists());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Per-mailbox history, a wipe confirmed.
    for d in ["e1", "e2", "e3"] {
        a.check(&req("eve", d));
    }
    assert_eq!(a.check(&req("dora", "w1")).action, Action::Wipe);
    assert!(a.wipe_sent("dora", "w1"));
    assert_eq!(a.wipe_acknowledged("dora", "w1", 1), WipeAck::Wiped);
    // A server accepted e1 and e2 (that is what admits a device); e3 was let through but its
    // credentials were never accepted.
    a.record_response("eve", "e1", 200, Some("exch1:443"));
    a.record_response("eve", "e2", 449, Some("exch1:443"));
    a.record_response("eve", "e3", 401, Some("exch1:443"));
    assert!(a.is_dirty());
    assert!(a.flush().await.unwrap());
    assert!(!a.is_dirty());
    assert!(!a.flush().await.unwrap(), "nothing new to write");

    let probes = [
        ("alice", "applf17xyz"),
        ("BOB", "b1"),
        ("carl", "LOST"),
        ("dora", "W1"),
        ("eve", "e1"),
        ("eve", "e2"),
        ("eve", "e3"),
        ("eve", "e4"),
        ("zed", "new"),
    ];
    let before: Vec<_> = probes.iter().map(|(u, d)| a.explain(u, d)).collect();
    let assoc_before = a.associations(&Default::default());
    drop(a);

    let b = load(&path, policy()).await;
    let after: Vec<_> = probes.iter().map(|(u, d)| b.explain(u, d)).collect();
    assert_eq!(before, after);
    assert_eq!(after[1].rule, Rule::ListedBlocked);
    assert_eq!(after[2].action, Action::Wipe);
    assert_eq!(after[3].rule, Rule::Wiped);
    assert_eq!(after[6].rule, Rule::PerMailboxLimit { limit: 2, count: 2 });
    assert_eq!(after[7].action, Action::Block);
    assert_eq!(b.associations(&Default::default()), assoc_before);
    assert_eq!(b.entry("dora", "w1").unwrap().state, AccessState::Wiped);
    assert_eq!(
        b.association("eve", "e1").unwrap().last_server.as_deref(),
        Some("exch1:443")
    );
    // Existing admitted devices still work after the restart.
    assert_eq!(b.check(&req("eve", "e2")).action, Action::Allow);
    assert_eq!(b.check(&req("eve", "e4")).action, Action::Block);
}

#[tokio::test]
async fn restart_before_portal_sync_uses_persisted_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.json");
    let a = load(&path, policy()).await;
    a.patch(br#"{"devices":[{"user":"u","device_id":"blocked1","state":"blocked"}]}"#)
        .await
        .unwrap();
    a.check(&req("u", "known"));
    a.flush().await.unwrap();
    drop(a);

    let strict = AccessPolicy {
        when_portal_unreachable: AllowBlock::Block,
        ..policy()
    };
    let b = load(&path, strict).await;
    b.set_portal(PortalSync::NeverSynced {
        since: Timestamp::now(),
    });
    assert_eq!(b.check(&req("u", "blocked1")).rule, Rule::ListedBlocked);
    assert_eq!(b.check(&req("u", "known")).rule, Rule::UnregisteredAllowed);
    assert_eq!(
        b.check(&req("u", "brandnew")).rule,
        Rule::PortalUnreachableNewBlocked
    );
}

#[tokio::test]
async fn flusher_writes_request_path_changes_and_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.json");
    let a = load(
        &path,
        AccessPolicy {
            flush_interval: std::time::Duration::from_secs(3600),
            ..policy()
        },
    )
    .await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(a.clone().run_flusher(async move {
        let _ = rx.await;
    }));
    a.check(&req("f", "d1"));
    tx.send(()).unwrap();
    task.await.unwrap();
    assert!(!a.is_dirty());
    let b = load(&path, policy()).await;
    assert!(b.association("f", "d1").is_some());
}

#[tokio::test]
async fn corrupt_file_refuses_to_start_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.json");
    for garbage in [
        &b"{not json"[..],
        br#"{"format":99,"saved_at":"2026-01-01T00:00:00.000Z","devices":[],"associations":[]}"#,
    ] {
        std::fs::write(&path, garbage).unwrap();
        let err = match DeviceAccess::load(policy(), path.clone()).await {
            Err(e) => e,
            Ok(_) => panic!("must refuse"),
        };
        let AccessError::CorruptState {
            copy: Some(copy), ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(std::fs::read(copy).unwrap(), garbage);
        assert_eq!(
            std::fs::metadata(copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            copy.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("devices.json.corrupt-")
        );
        assert!(err.to_string().contains("fix or remove"), "{err}");
        assert_eq!(err.http_status(), 500);
        // The original stays in place: the admin decides.
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        std::fs::remove_file(copy).unwrap();
    }
    // Entries that could not have come from a validated body are corrupt too.
    std::fs::write(
        &path,
        br#"{"format":1,"saved_at":"2026-01-01T00:00:00.000Z","devices":[{"user":"a","device_id":"bad id","state":"allowed","reasons":[],"updated_at":"2026-01-01T00:00:00.000Z"}],"associations":[]}"#,
    )
    .unwrap();
    assert!(matches!(
        DeviceAccess::load(policy(), path.clone()).await,
        Err(AccessError::CorruptState { .. })
    ));
    // Removing it starts empty.
    std::fs::remove_file(&path).unwrap();
    let a = load(&path, policy()).await;
    assert!(a.entries().is_empty());
}

#[tokio::test]
async fn persistence_failure_keeps_the_change_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    let a = load(&sub.join("devices.json"), policy()).await;
    // The state directory is now a regular file: every write fails.
    std::fs::write(&sub, b"x").unwrap();
    let err = a
        .patch(br#"{"devices":[{"user":"u","device_id":"d","state":"blocked"}]}"#)
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::StateIo { .. }), "{err}");
    assert_eq!(a.explain("u", "d").action, Action::Block);
    assert!(a.is_dirty());
}
