//! Test support for the data-plane end-to-end tests: a `Runtime` builder (no config file needed),
//! generated certificates, scripted backends (hyper servers and raw TCP ones that refuse, hang,
//! reset, answer slowly or bind NTLM to a connection), a device client (HTTP/1.1 or HTTP/2, plain
//! or TLS) and a running gateway. Everything listens on 127.0.0.1 only.
#![allow(dead_code)]

pub mod sogo;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway::model::{
    ActiveSyncModel, ListenAddrs, ManagementAuth, RequestLimits, Runtime, Scheduling, ServerAddr,
    ServerAuth, ServerPolicy, ServiceModel, Timeouts,
};
use gateway::state::Gateway;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Body type used by test clients and backends.
pub type TBody = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> TBody {
    Full::new(b.into()).boxed()
}

pub fn empty() -> TBody {
    full(Bytes::new())
}

/// A body fed from a channel, to prove streaming and to stall on purpose.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub fn channel_body() -> (mpsc::Sender<Bytes>, TBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody(rx).boxed())
}

// --- certificates -------------------------------------------------------------------------

/// A self-signed certificate for `names` (IP literals become IP SANs).
pub fn cert(names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    (ck.cert.der().clone(), key)
}

pub fn server_config(
    names: &[&str],
    alpn: &[&[u8]],
) -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let (c, k) = cert(names);
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![c.clone()], k)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(cfg), c)
}

pub fn client_config(trust: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Device-side TLS: the gateway's config (h2 + http/1.1) and a device config trusting it.
pub struct DeviceTls {
    pub server: Arc<rustls::ServerConfig>,
    pub cert: CertificateDer<'static>,
}

pub fn device_tls() -> DeviceTls {
    let (server, cert) = server_config(&["localhost", "127.0.0.1"], &[b"h2", b"http/1.1"]);
    DeviceTls { server, cert }
}

// --- runtime ------------------------------------------------------------------------------

pub fn addr_of(a: SocketAddr) -> ServerAddr {
    ServerAddr {
        host: a.ip().to_string(),
        port: a.port(),
    }
}

pub fn service(name: &str, servers: &[ServerAddr]) -> Arc<ServiceModel> {
    Arc::new(ServiceModel {
        name: name.to_ascii_lowercase(),
        servers: servers.to_vec(),
    })
}

/// A runtime with the documented defaults, plain HTTP to servers and devices, health check off,
/// and one `default` service with `servers`.
pub fn runtime(servers: &[ServerAddr]) -> Runtime {
    let source: gateway::config::Config =
        toml::from_str("[sentry]\nhost = \"gw.test\"\n[activesync]\n").expect("minimal config");
    let (mgmt_tls, _) = server_config(&["localhost"], &[]);
    Runtime {
        source,
        sentry_host: "gw.test".into(),
        listen: ListenAddrs {
            devices: "127.0.0.1:0".parse().unwrap(),
            management: "127.0.0.1:0".parse().unwrap(),
        },
        management: ManagementAuth {
            token: Some("t".into()),
            client_ca: vec![],
            tls: mgmt_tls,
        },
        device_tls: None,
        trusted_proxies: vec![],
        activesync: ActiveSyncModel {
            enabled: true,
            server_auth: ServerAuth::PassThrough,
            server_tls: None,
            redirect_processing: true,
            limit_protocol_version: None,
            health_check: None,
            services: vec![service("default", servers)],
        },
        servers: ServerPolicy {
            scheduling: Scheduling::Priority,
            dead_threshold: 3,
            failure_window: Duration::from_secs(60),
            dead_time: Duration::from_secs(300),
        },
        timeouts: Timeouts {
            socket_read_write: Duration::from_secs(10),
            server_connect: Duration::from_secs(10),
            server_response: Duration::from_secs(60),
            device_request: Duration::from_secs(10),
            device_body: Duration::from_secs(600),
            long_poll_margin: Duration::from_secs(120),
            drain: Duration::from_secs(30),
            server_pool_idle: Duration::from_secs(90),
        },
        limits: RequestLimits {
            max_header_bytes: 65536,
            max_body_bytes: 64 * 1024 * 1024,
        },
        data_dir: std::env::temp_dir(),
        attachments: None,
    }
}

// --- gateway ------------------------------------------------------------------------------

pub struct RunningGateway {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(rt: Runtime) -> RunningGateway {
    let gw = Gateway::new(rt);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(gateway::serve_devices(gw.clone(), listener, rx));
    RunningGateway {
        gw,
        addr,
        stop,
        task,
    }
}

/// As [`start`], with each device connection served by one of `n` device workers (one runtime
/// per core, as `easgate gateway` runs). Stop the workers with [`stop_workers`] at the end.
pub async fn start_with_workers(
    rt: Runtime,
    n: usize,
) -> (RunningGateway, Arc<gateway::workers::DeviceWorkers>) {
    let gw = Gateway::new(rt);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let workers = Arc::new(gateway::workers::DeviceWorkers::start(n).unwrap());
    let task = tokio::spawn(gateway::serve_devices_on(
        gw.clone(),
        listener,
        rx,
        Some(workers.clone()),
    ));
    (
        RunningGateway {
            gw,
            addr,
            stop,
            task,
        },
        workers,
    )
}

/// Ends the device workers of [`start_with_workers`] once nothing else holds them.
pub async fn stop_workers(workers: Arc<gateway::workers::DeviceWorkers>) {
    let w = Arc::try_unwrap(workers).ok().expect("workers still shared");
    tokio::task::spawn_blocking(move || w.stop()).await.unwrap();
}

// --- backends -----------------------------------------------------------------------------

/// A request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Index of the TCP connection it came on (0-based, per backend).
    pub conn: usize,
}

pub type Reply = Pin<Box<dyn Future<Output = Response<TBody>> + Send>>;
pub type Handler = Arc<dyn Fn(Seen) -> Reply + Send + Sync>;

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TBody>> + Send + 'static,
{
    Arc::new(move |s| Box::pin(f(s)))
}

pub fn reply(status: u16, body: impl Into<Bytes>) -> Response<TBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A scripted HTTP/1.1 backend (optionally TLS). Records every request it gets.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
    pub conns: Arc<AtomicUsize>,
    pub sni: Arc<parking_lot::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().len()
    }
    pub fn server(&self) -> ServerAddr {
        addr_of(self.addr)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn backend(h: Handler) -> Backend {
    backend_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), h, None).await
}

pub async fn backend_tls(h: Handler, tls: Arc<rustls::ServerConfig>) -> Backend {
    backend_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        h,
        Some(tls),
    )
    .await
}

pub async fn backend_on(
    listener: TcpListener,
    h: Handler,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Backend {
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let sni = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (seen2, conns2, sni2) = (seen.clone(), conns.clone(), sni.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let conn = conns2.fetch_add(1, Ordering::SeqCst);
            let (h, seen, tls, sni) = (h.clone(), seen2.clone(), tls.clone(), sni2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (h, seen) = (h.clone(), seen.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let s = Seen {
                            method: parts.method,
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                            conn,
                        };
                        seen.lock().push(s.clone());
                        Ok::<_, Infallible>(h(s).await)
                    }
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.preserve_header_case(true);
                match tls {
                    Some(cfg) => {
                        let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                            return;
                        };
                        sni.lock()
                            .push(s.get_ref().1.server_name().map(str::to_string));
                        let _ = b.serve_connection(TokioIo::new(s), svc).await;
                    }
                    None => {
                        let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    Backend {
        addr,
        seen,
        conns,
        sni,
        task,
    }
}

/// A raw TCP backend: `f` gets each accepted stream.
pub async fn raw_backend<F, Fut>(
    f: F,
) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    let f = Arc::new(f);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c2.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(f(tcp));
        }
    });
    (addr, conns, task)
}

/// Reads one request head (up to the blank line) from a raw stream.
pub async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    for _ in 0..1000 {
        let Ok(n) = s.read(&mut b).await else { break };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    buf
}

/// An address where nothing listens (connection refused).
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// --- device client ------------------------------------------------------------------------

pub enum Device {
    H1(hyper::client::conn::http1::SendRequest<TBody>),
    H2(hyper::client::conn::http2::SendRequest<TBody>),
}

/// Connects a device: TLS when `tls` is given (trusting `tls`, SNI `localhost`), HTTP/2 when
/// `h2` (ALPN h2 with TLS, prior knowledge without).
pub async fn device(addr: SocketAddr, tls: Option<&CertificateDer<'static>>, h2: bool) -> Device {
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tls {
        Some(cert) => {
            let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
            let cfg = client_config(cert, alpn);
            let name = ServerName::try_from("localhost").unwrap();
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .unwrap();
            if h2 {
                assert_eq!(
                    s.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "gateway must offer h2 by ALPN"
                );
            }
            handshake(TokioIo::new(s), h2).await
        }
        None => handshake(TokioIo::new(tcp), h2).await,
    }
}

async fn handshake<I>(io: I, h2: bool) -> Device
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(c);
        Device::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(io)
            .await
            .unwrap();
        tokio::spawn(c);
        Device::H1(s)
    }
}

impl Device {
    /// Sends and returns the response with the body not yet read.
    pub async fn send_raw(&mut self, req: Request<TBody>) -> hyper::Result<Response<Incoming>> {
        match self {
            Device::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Device::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// Sends and reads the whole response.
    pub async fn send(&mut self, req: Request<TBody>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.send_raw(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (parts.status, parts.headers, body)
    }
}

/// An ActiveSync POST on `/Microsoft-Server-ActiveSync?Cmd=<cmd>&User=<user>&DeviceId=<dev>&DeviceType=iPhone`.
pub fn eas(host: &str, cmd: &str, user: &str, dev: &str, body: TBody) -> Request<TBody> {
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd={cmd}&User={user}&DeviceId={dev}&DeviceType=iPhone"
    ))
    .header("host", host)
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", "14.1")
    .body(body)
    .unwrap()
}

/// Same as [`eas`] for HTTP/2 (absolute URI so hyper sends `:authority`).
pub fn eas_h2(host: &str, cmd: &str, body: TBody) -> Request<TBody> {
    Request::post(format!(
        "https://{host}/Microsoft-Server-ActiveSync?Cmd={cmd}&User=u&DeviceId=D2&DeviceType=iPhone"
    ))
    .header("ms-asprotocolversion", "14.1")
    .body(body)
    .unwrap()
}

/// WBXML `<Ping><HeartbeatInterval>secs</HeartbeatInterval></Ping>`.
pub fn ping_body(secs: u32) -> Bytes {
    let mut b = vec![3, 1, 0x6A, 0, 0, 13, 0x45, 0x48, 3];
    b.extend_from_slice(secs.to_string().as_bytes());
    b.extend_from_slice(&[0, 1, 1]);
    Bytes::from(b)
}

/// WBXML `<Sync><Collections/><Wait>minutes</Wait></Sync>`.
pub fn sync_wait_body(minutes: u32) -> Bytes {
    let mut b = vec![3, 1, 0x6A, 0, 0x45, 0x1C, 0x64, 3];
    b.extend_from_slice(minutes.to_string().as_bytes());
    b.extend_from_slice(&[0, 1, 1]);
    Bytes::from(b)
}

/// Waits (bounded, real time) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

// --- ActiveSync awareness (issue 4) ---------------------------------------------------------

/// Starts the device listener for an already built gateway (e.g. one with a persisted access
/// state).
pub async fn start_gw(gw: Arc<Gateway>) -> RunningGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(gateway::serve_devices(gw.clone(), listener, rx));
    RunningGateway {
        gw,
        addr,
        stop,
        task,
    }
}

/// Sets `[device_access]` from a TOML snippet (the section's body).
pub fn device_access(rt: &mut Runtime, section: &str) {
    rt.source.device_access = toml::from_str(section).expect("[device_access] snippet");
}

pub const MGMT_TOKEN: &str = "mgmt-token-3b9e1c7d5a";

/// The management API on a loopback port, TLS with its own certificate, bearer token
/// [`MGMT_TOKEN`].
pub struct Mgmt {
    pub addr: SocketAddr,
    pub cert: CertificateDer<'static>,
    _stop: watch::Sender<bool>,
}

/// Gives `rt` a management certificate and token; returns the certificate to trust.
pub fn management_tls(rt: &mut Runtime) -> CertificateDer<'static> {
    let (tls, cert) = server_config(&["localhost"], &[]);
    rt.management.tls = tls;
    rt.management.token = Some(MGMT_TOKEN.into());
    cert
}

pub async fn start_management(gw: Arc<Gateway>, cert: CertificateDer<'static>) -> Mgmt {
    let cp = gateway::reload::ControlPlane::new(
        gw,
        std::env::temp_dir().join("easgate-test-unused.toml"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(gateway::management::serve_management(cp, listener, rx));
    Mgmt {
        addr,
        cert,
        _stop: tx,
    }
}

impl Mgmt {
    /// One request over a fresh TLS connection with the bearer token (`token = None`: without).
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> (StatusCode, serde_json::Value) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let cfg = client_config(&self.cert, &[]);
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(c);
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let resp = s.send_request(b.body(full(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let ct = (!body.is_empty()).then_some("application/json");
        self.call_with(method, path, Some(MGMT_TOKEN), ct, body.to_owned())
            .await
    }

    /// `PATCH /v1/devices` with one entry; asserts 200.
    pub async fn set_state(&self, user: &str, device: &str, state: &str) {
        let body = serde_json::json!({"devices": [{"user": user, "device_id": device, "state": state, "reasons": ["manual"]}]});
        let (st, v) = self.call("PATCH", "/v1/devices", &body.to_string()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
}

/// Requests a backend saw from `device` (DeviceId in a plain query, case-insensitive).
pub fn seen_from(b: &Backend, device: &str) -> usize {
    let needle = format!("deviceid={}", device.to_ascii_lowercase());
    b.seen()
        .iter()
        .filter(|s| s.uri.to_ascii_lowercase().contains(&needle))
        .count()
}

/// An ActiveSync POST with an explicit protocol version header.
pub fn eas_v(cmd: &str, user: &str, dev: &str, version: &str, body: TBody) -> Request<TBody> {
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd={cmd}&User={user}&DeviceId={dev}&DeviceType=iPhone"
    ))
    .header("host", "gw.test")
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", version)
    .body(body)
    .unwrap()
}
