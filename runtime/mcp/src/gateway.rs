//! The enforcing MCP gateway (AGX-M3): an MCP server that offers a client exactly one
//! agent's capabilities and runs each `tools/call` through the runtime's enforcement,
//! as if the client's model were the agent's model.
//!
//! - One MCP session is one engagement ([`start_direct_engagement`]): `recent`,
//!   `history`, short circuits and call limits count the session's calls, and an
//!   engagement that ends (a fatal refusal) refuses the session's later calls.
//!   Only protocol versions with sessions are offered (up to 2025-11-25): the stateless
//!   2026-07-28 protocol has nothing to hold an engagement, and clients negotiate down.
//! - The user is the one the HTTP front authenticated for the session's first request
//!   ([`GatewayCaller`], set by [`crate::gateway_http`]), or the one fixed for stdio. A
//!   request carrying another user's credential for the session is refused: a session
//!   identifier is not a credential.
//! - A refused call is a tool result with `isError` and the fixed sentence a model is told
//!   ([`agentc_runtime::Refusal::to_model_json`]), never the refusal's detail. A name
//!   that is not a capability is a JSON-RPC `invalid params` error, audited like any
//!   other refused call.
//! - Reviews ([`GatewayReviewer`]): an input review whose reviewer is the engaging user
//!   is asked of the session's client through MCP elicitation, when the client offers
//!   it; every other review goes to the fallback reviewer (refusing, unless the
//!   operator configured one). An output review is never elicited: the client would
//!   see the output before it is approved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentc_runtime::{
    AgentSpec, CallOutcome, Engagement, RefusalStage, ReviewDecision, ReviewRequest, Reviewer,
    ReviewerRef, Runtime, ToolCall, UserIdentity, end_direct_engagement, enforce_direct_call,
    start_direct_engagement,
};
use async_trait::async_trait;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequestParams,
    ElicitationAction, ElicitationSchema, Implementation, InitializeRequestParams,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{ElicitationMode, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};

/// The MCP protocol versions with sessions (up to 2025-11-25), the only ones served
/// where a session holds state: the stateless 2026-07-28 protocol has nothing to hold an
/// engagement, so clients negotiate down.
pub fn session_protocol_versions() -> &'static [ProtocolVersion] {
    ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// The user an HTTP front authenticated for a request, put in the request's extensions
/// for the gateway to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCaller(pub UserIdentity);

/// The bounds on a gateway's clients.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Sessions (engagements) open at once; a client past it is refused a session.
    pub max_sessions: usize,
    /// The longest tool name echoed back in an error.
    pub max_echoed_name: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            max_sessions: 256,
            max_echoed_name: 128,
        }
    }
}

/// Why a gateway cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A capability has no interface in the runtime.
    #[error("capability `{0}` of the agent has no tool interface in the runtime")]
    NoInterface(String),
    /// A capability's schema is not a JSON object.
    #[error("the {stage} schema of `{tool}` is not a JSON object")]
    SchemaNotObject { tool: String, stage: &'static str },
}

/// What every session of one gateway shares: the runtime, the agent, the tools offered.
pub struct Gateway {
    runtime: Arc<Runtime>,
    agent: Arc<AgentSpec>,
    offered: Arc<Vec<Tool>>,
    reviewer: Arc<GatewayReviewer>,
    limits: GatewayLimits,
    open_sessions: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Gateway")
            .field("agent", &self.agent.name)
            .field("offered", &self.offered.len())
            .field("open_sessions", &self.open_sessions.load(Ordering::Relaxed))
            .finish()
    }
}

impl Gateway {
    /// A gateway for `agent` on `runtime`, whose reviewer must be `reviewer` (so that
    /// reviews reach the session that asked). Every capability is offered with its
    /// interface's description and schemas.
    pub fn new(
        runtime: Arc<Runtime>,
        agent: Arc<AgentSpec>,
        reviewer: Arc<GatewayReviewer>,
        limits: GatewayLimits,
    ) -> Result<Arc<Self>, GatewayError> {
        let mut offered = Vec::with_capacity(agent.capabilities.len());
        for capability in &agent.capabilities {
            let tool = runtime
                .tools()
                .get(&capability.name)
                .ok_or_else(|| GatewayError::NoInterface(capability.name.clone()))?;
            let input = schema_object(&tool.spec.input_schema, &capability.name, "input")?;
            let mut offered_tool = Tool::new(
                capability.name.clone(),
                tool.spec.description.clone(),
                Arc::new(input),
            );
            // An output schema is offered only when it describes an object: MCP's
            // `structuredContent` is one.
            if tool
                .spec
                .output_schema
                .get("type")
                .and_then(|kind| kind.as_str())
                == Some("object")
            {
                let output = schema_object(&tool.spec.output_schema, &capability.name, "output")?;
                offered_tool = offered_tool.with_raw_output_schema(Arc::new(output));
            }
            offered.push(offered_tool);
        }
        Ok(Arc::new(Gateway {
            runtime,
            agent,
            offered: Arc::new(offered),
            reviewer,
            limits,
            open_sessions: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// The agent offered.
    pub fn agent(&self) -> &AgentSpec {
        &self.agent
    }

    /// The tools offered, in capability order.
    pub fn offered(&self) -> &[Tool] {
        &self.offered
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.open_sessions.load(Ordering::Relaxed)
    }

    /// A new session for a client: `user` is fixed (stdio) or `None` to take the user
    /// the HTTP front authenticated. Refused past [`GatewayLimits::max_sessions`].
    pub fn session(self: &Arc<Self>, user: Option<UserIdentity>) -> Result<GatewaySession, String> {
        let taken = self.open_sessions.fetch_add(1, Ordering::SeqCst);
        let slot = SessionSlot(Arc::clone(&self.open_sessions));
        if taken >= self.limits.max_sessions {
            drop(slot);
            return Err(format!(
                "the gateway has {} sessions open, its limit",
                self.limits.max_sessions
            ));
        }
        Ok(GatewaySession {
            gateway: Arc::clone(self),
            fixed_user: user,
            state: tokio::sync::Mutex::new(SessionState::default()),
            _slot: slot,
        })
    }
}

fn schema_object(
    schema: &serde_json::Value,
    tool: &str,
    stage: &'static str,
) -> Result<JsonObject, GatewayError> {
    match schema {
        serde_json::Value::Object(object) => Ok(object.clone()),
        _ => Err(GatewayError::SchemaNotObject {
            tool: tool.to_string(),
            stage,
        }),
    }
}

/// Frees a session's place in the count when the session is dropped.
struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct SessionState {
    /// The session's user, taken from its first request.
    user: Option<Option<UserIdentity>>,
    /// The engagement, started at the first call.
    engagement: Option<Engagement>,
}

/// One client's session: one engagement. Dropped when the client leaves (stdio closes,
/// the HTTP session is deleted or expires), which ends the engagement.
pub struct GatewaySession {
    gateway: Arc<Gateway>,
    fixed_user: Option<UserIdentity>,
    state: tokio::sync::Mutex<SessionState>,
    _slot: SessionSlot,
}

impl Drop for GatewaySession {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if let Some(engagement) = state.engagement.as_mut() {
            self.gateway.reviewer.forget(engagement.id());
            end_direct_engagement(&self.gateway.runtime, engagement);
        }
    }
}

impl GatewaySession {
    /// The user of this request: the fixed one, else the one the HTTP front put in the
    /// request's extensions (`None`: anonymous, as a stdio gateway without `--user`).
    fn request_user(&self, context: &RequestContext<RoleServer>) -> Option<UserIdentity> {
        if let Some(user) = &self.fixed_user {
            return Some(user.clone());
        }
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<GatewayCaller>())
            .map(|caller| caller.0.clone())
    }

    /// Binds the session to its first request's user, and refuses a request of any
    /// other user.
    fn check_user(
        state: &mut SessionState,
        user: Option<UserIdentity>,
    ) -> Result<Option<UserIdentity>, ErrorData> {
        match &state.user {
            None => {
                state.user = Some(user.clone());
                Ok(user)
            }
            Some(owner)
                if owner.as_ref().map(|user| &user.id) == user.as_ref().map(|user| &user.id) =>
            {
                Ok(user)
            }
            Some(_) => Err(ErrorData::invalid_request(
                "this session belongs to another user",
                None,
            )),
        }
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let gateway = &self.gateway;
        let user = self.request_user(&context);
        let mut state = self.state.lock().await;
        let user = Self::check_user(&mut state, user)?;
        if state.engagement.is_none() {
            let engagement = start_direct_engagement(&gateway.runtime, &gateway.agent, user)
                .map_err(|detail| {
                    tracing::warn!(%detail, "a gateway engagement could not start");
                    ErrorData::internal_error("the engagement could not start", None)
                })?;
            gateway
                .reviewer
                .register(engagement.id(), context.peer.clone());
            state.engagement = Some(engagement);
        }
        let Some(engagement) = state.engagement.as_mut() else {
            return Err(ErrorData::internal_error("no engagement", None));
        };
        let call = ToolCall {
            id: Some(context.id.to_string()),
            name: request.name.to_string(),
            arguments: Arc::new(serde_json::Value::Object(
                request.arguments.unwrap_or_default(),
            )),
        };
        match enforce_direct_call(&gateway.runtime, &gateway.agent, engagement, &call).await {
            CallOutcome::Returned(output) => Ok(returned(&output)),
            CallOutcome::Refused(refusal) if refusal.stage == RefusalStage::UndeclaredTool => {
                let name: String = call
                    .name
                    .chars()
                    .take(gateway.limits.max_echoed_name)
                    .collect();
                Err(ErrorData::invalid_params(
                    format!("unknown tool: `{name}` is not a capability of this agent"),
                    None,
                ))
            }
            CallOutcome::Refused(refusal) => Ok(CallToolResult::error(vec![ContentBlock::text(
                refusal.to_model_json().to_string(),
            )])),
        }
    }
}

/// A tool's output as a `tools/call` result: an object is the structured content (and
/// its JSON the text), anything else only text.
fn returned(output: &serde_json::Value) -> CallToolResult {
    match output {
        serde_json::Value::Object(_) => CallToolResult::structured(output.clone()),
        serde_json::Value::String(text) => {
            CallToolResult::success(vec![ContentBlock::text(text.clone())])
        }
        other => CallToolResult::success(vec![ContentBlock::text(other.to_string())]),
    }
}

impl ServerHandler for GatewaySession {
    fn get_info(&self) -> ServerConfig {
        let agent = &self.gateway.agent;
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_server_info(Implementation::new(
                format!("agentc-gateway-{}", agent.name),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(agent.intent.clone())
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(session_protocol_versions())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let user = self.request_user(&context);
        Self::check_user(&mut *self.state.lock().await, user)?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let user = self.request_user(&context);
        Self::check_user(&mut *self.state.lock().await, user)?;
        Ok(ListToolsResult::with_all_items(
            self.gateway.offered.as_ref().clone(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.gateway
            .offered
            .iter()
            .find(|tool| tool.name == name)
            .cloned()
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

/// Serves one session over stdin and stdout until the client closes stdin; `user` is
/// the session's fixed user. A line (one message) longer than `max_message_bytes` closes
/// the session.
pub async fn serve_stdio(
    gateway: &Arc<Gateway>,
    user: Option<UserIdentity>,
    max_message_bytes: usize,
) -> Result<(), String> {
    use rmcp::ServiceExt;
    let session = gateway.session(user)?;
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .with_max_line_length(max_message_bytes);
    let running = session
        .serve(transport)
        .await
        .map_err(|error| format!("the MCP session could not start: {error}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|error| format!("the MCP session failed: {error}"))
}

/// The reviewer of a gateway's runtime: asks the session's client through elicitation
/// when it may (see the module's documentation), else the fallback.
pub struct GatewayReviewer {
    sessions: Mutex<HashMap<String, Peer<RoleServer>>>,
    fallback: Arc<dyn Reviewer>,
    timeout: std::time::Duration,
}

impl GatewayReviewer {
    /// Asks clients when it may, `fallback` otherwise, waiting at most `timeout` for a
    /// client's answer.
    pub fn new(fallback: Arc<dyn Reviewer>, timeout: std::time::Duration) -> Arc<Self> {
        Arc::new(GatewayReviewer {
            sessions: Mutex::new(HashMap::new()),
            fallback,
            timeout,
        })
    }

    fn register(&self, engagement: &str, peer: Peer<RoleServer>) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(engagement.to_string(), peer);
        }
    }

    fn forget(&self, engagement: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(engagement);
        }
    }

    fn client_of(&self, engagement: &str) -> Option<Peer<RoleServer>> {
        self.sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(engagement).cloned())
    }

    async fn elicit(&self, peer: &Peer<RoleServer>, request: &ReviewRequest) -> ReviewDecision {
        let refuse = |reason: &str| ReviewDecision::Refuse {
            reason: reason.to_string(),
        };
        let form = serde_json::json!({
            "type": "object",
            "properties": {
                "approve": {
                    "type": "boolean",
                    "title": "Approve this call",
                    "description": "Yes lets the agent make exactly this call."
                }
            },
            "required": ["approve"]
        });
        let serde_json::Value::Object(form) = form else {
            return refuse("the review form could not be built");
        };
        let Ok(requested_schema) = ElicitationSchema::from_json_schema(form) else {
            return refuse("the review form could not be built");
        };
        // The call's input came from this client; it is shown shortened, never its output.
        let full = request.inputs.to_string();
        let mut inputs: String = full.chars().take(2048).collect();
        if inputs.len() < full.len() {
            inputs.push('…');
        }
        let message = format!(
            "Agent `{}` asks to call `{}` with {inputs}. Approve this call?",
            request.agent, request.tool
        );
        let answer = peer
            .create_elicitation_with_timeout(
                ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message,
                    requested_schema,
                },
                Some(self.timeout),
            )
            .await;
        match answer {
            Ok(result)
                if result.action == ElicitationAction::Accept
                    && result
                        .content
                        .as_ref()
                        .and_then(|content| content.get("approve"))
                        .and_then(serde_json::Value::as_bool)
                        == Some(true) =>
            {
                ReviewDecision::Approve {
                    call_hash: request.call_hash.clone(),
                }
            }
            Ok(_) => refuse("the user did not approve the call"),
            Err(error) => {
                tracing::warn!(%error, tool = %request.tool, "a review could not be asked of the client");
                refuse("the client could not be asked for a review")
            }
        }
    }
}

#[async_trait]
impl Reviewer for GatewayReviewer {
    async fn review(&self, request: &ReviewRequest) -> ReviewDecision {
        let elicitable = request.stage == "input" && request.reviewer == ReviewerRef::User;
        if elicitable
            && let Some(peer) = self.client_of(&request.root_engagement)
            && peer
                .supported_elicitation_modes()
                .contains(&ElicitationMode::Form)
        {
            return self.elicit(&peer, request).await;
        }
        self.fallback.review(request).await
    }
}
