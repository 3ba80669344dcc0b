//! Issue 3, item 12 (logs): one JSON audit line per request on target `easgate::audit`, with
//! time, request id, client, user, DeviceId, DeviceType, command, service, server, status, bytes,
//! duration and action — and never the password. Also: metrics count the same requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::io::Write;
use std::sync::Arc;

use http::{Request, StatusCode};
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

/// Audit lines (target `easgate::audit`) and every other log line, captured while the guard lives.
fn capture() -> (Capture, Capture, tracing::subscriber::DefaultGuard) {
    let audit = Capture::default();
    let all = Capture::default();
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry()
        .with(
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
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(all.clone())
                .with_ansi(false)
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("gateway", tracing::Level::TRACE)
                        .with_target("easgate", tracing::Level::TRACE),
                ),
        );
    use tracing_subscriber::Layer as _;
    let guard = tracing::subscriber::set_default(subscriber);
    (audit, all, guard)
}

#[tokio::test]
async fn one_json_line_per_request_without_secrets() {
    let (audit, all, _guard) = capture();

    let be = backend(handler(|_s: Seen| async move { reply(200, "0123456789") })).await;
    let tls = device_tls();
    let mut rt = runtime(&[be.server()]);
    rt.device_tls = Some(tls.server.clone());
    let gw = start(rt).await;
    let mut d = device(gw.addr, Some(&tls.cert), false).await;

    let mut req = eas("gw", "Sync", "user1", "DEV42", full("abcde"));
    req.headers_mut()
        .insert("authorization", "Basic dXNlcjE6c2VjcmV0".parse().unwrap()); // user1:secret
    assert_eq!(d.send(req).await.0, StatusCode::OK);
    // Base64 query (14.1 FolderSync, DeviceId B64DEV01, DeviceType curl, User user1).
    let req = Request::post("/Microsoft-Server-ActiveSync?jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=")
        .header("host", "gw")
        .header("authorization", "Basic dXNlcjE6c2VjcmV0")
        .body(empty())
        .unwrap();
    assert_eq!(d.send(req).await.0, StatusCode::OK);
    // Refused by the gateway.
    let req = Request::get("/owa/")
        .header("host", "gw")
        .body(empty())
        .unwrap();
    assert_eq!(d.send(req).await.0, StatusCode::NOT_FOUND);
    drop(d);

    let text = String::from_utf8(audit.0.lock().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).unwrap())
        // Issue 4 adds a `request` line per device request; the per-request record is the
        // `response` line (paired by `use_case_id`).
        .filter(|l| l["event"] == "response")
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let l = &lines[0];
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["user"], "user1");
    assert_eq!(l["device_id"], "DEV42");
    assert_eq!(l["device_type"], "iPhone");
    assert_eq!(l["command"], "Sync");
    assert_eq!(l["service"], "default");
    assert_eq!(l["server"], be.server().to_string());
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes_in"], 5);
    assert_eq!(l["bytes_out"], 10);
    assert_eq!(l["action"], "ALLOW");
    assert!(l["duration_ms"].is_u64() && l["request_id"].is_string());
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (lines[1]["command"].as_str(), lines[1]["device_id"].as_str()),
        (Some("FolderSync"), Some("B64DEV01"))
    );
    assert_eq!(lines[1]["user"], "user1");
    assert_eq!(
        (lines[2]["status"].as_u64(), lines[2]["server"].as_str()),
        (Some(404), Some("-"))
    );
    assert_ne!(lines[0]["request_id"], lines[1]["request_id"]);

    let everything = format!("{text}{}", String::from_utf8_lossy(&all.0.lock()));
    assert!(
        !everything.contains("secret") && !everything.contains("dXNlcjE6c2VjcmV0"),
        "no credentials in logs"
    );

    let metrics = gw.gw.metrics.render();
    assert!(metrics.contains(&format!(
        "easgate_requests_total{{service=\"default\",server=\"{}\",status=\"200\",command=\"Sync\"}} 1",
        be.server()
    )));
    assert!(metrics.contains(
        "easgate_requests_total{service=\"-\",server=\"-\",status=\"404\",command=\"-\"} 1"
    ));
    assert!(metrics.contains(&format!(
        "easgate_server_up{{server=\"{}\"}} 1",
        be.server()
    )));
    assert!(metrics.contains("easgate_in_flight_requests 0"));
}

/// Issue 13: an identity refusal has its audit reason (rule), metric and log line; request lines
/// say whose key the decision used and where the user came from.
#[tokio::test]
async fn identity_refusals_are_audited_and_counted() {
    let (audit, all, _guard) = capture();
    let be = backend(handler(|_s: Seen| async move { reply(200, "ok") })).await;
    let gw = start(runtime(&[be.server()])).await;
    let mut d = device(gw.addr, None, false).await;
    let basic = "Basic Q09SUFxWaWN0aW06c2VjcmV0"; // CORP\Victim:secret
    let mut req = eas("gw", "Sync", "mallory", "DEV42", empty());
    req.headers_mut()
        .insert("authorization", basic.parse().unwrap());
    assert_eq!(d.send(req).await.0, StatusCode::BAD_REQUEST);
    let mut req = eas("gw", "Sync", "victim", "DEV42", empty());
    req.headers_mut()
        .insert("authorization", basic.parse().unwrap());
    assert_eq!(d.send(req).await.0, StatusCode::OK);
    drop(d);
    assert_eq!(be.count(), 1);

    let text = String::from_utf8(audit.0.lock().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l.trim()).unwrap())
        .collect();
    let refused = lines
        .iter()
        .find(|l| l["event"] == "response" && l["status"] == 400)
        .unwrap_or_else(|| panic!("no refusal line in {text}"));
    assert_eq!(
        (refused["action"].as_str(), refused["rule"].as_str()),
        (Some("BLOCK"), Some("user_mismatch"))
    );
    let request = lines
        .iter()
        .find(|l| l["event"] == "request")
        .unwrap_or_else(|| panic!("no request line in {text}"));
    assert_eq!(request["user"], "CORP\\Victim");
    assert_eq!(request["user_key"], "victim");
    assert_eq!(request["user_source"], "basic");
    let logs = String::from_utf8_lossy(&all.0.lock()).into_owned();
    assert!(logs.contains("user_mismatch"), "{logs}");
    assert!(
        !logs.contains("secret") && !logs.contains(basic),
        "no credentials in logs"
    );
    assert!(
        gw.gw
            .metrics
            .render()
            .contains("easgate_access_decisions_total{action=\"BLOCK\",rule=\"user_mismatch\"} 1")
    );
}
