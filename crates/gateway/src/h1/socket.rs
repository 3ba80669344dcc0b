//! A connection's socket, plain or TLS, with the one thing hyper could not give us: waiting for
//! the next bytes without holding a buffer (readiness of the TCP socket, unless TLS already has
//! plaintext decrypted and waiting).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Lets every other connection that is ready on this thread take its turn before this one
/// writes a request to a server or a response to a device.
///
/// A write wakes the peer that reads it (the server, or the device's client). If each connection
/// writes as soon as it has parsed its request, a peer on the other core wakes for one message,
/// handles it and sleeps again, once per request. If the writes of one batch of ready
/// connections go out together, at the end of the batch, the peer wakes once for the batch.
/// nginx and HAProxy get the same effect from their event loops: they read and parse every
/// ready connection before they send.
///
/// Measured on the device-TLS benchmark (docs/benchmarks.md, fifth pass): context switches per
/// request fell from about 0.5 to 0.33 in the gateway and to 0.3 in the backend, and the CPU per
/// request of the gateway, the backend and the load generator all fell with them.
///
/// Under light load this costs one extra zero-timeout poll of the I/O driver per write.
pub async fn send_turn() {
    tokio::task::yield_now().await;
}

/// Writes `a` then `b`, the first `done` bytes of the two already written, in as few writes as
/// the socket takes (one vectored write, normally: one system call, or one TLS record, for a head
/// and the body behind it, without copying the body next to the head).
pub async fn write_pair<W: AsyncWrite + Unpin>(
    io: &mut W,
    a: &[u8],
    b: &[u8],
    done: usize,
) -> io::Result<()> {
    let skip_a = done.min(a.len());
    let (mut a, mut b) = (&a[skip_a..], &b[(done - skip_a).min(b.len())..]);
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            io.write(b).await?
        } else if b.is_empty() {
            io.write(a).await?
        } else {
            io.write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// What a TLS stream must tell us about itself.
pub trait TlsSocket: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
    /// Decrypted bytes are waiting inside the TLS layer (no TCP readiness will announce them).
    fn plaintext_buffered(&self) -> bool;
}

impl TlsSocket for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn plaintext_buffered(&self) -> bool {
        !self.get_ref().1.wants_read()
    }
}

impl TlsSocket for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn plaintext_buffered(&self) -> bool {
        !self.get_ref().1.wants_read()
    }
}

/// A plain or TLS socket (the TLS state boxed: it is large and only TLS connections need it).
pub enum Socket<S> {
    Plain(TcpStream),
    Tls(Box<S>),
}

impl<S: TlsSocket> Socket<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(s) => s,
            Socket::Tls(s) => s.tcp(),
        }
    }

    /// Resolves when a read would make progress (bytes, EOF or an error), holding no buffer.
    pub async fn ready_to_read(&self) -> io::Result<()> {
        if let Socket::Tls(s) = self
            && s.plaintext_buffered()
        {
            return Ok(());
        }
        self.tcp().readable().await
    }

    /// For an idle connection about to be reused: false when the peer closed it or sent
    /// something unasked (either way it must not carry a request). Never blocks.
    pub fn idle_is_clean(&self) -> bool {
        if let Socket::Tls(s) = self
            && s.plaintext_buffered()
        {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.tcp().try_read(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

impl<S: TlsSocket> AsyncRead for Socket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl<S: TlsSocket> AsyncWrite for Socket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Plain(s) => s.is_write_vectored(),
            Socket::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// The device side: plain TCP or a rustls server stream.
pub type DeviceSocket = Socket<tokio_rustls::server::TlsStream<TcpStream>>;
/// The server side: plain TCP or a rustls client stream.
pub type ServerSocket = Socket<tokio_rustls::client::TlsStream<TcpStream>>;

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// Takes at most `cap` bytes per write, from as many slices as fit.
    struct Short {
        cap: usize,
        got: Vec<u8>,
        writes: usize,
    }

    impl tokio::io::AsyncWrite for Short {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = b.len().min(self.cap);
            self.got.extend_from_slice(&b[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.cap;
            for b in bufs {
                let n = b.len().min(left);
                self.got.extend_from_slice(&b[..n]);
                left -= n;
            }
            self.writes += 1;
            Poll::Ready(Ok(self.cap - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Whatever the socket takes per write and however much went out before, the rest of the
    /// head and then the body go out exactly once, in order.
    #[tokio::test]
    async fn write_pair_writes_the_rest_of_both_in_order() {
        let (a, b) = (
            b"HEAD-LINES\r\n\r\n".to_vec(),
            (0..40u8).collect::<Vec<u8>>(),
        );
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        for cap in [1, 3, 7, 16, 100] {
            for done in 0..=whole.len() {
                let mut w = Short {
                    cap,
                    got: Vec::new(),
                    writes: 0,
                };
                super::write_pair(&mut w, &a, &b, done).await.unwrap();
                assert_eq!(w.got, whole[done..], "cap {cap}, done {done}");
                assert_eq!(
                    w.writes,
                    (whole.len() - done).div_ceil(cap),
                    "cap {cap}, done {done}"
                );
            }
        }
    }

    /// Two connections ready in one turn of a device worker: both handle their request before
    /// either writes, so the peer is woken once for both.
    #[test]
    fn writes_of_connections_ready_together_go_out_together() {
        let workers = crate::workers::DeviceWorkers::start(1).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let outer_log = log.clone();
        // Spawned from the worker itself, so both are in its run queue before either runs.
        workers.pick().spawn(async move {
            let tasks: Vec<_> = (1..=2)
                .map(|i| {
                    let log = outer_log.clone();
                    tokio::spawn(async move {
                        log.lock().push(format!("parse {i}"));
                        super::send_turn().await;
                        log.lock().push(format!("write {i}"));
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("tasks finished");
        workers.stop();
        let log = log.lock();
        assert_eq!(log.len(), 4);
        assert!(
            log[..2].iter().all(|e| e.starts_with("parse")),
            "a connection wrote before the other ready connection had its turn: {log:?}"
        );
    }
}
