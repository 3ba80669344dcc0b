//! The real ActiveSync peer (SOGo, `../shared/peers/sogo-up.sh`) for the interop tests.

use std::net::SocketAddr;

/// The peer's address, or `None` when the run asked to skip interop.
pub async fn peer() -> Option<SocketAddr> {
    if std::env::var("EASGATE_INTEROP").as_deref() == Ok("skip") {
        eprintln!("EASGATE_INTEROP=skip: interop test skipped");
        return None;
    }
    let addr: SocketAddr = std::env::var("EASGATE_SOGO")
        .unwrap_or_else(|_| "127.0.0.1:20080".into())
        .parse()
        .expect("EASGATE_SOGO must be host:port");
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        panic!(
            "no ActiveSync peer at {addr}: run `bash ../shared/peers/sogo-up.sh up` \
             (scripts/test.sh does), or set EASGATE_INTEROP=skip"
        );
    }
    Some(addr)
}
