//! The crate against the real captured / libwbxml-encoded samples in `shared/eas-samples`
//! (located via `$EASGATE_SHARED` or `<workspace>/../shared`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::path::PathBuf;
use std::time::Duration;

use eas::multipart::{self, Multipart};
use eas::provision::{POLICY_TYPE_WBXML, PolicyResponse};
use eas::{
    Command, LongPoll, PingBody, ProvisionRequest, ProvisionRequestKind, ProvisionResponse,
    long_poll, ping_body, sync_long_poll,
};
use wbxml::Element;

fn sample(name: &str) -> Vec<u8> {
    let shared = std::env::var_os("EASGATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("eas-samples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn ping_request_heartbeat_480() {
    let body = sample("ping-request.wbxml");
    let ping = ping_body(&body).unwrap();
    assert_eq!(
        ping,
        PingBody::Request {
            heartbeat: Some(480),
            folders: 1
        }
    );
    assert_eq!(ping.heartbeat(), Some(Duration::from_secs(480)));
    assert_eq!(
        long_poll(Command::Ping, &body),
        Ok(LongPoll::Hold(Duration::from_secs(480)))
    );
}

#[test]
fn sync_request_is_not_a_long_poll() {
    let body = sample("sync-request.wbxml");
    assert_eq!(sync_long_poll(&body), Ok(LongPoll::No));
    // A Sync body is not a Ping body.
    assert!(ping_body(&body).is_err());
}

#[test]
fn provision_request_is_initial_with_device_information() {
    let req = ProvisionRequest::parse(&sample("provision-request.wbxml")).unwrap();
    assert_eq!(
        req.kind,
        ProvisionRequestKind::Initial {
            policy_type: POLICY_TYPE_WBXML.into()
        }
    );
    let info = req.device_information.unwrap();
    assert_eq!(info.model.as_deref(), Some("GatewayTest"));
    assert_eq!(info.friendly_name.as_deref(), Some("eas-samples"));
    assert_eq!(info.os.as_deref(), Some("Linux"));
    assert_eq!(info.user_agent.as_deref(), Some("eas-samples/1.0"));
    assert_eq!(info.imei, None);
}

#[test]
fn provision_builder_reproduces_sogo_response_bytes() {
    // SOGo: Provision Status 1, Policy Status 2 (no policy), no key.
    let built = ProvisionResponse {
        status: 1,
        device_information_status: None,
        policy: Some(PolicyResponse {
            policy_type: POLICY_TYPE_WBXML.into(),
            status: 2,
            policy_key: None,
            settings: None,
        }),
        remote_wipe: None,
    }
    .encode()
    .unwrap();
    assert_eq!(built, sample("provision-response.wbxml"));
}

#[test]
fn multipart_sample_parses_and_rebuilds_identically() {
    let body = sample("itemoperations-fetch-attachment-multipart-response.bin");
    let m = Multipart::parse(&body).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m.wbxml().len(), 74);
    let raw = m.part(1).unwrap();
    assert_eq!(raw.len(), 4142);
    assert!(raw.starts_with(b"%PDF-1.4"));
    let tree = Element::parse(m.wbxml()).unwrap();
    assert!(tree.is("ItemOperations", "ItemOperations"));
    assert_eq!(
        tree.find_path(&["Response", "Fetch", "Properties", "Part"])
            .and_then(Element::text),
        Some("1")
    );
    assert!(
        tree.find_path(&["Response", "Fetch", "Properties", "Data"])
            .is_none()
    );
    let rebuilt = multipart::build(m.parts()).unwrap();
    assert_eq!(rebuilt, body);
}

#[test]
fn truncated_multipart_sample_is_a_typed_error() {
    let body = sample("itemoperations-fetch-attachment-multipart-response.bin");
    for cut in [0, 3, 11, 19, 93, body.len() - 1] {
        let err = Multipart::parse(&body[..cut]).unwrap_err();
        assert_eq!(err.fault(), eas::Fault::Server, "cut {cut}: {err}");
    }
}

#[test]
fn non_long_poll_samples_are_no() {
    for (name, cmd) in [
        ("foldersync-request.wbxml", Command::FolderSync),
        (
            "itemoperations-fetch-attachment-request.wbxml",
            Command::ItemOperations,
        ),
        ("sendmail-request.wbxml", Command::SendMail),
    ] {
        assert_eq!(long_poll(cmd, &sample(name)), Ok(LongPoll::No), "{name}");
    }
}
