//! The device listener: accept, TLS (from the runtime current at accept time, so a reload applies
//! to new connections), HTTP/1.1 or HTTP/2 (ALPN / preface), and graceful shutdown that lets
//! in-flight requests (parked Pings included) finish within the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::h1::buffers::Loan;
use crate::h1::server::{DeviceBody, Settings};
use crate::h1::socket::Socket;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

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
                        // The first-request deadline counts from here, not from when a worker
                        // gets to the connection.
                        let at = Instant::now();
                        gw.metrics.connection_accepted();
                        spawn_connection(
                            &mut conns,
                            workers.as_deref(),
                            gw.clone(),
                            (tcp, peer, at),
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
    (tcp, peer, at): (TcpStream, SocketAddr, Instant),
    stop: watch::Receiver<bool>,
) {
    let Some(w) = workers else {
        conns.spawn(serve_connection(gw, tcp, peer, at, stop));
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
            Ok(tcp) => serve_connection(gw, tcp, peer, at, stop).await,
            Err(e) => tracing::warn!(%peer, error = %e, "device connection not handed to a worker"),
        }
    };
    conns.spawn_on(serve, w.pick());
}

/// One device connection: TLS when configured, then HTTP until it closes or shutdown drains it.
/// HTTP/1.1 runs on the gateway's own connection driver ([`crate::h1::server`]); the TLS
/// handshake and HTTP/2 (hyper) are boxed so a parked HTTP/1.1 request does not carry their
/// state.
///
/// One deadline, `device_request` from `accepted`, covers the TLS handshake or the HTTP/2 sniff and
/// the first request head (HTTP/2: the first request): a stage that took most of it leaves the
/// next only the rest, so a trickling client is closed at 1x the timeout, never 2x.
async fn serve_connection(
    gw: Arc<Gateway>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    stop: watch::Receiver<bool>,
) {
    let rt = gw.current();
    let first = accepted + rt.timeouts.device_request;
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
    let conn = Arc::new(DeviceConn::new(peer, tls.is_some()));
    // The TLS handshake and HTTP/2 are boxed: an HTTP/1.1 connection (the common case, parked
    // Pings included) carries neither.
    let (io, carry) = match tls {
        Some(cfg) => match Box::pin(accept_tls(cfg, tcp, peer, first)).await {
            None => {
                first_request_missed(&gw, first);
                return;
            }
            Some(Accepted::H1(io)) => (io, None),
            Some(Accepted::H2(stream)) => {
                let io = TokioIo::new(*stream);
                Box::pin(serve_h2(gw, conn, io, stop, settings, first)).await;
                return;
            }
        },
        None => match sniff_h2(&mut tcp, first).await {
            None => {
                tracing::debug!(%peer, "device sent no request in time");
                first_request_missed(&gw, first);
                return;
            }
            Some(Sniffed::H2) => {
                let io = TokioIo::new(Preface::new(tcp));
                Box::pin(serve_h2(gw, conn, io, stop, settings, first)).await;
                return;
            }
            Some(Sniffed::H1(read)) => (Socket::Plain(tcp), Some(read)),
        },
    };
    h1::server::serve(gw, conn, io, carry, stop, settings, first).await;
}

/// Counts a connection closed because its TLS handshake or first bytes missed the deadline from
/// accept (one that failed or closed earlier is not a refusal of ours).
fn first_request_missed(gw: &Gateway, deadline: Instant) {
    if Instant::now() >= deadline {
        gw.metrics.device_refused("first_request_timeout");
    }
}

enum Accepted {
    H1(h1::socket::DeviceSocket),
    H2(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The device TLS handshake by `deadline`; ALPN decides HTTP/2 or HTTP/1.1 (no preface
/// sniffing, which would wait without a timeout).
async fn accept_tls(
    cfg: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<Accepted> {
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
    let stream = match tokio::time::timeout_at(deadline, accept).await {
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
    first: Instant,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let watch = conn.clone();
    let (peer, counts) = (conn.peer, gw.clone());
    let seen = Arc::new(AtomicBool::new(false));
    let first = (first, seen.clone());
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Relaxed);
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
    let graceful = http2::Connection::graceful_shutdown;
    if drive(conn, stop, idle, first, graceful).await == Ended::NoRequest {
        tracing::debug!(%peer, "no HTTP/2 request within device_request_timeout_ms of accept: closed");
        counts.metrics.device_refused("h2_first_request_timeout");
    }
}

/// The HTTP/2 connection preface (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a plain connection's first bytes say.
enum Sniffed {
    /// The whole preface, read (and consumed): [`Preface`] gives it back to hyper.
    H2,
    /// HTTP/1.1: the bytes read so far, the start of the first request head.
    H1(Loan),
}

/// Plain connections: HTTP/2 prior knowledge or HTTP/1.1, from the first bytes, by `deadline`
/// (hyper-util's own sniffing has no timeout, so a silent socket would stay open).
///
/// Reads, never peeks: a peek returns at once while a partial preface waits, so it would have
/// to poll on a timer. Each read asks for no more than the rest of the preface and waits for
/// readiness; no buffer is held meanwhile. `None`: closed, failed, or out of time.
async fn sniff_h2(tcp: &mut TcpStream, deadline: Instant) -> Option<Sniffed> {
    let mut buf = [0u8; PREFACE.len()];
    let mut n = 0;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(k)) => n += k,
        }
        if buf[..n] != PREFACE[..n] {
            let mut read = Loan::take();
            read.vec().extend_from_slice(&buf[..n]);
            return Some(Sniffed::H1(read));
        }
        if n == PREFACE.len() {
            return Some(Sniffed::H2);
        }
    }
}

pin_project! {
    /// A plain HTTP/2 connection whose preface the sniff consumed: reads give the preface
    /// first, then the socket. Nothing but a count is kept (the preface is a constant).
    struct Preface<IO> {
        given: usize,
        #[pin]
        io: IO,
    }
}

impl<IO> Preface<IO> {
    fn new(io: IO) -> Self {
        Self { given: 0, io }
    }
}

impl<IO: AsyncRead> AsyncRead for Preface<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let rest = &PREFACE[(*this.given).min(PREFACE.len())..];
        if rest.is_empty() {
            return this.io.poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        *this.given += n;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for Preface<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// How [`drive`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Closed by either side, or gracefully after shutdown or idleness.
    Closed,
    /// Dropped: no request by the first-request deadline.
    NoRequest,
}

/// Runs a connection; on shutdown (or, for HTTP/2, after `idle.1` without requests) asks it to
/// finish the requests in flight (`graceful`) and close. A connection that has had no request
/// (`first.1` still false) by `first.0` is dropped instead: nothing is in flight to finish, and
/// a graceful close waits for a PING answer such a client need never send.
async fn drive<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    idle: Option<(Arc<DeviceConn>, Duration)>,
    first: (Instant, Arc<AtomicBool>),
    graceful: fn(Pin<&mut C>),
) -> Ended
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let idle = async {
        match &idle {
            Some((c, d)) => c.idle_for(*d).await,
            None => std::future::pending().await,
        }
    };
    let no_request = async {
        tokio::time::sleep_until(first.0).await;
        if first.1.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "device connection ended with an error");
            }
            return Ended::Closed;
        }
        _ = stop.wait_for(|s| *s) => graceful(conn.as_mut()),
        () = no_request => return Ended::NoRequest,
        _ = idle => graceful(conn.as_mut()),
    }
    let _ = conn.await;
    Ended::Closed
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    /// The sniff waits for readiness: with one byte of the preface waiting and nothing more
    /// coming, it is not polled again until the deadline (a timer loop here once made 2,000
    /// one-byte connections use most of a core).
    #[tokio::test(start_paused = true)]
    async fn the_sniff_is_not_polled_while_no_bytes_arrive() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut dev = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (mut tcp, _) = l.accept().await.unwrap();
        dev.write_all(b"P").await.unwrap();
        let polls = AtomicUsize::new(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut sniff = std::pin::pin!(super::sniff_h2(&mut tcp, deadline));
        let out = std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            sniff.as_mut().poll(cx)
        })
        .await;
        let n = polls.load(Ordering::Relaxed);
        assert!(out.is_none(), "one byte of preface is no protocol");
        eprintln!("sniff polled {n} times");
        assert!(
            n <= 5,
            "the sniff was polled {n} times in one (simulated) second"
        );
    }

    /// What the sniff consumed comes back first, whatever the reader's buffer size, then the
    /// socket's own bytes.
    #[tokio::test]
    async fn the_preface_reader_gives_back_the_preface_then_the_socket() {
        use tokio::io::AsyncReadExt;
        let (mut dev, gw) = tokio::io::duplex(64);
        dev.write_all(b"frames").await.unwrap();
        drop(dev);
        let mut r = super::Preface::new(gw);
        let mut got = Vec::new();
        let mut small = [0u8; 5];
        for _ in 0..100 {
            let n = r.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        let mut want = super::PREFACE.to_vec();
        want.extend_from_slice(b"frames");
        assert_eq!(got, want);
    }

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

    fn future_size5<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
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
        let conn = future_size5(super::serve_connection);
        eprintln!("proxy::handle future {handle} B, serve_connection future {conn} B");
        // 2026-11-26: 2,376 B and 1,456 B in this (test) build; 2,352 B and 1,416 B in release.
        // 2026-12-07: serve_connection 1,520 B -> 1,656 B in this build (+136 B: the accept
        // time, the deadline from it and the sniffed bytes go on into the HTTP/1.1 driver).
        assert!(handle <= 3072, "proxy::handle future is {handle} B");
        assert!(conn <= 2048, "serve_connection future is {conn} B");
    }
}
