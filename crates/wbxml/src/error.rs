//! The one error type of the crate: every failure says where (byte offset) and what value failed,
//! so a gateway log line is enough to find the offending byte in a captured body.

/// Everything that can go wrong while reading, writing, rewriting or bridging WBXML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends inside a structure.
    #[error("truncated WBXML at byte {offset}: {what}")]
    Truncated { offset: usize, what: &'static str },
    /// Header version byte other than 1.1..=1.3.
    #[error("unsupported WBXML version byte 0x{version:02X} at byte {offset} (EAS sends 0x03)")]
    Version { offset: usize, version: u8 },
    /// Public id other than 1 ("unknown"), the only one EAS sends.
    #[error("unsupported public id {id} at byte {offset} (EAS sends 1)")]
    PublicId { offset: usize, id: u32 },
    /// Charset other than UTF-8 (MIBenum 106).
    #[error("unsupported charset MIBenum {charset} at byte {offset} (EAS sends 106 = UTF-8)")]
    Charset { offset: usize, charset: u32 },
    /// A non-empty string table: EAS never uses one.
    #[error("string table of {len} bytes at byte {offset}: EAS never uses one")]
    StringTable { offset: usize, len: u32 },
    /// An mb_u_int32 longer than 5 bytes or above u32::MAX.
    #[error("malformed mb_u_int32 at byte {offset}")]
    MultiByteInt { offset: usize },
    /// A global token EAS never uses (STR_T, ENTITY, EXT_*, LITERAL*, PI).
    #[error("unsupported WBXML token 0x{token:02X} ({name}) at byte {offset}")]
    UnsupportedToken {
        offset: usize,
        token: u8,
        name: &'static str,
    },
    /// A tag with the attribute bit (0x80): EAS has no attributes.
    #[error("tag byte 0x{tag:02X} at byte {offset} has the attribute bit; EAS has no attributes")]
    Attributes { offset: usize, tag: u8 },
    /// SWITCH_PAGE to a page EAS does not define.
    #[error("unknown code page {page} at byte {offset}")]
    UnknownPage { offset: usize, page: u8 },
    /// A tag token the current code page does not define.
    #[error("unknown tag 0x{token:02X} on code page {page} at byte {offset}")]
    UnknownTag { offset: usize, page: u8, token: u8 },
    /// A tag looked up by name that the tables do not have.
    #[error("unknown tag name {name:?} in namespace {namespace:?}")]
    UnknownName { namespace: String, name: String },
    /// Structure errors: END without open tag, content outside the root, bytes after the root.
    #[error("malformed WBXML at byte {offset}: {what}")]
    Structure { offset: usize, what: &'static str },
    /// Nesting deeper than `Limits::max_depth`.
    #[error("nesting deeper than {max} at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    /// Input larger than `Limits::max_document_bytes`.
    #[error("document of {len} bytes exceeds the limit of {max} bytes")]
    DocumentTooLarge { len: usize, max: usize },
    /// A string or opaque value larger than `Limits::max_string_bytes`.
    #[error("string of {len} bytes at byte {offset} exceeds the limit of {max} bytes")]
    StringTooLong {
        offset: usize,
        len: usize,
        max: usize,
    },
    /// More tree nodes than `Limits::max_tree_nodes`.
    #[error("more than {max} nodes in the tree at byte {offset}")]
    TooManyNodes { offset: usize, max: usize },
    /// Text that is not UTF-8 where a `str` is needed (tree, XML).
    #[error("invalid UTF-8 in text at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// A writer call that would produce an invalid document.
    #[error("invalid write at output byte {offset}: {what}")]
    InvalidWrite { offset: usize, what: &'static str },
    /// A rewriter call made in the wrong state.
    #[error("invalid rewrite at input byte {offset}: {what}")]
    InvalidRewrite { offset: usize, what: &'static str },
    /// XML syntax error or XML the bridge does not accept.
    #[error("XML at byte {offset}: {message}")]
    Xml { offset: u64, message: String },
}
