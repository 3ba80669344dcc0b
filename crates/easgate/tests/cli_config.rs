//! The binary: `easgate check-config` exit codes and output, and `easgate gateway` as a process —
//! refusing a bad config, reloading on a real SIGHUP, draining and exiting 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const EASGATE: &str = env!("CARGO_BIN_EXE_easgate");

fn config_text(devices: &str, management: &str) -> String {
    format!(
        r#"
[sentry]
host = "gw.example.com"

[listen]
devices = "{devices}"
management = "{management}"

[management]
token_file = "management.token"

[activesync]
client_tls = false
server_tls = false
health_check = false

[[activesync.service]]
name = "default"
servers = "127.0.0.1:20080"

[advanced]
drain_timeout_ms = 2000

[storage]
data_dir = "data"
"#
    )
}

/// A config directory with a private token; returns (dir, config path).
fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("management.token");
    fs::write(&token, "cli-test-token-0123456789").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("easgate.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn check_config(path: &Path) -> Output {
    Command::new(EASGATE)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_config_ok_prints_a_summary_and_writes_nothing() {
    let (dir, path) = setup(&config_text("127.0.0.1:18443", "127.0.0.1:19090"));
    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("config OK"), "{stdout}");
    assert!(
        stdout.contains("127.0.0.1:18443") && stdout.contains("default -> 127.0.0.1:20080"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "check-config must not create the dev certificate"
    );
}

#[test]
fn check_config_prints_every_error_and_exits_1() {
    let text = config_text("127.0.0.1:18443", "127.0.0.1:19090")
        .replace(
            "health_check = false",
            "health_check = false\nhealth_check_interval_s = 5\nlive_threshold = 99",
        )
        .replace("name = \"default\"", "name = \"primary\"")
        .replace("[advanced]", "[advanced]\ndevice_workers = 300");
    let (_dir, path) = setup(&text);
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per error: {stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("advanced.device_workers = 300:") && l.contains("0..=256")),
        "{stdout}"
    );
    assert!(lines.iter().any(
        |l| l.starts_with("activesync.health_check_interval_s = 5:") && l.contains("10..=600")
    ));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("activesync.live_threshold = 99:") && l.contains("1..=10"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("activesync.service[0].name = \"primary\":"))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 error(s)"));
}

#[test]
fn check_config_on_a_missing_or_broken_file_exits_1() {
    let out = check_config(Path::new("/nonexistent/easgate.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config file"));

    let (_dir, path) = setup("[sentry\n");
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config line 1"));
}

#[test]
fn shipped_example_passes_check_config() {
    // As scripts/run.sh lays it out: config/ beside data/management.token.
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("config")).unwrap();
    fs::create_dir_all(root.path().join("data")).unwrap();
    let token = root.path().join("data/management.token");
    fs::write(&token, "example-token-0123456789").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let path = root.path().join("config/easgate.example.toml");
    fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/easgate.example.toml"
        ),
        &path,
    )
    .unwrap();
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn gateway_refuses_to_start_on_a_bad_config() {
    let (_dir, path) = setup(&config_text("127.0.0.1:18443", "127.0.0.1:19090"));
    let text = fs::read_to_string(&path).unwrap().replace(
        "health_check = false",
        "health_check = false\nlive_threshold = 0",
    );
    fs::write(&path, text).unwrap();
    let out = Command::new(EASGATE)
        .arg("gateway")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("activesync.live_threshold = 0"), "{stderr}");
    assert!(stderr.contains("not started"), "{stderr}");
}

/// A free loopback port (the small race with another process is acceptable in tests).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config on free loopback ports, `edit`ed; returns (dir, config path, device port).
fn on_free_ports(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf, u16) {
    let (devices, management) = (free_port(), free_port());
    let text = config_text(
        &format!("127.0.0.1:{devices}"),
        &format!("127.0.0.1:{management}"),
    );
    let (dir, path) = setup(&edit(text));
    (dir, path, devices)
}

/// The gateway process with its stderr collected line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(path: &Path) -> Self {
        let mut child = Command::new(EASGATE)
            .arg("gateway")
            .arg("--config")
            .arg(path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        // 100 × 200 ms: bounded, without a wall clock.
        for _ in 0..100 {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no log line containing {needle:?}; got:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a plain HTTP request to the device port and returns the status line.
fn device_status_line(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gw.example.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn gateway_reloads_on_sighup_and_drains_on_sigterm() {
    let (dir, path, devices) = on_free_ports(|t| t);
    let mut gw = Running::start(&path);
    gw.wait_for("easgate gateway started");
    assert!(
        dir.path().join("data/tls/dev-gateway.crt").exists(),
        "dev certificate generated for the management API"
    );

    // The device listener answers (and is no open proxy).
    assert!(
        device_status_line(devices, "/owa/").contains(" 404"),
        "non-ActiveSync paths get 404"
    );

    // A good config on SIGHUP is applied...
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:20080", "127.0.0.1:20081");
    fs::write(&path, &text).unwrap();
    gw.signal("HUP");
    gw.wait_for("config applied");

    // ...a bad one is rejected and the process keeps serving.
    fs::write(
        &path,
        text.replace(
            "health_check = false",
            "health_check = false\nlive_threshold = 0",
        ),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for("previous config stays in force");
    assert!(device_status_line(devices, "/owa/").contains(" 404"));

    gw.signal("TERM");
    gw.wait_for("easgate gateway stopped");
    let status = gw.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM drains and exits 0");
}

/// The process's device worker threads (Linux: /proc/PID/task/*/comm), once `want` of them
/// carry their name (a thread names itself as it starts) or after 5 s.
fn device_worker_threads(pid: u32, want: usize) -> usize {
    let count = || {
        fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("easgate-dev-"))
            .count()
    };
    for _ in 0..50 {
        if count() == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    count()
}

#[test]
fn gateway_starts_the_configured_number_of_device_workers() {
    let (_dir, path, devices) =
        on_free_ports(|t| t.replace("[advanced]", "[advanced]\ndevice_workers = 3"));
    let mut gw = Running::start(&path);
    gw.wait_for("easgate gateway started");
    assert_eq!(device_worker_threads(gw.child.id(), 3), 3);
    assert!(device_status_line(devices, "/owa/").contains(" 404"));

    // The default: one per CPU this process may use.
    let (_dir2, path, _) = on_free_ports(|t| t);
    let mut auto = Running::start(&path);
    auto.wait_for("easgate gateway started");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(device_worker_threads(auto.child.id(), cpus), cpus);
}
