//! Request and response heads: parsed with `httparse` into `http` types whose header values and
//! URI are slices of one exact-size copy of the head (not of the read buffer, which goes back to
//! the pool at once), and written back out with each header name spelled as it arrived.

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::framing::Framing;
use crate::error::Error;

/// Most header lines in one head; more gets 431 (requests) or fails the exchange (responses).
pub const MAX_HEADERS: usize = 100;

/// The header names as they arrived: kept (as a request or response extension) so header
/// names go out spelled as they came in. Old devices and servers care about case. The spans
/// are recorded while parsing, so writing a head needs no scan of the raw bytes.
#[derive(Clone, Debug)]
pub struct RawHead {
    head: Bytes,
    /// `(offset, length)` of each header name in `head`, in order.
    names: Vec<(u32, u32)>,
    /// A response's status code and `(offset, length)` of its reason phrase in `head`.
    reason: Option<(u16, u32, u32)>,
}

impl RawHead {
    /// The first spelling of `name` in the head, if it is there.
    pub fn spelling(&self, name: &HeaderName) -> Option<&[u8]> {
        self.find(name.as_str().as_bytes(), &mut 0)
    }

    /// The reason phrase the server gave with `status`; `None` once the status was changed.
    fn reason(&self, status: StatusCode) -> Option<&[u8]> {
        let (code, at, len) = self.reason?;
        (code == status.as_u16()).then(|| &self.head[at as usize..(at + len) as usize])
    }

    fn name(&self, i: usize) -> &[u8] {
        let (at, len) = self.names[i];
        &self.head[at as usize..(at + len) as usize]
    }

    /// The spelling of `want` (lowercase). Headers are usually written in the order they
    /// arrived: the one after the last hit (`next`) is tried first.
    fn find(&self, want: &[u8], next: &mut usize) -> Option<&[u8]> {
        let matches = |i: usize| {
            self.names[i].1 as usize == want.len() && self.name(i).eq_ignore_ascii_case(want)
        };
        let i = if *next < self.names.len() && matches(*next) {
            *next
        } else {
            (0..self.names.len()).find(|i| matches(*i))?
        };
        *next = i + 1;
        Some(self.name(i))
    }
}

/// A parsed request head.
pub struct RequestHead {
    pub parts: http::request::Parts,
    /// Bytes of the buffer the head took.
    pub len: usize,
    pub framing: Framing,
    /// The device asked to close after this exchange (or speaks HTTP/1.0 without keep-alive).
    pub close: bool,
    /// `Expect: 100-continue`: the device waits for a go-ahead before its body.
    pub expect_continue: bool,
}

/// A parsed response head.
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub len: usize,
    pub framing: Framing,
    /// The connection cannot carry another request after this response.
    pub close: bool,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadRequest {
        reason: reason.into(),
    }
}

/// Parses a request head from the start of `buf`; `Ok(None)` while it is incomplete. A head
/// longer than `max_head` bytes is refused (431) however it arrived.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<RequestHead>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::HeadTooLarge { limit: max_head });
        }
        Err(e) => return Err(bad(format!("malformed request head: {e}"))),
    };
    // A head may arrive in one read larger than the limit: the limit is on the head, not reads.
    if len > max_head {
        return Err(Error::HeadTooLarge { limit: max_head });
    }
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let slice = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        raw.slice(at..at + s.len())
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method"))?;
    parts.uri = Uri::from_maybe_shared(slice(path.as_bytes()))
        .map_err(|_| bad("invalid request target"))?;
    // Origin-form, absolute-form, or `*` for OPTIONS (RFC 9112 3.2). The `http` crate also
    // takes a bare authority (`GET host:80`, authority-form, for CONNECT only), which the
    // gateway does not proxy and would pass on as `GET /`.
    let asterisk = path == "*" && parts.method == Method::OPTIONS;
    if parts.uri.scheme().is_none() && !path.starts_with('/') && !asterisk {
        return Err(bad("request target of the wrong form"));
    }
    parts.version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut names = Vec::with_capacity(req.headers.len());
    parts.headers = headers(req.headers, base, &mut names, &slice).map_err(bad)?;
    let framing = request_framing(&parts.headers, parts.version)?;
    let close = wants_close(&parts.headers, parts.version);
    let expect_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    parts.extensions.insert(RawHead {
        head: raw,
        names,
        reason: None,
    });
    Ok(Some(RequestHead {
        parts,
        len,
        framing,
        close,
        expect_continue,
    }))
}

/// Parses a response head from the start of `buf`; `Ok(None)` while it is incomplete.
/// `head_request`: the request was HEAD (no body follows whatever the headers say).
pub fn parse_response(buf: &[u8], head_request: bool) -> io::Result<Option<ResponseHead>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("malformed response head: {e}"))),
    };
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let slice = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        raw.slice(at..at + s.len())
    };
    let (Some(code), Some(minor)) = (resp.code, resp.version) else {
        return Err(invalid("incomplete status line".into()));
    };
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code}")))?;
    parts.version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut names = Vec::with_capacity(resp.headers.len());
    parts.headers = headers(resp.headers, base, &mut names, &slice).map_err(invalid)?;
    let framing = response_framing(&parts.headers, parts.status, head_request)
        .map_err(|e| invalid(e.to_string()))?;
    let close = framing == Framing::Close || wants_close(&parts.headers, parts.version);
    // httparse has checked the phrase's bytes (tab, space, visible ASCII, obs-text).
    // An empty phrase may not point into `buf`.
    let reason = resp
        .reason
        .filter(|r| !r.is_empty())
        .map(|r| (code, (r.as_ptr() as usize - base) as u32, r.len() as u32));
    parts.extensions.insert(RawHead {
        head: raw,
        names,
        reason,
    });
    Ok(Some(ResponseHead {
        parts,
        len,
        framing,
        close,
    }))
}

/// The header map of a head, and (into `names`) where each name sits in the head, `base` being
/// the address of the head's first byte.
fn headers(
    parsed: &[httparse::Header<'_>],
    base: usize,
    names: &mut Vec<(u32, u32)>,
    slice: &dyn Fn(&[u8]) -> Bytes,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        names.push((
            (h.name.as_ptr() as usize - base) as u32,
            h.name.len() as u32,
        ));
        let name = match known_name(h.name.as_bytes()) {
            Some(n) => n,
            None => HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("invalid header name {:?}", clip(h.name)))?,
        };
        let value = HeaderValue::from_maybe_shared(slice(h.value))
            .map_err(|_| format!("invalid value of header {}", clip(h.name)))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Names every ActiveSync exchange carries that the `http` crate does not know: matched here so
/// they are not copied into a fresh allocation per request (standard names never are).
static KNOWN: [HeaderName; 14] = [
    HeaderName::from_static("ms-asprotocolversion"),
    HeaderName::from_static("x-ms-policykey"),
    HeaderName::from_static("ms-asacceptmultipart"),
    HeaderName::from_static("ms-asprotocolversions"),
    HeaderName::from_static("ms-asprotocolcommands"),
    HeaderName::from_static("ms-server-activesync"),
    HeaderName::from_static("x-ms-location"),
    HeaderName::from_static("x-ms-rp"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-content-type-options"),
    HeaderName::from_static("x-feserver"),
];

fn known_name(raw: &[u8]) -> Option<HeaderName> {
    KNOWN
        .iter()
        .find(|k| k.as_str().len() == raw.len() && k.as_str().as_bytes().eq_ignore_ascii_case(raw))
        .cloned()
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Whether a `Connection`-style header lists `token`.
fn lists(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn wants_close(h: &HeaderMap, v: Version) -> bool {
    lists(h, "close") || (v == Version::HTTP_10 && !lists(h, "keep-alive"))
}

/// The one `Content-Length` all values agree on (`Ok(None)` when absent).
fn content_length(h: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length");
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("invalid Content-Length")?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length values");
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether the last transfer coding is `chunked` (`None` without `Transfer-Encoding`).
fn chunked_last(h: &HeaderMap) -> Option<bool> {
    let mut last: Option<&[u8]> = None;
    for v in h.get_all(header::TRANSFER_ENCODING) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if !part.is_empty() {
                last = Some(part);
            }
        }
    }
    if !h.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    Some(last.is_some_and(|l| l.eq_ignore_ascii_case(b"chunked")))
}

/// Request body framing (RFC 9112 6.3). Anything ambiguous is refused: a request a server could
/// frame differently from the gateway is how requests are smuggled.
fn request_framing(h: &HeaderMap, v: Version) -> Result<Framing, Error> {
    // Only `chunked`, once: other codings would reach the server decoded by nobody, and
    // `chunked` twice (in one list or on two lines) is a body a server may dechunk once, twice
    // or refuse (RFC 9112 6.1 forbids it).
    let mut chunked = 0;
    for coding in h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
    {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(bad("Transfer-Encoding other than chunked"));
        }
        chunked += 1;
    }
    if chunked > 1 {
        return Err(bad("chunked applied more than once"));
    }
    match chunked_last(h) {
        Some(_) if v == Version::HTTP_10 => Err(bad("Transfer-Encoding in an HTTP/1.0 request")),
        Some(_) if h.contains_key(header::CONTENT_LENGTH) => {
            Err(bad("both Transfer-Encoding and Content-Length"))
        }
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Err(bad("Transfer-Encoding other than chunked")),
        None => match content_length(h).map_err(bad)? {
            Some(0) | None => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
        },
    }
}

fn response_framing(h: &HeaderMap, s: StatusCode, head_request: bool) -> Result<Framing, String> {
    if head_request
        || s.is_informational()
        || s == StatusCode::NO_CONTENT
        || s == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    match chunked_last(h) {
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Ok(Framing::Close),
        None => match content_length(h)? {
            Some(0) => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
            None => Ok(Framing::Close),
        },
    }
}

/// Writes `name: value` lines for every header except the framing ones (written by the caller),
/// each name spelled as in `raw` when it came from there, else in Title-Case.
fn write_headers(out: &mut Vec<u8>, h: &HeaderMap, raw: Option<&RawHead>) {
    let mut next = 0;
    for (name, value) in h {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        match raw.and_then(|r| r.find(name.as_str().as_bytes(), &mut next)) {
            Some(n) => out.extend_from_slice(n),
            None => title_case(out, name.as_str()),
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn title_case(out: &mut Vec<u8>, name: &str) {
    let mut up = true;
    for b in name.bytes() {
        out.push(if up { b.to_ascii_uppercase() } else { b });
        up = b == b'-';
    }
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A request head for a server: origin-form target, HTTP/1.1, `Content-Length: len` (or chunked
/// when `len` is unknown; nothing for an empty body of a method that carries none).
pub fn write_request<B>(out: &mut Vec<u8>, req: &http::Request<B>, len: Option<u64>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    // An empty path (absolute-form `http://host?q`, authority-form) is sent as `/` (RFC 9112
    // 3.2.1): `GET ?q` is no request target, and a server may read it any way it likes.
    // (`PathAndQuery::path` says `/` for an empty path, so the text is looked at.)
    let pq = req.uri().path_and_query().map_or("", |p| p.as_str());
    if !pq.starts_with('/') && pq != "*" {
        out.push(b'/');
    }
    out.extend_from_slice(pq.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(out, req.headers(), req.extensions().get::<RawHead>());
    match len {
        Some(0)
            if !req.headers().contains_key(header::CONTENT_LENGTH)
                && matches!(
                    *req.method(),
                    Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
                ) => {}
        Some(n) => write_length(out, n),
        None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is framed to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// No body (HEAD, 1xx, 204, 304): headers only, `Content-Length` kept as the server sent it.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 device and a body of unknown length: ends with the connection.
    UntilClose,
}

/// A response head for a device. The status line keeps the server's reason phrase (as nginx
/// and HAProxy pass it): Exchange's "449 Retry after sending a PROVISION command" is what
/// admins search logs and packet captures for.
pub fn write_response(out: &mut Vec<u8>, parts: &http::response::Parts, framing: Out, close: bool) {
    let raw = parts.extensions.get::<RawHead>();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    match raw.and_then(|r| r.reason(parts.status)) {
        Some(reason) => out.extend_from_slice(reason),
        None => out.extend_from_slice(reason_of(parts.status).as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    write_headers(out, &parts.headers, raw);
    match framing {
        Out::None => {
            if let Some(v) = parts.headers.get(header::CONTENT_LENGTH) {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Out::Length(n) => write_length(out, n),
        Out::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Out::UntilClose => {}
    }
    if close || framing == Out::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"Date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase for a status the gateway answers itself (or whose phrase the server left
/// out): ActiveSync's own codes as MS-ASHTTP 2.2.2.1.1 and Exchange spell them, else the
/// standard one.
fn reason_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        449 => "Retry after sending a PROVISION command",
        451 => "Redirect",
        456 => "Blocked",
        457 => "Expired Password",
        _ => status.canonical_reason().unwrap_or("Unknown"),
    }
}

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// The current time as an HTTP date, formatted at most once per second per thread.
fn http_date(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

#[cfg(test)]
mod tests;
