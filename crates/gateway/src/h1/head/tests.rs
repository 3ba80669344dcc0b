//! Tests of request and response heads: parsing, framing, and writing them back out.

use super::*;

#[test]
fn request_head_round_trip_keeps_case_and_values() {
    let wire = b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=u HTTP/1.1\r\nHost: mail.example\r\nMS-ASProtocolVersion: 14.1\r\nContent-Length: 3\r\nX-Dup: a\r\nX-Dup: b\r\n\r\nabc";
    let h = parse_request(wire, 8192).unwrap().unwrap();
    assert_eq!(h.len, wire.len() - 3);
    assert_eq!(h.framing, Framing::Length(3));
    assert!(!h.close);
    assert_eq!(h.parts.uri.query(), Some("Cmd=Sync&User=u"));
    assert_eq!(h.parts.headers["ms-asprotocolversion"], "14.1");
    assert_eq!(h.parts.headers.get_all("x-dup").iter().count(), 2);
    let mut out = Vec::new();
    write_request(&mut out, &http::Request::from_parts(h.parts, ()), Some(3));
    let s = String::from_utf8(out).unwrap();
    assert!(s.starts_with("POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=u HTTP/1.1\r\n"));
    assert!(s.contains("\r\nMS-ASProtocolVersion: 14.1\r\n"), "{s}");
    assert!(s.contains("\r\nX-Dup: a\r\nX-Dup: b\r\n"), "{s}");
    assert!(s.ends_with("Content-Length: 3\r\n\r\n"), "{s}");
}

#[test]
fn activesync_names_are_matched_in_any_case() {
    assert_eq!(
        known_name(b"MS-ASProtocolVersion").unwrap().as_str(),
        "ms-asprotocolversion"
    );
    assert_eq!(known_name(b"X-MS-PolicyKey").unwrap(), "x-ms-policykey");
    assert!(known_name(b"X-MS-PolicyKeyX").is_none());
    assert!(known_name(b"Content-Type").is_none());
}

#[test]
fn partial_and_malformed_heads() {
    assert!(
        parse_request(b"POST / HTTP/1.1\r\nHost: x\r\n", 8192)
            .unwrap()
            .is_none()
    );
    for bad in [
        &b"POST / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"\x01\x02 / HTTP/1.1\r\n\r\n",
    ] {
        let e = parse_request(bad, 8192).err().expect("refused");
        assert_eq!(e.status().as_u16(), 400, "{e}");
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let e = parse_request(&many, 8192).err().unwrap();
    assert_eq!(e.status().as_u16(), 431);
    let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(9000, b'a');
    long.extend_from_slice(b"\r\n\r\n");
    let e = parse_request(&long, 8192).err().unwrap();
    assert_eq!(e.status().as_u16(), 431, "complete but over the limit");
    assert!(parse_request(&long, 16384).unwrap().is_some());
}

#[test]
fn request_framing_and_close() {
    let h = parse_request(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: Close\r\n\r\n",
        8192,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.close);
    let h = parse_request(b"GET / HTTP/1.0\r\n\r\n", 8192)
        .unwrap()
        .unwrap();
    assert!(h.close, "HTTP/1.0 closes by default");
    assert_eq!(h.framing, Framing::Empty);
    let h = parse_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192)
        .unwrap()
        .unwrap();
    assert!(!h.close);
}

#[test]
fn response_framing() {
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: a\r\n\r\nbody",
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.framing, Framing::Length(4));
    assert!(!r.close);
    let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert_eq!(r.framing, Framing::Empty, "HEAD has no body");
    let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert_eq!(r.framing, Framing::Close);
    assert!(r.close);
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.framing, Framing::Chunked, "chunked wins over a length");
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    assert!(parse_response(b"HTTP/1.1 20", false).unwrap().is_none());
}

#[test]
fn response_head_for_device() {
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nMS-Server-ActiveSync: 14.1\r\nContent-Length: 4\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    let mut out = Vec::new();
    write_response(&mut out, &r.parts, Out::Length(4), false);
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.starts_with("HTTP/1.1 200 OK\r\nMS-Server-ActiveSync: 14.1\r\n"),
        "{s}"
    );
    assert!(s.contains("Content-Length: 4\r\n"));
    assert!(s.contains("\r\nDate: "), "a Date is added when missing");
    let mut out = Vec::new();
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(456).unwrap();
    parts
        .headers
        .insert("x-forwarded-for", HeaderValue::from_static("1"));
    write_response(&mut out, &parts, Out::Length(0), true);
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.starts_with("HTTP/1.1 456 Blocked\r\nX-Forwarded-For: 1\r\n"),
        "{s}"
    );
    assert!(s.contains("Connection: close\r\n"));
}

fn status_line(parts: &http::response::Parts) -> String {
    let mut out = Vec::new();
    write_response(&mut out, parts, Out::Length(0), false);
    let s = String::from_utf8(out).unwrap();
    s.lines().next().unwrap().to_string()
}

#[test]
fn the_servers_reason_phrase_is_kept_unless_the_status_changed() {
    let parsed = |head: &[u8]| parse_response(head, false).unwrap().unwrap().parts;
    let p = parsed(
        b"HTTP/1.1 449 Retry after sending a PROVISION command\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        status_line(&p),
        "HTTP/1.1 449 Retry after sending a PROVISION command"
    );
    let p = parsed(b"HTTP/1.1 200 Fine, thanks\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status_line(&p), "HTTP/1.1 200 Fine, thanks");
    // As in MS-ASHTTP's own example: no phrase at all.
    let p = parsed(b"HTTP/1.1 451\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status_line(&p), "HTTP/1.1 451 Redirect");
    let mut p = parsed(b"HTTP/1.1 200 Fine, thanks\r\nContent-Length: 0\r\n\r\n");
    p.status = StatusCode::BAD_GATEWAY;
    assert_eq!(
        status_line(&p),
        "HTTP/1.1 502 Bad Gateway",
        "a stale phrase"
    );
    let (mut p, ()) = http::Response::new(()).into_parts();
    p.status = StatusCode::from_u16(449).unwrap();
    assert_eq!(
        status_line(&p),
        "HTTP/1.1 449 Retry after sending a PROVISION command"
    );
}

/// `chunked` twice (in one list or on two lines) asks for the body to be dechunked twice: a
/// server that takes it as once (or refuses it) frames the request differently from the
/// gateway, so it is refused like any other coding but `chunked` alone.
#[test]
fn chunked_more_than_once_is_refused() {
    for bad in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nX: y\r\ntransfer-encoding: CHUNKED\r\n\r\n",
    ] {
        let e = parse_request(bad, 8192).err().expect("refused");
        assert_eq!(e.status().as_u16(), 400, "{e}");
    }
    // Empty list elements are not codings (RFC 9110 5.6.1).
    for ok in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
    ] {
        let h = parse_request(ok, 8192).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
    }
}

/// Found by the `h1_request_head` fuzzer: an absolute-form target with a query and no path
/// (`http://host?q`) went to the server as `GET ?q HTTP/1.1`, which is no request target at all.
/// RFC 9112 3.2.1: an empty path is sent as `/`.
#[test]
fn an_empty_path_goes_to_the_server_as_a_slash() {
    for (target, sent) in [
        ("http://gw.example?owa/", "/?owa/"),
        ("http://gw.example", "/"),
        ("http://gw.example/a?b", "/a?b"),
        ("/x?y", "/x?y"),
        ("*", "*"),
    ] {
        let wire = format!("OPTIONS {target} HTTP/1.1\r\nHost: gw.example\r\n\r\n");
        let h = parse_request(wire.as_bytes(), 8192).unwrap().unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &http::Request::from_parts(h.parts, ()), Some(0));
        let line = format!("OPTIONS {sent} HTTP/1.1\r\n");
        assert!(
            out.starts_with(line.as_bytes()),
            "{target}: {}",
            out.escape_ascii()
        );
        assert!(parse_request(&out, 8192).unwrap().is_some(), "{target}");
    }
}

/// Found by the `h1_request_head` fuzzer: `GET 0 HTTP/1.0` was accepted (the `http` crate reads
/// `0` as an authority) and would have reached the server as `GET /`. Authority-form is for
/// CONNECT only and asterisk-form for OPTIONS only (RFC 9112 3.2); the gateway proxies neither.
#[test]
fn request_targets_of_the_wrong_form_are_refused() {
    for bad in [
        &b"GET 0 HTTP/1.0\r\n\r\n"[..],
        b"GET gw.example:443 HTTP/1.1\r\nHost: gw.example\r\n\r\n",
        b"CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: gw.example\r\n\r\n",
    ] {
        let e = parse_request(bad, 8192).err();
        let e = e.unwrap_or_else(|| panic!("accepted {}", bad.escape_ascii()));
        assert_eq!(e.status().as_u16(), 400, "{e}");
    }
    for ok in [
        &b"OPTIONS * HTTP/1.1\r\nHost: gw.example\r\n\r\n"[..],
        b"GET http://gw.example HTTP/1.1\r\nHost: gw.example\r\n\r\n",
        b"GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw.example\r\n\r\n",
    ] {
        assert!(
            parse_request(ok, 8192).unwrap().is_some(),
            "{}",
            ok.escape_ascii()
        );
    }
}
