//! spark-admission: policy-driven mutation of Apache Spark driver and executor pods.
//!
//! Data flows one way: request → [`spark_pod::SparkPod`] view → selected policies
//! ([`selection`]) → mutated pod ([`mutate`]) → JSON Patch ([`patch`]) → response.
//! Everything up to the patch is pure and free of IO; file loading lives in
//! [`policy::load`], the HTTP/TLS edge in the server modules.
#![forbid(unsafe_code)]

pub mod engine;
pub mod mutate;
pub mod patch;
pub mod policy;
pub mod quantity;
pub mod selection;
pub mod spark_pod;

pub use engine::{evaluate, Evaluation, PodError, Verdict};
pub use policy::{PolicyErrors, PolicySet};

/// Annotation naming the enforced policies that matched the pod, in application order.
pub const POLICIES_ANNOTATION: &str = "spark-admission.dev/policies";
/// Annotation naming the Audit-mode policies that would have changed the pod.
pub const AUDIT_ANNOTATION: &str = "spark-admission.dev/audit";
pub mod admission;
pub mod certs;
pub mod server;
