//! The engagement (OAS-E1..E3): the one object restriction assertions and `exposes`
//! see. Each call is kept as the JSON it was made with. Its CEL value, which the
//! interpreter reads, is built from that JSON the first time an interpreted check,
//! an `exposes` or the history asks for it, and kept: a check never converts or clones
//! the whole history, and an agent whose checks are all compiled (they read the JSON
//! directly, through [`FieldLookup::Invocation`]) never builds a CEL value per call.

use std::sync::{Arc, OnceLock};

use agentc_cel::engagement::field;
use agentc_cel::provenance::Sources;
use agentc_cel::{MapKey, Timestamp, Value, ValueMap};
use serde::{Deserialize, Serialize};

use crate::check::{FieldLookup, VariableSource, value_to_json};
use crate::repetition::RepetitionDetector;

pub use crate::invocation::Invocation;
use crate::invocation::{KEYS, string_key};

/// The engaging user (OAS-E3: `user.id`, `user.email` when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIdentity {
    /// The user's identifier.
    pub id: String,
    /// The user's email, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub email: Option<String>,
}

impl UserIdentity {
    /// A user known only by identifier.
    pub fn new(id: &str) -> Self {
        UserIdentity {
            id: id.to_string(),
            email: None,
        }
    }
}

/// Why an engagement failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReason {
    /// A guardrail assertion failed or could not be evaluated (OAS-G5).
    Guardrail { guardrail: String, detail: String },
    /// A call would have repeated a block of calls too often (OAS-L2).
    ShortCircuit { tool: String },
    /// A reviewer refused, answered for another call, or did not answer in time (OAS-C7).
    ReviewRefused { tool: String, detail: String },
    /// The model failed or its script ran out.
    Model { detail: String },
    /// An `exposes` value could not be evaluated (OAS-X1), so nothing is returned.
    Exposes { key: String, detail: String },
    /// The audit log could not be written, so no action can be attributed.
    Audit { detail: String },
    /// The model kept calling tools past the turn limit.
    TurnLimit { turns: usize },
    /// A turn or the engagement asked for more tool calls than its limit (AGX-L1/L2).
    CallLimit { detail: String },
    /// A restriction refused a call of an agent that stops at the first refusal
    /// (AGX-L3, `lifespan.stop_on_refusal`); a reviewer's refusal there is
    /// `review_refused`.
    Refused { tool: String, detail: String },
    /// The engagement could not be kept at a wait point (its snapshot could not be
    /// saved), or the process running it stopped before it reached one, so it cannot be
    /// resumed faithfully and is ended rather than guessed at.
    Interrupted { detail: String },
    /// The server running the engagement died while a call was under way, and the call
    /// may not be made again (AGX-T2: its tool neither only reads nor takes an
    /// idempotency key), so whether it had its effect is unknown: a person must look
    /// at the tool and resolve it. Nothing is retried.
    OutcomeUnknown { tool: String, detail: String },
}

/// Where an engagement is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EngagementStatus {
    /// Created on the first instruction.
    Created,
    /// Waiting for the model's next turn.
    AwaitingModel,
    /// Waiting for a tool to answer.
    AwaitingTool { tool: Arc<str> },
    /// Waiting for a reviewer's decision.
    AwaitingReview { tool: String, reviewer: String },
    /// Yielded to the user, waiting for more input.
    AwaitingUserInput,
    /// The task is done.
    Completed,
    /// The task failed, with the reason.
    Failed { reason: FailureReason },
}

/// A call that was refused, or failed, and so never became `recent` (Reading: pending
/// call); it is kept apart from `history._list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedCall {
    /// The tool or agent name the model asked for (possibly undeclared).
    pub name: String,
    /// The input the model gave.
    pub inputs: serde_json::Value,
    /// Which step refused it.
    pub stage: String,
    /// Why.
    pub reason: String,
}

/// The pending call a restriction is checked over (Reading: pending call).
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The capability index.
    pub capability: usize,
    /// The call as `recent.<name>` shows it: `{inputs}` during the input restriction,
    /// `{inputs, outputs}` during the output restriction. A call that passes is
    /// recorded as this very invocation, with any CEL value its checks built.
    pub invocation: &'a Invocation,
}

/// The state of one engagement. Cloning copies the history (benchmarks and snapshots).
#[derive(Debug, Clone)]
pub struct Engagement {
    /// Shared with each tool call's context rather than copied for it.
    id: Arc<str>,
    /// The engagement that engaged this one, for an agent called as a tool.
    parent: Option<Arc<str>>,
    agent: Arc<str>,
    /// The user's identifier, shared with the identity a call is made as (OAS-C3).
    user_id: Option<Arc<str>>,
    started_at: Option<Timestamp>,
    user: Option<UserIdentity>,
    user_value: Value,
    /// The user's inputs, in order (AGX-E1), as given; `request_value` is their CEL list.
    request: Vec<Arc<str>>,
    request_value: Value,
    /// What provenance questions are answered from (AGX-P1): the request and the string
    /// leaves of every output the model was given. Shared with a check's activation
    /// while it runs, and copied on the next change only if a check still holds it.
    sources: Arc<Sources>,
    names: Vec<Arc<str>>,
    /// Per capability, its invocations in order; `recent.<name>` is the last one.
    per_capability: Vec<Vec<Invocation>>,
    /// `history._list` as capability indices.
    list: Vec<u32>,
    /// The short circuit's state (OAS-L2), kept once a short circuit has been asked
    /// about (agents without one never pay for it), then kept up to date on every record
    /// so that the question costs no rescan of the history.
    repetitions: Option<RepetitionDetector>,
    /// The capability invoked last (`recent._name`).
    last: Option<usize>,
    /// `recent` as a CEL map, built (over the capabilities, not the history) when a
    /// check reads it whole, and dropped on change.
    recent_value: OnceLock<Arc<ValueMap>>,
    /// `history` as a CEL map, built only when a check reads it and dropped on change.
    history_value: Option<Value>,
    refused: Vec<RefusedCall>,
    /// Every call the model asked for, recorded or refused, in the order it asked, so
    /// that the engagement can be exported as a replayable trace (AGX-R1).
    order: Vec<CallInOrder>,
    /// `refused` as a CEL list of `{name, stage}` (AGX-E2), rebuilt on each refusal.
    refused_value: Value,
    /// When the current check runs (`now`, AGX-T1), as the runtime's clock read it for
    /// the pending call; before any call, `started_at`.
    check_time: Option<Timestamp>,
    status: EngagementStatus,
}

/// Where the runtime reads the time: when an engagement starts, and when each call
/// starts and ends (AGX-T1). The system clock serves live engagements; a replay gives
/// the recorded times instead, so that time windows decide as they did.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time; `None` when it cannot be read (checks reading it deny).
    fn now(&self) -> Option<Timestamp>;
}

/// The system clock ([`now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Option<Timestamp> {
        now()
    }
}

/// The current time, for `started_at`; `None` only if the clock is outside the years
/// CEL timestamps can hold, which callers treat as a failure to start.
pub fn now() -> Option<Timestamp> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|elapsed| i128::try_from(elapsed.as_nanos()).ok())?;
    Timestamp::from_unix_nanos(nanos)
}

impl Engagement {
    /// Creates an engagement for an agent with the given capability names, in order.
    pub fn new(
        id: &str,
        agent: &str,
        capability_names: &[&str],
        user: Option<UserIdentity>,
        started_at: Option<Timestamp>,
    ) -> Self {
        let mut user_map = ValueMap::new();
        if let Some(user) = &user {
            user_map.insert(string_key(field::USER_ID), Value::string(&user.id));
            if let Some(email) = &user.email {
                user_map.insert(string_key(field::USER_EMAIL), Value::string(email));
            }
        }
        let names: Vec<Arc<str>> = capability_names
            .iter()
            .map(|name| Arc::from(*name))
            .collect();
        Engagement {
            id: Arc::from(id),
            parent: None,
            agent: Arc::from(agent),
            user_id: user.as_ref().map(|user| Arc::from(user.id.as_str())),
            started_at,
            user,
            user_value: Value::Map(Arc::new(user_map)),
            request: Vec::new(),
            request_value: Value::List(Arc::from(Vec::new())),
            sources: Arc::new(Sources::new()),
            per_capability: vec![Vec::new(); names.len()],
            names,
            list: Vec::new(),
            repetitions: None,
            last: None,
            recent_value: OnceLock::new(),
            history_value: None,
            refused: Vec::new(),
            order: Vec::new(),
            refused_value: Value::List(Arc::from(Vec::new())),
            check_time: started_at,
            status: EngagementStatus::Created,
        }
    }

    /// Sets `now` (AGX-T1) for the checks that follow: the runtime's clock as read for
    /// the pending call's start, then for its end. `None` (a clock that could not be
    /// read) leaves `now` unbound, so checks reading it deny.
    pub fn set_check_time(&mut self, at: Option<Timestamp>) {
        self.check_time = at;
    }

    /// The engagement's identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same engagement, engaged by the engagement `parent` (an agent called as a
    /// tool), which its audit entries name.
    pub fn with_parent(mut self, parent: &str) -> Self {
        self.parent = Some(Arc::from(parent));
        self
    }

    /// The engagement that engaged this one, if it is an agent called as a tool.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The agent engaged.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The engaging user, if any.
    pub fn user(&self) -> Option<&UserIdentity> {
        self.user.as_ref()
    }

    /// The engagement's identifier, to share rather than copy.
    pub fn shared_id(&self) -> &Arc<str> {
        &self.id
    }

    /// The agent's name, to share rather than copy.
    pub fn shared_agent(&self) -> &Arc<str> {
        &self.agent
    }

    /// The engaging user's identifier, to share rather than copy.
    pub fn shared_user_id(&self) -> Option<&Arc<str>> {
        self.user_id.as_ref()
    }

    /// The name of a capability index, to share rather than copy.
    pub fn shared_capability_name(&self, index: usize) -> Option<&Arc<str>> {
        self.names.get(index)
    }
}

/// `text` as an `Arc<str>`: `shared` itself when it holds the same text, so that a name
/// the engagement already holds is shared rather than copied, and a copy otherwise.
pub(crate) fn share_or_copy(shared: Option<&Arc<str>>, text: &str) -> Arc<str> {
    match shared {
        Some(shared) if **shared == *text => Arc::clone(shared),
        _ => Arc::from(text),
    }
}

impl Engagement {
    /// The lifecycle status.
    pub fn status(&self) -> &EngagementStatus {
        &self.status
    }

    /// Moves to a new status; a failed or completed engagement stays so.
    pub fn set_status(&mut self, status: EngagementStatus) {
        if matches!(
            self.status,
            EngagementStatus::Failed { .. } | EngagementStatus::Completed
        ) {
            return;
        }
        tracing::debug!(engagement = %self.id, ?status, "engagement status");
        self.status = status;
    }

    /// Whether the engagement has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status,
            EngagementStatus::Failed { .. } | EngagementStatus::Completed
        )
    }

    /// `history._list` as capability indices, oldest first.
    pub fn call_list(&self) -> &[u32] {
        &self.list
    }

    /// The name of a capability index.
    pub fn capability_name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(|name| name.as_ref())
    }

    /// The invocations of a capability (`history.<name>`).
    pub fn invocations(&self, capability: usize) -> &[Invocation] {
        self.per_capability
            .get(capability)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The calls that were refused or failed.
    pub fn refused(&self) -> &[RefusedCall] {
        &self.refused
    }

    /// Every call the model asked for, in order (see [`CallInOrder`]).
    pub fn calls_in_order(&self) -> &[CallInOrder] {
        &self.order
    }

    /// Records an invocation that passed every check (OAS-C2: the output only when
    /// results are collected). The state update costs this call's size; the
    /// short-circuit state, when kept, a few hash steps per power of two of the
    /// history's length. No CEL value is built here.
    /// The call is taken to have started and ended when the engagement started; a
    /// caller that knows better uses [`Engagement::record_invocation`].
    pub fn record(
        &mut self,
        capability: usize,
        inputs: Arc<serde_json::Value>,
        outputs: Option<Arc<serde_json::Value>>,
    ) {
        let mut invocation = Invocation::new(inputs)
            .started(self.started_at)
            .ended(self.started_at);
        invocation.outputs = outputs;
        self.record_invocation(capability, invocation);
    }

    /// Records an invocation as it is: the pending call, with whatever CEL values its
    /// checks built, which are kept rather than built again.
    pub fn record_invocation(&mut self, capability: usize, invocation: Invocation) {
        let Some(invocations) = self.per_capability.get_mut(capability) else {
            return;
        };
        invocations.push(invocation);
        let symbol = u32::try_from(capability).unwrap_or(u32::MAX);
        if let Some(repetitions) = &mut self.repetitions {
            repetitions.push(&self.list, symbol);
        }
        self.order.push(CallInOrder {
            refused: false,
            index: self.list.len(),
            turn: self.request.len().saturating_sub(1),
        });
        self.list.push(symbol);
        self.last = Some(capability);
        self.recent_value = OnceLock::new();
        self.history_value = None;
    }

    /// Reserves room for `additional` more recorded calls, so that recording them does
    /// not reallocate (a clone has no spare capacity, and a long history is slow to move).
    pub fn reserve_calls(&mut self, additional: usize) {
        self.list.reserve(additional);
        if let Some(repetitions) = &mut self.repetitions {
            repetitions.reserve(additional);
        }
        for invocations in &mut self.per_capability {
            invocations.reserve(additional);
        }
    }

    /// Whether calling `capability` next would make `history._list` end in `n`
    /// back-to-back copies of one block of calls, for any block length (OAS-L2). The
    /// answer comes from a [`RepetitionDetector`], kept from the first question on, so
    /// its cost grows with the logarithm of the history's length, not the length.
    pub fn would_short_circuit(&mut self, capability: usize, n: u64) -> bool {
        match n {
            0 => return false,
            // Every call is a single copy of itself, even the first.
            1 => return true,
            _ => {}
        }
        let symbol = u32::try_from(capability).unwrap_or(u32::MAX);
        self.track_repetitions(n);
        match &self.repetitions {
            Some(repetitions) => repetitions.would_repeat(&self.list, symbol),
            // `track_repetitions` has just built it; should it be missing all the same,
            // the call is refused (fail closed) rather than let through.
            None => true,
        }
    }

    /// Takes back the most recent recorded call, as if it had never been made: `recent`,
    /// `history` and the short-circuit state are what they were before it. This is for
    /// measuring calls at a fixed history length and for tests; enforcement never
    /// forgets a call. The short-circuit state cannot be rewound, so it is dropped
    /// and rebuilt on the next short-circuit question. Returns whether there was
    /// a call to take back.
    pub fn undo_last_call(&mut self) -> bool {
        let Some(symbol) = self.list.pop() else {
            return false;
        };
        if let Some(position) = self
            .order
            .iter()
            .rposition(|call| !call.refused && call.index == self.list.len())
        {
            self.order.remove(position);
        }
        let capability = symbol as usize;
        if let Some(invocations) = self.per_capability.get_mut(capability) {
            invocations.pop();
        }
        self.repetitions = None;
        self.history_value = None;
        self.recent_value = OnceLock::new();
        self.last = self.list.last().map(|symbol| *symbol as usize);
        true
    }

    /// Starts keeping the short-circuit state for the limit `n` (OAS-L2), if it is not
    /// kept already. [`Engagement::would_short_circuit`] does this itself on first use,
    /// which replays the history so far; an engagement that will be asked about a short
    /// circuit can start keeping it at creation instead.
    pub fn track_repetitions(&mut self, n: u64) {
        let current = self.repetitions.as_ref().map(RepetitionDetector::limit);
        if current != Some(n) {
            self.repetitions = RepetitionDetector::new(n, &self.list);
        }
    }

    /// Adds one of the user's inputs to `request` (AGX-E1) and to the provenance sources.
    pub fn record_user_input(&mut self, text: &str) {
        let text: Arc<str> = Arc::from(text);
        Arc::make_mut(&mut self.sources).add_request(&text);
        self.request.push(text);
        self.request_value = Value::List(Arc::from(
            self.request
                .iter()
                .map(|text| Value::String(Arc::clone(text)))
                .collect::<Vec<_>>(),
        ));
    }

    /// The user's inputs of this engagement, in order (AGX-E1).
    pub fn request(&self) -> &[Arc<str>] {
        &self.request
    }

    /// Records the string leaves of an output the model is given (AGX-P1), labelled by
    /// the capability's output schema (see [`crate::provenance`]).
    pub fn observe_output(
        &mut self,
        capability: &str,
        output: &serde_json::Value,
        schema: Option<&serde_json::Value>,
    ) {
        let leaves = crate::provenance::output_leaves(output, schema);
        if leaves.is_empty() {
            return;
        }
        let sources = Arc::make_mut(&mut self.sources);
        for leaf in leaves {
            sources.add_leaf(capability, &leaf.path, leaf.text, leaf.trusted);
        }
    }

    /// What provenance questions are answered from.
    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
    }

    /// Records a refused or failed call, outside `history._list`; `refused` (AGX-E2)
    /// shows its name and stage, never its input or the reason.
    pub fn record_refused(&mut self, call: RefusedCall) {
        self.order.push(CallInOrder {
            refused: true,
            index: self.refused.len(),
            turn: self.request.len().saturating_sub(1),
        });
        self.refused.push(call);
        self.refused_value = refused_list(&self.refused);
    }

    /// Makes sure the values the given variables need are built: `history`, the only
    /// part whose size grows with the engagement, is built here and kept until the next
    /// record. `recent` and each call's CEL value are built on first read instead.
    pub fn prepare(&mut self, roots: &[String]) {
        if self.history_value.is_none() && roots.iter().any(|root| root == field::HISTORY) {
            self.history_value = Some(self.build_history());
        }
    }

    fn build_history(&self) -> Value {
        let mut map = ValueMap::new();
        let list: Vec<Value> = self
            .list
            .iter()
            .filter_map(|index| self.names.get(*index as usize))
            .map(|name| Value::String(name.clone()))
            .collect();
        map.insert(
            string_key(field::HISTORY_TOTAL),
            Value::Int(i64::try_from(list.len()).unwrap_or(i64::MAX)),
        );
        map.insert(string_key(field::HISTORY_LIST), Value::List(list.into()));
        for (name, invocations) in self.names.iter().zip(&self.per_capability) {
            let items: Vec<Value> = invocations
                .iter()
                .map(|call| call.cel_value().clone())
                .collect();
            map.insert(MapKey::String(name.clone()), Value::List(items.into()));
        }
        Value::Map(Arc::new(map))
    }

    /// `recent` as a CEL map: each capability's last call, and `_name`.
    fn recent_map(&self) -> &Arc<ValueMap> {
        self.recent_value.get_or_init(|| {
            let mut map = ValueMap::new();
            for (name, invocations) in self.names.iter().zip(&self.per_capability) {
                if let Some(latest) = invocations.last() {
                    map.insert(MapKey::String(name.clone()), latest.cel_value().clone());
                }
            }
            if let Some(name) = self.last.and_then(|index| self.names.get(index)) {
                map.insert(KEYS.name.clone(), Value::String(name.clone()));
            }
            Arc::new(map)
        })
    }

    /// The variables a check sees, with an optional pending call. Call
    /// [`Engagement::prepare`] with the check's roots first.
    pub fn scope<'a>(&'a self, pending: Option<Pending<'a>>) -> EngagementScope<'a> {
        EngagementScope {
            engagement: self,
            pending,
        }
    }

    /// The engagement as plain data that can be stored and later given to
    /// [`Engagement::restore`]: identity, user, start time, every recorded invocation in
    /// `history._list` order and the refused calls. The status is not part of it, since a
    /// restored engagement is about to run again.
    pub fn state(&self) -> EngagementState {
        let mut positions = vec![0usize; self.per_capability.len()];
        let history = self
            .list
            .iter()
            .filter_map(|index| {
                let index = *index as usize;
                let position = positions.get_mut(index)?;
                let invocation = self.per_capability.get(index)?.get(*position)?;
                *position += 1;
                let (started_at, ended_at) = invocation.times();
                Some(RecordedInvocation {
                    name: self.names.get(index)?.to_string(),
                    inputs: invocation.inputs.as_ref().clone(),
                    outputs: invocation.outputs.as_deref().cloned(),
                    started_at: started_at.map(|at| at.to_string()),
                    ended_at: ended_at.map(|at| at.to_string()),
                })
            })
            .collect();
        EngagementState {
            id: self.id.to_string(),
            parent: self.parent.as_deref().map(str::to_string),
            agent: self.agent.to_string(),
            started_at: self.started_at.map(|started| started.to_string()),
            user: self.user.clone(),
            request: self.request.iter().map(|text| text.to_string()).collect(),
            observed: self
                .sources
                .leaves()
                .map(|(tool, path, text, trusted)| ObservedLeaf {
                    tool: tool.to_string(),
                    path: path.to_string(),
                    text: text.to_string(),
                    trusted,
                })
                .collect(),
            history,
            refused: self.refused.clone(),
            order: self.order.clone(),
        }
    }

    /// Rebuilds an engagement from its [`EngagementState`] for an agent with the given
    /// capability names, replaying every recorded invocation so that `recent`, `history`
    /// and the short-circuit state are exactly what they were. A state that names a
    /// capability the agent does not declare, or an unreadable start time, is refused:
    /// a restored engagement must be the one that was saved, or none.
    pub fn restore(
        state: &EngagementState,
        capability_names: &[&str],
    ) -> Result<Engagement, RestoreError> {
        if state.agent.is_empty() || state.id.is_empty() {
            return Err(RestoreError(
                "the state has no engagement or agent name".into(),
            ));
        }
        let started_at = match &state.started_at {
            Some(text) => Some(
                Timestamp::parse(text)
                    .ok_or_else(|| RestoreError(format!("`{text}` is not a timestamp")))?,
            ),
            None => None,
        };
        let mut engagement = Engagement::new(
            &state.id,
            &state.agent,
            capability_names,
            state.user.clone(),
            started_at,
        );
        engagement.parent = state.parent.as_deref().map(Arc::from);
        for text in &state.request {
            engagement.record_user_input(text);
        }
        let sources = Arc::make_mut(&mut engagement.sources);
        for leaf in &state.observed {
            sources.add_leaf(&leaf.tool, &leaf.path, &leaf.text, leaf.trusted);
        }
        for invocation in &state.history {
            let Some(index) = capability_names
                .iter()
                .position(|name| *name == invocation.name)
            else {
                return Err(RestoreError(format!(
                    "`{}` is not a capability of agent `{}`",
                    invocation.name, state.agent
                )));
            };
            // A state saved before calls carried times has none: the call is taken to
            // have happened when the engagement started, which counts it in every
            // window that reaches back that far.
            let time = |text: &Option<String>| match text {
                Some(text) => Timestamp::parse(text)
                    .map(Some)
                    .ok_or_else(|| RestoreError(format!("`{text}` is not a timestamp"))),
                None => Ok(started_at),
            };
            let mut recorded = Invocation::new(Arc::new(invocation.inputs.clone()))
                .started(time(&invocation.started_at)?)
                .ended(time(&invocation.ended_at)?);
            recorded.outputs = invocation.outputs.clone().map(Arc::new);
            engagement.record_invocation(index, recorded);
        }
        engagement.refused = state.refused.clone();
        // Restoring replayed the recorded calls in order; the saved order, which places
        // the refused ones among them, replaces that when it is whole.
        if state.order.len() == state.history.len() + state.refused.len() {
            engagement.order = state.order.clone();
        } else {
            engagement
                .order
                .extend((0..state.refused.len()).map(|index| CallInOrder {
                    refused: true,
                    index,
                    turn: state.request.len().saturating_sub(1),
                }));
        }
        engagement.refused_value = refused_list(&engagement.refused);
        Ok(engagement)
    }

    /// The engagement as a reviewer is shown it (OAS-C7, "given the current
    /// engagement"): [`Engagement::to_json`] with each refused call's inputs left out.
    /// A refused call's values never travel (a reviewer may be someone other than the
    /// user, and a refused input may be what an injected instruction tried to send);
    /// its name, stage and reason, which name the rule and never a value, stay.
    pub fn to_reviewer_json(&self) -> serde_json::Value {
        let mut json = self.to_json();
        if let Some(serde_json::Value::Array(refused)) = json.get_mut(field::REFUSED) {
            for call in refused {
                if let serde_json::Value::Object(call) = call {
                    call.remove("inputs");
                }
            }
        }
        json
    }

    /// The engagement as JSON: exactly the OAS-E3 fields, plus the refused calls and the
    /// status. Secrets are never part of an engagement, so none can appear here.
    pub fn to_json(&self) -> serde_json::Value {
        let mut recent = serde_json::Map::new();
        if let Some(last) = self.last.and_then(|index| self.names.get(index)) {
            recent.insert(
                field::RECENT_NAME.into(),
                serde_json::Value::String(last.to_string()),
            );
        }
        let mut history = serde_json::Map::new();
        history.insert(
            field::HISTORY_LIST.into(),
            self.list
                .iter()
                .filter_map(|index| self.names.get(*index as usize))
                .map(|name| serde_json::Value::String(name.to_string()))
                .collect(),
        );
        history.insert(
            field::HISTORY_TOTAL.into(),
            serde_json::Value::from(self.list.len()),
        );
        for (name, invocations) in self.names.iter().zip(&self.per_capability) {
            if let Some(latest) = invocations.last() {
                recent.insert(name.to_string(), invocation_json(latest));
            }
            history.insert(
                name.to_string(),
                invocations.iter().map(invocation_json).collect(),
            );
        }
        let mut object = serde_json::Map::new();
        object.insert("id".into(), self.id.to_string().into());
        object.insert("agent".into(), self.agent.to_string().into());
        object.insert(
            field::STARTED_AT.into(),
            self.started_at
                .map(|started| serde_json::Value::String(started.to_string()))
                .unwrap_or_default(),
        );
        object.insert(field::USER.into(), value_to_json(&self.user_value));
        object.insert(
            field::REQUEST.into(),
            self.request
                .iter()
                .map(|text| serde_json::Value::String(text.to_string()))
                .collect(),
        );
        object.insert(field::RECENT.into(), serde_json::Value::Object(recent));
        object.insert(field::HISTORY.into(), serde_json::Value::Object(history));
        object.insert(
            field::REFUSED.into(),
            serde_json::to_value(&self.refused).unwrap_or_default(),
        );
        object.insert(
            "status".into(),
            serde_json::to_value(&self.status).unwrap_or_default(),
        );
        serde_json::Value::Object(object)
    }
}

/// One recorded invocation, as an [`EngagementState`] keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedInvocation {
    /// The capability's name.
    pub name: String,
    /// The input given.
    pub inputs: serde_json::Value,
    /// The output, when results are collected (OAS-C2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<serde_json::Value>,
    /// When the call started (AGX-T1), as an RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the call ended (AGX-T1), as an RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// One string leaf of an output the model was given, as provenance keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLeaf {
    /// The capability whose output it is.
    pub tool: String,
    /// Its path in the output (keys joined by `.`).
    pub path: String,
    /// Its text, folded (`agentc_cel::provenance::fold`).
    pub text: String,
    /// Whether the output schema trusts it.
    pub trusted: bool,
}

/// An engagement as plain, storable data ([`Engagement::state`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngagementState {
    /// The engagement's identifier.
    pub id: String,
    /// The engagement that engaged this one (an agent called as a tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The agent engaged.
    pub agent: String,
    /// `started_at`, as an RFC 3339 timestamp.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The engaging user.
    #[serde(default)]
    pub user: Option<UserIdentity>,
    /// The user's inputs, in order (AGX-E1).
    #[serde(default)]
    pub request: Vec<String>,
    /// The string leaves of the outputs the model was given, folded (AGX-P1).
    #[serde(default)]
    pub observed: Vec<ObservedLeaf>,
    /// Every recorded invocation, in `history._list` order.
    #[serde(default)]
    pub history: Vec<RecordedInvocation>,
    /// The refused calls.
    #[serde(default)]
    pub refused: Vec<RefusedCall>,
    /// Every call in the order the model asked for it (absent in states saved before
    /// it was kept: then the recorded calls, then the refused ones).
    #[serde(default)]
    pub order: Vec<CallInOrder>,
}

/// One call in the order the model asked for it: a recorded call (its position in
/// `history._list`) or a refused one (its position among the refused calls), and the
/// user's input it followed (its index in `request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInOrder {
    /// Whether the call was refused.
    pub refused: bool,
    /// Its position in `history._list`, or among the refused calls.
    pub index: usize,
    /// The index of the user's input it followed.
    pub turn: usize,
}

/// Why an [`EngagementState`] could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore the engagement: {0}")]
pub struct RestoreError(pub String);

fn invocation_json(invocation: &Invocation) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(field::INPUTS.into(), invocation.inputs.as_ref().clone());
    if let Some(outputs) = &invocation.outputs {
        object.insert(field::OUTPUTS.into(), outputs.as_ref().clone());
    }
    let (started_at, ended_at) = invocation.times();
    for (name, at) in [
        (field::CALL_STARTED_AT, started_at),
        (field::CALL_ENDED_AT, ended_at),
    ] {
        if let Some(at) = at {
            object.insert(name.into(), serde_json::Value::String(at.to_string()));
        }
    }
    serde_json::Value::Object(object)
}

/// `refused` (AGX-E2) as CEL: each refused call's name and stage, in order.
fn refused_list(refused: &[RefusedCall]) -> Value {
    let name = string_key(field::REFUSED_NAME);
    let stage = string_key(field::REFUSED_STAGE);
    Value::List(Arc::from(
        refused
            .iter()
            .map(|call| {
                let mut map = ValueMap::new();
                map.insert(name.clone(), Value::string(&call.name));
                map.insert(stage.clone(), Value::string(&call.stage));
                Value::Map(Arc::new(map))
            })
            .collect::<Vec<_>>(),
    ))
}

/// The engagement as seen by one check (OAS-E1: this and nothing else).
#[derive(Debug, Clone, Copy)]
pub struct EngagementScope<'a> {
    engagement: &'a Engagement,
    pending: Option<Pending<'a>>,
}

impl VariableSource for EngagementScope<'_> {
    fn variable(&self, name: &str) -> Option<Value> {
        let engagement = self.engagement;
        match name {
            // Without a valid clock `started_at` is unbound, so checks reading it deny.
            field::STARTED_AT => engagement.started_at.map(Value::Timestamp),
            field::NOW => engagement.check_time.map(Value::Timestamp),
            field::REFUSED => Some(engagement.refused_value.clone()),
            field::USER => Some(engagement.user_value.clone()),
            field::REQUEST => Some(engagement.request_value.clone()),
            field::RECENT => match self.pending {
                None => Some(Value::Map(Arc::clone(engagement.recent_map()))),
                Some(pending) => {
                    // The pending call is `recent` while it is checked; the copy is of the
                    // per-capability map, whose size does not grow with the history.
                    let name = engagement.names.get(pending.capability)?.clone();
                    let mut recent = engagement.recent_map().as_ref().clone();
                    recent.insert(
                        MapKey::String(name.clone()),
                        pending.invocation.cel_value().clone(),
                    );
                    recent.insert(KEYS.name.clone(), Value::String(name));
                    Some(Value::Map(Arc::new(recent)))
                }
            },
            field::HISTORY => Some(
                engagement
                    .history_value
                    .clone()
                    .unwrap_or_else(|| engagement.build_history()),
            ),
            _ => None,
        }
    }
    fn sources(&self) -> Option<Arc<Sources>> {
        Some(Arc::clone(&self.engagement.sources))
    }

    /// The fields of `recent` one by one, with the pending call among them, exactly as
    /// [`EngagementScope::variable`]'s copy of the map holds them: a call is given as
    /// its [`Invocation`], whose JSON a compiled check reads without a CEL value.
    fn field(&self, variable: &str, selected: &str) -> FieldLookup<'_> {
        if variable != field::RECENT {
            return FieldLookup::WholeVariableOnly;
        }
        let engagement = self.engagement;
        let last = match self.pending {
            Some(pending) => {
                let Some(name) = engagement.names.get(pending.capability) else {
                    // `variable` leaves `recent` unbound here; so does the whole-variable
                    // route this sends the caller to.
                    return FieldLookup::WholeVariableOnly;
                };
                if selected == name.as_ref() {
                    return FieldLookup::Invocation(pending.invocation);
                }
                Some(name)
            }
            None => engagement
                .last
                .and_then(|index| engagement.names.get(index)),
        };
        if selected == field::RECENT_NAME {
            return match last {
                Some(name) => FieldLookup::Found(Value::String(name.clone())),
                None => FieldLookup::Absent,
            };
        }
        let latest = engagement
            .names
            .iter()
            .position(|name| name.as_ref() == selected)
            .and_then(|index| engagement.per_capability.get(index))
            .and_then(|invocations| invocations.last());
        match latest {
            Some(invocation) => FieldLookup::Invocation(invocation),
            None => FieldLookup::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CelCheck, Check};
    use serde_json::json;

    fn engagement() -> Engagement {
        Engagement::new(
            "e1",
            "hr_agent",
            &["hr_kb_search", "other"],
            Some(UserIdentity {
                id: "u1".into(),
                email: Some("u1@acme.example".into()),
            }),
            now(),
        )
    }

    fn holds(engagement: &mut Engagement, text: &str, pending: Option<Pending<'_>>) -> bool {
        let check = CelCheck::parse(text).unwrap();
        engagement.prepare(check.roots());
        check.holds(&engagement.scope(pending)).unwrap_or(false)
    }

    #[test]
    fn undoing_a_call_restores_recent_history_and_the_short_circuit() {
        let mut engagement = engagement();
        let first = json!({"knowledge_base_id": "acme/hr/a", "query": "one"});
        let second = json!({"knowledge_base_id": "acme/hr/b", "query": "two"});
        let other = json!({"a": 1});
        for (index, input) in [(0, &first), (1, &other), (0, &second)] {
            assert!(!engagement.would_short_circuit(index, 3));
            engagement.record(index, Arc::new(input.clone()), None);
        }
        assert!(engagement.undo_last_call());
        assert_eq!(engagement.call_list(), [0, 1]);
        assert!(holds(
            &mut engagement,
            "recent._name == 'other' && recent.hr_kb_search.inputs.query == 'one' \
             && history._total == 2 && size(history.hr_kb_search) == 1",
            None
        ));
        // The short circuit is answered from the rebuilt state: after
        // [0, 1, 0, 1, 0], a call to 1 would be the third copy of [0, 1].
        for (index, input) in [(0, &first), (1, &other), (0, &first)] {
            engagement.record(index, Arc::new(input.clone()), None);
        }
        assert!(engagement.would_short_circuit(1, 3));
        assert!(!engagement.would_short_circuit(0, 3));
        for _ in 0..5 {
            assert!(engagement.undo_last_call());
        }
        assert!(!engagement.undo_last_call());
        assert!(holds(
            &mut engagement,
            "!has(recent._name) && !has(recent.hr_kb_search) && history._total == 0",
            None
        ));
    }

    #[test]
    fn oas_e3_engagement_fields() {
        let mut engagement = engagement();
        assert!(holds(
            &mut engagement,
            "user.id == 'u1' && user.email == 'u1@acme.example'",
            None
        ));
        assert!(holds(
            &mut engagement,
            "history._total == 0 && size(history._list) == 0",
            None
        ));
        assert!(holds(
            &mut engagement,
            "!has(recent._name) && !has(recent.hr_kb_search)",
            None
        ));
        assert!(holds(
            &mut engagement,
            "started_at > timestamp('2020-01-01T00:00:00Z')",
            None
        ));
        let input = json!({"knowledge_base_id": "acme/hr/x", "query": "leave"});
        let output = json!({"results": []});
        engagement.record(0, Arc::new(input.clone()), Some(Arc::new(output.clone())));
        let other = json!({"a": 1});
        engagement.record(1, Arc::new(other.clone()), None);
        assert!(holds(
            &mut engagement,
            "recent._name == 'other' && history._list == ['hr_kb_search', 'other']",
            None
        ));
        assert!(holds(
            &mut engagement,
            "history._total == 2 && history.hr_kb_search[0].inputs.query == 'leave'",
            None
        ));
        assert!(holds(
            &mut engagement,
            "size(recent.hr_kb_search.outputs.results) == 0",
            None
        ));
        // OAS-C2: an uncollected result has no `outputs`.
        assert!(holds(
            &mut engagement,
            "!has(recent.other.outputs) && has(recent.other.inputs)",
            None
        ));
        // The denied path: a wrong field name does not evaluate, so it cannot hold.
        assert!(!holds(
            &mut engagement,
            "recent.hr_kb_search.input.query == 'leave'",
            None
        ));
        let json = engagement.to_json();
        assert_eq!(json["history"]["_total"], 2);
        assert_eq!(json["recent"]["_name"], "other");
        assert!(json["recent"]["other"].get("outputs").is_none());
    }

    /// Whether `value` has the declared `ty`: every always-present field there, no field
    /// a closed object does not declare, recursively. `Dyn` (tool data) takes anything.
    fn has_shape(
        value: &serde_json::Value,
        ty: &agentc_cel::Type,
        path: &str,
    ) -> Result<(), String> {
        use agentc_cel::Type;
        match (ty, value) {
            (Type::Dyn, _) => Ok(()),
            (Type::Object(object), serde_json::Value::Object(fields)) => {
                for (name, declared) in &object.fields {
                    match fields.get(name) {
                        Some(inner) => has_shape(inner, &declared.ty, &format!("{path}.{name}"))?,
                        None if declared.always_present => {
                            return Err(format!("{path}.{name} is missing"));
                        }
                        None => {}
                    }
                }
                match fields
                    .keys()
                    .find(|name| !object.fields.contains_key(*name))
                {
                    Some(extra) if !object.open => Err(format!("{path}.{extra} is not declared")),
                    _ => Ok(()),
                }
            }
            (Type::List(element), serde_json::Value::Array(items)) => {
                items.iter().enumerate().try_for_each(|(index, item)| {
                    has_shape(item, element, &format!("{path}[{index}]"))
                })
            }
            (Type::String | Type::Timestamp, serde_json::Value::String(_))
            | (Type::Int, serde_json::Value::Number(_)) => Ok(()),
            (ty, value) => Err(format!("{path} is {value}, declared {ty}")),
        }
    }

    /// The runtime builds exactly the engagement `agentc_cel::engagement` declares (one
    /// declaration, OAS-E3): the JSON of an engagement and the variables a check sees,
    /// at each assertion site, empty and with calls recorded, collected or not.
    #[test]
    fn the_runtime_builds_the_declared_engagement_shape() {
        use agentc_cel::Type;
        use agentc_cel::engagement::{
            AssertionSite, CapabilityTypes, Presence, display_name, engagement_shape,
        };
        let capabilities: Vec<CapabilityTypes> = [("hr_kb_search", true), ("other", false)]
            .into_iter()
            .map(|(name, collects_results)| CapabilityTypes {
                name: name.to_string(),
                input: Type::Dyn,
                output: Type::Dyn,
                collects_results,
            })
            .collect();
        let exposes_shape = engagement_shape(
            &capabilities,
            Presence::At(&AssertionSite::Exposes),
            display_name,
        );
        let variables_of = |scope: EngagementScope<'_>| {
            let mut object = serde_json::Map::new();
            for name in field::VARIABLES {
                if let Some(value) = scope.variable(name) {
                    object.insert(name.to_string(), value_to_json(&value));
                }
            }
            serde_json::Value::Object(object)
        };

        // The engagement's JSON carries its identity and outcome besides the shape, and
        // the refused calls in full; `now` is a check's, not the engagement's.
        let mut json_shape = exposes_shape.clone();
        json_shape.fields.remove(field::NOW);
        json_shape.fields.remove(field::REFUSED);
        let shape_part = |engagement: &Engagement| {
            let mut json = engagement.to_json();
            if let Some(object) = json.as_object_mut() {
                for extra in ["id", "agent", "refused", "status"] {
                    object.remove(extra);
                }
            }
            json
        };

        let mut engagement = engagement();
        for round in 0..2 {
            let json = shape_part(&engagement);
            has_shape(&json, &Type::Object(json_shape.clone()), "engagement")
                .unwrap_or_else(|problem| panic!("to_json, round {round}: {problem}"));
            has_shape(
                &variables_of(engagement.scope(None)),
                &Type::Object(exposes_shape.clone()),
                "engagement",
            )
            .unwrap_or_else(|problem| panic!("variables, round {round}: {problem}"));

            // The pending call of each capability, at its input and its output restriction.
            for (index, capability) in capabilities.iter().enumerate() {
                let inputs = Invocation::new(Arc::new(json!({"q": round}))).started(now());
                let outputs = inputs
                    .with_outputs(Arc::new(json!({"r": round})))
                    .ended(now());
                for (site, invocation) in [
                    (
                        AssertionSite::InputRestriction {
                            capability: capability.name.clone(),
                        },
                        &inputs,
                    ),
                    (
                        AssertionSite::OutputRestriction {
                            capability: capability.name.clone(),
                        },
                        &outputs,
                    ),
                ] {
                    let shape = engagement_shape(&capabilities, Presence::At(&site), display_name);
                    engagement.prepare(&field::VARIABLES.map(String::from));
                    let pending = Pending {
                        capability: index,
                        invocation,
                    };
                    has_shape(
                        &variables_of(engagement.scope(Some(pending))),
                        &Type::Object(shape),
                        "engagement",
                    )
                    .unwrap_or_else(|problem| panic!("{site:?}, round {round}: {problem}"));
                }
            }
            engagement.record(
                0,
                Arc::new(json!({"q": "a"})),
                Some(Arc::new(json!({"r": 1}))),
            );
            engagement.record(1, Arc::new(json!({"q": "b"})), None);
            engagement.record_refused(RefusedCall {
                name: "other".into(),
                inputs: json!({"q": "refused"}),
                stage: "input_restriction".into(),
                reason: "assertion is false".into(),
            });
        }

        // The denied path: a field the declaration does not have is found.
        let mut undeclared = shape_part(&engagement);
        assert!(has_shape(&undeclared, &Type::Object(json_shape.clone()), "engagement").is_ok());
        undeclared["recent"]["surprise"] = json!(1);
        assert!(has_shape(&undeclared, &Type::Object(json_shape), "engagement").is_err());
    }

    /// A nested engagement's parent is part of its saved state, so that its entries
    /// still name the parent after a resume; a root engagement's state names none.
    #[test]
    fn a_restored_engagement_keeps_its_parent() {
        let nested = engagement().with_parent("planner-0f");
        let text = serde_json::to_string(&nested.state()).unwrap();
        assert!(text.contains("\"parent\":\"planner-0f\""), "{text}");
        let read: EngagementState = serde_json::from_str(&text).unwrap();
        let restored = Engagement::restore(&read, &["hr_kb_search", "other"]).unwrap();
        assert_eq!(restored.parent(), Some("planner-0f"));
        let root = serde_json::to_string(&engagement().state()).unwrap();
        assert!(!root.contains("parent"), "{root}");
        let read: EngagementState = serde_json::from_str(&root).unwrap();
        let restored = Engagement::restore(&read, &["hr_kb_search", "other"]).unwrap();
        assert_eq!(restored.parent(), None);
    }

    #[test]
    fn state_round_trips_through_restore() {
        let mut original = engagement();
        let input = json!({"knowledge_base_id": "acme/hr/x", "query": "leave"});
        let output = json!({"results": []});
        for capability in [0, 1, 0] {
            original.record(
                capability,
                Arc::new(input.clone()),
                (capability == 0).then(|| Arc::new(output.clone())),
            );
        }
        // AGX-E1/P1: the request and what the model saw survive a restart.
        original.record_user_input("Mail Bob@acme.example");
        original.observe_output(
            "other",
            &json!({"from": "carol@acme.example", "body": "hi"}),
            Some(&json!({"properties": {"from": {"x-agentc-trust": "trusted"}}})),
        );
        let state = original.state();
        let text = serde_json::to_string(&state).unwrap();
        let read: EngagementState = serde_json::from_str(&text).unwrap();
        let mut restored = Engagement::restore(&read, &["hr_kb_search", "other"]).unwrap();
        assert_eq!(restored.to_json(), original.to_json());
        assert_eq!(restored.call_list(), original.call_list());
        assert_eq!(restored.sources(), original.sources());
        assert!(holds(
            &mut restored,
            "request == ['Mail Bob@acme.example'] && 'bob@acme.example'.fromUser() \
             && 'carol@acme.example'.fromTool('other', 'from') && !'hi'.fromTrusted()",
            None
        ));
        assert_eq!(
            restored.would_short_circuit(0, 2),
            original.would_short_circuit(0, 2)
        );
        assert!(holds(
            &mut restored,
            "history._list == ['hr_kb_search', 'other', 'hr_kb_search'] && !has(recent.other.outputs)",
            None
        ));
        // The denied path: a state naming a capability the agent lacks is refused.
        assert!(Engagement::restore(&read, &["hr_kb_search"]).is_err());
        let mut bad_time = read.clone();
        bad_time.started_at = Some("yesterday".into());
        assert!(Engagement::restore(&bad_time, &["hr_kb_search", "other"]).is_err());
    }

    #[test]
    fn history_is_built_only_for_checks_that_read_it() {
        let mut engagement = engagement();
        let input = json!({"knowledge_base_id": "acme/hr/x", "query": "q"});
        for _ in 0..3 {
            engagement.record(0, Arc::new(input.clone()), None);
        }
        engagement.prepare(&["recent".to_string(), "user".to_string()]);
        assert!(engagement.history_value.is_none());
        engagement.prepare(&["history".to_string()]);
        assert!(engagement.history_value.is_some());
        engagement.record(0, Arc::new(input.clone()), None);
        assert!(engagement.history_value.is_none());
    }

    #[test]
    fn pending_call_is_recent_only_while_checked() {
        let mut engagement = engagement();
        let pending_input = Invocation::new(Arc::new(json!({"knowledge_base_id": "acme/hr/a"})));
        let pending = Pending {
            capability: 0,
            invocation: &pending_input,
        };
        assert!(holds(
            &mut engagement,
            "recent._name == 'hr_kb_search' && recent.hr_kb_search.inputs.knowledge_base_id == 'acme/hr/a' && !has(recent.hr_kb_search.outputs)",
            Some(pending)
        ));
        assert!(holds(
            &mut engagement,
            "!has(recent.hr_kb_search) && history._total == 0",
            None
        ));
    }

    /// `recent`'s fields one by one are exactly the fields of the whole `recent`, with
    /// and without a pending call, before and after calls are recorded; a call is given
    /// as its JSON, which is the JSON it was made with.
    #[test]
    fn recent_fields_one_by_one_match_the_whole_recent() {
        let mut engagement = engagement();
        let inputs = |kb: &str| Arc::new(json!({"knowledge_base_id": kb}));
        let agree = |engagement: &Engagement, pending: Option<Pending<'_>>| {
            let scope = engagement.scope(pending);
            let Some(Value::Map(whole)) = scope.variable("recent") else {
                panic!("recent is a map")
            };
            for field in ["hr_kb_search", "other", "_name", "absent", ""] {
                let lookup = scope.field("recent", field);
                assert_eq!(lookup.cel_value().as_ref(), whole.get_str(field), "{field}");
                match lookup {
                    FieldLookup::Invocation(call) => {
                        assert_eq!(invocation_json(call), value_to_json(call.cel_value()))
                    }
                    FieldLookup::Found(_) => assert_eq!(field, "_name"),
                    FieldLookup::Absent => {}
                    FieldLookup::WholeVariableOnly => panic!("{field} is given field by field"),
                }
            }
            assert!(matches!(
                scope.field("history", "_total"),
                FieldLookup::WholeVariableOnly
            ));
        };
        for step in 0..3 {
            let pending_first = Invocation::new(inputs("acme/hr/p"));
            let pending_second = Invocation::new(inputs("acme/x")).with_outputs(Arc::new(json!(1)));
            agree(&engagement, None);
            agree(
                &engagement,
                Some(Pending {
                    capability: 0,
                    invocation: &pending_first,
                }),
            );
            agree(
                &engagement,
                Some(Pending {
                    capability: 1,
                    invocation: &pending_second,
                }),
            );
            engagement.record(step % 2, inputs("acme/hr/r"), None);
        }
        // A pending call of a capability the engagement does not have leaves `recent`
        // to the whole-variable route, which does not bind it.
        let stray = Invocation::new(inputs("acme/hr/s"));
        let scope = engagement.scope(Some(Pending {
            capability: 7,
            invocation: &stray,
        }));
        assert_eq!(scope.variable("recent"), None);
        assert!(matches!(
            scope.field("recent", "_name"),
            FieldLookup::WholeVariableOnly
        ));
    }
}
