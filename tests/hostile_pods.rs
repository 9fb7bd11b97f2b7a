//! Pods a hostile tenant can send: the engine's work stays linear and its patch small, for
//! every list it touches, and a pod whose lists would take too much memory once parsed is
//! refused before it is parsed. (What they cost in time and memory is measured by
//! `examples/review_cost` and BENCHMARKS.md, not asserted here.)

mod common;

use std::path::Path;

use serde_json::{json, Value};
use spark_admission::admission::{review, NoNamespaces};
use spark_admission::pod_size::{MAX_CONTAINERS, MAX_LIST_ENTRIES, MAX_VOLUMES};
use spark_admission::{evaluate, PolicySet, Verdict};

fn shipped() -> PolicySet {
    PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

/// The patch, checked: it applies, the result is a valid Pod, a second pass changes nothing.
fn patch_of(set: &PolicySet, pod: &Value, what: &str) -> json_patch::Patch {
    let eval = evaluate(set, pod, None).unwrap_or_else(|e| panic!("{what}: {e}"));
    let Verdict::Patched {
        patch,
        pod: patched,
    } = eval.verdict
    else {
        panic!("{what}: expected a patch, got {:?}", eval.verdict);
    };
    common::assert_valid_pod(&patched, what);
    let again = evaluate(set, &patched, None).unwrap();
    assert_eq!(again.verdict, Verdict::Unchanged, "{what}: second pass");
    patch
}

#[test]
fn a_pod_with_16000_env_vars_gets_as_small_a_patch_as_an_ordinary_one() {
    let set = shipped();
    let ordinary = patch_of(&set, &common::hostile_executor(0, 0), "ordinary");
    let hostile = common::hostile_executor(16_000, 0);
    assert!(serde_json::to_vec(&hostile).unwrap().len() > 500_000);
    let patch = patch_of(&set, &hostile, "16,000 env vars");
    assert_eq!(patch.0.len(), ordinary.0.len(), "{patch:?}");
}

#[test]
fn a_pod_with_16000_volumes_gets_as_small_a_patch_as_an_ordinary_one() {
    let set = shipped();
    let ordinary = patch_of(&set, &common::hostile_executor(0, 0), "ordinary");
    let patch = patch_of(&set, &common::hostile_executor(0, 16_000), "16,000 volumes");
    assert_eq!(patch.0.len(), ordinary.0.len(), "{patch:?}");
}

/// The AdmissionReview's response for `pod` (a Pod CREATE) under the shipped policies.
fn response_to(set: &PolicySet, pod: &Value) -> Value {
    let body = serde_json::to_vec(&common::server::admission_review(
        "u",
        "CREATE",
        Some(pod),
        false,
    ))
    .unwrap();
    let reply = review(set, &NoNamespaces, &body);
    assert_eq!(
        reply.http_status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer: Value = serde_json::from_slice(&reply.body).unwrap();
    answer["response"].clone()
}

/// Lists whose JSON is small but whose typed form is not (a 3 MiB review of 101,000 minimal
/// volumes held 728 MiB of heap once parsed) are counted before the pod is parsed, and a pod
/// over a limit is refused with the count; the largest pods the limits allow are answered.
#[test]
fn a_pod_whose_lists_would_not_fit_in_memory_is_refused_before_it_is_parsed() {
    let set = shipped();
    let named = |n: usize| {
        (0..n)
            .map(|i| json!({"name": format!("x{i}")}))
            .collect::<Vec<_>>()
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut pod = common::hostile_executor(0, 0);
        edit(&mut pod);
        pod
    };
    let refused = [
        (
            with(&|p| p["spec"]["volumes"] = Value::Array(named(MAX_VOLUMES + 1))),
            "spec.volumes has 16385 entries",
        ),
        (
            with(&|p| {
                let first = p["spec"]["containers"][0].clone();
                let mut containers = named(MAX_CONTAINERS);
                containers.insert(0, first);
                p["spec"]["containers"] = Value::Array(containers);
                // Counted only in pods over 16 KiB: smaller ones cannot take much memory.
                p["metadata"]["annotations"] = json!({"pad": "x".repeat(16 * 1024)});
            }),
            "ephemeralContainers together has 257 entries",
        ),
        (
            with(&|p| p["spec"]["tolerations"] = Value::Array(vec![json!({}); MAX_LIST_ENTRIES])),
            "the pod's lists together has",
        ),
    ];
    for (pod, why) in refused {
        let response = response_to(&set, &pod);
        assert_eq!(response["allowed"], false, "{why}");
        assert_eq!(response["status"]["code"], 400, "{why}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("request.object is too large to evaluate"),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
    }

    // At the limits: the 16,000-volume and 16,000-env pods are patched as usual.
    for pod in [
        common::hostile_executor(0, 16_000),
        common::hostile_executor(16_000, 0),
    ] {
        let response = response_to(&set, &pod);
        assert_eq!(response["allowed"], true, "{response}");
        assert!(response["patch"].is_string(), "{response}");
    }

    // A pod that is not a Spark pod is not looked into, however long its lists.
    let mut plain = with(&|p| p["spec"]["volumes"] = Value::Array(named(MAX_VOLUMES + 1)));
    plain["metadata"]["labels"] = json!({"app": "web"});
    let response = response_to(&set, &plain);
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
}

/// The pod as the engine leaves it, annotations aside (`None` when denied).
fn result_without_annotations(set: &PolicySet, pod: &Value) -> Option<Value> {
    let eval = evaluate(set, pod, None).unwrap();
    let mut out = match eval.verdict {
        Verdict::Unchanged => pod.clone(),
        Verdict::Patched { pod, .. } => pod,
        Verdict::Denied { .. } => return None,
    };
    if let Some(m) = out["metadata"].as_object_mut() {
        m.remove("annotations");
    }
    Some(out)
}

/// Annotations under the webhook's own prefix are the tenant's to write, so the engine reads
/// none of them: a forged `spark-admission.dev/driver-heap` (the figure an old version
/// trusted to lower a driver's memory), a forged list of applied policies or audit, or any
/// other key, leaves every recorded pod exactly as it would be without them.
#[test]
fn forged_webhook_annotations_change_nothing_for_any_recorded_pod() {
    let set = shipped();
    let forged = [
        ("spark-admission.dev/driver-heap", "1408Mi"),
        ("spark-admission.dev/driver-heap-source", "webhook"),
        ("spark-admission.dev/policies", "executors-on-spot"),
        ("spark-admission.dev/audit", "memory-overhead-cap"),
        ("spark-admission.dev/memory-overhead", "1Gi"),
        ("spark-admission.dev/skip", "true"),
    ];
    let mut drivers = 0;
    for (name, pod) in common::fixtures() {
        let pod = common::api_server_defaults(pod);
        let mut with = pod.clone();
        let annotations = with["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        for (k, v) in forged {
            annotations[k] = v.into();
        }
        assert_eq!(
            result_without_annotations(&set, &with),
            result_without_annotations(&set, &pod),
            "{name}: a forged annotation changed the result"
        );
        drivers += usize::from(pod["metadata"]["labels"]["spark-role"] == "driver");
    }
    assert!(drivers >= 3, "recorded drivers: {drivers}");
}
