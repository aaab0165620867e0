//! The conformance suite of agentc: the seven agent-readiness tests of the Agent OSI
//! model (layer 6) — discovery, auth, CRUD, error, rate limit, pitfall, skill — as the
//! shared spec defines them ("The 7-test conformance suite"), driven by tool documents,
//! and the OpenAgentSpec behaviour cases (one data file per clause) run on the runtime.
//!
//! The suite is built around *a target with a tool document*, not around a mock: a
//! [`ToolUnderTest`] says what a tool claims (its binding, schemas, auth scheme and its
//! `conformance:` section), and a [`Target`] says where to test it — a [`mock`] started
//! from the document itself, or a live service at the declared URL or a base URL. So any
//! HTTP service that can be described by a tool document (the runtime's own agent
//! server included) is tested the same way. A tool bound to an MCP server gets the MCP
//! reading of the seven tests (AGX-M5): `tools/list` and the pin, auth at `initialize`,
//! errors without a crash, the rate limit, recorded `tools/call` pitfalls and examples,
//! against an [`mcp_mock`] or the live server:
//!
//! ```no_run
//! # async fn example() -> Result<(), agentc_conformance::LoadError> {
//! use agentc_conformance::{Target, load_tools, run_suite, SuiteOptions};
//! let tools = load_tools(&[agentc_compiler::SourceInput {
//!     name: "tool.yaml".into(),
//!     bytes: std::fs::read("tool.yaml").unwrap_or_default(),
//! }])?;
//! let report = run_suite(&tools, &Target::live(Some("http://127.0.0.1:8080".into())), &SuiteOptions::default()).await;
//! assert!(!report.failed());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod behaviour;
mod checks;
mod http;
mod mcp_checks;
pub mod mcp_mock;
pub mod mock;
mod redact;
pub mod report;
mod runner;
mod schema;
mod target;
mod tool;

pub use report::{Evidence, Outcome, SuiteReport, Summary, TestKind, TestReport, ToolReport};
pub use runner::{ProgressEvent, SuiteOptions, run_suite, run_suite_with_progress};
pub use target::{CredentialSource, Target, TargetKind};
pub use tool::{LoadError, ToolUnderTest, load_tools, tools_from_checked_set};
