//! CEL for OpenAgentSpec policies: a parser, a type checker and an interpreter. The
//! compiler to Rust is a crate of its own (`agentc-cel-compile`), so that the runtime and
//! generated crates, which need only this one, carry no code generator.
//!
//! The crate is pure: it performs no file or network IO, and no input can make it panic
//! or exhaust the stack; every limit violation becomes a diagnostic or an error value.

#![forbid(unsafe_code)]
// The trusted path never panics on data: no unwrap, expect, panic or unchecked
// indexing outside tests (clippy.toml allows them in tests).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod ast;
mod checker;
pub mod conformance;
pub mod definitions;
mod diagnostic;
pub mod engagement;
mod eval;
mod lexer;
mod parser;
mod time;
mod types;
mod value;

pub use agentc_cel_support::provenance;
pub use ast::Expr;
pub use checker::{check, check_assertion};
pub use definitions::{DefinitionKey, Definitions, parse_definition_key};
pub use diagnostic::{CelDiagnostic, CelErrorKind, Span, all_error_kinds, edit_distance};
pub use eval::{
    EvalError, MAX_COMPREHENSION_ITERATIONS, MAX_EVALUATION_STEPS, MAX_LIST_LENGTH,
    MAX_VALUE_BYTES, Program, REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT, build_regex, evaluate,
};
pub use parser::{ParseLimits, parse, parse_with_limits, with_enough_stack};
pub use time::{Duration, Timestamp};
pub use types::{FieldType, ObjectType, Type, TypeEnv, type_from_json_schema};
pub use value::{Activation, MapKey, Value, ValueMap, value_from_json, value_from_json_with_type};
