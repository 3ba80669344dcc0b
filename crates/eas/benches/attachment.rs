//! Attachment control: rewriting a realistic ~1 MB Sync response (100 mails, HTML bodies of
//! ~8 KB, 2 attachments each). Target: rewriting adds < 2 ms at p50.
//! `cargo bench -p eas --bench attachment`; medians in target/criterion/*/new/estimates.json.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eas::attachment::wbxml_rewrite::rewrite_response;
use eas::attachment::{Decision, Policy};
use wbxml::Element;

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).expect("tag")
}

/// Deterministic Sync response: `n` Email Add items.
fn sync_response(n: usize) -> Vec<u8> {
    let para = "<p>Quarterly figures for the project are attached; please review the numbers \
                before Friday's meeting and send comments to the team.</p>\r\n";
    let mut commands = el("AirSync", "Commands");
    for i in 0..n {
        let mut html = String::from("<html><body>");
        while html.len() < 10 * 1024 - 300 {
            html.push_str(para);
        }
        html.push_str("</body></html>");
        let mut atts = el("AirSyncBase", "Attachments");
        for (j, name) in ["report.pdf", "figures.xlsx"].iter().enumerate() {
            atts = atts.with_child(
                el("AirSyncBase", "Attachment")
                    .with_child(el("AirSyncBase", "DisplayName").with_text(*name))
                    .with_child(
                        el("AirSyncBase", "FileReference")
                            .with_text(format!("mail/INBOX/{i}/{}", j + 2)),
                    )
                    .with_child(el("AirSyncBase", "Method").with_text("1"))
                    .with_child(el("AirSyncBase", "EstimatedDataSize").with_text("56700")),
            );
        }
        let app = el("AirSync", "ApplicationData")
            .with_child(el("Email", "To").with_text("\"User One\" <user1@example.test>"))
            .with_child(el("Email", "From").with_text("\"Bob\" <bob@example.test>"))
            .with_child(el("Email", "Subject").with_text(format!("Report {i}")))
            .with_child(el("Email", "DateReceived").with_text("2024-01-02T11:00:00.000Z"))
            .with_child(el("Email", "Read").with_text("0"))
            .with_child(
                el("AirSyncBase", "Body")
                    .with_child(el("AirSyncBase", "Type").with_text("2"))
                    .with_child(
                        el("AirSyncBase", "EstimatedDataSize").with_text(html.len().to_string()),
                    )
                    .with_child(el("AirSyncBase", "Data").with_text(html)),
            )
            .with_child(atts)
            .with_child(el("AirSyncBase", "NativeBodyType").with_text("2"));
        commands = commands.with_child(
            el("AirSync", "Add")
                .with_child(el("AirSync", "ServerId").with_text(i.to_string()))
                .with_child(app),
        );
    }
    el("AirSync", "Sync")
        .with_child(
            el("AirSync", "Collections").with_child(
                el("AirSync", "Collection")
                    .with_child(el("AirSync", "SyncKey").with_text("1-100"))
                    .with_child(el("AirSync", "CollectionId").with_text("mail%2Finbox"))
                    .with_child(el("AirSync", "Status").with_text("1"))
                    .with_child(commands),
            ),
        )
        .encode()
        .expect("encode")
}

fn bench(c: &mut Criterion) {
    let body = sync_response(100);
    let none: &dyn Fn(&str) -> bool = &|_| false;
    println!(
        "sync response: {} bytes, 100 mails, 200 attachments",
        body.len()
    );
    let mut g = c.benchmark_group("attachment_sync_1mb");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(BenchmarkId::new("copy", "plain proxy path (to_vec)"), |b| {
        b.iter(|| std::hint::black_box(body.to_vec()))
    });
    for (label, decision) in [("deliver", Decision::Deliver), ("remove", Decision::Remove)] {
        let policy = Policy::new(decision);
        g.bench_function(BenchmarkId::new("rewrite", label), |b| {
            b.iter(|| {
                let r =
                    rewrite_response(std::hint::black_box(&body), &policy, none).expect("rewrite");
                std::hint::black_box(r.body.len())
            })
        });
    }
    // Encrypt needs a recipient certificate: made with the openssl CLI when it is there.
    let recipients = test_recipients();
    if let Some(recipients) = &recipients {
        let policy = Policy::new(Decision::Encrypt(recipients.clone()));
        g.bench_function(
            BenchmarkId::new("rewrite", "encrypt (rename to .p7m)"),
            |b| {
                b.iter(|| {
                    let r = rewrite_response(std::hint::black_box(&body), &policy, none)
                        .expect("rewrite");
                    std::hint::black_box(r.body.len())
                })
            },
        );
    }
    g.finish();
    if let Some(recipients) = &recipients {
        let attachment = vec![0x5Au8; 1 << 20];
        let mut g = c.benchmark_group("attachment_cms_1mib");
        g.throughput(Throughput::Bytes(attachment.len() as u64));
        g.bench_function("envelope (AES-256-CBC + RSA-OAEP 2048)", |b| {
            b.iter(|| {
                let der = eas::attachment::encrypt::envelope(
                    std::hint::black_box(&attachment),
                    recipients,
                )
                .expect("envelope");
                std::hint::black_box(der.len())
            })
        });
        g.finish();
    }
}

fn test_recipients() -> Option<std::sync::Arc<eas::attachment::Recipients>> {
    let dir = std::env::temp_dir().join(format!("easgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let cert = dir.join("cert.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bench",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?
        .status
        .success();
    let pem = std::fs::read(&cert).ok().filter(|_| ok)?;
    let _ = std::fs::remove_dir_all(&dir);
    eas::attachment::Recipients::from_pem(&pem)
        .ok()
        .map(std::sync::Arc::new)
}

criterion_group!(benches, bench);
criterion_main!(benches);
