//! agentc for Rust: agents declared in OpenAgentSpec, whose tool constraints hold at
//! compile time and whose every rule is enforced at run time, failing closed.
//!
//! This crate is the one dependency a user adds (with their async runtime):
//!
//! ```toml
//! [dependencies]
//! agentc = "0.1"
//! tokio = { version = "1", features = ["rt", "macros"] }
//! ```
//!
//! - `#[agentc::agent(spec = "specs")] mod hr {}` expands, at compile time, to what
//!   `agentc build` writes for the spec set in `specs/`: one marker type per agent and
//!   capability, typed tool inputs and outputs, and the compiled policies. Calling a tool
//!   the spec does not grant an agent does not compile.
//! - `#[agentc::tool(...)]` turns a Rust function into a tool backend.
//! - The runtime's API (the enforcing [`Runtime`], [`AuditLog`], [`ToolBackend`], the
//!   model backends, …) is re-exported at the top of this crate.
//!
//! A crate that `agentc build` writes depends on this crate with default features off
//! (no macros, so no code generator in its build) and on nothing else.
//!
//! # Stability
//!
//! Generated code reaches its dependencies through [`__private`], whose contents follow
//! the generator, not semver: a generated crate pins the exact agentc version it was
//! written by.

#![forbid(unsafe_code)]

pub use agentc_runtime::*;

/// The `#[agent]` and `#[tool]` attribute macros (cargo feature `macros`, on by default).
#[cfg(feature = "macros")]
pub use agentc_macros::{agent, tool};

/// The JSON values tool backends take and return.
pub use serde_json;

/// The attribute for implementing a generated `…Tools` trait (its methods are async):
/// `#[agentc::async_trait] impl HrAgentTools for MyTools { … }`.
pub use async_trait::async_trait;

/// What generated code refers to, so that a user's crate needs no dependency but this
/// one. Not part of the API: its contents change with the generator.
#[doc(hidden)]
pub mod __private {
    pub use agentc_cel;
    pub use agentc_cel_support;
    pub use agentc_generated_support;
    pub use agentc_runtime;
    pub use async_trait;
    pub use regex;
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
