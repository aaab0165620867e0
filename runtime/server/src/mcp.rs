//! `agentc serve` over MCP (AGX-M4): every hosted agent is an MCP tool at `/mcp`, beside
//! the OpenAgentSpec HTTP API. A `tools/call` starts an engagement of that agent for the
//! caller, exactly as `POST /agents/{name}` does, and answers once it ends. The input is
//! `{text}`. The output is the engagement's public view: its `text` and `exposes`, and
//! its id and status.
//!
//! - Every request is authenticated as the HTTP API's are, with the same failure limits
//!   and per-user rate limit (`routes::caller`); there are no anonymous MCP callers.
//! - An engagement waiting for review keeps the call open until a reviewer decides
//!   through `/reviews`, or the agent deadline passes. Then the answer is an `isError`
//!   result naming the engagement, which the caller may poll at `/engagements/{id}`.
//! - A failed engagement is an `isError` result with the same public status the HTTP API
//!   gives: never a refusal's detail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentc_mcp::gateway::GatewayCaller;
use agentc_runtime::UserIdentity;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::engine::{Engine, StartError};
use crate::store::EngagementRecord;

/// The MCP protocol versions served: those with sessions, as by the gateway (AGX-M3).
pub use agentc_mcp::gateway::session_protocol_versions as protocol_versions;

/// The MCP handler of one session on a server.
#[derive(Clone)]
pub struct HostedAgentsMcp {
    engine: Arc<Engine>,
}

impl HostedAgentsMcp {
    /// A session's handler.
    pub fn new(engine: Arc<Engine>) -> Self {
        HostedAgentsMcp { engine }
    }
}

fn object(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// The tool an agent is offered as.
pub fn agent_tool(name: &str, description: &str) -> Tool {
    let input = serde_json::json!({
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The instruction for the agent."}},
        "required": ["text"],
        "additionalProperties": false
    });
    let output = serde_json::json!({
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "agent": {"type": "string"},
            "status": {"type": "object"},
            "text": {"type": ["string", "null"]},
            "exposes": {"type": "object"},
            "review": {"type": "string"}
        },
        "required": ["id", "agent", "status", "exposes"]
    });
    Tool::new(
        name.to_string(),
        description.to_string(),
        Arc::new(object(input)),
    )
    .with_raw_output_schema(Arc::new(object(output)))
}

/// States in which an engagement is still on its way to an answer.
const PENDING_STATES: &[&str] = &["created", "running", "awaiting_review", "awaiting_remote"];

impl HostedAgentsMcp {
    fn caller(context: &RequestContext<RoleServer>) -> Result<UserIdentity, ErrorData> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<GatewayCaller>())
            .map(|caller| caller.0.clone())
            .ok_or_else(|| ErrorData::invalid_request("the request is not authenticated", None))
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let user = Self::caller(&context)?;
        let engine = &self.engine;
        let name = request.name.to_string();
        if !engine.agents().contains_key(&name) {
            let shown: String = name.chars().take(128).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool: no agent `{shown}` is hosted here"),
                None,
            ));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("text"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("`text` (a string) is required", None))?;
        if text.chars().count() > engine.config().max_input_chars {
            return Err(ErrorData::invalid_params(
                format!(
                    "`text` is longer than {} characters",
                    engine.config().max_input_chars
                ),
                None,
            ));
        }
        let id =
            engine
                .start(&name, user, text.to_string())
                .await
                .map_err(|error| match error {
                    StartError::ShuttingDown => {
                        ErrorData::internal_error("the server is shutting down", None)
                    }
                    StartError::UnknownAgent => ErrorData::invalid_params("unknown agent", None),
                    other => {
                        tracing::error!(error = ?other, "an MCP engagement could not start");
                        ErrorData::internal_error("the engagement could not start", None)
                    }
                })?;
        let record = self.wait_for_answer(&id, &context).await?;
        let view = crate::routes::engagement_view(&record);
        if record.state() == "completed" {
            let text = record.text.clone().unwrap_or_default();
            let mut result = CallToolResult::structured(view);
            result.content = vec![ContentBlock::text(text)];
            return Ok(result);
        }
        Ok(CallToolResult::error(vec![ContentBlock::text(
            view.to_string(),
        )]))
    }

    /// Polls the store until the engagement leaves its pending states, the agent
    /// deadline passes, or the client cancels; the record as it then stands.
    async fn wait_for_answer(
        &self,
        id: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<EngagementRecord, ErrorData> {
        let deadline = Instant::now() + self.engine.config().agent_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let record = self
                .engine
                .store()
                .engagement_summary(id)
                .await
                .map_err(|error| {
                    tracing::error!(engagement = %id, %error, "an MCP engagement could not be read");
                    ErrorData::internal_error("the engagement could not be read", None)
                })?
                .ok_or_else(|| ErrorData::internal_error("the engagement is gone", None))?;
            if !PENDING_STATES.contains(&record.state())
                || Instant::now() >= deadline
                || context.ct.is_cancelled()
            {
                return Ok(record);
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = context.ct.cancelled() => {}
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

impl ServerHandler for HostedAgentsMcp {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_server_info(Implementation::new(
                "agentc-serve",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Each tool is an agent: call it with {text}; the answer is its text and exposes.",
            )
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(protocol_versions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .engine
            .agents()
            .values()
            .map(|hosted| agent_tool(&hosted.spec.name, &hosted.spec.description))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(request, context)
            .await
            .map(CallToolResponse::from)
    }
}
