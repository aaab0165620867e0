//! What the spec forbids does not compile: each case in `tests/ui/` is a small program
//! against the generated HR crate, with its reviewed compiler output beside it.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
