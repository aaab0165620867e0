//! The Agent Capability Manifest (Agent OSI layer 3), in the published 1.0.0 shape
//! (Works With Agents `capability-manifest.md`): what an agent can do, the resources it
//! needs, where it is reached, and how it is doing.

use crate::span::Spanned;
use crate::{spec_enum, spec_struct};

spec_struct! {
    /// A capability manifest. `manifest_version`, `agent_id` and `capabilities` are required.
    pub struct CapabilityManifest ("a capability manifest") {
        /// Optional: `agentosi:v1/capability-manifest`.
        opt kind: Spanned<String>,
        /// `"1.0.0"` or `"1.0.0-draft"` (a string: quote it).
        req manifest_version: Spanned<String>,
        req agent_id: Spanned<String>,
        opt agent_type: Spanned<String>,
        opt fleet_id: Spanned<String>,
        req capabilities: Vec<ManifestCapability>,
        opt resources: ManifestResources,
        opt endpoint: ManifestEndpoint,
        opt status: ManifestStatus,
        opt metrics: ManifestMetrics,
    }
}

spec_struct! {
    /// One thing the agent can do: an action on a target.
    pub struct ManifestCapability ("a manifest capability") {
        /// A verb: `build`, `deploy`, `test`, `research`, ...
        req action: Spanned<String>,
        req target: Spanned<String>,
        opt description: Spanned<String>,
        opt tools_used: Vec<Spanned<String>>,
        /// In [0, 1].
        #[schemars(range(min = 0.0, max = 1.0))]
        opt success_rate: Spanned<f64>,
        #[schemars(range(min = 0.0))]
        opt avg_duration_seconds: Spanned<f64>,
        #[schemars(range(min = 1))]
        opt max_concurrent: Spanned<u64>,
    }
}

spec_struct! {
    pub struct ManifestResources ("manifest resources") {
        opt min_tokens_per_task: Spanned<u64>,
        opt max_tokens_per_task: Spanned<u64>,
        opt preferred_model: Spanned<String>,
        opt required_tools: Vec<Spanned<String>>,
        opt required_skills: Vec<Spanned<String>>,
    }
}

spec_struct! {
    pub struct ManifestEndpoint ("a manifest endpoint") {
        req protocol: Spanned<String>,
        req address: Spanned<String>,
        opt health_check: Spanned<String>,
    }
}

spec_struct! {
    /// The agent's health, as last reported.
    pub struct ManifestStatus ("a manifest status") {
        req state: AgentState,
        /// In [0, 1].
        #[schemars(range(min = 0.0, max = 1.0))]
        opt load: Spanned<f64>,
        opt current_tasks: Spanned<u64>,
        opt max_tasks: Spanned<u64>,
        opt uptime_seconds: Spanned<u64>,
        /// RFC 3339 date-time.
        opt last_heartbeat: Spanned<String>,
        /// In [0, 1].
        #[schemars(range(min = 0.0, max = 1.0))]
        opt trust_score: Spanned<f64>,
    }
}

spec_enum! {
    pub enum AgentState ("agent state") {
        Healthy = "healthy",
        Degraded = "degraded",
        Busy = "busy",
        Stuck = "stuck",
        Offline = "offline",
    }
}

spec_struct! {
    /// Rolling 7-day figures.
    pub struct ManifestMetrics ("manifest metrics") {
        opt tasks_completed: Spanned<u64>,
        opt tasks_failed: Spanned<u64>,
        #[schemars(range(min = 0.0))]
        opt avg_completion_seconds: Spanned<f64>,
        opt pitfalls_reported: Spanned<u64>,
        opt skills_published: Spanned<u64>,
        /// In [1, 5].
        #[schemars(range(min = 1.0, max = 5.0))]
        opt peer_rating: Spanned<f64>,
    }
}
