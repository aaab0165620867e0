//! IR → Rust tokens. Everything emitted refers to its own items by relative paths (and
//! to dependencies by absolute ones), so the same tokens serve as a crate's `lib.rs`
//! and as the body of a module that the proc macro expands.
//!
//! The emitter is split by concern:
//! - this file holds [`emit`], which puts the generated items together, and the check
//!   that the set's names do not collide;
//! - `names.rs` turns spec names into Rust names, and holds the small token helpers
//!   (doc attributes, raw string literals) the other files share;
//! - `types.rs` generates the Rust types of tool inputs, outputs and exposes;
//! - `markers.rs` writes the agent and capability marker types and their `AllowedFor`
//!   impls;
//! - `agent.rs` writes each agent: its tools trait, backends, session and spec;
//! - `policies.rs` writes each agent's `policies` module: its CEL checks, compiled to
//!   Rust where the compiler can, interpreted otherwise;
//! - `layout.rs` writes the typed layout structs the compiled checks read, their
//!   conversions from CEL values, and the numbering of their fields for `Reads`.

mod agent;
mod layout;
mod markers;
mod names;
mod policies;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::str::FromStr;

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ir::{SetIr, TargetIr};

use names::camel;
use types::TypeGen;

const PRELUDE: &str = include_str!("../prelude.rs.in");

struct Emitter<'a> {
    set: &'a SetIr,
    types: TypeGen,
    tool_types: Vec<(TokenStream, TokenStream)>,
    exposes_types: BTreeMap<String, Ident>,
}

/// The Rust items for a set (module-safe: no `crate::` paths, no inner attributes).
pub fn emit(set: &SetIr) -> Result<TokenStream, String> {
    let mut emitter = Emitter {
        set,
        types: TypeGen::default(),
        tool_types: Vec::new(),
        exposes_types: BTreeMap::new(),
    };
    emitter.check_names()?;
    let prelude = TokenStream::from_str(PRELUDE).map_err(|error| format!("prelude: {error}"))?;
    for tool in &set.tools {
        let base = camel(&tool.name);
        let input = emitter.types.rust_type(
            &tool.input,
            Some(&tool.input_schema),
            &format!("{base}Input"),
            Some(&format!(
                "The input of tool `{}`: {}",
                tool.name, tool.description
            )),
        );
        let output = emitter.types.rust_type(
            &tool.output,
            Some(&tool.output_schema),
            &format!("{base}Output"),
            Some(&format!("The output of tool `{}`.", tool.name)),
        );
        emitter.tool_types.push((input, output));
    }
    for agent in set.hosted() {
        let exposes = emitter.types.object(
            &format!("{}Exposes", camel(&agent.name)),
            &agent.exposes_type,
            None,
            Some(&format!(
                "What agent `{}` gives its caller beside its text (OAS-X1): these fields and nothing else.",
                agent.name
            )),
        );
        emitter.exposes_types.insert(agent.name.clone(), exposes);
    }
    let markers = emitter.markers();
    let mut agents = TokenStream::new();
    let mut policies = TokenStream::new();
    for agent in set.hosted() {
        agents.extend(emitter.agent(agent));
        policies.extend(emitter.policies(agent));
    }
    let types = &emitter.types.items;
    Ok(quote! {
        #prelude
        #(#types)*
        #markers
        #agents
        /// The agents' restrictions, guardrail assertions and exposes, compiled from CEL
        /// to Rust functions over typed engagements.
        // Errors are passed on with `match` rather than `?`, which costs one generic
        // instantiation per type to compile (see `from_cel_impl` in agentc-codegen).
        #[allow(clippy::question_mark)]
        pub mod policies {
            #policies
        }
    })
}

impl Emitter<'_> {
    /// Refuses sets whose names would collide in the generated code.
    fn check_names(&self) -> Result<(), String> {
        let mut capability_kinds: BTreeMap<&str, &str> = BTreeMap::new();
        for tool in &self.set.tools {
            capability_kinds.insert(&tool.name, "tool");
        }
        for agent in self.set.hosted() {
            for capability in &agent.capabilities {
                let kind = match capability.target {
                    TargetIr::Tool(_) => "tool",
                    TargetIr::Agent(_) => "agent",
                    TargetIr::Remote { .. } => "remote agent",
                };
                if let Some(existing) = capability_kinds.insert(&capability.name, kind)
                    && existing != kind
                {
                    return Err(format!(
                        "`{}` names both a {existing} and a {kind}; rename one to generate code",
                        capability.name
                    ));
                }
            }
        }
        Ok(())
    }
}
