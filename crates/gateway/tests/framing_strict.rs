//! Request smuggling through body framing, end to end over loopback sockets: chunk-size lines
//! outside RFC 9112 7.1.1 (a bare LF or a control byte in an "extension", junk after the size)
//! and `chunked` applied twice. The device must get 400 and a closed connection, and the server
//! must receive nothing at all: not a connection, not a byte.
//!
//! The device side is a raw socket (the gateway's own HTTP code must not decode its answers) and
//! the server a raw listener that records every byte it is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for the gateway's answer and its close.
const STEP: Duration = Duration::from_secs(5);

const TARGET: &str =
    "/Microsoft-Server-ActiveSync?Cmd=SendMail&User=u&DeviceId=DEV1&DeviceType=iPhone";

/// A server that answers every request 200 and keeps what it was sent.
/// The server got no connection and no byte.
fn assert_nothing_reached(
    conns: &std::sync::atomic::AtomicUsize,
    got: &parking_lot::Mutex<Vec<u8>>,
) {
    assert_eq!(
        conns.load(Ordering::SeqCst),
        0,
        "no connection reached the server"
    );
    assert!(
        got.lock().is_empty(),
        "the server received {:?}",
        got.lock()
    );
}

async fn recording_server() -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<parking_lot::Mutex<Vec<u8>>>,
    tokio::task::JoinHandle<()>,
) {
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let g2 = got.clone();
    let (addr, conns, task) = raw_backend(move |mut s: TcpStream| {
        let got = g2.clone();
        async move {
            let mut b = [0u8; 4096];
            let mut mine = Vec::new();
            let mut answered = 0;
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        got.lock().extend_from_slice(&b[..n]);
                        mine.extend_from_slice(&b[..n]);
                    }
                }
                // One answer per complete chunked body (the gateway re-chunks what it sends).
                let ends = mine.windows(5).filter(|w| w == b"0\r\n\r\n").count();
                while answered < ends {
                    answered += 1;
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    (addr, conns, got, task)
}

/// Sends `wire` as one write on a fresh connection; returns everything the gateway sent back
/// before it closed the connection.
async fn exchange(gw: SocketAddr, wire: &[u8]) -> String {
    let mut d = TcpStream::connect(gw).await.unwrap();
    d.write_all(wire).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(STEP, async {
        let mut b = [0u8; 1024];
        loop {
            match d.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        read.is_ok(),
        "connection still open after {STEP:?}: {text:?}"
    );
    text
}

fn refused_with_400(answer: &str, what: &str) {
    assert!(answer.starts_with("HTTP/1.1 400 "), "{what}: {answer:?}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{what}: {answer:?}"
    );
}

/// A chunked SendMail whose first chunk-size line is `6` + `ext`.
fn chunked_send_mail(ext: &[u8]) -> Vec<u8> {
    let mut wire = format!(
        "POST {TARGET} HTTP/1.1\r\nHost: gw.test\r\nMS-ASProtocolVersion: 14.1\r\n\
         Content-Type: message/rfc822\r\nTransfer-Encoding: chunked\r\n\r\n6"
    )
    .into_bytes();
    wire.extend_from_slice(ext);
    wire.extend_from_slice(b"\r\nhello!\r\n0\r\n\r\n");
    wire
}

#[tokio::test]
async fn malformed_chunk_size_lines_get_400_and_reach_no_server() {
    let (addr, conns, got, _task) = recording_server().await;
    let gw = start(runtime(&[addr_of(addr)])).await;
    for ext in [
        // A bare LF: the line ends here for a lenient server, which then reads `b...` as data.
        &b";a\nb"[..],
        b";\x00",
        b" zz",
        b" 6",
        b";a=\"open",
        b";a b",
        b"\r\n0\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: x\r\n\r\n;",
    ] {
        let wire = chunked_send_mail(ext);
        let answer = exchange(gw.addr, &wire).await;
        refused_with_400(&answer, &ext.escape_ascii().to_string());
    }
    assert_nothing_reached(&conns, &got);
}

#[tokio::test]
async fn chunked_twice_gets_400_and_reaches_no_server() {
    let (addr, conns, got, _task) = recording_server().await;
    let gw = start(runtime(&[addr_of(addr)])).await;
    for te in [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nX-Between: 1\r\ntransfer-encoding: CHUNKED\r\n",
    ] {
        let wire = format!(
            "POST {TARGET} HTTP/1.1\r\nHost: gw.test\r\nMS-ASProtocolVersion: 14.1\r\n\
             Content-Type: message/rfc822\r\n{te}\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = exchange(gw.addr, wire.as_bytes()).await;
        refused_with_400(&answer, te);
    }
    assert_nothing_reached(&conns, &got);
}

/// The same requests with well-formed framing do reach the server (the refusals above are
/// about the framing, not the command or the test's server).
#[tokio::test]
async fn well_formed_chunk_extensions_reach_the_server() {
    let (addr, conns, got, _task) = recording_server().await;
    let gw = start(runtime(&[addr_of(addr)])).await;
    for ext in [&b""[..], b";a", b" ; a = \"q \\\" ;\" ;b=c"] {
        let wire = chunked_send_mail(ext);
        let answer = exchange_one(gw.addr, &wire).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    }
    assert!(conns.load(Ordering::SeqCst) >= 1);
    let got = String::from_utf8_lossy(&got.lock()).into_owned();
    assert_eq!(got.matches("hello!").count(), 3, "{got:?}");
}

/// Sends `wire` and reads one bodiless response head (the connection stays open).
async fn exchange_one(gw: SocketAddr, wire: &[u8]) -> String {
    let mut d = TcpStream::connect(gw).await.unwrap();
    d.write_all(wire).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(STEP, async {
        let mut b = [0u8; 1024];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match d.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(read.is_ok(), "no answer within {STEP:?}: {text:?}");
    text
}
