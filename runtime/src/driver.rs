//! The engagement driver: one task, from the user's input to the agent's answer, with
//! the guardrails, the model loop, the enforced tool calls and `exposes` at the yield.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditDetail, AuditLog, AuditRecord};
use crate::credentials::{CredentialProvider, InMemoryCredentials};
use crate::enforce::{
    CallOutcome, Caller, Refusal, enforce_call_as, evaluate_exposes, run_guardrail,
};
use crate::engagement::{
    Engagement, EngagementState, EngagementStatus, FailureReason, UserIdentity, now,
};
use crate::model::{Message, Model, ModelTurn, ToolCall, ToolDescription};
use crate::remote::{RemoteWait, remote_wait_fits, resume_remote_call};
use crate::review::{Reviewer, StaticReviewer};
use crate::spec::{AgentSpec, CapabilityKind};
use crate::tools::{ToolError, ToolRegistry};

/// The services an engagement runs with.
pub struct Runtime {
    /// The tools, with their schemas and backends: bound before the runtime is made
    /// (`Runtime::new`), never swapped after, and reached only through enforcement.
    pub(crate) tools: ToolRegistry,
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
    /// Where an engagement the user started is saved at each wait point (before a call
    /// that needs a review), so that a server can resume it after a restart; `None`
    /// saves nothing.
    pub checkpoints: Option<Arc<dyn Checkpoints>>,
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
    /// anything not configured explicitly is denied, writing its audit trail to `audit`.
    /// The trail has no default: a runtime that keeps none says so with
    /// [`AuditLog::discard`].
    pub fn new(tools: ToolRegistry, audit: Arc<AuditLog>) -> Self {
        Runtime {
            tools,
            reviewer: Arc::new(StaticReviewer::refusing()),
            credentials: Arc::new(InMemoryCredentials::new()),
            audit,
            review_timeout: Duration::from_secs(300),
            tool_timeout: Duration::from_secs(30),
            max_turns: 32,
            agents: HashMap::new(),
            agent_models: HashMap::new(),
            max_agent_depth: DEFAULT_MAX_AGENT_DEPTH,
            agent_timeout: Duration::from_secs(600),
            checkpoints: None,
        }
    }

    /// The tools' interfaces and schemas (read-only: backends are bound before the
    /// runtime is made, and a tool is called only through enforcement).
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
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
    /// Where the engagement ended, for [`continue_engagement`] (more user input) and for
    /// storage; not printed, since it holds the model's whole conversation.
    #[serde(skip)]
    pub snapshot: EngagementSnapshot,
}

/// An engagement at a wait point, as plain data: the engagement itself, the model's
/// conversation, how many model turns it has taken, and the calls of the model's latest
/// turn that have not run yet (the first of them is the one waiting for review). It
/// holds no secret: credentials are never part of the engagement or the conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngagementSnapshot {
    /// The engagement (OAS-E3) without its status.
    pub engagement: EngagementState,
    /// The conversation the model has seen so far.
    pub messages: Vec<Message>,
    /// Model turns taken so far, counted against [`Runtime::max_turns`].
    pub turns: usize,
    /// The calls of the latest model turn still to run, in order.
    #[serde(default)]
    pub pending_calls: Vec<ToolCall>,
    /// The output of the first pending call, when the engagement waits for that
    /// output's review (OAS-C7): the tool has run once, so a resumed engagement checks
    /// this output again (schema, output assertion, a review bound to the same call
    /// hash) instead of invoking the tool a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_output: Option<serde_json::Value>,
    /// The engagement of the agent that the first pending call engaged (Reading: an
    /// agent as a tool), when the wait point is inside it: a resumed engagement resumes
    /// this one first and takes its answer as that call's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested: Option<Box<EngagementSnapshot>>,
    /// The remote agent's engagement that the first pending call started (an
    /// `oagent://host/path/name` capability, OAS-S3), when the wait is for it: a
    /// resumed engagement polls this engagement's location and takes its answer as that
    /// call's output, so the remote agent is never engaged twice for one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteWait>,
}

impl EngagementSnapshot {
    /// The remote engagement this snapshot waits for, in this engagement or in the
    /// engagement of an agent it called (the innermost one waits).
    pub fn remote_wait(&self) -> Option<&RemoteWait> {
        match &self.nested {
            Some(nested) => nested.remote_wait(),
            None => self.remote.as_ref(),
        }
    }
}

/// Where snapshots go (a server's store).
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// Saves the latest snapshot of an engagement (the one the user started, with any
    /// engagement of an agent it called nested inside), replacing the one before. An
    /// error refuses the review about to be asked, which ends the engagement
    /// ([`FailureReason::ReviewRefused`]): a wait that could not survive a restart is
    /// not started.
    async fn save(&self, snapshot: &EngagementSnapshot) -> Result<(), String>;

    /// Saves a snapshot that waits for a remote agent's engagement
    /// ([`EngagementSnapshot::remote_wait`]), so that after a restart the engagement is
    /// resumed by polling that engagement, and marks the engagement as parked there.
    /// `Ok` is always followed by [`Checkpoints::end_remote_wait`] once the remote
    /// engagement has answered or the call has given up, unless the process stops
    /// first. An error leaves the wait unsaved: the call still polls, and a restart
    /// before it answers ends the engagement as interrupted.
    async fn save_remote_wait(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        self.save(snapshot).await
    }

    /// The engagement `root_engagement` no longer waits for a remote engagement: it
    /// runs again from here, so a restart from now on must not resume it from the
    /// saved wait (that would replay what runs next). An error fails the call.
    async fn end_remote_wait(&self, root_engagement: &str) -> Result<(), String> {
        let _ = root_engagement;
        Ok(())
    }
}

/// Where an engagement is while one call of a model turn runs: with the engagement
/// itself, everything a snapshot at a wait point inside that call needs. The wait
/// points themselves are in the enforcement order (before an input or an output
/// review, OAS-C7), which asks its `save` to save.
pub struct WaitPoint<'a> {
    checkpoints: &'a dyn Checkpoints,
    messages: &'a [Message],
    turns: usize,
    pending_calls: &'a [ToolCall],
    outer: Option<&'a OuterCall<'a>>,
}

/// The call that engaged an agent as a tool, seen from inside the called agent's
/// engagement: the caller's engagement as it was when it made the call, and the
/// caller's own wait point. A wait inside the called agent is saved as the outermost
/// engagement's snapshot with the inner ones nested in it, so that a restart resumes
/// the whole chain.
pub struct OuterCall<'a> {
    state: EngagementState,
    point: &'a WaitPoint<'a>,
}

impl<'a> OuterCall<'a> {
    /// The call of an agent as a tool by `caller`, whose wait point is `point`.
    pub(crate) fn new(caller: &Engagement, point: &'a WaitPoint<'a>) -> Self {
        OuterCall {
            state: caller.state(),
            point,
        }
    }
}

impl std::fmt::Debug for WaitPoint<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WaitPoint")
            .field("turns", &self.turns)
            .field("pending_calls", &self.pending_calls.len())
            .field("root_engagement", &self.root_engagement())
            .finish_non_exhaustive()
    }
}

impl WaitPoint<'_> {
    /// The engagement the user started, when this wait point is inside an agent called
    /// as a tool; `None` when this engagement is that one.
    pub(crate) fn root_engagement(&self) -> Option<&str> {
        let outer = self.outer?;
        Some(
            outer
                .point
                .root_engagement()
                .unwrap_or(outer.state.id.as_str()),
        )
    }

    /// This engagement's `snapshot` inside the snapshots of the engagements that called
    /// it, outermost last, so that the result is the snapshot of the engagement the
    /// user started.
    fn enclose(&self, snapshot: EngagementSnapshot) -> EngagementSnapshot {
        match self.outer {
            None => snapshot,
            Some(outer) => outer.point.enclose(EngagementSnapshot {
                engagement: outer.state.clone(),
                messages: outer.point.messages.to_vec(),
                turns: outer.point.turns,
                pending_calls: outer.point.pending_calls.to_vec(),
                obtained_output: None,
                nested: Some(Box::new(snapshot)),
                remote: None,
            }),
        }
    }

    /// Saves the snapshot of the engagement the user started, as it is now: `engagement`
    /// waits for a review of its first pending call, whose output, for an output review,
    /// is `obtained_output`.
    pub(crate) async fn save(
        &self,
        engagement: &Engagement,
        obtained_output: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        let snapshot = self.enclose(EngagementSnapshot {
            engagement: engagement.state(),
            messages: self.messages.to_vec(),
            turns: self.turns,
            pending_calls: self.pending_calls.to_vec(),
            obtained_output: obtained_output.cloned(),
            nested: None,
            remote: None,
        });
        self.checkpoints.save(&snapshot).await
    }

    /// Saves the snapshot of the engagement the user started, as it is now:
    /// `engagement` waits for the remote engagement `wait` that its first pending call
    /// started.
    pub(crate) async fn save_remote(
        &self,
        engagement: &Engagement,
        wait: RemoteWait,
    ) -> Result<(), String> {
        let snapshot = self.enclose(EngagementSnapshot {
            engagement: engagement.state(),
            messages: self.messages.to_vec(),
            turns: self.turns,
            pending_calls: self.pending_calls.to_vec(),
            obtained_output: None,
            nested: None,
            remote: Some(wait),
        });
        self.checkpoints.save_remote_wait(&snapshot).await
    }

    /// Says that `engagement` no longer waits for the remote engagement saved by
    /// [`WaitPoint::save_remote`].
    pub(crate) async fn end_remote_wait(&self, engagement: &Engagement) -> Result<(), String> {
        let root = self.root_engagement().unwrap_or(engagement.id());
        self.checkpoints.end_remote_wait(root).await
    }
}

/// How deep an engagement is, and the call that engaged it when it is saved inside its
/// caller's snapshot.
#[derive(Clone, Copy)]
pub(crate) struct Nesting<'a> {
    /// 0 for the engagement the user started.
    pub(crate) depth: usize,
    /// The call that engaged it, when its waits are saved inside its caller's snapshot.
    pub(crate) outer: Option<&'a OuterCall<'a>>,
}

impl Nesting<'_> {
    const ROOT: Nesting<'static> = Nesting {
        depth: 0,
        outer: None,
    };
}

/// What a resumed engagement already has for the first of its pending calls.
enum Resumed {
    /// The output, obtained before the wait for its review.
    Output(serde_json::Value),
    /// The engagement of the agent the call engaged, to resume first.
    Nested(Box<EngagementSnapshot>),
    /// The remote agent's engagement the call started, to poll.
    Remote(RemoteWait),
}

/// A new engagement identifier: the agent's name, `-` and 128 bits from the OS CSPRNG
/// in hexadecimal, so that identifiers (and the audit entries that name them) never
/// repeat across runs, processes or restarts. None is made if the random source fails.
pub fn fresh_engagement_id(agent: &str) -> Result<String, String> {
    fresh_id(&format!("{agent}-"))
}

/// `prefix` followed by 128 bits from the OS CSPRNG in hexadecimal: the identifiers
/// of engagements here and of engagements and reviews on a server. None is made if the
/// random source fails.
pub fn fresh_id(prefix: &str) -> Result<String, String> {
    use std::fmt::Write;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| format!("the OS random source failed: {error}"))?;
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    Ok(id)
}

/// The outcome of an engagement that could not be given an identifier: it fails
/// before anything of it runs, since nothing it did could be attributed.
fn unidentified(agent: &AgentSpec, detail: String) -> EngagementOutcome {
    let names = capability_names(agent);
    let mut engagement = Engagement::new(
        &format!("{}-unidentified", agent.name),
        &agent.name,
        &names,
        None,
        None,
    );
    fail(&mut engagement, FailureReason::Audit { detail });
    Conversation {
        engagement,
        messages: Vec::new(),
        turns: 0,
    }
    .finish(None, serde_json::Map::new())
}

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
        RefusalStage::CallLimit => FailureReason::CallLimit {
            detail: refusal.reason.clone(),
        },
        _ => FailureReason::Audit {
            detail: refusal.reason.clone(),
        },
    }
}

/// One engagement being driven: the engagement, the model's conversation and the turn
/// count, which is everything a snapshot needs.
struct Conversation {
    engagement: Engagement,
    messages: Vec<Message>,
    turns: usize,
}

impl Conversation {
    fn finish(
        self,
        text: Option<String>,
        exposes: serde_json::Map<String, serde_json::Value>,
    ) -> EngagementOutcome {
        let engagement = self.engagement;
        let text = if engagement.is_finished()
            && !matches!(engagement.status(), EngagementStatus::Completed)
        {
            None
        } else {
            text
        };
        let snapshot = EngagementSnapshot {
            engagement: engagement.state(),
            messages: self.messages,
            turns: self.turns,
            pending_calls: Vec::new(),
            obtained_output: None,
            nested: None,
            remote: None,
        };
        EngagementOutcome {
            engagement_id: engagement.id().to_string(),
            status: engagement.status().clone(),
            text,
            exposes,
            engagement: engagement.to_json(),
            snapshot,
        }
    }
}

fn capability_names(agent: &AgentSpec) -> Vec<&str> {
    agent
        .capabilities
        .iter()
        .map(|capability| capability.name.as_str())
        .collect()
}

/// Runs one engagement to completion or failure.
pub async fn run_engagement(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
) -> EngagementOutcome {
    let id = match fresh_engagement_id(&request.agent.name) {
        Ok(id) => id,
        Err(detail) => return unidentified(request.agent, detail),
    };
    let outcome = run_engagement_at(runtime, model, request, &id, None, Nesting::ROOT).await;
    checkpointed(runtime, outcome)
}

/// [`run_engagement`] with an identifier chosen by the caller (a server's, unique
/// across restarts, so that stored engagements never collide).
pub async fn run_engagement_with_id(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
    id: &str,
) -> EngagementOutcome {
    let outcome = run_engagement_at(runtime, model, request, id, None, Nesting::ROOT).await;
    checkpointed(runtime, outcome)
}

/// Signs an audit checkpoint as an engagement ends or yields (when the log signs and
/// something was written since the last one), so that its entries are covered. One
/// that cannot be written is logged: the engagement's actions are done, and the next
/// checkpoint covers its entries.
fn checkpointed(runtime: &Runtime, outcome: EngagementOutcome) -> EngagementOutcome {
    if let Err(error) = runtime.audit.checkpoint() {
        tracing::warn!(%error, engagement = %outcome.engagement_id, "the audit checkpoint could not be written");
    }
    outcome
}

/// Runs the engagement of an agent called as a tool by the engagement `parent`, which
/// its audit entries name, `depth` agents below the engagement the user started; with
/// `outer`, its wait points are saved inside the
/// snapshot of the engagement that called it. It is boxed because an agent's
/// engagement can contain another agent's, and a recursive future must have a known
/// size.
pub(crate) fn run_nested_engagement<'a>(
    runtime: &'a Runtime,
    model: &'a dyn Model,
    request: EngagementRequest<'a>,
    parent: &'a str,
    depth: usize,
    outer: Option<&'a OuterCall<'a>>,
) -> Pin<Box<dyn Future<Output = EngagementOutcome> + Send + 'a>> {
    Box::pin(async move {
        let id = match fresh_engagement_id(&request.agent.name) {
            Ok(id) => id,
            Err(detail) => return unidentified(request.agent, detail),
        };
        let nesting = Nesting { depth, outer };
        let outcome = run_engagement_at(runtime, model, request, &id, Some(parent), nesting).await;
        checkpointed(runtime, outcome)
    })
}

/// What an agent called as a tool returns to its caller: `{text}` and the callee's
/// exposes (Reading: an agent as a tool); anything but a completed engagement is an
/// error.
pub(crate) fn agent_output(
    callee: &str,
    outcome: EngagementOutcome,
) -> Result<serde_json::Value, ToolError> {
    let failed = |detail: String| ToolError::Agent {
        agent: callee.to_string(),
        detail,
    };
    match (outcome.status, outcome.text) {
        (EngagementStatus::Completed, Some(text)) => {
            let mut output = serde_json::Map::new();
            // The callee's text is the `text` field; an exposed key of the same name
            // cannot replace it.
            output.insert("text".to_string(), serde_json::Value::String(text));
            for (key, value) in outcome.exposes {
                output.entry(key).or_insert(value);
            }
            Ok(serde_json::Value::Object(output))
        }
        (EngagementStatus::Failed { reason }, _) => Err(failed(format!(
            "engagement {} failed: {}",
            outcome.engagement_id,
            serde_json::to_string(&reason).unwrap_or_default()
        ))),
        (status, _) => Err(failed(format!(
            "engagement {} ended without an answer ({status:?})",
            outcome.engagement_id
        ))),
    }
}

async fn run_engagement_at(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
    id: &str,
    parent: Option<&str>,
    nesting: Nesting<'_>,
) -> EngagementOutcome {
    let agent = request.agent;
    let names = capability_names(agent);
    let started_at = now();
    let mut engagement = Engagement::new(id, &agent.name, &names, request.user, started_at);
    if let Some(parent) = parent {
        engagement = engagement.with_parent(parent);
    }
    tracing::info!(engagement = %id, parent = ?parent, agent = %agent.name, depth = nesting.depth, "engagement created");
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
    let mut conversation = Conversation {
        engagement,
        messages,
        turns: 0,
    };
    let outcome = add_user_input(
        runtime,
        model,
        agent,
        &mut conversation,
        request.input,
        nesting,
    )
    .await;
    let (text, exposes) = match outcome {
        Some(done) => done,
        None => return conversation.finish(None, serde_json::Map::new()),
    };
    if agent.retain_memory
        && let Some(memory) = memory
    {
        memory
            .messages
            .extend(conversation.messages.iter().skip(first_new).cloned());
    }
    conversation.finish(Some(text), exposes)
}

/// Resumes an engagement from a snapshot taken at a wait point (after a restart): the
/// engagement is rebuilt exactly, the pending calls run again through every check —
/// the one that waited for review asks its reviewer again, who may by then have
/// answered — and the model loop goes on with the turns it has left. A call whose
/// output was obtained before the wait is checked again from that output, a call whose
/// agent was waiting resumes that agent's engagement first, and a call of a remote
/// agent polls the remote engagement it had started; none is invoked again.
pub async fn resume_engagement(
    runtime: &Runtime,
    model: &dyn Model,
    agent: &AgentSpec,
    snapshot: EngagementSnapshot,
) -> EngagementOutcome {
    let outcome = resume_at(runtime, model, agent, snapshot, Nesting::ROOT).await;
    checkpointed(runtime, outcome)
}

/// [`resume_engagement`] at any depth; boxed, since a resumed engagement can resume
/// the engagement of the agent it called.
fn resume_at<'a>(
    runtime: &'a Runtime,
    model: &'a dyn Model,
    agent: &'a AgentSpec,
    mut snapshot: EngagementSnapshot,
    nesting: Nesting<'a>,
) -> Pin<Box<dyn Future<Output = EngagementOutcome> + Send + 'a>> {
    Box::pin(async move {
        let resumed = match (
            snapshot.nested.take(),
            snapshot.obtained_output.take(),
            snapshot.remote.take(),
        ) {
            (Some(nested), None, None) => Some(Resumed::Nested(nested)),
            (None, Some(output), None) => Some(Resumed::Output(output)),
            (None, None, Some(wait)) => Some(Resumed::Remote(wait)),
            (None, None, None) => None,
            _ => {
                let detail = "the snapshot has more than one result for its pending call";
                audit_unresumable(runtime, agent, &snapshot, detail);
                return failed_restore(agent, &snapshot, detail.to_string());
            }
        };
        if let Some(resumed) = &resumed
            && let Err(detail) =
                resumed_fits(runtime, agent, snapshot.pending_calls.first(), resumed)
        {
            audit_unresumable(runtime, agent, &snapshot, &detail);
            return failed_restore(agent, &snapshot, detail);
        }
        let mut conversation = match restore(agent, &snapshot) {
            Ok(conversation) => conversation,
            Err(outcome) => return *outcome,
        };
        tracing::info!(
            engagement = %conversation.engagement.id(),
            agent = %agent.name,
            depth = nesting.depth,
            "engagement resumed"
        );
        let mut done = None;
        if !snapshot.pending_calls.is_empty() {
            run_calls(
                runtime,
                model,
                agent,
                &mut conversation,
                &snapshot.pending_calls,
                nesting,
                resumed,
            )
            .await;
        }
        if !conversation.engagement.is_finished() {
            done = model_loop(runtime, model, agent, &mut conversation, nesting).await;
        }
        match done {
            Some((text, exposes)) => conversation.finish(Some(text), exposes),
            None => conversation.finish(None, serde_json::Map::new()),
        }
    })
}

/// Whether what a snapshot says was obtained for its first pending call could have
/// been saved for that call: an output only when the capability's output waits for a
/// review (the one wait point after an invocation), a nested engagement only when the
/// capability is an agent of the set, and a remote engagement only when the capability
/// is a remote agent, for this very call, at a location on that agent's origin.
/// Anything else would let a snapshot skip the call's input review or invocation, or
/// send the capability's credential elsewhere, so it is refused.
fn resumed_fits(
    runtime: &Runtime,
    agent: &AgentSpec,
    call: Option<&ToolCall>,
    resumed: &Resumed,
) -> Result<(), String> {
    let Some(call) = call else {
        return Err("the snapshot has an obtained result but no pending call".to_string());
    };
    let capability = agent
        .capability_index(&call.name)
        .and_then(|index| agent.capabilities.get(index))
        .ok_or_else(|| format!("`{}` is not a capability of `{}`", call.name, agent.name))?;
    match resumed {
        Resumed::Output(_) => capability
            .output_restriction
            .as_ref()
            .is_some_and(|restriction| restriction.require_review.is_some())
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "the snapshot has an output of `{}`, whose output is not reviewed",
                    call.name
                )
            }),
        Resumed::Nested(_) => (capability.kind == CapabilityKind::Agent)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "the snapshot has a nested engagement for `{}`, which is not an agent of the set",
                    call.name
                )
            }),
        Resumed::Remote(wait) => remote_wait_fits(runtime, capability, call, wait).map(|_| ()),
    }
}

/// Records in the audit trail that a snapshot was not resumed, and why: the
/// engagement ends there, and the trail says so rather than just stopping.
fn audit_unresumable(
    runtime: &Runtime,
    agent: &AgentSpec,
    snapshot: &EngagementSnapshot,
    detail: &str,
) {
    let subject = snapshot
        .pending_calls
        .first()
        .map_or("resume", |call| call.name.as_str());
    let appended = runtime.audit.append(AuditRecord {
        engagement: &snapshot.engagement.id,
        parent: snapshot.engagement.parent.as_deref(),
        user: snapshot
            .engagement
            .user
            .as_ref()
            .map(|user| user.id.as_str()),
        agent: &agent.name,
        action: AuditAction::Denied,
        subject,
        detail: AuditDetail {
            stage: Some("resume"),
            reason: Some(detail),
            ..AuditDetail::default()
        },
    });
    if let Err(error) = appended {
        tracing::warn!(%error, engagement = %snapshot.engagement.id, "the refused resume could not be audited");
    }
}

/// Resumes the engagement of the agent that a resumed call engaged (`snapshot`), one
/// level below `caller`, and gives its answer as that call's output.
async fn resume_callee(
    runtime: &Runtime,
    model: &dyn Model,
    caller: &Engagement,
    call: &ToolCall,
    point: Option<&WaitPoint<'_>>,
    snapshot: EngagementSnapshot,
    depth: usize,
) -> Result<serde_json::Value, ToolError> {
    let name = snapshot.engagement.agent.clone();
    let failed = |detail: String| ToolError::Agent {
        agent: name.clone(),
        detail,
    };
    // The nested engagement must be of the agent the pending call names, so that a
    // snapshot cannot make one capability answer with another agent's engagement.
    if name != call.name {
        return Err(failed(format!(
            "the saved engagement is of agent `{name}`, but the call is to `{}`",
            call.name
        )));
    }
    let Some(callee) = runtime.agents.get(&name) else {
        return Err(failed("it is not an agent of this runtime".to_string()));
    };
    // The called agent runs as its caller's user (OAS-C3), so a saved engagement of
    // anyone else's is not resumed under this caller.
    if snapshot.engagement.user.as_ref() != caller.user() {
        return Err(failed(
            "the saved engagement's user is not the caller's".to_string(),
        ));
    }
    let depth = depth.saturating_add(1);
    if depth > runtime.max_agent_depth {
        return Err(failed(format!(
            "agents may call agents at most {} deep",
            runtime.max_agent_depth
        )));
    }
    let model: &dyn Model = match runtime.agent_models.get(&name) {
        Some(model) => model.as_ref(),
        None => model,
    };
    let outer = point.map(|point| OuterCall::new(caller, point));
    let nesting = Nesting {
        depth,
        outer: outer.as_ref(),
    };
    match tokio::time::timeout(
        runtime.agent_timeout,
        resume_at(runtime, model, callee, snapshot, nesting),
    )
    .await
    {
        Ok(outcome) => agent_output(&name, checkpointed(runtime, outcome)),
        Err(_) => Err(ToolError::Timeout(name.clone())),
    }
}

/// Adds the user's further input to an engagement that yielded (multi-turn): the input
/// guardrail sees it first (OAS-G2), then the model goes on with the whole
/// conversation so far, and the engagement yields again with new text and exposes.
pub async fn continue_engagement(
    runtime: &Runtime,
    model: &dyn Model,
    agent: &AgentSpec,
    snapshot: EngagementSnapshot,
    input: &str,
) -> EngagementOutcome {
    let mut conversation = match restore(agent, &snapshot) {
        Ok(conversation) => conversation,
        Err(outcome) => return *outcome,
    };
    match add_user_input(
        runtime,
        model,
        agent,
        &mut conversation,
        input,
        Nesting::ROOT,
    )
    .await
    {
        Some((text, exposes)) => checkpointed(runtime, conversation.finish(Some(text), exposes)),
        None => checkpointed(runtime, conversation.finish(None, serde_json::Map::new())),
    }
}

/// Rebuilds a conversation from a snapshot; a snapshot that does not fit the agent
/// becomes a failed outcome rather than a guess.
fn restore(
    agent: &AgentSpec,
    snapshot: &EngagementSnapshot,
) -> Result<Conversation, Box<EngagementOutcome>> {
    let names = capability_names(agent);
    let restored = if snapshot.engagement.agent == agent.name {
        Engagement::restore(&snapshot.engagement, &names).map_err(|error| error.to_string())
    } else {
        Err(format!(
            "the snapshot is of agent `{}`, not `{}`",
            snapshot.engagement.agent, agent.name
        ))
    };
    match restored {
        Ok(engagement) => Ok(Conversation {
            engagement,
            messages: snapshot.messages.clone(),
            turns: snapshot.turns,
        }),
        Err(detail) => Err(Box::new(failed_restore(agent, snapshot, detail))),
    }
}

/// The outcome of a snapshot that cannot be resumed: the engagement fails as
/// interrupted, and nothing of it runs.
fn failed_restore(
    agent: &AgentSpec,
    snapshot: &EngagementSnapshot,
    detail: String,
) -> EngagementOutcome {
    let names = capability_names(agent);
    let id = if snapshot.engagement.id.is_empty() {
        "unknown"
    } else {
        snapshot.engagement.id.as_str()
    };
    let mut engagement = Engagement::new(id, &agent.name, &names, None, None);
    fail(&mut engagement, FailureReason::Interrupted { detail });
    Conversation {
        engagement,
        messages: Vec::new(),
        turns: snapshot.turns,
    }
    .finish(None, serde_json::Map::new())
}

/// The user's input, through the input guardrail and into the conversation, then the
/// model loop. `None` when the engagement failed.
async fn add_user_input(
    runtime: &Runtime,
    model: &dyn Model,
    agent: &AgentSpec,
    conversation: &mut Conversation,
    input: &str,
    nesting: Nesting<'_>,
) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
    // OAS-G2: the input guardrail sees the input before any model does.
    if let Some(guardrail) = &agent.input_guardrail
        && let Err(refusal) = run_guardrail(
            runtime,
            agent,
            &mut conversation.engagement,
            guardrail,
            input,
        )
        .await
    {
        fail(
            &mut conversation.engagement,
            refusal_reason(&refusal, "input"),
        );
        return None;
    }
    conversation.messages.push(Message::User {
        content: input.to_string(),
    });
    // Each input gets the whole turn budget; a snapshot keeps the count within one.
    conversation.turns = 0;
    model_loop(runtime, model, agent, conversation, nesting).await
}

/// Runs the calls of one model turn from the first, in order, appending each answer
/// (or refusal) to the conversation; a fatal refusal ends the engagement. `resumed` is
/// what a resumed engagement already has for the first call.
async fn run_calls(
    runtime: &Runtime,
    model: &dyn Model,
    agent: &AgentSpec,
    conversation: &mut Conversation,
    calls: &[ToolCall],
    nesting: Nesting<'_>,
    mut resumed: Option<Resumed>,
) {
    for (position, call) in calls.iter().enumerate() {
        // Where a wait inside this call is saved, so that it survives a restart: the
        // engagement the user started, and an agent it called as a tool inside its
        // snapshot. An agent engaged for anything else (a review by an agent) is part
        // of that and saves nothing of its own.
        let point = runtime
            .checkpoints
            .as_deref()
            .filter(|_| nesting.depth == 0 || nesting.outer.is_some())
            .map(|checkpoints| WaitPoint {
                checkpoints,
                messages: &conversation.messages,
                turns: conversation.turns,
                pending_calls: calls.get(position..).unwrap_or_default(),
                outer: nesting.outer,
            });
        let obtained = match resumed.take() {
            None => None,
            Some(Resumed::Output(output)) => Some(Ok(output)),
            Some(Resumed::Nested(snapshot)) => Some(
                resume_callee(
                    runtime,
                    model,
                    &conversation.engagement,
                    call,
                    point.as_ref(),
                    *snapshot,
                    nesting.depth,
                )
                .await,
            ),
            Some(Resumed::Remote(wait)) => Some(
                resume_remote_call(
                    runtime,
                    agent,
                    &conversation.engagement,
                    call,
                    point.as_ref(),
                    &wait,
                )
                .await,
            ),
        };
        let caller = Caller {
            model: Some(model),
            depth: nesting.depth,
            wait_point: point.as_ref(),
            obtained: obtained.as_ref(),
        };
        let outcome =
            enforce_call_as(runtime, agent, &mut conversation.engagement, call, caller).await;
        let content = match outcome {
            CallOutcome::Returned(output) => Arc::unwrap_or_clone(output),
            CallOutcome::Refused(refusal) => {
                if refusal.stage.is_fatal() {
                    fail(&mut conversation.engagement, refusal_reason(&refusal, ""));
                    return;
                }
                refusal.to_model_json()
            }
        };
        conversation.messages.push(Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content,
        });
    }
}

/// Asks the model for turns until it answers with text, the engagement fails, or the
/// turn limit is reached; then evaluates `exposes`. `None` when the engagement failed.
async fn model_loop(
    runtime: &Runtime,
    model: &dyn Model,
    agent: &AgentSpec,
    conversation: &mut Conversation,
    nesting: Nesting<'_>,
) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
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
    let mut final_text = None;
    while conversation.turns < runtime.max_turns && !conversation.engagement.is_finished() {
        conversation.turns += 1;
        conversation
            .engagement
            .set_status(EngagementStatus::AwaitingModel);
        let turn = match model.complete(&conversation.messages, &tools).await {
            Ok(turn) => turn,
            Err(error) => {
                fail(
                    &mut conversation.engagement,
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
                    && let Err(refusal) = run_guardrail(
                        runtime,
                        agent,
                        &mut conversation.engagement,
                        guardrail,
                        &text,
                    )
                    .await
                {
                    fail(
                        &mut conversation.engagement,
                        refusal_reason(&refusal, "output"),
                    );
                    break;
                }
                conversation.messages.push(Message::Assistant {
                    content: text.clone(),
                });
                final_text = Some(text);
                break;
            }
            ModelTurn::ToolCalls(calls) => {
                if let Some(refusal) = crate::enforce::refuse_oversized_turn(
                    runtime,
                    agent,
                    &mut conversation.engagement,
                    &calls,
                ) {
                    fail(&mut conversation.engagement, refusal_reason(&refusal, ""));
                    break;
                }
                conversation.messages.push(Message::AssistantToolCalls {
                    calls: calls.clone(),
                });
                run_calls(runtime, model, agent, conversation, &calls, nesting, None).await;
            }
        }
    }
    let engagement = &mut conversation.engagement;
    if engagement.is_finished() {
        return None;
    }
    let Some(text) = final_text else {
        fail(
            engagement,
            FailureReason::TurnLimit {
                turns: runtime.max_turns,
            },
        );
        return None;
    };

    // OAS-X1: the yield carries exactly the declared exposes; if one cannot be evaluated
    // the caller gets none of them. The evaluation's error text may quote the data it
    // failed on (a tool's output), so the failure names the key only.
    let exposes = match evaluate_exposes(agent, engagement) {
        Ok(exposes) => exposes,
        Err((key, _)) => {
            let detail = "exposes could not be evaluated".to_string();
            fail(engagement, FailureReason::Exposes { key, detail });
            return None;
        }
    };
    engagement.set_status(EngagementStatus::Completed);
    if let Err(error) = runtime.audit.flush() {
        tracing::warn!(%error, "audit flush failed");
    }
    tracing::info!(engagement = %engagement.id(), "engagement completed");
    Some((text, exposes))
}
