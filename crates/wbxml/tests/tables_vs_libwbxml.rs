//! Checks `wbxml::codepage` against libwbxml2 (Debian `libwbxml2-utils` 0.11.8), the
//! reference codec of this project, token by token for code pages 0..=24.
//!
//! * `xml2wbxml_encodes_every_tag_with_our_token`: one XML document per page holding every
//!   tag (by `xml_name`) once with content and once empty; the tokens libwbxml2 writes must be
//!   ours, OPAQUE exactly for the tags marked `opaque`, and decoding the result again with
//!   `wbxml2xml` must give every `xml_name` back.
//! * `wbxml2xml_names_every_token_like_our_table`: one WBXML body per page holding every token
//!   0x05..=0x3F; libwbxml2 must print our `xml_name` for the tokens we define and `unknown`
//!   for the others, so a tag missing from our table is caught too.
//!
//! Page 25 (Find) is not in libwbxml2 0.11.8. Without `xml2wbxml`/`wbxml2xml` the tests fail
//! (`scripts/test.sh` installs `libwbxml2-utils`) unless `EASGATE_NO_LIBWBXML=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use wbxml::codepage::{CodePage, PAGES, TagDef, tag_def};

/// Pages libwbxml2 0.11.8 knows.
const LIBWBXML_PAGES: std::ops::RangeInclusive<u8> = 0..=24;

/// Tags of our tables that libwbxml2 0.11.8 lacks (page, token).
const NOT_IN_LIBWBXML: &[(u8, u8)] = &[
    // Calendar 12.x attachment tags.
    (4, 0x2B),
    (4, 0x2C),
    (4, 0x2D),
    (4, 0x2E),
    (4, 0x2F),
    (4, 0x30),
    (4, 0x31),
    (4, 0x32),
    // Provision AccountOnlyRemoteWipe (16.1).
    (14, 0x3B),
];

const XML_HEADER: &str = "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \
                          \"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">\n";

/// `true`: run the test. `false`: skip (explicitly allowed). Panics when the tools are
/// missing and skipping was not asked for.
fn libwbxml_present() -> bool {
    let found = ["xml2wbxml", "wbxml2xml"].iter().all(|tool| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false)
    });
    if found {
        return true;
    }
    if std::env::var("EASGATE_NO_LIBWBXML").as_deref() == Ok("1") {
        eprintln!("SKIPPED: xml2wbxml/wbxml2xml not found and EASGATE_NO_LIBWBXML=1");
        return false;
    }
    panic!(
        "xml2wbxml / wbxml2xml (libwbxml2-utils) not found in PATH: install it \
         (`apt-get install libwbxml2-utils`, done by scripts/test.sh) or set EASGATE_NO_LIBWBXML=1"
    );
}

fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tables_vs_libwbxml-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run libwbxml tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_libwbxml(page: u8, t: &TagDef) -> bool {
    !NOT_IN_LIBWBXML.contains(&(page, t.token))
}

fn libwbxml_tags(page: &CodePage) -> Vec<&'static TagDef> {
    let all: &'static [TagDef] = PAGES[page.number as usize].tags;
    all.iter().filter(|t| in_libwbxml(page.number, t)).collect()
}

/// One parsed WBXML event of the flat documents used here.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    /// (page, token, has content)
    Start(u8, u8, bool),
    Str(Vec<u8>),
    Opaque(Vec<u8>),
    End,
}

fn mb_u32(bytes: &[u8], pos: &mut usize) -> usize {
    let mut v: usize = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v = (v << 7) | usize::from(b & 0x7F);
        if b & 0x80 == 0 {
            return v;
        }
    }
}

/// Parses header `03 01 6A 00` then SWITCH_PAGE, tags, STR_I, OPAQUE and END only.
fn parse(bytes: &[u8]) -> Vec<Ev> {
    assert!(
        bytes.starts_with(&[0x03, 0x01, 0x6A, 0x00]),
        "header: {:02X?}",
        &bytes[..4]
    );
    let mut pos = 4;
    let mut page = 0u8;
    let mut evs = Vec::new();
    while pos < bytes.len() {
        let b = bytes[pos];
        pos += 1;
        match b {
            0x00 => {
                page = bytes[pos];
                pos += 1;
            }
            0x01 => evs.push(Ev::End),
            0x03 => {
                let end = pos
                    + bytes[pos..]
                        .iter()
                        .position(|&c| c == 0)
                        .expect("STR_I NUL");
                evs.push(Ev::Str(bytes[pos..end].to_vec()));
                pos = end + 1;
            }
            0xC3 => {
                let len = mb_u32(bytes, &mut pos);
                evs.push(Ev::Opaque(bytes[pos..pos + len].to_vec()));
                pos += len;
            }
            b if b & 0x80 == 0 && (0x05..=0x7F).contains(&b) && b & 0x3F >= 0x05 => {
                evs.push(Ev::Start(page, b & 0x3F, b & 0x40 != 0));
            }
            other => panic!("unexpected WBXML byte {other:#04x} at {}", pos - 1),
        }
    }
    evs
}

fn describe(page: u8, ev: &Ev) -> String {
    match ev {
        Ev::Start(p, tok, c) => {
            let name = tag_def(*p, *tok).map_or("?", |t| t.name);
            format!("Start({p}, {tok:#04x} {name}, content={c}) [page under test {page}]")
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn xml2wbxml_encodes_every_tag_with_our_token() {
    if !libwbxml_present() {
        return;
    }
    let dir = work_dir("encode");
    let mut failures = String::new();
    for n in LIBWBXML_PAGES {
        let page = &PAGES[n as usize];
        let tags = libwbxml_tags(page);
        let root = tags[0];

        // XML in libwbxml's ActiveSync dialect.
        let mut xml = String::from(XML_HEADER);
        let _ = write!(
            xml,
            "<{} xmlns=\"{}:\">",
            root.xml_name,
            page.xml_namespace()
        );
        let mut lines = vec![format!(
            "<{} xmlns=\"{}:\">",
            root.xml_name,
            page.xml_namespace()
        )];
        let mut expected = vec![Ev::Start(n, root.token, true)];
        for t in &tags {
            // libwbxml reads OPAQUE tags' XML content as base64: "eA==" is "x".
            let text = if t.opaque { "eA==" } else { "x" };
            let _ = write!(xml, "<{0}>{1}</{0}>", t.xml_name, text);
            lines.push(format!("<{0}>{1}</{0}>", t.xml_name, text));
            expected.push(Ev::Start(n, t.token, true));
            expected.push(if t.opaque {
                Ev::Opaque(b"x".to_vec())
            } else {
                Ev::Str(b"x".to_vec())
            });
            expected.push(Ev::End);
        }
        for t in &tags {
            let _ = write!(xml, "<{}/>", t.xml_name);
            lines.push(format!("<{}/>", t.xml_name));
            expected.push(Ev::Start(n, t.token, false));
        }
        let _ = writeln!(xml, "</{}>", root.xml_name);
        lines.push(format!("</{}>", root.xml_name));
        expected.push(Ev::End);

        let xml_path = dir.join(format!("page{n}.xml"));
        let wbxml_path = dir.join(format!("page{n}.wbxml"));
        let back_path = dir.join(format!("page{n}.back.xml"));
        std::fs::write(&xml_path, &xml).expect("write xml");
        run(Command::new("xml2wbxml")
            .args(["-a", "-n", "-o"])
            .arg(&wbxml_path)
            .arg(&xml_path));
        let bytes = std::fs::read(&wbxml_path).expect("read wbxml");
        let got = parse(&bytes);
        if got != expected {
            let i = got
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            let _ = writeln!(
                failures,
                "page {n} ({}): event {i}: libwbxml wrote {} but our table says {} ({} vs {} events)",
                page.namespace,
                got.get(i).map_or("<nothing>".into(), |e| describe(n, e)),
                expected
                    .get(i)
                    .map_or("<nothing>".into(), |e| describe(n, e)),
                got.len(),
                expected.len()
            );
            continue;
        }

        // And back: wbxml2xml prints every xml_name (and base64 for the opaque ones).
        run(Command::new("wbxml2xml")
            .args(["-l", "ACTIVESYNC", "-m", "1", "-o"])
            .arg(&back_path)
            .arg(&wbxml_path));
        let back = std::fs::read_to_string(&back_path).expect("read decoded xml");
        let back_lines: Vec<&str> = back
            .lines()
            .skip(2)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if back_lines != lines {
            let i = back_lines
                .iter()
                .zip(&lines)
                .position(|(a, b)| a != b)
                .unwrap_or(back_lines.len().min(lines.len()));
            let _ = writeln!(
                failures,
                "page {n} ({}): wbxml2xml line {i}: got {:?}, expected {:?}",
                page.namespace,
                back_lines.get(i),
                lines.get(i)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "tables differ from libwbxml2:\n{failures}"
    );
}

#[test]
fn wbxml2xml_names_every_token_like_our_table() {
    if !libwbxml_present() {
        return;
    }
    let dir = work_dir("decode");
    let mut failures = String::new();
    for n in LIBWBXML_PAGES {
        let page = &PAGES[n as usize];
        let root = libwbxml_tags(page)[0];
        let mut body = vec![0x03, 0x01, 0x6A, 0x00, 0x00, n, root.token | 0x40];
        let mut expected = Vec::new();
        for token in 0x05..=0x3Fu8 {
            body.extend_from_slice(&[token | 0x40, 0x03, b'x', 0x00, 0x01]);
            let line = match tag_def(n, token) {
                Some(t) if in_libwbxml(n, t) => {
                    let text = if t.opaque { "eA==" } else { "x" };
                    format!("<{0}>{1}</{0}>", t.xml_name, text)
                }
                _ => "<unknown>x</unknown>".to_string(),
            };
            expected.push(line);
        }
        body.push(0x01);
        let wbxml_path = dir.join(format!("page{n}.wbxml"));
        let xml_path = dir.join(format!("page{n}.xml"));
        std::fs::write(&wbxml_path, &body).expect("write wbxml");
        run(Command::new("wbxml2xml")
            .args(["-l", "ACTIVESYNC", "-m", "1", "-o"])
            .arg(&xml_path)
            .arg(&wbxml_path));
        let out = std::fs::read_to_string(&xml_path).expect("read xml");
        let lines: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let root_line = format!("<{} xmlns=\"{}:\">", root.xml_name, page.xml_namespace());
        if lines.get(2) != Some(&root_line.as_str()) {
            let _ = writeln!(
                failures,
                "page {n}: root line {:?}, expected {root_line:?}",
                lines.get(2)
            );
            continue;
        }
        let children = lines.get(3..3 + expected.len()).unwrap_or(&[]);
        for (i, want) in expected.iter().enumerate() {
            let token = 0x05 + i;
            match children.get(i) {
                Some(got) if got == want => {}
                got => {
                    let _ = writeln!(
                        failures,
                        "page {n} ({}) token {token:#04x}: libwbxml prints {got:?}, our table gives {want:?}",
                        page.namespace
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "tables differ from libwbxml2:\n{failures}"
    );
}
