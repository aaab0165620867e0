//! The `ToolBackend` of an MCP-bound tool.

use std::sync::Arc;
use std::time::Duration;

use agentc_runtime::{
    AuthScheme, McpBindingSpec, SpecSet, ToolBackend, ToolBinding, ToolContext, ToolError,
    ToolRegistry,
};
use async_trait::async_trait;

use crate::client::McpServers;

/// The per-call deadline when the binding names none (as for HTTP tools).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A tool served by an MCP server.
pub struct McpTool {
    name: String,
    binding: McpBindingSpec,
    auth: AuthScheme,
    output_schema: serde_json::Value,
    servers: McpServers,
    timeout: Duration,
}

impl McpTool {
    /// The tool `name`, bound by `binding`, whose output schema is `output_schema`.
    pub fn new(
        name: &str,
        binding: &McpBindingSpec,
        auth: &AuthScheme,
        output_schema: &serde_json::Value,
        servers: &McpServers,
    ) -> Self {
        McpTool {
            name: name.to_string(),
            binding: binding.clone(),
            auth: auth.clone(),
            output_schema: output_schema.clone(),
            servers: servers.clone(),
            timeout: binding
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        }
    }
}

#[async_trait]
impl ToolBackend for McpTool {
    async fn invoke(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        // The deadline covers starting the server, listing its tools and the call.
        let call = self.servers.call(
            &self.name,
            &self.binding,
            &self.auth,
            context.credential.as_ref(),
            input,
            &self.output_schema,
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Timeout(self.name.clone())),
        }
    }
}

/// Binds an [`McpTool`] to every tool of `set` whose binding is `mcp`, all sharing
/// `servers`; returns how many were bound.
pub fn bind_mcp_tools(
    registry: &mut ToolRegistry,
    set: &SpecSet,
    servers: &McpServers,
) -> Result<usize, ToolError> {
    let mut bound = 0;
    for binding in &set.bindings {
        if let ToolBinding::Mcp(mcp) = &binding.binding {
            let output_schema = set
                .tool(&binding.tool)
                .map(|tool| tool.output_schema.clone())
                .unwrap_or(serde_json::Value::Null);
            let tool = McpTool::new(&binding.tool, mcp, &binding.auth, &output_schema, servers);
            registry.bind(&binding.tool, Arc::new(tool))?;
            bound += 1;
        }
    }
    Ok(bound)
}
