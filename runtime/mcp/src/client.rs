//! MCP-bound tools (AGX-M1): the servers agentc calls, kept connected and pinned.
//!
//! [`McpServers`] holds one connection per server (and, for a streamable-HTTP server
//! called with per-user credentials, one per credential). A connection is made at the
//! first call: a stdio server's process is started, MCP is initialized, and the
//! server's tools are listed. Each call then:
//!
//! 1. re-lists the tools if the server said they changed (`notifications/tools/list_changed`);
//! 2. refuses the call, without sending it, when the tool is not on the server or its
//!    definition no longer matches the binding's pin (AGX-M2; fail closed);
//! 3. sends `tools/call` under the binding's deadline, and maps the result with
//!    [`crate::output::tool_output`].
//!
//! A connection that closes (a crashed process, a dropped session) is made again at the
//! next call, at most [`McpLimits::max_starts`] times per [`McpLimits::start_window`].
//! Processes are killed when their connection is dropped, and [`McpServers::shutdown`]
//! stops them all and waits for them.
//!
//! Errors name the tool, the server (its command, or its URL without the query) and what
//! went wrong, never the server's own text: an error message or a `tools/call` result's
//! content has not been through any output check.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentc_runtime::credentials::Secret;
use agentc_runtime::{AuthScheme, McpBindingSpec, McpTransport, ToolError};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, Implementation, PaginatedRequestParams, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use sha2::{Digest, Sha256};

use crate::output::tool_output;
use crate::pin::ToolDefinition;
use crate::process;

/// The bounds on what a server may send and how often it is restarted.
#[derive(Debug, Clone)]
pub struct McpLimits {
    /// The largest JSON-RPC message read from a server (a stdio line, an HTTP body or
    /// SSE event); a larger one fails the call and closes the connection.
    pub max_message_bytes: usize,
    /// How long starting a server and initializing MCP may take.
    pub connect_timeout: Duration,
    /// The most `tools/list` pages read, and the most tools kept, per listing.
    pub max_list_pages: usize,
    pub max_tools: usize,
    /// The most connections held at once (a server with per-user credentials has one
    /// per credential); past it, the least recently used idle one is closed.
    pub max_connections: usize,
    /// A server is started at most `max_starts` times in any `start_window`.
    pub max_starts: usize,
    pub start_window: Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        McpLimits {
            max_message_bytes: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
            max_list_pages: 100,
            max_tools: 10_000,
            max_connections: 256,
            max_starts: 5,
            start_window: Duration::from_secs(60),
        }
    }
}

/// What agentc tells a server about itself, and how it hears that the tools changed.
#[derive(Clone)]
struct AgentcClient {
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for AgentcClient {
    fn get_info(&self) -> ClientConfig {
        let mut info =
            ClientConfig::default().with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        info.client_info = Implementation::new("agentc", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.store(true, Ordering::SeqCst);
    }
}

/// One live connection.
struct Connection {
    service: RunningService<RoleClient, AgentcClient>,
    tools: HashMap<String, ToolDefinition>,
    tools_changed: Arc<AtomicBool>,
    /// A stdio server's process, and the flag its reader sets on an oversized line.
    child: Option<tokio::process::Child>,
    oversized: Option<Arc<AtomicBool>>,
}

impl Connection {
    fn usable(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| !matches!(child.try_wait(), Ok(None)));
        !self.service.is_closed() && !exited
    }

    async fn stop(mut self) {
        let _ = self
            .service
            .close_with_timeout(Duration::from_secs(2))
            .await;
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

#[derive(Default)]
struct SlotState {
    live: Option<Connection>,
    recent_starts: VecDeque<Instant>,
}

/// The connection to one server for one credential.
struct ServerSlot {
    transport: McpTransport,
    state: tokio::sync::Mutex<SlotState>,
    last_used: std::sync::Mutex<Instant>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    transport: McpTransport,
    /// The SHA-256 of the credential, so that connections are per credential without
    /// the secret being kept as a key.
    credential: Option<[u8; 32]>,
}

/// The MCP servers a runtime calls (cheap to clone: clones share the connections).
#[derive(Clone, Default)]
pub struct McpServers {
    inner: Arc<ServersInner>,
}

#[derive(Default)]
struct ServersInner {
    slots: std::sync::Mutex<HashMap<SlotKey, Arc<ServerSlot>>>,
    limits: McpLimits,
}

/// A server as errors name it: its command, or its URL without user information, query
/// or fragment (any of which may hold a credential).
pub fn server_label(transport: &McpTransport) -> String {
    match transport {
        McpTransport::Stdio { command, .. } => format!("`{command}`"),
        McpTransport::Http { url } => {
            let end = url.find(['?', '#']).unwrap_or(url.len());
            let url = url.get(..end).unwrap_or(url);
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest
                .get(..authority_end)
                .and_then(|authority| authority.rfind('@'))
            {
                Some(at) => rest.get(at + 1..).unwrap_or(rest),
                None => rest,
            };
            if scheme.is_empty() {
                format!("`{rest}`")
            } else {
                format!("`{scheme}://{rest}`")
            }
        }
    }
}

impl McpServers {
    /// Servers under `limits`.
    pub fn with_limits(limits: McpLimits) -> Self {
        McpServers {
            inner: Arc::new(ServersInner {
                slots: std::sync::Mutex::default(),
                limits,
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &McpLimits {
        &self.inner.limits
    }

    /// Calls `binding`'s tool with `input`; the output is mapped per `output_schema`.
    /// The caller bounds the whole call in time.
    pub async fn call(
        &self,
        tool: &str,
        binding: &McpBindingSpec,
        auth: &AuthScheme,
        credential: Option<&Secret>,
        input: &serde_json::Value,
        output_schema: &serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let failed = |detail: String| {
            ToolError::Failed(format!(
                "tool `{tool}` on MCP server {}: {detail}",
                server_label(&binding.transport)
            ))
        };
        let slot = self.slot(&binding.transport, auth, credential)?;
        let (peer, definition, oversized) = {
            let mut state = slot.state.lock().await;
            let connection = self
                .ready(&slot, &mut state, auth, credential)
                .await
                .map_err(failed)?;
            let definition = connection.tools.get(&binding.tool).cloned();
            (
                connection.service.peer().clone(),
                definition,
                connection.oversized.clone(),
            )
        };
        let Some(definition) = definition else {
            return Err(failed(format!(
                "the server lists no tool `{}`",
                binding.tool
            )));
        };
        if let Some(pin) = &binding.pin
            && definition.pin() != *pin
        {
            tracing::warn!(tool, "an MCP tool's definition no longer matches its pin");
            return Err(failed(
                "its definition on the server no longer matches the pin in its tool document (AGX-M2); the call was not sent. Review the change and re-import the tool (`agentc import mcp`)".to_string(),
            ));
        }
        let serde_json::Value::Object(arguments) = input else {
            return Err(failed("the input is not an object".to_string()));
        };
        let mut params = CallToolRequestParams::new(binding.tool.clone());
        params.arguments = Some(arguments.clone());
        let result = match peer.call_tool(params).await {
            Ok(result) => result,
            Err(error) => {
                let too_large = oversized
                    .as_ref()
                    .is_some_and(|flag| flag.load(Ordering::SeqCst));
                // The connection is made again at the next call.
                if peer.is_transport_closed() || too_large {
                    slot.state.lock().await.live = None;
                }
                if too_large {
                    return Err(ToolError::ResponseTooLarge {
                        tool: tool.to_string(),
                        limit: self.inner.limits.max_message_bytes,
                    });
                }
                return Err(failed(service_error(&error)));
            }
        };
        tool_output(result, output_schema).map_err(|error| failed(error.to_string()))
    }

    /// The tools the server lists (for `agentc import mcp`), bounded as for a call.
    pub async fn list(
        &self,
        transport: &McpTransport,
        auth: &AuthScheme,
        credential: Option<&Secret>,
    ) -> Result<Vec<rmcp::model::Tool>, String> {
        let mut connection = connect(transport, auth, credential, &self.inner.limits).await?;
        let listed = list_tools(&connection.service, &self.inner.limits).await;
        connection.tools.clear();
        connection.stop().await;
        listed
    }

    /// Stops every server and waits for their processes to end.
    pub async fn shutdown(&self) {
        let slots: Vec<Arc<ServerSlot>> = match self.inner.slots.lock() {
            Ok(mut slots) => slots.drain().map(|(_, slot)| slot).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .drain()
                .map(|(_, slot)| slot)
                .collect(),
        };
        for slot in slots {
            if let Some(connection) = slot.state.lock().await.live.take() {
                connection.stop().await;
            }
        }
    }

    /// The slot for a server and credential, made on first use. Past
    /// `max_connections`, the least recently used slot is dropped first (its process
    /// is killed with it; a call in flight on it keeps its own handle).
    fn slot(
        &self,
        transport: &McpTransport,
        auth: &AuthScheme,
        credential: Option<&Secret>,
    ) -> Result<Arc<ServerSlot>, ToolError> {
        let key = SlotKey {
            transport: transport.clone(),
            credential: match (auth, credential) {
                (AuthScheme::None, _) | (_, None) => None,
                (_, Some(secret)) => Some(Sha256::digest(secret.expose().as_bytes()).into()),
            },
        };
        let mut slots = self
            .inner
            .slots
            .lock()
            .map_err(|_| ToolError::Failed("the MCP connection table is unusable".into()))?;
        let now = Instant::now();
        if let Some(slot) = slots.get(&key) {
            if let Ok(mut last_used) = slot.last_used.lock() {
                *last_used = now;
            }
            return Ok(Arc::clone(slot));
        }
        while slots.len() >= self.inner.limits.max_connections.max(1) {
            let oldest = slots
                .iter()
                .min_by_key(|(_, slot)| slot.last_used.lock().map(|at| *at).unwrap_or(now))
                .map(|(key, _)| key.clone());
            match oldest {
                Some(oldest) => {
                    slots.remove(&oldest);
                }
                None => break,
            }
        }
        let slot = Arc::new(ServerSlot {
            transport: transport.clone(),
            state: tokio::sync::Mutex::default(),
            last_used: std::sync::Mutex::new(now),
        });
        slots.insert(key, Arc::clone(&slot));
        Ok(slot)
    }

    /// The slot's connection, made (or made again) if needed, with its tool list
    /// current.
    async fn ready<'s>(
        &self,
        slot: &ServerSlot,
        state: &'s mut SlotState,
        auth: &AuthScheme,
        credential: Option<&Secret>,
    ) -> Result<&'s mut Connection, String> {
        let limits = &self.inner.limits;
        if let Some(connection) = state.live.as_mut()
            && !connection.usable()
        {
            tracing::info!(server = %server_label(&slot.transport), "an MCP connection closed; it is made again");
            if let Some(connection) = state.live.take() {
                connection.stop().await;
            }
        }
        if state.live.is_none() {
            let now = Instant::now();
            while state
                .recent_starts
                .front()
                .is_some_and(|started| now.duration_since(*started) > limits.start_window)
            {
                state.recent_starts.pop_front();
            }
            if state.recent_starts.len() >= limits.max_starts {
                return Err(format!(
                    "the server was started {} times in the last {} s and is not started again yet",
                    state.recent_starts.len(),
                    limits.start_window.as_secs()
                ));
            }
            state.recent_starts.push_back(now);
            let mut connection = connect(&slot.transport, auth, credential, limits).await?;
            connection.tools = index_tools(list_tools(&connection.service, limits).await?);
            state.live = Some(connection);
        }
        let Some(connection) = state.live.as_mut() else {
            return Err("the connection could not be made".to_string());
        };
        if connection.tools_changed.swap(false, Ordering::SeqCst) {
            match list_tools(&connection.service, limits).await {
                Ok(tools) => connection.tools = index_tools(tools),
                Err(error) => {
                    // The old list is stale: until a listing succeeds, no call is made
                    // on it (fail closed).
                    connection.tools_changed.store(true, Ordering::SeqCst);
                    return Err(error);
                }
            }
        }
        Ok(connection)
    }
}

/// What a raw `tools/call` came back with.
#[derive(Debug, Clone)]
pub enum RawCallOutcome {
    /// A result: a success, or a tool error when `is_error` is set.
    Result(rmcp::model::CallToolResult),
    /// A JSON-RPC error answer.
    JsonRpcError { code: i32, message: String },
    /// No answer: the connection closed, the call timed out, or the answer was not a
    /// tool result.
    NoAnswer(String),
}

/// One MCP connection for a test harness (`agentc conform`): calls come back as the
/// server gave them, JSON-RPC errors and the server's own text included, because the
/// harness reports them to the tool's owner. It is not on the enforcement path; an
/// agent's calls go through [`McpServers::call`], which passes none of that text on.
pub struct McpSession {
    connection: Connection,
    limits: McpLimits,
}

impl McpSession {
    /// Starts (stdio) or reaches (HTTP) the server and initializes MCP, bounded as a
    /// runtime connection is.
    pub async fn open(
        transport: &McpTransport,
        auth: &AuthScheme,
        credential: Option<&Secret>,
        limits: McpLimits,
    ) -> Result<Self, String> {
        let connection = connect(transport, auth, credential, &limits).await?;
        Ok(McpSession { connection, limits })
    }

    /// Every page of the server's `tools/list`.
    pub async fn list_tools(&self) -> Result<Vec<rmcp::model::Tool>, String> {
        list_tools(&self.connection.service, &self.limits).await
    }

    /// Sends `tools/call` for `name` with `arguments`, waiting at most `timeout`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> RawCallOutcome {
        let mut params = CallToolRequestParams::new(name.to_string());
        params.arguments = Some(arguments);
        let peer = self.connection.service.peer();
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => {
                RawCallOutcome::NoAnswer(format!("no answer within {} ms", timeout.as_millis()))
            }
            Ok(Ok(result)) => RawCallOutcome::Result(result),
            Ok(Err(rmcp::ServiceError::McpError(data))) => RawCallOutcome::JsonRpcError {
                code: data.code.0,
                message: data.message.to_string(),
            },
            Ok(Err(error)) => RawCallOutcome::NoAnswer(service_error(&error)),
        }
    }

    /// Sends `ping`, waiting at most `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let request = rmcp::model::ClientRequest::PingRequest(rmcp::model::PingRequest {
            method: Default::default(),
            extensions: Default::default(),
        });
        match tokio::time::timeout(
            timeout,
            self.connection.service.peer().send_request(request),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(service_error(&error)),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Whether the connection is still open (and a stdio server still running).
    pub fn is_open(&mut self) -> bool {
        self.connection.usable()
    }

    /// Closes the connection and stops a stdio server, waiting for it to end.
    pub async fn close(self) {
        self.connection.stop().await;
    }
}

fn index_tools(tools: Vec<rmcp::model::Tool>) -> HashMap<String, ToolDefinition> {
    tools
        .iter()
        .map(|tool| (tool.name.to_string(), ToolDefinition::from_listed(tool)))
        .collect()
}

/// Starts (stdio) or reaches (HTTP) a server and initializes MCP, within the connect
/// timeout.
async fn connect(
    transport: &McpTransport,
    auth: &AuthScheme,
    credential: Option<&Secret>,
    limits: &McpLimits,
) -> Result<Connection, String> {
    let tools_changed = Arc::new(AtomicBool::new(false));
    let client = AgentcClient {
        tools_changed: Arc::clone(&tools_changed),
    };
    match transport {
        McpTransport::Stdio { command, args, env } => {
            let mut server = process::start(command, args, env, limits.max_message_bytes)
                .map_err(|error| format!("cannot start the server: {}", error.kind()))?;
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(
                server.stdout,
                server.stdin,
            )
            .with_max_line_length(limits.max_message_bytes);
            match initialize(client, transport, limits).await {
                Ok(service) => Ok(Connection {
                    service,
                    tools: HashMap::new(),
                    tools_changed,
                    child: Some(server.child),
                    oversized: Some(server.oversized),
                }),
                Err(error) => {
                    let _ = server.child.start_kill();
                    let _ = server.child.wait().await;
                    Err(error)
                }
            }
        }
        McpTransport::Http { url } => {
            let config = http_config(url, auth, credential, limits)?;
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
            Ok(Connection {
                service: initialize(client, transport, limits).await?,
                tools: HashMap::new(),
                tools_changed,
                child: None,
                oversized: None,
            })
        }
    }
}

/// MCP initialized over `transport`, within the connect timeout.
async fn initialize<T, E, A>(
    client: AgentcClient,
    transport: T,
    limits: &McpLimits,
) -> Result<RunningService<RoleClient, AgentcClient>, String>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limits.connect_timeout, client.serve(transport)).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(error)) => Err(format!(
            "the server did not initialize MCP: {}",
            initialize_error(&error)
        )),
        Err(_) => Err(format!(
            "the server did not initialize MCP within {} s",
            limits.connect_timeout.as_secs()
        )),
    }
}

/// A streamable-HTTP connection's settings: the message limits, and the credential per
/// the tool's auth scheme (a scheme that needs one and has none is refused rather than
/// sent unauthenticated; the secret is never part of an error).
fn http_config(
    url: &str,
    auth: &AuthScheme,
    credential: Option<&Secret>,
    limits: &McpLimits,
) -> Result<rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig, String> {
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
            .max_sse_event_size(limits.max_message_bytes)
            .max_json_response_size(limits.max_message_bytes);
    match (auth, credential) {
        (AuthScheme::None, _) => Ok(config),
        (_, None) => Err("the tool requires a credential and none was provided".to_string()),
        (AuthScheme::Bearer | AuthScheme::OAuth2, Some(secret)) => {
            Ok(config.auth_header(secret.expose()))
        }
        (AuthScheme::ApiKey { header }, Some(secret)) => {
            let name = http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| "the API key header name is invalid".to_string())?;
            let mut value = http::HeaderValue::from_str(secret.expose())
                .map_err(|_| "the credential is not a valid header value".to_string())?;
            value.set_sensitive(true);
            Ok(config.custom_headers(HashMap::from([(name, value)])))
        }
        (AuthScheme::Basic, Some(_)) => Err(
            "basic authentication is not supported for MCP servers; use a bearer token or an API key"
                .to_string(),
        ),
    }
}

/// Every page of `tools/list`, within the page and tool limits.
async fn list_tools(
    service: &RunningService<RoleClient, AgentcClient>,
    limits: &McpLimits,
) -> Result<Vec<rmcp::model::Tool>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..limits.max_list_pages {
        let params = cursor
            .take()
            .map(|cursor| PaginatedRequestParams::default().with_cursor(Some(cursor)));
        let page = tokio::time::timeout(limits.connect_timeout, service.peer().list_tools(params))
            .await
            .map_err(|_| "the server did not list its tools in time".to_string())?
            .map_err(|error| {
                format!(
                    "listing the server's tools failed: {}",
                    service_error(&error)
                )
            })?;
        tools.extend(page.tools);
        if tools.len() > limits.max_tools {
            return Err(format!(
                "the server lists more than {} tools",
                limits.max_tools
            ));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(tools),
        }
    }
    Err(format!(
        "the server's tool list is longer than {} pages",
        limits.max_list_pages
    ))
}

/// A service error as a message with nothing of the server's own text.
fn service_error(error: &rmcp::ServiceError) -> String {
    match error {
        rmcp::ServiceError::McpError(data) => {
            format!("the server answered with JSON-RPC error {}", data.code.0)
        }
        rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_) => {
            "the connection to the server closed".to_string()
        }
        rmcp::ServiceError::Timeout { .. } => "the server did not answer in time".to_string(),
        rmcp::ServiceError::Cancelled { .. } => "the call was cancelled".to_string(),
        _ => "the server's answer was not a tool result".to_string(),
    }
}

fn initialize_error(error: &rmcp::service::ClientInitializeError) -> String {
    use rmcp::service::ClientInitializeError as Error;
    match error {
        Error::ConnectionClosed(_) => "it closed the connection".to_string(),
        Error::JsonRpcError(data) => format!("it answered with JSON-RPC error {}", data.code.0),
        _ => "its answer was not a valid initialization".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_label_drops_what_may_hold_a_credential() {
        let label = |url: &str| server_label(&McpTransport::Http { url: url.into() });
        assert_eq!(
            label("https://user:s3cret@mcp.acme.example/mcp?key=s3cret#x"),
            "`https://mcp.acme.example/mcp`"
        );
        assert_eq!(
            label("http://127.0.0.1:8080/mcp"),
            "`http://127.0.0.1:8080/mcp`"
        );
        assert_eq!(label("https://host/a@b"), "`https://host/a@b`");
    }
}
