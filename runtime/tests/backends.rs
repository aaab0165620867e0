//! The real backends: HTTP JSON tools and the OpenAI-compatible model client, both against
//! wiremock servers bound to 127.0.0.1, and agents called as tools in the same process.
//! Expectations such as `.expect(0)` are checked with `MockServer::verify`, so a request
//! that should never have been sent fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{MemoryLog, loopback_server};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentc_compiler::SourceInput;
use agentc_runtime::spec::{CapabilityKind, CapabilitySpec};
use agentc_runtime::{
    AgentSpec, AuditLog, AuthScheme, EngagementOutcome, EngagementRequest, EngagementStatus,
    HttpBindingSpec, HttpMethod, HttpTool, Identity, InMemoryCredentials, Message, MockTool, Model,
    ModelError, ModelTurn, OpenAiModel, Runtime, ScriptedModel, Secret, SpecSet, ToolBackend,
    ToolBinding, ToolBindingSpec, ToolCall, ToolContext, ToolDescription, ToolError, ToolRegistry,
    ToolSpec, UserIdentity, run_engagement,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn context(credential: Option<&str>) -> ToolContext {
    ToolContext {
        engagement: "e-1".into(),
        agent: "caller".into(),
        identity: Identity::Static("kb_ro".into()),
        credential: credential.map(Secret::new),
        idempotency_key: None,
    }
}

fn http_tool(server: &MockServer, method: HttpMethod, auth: AuthScheme) -> HttpTool {
    let binding = HttpBindingSpec {
        method,
        url: format!("{}/search", server.uri()),
        timeout_ms: Some(2_000),
        idempotency_header: None,
    };
    HttpTool::new("kb_search", &binding, &auth)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(5))
}

fn load(sources: &[(&str, String)]) -> SpecSet {
    let inputs: Vec<SourceInput> = sources
        .iter()
        .map(|(name, text)| SourceInput {
            name: (*name).into(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    match SpecSet::from_sources(&inputs) {
        Ok(set) => set,
        Err(error) => {
            let checked = agentc_compiler::check_set(&inputs, &Default::default());
            panic!("{error}: {:#?}", checked.diagnostics)
        }
    }
}

fn refused_stages(outcome: &EngagementOutcome) -> Vec<String> {
    outcome.engagement["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refused| refused["stage"].as_str().unwrap().to_string())
        .collect()
}

fn call(name: &str, arguments: Value) -> ModelTurn {
    ModelTurn::ToolCalls(vec![ToolCall {
        id: None,
        name: name.into(),
        arguments: arguments.into(),
    }])
}

// ---------------------------------------------------------------------------------------
// HTTP JSON tools
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_post_sends_the_input_as_json_and_returns_the_json_answer() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .and(header("accept", "application/json"))
        .and(body_json(json!({"query": "leave"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [1, 2]})))
        .expect(1)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Post, AuthScheme::None);
    let output = tool
        .invoke(&json!({"query": "leave"}), &context(None))
        .await;
    assert_eq!(output, Ok(json!({"results": [1, 2]})));
    server.verify().await;
}

#[tokio::test]
async fn http_get_sends_the_input_as_the_query_string() {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .and(path("/search"))
        .and(query_param("query", "leave policy"))
        .and(query_param("limit", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(1)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Get, AuthScheme::None);
    let output = tool
        .invoke(
            &json!({"query": "leave policy", "limit": 3}),
            &context(None),
        )
        .await;
    assert_eq!(output, Ok(json!({"results": []})));
    server.verify().await;
}

#[tokio::test]
async fn http_timeout_is_an_error() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let binding = HttpBindingSpec {
        method: HttpMethod::Post,
        url: format!("{}/search", server.uri()),
        timeout_ms: Some(100),
        idempotency_header: None,
    };
    let tool = HttpTool::new("kb_search", &binding, &AuthScheme::None).unwrap();
    assert_eq!(tool.timeout(), Duration::from_millis(100));
    let started = std::time::Instant::now();
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert_eq!(output, Err(ToolError::Timeout("kb_search".into())));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn http_oversized_answer_is_refused() {
    let server = loopback_server().await;
    let big = json!({"blob": "x".repeat(10_000)});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(big))
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Post, AuthScheme::None).with_max_response_bytes(1024);
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert_eq!(
        output,
        Err(ToolError::ResponseTooLarge {
            tool: "kb_search".into(),
            limit: 1024
        })
    );
    // A body within the limit is read.
    let tool = http_tool(&server, HttpMethod::Post, AuthScheme::None);
    assert!(tool.invoke(&json!({}), &context(None)).await.is_ok());
}

#[tokio::test]
async fn http_500_is_an_error_and_is_not_retried() {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Get, AuthScheme::None);
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert_eq!(
        output,
        Err(ToolError::Status {
            tool: "kb_search".into(),
            status: 500
        })
    );
    server.verify().await;
}

#[tokio::test]
async fn http_non_json_answer_is_an_error() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Post, AuthScheme::None);
    assert!(matches!(
        tool.invoke(&json!({}), &context(None)).await,
        Err(ToolError::Failed(_))
    ));
}

#[tokio::test]
async fn http_get_503_is_retried_then_succeeds() {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Get, AuthScheme::None);
    let output = tool.invoke(&json!({"q": "x"}), &context(None)).await;
    assert_eq!(output, Ok(json!({"ok": true})));
    server.verify().await;
}

#[tokio::test]
async fn http_get_gives_up_after_two_retries() {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(504))
        .expect(3)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Get, AuthScheme::None);
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert_eq!(
        output,
        Err(ToolError::Status {
            tool: "kb_search".into(),
            status: 504
        })
    );
    server.verify().await;
}

#[tokio::test]
async fn http_post_and_patch_503_are_never_retried() {
    for verb in [HttpMethod::Post, HttpMethod::Patch] {
        let server = loopback_server().await;
        Mock::given(method(verb.as_str()))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let tool = http_tool(&server, verb, AuthScheme::None);
        let output = tool.invoke(&json!({}), &context(None)).await;
        assert!(matches!(output, Err(ToolError::Status { status: 503, .. })));
        server.verify().await;
    }
}

#[tokio::test]
async fn http_connection_refused_is_an_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let binding = HttpBindingSpec {
        method: HttpMethod::Get,
        url: format!("http://127.0.0.1:{port}/search"),
        timeout_ms: Some(2_000),
        idempotency_header: None,
    };
    let tool = HttpTool::new("kb_search", &binding, &AuthScheme::None)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(1));
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert!(matches!(output, Err(ToolError::Failed(detail)) if detail.contains("cannot connect")));
}

#[tokio::test]
async fn http_auth_schemes_put_the_secret_on_the_wire() {
    let server = loopback_server().await;
    Mock::given(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scheme": "bearer"})))
        .mount(&server)
        .await;
    Mock::given(header("x-custom-key", "key-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scheme": "api_key"})))
        .mount(&server)
        .await;
    // `user:pass` in base64.
    Mock::given(header("authorization", "Basic dXNlcjpwYXNz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scheme": "basic"})))
        .mount(&server)
        .await;
    let cases = [
        (AuthScheme::Bearer, "tok-1", "bearer"),
        (AuthScheme::OAuth2, "tok-1", "bearer"),
        (
            AuthScheme::ApiKey {
                header: "X-Custom-Key".into(),
            },
            "key-2",
            "api_key",
        ),
        (AuthScheme::Basic, "user:pass", "basic"),
    ];
    for (auth, secret, expected) in cases {
        let tool = http_tool(&server, HttpMethod::Post, auth);
        let output = tool.invoke(&json!({}), &context(Some(secret))).await;
        assert_eq!(output, Ok(json!({"scheme": expected})));
    }
}

#[tokio::test]
async fn http_auth_without_a_credential_is_not_sent() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(0)
        .mount(&server)
        .await;
    let tool = http_tool(&server, HttpMethod::Post, AuthScheme::Bearer);
    let output = tool.invoke(&json!({}), &context(None)).await;
    assert_eq!(
        output,
        Err(ToolError::MissingCredential("kb_search".into()))
    );
    server.verify().await;
}

#[test]
fn api_key_auth_defaults_to_the_x_api_key_header() {
    let tool = kb_tool("http://127.0.0.1:9")
        .replace("auth:\n  scheme: bearer\n", "auth:\n  scheme: api_key\n");
    let set = load(&[("agent.yaml", KB_AGENT.to_string()), ("tools.yaml", tool)]);
    assert_eq!(
        set.bindings[0].auth,
        AuthScheme::ApiKey {
            header: "X-Api-Key".into()
        }
    );
}

#[test]
fn credentials_never_travel_over_plain_http_off_loopback() {
    let binding = |url: &str| HttpBindingSpec {
        method: HttpMethod::Post,
        url: url.into(),
        timeout_ms: None,
        idempotency_header: None,
    };
    let credentialed = [
        AuthScheme::Bearer,
        AuthScheme::Basic,
        AuthScheme::OAuth2,
        AuthScheme::ApiKey {
            header: "X-Api-Key".into(),
        },
    ];
    for auth in &credentialed {
        for url in [
            "http://tools.acme.example/kb",
            "http://127.0.0.1:80@tools.acme.example/kb",
        ] {
            assert!(
                matches!(
                    HttpTool::new("t", &binding(url), auth),
                    Err(ToolError::InvalidBinding { .. })
                ),
                "{url} with {auth:?}"
            );
        }
        for url in [
            "https://tools.acme.example/kb",
            "http://127.0.0.1:9/kb",
            "http://localhost:9/kb",
        ] {
            assert!(HttpTool::new("t", &binding(url), auth).is_ok(), "{url}");
        }
    }
    // Without a credential, plain HTTP carries nothing secret.
    assert!(
        HttpTool::new(
            "t",
            &binding("http://tools.acme.example/kb"),
            &AuthScheme::None
        )
        .is_ok()
    );
}

#[test]
fn http_bindings_must_be_http_urls() {
    for url in ["ftp://example.com/x", "not a url"] {
        let binding = HttpBindingSpec {
            method: HttpMethod::Get,
            url: url.into(),
            timeout_ms: None,
            idempotency_header: None,
        };
        assert!(matches!(
            HttpTool::new("t", &binding, &AuthScheme::None),
            Err(ToolError::InvalidBinding { .. })
        ));
    }
}

const KB_AGENT: &str = r#"kind: openagentspec:v1/agent
name: kb_agent
description: An agent that searches the HR knowledge base.
intent: You answer HR questions from the knowledge base.
owner: people-ops@acme.example
capabilities:
  kb_search:
    user_identity: false
    static_identity: kb_ro
    input_restriction:
      assertion: recent.kb_search.inputs.knowledge_base_id.startsWith("acme/hr/")
exposes:
  everything: history
"#;

fn kb_tool(uri: &str) -> String {
    format!(
        r#"kind: openagentspec:v1/tool
name: kb_search
description: Searches the knowledge base.
input:
  type: object
  properties:
    knowledge_base_id: {{type: string}}
    query: {{type: string}}
  required: [knowledge_base_id, query]
output:
  type: object
  properties:
    results: {{type: array}}
  required: [results]
binding:
  http: {{method: POST, url: "{uri}/search", timeout_ms: 2000}}
auth:
  scheme: bearer
"#
    )
}

struct HttpHarness {
    server: MockServer,
    set: SpecSet,
    runtime: Runtime,
    audit: MemoryLog,
}

async fn http_harness() -> HttpHarness {
    let server = loopback_server().await;
    let set = load(&[
        ("agent.yaml", KB_AGENT.to_string()),
        ("tools.yaml", kb_tool(&server.uri())),
    ]);
    let tools = ToolRegistry::with_http_tools(&set).unwrap();
    let audit = MemoryLog::default();
    let mut runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    );
    runtime.audit = Arc::new(AuditLog::new(Box::new(audit.clone())));
    runtime.credentials =
        Arc::new(InMemoryCredentials::new().with_static("kb_ro", Secret::new("s3cr3t-token")));
    HttpHarness {
        server,
        set,
        runtime,
        audit,
    }
}

impl HttpHarness {
    async fn run(&self, turns: Vec<ModelTurn>) -> EngagementOutcome {
        let model = ScriptedModel::new(turns);
        run_engagement(
            &self.runtime,
            &model,
            EngagementRequest {
                agent: self.set.agent("kb_agent").unwrap(),
                user: Some(UserIdentity::new("u1")),
                input: "How much leave do I have?",
                memory: None,
            },
        )
        .await
    }
}

#[tokio::test]
async fn http_tool_bearer_is_on_the_wire_and_nowhere_in_the_engagement_or_audit() {
    let h = http_harness().await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .and(header("authorization", "Bearer s3cr3t-token"))
        .and(body_json(
            json!({"knowledge_base_id": "acme/hr/h", "query": "leave"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": ["a"]})))
        .expect(1)
        .mount(&h.server)
        .await;
    let outcome = h
        .run(vec![
            call(
                "kb_search",
                json!({"knowledge_base_id": "acme/hr/h", "query": "leave"}),
            ),
            ModelTurn::Text("done".into()),
        ])
        .await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(
        outcome.engagement["recent"]["kb_search"]["outputs"],
        json!({"results": ["a"]})
    );
    h.server.verify().await;
    let everything = serde_json::to_string(&outcome).unwrap();
    assert!(!everything.contains("s3cr3t-token"));
    assert!(!h.audit.text().contains("s3cr3t-token"));
    assert!(h.audit.text().contains("kb_search"));
}

#[tokio::test]
async fn http_tool_input_breaking_the_restriction_never_reaches_the_server() {
    let h = http_harness().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(0)
        .mount(&h.server)
        .await;
    let outcome = h
        .run(vec![
            call(
                "kb_search",
                json!({"knowledge_base_id": "acme/finance/payroll", "query": "salaries"}),
            ),
            // An input that breaks the schema is refused before the restriction.
            call("kb_search", json!({"knowledge_base_id": "acme/hr/h"})),
            ModelTurn::Text("done".into()),
        ])
        .await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(
        refused_stages(&outcome),
        ["input_restriction", "input_schema"]
    );
    h.server.verify().await;
}

#[tokio::test]
async fn http_tool_server_error_is_refused_and_not_recorded() {
    let h = http_harness().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&h.server)
        .await;
    let outcome = h
        .run(vec![
            call(
                "kb_search",
                json!({"knowledge_base_id": "acme/hr/h", "query": "leave"}),
            ),
            ModelTurn::Text("done".into()),
        ])
        .await;
    assert_eq!(refused_stages(&outcome), ["invoke"]);
    assert_eq!(outcome.engagement["history"]["_total"], 0);
    h.server.verify().await;
}

#[tokio::test]
async fn registry_binds_http_tools_and_mocks_override_them() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(0)
        .mount(&server)
        .await;
    let set = load(&[
        ("agent.yaml", KB_AGENT.to_string()),
        ("tools.yaml", kb_tool(&server.uri())),
    ]);
    assert_eq!(
        set.bindings,
        [ToolBindingSpec {
            tool: "kb_search".into(),
            binding: ToolBinding::Http(HttpBindingSpec {
                method: HttpMethod::Post,
                url: format!("{}/search", server.uri()),
                timeout_ms: Some(2000),
                idempotency_header: None,
            }),
            auth: AuthScheme::Bearer,
            effect: None,
        }]
    );
    let mut tools = ToolRegistry::with_http_tools(&set).unwrap();
    let http = tools.get("kb_search").unwrap().bound_backend().unwrap();
    // A mock bound over it (what `--mock-tool` does) replaces it; the HTTP service is
    // never called (`expect(0)` above).
    let mock = MockTool::new(json!({"results": ["mocked"]}));
    tools.bind("kb_search", Arc::new(mock.clone())).unwrap();
    let bound = tools.get("kb_search").unwrap().bound_backend().unwrap();
    assert!(!bound.same_as(&http));
    assert!(bound.same_as(&tools.get("kb_search").unwrap().bound_backend().unwrap()));
    server.verify().await;
}

// ---------------------------------------------------------------------------------------
// The OpenAI-compatible model client
// ---------------------------------------------------------------------------------------

fn tools_on_offer() -> Vec<ToolDescription> {
    vec![ToolDescription {
        name: "kb_search".into(),
        description: "Searches the knowledge base.".into(),
        input_schema: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
    }]
}

fn conversation() -> Vec<Message> {
    vec![
        Message::System {
            content: "You answer HR questions.".into(),
        },
        Message::User {
            content: "How much leave?".into(),
        },
    ]
}

fn openai(server: &MockServer) -> OpenAiModel {
    OpenAiModel::new(
        &format!("{}/v1/", server.uri()),
        Some(Secret::new("sk-test-key")),
        "test-model",
    )
    .unwrap()
}

fn text_answer(text: &str) -> Value {
    json!({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    ]})
}

fn tool_call_answer() -> Value {
    json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc", "type": "function",
            "function": {"name": "kb_search",
                "arguments": "{\"knowledge_base_id\":\"acme/hr/h\",\"query\":\"leave\"}"}
        }]
    }}]})
}

#[tokio::test]
async fn openai_text_answer_and_request_shape() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-key"))
        .and(body_partial_json(json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You answer HR questions."},
                {"role": "user", "content": "How much leave?"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "kb_search",
                "description": "Searches the knowledge base.",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}
            }}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(text_answer("25 days")))
        .expect(1)
        .mount(&server)
        .await;
    let model = openai(&server);
    assert!(model.endpoint().ends_with("/v1/chat/completions"));
    assert!(!format!("{model:?}").contains("sk-test-key"));
    let turn = model.complete(&conversation(), &tools_on_offer()).await;
    assert_eq!(turn, Ok(ModelTurn::Text("25 days".into())));
    server.verify().await;
    // Without tools on offer, no `tools` key is sent.
    let body = model.request_body(&conversation(), &[]);
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn openai_tool_call_answer() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tool_call_answer()))
        .mount(&server)
        .await;
    let turn = openai(&server)
        .complete(&conversation(), &tools_on_offer())
        .await;
    assert_eq!(
        turn,
        Ok(ModelTurn::ToolCalls(vec![ToolCall {
            id: Some("call_abc".into()),
            name: "kb_search".into(),
            arguments: json!({"knowledge_base_id": "acme/hr/h", "query": "leave"}).into(),
        }]))
    );
}

#[tokio::test]
async fn openai_errors_become_model_errors() {
    let server = loopback_server().await;
    Mock::given(path("/unauthorized/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided: sk-test-key"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(path("/malformed/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"choices\": ["))
        .mount(&server)
        .await;
    Mock::given(path("/nochoices/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "x"})))
        .mount(&server)
        .await;
    Mock::given(path("/slow/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(text_answer("late"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let model = |prefix: &str| {
        OpenAiModel::new(
            &format!("{}/{prefix}", server.uri()),
            Some(Secret::new("sk-test-key")),
            "m",
        )
        .unwrap()
        .with_timeout(Duration::from_millis(200))
    };
    let unauthorized = model("unauthorized").complete(&conversation(), &[]).await;
    assert_eq!(unauthorized, Err(ModelError::Status(401)));
    // The server's text, which echoes the key, is not passed on.
    assert!(!unauthorized.unwrap_err().to_string().contains("sk-test"));
    assert!(matches!(
        model("malformed").complete(&conversation(), &[]).await,
        Err(ModelError::InvalidResponse(_))
    ));
    assert!(matches!(
        model("nochoices").complete(&conversation(), &[]).await,
        Err(ModelError::InvalidResponse(_))
    ));
    assert_eq!(
        model("slow").complete(&conversation(), &[]).await,
        Err(ModelError::Timeout)
    );
}

#[tokio::test]
async fn openai_model_drives_an_engagement_with_tool_answers_paired_by_id() {
    let server = loopback_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tool_call_answer()))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"messages": [
            {"role": "system"},
            {"role": "user"},
            {"role": "assistant", "tool_calls": [{"id": "call_abc", "type": "function"}]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "{\"results\":[\"a\"]}"}
        ]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(text_answer("25 days")))
        .expect(1)
        .mount(&server)
        .await;
    let set = load(&[
        ("agent.yaml", KB_AGENT.to_string()),
        ("tools.yaml", kb_tool("http://127.0.0.1:9")),
    ]);
    let mut tools = ToolRegistry::new(&set.tools).unwrap();
    tools
        .bind(
            "kb_search",
            Arc::new(MockTool::new(json!({"results": ["a"]}))),
        )
        .unwrap();
    let mut runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    );
    runtime.credentials =
        Arc::new(InMemoryCredentials::new().with_static("kb_ro", Secret::new("k")));
    let outcome = run_engagement(
        &runtime,
        &openai(&server),
        EngagementRequest {
            agent: set.agent("kb_agent").unwrap(),
            user: None,
            input: "How much leave?",
            memory: None,
        },
    )
    .await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(outcome.text.as_deref(), Some("25 days"));
    server.verify().await;
}

// ---------------------------------------------------------------------------------------
// Agents as tools
// ---------------------------------------------------------------------------------------

const AGENTS: &str = r#"kind: openagentspec:v1/agent
name: meeting_scheduler
description: An agent that books meetings.
intent: You book meetings in the calendar.
owner: workplace-it@acme.example
capabilities:
  calendar: {}
exposes:
  event_id: 'has(recent.calendar) ? recent.calendar.outputs.id : ""'
---
kind: openagentspec:v1/agent
name: planner
description: An agent that plans the week and delegates scheduling.
intent: You plan the week.
owner: workplace-it@acme.example
capabilities:
  oagent://meeting_scheduler:
    output_restriction:
      assertion: recent.meeting_scheduler.outputs.event_id.startsWith("evt-")
exposes:
  booked: history._total
---
kind: openagentspec:v1/tool
name: calendar
description: Creates a calendar event.
input:
  type: object
  properties:
    title: {type: string}
  required: [title]
output:
  type: object
  properties:
    id: {type: string}
  required: [id]
binding:
  native: {function: tests::calendar}
"#;

struct AgentHarness {
    set: SpecSet,
    calendar: MockTool,
    runtime: Runtime,
}

fn agent_harness(event_id: &str) -> AgentHarness {
    let set = load(&[("agents.yaml", AGENTS.to_string())]);
    let mut tools = ToolRegistry::new(&set.tools).unwrap();
    let calendar = MockTool::new(json!({"id": event_id}));
    tools.bind("calendar", Arc::new(calendar.clone())).unwrap();
    let runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .with_agents(&set.agents);
    AgentHarness {
        set,
        calendar,
        runtime,
    }
}

impl AgentHarness {
    async fn run(&self, model: &dyn Model) -> EngagementOutcome {
        run_engagement(
            &self.runtime,
            model,
            EngagementRequest {
                agent: self.set.agent("planner").unwrap(),
                user: Some(UserIdentity::new("u1")),
                input: "Book the weekly sync.",
                memory: None,
            },
        )
        .await
    }
}

fn callee_model() -> Arc<dyn Model> {
    Arc::new(ScriptedModel::new(vec![
        call("calendar", json!({"title": "Weekly sync"})),
        ModelTurn::Text("Booked.".into()),
    ]))
}

fn planner_model() -> ScriptedModel {
    ScriptedModel::new(vec![
        call(
            "meeting_scheduler",
            json!({"text": "Book the weekly sync."}),
        ),
        ModelTurn::Text("All planned.".into()),
    ])
}

#[tokio::test]
async fn agent_as_tool_output_restriction_allows_the_exposed_field() {
    let mut h = agent_harness("evt-42");
    h.runtime
        .agent_models
        .insert("meeting_scheduler".into(), callee_model());
    let outcome = h.run(&planner_model()).await;
    assert_eq!(outcome.status, EngagementStatus::Completed, "{outcome:#?}");
    assert_eq!(
        outcome.engagement["recent"]["meeting_scheduler"]["outputs"],
        json!({"text": "Booked.", "event_id": "evt-42"})
    );
    assert_eq!(
        outcome.engagement["recent"]["meeting_scheduler"]["inputs"],
        json!({"text": "Book the weekly sync."})
    );
    assert_eq!(outcome.exposes["booked"], json!(1));
    assert_eq!(h.calendar.calls(), 1);
}

/// A nested engagement's identifier is the agent's name and 128 random bits, never a
/// count that starts again with each process, and each of its audit entries names the
/// engagement that engaged it; the trail is signed at each engagement's end.
#[tokio::test]
async fn nested_engagement_ids_are_random_and_their_audit_entries_name_the_parent() {
    let key = agentc_runtime::AuditSigningKey::from_hex(&"3".repeat(64)).unwrap();
    let mut nested_ids = Vec::new();
    for _ in 0..2 {
        let mut h = agent_harness("evt-42");
        h.runtime
            .agent_models
            .insert("meeting_scheduler".into(), callee_model());
        let log = MemoryLog::default();
        h.runtime.audit = Arc::new(
            AuditLog::new(Box::new(log.clone()))
                .with_checkpoints(key.clone(), agentc_runtime::DEFAULT_CHECKPOINT_INTERVAL),
        );
        let outcome = h.run(&planner_model()).await;
        assert_eq!(outcome.status, EngagementStatus::Completed, "{outcome:#?}");
        let root = outcome.engagement_id.clone();
        let random_part = |id: &str, agent: &str| {
            let digits = id.strip_prefix(&format!("{agent}-")).unwrap().to_string();
            assert_eq!(digits.len(), 32, "{id}");
            assert!(digits.bytes().all(|byte| byte.is_ascii_hexdigit()), "{id}");
        };
        random_part(&root, "planner");
        let entries: Vec<Value> = log.entries();
        let nested: Vec<&Value> = entries
            .iter()
            .filter(|entry| entry["agent"] == "meeting_scheduler")
            .collect();
        assert!(!nested.is_empty(), "{entries:#?}");
        for entry in &nested {
            assert_eq!(entry["parent"], json!(root), "{entry}");
            assert_eq!(entry["v"], json!(2));
        }
        let id = nested[0]["engagement"].as_str().unwrap().to_string();
        random_part(&id, "meeting_scheduler");
        assert_ne!(id, root);
        // The root's own entries name no parent.
        assert!(
            entries
                .iter()
                .filter(|entry| entry["engagement"] == json!(root))
                .all(|entry| entry.get("parent").is_none())
        );
        // Signed at the nested engagement's end and at the root's: all covered.
        let chain =
            agentc_runtime::verify_signed(log.text().as_bytes(), &key.public_key()).unwrap();
        assert_eq!(chain.checkpoints, 2);
        assert_eq!(chain.unsigned_entries(), 0);
        nested_ids.push(id);
    }
    assert_ne!(nested_ids[0], nested_ids[1]);
}

#[tokio::test]
async fn agent_as_tool_output_restriction_denies_a_bad_exposed_field() {
    let mut h = agent_harness("tmp-42");
    h.runtime
        .agent_models
        .insert("meeting_scheduler".into(), callee_model());
    let outcome = h.run(&planner_model()).await;
    // The callee ran, but its answer is kept from the planner and is not recorded.
    assert_eq!(h.calendar.calls(), 1);
    assert_eq!(refused_stages(&outcome), ["output_restriction"]);
    assert_eq!(outcome.engagement["history"]["_total"], 0);
    assert_eq!(outcome.exposes["booked"], json!(0));
}

#[tokio::test]
async fn agent_as_tool_runs_on_the_callers_model_when_none_is_named() {
    let h = agent_harness("evt-1");
    // One script serves both engagements, in the order their turns are asked for.
    let model = ScriptedModel::new(vec![
        call("meeting_scheduler", json!({"text": "Book it."})),
        call("calendar", json!({"title": "Sync"})),
        ModelTurn::Text("Booked.".into()),
        ModelTurn::Text("All planned.".into()),
    ]);
    let outcome = h.run(&model).await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(outcome.text.as_deref(), Some("All planned."));
    assert_eq!(model.remaining(), 0);
}

#[tokio::test]
async fn agent_as_tool_that_fails_is_refused_to_the_caller() {
    let mut h = agent_harness("evt-1");
    // The callee's script ends before it answers, so its engagement fails.
    h.runtime.agent_models.insert(
        "meeting_scheduler".into(),
        Arc::new(ScriptedModel::new(vec![])),
    );
    let outcome = h.run(&planner_model()).await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(refused_stages(&outcome), ["invoke"]);
    let reason = outcome.engagement["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("meeting_scheduler"), "{reason}");
}

#[tokio::test]
async fn agent_as_tool_without_the_agent_registered_is_refused() {
    let set = load(&[("agents.yaml", AGENTS.to_string())]);
    let tools = ToolRegistry::new(&set.tools).unwrap();
    let runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    );
    let outcome = run_engagement(
        &runtime,
        &planner_model(),
        EngagementRequest {
            agent: set.agent("planner").unwrap(),
            user: None,
            input: "Book it.",
            memory: None,
        },
    )
    .await;
    assert_eq!(refused_stages(&outcome), ["invoke"]);
}

/// A model for an agent that calls itself: it calls `echo` until it sees an answer to
/// that call, then answers with text, counting the turns it was asked for.
struct SelfCaller {
    turns: AtomicUsize,
}

#[async_trait]
impl Model for SelfCaller {
    async fn complete(
        &self,
        messages: &[Message],
        _tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        match messages.last() {
            Some(Message::Tool { content, .. }) => Ok(ModelTurn::Text(content.to_string())),
            _ => Ok(call("echo", json!({"text": "again"}))),
        }
    }
}

fn echo_agent() -> AgentSpec {
    let mut capability = CapabilitySpec::new("echo");
    capability.kind = CapabilityKind::Agent;
    AgentSpec {
        name: "echo".into(),
        description: "An agent that calls itself.".into(),
        intent: "You call yourself.".into(),
        owner: "o".into(),
        capabilities: vec![capability],
        retain_memory: true,
        ..AgentSpec::default()
    }
}

#[tokio::test]
async fn agent_cycles_stop_at_the_depth_limit() {
    let agent = echo_agent();
    let text_schema =
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
    let spec = ToolSpec {
        name: "echo".into(),
        description: "itself".into(),
        input_schema: text_schema.clone(),
        output_schema: text_schema,
    };
    for depth in [1, 4] {
        let mut runtime = Runtime::new(
            ToolRegistry::new(std::slice::from_ref(&spec)).unwrap(),
            std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
        )
        .with_agents(std::slice::from_ref(&agent));
        runtime.max_agent_depth = depth;
        let model = SelfCaller {
            turns: AtomicUsize::new(0),
        };
        let outcome = run_engagement(
            &runtime,
            &model,
            EngagementRequest {
                agent: &agent,
                user: None,
                input: "go",
                memory: None,
            },
        )
        .await;
        assert_eq!(outcome.status, EngagementStatus::Completed);
        // Every engagement, from the user's down to the deepest, takes two turns; the
        // deepest one's call is refused instead of starting another.
        assert_eq!(model.turns.load(Ordering::SeqCst), 2 * (depth + 1));
        assert_eq!(refused_stages(&outcome), Vec::<String>::new());
        assert!(outcome.text.unwrap().contains("text"));
    }
}

/// AGX-H1: a binding URL with path parameters takes them from the input, each
/// percent-encoded into its own segment, and sends only the rest as body or query; a
/// value that would change the route is refused before anything is sent.
#[tokio::test]
async fn agx_h1_path_parameters_fill_their_segment_and_never_change_the_route() {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .and(path("/skills/a%20b%3Fc%23d/versions/3"))
        .and(query_param("format", "full"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": "a b?c#d"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/skills/ocr"))
        .and(body_json(json!({"level": 2})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&server)
        .await;
    let tool = |method, url: &str| {
        HttpTool::new(
            "skills",
            &HttpBindingSpec {
                method,
                url: format!("{}{url}", server.uri()),
                timeout_ms: Some(2_000),
                idempotency_header: None,
            },
            &AuthScheme::None,
        )
        .unwrap()
    };
    let get = tool(HttpMethod::Get, "/skills/{name}/versions/{version}");
    let output = get
        .invoke(
            &json!({"name": "a b?c#d", "version": 3, "format": "full"}),
            &context(None),
        )
        .await
        .unwrap();
    assert_eq!(output, json!({"name": "a b?c#d"}));
    let put = tool(HttpMethod::Put, "/skills/{name}");
    let output = put
        .invoke(&json!({"name": "ocr", "level": 2}), &context(None))
        .await
        .unwrap();
    assert_eq!(output, json!({"ok": true}));
    // A dot segment, an empty value or a missing one is refused before anything is
    // sent (the mocks expect one call each), and the error names the parameter.
    for input in [
        json!({"name": "..", "version": 1}),
        json!({"name": "a/../../admin", "version": 1}),
        json!({"name": "a\\b", "version": 1}),
        json!({"name": ".", "version": 1}),
        json!({"name": "", "version": 1}),
        json!({"version": 1}),
        json!({"name": ["a"], "version": 1}),
    ] {
        let error = get.invoke(&input, &context(None)).await.unwrap_err();
        assert!(error.to_string().contains("`name`"), "{error}");
    }
    server.verify().await;
}

/// AGX-T2: a tool that takes an idempotency key gets the call's key in its header on
/// every attempt (so a POST is retried after a 503 as a GET is), is never called without
/// one, and says it may be sent again after an interruption; a tool that declares only
/// reads may too, and any other may not.
#[tokio::test]
async fn agx_t2_the_idempotency_key_travels_in_its_header_on_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/charge"))
        .and(header("idempotency-key", "k-123"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/charge"))
        .and(header("idempotency-key", "k-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"charged": true})))
        .mount(&server)
        .await;
    let binding = HttpBindingSpec {
        method: HttpMethod::Post,
        url: format!("{}/charge", server.uri()),
        timeout_ms: Some(2_000),
        idempotency_header: Some("Idempotency-Key".into()),
    };
    let tool = HttpTool::new("charge", &binding, &AuthScheme::None)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(5));
    assert_eq!(tool.rerun(), agentc_runtime::Rerun::WithIdempotencyKey);
    let mut keyed = context(None);
    keyed.idempotency_key = Some("k-123".into());
    let answer = tool.invoke(&json!({"amount": 5}), &keyed).await.unwrap();
    assert_eq!(answer, json!({"charged": true}));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // Denied: no key, no call.
    let refused = tool.invoke(&json!({"amount": 5}), &context(None)).await;
    assert!(
        matches!(refused, Err(ToolError::Failed(ref detail)) if detail.contains("no idempotency key"))
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // The effect decides the rest: read may run again, write or nothing declared not.
    let plain = HttpBindingSpec {
        idempotency_header: None,
        ..binding.clone()
    };
    for (effect, rerun) in [
        (
            Some(agentc_runtime::ToolEffect::Read),
            agentc_runtime::Rerun::Read,
        ),
        (
            Some(agentc_runtime::ToolEffect::Write),
            agentc_runtime::Rerun::Never,
        ),
        (
            Some(agentc_runtime::ToolEffect::Egress),
            agentc_runtime::Rerun::Never,
        ),
        (None, agentc_runtime::Rerun::Never),
    ] {
        let tool = HttpTool::new("charge", &plain, &AuthScheme::None)
            .unwrap()
            .with_effect(effect);
        assert_eq!(tool.rerun(), rerun, "{effect:?}");
    }
    // A header name that is not one is refused when the tool is built.
    let broken = HttpBindingSpec {
        idempotency_header: Some("Idempotency Key".into()),
        ..binding
    };
    assert!(HttpTool::new("charge", &broken, &AuthScheme::None).is_err());
}
