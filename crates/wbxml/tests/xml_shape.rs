//! Corner cases of libwbxml's XML shape (mixed content, whitespace, escapes, opaque), each
//! compared with what `wbxml2xml -l ACTIVESYNC -m 1` prints for the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod common;

use common::*;

fn s(t: &[u8]) -> Vec<u8> {
    let mut v = vec![0x03];
    v.extend_from_slice(t);
    v.push(0);
    v
}

/// Header + SWITCH_PAGE to `page` + body.
fn doc(page: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![0x03, 0x01, 0x6A, 0x00];
    if page != 0 {
        v.extend_from_slice(&[0x00, page]);
    }
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    // Ping page 13: Ping 05, Status 07, HeartbeatInterval 08, Folders 09, Folder 0A, Id 0B, Class 0C
    vec![
        (
            "escapes",
            doc(13, &[b"\x45\x47", &s(b"a<b>c&d\"e'f"), b"\x01\x01"]),
        ),
        (
            "trim and raw CR LF TAB",
            doc(13, &[b"\x45\x48", &s(b"  x\r\ny\tz  "), b"\x01\x01"]),
        ),
        (
            "whitespace-only alone",
            doc(13, &[b"\x45\x4b", &s(b"\r\n"), b"\x01\x01"]),
        ),
        (
            "empty string",
            doc(13, &[b"\x45\x4c", &s(b""), b"\x01\x01"]),
        ),
        ("content bit, no content", doc(13, &[b"\x45\x49\x01\x01"])),
        (
            "adjacent strings merge then trim",
            doc(13, &[b"\x45\x4b", &s(b" a "), &s(b" b "), b"\x01\x01"]),
        ),
        (
            "string + opaque + string",
            doc(
                13,
                &[b"\x45\x4b", &s(b"a"), b"\xc3\x01b", &s(b"c"), b"\x01\x01"],
            ),
        ),
        (
            "opaque in a text tag",
            doc(13, &[b"\x45\x4b\xc3\x03<&>\x01\x01"]),
        ),
        (
            "vertical tab and form feed trimmed",
            doc(13, &[b"\x45\x4b", &s(b"\x0b\x0ca\x0c\x0b"), b"\x01\x01"]),
        ),
        (
            "nbsp kept",
            doc(
                13,
                &[b"\x45\x4b", &s("\u{a0}b\u{a0}".as_bytes()), b"\x01\x01"],
            ),
        ),
        (
            "unicode",
            doc(
                13,
                &[
                    b"\x45\x48",
                    &s("é€😀 ]]> <![CDATA[".as_bytes()),
                    b"\x01\x01",
                ],
            ),
        ),
        (
            "mixed: text after element",
            doc(
                13,
                &[b"\x45\x49\x47", &s(b"1"), b"\x01", &s(b"post"), b"\x01\x01"],
            ),
        ),
        (
            "mixed: text around elements",
            doc(
                13,
                &[
                    b"\x45\x49",
                    &s(b"pre"),
                    b"\x47",
                    &s(b"1"),
                    b"\x01\x48",
                    &s(b"2"),
                    b"\x01",
                    &s(b"mid"),
                    b"\x4a\x4b",
                    &s(b"x"),
                    b"\x01\x01\x01\x01",
                ],
            ),
        ),
        (
            "whitespace beside elements",
            doc(
                13,
                &[
                    b"\x45\x49",
                    &s(b"  "),
                    b"\x47",
                    &s(b"1"),
                    b"\x01",
                    &s(b" \n "),
                    b"\x01\x01",
                ],
            ),
        ),
        (
            "redundant switch",
            doc(13, &[b"\x45\x00\x0d\x47", &s(b"1"), b"\x01\x01"]),
        ),
        // AirSync Sync 05 > Collections 1C > AirSyncBase Body 0A > AirSync Status 0E, AirSyncBase Type 06
        (
            "namespace back to the parent's parent",
            doc(
                0,
                &[
                    b"\x45\x5c\x00\x11\x4a\x00\x00\x4e",
                    &s(b"1"),
                    b"\x01\x00\x11\x46",
                    &s(b"1"),
                    b"\x01\x01\x00\x00\x4e",
                    &s(b"2"),
                    b"\x01\x01\x01",
                ],
            ),
        ),
        // ComposeMail SendMail 05, MIME 10 (opaque tag), ClientId 11
        (
            "string in an opaque tag",
            doc(
                21,
                &[
                    b"\x45\x50",
                    &s(b"  hi  "),
                    b"\x01\x50",
                    &s(b"  "),
                    b"\x01\x01",
                ],
            ),
        ),
        (
            "empty opaque",
            doc(21, &[b"\x45\x50\xc3\x00\x01\x50\xc3\x01 \x01\x01"]),
        ),
        // GAL page 16 prints as namespace Gal
        (
            "GAL page",
            doc(15, &[b"\x45\x00\x10\x49", &s(b"x"), b"\x01\x01"]),
        ),
    ]
}

#[test]
fn corner_cases_print_like_wbxml2xml() {
    for (what, bytes) in cases() {
        let expected = wbxml2xml(&bytes);
        let ours = wbxml::xml::to_xml(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ours, expected, "{what}");
    }
}

#[test]
fn corner_cases_encode_like_xml2wbxml() {
    for (what, bytes) in cases() {
        let xml = wbxml::xml::to_xml(&bytes).unwrap();
        assert_eq!(
            wbxml::xml::from_xml(&xml).unwrap(),
            xml2wbxml(&xml),
            "{what}"
        );
    }
}

#[test]
fn hand_written_xml_quirks_encode_like_xml2wbxml() {
    let prolog = wbxml::xml::XML_PROLOG;
    let cases = [
        r#"<Ping xmlns="Ping:"><Status></Status><Id/><Class>  a b  </Class><Folders>
  <Folder><Id xmlns="Ping:">x
y</Id></Folder>
</Folders></Ping>"#,
        r#"<Ping xmlns="Ping:"><Id>&#13;&#10;x&#13;&#10;</Id><Class>&lt;&amp;&gt;&quot;&apos;</Class></Ping>"#,
        "<SendMail xmlns=\"ComposeMail:\"><MIME></MIME><MIME>aGVsbG8=</MIME><MIME> aGVs\n bG8= </MIME><ClientId>aGVsbG8=</ClientId></SendMail>",
        r#"<Ping xmlns="Ping:">pre<Status>1</Status>post</Ping>"#,
        r#"<Sync xmlns="AirSync:"><Collections xmlns="AirSync:"><Body xmlns="AirSyncBase:"><Status xmlns="AirSync:">1</Status><Type>1</Type></Body><Status>2</Status></Collections></Sync>"#,
        r#"<Sync><Collections/></Sync>"#,
        r#"<Ping xmlns="Ping:"><Id><![CDATA[a<b]]></Id><Class>é</Class></Ping>"#,
        r#"<Ping xmlns="Ping:"><!-- comment --><Id>aGVsbG8</Id></Ping>"#,
        // line ends: CR LF and lone CR become LF, a character reference keeps its CR
        "<Ping xmlns=\"Ping:\"><Id>a&#13;b\r\nc\rd</Id></Ping>",
    ];
    for body in cases {
        let xml = format!("{prolog}{body}\n");
        assert_eq!(
            wbxml::xml::from_xml(&xml).unwrap(),
            xml2wbxml(&xml),
            "{body}"
        );
    }
}

#[test]
fn xml_the_bridge_refuses() {
    let prolog = wbxml::xml::XML_PROLOG;
    for body in [
        r#"<Ping xmlns="Ping:"><Nope/></Ping>"#,
        r#"<Ping xmlns="Nope:"/>"#,
        r#"<Ping xmlns="Ping:" a="1"/>"#,
        r#"<Ping xmlns="Ping:"><Status></Ping>"#,
        r#"<SendMail xmlns="ComposeMail:"><MIME>not base64!</MIME></SendMail>"#,
        r#"<Ping xmlns="Ping:"/><Ping xmlns="Ping:"/>"#,
        r#"text"#,
        "",
        // references: only the five predefined entities and character references
        r#"<Ping xmlns="Ping:"><Id>&nbsp;</Id></Ping>"#,
        r#"<Ping xmlns="Ping:"><Id>a & b</Id></Ping>"#,
        r#"<Ping xmlns="Ping:"><Id>&#0;</Id></Ping>"#,
        r#"<Ping xmlns="Ping:"/>&amp;"#,
    ] {
        let xml = format!("{prolog}{body}");
        assert!(
            matches!(wbxml::xml::from_xml(&xml), Err(wbxml::Error::Xml { .. })),
            "{body}"
        );
    }
}

/// A text run with references in it is one node for `max_tree_nodes`, however many pieces the
/// XML parser reports it in.
#[test]
fn xml_text_run_with_references_is_one_node() {
    let limits = wbxml::Limits {
        max_tree_nodes: 3,
        ..wbxml::Limits::default()
    };
    let prolog = wbxml::xml::XML_PROLOG;
    let xml = format!(r#"{prolog}<Ping xmlns="Ping:"><Id>a&amp;b&#13;&lt;c</Id></Ping>"#);
    let tree = wbxml::xml::parse_xml_with_limits(&xml, &limits).unwrap();
    assert_eq!(
        tree.to_xml().unwrap(),
        wbxml::xml::parse_xml(&xml).unwrap().to_xml().unwrap()
    );
    let xml = format!(r#"{prolog}<Ping xmlns="Ping:"><Id>a</Id><Id>b</Id></Ping>"#);
    assert!(matches!(
        wbxml::xml::parse_xml_with_limits(&xml, &limits),
        Err(wbxml::Error::TooManyNodes { max: 3, .. })
    ));
}
