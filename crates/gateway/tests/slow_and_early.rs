//! Issue 13, items 3 and 5, over real loopback sockets: `Expect: 100-continue` is answered only
//! once the request path asks for the body (after the access decision, so a blocked device gets
//! its refusal and never a `100 Continue`), and request bodies have an overall deadline
//! (`advanced.device_body_timeout_ms`) on top of the per-read silence timeout.
//!
//! The device side is a raw socket with a small response reader of its own, so nothing depends
//! on the code under test to decode what the gateway sends.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

/// A raw device connection with read-ahead (bytes after one response stay for the next).
struct Raw {
    s: TcpStream,
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

    /// Reads more; `0` at end of stream (or an error: a reset).
    async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> usize {
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
