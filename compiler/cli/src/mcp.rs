//! MCP in the command line (AGX-M1): binding MCP-bound tools for `run` and `serve`, and
//! the check options that say whether this build can call them (W0606).

use agentc_compiler::CheckOptions;
use agentc_runtime::{SpecSet, ToolRegistry};

/// The options every command checks a set with: a build without the `mcp` feature
/// warns about each MCP-bound tool instead of refusing its calls unannounced.
pub fn check_options() -> CheckOptions {
    CheckOptions {
        mcp_unavailable: (!cfg!(feature = "mcp"))
            .then(|| "this agentc was built without the `mcp` feature".to_string()),
        ..CheckOptions::default()
    }
}

/// The MCP servers of a run or a server: bound into its registry, stopped with it.
#[derive(Clone, Default)]
pub struct McpTools {
    #[cfg(feature = "mcp")]
    servers: agentc_mcp::McpServers,
}

impl McpTools {
    /// Binds every `mcp`-bound tool of `specs` into `registry`.
    pub fn bind(registry: &mut ToolRegistry, specs: &SpecSet) -> Result<Self, String> {
        let tools = McpTools::default();
        #[cfg(feature = "mcp")]
        agentc_mcp::bind_mcp_tools(registry, specs, &tools.servers)
            .map_err(|error| error.to_string())?;
        #[cfg(not(feature = "mcp"))]
        let _ = (registry, specs);
        Ok(tools)
    }

    /// Stops every MCP server this run started and waits for their processes.
    pub async fn shutdown(&self) {
        #[cfg(feature = "mcp")]
        self.servers.shutdown().await;
    }
}
