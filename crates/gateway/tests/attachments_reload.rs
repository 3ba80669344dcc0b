//! Issue 5: `[attachment_control]` is applied live. A config change of `action` through the real
//! apply path (`PUT /v1/config` → validate → persist → swap) applies to the next request, while a
//! Ping parked at a scripted backend stays connected and completes. Invalid attachment settings
//! are rejected with `attachment_control.<field>` errors and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod attachments_support;
mod support;

use std::time::Duration;

use attachments_support::*;
use bytes::Bytes;
use gateway::reload::ControlPlane;
use gateway::validate::{self, DevCertMode, Format};
use http::StatusCode;
use support::*;
use wbxml::Element;

/// `<Ping><Status>1</Status></Ping>`.
const PING_OK: [u8; 13] = [3, 1, 0x6A, 0, 0, 13, 0x45, 0x47, 3, b'1', 0, 1, 1];

fn config_text(backend: &Backend, ios_action: &str, extra: &str) -> String {
    format!(
        "[sentry]\nhost = \"gw.test\"\n\
         [listen]\ndevices = \"127.0.0.1:18443\"\nmanagement = \"127.0.0.1:19090\"\n\
         [management]\ntoken_file = \"token\"\n\
         [activesync]\nserver_tls = false\nclient_tls = false\nhealth_check = false\n\
         [[activesync.service]]\nname = \"default\"\nservers = \"{}\"\n\
         [storage]\ndata_dir = \"data\"\n\
         [attachment_control]\nenabled = true\n{extra}\n\
         [attachment_control.platform.ios_native]\naction = \"{ios_action}\"\n\
         [attachment_control.encryption]\nrecipients = [\"reader.pem\"]\n",
        backend.server()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_change_applies_to_the_next_request_while_a_parked_ping_completes() {
    use std::os::unix::fs::PermissionsExt;
    let sync = Bytes::from(sample("sync-response-attachment.wbxml"));
    let (release, released) = tokio::sync::watch::channel(false);
    let sync2 = sync.clone();
    let b = backend(handler(move |s| {
        let (sync, mut released) = (sync2.clone(), released.clone());
        async move {
            if s.uri.contains("Cmd=Ping") {
                // Parked until the test releases it.
                let _ = released.wait_for(|r| *r).await;
                let mut r = reply(200, Bytes::from_static(&PING_OK));
                r.headers_mut().insert(
                    "content-type",
                    "application/vnd.ms-sync.wbxml".parse().unwrap(),
                );
                return r;
            }
            let mut r = reply(200, sync);
            r.headers_mut().insert(
                "content-type",
                "application/vnd.ms-sync.wbxml".parse().unwrap(),
            );
            r
        }
    }))
    .await;

    let k = Keys::new();
    let dir = k.dir.path();
    std::fs::write(dir.join("token"), "reload-test-token\n").unwrap();
    std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.join("easgate.toml");
    std::fs::write(&path, config_text(&b, "remove", "")).unwrap();
    let rt = validate::load_file(&path, DevCertMode::Persist)
        .unwrap_or_else(|e| panic!("{}", validate::FieldError::join(&e)));
    assert!(rt.attachments.is_some());
    let gw = start(rt).await;
    let control = ControlPlane::new(gw.gw.clone(), &path);

    // A Ping parks at the backend.
    let addr = gw.addr;
    let ping = tokio::spawn(async move {
        let mut d = device(addr, None, false).await;
        d.send(req("Ping", "iPhone", "", "14.1", full(ping_body(600))))
            .await
    });
    eventually("the Ping reached the backend", || {
        b.seen().iter().any(|s| s.uri.contains("Cmd=Ping"))
    })
    .await;

    let sync_now = || async {
        let mut d = device(addr, None, false).await;
        let (st, _, body) = d.send(req("Sync", "iPhone", "", "14.1", empty())).await;
        assert_eq!(st, StatusCode::OK);
        Element::parse(&body).unwrap()
    };
    assert!(!has(&sync_now().await, "Attachments"), "remove in force");

    // remove → encrypt through the management apply path.
    let applied = control
        .apply_body(config_text(&b, "encrypt", "").as_bytes(), Format::Toml)
        .await
        .expect("new config applied");
    assert!(
        applied.restart_required.is_empty(),
        "{:?}",
        applied.restart_required
    );
    assert_eq!(
        texts(&sync_now().await, "DisplayName"),
        ["report.pdf.p7m", "note.txt.p7m"],
        "encrypt applies to the next request"
    );
    // encrypt → deliver.
    control
        .apply_body(config_text(&b, "deliver", "").as_bytes(), Format::Toml)
        .await
        .expect("new config applied");
    assert_eq!(
        texts(&sync_now().await, "DisplayName"),
        ["report.pdf", "note.txt"],
        "deliver applies to the next request"
    );

    // An invalid [attachment_control] is rejected as a whole, naming the fields.
    let bad = config_text(&b, "remove", "max_nesting = 99\nexclusions = \"ics,../x\"")
        .replace("reader.pem", "missing.pem");
    let err = control
        .apply_body(bad.as_bytes(), Format::Toml)
        .await
        .expect_err("invalid attachment settings rejected");
    let gateway::error::Error::InvalidConfig { errors } = err else {
        panic!("{err}")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert!(
        fields.contains(&"attachment_control.max_nesting")
            && fields.contains(&"attachment_control.exclusions"),
        "{fields:?}"
    );
    let bad_cert = config_text(&b, "encrypt", "").replace("reader.pem", "missing.pem");
    let err = control
        .apply_body(bad_cert.as_bytes(), Format::Toml)
        .await
        .expect_err("missing certificate rejected");
    assert!(
        err.to_string()
            .contains("attachment_control.encryption.recipients[0]"),
        "{err}"
    );
    assert_eq!(
        texts(&sync_now().await, "DisplayName"),
        ["report.pdf", "note.txt"],
        "a rejected config changes nothing"
    );

    // The parked Ping was never dropped: released now, it completes with the server's answer.
    assert!(!ping.is_finished(), "the Ping is still parked");
    assert_eq!(gw.gw.metrics.parked_now(), 1);
    release.send(true).unwrap();
    let (st, _, body) = tokio::time::timeout(Duration::from_secs(10), ping)
        .await
        .expect("Ping completes")
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&body[..], &PING_OK[..]);
}
