//! Proof under hostile input: the generator of structure-aware Spark pods ([`podgen`]), the
//! invariants every admission must keep ([`invariants`]), and the bodies of the three fuzz
//! targets ([`targets`]).
//!
//! Shared by the property tests and the corpus replay of the normal test suite
//! (`tests/engine_properties.rs`, `tests/fuzz_corpus.rs`, as `mod proof;`) and by the fuzz
//! crate (`fuzz/src/lib.rs`, by path), so a crash the fuzzer finds replays as an ordinary test.
//! A pod is judged valid by the end-to-end API-server stand-in's own rules
//! (`standin_rules`, compiled from tests/apiserver-standin's source).
#![allow(dead_code)]

#[path = "../common/defaults.rs"]
pub mod defaults;
pub mod invariants;
pub mod podgen;
pub mod targets;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use spark_admission::PolicySet;

/// The repository root, whether this is compiled into the product's tests or into fuzz/.
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("tests/fixtures").is_dir() {
        here.to_path_buf()
    } else {
        here.join("..")
    }
}

/// What the generated admissions are made from: the recorded pods and the policy sets.
pub struct World {
    /// Every recorded Spark pod, as Spark created it.
    pub bases: Vec<Value>,
    /// `(name, set)`: the shipped policies as shipped, and each file of tests/proof/sets.
    pub sets: Vec<(String, PolicySet)>,
}

/// Loaded once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World::load(&repo_root()))
}

impl World {
    fn load(root: &Path) -> World {
        let read = |p: &Path| -> String {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let json_files = |dir: &Path| -> Vec<PathBuf> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            files
        };
        let fixtures = root.join("tests/fixtures");
        let mut bases = vec![];
        for path in json_files(&fixtures)
            .into_iter()
            .chain(json_files(&fixtures.join("fidelity")))
        {
            let v: Value = serde_json::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if v["kind"] == "Pod" {
                bases.push(v);
            }
        }
        assert!(bases.len() >= 80, "recorded pods missing: {}", bases.len());

        let shipped = root.join("policies");
        let mut sets = vec![(
            "shipped".to_string(),
            PolicySet::load_dir(&shipped).unwrap_or_else(|e| panic!("policies/: {e}")),
        )];
        let dir = root.join("tests/proof/sets");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = read(&path);
            let set = PolicySet::from_sources(&[(&path, text.as_str())])
                .unwrap_or_else(|e| panic!("{e}"));
            let name = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            sets.push((name, set));
        }
        World { bases, sets }
    }
}
