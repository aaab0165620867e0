//! The OpenAgentSpec behaviour cases (`conformance-suite/cases/`, one file per clause)
//! pass on the runtime, cover every clause the brief lists with an allowed and a denied
//! case, and can fail: a case whose expectation is changed fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use agentc_conformance::behaviour::{
    CasePath, load_case_files, parse_case_file, run_case, run_case_files,
};

fn cases_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundled_case_passes_on_the_runtime() {
    let files = load_case_files(&[cases_directory()]).unwrap();
    let report = run_case_files(&files).await;
    assert!(!report.failed(), "{}", report.to_text());
    let expected: Vec<String> = [
        "AGX-D1", "AGX-E1", "AGX-E2", "AGX-L3", "AGX-P1", "AGX-S1", "AGX-T1", "AGX-V1", "OAS-C1",
        "OAS-C2", "OAS-C3", "OAS-C4", "OAS-C5", "OAS-C6", "OAS-C7", "OAS-C8", "OAS-E1", "OAS-E2",
        "OAS-E3", "OAS-G1", "OAS-G2", "OAS-G3", "OAS-G4", "OAS-G5", "OAS-L1", "OAS-L2", "OAS-X1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(report.clauses, expected);
    // One file per clause, each with an allowed and a denied case.
    assert_eq!(files.len(), expected.len());
    for file in &files {
        let paths: Vec<CasePath> = file.file.cases.iter().map(|case| case.path).collect();
        assert!(
            paths.contains(&CasePath::Allowed) && paths.contains(&CasePath::Denied),
            "{}",
            file.path
        );
        let stem = Path::new(&file.path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            stem.starts_with(&file.file.clause.to_ascii_lowercase()),
            "{} names {}",
            file.path,
            file.file.clause
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_fails_when_its_expected_status_is_wrong() {
    for loaded in load_case_files(&[cases_directory()]).unwrap() {
        for case in &loaded.file.cases {
            let mut wrong = case.clone();
            wrong.engagement.expect.status = if case.engagement.expect.status == "completed" {
                "failed".into()
            } else {
                "completed".into()
            };
            let problems = run_case(&loaded.path, &loaded.file, &wrong).await;
            assert!(
                !problems.is_empty(),
                "{} / {} passed with a wrong status",
                loaded.path,
                case.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_outcome_fails_the_case() {
    // The tool echoes the static credential in its output: the runtime passes outputs
    // on, so the case runner must catch the secret reaching the model.
    let text =
        std::fs::read_to_string(cases_directory().join("oas-c4-static-identity.yaml")).unwrap();
    let mut file = parse_case_file(&text).unwrap();
    let mut case = file.cases.remove(0);
    case.engagement.tools.insert(
        "hr_kb_search".into(),
        vec![serde_json::json!({"results": [{"title": "kb-secret-51f0", "url": "u"}]})],
    );
    let problems = run_case("c4", &file, &case).await;
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("a credential appears")),
        "{problems:?}"
    );
}

#[test]
fn case_files_are_checked_as_data() {
    assert!(
        parse_case_file("clause: C5\ntitle: t\nspecs: ''\ncases: []\n")
            .unwrap_err()
            .contains("OAS-")
    );
    assert!(parse_case_file("clause: OAS-C5\ntitle: t\nspecs: ''\ncases: []\nextra: 1\n").is_err());
    assert!(
        parse_case_file("clause: OAS-C5\ntitle: t\nspecs: ''\ncases: []\n---\nclause: OAS-C6\n")
            .is_err()
    );
}
