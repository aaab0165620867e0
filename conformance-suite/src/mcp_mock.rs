//! A mock of an MCP tool's server, started from its tool document (AGX-M5): an rmcp
//! server over streamable HTTP on 127.0.0.1 that lists the tool as the document defines
//! it (so its definition matches the document's pin), checks the credential per the
//! auth scheme, answers invalid arguments with a tool error and an unknown tool with a
//! JSON-RPC error, enforces the declared rate limit with tool errors, answers known
//! pitfalls as the document says is correct, and answers valid calls in the output
//! schema.
//!
//! The same [`Faults`] as the HTTP mock break one behaviour each, read for MCP:
//! `no_docs` lists a drifted definition (discovery), `no_auth_check` accepts any
//! credential (auth), `server_error_on_bad_input` accepts invalid arguments as valid
//! (error), `no_rate_limit`, `pitfalls_regressed` and `output_breaks_schema` as for HTTP.
//! `delete_does_not_delete` has no MCP reading: the CRUD test does not apply to MCP.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentc_compiler::documents::tool::AuthScheme;
use agentc_mcp::pin::ToolDefinition;
use agentc_runtime::Secret;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::mock::Faults;
use crate::schema::synthesize;
use crate::tool::ToolUnderTest;

/// A running mock MCP server of one tool; stopped when dropped.
pub struct McpToolMock {
    url: String,
    credential: Option<Secret>,
    server: tokio::task::JoinHandle<()>,
    served: Arc<ServedTool>,
}

impl std::fmt::Debug for McpToolMock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("McpToolMock")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for McpToolMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl McpToolMock {
    /// Starts the mock on 127.0.0.1 (a free port). Fails when the tool has no `mcp`
    /// binding.
    pub async fn start(tool: &ToolUnderTest, faults: Faults) -> Result<McpToolMock, String> {
        Self::start_with(tool, faults, false).await
    }

    /// Like [`McpToolMock::start`]; with `record`, the mock keeps every `tools/list` and
    /// `tools/call` it answers, for [`McpToolMock::requests`] (a dry run's plan).
    pub async fn start_with(
        tool: &ToolUnderTest,
        faults: Faults,
        record: bool,
    ) -> Result<McpToolMock, String> {
        let Some(binding) = &tool.document.binding.mcp else {
            return Err("the tool has no `mcp` binding to imitate".to_string());
        };
        let credential = match tool.auth_scheme() {
            AuthScheme::None => None,
            _ => Some(format!("agentc-mock-secret-{}", tool.name())),
        };
        let mut definition = served_definition(tool, binding.pin.as_ref().map(|p| &p.value));
        if faults.no_docs {
            definition.description = format!("{} (changed after review)", definition.description);
        }
        let listed = listed_tool(&definition)?;
        let served = Arc::new(ServedTool {
            tool: tool.clone(),
            listed,
            text_only: definition.output_schema.is_none(),
            faults,
            accepted: Mutex::new(VecDeque::new()),
            record,
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("the mock MCP server cannot listen: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("the mock MCP server has no address: {error}"))?;
        let factory = Arc::clone(&served);
        let service = StreamableHttpService::new(
            move || {
                Ok(MockSession {
                    served: Arc::clone(&factory),
                })
            },
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let guard = CredentialGuard {
            scheme: tool.auth_scheme(),
            header: tool.api_key_header(),
            credential: credential.clone(),
            check: !faults.no_auth_check,
        };
        let router = axum::Router::new().route_service("/mcp", service).layer(
            axum::middleware::from_fn_with_state(guard, check_credential),
        );
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "the mock MCP server stopped");
            }
        });
        Ok(McpToolMock {
            url: format!("http://{address}/mcp"),
            credential: credential.map(Secret::new),
            server,
            served,
        })
    }

    /// The mock's streamable-HTTP endpoint (`http://127.0.0.1:PORT/mcp`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The credential the mock accepts.
    pub fn credential(&self) -> Option<Secret> {
        self.credential.clone()
    }

    /// The `tools/list` and `tools/call` requests the mock answered, in order (a session's
    /// `initialize` and `ping` are not listed). Empty unless started with `record`.
    pub fn requests(&self) -> Vec<String> {
        self.served
            .requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }
}

/// The definition the mock lists: the document's, in the form whose digest is the
/// document's pin when one of them is. `agentc import mcp` writes a text output schema
/// for a server that declares none and a stock description for one that gives none, so
/// those readings are tried too; without a matching pin, the document as written.
fn served_definition(tool: &ToolUnderTest, pin: Option<&String>) -> ToolDefinition {
    let document = &tool.document;
    let server_name = document
        .binding
        .mcp
        .as_ref()
        .map_or_else(|| tool.name().to_string(), |mcp| mcp.tool.value.clone());
    let output = &document.output.value;
    let object_output =
        (output.get("type").and_then(Value::as_str) == Some("object")).then(|| output.clone());
    let stock_description = format!("MCP tool `{server_name}` (the server gives no description).");
    let mut descriptions = vec![document.description.value.clone()];
    if document.description.value == stock_description {
        descriptions.push(String::new());
    }
    let mut candidates = Vec::new();
    for description in &descriptions {
        for output_schema in [object_output.clone(), None] {
            candidates.push(ToolDefinition {
                name: server_name.clone(),
                description: description.clone(),
                input_schema: document.input.value.clone(),
                output_schema,
            });
        }
    }
    let matching = pin.and_then(|pin| {
        candidates
            .iter()
            .position(|candidate| candidate.pin() == *pin)
    });
    let index = matching.unwrap_or(0);
    candidates.swap_remove(index)
}

fn listed_tool(definition: &ToolDefinition) -> Result<Tool, String> {
    let object = |schema: &Value, what: &str| match schema {
        Value::Object(map) => Ok::<JsonObject, String>(map.clone()),
        _ => Err(format!("the tool's {what} schema is not an object")),
    };
    let mut listed = Tool::new(
        definition.name.clone(),
        definition.description.clone(),
        Arc::new(object(&definition.input_schema, "input")?),
    );
    if let Some(output) = &definition.output_schema {
        listed = listed.with_raw_output_schema(Arc::new(object(output, "output")?));
    }
    Ok(listed)
}

/// The tool a mock serves, shared by its sessions (the rate limit is per server).
struct ServedTool {
    tool: ToolUnderTest,
    listed: Tool,
    /// The server declares no output schema: outputs are sent as text.
    text_only: bool,
    faults: Faults,
    accepted: Mutex<VecDeque<Instant>>,
    /// Whether requests are kept (a dry run), and those kept.
    record: bool,
    requests: Mutex<Vec<String>>,
}

impl ServedTool {
    fn note(&self, request: String) {
        if self.record
            && let Ok(mut requests) = self.requests.lock()
        {
            requests.push(request);
        }
    }
}

impl ServedTool {
    /// `Some(seconds to wait)` when a call now is past the declared limit; otherwise
    /// the call is counted.
    fn over_limit(&self) -> Option<u64> {
        let limit = self.tool.conformance()?.rate_limit.as_ref()?;
        if self.faults.no_rate_limit {
            return None;
        }
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        let window = Duration::from_secs(limit.per_seconds.value);
        let now = Instant::now();
        while accepted
            .front()
            .is_some_and(|at| now.duration_since(*at) >= window)
        {
            accepted.pop_front();
        }
        let requests = usize::try_from(limit.requests.value).unwrap_or(usize::MAX);
        if accepted.len() >= requests {
            let wait = accepted.front().map_or(window, |oldest| {
                window.saturating_sub(now.duration_since(*oldest))
            });
            return Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        }
        accepted.push_back(now);
        None
    }

    /// A successful result carrying `output`.
    fn success(&self, output: Value) -> CallToolResult {
        match output {
            Value::Object(_) if !self.text_only => CallToolResult::structured(output),
            Value::Object(map) if map.len() == 1 => {
                // A text-only server sends its text; the document's `{text}` schema
                // holds it (how `agentc import mcp` reads such a tool).
                let text = map
                    .values()
                    .next()
                    .and_then(Value::as_str)
                    .map_or_else(|| Value::Object(map.clone()).to_string(), str::to_string);
                CallToolResult::success(vec![ContentBlock::text(text)])
            }
            other => CallToolResult::success(vec![ContentBlock::text(other.to_string())]),
        }
    }

    fn call(&self, request: CallToolRequestParams) -> Result<CallToolResult, ErrorData> {
        if request.name != self.listed.name {
            return Err(ErrorData::invalid_params(
                format!("unknown tool: {}", request.name),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Some(seconds) = self.over_limit() {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "rate limit exceeded: retry after {seconds} s"
            ))]));
        }
        if !self.faults.pitfalls_regressed
            && let Some(answer) = self.pitfall_answer(&arguments)
        {
            return Ok(answer);
        }
        if !self.faults.server_error_on_bad_input
            && let Err(problem) = jsonschema::validate(&self.tool.document.input.value, &arguments)
        {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "invalid arguments: {problem}"
            ))]));
        }
        if self.faults.output_breaks_schema {
            return Ok(CallToolResult::structured(
                json!({"unexpected": "an answer outside the declared schema"}),
            ));
        }
        let examples = self.tool.examples();
        let output = examples
            .iter()
            .find(|example| example.input.value == arguments)
            .or_else(|| examples.first())
            .and_then(|example| example.output.as_ref())
            .map_or_else(
                || synthesize(&self.tool.document.output.value),
                |output| output.value.clone(),
            );
        Ok(self.success(output))
    }

    /// The correct answer to a known pitfall's call, if `arguments` are one's.
    fn pitfall_answer(&self, arguments: &Value) -> Option<CallToolResult> {
        let pitfalls = self.tool.conformance()?.pitfalls.as_deref()?;
        let pitfall = pitfalls.iter().find(|pitfall| {
            pitfall
                .call
                .as_ref()
                .is_some_and(|call| call.arguments.value == *arguments)
        })?;
        let expect = &pitfall.expect;
        let body = expect.body.as_ref().map_or_else(
            || {
                expect.body_schema.as_ref().map_or_else(
                    || synthesize(&self.tool.document.output.value),
                    |schema| synthesize(&schema.value),
                )
            },
            |body| body.value.clone(),
        );
        if expect
            .is_error
            .as_ref()
            .is_some_and(|is_error| is_error.value)
        {
            let text = match &expect.body {
                Some(body) => body.value.to_string(),
                None => pitfall.description.value.clone(),
            };
            return Some(CallToolResult::error(vec![ContentBlock::text(text)]));
        }
        Some(self.success(body))
    }
}

/// One MCP session of the mock.
#[derive(Clone)]
struct MockSession {
    served: Arc<ServedTool>,
}

impl ServerHandler for MockSession {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_server_info(Implementation::new(
                "agentc-conformance-mock",
                env!("CARGO_PKG_VERSION"),
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.served.note("tools/list".to_string());
        Ok(ListToolsResult::with_all_items(vec![
            self.served.listed.clone(),
        ]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (self.served.listed.name == name).then(|| self.served.listed.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request
            .arguments
            .as_ref()
            .map_or_else(String::new, |arguments| {
                crate::schema::truncate(&Value::Object(arguments.clone()).to_string(), 120)
            });
        self.served
            .note(format!("tools/call `{}` {arguments}", request.name));
        self.served.call(request).map(CallToolResponse::from)
    }
}

/// The credential a mock checks, per the tool's auth scheme.
#[derive(Clone)]
struct CredentialGuard {
    scheme: AuthScheme,
    header: String,
    credential: Option<String>,
    /// `false` under the `no_auth_check` fault.
    check: bool,
}

async fn check_credential(
    State(guard): State<CredentialGuard>,
    request: Request,
    next: Next,
) -> Response {
    let accepted = {
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        match (&guard.credential, guard.scheme) {
            (None, _) => true,
            _ if !guard.check => true,
            (Some(expected), AuthScheme::ApiKey) => header(&guard.header) == Some(expected),
            (Some(expected), _) => {
                header("authorization").and_then(|value| value.strip_prefix("Bearer "))
                    == Some(expected.as_str())
            }
        }
    };
    if accepted {
        next.run(request).await
    } else {
        (
            http::StatusCode::UNAUTHORIZED,
            [
                (http::header::WWW_AUTHENTICATE, "Bearer"),
                (http::header::CONTENT_TYPE, "application/json"),
            ],
            r#"{"error":{"code":"unauthorized","message":"a valid credential is required"}}"#,
        )
            .into_response()
    }
}
