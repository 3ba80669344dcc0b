//! Property tests of the attachment rewrite: never panics, always valid WBXML, deliver is
//! byte-identical, remove leaves no Attachment and every other token unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::borrow::Cow;

use eas::attachment::wbxml_rewrite::{rewrite_multipart, rewrite_response};
use eas::attachment::{Decision, Exclusions, Policy, mime};
use proptest::prelude::*;
use wbxml::{Action, Element, Event, Limits, Node, Reader, Tag};

const NONE: &dyn Fn(&str) -> bool = &|_| false;

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).unwrap()
}

#[derive(Debug, Clone)]
struct Att {
    name: String,
    legacy: bool,
}

#[derive(Debug, Clone)]
struct Mail {
    subject: String,
    body_type: u8,
    body: String,
    atts: Vec<Att>,
}

fn att() -> impl Strategy<Value = Att> {
    (
        prop::sample::select(vec![
            "a.pdf",
            "invite.ics",
            "card.VCF",
            "x",
            "b.docx",
            "ü.txt",
        ]),
        any::<bool>(),
    )
        .prop_map(|(n, legacy)| Att {
            name: n.to_owned(),
            legacy,
        })
}

fn mail() -> impl Strategy<Value = Mail> {
    (
        "[a-zA-Z0-9 ]{0,20}",
        prop::sample::select(vec![1u8, 2, 4]),
        "[a-zA-Z0-9 <>/\r\n]{0,60}",
        prop::collection::vec(att(), 0..4),
    )
        .prop_map(|(subject, body_type, body, atts)| Mail {
            subject,
            body_type,
            body,
            atts,
        })
}

fn build(mails: &[Mail]) -> Vec<u8> {
    let mut commands = el("AirSync", "Commands");
    for (i, m) in mails.iter().enumerate() {
        let mut app = el("AirSync", "ApplicationData")
            .with_child(el("Email", "Subject").with_text(m.subject.clone()))
            .with_child(
                el("AirSyncBase", "Body")
                    .with_child(el("AirSyncBase", "Type").with_text(m.body_type.to_string()))
                    .with_child(el("AirSyncBase", "Data").with_text(m.body.clone())),
            );
        let (legacy, modern): (Vec<_>, Vec<_>) = m.atts.iter().partition(|a| a.legacy);
        if !modern.is_empty() {
            let mut list = el("AirSyncBase", "Attachments");
            for (j, a) in modern.iter().enumerate() {
                list = list.with_child(
                    el("AirSyncBase", "Attachment")
                        .with_child(el("AirSyncBase", "DisplayName").with_text(a.name.clone()))
                        .with_child(
                            el("AirSyncBase", "FileReference").with_text(format!("m/{i}/{j}")),
                        )
                        .with_child(el("AirSyncBase", "Method").with_text("1")),
                );
            }
            app = app.with_child(list);
        }
        if !legacy.is_empty() {
            let mut list = el("Email", "Attachments");
            for a in legacy {
                list = list.with_child(
                    el("Email", "Attachment")
                        .with_child(el("Email", "AttName").with_text(a.name.clone())),
                );
            }
            app = app.with_child(list);
        }
        app = app.with_child(el("Email", "Read").with_text("0"));
        commands = commands.with_child(
            el("AirSync", "Add")
                .with_text_child("ServerId", i.to_string())
                .unwrap()
                .with_child(app),
        );
    }
    el("AirSync", "Sync")
        .with_child(
            el("AirSync", "Collections").with_child(
                el("AirSync", "Collection")
                    .with_text_child("SyncKey", "1")
                    .unwrap()
                    .with_child(commands),
            ),
        )
        .encode()
        .unwrap()
}

fn is_attachment(t: Tag) -> bool {
    matches!((t.page, t.token), (17, 0x0F) | (2, 0x05))
}

/// Reference: drop non-excluded Attachment elements (and emptied lists) in the tree.
fn reference(tree: &mut Element, excl: &Exclusions) {
    for c in tree.elements_mut() {
        reference(c, excl);
    }
    tree.children.retain(|n| match n {
        Node::Element(e) if is_attachment(e.tag()) => e.elements().any(|f| {
            matches!((f.page, f.token), (17, 0x10) | (2, 0x07))
                && f.text().is_some_and(|t| excl.matches(t))
        }),
        Node::Element(e) if matches!((e.page, e.token), (17, 0x0E) | (2, 0x06)) => {
            !e.children.is_empty()
        }
        _ => true,
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn deliver_is_identical_and_remove_only_drops_attachments(mails in prop::collection::vec(mail(), 0..6)) {
        let doc = build(&mails);
        let r = rewrite_response(&doc, &Policy::new(Decision::Deliver), NONE).unwrap();
        prop_assert!(matches!(r.body, Cow::Borrowed(_)));

        // No exclusions: exactly wbxml's generic drop of the Attachments lists (MIME bodies of
        // these random mails hold no attachment parts).
        let mut p = Policy::new(Decision::Remove);
        p.exclusions = Exclusions::default();
        let r = rewrite_response(&doc, &p, NONE).unwrap();
        let expected = wbxml::rewrite(&doc, &Limits::default(), |t, _| {
            if matches!((t.page, t.token), (17, 0x0E) | (2, 0x06)) { Action::Drop } else { Action::Keep }
        }).unwrap();
        prop_assert_eq!(&*r.body, &expected[..]);
        let total: usize = mails.iter().map(|m| m.atts.len()).sum();
        prop_assert_eq!(r.summary.removed as usize, total);

        // Default exclusions (ics, vcf): tree equals the reference, reader accepts it.
        let p = Policy::new(Decision::Remove);
        let r = rewrite_response(&doc, &p, NONE).unwrap();
        let mut reader = Reader::new(&r.body).unwrap();
        while let Some(e) = reader.next_event().unwrap() {
            if let Event::Start { page, token, .. } = e {
                let _ = Tag::new(page, token);
            }
        }
        let mut want = Element::parse(&doc).unwrap();
        reference(&mut want, &p.exclusions);
        prop_assert_eq!(Element::parse(&r.body).unwrap(), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let p = Policy::new(Decision::Remove);
        let _ = rewrite_response(&bytes, &p, NONE);
        let _ = rewrite_multipart(&bytes, &p, NONE);
        let _ = mime::rewrite_mime(&bytes, &p);
        let mut with_header = vec![0x03, 0x01, 0x6A, 0x00];
        with_header.extend_from_slice(&bytes);
        if let Ok(r) = rewrite_response(&with_header, &p, NONE) {
            prop_assert!(Element::parse(&r.body).is_ok());
        }
    }

    #[test]
    fn mutated_sync_bodies_never_panic_and_output_parses(mails in prop::collection::vec(mail(), 1..4), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut doc = build(&mails);
        let i = at.index(doc.len());
        doc[i] = byte;
        if let Ok(r) = rewrite_response(&doc, &Policy::new(Decision::Remove), NONE) {
            prop_assert!(Reader::new(&r.body).unwrap().all(|e| e.is_ok()));
        }
    }

    #[test]
    fn mime_fuzz_never_panics(parts in prop::collection::vec("[ -~\r\n]{0,80}", 0..8)) {
        let mut msg = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
        for p in &parts {
            msg.push_str("--b\r\n");
            msg.push_str(p);
            msg.push_str("\r\n");
        }
        msg.push_str("--b--\r\n");
        let _ = mime::rewrite_mime(msg.as_bytes(), &Policy::new(Decision::Remove)).unwrap();
    }
}
