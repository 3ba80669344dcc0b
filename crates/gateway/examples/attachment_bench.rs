//! Attachment control benchmark (issue 5, docs/benchmarks.md "Attachment control"): the latency a
//! device sees for a 1 MB Sync response with 100 mails (two attachments each, the shape SOGo
//! sends; `crates/wbxml/benches/support/sync_response.rs`) served by a scripted loopback backend,
//! through the gateway with attachment control off (the plain proxy path), "remove" and
//! "encrypt", and straight from the backend. Sequential requests on one keep-alive HTTP/1.1
//! connection per path (plain HTTP: the rewrite is what is measured, not TLS).
//!
//! ```sh
//! cargo run --release -p gateway --example attachment_bench      # N=400 requests per path
//! N=1000 cargo run --release -p gateway --example attachment_bench
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fixture, not shipped

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../../wbxml/benches/support/sync_response.rs"]
mod sync_response;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::time::Instant;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mb_s: f64,
    bytes: usize,
}

async fn run(addr: std::net::SocketAddr, device_type: &str, n: usize) -> Stats {
    let mut d = device(addr, None, false).await;
    let req = || {
        http::Request::post(format!(
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bench&DeviceId=BENCH1&DeviceType={device_type}"
        ))
        .header("host", "gw.test")
        .header("content-type", "application/vnd.ms-sync.wbxml")
        .header("ms-asprotocolversion", "14.1")
        .body(empty())
        .unwrap()
    };
    for _ in 0..20 {
        let _ = d.send(req()).await;
    }
    let mut lat = Vec::with_capacity(n);
    let mut bytes = 0;
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let (st, _, body) = d.send(req()).await;
        lat.push(t.elapsed());
        assert_eq!(st.as_u16(), 200);
        bytes = body.len();
    }
    let total = all.elapsed();
    lat.sort();
    Stats {
        p50: percentile(&lat, 0.5),
        p90: percentile(&lat, 0.9),
        p99: percentile(&lat, 0.99),
        mb_s: (bytes * n) as f64 / total.as_secs_f64() / 1e6,
        bytes,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let body = Bytes::from(sync_response::sync_response(100));
    let b = body.clone();
    let backend = backend(handler(move |_| {
        let b = b.clone();
        async move {
            let mut r = reply(200, b);
            r.headers_mut().insert(
                "content-type",
                "application/vnd.ms-sync.wbxml".parse().unwrap(),
            );
            r
        }
    }))
    .await;

    // A P-256 recipient certificate (ECDH) for "encrypt"; made in-process.
    let dir = std::env::temp_dir().join(format!("easgate-attbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["attachment-reader".to_string()]).unwrap();
    std::fs::write(dir.join("reader.pem"), ck.cert.pem()).unwrap();
    let cfg: eas::attachment::AttachmentControlConfig = toml::from_str(
        "enabled = true\n[platform.other]\naction = \"deliver\"\n\
         [encryption]\nrecipients = [\"reader.pem\"]\n",
    )
    .unwrap();
    let plain = start(runtime(&[backend.server()])).await;
    let mut rt = runtime(&[backend.server()]);
    rt.attachments = gateway::attachments::compile(&cfg, &dir).unwrap();
    rt.source.attachment_control = cfg;
    let controlled = start(rt).await;

    // The engine alone on the same body (no I/O).
    let policy = eas::attachment::Policy::new(eas::attachment::Decision::Remove);
    let mut engine = Vec::with_capacity(n);
    let mut out_len = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r =
            eas::attachment::wbxml_rewrite::rewrite_response(&body, &policy, &|_| false).unwrap();
        engine.push(t.elapsed());
        out_len = r.body.len();
    }
    engine.sort();

    println!(
        "Sync response: {} bytes, 100 mails, 200 attachments; {n} sequential requests per path",
        body.len()
    );
    println!(
        "engine only (rewrite_response, remove): p50 {:?}, {:.0} MB/s, {} bytes out",
        percentile(&engine, 0.5),
        body.len() as f64 / percentile(&engine, 0.5).as_secs_f64() / 1e6,
        out_len
    );
    println!("| path | p50 | p90 | p99 | MB/s (response bytes) | bytes to device |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let rows = [
        ("backend direct", backend.addr, "SmartPhone"),
        ("gateway, attachment control off", plain.addr, "SmartPhone"),
        (
            "gateway, control on, decision deliver (`other`)",
            controlled.addr,
            "SmartPhone",
        ),
        ("gateway, remove (`ios_native`)", controlled.addr, "iPhone"),
        (
            "gateway, encrypt (`secure_apps`)",
            controlled.addr,
            "Outlook",
        ),
    ];
    let mut p50s = Vec::new();
    for (name, addr, dt) in rows {
        let s = run(addr, dt, n).await;
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {} |",
            s.p50.as_secs_f64() * 1e3,
            s.p90.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.mb_s,
            s.bytes
        );
        p50s.push(s.p50);
    }
    let added = |i: usize| (p50s[i].as_secs_f64() - p50s[1].as_secs_f64()) * 1e3;
    println!(
        "added p50 vs control off: deliver {:+.2} ms, remove {:+.2} ms, encrypt {:+.2} ms (target: remove < 2 ms)",
        added(2),
        added(3),
        added(4)
    );
    let m = controlled.gw.metrics.render();
    let metric = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        metric("easgate_attachment_rewrite_seconds_sum{place=\"sync\"}"),
        metric("easgate_attachment_rewrite_seconds_count{place=\"sync\"}"),
    );
    println!(
        "rewrite inside the gateway (easgate_attachment_rewrite_seconds, remove + encrypt): mean {:.3} ms over {count} responses",
        sum / count.max(1.0) * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
