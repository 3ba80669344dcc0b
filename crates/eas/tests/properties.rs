//! Property tests: the base64 query round-trips for random valid fields, the request model
//! agrees with what was encoded, and no parser panics on random input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use eas::headers::{MS_AS_PROTOCOL_VERSION, X_MS_POLICY_KEY};
use eas::{
    Authorization, Base64Query, Command, CommandRef, EasRequest, Multipart, PlainQuery,
    ProtocolVersion, ProvisionRequest, Query, QueryForm, long_poll, multipart, ping_body,
    sync_long_poll,
};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;

fn b64_version() -> impl Strategy<Value = ProtocolVersion> {
    prop::sample::select(&ProtocolVersion::ALL[2..])
}

fn text_param() -> impl Strategy<Value = Option<String>> {
    // At most 60 chars of up to 4 bytes: always within the one-byte length field.
    prop::option::of("[^\u{0}]{0,60}")
}

prop_compose! {
    fn any_base64_query()(
        version in b64_version(),
        command_code in any::<u8>(),
        locale in any::<u16>(),
        device_id in prop::collection::vec(any::<u8>(), 1..=255),
        policy_key in prop::option::of(any::<u32>()),
        device_type in prop::collection::vec(any::<u8>(), 0..=255),
        params in (text_param(), text_param(), text_param(), text_param(), text_param(),
                   text_param(), text_param(), text_param()),
        options in prop::option::of(any::<u8>()),
    ) -> Base64Query {
        let mut q = Base64Query::new(version, Command::Sync, locale, &device_id, &device_type);
        q.command_code = command_code;
        q.policy_key = policy_key;
        (q.attachment_name, q.collection_id, q.collection_name, q.item_id, q.long_id,
         q.parent_id, q.occurrence, q.user) = params;
        q.options = options;
        q
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn base64_query_round_trips(q in any_base64_query()) {
        let encoded = q.encode().unwrap();
        prop_assert_eq!(Base64Query::decode(&encoded).unwrap(), q.clone());
        prop_assert_eq!(Base64Query::from_bytes(&q.to_bytes().unwrap()).unwrap(), q);
    }

    #[test]
    fn request_from_valid_base64_fields(
        version in b64_version(),
        command in prop::sample::select(&Command::ALL[..]),
        device_id in "[A-Za-z0-9_-]{1,32}",
        device_type in "[A-Za-z0-9]{1,32}",
        user in prop::option::of("[a-z]{1,12}(@[a-z]{1,8}\\.example)?"),
        policy_key in prop::option::of(any::<u32>()),
        options in prop::option::of(0u8..4),
        locale in any::<u16>(),
    ) {
        let mut q = Base64Query::new(version, command, locale, device_id.as_bytes(), device_type.as_bytes());
        q.user = user.clone();
        q.policy_key = policy_key;
        q.options = options;
        let uri = format!("/Microsoft-Server-ActiveSync?{}", q.encode().unwrap());
        let r = EasRequest::parse(&Method::POST, &uri.parse().unwrap(), &HeaderMap::new()).unwrap();
        prop_assert_eq!(r.form, QueryForm::Base64);
        prop_assert_eq!(&r.command, &Some(CommandRef::Known(command)));
        prop_assert_eq!(r.version, Some(version));
        prop_assert_eq!(r.device_id.as_ref().map(|d| d.as_str()), Some(device_id.as_str()));
        prop_assert_eq!(r.device_type.as_deref(), Some(device_type.as_str()));
        prop_assert_eq!(&r.user, &user);
        prop_assert_eq!(r.policy_key, policy_key);
        prop_assert_eq!(r.locale, Some(locale));
        prop_assert_eq!(r.save_in_sent(), options.unwrap_or(0) & 1 != 0);
        prop_assert_eq!(r.accept_multipart(), options.unwrap_or(0) & 2 != 0);
    }

    #[test]
    fn request_from_valid_plain_fields(
        command in prop::sample::select(&Command::ALL[..]),
        device_id in "[A-Za-z0-9_-]{1,32}",
        device_type in "[A-Za-z0-9 .-]{1,32}",
        user in "[^\u{0}-\u{1f}\u{7f}-\u{9f}]{1,40}",
        version in prop::sample::select(&ProtocolVersion::ALL[..]),
        key in any::<u32>(),
    ) {
        let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let query = format!(
            "Cmd={}&User={}&DeviceId={}&DeviceType={}",
            command, enc(&user), device_id, enc(&device_type)
        );
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static(version.as_str()));
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_str(&key.to_string()).unwrap());
        let r = EasRequest::from_parts(&Method::POST, Some(&query), &h).unwrap();
        prop_assert_eq!(r.form, QueryForm::Plain);
        prop_assert_eq!(r.known_command(), Some(command));
        prop_assert_eq!(r.user.as_deref(), Some(user.as_str()));
        prop_assert_eq!(r.device_id.as_ref().map(|d| d.as_str()), Some(device_id.as_str()));
        prop_assert_eq!(r.device_type.as_deref(), Some(device_type.as_str()));
        prop_assert_eq!(r.version, Some(version));
        prop_assert_eq!(r.policy_key, Some(key));
    }

    #[test]
    fn multipart_round_trips(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6)) {
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let body = multipart::build(&refs).unwrap();
        let m = Multipart::parse(&body).unwrap();
        prop_assert_eq!(m.parts(), refs.as_slice());
    }

    #[test]
    fn query_parsers_never_panic(s in "\\PC{0,200}") {
        let _ = Query::parse(&s);
        let _ = PlainQuery::parse(&s);
        let _ = Base64Query::decode(&s);
        let _ = EasRequest::from_parts(&Method::POST, Some(&s), &HeaderMap::new());
    }

    #[test]
    fn query_like_strings_never_panic(
        pairs in prop::collection::vec(("(?i)(cmd|user|deviceid|devicetype|itemid|saveinsent|acceptmultipart|x)", "[%+=&A-Za-z0-9]{0,12}"), 0..8)
    ) {
        let q = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let _ = EasRequest::from_parts(&Method::POST, Some(&q), &HeaderMap::new());
    }

    #[test]
    fn byte_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Base64Query::from_bytes(&bytes);
        let _ = ping_body(&bytes);
        let _ = sync_long_poll(&bytes);
        let _ = long_poll(Command::Ping, &bytes);
        let _ = ProvisionRequest::parse(&bytes);
        let _ = Multipart::parse(&bytes);
        let _ = Authorization::parse(&bytes);
    }

    #[test]
    fn wbxml_shaped_bodies_never_panic(tail in prop::collection::vec(any::<u8>(), 0..256), page in prop::sample::select(vec![0u8, 13, 14, 18])) {
        // Valid header and a page switch, so the fuzzing reaches the fact extractors.
        let mut body = vec![0x03, 0x01, 0x6A, 0x00, 0x00, page];
        body.extend_from_slice(&tail);
        let _ = ping_body(&body);
        let _ = sync_long_poll(&body);
        let _ = ProvisionRequest::parse(&body);
    }

    #[test]
    fn headers_never_panic(
        v in prop::collection::vec(any::<u8>(), 0..64),
        k in prop::collection::vec(any::<u8>(), 0..32),
        a in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&v) { h.insert(MS_AS_PROTOCOL_VERSION, v); }
        if let Ok(k) = HeaderValue::from_bytes(&k) { h.insert(X_MS_POLICY_KEY, k); }
        if let Ok(a) = HeaderValue::from_bytes(&a) { h.insert(http::header::AUTHORIZATION, a); }
        let _ = EasRequest::from_parts(&Method::POST, Some("Cmd=Sync&DeviceId=a&DeviceType=b"), &h);
        let _ = EasRequest::from_parts(&Method::OPTIONS, None, &h);
    }
}
