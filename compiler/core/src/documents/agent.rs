//! The OpenAgentSpec agent document (`kind: openagentspec:v1/agent`).

use crate::lower::{CelText, SpannedMap};
use crate::span::Spanned;
use crate::{spec_enum, spec_struct};

spec_struct! {
    /// An agent: its capabilities (tools or other agents), guardrails, what it exposes to
    /// its caller, and its lifespan limits. Unknown keys are errors (OpenAgentSpec v1).
    pub struct AgentDocument ("an agent document") {
        /// Always `openagentspec:v1/agent` (OAS-A1).
        req kind: Spanned<String>,
        /// Unique among the agents of a server (OAS-A2); lowercase letters, digits and `_` (OAS-N1).
        req name: Spanned<String>,
        /// Describes the agent in the third person (OAS-A3).
        req description: Spanned<String>,
        /// The agent's goal, in the second person; may be given to the model (OAS-A4).
        req intent: Spanned<String>,
        /// Who owns the agent (OAS-A5); `require_review: owner` asks them.
        req owner: Spanned<String>,
        /// AGX-D1: named constants (`name`) and predicates (`name(param, …)`) every
        /// expression of the agent can use, each CEL that may use those above it.
        opt definitions: SpannedMap<CelText>,
        /// Each key references a tool or an agent (OAS-C1, OAS-N3, OAS-N4).
        opt capabilities: SpannedMap<Capability>,
        opt guardrails: Guardrails,
        /// Key → CEL selection over the engagement, returned to the caller (OAS-X1).
        opt exposes: SpannedMap<CelText>,
        opt lifespan: Lifespan,
    }
}

spec_struct! {
    /// How the agent may use one tool or agent.
    pub struct Capability ("a capability") {
        /// Absent or true: the output is recorded in the engagement (OAS-C2).
        opt collect_results: Spanned<bool>,
        /// Absent or true: called with the engaging user's identity (OAS-C3).
        opt user_identity: Spanned<bool>,
        /// A credential set, used when `user_identity` is false or there is no user (OAS-C4).
        opt static_identity: Spanned<String>,
        /// Checked before the call, over the input about to be given (OAS-C5).
        opt input_restriction: Restriction,
        /// Checked after the call, before the result reaches the model (OAS-C6).
        opt output_restriction: Restriction,
    }
}

spec_struct! {
    /// A restriction on a capability's input or output.
    pub struct Restriction ("a restriction") {
        /// `user`, `owner`, a user identifier, or `oagent://name` (OAS-C7).
        opt require_review: Spanned<String>,
        /// A CEL expression over the engagement; false or an error denies (OAS-C8).
        opt assertion: CelText,
        /// AGX-V1: a CEL condition over the engagement; the reviewer is asked only when
        /// it holds (an error denies). Needs `require_review`.
        opt review_when: CelText,
        /// AGX-S1: a candidate version of this restriction, run beside it in
        /// observe-only mode: its would-be decision is audited, never enforced.
        opt shadow: ShadowRestriction,
    }
}

spec_struct! {
    /// AGX-S1: a restriction in observe-only mode, beside the enforced one at the same
    /// stage. Evaluated on every call the stage sees; its would-be decision (allowed,
    /// refused with the reason, or review by whom) goes to the audit trail. It never
    /// refuses a call and never asks a reviewer.
    pub struct ShadowRestriction ("a shadow restriction") {
        /// The reviewer the candidate would ask (never asked in shadow mode).
        opt require_review: Spanned<String>,
        /// The candidate assertion.
        opt assertion: CelText,
        /// The candidate review condition (needs `require_review`).
        opt review_when: CelText,
    }
}

spec_struct! {
    /// Guardrails on the user's input and the agent's responses (OAS-G1..G5).
    pub struct Guardrails ("guardrails") {
        opt input: Guardrail,
        opt output: Guardrail,
    }
}

spec_struct! {
    /// A guardrail: a tool run on the text, and a CEL assertion over its output.
    pub struct Guardrail ("a guardrail") {
        /// The tool run on every user input or model response (OAS-G1..G3).
        req tool_name: Spanned<String>,
        /// CEL over the guardrail tool's output fields (OAS-G4); false stops the engagement (OAS-G5).
        req assertion: CelText,
    }
}

spec_struct! {
    /// Limits on the agent's memory and repetition.
    pub struct Lifespan ("a lifespan") {
        /// False: no model context is carried between engagements (OAS-L1).
        opt retain_memory: Spanned<bool>,
        /// Stop when the history would end in this many back-to-back copies of one block (OAS-L2).
        #[schemars(range(min = 1))]
        opt short_circuit: Spanned<u64>,
        /// agentc extension AGX-L1: the most tool calls one model turn may ask for; a
        /// turn asking for more ends the engagement before any of them runs (default 64).
        #[schemars(range(min = 1))]
        opt max_calls_per_turn: Spanned<u64>,
        /// agentc extension AGX-L2: the most tool calls one engagement may ask for,
        /// allowed or refused; the next ends the engagement (default 1,000).
        #[schemars(range(min = 1))]
        opt max_calls: Spanned<u64>,
        /// agentc extension AGX-L3: true ends the engagement at the first call a
        /// restriction or a reviewer refuses; by default (false) the model is told the
        /// call was refused and the engagement goes on.
        opt stop_on_refusal: Spanned<bool>,
    }
}

spec_enum! {
    /// The reviewer keywords of `require_review` (OAS-C7 Reading); other values are user
    /// identifiers or `oagent://` agent references.
    pub enum ReviewerKeyword ("reviewer") {
        User = "user",
        Owner = "owner",
    }
}
