//! The review console (`/console`, issue 29) over loopback, at the HTTP level: sign-in
//! with the server's own identities, the pending review with its exact arguments
//! (escaped, bidi controls made visible), approval and refusal by form with a CSRF
//! token, and every forged or stale form refused. A browser drives the same pages in the
//! end-to-end tests; these pin what the server answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

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

/// A call whose order number is hostile: markup and a right-to-left override.
const SCRIPT: &str = "turns:\n  - tool_calls:\n      - name: issue_refund\n        arguments: {order: \"<script>alert(1)</script>\u{202e}24-o\", amount: 50}\n  - text: Refunded 50.\n";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn start() -> (TestServer, agentc_runtime::MockTool) {
    let (setup, tool) = Setup::new(
        vec![
            ("refunds.yaml", AGENT.to_string()),
            ("tools.yaml", TOOLS.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script("refunds", SCRIPT)
    .mock("issue_refund", json!({"refund_id": "rf-1"}));
    (setup.start().await, tool)
}

/// Signs in with `credential`; the session cookie (`name=value`).
async fn sign_in(base: &str, credential: &str) -> (u16, Option<String>) {
    let response = client()
        .post(format!("{base}/console/sign-in"))
        .form(&[("credential", credential)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|value| value.to_str().unwrap().to_string());
    (status, cookie)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

async fn page(
    base: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

async fn submit(
    base: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let response = client()
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_string());
    (status, response.text().await.unwrap(), location)
}

/// The value of the first hidden input named `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{name}` in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The action of the first form posting to a review.
fn review_action(html: &str) -> String {
    let start = html.find("action=\"/console/reviews/").unwrap() + "action=\"".len();
    html[start..].split('"').next().unwrap().to_string()
}

async fn engage(base: &str) -> String {
    let (status, location, _) = post(
        base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund my order"}"#,
    )
    .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    wait_for_state(base, &location, "alice-token-1", &["awaiting_review"]).await;
    location
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_reads_the_exact_call_escaped_and_approves_it_once() {
    let (server, tool) = start().await;
    let base = server.base.clone();
    let location = engage(&base).await;

    // Without a session, the console asks to sign in.
    let (status, _, headers) = page(&base, "/console/reviews", None).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in?expired=1");
    // A credential the server does not know makes no session.
    let (status, cookie) = sign_in(&base, "not-a-token").await;
    assert_eq!((status, cookie), (401, None));
    // The API's token makes one: HttpOnly, SameSite=Strict, scoped to the console.
    let (status, set_cookie) = sign_in(&base, "alice-token-1").await;
    assert_eq!(status, 303);
    let set_cookie = set_cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let alice = cookie_pair(&set_cookie);

    let (status, html, headers) = page(&base, "/console/reviews", Some(&alice)).await;
    assert_eq!(status, 200);
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'none'") && !policy.contains("script-src"),
        "{policy}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        html.contains("issue_refund") && html.contains("refunds"),
        "{html}"
    );
    // The hostile argument is shown, inert: escaped, and its bidi override visible.
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;⟦U+202E⟧24-o"),
        "{html}"
    );
    assert!(!html.contains('\u{202e}'), "{html}");
    // Where the argument came from (AGX-P1): not from the user's request, nor any tool.
    assert!(
        html.contains("Came nowhere the engagement saw: the model wrote it."),
        "{html}"
    );
    let csrf = hidden(&html, "csrf");
    let call_hash = hidden(&html, "call_hash");
    let action = review_action(&html);

    // Bob sees nothing to review, and cannot decide Alice's review.
    let bob = cookie_pair(&sign_in(&base, "bob-token-22").await.1.unwrap());
    let (_, bobs, _) = page(&base, "/console/reviews", Some(&bob)).await;
    assert!(
        bobs.contains("Nothing is waiting for your review."),
        "{bobs}"
    );
    let (_, bob_html, _) = page(&base, "/console/reviews", Some(&bob)).await;
    let bob_csrf = hidden(&bob_html, "csrf");
    let (status, _, _) = submit(
        &base,
        &action,
        &bob,
        &[
            ("csrf", &bob_csrf),
            ("decision", "approve"),
            ("call_hash", &call_hash),
        ],
    )
    .await;
    assert_eq!(status, 404);
    // A form without the session's CSRF token decides nothing.
    for forged in ["", "not-the-token", &bob_csrf] {
        let (status, _, _) = submit(
            &base,
            &action,
            &alice,
            &[
                ("csrf", forged),
                ("decision", "approve"),
                ("call_hash", &call_hash),
            ],
        )
        .await;
        assert_eq!(status, 403, "{forged}");
    }
    // An approval of another call than the one waiting is refused, and says so.
    let (status, body, _) = submit(
        &base,
        &action,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve"),
            ("call_hash", "sha256:0"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("Nothing was approved"), "{body}");
    assert_eq!(tool.calls(), 0);

    // The approval of the call shown lets exactly that call through, once.
    let (status, _, location_after) = submit(
        &base,
        &action,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve"),
            ("call_hash", &call_hash),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        location_after.as_deref(),
        Some("/console/reviews?done=approved")
    );
    let done = wait_for_state(&base, &location, "alice-token-1", &["completed"]).await;
    assert_eq!(done["text"], "Refunded 50.");
    assert_eq!(tool.calls(), 1);
    // Replayed, the decision changes nothing.
    let (status, body, _) = submit(
        &base,
        &action,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve"),
            ("call_hash", &call_hash),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("decided already"), "{body}");
    assert_eq!(tool.calls(), 1);

    // The engagement's page is Alice's, not Bob's.
    let engagement = location.trim_start_matches("/engagements/");
    let (status, html, _) = page(
        &base,
        &format!("/console/engagements/{engagement}"),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Refunded 50."), "{html}");
    let (status, _, _) = page(
        &base,
        &format!("/console/engagements/{engagement}"),
        Some(&bob),
    )
    .await;
    assert_eq!(status, 404);

    // Signing out needs the token too, and ends the cookie.
    let (status, _, _) = submit(&base, "/console/sign-out", &alice, &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let response = client()
        .post(format!("{base}/console/sign-out"))
        .header("cookie", &alice)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_form_stops_the_call_and_a_cookie_from_another_server_is_refused() {
    let (server, tool) = start().await;
    let base = server.base.clone();
    let location = engage(&base).await;
    let alice = cookie_pair(&sign_in(&base, "alice-token-1").await.1.unwrap());
    let (_, html, _) = page(&base, "/console/reviews", Some(&alice)).await;
    let (status, _, location_after) = submit(
        &base,
        &review_action(&html),
        &alice,
        &[
            ("csrf", &hidden(&html, "csrf")),
            ("decision", "refuse"),
            ("reason", "the customer never asked for this"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        location_after.as_deref(),
        Some("/console/reviews?done=refused")
    );
    let ended = wait_for_state(&base, &location, "alice-token-1", &["completed", "failed"]).await;
    assert_eq!(tool.calls(), 0, "{ended}");

    // Another server (a restart draws a new key) does not take this server's cookie:
    // it asks to sign in again.
    let (other, _) = start().await;
    let (status, _, headers) = page(&other.base, "/console/reviews", Some(&alice)).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in?expired=1");
    // A cookie whose payload was edited fails its signature the same way.
    let value = alice.split_once('=').unwrap().1;
    let (payload, signature) = value.split_once('.').unwrap();
    let tampered = format!(
        "agentc_console={}A.{signature}",
        &payload[..payload.len() - 1]
    );
    let (status, _, _) = page(&base, "/console/reviews", Some(&tampered)).await;
    assert_eq!(status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_says_an_argument_came_from_the_users_request() {
    let (setup, _tool) = Setup::new(
        vec![
            ("refunds.yaml", AGENT.to_string()),
            ("tools.yaml", TOOLS.to_string()),
        ],
        Arc::new(SqliteStore::in_memory().unwrap()),
    )
    .script(
        "refunds",
        "turns:\n  - tool_calls:\n      - name: issue_refund\n        arguments: {order: \"o-4242\", amount: 5}\n  - text: Refunded 5.\n",
    )
    .mock("issue_refund", json!({"refund_id": "rf-2"}));
    let server = setup.start().await;
    let base = server.base.clone();
    let (status, location, _) = post(
        &base,
        "/agents/refunds",
        Some("alice-token-1"),
        r#"{"text": "Please refund order o-4242"}"#,
    )
    .await;
    assert_eq!(status, 303);
    wait_for_state(
        &base,
        &location.unwrap(),
        "alice-token-1",
        &["awaiting_review"],
    )
    .await;
    let alice = cookie_pair(&sign_in(&base, "alice-token-1").await.1.unwrap());
    let (_, html, _) = page(&base, "/console/reviews", Some(&alice)).await;
    assert!(
        html.contains("Came from the user&#39;s request.")
            || html.contains("Came from the user's request."),
        "{html}"
    );
}

/// Issue 28: the instances behind one address share the console's key
/// (`ServerConfig::console_key`, `agentc serve --console-key`), so a session made on one
/// holds on another; an instance with another key refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_holds_on_every_instance_that_shares_its_key() {
    let with_key = |key: [u8; 32]| {
        let (mut setup, _) = Setup::new(
            vec![
                ("refunds.yaml", AGENT.to_string()),
                ("tools.yaml", TOOLS.to_string()),
            ],
            Arc::new(SqliteStore::in_memory().unwrap()),
        )
        .script("refunds", SCRIPT)
        .mock("issue_refund", json!({"refund_id": "rf-1"}));
        setup.config.console_key = Some(key);
        setup
    };
    let first = with_key([7; 32]).start().await;
    let second = with_key([7; 32]).start().await;
    let other = with_key([8; 32]).start().await;
    let cookie = cookie_pair(&sign_in(&first.base, "alice-token-1").await.1.unwrap());
    // Allowed: the same key, another instance.
    let (status, html, _) = page(&second.base, "/console/reviews", Some(&cookie)).await;
    assert_eq!(status, 200, "{html}");
    // Denied: another key.
    let (status, _, headers) = page(&other.base, "/console/reviews", Some(&cookie)).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in?expired=1");
    for server in [first, second, other] {
        server.stop().await;
    }
}
