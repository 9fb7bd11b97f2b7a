//! The engine on every recorded Spark pod, as recorded and as the API server hands it to a
//! webhook, with every example policy: the patch applies, the result is a valid Pod, only
//! what a policy asked for is touched, and a second pass changes nothing.

mod common;

use std::path::{Path, PathBuf};

use json_patch::PatchOperation;
use serde_json::Value;
use spark_admission::{evaluate, PolicySet, Verdict, POLICIES_ANNOTATION};

use common::{assert_valid_pod, default_like_apiserver, fixtures};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// Every example file under policies/, read as text.
fn example_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                let rel = p
                    .strip_prefix(policies_dir())
                    .unwrap()
                    .display()
                    .to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = vec![];
    walk(&policies_dir(), &mut out);
    out.sort();
    assert!(out.len() >= 8, "example policies missing: {out:?}");
    out
}

fn enforced(text: &str) -> String {
    text.replace("mode: Off", "mode: Enforce")
}

/// The policy sets under test: the shipped directory as is, each example file switched on
/// alone, and each platform's placement combined with every common example.
fn policy_sets() -> Vec<(String, PolicySet)> {
    let mut sets = vec![(
        "policies/ as shipped".to_string(),
        PolicySet::load_dir(&policies_dir()).unwrap(),
    )];
    let files = example_files();
    for (name, text) in &files {
        let text = enforced(text);
        sets.push((
            format!("{name} (enforced)"),
            PolicySet::from_sources(&[(name.as_str(), text.as_str())]).unwrap(),
        ));
    }
    let common: Vec<&(String, String)> = files
        .iter()
        .filter(|(n, _)| !n.starts_with("placement/") && !n.contains("ephemeral"))
        .collect();
    for (name, text) in files.iter().filter(|(n, _)| n.starts_with("placement/")) {
        let mut sources: Vec<(String, String)> = vec![(name.clone(), enforced(text))];
        sources.extend(common.iter().map(|(n, t)| (n.clone(), enforced(t))));
        let refs: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        sets.push((
            format!("{name} + common"),
            PolicySet::from_sources(&refs).unwrap(),
        ));
    }
    // Audit only: every example in Audit mode changes nothing but the audit annotation.
    let audit: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.replace("mode: Off", "mode: Audit")
                    .replace("spec:\n  match:", "spec:\n  mode: Audit\n  match:"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = audit
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    sets.push((
        "all examples in Audit".into(),
        PolicySet::from_sources(&refs).unwrap(),
    ));
    sets
}

/// The pod as the webhook may receive it: as recorded, and defaulted by the API server.
fn pod_variants() -> Vec<(String, Value)> {
    let mut out = vec![];
    for (name, pod) in fixtures() {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let mut defaulted = pod.clone();
        default_like_apiserver(&mut defaulted, &ns);
        out.push((format!("{name} (recorded)"), pod));
        out.push((format!("{name} (defaulted)"), defaulted));
    }
    out
}

fn spark_container_index(pod: &Value) -> usize {
    let cs = pod["spec"]["containers"].as_array().unwrap();
    cs.iter()
        .position(|c| c["name"].as_str().unwrap().starts_with("spark-kubernetes-"))
        .unwrap()
}

fn op_path(op: &PatchOperation) -> String {
    match op {
        PatchOperation::Add(o) => o.path.to_string(),
        PatchOperation::Remove(o) => o.path.to_string(),
        PatchOperation::Replace(o) => o.path.to_string(),
        PatchOperation::Move(o) => o.path.to_string(),
        PatchOperation::Copy(o) => o.path.to_string(),
        PatchOperation::Test(o) => o.path.to_string(),
    }
}

#[test]
fn every_fixture_with_every_example_policy_set() {
    let sets = policy_sets();
    let mut patched_count = 0;
    for (set_name, set) in &sets {
        for (pod_name, pod) in pod_variants() {
            let ctx = format!("{pod_name} with {set_name}");
            let eval = evaluate(set, &pod, None).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(eval.role.is_some(), "{ctx}: a Spark pod");
            let (patch, patched) = match eval.verdict {
                Verdict::Denied { policy, message } => {
                    panic!("{ctx}: example policies never deny these pods: {policy}: {message}")
                }
                Verdict::Unchanged => {
                    assert_valid_pod(&pod, &ctx);
                    continue;
                }
                Verdict::Patched { patch, pod } => (patch, pod),
            };
            patched_count += 1;
            assert!(
                !patch.0.is_empty(),
                "{ctx}: Patched carries a non-empty patch"
            );

            // The patch applies to the original JSON and gives the reported pod.
            let mut applied = pod.clone();
            json_patch::patch(&mut applied, &patch).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(applied, patched, "{ctx}");
            assert_valid_pod(&patched, &ctx);

            // Only what policies may touch is touched.
            let spark = spark_container_index(&pod);
            let allowed = [
                "/metadata/annotations".to_string(),
                "/spec/nodeSelector".into(),
                "/spec/affinity".into(),
                "/spec/tolerations".into(),
                "/spec/volumes".into(),
                format!("/spec/containers/{spark}/env"),
                format!("/spec/containers/{spark}/volumeMounts"),
                format!("/spec/containers/{spark}/resources"),
            ];
            for op in &patch.0 {
                let path = op_path(op);
                assert!(
                    allowed
                        .iter()
                        .any(|a| path == *a || path.starts_with(&format!("{a}/"))),
                    "{ctx}: patch touches {path}"
                );
                assert!(!matches!(
                    op,
                    PatchOperation::Move(_) | PatchOperation::Copy(_)
                ));
            }
            // Sidecars and init containers are untouched.
            let containers = |p: &Value| p["spec"]["containers"].as_array().unwrap().clone();
            for (i, (a, b)) in containers(&pod)
                .iter()
                .zip(containers(&patched).iter())
                .enumerate()
            {
                if i != spark {
                    assert_eq!(a, b, "{ctx}: sidecar {i} changed");
                }
            }
            assert_eq!(
                pod["spec"]["initContainers"], patched["spec"]["initContainers"],
                "{ctx}"
            );
            // The annotation names the enforced policies.
            if !eval.applied.is_empty() {
                assert_eq!(
                    patched["metadata"]["annotations"][POLICIES_ANNOTATION],
                    eval.applied.join(","),
                    "{ctx}"
                );
            }
            if set_name.contains("Audit") {
                let only_annotations = patch
                    .0
                    .iter()
                    .all(|op| op_path(op).starts_with("/metadata/annotations"));
                assert!(
                    only_annotations,
                    "{ctx}: Audit changes nothing but annotations"
                );
                assert!(
                    !eval.audited.is_empty() && !eval.warnings.is_empty(),
                    "{ctx}"
                );
            }

            // A second pass (reinvocation) changes nothing.
            let again = evaluate(set, &patched, None).unwrap();
            assert_eq!(again.verdict, Verdict::Unchanged, "{ctx}: second pass");
        }
    }
    assert!(
        patched_count > 40,
        "the matrix really patches pods ({patched_count})"
    );
}

#[test]
fn non_spark_pods_are_never_changed() {
    let set = PolicySet::load_dir(&policies_dir()).unwrap();
    for (name, mut pod) in pod_variants() {
        for role in [None, Some("shuffle-service"), Some("Driver"), Some("")] {
            let labels = pod["metadata"]["labels"].as_object_mut().unwrap();
            match role {
                None => {
                    labels.remove("spark-role");
                }
                Some(r) => {
                    labels.insert("spark-role".into(), r.into());
                }
            }
            let eval = evaluate(&set, &pod, None).unwrap();
            assert_eq!(eval.role, None, "{name} {role:?}");
            assert_eq!(eval.verdict, Verdict::Unchanged, "{name} {role:?}");
        }
    }
}

#[test]
fn fields_unknown_to_the_typed_model_survive() {
    let set = PolicySet::load_dir(&policies_dir()).unwrap();
    for (name, mut pod) in pod_variants() {
        let spark = spark_container_index(&pod);
        pod["spec"]["futureSpecField"] = serde_json::json!({"a": 1});
        pod["spec"]["containers"][spark]["futureContainerField"] = serde_json::json!(true);
        pod["metadata"]["futureMetaField"] = serde_json::json!("x");
        for v in pod["spec"]["volumes"].as_array_mut().unwrap() {
            v["futureVolumeField"] = serde_json::json!(1);
        }
        let Verdict::Patched { pod: patched, .. } = evaluate(&set, &pod, None).unwrap().verdict
        else {
            panic!("{name}: expected a patch");
        };
        assert_eq!(patched["spec"]["futureSpecField"]["a"], 1, "{name}");
        assert_eq!(
            patched["spec"]["containers"][spark]["futureContainerField"], true,
            "{name}"
        );
        assert_eq!(patched["metadata"]["futureMetaField"], "x", "{name}");
        let kept = patched["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["futureVolumeField"] == 1)
            .count();
        assert_eq!(
            kept,
            pod["spec"]["volumes"].as_array().unwrap().len(),
            "{name}"
        );
    }
}

#[test]
fn shipped_policies_do_what_the_readme_says() {
    let set = PolicySet::load_dir(&policies_dir()).unwrap();
    let by_name: std::collections::BTreeMap<String, Value> = fixtures().into_iter().collect();
    let patched = |name: &str| {
        let mut pod = by_name[name].clone();
        default_like_apiserver(&mut pod, "default");
        match evaluate(&set, &pod, None).unwrap().verdict {
            Verdict::Patched { pod, .. } => pod,
            other => panic!("{name}: {other:?}"),
        }
    };
    // Executor: spot with the AKS toleration, an emptyDir local dir capped at 400Gi, secrets.
    let exec = patched("spark-3.5-executor-python.json");
    assert_eq!(
        exec["spec"]["nodeSelector"]["kubernetes.azure.com/scalesetpriority"],
        "spot"
    );
    let tolerations = exec["spec"]["tolerations"].as_array().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["key"] == "kubernetes.azure.com/scalesetpriority"
            && t["value"] == "spot"
            && t["effect"] == "NoSchedule"));
    let env = exec["spec"]["containers"][0]["env"].as_array().unwrap();
    let local = env
        .iter()
        .find(|e| e["name"] == "SPARK_LOCAL_DIRS")
        .unwrap();
    assert_eq!(local["value"], "/var/data/spark-local-dir-1");
    let scratch = exec["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "spark-local-dir-1")
        .unwrap();
    assert_eq!(
        scratch["emptyDir"],
        serde_json::json!({"sizeLimit": "400Gi"})
    );
    for name in ["APP_ID", "TENANT_ID", "APP_SECRET", "BLOB_STORAGE_URL"] {
        let e = env.iter().find(|e| e["name"] == name).unwrap();
        assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "app", "{name}");
    }
    // Python driver: on-demand (not spot); its memory is Spark's (a driver's heap is not in
    // its pod, so memory policies never lower it).
    let driver = patched("spark-3.5-driver-python.json");
    let expr = &driver["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0];
    assert_eq!(expr["key"], "kubernetes.azure.com/scalesetpriority");
    assert_eq!(expr["operator"], "NotIn");
    let resources = &driver["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["memory"], "5734Mi");
    assert_eq!(resources["limits"]["memory"], "5734Mi");
    // Driver local dirs are left to Spark (the example policy targets executors).
    assert_eq!(
        driver["spec"]["volumes"][0]["emptyDir"],
        serde_json::json!({})
    );
}
