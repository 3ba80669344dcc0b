//! Property tests: random valid trees round-trip (binary and XML), rewrites equal tree edits,
//! and random or mutated bytes never panic and never get past the limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use proptest::prelude::*;
use wbxml::codepage::{self, TagDef};
use wbxml::{Action, Element, Error, Event, Limits, Node, Reader, Tag, Writer, rewrite};

fn any_tag() -> impl Strategy<Value = (u8, TagDef)> {
    (0u8..codepage::PAGE_COUNT as u8).prop_flat_map(|p| {
        let tags = codepage::page(p).map_or(&[][..], |pg| pg.tags);
        (Just(p), proptest::sample::select(tags))
    })
}

/// Any tree the binary format can carry (mixed content, adjacent strings, any bytes).
fn any_tree() -> impl Strategy<Value = Element> {
    let leaf = (any_tag(), prop::collection::vec(any_content(), 0..3)).prop_map(
        |((page, def), children)| Element {
            page,
            token: def.token,
            children,
        },
    );
    leaf.prop_recursive(5, 48, 6, |inner| {
        (
            any_tag(),
            prop::collection::vec(
                prop_oneof![inner.prop_map(Node::Element), any_content()],
                0..6,
            ),
        )
            .prop_map(|((page, def), children)| Element {
                page,
                token: def.token,
                children,
            })
    })
}

fn any_content() -> impl Strategy<Value = Node> {
    prop_oneof![
        "[^\u{0}]{0,12}".prop_map(Node::Text),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Node::Opaque),
    ]
}

/// Trees the XML form carries exactly: no mixed content, text without surrounding
/// whitespace or CR, opaque content only in opaque-marked tags, no empty content.
fn xml_tree() -> impl Strategy<Value = Element> {
    let leaf = (
        any_tag(),
        "[ -~é€😀\t\n]{1,16}",
        prop::collection::vec(any::<u8>(), 1..16),
        any::<bool>(),
    )
        .prop_filter_map(
            "text must stay after trimming",
            |((page, def), text, bytes, empty)| {
                let mut el = Element::new(page, def.token);
                if empty {
                    return Some(el);
                }
                if def.opaque {
                    el.children.push(Node::Opaque(bytes));
                } else {
                    let t = text.trim_matches([' ', '\t', '\n']);
                    if t.is_empty() {
                        return None;
                    }
                    el.children.push(Node::Text(t.to_owned()));
                }
                Some(el)
            },
        );
    leaf.prop_recursive(5, 48, 6, |inner| {
        (any_tag(), prop::collection::vec(inner, 1..6)).prop_map(|((page, def), kids)| Element {
            page,
            token: def.token,
            children: kids.into_iter().map(Node::Element).collect(),
        })
    })
}

fn depth(el: &Element) -> usize {
    1 + el.elements().map(depth).max().unwrap_or(0)
}

fn check_within(el: &Element, limits: &Limits, nodes: &mut usize) {
    *nodes += 1;
    for c in &el.children {
        match c {
            Node::Element(e) => check_within(e, limits, nodes),
            Node::Text(t) => {
                *nodes += 1;
                assert!(t.len() <= limits.max_string_bytes);
            }
            Node::Opaque(o) => {
                *nodes += 1;
                assert!(o.len() <= limits.max_string_bytes);
            }
        }
    }
}

const SMALL: Limits = Limits {
    max_depth: 4,
    max_document_bytes: 300,
    max_string_bytes: 8,
    max_tree_nodes: 40,
};

/// Everything the crate offers on untrusted bytes; none of it may panic, and whatever is
/// accepted stays within `limits`.
fn exercise(bytes: &[u8], limits: &Limits) {
    if let Ok(mut r) = Reader::with_limits(bytes, limits) {
        let mut w = Writer::new();
        while let Ok(Some(ev)) = r.next_event() {
            assert!(r.depth() <= limits.max_depth);
            if let Event::Text(t) | Event::Opaque(t) = ev {
                assert!(t.len() <= limits.max_string_bytes);
            }
            let _ = w.copy_event(&r, &ev);
        }
    }
    if let Ok(tree) = Element::parse_with_limits(bytes, limits) {
        assert!(bytes.len() <= limits.max_document_bytes);
        assert!(depth(&tree) <= limits.max_depth);
        let mut nodes = 0;
        check_within(&tree, limits, &mut nodes);
        assert!(nodes <= limits.max_tree_nodes);
        assert_eq!(tree.encode().map(|b| b.len() <= bytes.len()), Ok(true));
        let kept = rewrite(bytes, limits, |_, _| Action::Keep).unwrap();
        assert_eq!(kept, bytes);
    }
    if let Ok(xml) = wbxml::xml::to_xml_with_limits(bytes, limits) {
        let _ = wbxml::xml::from_xml_with_limits(&xml, limits);
    }
    let _ = rewrite(bytes, limits, |t, _| {
        if t.token.is_multiple_of(3) {
            Action::Drop
        } else {
            Action::Keep
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn trees_round_trip(tree in any_tree()) {
        let bytes = tree.encode().unwrap();
        prop_assert_eq!(&Element::parse(&bytes).unwrap(), &tree);
        let mut w = Writer::new();
        for ev in Reader::new(&bytes).unwrap() {
            w.write_event(&ev.unwrap()).unwrap();
        }
        prop_assert_eq!(w.finish().unwrap(), bytes);
    }

    #[test]
    fn trees_round_trip_through_xml(tree in xml_tree()) {
        let xml = tree.to_xml().unwrap();
        prop_assert_eq!(&Element::from_xml(&xml).unwrap(), &tree, "{}", xml);
        let bytes = tree.encode().unwrap();
        prop_assert_eq!(wbxml::xml::from_xml(&wbxml::xml::to_xml(&bytes).unwrap()).unwrap(), bytes);
    }

    #[test]
    fn rewrite_equals_the_same_edit_on_the_tree(tree in any_tree(), seed in any::<u8>()) {
        let bytes = tree.encode().unwrap();
        let drop = |t: Tag| (t.token ^ seed).is_multiple_of(3);
        let out = rewrite(&bytes, &Limits::default(), |t, anc| if !anc.is_empty() && drop(t) { Action::Drop } else { Action::Keep }).unwrap();
        fn edit(el: &mut Element, drop: &dyn Fn(Tag) -> bool) {
            el.children.retain(|n| !matches!(n, Node::Element(e) if drop(e.tag())));
            el.elements_mut().for_each(|e| edit(e, drop));
        }
        let mut expected = tree.clone();
        edit(&mut expected, &drop);
        prop_assert_eq!(out, expected.encode().unwrap());
    }

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), header in any::<bool>()) {
        let mut bytes = if header { vec![0x03, 0x01, 0x6A, 0x00] } else { Vec::new() };
        bytes.extend_from_slice(&body);
        exercise(&bytes, &SMALL);
        exercise(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_documents_never_panic(tree in any_tree(), edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = tree.encode().unwrap();
        for (at, value, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = value,
                1 => bytes.insert(at, value),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        exercise(&bytes, &SMALL);
        exercise(&bytes, &Limits::default());
    }

    #[test]
    fn random_xml_never_panics(xml in "(<[A-Za-z]{1,8}( xmlns=\"[A-Za-z]{1,8}:\")?/?>|</[A-Za-z]{1,8}>|[^<]{0,8}|<!\\[CDATA\\[.{0,5}\\]\\]>|&[a-z#0-9]{0,5};){0,20}") {
        let _ = wbxml::xml::from_xml_with_limits(&xml, &SMALL);
        let _ = wbxml::xml::from_xml(&xml);
    }
}

#[test]
fn limits_reject_before_allocating() {
    // document size
    let big = vec![0u8; 301];
    assert_eq!(
        Reader::with_limits(&big, &SMALL).unwrap_err(),
        Error::DocumentTooLarge { len: 301, max: 300 }
    );
    // depth: 65 nested Ping:Folders with the default limit of 64
    let mut deep = vec![0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D];
    deep.extend(std::iter::repeat_n(0x49, 65));
    deep.extend(std::iter::repeat_n(0x01, 65));
    assert!(matches!(
        Element::parse(&deep),
        Err(Error::TooDeep { max: 64, .. })
    ));
    deep.drain(6..7);
    deep.pop();
    assert_eq!(depth(&Element::parse(&deep).unwrap()), 64);
    // depth ceiling holds whatever is configured
    let huge = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    assert_eq!(huge.effective_max_depth(), Limits::MAX_DEPTH_CEILING);
    // string and opaque length (opaque is checked from its length field, before reading)
    let long = [
        0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x4B, 0x03, b'1', b'2', b'3', b'4', b'5', b'6', b'7',
        b'8', b'9', 0x00, 0x01,
    ];
    assert!(matches!(
        Element::parse_with_limits(&long, &SMALL),
        Err(Error::StringTooLong { len: 9, max: 8, .. })
    ));
    let opaque = [
        0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x4B, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0x01,
    ];
    assert!(matches!(
        Element::parse(&opaque),
        Err(Error::StringTooLong {
            len: 0xFFFF_FFFF,
            ..
        })
    ));
    // tree nodes
    let mut wide = vec![0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x45];
    wide.extend(std::iter::repeat_n(0x07, 40));
    wide.push(0x01);
    assert!(matches!(
        Element::parse_with_limits(&wide, &SMALL),
        Err(Error::TooManyNodes { max: 40, .. })
    ));
    // XML: depth and size
    let xml = format!(
        "{}{}",
        "<Folders xmlns=\"Ping:\">".repeat(5),
        "</Folders>".repeat(5)
    );
    assert!(matches!(
        wbxml::xml::parse_xml_with_limits(&xml, &SMALL),
        Err(Error::TooDeep { max: 4, .. })
    ));
    assert!(matches!(
        wbxml::xml::parse_xml_with_limits(&" ".repeat(601), &SMALL),
        Err(Error::DocumentTooLarge { .. })
    ));
}
