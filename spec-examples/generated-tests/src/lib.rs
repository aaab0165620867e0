//! Tests of generated agent crates: `tests/hr_end_to_end.rs` runs the generated HR crate
//! against a scripted model, and `tests/compile_fail.rs` proves with trybuild that what
//! the spec forbids does not compile. The library itself is empty.

#![forbid(unsafe_code)]
