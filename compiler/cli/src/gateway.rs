//! `agentc gateway SPEC... --agent NAME (--stdio | --bind ADDR)`: the enforcing MCP
//! gateway (AGX-M3). Any MCP client gets the agent's capabilities as tools, each call
//! through the runtime's enforcement, with the audit trail in a file.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agentc_compiler::SourceInput;
use agentc_mcp::gateway::{Gateway, GatewayLimits, GatewayReviewer};
use agentc_mcp::gateway_http::{GatewayAuthenticator, GatewayHttpConfig};
use agentc_runtime::{
    AuditLog, CredentialProvider, EnvCredentials, InMemoryCredentials, Reviewer, Runtime, SpecSet,
    StaticReviewer, ToolRegistry, UserIdentity,
};
use agentc_server::{AuthConfig, Authenticator};

/// What `agentc gateway` was asked to do.
pub struct GatewayRequest<'a> {
    pub inputs: Vec<SourceInput>,
    pub agent: &'a str,
    /// Serve one session on stdin/stdout, as this user.
    pub stdio: bool,
    pub user: Option<&'a str>,
    pub user_email: Option<&'a str>,
    /// Serve streamable HTTP on this address, callers from `auth_config`.
    pub bind: Option<&'a str>,
    pub auth_config: Option<&'a Path>,
    /// With `bind` on a loopback address: the user of requests without a credential.
    pub anonymous_user: Option<&'a str>,
    pub allowed_hosts: &'a [String],
    pub audit: &'a Path,
    pub audit_key: Option<&'a Path>,
    pub audit_checkpoint_every: u64,
    pub mock_tools: &'a [String],
    pub credentials: Option<&'a Path>,
    pub tool_timeout_secs: u64,
    pub review_timeout_secs: u64,
    pub max_sessions: usize,
}

/// Serves until the client leaves (stdio) or Ctrl-C/SIGTERM (HTTP): exit 0, or 2 on
/// usage, spec or IO errors.
pub fn gateway(request: GatewayRequest<'_>) -> ExitCode {
    match run(request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

struct ConfiguredUsers(Authenticator);

impl GatewayAuthenticator for ConfiguredUsers {
    fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Option<UserIdentity> {
        self.0.authenticate(authorization, api_key).ok()
    }
}

/// The audit trail: a new file, or the chain already in it continued (verified first,
/// so a gateway never appends to a trail that does not verify).
fn open_audit(path: &Path, key: Option<&Path>, every: u64) -> Result<AuditLog, String> {
    let existing = std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > 0);
    let log = if existing {
        let reader = std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|error| format!("cannot read audit log `{}`: {error}", path.display()))?;
        let chain = agentc_runtime::audit::verify(reader).map_err(|error| {
            format!(
                "the audit log `{}` does not verify, so it is not continued: {error}",
                path.display()
            )
        })?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|error| format!("cannot open audit log `{}`: {error}", path.display()))?;
        AuditLog::resume(Box::new(file), chain.entries, chain.head)
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .map_err(|error| format!("cannot open audit log `{}`: {error}", path.display()))?;
        // Unbuffered: each entry is written as it is sealed, so a gateway stopped
        // abruptly keeps every entry of the calls it made.
        AuditLog::new(Box::new(file))
    };
    Ok(match key {
        Some(key) => log.with_checkpoints(crate::audit::read_signing_key(key)?, every),
        None => log,
    })
}

fn run(request: GatewayRequest<'_>) -> Result<(), String> {
    let set = crate::files::valid_set(
        &request.inputs,
        "the specs",
        "an agent with errors is never served",
    )?;
    let specs = SpecSet::from_checked_set(&set).map_err(|error| error.to_string())?;
    let agent = specs.agent(request.agent).cloned().ok_or_else(|| {
        let names: Vec<&str> = specs
            .agents
            .iter()
            .map(|agent| agent.name.as_str())
            .collect();
        format!(
            "no agent named `{}` in the specs; the agents are: {}",
            request.agent,
            names.join(", ")
        )
    })?;
    let authenticator = match (request.stdio, request.bind, request.auth_config) {
        (true, None, None) => None,
        (false, Some(_), Some(path)) => {
            let config = AuthConfig::from_file(path).map_err(|error| error.to_string())?;
            Some(Arc::new(ConfiguredUsers(Authenticator::new(&config))))
        }
        (false, Some(_), None) if request.anonymous_user.is_some() => Some(Arc::new(
            ConfiguredUsers(Authenticator::new(&AuthConfig::default())),
        )),
        (false, Some(_), None) => {
            return Err(
                "`--bind` needs `--auth-config` (the gateway's callers) or, on a loopback address, `--anonymous-user`"
                    .to_string(),
            );
        }
        _ => return Err("give either `--stdio` or `--bind ADDR --auth-config FILE`".to_string()),
    };
    if !request.stdio && request.user.is_some() {
        return Err(
            "`--user` is for `--stdio`; over HTTP the user comes from `--auth-config`".to_string(),
        );
    }
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;

    let mut tools = ToolRegistry::with_http_tools(&specs).map_err(|error| error.to_string())?;
    let mcp = crate::mcp::McpTools::bind(&mut tools, &specs)?;
    crate::run::bind_mock_tools(&mut tools, request.mock_tools)?;
    let audit = open_audit(
        request.audit,
        request.audit_key,
        request.audit_checkpoint_every,
    )?;
    let review_timeout = std::time::Duration::from_secs(request.review_timeout_secs);
    // Reviews the client cannot be asked are refused: the gateway has no other reviewer.
    let fallback: Arc<dyn Reviewer> = Arc::new(StaticReviewer::refusing());
    let reviewer = GatewayReviewer::new(fallback, review_timeout);
    let mut runtime = Runtime::new(tools, Arc::new(audit)).with_agents(&specs.agents);
    runtime.reviewer = reviewer.clone();
    runtime.review_timeout = review_timeout;
    runtime.tool_timeout = std::time::Duration::from_secs(request.tool_timeout_secs);
    runtime.credentials = match request.credentials {
        Some(path) => {
            Arc::new(InMemoryCredentials::from_json_file(path).map_err(|error| error.to_string())?)
                as Arc<dyn CredentialProvider>
        }
        None => Arc::new(EnvCredentials::new()),
    };
    let runtime = Arc::new(runtime);
    let gateway = Gateway::new(
        Arc::clone(&runtime),
        Arc::new(agent),
        reviewer,
        GatewayLimits {
            max_sessions: request.max_sessions,
            ..GatewayLimits::default()
        },
    )
    .map_err(|error| error.to_string())?;

    let served = tokio_runtime.block_on(async {
        match (request.bind, authenticator) {
            (Some(bind), Some(authenticator)) => {
                let listener = agentc_server::listen(bind)
                    .await
                    .map_err(|error| format!("cannot listen on `{bind}`: {error}"))?;
                let address = listener.local_addr().map_err(|error| error.to_string())?;
                // Callers without a credential are taken only where no other machine can
                // reach the gateway.
                if request.anonymous_user.is_some() && !address.ip().is_loopback() {
                    return Err(format!(
                        "`--anonymous-user` is refused on `{address}`: only a loopback address may serve callers without a credential"
                    ));
                }
                let config = GatewayHttpConfig {
                    allowed_hosts: request.allowed_hosts.to_vec(),
                    anonymous_user: request.anonymous_user.map(UserIdentity::new),
                    ..GatewayHttpConfig::default()
                };
                let router =
                    agentc_mcp::gateway_http::router(Arc::clone(&gateway), authenticator, &config);
                eprintln!(
                    "agentc gateway: http://{address}/mcp — agent {}; audit {}",
                    gateway.agent().name,
                    request.audit.display()
                );
                agentc_mcp::gateway_http::serve(router, listener, agentc_server::shutdown_signal())
                    .await
                    .map_err(|error| error.to_string())
            }
            _ => {
                let user = request.user.map(|id| {
                    let mut user = UserIdentity::new(id);
                    user.email = request.user_email.map(str::to_string);
                    user
                });
                agentc_mcp::gateway::serve_stdio(&gateway, user, MAX_STDIO_MESSAGE_BYTES).await
            }
        }
    });
    // MCP servers started for tools stop with the gateway; the trail is flushed.
    tokio_runtime.block_on(mcp.shutdown());
    drop(gateway);
    runtime
        .audit
        .checkpoint()
        .and_then(|_| runtime.audit.flush())
        .map_err(|error| format!("cannot write the audit log: {error}"))?;
    served
}

/// The largest message a stdio client may send (one line).
const MAX_STDIO_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
