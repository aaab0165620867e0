//! Runs the official CEL conformance tests and keeps the known-failures list honest.
//!
//! The test fails when a test that is not on the list fails, and also when a listed test
//! now passes, so the list always says exactly what does not work.

use std::path::PathBuf;

use agentc_cel::conformance::{FileReport, parse_known_failures, run_file, totals};

/// The files that need no protobuf message types, per the suite's README, plus the
/// extension files that the engine may partly support.
const CORE_FILES: &[&str] = &[
    "basic",
    "conversions",
    "fields",
    "fp_math",
    "integer_math",
    "lists",
    "logic",
    "macros",
    "macros2",
    "namespace",
    "plumbing",
    "string",
    "timestamps",
];

fn conformance_directory() -> Option<PathBuf> {
    if let Ok(directory) = std::env::var("CEL_CONFORMANCE_DIR") {
        return Some(PathBuf::from(directory));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/conformance/cel-spec/testdata"),
        manifest.join("../../../shared/conformance/cel-spec/testdata"),
    ]
    .into_iter()
    .find(|candidate| candidate.is_dir())
}

#[test]
fn conformance_matches_the_known_failures_list() {
    let Some(directory) = conformance_directory() else {
        eprintln!("CEL conformance data not found; set CEL_CONFORMANCE_DIR to run this test");
        return;
    };
    let known_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance_known_failures.txt");
    let known = parse_known_failures(&std::fs::read_to_string(&known_path).unwrap_or_default());

    let mut reports: Vec<FileReport> = Vec::new();
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

/// Prints figures for every file of the suite, including those that need protobuf
/// messages or extensions; run with `cargo test -p agentc-cel --test conformance -- --ignored --nocapture`.
#[test]
#[ignore = "a report, not a check"]
fn report_every_file() {
    let Some(directory) = conformance_directory() else {
        return;
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let mut reports = Vec::new();
    for path in paths
        .iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "textproto"))
    {
        let report = run_file(&std::fs::read_to_string(path).unwrap_or_default());
        println!(
            "{:<16} total {:>4}  n/a {:>4}  passed {:>4}  failed {:>4}",
            report.name,
            report.total,
            report.not_applicable,
            report.passed.len(),
            report.failed.len()
        );
        reports.push(report);
    }
    let (passed, failed, not_applicable) = totals(&reports);
    println!("all files: passed {passed}, failed {failed}, not applicable {not_applicable}");
}

/// Prints the failures of one file named by `CEL_CONFORMANCE_FILE`; a debugging aid.
#[test]
#[ignore = "a debugging aid, not a check"]
fn print_failures_of_one_file() {
    let (Some(directory), Ok(name)) = (
        conformance_directory(),
        std::env::var("CEL_CONFORMANCE_FILE"),
    ) else {
        return;
    };
    let report = run_file(
        &std::fs::read_to_string(directory.join(format!("{name}.textproto"))).unwrap_or_default(),
    );
    for failure in &report.failed {
        println!("{}  {}", failure.id, failure.reason);
    }
}
