//! Exchange ActiveSync WBXML (MS-ASWBXML) codec. No I/O.
//!
//! Two APIs: a zero-copy pull [`Reader`] with a matching [`Writer`] and a [`Rewriter`]
//! (rewrites copy untouched bytes verbatim), and a small owned tree ([`Element`]). [`xml`]
//! speaks the XML dialect of libwbxml2's `wbxml2xml -l ACTIVESYNC` so the two tools interoperate.
//! Everything EAS never uses (string tables, attributes, entities, extensions, literals) is
//! rejected with an [`Error`] that names the byte offset; [`Limits`] bound hostile input.
//!
//! ```
//! use wbxml::{Action, Element, Event, Limits, Reader, rewrite};
//!
//! // Build (spec names), encode, look up.
//! let ping = Element::named("Ping", "Ping")?.with_text_child("HeartbeatInterval", "480")?;
//! let bytes = ping.encode()?;
//! assert_eq!(&bytes[..4], &[0x03, 0x01, 0x6A, 0x00]);
//! let tree = Element::parse(&bytes)?;
//! assert_eq!(tree.find_path(&["HeartbeatInterval"]).and_then(Element::text), Some("480"));
//!
//! // Pull events without allocating.
//! let mut reader = Reader::new(&bytes)?;
//! while let Some(event) = reader.next_event()? {
//!     if let Event::Text(t) = event {
//!         assert_eq!(t, b"480");
//!     }
//! }
//!
//! // Rewrite: untouched bytes are copied verbatim.
//! let same = rewrite(&bytes, &Limits::default(), |_tag, _ancestors| Action::Keep)?;
//! assert_eq!(same, bytes);
//!
//! // XML as `wbxml2xml -l ACTIVESYNC` prints it, and back.
//! let xml = wbxml::xml::to_xml(&bytes)?;
//! assert!(xml.ends_with("<Ping xmlns=\"Ping:\">\n<HeartbeatInterval>480</HeartbeatInterval>\n</Ping>\n"));
//! assert_eq!(wbxml::xml::from_xml(&xml)?, bytes);
//! # Ok::<(), wbxml::Error>(())
//! ```
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
