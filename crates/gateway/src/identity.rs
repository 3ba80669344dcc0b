//! Stage "identify device": who and which device a request is. The device comes from the plain
//! or base64 query (parsed by `crates/eas`); the user is the one the credential names — the
//! Basic login, the NTLM AUTHENTICATE message, a JWT's claims, or the NTLM login earlier on the
//! same connection — because that is who the server authenticates and ties the mailbox and the
//! device partnership to. The query's `User=` is the device's claim: it must name the same user
//! (after [`UserNaming::key`]), and it is used alone only while the request carries no credential
//! yet (the server will answer 401). A POST that does not say which device it is gets 400 and
//! never reaches a server. OPTIONS carries no device; when its query names one, the caller checks
//! that pair so a blocked device gets no answer from a server (a password oracle).

use eas::{Authorization, Command, EasRequest, LoginName, ProtocolVersion};
use http::Request;

use crate::access::{DeviceKey, OpaqueCredentials, UserNaming};
use crate::error::{Error, Result};
use crate::route;

/// What a request is, as far as device access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// `OPTIONS`: no device, not subject to device access; `Some` when its query and credential
    /// name a (user, DeviceId) pair, which must not be a blocked one.
    Options(Option<DeviceKey>),
    /// A device request.
    Device(DeviceIdentity),
}

/// Where the user of a request's access key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    /// The Basic login.
    Basic,
    /// An NTLM AUTHENTICATE message (bare or in Negotiate) on this request.
    Ntlm,
    /// The claims of a JWT bearer token.
    Bearer,
    /// An NTLM login earlier on this device connection (connection-bound authentication).
    Connection,
    /// The query's `User=`: no credential yet (the server will ask), or an opaque credential
    /// with `opaque_credentials = "query-user"`.
    Query,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Ntlm => "ntlm",
            Self::Bearer => "bearer",
            Self::Connection => "connection",
            Self::Query => "query",
        }
    }
}

/// The identity of one device request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The user as the credential spelled it (else the query's `User`), for display and logs.
    pub user: String,
    /// Where `user` came from.
    pub source: UserSource,
    /// DeviceId as the device spelled it (validated: ASCII letters, digits, `-`, `_`; ≤ 32).
    pub device_id: String,
    pub device_type: String,
    /// The command when it is a known one.
    pub command: Option<Command>,
    /// The command as sent (bounded), for the association and logs.
    pub command_name: String,
    /// Base64 version field, else `MS-ASProtocolVersion`.
    pub version: Option<ProtocolVersion>,
    pub user_agent: Option<String>,
    /// (user, DeviceId) normalised once for the access store and the heartbeat memory.
    pub key: DeviceKey,
}

impl DeviceIdentity {
    /// The access core's view of this request.
    pub fn request_info(&self) -> crate::access::RequestInfo<'_> {
        crate::access::RequestInfo {
            user: &self.user,
            device_id: &self.device_id,
            device_type: Some(&self.device_type),
            user_agent: self.user_agent.as_deref(),
            protocol_version: self.version.map(ProtocolVersion::as_str),
            command: Some(&self.command_name),
        }
    }
}

/// What identifying a request needs besides the request.
pub struct IdentifyWith<'a> {
    pub naming: &'a UserNaming,
    pub opaque: OpaqueCredentials,
    /// The login of an NTLM AUTHENTICATE seen earlier on this device connection.
    pub connection_login: Option<&'a str>,
}

/// The user a request's credential names, and from where. `Ok(None)`: no credential yet.
fn authenticated(
    auth: Option<&Authorization>,
    with: &IdentifyWith<'_>,
) -> Result<Option<(String, UserSource)>> {
    let named = |l: &LoginName, s| Ok(Some((l.raw.clone(), s)));
    match auth {
        Some(Authorization::Basic(l)) => named(l, UserSource::Basic),
        Some(Authorization::Ntlm(Some(l))) => named(l, UserSource::Ntlm),
        Some(Authorization::Bearer(Some(l))) => named(l, UserSource::Bearer),
        // The first leg of NTLM: the server will challenge; nothing is authenticated yet.
        Some(Authorization::Ntlm(None)) => Ok(None),
        Some(opaque @ (Authorization::Bearer(None) | Authorization::Other(_))) => {
            match with.opaque {
                OpaqueCredentials::QueryUser => Ok(None),
                OpaqueCredentials::Refuse => Err(Error::OpaqueCredentials {
                    scheme: match opaque {
                        Authorization::Other(s) => s.clone(),
                        _ => "Bearer".into(),
                    },
                }),
            }
        }
        None => Ok(with
            .connection_login
            .map(|l| (l.to_owned(), UserSource::Connection))),
    }
}

/// The request's user, where it came from, and its access key: the authenticated one, which the
/// query's `User` (when present) must match; the query's alone only when nothing is
/// authenticated. Each name is normalised once.
fn user_of(
    authenticated: Option<(String, UserSource)>,
    claimed: Option<String>,
    naming: &UserNaming,
) -> Result<(String, UserSource, String)> {
    match (authenticated, claimed) {
        (Some((login, source)), Some(claimed)) => {
            let key = naming.key(&login);
            if key != naming.key(&claimed) {
                return Err(Error::UserMismatch {
                    login: crate::access::clip(&login),
                    claimed: crate::access::clip(&claimed),
                });
            }
            Ok((login, source, key))
        }
        (Some((login, source)), None) => {
            let key = naming.key(&login);
            Ok((login, source, key))
        }
        (None, Some(claimed)) => {
            let key = naming.key(&claimed);
            Ok((claimed, UserSource::Query, key))
        }
        (None, None) => Err(Error::NoUser),
    }
}

/// Identify a request. Non-ActiveSync paths are refused here (404) before anything is parsed.
/// Never panics on device input: every malformed value is an [`Error::Identity`] (400, or 401 for
/// a malformed `Authorization`); a `User` that is not the authenticated user is
/// [`Error::UserMismatch`].
pub fn identify<B>(req: &Request<B>, with: &IdentifyWith<'_>) -> Result<Identified> {
    let path = req.uri().path();
    if !route::is_activesync_path(path) {
        let path = path.chars().take(200).collect();
        return Err(Error::NotActiveSync { path });
    }
    let mut parsed = EasRequest::parse(req.method(), req.uri(), req.headers())
        .map_err(|source| Error::Identity { source })?;
    if parsed.is_options() {
        return Ok(Identified::Options(options_pair(req, &parsed, with)));
    }
    // `EasRequest` guarantees DeviceId / DeviceType / command for a POST; refuse anyway if not.
    // The strings are moved out of `parsed`, not copied.
    let (Some(device_id), Some(device_type), Some(command)) = (
        parsed.device_id.take(),
        parsed.device_type.take(),
        parsed.command.as_ref(),
    ) else {
        return Err(Error::Identity {
            source: eas::EasError::MissingDeviceId,
        });
    };
    let command_name: String = command.raw_name().chars().take(64).collect();
    let login = authenticated(parsed.headers.authorization.as_ref(), with)?;
    // An empty or blank `User` names nobody.
    let claimed = parsed.user.take().filter(|u| !u.trim().is_empty());
    let (user, source, user_key) = user_of(login, claimed, with.naming)?;
    let device_id = device_id.into_string();
    let key = DeviceKey {
        user: user_key,
        device: device_id.to_ascii_lowercase(),
    };
    Ok(Identified::Device(DeviceIdentity {
        user,
        source,
        device_id,
        device_type,
        command: parsed.known_command(),
        command_name,
        version: parsed.version,
        user_agent: parsed.headers.user_agent.take(),
        key,
    }))
}

/// The (user, DeviceId) an OPTIONS request names, if it names both: the credential's user (else
/// the query's) and the query's DeviceId. Never an error: OPTIONS needs no device.
fn options_pair<B>(
    req: &Request<B>,
    parsed: &EasRequest,
    with: &IdentifyWith<'_>,
) -> Option<DeviceKey> {
    let facts = crate::activesync::query_facts(req.uri().query());
    let device = facts
        .device_id
        .filter(|d| eas::DeviceId::parse(d).is_ok())?;
    let user = parsed
        .headers
        .authorization
        .as_ref()
        .and_then(Authorization::login)
        .map(|l| l.raw.clone())
        .or(with.connection_login.map(str::to_owned))
        .or(facts.user)
        .filter(|u| !u.trim().is_empty())?;
    Some(DeviceKey::new(with.naming, &user, &device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    const PLAIN: IdentifyWith<'static> = IdentifyWith {
        naming: &UserNaming::EMPTY,
        opaque: OpaqueCredentials::Refuse,
        connection_login: None,
    };

    fn identify(r: &Request<()>) -> Result<Identified> {
        super::identify(r, &PLAIN)
    }

    fn with_auth(uri: &str, auth: &str) -> Request<()> {
        Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", auth)
            .body(())
            .unwrap()
    }

    fn basic(login: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{login}:pw"));
        format!("Basic {b64}")
    }

    fn device(r: Result<Identified>) -> DeviceIdentity {
        match r {
            Ok(Identified::Device(d)) => d,
            other => panic!("device expected, got {other:?}"),
        }
    }

    const Q: &str = "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=BLOCKED1&DeviceType=iPhone";

    #[test]
    fn identifies_plain_and_base64() {
        let Identified::Device(d) = identify(&req(
            "POST",
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=Dev1&DeviceType=iPhone",
        ))
        .unwrap() else {
            panic!("device expected")
        };
        assert_eq!((d.user.as_str(), d.device_id.as_str()), ("alice", "Dev1"));
        assert_eq!(d.command, Some(Command::Sync));
        let Identified::Device(d) = identify(&req(
            "POST",
            "/Microsoft-Server-ActiveSync?jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE=",
        ))
        .unwrap() else {
            panic!("device expected")
        };
        assert_eq!(
            (d.user.as_str(), d.device_id.as_str()),
            ("user1", "B64DEV01")
        );
        assert_eq!(d.version, Some(ProtocolVersion::V14_1));
    }

    #[test]
    fn refuses_what_names_no_device() {
        for uri in [
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=a&DeviceType=x",
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=a&DeviceId=&DeviceType=x",
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=a&DeviceId=a%zz&DeviceType=x",
            "/Microsoft-Server-ActiveSync",
            "/Microsoft-Server-ActiveSync?%%%",
            "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=D&DeviceType=x",
        ] {
            let e = identify(&req("POST", uri)).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{uri}: {e}");
        }
        assert_eq!(
            identify(&req("OPTIONS", "/Microsoft-Server-ActiveSync")).unwrap(),
            Identified::Options(None)
        );
        assert_eq!(
            identify(&req("POST", "/owa/?DeviceId=x"))
                .unwrap_err()
                .status(),
            http::StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_key_is_the_login_not_the_query() {
        // The issue's attack: User=mallory with victim's password. Refused, not keyed on mallory.
        let e = super::identify(
            &with_auth(&format!("{Q}&User=mallory"), &basic("victim")),
            &PLAIN,
        )
        .unwrap_err();
        assert!(matches!(e, Error::UserMismatch { .. }), "{e}");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(e.identity_rule(), Some("user_mismatch"));
        // No User at all: the login is the key.
        let d = device(identify(&with_auth(Q, &basic("CORP\\Victim"))));
        assert_eq!(
            (d.key.user.as_str(), d.source),
            ("victim", UserSource::Basic)
        );
        assert_eq!(d.user, "CORP\\Victim");
    }

    #[test]
    fn aliases_of_the_login_are_the_same_user() {
        for (login, user) in [
            ("CORP\\victim", "victim"),
            ("victim", "victim%40corp.example"),
            ("victim@corp.example", "CORP%5Cvictim"),
            ("Victim", "%20victim%20"),
            ("victim", "VICTIM"),
        ] {
            let d = device(identify(&with_auth(
                &format!("{Q}&User={user}"),
                &basic(login),
            )));
            assert_eq!(d.key.user, "victim", "{login} / {user}");
        }
        // With a default domain the key is the UPN, and all forms still agree.
        let aliases = [("CORP".to_string(), "corp.example".to_string())].into();
        let naming = UserNaming::new("corp.example", &aliases);
        let with = IdentifyWith {
            naming: &naming,
            ..PLAIN
        };
        let d = device(super::identify(
            &with_auth(
                &format!("{Q}&User=CORP%5Cvictim"),
                &basic("victim@corp.example"),
            ),
            &with,
        ));
        assert_eq!(d.key.user, "victim@corp.example");
        // ... and a user of another domain is another user.
        let e = super::identify(
            &with_auth(
                &format!("{Q}&User=victim%40other.example"),
                &basic("victim"),
            ),
            &with,
        );
        assert!(matches!(e, Err(Error::UserMismatch { .. })));
    }

    #[test]
    fn ntlm_jwt_and_the_connection_name_the_user() {
        let t3 = eas::credentials::ntlm_samples::authenticate("CORP", "victim");
        let d = device(identify(&with_auth(
            &format!("{Q}&User=victim"),
            &format!("NTLM {t3}"),
        )));
        assert_eq!(
            (d.key.user.as_str(), d.source),
            ("victim", UserSource::Ntlm)
        );
        let e = identify(&with_auth(
            &format!("{Q}&User=mallory"),
            &format!("NTLM {t3}"),
        ));
        assert!(matches!(e, Err(Error::UserMismatch { .. })));
        // The handshake's first leg authenticates nobody: the query names the user.
        let t1 = eas::credentials::ntlm_samples::negotiate();
        let d = device(identify(&with_auth(
            &format!("{Q}&User=mallory"),
            &format!("NTLM {t1}"),
        )));
        assert_eq!(
            (d.key.user.as_str(), d.source),
            ("mallory", UserSource::Query)
        );
        // Later requests on the NTLM connection carry no header: the connection's login.
        let with = IdentifyWith {
            connection_login: Some("CORP\\victim"),
            ..PLAIN
        };
        let r = req("POST", &format!("{Q}&User=mallory"));
        assert!(matches!(
            super::identify(&r, &with),
            Err(Error::UserMismatch { .. })
        ));
        let d = device(super::identify(&req("POST", Q), &with));
        assert_eq!(
            (d.key.user.as_str(), d.source),
            ("victim", UserSource::Connection)
        );
        // A JWT names its user.
        use base64::Engine as _;
        let enc = |j: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j);
        let jwt = format!(
            "{}.{}.c2ln",
            enc("{}"),
            enc(r#"{"upn":"victim@corp.example"}"#)
        );
        let e = identify(&with_auth(
            &format!("{Q}&User=mallory"),
            &format!("Bearer {jwt}"),
        ));
        assert!(matches!(e, Err(Error::UserMismatch { .. })));
        let d = device(identify(&with_auth(
            &format!("{Q}&User=victim"),
            &format!("Bearer {jwt}"),
        )));
        assert_eq!(d.source, UserSource::Bearer);
    }

    #[test]
    fn opaque_credentials_are_refused_unless_the_admin_trusts_the_query() {
        let r = with_auth(&format!("{Q}&User=mallory"), "Bearer opaque-token");
        let e = identify(&r).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(e.identity_rule(), Some("opaque_credentials"));
        let r = with_auth(
            &format!("{Q}&User=mallory"),
            "Negotiate YIIBhgYJKoZIhvcSAQICAQBuggF1",
        );
        assert!(matches!(identify(&r), Err(Error::OpaqueCredentials { .. })));
        let with = IdentifyWith {
            opaque: OpaqueCredentials::QueryUser,
            ..PLAIN
        };
        let d = device(super::identify(&r, &with));
        assert_eq!(
            (d.key.user.as_str(), d.source),
            ("mallory", UserSource::Query)
        );
    }

    #[test]
    fn options_names_its_pair_when_it_can() {
        let r = Request::builder()
            .method("OPTIONS")
            .uri("/Microsoft-Server-ActiveSync?User=mallory&DeviceId=BLOCKED1&DeviceType=x")
            .header("authorization", basic("CORP\\victim"))
            .body(())
            .unwrap();
        let Identified::Options(Some(k)) = identify(&r).unwrap() else {
            panic!("pair expected")
        };
        assert_eq!((k.user.as_str(), k.device.as_str()), ("victim", "blocked1"));
        let r = req(
            "OPTIONS",
            "/Microsoft-Server-ActiveSync?DeviceId=BAD%2Cid&User=a",
        );
        assert_eq!(identify(&r).unwrap(), Identified::Options(None));
    }
}
