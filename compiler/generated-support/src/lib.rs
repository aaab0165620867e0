//! The trait-independent part of every crate `agentc build` generates (and of every
//! module `#[agentc::agent]` expands): the request and reply of an agent used as
//! a capability, the identity views a tool method is given, the errors, the outcome of
//! an engagement, and the helpers that bridge the runtime's dynamic values and compiled
//! CEL. Generated code re-exports these items, so they are named through the generated
//! crate; what must stay sealed per set (`Agent`, `Capability`, `AllowedFor`) and what
//! names it (`Hosted`, `Session`) is generated in each crate instead.

#![forbid(unsafe_code)]

pub mod cel_roots;

/// What an agent used as a capability is given (Reading: an agent as a tool).
#[derive(
    Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema,
)]
pub struct AgentRequest {
    /// The request, in natural language.
    pub text: ::std::string::String,
}

/// What an agent used as a capability answers: its text and its exposes (OAS-X1).
#[derive(
    Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema,
)]
pub struct AgentReply<E> {
    /// The agent's text.
    pub text: ::std::string::String,
    /// The agent's exposes.
    #[serde(flatten)]
    pub exposes: E,
}

/// The exposes of a remote agent, whose document was not part of the build.
pub type RemoteExposes = ::std::collections::BTreeMap<::std::string::String, ::serde_json::Value>;

/// A call made with the engaging user's identity (OAS-C3), or with the capability's
/// static identity when the engagement has no user (OAS-C4).
#[derive(Debug, Clone, Copy)]
pub struct UserIdentityCall<'a> {
    context: &'a ::agentc_runtime::ToolContext,
}

impl<'a> UserIdentityCall<'a> {
    /// The view of a call's context that a tool method called with the user's identity
    /// is given (generated code builds it for each call).
    pub fn new(context: &'a ::agentc_runtime::ToolContext) -> Self {
        UserIdentityCall { context }
    }

    /// The engagement the call belongs to.
    pub fn engagement(&self) -> &'a str {
        &self.context.engagement
    }

    /// The engaging user, when the call is made with their identity.
    pub fn user(&self) -> ::std::option::Option<&'a str> {
        match &self.context.identity {
            ::agentc_runtime::Identity::User(user) => Some(user),
            _ => None,
        }
    }

    /// The identity the call is made with.
    pub fn identity(&self) -> &'a ::agentc_runtime::Identity {
        &self.context.identity
    }

    /// The credential for that identity, for the request alone.
    pub fn credential(&self) -> ::std::option::Option<&'a ::agentc_runtime::Secret> {
        self.context.credential.as_ref()
    }
}

/// A call made with a static credential set, never with the user's identity
/// (`user_identity: false`, OAS-C3, OAS-C4).
#[derive(Debug, Clone, Copy)]
pub struct StaticIdentityCall<'a> {
    context: &'a ::agentc_runtime::ToolContext,
}

impl<'a> StaticIdentityCall<'a> {
    /// The view of a call's context that a tool method called with a static identity is
    /// given (generated code builds it for each call).
    pub fn new(context: &'a ::agentc_runtime::ToolContext) -> Self {
        StaticIdentityCall { context }
    }

    /// The engagement the call belongs to.
    pub fn engagement(&self) -> &'a str {
        &self.context.engagement
    }

    /// The static credential set the call is made with.
    pub fn static_identity(&self) -> ::std::option::Option<&'a str> {
        match &self.context.identity {
            ::agentc_runtime::Identity::Static(name) => Some(name),
            _ => None,
        }
    }

    /// The credential of that set, for the request alone.
    pub fn credential(&self) -> ::std::option::Option<&'a ::agentc_runtime::Secret> {
        self.context.credential.as_ref()
    }
}

/// Why an agent could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// A tool's embedded JSON Schema did not parse.
    Schema {
        /// The tool.
        tool: &'static str,
        /// Why.
        detail: ::std::string::String,
    },
    /// An interpreted CEL expression did not parse.
    Cel(::agentc_runtime::CheckError),
    /// The tool registry refused a schema or a binding.
    Tool(::agentc_runtime::ToolError),
}

impl ::std::fmt::Display for SetupError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            SetupError::Schema { tool, detail } => {
                write!(formatter, "the schema of `{tool}` does not parse: {detail}")
            }
            SetupError::Cel(error) => write!(formatter, "{error}"),
            SetupError::Tool(error) => write!(formatter, "{error}"),
        }
    }
}

impl ::std::error::Error for SetupError {}

/// Why the model's tool call could not be parsed into an agent's closed set of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseCallError {
    /// The name is not a capability of the agent.
    Undeclared {
        /// The agent.
        agent: &'static str,
        /// The name the model used.
        name: ::std::string::String,
    },
    /// The arguments do not fit the capability's input type.
    BadArguments {
        /// The capability.
        capability: &'static str,
        /// Why.
        detail: ::std::string::String,
    },
}

impl ::std::fmt::Display for ParseCallError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            ParseCallError::Undeclared { agent, name } => {
                write!(
                    formatter,
                    "agent `{agent}` does not declare capability `{name}`"
                )
            }
            ParseCallError::BadArguments { capability, detail } => {
                write!(formatter, "invalid arguments for `{capability}`: {detail}")
            }
        }
    }
}

impl ::std::error::Error for ParseCallError {}

/// Why a typed call through a generated crate's `Session` gave no output.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The runtime refused the call (a restriction, a review, the short circuit...).
    Refused(::agentc_runtime::Refusal),
    /// The input could not be serialized.
    Input(::std::string::String),
    /// The output did not fit the capability's output type.
    Output(::std::string::String),
}

impl ::std::fmt::Display for CallError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            CallError::Refused(refusal) => {
                write!(
                    formatter,
                    "call to `{}` refused: {}",
                    refusal.tool, refusal.reason
                )
            }
            CallError::Input(detail) => write!(formatter, "invalid input: {detail}"),
            CallError::Output(detail) => write!(formatter, "invalid output: {detail}"),
        }
    }
}

impl ::std::error::Error for CallError {}

/// What the caller of an engagement gets: the text and the typed exposes, and nothing
/// else of the engagement (OAS-X1).
#[derive(Debug, Clone)]
pub struct Outcome<E> {
    /// The engagement's identifier.
    pub engagement_id: ::std::string::String,
    /// Completed or failed, with the reason.
    pub status: ::agentc_runtime::EngagementStatus,
    /// The agent's final text, when it completed.
    pub text: ::std::option::Option<::std::string::String>,
    /// The exposes, when it completed.
    pub exposes: ::std::option::Option<E>,
    record: ::serde_json::Value,
}

impl<E: ::serde::de::DeserializeOwned> Outcome<E> {
    /// The caller's view of an engagement the runtime ran: the exposes are typed when
    /// the engagement completed, and the full record is kept for operators only.
    pub fn from_engagement(outcome: ::agentc_runtime::EngagementOutcome) -> Self {
        let completed = matches!(
            outcome.status,
            ::agentc_runtime::EngagementStatus::Completed
        );
        let exposes = if completed {
            ::serde_json::from_value(::serde_json::Value::Object(outcome.exposes)).ok()
        } else {
            None
        };
        Outcome {
            engagement_id: outcome.engagement_id,
            status: outcome.status,
            text: outcome.text,
            exposes,
            record: outcome.engagement,
        }
    }
}

impl<E> Outcome<E> {
    /// Whether the engagement completed.
    pub fn completed(&self) -> bool {
        matches!(self.status, ::agentc_runtime::EngagementStatus::Completed)
    }

    /// The full engagement (calls, refusals, status), for operators and audits; never
    /// for a remote caller, which sees only the text and the exposes.
    pub fn operator_record(&self) -> &::serde_json::Value {
        &self.record
    }
}

/// Bridges between the runtime's dynamic values and the typed structs compiled CEL reads.
/// Which helpers a set uses depends on its spec (a set whose CEL all compiles never
/// interprets).
pub mod support {
    use ::std::sync::Arc;

    use ::agentc_runtime::{Check, CheckError};

    /// A compiled check's error, which denies (OAS-C8), unless it is the compiled
    /// code's budget running out: then the interpreter behind the check answers
    /// ([`CheckError::OverCompiledBudget`]).
    pub fn denial(error: ::agentc_cel_support::CelError) -> CheckError {
        if error.is_over_compiled_budget() {
            CheckError::OverCompiledBudget
        } else {
            CheckError::Evaluation(error.message().to_string())
        }
    }

    /// A compiled selection's result as a CEL value (OAS-X1).
    pub fn cel_value<T: ::serde::Serialize>(
        value: T,
    ) -> ::std::result::Result<::agentc_cel::Value, CheckError> {
        ::serde_json::to_value(value)
            .map(|json| ::agentc_cel::value_from_json(&json))
            .map_err(|error| CheckError::Evaluation(error.to_string()))
    }

    /// An expression the CEL compiler cannot compile, run by the interpreter instead;
    /// `at` is where the spec writes it (`agent.yaml:9:18`), which a refusal names.
    pub fn interpreted(
        text: &str,
        at: Option<&str>,
    ) -> ::std::result::Result<Arc<dyn Check>, super::SetupError> {
        interpreter(text, at).map(|check| Arc::new(check) as Arc<dyn Check>)
    }

    /// The interpreter's program for an expression: the whole check where the CEL
    /// compiler cannot compile it, and behind the compiled code where it can (which
    /// then explains a refusal through it, AGX-L3).
    pub fn interpreter(
        text: &str,
        at: Option<&str>,
    ) -> ::std::result::Result<::agentc_runtime::CelCheck, super::SetupError> {
        ::agentc_runtime::CelCheck::parse(text)
            .map(|check| placed(check, at))
            .map_err(super::SetupError::Cel)
    }

    /// [`interpreted`] for an agent with definitions (AGX-D1), inlined as the
    /// compiled code has them.
    pub fn interpreted_with(
        text: &str,
        at: Option<&str>,
        definitions: &[(&str, &str)],
    ) -> ::std::result::Result<Arc<dyn Check>, super::SetupError> {
        interpreter_with(text, at, definitions).map(|check| Arc::new(check) as Arc<dyn Check>)
    }

    /// [`interpreter`] for an agent with definitions (AGX-D1).
    pub fn interpreter_with(
        text: &str,
        at: Option<&str>,
        definitions: &[(&str, &str)],
    ) -> ::std::result::Result<::agentc_runtime::CelCheck, super::SetupError> {
        let definitions = ::agentc_cel::Definitions::from_texts(definitions.iter().copied())
            .map_err(|message| {
                super::SetupError::Cel(::agentc_runtime::CheckError::Parse {
                    text: text.to_string(),
                    message,
                })
            })?;
        ::agentc_runtime::CelCheck::parse_with(text, &definitions)
            .map(|check| placed(check, at))
            .map_err(super::SetupError::Cel)
    }

    fn placed(check: ::agentc_runtime::CelCheck, at: Option<&str>) -> ::agentc_runtime::CelCheck {
        match at {
            Some(at) => check.at(at),
            None => check,
        }
    }

    /// An embedded JSON Schema.
    pub fn schema(
        tool: &'static str,
        text: &str,
    ) -> ::std::result::Result<::serde_json::Value, super::SetupError> {
        ::serde_json::from_str(text).map_err(|error| super::SetupError::Schema {
            tool,
            detail: error.to_string(),
        })
    }

    /// The JSON Schema a generated type reports (`schemars::JsonSchema`): text that
    /// `agentc build` wrote from a JSON value. Text that is not a schema gives `false`,
    /// the schema no value meets, rather than one that would accept anything.
    pub fn json_schema(text: &str) -> ::schemars::Schema {
        ::serde_json::from_str(text).unwrap_or_else(|_| ::schemars::Schema::from(false))
    }

    /// A tool's output as JSON for the runtime.
    pub fn output_json<T: ::serde::Serialize>(
        output: T,
    ) -> ::std::result::Result<::serde_json::Value, ::agentc_runtime::ToolError> {
        ::serde_json::to_value(output)
            .map_err(|error| ::agentc_runtime::ToolError::Failed(error.to_string()))
    }
}

/// How a hosted agent reaches the remote agents (`oagent://host/path/name`, OAS-N3) it
/// uses as capabilities: the limits of every remote call and, by capability name, an
/// endpoint that replaces the URL the reference resolves to (OAS-N5), for a staging
/// server or a loopback test double. The credential a remote agent is given is the
/// capability's static identity from the runtime's credential provider (OAS-C4), as for
/// any other capability.
#[derive(Debug, Clone, Default)]
pub struct RemoteAgents {
    limits: ::agentc_runtime::RemoteLimits,
    endpoints: ::std::collections::BTreeMap<::std::string::String, ::std::string::String>,
}

impl RemoteAgents {
    /// HTTPS only, the runtime's default limits, every agent at the URL of its reference.
    pub fn new() -> Self {
        RemoteAgents::default()
    }

    /// The limits every remote call runs under (`allow_loopback_http` for tests).
    pub fn with_limits(mut self, limits: ::agentc_runtime::RemoteLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reaches the remote agent of capability `capability` at `https_url` instead of
    /// the URL its reference resolves to. The URL must still be HTTPS (or loopback HTTP
    /// when the limits allow it), and a name that is not a remote capability of the
    /// hosted agents is a setup error, so a misspelt override cannot go unnoticed.
    pub fn with_endpoint(mut self, capability: &str, https_url: &str) -> Self {
        self.endpoints
            .insert(capability.to_string(), https_url.to_string());
        self
    }

    /// The limits every remote call runs under.
    pub fn limits(&self) -> &::agentc_runtime::RemoteLimits {
        &self.limits
    }
}

/// Assembling the runtime of a hosted agent from the parts generated per agent. It is
/// written once here rather than in every generated crate, so that a generated crate
/// holds its spec as data and only the glue that names its own traits.
pub mod hosting {
    use ::std::collections::BTreeMap;
    use ::std::sync::Arc;

    use ::agentc_runtime::{
        AgentSpec, RemoteAgentTool, Runtime, ToolBackend, ToolError, ToolRegistry, ToolSpec,
        spec::CapabilityKind,
    };

    use super::{RemoteAgents, SetupError};

    /// One agent's share of a hosted agent's runtime: its spec, the schemas of its
    /// capabilities and guardrail tools, and the host's backends for its tools (agents
    /// and remote agents used as capabilities have none: the runtime runs them).
    pub struct AgentParts {
        /// The runtime's view of the agent.
        pub spec: AgentSpec,
        /// The schema of every capability and guardrail tool of the agent.
        pub tools: Vec<ToolSpec>,
        /// The host's backend for each of the agent's tools, by tool name.
        pub backends: Vec<(&'static str, Arc<dyn ToolBackend>)>,
    }

    impl ::std::fmt::Debug for AgentParts {
        fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
            formatter
                .debug_struct("AgentParts")
                .field("agent", &self.spec.name)
                .field(
                    "tools",
                    &self.tools.iter().map(|tool| &tool.name).collect::<Vec<_>>(),
                )
                .field(
                    "backends",
                    &self
                        .backends
                        .iter()
                        .map(|(name, _)| name)
                        .collect::<Vec<_>>(),
                )
                .finish()
        }
    }

    /// The runtime of the hosted agent `parts[0]`, which calls the other agents of
    /// `parts` (every agent it reaches through agent capabilities) as nested engagements
    /// on that same runtime (Reading: an agent as a tool): one tool registry holds the
    /// schemas and the host's backends of all of them, agent capabilities are left
    /// without a backend so that the runtime runs the callee's engagement, and every
    /// remote agent capability is bound to a [`RemoteAgentTool`].
    ///
    /// The registry is keyed by tool name, and a tool that several of these agents
    /// declare (one tool document, one schema) is bound to a [`PerAgentTool`], which
    /// serves each call with the host's method of the calling agent (the runtime names
    /// it in the call's context). The identity, credential, restrictions and review of
    /// each call are those of the calling agent's capability, chosen by the runtime.
    pub fn assemble(
        parts: Vec<AgentParts>,
        audit: Arc<::agentc_runtime::AuditLog>,
        remote: &RemoteAgents,
    ) -> ::std::result::Result<(AgentSpec, Runtime), SetupError> {
        let mut specs: Vec<ToolSpec> = Vec::new();
        for part in &parts {
            for tool in &part.tools {
                if !specs.iter().any(|known| known.name == tool.name) {
                    specs.push(tool.clone());
                }
            }
        }
        let mut registry = ToolRegistry::new(&specs).map_err(SetupError::Tool)?;
        // Each tool name with the host's backend of every agent that declares it, in
        // `parts` order.
        let mut by_tool: BTreeMap<&'static str, Vec<AgentBackend>> = BTreeMap::new();
        for part in &parts {
            for (name, backend) in &part.backends {
                by_tool
                    .entry(name)
                    .or_default()
                    .push((part.spec.name.clone(), Arc::clone(backend)));
            }
        }
        for (name, mut backends) in by_tool {
            let backend: Arc<dyn ToolBackend> = match backends.len() {
                1 => match backends.pop() {
                    Some((_, backend)) => backend,
                    None => continue,
                },
                _ => Arc::new(PerAgentTool {
                    tool: name,
                    backends,
                }),
            };
            registry.bind(name, backend).map_err(SetupError::Tool)?;
        }
        bind_remote_agents(&mut registry, &parts, remote)?;
        let mut specs = parts.into_iter().map(|part| part.spec);
        let Some(hosted) = specs.next() else {
            return Err(SetupError::Tool(ToolError::NoBackend(
                "no agent to host".to_string(),
            )));
        };
        let callees: Vec<AgentSpec> = specs.collect();
        let runtime = Runtime::new(registry, audit).with_agents(&callees);
        Ok((hosted, runtime))
    }

    /// A tool that several agents of one hosted set declare, each with its own method
    /// on its host trait: a call is served by the backend of the agent that makes it,
    /// as named by the runtime in the call's context. A call from any other agent is
    /// refused (fail closed) rather than served by someone else's implementation.
    pub struct PerAgentTool {
        tool: &'static str,
        backends: Vec<AgentBackend>,
    }

    /// An agent's name and the host's backend for one of its tools.
    type AgentBackend = (String, Arc<dyn ToolBackend>);

    #[::async_trait::async_trait]
    impl ToolBackend for PerAgentTool {
        async fn invoke(
            &self,
            input: &::serde_json::Value,
            context: &::agentc_runtime::ToolContext,
        ) -> ::std::result::Result<::serde_json::Value, ToolError> {
            match self
                .backends
                .iter()
                .find(|(agent, _)| agent.as_str() == &*context.agent)
            {
                Some((_, backend)) => backend.invoke(input, context).await,
                None => Err(ToolError::NoBackend(format!(
                    "{} (agent `{}` has no implementation of it here)",
                    self.tool, context.agent
                ))),
            }
        }
    }

    fn bind_remote_agents(
        registry: &mut ToolRegistry,
        parts: &[AgentParts],
        remote: &RemoteAgents,
    ) -> ::std::result::Result<(), SetupError> {
        let mut bound: Vec<(&str, &str)> = Vec::new();
        let mut client = None;
        for part in parts {
            for capability in &part.spec.capabilities {
                let CapabilityKind::RemoteAgent { url } = &capability.kind else {
                    continue;
                };
                let name = capability.name.as_str();
                if let Some((_, other)) = bound.iter().find(|(known, _)| *known == name) {
                    if *other != url.as_str() {
                        return Err(SetupError::Tool(ToolError::InvalidBinding {
                            tool: name.to_string(),
                            detail: format!("two remote agents share the name: {other} and {url}"),
                        }));
                    }
                    continue;
                }
                let endpoint = remote.endpoints.get(name).unwrap_or(url);
                let client = match &client {
                    Some(client) => ::std::clone::Clone::clone(client),
                    None => {
                        let built = ::agentc_runtime::http_client().map_err(SetupError::Tool)?;
                        client = Some(built.clone());
                        built
                    }
                };
                let tool = RemoteAgentTool::new(client, name, endpoint, remote.limits)
                    .map_err(SetupError::Tool)?;
                registry
                    .bind(name, Arc::new(tool))
                    .map_err(SetupError::Tool)?;
                bound.push((name, url.as_str()));
            }
        }
        if let Some(unknown) = remote
            .endpoints
            .keys()
            .find(|name| !bound.iter().any(|(known, _)| known == name))
        {
            return Err(SetupError::Tool(ToolError::InvalidBinding {
                tool: unknown.clone(),
                detail: "an endpoint was given for a name that is not a remote agent capability of the hosted agents".to_string(),
            }));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used, clippy::expect_used)]

        use super::*;
        use ::agentc_runtime::{Identity, MockTool, ToolContext};

        fn context(agent: &str) -> ToolContext {
            ToolContext {
                engagement: "e-1".into(),
                agent: agent.into(),
                identity: Identity::Anonymous,
                credential: None,
                idempotency_key: None,
            }
        }

        #[tokio::test]
        async fn a_shared_tool_serves_each_agent_with_its_own_backend_and_refuses_others() {
            let first = MockTool::new(::serde_json::json!({"from": "first"}));
            let second = MockTool::new(::serde_json::json!({"from": "second"}));
            let tool = PerAgentTool {
                tool: "find_record",
                backends: vec![
                    ("first".to_string(), Arc::new(first.clone())),
                    ("second".to_string(), Arc::new(second.clone())),
                ],
            };
            let input = ::serde_json::json!({});
            let output = tool.invoke(&input, &context("second")).await.unwrap();
            assert_eq!(output, ::serde_json::json!({"from": "second"}));
            assert_eq!((first.calls(), second.calls()), (0, 1));
            // An agent with no implementation here is refused, not served by another's.
            let refused = tool.invoke(&input, &context("third")).await;
            assert!(
                matches!(refused, Err(ToolError::NoBackend(_))),
                "{refused:?}"
            );
            assert_eq!((first.calls(), second.calls()), (0, 1));
        }
    }
}
