//! Limits against hostile input, checked before anything is allocated for it.

/// Bounds for one document. The defaults fit every real EAS body with room to spare
/// (EAS nests about 12 deep; attachments travel as multipart or ItemOperations data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum element nesting depth (the root is depth 1). Capped at [`Limits::MAX_DEPTH_CEILING`]
    /// so that recursive `Drop`/`Clone` of a parsed tree stays far from the stack limit.
    pub max_depth: usize,
    /// Maximum size of the whole input (WBXML bytes; for XML input twice this).
    pub max_document_bytes: usize,
    /// Maximum size of one inline string or opaque value.
    pub max_string_bytes: usize,
    /// Maximum number of nodes the owned tree builds (the pull reader does not allocate per
    /// token, the tree does: about 40 bytes per node for 1 input byte in the worst case).
    pub max_tree_nodes: usize,
}

impl Limits {
    /// Hard ceiling for `max_depth`, whatever is configured.
    pub const MAX_DEPTH_CEILING: usize = 4096;

    /// `max_depth` as enforced (configured value, capped at the ceiling).
    pub fn effective_max_depth(&self) -> usize {
        self.max_depth.min(Self::MAX_DEPTH_CEILING)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_document_bytes: 64 << 20,
            max_string_bytes: 32 << 20,
            max_tree_nodes: 1 << 20,
        }
    }
}
