//! Inputs the `mime_attachments` fuzzer (fuzz/fuzz_targets/mime_attachments.rs) found, kept as
//! tests: after "remove" a second look at the message must find no attachment left, and the
//! message must keep its structure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use eas::attachment::{Decision, Exclusions, Policy, mime};

fn remove(max_nesting: usize) -> Policy {
    let mut p = Policy::new(Decision::Remove);
    p.max_nesting = max_nesting;
    p.exclusions = Exclusions::default();
    p
}

/// A multipart body ending in a delimiter line without a line end (`--d` as the last bytes):
/// the empty "part" after it was replaced by a note glued onto the delimiter
/// (`--dContent-Type: text/plain...`), which destroyed the delimiter, so the whole rewritten
/// message read as one unnamed attachment.
#[test]
fn a_delimiter_without_a_line_end_is_not_glued_to_a_note() {
    for msg in [
        &b"Content-Type:multipart/digest;boundary=d\n--d"[..],
        b"Content-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\nContent-Type: text/plain\r\n\r\nhi\r\n--d",
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n--o--\r\n",
    ] {
        for nesting in 0..3 {
            let r = mime::rewrite_mime(msg, &remove(nesting)).unwrap();
            let left = mime::attachment_names(&r.body, nesting);
            assert!(
                left.is_empty(),
                "{} (nesting {nesting}): {left:?} left in {}",
                msg.escape_ascii(),
                r.body.escape_ascii()
            );
            let twice = mime::rewrite_mime(&r.body, &remove(nesting)).unwrap();
            assert!(!twice.summary.changed(), "{}", msg.escape_ascii());
        }
    }
}
