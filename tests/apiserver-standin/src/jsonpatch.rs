//! RFC 6902 JSON Patch as the API server applies a webhook's patch: `gopkg.in/evanphx/json-patch.v4`
//! (`DecodePatch`, `Patch.Apply`; `dispatcher.go` imports it), with that library's departures from
//! the RFC, which a webhook can rely on without noticing:
//! - `replace` of a missing object member adds it (`partialDoc.get` never fails);
//! - negative array indices count from the end (`SupportNegativeIndices`, on by default), and
//!   `add` at `-1` appends;
//! - `test` of a missing member against `null` passes;
//! - `add` without `value` adds `null`, `copy` from a missing member copies `null`;
//! - a path without a leading `/` is cut at its last `/` like any other.
//!
//! Errors are worded as the library words them (`pkg/errors` wrapping: `message: cause`).

use serde_json::Value;

use crate::typed::json_kind;

const ERR_MISSING: &str = "missing value";
const ERR_INVALID_INDEX: &str = "invalid index referenced";
const ERR_TEST_FAILED: &str = "test failed";

/// A decoded patch: the list of operations, each a JSON object.
pub struct Patch(Vec<serde_json::Map<String, Value>>);

impl Patch {
    /// `jsonpatch.DecodePatch`: a JSON array of objects.
    pub fn decode(bytes: &[u8]) -> Result<Patch, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let Value::Array(items) = v else {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                json_kind(&v)
            ));
        };
        items
            .into_iter()
            .map(|op| match op {
                Value::Object(m) => Ok(m),
                other => Err(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    json_kind(&other)
                )),
            })
            .collect::<Result<_, _>>()
            .map(Patch)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Patch.Apply` on a document (an object or an array).
    pub fn apply(&self, doc: &Value) -> Result<Value, String> {
        let mut doc = doc.clone();
        for op in &self.0 {
            let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
            match kind {
                "add" => add(&mut doc, op)?,
                "remove" => remove(&mut doc, op)?,
                "replace" => replace(&mut doc, op)?,
                "move" => move_op(&mut doc, op)?,
                "test" => test(&doc, op)?,
                "copy" => copy(&mut doc, op)?,
                other => return Err(format!("Unexpected kind: {other}")),
            }
        }
        Ok(doc)
    }
}

fn field<'a>(op: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    op.get(name).and_then(Value::as_str)
}

/// `op.value()`: absent reads as null.
fn value(op: &serde_json::Map<String, Value>) -> Value {
    op.get("value").cloned().unwrap_or(Value::Null)
}

fn decode_key(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

/// `strconv.Atoi`.
fn atoi(key: &str) -> Result<i64, String> {
    key.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {key:?}: invalid syntax"))
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: {ERR_INVALID_INDEX}")
}

/// An index below `size`; a negative one counts from the end (`SupportNegativeIndices`).
fn resolve_index(idx: i64, size: usize) -> Result<usize, String> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let real = if idx < 0 { idx + size } else { idx };
    if real < 0 || real >= size {
        return Err(invalid_index(idx));
    }
    usize::try_from(real).map_err(|_| invalid_index(idx))
}

/// `partialArray.get`'s index rule.
fn existing_index(key: &str, len: usize) -> Result<usize, String> {
    resolve_index(atoi(key)?, len)
}

/// `findObject`: the container holding the last path segment, and that segment.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let key = decode_key(split[split.len() - 1]);
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let part = decode_key(part);
        let next = match cur {
            Value::Object(m) => m.get_mut(&part).filter(|v| !v.is_null())?,
            Value::Array(a) => {
                let i = existing_index(&part, a.len()).ok()?;
                a.get_mut(i)?
            }
            _ => return None,
        };
        if !(next.is_object() || next.is_array()) {
            return None;
        }
        cur = next;
    }
    Some((cur, key))
}

/// `container.get`: a missing (or null) object member is `None`, not an error.
fn get(con: &Value, key: &str) -> Result<Option<Value>, String> {
    match con {
        Value::Object(m) => Ok(m.get(key).filter(|v| !v.is_null()).cloned()),
        Value::Array(a) => Ok(Some(a[existing_index(key, a.len())?].clone())),
        _ => Err(ERR_MISSING.to_string()),
    }
}

/// `container.add`.
fn add_to(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let idx = atoi(key)
                .map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            let size = i64::try_from(a.len() + 1).unwrap_or(i64::MAX);
            if idx >= size {
                return Err(invalid_index(idx));
            }
            let real = if idx < 0 {
                if idx < -size {
                    return Err(invalid_index(idx));
                }
                idx + size
            } else {
                idx
            };
            a.insert(usize::try_from(real).map_err(|_| invalid_index(idx))?, val);
            Ok(())
        }
        _ => Err(ERR_MISSING.to_string()),
    }
}

/// `container.remove`.
fn remove_from(con: &mut Value, key: &str) -> Result<(), String> {
    match con {
        Value::Object(m) => m
            .remove(key)
            .map(drop)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: {ERR_MISSING}")),
        Value::Array(a) => {
            a.remove(existing_index(key, a.len())?);
            Ok(())
        }
        _ => Err(ERR_MISSING.to_string()),
    }
}

fn path_of(op: &serde_json::Map<String, Value>, what: &str) -> Result<String, String> {
    field(op, "path")
        .map(str::to_string)
        .ok_or_else(|| format!("{what} operation failed to decode path: {ERR_MISSING}"))
}

fn add(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let path = path_of(op, "add")?;
    let (con, key) = find_object(doc, &path).ok_or_else(|| {
        format!("add operation does not apply: doc is missing path: \"{path}\": {ERR_MISSING}")
    })?;
    add_to(con, &key, value(op)).map_err(|e| format!("error in add for path: '{path}': {e}"))
}

fn remove(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let path = path_of(op, "remove")?;
    let (con, key) = find_object(doc, &path).ok_or_else(|| {
        format!("remove operation does not apply: doc is missing path: \"{path}\": {ERR_MISSING}")
    })?;
    remove_from(con, &key).map_err(|e| format!("error in remove for path: '{path}': {e}"))
}

fn replace(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let path = path_of(op, "replace")?;
    if path.is_empty() {
        let v = value(op);
        if !(v.is_object() || v.is_array()) {
            return Err("replace operation value must be object or array".into());
        }
        *doc = v;
        return Ok(());
    }
    let (con, key) = find_object(doc, &path).ok_or_else(|| {
        format!("replace operation does not apply: doc is missing path: {path}: {ERR_MISSING}")
    })?;
    get(con, &key).map_err(|_| {
        format!("replace operation does not apply: doc is missing key: {path}: {ERR_MISSING}")
    })?;
    match con {
        Value::Object(m) => {
            m.insert(key, value(op));
        }
        Value::Array(a) => {
            let i = existing_index(&key, a.len())?;
            a[i] = value(op);
        }
        _ => return Err(ERR_MISSING.into()),
    }
    Ok(())
}

fn from_of(op: &serde_json::Map<String, Value>, what: &str) -> Result<String, String> {
    field(op, "from")
        .map(str::to_string)
        .ok_or_else(|| format!("{what} operation failed to decode from: {ERR_MISSING}"))
}

fn move_op(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let from = from_of(op, "move")?;
    let (con, key) = find_object(doc, &from).ok_or_else(|| {
        format!("move operation does not apply: doc is missing from path: {from}: {ERR_MISSING}")
    })?;
    let val = get(con, &key)
        .map_err(|e| format!("error in move for path: '{key}': {e}"))?
        .unwrap_or(Value::Null);
    remove_from(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
    let path = path_of(op, "move")?;
    let (con, key) = find_object(doc, &path).ok_or_else(|| {
        format!(
            "move operation does not apply: doc is missing destination path: {path}: {ERR_MISSING}"
        )
    })?;
    add_to(con, &key, val).map_err(|e| format!("error in move for path: '{path}': {e}"))
}

fn copy(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let from = from_of(op, "copy")?;
    let (con, key) = find_object(doc, &from).ok_or_else(|| {
        format!("copy operation does not apply: doc is missing from path: {from}: {ERR_MISSING}")
    })?;
    let val = get(con, &key)
        .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
        .unwrap_or(Value::Null);
    let path = path_of(op, "copy")?;
    let (con, key) = find_object(doc, &path).ok_or_else(|| {
        format!(
            "copy operation does not apply: doc is missing destination path: {path}: {ERR_MISSING}"
        )
    })?;
    add_to(con, &key, val).map_err(|e| format!("error while adding value during copy: {e}"))
}

fn test(doc: &Value, op: &serde_json::Map<String, Value>) -> Result<(), String> {
    let path = path_of(op, "test")?;
    let failed = || format!("testing value {path} failed: {ERR_TEST_FAILED}");
    if path.is_empty() {
        return if *doc == value(op) {
            Ok(())
        } else {
            Err(failed())
        };
    }
    let mut scratch = doc.clone();
    let (con, key) = find_object(&mut scratch, &path).ok_or_else(|| {
        format!("test operation does not apply: is missing path: {path}: {ERR_MISSING}")
    })?;
    let val = get(con, &key).map_err(|e| format!("error in test for path: '{path}': {e}"))?;
    let want = op.get("value");
    match (val, want) {
        // Go dereferences the absent value here and panics; the API server answers 500.
        (None, None) => Err(format!("test operation without a value at {path}")),
        (None, Some(Value::Null)) => Ok(()),
        (None, Some(_)) | (Some(_), None) => Err(failed()),
        (Some(v), Some(w)) if v == *w => Ok(()),
        (Some(_), Some(_)) => Err(failed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> Result<Value, String> {
        Patch::decode(patch.to_string().as_bytes())?.apply(&doc)
    }

    /// Where the library departs from RFC 6902, with what it makes of the document.
    #[test]
    fn the_libraries_departures_from_the_rfc() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2, 3]});
        let cases: Vec<(Value, Value)> = vec![
            (
                json!([{"op": "replace", "path": "/a/c", "value": 2}]),
                json!({"a": {"b": 1, "c": 2}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "remove", "path": "/l/-1"}]),
                json!({"a": {"b": 1}, "l": [1, 2]}),
            ),
            (
                json!([{"op": "replace", "path": "/l/-3", "value": 9}]),
                json!({"a": {"b": 1}, "l": [9, 2, 3]}),
            ),
            (
                json!([{"op": "add", "path": "/l/-1", "value": 4}]),
                json!({"a": {"b": 1}, "l": [1, 2, 3, 4]}),
            ),
            (
                json!([{"op": "test", "path": "/a/missing", "value": null}]),
                doc.clone(),
            ),
            (
                json!([{"op": "add", "path": "/a/n"}]),
                json!({"a": {"b": 1, "n": null}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "copy", "from": "/a/missing", "path": "/a/c"}]),
                json!({"a": {"b": 1, "c": null}, "l": [1, 2, 3]}),
            ),
            (
                json!([{"op": "move", "from": "/a/b", "path": "/l/0"}]),
                json!({"a": {}, "l": [1, 1, 2, 3]}),
            ),
            (json!([]), doc.clone()),
        ];
        for (patch, want) in cases {
            assert_eq!(apply(doc.clone(), patch.clone()), Ok(want), "{patch}");
        }
    }

    #[test]
    fn failures_are_worded_as_the_library_words_them() {
        let doc = json!({"a": {"b": 1}, "l": [1]});
        for (patch, want) in [
            (json!({"op": "add"}), "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
            (json!([1]), "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
            (json!([{"op": "remove", "path": "/a/x"}]), "error in remove for path: '/a/x': Unable to remove nonexistent key: x: missing value"),
            (json!([{"op": "add", "path": "/x/y", "value": 1}]), "add operation does not apply: doc is missing path: \"/x/y\": missing value"),
            (json!([{"op": "replace", "path": "/l/1", "value": 1}]), "replace operation does not apply: doc is missing key: /l/1: missing value"),
            (json!([{"op": "test", "path": "/a/b", "value": 2}]), "testing value /a/b failed: test failed"),
            (json!([{"op": "test", "path": "/a/b", "value": null}]), "testing value /a/b failed: test failed"),
            (json!([{"op": "add", "path": "/l/3", "value": 1}]), "error in add for path: '/l/3': Unable to access invalid index: 3: invalid index referenced"),
            (json!([{"op": "frob", "path": "/a"}]), "Unexpected kind: frob"),
            (json!([{"path": "/a"}]), "Unexpected kind: unknown"),
        ] {
            assert_eq!(apply(doc.clone(), patch.clone()).unwrap_err(), want, "{patch}");
        }
    }
}
