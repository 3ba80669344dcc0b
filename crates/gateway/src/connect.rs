//! Connections to ActiveSync servers: TCP + TLS (SNI, host-name verification) within the connect
//! timeout, the HTTP/1.1 handshake, and a small per-server pool of idle connections.
//!
//! The pool never decides to resend a request: it hands out a connection, and the caller uses
//! `try_send_request`, which gives the request back only when hyper never started writing it.
//! Idle connections expire below the server's keep-alive (IIS: 120 s) so the pool rarely hands
//! out one the server is closing.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::h1::client::ServerConn;
use crate::h1::socket::Socket;
use crate::model::ServerAddr;

/// A server socket, plain or TLS.
pub type ServerStream = crate::h1::socket::ServerSocket;

/// TCP + TLS to `server` within `timeout`. TLS when `tls` is set: SNI and certificate name are the
/// server's host; a name mismatch is logged with the names the certificate was issued to.
pub async fn connect(
    server: &ServerAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<ServerStream> {
    // Boxed: the TLS handshake state (rustls' connection, ~1.2 KB) lives only while connecting,
    // not in every request future (a parked Ping keeps its future for the whole poll).
    match tokio::time::timeout(timeout, Box::pin(connect_inner(server, tls))).await {
        Ok(r) => r,
        Err(_) => Err(Error::ConnectTimeout {
            server: server.clone(),
            timeout,
        }),
    }
}

async fn connect_inner(
    server: &ServerAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<ServerStream> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|source| Error::Connect {
            server: server.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(cfg) = tls else {
        return Ok(Socket::Plain(tcp));
    };
    let name = ServerName::try_from(server.host.clone()).map_err(|_| Error::InvalidServerName {
        name: server.host.clone(),
    })?;
    let connector = tokio_rustls::TlsConnector::from(cfg.clone());
    match connector.connect(name, tcp).await {
        Ok(s) => Ok(Socket::Tls(Box::new(s))),
        Err(e) => {
            let reason = describe_tls_error(&e);
            tracing::warn!(server = %server, %reason, "server TLS failed");
            Err(Error::ServerTls {
                server: server.clone(),
                reason,
            })
        }
    }
}

/// A TLS failure in words an admin can act on: for a name mismatch, the names the certificate was
/// issued to.
fn describe_tls_error(e: &io::Error) -> String {
    use rustls::{CertificateError, Error as TlsError};
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) else {
        return e.to_string();
    };
    match inner {
        TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let names: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
            let issued_to = if names.is_empty() {
                "no names".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "certificate is not valid for {}: it was issued to {issued_to}",
                expected.to_str()
            )
        }
        other => other.to_string(),
    }
}

/// rustls reports names as `DnsName("mail.example")`: keep what is inside the quotes.
fn bare_name(n: &str) -> &str {
    match (n.find('"'), n.rfind('"')) {
        (Some(a), Some(b)) if b > a => &n[a + 1..b],
        _ => n,
    }
}

/// One idle server connection.
struct Idle {
    conn: ServerConn,
}

/// Idle connections of one server, one list per device worker (see [`crate::workers`]): a
/// connection is registered with the I/O driver of the worker that opened it, so it is reused
/// only there. Each lock is held only to push or pop.
#[derive(Default)]
pub struct IdleList {
    slots: [parking_lot::Mutex<Vec<Idle>>; SLOTS],
}

/// Lists per server: slot 0 for connections used outside the device workers (tests serving
/// inline), one per worker beyond (workers past the last slot share, which only costs wake-ups).
const SLOTS: usize = 17;

/// Most idle connections kept per server and worker; more are closed on return.
const MAX_IDLE_PER_SERVER: usize = 256;

fn slot() -> usize {
    crate::workers::current().map_or(0, |i| 1 + i % (SLOTS - 1))
}

impl IdleList {
    /// The most recently used live connection (LIFO keeps few sockets warm). A connection the
    /// server closed (or wrote to unasked) while idle is dropped here, before any request is put
    /// on it.
    pub fn take(&self, tls: bool, idle_timeout: Duration) -> Option<ServerConn> {
        let now = Instant::now();
        let list = &self.slots[slot()];
        loop {
            let idle = list.lock().pop()?;
            if idle.conn.is_tls() == tls
                && now.duration_since(idle.conn.since) < idle_timeout
                && idle.conn.idle_is_clean()
            {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a connection after its response completed.
    pub fn put(&self, conn: ServerConn) {
        let mut conns = self.slots[slot()].lock();
        if conns.len() >= MAX_IDLE_PER_SERVER {
            // Full: the oldest goes.
            conns.remove(0);
        }
        conns.push(Idle { conn });
    }

    /// Idle connections now, over all workers (for tests and metrics).
    pub fn len(&self) -> usize {
        self.slots.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Idle connections per server, keyed like health so they survive reloads.
#[derive(Default)]
pub struct Pool {
    map: ArcSwap<HashMap<ServerAddr, Arc<IdleList>, crate::metrics::ConfigKeyed>>,
    write: parking_lot::Mutex<()>,
}

impl Pool {
    /// The idle list of `server` (lock-free read; a new server is added once).
    pub fn idle(&self, server: &ServerAddr) -> Arc<IdleList> {
        if let Some(l) = self.map.load().get(server) {
            return l.clone();
        }
        let _g = self.write.lock();
        let cur = self.map.load_full();
        if let Some(l) = cur.get(server) {
            return l.clone();
        }
        let mut next = (*cur).clone();
        let l = Arc::new(IdleList::default());
        next.insert(server.clone(), l.clone());
        self.map.store(Arc::new(next));
        l
    }
}
