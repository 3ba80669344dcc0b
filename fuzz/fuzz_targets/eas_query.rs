//! Fuzzes the ActiveSync request model: query (plain and base64) + header parsing, and the
//! body-fact extractors (Ping / Sync long-poll facts, Provision classification, multipart).
//!
//! Input layout: byte 0 picks the method and whether the body gets a valid WBXML header;
//! then newline-separated: query, MS-ASProtocolVersion, X-MS-PolicyKey, Authorization,
//! MS-ASAcceptMultiPart, and the rest is the body.
#![no_main]

use eas::headers::{MS_AS_ACCEPT_MULTIPART, MS_AS_PROTOCOL_VERSION, X_MS_POLICY_KEY};
use eas::{
    Authorization, Base64Query, Command, EasRequest, Multipart, ProvisionRequest, long_poll,
    ping_body, sync_long_poll,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let method = match mode & 0x03 {
        0 | 1 => Method::POST,
        2 => Method::OPTIONS,
        _ => Method::GET,
    };
    let mut fields = rest.splitn(6, |&b| b == b'\n');
    let query = fields.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    let names: [HeaderName; 4] = [
        MS_AS_PROTOCOL_VERSION,
        X_MS_POLICY_KEY,
        http::header::AUTHORIZATION,
        MS_AS_ACCEPT_MULTIPART,
    ];
    for name in names {
        if let Some(v) = fields.next().filter(|v| !v.is_empty())
            && let Ok(v) = HeaderValue::from_bytes(v)
        {
            headers.insert(name, v);
        }
    }
    let raw_body = fields.next().unwrap_or_default();

    // Query + headers.
    let query = String::from_utf8_lossy(query);
    if let Ok(req) = EasRequest::from_parts(&method, Some(&query), &headers) {
        // A decoded base64 query always re-encodes to something that decodes the same.
        if let Some(q) = &req.base64 {
            let again = Base64Query::decode(&q.encode().expect("decoded query re-encodes"));
            assert_eq!(again.as_ref(), Ok(q));
        }
        if let Some(d) = &req.device_id {
            assert!(d.as_str().len() <= 32);
        }
    }
    if let Ok(q) = Base64Query::from_bytes(rest) {
        let bytes = q.to_bytes().expect("decoded query re-encodes");
        assert_eq!(Base64Query::from_bytes(&bytes).as_ref(), Ok(&q));
    }
    let _ = Authorization::parse(rest);

    // Body facts.
    let mut body = Vec::new();
    if mode & 0x80 != 0 {
        body.extend_from_slice(&[0x03, 0x01, 0x6A, 0x00]);
    }
    body.extend_from_slice(raw_body);
    let _ = ping_body(&body);
    let _ = sync_long_poll(&body);
    let _ = long_poll(Command::Ping, &body);
    let _ = ProvisionRequest::parse(&body);
    if let Ok(m) = Multipart::parse(raw_body) {
        assert!(!m.is_empty());
        let rebuilt = eas::multipart::build(m.parts()).expect("parsed parts rebuild");
        let again = Multipart::parse(&rebuilt).expect("rebuilt body parses");
        assert_eq!(again.parts(), m.parts());
    }
});
