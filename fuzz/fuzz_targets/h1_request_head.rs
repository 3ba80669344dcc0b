//! Fuzzes the gateway's HTTP/1.1 request-head parser (`gateway::h1::head::parse_request`), which
//! every byte a device sends passes through first. Invariants checked: nothing panics; a refusal
//! is 400 or 431; an accepted head is no longer than the input or the limit; its framing agrees
//! with its headers (never a length and chunked, never close-delimited); the head alone parses
//! the same, and any shorter prefix of it is incomplete (a head arriving byte by byte is judged
//! as in one read); the head the gateway writes for the server parses back to the same request.
//!
//! Byte 0 picks the head limit (small or the default 64 KiB); the rest is the head.
#![no_main]

use gateway::h1::framing::Framing;
use gateway::h1::head::{MAX_HEADERS, RequestHead, parse_request, write_request};
use http::header;
use libfuzzer_sys::fuzz_target;

fn same(a: &RequestHead, b: &RequestHead) {
    assert_eq!(a.len, b.len);
    assert_eq!(a.framing, b.framing);
    assert_eq!(a.close, b.close);
    assert_eq!(a.expect_continue, b.expect_continue);
    assert_eq!(a.parts.method, b.parts.method);
    assert_eq!(a.parts.uri, b.parts.uri);
    assert_eq!(a.parts.version, b.parts.version);
    assert_eq!(a.parts.headers, b.parts.headers);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let max = if mode & 1 == 0 { 512 } else { 64 * 1024 };
    let h = match parse_request(input, max) {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => {
            let s = e.status().as_u16();
            assert!(s == 400 || s == 431, "refused with {s}: {e}");
            return;
        }
    };
    assert!(h.len <= input.len() && h.len <= max);
    assert!(h.len > 0);
    let hs = &h.parts.headers;
    match h.framing {
        Framing::Chunked => {
            assert!(hs.contains_key(header::TRANSFER_ENCODING));
            assert!(!hs.contains_key(header::CONTENT_LENGTH));
        }
        Framing::Length(n) => {
            assert!(n > 0);
            assert!(!hs.contains_key(header::TRANSFER_ENCODING));
        }
        Framing::Empty => assert!(!hs.contains_key(header::TRANSFER_ENCODING)),
        Framing::Close => panic!("a request framed by the connection closing"),
    }

    // The head alone, and every shorter prefix of it.
    let head = &input[..h.len];
    let again = parse_request(head, max)
        .expect("an accepted head is accepted alone")
        .expect("an accepted head is complete alone");
    same(&h, &again);
    for cut in [h.len - 1, h.len / 2, 1] {
        if cut < h.len {
            assert!(
                matches!(parse_request(&head[..cut], max), Ok(None)),
                "prefix of {cut} bytes is not just incomplete"
            );
        }
    }

    // What the gateway would send to the server parses back to the same request (when it
    // has room for the framing line the gateway adds: the parser takes MAX_HEADERS lines).
    if again.parts.headers.len() >= MAX_HEADERS {
        return;
    }
    let len = match h.framing {
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
        _ => Some(0),
    };
    let req = http::Request::from_parts(again.parts, ());
    let mut out = Vec::new();
    write_request(&mut out, &req, len);
    let sent = parse_request(&out, usize::MAX)
        .expect("the forwarded head parses")
        .expect("the forwarded head is complete");
    assert_eq!(sent.len, out.len());
    assert_eq!(sent.parts.method, req.method());
    // Path (`/` when empty, as `Uri::path` says too) and query; scheme and authority of an
    // absolute-form target do not go to the server.
    let path = match req.uri().path() {
        "" => "/",
        p => p,
    };
    assert_eq!(sent.parts.uri.path(), path);
    assert_eq!(sent.parts.uri.query(), req.uri().query());
    match h.framing {
        Framing::Chunked => assert_eq!(sent.framing, Framing::Chunked),
        Framing::Length(n) => assert_eq!(sent.framing, Framing::Length(n)),
        _ => assert_eq!(sent.framing, Framing::Empty),
    }
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        assert!(
            sent.parts.headers.get_all(name).iter().any(|v| v == value),
            "{name} lost on the way to the server"
        );
    }
});
