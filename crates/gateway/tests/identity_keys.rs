//! Issue 13, items 1, 2 and 5 (OPTIONS), over real sockets: the access decision keys on the user
//! the credential names, not on the query's `User=`; a `User=` naming someone else is refused;
//! aliases of one user hit one list entry; device slots are taken only by devices a server
//! accepted; an OPTIONS naming a blocked pair is not forwarded. Each test asserts what the server
//! received: nothing, wherever the gateway refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use base64::Engine as _;
use eas::credentials::ntlm_samples as ntlm;
use http::{Request, StatusCode};
use support::*;

fn basic(login: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {b64}")
}

fn with_auth(mut r: Request<TBody>, auth: &str) -> Request<TBody> {
    r.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    r
}

async fn ok_backend() -> Backend {
    backend(handler(|_| async { reply(200, "ok") })).await
}

/// A gateway in front of `b` whose access list blocks (victim, BLOCKED1).
async fn victim_blocked(b: &Backend) -> RunningGateway {
    let gw = start(runtime(&[b.server()])).await;
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"victim","device_id":"BLOCKED1","state":"blocked","reasons":["manual"]}]}"#)
        .await
        .unwrap();
    gw
}

async fn send(gw: &RunningGateway, h2: bool, req: Request<TBody>) -> StatusCode {
    let tls = h2.then(device_tls);
    let mut d = device(gw.addr, tls.as_ref().map(|t| &t.cert), h2).await;
    d.send(req).await.0
}

fn base64_sync(user: &str, device: &str) -> Request<TBody> {
    let mut q = eas::base64_query::Base64Query::new(
        eas::ProtocolVersion::V14_1,
        eas::Command::FolderSync,
        0x0409,
        device.as_bytes(),
        b"iPhone",
    );
    q.user = Some(user.into());
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?{}",
        q.encode().unwrap()
    ))
    .header("host", "gw.test")
    .body(empty())
    .unwrap()
}

/// Item 1: `User=mallory` with victim's password from a device blocked for victim. Before: the
/// gateway decided for (mallory, BLOCKED1), allowed it, and the server authenticated victim.
#[tokio::test]
async fn another_users_name_in_the_query_does_not_unlock_a_blocked_device() {
    let b = ok_backend().await;
    let gw = victim_blocked(&b).await;
    let victim = basic("victim", "pw");
    // Plain query, base64 query: 400 (User is not who authenticates), nothing forwarded.
    let plain = with_auth(
        eas("gw.test", "FolderSync", "mallory", "BLOCKED1", empty()),
        &victim,
    );
    assert_eq!(send(&gw, false, plain).await, StatusCode::BAD_REQUEST);
    let b64 = with_auth(base64_sync("mallory", "BLOCKED1"), &victim);
    assert_eq!(send(&gw, false, b64).await, StatusCode::BAD_REQUEST);
    // The login's aliases in the query or the header all land on victim: blocked (403).
    for (user, login) in [
        ("victim", "victim"),
        ("CORP%5Cvictim", "victim"),
        ("victim%40corp.example", "CORP\\Victim"),
        ("%20VICTIM%20", "victim@corp.example"),
    ] {
        let r = with_auth(
            eas("gw.test", "FolderSync", user, "BLOCKED1", empty()),
            &basic(login, "pw"),
        );
        assert_eq!(
            send(&gw, false, r).await,
            StatusCode::FORBIDDEN,
            "{user} / {login}"
        );
    }
    assert_eq!(b.count(), 0, "the blocked device reached the server");
    // Mallory with her own password on the same DeviceId is another pair: allowed.
    let own = with_auth(
        eas("gw.test", "FolderSync", "mallory", "BLOCKED1", empty()),
        &basic("mallory", "pw"),
    );
    assert_eq!(send(&gw, false, own).await, StatusCode::OK);
    assert_eq!(b.count(), 1);
    let a = gw.gw.access.association("victim", "blocked1").unwrap();
    assert_eq!(a.rule, "listed_blocked");
}

/// Item 1 over HTTP/2 (TLS, ALPN h2).
#[tokio::test]
async fn the_same_over_http2() {
    let b = ok_backend().await;
    let tls = device_tls();
    let mut rt = runtime(&[b.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"victim","device_id":"BLOCKED1","state":"blocked","reasons":["manual"]}]}"#)
        .await
        .unwrap();
    let mut d = device(gw.addr, Some(&tls.cert), true).await;
    let req = Request::post(
        "https://gw.test/Microsoft-Server-ActiveSync?Cmd=Sync&User=mallory&DeviceId=BLOCKED1&DeviceType=iPhone",
    )
    .header("authorization", basic("victim", "pw"))
    .body(empty())
    .unwrap();
    assert_eq!(d.send(req).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(b.count(), 0);
}

/// Item 1 for NTLM: the AUTHENTICATE message names the user, and later requests on the same
/// connection (no credential of their own) keep that user.
#[tokio::test]
async fn ntlm_logins_are_the_key_for_the_whole_connection() {
    let b = ok_backend().await;
    let gw = victim_blocked(&b).await;
    let type3 = format!("NTLM {}", ntlm::authenticate("CORP", "victim"));
    let mut d = device(gw.addr, None, false).await;
    let r = with_auth(
        eas("gw.test", "FolderSync", "mallory", "BLOCKED1", empty()),
        &type3,
    );
    assert_eq!(d.send(r).await.0, StatusCode::BAD_REQUEST);
    let r = with_auth(
        eas("gw.test", "FolderSync", "victim", "BLOCKED1", empty()),
        &type3,
    );
    assert_eq!(d.send(r).await.0, StatusCode::FORBIDDEN);
    assert_eq!(b.count(), 0);
    // On a device that is not blocked, the connection learns victim's login ...
    let mut d = device(gw.addr, None, false).await;
    let r = with_auth(
        eas("gw.test", "FolderSync", "victim", "OK1", empty()),
        &type3,
    );
    assert_eq!(d.send(r).await.0, StatusCode::OK);
    // ... and a later request on it without a credential cannot claim to be someone else.
    let r = eas("gw.test", "FolderSync", "mallory", "OK1", empty());
    assert_eq!(d.send(r).await.0, StatusCode::BAD_REQUEST);
    let r = eas("gw.test", "FolderSync", "victim", "OK1", empty());
    assert_eq!(d.send(r).await.0, StatusCode::OK);
    assert_eq!(b.count(), 2);
}

/// A credential that names no readable user is refused by default (fail closed), and passes
/// keyed on the query's user when the admin says so.
#[tokio::test]
async fn opaque_credentials_are_refused_unless_trusted() {
    let b = ok_backend().await;
    let gw = start(runtime(&[b.server()])).await;
    for auth in [
        "Bearer opaque-access-token",
        "Negotiate YIIBhgYJKoZIhvcSAQICAQBuggF1",
    ] {
        let r = with_auth(eas("gw.test", "Sync", "victim", "D1", empty()), auth);
        assert_eq!(send(&gw, false, r).await, StatusCode::FORBIDDEN, "{auth}");
    }
    assert_eq!(b.count(), 0);
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "opaque_credentials = \"query-user\"");
    let gw = start(rt).await;
    let r = with_auth(
        eas("gw.test", "Sync", "victim", "D1", empty()),
        "Bearer opaque-access-token",
    );
    assert_eq!(send(&gw, false, r).await, StatusCode::OK);
    assert_eq!(b.count(), 1);
}

/// Item 2: requests without credentials (the server answers 401) do not use up a mailbox's
/// device slots. Before: three junk DeviceIds for carol were "admitted" and her phone was then
/// refused with `per_mailbox_limit`.
#[tokio::test]
async fn devices_without_accepted_credentials_take_no_slot() {
    let b = backend(handler(|s: Seen| async move {
        match s.headers.get("authorization") {
            Some(v) if v == "Basic Y2Fyb2w6cmlnaHQ=" => reply(200, "ok"),
            _ => reply(401, ""),
        }
    }))
    .await;
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "max_devices_per_mailbox = 3");
    let gw = start(rt).await;
    for junk in ["junk1", "junk2", "junk3", "junk4"] {
        let r = eas("gw.test", "FolderSync", "carol", junk, empty());
        assert_eq!(send(&gw, false, r).await, StatusCode::UNAUTHORIZED);
        // A wrong password is no acceptance either.
        let r = with_auth(
            eas("gw.test", "FolderSync", "carol", junk, empty()),
            &basic("carol", "wrong"),
        );
        assert_eq!(send(&gw, false, r).await, StatusCode::UNAUTHORIZED);
    }
    let phone = || {
        with_auth(
            eas("gw.test", "FolderSync", "carol", "CarolPhone", empty()),
            &basic("carol", "right"),
        )
    };
    assert_eq!(send(&gw, false, phone()).await, StatusCode::OK);
    // (The answer is recorded as the exchange ends, just after the device has it.)
    eventually("the phone admitted", || {
        gw.gw
            .access
            .association("carol", "carolphone")
            .is_some_and(|a| a.admitted)
    })
    .await;
    assert_eq!(send(&gw, false, phone()).await, StatusCode::OK);
    for junk in ["junk1", "junk2", "junk3", "junk4"] {
        let a = gw.gw.access.association("carol", junk).unwrap();
        assert!(!a.admitted && a.last_status == Some(401), "{a:?}");
    }
}

/// Item 5: an OPTIONS naming a blocked pair is not forwarded with its `Authorization` (it would
/// tell the blocked device whether the password is right); other OPTIONS pass.
#[tokio::test]
async fn options_from_a_blocked_device_is_refused() {
    let b = ok_backend().await;
    let gw = victim_blocked(&b).await;
    let options = |q: &str, auth: Option<&str>| {
        let mut r = Request::options(format!("/Microsoft-Server-ActiveSync{q}"))
            .header("host", "gw.test")
            .body(empty())
            .unwrap();
        if let Some(a) = auth {
            r.headers_mut().insert("authorization", a.parse().unwrap());
        }
        r
    };
    let victim = basic("victim", "guess");
    for (q, auth) in [
        (
            "?User=victim&DeviceId=BLOCKED1&DeviceType=iPhone",
            Some(&*victim),
        ),
        (
            "?User=mallory&DeviceId=BLOCKED1&DeviceType=iPhone",
            Some(&*victim),
        ),
        ("?User=victim&DeviceId=blocked1&DeviceType=iPhone", None),
    ] {
        assert_eq!(
            send(&gw, false, options(q, auth)).await,
            StatusCode::FORBIDDEN,
            "{q}"
        );
    }
    assert_eq!(
        b.count(),
        0,
        "a blocked device's OPTIONS reached the server"
    );
    for (q, auth) in [
        ("", Some(&*victim)),
        (
            "?User=victim&DeviceId=OTHER1&DeviceType=iPhone",
            Some(&*victim),
        ),
    ] {
        assert_eq!(
            send(&gw, false, options(q, auth)).await,
            StatusCode::OK,
            "{q}"
        );
    }
    assert_eq!(b.count(), 2);
}
