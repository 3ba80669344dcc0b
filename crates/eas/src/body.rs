//! Reading facts out of request bodies with the streaming [`wbxml::reader::Reader`]: the tags
//! this crate looks for, and a thin wrapper that turns codec errors into [`EasError`]s naming
//! the command and reads leaf values without allocating.

use wbxml::Limits;
use wbxml::Tag;
use wbxml::{Event, Reader};

use crate::error::{EasError, clip_bytes};

/// Tags this crate reads or writes, by (page, token); a test checks them against the tables.
pub(crate) mod tags {
    use wbxml::Tag;

    pub const SYNC: Tag = Tag::new(0, 0x05);
    pub const SYNC_WAIT: Tag = Tag::new(0, 0x24);
    pub const SYNC_HEARTBEAT: Tag = Tag::new(0, 0x29);

    pub const PING: Tag = Tag::new(13, 0x05);
    pub const PING_HEARTBEAT: Tag = Tag::new(13, 0x08);
    pub const PING_FOLDERS: Tag = Tag::new(13, 0x09);
    pub const PING_FOLDER: Tag = Tag::new(13, 0x0A);

    pub const PROVISION: Tag = Tag::new(14, 0x05);
    pub const POLICIES: Tag = Tag::new(14, 0x06);
    pub const POLICY: Tag = Tag::new(14, 0x07);
    pub const POLICY_TYPE: Tag = Tag::new(14, 0x08);
    pub const POLICY_KEY: Tag = Tag::new(14, 0x09);
    pub const DATA: Tag = Tag::new(14, 0x0A);
    pub const PROV_STATUS: Tag = Tag::new(14, 0x0B);
    pub const REMOTE_WIPE: Tag = Tag::new(14, 0x0C);
    pub const EAS_PROVISION_DOC: Tag = Tag::new(14, 0x0D);
    pub const ACCOUNT_ONLY_REMOTE_WIPE: Tag = Tag::new(14, 0x3B);

    pub const DEVICE_INFORMATION: Tag = Tag::new(18, 0x16);
    pub const SETTINGS_STATUS: Tag = Tag::new(18, 0x06);
    pub const SETTINGS_SET: Tag = Tag::new(18, 0x08);
    pub const MODEL: Tag = Tag::new(18, 0x17);
    pub const IMEI: Tag = Tag::new(18, 0x18);
    pub const FRIENDLY_NAME: Tag = Tag::new(18, 0x19);
    pub const OS: Tag = Tag::new(18, 0x1A);
    pub const OS_LANGUAGE: Tag = Tag::new(18, 0x1B);
    pub const PHONE_NUMBER: Tag = Tag::new(18, 0x1C);
    pub const USER_AGENT: Tag = Tag::new(18, 0x20);
    pub const ENABLE_OUTBOUND_SMS: Tag = Tag::new(18, 0x21);
    pub const MOBILE_OPERATOR: Tag = Tag::new(18, 0x22);
}

/// Limits for small control bodies (Ping, Provision): far above any real one, far below what
/// could hurt.
pub(crate) const SMALL_BODY: Limits = Limits {
    max_depth: 16,
    max_document_bytes: 256 << 10,
    max_string_bytes: 4 << 10,
    max_tree_nodes: 1 << 14,
};

/// A body being read for one command's facts.
pub(crate) struct BodyReader<'a> {
    reader: Reader<'a>,
    command: &'static str,
}

impl<'a> BodyReader<'a> {
    /// Open a non-empty body and check its root element is `root`. Returns the reader
    /// positioned after the root's start tag and whether the root has content.
    pub fn open(
        command: &'static str,
        body: &'a [u8],
        limits: &Limits,
        root: Tag,
        root_name: &'static str,
    ) -> Result<(Self, bool), EasError> {
        let reader = Reader::with_limits(body, limits).map_err(|e| wbxml_error(command, &e))?;
        let mut this = Self { reader, command };
        match this.next()? {
            Some(Event::Start {
                page,
                token,
                has_content,
            }) if Tag::new(page, token) == root => Ok((this, has_content)),
            Some(Event::Start { page, token, .. }) => Err(EasError::UnexpectedRoot {
                command,
                expected: root_name,
                found: Tag::new(page, token).to_string(),
            }),
            _ => Err(EasError::UnexpectedRoot {
                command,
                expected: root_name,
                found: "no element".into(),
            }),
        }
    }

    pub fn next(&mut self) -> Result<Option<Event<'a>>, EasError> {
        self.reader
            .next_event()
            .map_err(|e| wbxml_error(self.command, &e))
    }

    /// The next start tag and whether it has content, skipping text and end tags; `None` at
    /// the end of the body.
    pub fn next_start(&mut self) -> Result<Option<(Tag, bool)>, EasError> {
        while let Some(ev) = self.next()? {
            if let Event::Start {
                page,
                token,
                has_content,
            } = ev
            {
                return Ok(Some((Tag::new(page, token), has_content)));
            }
        }
        Ok(None)
    }

    /// Open elements, outermost first (the root is `[0]`).
    pub fn path(&self) -> &[Tag] {
        self.reader.open_tags()
    }

    /// The text of the leaf whose start tag (with content) was just read; consumes its END.
    /// Inline strings and opaque data both count; a nested element is an error.
    pub fn leaf(&mut self, element: &'static str) -> Result<&'a [u8], EasError> {
        let mut value: Option<&'a [u8]> = None;
        loop {
            match self.next()? {
                Some(Event::Text(t) | Event::Opaque(t)) if value.is_none() => value = Some(t),
                Some(Event::End { .. }) => return Ok(value.unwrap_or_default()),
                _ => {
                    return Err(EasError::InvalidBodyValue {
                        command: self.command,
                        element,
                        value: clip_bytes(value.unwrap_or_default()),
                        expected: "a single text value",
                    });
                }
            }
        }
    }

    /// A leaf's value, for a start tag that may or may not have content.
    pub fn leaf_of(
        &mut self,
        has_content: bool,
        element: &'static str,
    ) -> Result<&'a [u8], EasError> {
        if has_content {
            self.leaf(element)
        } else {
            Ok(&[])
        }
    }

    /// Skip the element whose start tag (with content) was just read.
    pub fn skip(&mut self) -> Result<(), EasError> {
        self.reader
            .skip_element()
            .map_err(|e| wbxml_error(self.command, &e))
    }
}

pub(crate) fn wbxml_error(command: &'static str, e: &wbxml::Error) -> EasError {
    EasError::Wbxml {
        command,
        detail: e.to_string(),
    }
}

/// A decimal unsigned integer leaf (`480`), at most 10 digits, surrounding blanks allowed.
pub(crate) fn parse_u32(
    command: &'static str,
    element: &'static str,
    value: &[u8],
) -> Result<u32, EasError> {
    let bad = || EasError::InvalidBodyValue {
        command,
        element,
        value: clip_bytes(value),
        expected: "a decimal 32-bit unsigned integer",
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

/// A UTF-8 text leaf.
pub(crate) fn parse_text(
    command: &'static str,
    element: &'static str,
    value: &[u8],
) -> Result<String, EasError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| EasError::InvalidBodyValue {
            command,
            element,
            value: clip_bytes(value),
            expected: "UTF-8 text",
        })
}

#[cfg(test)]
mod tests {
    use super::tags::*;
    use super::*;

    #[test]
    fn tag_constants_match_the_tables() {
        let expect = [
            (SYNC, "AirSync", "Sync"),
            (SYNC_WAIT, "AirSync", "Wait"),
            (SYNC_HEARTBEAT, "AirSync", "HeartbeatInterval"),
            (PING, "Ping", "Ping"),
            (PING_HEARTBEAT, "Ping", "HeartbeatInterval"),
            (PING_FOLDERS, "Ping", "Folders"),
            (PING_FOLDER, "Ping", "Folder"),
            (PROVISION, "Provision", "Provision"),
            (POLICIES, "Provision", "Policies"),
            (POLICY, "Provision", "Policy"),
            (POLICY_TYPE, "Provision", "PolicyType"),
            (POLICY_KEY, "Provision", "PolicyKey"),
            (DATA, "Provision", "Data"),
            (PROV_STATUS, "Provision", "Status"),
            (REMOTE_WIPE, "Provision", "RemoteWipe"),
            (EAS_PROVISION_DOC, "Provision", "EASProvisionDoc"),
            (
                ACCOUNT_ONLY_REMOTE_WIPE,
                "Provision",
                "AccountOnlyRemoteWipe",
            ),
            (DEVICE_INFORMATION, "Settings", "DeviceInformation"),
            (SETTINGS_STATUS, "Settings", "Status"),
            (SETTINGS_SET, "Settings", "Set"),
            (MODEL, "Settings", "Model"),
            (IMEI, "Settings", "IMEI"),
            (FRIENDLY_NAME, "Settings", "FriendlyName"),
            (OS, "Settings", "OS"),
            (OS_LANGUAGE, "Settings", "OSLanguage"),
            (PHONE_NUMBER, "Settings", "PhoneNumber"),
            (USER_AGENT, "Settings", "UserAgent"),
            (ENABLE_OUTBOUND_SMS, "Settings", "EnableOutboundSMS"),
            (MOBILE_OPERATOR, "Settings", "MobileOperator"),
        ];
        for (tag, ns, name) in expect {
            assert_eq!(Tag::by_name(ns, name), Some(tag), "{ns}:{name}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("Ping", "HeartbeatInterval", b"480"), Ok(480));
        assert_eq!(parse_u32("Ping", "HeartbeatInterval", b" 60 "), Ok(60));
        for bad in [
            &b""[..],
            b"-1",
            b"4294967296",
            b"12345678901",
            b"1e3",
            b"\xff",
        ] {
            assert!(matches!(
                parse_u32("Ping", "HeartbeatInterval", bad),
                Err(EasError::InvalidBodyValue { .. })
            ));
        }
    }
}
