//! The `agentc` command line. This is the IO edge: it reads files, calls the pure core,
//! and prints. Exit codes: 0 valid, 1 invalid, 2 usage or IO error.

#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator: under load `agentc serve` frees on one
/// runtime thread what another allocated, and glibc's arena locks then serialised the
/// threads (measured with the load bench, which uses the same allocator; see
/// docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit;
mod build;
mod conform;
mod diff;
mod files;
#[cfg(feature = "mcp")]
mod gateway;
#[cfg(feature = "mcp")]
mod import;
mod mcp;
mod remote;
mod replay;
mod run;
mod serve;
mod traces;

use agentc_compiler::check_set;
use agentc_compiler::diagnostics::Code;
use agentc_compiler::documents::DocumentKind;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "agentc", version, about = "Check, build and run OpenAgentSpec agents", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Follow symbolic links that lead out of a directory searched for spec files (by
    /// default such a link is refused, with its path).
    #[arg(long, global = true)]
    follow_symlinks: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Read and validate spec documents (agents, tools, handoffs, manifests) as one set.
    Check {
        /// Files or directories; directories are searched for .yaml, .yml and .json files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// When to colour the output.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
        color: ColorChoice,
        /// Fetch the documents of remote agents (`oagent://host/path/name`) over HTTPS,
        /// so assertions over their outputs are typed by their `exposes`.
        #[arg(long)]
        fetch_remote: bool,
    },
    /// Run one engagement of an agent (a scripted model, mocked tools) and print its
    /// outcome as JSON: status, text, exposes and the engagement. Exit 0 when it
    /// completed, 1 when it failed.
    Run {
        /// Spec files or directories (the agent and the tools it uses).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The agent to engage.
        #[arg(long)]
        agent: String,
        /// The model: `scripted:FILE` (a YAML or JSON script of turns), `openai:MODEL`
        /// (an OpenAI-compatible server: `AGENTC_OPENAI_BASE_URL`, `AGENTC_OPENAI_API_KEY`),
        /// or `local:PATH` (a model folder or GGUF file run in process; needs the
        /// `mistralrs` feature; nothing is downloaded).
        #[arg(long)]
        model: String,
        /// The user's instruction.
        #[arg(long)]
        input: String,
        /// The engaging user's identifier (OAS-C3).
        #[arg(long)]
        user: Option<String>,
        /// The engaging user's email, when known.
        #[arg(long)]
        user_email: Option<String>,
        /// Answer a tool with a fixed JSON response: NAME=FILE.json (repeatable).
        #[arg(long = "mock-tool")]
        mock_tools: Vec<String>,
        /// Approve every review request (OAS-C7); by default reviews are refused.
        #[arg(long)]
        approve_reviews: bool,
        /// Write the hash-chained audit trail to this file.
        #[arg(long)]
        audit: Option<PathBuf>,
        /// Sign checkpoints into the audit trail with the secret key in this file (64
        /// hexadecimal digits, as `agentc audit keygen` writes it).
        #[arg(long, requires = "audit")]
        audit_key: Option<PathBuf>,
        /// With `--audit-key`: sign a checkpoint after at most this many entries (and
        /// always at the engagement's end).
        #[arg(long, default_value_t = agentc_runtime::DEFAULT_CHECKPOINT_INTERVAL, value_parser = clap::value_parser!(u64).range(1..))]
        audit_checkpoint_every: u64,
        /// Append the engagement to this file as a trace line that `agentc replay`
        /// runs against another version of the policies (AGX-R1).
        #[arg(long)]
        trace_out: Option<PathBuf>,
        #[command(flatten)]
        local: run::LocalModelFlags,
    },
    /// Replay recorded engagements (JSON lines: the user's inputs, the model's calls,
    /// the tools' recorded outputs) through the current policies, with no model and no
    /// tool, and print each call's decision (AGX-R1). Exit 1 when a line cannot be
    /// replayed or, with `--expect`, a decision differs from the trace's `expect`.
    Replay {
        /// Spec files or directories (the agents and the tools they use).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The trace file: one JSON object per line.
        #[arg(long)]
        traces: PathBuf,
        /// Fail (exit 1) when a decision differs from the call's `expect`.
        #[arg(long)]
        expect: bool,
        /// The report's format.
        #[arg(long, value_enum, default_value = "text")]
        format: replay::ReplayFormat,
    },
    /// Write the engagements a server kept (`agentc serve --db`) as trace lines that
    /// `agentc replay` and `agentc diff --traces` run (AGX-R1), oldest first.
    Traces {
        /// The server's SQLite database.
        #[arg(long)]
        db: PathBuf,
        /// Only the engagements of this agent.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Compare two versions of a set (AGX-R2): capabilities, identities, restrictions,
    /// reviews, exposes, limits and trust labels added, removed or changed, each marked
    /// loosened, tightened or changed; with `--traces`, the recorded decisions that
    /// flip. `--fail-on loosened` exits 1 on any loosening (a CI gate).
    Diff {
        /// The old version: a spec file or directory.
        old: PathBuf,
        /// The new version: a spec file or directory.
        new: PathBuf,
        /// Recorded traffic (as for `agentc replay`) to replay under both versions.
        #[arg(long)]
        traces: Option<PathBuf>,
        /// The report's format.
        #[arg(long, value_enum, default_value = "text")]
        format: diff::DiffFormat,
        /// Exit 1 when the comparison finds this.
        #[arg(long, value_enum)]
        fail_on: Option<diff::FailOn>,
    },
    /// Serve every agent of a set over HTTP (OpenAgentSpec OAS-S1..S3): agent documents,
    /// engagements (POST answers 303 See Other), reviews, discovery; engagements,
    /// reviews and the audit trail persist in an SQLite file.
    Serve {
        /// Spec files or directories (the agents and the tools they use).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Where engagements, reviews and the audit trail are kept: an SQLite file
        /// (created on first start; one server), or a PostgreSQL URL
        /// (`postgres://user:password@host/db`, `?sslmode=require` for TLS) that several
        /// servers share, each taking over the engagements of one that died.
        #[arg(long, default_value = "agentc.db")]
        db: String,
        /// With a PostgreSQL `--db`: the PEM file of the certificate authority to trust
        /// for its TLS (default: the web's roots).
        #[arg(long)]
        db_ca_cert: Option<PathBuf>,
        /// How long this server's lease on its engagements lasts without a heartbeat,
        /// in milliseconds; then another server sharing the database takes them over.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        lease_ms: u64,
        /// How often the lease is renewed (and engagements to take over are looked
        /// for), in milliseconds; under `--lease-ms`.
        #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
        heartbeat_ms: u64,
        /// The key the review console signs its sessions with: a file of 64 hexadecimal
        /// digits (`openssl rand -hex 32`). Give every server behind one address the
        /// same file, so a console session holds on all; default: a key drawn at start.
        #[arg(long)]
        console_key: Option<PathBuf>,
        /// The callers: a JSON file of bearer tokens and API keys, each mapped to a user
        /// id and email, and the per-user rate limit.
        #[arg(long)]
        auth_config: PathBuf,
        /// The model, as for `run`: `scripted:FILE` (answers by position in each
        /// conversation), `openai:MODEL` or `local:PATH`.
        #[arg(long)]
        model: String,
        /// A model for one agent: AGENT=MODEL (repeatable).
        #[arg(long = "agent-model")]
        agent_models: Vec<String>,
        /// Answer a tool with a fixed JSON response: NAME=FILE.json (repeatable).
        #[arg(long = "mock-tool")]
        mock_tools: Vec<String>,
        /// Credentials for tools and remote agents: a JSON file
        /// (`{"static": {"set": "secret"}}`); default `AGENTC_CREDENTIAL_<SET>` variables.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Allow plain HTTP to remote agents on loopback addresses (tests only).
        #[arg(long)]
        allow_loopback_http: bool,
        /// How long an agent called as a capability, here or on another server, may
        /// take in seconds (its engagement may wait for its own reviewers); tools keep
        /// their own shorter timeout.
        #[arg(long, default_value_t = 600, value_parser = seconds_limit())]
        agent_timeout: u64,
        /// How long a tool may take in seconds.
        #[arg(long, default_value_t = 30, value_parser = seconds_limit())]
        tool_timeout: u64,
        /// The base URL callers reach the server at (`https://agents.example.com`),
        /// written into `/openapi.json`, `/llms.txt`, `/agents` and the manifests;
        /// default `http://` and the bound address. The request's `Host` is never used.
        #[arg(long)]
        public_url: Option<String>,
        /// How many failed authentications one client address may make per
        /// `--auth-failure-window` before its API requests are answered 429 without
        /// their credential being checked (0: no limit).
        #[arg(long, default_value_t = 10)]
        auth_failure_limit: u32,
        /// The window of `--auth-failure-limit`, in seconds.
        #[arg(long, default_value_t = 60)]
        auth_failure_window: u32,
        /// Seconds a client has to send a request's complete header, from when its
        /// connection opens or its previous answer was sent (also the idle keep-alive
        /// limit); then the connection is closed.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        header_timeout: u64,
        /// Seconds reading a request's body may take; then the answer is 408.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        body_timeout: u64,
        /// How many connections are served at once; more are closed as they arrive.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
        max_connections: u64,
        /// How many connections one client address (IPv6: its /64) may hold at once;
        /// default half of `--max-connections`. Behind a proxy, raise it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_connections_per_address: Option<u64>,
        /// Sign checkpoints into the audit trail with the secret key in this file (64
        /// hexadecimal digits, as `agentc audit keygen` writes it).
        #[arg(long)]
        audit_key: Option<PathBuf>,
        /// With `--audit-key`: sign a checkpoint after at most this many entries (and
        /// at every engagement's end and at shutdown).
        #[arg(long, default_value_t = agentc_runtime::DEFAULT_CHECKPOINT_INTERVAL, value_parser = clap::value_parser!(u64).range(1..))]
        audit_checkpoint_every: u64,
    },
    /// Write tool documents from what an external source offers.
    #[cfg(feature = "mcp")]
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Serve one agent's capabilities to any MCP client as an enforcing MCP server
    /// (AGX-M3): each `tools/call` runs through every check, one session is one
    /// engagement, refusals are tool errors, and the audit trail records every call.
    #[cfg(feature = "mcp")]
    Gateway {
        /// Spec files or directories (the agent and the tools it uses).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The agent whose capabilities are offered.
        #[arg(long)]
        agent: String,
        /// Serve one session on stdin and stdout (for a client that starts the gateway).
        #[arg(long, conflicts_with_all = ["bind", "auth_config"], required_unless_present = "bind")]
        stdio: bool,
        /// With `--stdio`: the user the session's calls are made for (`user.id`).
        #[arg(long, requires = "stdio")]
        user: Option<String>,
        /// With `--user`: the user's email (`user.email`).
        #[arg(long, requires = "user")]
        user_email: Option<String>,
        /// Serve streamable HTTP at `/mcp` on this address.
        #[arg(long)]
        bind: Option<String>,
        /// With `--bind`: the callers, as for `agentc serve` (bearer tokens and API keys,
        /// each mapped to a user).
        #[arg(long)]
        auth_config: Option<PathBuf>,
        /// With `--bind` on a loopback address: the user of requests that carry no
        /// credential (a local client such as a desktop app); a wrong credential is still
        /// refused.
        #[arg(long, requires = "bind")]
        anonymous_user: Option<String>,
        /// With `--bind`: a host name accepted in requests' `Host` header besides the
        /// loopback names (repeatable); other hosts are refused (DNS rebinding).
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// The audit trail (JSON lines): created, or continued after it verifies.
        #[arg(long)]
        audit: PathBuf,
        /// Sign checkpoints into the audit trail with the secret key in this file.
        #[arg(long)]
        audit_key: Option<PathBuf>,
        /// With `--audit-key`: sign a checkpoint after at most this many entries.
        #[arg(long, default_value_t = agentc_runtime::DEFAULT_CHECKPOINT_INTERVAL, value_parser = clap::value_parser!(u64).range(1..))]
        audit_checkpoint_every: u64,
        /// Answer a tool with a fixed JSON response: NAME=FILE.json (repeatable).
        #[arg(long = "mock-tool")]
        mock_tools: Vec<String>,
        /// Credentials for tools: a JSON file (`{"static": {"set": "secret"}}`); default
        /// `AGENTC_CREDENTIAL_<SET>` variables.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// How long a tool may take in seconds.
        #[arg(long, default_value_t = 30, value_parser = seconds_limit())]
        tool_timeout: u64,
        /// How long a review asked of the client may take in seconds.
        #[arg(long, default_value_t = 300, value_parser = seconds_limit())]
        review_timeout: u64,
        /// Sessions (engagements) open at once.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_sessions: u64,
    },
    /// Work with audit trails.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Generate a typed Rust crate from a set of specs, in which an agent's tool
    /// constraints hold at compile time.
    Build {
        /// Spec files or directories (as for `check`); omit them with `--check` to reuse
        /// the list recorded in the existing crate's header.
        paths: Vec<PathBuf>,
        /// The directory of the generated crate.
        #[arg(short = 'o', long = "output", required = true)]
        output: PathBuf,
        /// Verify that the output directory is byte-identical to what would be written,
        /// writing nothing; exit 1 when it is stale.
        #[arg(long)]
        check: bool,
        /// The package name (default: the output directory's name).
        #[arg(long)]
        crate_name: Option<String>,
        /// Depend on the `agentc` crate in this directory (e.g. `agentc/` of a checkout)
        /// by path, instead of on the released `agentc` of this binary's version.
        #[arg(long, value_name = "DIR")]
        agentc_path: Option<PathBuf>,
    },
    /// Run the seven agent-readiness tests (discovery, auth, CRUD, error, rate limit,
    /// pitfall, skill) on the tools of a set of specs, or with `--runtime` the
    /// OpenAgentSpec behaviour cases. Exit 0 when nothing failed, 1 when a test failed.
    Conform {
        /// Spec files or directories; with `--runtime`, case files or directories
        /// (default: the bundled `conformance-suite/cases`).
        paths: Vec<PathBuf>,
        /// `mock`: a mock per tool from its tool document; `live`: the real service.
        #[arg(long, value_enum, default_value_t = conform::TargetChoice::Mock)]
        target: conform::TargetChoice,
        /// With `--target live`: replaces the origin of each binding URL (e.g. a
        /// loopback server); credentials come from each tool's `credential_env`.
        #[arg(long)]
        base_url: Option<String>,
        /// A machine-readable report: to `--report-file`, or to stdout (the summary
        /// then goes to stderr).
        #[arg(long, value_enum)]
        report: Option<conform::ReportFormat>,
        /// Where to write the `--report`.
        #[arg(long, requires = "report")]
        report_file: Option<PathBuf>,
        /// Run the OpenAgentSpec behaviour cases on the runtime instead.
        #[arg(long, conflicts_with_all = ["base_url"])]
        runtime: bool,
        /// The longest `Retry-After` the rate-limit test waits, in seconds.
        #[arg(long, default_value_t = 60)]
        max_retry_after: u64,
        /// With `--target live`: let the run send requests that may change the
        /// service (a tool that is not GET or `read_only`, any MCP call, the CRUD test).
        /// Without it those tests are skipped, with the reason; what the CRUD test
        /// creates is deleted, and what it could not delete is reported.
        #[arg(long)]
        allow_writes: bool,
        /// With `--target live`: send nothing; print every request the live run would
        /// send (each tool's tests run on its mock, under the live run's write policy).
        #[arg(long, conflicts_with_all = ["report", "runtime"])]
        dry_run: bool,
    },
    /// Show the long explanation of a diagnostic code, e.g. `agentc explain E0101`.
    Explain {
        /// The code; omit it with `--list` to list every code.
        code: Option<String>,
        /// List every code with its one-line summary.
        #[arg(long)]
        list: bool,
    },
    /// Print the JSON Schema of a document kind, for editors with a YAML language server.
    Schema {
        /// agent, tool, handoff, handoff-request, handoff-response or capability-manifest.
        kind: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that an audit trail's hash chain is intact (no edit, deletion or
    /// reordering) and, with `--key`, that every signed checkpoint verifies and covers
    /// every entry. Exit 0 when intact (and, with `--key`, every entry is signed), 1
    /// when altered or not proven.
    Verify {
        file: PathBuf,
        /// The public key of the checkpoints: 64 hexadecimal digits, or a file holding
        /// them (the `.pub` file of `keygen`).
        #[arg(long)]
        key: Option<String>,
        /// The hash the trail must end with (kept elsewhere, e.g. from the server's
        /// log at a checkpoint): detects entries cut off the end.
        #[arg(long)]
        head: Option<String>,
    },
    /// Create a checkpoint signing key pair: the secret key to FILE (never
    /// overwritten, owner-readable only), the public key to FILE.pub and stdout.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the audit trail of an `agentc serve` database as the JSON lines `verify`
    /// reads (the database is only read).
    Export {
        /// The server's database: an SQLite file, or a PostgreSQL URL.
        #[arg(long)]
        db: String,
        /// With PostgreSQL, whose instances each write their own chain: the chain to
        /// write (an instance id); required when there are several.
        #[arg(long)]
        chain: Option<String>,
        /// With PostgreSQL: the PEM file of the certificate authority of its TLS.
        #[arg(long)]
        db_ca_cert: Option<PathBuf>,
        /// The file to write (default: stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[cfg(feature = "mcp")]
#[derive(Subcommand)]
enum ImportSource {
    /// One tool document per tool an MCP server lists, each pinned to the tool's
    /// definition (AGX-M2); `--check` reports drift instead and exits 1 on any.
    Mcp {
        /// A stdio server: its command line (`"node server.js /srv/data"`).
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        stdio: Option<String>,
        /// A streamable-HTTP server: its endpoint URL.
        #[arg(long)]
        url: Option<String>,
        /// A variable for the stdio server, `NAME=VALUE` (repeatable); written into
        /// the documents' bindings.
        #[arg(long = "env", requires = "stdio")]
        env: Vec<String>,
        /// The environment variable that holds a bearer token for the HTTP server.
        #[arg(long, requires = "url")]
        bearer_env: Option<String>,
        /// The directory the documents are written to (or, with `--check`, read from).
        #[arg(short, long)]
        out: PathBuf,
        /// Compare the directory's pins with the server instead of writing.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    install_log_subscriber();
    let cli = Cli::parse();
    files::follow_every_symlink(cli.follow_symlinks);
    match cli.command {
        Command::Check {
            paths,
            format,
            deny_warnings,
            color,
            fetch_remote,
        } => check(&paths, format, deny_warnings, color, fetch_remote),
        Command::Diff {
            old,
            new,
            traces,
            format,
            fail_on,
        } => {
            let load = |path: &PathBuf| files::collect_inputs(std::slice::from_ref(path));
            let (old, new) = match (load(&old), load(&new)) {
                (Ok(old), Ok(new)) => (old, new),
                (Err(error), _) | (_, Err(error)) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            diff::diff(diff::DiffRequest {
                old,
                new,
                traces: traces.as_deref(),
                format,
                fail_on,
            })
        }
        Command::Replay {
            paths,
            traces,
            expect,
            format,
        } => {
            let inputs = match read_inputs(&paths) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            replay::replay(replay::ReplayRequest {
                inputs,
                traces: &traces,
                expect,
                format,
            })
        }
        Command::Traces { db, agent } => traces::export(&db, agent.as_deref()),
        #[cfg(feature = "mcp")]
        Command::Import {
            source:
                ImportSource::Mcp {
                    stdio,
                    url,
                    env,
                    bearer_env,
                    out,
                    check,
                },
        } => import::import_mcp(import::ImportRequest {
            stdio: stdio.as_deref(),
            url: url.as_deref(),
            env: &env,
            bearer_env: bearer_env.as_deref(),
            out: &out,
            check,
        }),
        #[cfg(feature = "mcp")]
        Command::Gateway {
            paths,
            agent,
            stdio,
            user,
            user_email,
            bind,
            auth_config,
            anonymous_user,
            allowed_hosts,
            audit,
            audit_key,
            audit_checkpoint_every,
            mock_tools,
            credentials,
            tool_timeout,
            review_timeout,
            max_sessions,
        } => {
            let inputs = match read_inputs(&paths) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            gateway::gateway(gateway::GatewayRequest {
                inputs,
                agent: &agent,
                stdio,
                user: user.as_deref(),
                user_email: user_email.as_deref(),
                bind: bind.as_deref(),
                auth_config: auth_config.as_deref(),
                anonymous_user: anonymous_user.as_deref(),
                allowed_hosts: &allowed_hosts,
                audit: &audit,
                audit_key: audit_key.as_deref(),
                audit_checkpoint_every,
                mock_tools: &mock_tools,
                credentials: credentials.as_deref(),
                tool_timeout_secs: tool_timeout,
                review_timeout_secs: review_timeout,
                max_sessions: usize::try_from(max_sessions).unwrap_or(usize::MAX),
            })
        }
        Command::Run {
            paths,
            agent,
            model,
            input,
            user,
            user_email,
            mock_tools,
            approve_reviews,
            audit,
            audit_key,
            audit_checkpoint_every,
            trace_out,
            local,
        } => {
            let inputs = match read_inputs(&paths) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            run::run(run::RunRequest {
                inputs,
                agent: &agent,
                model: &model,
                input: &input,
                user: user.as_deref(),
                user_email: user_email.as_deref(),
                mock_tools: &mock_tools,
                approve_reviews,
                audit: audit.as_deref(),
                audit_key: audit_key.as_deref(),
                audit_checkpoint_every,
                trace_out: trace_out.as_deref(),
                local: &local,
            })
        }
        Command::Serve {
            paths,
            bind,
            db,
            db_ca_cert,
            lease_ms,
            heartbeat_ms,
            console_key,
            auth_config,
            model,
            agent_models,
            mock_tools,
            credentials,
            allow_loopback_http,
            agent_timeout,
            tool_timeout,
            public_url,
            auth_failure_limit,
            auth_failure_window,
            header_timeout,
            body_timeout,
            max_connections,
            max_connections_per_address,
            audit_key,
            audit_checkpoint_every,
        } => {
            let inputs = match read_inputs(&paths) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            serve::serve(serve::ServeRequest {
                inputs,
                bind: &bind,
                db: &db,
                db_ca_cert: db_ca_cert.as_deref(),
                lease_ms,
                heartbeat_ms,
                console_key: console_key.as_deref(),
                auth_config: &auth_config,
                model: &model,
                agent_models: &agent_models,
                mock_tools: &mock_tools,
                credentials: credentials.as_deref(),
                allow_loopback_http,
                agent_timeout_secs: agent_timeout,
                tool_timeout_secs: tool_timeout,
                public_url,
                auth_failure_limit,
                auth_failure_window,
                header_timeout_secs: header_timeout,
                body_timeout_secs: body_timeout,
                max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
                max_connections_per_address: max_connections_per_address
                    .map(|count| usize::try_from(count).unwrap_or(usize::MAX)),
                audit_key: audit_key.as_deref(),
                audit_checkpoint_every,
            })
        }
        Command::Audit { command } => match command {
            AuditCommand::Verify { file, key, head } => {
                audit::verify(&file, key.as_deref(), head.as_deref())
            }
            AuditCommand::Keygen { out } => audit::keygen(&out),
            AuditCommand::Export {
                db,
                chain,
                db_ca_cert,
                output,
            } => audit::export(&audit::ExportRequest {
                db: &db,
                chain: chain.as_deref(),
                db_ca_cert: db_ca_cert.as_deref(),
                output: output.as_deref(),
            }),
        },
        Command::Build {
            paths,
            output,
            check,
            crate_name,
            agentc_path,
        } => build::build(&build::BuildRequest {
            paths: &paths,
            output: &output,
            check,
            crate_name: crate_name.as_deref(),
            agentc_path: agentc_path.as_deref(),
        }),
        Command::Conform {
            paths,
            target,
            base_url,
            report,
            report_file,
            runtime,
            max_retry_after,
            allow_writes,
            dry_run,
        } => conform::conform(&conform::ConformRequest {
            paths: &paths,
            target,
            base_url: base_url.as_deref(),
            report,
            report_file: report_file.as_deref(),
            runtime,
            max_retry_after,
            allow_writes,
            dry_run,
        }),
        Command::Explain { code, list } => explain(code.as_deref(), list),
        Command::Schema { kind } => schema(&kind),
    }
}

/// The longest timeout a flag takes, in seconds: a week. A wait longer than that is a
/// mistake, and a larger number could overflow the clock's arithmetic.
const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 60 * 60;

/// Parses a timeout in whole seconds, from 1 to [`MAX_TIMEOUT_SECONDS`].
/// The spec files under `paths`; on an IO error, says so and gives the usage exit code.
fn read_inputs(paths: &[PathBuf]) -> Result<Vec<agentc_compiler::SourceInput>, ExitCode> {
    files::collect_inputs(paths).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })
}

fn seconds_limit() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECONDS)
}

/// Logs go to stderr, filtered by `RUST_LOG` (nothing unless it is set, so stdout and
/// stderr stay the commands' own). The runtime logs identifiers, stages and refusal
/// reasons, which never carry refused data or tool payloads, and never secrets.
fn install_log_subscriber() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn check(
    paths: &[PathBuf],
    format: Format,
    deny_warnings: bool,
    color: ColorChoice,
    fetch_remote: bool,
) -> ExitCode {
    let mut inputs = match read_inputs(paths) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    if inputs.is_empty() {
        eprintln!("error: no .yaml, .yml or .json files found in the given paths");
        return ExitCode::from(2);
    }
    let options = mcp::check_options();
    if fetch_remote && let Err(error) = remote::fetch_remote_documents(&mut inputs, &options) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let set = check_set(&inputs, &options);
    let view = set.view();
    let errors = set.error_count();
    let warnings = set.warning_count();
    let failed = errors > 0 || (deny_warnings && warnings > 0);
    let mut stdout = std::io::stdout().lock();
    let written = match format {
        Format::Json => {
            let report = serde_json::json!({
                "valid": !failed,
                "files": set.names,
                "documents": set.documents.len(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": view.render_json(&set.diagnostics),
            });
            writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            )
        }
        Format::Human => {
            let use_colour = match color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            let text = if use_colour {
                view.render_coloured(&set.diagnostics)
            } else {
                view.render_text(&set.diagnostics)
            };
            eprint!("{text}");
            writeln!(
                stdout,
                "{}: {} file(s), {} document(s), {} error(s), {} warning(s){}",
                if failed { "invalid" } else { "valid" },
                set.names.len(),
                set.documents.len(),
                errors,
                warnings,
                if deny_warnings && warnings > 0 && errors == 0 {
                    " (warnings denied)"
                } else {
                    ""
                }
            )
        }
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(code: Option<&str>, list: bool) -> ExitCode {
    if list || code.is_none() {
        for code in Code::all() {
            let page = code.explain();
            let title = page
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches('#')
                .trim();
            if writeln!(std::io::stdout(), "{title}").is_err() {
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    let text = code.unwrap_or_default();
    match Code::parse(text) {
        Some(code) => print_page(code.explain().trim_end()),
        None => {
            eprintln!(
                "error: `{text}` is not a diagnostic code of agentc; run `agentc explain --list` to see them all"
            );
            ExitCode::from(2)
        }
    }
}

fn schema(kind: &str) -> ExitCode {
    match DocumentKind::from_short_name(kind) {
        Some(kind) => {
            print_page(&serde_json::to_string_pretty(&kind.json_schema()).unwrap_or_default())
        }
        None => {
            let names: Vec<&str> = DocumentKind::ALL
                .iter()
                .map(|kind| kind.short_name())
                .collect();
            eprintln!(
                "error: unknown document kind `{kind}`; the kinds are: {}",
                names.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

/// Prints a page; a closed pipe (`agentc explain E0101 | head`) is not a crash.
fn print_page(text: &str) -> ExitCode {
    match writeln!(std::io::stdout(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}
