//! Stage "identify device": who and which device a request is, from the plain or base64 query
//! and the headers (parsed by `crates/eas`). A POST that does not say which device it is (no
//! DeviceId, malformed query, malformed ActiveSync header) gets 400 from the gateway and never
//! reaches a server. OPTIONS carries no device and passes without one.

use eas::{Command, EasRequest, ProtocolVersion};
use http::Request;

use crate::error::{Error, Result};
use crate::route;

/// What a request is, as far as device access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// `OPTIONS`: no device, not subject to device access.
    Options,
    /// A device request.
    Device(DeviceIdentity),
}

/// The identity of one device request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The query's `User`, else the Basic login name as sent.
    pub user: String,
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
    pub key: crate::access::DeviceKey,
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

/// Identify a request. Non-ActiveSync paths are refused here (404) before anything is parsed.
/// Never panics on device input: every malformed value is an [`Error::Identity`] (400, or 401 for
/// a malformed `Authorization`).
pub fn identify<B>(req: &Request<B>) -> Result<Identified> {
    let path = req.uri().path();
    if !route::is_activesync_path(path) {
        let path = path.chars().take(200).collect();
        return Err(Error::NotActiveSync { path });
    }
    let mut parsed = EasRequest::parse(req.method(), req.uri(), req.headers())
        .map_err(|source| Error::Identity { source })?;
    if parsed.is_options() {
        return Ok(Identified::Options);
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
    // The query's `User` (an empty one names nobody), else the Basic login name.
    let user = match parsed.user.take() {
        Some(u) => Some(u).filter(|u| !u.is_empty()),
        None => parsed
            .user_name()
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
    };
    let Some(user) = user else {
        return Err(Error::NoUser);
    };
    let device_id = device_id.into_string();
    let key = crate::access::DeviceKey::new(&user, &device_id);
    Ok(Identified::Device(DeviceIdentity {
        user,
        device_id,
        device_type,
        command: parsed.known_command(),
        command_name,
        version: parsed.version,
        user_agent: parsed.headers.user_agent.take(),
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

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
            Identified::Options
        );
        assert_eq!(
            identify(&req("POST", "/owa/?DeviceId=x"))
                .unwrap_err()
                .status(),
            http::StatusCode::NOT_FOUND
        );
    }
}
