//! The engine on every recorded Spark pod — both fixture sets — as recorded and as the API
//! server hands it to a webhook, with every example policy: the patch applies, the result is
//! a valid Pod, only what a policy asked for is touched, a second pass changes nothing, and
//! what Spark will do at runtime still works (memory, local dirs, injected env).

mod common;

use std::path::{Path, PathBuf};

use json_patch::PatchOperation;
use serde_json::Value;
use spark_admission::{evaluate, PolicySet, Verdict, POLICIES_ANNOTATION};

use common::{
    assert_valid_pod, default_like_apiserver, effective_env, fidelity_pods, fixtures,
    spark_container_index,
};

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
    let second = fidelity_pods().into_iter().map(|f| (f.file, f.pod));
    for (name, pod) in fixtures().into_iter().chain(second) {
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
        patched_count > 400,
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

/// Policies that push memory as far down as the engine lets them: a tiny overhead cap, a
/// pod cap that clamps, headroom and no-limit rules.
fn aggressive_memory_sets() -> Vec<(String, PolicySet)> {
    let head = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n";
    let doc = |name: &str, roles: &str, memory: &str| {
        format!("---\n{head}metadata: {{name: {name}}}\nspec:\n  match: {{roles: [{roles}]}}\n  memory:\n{memory}\n")
    };
    let cases = [
        (
            "overhead 1% at most 128Mi, pods clamped to 9Gi",
            doc(
                "exec",
                "executor",
                "    overhead: {factor: 0.01, max: 128Mi}\n    maxPodMemory: {value: 9Gi, action: clamp}",
            ) + &doc(
                "drv",
                "driver",
                "    maxPodMemory: {value: 64Gi, action: clamp}\n    limit: {mode: NoLimit}",
            ),
        ),
        (
            "overhead 15%, headroom 1Gi, pods clamped to 12Gi",
            doc(
                "exec",
                "executor",
                "    overhead: {factor: 0.15}\n    limit: {mode: RequestPlusHeadroom, headroom: 1Gi}\n    maxPodMemory: {value: 12Gi, action: clamp}",
            ),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, text)| {
            (
                name.to_string(),
                PolicySet::from_sources(&[("aggressive.yaml", text.as_str())]).unwrap(),
            )
        })
        .collect()
}

fn mib(q: &Value) -> u64 {
    spark_admission::quantity::Bytes::parse_quantity(q.as_str().unwrap())
        .unwrap()
        .as_mib_floor()
}

/// What Spark will do with the patched pod, checked on the second fixture set, whose
/// manifest says what Spark was given: the container holds at least heap + off-heap +
/// pyspark memory + Spark's minimum overhead; the effective SPARK_LOCAL_DIRS names only
/// mounted dirs; every env var a policy injected is the one the kubelet uses.
#[test]
fn every_recorded_pod_keeps_what_spark_needs() {
    let mut sets = policy_sets();
    sets.extend(aggressive_memory_sets());
    let mut checked = 0;
    for f in fidelity_pods() {
        let mut defaulted = f.pod.clone();
        default_like_apiserver(&mut defaulted, "spark-jobs");
        for (set_name, set) in &sets {
            let ctx = format!("{} with {set_name}", f.file);
            let eval = evaluate(set, &defaulted, None).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let pod = match eval.verdict {
                Verdict::Patched { pod, .. } => pod,
                Verdict::Unchanged => defaulted.clone(),
                Verdict::Denied { .. } => continue,
            };
            checked += 1;
            let c = &pod["spec"]["containers"][spark_container_index(&pod)];
            let floor = f.memory_floor_mib();
            let res = &c["resources"];
            assert!(
                mib(&res["requests"]["memory"]) >= floor,
                "{ctx}: request {} below {floor}Mi",
                res["requests"]["memory"]
            );
            if !res["limits"]["memory"].is_null() {
                assert!(mib(&res["limits"]["memory"]) >= floor, "{ctx}: limit");
            }

            let mounts: Vec<&str> = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["mountPath"].as_str().unwrap())
                .collect();
            let dirs = effective_env(c, "SPARK_LOCAL_DIRS").unwrap()["value"]
                .as_str()
                .unwrap();
            for dir in dirs.split(',') {
                assert!(mounts.contains(&dir), "{ctx}: {dir} is not mounted");
            }

            for p in set.policies() {
                if !eval.applied.contains(&p.name) {
                    continue;
                }
                for s in &p.secret_env {
                    let name = s.name.as_str();
                    let kept = eval
                        .warnings
                        .iter()
                        .any(|w| w.starts_with(&format!("env {name} ")) && w.contains("kept"));
                    let e = effective_env(c, name).unwrap_or_else(|| panic!("{ctx}: no {name}"));
                    let r = &e["valueFrom"]["secretKeyRef"];
                    assert!(
                        kept || (r["name"] == s.secret_name.as_str() && r["key"] == s.key.as_str()),
                        "{ctx}: {name} is {e}"
                    );
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// The second fixture set's cases the webhook must recognise, with the shipped policies.
#[test]
fn the_second_fixture_sets_special_cases_get_what_they_need() {
    let set = PolicySet::load_dir(&policies_dir()).unwrap();
    for f in fidelity_pods() {
        let mut pod = f.pod.clone();
        default_like_apiserver(&mut pod, "spark-jobs");
        let eval = evaluate(&set, &pod, None).unwrap();
        let after = match &eval.verdict {
            Verdict::Patched { pod, .. } => pod.clone(),
            other => panic!("{}: {other:?}", f.file),
        };
        let i = spark_container_index(&after);
        let c = &after["spec"]["containers"][i];
        let ctx = &f.file;
        let case = f.case["case"].as_str().unwrap();
        // A renamed Spark container gets the secrets; the sidecar is untouched.
        if case.ends_with("template-main") {
            assert_eq!(c["name"], "main", "{ctx}");
            let e = effective_env(c, "APP_ID").unwrap();
            assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], "app_id", "{ctx}");
            for (j, sidecar) in pod["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                if j != i {
                    assert_eq!(&after["spec"]["containers"][j], sidecar, "{ctx}");
                }
            }
        }
        let warned = |part: &str| eval.warnings.iter().any(|w| w.contains(part));
        // SPARK_EXECUTOR_DIRS wins at runtime: local dirs left as they are, and said so.
        if case == "executor-executor-dirs" {
            assert_eq!(
                after["spec"]["volumes"], pod["spec"]["volumes"],
                "{ctx}: volumes unchanged"
            );
            assert!(warned("SPARK_EXECUTOR_DIRS"), "{ctx}: {:?}", eval.warnings);
        }
        // Spark's on-demand claim, tmpfs: the submitter's own local dirs, kept.
        if case == "executor-pvc-on-demand" || case == "executor-tmpfs" {
            assert!(warned("own local dirs"), "{ctx}: {:?}", eval.warnings);
        }
        // Executors whose memory is not Spark's default overhead: kept, and said why.
        if ["executor-overhead-3g", "executor-offheap", "executor-tmpfs"].contains(&case)
            || case == "executor-pyspark-memory-cluster-conf"
        {
            assert_eq!(
                c["resources"], pod["spec"]["containers"][i]["resources"],
                "{ctx}"
            );
        }
        // A template's SPARK_LOCAL_DIRS is shadowed by Spark's; the policy's value is the
        // effective one, and the name is listed once.
        if case == "executor-template-local-dirs" {
            let entries = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["name"] == "SPARK_LOCAL_DIRS")
                .count();
            assert_eq!(entries, 1, "{ctx}");
            assert_eq!(
                effective_env(c, "SPARK_LOCAL_DIRS").unwrap()["value"],
                "/var/data/spark-local-dir-1",
                "{ctx}"
            );
        }
    }
}
