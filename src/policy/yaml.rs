//! A YAML document as a tree of nodes with their source extents, read from the parser's
//! events. serde reads a policy into the typed model but stops at its first error and
//! knows only where nodes start; this tree lets the loader locate a field by its path and
//! remove the entry an error is in, so that one run reports every error of a document.

use serde_saphyr::granit_parser::{Event, Parser};

/// A position: line and column as editors count them (both from 1), and the index of the
/// character in the document text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
    pub char: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar with its value (after escapes); an alias is an empty scalar.
    Scalar(String),
    Seq(Vec<Node>),
    /// Key and value nodes, in document order.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub start: Pos,
    /// Exclusive.
    pub end: Pos,
    /// Written in flow style (`[...]`, `{...}`).
    pub flow: bool,
    pub kind: Kind,
}

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seg::Key(k) => write!(f, ".{k}"),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// An entry of a collection: a mapping's key with its value, or a sequence item, as a range
/// of characters that can be removed from the text as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub start: usize,
    pub end: usize,
    /// The collection it is in: its characters, and `{}` or `[]` when it is written in block
    /// style (a block collection left without entries must become an empty one, not null).
    pub parent: (usize, usize),
    pub parent_empty: Option<&'static str>,
}

impl Node {
    /// Parse the first document of `text`; `None` when it is not valid YAML (serde says why).
    pub fn parse(text: &str) -> Option<Node> {
        let mut stack: Vec<Node> = vec![];
        let mut keys: Vec<Option<Node>> = vec![];
        let mut root = None;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.ok()?;
            let pos = |m: serde_saphyr::granit_parser::Marker| Pos {
                line: m.line() as u64,
                column: m.col() as u64 + 1,
                char: m.index(),
            };
            let (start, end) = (pos(span.start), pos(span.end));
            let finished = match event {
                Event::Scalar(value, ..) => Some(Node {
                    start,
                    end,
                    flow: false,
                    kind: Kind::Scalar(value.into_owned()),
                }),
                Event::Alias(_) => Some(Node {
                    start,
                    end,
                    flow: false,
                    kind: Kind::Scalar(String::new()),
                }),
                Event::SequenceStart(style, ..) | Event::MappingStart(style, ..) => {
                    let flow = style == serde_saphyr::granit_parser::StructureStyle::Flow;
                    let kind = if matches!(event, Event::SequenceStart(..)) {
                        Kind::Seq(vec![])
                    } else {
                        Kind::Map(vec![])
                    };
                    stack.push(Node {
                        start,
                        end,
                        flow,
                        kind,
                    });
                    keys.push(None);
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    keys.pop();
                    stack.pop().map(|mut node| {
                        node.end = node.end.max(end);
                        node
                    })
                }
                Event::DocumentEnd if root.is_some() => break,
                _ => None,
            };
            let Some(node) = finished else { continue };
            match (stack.last_mut(), keys.last_mut()) {
                (Some(parent), Some(key)) => {
                    parent.end = parent.end.max(node.end);
                    match &mut parent.kind {
                        Kind::Seq(items) => items.push(node),
                        Kind::Map(entries) => match key.take() {
                            None => *key = Some(node),
                            Some(k) => entries.push((k, node)),
                        },
                        Kind::Scalar(_) => {}
                    }
                }
                _ => root = Some(node),
            }
        }
        root
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The node at `path`, if the document has it.
    pub fn at_path(&self, path: &[Seg]) -> Option<&Node> {
        path.iter()
            .try_fold(self, |node, seg| match (seg, &node.kind) {
                (Seg::Key(k), _) => node.get(k),
                (Seg::Index(i), Kind::Seq(items)) => items.get(*i),
                _ => None,
            })
    }

    /// Where `path` is written: the key of a mapping entry (so that a message points at the
    /// field's name), else the node.
    pub fn field_pos(&self, path: &[Seg]) -> Option<Pos> {
        let (last, parent) = path.split_last()?;
        let parent = self.at_path(parent)?;
        match (last, &parent.kind) {
            (Seg::Key(k), Kind::Map(entries)) => entries
                .iter()
                .find(|(key, _)| key.scalar() == Some(k))
                .map(|(key, _)| key.start),
            (Seg::Index(i), Kind::Seq(items)) => items.get(*i).map(|n| n.start),
            _ => None,
        }
    }

    fn contains(&self, line: u64, column: u64) -> bool {
        let p = (line, column);
        (self.start.line, self.start.column) <= p && p < (self.end.line, self.end.column)
            || (self.start.line, self.start.column) == p
    }

    fn children(&self) -> Vec<&Node> {
        match &self.kind {
            Kind::Scalar(_) => vec![],
            Kind::Seq(items) => items.iter().collect(),
            Kind::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        }
    }

    /// The largest mapping starting at `line:column`, if any.
    pub fn map_at(&self, line: u64, column: u64) -> Option<&Node> {
        if (self.start.line, self.start.column) == (line, column)
            && matches!(self.kind, Kind::Map(_))
        {
            return Some(self);
        }
        self.children()
            .into_iter()
            .find(|c| c.contains(line, column))
            .and_then(|c| c.map_at(line, column))
    }

    /// The mappings holding `line:column`, innermost first.
    pub fn maps_around(&self, line: u64, column: u64) -> Vec<&Node> {
        let mut out = match self
            .children()
            .into_iter()
            .find(|c| c.contains(line, column))
        {
            Some(child) => child.maps_around(line, column),
            None => vec![],
        };
        if matches!(self.kind, Kind::Map(_)) && self.contains(line, column) {
            out.push(self);
        }
        out
    }

    /// The key of the mapping entry whose value is `node`.
    pub fn key_of(&self, node: &Node) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(_) => None,
            Kind::Seq(items) => items.iter().find_map(|i| i.key_of(node)),
            Kind::Map(entries) => entries.iter().find_map(|(k, v)| {
                if v.start == node.start && v.end == node.end {
                    k.scalar()
                } else {
                    v.key_of(node)
                }
            }),
        }
    }

    /// The innermost node at `line:column`.
    pub fn node_at(&self, line: u64, column: u64) -> &Node {
        self.children()
            .into_iter()
            .find(|c| c.contains(line, column))
            .map_or(self, |c| c.node_at(line, column))
    }

    /// The innermost entry (mapping key with its value, or sequence item) holding
    /// `line:column`. `text` is the document as characters (to take in a block item's `-`
    /// and a flow entry's `,`).
    pub fn entry_at(&self, line: u64, column: u64, text: &[char]) -> Option<Entry> {
        self.find_entry(text, &|n: &Node| n.contains(line, column), &|n| {
            n.contains(line, column)
        })
    }

    /// The entry whose value (or item) is `node`: what removes a whole mapping from its parent.
    pub fn entry_around(&self, node: &Node, text: &[char]) -> Option<Entry> {
        let same = |n: &Node| n.start.char == node.start.char && n.end.char == node.end.char;
        let holds = |n: &Node| n.start.char <= node.start.char && node.end.char <= n.end.char;
        // The innermost entry that holds `node` and whose value is not inside it.
        self.find_entry(text, &holds, &|n| holds(n) && !same(n))
    }

    /// The innermost entry whose range satisfies `holds`; `descend` says whether to look
    /// inside its value.
    fn find_entry(
        &self,
        text: &[char],
        holds: &dyn Fn(&Node) -> bool,
        descend: &dyn Fn(&Node) -> bool,
    ) -> Option<Entry> {
        let candidates: Vec<(Pos, &Node)> = match &self.kind {
            Kind::Scalar(_) => return None,
            Kind::Seq(items) => items.iter().map(|n| (n.start, n)).collect(),
            Kind::Map(entries) => entries.iter().map(|(k, v)| (k.start, v)).collect(),
        };
        let (start, value) = candidates.into_iter().find(|(start, value)| {
            let whole = Node {
                start: *start,
                end: value.end.max(*start),
                flow: false,
                kind: Kind::Scalar(String::new()),
            };
            holds(&whole)
        })?;
        let inner = if descend(value) {
            value.find_entry(text, holds, descend)
        } else {
            None
        };
        inner.or_else(|| {
            let end = match &self.kind {
                // A key with an empty value ends after the key's colon at least.
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.start == start)
                    .map_or(value.end.char, |(k, v)| k.end.char.max(v.end.char)),
                _ => value.end.char,
            };
            let (s, e) = widen(start.char, end, self.flow, text);
            let empty = match (&self.kind, self.flow) {
                (_, true) => None,
                (Kind::Map(_), false) => Some("{}"),
                (_, false) => Some("[]"),
            };
            Some(Entry {
                start: s,
                end: e,
                parent: (self.start.char, self.end.char),
                parent_empty: empty,
            })
        })
    }
}

/// A block item starts at its `-`; a flow entry takes the `,` after it along.
fn widen(start: usize, end: usize, flow: bool, text: &[char]) -> (usize, usize) {
    let mut s = start;
    if !flow {
        let mut i = start;
        while i > 0 && text[i - 1].is_whitespace() {
            i -= 1;
        }
        if i > 0 && text[i - 1] == '-' {
            s = i - 1;
        }
    }
    let mut e = end.min(text.len());
    if flow {
        let mut i = e;
        while i < text.len() && text[i].is_whitespace() {
            i += 1;
        }
        if i < text.len() && text[i] == ',' {
            e = i + 1;
        }
    }
    (s, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn cut(text: &str, e: Entry) -> String {
        let c = chars(text);
        c[e.start..e.end].iter().collect()
    }

    #[test]
    fn paths_resolve_to_the_field_and_its_key() {
        let text = "spec:\n  match:\n    roles: [driver, executor]\n  placement: {capacity: spot, weight: 5}\n";
        let tree = Node::parse(text).unwrap();
        let roles = tree
            .at_path(&[Seg::Key("spec"), Seg::Key("match"), Seg::Key("roles")])
            .unwrap();
        assert_eq!((roles.start.line, roles.start.column), (3, 12));
        let w = tree
            .field_pos(&[Seg::Key("spec"), Seg::Key("placement"), Seg::Key("weight")])
            .unwrap();
        assert_eq!((w.line, w.column), (4, 31));
        let second = tree
            .field_pos(&[
                Seg::Key("spec"),
                Seg::Key("match"),
                Seg::Key("roles"),
                Seg::Index(1),
            ])
            .unwrap();
        assert_eq!((second.line, second.column), (3, 21));
    }

    #[test]
    fn the_entry_at_a_position_is_the_innermost_key_value_or_item() {
        let text = "a:\n  b: {x: 1, y: 2}\n  c:\n  - one\n  - two\n";
        let tree = Node::parse(text).unwrap();
        let c = chars(text);
        // `y` in the flow map: its entry only.
        assert_eq!(cut(text, tree.entry_at(2, 13, &c).unwrap()), "y: 2");
        // `x` takes its comma along.
        assert_eq!(cut(text, tree.entry_at(2, 7, &c).unwrap()), "x: 1,");
        // A block item from its dash.
        assert_eq!(cut(text, tree.entry_at(5, 5, &c).unwrap()), "- two");
        // The entry around a mapping: `b: {...}`.
        let b = tree.at_path(&[Seg::Key("a"), Seg::Key("b")]).unwrap();
        assert_eq!(
            cut(text, tree.entry_around(b, &c).unwrap()),
            "b: {x: 1, y: 2}"
        );
        assert!(Node::parse("a: [\n").is_none());
    }
}
