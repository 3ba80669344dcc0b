//! SmartForward / SmartReply: without `ReplaceMime` the server appends the original message's
//! attachments itself (verified with SOGo: the forwarded mail carried `report.pdf`), so hiding
//! attachments from the device is not enough — the device could still forward them anywhere.
//!
//! Under "remove" and "encrypt" (both mean: the original attachments must not leave in the
//! clear through this device) the gateway makes the server send **only the MIME the device
//! composed**:
//!
//! - 14.0+ WBXML ComposeMail requests: [`rewrite_compose_request`] with
//!   [`ComposeFix::ReplaceMime`] inserts `<ReplaceMime/>` before `<Mime>` (MS-ASCMD: the
//!   server then neither re-attaches the original's attachments nor appends its body). The
//!   request stays a SmartForward / SmartReply, so the server still links it to the source item
//!   (LastVerbExecuted, conversation). [`ComposeFix::SendMail`] turns it into a plain SendMail
//!   instead (root element renamed, `Source` / `ReplaceMime` dropped) for servers that ignore
//!   ReplaceMime; the query must then be retargeted with [`retarget_query_to_sendmail`].
//! - 12.x and older (`message/rfc822` body, source in the query): there is no ReplaceMime, so
//!   the gateway forwards the same body as `Cmd=SendMail` ([`retarget_query_to_sendmail`];
//!   [`rfc822_compose`] says when).
//!
//! Trade-off: the forwarded / replied mail lacks the original's attachments (that is the
//! point) and contains only the quoted text the device put into its own MIME (iOS, Outlook and
//! Android clients quote the original text they downloaded; a client that relied on the server
//! to append the original body sends a shorter mail). The device's own MIME only carries what
//! the device already had (its own files, or `.p7m` files under "encrypt"); with
//! `strip_device_attachments` its attachment parts are removed per policy as well. Excluded
//! extensions do not survive either: forwarding an invitation's `.ics` through SmartForward
//! under "remove" needs the device to attach it itself (exclusions are judged per MIME part,
//! and the server-side originals are never seen by the gateway).

use std::borrow::Cow;

use wbxml::{Element, Event, Limits, Node, Rewriter};

use super::{AttachmentError, Policy, Rewritten, Summary, mime};
use crate::base64_query::Base64Query;

const CM: u8 = 21;
const CM_SEND_MAIL: u8 = 0x05;
const CM_SMART_FORWARD: u8 = 0x06;
const CM_SMART_REPLY: u8 = 0x07;
const CM_REPLACE_MIME: u8 = 0x09;
const CM_SOURCE: u8 = 0x0B;
const CM_MIME: u8 = 0x10;

/// How a 14.0+ SmartForward / SmartReply is kept from re-attaching the originals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComposeFix {
    /// Insert `ReplaceMime` (default; keeps the reply/forward link on the server).
    #[default]
    ReplaceMime,
    /// Turn the request into SendMail (query must be retargeted too).
    SendMail,
}

/// Result of [`rewrite_compose_request`].
#[derive(Debug, Clone)]
pub struct ComposeRewritten<'a> {
    /// The request body to forward (exact Content-Length = its length).
    pub body: Cow<'a, [u8]>,
    /// Device-MIME attachment parts removed / encrypted (only with `strip_device_attachments`).
    pub summary: Summary,
    /// True if the gateway must send it as `Cmd=SendMail` ([`retarget_query_to_sendmail`]).
    pub retarget_to_sendmail: bool,
}

/// Rewrites a ComposeMail WBXML request (SendMail, SmartForward, SmartReply) under `policy`.
/// SendMail bodies and `Deliver` pass unchanged (unless `strip_device_attachments`).
pub fn rewrite_compose_request<'a>(
    body: &'a [u8],
    policy: &Policy,
    fix: ComposeFix,
    strip_device_attachments: bool,
) -> Result<ComposeRewritten<'a>, AttachmentError> {
    let unchanged = |summary| ComposeRewritten {
        body: Cow::Borrowed(body),
        summary,
        retarget_to_sendmail: false,
    };
    if policy.decision.is_deliver() {
        return Ok(unchanged(Summary::default()));
    }
    policy.check_size(body.len())?;
    let limits = Limits {
        max_document_bytes: policy.max_body_bytes,
        max_string_bytes: policy.max_body_bytes,
        ..Limits::default()
    };
    let bad = |e: wbxml::Error| AttachmentError::Wbxml {
        what: "ComposeMail request",
        detail: e.to_string(),
    };
    let mut rw = Rewriter::new(body, &limits).map_err(bad)?;
    let mut root = None;
    let mut has_replace = false;
    let mut changed = false;
    let mut summary = Summary::default();
    let smart = |r: Option<u8>| matches!(r, Some(CM_SMART_FORWARD | CM_SMART_REPLY));
    if fix == ComposeFix::SendMail {
        // Small request: rebuild it as a tree.
        let mut el = Element::parse_with_limits(body, &limits).map_err(bad)?;
        if el.page != CM || !smart(Some(el.token)) {
            return strip_only(body, policy, strip_device_attachments);
        }
        el.token = CM_SEND_MAIL;
        el.children.retain(|n| {
            !matches!(n, Node::Element(e) if e.page == CM && (e.token == CM_SOURCE || e.token == CM_REPLACE_MIME))
        });
        if strip_device_attachments {
            for c in el.elements_mut() {
                if (c.page, c.token) == (CM, CM_MIME)
                    && let Some(Node::Opaque(m)) = c.children.first_mut()
                {
                    let r = mime::rewrite_mime(m, policy)?;
                    summary.add(&r.summary);
                    if let Cow::Owned(new) = r.body {
                        *m = new;
                    }
                }
            }
        }
        return Ok(ComposeRewritten {
            body: Cow::Owned(el.encode().map_err(bad)?),
            summary,
            retarget_to_sendmail: true,
        });
    }
    while let Some(ev) = rw.next_event().map_err(bad)? {
        let Event::Start {
            page,
            token,
            has_content,
        } = ev
        else {
            continue;
        };
        let depth = rw.ancestors().len();
        if depth == 0 {
            root = (page == CM).then_some(token);
            continue;
        }
        if depth != 1 || page != CM {
            continue;
        }
        if token == CM_REPLACE_MIME {
            has_replace = true;
        }
        if token == CM_MIME {
            if smart(root) && !has_replace {
                rw.insert_before(|w| w.start(CM, CM_REPLACE_MIME, false))
                    .map_err(bad)?;
                has_replace = true;
                changed = true;
            }
            if strip_device_attachments && has_content {
                let mut r = rw.reader().clone();
                if let Some(Event::Opaque(m) | Event::Text(m)) = r.next_event().map_err(bad)? {
                    let res = mime::rewrite_mime(m, policy)?;
                    summary.add(&res.summary);
                    if let Cow::Owned(new) = res.body {
                        rw.replace_subtree(|w| {
                            w.start(CM, CM_MIME, true)?;
                            w.opaque(&new)?;
                            w.end()
                        })
                        .map_err(bad)?;
                        changed = true;
                    }
                }
            }
        }
    }
    let out = rw.finish().map_err(bad)?;
    if smart(root) && !has_replace {
        // A SmartForward without Mime is invalid anyway; refuse rather than let the server
        // build the mail from the original.
        return Err(AttachmentError::Refused {
            command: "SmartForward/SmartReply",
            reason: "no Mime element to replace the original with",
        });
    }
    Ok(if changed {
        ComposeRewritten {
            body: Cow::Owned(out),
            summary,
            retarget_to_sendmail: false,
        }
    } else {
        unchanged(summary)
    })
}

/// Not a SmartForward / SmartReply: only the optional device-MIME stripping applies.
fn strip_only<'a>(
    body: &'a [u8],
    policy: &Policy,
    strip: bool,
) -> Result<ComposeRewritten<'a>, AttachmentError> {
    let mut p = policy.clone();
    if !strip {
        p.decision = super::Decision::Deliver;
    }
    rewrite_compose_request(body, &p, ComposeFix::ReplaceMime, strip)
}

/// A 12.x (or older) SmartForward / SmartReply with a `message/rfc822` body: returns the body
/// to send (device attachments stripped if asked) and whether the request must go out as
/// `Cmd=SendMail` (true under remove / encrypt).
pub fn rfc822_compose<'a>(
    body: &'a [u8],
    policy: &Policy,
    strip_device_attachments: bool,
) -> Result<(Rewritten<'a>, bool), AttachmentError> {
    if policy.decision.is_deliver() {
        return Ok((
            Rewritten {
                body: Cow::Borrowed(body),
                summary: Summary::default(),
            },
            false,
        ));
    }
    policy.check_size(body.len())?;
    let r = if strip_device_attachments {
        mime::rewrite_mime(body, policy)?
    } else {
        Rewritten {
            body: Cow::Borrowed(body),
            summary: Summary::default(),
        }
    };
    Ok((r, true))
}

/// Rewrites a request query (`Cmd=SmartForward&...` or a base64 query) into the same request
/// as SendMail: command changed, ItemId / CollectionId / LongId / Occurrence dropped, all
/// else (User, DeviceId, DeviceType, SaveInSent...) kept. Plain queries are edited as text.
pub fn retarget_query_to_sendmail(query: &str) -> Result<String, AttachmentError> {
    let refused = |reason| AttachmentError::Refused {
        command: "SmartForward/SmartReply",
        reason,
    };
    let plain = query.split('&').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("Cmd"))
    });
    if plain {
        let mut out = Vec::new();
        for pair in query.split('&') {
            let key = pair.split('=').next().unwrap_or_default();
            if key.eq_ignore_ascii_case("Cmd") {
                out.push("Cmd=SendMail".to_owned());
            } else if ["ItemId", "CollectionId", "LongId", "Occurrence"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(key))
            {
                continue;
            } else {
                out.push(pair.to_owned());
            }
        }
        return Ok(out.join("&"));
    }
    let mut q =
        Base64Query::decode(query).map_err(|_| refused("query is neither plain nor base64"))?;
    q.command_code = 1; // SendMail
    q.item_id = None;
    q.collection_id = None;
    q.long_id = None;
    q.occurrence = None;
    q.encode()
        .map_err(|_| refused("cannot re-encode the base64 query"))
}
