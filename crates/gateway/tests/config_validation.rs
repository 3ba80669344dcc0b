//! Every validation rule: a bad value gives an error naming the field, the value and what is
//! allowed; good configs (the shipped example included) validate; files are loaded and checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gateway::config::Config;
use gateway::validate::{self, DevCertMode, FieldError, Format};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A config directory with a private token file, and a minimal valid config.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("management.token");
        fs::write(&token, format!("{TOKEN}\n")).unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        Self { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> Config {
        parse(MINIMAL)
    }

    fn errors(&self, config: &Config) -> Vec<FieldError> {
        match validate::validate(config, self.base(), DevCertMode::InMemory) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    fn ok(&self, config: &Config) -> gateway::model::Runtime {
        validate::validate(config, self.base(), DevCertMode::InMemory).unwrap_or_else(|errors| {
            panic!(
                "expected a valid config, got: {}",
                FieldError::join(&errors)
            )
        })
    }
}

const MINIMAL: &str = r#"
[sentry]
host = "gw.example.com"

[listen]
devices = "127.0.0.1:8443"
management = "127.0.0.1:9090"

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

fn parse(text: &str) -> Config {
    validate::parse(text.as_bytes(), Format::Toml)
        .unwrap_or_else(|e| panic!("{}", FieldError::join(&e)))
}

/// Asserts one error names `field`, shows `value` and says `allowed` (substring).
#[track_caller]
fn assert_error(errors: &[FieldError], field: &str, value: &str, allowed: &str) {
    let hit = errors.iter().find(|e| e.field == field);
    let Some(e) = hit else {
        panic!("no error for {field}; got: {}", FieldError::join(errors))
    };
    assert_eq!(e.value, value, "value shown for {field}: {e}");
    assert!(
        e.message.contains(allowed),
        "message for {field} should mention {allowed:?}: {e}"
    );
    // The one-line form carries all three.
    let line = e.to_string();
    assert!(line.contains(field) && line.contains(allowed), "{line}");
}

#[test]
fn minimal_config_validates_with_defaults() {
    let f = Fixture::new();
    let rt = f.ok(&f.config());
    assert_eq!(rt.sentry_host, "gw.example.com");
    assert_eq!(rt.listen.devices.to_string(), "127.0.0.1:8443");
    assert_eq!(rt.activesync.services[0].name, "default");
    assert_eq!(
        rt.activesync.services[0].servers[0].to_string(),
        "127.0.0.1:20080"
    );
    assert_eq!(rt.timeouts.server_response.as_millis(), 60_000);
    assert_eq!(
        rt.management.token.as_deref(),
        Some(TOKEN),
        "token is read and trimmed"
    );
    assert_eq!(
        rt.data_dir,
        f.path("data"),
        "relative data_dir resolves against the config dir"
    );
    let device = rt.device_tls.as_ref().expect("client_tls defaults to on");
    assert_eq!(
        device.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(rt.activesync.server_tls.is_none());
    assert_eq!(rt.activesync.health_check.unwrap().interval.as_secs(), 60);
}

#[test]
fn shipped_example_config_validates() {
    // Laid out as in the repository: config/ beside data/ (the token file run.sh creates).
    let root = tempfile::tempdir().unwrap();
    let config_dir = root.path().join("config");
    let data_dir = root.path().join("data");
    fs::create_dir_all(&config_dir).unwrap();
    fs::create_dir_all(&data_dir).unwrap();
    let token = data_dir.join("management.token");
    fs::write(&token, TOKEN).unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/easgate.example.toml"
    );
    let path = config_dir.join("easgate.toml");
    fs::copy(example, &path).unwrap();

    let rt = validate::load_file(&path, DevCertMode::InMemory)
        .unwrap_or_else(|e| panic!("example config: {}", FieldError::join(&e)));
    assert_eq!(
        rt.listen.devices.port(),
        8443,
        "high port: runs without root"
    );
    assert!(rt.listen.management.port() > 1024);
    assert_eq!(
        rt.activesync.services[0].servers[0].to_string(),
        "127.0.0.1:20080"
    );
    assert!(rt.device_tls.is_some());
    assert!(
        !data_dir.join("tls").exists(),
        "check mode must not write the development certificate"
    );
}

#[test]
fn example_config_documents_every_field() {
    // Every field of the serialized default shape appears (commented or not) in the example.
    let example = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/easgate.example.toml"
    ))
    .unwrap();
    let f = Fixture::new();
    let mut config = f.config();
    config.tls.cert = Some("x".into());
    config.tls.key = Some("x".into());
    let full = toml::to_string(&config).unwrap();
    for line in full.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                example.contains(&format!("{key} = ")),
                "example config lacks {key}"
            );
        }
    }
}

/// (field, setter, bad value, allowed range as the message states it)
type RangeCase = (&'static str, fn(&mut Config, u64), u64, &'static str);
type Mutation = fn(&mut Config);

#[test]
fn health_and_server_ranges() {
    let f = Fixture::new();
    let cases: [RangeCase; 10] = [
        (
            "activesync.health_check_interval_s",
            |c, v| c.activesync.health_check_interval_s = v,
            9,
            "10..=600",
        ),
        (
            "activesync.health_check_interval_s",
            |c, v| c.activesync.health_check_interval_s = v,
            601,
            "10..=600",
        ),
        (
            "activesync.live_threshold",
            |c, v| c.activesync.live_threshold = v as u32,
            0,
            "1..=10",
        ),
        (
            "activesync.live_threshold",
            |c, v| c.activesync.live_threshold = v as u32,
            11,
            "1..=10",
        ),
        (
            "global_server.dead_threshold",
            |c, v| c.global_server.dead_threshold = v as u32,
            0,
            "1..=1000",
        ),
        (
            "global_server.dead_threshold",
            |c, v| c.global_server.dead_threshold = v as u32,
            1001,
            "1..=1000",
        ),
        (
            "global_server.failure_window_ms",
            |c, v| c.global_server.failure_window_ms = v,
            0,
            "1..=86400000",
        ),
        (
            "global_server.failure_window_ms",
            |c, v| c.global_server.failure_window_ms = v,
            86_400_001,
            "1..=86400000",
        ),
        (
            "global_server.dead_time_ms",
            |c, v| c.global_server.dead_time_ms = v,
            0,
            "1..=172800000",
        ),
        (
            "global_server.dead_time_ms",
            |c, v| c.global_server.dead_time_ms = v,
            172_800_001,
            "1..=172800000",
        ),
    ];
    for (field, set, value, allowed) in cases {
        let mut config = f.config();
        set(&mut config, value);
        assert_error(&f.errors(&config), field, &value.to_string(), allowed);
    }
    // The edges themselves are allowed.
    let mut config = f.config();
    config.activesync.health_check_interval_s = 600;
    config.activesync.live_threshold = 10;
    config.global_server.dead_threshold = 1000;
    config.global_server.failure_window_ms = 86_400_000;
    config.global_server.dead_time_ms = 172_800_000;
    let rt = f.ok(&config);
    assert_eq!(rt.servers.dead_threshold, 1000);
    assert_eq!(rt.servers.dead_time.as_millis(), 172_800_000);
}

#[test]
fn timeouts_must_be_at_least_one_ms() {
    let f = Fixture::new();
    let cases: [(&str, Mutation); 4] = [
        ("advanced.socket_read_write_timeout_ms", |c| {
            c.advanced.socket_read_write_timeout_ms = 0
        }),
        ("advanced.server_connection_timeout_ms", |c| {
            c.advanced.server_connection_timeout_ms = 0
        }),
        ("advanced.server_response_timeout_ms", |c| {
            c.advanced.server_response_timeout_ms = 0
        }),
        ("advanced.device_request_timeout_ms", |c| {
            c.advanced.device_request_timeout_ms = 0
        }),
    ];
    for (field, set) in cases {
        let mut config = f.config();
        set(&mut config);
        assert_error(&f.errors(&config), field, "0", ">= 1");
    }
    let mut config = f.config();
    config.advanced.server_response_timeout_ms = 1;
    assert_eq!(f.ok(&config).timeouts.server_response.as_millis(), 1);
}

/// The request body deadline (issue 13): 1 ms to one day, ten minutes when not set.
#[test]
fn device_body_timeout_is_checked() {
    let f = Fixture::new();
    assert_eq!(
        f.ok(&f.config()).timeouts.device_body,
        std::time::Duration::from_secs(600)
    );
    for v in [0, 86_400_001] {
        let mut config = f.config();
        config.advanced.device_body_timeout_ms = v;
        assert_error(
            &f.errors(&config),
            "advanced.device_body_timeout_ms",
            &v.to_string(),
            "1..=86400000",
        );
    }
    let mut config = f.config();
    config.advanced.device_body_timeout_ms = 86_400_000;
    assert_eq!(f.ok(&config).timeouts.device_body.as_millis(), 86_400_000);
}

#[test]
fn limits_are_checked() {
    let f = Fixture::new();
    let mut config = f.config();
    config.limits.max_request_header_bytes = 100;
    config.limits.max_request_body_bytes = 0;
    let errors = f.errors(&config);
    assert_error(
        &errors,
        "limits.max_request_header_bytes",
        "100",
        "8192..=1048576",
    );
    assert_error(&errors, "limits.max_request_body_bytes", "0", ">= 1");
}

#[test]
fn servers_lists() {
    let f = Fixture::new();
    let field = "activesync.service[0].servers";
    let too_long = vec!["exch.corp.example"; 250].join(";");
    assert!(too_long.len() > 4000);
    for (servers, allowed) in [
        (too_long.as_str(), "at most 4000"),
        ("", "host[:port]"),
        ("exch1.corp.example;exch 2.corp.example", "host[:port]"),
        ("fe80::1:443", "brackets"),
        ("[fe80::1:443", "missing ']'"),
        ("exch.corp.example:0", "1..=65535"),
        ("exch.corp.example:70000", "1..=65535"),
        ("exch.corp.example:https", "1..=65535"),
    ] {
        let mut config = f.config();
        config.activesync.services[0].servers = servers.to_string();
        let errors = f.errors(&config);
        let e = errors
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("{servers:?} accepted"));
        assert!(e.message.contains(allowed), "{servers:?}: {e}");
    }
    let mut config = f.config();
    config.activesync.services[0].servers =
        "Exch1.Corp.Example:443; exch2.corp.example ;[2001:db8::1]:8443;[::1]".into();
    let rt = f.ok(&config);
    let shown: Vec<String> = rt.activesync.services[0]
        .servers
        .iter()
        .map(ToString::to_string)
        .collect();
    // Without server TLS the default port is 80.
    assert_eq!(
        shown,
        [
            "exch1.corp.example:443",
            "exch2.corp.example:80",
            "[2001:db8::1]:8443",
            "[::1]:80"
        ]
    );
}

#[test]
fn default_server_port_follows_server_tls() {
    let f = Fixture::new();
    let mut config = f.config();
    config.activesync.server_tls = true;
    config.activesync.services[0].servers = "exch.corp.example".into();
    let rt = f.ok(&config);
    assert_eq!(rt.activesync.services[0].servers[0].port, 443);
    let client = rt.activesync.server_tls.expect("server TLS config");
    assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn service_names() {
    let f = Fixture::new();
    let with_services = |names: &[&str]| {
        let mut config = f.config();
        config.activesync.services = names
            .iter()
            .map(|n| gateway::config::Service {
                name: n.to_string(),
                servers: "10.0.0.1".into(),
            })
            .collect();
        f.errors(&config)
    };

    assert_error(
        &with_services(&["mail.example.com"]),
        "activesync.service[0].name",
        "\"mail.example.com\"",
        "cannot be renamed or removed",
    );
    assert_error(&with_services(&[]), "activesync.service", "", "\"default\"");
    for bad in [
        "a/b", "a;b", "a?b", "a*b", "a<b", "a>b", "a|b", "a\"b", "a b",
    ] {
        let errors = with_services(&["default", bad]);
        assert_error(
            &errors,
            "activesync.service[1].name",
            &format!("{bad:?}"),
            "must not contain",
        );
    }
    assert_error(
        &with_services(&["default", "Mail.Example.com", "mail.example.COM"]),
        "activesync.service[2].name",
        "\"mail.example.COM\"",
        "duplicate of activesync.service[1].name",
    );
    assert_error(
        &with_services(&["default", "DEFAULT"]),
        "activesync.service[1].name",
        "\"DEFAULT\"",
        "duplicate",
    );
    assert!(with_services(&["default", "mail.example.com", "mail-eu.example.com:443"]).is_empty());
}

#[test]
fn enumerations() {
    let f = Fixture::new();
    let mut config = f.config();
    config.global_server.scheduling = "random".into();
    config.activesync.server_auth = "kerberos".into();
    config.activesync.limit_protocol_version = "15.0".into();
    let errors = f.errors(&config);
    assert_error(
        &errors,
        "global_server.scheduling",
        "\"random\"",
        "\"priority\" | \"round-robin\"",
    );
    assert_error(
        &errors,
        "activesync.server_auth",
        "\"kerberos\"",
        "not supported yet",
    );
    assert_error(
        &errors,
        "activesync.limit_protocol_version",
        "\"15.0\"",
        "2.5, 12.0, 12.1, 14.0, 14.1, 16.0, 16.1",
    );

    let mut config = f.config();
    config.activesync.server_auth = "ntlm".into();
    assert_error(
        &f.errors(&config),
        "activesync.server_auth",
        "\"ntlm\"",
        "pass-through",
    );

    for v in ["", "2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1"] {
        let mut config = f.config();
        config.activesync.limit_protocol_version = v.into();
        config.global_server.scheduling = "round-robin".into();
        let rt = f.ok(&config);
        assert_eq!(
            rt.activesync.limit_protocol_version.as_deref(),
            (!v.is_empty()).then_some(v)
        );
        assert_eq!(
            rt.servers.scheduling,
            gateway::model::Scheduling::RoundRobin
        );
    }
}

#[test]
fn listen_addresses_and_sentry() {
    let f = Fixture::new();
    let mut config = f.config();
    config.listen.devices = Some("localhost:443".into());
    config.listen.management = Some("127.0.0.1:0".into());
    config.sentry.host = "bad host".into();
    let errors = f.errors(&config);
    assert_error(&errors, "listen.devices", "\"localhost:443\"", "ip:port");
    assert_error(&errors, "listen.management", "\"127.0.0.1:0\"", "1..=65535");
    assert_error(&errors, "sentry.host", "\"bad host\"", "host name");

    let mut config = f.config();
    config.listen.management = Some("0.0.0.0:8443".into());
    assert_error(
        &f.errors(&config),
        "listen.management",
        "\"0.0.0.0:8443\"",
        "must not be the device address",
    );

    // Management defaults to all addresses on sentry.port.
    let mut config = f.config();
    config.listen.management = None;
    config.sentry.port = 9443;
    assert_eq!(f.ok(&config).listen.management.to_string(), "0.0.0.0:9443");
    config.sentry.port = 0;
    assert_error(&f.errors(&config), "sentry.port", "0", "1..=65535");
}

#[test]
fn trusted_proxies() {
    let f = Fixture::new();
    let mut config = f.config();
    config.listen.trusted_proxies = vec![
        "10.0.0.0/8".into(),
        "192.168.1.7".into(),
        "fd00::/8".into(),
        "10.0.0.0/40".into(),
        "lb1".into(),
    ];
    let errors = f.errors(&config);
    assert_error(
        &errors,
        "listen.trusted_proxies[3]",
        "\"10.0.0.0/40\"",
        "0..=32",
    );
    assert_error(&errors, "listen.trusted_proxies[4]", "\"lb1\"", "CIDR");
    assert_eq!(errors.len(), 2, "{}", FieldError::join(&errors));
    config.listen.trusted_proxies.truncate(3);
    let rt = f.ok(&config);
    assert_eq!(rt.trusted_proxies.len(), 3);
    assert_eq!(rt.trusted_proxies[1].prefix, 32);
}

#[test]
fn management_needs_a_credential() {
    let f = Fixture::new();
    let mut config = f.config();
    config.management.token_file = None;
    assert_error(
        &f.errors(&config),
        "management",
        "",
        "token_file or client_ca",
    );
}

#[test]
fn token_file_must_exist_be_private_and_non_empty() {
    let f = Fixture::new();
    let mut config = f.config();
    config.management.token_file = Some("missing.token".into());
    assert_error(
        &f.errors(&config),
        "management.token_file",
        "\"missing.token\"",
        "cannot read",
    );

    let open = f.path("open.token");
    fs::write(&open, TOKEN).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    config.management.token_file = Some("open.token".into());
    let errors = f.errors(&config);
    assert_error(
        &errors,
        "management.token_file",
        "\"open.token\"",
        "0600 or stricter",
    );
    assert!(
        !FieldError::join(&errors).contains(TOKEN),
        "the token never appears in an error"
    );

    let empty = f.path("empty.token");
    fs::write(&empty, "\n").unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o400)).unwrap();
    config.management.token_file = Some(empty.display().to_string());
    assert_error(
        &f.errors(&config),
        "management.token_file",
        &format!("{:?}", empty.display().to_string()),
        "empty",
    );

    // 0400 is stricter than 0600: fine. Absolute paths work too.
    fs::write(&empty, "tok\n").unwrap();
    assert_eq!(f.ok(&config).management.token.as_deref(), Some("tok"));
}

/// A self-signed certificate and key written as PEM files; returns (cert, key) paths.
fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    fs::write(&c, cert.pem()).unwrap();
    fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn tls_certificate_and_key_load_and_match() {
    let f = Fixture::new();
    let (cert_a, key_a) = write_cert(f.base(), "a", &["gw.example.com"]);
    let (_, key_b) = write_cert(f.base(), "b", &["other.example.com"]);

    let mut config = f.config();
    config.tls.cert = Some("a.crt".into());
    config.tls.key = Some("a.key".into());
    f.ok(&config);

    config.tls.key = Some("b.key".into());
    assert_error(&f.errors(&config), "tls.key", "\"b.key\"", "does not match");

    fs::write(f.path("garbage.crt"), "not a certificate").unwrap();
    config.tls.cert = Some("garbage.crt".into());
    config.tls.key = Some("a.key".into());
    assert_error(
        &f.errors(&config),
        "tls.cert",
        "\"garbage.crt\"",
        "BEGIN CERTIFICATE",
    );

    config.tls.cert = Some(cert_a.display().to_string());
    config.tls.key = Some("nope.key".into());
    assert_error(&f.errors(&config), "tls.key", "\"nope.key\"", "cannot read");

    config.tls.key = None;
    assert_error(&f.errors(&config), "tls.key", "", "set together");
    let _ = (key_a, key_b);
}

#[test]
fn ca_bundles_load() {
    let f = Fixture::new();
    let (ca, _) = write_cert(f.base(), "ca", &["ca.example"]);
    fs::write(
        f.path("bad.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let mut config = f.config();
    config.management.client_ca = vec![ca.display().to_string()];
    config.activesync.server_ca = vec!["ca.crt".into()];
    config.activesync.server_tls = true;
    let rt = f.ok(&config);
    assert_eq!(rt.management.client_ca.len(), 1);

    config.management.client_ca = vec!["ca.crt".into(), "bad.pem".into()];
    config.activesync.server_ca = vec!["missing.pem".into()];
    let errors = f.errors(&config);
    assert_error(
        &errors,
        "management.client_ca[1]",
        "\"bad.pem\"",
        "not valid PEM",
    );
    assert_error(
        &errors,
        "activesync.server_ca[0]",
        "\"missing.pem\"",
        "cannot read",
    );

    // Client certificates alone are a valid management credential.
    let mut config = f.config();
    config.management.token_file = None;
    config.management.client_ca = vec!["ca.crt".into()];
    let rt = f.ok(&config);
    assert!(rt.management.token.is_none());
}

#[test]
fn all_errors_are_reported_at_once() {
    let f = Fixture::new();
    let mut config = f.config();
    config.activesync.health_check_interval_s = 1;
    config.global_server.dead_threshold = 0;
    config.advanced.server_response_timeout_ms = 0;
    config.activesync.services[0].name = "primary".into();
    config.management.token_file = Some("missing".into());
    let errors = f.errors(&config);
    assert_eq!(errors.len(), 5, "{}", FieldError::join(&errors));
}

#[test]
fn syntax_and_unknown_fields_have_positions() {
    let errors = validate::parse(b"[sentry]\nhost = \"a\"\nprot = 1\n", Format::Toml).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].field.contains("line 3"), "{}", errors[0]);
    assert!(
        errors[0].message.contains("unknown field `prot`"),
        "{}",
        errors[0]
    );

    let errors = validate::parse(b"{\"sentry\": 1}", Format::Json).unwrap_err();
    assert!(errors[0].field.contains("line 1"), "{}", errors[0]);

    let errors = validate::load_file(
        Path::new("/nonexistent/easgate.toml"),
        DevCertMode::InMemory,
    )
    .unwrap_err();
    assert_eq!(errors[0].field, "config file");
}

#[test]
fn client_tls_off_means_plain_devices_but_tls_management() {
    let f = Fixture::new();
    let mut config = f.config();
    config.activesync.client_tls = false;
    let rt = f.ok(&config);
    assert!(rt.device_tls.is_none());
    assert_eq!(rt.management.tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn development_certificate_is_generated_once_and_private() {
    let f = Fixture::new();
    let config = f.config();
    let first = validate::validate(&config, f.base(), DevCertMode::Persist).unwrap();
    let (cert, key) = gateway::dev_certificate::paths(&first.data_dir);
    assert!(cert.exists() && key.exists());
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = fs::read(&cert).unwrap();

    // Reused, not regenerated, on the next load.
    validate::validate(&config, f.base(), DevCertMode::Persist).unwrap();
    assert_eq!(fs::read(&cert).unwrap(), pem);

    // It names sentry.host, localhost and 127.0.0.1.
    let der = validate::read_certs(&cert).unwrap().remove(0);
    let text = String::from_utf8_lossy(der.as_ref()).into_owned();
    assert!(text.contains("gw.example.com") && text.contains("localhost"));
    assert!(der.as_ref().windows(4).any(|w| w == [127, 0, 0, 1]));
}
