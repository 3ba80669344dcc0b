//! The management API over real sockets and real TLS: credentials (token and client
//! certificate), status, config read/replace with validation and atomic persistence, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use gateway::reload::ControlPlane;
use gateway::state::Gateway;
use gateway::validate::{self, DevCertMode};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::watch;

const TOKEN: &str = "test-token-7f3a9c1e5b2d4f6a8c0e";

const CONFIG: &str = r#"# kept verbatim when a TOML body is saved
[sentry]
host = "gw.example.com"

[listen]
devices = "127.0.0.1:18443"
management = "127.0.0.1:19090"

[management]
token_file = "management.token"
__CLIENT_CA__

[activesync]
server_tls = false
health_check = false

[[activesync.service]]
name = "default"
servers = "127.0.0.1:20080"

[[activesync.service]]
name = "mail-eu.example.com"
servers = "10.1.1.1:8080;10.1.1.2:8080"

[storage]
data_dir = "data"
"#;

type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A running management API on a loopback port, with its config directory.
struct Mgmt {
    addr: SocketAddr,
    server_ca: CertificateDer<'static>,
    cp: Arc<ControlPlane>,
    config_path: PathBuf,
    _dir: tempfile::TempDir,
    _shutdown: watch::Sender<bool>,
}

impl Mgmt {
    async fn start(client_ca: Option<&CertificateDer<'static>>) -> Self {
        Self::start_with(CONFIG, client_ca).await
    }

    async fn start_with(config: &str, client_ca: Option<&CertificateDer<'static>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("management.token");
        fs::write(&token, format!("{TOKEN}\n")).unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        let ca_line = match client_ca {
            Some(ca) => {
                let pem = pem_of(ca);
                fs::write(dir.path().join("admins-ca.pem"), pem).unwrap();
                "client_ca = [\"admins-ca.pem\"]"
            }
            None => "",
        };
        let config_path = dir.path().join("easgate.toml");
        fs::write(&config_path, config.replace("__CLIENT_CA__", ca_line)).unwrap();
        fs::set_permissions(&config_path, fs::Permissions::from_mode(0o640)).unwrap();

        let runtime = validate::load_file(&config_path, DevCertMode::Persist).unwrap();
        let (cert_path, _) = gateway::dev_certificate::paths(&runtime.data_dir);
        let server_ca = validate::read_certs(&cert_path).unwrap().remove(0);
        let cp = ControlPlane::new(Gateway::new(runtime), &config_path);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(gateway::management::serve_management(
            cp.clone(),
            listener,
            rx,
        ));
        Self {
            addr,
            server_ca,
            cp,
            config_path,
            _dir: dir,
            _shutdown: tx,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, String) {
        self.call_as(None, method, path, auth, content_type, body)
            .await
            .expect("request failed")
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> (StatusCode, HeaderMap, String) {
        self.call(Method::GET, path, auth, None, Bytes::new()).await
    }

    /// One request on a fresh TLS connection, optionally presenting a client certificate.
    async fn call_as(
        &self,
        identity: Option<ClientIdentity>,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, String), Box<dyn std::error::Error + Send + Sync>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.server_ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(token) = auth {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = sender
            .send_request(req.body(Full::new(body.into()))?)
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn pem_of(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn nothing_is_open_without_the_token() {
    let m = Mgmt::start(None).await;
    for path in ["/v1/status", "/v1/config", "/metrics", "/nope"] {
        let (status, headers, _) = m.get(path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"easgate\"");
        let (status, _, _) = m.get(path, Some("wrong-token")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        let (status, _, _) = m.get(path, Some(&TOKEN[..TOKEN.len() - 1])).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a token prefix"
        );
    }
    let (status, _, _) = m
        .call(
            Method::PUT,
            "/v1/config",
            None,
            Some("application/toml"),
            CONFIG,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn status_with_the_token() {
    let m = Mgmt::start(None).await;
    let (status, headers, body) = m.get("/v1/status", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["sentry_host"], "gw.example.com");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_s"].is_u64());
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(services[0]["name"], "default");
    assert_eq!(services[1]["servers"].as_array().unwrap().len(), 2);
    assert_eq!(services[0]["servers"][0]["server"], "127.0.0.1:20080");
    assert!(services[0]["servers"][0]["state"].is_string());
    assert!(v["counters"].is_object());

    let (status, _, _) = m.get("/v1/nothing", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = m
        .call(
            Method::DELETE,
            "/v1/config",
            Some(TOKEN),
            None,
            Bytes::new(),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, PUT");
}

#[tokio::test]
async fn get_config_returns_the_config_in_force() {
    let m = Mgmt::start(None).await;
    let (status, _, body) = m.get("/v1/config", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let served: gateway::config::Config = serde_json::from_str(&body).unwrap();
    assert_eq!(served, m.cp.gateway().current().source);
    assert!(!body.contains(TOKEN), "the token itself is never served");
}

#[tokio::test]
async fn bad_config_is_rejected_with_field_errors_and_changes_nothing() {
    let m = Mgmt::start(None).await;
    let before_file = fs::read(&m.config_path).unwrap();
    let before = m.cp.gateway().current();

    let (_, _, body) = m.get("/v1/config", Some(TOKEN)).await;
    let mut config = json(&body);
    config["activesync"]["health_check_interval_s"] = 5.into();
    config["activesync"]["service"][0]["name"] = "primary".into();
    config["global_server"]["scheduling"] = "fastest".into();
    let (status, _, body) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/json"),
            config.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let errors = json(&body)["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 3, "{body}");
    let e = errors
        .iter()
        .find(|e| e["field"] == "activesync.health_check_interval_s")
        .expect("interval error");
    assert_eq!(e["value"], "5");
    assert!(e["message"].as_str().unwrap().contains("10..=600"));
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == "activesync.service[0].name")
    );

    // Syntax errors are field errors too.
    let (status, _, body) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/toml"),
            "[sentry\nhost=",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        json(&body)["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("config line")
    );

    // Wrong media type, oversized body.
    let (status, _, _) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("text/html"),
            CONFIG,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = vec![b'#'; gateway::management::MAX_BODY_BYTES + 1];
    let (status, _, _) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/toml"),
            huge,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(
        fs::read(&m.config_path).unwrap(),
        before_file,
        "file untouched"
    );
    assert!(
        Arc::ptr_eq(&before, &m.cp.gateway().current()),
        "runtime untouched"
    );
    let dir_entries: Vec<_> = fs::read_dir(m.config_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !dir_entries
            .iter()
            .any(|n| n.to_string_lossy().contains(".tmp.")),
        "no temp file left: {dir_entries:?}"
    );
}

#[tokio::test]
async fn put_json_applies_live_and_persists_atomically() {
    let m = Mgmt::start(None).await;
    let old = m.cp.gateway().current();
    let (_, _, body) = m.get("/v1/config", Some(TOKEN)).await;
    let mut config = json(&body);
    config["activesync"]["service"][0]["servers"] = "127.0.0.1:20081;127.0.0.1:20082".into();
    config["global_server"]["scheduling"] = "round-robin".into();

    let (status, _, body) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/json; charset=utf-8"),
            config.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["applied"], true);
    assert_eq!(v["restart_required"].as_array().unwrap().len(), 0);

    // Live: the next request (a new connection) sees it.
    let now = m.cp.gateway().current();
    assert_eq!(now.activesync.services[0].servers.len(), 2);
    assert_eq!(
        now.servers.scheduling,
        gateway::model::Scheduling::RoundRobin
    );
    let (_, _, body) = m.get("/v1/config", Some(TOKEN)).await;
    assert_eq!(
        json(&body)["activesync"]["service"][0]["servers"],
        "127.0.0.1:20081;127.0.0.1:20082"
    );
    // In-flight work keeps what it loaded.
    assert_eq!(old.activesync.services[0].servers.len(), 1);

    // Persisted: the file holds the new config, with its mode kept, and validates on its own.
    assert_eq!(
        fs::metadata(&m.config_path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let reloaded = validate::load_file(&m.config_path, DevCertMode::InMemory).unwrap();
    assert_eq!(reloaded.source, now.source);
}

#[tokio::test]
async fn put_toml_is_saved_verbatim_and_listen_changes_need_a_restart() {
    let m = Mgmt::start(None).await;
    let text = fs::read_to_string(&m.config_path)
        .unwrap()
        .replace("127.0.0.1:18443", "127.0.0.1:28443")
        .replace("10.1.1.1:8080;10.1.1.2:8080", "10.1.1.3:8080");
    let (status, _, body) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/toml"),
            text.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json(&body)["restart_required"],
        serde_json::json!(["listen.devices"])
    );
    assert_eq!(
        fs::read_to_string(&m.config_path).unwrap(),
        text,
        "comments survive a TOML save"
    );
    assert_eq!(
        m.cp.gateway().current().activesync.services[1].servers[0].to_string(),
        "10.1.1.3:8080"
    );
}

#[tokio::test]
async fn a_new_token_applies_to_the_next_request() {
    let m = Mgmt::start(None).await;
    let dir = m.config_path.parent().unwrap();
    let new_token = dir.join("rotated.token");
    fs::write(&new_token, "rotated-token-value-123456").unwrap();
    fs::set_permissions(&new_token, fs::Permissions::from_mode(0o600)).unwrap();
    let text = fs::read_to_string(&m.config_path)
        .unwrap()
        .replace("management.token", "rotated.token");
    let (status, _, _) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/toml"),
            text,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        m.get("/v1/status", Some(TOKEN)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        m.get("/v1/status", Some("rotated-token-value-123456"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let m = Mgmt::start(None).await;
    let (status, headers, body) = m.get("/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(body.contains("# TYPE "), "{body}");
    let mut samples = 0;
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "NaN" || value.ends_with("Inf"),
            "value: {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(!name.is_empty(), "{line}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "name: {line}"
        );
        assert!(!name.starts_with(|c: char| c.is_ascii_digit()), "{line}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "labels: {line}");
        }
        samples += 1;
    }
    assert!(samples > 0);
}

/// A CA and a client certificate it issued.
fn client_pki() -> (CertificateDer<'static>, ClientIdentity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "easgate admins CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["portal.example.com".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portal");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (ca.der().clone(), (vec![cert.der().clone()], key_der))
}

#[tokio::test]
async fn client_certificate_is_a_credential() {
    let (ca, identity) = client_pki();
    let m = Mgmt::start(Some(&ca)).await;

    // A certificate from the configured CA: no token needed.
    let (status, _, body) = m
        .call_as(
            Some((identity.0.clone(), identity.1.clone_key())),
            Method::GET,
            "/v1/status",
            None,
            None,
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");

    // No certificate and no token: refused. The token alone still works.
    assert_eq!(m.get("/v1/status", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(m.get("/v1/status", Some(TOKEN)).await.0, StatusCode::OK);

    // A certificate from another CA never gets a response.
    let (_, stranger) = client_pki();
    let result = m
        .call_as(
            Some(stranger),
            Method::GET,
            "/v1/status",
            None,
            None,
            Bytes::new(),
        )
        .await;
    assert!(
        result.is_err(),
        "a foreign client certificate must fail the handshake: {result:?}"
    );
}

#[tokio::test]
async fn client_certificates_are_not_accepted_without_client_ca() {
    // With only a token configured, presenting some certificate must not be enough.
    let m = Mgmt::start(None).await;
    let (_, identity) = client_pki();
    let result = m
        .call_as(
            Some(identity),
            Method::GET,
            "/v1/status",
            None,
            None,
            Bytes::new(),
        )
        .await;
    // A handshake error is also fine: no client auth was offered, so the server may reject it.
    if let Ok((status, _, _)) = result {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

/// A server answering every request with its `name`; paths with `slow` wait 800 ms first.
async fn named_backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        if req.uri().query().unwrap_or("").contains("slow") {
                            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(name),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// One ActiveSync POST to the (plain HTTP) device listener; returns (status, body).
async fn device_post(addr: SocketAddr, query: &str) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd=FolderSync&User=u1&DeviceId=D1&DeviceType=t&{query}"
    ))
    .header("host", "gw.example.com")
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .body(Full::new(Bytes::from_static(b"\x03\x01\x6a\x00")))
    .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn put_reroutes_new_device_requests_and_keeps_in_flight_ones() {
    let (a, b) = (named_backend("A").await, named_backend("B").await);
    let config = CONFIG
        .replace(
            "server_tls = false",
            "server_tls = false\nclient_tls = false",
        )
        .replace(
            "servers = \"127.0.0.1:20080\"",
            &format!("servers = \"{a}\""),
        );
    let m = Mgmt::start_with(&config, None).await;
    let devices = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let device_addr = devices.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(gateway::serve_devices(
        m.cp.gateway().clone(),
        devices,
        stop_rx,
    ));

    assert_eq!(
        device_post(device_addr, "").await,
        (StatusCode::OK, "A".to_string())
    );
    // A request parked at A while the config changes.
    let in_flight = tokio::spawn(device_post(device_addr, "slow=1"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let text = fs::read_to_string(&m.config_path)
        .unwrap()
        .replace(&a.to_string(), &b.to_string());
    let (status, _, body) = m
        .call(
            Method::PUT,
            "/v1/config",
            Some(TOKEN),
            Some("application/toml"),
            text,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(
        device_post(device_addr, "").await,
        (StatusCode::OK, "B".to_string()),
        "a new request sees the new config"
    );
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "A".to_string()),
        "the in-flight request was not dropped"
    );
}
