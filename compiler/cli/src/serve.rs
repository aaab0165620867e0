//! `agentc serve SPEC...`: hosts every agent of a set over HTTP (OAS-S1..S3) with the
//! `agentc-server` crate: engagements, reviews and the audit trail in an SQLite file,
//! callers from an auth configuration, tools bound as `agentc run` binds them.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agentc_compiler::SourceInput;
use agentc_runtime::{
    CredentialProvider, EnvCredentials, InMemoryCredentials, Model, RemoteLimits, ToolRegistry,
};
use agentc_server::{
    AuthConfig, Engine, PostgresStore, RateLimitConfig, ServerConfig, ServerParts, SqliteStore,
    Store,
};

/// What `agentc serve` was asked to do.
pub struct ServeRequest<'a> {
    pub inputs: Vec<SourceInput>,
    pub bind: &'a str,
    /// An SQLite file, or a PostgreSQL URL.
    pub db: &'a str,
    /// The certificate authority of the PostgreSQL server's TLS.
    pub db_ca_cert: Option<&'a Path>,
    /// The lease on engagements, in milliseconds.
    pub lease_ms: u64,
    /// The heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
    /// The file of the key the review console signs sessions with.
    pub console_key: Option<&'a Path>,
    pub auth_config: &'a Path,
    pub model: &'a str,
    pub agent_models: &'a [String],
    pub mock_tools: &'a [String],
    pub credentials: Option<&'a Path>,
    pub allow_loopback_http: bool,
    /// How long an agent called as a capability (local or remote) may take, in seconds.
    pub agent_timeout_secs: u64,
    /// How long a tool may take, in seconds.
    pub tool_timeout_secs: u64,
    /// The base URL of the links the server gives out; `None`: the bound address.
    pub public_url: Option<String>,
    /// Failed authentications allowed per client address and window (0: no limit).
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, in seconds.
    pub auth_failure_window: u32,
    /// Seconds to send a request's header (and the idle keep-alive limit).
    pub header_timeout_secs: u64,
    /// Seconds to send a request's body.
    pub body_timeout_secs: u64,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one client address may hold; `None`: half of `max_connections`.
    pub max_connections_per_address: Option<usize>,
    /// The file of the key that signs the audit trail's checkpoints.
    pub audit_key: Option<&'a Path>,
    /// How many audit entries at most between two signed checkpoints.
    pub audit_checkpoint_every: u64,
}

/// Serves until Ctrl-C or SIGTERM; exit 0 after a graceful shutdown, 2 on usage, spec
/// or IO errors.
pub fn serve(request: ServeRequest<'_>) -> ExitCode {
    match run(request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Whether `--db` names a PostgreSQL database rather than an SQLite file.
fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A model for serving: a scripted model answers by its position in each
/// conversation, so one script serves every engagement and a resumed one goes on where
/// it stopped; other models are built as `agentc run` builds them.
fn serving_model(
    flag: &str,
    tokio_runtime: &tokio::runtime::Runtime,
) -> Result<Arc<dyn Model>, String> {
    if let Some(script_path) = flag.strip_prefix("scripted:") {
        return Ok(Arc::new(crate::run::read_script(script_path)?.positional()));
    }
    let model =
        crate::run::model_from_flag(flag, &crate::run::LocalModelFlags::default(), tokio_runtime)?;
    Ok(Arc::from(model))
}

fn run(request: ServeRequest<'_>) -> Result<(), String> {
    let loaded = agentc_server::load_specs(&request.inputs).map_err(|error| error.to_string())?;
    if loaded.agents.is_empty() {
        return Err("the specs hold no agent to serve".to_string());
    }
    let auth = AuthConfig::from_file(request.auth_config).map_err(|error| error.to_string())?;
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let model = serving_model(request.model, &tokio_runtime)?;
    let mut agent_models: HashMap<String, Arc<dyn Model>> = HashMap::new();
    for entry in request.agent_models {
        let (agent, flag) = entry
            .split_once('=')
            .ok_or_else(|| format!("`--agent-model {entry}`: write AGENT=MODEL"))?;
        if loaded.specs.agent(agent).is_none() {
            return Err(format!("`--agent-model {entry}`: no agent named `{agent}`"));
        }
        agent_models.insert(agent.to_string(), serving_model(flag, &tokio_runtime)?);
    }

    // Tools with an `http` binding are called for real, remote agents over HTTPS;
    // `--mock-tool` replaces any of them.
    let config = ServerConfig {
        agent_timeout: std::time::Duration::from_secs(request.agent_timeout_secs),
        tool_timeout: std::time::Duration::from_secs(request.tool_timeout_secs),
        public_url: request.public_url.clone(),
        auth_failure_limit: (request.auth_failure_limit > 0).then_some(RateLimitConfig {
            requests: request.auth_failure_limit,
            per_seconds: request.auth_failure_window,
        }),
        header_read_timeout: std::time::Duration::from_secs(request.header_timeout_secs),
        body_read_timeout: std::time::Duration::from_secs(request.body_timeout_secs),
        max_connections: request.max_connections,
        max_connections_per_address: request.max_connections_per_address,
        audit_key: request
            .audit_key
            .map(crate::audit::read_signing_key)
            .transpose()?,
        audit_checkpoint_every: request.audit_checkpoint_every,
        console_key: request
            .console_key
            .map(crate::audit::read_console_key)
            .transpose()?,
        lease_ttl: std::time::Duration::from_millis(request.lease_ms),
        heartbeat_interval: std::time::Duration::from_millis(request.heartbeat_ms),
        ..ServerConfig::default()
    };
    let mut tools =
        ToolRegistry::with_http_tools(&loaded.specs).map_err(|error| error.to_string())?;
    tools
        .bind_remote_agents(
            &loaded.specs,
            RemoteLimits {
                allow_loopback_http: request.allow_loopback_http,
                // A remote agent's engagement may wait for its own reviewers; it is
                // bounded by the agent deadline, not by a tool's timeout.
                timeout: config.agent_timeout,
                ..RemoteLimits::default()
            },
        )
        .map_err(|error| error.to_string())?;
    let mcp = crate::mcp::McpTools::bind(&mut tools, &loaded.specs)?;
    crate::run::bind_mock_tools(&mut tools, request.mock_tools)?;
    // Credentials never enter the engagement: from a JSON file, or from
    // `AGENTC_CREDENTIAL_<SET>` environment variables.
    let credentials: Arc<dyn CredentialProvider> = match request.credentials {
        Some(path) => {
            Arc::new(InMemoryCredentials::from_json_file(path).map_err(|error| error.to_string())?)
        }
        None => Arc::new(EnvCredentials::new()),
    };
    let (store, database): (Arc<dyn Store>, String) = if is_postgres_url(request.db) {
        let store = tokio_runtime
            .block_on(PostgresStore::connect(request.db, request.db_ca_cert))
            .map_err(|error| format!("cannot open the PostgreSQL database: {error}"))?;
        // The URL may hold a password: it is never printed.
        (Arc::new(store), "PostgreSQL (shared)".to_string())
    } else {
        let store = SqliteStore::open(Path::new(request.db))
            .map_err(|error| format!("cannot open `{}`: {error}", request.db))?;
        (Arc::new(store), request.db.to_string())
    };
    let hosted: Vec<String> = loaded
        .agents
        .iter()
        .map(|agent| agent.spec.name.clone())
        .collect();
    let engine = tokio_runtime
        .block_on(Engine::new(ServerParts {
            agents: loaded.agents,
            set_agents: loaded.specs.agents.clone(),
            tools,
            credentials,
            model,
            agent_models,
            store,
            auth,
            config,
        }))
        .map_err(|error| error.to_string())?;
    tokio_runtime.block_on(async move {
        let listener = agentc_server::listen(request.bind)
            .await
            .map_err(|error| format!("cannot listen on `{}`: {error}", request.bind))?;
        let address = listener.local_addr().map_err(|error| error.to_string())?;
        eprintln!(
            "agentc serve: http://{address} — agents: {}; database {database}; instance {}",
            hosted.join(", "),
            engine.instance()
        );
        let served = agentc_server::serve(engine, listener, agentc_server::shutdown_signal())
            .await
            .map_err(|error| error.to_string());
        // MCP servers started for tools stop with the server.
        mcp.shutdown().await;
        served
    })
}
