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
mod console;
pub mod discovery;
pub mod engine;
pub mod mcp;
pub mod postgres;
pub mod routes;
pub mod sqlite;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentc_compiler::documents::Document;
use agentc_compiler::{CheckOptions, CheckedSet, SourceInput, check_set};
use agentc_runtime::SpecSet;

pub use auth::{AuthConfig, Authenticator, RateLimitConfig, RateLimiter};
pub use builder::ServerBuilder;
pub use engine::{Engine, HostedAgent, ServerConfig, ServerError, ServerParts};
pub use postgres::PostgresStore;
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
/// period), the listener closes, and open connections finish the answer they are
/// sending (up to the grace period again).
///
/// Each connection is HTTP/1 with the configured header read timeout (which also
/// bounds an idle kept-alive connection); the body read timeout is applied where a
/// body is read. At most `max_connections` are served at once (fewer when the limit of
/// open files is lower), and at most `max_connections_per_address` from one client
/// address: one accepted over either limit is closed at once, so a client holding
/// connections open cannot exhaust the process's descriptors nor take every slot, and
/// the timeouts free what it holds.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    engine.default_public_url(listener.local_addr()?);
    engine
        .recover()
        .await
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let app = routes::router(Arc::clone(&engine));
    let config = engine.config().clone();
    let limit = connection_limit(config.max_connections, open_files_limit());
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    let per_address = Arc::new(PerAddress::new(
        config
            .max_connections_per_address
            .unwrap_or(limit / 2)
            .clamp(1, limit),
    ));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let draining = Arc::clone(&engine);
    let mut shutdown = std::pin::pin!(async move {
        shutdown.await;
        tracing::info!("shutting down: waiting for running engagements");
        draining.drain().await;
    });
    let mut last_refusal_logged: Option<std::time::Instant> = None;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
        };
        let slot = per_address.take(auth::address_key(peer.ip()));
        let permit = Arc::clone(&permits).try_acquire_owned().ok();
        let (Some(slot), Some(permit)) = (slot, permit) else {
            // Over the limit, in all or for this address: closed at once, before
            // anything is read.
            drop(stream);
            if last_refusal_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    limit,
                    per_address = per_address.limit,
                    "connection limit reached: closing new connections"
                );
                last_refusal_logged = Some(std::time::Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        // The peer address is kept for the per-client limits.
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::Service::call(&mut app.clone(), request)
            },
        );
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection closed");
                    }
                    return;
                }
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, closed)
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing open connections");
        connections.abort_all();
    }
    Ok(())
}

/// Open connections per client address (IPv6 by /64), so that one address cannot take
/// every connection the server serves.
struct PerAddress {
    limit: usize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One connection counted against its address, until dropped.
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: String,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        PerAddress {
            limit,
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for one more connection from `key`, unless it has `limit` open already.
    fn take(self: &Arc<Self>, key: String) -> Option<AddressSlot> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: Arc::clone(self),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = match self.counts.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// How many connections the kernel may hold for `accept` (it lowers this to
/// `net.core.somaxconn`). Tokio's default, 1,024, overflowed when a thousand clients
/// connected at once: the kernel then drops their handshakes and they retry after a
/// second or more (measured with the load bench: thousands of `ListenOverflows` per
/// run, none with this).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` (`HOST:PORT`, each address it resolves to tried in turn),
/// with [`LISTEN_BACKLOG`] and `SO_REUSEADDR`, as `TcpListener::bind` sets it.
pub async fn listen(address: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last_error = None;
    for resolved in tokio::net::lookup_host(address).await? {
        let socket = if resolved.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let listening = socket.and_then(|socket| {
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(resolved)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match listening {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Descriptors kept for everything but connections: the store, the listener, outgoing
/// calls to tools and remote agents.
const RESERVED_DESCRIPTORS: u64 = 32;

/// The connection limit: the configured one, lowered to fit the process's limit of
/// open files when that is known (keeping [`RESERVED_DESCRIPTORS`] free), so that the
/// limit is reached, and extra connections closed at once, before `accept` runs out
/// of descriptors and stalls every new connection, `/healthz` included.
pub fn connection_limit(configured: usize, open_files: Option<u64>) -> usize {
    let mut limit = configured.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    if let Some(open_files) = open_files {
        let fits = usize::try_from(open_files.saturating_sub(RESERVED_DESCRIPTORS).max(1))
            .unwrap_or(usize::MAX);
        if fits < limit {
            tracing::warn!(
                configured,
                open_files,
                limit = fits,
                "the connection limit is lowered to fit the limit of open files"
            );
            limit = fits;
        }
    }
    limit
}

/// The soft limit of open files of this process, where the system tells it
/// (`/proc/self/limits` on Linux); `None` elsewhere or when unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// After a failed accept: a connection that failed before it was taken is skipped at
/// once; anything else (above all, no descriptor left) waits a moment rather than
/// spin, while open connections finish and free theirs.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_takes_a_host_and_port_and_refuses_what_is_not_one() {
        let listener = listen("localhost:0").await.expect("listens on localhost");
        let address = listener.local_addr().expect("has an address");
        assert!(address.ip().is_loopback());
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        assert!(connected.is_ok() && accepted.is_ok());
        assert!(listen("no port here").await.is_err());
        // Taken already (no SO_REUSEPORT): a clear error, not a second listener.
        assert!(listen(&address.to_string()).await.is_err());
    }

    #[test]
    fn the_connection_limit_fits_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            64                   4096                 files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(64));
        assert_eq!(
            parse_open_files_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(connection_limit(512, Some(64)), 32);
        assert_eq!(connection_limit(512, Some(20_000)), 512);
        assert_eq!(connection_limit(512, None), 512);
        assert_eq!(connection_limit(512, Some(10)), 1);
        assert_eq!(connection_limit(0, None), 1);
    }
}
