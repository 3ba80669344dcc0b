//! Issue 13 against the real ActiveSync server (SOGo, `../shared/peers/sogo-up.sh`): the access
//! decision keys on the login SOGo authenticates, and only devices SOGo accepted take a slot of
//! the mailbox's device limit. With no peer listening the tests FAIL with instructions, unless
//! `EASGATE_INTEROP=skip`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::time::Duration;

use base64::Engine as _;
use http::{Request, StatusCode};
use support::sogo::peer;
use support::*;

fn folder_sync(user: &str, dev: &str, login: Option<(&str, &str)>) -> Request<TBody> {
    let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">\n<FolderSync xmlns=\"FolderHierarchy:\">\n<SyncKey>0</SyncKey>\n</FolderSync>\n";
    let mut b = Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd=FolderSync&User={user}&DeviceId={dev}&DeviceType=iPhone"
    ))
    .header("host", "gw.test")
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", "14.1");
    if let Some((u, p)) = login {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        b = b.header("authorization", format!("Basic {b64}"));
    }
    b.body(full(wbxml::xml::from_xml(xml).unwrap())).unwrap()
}

async fn send(gw: &RunningGateway, req: Request<TBody>) -> StatusCode {
    let mut d = device(gw.addr, None, false).await;
    tokio::time::timeout(Duration::from_secs(60), d.send(req))
        .await
        .expect("answer within 60 s")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sogo_logins_key_the_decision_and_fill_the_slots() {
    let Some(peer) = peer().await else { return };
    let mut rt = runtime(&[addr_of(peer)]);
    device_access(&mut rt, "max_devices_per_mailbox = 1");
    let gw = start(rt).await;
    gw.gw
        .access
        .patch(br#"{"devices":[{"user":"user1","device_id":"IdBlocked1","state":"blocked","reasons":["manual"]}]}"#)
        .await
        .unwrap();
    // user2 claims the device user1 is blocked on, with user1's password: refused, not decided
    // for user2.
    let r = folder_sync("user2", "IdBlocked1", Some(("user1", "pass1")));
    assert_eq!(send(&gw, r).await, StatusCode::BAD_REQUEST);
    // Junk devices for user1 that SOGo refuses (no credentials: SOGo answers 403; a wrong
    // password: 401) take no slot.
    for junk in ["IdJunk1", "IdJunk2", "IdJunk3"] {
        for login in [None, Some(("user1", "wrong"))] {
            let st = send(&gw, folder_sync("user1", junk, login)).await;
            assert!(
                matches!(st.as_u16(), 401 | 403),
                "{junk} {login:?}: SOGo refuses, got {st}"
            );
        }
    }
    // user1's real phone syncs, and takes the one slot ...
    let r = folder_sync("user1", "IdPhone1", Some(("user1", "pass1")));
    assert_eq!(send(&gw, r).await, StatusCode::OK);
    // (The answer is recorded as the exchange ends, just after the device has it.)
    eventually("the phone admitted", || {
        gw.gw
            .access
            .association("user1", "IdPhone1")
            .is_some_and(|a| a.admitted && a.last_status == Some(200))
    })
    .await;
    for junk in ["IdJunk1", "IdJunk2", "IdJunk3"] {
        let a = gw.gw.access.association("user1", junk).unwrap();
        assert!(
            !a.admitted && matches!(a.last_status, Some(401 | 403)),
            "{a:?}"
        );
    }
    // ... so a second real device is over the limit; the first keeps working.
    let r = folder_sync("user1", "IdPhone2", Some(("user1", "pass1")));
    assert_eq!(send(&gw, r).await, StatusCode::FORBIDDEN);
    let r = folder_sync("user1", "IdPhone1", Some(("user1", "pass1")));
    assert_eq!(send(&gw, r).await, StatusCode::OK);
}
