//! Holds N keep-alive connections open against a proxy (loopback only), each either with an EAS
//! Ping long-poll in flight (`--mode ping`) or idle after one Sync request (`--mode idle`), so the
//! benchmark can read the proxy's memory per parked Ping / per idle connection.
//!
//! Output (stdout), one line each, for the script to parse:
//!   `READY mode=ping target=... count=N parked=N idle=0 answered=0 closed=0 failed=0 ...`
//!   `DONE  ... still_parked=N ...`
//! Progress goes to stderr. Everything is bounded: ramp rate, handshakes in flight, connect and
//! ready timeouts, and the hold time.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, timeout};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    /// Send an EAS Ping (HeartbeatInterval 900) and hold the connection waiting for the answer.
    Ping,
    /// Send one Sync POST, read the answer, then keep the connection open and idle.
    Idle,
}

#[derive(Parser)]
#[command(about = "Park N EAS Pings (or idle keep-alive connections) on a proxy (loopback only)")]
struct Args {
    /// Proxy address (loopback only).
    #[arg(long, value_parser = benchkit::parse_loopback)]
    target: SocketAddr,
    /// Speak TLS to the proxy (certificate not verified: a benchmark on loopback).
    #[arg(long)]
    tls: bool,
    /// SNI and Host header.
    #[arg(long, default_value = "localhost")]
    host: String,
    #[arg(long, value_enum, default_value_t = Mode::Ping)]
    mode: Mode,
    /// Connections to hold. Mind the open-file limit: this process needs N descriptors.
    #[arg(long, default_value_t = 5000)]
    count: u32,
    /// New connections per second (gentle ramp).
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Most connections in their setup phase (TCP + TLS + request) at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Give up on one connection's setup after this long.
    #[arg(long, default_value_t = 10)]
    connect_timeout_s: u64,
    /// Report READY after this long even if not every connection settled.
    #[arg(long, default_value_t = 120)]
    ready_timeout_s: u64,
    /// Hold the connections this long after READY (SIGTERM / Ctrl-C ends it earlier).
    #[arg(long, default_value_t = 60)]
    hold_s: u64,
    /// The backend's address: after READY, read its `/_bench/stats` to confirm Pings are parked
    /// there.
    #[arg(long, value_parser = benchkit::parse_loopback)]
    backend: Option<SocketAddr>,
    /// Ping body (WBXML). Default: the shared sample ping-request.wbxml with heartbeat 900.
    #[arg(long)]
    ping_body: Option<PathBuf>,
}

#[derive(Default)]
struct Counters {
    /// Setup finished (steady state reached, or failed).
    settled: AtomicU64,
    /// Ping sent, no response yet, connection open.
    parked: AtomicU64,
    /// Idle mode: response read, connection open.
    idle: AtomicU64,
    /// A response arrived while parked (the proxy or backend answered early).
    answered: AtomicU64,
    /// The proxy closed a held connection.
    closed: AtomicU64,
    /// Connect, TLS, write or read failures during setup.
    failed: AtomicU64,
}

impl Counters {
    fn line(&self) -> String {
        format!(
            "parked={} idle={} answered={} closed={} failed={} settled={}",
            self.parked.load(Relaxed),
            self.idle.load(Relaxed),
            self.answered.load(Relaxed),
            self.closed.load(Relaxed),
            self.failed.load(Relaxed),
            self.settled.load(Relaxed),
        )
    }
}

/// Accepts any server certificate (loopback benchmark against a self-signed cert) but still
/// checks the handshake signatures, so the TLS work is the real work.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn tls_connector() -> std::io::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(algs)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

fn request(args: &Args, i: u32, ping_body: &[u8], sync_body: &[u8]) -> Vec<u8> {
    let (cmd, body) = match args.mode {
        Mode::Ping => ("Ping", ping_body),
        Mode::Idle => ("Sync", sync_body),
    };
    let mut r = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd={cmd}&User=u&DeviceId=dev{i:04}&DeviceType=iPhone \
         HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Apple-iPhone9C1/1402.72\r\n\
         Authorization: Basic dTpw\r\nMS-ASProtocolVersion: 14.1\r\nX-MS-PolicyKey: 3915816436\r\n\
         Content-Type: application/vnd.ms-sync.wbxml\r\nAccept: */*\r\nAccept-Language: en-us\r\n\
         Content-Length: {len}\r\n\r\n",
        host = args.host,
        len = body.len(),
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Reads one HTTP/1.1 response (Content-Length or chunked). Returns the status code.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<u16> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 65536 {
            return Err(std::io::Error::other(
                "connection closed before response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let mut body = buf.split_off(head_end);
    loop {
        let done = match (content_length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => true,
        };
        if done {
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed inside response body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Setup (request sent, maybe response read), then hold until shutdown or the peer closes.
async fn hold<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    mode: Mode,
    req: Vec<u8>,
    c: &Counters,
    permit: tokio::sync::SemaphorePermit<'_>,
    deadline: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let setup = async {
        s.write_all(&req).await?;
        s.flush().await?;
        if mode == Mode::Idle {
            let status = read_response(&mut s).await?;
            if status != 200 {
                return Err(std::io::Error::other(format!("status {status}")));
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match timeout(deadline, setup).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            fail(c, &format!("request: {e}"));
            return;
        }
        Err(_) => {
            fail(c, "request: timed out");
            return;
        }
    }
    let gauge = match mode {
        Mode::Ping => &c.parked,
        Mode::Idle => &c.idle,
    };
    gauge.fetch_add(1, Relaxed);
    c.settled.fetch_add(1, Relaxed);
    drop(permit);
    let mut byte = [0u8; 1024];
    tokio::select! {
        r = s.read(&mut byte) => {
            gauge.fetch_sub(1, Relaxed);
            match r {
                Ok(0) | Err(_) => { c.closed.fetch_add(1, Relaxed); }
                Ok(n) => {
                    if c.answered.fetch_add(1, Relaxed) < 3 {
                        let first = String::from_utf8_lossy(&byte[..n.min(80)]).into_owned();
                        eprintln!("bench-parker: early answer: {:?}", first.lines().next());
                    }
                }
            }
        }
        _ = shutdown.wait_for(|&v| v) => {}
    }
}

fn fail(c: &Counters, why: &str) {
    if c.failed.fetch_add(1, Relaxed) < 5 {
        eprintln!("bench-parker: {why}");
    }
    c.settled.fetch_add(1, Relaxed);
}

async fn one(
    args: Arc<Args>,
    tls: Option<tokio_rustls::TlsConnector>,
    req: Vec<u8>,
    c: Arc<Counters>,
    gate: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(permit) = gate.acquire().await else {
        return;
    };
    let deadline = Duration::from_secs(args.connect_timeout_s);
    let tcp = match timeout(deadline, TcpStream::connect(args.target)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(&c, &format!("connect: {e}")),
        Err(_) => return fail(&c, "connect: timed out"),
    };
    let _ = tcp.set_nodelay(true);
    match tls {
        None => hold(tcp, args.mode, req, &c, permit, deadline, shutdown).await,
        Some(tls) => {
            let Ok(name) = ServerName::try_from(args.host.clone()) else {
                return fail(&c, "--host is not a valid TLS server name");
            };
            match timeout(deadline, tls.connect(name, tcp)).await {
                Ok(Ok(s)) => hold(s, args.mode, req, &c, permit, deadline, shutdown).await,
                Ok(Err(e)) => fail(&c, &format!("tls: {e}")),
                Err(_) => fail(&c, "tls: timed out"),
            }
        }
    }
}

async fn backend_parked(addr: SocketAddr) -> Option<u64> {
    let talk = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /_bench/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let v = out
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("parked="))?;
        v.parse().ok()
    };
    timeout(Duration::from_secs(5), talk).await.ok().flatten()
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let ping_body = match &args.ping_body {
        Some(p) => std::fs::read(p)?,
        None => benchkit::wbxml::PING_REQUEST_HB900.to_vec(),
    };
    let sync_body = benchkit::wbxml::sync_request(1024);
    // One thread: the parker should take as little CPU from the proxy as it can.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let args = Arc::new(args);
        let c = Arc::new(Counters::default());
        let gate = Arc::new(Semaphore::new(args.in_flight.max(1)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let tls = args.tls.then(tls_connector).transpose()?;
        let start = Instant::now();
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_report = Instant::now();
        let ready_deadline = start + Duration::from_secs(args.ready_timeout_s);
        for i in 0..args.count {
            if Instant::now() > ready_deadline {
                eprintln!("bench-parker: ready timeout during ramp at {i} connections");
                break;
            }
            tick.tick().await;
            let req = request(&args, i, &ping_body, &sync_body);
            tasks.spawn(one(
                args.clone(),
                tls.clone(),
                req,
                c.clone(),
                gate.clone(),
                stop_rx.clone(),
            ));
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                eprintln!(
                    "bench-parker: {:.0}s opened={} {}",
                    start.elapsed().as_secs_f64(),
                    i + 1,
                    c.line()
                );
            }
        }
        while c.settled.load(Relaxed) < u64::from(args.count) && Instant::now() < ready_deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the last requests reach the backend through the proxy.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut backend = String::new();
        if let (Some(addr), Mode::Ping) = (args.backend, args.mode) {
            let want = c.parked.load(Relaxed);
            let until = Instant::now() + Duration::from_secs(10);
            let mut seen = backend_parked(addr).await;
            while seen.is_none_or(|n| n < want) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(250)).await;
                seen = backend_parked(addr).await;
            }
            backend = format!(
                " backend_parked={}",
                seen.map_or_else(|| "?".to_string(), |n| n.to_string())
            );
        }
        let ready_s = start.elapsed().as_secs_f64();
        let mode = format!("{:?}", args.mode).to_lowercase();
        println!(
            "READY mode={mode} target={} count={} {}{backend} setup_s={ready_s:.1}",
            args.target,
            args.count,
            c.line()
        );
        let ok = match args.mode {
            Mode::Ping => c.parked.load(Relaxed) == u64::from(args.count),
            Mode::Idle => c.idle.load(Relaxed) == u64::from(args.count),
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.hold_s)) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm() => {}
        }
        println!(
            "DONE mode={mode} held_s={:.1} {}",
            start.elapsed().as_secs_f64() - ready_s,
            c.line()
        );
        let _ = stop_tx.send(true);
        let _ = timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::other("not every connection settled"))
        }
    })
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
