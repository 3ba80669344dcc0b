//! Attachment control (issue 5): remove, encrypt or deliver email attachments in every place
//! ActiveSync carries them. Pure functions over bytes; the gateway does the I/O, picks the
//! [`Decision`] per request ([`policy::AttachmentControl::policy_for`]) and answers errors with
//! `on_oversize` ([`AttachmentError::applies_on_oversize`]).
//!
//! | place | entry point |
//! | --- | --- |
//! | Sync / Search / ItemOperations WBXML responses (item `Attachments`, MIME bodies, Fetch of a FileReference inline) | [`wbxml_rewrite::rewrite_response`] |
//! | ItemOperations multipart responses (`application/vnd.ms-sync.multipart`) | [`wbxml_rewrite::rewrite_multipart`] |
//! | GetAttachment (12.x) raw bodies | [`wbxml_rewrite::get_attachment`] |
//! | MIME messages (Body Type 4, 2.5 `MIMEData`, ComposeMail `Mime`) | [`mime::rewrite_mime`] |
//! | SmartForward / SmartReply requests | [`compose::rewrite_compose_request`], [`compose::rfc822_compose`] |
//! | CMS EnvelopedData | [`encrypt::Recipients`], [`encrypt::envelope`] |
#![forbid(unsafe_code)]

pub mod compose;
pub mod encrypt;
pub mod mime;
pub mod policy;
pub mod wbxml_rewrite;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

pub use encrypt::Recipients;
pub use policy::{
    Action, AttachmentControl, AttachmentControlConfig, FieldError, OnOversize, PlatformClass,
    PlatformRule,
};

use crate::error::Fault;

/// Where attachment control applies to a command, i.e. which entry point the gateway calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Response body: [`wbxml_rewrite::rewrite_response`] (WBXML) or
    /// [`wbxml_rewrite::rewrite_multipart`] (`application/vnd.ms-sync.multipart`).
    Response,
    /// [`wbxml_rewrite::get_attachment_precheck`] before forwarding, then
    /// [`wbxml_rewrite::get_attachment`] on the response body.
    GetAttachment,
    /// Request body: [`compose::rewrite_compose_request`] (WBXML) or
    /// [`compose::rfc822_compose`] (`message/rfc822`, 12.x) plus
    /// [`compose::retarget_query_to_sendmail`] when asked.
    ComposeRequest,
    /// Nothing to do (no attachment travels server → device).
    None,
}

impl Place {
    /// The place of `command`. Find (16.1) returns previews only; MeetingResponse,
    /// ResolveRecipients etc. carry no attachments.
    pub fn of(command: crate::Command) -> Place {
        use crate::Command as C;
        match command {
            C::Sync | C::Search | C::ItemOperations => Place::Response,
            C::GetAttachment => Place::GetAttachment,
            C::SmartForward | C::SmartReply => Place::ComposeRequest,
            _ => Place::None,
        }
    }
}

/// What happens to the attachments of one request (chosen per platform class).
#[derive(Debug, Clone)]
pub enum Decision {
    /// Pass everything through unchanged (byte-identical).
    Deliver,
    /// Attachments disappear: metadata dropped, fetches answer "not available".
    Remove,
    /// Attachments become CMS EnvelopedData (`<name>.p7m`) to these recipients.
    Encrypt(Arc<Recipients>),
}

impl Decision {
    /// True for [`Decision::Deliver`].
    pub fn is_deliver(&self) -> bool {
        matches!(self, Decision::Deliver)
    }
}

/// File-name extensions that are always delivered as-is (lower case, without dot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions(HashSet<String>);

impl Exclusions {
    /// Parses `"ics, vcf ,.PDF"`: comma or whitespace separated, case-insensitive, leading dots
    /// ignored, empty entries skipped.
    pub fn parse(list: &str) -> Self {
        Exclusions(
            list.split(|c: char| c == ',' || c.is_whitespace())
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// True if `file_name`'s extension (after the last dot) is in the list.
    pub fn matches(&self, file_name: &str) -> bool {
        let name = file_name.trim().trim_end_matches(['"', '\'']);
        match name.rsplit_once('.') {
            Some((_, ext)) if !ext.is_empty() => self.0.contains(&ext.to_ascii_lowercase()),
            _ => false,
        }
    }

    /// Number of extensions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no extension is excluded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything a rewrite needs: the decision, the exclusion list and the bounds.
#[derive(Debug, Clone)]
pub struct Policy {
    pub decision: Decision,
    pub exclusions: Exclusions,
    /// Embedded `message/rfc822` levels handled; deeper = the whole message is one attachment.
    pub max_nesting: usize,
    /// Largest body (bytes) a rewrite accepts; larger → [`AttachmentError::TooLarge`].
    pub max_body_bytes: usize,
}

impl Policy {
    /// Policy with the defaults (exclusions `ics,vcf`, nesting 4, 32 MiB).
    pub fn new(decision: Decision) -> Self {
        Policy {
            decision,
            exclusions: Exclusions::parse("ics,vcf"),
            max_nesting: 4,
            max_body_bytes: 32 << 20,
        }
    }

    pub(crate) fn check_size(&self, len: usize) -> Result<(), AttachmentError> {
        if len > self.max_body_bytes {
            return Err(AttachmentError::TooLarge {
                len,
                max: self.max_body_bytes,
            });
        }
        Ok(())
    }
}

/// What a rewrite did (for the audit log and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Attachments removed (metadata entries, MIME parts, fetches refused).
    pub removed: u32,
    /// Attachments encrypted or marked for encryption (`.p7m`).
    pub encrypted: u32,
    /// Attachments left alone because their extension is excluded.
    pub excluded: u32,
    /// FileReferences of excluded attachments seen in item metadata: the gateway caches them
    /// (per user) so that fetching them later is not refused/encrypted (a fetch response does
    /// not carry the file name). Bounded by the body size.
    pub excluded_refs: Vec<String>,
}

impl Summary {
    /// True if the rewrite changed anything.
    pub fn changed(&self) -> bool {
        self.removed > 0 || self.encrypted > 0
    }

    pub(crate) fn add(&mut self, other: &Summary) {
        self.removed = self.removed.saturating_add(other.removed);
        self.encrypted = self.encrypted.saturating_add(other.encrypted);
        self.excluded = self.excluded.saturating_add(other.excluded);
        self.excluded_refs
            .extend(other.excluded_refs.iter().cloned());
    }
}

/// The result of a rewrite: the body to send (its length is the exact Content-Length) and
/// what was done. `body` borrows the input when nothing changed.
#[derive(Debug, Clone)]
pub struct Rewritten<'a> {
    pub body: Cow<'a, [u8]>,
    pub summary: Summary,
}

impl Rewritten<'_> {
    /// The Content-Length of the rewritten body.
    pub fn content_length(&self) -> usize {
        self.body.len()
    }
}

/// Why a rewrite could not be done. The gateway applies `on_oversize` where
/// [`AttachmentError::applies_on_oversize`] says so and blocks otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The body is larger than `max_body_bytes`: not buffered for rewriting.
    #[error("body of {len} bytes exceeds max_body_bytes ({max})")]
    TooLarge { len: usize, max: usize },
    /// The server's WBXML could not be parsed, so it cannot be checked.
    #[error("{what} is not valid WBXML: {detail}")]
    Wbxml { what: &'static str, detail: String },
    /// The server's multipart body could not be parsed or rebuilt.
    #[error("multipart body: {detail}")]
    Multipart { detail: String },
    /// A device request cannot be made safe (e.g. 12.x SmartForward under "remove").
    #[error("{command} request refused by attachment policy: {reason}")]
    Refused {
        command: &'static str,
        reason: &'static str,
    },
    /// A recipient certificate could not be used (config problem).
    #[error("encryption recipient {index}: {reason}")]
    Certificate { index: usize, reason: String },
    /// Encrypt was chosen but no recipient certificate is loaded (config problem).
    #[error("attachment encryption has no recipient certificates")]
    NoRecipients,
    /// The crypto library failed (should not happen with valid keys).
    #[error("encryption failed: {reason}")]
    Crypto { reason: String },
}

impl AttachmentError {
    /// Whose fault: the server's body, the device's request or the gateway's config.
    pub fn fault(&self) -> Fault {
        match self {
            AttachmentError::TooLarge { .. }
            | AttachmentError::Wbxml { .. }
            | AttachmentError::Multipart { .. } => Fault::Server,
            AttachmentError::Refused { .. } => Fault::Device,
            AttachmentError::Certificate { .. }
            | AttachmentError::NoRecipients
            | AttachmentError::Crypto { .. } => Fault::Gateway,
        }
    }

    /// True if the gateway should apply `on_oversize` (block | deliver): the body is too large
    /// or could not be parsed. Everything else blocks (config and crypto errors must never
    /// turn into "deliver in the clear").
    pub fn applies_on_oversize(&self) -> bool {
        matches!(
            self,
            AttachmentError::TooLarge { .. }
                | AttachmentError::Wbxml { .. }
                | AttachmentError::Multipart { .. }
        )
    }
}

impl From<wbxml::Error> for AttachmentError {
    fn from(e: wbxml::Error) -> Self {
        AttachmentError::Wbxml {
            what: "response",
            detail: e.to_string(),
        }
    }
}
