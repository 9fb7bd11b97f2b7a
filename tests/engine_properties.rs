//! Property tests of the engine's invariants (tests/proof/invariants.rs) on structure-aware
//! random pods (tests/proof/podgen.rs): the same checks the `engine` fuzz target runs, with
//! smaller lists so that a debug build runs a few hundred cases in seconds.
//! `PROPTEST_CASES=5000 cargo test --test engine_properties` runs more.

mod proof;

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};
use spark_admission::{evaluate, Verdict};

use proof::invariants::{webhook_input, Tally};
use proof::podgen::generate;
use proof::world;

/// Lists of up to this many generated entries; the linearity check adds this many more.
const MAX_LIST: usize = 120;
const FILLER: usize = 40;

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_generated_pod_keeps_the_engine_invariants(bytes in vec(any::<u8>(), 0..160)) {
        proof::targets::engine_with(&bytes, MAX_LIST, FILLER);
    }

    /// Annotations under the webhook's prefix that the tenant wrote (the old
    /// `spark-admission.dev/driver-heap`, or a forged list of applied policies) change
    /// nothing the webhook decides: the same pod without them gets the same verdict and,
    /// annotations aside, the same result.
    #[test]
    fn forged_webhook_annotations_change_no_decision(
        bytes in vec(any::<u8>(), 0..96),
        heap in prop::sample::select(vec!["1Gi", "1408Mi", "64Gi", "0", "garbage"]),
    ) {
        let w = world();
        let case = generate(&w.bases, w.sets.len(), &bytes, MAX_LIST);
        let Some(mut clean) = webhook_input(&case) else { return Ok(()) };
        if let Some(a) = clean["metadata"]["annotations"].as_object_mut() {
            a.retain(|k, _| !k.starts_with("spark-admission.dev/"));
        }
        let mut forged = clean.clone();
        if !forged["metadata"].is_object() { return Ok(()) }
        let annotations = forged["metadata"]
            .as_object_mut()
            .map(|m| m.entry("annotations").or_insert_with(|| json!({})));
        match annotations.and_then(Value::as_object_mut) {
            Some(a) => {
                a.insert("spark-admission.dev/driver-heap".into(), json!(heap));
                a.insert("spark-admission.dev/policies".into(), json!("forged"));
                a.insert("spark-admission.dev/audit".into(), json!("forged"));
            }
            None => return Ok(()),
        }
        let set = &w.sets[case.set].1;
        let ns = Some(case.namespace.as_str());
        let (a, b) = match (evaluate(set, &clean, ns), evaluate(set, &forged, ns)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(_), Err(_)) => return Ok(()),
            (a, b) => panic!("only one of them fails: {:?} / {:?}", a.err(), b.err()),
        };
        prop_assert_eq!(&a.applied, &b.applied);
        prop_assert_eq!(&a.changes, &b.changes);
        let result = |pod: &Value, v: &Verdict| -> Option<Value> {
            let mut out = match v {
                Verdict::Unchanged => pod.clone(),
                Verdict::Patched { pod, .. } => pod.clone(),
                Verdict::Denied { .. } => return None,
            };
            if let Some(m) = out["metadata"].as_object_mut() {
                m.remove("annotations");
            }
            Some(out)
        };
        prop_assert_eq!(result(&clean, &a.verdict), result(&forged, &b.verdict));
    }
}

/// The generator reaches every verdict, and mostly pods the API server accepts: a generator
/// that only made broken pods would prove nothing. (Pods the engine refuses are the
/// admission_body target's: what the generator makes always decodes as a Pod.)
#[test]
fn the_generator_reaches_valid_pods_and_every_outcome() {
    let mut tally = Tally::default();
    for seed in 0u32..600 {
        // A cheap, fixed spread of inputs: the bytes of a linear congruential sequence.
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let bytes: Vec<u8> = (0..48 + seed % 64)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let (seen, valid) = proof::targets::engine_with(&bytes, MAX_LIST, 0);
        tally.add(seen, valid);
    }
    println!("{tally:?}");
    assert!(tally.valid * 3 >= tally.cases, "{tally:?}");
    assert!(tally.patched > 50, "{tally:?}");
    assert!(tally.denied > 0, "{tally:?}");
    assert!(tally.unchanged > 0, "{tally:?}");
}
