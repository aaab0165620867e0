//! The agentc runtime: runs OpenAgentSpec engagements and enforces every clause of the
//! spec on every tool call, denying whenever anything is in doubt (fail closed).
//!
//! The per-call order is fixed in [`enforce`]: short circuit (OAS-L2), input restriction
//! (OAS-C5/C8), review (OAS-C7), credentials (OAS-C3/C4), invocation, output restriction
//! (OAS-C6/C8), recording (OAS-C2), and only then the result goes back to the model.

#![forbid(unsafe_code)]
// The trusted path never panics on data: no unwrap, expect, panic or unchecked
// indexing outside tests (clippy.toml allows them in tests).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod audit;
pub mod check;
mod context;
pub mod credentials;
pub mod driver;
pub mod enforce;
pub mod engagement;
pub mod http;
mod invocation;
pub mod model;
pub mod openai;
pub mod provenance;
pub mod remote;
pub mod repetition;
pub mod replay;
pub mod review;
mod schema;
pub mod spec;
pub mod tools;

pub use audit::{
    AuditAction, AuditEntry, AuditError, AuditKeyError, AuditLog, AuditPublicKey, AuditSigningKey,
    DEFAULT_CHECKPOINT_INTERVAL, VerifiedChain, verify, verify_signed,
};
pub use check::{CelCheck, Check, CheckError, FieldLookup, FnCheck, VariableSource};
pub use context::{
    CallJournal, Checkpoints, DEFAULT_MAX_AGENT_DEPTH, EngagementOutcome, EngagementRequest,
    EngagementSnapshot, Memory, RemoteWait, Runtime, fresh_engagement_id, fresh_id,
};
pub use credentials::{
    CredentialError, CredentialProvider, EnvCredentials, Identity, InMemoryCredentials, Secret,
};
pub use driver::{
    continue_engagement, end_direct_engagement, enforce_direct_call, resume_engagement,
    review_by_agent, run_engagement, run_engagement_with_id, start_direct_engagement,
};
pub use enforce::{CallOutcome, Caller, Refusal, RefusalStage};
pub use engagement::{
    CallInOrder, Clock, Engagement, EngagementState, EngagementStatus, FailureReason, Invocation,
    RecordedInvocation, RestoreError, SystemClock, UserIdentity,
};
pub use http::{HttpTool, http_client};
pub use model::{Message, Model, ModelError, ModelTurn, ScriptedModel, ToolCall, ToolDescription};
pub use openai::OpenAiModel;
pub use remote::{RemoteAgentTool, RemoteLimits, remote_call_hash};
pub use review::{ReviewDecision, ReviewRequest, Reviewer, StaticReviewer, answer_approves};
pub use spec::{
    AgentSpec, AuthScheme, CallLimits, CapabilitySpec, GuardrailSpec, HttpBindingSpec, HttpMethod,
    McpBindingSpec, McpTransport, RestrictionSpec, ReviewerRef, SpecError, SpecSet, ToolBinding,
    ToolBindingSpec, ToolEffect, ToolSpec,
};
pub use tools::{
    BoundBackend, MockTool, NativeTool, RegisteredTool, Rerun, ToolBackend, ToolContext, ToolError,
    ToolRegistry,
};
