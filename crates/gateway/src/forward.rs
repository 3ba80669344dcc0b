//! Forwarding: header rewriting (hop-by-hop removal, `X-Forwarded-*`, the server's `Host`) and
//! the two streaming bodies. [`UpBody`] carries the device's request to a server (with the body
//! size limit and the socket silence timer); [`DownBody`] carries a server's response to the
//! device and finishes its audit record; the server connection goes to its [`Home`] (shared
//! pool, or the device connection's pinned slot for NTLM/Negotiate) from the response body
//! itself ([`crate::h1::client::ServerBody`]) once the response is complete. Nothing is buffered
//! here except the bounded long-poll prefix the proxy read to find the heartbeat.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::audit::Exchange;
use crate::connect::IdleList;
use crate::error::Error;
use crate::h1::client::{ServerBody, ServerConn};
use crate::h1::server::DeviceBody;
use crate::health::ServerHealth;
use crate::model::{IpNet, ServerAddr, ServerPolicy};
use crate::proxy::DeviceConn;
use crate::timeout::IdleTimer;

/// Headers that describe one hop (RFC 9110 7.6.1) and never cross the gateway.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers: the fixed set, `Keep-Alive`, every `Proxy-*` and the names the
/// `Connection` header lists. `Authorization` / `WWW-Authenticate` are end-to-end and stay.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            if !is_end_to_end(&name) {
                h.remove(name);
            }
        }
    }
    // One scan of the names; removes (and allocates) only for what is present.
    let mut found: Vec<HeaderName> = Vec::new();
    for name in h.keys() {
        let s = name.as_str();
        // `Expect` is answered by the gateway (it reads the body before forwarding).
        if HOP_BY_HOP.contains(name)
            || s == "keep-alive"
            || s == "expect"
            || s.starts_with("proxy-")
        {
            found.push(name.clone());
        }
    }
    for name in found {
        h.remove(name);
    }
}

/// Headers a `Connection` header may not remove: what the gateway itself reads to decide (the
/// server must see the request the gateway judged) and what is end-to-end by definition.
fn is_end_to_end(name: &HeaderName) -> bool {
    let s = name.as_str();
    name == header::AUTHORIZATION
        || name == header::WWW_AUTHENTICATE
        || name == header::HOST
        || name == header::USER_AGENT
        || s.starts_with("content-")
        || s.starts_with("ms-as")
        || s.starts_with("x-ms-")
}

/// `Host` for a server: its name, with the port unless it is the scheme's default.
pub fn host_header(server: &ServerAddr, tls: bool) -> HeaderValue {
    let default = if tls { 443 } else { 80 };
    let s = match (server.host.contains(':'), server.port == default) {
        (true, true) => format!("[{}]", server.host),
        (true, false) => format!("[{}]:{}", server.host, server.port),
        (false, true) => server.host.clone(),
        (false, false) => format!("{}:{}", server.host, server.port),
    };
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Whether `ip` is one of the configured trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| contains(n, ip))
}

fn contains(net: &IpNet, ip: IpAddr) -> bool {
    match (net.addr, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), net.prefix),
        (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), net.prefix),
        (IpAddr::V4(n), IpAddr::V6(a)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| prefix_eq(&n.octets(), &a.octets(), net.prefix)),
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

fn prefix_eq(n: &[u8], a: &[u8], prefix: u8) -> bool {
    let mut bits = u32::from(prefix).min(8 * n.len() as u32);
    for (x, y) in n.iter().zip(a) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = (0xFFu16 << (8 - take)) as u8;
        if x & mask != y & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// Sets `X-Forwarded-For` / `X-Forwarded-Proto`. Incoming values are believed only from a
/// trusted proxy (then the peer is appended); otherwise they are replaced. Returns the client
/// address for the audit line: the address the trusted proxy saw, or the peer.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: IpAddr,
    peer_value: &HeaderValue,
    trusted: bool,
    tls: bool,
) -> IpAddr {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let mut client = peer;
    let prior: Option<String> = if trusted && h.contains_key(&XFF) {
        let joined = h
            .get_all(&XFF)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(last) = joined
            .rsplit(',')
            .next()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
        {
            client = last;
        }
        Some(joined)
    } else {
        None
    };
    match prior {
        Some(p) if !p.is_empty() => {
            if let Ok(v) = HeaderValue::try_from(format!("{p}, {peer}")) {
                h.insert(XFF, v);
            }
        }
        // The common case: no allocation, the peer's value is made once per connection.
        _ => {
            h.insert(XFF, peer_value.clone());
        }
    }
    if !(trusted && h.contains_key(&XFP)) {
        h.insert(
            XFP,
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
    }
    client
}

/// Connection-bound authentication (NTLM, Negotiate): the server ties the login to the TCP
/// connection, so the device connection must keep one server connection for itself.
pub fn is_connection_auth(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).is_some_and(|v| {
        let b = v.as_bytes();
        let scheme = b.split(|c| *c == b' ').next().unwrap_or_default();
        scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
    })
}

pin_project! {
    /// The device's request body on its way to a server: an optional already-read prefix (the
    /// long-poll bytes read to find the heartbeat), then the rest streamed with the size limit
    /// and the socket silence timer. Kept behind one pointer ([`UpBody`]) so the request
    /// envelope hyper's client queues per server connection stays small.
    struct UpInner {
        head: Option<Bytes>,
        rest: Option<DeviceBody>,
        #[pin]
        timer: IdleTimer,
        limit: u64,
        seen: u64,
        counter: Option<Arc<AtomicU64>>,
    }
}

/// The device's request body on its way to a server (see `UpInner`): one pointer wide.
pub struct UpBody(Pin<Box<UpInner>>);

impl UpBody {
    /// A complete body held in memory.
    pub fn full(b: Bytes) -> Self {
        Self::new(
            Some(b),
            None,
            u64::MAX,
            std::time::Duration::from_secs(3600),
            None,
        )
    }

    /// `head` (already read, counted) followed by the rest of `rest`.
    pub fn new(
        head: Option<Bytes>,
        rest: Option<DeviceBody>,
        limit: u64,
        silence: std::time::Duration,
        counter: Option<Arc<AtomicU64>>,
    ) -> Self {
        let seen = head.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(c) = &counter {
            c.fetch_add(seen, Ordering::Relaxed);
        }
        Self(Box::pin(UpInner {
            head,
            rest,
            timer: IdleTimer::new(silence),
            limit,
            seen,
            counter,
        }))
    }
}

impl UpBody {
    /// The whole body, when it is all in memory (written with the request head in one go).
    pub fn whole(&self) -> Option<Bytes> {
        if self.0.rest.is_some() {
            return None;
        }
        Some(self.0.head.clone().unwrap_or_default())
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Body for UpInner {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut this = self.project();
        if let Some(b) = this.head.take()
            && !b.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.seen += d.len() as u64;
                    if let Some(c) = this.counter {
                        c.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Error::BodyTooLarge { limit: *this.limit })));
                    }
                }
                this.timer.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.rest = None;
                Poll::Ready(Some(Err(Error::device_body(&e))))
            }
            Poll::Ready(None) => {
                *this.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll_expired(cx) {
                    let reason = format!("no request body bytes for {:?}", this.timer.timeout());
                    *this.rest = None;
                    return Poll::Ready(Some(Err(Error::DeviceBody { reason })));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |b| b.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(head),
            Some(r) => with_head(r.size_hint(), head),
        }
    }
}

/// `inner`'s size hint with `head` more bytes in front of it.
fn with_head(inner: SizeHint, head: u64) -> SizeHint {
    let mut s = SizeHint::new();
    s.set_lower(inner.lower() + head);
    if let Some(u) = inner.upper() {
        s.set_upper(u + head);
    }
    s
}

/// Where a server connection goes once its response is complete.
pub enum Home {
    /// The shared per-server pool (Basic / Bearer: each request carries its credentials).
    Shared(Arc<IdleList>),
    /// The device connection that authenticated on it (NTLM / Negotiate); never shared.
    Pinned {
        conn: Arc<DeviceConn>,
        server: Arc<ServerHealth>,
    },
}

impl Home {
    /// Returns a connection whose response ended cleanly.
    pub fn put(self, c: ServerConn) {
        match self {
            Home::Shared(list) => list.put(c),
            Home::Pinned { conn, server } => conn.pin(c, server),
        }
    }
}

/// The server a response came from (its connection goes home with the response body).
pub struct Reuse {
    pub server: Arc<ServerHealth>,
}

pin_project! {
    /// A server's response body on its way to the device, with the socket silence timer. On the
    /// last frame it finishes the audit record (the connection went home already); a failure
    /// mid-body counts against the server's health.
    pub struct DownBody {
        inner: ServerBody,
        #[pin]
        timer: IdleTimer,
        done: bool,
        // A frame was handed on and not asked for again yet.
        handed: bool,
        exchange: Option<Box<Exchange>>,
        server: Arc<ServerHealth>,
        policy: ServerPolicy,
        bytes: u64,
    }
}

impl DownBody {
    pub fn new(
        inner: ServerBody,
        silence: std::time::Duration,
        reuse: Reuse,
        exchange: Exchange,
        policy: ServerPolicy,
    ) -> Self {
        Self {
            handed: false,
            done: inner.is_end_stream(),
            inner,
            timer: IdleTimer::new(silence),
            server: reuse.server,
            exchange: Some(Box::new(exchange)),
            policy,
            bytes: 0,
        }
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut this = self.project();
        if *this.handed {
            // Back for more after handing a frame on: the time the device took to take it is
            // not the server's silence.
            *this.handed = false;
            this.timer.as_mut().touch();
        }
        match Pin::new(&mut *this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.handed = true;
                if let Some(d) = frame.data_ref() {
                    *this.bytes += d.len() as u64;
                    if let Some(ex) = this.exchange.as_mut() {
                        ex.bytes_out = *this.bytes;
                    }
                }
                this.timer.touch();
                // Writers stop polling once `is_end_stream` says so: finish here, not on `None`.
                if this.inner.is_end_stream() {
                    *this.done = true;
                    this.exchange.take();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(source))) => {
                let e = Error::Upstream {
                    server: this.server.addr.clone(),
                    source,
                };
                this.server.record_failure(this.policy, &e);
                *this.done = true;
                this.exchange.take();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.exchange.take();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !*this.done && this.timer.as_mut().poll_expired(cx) {
                    let e = Error::ResponseTimeout {
                        server: this.server.addr.clone(),
                        timeout: this.timer.timeout(),
                    };
                    this.server.record_failure(this.policy, &e);
                    *this.done = true;
                    this.exchange.take();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// What the device receives: a gateway-made answer or a server's streamed response.
    #[project = RespBodyProj]
    pub enum RespBody {
        Local { data: Option<Bytes> },
        Server { #[pin] body: DownBody },
        /// A server response whose first bytes were already read (attachment control read them
        /// to decide, then let the body pass): `head` first, then the rest of `body`.
        Prefixed { head: Option<Bytes>, #[pin] body: DownBody },
    }
}

impl RespBody {
    pub fn empty() -> Self {
        RespBody::Local { data: None }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.project() {
            RespBodyProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RespBodyProj::Server { body } => body.poll_frame(cx),
            RespBodyProj::Prefixed { head, body } => match head.take() {
                Some(h) => Poll::Ready(Some(Ok(Frame::data(h)))),
                None => body.poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Local { data } => data.is_none(),
            RespBody::Server { body } => body.is_end_stream(),
            RespBody::Prefixed { head, body } => head.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RespBody::Server { body } => body.size_hint(),
            RespBody::Prefixed { head, body } => with_head(
                body.size_hint(),
                head.as_ref().map_or(0, |b| b.len() as u64),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("x"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert("ms-asprotocolversion", HeaderValue::from_static("14.1"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["authorization", "ms-asprotocolversion"]);
    }

    #[test]
    fn connection_cannot_hide_what_the_gateway_judged() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("MS-ASProtocolVersion, X-MS-PolicyKey, User-Agent, X-Other"),
        );
        h.insert("ms-asprotocolversion", HeaderValue::from_static("14.1"));
        h.insert("x-ms-policykey", HeaderValue::from_static("1"));
        h.insert(header::USER_AGENT, HeaderValue::from_static("Apple-iPhone"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["ms-asprotocolversion", "user-agent", "x-ms-policykey"]
        );
    }

    #[test]
    fn forwarded() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let pv = HeaderValue::from_static("10.0.0.1");
        assert_eq!(set_forwarded(&mut h, peer, &pv, false, true), peer);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let client = set_forwarded(&mut h, peer, &pv, true, false);
        assert_eq!(client, "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn trusted_nets() {
        let net = IpNet {
            addr: "10.1.0.0".parse().unwrap(),
            prefix: 16,
        };
        assert!(is_trusted("10.1.200.3".parse().unwrap(), &[net]));
        assert!(!is_trusted("10.2.0.1".parse().unwrap(), &[net]));
        let host = IpNet {
            addr: "127.0.0.1".parse().unwrap(),
            prefix: 32,
        };
        assert!(is_trusted("127.0.0.1".parse().unwrap(), &[host]));
        assert!(!is_trusted("127.0.0.2".parse().unwrap(), &[host]));
    }

    #[test]
    fn conn_auth() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("NTLM TlRMTVNTUAAB"),
        );
        assert!(is_connection_auth(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        assert!(!is_connection_auth(&h));
    }
}
