//! Structure-aware Spark pods from the recorded fixtures: every engine invariant
//! (tests/proof/invariants.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spark_admission_fuzz::proof::targets::engine(data);
});
