//! spark-admission: policy-driven mutation of Apache Spark driver and executor pods.
//!
//! Data flows one way: request → [`spark_pod`] view → selected policies ([`selection`]) →
//! mutated pod ([`mutate`]) → JSON Patch ([`patch`]) → verdict ([`engine`]). Everything up
//! to the verdict is pure and free of IO; file loading lives in [`policy::load`], the
//! HTTP/TLS edge in the server modules.
#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod engine;
pub mod explain;
pub mod mutate;
pub mod patch;
pub mod pod_size;
pub mod policy;
pub mod quantity;
pub mod selection;
pub mod server;
pub mod spark_pod;
pub mod suite;

#[cfg(test)]
pub(crate) mod test_fixtures;

pub use engine::{evaluate, Evaluation, PodError, Verdict};
pub use policy::{PolicyErrors, PolicySet};
pub use spark_pod::SparkRole;

/// The crate version this binary was built as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision (git commit) it was built from, or `unknown` (see build.rs).
pub const REVISION: &str = env!("SPARK_ADMISSION_REVISION");

/// Annotation naming the enforced policies that matched the pod, in application order.
pub const POLICIES_ANNOTATION: &str = "spark-admission.dev/policies";
/// Annotation naming the Audit-mode policies that would have changed the pod.
pub const AUDIT_ANNOTATION: &str = "spark-admission.dev/audit";
