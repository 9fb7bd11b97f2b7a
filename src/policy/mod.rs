//! Policy model (typed, validated at load) and loading from a directory of YAML files.

pub mod load;

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a policy set, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a policy set; a set with any error is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A validated, ordered set of policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    names: Vec<String>,
}

impl PolicySet {
    /// Load every `*.yaml` / `*.yml` file under `dir` (recursively). All or nothing.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        load::load_dir(dir)
    }

    /// Policy names in application order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
