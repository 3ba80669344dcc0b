//! Tests of body framing: the chunked decoder (every split of the input, the RFC 9112 chunk-size
//! line grammar, trailers), length and close-delimited bodies, and the reader over a socket.

use super::*;

fn decode_all(f: Framing, wire: &[u8], split: usize) -> io::Result<(Vec<u8>, usize)> {
    let mut d = Decoder::new(f);
    let mut out = Vec::new();
    let mut at = 0;
    // Feed in pieces of `split` bytes, the way reads deliver them.
    let mut fed = 0;
    while !d.is_done() && at < wire.len() {
        fed = (fed + split).min(wire.len()).max(at + 1);
        let (used, data) = d.step(&wire[at..fed])?;
        if let Some(r) = data {
            out.extend_from_slice(&wire[at + r.start..at + r.end]);
        }
        at += used;
    }
    Ok((out, at))
}

#[test]
fn chunked_in_any_split() {
    let wire = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for split in 1..wire.len() {
        let (body, used) = decode_all(Framing::Chunked, wire, split).unwrap();
        assert_eq!(body, b"hello0123456789", "split {split}");
        assert_eq!(&wire[used..], b"NEXT", "stops at the end of the body");
    }
}

/// `6` + `line` + CRLF + `hello!` + the last chunk, as one body.
fn with_size_line(line: &[u8]) -> Vec<u8> {
    let mut wire = b"6".to_vec();
    wire.extend_from_slice(line);
    wire.extend_from_slice(b"\r\nhello!\r\n0\r\n\r\nNEXT");
    wire
}

/// Every extension RFC 9112 7.1.1 allows is accepted (and ignored), in any split.
#[test]
fn chunk_extensions_of_the_rfc_grammar_in_any_split() {
    for ext in [
        &b""[..],
        b";a",
        b";a=b",
        b";a;b=c;d=\"e\"",
        b" ; a = b",
        b"\t;\tname\t=\ttok!#$%&'*+-.^_`|~09AZaz",
        b";q=\"sp ace;=\\\"\\\\\ttab\"",
        b";q=\"\"",
        b";q=\"obs-text \x80\xff \\\xfe\"",
        b";q=\"x\" ;r",
    ] {
        let wire = with_size_line(ext);
        for split in 1..wire.len() {
            let (body, used) = decode_all(Framing::Chunked, &wire, split)
                .unwrap_or_else(|e| panic!("{} split {split}: {e}", ext.escape_ascii()));
            assert_eq!(body, b"hello!", "{} split {split}", ext.escape_ascii());
            assert_eq!(&wire[used..], b"NEXT");
        }
    }
}

/// Anything else on a chunk-size line is refused, not skipped as an "extension": a server
/// (or another proxy) reading the line differently frames the body differently.
#[test]
fn chunk_size_lines_outside_the_rfc_grammar_are_refused() {
    let mut accepted = Vec::new();
    for line in [
        &b";a\nb"[..],
        b";\x00",
        b" zz",
        b" 6",
        b"\t",
        b" ",
        b";",
        b"; ",
        b";a ",
        b";a b",
        b";=b",
        b";a=",
        b";a= ",
        b";a=b c",
        b";a=b;",
        b";a=\"x",
        b";a=\"x\"y",
        b";a=\"\x01\"",
        b";a=\"\n\"",
        b";a=\"\\\x7f\"",
        b";a=b\x7f",
        b";a\x00=b",
        b";a=b\nc",
        b";a@b",
        b";a=(b)",
        b"g",
        b"\n",
    ] {
        let wire = with_size_line(line);
        for split in 1..wire.len() {
            match decode_all(Framing::Chunked, &wire, split) {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                Ok(_) => {
                    accepted.push(line.escape_ascii().to_string());
                    break;
                }
            }
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    // Whitespace before the size.
    assert!(decode_all(Framing::Chunked, b" 6\r\nhello!\r\n0\r\n\r\n", 1).is_err());
}

#[test]
fn check_finds_errors_without_taking_anything() {
    let d = Decoder::new(Framing::Chunked);
    assert!(d.check(b"6;a\nb\r\n").is_err());
    assert!(d.check(b"5\r\nhel").is_ok(), "incomplete is not an error");
    assert!(
        d.check(b"5\r\nhello\r\n0\r\n\r\nGARBAGE\n").is_ok(),
        "stops at the end"
    );
    assert!(d.check(b"").is_ok());
    assert_eq!(
        d.state,
        State::NEXT_CHUNK,
        "the decoder itself is untouched"
    );
}

#[test]
fn trailer_lines_with_control_bytes_are_refused() {
    let mut accepted = Vec::new();
    for trailer in [&b"X: a\nb"[..], b"X: \x00", b"\x7f"] {
        let mut wire = b"1\r\na\r\n0\r\n".to_vec();
        wire.extend_from_slice(trailer);
        wire.extend_from_slice(b"\r\n\r\n");
        if (1..wire.len()).any(|split| decode_all(Framing::Chunked, &wire, split).is_ok()) {
            accepted.push(trailer.escape_ascii().to_string());
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    let wire = b"1\r\na\r\n0\r\nX: \ttab\x80\r\n\r\n";
    assert_eq!(decode_all(Framing::Chunked, wire, 1).unwrap().0, b"a");
}

#[test]
fn length_stops_at_the_end() {
    let (body, used) = decode_all(Framing::Length(3), b"abcdef", 2).unwrap();
    assert_eq!(body, b"abc");
    assert_eq!(used, 3);
}

#[test]
fn malformed_chunks_are_errors() {
    for wire in [
        &b"x\r\n"[..],
        b"\r\n",
        b"5\r\nhelloXX",
        b"5\nhello",
        b"1234567890abcdef0\r\n",
    ] {
        assert!(decode_all(Framing::Chunked, wire, 3).is_err(), "{wire:?}");
    }
    let mut long = b"1;".to_vec();
    long.resize(MAX_CHUNK_LINE + 10, b'a');
    assert!(decode_all(Framing::Chunked, &long, 100).is_err());
}

#[test]
fn eof_only_ends_close_delimited_bodies() {
    let mut d = Decoder::new(Framing::Close);
    assert!(d.eof().is_ok());
    assert!(d.is_done());
    let mut d = Decoder::new(Framing::Length(5));
    assert!(d.eof().is_err());
    let mut d = Decoder::new(Framing::Chunked);
    assert!(d.eof().is_err());
}

#[tokio::test]
async fn reader_over_a_socket_pair() {
    let (mut a, mut b) = tokio::io::duplex(64);
    let w = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for part in [&b"4\r\nWi"[..], b"ki\r\n5\r\npedia\r\n", b"0\r\n\r\nrest"] {
            a.write_all(part).await.unwrap();
            tokio::task::yield_now().await;
        }
        a
    });
    let mut r = BodyReader::new(Decoder::new(Framing::Chunked), None);
    let body = read_to_end(&mut r, &mut b).await.unwrap();
    assert_eq!(body, b"Wikipedia");
    let left = r
        .take_leftover()
        .map(|l| l.bytes().to_vec())
        .unwrap_or_default();
    assert!(b"rest".starts_with(&left), "left over: {left:?}");
    drop(w.await.unwrap());
}
