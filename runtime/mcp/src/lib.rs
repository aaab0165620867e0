//! MCP for agentc.
//!
//! - [`McpServers`] and [`McpTool`]: MCP-bound tools called through enforcement like any
//!   other tool (AGX-M1), with pinned definitions (AGX-M2). [`bind_mcp_tools`] binds
//!   every `mcp` binding of a set.
//! - [`gateway`] and [`gateway_http`]: the enforcing MCP gateway (AGX-M3), an MCP server
//!   offering one agent's capabilities, each call through enforcement, over stdio or
//!   streamable HTTP.
//! - [`pin`]: the digest of a tool's definition.
//! - [`output`]: a `tools/call` result as a tool's output.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod client;
pub mod gateway;
pub mod gateway_http;
pub mod import;
pub mod output;
pub mod peers;
pub mod pin;
mod process;
mod tool;

pub use client::{McpLimits, McpServers, McpSession, RawCallOutcome, server_label};
pub use tool::{McpTool, bind_mcp_tools};
