//! The fuzz targets' committed inputs as ordinary tests: each seed of fuzz/corpus/TARGET and
//! each input that once broke an invariant, kept in fuzz/regressions/TARGET, runs through the
//! target's checks (tests/proof/targets.rs) on every `cargo test`.

mod proof;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = proof::repo_root().join("fuzz");
    let mut out = vec![];
    for kind in ["corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no committed inputs for {target}");
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn every_committed_admission_body_gets_a_well_formed_answer() {
    replay("admission_body", proof::targets::admission_body);
}

#[test]
fn every_committed_policy_file_loads_or_fails_precisely() {
    replay("policy_set", proof::targets::policy_set);
}

#[test]
fn every_committed_engine_input_keeps_the_invariants() {
    replay("engine", |b| {
        proof::targets::engine(b);
    });
}
