//! Issue 3, item 8 (pass-through authentication): `Authorization` and `WWW-Authenticate` pass
//! untouched (Basic, Bearer); NTLM / Negotiate bind the login to the server connection, so a
//! device connection that uses them keeps one server connection for itself, and an
//! authenticated server connection is never shared with another device.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use eas::credentials::ntlm_samples as ntlm;
use http::{Request, StatusCode};
use support::*;

/// A server that authenticates NTLM-style: the challenge is tied to the TCP connection that got
/// the negotiate message, and once authenticated, the connection stays authenticated.
fn ntlm_server() -> Handler {
    let challenged = Arc::new(parking_lot::Mutex::new(HashSet::<usize>::new()));
    let authed = Arc::new(parking_lot::Mutex::new(HashSet::<usize>::new()));
    handler(move |s: Seen| {
        let (challenged, authed) = (challenged.clone(), authed.clone());
        async move {
            let auth = s
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let unauthorized = |www: String| {
                let mut r = reply(401, "");
                r.headers_mut()
                    .insert("www-authenticate", www.parse().unwrap());
                r
            };
            if auth == format!("NTLM {}", ntlm::negotiate()) {
                challenged.lock().insert(s.conn);
                return unauthorized(format!("NTLM CHALLENGE-{}", s.conn));
            }
            if auth == format!("NTLM {}", ntlm::authenticate("dom", "u")) {
                // Only on the connection that got the challenge.
                if challenged.lock().remove(&s.conn) {
                    authed.lock().insert(s.conn);
                    return reply(200, format!("welcome on {}", s.conn));
                }
                return unauthorized("NTLM".into());
            }
            if authed.lock().contains(&s.conn) {
                return reply(200, format!("still authenticated on {}", s.conn));
            }
            unauthorized("NTLM".into())
        }
    })
}

fn with_auth(auth: Option<&str>) -> Request<TBody> {
    let mut r = eas("gw", "FolderSync", "dom\\u", "D1", empty());
    if let Some(a) = auth {
        r.headers_mut().insert("authorization", a.parse().unwrap());
    }
    r
}

/// Runs the 3-leg handshake on `d`, returns the challenge's server connection.
async fn type1(d: &mut Device) -> String {
    let (status, headers, _) = d
        .send(with_auth(Some(&format!("NTLM {}", ntlm::negotiate()))))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let www = headers["www-authenticate"].to_str().unwrap().to_string();
    www.strip_prefix("NTLM CHALLENGE-")
        .expect("challenge passed untouched")
        .to_string()
}

#[tokio::test]
async fn ntlm_is_pinned_per_device_connection_and_never_shared() {
    let be = backend(ntlm_server()).await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut a = device(gw.addr, Some(&tls.cert), false).await;
    let mut b = device(gw.addr, Some(&tls.cert), false).await;

    // Anonymous first request: the NTLM offer passes through.
    let (status, headers, _) = a.send(with_auth(None)).await;
    assert_eq!(
        (status, headers["www-authenticate"].to_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "NTLM")
    );

    // Interleaved handshakes of two devices.
    let ca = type1(&mut a).await;
    let cb = type1(&mut b).await;
    assert_ne!(ca, cb, "each device got its own server connection");
    // The AUTHENTICATE leg only works on the connection that got the challenge: it reaches the
    // server on the same pinned connection.
    let type3 = format!("NTLM {}", ntlm::authenticate("dom", "u"));
    let (status, _, body) = a.send(with_auth(Some(&type3))).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (StatusCode::OK, format!("welcome on {ca}"))
    );
    let (status, _, _) = b.send(with_auth(Some(&type3))).await;
    assert_eq!(status, StatusCode::OK);

    // Later requests of A ride on its authenticated connection.
    for _ in 0..3 {
        let (status, _, body) = a.send(with_auth(None)).await;
        assert_eq!(
            (status, String::from_utf8_lossy(&body).into_owned()),
            (StatusCode::OK, format!("still authenticated on {ca}"))
        );
    }
    // A third device without credentials never lands on an authenticated connection.
    for _ in 0..3 {
        let mut c = device(gw.addr, Some(&tls.cert), false).await;
        let (status, _, _) = c.send(with_auth(None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        gw.gw.pool.idle(&be.server()).len(),
        1,
        "only the anonymous connection is shared"
    );
}

#[tokio::test]
async fn basic_and_bearer_pass_untouched() {
    let be = backend(handler(|s: Seen| async move {
        let mut r = reply(401, "");
        r.headers_mut()
            .insert("www-authenticate", "Basic realm=\"SOGo\"".parse().unwrap());
        r.headers_mut().append(
            "www-authenticate",
            "Bearer authorization_uri=\"https://login.example/x\""
                .parse()
                .unwrap(),
        );
        r.headers_mut().insert(
            "x-seen-authorization",
            s.headers
                .get("authorization")
                .cloned()
                .unwrap_or("none".parse().unwrap()),
        );
        r
    }))
    .await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    // Basic `dom\u:secret`, and a JWT whose `upn` is u@dom: the same user as the query's
    // `dom\u` (one domain: keys are bare names).
    let basic = "Basic ZG9tXHU6c2VjcmV0";
    let jwt = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJ1QGRvbSJ9.c2ln";
    for auth in [basic, jwt] {
        let (status, headers, _) = d.send(with_auth(Some(auth))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["x-seen-authorization"], auth);
        let www: Vec<_> = headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            www,
            [
                "Basic realm=\"SOGo\"",
                "Bearer authorization_uri=\"https://login.example/x\""
            ]
        );
    }
}
