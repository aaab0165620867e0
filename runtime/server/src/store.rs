//! Where the server keeps what must survive a restart: engagements (with their latest
//! snapshot), review requests and the audit trail. The [`Store`] trait is what the
//! server uses; [`crate::sqlite::SqliteStore`] is the embedded default, and a shared
//! database (PostgreSQL) can implement the same trait for several server instances.
//!
//! The trait is synchronous: the audit trail is written through `std::io::Write` (the
//! runtime's [`agentc_runtime::AuditLog`]), every operation is one short statement, and
//! an implementation over a network keeps its own connection pool.

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
}

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
pub trait Store: Send + Sync {
    /// Adds a new engagement; an existing identifier is an error.
    fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError>;
    /// Replaces an engagement's status, results and snapshot.
    fn update_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError>;
    /// Sets only the status.
    fn set_status(&self, id: &str, status: &serde_json::Value) -> Result<(), StoreError>;
    /// Saves the latest snapshot.
    fn save_snapshot(&self, id: &str, snapshot: &EngagementSnapshot) -> Result<(), StoreError>;
    /// An engagement by identifier.
    fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError>;
    /// The engagements whose state is one of `states`.
    fn engagements_in_states(&self, states: &[&str]) -> Result<Vec<EngagementRecord>, StoreError>;

    /// Adds a review request.
    fn insert_review(&self, review: &ReviewRecord) -> Result<(), StoreError>;
    /// A review by identifier.
    fn review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError>;
    /// The latest review of one call of one engagement that has not been consumed.
    fn open_review(
        &self,
        engagement: &str,
        call_hash: &str,
        stage: &str,
    ) -> Result<Option<ReviewRecord>, StoreError>;
    /// Records a decision on a review that has none; `false` when it already had one.
    fn decide_review(&self, id: &str, decision: &StoredDecision) -> Result<bool, StoreError>;
    /// Marks a decided review as taken by its engagement.
    fn consume_review(&self, id: &str) -> Result<(), StoreError>;
    /// Marks a decided review as taken and sets its waiting engagement's status, in one
    /// transaction: both or neither. Were they two steps, a crash between them would
    /// leave the engagement `awaiting_review` with its decision already taken, which
    /// no restart resumes.
    fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Every review of an engagement, oldest first.
    fn reviews_of(&self, engagement: &str) -> Result<Vec<ReviewRecord>, StoreError>;
    /// Undecided reviews addressed to any of `reviewers`, oldest first.
    fn pending_reviews_for(&self, reviewers: &[&str]) -> Result<Vec<ReviewRecord>, StoreError>;
    /// One page of the undecided reviews addressed to any of `reviewers` that a person
    /// decides (not an agent): in the order of `(created_at_ms, id)`, those after the
    /// position `after` when given, at most `limit` of them.
    fn pending_reviews_page(
        &self,
        reviewers: &[&str],
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<ReviewRecord>, StoreError>;

    /// Appends one line of the hash-chained audit trail.
    fn append_audit(&self, seq: u64, engagement: &str, line: &str) -> Result<(), StoreError>;
    /// The last audit entry's sequence number and hash, to continue the chain.
    fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError>;
    /// Every audit line, in order (for `agentc audit verify`).
    fn audit_lines(&self) -> Result<Vec<String>, StoreError>;
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
    pending: Vec<u8>,
}

impl StoreAuditWriter {
    /// A writer into `store`.
    pub fn new(store: std::sync::Arc<dyn Store>) -> Self {
        StoreAuditWriter {
            store,
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
                .append_audit(seq, engagement, text)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
