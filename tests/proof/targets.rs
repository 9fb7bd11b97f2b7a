//! The bodies of the fuzz targets (fuzz/fuzz_targets/*.rs call these), also replayed on the
//! committed corpora by `tests/fuzz_corpus.rs`.

use base64::Engine as _;
use serde_json::Value;
use spark_admission::admission::{review, NoNamespaces, Outcome, MAX_WARNING_CHARS};
use spark_admission::PolicySet;

use super::invariants::{check, Seen};
use super::podgen::{generate, Case};
use super::world;

/// Longest generated list (env vars, volumes, tolerations…) in one edit.
pub const MAX_LIST: usize = 2000;
/// Untouched entries added per list by the linearity check.
pub const FILLER: usize = 300;

/// `engine`: bytes → a structure-aware pod and a policy set → every invariant of
/// [`super::invariants`].
pub fn engine(data: &[u8]) -> (Seen, bool) {
    engine_with(data, MAX_LIST, FILLER)
}

/// [`engine`] with smaller lists, for the property tests' debug builds.
pub fn engine_with(data: &[u8], max_list: usize, filler: usize) -> (Seen, bool) {
    let w = world();
    let case = generate(&w.bases, w.sets.len(), data, max_list);
    check(&w.sets[case.set].1, &case, filler)
}

/// `admission_body`: any bytes as a `/mutate` body → a well-formed answer under every
/// policy set: an AdmissionReview echoing the uid (HTTP 200) or a plain-text 400 saying why;
/// never a 500 (that is an engine bug), never a panic.
pub fn admission_body(data: &[u8]) {
    for (name, set) in &world().sets {
        check_reply(name, set, data);
    }
}

fn check_reply(set_name: &str, set: &PolicySet, body: &[u8]) {
    let reply = review(set, &NoNamespaces, body);
    let text = String::from_utf8_lossy(&reply.body);
    match reply.http_status {
        200 => {
            assert_eq!(reply.content_type, "application/json");
            let answer: Value = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|e| panic!("a 200 answer that is not JSON ({e}): {text}"));
            assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(answer["kind"], "AdmissionReview");
            let response = &answer["response"];
            // The uid echoed is the request's (the body was JSON with a string uid).
            let request: Value =
                serde_json::from_slice(body).expect("a 200 answer to a body that is not JSON");
            assert_eq!(response["uid"], request["request"]["uid"], "uid not echoed");
            assert!(response["uid"].as_str().is_some_and(|u| !u.is_empty()));
            let allowed = response["allowed"]
                .as_bool()
                .unwrap_or_else(|| panic!("allowed missing: {text}"));
            for w in response["warnings"].as_array().into_iter().flatten() {
                let w = w.as_str().expect("warnings are strings");
                assert!(
                    w.chars().count() <= MAX_WARNING_CHARS,
                    "warning too long: {w}"
                );
                assert!(
                    !w.chars().any(char::is_control),
                    "control character in {w:?}"
                );
            }
            if allowed {
                assert!(
                    response.get("status").is_none(),
                    "allowed with a status: {text}"
                );
                if let Some(b64) = response.get("patch") {
                    assert_eq!(response["patchType"], "JSONPatch");
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.as_str().expect("patch is a base64 string"))
                        .expect("patch is valid base64");
                    let patch: json_patch::Patch =
                        serde_json::from_slice(&bytes).expect("patch is an RFC 6902 array");
                    let mut object = request["request"]["object"].clone();
                    json_patch::patch(&mut object, &patch).unwrap_or_else(|e| {
                        panic!("the answer's patch does not apply to request.object: {e}")
                    });
                } else {
                    assert!(response.get("patchType").is_none());
                }
            } else {
                let code = response["status"]["code"].as_u64();
                assert!(
                    matches!(code, Some(400 | 403)),
                    "a denial with code {code:?}: {text}"
                );
                let message = response["status"]["message"].as_str().unwrap_or("");
                assert!(message.starts_with("spark-admission: "), "{message:?}");
                assert!(response.get("patch").is_none());
            }
        }
        400 => {
            assert_eq!(reply.content_type, "text/plain; charset=utf-8");
            assert!(std::str::from_utf8(&reply.body).is_ok(), "not UTF-8");
            assert!(text.ends_with('\n') && text.trim().len() > 10, "{text:?}");
            assert_eq!(reply.summary.outcome, Outcome::Error);
        }
        status => panic!("HTTP {status} with policy set {set_name}: {text}"),
    }
}

/// `policy_set`: any bytes as a policy file → either a set that loads, whose policies the
/// engine applies to recorded pods keeping every invariant, or errors that each name the
/// file, a line and a column within it and say something.
pub fn policy_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count() as u64;
    match PolicySet::from_sources(&[("fuzz.yaml", text.as_ref())]) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without an error");
            for e in &errors.0 {
                assert_eq!(e.file, std::path::Path::new("fuzz.yaml"));
                assert!(
                    !e.message.trim().is_empty() && !e.message.contains('\n'),
                    "message {:?}",
                    e.message
                );
                if e.line == 0 {
                    // Only a file without any policy is reported without a line.
                    assert!(e.message.contains("holds no policy"), "no line for: {e}");
                } else {
                    assert!(
                        e.line <= lines + 1,
                        "line {} of a {lines}-line file: {e}",
                        e.line
                    );
                    assert!(e.column >= 1, "no column: {e}");
                }
            }
        }
        Ok(set) => {
            assert!(!set.is_empty(), "a set of zero policies");
            for name in set.names() {
                assert!(!name.is_empty());
            }
            for base in policy_set_pods() {
                check(&set, &Case::of(base.clone(), "spark"), 0);
            }
        }
    }
}

/// A driver with a sidecar and an executor with its own local dirs.
fn policy_set_pods() -> &'static [Value] {
    static PODS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    PODS.get_or_init(|| {
        let dir = super::repo_root().join("tests/fixtures");
        [
            "spark-3.5-driver-podtemplate-sidecar.json",
            "spark-3.5-executor-hostpath-localdirs.json",
            "spark-3.5-executor-python.json",
        ]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).expect("fixture");
            serde_json::from_str(&text).expect("fixture JSON")
        })
        .collect()
    })
}
