//! Serving agents that a Rust program already holds, rather than spec files loaded at
//! run time: above all the agents of crates that `agentc build` generates, whose
//! `Hosted<A>` gives its agent spec (`spec()`), the tool registry with the host's typed
//! tool implementations bound (`runtime().tools`), and the agent document as written
//! (`document()`).
//!
//! ```text
//! let hr = hr::HrAgent::new(MyKnowledgeBase::new(), std::sync::Arc::new(agentc_runtime::AuditLog::discard()))?;
//! let engine = ServerBuilder::new(model, store, auth)
//!     .host(hr.spec(), hr.runtime().tools(), hr.document())?
//!     .build()?;
//! agentc_server::serve(engine, listener, agentc_server::shutdown_signal()).await?;
//! ```
//!
//! Only the agent, its tools and its document are taken from the hosted agent. The
//! reviewer, the checkpoints and the audit trail are the server's own (its store), so
//! that reviews and engagements survive a restart as they do for `agentc serve`.

use std::collections::HashMap;
use std::sync::Arc;

use agentc_runtime::{
    AgentSpec, BoundBackend, CredentialProvider, InMemoryCredentials, Model, ToolRegistry, ToolSpec,
};

use crate::auth::AuthConfig;
use crate::engine::{Engine, HostedAgent, ServerConfig, ServerError, ServerParts};
use crate::store::Store;

/// One tool as a hosted agent brings it: its interface, and its backend when bound.
struct BroughtTool {
    spec: ToolSpec,
    backend: Option<BoundBackend>,
    /// The agent that brought it, to name in a conflict.
    agent: String,
}

/// Whether two interfaces of one tool name are the same, so that sharing them is safe.
fn same_interface(first: &ToolSpec, second: &ToolSpec) -> bool {
    first.description == second.description
        && first.input_schema == second.input_schema
        && first.output_schema == second.output_schema
}

/// Builds a server's [`Engine`] from agents held in memory (generated crates).
pub struct ServerBuilder {
    agents: Vec<HostedAgent>,
    tools: Vec<BroughtTool>,
    model: Arc<dyn Model>,
    agent_models: HashMap<String, Arc<dyn Model>>,
    credentials: Arc<dyn CredentialProvider>,
    store: Arc<dyn Store>,
    auth: AuthConfig,
    config: ServerConfig,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerBuilder")
            .field(
                "agents",
                &self
                    .agents
                    .iter()
                    .map(|agent| agent.spec.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A server whose agents run on `model`, keep their engagements in `store` and
    /// take callers from `auth`. It has no credentials until
    /// [`ServerBuilder::credentials`] gives some, so a call that needs a static
    /// identity's secret is refused (fail closed).
    pub fn new(model: Arc<dyn Model>, store: Arc<dyn Store>, auth: AuthConfig) -> Self {
        ServerBuilder {
            agents: Vec::new(),
            tools: Vec::new(),
            model,
            agent_models: HashMap::new(),
            credentials: Arc::new(InMemoryCredentials::new()),
            store,
            auth,
            config: ServerConfig::default(),
        }
    }

    /// Hosts one agent: its runtime spec, the registry that holds the interfaces (and
    /// bound backends) of its capabilities and guardrail tools, and its document as
    /// written, which `GET /agents/{name}` returns (OAS-S1). For a generated crate:
    /// `host(hosted.spec(), hosted.runtime().tools(), hosted.document())`.
    ///
    /// Every capability and guardrail tool must be in `tools`, since a call of a tool
    /// without a schema could not be validated. A tool name that two hosted agents
    /// bring with different backends is refused: the server has one registry, and
    /// choosing one agent's implementation for the other's calls would be a guess.
    pub fn host(
        mut self,
        spec: &AgentSpec,
        tools: &ToolRegistry,
        document: &str,
    ) -> Result<Self, ServerError> {
        if self
            .agents
            .iter()
            .any(|hosted| hosted.spec.name == spec.name)
        {
            return Err(ServerError::DuplicateAgent(spec.name.clone()));
        }
        let guardrail_tools = [&spec.input_guardrail, &spec.output_guardrail]
            .into_iter()
            .flatten()
            .map(|guardrail| guardrail.tool_name.as_str());
        let names = spec
            .capabilities
            .iter()
            .map(|capability| capability.name.as_str())
            .chain(guardrail_tools);
        for name in names {
            let Some(tool) = tools.get(name) else {
                return Err(ServerError::MissingTool {
                    agent: spec.name.clone(),
                    tool: name.to_string(),
                });
            };
            let backend = tool.bound_backend();
            match self.tools.iter().find(|brought| brought.spec.name == name) {
                None => self.tools.push(BroughtTool {
                    spec: tool.spec.clone(),
                    backend,
                    agent: spec.name.clone(),
                }),
                Some(brought) => {
                    let same_backend = match (&brought.backend, &backend) {
                        (Some(first), Some(second)) => first.same_as(second),
                        (None, None) => true,
                        _ => false,
                    };
                    if !same_backend || !same_interface(&brought.spec, &tool.spec) {
                        return Err(ServerError::ConflictingTool {
                            tool: name.to_string(),
                            first: brought.agent.clone(),
                            second: spec.name.clone(),
                        });
                    }
                }
            }
        }
        self.agents.push(HostedAgent {
            spec: Arc::new(spec.clone()),
            document: document.to_string(),
        });
        Ok(self)
    }

    /// The model one agent runs on instead of the server's model.
    pub fn agent_model(mut self, agent: &str, model: Arc<dyn Model>) -> Self {
        self.agent_models.insert(agent.to_string(), model);
        self
    }

    /// Where the secrets of tools and remote agents come from (OAS-C3/C4); for the
    /// provider a generated crate's runtime was given,
    /// `credentials(Arc::clone(&hosted.runtime().credentials))`.
    pub fn credentials(mut self, credentials: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The server's limits.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The engine, ready for [`crate::serve`]: one registry of every hosted agent's
    /// tools, and the hosted agents callable as capabilities of one another.
    pub async fn build(self) -> Result<Arc<Engine>, ServerError> {
        let specs: Vec<ToolSpec> = self.tools.iter().map(|tool| tool.spec.clone()).collect();
        let mut registry = ToolRegistry::new(&specs).map_err(ServerError::Tool)?;
        for tool in self.tools {
            if let Some(backend) = tool.backend {
                registry
                    .bind_bound(&tool.spec.name, backend)
                    .map_err(ServerError::Tool)?;
            }
        }
        let set_agents = self
            .agents
            .iter()
            .map(|hosted| hosted.spec.as_ref().clone())
            .collect();
        Engine::new(ServerParts {
            agents: self.agents,
            set_agents,
            tools: registry,
            credentials: self.credentials,
            model: self.model,
            agent_models: self.agent_models,
            store: self.store,
            auth: self.auth,
            config: self.config,
        })
        .await
    }
}
