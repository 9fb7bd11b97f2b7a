//! RFC 6902 JSON Patch between two JSON documents.
//!
//! The engine diffs the typed form of the original pod against the typed form of the
//! mutated pod and applies the result to the *original* JSON. So the patch must be minimal:
//! objects are compared key by key, and arrays element by element with a longest common
//! subsequence, so an unchanged element is never rewritten and fields the typed model does
//! not know (newer API fields) stay where they are. Paths escape `~` and `/` (RFC 6901).

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Patch {
    let mut ops = vec![];
    let mut path = vec![];
    diff_at(&mut path, from, to, &mut ops);
    Patch(ops)
}

fn pointer(path: &[String]) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().map(|s| s.as_str()))
}

fn diff_at(path: &mut Vec<String>, from: &Value, to: &Value, ops: &mut Vec<PatchOperation>) {
    match (from, to) {
        (a, b) if a == b => {}
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                path.push(k.clone());
                match b.get(k) {
                    Some(vb) => diff_at(path, va, vb, ops),
                    None => ops.push(PatchOperation::Remove(RemoveOperation {
                        path: pointer(path),
                    })),
                }
                path.pop();
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    path.push(k.clone());
                    ops.push(PatchOperation::Add(AddOperation {
                        path: pointer(path),
                        value: vb.clone(),
                    }));
                    path.pop();
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => diff_array(path, a, b, ops),
        (_, b) => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(path),
            value: b.clone(),
        })),
    }
}

/// Edit script for arrays: keep the longest common subsequence of equal elements; between
/// kept elements, pair changed elements up (diffing inside them), then remove or add the
/// rest. Indices are tracked as the operations apply one after another.
fn diff_array(path: &mut Vec<String>, a: &[Value], b: &[Value], ops: &mut Vec<PatchOperation>) {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..]. Pod arrays are short (tens of entries).
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut index = 0usize; // position in the array as patched so far
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
            index += 1;
            continue;
        }
        // A gap: a[i..gi] are not kept, b[j..gj] are new.
        let (mut gi, mut gj) = (i, j);
        while gi < n || gj < m {
            if gi < n && gj < m && a[gi] == b[gj] && lcs[gi][gj] == lcs[i][j] {
                break;
            }
            if gi < n && (gj >= m || lcs[gi + 1][gj] >= lcs[gi][gj + 1]) {
                gi += 1;
            } else {
                gj += 1;
            }
        }
        let paired = (gi - i).min(gj - j);
        for k in 0..paired {
            path.push(index.to_string());
            diff_at(path, &a[i + k], &b[j + k], ops);
            path.pop();
            index += 1;
        }
        for _ in paired..(gi - i) {
            path.push(index.to_string());
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(path),
            }));
            path.pop();
        }
        for k in paired..(gj - j) {
            path.push(index.to_string());
            ops.push(PatchOperation::Add(AddOperation {
                path: pointer(path),
                value: b[j + k].clone(),
            }));
            path.pop();
            index += 1;
        }
        i = gi;
        j = gj;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(from: Value, to: Value) -> Patch {
        let p = diff(&from, &to);
        let mut doc = from.clone();
        json_patch::patch(&mut doc, &p).unwrap();
        assert_eq!(doc, to, "patch {p:?}");
        p
    }

    #[test]
    fn round_trips() {
        let cases = [
            (json!({}), json!({"a": 1})),
            (json!({"a": 1}), json!({})),
            (json!({"a": [1, 2, 3]}), json!({"a": [1, 2, 3, 4]})),
            (json!({"a": [1, 2, 3]}), json!({"a": [0, 1, 2, 3]})),
            (json!({"a": [1, 2, 3]}), json!({"a": [1, 3]})),
            (json!({"a": [1, 2, 3]}), json!({"a": [3, 2, 1]})),
            (json!([1, 2, 3, 4, 5]), json!([9, 2, 8, 4, 7, 6])),
            (
                json!([{"n": 1}, {"n": 2}]),
                json!([{"n": 1, "x": true}, {"n": 2}, {"n": 3}]),
            ),
            (json!([]), json!([1, 2])),
            (json!([1, 2]), json!([])),
            (json!({"a": {"b": null}}), json!({"a": {"b": {"c": 1}}})),
            (json!("x"), json!(["x"])),
        ];
        for (from, to) in cases {
            check(from, to);
        }
    }

    #[test]
    fn escapes_slash_and_tilde() {
        let p = check(
            json!({"metadata": {"annotations": {}}}),
            json!({"metadata": {"annotations": {"spark-admission.dev/policies": "a", "x~y": "b"}}}),
        );
        let paths: Vec<String> =
            p.0.iter()
                .map(|op| match op {
                    PatchOperation::Add(a) => a.path.to_string(),
                    other => panic!("{other:?}"),
                })
                .collect();
        assert!(paths.contains(&"/metadata/annotations/spark-admission.dev~1policies".to_string()));
        assert!(paths.contains(&"/metadata/annotations/x~0y".to_string()));
    }

    #[test]
    fn equal_documents_give_an_empty_patch() {
        let v = json!({"a": [1, {"b": 2}]});
        assert!(diff(&v, &v).0.is_empty());
    }

    #[test]
    fn unchanged_elements_are_not_touched() {
        // An element with a field unknown to the other side (applied to the original, the
        // patch must not remove what the typed model dropped) stays put when only a later
        // element changes.
        let p = check(
            json!([{"name": "a"}, {"name": "b", "v": 1}]),
            json!([{"name": "a"}, {"name": "b", "v": 2}]),
        );
        assert_eq!(p.0.len(), 1);
        match &p.0[0] {
            PatchOperation::Replace(r) => assert_eq!(r.path.to_string(), "/1/v"),
            other => panic!("{other:?}"),
        }
    }
}
