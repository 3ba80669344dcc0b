//! Zero-copy pull reader: events borrow from the input, nothing is allocated per token.
//!
//! Every byte after the header belongs to exactly one event's [`Reader::span`] (SWITCH_PAGE
//! tokens belong to the event they precede), so a rewriter can copy untouched events verbatim.

use std::ops::Range;

use crate::tag::{self, Tag};
use crate::wire::{self, END, HAS_ATTRIBUTES, HAS_CONTENT, OPAQUE, STR_I, SWITCH_PAGE, TOKEN_MASK};
use crate::{Error, Limits};

/// One WBXML event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A start tag; `has_content` means an [`Event::End`] follows its content.
    Start {
        page: u8,
        token: u8,
        has_content: bool,
    },
    /// STR_I content (without the terminating NUL); EAS sends UTF-8, see [`Event::text_str`].
    Text(&'a [u8]),
    /// OPAQUE content.
    Opaque(&'a [u8]),
    /// END of the element with content that is closed here.
    End { page: u8, token: u8 },
}

impl<'a> Event<'a> {
    /// The text of a `Text` event, if it is valid UTF-8.
    pub fn text_str(&self) -> Option<&'a str> {
        match self {
            Event::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The tag of a `Start` or `End` event.
    pub fn tag(&self) -> Option<Tag> {
        match *self {
            Event::Start { page, token, .. } | Event::End { page, token } => {
                Some(Tag { page, token })
            }
            _ => None,
        }
    }
}

/// The parsed WBXML header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Version byte (0x01..=0x03).
    pub version: u8,
    /// Public id (always 1 here).
    pub public_id: u32,
    /// Charset MIBenum (always 106 here).
    pub charset: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeRoot,
    InRoot,
    Done,
}

/// Pull reader over one EAS WBXML document.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    header: Header,
    body_start: usize,
    pos: usize,
    page: u8,
    /// Defined tokens of `page` (see `tag::page_mask`).
    page_mask: u64,
    state: State,
    /// Open elements with content; capacity reserved up front.
    stack: Vec<Tag>,
    max_depth: usize,
    max_string: usize,
    span_start: usize,
    token_start: usize,
    page_before: u8,
}

impl<'a> Reader<'a> {
    /// Reader with [`Limits::default`]; parses and checks the header.
    pub fn new(input: &'a [u8]) -> Result<Self, Error> {
        Self::with_limits(input, &Limits::default())
    }

    /// Reader with explicit limits; parses and checks the header.
    pub fn with_limits(input: &'a [u8], limits: &Limits) -> Result<Self, Error> {
        if input.len() > limits.max_document_bytes {
            return Err(Error::DocumentTooLarge {
                len: input.len(),
                max: limits.max_document_bytes,
            });
        }
        let Some(&version) = input.first() else {
            return Err(Error::Truncated {
                offset: 0,
                what: "empty input, no WBXML header",
            });
        };
        if !(0x01..=0x03).contains(&version) {
            return Err(Error::Version { offset: 0, version });
        }
        let (public_id, pos) = wire::read_mb_u32(input, 1)?;
        if public_id != 1 {
            return Err(Error::PublicId {
                offset: 1,
                id: public_id,
            });
        }
        let charset_at = pos;
        let (charset, pos) = wire::read_mb_u32(input, pos)?;
        if charset != 106 {
            return Err(Error::Charset {
                offset: charset_at,
                charset,
            });
        }
        let strtbl_at = pos;
        let (strtbl, pos) = wire::read_mb_u32(input, pos)?;
        if strtbl != 0 {
            return Err(Error::StringTable {
                offset: strtbl_at,
                len: strtbl,
            });
        }
        let max_depth = limits.effective_max_depth();
        Ok(Reader {
            input,
            header: Header {
                version,
                public_id,
                charset,
            },
            body_start: pos,
            pos,
            page: 0,
            page_mask: tag::page_mask(0),
            state: State::BeforeRoot,
            stack: Vec::with_capacity(max_depth.min(256)),
            max_depth,
            max_string: limits.max_string_bytes,
            span_start: pos,
            token_start: pos,
            page_before: 0,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Offset of the first body byte (after the header).
    pub fn body_start(&self) -> usize {
        self.body_start
    }

    /// Bytes of the last event, including SWITCH_PAGE tokens right before it.
    pub fn span(&self) -> Range<usize> {
        self.span_start..self.pos
    }

    /// Offset of the last event's own token (after any SWITCH_PAGE).
    pub fn token_offset(&self) -> usize {
        self.token_start
    }

    /// Code page state after the last event.
    pub fn page(&self) -> u8 {
        self.page
    }

    /// Code page state before the last event's span.
    pub fn page_before(&self) -> u8 {
        self.page_before
    }

    /// Open elements, outermost first (a `Start` with content is already on it).
    pub fn open_tags(&self) -> &[Tag] {
        &self.stack
    }

    /// Number of open elements.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// True once the root element is closed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next event, `Ok(None)` at the end of a complete document.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<Event<'a>>, Error> {
        let input = self.input;
        self.span_start = self.pos;
        self.page_before = self.page;
        let mut pos = self.pos;
        while input.get(pos) == Some(&SWITCH_PAGE) {
            let Some(&page) = input.get(pos + 1) else {
                return Err(Error::Truncated {
                    offset: pos,
                    what: "SWITCH_PAGE without page",
                });
            };
            if !tag::page_known(page) {
                return Err(Error::UnknownPage { offset: pos, page });
            }
            self.page = page;
            self.page_mask = tag::page_mask(page);
            pos += 2;
        }
        self.token_start = pos;
        let Some(&b) = input.get(pos) else {
            return match self.state {
                State::Done if pos == self.span_start => Ok(None),
                State::Done => Err(Error::Structure {
                    offset: self.span_start,
                    what: "SWITCH_PAGE after the root element",
                }),
                State::BeforeRoot => Err(Error::Truncated {
                    offset: pos,
                    what: "no root element",
                }),
                State::InRoot => Err(Error::Truncated {
                    offset: pos,
                    what: "element not closed",
                }),
            };
        };
        if self.state == State::Done {
            return Err(Error::Structure {
                offset: self.span_start,
                what: "data after the root element",
            });
        }
        let event = match b {
            END => {
                let Some(t) = self.stack.pop() else {
                    return Err(Error::Structure {
                        offset: pos,
                        what: "END before the root element",
                    });
                };
                if self.stack.is_empty() {
                    self.state = State::Done;
                }
                pos += 1;
                Event::End {
                    page: t.page,
                    token: t.token,
                }
            }
            STR_I => {
                self.require_open(pos)?;
                let start = pos + 1;
                let rest = input.get(start..).unwrap_or_default();
                let Some(len) = memchr::memchr(0, rest) else {
                    return Err(Error::Truncated {
                        offset: pos,
                        what: "inline string without NUL",
                    });
                };
                if len > self.max_string {
                    return Err(Error::StringTooLong {
                        offset: pos,
                        len,
                        max: self.max_string,
                    });
                }
                pos = start + len + 1;
                Event::Text(rest.get(..len).unwrap_or_default())
            }
            OPAQUE => {
                self.require_open(pos)?;
                let (len, start) = wire::read_mb_u32(input, pos + 1)?;
                let len = len as usize;
                if len > self.max_string {
                    return Err(Error::StringTooLong {
                        offset: pos,
                        len,
                        max: self.max_string,
                    });
                }
                let Some(data) = input.get(start..start + len) else {
                    return Err(Error::Truncated {
                        offset: pos,
                        what: "opaque data shorter than its length",
                    });
                };
                pos = start + len;
                Event::Opaque(data)
            }
            _ => {
                let token = b & TOKEN_MASK;
                if token < 0x05 {
                    let name = wire::unsupported_token_name(b).unwrap_or("reserved");
                    return Err(Error::UnsupportedToken {
                        offset: pos,
                        token: b,
                        name,
                    });
                }
                if b & HAS_ATTRIBUTES != 0 {
                    return Err(Error::Attributes {
                        offset: pos,
                        tag: b,
                    });
                }
                if (self.page_mask >> token) & 1 == 0 {
                    return Err(Error::UnknownTag {
                        offset: pos,
                        page: self.page,
                        token,
                    });
                }
                if self.stack.len() >= self.max_depth {
                    return Err(Error::TooDeep {
                        offset: pos,
                        max: self.max_depth,
                    });
                }
                let has_content = b & HAS_CONTENT != 0;
                if has_content {
                    self.stack.push(Tag {
                        page: self.page,
                        token,
                    });
                    self.state = State::InRoot;
                } else if self.stack.is_empty() {
                    self.state = State::Done;
                }
                pos += 1;
                Event::Start {
                    page: self.page,
                    token,
                    has_content,
                }
            }
        };
        self.pos = pos;
        Ok(Some(event))
    }

    #[inline]
    fn require_open(&self, pos: usize) -> Result<(), Error> {
        if self.stack.is_empty() {
            return Err(Error::Structure {
                offset: pos,
                what: "content outside the root element",
            });
        }
        Ok(())
    }

    /// Skips the rest of the element whose `Start` (with content) was just read.
    pub fn skip_element(&mut self) -> Result<(), Error> {
        let target = self.depth().saturating_sub(1);
        while self.depth() > target {
            if self.next_event()?.is_none() {
                return Err(Error::Truncated {
                    offset: self.pos,
                    what: "element not closed",
                });
            }
        }
        Ok(())
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Event<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x03, 0x01, 0x6A, 0x00, 0x00, 0x0D];
        v.extend_from_slice(body);
        v
    }

    fn all(input: &[u8]) -> Result<Vec<Event<'_>>, Error> {
        Reader::new(input)?.collect()
    }

    #[test]
    fn reads_ping_with_spans() {
        let doc = ping(&[0x45, 0x48, 0x03, b'4', b'8', b'0', 0x00, 0x01, 0x01]);
        let mut r = Reader::new(&doc).unwrap();
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::Start {
                page: 13,
                token: 5,
                has_content: true
            })
        );
        assert_eq!(r.span(), 4..7);
        assert_eq!(r.token_offset(), 6);
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::Start {
                page: 13,
                token: 8,
                has_content: true
            })
        );
        assert_eq!(r.next_event().unwrap(), Some(Event::Text(b"480")));
        assert_eq!(r.span(), 8..13);
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::End { page: 13, token: 8 })
        );
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::End { page: 13, token: 5 })
        );
        assert_eq!(r.next_event().unwrap(), None);
        assert!(r.is_done());
    }

    #[test]
    fn rejects_what_eas_never_uses_with_offsets() {
        let e = |body: &[u8]| all(&ping(body)).unwrap_err();
        assert_eq!(
            e(&[0x45, 0x83, 0x00, 0x01]),
            Error::UnsupportedToken {
                offset: 7,
                token: 0x83,
                name: "STR_T"
            }
        );
        assert_eq!(
            e(&[0x45, 0x02, 0x01]),
            Error::UnsupportedToken {
                offset: 7,
                token: 0x02,
                name: "ENTITY"
            }
        );
        assert_eq!(
            e(&[0x45, 0x43, 0x01]),
            Error::UnsupportedToken {
                offset: 7,
                token: 0x43,
                name: "PI"
            }
        );
        assert_eq!(
            e(&[0xC5, 0x01, 0x01]),
            Error::Attributes {
                offset: 6,
                tag: 0xC5
            }
        );
        assert_eq!(
            e(&[0x45, 0x7F, 0x01]),
            Error::UnknownTag {
                offset: 7,
                page: 13,
                token: 0x3F
            }
        );
        assert_eq!(
            e(&[0x45, 0x00, 0xF0, 0x01]),
            Error::UnknownPage {
                offset: 7,
                page: 0xF0
            }
        );
        assert_eq!(
            e(&[0x45, 0x03, b'x']),
            Error::Truncated {
                offset: 7,
                what: "inline string without NUL"
            }
        );
        assert_eq!(
            e(&[0x45, 0xC3, 0x05, b'x', 0x01]),
            Error::Truncated {
                offset: 7,
                what: "opaque data shorter than its length"
            }
        );
        assert_eq!(
            e(&[0x45]),
            Error::Truncated {
                offset: 7,
                what: "element not closed"
            }
        );
        assert_eq!(
            e(&[0x05, 0x05]),
            Error::Structure {
                offset: 7,
                what: "data after the root element"
            }
        );
        assert_eq!(
            e(&[0x03, b'x', 0x00]),
            Error::Structure {
                offset: 6,
                what: "content outside the root element"
            }
        );
        assert_eq!(
            all(&[0x03, 0x01, 0x6A, 0x01, b'x']).unwrap_err(),
            Error::StringTable { offset: 3, len: 1 }
        );
        assert_eq!(
            all(&[0x03, 0x00, 0x00]).unwrap_err(),
            Error::PublicId { offset: 1, id: 0 }
        );
        assert_eq!(
            all(&[0x03, 0x01, 0x04, 0x00]).unwrap_err(),
            Error::Charset {
                offset: 2,
                charset: 4
            }
        );
        assert_eq!(
            all(&[0x00]).unwrap_err(),
            Error::Version {
                offset: 0,
                version: 0
            }
        );
        assert!(matches!(
            all(&[]).unwrap_err(),
            Error::Truncated { offset: 0, .. }
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_depth: 2,
            max_string_bytes: 3,
            max_document_bytes: 20,
            ..Limits::default()
        };
        let ok = ping(&[0x45, 0x49, 0x4A, 0x01, 0x01, 0x01]);
        let err = Reader::with_limits(&ok, &limits)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err, Error::TooDeep { offset: 8, max: 2 });
        let long = ping(&[0x45, 0x03, b'a', b'b', b'c', b'd', 0x00, 0x01]);
        let err = Reader::with_limits(&long, &limits)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(
            err,
            Error::StringTooLong {
                offset: 7,
                len: 4,
                max: 3
            }
        );
        assert_eq!(
            Reader::with_limits(&[0; 21], &limits).unwrap_err(),
            Error::DocumentTooLarge { len: 21, max: 20 }
        );
    }
}
