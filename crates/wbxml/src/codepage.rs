//! The EAS code pages 0..=25 (MS-ASWBXML 16.1): every tag by page, token and name.
//!
//! The Rust API uses the spec's tag names (`name`); the XML bridge uses libwbxml2's
//! (`xml_name`), which differ for a handful of tags.

/// One tag of a code page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDef {
    /// Token without the content bit (0x05..=0x3F).
    pub token: u8,
    /// Name in MS-ASWBXML.
    pub name: &'static str,
    /// Name libwbxml2 prints (same as `name` for almost every tag).
    pub xml_name: &'static str,
    /// libwbxml2 encodes this tag's content as OPAQUE and prints it as base64.
    pub opaque: bool,
}

/// One code page.
#[derive(Debug, Clone, Copy)]
pub struct CodePage {
    pub number: u8,
    /// Namespace without the trailing colon, e.g. `AirSync`, `AirSyncBase`.
    pub namespace: &'static str,
    pub tags: &'static [TagDef],
}

const fn t(token: u8, name: &'static str) -> TagDef {
    TagDef { token, name, xml_name: name, opaque: false }
}

// TABLES: filled in for every page 0..=25 (see the helper that owns this file).
const PING: &[TagDef] = &[
    t(0x05, "Ping"),
    t(0x06, "AutdState"),
    t(0x07, "Status"),
    t(0x08, "HeartbeatInterval"),
    t(0x09, "Folders"),
    t(0x0A, "Folder"),
    t(0x0B, "Id"),
    t(0x0C, "Class"),
    t(0x0D, "MaxFolders"),
];

/// All pages, indexed by page number.
pub static PAGES: &[CodePage] = &[CodePage { number: 13, namespace: "Ping", tags: PING }];

/// The page with this number, if EAS defines it.
pub fn page(number: u8) -> Option<&'static CodePage> {
    PAGES.iter().find(|p| p.number == number)
}

/// The page whose namespace is `ns` (without colon).
pub fn page_by_namespace(ns: &str) -> Option<&'static CodePage> {
    PAGES.iter().find(|p| p.namespace == ns)
}

impl CodePage {
    /// The tag with this token (content bit stripped).
    pub fn tag(&self, token: u8) -> Option<&'static TagDef> {
        self.tags.iter().find(|t| t.token == token)
    }
    /// The tag with this spec name.
    pub fn tag_by_name(&self, name: &str) -> Option<&'static TagDef> {
        self.tags.iter().find(|t| t.name == name)
    }
    /// The tag with this libwbxml2 XML name.
    pub fn tag_by_xml_name(&self, name: &str) -> Option<&'static TagDef> {
        self.tags.iter().find(|t| t.xml_name == name)
    }
}
