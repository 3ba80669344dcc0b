//! Issue 13, items 3 and 5, over real loopback sockets: `Expect: 100-continue` is answered only
//! once the request path asks for the body (after the access decision, so a blocked device gets
//! its refusal and never a `100 Continue`), and request bodies have an overall deadline
//! (`advanced.device_body_timeout_ms`) on top of the per-read silence timeout.
//!
//! The device side is a raw socket with a small response reader of its own, so nothing depends
//! on the code under test to decode what the gateway sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

/// Longest wait for any single step on the device side.
const STEP: Duration = Duration::from_secs(5);

// --- a raw device -----------------------------------------------------------------------------

/// A response as the device read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// A raw device connection (or its read half) with read-ahead: bytes after one response stay
/// for the next.
struct Raw<S = TcpStream> {
    s: S,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, b: &[u8]) {
        tokio::time::timeout(STEP, self.s.write_all(b))
            .await
            .expect("write stalled")
            .expect("write failed");
    }
}

impl<S: AsyncRead + Unpin> Raw<S> {
    /// Reads more; `0` at end of stream (or an error: a reset).
    async fn fill(s: &mut S, buf: &mut Vec<u8>) -> usize {
        let mut b = [0u8; 16 * 1024];
        let n = tokio::time::timeout(STEP, s.read(&mut b))
            .await
            .expect("gateway silent for 5 s")
            .unwrap_or(0);
        buf.extend_from_slice(&b[..n]);
        n
    }

    /// The next response (`Content-Length` bodies, or none); `None` when the gateway closed
    /// before sending one.
    async fn response(&mut self) -> Option<Resp> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if Self::fill(&mut self.s, &mut self.buf).await == 0 {
                assert!(
                    self.buf.is_empty(),
                    "closed mid-head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {head:?}"));
        let len = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let len = if status < 200 { 0 } else { len };
        while self.buf.len() < len {
            assert!(
                Self::fill(&mut self.s, &mut self.buf).await > 0,
                "closed mid-body"
            );
        }
        let body = self.buf.drain(..len).collect();
        Some(Resp { status, head, body })
    }

    /// Asserts the gateway closes within `within` without sending anything more.
    async fn closed_within(&mut self, within: Duration) {
        let t0 = Instant::now();
        while Self::fill(&mut self.s, &mut self.buf).await > 0 {
            assert!(t0.elapsed() < within, "still open after {within:?}");
        }
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// A SendMail head for `dev` (user `u`) with `extra` header lines (each ending in CRLF).
fn head(dev: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=SendMail&User=u&DeviceId={dev}&DeviceType=iPhone HTTP/1.1\r\n\
         Host: gw.test\r\nMS-ASProtocolVersion: 14.1\r\nContent-Type: message/rfc822\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A backend that answers every request with its body.
async fn echo_backend() -> Backend {
    backend(handler(|s: Seen| async move { reply(200, s.body) })).await
}

// --- item 3: Expect: 100-continue after the access decision ------------------------------------

/// A blocked device announcing a body with `Expect: 100-continue` gets its refusal and never a
/// `100 Continue` (so it never sends the body), the connection closes with the body unread, and
/// the server gets nothing; an allowed device still gets `100 Continue`, then its answer. Small
/// (read whole), large (streamed) and chunked bodies.
#[tokio::test]
async fn expect_100_continue_is_answered_only_after_the_access_decision() {
    let be = echo_backend().await;
    let mut rt = runtime(&[be.server()]);
    device_access(&mut rt, "unregistered = \"block\"");
    let gw = start(rt).await;
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"u","device_id":"GOOD","state":"allowed","reasons":["registered"]}]}"#)
        .await
        .unwrap();
    let framings = [
        "Content-Length: 11\r\n".to_string(),
        format!("Content-Length: {}\r\n", 200 * 1024),
        "Transfer-Encoding: chunked\r\n".to_string(),
    ];
    for framing in &framings {
        let mut d = Raw::connect(gw.addr).await;
        d.send(&head("BAD", &format!("Expect: 100-continue\r\n{framing}")))
            .await;
        let r = d.response().await.expect("an answer");
        assert_eq!(
            r.status, 403,
            "{framing:?}: a blocked device got {:?} before its refusal",
            r.head
        );
        assert!(
            r.head.to_ascii_lowercase().contains("connection: close"),
            "{}",
            r.head
        );
        d.closed_within(STEP).await;
    }
    assert_eq!(
        seen_from(&be, "BAD"),
        0,
        "the blocked device reached the server"
    );
    assert_eq!(be.count(), 0);

    // Allowed: 100 first, then the answer to the body sent after it (on one connection).
    let mut d = Raw::connect(gw.addr).await;
    for (i, body) in [b"small body!".to_vec(), pattern(200 * 1024)]
        .into_iter()
        .enumerate()
    {
        let framing = format!("Content-Length: {}\r\n", body.len());
        d.send(&head("GOOD", &format!("Expect: 100-continue\r\n{framing}")))
            .await;
        let interim = d.response().await.expect("100 Continue");
        assert_eq!(interim.status, 100, "{}", interim.head);
        assert!(interim.head.starts_with("HTTP/1.1 100 Continue\r\n"));
        assert_eq!(be.count(), i, "the server cannot have the body yet");
        d.send(&body).await;
        let r = d.response().await.expect("an answer");
        assert_eq!(r.status, 200, "{}", r.head);
        assert!(r.body == body, "the body came back intact");
    }
    assert_eq!(seen_from(&be, "GOOD"), 2);
}

/// HTTP/2 (hyper): no `100 Continue` is ever sent, so nothing goes out before the access
/// decision: a blocked device announcing a body with `expect: 100-continue` gets its refusal on
/// the stream without having sent a byte of body, and the server gets nothing. (Passes before
/// and after issue 13: it pins hyper's behaviour.)
#[tokio::test]
async fn http2_expect_100_continue_gets_the_refusal_without_the_body() {
    let be = echo_backend().await;
    let mut rt = runtime(&[be.server()]);
    device_access(&mut rt, "unregistered = \"block\"");
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, true).await;
    // The body never comes: the sender is held, not used.
    let (_tx, body) = channel_body();
    let mut req = eas_h2("gw.test", "SendMail", body);
    req.headers_mut()
        .insert("expect", http::HeaderValue::from_static("100-continue"));
    let resp = tokio::time::timeout(STEP, d.send_raw(req))
        .await
        .expect("an answer within 5 s")
        .expect("a response");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(be.count(), 0, "the blocked device reached the server");
}

// --- item 5: an overall deadline for request bodies --------------------------------------------

/// A device that sends `head`, then `body_len` body bytes in pieces of `piece` with `gap` between
/// them (from its own task) while the test reads the answer.
struct Trickle {
    r: Raw<OwnedReadHalf>,
    sent: Arc<AtomicUsize>,
    writer: tokio::task::JoinHandle<()>,
}

async fn trickle(
    addr: std::net::SocketAddr,
    head: Vec<u8>,
    body_len: usize,
    piece: usize,
    gap: Duration,
) -> Trickle {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    w.write_all(&head).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let writer = tokio::spawn(async move {
        let bytes = pattern(body_len);
        for part in bytes.chunks(piece) {
            if w.write_all(part).await.is_err() {
                return;
            }
            counted.fetch_add(part.len(), Ordering::SeqCst);
            tokio::time::sleep(gap).await;
        }
        // Keeps its half open until the test ends.
        std::future::pending::<()>().await;
    });
    Trickle {
        r: Raw {
            s: r,
            buf: Vec::new(),
        },
        sent,
        writer,
    }
}

/// The gateway's count of body deadline refusals.
fn body_timeouts(gw: &RunningGateway) -> usize {
    let m = gw.gw.metrics.render();
    m.lines()
        .find_map(|l| l.strip_prefix("easgate_device_refusals_total{reason=\"body_timeout\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

/// A small body (read whole before the request is handled) trickled steadily, each byte well
/// within the silence timeout, is cut at the body deadline: the device gets 408 and the
/// connection closes; the server never sees the request.
#[tokio::test]
async fn a_trickled_small_body_is_cut_at_the_body_deadline() {
    let be = echo_backend().await;
    let mut rt = runtime(&[be.server()]);
    let limit = Duration::from_millis(500);
    rt.timeouts.device_body = limit;
    let gw = start(rt).await;
    // 40 bytes, one per 50 ms: 2 s in all, never silent for more than 50 ms.
    let t0 = Instant::now();
    let mut d = trickle(
        gw.addr,
        head("D1", "Content-Length: 40\r\n"),
        40,
        1,
        Duration::from_millis(50),
    )
    .await;
    let r = d.r.response().await.expect("an answer");
    let took = t0.elapsed();
    assert_eq!(r.status, 408, "after {took:?}: {}", r.head);
    assert!(
        r.head.to_ascii_lowercase().contains("connection: close"),
        "{}",
        r.head
    );
    assert!(
        took >= limit - Duration::from_millis(50) && took < limit * 3,
        "answered after {took:?}"
    );
    assert!(d.sent.load(Ordering::SeqCst) < 40, "the whole body went in");
    d.r.closed_within(STEP).await;
    d.writer.abort();
    assert_eq!(be.count(), 0, "the server saw the request");
    assert_eq!(
        be.conns.load(Ordering::SeqCst),
        0,
        "a server connection was opened"
    );
    assert_eq!(body_timeouts(&gw), 1);

    // A body within the deadline is fine.
    let mut d = Raw::connect(gw.addr).await;
    let mut req = head("D1", "Content-Length: 11\r\n");
    req.extend_from_slice(b"small body!");
    d.send(&req).await;
    let r = d.response().await.expect("an answer");
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"small body!"[..]),
        "{}",
        r.head
    );
}

/// A streamed body (above 64 KiB) trickled steadily is cut at the body deadline too: the device
/// gets 408 and the connection closes; the server got the head and part of the body, then its
/// connection closed (it never had a complete request to act on).
#[tokio::test]
async fn a_trickled_streamed_body_is_cut_at_the_body_deadline() {
    const LEN: usize = 100 * 1024;
    let got = Arc::new(AtomicUsize::new(0));
    let complete = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (g2, c2, e2) = (got.clone(), complete.clone(), ended.clone());
    let (addr, _conns, _task) = raw_backend(move |mut s: TcpStream| {
        let (got, complete, ended) = (g2.clone(), c2.clone(), e2.clone());
        async move {
            let head = read_head(&mut s).await;
            let end = find(&head, b"\r\n\r\n").map_or(head.len(), |i| i + 4);
            let mut n = head.len() - end;
            let mut b = vec![0u8; 16 * 1024];
            while n < LEN {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            got.store(n, Ordering::SeqCst);
            ended.fetch_add(1, Ordering::SeqCst);
            if n >= LEN {
                complete.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        }
    })
    .await;
    let mut rt = runtime(&[addr_of(addr)]);
    let limit = Duration::from_millis(500);
    rt.timeouts.device_body = limit;
    let gw = start(rt).await;
    // 1 KiB per 25 ms: about 2.5 s in all, never silent for long.
    let t0 = Instant::now();
    let mut d = trickle(
        gw.addr,
        head("D1", &format!("Content-Length: {LEN}\r\n")),
        LEN,
        1024,
        Duration::from_millis(25),
    )
    .await;
    let r = d.r.response().await.expect("an answer");
    let took = t0.elapsed();
    assert_eq!(r.status, 408, "after {took:?}: {}", r.head);
    assert!(took < limit * 3, "answered after {took:?}");
    d.r.closed_within(STEP).await;
    d.writer.abort();
    assert!(
        d.sent.load(Ordering::SeqCst) < LEN,
        "the whole body went in"
    );
    eventually("the server connection closed", || {
        ended.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(got.load(Ordering::SeqCst) < LEN);
    assert_eq!(
        complete.load(Ordering::SeqCst),
        0,
        "the server got the whole request"
    );
    assert_eq!(body_timeouts(&gw), 1);
    // Identified before its body was read: its association (and audit line) carry the 408.
    eventually("the request's record has its final status", || {
        gw.gw
            .access
            .association("u", "D1")
            .is_some_and(|a| a.last_status == Some(408))
    })
    .await;
}

/// HTTP/2: a request body trickled steadily over a stream is cut at the body deadline as well:
/// the device gets 408 on that stream, and no complete body reached the server.
#[tokio::test]
async fn a_trickled_http2_body_is_cut_at_the_body_deadline() {
    const LEN: usize = 40;
    let be = echo_backend().await;
    let mut rt = runtime(&[be.server()]);
    let limit = Duration::from_millis(500);
    rt.timeouts.device_body = limit;
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, true).await;
    let (tx, body) = channel_body();
    let feeder = tokio::spawn(async move {
        for b in pattern(LEN) {
            if tx.send(bytes::Bytes::from(vec![b])).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let t0 = Instant::now();
    let (status, _, _) = tokio::time::timeout(STEP, d.send(eas_h2("gw.test", "SendMail", body)))
        .await
        .expect("an answer within 5 s");
    let took = t0.elapsed();
    assert_eq!(status.as_u16(), 408, "after {took:?}");
    assert!(took < limit * 3, "answered after {took:?}");
    feeder.abort();
    assert!(
        be.seen().iter().all(|s| s.body.len() < LEN),
        "a complete body reached the server"
    );
    assert_eq!(body_timeouts(&gw), 1);
}

/// A streamed body the gateway reads itself — a device marked for wipe sends its Provision, which
/// the gateway answers — is cut at the body deadline with 408 like any other, not 400.
#[tokio::test]
async fn a_trickled_body_the_gateway_reads_itself_gets_408() {
    let be = echo_backend().await;
    let mut rt = runtime(&[be.server()]);
    let limit = Duration::from_millis(500);
    rt.timeouts.device_body = limit;
    let gw = start(rt).await;
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"u","device_id":"W1","state":"wipe"}]}"#)
        .await
        .unwrap();
    let (r, mut w) = TcpStream::connect(gw.addr).await.unwrap().into_split();
    w.write_all(
        b"POST /Microsoft-Server-ActiveSync?Cmd=Provision&User=u&DeviceId=W1&DeviceType=iPhone HTTP/1.1\r\n\
          Host: gw.test\r\nMS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // One 1-byte chunk every 50 ms (never silent for long), for up to 2 s.
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            if w.write_all(b"1\r\n\x03\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await;
    });
    let mut raw = Raw {
        s: r,
        buf: Vec::new(),
    };
    let t0 = Instant::now();
    let resp = raw.response().await.expect("an answer");
    let took = t0.elapsed();
    assert_eq!(resp.status, 408, "after {took:?}: {}", resp.head);
    assert!(took < limit * 3, "answered after {took:?}");
    raw.closed_within(STEP).await;
    writer.abort();
    assert_eq!(be.count(), 0, "a wipe is answered by the gateway");
}
