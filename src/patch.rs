//! RFC 6902 JSON Patch between two JSON documents.
//!
//! The engine diffs the typed form of the original pod against the typed form of the
//! mutated pod and applies the result to the *original* JSON. So the patch must be minimal:
//! objects are compared key by key, and arrays element by element, so an unchanged element
//! is never rewritten and fields the typed model does not know (newer API fields) stay where
//! they are. Paths escape `~` and `/` (RFC 6901).
//!
//! Bounded by construction: any tenant who may create a Spark pod chooses its size, so the
//! cost is O(n log n) in the size of the documents (times their nesting depth, which serde
//! caps at 128). Arrays are matched on anchors — elements that occur exactly once on each
//! side, kept in order by a longest increasing subsequence — instead of a quadratic
//! longest-common-subsequence table; between anchors, elements are paired by position.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, Hasher};

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde::Serialize;
use serde_json::Value;

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Patch {
    let mut ops = vec![];
    let mut path = vec![];
    diff_at(&mut path, from, to, &mut ops);
    Patch(ops)
}

/// Both objects or both arrays: diffed inside rather than replaced whole.
fn containers_alike(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    )
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
                    Some(vb) if va == vb => {}
                    Some(vb) if containers_alike(va, vb) => diff_at(path, va, vb, ops),
                    // A member whose value changes is written with `add`, which replaces it
                    // where it exists and adds it where it does not: a typed value turned
                    // back into JSON can hold a required member the pod's JSON left out
                    // (k8s-openapi writes `secretKeyRef.name: ""` when `name` is missing),
                    // and a `replace` of it would not apply (found by the admission fuzz
                    // target).
                    Some(vb) => ops.push(PatchOperation::Add(AddOperation {
                        path: pointer(path),
                        value: vb.clone(),
                    })),
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

/// Edit script for arrays. The common prefix and suffix are kept; the middle goes to
/// [`diff_middle`].
fn diff_array(path: &mut Vec<String>, a: &[Value], b: &[Value], ops: &mut Vec<PatchOperation>) {
    let (prefix, suffix) = common_ends(a, b);
    let middle = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let anchors = anchors(middle.0, middle.1);
    // Cloning a JSON value cannot fail.
    let _ = diff_middle(path, middle, anchors, prefix, &|v| Ok(v.clone()), ops);
}

/// The lengths of the common prefix and the common suffix of two lists (not overlapping).
fn common_ends<T: PartialEq>(a: &[T], b: &[T]) -> (usize, usize) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix, suffix)
}

/// Edit script for the differing middle of an array, which starts at array position
/// `start`: the anchors are kept; each gap between anchors pairs old and new elements by
/// position (diffing inside a pair), then removes or adds the rest. Indices are tracked as
/// the operations apply one after another. `json` turns an element into JSON: only the
/// elements in gaps are turned.
fn diff_middle<T: PartialEq>(
    path: &mut Vec<String>,
    (a, b): (&[T], &[T]),
    anchors: Vec<(usize, usize)>,
    start: usize,
    json: &dyn Fn(&T) -> Result<Value, serde_json::Error>,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), serde_json::Error> {
    let mut index = start; // position in the array as patched so far
    let (mut i, mut j) = (0, 0);
    for (ai, bj) in anchors.into_iter().chain([(a.len(), b.len())]) {
        let (gap_a, gap_b) = (&a[i..ai], &b[j..bj]);
        let paired = gap_a.len().min(gap_b.len());
        for (x, y) in gap_a.iter().zip(gap_b) {
            // A gap of repeated elements pairs equal ones: nothing to turn into JSON.
            if x != y {
                path.push(index.to_string());
                diff_at(path, &json(x)?, &json(y)?, ops);
                path.pop();
            }
            index += 1;
        }
        for _ in paired..gap_a.len() {
            path.push(index.to_string());
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(path),
            }));
            path.pop();
        }
        for y in &gap_b[paired..] {
            path.push(index.to_string());
            ops.push(PatchOperation::Add(AddOperation {
                path: pointer(path),
                value: json(y)?,
            }));
            path.pop();
            index += 1;
        }
        index += 1; // the anchor itself (or, after the last gap, nothing)
        (i, j) = (ai + 1, bj + 1);
    }
    Ok(())
}

/// The operations that turn the typed value `from` into `to`, found at `path` (`None` is
/// "absent"). Equal values cost a comparison and nothing else; only a value that changed
/// is turned into JSON to be diffed.
pub fn diff_typed<T: Serialize + PartialEq>(
    path: &[&str],
    from: Option<&T>,
    to: Option<&T>,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), serde_json::Error> {
    if from == to {
        return Ok(());
    }
    let mut path: Vec<String> = path.iter().map(|t| t.to_string()).collect();
    match (from, to) {
        (_, None) => ops.push(PatchOperation::Remove(RemoveOperation {
            path: pointer(&path),
        })),
        (None, Some(v)) => ops.push(PatchOperation::Add(AddOperation {
            path: pointer(&path),
            value: serde_json::to_value(v)?,
        })),
        (Some(a), Some(b)) => diff_at(
            &mut path,
            &serde_json::to_value(a)?,
            &serde_json::to_value(b)?,
            ops,
        ),
    }
    Ok(())
}

/// [`diff_typed`] for a list: the common prefix and suffix are found on the typed
/// elements, and only the differing middle is turned into JSON.
pub fn diff_typed_list<T: Serialize + PartialEq>(
    path: &[&str],
    from: Option<&Vec<T>>,
    to: Option<&Vec<T>>,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), serde_json::Error> {
    diff_list(path, from, to, &|x| serde_json::to_value(x), ops)
}

/// A list as it was before the mutations ran, kept to diff the mutated list against. A long
/// list is kept as each element's JSON text: a typed element takes the whole size of its
/// type however little it holds (a k8s-openapi `Volume` is 3,280 bytes, an `EnvVar` 360), so
/// a typed copy of a tenant's 16,000 volumes would double the memory the pod itself takes.
/// Equal values serialize to equal text, so comparing texts compares values.
#[derive(Debug)]
pub enum ListBefore<T> {
    Typed(Option<Vec<T>>),
    Text(Vec<Box<str>>),
}

/// Lists up to this long are kept typed: copying a few elements is cheaper than turning
/// them, and the mutated list, into text.
const TYPED_UP_TO: usize = 64;

impl<T: Serialize + PartialEq + Clone> ListBefore<T> {
    pub fn of(list: Option<&Vec<T>>) -> Result<ListBefore<T>, serde_json::Error> {
        Ok(match list {
            Some(l) if l.len() > TYPED_UP_TO => ListBefore::Text(texts(l)?),
            _ => ListBefore::Typed(list.cloned()),
        })
    }

    /// The operations that turn this list into `now`, found at `path`.
    pub fn diff(
        &self,
        path: &[&str],
        now: Option<&Vec<T>>,
        ops: &mut Vec<PatchOperation>,
    ) -> Result<(), serde_json::Error> {
        match self {
            ListBefore::Typed(before) => diff_typed_list(path, before.as_ref(), now, ops),
            ListBefore::Text(before) => {
                let now = now.map(|l| texts(l)).transpose()?;
                diff_list(
                    path,
                    Some(before),
                    now.as_ref(),
                    &|x| serde_json::from_str(x),
                    ops,
                )
            }
        }
    }
}

fn texts<T: Serialize>(list: &[T]) -> Result<Vec<Box<str>>, serde_json::Error> {
    list.iter()
        .map(|x| serde_json::to_string(x).map(String::into_boxed_str))
        .collect()
}

/// The list diff behind [`diff_typed_list`] and [`ListBefore::diff`]: `json` turns an
/// element into JSON, and only the elements that differ are turned.
fn diff_list<T: Serialize + PartialEq>(
    path: &[&str],
    from: Option<&Vec<T>>,
    to: Option<&Vec<T>>,
    json: &dyn Fn(&T) -> Result<Value, serde_json::Error>,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), serde_json::Error> {
    // An empty list is no list: the API server's decoder drops it (Go's `omitempty`) and
    // counts the two equal, so writing one would be a change a reinvocation makes again.
    let from = from.filter(|v| !v.is_empty());
    let to = to.filter(|v| !v.is_empty());
    let owned = || -> Vec<String> { path.iter().map(|t| t.to_string()).collect() };
    let (a, b) = match (from, to) {
        (None, None) => return Ok(()),
        (Some(_), None) => {
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(&owned()),
            }));
            return Ok(());
        }
        (None, Some(b)) => {
            let value = b.iter().map(json).collect::<Result<_, _>>()?;
            ops.push(PatchOperation::Add(AddOperation {
                path: pointer(&owned()),
                value: Value::Array(value),
            }));
            return Ok(());
        }
        (Some(a), Some(b)) => (a, b),
    };
    let (prefix, suffix) = common_ends(a, b);
    if prefix == a.len() && prefix == b.len() {
        return Ok(());
    }
    let mut path = owned();
    let (a, b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    // Anchors on the elements as they are; only the elements in gaps become JSON.
    diff_middle(&mut path, (a, b), anchors(a, b), prefix, json, ops)
}

/// Pairs `(i, j)` with `a[i] == b[j]`, increasing in both, where the element occurs exactly
/// once in `a` and once in `b` (patience diff's anchors). The longest increasing run of
/// such pairs is kept: O(n log n). Hashes are keyed per process (`RandomState`), so a pod
/// cannot be crafted to collide; a collision would only cost an anchor, never correctness,
/// since every anchor is checked with `==`.
fn anchors<T: Serialize + PartialEq>(a: &[T], b: &[T]) -> Vec<(usize, usize)> {
    if a.is_empty() || b.is_empty() {
        return vec![];
    }
    if is_small(a, b) {
        anchors_by_comparison(a, b)
    } else {
        anchors_by_hashing(a, b)
    }
}

/// Whether two lists are short enough to compare their elements pairwise: what policies
/// change is a few entries, and comparing those is cheaper than hashing them.
fn is_small<T>(a: &[T], b: &[T]) -> bool {
    (a.len() + b.len()) * (a.len() + b.len()) <= SMALL
}

/// [`anchors`] in O(n log n), by hashing every element.
fn anchors_by_hashing<T: Serialize + PartialEq>(a: &[T], b: &[T]) -> Vec<(usize, usize)> {
    let keys = RandomState::new();
    // hash → (count in a, index in a, count in b, index in b)
    let mut seen: HashMap<u64, (u32, usize, u32, usize)> = HashMap::with_capacity(a.len());
    for (i, v) in a.iter().enumerate() {
        let e = seen
            .entry(serialized_hash(&keys, v))
            .or_insert((0, i, 0, 0));
        e.0 = e.0.saturating_add(1);
    }
    for (j, v) in b.iter().enumerate() {
        if let Entry::Occupied(mut e) = seen.entry(serialized_hash(&keys, v)) {
            let e = e.get_mut();
            e.2 = e.2.saturating_add(1);
            e.3 = j;
        }
    }
    let mut unique: Vec<(usize, usize)> = seen
        .into_values()
        .filter(|&(ca, i, cb, j)| ca == 1 && cb == 1 && a[i] == b[j])
        .map(|(_, i, _, j)| (i, j))
        .collect();
    unique.sort_unstable();
    longest_increasing(&unique)
}

/// Up to this many element comparisons, anchors are found by comparing all pairs.
const SMALL: usize = 256;

/// [`anchors`] for short lists, by comparing elements pairwise: O((n + m)²).
fn anchors_by_comparison<T: PartialEq>(a: &[T], b: &[T]) -> Vec<(usize, usize)> {
    let once_in = |list: &[T], x: &T| list.iter().filter(|y| *y == x).count() == 1;
    let unique: Vec<(usize, usize)> = a
        .iter()
        .enumerate()
        .filter(|(_, x)| once_in(a, x))
        .filter_map(|(i, x)| {
            let j = b.iter().position(|y| y == x)?;
            once_in(b, x).then_some((i, j))
        })
        .collect();
    longest_increasing(&unique)
}

/// The longest subsequence of `pairs` (sorted by `.0`) that also increases in `.1`.
fn longest_increasing(pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // tails[k]: index into `pairs` of the smallest `.1` ending a run of length k + 1.
    let mut tails: Vec<usize> = vec![];
    let mut before: Vec<Option<usize>> = vec![None; pairs.len()];
    for (p, &(_, j)) in pairs.iter().enumerate() {
        let k = tails.partition_point(|&t| pairs[t].1 < j);
        before[p] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(p);
        } else {
            tails[k] = p;
        }
    }
    let mut run = vec![];
    let mut at = tails.last().copied();
    while let Some(p) = at {
        run.push(pairs[p]);
        at = before[p];
    }
    run.reverse();
    run
}

/// A hash of a value's JSON text, written straight into the hasher: no JSON value is built,
/// so hashing a long typed list allocates nothing. Equal values serialize to equal text.
fn serialized_hash<T: Serialize>(keys: &RandomState, v: &T) -> u64 {
    struct Feed<'h, H>(&'h mut H);
    impl<H: Hasher> std::io::Write for Feed<'_, H> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = keys.build_hasher();
    // A Kubernetes type always serializes; were it to fail, the hash of the text so far is
    // still a hash, and every anchor is checked with `==`.
    let _ = serde_json::to_writer(Feed(&mut h), v);
    h.finish()
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
    fn an_empty_list_is_the_same_as_none() {
        let diff = |from: Option<&Vec<i32>>, to: Option<&Vec<i32>>| {
            let mut ops = vec![];
            diff_typed_list(&["env"], from, to, &mut ops).unwrap();
            serde_json::to_value(Patch(ops)).unwrap()
        };
        let (empty, one) = (vec![], vec![1]);
        assert_eq!(diff(None, Some(&empty)), json!([]));
        assert_eq!(diff(Some(&empty), None), json!([]));
        assert_eq!(
            diff(Some(&empty), Some(&one)),
            json!([{"op": "add", "path": "/env", "value": [1]}])
        );
        assert_eq!(
            diff(Some(&one), Some(&empty)),
            json!([{"op": "remove", "path": "/env"}])
        );
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
    fn random_edits_round_trip() {
        // A small deterministic generator: arrays with duplicates, moves, inserts, edits.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2000 {
            let len = next(12) as usize;
            let a: Vec<Value> = (0..len).map(|_| json!({"n": next(6)})).collect();
            let mut b = a.clone();
            for _ in 0..next(5) {
                match next(4) {
                    0 if !b.is_empty() => {
                        let at = next(b.len() as u64) as usize;
                        b.remove(at);
                    }
                    1 => {
                        let at = next(b.len() as u64 + 1) as usize;
                        b.insert(at, json!({"n": next(8)}));
                    }
                    2 if !b.is_empty() => {
                        let at = next(b.len() as u64) as usize;
                        b[at]["x"] = json!(next(3));
                    }
                    _ if b.len() > 1 => {
                        let from = next(b.len() as u64) as usize;
                        let item = b.remove(from);
                        let to = next(b.len() as u64 + 1) as usize;
                        b.insert(to, item);
                    }
                    _ => {}
                }
            }
            check(Value::Array(a), Value::Array(b));
        }
    }

    /// A tenant's pod with 16,000 env vars, the first rewritten and one appended (what the
    /// local-dirs and secret-env policies do): two operations, found without a quadratic
    /// table (which needed 2.3 s and 314 MiB at 8,000 entries).
    #[test]
    fn a_huge_array_changed_at_both_ends_gives_two_operations() {
        let n = 16_000;
        let a: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("VAR_{i}"), "value": "x"}))
            .collect();
        let mut b = a.clone();
        b[0]["value"] = json!("/local/dir");
        b.push(
            json!({"name": "APP_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        );
        let p = check(json!({"env": a}), json!({"env": b}));
        assert_eq!(p.0.len(), 2, "{p:?}");

        // The same with every element equal (no unique anchors): pairing by position.
        let a = vec![json!({"name": "X", "value": "1"}); n];
        let mut b = a.clone();
        b[0]["value"] = json!("2");
        b.push(json!({"name": "Y"}));
        let p = check(Value::Array(a), Value::Array(b));
        assert_eq!(p.0.len(), 2, "{p:?}");
    }

    /// A long list kept as text gives the patch its typed copy gives.
    #[test]
    fn a_list_kept_as_text_diffs_as_the_typed_list() {
        use k8s_openapi::api::core::v1::EnvVar;
        let var = |name: String, value: &str| EnvVar {
            name,
            value: Some(value.to_string()),
            ..EnvVar::default()
        };
        for n in [0, 3, TYPED_UP_TO, TYPED_UP_TO + 1, 2_000] {
            let a: Vec<EnvVar> = (0..n).map(|i| var(format!("VAR_{i}"), "x")).collect();
            type Edit<'a> = &'a dyn Fn(&mut Vec<EnvVar>);
            let edits: [Edit; 5] = [
                &|b| b.push(var("APP_SECRET".into(), "s")),
                &|b| b.insert(0, var("FIRST".into(), "f")),
                &|b| {
                    if let Some(v) = b.first_mut() {
                        v.value = Some("/local/dir".into());
                    }
                    b.push(var("LAST".into(), "l"));
                },
                &|b| {
                    let middle = b.len() / 2;
                    if middle < b.len() {
                        b.remove(middle);
                    }
                },
                &|b| b.clear(),
            ];
            let before = ListBefore::of(Some(&a)).unwrap();
            assert_eq!(matches!(before, ListBefore::Text(_)), n > TYPED_UP_TO);
            for edit in edits {
                let mut b = a.clone();
                edit(&mut b);
                let (mut typed, mut text) = (vec![], vec![]);
                diff_typed_list(&["env"], Some(&a), Some(&b), &mut typed).unwrap();
                before.diff(&["env"], Some(&b), &mut text).unwrap();
                assert_eq!(Patch(text), Patch(typed.clone()), "{n} elements");
                let mut doc = json!({"env": a});
                json_patch::patch(&mut doc, &Patch(typed)).unwrap();
                // An emptied list is removed (an empty list is no list).
                let want = if b.is_empty() && !a.is_empty() {
                    json!({})
                } else {
                    json!({"env": b})
                };
                assert_eq!(doc, want, "{n} elements");
            }
        }
    }

    #[test]
    fn a_moved_element_costs_one_remove_and_one_add() {
        let a: Vec<Value> = (0..1000).map(|i| json!(i)).collect();
        let mut b = a.clone();
        let moved = b.remove(10);
        b.insert(900, moved);
        let p = check(Value::Array(a), Value::Array(b));
        assert_eq!(p.0.len(), 2, "{p:?}");
    }

    #[test]
    fn short_and_long_lists_find_the_same_anchors() {
        let list = |v: &[u64]| v.iter().map(|n| json!(n)).collect::<Vec<_>>();
        for (a, b) in [
            (list(&[1, 2, 3, 2, 5]), list(&[5, 1, 2, 3, 9])),
            (list(&[1, 1, 1]), list(&[1, 2])),
            (list(&[4, 3, 2, 1]), list(&[1, 2, 3, 4])),
        ] {
            assert_eq!(
                anchors_by_comparison(&a, &b),
                anchors_by_hashing(&a, &b),
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn a_changed_member_applies_where_the_pod_left_it_out() {
        // The typed view of `secretKeyRef: {key: k}` holds `name: ""`; the pod's JSON has no
        // name. The patch made from the typed view must still apply to the pod.
        let typed = json!({"secretKeyRef": {"key": "k", "name": ""}});
        let wanted = json!({"secretKeyRef": {"key": "k", "name": "app"}});
        let mut pod = json!({"secretKeyRef": {"key": "k"}});
        json_patch::patch(&mut pod, &diff(&typed, &wanted)).unwrap();
        assert_eq!(pod, wanted);
    }

    #[test]
    fn longest_increasing_keeps_the_longest_ordered_run() {
        let pairs = [(0, 5), (1, 1), (2, 2), (3, 0), (4, 3), (5, 4)];
        assert_eq!(
            longest_increasing(&pairs),
            vec![(1, 1), (2, 2), (4, 3), (5, 4)]
        );
        assert!(longest_increasing(&[]).is_empty());
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
            PatchOperation::Add(r) => assert_eq!(r.path.to_string(), "/1/v"),
            other => panic!("{other:?}"),
        }
    }
}
