//! Engine cost per admission, on recorded Spark pods as the API server sends them.
//!
//! `cargo bench --bench engine` prints, per case, the time of one `evaluate` call:
//! - a Spark executor / driver with the shipped policies (the common case),
//! - the same with 500 extra policies that do not match (other namespaces, other role,
//!   other labels) — their cost should stay near zero,
//! - a non-Spark pod (must be near-free: it only reads one label),
//! - a second pass over an already mutated pod (reinvocation),
//! - loading the shipped policy directory,
//! - the server's whole path for the executor's AdmissionReview (`admission::review`: parse,
//!   decide, patch, answer) next to parsing the same bytes into a `serde_json::Value`, the
//!   least any webhook does.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use spark_admission::{admission, evaluate, PolicySet, Verdict};

// The same allocator as the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures").join(name)).unwrap();
    let mut pod: Value = serde_json::from_str(&text).unwrap();
    // What the API server adds before calling a webhook.
    pod["spec"]["dnsPolicy"] = json!("ClusterFirst");
    pod["spec"]["schedulerName"] = json!("default-scheduler");
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({
        "name": "kube-api-access-x7k2p",
        "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
        ]}
    }));
    for c in pod["spec"]["containers"].as_array_mut().unwrap() {
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c.as_object_mut()
            .unwrap()
            .entry("volumeMounts")
            .or_insert(json!([]));
        c["volumeMounts"].as_array_mut().unwrap().push(json!({
            "name": "kube-api-access-x7k2p",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": true
        }));
    }
    pod["spec"]["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ]);
    pod
}

/// The shipped policies plus `extra` policies scoped to other namespaces by name.
fn policies_with_non_matching_namespaces(extra: usize) -> PolicySet {
    with_extra(extra, |i| {
        format!("{{roles: [executor, driver], namespaces: [tenant-{i}]}}")
    })
}

/// The shipped policies plus `extra` policies that never match the benchmark pods: a third
/// by namespace name, a third by namespace glob, a third by pod label.
fn policies_with_non_matching(extra: usize) -> PolicySet {
    with_extra(extra, |i| match i % 3 {
        0 => format!("{{roles: [executor, driver], namespaces: [tenant-{i}]}}"),
        1 => format!("{{roles: [executor], namespaces: [team-{i}-*]}}"),
        _ => format!("{{roles: [driver, executor], podSelector: {{matchLabels: {{team: t{i}}}}}}}"),
    })
}

fn with_extra(extra: usize, matcher: impl Fn(usize) -> String) -> PolicySet {
    let mut sources: Vec<(String, String)> = vec![];
    let mut walk = vec![root().join("policies")];
    while let Some(dir) = walk.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk.push(p);
            } else {
                sources.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    let mut extra_text = String::new();
    for i in 0..extra {
        let matcher = matcher(i);
        extra_text.push_str(&format!(
            "---\napiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: tenant-{i}}}\nspec:\n  match: {matcher}\n  tolerations: [{{key: tenant-{i}, operator: Exists}}]\n"
        ));
    }
    sources.push(("extra.yaml".into(), extra_text));
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    PolicySet::from_sources(&refs).unwrap()
}

fn bench(c: &mut Criterion) {
    let shipped = policies_with_non_matching(0);
    let crowded = policies_with_non_matching(500);
    let namespaced = policies_with_non_matching_namespaces(500);
    let executor = fixture("spark-3.5-executor-python.json");
    let driver = fixture("spark-3.5-driver-podtemplate-sidecar.json");
    let mut plain = executor.clone();
    plain["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("spark-role");
    let Verdict::Patched { pod: mutated, .. } =
        evaluate(&shipped, &executor, None).unwrap().verdict
    else {
        panic!("executor is patched");
    };

    let mut g = c.benchmark_group("evaluate");
    g.bench_function("executor, shipped policies", |b| {
        b.iter(|| evaluate(&shipped, &executor, None).unwrap())
    });
    g.bench_function("executor, shipped + 500 non-matching (mixed)", |b| {
        b.iter(|| evaluate(&crowded, &executor, None).unwrap())
    });
    g.bench_function("executor, shipped + 500 for other namespaces", |b| {
        b.iter(|| evaluate(&namespaced, &executor, None).unwrap())
    });
    g.bench_function("driver with sidecar, shipped policies", |b| {
        b.iter(|| evaluate(&shipped, &driver, None).unwrap())
    });
    g.bench_function("non-Spark pod, shipped + 500", |b| {
        b.iter(|| evaluate(&crowded, &plain, None).unwrap())
    });
    g.bench_function("second pass (already mutated)", |b| {
        b.iter(|| evaluate(&shipped, &mutated, None).unwrap())
    });
    g.finish();
    let review = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "spark",
            "userInfo": {"username": "system:serviceaccount:spark:spark"},
            "object": executor, "dryRun": false,
        },
    }))
    .unwrap();
    let mut g = c.benchmark_group("executor AdmissionReview");
    g.bench_function("parse into serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(&review).unwrap())
    });
    g.bench_function("admission::review (parse, decide, patch, answer)", |b| {
        b.iter(|| admission::review(&shipped, &admission::NoNamespaces, &review))
    });
    g.finish();
    c.bench_function("load policies/ directory", |b| {
        b.iter(|| PolicySet::load_dir(&root().join("policies")).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
