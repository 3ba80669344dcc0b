//! The gateway's own HTTP/1.1 layer (`h1`), end to end over loopback sockets: keep-alive and
//! server connection reuse, pipelining, chunked bodies both ways, close-delimited responses,
//! malformed and oversized heads, `Expect: 100-continue`, interim responses from servers, a
//! device going away during a parked Ping, idle and half-sent heads, stale pooled connections,
//! HTTP/1.0 and HEAD.
//!
//! Both ends are raw sockets read and written byte by byte here (the device side and scripted
//! servers), with a small HTTP/1.1 reader of its own ([`Wire`]) so nothing depends on the code
//! under test to decode what the gateway sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Longest wait for any single step on the device side.
const STEP: Duration = Duration::from_secs(5);

// --- an HTTP/1.1 reader independent of the gateway ----------------------------------------

/// How a message body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framed {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// One message as read off the wire.
#[derive(Clone, Debug)]
struct Msg {
    /// The head as text (for failure messages).
    head: String,
    /// Response status (0 for requests).
    status: u16,
    /// Request method and target (empty for responses).
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framed: Framed,
}

impl Msg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A stream with read-ahead: messages are read one at a time, pipelined bytes stay buffered.
struct Wire<S> {
    s: S,
    buf: Vec<u8>,
    /// Server side: wait for a next request without a time limit (the test bounds the wait on
    /// the device side).
    patient: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(s: S) -> Self {
        Self {
            s,
            buf: Vec::new(),
            patient: false,
        }
    }

    async fn send(&mut self, b: &[u8]) {
        let w = async {
            self.s.write_all(b).await?;
            self.s.flush().await
        };
        tokio::time::timeout(STEP, w)
            .await
            .expect("write stalled for 5 s")
            .expect("write failed");
    }

    /// Reads more bytes; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut b = vec![0u8; 32 * 1024];
        let n = if self.patient {
            self.s.read(&mut b).await?
        } else {
            tokio::time::timeout(STEP, self.s.read(&mut b))
                .await
                .expect("peer silent for 5 s")?
        };
        self.buf.extend_from_slice(&b[..n]);
        Ok(n)
    }

    async fn more(&mut self) {
        let n = self.fill().await.expect("read failed");
        assert!(n > 0, "peer closed mid-message; have {:?}", self.text());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(400)]).into_owned()
    }

    /// The next head (through the blank line); `None` when the peer closed before any byte.
    async fn head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Some(self.buf.drain(..i + 4).collect());
            }
            match self.fill().await {
                Ok(0) | Err(_) if self.buf.is_empty() => return None,
                Ok(0) => panic!("peer closed mid-head: {:?}", self.text()),
                Ok(_) => {}
                Err(e) => panic!("read failed mid-head: {e}"),
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.more().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let mut l: Vec<u8> = self.buf.drain(..i + 2).collect();
                l.truncate(i);
                return l;
            }
            assert!(self.buf.len() < 64 * 1024, "line too long");
            self.more().await;
        }
    }

    /// A chunked body, decoded (extensions and trailers dropped).
    async fn chunked(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.line().await;
            let size = line.split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size).unwrap().trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                while !self.line().await.is_empty() {}
                return out;
            }
            out.extend_from_slice(&self.take(size).await);
            assert_eq!(self.take(2).await, b"\r\n", "chunk data must end in CRLF");
        }
    }

    async fn until_eof(&mut self) -> Vec<u8> {
        loop {
            match self.fill().await {
                Ok(0) | Err(_) => return std::mem::take(&mut self.buf),
                Ok(_) => assert!(self.buf.len() < 64 << 20, "body too long"),
            }
        }
    }

    /// Body framing from headers (RFC 9112 6.3); the gateway must never send both.
    fn framing(m: &Msg) -> Framed {
        let te = m.header("transfer-encoding");
        let cl = m.header("content-length");
        assert!(
            te.is_none() || cl.is_none(),
            "both Transfer-Encoding and Content-Length:\n{}",
            m.head
        );
        match (te, cl) {
            (Some(te), _) => {
                assert!(
                    te.trim().eq_ignore_ascii_case("chunked"),
                    "unexpected coding {te}"
                );
                Framed::Chunked
            }
            (None, Some(n)) => Framed::Length(n.trim().parse().expect("Content-Length")),
            (None, None) => Framed::Close,
        }
    }

    async fn body(&mut self, m: &mut Msg) {
        m.body = match m.framed {
            Framed::None => Vec::new(),
            Framed::Length(n) => self.take(n).await,
            Framed::Chunked => self.chunked().await,
            Framed::Close => self.until_eof().await,
        };
    }

    /// The next response; `head_request`: no body whatever the headers say.
    async fn response(&mut self, head_request: bool) -> Msg {
        let raw = self
            .head()
            .await
            .expect("connection closed instead of a response");
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut slots);
        let st = r.parse(&raw).unwrap_or_else(|e| {
            panic!(
                "invalid response head ({e}): {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        assert!(st.is_complete());
        let mut m = Msg {
            head: String::from_utf8_lossy(&raw).into_owned(),
            status: r.code.unwrap(),
            method: String::new(),
            target: String::new(),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            framed: Framed::None,
        };
        let bodiless = head_request || m.status < 200 || m.status == 204 || m.status == 304;
        m.framed = if bodiless {
            // Still checked for consistency.
            let _ = Self::framing(&m);
            Framed::None
        } else {
            Self::framing(&m)
        };
        self.body(&mut m).await;
        m
    }

    /// The next request (server side); `None` when the peer closed between requests.
    async fn request(&mut self) -> Option<Msg> {
        let raw = self.head().await?;
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Request::new(&mut slots);
        let st = r.parse(&raw).unwrap_or_else(|e| {
            panic!(
                "invalid request head ({e}): {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        assert!(st.is_complete());
        let mut m = Msg {
            head: String::from_utf8_lossy(&raw).into_owned(),
            status: 0,
            method: r.method.unwrap().to_string(),
            target: r.path.unwrap().to_string(),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            framed: Framed::None,
        };
        m.framed = match Self::framing(&m) {
            Framed::Close => Framed::None,
            f => f,
        };
        self.body(&mut m).await;
        Some(m)
    }

    /// Asserts the peer closes within `within` without sending anything more; returns how long
    /// that took.
    async fn closed_within(&mut self, within: Duration) -> Duration {
        let t0 = Instant::now();
        let mut b = [0u8; 1024];
        loop {
            let r = tokio::time::timeout(within, self.s.read(&mut b))
                .await
                .unwrap_or_else(|_| panic!("connection still open after {within:?}"));
            match r {
                Ok(0) | Err(_) => break,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            self.text()
        );
        t0.elapsed()
    }
}

async fn plain(addr: SocketAddr) -> Wire<TcpStream> {
    Wire::new(TcpStream::connect(addr).await.unwrap())
}

async fn tls(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
) -> Wire<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let cfg = client_config(cert, &[b"http/1.1"]);
    let s = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_ne!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    Wire::new(s)
}

// --- requests ------------------------------------------------------------------------------

fn target(cmd: &str, dev: &str) -> String {
    format!("/Microsoft-Server-ActiveSync?Cmd={cmd}&User=u&DeviceId={dev}&DeviceType=iPhone")
}

/// A request head without framing headers (`extra` lines end in CRLF).
fn head(method: &str, cmd: &str, dev: &str, version: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {} {version}\r\nHost: gw.test\r\nMS-ASProtocolVersion: 14.1\r\n\
         Content-Type: application/vnd.ms-sync.wbxml\r\n{extra}\r\n",
        target(cmd, dev)
    )
    .into_bytes()
}

/// An ActiveSync POST with a `Content-Length` body.
fn post(cmd: &str, dev: &str, body: &[u8]) -> Vec<u8> {
    let mut r = head(
        "POST",
        cmd,
        dev,
        "HTTP/1.1",
        &format!("Content-Length: {}\r\n", body.len()),
    );
    r.extend_from_slice(body);
    r
}

/// `body` in chunks of the given sizes (cycled), with an extension on the first chunk and a
/// trailer.
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - at);
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if i == 0 {
            out.extend_from_slice(b";ext=\"1\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
        i += 1;
    }
    out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    out
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

// --- scripted servers ----------------------------------------------------------------------

/// A request as a scripted server read it.
#[derive(Clone, Debug)]
struct Got {
    /// Index of the TCP connection it came on (0-based).
    conn: usize,
    msg: Msg,
}

/// What a scripted server does with one request.
enum Answer {
    /// Writes `parts` with `gap` between them; then closes its side when `close`.
    Send {
        parts: Vec<Vec<u8>>,
        gap: Duration,
        close: bool,
    },
    /// Never answers (a parked long poll); keeps reading to see the connection close.
    Hold,
}

fn ok(extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nMS-Server-ActiveSync: 14.1\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn send(b: Vec<u8>) -> Answer {
    Answer::Send {
        parts: vec![b],
        gap: Duration::ZERO,
        close: false,
    }
}

/// The request's body back, the connection index in `X-Conn`.
fn echo(g: &Got) -> Answer {
    send(ok(&format!("X-Conn: {}\r\n", g.conn), &g.msg.body))
}

struct Scripted {
    addr: SocketAddr,
    /// Connections accepted.
    conns: Arc<AtomicUsize>,
    /// Connections the gateway closed (EOF read between requests).
    closed: Arc<AtomicUsize>,
    got: Arc<parking_lot::Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    fn got(&self) -> Vec<Got> {
        self.got.lock().clone()
    }
    fn count(&self) -> usize {
        self.got.lock().len()
    }
    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A keep-alive HTTP/1.1 server answering each request as `f` says.
async fn scripted<F>(f: F) -> Scripted
where
    F: Fn(&Got) -> Answer + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let f = Arc::new(f);
    let (c2, cl2, g2) = (conns.clone(), closed.clone(), got.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let conn = c2.fetch_add(1, Ordering::SeqCst);
            let (f, closed, got) = (f.clone(), cl2.clone(), g2.clone());
            tokio::spawn(async move {
                let mut w = Wire::new(tcp);
                w.patient = true;
                loop {
                    let Some(msg) = w.request().await else {
                        closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let g = Got { conn, msg };
                    got.lock().push(g.clone());
                    match f(&g) {
                        Answer::Hold => {}
                        Answer::Send { parts, gap, close } => {
                            for (i, p) in parts.iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(gap).await;
                                }
                                if w.s.write_all(p).await.is_err() {
                                    return;
                                }
                            }
                            if close {
                                let _ = w.s.shutdown().await;
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        conns,
        closed,
        got,
        task,
    }
}

/// Waits (bounded) until `f` holds.
async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// --- 1. keep-alive ---------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_over_tls_reuses_one_pooled_server_connection() {
    let be = scripted(echo).await;
    let dtls = device_tls();
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.device_tls = Some(dtls.server.clone());
    let gw = start(rt).await;
    let mut d = tls(gw.addr, &dtls.cert).await;
    for i in 0..5 {
        let body = format!("request-{i}-").repeat(i + 1);
        d.send(&post("FolderSync", "D1", body.as_bytes())).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.body, body.as_bytes(), "request {i}");
        assert!(!r.has_token("connection", "close"), "{}", r.head);
        assert_eq!(
            r.header("x-conn"),
            Some("0"),
            "request {i} on a new server connection"
        );
    }
    let got = be.got();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|g| g.conn == 0));
    assert_eq!(
        be.conns(),
        1,
        "one pooled server connection for sequential requests"
    );
}

// --- 2. pipelining -----------------------------------------------------------------------------

async fn pipeline<S: AsyncRead + AsyncWrite + Unpin>(d: &mut Wire<S>, be: &Scripted) {
    let before = be.count();
    let mut burst = post("FolderSync", "D1", b"first body");
    burst.extend_from_slice(
        format!(
            "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw.test\r\n\r\n\
             POST {} HTTP/1.1\r\nHost: gw.test\r\nMS-ASProtocolVersion: 14.1\r\n\
             Content-Length: 16\r\n\r\nthe third, last.",
            target("Sync", "D1")
        )
        .as_bytes(),
    );
    d.send(&burst).await;
    let a = d.response(false).await;
    let b = d.response(false).await;
    let c = d.response(false).await;
    assert_eq!(
        (a.status, &a.body[..]),
        (200, &b"first body"[..]),
        "{}",
        a.head
    );
    assert_eq!(b.status, 200, "{}", b.head);
    assert_eq!(b.body, b"", "OPTIONS echo");
    assert_eq!((c.status, &c.body[..]), (200, &b"the third, last."[..]));
    let got = be.got();
    let methods: Vec<&str> = got[before..]
        .iter()
        .map(|g| g.msg.method.as_str())
        .collect();
    assert_eq!(
        methods,
        ["POST", "OPTIONS", "POST"],
        "in order at the server"
    );
    assert!(got[before].msg.target.contains("Cmd=FolderSync"));
    assert!(got[before + 2].msg.target.contains("Cmd=Sync"));

    // The next request written while the first is still at the server (read ahead while the
    // gateway watches the connection), split mid-head.
    d.send(&post("FolderSync", "D1", b"first body")).await;
    let at = be.count();
    wait_until("first request at the server", STEP, || be.count() == at + 1).await;
    let second = post(
        "FolderSync",
        "D1",
        b"second, sent while the first is in flight",
    );
    d.send(&second[..20]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    d.send(&second[20..]).await;
    let a = d.response(false).await;
    let b = d.response(false).await;
    assert_eq!(
        (a.status, &a.body[..]),
        (200, &b"first body"[..]),
        "{}",
        a.head
    );
    assert_eq!(
        (b.status, &b.body[..]),
        (200, &b"second, sent while the first is in flight"[..]),
        "{}",
        b.head
    );
}

#[tokio::test]
async fn pipelined_requests_get_responses_in_order_plain_and_tls() {
    // The first of each burst answers in two writes, slowly: order must not depend on timing.
    let be = scripted(|g: &Got| {
        if g.msg.body == b"first body" {
            let full = ok("", b"first body");
            let (a, b) = full.split_at(full.len() - 4);
            Answer::Send {
                parts: vec![a.to_vec(), b.to_vec()],
                gap: Duration::from_millis(150),
                close: false,
            }
        } else {
            echo(g)
        }
    })
    .await;
    let plain_gw = start(runtime(&[addr_of(be.addr)])).await;
    let dtls = device_tls();
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.device_tls = Some(dtls.server.clone());
    let tls_gw = start(rt).await;
    let mut d = plain(plain_gw.addr).await;
    pipeline(&mut d, &be).await;
    let mut t = tls(tls_gw.addr, &dtls.cert).await;
    pipeline(&mut t, &be).await;
    // Both connections still serve a next request.
    d.send(&post("FolderSync", "D1", b"after")).await;
    assert_eq!(d.response(false).await.body, b"after");
    t.send(&post("FolderSync", "D1", b"after-tls")).await;
    assert_eq!(t.response(false).await.body, b"after-tls");
    assert_eq!(be.count(), 12);
}

// --- 3. chunked request bodies ---------------------------------------------------------------

#[tokio::test]
async fn chunked_request_bodies_arrive_intact() {
    let be = scripted(echo).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    let te = "Transfer-Encoding: chunked\r\n";
    let cases: [(&str, Vec<u8>, &[usize]); 5] = [
        // Small: Sync bodies are read whole (long-poll check), FolderSync streams.
        ("Sync", pattern(300, 1), &[1, 7, 100]),
        ("FolderSync", b"hello chunked".to_vec(), &[5, 8]),
        // Larger than 64 KiB, chunk sizes below, at and above the read buffer.
        (
            "SendMail",
            pattern(300 * 1024, 2),
            &[1, 1000, 16 * 1024, 70_000, 3],
        ),
        ("SmartReply", pattern(100 * 1024, 3), &[65_536]),
        // Past the 16 KiB long-poll prefix: prefix read first, the rest streamed after it.
        ("Sync", pattern(40 * 1024, 4), &[3000]),
    ];
    for (i, (cmd, body, sizes)) in cases.iter().enumerate() {
        let mut req = head("POST", cmd, "D1", "HTTP/1.1", te);
        req.extend_from_slice(&chunked(body, sizes));
        d.send(&req).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "{cmd}: {}", r.head);
        let g = &be.got()[i];
        assert!(
            matches!(g.msg.framed, Framed::Chunked) || g.msg.framed == Framed::Length(body.len()),
            "{cmd}: server framing {:?}",
            g.msg.framed
        );
        assert!(g.msg.body == *body, "{cmd}: body reached the server intact");
        assert!(r.body == *body, "{cmd}: echoed intact");
        assert!(
            g.msg.header("x-trailer").is_none(),
            "trailer is not a header"
        );
    }
    // A chunked body followed at once (same write) by the next request: both answered.
    let body = pattern(80 * 1024, 4);
    let mut req = head("POST", "SendMail", "D1", "HTTP/1.1", te);
    req.extend_from_slice(&chunked(&body, &[4096]));
    req.extend_from_slice(&post("FolderSync", "D1", b"right behind"));
    d.send(&req).await;
    let a = d.response(false).await;
    let b = d.response(false).await;
    assert!(a.status == 200 && a.body == body, "{}", a.head);
    assert_eq!((b.status, &b.body[..]), (200, &b"right behind"[..]));
    assert_eq!(be.count(), 7);
}

#[tokio::test]
async fn malformed_or_unread_streamed_bodies_end_the_device_connection() {
    let be = scripted(echo).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let te = "Transfer-Encoding: chunked\r\n";
    for (cmd, bad) in [
        ("Sync", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        ("SendMail", b"5\r\nhelloXX0\r\n\r\n"),
        ("SendMail", b"ffffffffffffffffff\r\n"),
        ("FolderSync", b"\r\n\r\n"),
    ] {
        let mut d = plain(gw.addr).await;
        let mut req = head("POST", cmd, "D1", "HTTP/1.1", te);
        req.extend_from_slice(bad);
        d.send(&req).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 400, "{cmd} {bad:?}: {}", r.head);
        assert!(r.has_token("connection", "close"), "{}", r.head);
        d.closed_within(STEP).await;
    }
    assert!(
        be.got().iter().all(|g| g.msg.body.is_empty()),
        "no bad body bytes were passed on as a complete request"
    );
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(
        snap.services[0].servers[0].failures_total, 0,
        "a device's bad body is not the server's fault"
    );

    // A streamed body the gateway answers without reading (not an ActiveSync path): the
    // response says close, and the connection closes.
    let mut d = plain(gw.addr).await;
    let mut req =
        b"POST /owa/ HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(b"5\r\nhello\r\n");
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(r.has_token("connection", "close"), "{}", r.head);
    d.closed_within(STEP).await;
}

// --- 4. chunked and close-delimited responses ------------------------------------------------

#[tokio::test]
async fn chunked_and_close_delimited_responses_reach_the_device_intact() {
    let big = pattern(150 * 1024, 5);
    let close_body = pattern(100 * 1024, 6);
    let (b1, b2) = (big.clone(), close_body.clone());
    let be = scripted(move |g: &Got| {
        if g.msg.target.contains("Cmd=ItemOperations") {
            // Chunked, in several writes.
            let wire = chunked(&b1, &[10, 4096, 50_000]);
            let mut head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            head.extend_from_slice(&wire[..100]);
            let (mid, end) = wire[100..].split_at(wire.len() / 2);
            Answer::Send {
                parts: vec![head, mid.to_vec(), end.to_vec()],
                gap: Duration::from_millis(30),
                close: false,
            }
        } else if g.msg.target.contains("Cmd=GetAttachment") {
            // No length, no chunks: the body ends when the server closes.
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                             Connection: close\r\n\r\n"
                .to_vec();
            head.extend_from_slice(&b2[..1000]);
            Answer::Send {
                parts: vec![head, b2[1000..].to_vec()],
                gap: Duration::from_millis(30),
                close: true,
            }
        } else {
            echo(g)
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;

    d.send(&post("ItemOperations", "D1", b"x")).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        matches!(r.framed, Framed::Chunked | Framed::Length(_)),
        "{}",
        r.head
    );
    assert!(r.body == big, "chunked response intact");

    // The chunked exchange ended cleanly: the same server connection carries the next one.
    d.send(&post("GetAttachment", "D1", b"y")).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        matches!(r.framed, Framed::Chunked | Framed::Length(_)),
        "HTTP/1.1 device gets a delimited body: {}",
        r.head
    );
    assert!(r.body == close_body, "close-delimited response intact");

    // The device connection is still usable; the server connection that closed is not reused.
    d.send(&post("FolderSync", "D1", b"z")).await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"z"[..]));
    let conns: Vec<usize> = be.got().iter().map(|g| g.conn).collect();
    assert_eq!(
        conns,
        [0, 0, 1],
        "which server connection carried each request"
    );
    assert_eq!(be.conns(), 2);
}

#[tokio::test]
async fn server_connections_that_cannot_carry_another_request_are_not_reused() {
    let be = scripted(|g: &Got| {
        let b = &g.msg.body;
        let x = format!("X-Conn: {}\r\n", g.conn);
        if b == b"extra" {
            // More than the declared length: the surplus must not reach the device, nor be
            // read as the next response.
            let mut r = ok(&x, b"extra");
            r.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforged");
            send(r)
        } else if b == b"close" {
            // Declared length, but the server says close (and does).
            Answer::Send {
                parts: vec![ok(&format!("{x}Connection: close\r\n"), b"close")],
                gap: Duration::ZERO,
                close: true,
            }
        } else {
            send(ok(&x, b))
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    let mut conns = Vec::new();
    for body in [
        &b"extra"[..],
        b"after-extra",
        b"close",
        b"after-close",
        b"again",
    ] {
        d.send(&post("FolderSync", "D1", body)).await;
        let r = d.response(false).await;
        assert_eq!((r.status, &r.body[..]), (200, body), "{}", r.head);
        assert!(
            !r.has_token("connection", "close"),
            "hop-by-hop: {}",
            r.head
        );
        conns.push(r.header("x-conn").unwrap().to_string());
    }
    assert_eq!(conns, ["0", "1", "1", "2", "2"]);
    assert_eq!(be.conns(), 3);
}

// --- 5. malformed and oversized heads --------------------------------------------------------

/// Sends `bytes` on a fresh connection and returns the gateway's answer; the connection must
/// close after it.
async fn refused(addr: SocketAddr, bytes: &[u8]) -> Msg {
    let mut d = plain(addr).await;
    d.send(bytes).await;
    let r = d.response(false).await;
    d.closed_within(STEP).await;
    r
}

#[tokio::test]
async fn malformed_heads_get_400_and_never_reach_the_server() {
    let be = scripted(echo).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let t = target("Sync", "D1");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Transfer-Encoding and Content-Length",
            format!(
                "POST {t} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "Content-Length and Transfer-Encoding (reversed)",
            format!(
                "POST {t} HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "conflicting Content-Lengths",
            format!(
                "POST {t} HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            )
            .into_bytes(),
        ),
        (
            "conflicting Content-Length list",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nContent-Length: 5, 6\r\n\r\nhello!")
                .into_bytes(),
        ),
        (
            "signed Content-Length",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\nhello").into_bytes(),
        ),
        (
            "space before the colon",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nContent-Length : 5\r\n\r\nhello").into_bytes(),
        ),
        (
            "invalid header name",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n")
                .into_bytes(),
        ),
        (
            "control byte in a header name",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nX-\x01: x\r\n\r\n").into_bytes(),
        ),
        (
            "unknown transfer coding",
            format!("POST {t} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n").into_bytes(),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!(
                "POST {t} HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "garbage request line",
            b"HELLO THERE\r\nHost: gw\r\n\r\n".to_vec(),
        ),
        ("binary request line", b"\x16\x03\x01\x02\x00 / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "bad version",
            format!("POST {t} HTTP/9.7\r\nHost: gw\r\n\r\n").into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let r = refused(gw.addr, &bytes).await;
        assert_eq!(r.status, 400, "{what}: {}", r.head);
        assert!(r.has_token("connection", "close"), "{what}: {}", r.head);
    }
    assert_eq!(be.conns(), 0, "nothing reached the server");
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let be = scripted(echo).await;
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.limits.max_header_bytes = 16 * 1024;
    let gw = start(rt).await;
    // Well over the limit (the gateway stops reading at the limit).
    let mut d = plain(gw.addr).await;
    let mut req = head(
        "POST",
        "Sync",
        "D1",
        "HTTP/1.1",
        &format!("X-Big: {}\r\n", "a".repeat(40 * 1024)),
    );
    req.truncate(req.len() - 2); // not even complete
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 431, "{}", r.head);
    // Too many header lines, in a head well under the byte limit.
    let extra: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = refused(gw.addr, &head("POST", "Sync", "D1", "HTTP/1.1", &extra)).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(be.conns(), 0, "nothing reached the server");
    // Just under the limit passes.
    let mut d = plain(gw.addr).await;
    let pad = 16 * 1024 - 600;
    d.send(&head(
        "POST",
        "FolderSync",
        "D1",
        "HTTP/1.1",
        &format!("X-Pad: {}\r\nContent-Length: 0\r\n", "p".repeat(pad)),
    ))
    .await;
    assert_eq!(d.response(false).await.status, 200);
}

#[tokio::test]
async fn head_over_the_limit_but_within_one_read_gets_431() {
    let be = scripted(echo).await;
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.limits.max_header_bytes = 8192; // the smallest value config validation allows
    let gw = start(rt).await;
    let mut d = plain(gw.addr).await;
    // ~12 KiB head, complete, in one write.
    d.send(&head(
        "POST",
        "FolderSync",
        "D1",
        "HTTP/1.1",
        &format!("X-Big: {}\r\nContent-Length: 0\r\n", "b".repeat(12 * 1024)),
    ))
    .await;
    let r = d.response(false).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(
        be.count(),
        0,
        "an over-limit head must not reach the server"
    );
}

#[tokio::test]
async fn pipelined_head_over_the_limit_read_ahead_gets_431() {
    let be = scripted(|g: &Got| Answer::Send {
        parts: vec![Vec::new(), ok("", &g.msg.body)],
        gap: Duration::from_millis(300),
        close: false,
    })
    .await;
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.limits.max_header_bytes = 16 * 1024;
    let gw = start(rt).await;
    let mut d = plain(gw.addr).await;
    d.send(&post("FolderSync", "D1", b"first")).await;
    wait_until("first request at the server", STEP, || be.count() == 1).await;
    // While it is in flight: a complete 40 KiB head.
    d.send(&head(
        "POST",
        "FolderSync",
        "D1",
        "HTTP/1.1",
        &format!("X-Big: {}\r\nContent-Length: 0\r\n", "b".repeat(40 * 1024)),
    ))
    .await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"first"[..]));
    let r = d.response(false).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(
        be.count(),
        1,
        "an over-limit head must not reach the server"
    );
}

#[tokio::test]
async fn declared_body_over_the_limit_gets_413_without_reading_it() {
    let be = scripted(echo).await;
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.limits.max_body_bytes = 100_000;
    let gw = start(rt).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        // Only the head is sent: an answer proves the body was not waited for.
        let mut d = plain(gw.addr).await;
        d.send(&head(
            "POST",
            "SendMail",
            "D1",
            "HTTP/1.1",
            &format!("{expect}Content-Length: 100001\r\n"),
        ))
        .await;
        let r = d.response(false).await;
        assert_eq!(r.status, 413, "{expect:?}: {}", r.head);
        d.closed_within(STEP).await;
    }
    // At the limit: fine.
    let mut d = plain(gw.addr).await;
    let body = pattern(100_000, 7);
    d.send(&post("SendMail", "D1", &body)).await;
    let r = d.response(false).await;
    assert!(r.status == 200 && r.body == body, "{}", r.head);
    assert_eq!(
        be.count(),
        1,
        "the refused requests never reached the server"
    );
}

// --- 6. Expect: 100-continue -----------------------------------------------------------------

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let be = scripted(echo).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    // Small (read whole) and large (streamed) bodies.
    for (i, body) in [b"small body!".to_vec(), pattern(200 * 1024, 8)]
        .into_iter()
        .enumerate()
    {
        d.send(&head(
            "POST",
            "SendMail",
            "D1",
            "HTTP/1.1",
            &format!("Expect: 100-continue\r\nContent-Length: {}\r\n", body.len()),
        ))
        .await;
        let interim = d.response(false).await;
        assert_eq!(interim.status, 100, "{}", interim.head);
        assert!(interim.head.starts_with("HTTP/1.1 100 Continue\r\n"));
        assert_eq!(be.count(), i, "the server cannot have the body yet");
        d.send(&body).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert!(r.body == body);
        assert!(be.got()[i].msg.body == body, "the server saw the body");
    }
    // Body sent along with the head: no 100 needed, the final response comes first.
    let mut req = head(
        "POST",
        "SendMail",
        "D1",
        "HTTP/1.1",
        "Expect: 100-continue\r\nContent-Length: 4\r\n",
    );
    req.extend_from_slice(b"eager");
    req.truncate(req.len() - 1);
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"eage"[..]), "{}", r.head);
}

// --- 7. device gone while its Ping is parked -------------------------------------------------

#[tokio::test]
async fn device_closing_during_a_parked_ping_closes_the_server_connection() {
    let be = scripted(|_g: &Got| Answer::Hold).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    d.send(&post("Ping", "D1", &ping_body(900))).await;
    wait_until("Ping parked at the server", STEP, || be.count() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(be.closed(), 0, "parked, not closed");
    drop(d);
    wait_until(
        "the gateway closes the server connection",
        Duration::from_secs(2),
        || be.closed() == 1,
    )
    .await;
    assert_eq!(gw.gw.metrics.parked_now(), 0);

    // Over TLS, with and without close_notify.
    let dtls = device_tls();
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.device_tls = Some(dtls.server.clone());
    let tgw = start(rt).await;
    for (i, notify) in [true, false].into_iter().enumerate() {
        let mut d = tls(tgw.addr, &dtls.cert).await;
        d.send(&post("Ping", "D2", &ping_body(900))).await;
        wait_until("TLS Ping parked", STEP, || be.count() == 2 + i).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(be.closed(), 1 + i, "parked, not closed");
        if notify {
            let _ = tokio::time::timeout(STEP, d.s.shutdown()).await;
        }
        drop(d);
        wait_until(
            "the gateway closes the server connection (TLS)",
            Duration::from_secs(2),
            || be.closed() == 2 + i,
        )
        .await;
    }
}

#[tokio::test]
async fn device_closing_during_a_parked_chunked_ping_closes_the_server_connection() {
    let be = scripted(|_g: &Got| Answer::Hold).await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    let mut req = head(
        "POST",
        "Ping",
        "D1",
        "HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
    );
    req.extend_from_slice(&chunked(&ping_body(900), &[4]));
    d.send(&req).await;
    wait_until("Ping parked at the server", STEP, || be.count() == 1).await;
    drop(d);
    wait_until(
        "the gateway closes the server connection",
        Duration::from_secs(2),
        || be.closed() == 1,
    )
    .await;
}

// --- 8. idle connections and half-sent heads ---------------------------------------------------

#[tokio::test]
async fn device_request_timeout_closes_idle_connections_and_answers_half_heads_408() {
    let be = scripted(echo).await;
    let mut rt = runtime(&[addr_of(be.addr)]);
    let limit = Duration::from_millis(400);
    rt.timeouts.device_request = limit;
    let gw = start(rt).await;

    // Idle keep-alive after a served request: closed quietly after the timeout.
    let mut d = plain(gw.addr).await;
    d.send(&post("FolderSync", "D1", b"one")).await;
    assert_eq!(d.response(false).await.status, 200);
    let took = d.closed_within(Duration::from_secs(3)).await;
    assert!(took >= limit - Duration::from_millis(50), "{took:?}");

    // A connection that never sends a byte: closed quietly too.
    let mut d = plain(gw.addr).await;
    let took = d.closed_within(Duration::from_secs(3)).await;
    assert!(took >= limit - Duration::from_millis(50), "{took:?}");

    // Half a head: 408, then closed.
    let mut d = plain(gw.addr).await;
    let t0 = Instant::now();
    d.send(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=u&DeviceId=D1&DeviceType=x HTTP/1.1\r\nHost: gw\r\n")
        .await;
    let r = d.response(false).await;
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(r.has_token("connection", "close"));
    assert!(t0.elapsed() >= limit - Duration::from_millis(50));
    d.closed_within(Duration::from_secs(3)).await;

    // Half a head after a served request on a keep-alive connection: 408 too.
    let mut d = plain(gw.addr).await;
    d.send(&post("FolderSync", "D1", b"two")).await;
    assert_eq!(d.response(false).await.status, 200);
    d.send(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHo")
        .await;
    let r = d.response(false).await;
    assert_eq!(r.status, 408, "{}", r.head);
    d.closed_within(Duration::from_secs(3)).await;

    // A slow but steady head within the timeout is fine.
    let mut d = plain(gw.addr).await;
    let req = post("FolderSync", "D1", b"three");
    for part in req.chunks(req.len() / 3 + 1) {
        d.send(part).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(d.response(false).await.body, b"three");
    assert_eq!(be.count(), 3, "only complete requests reached the server");
}

// --- 9. stale pooled connections --------------------------------------------------------------

#[tokio::test]
async fn pooled_connection_closed_by_the_server_is_not_used() {
    // Every answer is keep-alive by its headers, but the server closes right after it.
    let be = scripted(|g: &Got| Answer::Send {
        parts: vec![ok(&format!("X-Conn: {}\r\n", g.conn), &g.msg.body)],
        gap: Duration::ZERO,
        close: true,
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    for i in 0..4 {
        let body = format!("round {i}");
        d.send(&post("FolderSync", "D1", body.as_bytes())).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "round {i}: {}", r.head);
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.header("x-conn"), Some(i.to_string().as_str()));
        // Let the server's FIN reach the pooled connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(be.conns(), 4, "a fresh server connection each time");
    let snap = gw.gw.health.snapshot(&gw.gw.current());
    assert_eq!(snap.services[0].servers[0].failures_total, 0);
}

// --- 10. interim responses from the server ---------------------------------------------------

#[tokio::test]
async fn interim_responses_from_the_server_are_not_passed_to_the_device() {
    let be = scripted(|g: &Got| {
        let fin = ok("", &g.msg.body);
        if g.msg.body == b"apart" {
            Answer::Send {
                parts: vec![
                    b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                    b"HTTP/1.1 102 Processing\r\n\r\n".to_vec(),
                    fin,
                ],
                gap: Duration::from_millis(80),
                close: false,
            }
        } else {
            let mut all = b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n".to_vec();
            all.extend_from_slice(&fin);
            send(all)
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    for body in [&b"apart"[..], b"together", b"apart"] {
        d.send(&post("SendMail", "D1", body)).await;
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.body, body);
        assert!(r.header("x-interim").is_none(), "{}", r.head);
    }
    // Nothing else arrived after the final responses.
    d.send(&post("FolderSync", "D1", b"last")).await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"last"[..]));
    assert_eq!(
        be.conns(),
        1,
        "the connection stays reusable after interim responses"
    );
}

// --- 11. HTTP/1.0 and Connection: close --------------------------------------------------------

#[tokio::test]
async fn http10_and_connection_close_requests_are_answered_then_closed() {
    let big = pattern(40 * 1024, 9);
    let b2 = big.clone();
    let be = scripted(move |g: &Got| {
        if g.msg.target.contains("Cmd=ItemOperations") {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend_from_slice(&chunked(&b2, &[1000]));
            send(r)
        } else {
            echo(g)
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;

    // HTTP/1.0 without keep-alive.
    let mut d = plain(gw.addr).await;
    let mut req = head(
        "POST",
        "FolderSync",
        "D1",
        "HTTP/1.0",
        "Content-Length: 3\r\n",
    );
    req.extend_from_slice(b"abc");
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"abc"[..]), "{}", r.head);
    d.closed_within(STEP).await;

    // HTTP/1.0 and a chunked server response: no chunked coding for the device, the body ends
    // with the connection.
    let mut d = plain(gw.addr).await;
    let mut req = head(
        "POST",
        "ItemOperations",
        "D1",
        "HTTP/1.0",
        "Content-Length: 1\r\n",
    );
    req.push(b'x');
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    assert!(r.body == big, "body intact");

    // HTTP/1.0 asking for keep-alive: kept.
    let mut d = plain(gw.addr).await;
    for body in [&b"k1"[..], b"k2"] {
        let mut req = head(
            "POST",
            "FolderSync",
            "D1",
            "HTTP/1.0",
            "Connection: keep-alive\r\nContent-Length: 2\r\n",
        );
        req.extend_from_slice(body);
        d.send(&req).await;
        let r = d.response(false).await;
        assert_eq!((r.status, &r.body[..]), (200, body), "{}", r.head);
    }

    // HTTP/1.1 with Connection: close.
    let mut d = plain(gw.addr).await;
    let mut req = head(
        "POST",
        "FolderSync",
        "D1",
        "HTTP/1.1",
        "Connection: close\r\nContent-Length: 5\r\n",
    );
    req.extend_from_slice(b"close");
    // A request pipelined behind it is not served.
    req.extend_from_slice(&post("FolderSync", "D1", b"ignored"));
    d.send(&req).await;
    let r = d.response(false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"close"[..]));
    assert!(r.has_token("connection", "close"), "{}", r.head);
    d.closed_within(STEP).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        be.got().iter().all(|g| g.msg.body != b"ignored"),
        "nothing after Connection: close is forwarded"
    );
    let got = be.got();
    assert!(
        got.iter().all(|g| !g.msg.has_token("connection", "close")),
        "the device's Connection header is hop-by-hop"
    );
}

// --- 12. HEAD and bodiless responses -----------------------------------------------------------

#[tokio::test]
async fn head_and_bodiless_responses_carry_no_body_and_keep_the_connection() {
    let be = scripted(|g: &Got| {
        if g.msg.method == "OPTIONS" {
            // A bodiless status with the length a body would have had.
            send(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\nX-From: server\r\n\r\n"
                    .to_vec(),
            )
        } else {
            echo(g)
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    // HEAD is not an ActiveSync method: the gateway answers it itself, with no body, and the
    // next pipelined request's response follows directly.
    let mut burst = head("HEAD", "Sync", "D1", "HTTP/1.1", "");
    burst.extend_from_slice(&post("FolderSync", "D1", b"after head"));
    d.send(&burst).await;
    let r = d.response(true).await;
    assert!(
        (400..500).contains(&r.status),
        "HEAD answered by the gateway: {}",
        r.head
    );
    let next = d.response(false).await;
    assert_eq!(
        (next.status, &next.body[..]),
        (200, &b"after head"[..]),
        "no body bytes after the HEAD response: {}",
        next.head
    );
    assert_eq!(be.count(), 1, "HEAD never reached the server");

    // A server's 304 with a Content-Length: the length passes, no body follows.
    let mut burst =
        b"OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw.test\r\n\r\n".to_vec();
    burst.extend_from_slice(&post("FolderSync", "D1", b"after 304"));
    d.send(&burst).await;
    let r = d.response(false).await;
    assert_eq!(r.status, 304, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("42"), "{}", r.head);
    assert_eq!(r.header("x-from"), Some("server"));
    let next = d.response(false).await;
    assert_eq!((next.status, &next.body[..]), (200, &b"after 304"[..]));
}

/// What a device uploading a large SendMail body got back.
struct Upload {
    /// The bytes the gateway answered with (lossy UTF-8).
    text: String,
    /// The gateway closed the connection within 15 s.
    closed: bool,
    /// Body bytes the device got into its socket.
    sent: usize,
}

/// Sends a SendMail head declaring `body_len` bytes and streams the body while reading the
/// answer, as a device that reads early answers does.
async fn upload(addr: SocketAddr, user: &str, device: &str, body_len: usize) -> Upload {
    let mut d = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=SendMail&User={user}&DeviceId={device}&DeviceType=iPhone HTTP/1.1\r\nHost: gw.test\r\nContent-Type: message/rfc822\r\nContent-Length: {body_len}\r\n\r\n"
    );
    d.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = d.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        while counted.load(Ordering::SeqCst) < body_len {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
            counted.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let mut resp = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut resp)).await;
    writer.abort();
    Upload {
        text: String::from_utf8_lossy(&resp).into_owned(),
        closed: read.is_ok(),
        sent: sent.load(Ordering::SeqCst),
    }
}

/// A server that answers early (413, as IIS does for a body over maxAllowedContentLength) and
/// closes without reading the body: the device gets an error, but its uploads must not count
/// against the server's health (three of them used to mark the only server dead for everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_an_upload_is_not_marked_dead_by_it() {
    let (addr, _conns, _task) = raw_backend(|mut s: TcpStream| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        // close with unread data: RST
        drop(s);
    })
    .await;
    let server = addr_of(addr);
    let rt = runtime(std::slice::from_ref(&server));
    let g = start(rt).await;
    for i in 0..3 {
        let up = upload(
            g.addr,
            &format!("u{i}"),
            &format!("DEV{i}"),
            8 * 1024 * 1024,
        )
        .await;
        let status = up.text.lines().next().unwrap_or_default().to_string();
        assert!(
            status.is_empty()
                || status.starts_with("HTTP/1.1 502")
                || status.starts_with("HTTP/1.1 413"),
            "device {i} got {status:?}"
        );
    }
    let h = g.gw.health.get(&server);
    assert!(h.is_live(false), "a device's uploads made the server dead");
}

/// A server that answers early and then stops reading the body without closing (the upload
/// fills the socket buffers and stalls): once the socket timeout says the server no longer reads,
/// the device gets the server's own answer (413 with its body), not a 502, and the connection
/// closes after it. The server stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_before_reading_the_body_gets_its_answer_to_the_device() {
    let (addr, _conns, _task) = raw_backend(|mut s: TcpStream| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nX-From: server\r\n\r\ntoo large")
            .await;
        // Neither reads nor closes: the gateway's writes stall.
        tokio::time::sleep(Duration::from_secs(20)).await;
    })
    .await;
    let server = addr_of(addr);
    let mut rt = runtime(std::slice::from_ref(&server));
    rt.timeouts.socket_read_write = Duration::from_millis(400);
    let g = start(rt).await;
    // Larger than what loopback socket buffers on both hops can absorb.
    let body_len: usize = 64 * 1024 * 1024;
    let t0 = Instant::now();
    let Upload { text, closed, sent } = upload(g.addr, "u", "DEV1", body_len).await;
    assert!(closed, "the device connection was not closed; got {text:?}");
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "device got {:?} after {:?}",
        text.lines().next(),
        t0.elapsed()
    );
    assert!(
        text.to_ascii_lowercase().contains("x-from: server"),
        "{text}"
    );
    assert!(text.ends_with("too large"), "{text}");
    assert!(
        sent < body_len,
        "the whole body went through ({sent} bytes)"
    );
    assert!(g.gw.health.get(&server).is_live(false));
}

/// Tiny chunks from a device are batched towards the server, not one write (and one packet)
/// each; the decoded body is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_request_chunks_are_batched_towards_the_server() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
    let (addr, _conns, _task) = raw_backend(move |mut s: TcpStream| {
        let tx = tx.clone();
        async move {
            let mut reads = 0usize;
            let mut buf = vec![0u8; 65536];
            let mut all = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => {
                        reads += 1;
                        all.extend_from_slice(&buf[..n]);
                        if all.ends_with(b"0\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send((
                reads,
                all.windows(6).filter(|w| *w == b"1\r\nx\r\n").count(),
            ));
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let server = addr_of(addr);
    let g = start(runtime(&[server])).await;
    let mut d = TcpStream::connect(g.addr).await.unwrap();
    let mut wire = b"POST /Microsoft-Server-ActiveSync?Cmd=SendMail&User=u&DeviceId=DEV&DeviceType=iPhone HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let n = 2000;
    for _ in 0..n {
        wire.extend_from_slice(b"1\r\nx\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    d.write_all(&wire).await.unwrap();
    let (reads, ones) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    // Re-chunked by the gateway: the 2000 one-byte chunks arrive in few, larger chunks.
    assert!(
        reads < 50,
        "{n} one-byte chunks became {reads} reads at the server"
    );
    assert!(ones < n / 10, "chunks were passed one by one ({ones})");
}

/// The status line keeps the server's reason phrase, as nginx and HAProxy pass it: Exchange's
/// "449 Retry after sending a PROVISION command" is what admins look for in captures and logs.
#[tokio::test]
async fn the_servers_reason_phrase_reaches_the_device() {
    let be = scripted(|g: &Got| {
        if g.msg.body == b"provision" {
            send(
                b"HTTP/1.1 449 Retry after sending a PROVISION command\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            )
        } else {
            send(b"HTTP/1.1 200 Fine, thanks\r\nContent-Length: 2\r\n\r\nok".to_vec())
        }
    })
    .await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    let mut d = plain(gw.addr).await;
    d.send(&post("Sync", "D1", b"provision")).await;
    let r = d.response(false).await;
    assert!(
        r.head
            .starts_with("HTTP/1.1 449 Retry after sending a PROVISION command\r\n"),
        "{}",
        r.head
    );
    d.send(&post("Sync", "D1", b"other")).await;
    let r = d.response(false).await;
    assert!(
        r.head.starts_with("HTTP/1.1 200 Fine, thanks\r\n"),
        "{}",
        r.head
    );
    assert_eq!(r.body, b"ok");
}

/// Response bodies of every size class (copied behind the head, written uncopied behind it,
/// streamed) reach a device intact, also when it reads slowly and writes end part-way.
async fn bodies_of_every_size<S: AsyncRead + AsyncWrite + Unpin>(d: &mut Wire<S>, what: &str) {
    for (i, n) in [0usize, 1023, 1024, 4096, 15_000, 16_384, 3 << 20]
        .into_iter()
        .enumerate()
    {
        d.send(&post("Sync", "D1", format!("{n}").as_bytes())).await;
        if n > 1 << 20 {
            // The gateway's writes fill the socket and return short.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let r = d.response(false).await;
        assert_eq!(r.status, 200, "{what}: {}", r.head);
        assert_eq!(r.header("content-length"), Some(&*n.to_string()), "{what}");
        assert!(
            r.body == pattern(n, i % 3),
            "{what}: body of {n} bytes differs"
        );
    }
}

#[tokio::test]
async fn response_bodies_of_every_size_arrive_intact_plain_and_tls() {
    let be = scripted(|g: &Got| {
        let n: usize = std::str::from_utf8(&g.msg.body).unwrap().parse().unwrap();
        let seed = [0usize, 1023, 1024, 4096, 15_000, 16_384, 3 << 20]
            .iter()
            .position(|x| *x == n)
            .unwrap()
            % 3;
        send(ok("", &pattern(n, seed)))
    })
    .await;
    let dtls = device_tls();
    let mut rt = runtime(&[addr_of(be.addr)]);
    rt.device_tls = Some(dtls.server.clone());
    let gw = start(rt).await;
    bodies_of_every_size(&mut tls(gw.addr, &dtls.cert).await, "tls").await;
    let gw = start(runtime(&[addr_of(be.addr)])).await;
    bodies_of_every_size(&mut plain(gw.addr).await, "plain").await;
}
