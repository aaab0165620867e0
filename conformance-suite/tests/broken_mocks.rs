//! Each of the seven tests can fail: against a mock broken in one way (no auth check,
//! 500 on bad input, no 429, a pitfall that regressed, an answer outside the output
//! schema, missing docs, a delete that does not delete), exactly that test fails, for
//! the right reason; against the unbroken mock all seven pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentc_conformance::mock::Faults;
use agentc_conformance::{
    Evidence, Outcome, SuiteOptions, SuiteReport, Target, TestKind, run_suite,
};

async fn run_with(faults: Faults) -> SuiteReport {
    let tool = common::load_one(&common::ticket_tool_yaml(
        "https://support.example.com/tickets/search",
    ));
    let options = SuiteOptions {
        mock_faults: faults,
        ..SuiteOptions::default()
    };
    run_suite(&[tool], &Target::mock(), &options).await
}

/// Asserts that `broken` is the only failing test, and returns its evidence.
fn only_failure(report: &SuiteReport, broken: TestKind) -> Vec<Evidence> {
    let mut evidence = Vec::new();
    for test in TestKind::ALL {
        let outcome = report.outcome("ticket_search", test).unwrap();
        if test == broken {
            match outcome {
                Outcome::Fail {
                    evidence: found, ..
                } => evidence = found.clone(),
                other => panic!("{test:?} should fail, got {other:?}\n{}", report.to_text()),
            }
        } else {
            assert!(
                matches!(outcome, Outcome::Pass { .. }),
                "{test:?} should pass when only {broken:?} is broken, got {outcome:?}"
            );
        }
    }
    assert!(report.failed());
    evidence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unbroken_mock_passes_all_seven() {
    let report = run_with(Faults::default()).await;
    for test in TestKind::ALL {
        let outcome = report.outcome("ticket_search", test).unwrap();
        assert!(
            matches!(outcome, Outcome::Pass { .. }),
            "{test:?}: {outcome:?}"
        );
    }
    assert!(!report.failed());
    assert_eq!(report.summary.passed, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_docs_fail_discovery_only() {
    let evidence = only_failure(
        &run_with(Faults {
            no_docs: true,
            ..Faults::default()
        })
        .await,
        TestKind::Discovery,
    );
    assert!(
        evidence.iter().all(|item| item.status == Some(404)),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|item| item.request.as_deref() == Some("GET /openapi.json (no credential)"))
    );
    assert!(
        evidence
            .iter()
            .any(|item| item.request.as_deref() == Some("GET /llms.txt (no credential)"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_check_fails_auth_only() {
    let evidence = only_failure(
        &run_with(Faults {
            no_auth_check: true,
            ..Faults::default()
        })
        .await,
        TestKind::Auth,
    );
    // Missing, malformed and wrong credentials were all let through.
    assert_eq!(evidence.len(), 3, "{evidence:?}");
    assert!(
        evidence
            .iter()
            .all(|item| item.status == Some(200) && item.detail.starts_with("expected 401 or 403"))
    );
    assert!(
        evidence[0]
            .request
            .as_deref()
            .unwrap()
            .ends_with("(no credential)")
    );
    // The report never shows the mock's credential.
    let text = format!("{evidence:?}");
    assert!(!text.contains("agentc-mock-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_does_not_delete_fails_crud_only() {
    let evidence = only_failure(
        &run_with(Faults {
            delete_does_not_delete: true,
            ..Faults::default()
        })
        .await,
        TestKind::Crud,
    );
    // The read after delete, and what the run left behind after trying once more.
    assert_eq!(evidence.len(), 2, "{evidence:?}");
    assert_eq!(
        evidence[0].check,
        "GET /tickets/{id} after delete gives 404"
    );
    assert_eq!(evidence[0].status, Some(200));
    assert_eq!(evidence[1].check, "nothing the run created is left behind");
    assert!(evidence[1].detail.contains("remove it by hand"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_on_bad_input_fail_error_only() {
    let evidence = only_failure(
        &run_with(Faults {
            server_error_on_bad_input: true,
            ..Faults::default()
        })
        .await,
        TestKind::Error,
    );
    // Wrong type, missing field and malformed JSON get 500; the oversized body (413)
    // and the unknown route (404) are still answered correctly.
    assert_eq!(evidence.len(), 3, "{evidence:?}");
    assert!(
        evidence
            .iter()
            .all(|item| item.status == Some(500) && item.detail.starts_with("a server error"))
    );
    assert!(
        evidence[0]
            .check
            .contains("wrong type (`query` is not a string)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_429_fails_rate_limit_only() {
    let evidence = only_failure(
        &run_with(Faults {
            no_rate_limit: true,
            ..Faults::default()
        })
        .await,
        TestKind::RateLimit,
    );
    assert_eq!(evidence.len(), 1);
    assert!(
        evidence[0].detail.starts_with("every request succeeded"),
        "{evidence:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regressed_pitfall_fails_pitfall_only() {
    let evidence = only_failure(
        &run_with(Faults {
            pitfalls_regressed: true,
            ..Faults::default()
        })
        .await,
        TestKind::Pitfall,
    );
    assert_eq!(evidence.len(), 1);
    assert!(evidence[0].check.starts_with("pitfall `wildcard_query`"));
    assert_eq!(evidence[0].status, Some(200));
    assert!(evidence[0].detail.contains("expected status 400"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_outside_the_output_schema_fails_skill_only() {
    let evidence = only_failure(
        &run_with(Faults {
            output_breaks_schema: true,
            ..Faults::default()
        })
        .await,
        TestKind::Skill,
    );
    assert_eq!(evidence.len(), 1);
    // The evidence names the schema keyword that failed, at its line in the file.
    assert_eq!(
        evidence[0].schema_location.as_deref(),
        Some("tickets.yaml:12 (/type)")
    );
    assert_eq!(
        evidence[0].request.as_deref(),
        Some("POST /tickets/search (valid credential)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_without_a_conformance_section_is_skipped_with_reasons_never_passed() {
    let yaml = common::ticket_tool_yaml("https://support.example.com/tickets/search");
    let bare = yaml.split("conformance:").next().unwrap().to_string();
    let tool = common::load_one(&bare);
    let report = run_suite(&[tool], &Target::mock(), &SuiteOptions::default()).await;
    for test in [
        TestKind::Discovery,
        TestKind::Crud,
        TestKind::RateLimit,
        TestKind::Pitfall,
        TestKind::Skill,
    ] {
        match report.outcome("ticket_search", test).unwrap() {
            Outcome::Skip { reason } => assert!(reason.contains("conformance."), "{reason}"),
            other => panic!("{test:?} should be skipped, got {other:?}"),
        }
    }
    // Auth and error need nothing beyond the fixed keys, so they still run.
    assert!(matches!(
        report.outcome("ticket_search", TestKind::Auth),
        Some(Outcome::Pass { .. })
    ));
    assert!(matches!(
        report.outcome("ticket_search", TestKind::Error),
        Some(Outcome::Pass { .. })
    ));
    assert_eq!(report.summary.skipped, 5);
}

#[test]
fn a_conformance_section_with_wrong_values_is_a_check_error() {
    let yaml = common::ticket_tool_yaml("https://support.example.com/tickets/search")
        .replace("path: /tickets\n", "path: tickets\n")
        .replace("status: 400", "status: 999")
        .replace("requests: 40", "requests: 0");
    let error = agentc_conformance::load_tools(&[agentc_compiler::SourceInput {
        name: "tickets.yaml".into(),
        bytes: yaml.into_bytes(),
    }])
    .unwrap_err()
    .to_string();
    assert!(error.contains("3 error(s)"), "{error}");
    assert!(
        error.contains("`tickets` is not a path starting with `/`"),
        "{error}"
    );
    assert!(error.contains("`999` is not an HTTP status"), "{error}");
    assert!(error.contains("this must be at least 1"), "{error}");
}
