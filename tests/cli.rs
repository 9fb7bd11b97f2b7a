//! The offline CLI as an admin's CI runs it: real binary, real files, exit codes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{temp_dir, text};
use serde_json::{json, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spark-admission"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .args(args)
        .current_dir(root())
        .env_remove("SPARK_ADMISSION_POLICIES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn check_accepts_the_shipped_policies() {
    let out = run(&["check", "--policies", "policies"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("policies valid"), "{stdout}");
    assert!(stdout.contains("aks-executors-on-spot"), "{stdout}");
}

#[test]
fn check_lists_every_error_and_fails() {
    let dir = temp_dir("check");
    std::fs::write(dir.join("a.yaml"), "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: a}\nspec:\n  match: {roles: []}\n  tolerations: [{key: a, operator: Exists}]\n").unwrap();
    std::fs::write(dir.join("b.yaml"), "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: b}\nspec:\n  match: {roles: [driver]}\n  memory: {overhead: {max: lots}}\n").unwrap();
    let out = run(&["check", "--policies", dir.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("a.yaml:5:18: match.roles is empty"),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.yaml:6:28: \"lots\" is not a quantity"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mutate_outputs_patch_pod_and_diff() {
    let f = fixture("spark-3.5-executor-python.json");
    let f = f.to_str().unwrap();
    let patch = run(
        &["mutate", "--policies", "policies", "-o", "patch", f],
        None,
    );
    assert!(patch.status.success(), "{}", text(&patch.stderr));
    let patch: json_patch::Patch = serde_json::from_slice(&patch.stdout).unwrap();
    assert!(!patch.0.is_empty());

    let pod = run(&["mutate", "--policies", "policies", "-o", "pod", f], None);
    assert!(pod.status.success());
    let mutated: Value = serde_json::from_slice(&pod.stdout).unwrap();
    let mut expected: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
    json_patch::patch(&mut expected, &patch).unwrap();
    assert_eq!(
        mutated, expected,
        "-o pod is the original with -o patch applied"
    );
    common::assert_valid_pod(&mutated, "cli -o pod");
    let stderr = text(&pod.stderr);
    assert!(
        stderr.contains("policies applied: aks-executors-on-spot"),
        "{stderr}"
    );

    let diff = run(&["mutate", "--policies", "policies", "-o", "diff", f], None);
    let diff = text(&diff.stdout);
    assert!(
        diff.contains("+    kubernetes.azure.com/scalesetpriority: spot"),
        "{diff}"
    );
    assert!(diff.contains("-  - emptyDir: {}"), "{diff}");
}

#[test]
fn mutate_reads_yaml_from_stdin_and_admission_reviews() {
    let pod: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("spark-3.5-driver-jvm.json")).unwrap(),
    )
    .unwrap();
    let yaml = serde_saphyr::to_string(&pod).unwrap();
    let out = run(
        &["mutate", "--policies", "policies", "-o", "pod", "-"],
        Some(&yaml),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mutated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        mutated["metadata"]["annotations"]["spark-admission.dev/policies"],
        "aks-drivers-on-demand,app-secrets"
    );

    // A namespace-scoped policy sees the AdmissionReview's namespace, or --namespace.
    let dir = temp_dir("ns");
    std::fs::write(dir.join("p.yaml"), "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: team-only}\nspec:\n  match: {roles: [driver], namespaces: [team-*]}\n  tolerations: [{key: team, operator: Exists}]\n").unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "1", "namespace": "team-a", "operation": "CREATE", "object": pod}
    })
    .to_string();
    let d = dir.to_str().unwrap();
    let patch_of = |args: &[&str], stdin: &str| -> Vec<Value> {
        let out = run(args, Some(stdin));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(!patch_of(&["mutate", "--policies", d, "-"], &review).is_empty());
    assert!(patch_of(
        &["mutate", "--policies", d, "--namespace", "prod", "-"],
        &review
    )
    .is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn denial_exits_3_and_bad_input_exits_1() {
    let dir = temp_dir("deny");
    std::fs::write(dir.join("p.yaml"), "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: cap}\nspec:\n  match: {roles: [executor]}\n  memory: {maxPodMemory: {value: 8Gi, action: deny}}\n").unwrap();
    let d = dir.to_str().unwrap();
    let f = fixture("spark-3.5-executor-python.json");
    let out = run(&["mutate", "--policies", d, f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("denied by policy cap") && stderr.contains("9011Mi"),
        "{stderr}"
    );

    let out = run(&["mutate", "--policies", d, "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("- is neither JSON nor YAML"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        &["mutate", "--policies", d, "-"],
        Some("{\"kind\": \"Service\"}"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a Pod"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["mutate", "--policies", d, "/nonexistent/pod.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/pod.json"));

    // A pod that is not a Spark pod: empty patch, exit 0.
    let out = run(&["mutate", "--policies", d, "-"], Some("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx\"}]}}"));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "[]");
    assert!(text(&out.stderr).contains("not a Spark pod"));
    std::fs::remove_dir_all(dir).unwrap();
}
