//! Remote wipe, answered by the gateway itself (the server never sees these requests):
//!
//! 1. a device marked Wipe sends any command → the answer that makes it provision: HTTP 449 for
//!    12.x and older (or a command without a WBXML Status), HTTP 200 with the command's Status
//!    140 (RemoteWipeRequested) for 14.0 and later;
//! 2. it sends Provision → Status 1 + `RemoteWipe` ([`crate::access::DeviceAccess::wipe_sent`]);
//! 3. it acknowledges with `RemoteWipe/Status` → recorded
//!    ([`crate::access::DeviceAccess::wipe_acknowledged`]); success marks the entry and the
//!    association Wiped (from then on the device is blocked), failure re-sends the directive.

use std::time::Duration;

use crate::h1::server::DeviceBody;
use bytes::Bytes;
use eas::provision::{ProvisionRequest, ProvisionRequestKind, RemoteWipe, WipeAck, answer_wipe};
use eas::status::{CommonStatus, ProvisionDemand, provision_demand};
use eas::{Command, ProtocolVersion};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;

use crate::error::{Error, Result};
use crate::forward::RespBody;
use crate::identity::DeviceIdentity;
use crate::state::Gateway;

/// Largest Provision body read (they are a few hundred bytes; DeviceInformation included).
const MAX_PROVISION_BODY: usize = 64 * 1024;
/// Most body frames read for one Provision.
const MAX_FRAMES: usize = 4096;

/// The gateway's answer to any request of a device marked Wipe.
pub async fn answer(
    gw: &Gateway,
    id: &DeviceIdentity,
    body: DeviceBody,
    silence: Duration,
) -> Result<Response<RespBody>> {
    if id.command != Some(Command::Provision) {
        return Ok(demand(id.version, id.command));
    }
    let bytes = read_bounded(body, MAX_PROVISION_BODY, silence).await?;
    // An unreadable Provision from a device to be wiped still gets the directive (fail towards
    // the wipe, never towards the server).
    let request = ProvisionRequest::parse(&bytes).unwrap_or(ProvisionRequest {
        kind: ProvisionRequestKind::Empty,
        device_information: None,
    });
    let answer = answer_wipe(&request, RemoteWipe::Full);
    match answer.ack {
        Some(WipeAck::Succeeded) => {
            let outcome = gw.access.wipe_acknowledged(&id.user, &id.device_id, 1);
            tracing::warn!(user = %crate::access::clip(&id.user), device_id = %id.device_id, ?outcome, "remote wipe acknowledged by the device");
        }
        Some(WipeAck::Failed) => {
            gw.access.wipe_acknowledged(&id.user, &id.device_id, 2);
            gw.access.wipe_sent(&id.user, &id.device_id);
        }
        None => {
            gw.access.wipe_sent(&id.user, &id.device_id);
            tracing::warn!(user = %crate::access::clip(&id.user), device_id = %id.device_id, "remote wipe directive sent");
        }
    }
    let body = answer.encode().map_err(|e| Error::DeviceBody {
        reason: format!("cannot encode the wipe answer: {e}"),
    })?;
    Ok(wbxml_response(body))
}

/// The answer that makes a device run Provision because a wipe is pending (449 / Status 140).
pub fn demand(version: Option<ProtocolVersion>, command: Option<Command>) -> Response<RespBody> {
    match provision_demand(version, command, CommonStatus::RemoteWipeRequested) {
        ProvisionDemand::Body(body) => wbxml_response(body),
        ProvisionDemand::Http449 => {
            let mut r = Response::new(RespBody::empty());
            *r.status_mut() = StatusCode::from_u16(449).unwrap_or(StatusCode::FORBIDDEN);
            r
        }
    }
}

fn wbxml_response(body: Vec<u8>) -> Response<RespBody> {
    let mut r = Response::new(RespBody::Local {
        data: Some(Bytes::from(body)),
    });
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(eas::headers::CONTENT_TYPE_WBXML),
    );
    r
}

/// The whole body, at most `limit` bytes, each frame within `silence`.
async fn read_bounded(mut body: DeviceBody, limit: usize, silence: Duration) -> Result<Bytes> {
    let mut out = bytes::BytesMut::new();
    // Bounded by bytes and by frames (empty DATA frames add no bytes).
    for _ in 0..MAX_FRAMES {
        let frame = match tokio::time::timeout(silence, body.frame()).await {
            Err(_) => {
                return Err(Error::DeviceBody {
                    reason: format!("no request body bytes for {silence:?}"),
                });
            }
            Ok(None) => return Ok(out.freeze()),
            // 408 when the body passed its deadline, 400 otherwise.
            Ok(Some(Err(e))) => return Err(Error::device_body(&e)),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Error::BodyTooLarge {
                    limit: limit as u64,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Err(Error::DeviceBody {
        reason: format!("more than {MAX_FRAMES} body frames"),
    })
}
