//! Exchange ActiveSync WBXML (MS-ASWBXML) codec. No I/O.
//!
//! Two APIs: a zero-copy pull [`reader`] with a matching [`writer`] (rewrites copy untouched
//! bytes verbatim), and a small owned [`tree`]. [`xml`] speaks the XML dialect of libwbxml2's
//! `wbxml2xml -l ACTIVESYNC` so the two tools interoperate.
#![forbid(unsafe_code)]

pub mod codepage;
