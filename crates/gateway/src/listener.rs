//! The device listener: accept, TLS (from the runtime current at accept time, so a reload applies
//! to new connections), HTTP/1.1 or HTTP/2 (ALPN / preface), and graceful shutdown that lets
//! in-flight requests (parked Pings included) finish within the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::h1::server::{DeviceBody, Settings};
use crate::h1::socket::Socket;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::{self, DeviceConn};
use crate::state::Gateway;
use crate::workers::DeviceWorkers;

use crate::h1;

/// Serves devices on `listener` until `shutdown` becomes true (or its sender is dropped), then
/// stops accepting, lets open connections finish their in-flight requests for up to
/// `timeouts.drain`, closes what is left and returns.
pub async fn serve_devices(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    serve_devices_on(gw, listener, shutdown, None).await;
}

/// As [`serve_devices`], each connection served by one of `workers` (one runtime per core, see
/// [`crate::workers`]) instead of on the runtime that accepts; draining works the same.
pub async fn serve_devices_on(
    gw: Arc<Gateway>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    workers: Option<Arc<DeviceWorkers>>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns: JoinSet<()> = JoinSet::new();
    if !*shutdown.borrow_and_update() {
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        gw.metrics.connection_accepted();
                        spawn_connection(
                            &mut conns,
                            workers.as_deref(),
                            gw.clone(),
                            (tcp, peer),
                            stop_rx.clone(),
                        );
                    }
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = gw.current().timeouts.drain;
    tracing::info!(
        connections = conns.len(),
        ?drain,
        "device listener draining"
    );
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "drain timeout: closing remaining device connections"
        );
        conns.shutdown().await;
    }
}

/// Serves an accepted connection on this runtime, or hands it to the next device worker: taken
/// off this runtime's I/O driver here, registered with the worker's on the worker's thread.
fn spawn_connection(
    conns: &mut JoinSet<()>,
    workers: Option<&DeviceWorkers>,
    gw: Arc<Gateway>,
    (tcp, peer): (TcpStream, SocketAddr),
    stop: watch::Receiver<bool>,
) {
    let Some(w) = workers else {
        conns.spawn(serve_connection(gw, tcp, peer, stop));
        return;
    };
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "device connection not handed to a worker");
            return;
        }
    };
    let serve = async move {
        match TcpStream::from_std(tcp) {
            Ok(tcp) => serve_connection(gw, tcp, peer, stop).await,
            Err(e) => tracing::warn!(%peer, error = %e, "device connection not handed to a worker"),
        }
    };
    conns.spawn_on(serve, w.pick());
}

/// One device connection: TLS when configured, then HTTP until it closes or shutdown drains it.
/// HTTP/1.1 runs on the gateway's own connection driver ([`crate::h1::server`]); the TLS
/// handshake and HTTP/2 (hyper) are boxed so a parked HTTP/1.1 request does not carry their
/// state.
async fn serve_connection(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let rt = gw.current();
    let _ = tcp.set_nodelay(true);
    let settings = Settings {
        device_request: rt.timeouts.device_request,
        device_body: rt.timeouts.device_body,
        silence: rt.timeouts.socket_read_write,
        max_head: rt.limits.max_header_bytes,
        max_body: rt.limits.max_body_bytes,
    };
    let tls = rt.device_tls.clone();
    drop(rt);
    let first_bytes = settings.device_request;
    let conn = Arc::new(DeviceConn::new(peer, tls.is_some()));
    // The TLS handshake and HTTP/2 are boxed: an HTTP/1.1 connection (the common case, parked
    // Pings included) carries neither.
    let io = match tls {
        Some(cfg) => match Box::pin(accept_tls(cfg, tcp, peer, first_bytes)).await {
            None => return,
            Some(Accepted::H1(io)) => io,
            Some(Accepted::H2(stream)) => {
                Box::pin(serve_h2(gw, conn, TokioIo::new(*stream), stop, settings)).await;
                return;
            }
        },
        None => match sniff_h2(&tcp, first_bytes).await {
            None => {
                tracing::debug!(%peer, "device sent no request in time");
                return;
            }
            Some(true) => {
                Box::pin(serve_h2(gw, conn, TokioIo::new(tcp), stop, settings)).await;
                return;
            }
            Some(false) => Socket::Plain(tcp),
        },
    };
    h1::server::serve(gw, conn, io, stop, settings).await;
}

enum Accepted {
    H1(h1::socket::DeviceSocket),
    H2(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The device TLS handshake within `within`; ALPN decides HTTP/2 or HTTP/1.1 (no preface
/// sniffing, which would wait without a timeout).
async fn accept_tls(
    cfg: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    within: Duration,
) -> Option<Accepted> {
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
    let stream = match tokio::time::timeout(within, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "device TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "device TLS handshake timed out");
            return None;
        }
    };
    let stream = Box::new(stream);
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Some(Accepted::H2(stream))
    } else {
        Some(Accepted::H1(Socket::Tls(stream)))
    }
}

async fn serve_h2<I>(
    gw: Arc<Gateway>,
    conn: Arc<DeviceConn>,
    io: I,
    stop: watch::Receiver<bool>,
    http: Settings,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let watch = conn.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let body = |b| DeviceBody::h2(b, http.device_body, gw.clone(), conn.peer);
        Box::pin(proxy::handle(
            gw.clone(),
            conn.clone(),
            Box::new(req.map(body)),
        ))
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(http.max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(100)
        .serve_connection(io, service);
    let idle = Some((watch, http.device_request));
    drive(conn, stop, idle, http2::Connection::graceful_shutdown).await;
}

/// Plain connections: HTTP/2 prior knowledge or HTTP/1.1, from the first bytes, within the device
/// request timeout (hyper-util's own sniffing has no timeout, so a silent socket would stay open).
async fn sniff_h2(tcp: &TcpStream, within: Duration) -> Option<bool> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let sniff = async {
        let mut buf = [0u8; 24];
        loop {
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n == PREFACE.len() {
                return Some(true);
            }
            // A partial preface: peek would return at once, so wait for more.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(within, sniff).await.ok().flatten()
}

/// Runs a connection; on shutdown (or, for HTTP/2, after `idle.1` without requests) asks it to
/// finish the requests in flight (`graceful`) and close.
async fn drive<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    idle: Option<(Arc<DeviceConn>, Duration)>,
    graceful: fn(Pin<&mut C>),
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let idle = async {
        match &idle {
            Some((c, d)) => c.idle_for(*d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "device connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => graceful(conn.as_mut()),
        _ = idle => graceful(conn.as_mut()),
    }
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    /// The request body sent to a server travels inside request futures: keep it one pointer.
    #[test]
    fn request_body_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<crate::forward::UpBody>(),
            std::mem::size_of::<usize>()
        );
    }

    fn future_size<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size4<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What a parked Ping holds for up to an hour: its connection's future (a task) and its
    /// boxed request future. Both are copied whole into their allocations, so their sizes are
    /// resident memory per parked request (the benchmark measures the total: docs/benchmarks.md).
    /// Every stage that is over before the server answers is boxed separately; a stage added
    /// inline to the request path shows up here.
    #[test]
    fn connection_future_sizes() {
        let handle = future_size(crate::proxy::handle);
        let conn = future_size4(super::serve_connection);
        eprintln!("proxy::handle future {handle} B, serve_connection future {conn} B");
        // 2026-11-26: 2,376 B and 1,456 B in this (test) build; 2,352 B and 1,416 B in release.
        assert!(handle <= 3072, "proxy::handle future is {handle} B");
        assert!(conn <= 2048, "serve_connection future is {conn} B");
    }
}
