//! The Spark pod view: what the engine needs to know about a pod, derived without IO.

use serde::{Deserialize, Serialize};

/// The value of the `spark-role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SparkRole {
    Driver,
    Executor,
}

impl SparkRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SparkRole::Driver => "driver",
            SparkRole::Executor => "executor",
        }
    }
}
