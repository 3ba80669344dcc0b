//! MIME rewriting on raw bytes (RFC 5322 / 2045 / 2046): finds attachment parts by boundaries
//! and replaces only those; every other byte (preamble, headers, untouched parts, epilogue)
//! is copied verbatim.
//!
//! What counts as an attachment (a leaf entity):
//! - `Content-Disposition: attachment`, whatever the type;
//! - any non-`text/*` leaf (images included, inline or not: an inline image can carry a
//!   screenshot of a document as well as a file can), except detached signatures
//!   (`application/pkcs7-signature`, `application/pgp-signature`), which carry no data;
//! - a `text/*` leaf with a file name (`filename` / `name`).
//!
//! `text/*` parts without a name (the body, `text/calendar` invitations) are kept.
//! `message/rfc822` parts are entered up to `max_nesting` levels; deeper (or transfer-encoded
//! as base64 / quoted-printable, which RFC 2046 forbids) the whole embedded message is one
//! attachment. Multipart nesting deeper than 32, a multipart without boundary or without any
//! delimiter line is one attachment too (fail closed).
//!
//! "remove" replaces the part by a short `text/plain` note naming the file, so the multipart
//! stays valid (RFC 2046 needs at least one part) and the reader learns why the file is
//! missing. "encrypt" replaces the part body by base64 of CMS EnvelopedData of the decoded
//! original bytes, `Content-Type: application/pkcs7-mime; name="<orig>.p7m"`. Headers of a
//! replaced entity that are not `Content-*` (e.g. From / Subject of a top-level message) are
//! kept. Exclusions match the file name's extension, case-insensitive.

use std::borrow::Cow;

use base64::Engine as _;
use memchr::memmem;

use super::{AttachmentError, Decision, Policy, Rewritten, Summary, encrypt};

/// Multipart nesting handled; deeper = one attachment.
pub const MAX_MULTIPART_DEPTH: usize = 32;
/// Longest file name quoted in a note or `.p7m` name (characters).
const MAX_NAME_CHARS: usize = 200;

/// Rewrites the attachments of one MIME message. `Deliver` returns the input borrowed;
/// so does a message without attachments to change.
pub fn rewrite_mime<'a>(msg: &'a [u8], policy: &Policy) -> Result<Rewritten<'a>, AttachmentError> {
    if policy.decision.is_deliver() {
        return Ok(Rewritten {
            body: Cow::Borrowed(msg),
            summary: Summary::default(),
        });
    }
    policy.check_size(msg.len())?;
    let mut ctx = Ctx {
        policy,
        summary: Summary::default(),
        eol: detect_eol(msg),
        names: Vec::new(),
    };
    let mut out = Vec::with_capacity(msg.len());
    ctx.entity(msg, 0, 0, Default_::Text, &mut out)?;
    let body = if ctx.summary.changed() {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(msg)
    };
    Ok(Rewritten {
        body,
        summary: ctx.summary,
    })
}

/// The file names of the attachment parts a rewrite would touch (exclusions ignored), in
/// order; for logs and tests.
pub fn attachment_names(msg: &[u8], max_nesting: usize) -> Vec<String> {
    let mut policy = Policy::new(Decision::Remove);
    policy.max_nesting = max_nesting;
    policy.exclusions = super::Exclusions::default();
    policy.max_body_bytes = usize::MAX;
    let mut ctx = Ctx {
        policy: &policy,
        summary: Summary::default(),
        eol: detect_eol(msg),
        names: Vec::new(),
    };
    let mut out = Vec::new();
    let _ = ctx.entity(msg, 0, 0, Default_::Text, &mut out);
    ctx.names
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Default_ {
    Text,
    Message,
}

struct Ctx<'p> {
    policy: &'p Policy,
    summary: Summary,
    eol: &'static [u8],
    /// Names of the attachment parts met (empty string when unnamed).
    names: Vec<String>,
}

/// Header field of an entity: name, unfolded value, raw bytes (incl. line end).
struct Field<'a> {
    name: &'a [u8],
    value: String,
    raw: &'a [u8],
}

struct Headers<'a> {
    fields: Vec<Field<'a>>,
    /// Bytes of the header section incl. the empty line (may be empty).
    section: &'a [u8],
    body: &'a [u8],
}

fn detect_eol(msg: &[u8]) -> &'static [u8] {
    match memchr::memchr(b'\n', msg) {
        Some(i) if i > 0 && msg.get(i - 1) == Some(&b'\r') => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

fn parse_headers(ent: &[u8]) -> Headers<'_> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0usize;
    let mut body_start = None;
    while pos < ent.len() {
        let line_end = memchr::memchr(b'\n', &ent[pos..]).map_or(ent.len(), |i| pos + i + 1);
        let line = &ent[pos..line_end];
        let content = trim_eol(line);
        if content.is_empty() {
            body_start = Some(line_end);
            break;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            if let Some(f) = fields.last_mut() {
                let start = f.raw.as_ptr() as usize - ent.as_ptr() as usize;
                f.raw = &ent[start..line_end];
                f.value.push(' ');
                f.value.push_str(String::from_utf8_lossy(content).trim());
            }
        } else if let Some(colon) = memchr::memchr(b':', content) {
            fields.push(Field {
                name: trim_ws(&content[..colon]),
                value: String::from_utf8_lossy(&content[colon + 1..])
                    .trim()
                    .to_owned(),
                raw: line,
            });
        } else {
            // Not a header line: the header section ended without an empty line.
            body_start = Some(pos);
            break;
        }
        pos = line_end;
    }
    let split = body_start.unwrap_or(ent.len());
    Headers {
        fields,
        section: &ent[..split],
        body: &ent[split..],
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &b[s..e.max(s)]
}

impl Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.as_str())
    }
}

/// `type/subtype; a=b; c="d"` → lower-case type and params (RFC 2231 resolved later).
struct HeaderValue {
    value: String,
    params: Vec<(String, String)>,
}

fn parse_value(v: &str) -> HeaderValue {
    let mut parts = split_params(v).into_iter();
    let value = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, val) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), unquote(val.trim())))
        })
        .collect();
    HeaderValue { value, params }
}

/// Splits at `;` outside quotes.
fn split_params(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut esc = false;
            for c in inner.chars() {
                if esc || c != '\\' {
                    out.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

impl HeaderValue {
    /// Parameter `name`, with RFC 2231 (`name*`, `name*0*`...) and RFC 2047 decoding.
    fn param(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.params.iter().find(|(k, _)| k == &format!("{name}*")) {
            return Some(decode_2231(v, true));
        }
        let mut pieces: Vec<(usize, bool, &str)> = Vec::new();
        for (k, v) in &self.params {
            if let Some(rest) = k.strip_prefix(name).and_then(|r| r.strip_prefix('*')) {
                let (num, star) = match rest.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                if let Ok(i) = num.parse::<usize>()
                    && i < 1000
                {
                    pieces.push((i, star, v));
                }
            }
        }
        if !pieces.is_empty() {
            pieces.sort_by_key(|p| p.0);
            let mut out = String::new();
            for (i, star, v) in pieces {
                if star {
                    out.push_str(&decode_2231(v, i == 0));
                } else {
                    out.push_str(v);
                }
            }
            return Some(out);
        }
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| decode_2047(v))
    }
}

/// `charset'lang'%xx..` (with prefix) or `%xx..` (continuation).
fn decode_2231(v: &str, with_charset: bool) -> String {
    let (charset, data) = if with_charset {
        let mut it = v.splitn(3, '\'');
        match (it.next(), it.next(), it.next()) {
            (Some(cs), Some(_lang), Some(data)) => (cs.to_ascii_lowercase(), data),
            _ => (String::new(), v),
        }
    } else {
        (String::new(), v)
    };
    let bytes = pct_decode(data.as_bytes());
    charset_decode(&charset, &bytes)
}

fn pct_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn charset_decode(charset: &str, bytes: &[u8]) -> String {
    match charset {
        "iso-8859-1" | "latin1" | "iso8859-1" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| b as char).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Decodes RFC 2047 encoded words (`=?cs?B?..?=`, `=?cs?Q?..?=`); other text as is.
pub fn decode_2047(v: &str) -> String {
    if !v.contains("=?") {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let word = rest[start + 2..].splitn(3, '?').collect::<Vec<_>>();
        let decoded = match word.as_slice() {
            [cs, enc, tail] => tail.find("?=").map(|end| {
                let text = &tail[..end];
                let bytes = match enc.to_ascii_uppercase().as_str() {
                    "B" => base64_lenient(text.as_bytes()),
                    "Q" => qp_decode(text.replace('_', " ").as_bytes()),
                    _ => text.as_bytes().to_vec(),
                };
                let consumed = start + 2 + cs.len() + 1 + enc.len() + 1 + end + 2;
                let cs = cs
                    .split('*')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                (charset_decode(&cs, &bytes), consumed)
            }),
            _ => None,
        };
        match decoded {
            Some((text, consumed)) if rest.get(consumed..).is_some() => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = rest.get(consumed..).unwrap_or_default();
                last_was_word = true;
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lenient base64: ignores everything outside the alphabet, stops at nothing.
pub fn base64_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable decoding (RFC 2045 6.7), lenient.
pub fn qp_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'=' {
            match (input.get(i + 1), input.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(&h), Some(&l)) => {
                    if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn decode_body(body: &[u8], cte: &str) -> Vec<u8> {
    match cte {
        "base64" => base64_lenient(body),
        "quoted-printable" => qp_decode(body),
        _ => body.to_vec(),
    }
}

enum Kind {
    Multipart(String, bool),
    Message,
    Keep,
    Attachment,
}

impl Ctx<'_> {
    fn entity(
        &mut self,
        ent: &[u8],
        msg_depth: usize,
        mp_depth: usize,
        default: Default_,
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentError> {
        let h = parse_headers(ent);
        let ct = h.get("content-type").map(parse_value);
        let cd = h.get("content-disposition").map(parse_value);
        let cte = h
            .get("content-transfer-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mime_type = match &ct {
            Some(ct) if ct.value.contains('/') => ct.value.clone(),
            _ => match default {
                Default_::Text => "text/plain".to_owned(),
                Default_::Message => "message/rfc822".to_owned(),
            },
        };
        let name = cd
            .as_ref()
            .and_then(|d| d.param("filename"))
            .or_else(|| ct.as_ref().and_then(|c| c.param("name")))
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        let disposition_attachment = cd.as_ref().is_some_and(|d| d.value == "attachment");
        let kind = if let Some(sub) = mime_type.strip_prefix("multipart/") {
            match ct.as_ref().and_then(|c| c.param("boundary")) {
                Some(b) if !b.is_empty() && b.len() <= 200 && mp_depth < MAX_MULTIPART_DEPTH => {
                    Kind::Multipart(b, sub == "digest")
                }
                _ => Kind::Attachment,
            }
        } else if mime_type == "message/rfc822" || mime_type == "message/global" {
            if matches!(cte.as_str(), "base64" | "quoted-printable")
                || msg_depth >= self.policy.max_nesting
            {
                Kind::Attachment
            } else {
                Kind::Message
            }
        } else if is_signature(&mime_type)
            || (mime_type.starts_with("text/") && name.is_none() && !disposition_attachment)
        {
            Kind::Keep
        } else {
            Kind::Attachment
        };
        match kind {
            Kind::Keep => out.extend_from_slice(ent),
            Kind::Message => {
                out.extend_from_slice(h.section);
                self.entity(h.body, msg_depth + 1, 0, Default_::Text, out)?;
            }
            Kind::Multipart(boundary, digest) => {
                let before = out.len();
                out.extend_from_slice(h.section);
                let child_default = if digest {
                    Default_::Message
                } else {
                    Default_::Text
                };
                if !self.multipart(
                    h.body,
                    &boundary,
                    msg_depth,
                    mp_depth + 1,
                    child_default,
                    out,
                )? {
                    out.truncate(before);
                    self.attachment(&h, name.as_deref(), &cte, out)?;
                }
            }
            Kind::Attachment => self.attachment(&h, name.as_deref(), &cte, out)?,
        }
        Ok(())
    }

    /// Writes a multipart body; false if it has no delimiter line (caller treats it as one
    /// attachment).
    fn multipart(
        &mut self,
        body: &[u8],
        boundary: &str,
        msg_depth: usize,
        mp_depth: usize,
        default: Default_,
        out: &mut Vec<u8>,
    ) -> Result<bool, AttachmentError> {
        let mut dash = Vec::with_capacity(boundary.len() + 2);
        dash.extend_from_slice(b"--");
        dash.extend_from_slice(boundary.as_bytes());
        // (line start, end after line end, is close)
        let mut delims: Vec<(usize, usize, bool)> = Vec::new();
        let mut last_end = 0usize;
        for pos in memmem::find_iter(body, &dash) {
            if pos < last_end || (pos > 0 && body.get(pos - 1) != Some(&b'\n')) {
                continue;
            }
            let after = pos + dash.len();
            let line_end =
                memchr::memchr(b'\n', &body[after..]).map_or(body.len(), |i| after + i + 1);
            let rest = &body[after..line_end];
            let close = rest.starts_with(b"--");
            let tail = if close { &rest[2..] } else { rest };
            if !tail.iter().all(|c| c.is_ascii_whitespace()) {
                continue;
            }
            delims.push((pos, line_end, close));
            last_end = line_end;
            if close {
                break;
            }
        }
        let Some(&(_, first_end, first_close)) = delims.first() else {
            return Ok(false);
        };
        out.extend_from_slice(&body[..first_end]);
        if first_close {
            out.extend_from_slice(&body[first_end..]);
            return Ok(true);
        }
        for (i, &(_, start, _)) in delims.iter().enumerate() {
            let (part_end, next_end, close) = match delims.get(i + 1) {
                Some(&(ls, le, close)) => {
                    let mut pe = ls;
                    if pe > start && body[pe - 1] == b'\n' {
                        pe -= 1;
                        if pe > start && body[pe - 1] == b'\r' {
                            pe -= 1;
                        }
                    }
                    (pe, le, close)
                }
                None => (body.len(), body.len(), true),
            };
            let part_end = part_end.max(start);
            let part = body.get(start..part_end).unwrap_or_default();
            // A delimiter line without a line end (the body's last bytes) has no part after it:
            // anything written here would be glued onto the delimiter and destroy it.
            if !(part.is_empty() && start > 0 && body[start - 1] != b'\n') {
                self.entity(part, msg_depth, mp_depth, default, out)?;
            }
            out.extend_from_slice(body.get(part_end..next_end).unwrap_or_default());
            if close {
                out.extend_from_slice(body.get(next_end..).unwrap_or_default());
                break;
            }
        }
        Ok(true)
    }

    fn attachment(
        &mut self,
        h: &Headers<'_>,
        name: Option<&str>,
        cte: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentError> {
        if self.names.len() < 10_000 {
            self.names.push(name.unwrap_or_default().to_owned());
        }
        if let Some(n) = name
            && self.policy.exclusions.matches(n)
        {
            self.summary.excluded = self.summary.excluded.saturating_add(1);
            out.extend_from_slice(h.section);
            out.extend_from_slice(h.body);
            return Ok(());
        }
        let eol = self.eol;
        for f in &h.fields {
            let content = f.name.len() >= 8 && f.name[..8].eq_ignore_ascii_case(b"content-");
            if !content {
                out.extend_from_slice(f.raw);
                if !f.raw.ends_with(b"\n") {
                    out.extend_from_slice(eol);
                }
            }
        }
        let shown = display_name(name.unwrap_or("attachment"));
        match &self.policy.decision {
            Decision::Deliver => {
                out.extend_from_slice(h.section);
                out.extend_from_slice(h.body);
            }
            Decision::Remove => {
                self.summary.removed = self.summary.removed.saturating_add(1);
                let header = [
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit",
                    "Content-Disposition: inline",
                ];
                for line in header {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(eol);
                out.extend_from_slice(
                    format!("[Attachment \"{shown}\" removed by the email security gateway.]")
                        .as_bytes(),
                );
                out.extend_from_slice(eol);
            }
            Decision::Encrypt(recipients) => {
                self.summary.encrypted = self.summary.encrypted.saturating_add(1);
                let plain = decode_body(h.body, cte);
                let cms = encrypt::envelope(&plain, recipients)?;
                let p7m = format!("{shown}.p7m");
                let ct = format!(
                    "Content-Type: {}; {}",
                    encrypt::CONTENT_TYPE,
                    param("name", &p7m)
                );
                let cd = format!(
                    "Content-Disposition: attachment; {}",
                    param("filename", &p7m)
                );
                for line in [
                    ct.as_str(),
                    "Content-Transfer-Encoding: base64",
                    cd.as_str(),
                ] {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(eol);
                let b64 = base64::engine::general_purpose::STANDARD.encode(&cms);
                for chunk in b64.as_bytes().chunks(76) {
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(eol);
                }
            }
        }
        Ok(())
    }
}

/// Detached signatures carry no data (and are useless once the signed part changes anyway).
fn is_signature(mime_type: &str) -> bool {
    matches!(
        mime_type,
        "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
            | "application/pgp-signature"
    )
}

/// A name safe to put in a note or a parameter: no control characters, bounded length.
fn display_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect()
}

/// `name="value"` for printable ASCII, else RFC 2231 `name*=UTF-8''%xx`.
fn param(key: &str, value: &str) -> String {
    if value
        .bytes()
        .all(|b| (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\')
    {
        format!("{key}=\"{value}\"")
    } else {
        let mut enc = String::with_capacity(value.len() * 3);
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                enc.push(b as char);
            } else {
                enc.push_str(&format!("%{b:02X}"));
            }
        }
        format!("{key}*=UTF-8''{enc}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_and_rfc2231() {
        assert_eq!(decode_2047("=?UTF-8?B?cmFwcG9ydC5wZGY=?="), "rapport.pdf");
        assert_eq!(
            decode_2047("=?iso-8859-1?Q?r=E9sum=E9?= =?utf-8?q?_x.txt?="),
            "résumé x.txt"
        );
        assert_eq!(decode_2047("=?utf-8*en?Q?a?=.pdf"), "a.pdf");
        assert_eq!(decode_2047("=?broken"), "=?broken");
        assert_eq!(decode_2047("plain =? text"), "plain =? text");
        let v = parse_value("attachment; filename*0*=UTF-8''r%C3%A9; filename*1=\"sum.pdf\"");
        assert_eq!(v.value, "attachment");
        assert_eq!(v.param("filename").as_deref(), Some("résum.pdf"));
        let v = parse_value("application/pdf; name=\"a;b.pdf\"");
        assert_eq!(v.param("name").as_deref(), Some("a;b.pdf"));
    }

    #[test]
    fn transfer_decodings() {
        assert_eq!(base64_lenient(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(qp_decode(b"a=3Db=\r\nc=ZZ="), b"a=bc=ZZ=");
        assert_eq!(param("filename", "a.pdf"), "filename=\"a.pdf\"");
        assert_eq!(
            param("filename", "é\".pdf"),
            "filename*=UTF-8''%C3%A9%22.pdf"
        );
    }

    #[test]
    fn lf_only_messages_keep_their_line_ends() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/gif\n\nGIF\n--b--\n";
        let r = rewrite_mime(msg, &Policy::new(Decision::Remove)).unwrap();
        let out = std::str::from_utf8(&r.body).unwrap();
        assert!(!out.contains('\r'), "{out:?}");
        assert!(out.contains("--b\nContent-Type: text/plain\n\nhi\n--b\n"));
        assert!(!out.contains("GIF"));
    }

    #[test]
    fn deep_multipart_nesting_is_bounded() {
        let mut msg = String::new();
        for i in 0..200 {
            msg.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        msg.push_str("Content-Type: text/plain\r\n\r\nleaf\r\n");
        let r = rewrite_mime(msg.as_bytes(), &Policy::new(Decision::Remove)).unwrap();
        assert_eq!(r.summary.removed, 1);
        assert!(!String::from_utf8_lossy(&r.body).contains("leaf"));
    }
}
