//! Small owned tree, for code that builds a response or inspects a small request.

use crate::reader::{Event, Reader};
use crate::tag::Tag;
use crate::writer::Writer;
use crate::{Error, Limits};

/// One element: identity plus children. An element without children is encoded without
/// the content bit (as libwbxml does; `<X></X>` and `<X/>` are the same here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub page: u8,
    pub token: u8,
    pub children: Vec<Node>,
}

/// A child of an element. Adjacent `Text` nodes are kept apart (one per STR_I).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
    Opaque(Vec<u8>),
}

impl Element {
    /// Empty element `page:token` (not checked against the tables until encoded).
    pub fn new(page: u8, token: u8) -> Self {
        Element {
            page,
            token,
            children: Vec::new(),
        }
    }

    /// Empty element by spec names, e.g. `Element::named("Provision", "Status")`.
    pub fn named(namespace: &str, name: &str) -> Result<Self, Error> {
        let tag = Tag::by_name(namespace, name).ok_or_else(|| Error::UnknownName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
        Ok(Element::new(tag.page, tag.token))
    }

    /// Adds a child element (builder style).
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Adds a text child (builder style).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Adds an opaque child (builder style).
    pub fn with_opaque(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.children.push(Node::Opaque(data.into()));
        self
    }

    /// Adds `<name>text</name>` from the same code page as `self` (builder style).
    pub fn with_text_child(self, name: &str, text: impl Into<String>) -> Result<Self, Error> {
        let child = Element::named(self.tag().namespace(), name)?.with_text(text);
        Ok(self.with_child(child))
    }

    /// Page and token.
    pub fn tag(&self) -> Tag {
        Tag {
            page: self.page,
            token: self.token,
        }
    }

    /// Spec name, `"?"` if the tables do not know the tag.
    pub fn name(&self) -> &'static str {
        self.tag().name()
    }

    /// True if this is `namespace:name` (spec names).
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.tag().is(namespace, name)
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// Child elements, mutable.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// First child element with spec name `name` (any code page).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name() == name)
    }

    /// First child element with spec name `name`, mutable.
    pub fn find_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name() == name)
    }

    /// Child elements with spec name `name`.
    pub fn find_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element> + 's {
        self.elements().filter(move |e| e.name() == name)
    }

    /// Follows child names from `self`, first match at each step:
    /// `sync.find_path(&["Collections", "Collection", "SyncKey"])`.
    pub fn find_path(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.find(name))
    }

    /// Same as [`Element::find_path`], mutable.
    pub fn find_path_mut(&mut self, path: &[&str]) -> Option<&mut Element> {
        let mut el = self;
        for name in path {
            el = el.find_mut(name)?;
        }
        Some(el)
    }

    /// The first text child.
    pub fn text(&self) -> Option<&str> {
        self.children.iter().find_map(|n| match n {
            Node::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// The first opaque child.
    pub fn opaque(&self) -> Option<&[u8]> {
        self.children.iter().find_map(|n| match n {
            Node::Opaque(o) => Some(o.as_slice()),
            _ => None,
        })
    }

    /// Parses a whole document with [`Limits::default`].
    pub fn parse(input: &[u8]) -> Result<Element, Error> {
        Self::parse_with_limits(input, &Limits::default())
    }

    /// Parses a whole document.
    pub fn parse_with_limits(input: &[u8], limits: &Limits) -> Result<Element, Error> {
        let mut reader = Reader::with_limits(input, limits)?;
        let mut stack: Vec<Element> = Vec::with_capacity(16);
        let mut root = None;
        let mut nodes = 0usize;
        let internal = |offset| Error::Structure {
            offset,
            what: "internal: reader and tree disagree",
        };
        while let Some(event) = reader.next_event()? {
            let offset = reader.token_offset();
            nodes += 1;
            if nodes > limits.max_tree_nodes {
                return Err(Error::TooManyNodes {
                    offset,
                    max: limits.max_tree_nodes,
                });
            }
            let done = match event {
                Event::Start {
                    page,
                    token,
                    has_content: true,
                } => {
                    stack.push(Element::new(page, token));
                    None
                }
                Event::Start {
                    page,
                    token,
                    has_content: false,
                } => Some(Element::new(page, token)),
                Event::End { .. } => Some(stack.pop().ok_or_else(|| internal(offset))?),
                Event::Text(bytes) => {
                    let text = std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
                        offset: offset + 1 + e.valid_up_to(),
                    })?;
                    let parent = stack.last_mut().ok_or_else(|| internal(offset))?;
                    parent.children.push(Node::Text(text.to_owned()));
                    None
                }
                Event::Opaque(bytes) => {
                    let parent = stack.last_mut().ok_or_else(|| internal(offset))?;
                    parent.children.push(Node::Opaque(bytes.to_vec()));
                    None
                }
            };
            if let Some(el) = done {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
        }
        root.ok_or_else(|| internal(reader.offset()))
    }

    /// Encodes the element as a whole document (header `03 01 6A 00`).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        self.write_to(&mut w)?;
        w.finish()
    }

    /// Writes the element's events (iteratively: deep trees do not grow the call stack).
    pub fn write_to(&self, w: &mut Writer) -> Result<(), Error> {
        let has_content = !self.children.is_empty();
        w.start(self.page, self.token, has_content)?;
        if !has_content {
            return Ok(());
        }
        let mut stack: Vec<(&Element, usize)> = vec![(self, 0)];
        while let Some(top) = stack.last_mut() {
            let (el, i) = (top.0, top.1);
            let Some(child) = el.children.get(i) else {
                w.end()?;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match child {
                Node::Element(c) => {
                    let has_content = !c.children.is_empty();
                    w.start(c.page, c.token, has_content)?;
                    if has_content {
                        stack.push((c, 0));
                    }
                }
                Node::Text(t) => w.text(t.as_bytes())?,
                Node::Opaque(o) => w.opaque(o)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_finds() {
        let ping = Element::named("Ping", "Ping")
            .unwrap()
            .with_text_child("HeartbeatInterval", "480")
            .unwrap()
            .with_child(
                Element::named("Ping", "Folders").unwrap().with_child(
                    Element::named("Ping", "Folder")
                        .unwrap()
                        .with_text_child("Id", "INBOX")
                        .unwrap(),
                ),
            );
        assert_eq!(
            ping.find_path(&["Folders", "Folder", "Id"])
                .and_then(Element::text),
            Some("INBOX")
        );
        assert_eq!(
            ping.find("HeartbeatInterval").and_then(Element::text),
            Some("480")
        );
        assert!(ping.find_path(&["Folders", "Nope"]).is_none());
        let bytes = ping.encode().unwrap();
        assert_eq!(Element::parse(&bytes).unwrap(), ping);
        assert!(matches!(
            Element::named("Ping", "Nope"),
            Err(Error::UnknownName { .. })
        ));
    }
}
