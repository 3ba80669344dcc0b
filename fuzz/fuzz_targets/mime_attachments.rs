//! Fuzzes the MIME attachment rewriter (`eas::attachment::mime`), which mail from the internet
//! reaches: directly (12.x SmartForward / SmartReply bodies, `compose::rfc822_compose`) and
//! inside WBXML Sync responses (`AirSyncBase:Body` of Type 4, `wbxml_rewrite::rewrite_response`,
//! what the gateway calls for server responses).
//!
//! Invariants checked: nothing panics; "deliver" hands the input back unchanged; "remove" never
//! fails on a body within the size limit, is byte-identical when it reports no change, and
//! leaves no attachment a second look would find (without exclusions); inside WBXML the
//! rewritten response is valid WBXML.
//!
//! Byte 0: bit 0 wraps the message in a Sync response, bits 1-2 pick `max_nesting` (0-3),
//! bit 3 keeps the default exclusions (`ics`, `vcf`). The rest is the message.
#![no_main]

use std::borrow::Cow;

use eas::attachment::compose::rfc822_compose;
use eas::attachment::mime::{attachment_names, rewrite_mime};
use eas::attachment::wbxml_rewrite::rewrite_response;
use eas::attachment::{Decision, Exclusions, Policy};
use libfuzzer_sys::fuzz_target;
use wbxml::Element;

const NONE: &dyn Fn(&str) -> bool = &|_| false;

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).expect("known tag")
}

/// A Sync response with one email whose body is `mime` (Type 4, opaque data).
fn sync_response(mime: &[u8]) -> Vec<u8> {
    let body = el("AirSyncBase", "Body")
        .with_child(el("AirSyncBase", "Type").with_text("4"))
        .with_child(el("AirSyncBase", "Data").with_opaque(mime.to_vec()));
    let add = el("AirSync", "Add")
        .with_child(el("AirSync", "ServerId").with_text("1:1"))
        .with_child(el("AirSync", "ApplicationData").with_child(body));
    el("AirSync", "Sync")
        .with_child(
            el("AirSync", "Collections").with_child(
                el("AirSync", "Collection")
                    .with_child(el("AirSync", "SyncKey").with_text("2"))
                    .with_child(el("AirSync", "CollectionId").with_text("1"))
                    .with_child(el("AirSync", "Status").with_text("1"))
                    .with_child(el("AirSync", "Commands").with_child(add)),
            ),
        )
        .encode()
        .expect("a small tree encodes")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, msg)) = data.split_first() else {
        return;
    };
    let nesting = usize::from((mode >> 1) & 3);
    let mut remove = Policy::new(Decision::Remove);
    remove.max_nesting = nesting;
    if mode & 8 == 0 {
        remove.exclusions = Exclusions::default();
    }

    if mode & 1 != 0 {
        let doc = sync_response(msg);
        let r = rewrite_response(&doc, &remove, NONE).expect("a valid Sync response rewrites");
        Element::parse(&r.body).expect("the rewritten response is WBXML");
        if !r.summary.changed() {
            assert!(matches!(r.body, Cow::Borrowed(_)));
        }
        return;
    }

    let deliver = rewrite_mime(msg, &Policy::new(Decision::Deliver)).expect("deliver never fails");
    assert!(matches!(deliver.body, Cow::Borrowed(b) if b == msg));
    assert!(!deliver.summary.changed());

    let r = rewrite_mime(msg, &remove).expect("remove never fails within the size limit");
    assert_eq!(r.summary.encrypted, 0);
    if !r.summary.changed() {
        assert!(matches!(r.body, Cow::Borrowed(b) if b == msg));
    }
    if remove.exclusions.is_empty() {
        // Every attachment was replaced: a second look finds none.
        assert!(
            attachment_names(&r.body, nesting).is_empty(),
            "left after removal: {:?}",
            attachment_names(&r.body, nesting)
        );
        let twice = rewrite_mime(&r.body, &remove).expect("the output rewrites");
        assert!(
            !twice.summary.changed(),
            "a second removal changed something"
        );
    }

    // 12.x SmartForward / SmartReply: the same rewrite, and the request becomes a SendMail.
    let (c, sendmail) = rfc822_compose(msg, &remove, true).expect("compose never fails here");
    assert!(sendmail);
    assert_eq!(c.body, r.body);
});
