//! Deadlines from accept, over real sockets: one device request deadline from accept to the first
//! complete request head (TLS handshake and HTTP/2 sniff included), and a management port that a
//! handful of silent sockets from one address cannot lock admins out of.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway::reload::ControlPlane;
use gateway::state::Gateway;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// The device request timeout in these tests.
const TIMEOUT: Duration = Duration::from_millis(600);

use gateway::management::{FIRST_REQUEST_TIMEOUT, MAX_CONNECTIONS_PER_ADDRESS as MGMT_PER_ADDRESS};

fn short_timeout_runtime() -> gateway::model::Runtime {
    let mut rt = runtime(&[]);
    rt.timeouts.device_request = TIMEOUT;
    rt
}

/// Reads (and drops) until the gateway closes or breaks the connection; bounded by 5 s.
async fn until_closed<R: AsyncRead + Unpin>(r: &mut R) {
    let mut buf = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(5);
    for _ in 0..10_000 {
        match tokio::time::timeout_at(end, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was not closed within 5 s"),
        }
    }
    panic!("too many reads before the connection closed");
}

/// A close that came at the one deadline from accept: not early, and not a second timeout late.
fn assert_one_timeout(took: Duration) {
    assert!(took >= TIMEOUT.mul_f32(0.8), "closed too early: {took:?}");
    assert!(
        took < TIMEOUT.mul_f32(1.5),
        "closed after {took:?}: more than 1.5x the {TIMEOUT:?} device request timeout"
    );
}

/// Writes `bytes` one at a time, every 100 ms, until they run out or the peer is gone.
async fn trickle<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) {
    for b in bytes {
        if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 3 (a): a plain client whose first bytes look like the HTTP/2 preface for most of the
/// timeout, then turn out to be an HTTP/1.1 head that never ends, is closed at the one deadline
/// from accept, not a fresh timeout after the sniff.
#[tokio::test]
async fn a_trickled_plain_head_is_closed_at_one_timeout_from_accept() {
    let g = start(short_timeout_runtime()).await;
    let tcp = TcpStream::connect(g.addr).await.unwrap();
    let t0 = Instant::now();
    let (mut r, mut w) = tcp.into_split();
    // "PRI *" matches the preface for 500 ms; 'X' ends the sniff (HTTP/1.1), then the head
    // trickles on without a line end.
    let writer = tokio::spawn(async move {
        trickle(&mut w, b"PRI *Xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
        w
    });
    until_closed(&mut r).await;
    let took = t0.elapsed();
    eprintln!("plain trickle closed after {took:?} (timeout {TIMEOUT:?})");
    writer.abort();
    assert_one_timeout(took);
}

/// Item 3 (b): a TLS client that finishes its handshake just before the deadline and then
/// trickles its head is closed at the one deadline from accept.
#[tokio::test]
async fn a_late_tls_handshake_then_trickled_head_is_closed_at_one_timeout_from_accept() {
    let tls = device_tls();
    let mut rt = short_timeout_runtime();
    rt.device_tls = Some(tls.server.clone());
    let g = start(rt).await;
    let tcp = TcpStream::connect(g.addr).await.unwrap();
    let t0 = Instant::now();
    tokio::time::sleep(TIMEOUT.mul_f32(0.6)).await;
    let name = ServerName::try_from("localhost").unwrap();
    let s = tokio_rustls::TlsConnector::from(client_config(&tls.cert, &[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("the handshake completes before the deadline");
    eprintln!("handshake done after {:?}", t0.elapsed());
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        trickle(
            &mut w,
            b"GET /Microsoft-Server-ActiveSync?Cmd=Ping HTTP/1.1",
        )
        .await;
    });
    until_closed(&mut r).await;
    let took = t0.elapsed();
    eprintln!("TLS trickle closed after {took:?} (timeout {TIMEOUT:?})");
    writer.abort();
    assert_one_timeout(took);
}

/// HTTP/2 prior knowledge: a preface trickled for most of the timeout, then no request at all,
/// is closed at the one deadline from accept.
#[tokio::test]
async fn an_http2_connection_without_a_request_is_closed_at_one_timeout_from_accept() {
    let g = start(short_timeout_runtime()).await;
    let tcp = TcpStream::connect(g.addr).await.unwrap();
    let t0 = Instant::now();
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        // 5 bytes over 500 ms, then the rest and an empty SETTINGS frame at once.
        trickle(&mut w, &preface[..5]).await;
        let mut rest = preface[5..].to_vec();
        rest.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let _ = w.write_all(&rest).await;
        // Keep the write side open; no request follows.
        tokio::time::sleep(Duration::from_secs(5)).await;
        w
    });
    until_closed(&mut r).await;
    let took = t0.elapsed();
    eprintln!("HTTP/2 without a request closed after {took:?} (timeout {TIMEOUT:?})");
    writer.abort();
    let metrics = g.gw.metrics.render();
    let line = "easgate_device_refusals_total{reason=\"h2_first_request_timeout\"} 1";
    assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    assert_one_timeout(took);
}

/// A connection that sends nothing, plain or TLS (a half-done handshake), is closed at the
/// deadline and counted, so an admin sees scanners and stuck clients in the metrics.
#[tokio::test]
async fn silent_connections_are_closed_at_the_deadline_and_counted() {
    let tls = device_tls();
    let mut rt = short_timeout_runtime();
    rt.device_tls = Some(tls.server.clone());
    let with_tls = start(rt).await;
    let plain = start(short_timeout_runtime()).await;
    for g in [&plain, &with_tls] {
        let mut tcp = TcpStream::connect(g.addr).await.unwrap();
        let t0 = Instant::now();
        until_closed(&mut tcp).await;
        let took = t0.elapsed();
        assert!(
            took >= TIMEOUT.mul_f32(0.8) && took < TIMEOUT.mul_f32(1.5),
            "{took:?}"
        );
        let line = "easgate_device_refusals_total{reason=\"first_request_timeout\"} 1";
        eventually("the refusal counted", || {
            g.gw.metrics.render().contains(line)
        })
        .await;
    }
}

// --- management ---------------------------------------------------------------------------

struct Mgmt {
    gw: Arc<Gateway>,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
    _shutdown: watch::Sender<bool>,
}

async fn start_management() -> Mgmt {
    let mut rt = runtime(&[]);
    let (tls, cert) = server_config(&["localhost"], &[]);
    rt.management.tls = tls;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::new(rt);
    let cp = ControlPlane::new(gw.clone(), dir.path().join("easgate.toml"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(gateway::management::serve_management(cp, listener, rx));
    Mgmt {
        gw,
        addr,
        cert,
        _dir: dir,
        _shutdown: tx,
    }
}

/// A TCP connection to `to` from `from` (any port).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    s.connect(to).await
}

/// `GET /v1/status` with the token from `from`; the status, or why it failed.
async fn admin_status(m: &Mgmt, from: &str) -> Result<StatusCode, String> {
    let go = async {
        let tcp = connect_from(from, m.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(&m.cert, &[]))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/v1/status")
            .header("host", "localhost")
            .header("authorization", "Bearer t")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(3), go)
        .await
        .unwrap_or_else(|_| Err("no answer within 3 s".into()))
}

/// True when the gateway closes `s` within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Issue 13 item 5: 70 silent connections from one address do not lock out an admin from
/// another, and after the short handshake deadline the first address is served again.
#[tokio::test]
async fn silent_management_connections_from_one_address_do_not_lock_out_admins() {
    let m = start_management().await;
    let mut silent = Vec::new();
    for _ in 0..70 {
        silent.push(connect_from("127.0.0.1", m.addr).await.unwrap());
    }
    let t0 = Instant::now();
    let other = admin_status(&m, "127.0.0.2").await;
    let took = t0.elapsed();
    eprintln!("admin from 127.0.0.2 with 70 silent sockets open: {other:?} after {took:?}");
    assert_eq!(
        other,
        Ok(StatusCode::OK),
        "an admin from 127.0.0.2 is served while 127.0.0.1 holds 70 silent sockets"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // The silent ones the cap left open are closed by the handshake deadline.
    let t0 = Instant::now();
    let bound = FIRST_REQUEST_TIMEOUT + Duration::from_secs(3);
    for s in &mut silent {
        assert!(
            closed_within(s, bound).await,
            "a silent management connection is still open after {bound:?}"
        );
    }
    let took = t0.elapsed();
    eprintln!("all silent management connections closed after {took:?}");
    assert!(
        took < FIRST_REQUEST_TIMEOUT + Duration::from_secs(2),
        "closed after {took:?}"
    );
    assert_eq!(admin_status(&m, "127.0.0.1").await, Ok(StatusCode::OK));
    let metrics = m.gw.metrics.render();
    let capped = 70 - MGMT_PER_ADDRESS;
    for line in [
        format!("easgate_management_refusals_total{{reason=\"per_address_cap\"}} {capped}"),
        format!(
            "easgate_management_refusals_total{{reason=\"first_request_timeout\"}} {MGMT_PER_ADDRESS}"
        ),
    ] {
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
}

/// One address gets at most `MGMT_PER_ADDRESS` concurrent management connections: the next is
/// closed at once, while the earlier ones are still open.
#[tokio::test]
async fn the_management_connection_over_the_per_address_cap_is_closed_at_once() {
    let m = start_management().await;
    let mut held = Vec::new();
    for _ in 0..MGMT_PER_ADDRESS {
        held.push(connect_from("127.0.0.1", m.addr).await.unwrap());
    }
    let mut extra = connect_from("127.0.0.1", m.addr).await.unwrap();
    let t0 = Instant::now();
    assert!(
        closed_within(&mut extra, Duration::from_millis(500)).await,
        "connection {} from one address was not closed at once",
        MGMT_PER_ADDRESS + 1
    );
    eprintln!("over-cap connection closed after {:?}", t0.elapsed());
    for s in &mut held {
        assert!(
            !closed_within(s, Duration::from_millis(20)).await,
            "a connection within the cap was closed"
        );
    }
    // Another address is not affected.
    assert_eq!(admin_status(&m, "127.0.0.2").await, Ok(StatusCode::OK));
}
