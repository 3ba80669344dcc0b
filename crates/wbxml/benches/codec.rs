//! Decode (pull reader over every event) and decode+rewrite (drop every AirSyncBase:Attachments)
//! on a realistic ~1 MB Sync response with 100 mails. `scripts/bench-wbxml.sh` runs it beside
//! libwbxml2's `wbxml2xml` on the same bytes. A token-dense variant (100-byte bodies) shows the
//! reader's speed where memchr over long strings does not help.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

#[path = "support/sync_response.rs"]
mod sync_response;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wbxml::{Action, Element, Event, Limits, Reader, rewrite};

fn bench_doc(c: &mut Criterion, group_name: &str, doc: &[u8]) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.bench_function("decode_pull_reader", |b| {
        b.iter(|| {
            let mut reader = Reader::new(black_box(doc)).unwrap();
            let mut n = 0usize;
            while let Some(ev) = reader.next_event().unwrap() {
                if let Event::Text(t) | Event::Opaque(t) = ev {
                    n += t.len();
                } else {
                    n += 1;
                }
            }
            n
        })
    });
    group.bench_function("decode_rewrite_drop_attachments", |b| {
        b.iter(|| {
            rewrite(black_box(doc), &Limits::default(), |tag, _| {
                if tag.is("AirSyncBase", "Attachments") {
                    Action::Drop
                } else {
                    Action::Keep
                }
            })
            .unwrap()
        })
    });
    group.bench_function("decode_tree", |b| {
        b.iter(|| Element::parse(black_box(doc)).unwrap())
    });
    group.bench_function("decode_to_xml", |b| {
        b.iter(|| wbxml::xml::to_xml(black_box(doc)).unwrap())
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    // The realistic case: ~1 MB, 100 mails with ~9.5 KB HTML bodies.
    bench_doc(
        c,
        "sync_response_100_mails",
        &sync_response::sync_response(100),
    );
    // Worst case for the reader: same structure with 100-byte bodies, mostly tags.
    bench_doc(
        c,
        "token_dense_100_mails",
        &sync_response::sync_response_with_bodies(100, 100),
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
