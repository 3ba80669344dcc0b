//! Test support: where the shared samples are, and running libwbxml2's tools for real.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use wbxml::{Element, Node};

/// `$EASGATE_SHARED`, else `<workspace>/../shared`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EASGATE_SHARED") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

pub fn samples_dir() -> PathBuf {
    shared_dir().join("eas-samples")
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (set EASGATE_SHARED)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Every non-empty `.wbxml` in eas-samples/ and eas-samples/libwbxml-tests/.
pub fn wbxml_samples() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = samples_dir();
    let mut files = files_in(&dir, "wbxml");
    files.extend(files_in(&dir.join("libwbxml-tests"), "wbxml"));
    assert!(
        files.len() >= 17,
        "expected the shared EAS samples in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .filter(|(_, b)| !b.is_empty())
        .collect()
}

/// Hand-written XML sources (eas-samples/src and libwbxml's own test inputs).
pub fn xml_sources() -> Vec<PathBuf> {
    let dir = samples_dir();
    let mut files = files_in(&dir.join("src"), "xml");
    files.extend(files_in(&dir.join("libwbxml-tests"), "xml"));
    files
}

pub fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The sample whose Body Data texts end in CR LF, which the XML form loses (README caveat).
pub const LOSSY_SAMPLE: &str = "sync-response-attachment.wbxml";

fn tmp(ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("wbxml-test-{}-{n}.{ext}", std::process::id()))
}

fn run_tool(tool: &str, args: &[&str], input: &[u8], in_ext: &str, out_ext: &str) -> Vec<u8> {
    let (inp, out) = (tmp(in_ext), tmp(out_ext));
    std::fs::write(&inp, input).unwrap();
    let result = Command::new(tool)
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(&inp)
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run {tool}: {e}. The WBXML interop tests need libwbxml2's tools: \
             apt-get install libwbxml2-utils (scripts/test.sh installs it)"
        ),
    };
    let bytes = std::fs::read(&out);
    let _ = std::fs::remove_file(&inp);
    let _ = std::fs::remove_file(&out);
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    bytes.unwrap_or_else(|e| panic!("{tool} wrote no output: {e}"))
}

/// `wbxml2xml -l ACTIVESYNC -m 1`.
pub fn wbxml2xml(wbxml: &[u8]) -> String {
    String::from_utf8(run_tool(
        "wbxml2xml",
        &["-l", "ACTIVESYNC", "-m", "1"],
        wbxml,
        "wbxml",
        "xml",
    ))
    .unwrap()
}

/// `xml2wbxml -a -n`.
pub fn xml2wbxml(xml: &str) -> Vec<u8> {
    run_tool("xml2wbxml", &["-a", "-n"], xml.as_bytes(), "xml", "wbxml")
}

/// What the XML form keeps of a document: texts trimmed like libwbxml trims them.
pub fn trim_texts(el: &mut Element) {
    for child in &mut el.children {
        match child {
            Node::Element(e) => trim_texts(e),
            Node::Text(t) => {
                *t = t
                    .trim_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C'])
                    .to_owned()
            }
            Node::Opaque(_) => {}
        }
    }
}

/// Encodes `doc` after [`trim_texts`].
pub fn trimmed(doc: &[u8]) -> Vec<u8> {
    let mut el = Element::parse(doc).unwrap();
    trim_texts(&mut el);
    el.encode().unwrap()
}
