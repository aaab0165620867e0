//! The engagement driver: one task, from the user's input to the agent's answer, with
//! the guardrails, the model loop, the enforced tool calls and `exposes` at the yield.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::audit::AuditLog;
use crate::credentials::{CredentialProvider, InMemoryCredentials};
use crate::enforce::{
    CallOutcome, Caller, Refusal, enforce_call_as, evaluate_exposes, run_guardrail,
};
use crate::engagement::{Engagement, EngagementStatus, FailureReason, UserIdentity, now};
use crate::model::{Message, Model, ModelTurn, ToolDescription};
use crate::review::{Reviewer, StaticReviewer};
use crate::spec::AgentSpec;
use crate::tools::ToolRegistry;

/// The services an engagement runs with.
pub struct Runtime {
    /// The tools, with their schemas and backends.
    pub tools: ToolRegistry,
    /// Who answers review requests (OAS-C7).
    pub reviewer: Arc<dyn Reviewer>,
    /// Where credentials come from (OAS-C3/C4).
    pub credentials: Arc<dyn CredentialProvider>,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    /// How long a reviewer may take before the call is refused.
    pub review_timeout: Duration,
    /// How long a tool may take before the call is refused.
    pub tool_timeout: Duration,
    /// The most model turns one engagement may take, so that a model that keeps calling
    /// refused tools cannot loop for ever.
    pub max_turns: usize,
    /// The agents a capability may call as tools, by name (Reading: an agent as a tool);
    /// a called agent runs as a nested engagement on this same runtime.
    pub agents: HashMap<String, Arc<AgentSpec>>,
    /// The model a called agent runs on, by agent name; an agent without one runs on its
    /// caller's model.
    pub agent_models: HashMap<String, Arc<dyn Model>>,
    /// How deep agents may call agents, so that a cycle of agents cannot recurse for ever.
    pub max_agent_depth: usize,
    /// How long a called agent's whole engagement may take before the call is refused.
    pub agent_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Runtime")
            .field("tools", &self.tools)
            .field("review_timeout", &self.review_timeout)
            .field("tool_timeout", &self.tool_timeout)
            .field("max_turns", &self.max_turns)
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field(
                "agent_models",
                &self.agent_models.keys().collect::<Vec<_>>(),
            )
            .field("max_agent_depth", &self.max_agent_depth)
            .field("agent_timeout", &self.agent_timeout)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime whose reviewer refuses everything and which has no credentials, so that
    /// anything not configured explicitly is denied.
    pub fn new(tools: ToolRegistry) -> Self {
        Runtime {
            tools,
            reviewer: Arc::new(StaticReviewer::refusing()),
            credentials: Arc::new(InMemoryCredentials::new()),
            audit: Arc::new(AuditLog::sink()),
            review_timeout: Duration::from_secs(300),
            tool_timeout: Duration::from_secs(30),
            max_turns: 32,
            agents: HashMap::new(),
            agent_models: HashMap::new(),
            max_agent_depth: DEFAULT_MAX_AGENT_DEPTH,
            agent_timeout: Duration::from_secs(600),
        }
    }

    /// Makes `agents` callable as tools by the agents that declare them as capabilities.
    pub fn with_agents(mut self, agents: &[AgentSpec]) -> Self {
        for agent in agents {
            self.agents
                .insert(agent.name.clone(), Arc::new(agent.clone()));
        }
        self
    }
}

/// How many agents deep a chain of agents calling agents may go by default.
pub const DEFAULT_MAX_AGENT_DEPTH: usize = 4;

/// The model context carried between engagements when `retain_memory` allows it (OAS-L1).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    messages: Vec<Message>,
}

impl Memory {
    /// An empty memory.
    pub fn new() -> Self {
        Memory::default()
    }

    /// The retained messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
}

/// One engagement to run.
#[derive(Debug)]
pub struct EngagementRequest<'a> {
    /// The agent.
    pub agent: &'a AgentSpec,
    /// The engaging user, if known.
    pub user: Option<UserIdentity>,
    /// The user's instruction.
    pub input: &'a str,
    /// Context from earlier engagements; used and updated only if `retain_memory` holds.
    pub memory: Option<&'a mut Memory>,
}

/// What the caller gets back (OAS-X1: the text and exactly the exposes).
#[derive(Debug, Clone, Serialize)]
pub struct EngagementOutcome {
    /// The engagement's identifier.
    pub engagement_id: String,
    /// Completed or failed, with the reason.
    pub status: EngagementStatus,
    /// The agent's final text, when it completed.
    pub text: Option<String>,
    /// The `exposes` values; empty unless the engagement completed.
    pub exposes: serde_json::Map<String, serde_json::Value>,
    /// The full engagement, for operators and `agentc run`; never given to a remote
    /// caller, which sees only `text` and `exposes`.
    pub engagement: serde_json::Value,
}

static NEXT_ENGAGEMENT: AtomicU64 = AtomicU64::new(1);

fn fail(engagement: &mut Engagement, reason: FailureReason) {
    tracing::warn!(engagement = engagement.id(), ?reason, "engagement failed");
    engagement.set_status(EngagementStatus::Failed { reason });
}

fn refusal_reason(refusal: &Refusal, guardrail: &str) -> FailureReason {
    use crate::enforce::RefusalStage;
    match refusal.stage {
        RefusalStage::ShortCircuit => FailureReason::ShortCircuit {
            tool: refusal.tool.clone(),
        },
        RefusalStage::InputReview | RefusalStage::OutputReview => FailureReason::ReviewRefused {
            tool: refusal.tool.clone(),
            detail: refusal.reason.clone(),
        },
        RefusalStage::Guardrail => FailureReason::Guardrail {
            guardrail: guardrail.to_string(),
            detail: refusal.reason.clone(),
        },
        _ => FailureReason::Audit {
            detail: refusal.reason.clone(),
        },
    }
}

fn finish(
    engagement: Engagement,
    text: Option<String>,
    exposes: serde_json::Map<String, serde_json::Value>,
) -> EngagementOutcome {
    let text = if engagement.is_finished()
        && !matches!(engagement.status(), EngagementStatus::Completed)
    {
        None
    } else {
        text
    };
    EngagementOutcome {
        engagement_id: engagement.id().to_string(),
        status: engagement.status().clone(),
        text,
        exposes,
        engagement: engagement.to_json(),
    }
}

/// Runs one engagement to completion or failure.
pub async fn run_engagement(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
) -> EngagementOutcome {
    run_engagement_at(runtime, model, request, 0).await
}

/// Runs the engagement of an agent called as a tool, `depth` agents below the
/// engagement the user started. It is boxed because an agent's engagement can contain
/// another agent's, and a recursive future must have a known size.
pub(crate) fn run_nested_engagement<'a>(
    runtime: &'a Runtime,
    model: &'a dyn Model,
    request: EngagementRequest<'a>,
    depth: usize,
) -> Pin<Box<dyn Future<Output = EngagementOutcome> + Send + 'a>> {
    Box::pin(run_engagement_at(runtime, model, request, depth))
}

async fn run_engagement_at(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
    depth: usize,
) -> EngagementOutcome {
    let agent = request.agent;
    let id = format!(
        "{}-{}",
        agent.name,
        NEXT_ENGAGEMENT.fetch_add(1, Ordering::Relaxed)
    );
    let names: Vec<&str> = agent
        .capabilities
        .iter()
        .map(|capability| capability.name.as_str())
        .collect();
    let started_at = now();
    let mut engagement = Engagement::new(&id, &agent.name, &names, request.user, started_at);
    tracing::info!(engagement = %id, agent = %agent.name, depth, "engagement created");

    // OAS-G2: the input guardrail sees the input before any model does.
    if let Some(guardrail) = &agent.input_guardrail
        && let Err(refusal) =
            run_guardrail(runtime, agent, &mut engagement, guardrail, request.input).await
    {
        fail(&mut engagement, refusal_reason(&refusal, "input"));
        return finish(engagement, None, serde_json::Map::new());
    }

    let tools: Vec<ToolDescription> = agent
        .capabilities
        .iter()
        .filter_map(|capability| {
            let tool = runtime.tools.get(&capability.name)?;
            Some(ToolDescription {
                name: capability.name.clone(),
                description: tool.spec.description.clone(),
                input_schema: tool.spec.input_schema.clone(),
            })
        })
        .collect();
    let mut messages = vec![Message::System {
        content: agent.intent.clone(),
    }];
    // OAS-L1: earlier context is used only when the agent allows memory.
    let memory = request.memory;
    if agent.retain_memory
        && let Some(memory) = memory.as_deref()
    {
        messages.extend(memory.messages.iter().cloned());
    }
    let first_new = messages.len();
    messages.push(Message::User {
        content: request.input.to_string(),
    });

    let mut final_text = None;
    for _ in 0..runtime.max_turns {
        engagement.set_status(EngagementStatus::AwaitingModel);
        let turn = match model.complete(&messages, &tools).await {
            Ok(turn) => turn,
            Err(error) => {
                fail(
                    &mut engagement,
                    FailureReason::Model {
                        detail: error.to_string(),
                    },
                );
                break;
            }
        };
        match turn {
            ModelTurn::Text(text) => {
                // OAS-G3: the output guardrail sees every response before the user does.
                if let Some(guardrail) = &agent.output_guardrail
                    && let Err(refusal) =
                        run_guardrail(runtime, agent, &mut engagement, guardrail, &text).await
                {
                    fail(&mut engagement, refusal_reason(&refusal, "output"));
                    break;
                }
                messages.push(Message::Assistant {
                    content: text.clone(),
                });
                final_text = Some(text);
                break;
            }
            ModelTurn::ToolCalls(calls) => {
                messages.push(Message::AssistantToolCalls {
                    calls: calls.clone(),
                });
                for call in &calls {
                    let caller = Caller {
                        model: Some(model),
                        depth,
                    };
                    let outcome =
                        enforce_call_as(runtime, agent, &mut engagement, call, caller).await;
                    let content = match outcome {
                        CallOutcome::Returned(output) => output,
                        CallOutcome::Refused(refusal) => {
                            if refusal.stage.is_fatal() {
                                fail(&mut engagement, refusal_reason(&refusal, ""));
                                break;
                            }
                            refusal.to_model_json()
                        }
                    };
                    messages.push(Message::Tool {
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                        content,
                    });
                }
                if engagement.is_finished() {
                    break;
                }
            }
        }
    }
    if final_text.is_none() && !engagement.is_finished() {
        fail(
            &mut engagement,
            FailureReason::TurnLimit {
                turns: runtime.max_turns,
            },
        );
    }
    if engagement.is_finished() {
        return finish(engagement, None, serde_json::Map::new());
    }

    // OAS-X1: the yield carries exactly the declared exposes; if one cannot be evaluated
    // the caller gets none of them.
    let exposes = match evaluate_exposes(agent, &mut engagement) {
        Ok(exposes) => exposes,
        Err((key, detail)) => {
            fail(&mut engagement, FailureReason::Exposes { key, detail });
            return finish(engagement, None, serde_json::Map::new());
        }
    };
    engagement.set_status(EngagementStatus::Completed);
    if agent.retain_memory
        && let Some(memory) = memory
    {
        memory.messages.extend(messages.drain(first_new..));
    }
    if let Err(error) = runtime.audit.flush() {
        tracing::warn!(%error, "audit flush failed");
    }
    tracing::info!(engagement = %id, "engagement completed");
    finish(engagement, final_text, exposes)
}
