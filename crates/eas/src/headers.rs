//! ActiveSync request headers (MS-ASHTTP 2.2.1.1.2) and the identity in `Authorization`.
//!
//! Only the user name is taken from Basic credentials; the password is dropped as soon as the
//! header is decoded, so no `EasRequest` can leak it through `Debug` or a log.

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, USER_AGENT};

use crate::device::{LoginName, validate_user};
use crate::error::{EasError, clip};
use crate::version::ProtocolVersion;

/// `MS-ASProtocolVersion` (request).
pub const MS_AS_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("ms-asprotocolversion");
/// `X-MS-PolicyKey` (request).
pub const X_MS_POLICY_KEY: HeaderName = HeaderName::from_static("x-ms-policykey");
/// `MS-ASAcceptMultiPart` (request, ItemOperations).
pub const MS_AS_ACCEPT_MULTIPART: HeaderName = HeaderName::from_static("ms-asacceptmultipart");
/// `MS-ASProtocolVersions` (OPTIONS response).
pub const MS_AS_PROTOCOL_VERSIONS: HeaderName = HeaderName::from_static("ms-asprotocolversions");
/// `MS-ASProtocolCommands` (OPTIONS response).
pub const MS_AS_PROTOCOL_COMMANDS: HeaderName = HeaderName::from_static("ms-asprotocolcommands");
/// `MS-Server-ActiveSync` (responses).
pub const MS_SERVER_ACTIVESYNC: HeaderName = HeaderName::from_static("ms-server-activesync");
/// `X-MS-RP` (responses: protocol versions, sent on FolderSync SyncKey 0 and by Z-Push always).
pub const X_MS_RP: HeaderName = HeaderName::from_static("x-ms-rp");
/// `X-MS-Location` (451 response: where the device must go).
pub const X_MS_LOCATION: HeaderName = HeaderName::from_static("x-ms-location");
/// `Public` (OPTIONS response).
pub const PUBLIC: HeaderName = HeaderName::from_static("public");

/// Content type of WBXML bodies.
pub const CONTENT_TYPE_WBXML: &str = "application/vnd.ms-sync.wbxml";

/// Longest header value this model reads (User-Agent and the like).
const MAX_HEADER_TEXT: usize = 1024;

/// What the request's `Authorization` header says about who is calling (see
/// [`crate::credentials`] for why these names are the ones a server authenticates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// `Basic`: the login name (the password was read and discarded).
    Basic(LoginName),
    /// `NTLM`, or `Negotiate` carrying NTLM: `Some` from an AUTHENTICATE message, `None` during
    /// the handshake (NEGOTIATE) or for an anonymous AUTHENTICATE.
    Ntlm(Option<LoginName>),
    /// `Bearer` (OAuth, Exchange Online "modern auth"): the user a JWT's claims name, `None` for
    /// a token the gateway cannot read.
    Bearer(Option<LoginName>),
    /// Any other scheme by name (`Negotiate` with Kerberos, ...): names no one readable.
    Other(String),
}

impl Authorization {
    /// The login name when the credential carries one the gateway can read.
    pub fn login(&self) -> Option<&LoginName> {
        match self {
            Self::Basic(l) => Some(l),
            Self::Ntlm(l) | Self::Bearer(l) => l.as_ref(),
            Self::Other(_) => None,
        }
    }

    /// The first leg of an NTLM handshake: no credential yet, the server will challenge.
    pub fn is_handshake(&self) -> bool {
        matches!(self, Self::Ntlm(None))
    }

    /// Parse one `Authorization` value.
    pub fn parse(value: &[u8]) -> Result<Self, EasError> {
        let text = std::str::from_utf8(value).map_err(|_| EasError::InvalidAuthorization {
            reason: "not ASCII",
        })?;
        let text = text.trim();
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if scheme.is_empty() {
            return Err(EasError::InvalidAuthorization {
                reason: "no scheme",
            });
        }
        if scheme.eq_ignore_ascii_case("Bearer") {
            return Ok(Self::Bearer(crate::credentials::jwt_user(rest)));
        }
        if scheme.eq_ignore_ascii_case("NTLM") {
            return Ok(Self::Ntlm(ntlm_login(crate::credentials::parse_ntlm(
                rest,
            )?)));
        }
        if scheme.eq_ignore_ascii_case("Negotiate") {
            return Ok(match crate::credentials::parse_negotiate(rest)? {
                Some(t) => Self::Ntlm(ntlm_login(t)),
                None => Self::Other("Negotiate".into()),
            });
        }
        if !scheme.eq_ignore_ascii_case("Basic") {
            if !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(EasError::InvalidAuthorization {
                    reason: "scheme is not a token",
                });
            }
            return Ok(Self::Other(clip(scheme)));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| EasError::InvalidAuthorization {
                reason: "Basic credentials are not base64",
            })?;
        let colon =
            decoded
                .iter()
                .position(|&b| b == b':')
                .ok_or(EasError::InvalidAuthorization {
                    reason: "Basic credentials have no ':'",
                })?;
        let user_bytes = decoded.get(..colon).unwrap_or_default();
        // RFC 7617: UTF-8 when the client says so, historically ISO-8859-1: take UTF-8 when it
        // is valid, else map each byte to the Latin-1 character.
        let user = match std::str::from_utf8(user_bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => user_bytes.iter().map(|&b| char::from(b)).collect(),
        };
        drop(decoded);
        if user.is_empty() {
            return Err(EasError::InvalidAuthorization {
                reason: "Basic credentials have an empty user name",
            });
        }
        validate_user("Authorization", &user).map_err(|_| EasError::InvalidAuthorization {
            reason: "user name is too long or has control characters",
        })?;
        Ok(Self::Basic(LoginName::parse(&user)))
    }
}

fn ntlm_login(t: crate::credentials::NtlmToken) -> Option<LoginName> {
    match t {
        crate::credentials::NtlmToken::Handshake => None,
        crate::credentials::NtlmToken::Authenticate(l) => l,
    }
}

/// The ActiveSync headers of one request, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EasHeaders {
    pub protocol_version: Option<ProtocolVersion>,
    pub policy_key: Option<u32>,
    pub accept_multipart: Option<bool>,
    pub user_agent: Option<String>,
    pub authorization: Option<Authorization>,
}

impl EasHeaders {
    /// Parse from a header map. A header the model reads may appear once only.
    pub fn parse(headers: &HeaderMap) -> Result<Self, EasError> {
        let protocol_version = single(headers, &MS_AS_PROTOCOL_VERSION, "MS-ASProtocolVersion")?
            .map(|v| {
                let s = ascii(v, "MS-ASProtocolVersion")?;
                ProtocolVersion::from_header(s)
            })
            .transpose()?;
        let policy_key = single(headers, &X_MS_POLICY_KEY, "X-MS-PolicyKey")?
            .map(|v| parse_policy_key(ascii(v, "X-MS-PolicyKey")?))
            .transpose()?
            .flatten();
        let accept_multipart = single(headers, &MS_AS_ACCEPT_MULTIPART, "MS-ASAcceptMultiPart")?
            .map(|v| {
                let s = ascii(v, "MS-ASAcceptMultiPart")?.trim();
                crate::query::parse_flag("MS-ASAcceptMultiPart", s).map_err(|_| {
                    EasError::InvalidHeader {
                        name: "MS-ASAcceptMultiPart",
                        value: clip(s),
                        expected: "T or F",
                    }
                })
            })
            .transpose()?;
        let user_agent = headers.get(USER_AGENT).map(|v| {
            let bytes = v.as_bytes();
            let cut = bytes.get(..MAX_HEADER_TEXT).unwrap_or(bytes);
            String::from_utf8_lossy(cut).into_owned()
        });
        let authorization = single(headers, &AUTHORIZATION, "Authorization")
            .map_err(|_| EasError::InvalidAuthorization {
                reason: "more than one Authorization header",
            })?
            .map(|v| Authorization::parse(v.as_bytes()))
            .transpose()?;
        Ok(Self {
            protocol_version,
            policy_key,
            accept_multipart,
            user_agent,
            authorization,
        })
    }
}

/// `X-MS-PolicyKey`: a decimal u32; empty means "none yet".
fn parse_policy_key(value: &str) -> Result<Option<u32>, EasError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EasError::InvalidHeader {
            name: "X-MS-PolicyKey",
            value: clip(value),
            expected: "a decimal 32-bit unsigned integer",
        });
    }
    v.parse::<u32>()
        .map(Some)
        .map_err(|_| EasError::InvalidHeader {
            name: "X-MS-PolicyKey",
            value: clip(value),
            expected: "a decimal 32-bit unsigned integer",
        })
}

fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<Option<&'a http::HeaderValue>, EasError> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(EasError::DuplicateHeader { name: display });
    }
    Ok(first)
}

fn ascii<'a>(value: &'a http::HeaderValue, name: &'static str) -> Result<&'a str, EasError> {
    value.to_str().map_err(|_| EasError::InvalidHeader {
        name,
        value: crate::error::clip_bytes(value.as_bytes()),
        expected: "visible ASCII",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::LoginForm;
    use http::HeaderValue;

    fn basic(userpass: &[u8]) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(userpass);
        HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
    }

    #[test]
    fn basic_keeps_user_drops_password() {
        let a = Authorization::parse(basic(b"CORP\\alice:s3cret:with:colons").as_bytes()).unwrap();
        let login = a.login().unwrap();
        assert_eq!(login.user, "alice");
        assert_eq!(login.domain.as_deref(), Some("CORP"));
        assert_eq!(login.form, LoginForm::DownLevel);
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");

        let a = Authorization::parse(basic(b"bob@corp.example:pw").as_bytes()).unwrap();
        let login = a.login().unwrap();
        assert_eq!(
            (login.user.as_str(), login.domain.as_deref(), login.form),
            ("bob", Some("corp.example"), LoginForm::Upn)
        );
        // Lower-case scheme, empty password.
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"carol:");
        let a = Authorization::parse(format!("basic {b64}").as_bytes()).unwrap();
        assert_eq!(a.login().unwrap().user, "carol");
        // Latin-1 user name.
        let a = Authorization::parse(basic(b"j\xfcrgen:pw").as_bytes()).unwrap();
        assert_eq!(a.login().unwrap().user, "jürgen");
    }

    #[test]
    fn basic_errors() {
        for (value, reason) in [
            (&b"Basic !!!"[..], "Basic credentials are not base64"),
            (
                basic(b"nocolon").as_bytes(),
                "Basic credentials have no ':'",
            ),
            (
                basic(b":pw").as_bytes(),
                "Basic credentials have an empty user name",
            ),
            (b"", "no scheme"),
            (b"B@d x", "scheme is not a token"),
        ] {
            assert_eq!(
                Authorization::parse(value),
                Err(EasError::InvalidAuthorization { reason }),
                "{value:?}"
            );
        }
        assert!(Authorization::parse(basic(b"a\nb:pw").as_bytes()).is_err());
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            Authorization::parse(b"Bearer eyJ0eXAi.secret"),
            Ok(Authorization::Bearer(None))
        );
        let ntlm = crate::credentials::ntlm_samples::negotiate();
        let a = Authorization::parse(format!("NTLM {ntlm}").as_bytes()).unwrap();
        assert!(a.is_handshake());
        let a = Authorization::parse(format!("Negotiate {ntlm}").as_bytes()).unwrap();
        assert!(a.is_handshake());
        let t3 = crate::credentials::ntlm_samples::authenticate("CORP", "alice");
        let a = Authorization::parse(format!("NTLM {t3}").as_bytes()).unwrap();
        assert_eq!(a.login().unwrap().raw, "CORP\\alice");
        // Kerberos inside Negotiate: no readable name.
        assert_eq!(
            Authorization::parse(b"Negotiate YIIBhgYJKoZIhvcSAQICAQBuggF1"),
            Ok(Authorization::Other("Negotiate".into()))
        );
        assert_eq!(
            Authorization::parse(b"Digest username=\"a\""),
            Ok(Authorization::Other("Digest".into()))
        );
        // A malformed NTLM token is a malformed header, as a malformed Basic one is.
        assert!(Authorization::parse(b"NTLM TYPE1").is_err());
        assert_eq!(Authorization::Bearer(None).login(), None);
    }

    #[test]
    fn headers_parse() {
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("14.1"));
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_static("3942919513"));
        h.insert(MS_AS_ACCEPT_MULTIPART, HeaderValue::from_static("T"));
        h.insert(
            USER_AGENT,
            HeaderValue::from_static("Apple-iPhone9C1/1402.100"),
        );
        h.insert(AUTHORIZATION, basic(b"alice:pw"));
        let p = EasHeaders::parse(&h).unwrap();
        assert_eq!(p.protocol_version, Some(ProtocolVersion::V14_1));
        assert_eq!(p.policy_key, Some(3_942_919_513));
        assert_eq!(p.accept_multipart, Some(true));
        assert_eq!(p.user_agent.as_deref(), Some("Apple-iPhone9C1/1402.100"));
        assert_eq!(p.authorization.unwrap().login().unwrap().user, "alice");
        assert_eq!(
            EasHeaders::parse(&HeaderMap::new()).unwrap(),
            EasHeaders::default()
        );
    }

    #[test]
    fn header_errors() {
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("15.0"));
        assert_eq!(
            EasHeaders::parse(&h),
            Err(EasError::UnknownVersion {
                value: "15.0".into()
            })
        );
        let mut h = HeaderMap::new();
        h.append(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("14.1"));
        h.append(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("14.0"));
        assert_eq!(
            EasHeaders::parse(&h),
            Err(EasError::DuplicateHeader {
                name: "MS-ASProtocolVersion"
            })
        );
        for bad in ["-1", "4294967296", "12a", "0x10"] {
            let mut h = HeaderMap::new();
            h.insert(X_MS_POLICY_KEY, HeaderValue::from_str(bad).unwrap());
            assert!(
                matches!(
                    EasHeaders::parse(&h),
                    Err(EasError::InvalidHeader {
                        name: "X-MS-PolicyKey",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_static(""));
        assert_eq!(EasHeaders::parse(&h).unwrap().policy_key, None);
        let mut h = HeaderMap::new();
        h.insert(MS_AS_ACCEPT_MULTIPART, HeaderValue::from_static("yes"));
        assert!(matches!(
            EasHeaders::parse(&h),
            Err(EasError::InvalidHeader {
                name: "MS-ASAcceptMultiPart",
                ..
            })
        ));
        let mut h = HeaderMap::new();
        h.insert(
            MS_AS_PROTOCOL_VERSION,
            HeaderValue::from_bytes(b"14.\xff").unwrap(),
        );
        assert!(matches!(
            EasHeaders::parse(&h),
            Err(EasError::InvalidHeader { .. })
        ));
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, basic(b"a:b"));
        h.append(AUTHORIZATION, basic(b"c:d"));
        assert!(matches!(
            EasHeaders::parse(&h),
            Err(EasError::InvalidAuthorization { .. })
        ));
    }
}
