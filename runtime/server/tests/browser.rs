//! The review console in a real headless browser (issue 29): Debian's Chromium, driven
//! by `playwright-core` from npm (`tests/browser/console.mjs`). Alice signs in with the
//! keyboard, sees both pending reviews with the hostile argument shown inert, approves
//! one and refuses the other; the server's side says the tool ran once. Bob sees
//! neither. Needs `cargo xtask mcp-peers` (playwright-core) and `chromium` (CI installs
//! it from Debian's packages); without them the test fails and says so.
//!
//! `AGENTC_CONSOLE_SCREENSHOTS=DIR` also writes the screenshots `docs/` shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use agentc_mcp::peers::McpPeers;
use agentc_server::SqliteStore;
use common::*;
use serde_json::json;

const TOOLS: &str = r#"kind: openagentspec:v1/tool
name: issue_refund
description: Issues a refund for an order.
input:
  type: object
  properties:
    order: {type: string}
    amount: {type: integer}
  required: [order, amount]
  additionalProperties: false
output:
  type: object
  properties:
    refund_id: {type: string}
  required: [refund_id]
binding:
  native: {function: tests::issue_refund}
"#;

const AGENT: &str = r#"kind: openagentspec:v1/agent
name: refunds
description: Issues refunds after the customer confirms each one.
intent: You issue refunds the customer asks for.
owner: people-ops@acme.example
capabilities:
  issue_refund:
    input_restriction:
      require_review: user
"#;

/// The order number a prompt injection would write: markup that runs script if it is
/// ever rendered as HTML, and a right-to-left override that reorders what follows.
const SCRIPT: &str = "turns:\n  - tool_calls:\n      - name: issue_refund\n        arguments: {order: \"<img src=x onerror=\\\"window.__xss=1;alert(1)\\\"><script>window.__xss=1;alert(1)</script>\u{202e}24-o\", amount: 50}\n  - text: Refunded 50.\n";

fn chromium() -> String {
    let path = std::env::var("AGENTC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "no Chromium at {path}: install Debian's `chromium` (CI does), or set AGENTC_CHROMIUM"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_and_refuses_in_a_real_browser_and_no_injected_script_runs() {
    let peers = McpPeers::required();
    let chromium = chromium();
    let (setup, tool) = Setup::new(
        vec![
            ("refunds.yaml", AGENT.to_string()),
            ("tools.yaml", TOOLS.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script("refunds", SCRIPT)
    .mock("issue_refund", json!({"refund_id": "rf-1"}));
    let server = setup.start().await;
    let base = server.base.clone();
    let mut engagements = Vec::new();
    for _ in 0..2 {
        let (status, location, _) = post(
            &base,
            "/agents/refunds",
            Some("alice-token-1"),
            r#"{"text": "Please refund my order"}"#,
        )
        .await;
        assert_eq!(status, 303);
        let location = location.unwrap();
        wait_for_state(&base, &location, "alice-token-1", &["awaiting_review"]).await;
        engagements.push(location);
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .arg(&base)
        .env(
            "AGENTC_PLAYWRIGHT",
            peers.root().join("node_modules/playwright-core/index.mjs"),
        )
        .env("AGENTC_CHROMIUM", &chromium)
        .kill_on_drop(true);
    if let Ok(directory) = std::env::var("AGENTC_CONSOLE_SCREENSHOTS") {
        command.arg(directory);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the browser run took over 2 minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let steps = &seen["steps"];

    // Signed in from the redirect, with the keyboard.
    assert_eq!(steps["redirected_to"], "/console/sign-in", "{seen}");
    // Both reviews, the hostile argument shown as text: no dialog, no script element,
    // no injected global, the override visible.
    assert_eq!(steps["reviews"], 2, "{seen}");
    assert_eq!(steps["first_tool"], "issue_refund");
    let arguments = steps["arguments_text"].as_str().unwrap();
    assert!(
        arguments.contains("<script>window.__xss=1;alert(1)</script>⟦U+202E⟧24-o"),
        "{arguments}"
    );
    assert_eq!(seen["dialogs"], 0, "{seen}");
    assert_eq!(steps["script_elements"], 0);
    assert_eq!(steps["injected"], false);
    assert_eq!(steps["injected_anywhere"], false);
    // The approval and the refusal, as the page said them.
    assert!(
        steps["after_approval"]
            .as_str()
            .unwrap()
            .starts_with("Approved."),
        "{seen}"
    );
    assert!(
        steps["after_refusal"]
            .as_str()
            .unwrap()
            .starts_with("Refused."),
        "{seen}"
    );
    assert_eq!(steps["left"], 0);

    // The server's side: the approved engagement completed and the tool ran once; the
    // refused one did not run it. (The reviews are listed by age, and both were made in
    // the same millisecond: which came first is read from the browser's run.)
    let approved = format!(
        "/engagements/{}",
        steps["approved_engagement"].as_str().unwrap()
    );
    let refused = format!(
        "/engagements/{}",
        steps["refused_engagement"].as_str().unwrap()
    );
    assert!(
        approved != refused && engagements.contains(&approved) && engagements.contains(&refused)
    );
    let done = wait_for_state(&base, &approved, "alice-token-1", &["completed"]).await;
    assert_eq!(done["text"], "Refunded 50.");
    // (The scripted model says its line whatever happened: the tool's count is the
    // truth.)
    wait_for_state(&base, &refused, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(tool.calls(), 1);
    // The refused engagement's page says who refused what and why, with its timeline
    // from the audit trail, which verifies.
    let refused_page = steps["refused_page"].as_str().unwrap();
    for expected in [
        "input review of issue_refund by alice: refused, “the customer never asked for this”",
        "The audit trail verifies:",
        "Timeline",
        "(the call was not carried out: its values are not shown)",
    ] {
        assert!(
            refused_page.contains(expected),
            "{expected}: {refused_page}"
        );
    }
    // The refused call's arguments are not on the engagement's page.
    assert!(!refused_page.contains("24-o"), "{refused_page}");
    // Bob sees neither.
    assert!(
        steps["bob_reviews"]
            .as_str()
            .unwrap()
            .contains("Nothing is waiting for your review."),
        "{seen}"
    );
    assert_eq!(steps["bob_engagement_status"], 404);
    assert_eq!(steps["bob_approved_status"], 404);
    // The approved engagement's page, in the browser: completed, with the tool's call
    // in its timeline.
    let approved_page = steps["approved_page"].as_str().unwrap();
    for expected in [
        "completed",
        "input review of issue_refund by alice: approved",
        "completed issue_refund",
    ] {
        assert!(
            approved_page.contains(expected),
            "{expected}: {approved_page}"
        );
    }
}
