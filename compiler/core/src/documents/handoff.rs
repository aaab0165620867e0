//! Handoff documents (Agent OSI layer 4): the baseline handoff with its optional
//! regulated fields, and the request/response message form.
//!
//! Field names follow the published proposal (MCP SEP #2683 for the baseline, A2A #1817
//! for the regulated field names, the Works With Agents `handoff.md` 1.0.0-draft for the
//! message form). Where the publications leave types or enums open, ARCHITECTURE.md
//! records the reading we took. None of the published forms carries a `kind`; we accept
//! an optional one so that handoffs can share a `---`-separated file with agents.

use crate::lower::SpannedMap;
use crate::span::Spanned;
use crate::{spec_enum, spec_struct};

spec_struct! {
    /// A baseline handoff; with `data_classification`, `regulation_refs`, `audit_trail`
    /// and `sign_off_gates` it is the regulated form (all four together).
    pub struct HandoffDocument ("a handoff document") {
        /// Optional: `agentosi:v1/handoff`.
        opt kind: Spanned<String>,
        /// `"1.0"` (a string: quote it).
        req handoff_version: Spanned<String>,
        req task_id: Spanned<String>,
        req from_agent: Spanned<String>,
        req to_agent: Spanned<String>,
        req status: HandoffStatus,
        opt completed: Vec<Spanned<String>>,
        opt remaining: Vec<Spanned<String>>,
        opt context: SpannedMap<serde_json::Value>,
        opt pitfalls_hit: Vec<Spanned<String>>,
        opt decisions: Vec<Spanned<String>>,
        /// Regulated form: how sensitive the handed-off data is.
        opt data_classification: DataClassification,
        /// Regulated form: the regulations that apply (`DTAC-2.1.3`, `GDPR-Art-32`, ...).
        opt regulation_refs: Vec<Spanned<String>>,
        /// Regulated form: hash-chained record of what happened, oldest first.
        opt audit_trail: Vec<AuditEntry>,
        /// Regulated form: approvals needed before the work may go on.
        opt sign_off_gates: Vec<SignOffGate>,
        opt retention_policy: Spanned<String>,
        opt dpia_ref: Spanned<String>,
        opt clinical_safety_ref: Spanned<String>,
    }
}

spec_enum! {
    pub enum HandoffStatus ("handoff status") {
        InProgress = "in_progress",
        Blocked = "blocked",
        Completed = "completed",
        Failed = "failed",
    }
}

spec_enum! {
    pub enum DataClassification ("data classification") {
        Public = "public",
        Internal = "internal",
        Confidential = "confidential",
        Restricted = "restricted",
    }
}

spec_struct! {
    /// One link of the regulated handoff's audit chain.
    pub struct AuditEntry ("an audit entry") {
        /// RFC 3339 date-time.
        req timestamp: Spanned<String>,
        req agent_id: Spanned<String>,
        req event: AuditEvent,
        opt detail: Spanned<String>,
        /// `sha256:` followed by 64 hex digits.
        req hash: Spanned<String>,
        /// The previous entry's `hash`; null or absent on the first entry.
        opt previous_hash: Spanned<String>,
    }
}

spec_enum! {
    pub enum AuditEvent ("audit event") {
        Created = "created",
        Updated = "updated",
        HandedOff = "handed_off",
        Accepted = "accepted",
        SignedOff = "signed_off",
        Rejected = "rejected",
        Completed = "completed",
    }
}

spec_struct! {
    /// An approval gate of the regulated handoff.
    pub struct SignOffGate ("a sign-off gate") {
        req gate: Spanned<String>,
        opt description: Spanned<String>,
        req required_role: Spanned<String>,
        req status: GateStatus,
        /// Required once the gate is approved, rejected or waived.
        opt signed_by: Spanned<String>,
        /// RFC 3339 date-time; required with `signed_by`.
        opt signed_at: Spanned<String>,
        opt evidence: Vec<Spanned<String>>,
    }
}

spec_enum! {
    pub enum GateStatus ("gate status") {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        Waived = "waived",
    }
}

spec_struct! {
    /// The handoff request message: what the sender hands over.
    pub struct HandoffRequest ("a handoff request") {
        /// Optional: `agentosi:v1/handoff-request`.
        opt kind: Spanned<String>,
        /// Reused on retries, so the receiver can answer `duplicate`.
        req handoff_id: Spanned<String>,
        req task_id: Spanned<String>,
        req sender: HandoffParty,
        req context: HandoffContext,
        req quality_checklist: Vec<Spanned<String>>,
    }
}

spec_struct! {
    /// An agent taking part in a handoff.
    pub struct HandoffParty ("a handoff party") {
        req agent_id: Spanned<String>,
        opt session_id: Spanned<String>,
        /// Ed25519 signature, hex.
        opt identity_sig: Spanned<String>,
    }
}

spec_struct! {
    /// Everything the receiver needs to continue the task.
    pub struct HandoffContext ("a handoff context") {
        req task_description: Spanned<String>,
        opt workspace_path: Spanned<String>,
        opt state_snapshot: StateSnapshot,
        opt agent_memory: AgentMemory,
        opt tools_required: Vec<Spanned<String>>,
        opt constraints: HandoffConstraints,
    }
}

spec_struct! {
    pub struct StateSnapshot ("a state snapshot") {
        opt files_modified: Vec<Spanned<String>>,
        opt branch: Spanned<String>,
        opt last_commit: Spanned<String>,
    }
}

spec_struct! {
    pub struct AgentMemory ("agent memory") {
        opt key_decisions: Vec<Spanned<String>>,
        opt discovered_pitfalls: Vec<Spanned<String>>,
        opt pending_items: Vec<Spanned<String>>,
    }
}

spec_struct! {
    pub struct HandoffConstraints ("handoff constraints") {
        #[schemars(range(min = 1))]
        opt max_turns: Spanned<u64>,
        /// RFC 3339 date-time.
        opt deadline: Spanned<String>,
        opt compliance_level: Spanned<String>,
    }
}

spec_struct! {
    /// The receiver's answer to a handoff request.
    pub struct HandoffResponse ("a handoff response") {
        /// Optional: `agentosi:v1/handoff-response`.
        opt kind: Spanned<String>,
        req handoff_id: Spanned<String>,
        req status: HandoffResponseStatus,
        /// Why a request was rejected (`missing_tools`, `context_overflow`, ...); required with `rejected`.
        opt reason: Spanned<String>,
        /// Required with `accepted`.
        opt receiver: HandoffParty,
        /// RFC 3339 date-time.
        opt estimated_completion: Spanned<String>,
        opt queries: Vec<Spanned<String>>,
        opt receiver_context: ReceiverContext,
    }
}

spec_enum! {
    pub enum HandoffResponseStatus ("handoff response status") {
        Accepted = "accepted",
        Rejected = "rejected",
        Queued = "queued",
        Duplicate = "duplicate",
        AlreadyDone = "already_done",
    }
}

spec_struct! {
    pub struct ReceiverContext ("a receiver context") {
        opt available_tools: Vec<Spanned<String>>,
        opt model: Spanned<String>,
        opt max_context_tokens: Spanned<u64>,
    }
}
