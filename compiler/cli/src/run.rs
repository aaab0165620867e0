//! `agentc run`: one engagement of one agent, with a scripted model and mocked tools, so
//! users can test an agent's behaviour in CI without a model.

use agentc_compiler::SourceInput;
use agentc_local_model::{LocalModelSettings, inspect_local_model};
use agentc_runtime::replay::Trace;
use agentc_runtime::{
    AuditLog, EngagementRequest, EngagementStatus, EnvCredentials, MockTool, Model, OpenAiModel,
    Runtime, ScriptedModel, Secret, SpecSet, StaticReviewer, ToolRegistry, UserIdentity,
    run_engagement,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// What `agentc run` was asked to do.
pub struct RunRequest<'a> {
    pub inputs: Vec<SourceInput>,
    pub agent: &'a str,
    pub model: &'a str,
    pub input: &'a str,
    pub user: Option<&'a str>,
    pub user_email: Option<&'a str>,
    pub mock_tools: &'a [String],
    pub approve_reviews: bool,
    pub audit: Option<&'a Path>,
    /// The file of the key that signs the audit trail's checkpoints.
    pub audit_key: Option<&'a Path>,
    /// How many entries at most between two signed checkpoints.
    pub audit_checkpoint_every: u64,
    /// Where to append the engagement as a replayable trace line (AGX-R1).
    pub trace_out: Option<&'a Path>,
    pub local: &'a LocalModelFlags,
}

/// Generation settings for `--model local:PATH`; each falls back to an
/// `AGENTC_LOCAL_*` environment variable, then to the runtime's default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LocalModelFlags {
    /// Sampling temperature of a local model; 0 (the default) is greedy
    /// [env: AGENTC_LOCAL_TEMPERATURE].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// The most tokens a local model may generate per turn (default 1024)
    /// [env: AGENTC_LOCAL_MAX_TOKENS].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// The seed of a local model's sampler (default 0) [env: AGENTC_LOCAL_SEED].
    #[arg(long)]
    pub seed: Option<u64>,
    /// A chat template (Jinja, or JSON with `chat_template`) replacing the local
    /// model's own [env: AGENTC_LOCAL_CHAT_TEMPLATE].
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
}

impl LocalModelFlags {
    /// The settings, from the flags, else the environment, else the defaults.
    pub fn settings(&self) -> Result<LocalModelSettings, String> {
        fn from_env<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("`{name}={text}` is not a valid value")),
                Err(_) => Ok(None),
            }
        }
        let mut settings = LocalModelSettings::default();
        if let Some(temperature) = self.temperature.or(from_env("AGENTC_LOCAL_TEMPERATURE")?) {
            settings.temperature = temperature;
        }
        if let Some(max_tokens) = self.max_tokens.or(from_env("AGENTC_LOCAL_MAX_TOKENS")?) {
            settings.max_tokens = max_tokens;
        }
        if let Some(seed) = self.seed.or(from_env("AGENTC_LOCAL_SEED")?) {
            settings.seed = seed;
        }
        settings.chat_template = self
            .chat_template
            .clone()
            .or(from_env::<PathBuf>("AGENTC_LOCAL_CHAT_TEMPLATE")?);
        settings.validate().map_err(|error| error.to_string())?;
        Ok(settings)
    }
}

/// Runs the engagement and prints its outcome as JSON. Exit 0 when it completed, 1 when
/// it failed (a guardrail, a short circuit, a refused review...), 2 on usage or IO errors.
pub fn run(request: RunRequest<'_>) -> ExitCode {
    match prepare_and_run(request) {
        Ok(completed) => {
            if completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn prepare_and_run(request: RunRequest<'_>) -> Result<bool, String> {
    let set = crate::files::valid_set(
        &request.inputs,
        "the specs",
        "an agent with errors is never run",
    )?;
    let specs = SpecSet::from_checked_set(&set).map_err(|error| error.to_string())?;
    let agent = specs.agent(request.agent).ok_or_else(|| {
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
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let model = model_from_flag(request.model, request.local, &tokio_runtime)?;

    // Tools with an `http` binding are called for real; `--mock-tool` replaces any of them.
    // Tools with an `mcp` binding are called on their MCP servers (AGX-M1).
    let mut tools = ToolRegistry::with_http_tools(&specs).map_err(|error| error.to_string())?;
    let mcp = crate::mcp::McpTools::bind(&mut tools, &specs)?;
    bind_mock_tools(&mut tools, request.mock_tools)?;
    // Agents used as capabilities run in process; credentials come from
    // `AGENTC_CREDENTIAL_<SET>` environment variables and never enter the engagement.
    // The audit trail goes to `--audit`; without it, the run keeps none (the operator's
    // explicit choice: `AuditLog::discard`).
    let audit = match request.audit {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(path)
                .map_err(|error| format!("cannot open audit log `{}`: {error}", path.display()))?;
            let log = AuditLog::new(Box::new(std::io::BufWriter::new(file)));
            match request.audit_key {
                Some(key) => log.with_checkpoints(
                    crate::audit::read_signing_key(key)?,
                    request.audit_checkpoint_every,
                ),
                None => log,
            }
        }
        None => AuditLog::discard(),
    };
    let mut runtime = Runtime::new(tools, Arc::new(audit)).with_agents(&specs.agents);
    runtime.credentials = Arc::new(EnvCredentials::new());
    if request.approve_reviews {
        runtime.reviewer = Arc::new(StaticReviewer::approving());
    }
    let user = request.user.map(|id| {
        let mut user = UserIdentity::new(id);
        user.email = request.user_email.map(str::to_string);
        user
    });
    let outcome = tokio_runtime.block_on(run_engagement(
        &runtime,
        model.as_ref(),
        EngagementRequest {
            agent,
            user,
            input: request.input,
            memory: None,
        },
    ));
    // MCP servers started for this run stop with it.
    tokio_runtime.block_on(mcp.shutdown());
    runtime
        .audit
        .flush()
        .map_err(|error| format!("cannot write the audit log: {error}"))?;
    if let Some(path) = request.trace_out {
        append_trace(path, &Trace::from_state(&outcome.snapshot.engagement))?;
    }
    let printed = serde_json::to_string_pretty(&outcome).map_err(|error| error.to_string())?;
    writeln!(std::io::stdout(), "{printed}").map_err(|error| error.to_string())?;
    Ok(matches!(outcome.status, EngagementStatus::Completed))
}

/// Appends one trace line (AGX-R1's format) to `path`, creating the file if needed.
fn append_trace(path: &Path, trace: &Trace) -> Result<(), String> {
    let mut line = serde_json::to_string(trace).map_err(|error| error.to_string())?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|error| format!("cannot write the trace to `{}`: {error}", path.display()))
}

/// The model named by `--model`: `scripted:FILE`, `openai:MODEL` for an
/// OpenAI-compatible server at `AGENTC_OPENAI_BASE_URL` (default the OpenAI API) with the
/// key in `AGENTC_OPENAI_API_KEY`, or `local:PATH` for a model run in process from a
/// local folder or GGUF file (the `mistralrs` feature; nothing is downloaded).
/// Binds `--mock-tool NAME=FILE.json` flags: each named tool answers every call with the
/// file's JSON instead of its binding.
pub(crate) fn bind_mock_tools(
    tools: &mut ToolRegistry,
    mock_tools: &[String],
) -> Result<(), String> {
    for mock in mock_tools {
        let (name, file) = mock
            .split_once('=')
            .ok_or_else(|| format!("`--mock-tool {mock}`: write NAME=FILE.json"))?;
        let text = std::fs::read_to_string(file)
            .map_err(|error| format!("cannot read `{file}`: {error}"))?;
        let response: serde_json::Value = serde_json::from_str(&text)
            .map_err(|error| format!("`{file}` is not JSON: {error}"))?;
        tools
            .bind(name, Arc::new(MockTool::new(response)))
            .map_err(|error| format!("`--mock-tool {name}`: {error}"))?;
    }
    Ok(())
}

/// Reads a model script, JSON or YAML by its extension.
pub(crate) fn read_script(script_path: &str) -> Result<ScriptedModel, String> {
    let script = std::fs::read_to_string(script_path)
        .map_err(|error| format!("cannot read `{script_path}`: {error}"))?;
    if script_path.ends_with(".json") {
        ScriptedModel::from_json(&script)
    } else {
        ScriptedModel::from_yaml(&script)
    }
    .map_err(|error| format!("`{script_path}`: {error}"))
}

pub(crate) fn model_from_flag(
    flag: &str,
    local: &LocalModelFlags,
    tokio_runtime: &tokio::runtime::Runtime,
) -> Result<Box<dyn Model>, String> {
    if let Some(path) = flag.strip_prefix("local:") {
        return local_model(Path::new(path), local, tokio_runtime);
    }
    if let Some(script_path) = flag.strip_prefix("scripted:") {
        return Ok(Box::new(read_script(script_path)?));
    }
    if let Some(model_name) = flag.strip_prefix("openai:") {
        let base_url = std::env::var("AGENTC_OPENAI_BASE_URL")
            .unwrap_or_else(|_| "https://api.openai.com/v1".to_string());
        let api_key = std::env::var("AGENTC_OPENAI_API_KEY").ok().map(Secret::new);
        let model =
            OpenAiModel::new(&base_url, api_key, model_name).map_err(|error| error.to_string())?;
        return Ok(Box::new(model));
    }
    Err(format!(
        "unknown model `{flag}`: use `scripted:FILE` (a YAML or JSON script of turns), `openai:MODEL` or `local:PATH`"
    ))
}

/// `local:PATH`: the path is checked first (so a missing or malformed model is reported
/// the same with or without local inference compiled in), then the model is loaded.
fn local_model(
    path: &Path,
    flags: &LocalModelFlags,
    tokio_runtime: &tokio::runtime::Runtime,
) -> Result<Box<dyn Model>, String> {
    let settings = flags.settings()?;
    inspect_local_model(path).map_err(|error| error.to_string())?;
    #[cfg(feature = "mistralrs")]
    {
        let model = tokio_runtime
            .block_on(agentc_local_model::LocalModel::load(path, settings))
            .map_err(|error| error.to_string())?;
        Ok(Box::new(model))
    }
    #[cfg(not(feature = "mistralrs"))]
    {
        let _ = (settings, tokio_runtime);
        Err(agentc_local_model::LocalModelError::FeatureMissing.to_string())
    }
}
