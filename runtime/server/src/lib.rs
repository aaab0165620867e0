//! `agentc serve`: OpenAgentSpec agents over HTTP.
//!
//! - OAS-S1/S3: `GET /agents/{name}` is the agent document as YAML; `POST` of JSON to
//!   the same path starts an engagement and answers `303 See Other` with the
//!   engagement's `Location`, whose `GET` is its state as JSON — status, text and
//!   exposes, nothing else of the engagement (OAS-X1).
//! - OAS-C3: callers authenticate (bearer token or API key from the auth
//!   configuration); that identity is the engagement's user, and an engagement is
//!   visible to its user and its reviewers only (404 for anyone else).
//! - OAS-C7: a call that needs a review waits, saved, until its reviewer answers through
//!   `/reviews/{id}`; the wait survives a restart.
//! - A call to an agent on another server (`oagent://host/path/name`, OAS-S3) waits,
//!   saved with the remote engagement's location, in state `awaiting_remote`; a
//!   restart of this server resumes it by polling that location, never by engaging
//!   the remote agent again.
//! - Engagements, reviews and the audit trail live in a [`store::Store`] (SQLite by
//!   default), so a restart loses nothing.
//! - Discovery (`/llms.txt`, `/openapi.json`, a manifest per agent), per-user rate
//!   limits, body size limits, JSON errors for every 4xx, and graceful shutdown.

#![forbid(unsafe_code)]

pub mod auth;
pub mod builder;
pub mod discovery;
pub mod engine;
pub mod routes;
pub mod sqlite;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use agentc_compiler::documents::Document;
use agentc_compiler::{CheckOptions, CheckedSet, SourceInput, check_set};
use agentc_runtime::SpecSet;

pub use auth::{AuthConfig, Authenticator, RateLimitConfig, RateLimiter};
pub use builder::ServerBuilder;
pub use engine::{Engine, HostedAgent, ServerConfig, ServerError, ServerParts};
pub use sqlite::SqliteStore;
pub use store::{EngagementRecord, ReviewRecord, Store, StoreError, StoredDecision};

/// A set of specs ready to host: the runtime's view and every agent's document.
#[derive(Debug)]
pub struct LoadedSpecs {
    /// The agents and tools.
    pub specs: SpecSet,
    /// Every agent of the set, with its document, in set order.
    pub agents: Vec<HostedAgent>,
}

/// Why specs cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The checker reported errors (rendered as text); a set with errors is never run.
    #[error("the specs have {count} error(s); an agent with errors is never served\n{rendered}")]
    Check { count: usize, rendered: String },
    /// The runtime could not load the set.
    #[error(transparent)]
    Spec(#[from] agentc_runtime::SpecError),
}

/// The text of one agent's document inside its file: the whole file when it holds one
/// document (comments included), else that document's own lines.
fn agent_document_text(set: &CheckedSet, file: usize, name: &str) -> String {
    let text = set.texts.get(file).map(String::as_str).unwrap_or_default();
    let (documents, _) = agentc_compiler::syntax::parse_yaml(
        agentc_compiler::span::FileId(u32::try_from(file).unwrap_or(u32::MAX)),
        text,
        &agentc_compiler::syntax::SyntaxLimits::default(),
    );
    if documents.len() <= 1 {
        return text.to_string();
    }
    documents
        .iter()
        .find(|document| {
            document
                .root
                .to_json()
                .get("name")
                .and_then(serde_json::Value::as_str)
                == Some(name)
        })
        .and_then(|document| text.get(document.root.span.start..document.root.span.end))
        .map(|slice| format!("{}\n", slice.trim_end()))
        .unwrap_or_else(|| text.to_string())
}

/// Checks and loads spec sources for serving.
pub fn load_specs(inputs: &[SourceInput]) -> Result<LoadedSpecs, LoadError> {
    let set = check_set(inputs, &CheckOptions::default());
    if set.error_count() > 0 {
        return Err(LoadError::Check {
            count: set.error_count(),
            rendered: set.view().render_text(&set.diagnostics),
        });
    }
    let specs = SpecSet::from_checked_set(&set)?;
    let mut agents = Vec::new();
    for loaded in &set.documents {
        let Document::Agent(document) = &loaded.document else {
            continue;
        };
        let file = loaded.file.0 as usize;
        // A fetched remote agent's document is another server's; it is not hosted here.
        if set
            .names
            .get(file)
            .is_some_and(|name| agentc_compiler::check::is_remote_source_name(name))
        {
            continue;
        }
        let name = document.name.value.as_str();
        if let Some(spec) = specs.agent(name) {
            agents.push(HostedAgent {
                spec: Arc::new(spec.clone()),
                document: agent_document_text(&set, file, name),
            });
        }
    }
    Ok(LoadedSpecs { specs, agents })
}

/// Serves `engine` on `listener` until `shutdown` completes, then drains: new
/// engagements are refused while running ones reach a safe point (up to the grace
/// period), and the listener closes.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    engine.default_public_url(listener.local_addr()?);
    engine
        .recover()
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let app = routes::router(Arc::clone(&engine));
    let draining = Arc::clone(&engine);
    // The peer address is kept for the per-client limit of anonymous discovery.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: waiting for running engagements");
        draining.drain().await;
    })
    .await
}

/// Completes on Ctrl-C or, on Unix, SIGTERM: what `agentc serve` shuts down on.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
