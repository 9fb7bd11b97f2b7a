//! The offline commands: `mutate` (what would the webhook do to this pod?), `check` (is
//! this policy set valid?), `test` (do the policies do what the repo's suites expect?) and
//! `explain` (why does a pod come out as it does?). They run in an admin's Git CI before a
//! change ships.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use std::collections::BTreeMap;

use crate::engine::{evaluate_with_labels, Verdict};
use crate::policy::load::{load_snapshot, read_paths};
use crate::policy::{Mode, PolicySet};

/// Exit code of `mutate` when a policy denies the pod.
pub const EXIT_DENIED: i32 = 3;
/// Exit code for unreadable input or an invalid policy set.
pub const EXIT_ERROR: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The RFC 6902 JSON Patch the webhook would return.
    Patch,
    /// The pod after the patch, as JSON.
    Pod,
    /// A unified diff of the pod before and after, as YAML.
    Diff,
}

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Directory of policy files (searched recursively for *.yaml / *.yml).
    #[arg(long, env = "SPARK_ADMISSION_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// What to print.
    #[arg(short, long, value_enum, default_value = "patch")]
    pub output: Output,
    /// Namespace the pod is created in (default: the AdmissionReview's, else
    /// metadata.namespace, else "default").
    #[arg(long)]
    pub namespace: Option<String>,
    /// A label of the pod's namespace (for policies with match.namespaceSelector);
    /// repeat for more.
    #[arg(long = "namespace-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub namespace_labels: Vec<(String, String)>,
    /// A Pod (JSON or YAML) or an AdmissionReview; `-` reads standard input.
    pub file: PathBuf,
}

/// `KEY=VALUE` of `--namespace-label`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// The namespace labels given by `--namespace-label`, `None` when none is given (a policy
/// with a namespaceSelector then cannot be decided).
fn namespace_labels(labels: &[(String, String)]) -> Option<BTreeMap<String, String>> {
    (!labels.is_empty()).then(|| labels.iter().cloned().collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Directory of policy files (searched recursively for *.yaml / *.yml).
    #[arg(long, env = "SPARK_ADMISSION_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Policy files or directories to check instead of --policies.
    pub paths: Vec<PathBuf>,
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Format,
}

/// A failure of the command itself, printed as `error: …`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is neither JSON nor YAML: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("policy set {dir} is invalid:\n{errors}")]
    Policies {
        dir: String,
        errors: crate::PolicyErrors,
    },
}

/// The pod inside `doc` (a Pod, or an AdmissionReview's request.object) and the namespace
/// the request names.
pub fn pod_from_document(doc: Value) -> Result<(Value, Option<String>), String> {
    if doc.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Ok((doc, None));
    }
    let mut request = match doc {
        Value::Object(mut m) => m
            .remove("request")
            .ok_or("AdmissionReview has no request")?,
        _ => return Err("AdmissionReview is not an object".into()),
    };
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let object = request
        .get_mut("object")
        .map(Value::take)
        .filter(|o| !o.is_null())
        .ok_or("AdmissionReview request has no object")?;
    Ok((object, namespace))
}

/// Parse JSON, or YAML when it is not JSON.
pub fn parse_document(text: &str, path: &str) -> Result<Value, CliError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_saphyr::from_str::<Value>(text).map_err(|yaml_err| {
            let message = if text.trim_start().starts_with('{') {
                json_err.to_string()
            } else {
                yaml_err.to_string()
            };
            CliError::Parse {
                path: path.into(),
                message,
            }
        }),
    }
}

fn read_input(file: &Path) -> Result<String, CliError> {
    let path = file.display().to_string();
    let mut text = String::new();
    let result = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    result.map_err(|source| CliError::Read { path, source })?;
    Ok(text)
}

fn load(dir: &Path) -> Result<PolicySet, CliError> {
    PolicySet::load_dir(dir).map_err(|errors| CliError::Policies {
        dir: dir.display().to_string(),
        errors,
    })
}

/// The pod of an input file (`-`: standard input) with the file's name for messages and
/// the namespace an AdmissionReview names.
fn read_pod_input(file: &Path) -> Result<(String, Value, Option<String>), CliError> {
    let path = file.display().to_string();
    let doc = parse_document(&read_input(file)?, &path)?;
    let (pod, namespace) = pod_from_document(doc).map_err(|message| CliError::Input {
        path: path.clone(),
        message,
    })?;
    Ok((path, pod, namespace))
}

pub(crate) fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

/// `spark-admission mutate`: returns the process exit code.
pub fn mutate(
    args: &MutateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, CliError> {
    let policies = load(&args.policies)?;
    let (path, pod, review_ns) = read_pod_input(&args.file)?;
    let namespace = args.namespace.clone().or(review_ns);
    let labels = namespace_labels(&args.namespace_labels);
    let eval = evaluate_with_labels(&policies, &pod, namespace.as_deref(), labels.as_ref())
        .map_err(|e| CliError::Input {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let _ = writeln_all(
        err,
        &eval
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .collect::<Vec<_>>(),
    );
    if !eval.applied.is_empty() {
        let _ = writeln!(err, "policies applied: {}", eval.applied.join(", "));
    }
    if !eval.audited.is_empty() {
        let _ = writeln!(
            err,
            "audit policies that would change the pod: {}",
            eval.audited.join(", ")
        );
    }
    if eval.role.is_none() {
        let _ = writeln!(
            err,
            "not a Spark pod (no spark-role: driver|executor|connect-server label): unchanged"
        );
    }
    let (patch, mutated) = match eval.verdict {
        Verdict::Denied { policy, message } => {
            let _ = writeln!(err, "denied by policy {policy}: {message}");
            return Ok(EXIT_DENIED);
        }
        Verdict::Unchanged => (json_patch::Patch(vec![]), pod.clone()),
        Verdict::Patched { patch, pod } => (patch, pod),
    };
    let text = match args.output {
        Output::Patch => serde_json::to_string_pretty(&patch).unwrap_or_default(),
        Output::Pod => serde_json::to_string_pretty(&mutated).unwrap_or_default(),
        Output::Diff => {
            let (before, after) = (to_yaml(&pod), to_yaml(&mutated));
            similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(3)
                .header(&format!("{path} (submitted)"), &format!("{path} (mutated)"))
                .to_string()
        }
    };
    let _ = writeln!(out, "{}", text.trim_end());
    Ok(0)
}

fn writeln_all(w: &mut dyn Write, lines: &[String]) -> std::io::Result<()> {
    for l in lines {
        writeln!(w, "{l}")?;
    }
    Ok(())
}

/// `spark-admission check`: returns the process exit code. Every error of every document
/// is listed; `-o json` gives the same as one JSON object.
pub fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, CliError> {
    let paths = if args.paths.is_empty() {
        vec![args.policies.clone()]
    } else {
        args.paths.clone()
    };
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let snapshot = read_paths(&paths);
    let ignored = snapshot
        .as_ref()
        .map(|s| s.ignored().to_vec())
        .unwrap_or_default();
    let result = snapshot.and_then(|s| load_snapshot(&s));
    if args.output == Format::Json {
        let json = match &result {
            Ok(set) => serde_json::json!({
                "valid": true,
                "policies": set.policies().iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "mode": format!("{:?}", p.mode),
                    "priority": p.priority,
                    "roles": p.matcher.roles.value.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "origin": p.origin,
                })).collect::<Vec<_>>(),
                "errors": [],
                "ignored": ignored,
            }),
            Err(errors) => serde_json::json!({
                "valid": false,
                "policies": [],
                "errors": errors.0.iter().map(|e| serde_json::json!({
                    "file": e.file,
                    "line": e.line,
                    "column": e.column,
                    "message": e.message,
                })).collect::<Vec<_>>(),
                "ignored": ignored,
            }),
        };
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
        return Ok(if result.is_ok() { 0 } else { EXIT_ERROR });
    }
    for file in &ignored {
        let _ = writeln!(
            err,
            "note: {}: kustomize's file, not read as policies",
            file.display()
        );
    }
    let set = result.map_err(|errors| CliError::Policies {
        dir: shown.clone(),
        errors,
    })?;
    let count = |m: Mode| set.policies().iter().filter(|p| p.mode == m).count();
    let _ = writeln!(
        out,
        "{}: {} policies valid ({} Enforce, {} Audit, {} Off), in application order:",
        shown,
        set.len(),
        count(Mode::Enforce),
        count(Mode::Audit),
        count(Mode::Off)
    );
    let width = set.names().iter().map(String::len).max().unwrap_or(0);
    for p in set.policies() {
        let roles: Vec<&str> = p.matcher.roles.value.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "  {:width$}  {:7}  {:15}  {}",
            p.name,
            format!("{:?}", p.mode),
            roles.join(","),
            p.origin
        );
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directory of policy files, for suites that do not name their own.
    #[arg(long, env = "SPARK_ADMISSION_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Suite files, or directories searched recursively for them (default: tests).
    pub suites: Vec<PathBuf>,
    /// Run Audit policies as if enforced: preview a rollout.
    #[arg(long)]
    pub as_enforced: bool,
    /// Also write a JUnit XML report here, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// `spark-admission test`: a line per case (with what differs when it fails), then
/// `N passed, N failed`; exit code 1 when any case fails.
pub fn test(args: &TestArgs, out: &mut dyn Write) -> Result<i32, CliError> {
    let paths = if args.suites.is_empty() {
        vec![PathBuf::from("tests")]
    } else {
        args.suites.clone()
    };
    let suites = crate::suite::load_suites(&paths).map_err(|message| CliError::Input {
        path: "test suites".to_string(),
        message,
    })?;
    // Each policy directory is loaded once, however many suites use it.
    let mut sets: BTreeMap<PathBuf, PolicySet> = BTreeMap::new();
    let mut results = vec![];
    for loaded in &suites {
        let dir = match &loaded.suite.policies {
            Some(dir) => loaded.file.parent().unwrap_or(Path::new(".")).join(dir),
            None => args.policies.clone(),
        };
        if !sets.contains_key(&dir) {
            sets.insert(dir.clone(), load(&dir)?);
        }
        let set = &sets[&dir];
        for r in crate::suite::run_suite(loaded, set, args.as_enforced) {
            let status = if r.passed() { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "{status} {}: {}", r.suite.display(), r.label());
            for f in &r.failures {
                for line in f.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
            results.push(r);
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
    if let Some(file) = &args.junit {
        std::fs::write(file, crate::suite::junit(&results)).map_err(|source| CliError::Read {
            path: file.display().to_string(),
            source,
        })?;
    }
    Ok(if failed == 0 { 0 } else { EXIT_ERROR })
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Directory of policy files (searched recursively for *.yaml / *.yml).
    #[arg(long, env = "SPARK_ADMISSION_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Namespace the pod is created in (default: the AdmissionReview's, else
    /// metadata.namespace, else "default").
    #[arg(long)]
    pub namespace: Option<String>,
    /// A label of the pod's namespace (for policies with match.namespaceSelector);
    /// repeat for more.
    #[arg(long = "namespace-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub namespace_labels: Vec<(String, String)>,
    /// Run Audit policies as if enforced.
    #[arg(long)]
    pub as_enforced: bool,
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Format,
    /// A Pod (JSON or YAML) or an AdmissionReview; `-` reads standard input.
    pub file: PathBuf,
}

/// `spark-admission explain`: which policies matched and why not, each change with its
/// policy, the denial and the warnings.
pub fn explain(args: &ExplainArgs, out: &mut dyn Write) -> Result<i32, CliError> {
    let mut policies = load(&args.policies)?;
    if args.as_enforced {
        policies = policies.as_enforced();
    }
    let (path, pod, review_ns) = read_pod_input(&args.file)?;
    let namespace = args.namespace.clone().or(review_ns);
    let labels = namespace_labels(&args.namespace_labels);
    let explanation =
        crate::explain::explain(&policies, &pod, namespace.as_deref(), labels.as_ref()).map_err(
            |e| CliError::Input {
                path: path.clone(),
                message: e.to_string(),
            },
        )?;
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&explanation).unwrap_or_default(),
        Format::Text => crate::explain::render(&explanation),
    };
    let _ = writeln!(out, "{}", text.trim_end());
    Ok(0)
}
