//! Every kind of policy error is reported with file:line:column and what is wrong, and a
//! set with any error is rejected whole.

use std::path::Path;

use spark_admission::PolicySet;

const HEAD: &str =
    "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata:\n  name: p\nspec:\n";

/// (spec body starting at line 6, expected line, expected column or 0 for "any", message part)
const CASES: &[(&str, u64, u64, &str)] = &[
    ("  match: {roles: []}\n  tolerations: [{key: a, operator: Exists}]\n", 6, 18, "match.roles is empty"),
    ("  match: {roles: [drivers]}\n", 6, 19, "unknown variant `drivers`"),
    ("  match: {roles: [driver]}\n  tolerations: [{key: a, operator: Exists}]\n  bogus: 1\n", 8, 3, "unknown field `bogus`"),
    ("  match: {roles: [driver]}\n  memory:\n    overhead: {max: 4Gb}\n", 8, 21, "\"4Gb\" is not a quantity"),
    ("  match: {roles: [driver]}\n  memory:\n    overhead: {max: -1Gi}\n", 8, 21, "negative"),
    ("  match:\n    roles: [driver]\n    podSelector:\n      matchLabels: {\"bad key!\": x}\n  tolerations: [{key: a, operator: Exists}]\n", 9, 0, "label key"),
    ("  match:\n    roles: [driver]\n    podSelector:\n      matchLabels: {team: \"-x\"}\n  tolerations: [{key: a, operator: Exists}]\n", 9, 0, "label value"),
    ("  match:\n    roles: [driver]\n    podSelector:\n      matchExpressions:\n      - {key: team, operator: In}\n  tolerations: [{key: a, operator: Exists}]\n", 10, 0, "needs at least one value"),
    ("  match:\n    roles: [driver]\n    namespaces: [Team-A]\n  tolerations: [{key: a, operator: Exists}]\n", 8, 0, "namespace pattern"),
    ("  match: {roles: [driver]}\n  tolerations: [{key: a, operator: Exists, value: x}]\n", 7, 0, "Exists must not have a value"),
    ("  match: {roles: [driver]}\n  tolerations: [{key: a, value: x, tolerationSeconds: 30}]\n", 7, 0, "only allowed with effect NoExecute"),
    ("  match: {roles: [driver]}\n  tolerations: [{operator: Equal, value: x}]\n", 7, 0, "without a key must use operator Exists"),
    ("  match: {roles: [driver]}\n  tolerations: [{key: a, effect: NoScheduel}]\n", 7, 0, "unknown variant `NoScheduel`"),
    ("  match: {roles: [driver]}\n  placement: {capacity: spot}\n", 7, 0, "needs either provider"),
    ("  match: {roles: [driver]}\n  placement: {capacity: spot, provider: gcp}\n", 7, 0, "unknown variant `gcp`"),
    ("  match: {roles: [driver]}\n  placement: {capacity: spot, provider: eks, weight: 5}\n", 7, 0, "only meaningful with scheduling: preferred"),
    ("  match: {roles: [driver]}\n  placement: {capacity: spot, provider: eks, scheduling: preferred, weight: 500}\n", 7, 0, "must be 1 to 100"),
    ("  match: {roles: [driver]}\n  placement: {capacity: spot, provider: eks, nodeLabel: {key: a, spotValue: b}}\n", 7, 0, "both provider and nodeLabel"),
    ("  match: {roles: [driver]}\n  localDirs:\n    volumes: []\n", 8, 0, "localDirs.volumes is empty"),
    ("  match: {roles: [driver]}\n  localDirs:\n    volumes:\n    - {hostPath: {path: /a}, emptyDir: {}}\n", 9, 0, "exactly one of hostPath, emptyDir, ephemeral"),
    ("  match: {roles: [driver]}\n  localDirs:\n    volumes:\n    - {hostPath: {path: relative}}\n", 9, 0, "absolute path"),
    ("  match: {roles: [driver]}\n  localDirs:\n    volumes:\n    - {emptyDir: {}, mountPath: /x}\n    - {emptyDir: {}, mountPath: /x}\n", 10, 0, "used twice"),
    ("  match: {roles: [driver]}\n  secretEnv:\n  - {name: 1BAD, secretName: app, key: k}\n", 8, 0, "env var name"),
    ("  match: {roles: [driver]}\n  secretEnv:\n  - {name: A, secretName: App, key: k}\n", 8, 0, "Secret name"),
    ("  match: {roles: [driver]}\n  secretEnv:\n  - {name: A, secretName: app, key: k}\n  - {name: A, secretName: app, key: j}\n", 9, 0, "lists A twice"),
    ("  match: {roles: [driver]}\n  secretEnv:\n  - {name: A, secretName: app, key: k, onConflict: replace}\n", 8, 0, "unknown variant `replace`"),
    ("  match: {roles: [executor]}\n  memory: {overhead: {factor: 0}}\n", 7, 0, "factor is 0"),
    ("  match: {roles: [executor]}\n  memory: {overhead: {min: 2Gi, max: 1Gi}}\n", 7, 0, "is above memory.overhead.max"),
    ("  match: {roles: [executor, connect-server]}\n  memory: {overhead: {factor: 0.2}}\n", 7, 0, "cannot apply to role connect-server: a driver's heap is not in its pod"),
    ("  match: {roles: [driver]}\n  memory: {limit: {mode: RequestPlusHeadroom}}\n", 7, 0, "needs memory.limit.headroom"),
    ("  match: {roles: [driver]}\n  memory: {maxPodMemory: {value: 8Gi, action: warn}}\n", 7, 0, "unknown variant `warn`"),
    ("  match: {roles: [driver]}\n  mode: Dryrun\n  tolerations: [{key: a, operator: Exists}]\n", 7, 0, "unknown variant `Dryrun`"),
    ("  match: {roles: [driver]}\n", 5, 1, "the policy would do nothing"),
    ("  tolerations: [{key: a, operator: Exists}]\n", 6, 3, "missing field `match`"),
];

#[test]
fn each_policy_error_is_located_and_explained() {
    for (body, line, column, message) in CASES {
        let text = format!("{HEAD}{body}");
        let errors = PolicySet::from_sources(&[("pol.yaml", text.as_str())])
            .expect_err(&format!("should fail:\n{text}"))
            .0;
        assert_eq!(errors.len(), 1, "{body}: {errors:?}");
        let e = &errors[0];
        assert_eq!(e.file, Path::new("pol.yaml"));
        assert_eq!(e.line, *line, "{body}: {e}");
        if *column != 0 {
            assert_eq!(e.column, *column, "{body}: {e}");
        }
        assert!(e.column > 0, "{body}: a column is given: {e}");
        assert!(e.message.contains(message), "{body}: got {e}");
        assert!(
            e.to_string().starts_with(&format!("pol.yaml:{line}:")),
            "{e}"
        );
    }
}

#[test]
fn header_errors() {
    let cases = [
        ("apiVersion: v1\nkind: SparkPodPolicy\nmetadata: {name: p}\nspec: {match: {roles: [driver]}, tolerations: [{key: a, operator: Exists}]}\n", 1, "expected \"spark-admission.dev/v1alpha1\""),
        ("apiVersion: spark-admission.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {match: {roles: [driver]}, tolerations: [{key: a, operator: Exists}]}\n", 2, "not a SparkPodPolicy (kind: Policy)"),
        ("apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: Bad_Name}\nspec: {match: {roles: [driver]}, tolerations: [{key: a, operator: Exists}]}\n", 3, "metadata.name"),
        ("apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: p}\nspec: {match: {roles: [driver]\n", 4, ""),
    ];
    for (text, line, message) in cases {
        let errors = PolicySet::from_sources(&[("h.yaml", text)]).unwrap_err().0;
        assert_eq!(errors[0].line, line, "{text}: {errors:?}");
        assert!(errors[0].message.contains(message), "{errors:?}");
    }
}

fn good(name: &str) -> String {
    format!("apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata:\n  name: {name}\nspec:\n  match: {{roles: [executor]}}\n  tolerations: [{{key: a, operator: Exists}}]\n")
}

#[test]
fn every_error_of_every_document_is_listed_and_nothing_loads() {
    let a = format!(
        "# leading comment\n---\n{}---\n{}---\n# only a comment\n---\n{}",
        good("one"),
        good("two").replace("executor", "exec"),
        good("three").replace("operator: Exists", "operator: Exists, value: v"),
    );
    let b = good("one");
    let errors = PolicySet::from_sources(&[("a.yaml", a.as_str()), ("b.yaml", b.as_str())])
        .unwrap_err()
        .0;
    let rendered: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{rendered:#?}");
    // Line numbers are those of the whole file, across documents.
    assert!(rendered[0].starts_with("a.yaml:16:19:"), "{rendered:#?}");
    assert!(rendered[0].contains("unknown variant `exec`"));
    assert!(rendered[1].starts_with("a.yaml:27:"), "{rendered:#?}");
    assert!(rendered[1].contains("Exists must not have a value"));
    assert!(rendered[2].starts_with("b.yaml:4:"), "{rendered:#?}");
    assert!(rendered[2].contains("duplicate policy name \"one\": already defined at a.yaml:6"));
}

#[test]
fn load_dir_reads_yaml_recursively_and_skips_kubelet_hidden_dirs() {
    let dir = std::env::temp_dir().join(format!("sa-policies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::create_dir_all(dir.join("..2026_11_21_12_00_00.123")).unwrap();
    std::fs::write(dir.join("a.yaml"), good("a")).unwrap();
    std::fs::write(dir.join("nested/deeper/b.yml"), good("b")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
    // The kubelet's copy under a hidden directory must not count twice.
    std::fs::write(dir.join("..2026_11_21_12_00_00.123/a.yaml"), good("a")).unwrap();
    let set = PolicySet::load_dir(&dir).unwrap();
    assert_eq!(set.names(), ["a", "b"]);

    // One bad file rejects the whole set.
    std::fs::write(dir.join("nested/bad.yaml"), "apiVersion: [\n").unwrap();
    let errors = PolicySet::load_dir(&dir).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].file.ends_with("nested/bad.yaml"), "{errors}");

    let missing = PolicySet::load_dir(&dir.join("nope")).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read policy directory"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The case of issue 11: a file with many mistakes, reported in one run, each at the field
/// it is about (a list of (line, column, part of the message)).
#[test]
fn every_mistake_of_a_document_is_reported_in_one_run_at_its_field() {
    let text = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata:
  name: six-mistakes
spec:
  match:
    roles: executor
    namespaces: [Team-A]
  placement: {capacity: spot, provider: gcp, scheduling: preferred, weight: 500}
  tolerations:
  - {key: a, operator: Exists, value: x}
  - {key: b, effect: NoScheduel}
  memory:
    overhead: {factor: 0, max: 4Gb}
  bogus: true
";
    let errors = PolicySet::from_sources(&[("six.yaml", text)])
        .unwrap_err()
        .0;
    let got: Vec<(u64, u64, &str)> = errors
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    let want: &[(u64, u64, &str)] = &[
        (
            7,
            12,
            "roles must be a list, found the single value \"executor\": write `roles: [executor]`",
        ),
        (8, 18, "namespace pattern \"Team-A\" is invalid"),
        (9, 41, "unknown variant `gcp`"),
        (9, 69, "placement.weight is 500; it must be 1 to 100"),
        (
            11,
            32,
            "toleration with operator Exists must not have a value",
        ),
        (12, 22, "unknown variant `NoScheduel`"),
        (14, 16, "memory.overhead.factor is 0"),
        (14, 32, "\"4Gb\" is not a quantity"),
        (15, 3, "unknown field `bogus`"),
    ];
    assert_eq!(got.len(), want.len(), "{errors:#?}");
    for ((line, column, message), (wl, wc, wm)) in got.iter().zip(want) {
        assert_eq!((line, column), (wl, wc), "{message}");
        assert!(message.contains(wm), "{message:?} should contain {wm:?}");
    }
}

#[test]
fn a_missing_required_field_does_not_hide_the_errors_of_other_sections() {
    let text = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata:
  nmae: typo
spec:
  match: {roles: [driver]}
  placement: {capacity: spot, provider: aks, scheduling: preferred, weight: 0}
  secretEnv:
  - {name: A, secretName: App, key: k}
";
    let errors = PolicySet::from_sources(&[("m.yaml", text)]).unwrap_err().0;
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "m.yaml:4:3: unknown field `nmae`, expected one of name, annotations, labels",
            "m.yaml:4:3: missing field `name`",
            "m.yaml:7:69: placement.weight is 0; it must be 1 to 100",
            "m.yaml:9:27: Secret name \"App\" is not a valid DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
        ]
    );
}

#[test]
fn a_document_of_another_kind_is_named_not_taken_for_a_broken_policy() {
    let cases = [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "not a SparkPodPolicy (kind: ConfigMap)",
        ),
        (
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
            "not a SparkPodPolicy (kind: Kustomization): kustomize's file",
        ),
        (
            "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicyTest\ncases: []\n",
            "test suites belong outside the policy directory",
        ),
    ];
    for (text, message) in cases {
        let errors = PolicySet::from_sources(&[("k.yaml", text)]).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (2, 7));
        assert!(errors[0].message.contains(message), "{errors:?}");
    }
}

#[test]
fn shape_errors_name_the_field_and_what_was_found() {
    let cases = [
        (
            "  match: {roles: [driver]}\n  tolerations: {key: a}\n",
            7,
            16,
            "tolerations must be a list, found a mapping",
        ),
        (
            "  match: driver\n  tolerations: [{key: a, operator: Exists}]\n",
            6,
            10,
            "match must be a mapping of fields (`name: value`), found the single value \"driver\"",
        ),
    ];
    for (body, line, column, message) in cases {
        let text = format!("{HEAD}{body}");
        let errors = PolicySet::from_sources(&[("s.yaml", text.as_str())])
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].line, errors[0].column),
            (line, column),
            "{errors:?}"
        );
        assert!(errors[0].message.starts_with(message), "{errors:?}");
    }
}

#[test]
fn kustomization_files_are_skipped_and_an_empty_or_missing_directory_is_an_error() {
    use spark_admission::policy::load::{load_snapshot, read_paths};
    let dir = std::env::temp_dir().join(format!("sa-policies-kust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let empty = read_paths(std::slice::from_ref(&dir)).unwrap_err();
    assert!(
        empty.to_string().contains("holds no policy files"),
        "{empty}"
    );
    let missing = read_paths(&[dir.join("nope")]).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");

    std::fs::write(
        dir.join("kustomization.yaml"),
        "configMapGenerator:\n- name: spark-admission-policies\n  files: [a.yaml]\n",
    )
    .unwrap();
    let only_kustomize = read_paths(std::slice::from_ref(&dir)).unwrap_err();
    assert!(only_kustomize.to_string().contains("holds no policy files"));
    std::fs::write(dir.join("a.yaml"), good("a")).unwrap();
    std::fs::write(dir.join("b.yml"), good("b")).unwrap();
    let snapshot = read_paths(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(snapshot.ignored(), [dir.join("kustomization.yaml")]);
    assert_eq!(load_snapshot(&snapshot).unwrap().names(), ["a", "b"]);
    // Files as well as directories.
    let one = read_paths(&[dir.join("b.yml")]).unwrap();
    assert_eq!(load_snapshot(&one).unwrap().names(), ["b"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
