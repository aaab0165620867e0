//! The agent IR: what code generation reads, lowered once from a checked set so that the
//! emitter never looks at spans, YAML or resolution tables.

use std::collections::BTreeMap;

use agentc_cel::engagement::{AssertionSite, CapabilityTypes, engagement_env};
use agentc_cel::{FieldType, ObjectType, Type, type_from_json_schema};
use agentc_compiler::CheckedSet;
use agentc_compiler::check::{CapabilityTarget, is_remote_source_name};
use agentc_compiler::documents::Document;
use agentc_compiler::documents::agent::{AgentDocument, Restriction};
use agentc_compiler::documents::tool::ToolDocument;

/// A tool document of the set.
#[derive(Debug, Clone)]
pub struct ToolIr {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
    pub input: Type,
    pub output: Type,
}

/// What a capability key resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetIr {
    /// Index into [`SetIr::tools`].
    Tool(usize),
    /// Index into [`SetIr::agents`].
    Agent(usize),
    /// An agent on another server.
    Remote { url: String },
}

/// A CEL expression of a rule: its text, and where it is written (`file:line:column`,
/// the file's base name), which a refusal reason names (AGX-L3).
#[derive(Debug, Clone)]
pub struct CelIr {
    pub text: String,
    pub at: Option<String>,
}

impl CelIr {
    fn new(set: &CheckedSet, cel: &agentc_compiler::lower::CelText) -> Self {
        CelIr {
            text: cel.text.clone(),
            at: set.place(cel.span).map(|place| place.with_base_name()),
        }
    }
}

/// A restriction: its reviewer and assertion.
#[derive(Debug, Clone, Default)]
pub struct RestrictionIr {
    pub require_review: Option<String>,
    pub assertion: Option<CelIr>,
    /// AGX-V1: when the reviewer is asked.
    pub review_when: Option<CelIr>,
    /// AGX-S1: the candidate restriction run beside this one in observe-only mode
    /// (interpreted in generated crates: it decides nothing, so it is not compiled).
    pub shadow: Option<Box<RestrictionIr>>,
}

/// One capability of an agent.
#[derive(Debug, Clone)]
pub struct CapabilityIr {
    /// The name under `recent.` and `history.`.
    pub name: String,
    pub target: TargetIr,
    pub collect_results: bool,
    pub user_identity: bool,
    pub static_identity: Option<String>,
    pub input_restriction: Option<RestrictionIr>,
    pub output_restriction: Option<RestrictionIr>,
}

/// A guardrail: the index of its tool and its assertion.
#[derive(Debug, Clone)]
pub struct GuardrailIr {
    pub tool: usize,
    pub assertion: CelIr,
}

/// An agent hosted by the generated code.
#[derive(Debug, Clone)]
pub struct AgentIr {
    pub name: String,
    pub description: String,
    pub intent: String,
    pub owner: String,
    /// The agent document's text, as written (OAS-S1).
    pub document: String,
    pub capabilities: Vec<CapabilityIr>,
    pub input_guardrail: Option<GuardrailIr>,
    pub output_guardrail: Option<GuardrailIr>,
    /// Key and CEL text, in document order.
    pub exposes: Vec<(String, String)>,
    /// AGX-D1: each definition's key and CEL text, in document order.
    pub definitions: Vec<(String, String)>,
    /// The CEL type of each exposes key, as the checker types it.
    pub exposes_type: ObjectType,
    pub retain_memory: bool,
    pub short_circuit: Option<u64>,
    /// AGX-L1: `lifespan.max_calls_per_turn`, when the spec gives it.
    pub max_calls_per_turn: Option<u64>,
    /// AGX-L2: `lifespan.max_calls`, when the spec gives it.
    pub max_calls: Option<u64>,
    /// AGX-L3: `lifespan.stop_on_refusal` (default false).
    pub stop_on_refusal: bool,
    /// The CEL types of the capabilities, in document order.
    pub capability_types: Vec<CapabilityTypes>,
    /// Fetched from another server (`--fetch-remote`): typed, never hosted here.
    pub remote: bool,
}

/// The whole set, ready to emit.
#[derive(Debug, Clone)]
pub struct SetIr {
    pub tools: Vec<ToolIr>,
    pub agents: Vec<AgentIr>,
    /// The set's file names, in input order.
    pub files: Vec<String>,
}

impl SetIr {
    /// The agents that the generated code hosts (fetched remote documents only type
    /// their callers).
    pub fn hosted(&self) -> impl Iterator<Item = &AgentIr> {
        self.agents.iter().filter(|agent| !agent.remote)
    }
}

fn restriction(set: &CheckedSet, restriction: Option<&Restriction>) -> Option<RestrictionIr> {
    restriction.map(|restriction| RestrictionIr {
        require_review: restriction
            .require_review
            .as_ref()
            .map(|reviewer| reviewer.value.clone()),
        assertion: restriction
            .assertion
            .as_ref()
            .map(|assertion| CelIr::new(set, assertion)),
        review_when: restriction
            .review_when
            .as_ref()
            .map(|condition| CelIr::new(set, condition)),
        shadow: restriction.shadow.as_ref().map(|shadow| {
            Box::new(RestrictionIr {
                require_review: shadow
                    .require_review
                    .as_ref()
                    .map(|reviewer| reviewer.value.clone()),
                assertion: shadow
                    .assertion
                    .as_ref()
                    .map(|assertion| CelIr::new(set, assertion)),
                review_when: shadow
                    .review_when
                    .as_ref()
                    .map(|condition| CelIr::new(set, condition)),
                shadow: None,
            })
        }),
    })
}

/// The input of an agent used as a capability (Reading: an agent as a tool).
pub fn agent_input_type() -> Type {
    object(
        "agent.input",
        [("text".to_string(), Type::String)].into(),
        false,
    )
}

/// The output of an agent used as a capability: `text` and its exposes; open when the
/// exposes are unknown (a remote agent that was not fetched).
pub fn agent_output_type(exposes: Option<&ObjectType>) -> Type {
    let mut fields: BTreeMap<String, Type> = BTreeMap::new();
    if let Some(exposes) = exposes {
        for (key, field) in &exposes.fields {
            fields.insert(key.clone(), field.ty.clone());
        }
    }
    fields.insert("text".to_string(), Type::String);
    object("agent.output", fields, exposes.is_none())
}

fn object(name: &str, fields: BTreeMap<String, Type>, open: bool) -> Type {
    Type::Object(ObjectType {
        name: name.to_string(),
        fields: fields
            .into_iter()
            .map(|(key, ty)| (key, FieldType::new(ty, true)))
            .collect(),
        open,
    })
}

/// Lowers a checked set without errors. Agents are typed callee first, as the checker
/// does, because a caller's assertions read its callees' exposes.
pub fn lower(set: &CheckedSet) -> Result<SetIr, String> {
    let mut tool_documents: Vec<&ToolDocument> = Vec::new();
    let mut agent_documents: Vec<(&AgentDocument, usize)> = Vec::new();
    for loaded in &set.documents {
        match &loaded.document {
            Document::Tool(tool) => tool_documents.push(tool),
            Document::Agent(agent) => agent_documents.push((agent, loaded.file.0 as usize)),
            _ => {}
        }
    }
    let tools: Vec<ToolIr> = tool_documents
        .iter()
        .map(|tool| ToolIr {
            name: tool.name.value.clone(),
            description: tool.description.value.clone(),
            input_schema: tool.input.value.clone(),
            output_schema: tool.output.value.clone(),
            input: type_from_json_schema(&tool.input.value),
            output: type_from_json_schema(&tool.output.value),
        })
        .collect();

    let mut agents = Vec::new();
    for (index, (agent, file)) in agent_documents.iter().enumerate() {
        let name = agent.name.value.clone();
        let targets = set.resolution.capability_targets.get(index);
        let remote = set
            .names
            .get(*file)
            .is_some_and(|file_name| is_remote_source_name(file_name));
        let mut capabilities = Vec::new();
        if let Some(map) = &agent.capabilities {
            for (position, (key, capability)) in map.iter().enumerate() {
                let Some(Some((reference, target))) =
                    targets.and_then(|targets| targets.get(position))
                else {
                    if remote {
                        continue;
                    }
                    return Err(format!(
                        "capability `{}` of agent `{name}` does not resolve",
                        key.value
                    ));
                };
                capabilities.push(CapabilityIr {
                    name: reference.name().to_string(),
                    target: match target {
                        CapabilityTarget::Tool(tool) => TargetIr::Tool(*tool),
                        CapabilityTarget::Agent(callee) => TargetIr::Agent(*callee),
                        CapabilityTarget::Remote { url } => TargetIr::Remote { url: url.clone() },
                    },
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
                        .map(|identity| identity.value.clone()),
                    input_restriction: restriction(set, capability.input_restriction.as_ref()),
                    output_restriction: restriction(set, capability.output_restriction.as_ref()),
                });
            }
        }
        let guardrail = |guardrail: Option<&agentc_compiler::documents::agent::Guardrail>| {
            guardrail.and_then(|guardrail| {
                tools
                    .iter()
                    .position(|tool| tool.name == guardrail.tool_name.value)
                    .map(|tool| GuardrailIr {
                        tool,
                        assertion: CelIr::new(set, &guardrail.assertion),
                    })
            })
        };
        let guardrails = agent.guardrails.as_ref();
        let text = set.texts.get(*file).map(String::as_str).unwrap_or_default();
        let document = text
            .get(agent.span.start..agent.span.end)
            .unwrap_or(text)
            .trim_end()
            .to_string();
        let lifespan = agent.lifespan.as_ref();
        agents.push(AgentIr {
            name,
            description: agent.description.value.clone(),
            intent: agent.intent.value.clone(),
            owner: agent.owner.value.clone(),
            document,
            capabilities,
            input_guardrail: guardrail(guardrails.and_then(|g| g.input.as_ref())),
            output_guardrail: guardrail(guardrails.and_then(|g| g.output.as_ref())),
            exposes: agent
                .exposes
                .iter()
                .flat_map(|map| map.iter())
                .map(|(key, cel)| (key.value.clone(), cel.text.clone()))
                .collect(),
            definitions: agent
                .definitions
                .iter()
                .flat_map(|map| map.iter())
                .map(|(key, cel)| (key.value.clone(), cel.text.clone()))
                .collect(),
            exposes_type: ObjectType {
                name: String::new(),
                fields: BTreeMap::new(),
                open: false,
            },
            retain_memory: lifespan
                .and_then(|lifespan| lifespan.retain_memory.as_ref())
                .is_none_or(|flag| flag.value),
            short_circuit: lifespan
                .and_then(|lifespan| lifespan.short_circuit.as_ref())
                .map(|limit| limit.value),
            max_calls_per_turn: lifespan
                .and_then(|lifespan| lifespan.max_calls_per_turn.as_ref())
                .map(|limit| limit.value),
            max_calls: lifespan
                .and_then(|lifespan| lifespan.max_calls.as_ref())
                .map(|limit| limit.value),
            stop_on_refusal: lifespan
                .and_then(|lifespan| lifespan.stop_on_refusal.as_ref())
                .is_some_and(|flag| flag.value),
            capability_types: Vec::new(),
            remote,
        });
    }

    let mut ir = SetIr {
        tools,
        agents,
        files: set.names.clone(),
    };
    let remote_documents = set.resolution.remote_documents.clone();
    let mut state = vec![0u8; ir.agents.len()];
    for index in 0..ir.agents.len() {
        type_agent(&mut ir, index, &remote_documents, &mut state);
    }
    Ok(ir)
}

/// Types one agent's capabilities and exposes, its callees first; a cycle (a check
/// error, so never seen here) would leave the callee untyped.
fn type_agent(
    ir: &mut SetIr,
    index: usize,
    remote_documents: &BTreeMap<String, usize>,
    state: &mut Vec<u8>,
) {
    if state.get(index).copied().unwrap_or(2) != 0 {
        return;
    }
    state[index] = 1;
    let callees: Vec<usize> = ir.agents[index]
        .capabilities
        .iter()
        .filter_map(|capability| match &capability.target {
            TargetIr::Agent(callee) => Some(*callee),
            TargetIr::Remote { url } => remote_documents.get(url).copied(),
            TargetIr::Tool(_) => None,
        })
        .collect();
    for callee in callees {
        type_agent(ir, callee, remote_documents, state);
    }
    let agent = &ir.agents[index];
    let capability_types: Vec<CapabilityTypes> = agent
        .capabilities
        .iter()
        .map(|capability| {
            let (input, output) = if agent.remote {
                (Type::Dyn, Type::Dyn)
            } else {
                match &capability.target {
                    TargetIr::Tool(tool) => (
                        ir.tools[*tool].input.clone(),
                        ir.tools[*tool].output.clone(),
                    ),
                    TargetIr::Agent(callee) => (
                        agent_input_type(),
                        agent_output_type(
                            ir.agents.get(*callee).map(|callee| &callee.exposes_type),
                        ),
                    ),
                    TargetIr::Remote { url } => (
                        agent_input_type(),
                        agent_output_type(
                            remote_documents
                                .get(url)
                                .and_then(|callee| ir.agents.get(*callee))
                                .map(|callee| &callee.exposes_type),
                        ),
                    ),
                }
            };
            CapabilityTypes {
                name: capability.name.clone(),
                input,
                output,
                collects_results: capability.collect_results,
            }
        })
        .collect();
    let env = engagement_env(&capability_types, &AssertionSite::Exposes);
    let mut fields = BTreeMap::new();
    for (key, text) in &agent.exposes {
        let ty = agentc_cel::parse(text)
            .ok()
            .and_then(|expr| agentc_cel::check(&expr, &env).ok())
            .unwrap_or(Type::Dyn);
        fields.insert(key.clone(), FieldType::new(ty, true));
    }
    let exposes_type = ObjectType {
        name: format!("{}.exposes", agent.name),
        fields,
        open: false,
    };
    let agent = &mut ir.agents[index];
    agent.capability_types = capability_types;
    agent.exposes_type = exposes_type;
    state[index] = 2;
}
