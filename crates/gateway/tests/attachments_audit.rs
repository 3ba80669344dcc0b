//! Issue 5: the audit `response` line carries what attachment control did (action, outcome and
//! the attachments removed / encrypted / excluded); requests it did not apply to carry nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod attachments_support;
mod support;

use std::io::Write;
use std::sync::Arc;

use attachments_support::*;
use http::StatusCode;
use support::*;

#[derive(Clone, Default)]
struct Capture(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn audit_line_has_the_attachment_summary() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    let audit = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(audit.clone())
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_ansi(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("easgate::audit", tracing::Level::INFO),
            ),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let sync = sample("sync-response-attachment.wbxml");
    let b = backend(handler(move |_| {
        let sync = sync.clone();
        async move { reply(200, sync) }
    }))
    .await;
    let k = Keys::new();
    let mut rt = runtime(&[b.server()]);
    k.apply(
        &mut rt,
        k.config("", "[platform.other]\naction = \"deliver\""),
    );
    let gw = start(rt).await;

    let mut d = device(gw.addr, None, false).await;
    let (st, _, _) = d.send(req("Sync", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = d
        .send(req(
            "GetAttachment",
            "iPhone",
            "&AttachmentName=mail%2FINBOX%2F2%2F2",
            "12.1",
            empty(),
        ))
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    let (st, _, _) = d.send(req("Sync", "SmartPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);

    let mut lines = Vec::new();
    for _ in 0..200 {
        let text = String::from_utf8_lossy(&audit.0.lock()).into_owned();
        lines = text
            .lines()
            .filter(|l| l.contains("\"event\":\"response\""))
            .map(str::to_string)
            .collect::<Vec<_>>();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        v[0]["attachments"],
        serde_json::json!({"action": "remove", "outcome": "rewritten", "removed": 2, "encrypted": 0, "excluded": 0})
    );
    assert_eq!(v[0]["status"], 200);
    assert_eq!(v[1]["attachments"]["outcome"], "refused");
    assert_eq!(v[1]["status"], 500);
    assert!(
        v[2].get("attachments").is_none(),
        "deliver: nothing to report"
    );
}
