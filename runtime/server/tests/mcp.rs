//! `agentc serve` over MCP and its discovery cards (AGX-M4): hosted agents as MCP tools
//! at `/mcp`, called by the official Rust SDK's client; the A2A Agent Card and the MCP
//! Server Card validated against their published schemas (`tests/schemas/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use agentc_server::SqliteStore;
use common::*;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;

const GREETER: &str = r#"kind: openagentspec:v1/agent
name: greeter
description: Greets whoever asks.
intent: Greet the user.
owner: people-ops@acme.example
capabilities:
  lookup_name:
    input_restriction:
      assertion: recent.lookup_name.inputs.id.startsWith("emp")
exposes:
  greeted: 'has(recent.lookup_name) ? recent.lookup_name.outputs.name : ""'
lifespan:
  stop_on_refusal: true
---
kind: openagentspec:v1/tool
name: lookup_name
description: Looks up an employee's name.
input:
  type: object
  properties:
    id: {type: string}
  required: [id]
output:
  type: object
  properties:
    name: {type: string}
  required: [name]
binding:
  native: {function: tests::lookup_name}
"#;

/// One conversation allowed, the next refused by the restriction (and ended by
/// `stop_on_refusal`); the scripted model answers by position in each conversation.
const GREETER_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: lookup_name
        arguments: {id: "emp-7"}
  - text: Hello, Ada!
"#;

const REFUSED_SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: lookup_name
        arguments: {id: "ceo"}
  - text: Hello, boss!
"#;

async fn greeter_server(script: &str, test: &str) -> (TestServer, agentc_runtime::MockTool) {
    let store = Arc::new(SqliteStore::open(&database_path(test)).unwrap());
    let (setup, mock) = Setup::new(vec![("greeter.yaml", GREETER.to_string())], store)
        .script("greeter", script)
        .mock("lookup_name", serde_json::json!({"name": "Ada"}));
    (setup.start().await, mock)
}

async fn mcp_client(
    base: &str,
    token: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            format!("{base}/mcp"),
        )
        .auth_header(token);
    ().serve(rmcp::transport::StreamableHttpClientTransport::from_config(
        config,
    ))
    .await
    .unwrap()
}

fn call(text: &str) -> CallToolRequestParams {
    let mut arguments = serde_json::Map::new();
    arguments.insert("text".into(), text.into());
    CallToolRequestParams::new("greeter").with_arguments(arguments)
}

#[tokio::test]
async fn agx_m4_a_hosted_agent_is_an_mcp_tool_and_its_engagement_is_the_callers() {
    let (server, mock) = greeter_server(GREETER_SCRIPT, "mcp-greeter").await;
    let client = mcp_client(&server.base, "alice-token-1").await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "greeter");
    assert_eq!(
        tools[0].input_schema["required"],
        serde_json::json!(["text"])
    );

    let result = client.call_tool(call("Greet employee 7.")).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let structured = result.structured_content.clone().unwrap();
    assert_eq!(structured["text"], "Hello, Ada!");
    assert_eq!(structured["exposes"]["greeted"], "Ada");
    assert_eq!(mock.calls(), 1);
    // The engagement is alice's, readable through the HTTP API as any other.
    let id = structured["id"].as_str().unwrap();
    let (status, view) = get(
        &server.base,
        &format!("/engagements/{id}"),
        Some("alice-token-1"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["text"], "Hello, Ada!");
    let (status, _) = get(
        &server.base,
        &format!("/engagements/{id}"),
        Some("bob-token-22"),
    )
    .await;
    assert_eq!(status, 404);

    // Bad arguments and unknown agents are JSON-RPC errors; nothing starts.
    let mut no_text = CallToolRequestParams::new("greeter");
    no_text.arguments = Some(serde_json::Map::new());
    assert!(client.call_tool(no_text).await.is_err());
    let mut unknown = call("hi");
    unknown.name = "payroll".into();
    assert!(client.call_tool(unknown).await.is_err());
    assert_eq!(mock.calls(), 1);
    client.cancel().await.unwrap();

    // Without a credential, or with a wrong one, `/mcp` answers 401 before MCP is read.
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    for token in [None, Some("not-a-token")] {
        let mut request = client_http()
            .post(format!("{}/mcp", server.base))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), 401);
    }
    server.stop().await;
}

fn client_http() -> reqwest::Client {
    client()
}

#[tokio::test]
async fn agx_m4_a_refused_call_fails_the_engagement_and_the_mcp_result_is_an_error_without_the_detail()
 {
    let (server, mock) = greeter_server(REFUSED_SCRIPT, "mcp-greeter-refused").await;
    let client = mcp_client(&server.base, "bob-token-22").await;
    let result = client.call_tool(call("Greet the CEO.")).await.unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("failed"), "{text}");
    // The public status names the rule, never the refused call's values.
    assert!(!text.contains("ceo"), "{text}");
    // The tool never ran.
    assert_eq!(mock.calls(), 0);
    client.cancel().await.unwrap();
    server.stop().await;
}

fn validator(schema_file: &str, definition_pointer: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(schema_file);
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Validate against one definition of the bundle: a root that refers to it.
    schema
        .as_object_mut()
        .unwrap()
        .insert("$ref".into(), definition_pointer.into());
    jsonschema::validator_for(&schema).unwrap()
}

#[tokio::test]
async fn agx_m4_the_agent_card_and_the_mcp_server_card_validate_against_their_published_schemas() {
    let (server, _) = greeter_server(GREETER_SCRIPT, "mcp-cards").await;
    let (status, card) = get(&server.base, "/.well-known/agent-card.json", None).await;
    assert_eq!(status, 200);
    let a2a = validator("a2a-v0.3.0.json", "#/definitions/AgentCard");
    let errors: Vec<String> = a2a
        .iter_errors(&card)
        .map(|error| error.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{card:#}");
    assert_eq!(card["skills"][0]["id"], "greeter");
    assert_eq!(
        card["additionalInterfaces"][1]["url"],
        format!("{}/mcp", server.base)
    );
    // A card missing a required field does not validate: the schema is in force.
    let mut broken = card.clone();
    broken.as_object_mut().unwrap().remove("skills");
    assert!(!a2a.is_valid(&broken));

    let (status, server_card) = get(&server.base, "/mcp/server-card", None).await;
    assert_eq!(status, 200);
    let mcp = validator("mcp-server-card.schema.json", "#/$defs/ServerCard");
    let errors: Vec<String> = mcp
        .iter_errors(&server_card)
        .map(|error| error.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{server_card:#}");
    assert_eq!(
        server_card["remotes"][0]["url"],
        format!("{}/mcp", server.base)
    );
    let mut broken = server_card.clone();
    broken["name"] = "no slash".into();
    assert!(!mcp.is_valid(&broken));
    server.stop().await;
}
