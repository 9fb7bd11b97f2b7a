//! One policy document, checked for every problem it has.
//!
//! serde stops at a document's first error. To report them all, the document is read again
//! after each error with the entry at fault (a mapping key with its value, or a list item)
//! blanked out of its text — replaced by spaces, so every other line and column stays where
//! it was. What the blanking itself causes (a required field now missing, a list now empty)
//! is recognised and not reported. When a required field is missing, the rest of the
//! document cannot become a policy: its sections are then read one at a time ("lenses"), so
//! that their errors are still found. Cross-field rules ([`super::validate`]) run on a
//! document that could be read, each pointing at the field it is about.

use super::model::{PolicyDocument, KIND};
use super::validate::{check_sections, validate, Issue, Sections};
use super::yaml::{Entry, Kind, Node};
use super::Policy;
use serde::de::DeserializeOwned;

/// Kinds an admin's repository holds beside policies, with what to do about them.
const OTHER_KINDS: [(&str, &str); 2] = [
    (
        "SparkPodPolicyTest",
        "test suites belong outside the policy directory; `spark-admission test` reads them",
    ),
    (
        "Kustomization",
        "kustomize's file belongs beside the policies as kustomization.yaml, which the loader skips",
    ),
];

/// A policy's name with the line and column where it is written (for duplicate names).
pub type NameAt = (String, u64, u64);

/// A valid document's policy with where its name is, or its problems.
pub fn check(doc: &str, file: &str) -> Result<(Policy, NameAt), Vec<Issue>> {
    let Some(tree) = Node::parse(doc) else {
        // Not YAML: the parser's own message and location.
        return Err(vec![first_error::<PolicyDocument>(doc)]);
    };
    if let Some(issue) = other_kind(&tree) {
        return Err(vec![issue]);
    }
    let mut read = Lenient::new(doc, &tree);
    let parsed = read.parse::<PolicyDocument>();
    let Some(parsed) = parsed else {
        // A required field is missing: read each section on its own for the rest.
        let rules = if read.syntax_error {
            vec![]
        } else {
            read.lenses()
        };
        return Err(read.finish(rules));
    };
    let name_loc = (
        parsed.metadata.name.value.clone(),
        parsed.metadata.name.referenced.line(),
        parsed.metadata.name.referenced.column(),
    );
    match (validate(parsed, file), read.issues.is_empty()) {
        (Ok(policy), true) => Ok((policy, name_loc)),
        (Ok(_), false) => Err(read.finish(vec![])),
        (Err(rules), _) => {
            let rules = read.settle(rules);
            Err(read.finish(rules))
        }
    }
}

/// A document of another kind, said plainly (instead of "missing field spec").
fn other_kind(tree: &Node) -> Option<Issue> {
    let kind = tree.get("kind")?;
    let name = kind.scalar()?;
    if name == KIND {
        return None;
    }
    let hint = OTHER_KINDS
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(String::new(), |(_, hint)| format!(": {hint}"));
    Some(Issue {
        line: kind.start.line,
        column: kind.start.column,
        message: format!("not a {KIND} (kind: {name}){hint}"),
        path: None,
    })
}

/// The first error serde reports for `text`, as an issue.
fn first_error<T: DeserializeOwned>(text: &str) -> Issue {
    let (line, column, message) =
        parse::<T>(text)
            .err()
            .unwrap_or((0, 0, "cannot be read".to_string()));
    Issue {
        line,
        column,
        message,
        path: None,
    }
}

/// serde's result, with an error as line, column and message.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, (u64, u64, String)> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { with_snippet: false })
        .map_err(|e: serde_saphyr::Error| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            (line, column, bare_message(&e.to_string()))
        })
}

/// The parser's message without its own "error: line L column C: " prefix (we print
/// `file:line:column:` ourselves).
pub fn bare_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let without_error = first.strip_prefix("error: ").unwrap_or(first);
    let message = match without_error.split_once(": ") {
        Some((loc, rest)) if loc.starts_with("line ") => rest,
        _ => without_error,
    };
    // serde's own errors end in " at line L, column C"; the location is already in front.
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// Reads of one document with entries blanked out after each error.
struct Lenient<'a> {
    original: &'a str,
    tree: &'a Node,
    issues: Vec<Issue>,
    /// Entries blanked in the last read (they differ per lens).
    blanked: Vec<Entry>,
    syntax_error: bool,
}

/// Reads per document at most; each removes an entry, so this is never reached by a
/// document a person wrote.
const MAX_READS: usize = 64;

impl<'a> Lenient<'a> {
    fn new(original: &'a str, tree: &'a Node) -> Lenient<'a> {
        Lenient {
            original,
            tree,
            issues: vec![],
            blanked: vec![],
            syntax_error: false,
        }
    }

    /// Read the document as `T`, blanking the entry at fault after each error; `None` when
    /// it cannot become a `T` (a required field is missing, or the text is not YAML).
    fn parse<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut text: Vec<char> = self.original.chars().collect();
        self.blanked.clear();
        for _ in 0..MAX_READS {
            let source: String = text.iter().collect();
            let (line, column, message) = match parse::<T>(&source) {
                Ok(value) => return Some(value),
                Err(e) => e,
            };
            if line == 0 || Node::parse(&source).is_none() {
                // Not YAML any more. If it never was, that is the error to report.
                if self.blanked.is_empty() {
                    self.syntax_error = true;
                    self.report(line, column, message);
                }
                return None;
            }
            let target = match missing_field(&message) {
                Some(field) => {
                    // serde reports it at the start of a block mapping, at the end of a
                    // flow one: the mapping is the innermost one around that place (or the
                    // one whose key we blanked).
                    let maps = self.tree.maps_around(line, column);
                    let blanked = maps.iter().find(|m| self.blanked_key(m, field));
                    if blanked.is_none() {
                        self.report(line, column, message);
                    }
                    blanked
                        .or(maps.first())
                        .and_then(|m| self.tree.entry_around(m, &text))
                }
                None => {
                    let entry = self.tree.entry_at(line, column, &text);
                    let caused = entry.is_some_and(|e| self.overlaps_blanked(e));
                    if !caused {
                        self.report(line, column, message);
                    }
                    entry
                }
            };
            // Blank the entry; when there is none, or it is blank already, give up.
            let entry = target?;
            let mut changed = false;
            for c in &mut text[entry.start..entry.end] {
                if !c.is_whitespace() {
                    *c = ' ';
                    changed = true;
                }
            }
            if !changed {
                return None;
            }
            // A block collection left without entries is written as an empty one, so that
            // its own required fields are still checked (and it does not read as null).
            let (from, to) = entry.parent;
            if let Some(empty) = entry.parent_empty {
                let parent = &text[from..to.min(text.len())];
                if parent.iter().all(|c| c.is_whitespace()) && entry.end - entry.start >= 2 {
                    for (i, c) in empty.chars().enumerate() {
                        text[entry.start + i] = c;
                    }
                }
            }
            self.blanked.push(entry);
        }
        None
    }

    /// Each section of a policy on its own, for the errors a missing required field hides:
    /// what each section reads as, and the rules of those that could be read (each checked
    /// right after its read, against what that read blanked).
    fn lenses(&mut self) -> Vec<Issue> {
        let mut rules = vec![];
        let name = self
            .parse::<lens::Metadata>()
            .and_then(|m| m.metadata)
            .map(|m| m.name);
        let name = Sections {
            name: name.as_ref(),
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&name)));
        self.spec::<lens::Priority>();
        let matcher = self.spec::<lens::Match>().and_then(|m| m.value);
        let matcher = matcher.as_ref().map(|m| &m.value);
        let only_match = Sections {
            matcher,
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&only_match)));
        let roles = matcher.map_or(&[][..], |m| &m.roles.value[..]);
        let placement = Sections {
            placement: self.spec::<lens::Placement>().and_then(|p| p.value),
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&placement)));
        let tolerations = Sections {
            tolerations: self.spec::<lens::Tolerations>().and_then(|t| t.value),
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&tolerations)));
        let local_dirs = Sections {
            local_dirs: self.spec::<lens::LocalDirs>().and_then(|l| l.value),
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&local_dirs)));
        let secret_env = Sections {
            secret_env: self.spec::<lens::SecretEnv>().and_then(|s| s.value),
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&secret_env)));
        let memory = Sections {
            memory: self.spec::<lens::Memory>().and_then(|m| m.value),
            roles,
            ..Sections::default()
        };
        rules.extend(self.settle(check_sections(&memory)));
        rules
    }

    /// `spec.<field>` read alone, as `T` (one of the [`lens`] structs).
    fn spec<T: DeserializeOwned>(&mut self) -> Option<T> {
        self.parse::<lens::Spec<T>>().and_then(|s| s.spec)
    }

    /// `rules` (from validation) placed at their fields, without those the last read's
    /// blanking caused.
    fn settle(&self, rules: Vec<Issue>) -> Vec<Issue> {
        let mut out = vec![];
        for mut rule in rules {
            let node = match &rule.path {
                Some(path) => {
                    if let Some(pos) = self.tree.field_pos(path) {
                        rule.line = pos.line;
                        rule.column = pos.column;
                    }
                    self.tree.at_path(path)
                }
                None => self.tree.map_at(rule.line, rule.column),
            }
            .unwrap_or_else(|| self.tree.node_at(rule.line, rule.column));
            let caused = self
                .blanked
                .iter()
                .any(|b| b.start < node.end.char && node.start.char < b.end);
            rule.path = None;
            if !caused {
                out.push(rule);
            }
        }
        out
    }

    fn blanked_key(&self, map: &Node, field: &str) -> bool {
        let Kind::Map(entries) = &map.kind else {
            return false;
        };
        entries.iter().any(|(k, _)| {
            k.scalar() == Some(field)
                && self
                    .blanked
                    .iter()
                    .any(|b| b.start <= k.start.char && k.start.char < b.end)
        })
    }

    fn overlaps_blanked(&self, e: Entry) -> bool {
        self.blanked
            .iter()
            .any(|b| b.start < e.end && e.start < b.end)
    }

    fn report(&mut self, line: u64, column: u64, message: String) {
        let message = plain_message(self.tree, line, column, message);
        let issue = Issue {
            line,
            column,
            message,
            path: None,
        };
        if !self.issues.contains(&issue) {
            self.issues.push(issue);
        }
    }

    /// Every issue found, with `rules`, in the order of the text.
    fn finish(mut self, rules: Vec<Issue>) -> Vec<Issue> {
        for rule in rules {
            if !self.issues.contains(&rule) {
                self.issues.push(rule);
            }
        }
        self.issues.sort_by_key(|i| (i.line, i.column));
        self.issues
    }
}

/// `missing field `x``'s field name.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// serde's messages about the shape of a value, said in terms of the field: a single value
/// where a list is expected (`roles: executor`) is the usual one.
fn plain_message(tree: &Node, line: u64, column: u64, message: String) -> String {
    let node = tree.node_at(line, column);
    let key = tree.key_of(node).unwrap_or("the value");
    let found = match &node.kind {
        Kind::Scalar(s) if s.is_empty() => "nothing".to_string(),
        Kind::Scalar(s) => format!("the single value {s:?}"),
        Kind::Seq(_) => "a list".to_string(),
        Kind::Map(_) => "a mapping".to_string(),
    };
    if message.contains("expected sequence start") {
        return match &node.kind {
            Kind::Scalar(s) if !s.is_empty() => format!(
                "{key} must be a list, found {found}: write `{key}: [{s}]`, or one `- {s}` line per item"
            ),
            _ => format!("{key} must be a list, found {found}"),
        };
    }
    if message.contains("expected mapping start") {
        return format!("{key} must be a mapping of fields (`name: value`), found {found}");
    }
    message
}

/// Each section of a policy document alone, everything else ignored.
mod lens {
    use serde::Deserialize;
    use serde_saphyr::Spanned;

    use crate::policy::model;

    #[derive(Deserialize)]
    pub struct Metadata {
        pub metadata: Option<model::Metadata>,
    }

    /// `spec`, read as `T` (one of the structs below: one field of the spec).
    #[derive(Deserialize)]
    pub struct Spec<T> {
        pub spec: Option<T>,
    }

    #[derive(Deserialize)]
    pub struct Priority {
        #[serde(rename = "priority")]
        pub _priority: Option<i32>,
        #[serde(rename = "mode")]
        pub _mode: Option<model::Mode>,
    }

    #[derive(Deserialize)]
    pub struct Match {
        #[serde(rename = "match")]
        pub value: Option<Spanned<model::MatchSpec>>,
    }

    #[derive(Deserialize)]
    pub struct Placement {
        #[serde(rename = "placement")]
        pub value: Option<Spanned<model::Placement>>,
    }

    #[derive(Deserialize)]
    pub struct Tolerations {
        #[serde(rename = "tolerations")]
        pub value: Option<Vec<Spanned<model::TolerationSpec>>>,
    }

    #[derive(Deserialize)]
    pub struct LocalDirs {
        #[serde(rename = "localDirs")]
        pub value: Option<Spanned<model::LocalDirs>>,
    }

    #[derive(Deserialize)]
    pub struct SecretEnv {
        #[serde(rename = "secretEnv")]
        pub value: Option<Vec<Spanned<model::SecretEnv>>>,
    }

    #[derive(Deserialize)]
    pub struct Memory {
        #[serde(rename = "memory")]
        pub value: Option<Spanned<model::MemoryPolicy>>,
    }
}
