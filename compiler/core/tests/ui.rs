//! Snapshot tests of diagnostics: every document in `spec-examples/ui/` is wrong on
//! purpose, and its rendered diagnostics (source and message together) are snapshotted
//! with insta. Each case must fail, and every diagnostic code must have a case.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_compiler::diagnostics::{Code, FrontEndCode};
use agentc_compiler::{CheckOptions, SourceInput, check_set};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn ui_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec-examples/ui")
}

/// The ui cases: each `.yaml`/`.json` file, plus each sub-directory (a multi-file set).
fn cases() -> Vec<(String, Vec<PathBuf>)> {
    let mut cases = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(ui_directory())
        .expect("spec-examples/ui exists")
        .map(|entry| entry.expect("readable entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            if name == "snapshots" {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .expect("readable case directory")
                .map(|entry| entry.expect("readable entry").path())
                .collect();
            files.sort();
            cases.push((name, files));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "json")
        {
            cases.push((name, vec![path]));
        }
    }
    cases
}

/// A case named `W0606_…` is checked as a build without the `mcp` feature would check
/// it: the code is about the build, not the file.
fn check_case(name: &str, files: &[PathBuf]) -> agentc_compiler::CheckedSet {
    let inputs: Vec<SourceInput> = files
        .iter()
        .map(|path| SourceInput {
            // Relative names keep snapshots identical on every machine.
            name: path
                .strip_prefix(ui_directory().parent().expect("parent"))
                .unwrap_or(path)
                .display()
                .to_string(),
            bytes: std::fs::read(path).expect("readable case"),
        })
        .collect();
    let options = CheckOptions {
        mcp_unavailable: name
            .starts_with("W0606")
            .then(|| "this agentc was built without the `mcp` feature".to_string()),
        ..CheckOptions::default()
    };
    check_set(&inputs, &options)
}

#[test]
fn every_ui_case_fails_with_its_snapshot() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(ui_directory().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let _guard = settings.bind_to_scope();
    let cases = cases();
    assert!(!cases.is_empty(), "no ui cases found");
    for (name, files) in cases {
        let set = check_case(&name, &files);
        assert!(
            !set.diagnostics.is_empty(),
            "ui case `{name}` produced no diagnostic: every ui case must be wrong"
        );
        let rendered = set.view().render_text(&set.diagnostics);
        insta::assert_snapshot!(name, rendered);
    }
}

#[test]
fn every_diagnostic_code_has_a_ui_case() {
    let mut seen = BTreeSet::new();
    for (name, files) in cases() {
        for diagnostic in check_case(&name, &files).diagnostics {
            seen.insert(diagnostic.code.as_str());
        }
    }
    let missing: Vec<&str> = Code::all()
        .into_iter()
        .map(Code::as_str)
        .filter(|code| !seen.contains(code))
        .filter(|code| !NOT_REACHABLE_FROM_A_FILE.contains(code))
        .collect();
    assert!(missing.is_empty(), "codes without a ui case: {missing:?}");
}

/// Codes that no single file can trigger, with the reason; each has a unit test instead.
const NOT_REACHABLE_FROM_A_FILE: &[&str] = &[];

#[test]
fn front_end_codes_are_sorted_and_documented() {
    let codes: Vec<&str> = FrontEndCode::ALL.iter().map(|code| code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(codes, sorted, "keep the catalogue in code order");
}
