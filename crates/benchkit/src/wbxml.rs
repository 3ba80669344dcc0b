//! Byte-exact EAS WBXML bodies for the benchmark.

/// WBXML header: version 1.3, public id 1 (unknown), UTF-8, empty string table.
const HEADER: [u8; 4] = [0x03, 0x01, 0x6a, 0x00];
const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const STR_I: u8 = 0x03;
/// Tag-with-content bit.
const C: u8 = 0x40;

// AirSync (page 0)
const SYNC: u8 = 0x05;
const ADD: u8 = 0x07;
const CLIENT_ID: u8 = 0x0C;
const SERVER_ID: u8 = 0x0D;
const SYNC_KEY: u8 = 0x0B;
const STATUS: u8 = 0x0E;
const COLLECTION: u8 = 0x0F;
const COLLECTION_ID: u8 = 0x12;
const WINDOW_SIZE: u8 = 0x15;
const COMMANDS: u8 = 0x16;
const COLLECTIONS: u8 = 0x1C;
const APPLICATION_DATA: u8 = 0x1D;
// Email (page 2)
const PAGE_EMAIL: u8 = 2;
const DATE_RECEIVED: u8 = 0x0F;
const DISPLAY_TO: u8 = 0x11;
const IMPORTANCE: u8 = 0x12;
const MESSAGE_CLASS: u8 = 0x13;
const SUBJECT: u8 = 0x14;
const READ: u8 = 0x15;
const TO: u8 = 0x16;
const FROM: u8 = 0x18;
// AirSyncBase (page 17)
const PAGE_AIRSYNCBASE: u8 = 17;
const TYPE: u8 = 0x06;
const BODY: u8 = 0x0A;
const DATA: u8 = 0x0B;
const ESTIMATED_DATA_SIZE: u8 = 0x0C;
// Notes (page 23)
const PAGE_NOTES: u8 = 23;
const NOTES_SUBJECT: u8 = 0x05;
const NOTES_MESSAGE_CLASS: u8 = 0x06;

/// `../shared/eas-samples/ping-request.wbxml` (Ping, one Email folder) with its
/// HeartbeatInterval changed from 480 to 900 s (same length, so the bytes line up).
pub const PING_REQUEST_HB900: &[u8] = &[
    0x03, 0x01, 0x6a, 0x00, 0x00, 0x0d, 0x45, 0x48, 0x03, b'9', b'0', b'0', 0x00, 0x01, 0x49, 0x4a,
    0x4b, 0x03, b'I', b'N', b'B', b'O', b'X', b'-', b'I', b'D', 0x00, 0x01, 0x4c, 0x03, b'E', b'm',
    b'a', b'i', b'l', 0x00, 0x01, 0x01, 0x01, 0x01,
];

/// Ping response, Status 1 (heartbeat expired, nothing changed): what the backend sends when a
/// parked Ping times out.
pub const PING_RESPONSE_EXPIRED: &[u8] = &[
    0x03, 0x01, 0x6a, 0x00, 0x00, 0x0d, 0x45, 0x47, 0x03, b'1', 0x00, 0x01, 0x01,
];

struct W(Vec<u8>);

impl W {
    fn new() -> Self {
        W(HEADER.to_vec())
    }
    fn open(&mut self, tag: u8) -> &mut Self {
        self.0.push(tag | C);
        self
    }
    fn end(&mut self) -> &mut Self {
        self.0.push(END);
        self
    }
    fn page(&mut self, page: u8) -> &mut Self {
        self.0.extend_from_slice(&[SWITCH_PAGE, page]);
        self
    }
    fn text(&mut self, tag: u8, s: &[u8]) -> &mut Self {
        self.0.push(tag | C);
        self.0.push(STR_I);
        self.0.extend_from_slice(s);
        self.0.extend_from_slice(&[0x00, END]);
        self
    }
}

/// Plain-text filler for message bodies: readable, deterministic, no NUL bytes.
fn filler(len: usize) -> Vec<u8> {
    const LINE: &[u8] = b"The quarterly figures are attached; please review the regional \
numbers before Thursday's call and send corrections to the finance team.\r\n";
    LINE.iter().copied().cycle().take(len).collect()
}

/// Finds the filler length that makes `build` exactly `size` bytes (the size field's digits move
/// the total, so iterate).
fn fit(size: usize, build: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let envelope = build(0).len();
    assert!(
        size > envelope + 8,
        "size {size} too small for the envelope ({envelope} bytes)"
    );
    let mut data_len = size - envelope;
    for _ in 0..8 {
        let out = build(data_len);
        match out.len().cmp(&size) {
            std::cmp::Ordering::Equal => return out,
            std::cmp::Ordering::Greater => data_len -= out.len() - size,
            std::cmp::Ordering::Less => data_len += size - out.len(),
        }
    }
    panic!("no filler length gives exactly {size} bytes");
}

/// A Sync response carrying one new e-mail (AirSync/Email/AirSyncBase pages), exactly `size`
/// bytes long (`size` must leave room for the envelope, about 300 bytes).
pub fn sync_response(size: usize) -> Vec<u8> {
    let build = |data_len: usize| {
        let mut w = W::new();
        w.open(SYNC).open(COLLECTIONS).open(COLLECTION);
        w.text(SYNC_KEY, b"1839502274")
            .text(COLLECTION_ID, b"5")
            .text(STATUS, b"1");
        w.open(COMMANDS)
            .open(ADD)
            .text(SERVER_ID, b"5:1042")
            .open(APPLICATION_DATA);
        w.page(PAGE_EMAIL)
            .text(TO, b"\"Bob Martin\" <bob@corp.example>")
            .text(FROM, b"\"Alice Dupont\" <alice@corp.example>")
            .text(SUBJECT, b"Q3 regional figures")
            .text(DATE_RECEIVED, b"2026-11-20T09:30:00.000Z")
            .text(DISPLAY_TO, b"Bob Martin")
            .text(IMPORTANCE, b"1")
            .text(READ, b"0")
            .text(MESSAGE_CLASS, b"IPM.Note");
        w.page(PAGE_AIRSYNCBASE).open(BODY).text(TYPE, b"1");
        w.text(ESTIMATED_DATA_SIZE, data_len.to_string().as_bytes());
        w.text(DATA, &filler(data_len)).end();
        w.page(0);
        // ApplicationData, Add, Commands, Collection, Collections, Sync
        for _ in 0..6 {
            w.end();
        }
        w.0
    };
    fit(size, build)
}

/// A Sync request adding one note (AirSync/Notes/AirSyncBase pages), exactly `size` bytes.
pub fn sync_request(size: usize) -> Vec<u8> {
    let build = |data_len: usize| {
        let mut w = W::new();
        w.open(SYNC).open(COLLECTIONS).open(COLLECTION);
        w.text(SYNC_KEY, b"1839502274")
            .text(COLLECTION_ID, b"9")
            .text(WINDOW_SIZE, b"25");
        w.open(COMMANDS)
            .open(ADD)
            .text(CLIENT_ID, b"3f2b9c1e-77")
            .open(APPLICATION_DATA);
        w.page(PAGE_NOTES).text(NOTES_SUBJECT, b"Call notes");
        w.page(PAGE_AIRSYNCBASE)
            .open(BODY)
            .text(TYPE, b"1")
            .text(DATA, &filler(data_len))
            .end();
        w.page(PAGE_NOTES)
            .text(NOTES_MESSAGE_CLASS, b"IPM.StickyNote");
        w.page(0);
        for _ in 0..6 {
            w.end();
        }
        w.0
    };
    fit(size, build)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a WBXML body (the subset used here) and checks every tag is closed.
    fn balanced(b: &[u8]) -> bool {
        assert_eq!(&b[..4], &HEADER);
        let (mut i, mut depth) = (4, 0i32);
        while i < b.len() {
            match b[i] {
                SWITCH_PAGE => i += 2,
                END => {
                    depth -= 1;
                    i += 1;
                }
                STR_I => {
                    let nul = b[i + 1..].iter().position(|&x| x == 0).expect("NUL");
                    i += nul + 2;
                }
                t if t & C != 0 => {
                    depth += 1;
                    i += 1;
                }
                _ => i += 1,
            }
            if depth < 0 {
                return false;
            }
        }
        depth == 0
    }

    #[test]
    fn sizes_are_exact_and_tags_balance() {
        for size in [1024, 4096, 8192] {
            let r = sync_response(size);
            assert_eq!(r.len(), size);
            assert!(balanced(&r));
            let q = sync_request(size);
            assert_eq!(q.len(), size);
            assert!(balanced(&q));
        }
        assert!(balanced(PING_REQUEST_HB900));
        assert!(balanced(PING_RESPONSE_EXPIRED));
    }

    #[test]
    fn ping_is_the_shared_sample_with_heartbeat_900() {
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/eas-samples/ping-request.wbxml");
        if let Ok(mut bytes) = std::fs::read(sample) {
            let at = bytes
                .windows(3)
                .position(|w| w == b"480")
                .expect("heartbeat 480");
            bytes[at..at + 3].copy_from_slice(b"900");
            assert_eq!(bytes, PING_REQUEST_HB900);
        }
    }
}
