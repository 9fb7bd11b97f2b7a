//! The policy workflow of an admin's Git repository, through the real binary: `check` (every
//! error, JSON, files and directories), `test` suites (pass, fail with a diff, JUnit) and the
//! shipped suites that cover every example policy on recorded Spark pods.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{temp_dir, text};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spark-admission"))
        .args(args)
        .current_dir(root())
        .env_remove("SPARK_ADMISSION_POLICIES")
        .output()
        .unwrap()
}

#[test]
fn the_shipped_suites_cover_every_example_policy_and_pass() {
    let out = run(&["test", "--policies", "policies", "tests/policies"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    // Every example policy is applied (or previewed) by some case: each name appears in a
    // suite's `applied`, `modes`, or is on by default and asserted by its fields.
    let suites: String = std::fs::read_dir(root().join("tests/policies"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let check = run(&["check", "-o", "json", "policies"]);
    let listed: Value = serde_json::from_slice(&check.stdout).unwrap();
    for p in listed["policies"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let on_by_default = p["mode"] == "Enforce";
        assert!(
            on_by_default || suites.contains(&format!("{name}: Enforce")),
            "no suite switches on {name}"
        );
    }
}

const POLICY: &str = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: prod-spot}
spec:
  match:
    roles: [executor]
    namespaceSelector: {matchLabels: {env: prod}}
  tolerations: [{key: spot, operator: Exists}]
---
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: small-pods}
spec:
  match: {roles: [executor], namespaces: [tiny]}
  memory: {maxPodMemory: {value: 1Gi, action: deny}}
";

const SUITE: &str = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicyTest
policies: policies
cases:
- name: prod namespaces get the toleration
  namespace: analytics
  namespaceLabels: {env: prod}
  pods:
  - &exec {apiVersion: v1, kind: Pod, metadata: {name: e, labels: {spark-role: executor}}, spec: {containers: [{name: c, env: [{name: A, value: b}], resources: {requests: {memory: 2Gi}}}]}}
  expect:
    applied: [prod-spot]
    patch:
    - {op: add, path: /metadata/annotations, value: {spark-admission.dev/policies: prod-spot}}
    - {op: add, path: /spec/tolerations, value: [{key: spot, operator: Exists}]}
- name: other namespaces do not
  namespace: analytics
  namespaceLabels: {env: dev}
  pods: [*exec]
  expect:
    patch: []
    fields:
    - {path: /spec/tolerations, absent: true}
- name: a pod too big for the tiny namespace is denied
  namespace: tiny
  namespaceLabels: {}
  pods: [*exec]
  expect:
    denied: exceeds
- name: a wrong expectation fails with a diff
  namespace: analytics
  namespaceLabels: {env: prod}
  pods: [*exec]
  expect:
    fields:
    - {path: /spec/tolerations/0/key, value: on-demand}
    warnings: [something]
";

#[test]
fn a_suite_runs_inline_pods_with_namespace_labels_and_reports_each_case() {
    let dir = temp_dir("suite");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(dir.join("suite.yaml"), SUITE).unwrap();
    let junit = dir.join("junit.xml");
    let out = run(&[
        "test",
        dir.join("suite.yaml").to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let verdicts: Vec<&str> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .map(|l| &l[..4])
        .collect();
    assert_eq!(
        verdicts,
        ["ok  ", "ok  ", "ok  ", "FAIL", "3 pa"],
        "{stdout}"
    );
    assert!(
        stdout.contains("       /spec/tolerations/0/key: expected \"on-demand\", found \"spot\"")
    );
    assert!(stdout.contains("       no warning contains \"something\""));
    assert_eq!(lines.last(), Some(&"3 passed, 1 failed"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<failure message="), "{xml}");

    // A patch that differs is shown as a diff of the two, expected first.
    let suite = SUITE.replace(
        "value: [{key: spot, operator: Exists}]}",
        "value: [{key: spot, operator: Equal}]}",
    );
    std::fs::write(dir.join("suite.yaml"), suite).unwrap();
    let out = run(&["test", dir.join("suite.yaml").to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("patch differs:"), "{stdout}");
    assert!(
        stdout.contains("-    operator: Equal\n") && stdout.contains("+    operator: Exists\n"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_case_needing_namespace_labels_it_was_not_given_fails_with_the_reason() {
    let dir = temp_dir("nolabels");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.yaml"), POLICY).unwrap();
    let suite = SUITE.replace("  namespaceLabels: {env: dev}\n", "");
    std::fs::write(dir.join("suite.yaml"), suite).unwrap();
    let out = run(&["test", dir.join("suite.yaml").to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("the labels of namespace \"analytics\" are not known (policy prod-spot selects namespaces by label)"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_lists_every_error_as_json_and_accepts_files() {
    let dir = temp_dir("check");
    std::fs::write(dir.join("good.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        POLICY
            .replace(
                "roles: [executor]\n    namespaceSelector",
                "roles: executor\n    namespaceSelector",
            )
            .replace("name: prod-spot", "name: a")
            .replace("name: small-pods", "name: b")
            .replace("value: 1Gi", "value: 1GB"),
    )
    .unwrap();
    std::fs::write(dir.join("kustomization.yaml"), "configMapGenerator: []\n").unwrap();
    let out = run(&["check", "-o", "json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let errors: Vec<(String, u64, u64)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = Path::new(e["file"].as_str().unwrap()).file_name().unwrap();
            (
                file.to_string_lossy().into_owned(),
                e["line"].as_u64().unwrap(),
                e["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("bad.yaml".to_string(), 6, 12),
            ("bad.yaml".to_string(), 15, 34)
        ],
        "{report:#}"
    );
    assert_eq!(
        report["ignored"][0],
        dir.join("kustomization.yaml").to_str().unwrap()
    );

    let good = run(&["check", dir.join("good.yaml").to_str().unwrap()]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(text(&good.stdout).contains("2 policies valid"));

    let kust = run(&["check", dir.to_str().unwrap()]);
    assert!(
        text(&kust.stderr).contains("kustomization.yaml: kustomize's file, not read as policies")
    );

    for missing in [dir.join("nope"), temp_dir("empty")] {
        let out = run(&["check", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{missing:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On every recorded pod, with the shipped policies and with each platform's placement
/// switched on: every field the patch writes is put down to a policy that matched (or the
/// webhook's own record), the policies listed as matched are those the engine applied, and
/// an old/new pair is given for each field.
#[test]
fn explain_accounts_for_every_change_on_every_recorded_pod() {
    use spark_admission::explain::{explain, WEBHOOK_RECORD};
    use spark_admission::policy::{Mode, PolicySet};
    let shipped = PolicySet::load_dir(&root().join("policies")).unwrap();
    let mut sets = vec![shipped.as_enforced()];
    for platform in ["eks", "gke", "karpenter"] {
        let modes = shipped
            .names()
            .iter()
            .filter(|n| n.starts_with("aks-") || n.starts_with(&format!("{platform}-")))
            .map(|n| {
                (
                    n.clone(),
                    if n.starts_with("aks-") {
                        Mode::Off
                    } else {
                        Mode::Enforce
                    },
                )
            })
            .collect();
        sets.push(shipped.with_modes(&modes).unwrap());
    }
    let mut pods = vec![];
    for dir in ["tests/fixtures", "tests/fixtures/fidelity"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") && !path.ends_with("cases.json") {
                pods.push(path);
            }
        }
    }
    assert!(pods.len() > 50, "{}", pods.len());
    let mut changes = 0;
    for path in &pods {
        let pod: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if pod["kind"] != "Pod" {
            continue; // the fidelity recordings also hold the PVCs Spark made
        }
        for set in &sets {
            let e = explain(set, &pod, None, None).unwrap();
            let matched: Vec<&str> = e
                .policies
                .iter()
                .filter(|p| p.matched && p.mode == "Enforce")
                .map(|p| p.name.as_str())
                .collect();
            for c in &e.changes {
                assert!(
                    c.policy == WEBHOOK_RECORD || matched.contains(&c.policy.as_str()),
                    "{}: {} put down to {}, matched {matched:?}",
                    path.display(),
                    c.field,
                    c.policy
                );
                assert!(
                    c.old.is_some() || c.new.is_some(),
                    "{}: {}",
                    path.display(),
                    c.field
                );
                assert_ne!(c.old, c.new, "{}: {}", path.display(), c.field);
                changes += 1;
            }
            assert_eq!(
                e.verdict == "patched",
                !e.changes.is_empty(),
                "{}",
                path.display()
            );
        }
    }
    assert!(changes > 100, "{changes}");
}
