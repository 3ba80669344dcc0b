//! [`EasRequest`]: who is asking for what — one value per request, built from the method, the
//! query (plain or base64) and the headers. The gateway's access decision, audit line and
//! routing read only this.

use http::{HeaderMap, Method, Uri};

use crate::base64_query::Base64Query;
use crate::command::{Command, CommandRef};
use crate::device::{DeviceId, validate_device_type, validate_user};
use crate::error::{EasError, clip};
use crate::headers::{Authorization, EasHeaders};
use crate::query::{PlainQuery, Query};
use crate::version::ProtocolVersion;

/// Longest command parameter value (AttachmentName, ItemId, LongId, ...).
const MAX_PARAM: usize = 1024;

/// Which query form the request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryForm {
    /// OPTIONS: the query, if any, is not read.
    None,
    Plain,
    Base64,
}

/// Command parameters of the query (MS-ASHTTP 2.2.1.1.1.2.5 / 2.2.1.1.1.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandParams {
    pub attachment_name: Option<String>,
    pub collection_id: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub occurrence: Option<String>,
    pub save_in_sent: Option<bool>,
    /// From the query (plain `AcceptMultiPart=` or base64 Options bit); the header is in
    /// [`EasHeaders::accept_multipart`]; [`EasRequest::accept_multipart`] combines both.
    pub accept_multipart: Option<bool>,
}

/// One ActiveSync request, parsed. For OPTIONS, `command`, `device_id` and `device_type` are
/// `None`; for POST they are always `Some` (a request without them fails to parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EasRequest {
    pub method: Method,
    pub form: QueryForm,
    /// The command as sent; unknown names/codes are kept raw (see [`CommandRef::known`]).
    pub command: Option<CommandRef>,
    /// The query's `User` (plain parameter or base64 tag 8).
    pub user: Option<String>,
    pub device_id: Option<DeviceId>,
    pub device_type: Option<String>,
    /// Base64 query only.
    pub locale: Option<u16>,
    pub params: CommandParams,
    /// Base64 version field, else the `MS-ASProtocolVersion` header.
    pub version: Option<ProtocolVersion>,
    /// Base64 policy key field, else the `X-MS-PolicyKey` header.
    pub policy_key: Option<u32>,
    pub headers: EasHeaders,
    /// The decoded base64 query as sent, for rewriting (`None` for plain queries).
    pub base64: Option<Base64Query>,
    /// Plain query parameters ActiveSync does not define.
    pub other_params: Vec<(String, String)>,
}

impl EasRequest {
    /// Parse from the request's method, URI (path and query) and headers.
    pub fn parse(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Self, EasError> {
        Self::from_parts(method, uri.query(), headers)
    }

    /// Parse from the method, the query string (after `?`, if any) and headers.
    pub fn from_parts(
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Self, EasError> {
        let headers = EasHeaders::parse(headers)?;
        let mut req = Self {
            method: method.clone(),
            form: QueryForm::None,
            command: None,
            user: None,
            device_id: None,
            device_type: None,
            locale: None,
            params: CommandParams::default(),
            version: headers.protocol_version,
            policy_key: headers.policy_key,
            headers,
            base64: None,
            other_params: Vec::new(),
        };
        if method == Method::OPTIONS {
            return Ok(req);
        }
        if method != Method::POST {
            return Err(EasError::UnsupportedMethod {
                method: clip(method.as_str()),
            });
        }
        let query = query.unwrap_or("");
        if query.is_empty() {
            return Err(EasError::MissingCommand);
        }
        match Query::parse(query)? {
            Query::Plain(q) => req.fill_plain(q)?,
            Query::Base64(q) => req.fill_base64(q)?,
        }
        Ok(req)
    }

    fn fill_plain(&mut self, q: PlainQuery) -> Result<(), EasError> {
        self.form = QueryForm::Plain;
        let cmd = q
            .cmd
            .filter(|c| !c.is_empty())
            .ok_or(EasError::MissingCommand)?;
        self.command = Some(CommandRef::from_name(&cmd));
        let device_id = q.device_id.ok_or(EasError::MissingDeviceId)?;
        self.device_id = Some(DeviceId::parse(&device_id)?);
        let device_type = q.device_type.ok_or(EasError::MissingDeviceType)?;
        validate_device_type(&device_type)?;
        self.device_type = Some(device_type);
        self.user = checked_user(q.user)?;
        self.params = CommandParams {
            attachment_name: checked_param("AttachmentName", q.attachment_name)?,
            collection_id: checked_param("CollectionId", q.collection_id)?,
            item_id: checked_param("ItemId", q.item_id)?,
            long_id: checked_param("LongId", q.long_id)?,
            occurrence: checked_param("Occurrence", q.occurrence)?,
            save_in_sent: q.save_in_sent,
            accept_multipart: q.accept_multipart,
        };
        self.other_params = q.other;
        Ok(())
    }

    fn fill_base64(&mut self, q: Base64Query) -> Result<(), EasError> {
        self.form = QueryForm::Base64;
        // The fields carry what the headers would; a header that disagrees would let the
        // gateway and the server see different versions / keys, so it is refused.
        if let Some(h) = self.headers.protocol_version
            && h != q.version
        {
            return Err(EasError::Conflicting {
                name: "MS-ASProtocolVersion",
                header: h.to_string(),
                query: q.version.to_string(),
            });
        }
        if let (Some(h), Some(k)) = (self.headers.policy_key, q.policy_key)
            && h != k
        {
            return Err(EasError::Conflicting {
                name: "X-MS-PolicyKey",
                header: h.to_string(),
                query: k.to_string(),
            });
        }
        self.version = Some(q.version);
        self.policy_key = q.policy_key.or(self.headers.policy_key);
        self.command = Some(q.command());
        self.locale = Some(q.locale);
        self.device_id = Some(DeviceId::from_bytes(&q.device_id)?);
        let device_type =
            String::from_utf8(q.device_type.clone()).map_err(|_| EasError::InvalidParameter {
                name: "DeviceType",
                value: crate::error::clip_bytes(&q.device_type),
                expected: "UTF-8 text",
            })?;
        validate_device_type(&device_type)?;
        self.device_type = Some(device_type);
        self.user = checked_user(q.user.clone())?;
        self.params = CommandParams {
            attachment_name: checked_param("AttachmentName", q.attachment_name.clone())?,
            collection_id: checked_param("CollectionId", q.collection_id.clone())?,
            item_id: checked_param("ItemId", q.item_id.clone())?,
            long_id: checked_param("LongId", q.long_id.clone())?,
            occurrence: checked_param("Occurrence", q.occurrence.clone())?,
            save_in_sent: q.options.map(|_| q.save_in_sent()),
            accept_multipart: q.options.map(|_| q.accept_multipart()),
        };
        self.base64 = Some(q);
        Ok(())
    }

    pub fn is_options(&self) -> bool {
        self.method == Method::OPTIONS
    }

    /// The command when it is a known one.
    pub fn known_command(&self) -> Option<Command> {
        match self.command {
            Some(CommandRef::Known(c)) => Some(c),
            _ => None,
        }
    }

    /// The user this request is for: the query's `User`, else the Basic login name as sent.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref().or_else(|| {
            self.headers
                .authorization
                .as_ref()
                .and_then(Authorization::login)
                .map(|l| l.raw.as_str())
        })
    }

    /// Whether the client asked for a multipart ItemOperations answer (query or header).
    pub fn accept_multipart(&self) -> bool {
        self.params.accept_multipart == Some(true) || self.headers.accept_multipart == Some(true)
    }

    /// Whether the client asked to save the sent message (SendMail / Smart*).
    pub fn save_in_sent(&self) -> bool {
        self.params.save_in_sent == Some(true)
    }
}

fn checked_user(user: Option<String>) -> Result<Option<String>, EasError> {
    match user {
        Some(u) if u.is_empty() => Ok(None),
        Some(u) => {
            validate_user("User", &u)?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

fn checked_param(name: &'static str, value: Option<String>) -> Result<Option<String>, EasError> {
    if let Some(v) = &value
        && (v.len() > MAX_PARAM || v.chars().any(char::is_control))
    {
        return Err(EasError::InvalidParameter {
            name,
            value: clip(v),
            expected: "at most 1024 bytes without control characters",
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{MS_AS_ACCEPT_MULTIPART, MS_AS_PROTOCOL_VERSION, X_MS_POLICY_KEY};
    use base64::Engine as _;
    use http::HeaderValue;
    use http::header::AUTHORIZATION;

    fn post(uri: &str, headers: &HeaderMap) -> Result<EasRequest, EasError> {
        EasRequest::parse(&Method::POST, &uri.parse().unwrap(), headers)
    }

    #[test]
    fn spec_base64_example() {
        let r = post(
            "/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l",
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(r.form, QueryForm::Base64);
        assert_eq!(r.version, Some(ProtocolVersion::V14_0));
        assert_eq!(r.known_command(), Some(Command::Sync));
        assert_eq!(r.locale, Some(0x0409));
        assert_eq!(r.device_id.as_ref().unwrap().as_str(), "v140Device");
        assert_eq!(r.policy_key, None);
        assert_eq!(r.device_type.as_deref(), Some("SmartPhone"));
        assert!(r.base64.is_some());
    }

    #[test]
    fn spec_plain_and_base64_forms_are_equivalent() {
        // MS-ASHTTP 2.2.1.1.1: the two request lines of the spec's example.
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("14.0"));
        let plain = post(
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=rmjones&DeviceId=v140Device&DeviceType=SmartPhone",
            &h,
        )
        .unwrap();
        let b64 = post(
            "/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l",
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(plain.command, b64.command);
        assert_eq!(plain.version, b64.version);
        assert_eq!(plain.device_id, b64.device_id);
        assert_eq!(plain.device_type, b64.device_type);
        assert_eq!(plain.policy_key, b64.policy_key);
    }

    #[test]
    fn sogo_base64_example() {
        let r = post(
            "/Microsoft-Server-ActiveSync?jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=",
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(r.version, Some(ProtocolVersion::V14_1));
        assert_eq!(r.known_command(), Some(Command::FolderSync));
        assert_eq!(r.device_id.unwrap().as_str(), "B64DEV01");
        assert_eq!(r.device_type.as_deref(), Some("curl"));
        assert_eq!(r.user.as_deref(), Some("user1"));
    }

    #[test]
    fn plain_with_headers() {
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("12.1"));
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_static("0"));
        h.insert(MS_AS_ACCEPT_MULTIPART, HeaderValue::from_static("T"));
        let creds = base64::engine::general_purpose::STANDARD.encode("CORP\\alice:Secr3tPassw0rd");
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {creds}")).unwrap(),
        );
        let r = post(
            "/Microsoft-Server-ActiveSync?Cmd=ItemOperations&DeviceId=Appl1&DeviceType=iPhone&X=1",
            &h,
        )
        .unwrap();
        assert_eq!(r.form, QueryForm::Plain);
        assert_eq!(r.known_command(), Some(Command::ItemOperations));
        assert_eq!(r.version, Some(ProtocolVersion::V12_1));
        assert_eq!(r.policy_key, Some(0));
        assert!(r.accept_multipart());
        assert!(!r.save_in_sent());
        // No User parameter: the Basic login name stands in.
        assert_eq!(r.user_name(), Some("CORP\\alice"));
        assert_eq!(r.other_params, vec![("X".into(), "1".into())]);
        let dbg = format!("{r:?}");
        assert!(
            !dbg.contains("Secr3tPassw0rd") && !dbg.contains(&creds),
            "{dbg}"
        );
    }

    #[test]
    fn options_carries_no_command_or_device() {
        let r = EasRequest::parse(
            &Method::OPTIONS,
            &"/Microsoft-Server-ActiveSync".parse().unwrap(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert!(r.is_options());
        assert_eq!(r.form, QueryForm::None);
        assert_eq!(r.command, None);
        assert_eq!(r.device_id, None);
        // A query on OPTIONS is ignored, even a broken one.
        let r = EasRequest::parse(
            &Method::OPTIONS,
            &"/Microsoft-Server-ActiveSync?%zz".parse().unwrap(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(r.device_id, None);
    }

    #[test]
    fn post_errors() {
        let h = HeaderMap::new();
        let cases: [(&str, EasError); 7] = [
            ("/x", EasError::MissingCommand),
            ("/x?DeviceId=a&DeviceType=b", EasError::MissingCommand),
            ("/x?Cmd=&DeviceId=a&DeviceType=b", EasError::MissingCommand),
            ("/x?Cmd=Sync&DeviceType=b", EasError::MissingDeviceId),
            (
                "/x?Cmd=Sync&DeviceId=&DeviceType=b",
                EasError::MissingDeviceId,
            ),
            ("/x?Cmd=Sync&DeviceId=a", EasError::MissingDeviceType),
            (
                "/x?Cmd=Sync&DeviceId=a&DeviceType=b&User=a%0Ab",
                EasError::InvalidParameter {
                    name: "User",
                    value: "a\nb".into(),
                    expected: "no control characters",
                },
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(post(uri, &h).unwrap_err(), want, "{uri}");
        }
        let long = format!("/x?Cmd=Sync&DeviceType=b&DeviceId={}", "a".repeat(40));
        assert!(matches!(
            post(&long, &h),
            Err(EasError::DeviceIdTooLong { len: 40, .. })
        ));
        assert!(matches!(
            post("/x?Cmd=Sync&DeviceType=b&DeviceId=a%2Cb", &h),
            Err(EasError::DeviceIdInvalidChar { ch: ',', .. })
        ));
        assert!(matches!(
            post("/x?Cmd=Sync&DeviceId=a&DeviceType=b&ItemId=a%00", &h),
            Err(EasError::InvalidParameter { name: "ItemId", .. })
        ));
        let e = EasRequest::parse(&Method::GET, &"/x?Cmd=Sync".parse().unwrap(), &h).unwrap_err();
        assert_eq!(
            e,
            EasError::UnsupportedMethod {
                method: "GET".into()
            }
        );
    }

    #[test]
    fn unknown_command_is_kept_for_the_gateway() {
        let r = post("/x?Cmd=Frob&DeviceId=a&DeviceType=b", &HeaderMap::new()).unwrap();
        assert_eq!(r.command, Some(CommandRef::UnknownName("Frob".into())));
        assert_eq!(r.known_command(), None);
        assert!(matches!(
            r.command.unwrap().known(),
            Err(EasError::UnknownCommand { .. })
        ));
    }

    #[test]
    fn base64_conflicts_with_headers() {
        let uri = "/x?jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=";
        let mut h = HeaderMap::new();
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("14.1"));
        assert!(post(uri, &h).is_ok());
        h.insert(MS_AS_PROTOCOL_VERSION, HeaderValue::from_static("12.1"));
        assert_eq!(
            post(uri, &h),
            Err(EasError::Conflicting {
                name: "MS-ASProtocolVersion",
                header: "12.1".into(),
                query: "14.1".into()
            })
        );
        // Key in the query and a different one in the header.
        let mut q = Base64Query::decode("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=").unwrap();
        q.policy_key = Some(7);
        let uri = format!("/x?{}", q.encode().unwrap());
        let mut h = HeaderMap::new();
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_static("8"));
        assert!(matches!(
            post(&uri, &h),
            Err(EasError::Conflicting {
                name: "X-MS-PolicyKey",
                ..
            })
        ));
        h.insert(X_MS_POLICY_KEY, HeaderValue::from_static("7"));
        assert_eq!(post(&uri, &h).unwrap().policy_key, Some(7));
    }

    #[test]
    fn base64_options_bits_and_binary_device_id() {
        let mut q = Base64Query::new(
            ProtocolVersion::V16_1,
            Command::SendMail,
            0x0407,
            &[0xde, 0xad, 0xbe, 0xef],
            b"WP8",
        );
        q.options = Some(0x01);
        let r = post(&format!("/x?{}", q.encode().unwrap()), &HeaderMap::new()).unwrap();
        assert!(r.save_in_sent());
        assert!(!r.accept_multipart());
        assert_eq!(r.device_id.unwrap().as_str(), "DEADBEEF");
        assert_eq!(r.locale, Some(0x0407));
    }
}
