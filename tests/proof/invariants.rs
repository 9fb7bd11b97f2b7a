//! What every admission of a generated pod must keep, checked on each input (a failed check
//! panics with what broke, which is what libFuzzer and proptest look for):
//! - the engine never fails on its own account (no `Internal` error, no panic), and never
//!   refuses a pod the API server accepts;
//! - the patch applies, both as RFC 6902 says (json-patch) and as the API server applies it
//!   (evanphx/json-patch v4, in the stand-in), with the same result;
//! - the patched pod is valid by the stand-in's Pod validation whenever the pod was valid;
//! - a second pass over the patched pod (after the API server's defaulting, as a
//!   reinvocation sees it) gives no patch;
//! - no container but the Spark container changes, and none at all when the pod is
//!   ambiguous; init containers never;
//! - the work stays linear: the patch does not grow with entries the policies do not touch
//!   (the same pod with hundreds more env vars, mounts, volumes and tolerations gets a patch
//!   of as many operations), and its size stays within the pod's.

use serde_json::Value;
use spark_admission::engine::PodError;
use spark_admission::{evaluate, PolicySet, Verdict, POLICIES_ANNOTATION};

use super::defaults::default_like_apiserver;
use super::podgen::{with_filler, Case};

/// What happened to one case, for the run's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The API server refuses the pod before any webhook (it does not decode as a Pod).
    RefusedByApiServer,
    /// The engine refused it (the pod was invalid for the API server too).
    Refused,
    Unchanged,
    Patched,
    Denied,
}

/// Statistics of a run.
#[derive(Debug, Default)]
pub struct Tally {
    pub cases: usize,
    pub valid: usize,
    pub refused_by_api_server: usize,
    pub refused: usize,
    pub unchanged: usize,
    pub patched: usize,
    pub denied: usize,
}

impl Tally {
    pub fn add(&mut self, seen: Seen, valid: bool) {
        self.cases += 1;
        self.valid += usize::from(valid);
        match seen {
            Seen::RefusedByApiServer => self.refused_by_api_server += 1,
            Seen::Refused => self.refused += 1,
            Seen::Unchanged => self.unchanged += 1,
            Seen::Patched => self.patched += 1,
            Seen::Denied => self.denied += 1,
        }
    }
}

/// The pod of `case` as the webhook receives it: decoded and defaulted by the API server
/// (the stand-in's code), then, when the case says so, the ServiceAccount and
/// DefaultTolerationSeconds plugins' additions. `None` when the API server refuses it.
pub fn webhook_input(case: &Case) -> Option<Value> {
    let mut pod = standin_rules::as_webhook_sees(&case.pod, &case.namespace).ok()?;
    let containers_are_objects = pod["spec"]["containers"]
        .as_array()
        .is_some_and(|cs| cs.iter().all(Value::is_object));
    if case.plugins && containers_are_objects {
        default_like_apiserver(&mut pod, &case.namespace);
        pod = standin_rules::typed::pod(&pod).ok()?.value;
    }
    Some(pod)
}

/// Check every invariant on one case against `set`; `filler` is how many untouched entries
/// the linearity check adds (0: skipped).
pub fn check(set: &PolicySet, case: &Case, filler: usize) -> (Seen, bool) {
    let ns = case.namespace.as_str();
    let Some(pod) = webhook_input(case) else {
        // Never reaches a webhook; the engine must still answer it without failing.
        if let Err(PodError::Internal(e)) = evaluate(set, &case.pod, Some(ns)) {
            panic!("internal error on a pod the API server refuses: {e}");
        }
        return (Seen::RefusedByApiServer, false);
    };
    let valid = standin_rules::validation_errors(&pod).is_empty();
    let evaluation = match evaluate(set, &pod, Some(ns)) {
        Ok(e) => e,
        Err(PodError::Internal(e)) => panic!("internal error: {e}\npod: {pod}"),
        Err(e) => {
            assert!(
                !valid,
                "the webhook refuses a pod the API server accepts: {e}\npod: {pod}"
            );
            return (Seen::Refused, valid);
        }
    };
    let seen = match &evaluation.verdict {
        Verdict::Unchanged => Seen::Unchanged,
        Verdict::Denied { policy, message } => {
            assert!(
                set.names().iter().any(|n| n == policy),
                "denied by {policy}, which is not in the set"
            );
            assert!(!message.is_empty(), "a denial without a message");
            return (Seen::Denied, valid);
        }
        Verdict::Patched {
            patch,
            pod: patched,
        } => {
            check_patch(set, case, &pod, patch, patched, valid);
            if !evaluation.applied.is_empty() {
                assert_eq!(
                    patched["metadata"]["annotations"][POLICIES_ANNOTATION],
                    Value::from(evaluation.applied.join(",")),
                    "the policies annotation names the applied policies"
                );
            }
            Seen::Patched
        }
    };
    if filler > 0 {
        check_linear(set, case, &pod, &evaluation.verdict, filler);
    }
    (seen, valid)
}

fn check_patch(
    set: &PolicySet,
    case: &Case,
    pod: &Value,
    patch: &json_patch::Patch,
    patched: &Value,
    valid: bool,
) {
    let ns = case.namespace.as_str();
    assert!(!patch.0.is_empty(), "Patched with an empty patch");
    let bytes = serde_json::to_vec(patch).expect("a patch serialises");
    // As the API server applies it: evanphx/json-patch v4, then decode and default.
    let raw = standin_rules::jsonpatch::Patch::decode(&bytes)
        .and_then(|p| p.apply(pod))
        .unwrap_or_else(|e| panic!("the API server cannot apply the patch: {e}\npatch: {patch}"));
    assert_eq!(
        &raw, patched,
        "RFC 6902 and the API server's JSON Patch disagree on {patch}"
    );
    let after = standin_rules::apply_webhook_patch(pod, &bytes)
        .unwrap_or_else(|e| panic!("the patched pod does not decode as a Pod: {e}"));
    // (A pod that was invalid already is refused by the API server whatever the patch.)
    if valid {
        let errors = standin_rules::validation_errors(&after);
        assert!(
            errors.is_empty(),
            "the patch makes a valid pod invalid: {errors:?}\npatch: {patch}\npod: {pod}"
        );
    }

    // Sidecars and init containers untouched; the Spark container only when identified.
    let before_cs = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let after_cs = patched["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        before_cs.len(),
        after_cs.len(),
        "containers added or removed"
    );
    for (i, (b, a)) in before_cs.iter().zip(&after_cs).enumerate() {
        if b != a {
            assert_eq!(
                Some(i),
                case.spark,
                "container {i} ({}) is not the Spark container but was changed",
                b["name"]
            );
        }
    }
    assert_eq!(
        pod["spec"]["initContainers"], patched["spec"]["initContainers"],
        "init containers changed"
    );

    // A reinvocation sees the defaulted result and changes nothing.
    match evaluate(set, &after, Some(ns)) {
        Ok(again) => assert!(
            again.verdict == Verdict::Unchanged,
            "a second pass changes the pod again: {}\nfirst patch: {patch}\npod: {pod}",
            match &again.verdict {
                Verdict::Patched { patch, .. } => patch.to_string(),
                other => format!("{other:?}"),
            }
        ),
        Err(e) => panic!("the second pass fails: {e}\nfirst patch: {patch}"),
    }
}

/// The patch does not grow with entries the policies leave alone: the pod with `filler`
/// and with twice as many untouched entries in each list gets patches of as many
/// operations (the diff is anchored on unchanged entries, so they cost nothing); and no
/// patch is larger than the pod plus what the policies add.
fn check_linear(set: &PolicySet, case: &Case, pod: &Value, verdict: &Verdict, filler: usize) {
    let ns = case.namespace.as_str();
    let ops = |n: usize| -> Option<usize> {
        let padded = with_filler(pod, case.spark, case.filler_at, n);
        match evaluate(set, &padded, Some(ns)) {
            Ok(e) => match e.verdict {
                Verdict::Patched { patch, .. } => Some(patch.0.len()),
                _ => None,
            },
            Err(e) => panic!("the pod with {n} untouched entries more fails: {e}"),
        }
    };
    let (one, two) = (ops(filler), ops(2 * filler));
    assert_eq!(
        one, two,
        "{filler} more untouched entries per list changed the patch's length"
    );
    if let Verdict::Patched { patch, .. } = verdict {
        let size = serde_json::to_vec(patch).map_or(0, |b| b.len());
        let pod_size = serde_json::to_vec(pod).map_or(0, |b| b.len());
        assert!(
            size <= pod_size + 64 * 1024,
            "a patch of {size} bytes for a pod of {pod_size}"
        );
    }
}
