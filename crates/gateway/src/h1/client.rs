//! The server side: one HTTP/1.1 connection to an ActiveSync server, used by one request at a
//! time and driven by that request's own task (no background connection task, no channel).
//!
//! While a request waits for its response head (an hour for a parked Ping) it holds the socket
//! and nothing else: the request head was written and dropped, and no read buffer is taken until
//! the server's first bytes arrive.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::buffers::{BUF_SIZE, Loan};
use super::framing::{BodyReader, Decoder, Framing};
use super::head;
use super::socket::ServerSocket;
use crate::error::Error;
use crate::forward::{Home, UpBody};
use crate::model::ServerAddr;

/// Largest response head accepted from a server.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How long a server that stopped taking a request body gets to show the answer it sent (at
/// most the socket timeout).
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// A request body this small is written in the same system call as the head.
const COALESCE: usize = 64 * 1024;

/// A request on its way to a server. Boxed: it passes through several `async fn` stages, and
/// each would otherwise keep room for all of it (and copy it) for its whole life.
pub type Outbound = Box<Request<UpBody>>;

/// A request that failed, and the request itself when provably none of it was written (the
/// caller may then send it elsewhere).
pub type SendFailure = (Error, Option<Outbound>);

/// An HTTP/1.1 connection to a server.
pub struct ServerConn {
    io: ServerSocket,
    /// When it last finished an exchange (pool expiry).
    pub since: Instant,
}

impl ServerConn {
    pub fn new(io: ServerSocket) -> Self {
        Self {
            io,
            since: Instant::now(),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.io.is_tls()
    }

    /// False when the server closed the idle connection (or sent something unasked).
    pub fn idle_is_clean(&self) -> bool {
        self.io.idle_is_clean()
    }

    /// [`ServerConn::write`] then [`Sent::response`].
    pub async fn send(
        self,
        req: Outbound,
        rto: Duration,
        silence: Duration,
        server: &ServerAddr,
        home: Option<Home>,
    ) -> Result<Response<ServerBody>, SendFailure> {
        let sent = Box::pin(self.write(req, silence, server, home)).await?;
        sent.response(rto, server).await.map_err(|e| (e, None))
    }

    /// Writes `req` (head and body), each write waiting at most `silence`. What comes back is
    /// small on purpose: it is what a parked long poll holds while the server thinks.
    pub async fn write(
        mut self,
        req: Outbound,
        silence: Duration,
        server: &ServerAddr,
        home: Option<Home>,
    ) -> Result<Sent, SendFailure> {
        let upstream = |source: io::Error| Error::Upstream {
            server: server.clone(),
            source,
        };
        let len = req.body().size_hint().exact();
        let is_head = req.method() == Method::HEAD;
        let mut out = Loan::take();
        head::write_request(out.vec(), &req, len);
        // A body all in memory goes behind the head in the same (vectored) write, uncopied.
        let whole = req
            .body()
            .whole()
            .filter(|b| out.len() + b.len() <= COALESCE);
        let tail = whole.as_deref().unwrap_or_default();
        super::socket::send_turn().await;
        // The first write decides whether the request may go elsewhere: nothing written, nothing
        // sent.
        let both = [io::IoSlice::new(out.bytes()), io::IoSlice::new(tail)];
        let first = match crate::timeout::within(silence, self.io.write_vectored(&both)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(Ok(_)) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "server connection closed");
                return Err((
                    Error::Handshake {
                        server: server.clone(),
                        source: e,
                    },
                    Some(req),
                ));
            }
            Ok(Err(e)) => {
                return Err((
                    Error::Handshake {
                        server: server.clone(),
                        source: e,
                    },
                    Some(req),
                ));
            }
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "server does not read");
                return Err((upstream(e), None));
            }
        };
        // The head is written: only the body is still needed.
        let mut body = req.into_body();
        let write = async {
            let rest = super::socket::write_pair(&mut self.io, out.bytes(), tail, first);
            match crate::timeout::within(silence, rest).await {
                Ok(r) => r.map_err(Fail::Io)?,
                Err(_) => return Err(Fail::Io(stalled())),
            }
            drop(out);
            if whole.is_none() {
                stream_body(&mut self.io, &mut body, len.is_none(), silence).await?;
            }
            match crate::timeout::within(silence, self.io.flush()).await {
                Ok(r) => r.map_err(Fail::Io),
                Err(_) => Err(Fail::Io(stalled())),
            }
        };
        match write.await {
            Ok(()) => {}
            // The device's body failing (too large, stalled) is the device's fault.
            Err(Fail::Body(e)) => return Err((e, None)),
            // Part of the request went out and the server stopped reading: most often a server
            // refusing an upload (413 or 401 before the body, then close). Its answer, if it
            // sent one, goes to the device as nginx and HAProxy pass it; the connection is not
            // reused (the request was cut). Not a health failure either way (see the error).
            Err(Fail::Io(source)) => {
                drop(body);
                let grace = silence.min(EARLY_ANSWER_WAIT);
                return match tokio::time::timeout(grace, self.read_head(is_head)).await {
                    Ok(Ok(answer)) => {
                        tracing::debug!(%server, error = %source, status = answer.0.parts.status.as_u16(),
                            "server answered before taking the whole request body");
                        Ok(Sent {
                            conn: self,
                            is_head,
                            home: None,
                            early: Some(Box::new(answer)),
                        })
                    }
                    _ => Err((
                        Error::UploadRefused {
                            server: server.clone(),
                            source,
                        },
                        None,
                    )),
                };
            }
        }
        drop(body);
        Ok(Sent {
            conn: self,
            is_head,
            home,
            early: None,
        })
    }

    fn give_back(mut self, home: Option<Home>) {
        if let Some(h) = home {
            self.since = Instant::now();
            h.put(self);
        }
    }
}

/// A request written to a server, its response not read yet.
pub struct Sent {
    conn: ServerConn,
    is_head: bool,
    home: Option<Home>,
    /// A response head the server sent before it took the whole request body (boxed: parked
    /// requests hold a `Sent`).
    early: Option<Box<(head::ResponseHead, Loan)>>,
}

impl Sent {
    /// Waits up to `rto` for the response head (holding no buffer until bytes arrive). The body
    /// streams from the connection and returns it to its home when it ends cleanly.
    pub async fn response(
        self,
        rto: Duration,
        server: &ServerAddr,
    ) -> Result<Response<ServerBody>, Error> {
        let Sent {
            conn: mut this,
            is_head,
            home,
            early,
        } = self;
        let read = match early {
            Some(answer) => Ok(Ok(*answer)),
            None => tokio::time::timeout(rto, this.read_head(is_head)).await,
        };
        let (h, mut buf) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(source)) => {
                return Err(Error::Upstream {
                    server: server.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(Error::ResponseTimeout {
                    server: server.clone(),
                    timeout: rto,
                });
            }
        };
        buf.consume(h.len);
        let body = match h.framing {
            Framing::Empty => {
                if buf.is_empty() && !h.close {
                    this.give_back(home);
                }
                ServerBody::full(None)
            }
            Framing::Length(n) if buf.len() as u64 >= n => {
                let n = n as usize;
                if buf.len() == n && !h.close {
                    this.give_back(home);
                }
                // The body is written to the device and dropped at once: lend it the buffer
                // instead of copying it.
                ServerBody::full(Some(buf.into_bytes(n)))
            }
            f => ServerBody(Kind::Stream(Box::new(Streaming {
                conn: Some(this),
                reader: BodyReader::new(Decoder::new(f), Some(buf)),
                home,
                close: h.close,
            }))),
        };
        Ok(Response::from_parts(h.parts, body))
    }
}

impl ServerConn {
    /// Waits for the response head, taking a buffer only once bytes arrive; skips interim (1xx)
    /// responses.
    async fn read_head(&mut self, is_head: bool) -> io::Result<(head::ResponseHead, Loan)> {
        let mut carried: Option<Loan> = None;
        loop {
            let mut buf = match carried.take() {
                Some(b) => b,
                None => {
                    self.io.ready_to_read().await?;
                    Loan::take()
                }
            };
            loop {
                if !buf.is_empty()
                    && let Some(h) = head::parse_response(buf.bytes(), is_head)?
                {
                    if h.parts.status.is_informational() {
                        if h.parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "server switched protocols",
                            ));
                        }
                        buf.consume(h.len);
                        break;
                    }
                    return Ok((h, buf));
                }
                if !buf.room(2048, MAX_RESPONSE_HEAD.max(BUF_SIZE)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response head too large",
                    ));
                }
                if self.io.read_buf(buf.vec()).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection before responding",
                    ));
                }
            }
            if !buf.is_empty() {
                carried = Some(buf);
            }
        }
    }
}

/// Why writing a request stopped: the server side, or the device's body.
enum Fail {
    Io(io::Error),
    Body(Error),
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "server does not read")
}

/// Most bytes gathered from ready body frames before one write: tiny chunks from a device do not
/// become one system call (and one TLS record) each.
const BATCH: usize = 16 * 1024;

/// Streams the rest of a request body (chunked when its length is unknown), writing what is
/// ready together.
async fn stream_body(
    io: &mut ServerSocket,
    body: &mut UpBody,
    chunked: bool,
    silence: Duration,
) -> Result<(), Fail> {
    let mut out = Loan::take();
    let mut ended = false;
    while !ended {
        // Wait for one frame, then take whatever else is ready without waiting.
        let mut first = true;
        while out.len() < BATCH {
            let next = if first {
                first = false;
                Some(body.frame().await)
            } else {
                super::framing::poll_once(std::pin::pin!(body.frame())).await
            };
            let frame = match next {
                None => break,
                Some(None) => {
                    ended = true;
                    break;
                }
                Some(Some(Err(e))) => return Err(Fail::Body(e)),
                Some(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            out.vec().extend_from_slice(&data);
        }
        // What was gathered goes out as one chunk (re-chunked: a device's tiny chunks do not
        // become tiny chunks at the server).
        let mut wire: Vec<u8> = Vec::new();
        let bytes: &[u8] = if chunked {
            if !out.is_empty() {
                wire.reserve(out.len() + 24);
                wire.extend_from_slice(itoa_hex(out.len()).as_slice());
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(out.bytes());
                wire.extend_from_slice(b"\r\n");
            }
            if ended {
                wire.extend_from_slice(b"0\r\n\r\n");
            }
            &wire
        } else {
            out.bytes()
        };
        if !bytes.is_empty() {
            match crate::timeout::within(silence, io.write_all(bytes)).await {
                Ok(r) => r.map_err(Fail::Io)?,
                Err(_) => return Err(Fail::Io(stalled())),
            }
        }
        out.vec().clear();
    }
    Ok(())
}

fn itoa_hex(n: usize) -> Vec<u8> {
    format!("{n:x}").into_bytes()
}

/// A server's response body: already complete (it came with the head), or streaming from the
/// connection, which goes back to its home when the body ends cleanly.
pub struct ServerBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Stream(Box<Streaming>),
}

struct Streaming {
    conn: Option<ServerConn>,
    reader: BodyReader,
    home: Option<Home>,
    close: bool,
}

impl ServerBody {
    fn full(b: Option<Bytes>) -> Self {
        ServerBody(Kind::Full(b.filter(|b| !b.is_empty())))
    }
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let s = match &mut self.get_mut().0 {
            Kind::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => s,
        };
        let Some(conn) = s.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match s.reader.poll_data(&mut conn.io, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                if s.reader.is_done() {
                    s.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(None) => {
                s.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.conn = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.conn.is_none() || s.reader.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => match s.reader.dec.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

impl Streaming {
    /// The body ended: the connection goes home if nothing is left over and it may be reused.
    fn finish(&mut self) {
        let conn = self.conn.take();
        let clean = self.reader.take_leftover().is_none() && !self.close;
        if let (Some(c), true) = (conn, clean) {
            c.give_back(self.home.take());
        }
    }
}
