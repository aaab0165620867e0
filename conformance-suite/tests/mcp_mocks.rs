//! The seven tests read for an MCP tool (AGX-M5) can each fail: against a mock MCP
//! server broken in one way (a drifted definition, no auth check, invalid arguments
//! accepted, no rate limit, a pitfall that regressed, an answer outside the output
//! schema), exactly that test fails, for the right reason; against the unbroken mock
//! six pass and CRUD is skipped (it has no MCP reading).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentc_conformance::mock::Faults;
use agentc_conformance::{
    Evidence, Outcome, SuiteOptions, SuiteReport, Target, TestKind, run_suite,
};

/// The ticket search tool on an MCP server, bearer-authenticated, with a small rate
/// limit, an example and a known pitfall; `{pin}` is its definition's pin.
const MCP_TICKET_TOOL: &str = r#"kind: openagentspec:v1/tool
name: ticket_search
description: Searches support tickets.
input:
  type: object
  properties:
    query: {type: string}
    limit: {type: integer, minimum: 1}
  required: [query]
  additionalProperties: false
output:
  type: object
  properties:
    tickets:
      type: array
      items:
        type: object
        properties:
          id: {type: string}
          title: {type: string}
        required: [id, title]
  required: [tickets]
binding:
  mcp:
    server: "https://mcp.support.example.com/mcp"
    tool: search_tickets
    pin: "{pin}"
auth: {scheme: bearer}
conformance:
  rate_limit: {requests: 40, per_seconds: 1}
  examples:
    - name: printer
      input: {query: printer, limit: 5}
      output:
        tickets:
          - {id: T-1, title: Printer jams}
  pitfalls:
    - name: empty_query
      description: An empty query is refused instead of returning every ticket.
      call: {arguments: {query: ""}}
      expect:
        is_error: true
        body_excludes: ["T-1"]
"#;

/// The document, pinned to its own definition (as `agentc import mcp` would have).
fn mcp_ticket_tool() -> String {
    let unpinned = MCP_TICKET_TOOL.replace("{pin}", &format!("sha256:{}", "0".repeat(64)));
    let tool = common::load_one(&unpinned);
    let definition = agentc_mcp::pin::ToolDefinition {
        name: "search_tickets".into(),
        description: tool.document.description.value.clone(),
        input_schema: tool.document.input.value.clone(),
        output_schema: Some(tool.document.output.value.clone()),
    };
    MCP_TICKET_TOOL.replace("{pin}", &definition.pin())
}

async fn run_with(faults: Faults) -> SuiteReport {
    let tool = common::load_one(&mcp_ticket_tool());
    let options = SuiteOptions {
        mock_faults: faults,
        ..SuiteOptions::default()
    };
    run_suite(&[tool], &Target::mock(), &options).await
}

/// Asserts that `broken` is the only failing test (CRUD skipped), and returns its
/// evidence.
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
        } else if test == TestKind::Crud {
            assert!(matches!(outcome, Outcome::Skip { .. }), "{outcome:?}");
        } else {
            assert!(
                matches!(outcome, Outcome::Pass { .. }),
                "{test:?} should pass when only {broken:?} is broken, got {outcome:?}\n{}",
                report.to_text()
            );
        }
    }
    assert!(report.failed());
    // The report never shows the mock's credential.
    let text = report.to_text();
    assert!(!text.contains("agentc-mock-secret"), "{text}");
    evidence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unbroken_mock_mcp_server_passes_six_and_skips_crud() {
    let report = run_with(Faults::default()).await;
    for test in TestKind::ALL {
        let outcome = report.outcome("ticket_search", test).unwrap();
        if test == TestKind::Crud {
            match outcome {
                Outcome::Skip { reason } => assert!(reason.contains("MCP"), "{reason}"),
                other => panic!("CRUD: {other:?}"),
            }
        } else {
            assert!(
                matches!(outcome, Outcome::Pass { .. }),
                "{test:?}: {outcome:?}\n{}",
                report.to_text()
            );
        }
    }
    assert!(!report.failed());
    assert_eq!(report.summary.passed, 6);
    let Outcome::Pass { checks } = report
        .outcome("ticket_search", TestKind::Discovery)
        .unwrap()
    else {
        unreachable!()
    };
    assert!(
        checks
            .iter()
            .any(|check| check.contains("matches the document's pin")),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_definition_fails_discovery_only() {
    let evidence = only_failure(
        &run_with(Faults {
            no_docs: true,
            ..Faults::default()
        })
        .await,
        TestKind::Discovery,
    );
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert!(evidence[0].check.contains("pin"), "{evidence:?}");
    assert!(
        evidence[0].detail.contains("in its description"),
        "{evidence:?}"
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
    // Without a credential and with a wrong one, `initialize` was let through.
    assert_eq!(evidence.len(), 2, "{evidence:?}");
    assert!(evidence.iter().all(|item| item.status == Some(200)));
    assert!(
        evidence[0]
            .request
            .as_deref()
            .unwrap()
            .ends_with("(no credential)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_accepted_fail_error_only() {
    let evidence = only_failure(
        &run_with(Faults {
            server_error_on_bad_input: true,
            ..Faults::default()
        })
        .await,
        TestKind::Error,
    );
    // The wrong type and the missing field were accepted; the unknown tool still got
    // a JSON-RPC error, and the server kept answering.
    assert_eq!(evidence.len(), 2, "{evidence:?}");
    assert!(
        evidence
            .iter()
            .all(|item| item.detail.contains("invalid input was accepted")),
        "{evidence:?}"
    );
    assert!(
        evidence[0]
            .request
            .as_deref()
            .unwrap()
            .starts_with("tools/call `search_tickets`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rate_limit_fails_rate_limit_only() {
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
        evidence[0].detail.contains("not enforced") || evidence[0].detail.contains("inconclusive"),
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
    assert!(evidence[0].check.contains("empty_query"));
    assert!(
        evidence[0].detail.contains("expected an error")
            && evidence[0].detail.contains("the answer contains `T-1`"),
        "{evidence:?}"
    );
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
    assert!(
        evidence[0].detail.contains("breaks its schema"),
        "{evidence:?}"
    );
    assert!(
        evidence[0]
            .schema_location
            .as_deref()
            .unwrap()
            .starts_with("tickets.yaml:"),
        "{evidence:?}"
    );
}
