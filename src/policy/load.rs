//! Reading policy files: every `*.yaml` / `*.yml` under a directory (or the files named),
//! several documents per file. Every document is checked, and each document for every
//! problem it has, so one run lists them all; the set is accepted only if none was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::document;
use super::validate::Issue;
use super::{Policy, PolicyError, PolicyErrors, PolicySet};

/// Largest policy file we read; policy files are small, a huge one is a mistake.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// File names in a policy directory that are kustomize's, never policies: an admin's repo
/// keeps its `kustomization.yaml` (which generates the policies ConfigMap) beside the files.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The policy files under a directory as read: what the loader parses and what the server's
/// reloader compares, so that it takes a set only once two reads agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    files: Vec<(PathBuf, Result<String, String>)>,
    ignored: Vec<PathBuf>,
}

impl Snapshot {
    /// Files that were found but are not read as policies (kustomize's).
    pub fn ignored(&self) -> &[PathBuf] {
        &self.ignored
    }
}

pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    load_snapshot(&read_dir(dir)?)
}

/// Read every policy file under `dir` (a file that cannot be read is kept as its error).
pub fn read_dir(dir: &Path) -> Result<Snapshot, PolicyErrors> {
    read_paths(&[dir.to_path_buf()])
}

/// Read the policy files `paths` name: files as they are, directories searched
/// recursively. No policy file at all is an error: a mistyped or empty directory must not
/// pass for a valid set of zero policies.
pub fn read_paths(paths: &[PathBuf]) -> Result<Snapshot, PolicyErrors> {
    let mut files = vec![];
    let mut ignored = vec![];
    let at = |path: &Path, message: String| {
        PolicyErrors(vec![PolicyError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }])
    };
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| at(path, format!("cannot read policy directory or file: {e}")))?;
        if meta.is_dir() {
            collect_files(path, &mut files, &mut ignored).map_err(|m| at(path, m))?;
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        let path = paths.first().map_or(Path::new("."), PathBuf::as_path);
        return Err(at(
            path,
            "holds no policy files (*.yaml, *.yml): is this the policy directory?".to_string(),
        ));
    }
    files.sort();
    files.dedup();
    ignored.sort();
    Ok(Snapshot {
        files: files
            .into_iter()
            .map(|file| {
                let text = read_policy_file(&file);
                (file, text)
            })
            .collect(),
        ignored,
    })
}

/// Parse and validate a snapshot: all or nothing.
pub fn load_snapshot(snapshot: &Snapshot) -> Result<PolicySet, PolicyErrors> {
    let mut sources = vec![];
    let mut errors = vec![];
    for (file, text) in &snapshot.files {
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
/// hold the same files a second time, and kustomize's files (into `ignored`).
fn collect_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    ignored: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read policy directory {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let meta =
            std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            collect_files(&path, out, ignored)?;
        } else if KUSTOMIZATION_FILES.contains(&name.as_ref()) {
            ignored.push(path);
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
            // The YAML parser can place an error past the end of the document (seen with a
            // tab-indented line in a block sequence, found by fuzzing): such an error points
            // at the document's last line instead of a line the file does not have.
            let last = (doc.lines().count() as u64).max(1);
            let at = |i: Issue| {
                let (line, column) = if i.line > last {
                    (last, 1)
                } else {
                    (i.line, i.column)
                };
                PolicyError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    message: i.message,
                }
            };
            let (policy, name_loc) = match document::check(&doc, &file) {
                Ok(found) => found,
                Err(issues) => {
                    errors.extend(issues.into_iter().map(at));
                    continue;
                }
            };
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
    }
    if errors.is_empty() {
        Ok(PolicySet::new(policies))
    } else {
        Err(PolicyErrors(errors))
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
