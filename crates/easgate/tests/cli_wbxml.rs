//! `easgate wbxml decode|encode [FILE]`: same bytes as libwbxml's tools on the shared samples,
//! stdin when no file, and errors on stderr with exit code 1 (never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const EASGATE: &str = env!("CARGO_BIN_EXE_easgate");

fn samples() -> PathBuf {
    std::env::var_os("EASGATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("eas-samples")
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(EASGATE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn decode_file_and_encode_stdin_match_libwbxml() {
    let dir = samples();
    let wbxml = std::fs::read(dir.join("sync-request.wbxml")).unwrap();
    let xml = std::fs::read(dir.join("sync-request.xml")).unwrap();
    let file = dir.join("sync-request.wbxml");
    let out = run(&["wbxml", "decode", file.to_str().unwrap()], b"");
    assert!(out.status.success());
    assert_eq!(out.stdout, xml);
    let out = run(&["wbxml", "encode"], &xml);
    assert!(out.status.success());
    assert_eq!(out.stdout, wbxml);
    let out = run(&["wbxml", "decode"], &wbxml);
    assert_eq!(out.stdout, xml);
}

#[test]
fn errors_go_to_stderr_with_exit_code_1() {
    for (args, input, message) in [
        (
            &["wbxml", "decode"][..],
            &b"\x03\x01\x6a\x00\x45"[..],
            "truncated WBXML at byte 5",
        ),
        (&["wbxml", "decode"][..], &b""[..], "empty input"),
        (&["wbxml", "encode"][..], &b"<Nope/>"[..], "no tag \"Nope\""),
        (&["wbxml", "encode"][..], &b"\xff\xfe"[..], "not UTF-8"),
        (
            &["wbxml", "decode", "/nonexistent/x.wbxml"][..],
            &b""[..],
            "/nonexistent/x.wbxml",
        ),
    ] {
        let out = run(args, input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
