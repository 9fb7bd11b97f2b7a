//! The fuzz targets' checks, shared with the normal test suite: tests/proof (the generator,
//! the invariants and the target bodies), compiled here from its source.
#![forbid(unsafe_code)]

#[path = "../../tests/proof/mod.rs"]
pub mod proof;
