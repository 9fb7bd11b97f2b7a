//! Bad input never crashes the engine: thousands of damaged variants of the recorded Spark
//! pods (fields removed, replaced by values of the wrong type, list entries duplicated) go
//! through `evaluate`. Whatever comes in, the engine answers; when it patches, the patch
//! applies to the input and yields a Pod, and a second pass is empty.

mod common;

use std::path::Path;

use serde_json::{json, Value};
use spark_admission::{evaluate, PolicySet, Verdict};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every path (as JSON Pointer tokens) in `v`.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(k.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(i.to_string());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, tok| match cur {
        Value::Object(m) => m.get_mut(tok),
        Value::Array(a) => tok.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(""),
        4 => json!("8192m"),
        5 => json!("spark-local-dir-1"),
        6 => json!([]),
        7 => json!({}),
        _ => json!("x/y~z"),
    }
}

/// One random change to `pod`.
fn damage(pod: &mut Value, rng: &mut Rng) {
    let mut all = vec![];
    paths(pod, &mut vec![], &mut all);
    let path = all[rng.below(all.len())].clone();
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let value = random_value(rng);
    let Some(parent) = get_mut(pod, parent_path) else {
        return;
    };
    match (rng.below(3), parent) {
        (0, Value::Object(m)) => {
            m.remove(last);
        }
        (0, Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        (1, Value::Array(a)) => {
            // Duplicate an entry: duplicate volumes, env vars, tolerations, containers.
            if let Some(item) = last.parse::<usize>().ok().and_then(|i| a.get(i)).cloned() {
                a.push(item);
            }
        }
        (_, Value::Object(m)) => {
            m.insert(last.clone(), value);
        }
        (_, Value::Array(a)) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

fn all_policies_enforced() -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut sources = vec![];
    for entry in [
        "placement/gke.yaml",
        "local-dirs/ephemeral.yaml",
        "secret-env.yaml",
        "memory.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(entry)).unwrap();
        sources.push((
            entry.to_string(),
            text.replace("mode: Off", "mode: Enforce"),
        ));
    }
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    PolicySet::from_sources(&refs).unwrap()
}

#[test]
fn damaged_pods_never_crash_the_engine() {
    let sets = [
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap(),
        all_policies_enforced(),
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let (mut patched, mut errors, mut total) = (0, 0, 0);
    for (name, original) in common::fixtures() {
        for round in 0..600 {
            let mut pod = original.clone();
            for _ in 0..=rng.below(3) {
                damage(&mut pod, &mut rng);
            }
            for set in &sets {
                total += 1;
                let ctx = format!("{name} round {round}");
                let eval = match evaluate(set, &pod, None) {
                    Ok(e) => e,
                    Err(e) => {
                        // A clear error, never a panic.
                        assert!(!e.to_string().is_empty(), "{ctx}");
                        errors += 1;
                        continue;
                    }
                };
                if let Verdict::Patched { patch, pod: out } = &eval.verdict {
                    patched += 1;
                    let mut applied = pod.clone();
                    json_patch::patch(&mut applied, patch)
                        .unwrap_or_else(|e| panic!("{ctx}: patch does not apply: {e}\n{pod}"));
                    assert_eq!(&applied, out, "{ctx}");
                    let again = evaluate(set, out, None)
                        .unwrap_or_else(|e| panic!("{ctx}: patched pod unreadable: {e}"));
                    assert_eq!(
                        again.verdict,
                        Verdict::Unchanged,
                        "{ctx}: second pass\n{pod}"
                    );
                }
            }
        }
    }
    // The damage really exercised both paths.
    assert!(patched > total / 3, "{patched} of {total} patched");
    assert!(errors > 50, "{errors} of {total} rejected as unreadable");
}

#[test]
fn non_objects_and_wrong_kinds_are_errors_not_panics() {
    let set = all_policies_enforced();
    for v in [
        json!(null),
        json!(1),
        json!("pod"),
        json!([]),
        json!({"kind": "Service"}),
    ] {
        assert!(evaluate(&set, &v, None).is_err(), "{v}");
    }
    // A Spark pod with no spec cannot be patched: an error naming it.
    let e = evaluate(
        &set,
        &json!({"kind": "Pod", "metadata": {"labels": {"spark-role": "driver"}}}),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no spec"), "{e}");
}
