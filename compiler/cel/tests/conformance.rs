//! Runs the official CEL conformance tests and keeps the known-failures list honest.
//!
//! The test fails when a test that is not on the list fails, and also when a listed test
//! now passes, so the list always says exactly what does not work.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agentc_cel::conformance::{FileReport, parse_known_failures, run_file, totals};

/// The files that need no protobuf message types, per the suite's README, plus the
/// extension files that the engine may partly support.
const CORE_FILES: &[&str] = &[
    "basic",
    "comparisons",
    "conversions",
    "fields",
    "fp_math",
    "integer_math",
    "lists",
    "logic",
    "macros",
    "macros2",
    "namespace",
    "parse",
    "plumbing",
    "string",
    "timestamps",
];

fn conformance_directory() -> Option<PathBuf> {
    if let Ok(directory) = std::env::var("CEL_CONFORMANCE_DIR") {
        return Some(PathBuf::from(directory));
    }
    // `cargo test` runs a test from its package's directory; the compile-time path is
    // the fallback (a binary reused from another clone of the workspace names that
    // clone's directory instead of this one).
    let package_directories = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    package_directories
        .into_iter()
        .flatten()
        .flat_map(|package| {
            [
                package.join("../../shared/conformance/cel-spec/testdata"),
                package.join("../../../shared/conformance/cel-spec/testdata"),
            ]
        })
        .find(|candidate| candidate.is_dir())
}

#[test]
fn conformance_matches_the_known_failures_list() {
    // The data ships beside the project (`../shared`); a checkout without it must fail
    // loudly rather than pass without running anything.
    let directory = conformance_directory()
        .expect("CEL conformance data not found beside the project; set CEL_CONFORMANCE_DIR");
    let known_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance_known_failures.txt");
    let known = parse_known_failures(&std::fs::read_to_string(&known_path).unwrap_or_default());

    let mut reports: Vec<FileReport> = Vec::new();
    assert!(
        !known.is_empty() || CORE_FILES.is_empty(),
        "the known-failures list could not be read"
    );
    for name in CORE_FILES {
        let path = directory.join(format!("{name}.textproto"));
        let contents = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        reports.push(run_file(&contents));
    }

    let mut unexpected_failures = Vec::new();
    let mut unexpected_passes = Vec::new();
    for report in &reports {
        println!(
            "{:<14} total {:>4}  n/a {:>4}  passed {:>4}  failed {:>4}",
            report.name,
            report.total,
            report.not_applicable,
            report.passed.len(),
            report.failed.len()
        );
        for failure in &report.failed {
            if !known.contains_key(&failure.id) {
                unexpected_failures.push(format!("{}  {}", failure.id, failure.reason));
            }
        }
        for passed in &report.passed {
            if known.contains_key(passed) {
                unexpected_passes.push(passed.clone());
            }
        }
    }
    let (passed, failed, not_applicable) = totals(&reports);
    println!(
        "overall: passed {passed}, failed {failed}, not applicable (protobuf) {not_applicable}, \
         pass rate {:.1}% of applicable",
        100.0 * passed as f64 / (passed + failed).max(1) as f64
    );
    assert!(
        unexpected_failures.is_empty() && unexpected_passes.is_empty(),
        "unexpected failures:\n{}\n\nlisted as known failures but now passing (remove them):\n{}",
        unexpected_failures.join("\n"),
        unexpected_passes.join("\n")
    );
}
