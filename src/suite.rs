//! `spark-admission test`: declarative test suites for a policy set, kept next to the
//! policies in the admin's repository and run in CI before a merge.
//!
//! A suite file (`kind: SparkPodPolicyTest`) lists cases; each runs input pods through the
//! engine exactly as `mutate` does and compares the outcome with what the case expects: the
//! mutated pod, the patch, field assertions by JSON pointer, a denial, warnings, the policies
//! applied. Reading and running are pure; the files are read by [`load_suites`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::engine::{evaluate_with_labels, Verdict};
use crate::policy::{Mode, PolicySet};

pub const SUITE_KIND: &str = "SparkPodPolicyTest";

/// One suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Suite {
    pub api_version: String,
    pub kind: String,
    /// Policy directory for this suite, relative to the suite file (default: `--policies`).
    #[serde(default)]
    pub policies: Option<PathBuf>,
    pub cases: Vec<Case>,
}

/// One case: input pods, where they are created, and what must come out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    pub name: String,
    /// Input pods: a file path (relative to the suite file; a Pod or an AdmissionReview,
    /// JSON or YAML) or the pod inline. Every pod must meet the expectations.
    pub pods: Vec<Value>,
    /// Namespace the pod is created in (default: the pod's metadata.namespace, else default).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of that namespace, for policies with `match.namespaceSelector`.
    #[serde(default)]
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Policies switched to another mode for this case (one platform's placement on,
    /// another's off).
    #[serde(default)]
    pub modes: BTreeMap<String, Mode>,
    /// Run Audit policies as if enforced (also `--as-enforced` for every case).
    #[serde(default)]
    pub as_enforced: bool,
    pub expect: Expect,
}

/// What a case expects; every part given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The whole mutated pod (a file path or inline).
    #[serde(default)]
    pub pod: Option<Value>,
    /// The exact JSON Patch (`[]`: the pod is left as it is).
    #[serde(default)]
    pub patch: Option<Value>,
    /// Assertions on the mutated pod.
    #[serde(default)]
    pub fields: Vec<FieldAssertion>,
    /// The pod is denied with a message containing this text. Without it, a denial fails.
    #[serde(default)]
    pub denied: Option<String>,
    /// The warnings, one text each contains, in any order; `[]`: no warnings.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    /// The Enforce policies applied, in order.
    #[serde(default)]
    pub applied: Option<Vec<String>>,
}

/// One assertion on the mutated pod at a JSON pointer (RFC 6901).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldAssertion {
    pub path: String,
    /// The value there, exactly.
    #[serde(default)]
    pub value: Option<Value>,
    /// Nothing there.
    #[serde(default)]
    pub absent: bool,
    /// A list with an element that has these fields, a mapping with these fields, or a
    /// string with this text.
    #[serde(default)]
    pub contains: Option<Value>,
}

/// A suite as read, with the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    pub file: PathBuf,
    pub suite: Suite,
}

/// The outcome of one case on one of its pods (or a case that could not run).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub suite: PathBuf,
    pub case: String,
    /// Which input pod, when the case has several.
    pub pod: String,
    /// What failed, each a readable paragraph; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Read suite files: the files named, and every `*.yaml` / `*.yml` of kind
/// `SparkPodPolicyTest` under the directories (the pods the suites use may sit beside them).
pub fn load_suites(paths: &[PathBuf]) -> Result<Vec<LoadedSuite>, String> {
    let mut files = vec![];
    for path in paths {
        if path.is_dir() {
            let mut found = vec![];
            collect(path, &mut found)?;
            files.extend(found.into_iter().filter(|f| is_suite(f)));
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(format!(
            "no test suites (*.yaml, *.yml) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    files.sort();
    files.dedup();
    let mut errors = vec![];
    let mut suites = vec![];
    for file in files {
        match read_suite(&file) {
            Ok(suite) => suites.push(LoadedSuite { file, suite }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(suites)
    } else {
        Err(errors.join("\n"))
    }
}

/// Whether a file found in a directory is a suite: its `kind` says so (a file that cannot be
/// read is taken as one, so its error is reported).
fn is_suite(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return true;
    };
    match serde_saphyr::from_str::<Value>(&text) {
        Ok(doc) => doc.get("kind").and_then(Value::as_str) == Some(SUITE_KIND),
        Err(_) => text.contains(SUITE_KIND),
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

fn read_suite(file: &Path) -> Result<Suite, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let suite: Suite =
        serde_saphyr::from_str_with_options(&text, serde_saphyr::options! { with_snippet: false })
            .map_err(|e: serde_saphyr::Error| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                let message = crate::policy::document::bare_message(&e.to_string());
                format!("{shown}:{line}:{column}: {message}")
            })?;
    if suite.kind != SUITE_KIND {
        return Err(format!(
            "{shown}: not a {SUITE_KIND} (kind: {})",
            suite.kind
        ));
    }
    if suite.api_version != crate::policy::model::API_VERSION {
        return Err(format!(
            "{shown}: apiVersion {:?}, expected {:?}",
            suite.api_version,
            crate::policy::model::API_VERSION
        ));
    }
    Ok(suite)
}

/// A pod reference (path relative to `base`, or inline) as a JSON value, with a name for
/// reports.
fn resolve(base: &Path, value: &Value) -> Result<(String, Value), String> {
    match value {
        Value::String(path) => {
            let full = base.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
            let doc = crate::cli::parse_document(&text, path).map_err(|e| e.to_string())?;
            Ok((path.clone(), doc))
        }
        Value::Object(_) => Ok(("inline".to_string(), value.clone())),
        other => Err(format!(
            "a pod is a file path or an inline mapping, found {other}"
        )),
    }
}

/// Run every case of `suite` against `policies` (the suite's own directory when it names
/// one is loaded by the caller). `as_enforced` runs Audit policies as if enforced.
pub fn run_suite(loaded: &LoadedSuite, policies: &PolicySet, as_enforced: bool) -> Vec<CaseResult> {
    let base = loaded.file.parent().unwrap_or(Path::new("."));
    let mut results = vec![];
    for case in &loaded.suite.cases {
        let result = |pod: &str, failures: Vec<String>| CaseResult {
            suite: loaded.file.clone(),
            case: case.name.clone(),
            pod: pod.to_string(),
            failures,
        };
        let set = match case_policies(policies, case, as_enforced) {
            Ok(set) => set,
            Err(e) => {
                results.push(result("", vec![e]));
                continue;
            }
        };
        if case.pods.is_empty() {
            results.push(result("", vec!["the case names no pods".to_string()]));
        }
        for pod in &case.pods {
            match resolve(base, pod) {
                Ok((name, doc)) => results.push(result(&name, run_case(&set, case, base, doc))),
                Err(e) => results.push(result("", vec![e])),
            }
        }
    }
    results
}

fn case_policies(set: &PolicySet, case: &Case, as_enforced: bool) -> Result<PolicySet, String> {
    let set = set
        .with_modes(&case.modes)
        .map_err(|e| format!("modes: {e}"))?;
    Ok(if as_enforced || case.as_enforced {
        set.as_enforced()
    } else {
        set
    })
}

/// One case on one pod: the failures (none when it passes).
fn run_case(set: &PolicySet, case: &Case, base: &Path, doc: Value) -> Vec<String> {
    let (pod, review_ns) = match crate::cli::pod_from_document(doc) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let namespace = case.namespace.clone().or(review_ns);
    let eval = match evaluate_with_labels(
        set,
        &pod,
        namespace.as_deref(),
        case.namespace_labels.as_ref(),
    ) {
        Ok(eval) => eval,
        Err(e) => return vec![format!("the engine failed: {e}")],
    };
    let expect = &case.expect;
    let mut failures = vec![];
    let (patch, mutated) = match eval.verdict {
        Verdict::Denied { policy, message } => {
            match &expect.denied {
                Some(want) if message.contains(want.as_str()) => {}
                Some(want) => failures.push(format!(
                    "denied by {policy} with {message:?}, expected a message containing {want:?}"
                )),
                None => failures.push(format!("denied by {policy}: {message}")),
            }
            return check_warnings(expect, &eval.warnings, failures);
        }
        Verdict::Unchanged => (json_patch::Patch(vec![]), pod.clone()),
        Verdict::Patched { patch, pod } => (patch, pod),
    };
    if let Some(want) = &expect.denied {
        failures.push(format!(
            "expected a denial containing {want:?}, the pod was admitted"
        ));
    }
    if let Some(want) = &expect.applied {
        if *want != eval.applied {
            failures.push(format!(
                "policies applied: expected [{}], got [{}]",
                want.join(", "),
                eval.applied.join(", ")
            ));
        }
    }
    if let Some(want) = &expect.patch {
        let got = serde_json::to_value(&patch).unwrap_or(Value::Null);
        if *want != got {
            failures.push(format!("patch differs:\n{}", diff(want, &got)));
        }
    }
    if let Some(want) = &expect.pod {
        match resolve(base, want).and_then(|(_, doc)| crate::cli::pod_from_document(doc)) {
            Ok((want, _)) if want == mutated => {}
            Ok((want, _)) => {
                failures.push(format!("mutated pod differs:\n{}", diff(&want, &mutated)))
            }
            Err(e) => failures.push(format!("expect.pod: {e}")),
        }
    }
    for field in &expect.fields {
        if let Some(f) = check_field(field, &mutated) {
            failures.push(f);
        }
    }
    check_warnings(expect, &eval.warnings, failures)
}

fn check_warnings(expect: &Expect, got: &[String], mut failures: Vec<String>) -> Vec<String> {
    let Some(want) = &expect.warnings else {
        return failures;
    };
    let mut unmatched: Vec<&String> = got.iter().collect();
    let mut missing = vec![];
    for w in want {
        match unmatched.iter().position(|g| g.contains(w.as_str())) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(w),
        }
    }
    for w in missing {
        failures.push(format!("no warning contains {w:?}"));
    }
    for g in unmatched {
        failures.push(format!("unexpected warning: {g}"));
    }
    failures
}

/// The failure of one field assertion, if it fails.
fn check_field(field: &FieldAssertion, pod: &Value) -> Option<String> {
    let at = pod.pointer(&field.path);
    let shown = |v: Option<&Value>| v.map_or("nothing".to_string(), compact);
    if field.absent && at.is_some() {
        return Some(format!(
            "{}: expected nothing, found {}",
            field.path,
            shown(at)
        ));
    }
    if let Some(want) = &field.value {
        if at != Some(want) {
            return Some(format!(
                "{}: expected {}, found {}",
                field.path,
                compact(want),
                shown(at)
            ));
        }
    }
    if let Some(want) = &field.contains {
        if !at.is_some_and(|v| contains(v, want)) {
            return Some(format!(
                "{}: expected something containing {}, found {}",
                field.path,
                compact(want),
                shown(at)
            ));
        }
    }
    if !field.absent && field.value.is_none() && field.contains.is_none() {
        return Some(format!(
            "{}: the assertion says nothing (give value, absent or contains)",
            field.path
        ));
    }
    None
}

/// Whether `have` contains `want`: a list has an element containing it, a mapping has its
/// fields (recursively), a string has it as a substring; otherwise equality.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Array(items), _) if !want.is_array() => items.iter().any(|i| subset(i, want)),
        (Value::String(h), Value::String(w)) => h.contains(w.as_str()),
        _ => subset(have, want),
    }
}

fn subset(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| subset(hv, wv))),
        (Value::Array(h), Value::Array(w)) => w.iter().all(|wv| h.iter().any(|hv| subset(hv, wv))),
        _ => have == want,
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A unified diff of two values as YAML, expected first.
fn diff(want: &Value, got: &Value) -> String {
    let (w, g) = (crate::cli::to_yaml(want), crate::cli::to_yaml(got));
    similar::TextDiff::from_lines(&w, &g)
        .unified_diff()
        .context_radius(2)
        .header("expected", "got")
        .to_string()
}

/// A JUnit XML report of `results` (one test case per case and pod).
pub fn junit(results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"spark-admission\" tests=\"{}\" failures=\"{failed}\">\n",
        results.len()
    );
    let mut by_suite: BTreeMap<&Path, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        by_suite.entry(r.suite.as_path()).or_default().push(r);
    }
    for (suite, cases) in by_suite {
        let failures = cases.iter().filter(|r| !r.passed()).count();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            escape(&suite.display().to_string()),
            cases.len()
        ));
        for r in cases {
            let name = escape(&r.label());
            if r.passed() {
                xml.push_str(&format!("    <testcase name=\"{name}\"/>\n"));
            } else {
                let text = escape(&r.failures.join("\n"));
                let first = escape(r.failures[0].lines().next().unwrap_or(""));
                xml.push_str(&format!(
                    "    <testcase name=\"{name}\">\n      <failure message=\"{first}\">{text}</failure>\n    </testcase>\n"
                ));
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

impl CaseResult {
    /// The case's name, with the pod when it names one.
    pub fn label(&self) -> String {
        if self.pod.is_empty() {
            self.case.clone()
        } else {
            format!("{} [{}]", self.case, self.pod)
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_looks_into_lists_mappings_and_strings() {
        let cases = [
            (
                json!([{"key": "a", "effect": "NoSchedule"}]),
                json!({"key": "a"}),
                true,
            ),
            (json!([{"key": "a"}]), json!({"key": "b"}), false),
            (
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"b": {"c": 2}}),
                true,
            ),
            (json!("-Xmx4g -Dfoo"), json!("Xmx4g"), true),
            (json!(5), json!(5), true),
            (json!([1, 2, 3]), json!([3, 1]), true),
        ];
        for (have, want, expected) in cases {
            assert_eq!(contains(&have, &want), expected, "{have} contains {want}");
        }
    }

    #[test]
    fn a_field_assertion_reports_what_it_found() {
        let pod = json!({"spec": {"nodeSelector": {"pool": "spot"}}});
        let a = |path: &str, value: Option<Value>, absent: bool| FieldAssertion {
            path: path.into(),
            value,
            absent,
            contains: None,
        };
        assert_eq!(
            check_field(
                &a("/spec/nodeSelector/pool", Some(json!("spot")), false),
                &pod
            ),
            None
        );
        assert_eq!(
            check_field(
                &a("/spec/nodeSelector/pool", Some(json!("gold")), false),
                &pod
            )
            .unwrap(),
            "/spec/nodeSelector/pool: expected \"gold\", found \"spot\""
        );
        assert_eq!(
            check_field(&a("/spec/nodeSelector", None, true), &pod).unwrap(),
            "/spec/nodeSelector: expected nothing, found {\"pool\":\"spot\"}"
        );
        assert!(check_field(&a("/spec/x", None, false), &pod)
            .unwrap()
            .contains("says nothing"));
    }

    #[test]
    fn warnings_match_one_to_one_and_extra_ones_fail() {
        let expect = Expect {
            warnings: Some(vec!["kept".into()]),
            ..Expect::default()
        };
        let got = ["toleration kept".to_string(), "other".to_string()];
        assert_eq!(
            check_warnings(&expect, &got, vec![]),
            ["unexpected warning: other"]
        );
        assert!(check_warnings(&expect, &got[..1], vec![]).is_empty());
    }

    #[test]
    fn junit_escapes_and_counts_failures() {
        let r = |failures: Vec<String>| CaseResult {
            suite: "s.yaml".into(),
            case: "a<b".into(),
            pod: "p.json".into(),
            failures,
        };
        let xml = junit(&[r(vec![]), r(vec!["x & y".into()])]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"a&lt;b [p.json]\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"x &amp; y\">x &amp; y</failure>"),
            "{xml}"
        );
    }
}
