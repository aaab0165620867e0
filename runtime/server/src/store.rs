//! Where the server keeps what must survive a restart: engagements (with their latest
//! snapshot), review requests, the audit trail, and which server instance runs which
//! engagement. The [`Store`] trait is what the server uses; [`crate::sqlite::SqliteStore`]
//! is the embedded default (one instance), [`crate::postgres::PostgresStore`] the shared
//! one (several instances on one database, ARCHITECTURE.md, "Coordination").
//!
//! Every write about an engagement carries the fence its writer holds: the token it got
//! when it created or took the engagement over. A takeover increments the fence, so a
//! writer that lost the engagement (a paused process that woke up after its lease
//! expired) has every write refused ([`StoreError::Fenced`]) and stops.
//!
//! The trait is asynchronous, but for [`Store::append_audit`]: the runtime's audit log
//! writes through `std::io::Write`, and an action is taken only once its line is stored.

use agentc_runtime::{EngagementSnapshot, UserIdentity};
use serde::{Deserialize, Serialize};

/// Why the store failed. The server answers 500 and the engagement fails closed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("the store failed: {0}")]
    Database(String),
    /// A stored value could not be read back.
    #[error("a stored value is corrupt: {0}")]
    Corrupt(String),
    /// The engagement is no longer this writer's: another instance took it over (its
    /// fence moved on), so nothing this writer does for it may be stored.
    #[error("engagement `{0}` is held by another server instance")]
    Fenced(String),
}

/// One engagement as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngagementRecord {
    /// The engagement's identifier (unique across restarts).
    pub id: String,
    /// The agent engaged.
    pub agent: String,
    /// The engaging user (OAS-C3): the authenticated caller who started it.
    pub user: UserIdentity,
    /// The runtime's status as JSON (`{"state": ...}`).
    pub status: serde_json::Value,
    /// The agent's latest text result.
    pub text: Option<String>,
    /// The latest `exposes` values (OAS-X1).
    pub exposes: serde_json::Map<String, serde_json::Value>,
    /// Where the engagement is: at a wait point, or where it yielded.
    pub snapshot: Option<EngagementSnapshot>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// The server instance that runs the engagement (holds its lease).
    pub owner: String,
    /// The fence of the owner's lease: incremented by every takeover.
    pub fence: i64,
    /// The user input that started the engagement, or was added to it, while no
    /// snapshot has been saved since (a takeover before the first one starts from it).
    pub pending_input: Option<String>,
}

/// What a shared store announces to every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreNotification {
    /// A review of this engagement was decided (on any instance).
    Decided(String),
    /// This engagement stopped running: it ended, yielded, or waits for a reviewer.
    Changed(String),
}

/// The states in which an engagement runs (or is about to): what a client waiting
/// for it (`GET /engagements/{id}?wait=…`) waits through.
pub const RUNNING_STATES: &[&str] = &[
    "running",
    "created",
    "awaiting_model",
    "awaiting_tool",
    AWAITING_REMOTE_STATE,
];

/// The state of an engagement whose call waits for a remote agent's engagement.
pub const AWAITING_REMOTE_STATE: &str = "awaiting_remote";

/// The states of an engagement that has ended, or waits for its user: no instance
/// needs to run it, so none takes it over.
pub const SETTLED_STATES: &[&str] = &["completed", "failed", "awaiting_user_input"];

impl EngagementRecord {
    /// The status's `state` name (`completed`, `awaiting_review`, ...).
    pub fn state(&self) -> &str {
        self.status
            .get("state")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unknown")
    }
}

/// A reviewer's decision, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum StoredDecision {
    /// Approves the call whose hash is given.
    Approve { call_hash: String },
    /// Refuses, with a reason.
    Refuse { reason: String },
}

/// One review request (OAS-C7) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// The review's identifier.
    pub id: String,
    /// The engagement waiting.
    pub engagement: String,
    /// The agent asking.
    pub agent: String,
    /// The resolved reviewer: a user id or email, the owner, or an agent name.
    pub reviewer: String,
    /// Whether the reviewer is an agent (`oagent://name`).
    pub reviewer_is_agent: bool,
    /// The tool to be called.
    pub tool: String,
    /// `input` or `output`.
    pub stage: String,
    /// The pending call's input.
    pub inputs: serde_json::Value,
    /// The pending call's output, for an output review.
    pub outputs: Option<serde_json::Value>,
    /// The hash an approval must carry: it binds the approval to this exact call.
    pub call_hash: String,
    /// The engagement as the reviewer sees it.
    pub engagement_state: serde_json::Value,
    /// The decision, once given.
    pub decision: Option<StoredDecision>,
    /// Whether the waiting engagement has taken the decision; a consumed decision is
    /// never applied again, so one approval lets exactly one call through.
    pub consumed: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The store.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Whether several server instances may share this store. When not (SQLite), one
    /// process owns every engagement, so at start it takes over every engagement that
    /// another (earlier) process left, without waiting for that one's lease to expire.
    fn is_shared(&self) -> bool;

    /// Records that `instance` is alive at `now_ms` (registering it the first time).
    async fn heartbeat(&self, instance: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Removes `instance` (a graceful stop): its engagements may be taken over at once.
    async fn retire_instance(&self, instance: &str) -> Result<(), StoreError>;
    /// How many instances have had a heartbeat since `alive_since_ms` (this one
    /// included, once it has had one): what the rate limits are shared among.
    async fn live_instances(&self, alive_since_ms: i64) -> Result<usize, StoreError>;
    /// Engagements not settled ([`SETTLED_STATES`]) and not owned by `instance`, whose
    /// owner's last heartbeat is before `expired_before_ms` or who has none, oldest
    /// first, at most `limit`: their identifier and fence.
    async fn orphaned_engagements(
        &self,
        instance: &str,
        expired_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Takes the engagement `id` over for `instance` if its fence is still
    /// `seen_fence`: the owner becomes `instance` and the fence moves on by one. The
    /// engagement as taken (with its new fence), or `None` when another took it first.
    async fn claim_engagement(
        &self,
        id: &str,
        instance: &str,
        seen_fence: i64,
    ) -> Result<Option<EngagementRecord>, StoreError>;
    /// The unsettled engagements `instance` owns, with their fences.
    async fn owned_engagements(&self, instance: &str) -> Result<Vec<(String, i64)>, StoreError>;

    /// Adds a new engagement (owned by its `owner`, at its `fence`); an existing
    /// identifier is an error.
    async fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError>;
    /// Replaces an engagement's status, results and snapshot, and clears its pending
    /// input; [`StoreError::Fenced`] unless the fence is still `fence`.
    async fn update_engagement(
        &self,
        record: &EngagementRecord,
        fence: i64,
    ) -> Result<(), StoreError>;
    /// Sets only the status (fenced).
    async fn set_status(
        &self,
        id: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError>;
    /// Sets the status and the input to run from (a turn added to an engagement that
    /// yielded), fenced.
    async fn set_pending_input(
        &self,
        id: &str,
        status: &serde_json::Value,
        input: &str,
        fence: i64,
    ) -> Result<(), StoreError>;
    /// Saves the latest snapshot and clears the pending input (fenced).
    async fn save_snapshot(
        &self,
        id: &str,
        snapshot: &EngagementSnapshot,
        fence: i64,
    ) -> Result<(), StoreError>;
    /// An engagement by identifier.
    async fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError>;
    /// An engagement by identifier without its snapshot (`snapshot` is `None`): what
    /// its status, answer and exposes need, read without parsing the conversation.
    async fn engagement_summary(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError>;
    /// The engagements whose state is one of `states`.
    async fn engagements_in_states(
        &self,
        states: &[&str],
    ) -> Result<Vec<EngagementRecord>, StoreError>;

    /// Adds a review request.
    async fn insert_review(&self, review: &ReviewRecord) -> Result<(), StoreError>;
    /// A review by identifier.
    async fn review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError>;
    /// The latest review of one call of one engagement that has not been consumed.
    async fn open_review(
        &self,
        engagement: &str,
        call_hash: &str,
        stage: &str,
    ) -> Result<Option<ReviewRecord>, StoreError>;
    /// Records a decision on a review that has none; `false` when it already had one.
    /// A shared store tells every instance ([`Store::decision_notifications`]).
    async fn decide_review(&self, id: &str, decision: &StoredDecision) -> Result<bool, StoreError>;
    /// Marks a decided review as taken by its engagement.
    async fn consume_review(&self, id: &str) -> Result<(), StoreError>;
    /// Marks a decided review as taken and sets its waiting engagement's status, in one
    /// transaction: both or neither, and neither unless the engagement's fence is still
    /// `fence`. Were they two steps, a crash between them would leave the engagement
    /// `awaiting_review` with its decision already taken, which no restart resumes.
    async fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError>;
    /// Every review of an engagement, oldest first.
    async fn reviews_of(&self, engagement: &str) -> Result<Vec<ReviewRecord>, StoreError>;
    /// Undecided reviews addressed to any of `reviewers`, oldest first.
    async fn pending_reviews_for(
        &self,
        reviewers: &[&str],
    ) -> Result<Vec<ReviewRecord>, StoreError>;
    /// One page of the undecided reviews addressed to any of `reviewers` that a person
    /// decides (not an agent): in the order of `(created_at_ms, id)`, those after the
    /// position `after` when given, at most `limit` of them.
    async fn pending_reviews_page(
        &self,
        reviewers: &[&str],
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<ReviewRecord>, StoreError>;
    /// Decided reviews not yet taken, of engagements `instance` owns: what a
    /// notification lost on the way would have woken.
    async fn decided_reviews_owned_by(
        &self,
        instance: &str,
    ) -> Result<Vec<ReviewRecord>, StoreError>;
    /// What other instances announce, as it comes (PostgreSQL `LISTEN`): review
    /// decisions and engagements that stopped running; `None` for a store that only one
    /// instance uses.
    async fn notifications(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<StoreNotification>>, StoreError>;

    /// Appends one line to the hash-chained audit trail `chain` (synchronous: see the
    /// module documentation).
    fn append_audit(
        &self,
        chain: &str,
        seq: u64,
        engagement: &str,
        line: &str,
    ) -> Result<(), StoreError>;
    /// The last entry of `chain`: its sequence number and hash, to continue the chain.
    async fn audit_head(&self, chain: &str) -> Result<Option<(u64, String)>, StoreError>;
    /// The audit chains, oldest first: one per writing instance in a shared store.
    async fn audit_chains(&self) -> Result<Vec<String>, StoreError>;
    /// Every line of `chain`, in order (for `agentc audit verify`).
    async fn audit_lines(&self, chain: &str) -> Result<Vec<String>, StoreError>;
}

/// A value the runtime defines (status, snapshot, exposes, a review), as the JSON text
/// both stores keep it in.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A stored JSON text, read back.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// The `state` column of a status: its `state` tag, or `unknown`.
pub(crate) fn state_of(status: &serde_json::Value) -> String {
    status
        .get("state")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

/// The answer to a fenced write: one row changed, or the engagement is another
/// instance's (or gone).
pub(crate) fn fenced(changed: u64, id: &str) -> Result<(), StoreError> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(id.to_string()))
    }
}

/// A review with `decision` recorded, as JSON, and its engagement; `None` when there is
/// no such review or it was decided already. Both stores then store it only where it is
/// still undecided, so two decisions at once take one.
pub(crate) fn decided_review(
    review: Option<ReviewRecord>,
    decision: &StoredDecision,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(mut review) = review else {
        return Ok(None);
    };
    if review.decision.is_some() {
        return Ok(None);
    }
    review.decision = Some(decision.clone());
    Ok(Some((to_json(&review)?, review.engagement)))
}

/// The name of the one audit chain of a store that one process writes (SQLite).
pub const SINGLE_CHAIN: &str = "main";

/// The sequence number and hash of a stored audit line (an entry or a signed
/// checkpoint: both have the two fields), to continue its chain from.
pub fn chain_head(line: &str) -> Result<(u64, String), StoreError> {
    #[derive(serde::Deserialize)]
    struct Head {
        seq: u64,
        hash: String,
    }
    let head: Head =
        serde_json::from_str(line).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok((head.seq, head.hash))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|elapsed| i64::try_from(elapsed.as_millis()).ok())
        .unwrap_or(0)
}

/// The runtime's audit log written into a [`Store`]: each complete JSON line is one
/// row. A line that cannot be stored makes the write fail, so the action it records
/// does not go ahead (the audit log fails closed).
pub struct StoreAuditWriter {
    store: std::sync::Arc<dyn Store>,
    chain: String,
    pending: Vec<u8>,
}

impl StoreAuditWriter {
    /// A writer into the chain `chain` of `store`.
    pub fn new(store: std::sync::Arc<dyn Store>, chain: &str) -> Self {
        StoreAuditWriter {
            store,
            chain: chain.to_string(),
            pending: Vec::new(),
        }
    }
}

impl std::io::Write for StoreAuditWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = std::str::from_utf8(&line[..line.len() - 1])
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            let entry: serde_json::Value = serde_json::from_str(text)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            let seq = entry
                .get("seq")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| std::io::Error::other("an audit line has no seq"))?;
            let engagement = entry
                .get("engagement")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            self.store
                .append_audit(&self.chain, seq, engagement, text)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
