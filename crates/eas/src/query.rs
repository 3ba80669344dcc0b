//! The request query: the plain form `Cmd=..&User=..&DeviceId=..&DeviceType=..` (MS-ASHTTP
//! 2.2.1.1.1.2) and the dispatch between it and the base64 form.
//!
//! Parameter names match case-insensitively, as Exchange and Z-Push accept them. A parameter the
//! model knows may appear only once: two `DeviceId`s could make the gateway check one device while
//! the server serves another.

use crate::base64_query::Base64Query;
use crate::error::{EasError, clip};

/// Most parameters a plain query may carry (real clients send 4..7).
pub const MAX_PARAMS: usize = 32;

/// A plain query, percent-decoded. Values are not validated here; [`crate::EasRequest`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlainQuery {
    pub cmd: Option<String>,
    pub user: Option<String>,
    pub device_id: Option<String>,
    pub device_type: Option<String>,
    pub attachment_name: Option<String>,
    pub collection_id: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub occurrence: Option<String>,
    pub save_in_sent: Option<bool>,
    pub accept_multipart: Option<bool>,
    /// Parameters ActiveSync does not define, in order (kept for logs; servers ignore them).
    pub other: Vec<(String, String)>,
}

/// Either form of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Plain(PlainQuery),
    Base64(Base64Query),
}

impl Query {
    /// Parse the part after `?`. It is plain text when it holds `&` or a `=` that is not
    /// trailing base64 padding; otherwise base64.
    pub fn parse(query: &str) -> Result<Self, EasError> {
        if is_plain(query) {
            PlainQuery::parse(query).map(Query::Plain)
        } else {
            Base64Query::decode(query).map(Query::Base64)
        }
    }
}

fn is_plain(query: &str) -> bool {
    let body = query.trim_end_matches('=');
    body.contains('&') || body.contains('=')
}

impl PlainQuery {
    /// Parse `name=value&...` with form decoding (`%XX`, `+` = space).
    pub fn parse(query: &str) -> Result<Self, EasError> {
        let mut q = PlainQuery::default();
        let mut count = 0usize;
        let mut offset = 0usize;
        for pair in query.split('&') {
            let start = offset;
            offset += pair.len() + 1;
            if pair.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_PARAMS {
                return Err(EasError::InvalidParameter {
                    name: "query",
                    value: clip(query),
                    expected: "at most 32 parameters",
                });
            }
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_cow(raw_name, start, "parameter name")?;
            let value_at = start + raw_name.len() + 1;
            let known = KNOWN
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(n, k)| (*n, *k));
            let Some((canonical, kind)) = known else {
                let value = decode_text(raw_value, value_at, "parameter value")?;
                q.other.push((name.into_owned(), value));
                continue;
            };
            let value = decode_text(raw_value, value_at, canonical)?;
            match kind {
                Kind::Text(field) => {
                    let slot = field(&mut q);
                    if slot.is_some() {
                        return Err(EasError::DuplicateParameter { name: canonical });
                    }
                    *slot = Some(value);
                }
                Kind::Flag(field) => {
                    let flag = parse_flag(canonical, &value)?;
                    let slot = field(&mut q);
                    if slot.is_some() {
                        return Err(EasError::DuplicateParameter { name: canonical });
                    }
                    *slot = Some(flag);
                }
            }
        }
        Ok(q)
    }
}

type TextField = fn(&mut PlainQuery) -> &mut Option<String>;
type FlagField = fn(&mut PlainQuery) -> &mut Option<bool>;

#[derive(Clone, Copy)]
enum Kind {
    Text(TextField),
    Flag(FlagField),
}

const KNOWN: [(&str, Kind); 11] = [
    ("Cmd", Kind::Text(|q| &mut q.cmd)),
    ("User", Kind::Text(|q| &mut q.user)),
    ("DeviceId", Kind::Text(|q| &mut q.device_id)),
    ("DeviceType", Kind::Text(|q| &mut q.device_type)),
    ("AttachmentName", Kind::Text(|q| &mut q.attachment_name)),
    ("CollectionId", Kind::Text(|q| &mut q.collection_id)),
    ("ItemId", Kind::Text(|q| &mut q.item_id)),
    ("LongId", Kind::Text(|q| &mut q.long_id)),
    ("Occurrence", Kind::Text(|q| &mut q.occurrence)),
    ("SaveInSent", Kind::Flag(|q| &mut q.save_in_sent)),
    ("AcceptMultiPart", Kind::Flag(|q| &mut q.accept_multipart)),
];

/// `T` / `F` (MS-ASHTTP); ASCII case ignored.
pub(crate) fn parse_flag(name: &'static str, value: &str) -> Result<bool, EasError> {
    if value.eq_ignore_ascii_case("T") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("F") {
        Ok(false)
    } else {
        Err(EasError::InvalidParameter {
            name,
            value: clip(value),
            expected: "T or F",
        })
    }
}

fn decode_text(raw: &str, offset: usize, name: &'static str) -> Result<String, EasError> {
    decode_cow(raw, offset, name).map(std::borrow::Cow::into_owned)
}

/// As [`decode_text`], borrowing `raw` when it has nothing to decode (the usual case: ActiveSync
/// names and values are plain ASCII), so names are compared without a copy.
fn decode_cow<'a>(
    raw: &'a str,
    offset: usize,
    name: &'static str,
) -> Result<std::borrow::Cow<'a, str>, EasError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    let bytes = percent_decode(raw.as_bytes(), true).map_err(|e| match e {
        EasError::InvalidPercentEncoding { offset: o } => {
            EasError::InvalidPercentEncoding { offset: offset + o }
        }
        other => other,
    })?;
    String::from_utf8(bytes)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| EasError::InvalidUtf8 { name })
}

/// Undo `%XX` escapes (and `+` -> space when `plus_is_space`). A `%` not followed by two hex
/// digits is an error at its byte offset.
pub(crate) fn percent_decode(input: &[u8], plus_is_space: bool) -> Result<Vec<u8>, EasError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => {
                let hi = input.get(i + 1).and_then(|c| hex(*c));
                let lo = input.get(i + 2).and_then(|c| hex(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(EasError::InvalidPercentEncoding { offset: i });
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_plain_example() {
        let q =
            PlainQuery::parse("Cmd=Sync&User=rmjones&DeviceId=v140Device&DeviceType=SmartPhone")
                .unwrap();
        assert_eq!(q.cmd.as_deref(), Some("Sync"));
        assert_eq!(q.user.as_deref(), Some("rmjones"));
        assert_eq!(q.device_id.as_deref(), Some("v140Device"));
        assert_eq!(q.device_type.as_deref(), Some("SmartPhone"));
        assert!(q.other.is_empty());
    }

    #[test]
    fn names_are_case_insensitive_and_values_percent_decoded() {
        let q = PlainQuery::parse(
            "cmd=SmartReply&user=CORP%5Calice&DEVICEID=d1&devicetype=iPhone&itemid=5%3A1&collectionid=7&occurrence=2010-03-20T22%3A40%3A00.000Z&saveinsent=T&longid=RgAA&attachmentname=mail%2FINBOX%2F2%2F2&acceptmultipart=f",
        )
        .unwrap();
        assert_eq!(q.cmd.as_deref(), Some("SmartReply"));
        assert_eq!(q.user.as_deref(), Some("CORP\\alice"));
        assert_eq!(q.item_id.as_deref(), Some("5:1"));
        assert_eq!(q.collection_id.as_deref(), Some("7"));
        assert_eq!(q.occurrence.as_deref(), Some("2010-03-20T22:40:00.000Z"));
        assert_eq!(q.save_in_sent, Some(true));
        assert_eq!(q.accept_multipart, Some(false));
        assert_eq!(q.long_id.as_deref(), Some("RgAA"));
        assert_eq!(q.attachment_name.as_deref(), Some("mail/INBOX/2/2"));
    }

    #[test]
    fn plus_is_space_and_utf8_is_checked() {
        let q = PlainQuery::parse("User=a+b%40c&DeviceId=x").unwrap();
        assert_eq!(q.user.as_deref(), Some("a b@c"));
        let q = PlainQuery::parse("User=j%C3%BCrgen").unwrap();
        assert_eq!(q.user.as_deref(), Some("jürgen"));
        assert_eq!(
            PlainQuery::parse("User=%FF"),
            Err(EasError::InvalidUtf8 { name: "User" })
        );
    }

    #[test]
    fn bad_percent_escapes_report_their_offset() {
        assert_eq!(
            PlainQuery::parse("Cmd=Sync&User=a%zz"),
            Err(EasError::InvalidPercentEncoding { offset: 15 })
        );
        assert_eq!(
            PlainQuery::parse("Cmd=Sync%2"),
            Err(EasError::InvalidPercentEncoding { offset: 8 })
        );
        assert!(percent_decode(b"%", false).is_err());
        assert_eq!(percent_decode(b"a+b%2B", false).unwrap(), b"a+b+");
    }

    #[test]
    fn duplicates_of_known_parameters_are_refused() {
        assert_eq!(
            PlainQuery::parse("Cmd=Sync&DeviceId=a&deviceid=b"),
            Err(EasError::DuplicateParameter { name: "DeviceId" })
        );
        assert_eq!(
            PlainQuery::parse("Cmd=Sync&cmd=Ping"),
            Err(EasError::DuplicateParameter { name: "Cmd" })
        );
        assert_eq!(
            PlainQuery::parse("SaveInSent=T&SaveInSent=F"),
            Err(EasError::DuplicateParameter { name: "SaveInSent" })
        );
    }

    #[test]
    fn unknown_parameters_are_kept_and_empty_pairs_skipped() {
        let q = PlainQuery::parse("&Cmd=Ping&&Foo=bar&flag&").unwrap();
        assert_eq!(q.cmd.as_deref(), Some("Ping"));
        assert_eq!(
            q.other,
            vec![("Foo".into(), "bar".into()), ("flag".into(), String::new())]
        );
    }

    #[test]
    fn flags_must_be_t_or_f() {
        assert!(matches!(
            PlainQuery::parse("SaveInSent=yes"),
            Err(EasError::InvalidParameter {
                name: "SaveInSent",
                ..
            })
        ));
        assert_eq!(
            PlainQuery::parse("AcceptMultiPart=t")
                .unwrap()
                .accept_multipart,
            Some(true)
        );
    }

    #[test]
    fn too_many_parameters() {
        let q = (0..40)
            .map(|i| format!("p{i}=x"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(matches!(
            PlainQuery::parse(&q),
            Err(EasError::InvalidParameter { name: "query", .. })
        ));
    }

    #[test]
    fn form_detection() {
        assert!(matches!(
            Query::parse("Cmd=Sync&DeviceId=a"),
            Ok(Query::Plain(_))
        ));
        assert!(matches!(Query::parse("Cmd=Sync"), Ok(Query::Plain(_))));
        assert!(matches!(
            Query::parse("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE="),
            Ok(Query::Base64(_))
        ));
        assert!(matches!(
            Query::parse("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"),
            Ok(Query::Base64(_))
        ));
        assert!(matches!(
            Query::parse("Cmd"),
            Err(EasError::InvalidBase64 { .. })
        ));
    }
}
