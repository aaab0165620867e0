//! `agentc conform`: exit codes, where the summary and the reports go, and the bundled
//! runs (the examples' tools on mocks, the behaviour cases on the runtime).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn agentc(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args(arguments)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("agentc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_examples_pass_on_mocks_and_the_json_report_goes_to_stdout() {
    let output = agentc(&["conform", "spec-examples", "--target", "mock"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("  pass  crud "), "{stdout}");
    assert!(
        stdout.lines().last().unwrap().starts_with("ok: "),
        "{stdout}"
    );

    let output = agentc(&["conform", "spec-examples", "--report", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["summary"]["failed"], 0);
    // stdout stays machine-readable; stderr gets the one-line verdict.
    let stderr = text(&output.stderr);
    assert!(stderr.contains("mock target"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_junit_report_is_written_to_the_report_file() {
    let file = std::env::temp_dir().join(format!("agentc-conform-{}.xml", std::process::id()));
    let output = agentc(&[
        "conform",
        "spec-examples/hr",
        "--report",
        "junit",
        "--report-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let xml = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuite name=\"hr_kb_search\""));
    assert!(text(&output.stdout).contains("ok: "));
}

#[test]
fn the_behaviour_cases_pass_and_a_wrong_expectation_exits_1() {
    let output = agentc(&["conform", "--runtime"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("27 clauses"));

    let case = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../conformance-suite/cases/oas-c7-require-review.yaml"),
    )
    .unwrap()
    .replace("reviewer: refuse", "reviewer: approve");
    let file = std::env::temp_dir().join(format!("agentc-case-{}.yaml", std::process::id()));
    std::fs::write(&file, case).unwrap();
    let output = agentc(&["conform", "--runtime", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("FAIL  OAS-C7  denied"));
}

#[test]
fn a_live_run_that_cannot_reach_its_target_fails_and_bad_usage_exits_2() {
    let output = agentc(&[
        "conform",
        "spec-examples/hr",
        "--target",
        "live",
        "--base-url",
        "http://tools.example.com",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("plain http on loopback only"));
    assert_eq!(agentc(&["conform"]).status.code(), Some(2));
    assert_eq!(
        agentc(&[
            "conform",
            "spec-examples",
            "--base-url",
            "http://127.0.0.1:1"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn a_dry_run_prints_what_a_live_run_would_send_and_sends_nothing() {
    // Nothing listens on the base URL: a request sent there would fail the run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let output = agentc(&[
        "conform",
        "conformance-suite/tests/fixture/tools.yaml",
        "--target",
        "live",
        "--base-url",
        &base,
        "--dry-run",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "search_facts (conformance-suite/tests/fixture/tools.yaml): the live run would send"
        ) && stdout.contains(&format!("request(s) to {base}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("  GET /openapi.json (no credential)"),
        "{stdout}"
    );
    // Without `--allow-writes`, the plan holds no write: `remember_note` (a POST that
    // is not read-only) is not called, and the CRUD tests do not run.
    assert!(!stdout.contains("  POST /v1/notes ("), "{stdout}");
    assert!(!stdout.contains("  DELETE "), "{stdout}");
    assert!(
        stdout.contains("not run: crud (a live run writes nothing without `--allow-writes`"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("dry run: nothing was sent")
    );
    // With `--allow-writes`, the plan shows the writes the run would make.
    let output = agentc(&[
        "conform",
        "conformance-suite/tests/fixture/tools.yaml",
        "--target",
        "live",
        "--base-url",
        &base,
        "--dry-run",
        "--allow-writes",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("  POST /v1/notes (with a credential)"),
        "{stdout}"
    );
    assert!(stdout.contains("  DELETE /v1/facts/"), "{stdout}");
    // A dry run of a mock makes no sense.
    let output = agentc(&[
        "conform",
        "conformance-suite/tests/fixture/tools.yaml",
        "--dry-run",
    ]);
    assert_eq!(output.status.code(), Some(2));
}
