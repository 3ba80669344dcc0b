//! Issue 5 end to end over real sockets: a device → the gateway → a scripted backend serving the
//! real SOGo captures (`shared/eas-samples/`) and bodies built with `crates/wbxml`, for every
//! place an attachment travels and every action. Encrypted bytes are opened with the real
//! `openssl cms -decrypt` and compared with the original attachment.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod attachments_support;
mod support;

use attachments_support::*;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use support::*;
use wbxml::Element;

const WBXML: &str = "application/vnd.ms-sync.wbxml";
const MULTIPART: &str = "application/vnd.ms-sync.multipart";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn typed(status: u16, ct: &str, body: impl Into<Bytes>) -> Response<TBody> {
    let mut r = reply(status, body);
    r.headers_mut().insert("content-type", ct.parse().unwrap());
    r.headers_mut()
        .insert("ms-server-activesync", "14.1".parse().unwrap());
    r
}

/// A backend answering every request with `status`, `ct` and `body`.
async fn serving(status: u16, ct: &'static str, body: Vec<u8>) -> Backend {
    let body = Bytes::from(body);
    backend(handler(move |_| {
        let body = body.clone();
        async move { typed(status, ct, body) }
    }))
    .await
}

/// Gateway in front of `b` with `[attachment_control]` (`keys` / `tables` as in
/// [`Keys::config`]).
async fn gateway(k: &Keys, keys: &str, tables: &str, b: &Backend) -> RunningGateway {
    let mut rt = runtime(&[b.server()]);
    k.apply(&mut rt, k.config(keys, tables));
    start(rt).await
}

async fn send(gw: &RunningGateway, r: Request<TBody>) -> (StatusCode, HeaderMap, Bytes) {
    let mut d = device(gw.addr, None, false).await;
    d.send(r).await
}

fn content_length(h: &HeaderMap) -> usize {
    h["content-length"].to_str().unwrap().parse().unwrap()
}

// ------------------------------------------------------------------------------ Sync

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_capture_remove_encrypt_and_deliver() {
    let original = sample("sync-response-attachment.wbxml");
    let k = Keys::new();
    let b = serving(200, WBXML, original.clone()).await;
    let gw = gateway(&k, "", "[platform.other]\naction = \"deliver\"", &b).await;

    // remove (iPhone → ios_native): no Attachments left, everything else token-identical.
    let (st, h, body) = send(&gw, req("Sync", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(content_length(&h), body.len(), "exact Content-Length");
    let doc = Element::parse(&body).expect("valid WBXML");
    assert!(!has(&doc, "Attachments") && !has(&doc, "FileReference"));
    let before = Element::parse(&original).unwrap();
    assert_eq!(texts(&doc, "Subject"), texts(&before, "Subject"));
    assert_eq!(texts(&doc, "Data"), texts(&before, "Data"));
    let expected = eas::attachment::wbxml_rewrite::rewrite_response(
        &original,
        &eas::attachment::Policy::new(eas::attachment::Decision::Remove),
        &|_| false,
    )
    .unwrap();
    assert_eq!(&body[..], &expected.body[..], "token-level rewrite");
    assert!(
        b.seen()[0].headers.get("accept-encoding").is_none(),
        "a response to rewrite is asked for unencoded"
    );
    let audit_metrics = gw.gw.metrics.render();
    assert!(
        audit_metrics.contains("easgate_attachments_total{outcome=\"removed\",place=\"sync\"} 2"),
        "{audit_metrics}"
    );
    assert!(audit_metrics.contains("easgate_attachment_rewrite_seconds_count{place=\"sync\"} 1"));

    // encrypt (Outlook → secure_apps): the attachment is announced as `.p7m`.
    let (st, h, body) = send(&gw, req("Sync", "Outlook", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(content_length(&h), body.len());
    let doc = Element::parse(&body).unwrap();
    assert_eq!(
        texts(&doc, "DisplayName"),
        ["report.pdf.p7m", "note.txt.p7m"]
    );
    assert_eq!(
        texts(&doc, "FileReference"),
        ["mail/INBOX/2/2", "mail/INBOX/3/2"]
    );

    // deliver (SmartPhone → other = deliver): byte-identical, headers as the server sent them.
    let (st, _, body) = send(&gw, req("Sync", "SmartPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&body[..], &original[..], "deliver is byte-identical");
    assert_eq!(
        b.seen()[2].headers.get("accept-encoding").unwrap(),
        "gzip",
        "deliver leaves the request alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_control_is_byte_identical() {
    let original = sample("sync-response-attachment.wbxml");
    let b = serving(200, WBXML, original.clone()).await;
    let gw = start(runtime(&[b.server()])).await;
    let (st, _, body) = send(&gw, req("Sync", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&body[..], &original[..]);
}

/// The MIME of `shared/eas-samples/sendmail-request.wbxml` (an attachment `secret.bin`).
fn sample_mime() -> Vec<u8> {
    let doc = Element::parse(&sample("sendmail-request.wbxml")).unwrap();
    doc.find("Mime").and_then(Element::opaque).unwrap().to_vec()
}

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).unwrap()
}

fn leaf(ns: &str, name: &str, text: &str) -> Element {
    el(ns, name).with_text(text)
}

fn attachment(name: &str, file_ref: &str) -> Element {
    el("AirSyncBase", "Attachment")
        .with_child(leaf("AirSyncBase", "DisplayName", name))
        .with_child(leaf("AirSyncBase", "FileReference", file_ref))
        .with_child(leaf("AirSyncBase", "Method", "1"))
        .with_child(leaf("AirSyncBase", "EstimatedDataSize", "32"))
}

/// A Sync response built with `crates/wbxml`: one mail with a MIME body (Body Type 4) holding
/// `secret.bin`, and item attachments `secret.bin` and `invite.ics` (excluded by default).
fn built_sync(mime: &[u8]) -> Vec<u8> {
    let item = el("AirSync", "ApplicationData")
        .with_child(leaf("Email", "Subject", "mime with attachment"))
        .with_child(
            el("AirSyncBase", "Body")
                .with_child(leaf("AirSyncBase", "Type", "4"))
                .with_child(leaf(
                    "AirSyncBase",
                    "Data",
                    std::str::from_utf8(mime).unwrap(),
                )),
        )
        .with_child(
            el("AirSyncBase", "Attachments")
                .with_child(attachment("secret.bin", "mail/INBOX/7/2"))
                .with_child(attachment("invite.ics", "mail/INBOX/7/3")),
        );
    el("AirSync", "Sync")
        .with_child(
            el("AirSync", "Collections").with_child(
                el("AirSync", "Collection")
                    .with_child(leaf("AirSync", "SyncKey", "2"))
                    .with_child(leaf("AirSync", "CollectionId", "inbox"))
                    .with_child(leaf("AirSync", "Status", "1"))
                    .with_child(
                        el("AirSync", "Commands").with_child(
                            el("AirSync", "Add")
                                .with_child(leaf("AirSync", "ServerId", "7"))
                                .with_child(item),
                        ),
                    ),
            ),
        )
        .encode()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mime_body_and_excluded_attachment_then_getattachment() {
    let mime = sample_mime();
    let sync = built_sync(&mime);
    let ics = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".to_vec();
    let k = Keys::new();
    let ics2 = ics.clone();
    let sync2 = sync.clone();
    let b = backend(handler(move |s| {
        let (ics, sync) = (ics2.clone(), sync2.clone());
        async move {
            if s.uri.contains("Cmd=GetAttachment") {
                typed(200, "text/calendar", ics)
            } else {
                typed(200, WBXML, sync)
            }
        }
    }))
    .await;
    let gw = gateway(&k, "", "", &b).await;

    // remove: the MIME part and the item attachment go, the excluded .ics stays.
    let (st, h, body) = send(&gw, req("Sync", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(content_length(&h), body.len());
    let doc = Element::parse(&body).unwrap();
    assert_eq!(texts(&doc, "DisplayName"), ["invite.ics"]);
    let data = texts(&doc, "Data").remove(0);
    assert!(!data.contains("c2VjcmV0IGF0dGFjaG1lbnQgYnl0ZXMK"));
    assert!(data.contains("[Attachment \"secret.bin\" removed by the email security gateway.]"));

    // GetAttachment (12.1): the excluded reference seen in that Sync is delivered as-is; the
    // other one is refused without asking the server.
    let n = b.count();
    let (st, _, body) = send(
        &gw,
        req(
            "GetAttachment",
            "iPhone",
            "&AttachmentName=mail%2FINBOX%2F7%2F3",
            "12.1",
            empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&body[..], &ics[..], "excluded attachment delivered as-is");
    assert_eq!(b.count(), n + 1);
    let (st, _, body) = send(
        &gw,
        req(
            "GetAttachment",
            "iPhone",
            "&AttachmentName=mail%2FINBOX%2F7%2F2",
            "12.1",
            empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.is_empty());
    assert_eq!(b.count(), n + 1, "a removed attachment is never fetched");

    // encrypt: the MIME part becomes CMS that openssl opens to the original bytes.
    let (st, _, body) = send(&gw, req("Sync", "Outlook", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    let doc = Element::parse(&body).unwrap();
    assert_eq!(texts(&doc, "DisplayName"), ["secret.bin.p7m", "invite.ics"]);
    let data = texts(&doc, "Data").remove(0);
    let der = eas::attachment::mime::base64_lenient(part_body(data.as_bytes(), "secret.bin.p7m"));
    assert_eq!(k.decrypt(&der), b"secret attachment bytes\n");
}

// ------------------------------------------------------------------------------ ItemOperations

fn fetch_data(doc: &Element) -> Option<Vec<u8>> {
    texts(doc, "Data")
        .first()
        .map(|d| B64.decode(d.trim()).expect("base64 Data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn itemoperations_inline_capture() {
    let original = sample("itemoperations-fetch-attachment-response.wbxml");
    let pdf = fetch_data(&Element::parse(&original).unwrap()).unwrap();
    let k = Keys::new();
    let b = serving(200, WBXML, original.clone()).await;
    let gw = gateway(&k, "", "[platform.other]\naction = \"deliver\"", &b).await;

    let (st, h, body) = send(&gw, req("ItemOperations", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(content_length(&h), body.len());
    let doc = Element::parse(&body).unwrap();
    assert_eq!(
        doc.find_path(&["Response", "Fetch", "Status"])
            .and_then(Element::text),
        Some("15"),
        "Fetch Status 15: attachment not available"
    );
    assert_eq!(doc.find("Status").and_then(Element::text), Some("1"));
    assert!(!has(&doc, "Properties") && !has(&doc, "Data"));
    assert_eq!(texts(&doc, "FileReference"), ["mail/INBOX/2/2"]);

    let (st, h, body) = send(&gw, req("ItemOperations", "Outlook", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(content_length(&h), body.len());
    let doc = Element::parse(&body).unwrap();
    assert_eq!(texts(&doc, "ContentType"), ["application/pkcs7-mime"]);
    let der = fetch_data(&doc).unwrap();
    assert_eq!(k.decrypt(&der), pdf, "openssl opens the original PDF");

    let (_, _, body) = send(
        &gw,
        req("ItemOperations", "SmartPhone", "", "14.1", empty()),
    )
    .await;
    assert_eq!(&body[..], &original[..], "deliver is byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn itemoperations_multipart_capture() {
    let original = sample("itemoperations-fetch-attachment-multipart-response.bin");
    let raw = eas::Multipart::parse(&original)
        .unwrap()
        .part(1)
        .unwrap()
        .to_vec();
    let k = Keys::new();
    let b = serving(200, MULTIPART, original.clone()).await;
    let gw = gateway(&k, "", "[platform.other]\naction = \"deliver\"", &b).await;

    let (st, h, body) = send(&gw, req("ItemOperations", "iPhone", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], MULTIPART);
    assert_eq!(content_length(&h), body.len());
    let mp = eas::Multipart::parse(&body).expect("valid multipart");
    let doc = Element::parse(mp.wbxml()).unwrap();
    assert_eq!(
        doc.find_path(&["Response", "Fetch", "Status"])
            .and_then(Element::text),
        Some("15")
    );
    assert!(
        mp.parts().iter().skip(1).all(|p| p.is_empty()),
        "raw part emptied"
    );

    let (st, _, body) = send(&gw, req("ItemOperations", "Outlook", "", "14.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    let mp = eas::Multipart::parse(&body).unwrap();
    assert_eq!(
        k.decrypt(mp.part(1).unwrap()),
        raw,
        "part 1 opens to the original"
    );

    let (_, _, body) = send(
        &gw,
        req("ItemOperations", "SmartPhone", "", "14.1", empty()),
    )
    .await;
    assert_eq!(&body[..], &original[..]);
}

// ------------------------------------------------------------------------------ GetAttachment

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getattachment_raw_bytes() {
    let pdf = fetch_data(
        &Element::parse(&sample("itemoperations-fetch-attachment-response.wbxml")).unwrap(),
    )
    .unwrap();
    let k = Keys::new();
    let b = serving(200, "application/pdf", pdf.clone()).await;
    let gw = gateway(&k, "", "[platform.other]\naction = \"deliver\"", &b).await;
    let q = "&AttachmentName=mail%2FINBOX%2F2%2F2";

    let (st, _, body) = send(&gw, req("GetAttachment", "iPhone", q, "12.1", empty())).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.is_empty());
    assert_eq!(b.count(), 0, "remove: the server is never asked");

    let (st, h, body) = send(&gw, req("GetAttachment", "Outlook", q, "12.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/pkcs7-mime");
    assert_eq!(content_length(&h), body.len());
    assert_eq!(k.decrypt(&body), pdf);

    let (st, h, body) = send(&gw, req("GetAttachment", "SmartPhone", q, "12.1", empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(&body[..], &pdf[..]);
}

// ------------------------------------------------------------------------------ SmartForward

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartforward_and_smartreply_requests_seen_by_the_backend() {
    let k = Keys::new();
    let b = serving(200, WBXML, Vec::new()).await;
    let gw = gateway(&k, "", "[platform.other]\naction = \"deliver\"", &b).await;
    let original = sample("smartforward-request.wbxml");

    // 14.1 WBXML under remove: ReplaceMime inserted, the device's MIME untouched.
    let (st, _, _) = send(
        &gw,
        req(
            "SmartForward",
            "iPhone",
            "&ItemId=2&CollectionId=inbox",
            "14.1",
            full(original.clone()),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let seen = b.seen().pop().unwrap();
    assert!(seen.uri.contains("Cmd=SmartForward"));
    assert_eq!(content_length(&seen.headers), seen.body.len());
    let doc = Element::parse(&seen.body).unwrap();
    assert!(doc.find("ReplaceMime").is_some(), "ReplaceMime inserted");
    let before = Element::parse(&original).unwrap();
    assert_eq!(
        doc.find("Mime").and_then(Element::opaque),
        before.find("Mime").and_then(Element::opaque)
    );
    assert!(doc.find("Source").is_some(), "the forward link is kept");

    // 12.1 message/rfc822 under encrypt: no ReplaceMime in 12.x, so it goes out as SendMail.
    let mime = sample_mime();
    let mut r = req(
        "SmartReply",
        "Outlook",
        "&ItemId=2&CollectionId=inbox&SaveInSent=T",
        "12.1",
        full(mime.clone()),
    );
    r.headers_mut()
        .insert("content-type", "message/rfc822".parse().unwrap());
    let (st, _, _) = send(&gw, r).await;
    assert_eq!(st, StatusCode::OK);
    let seen = b.seen().pop().unwrap();
    assert!(seen.uri.contains("Cmd=SendMail"), "{}", seen.uri);
    assert!(!seen.uri.contains("ItemId") && seen.uri.contains("SaveInSent=T"));
    assert_eq!(&seen.body[..], &mime[..]);

    // deliver: unchanged.
    let (st, _, _) = send(
        &gw,
        req(
            "SmartForward",
            "SmartPhone",
            "&ItemId=2",
            "14.1",
            full(original.clone()),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let seen = b.seen().pop().unwrap();
    assert_eq!(&seen.body[..], &original[..]);

    // A SmartForward the gateway cannot parse is refused, never forwarded.
    let n = b.count();
    let (st, _, _) = send(
        &gw,
        req(
            "SmartForward",
            "iPhone",
            "&ItemId=2",
            "14.1",
            full(&b"junk"[..]),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b.count(), n);
}

// ------------------------------------------------------------------------------ on_oversize

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_unparsable_and_encoded_bodies_follow_on_oversize() {
    let k = Keys::new();
    let mut padded = sample_mime();
    let at = padded.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    padded.splice(
        at..at,
        b"\r\nX-Padding: ".iter().copied().chain([b'p'; 2000]),
    );
    let big = built_sync(&padded);
    assert!(big.len() > 2048);
    let big2 = big.clone();
    let b = backend(handler(move |s| {
        let big = big2.clone();
        async move {
            match s.headers.get("x-case").and_then(|v| v.to_str().ok()) {
                Some("big") => typed(200, WBXML, big),
                Some("chunked") => {
                    let (tx, body) = channel_body();
                    tokio::spawn(async move {
                        for c in big.chunks(700) {
                            let _ = tx.send(Bytes::copy_from_slice(c)).await;
                        }
                    });
                    let mut r = Response::new(body);
                    r.headers_mut()
                        .insert("content-type", WBXML.parse().unwrap());
                    r
                }
                Some("garbage") => typed(200, WBXML, &b"<html>oops</html>"[..]),
                Some("gzip") => {
                    let mut r = typed(200, WBXML, &b"\x1f\x8b\x08\x00"[..]);
                    r.headers_mut()
                        .insert("content-encoding", "gzip".parse().unwrap());
                    r
                }
                _ => typed(449, "text/plain", &b"provision first"[..]),
            }
        }
    }))
    .await;
    let case = |dev: &str, c: &str| {
        let mut r = req("Sync", dev, "", "14.1", empty());
        r.headers_mut().insert("x-case", c.parse().unwrap());
        r
    };

    for (on, expect_pass) in [("block", false), ("deliver", true)] {
        let gw = gateway(
            &k,
            &format!("max_body_bytes = 1024\non_oversize = \"{on}\""),
            "",
            &b,
        )
        .await;
        for c in ["big", "chunked", "garbage", "gzip"] {
            let (st, _, body) = send(&gw, case("iPhone", c)).await;
            if expect_pass {
                assert_eq!(st, StatusCode::OK, "{on}/{c}");
                let want: &[u8] = match c {
                    "big" | "chunked" => &big,
                    "garbage" => b"<html>oops</html>",
                    _ => b"\x1f\x8b\x08\x00",
                };
                assert_eq!(&body[..], want, "{on}/{c}: passed unchanged");
            } else {
                assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{on}/{c}");
                assert!(body.is_empty(), "{on}/{c}: nothing unchecked is passed");
            }
        }
        // Error statuses carry no attachment: passed as they are.
        let (st, _, body) = send(&gw, case("iPhone", "none")).await;
        assert_eq!(st.as_u16(), 449);
        assert_eq!(&body[..], b"provision first");
        let m = gw.gw.metrics.render();
        let outcome = if expect_pass {
            "oversize_delivered"
        } else {
            "oversize_blocked"
        };
        assert!(m.contains(outcome), "{m}");
    }
}
