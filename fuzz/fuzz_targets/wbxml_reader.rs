//! Fuzzes the WBXML codec on arbitrary bytes: pull reader (with raw copy), tree, rewrite and
//! the XML bridge both ways. Invariants checked: nothing panics, accepted documents stay
//! within the limits, a keep-everything rewrite is byte-identical, tree and XML round-trip.
//!
//! Byte 0 picks small or default limits and whether a valid EAS header is put in front, so
//! the fuzzer spends its time in the body grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wbxml::{Action, Element, Event, Limits, Reader, Writer, rewrite};

const SMALL: Limits = Limits {
    max_depth: 6,
    max_document_bytes: 4096,
    max_string_bytes: 64,
    max_tree_nodes: 256,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = if mode & 1 == 0 {
        SMALL
    } else {
        Limits::default()
    };
    let mut doc = Vec::with_capacity(rest.len() + 4);
    if mode & 2 == 0 {
        doc.extend_from_slice(&wbxml::wire::EAS_HEADER);
    }
    doc.extend_from_slice(rest);
    if mode & 4 != 0 {
        // XML side: arbitrary text into the XML encoder.
        if let Ok(text) = std::str::from_utf8(rest)
            && let Ok(tree) = wbxml::xml::parse_xml_with_limits(text, &limits)
            && let Ok(bytes) = tree.encode()
        {
            assert_eq!(Element::parse(&bytes).as_ref(), Ok(&tree));
        }
        return;
    }

    // Pull reader + raw copy.
    let mut copied = Writer::new();
    let mut complete = false;
    if let Ok(mut reader) = Reader::with_limits(&doc, &limits) {
        loop {
            match reader.next_event() {
                Ok(Some(ev)) => {
                    assert!(reader.depth() <= limits.max_depth);
                    if let Event::Text(t) | Event::Opaque(t) = ev {
                        assert!(t.len() <= limits.max_string_bytes);
                    }
                    copied
                        .copy_event(&reader, &ev)
                        .expect("reader output is writable");
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(_) => break,
            }
        }
    }

    // Tree, rewrite, XML.
    match Element::parse_with_limits(&doc, &limits) {
        Ok(tree) => {
            assert!(complete);
            let kept =
                rewrite(&doc, &limits, |_, _| Action::Keep).expect("accepted document rewrites");
            assert_eq!(kept, doc);
            let encoded = tree.encode().expect("parsed tree encodes");
            assert_eq!(Element::parse(&encoded).as_ref(), Ok(&tree));
            if let Ok(xml) = tree.to_xml() {
                let _ = wbxml::xml::parse_xml(&xml);
            }
            let _ = rewrite(&doc, &limits, |t, anc| {
                if !anc.is_empty() && t.token % 3 == 0 {
                    Action::Drop
                } else {
                    Action::Keep
                }
            });
        }
        Err(_) => {
            let _ = rewrite(&doc, &limits, |_, _| Action::Keep);
        }
    }
});
