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
mod tests {
    use super::*;

    fn decode_all(f: Framing, wire: &[u8], split: usize) -> io::Result<(Vec<u8>, usize)> {
        let mut d = Decoder::new(f);
        let mut out = Vec::new();
        let mut at = 0;
        // Feed in pieces of `split` bytes, the way reads deliver them.
        let mut fed = 0;
        while !d.is_done() && at < wire.len() {
            fed = (fed + split).min(wire.len()).max(at + 1);
            let (used, data) = d.step(&wire[at..fed])?;
            if let Some(r) = data {
                out.extend_from_slice(&wire[at + r.start..at + r.end]);
            }
            at += used;
        }
        Ok((out, at))
    }

    #[test]
    fn chunked_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 1..wire.len() {
            let (body, used) = decode_all(Framing::Chunked, wire, split).unwrap();
            assert_eq!(body, b"hello0123456789", "split {split}");
            assert_eq!(&wire[used..], b"NEXT", "stops at the end of the body");
        }
    }

    /// `6` + `line` + CRLF + `hello!` + the last chunk, as one body.
    fn with_size_line(line: &[u8]) -> Vec<u8> {
        let mut wire = b"6".to_vec();
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\nhello!\r\n0\r\n\r\nNEXT");
        wire
    }

    /// Every extension RFC 9112 7.1.1 allows is accepted (and ignored), in any split.
    #[test]
    fn chunk_extensions_of_the_rfc_grammar_in_any_split() {
        for ext in [
            &b""[..],
            b";a",
            b";a=b",
            b";a;b=c;d=\"e\"",
            b" ; a = b",
            b"\t;\tname\t=\ttok!#$%&'*+-.^_`|~09AZaz",
            b";q=\"sp ace;=\\\"\\\\\ttab\"",
            b";q=\"\"",
            b";q=\"obs-text \x80\xff \\\xfe\"",
            b";q=\"x\" ;r",
        ] {
            let wire = with_size_line(ext);
            for split in 1..wire.len() {
                let (body, used) = decode_all(Framing::Chunked, &wire, split)
                    .unwrap_or_else(|e| panic!("{} split {split}: {e}", ext.escape_ascii()));
                assert_eq!(body, b"hello!", "{} split {split}", ext.escape_ascii());
                assert_eq!(&wire[used..], b"NEXT");
            }
        }
    }

    /// Anything else on a chunk-size line is refused, not skipped as an "extension": a server
    /// (or another proxy) reading the line differently frames the body differently.
    #[test]
    fn chunk_size_lines_outside_the_rfc_grammar_are_refused() {
        let mut accepted = Vec::new();
        for line in [
            &b";a\nb"[..],
            b";\x00",
            b" zz",
            b" 6",
            b"\t",
            b" ",
            b";",
            b"; ",
            b";a ",
            b";a b",
            b";=b",
            b";a=",
            b";a= ",
            b";a=b c",
            b";a=b;",
            b";a=\"x",
            b";a=\"x\"y",
            b";a=\"\x01\"",
            b";a=\"\n\"",
            b";a=\"\\\x7f\"",
            b";a=b\x7f",
            b";a\x00=b",
            b";a=b\nc",
            b";a@b",
            b";a=(b)",
            b"g",
            b"\n",
        ] {
            let wire = with_size_line(line);
            for split in 1..wire.len() {
                match decode_all(Framing::Chunked, &wire, split) {
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                    Ok(_) => {
                        accepted.push(line.escape_ascii().to_string());
                        break;
                    }
                }
            }
        }
        assert!(accepted.is_empty(), "accepted: {accepted:?}");
        // Whitespace before the size.
        assert!(decode_all(Framing::Chunked, b" 6\r\nhello!\r\n0\r\n\r\n", 1).is_err());
    }

    #[test]
    fn check_finds_errors_without_taking_anything() {
        let d = Decoder::new(Framing::Chunked);
        assert!(d.check(b"6;a\nb\r\n").is_err());
        assert!(d.check(b"5\r\nhel").is_ok(), "incomplete is not an error");
        assert!(
            d.check(b"5\r\nhello\r\n0\r\n\r\nGARBAGE\n").is_ok(),
            "stops at the end"
        );
        assert!(d.check(b"").is_ok());
        assert_eq!(
            d.state,
            State::NEXT_CHUNK,
            "the decoder itself is untouched"
        );
    }

    #[test]
    fn trailer_lines_with_control_bytes_are_refused() {
        let mut accepted = Vec::new();
        for trailer in [&b"X: a\nb"[..], b"X: \x00", b"\x7f"] {
            let mut wire = b"1\r\na\r\n0\r\n".to_vec();
            wire.extend_from_slice(trailer);
            wire.extend_from_slice(b"\r\n\r\n");
            if (1..wire.len()).any(|split| decode_all(Framing::Chunked, &wire, split).is_ok()) {
                accepted.push(trailer.escape_ascii().to_string());
            }
        }
        assert!(accepted.is_empty(), "accepted: {accepted:?}");
        let wire = b"1\r\na\r\n0\r\nX: \ttab\x80\r\n\r\n";
        assert_eq!(decode_all(Framing::Chunked, wire, 1).unwrap().0, b"a");
    }

    #[test]
    fn length_stops_at_the_end() {
        let (body, used) = decode_all(Framing::Length(3), b"abcdef", 2).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(used, 3);
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(decode_all(Framing::Chunked, wire, 3).is_err(), "{wire:?}");
        }
        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_LINE + 10, b'a');
        assert!(decode_all(Framing::Chunked, &long, 100).is_err());
    }

    #[test]
    fn eof_only_ends_close_delimited_bodies() {
        let mut d = Decoder::new(Framing::Close);
        assert!(d.eof().is_ok());
        assert!(d.is_done());
        let mut d = Decoder::new(Framing::Length(5));
        assert!(d.eof().is_err());
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.eof().is_err());
    }

    #[tokio::test]
    async fn reader_over_a_socket_pair() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let w = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [&b"4\r\nWi"[..], b"ki\r\n5\r\npedia\r\n", b"0\r\n\r\nrest"] {
                a.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            a
        });
        let mut r = BodyReader::new(Decoder::new(Framing::Chunked), None);
        let body = read_to_end(&mut r, &mut b).await.unwrap();
        assert_eq!(body, b"Wikipedia");
        let left = r
            .take_leftover()
            .map(|l| l.bytes().to_vec())
            .unwrap_or_default();
        assert!(b"rest".starts_with(&left), "left over: {left:?}");
        drop(w.await.unwrap());
    }
}
