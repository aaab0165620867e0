//! The conformance suite (the seven agent-readiness tests) against a live agent server
//! on 127.0.0.1, driven by the tool document `tests/server_tool.yaml` that describes its
//! "start an engagement" API. Every test that applies passes; CRUD is skipped because an
//! engagement cannot be updated or deleted; and with a wrong credential every test that
//! needs one fails, so this test can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use agentc_compiler::SourceInput;
use agentc_conformance::{
    Outcome, SuiteOptions, SuiteReport, Target, TestKind, ToolUnderTest, load_tools, run_suite,
};
use agentc_runtime::Secret;
use agentc_server::{AuthConfig, SqliteStore};
use common::{Setup, TestServer};

const TOOL: &str = "helpdesk_engagement";
const TOKEN: &str = "helpdesk-token-5c1e";

/// The server's auth configuration: one bearer token, and the per-user rate limit that
/// the tool document declares (`conformance.rate_limit`).
const AUTH: &str = r#"{
  "tokens": [{"token": "helpdesk-token-5c1e", "user": "alice", "email": "alice@acme.example"}],
  "rate_limit": {"requests": 10, "per_seconds": 1}
}"#;

const HELPDESK_AGENT: &str = r#"kind: openagentspec:v1/agent
name: helpdesk
description: Answers IT helpdesk questions.
intent: You answer the user's IT helpdesk questions.
owner: it@acme.example
exposes:
  turns_seen: history._total
"#;

/// Every engagement answers at once (a positional script: each one gets the first turn).
const HELPDESK_SCRIPT: &str = r#"turns:
  - text: Done.
"#;

fn server_tool() -> ToolUnderTest {
    let tools = load_tools(&[SourceInput {
        name: "server_tool.yaml".into(),
        bytes: include_str!("server_tool.yaml").as_bytes().to_vec(),
    }])
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(tools.len(), 1);
    tools.into_iter().next().unwrap()
}

async fn start_server() -> TestServer {
    let mut setup = Setup::new(
        vec![("helpdesk.yaml", HELPDESK_AGENT.to_string())],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script("helpdesk", HELPDESK_SCRIPT);
    setup.auth = AUTH;
    setup.start().await
}

async fn run_against(server: &TestServer, credential: &str) -> SuiteReport {
    let target = Target::live(Some(server.base.clone())).with_credentials(BTreeMap::from([(
        TOOL.to_string(),
        Secret::new(credential),
    )]));
    // A server started for this test: starting engagements on it (a write) is fine.
    let options = SuiteOptions {
        allow_writes: true,
        ..SuiteOptions::default()
    };
    run_suite(&[server_tool()], &target, &options).await
}

fn outcome(report: &SuiteReport, test: TestKind) -> &Outcome {
    report
        .outcome(TOOL, test)
        .unwrap_or_else(|| panic!("no {test:?} in {}", report.to_text()))
}

#[test]
fn the_declared_rate_limit_is_the_servers() {
    let tool = server_tool();
    let declared = tool
        .conformance()
        .and_then(|conformance| conformance.rate_limit.as_ref())
        .unwrap();
    let configured = AuthConfig::from_json(AUTH).unwrap().rate_limit.unwrap();
    assert_eq!(declared.requests.value, u64::from(configured.requests));
    assert_eq!(
        declared.per_seconds.value,
        u64::from(configured.per_seconds)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_passes_the_conformance_suite() {
    let server = start_server().await;
    let report = run_against(&server, TOKEN).await;
    let text = report.to_text();
    for test in [
        TestKind::Discovery,
        TestKind::Auth,
        TestKind::Error,
        TestKind::RateLimit,
        TestKind::Pitfall,
        TestKind::Skill,
    ] {
        assert!(
            matches!(outcome(&report, test), Outcome::Pass { .. }),
            "{test:?} should pass:\n{text}"
        );
    }
    // An engagement cannot be updated or deleted: no CRUD resource is declared, and the
    // test says so instead of passing.
    match outcome(&report, TestKind::Crud) {
        Outcome::Skip { reason } => assert!(reason.contains("conformance.crud"), "{reason}"),
        other => panic!("CRUD should be skipped, not {other:?}:\n{text}"),
    }
    assert!(!report.failed(), "{text}");
    // Each pitfall and each example was checked.
    match outcome(&report, TestKind::Pitfall) {
        Outcome::Pass { checks } => assert_eq!(checks.len(), 4, "{checks:?}"),
        other => panic!("{other:?}"),
    }
    match outcome(&report, TestKind::Skill) {
        Outcome::Pass { checks } => assert_eq!(checks.len(), 2, "{checks:?}"),
        other => panic!("{other:?}"),
    }
    // The credential never appears in the report.
    assert!(!report.to_json().contains(TOKEN));
    assert!(report.tools[0].target.starts_with("http://127.0.0.1:"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_fails_every_test_that_needs_one() {
    let server = start_server().await;
    let report = run_against(&server, "not-the-helpdesk-token").await;
    let text = report.to_text();
    assert!(report.failed(), "{text}");
    for test in [
        TestKind::Auth,
        TestKind::Error,
        TestKind::RateLimit,
        TestKind::Pitfall,
        TestKind::Skill,
    ] {
        assert!(
            matches!(outcome(&report, test), Outcome::Fail { .. }),
            "{test:?} should fail with a wrong credential:\n{text}"
        );
    }
    // The docs are read without a credential, so discovery still passes.
    assert!(matches!(
        outcome(&report, TestKind::Discovery),
        Outcome::Pass { .. }
    ));
    assert!(matches!(
        outcome(&report, TestKind::Crud),
        Outcome::Skip { .. }
    ));
    // The auth test's evidence is the refused "valid" credential: a 401.
    match outcome(&report, TestKind::Auth) {
        Outcome::Fail { evidence, .. } => {
            assert!(
                evidence.iter().any(|item| item
                    .check
                    .starts_with("a valid credential is accepted")
                    && item.status == Some(401)),
                "{evidence:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}
