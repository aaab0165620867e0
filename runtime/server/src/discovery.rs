//! Discovery for agents (Agent OSI layer 3): what a caller can learn from the server
//! alone — `/llms.txt`, an OpenAPI 3.1 document of this API, the list of agents, and a
//! capability manifest per agent, generated from its spec. Each is built from the
//! hosted specs in a fixed order, so the same server gives the same documents.

use crate::engine::Engine;
use agentc_runtime::AgentSpec;
use agentc_runtime::spec::CapabilityKind;

/// Why a configured public URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the public URL must be `http://` or `https://` followed by a host (letters, digits, `.`, `-`, `:`, `[`, `]`), an optional port and an optional path, with no query, fragment or credentials"
)]
pub struct PublicUrlError;

/// A configured public base URL, checked and without its trailing `/`: the scheme
/// `http` or `https`, a host (with an optional port) and an optional path prefix.
/// The URL is written into every discovery document, so it may hold nothing a client
/// could read as markup or another URL (no query, fragment, credentials or spaces).
pub fn normalize_public_url(text: &str) -> Result<String, PublicUrlError> {
    let text = text.trim_end_matches('/');
    let (scheme, rest) = text.split_once("://").ok_or(PublicUrlError)?;
    if !matches!(scheme, "http" | "https") {
        return Err(PublicUrlError);
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let host_ok = !authority.is_empty()
        && !authority.starts_with(':')
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'));
    if !host_ok || !path_ok || path.contains("//") {
        return Err(PublicUrlError);
    }
    Ok(format!("{scheme}://{authority}{path}"))
}

/// The default public base URL: `http://` and the address the server is bound to.
pub fn bound_url(address: std::net::SocketAddr) -> String {
    format!("http://{address}")
}

/// `GET /agents`: the hosted agents named after `after` (by name), at most `limit`,
/// each with its document, manifest and `oagent://` name; `next_after` is the last
/// name when more follow.
pub fn agent_list(
    engine: &Engine,
    base: &str,
    after: Option<&str>,
    limit: usize,
) -> serde_json::Value {
    use std::ops::Bound;
    let host = base.split("://").nth(1).unwrap_or(base);
    let start = after.map_or(Bound::Unbounded, |name| Bound::Excluded(name.to_string()));
    let mut hosted: Vec<_> = engine
        .agents()
        .range((start, Bound::Unbounded))
        .take(limit.saturating_add(1))
        .map(|(_, hosted)| hosted)
        .collect();
    let more = hosted.len() > limit;
    hosted.truncate(limit);
    let next_after = match hosted.last() {
        Some(last) if more => serde_json::Value::String(last.spec.name.clone()),
        _ => serde_json::Value::Null,
    };
    let agents: Vec<serde_json::Value> = hosted
        .into_iter()
        .map(|hosted| {
            let name = &hosted.spec.name;
            serde_json::json!({
                "name": name,
                "description": hosted.spec.description,
                "document": format!("{base}/agents/{name}"),
                "manifest": format!("{base}/agents/{name}/manifest"),
                "oagent": format!("oagent://{host}/agents/{name}"),
            })
        })
        .collect();
    serde_json::json!({ "agents": agents, "next_after": next_after })
}

/// A capability manifest (Agent OSI layer 3) for one agent: engaging it, and each
/// capability it may use, with its endpoint and current status.
pub fn manifest(engine: &Engine, agent: &AgentSpec, base: &str) -> serde_json::Value {
    let mut capabilities = vec![serde_json::json!({
        "action": "engage",
        "target": agent.name,
        "description": agent.description,
        "tools_used": agent.capabilities.iter().map(|capability| capability.name.clone()).collect::<Vec<_>>(),
    })];
    for capability in &agent.capabilities {
        let action = match capability.kind {
            CapabilityKind::Tool => "call_tool",
            CapabilityKind::Agent => "delegate_to_agent",
            CapabilityKind::RemoteAgent { .. } => "delegate_to_remote_agent",
        };
        let reviewed = [
            &capability.input_restriction,
            &capability.output_restriction,
        ]
        .into_iter()
        .flatten()
        .any(|restriction| restriction.require_review.is_some());
        let mut description = format!("uses `{}`", capability.name);
        if reviewed {
            description.push_str(", after a reviewer approves (OAS-C7)");
        }
        capabilities.push(serde_json::json!({
            "action": action,
            "target": capability.name,
            "description": description,
            "tools_used": [capability.name],
        }));
    }
    let running = engine.running();
    serde_json::json!({
        "kind": "agentosi:v1/capability-manifest",
        "manifest_version": "1.0.0",
        "agent_id": agent.name,
        "agent_type": "openagentspec:v1/agent",
        "capabilities": capabilities,
        "endpoint": {
            "protocol": if base.starts_with("https://") { "https" } else { "http" },
            "address": format!("{base}/agents/{}", agent.name),
            "health_check": format!("{base}/healthz"),
        },
        "status": {
            "state": if engine.is_shutting_down() { "offline" } else if running > 0 { "busy" } else { "healthy" },
            "current_tasks": running,
        },
    })
}

/// `/llms.txt`: a short Markdown guide for a model or an agent.
pub fn llms_txt(engine: &Engine, base: &str) -> String {
    let mut text = String::from(
        "# agentc server\n\n\
         > OpenAgentSpec agents served over HTTP. Every call to a tool is checked against the agent's spec and refused when in doubt.\n\n\
         Authenticate with `Authorization: Bearer <token>` or `X-Api-Key: <key>`. Errors are JSON: `{\"error\": {\"status\", \"code\", \"message\"}}`. Requests are rate limited per user (discovery without credentials: per client address); `429` carries `Retry-After`.\n\n\
         ## Agents\n\n",
    );
    for hosted in engine.agents().values() {
        let name = &hosted.spec.name;
        text.push_str(&format!(
            "- [{name}]({base}/agents/{name}): {} (manifest: {base}/agents/{name}/manifest)\n",
            hosted.spec.description.trim()
        ));
    }
    text.push_str(&format!(
        "\n## How to use an agent\n\n\
         1. `GET {base}/agents/NAME` returns the agent document (YAML).\n\
         2. `POST {base}/agents/NAME` with `{{\"text\": \"your instruction\"}}` starts an engagement; the answer is `303 See Other` with `Location: /engagements/ID`.\n\
         3. `GET {base}/engagements/ID` returns `{{\"status\": {{\"state\": ...}}, \"text\", \"exposes\"}}`; poll until the state is `completed` or `failed`.\n\
         4. `POST {base}/engagements/ID` with `{{\"text\": ...}}` adds input once it has answered.\n\
         5. A call that needs a review waits in state `awaiting_review`; the reviewer lists `GET {base}/reviews` (a page of up to `?limit=` 50 at a time, 200 at most, oldest first; follow `next` until it is null) and answers `POST {base}/reviews/REVIEW` with `{{\"decision\": \"approve\", \"call_hash\": ...}}` or `{{\"decision\": \"refuse\", \"reason\": ...}}`.\n\
         6. A call to an agent on another server waits in state `awaiting_remote` until that agent's engagement answers.\n\n\
         ## Reference\n\n\
         - [OpenAPI 3.1]({base}/openapi.json)\n\
         - [Agents]({base}/agents)\n"
    ));
    text
}

fn error_response(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

/// The OpenAPI 3.1 document of this API, with one operation per route.
/// The agent document's JSON Schema (what `agentc schema agent` prints) as a component
/// of the OpenAPI document: its `$defs` stay inside it, so its references are rewritten
/// to point there, and its `$schema` (the dialect, which OpenAPI 3.1 fixes) is dropped.
fn agent_document_schema() -> serde_json::Value {
    fn rewrite_references(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(object) => {
                for (key, item) in object.iter_mut() {
                    match item {
                        serde_json::Value::String(reference) if key == "$ref" => {
                            if let Some(rest) = reference.strip_prefix("#/") {
                                *reference = format!("#/components/schemas/AgentDocument/{rest}");
                            }
                        }
                        _ => rewrite_references(item),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite_references),
            _ => {}
        }
    }
    let mut schema = agentc_compiler::documents::DocumentKind::Agent.json_schema();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    rewrite_references(&mut schema);
    schema
}

pub fn openapi(engine: &Engine, base: &str) -> serde_json::Value {
    let agent_names: Vec<&String> = engine.agents().keys().collect();
    let secured = serde_json::json!([{"bearer": []}, {"apiKey": []}]);
    let unauthorized = error_response("missing, malformed or unknown credentials");
    let limited = serde_json::json!({
        "description": "too many requests, or too many failed authentications from the client's address",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    });
    let name_parameter = serde_json::json!({
        "name": "name", "in": "path", "required": true,
        "schema": {"type": "string", "enum": agent_names},
    });
    let id_parameter = serde_json::json!({
        "name": "id", "in": "path", "required": true, "schema": {"type": "string"},
    });
    let input_body = serde_json::json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Input"}}},
    });
    // A cursor is what the previous page's `next` link holds: an agent's name, or a
    // review's creation time (milliseconds) and identifier.
    let page_parameters = |cursor_pattern: &str| {
        serde_json::json!([
            {"name": "limit", "in": "query", "required": false,
             "description": "how many items to answer (default 50)",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
            {"name": "after", "in": "query", "required": false,
             "description": "the cursor of the previous page's `next` link; items come in a stable order",
             "schema": {"type": "string", "pattern": cursor_pattern}},
        ])
    };
    let agent_page_parameters = page_parameters("^[A-Za-z0-9_.-]{1,200}$");
    let review_page_parameters = page_parameters("^-?[0-9]{1,18}[.][A-Za-z0-9_.-]{1,180}$");
    let next_schema = serde_json::json!({
        "type": ["string", "null"],
        "description": "the path of the next page (`?limit=N&after=CURSOR`), or null on the last page",
    });
    let bad_query = error_response("`limit` or `after` is not valid");
    let see_other = serde_json::json!({
        "description": "the engagement's state is at Location (OAS-S3)",
        "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["engagement", "location"],
            "properties": {"engagement": {"type": "string"}, "location": {"type": "string"}},
        }}},
    });
    let not_json = error_response("the body is not a JSON object");
    let too_large = error_response("the body or input is too large");
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "agentc server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAgentSpec agents over HTTP (OAS-S1..S3): agent documents, engagements, reviews (OAS-C7).",
        },
        "servers": [{"url": base}],
        "paths": {
            "/agents": {"get": {
                "operationId": "listAgents", "summary": "The hosted agents, a page at a time, by name",
                "parameters": agent_page_parameters,
                "responses": {"200": {"description": "the agents", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AgentList"}}}}, "400": bad_query, "429": limited},
            }},
            "/agents/{name}": {
                "get": {
                    "operationId": "getAgentDocument", "summary": "The agent document (OAS-S1)",
                    "parameters": [name_parameter],
                    "responses": {
                        "200": {"description": "the document, as YAML", "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/AgentDocument"}}}},
                        "404": error_response("no such agent"),
                        "429": limited,
                    },
                },
                "post": {
                    "operationId": "startEngagement", "summary": "Start an engagement (OAS-S3)",
                    "security": secured, "parameters": [name_parameter], "requestBody": input_body,
                    "responses": {
                        "303": see_other,
                        "400": not_json,
                        "401": unauthorized,
                        "404": error_response("no such agent"),
                        "408": error_response("the body did not arrive within the body read timeout"),
                        "413": too_large,
                        "422": error_response("the body is not {text: string}, or `text` is longer than its maxLength"),
                        "429": limited,
                    },
                },
            },
            "/agents/{name}/manifest": {"get": {
                "operationId": "getAgentManifest", "summary": "The agent's capability manifest",
                "parameters": [name_parameter],
                "responses": {"200": {"description": "the manifest", "content": {"application/json": {"schema": {"type": "object"}}}}, "404": error_response("no such agent"), "429": limited},
            }},
            "/engagements/{id}": {
                "get": {
                    "operationId": "getEngagement", "summary": "The engagement's state (OAS-X1: status, text, exposes)",
                    "security": secured, "parameters": [id_parameter, {
                        "name": "wait", "in": "query", "required": false,
                        "description": "hold the answer while the engagement runs, at most this many seconds: it comes when the engagement ends, yields or waits for a reviewer",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 30},
                    }],
                    "responses": {
                        "200": {"description": "the state", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Engagement"}}}},
                        "400": error_response("`wait` is not a whole number of seconds from 1 to 30"),
                        "401": unauthorized,
                        "404": error_response("no such engagement, or not yours"),
                        "429": limited,
                    },
                },
                "post": {
                    "operationId": "addEngagementInput", "summary": "Add user input to an engagement that has answered",
                    "security": secured, "parameters": [id_parameter], "requestBody": input_body,
                    "responses": {
                        "303": see_other,
                        "400": not_json,
                        "401": unauthorized,
                        "403": error_response("only the engagement's user may add input"),
                        "404": error_response("no such engagement, or not yours"),
                        "408": error_response("the body did not arrive within the body read timeout"),
                        "409": error_response("the engagement is not waiting for input"),
                        "413": too_large,
                        "422": error_response("the body is not {text: string}, or `text` is longer than its maxLength"),
                        "429": limited,
                    },
                },
            },
            "/reviews": {"get": {
                "operationId": "listReviews", "summary": "Reviews waiting for the caller (OAS-C7), a page at a time, oldest first",
                "security": secured, "parameters": review_page_parameters,
                "responses": {"200": {"description": "pending reviews", "content": {"application/json": {"schema": {"type": "object", "required": ["reviews", "next"], "properties": {"reviews": {"type": "array", "items": {"$ref": "#/components/schemas/Review"}}, "next": next_schema}}}}}, "400": bad_query, "401": unauthorized, "429": limited},
            }},
            "/reviews/{id}": {
                "get": {
                    "operationId": "getReview", "summary": "One review, for its reviewer",
                    "security": secured, "parameters": [id_parameter],
                    "responses": {"200": {"description": "the review", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Review"}}}}, "401": unauthorized, "404": error_response("no such review, or not yours"), "429": limited},
                },
                "post": {
                    "operationId": "decideReview", "summary": "Approve (naming the call's hash) or refuse",
                    "security": secured, "parameters": [id_parameter],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                    "responses": {
                        "200": {"description": "decided", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Review"}}}},
                        "400": not_json,
                        "401": unauthorized,
                        "404": error_response("no such review, or not yours"),
                        "408": error_response("the body did not arrive within the body read timeout"),
                        "409": error_response("already decided, or the approval names another call"),
                        "413": too_large,
                        "422": error_response("not a decision"),
                        "429": limited,
                    },
                },
            },
            "/llms.txt": {"get": {"operationId": "getLlmsTxt", "summary": "A guide for models", "responses": {"200": {"description": "Markdown", "content": {"text/markdown": {"schema": {"type": "string"}}}}, "429": limited}}},
            "/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}, "429": limited}}},
            "/healthz": {"get": {"operationId": "getHealth", "summary": "Liveness", "responses": {"200": {"description": "serving", "content": {"application/json": {"schema": {"type": "object"}}}}, "503": {"description": "shutting down"}}}},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["status", "code", "message"], "properties": {
                        "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                    }}},
                },
                "Input": {
                    "type": "object", "required": ["text"], "additionalProperties": false,
                    "properties": {"text": {"type": "string", "maxLength": engine.config().max_input_chars}},
                },
                "Engagement": {
                    "type": "object", "required": ["id", "agent", "status", "exposes"],
                    "properties": {
                        "id": {"type": "string"}, "agent": {"type": "string"},
                        "status": {"type": "object", "required": ["state"], "properties": {
                            "state": {"type": "string", "enum": ["running", "awaiting_review", "awaiting_remote", "completed", "failed"]},
                            "reason": {
                                "description": "why a failed engagement failed: its kind (`guardrail`, `short_circuit`, `review_refused`, `model`, `exposes`, `audit`, `turn_limit`, `call_limit`, `refused`, `interrupted`) and that kind's fields; never refused data",
                                "type": "object", "required": ["kind"],
                                "properties": {"kind": {"type": "string"}},
                            },
                        }},
                        "text": {"type": ["string", "null"]},
                        "exposes": {"type": "object"},
                        "review": {"type": "string"},
                    },
                },
                "Review": {
                    "type": "object", "required": ["id", "engagement", "tool", "stage", "call_hash"],
                    "properties": {
                        "id": {"type": "string"}, "engagement": {"type": "string"}, "agent": {"type": "string"},
                        "reviewer": {"type": "string"}, "tool": {"type": "string"},
                        "stage": {"type": "string", "enum": ["input", "output"]},
                        "inputs": {}, "outputs": {}, "call_hash": {"type": "string"},
                        "engagement_state": {"type": "object"}, "decision": {},
                    },
                },
                "Decision": {
                    "description": "an approval names the hash of the exact call it approves (OAS-C7); a refusal may give a reason",
                    "oneOf": [
                        {"type": "object", "required": ["decision", "call_hash"],
                         "properties": {"decision": {"const": "approve"}, "call_hash": {"type": "string"}}},
                        {"type": "object", "required": ["decision"],
                         "properties": {"decision": {"const": "refuse"}, "reason": {"type": "string"}}},
                    ],
                },
                "AgentDocument": agent_document_schema(),
                "AgentList": {"type": "object", "required": ["agents", "next"], "properties": {"agents": {"type": "array", "items": {"type": "object"}}, "next": next_schema}},
            },
        },
    })
}

/// The version of the A2A Agent Card format written at `/.well-known/agent-card.json`.
pub const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// The transport the Agent Card names for the server's own HTTP API. agentc does not
/// speak the A2A protocol's JSON-RPC, gRPC or HTTP+JSON bindings, so the card names its
/// own transport rather than claim one of them: an A2A client that knows only those
/// skips it, and a person or a registry still finds the agents and where they answer.
pub const OPENAGENTSPEC_TRANSPORT: &str = "OPENAGENTSPEC+HTTP";

/// AGX-M4: the A2A Agent Card of the server (`/.well-known/agent-card.json`, A2A 0.3):
/// one skill per hosted agent, the OpenAgentSpec HTTP API as the main interface and MCP
/// (`/mcp`) as another, the same credentials the API takes.
pub fn agent_card(engine: &Engine, base: &str) -> serde_json::Value {
    let skills: Vec<serde_json::Value> = engine
        .agents()
        .values()
        .map(|hosted| {
            let spec = &hosted.spec;
            serde_json::json!({
                "id": spec.name,
                "name": spec.name,
                "description": spec.description,
                "tags": ["openagentspec"],
                "inputModes": ["text/plain"],
                "outputModes": ["application/json"],
            })
        })
        .collect();
    serde_json::json!({
        "protocolVersion": A2A_PROTOCOL_VERSION,
        "name": "agentc server",
        "description": "OpenAgentSpec agents served by agentc: every tool call checked against the agent's declared policy.",
        "url": format!("{base}/agents"),
        "preferredTransport": OPENAGENTSPEC_TRANSPORT,
        "additionalInterfaces": [
            {"url": format!("{base}/agents"), "transport": OPENAGENTSPEC_TRANSPORT},
            {"url": format!("{base}/mcp"), "transport": "MCP"}
        ],
        "version": env!("CARGO_PKG_VERSION"),
        "documentationUrl": format!("{base}/llms.txt"),
        "capabilities": {"streaming": false, "pushNotifications": false, "stateTransitionHistory": false},
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["application/json"],
        "skills": skills,
    })
}

/// AGX-M4: the MCP Server Card of the server's `/mcp` endpoint (`/mcp/server-card`,
/// the draft of SEP-2127), with its transport, protocol versions and the credential it
/// takes. Its tools (the hosted agents) are listed by the protocol, not the card.
pub fn mcp_server_card(base: &str) -> serde_json::Value {
    let versions: Vec<&str> = crate::mcp::protocol_versions()
        .iter()
        .map(|version| version.as_str())
        .collect();
    serde_json::json!({
        "$schema": "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json",
        "name": "dev.agentc/serve",
        "title": "agentc server",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "OpenAgentSpec agents as MCP tools, each call enforced by agentc.",
        "remotes": [{
            "type": "streamable-http",
            "url": format!("{base}/mcp"),
            "supportedProtocolVersions": versions,
            "headers": [{
                "name": "Authorization",
                "description": "A bearer token of this server's auth configuration.",
                "isRequired": true,
                "isSecret": true,
                "value": "Bearer {token}",
                "variables": {"token": {"description": "The bearer token.", "isRequired": true, "isSecret": true}}
            }]
        }]
    })
}
