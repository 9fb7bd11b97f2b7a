//! What Spark will do with a pod after the webhook: the cases of issue 9, each reproduced on a
//! recorded pod changed the way Spark itself changes it for that configuration (the figures
//! follow Spark's sizing code; the second fixture set in `tests/fixtures/fidelity/` shows
//! them recorded). Each case fails on the engine as it was before the fix.

mod common;

use serde_json::{json, Value};
use spark_admission::{evaluate, Evaluation, PolicySet, Verdict};

use common::{api_server_defaults, fixture};

const HEADER: &str = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n";

/// One policy document named `name` matching `roles`, with `body` under `spec`.
fn policy(name: &str, roles: &str, body: &str) -> String {
    format!(
        "---\n{HEADER}metadata: {{name: {name}}}\nspec:\n  match: {{roles: [{roles}]}}\n{body}\n"
    )
}

fn set(docs: &[String]) -> PolicySet {
    let text = docs.concat();
    PolicySet::from_sources(&[("test.yaml", text.as_str())])
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The memory policy as shipped before issue 9: 15% at most 4Gi, at least 384Mi.
fn overhead_cap(roles: &str) -> String {
    policy(
        "memory-overhead-cap",
        roles,
        "  memory:\n    overhead: {factor: 0.15, min: 384Mi, max: 4Gi}\n    limit: {mode: EqualToRequest}",
    )
}

fn eval(set: &PolicySet, pod: &Value) -> Evaluation {
    evaluate(set, pod, None).unwrap()
}

/// The pod after the webhook (the input when nothing changed).
fn patched(set: &PolicySet, pod: &Value) -> Value {
    match eval(set, pod).verdict {
        Verdict::Patched { pod, .. } => pod,
        Verdict::Unchanged => pod.clone(),
        Verdict::Denied { policy, message } => panic!("denied by {policy}: {message}"),
    }
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn mib(q: &Value) -> u64 {
    let s = q.as_str().unwrap();
    if let Some(n) = s.strip_suffix("Mi") {
        n.parse().unwrap()
    } else if let Some(n) = s.strip_suffix("Gi") {
        n.parse::<u64>().unwrap() * 1024
    } else {
        panic!("quantity {s}")
    }
}

fn memory_mib(pod: &Value, cname: &str) -> (u64, u64) {
    let r = &container(pod, cname)["resources"];
    (mib(&r["requests"]["memory"]), mib(&r["limits"]["memory"]))
}

/// A recorded pod whose Spark container is sized `total_mib` (request = limit, as Spark does).
fn with_memory(mut pod: Value, cname: &str, total_mib: u64) -> Value {
    let cs = pod["spec"]["containers"].as_array_mut().unwrap();
    let c = cs.iter_mut().find(|c| c["name"] == cname).unwrap();
    c["resources"]["requests"]["memory"] = json!(format!("{total_mib}Mi"));
    c["resources"]["limits"]["memory"] = json!(format!("{total_mib}Mi"));
    pod
}

fn set_env(pod: &mut Value, cname: &str, name: &str, value: &str) {
    let cs = pod["spec"]["containers"].as_array_mut().unwrap();
    let c = cs.iter_mut().find(|c| c["name"] == cname).unwrap();
    for e in c["env"].as_array_mut().unwrap() {
        if e["name"] == name {
            e["value"] = json!(value);
        }
    }
}

/// The value the kubelet gives env var `name`: its last entry.
fn effective_env<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["name"] == name)
}

const DRIVER: &str = "spark-kubernetes-driver";
const EXECUTOR: &str = "spark-kubernetes-executor";

/// Drivers capped at `cap`, clamped rather than denied.
fn driver_clamp(cap: &str) -> String {
    policy(
        "driver-memory",
        "driver",
        &format!("  memory:\n    maxPodMemory: {{value: {cap}, action: clamp}}\n    limit: {{mode: EqualToRequest}}"),
    )
}

#[test]
fn a_driver_is_never_shrunk_when_its_heap_is_only_inferred() {
    // BasicDriverFeatureStep: request = limit = heap + overhead. Each total also fits Spark's
    // default rule for another heap, which inverting the formula would pick.
    let cases = [
        // PySpark, spark.driver.memory=6g, spark.driver.memoryOverhead=1g: 7168Mi = 5g × 1.4.
        ("spark-3.5-driver-python.json", 6144 + 1024),
        // PySpark, 7g with spark.driver.memoryOverheadFactor=0.1: 7168 + 716.
        ("spark-3.5-driver-python.json", 7168 + 716),
        // JVM, 2g + explicit 384m: also Spark's default for 2g.
        ("spark-3.5-driver-jvm.json", 2048 + 384),
        // PySpark, 4g with the default 0.4: the most common driver of all.
        ("spark-3.5-driver-python.json", 4096 + 1638),
    ];
    let under = set(&[overhead_cap("executor"), driver_clamp("64Gi")]);
    let over = set(&[overhead_cap("executor"), driver_clamp("2Gi")]);
    for (name, total) in cases {
        let pod = api_server_defaults(with_memory(fixture(name), DRIVER, total));
        let after = patched(&under, &pod);
        assert_eq!(
            memory_mib(&after, DRIVER),
            (total, total),
            "{name} at {total}Mi"
        );
        match eval(&over, &pod).verdict {
            Verdict::Denied { message, .. } => {
                assert!(message.contains("heap is not known"), "{message}")
            }
            other => panic!("{name} at {total}Mi over the cap: {other:?}"),
        }
    }
    // The old way to lower a driver, an overhead bound, is refused when the set loads.
    let text = overhead_cap("driver, executor");
    let errors = PolicySet::from_sources(&[("m.yaml", text.as_str())]).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("a driver's heap is not in its pod"),
        "{errors}"
    );
}

#[test]
fn a_forged_driver_heap_annotation_changes_nothing() {
    // Earlier versions trusted spark-admission.dev/driver-heap; a tenant can write it.
    let mut pod = fixture("spark-3.5-driver-jvm.json");
    pod["metadata"]["annotations"] = json!({"spark-admission.dev/driver-heap": "1Gi"});
    let pod = api_server_defaults(pod);
    let after = patched(&set(&[driver_clamp("4Gi")]), &pod);
    assert_eq!(memory_mib(&after, DRIVER), (2432, 2432));
    assert!(matches!(
        eval(&set(&[driver_clamp("2Gi")]), &pod).verdict,
        Verdict::Denied { .. }
    ));
}

#[test]
fn an_executor_keeps_memory_spark_sized_beyond_its_default_overhead() {
    // ResourceProfile.getResourcesForClusterManager: total = heap + overhead + off-heap
    // (+ pyspark memory for Python apps); the pod shows only the heap (SPARK_EXECUTOR_MEMORY).
    let cases = [
        ("8g + 8g off-heap (factor 0.1)", 8192, 8192 + 819 + 8192),
        (
            "8g + 4g pyspark memory (cluster-mode 0.4)",
            8192,
            8192 + 3276 + 4096,
        ),
        ("8g + explicit memoryOverhead 3g", 8192, 8192 + 3072),
        ("2g with Spark 4's minMemoryOverhead 1g", 2048, 2048 + 1024),
        ("8g with factor 0.5 for tmpfs local dirs", 8192, 8192 + 4096),
    ];
    let set = set(&[overhead_cap("executor")]);
    for (what, heap, total) in cases {
        let mut pod = with_memory(fixture("spark-3.5-executor-python.json"), EXECUTOR, total);
        set_env(
            &mut pod,
            EXECUTOR,
            "SPARK_EXECUTOR_MEMORY",
            &format!("{heap}m"),
        );
        let ev = eval(&set, &api_server_defaults(pod.clone()));
        let after = patched(&set, &api_server_defaults(pod));
        assert_eq!(memory_mib(&after, EXECUTOR), (total, total), "{what}");
        assert!(
            ev.warnings
                .iter()
                .any(|w| w.contains("not Spark's default")),
            "{what}: says why memory was left alone: {:?}",
            ev.warnings
        );
    }
}

#[test]
fn an_executor_at_sparks_default_overhead_is_capped() {
    // Cluster-mode PySpark executors get 0.4 (BasicDriverFeatureStep passes the non-JVM
    // default on): 16g heap → 22937Mi. The cap brings the overhead to 15%: 16384 + 2457.
    let set = set(&[overhead_cap("executor")]);
    let mut pod = with_memory(
        fixture("spark-3.5-executor-python.json"),
        EXECUTOR,
        16384 + 6553,
    );
    set_env(&mut pod, EXECUTOR, "SPARK_EXECUTOR_MEMORY", "16384m");
    let after = patched(&set, &api_server_defaults(pod));
    assert_eq!(memory_mib(&after, EXECUTOR), (16384 + 2457, 16384 + 2457));
}

/// The executor fixture as a pod template with `podTemplateContainerName=main` and a
/// sidecar listed first makes it: Spark keeps the template's container name.
fn executor_named_main_with_sidecar() -> Value {
    let mut pod = fixture("spark-3.5-executor-python.json");
    let cs = pod["spec"]["containers"].as_array_mut().unwrap();
    cs[0]["name"] = json!("main");
    cs.insert(
        0,
        json!({"name": "log-shipper", "image": "fluent/fluent-bit:3.1",
               "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}}),
    );
    pod
}

#[test]
fn the_spark_container_is_found_by_sparks_marks_whatever_its_name() {
    let set = set(&[
        policy(
            "secrets",
            "executor",
            "  secretEnv:\n  - {name: APP_SECRET, secretName: app, key: app_secret}",
        ),
        policy(
            "nvme",
            "executor",
            "  localDirs:\n    volumes:\n    - emptyDir: {}\n    - emptyDir: {}",
        ),
    ]);
    let pod = api_server_defaults(executor_named_main_with_sidecar());
    let ev = eval(&set, &pod);
    let after = patched(&set, &pod);
    let main = container(&after, "main");
    assert_eq!(
        effective_env(main, "APP_SECRET").unwrap()["valueFrom"]["secretKeyRef"]["key"],
        "app_secret"
    );
    let dirs = effective_env(main, "SPARK_LOCAL_DIRS").unwrap()["value"]
        .as_str()
        .unwrap();
    assert_eq!(dirs.split(',').count(), 2, "{dirs}");
    assert_eq!(
        container(&after, "log-shipper"),
        container(&pod, "log-shipper"),
        "the sidecar is untouched"
    );
    assert!(
        !ev.warnings.iter().any(|w| w.contains("no Spark container")),
        "{:?}",
        ev.warnings
    );
}

/// Mount paths of the `spark-local-dir-*` volumes in container `c`.
fn local_dir_mounts(c: &Value) -> Vec<String> {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("spark-local-dir-"))
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_effective_spark_local_dirs_names_only_mounted_dirs_when_a_template_set_it_too() {
    // A template that sets SPARK_LOCAL_DIRS: Spark appends its own entry after it
    // (LocalDirsFeatureStep), and the kubelet uses the last.
    let mut pod = fixture("spark-3.5-executor-python.json");
    let env = pod["spec"]["containers"][0]["env"].as_array_mut().unwrap();
    env.insert(
        0,
        json!({"name": "SPARK_LOCAL_DIRS", "value": "/tmp/from-template"}),
    );
    let set = set(&[policy(
        "nvme",
        "executor",
        "  localDirs:\n    volumes:\n    - emptyDir: {}\n      mountPath: /data/a\n    - emptyDir: {}\n      mountPath: /data/b",
    )]);
    let after = patched(&set, &api_server_defaults(pod));
    let c = &after["spec"]["containers"][0];
    let mut effective: Vec<String> = effective_env(c, "SPARK_LOCAL_DIRS").unwrap()["value"]
        .as_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut mounted = local_dir_mounts(c);
    effective.sort();
    mounted.sort();
    assert_eq!(effective, mounted);
    assert_eq!(mounted, ["/data/a", "/data/b"]);
}

fn secret_policy(on_conflict: &str) -> PolicySet {
    set(&[policy(
        "secrets",
        "executor",
        &format!("  secretEnv:\n  - {{name: TENANT_ID, secretName: app, key: tenant_id, onConflict: {on_conflict}}}"),
    )])
}

/// `pod` with env `TENANT_ID` appended to its Spark container, as a webhook ordered after
/// ours (the spark-operator's appends env) would do.
fn with_appended_tenant(mut pod: Value) -> Value {
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "TENANT_ID", "value": "literal"}));
    pod
}

#[test]
fn deny_rejects_a_later_entry_that_overrides_an_injected_secret() {
    let set = secret_policy("deny");
    // The secret ref is already there (from Spark's secretKeyRef conf) but a later literal wins.
    let mut pod = fixture("spark-3.5-executor-python.json");
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "TENANT_ID", "valueFrom": {"secretKeyRef": {"name": "app", "key": "tenant_id"}}}));
    let pod = with_appended_tenant(api_server_defaults(pod));
    assert!(
        matches!(eval(&set, &pod).verdict, Verdict::Denied { .. }),
        "{:?}",
        eval(&set, &pod).verdict
    );
}

#[test]
fn reinvocation_after_another_webhook_appended_a_duplicate_restores_the_secret() {
    let set = secret_policy("override");
    let first = patched(
        &set,
        &api_server_defaults(fixture("spark-3.5-executor-python.json")),
    );
    let second = patched(&set, &with_appended_tenant(first));
    let c = &second["spec"]["containers"][0];
    let e = effective_env(c, "TENANT_ID").unwrap();
    assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], "tenant_id", "{e}");
    let count = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "TENANT_ID")
        .count();
    assert_eq!(count, 1, "the shadowed duplicate is gone");
    // And a third pass changes nothing.
    assert_eq!(eval(&set, &second).verdict, Verdict::Unchanged);
}

#[test]
fn a_sparkconnect_server_is_placed_like_a_driver() {
    // spark-operator: the SparkConnect server pod is labelled spark-role=connect-server
    // (internal/controller/sparkconnect/util.go) and runs the driver of every session.
    let mut pod = fixture("spark-3.5-driver-jvm.json");
    pod["metadata"]["labels"]["spark-role"] = json!("connect-server");
    let set = set(&[policy(
        "drivers-on-demand",
        "driver",
        "  placement: {capacity: on-demand, provider: eks, onConflict: override}",
    )]);
    let after = patched(&set, &api_server_defaults(pod));
    assert_eq!(
        after["spec"]["nodeSelector"]["eks.amazonaws.com/capacityType"],
        "ON_DEMAND"
    );
}

/// What the API server defaults on the volumes of a pod after the webhook's patch
/// (pkg/apis/core/v1/defaults.go): `volumeMode: Filesystem` on an ephemeral volume's claim,
/// `type: ""` on a hostPath, and `emptyDir: {}` on a volume with no source.
fn redefault_volumes(pod: &mut Value) {
    for v in pod["spec"]["volumes"].as_array_mut().unwrap() {
        let obj = v.as_object_mut().unwrap();
        if let Some(spec) = obj
            .get_mut("ephemeral")
            .and_then(|e| e.get_mut("volumeClaimTemplate"))
            .and_then(|t| t.get_mut("spec"))
        {
            spec.as_object_mut()
                .unwrap()
                .entry("volumeMode")
                .or_insert(json!("Filesystem"));
        }
        if let Some(h) = obj.get_mut("hostPath") {
            h.as_object_mut()
                .unwrap()
                .entry("type")
                .or_insert(json!(""));
        }
        if obj.len() == 1 {
            obj.insert("emptyDir".into(), json!({}));
        }
    }
}

#[test]
fn api_server_defaulting_after_the_patch_never_breaks_idempotence() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/local-dirs/ephemeral.yaml"),
    )
    .unwrap()
    .replace("mode: Off", "mode: Enforce");
    let ephemeral = PolicySet::from_sources(&[("ephemeral.yaml", text.as_str())]).unwrap();
    let hostpath = set(&[policy(
        "hostpath",
        "executor",
        "  localDirs:\n    volumes:\n    - hostPath: {path: /mnt/nvme0}\n    - hostPath: {path: /mnt/nvme1}",
    )]);
    for (what, set) in [("ephemeral", &ephemeral), ("hostPath", &hostpath)] {
        let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
        let mut after = patched(set, &pod);
        assert_ne!(after, pod, "{what}: the policy applies");
        redefault_volumes(&mut after);
        let again = eval(set, &after);
        assert_eq!(
            again.verdict,
            Verdict::Unchanged,
            "{what}: {:?}",
            again.warnings
        );
        assert!(again.warnings.is_empty(), "{what}: {:?}", again.warnings);
    }
}

#[test]
fn a_pod_only_audit_policies_matched_has_no_enforced_changes() {
    let audit = set(&[policy(
        "audit-spot",
        "executor",
        "  mode: Audit\n  placement: {capacity: spot, provider: eks}",
    )]);
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let ev = eval(&audit, &pod);
    assert!(
        matches!(ev.verdict, Verdict::Patched { .. }),
        "the audit annotation is still written"
    );
    assert!(ev.changes.is_empty(), "{:?}", ev.changes);
    let enforce = set(&[policy(
        "spot",
        "executor",
        "  placement: {capacity: spot, provider: eks}",
    )]);
    assert_eq!(eval(&enforce, &pod).changes.len(), 1);
    // Already conforming: only the policies annotation would be written.
    let conforming = patched(&enforce, &pod);
    let mut bare = conforming.clone();
    bare["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("spark-admission.dev/policies");
    assert!(eval(&enforce, &bare).changes.is_empty());
}
