//! Arbitrary bytes as a policy file: a precise error or a valid, usable set
//! (tests/proof/targets.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spark_admission_fuzz::proof::targets::policy_set(data);
});
