//! `Tag` = (code page, token): the identity of an element, with name look-ups into the tables.

use crate::codepage::{self, TagDef};

/// An element's identity: code page and token (content bit stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub page: u8,
    pub token: u8,
}

impl Tag {
    pub const fn new(page: u8, token: u8) -> Self {
        Tag { page, token }
    }

    /// The tag with spec name `name` in namespace `namespace` (without colon, e.g. `AirSyncBase`).
    pub fn by_name(namespace: &str, name: &str) -> Option<Tag> {
        let page = codepage::page_by_namespace(namespace)?;
        let def = page.tag_by_name(name)?;
        Some(Tag {
            page: page.number,
            token: def.token,
        })
    }

    /// The table entry, if the tables define this tag.
    pub fn def(self) -> Option<&'static TagDef> {
        lookup(self.page, self.token)
    }

    /// Spec name (MS-ASWBXML), or `"?"` for a tag the tables do not define.
    pub fn name(self) -> &'static str {
        self.def().map_or("?", |d| d.name)
    }

    /// Namespace of the page without colon, or `"?"` for an unknown page.
    pub fn namespace(self) -> &'static str {
        codepage::page(self.page).map_or("?", |p| p.namespace)
    }

    /// True if this is `namespace:name` (spec names).
    pub fn is(self, namespace: &str, name: &str) -> bool {
        self.def().is_some_and(|d| d.name == name) && self.namespace() == namespace
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.namespace(), self.name())
    }
}

/// Table look-up on the reader's hot path.
#[inline]
pub(crate) fn lookup(page: u8, token: u8) -> Option<&'static TagDef> {
    codepage::tag_def(page, token)
}

/// Per page, bit `t` set when token `t` is defined: the reader keeps the current page's mask,
/// so validating a tag is a shift and a test (built once from the tables).
pub(crate) fn page_mask(page: u8) -> u64 {
    static MASKS: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let masks = MASKS.get_or_init(|| {
        let mut masks = [0u64; 256];
        for (slot, mask) in masks.iter_mut().enumerate() {
            if let Some(page) = u8::try_from(slot).ok().and_then(codepage::page) {
                *mask = page
                    .tags
                    .iter()
                    .filter(|t| t.token < 64)
                    .fold(0, |m, t| m | 1 << t.token);
            }
        }
        masks
    });
    masks[usize::from(page)]
}

/// True if EAS defines this code page.
#[inline]
pub(crate) fn page_known(page: u8) -> bool {
    codepage::page(page).is_some()
}
