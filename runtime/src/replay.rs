//! Replaying recorded engagements through an agent's current policies, with no model
//! and no tool (AGX-R1): the recorded calls stand for the model's, the recorded outputs
//! for the tools' answers. Each call goes through the same enforcement as a live one
//! ([`enforce_call_as`]: schemas, restrictions, provenance, review, limits), so a
//! decision here is the decision the runtime would make.
//!
//! A refused call does not end the replay: the next recorded call follows it, as the
//! engagement continues after a refusal (a fatal refusal — a short circuit, a call
//! limit — makes every later call `refused` at stage `finished`). A call sent to review
//! is recorded as `review` and then approved, so that the recorded trajectory goes on
//! as it did. Recorded outputs are given back as recorded; a recorded `error` is the
//! tool failing.
//!
//! Not replayed: guardrails (they call a tool whose answer a trace does not hold) and
//! agents used as capabilities (a nested engagement needs its own model): a call to an
//! agent fails at `invoke`, which the report shows as such.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use agentc_cel::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::AuditLog;
use crate::context::Runtime;
use crate::credentials::{CredentialError, CredentialProvider, Identity, Secret};
use crate::enforce::{CallOutcome, Caller, enforce_call_as};
use crate::engagement::{CallInOrder, Clock, Engagement, EngagementState, UserIdentity, now};
use crate::model::ToolCall;
use crate::review::{ReviewDecision, ReviewRequest, Reviewer};
use crate::spec::{AgentSpec, SpecSet};
use crate::tools::{ToolBackend, ToolContext, ToolError, ToolRegistry};

/// One recorded engagement (a line of a trace file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The engagement's name in reports.
    pub id: String,
    /// The agent engaged.
    pub agent: String,
    /// The engaging user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserIdentity>,
    /// The user's inputs, in order (AGX-E1).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// When the engagement started (RFC 3339); without it, when the replay runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The model's calls, in order.
    #[serde(default)]
    pub calls: Vec<TraceCall>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceCall {
    /// The capability the model called.
    pub name: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    /// The input it followed: the call is replayed once inputs `0..=turn` are in the
    /// request (default 0, the first instruction).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turn: usize,
    /// What the tool answered, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// How the tool failed, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the call started (RFC 3339, AGX-T1); without it, when the call before it
    /// ended (or the engagement started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the call ended; without it, when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The decision the policies are expected to make (`--expect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Decision>,
    /// Labels carried into the report (for example where the call came from).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Trace {
    /// The engagement as a trace that `agentc replay` can run against another version
    /// of the policies (AGX-R1): the user's inputs, and every call the model asked for,
    /// in order, with its arguments, when it started and ended, and what the tool
    /// answered (or how it failed), from its saved state. Outputs that the engagement does not keep are not
    /// in it: those of a capability that does not collect results (OAS-C2), and those
    /// a check refused (refused data never travels); such a call replays as a tool that
    /// answered nothing.
    pub fn from_state(state: &EngagementState) -> Trace {
        let order: Vec<CallInOrder> =
            if state.order.len() == state.history.len() + state.refused.len() {
                state.order.clone()
            } else {
                // A state saved before the order was kept: recorded calls, then refused.
                let last_turn = state.request.len().saturating_sub(1);
                (0..state.history.len())
                    .map(|index| (false, index))
                    .chain((0..state.refused.len()).map(|index| (true, index)))
                    .map(|(refused, index)| CallInOrder {
                        refused,
                        index,
                        turn: last_turn,
                    })
                    .collect()
            };
        let calls = order
            .iter()
            .filter_map(|call| {
                if call.refused {
                    let refused = state.refused.get(call.index)?;
                    return Some(TraceCall {
                        name: refused.name.clone(),
                        arguments: refused.inputs.clone(),
                        turn: call.turn,
                        output: None,
                        error: (refused.stage == "invoke").then(|| refused.reason.clone()),
                        started_at: None,
                        ended_at: None,
                        expect: None,
                        tags: BTreeMap::new(),
                    });
                }
                let recorded = state.history.get(call.index)?;
                Some(TraceCall {
                    name: recorded.name.clone(),
                    arguments: recorded.inputs.clone(),
                    turn: call.turn,
                    output: recorded.outputs.clone(),
                    error: None,
                    started_at: recorded.started_at.clone(),
                    ended_at: recorded.ended_at.clone(),
                    expect: None,
                    tags: BTreeMap::new(),
                })
            })
            .collect();
        Trace {
            id: state.id.clone(),
            agent: state.agent.clone(),
            user: state.user.clone(),
            inputs: state.request.clone(),
            started_at: state.started_at.clone(),
            calls,
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn is_zero(turn: &usize) -> bool {
    *turn == 0
}

/// What the policies decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every check passed (the tool's own failure, if recorded, is not a refusal).
    Allowed,
    /// A check refused it.
    Refused,
    /// It was sent to a reviewer (and approved for the replay to go on).
    Review,
}

impl Decision {
    /// The decision as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Refused => "refused",
            Decision::Review => "review",
        }
    }
}

/// The replayed decision about one recorded call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallDecision {
    /// The call's position in its trace, from 0.
    pub index: usize,
    /// The capability called.
    pub name: String,
    /// What the policies decided.
    pub decision: Decision,
    /// The step that refused, or that asked for the review (`input_review`,
    /// `output_review`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// Why it was refused, as the operator's output gives it (never the refused values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The recorded tool failed (the call passed every check before that).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tool_error: bool,
    /// The decision the trace expected, if it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Decision>,
    /// The recorded call's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl CallDecision {
    /// Whether the decision differs from the expected one (no expectation never differs).
    pub fn differs(&self) -> bool {
        self.expected
            .is_some_and(|expected| expected != self.decision)
    }
}

/// Why a trace could not be replayed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The trace names an agent the specs do not define.
    #[error("no agent named `{0}` in the specs")]
    UnknownAgent(String),
    /// The clock is outside what an engagement can record.
    #[error("the clock cannot be read as a timestamp")]
    Clock,
    /// A recorded time is not an RFC 3339 timestamp.
    #[error("{0} is not an RFC 3339 timestamp")]
    Time(String),
}

/// What the replayed tool answers next, and whether the current call was sent to review.
#[derive(Debug, Default)]
struct Slot {
    answer: Option<Result<serde_json::Value, String>>,
    review_stage: Option<&'static str>,
    /// What the clock reads (AGX-T1): the call's recorded start until the tool answers,
    /// then its recorded end.
    now: Option<Timestamp>,
    /// The call's recorded end.
    ended: Option<Timestamp>,
}

/// The replay's clock: the recorded times of the call being replayed.
#[derive(Debug)]
struct RecordedTimes(Arc<Mutex<Slot>>);

impl Clock for RecordedTimes {
    fn now(&self) -> Option<Timestamp> {
        lock(&self.0).now
    }
}

/// A lock poisoned by a panic elsewhere still holds consistent data here (each field is
/// replaced whole), so it is used rather than turned into a second panic.
fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every tool of a replay: answers with the recorded output of the call being replayed.
struct RecordedAnswers(Arc<Mutex<Slot>>);

#[async_trait]
impl ToolBackend for RecordedAnswers {
    async fn invoke(
        &self,
        _input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let mut slot = lock(&self.0);
        slot.now = slot.ended;
        match slot.answer.take() {
            Some(Ok(output)) => Ok(output),
            Some(Err(error)) => Err(ToolError::Failed(error)),
            None => Err(ToolError::Failed(format!(
                "the trace records no output for this call (engagement `{}`)",
                context.engagement
            ))),
        }
    }
}

/// The replay's reviewer: notes that the call was sent to review, then approves it.
struct NotingReviewer(Arc<Mutex<Slot>>);

#[async_trait]
impl Reviewer for NotingReviewer {
    async fn review(&self, request: &ReviewRequest) -> ReviewDecision {
        let mut slot = lock(&self.0);
        // The first review a call asks for names the stage (an input review comes
        // before an output review).
        if slot.review_stage.is_none() {
            slot.review_stage = Some(match request.stage {
                "output" => "output_review",
                _ => "input_review",
            });
        }
        ReviewDecision::Approve {
            call_hash: request.call_hash.clone(),
        }
    }
}

/// Credentials in a replay: nothing is called, so every identity gets a placeholder
/// that no tool ever sees; an identity mode the spec cannot satisfy is still refused by
/// enforcement before it asks for a credential.
struct PlaceholderCredentials;

impl CredentialProvider for PlaceholderCredentials {
    fn credential(
        &self,
        _tool: &str,
        _identity: &Identity,
    ) -> Result<Option<Secret>, CredentialError> {
        Ok(Some(Secret::new("replay-placeholder")))
    }
}

/// Replays traces against one set of specs.
pub struct Replayer {
    runtime: Runtime,
    agents: BTreeMap<String, Arc<AgentSpec>>,
    slot: Arc<Mutex<Slot>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Replayer")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer for the agents and tools of `specs`; every tool answers from the trace.
    pub fn new(specs: &SpecSet) -> Result<Self, ToolError> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let mut tools = ToolRegistry::new(&specs.tools)?;
        let backend: Arc<dyn ToolBackend> = Arc::new(RecordedAnswers(Arc::clone(&slot)));
        for tool in &specs.tools {
            tools.bind(&tool.name, Arc::clone(&backend))?;
        }
        let mut runtime =
            Runtime::new(tools, Arc::new(AuditLog::discard())).with_agents(&specs.agents);
        runtime.reviewer = Arc::new(NotingReviewer(Arc::clone(&slot)));
        runtime.credentials = Arc::new(PlaceholderCredentials);
        runtime.clock = Arc::new(RecordedTimes(Arc::clone(&slot)));
        let agents = specs
            .agents
            .iter()
            .map(|agent| (agent.name.clone(), Arc::new(agent.clone())))
            .collect();
        Ok(Replayer {
            runtime,
            agents,
            slot,
        })
    }

    /// Replays one trace: one decision per recorded call, in order.
    pub async fn replay(&self, trace: &Trace) -> Result<Vec<CallDecision>, ReplayError> {
        let agent = self
            .agents
            .get(&trace.agent)
            .ok_or_else(|| ReplayError::UnknownAgent(trace.agent.clone()))?;
        let names: Vec<&str> = agent
            .capabilities
            .iter()
            .map(|capability| capability.name.as_str())
            .collect();
        let time = |text: &str, what: String| {
            Timestamp::parse(text).ok_or_else(|| ReplayError::Time(format!("{what} `{text}`")))
        };
        let started_at = match &trace.started_at {
            Some(text) => time(text, "the engagement's start".into())?,
            None => now().ok_or(ReplayError::Clock)?,
        };
        let mut cursor = started_at;
        let mut engagement = Engagement::new(
            &trace.id,
            &agent.name,
            &names,
            trace.user.clone(),
            Some(started_at),
        );
        let mut inputs = trace.inputs.iter();
        let mut inputs_recorded = 0usize;
        let mut decisions = Vec::with_capacity(trace.calls.len());
        for (index, recorded) in trace.calls.iter().enumerate() {
            while inputs_recorded <= recorded.turn {
                let Some(input) = inputs.next() else { break };
                engagement.record_user_input(input);
                inputs_recorded += 1;
            }
            {
                let mut slot = lock(&self.slot);
                slot.answer = match (&recorded.output, &recorded.error) {
                    (_, Some(error)) => Some(Err(error.clone())),
                    (Some(output), None) => Some(Ok(output.clone())),
                    (None, None) => None,
                };
                slot.review_stage = None;
                let started = match &recorded.started_at {
                    Some(text) => time(text, format!("call {index}'s start"))?,
                    None => cursor,
                };
                let ended = match &recorded.ended_at {
                    Some(text) => time(text, format!("call {index}'s end"))?,
                    None => started,
                };
                cursor = ended;
                slot.now = Some(started);
                slot.ended = Some(ended);
            }
            let call = ToolCall {
                id: Some(format!("call-{index}")),
                name: recorded.name.clone(),
                arguments: Arc::new(recorded.arguments.clone()),
            };
            let caller = Caller {
                model: None,
                depth: 0,
                wait_point: None,
                obtained: None,
            };
            let outcome =
                enforce_call_as(&self.runtime, agent, &mut engagement, &call, caller).await;
            let review_stage = lock(&self.slot).review_stage.take();
            let (decision, stage, reason, tool_error) = match outcome {
                CallOutcome::Returned(_) => match review_stage {
                    Some(stage) => (Decision::Review, Some(stage), None, false),
                    None => (Decision::Allowed, None, None, false),
                },
                // The recorded tool failed after every check before it passed: the
                // policies' decision is the one they made before the call.
                CallOutcome::Refused(refusal) if refusal.stage.is_tool_failure() => {
                    match review_stage {
                        Some(stage) => (Decision::Review, Some(stage), None, true),
                        None => (Decision::Allowed, None, None, true),
                    }
                }
                CallOutcome::Refused(refusal) => (
                    Decision::Refused,
                    Some(refusal.stage.as_str()),
                    Some(refusal.reason),
                    false,
                ),
            };
            decisions.push(CallDecision {
                index,
                name: recorded.name.clone(),
                decision,
                stage,
                reason,
                tool_error,
                expected: recorded.expect,
                tags: recorded.tags.clone(),
            });
        }
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use agentc_compiler::SourceInput;
    use serde_json::json;

    /// At most one payment an hour (AGX-T1).
    const SPECS: &str = r#"
kind: openagentspec:v1/agent
name: payer
description: Pays bills.
intent: You pay the bills the user asks you to pay.
owner: finance@acme.example
capabilities:
  pay:
    input_restriction:
      assertion: history.pay.filter(c, c.started_at > now - duration("1h")).size() == 0
---
kind: openagentspec:v1/tool
name: pay
description: Pays a bill.
input: {type: object, properties: {amount: {type: integer}}, required: [amount]}
output: {type: object}
binding:
  native: {function: bills::pay}
"#;

    fn trace(times: &[Option<&str>]) -> Trace {
        let calls = times
            .iter()
            .map(|time| {
                serde_json::from_value(json!({
                    "name": "pay",
                    "arguments": {"amount": 5},
                    "output": {},
                    "started_at": time,
                    "ended_at": time,
                }))
                .unwrap()
            })
            .collect();
        Trace {
            id: "t".into(),
            agent: "payer".into(),
            user: None,
            inputs: vec!["Pay my bills.".into()],
            started_at: Some("2026-03-01T09:59:00Z".into()),
            calls,
        }
    }

    fn decisions(outcome: &[CallDecision]) -> Vec<Decision> {
        outcome.iter().map(|call| call.decision).collect()
    }

    /// AGX-T1 in a replay: the recorded times decide a window as they did live, and a
    /// trace without times puts every call at the engagement's start (each in the
    /// window of the one before). A time that is not RFC 3339 fails the trace.
    #[tokio::test]
    async fn agx_t1_recorded_times_decide_a_window() {
        let specs = SpecSet::from_sources(&[SourceInput {
            name: "specs.yaml".into(),
            bytes: SPECS.as_bytes().to_vec(),
        }])
        .unwrap();
        let replayer = Replayer::new(&specs).unwrap();
        let timed = trace(&[
            Some("2026-03-01T10:00:00Z"),
            Some("2026-03-01T10:30:00Z"),
            Some("2026-03-01T11:05:00Z"),
        ]);
        assert_eq!(
            decisions(&replayer.replay(&timed).await.unwrap()),
            [Decision::Allowed, Decision::Refused, Decision::Allowed]
        );
        let untimed = trace(&[None, None, None]);
        assert_eq!(
            decisions(&replayer.replay(&untimed).await.unwrap()),
            [Decision::Allowed, Decision::Refused, Decision::Refused]
        );
        let bad = trace(&[Some("yesterday")]);
        assert!(matches!(
            replayer.replay(&bad).await,
            Err(ReplayError::Time(message)) if message.contains("call 0's start")
        ));
    }
}
