//! Exchange ActiveSync semantics (MS-ASHTTP, MS-ASCMD, MS-ASPROV) on top of the [`wbxml`] codec.
//! No I/O: the gateway feeds it request lines, headers and bodies.
//!
//! - [`EasRequest`]: identity and command of a request (plain or base64 query + headers).
//! - [`ProtocolVersion`], [`Command`], [`CommonStatus`]: the protocol's closed sets.
//! - [`options`]: the OPTIONS header set and the version-limit filters.
//! - [`longpoll`]: Ping / Sync hold times from request bodies.
//! - [`provision`], [`status`]: responses the gateway answers itself (remote wipe, 142/144...).
//! - [`multipart`]: ItemOperations multipart bodies.
//!
//! ```
//! use eas::{Command, EasRequest, ProtocolVersion};
//! use http::{HeaderMap, Method};
//!
//! // The base64 query example of MS-ASHTTP 2.2.1.1.1.1.
//! let uri = "/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l".parse().unwrap();
//! let req = EasRequest::parse(&Method::POST, &uri, &HeaderMap::new()).unwrap();
//! assert_eq!(req.known_command(), Some(Command::Sync));
//! assert_eq!(req.version, Some(ProtocolVersion::V14_0));
//! assert_eq!(req.device_id.unwrap().as_str(), "v140Device");
//! assert_eq!(req.device_type.as_deref(), Some("SmartPhone"));
//! ```
#![forbid(unsafe_code)]

pub mod attachment;
pub mod base64_query;
mod body;
pub mod command;
pub mod credentials;
pub mod device;
pub mod error;
pub mod headers;
pub mod longpoll;
pub mod multipart;
pub mod options;
pub mod provision;
pub mod query;
pub mod request;
pub mod status;
pub mod version;

pub use base64_query::Base64Query;
pub use command::{Command, CommandRef};
pub use device::{DeviceId, LoginForm, LoginName};
pub use error::{EasError, Fault};
pub use headers::{Authorization, EasHeaders};
pub use longpoll::{LongPoll, PingBody, long_poll, ping_body, sync_long_poll};
pub use multipart::Multipart;
pub use provision::{
    ProvisionRequest, ProvisionRequestKind, ProvisionResponse, RemoteWipe, WipeAck,
};
pub use query::{PlainQuery, Query};
pub use request::{CommandParams, EasRequest, QueryForm};
pub use status::{CommonStatus, ProvisionDemand};
pub use version::ProtocolVersion;
