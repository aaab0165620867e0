//! The runtime's own, span-free view of checked agent and tool documents. Building it
//! parses every CEL expression once, so nothing is parsed on the per-call path.

use std::collections::HashMap;
use std::sync::Arc;

use agentc_cel::Definitions;
use agentc_compiler::check::CapabilityTarget;
use agentc_compiler::documents::Document;
use agentc_compiler::documents::agent::{AgentDocument, Restriction};
use agentc_compiler::{CheckOptions, CheckedSet, SourceInput};

use crate::check::{CelCheck, Check, CheckError};

/// Why a set of documents cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The checker reported errors; a set with errors is never run.
    #[error("the documents have {0} error(s); run `agentc check` for details")]
    CheckFailed(usize),
    /// An expression did not parse.
    #[error("in agent `{agent}`, {place}: {source}")]
    Cel {
        agent: String,
        place: String,
        source: CheckError,
    },
    /// A capability reference did not resolve.
    #[error("in agent `{agent}`, capability `{capability}` does not resolve")]
    Unresolved { agent: String, capability: String },
    /// A definition (AGX-D1) did not parse or could not be added.
    #[error("in agent `{agent}`, {message}")]
    Definition { agent: String, message: String },
}

/// Who reviews a call (OAS-C7 Reading).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ReviewerRef {
    /// The engaging user.
    User,
    /// The agent's owner.
    Owner,
    /// A named user.
    NamedUser(String),
    /// Another agent, reviewing as an agent (`oagent://name`).
    Agent(String),
}

impl ReviewerRef {
    /// Reads a `require_review` value.
    pub fn parse(text: &str) -> Self {
        match text {
            "user" => ReviewerRef::User,
            "owner" => ReviewerRef::Owner,
            other => match other.strip_prefix("oagent://") {
                Some(agent) => ReviewerRef::Agent(agent.to_string()),
                None => ReviewerRef::NamedUser(other.to_string()),
            },
        }
    }
}

/// A restriction on a capability's input or output (OAS-C5..C8).
#[derive(Debug, Clone, Default)]
pub struct RestrictionSpec {
    /// Who must approve before going on (OAS-C7).
    pub require_review: Option<ReviewerRef>,
    /// The assertion over the engagement (OAS-C8).
    pub assertion: Option<Arc<dyn Check>>,
    /// AGX-V1: when the reviewer is asked. `None` asks on every call that passed the
    /// assertion; a condition asks only when it holds, and denies when it cannot be
    /// evaluated.
    pub review_when: Option<Arc<dyn Check>>,
    /// AGX-S1: a candidate version of this restriction in observe-only mode, evaluated
    /// beside it on every call; its would-be decision is audited, never enforced.
    pub shadow: Option<Box<RestrictionSpec>>,
}

impl RestrictionSpec {
    /// The restriction's checks over the engagement: its assertion and its review
    /// condition, and its shadow's (AGX-S1).
    pub fn checks(&self) -> impl Iterator<Item = &dyn Check> {
        self.own_checks()
            .chain(self.shadow.iter().flat_map(|shadow| shadow.own_checks()))
    }

    /// The restriction's own assertion and review condition, without its shadow's.
    pub fn own_checks(&self) -> impl Iterator<Item = &dyn Check> {
        [self.assertion.as_deref(), self.review_when.as_deref()]
            .into_iter()
            .flatten()
    }
}

/// What a capability key refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityKind {
    /// A tool of the set.
    Tool,
    /// An agent of the set, called like a tool with `{text}`.
    Agent,
    /// An agent on another server.
    RemoteAgent { url: String },
}

/// How an agent may use one tool or agent.
#[derive(Debug, Clone)]
pub struct CapabilitySpec {
    /// The name used under `recent.` and `history.`, and offered to the model.
    pub name: String,
    /// What the name refers to.
    pub kind: CapabilityKind,
    /// OAS-C2 (default true).
    pub collect_results: bool,
    /// OAS-C3 (default true).
    pub user_identity: bool,
    /// OAS-C4.
    pub static_identity: Option<Arc<str>>,
    /// OAS-C5.
    pub input_restriction: Option<RestrictionSpec>,
    /// OAS-C6.
    pub output_restriction: Option<RestrictionSpec>,
}

impl CapabilitySpec {
    /// A capability with the spec's defaults and no restrictions.
    pub fn new(name: &str) -> Self {
        CapabilitySpec {
            name: name.to_string(),
            kind: CapabilityKind::Tool,
            collect_results: true,
            user_identity: true,
            static_identity: None,
            input_restriction: None,
            output_restriction: None,
        }
    }
}

/// A guardrail: its tool and the assertion over that tool's output (OAS-G1..G5).
#[derive(Debug, Clone)]
pub struct GuardrailSpec {
    /// The guardrail tool.
    pub tool_name: String,
    /// Over the tool's output fields (OAS-G4).
    pub assertion: Arc<dyn Check>,
}

/// An agent, ready to run.
#[derive(Debug, Clone, Default)]
pub struct AgentSpec {
    /// OAS-A2.
    pub name: String,
    /// OAS-A3.
    pub description: String,
    /// OAS-A4; given to the model as its system message.
    pub intent: String,
    /// OAS-A5.
    pub owner: String,
    /// In document order.
    pub capabilities: Vec<CapabilitySpec>,
    /// OAS-G2.
    pub input_guardrail: Option<GuardrailSpec>,
    /// OAS-G3.
    pub output_guardrail: Option<GuardrailSpec>,
    /// OAS-X1, in document order.
    pub exposes: Vec<(String, Arc<dyn Check>)>,
    /// OAS-L1 (default true).
    pub retain_memory: bool,
    /// OAS-L2.
    pub short_circuit: Option<u64>,
    /// AGX-L1 and AGX-L2: how many tool calls a turn and the engagement may ask for.
    pub call_limits: CallLimits,
    /// AGX-L3 (`lifespan.stop_on_refusal`): whether a call refused by a restriction or
    /// a reviewer ends the engagement; by default the model is told and goes on.
    pub stop_on_refusal: bool,
}

/// How many tool calls an engagement's model may ask for (agentc extensions AGX-L1 and
/// AGX-L2, `lifespan.max_calls_per_turn` and `lifespan.max_calls`). Without them one
/// turn of 20,000 calls that never repeats a block back to back passes the short
/// circuit (OAS-L2) and costs each history-reading check time in proportion to all the
/// calls before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// The most calls one model turn may ask for; a turn asking for more ends the
    /// engagement before any of its calls runs.
    pub per_turn: u64,
    /// The most calls the engagement may ask for, allowed or refused; the next one ends
    /// the engagement.
    pub total: u64,
}

impl CallLimits {
    /// The default of `max_calls_per_turn`.
    pub const DEFAULT_PER_TURN: u64 = 64;
    /// The default of `max_calls`.
    pub const DEFAULT_TOTAL: u64 = 1_000;

    /// The limits a spec declares, with the defaults for what it leaves out.
    pub const fn new(per_turn: Option<u64>, total: Option<u64>) -> Self {
        CallLimits {
            per_turn: match per_turn {
                Some(limit) => limit,
                None => Self::DEFAULT_PER_TURN,
            },
            total: match total {
                Some(limit) => limit,
                None => Self::DEFAULT_TOTAL,
            },
        }
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl AgentSpec {
    /// Whether any restriction or `exposes` of the agent asks a provenance question
    /// (AGX-P1). Only then are outputs indexed as sources: an agent that never asks
    /// pays nothing for them on each call.
    pub fn asks_provenance(&self) -> bool {
        let restrictions = self.capabilities.iter().flat_map(|capability| {
            [
                &capability.input_restriction,
                &capability.output_restriction,
            ]
        });
        restrictions
            .flatten()
            .flat_map(RestrictionSpec::checks)
            .chain(self.exposes.iter().map(|(_, check)| check.as_ref()))
            .any(|check| check.asks_provenance())
    }

    /// The index of a declared capability; the only place the model's untrusted tool
    /// name is matched.
    pub fn capability_index(&self, name: &str) -> Option<usize> {
        self.capabilities
            .iter()
            .position(|capability| capability.name == name)
    }
}

/// A tool's interface.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// OAS-N1.
    pub name: String,
    /// Shown to the model.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
}

/// How a tool of the set is reached: its document's `binding` and `auth`. It is kept
/// apart from [`ToolSpec`] because an interface alone is enough to validate and describe
/// a call, and generated crates build interfaces without bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolBindingSpec {
    /// The tool's name.
    pub tool: String,
    /// How it is invoked.
    pub binding: ToolBinding,
    /// How it authenticates its callers.
    pub auth: AuthScheme,
    /// What a call does to the world (AGX-T2), when the document says.
    pub effect: Option<ToolEffect>,
}

/// What a tool's call does to the world (AGX-T2, the tool document's `effect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolEffect {
    /// Nothing: running the call again is safe.
    Read,
    /// It changes state the tool keeps.
    Write,
    /// It sends data out of the tool.
    Egress,
}

impl ToolBindingSpec {
    /// How a checked tool document's tool is reached (the conformance suite reads a
    /// tool document on its own, without an agent set around it).
    pub fn from_document(tool: &agentc_compiler::documents::tool::ToolDocument) -> Self {
        ToolBindingSpec {
            tool: tool.name.value.clone(),
            binding: lower_binding(&tool.binding),
            auth: lower_auth(tool.auth.as_ref()),
            effect: tool.effect.map(|effect| {
                use agentc_compiler::documents::tool::ToolEffect as Declared;
                match effect {
                    Declared::Read => ToolEffect::Read,
                    Declared::Write => ToolEffect::Write,
                    Declared::Egress => ToolEffect::Egress,
                }
            }),
        }
    }
}

/// How a tool is invoked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolBinding {
    /// No binding is declared: the interface of an agent used as a tool, or a tool built
    /// in code; its backend must be registered explicitly.
    #[default]
    Unbound,
    /// An HTTP JSON endpoint.
    Http(HttpBindingSpec),
    /// A tool on an MCP server (AGX-M1).
    Mcp(McpBindingSpec),
    /// A Rust function registered with the runtime.
    Native {
        /// The function's Rust path.
        function: String,
    },
}

/// A tool on an MCP server (AGX-M1): how to reach the server, the tool's name there,
/// and the pin of its definition (AGX-M2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpBindingSpec {
    pub transport: McpTransport,
    /// The tool's name on the server.
    pub tool: String,
    /// `sha256:…` of the tool's definition when it was imported; `None` when unpinned.
    pub pin: Option<String>,
    /// The per-call deadline in milliseconds, when the binding names one.
    pub timeout_ms: Option<u64>,
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum McpTransport {
    /// Streamable HTTP at this URL.
    Http { url: String },
    /// A program started by the runtime, speaking MCP on its stdin and stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// The variables set for it, in the document's order.
        env: Vec<(String, String)>,
    },
}

/// An HTTP JSON endpoint: the input is the JSON body (the query string for GET), the
/// output is the JSON response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBindingSpec {
    /// The request method.
    pub method: HttpMethod,
    /// The absolute `http://` or `https://` URL.
    pub url: String,
    /// The per-call timeout in milliseconds; 30 000 when absent.
    pub timeout_ms: Option<u64>,
    /// The header that carries each call's idempotency key (AGX-T2), when the tool
    /// takes one.
    pub idempotency_header: Option<String>,
}

/// The HTTP methods a binding may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl HttpMethod {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether repeating the request has the same effect as sending it once, which is
    /// the only case in which a failed attempt may be retried.
    pub fn is_idempotent(self) -> bool {
        matches!(self, HttpMethod::Get | HttpMethod::Put | HttpMethod::Delete)
    }
}

/// How a tool authenticates its callers; the secret itself comes from the runtime's
/// credential provider and is never part of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthScheme {
    /// No credential is sent.
    #[default]
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// The secret in a header of its own.
    ApiKey {
        /// The header's name (`X-Api-Key` unless the document names another).
        header: String,
    },
    /// `Authorization: Basic`, the secret being `user:password`.
    Basic,
    /// An OAuth 2 access token, supplied by the credential provider and sent as a
    /// bearer token.
    OAuth2,
}

fn lower_binding(binding: &agentc_compiler::documents::tool::Binding) -> ToolBinding {
    use agentc_compiler::documents::tool::HttpMethod as Method;
    if let Some(http) = &binding.http {
        return ToolBinding::Http(HttpBindingSpec {
            method: match http.method {
                Method::Get => HttpMethod::Get,
                Method::Post => HttpMethod::Post,
                Method::Put => HttpMethod::Put,
                Method::Patch => HttpMethod::Patch,
                Method::Delete => HttpMethod::Delete,
            },
            url: http.url.value.clone(),
            timeout_ms: http.timeout_ms.as_ref().map(|timeout| timeout.value),
            idempotency_header: http
                .idempotency_header
                .as_ref()
                .map(|header| header.value.clone()),
        });
    }
    if let Some(mcp) = &binding.mcp {
        // The checker has made sure exactly one of `server` and `command` is given;
        // with `server` absent, `command` is the transport.
        let transport = match (&mcp.server, &mcp.command) {
            (Some(server), _) => McpTransport::Http {
                url: server.value.clone(),
            },
            (None, command) => McpTransport::Stdio {
                command: command
                    .as_ref()
                    .map(|command| command.value.clone())
                    .unwrap_or_default(),
                args: mcp
                    .args
                    .iter()
                    .flatten()
                    .map(|arg| arg.value.clone())
                    .collect(),
                env: mcp
                    .env
                    .iter()
                    .flat_map(|env| env.entries.iter())
                    .map(|(key, value)| (key.value.clone(), value.value.clone()))
                    .collect(),
            },
        };
        return ToolBinding::Mcp(McpBindingSpec {
            transport,
            tool: mcp.tool.value.clone(),
            pin: mcp.pin.as_ref().map(|pin| pin.value.clone()),
            timeout_ms: mcp.timeout_ms.as_ref().map(|timeout| timeout.value),
        });
    }
    if let Some(native) = &binding.native {
        return ToolBinding::Native {
            function: native.function.value.clone(),
        };
    }
    ToolBinding::Unbound
}

fn lower_auth(auth: Option<&agentc_compiler::documents::tool::ToolAuth>) -> AuthScheme {
    use agentc_compiler::documents::tool::AuthScheme as Scheme;
    let Some(auth) = auth else {
        return AuthScheme::None;
    };
    match auth.scheme {
        Scheme::None => AuthScheme::None,
        Scheme::Bearer => AuthScheme::Bearer,
        Scheme::ApiKey => AuthScheme::ApiKey {
            header: auth
                .header
                .as_ref()
                .map_or_else(|| "X-Api-Key".to_string(), |header| header.value.clone()),
        },
        Scheme::Basic => AuthScheme::Basic,
        Scheme::Oauth2 => AuthScheme::OAuth2,
    }
}

/// The agents and tools of a checked set of documents.
#[derive(Debug, Clone, Default)]
pub struct SpecSet {
    /// The agents.
    pub agents: Vec<AgentSpec>,
    /// The tools, including the interface of every agent that is used as a capability.
    pub tools: Vec<ToolSpec>,
    /// How each tool document's tool is reached, in document order.
    pub bindings: Vec<ToolBindingSpec>,
}

impl SpecSet {
    /// Checks and loads YAML sources.
    pub fn from_sources(inputs: &[SourceInput]) -> Result<Self, SpecError> {
        Self::from_checked_set(&agentc_compiler::check_set(
            inputs,
            &CheckOptions::default(),
        ))
    }

    /// Loads a checked set; a set with any error is refused.
    pub fn from_checked_set(set: &CheckedSet) -> Result<Self, SpecError> {
        let errors = set.error_count();
        if errors > 0 {
            return Err(SpecError::CheckFailed(errors));
        }
        let mut agents = Vec::new();
        let mut tools = Vec::new();
        let mut bindings = Vec::new();
        let mut agent_docs = Vec::new();
        for loaded in &set.documents {
            match &loaded.document {
                Document::Agent(agent) => agent_docs.push(agent),
                Document::Tool(tool) => {
                    tools.push(ToolSpec {
                        name: tool.name.value.clone(),
                        description: tool.description.value.clone(),
                        input_schema: tool.input.value.clone(),
                        output_schema: tool.output.value.clone(),
                    });
                    bindings.push(ToolBindingSpec::from_document(tool));
                }
                _ => {}
            }
        }
        for (index, agent) in agent_docs.iter().enumerate() {
            let targets = set.resolution.capability_targets.get(index);
            agents.push(lower_agent(agent, targets.map(Vec::as_slice), set)?);
        }
        // An agent used as a capability is called like a tool with `{text}` (Reading: an
        // agent as a tool), so its interface is added beside the tools.
        let mut agent_tools: HashMap<String, ToolSpec> = HashMap::new();
        for agent in &agents {
            for capability in &agent.capabilities {
                // A remote agent is called the same way (OAS-S3), so it has the same
                // interface; its exposes are whatever its server returns beside `text`.
                let called_like_a_tool = matches!(
                    capability.kind,
                    CapabilityKind::Agent | CapabilityKind::RemoteAgent { .. }
                );
                if called_like_a_tool && !tools.iter().any(|tool| tool.name == capability.name) {
                    agent_tools
                        .entry(capability.name.clone())
                        .or_insert_with(|| agent_tool_spec(&capability.name, &agents));
                }
            }
        }
        tools.extend(agent_tools.into_values());
        Ok(SpecSet {
            agents,
            tools,
            bindings,
        })
    }

    /// An agent by name.
    pub fn agent(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|agent| agent.name == name)
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|tool| tool.name == name)
    }
}

fn agent_tool_spec(name: &str, agents: &[AgentSpec]) -> ToolSpec {
    let description = agents
        .iter()
        .find(|agent| agent.name == name)
        .map(|agent| agent.description.clone())
        .unwrap_or_default();
    ToolSpec {
        name: name.to_string(),
        description,
        input_schema: serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }),
        output_schema: serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }),
    }
}

fn parse_cel(
    agent: &str,
    place: String,
    cel: &agentc_compiler::lower::CelText,
    definitions: &Definitions,
    files: &CheckedSet,
) -> Result<Arc<dyn Check>, SpecError> {
    CelCheck::parse_with(&cel.text, definitions)
        .map(|check| match files.place(cel.span) {
            Some(place) => check.at(&place.to_string()),
            None => check,
        })
        .map(|check| Arc::new(check) as Arc<dyn Check>)
        .map_err(|source| SpecError::Cel {
            agent: agent.to_string(),
            place,
            source,
        })
}

fn lower_restriction(
    agent: &str,
    capability: &str,
    which: &str,
    restriction: &Restriction,
    definitions: &Definitions,
    files: &CheckedSet,
) -> Result<RestrictionSpec, SpecError> {
    let mut lowered = lower_restriction_parts(
        agent,
        capability,
        which,
        RestrictionParts {
            require_review: restriction.require_review.as_ref(),
            assertion: restriction.assertion.as_ref(),
            review_when: restriction.review_when.as_ref(),
        },
        definitions,
        files,
    )?;
    if let Some(shadow) = &restriction.shadow {
        lowered.shadow = Some(Box::new(lower_restriction_parts(
            agent,
            capability,
            &format!("{which} shadow"),
            RestrictionParts {
                require_review: shadow.require_review.as_ref(),
                assertion: shadow.assertion.as_ref(),
                review_when: shadow.review_when.as_ref(),
            },
            definitions,
            files,
        )?));
    }
    Ok(lowered)
}

/// The parts an enforced restriction and its shadow (AGX-S1) share.
struct RestrictionParts<'a> {
    require_review: Option<&'a agentc_compiler::span::Spanned<String>>,
    assertion: Option<&'a agentc_compiler::lower::CelText>,
    review_when: Option<&'a agentc_compiler::lower::CelText>,
}

fn lower_restriction_parts(
    agent: &str,
    capability: &str,
    which: &str,
    restriction: RestrictionParts<'_>,
    definitions: &Definitions,
    files: &CheckedSet,
) -> Result<RestrictionSpec, SpecError> {
    let assertion = match restriction.assertion {
        Some(cel) => Some(parse_cel(
            agent,
            format!("the {which} restriction of `{capability}`"),
            cel,
            definitions,
            files,
        )?),
        None => None,
    };
    let review_when = match restriction.review_when {
        Some(cel) => Some(parse_cel(
            agent,
            format!("the {which} restriction's `review_when` of `{capability}`"),
            cel,
            definitions,
            files,
        )?),
        None => None,
    };
    Ok(RestrictionSpec {
        require_review: restriction
            .require_review
            .map(|reviewer| ReviewerRef::parse(&reviewer.value)),
        assertion,
        review_when,
        shadow: None,
    })
}

fn lower_agent(
    agent: &AgentDocument,
    targets: Option<&[Option<(agentc_compiler::names::Reference, CapabilityTarget)>]>,
    files: &CheckedSet,
) -> Result<AgentSpec, SpecError> {
    let name = agent.name.value.clone();
    let definitions = match &agent.definitions {
        Some(map) => Definitions::from_texts(
            map.iter()
                .map(|(key, cel)| (key.value.as_str(), cel.text.as_str())),
        )
        .map_err(|message| SpecError::Definition {
            agent: name.clone(),
            message,
        })?,
        None => Definitions::new(),
    };
    let mut capabilities = Vec::new();
    if let Some(map) = &agent.capabilities {
        for (position, (key, capability)) in map.iter().enumerate() {
            let target = targets.and_then(|targets| targets.get(position)).cloned();
            let Some(Some((reference, target))) = target else {
                return Err(SpecError::Unresolved {
                    agent: name,
                    capability: key.value.clone(),
                });
            };
            let capability_name = reference.name().to_string();
            let kind = match target {
                CapabilityTarget::Tool(_) => CapabilityKind::Tool,
                CapabilityTarget::Agent(_) => CapabilityKind::Agent,
                CapabilityTarget::Remote { url } => CapabilityKind::RemoteAgent { url },
            };
            let input_restriction = match &capability.input_restriction {
                Some(restriction) => Some(lower_restriction(
                    &name,
                    &capability_name,
                    "input",
                    restriction,
                    &definitions,
                    files,
                )?),
                None => None,
            };
            let output_restriction = match &capability.output_restriction {
                Some(restriction) => Some(lower_restriction(
                    &name,
                    &capability_name,
                    "output",
                    restriction,
                    &definitions,
                    files,
                )?),
                None => None,
            };
            capabilities.push(CapabilitySpec {
                name: capability_name,
                kind,
                collect_results: capability
                    .collect_results
                    .as_ref()
                    .is_none_or(|flag| flag.value),
                user_identity: capability
                    .user_identity
                    .as_ref()
                    .is_none_or(|flag| flag.value),
                static_identity: capability
                    .static_identity
                    .as_ref()
                    .map(|identity| Arc::from(identity.value.as_str())),
                input_restriction,
                output_restriction,
            });
        }
    }
    let mut input_guardrail = None;
    let mut output_guardrail = None;
    if let Some(guardrails) = &agent.guardrails {
        if let Some(guardrail) = &guardrails.input {
            input_guardrail = Some(GuardrailSpec {
                tool_name: guardrail.tool_name.value.clone(),
                assertion: parse_cel(
                    &name,
                    "the input guardrail".to_string(),
                    &guardrail.assertion,
                    &Definitions::new(),
                    files,
                )?,
            });
        }
        if let Some(guardrail) = &guardrails.output {
            output_guardrail = Some(GuardrailSpec {
                tool_name: guardrail.tool_name.value.clone(),
                assertion: parse_cel(
                    &name,
                    "the output guardrail".to_string(),
                    &guardrail.assertion,
                    &Definitions::new(),
                    files,
                )?,
            });
        }
    }
    let mut exposes = Vec::new();
    if let Some(map) = &agent.exposes {
        for (key, cel) in map.iter() {
            exposes.push((
                key.value.clone(),
                parse_cel(
                    &name,
                    format!("exposes `{}`", key.value),
                    cel,
                    &definitions,
                    files,
                )?,
            ));
        }
    }
    let lifespan = agent.lifespan.as_ref();
    Ok(AgentSpec {
        description: agent.description.value.clone(),
        intent: agent.intent.value.clone(),
        owner: agent.owner.value.clone(),
        capabilities,
        input_guardrail,
        output_guardrail,
        exposes,
        retain_memory: lifespan
            .and_then(|lifespan| lifespan.retain_memory.as_ref())
            .is_none_or(|flag| flag.value),
        short_circuit: lifespan
            .and_then(|lifespan| lifespan.short_circuit.as_ref())
            .map(|limit| limit.value),
        call_limits: CallLimits::new(
            lifespan
                .and_then(|lifespan| lifespan.max_calls_per_turn.as_ref())
                .map(|limit| limit.value),
            lifespan
                .and_then(|lifespan| lifespan.max_calls.as_ref())
                .map(|limit| limit.value),
        ),
        stop_on_refusal: lifespan
            .and_then(|lifespan| lifespan.stop_on_refusal.as_ref())
            .is_some_and(|flag| flag.value),
        name,
    })
}
