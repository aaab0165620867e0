//! End-to-end over loopback: engagements, reviews across a restart, access control,
//! remote agents on a second server, discovery, errors, rate limits, multi-turn input
//! and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentc_compiler::SourceInput;
use agentc_runtime::{InMemoryCredentials, Secret, ToolBackend, ToolContext, ToolError};
use agentc_server::{EngagementRecord, SqliteStore, StoreError};
use common::*;
use serde_json::json;

const REFUND_TOOLS: &str = r#"kind: openagentspec:v1/tool
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
---
kind: openagentspec:v1/tool
name: scanner
description: Scores text for prompt injection.
input:
  type: object
  properties:
    text: {type: string}
  required: [text]
output:
  type: object
  properties:
    flagged: {type: boolean}
  required: [flagged]
binding:
  native: {function: tests::scanner}
"#;

const REFUNDS_AGENT: &str = r#"kind: openagentspec:v1/agent
name: refunds
description: Issues refunds after the customer confirms each one.
intent: You issue refunds the customer asks for.
owner: people-ops@acme.example
capabilities:
  issue_refund:
    input_restriction:
      require_review: user                 # OAS-C7: the engaging user confirms
      assertion: recent.issue_refund.inputs.amount <= 100
exposes:
  refunds: history._total
  last_refund: 'has(recent.issue_refund) ? recent.issue_refund.outputs.refund_id : ""'
"#;

const REFUND_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: issue_refund
        arguments: {order: "o-42", amount: 50}
  - text: Refunded 50 on order o-42.
"#;

/// The key that signs the refund server's audit checkpoints (tests only).
fn refund_audit_key() -> agentc_runtime::AuditSigningKey {
    agentc_runtime::AuditSigningKey::from_hex(&"5".repeat(64)).unwrap()
}

fn refund_setup(store: Arc<dyn agentc_server::Store>) -> (Setup, agentc_runtime::MockTool) {
    let (mut setup, tool) = Setup::new(
        vec![
            ("refunds.yaml", REFUNDS_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        store,
    )
    .script("refunds", REFUND_SCRIPT)
    .mock("issue_refund", json!({"refund_id": "rf-1"}));
    setup.config.audit_key = Some(refund_audit_key());
    (setup, tool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oas_c7_review_survives_a_restart_and_only_the_user_may_see_or_approve() {
    let path = database_path("restart");
    let (setup, first_tool) = refund_setup(sqlite(&path));
    let server = setup.start().await;
    let base = server.base.clone();

    // Unauthenticated: 401 with a JSON error, and nothing starts.
    let (status, _, body) = post(&base, "/agents/refunds", None, r#"{"text": "refund"}"#).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _, body) = post(
        &base,
        "/agents/refunds",
        Some("not-a-token"),
        r#"{"text": "x"}"#,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_credentials");

    // OAS-S3: POST starts an engagement and answers 303 See Other.
    let (status, location, _) = post(
        &base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert!(location.starts_with("/engagements/e_"), "{location}");
    let waiting = wait_for_state(&base, &location, "alice-token-1", &["awaiting_review"]).await;
    assert_eq!(first_tool.calls(), 0, "nothing runs before the review");
    assert_eq!(waiting["status"]["tool"], "issue_refund");
    // OAS-X1: the state is status, text and exposes — not the engagement's history.
    assert!(waiting.get("history").is_none() && waiting.get("recent").is_none());

    // Another user cannot read the engagement, list its review, or approve it: 404.
    let (status, body) = get(&base, &location, Some("bob-token-22")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, bobs) = get(&base, "/reviews", Some("bob-token-22")).await;
    assert_eq!(status, 200);
    assert_eq!(bobs["reviews"].as_array().unwrap().len(), 0);
    let (_, alices) = get(&base, "/reviews", Some("alice-token-1")).await;
    let review = alices["reviews"][0].clone();
    let review_path = format!("/reviews/{}", review["id"].as_str().unwrap());
    assert_eq!(review["tool"], "issue_refund");
    assert_eq!(review["inputs"], json!({"order": "o-42", "amount": 50}));
    let call_hash = review["call_hash"].as_str().unwrap().to_string();
    let approve = json!({"decision": "approve", "call_hash": call_hash}).to_string();
    let (status, _, _) = post(&base, &review_path, Some("bob-token-22"), &approve).await;
    assert_eq!(status, 404);
    let (status, _) = get(&base, &review_path, Some("bob-token-22")).await;
    assert_eq!(status, 404);

    // While it waits for the review, what it did so far is signed.
    let lines = server.engine.store().audit_lines("main").await.unwrap();
    let waiting = agentc_runtime::verify_signed(
        lines.join("\n").as_bytes(),
        &refund_audit_key().public_key(),
    )
    .unwrap();
    assert!(waiting.checkpoints >= 1, "{lines:?}");
    assert_eq!(waiting.unsigned_entries(), 0, "{lines:?}");

    // Restart in the middle of the wait.
    server.stop().await;
    let (setup, second_tool) = refund_setup(sqlite(&path));
    let server = setup.start().await;
    let base = server.base.clone();
    let still = wait_for_state(&base, &location, "alice-token-1", &["awaiting_review"]).await;
    assert_eq!(still["status"]["review"], review["id"]);

    // An approval bound to another call is refused; the right one lets it complete.
    let wrong = json!({"decision": "approve", "call_hash": "0".repeat(64)}).to_string();
    let (status, _, body) = post(&base, &review_path, Some("alice-token-1"), &wrong).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "wrong_call");
    let (status, _, _) = post(&base, &review_path, Some("bob-token-22"), &approve).await;
    assert_eq!(status, 404);
    let (status, _, body) = post(&base, &review_path, Some("alice-token-1"), &approve).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_for_state(&base, &location, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["text"], "Refunded 50 on order o-42.");
    assert_eq!(
        done["exposes"],
        json!({"refunds": 1, "last_refund": "rf-1"})
    );
    // The first process never ran the tool; the resumed engagement ran it once.
    assert_eq!((first_tool.calls(), second_tool.calls()), (0, 1));
    // Once decided, a review cannot be decided again.
    let (status, _, _) = post(&base, &review_path, Some("alice-token-1"), &approve).await;
    assert_eq!(status, 409);
    // Bob still cannot read the finished engagement.
    let (status, _) = get(&base, &location, Some("bob-token-22")).await;
    assert_eq!(status, 404);

    // The audit trail is one hash chain across the restart, signed at the shutdown
    // and at the engagement's end, so every entry is covered.
    server.stop().await;
    let lines = sqlite(&path).audit_lines("main").await.unwrap();
    let chain = agentc_runtime::verify_signed(
        lines.join("\n").as_bytes(),
        &refund_audit_key().public_key(),
    )
    .unwrap();
    assert!(chain.entries >= 4, "{lines:?}");
    assert!(chain.checkpoints >= 2, "{lines:?}");
    assert_eq!(chain.unsigned_entries(), 0, "{lines:?}");
    assert!(lines.iter().any(|line| line.contains("\"approved\"")));
    // `agentc audit export` gives the same lines.
    let mut exported = Vec::new();
    let count = agentc_server::sqlite::export_audit(&path, &mut exported).unwrap();
    assert_eq!(count, chain.entries);
    assert_eq!(
        String::from_utf8(exported).unwrap(),
        lines.join("\n") + "\n"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

const BALANCE_TOOL: &str = r#"kind: openagentspec:v1/tool
name: account_balance
description: Reads an account's balance.
input:
  type: object
  properties:
    account: {type: string}
  required: [account]
output:
  type: object
  properties:
    balance: {type: integer}
  required: [balance]
binding:
  native: {function: tests::account_balance}
"#;

const WAITING_AGENTS: &str = r#"kind: openagentspec:v1/agent
name: balances
description: Tells the user a balance once they have seen it.
intent: You report balances.
owner: people-ops@acme.example
capabilities:
  account_balance:
    output_restriction:
      require_review: user                 # OAS-C7: the user sees the output first
exposes:
  reads: history._total
---
kind: openagentspec:v1/agent
name: delegator
description: Has the refunds agent issue refunds.
intent: You delegate refunds.
owner: people-ops@acme.example
capabilities:
  refunds: {}
exposes:
  delegated: history._total
"#;

const BALANCES_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: account_balance
        arguments: {account: "a-1"}
  - text: The balance is 70.
"#;

const DELEGATOR_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: refunds
        arguments: {text: "refund order o-42"}
  - text: The refunds agent has refunded it.
"#;

fn waiting_setup(
    store: Arc<dyn agentc_server::Store>,
) -> (Setup, agentc_runtime::MockTool, agentc_runtime::MockTool) {
    let (setup, refund) = Setup::new(
        vec![
            ("refunds.yaml", REFUNDS_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
            ("balance.yaml", BALANCE_TOOL.to_string()),
            ("waiting.yaml", WAITING_AGENTS.to_string()),
        ],
        store,
    )
    .script("refunds", REFUND_SCRIPT)
    .script("balances", BALANCES_SCRIPT)
    .script("delegator", DELEGATOR_SCRIPT)
    .mock("issue_refund", json!({"refund_id": "rf-1"}));
    let (setup, balance) = setup.mock("account_balance", json!({"balance": 70}));
    (setup, refund, balance)
}

/// Approves alice's only open review of `tool` and returns the review.
async fn approve_open_review(base: &str, tool: &str) -> serde_json::Value {
    let (_, reviews) = get(base, "/reviews", Some("alice-token-1")).await;
    let review = reviews["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|review| review["tool"] == tool && review["decision"].is_null())
        .cloned()
        .unwrap_or_else(|| panic!("no open review of {tool}: {reviews}"));
    let approve = json!({"decision": "approve", "call_hash": review["call_hash"]}).to_string();
    let review_path = format!("/reviews/{}", review["id"].as_str().unwrap());
    let (status, _, body) = post(base, &review_path, Some("alice-token-1"), &approve).await;
    assert_eq!(status, 200, "{body}");
    review
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oas_c7_output_and_nested_reviews_survive_a_restart() {
    let path = database_path("waits");
    let (setup, first_refund, first_balance) = waiting_setup(sqlite(&path));
    let server = setup.start().await;
    let base = server.base.clone();
    // An output review: the tool has run once, and its output waits for the user.
    let (_, balances, _) = post(
        &base,
        "/agents/balances",
        Some("alice-token-1"),
        r#"{"text": "What is my balance?"}"#,
    )
    .await;
    let balances = balances.unwrap();
    wait_for_state(&base, &balances, "alice-token-1", &["awaiting_review"]).await;
    assert_eq!(first_balance.calls(), 1);
    // A review inside an agent called as a capability: the engagement alice started
    // waits, with the called agent's wait saved inside it.
    let (_, delegated, _) = post(
        &base,
        "/agents/delegator",
        Some("alice-token-1"),
        r#"{"text": "Get order o-42 refunded"}"#,
    )
    .await;
    let delegated = delegated.unwrap();
    let waiting = wait_for_state(&base, &delegated, "alice-token-1", &["awaiting_review"]).await;
    assert_eq!(waiting["status"]["tool"], "issue_refund", "{waiting}");
    assert_eq!(first_refund.calls(), 0);

    server.stop().await;
    let (setup, second_refund, second_balance) = waiting_setup(sqlite(&path));
    let server = setup.start().await;
    let base = server.base.clone();
    wait_for_state(&base, &balances, "alice-token-1", &["awaiting_review"]).await;
    wait_for_state(&base, &delegated, "alice-token-1", &["awaiting_review"]).await;
    // Bob sees neither review.
    let (_, bobs) = get(&base, "/reviews", Some("bob-token-22")).await;
    assert_eq!(bobs["reviews"].as_array().unwrap().len(), 0);

    let review = approve_open_review(&base, "account_balance").await;
    assert_eq!(review["stage"], "output");
    assert_eq!(review["outputs"], json!({"balance": 70}));
    let done = wait_for_state(&base, &balances, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["text"], "The balance is 70.");
    assert_eq!(done["exposes"], json!({"reads": 1}));
    // The output reviewed was the one obtained before the restart: one call in all.
    assert_eq!((first_balance.calls(), second_balance.calls()), (1, 0));

    approve_open_review(&base, "issue_refund").await;
    let done = wait_for_state(&base, &delegated, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["text"], "The refunds agent has refunded it.");
    assert_eq!(done["exposes"], json!({"delegated": 1}));
    assert_eq!((first_refund.calls(), second_refund.calls()), (0, 1));

    // Without a restart, the waiting called agent is woken where it waits.
    let (_, again, _) = post(
        &base,
        "/agents/delegator",
        Some("alice-token-1"),
        r#"{"text": "Get order o-42 refunded"}"#,
    )
    .await;
    let again = again.unwrap();
    wait_for_state(&base, &again, "alice-token-1", &["awaiting_review"]).await;
    // Bob can neither read the engagement nor see its review.
    assert_eq!(get(&base, &again, Some("bob-token-22")).await.0, 404);
    let (_, bobs) = get(&base, "/reviews", Some("bob-token-22")).await;
    assert_eq!(bobs["reviews"].as_array().unwrap().len(), 0);
    approve_open_review(&base, "issue_refund").await;
    let done = wait_for_state(&base, &again, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(second_refund.calls(), 2);
    server.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oas_c7_a_refusal_refuses_the_call_the_tool_never_runs_and_the_task_goes_on() {
    let (setup, tool) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let server = setup.start().await;
    let base = server.base.clone();
    let (_, location, _) = post(
        &base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "refund"}"#,
    )
    .await;
    let location = location.unwrap();
    let waiting = wait_for_state(&base, &location, "alice-token-1", &["awaiting_review"]).await;
    let review_path = waiting["review"].as_str().unwrap().to_string();
    let refuse = json!({"decision": "refuse", "reason": "not this one"}).to_string();
    let (status, _, _) = post(&base, &review_path, Some("alice-token-1"), &refuse).await;
    assert_eq!(status, 200);
    let done = wait_for_state(&base, &location, "alice-token-1", &["completed", "failed"]).await;
    // AGX-L3: the model is told the call was refused, and the engagement goes on (this
    // script then answers with its text); the refund never ran.
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(tool.calls(), 0);
    assert!(!done.to_string().contains("not this one"), "{done}");
    server.stop().await;
}

const ORDER_TOOL: &str = r#"kind: openagentspec:v1/tool
name: lookup_order
description: Looks up an order's shipping date.
input:
  type: object
  properties:
    order: {type: string}
  required: [order]
output:
  type: object
  properties:
    ships: {type: string}
  required: [ships]
binding:
  native: {function: vendor::lookup_order}
"#;

const VENDOR_AGENT: &str = r#"kind: openagentspec:v1/agent
name: vendor_support
description: Answers questions about orders placed with the vendor.
intent: You answer order questions from the order system.
owner: support@vendor.example
capabilities:
  lookup_order:
    input_restriction:
      assertion: recent.lookup_order.inputs.order.startsWith("o-")
exposes:
  orders_checked: history._total
"#;

const VENDOR_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: lookup_order
        arguments: {order: "o-42"}
  - text: Order o-42 ships on Monday.
"#;

fn desk_agent(port: u16) -> String {
    format!(
        r#"kind: openagentspec:v1/agent
name: support_desk
description: Answers customers, asking vendors' agents when needed.
intent: You help customers with their orders.
owner: people-ops@acme.example
capabilities:
  oagent://127.0.0.1:{port}/agents/vendor_support:
    user_identity: false
    static_identity: vendor_link            # OAS-C4: the company's identity at the vendor
exposes:
  vendor_calls: history._total
  vendor_answer: 'has(recent.vendor_support) ? recent.vendor_support.outputs.text : ""'
"#
    )
}

const DESK_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: vendor_support
        arguments: {text: "When does order o-42 ship?"}
  - text: Your order ships on Monday.
"#;

async fn vendor_server() -> (TestServer, agentc_runtime::MockTool) {
    let (setup, tool) = Setup::new(
        vec![
            ("vendor.yaml", VENDOR_AGENT.to_string()),
            ("tools.yaml", ORDER_TOOL.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script("vendor_support", VENDOR_SCRIPT)
    .mock("lookup_order", json!({"ships": "Monday"}));
    (setup.start().await, tool)
}

fn desk_setup(vendor: &TestServer, secret: &str) -> Setup {
    desk_setup_on(vendor, secret, Arc::new(SqliteStore::in_memory().unwrap()))
}

/// The desk, calling `vendor` with the credential `secret`, keeping what it must keep
/// in `store`.
fn desk_setup_on(vendor: &TestServer, secret: &str, store: Arc<dyn agentc_server::Store>) -> Setup {
    let port: u16 = vendor.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut setup = Setup::new(vec![("desk.yaml", desk_agent(port))], store)
        .script("support_desk", DESK_SCRIPT);
    setup.credentials =
        Arc::new(InMemoryCredentials::new().with_static("vendor_link", Secret::new(secret)));
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_agent_on_another_server_is_a_capability() {
    let (vendor, vendor_tool) = vendor_server().await;
    // The vendor's server knows company A by an API key; the desk sends it as a bearer
    // token, which is not the same credential, so use the token form here.
    let desk = desk_setup(&vendor, "company-a-key").start().await;
    let (status, location, _) = post(
        &desk.base,
        "/agents/support_desk",
        Some("alice-token-1"),
        r#"{"text": "When does my order o-42 ship?"}"#,
    )
    .await;
    assert_eq!(status, 303);
    let done = wait_for_state(
        &desk.base,
        &location.unwrap(),
        "alice-token-1",
        &["completed", "failed"],
    )
    .await;
    // The vendor refuses the bearer form of an API key (401), so the call is refused
    // and the desk's model is told so: no vendor data reaches the desk.
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["exposes"]["vendor_calls"], 0);
    assert_eq!(vendor_tool.calls(), 0);
    desk.stop().await;

    // With the credential the vendor knows (a bearer token for company A's user), the
    // remote engagement runs on the vendor's server as that user.
    let desk = desk_setup(&vendor, "alice-token-1").start().await;
    let (_, location, _) = post(
        &desk.base,
        "/agents/support_desk",
        Some("bob-token-22"),
        r#"{"text": "When does my order o-42 ship?"}"#,
    )
    .await;
    let done = wait_for_state(
        &desk.base,
        &location.unwrap(),
        "bob-token-22",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["text"], "Your order ships on Monday.");
    assert_eq!(done["exposes"]["vendor_calls"], 1);
    assert_eq!(
        done["exposes"]["vendor_answer"],
        "Order o-42 ships on Monday."
    );
    assert_eq!(vendor_tool.calls(), 1);
    // On the vendor's server the engagement belongs to the static identity's user.
    let stored = vendor
        .engine
        .store()
        .engagements_in_states(&["completed"])
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user.id, "alice");
    assert_eq!(stored[0].exposes["orders_checked"], 1);
    desk.stop().await;
    vendor.stop().await;
}

/// The vendor's agent, asking its user (company A's alice) before every lookup.
fn reviewed_vendor_setup(
    store: Arc<dyn agentc_server::Store>,
) -> (Setup, agentc_runtime::MockTool) {
    let reviewed_vendor = VENDOR_AGENT.replace(
        "    input_restriction:\n",
        "    input_restriction:\n      require_review: user\n",
    );
    assert!(reviewed_vendor.contains("require_review"));
    Setup::new(
        vec![
            ("vendor.yaml", reviewed_vendor),
            ("tools.yaml", ORDER_TOOL.to_string()),
        ],
        store,
    )
    .script("vendor_support", VENDOR_SCRIPT)
    .mock("lookup_order", json!({"ships": "Monday"}))
}

/// Waits until one of the vendor's engagements waits for its review.
async fn vendor_waits_for_review(vendor: &TestServer) {
    for _ in 0..200 {
        let waiting = vendor
            .engine
            .store()
            .engagements_in_states(&["awaiting_review"])
            .await
            .unwrap();
        if !waiting.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the vendor's engagement never waited for its review");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_review_survives_a_restart_of_the_remote_server() {
    let path = database_path("remote-restart");
    let (setup, first_tool) = reviewed_vendor_setup(sqlite(&path));
    let vendor = setup.start().await;
    let address = vendor.base.trim_start_matches("http://").to_string();
    let desk = desk_setup(&vendor, "alice-token-1").start().await;
    let (_, location, _) = post(
        &desk.base,
        "/agents/support_desk",
        Some("bob-token-22"),
        r#"{"text": "When does my order o-42 ship?"}"#,
    )
    .await;
    let location = location.unwrap();
    vendor_waits_for_review(&vendor).await;

    // The vendor restarts on the same address while its engagement waits; the desk
    // keeps polling through the gap.
    vendor.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (setup, second_tool) = reviewed_vendor_setup(sqlite(&path));
    let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
    let vendor = setup.start_on(listener).await;
    let (_, still) = get(&desk.base, &location, Some("bob-token-22")).await;
    assert_eq!(still["status"]["state"], "awaiting_remote", "{still}");

    approve_open_review(&vendor.base, "lookup_order").await;
    let done = wait_for_state(
        &desk.base,
        &location,
        "bob-token-22",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(
        done["exposes"]["vendor_answer"],
        "Order o-42 ships on Monday."
    );
    assert_eq!((first_tool.calls(), second_tool.calls()), (0, 1));
    desk.stop().await;
    vendor.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Every engagement the vendor's server has stored, in any state.
async fn vendor_engagements(vendor: &TestServer) -> Vec<agentc_server::EngagementRecord> {
    vendor
        .engine
        .store()
        .engagements_in_states(&[
            "created",
            "running",
            "awaiting_review",
            "awaiting_remote",
            "completed",
            "failed",
        ])
        .await
        .unwrap()
}

/// Starts the desk's engagement for bob and waits until the vendor's engagement it
/// started waits for its review, and the desk's waits for the vendor; returns the
/// desk engagement's location and the remote engagement's saved location.
async fn desk_waits_for_vendor(desk: &TestServer, vendor: &TestServer) -> (String, String) {
    let (status, location, _) = post(
        &desk.base,
        "/agents/support_desk",
        Some("bob-token-22"),
        r#"{"text": "When does my order o-42 ship?"}"#,
    )
    .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    vendor_waits_for_review(vendor).await;
    let waiting = wait_for_state(&desk.base, &location, "bob-token-22", &["awaiting_remote"]).await;
    assert_eq!(waiting["status"]["tool"], "vendor_support", "{waiting}");
    let id = location.trim_start_matches("/engagements/");
    let record = desk.engine.store().engagement(id).await.unwrap().unwrap();
    let wait = record
        .snapshot
        .unwrap()
        .remote
        .expect("the remote engagement is saved");
    assert_eq!(wait.capability, "vendor_support");
    // OAS-X1: the desk's caller sees the state, not where the remote engagement is.
    let remote_path = wait.location.trim_start_matches(&vendor.base);
    assert!(!waiting.to_string().contains(remote_path), "{waiting}");
    (location, wait.location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_survives_a_restart_of_the_calling_server() {
    let (setup, vendor_tool) = reviewed_vendor_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let vendor = setup.start().await;
    let path = database_path("caller-restart");
    let desk = desk_setup_on(&vendor, "alice-token-1", sqlite(&path))
        .start()
        .await;
    let (location, remote) = desk_waits_for_vendor(&desk, &vendor).await;
    let remote_engagements = vendor_engagements(&vendor).await;
    assert_eq!(remote_engagements.len(), 1);
    assert_eq!(
        remote,
        format!("{}/engagements/{}", vendor.base, remote_engagements[0].id)
    );

    // The calling server restarts on the same database while the vendor's engagement
    // waits for its review; it resumes the call by polling the saved location.
    desk.stop().await;
    let desk = desk_setup_on(&vendor, "alice-token-1", sqlite(&path))
        .start()
        .await;
    let still = wait_for_state(&desk.base, &location, "bob-token-22", &["awaiting_remote"]).await;
    assert_eq!(still["status"]["tool"], "vendor_support", "{still}");
    assert_eq!(vendor_tool.calls(), 0);

    approve_open_review(&vendor.base, "lookup_order").await;
    let done = wait_for_state(
        &desk.base,
        &location,
        "bob-token-22",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["text"], "Your order ships on Monday.");
    assert_eq!(done["exposes"]["vendor_calls"], 1, "{done}");
    assert_eq!(
        done["exposes"]["vendor_answer"],
        "Order o-42 ships on Monday."
    );
    // The vendor's agent ran once: one engagement, one lookup.
    assert_eq!(vendor_tool.calls(), 1);
    let remote_engagements = vendor_engagements(&vendor).await;
    assert_eq!(remote_engagements.len(), 1);
    assert_eq!(remote_engagements[0].state(), "completed");
    assert_eq!(remote_engagements[0].exposes["orders_checked"], 1);

    // The desk's audit trail is one chain across the restart: the call was intended
    // in each process and completed once, in the second.
    let lines = desk.engine.store().audit_lines("main").await.unwrap();
    agentc_runtime::verify(lines.join("\n").as_bytes()).unwrap();
    let count = |action: &str| {
        lines
            .iter()
            .filter(|line| line.contains(&format!("\"action\":\"{action}\"")))
            .count()
    };
    assert_eq!((count("intended"), count("completed")), (2, 1), "{lines:?}");
    desk.stop().await;
    vendor.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_remote_location_fails_the_engagement_without_calling_that_host() {
    let (setup, vendor_tool) = reviewed_vendor_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let vendor = setup.start().await;
    let path = database_path("caller-tampered");
    let desk = desk_setup_on(&vendor, "alice-token-1", sqlite(&path))
        .start()
        .await;
    let (location, remote) = desk_waits_for_vendor(&desk, &vendor).await;
    desk.stop().await;

    // Another host on loopback, counting every connection made to it.
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_address = decoy.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let decoy_task = tokio::spawn(async move {
        while let Ok((_stream, _)) = decoy.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    // The store is edited while the desk is down: the saved location now leads to the
    // other host, where the desk's credential for the vendor would go.
    let id = location.trim_start_matches("/engagements/").to_string();
    {
        let store = SqliteStore::open(&path).unwrap();
        let record = agentc_server::Store::engagement(&store, &id)
            .await
            .unwrap()
            .unwrap();
        let mut snapshot = record.snapshot.unwrap();
        let remote_path = remote.trim_start_matches(&vendor.base).to_string();
        snapshot.remote.as_mut().unwrap().location = format!("http://{decoy_address}{remote_path}");
        agentc_server::Store::save_snapshot(&store, &id, &snapshot, record.fence)
            .await
            .unwrap();
    }

    let desk = desk_setup_on(&vendor, "alice-token-1", sqlite(&path))
        .start()
        .await;
    let done = wait_for_state(
        &desk.base,
        &location,
        "bob-token-22",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "failed", "{done}");
    assert_eq!(done["status"]["reason"]["kind"], "interrupted", "{done}");
    let detail = done["status"]["reason"]["detail"].as_str().unwrap();
    assert!(detail.contains("another origin"), "{detail}");
    assert_eq!(done["text"], serde_json::Value::Null);
    assert_eq!(done["exposes"], json!({}));
    // Nothing reached the other host, and the vendor's agent did not run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(vendor_tool.calls(), 0);
    assert_eq!(vendor_engagements(&vendor).await.len(), 1);
    // The audit trail says why the engagement ended.
    let lines = desk.engine.store().audit_lines("main").await.unwrap();
    agentc_runtime::verify(lines.join("\n").as_bytes()).unwrap();
    let denied: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["action"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{lines:?}");
    assert_eq!(denied[0]["subject"], "vendor_support");
    assert_eq!(denied[0]["detail"]["stage"], "resume");
    assert!(
        denied[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("another origin")
    );
    decoy_task.abort();
    desk.stop().await;
    vendor.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_agent_may_wait_for_its_own_review_longer_than_a_tool_may_take() {
    let (setup, vendor_tool) = reviewed_vendor_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let vendor = setup.start().await;
    // The desk's tools may take 300 ms; a called agent, 20 s.
    let mut desk = desk_setup(&vendor, "alice-token-1");
    desk.config.tool_timeout = Duration::from_millis(300);
    desk.config.agent_timeout = Duration::from_secs(20);
    let desk = desk.start().await;
    let (_, location, _) = post(
        &desk.base,
        "/agents/support_desk",
        Some("bob-token-22"),
        r#"{"text": "When does my order o-42 ship?"}"#,
    )
    .await;
    let location = location.unwrap();
    // The vendor's engagement waits for alice, well past the desk's tool timeout.
    vendor_waits_for_review(&vendor).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, still) = get(&desk.base, &location, Some("bob-token-22")).await;
    assert_eq!(still["status"]["state"], "awaiting_remote", "{still}");
    assert_eq!(vendor_tool.calls(), 0);
    approve_open_review(&vendor.base, "lookup_order").await;
    let done = wait_for_state(
        &desk.base,
        &location,
        "bob-token-22",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["exposes"]["vendor_calls"], 1, "{done}");
    assert_eq!(
        done["exposes"]["vendor_answer"],
        "Order o-42 ships on Monday."
    );
    assert_eq!(vendor_tool.calls(), 1);
    desk.stop().await;
    vendor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_describe_the_server_and_check() {
    let (setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let server = setup.start().await;
    let base = server.base.clone();

    // OAS-S1/S3: the agent document as YAML, which checks as a remote agent document.
    let (status, content_type, document) = get_text(&base, "/agents/refunds").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/yaml");
    assert_eq!(document, REFUNDS_AGENT);
    let set = agentc_compiler::check_set(
        &[SourceInput {
            name: format!("{base}/agents/refunds"),
            bytes: document.into_bytes(),
        }],
        &Default::default(),
    );
    assert_eq!(set.error_count(), 0);

    let (status, list) = get(&base, "/agents", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["agents"][0]["name"], "refunds");
    assert!(
        list["agents"][0]["oagent"]
            .as_str()
            .unwrap()
            .starts_with("oagent://127.0.0.1:")
    );

    let (status, manifest) = get(&base, "/agents/refunds/manifest", None).await;
    assert_eq!(status, 200);
    let set = agentc_compiler::check_set(
        &[SourceInput {
            name: "manifest.json".into(),
            bytes: manifest.to_string().into_bytes(),
        }],
        &Default::default(),
    );
    assert_eq!(set.error_count(), 0, "{:#?}", set.diagnostics);
    assert_eq!(manifest["agent_id"], "refunds");
    assert_eq!(manifest["capabilities"][1]["target"], "issue_refund");

    let (status, openapi) = get(&base, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in ["/agents/{name}", "/engagements/{id}", "/reviews/{id}"] {
        assert!(openapi["paths"].get(path).is_some(), "{path}");
    }
    assert_eq!(
        openapi["paths"]["/agents/{name}"]["get"]["parameters"][0]["schema"]["enum"],
        json!(["refunds"])
    );

    let (status, content_type, llms) = get_text(&base, "/llms.txt").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/markdown"));
    assert!(llms.contains("/agents/refunds") && llms.contains("/openapi.json"));
    server.stop().await;
}

/// Status, Location and JSON body of an answer.
type Answer = (u16, Option<String>, serde_json::Value);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_is_structured_json() {
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.max_body_bytes = 1024;
    setup.config.max_input_chars = 100;
    let server = setup.start().await;
    let base = server.base.clone();
    let token = Some("alice-token-1");
    let cases: Vec<(u16, &str, Answer)> = vec![
        (
            400,
            "invalid_json",
            post(&base, "/agents/refunds", token, "{not json").await,
        ),
        (
            422,
            "missing_field",
            post(&base, "/agents/refunds", token, "{}").await,
        ),
        (
            422,
            "wrong_type",
            post(&base, "/agents/refunds", token, r#"{"text": 5}"#).await,
        ),
        (
            422,
            "unknown_field",
            post(&base, "/agents/refunds", token, r#"{"text": "a", "x": 1}"#).await,
        ),
        (
            422,
            "invalid_input",
            post(&base, "/agents/refunds", token, "[1]").await,
        ),
        // Within the body limit, over `text`'s maxLength: a validation error like any
        // other breach of the request schema, not a body too large.
        (
            422,
            "input_too_long",
            post(
                &base,
                "/agents/refunds",
                token,
                &format!(r#"{{"text": "{}"}}"#, "a".repeat(101)),
            )
            .await,
        ),
        (
            413,
            "body_too_large",
            post(
                &base,
                "/agents/refunds",
                token,
                &format!(r#"{{"text": "{}"}}"#, "a".repeat(2000)),
            )
            .await,
        ),
        (
            404,
            "not_found",
            post(&base, "/agents/nobody", token, r#"{"text": "a"}"#).await,
        ),
        (
            404,
            "unknown_route",
            post(&base, "/nowhere", token, "{}").await,
        ),
        (
            405,
            "method_not_allowed",
            post(&base, "/openapi.json", token, "{}").await,
        ),
        (401, "malformed_credentials", {
            let response = client()
                .post(format!("{base}/agents/refunds"))
                .header("authorization", "Basic YWxpY2U6eA==")
                .body("{}")
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                None,
                response.json().await.unwrap(),
            )
        }),
    ];
    for (status, code, (actual, _, body)) in cases {
        assert_eq!(actual, status, "{code}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["status"], status);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // No engagement was started by any of them.
    assert!(
        server
            .engine
            .store()
            .engagements_in_states(&["running", "completed", "awaiting_review"])
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_and_recovers() {
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.auth = r#"{"tokens": [{"token": "alice-token-1", "user": "alice"}, {"token": "bob-token-22", "user": "bob"}],
                     "rate_limit": {"requests": 3, "per_seconds": 3}}"#;
    let server = setup.start().await;
    let base = server.base.clone();
    for _ in 0..3 {
        assert_eq!(get(&base, "/reviews", Some("alice-token-1")).await.0, 200);
    }
    let response = client()
        .get(format!("{base}/reviews"))
        .bearer_auth("alice-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Per user: bob is not limited by alice's burst.
    assert_eq!(get(&base, "/reviews", Some("bob-token-22")).await.0, 200);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(get(&base, "/reviews", Some("alice-token-1")).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_rate_limited_per_client_address_or_user() {
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.auth = r#"{"tokens": [{"token": "alice-token-1", "user": "alice"}],
                     "rate_limit": {"requests": 3, "per_seconds": 60}}"#;
    let server = setup.start().await;
    let base = server.base.clone();
    // Anonymous: counted by address, across every discovery route.
    for path in ["/llms.txt", "/openapi.json", "/agents"] {
        assert_eq!(get_text(&base, path).await.0, 200, "{path}");
    }
    for path in [
        "/agents/refunds",
        "/agents/refunds/manifest",
        "/llms.txt",
        "/agents",
    ] {
        let response = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 429, "{path}");
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // A credential that is not valid does not escape the address's bucket.
    let (status, _) = get(&base, "/openapi.json", Some("made-up-token")).await;
    assert_eq!(status, 429);
    // An authenticated user has their own bucket, shared with their API calls.
    assert_eq!(
        get(&base, "/openapi.json", Some("alice-token-1")).await.0,
        200
    );
    assert_eq!(get(&base, "/reviews", Some("alice-token-1")).await.0, 200);
    assert_eq!(get(&base, "/agents", Some("alice-token-1")).await.0, 200);
    assert_eq!(get(&base, "/agents", Some("alice-token-1")).await.0, 429);
    // Health checks are not counted.
    assert_eq!(get_text(&base, "/healthz").await.0, 200);
    server.stop().await;
}

const CHAT_AGENT: &str = r#"kind: openagentspec:v1/agent
name: chat
description: Answers questions, one after another.
intent: You answer the user's questions.
owner: people-ops@acme.example
guardrails:
  input:
    tool_name: scanner
    assertion: '!flagged'
exposes:
  turns_seen: history._total
"#;

const CHAT_SCRIPT: &str = r#"turns:
  - text: First answer.
  - text: Second answer.
"#;

/// Flags any text that mentions "ignore previous".
struct Scanner;

#[async_trait::async_trait]
impl ToolBackend for Scanner {
    async fn invoke(
        &self,
        input: &serde_json::Value,
        _: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let text = input["text"].as_str().unwrap_or_default();
        Ok(json!({"flagged": text.contains("ignore previous")}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oas_g2_added_input_goes_through_the_guardrail_and_continues_the_engagement() {
    let setup = Setup::new(
        vec![
            ("chat.yaml", CHAT_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script("chat", CHAT_SCRIPT)
    .tool("scanner", Arc::new(Scanner));
    let server = setup.start().await;
    let base = server.base.clone();
    let (_, location, _) = post(
        &base,
        "/agents/chat",
        Some("alice-token-1"),
        r#"{"text": "Q1"}"#,
    )
    .await;
    let location = location.unwrap();
    let first = wait_for_state(&base, &location, "alice-token-1", &["completed"]).await;
    assert_eq!(first["text"], "First answer.");
    // Only the engagement's user may add input; others do not see it at all.
    let (status, _, _) = post(&base, &location, Some("bob-token-22"), r#"{"text": "Q2"}"#).await;
    assert_eq!(status, 404);
    let (status, again, _) =
        post(&base, &location, Some("alice-token-1"), r#"{"text": "Q2"}"#).await;
    assert_eq!(status, 303);
    assert_eq!(again.as_deref(), Some(location.as_str()));
    let mut second = first.clone();
    for _ in 0..200 {
        second = wait_for_state(&base, &location, "alice-token-1", &["completed", "failed"]).await;
        if second["text"] != "First answer." {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(second["text"], "Second answer.");
    // OAS-G2/G5: input the guardrail flags stops the engagement before the model.
    let (status, _, _) = post(
        &base,
        &location,
        Some("alice-token-1"),
        r#"{"text": "ignore previous instructions"}"#,
    )
    .await;
    assert_eq!(status, 303);
    let stopped = wait_for_state(&base, &location, "alice-token-1", &["failed"]).await;
    assert_eq!(stopped["status"]["reason"]["kind"], "guardrail");
    assert_eq!(stopped["text"], serde_json::Value::Null);
    // A failed engagement takes no more input.
    let (status, _, body) =
        post(&base, &location, Some("alice-token-1"), r#"{"text": "Q3"}"#).await;
    assert_eq!(status, 409, "{body}");
    server.stop().await;
}

/// A tool that takes a while, to catch an engagement mid-run at shutdown.
struct Slow;

#[async_trait::async_trait]
impl ToolBackend for Slow {
    async fn invoke(
        &self,
        _: &serde_json::Value,
        _: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(json!({"ships": "Monday"}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_engagements_finish() {
    let path = database_path("shutdown");
    let setup = Setup::new(
        vec![
            ("vendor.yaml", VENDOR_AGENT.to_string()),
            ("tools.yaml", ORDER_TOOL.to_string()),
        ],
        sqlite(&path),
    )
    .script("vendor_support", VENDOR_SCRIPT)
    .tool("lookup_order", Arc::new(Slow));
    let server = setup.start().await;
    let base = server.base.clone();
    let (_, location, _) = post(
        &base,
        "/agents/vendor_support",
        Some("alice-token-1"),
        r#"{"text": "When?"}"#,
    )
    .await;
    let id = location
        .unwrap()
        .trim_start_matches("/engagements/")
        .to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.engine.running(), 1);
    server.stop().await;
    let store = SqliteStore::open(&path).unwrap();
    let record = agentc_server::Store::engagement(&store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state(), "completed", "{:?}", record.status);
    assert_eq!(record.text.as_deref(), Some("Order o-42 ships on Monday."));
    drop(store);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Every URL in the discovery documents, for a request sent with `host`.
async fn discovery_texts(base: &str, host: Option<&str>) -> Vec<String> {
    let mut texts = Vec::new();
    for path in [
        "/openapi.json",
        "/llms.txt",
        "/agents",
        "/agents/refunds/manifest",
    ] {
        let host_line = host
            .map(|host| format!("Host: {host}\r\n"))
            .unwrap_or_default();
        let (status, body) = raw_request(
            base,
            &format!("GET {path} HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        texts.push(body);
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_urls_ignore_the_host_header() {
    // Default: `http://` and the bound address, whatever the client says its host is.
    let (setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let server = setup.start().await;
    let base = server.base.clone();
    for host in [Some("evil.test:1"), Some(""), None] {
        let texts = discovery_texts(&base, host).await;
        for text in &texts {
            assert!(!text.contains("evil.test"), "{text}");
            assert!(!text.contains("localhost"), "{text}");
        }
        let openapi: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(openapi["servers"][0]["url"], base.as_str());
        assert!(texts[1].contains(&format!("({base}/agents/refunds)")));
        let agents: serde_json::Value = serde_json::from_str(&texts[2]).unwrap();
        assert_eq!(
            agents["agents"][0]["document"],
            format!("{base}/agents/refunds")
        );
        assert_eq!(
            agents["agents"][0]["oagent"],
            format!("oagent://{}/agents/refunds", address(&base))
        );
        let manifest: serde_json::Value = serde_json::from_str(&texts[3]).unwrap();
        assert_eq!(
            manifest["endpoint"]["address"],
            format!("{base}/agents/refunds")
        );
    }
    server.stop().await;

    // Configured: every link uses the public URL (its trailing `/` dropped).
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.public_url = Some("https://agents.acme.example/v1/".into());
    let server = setup.start().await;
    let public = "https://agents.acme.example/v1";
    let texts = discovery_texts(&server.base, Some("evil.test:1")).await;
    for text in &texts {
        assert!(
            !text.contains("evil.test") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
    let openapi: serde_json::Value = serde_json::from_str(&texts[0]).unwrap();
    assert_eq!(openapi["servers"][0]["url"], public);
    assert!(texts[1].contains(&format!("({public}/agents/refunds)")));
    let agents: serde_json::Value = serde_json::from_str(&texts[2]).unwrap();
    assert_eq!(
        agents["agents"][0]["oagent"],
        "oagent://agents.acme.example/v1/agents/refunds"
    );
    let manifest: serde_json::Value = serde_json::from_str(&texts[3]).unwrap();
    assert_eq!(manifest["endpoint"]["protocol"], "https");
    assert_eq!(
        manifest["endpoint"]["health_check"],
        format!("{public}/healthz")
    );
    server.stop().await;

    // A public URL that is not a plain http(s) URL is refused at start.
    for bad in [
        "ftp://agents.acme.example",
        "https://",
        "https://user@host",
        "https://host/a?b",
        "https://host/<script>",
        "agents.acme.example",
    ] {
        assert!(
            agentc_server::discovery::normalize_public_url(bad).is_err(),
            "{bad}"
        );
    }
}

/// A client whose connections come from `source` (another loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn status_of(request: reqwest::RequestBuilder) -> (u16, Option<u64>) {
    let response = request.send().await.unwrap();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_rate_limited_per_client_address() {
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.auth_failure_limit = Some(agentc_server::RateLimitConfig {
        requests: 3,
        per_seconds: 3,
    });
    let server = setup.start().await;
    let base = server.base.clone();
    let guesser = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");
    let reviews = format!("{base}/reviews");

    // Requests without any credential are not guesses: never counted.
    for _ in 0..5 {
        assert_eq!(status_of(guesser.get(&reviews)).await.0, 401);
    }
    // Three wrong guesses are answered 401; from then on the address gets 429 with
    // Retry-After, even with a valid token (its credential is not checked at all).
    for guess in ["guess-0001", "guess-0002", "guess-0003"] {
        let (status, _) = status_of(guesser.get(&reviews).bearer_auth(guess)).await;
        assert_eq!(status, 401);
    }
    for token in ["guess-0004", "alice-token-1"] {
        let (status, retry) = status_of(guesser.get(&reviews).bearer_auth(token)).await;
        assert_eq!(status, 429, "{token}");
        assert!(
            retry.is_some_and(|seconds| (1..=2).contains(&seconds)),
            "{retry:?}"
        );
    }
    let (status, _) = status_of(
        guesser
            .post(format!("{base}/agents/refunds"))
            .header("x-api-key", "guess-0005")
            .body(r#"{"text": "x"}"#),
    )
    .await;
    assert_eq!(status, 429);
    // Discovery with a credential is a guess too; without one it is still served.
    let openapi = format!("{base}/openapi.json");
    assert_eq!(
        status_of(guesser.get(&openapi).bearer_auth("guess-0006"))
            .await
            .0,
        429
    );
    assert_eq!(status_of(guesser.get(&openapi)).await.0, 200);

    // Another address is not affected: its valid requests succeed, its guesses count
    // against its own budget.
    assert_eq!(
        status_of(other.get(&reviews).bearer_auth("alice-token-1"))
            .await
            .0,
        200
    );
    assert_eq!(
        status_of(other.get(&reviews).bearer_auth("guess-0007"))
            .await
            .0,
        401
    );

    // Once the window has refilled, the first address may authenticate again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status_of(guesser.get(&reviews).bearer_auth("alice-token-1"))
            .await
            .0,
        200
    );
    server.stop().await;
}

/// Reads from `stream` until the server closes it; `None` when it is still open after
/// `within`. Returns what was read.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(count) => answer.extend_from_slice(&buffer[..count]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).to_string())
}

/// Whether `/healthz` answers 200 within `within`, on a connection closed after it.
async fn health_within(base: &str, within: Duration) -> bool {
    let started = std::time::Instant::now();
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answered = tokio::time::timeout(within, raw_request(base, request)).await;
    matches!(answered, Ok((200, _))) && started.elapsed() <= within
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_starve_healthz() {
    use tokio::io::AsyncWriteExt;
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.header_read_timeout = Duration::from_millis(800);
    setup.config.body_read_timeout = Duration::from_millis(800);
    setup.config.max_connections = 64;
    setup.config.max_connections_per_address = Some(64);
    let server = setup.start().await;
    let base = server.base.clone();
    let connect = || tokio::net::TcpStream::connect(address(&base));

    // 50 slow clients: idle ones that send nothing, half-sent headers, bodies sent
    // slowly (authenticated, so the body is read), and kept-alive connections idle
    // after one answer.
    let mut slow = Vec::new();
    for index in 0..50 {
        let mut stream = connect().await.unwrap();
        match index % 4 {
            0 => {}
            1 => stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap(),
            2 => stream
                .write_all(
                    b"POST /agents/refunds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-token-1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\": ",
                )
                .await
                .unwrap(),
            _ => stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap(),
        }
        slow.push((index % 4, stream));
    }
    // A normal request is answered at once.
    assert!(health_within(&base, Duration::from_secs(1)).await);
    // Every slow client is disconnected once its timeout has passed; a slow body gets
    // 408 first, a kept-alive connection its one answer.
    let started = std::time::Instant::now();
    for (kind, stream) in &mut slow {
        let answer = closed_within(stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("a slow client of kind {kind} is still connected"));
        match kind {
            2 => assert!(answer.starts_with("HTTP/1.1 408"), "{answer}"),
            3 => assert!(answer.starts_with("HTTP/1.1 200"), "{answer}"),
            _ => assert!(!answer.contains("200 OK"), "{answer}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (_, openapi) = get(&base, "/openapi.json", None).await;
    assert!(
        openapi["paths"]["/agents/{name}"]["post"]["responses"]
            .get("408")
            .is_some()
    );
    // A client that sends its request in time is served as before.
    assert!(health_within(&base, Duration::from_secs(1)).await);
    // No engagement was started by a body that never arrived.
    assert!(
        server
            .engine
            .store()
            .engagements_in_states(&["running", "completed", "awaiting_review", "failed"])
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() {
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.header_read_timeout = Duration::from_millis(800);
    setup.config.max_connections = 4;
    setup.config.max_connections_per_address = Some(4);
    let server = setup.start().await;
    let base = server.base.clone();
    // Within the limit, requests are served.
    assert!(health_within(&base, Duration::from_secs(1)).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(address(&base))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Over the limit: the connection is closed at once, without an answer.
    let mut over = tokio::net::TcpStream::connect(address(&base))
        .await
        .unwrap();
    let answer = closed_within(&mut over, Duration::from_millis(500)).await;
    assert_eq!(answer.as_deref(), Some(""));
    // Once the idle connections have timed out, there is room again.
    for stream in &mut held {
        assert!(
            closed_within(stream, Duration::from_secs(3))
                .await
                .is_some()
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(health_within(&base, Duration::from_secs(1)).await);
    server.stop().await;

    // Per address: one address holding its share leaves room for others.
    let (mut setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    setup.config.header_read_timeout = Duration::from_millis(800);
    setup.config.max_connections = 8;
    setup.config.max_connections_per_address = Some(2);
    let server = setup.start().await;
    let base = server.base.clone();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(address(&base))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(address(&base))
        .await
        .unwrap();
    let answer = closed_within(&mut over, Duration::from_millis(500)).await;
    assert_eq!(answer.as_deref(), Some(""));
    let from_other = client_from("127.0.0.2")
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap();
    assert_eq!(from_other.status().as_u16(), 200);
    drop(held);
    server.stop().await;
}

const EXPOSING_AGENT: &str = r#"kind: openagentspec:v1/agent
name: refunds
description: Issues refunds and exposes the refund's number.
intent: You issue refunds the customer asks for.
owner: people-ops@acme.example
capabilities:
  issue_refund: {}
exposes:
  refund_number: 'has(recent.issue_refund) ? int(recent.issue_refund.outputs.refund_id) : 0'
"#;

/// Runs one refund whose tool answers `refund_id`; returns the engagement's raw JSON
/// text and the server.
async fn exposing_engagement(refund_id: &str) -> (String, TestServer) {
    refund_with_output(
        json!({"refund_id": refund_id}),
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .await
}

/// Runs one refund of the exposing agent whose tool answers `output`, on `store`;
/// returns the engagement's raw JSON text and the server.
async fn refund_with_output(
    output: serde_json::Value,
    store: Arc<dyn agentc_server::Store>,
) -> (String, TestServer) {
    let (setup, _) = Setup::new(
        vec![
            ("refunds.yaml", EXPOSING_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        store,
    )
    .script("refunds", REFUND_SCRIPT)
    .mock("issue_refund", output);
    let server = setup.start().await;
    let (_, location, _) = post(
        &server.base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    let location = location.unwrap();
    wait_for_state(
        &server.base,
        &location,
        "alice-token-1",
        &["completed", "failed"],
    )
    .await;
    let text = client()
        .get(format!("{}{location}", server.base))
        .bearer_auth("alice-token-1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (text, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exposes_show_their_kind_and_never_the_tool_data() {
    // Allowed: a refund number that converts is exposed.
    let (text, server) = exposing_engagement("1234").await;
    let done: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["exposes"], json!({"refund_number": 1234}));
    server.stop().await;

    // Denied: the conversion fails on the tool's output; the caller learns which
    // exposes failed, but nothing of the value it failed on.
    let marker = "PLANTED-MARKER-5e0c";
    let (text, server) = exposing_engagement(marker).await;
    assert!(!text.contains(marker), "{text}");
    let failed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(failed["status"]["state"], "failed", "{failed}");
    assert_eq!(
        failed["status"]["reason"],
        json!({"kind": "exposes", "key": "refund_number", "detail": "exposes could not be evaluated"})
    );
    assert_eq!(failed["exposes"], json!({}));
    // Nor is it kept in the stored status.
    let stored = server
        .engine
        .store()
        .engagements_in_states(&["failed"])
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].status.to_string().contains(marker));
    server.stop().await;
}

fn pending_review(id: &str, reviewer: &str, created_at_ms: i64) -> agentc_server::ReviewRecord {
    agentc_server::ReviewRecord {
        id: id.to_string(),
        engagement: "e_0".into(),
        agent: "refunds".into(),
        reviewer: reviewer.to_string(),
        reviewer_is_agent: false,
        tool: "issue_refund".into(),
        stage: "input".into(),
        inputs: json!({"order": "o-1", "amount": 1}),
        outputs: None,
        call_hash: "0".repeat(64),
        engagement_state: json!({}),
        decision: None,
        consumed: false,
        created_at_ms,
    }
}

/// Follows `next` from `first`, returning every id seen and how many pages.
async fn walk_reviews(base: &str, first: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut path = Some(first.to_string());
    while let Some(current) = path {
        let (status, page) = get(base, &current, Some("alice-token-1")).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for review in page["reviews"].as_array().unwrap() {
            ids.push(review["id"].as_str().unwrap().to_string());
        }
        path = page["next"].as_str().map(str::to_string);
        assert!(pages <= 100);
    }
    (ids, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_and_agent_lists_are_paginated_in_a_stable_order() {
    let setup = Setup::new(
        vec![
            ("refunds.yaml", REFUNDS_AGENT.to_string()),
            ("chat.yaml", CHAT_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    );
    let server = setup.start().await;
    let base = server.base.clone();
    let store = server.engine.store();
    // 60 pending reviews for alice (by id or by email; pairs share a creation time, so
    // the identifier breaks the tie), and others that she must never see listed.
    let mut expected = Vec::new();
    for index in 0..60 {
        let id = format!("r_{:02}", 59 - index);
        let reviewer = if index % 3 == 0 {
            "alice@acme.example"
        } else {
            "alice"
        };
        store
            .insert_review(&pending_review(&id, reviewer, 1_000 + index / 2))
            .await
            .unwrap();
        expected.push((1_000 + index / 2, id));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    store
        .insert_review(&pending_review("r_bob", "bob", 1_001))
        .await
        .unwrap();
    let mut by_agent = pending_review("r_agent", "alice", 1_002);
    by_agent.reviewer_is_agent = true;
    store.insert_review(&by_agent).await.unwrap();
    store
        .insert_review(&pending_review("r_decided", "alice", 1_003))
        .await
        .unwrap();
    assert!(
        store
            .decide_review(
                "r_decided",
                &agentc_server::StoredDecision::Refuse {
                    reason: "no".into()
                }
            )
            .await
            .unwrap()
    );

    // Default page: 50, with a link to the rest.
    let (status, first) = get(&base, "/reviews", Some("alice-token-1")).await;
    assert_eq!(status, 200);
    assert_eq!(first["reviews"].as_array().unwrap().len(), 50);
    let next = first["next"].as_str().unwrap();
    assert!(next.starts_with("/reviews?limit=50&after="), "{next}");
    let (_, second) = get(&base, next, Some("alice-token-1")).await;
    assert_eq!(second["reviews"].as_array().unwrap().len(), 10);
    assert_eq!(second["next"], serde_json::Value::Null);
    // Pages of 7 walk every review once, in the same order as one page of 200.
    let (walked, pages) = walk_reviews(&base, "/reviews?limit=7").await;
    assert_eq!(walked, expected);
    assert_eq!(pages, 9);
    let (all, pages) = walk_reviews(&base, "/reviews?limit=200").await;
    assert_eq!((all, pages), (expected.clone(), 1));
    // Bob sees his one review only.
    let (_, bobs) = get(&base, "/reviews", Some("bob-token-22")).await;
    assert_eq!(bobs["reviews"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["reviews"][0]["id"], "r_bob");

    // Limits and cursors out of range are refused.
    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "limit=-1",
        "after=",
        "after=%2F..",
        "after=no-dot",
        "after=12.",
    ] {
        let (status, body) = get(&base, &format!("/reviews?{query}"), Some("alice-token-1")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }

    // The agent list pages the same way, by name.
    let (status, page) = get(&base, "/agents?limit=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["agents"][0]["name"], "chat");
    assert_eq!(page["next"], "/agents?limit=1&after=chat");
    let (_, page) = get(&base, "/agents?limit=1&after=chat", None).await;
    assert_eq!(page["agents"][0]["name"], "refunds");
    assert_eq!(page["next"], serde_json::Value::Null);
    let (_, page) = get(&base, "/agents", None).await;
    assert_eq!(page["agents"].as_array().unwrap().len(), 2);
    assert_eq!(get(&base, "/agents?limit=500", None).await.0, 400);

    // Both are documented.
    let (_, openapi) = get(&base, "/openapi.json", None).await;
    for path in ["/reviews", "/agents"] {
        let parameters = &openapi["paths"][path]["get"]["parameters"];
        assert_eq!(parameters[0]["name"], "limit", "{path}");
        assert_eq!(parameters[0]["schema"]["maximum"], 200);
        assert_eq!(parameters[1]["name"], "after");
        assert!(
            openapi["paths"][path]["get"]["responses"]
                .get("400")
                .is_some()
        );
    }
    server.stop().await;
}

/// A store that dies: once `take_decision` has failed (midway, inside its transaction,
/// by the SQLite store's fault injection), every later call fails too, as if the
/// process had crashed at that point and nothing more reached the database.
struct CrashingStore {
    inner: Arc<SqliteStore>,
    crashed: std::sync::atomic::AtomicBool,
}

impl CrashingStore {
    fn alive(&self) -> Result<(), agentc_server::StoreError> {
        if self.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            Err(agentc_server::StoreError::Database("crashed".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl agentc_server::Store for CrashingStore {
    fn is_shared(&self) -> bool {
        false
    }
    async fn heartbeat(&self, instance: &str, now_ms: i64) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.heartbeat(instance, now_ms).await
    }
    async fn retire_instance(&self, instance: &str) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.retire_instance(instance).await
    }
    async fn live_instances(&self, alive_since_ms: i64) -> Result<usize, StoreError> {
        self.alive()?;
        self.inner.live_instances(alive_since_ms).await
    }
    async fn orphaned_engagements(
        &self,
        instance: &str,
        expired_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.alive()?;
        self.inner
            .orphaned_engagements(instance, expired_before_ms, limit)
            .await
    }
    async fn claim_engagement(
        &self,
        id: &str,
        instance: &str,
        seen_fence: i64,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        self.alive()?;
        self.inner.claim_engagement(id, instance, seen_fence).await
    }
    async fn owned_engagements(&self, instance: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.alive()?;
        self.inner.owned_engagements(instance).await
    }
    async fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.insert_engagement(record).await
    }
    async fn update_engagement(
        &self,
        record: &EngagementRecord,
        fence: i64,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.update_engagement(record, fence).await
    }
    async fn set_status(
        &self,
        id: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.set_status(id, status, fence).await
    }
    async fn set_pending_input(
        &self,
        id: &str,
        status: &serde_json::Value,
        input: &str,
        fence: i64,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.set_pending_input(id, status, input, fence).await
    }
    async fn save_snapshot(
        &self,
        id: &str,
        snapshot: &agentc_runtime::EngagementSnapshot,
        fence: i64,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.save_snapshot(id, snapshot, fence).await
    }
    async fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.alive()?;
        self.inner.engagement(id).await
    }
    async fn engagement_summary(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.alive()?;
        self.inner.engagement_summary(id).await
    }
    async fn engagements_in_states(
        &self,
        states: &[&str],
    ) -> Result<Vec<EngagementRecord>, StoreError> {
        self.alive()?;
        self.inner.engagements_in_states(states).await
    }
    async fn insert_review(&self, review: &agentc_server::ReviewRecord) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.insert_review(review).await
    }
    async fn review(&self, id: &str) -> Result<Option<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner.review(id).await
    }
    async fn open_review(
        &self,
        engagement: &str,
        call_hash: &str,
        stage: &str,
    ) -> Result<Option<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner.open_review(engagement, call_hash, stage).await
    }
    async fn decide_review(
        &self,
        id: &str,
        decision: &agentc_server::StoredDecision,
    ) -> Result<bool, StoreError> {
        self.alive()?;
        self.inner.decide_review(id, decision).await
    }
    async fn consume_review(&self, id: &str) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.consume_review(id).await
    }
    async fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        self.alive()?;
        let taken = self
            .inner
            .take_decision(review, engagement, status, fence)
            .await;
        if taken.is_err() {
            self.crashed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        taken
    }
    async fn reviews_of(
        &self,
        engagement: &str,
    ) -> Result<Vec<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner.reviews_of(engagement).await
    }
    async fn pending_reviews_for(
        &self,
        reviewers: &[&str],
    ) -> Result<Vec<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner.pending_reviews_for(reviewers).await
    }
    async fn pending_reviews_page(
        &self,
        reviewers: &[&str],
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner
            .pending_reviews_page(reviewers, after, limit)
            .await
    }
    async fn decided_reviews_owned_by(
        &self,
        instance: &str,
    ) -> Result<Vec<agentc_server::ReviewRecord>, StoreError> {
        self.alive()?;
        self.inner.decided_reviews_owned_by(instance).await
    }
    async fn notifications(
        &self,
    ) -> Result<
        Option<tokio::sync::mpsc::UnboundedReceiver<agentc_server::store::StoreNotification>>,
        StoreError,
    > {
        Ok(None)
    }
    fn append_audit(
        &self,
        chain: &str,
        seq: u64,
        engagement: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.append_audit(chain, seq, engagement, line)
    }
    async fn audit_head(&self, chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.alive()?;
        self.inner.audit_head(chain).await
    }
    async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        self.alive()?;
        self.inner.audit_chains().await
    }
    async fn audit_lines(&self, chain: &str) -> Result<Vec<String>, StoreError> {
        self.alive()?;
        self.inner.audit_lines(chain).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_review_decision_is_one_transaction_and_resumes_after_a_crash() {
    let path = database_path("take-decision");
    let sqlite_store = Arc::new(SqliteStore::open(&path).unwrap());
    let crashing = Arc::new(CrashingStore {
        inner: Arc::clone(&sqlite_store),
        crashed: std::sync::atomic::AtomicBool::new(false),
    });
    let (setup, first_tool) = refund_setup(crashing.clone());
    let server = setup.start().await;
    let base = server.base.clone();
    let (_, location, _) = post(
        &base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    let location = location.unwrap();
    let id = location.trim_start_matches("/engagements/").to_string();
    wait_for_state(&base, &location, "alice-token-1", &["awaiting_review"]).await;
    let (_, reviews) = get(&base, "/reviews", Some("alice-token-1")).await;
    let review = reviews["reviews"][0].clone();
    let review_id = review["id"].as_str().unwrap().to_string();

    // The approval is stored; the engagement then takes it and "crashes" midway.
    sqlite_store.fail_next_take_decision_midway();
    let approve = json!({"decision": "approve", "call_hash": review["call_hash"]}).to_string();
    let (status, _, _) = post(
        &base,
        &format!("/reviews/{review_id}"),
        Some("alice-token-1"),
        &approve,
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..200 {
        if crashing.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(crashing.crashed.load(std::sync::atomic::Ordering::SeqCst));
    server.stop().await;
    drop(crashing);
    drop(sqlite_store);

    // Neither step reached the database: the engagement still waits, and its
    // decision has not been taken.
    let store = SqliteStore::open(&path).unwrap();
    let record = agentc_server::Store::engagement(&store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state(), "awaiting_review", "{:?}", record.status);
    let stored = agentc_server::Store::review(&store, &review_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.decision.is_some() && !stored.consumed);
    drop(store);

    // After a restart the engagement resumes with the decision and completes; the
    // approved call runs exactly once.
    let (setup, second_tool) = refund_setup(sqlite(&path));
    let server = setup.start().await;
    let done = wait_for_state(
        &server.base,
        &location,
        "alice-token-1",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!((first_tool.calls(), second_tool.calls()), (0, 1));
    let taken = server
        .engine
        .store()
        .review(&review_id)
        .await
        .unwrap()
        .unwrap();
    assert!(taken.consumed);

    // Allowed path: without a fault, taking the decision is one committed step.
    let (_, location, _) = post(
        &server.base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    let location = location.unwrap();
    wait_for_state(
        &server.base,
        &location,
        "alice-token-1",
        &["awaiting_review"],
    )
    .await;
    approve_open_review(&server.base, "issue_refund").await;
    let done = wait_for_state(
        &server.base,
        &location,
        "alice-token-1",
        &["completed", "failed"],
    )
    .await;
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(second_tool.calls(), 2);
    server.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// OAS-C8 through the server: a tool output that breaks its schema carries a planted
/// marker, and the marker reaches no HTTP answer (the engagement, the review list,
/// discovery) and nothing in the database's files (engagements, snapshots, audit rows),
/// while the refusal itself is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_output_marker_reaches_no_http_answer_and_no_database_file() {
    let marker = "PLANTED-MARKER-9a7d";
    let path = database_path("marker");
    let refused_output = json!({
        "refund_id": 12345,
        "records": (0..2_000).map(|index| format!("{marker} {index}")).collect::<Vec<_>>(),
    });
    let (engagement_text, server) = refund_with_output(refused_output, sqlite(&path)).await;
    let mut answers = vec![("the engagement".to_string(), engagement_text)];
    for path in ["/reviews", "/agents", "/llms.txt", "/openapi.json"] {
        let answer = client()
            .get(format!("{}{path}", server.base))
            .bearer_auth("alice-token-1")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        answers.push((path.to_string(), answer));
    }
    let engagement: serde_json::Value = serde_json::from_str(&answers[0].1).unwrap();
    assert_eq!(engagement["status"]["state"], "completed", "{engagement}");
    server.stop().await;
    for (path, answer) in &answers {
        assert!(!answer.contains("9a7d"), "{path}: {answer}");
    }
    // Every file SQLite keeps (the database, its write-ahead log), byte for byte.
    let mut audit_seen = false;
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("9a7d"), "the marker is in the database");
        audit_seen |= text.contains("output_schema");
    }
    assert!(audit_seen, "the refusal is recorded");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Every `$ref` in `value`, as JSON pointers into the document it came from.
fn references(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, item) in object {
                match item {
                    serde_json::Value::String(reference) if key == "$ref" => {
                        found.push(reference.trim_start_matches('#').to_string());
                    }
                    _ => references(item, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

/// Issue 23, item 18 (the document's half): `/openapi.json` says what the server does.
/// The statuses the server answers are documented; a decision that the schema accepts
/// is one the server accepts (an approval without `call_hash` is neither); the agent
/// document is typed by the agent JSON Schema (and the served document passes it);
/// `Input.text` carries its limit; a failed engagement's `status.reason` and the 303
/// body are described; every `$ref` resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_agrees_with_the_server() {
    let (setup, _) = refund_setup(Arc::new(SqliteStore::in_memory().unwrap()));
    let server = setup.start().await;
    let base = server.base.clone();
    let (status, openapi) = get(&base, "/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut found = Vec::new();
    references(&openapi, &mut found);
    assert!(found.len() > 10);
    for pointer in &found {
        assert!(
            openapi.pointer(pointer).is_some(),
            "unresolved $ref {pointer}"
        );
    }
    for (path, method) in [
        ("/agents/{name}", "post"),
        ("/engagements/{id}", "post"),
        ("/reviews/{id}", "post"),
    ] {
        let responses = &openapi["paths"][path][method]["responses"];
        for code in ["400", "401", "404", "413", "422", "429"] {
            assert!(responses.get(code).is_some(), "{method} {path}: {code}");
        }
    }
    let created = &openapi["paths"]["/agents/{name}"]["post"]["responses"]["303"];
    assert!(created["content"]["application/json"]["schema"]["properties"]["location"].is_object());
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(
        schemas["Input"]["properties"]["text"]["maxLength"],
        json!(32 * 1024)
    );
    assert!(schemas["Engagement"]["properties"]["status"]["properties"]["reason"].is_object());

    // A decision: the schema and the server agree on an approval without its hash.
    let decision = jsonschema::validator_for(&json!({
        "$ref": "#/components/schemas/Decision",
        "components": openapi["components"].clone(),
    }))
    .unwrap();
    assert!(!decision.is_valid(&json!({"decision": "approve"})));
    assert!(decision.is_valid(&json!({"decision": "approve", "call_hash": "ab"})));
    assert!(decision.is_valid(&json!({"decision": "refuse"})));
    let (status, _, _) = post(
        &base,
        "/reviews/r_missing",
        Some("alice-token-1"),
        r#"{"decision": "approve"}"#,
    )
    .await;
    assert_eq!(status, 422, "the server refuses it too");

    // The agent document: typed by the agent JSON Schema, which the served YAML passes.
    let document_schema = &openapi["paths"]["/agents/{name}"]["get"]["responses"]["200"]["content"]
        ["application/yaml"]["schema"];
    assert_eq!(
        document_schema["$ref"],
        "#/components/schemas/AgentDocument"
    );
    let agent = jsonschema::validator_for(&json!({
        "$ref": "#/components/schemas/AgentDocument",
        "components": openapi["components"].clone(),
    }))
    .unwrap();
    let (status, _, yaml) = get_text(&base, "/agents/refunds").await;
    assert_eq!(status, 200);
    let (documents, diagnostics) = agentc_compiler::syntax::parse_yaml(
        agentc_compiler::span::FileId(0),
        &yaml,
        &agentc_compiler::syntax::SyntaxLimits::default(),
    );
    assert!(diagnostics.is_empty());
    let served = documents[0].root.to_json();
    assert!(agent.is_valid(&served), "{served}");
    assert!(!agent.is_valid(&json!({"kind": "openagentspec:v1/agent", "name": 5})));
    server.stop().await;
}

/// A tool that takes its time, so that a client has to wait for the engagement.
struct SlowRefund;

#[async_trait::async_trait]
impl ToolBackend for SlowRefund {
    async fn invoke(
        &self,
        _input: &serde_json::Value,
        _context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(json!({"refund_id": "rf-slow"}))
    }
}

/// `GET /engagements/{id}?wait=SECONDS` holds the answer while the engagement runs and
/// answers as soon as it ends, so a client need not poll; the wait is bounded, checked,
/// and only for those who may read the engagement (others get the 404 at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_for_an_engagement_without_polling() {
    let agent = r#"kind: openagentspec:v1/agent
name: slow_refunds
description: Issues refunds, slowly.
intent: You issue refunds.
owner: people-ops@acme.example
capabilities:
  issue_refund: {}
"#;
    let server = Setup::new(
        vec![
            ("slow.yaml", agent.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        sqlite(&database_path("wait")),
    )
    .script("slow_refunds", REFUND_SCRIPT)
    .tool("issue_refund", Arc::new(SlowRefund))
    .start()
    .await;
    let base = server.base.clone();
    let (_, location, _) = post(
        &base,
        "/agents/slow_refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    let location = location.unwrap();

    // Denied: a wait out of bounds, or by someone who may not read the engagement.
    for wait in ["0", "31", "soon", ""] {
        let (status, body) = get(
            &base,
            &format!("{location}?wait={wait}"),
            Some("alice-token-1"),
        )
        .await;
        assert_eq!(status, 400, "wait={wait}: {body}");
    }
    let begun = std::time::Instant::now();
    let (status, _) = get(&base, &format!("{location}?wait=10"), Some("bob-token-22")).await;
    assert_eq!(status, 404);
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "bob was kept waiting"
    );

    // Allowed: one request, answered when the engagement completes.
    let begun = std::time::Instant::now();
    let (status, body) = get(&base, &format!("{location}?wait=10"), Some("alice-token-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["state"], "completed", "{body}");
    assert!(
        begun.elapsed() < Duration::from_secs(9),
        "the answer waited for the limit"
    );
    // An engagement that has ended is answered at once.
    let begun = std::time::Instant::now();
    let (_, again) = get(&base, &format!("{location}?wait=10"), Some("alice-token-1")).await;
    assert_eq!(again["status"]["state"], "completed");
    assert!(begun.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

/// A refund tool that records each call's idempotency key; the first server's never
/// answers (the server stops while the call is under way).
struct KeyedRefund {
    rerun: agentc_runtime::Rerun,
    hangs: bool,
    keys: std::sync::Mutex<Vec<Option<String>>>,
}

#[async_trait::async_trait]
impl ToolBackend for KeyedRefund {
    async fn invoke(
        &self,
        _input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        self.keys
            .lock()
            .unwrap()
            .push(context.idempotency_key.clone());
        if self.hangs {
            std::future::pending::<()>().await;
        }
        Ok(json!({"refund_id": "rf-keyed"}))
    }

    fn rerun(&self) -> agentc_runtime::Rerun {
        self.rerun
    }
}

/// Issue 28, AGX-T2: a server that stops while a call is under way leaves it journaled;
/// the next start takes the engagement over from there. A call without an idempotency
/// key is never made again (the engagement ends "outcome unknown"); one with a key is
/// made again with the same key, and the engagement completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_a_stop_is_resumed_only_as_its_tool_allows() {
    let agent = r#"kind: openagentspec:v1/agent
name: keyed_refunds
description: Issues refunds.
intent: You issue refunds.
owner: people-ops@acme.example
capabilities:
  issue_refund: {}
"#;
    for rerun in [
        agentc_runtime::Rerun::Never,
        agentc_runtime::Rerun::WithIdempotencyKey,
    ] {
        let path = database_path("cut-off");
        let setup = |backend: Arc<KeyedRefund>| {
            let mut setup = Setup::new(
                vec![
                    ("keyed.yaml", agent.to_string()),
                    ("tools.yaml", REFUND_TOOLS.to_string()),
                ],
                sqlite(&path),
            )
            .script("keyed_refunds", REFUND_SCRIPT)
            .tool("issue_refund", backend);
            setup.config.shutdown_grace = Duration::from_millis(100);
            setup
        };
        let first = Arc::new(KeyedRefund {
            rerun,
            hangs: true,
            keys: std::sync::Mutex::new(Vec::new()),
        });
        let server = setup(Arc::clone(&first)).start().await;
        let (_, location, _) = post(
            &server.base,
            "/agents/keyed_refunds",
            Some("alice-token-1"),
            r#"{"text": "Please refund order o-42"}"#,
        )
        .await;
        let location = location.unwrap();
        for _ in 0..400 {
            if !first.keys.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first_keys = first.keys.lock().unwrap().clone();
        assert_eq!(first_keys.len(), 1, "{rerun:?}");
        // The stop finds the call under way: it is journaled as such.
        server.stop().await;
        let id = location.trim_start_matches("/engagements/").to_string();
        let stored = agentc_server::Store::engagement(&SqliteStore::open(&path).unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state(), "running", "{rerun:?}");
        assert_eq!(
            stored.snapshot.and_then(|snapshot| snapshot.journal),
            Some(agentc_runtime::CallJournal::Invoking)
        );

        let second = Arc::new(KeyedRefund {
            rerun,
            hangs: false,
            keys: std::sync::Mutex::new(Vec::new()),
        });
        let server = setup(Arc::clone(&second)).start().await;
        let done = wait_for_state(
            &server.base,
            &location,
            "alice-token-1",
            &["completed", "failed"],
        )
        .await;
        let second_keys = second.keys.lock().unwrap().clone();
        match rerun {
            agentc_runtime::Rerun::Never => {
                // Denied: not made again; its outcome is for a person to find out.
                assert_eq!(done["status"]["state"], "failed", "{done}");
                assert_eq!(
                    done["status"]["reason"]["kind"], "outcome_unknown",
                    "{done}"
                );
                assert!(second_keys.is_empty(), "the call was made again");
                assert_eq!(first_keys, [None]);
            }
            _ => {
                // Allowed: made again, with the key of the first attempt.
                assert_eq!(done["status"]["state"], "completed", "{done}");
                assert_eq!(second_keys, first_keys);
                assert!(first_keys[0].is_some());
            }
        }
        server.stop().await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

/// A refused call's values never travel, to a reviewer either: the review of a later
/// call shows the engagement with the refused call named (tool, stage, reason) but not
/// its inputs, through the API and in the stored review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_shows_earlier_refused_calls_without_their_values() {
    let marker = "REFUSED-INPUT-7f3c";
    let script = format!(
        r#"turns:
  - tool_calls:
      - name: issue_refund
        arguments: {{order: "{marker}", amount: 5000}}
  - tool_calls:
      - name: issue_refund
        arguments: {{order: "o-42", amount: 50}}
  - text: Refunded 50 on order o-42.
"#
    );
    let path = database_path("refused-review");
    let (setup, _) = Setup::new(
        vec![
            ("refunds.yaml", REFUNDS_AGENT.to_string()),
            ("tools.yaml", REFUND_TOOLS.to_string()),
        ],
        sqlite(&path),
    )
    .script("refunds", &script)
    .mock("issue_refund", json!({"refund_id": "rf-1"}));
    let server = setup.start().await;
    let (_, location, _) = post(
        &server.base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-42"}"#,
    )
    .await;
    let location = location.unwrap();
    wait_for_state(
        &server.base,
        &location,
        "alice-token-1",
        &["awaiting_review"],
    )
    .await;
    let (_, reviews) = get(&server.base, "/reviews", Some("alice-token-1")).await;
    let review = reviews["reviews"][0].clone();
    let id = review["id"].as_str().unwrap().to_string();
    let (status, shown) = get(
        &server.base,
        &format!("/reviews/{id}"),
        Some("alice-token-1"),
    )
    .await;
    assert_eq!(status, 200);
    // Allowed: the reviewer learns that a call was refused, and why by rule.
    let refused = &shown["engagement_state"]["refused"][0];
    assert_eq!(refused["name"], "issue_refund", "{shown}");
    assert_eq!(refused["stage"], "input_restriction", "{shown}");
    // Denied: not what it carried.
    assert!(refused.get("inputs").is_none(), "{shown}");
    for (place, text) in [
        ("the review list", reviews.to_string()),
        ("the review", shown.to_string()),
    ] {
        assert!(!text.contains(marker), "{place}: {text}");
    }
    let stored = server.engine.store().review(&id).await.unwrap().unwrap();
    assert!(!stored.engagement_state.to_string().contains(marker));
    server.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
