//! XML bridge in the exact shape of libwbxml2's `wbxml2xml -l ACTIVESYNC -m 1`, and an encoder
//! that accepts that shape (and hand-written EAS XML) like `xml2wbxml -a -n` does.
//!
//! What libwbxml 0.11.8 prints (checked byte for byte against the tool, see tests/libwbxml.rs):
//! - `<?xml version="1.0"?>`, the ActiveSync DOCTYPE, then one element per line, no indent;
//! - `xmlns="Ns:"` on the root and on every element whose page differs from its parent's;
//! - adjacent STR_I/OPAQUE content is merged, empty content disappears, leading and trailing
//!   C-`isspace` bytes are trimmed, `& < > " '` become entities (CR, LF, TAB stay raw);
//! - whitespace-only content beside child elements disappears; other mixed content is printed
//!   inline and followed by a newline before the parent's end tag;
//! - content of tags the tables mark opaque is printed as base64 of the raw bytes (untrimmed),
//!   OPAQUE content of other tags as text; an element without content prints as `<X/>`.
//!
//! Encoding follows xml2wbxml: line ends are normalised (CR LF -> LF), text is trimmed (so leading/trailing whitespace does not survive
//! a WBXML -> XML -> WBXML trip), opaque-marked tags get OPAQUE with the base64-decoded bytes,
//! CDATA sections become OPAQUE, empty elements get no content bit. Unlike libwbxml, a tag that
//! is not in the namespace in scope is an error (libwbxml searches every page).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use quick_xml::NsReader;
use quick_xml::events::{BytesRef, Event as XmlEvent};
use quick_xml::name::ResolveResult;

use crate::codepage::{self, TagDef};
use crate::tree::{Element, Node};
use crate::{Error, Limits};

/// First two lines of every document, as wbxml2xml prints them.
pub const XML_PROLOG: &str = "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">\n";

/// WBXML -> XML with [`Limits::default`].
pub fn to_xml(wbxml: &[u8]) -> Result<String, Error> {
    to_xml_with_limits(wbxml, &Limits::default())
}

/// WBXML -> XML.
pub fn to_xml_with_limits(wbxml: &[u8], limits: &Limits) -> Result<String, Error> {
    let root = Element::parse_with_limits(wbxml, limits)?;
    element_to_xml(&root)
}

/// XML -> WBXML with [`Limits::default`].
pub fn from_xml(xml: &str) -> Result<Vec<u8>, Error> {
    from_xml_with_limits(xml, &Limits::default())
}

/// XML -> WBXML.
pub fn from_xml_with_limits(xml: &str, limits: &Limits) -> Result<Vec<u8>, Error> {
    parse_xml_with_limits(xml, limits)?.encode()
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn trim_c_space(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_c_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !is_c_space(c))
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

fn escape_into(out: &mut String, text: &str) {
    let mut last = 0;
    for (i, c) in text.char_indices() {
        let rep = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            _ => continue,
        };
        out.push_str(text.get(last..i).unwrap_or_default());
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(text.get(last..).unwrap_or_default());
}

enum Item<'t> {
    Child(&'t Element),
    Run(Cow<'t, [u8]>),
}

/// Children as libwbxml prints them: runs of merged content, empty runs gone, whitespace-only
/// runs gone when there are child elements.
fn plan(el: &Element) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = Vec::with_capacity(el.children.len());
    for child in &el.children {
        let bytes: &[u8] = match child {
            Node::Element(e) => {
                items.push(Item::Child(e));
                continue;
            }
            Node::Text(t) => t.as_bytes(),
            Node::Opaque(o) => o,
        };
        if let Some(Item::Run(run)) = items.last_mut() {
            run.to_mut().extend_from_slice(bytes);
        } else {
            items.push(Item::Run(Cow::Borrowed(bytes)));
        }
    }
    let has_child = items.iter().any(|i| matches!(i, Item::Child(_)));
    items.retain(|i| match i {
        Item::Child(_) => true,
        Item::Run(r) => !(r.is_empty() || has_child && trim_c_space(r).is_empty()),
    });
    items
}

fn def_of(el: &Element) -> Result<(&'static TagDef, &'static str), Error> {
    let page = codepage::page(el.page).ok_or(Error::UnknownPage {
        offset: 0,
        page: el.page,
    })?;
    let def = page.tag(el.token).ok_or(Error::UnknownTag {
        offset: 0,
        page: el.page,
        token: el.token,
    })?;
    Ok((def, page.xml_namespace()))
}

fn push_run(out: &mut String, def: &TagDef, run: &[u8]) -> Result<(), Error> {
    if def.opaque {
        STANDARD.encode_string(run, out);
        return Ok(());
    }
    let text = std::str::from_utf8(trim_c_space(run)).map_err(|e| Error::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    escape_into(out, text);
    Ok(())
}

/// An owned tree -> XML, as wbxml2xml prints it.
pub fn element_to_xml(root: &Element) -> Result<String, Error> {
    let mut out = String::with_capacity(256);
    out.push_str(XML_PROLOG);
    // (element, its printing plan, next item, ends with a run)
    let mut stack: Vec<(&Element, Vec<Item<'_>>, usize)> = Vec::new();
    let mut next: Option<(&Element, Option<u8>)> = Some((root, None));
    loop {
        if let Some((el, parent_page)) = next.take() {
            let (def, ns) = def_of(el)?;
            out.push('<');
            out.push_str(def.xml_name);
            if parent_page != Some(el.page) {
                out.push_str(" xmlns=\"");
                out.push_str(ns);
                out.push_str(":\"");
            }
            let items = plan(el);
            if items.is_empty() {
                out.push_str("/>\n");
            } else if items.iter().all(|i| matches!(i, Item::Run(_))) {
                out.push('>');
                for item in &items {
                    if let Item::Run(r) = item {
                        push_run(&mut out, def, r)?;
                    }
                }
                out.push_str("</");
                out.push_str(def.xml_name);
                out.push_str(">\n");
            } else {
                out.push_str(">\n");
                stack.push((el, items, 0));
            }
        }
        let Some((el, items, i)) = stack.last_mut() else {
            break;
        };
        let el: &Element = el;
        match items.get(*i) {
            Some(Item::Child(c)) => {
                *i += 1;
                next = Some((c, Some(el.page)));
            }
            Some(Item::Run(r)) => {
                *i += 1;
                let (def, _) = def_of(el)?;
                push_run(&mut out, def, r)?;
            }
            None => {
                let (def, _) = def_of(el)?;
                if matches!(items.last(), Some(Item::Run(_))) {
                    out.push('\n');
                }
                out.push_str("</");
                out.push_str(def.xml_name);
                out.push_str(">\n");
                stack.pop();
            }
        }
    }
    Ok(out)
}

/// XML -> owned tree with [`Limits::default`].
pub fn parse_xml(xml: &str) -> Result<Element, Error> {
    parse_xml_with_limits(xml, &Limits::default())
}

fn xml_err(offset: u64, message: impl Into<String>) -> Error {
    Error::Xml {
        offset,
        message: message.into(),
    }
}

/// Open element during XML parsing, with its pending text run.
struct Open {
    el: Element,
    def: &'static TagDef,
    run: String,
}

fn lookup_xml(
    ns: &ResolveResult<'_>,
    name: &str,
    offset: u64,
) -> Result<(u8, &'static TagDef), Error> {
    match ns {
        ResolveResult::Bound(ns) => {
            let uri: &str = ns.as_ref();
            let ns_name = uri.strip_suffix(':').unwrap_or(uri);
            let page = codepage::page_by_namespace(ns_name)
                .ok_or_else(|| xml_err(offset, format!("unknown namespace {uri:?}")))?;
            let def = page
                .tag_by_xml_name(name)
                .ok_or_else(|| xml_err(offset, format!("no tag {name:?} in namespace {uri:?}")))?;
            Ok((page.number, def))
        }
        ResolveResult::Unbound => (0..=u8::MAX)
            .filter_map(codepage::page)
            .find_map(|p| p.tag_by_xml_name(name).map(|d| (p.number, d)))
            .ok_or_else(|| xml_err(offset, format!("no tag {name:?} in any code page"))),
        ResolveResult::Unknown(prefix) => Err(xml_err(
            offset,
            format!("undeclared namespace prefix {prefix:?}"),
        )),
    }
}

fn base64_lenient() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Turns the pending text run of `open` into a child node, as xml2wbxml does.
fn flush_run(open: &mut Open, limits: &Limits, offset: u64) -> Result<(), Error> {
    if open.run.is_empty() {
        return Ok(());
    }
    let run = std::mem::take(&mut open.run);
    let trimmed = run.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    if trimmed.is_empty() {
        return Ok(());
    }
    if open.def.opaque {
        let compact: Vec<u8> = trimmed
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let data = base64_lenient().decode(&compact).map_err(|e| {
            xml_err(
                offset,
                format!("content of {} is not base64: {e}", open.def.xml_name),
            )
        })?;
        if data.len() > limits.max_string_bytes {
            return Err(Error::StringTooLong {
                offset: offset as usize,
                len: data.len(),
                max: limits.max_string_bytes,
            });
        }
        open.el.children.push(Node::Opaque(data));
    } else {
        if trimmed.len() > limits.max_string_bytes {
            return Err(Error::StringTooLong {
                offset: offset as usize,
                len: trimmed.len(),
                max: limits.max_string_bytes,
            });
        }
        open.el.children.push(Node::Text(trimmed.to_owned()));
    }
    Ok(())
}

/// XML (libwbxml's shape or hand-written EAS XML) -> owned tree.
pub fn parse_xml_with_limits(xml: &str, limits: &Limits) -> Result<Element, Error> {
    let max_xml = limits.max_document_bytes.saturating_mul(2);
    if xml.len() > max_xml {
        return Err(Error::DocumentTooLarge {
            len: xml.len(),
            max: max_xml,
        });
    }
    let max_depth = limits.effective_max_depth();
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Element> = None;
    let mut nodes = 0usize;
    // quick-xml reports a text run as Text pieces split at each entity or character reference
    // (GeneralRef); a run between two pieces of markup counts as one node, as it did when the
    // parser gave it as one event.
    let mut in_text = false;
    loop {
        let offset = reader.buffer_position();
        let (ns, event) = match reader.read_resolved_event() {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                return Err(xml_err(reader.error_position(), message));
            }
        };
        let text_piece = matches!(event, XmlEvent::Text(_) | XmlEvent::GeneralRef(_));
        let new_run = text_piece && !in_text;
        in_text = text_piece;
        match event {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                if root.is_some() {
                    return Err(xml_err(offset, "second root element"));
                }
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| xml_err(offset, e.to_string()))?;
                    if attr.key.as_namespace_binding().is_none() {
                        return Err(xml_err(
                            offset,
                            "attributes other than xmlns are not allowed in EAS XML",
                        ));
                    }
                }
                nodes += 1;
                if nodes > limits.max_tree_nodes {
                    return Err(Error::TooManyNodes {
                        offset: offset as usize,
                        max: limits.max_tree_nodes,
                    });
                }
                let (page, def) = lookup_xml(&ns, e.local_name().as_ref(), offset)?;
                if let Some(parent) = stack.last_mut() {
                    flush_run(parent, limits, offset)?;
                }
                let el = Element::new(page, def.token);
                if matches!(event, XmlEvent::Start(_)) {
                    if stack.len() >= max_depth {
                        return Err(Error::TooDeep {
                            offset: offset as usize,
                            max: max_depth,
                        });
                    }
                    stack.push(Open {
                        el,
                        def,
                        run: String::new(),
                    });
                } else {
                    attach(&mut stack, &mut root, el);
                }
            }
            XmlEvent::End(_) => {
                let Some(mut open) = stack.pop() else {
                    return Err(xml_err(offset, "end tag without start tag"));
                };
                flush_run(&mut open, limits, offset)?;
                attach(&mut stack, &mut root, open.el);
            }
            XmlEvent::Text(t) => {
                // Line ends normalised (CR LF and lone CR -> LF, XML 1.0 2.11; expat under
                // xml2wbxml does it too); references come apart, so `&#13;` survives.
                text_run(
                    &mut stack,
                    &t.xml10_content(),
                    new_run,
                    &mut nodes,
                    limits,
                    offset,
                )?;
            }
            XmlEvent::GeneralRef(r) => {
                let text = resolve_reference(&r).map_err(|message| xml_err(offset, message))?;
                text_run(&mut stack, &text, new_run, &mut nodes, limits, offset)?;
            }
            XmlEvent::CData(c) => {
                let Some(open) = stack.last_mut() else {
                    return Err(xml_err(offset, "CDATA outside the root element"));
                };
                flush_run(open, limits, offset)?;
                let data = c.into_inner();
                if data.len() > limits.max_string_bytes {
                    return Err(Error::StringTooLong {
                        offset: offset as usize,
                        len: data.len(),
                        max: limits.max_string_bytes,
                    });
                }
                nodes += 1;
                open.el
                    .children
                    .push(Node::Opaque(data.into_owned().into_bytes()));
            }
            XmlEvent::Decl(_) | XmlEvent::DocType(_) | XmlEvent::Comment(_) | XmlEvent::PI(_) => {}
            XmlEvent::Eof => break,
        }
        if nodes > limits.max_tree_nodes {
            return Err(Error::TooManyNodes {
                offset: offset as usize,
                max: limits.max_tree_nodes,
            });
        }
    }
    if !stack.is_empty() {
        return Err(xml_err(reader.buffer_position(), "element not closed"));
    }
    root.ok_or_else(|| xml_err(reader.buffer_position(), "no root element"))
}

/// Appends a piece of text (a Text event or a resolved reference) to the open element's run.
fn text_run(
    stack: &mut [Open],
    text: &str,
    new_run: bool,
    nodes: &mut usize,
    limits: &Limits,
    offset: u64,
) -> Result<(), Error> {
    match stack.last_mut() {
        Some(open) => {
            if open.run.len() + text.len() > limits.max_string_bytes.saturating_mul(2) {
                return Err(Error::StringTooLong {
                    offset: offset as usize,
                    len: open.run.len() + text.len(),
                    max: limits.max_string_bytes,
                });
            }
            if new_run {
                *nodes += 1;
            }
            open.run.push_str(text);
            Ok(())
        }
        None if text.bytes().all(|b| b.is_ascii_whitespace()) => Ok(()),
        None => Err(xml_err(offset, "text outside the root element")),
    }
}

/// `&name;` or `&#n;` -> its text: the five predefined XML entities and character references
/// (no DTD, so no other entity exists).
fn resolve_reference(r: &BytesRef<'_>) -> Result<Cow<'static, str>, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(Cow::Owned(c.to_string()));
    }
    let name: &str = r;
    quick_xml::escape::resolve_predefined_entity(name)
        .map(Cow::Borrowed)
        .ok_or_else(|| format!("unrecognized entity `{name}`"))
}

fn attach(stack: &mut [Open], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.el.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

impl Element {
    /// XML in the shape of `wbxml2xml -l ACTIVESYNC -m 1`.
    pub fn to_xml(&self) -> Result<String, Error> {
        element_to_xml(self)
    }

    /// Tree from XML (see [`parse_xml_with_limits`]).
    pub fn from_xml(xml: &str) -> Result<Element, Error> {
        parse_xml(xml)
    }
}
