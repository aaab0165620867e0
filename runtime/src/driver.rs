//! The engagement driver: one task, from the user's input to the agent's answer, with
//! the guardrails, the model loop, the enforced tool calls and `exposes` at the yield.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::audit::{AuditAction, AuditDetail, AuditRecord};
use crate::context::{
    CallJournal, EngagementOutcome, EngagementRequest, EngagementSnapshot, NestedEngagements,
    Nesting, OuterCall, RemoteWait, Runtime, WaitPoint, fresh_engagement_id,
};
use crate::enforce::{
    CallOutcome, Caller, Refusal, agent_output, enforce_call_as, evaluate_exposes, run_guardrail,
};
use crate::engagement::{Engagement, EngagementStatus, FailureReason};
use crate::model::{Message, Model, ModelTurn, ToolCall, ToolDescription};
use crate::remote::{remote_wait_fits, resume_remote_call};
use crate::review::{ReviewDecision, ReviewRequest, answer_approves};
use crate::spec::{AgentSpec, CapabilityKind};
use crate::tools::{Rerun, ToolError};

/// What a resumed engagement already has for the first of its pending calls.
enum Resumed {
    /// The output, obtained before the wait for its review.
    Output(serde_json::Value),
    /// The engagement of the agent the call engaged, to resume first.
    Nested(Box<EngagementSnapshot>),
    /// The remote agent's engagement the call started, to poll.
    Remote(RemoteWait),
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
        RefusalStage::InputRestriction | RefusalStage::OutputRestriction => {
            FailureReason::Refused {
                tool: refusal.tool.clone(),
                detail: refusal.reason.clone(),
            }
        }
        // Not sent: the engagement stops where it is (another instance may hold it).
        RefusalStage::Journal => FailureReason::Interrupted {
            detail: refusal.reason.clone(),
        },
        // Sent and answered, but not recorded: a person must look at the tool.
        RefusalStage::JournalAnswer => FailureReason::OutcomeUnknown {
            tool: refusal.tool.clone(),
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
            journal: None,
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

impl NestedEngagements for Runtime {
    fn run_nested<'a>(
        &'a self,
        model: &'a dyn Model,
        request: EngagementRequest<'a>,
        parent: &'a str,
        parent_request: &'a [Arc<str>],
        depth: usize,
        outer: Option<&'a OuterCall<'a>>,
    ) -> Pin<Box<dyn Future<Output = EngagementOutcome> + Send + 'a>> {
        Box::pin(async move {
            let id = match fresh_engagement_id(&request.agent.name) {
                Ok(id) => id,
                Err(detail) => return unidentified(request.agent, detail),
            };
            let nesting = Nesting { depth, outer };
            let parent = Some((parent, parent_request));
            let outcome = run_engagement_at(self, model, request, &id, parent, nesting).await;
            checkpointed(self, outcome)
        })
    }
}

async fn run_engagement_at(
    runtime: &Runtime,
    model: &dyn Model,
    request: EngagementRequest<'_>,
    id: &str,
    parent: Option<(&str, &[Arc<str>])>,
    nesting: Nesting<'_>,
) -> EngagementOutcome {
    let agent = request.agent;
    let names = capability_names(agent);
    let started_at = runtime.clock.now();
    let mut engagement = Engagement::new(id, &agent.name, &names, request.user, started_at);
    if let Some((parent_id, parent_request)) = parent {
        engagement = engagement.with_parent(parent_id);
        // AGX-E1: an agent called as a tool sees the words of the user who started the
        // chain; its input came from a model, so it is not the user's request.
        for text in parent_request {
            engagement.record_user_input(text);
        }
    }
    let parent = parent.map(|(parent_id, _)| parent_id);
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
    if let Err(detail) = audit_observe_only(runtime, agent, &engagement) {
        fail(&mut engagement, FailureReason::Audit { detail });
        return Conversation {
            engagement,
            messages,
            turns: 0,
        }
        .finish(None, serde_json::Map::new());
    }
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
        let journal = snapshot.journal.take();
        if let Some(resumed) = &resumed
            && let Err(detail) = resumed_fits(
                runtime,
                agent,
                snapshot.pending_calls.first(),
                resumed,
                journal == Some(CallJournal::Returned),
            )
        {
            audit_unresumable(runtime, agent, &snapshot, &detail);
            return failed_restore(agent, &snapshot, detail);
        }
        let mut conversation = match restore(agent, &snapshot) {
            Ok(conversation) => conversation,
            Err(outcome) => return *outcome,
        };
        // AGX-T2: the call was under way when the server running it died. It is made
        // again only when its tool allows; otherwise its outcome is unknown, and the
        // engagement ends there for a person to resolve, nothing retried.
        if journal == Some(CallJournal::Invoking)
            && resumed.is_none()
            && let Some(call) = snapshot.pending_calls.first()
            && rerun_of(runtime, agent, call) == Rerun::Never
        {
            let detail = "the server running the engagement stopped while the call was under way, and its tool neither only reads nor takes an idempotency key";
            audit_unresumable(runtime, agent, &snapshot, detail);
            fail(
                &mut conversation.engagement,
                FailureReason::OutcomeUnknown {
                    tool: call.name.clone(),
                    detail: detail.to_string(),
                },
            );
            return conversation.finish(None, serde_json::Map::new());
        }
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
    journaled: bool,
) -> Result<(), String> {
    let Some(call) = call else {
        return Err("the snapshot has an obtained result but no pending call".to_string());
    };
    let capability = agent
        .capability_index(&call.name)
        .and_then(|index| agent.capabilities.get(index))
        .ok_or_else(|| format!("`{}` is not a capability of `{}`", call.name, agent.name))?;
    match resumed {
        // An output is saved before its review, or (AGX-T2) as the answer of a call
        // journaled at its invocation, once it passed the output checks.
        Resumed::Output(_) => (capability
            .output_restriction
            .as_ref()
            .is_some_and(|restriction| restriction.require_review.is_some())
            || journaled)
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

/// Whether `call`, cut off mid-call, may be made again (AGX-T2): as its tool's
/// backend says; a capability without a backend of its own (an agent of the set) or
/// unknown here, never.
fn rerun_of(runtime: &Runtime, agent: &AgentSpec, call: &ToolCall) -> Rerun {
    agent
        .capability_index(&call.name)
        .and_then(|index| agent.capabilities.get(index))
        .and_then(|capability| runtime.tools.get(&capability.name))
        .and_then(|tool| tool.backend().ok())
        .map_or(Rerun::Never, |backend| backend.rerun())
}

/// AGX-S1: turning enforcement off is never silent. Each stage whose restriction only
/// observes (a shadow beside no assertion and no reviewer) is written to the audit
/// trail when an engagement starts, so the trail of every engagement it did not guard
/// says so. An error means the trail cannot be written, and the engagement must not run.
fn audit_observe_only(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &Engagement,
) -> Result<(), String> {
    for capability in &agent.capabilities {
        for (restriction, stage) in [
            (&capability.input_restriction, "input_restriction"),
            (&capability.output_restriction, "output_restriction"),
        ] {
            let observes_only = restriction.as_ref().is_some_and(|restriction| {
                restriction.shadow.is_some()
                    && restriction.assertion.is_none()
                    && restriction.require_review.is_none()
            });
            if !observes_only {
                continue;
            }
            runtime
                .audit
                .append(AuditRecord {
                    engagement: engagement.id(),
                    parent: engagement.parent(),
                    user: engagement.user().map(|user| user.id.as_str()),
                    agent: &agent.name,
                    action: AuditAction::ObserveOnly,
                    subject: &capability.name,
                    detail: AuditDetail {
                        stage: Some(stage),
                        ..AuditDetail::default()
                    },
                })
                .map_err(|error| error.to_string())?;
        }
    }
    Ok(())
}

/// AGX-M3: starts an engagement whose calls come from a client outside the runtime —
/// an MCP client through the gateway — rather than from a model the runtime drives.
/// There is no user input here to guard or to record as the request: the client's own
/// model read it, so provenance rules that ask for the user's words deny.
pub fn start_direct_engagement(
    runtime: &Runtime,
    agent: &AgentSpec,
    user: Option<crate::engagement::UserIdentity>,
) -> Result<Engagement, String> {
    let id = fresh_engagement_id(&agent.name)?;
    let names = capability_names(agent);
    let mut engagement = Engagement::new(&id, &agent.name, &names, user, runtime.clock.now());
    audit_observe_only(runtime, agent, &engagement)?;
    engagement.set_status(EngagementStatus::AwaitingModel);
    tracing::info!(engagement = %id, agent = %agent.name, "direct engagement created");
    Ok(engagement)
}

/// AGX-M3: one call of a direct engagement, through every check of [`enforce_call_as`];
/// a refusal ends the engagement exactly when it would end one the runtime drives (a
/// fatal stage, or a policy refusal under `stop_on_refusal`), so a client cannot go on
/// where a model could not.
pub async fn enforce_direct_call(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    call: &ToolCall,
) -> CallOutcome {
    let outcome = enforce_call_as(runtime, agent, engagement, call, Caller::default()).await;
    if let CallOutcome::Refused(refusal) = &outcome
        && !engagement.is_finished()
        && (refusal.stage.is_fatal()
            || (agent.stop_on_refusal && refusal.stage.is_policy_refusal()))
    {
        fail(engagement, refusal_reason(refusal, ""));
    }
    outcome
}

/// AGX-M3: ends a direct engagement when its client leaves: completed unless it had
/// failed, and the audit trail's entries covered by a checkpoint.
pub fn end_direct_engagement(runtime: &Runtime, engagement: &mut Engagement) {
    if !engagement.is_finished() {
        engagement.set_status(EngagementStatus::Completed);
    }
    tracing::info!(engagement = engagement.id(), status = ?engagement.status(), "direct engagement ended");
    if let Err(error) = runtime.audit.checkpoint() {
        tracing::warn!(%error, engagement = engagement.id(), "the audit checkpoint could not be written");
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
    // AGX-E1: the user's own words join the request; an agent called as a tool got its
    // input from a model, and has its caller's request instead (`run_engagement_at`).
    if nesting.depth == 0 {
        conversation.engagement.record_user_input(input);
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
                // AGX-L3: a refused call is the model's to act on, unless the agent
                // asks to stop at the first refusal.
                if refusal.stage.is_fatal()
                    || (agent.stop_on_refusal && refusal.stage.is_policy_refusal())
                {
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

/// Asks an agent to review a pending call (OAS-C7 Reading: `oagent://name` reviews as
/// an agent). The reviewing agent is engaged with the request as JSON — the agent
/// asking, the tool, the stage, the pending input (and output), and the engagement —
/// and approves only when it completes and its answer begins with the word `approve`
/// (or `approved`), case aside. Any other answer, a failure or a guardrail stop is a
/// refusal (fail closed). The approval carries the request's own call hash, so it
/// approves this call and no other.
pub async fn review_by_agent(
    runtime: &Runtime,
    model: &dyn crate::model::Model,
    reviewer: &crate::spec::AgentSpec,
    request: &ReviewRequest,
) -> ReviewDecision {
    let question = serde_json::json!({
        "review": "May the agent go on with this call? Answer `approve` or `deny`, with a reason.",
        "agent": request.agent,
        "tool": request.tool,
        "stage": request.stage,
        "inputs": request.inputs,
        "outputs": request.outputs,
        "engagement": request.engagement_state,
    });
    // Run as one level down, like an agent called as a tool, its parent the engagement
    // under review: the depth limit applies, and its own wait points are part of this review rather than saved on their own.
    let outcome = runtime
        .run_nested(
            model,
            EngagementRequest {
                agent: reviewer,
                user: None,
                input: &question.to_string(),
                memory: None,
            },
            &request.engagement,
            // A reviewing agent is not asked for by the user: nothing it reads is the
            // user's request.
            &[],
            1,
            None,
        )
        .await;
    match (&outcome.status, outcome.text.as_deref()) {
        (crate::engagement::EngagementStatus::Completed, Some(text)) if answer_approves(text) => {
            ReviewDecision::Approve {
                call_hash: request.call_hash.clone(),
            }
        }
        (crate::engagement::EngagementStatus::Completed, Some(text)) => ReviewDecision::Refuse {
            reason: format!("agent `{}` answered: {text}", reviewer.name),
        },
        (status, _) => ReviewDecision::Refuse {
            reason: format!(
                "agent `{}` did not complete its review: {}",
                reviewer.name,
                serde_json::to_string(status).unwrap_or_default()
            ),
        },
    }
}
