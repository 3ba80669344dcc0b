//! Body framing: how long a body is (RFC 9112 6.3), and a decoder that takes bytes as they arrive
//! (`Content-Length`, chunked, or until the connection closes) and says which of them are body.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::buffers::{BUF_SIZE, Loan};

/// How a body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the peer closes (responses only).
    Close,
}

/// Longest chunk-size line (digits, extensions) and total trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Where in a chunk-size line the decoder is (RFC 9112 7.1.1):
/// `chunk-size *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF`.
/// Anything outside that grammar is refused rather than skipped: a lenient reader that ends the
/// line at a bare LF, or at a control byte, frames the body differently, which is how a second
/// request is smuggled inside the first one's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Hex digits (at least one before anything else).
    Size,
    /// Whitespace after the size or a value: only `;` (or more whitespace) may follow.
    WsBeforeSemi,
    /// After `;`: whitespace, then the first byte of a name.
    Semi,
    /// Inside an extension name.
    Name,
    /// Whitespace after a name: `;` or `=` must follow.
    WsAfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    Eq,
    /// Inside a token value.
    Token,
    /// Inside a quoted string, and right after a backslash in one.
    Quoted,
    QuotedPair,
    /// Right after the closing quote.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    /// Reading a chunk-size line: the size so far, hex digits seen, where in the line, bytes.
    Size {
        size: u64,
        digits: u8,
        at: Line,
        line: usize,
    },
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section: bytes of the current line.
    Trailer(usize),
    TrailerLf(usize),
    UntilEof,
    Done,
}

/// Decodes one body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    trailers: usize,
}

impl State {
    const NEXT_CHUNK: State = State::Size {
        size: 0,
        digits: 0,
        at: Line::Size,
        line: 0,
    };
}

/// `tchar` (RFC 9110 5.6.2): the bytes of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// One byte of a chunk-size line after its digits (the digits are handled by the caller):
/// `Some(None)` at the CR ending the line, `Some(Some(next))` to go on, `None` when the byte
/// is not allowed there.
fn chunk_line(at: Line, b: u8) -> Option<Option<Line>> {
    let end = b == b'\r';
    let next = match at {
        Line::Size | Line::Closed if end => return Some(None),
        Line::Size | Line::Closed | Line::WsBeforeSemi if is_ws(b) => Line::WsBeforeSemi,
        Line::Size | Line::Closed | Line::WsBeforeSemi if b == b';' => Line::Semi,
        Line::Semi if is_ws(b) => Line::Semi,
        Line::Semi | Line::Name if is_tchar(b) => Line::Name,
        Line::Name | Line::Token if end => return Some(None),
        Line::Name | Line::WsAfterName | Line::Token if b == b';' => Line::Semi,
        Line::Name | Line::WsAfterName if is_ws(b) => Line::WsAfterName,
        Line::Name | Line::WsAfterName if b == b'=' => Line::Eq,
        Line::Eq if is_ws(b) => Line::Eq,
        Line::Eq if b == b'"' => Line::Quoted,
        Line::Eq | Line::Token if is_tchar(b) => Line::Token,
        Line::Token if is_ws(b) => Line::WsBeforeSemi,
        Line::Quoted if b == b'"' => Line::Closed,
        Line::Quoted if b == b'\\' => Line::QuotedPair,
        // qdtext: HTAB, SP, visible ASCII but `"` and `\` (handled above), obs-text.
        Line::Quoted if is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80 => Line::Quoted,
        // quoted-pair: HTAB, SP, VCHAR, obs-text.
        Line::QuotedPair if is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80 => Line::Quoted,
        _ => return None,
    };
    Some(Some(next))
}

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

impl Decoder {
    pub fn new(f: Framing) -> Self {
        let state = match f {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::NEXT_CHUNK,
            Framing::Close => State::UntilEof,
        };
        Self { state, trailers: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes still to come, when the framing says (a `Content-Length` body).
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes bytes from the front of `input`: returns how many were used and, if some of them
    /// are body, where they are. Call again with the unused rest; stops after a body range or
    /// at the end of the body (extra bytes are left unused).
    pub fn step(&mut self, input: &[u8]) -> io::Result<(usize, Option<Range<usize>>)> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok((i, None)),
                State::Length(rem) | State::Data(rem) => {
                    let take = (input.len() - i).min(usize::try_from(rem).unwrap_or(usize::MAX));
                    let r = i..i + take;
                    let left = rem - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), n) => State::Length(n),
                        (_, 0) => State::DataCr,
                        (_, n) => State::Data(n),
                    };
                    return Ok((r.end, Some(r)));
                }
                State::UntilEof => return Ok((input.len(), Some(i..input.len()))),
                State::Size {
                    size,
                    digits,
                    at,
                    line,
                } => {
                    let b = input[i];
                    i += 1;
                    if line >= MAX_CHUNK_LINE {
                        return Err(invalid("chunk-size line too long"));
                    }
                    if b == b'\r' && at == Line::Size && digits == 0 {
                        return Err(invalid("chunk without a size"));
                    }
                    if at == Line::Size
                        && let Some(d) = (b as char).to_digit(16)
                    {
                        if digits >= 15 {
                            return Err(invalid("chunk size too large"));
                        }
                        self.state = State::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                            at,
                            line: line + 1,
                        };
                        continue;
                    }
                    if at == Line::Size && digits == 0 {
                        return Err(invalid("invalid chunk size"));
                    }
                    self.state = match chunk_line(at, b) {
                        Some(None) => State::SizeLf(size),
                        Some(Some(at)) => State::Size {
                            size,
                            digits,
                            at,
                            line: line + 1,
                        },
                        None => return Err(invalid("invalid chunk-size line")),
                    };
                }
                State::SizeLf(size) => {
                    if input[i] != b'\n' {
                        return Err(invalid("chunk-size line without LF"));
                    }
                    i += 1;
                    self.state = if size == 0 {
                        State::Trailer(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::DataCr => {
                    if input[i] != b'\r' {
                        return Err(invalid("chunk data without CRLF"));
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if input[i] != b'\n' {
                        return Err(invalid("chunk data without CRLF"));
                    }
                    i += 1;
                    self.state = State::NEXT_CHUNK;
                }
                State::Trailer(line) => {
                    let b = input[i];
                    i += 1;
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(invalid("trailer section too large"));
                    }
                    // A field line holds no control byte but HTAB (RFC 9110 5.5): a bare LF
                    // would end the line early for a lenient reader.
                    self.state = if b == b'\r' {
                        State::TrailerLf(line)
                    } else if (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(invalid("control byte in a trailer line"));
                    } else {
                        State::Trailer(line + 1)
                    };
                }
                State::TrailerLf(line) => {
                    if input[i] != b'\n' {
                        return Err(invalid("trailer line without LF"));
                    }
                    i += 1;
                    if line == 0 {
                        self.state = State::Done;
                        return Ok((i, None));
                    }
                    self.state = State::Trailer(0);
                }
            }
        }
        Ok((i, None))
    }

    /// The first framing error in `bytes` (the next bytes of this body), found by running them
    /// through a copy of this decoder: the body bytes that came with a head can be checked
    /// before the request goes anywhere, so a malformed chunk-size line among them is refused
    /// before a server has seen the head. Nothing is taken, nothing allocated.
    pub fn check(&self, bytes: &[u8]) -> io::Result<()> {
        let mut probe = Decoder {
            state: self.state,
            trailers: self.trailers,
        };
        let mut at = 0;
        while at < bytes.len() && !probe.is_done() {
            let (used, _) = probe.step(&bytes[at..])?;
            if used == 0 {
                break;
            }
            at += used;
        }
        Ok(())
    }

    /// The input ended: fine only for a body that runs until the connection closes.
    pub fn eof(&mut self) -> io::Result<()> {
        match self.state {
            State::UntilEof | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the body ended",
            )),
        }
    }
}

/// A body being read from a socket: the decoder and the bytes read but not yet decoded (held in a
/// loaned buffer only while there are some).
pub struct BodyReader {
    pub dec: Decoder,
    pending: Option<Loan>,
}

impl BodyReader {
    /// `pending`: bytes already read past the head.
    pub fn new(dec: Decoder, pending: Option<Loan>) -> Self {
        let pending = pending.filter(|p| !p.is_empty());
        Self { dec, pending }
    }

    pub fn is_done(&self) -> bool {
        self.dec.is_done()
    }

    /// Bytes read past the end of the body (a pipelined request, or garbage after a response).
    pub fn take_leftover(&mut self) -> Option<Loan> {
        self.pending.take().filter(|p| !p.is_empty())
    }

    /// The next piece of body; `None` at its end.
    pub fn poll_data<IO: AsyncRead + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if let Some(buf) = self.pending.as_mut() {
                let (used, data) = match self.dec.step(buf.bytes()) {
                    Ok(x) => x,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                let out = data
                    .filter(|r| !r.is_empty())
                    .map(|r| Bytes::copy_from_slice(&buf.bytes()[r]));
                buf.consume(used);
                if buf.is_empty() {
                    // Nothing buffered: give the buffer back before waiting.
                    self.pending = None;
                }
                if let Some(b) = out {
                    return Poll::Ready(Some(Ok(b)));
                }
                if self.dec.is_done() {
                    return Poll::Ready(None);
                }
                if used > 0 && self.pending.is_some() {
                    continue;
                }
            }
            if self.dec.is_done() {
                return Poll::Ready(None);
            }
            let buf = self.pending.get_or_insert_with(Loan::take);
            if !buf.room(1024, BUF_SIZE.max(buf.len() + 1024)) {
                return Poll::Ready(Some(Err(invalid("body framing line too long"))));
            }
            let n = match ready!(pin!(io.read_buf(buf.vec())).poll(cx)) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if n == 0 {
                self.pending = None;
                return match self.dec.eof() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                };
            }
        }
    }
}

/// Reads a whole body into memory (tests and small helpers).
pub async fn read_to_end<IO: AsyncRead + Unpin>(
    reader: &mut BodyReader,
    io: &mut IO,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(b) = std::future::poll_fn(|cx| reader.poll_data(io, cx)).await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

/// Polls `f` once with the current task's context: `Some` when it was ready.
pub async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match f.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

#[cfg(test)]
mod tests;
