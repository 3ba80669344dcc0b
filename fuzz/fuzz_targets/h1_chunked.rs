//! Fuzzes the gateway's chunked body decoder (`gateway::h1::framing::Decoder`) the way sockets
//! feed it: the same bytes whole and in pieces. Invariants checked: nothing panics; both feeds
//! agree (same body, same place where the body ends, same accept / refuse); the body is never
//! longer than the input; `Decoder::check` (used before a request goes to a server) refuses
//! exactly what decoding refuses; a body accepted whole re-encodes and decodes to itself.
//!
//! Byte 0: how many split points follow (0-15), each two bytes (a position in the body bytes);
//! the rest is the chunked body.
#![no_main]

use gateway::h1::framing::{Decoder, Framing};
use libfuzzer_sys::fuzz_target;

/// How a feed ended: error or not, body bytes, bytes taken (0 when refused), body complete.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    refused: bool,
    body: Vec<u8>,
    used: usize,
    done: bool,
}

/// Feeds `wire` to a chunked decoder, the bytes arriving up to each of `ends` in turn (as reads
/// deliver them), then the end of the input.
fn feed(wire: &[u8], ends: &[usize]) -> Outcome {
    let mut d = Decoder::new(Framing::Chunked);
    let mut body = Vec::new();
    let mut at = 0;
    let mut refused = false;
    'reads: for &end in ends.iter().chain(std::iter::once(&wire.len())) {
        let end = end.clamp(at, wire.len());
        while at < end && !d.is_done() {
            match d.step(&wire[at..end]) {
                Ok((used, data)) => {
                    if let Some(r) = data {
                        assert!(r.end <= used && r.start <= r.end);
                        body.extend_from_slice(&wire[at + r.start..at + r.end]);
                    }
                    if used == 0 {
                        break;
                    }
                    at += used;
                }
                Err(_) => {
                    refused = true;
                    break 'reads;
                }
            }
        }
    }
    let done = d.is_done();
    if refused {
        // Where a refused body stopped depends on how much one call was given; nothing
        // after an error is used anyway.
        at = 0;
    }
    if !refused && !done {
        assert!(
            d.eof().is_err(),
            "a chunked body cannot end with the connection"
        );
    }
    Outcome {
        refused,
        body,
        used: at,
        done,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    if rest.len() < 2 * n {
        return;
    }
    let (cuts, wire) = rest.split_at(2 * n);
    let mut ends: Vec<usize> = cuts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (wire.len() + 1))
        .collect();
    ends.sort_unstable();

    let whole = feed(wire, &[]);
    let split = feed(wire, &ends);
    assert_eq!(whole, split, "split at {ends:?}");
    let bytes_of_one = feed(wire, &(1..wire.len()).collect::<Vec<_>>());
    assert_eq!(whole, bytes_of_one, "one byte at a time");
    assert!(whole.body.len() <= wire.len());
    assert!(whole.used <= wire.len());
    assert_eq!(
        Decoder::new(Framing::Chunked).check(wire).is_err(),
        whole.refused
    );

    if whole.done {
        // Re-encoded as one chunk, the body decodes to itself.
        let mut again = format!("{:x}\r\n", whole.body.len()).into_bytes();
        if !whole.body.is_empty() {
            again.extend_from_slice(&whole.body);
            again.extend_from_slice(b"\r\n0\r\n");
        }
        again.extend_from_slice(b"\r\n");
        let back = feed(&again, &[]);
        assert!(back.done && !back.refused);
        assert_eq!(back.body, whole.body);
        assert_eq!(back.used, again.len());
    }
});
