//! The per-call enforcement order, in one place so that it can be read and audited:
//!
//! 1. the model's tool name is matched against the declared capabilities (an undeclared
//!    name never reaches a tool);
//! 2. short circuit (OAS-L2);
//! 3. the input is validated against the tool's input schema;
//! 4. input restriction assertion (OAS-C5, OAS-C8), over the pending call;
//! 5. review, when the input restriction requires it (OAS-C7);
//! 6. credentials for the user's or the static identity (OAS-C3, OAS-C4);
//! 7. invocation, under a timeout: a tool's backend, or for an agent of the set with no
//!    backend bound, a nested engagement of that agent (Reading: an agent as a tool);
//! 8. the output is validated against the tool's output schema;
//! 9. output restriction assertion, then review (OAS-C6, OAS-C7, OAS-C8);
//! 10. recording (OAS-C2), and only then is the output returned for the model.
//!
//! A review wait is saved first ([`crate::context::WaitPoint`]). A call resumed after a
//! restart with a result obtained before it ([`Caller::obtained`]) goes through every
//! step but the input review (approved before that result existed) and steps 6 and 7.
//!
//! Every error, missing field, wrong type or timeout on this path denies.

use std::sync::Arc;

use agentc_cel::Value;
use serde::Serialize;
use serde_json::json;

use crate::audit::{AuditAction, AuditDetail, AuditRecord};
use crate::check::{Check, JsonFields, VariableSource};
use crate::context::{
    EngagementOutcome, EngagementRequest, NestedEngagements, OuterCall, Runtime, WaitPoint,
};
use crate::credentials::Identity;
use crate::engagement::{
    Engagement, EngagementStatus, FailureReason, Invocation, Pending, RefusedCall, share_or_copy,
};
use crate::model::{Model, ToolCall};
use crate::remote::RemoteAgentTool;
use crate::review::{ReviewDecision, ReviewRequest, call_hash};
use crate::spec::{
    AgentSpec, CapabilityKind, CapabilitySpec, GuardrailSpec, RestrictionSpec, ReviewerRef,
};
use crate::tools::{RegisteredTool, Rerun, ToolBackend, ToolContext, ToolError};

/// How deeply a tool call's arguments may nest: far below the 128 levels at which JSON
/// parsers (serde_json's included) stop, so that the audit entry and the stored
/// engagement that carry the arguments can always be read back and verified.
pub const MAX_ARGUMENT_DEPTH: usize = 64;

/// How many containers deep the innermost value of `value` sits (a scalar, or an empty
/// container, at the top is 0), counted without recursion.
fn nesting_depth(value: &serde_json::Value) -> usize {
    // Each pending value with the depth of the container holding it.
    let mut deepest = 0;
    let mut pending = vec![(value, 0_usize)];
    while let Some((value, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if deepest > MAX_ARGUMENT_DEPTH {
            // Deep enough to refuse: no need to walk the rest.
            break;
        }
        match value {
            serde_json::Value::Array(items) => {
                pending.extend(items.iter().map(|item| (item, depth + 1)));
            }
            serde_json::Value::Object(fields) => {
                pending.extend(fields.values().map(|field| (field, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The step that refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalStage {
    /// The model named a tool the agent does not declare.
    UndeclaredTool,
    /// OAS-L2.
    ShortCircuit,
    /// The input broke the tool's input schema.
    InputSchema,
    /// OAS-C5/C8.
    InputRestriction,
    /// OAS-C7, before the call.
    InputReview,
    /// OAS-C3/C4.
    Credentials,
    /// The tool failed or timed out.
    Invoke,
    /// The output broke the tool's output schema.
    OutputSchema,
    /// OAS-C6/C8.
    OutputRestriction,
    /// OAS-C7, after the call.
    OutputReview,
    /// The audit log could not be written.
    Audit,
    /// A guardrail (OAS-G5).
    Guardrail,
    /// The engagement has already completed or failed, so nothing more may run.
    Finished,
    /// The turn or the engagement asked for more calls than its limit (AGX-L1/L2).
    CallLimit,
    /// The call could not be journaled before it was sent (AGX-T2): it was not sent.
    Journal,
    /// The call's answer could not be journaled (AGX-T2): the call had its effect, and
    /// the engagement must not go on as if it had not (a model told it failed could
    /// make it again).
    JournalAnswer,
}

impl RefusalStage {
    /// Whether the stage is the tool's own failure (or timeout) after every check
    /// before it passed, rather than a check refusing the call.
    pub fn is_tool_failure(self) -> bool {
        matches!(self, RefusalStage::Invoke)
    }

    /// Whether a policy refused the call: a restriction's assertion or a reviewer
    /// (what `lifespan.stop_on_refusal`, AGX-L3, stops on).
    pub fn is_policy_refusal(self) -> bool {
        matches!(
            self,
            RefusalStage::InputRestriction
                | RefusalStage::OutputRestriction
                | RefusalStage::InputReview
                | RefusalStage::OutputReview
        )
    }

    /// The stage as reports, the audit trail and the model's refusal name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalStage::UndeclaredTool => "undeclared_tool",
            RefusalStage::ShortCircuit => "short_circuit",
            RefusalStage::InputSchema => "input_schema",
            RefusalStage::InputRestriction => "input_restriction",
            RefusalStage::InputReview => "input_review",
            RefusalStage::Credentials => "credentials",
            RefusalStage::Invoke => "invoke",
            RefusalStage::OutputSchema => "output_schema",
            RefusalStage::OutputRestriction => "output_restriction",
            RefusalStage::OutputReview => "output_review",
            RefusalStage::Audit => "audit",
            RefusalStage::Guardrail => "guardrail",
            RefusalStage::Finished => "finished",
            RefusalStage::CallLimit => "call_limit",
            RefusalStage::Journal => "journal",
            RefusalStage::JournalAnswer => "journal_answer",
        }
    }

    /// The fixed sentence the model is given for a refusal at this step.
    pub fn model_message(self) -> &'static str {
        match self {
            RefusalStage::UndeclaredTool => "this tool is not available to you",
            RefusalStage::ShortCircuit => "the call repeats earlier calls too often",
            RefusalStage::InputSchema => "the arguments do not match the tool's input schema",
            RefusalStage::InputRestriction => "the call is not allowed by the agent's policy",
            RefusalStage::InputReview | RefusalStage::OutputReview => {
                "the call was not approved by its reviewer"
            }
            RefusalStage::Credentials => "no credential is available for this call",
            RefusalStage::Invoke => "the tool failed",
            RefusalStage::OutputSchema => "the tool's answer did not match its output schema",
            RefusalStage::OutputRestriction => {
                "the tool's answer is not allowed by the agent's policy"
            }
            RefusalStage::Audit => "the call could not be recorded",
            RefusalStage::Guardrail => "a guardrail stopped the engagement",
            RefusalStage::Finished => "the engagement has ended",
            RefusalStage::CallLimit => "too many tool calls were asked for",
            RefusalStage::Journal | RefusalStage::JournalAnswer => "the call could not be recorded",
        }
    }

    /// Whether the refusal ends the engagement whatever the agent says: a short circuit
    /// stops the agent (OAS-L2), a guardrail stops it (OAS-G5), and nothing may run
    /// unaudited. Other refusals, a reviewer's included, are reported to the model and
    /// the engagement goes on (AGX-L3), unless the agent sets `stop_on_refusal`.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            RefusalStage::ShortCircuit
                | RefusalStage::Audit
                | RefusalStage::Guardrail
                | RefusalStage::Finished
                | RefusalStage::CallLimit
                | RefusalStage::Journal
                | RefusalStage::JournalAnswer
        )
    }
}

/// A refused call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Which step refused.
    pub stage: RefusalStage,
    /// The name the model used.
    pub tool: String,
    /// Why.
    pub reason: String,
}

impl Refusal {
    /// What the model is told instead of the output: a short, fixed sentence for the
    /// step that refused, never the reason's detail and never the output of a refused
    /// call (OAS-C8: neither the capability nor its response). The model is untrusted
    /// and may relay what it is told; the detail is for the operator's audit trail.
    pub fn to_model_json(&self) -> serde_json::Value {
        json!({
            "error": "call refused",
            "stage": self.stage.as_str(),
            "reason": self.stage.model_message(),
        })
    }
}

/// What became of one call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// The output, for the model; shared with the engagement's record of the call when
    /// its results are collected (OAS-C2).
    Returned(Arc<serde_json::Value>),
    /// The call was refused.
    Refused(Refusal),
}

/// Whether appending `next` would make `list` end in `n` back-to-back copies of one
/// block of calls, for any block length (OAS-L2). This is the plain definition, kept as
/// the reference that [`Engagement::would_short_circuit`] is tested against.
pub fn would_short_circuit(list: &[u32], next: u32, n: u64) -> bool {
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    if n == 0 {
        return false;
    }
    let len = list.len() + 1;
    let at = |index: usize| list.get(index).copied().unwrap_or(next);
    (1..=len / n).any(|block| {
        let start = len - block * n;
        (start..len - block).all(|index| at(index) == at(index + block))
    })
}

struct CallContext<'a> {
    runtime: &'a Runtime,
    agent: &'a AgentSpec,
    call: &'a ToolCall,
    /// Where a wait for review is saved before it starts; `None` saves nothing.
    wait_point: Option<&'a WaitPoint<'a>>,
}

impl CallContext<'_> {
    fn audit(
        &self,
        engagement: &Engagement,
        action: AuditAction,
        detail: AuditDetail<'_>,
    ) -> Result<(), Refusal> {
        self.runtime
            .audit
            .append(AuditRecord {
                engagement: engagement.id(),
                parent: engagement.parent(),
                user: engagement.user().map(|user| user.id.as_str()),
                agent: &self.agent.name,
                action,
                subject: &self.call.name,
                detail,
            })
            .map_err(|error| Refusal {
                stage: RefusalStage::Audit,
                tool: self.call.name.clone(),
                reason: error.to_string(),
            })
    }

    fn refuse(&self, engagement: &mut Engagement, stage: RefusalStage, reason: String) -> Refusal {
        // Arguments too deep to be read back (see `MAX_ARGUMENT_DEPTH`) are not recorded.
        let inputs = if nesting_depth(&self.call.arguments) > MAX_ARGUMENT_DEPTH {
            serde_json::Value::String(format!(
                "(not recorded: nested deeper than {MAX_ARGUMENT_DEPTH} levels)"
            ))
        } else {
            self.call.arguments.as_ref().clone()
        };
        tracing::warn!(
            engagement = engagement.id(),
            tool = %self.call.name,
            stage = stage.as_str(),
            %reason,
            "call refused"
        );
        let refusal = Refusal {
            stage,
            tool: self.call.name.clone(),
            reason,
        };
        engagement.record_refused(RefusedCall {
            name: self.call.name.clone(),
            inputs,
            stage: stage.as_str().to_string(),
            reason: refusal.reason.clone(),
        });
        let action = if stage == RefusalStage::Invoke {
            AuditAction::Failed
        } else {
            AuditAction::Denied
        };
        let detail = AuditDetail {
            stage: Some(stage.as_str()),
            reason: Some(&refusal.reason),
            ..AuditDetail::default()
        };
        // A refusal that cannot be audited is still a refusal; the audit failure makes
        // it fatal so that nothing further runs unrecorded.
        match self.audit(engagement, action, detail) {
            Ok(()) => refusal,
            Err(audit_refusal) => audit_refusal,
        }
    }

    async fn review(
        &self,
        engagement: &mut Engagement,
        reviewer: &ReviewerRef,
        stage: RefusalStage,
        inputs: &serde_json::Value,
        outputs: Option<&serde_json::Value>,
    ) -> Result<(), Refusal> {
        let stage_name = if outputs.is_some() { "output" } else { "input" };
        let reviewer_id = match reviewer {
            ReviewerRef::User => match engagement.user() {
                Some(user) => user.id.clone(),
                None => {
                    return Err(self.refuse(
                        engagement,
                        stage,
                        "review by the user is required but the engagement has no user".to_string(),
                    ));
                }
            },
            ReviewerRef::Owner => self.agent.owner.clone(),
            ReviewerRef::NamedUser(name) | ReviewerRef::Agent(name) => name.clone(),
        };
        // A wait point (OAS-C7): the engagement is saved before it waits, with the
        // output under review, so that after a restart the same output is reviewed
        // again rather than obtained by invoking the tool a second time.
        if let Some(point) = self.wait_point
            && let Err(detail) = point.save(engagement, outputs).await
        {
            return Err(self.refuse(
                engagement,
                stage,
                format!("the engagement could not be saved before its review: {detail}"),
            ));
        }
        let hash = call_hash(&self.call.name, stage_name, inputs, outputs);
        let root_engagement = self
            .wait_point
            .and_then(WaitPoint::root_engagement)
            .unwrap_or(engagement.id())
            .to_string();
        let request = ReviewRequest {
            engagement: engagement.id().to_string(),
            root_engagement,
            agent: self.agent.name.clone(),
            reviewer: reviewer.clone(),
            reviewer_id: reviewer_id.clone(),
            tool: self.call.name.clone(),
            stage: stage_name,
            inputs: inputs.clone(),
            outputs: outputs.cloned(),
            call_hash: hash.clone(),
            engagement_state: engagement.to_reviewer_json(),
        };
        engagement.set_status(EngagementStatus::AwaitingReview {
            tool: self.call.name.clone(),
            reviewer: reviewer_id,
        });
        let decision = tokio::time::timeout(
            self.runtime.review_timeout,
            self.runtime.reviewer.review(&request),
        )
        .await;
        engagement.set_status(EngagementStatus::AwaitingModel);
        match decision {
            Err(_) => Err(self.refuse(engagement, stage, "review timed out".to_string())),
            Ok(ReviewDecision::Refuse { reason }) => {
                Err(self.refuse(engagement, stage, format!("reviewer refused: {reason}")))
            }
            Ok(ReviewDecision::Approve { call_hash }) if call_hash != hash => Err(self.refuse(
                engagement,
                stage,
                "the approval is for a different call".to_string(),
            )),
            Ok(ReviewDecision::Approve { .. }) => self.audit(
                engagement,
                AuditAction::Approved,
                AuditDetail {
                    stage: Some(stage_name),
                    call_hash: Some(&hash),
                    ..AuditDetail::default()
                },
            ),
        }
    }

    /// AGX-S1: audits what a shadow restriction would have decided about the pending
    /// call — refused (with the reason), sent to review, or allowed — in the same order
    /// an enforced restriction decides. Nothing is refused and no reviewer is asked; only
    /// an audit trail that cannot be written stops the call, as for any other entry.
    fn observe(
        &self,
        engagement: &mut Engagement,
        shadow: &RestrictionSpec,
        stage: RefusalStage,
        pending: Pending<'_>,
    ) -> Result<(), Refusal> {
        let (decision, reason) = match restriction_decision(engagement, shadow, pending) {
            RestrictionDecision::Allowed => ("allowed", None),
            RestrictionDecision::Refused(reason) => ("refused", Some(reason)),
            RestrictionDecision::Review(_) => ("review", None),
        };
        self.audit(
            engagement,
            AuditAction::Shadow,
            AuditDetail {
                stage: Some(stage.as_str()),
                decision: Some(decision),
                reason: reason.as_deref(),
                ..AuditDetail::default()
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn restrict(
        &self,
        engagement: &mut Engagement,
        restriction: Option<&RestrictionSpec>,
        pending: Pending<'_>,
        stages: (RefusalStage, RefusalStage),
        inputs: &serde_json::Value,
        outputs: Option<&serde_json::Value>,
        ask_reviewer: bool,
    ) -> Result<(), Refusal> {
        let Some(restriction) = restriction else {
            return Ok(());
        };
        // AGX-S1: the candidate is asked first, so that its would-be decision is
        // recorded for every call the stage sees, including those the enforced rule
        // refuses.
        if let Some(shadow) = &restriction.shadow {
            self.observe(engagement, shadow, stages.0, pending)?;
        }
        // The enforced restriction decides by the same rules as its shadow. A condition
        // is evaluated for a resumed call too, whose review was approved before the
        // restart, so that an error in it denies on every path.
        let reviewer = match restriction_decision(engagement, restriction, pending) {
            RestrictionDecision::Allowed => return Ok(()),
            RestrictionDecision::Refused(reason) => {
                return Err(self.refuse(engagement, stages.0, reason));
            }
            RestrictionDecision::Review(reviewer) => reviewer,
        };
        if ask_reviewer {
            // Boxed: a review's wait is large and rare, and kept inline it would make
            // every call's future larger, and every call copy it.
            Box::pin(self.review(engagement, reviewer, stages.1, inputs, outputs)).await?;
        }
        Ok(())
    }
}

/// Who is making a call: the model an agent called as a tool runs on when the runtime
/// names none for it, how many agents deep the calling engagement is, where a wait
/// for review is saved, and what a resumed call already obtained.
#[derive(Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The calling engagement's model.
    pub model: Option<&'a dyn Model>,
    /// 0 for the engagement the user started, 1 for an agent it called, and so on.
    pub depth: usize,
    /// Where a wait for review inside this call is saved (the driver's snapshot);
    /// `None` saves nothing.
    pub wait_point: Option<&'a WaitPoint<'a>>,
    /// The call's result, obtained before a restart (an output that waited for its
    /// review, or the answer of the resumed agent it engaged): the call is checked
    /// from its input schema on as usual, but its input review was approved before
    /// the result existed and the call is not invoked again.
    pub obtained: Option<&'a Result<serde_json::Value, ToolError>>,
}

impl std::fmt::Debug for Caller<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Caller")
            .field("has_model", &self.model.is_some())
            .field("depth", &self.depth)
            .field("wait_point", &self.wait_point)
            .field("resumed", &self.obtained.is_some())
            .finish()
    }
}

/// AGX-L1: refuses a model turn that asks for more calls than the agent's
/// `max_calls_per_turn`, before any of them runs, or answers `None` when the turn is
/// within it. The refusal is audited against the turn's first call, and ends the
/// engagement.
pub fn refuse_oversized_turn(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    calls: &[ToolCall],
) -> Option<Refusal> {
    let limit = agent.call_limits.per_turn;
    if u64::try_from(calls.len()).is_ok_and(|count| count <= limit) {
        return None;
    }
    let first = calls.first()?;
    let context = CallContext {
        runtime,
        agent,
        call: first,
        wait_point: None,
    };
    Some(context.refuse(
        engagement,
        RefusalStage::CallLimit,
        format!(
            "the model asked for {} tool calls in one turn, more than its limit of {limit} (max_calls_per_turn)",
            calls.len()
        ),
    ))
}

/// Runs one tool call the model asked for through every check, in the fixed order. An
/// agent called as a tool runs on the model the runtime names for it, or is refused.
pub async fn enforce_call(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    call: &ToolCall,
) -> CallOutcome {
    enforce_call_as(runtime, agent, engagement, call, Caller::default()).await
}

/// [`enforce_call`] for a caller whose model and nesting depth are known.
pub async fn enforce_call_as(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    call: &ToolCall,
    caller: Caller<'_>,
) -> CallOutcome {
    match enforce_call_inner(runtime, agent, engagement, call, caller).await {
        Ok(output) => {
            // AGX-P1: the model is about to see this output, so what it holds becomes a
            // source later calls' values may have come from, labelled by its schema —
            // for an agent whose rules ask where values came from.
            if agent.asks_provenance() {
                let schema = runtime
                    .tools
                    .get(&call.name)
                    .map(|tool| &tool.spec.output_schema);
                engagement.observe_output(&call.name, &output, schema);
            }
            CallOutcome::Returned(output)
        }
        Err(refusal) => CallOutcome::Refused(refusal),
    }
}

/// What performs a call that passed every check before invocation.
enum Target {
    /// A registered backend.
    Backend(Arc<dyn ToolBackend>),
    /// A nested engagement of an agent of the set.
    Agent(Arc<AgentSpec>),
}

/// Runs an agent called as a tool: its input `{text}` is the callee's input, and its
/// output is `{text}` and the callee's exposes (Reading: an agent as a tool). The
/// callee runs on the same runtime, so every one of its own calls is enforced as well;
/// anything but a completed engagement is an error. With `outer`, the callee's waits
/// are saved inside its caller's snapshot.
async fn invoke_agent(
    runtime: &Runtime,
    callee: &AgentSpec,
    parent: &Engagement,
    arguments: &serde_json::Value,
    caller: Caller<'_>,
    outer: Option<&OuterCall<'_>>,
) -> Result<serde_json::Value, ToolError> {
    let failed = |detail: String| ToolError::Agent {
        agent: callee.name.clone(),
        detail,
    };
    let depth = caller.depth.saturating_add(1);
    if depth > runtime.max_agent_depth {
        return Err(failed(format!(
            "agents may call agents at most {} deep",
            runtime.max_agent_depth
        )));
    }
    let model: &dyn Model = match runtime.agent_models.get(&callee.name) {
        Some(model) => model.as_ref(),
        None => caller
            .model
            .ok_or_else(|| failed("no model is configured for it".to_string()))?,
    };
    let Some(text) = arguments.get("text").and_then(serde_json::Value::as_str) else {
        return Err(failed("the input has no `text`".to_string()));
    };
    let outcome = runtime
        .run_nested(
            model,
            EngagementRequest {
                agent: callee,
                user: parent.user().cloned(),
                input: text,
                memory: None,
            },
            parent.id(),
            parent.request(),
            depth,
            outer,
        )
        .await;
    agent_output(&callee.name, outcome)
}

async fn enforce_call_inner(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    call: &ToolCall,
    caller: Caller<'_>,
) -> Result<Arc<serde_json::Value>, Refusal> {
    let context = CallContext {
        runtime,
        agent,
        call,
        wait_point: caller.wait_point,
    };
    // OAS-G5 and OAS-L2 stop the engagement; a caller that keeps calling after that is
    // refused here rather than trusted to stop.
    if engagement.is_finished() {
        return Err(context.refuse(
            engagement,
            RefusalStage::Finished,
            "the engagement has ended".to_string(),
        ));
    }
    // AGX-L2: every call the model asks for counts, allowed or refused.
    let asked = engagement.call_list().len() + engagement.refused().len();
    let limit = agent.call_limits.total;
    if u64::try_from(asked).map_or(true, |asked| asked >= limit) {
        return Err(context.refuse(
            engagement,
            RefusalStage::CallLimit,
            format!("the engagement has asked for {limit} tool calls, its limit (max_calls)"),
        ));
    }
    // Arguments nested deeper than the audit trail and the store can read back (JSON
    // parsers stop at 128 levels, and an entry adds its own) are refused before they are
    // recorded anywhere: otherwise a model could make the trail unverifiable.
    if nesting_depth(&call.arguments) > MAX_ARGUMENT_DEPTH {
        return Err(context.refuse(
            engagement,
            RefusalStage::InputSchema,
            format!("the arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels"),
        ));
    }
    context.audit(
        engagement,
        AuditAction::Intended,
        AuditDetail {
            inputs: Some(&call.arguments),
            ..AuditDetail::default()
        },
    )?;

    // The model's tool name is untrusted text; it is matched here and nowhere else.
    let Some(index) = agent.capability_index(&call.name) else {
        return Err(context.refuse(
            engagement,
            RefusalStage::UndeclaredTool,
            format!("`{}` is not a capability of this agent", call.name),
        ));
    };
    let Some(capability) = agent.capabilities.get(index) else {
        return Err(context.refuse(
            engagement,
            RefusalStage::UndeclaredTool,
            "no capability".into(),
        ));
    };
    let Some(tool) = runtime.tools.get(&capability.name) else {
        return Err(context.refuse(
            engagement,
            RefusalStage::UndeclaredTool,
            format!("no tool interface is known for `{}`", capability.name),
        ));
    };

    if let Some(limit) = agent.short_circuit
        && engagement.would_short_circuit(index, limit)
    {
        return Err(context.refuse(
            engagement,
            RefusalStage::ShortCircuit,
            format!("the call would repeat a block of calls {limit} times back to back"),
        ));
    }

    if let Err(error) = tool.validate_input(&call.arguments) {
        return Err(context.refuse(engagement, RefusalStage::InputSchema, error.to_string()));
    }
    // The pending call as its input restriction sees it; recorded as is when its output
    // is not collected (OAS-C2). Its CEL value is built only if a check interprets it.
    // AGX-T1: the call starts now; `now` is this time for its input restriction.
    let started_at = runtime.clock.now();
    engagement.set_check_time(started_at);
    let input_invocation = Invocation::new(Arc::clone(&call.arguments)).started(started_at);
    context
        .restrict(
            engagement,
            capability.input_restriction.as_ref(),
            Pending {
                capability: index,
                invocation: &input_invocation,
            },
            (RefusalStage::InputRestriction, RefusalStage::InputReview),
            &call.arguments,
            None,
            caller.obtained.is_none(),
        )
        .await?;

    let (output, journaled) = match caller.obtained {
        Some(obtained) => (
            obtained.clone().map_err(|error| {
                context.refuse(engagement, invocation_failure(&error), error.to_string())
            })?,
            false,
        ),
        None => invoke(&context, engagement, index, capability, tool, caller).await?,
    };
    if let Err(error) = tool.validate_output(&output) {
        return Err(context.refuse(engagement, RefusalStage::OutputSchema, error.to_string()));
    }
    // From here on the output is shared with the record rather than copied for it; a
    // caller that needs an owned value (the driver, for the model's message) copies it.
    let output = Arc::new(output);
    // AGX-T1: the call has ended; `now` is this time for its output restriction.
    let ended_at = runtime.clock.now();
    engagement.set_check_time(ended_at);
    let output_invocation = input_invocation
        .with_outputs(Arc::clone(&output))
        .ended(ended_at);
    context
        .restrict(
            engagement,
            capability.output_restriction.as_ref(),
            Pending {
                capability: index,
                invocation: &output_invocation,
            },
            (RefusalStage::OutputRestriction, RefusalStage::OutputReview),
            &call.arguments,
            Some(&output),
            true,
        )
        .await?;

    // AGX-T2: the answer is journaled once it has passed every output check, never
    // before (refused data is never stored): a server that takes the engagement over
    // from here goes on from this answer rather than invoking the call again. Until
    // then the journal says only that the call was under way.
    if journaled
        && let Some(point) = caller.wait_point
        && let Err(detail) = point.journal(engagement, Some(&output)).await
    {
        return Err(context.refuse(
            engagement,
            RefusalStage::JournalAnswer,
            format!("the call's answer could not be journaled: {detail}"),
        ));
    }
    // OAS-C2: without `collect_results` the engagement keeps the input only.
    let recorded = if capability.collect_results {
        output_invocation
    } else {
        output_invocation.without_outputs()
    };
    engagement.record_invocation(index, recorded);
    context.audit(engagement, AuditAction::Completed, AuditDetail::default())?;
    Ok(output)
}

/// Steps 6 and 7: credentials for the call's identity, then the invocation under its
/// deadline. A tool has the runtime's tool timeout; an agent called as a capability,
/// local or remote, has the agent timeout, since its engagement may wait for its own
/// reviewers and tools.
async fn invoke(
    context: &CallContext<'_>,
    engagement: &mut Engagement,
    index: usize,
    capability: &CapabilitySpec,
    tool: &RegisteredTool,
    caller: Caller<'_>,
) -> Result<(serde_json::Value, bool), Refusal> {
    let runtime = context.runtime;

    let identity = Identity::choose(
        capability.user_identity,
        engagement.shared_user_id(),
        capability.static_identity.as_ref(),
    );
    let credential = match runtime.credentials.credential(&capability.name, &identity) {
        Ok(credential) => credential,
        Err(error) => {
            return Err(context.refuse(engagement, RefusalStage::Credentials, error.to_string()));
        }
    };
    // A bound backend comes first, so that tests and hosts can stand in for an agent.
    let callee = (capability.kind == CapabilityKind::Agent)
        .then(|| runtime.agents.get(&capability.name))
        .flatten();
    let target = match (tool.backend(), callee) {
        (Ok(backend), _) => Target::Backend(Arc::clone(backend)),
        (Err(_), Some(callee)) => Target::Agent(Arc::clone(callee)),
        (Err(error), None) => {
            return Err(context.refuse(engagement, RefusalStage::Invoke, error.to_string()));
        }
    };
    let mut tool_context =
        ToolContext::for_call(engagement, &context.agent.name, identity, credential);
    // Whether the invocation was journaled (AGX-T2), so its answer is journaled too once
    // it has passed the output checks.
    let mut journaled = false;
    // The engagement awaits the tool from the moment the call has to wait for it. A
    // tool that answers at its first poll (an in-process tool, a cached answer) never
    // leaves the call, so nothing could see the status in between, and it is not set.
    let awaiting_tool = |engagement: &mut Engagement| {
        let tool = share_or_copy(engagement.shared_capability_name(index), &capability.name);
        engagement.set_status(EngagementStatus::AwaitingTool { tool });
    };
    let result = match target {
        Target::Backend(backend) => {
            let deadline = match capability.kind {
                CapabilityKind::Tool => runtime.tool_timeout,
                CapabilityKind::Agent | CapabilityKind::RemoteAgent { .. } => runtime.agent_timeout,
            };
            let remote = crate::tools::backend_as::<RemoteAgentTool>(backend.as_ref());
            match (&capability.kind, remote, caller.wait_point) {
                // A remote agent's engagement is saved at the wait point once started,
                // so that a restart resumes it rather than engaging it again; the call
                // keeps its deadline inside, so that a saved wait is always ended.
                (CapabilityKind::RemoteAgent { .. }, Some(remote), Some(point)) => {
                    // AGX-T2: journaled before the remote engagement is started, so a
                    // server that dies before its location is saved is never followed
                    // by a second start (the call's outcome is unknown instead).
                    if let Err(detail) = point.journal(engagement, None).await {
                        drop(tool_context);
                        return Err(context.refuse(
                            engagement,
                            RefusalStage::Journal,
                            format!("the call could not be journaled: {detail}"),
                        ));
                    }
                    journaled = point.journals();
                    awaiting_tool(engagement);
                    Ok(Box::pin(remote.call_at_wait_point(
                        point,
                        engagement,
                        context.call,
                        &tool_context,
                        deadline,
                    ))
                    .await)
                }
                _ => {
                    if backend.rerun() == Rerun::WithIdempotencyKey {
                        tool_context.idempotency_key =
                            Some(idempotency_key(engagement, &capability.name, context.call));
                    }
                    // AGX-T2: the call is journaled before it is sent, so a server
                    // that takes the engagement over knows it may have had its effect;
                    // a journal that cannot be written (the engagement is another
                    // server's now) stops the call before it is sent.
                    if let Some(point) = caller.wait_point
                        && let Err(detail) = point.journal(engagement, None).await
                    {
                        drop(tool_context);
                        return Err(context.refuse(
                            engagement,
                            RefusalStage::Journal,
                            format!("the call could not be journaled: {detail}"),
                        ));
                    }
                    journaled = caller.wait_point.is_some_and(WaitPoint::journals);
                    within(
                        deadline,
                        backend.invoke(&context.call.arguments, &tool_context),
                        || awaiting_tool(engagement),
                    )
                    .await
                }
            }
        }
        Target::Agent(callee) => {
            awaiting_tool(engagement);
            // The caller as it is at this call, for the callee's snapshots.
            let outer = caller
                .wait_point
                .map(|point| OuterCall::new(engagement, point));
            // Boxed, as a nested engagement's future is large and most calls are not
            // to agents.
            Box::pin(tokio::time::timeout(
                runtime.agent_timeout,
                invoke_agent(
                    runtime,
                    &callee,
                    engagement,
                    &context.call.arguments,
                    caller,
                    outer.as_ref(),
                ),
            ))
            .await
        }
    };
    // The credential is dropped here, before anything else sees the context.
    drop(tool_context);
    engagement.set_status(EngagementStatus::AwaitingModel);
    let output = match result {
        Err(_) => {
            return Err(context.refuse(engagement, RefusalStage::Invoke, "tool timed out".into()));
        }
        Ok(Err(error)) => {
            return Err(context.refuse(engagement, invocation_failure(&error), error.to_string()));
        }
        Ok(Ok(output)) => output,
    };
    Ok((output, journaled))
}

/// The idempotency key of a call (AGX-T2): a digest of the engagement, the call's
/// place in it (how many calls it had asked for before) and the call itself. Every
/// attempt of one call carries the same key, on any server, since a server that takes
/// the engagement over restores that place from its snapshot; two calls never share
/// one. It names nothing the tool does not already see.
fn idempotency_key(engagement: &Engagement, tool: &str, call: &ToolCall) -> String {
    let place = engagement.call_list().len() + engagement.refused().len();
    let text = format!(
        "agentc idempotency key\n{}\n{place}\n{}",
        engagement.id(),
        call_hash(tool, "call", &call.arguments, None)
    );
    crate::review::sha256_hex(text.as_bytes())
}

/// Runs `future` under a deadline of `limit` from now, as `tokio::time::timeout` does,
/// but makes the timer only if the future waits: a tool that answers at its first poll
/// (an in-process tool, a cached answer) costs one clock read rather than a timer
/// entry. The deadline is taken before the first poll, so a tool that waits gets
/// exactly the time it would have had under `tokio::time::timeout`. `on_wait` runs
/// once the first poll has found that the future waits, before the wait.
async fn within<F: std::future::Future>(
    limit: std::time::Duration,
    future: F,
    on_wait: impl FnOnce(),
) -> Result<F::Output, tokio::time::error::Elapsed> {
    // A limit too long to add to the clock (`--tool-timeout 18446744073709551615`) is
    // no limit at all, rather than an overflow that panics mid-call.
    let deadline = tokio::time::Instant::now().checked_add(limit);
    let mut future = std::pin::pin!(future);
    let first =
        std::future::poll_fn(|context| std::task::Poll::Ready(future.as_mut().poll(context))).await;
    match first {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => {
            on_wait();
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, future).await,
                None => Ok(future.await),
            }
        }
    }
}

/// The detail of a guardrail's audit entries.
const GUARDRAIL_DETAIL: AuditDetail<'static> = AuditDetail {
    inputs: None,
    guardrail: true,
    stage: None,
    reason: None,
    call_hash: None,
    decision: None,
};

/// Runs a guardrail over a text (OAS-G2..G5): its tool is given `{text}`, and its
/// assertion sees the tool's output fields. Any failure is a fatal refusal.
pub async fn run_guardrail(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &mut Engagement,
    guardrail: &GuardrailSpec,
    text: &str,
) -> Result<(), Refusal> {
    let call = ToolCall {
        id: None,
        name: guardrail.tool_name.clone(),
        arguments: Arc::new(json!({ "text": text })),
    };
    let context = CallContext {
        runtime,
        agent,
        call: &call,
        wait_point: None,
    };
    context.audit(engagement, AuditAction::Intended, GUARDRAIL_DETAIL)?;
    let fail = |engagement: &mut Engagement, reason: String| {
        context.refuse(engagement, RefusalStage::Guardrail, reason)
    };
    let Some(tool) = runtime.tools.get(&guardrail.tool_name) else {
        return Err(fail(
            engagement,
            "the guardrail tool is not known".to_string(),
        ));
    };
    if let Err(error) = tool.validate_input(&call.arguments) {
        return Err(fail(engagement, error.to_string()));
    }
    let backend = match tool.backend() {
        Ok(backend) => Arc::clone(backend),
        Err(error) => return Err(fail(engagement, error.to_string())),
    };
    let tool_context = ToolContext::for_call(engagement, &agent.name, Identity::Anonymous, None);
    let output = match within(
        runtime.tool_timeout,
        backend.invoke(&call.arguments, &tool_context),
        || {},
    )
    .await
    {
        Err(_) => return Err(fail(engagement, "guardrail tool timed out".to_string())),
        Ok(Err(error)) => return Err(fail(engagement, error.to_string())),
        Ok(Ok(output)) => output,
    };
    if let Err(error) = tool.validate_output(&output) {
        return Err(fail(engagement, error.to_string()));
    }
    let fields = JsonFields::new(&output);
    let check = guardrail.assertion.as_ref();
    match check.holds(&fields) {
        Ok(true) => context.audit(engagement, AuditAction::Completed, GUARDRAIL_DETAIL),
        Ok(false) => Err(fail(
            engagement,
            refusal_reason("guardrail assertion is false", check, &fields),
        )),
        Err(error) => Err(fail(
            engagement,
            refusal_reason(
                &format!("guardrail assertion could not be evaluated: {error}"),
                check,
                &fields,
            ),
        )),
    }
}

/// What a restriction decides about the pending call, before any reviewer is asked.
enum RestrictionDecision<'a> {
    /// The call goes on.
    Allowed,
    /// The call is refused at the restriction's stage, with the operator's reason.
    Refused(String),
    /// The call goes to this reviewer (OAS-C7).
    Review(&'a ReviewerRef),
}

/// The one decision rule of a restriction, for the enforced one and its shadow
/// (AGX-S1) alike: the assertion first (false, or an error, refuses: OAS-C8); then,
/// with a reviewer, the review condition (AGX-V1: true asks, false allows, an error
/// refuses); a reviewer without a condition is always asked.
fn restriction_decision<'a>(
    engagement: &mut Engagement,
    restriction: &'a RestrictionSpec,
    pending: Pending<'_>,
) -> RestrictionDecision<'a> {
    for check in restriction.own_checks() {
        engagement.prepare(check.roots());
    }
    let scope = engagement.scope(Some(pending));
    if let Some(assertion) = &restriction.assertion {
        let check = assertion.as_ref();
        match check.holds(&scope) {
            Ok(true) => {}
            Ok(false) => {
                return RestrictionDecision::Refused(refusal_reason(
                    "assertion is false",
                    check,
                    &scope,
                ));
            }
            Err(error) => {
                let what = format!("assertion could not be evaluated: {error}");
                return RestrictionDecision::Refused(refusal_reason(&what, check, &scope));
            }
        }
    }
    let Some(reviewer) = &restriction.require_review else {
        return RestrictionDecision::Allowed;
    };
    let Some(condition) = &restriction.review_when else {
        return RestrictionDecision::Review(reviewer);
    };
    match condition.holds(&scope) {
        Ok(true) => RestrictionDecision::Review(reviewer),
        Ok(false) => RestrictionDecision::Allowed,
        Err(error) => {
            let what = format!("review condition could not be evaluated: {error}");
            RestrictionDecision::Refused(refusal_reason(&what, condition.as_ref(), &scope))
        }
    }
}

/// The operator's reason for a check that refused (AGX-L3): what went wrong, which part
/// of the rule failed (the first false conjunct, in the rule's words) and where the rule
/// is written — `assertion is false: conjunct 2 of 3 is false, \`…\` (at agent.yaml:14:9)`.
/// Only the policy's text and the engine's messages appear, never a value of the call.
fn refusal_reason(what: &str, check: &dyn Check, variables: &dyn VariableSource) -> String {
    let mut reason = what.to_string();
    if let Some(part) = check.failing_part(variables) {
        reason.push_str(": ");
        reason.push_str(&part);
    }
    if let Some(location) = check.location() {
        reason.push_str(" (at ");
        reason.push_str(location);
        reason.push(')');
    }
    reason
}

/// Evaluates `exposes` at a yield (OAS-X1): exactly the declared keys, or an error
/// naming the first key that could not be evaluated.
pub fn evaluate_exposes(
    agent: &AgentSpec,
    engagement: &mut Engagement,
) -> Result<serde_json::Map<String, serde_json::Value>, (String, String)> {
    let mut exposes = serde_json::Map::new();
    for (key, selection) in &agent.exposes {
        engagement.prepare(selection.roots());
        let value: Result<Value, _> = selection.evaluate(&engagement.scope(None));
        match value {
            Ok(value) => {
                exposes.insert(key.clone(), crate::check::value_to_json(&value));
            }
            Err(error) => return Err((key.clone(), error.to_string())),
        }
    }
    Ok(exposes)
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
        (
            EngagementStatus::Failed {
                reason: reason @ FailureReason::OutcomeUnknown { .. },
            },
            _,
        ) => Err(ToolError::AgentOutcomeUnknown {
            agent: callee.to_string(),
            detail: format!(
                "engagement {} failed: {}",
                outcome.engagement_id,
                serde_json::to_string(&reason).unwrap_or_default()
            ),
        }),
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

/// The stage at which a failed invocation is refused: an agent that stopped with a call
/// whose outcome is unknown stops its caller too (AGX-T2), any other failure is the
/// tool's, reported to the model.
fn invocation_failure(error: &ToolError) -> RefusalStage {
    match error {
        ToolError::AgentOutcomeUnknown { .. } => RefusalStage::JournalAnswer,
        _ => RefusalStage::Invoke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AGX-T2: an agent called as a tool that stopped with a call whose outcome is
    /// unknown stops its caller (a fatal stage), so the caller's model cannot call it
    /// again; any other failure of the agent is reported to the model.
    #[test]
    fn an_agent_stopped_with_an_unknown_outcome_stops_its_caller() {
        let outcome = |reason: FailureReason| EngagementOutcome {
            engagement_id: "e-inner".into(),
            status: EngagementStatus::Failed { reason },
            text: None,
            exposes: serde_json::Map::new(),
            engagement: serde_json::Value::Null,
            snapshot: crate::context::EngagementSnapshot::default(),
        };
        let unknown = agent_output(
            "payer",
            outcome(FailureReason::OutcomeUnknown {
                tool: "pay".into(),
                detail: "cut off".into(),
            }),
        )
        .unwrap_err();
        assert!(matches!(unknown, ToolError::AgentOutcomeUnknown { .. }));
        assert_eq!(invocation_failure(&unknown), RefusalStage::JournalAnswer);
        assert!(RefusalStage::JournalAnswer.is_fatal());
        let failed = agent_output(
            "payer",
            outcome(FailureReason::Model {
                detail: "no answer".into(),
            }),
        )
        .unwrap_err();
        assert_eq!(invocation_failure(&failed), RefusalStage::Invoke);
        assert!(!RefusalStage::Invoke.is_fatal());
    }

    /// A future that answers at once is not given a timer: it completes outside any
    /// Tokio runtime, where making one would panic.
    #[test]
    fn tool_timeout_overflow_saturates_instead_of_panicking() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let waited = std::cell::Cell::new(false);
            let slow = async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                7
            };
            let answer = within(std::time::Duration::MAX, slow, || waited.set(true)).await;
            assert_eq!(answer.ok(), Some(7));
            assert!(waited.get());
            let answer = within(std::time::Duration::from_secs(u64::MAX), async { 8 }, || {}).await;
            assert_eq!(answer.ok(), Some(8));
        });
    }

    #[test]
    fn within_answers_an_immediate_future_without_a_timer() {
        let waited = std::cell::Cell::new(false);
        let future = within(std::time::Duration::from_millis(1), async { 7 }, || {
            waited.set(true)
        });
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            future.as_mut().poll(&mut context),
            std::task::Poll::Ready(Ok(7))
        ));
        assert!(!waited.get(), "an immediate answer is not a wait");
    }

    /// A future that waits is cut off at its deadline, which counts from before its
    /// first poll: time spent inside that poll is not given back.
    #[tokio::test(start_paused = true)]
    async fn within_cuts_off_a_waiting_future_at_a_deadline_taken_before_its_first_poll() {
        let limit = std::time::Duration::from_millis(20);
        let waits = std::cell::Cell::new(0);
        let on_wait = || waits.set(waits.get() + 1);
        assert!(
            within(limit, std::future::pending::<()>(), on_wait)
                .await
                .is_err()
        );
        let started = tokio::time::Instant::now();
        let slow_first_poll = async {
            tokio::time::advance(std::time::Duration::from_millis(30)).await;
            std::future::pending::<()>().await;
        };
        assert!(within(limit, slow_first_poll, on_wait).await.is_err());
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(30));
        let waits_then_answers = async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            5
        };
        assert_eq!(
            within(limit, waits_then_answers, on_wait).await.ok(),
            Some(5)
        );
        // Each of the three waited, and was reported once.
        assert_eq!(waits.get(), 3);
    }

    fn allowed_sequence(sequence: &[u32], n: u64) -> Vec<bool> {
        let mut list = Vec::new();
        sequence
            .iter()
            .map(|next| {
                let refused = would_short_circuit(&list, *next, n);
                if !refused {
                    list.push(*next);
                }
                !refused
            })
            .collect()
    }

    #[test]
    fn short_circuit_spec_sequences() {
        assert_eq!(allowed_sequence(&[1, 1, 1], 3), [true, true, false]);
        assert_eq!(
            allowed_sequence(&[1, 2, 1, 2, 1, 2], 3),
            [true, true, true, true, true, false]
        );
        assert_eq!(allowed_sequence(&[1, 2, 1, 2, 1], 3), [true; 5]);
        // Longer blocks count too, and a block need not start at the beginning.
        assert_eq!(
            allowed_sequence(&[9, 1, 2, 3, 1, 2, 3, 1, 2, 3], 3),
            [true, true, true, true, true, true, true, true, true, false]
        );
        assert_eq!(allowed_sequence(&[1, 1], 2), [true, false]);
    }

    #[test]
    fn incremental_short_circuit_matches_the_definition() {
        // A fixed pseudo-random walk over three tools, for several limits.
        let mut state = 0x2545_f491_u32;
        for n in 1..=4u64 {
            let mut list = Vec::new();
            let mut engagement = Engagement::new("e", "a", &["t0", "t1", "t2"], None, None);
            for _ in 0..400 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let next = state % 3;
                let expected = would_short_circuit(&list, next, n);
                assert_eq!(
                    engagement.would_short_circuit(next as usize, n),
                    expected,
                    "n={n} list={list:?} next={next}"
                );
                if !expected {
                    list.push(next);
                    let input = std::sync::Arc::new(serde_json::json!({}));
                    engagement.record(next as usize, input, None);
                }
            }
        }
    }
}
