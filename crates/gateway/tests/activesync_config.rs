//! Issue 4 config: `[device_access]` and `activesync.redirect_allowed_hosts` are validated with
//! every other field (all errors at once, each naming the field), and the persisted device state
//! is found under the data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fs;
use std::os::unix::fs::PermissionsExt;

use gateway::config::Config;
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
health_check = false
redirect_allowed_hosts = __HOSTS__
[[activesync.service]]
name = "default"
servers = "127.0.0.1:20080"
[storage]
data_dir = "data"
__ACCESS__
"#;

fn setup(hosts: &str, access: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("management.token");
    fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let text = CONFIG
        .replace("__HOSTS__", hosts)
        .replace("__ACCESS__", access);
    let config = validate::parse(text.as_bytes(), validate::Format::Toml).unwrap();
    (dir, config)
}

#[test]
fn device_access_and_redirect_hosts_errors_are_reported_with_the_others() {
    let (dir, config) = setup(
        r#"["mail2.corp.example", "10.1.2.3:443", "bad host", "x:0"]"#,
        "[device_access]\nmode = \"audit\"\nblocked_response = 401\n",
    );
    let errors = validate::validate(&config, dir.path(), DevCertMode::InMemory).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"device_access.mode"), "{fields:?}");
    assert!(
        fields.contains(&"device_access.blocked_response"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"activesync.redirect_allowed_hosts[2]"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"activesync.redirect_allowed_hosts[3]"),
        "{fields:?}"
    );
    assert!(!fields.contains(&"activesync.redirect_allowed_hosts[0]"));
    let mode = errors
        .iter()
        .find(|e| e.field == "device_access.mode")
        .unwrap();
    assert!(mode.to_string().contains("report-only"), "{mode}");
}

#[tokio::test]
async fn the_state_file_resolves_against_the_data_dir_and_a_corrupt_one_stops_the_start() {
    let (dir, config) = setup("[]", "[device_access]\nunregistered = \"block\"\n");
    let rt = validate::validate(&config, dir.path(), DevCertMode::InMemory).unwrap();
    let access = gateway::server::load_device_access(&rt).await.unwrap();
    access
        .patch(br#"{"devices":[{"user":"a","device_id":"D1","state":"blocked"}]}"#)
        .await
        .unwrap();
    let file = dir.path().join("data/state/devices.json");
    assert!(file.exists(), "state file under the data dir");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fs::write(&file, b"{ not ours").unwrap();
    let err = match gateway::server::load_device_access(&rt).await {
        Err(e) => e,
        Ok(_) => panic!("a corrupt state file must stop the start"),
    };
    assert!(err.to_string().contains("unreadable"), "{err}");
}
