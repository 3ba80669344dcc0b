//! The device side: one HTTP/1.1 connection, driven in one task from head to response and on to
//! the next keep-alive request.
//!
//! Stages per request: wait for bytes (no buffer held) → read and parse the head within the
//! device request timeout → read a small body whole, or hand the socket to a streaming body →
//! the request path ([`crate::proxy::handle`]), while watching for the device going away →
//! write the response (head and first body bytes in one write when they are ready together).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

pub use super::body::{DeviceBody, StreamBody};
use super::body::{Returned, StreamParts};
use super::buffers::{BUF_SIZE, Loan};
use super::framing::{BodyReader, Decoder, Framing, poll_once};
use super::head::{self, Out, RequestHead};
use super::socket::DeviceSocket;
use crate::error::{BodyDeadline, Error};
use crate::forward::RespBody;
use crate::proxy::{self, DeviceConn};
use crate::state::Gateway;

/// Request bodies up to this size are read whole before the request is handled (ActiveSync
/// commands are a few KiB); larger or chunked bodies stream.
pub const FULL_BODY_MAX: u64 = 64 * 1024;

/// Bytes a device may send ahead (pipelining) while its request is in flight.
const MAX_AHEAD: usize = 64 * 1024;

/// What the connection needs from the runtime current at accept time.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Idle keep-alive or connection open → complete request head.
    pub device_request: Duration,
    /// Complete head (or the `100 Continue`) → complete body, however steadily bytes arrive:
    /// `silence` alone lets a body trickled one byte per second hold its connection for ever.
    pub device_body: Duration,
    /// Longest silence while bytes are moving.
    pub silence: Duration,
    pub max_head: usize,
    pub max_body: u64,
}

/// Serves HTTP/1.1 requests on one device connection until it closes, idles out, or `stop`
/// turns true (then in-flight work finishes and the connection closes).
///
/// `read`: bytes already read from the device (the listener's protocol sniff), the start of the
/// first head. `first`: when the first head must be complete, one deadline from accept (the
/// TLS handshake or the sniff used part of it); each later head gets the device request
/// timeout from when the connection goes idle.
pub async fn serve(
    gw: Arc<Gateway>,
    conn: Arc<DeviceConn>,
    io: DeviceSocket,
    read: Option<Loan>,
    mut stop: watch::Receiver<bool>,
    s: Settings,
    first: Instant,
) {
    let mut carry: Option<Loan> = read.filter(|b| !b.is_empty());
    let mut first = Some(first);
    // Empty only while a streaming request body has the socket.
    let mut slot = Some(io);
    // The device may still be sending a body nobody read (the server answered early).
    let mut unread = false;
    // Each stage that is over before the request path answers is boxed, so what a parked
    // request holds is this loop's few locals and the boxed request path.
    while let Some(io) = slot.as_mut() {
        let deadline = first
            .take()
            .unwrap_or_else(|| Instant::now() + s.device_request);
        let next = match next_head(io, &mut carry, &mut stop, &s, deadline).await {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                Box::pin(refuse(io, &conn, &e, &s)).await;
                break;
            }
        };
        let Some((req, meta)) =
            Box::pin(read_request(&gw, &conn, &mut slot, &mut carry, next, &s)).await
        else {
            break;
        };
        let handling = Box::pin(proxy::handle(gw.clone(), conn.clone(), Box::new(req)));
        let (resp, close) = match meta.back {
            // Rare (large or chunked request bodies): boxed, so it does not grow every
            // connection's future.
            Some(rx) => {
                let after = after_streamed_body(&conn, handling, rx, &mut slot, &mut carry, &s);
                match Box::pin(after).await {
                    Some((resp, incomplete)) => {
                        unread = incomplete;
                        (resp, incomplete || meta.close)
                    }
                    None => return,
                }
            }
            None => {
                let Some(io) = slot.as_mut() else { return };
                tokio::select! {
                    r = handling => (Box::new(r), meta.close),
                    () = device_gone(io, &mut carry) => {
                        tracing::debug!(peer = %conn.peer, "device closed its connection during a request");
                        return;
                    }
                }
            }
        };
        let keep = !close && !*stop.borrow();
        let Some(io) = slot.as_mut() else { return };
        let resp = match *resp {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let writing = Box::pin(write_response(
            io,
            resp,
            meta.is_head,
            meta.http10,
            keep,
            &s,
        ));
        match writing.await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "writing the response to the device failed");
                return;
            }
        }
    }
    if let Some(io) = slot.as_mut() {
        let shut = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
        if unread && shut.is_ok() {
            linger(io).await;
        }
    }
}

type Handled = Box<Result<Response<RespBody>, std::convert::Infallible>>;

/// A request whose body streamed: the socket comes back once the body has been read (or
/// dropped), usually before the server answers; while the request is still in flight (a parked
/// Ping) the device going away ends it, as for small bodies. `None`: close the connection;
/// the flag: the body was not read to its end (the connection closes after the response).
async fn after_streamed_body(
    conn: &DeviceConn,
    mut handling: std::pin::Pin<
        Box<
            impl std::future::Future<Output = Result<Response<RespBody>, std::convert::Infallible>>,
        >,
    >,
    mut rx: oneshot::Receiver<Returned>,
    slot: &mut Option<DeviceSocket>,
    carry: &mut Option<Loan>,
    s: &Settings,
) -> Option<(Handled, bool)> {
    let (answered, back) = tokio::select! {
        r = &mut handling => {
            let back = tokio::time::timeout(s.silence, &mut rx).await;
            (Some(r), back.ok().and_then(Result::ok))
        }
        back = &mut rx => (None, back.ok()),
    };
    let Some(r) = back else {
        tracing::debug!(peer = %conn.peer, "device body still in use: closing");
        return None;
    };
    *slot = Some(r.io);
    *carry = r.leftover;
    let close = !r.complete;
    if let Some(resp) = answered {
        return Some((Box::new(resp), close));
    }
    let io = slot.as_mut()?;
    tokio::select! {
        r = handling => Some((Box::new(r), close)),
        () = device_gone(io, carry) => {
            tracing::debug!(peer = %conn.peer, "device closed its connection during a request");
            None
        }
    }
}

/// What the connection needs to know about a request once it is handled.
struct Meta {
    is_head: bool,
    http10: bool,
    close: bool,
    /// A streaming body has the socket: it comes back here.
    back: Option<oneshot::Receiver<Returned>>,
}

/// The request after its head: its body read whole (small), or the socket handed to a
/// streaming body. `None`: the connection must close (refused, or the body failed).
async fn read_request(
    gw: &Arc<Gateway>,
    conn: &DeviceConn,
    slot: &mut Option<DeviceSocket>,
    carry: &mut Option<Loan>,
    (h, mut buf): (RequestHead, Loan),
    s: &Settings,
) -> Option<(Request<DeviceBody>, Meta)> {
    let io = slot.as_mut()?;
    let RequestHead {
        parts,
        len,
        framing,
        close,
        expect_continue,
    } = h;
    buf.consume(len);
    // The device waits for `100 Continue` before it sends its body (none of it is here; HTTP/1.0
    // has no interim responses). Such a body always streams: the 100 goes out when the request
    // path first asks for the body, after the access decision, never before it.
    let awaits_continue = expect_continue && parts.version == Version::HTTP_11 && buf.is_empty();
    let mut meta = Meta {
        is_head: parts.method == Method::HEAD,
        http10: parts.version == Version::HTTP_10,
        close,
        back: None,
    };
    let body = match framing {
        Framing::Length(n) if n > s.max_body => {
            let e = Error::BodyTooLarge { limit: s.max_body };
            Box::pin(refuse(io, conn, &e, s)).await;
            return None;
        }
        Framing::Empty => {
            *carry = Some(buf).filter(|b| !b.is_empty());
            DeviceBody::empty()
        }
        Framing::Length(n) if n <= FULL_BODY_MAX && !awaits_continue => {
            match read_full(io, &mut buf, n as usize, s).await {
                Ok(b) => {
                    *carry = Some(buf).filter(|b| !b.is_empty());
                    DeviceBody::Full(Some(b))
                }
                Err(e) => {
                    let e = Error::device_body(&e);
                    if let Error::DeviceBodyTimeout { .. } = e {
                        // Still being sent: answered (408), never handled, never forwarded.
                        tracing::info!(peer = %conn.peer, limit = ?s.device_body,
                            "device request body not complete within device_body_timeout_ms: refused (408)");
                        gw.metrics.device_refused("body_timeout");
                        drop(buf);
                        Box::pin(refuse(io, conn, &e, s)).await;
                    } else {
                        tracing::debug!(peer = %conn.peer, error = %e, "device request body failed");
                    }
                    return None;
                }
            }
        }
        f => {
            // Body bytes that came with the head are checked before the request goes anywhere:
            // a malformed chunk-size line among them gets 400, and no server sees the head. (A
            // later one cuts the request off mid-body: a server never gets it whole.)
            let dec = Decoder::new(f);
            if let Err(e) = dec.check(buf.bytes()) {
                let reason = format!("malformed chunked body: {e}");
                Box::pin(refuse(io, conn, &Error::BadRequest { reason }, s)).await;
                return None;
            }
            let io = slot.take()?;
            let streaming = StreamParts {
                reader: BodyReader::new(dec, Some(buf)),
                awaits_continue,
                limit: s.device_body,
                gw: gw.clone(),
                peer: conn.peer,
            };
            let (body, rx) = StreamBody::new(io, streaming);
            meta.back = Some(rx);
            DeviceBody::Stream(Box::new(body))
        }
    };
    Some((Request::from_parts(parts, body), meta))
}

/// Waits for and parses the next request head, complete by `deadline`. `None`: the connection
/// should close quietly (closed by the device, idle past the deadline, or draining while idle).
async fn next_head(
    io: &mut DeviceSocket,
    carry: &mut Option<Loan>,
    stop: &mut watch::Receiver<bool>,
    s: &Settings,
    deadline: Instant,
) -> Result<Option<(RequestHead, Loan)>, Error> {
    let mut buf = match carry.take() {
        Some(b) => b,
        None => {
            // Idle: no buffer while waiting.
            tokio::select! {
                biased;
                _ = stop.wait_for(|v| *v) => return Ok(None),
                r = tokio::time::timeout_at(deadline, io.ready_to_read()) => match r {
                    Ok(Ok(())) => {}
                    _ => return Ok(None),
                },
            }
            Loan::take()
        }
    };
    // Parsed again only when new bytes may end the head (contain a LF): a device sending one
    // byte at a time does not make every read re-scan the whole head.
    let mut scanned = 0;
    loop {
        if buf.bytes()[scanned.min(buf.len())..].contains(&b'\n')
            && let Some(h) = head::parse_request(buf.bytes(), s.max_head)?
        {
            return Ok(Some((h, buf)));
        }
        scanned = buf.len();
        // Incomplete and already at the limit (a read may bring more than asked for).
        if buf.len() >= s.max_head || !buf.room(2048, s.max_head.max(1024)) {
            return Err(Error::HeadTooLarge { limit: s.max_head });
        }
        let n = match tokio::time::timeout_at(deadline, io.read_buf(buf.vec())).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Ok(None),
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(Error::RequestHeadTimeout),
        };
        if n == 0 {
            return Ok(None);
        }
    }
}

/// Room made per read of a small body: the buffer grows with what arrives, so a device that
/// announces 64 KiB and sends one byte holds the loaned buffer it has, not 64 KiB more.
const BODY_STEP: usize = 4096;

/// Reads a body of `n` bytes (some may be in `buf` already) within the socket timeout per read
/// and the body timeout in all (a [`BodyDeadline`] error once that passes).
async fn read_full<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut Loan,
    n: usize,
    s: &Settings,
) -> io::Result<Bytes> {
    let deadline = Instant::now() + s.device_body;
    while buf.len() < n {
        buf.room(BODY_STEP.min(n - buf.len()), n);
        let quiet = Instant::now() + s.silence;
        match tokio::time::timeout_at(quiet.min(deadline), io.read_buf(buf.vec())).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) if deadline <= quiet => return Err(BodyDeadline(s.device_body).into_io()),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    let body = Bytes::copy_from_slice(&buf.bytes()[..n]);
    buf.consume(n);
    Ok(body)
}

/// Resolves when the device closes its connection (or it breaks) while its request is in
/// flight. Bytes it sends ahead are kept for the next request.
async fn device_gone(io: &mut DeviceSocket, carry: &mut Option<Loan>) {
    loop {
        if io.ready_to_read().await.is_err() {
            return;
        }
        let mut b = carry.take().unwrap_or_else(Loan::take);
        if !b.room(1024, MAX_AHEAD) {
            *carry = Some(b);
            return std::future::pending().await;
        }
        // A read that does not wait: readiness may be spurious, or (TLS) only part of a record.
        let got = {
            let read = std::pin::pin!(io.read_buf(b.vec()));
            poll_once(read).await
        };
        if matches!(got, Some(Ok(0)) | Some(Err(_))) {
            return;
        }
        if !b.is_empty() {
            *carry = Some(b);
        }
    }
}

/// Answers a request the connection itself refuses (malformed head, too large) and closes.
async fn refuse(io: &mut DeviceSocket, conn: &DeviceConn, e: &Error, s: &Settings) {
    tracing::debug!(peer = %conn.peer, error = %e, "device request refused");
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = e.status();
    let mut out = Vec::with_capacity(256);
    head::write_response(&mut out, &parts, Out::Length(0), true);
    let w = async {
        io.write_all(&out).await?;
        io.flush().await
    };
    let _ = tokio::time::timeout(s.silence, w).await;
    // Close our side, then let the device's remaining bytes drain (see `linger`).
    if tokio::time::timeout(Duration::from_secs(1), io.shutdown())
        .await
        .is_ok()
    {
        linger(io).await;
    }
}

/// After our side is shut down: read (and drop) what the device is still sending, for a
/// moment. Closing with unread bytes resets the connection, which can destroy the answer
/// before the device reads it (RFC 9112, 9.6).
async fn linger(io: &mut DeviceSocket) {
    let drain = async {
        let mut sink = vec![0u8; 4096];
        let mut left: usize = 256 * 1024;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Writes a response; `Ok(true)` when the connection may carry another request.
async fn write_response(
    io: &mut DeviceSocket,
    resp: Response<RespBody>,
    is_head: bool,
    http10: bool,
    keep: bool,
    s: &Settings,
) -> io::Result<bool> {
    let (parts, body) = resp.into_parts();
    let st = parts.status;
    let no_body = is_head
        || st.is_informational()
        || st == StatusCode::NO_CONTENT
        || st == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Out::None
    } else if let Some(n) = body.size_hint().exact() {
        Out::Length(n)
    } else if http10 {
        Out::UntilClose
    } else {
        Out::Chunked
    };
    let close = !keep || framing == Out::UntilClose;
    let mut out = Loan::take();
    // A large body frame waiting to go out right after `out`; nothing is added to `out` while
    // it waits.
    let mut tail: Option<Bytes> = None;
    head::write_response(out.vec(), &parts, framing, close);
    drop(parts);
    let mut body = std::pin::pin!(body);
    if framing != Out::None {
        let chunked = framing == Out::Chunked;
        let mut sent: u64 = 0;
        let mut ended = body.is_end_stream();
        while !ended {
            let mut next = std::pin::pin!(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)));
            let frame = match poll_once(next.as_mut()).await {
                Some(f) => f,
                None => {
                    // Nothing ready: send what is waiting before waiting for more.
                    if !out.is_empty() || tail.is_some() {
                        write_out(io, &mut out, &mut tail, s).await?;
                    }
                    next.await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed: closing the device connection");
                    if !out.is_empty() || tail.is_some() {
                        let _ = write_out(io, &mut out, &mut tail, s).await;
                    }
                    return Ok(false);
                }
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) if !d.is_empty() => d,
                    _ => {
                        ended = body.is_end_stream();
                        continue;
                    }
                },
            };
            sent += data.len() as u64;
            if let Out::Length(n) = framing
                && sent > n
            {
                tracing::debug!("response body longer than its length: closing");
                return Ok(false);
            }
            if tail.is_some() {
                write_out(io, &mut out, &mut tail, s).await?;
            }
            if chunked {
                out.vec()
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            }
            if !chunked && data.len() >= TAIL_MIN {
                // Goes out behind the head in the same write (one TLS record), uncopied.
                tail = Some(data);
            } else if out.len() + data.len() <= BUF_SIZE {
                out.vec().extend_from_slice(&data);
            } else {
                write_out(io, &mut out, &mut tail, s).await?;
                write_all(io, &data, &[], s).await?;
            }
            if chunked {
                out.vec().extend_from_slice(b"\r\n");
            }
            ended = body.is_end_stream();
        }
        if chunked {
            out.vec().extend_from_slice(b"0\r\n\r\n");
        }
        if let Out::Length(n) = framing
            && sent != n
        {
            let _ = write_out(io, &mut out, &mut tail, s).await;
            tracing::debug!(
                sent,
                expected = n,
                "response body shorter than its length: closing"
            );
            return Ok(false);
        }
    }
    super::socket::send_turn().await;
    write_out(io, &mut out, &mut tail, s).await?;
    match crate::timeout::within(s.silence, io.flush()).await {
        Ok(r) => r?,
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    }
    Ok(!close)
}

/// Body frames at least this long are not copied into the response buffer but written after
/// it in one vectored write.
const TAIL_MIN: usize = 1024;

/// Writes `out` and then `tail` (if any), together, and empties both.
async fn write_out(
    io: &mut DeviceSocket,
    out: &mut Loan,
    tail: &mut Option<Bytes>,
    s: &Settings,
) -> io::Result<()> {
    let t = tail.take();
    write_all(io, out.bytes(), t.as_deref().unwrap_or_default(), s).await?;
    out.vec().clear();
    Ok(())
}

/// `a` then `b`, in as few writes as the socket takes (one, normally), each within the
/// socket read/write timeout.
async fn write_all(io: &mut DeviceSocket, a: &[u8], b: &[u8], s: &Settings) -> io::Result<()> {
    match crate::timeout::within(s.silence, super::socket::write_pair(io, a, b, 0)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that announced a 64 KiB body and sent one byte holds a buffer for what arrived,
    /// not for what it announced (2,000 such connections would otherwise pin 128 MiB).
    #[tokio::test]
    async fn a_small_body_holds_a_buffer_for_what_arrived_not_what_it_announced() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut dev = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let mut io = DeviceSocket::Plain(l.accept().await.unwrap().0);
        dev.write_all(b"x").await.unwrap();
        let s = Settings {
            device_request: Duration::from_secs(10),
            device_body: Duration::from_millis(200),
            silence: Duration::from_millis(300),
            max_head: 65536,
            max_body: 1 << 20,
        };
        let mut buf = Loan::take();
        let n = FULL_BODY_MAX as usize;
        let r = tokio::time::timeout(Duration::from_secs(5), read_full(&mut io, &mut buf, n, &s))
            .await
            .expect("the body read gives up");
        let e = r.expect_err("one byte is not the body");
        assert_eq!(
            Error::device_body(&e).status(),
            StatusCode::REQUEST_TIMEOUT,
            "{e}"
        );
        assert_eq!(buf.len(), 1);
        let held = buf.vec().capacity();
        assert!(held <= BUF_SIZE, "{held} B held for 1 byte of body");
    }
}
