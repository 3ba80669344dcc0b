//! Rewriting: untouched parts byte-identical, page state right around edits, and the
//! attachment-stripping case against libwbxml.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;

use common::*;
use wbxml::{Action, Element, Event, Limits, Node, Rewriter, Tag, Writer, rewrite};

fn is_attachments(tag: Tag) -> bool {
    tag.is("AirSyncBase", "Attachments")
}

fn drop_in_tree(el: &mut Element, pred: &dyn Fn(Tag) -> bool) {
    el.children
        .retain(|n| !matches!(n, Node::Element(e) if pred(e.tag())));
    for c in el.elements_mut() {
        drop_in_tree(c, pred);
    }
}

#[test]
fn dropping_attachments_matches_libwbxml() {
    let original = std::fs::read(samples_dir().join(LOSSY_SAMPLE)).unwrap();
    let mut dropped = 0;
    let out = rewrite(&original, &Limits::default(), |tag, _| {
        if is_attachments(tag) {
            dropped += 1;
            Action::Drop
        } else {
            Action::Keep
        }
    })
    .unwrap();
    assert_eq!(dropped, 2);
    let tree = Element::parse(&out).unwrap();
    assert!(!format!("{tree:?}").is_empty());
    // Exactly: the original tree without Attachments, encoded (the tree encoder is checked
    // against libwbxml in samples.rs); the Body Data CR LF bytes are still there.
    let mut expected = Element::parse(&original).unwrap();
    drop_in_tree(&mut expected, &is_attachments);
    assert_eq!(out, expected.encode().unwrap());
    assert!(out.windows(2).any(|w| w == b"\r\n"));
    // libwbxml from the XML with the Attachments elements cut out. The XML form loses the
    // CR LF at the end of the Body Data texts (README caveat), so compare both after the same
    // trimming of texts.
    let xml = std::fs::read_to_string(samples_dir().join("sync-response-attachment.xml")).unwrap();
    let mut cut = String::new();
    let mut skipping = false;
    for line in xml.lines() {
        if line.starts_with("<Attachments xmlns=\"AirSyncBase:\">") {
            skipping = true;
        }
        if !skipping {
            cut.push_str(line);
            cut.push('\n');
        }
        if line == "</Attachments>" {
            skipping = false;
        }
    }
    assert!(!cut.contains("Attachment"));
    assert_eq!(trimmed(&out), xml2wbxml(&cut));
}

/// ApplicationData (AirSync) > Email:To, Email2:ConversationId, Email2:LastVerbExecuted,
/// AirSyncBase:NativeBodyType, Email:Read
fn app_data() -> Vec<u8> {
    let el = Element::named("AirSync", "ApplicationData")
        .unwrap()
        .with_child(Element::named("Email", "To").unwrap().with_text("a@b"))
        .with_child(
            Element::named("Email2", "ConversationId")
                .unwrap()
                .with_opaque(*b"xyz"),
        )
        .with_child(
            Element::named("Email2", "LastVerbExecuted")
                .unwrap()
                .with_text("0"),
        )
        .with_child(
            Element::named("AirSyncBase", "NativeBodyType")
                .unwrap()
                .with_text("1"),
        )
        .with_child(Element::named("Email", "Read").unwrap().with_text("1"));
    el.encode().unwrap()
}

fn check_drop(input: &[u8], pred: &dyn Fn(Tag) -> bool) -> Vec<u8> {
    let out = rewrite(input, &Limits::default(), |t, _| {
        if pred(t) { Action::Drop } else { Action::Keep }
    })
    .unwrap();
    let mut expected = Element::parse(input).unwrap();
    drop_in_tree(&mut expected, pred);
    assert_eq!(
        out,
        expected.encode().unwrap(),
        "minimal SWITCH_PAGEs, as libwbxml writes them"
    );
    out
}

#[test]
fn switch_added_when_the_dropped_subtree_set_the_page() {
    // ConversationId carried the switch to Email2; LastVerbExecuted relied on it.
    let out = check_drop(&app_data(), &|t| t.is("Email2", "ConversationId"));
    assert!(out.windows(3).any(|w| w == [0x00, 22, 0x4B]));
}

#[test]
fn switch_left_out_when_the_edit_made_it_redundant() {
    // Dropping both Email2 and AirSyncBase elements: Read's switch back to Email is redundant.
    let out = check_drop(&app_data(), &|t| t.page == 22 || t.page == 17);
    assert_eq!(
        out.iter().filter(|&&b| b == 0x00).count(),
        1 + 1 + 2,
        "header, Email switch, 2 NULs"
    );
}

#[test]
fn redundant_switches_in_untouched_parts_are_kept() {
    // Ping > SWITCH 13 (redundant) Status "1", HeartbeatInterval "2"; drop HeartbeatInterval.
    let input = [
        0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x45, 0x00, 0x0D, 0x47, 0x03, b'1', 0x00, 0x01, 0x48,
        0x03, b'2', 0x00, 0x01, 0x01,
    ];
    assert_eq!(
        rewrite(&input, &Limits::default(), |_, _| Action::Keep).unwrap(),
        input
    );
    let out = rewrite(&input, &Limits::default(), |t, _| {
        if t.token == 0x08 {
            Action::Drop
        } else {
            Action::Keep
        }
    })
    .unwrap();
    assert_eq!(
        out,
        [
            0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x45, 0x00, 0x0D, 0x47, 0x03, b'1', 0x00, 0x01,
            0x01
        ]
    );
}

#[test]
fn replace_and_insert() {
    let input = app_data();
    let notice = Element::named("AirSyncBase", "NativeBodyType")
        .unwrap()
        .with_text("2");
    let out = rewrite(&input, &Limits::default(), |t, ancestors| {
        assert_eq!(
            ancestors.len(),
            usize::from(!t.is("AirSync", "ApplicationData"))
        );
        if t.is("Email2", "ConversationId") {
            Action::Replace(notice.clone())
        } else {
            Action::Keep
        }
    })
    .unwrap();
    let mut expected = Element::parse(&input).unwrap();
    expected.children[1] = Node::Element(notice);
    assert_eq!(out, expected.encode().unwrap());

    // pull style: insert an element in front of Read, replace To with two elements
    let mut rw = Rewriter::new(&input, &Limits::default()).unwrap();
    while let Some(ev) = rw.next_event().unwrap() {
        if let Event::Start { page, token, .. } = ev {
            let tag = Tag::new(page, token);
            if tag.is("Email", "Read") {
                rw.insert_before(|w: &mut Writer| {
                    Element::named("Email", "Importance")
                        .unwrap()
                        .with_text("2")
                        .write_to(w)
                })
                .unwrap();
            } else if tag.is("Email", "To") {
                rw.replace_subtree(|w| {
                    Element::named("Email", "Cc").unwrap().write_to(w)?;
                    Element::named("Email", "To")
                        .unwrap()
                        .with_text("x@y")
                        .write_to(w)
                })
                .unwrap();
            }
        }
    }
    let out = rw.finish().unwrap();
    let mut expected = Element::parse(&input).unwrap();
    expected.children[0] = Node::Element(Element::named("Email", "To").unwrap().with_text("x@y"));
    expected
        .children
        .insert(0, Node::Element(Element::named("Email", "Cc").unwrap()));
    expected.children.insert(
        5,
        Node::Element(
            Element::named("Email", "Importance")
                .unwrap()
                .with_text("2"),
        ),
    );
    assert_eq!(out, expected.encode().unwrap());
}

#[test]
fn rewriter_misuse_is_an_error_not_a_panic() {
    let input = app_data();
    let mut rw = Rewriter::new(&input, &Limits::default()).unwrap();
    assert!(rw.drop_subtree().is_err());
    rw.next_event().unwrap();
    rw.next_event().unwrap();
    rw.next_event().unwrap(); // text of To
    assert!(rw.drop_subtree().is_err());
    assert!(
        rw.insert_before(|w| w.start(2, 0x16, true)).is_err(),
        "unbalanced insert"
    );
    let root_dropped = rewrite(&input, &Limits::default(), |_, _| Action::Drop);
    assert!(root_dropped.is_err());
}
