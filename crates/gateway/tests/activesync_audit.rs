//! Issue 4 audit: a device request's `request` and `response` audit lines carry the access
//! decision (ALLOW / BLOCK / WIPE), the rule, and one `use_case_id` that pairs them. Alone in its
//! test binary: the subscriber is per thread, and tracing caches callsite interest per process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::sync::Arc;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn audit_lines_pair_request_and_response_with_the_decision() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let b2 = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || b2.clone())
        .with_target(false)
        .with_level(false)
        .without_time()
        .with_env_filter("easgate::audit=info")
        .finish();
    let _g = tracing::subscriber::set_default(sub);
    let b = backend(handler(|_| async { reply(200, "ok") })).await;
    let mut rt = runtime(&[b.server()]);
    device_access(&mut rt, "unregistered = \"block\"");
    let gw = start(rt).await;
    let mut d = device(gw.addr, None, false).await;
    let status = d
        .send(eas("gw.test", "FolderSync", "lou", "Blk1", empty()))
        .await
        .0;
    assert_eq!(status, StatusCode::FORBIDDEN);
    eventually("two audit lines", || {
        String::from_utf8_lossy(&buf.0.lock()).lines().count() >= 2
    })
    .await;
    let text = String::from_utf8_lossy(&buf.0.lock()).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l.trim()).unwrap())
        .collect();
    let req = lines.iter().find(|l| l["event"] == "request").unwrap();
    let resp = lines.iter().find(|l| l["event"] == "response").unwrap();
    assert_eq!(req["use_case_id"], resp["use_case_id"]);
    assert_eq!(
        (req["action"].as_str(), req["rule"].as_str()),
        (Some("BLOCK"), Some("unregistered_blocked"))
    );
    assert_eq!(
        (resp["action"].as_str(), resp["status"].as_u64()),
        (Some("BLOCK"), Some(403))
    );
    assert_eq!(req["device_id"], "Blk1");
}
