//! The recorded Spark pods from `tests/fixtures/`, for unit tests.

use k8s_openapi::api::core::v1::Pod;

pub const FIXTURES: [&str; 5] = [
    "spark-3.5-driver-jvm.json",
    "spark-3.5-driver-podtemplate-sidecar.json",
    "spark-3.5-driver-python.json",
    "spark-3.5-executor-hostpath-localdirs.json",
    "spark-3.5-executor-python.json",
];

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = match name {
        "spark-3.5-driver-jvm.json" => include_str!("../tests/fixtures/spark-3.5-driver-jvm.json"),
        "spark-3.5-driver-podtemplate-sidecar.json" => {
            include_str!("../tests/fixtures/spark-3.5-driver-podtemplate-sidecar.json")
        }
        "spark-3.5-driver-python.json" => {
            include_str!("../tests/fixtures/spark-3.5-driver-python.json")
        }
        "spark-3.5-executor-hostpath-localdirs.json" => {
            include_str!("../tests/fixtures/spark-3.5-executor-hostpath-localdirs.json")
        }
        "spark-3.5-executor-python.json" => {
            include_str!("../tests/fixtures/spark-3.5-executor-python.json")
        }
        other => panic!("unknown fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

pub fn fixture(name: &str) -> Pod {
    serde_json::from_value(fixture_json(name)).unwrap()
}
