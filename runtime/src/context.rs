//! The services an engagement runs with, and the engagement's place in a larger run:
//! [`Runtime`] (tools, reviewer, credentials, audit trail, limits), the request and
//! outcome of an engagement, its snapshot at a wait point, where snapshots go
//! ([`Checkpoints`]) and where one is taken ([`WaitPoint`]).
//!
//! At the bottom of the runtime's services: enforcement, the remote-agent client and the
//! engagement loop (`driver`) all work on these. Enforcement engages an agent used as a
//! capability through [`NestedEngagements`], which the engagement loop implements for
//! [`Runtime`], so that the per-call order in `enforce` does not depend on the loop
//! that calls it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::AuditLog;
use crate::credentials::{CredentialProvider, InMemoryCredentials};
use crate::engagement::{
    Clock, Engagement, EngagementState, EngagementStatus, SystemClock, UserIdentity,
};
use crate::model::{Message, Model, ToolCall};
use crate::review::{Reviewer, StaticReviewer};
use crate::spec::AgentSpec;
use crate::tools::ToolRegistry;

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
    /// Where the time of engagements and calls is read (AGX-T1): the system clock,
    /// unless a replay gives recorded times.
    pub clock: Arc<dyn Clock>,
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
            clock: Arc::new(SystemClock),
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
    pub(crate) messages: Vec<Message>,
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
    /// Where the first pending call's invocation was when this snapshot was saved
    /// (AGX-T2), for a server that takes the engagement over after the one running it
    /// died: under way (a resumed engagement makes the call again only when its tool
    /// allows, [`crate::tools::Rerun`]), or returned with `obtained_output` (checked
    /// again from that output, never invoked a second time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<CallJournal>,
}

/// Where the invocation of a snapshot's first pending call was (AGX-T2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallJournal {
    /// Sent, or about to be: no answer was recorded.
    Invoking,
    /// Answered: the snapshot's `obtained_output` is the answer.
    Returned,
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

    /// Saves the snapshot of a call's invocation (AGX-T2): just before the call is sent
    /// (`journal` [`CallJournal::Invoking`]) and as soon as it has answered
    /// ([`CallJournal::Returned`], with the answer), so that a server taking the
    /// engagement over after this one died never sends a call that returned again, and
    /// sends one cut off mid-call again only when its tool allows. An error before the
    /// call means it is not sent (a server that has lost the engagement to another
    /// must not call its tools); after it, the call fails. By default nothing is saved,
    /// as a single process that dies takes its engagements with it.
    async fn journal(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        let _ = snapshot;
        Ok(())
    }

    /// Whether [`Checkpoints::journal`] saves anything, so that a runtime without a
    /// store does not build snapshots for nothing.
    fn journals(&self) -> bool {
        false
    }
}

/// Where an engagement is while one call of a model turn runs: with the engagement
/// itself, everything a snapshot at a wait point inside that call needs. The wait
/// points themselves are in the enforcement order (before an input or an output
/// review, OAS-C7), which asks its `save` to save.
pub struct WaitPoint<'a> {
    pub(crate) checkpoints: &'a dyn Checkpoints,
    pub(crate) messages: &'a [Message],
    pub(crate) turns: usize,
    pub(crate) pending_calls: &'a [ToolCall],
    pub(crate) outer: Option<&'a OuterCall<'a>>,
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
                journal: None,
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
            journal: None,
        });
        self.checkpoints.save(&snapshot).await
    }

    /// Whether calls are journaled here (a server's store).
    pub(crate) fn journals(&self) -> bool {
        self.checkpoints.journals()
    }

    /// Saves the snapshot of the engagement the user started at a call's invocation
    /// (AGX-T2): `engagement`'s first pending call is about to be sent (`returned` is
    /// `None`), or has answered `returned`.
    pub(crate) async fn journal(
        &self,
        engagement: &Engagement,
        returned: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        if !self.checkpoints.journals() {
            return Ok(());
        }
        let snapshot = self.enclose(EngagementSnapshot {
            engagement: engagement.state(),
            messages: self.messages.to_vec(),
            turns: self.turns,
            pending_calls: self.pending_calls.to_vec(),
            obtained_output: returned.cloned(),
            nested: None,
            remote: None,
            journal: Some(match returned {
                None => CallJournal::Invoking,
                Some(_) => CallJournal::Returned,
            }),
        });
        self.checkpoints.journal(&snapshot).await
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
            journal: None,
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
    pub(crate) const ROOT: Nesting<'static> = Nesting {
        depth: 0,
        outer: None,
    };
}

/// Running the engagement of an agent called as a tool (or asked to review), as
/// enforcement needs it; implemented by the engagement loop (`driver`).
pub(crate) trait NestedEngagements {
    /// Runs the engagement of an agent called by the engagement `parent`, which its
    /// audit entries name, `depth` agents below the engagement the user started. Its
    /// `request` (AGX-E1) is `parent_request`, the words of the user who started the
    /// chain, never the text its caller (a model) sent it; with
    /// `outer`, its wait points are saved inside the snapshot of the engagement that
    /// called it. Boxed, because an agent's engagement can contain another agent's,
    /// and a recursive future must have a known size.
    fn run_nested<'a>(
        &'a self,
        model: &'a dyn Model,
        request: EngagementRequest<'a>,
        parent: &'a str,
        parent_request: &'a [Arc<str>],
        depth: usize,
        outer: Option<&'a OuterCall<'a>>,
    ) -> Pin<Box<dyn Future<Output = EngagementOutcome> + Send + 'a>>;
}

/// A remote agent's engagement that a call has started (the POST answered 303 with its
/// location), saved in the caller's snapshot so that a restart of the caller resumes
/// the call by polling it rather than engaging the remote agent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteWait {
    /// The capability called: the remote agent's name.
    pub capability: String,
    /// The agent's URL the engagement was posted to; the location must be on its origin.
    pub agent_url: String,
    /// The absolute URL of the remote engagement's state.
    pub location: String,
    /// The hash of the call ([`crate::remote::remote_call_hash`]), which binds the saved location to
    /// this call and input: a snapshot whose pending call differs is not resumed.
    pub call_hash: String,
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
