//! Reading policy files: every `*.yaml` / `*.yml` under a directory, several documents per
//! file. Every document is checked, so one run lists every problem; the set is accepted only
//! if none was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::PolicyDocument;
use super::validate::validate;
use super::{Policy, PolicyError, PolicyErrors, PolicySet};

/// Largest policy file we read; policy files are small, a huge one is a mistake.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The policy files under a directory as read: what the loader parses and what the server's
/// reloader compares, so that it takes a set only once two reads agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot(Vec<(PathBuf, Result<String, String>)>);

pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    load_snapshot(&read_dir(dir)?)
}

/// Read every policy file under `dir` (a file that cannot be read is kept as its error).
pub fn read_dir(dir: &Path) -> Result<Snapshot, PolicyErrors> {
    let mut files = vec![];
    collect_files(dir, &mut files).map_err(|message| {
        PolicyErrors(vec![PolicyError {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }])
    })?;
    files.sort();
    Ok(Snapshot(
        files
            .into_iter()
            .map(|file| {
                let text = read_policy_file(&file);
                (file, text)
            })
            .collect(),
    ))
}

/// Parse and validate a snapshot: all or nothing.
pub fn load_snapshot(snapshot: &Snapshot) -> Result<PolicySet, PolicyErrors> {
    let mut sources = vec![];
    let mut errors = vec![];
    for (file, text) in &snapshot.0 {
        match text {
            Ok(text) => sources.push((file.as_path(), text.as_str())),
            Err(message) => errors.push(PolicyError {
                file: file.clone(),
                line: 0,
                column: 0,
                message: message.clone(),
            }),
        }
    }
    match (from_sources(&sources), errors.is_empty()) {
        (Ok(set), true) => Ok(set),
        (Ok(_), false) => Err(PolicyErrors(errors)),
        (Err(PolicyErrors(more)), _) => {
            errors.extend(more);
            Err(PolicyErrors(errors))
        }
    }
}

fn read_policy_file(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes; policy files are limited to {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))
}

/// Policy files below `dir`, following symlinks (a ConfigMap volume is a tree of them) but
/// skipping hidden entries such as the kubelet's `..data` and `..2024_…` directories, which
/// hold the same files a second time.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read policy directory {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta =
            std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

pub fn from_sources<P: AsRef<Path>>(sources: &[(P, &str)]) -> Result<PolicySet, PolicyErrors> {
    let mut errors = vec![];
    let mut policies: Vec<Policy> = vec![];
    // name → where it was first defined
    let mut seen: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    for (path, text) in sources {
        let path = path.as_ref();
        let file = path.display().to_string();
        let docs = split_documents(text);
        if docs.is_empty() {
            // A file caught mid-rewrite is empty for a moment: never a set of zero policies.
            errors.push(PolicyError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: "holds no policy: the file is empty or only comments \
                          (delete it, or add a policy)"
                    .to_string(),
            });
        }
        for doc in docs {
            let parsed: Result<PolicyDocument, _> = serde_saphyr::from_str_with_options(
                &doc,
                serde_saphyr::options! { with_snippet: false },
            );
            let doc = match parsed {
                Ok(doc) => doc,
                Err(e) => {
                    let (mut line, mut column) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((0, 0));
                    // The YAML parser can place an error past the end of the document (seen
                    // with a tab-indented line in a block sequence, found by fuzzing): point
                    // at the document's last line instead of a line the file does not have.
                    let last = doc.lines().count() as u64;
                    if line > last {
                        (line, column) = (last.max(1), 1);
                    }
                    errors.push(PolicyError {
                        file: path.to_path_buf(),
                        line,
                        column,
                        message: bare_message(&e.to_string()),
                    });
                    continue;
                }
            };
            let name_loc = (
                doc.metadata.name.value.clone(),
                doc.metadata.name.referenced.line(),
                doc.metadata.name.referenced.column(),
            );
            match validate(doc, &file) {
                Ok(policy) => {
                    let (name, line, column) = name_loc;
                    if let Some((first_file, first_line)) = seen.get(&name) {
                        errors.push(PolicyError {
                            file: path.to_path_buf(),
                            line,
                            column,
                            message: format!(
                                "duplicate policy name {name:?}: already defined at {}:{first_line}",
                                first_file.display()
                            ),
                        });
                    } else {
                        seen.insert(name, (path.to_path_buf(), line));
                        policies.push(policy);
                    }
                }
                Err(issues) => errors.extend(issues.into_iter().map(|i| PolicyError {
                    file: path.to_path_buf(),
                    line: i.line,
                    column: i.column,
                    message: i.message,
                })),
            }
        }
    }
    if errors.is_empty() {
        Ok(PolicySet::new(policies))
    } else {
        Err(PolicyErrors(errors))
    }
}

/// The parser's message without its own "error: line L column C: " prefix (we print
/// `file:line:column:` ourselves).
fn bare_message(rendered: &str) -> String {
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

/// Split a YAML stream into its documents, each padded with blank lines so that the line
/// and column the parser reports for it are those of the whole file. Documents holding
/// only comments or blank lines are dropped.
fn split_documents(text: &str) -> Vec<String> {
    fn is_marker(line: &str, marker: &str) -> bool {
        line.strip_prefix(marker)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    }
    let mut docs = vec![];
    let mut body = String::new();
    let mut has_content = false;
    for (i, line) in text.lines().enumerate() {
        let starts_doc = is_marker(line, "---");
        let ends_doc = is_marker(line, "...");
        let line = if starts_doc || ends_doc {
            if has_content {
                docs.push(std::mem::take(&mut body));
            }
            body = "\n".repeat(i);
            has_content = false;
            // `--- key: value` keeps its content, at its own column.
            if starts_doc {
                line.replacen("---", "   ", 1)
            } else {
                String::new()
            }
        } else {
            line.to_string()
        };
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            has_content = true;
        }
        body.push_str(&line);
        body.push('\n');
    }
    if has_content {
        docs.push(body);
    }
    docs
}
