//! policies/schema.json is what the policy model generates: editors validate against it.

use std::path::Path;

#[test]
fn the_committed_schema_is_the_one_the_policy_model_generates() {
    use spark_admission::policy::schema::{policy_schema, SCHEMA_FILE};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == policy_schema(),
        "{SCHEMA_FILE} is stale: regenerate it with `cargo run -- schema > {SCHEMA_FILE}`"
    );
}
