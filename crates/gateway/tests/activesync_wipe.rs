//! Issue 4, remote wipe end to end over real sockets: the management API marks a device for
//! wipe; any command gets the answer that makes it provision (HTTP 449 for 12.x, HTTP 200 with
//! the command's Status 140 for 14.0+); its Provision gets Status 1 + RemoteWipe (decoded with
//! `crates/wbxml`, checked field by field); the acknowledgement marks the list entry and the
//! association Wiped; afterwards the device is blocked. The server never sees any of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use http::StatusCode;
use support::*;
use wbxml::Element;

fn provision_ack(status: &str) -> Vec<u8> {
    Element::named("Provision", "Provision")
        .unwrap()
        .with_child(
            Element::named("Provision", "RemoteWipe")
                .unwrap()
                .with_text_child("Status", status)
                .unwrap(),
        )
        .encode()
        .unwrap()
}

fn initial_provision() -> Vec<u8> {
    let policy = Element::named("Provision", "Policy")
        .unwrap()
        .with_text_child("PolicyType", "MS-EAS-Provisioning-WBXML")
        .unwrap();
    Element::named("Provision", "Provision")
        .unwrap()
        .with_child(
            Element::named("Provision", "Policies")
                .unwrap()
                .with_child(policy),
        )
        .encode()
        .unwrap()
}

fn names(e: &Element) -> Vec<&'static str> {
    e.elements().map(Element::name).collect()
}

#[tokio::test]
async fn full_wipe_exchange_for_a_14_1_device() {
    let b = backend(handler(|_| async { reply(200, "") })).await;
    let mut rt = runtime(&[b.server()]);
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;
    let mut d = device(gw.addr, None, false).await;

    mgmt.set_state("mia", "LostPhone", "wipe").await;

    // 1. Any command: HTTP 200 with <FolderSync><Status>140</Status></FolderSync>.
    let (st, h, body) = d
        .send(eas_v("FolderSync", "mia", "LostPhone", "14.1", empty()))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/vnd.ms-sync.wbxml");
    let tree = Element::parse(&body).unwrap();
    assert!(tree.is("FolderHierarchy", "FolderSync"), "{}", tree.name());
    assert_eq!(names(&tree), ["Status"]);
    assert_eq!(tree.find("Status").and_then(Element::text), Some("140"));

    // 2. Provision: Status 1 + RemoteWipe, nothing else.
    let (st, h, body) = d
        .send(eas_v(
            "Provision",
            "mia",
            "LostPhone",
            "14.1",
            full(initial_provision()),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/vnd.ms-sync.wbxml");
    let tree = Element::parse(&body).unwrap();
    assert!(tree.is("Provision", "Provision"));
    assert_eq!(names(&tree), ["Status", "RemoteWipe"]);
    assert_eq!(tree.find("Status").and_then(Element::text), Some("1"));
    let wipe = tree.find("RemoteWipe").unwrap();
    assert!(wipe.is("Provision", "RemoteWipe"));
    assert_eq!(
        wipe.elements().count(),
        0,
        "the directive is an empty element"
    );
    let e = gw.gw.access.entry("mia", "lostphone").unwrap();
    let w = e.wipe.as_ref().expect("wipe record");
    assert_eq!(w.sent_count, 1);
    assert!(w.sent_at.is_some() && w.acknowledged_at.is_none());

    // 3. The acknowledgement: Status 1, no directive; entry and association Wiped.
    let (st, _, body) = d
        .send(eas_v(
            "Provision",
            "mia",
            "LostPhone",
            "14.1",
            full(provision_ack("1")),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let tree = Element::parse(&body).unwrap();
    assert_eq!(names(&tree), ["Status"]);
    assert_eq!(tree.find("Status").and_then(Element::text), Some("1"));
    let e = gw.gw.access.entry("mia", "LostPhone").unwrap();
    assert_eq!(e.state.as_str(), "wiped");
    assert!(e.wipe.unwrap().acknowledged_at.is_some());
    let (_, v) = mgmt
        .call("GET", "/v1/associations?user=mia&device_id=LostPhone", "")
        .await;
    let a = &v["items"][0];
    assert_eq!(a["state"], "wiped", "{v}");
    assert!(a["wiped_at"].is_string(), "{v}");

    // Afterwards the device is blocked.
    let (st, _, _) = d
        .send(eas_v("Sync", "mia", "LostPhone", "14.1", empty()))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(b.count(), 0, "the server saw nothing of the wipe exchange");
}

#[tokio::test]
async fn a_12_1_device_gets_449_and_a_failed_wipe_is_asked_again() {
    let b = backend(handler(|_| async { reply(200, "") })).await;
    let mut rt = runtime(&[b.server()]);
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;
    let mut d = device(gw.addr, None, false).await;
    mgmt.set_state("ned", "OldPhone", "wipe").await;

    let (st, _, body) = d
        .send(eas_v("Sync", "ned", "OldPhone", "12.1", empty()))
        .await;
    assert_eq!(st.as_u16(), 449);
    assert!(body.is_empty());
    // An empty Provision gets the directive.
    let (st, _, body) = d
        .send(eas_v("Provision", "ned", "OldPhone", "12.1", empty()))
        .await;
    assert_eq!(st, StatusCode::OK);
    let tree = Element::parse(&body).unwrap();
    assert!(tree.find("RemoteWipe").is_some());
    // A failure acknowledgement: Status 2 and the directive again; still marked Wipe.
    let (_, _, body) = d
        .send(eas_v(
            "Provision",
            "ned",
            "OldPhone",
            "12.1",
            full(provision_ack("2")),
        ))
        .await;
    let tree = Element::parse(&body).unwrap();
    assert_eq!(tree.find("Status").and_then(Element::text), Some("2"));
    assert!(tree.find("RemoteWipe").is_some());
    let e = gw.gw.access.entry("ned", "OldPhone").unwrap();
    assert_eq!(e.state.as_str(), "wipe");
    assert_eq!(e.wipe.unwrap().last_failure_status, Some(2));
    // A Ping (no WBXML status before 14.0) is 449 too.
    let (st, _, _) = d
        .send(eas_v(
            "Ping",
            "ned",
            "OldPhone",
            "12.1",
            full(ping_body(60)),
        ))
        .await;
    assert_eq!(st.as_u16(), 449);
    assert_eq!(b.count(), 0);
}
