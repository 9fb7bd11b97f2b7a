//! Policies: the typed model ([`model`]), validation ([`validate`]), loading from a
//! directory of YAML files ([`load`]) and the per-set index of candidates ([`index`]).

pub mod document;
pub mod index;
pub mod load;
pub mod model;
pub mod names;
pub mod schema;
pub mod validate;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Toleration;

pub use model::{MatchSpec, MemoryPolicy, Mode, Placement, SecretEnv};

/// A validated policy, ready to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub priority: i32,
    pub mode: Mode,
    /// `file:line` of the document, for messages.
    pub origin: String,
    pub matcher: MatchSpec,
    pub placement: Option<Placement>,
    pub tolerations: Vec<Toleration>,
    pub local_dirs: Option<LocalDirsPolicy>,
    pub secret_env: Vec<SecretEnv>,
    pub memory: Option<MemoryPolicy>,
}

/// Local dirs with the spans stripped.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDirsPolicy {
    pub volumes: Vec<model::LocalDirVolume>,
    pub override_submitter: bool,
}

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

/// A validated set of policies, in application order: `priority` ascending, then name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    policies: Vec<Policy>,
    names: Vec<String>,
    index: index::Index,
    selects_namespaces: bool,
}

impl PolicySet {
    /// Load every `*.yaml` / `*.yml` file under `dir` (recursively). All or nothing.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        load::load_dir(dir)
    }

    /// Parse and validate policy files given as `(path, text)`; paths are used in errors.
    pub fn from_sources<P: AsRef<Path>>(sources: &[(P, &str)]) -> Result<PolicySet, PolicyErrors> {
        load::from_sources(sources)
    }

    pub(crate) fn new(mut policies: Vec<Policy>) -> PolicySet {
        policies.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        let names = policies.iter().map(|p| p.name.clone()).collect();
        let index = index::Index::build(&policies);
        let selects_namespaces = policies
            .iter()
            .any(|p| p.mode != Mode::Off && p.matcher.namespace_selector.is_some());
        PolicySet {
            policies,
            names,
            index,
            selects_namespaces,
        }
    }

    /// This set with its Audit policies enforced: what a rollout of them would do.
    pub fn as_enforced(&self) -> PolicySet {
        let mut policies = self.policies.clone();
        for p in &mut policies {
            if p.mode == Mode::Audit {
                p.mode = Mode::Enforce;
            }
        }
        PolicySet::new(policies)
    }

    /// This set with the modes of the policies named in `modes` changed (a test case
    /// switching on one platform's policies and off another's). An unknown name is an error.
    pub fn with_modes(
        &self,
        modes: &std::collections::BTreeMap<String, Mode>,
    ) -> Result<PolicySet, String> {
        if let Some(unknown) = modes.keys().find(|n| !self.names.contains(n)) {
            return Err(format!("no policy is named {unknown:?}"));
        }
        let mut policies = self.policies.clone();
        for p in &mut policies {
            if let Some(mode) = modes.get(&p.name) {
                p.mode = *mode;
            }
        }
        Ok(PolicySet::new(policies))
    }

    /// Whether a policy that can apply selects namespaces by label: only then does the
    /// server need the namespaces' labels (from the API).
    pub fn selects_namespaces(&self) -> bool {
        self.selects_namespaces
    }

    /// Which policies can apply to a pod of a role in a namespace.
    pub fn index(&self) -> &index::Index {
        &self.index
    }

    /// Policies in application order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Policy names in application order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}
