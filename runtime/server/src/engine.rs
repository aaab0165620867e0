//! The engagements a server runs: starting them as tasks, recording their outcomes in
//! the store, waiting for reviewers (OAS-C7) without holding anything that a restart
//! would lose, resuming them after a restart, and draining them at shutdown.
//!
//! In order: config and error types; `Busy`; the [`Engine`]; `StoreReviewer` and
//! `StoreCheckpoints` (the runtime's reviewer and checkpoints, backed by the store); the
//! engine's start, resume, [`Engine::recover`], [`Engine::decide`], [`Engine::drain`].
//! One file because the restart guarantees rest on private state these parts share and
//! order (the waiter map `decide` and the reviewer meet in, `Busy`'s leave/enter around
//! a park, the live-task map read before resuming), which a split would have to expose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use agentc_runtime::spec::ReviewerRef;
use agentc_runtime::{
    AgentSpec, AuditLog, AuditSigningKey, Checkpoints, CredentialProvider,
    DEFAULT_CHECKPOINT_INTERVAL, EngagementOutcome, EngagementRequest, EngagementSnapshot,
    FailureReason, Model, ReviewDecision, ReviewRequest, Reviewer, Runtime, ToolRegistry,
    UserIdentity, continue_engagement, resume_engagement, review_by_agent, run_engagement_with_id,
};
use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};

use crate::auth::{AuthConfig, Authenticator, RateLimitConfig, RateLimiter};
use crate::store::{
    EngagementRecord, ReviewRecord, Store, StoreAuditWriter, StoreError, StoreNotification,
    StoredDecision, now_ms,
};

/// An agent the server hosts: its runtime form and its document as written (OAS-S1).
#[derive(Debug, Clone)]
pub struct HostedAgent {
    /// The agent.
    pub spec: Arc<AgentSpec>,
    /// The agent document as YAML.
    pub document: String,
}

/// The server's limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request body read.
    pub max_body_bytes: usize,
    /// The longest text input accepted.
    pub max_input_chars: usize,
    /// How long shutdown waits for running engagements to reach a safe point.
    pub shutdown_grace: Duration,
    /// How long a reviewer may take (the runtime's review timeout).
    pub review_timeout: Duration,
    /// How long a tool may take (the runtime's tool timeout).
    pub tool_timeout: Duration,
    /// How long an agent called as a capability, here or on another server, may take
    /// (the runtime's agent timeout). It is longer than a tool's timeout because the
    /// called agent's engagement may itself wait for tools and reviewers.
    pub agent_timeout: Duration,
    /// The base URL callers reach this server at (`https://agents.example.com`, or
    /// with a path prefix behind a proxy), written into `/openapi.json`, `/llms.txt`,
    /// `/agents` and the manifests. `None`: `http://` and the bound address. The
    /// request's `Host` header is never used, so a client cannot make the server
    /// advertise another origin.
    pub public_url: Option<String>,
    /// How many failed authentications one client address may make (a burst, refilled
    /// over the window) before its API requests are answered 429 with `Retry-After`,
    /// without their credential being checked; `None`: unlimited.
    pub auth_failure_limit: Option<RateLimitConfig>,
    /// How long a client has to send a request's complete header, from the moment its
    /// connection opens or its previous answer was sent (so it also bounds an idle
    /// kept-alive connection); then the connection is closed.
    pub header_read_timeout: Duration,
    /// How long reading a request's body may take once a handler reads it; then the
    /// answer is 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// How many connections are served at once; a connection accepted over the limit
    /// is closed at once.
    pub max_connections: usize,
    /// How many connections one client address (IPv6: its /64) may hold at once; a
    /// connection over it is closed at once. `None`: half of `max_connections`.
    /// Behind a proxy every client has the proxy's address: raise it there.
    pub max_connections_per_address: Option<usize>,
    /// The key that signs the audit trail's checkpoints; `None` signs none (the trail
    /// is then only hash-chained).
    pub audit_key: Option<AuditSigningKey>,
    /// How many audit entries at most between two signed checkpoints.
    pub audit_checkpoint_every: u64,
    /// How long an instance's lease on its engagements lasts without a heartbeat: once
    /// it has passed, another instance sharing the store takes them over.
    pub lease_ttl: Duration,
    /// How often an instance renews its lease, looks for engagements to take over, and
    /// looks for review decisions that a lost notification did not bring.
    pub heartbeat_interval: Duration,
    /// The key the review console signs its sessions with. Instances behind one
    /// address share it, so a session made on one holds on all; `None`: a key drawn
    /// at start (a session then holds on this process only, until it stops).
    pub console_key: Option<[u8; 32]>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 64 * 1024,
            max_input_chars: 32 * 1024,
            shutdown_grace: Duration::from_secs(30),
            review_timeout: Duration::from_secs(7 * 24 * 3600),
            tool_timeout: Duration::from_secs(30),
            agent_timeout: Duration::from_secs(600),
            public_url: None,
            auth_failure_limit: Some(crate::auth::DEFAULT_AUTH_FAILURE_LIMIT),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_address: None,
            audit_key: None,
            audit_checkpoint_every: DEFAULT_CHECKPOINT_INTERVAL,
            lease_ttl: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
            console_key: None,
        }
    }
}

/// What a server is made of.
pub struct ServerParts {
    /// The agents to host, by name, in order.
    pub agents: Vec<HostedAgent>,
    /// Every agent of the set (hosted ones and those only called as capabilities).
    pub set_agents: Vec<AgentSpec>,
    /// The tools, with their backends bound (HTTP, mocks, remote agents).
    pub tools: ToolRegistry,
    /// Credentials for tools and remote agents (OAS-C3/C4).
    pub credentials: Arc<dyn CredentialProvider>,
    /// The model agents run on.
    pub model: Arc<dyn Model>,
    /// Models for particular agents, by name.
    pub agent_models: HashMap<String, Arc<dyn Model>>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Callers and the rate limit.
    pub auth: AuthConfig,
    /// Limits.
    pub config: ServerConfig,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Two agents share a name (OAS-A2).
    #[error("two hosted agents are named `{0}` (OAS-A2: a name is unique on a server)")]
    DuplicateAgent(String),
    /// A hosted agent's capability or guardrail tool is not in the registry it came
    /// with, so its calls could not be validated.
    #[error("agent `{agent}` uses tool `{tool}`, which its tool registry does not hold")]
    MissingTool { agent: String, tool: String },
    /// Two hosted agents bring one tool name with different interfaces or backends.
    #[error(
        "agents `{first}` and `{second}` bring different tools named `{tool}`; a server has one registry"
    )]
    ConflictingTool {
        tool: String,
        first: String,
        second: String,
    },
    /// The tool registry could not be built.
    #[error(transparent)]
    Tool(agentc_runtime::ToolError),
    /// A limit is zero where it must not be.
    #[error("invalid server limit: {0}")]
    InvalidLimit(&'static str),
    /// The configured public URL is not a plain `http(s)://host[:port][/path]`.
    #[error(transparent)]
    PublicUrl(#[from] crate::discovery::PublicUrlError),
}

/// Counts engagements that are running, as opposed to parked at a safe point (waiting
/// for a reviewer), so that shutdown can wait for the former only.
#[derive(Debug, Default)]
pub struct Busy {
    running: AtomicUsize,
    idle: Notify,
    /// The engagements parked in a wait for a remote agent (they left the count at
    /// `save_remote_wait` and enter it again at `end_remote_wait`): a task stopped in
    /// that wait must not leave a second time.
    parked_remote: Mutex<HashSet<String>>,
}

impl Busy {
    fn enter(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        // Saturating: a task stopped from outside (its engagement taken over) leaves
        // through its guard, and must never wrap the count.
        let before = self
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |running| {
                Some(running.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            self.idle.notify_waiters();
        }
    }

    /// Leaves for a wait for a remote agent (once per engagement).
    fn park_remote(&self, engagement: &str) {
        let newly = self
            .parked_remote
            .lock()
            .map(|mut parked| parked.insert(engagement.to_string()))
            .unwrap_or(false);
        if newly {
            self.leave();
        }
    }

    /// Enters again after a wait for a remote agent.
    fn unpark_remote(&self, engagement: &str) {
        let was = self
            .parked_remote
            .lock()
            .map(|mut parked| parked.remove(engagement))
            .unwrap_or(false);
        if was {
            self.enter();
        }
    }

    /// An engagement's task ends (or is stopped): it leaves, unless it had left already
    /// for a remote wait it was stopped in.
    fn leave_task(&self, engagement: &str) {
        let parked = self
            .parked_remote
            .lock()
            .map(|mut parked| parked.remove(engagement))
            .unwrap_or(false);
        if !parked {
            self.leave();
        }
    }

    /// Leaves for a wait at a safe point, and enters again when the guard is dropped
    /// (the wait ended, or the task was stopped during it).
    fn park(self: &Arc<Self>) -> Parked {
        self.leave();
        Parked(Arc::clone(self))
    }

    /// How many engagements are running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// An engagement parked at a safe point: counted as running again once dropped.
struct Parked(Arc<Busy>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.enter();
    }
}

/// What an engagement's task holds while it runs, given back when it ends or is
/// stopped (dropped): its place in the live map, its fence, its count as running.
struct EngagementTask {
    engine: Weak<Engine>,
    id: String,
    fence: i64,
}

impl Drop for EngagementTask {
    fn drop(&mut self) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let this_task = tokio::task::try_id();
        if let Ok(mut live) = engine.live.lock()
            && live
                .get(&self.id)
                .is_some_and(|handle| Some(handle.id()) == this_task)
        {
            live.remove(&self.id);
        }
        if let Ok(mut fences) = engine.fences.0.lock()
            && fences.get(&self.id) == Some(&self.fence)
        {
            fences.remove(&self.id);
        }
        engine.busy.leave_task(&self.id);
    }
}

/// An engagement reserved for one taker in this process ([`Engine::reserve`]).
struct Reservation<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut taking) = self.engine.taking.lock() {
            taking.remove(&self.id);
        }
    }
}

/// The key under which an engagement waits for a decision on one call.
fn waiter_key(engagement: &str, stage: &str, call_hash: &str) -> String {
    format!("{engagement}\n{stage}\n{call_hash}")
}

/// The fence this process holds for each engagement it runs (the engagement the user
/// started, by identifier): every write about the engagement carries it, so that a
/// write after another instance took the engagement over is refused.
#[derive(Debug, Default)]
struct Fences(Mutex<HashMap<String, i64>>);

impl Fences {
    /// The fence held for `engagement`; `-1` (which no engagement has, so every write
    /// with it is refused) when none is.
    fn of(&self, engagement: &str) -> i64 {
        self.0
            .lock()
            .ok()
            .and_then(|fences| fences.get(engagement).copied())
            .unwrap_or(-1)
    }

    fn hold(&self, engagement: &str, fence: i64) {
        if let Ok(mut fences) = self.0.lock() {
            fences.insert(engagement.to_string(), fence);
        }
    }

    fn release(&self, engagement: &str) {
        if let Ok(mut fences) = self.0.lock() {
            fences.remove(engagement);
        }
    }

    fn held(&self) -> Vec<(String, i64)> {
        self.0
            .lock()
            .map(|fences| {
                fences
                    .iter()
                    .map(|(id, fence)| (id.clone(), *fence))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The operating system's random source failed, so no identifier was made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RandomError(String);

/// A fresh identifier: 128 bits from the operating system's CSPRNG, in hex. An
/// engagement's identifier is all that names it in a URL, so it must not be guessable
/// from other identifiers or the clock; if the random source fails, nothing is
/// started rather than given a weaker identifier (fail closed).
pub fn fresh_id(prefix: &str) -> Result<String, RandomError> {
    agentc_runtime::fresh_id(prefix).map_err(RandomError)
}

/// The server's engagements and everything they run with.
pub struct Engine {
    agents: BTreeMap<String, HostedAgent>,
    runtime: Runtime,
    model: Arc<dyn Model>,
    agent_models: HashMap<String, Arc<dyn Model>>,
    store: Arc<dyn Store>,
    auth: Authenticator,
    limiter: Option<RateLimiter>,
    /// The same limit for discovery requests that carry no valid credential, counted
    /// per client address; apart from the users' buckets, so that no configured user
    /// id can share a bucket with an address.
    anonymous_limiter: Option<RateLimiter>,
    /// Failed authentications, per client address.
    auth_failures: Option<RateLimiter>,
    waiters: Arc<Mutex<HashMap<String, oneshot::Sender<StoredDecision>>>>,
    busy: Arc<Busy>,
    /// This process among the instances that share the store: fresh at each start.
    instance: String,
    fences: Arc<Fences>,
    /// Engagements held here without a task at the last coordination round.
    strays: Mutex<HashSet<String>>,
    /// Engagements this process is about to take and run: at most one taker each.
    taking: Mutex<HashSet<String>>,
    /// Clients waiting for an engagement to stop running, by engagement.
    watchers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Engagements with a task in this process, by identifier.
    live: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    shutting_down: AtomicBool,
    config: ServerConfig,
    /// The base URL of every link the server gives out: the configured one, or
    /// `http://` and the bound address, set once when serving starts.
    public_url: OnceLock<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Engine")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The store's review requests as the runtime's [`Reviewer`].
struct StoreReviewer {
    store: Arc<dyn Store>,
    fences: Arc<Fences>,
    waiters: Arc<Mutex<HashMap<String, oneshot::Sender<StoredDecision>>>>,
    busy: Arc<Busy>,
    engine: Arc<OnceLock<Weak<Engine>>>,
}

fn decision_for_runtime(decision: &StoredDecision) -> ReviewDecision {
    match decision {
        StoredDecision::Approve { call_hash } => ReviewDecision::Approve {
            call_hash: call_hash.clone(),
        },
        StoredDecision::Refuse { reason } => ReviewDecision::Refuse {
            reason: reason.clone(),
        },
    }
}

fn refuse(reason: impl Into<String>) -> ReviewDecision {
    ReviewDecision::Refuse {
        reason: reason.into(),
    }
}

impl StoreReviewer {
    fn new_record(
        request: &ReviewRequest,
        reviewer_is_agent: bool,
    ) -> Result<ReviewRecord, RandomError> {
        Ok(ReviewRecord {
            id: fresh_id("r_")?,
            engagement: request.root_engagement.clone(),
            agent: request.agent.clone(),
            reviewer: request.reviewer_id.clone(),
            reviewer_is_agent,
            tool: request.tool.clone(),
            stage: request.stage.to_string(),
            inputs: request.inputs.clone(),
            outputs: request.outputs.clone(),
            call_hash: request.call_hash.clone(),
            engagement_state: request.engagement_state.clone(),
            decision: None,
            consumed: false,
            created_at_ms: now_ms(),
        })
    }

    /// An agent reviews (OAS-C7 Reading: `oagent://name`): it must be an agent of this
    /// server's set; its answer is recorded like a person's.
    async fn review_as_agent(&self, name: &str, request: &ReviewRequest) -> ReviewDecision {
        let Some(engine) = self.engine.get().and_then(Weak::upgrade) else {
            return refuse("the server is shutting down");
        };
        let Some(reviewer) = engine.runtime.agents.get(name).cloned() else {
            return refuse(format!(
                "reviewer agent `{name}` is not an agent of this server"
            ));
        };
        let record = match Self::new_record(request, true) {
            Ok(record) => record,
            Err(error) => return refuse(format!("the review could not be recorded: {error}")),
        };
        if let Err(error) = self.store.insert_review(&record).await {
            return refuse(format!("the review could not be recorded: {error}"));
        }
        let model = engine.model_for(name);
        let decision = review_by_agent(&engine.runtime, model.as_ref(), &reviewer, request).await;
        let stored = match &decision {
            ReviewDecision::Approve { call_hash } => StoredDecision::Approve {
                call_hash: call_hash.clone(),
            },
            ReviewDecision::Refuse { reason } => StoredDecision::Refuse {
                reason: reason.clone(),
            },
        };
        let recorded = match self.store.decide_review(&record.id, &stored).await {
            Ok(_) => self.store.consume_review(&record.id).await,
            Err(error) => Err(error),
        };
        match recorded {
            Ok(()) => decision,
            Err(error) => refuse(format!("the decision could not be recorded: {error}")),
        }
    }
}

#[async_trait]
impl Reviewer for StoreReviewer {
    async fn review(&self, request: &ReviewRequest) -> ReviewDecision {
        if let ReviewerRef::Agent(name) = &request.reviewer {
            return self.review_as_agent(name, request).await;
        }
        let key = waiter_key(&request.root_engagement, request.stage, &request.call_hash);
        // The waiter is registered before the store is read, and a decision is stored
        // before the waiter is looked up, so a decision is never missed between the two.
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(key.clone(), sender);
        }
        let forget = |waiters: &Mutex<HashMap<String, oneshot::Sender<StoredDecision>>>| {
            if let Ok(mut waiters) = waiters.lock() {
                waiters.remove(&key);
            }
        };
        let open = self
            .store
            .open_review(&request.root_engagement, &request.call_hash, request.stage)
            .await;
        let record = match open {
            Ok(Some(record)) => record,
            Ok(None) => {
                let inserted = match Self::new_record(request, false) {
                    Ok(record) => self
                        .store
                        .insert_review(&record)
                        .await
                        .map(|()| record)
                        .map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match inserted {
                    Ok(record) => record,
                    Err(error) => {
                        forget(&self.waiters);
                        return refuse(format!("the review could not be recorded: {error}"));
                    }
                }
            }
            Err(error) => {
                forget(&self.waiters);
                return refuse(format!("the review could not be read: {error}"));
            }
        };
        let decision = if let Some(decision) = record.decision.clone() {
            // Decided already: after a restart, the approval given while no process
            // was waiting.
            forget(&self.waiters);
            decision
        } else {
            let status = serde_json::json!({
                "state": "awaiting_review",
                "tool": request.tool,
                "reviewer": request.reviewer_id,
                "review": record.id,
            });
            let fence = self.fences.of(&request.root_engagement);
            if let Err(error) = self
                .store
                .set_status(&request.root_engagement, &status, fence)
                .await
            {
                forget(&self.waiters);
                return refuse(format!("the engagement could not be saved: {error}"));
            }
            if let Some(engine) = self.engine.get().and_then(Weak::upgrade) {
                engine.announce(&request.root_engagement);
            }
            // Parked at a safe point: the snapshot is saved, so shutdown need not wait.
            let parked = self.busy.park();
            let answer = receiver.await;
            drop(parked);
            match answer {
                Ok(decision) => decision,
                Err(_) => {
                    forget(&self.waiters);
                    return refuse("the review was abandoned");
                }
            }
        };
        // The decision is taken and the engagement set running in one transaction: a
        // crash before it leaves the decision to be taken by the resumed engagement, a
        // crash after it leaves a running engagement, which fails as interrupted.
        if let Err(error) = self
            .store
            .take_decision(
                &record.id,
                &request.root_engagement,
                &serde_json::json!({"state": "running"}),
                self.fences.of(&request.root_engagement),
            )
            .await
        {
            tracing::error!(%error, "a review decision could not be taken");
            return refuse(format!("the decision could not be recorded: {error}"));
        }
        decision_for_runtime(&decision)
    }
}

/// The state of an engagement whose call waits for a remote agent's engagement: its
/// snapshot holds that engagement's location, so a restart resumes it by polling.
pub const AWAITING_REMOTE: &str = crate::store::AWAITING_REMOTE_STATE;

/// Snapshots into the store.
struct StoreCheckpoints {
    store: Arc<dyn Store>,
    fences: Arc<Fences>,
    busy: Arc<Busy>,
    /// The audit trail, signed at each wait point (when it signs), so that what an
    /// engagement did before a wait of hours or days is covered in the meantime.
    audit: Arc<AuditLog>,
}

impl StoreCheckpoints {
    fn sign_audit(&self, engagement: &str) {
        if let Err(error) = self.audit.checkpoint() {
            tracing::warn!(%error, engagement, "the audit checkpoint could not be written");
        }
    }
}

#[async_trait]
impl Checkpoints for StoreCheckpoints {
    async fn save(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        let id = &snapshot.engagement.id;
        self.sign_audit(id);
        self.store
            .save_snapshot(id, snapshot, self.fences.of(id))
            .await
            .map_err(|error| error.to_string())
    }

    async fn journal(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        let id = &snapshot.engagement.id;
        self.store
            .save_snapshot(id, snapshot, self.fences.of(id))
            .await
            .map_err(|error| error.to_string())
    }

    fn journals(&self) -> bool {
        true
    }

    async fn save_remote_wait(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        let id = &snapshot.engagement.id;
        self.sign_audit(id);
        let fence = self.fences.of(id);
        self.store
            .save_snapshot(id, snapshot, fence)
            .await
            .map_err(|error| error.to_string())?;
        let tool = snapshot
            .remote_wait()
            .map(|wait| wait.capability.clone())
            .unwrap_or_default();
        self.store
            .set_status(
                id,
                &serde_json::json!({"state": AWAITING_REMOTE, "tool": tool}),
                fence,
            )
            .await
            .map_err(|error| error.to_string())?;
        // Parked at a safe point: the location is saved, so shutdown need not wait
        // for the remote agent, and the next start polls it again.
        self.busy.park_remote(id);
        Ok(())
    }

    async fn end_remote_wait(&self, root_engagement: &str) -> Result<(), String> {
        self.busy.unpark_remote(root_engagement);
        // From here the engagement runs on past its saved wait; were it left marked
        // as waiting, a restart would resume it there and replay what ran since.
        self.store
            .set_status(
                root_engagement,
                &serde_json::json!({"state": "running"}),
                self.fences.of(root_engagement),
            )
            .await
            .map_err(|error| error.to_string())
    }
}

/// What became of a request to start or continue an engagement.
#[derive(Debug)]
pub enum StartError {
    /// No such agent.
    UnknownAgent,
    /// The server is shutting down.
    ShuttingDown,
    /// The store failed.
    Store(StoreError),
    /// No identifier could be made for it.
    Random(RandomError),
}

/// Why a review decision was not taken.
#[derive(Debug)]
pub enum DecideError {
    /// Not found, or not this caller's to decide (the same answer, so as not to say
    /// which reviews exist).
    NotFound,
    /// Already decided.
    AlreadyDecided,
    /// The approval names another call than the pending one.
    WrongCall,
    /// The store failed.
    Store(StoreError),
}

impl Engine {
    /// Builds the engine over its parts, as a new instance among those that share the
    /// store; the audit trail continues the store's chain (SQLite) or starts this
    /// instance's own (a shared store).
    pub async fn new(parts: ServerParts) -> Result<Arc<Engine>, ServerError> {
        let mut agents = BTreeMap::new();
        for hosted in parts.agents {
            let name = hosted.spec.name.clone();
            if agents.insert(name.clone(), hosted).is_some() {
                return Err(ServerError::DuplicateAgent(name));
            }
        }
        let store = parts.store;
        let waiters = Arc::new(Mutex::new(HashMap::new()));
        let busy = Arc::new(Busy::default());
        let fences = Arc::new(Fences::default());
        let engine_cell = Arc::new(OnceLock::new());
        if parts.config.lease_ttl.is_zero()
            || parts.config.heartbeat_interval.is_zero()
            || parts.config.heartbeat_interval >= parts.config.lease_ttl
        {
            return Err(ServerError::InvalidLimit(
                "the lease must last longer than the heartbeat interval, both above 0",
            ));
        }
        let instance = fresh_id("i_").map_err(|error| {
            ServerError::Store(StoreError::Database(format!("no instance id: {error}")))
        })?;
        // Registered before anything else, so that no other instance takes this one's
        // engagements for those of a dead one.
        store.heartbeat(&instance, now_ms()).await?;
        // One process writes an unshared store, and continues its one chain; each
        // instance of a shared store writes a chain of its own, so that no two
        // processes ever extend one chain.
        let chain = if store.is_shared() {
            instance.clone()
        } else {
            crate::store::SINGLE_CHAIN.to_string()
        };
        let writer = Box::new(StoreAuditWriter::new(Arc::clone(&store), &chain));
        let audit = match store.audit_head(&chain).await? {
            Some((seq, hash)) => AuditLog::resume(writer, seq + 1, hash),
            None => AuditLog::new(writer),
        };
        let audit = Arc::new(match &parts.config.audit_key {
            Some(key) => audit.with_checkpoints(key.clone(), parts.config.audit_checkpoint_every),
            None => audit,
        });
        let mut runtime = Runtime::new(parts.tools, audit).with_agents(&parts.set_agents);
        runtime.credentials = parts.credentials;
        runtime.reviewer = Arc::new(StoreReviewer {
            store: Arc::clone(&store),
            fences: Arc::clone(&fences),
            waiters: Arc::clone(&waiters),
            busy: Arc::clone(&busy),
            engine: Arc::clone(&engine_cell),
        });
        runtime.checkpoints = Some(Arc::new(StoreCheckpoints {
            store: Arc::clone(&store),
            fences: Arc::clone(&fences),
            busy: Arc::clone(&busy),
            audit: Arc::clone(&runtime.audit),
        }));
        runtime.review_timeout = parts.config.review_timeout;
        runtime.agent_timeout = parts.config.agent_timeout;
        runtime.tool_timeout = parts.config.tool_timeout;
        runtime.agent_models = parts.agent_models.clone();
        if parts
            .config
            .auth_failure_limit
            .is_some_and(|limit| limit.requests == 0 || limit.per_seconds == 0)
        {
            return Err(ServerError::InvalidLimit(
                "the auth failure limit needs a count and a window above 0",
            ));
        }
        if parts.config.header_read_timeout.is_zero()
            || parts.config.body_read_timeout.is_zero()
            || parts.config.max_connections == 0
            || parts.config.max_connections_per_address == Some(0)
        {
            return Err(ServerError::InvalidLimit(
                "the header and body timeouts and the connection limit must be above 0",
            ));
        }
        let public_url = OnceLock::new();
        if let Some(url) = &parts.config.public_url {
            let _ = public_url.set(crate::discovery::normalize_public_url(url)?);
        }
        let limiter = parts.auth.rate_limit.map(RateLimiter::new);
        let anonymous_limiter = parts.auth.rate_limit.map(RateLimiter::new);
        let auth_failures = parts.config.auth_failure_limit.map(RateLimiter::new);
        let engine = Arc::new(Engine {
            agents,
            runtime,
            model: parts.model,
            agent_models: parts.agent_models,
            store,
            auth: Authenticator::new(&parts.auth),
            limiter,
            anonymous_limiter,
            auth_failures,
            waiters,
            busy,
            instance,
            fences,
            strays: Mutex::new(HashSet::new()),
            taking: Mutex::new(HashSet::new()),
            watchers: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            config: parts.config,
            public_url,
        });
        let _ = engine_cell.set(Arc::downgrade(&engine));
        Ok(engine)
    }

    /// The hosted agents, by name.
    pub fn agents(&self) -> &BTreeMap<String, HostedAgent> {
        &self.agents
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Who is calling.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The per-user rate limiter, when one is configured.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_ref()
    }

    /// The rate limiter of anonymous discovery requests, per client address.
    pub fn anonymous_limiter(&self) -> Option<&RateLimiter> {
        self.anonymous_limiter.as_ref()
    }

    /// The limiter of failed authentications, per client address.
    pub fn auth_failures(&self) -> Option<&RateLimiter> {
        self.auth_failures.as_ref()
    }

    /// The limits.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The base URL of the links the server gives out (never the request's `Host`):
    /// the configured public URL, else `http://` and the bound address once serving
    /// has started, else `http://localhost`.
    pub fn public_url(&self) -> &str {
        self.public_url
            .get()
            .map_or("http://localhost", String::as_str)
    }

    /// Sets the public URL to `http://` and the bound address, unless one is
    /// configured (or already set).
    pub fn default_public_url(&self, address: std::net::SocketAddr) {
        let _ = self.public_url.set(crate::discovery::bound_url(address));
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// How many engagements are running (not parked for review).
    pub fn running(&self) -> usize {
        self.busy.running()
    }

    fn model_for(&self, agent: &str) -> Arc<dyn Model> {
        self.agent_models
            .get(agent)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.model))
    }

    fn is_live(&self, id: &str) -> bool {
        self.live
            .lock()
            .map(|live| live.contains_key(id))
            .unwrap_or(false)
    }

    /// This process's identifier among the instances that share the store.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs `work` as the engagement `id`'s task, counted as running until it ends,
    /// holding the engagement at `fence`.
    fn spawn_engagement<F>(self: &Arc<Self>, id: String, fence: i64, work: F)
    where
        F: Future<Output = EngagementOutcome> + Send + 'static,
    {
        // One task per engagement in a process: its takers reserve it first
        // (`Engine::reserve`), so a second one here is a mistake, refused.
        if self.is_live(&id) {
            tracing::error!(engagement = %id, "the engagement already runs here; it is not run twice");
            return;
        }
        self.busy.enter();
        self.fences.hold(&id, fence);
        let engine = Arc::clone(self);
        let task = EngagementTask {
            engine: Arc::downgrade(self),
            id: id.clone(),
            fence,
        };
        // The task starts once it is in the live map, so that it is never seen to end
        // before it is there (no lock is held across the spawn).
        let (go, ready) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let task = task;
            if ready.await.is_err() {
                return;
            }
            let outcome = work.await;
            engine.record_outcome(&task.id, outcome).await;
            drop(task);
        });
        match self.live.lock() {
            Ok(mut live) => {
                live.insert(id, handle.abort_handle());
            }
            Err(poisoned) => {
                poisoned.into_inner().insert(id, handle.abort_handle());
            }
        }
        let _ = go.send(());
    }

    /// Reserves `id` for this process to take and run: `None` when it runs here already
    /// or another taker here has it. Held until the engagement's task is spawned.
    fn reserve(&self, id: &str) -> Option<Reservation<'_>> {
        let mut taking = self.taking.lock().ok()?;
        if self.is_live(id) || !taking.insert(id.to_string()) {
            return None;
        }
        Some(Reservation {
            engine: self,
            id: id.to_string(),
        })
    }

    async fn record_outcome(&self, id: &str, outcome: EngagementOutcome) {
        let status = serde_json::to_value(&outcome.status)
            .unwrap_or_else(|_| serde_json::json!({"state": "failed"}));
        let record = EngagementRecord {
            id: id.to_string(),
            agent: String::new(),
            user: UserIdentity::new(""),
            status,
            text: outcome.text,
            exposes: outcome.exposes,
            snapshot: Some(outcome.snapshot),
            created_at_ms: 0,
            updated_at_ms: now_ms(),
            owner: self.instance.clone(),
            fence: self.fences.of(id),
            pending_input: None,
        };
        match self.store.update_engagement(&record, record.fence).await {
            Ok(()) => self.announce(id),
            // Another instance runs the engagement now; what this one made of it is not
            // the engagement's outcome.
            Err(StoreError::Fenced(_)) => {
                tracing::warn!(engagement = %id, "the engagement was taken over; its outcome here is dropped");
            }
            Err(error) => {
                tracing::error!(engagement = %id, %error, "the engagement's outcome could not be saved");
            }
        }
    }

    /// Starts an engagement of `agent` for `user` with `input` (OAS-S3); returns its
    /// identifier at once, while it runs.
    pub async fn start(
        self: &Arc<Self>,
        agent: &str,
        user: UserIdentity,
        input: String,
    ) -> Result<String, StartError> {
        if self.is_shutting_down() {
            return Err(StartError::ShuttingDown);
        }
        let hosted = self.agents.get(agent).ok_or(StartError::UnknownAgent)?;
        let id = fresh_id("e_").map_err(StartError::Random)?;
        let now = now_ms();
        let fence = 1;
        self.store
            .insert_engagement(&EngagementRecord {
                id: id.clone(),
                agent: agent.to_string(),
                user: user.clone(),
                status: serde_json::json!({"state": "running"}),
                text: None,
                exposes: serde_json::Map::new(),
                snapshot: None,
                created_at_ms: now,
                updated_at_ms: now,
                owner: self.instance.clone(),
                fence,
                pending_input: Some(input.clone()),
            })
            .await
            .map_err(StartError::Store)?;
        self.spawn_run(id.clone(), fence, Arc::clone(&hosted.spec), user, input);
        Ok(id)
    }

    /// Runs an engagement from its first input (at its start, or taken over before it
    /// saved anything).
    fn spawn_run(
        self: &Arc<Self>,
        id: String,
        fence: i64,
        spec: Arc<AgentSpec>,
        user: UserIdentity,
        input: String,
    ) {
        let engine = Arc::clone(self);
        let task_id = id.clone();
        self.spawn_engagement(id, fence, async move {
            let model = engine.model_for(&spec.name);
            run_engagement_with_id(
                &engine.runtime,
                model.as_ref(),
                EngagementRequest {
                    agent: &spec,
                    user: Some(user),
                    input: &input,
                    memory: None,
                },
                &task_id,
            )
            .await
        });
    }

    /// Adds user input to an engagement that yielded (multi-turn); its own user only.
    /// Whichever instance gets the input runs the turn: it takes the engagement over.
    pub async fn add_input(
        self: &Arc<Self>,
        record: &EngagementRecord,
        input: String,
    ) -> Result<(), StartError> {
        if self.is_shutting_down() {
            return Err(StartError::ShuttingDown);
        }
        let hosted = self
            .agents
            .get(&record.agent)
            .ok_or(StartError::UnknownAgent)?;
        let Some(_reserved) = self.reserve(&record.id) else {
            // It runs here already, or another request is adding input to it.
            return Err(StartError::Store(StoreError::Fenced(record.id.clone())));
        };
        let Some(claimed) = self
            .store
            .claim_engagement(&record.id, &self.instance, record.fence)
            .await
            .map_err(StartError::Store)?
        else {
            // Another request took it first: this input was not added.
            return Err(StartError::Store(StoreError::Fenced(record.id.clone())));
        };
        self.store
            .set_pending_input(
                &record.id,
                &serde_json::json!({"state": "running"}),
                &input,
                claimed.fence,
            )
            .await
            .map_err(StartError::Store)?;
        let snapshot = claimed.snapshot.unwrap_or_default();
        self.spawn_continue(
            record.id.clone(),
            claimed.fence,
            Arc::clone(&hosted.spec),
            snapshot,
            input,
        );
        Ok(())
    }

    fn spawn_continue(
        self: &Arc<Self>,
        id: String,
        fence: i64,
        spec: Arc<AgentSpec>,
        snapshot: EngagementSnapshot,
        input: String,
    ) {
        let engine = Arc::clone(self);
        self.spawn_engagement(id, fence, async move {
            let model = engine.model_for(&spec.name);
            continue_engagement(&engine.runtime, model.as_ref(), &spec, snapshot, &input).await
        });
    }

    /// Runs an engagement this instance has just taken (over): from its pending input
    /// when no snapshot was saved since that input, else from its latest snapshot — a
    /// wait for a review or a remote agent, or a call's invocation (AGX-T2), where it
    /// goes on without invoking again a call that returned.
    async fn run_taken(self: &Arc<Self>, record: EngagementRecord) {
        let Some(hosted) = self.agents.get(&record.agent) else {
            self.fail_stored(&record.id, record.fence, "its agent is no longer hosted")
                .await;
            return;
        };
        let spec = Arc::clone(&hosted.spec);
        tracing::info!(engagement = %record.id, instance = %self.instance, "running a taken engagement");
        match (record.pending_input, record.snapshot) {
            (Some(input), None) => {
                self.spawn_run(record.id, record.fence, spec, record.user, input);
            }
            (Some(input), Some(snapshot)) => {
                self.spawn_continue(record.id, record.fence, spec, snapshot, input);
            }
            (None, Some(snapshot)) => {
                let engine = Arc::clone(self);
                self.spawn_engagement(record.id, record.fence, async move {
                    let model = engine.model_for(&spec.name);
                    resume_engagement(&engine.runtime, model.as_ref(), &spec, snapshot).await
                });
            }
            (None, None) => {
                self.fail_stored(
                    &record.id,
                    record.fence,
                    "nothing was saved to resume it from",
                )
                .await;
            }
        }
    }

    async fn fail_stored(&self, id: &str, fence: i64, detail: &str) {
        let status = serde_json::to_value(agentc_runtime::EngagementStatus::Failed {
            reason: FailureReason::Interrupted {
                detail: detail.to_string(),
            },
        })
        .unwrap_or_else(|_| serde_json::json!({"state": "failed"}));
        match self.store.set_status(id, &status, fence).await {
            Ok(()) => self.announce(id),
            Err(error) => {
                tracing::error!(engagement = %id, %error, "could not mark the engagement failed");
            }
        }
    }

    /// At start: takes over every engagement that an earlier process left (an unshared
    /// store) or whose owner's lease has expired (a shared one), then keeps the lease
    /// and the takeover going in the background ([`Engine::coordinate`]).
    pub async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        self.share_limits().await;
        self.take_over_orphans().await?;
        let interval = self.config.heartbeat_interval;
        // The heartbeat has a loop of its own, so that a long round (a takeover of many
        // engagements) never delays it past the lease.
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if engine.is_shutting_down() {
                    return;
                }
                if let Err(error) = engine.store.heartbeat(&engine.instance, now_ms()).await {
                    tracing::warn!(%error, "the lease could not be renewed");
                }
            }
        });
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if engine.is_shutting_down() {
                    return;
                }
                engine.coordinate().await;
            }
        });
        if let Some(mut notifications) = self.store.notifications().await? {
            let engine = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(notification) = notifications.recv().await {
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    match notification {
                        StoreNotification::Decided(engagement) => {
                            engine.deliver_decisions(Some(&engagement)).await;
                        }
                        StoreNotification::Changed(engagement) => engine.announce(&engagement),
                    }
                }
            });
        }
        Ok(())
    }

    /// Wakes the clients waiting here for `engagement` to stop running.
    pub(crate) fn announce(&self, engagement: &str) {
        let watcher = self
            .watchers
            .lock()
            .ok()
            .and_then(|watchers| watchers.get(engagement).cloned());
        if let Some(watcher) = watcher {
            watcher.notify_waiters();
        }
    }

    /// The engagement `id` once it no longer runs ([`crate::store::RUNNING_STATES`]),
    /// or as it is when `limit` has passed: what `GET /engagements/{id}?wait=…` answers,
    /// so a client learns of the end without polling. Woken by this instance's own
    /// writes and, in a shared store, by the other instances' announcements; read
    /// again at least every second, so a lost announcement costs a second at most.
    pub async fn wait_while_running(
        &self,
        id: &str,
        limit: Duration,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + limit;
        let watcher = self.watchers.lock().ok().map(|mut watchers| {
            Arc::clone(
                watchers
                    .entry(id.to_string())
                    .or_insert_with(|| Arc::new(Notify::new())),
            )
        });
        let Some(watcher) = watcher else {
            return self.store.engagement_summary(id).await;
        };
        let result = loop {
            let woken = watcher.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let record = self.store.engagement_summary(id).await;
            let settled = match &record {
                Ok(Some(record)) => !crate::store::RUNNING_STATES.contains(&record.state()),
                _ => true,
            };
            let now = tokio::time::Instant::now();
            if settled || now >= deadline {
                break record;
            }
            let pause = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(pause, woken).await;
        };
        if let Ok(mut watchers) = self.watchers.lock()
            && watchers
                .get(id)
                .is_some_and(|shared| Arc::strong_count(shared) <= 2)
        {
            watchers.remove(id);
        }
        result
    }

    /// One round of coordination (the lease is renewed by a loop of its own): shares
    /// the rate limits among the live instances, stops the engagements whose lease this
    /// instance lost (it was paused or cut off past the lease, and another took them
    /// over), runs again those it holds without a task, takes over those whose owner's
    /// lease expired, and delivers review decisions that a lost notification did not
    /// bring.
    pub async fn coordinate(self: &Arc<Self>) {
        self.share_limits().await;
        // What this process holds is read before what the store says it holds: an
        // engagement started in between is then in neither list, rather than held
        // here and not yet seen there (and taken for lost).
        let held = self.fences.held();
        match self.store.owned_engagements(&self.instance).await {
            Ok(owned) => {
                self.stop_lost_engagements(&held, &owned);
                self.adopt_strays(&owned).await;
            }
            Err(error) => tracing::warn!(%error, "the engagements held could not be read"),
        }
        if let Err(error) = self.take_over_orphans().await {
            tracing::warn!(%error, "engagements could not be taken over");
        }
        self.deliver_decisions(None).await;
    }

    /// Shares the rate limits among the instances alive now (ours included).
    async fn share_limits(&self) {
        let alive_since = now_ms()
            .saturating_sub(i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX));
        match self.store.live_instances(alive_since).await {
            Ok(instances) => {
                for limiter in [&self.limiter, &self.anonymous_limiter, &self.auth_failures]
                    .into_iter()
                    .flatten()
                {
                    limiter.share_among(instances);
                }
            }
            Err(error) => tracing::warn!(%error, "the live instances could not be counted"),
        }
    }

    /// Aborts the tasks of engagements this instance no longer holds. Their writes are
    /// refused anyway (the fence moved on); stopping them saves the work.
    fn stop_lost_engagements(&self, held: &[(String, i64)], owned: &[(String, i64)]) {
        let owned: HashMap<&str, i64> = owned
            .iter()
            .map(|(id, fence)| (id.as_str(), *fence))
            .collect();
        for (id, fence) in held {
            if owned.get(id.as_str()) == Some(fence) {
                continue;
            }
            // Ended since (its outcome stored, so no longer in the store's list): its
            // task is gone or going, and has nothing more to write. Or taken again here
            // since, with a new fence: that task is the engagement's now.
            if !self.is_live(id) || self.fences.of(id) != *fence {
                continue;
            }
            tracing::warn!(engagement = %id, "the engagement was taken over by another instance; stopping it here");
            let handle = self
                .live
                .lock()
                .ok()
                .and_then(|mut live| live.remove(id.as_str()));
            if let Some(handle) = handle {
                handle.abort();
            }
            self.fences.release(id);
        }
    }

    /// Runs again the unsettled engagements this instance holds without a task here,
    /// found so in two rounds in a row (an engagement just started or taken gets its
    /// task at once, so it is never one of them): a claim whose answer was lost with
    /// its database connection, say. Every unsettled engagement a live instance holds
    /// has a task there. Taken with a new fence, so that any task of it that were still
    /// about could write nothing more.
    async fn adopt_strays(self: &Arc<Self>, owned: &[(String, i64)]) {
        let strays: HashSet<String> = owned
            .iter()
            .filter(|(id, _)| !self.is_live(id))
            .map(|(id, _)| id.clone())
            .collect();
        let seen_before = match self.strays.lock() {
            Ok(mut previous) => std::mem::replace(&mut *previous, strays.clone()),
            Err(_) => return,
        };
        for (id, fence) in owned {
            if !strays.contains(id) || !seen_before.contains(id) || self.is_live(id) {
                continue;
            }
            let Some(_reserved) = self.reserve(id) else {
                continue;
            };
            tracing::warn!(engagement = %id, "an engagement held here had no task; running it again");
            if let Ok(Some(record)) = self
                .store
                .claim_engagement(id, &self.instance, *fence)
                .await
            {
                self.run_taken(record).await;
            }
        }
    }

    /// Takes over the engagements no live instance holds, and runs each.
    async fn take_over_orphans(self: &Arc<Self>) -> Result<(), StoreError> {
        // An unshared store has one process: every engagement it did not start here
        // was left by an earlier one.
        let expired_before = if self.store.is_shared() {
            now_ms().saturating_sub(
                i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX),
            )
        } else {
            i64::MAX
        };
        loop {
            let orphans = self
                .store
                .orphaned_engagements(&self.instance, expired_before, TAKEOVER_BATCH)
                .await?;
            let count = orphans.len();
            for (id, fence) in orphans {
                if self.is_shutting_down() {
                    return Ok(());
                }
                let Some(_reserved) = self.reserve(&id) else {
                    continue;
                };
                if let Some(record) = self
                    .store
                    .claim_engagement(&id, &self.instance, fence)
                    .await?
                {
                    self.run_taken(record).await;
                }
            }
            if count < TAKEOVER_BATCH {
                return Ok(());
            }
        }
    }

    /// Hands decided reviews of engagements this instance holds to their waiting calls
    /// (of `engagement` only, when given); an engagement held here without a task (its
    /// decision came while none waited) runs again from its snapshot.
    async fn deliver_decisions(self: &Arc<Self>, engagement: Option<&str>) {
        let decided = match self.store.decided_reviews_owned_by(&self.instance).await {
            Ok(decided) => decided,
            Err(error) => {
                tracing::warn!(%error, "decided reviews could not be read");
                return;
            }
        };
        for review in decided {
            if engagement.is_some_and(|engagement| engagement != review.engagement) {
                continue;
            }
            let Some(decision) = review.decision.clone() else {
                continue;
            };
            let key = waiter_key(&review.engagement, &review.stage, &review.call_hash);
            let waiter = self
                .waiters
                .lock()
                .ok()
                .and_then(|mut waiters| waiters.remove(&key));
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(decision);
                }
                None if !self.is_live(&review.engagement) => {
                    let Some(_reserved) = self.reserve(&review.engagement) else {
                        continue;
                    };
                    // Only an engagement that still waits for this review runs again:
                    // one that has ended since (its review timed out, say) stays ended.
                    if let Ok(Some(record)) = self.store.engagement(&review.engagement).await
                        && record.owner == self.instance
                        && record.state() == "awaiting_review"
                        && let Some(claimed) = self
                            .store
                            .claim_engagement(&record.id, &self.instance, record.fence)
                            .await
                            .ok()
                            .flatten()
                    {
                        self.run_taken(claimed).await;
                    }
                }
                None => {}
            }
        }
    }

    /// Whether `user` is, or matches, the reviewer named in a review: by user id, or by
    /// email (an owner or named reviewer is often written as an address).
    pub fn is_reviewer(user: &UserIdentity, reviewer: &str) -> bool {
        user.id == reviewer || user.email.as_deref() == Some(reviewer)
    }

    /// Whether `user` may read an engagement: its own user, or one of its reviewers.
    pub async fn may_read(
        &self,
        user: &UserIdentity,
        record: &EngagementRecord,
    ) -> Result<bool, StoreError> {
        if record.user.id == user.id {
            return Ok(true);
        }
        Ok(self
            .store
            .reviews_of(&record.id)
            .await?
            .iter()
            .any(|review| !review.reviewer_is_agent && Self::is_reviewer(user, &review.reviewer)))
    }

    /// Takes a reviewer's decision (OAS-C7): only the named reviewer may decide, only
    /// once, and an approval must name the pending call's hash, so it approves exactly
    /// the call the reviewer saw. The decision reaches the waiting call wherever it
    /// runs: here directly, on another instance by the store's notification.
    pub async fn decide(
        self: &Arc<Self>,
        user: &UserIdentity,
        review_id: &str,
        decision: StoredDecision,
    ) -> Result<ReviewRecord, DecideError> {
        let review = self
            .store
            .review(review_id)
            .await
            .map_err(DecideError::Store)?
            .filter(|review| !review.reviewer_is_agent && Self::is_reviewer(user, &review.reviewer))
            .ok_or(DecideError::NotFound)?;
        if review.decision.is_some() {
            return Err(DecideError::AlreadyDecided);
        }
        if let StoredDecision::Approve { call_hash } = &decision
            && call_hash != &review.call_hash
        {
            return Err(DecideError::WrongCall);
        }
        if !self
            .store
            .decide_review(review_id, &decision)
            .await
            .map_err(DecideError::Store)?
        {
            return Err(DecideError::AlreadyDecided);
        }
        self.deliver_decisions(Some(&review.engagement)).await;
        let mut decided = review;
        decided.decision = Some(decision);
        Ok(decided)
    }

    /// Stops taking new engagements, waits (up to the grace period) for running ones to
    /// reach a safe point — completion, failure or a wait for review, whose snapshot is
    /// saved — and stops the rest, which another instance (or the next start) takes
    /// over from their latest snapshot. The instance leaves the store's list, so that
    /// others take its engagements at once rather than after its lease.
    pub async fn drain(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if tokio::time::timeout(self.config.shutdown_grace, self.busy.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.busy.running(),
                "shutdown grace period over; stopping running engagements"
            );
        }
        let handles: Vec<tokio::task::AbortHandle> = match self.live.lock() {
            Ok(mut live) => live.drain().map(|(_, handle)| handle).collect(),
            Err(_) => Vec::new(),
        };
        for handle in handles {
            handle.abort();
        }
        // The trail ends signed, so that a clean restart leaves no unsigned entries.
        if let Err(error) = self.runtime.audit.checkpoint() {
            tracing::warn!(%error, "audit checkpoint failed at shutdown");
        }
        if let Err(error) = self.runtime.audit.flush() {
            tracing::warn!(%error, "audit flush failed at shutdown");
        }
        if let Err(error) = self.store.retire_instance(&self.instance).await {
            tracing::warn!(%error, "the instance could not leave the store's list");
        }
    }
}

/// How many engagements one takeover query reads at a time.
const TAKEOVER_BATCH: usize = 100;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A task stopped while parked in a remote wait leaves the running count once, not
    /// twice (so `drain` still waits for the others); one that ends after its wait
    /// leaves once too.
    #[test]
    fn a_task_stopped_in_a_remote_wait_leaves_the_count_once() {
        let busy = Busy::default();
        busy.enter();
        busy.enter();
        assert_eq!(busy.running(), 2);
        busy.park_remote("e_1");
        busy.park_remote("e_1");
        assert_eq!(
            busy.running(),
            1,
            "a second save of the same wait leaves nothing"
        );
        busy.leave_task("e_1");
        assert_eq!(
            busy.running(),
            1,
            "stopped in its wait: it had left already"
        );
        busy.park_remote("e_2");
        busy.unpark_remote("e_2");
        busy.leave_task("e_2");
        assert_eq!(busy.running(), 0);
    }

    #[test]
    fn identifiers_are_128_random_bits_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = fresh_id("e_").unwrap();
            let hex = id.strip_prefix("e_").unwrap();
            assert_eq!(hex.len(), 32);
            assert!(hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
    }
}
