//! SIGHUP's reload path (`ControlPlane::reload_from_file`): a good file is swapped in for new
//! requests, a bad one changes nothing, listen changes are reported as needing a restart.
//! (The real signal, end to end, is tested with the binary in `crates/easgate/tests/cli_config.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use gateway::error::Error;
use gateway::reload::ControlPlane;
use gateway::state::Gateway;
use gateway::validate::{self, DevCertMode};

const CONFIG: &str = r#"
[sentry]
host = "gw.example.com"

[listen]
devices = "127.0.0.1:18443"
management = "127.0.0.1:19090"

[management]
token_file = "management.token"

[activesync]
server_tls = false

[[activesync.service]]
name = "default"
servers = "127.0.0.1:20080"

[storage]
data_dir = "data"
"#;

fn setup() -> (tempfile::TempDir, Arc<ControlPlane>) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("management.token");
    fs::write(&token, "reload-test-token").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("easgate.toml");
    fs::write(&path, CONFIG).unwrap();
    let runtime = validate::load_file(&path, DevCertMode::Persist).unwrap();
    let cp = ControlPlane::new(Gateway::new(runtime), &path);
    (dir, cp)
}

#[tokio::test]
async fn a_good_file_is_swapped_in() {
    let (_dir, cp) = setup();
    let in_flight = cp.gateway().current();
    fs::write(
        cp.config_path(),
        CONFIG.replace("127.0.0.1:20080", "127.0.0.1:20081;127.0.0.1:20082"),
    )
    .unwrap();

    let applied = cp.reload_from_file().await.unwrap();
    assert!(applied.restart_required.is_empty());
    let now = cp.gateway().current();
    assert_eq!(
        now.activesync.services[0].servers.len(),
        2,
        "new requests see the new servers"
    );
    assert_eq!(
        in_flight.activesync.services[0].servers.len(),
        1,
        "a request in flight keeps its config"
    );
    assert_eq!(cp.reload_counts(), (1, 0));
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_config() {
    let (_dir, cp) = setup();
    let before = cp.gateway().current();
    fs::write(
        cp.config_path(),
        CONFIG.replace(
            "server_tls = false",
            "server_tls = false\nlive_threshold = 0",
        ),
    )
    .unwrap();
    match cp.reload_from_file().await {
        Err(Error::InvalidConfig { errors }) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "activesync.live_threshold");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(Arc::ptr_eq(&before, &cp.gateway().current()));

    fs::write(cp.config_path(), "this is not toml [").unwrap();
    assert!(cp.reload_from_file().await.is_err());
    fs::remove_file(cp.config_path()).unwrap();
    assert!(cp.reload_from_file().await.is_err());
    assert!(Arc::ptr_eq(&before, &cp.gateway().current()));
    assert_eq!(cp.reload_counts(), (0, 3));
}

#[tokio::test]
async fn listen_changes_are_applied_on_restart_only() {
    let (_dir, cp) = setup();
    fs::write(
        cp.config_path(),
        CONFIG.replace("127.0.0.1:19090", "127.0.0.1:19091"),
    )
    .unwrap();
    let applied = cp.reload_from_file().await.unwrap();
    assert_eq!(applied.restart_required, ["listen.management"]);
}

#[tokio::test]
async fn device_worker_changes_are_applied_on_restart_only() {
    let (_dir, cp) = setup();
    fs::write(
        cp.config_path(),
        format!("{CONFIG}\n[advanced]\ndevice_workers = 4\n"),
    )
    .unwrap();
    let applied = cp.reload_from_file().await.unwrap();
    assert_eq!(applied.restart_required, ["advanced.device_workers"]);
    assert_eq!(cp.gateway().current().source.advanced.device_workers, 4);
}

#[tokio::test]
async fn concurrent_applies_do_not_interleave() {
    let (_dir, cp) = setup();
    let bodies: Vec<String> = (0..8)
        .map(|i| CONFIG.replace("127.0.0.1:20080", &format!("127.0.0.1:{}", 21000 + i)))
        .collect();
    let mut tasks = Vec::new();
    for body in bodies {
        let cp = cp.clone();
        tasks.push(tokio::spawn(async move {
            cp.apply_body(body.as_bytes(), validate::Format::Toml)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Whatever won last is both in force and on disk.
    let on_disk = validate::load_file(cp.config_path(), DevCertMode::InMemory).unwrap();
    assert_eq!(on_disk.source, cp.gateway().current().source);
    assert_eq!(cp.reload_counts(), (8, 0));
}
