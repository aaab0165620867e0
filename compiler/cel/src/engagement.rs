//! The engagement environment that OpenAgentSpec assertions are checked against (OAS-E3),
//! declared once.
//!
//! Restriction assertions see `started_at`, `now` (when the check runs, AGX-T1), `user`,
//! `request` (the user's inputs, AGX-E1), `refused` (the calls refused so far, AGX-E2),
//! `recent` and `history`; each call carries when it started and ended (AGX-T1). Which parts
//! of `recent` are guaranteed present depends on where the assertion runs: an input
//! restriction of capability X runs with the pending call's inputs as `recent.X.inputs`
//! but no outputs yet, while an output restriction of X sees both.
//!
//! [`engagement_shape`] is the only place the shape is written. Its consumers each ask it
//! for what they need, so adding a field to the engagement is a change here plus the
//! runtime code that supplies its value:
//! - the CEL checker declares its root fields as variables ([`engagement_env`], with
//!   presence at one assertion site and display names such as `recent`);
//! - the CEL→Rust compiler (`agentc-cel-compile`) lays it out as Rust structs (presence
//!   over every site, struct names such as `Recent`);
//! - the runtime builds the values under the names in [`field`], and its tests check
//!   that what it builds has exactly this shape.

use crate::types::{FieldType, ObjectType, Type, TypeEnv};

/// The names of the engagement's variables and fixed fields, as assertions write them.
pub mod field {
    /// When the engagement started (a timestamp).
    pub const STARTED_AT: &str = "started_at";
    /// The engaging user.
    pub const USER: &str = "user";
    /// The user's identifier.
    pub const USER_ID: &str = "id";
    /// The user's email, when known.
    pub const USER_EMAIL: &str = "email";
    /// The latest invocation of each capability (and the pending call while it is checked).
    pub const RECENT: &str = "recent";
    /// The name of the capability invoked last.
    pub const RECENT_NAME: &str = "_name";
    /// Every invocation of each capability, in order.
    pub const HISTORY: &str = "history";
    /// The names of the capabilities invoked, in call order.
    pub const HISTORY_LIST: &str = "_list";
    /// How many calls were recorded.
    pub const HISTORY_TOTAL: &str = "_total";
    /// An invocation's input.
    pub const INPUTS: &str = "inputs";
    /// An invocation's output (absent while the call is pending, or when results are
    /// not collected).
    pub const OUTPUTS: &str = "outputs";
    /// The user's inputs of this engagement, in order (AGX-E1).
    pub const REQUEST: &str = "request";
    /// When the check runs (AGX-T1): the pending call's start during its input
    /// restriction, its end during its output restriction.
    pub const NOW: &str = "now";
    /// The calls refused (or failed) so far, in order (AGX-E2).
    pub const REFUSED: &str = "refused";
    /// A refused call's capability (or the undeclared name the model used).
    pub const REFUSED_NAME: &str = "name";
    /// The step that refused it, as the audit trail names it (`input_restriction`, …).
    pub const REFUSED_STAGE: &str = "stage";
    /// When an invocation started (AGX-T1).
    pub const CALL_STARTED_AT: &str = "started_at";
    /// When an invocation ended (AGX-T1); absent while the call is pending its input
    /// restriction.
    pub const CALL_ENDED_AT: &str = "ended_at";
    /// The engagement's variables, in the order the shape declares them.
    pub const VARIABLES: [&str; 7] = [STARTED_AT, NOW, USER, REQUEST, REFUSED, RECENT, HISTORY];
}

/// The input and output types of one capability, from its tool's schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityTypes {
    /// The capability's name as written under `recent.` and `history.`.
    pub name: String,
    /// The type of the tool's input.
    pub input: Type,
    /// The type of the tool's output.
    pub output: Type,
    /// Whether outputs are recorded (`collect_results`, OAS-C2). When they are not, a
    /// recorded invocation has no `outputs`, so selecting them needs a `has()` guard.
    pub collects_results: bool,
}

/// Where an assertion runs, which decides what the engagement is known to contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionSite {
    /// The input restriction of a capability, checked before the call.
    InputRestriction {
        /// The capability restricted.
        capability: String,
    },
    /// The output restriction of a capability, checked after the call.
    OutputRestriction {
        /// The capability restricted.
        capability: String,
    },
    /// An `exposes` selection, evaluated when the engagement ends.
    Exposes,
}

/// Whose guarantees decide which fields are always present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// What one assertion site is guaranteed (the checker's view).
    At(&'a AssertionSite),
    /// What every site is guaranteed, with one invocation type per capability shared by
    /// `recent` and `history` (a layout that serves every site, as compiled checks use).
    EverySite,
}

/// The objects of the engagement, for naming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectRole<'a> {
    /// The engagement itself, whose fields are the variables.
    Engagement,
    /// `user`.
    User,
    /// `recent`.
    Recent,
    /// `history`.
    History,
    /// One element of `refused`, `{name, stage}`.
    Refusal,
    /// One invocation of a capability, `{inputs, outputs?}`.
    Invocation {
        /// The capability's name.
        capability: &'a str,
    },
}

/// The names an assertion's diagnostics use: `recent`, `user`, the capability's name.
pub fn display_name(role: ObjectRole<'_>) -> String {
    match role {
        ObjectRole::Engagement => "engagement".to_string(),
        ObjectRole::User => field::USER.to_string(),
        ObjectRole::Recent => field::RECENT.to_string(),
        ObjectRole::History => field::HISTORY.to_string(),
        ObjectRole::Refusal => "refused call".to_string(),
        ObjectRole::Invocation { capability } => capability.to_string(),
    }
}

/// How present each part of a capability's invocation is, in `recent` and in `history`.
struct InvocationPresence {
    /// Whether `recent.<capability>` is always there.
    in_recent: bool,
    /// Whether `recent.<capability>.outputs` is always there (inputs always are).
    recent_outputs: bool,
    /// Whether `history.<capability>[i].outputs` is always there.
    history_outputs: bool,
    /// Whether `recent.<capability>.ended_at` is always there (a recorded call's is).
    recent_ended: bool,
    /// Whether `history.<capability>[i].ended_at` is always there.
    history_ended: bool,
}

fn invocation_presence(capability: &CapabilityTypes, presence: Presence<'_>) -> InvocationPresence {
    // A recorded invocation always has its inputs, and its outputs unless results are
    // not collected (OAS-C2). Refused calls never become `recent` (Reading: pending
    // call), so they do not make outputs optional. The pending call is `recent` while
    // its own restrictions are checked: without outputs before the call, with them after.
    let recorded = InvocationPresence {
        in_recent: false,
        recent_outputs: capability.collects_results,
        history_outputs: capability.collects_results,
        recent_ended: true,
        history_ended: true,
    };
    match presence {
        Presence::At(AssertionSite::InputRestriction {
            capability: restricted,
        }) if *restricted == capability.name => InvocationPresence {
            in_recent: true,
            recent_outputs: false,
            recent_ended: false,
            ..recorded
        },
        Presence::At(AssertionSite::OutputRestriction {
            capability: restricted,
        }) if *restricted == capability.name => InvocationPresence {
            in_recent: true,
            recent_outputs: true,
            ..recorded
        },
        Presence::At(_) => recorded,
        // One type serves `recent` at an input restriction (no outputs yet) and every
        // recorded call, so its outputs are never guaranteed.
        Presence::EverySite => InvocationPresence {
            in_recent: false,
            recent_outputs: false,
            history_outputs: false,
            recent_ended: false,
            history_ended: false,
        },
    }
}

fn field_of(ty: Type, always_present: bool) -> FieldType {
    FieldType::new(ty, always_present)
}

fn object(name: String, fields: impl IntoIterator<Item = (&'static str, FieldType)>) -> ObjectType {
    ObjectType {
        name,
        fields: fields
            .into_iter()
            .map(|(field_name, field)| (field_name.to_string(), field))
            .collect(),
        open: false,
    }
}

fn invocation(
    capability: &CapabilityTypes,
    outputs_present: bool,
    ended_present: bool,
    name: &impl Fn(ObjectRole<'_>) -> String,
) -> Type {
    Type::Object(object(
        name(ObjectRole::Invocation {
            capability: &capability.name,
        }),
        [
            (field::INPUTS, field_of(capability.input.clone(), true)),
            (
                field::OUTPUTS,
                field_of(capability.output.clone(), outputs_present),
            ),
            (field::CALL_STARTED_AT, field_of(Type::Timestamp, true)),
            // A call has ended once it has an output (or is recorded): the same
            // presence as `outputs` with results collected.
            (
                field::CALL_ENDED_AT,
                field_of(Type::Timestamp, ended_present),
            ),
        ],
    ))
}

/// The engagement (OAS-E3) for the given capabilities: `started_at`, `now` (AGX-T1),
/// `user {id, email?}`, `request` (AGX-E1: a list of strings), `refused` (AGX-E2: a list
/// of `{name, stage}`), `recent {_name?, <capability>?}` and `history {_list, _total,
/// <capability>: list}`, each invocation `{inputs, outputs?, started_at, ended_at?}`;
/// which fields are always present is decided by `presence`, and each object is named
/// by `name`.
pub fn engagement_shape(
    capabilities: &[CapabilityTypes],
    presence: Presence<'_>,
    name: impl Fn(ObjectRole<'_>) -> String,
) -> ObjectType {
    let user = object(
        name(ObjectRole::User),
        [
            (field::USER_ID, field_of(Type::String, true)),
            (field::USER_EMAIL, field_of(Type::String, false)),
        ],
    );
    let mut recent = object(
        name(ObjectRole::Recent),
        [(field::RECENT_NAME, field_of(Type::String, false))],
    );
    let mut history = object(
        name(ObjectRole::History),
        [
            (
                field::HISTORY_LIST,
                field_of(Type::List(Box::new(Type::String)), true),
            ),
            (field::HISTORY_TOTAL, field_of(Type::Int, true)),
        ],
    );
    for capability in capabilities {
        let present = invocation_presence(capability, presence);
        let in_recent = invocation(
            capability,
            present.recent_outputs,
            present.recent_ended,
            &name,
        );
        recent.fields.insert(
            capability.name.clone(),
            field_of(in_recent, present.in_recent),
        );
        history.fields.insert(
            capability.name.clone(),
            field_of(
                Type::List(Box::new(invocation(
                    capability,
                    present.history_outputs,
                    present.history_ended,
                    &name,
                ))),
                true,
            ),
        );
    }
    let refusal = object(
        name(ObjectRole::Refusal),
        [
            (field::REFUSED_NAME, field_of(Type::String, true)),
            (field::REFUSED_STAGE, field_of(Type::String, true)),
        ],
    );
    object(
        name(ObjectRole::Engagement),
        [
            (field::STARTED_AT, field_of(Type::Timestamp, true)),
            (field::NOW, field_of(Type::Timestamp, true)),
            (field::USER, field_of(Type::Object(user), true)),
            (
                field::REQUEST,
                field_of(Type::List(Box::new(Type::String)), true),
            ),
            (
                field::REFUSED,
                field_of(Type::List(Box::new(Type::Object(refusal))), true),
            ),
            (field::RECENT, field_of(Type::Object(recent), true)),
            (field::HISTORY, field_of(Type::Object(history), true)),
        ],
    )
}

/// Builds the type environment for an assertion at the given site: the engagement's
/// fields, each a variable.
pub fn engagement_env(capabilities: &[CapabilityTypes], site: &AssertionSite) -> TypeEnv {
    let mut env = TypeEnv::new();
    for (variable, field) in engagement_shape(capabilities, Presence::At(site), display_name).fields
    {
        env.declare(variable, field.ty);
    }
    env.declare_sources(
        capabilities
            .iter()
            .map(|capability| (capability.name.clone(), capability.output.clone()))
            .collect(),
    );
    env
}
