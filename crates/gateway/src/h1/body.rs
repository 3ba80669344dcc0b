//! The request body a device sends, as the request path reads it: read whole before the request
//! was handled, streaming from the device's HTTP/1.1 connection, or an HTTP/2 stream.
//!
//! A streaming HTTP/1.1 body owns the `100 Continue` a device with `Expect: 100-continue` waits
//! for, so it goes out only when the request path asks for the body (after identity and the
//! access decision). Streaming bodies, HTTP/1.1 and HTTP/2, carry the overall body deadline
//! (`advanced.device_body_timeout_ms`): the silence timeout alone lets a body trickled a byte at
//! a time hold its connection for ever.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::buffers::Loan;
use super::framing::BodyReader;
use super::socket::DeviceSocket;
use crate::error::BodyDeadline;
use crate::state::Gateway;

/// The request body a device sent.
pub enum DeviceBody {
    /// Read whole before the request was handled (or none).
    Full(Option<Bytes>),
    /// Streaming from the device's connection.
    Stream(Box<StreamBody>),
    /// An HTTP/2 stream (hyper).
    H2(Box<H2Body>),
}

impl DeviceBody {
    pub fn empty() -> Self {
        DeviceBody::Full(None)
    }

    /// An HTTP/2 request body, due within `limit` from now (its headers have just arrived).
    pub fn h2(
        inner: hyper::body::Incoming,
        limit: Duration,
        gw: Arc<Gateway>,
        peer: SocketAddr,
    ) -> Self {
        let mut deadline = Deadline::new(limit, gw, peer);
        deadline.start();
        DeviceBody::H2(Box::new(H2Body { inner, deadline }))
    }
}

/// An HTTP/2 request body with its deadline.
pub struct H2Body {
    inner: hyper::body::Incoming,
    deadline: Deadline,
}

/// When a body must be complete, and the timer that wakes its reader then.
struct Deadline {
    /// `None` until the device may send (with `Expect: 100-continue`, once the 100 is out).
    at: Option<Instant>,
    limit: Duration,
    /// Armed the first time the body waits for bytes.
    timer: Option<Pin<Box<Sleep>>>,
    /// The refusal was logged and counted (once, however often the body is polled after it).
    refused: bool,
    /// For the refusal's log line and metric.
    gw: Arc<Gateway>,
    peer: SocketAddr,
}

impl Deadline {
    fn new(limit: Duration, gw: Arc<Gateway>, peer: SocketAddr) -> Self {
        Self {
            at: None,
            limit,
            timer: None,
            refused: false,
            gw,
            peer,
        }
    }

    fn start(&mut self) {
        self.at = Some(Instant::now() + self.limit);
    }

    /// Call when the body has to wait for bytes: the refusal (logged and counted) once the
    /// deadline has passed; otherwise the task is woken then.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let at = self.at?;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        if !self.refused {
            self.refused = true;
            tracing::info!(peer = %self.peer, limit = ?self.limit,
                "device request body not complete within device_body_timeout_ms: refused (408)");
            self.gw.metrics.device_refused("body_timeout");
        }
        Some(BodyDeadline(self.limit).into_io())
    }
}

/// The interim response owed to a device that sent `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A body streaming from the device connection; the socket goes back to the connection when the
/// body ends (or is dropped unread, then the connection closes after the response).
pub struct StreamBody {
    io: Option<DeviceSocket>,
    reader: BodyReader,
    back: Option<oneshot::Sender<Returned>>,
    /// The device waits for `100 Continue` before it sends the body: bytes of it written so far.
    /// Sent on the first poll, that is once the request path has decided it wants the body: a
    /// refused device never gets one, and its connection closes with the body unsent.
    interim: Option<usize>,
    deadline: Deadline,
}

/// The socket coming back from a streaming body.
pub(super) struct Returned {
    pub io: DeviceSocket,
    pub leftover: Option<Loan>,
    pub complete: bool,
}

/// The parts of a [`StreamBody`] that do not come from the connection.
pub(super) struct StreamParts {
    pub reader: BodyReader,
    /// The device waits for `100 Continue` before sending.
    pub awaits_continue: bool,
    /// `advanced.device_body_timeout_ms`.
    pub limit: Duration,
    pub gw: Arc<Gateway>,
    pub peer: SocketAddr,
}

impl StreamBody {
    /// Takes the connection's socket; it comes back on the receiver.
    pub(super) fn new(io: DeviceSocket, p: StreamParts) -> (Self, oneshot::Receiver<Returned>) {
        let (tx, rx) = oneshot::channel();
        let mut deadline = Deadline::new(p.limit, p.gw, p.peer);
        if !p.awaits_continue {
            // The device is sending already: its time runs from the end of the head.
            deadline.start();
        }
        let body = StreamBody {
            io: Some(io),
            reader: p.reader,
            back: Some(tx),
            interim: p.awaits_continue.then_some(0),
            deadline,
        };
        (body, rx)
    }

    fn give_back(&mut self) {
        if let (Some(io), Some(tx)) = (self.io.take(), self.back.take()) {
            let _ = tx.send(Returned {
                io,
                leftover: self.reader.take_leftover(),
                complete: self.reader.is_done(),
            });
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(sent) = self.interim.as_mut() {
            match poll_continue(io, sent, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {
                    self.interim = None;
                    self.deadline.start();
                }
                Poll::Ready(Err(e)) => {
                    self.give_back();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let r = self.reader.poll_data(io, cx);
        match &r {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.reader.is_done() => self.give_back(),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {
                if let Some(e) = self.deadline.poll_passed(cx) {
                    self.give_back();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        r.map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Writes the rest of [`CONTINUE`] (`sent` bytes of it are out) and flushes it. The caller's
/// silence timer bounds a device that does not read it.
fn poll_continue<W: AsyncWrite + Unpin>(
    io: &mut W,
    sent: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *sent < CONTINUE.len() {
        let n = std::task::ready!(Pin::new(&mut *io).poll_write(cx, &CONTINUE[*sent..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *sent += n;
    }
    Pin::new(io).poll_flush(cx)
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl Body for DeviceBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            DeviceBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DeviceBody::H2(b) => match Pin::new(&mut b.inner).poll_frame(cx) {
                Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(io::Error::other))),
                Poll::Pending => match b.deadline.poll_passed(cx) {
                    Some(e) => Poll::Ready(Some(Err(e))),
                    None => Poll::Pending,
                },
            },
            DeviceBody::Stream(s) => s.poll_data(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DeviceBody::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            DeviceBody::H2(b) => b.inner.is_end_stream(),
            DeviceBody::Stream(s) => s.io.is_none() || s.reader.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DeviceBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            DeviceBody::H2(b) => b.inner.size_hint(),
            DeviceBody::Stream(s) => match s.reader.dec.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes one byte per write, and is not ready every other time.
    #[derive(Default)]
    struct OneByte {
        got: Vec<u8>,
        ready: bool,
        flushed: bool,
    }

    impl AsyncWrite for OneByte {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let ready = self.ready;
            self.ready = !ready;
            if !ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.got.push(b[0]);
            Poll::Ready(Ok(1))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushed = true;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A socket that takes the interim response a byte at a time, between waits, still gets all
    /// of it exactly once, then a flush.
    #[tokio::test]
    async fn the_100_continue_goes_out_whole_through_partial_writes() {
        let mut w = OneByte::default();
        let mut sent = 0;
        std::future::poll_fn(|cx| poll_continue(&mut w, &mut sent, cx))
            .await
            .unwrap();
        assert_eq!(w.got, CONTINUE);
        assert_eq!(sent, CONTINUE.len());
        assert!(w.flushed);
    }
}
