//! Writer: emits the reader's events as WBXML, switching code pages only when needed.

use crate::Error;
use crate::reader::{Event, Reader};
use crate::tag;
use crate::wire::{self, EAS_HEADER, END, HAS_CONTENT, OPAQUE, STR_I, SWITCH_PAGE};

/// Builds one EAS WBXML document in a `Vec<u8>` (turn it into `bytes::Bytes` with `From`).
#[derive(Debug, Clone)]
pub struct Writer {
    pub(crate) buf: Vec<u8>,
    /// Code page a decoder is on after the bytes written so far.
    pub(crate) page: u8,
    /// Open elements with content.
    pub(crate) depth: usize,
    pub(crate) root_done: bool,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// A writer that has written the EAS header `03 01 6A 00`.
    pub fn new() -> Self {
        Self::with_buffer(Vec::new())
    }

    /// Same, reusing `buf`'s allocation (its content is cleared).
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&EAS_HEADER);
        Writer {
            buf,
            page: 0,
            depth: 0,
            root_done: false,
        }
    }

    /// Writer whose output starts with `header` verbatim (a rewrite keeps the input's header).
    pub(crate) fn with_raw_header(header: &[u8], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(header.len()));
        buf.extend_from_slice(header);
        Writer {
            buf,
            page: 0,
            depth: 0,
            root_done: false,
        }
    }

    /// Code page a decoder is on after what has been written.
    pub fn page(&self) -> u8 {
        self.page
    }

    /// Number of open elements.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn invalid(&self, what: &'static str) -> Error {
        Error::InvalidWrite {
            offset: self.buf.len(),
            what,
        }
    }

    /// Start tag; with `has_content` an [`Writer::end`] must follow its content.
    pub fn start(&mut self, page: u8, token: u8, has_content: bool) -> Result<(), Error> {
        if tag::lookup(page, token).is_none() {
            return Err(Error::UnknownTag {
                offset: self.buf.len(),
                page,
                token,
            });
        }
        if self.depth == 0 && self.root_done {
            return Err(self.invalid("second root element"));
        }
        if page != self.page {
            self.buf.extend_from_slice(&[SWITCH_PAGE, page]);
            self.page = page;
        }
        if has_content {
            self.buf.push(token | HAS_CONTENT);
            self.depth += 1;
        } else {
            self.buf.push(token);
            if self.depth == 0 {
                self.root_done = true;
            }
        }
        Ok(())
    }

    /// END of the innermost open element.
    pub fn end(&mut self) -> Result<(), Error> {
        if self.depth == 0 {
            return Err(self.invalid("END without open element"));
        }
        self.buf.push(END);
        self.depth -= 1;
        if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    /// Inline string (STR_I); must not contain NUL.
    pub fn text(&mut self, text: &[u8]) -> Result<(), Error> {
        if self.depth == 0 {
            return Err(self.invalid("text outside an element"));
        }
        if memchr::memchr(0, text).is_some() {
            return Err(self.invalid("NUL inside an inline string"));
        }
        self.buf.reserve(text.len() + 2);
        self.buf.push(STR_I);
        self.buf.extend_from_slice(text);
        self.buf.push(0);
        Ok(())
    }

    /// OPAQUE data.
    pub fn opaque(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.depth == 0 {
            return Err(self.invalid("opaque data outside an element"));
        }
        let Ok(len) = u32::try_from(data.len()) else {
            return Err(self.invalid("opaque data over 4 GiB"));
        };
        self.buf.reserve(data.len() + 6);
        self.buf.push(OPAQUE);
        wire::write_mb_u32(&mut self.buf, len);
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// `<page:token>text</page:token>`, the most common EAS leaf.
    pub fn text_element(&mut self, page: u8, token: u8, text: &str) -> Result<(), Error> {
        self.start(page, token, true)?;
        self.text(text.as_bytes())?;
        self.end()
    }

    /// Writes one event (END closes the innermost element whatever tag the event names).
    pub fn write_event(&mut self, event: &Event<'_>) -> Result<(), Error> {
        match *event {
            Event::Start {
                page,
                token,
                has_content,
            } => self.start(page, token, has_content),
            Event::Text(t) => self.text(t),
            Event::Opaque(o) => self.opaque(o),
            Event::End { .. } => self.end(),
        }
    }

    /// SWITCH_PAGE even if redundant (normally `start` switches by itself).
    pub fn switch_page(&mut self, page: u8) -> Result<(), Error> {
        if !tag::page_known(page) {
            return Err(Error::UnknownPage {
                offset: self.buf.len(),
                page,
            });
        }
        self.buf.extend_from_slice(&[SWITCH_PAGE, page]);
        self.page = page;
        Ok(())
    }

    /// Copies the bytes of the event `reader` just returned verbatim (with its SWITCH_PAGE
    /// tokens), adding a SWITCH_PAGE first if the writer is on another page than the tag needs.
    pub fn copy_event(&mut self, reader: &Reader<'_>, event: &Event<'_>) -> Result<(), Error> {
        let span = reader.span();
        let raw = reader.input().get(span.clone()).unwrap_or_default();
        let switched = reader.token_offset() > span.start;
        match *event {
            Event::Start {
                page, has_content, ..
            } => {
                if self.depth == 0 && self.root_done {
                    return Err(self.invalid("second root element"));
                }
                if !switched && page != self.page {
                    self.buf.extend_from_slice(&[SWITCH_PAGE, page]);
                }
                if has_content {
                    self.depth += 1;
                } else if self.depth == 0 {
                    self.root_done = true;
                }
            }
            Event::End { .. } => {
                if self.depth == 0 {
                    return Err(self.invalid("END without open element"));
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.root_done = true;
                }
            }
            Event::Text(_) | Event::Opaque(_) => {
                if self.depth == 0 {
                    return Err(self.invalid("content outside an element"));
                }
            }
        }
        self.buf.extend_from_slice(raw);
        if switched || matches!(event, Event::Start { .. }) {
            self.page = reader.page();
        }
        Ok(())
    }

    /// The document; fails unless exactly one root element was written and closed.
    pub fn finish(self) -> Result<Vec<u8>, Error> {
        if self.depth != 0 {
            return Err(self.invalid("elements still open"));
        }
        if !self.root_done {
            return Err(self.invalid("no root element"));
        }
        Ok(self.buf)
    }

    /// The bytes written, unchecked.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_pages_only_when_needed() {
        let mut w = Writer::new();
        w.start(13, 0x05, true).unwrap();
        w.text_element(13, 0x08, "480").unwrap();
        w.start(13, 0x09, false).unwrap();
        w.end().unwrap();
        assert_eq!(
            w.finish().unwrap(),
            [
                0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D, 0x45, 0x48, 0x03, b'4', b'8', b'0', 0x00, 0x01,
                0x09, 0x01
            ]
        );
    }

    #[test]
    fn refuses_invalid_documents() {
        let mut w = Writer::new();
        assert!(w.text(b"x").is_err());
        assert!(w.end().is_err());
        assert!(matches!(
            w.start(13, 0x3F, true),
            Err(Error::UnknownTag { .. })
        ));
        w.start(13, 0x05, true).unwrap();
        assert!(w.text(b"a\0b").is_err());
        assert!(w.clone().finish().is_err());
        w.end().unwrap();
        assert!(w.start(13, 0x05, false).is_err());
        assert!(Writer::new().finish().is_err());
    }
}
