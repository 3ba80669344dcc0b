//! Token-level rewriting of the WBXML responses that carry attachments (Sync, Search,
//! ItemOperations), of ItemOperations multipart bodies, and the GetAttachment decision.
//!
//! Everything not listed here is copied byte-for-byte by [`wbxml::Rewriter`]:
//!
//! | element | remove | encrypt |
//! | --- | --- | --- |
//! | AirSyncBase `Attachments` (12.0+), Email `Attachments` (2.5), anywhere (Sync Add/Change, Search Result Properties, ItemOperations item Fetch) | each non-excluded `Attachment` dropped; the whole `Attachments` dropped when none remain | kept; `DisplayName` / `AttName` become `<name>.p7m`, `ContentType` becomes `application/pkcs7-mime` (the bytes are encrypted when fetched); `EstimatedDataSize` kept (an estimate; CMS adds a few hundred bytes) |
//! | AirSyncBase `Body` with `Type` 4: `Data`; Email `MIMEData` (2.5) | MIME rewritten ([`super::mime`]) | MIME rewritten |
//! | ItemOperations `Fetch` of a `FileReference` (or DocumentLibrary `LinkId`) with `Properties/Data` or `Properties/Part` | `Fetch` = `Status` 15 + the reference, no `Properties` (multipart: the raw part emptied) | `Data` (or the part) = CMS EnvelopedData of the original bytes, `ContentType` = `application/pkcs7-mime`; a `Range` fetch is refused like "remove" (a byte range of ciphertext is useless) |
//!
//! Fetch Status 15 is MS-ASCMD's "Attachment fetch provider - Attachment or attachment ID is
//! invalid": item-scoped (the rest of the response stays valid), not a protocol or server error,
//! so clients neither resync nor retry; they show the attachment as not downloadable. (2 and 3
//! would make the whole request look broken; 6 is for DocumentLibrary; 16 "access denied" can
//! trigger credential prompts.)
//!
//! A fetch response does not carry the file name, so exclusions cannot be judged there: the
//! Sync / Search rewrite reports the FileReferences of excluded attachments in
//! [`Summary::excluded_refs`]; the gateway keeps them (per user) and passes a look-up as
//! `is_excluded_ref`. Unknown references are treated as not excluded (fail closed).

use std::borrow::Cow;

use base64::Engine as _;
use wbxml::{Element, Event, Limits, Node, Reader, Rewriter};

use super::{AttachmentError, Decision, Policy, Rewritten, Summary, encrypt, mime};

/// ItemOperations Fetch Status for an attachment refused by policy (see module doc).
pub const FETCH_STATUS_REMOVED: u8 = 15;
/// HTTP status for a refused GetAttachment: what real servers (SOGo, Z-Push) answer for an
/// attachment they cannot deliver, so clients show a failed download. Not 403 (that means
/// "user not enabled for ActiveSync") and not 404 (may send clients to Autodiscover).
pub const GET_ATTACHMENT_REFUSED_STATUS: u16 = 500;

const ASB: u8 = 17;
const ASB_BODY: u8 = 0x0A;
const ASB_TYPE: u8 = 0x06;
const ASB_DATA: u8 = 0x0B;
const ASB_ATTACHMENTS: u8 = 0x0E;
const ASB_ATTACHMENT: u8 = 0x0F;
const ASB_DISPLAY_NAME: u8 = 0x10;
const ASB_FILE_REFERENCE: u8 = 0x11;
const ASB_CONTENT_TYPE: u8 = 0x17;
const EMAIL: u8 = 2;
const EMAIL_ATTACHMENT: u8 = 0x05;
const EMAIL_ATTACHMENTS: u8 = 0x06;
const EMAIL_ATT_NAME: u8 = 0x07;
const EMAIL_ATT0ID: u8 = 0x09;
const EMAIL_DISPLAY_NAME: u8 = 0x10;
const EMAIL_MIME_DATA: u8 = 0x36;
const IO: u8 = 20;
const IO_FETCH: u8 = 0x06;
const IO_RANGE: u8 = 0x09;
const IO_PROPERTIES: u8 = 0x0B;
const IO_DATA: u8 = 0x0C;
const IO_STATUS: u8 = 0x0D;
const IO_PART: u8 = 0x11;
const DOCLIB: u8 = 19;
const DOCLIB_LINK_ID: u8 = 0x05;

/// Most excluded references reported per body.
const MAX_EXCLUDED_REFS: usize = 10_000;

/// Rewrites a WBXML Sync, Search or ItemOperations response (inline Fetch data).
/// `is_excluded_ref(file_reference)` says whether a fetched attachment was seen with an
/// excluded name (see module doc). Output borrows the input when nothing changed.
pub fn rewrite_response<'a>(
    body: &'a [u8],
    policy: &Policy,
    is_excluded_ref: &dyn Fn(&str) -> bool,
) -> Result<Rewritten<'a>, AttachmentError> {
    if policy.decision.is_deliver() {
        return Ok(Rewritten {
            body: Cow::Borrowed(body),
            summary: Summary::default(),
        });
    }
    policy.check_size(body.len())?;
    let (out, summary) = rewrite_doc(body, policy, is_excluded_ref, &[], &mut Vec::new())?;
    Ok(Rewritten {
        body: match out {
            Some(o) => Cow::Owned(o),
            None => Cow::Borrowed(body),
        },
        summary,
    })
}

/// Rewrites an ItemOperations multipart response (`application/vnd.ms-sync.multipart`):
/// part 0 as [`rewrite_response`], raw parts referenced by a refused Fetch emptied (indices
/// of the other parts stay valid), encrypted ones replaced by CMS DER.
pub fn rewrite_multipart<'a>(
    body: &'a [u8],
    policy: &Policy,
    is_excluded_ref: &dyn Fn(&str) -> bool,
) -> Result<Rewritten<'a>, AttachmentError> {
    if policy.decision.is_deliver() {
        return Ok(Rewritten {
            body: Cow::Borrowed(body),
            summary: Summary::default(),
        });
    }
    policy.check_size(body.len())?;
    let mp = crate::multipart::Multipart::parse(body).map_err(|e| AttachmentError::Multipart {
        detail: e.to_string(),
    })?;
    let parts = mp.parts();
    let mut edits: Vec<(usize, Vec<u8>)> = Vec::new();
    let (wbxml_out, summary) = rewrite_doc(mp.wbxml(), policy, is_excluded_ref, parts, &mut edits)?;
    if wbxml_out.is_none() && edits.is_empty() {
        return Ok(Rewritten {
            body: Cow::Borrowed(body),
            summary,
        });
    }
    let part0 = wbxml_out.as_deref().unwrap_or(mp.wbxml());
    let mut new_parts: Vec<&[u8]> = parts.to_vec();
    if let Some(p) = new_parts.first_mut() {
        *p = part0;
    }
    for (i, data) in &edits {
        if let Some(p) = new_parts.get_mut(*i) {
            *p = data;
        }
    }
    let out = crate::multipart::build(&new_parts).map_err(|e| AttachmentError::Multipart {
        detail: e.to_string(),
    })?;
    Ok(Rewritten {
        body: Cow::Owned(out),
        summary,
    })
}

/// What the gateway answers for a GetAttachment (12.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetAttachmentOutcome<'a> {
    /// Send the server's body (and Content-Type) unchanged.
    Deliver(Cow<'a, [u8]>),
    /// Send this body with this Content-Type.
    Encrypted {
        body: Vec<u8>,
        content_type: &'static str,
    },
    /// Do not send the attachment: answer this HTTP status with an empty body.
    Refuse { http_status: u16 },
}

/// Decision for a GetAttachment request before it is forwarded: `Some(status)` = refuse now
/// (no need to fetch the bytes from the server), `None` = forward and pass the response body
/// to [`get_attachment`].
pub fn get_attachment_precheck(
    attachment_name: &str,
    policy: &Policy,
    is_excluded_ref: &dyn Fn(&str) -> bool,
) -> Option<u16> {
    match policy.decision {
        Decision::Remove if !is_excluded_ref(attachment_name) => {
            Some(GET_ATTACHMENT_REFUSED_STATUS)
        }
        _ => None,
    }
}

/// The GetAttachment response body (raw attachment bytes) under `policy`.
pub fn get_attachment<'a>(
    body: &'a [u8],
    attachment_name: &str,
    policy: &Policy,
    is_excluded_ref: &dyn Fn(&str) -> bool,
) -> Result<(GetAttachmentOutcome<'a>, Summary), AttachmentError> {
    let mut summary = Summary::default();
    let outcome = match &policy.decision {
        Decision::Deliver => GetAttachmentOutcome::Deliver(Cow::Borrowed(body)),
        _ if is_excluded_ref(attachment_name) => {
            summary.excluded = 1;
            GetAttachmentOutcome::Deliver(Cow::Borrowed(body))
        }
        Decision::Remove => {
            summary.removed = 1;
            GetAttachmentOutcome::Refuse {
                http_status: GET_ATTACHMENT_REFUSED_STATUS,
            }
        }
        Decision::Encrypt(recipients) => {
            policy.check_size(body.len())?;
            summary.encrypted = 1;
            GetAttachmentOutcome::Encrypted {
                body: encrypt::envelope(body, recipients)?,
                content_type: encrypt::CONTENT_TYPE,
            }
        }
    };
    Ok((outcome, summary))
}

fn limits(policy: &Policy) -> Limits {
    Limits {
        max_document_bytes: policy.max_body_bytes,
        max_string_bytes: policy.max_body_bytes,
        ..Limits::default()
    }
}

fn wb(e: wbxml::Error) -> AttachmentError {
    AttachmentError::Wbxml {
        what: "response",
        detail: e.to_string(),
    }
}

/// Plan for one `Attachment` of a kept `Attachments`.
struct AttPlan {
    excluded: bool,
    display_name: Option<String>,
    att_name: Option<String>,
}

/// Rewrites one document; `None` = unchanged. `parts`/`edits`: multipart raw parts.
fn rewrite_doc(
    doc: &[u8],
    policy: &Policy,
    is_excluded_ref: &dyn Fn(&str) -> bool,
    parts: &[&[u8]],
    edits: &mut Vec<(usize, Vec<u8>)>,
) -> Result<(Option<Vec<u8>>, Summary), AttachmentError> {
    let mut rw = Rewriter::new(doc, &limits(policy)).map_err(wb)?;
    let mut summary = Summary::default();
    let mut changed = false;
    let mut plans: std::collections::VecDeque<AttPlan> = Default::default();
    let mut current: Option<AttPlan> = None;
    let mut mime_body = false;
    let encrypt = matches!(policy.decision, Decision::Encrypt(_));
    while let Some(ev) = rw.next_event().map_err(wb)? {
        let Event::Start {
            page,
            token,
            has_content,
        } = ev
        else {
            continue;
        };
        let parent = rw.ancestors().last().map(|t| (t.page, t.token));
        match (page, token) {
            (ASB, ASB_ATTACHMENTS) | (EMAIL, EMAIL_ATTACHMENTS) if has_content => {
                let list = scan_attachments(rw.reader(), policy, &mut summary)?;
                for p in &list {
                    if p.excluded {
                        summary.excluded = summary.excluded.saturating_add(1);
                    }
                }
                if !encrypt && list.iter().all(|p| !p.excluded) {
                    summary.removed = summary.removed.saturating_add(count(list.len()));
                    rw.drop_subtree().map_err(wb)?;
                    changed = true;
                } else {
                    plans = list.into();
                }
            }
            (ASB, ASB_ATTACHMENT) | (EMAIL, EMAIL_ATTACHMENT)
                if matches!(
                    parent,
                    Some((ASB, ASB_ATTACHMENTS) | (EMAIL, EMAIL_ATTACHMENTS))
                ) =>
            {
                let plan = plans.pop_front();
                match plan {
                    Some(p) if p.excluded => current = None,
                    Some(p) if encrypt => {
                        summary.encrypted = summary.encrypted.saturating_add(1);
                        current = Some(p);
                    }
                    _ => {
                        summary.removed = summary.removed.saturating_add(1);
                        rw.drop_subtree().map_err(wb)?;
                        changed = true;
                        current = None;
                    }
                }
            }
            (ASB, ASB_DISPLAY_NAME)
            | (EMAIL, EMAIL_DISPLAY_NAME)
            | (EMAIL, EMAIL_ATT_NAME)
            | (ASB, ASB_CONTENT_TYPE)
                if matches!(
                    parent,
                    Some((ASB, ASB_ATTACHMENT) | (EMAIL, EMAIL_ATTACHMENT))
                ) =>
            {
                let Some(p) = &current else { continue };
                let text = match (page, token) {
                    (ASB, ASB_CONTENT_TYPE) => encrypt::CONTENT_TYPE.to_owned(),
                    (EMAIL, EMAIL_ATT_NAME) => match &p.att_name {
                        Some(n) => format!("{n}.p7m"),
                        None => continue,
                    },
                    _ => match &p.display_name {
                        Some(n) => format!("{n}.p7m"),
                        None => continue,
                    },
                };
                rw.replace_subtree(|w| w.text_element(page, token, &text))
                    .map_err(wb)?;
                changed = true;
            }
            (ASB, ASB_BODY) => {
                mime_body = has_content && body_is_mime(rw.reader())?;
            }
            (ASB, ASB_DATA) | (EMAIL, EMAIL_MIME_DATA)
                if has_content
                    && ((page, token) == (EMAIL, EMAIL_MIME_DATA)
                        || (mime_body && parent == Some((ASB, ASB_BODY)))) =>
            {
                let mut r = rw.reader().clone();
                let (content, opaque) = match r.next_event().map_err(wb)? {
                    Some(Event::Text(t)) => (t, false),
                    Some(Event::Opaque(o)) => (o, true),
                    _ => continue,
                };
                let res = mime::rewrite_mime(content, policy)?;
                summary.add(&res.summary);
                if let Cow::Owned(new) = res.body {
                    rw.replace_subtree(|w| {
                        w.start(page, token, true)?;
                        if opaque {
                            w.opaque(&new)?;
                        } else {
                            // STR_I cannot hold NUL; a MIME body never has one after rewriting
                            // unless the server sent one (then the original had to be OPAQUE).
                            w.text(&new)?;
                        }
                        w.end()
                    })
                    .map_err(wb)?;
                    changed = true;
                }
            }
            (IO, IO_FETCH) if has_content => {
                let Some(fetch) = scan_fetch(rw.reader())? else {
                    continue;
                };
                if let Some(r) = &fetch.reference
                    && is_excluded_ref(r)
                {
                    summary.excluded = summary.excluded.saturating_add(1);
                    continue;
                }
                let el = fetch_replacement(fetch, policy, parts, edits, &mut summary)?;
                rw.replace_subtree(|w| el.write_to(w)).map_err(wb)?;
                changed = true;
            }
            _ => {}
        }
    }
    let out = rw.finish().map_err(wb)?;
    summary.excluded_refs.truncate(MAX_EXCLUDED_REFS);
    Ok((if changed { Some(out) } else { None }, summary))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads the subtree of the element whose Start (with content) `r` just returned.
fn read_subtree(r: &Reader<'_>) -> Result<Element, AttachmentError> {
    let mut r = r.clone();
    let top = r.open_tags().last().copied().ok_or_else(|| {
        wb(wbxml::Error::Structure {
            offset: r.offset(),
            what: "no open element",
        })
    })?;
    let mut stack = vec![Element::new(top.page, top.token)];
    loop {
        let Some(ev) = r.next_event().map_err(wb)? else {
            return Err(wb(wbxml::Error::Truncated {
                offset: r.offset(),
                what: "element not closed",
            }));
        };
        match ev {
            Event::Start {
                page,
                token,
                has_content: true,
            } => stack.push(Element::new(page, token)),
            Event::Start { page, token, .. } => {
                if let Some(p) = stack.last_mut() {
                    p.children.push(Node::Element(Element::new(page, token)));
                }
            }
            Event::Text(t) => {
                if let Some(p) = stack.last_mut() {
                    p.children
                        .push(Node::Text(String::from_utf8_lossy(t).into_owned()));
                }
            }
            Event::Opaque(o) => {
                if let Some(p) = stack.last_mut() {
                    p.children.push(Node::Opaque(o.to_vec()));
                }
            }
            Event::End { .. } => {
                let Some(done) = stack.pop() else {
                    continue;
                };
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::Element(done)),
                    None => return Ok(done),
                }
            }
        }
    }
}

fn child_text(el: &Element, page: u8, token: u8) -> Option<String> {
    el.elements()
        .find(|e| e.page == page && e.token == token)
        .map(|e| match e.children.first() {
            Some(Node::Text(t)) => t.clone(),
            Some(Node::Opaque(o)) => String::from_utf8_lossy(o).into_owned(),
            _ => String::new(),
        })
}

fn scan_attachments(
    r: &Reader<'_>,
    policy: &Policy,
    summary: &mut Summary,
) -> Result<Vec<AttPlan>, AttachmentError> {
    let list = read_subtree(r)?;
    let mut out = Vec::new();
    for att in list.elements() {
        if !matches!(
            (att.page, att.token),
            (ASB, ASB_ATTACHMENT) | (EMAIL, EMAIL_ATTACHMENT)
        ) {
            continue;
        }
        let display_name = child_text(att, ASB, ASB_DISPLAY_NAME)
            .or_else(|| child_text(att, EMAIL, EMAIL_DISPLAY_NAME));
        let att_name = child_text(att, EMAIL, EMAIL_ATT_NAME);
        let excluded = [&display_name, &att_name]
            .into_iter()
            .flatten()
            .any(|n| policy.exclusions.matches(n));
        if excluded
            && summary.excluded_refs.len() < MAX_EXCLUDED_REFS
            && let Some(r) = child_text(att, ASB, ASB_FILE_REFERENCE)
                .or_else(|| child_text(att, EMAIL, EMAIL_ATT0ID))
        {
            summary.excluded_refs.push(r);
        }
        out.push(AttPlan {
            excluded,
            display_name,
            att_name,
        });
    }
    Ok(out)
}

/// True if the Body whose Start was just read has `Type` 4 (MIME).
fn body_is_mime(r: &Reader<'_>) -> Result<bool, AttachmentError> {
    let mut r = r.clone();
    let base = r.depth();
    while let Some(ev) = r.next_event().map_err(wb)? {
        match ev {
            Event::Start {
                page: ASB,
                token: ASB_TYPE,
                has_content: true,
            } if r.depth() == base + 1 => {
                return Ok(matches!(
                    r.next_event().map_err(wb)?,
                    Some(Event::Text(b"4"))
                ));
            }
            Event::Start {
                has_content: true, ..
            } => r.skip_element().map_err(wb)?,
            Event::End { .. } if r.depth() < base => return Ok(false),
            _ => {}
        }
    }
    Ok(false)
}

/// A Fetch of a file (FileReference / LinkId) with data.
struct FileFetch {
    el: Element,
    reference: Option<String>,
}

/// `Some` if the Fetch whose Start was just read fetches a file and carries data.
fn scan_fetch(r: &Reader<'_>) -> Result<Option<FileFetch>, AttachmentError> {
    // Light scan first: direct children only, no copies (an item Fetch can be large).
    let mut s = r.clone();
    let base = s.depth();
    let mut is_file = false;
    let mut has_props = false;
    while let Some(ev) = s.next_event().map_err(wb)? {
        match ev {
            Event::Start {
                page,
                token,
                has_content,
            } => {
                if (page, token) == (ASB, ASB_FILE_REFERENCE)
                    || (page, token) == (DOCLIB, DOCLIB_LINK_ID)
                {
                    is_file = true;
                }
                if (page, token) == (IO, IO_PROPERTIES) {
                    has_props = true;
                }
                if has_content {
                    s.skip_element().map_err(wb)?;
                }
            }
            Event::End { .. } if s.depth() < base => break,
            _ => {}
        }
    }
    if !(is_file && has_props) {
        return Ok(None);
    }
    let el = read_subtree(r)?;
    let reference = child_text(&el, ASB, ASB_FILE_REFERENCE)
        .or_else(|| child_text(&el, DOCLIB, DOCLIB_LINK_ID));
    Ok(Some(FileFetch { el, reference }))
}

/// The Fetch element to send instead of `fetch`.
fn fetch_replacement(
    fetch: FileFetch,
    policy: &Policy,
    parts: &[&[u8]],
    edits: &mut Vec<(usize, Vec<u8>)>,
    summary: &mut Summary,
) -> Result<Element, AttachmentError> {
    let FileFetch { mut el, .. } = fetch;
    let props_at = el
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(e) if (e.page, e.token) == (IO, IO_PROPERTIES)));
    let props = props_at.and_then(|i| match el.children.get(i) {
        Some(Node::Element(e)) => Some(e.clone()),
        _ => None,
    });
    let part_index = props
        .as_ref()
        .and_then(|p| child_text(p, IO, IO_PART))
        .and_then(|t| t.trim().parse::<usize>().ok())
        .filter(|&i| i > 0 && i < parts.len());
    let ranged = props
        .as_ref()
        .is_some_and(|p| p.elements().any(|e| (e.page, e.token) == (IO, IO_RANGE)));
    let recipients = match &policy.decision {
        Decision::Encrypt(r) if !ranged => Some(r.clone()),
        _ => None,
    };
    let Some(recipients) = recipients else {
        // Remove: Status 15, keep only the reference elements.
        summary.removed = summary.removed.saturating_add(1);
        if let Some(i) = part_index {
            edits.push((i, Vec::new()));
        }
        let mut out = Element::new(el.page, el.token);
        out.children.push(Node::Element(
            Element::new(IO, IO_STATUS).with_text(FETCH_STATUS_REMOVED.to_string()),
        ));
        for c in el.elements() {
            if matches!(
                (c.page, c.token),
                (ASB, ASB_FILE_REFERENCE) | (DOCLIB, DOCLIB_LINK_ID)
            ) {
                out.children.push(Node::Element(c.clone()));
            }
        }
        return Ok(out);
    };
    summary.encrypted = summary.encrypted.saturating_add(1);
    let Some(Node::Element(props)) = props_at.and_then(|i| el.children.get_mut(i)) else {
        return Ok(el);
    };
    let mut has_ct = false;
    for c in props.elements_mut() {
        match (c.page, c.token) {
            (ASB, ASB_CONTENT_TYPE) => {
                c.children = vec![Node::Text(encrypt::CONTENT_TYPE.to_owned())];
                has_ct = true;
            }
            (IO, IO_DATA) => {
                let b64: Vec<u8> = match c.children.first() {
                    Some(Node::Text(t)) => t.bytes().filter(|b| !b.is_ascii_whitespace()).collect(),
                    Some(Node::Opaque(o)) => o.clone(),
                    _ => Vec::new(),
                };
                let plain = base64::engine::general_purpose::STANDARD
                    .decode(&b64)
                    .unwrap_or_else(|_| mime::base64_lenient(&b64));
                let cms = encrypt::envelope(&plain, &recipients)?;
                c.children = vec![Node::Text(
                    base64::engine::general_purpose::STANDARD.encode(cms),
                )];
            }
            _ => {}
        }
    }
    if !has_ct {
        props.children.insert(
            0,
            Node::Element(Element::new(ASB, ASB_CONTENT_TYPE).with_text(encrypt::CONTENT_TYPE)),
        );
    }
    if let Some(i) = part_index
        && let Some(raw) = parts.get(i)
    {
        edits.push((i, encrypt::envelope(raw, &recipients)?));
    }
    Ok(el)
}
