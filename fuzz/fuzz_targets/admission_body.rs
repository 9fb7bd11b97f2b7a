//! Arbitrary bytes as a `/mutate` body: always a well-formed answer (tests/proof/targets.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spark_admission_fuzz::proof::targets::admission_body(data);
});
