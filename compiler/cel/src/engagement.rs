//! The engagement environment that OpenAgentSpec assertions are checked against (OAS-E3).
//!
//! Restriction assertions see `started_at`, `user`, `recent` and `history`. Which parts
//! of `recent` are guaranteed present depends on where the assertion runs: an input
//! restriction of capability X runs with the pending call's inputs as `recent.X.inputs`
//! but no outputs yet, while an output restriction of X sees both.

use std::collections::BTreeMap;

use crate::types::{FieldType, ObjectType, Type, TypeEnv};

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

fn field(ty: Type, always_present: bool) -> FieldType {
    FieldType { ty, always_present }
}

fn invocation_type(
    capability: &CapabilityTypes,
    inputs_present: bool,
    outputs_present: bool,
) -> Type {
    let mut fields = BTreeMap::new();
    fields.insert(
        "inputs".to_string(),
        field(capability.input.clone(), inputs_present),
    );
    fields.insert(
        "outputs".to_string(),
        field(capability.output.clone(), outputs_present),
    );
    Type::Object(ObjectType {
        name: capability.name.clone(),
        fields,
        open: false,
    })
}

/// Builds the type environment for an assertion at the given site.
pub fn engagement_env(capabilities: &[CapabilityTypes], site: &AssertionSite) -> TypeEnv {
    let mut env = TypeEnv::new();
    env.declare("started_at", Type::Timestamp);

    let mut user_fields = BTreeMap::new();
    user_fields.insert("id".to_string(), field(Type::String, true));
    user_fields.insert("email".to_string(), field(Type::String, false));
    env.declare(
        "user",
        Type::Object(ObjectType {
            name: "user".to_string(),
            fields: user_fields,
            open: false,
        }),
    );

    let mut recent_fields = BTreeMap::new();
    recent_fields.insert("_name".to_string(), field(Type::String, false));
    let mut history_fields = BTreeMap::new();
    history_fields.insert(
        "_list".to_string(),
        field(Type::List(Box::new(Type::String)), true),
    );
    history_fields.insert("_total".to_string(), field(Type::Int, true));

    for capability in capabilities {
        let (present, inputs_present, outputs_present) = match site {
            AssertionSite::InputRestriction {
                capability: restricted,
            } if *restricted == capability.name => (true, true, false),
            AssertionSite::OutputRestriction {
                capability: restricted,
            } if *restricted == capability.name => (true, true, true),
            // A recorded invocation always has its inputs, and its outputs unless results
            // are not collected (OAS-C2). Refused calls never become `recent` (Reading:
            // pending call), so they do not make outputs optional.
            _ => (false, true, capability.collects_results),
        };
        recent_fields.insert(
            capability.name.clone(),
            field(
                invocation_type(capability, inputs_present, outputs_present),
                present,
            ),
        );
        history_fields.insert(
            capability.name.clone(),
            field(
                Type::List(Box::new(invocation_type(
                    capability,
                    true,
                    capability.collects_results,
                ))),
                true,
            ),
        );
    }
    env.declare(
        "recent",
        Type::Object(ObjectType {
            name: "recent".to_string(),
            fields: recent_fields,
            open: false,
        }),
    );
    env.declare(
        "history",
        Type::Object(ObjectType {
            name: "history".to_string(),
            fields: history_fields,
            open: false,
        }),
    );
    env
}
