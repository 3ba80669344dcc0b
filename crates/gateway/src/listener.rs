//! The device listener: accept, TLS (from the runtime current at accept time, so a reload applies
//! to new connections), HTTP/1.1 or HTTP/2 (ALPN / preface), and graceful shutdown that lets
//! in-flight requests (parked Pings included) finish within the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::{self, DeviceConn};
use crate::state::Gateway;

/// hyper refuses smaller read buffers; request heads above the limit get 431.
const MIN_BUF: usize = 8192;

/// Serves devices on `listener` until `shutdown` becomes true (or its sender is dropped), then
/// stops accepting, lets open connections finish their in-flight requests for up to
/// `timeouts.drain`, closes what is left and returns.
pub async fn serve_devices(
    gw: Arc<Gateway>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
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
                        conns.spawn(serve_connection(gw.clone(), tcp, peer, stop_rx.clone()));
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

/// One device connection: TLS when configured, then HTTP until it closes or shutdown drains it.
async fn serve_connection(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let rt = gw.current();
    let _ = tcp.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(rt.timeouts.device_request)
        .preserve_header_case(true)
        .max_buf_size(rt.limits.max_header_bytes.max(MIN_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(rt.limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(100);
    let tls = rt.device_tls.clone();
    let first_bytes = rt.timeouts.device_request;
    drop(rt);
    let conn = Arc::new(DeviceConn::new(peer, tls.is_some()));
    let watch = conn.clone();
    let service = service_fn(move |req| proxy::handle(gw.clone(), conn.clone(), req));
    match tls {
        Some(cfg) => {
            let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
            let stream = match tokio::time::timeout(first_bytes, accept).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "device TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "device TLS handshake timed out");
                    return;
                }
            };
            // ALPN decides; no preface sniffing (which would wait without a timeout).
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let idle = h2.then_some((watch, first_bytes));
            drive(
                builder.serve_connection(TokioIo::new(stream), service),
                stop,
                idle,
            )
            .await;
        }
        None => {
            let Some(h2) = sniff_h2(&tcp, first_bytes).await else {
                tracing::debug!(%peer, "device sent no request in time");
                return;
            };
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let idle = h2.then_some((watch, first_bytes));
            drive(
                builder.serve_connection(TokioIo::new(tcp), service),
                stop,
                idle,
            )
            .await;
        }
    }
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
/// finish the requests in flight and close.
async fn drive<I, S, B>(
    conn: auto::Connection<'_, I, S, TokioExecutor>,
    mut stop: watch::Receiver<bool>,
    idle: Option<(Arc<DeviceConn>, Duration)>,
) where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
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
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
        _ = idle => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
