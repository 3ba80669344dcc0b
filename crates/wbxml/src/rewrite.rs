//! Rewriting: read events, keep, drop or replace subtrees. Kept events are copied as raw
//! input bytes (so untouched parts come out byte-identical, redundant SWITCH_PAGEs included);
//! only around an edit are SWITCH_PAGE tokens added or left out, as libwbxml would encode it.

use std::ops::Range;

use crate::reader::{Event, Reader};
use crate::tag::Tag;
use crate::tree::Element;
use crate::writer::Writer;
use crate::{Error, Limits};

/// What [`rewrite`] does with an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep the start tag and go on deciding for its children.
    Keep,
    /// Leave out the whole element.
    Drop,
    /// Put this element in place of the whole element.
    Replace(Element),
}

/// Rewrites `input`, asking `decide(tag, ancestors)` at every start tag
/// (`ancestors` = open elements around it, outermost first).
pub fn rewrite<F>(input: &[u8], limits: &Limits, mut decide: F) -> Result<Vec<u8>, Error>
where
    F: FnMut(Tag, &[Tag]) -> Action,
{
    let mut rw = Rewriter::new(input, limits)?;
    while let Some(event) = rw.next_event()? {
        if let Event::Start { page, token, .. } = event {
            match decide(Tag { page, token }, rw.ancestors()) {
                Action::Keep => {}
                Action::Drop => rw.drop_subtree()?,
                Action::Replace(el) => rw.replace_subtree(|w| el.write_to(w))?,
            }
        }
    }
    rw.finish()
}

#[derive(Debug, Clone)]
struct Current<'a> {
    event: Event<'a>,
    span: Range<usize>,
    token_start: usize,
    page_before: u8,
    page_after: u8,
    /// Open elements before this event.
    depth_before: usize,
}

/// Pull-style rewriter: call [`Rewriter::next_event`]; each event is kept unless you call
/// [`Rewriter::drop_subtree`] or [`Rewriter::replace_subtree`] before the next call.
#[derive(Debug)]
pub struct Rewriter<'a> {
    reader: Reader<'a>,
    writer: Writer,
    /// Input bytes to copy verbatim, not yet appended.
    pending: Option<Range<usize>>,
    /// Code page of the output once `pending` is appended.
    out_page: u8,
    current: Option<Current<'a>>,
    /// Output index of the tag byte of the last kept start tag with content, while nothing
    /// but dropped subtrees followed it: if its END comes next, the element lost all its
    /// content and is written without the content bit, as libwbxml encodes `<X></X>`.
    emptied: Option<(usize, bool)>,
}

impl<'a> Rewriter<'a> {
    /// Rewriter over `input`; the output keeps the input's header bytes.
    pub fn new(input: &'a [u8], limits: &Limits) -> Result<Self, Error> {
        let reader = Reader::with_limits(input, limits)?;
        let header = input.get(..reader.body_start()).unwrap_or_default();
        let writer = Writer::with_raw_header(header, input.len());
        Ok(Rewriter {
            reader,
            writer,
            pending: None,
            out_page: 0,
            current: None,
            emptied: None,
        })
    }

    /// The next event; the previous one is kept unless it was dropped or replaced.
    pub fn next_event(&mut self) -> Result<Option<Event<'a>>, Error> {
        if let Some(cur) = self.current.take() {
            self.commit(&cur);
        }
        let depth_before = self.reader.depth();
        let Some(event) = self.reader.next_event()? else {
            return Ok(None);
        };
        self.current = Some(Current {
            event,
            span: self.reader.span(),
            token_start: self.reader.token_offset(),
            page_before: self.reader.page_before(),
            page_after: self.reader.page(),
            depth_before,
        });
        Ok(Some(event))
    }

    /// Open elements around the current event, outermost first (not the current element).
    pub fn ancestors(&self) -> &[Tag] {
        let depth = self
            .current
            .as_ref()
            .map_or(self.reader.depth(), |c| c.depth_before);
        self.reader.open_tags().get(..depth).unwrap_or_default()
    }

    /// The reader (offsets, page state).
    pub fn reader(&self) -> &Reader<'a> {
        &self.reader
    }

    /// Leaves out the element whose start tag was just returned.
    pub fn drop_subtree(&mut self) -> Result<(), Error> {
        self.take_subtree()?;
        if let Some((_, dropped)) = &mut self.emptied {
            *dropped = true;
        }
        Ok(())
    }

    /// Leaves out the element whose start tag was just returned and lets `write` put
    /// something in its place (any balanced events, also none).
    pub fn replace_subtree<F>(&mut self, write: F) -> Result<(), Error>
    where
        F: FnOnce(&mut Writer) -> Result<(), Error>,
    {
        let depth = self.take_subtree()?;
        if let Some((_, dropped)) = &mut self.emptied {
            *dropped = true;
        }
        self.write_here(depth, write)
    }

    /// Writes events in front of the event just returned (which is still kept).
    pub fn insert_before<F>(&mut self, write: F) -> Result<(), Error>
    where
        F: FnOnce(&mut Writer) -> Result<(), Error>,
    {
        let Some(depth) = self.current.as_ref().map(|c| c.depth_before) else {
            return Err(Error::InvalidRewrite {
                offset: self.reader.offset(),
                what: "no current event",
            });
        };
        self.write_here(depth, write)
    }

    /// Keeps everything not read yet and returns the document.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        while self.next_event()?.is_some() {}
        self.flush();
        if self.writer.buf.len() <= self.reader.body_start() {
            return Err(Error::InvalidRewrite {
                offset: self.reader.offset(),
                what: "the root element was dropped",
            });
        }
        Ok(self.writer.into_inner())
    }

    fn take_subtree(&mut self) -> Result<usize, Error> {
        let offset = self.reader.offset();
        let Some(cur) = self.current.take() else {
            return Err(Error::InvalidRewrite {
                offset,
                what: "no current start tag",
            });
        };
        let Event::Start { has_content, .. } = cur.event else {
            self.current = Some(cur);
            return Err(Error::InvalidRewrite {
                offset,
                what: "the current event is not a start tag",
            });
        };
        if has_content {
            self.reader.skip_element()?;
        }
        Ok(cur.depth_before)
    }

    fn write_here<F>(&mut self, depth: usize, write: F) -> Result<(), Error>
    where
        F: FnOnce(&mut Writer) -> Result<(), Error>,
    {
        self.flush();
        let before = self.writer.buf.len();
        self.writer.page = self.out_page;
        self.writer.depth = depth;
        self.writer.root_done = depth == 0 && self.writer.buf.len() > self.reader.body_start();
        write(&mut self.writer)?;
        if self.writer.depth != depth {
            return Err(Error::InvalidWrite {
                offset: self.writer.buf.len(),
                what: "replacement left elements open",
            });
        }
        self.out_page = self.writer.page;
        if self.writer.buf.len() != before {
            self.emptied = None;
        }
        Ok(())
    }

    fn commit(&mut self, cur: &Current<'a>) {
        let emptied = self.emptied.take();
        if let (Event::End { .. }, Some((at, true))) = (cur.event, emptied) {
            self.flush();
            if let Some(tag) = self.writer.buf.get_mut(at) {
                *tag &= !crate::wire::HAS_CONTENT;
            }
            return;
        }
        let switched = cur.token_start > cur.span.start;
        if switched {
            if cur.page_before != cur.page_after && self.out_page == cur.page_after {
                // The switch was needed in the input only because of something edited away.
                self.append(cur.token_start..cur.span.end);
            } else {
                self.append(cur.span.clone());
                self.out_page = cur.page_after;
            }
        } else if let Event::Start { page, .. } = cur.event
            && page != self.out_page
        {
            self.flush();
            self.writer
                .buf
                .extend_from_slice(&[crate::wire::SWITCH_PAGE, page]);
            self.out_page = page;
            self.append(cur.span.clone());
        } else {
            self.append(cur.span.clone());
        }
        if let Event::Start {
            has_content: true, ..
        } = cur.event
            && let Some(p) = &self.pending
        {
            let at = self.writer.buf.len() + (cur.token_start - p.start);
            self.emptied = Some((at, false));
        }
    }

    fn append(&mut self, range: Range<usize>) {
        match &mut self.pending {
            Some(p) if p.end == range.start => p.end = range.end,
            _ => {
                self.flush();
                self.pending = Some(range);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(p) = self.pending.take() {
            let input = self.reader.input();
            self.writer
                .buf
                .extend_from_slice(input.get(p).unwrap_or_default());
        }
    }
}
