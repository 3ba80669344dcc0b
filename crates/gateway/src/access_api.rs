//! The device-access routes of the management API (mounted by `management.rs`, behind its
//! credential check):
//!
//! - `GET /v1/devices`: the access list, sorted by (user, device_id).
//! - `PUT /v1/devices`: replace the list; `PATCH /v1/devices`: upsert `devices`, remove `remove`.
//!   Body `{"devices": [{"user", "device_id", "state", "reasons"}], "remove": [{"user", "device_id"}]}`
//!   (`Content-Type: application/json`, at most [`MAX_BODY_BYTES`]), validated as a whole: on any
//!   error nothing changes (400 bad JSON, 413 too large / too many entries, 415 wrong type,
//!   422 invalid entries with every field named). Persisted before the answer.
//! - `GET /v1/explain?user=U&device_id=D`: the decision, the rule and the reasons.
//! - `GET /v1/associations?user=&device_id=&offset=&limit=`: what the gateway has seen, paginated.
//!
//! Request input only ever reaches the access module's validating parsers: never a file name,
//! never a shell.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::access::{AccessError, AssociationQuery};
use crate::state::Gateway;

/// Largest `PUT`/`PATCH /v1/devices` body (about half a million entries).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Whole-body deadline.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest query string accepted on these routes.
const MAX_QUERY: usize = 2048;

/// Whether `path` is one of this module's routes.
pub fn handles(path: &str) -> bool {
    matches!(path, "/v1/devices" | "/v1/explain" | "/v1/associations")
}

/// Serves one of [`handles`]' routes.
pub async fn handle(gw: &Gateway, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (path.as_str(), req.method().clone()) {
        ("/v1/devices", Method::GET) => {
            json(StatusCode::OK, &json!({ "devices": gw.access.entries() }))
        }
        ("/v1/devices", m @ (Method::PUT | Method::PATCH)) => change(gw, m, req).await,
        ("/v1/devices", _) => not_allowed("GET, PUT, PATCH"),
        ("/v1/explain", Method::GET) => explain(gw, req.uri().query()),
        ("/v1/associations", Method::GET) => associations(gw, req.uri().query()),
        _ => not_allowed("GET"),
    }
}

async fn change(gw: &Gateway, method: Method, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let media = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let collect = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
        }
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
    };
    let result = if method == Method::PUT {
        gw.access.replace(&body).await
    } else {
        gw.access.patch(&body).await
    };
    match result {
        Ok(report) => json(StatusCode::OK, &json!({ "result": report })),
        Err(e) => access_error(&e),
    }
}

fn explain(gw: &Gateway, query: Option<&str>) -> Response<Full<Bytes>> {
    let params = match parse_query(query, &["user", "device_id"]) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let (Some(user), Some(device_id)) = (param(&params, "user"), param(&params, "device_id"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "both user and device_id query parameters are required",
        );
    };
    match gw.access.explain_json(user, device_id) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => access_error(&e),
    }
}

fn associations(gw: &Gateway, query: Option<&str>) -> Response<Full<Bytes>> {
    let params = match parse_query(query, &["user", "device_id", "offset", "limit"]) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let number = |name: &str| -> Result<usize, String> {
        match param(&params, name) {
            None | Some("") => Ok(0),
            Some(v) => v.parse::<usize>().map_err(|_| {
                format!(
                    "{name} must be a non-negative integer, not {:?}",
                    crate::access::clip(v)
                )
            }),
        }
    };
    let (offset, limit) = match (number("offset"), number("limit")) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
    };
    if limit > crate::access::MAX_PAGE {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "limit must be 1..={} (0 or absent: 100)",
                crate::access::MAX_PAGE
            ),
        );
    }
    let q = AssociationQuery {
        user: param(&params, "user")
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        device_id: param(&params, "device_id")
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        offset,
        limit,
    };
    json(StatusCode::OK, &gw.access.associations(&q))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `a=1&b=2`, percent-decoded (UTF-8), only `known` names, each at most once.
fn parse_query(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let q = query.unwrap_or("");
    if q.len() > MAX_QUERY {
        return Err(format!("query longer than {MAX_QUERY} bytes"));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k).ok_or("invalid percent-encoding in the query")?;
        let v = decode(v).ok_or("invalid percent-encoding in the query")?;
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown query parameter {:?} (known: {})",
                crate::access::clip(&k),
                known.join(", ")
            ));
        }
        if out.iter().any(|(x, _)| *x == k) {
            return Err(format!("query parameter {k} given more than once"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(h).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn access_error(e: &AccessError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({ "error": e.to_string() });
    match e {
        AccessError::InvalidBody { errors } | AccessError::InvalidConfig { errors } => {
            body["errors"] = json!(errors);
        }
        AccessError::StateIo { .. } => {
            body["error"] = json!(format!(
                "{e}; the change is in force but not yet saved (retried in the background)"
            ));
        }
        _ => {}
    }
    if status.is_server_error() {
        tracing::error!(error = %e, "device access change not persisted");
    }
    json(status, &body)
}

fn too_large() -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than {MAX_BODY_BYTES} bytes; nothing changed"),
    )
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &json!({ "error": message }))
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let p = parse_query(
            Some("user=dom%5Calice&device_id=D1"),
            &["user", "device_id"],
        )
        .unwrap();
        assert_eq!(param(&p, "user"), Some("dom\\alice"));
        assert!(parse_query(Some("user=a&user=b"), &["user"]).is_err());
        assert!(parse_query(Some("x=1"), &["user"]).is_err());
        assert!(parse_query(Some("user=%zz"), &["user"]).is_err());
        assert!(parse_query(Some("user=%ff"), &["user"]).is_err());
        assert!(parse_query(None, &["user"]).unwrap().is_empty());
    }
}
