//! Exchange ActiveSync WBXML (MS-ASWBXML) codec. No I/O.
//!
//! Two APIs: a zero-copy pull [`Reader`] with a matching [`Writer`] and a [`Rewriter`]
//! (rewrites copy untouched bytes verbatim), and a small owned tree ([`Element`]). [`xml`]
//! speaks the XML dialect of libwbxml2's `wbxml2xml -l ACTIVESYNC` so the two tools interoperate.
//! Everything EAS never uses (string tables, attributes, entities, extensions, literals) is
//! rejected with an [`Error`] that names the byte offset; [`Limits`] bound hostile input.
#![forbid(unsafe_code)]

pub mod codepage;
mod error;
mod limits;
pub mod reader;
pub mod rewrite;
mod tag;
pub mod tree;
pub mod wire;
pub mod writer;
pub mod xml;

pub use error::Error;
pub use limits::Limits;
pub use reader::{Event, Header, Reader};
pub use rewrite::{Action, Rewriter, rewrite};
pub use tag::Tag;
pub use tree::{Element, Node};
pub use writer::Writer;
