//! The JSON Schema of a policy file, generated from the policy model ([`super::model`]) so
//! that it cannot drift from what the loader accepts. Committed as `policies/schema.json`
//! for editors: the YAML language server validates and completes policy files with it.
//! Cross-field rules and the checks of names and patterns stay the loader's (`check`).

use serde_json::Value;

use super::model::{PolicyDocument, API_VERSION, KIND};

/// Where the committed schema is, relative to the repository.
pub const SCHEMA_FILE: &str = "policies/schema.json";

/// The schema as committed: pretty JSON with a final newline.
pub fn policy_schema() -> String {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(PolicyDocument)).unwrap_or(Value::Null);
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "title".into(),
            Value::String(format!("{KIND} ({API_VERSION})")),
        );
        // The header's two strings are fixed: say so, for completion and validation.
        if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "apiVersion".into(),
                serde_json::json!({ "const": API_VERSION }),
            );
            props.insert("kind".into(), serde_json::json!({ "const": KIND }));
        }
    }
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
