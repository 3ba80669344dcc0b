//! The shared backend for the proxy benchmark: an HTTP/1.1 "ActiveSync server" on loopback.
//!
//! - `POST /Microsoft-Server-ActiveSync?...` → 200 with a 4 KiB `application/vnd.ms-sync.wbxml`
//!   Sync response (the request body is read fully first, as a server would).
//! - Same path with `Cmd=Ping` in the query → parked: no response until `--park-timeout-s`, then a
//!   Ping "heartbeat expired" (Status 1). A parked request whose connection closes is dropped.
//! - `OPTIONS` on that path → 200 with the EAS version headers (for health checks).
//! - `GET /_bench/stats` → `parked=N pings=N requests=N connections=N` (plain text).
//! - anything else → 404.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

#[derive(Parser)]
#[command(about = "EAS-shaped HTTP/1.1 backend for the proxy benchmark (loopback only)")]
struct Args {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1:18080", value_parser = benchkit::parse_loopback)]
    listen: SocketAddr,
    /// How long a `Cmd=Ping` request is held before its "nothing changed" answer.
    #[arg(long, default_value_t = 300)]
    park_timeout_s: u64,
    /// Size of the Sync response body in bytes.
    #[arg(long, default_value_t = 4096)]
    response_bytes: usize,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Stop by itself after this many seconds (the benchmark script also kills it).
    #[arg(long, default_value_t = 3600)]
    lifetime_s: u64,
}

#[derive(Default)]
struct Stats {
    parked: AtomicU64,
    pings: AtomicU64,
    requests: AtomicU64,
    connections: AtomicU64,
}

/// Decrements the parked gauge however the parked request ends (answered or connection closed).
struct ParkGuard(Arc<Stats>);
impl Drop for ParkGuard {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Relaxed);
    }
}

struct ConnGuard(Arc<Stats>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

struct App {
    stats: Arc<Stats>,
    sync_response: Bytes,
    park: Duration,
}

fn is_eas_path(path: &str) -> bool {
    path.eq_ignore_ascii_case("/Microsoft-Server-ActiveSync")
}

fn is_ping(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv.eq_ignore_ascii_case("Cmd=Ping")))
}

fn wbxml(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.ms-sync.wbxml"),
    );
    h.insert("MS-Server-ActiveSync", HeaderValue::from_static("14.1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    r
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let stats = &app.stats;
    stats.requests.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/_bench/stats" {
        let s = format!(
            "parked={} pings={} requests={} connections={}\n",
            stats.parked.load(Relaxed),
            stats.pings.load(Relaxed),
            stats.requests.load(Relaxed),
            stats.connections.load(Relaxed),
        );
        return Ok(Response::new(Full::new(Bytes::from(s))));
    }
    if !is_eas_path(parts.uri.path()) {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    }
    if parts.method == Method::OPTIONS {
        let mut r = Response::new(Full::new(Bytes::new()));
        let h = r.headers_mut();
        h.insert(
            "MS-ASProtocolVersions",
            HeaderValue::from_static("2.5,12.0,12.1,14.0,14.1"),
        );
        h.insert(
            "MS-ASProtocolCommands",
            HeaderValue::from_static(
                "Sync,SendMail,SmartForward,SmartReply,GetAttachment,FolderSync,Ping,Provision",
            ),
        );
        return Ok(r);
    }
    // Read the whole request body, as an ActiveSync server does before answering.
    if body.collect().await.is_err() {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    }
    if is_ping(parts.uri.query()) {
        stats.pings.fetch_add(1, Relaxed);
        stats.parked.fetch_add(1, Relaxed);
        let _guard = ParkGuard(stats.clone());
        tokio::time::sleep(app.park).await;
        return Ok(wbxml(
            StatusCode::OK,
            Bytes::from_static(benchkit::wbxml::PING_RESPONSE_EXPIRED),
        ));
    }
    Ok(wbxml(StatusCode::OK, app.sync_response.clone()))
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Arc::new(App {
            stats: Arc::new(Stats::default()),
            sync_response: Bytes::from(benchkit::wbxml::sync_response(args.response_bytes)),
            park: Duration::from_secs(args.park_timeout_s),
        });
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        eprintln!(
            "bench-backend: listening on http://{} (park {} s, {} B responses)",
            args.listen, args.park_timeout_s, args.response_bytes
        );
        let mut http = hyper::server::conn::http1::Builder::new();
        // Small per-connection footprint: this process is not what the benchmark measures.
        http.max_buf_size(16 * 1024).writev(true);
        let serve = async {
            loop {
                let (tcp, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        eprintln!("bench-backend: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                app.stats.connections.fetch_add(1, Relaxed);
                let guard = ConnGuard(app.stats.clone());
                let app = app.clone();
                let conn = http.serve_connection(
                    TokioIo::new(tcp),
                    hyper::service::service_fn(move |req| handle(app.clone(), req)),
                );
                tokio::spawn(async move {
                    let _guard = guard;
                    let _ = conn.await;
                });
            }
        };
        tokio::select! {
            _ = serve => {},
            _ = tokio::time::sleep(Duration::from_secs(args.lifetime_s)) => {
                eprintln!("bench-backend: lifetime over, exiting");
            }
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}
