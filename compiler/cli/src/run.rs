//! `agentc run`: one engagement of one agent, with a scripted model and mocked tools, so
//! users can test an agent's behaviour in CI without a model; and `agentc audit verify`.

use agentc_compiler::{CheckOptions, SourceInput, check_set};
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
    let set = check_set(&request.inputs, &CheckOptions::default());
    if set.error_count() > 0 {
        eprint!("{}", set.view().render_text(&set.diagnostics));
        return Err(format!(
            "the specs have {} error(s); an agent with errors is never run",
            set.error_count()
        ));
    }
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
    let model = model_from_flag(request.model)?;

    // Tools with an `http` binding are called for real; `--mock-tool` replaces any of them.
    let mut tools = ToolRegistry::with_http_tools(&specs).map_err(|error| error.to_string())?;
    for mock in request.mock_tools {
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
    // Agents used as capabilities run in process; credentials come from
    // `AGENTC_CREDENTIAL_<SET>` environment variables and never enter the engagement.
    let mut runtime = Runtime::new(tools).with_agents(&specs.agents);
    runtime.credentials = Arc::new(EnvCredentials::new());
    if request.approve_reviews {
        runtime.reviewer = Arc::new(StaticReviewer::approving());
    }
    if let Some(path) = request.audit {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .map_err(|error| format!("cannot open audit log `{}`: {error}", path.display()))?;
        runtime.audit = Arc::new(AuditLog::new(Box::new(std::io::BufWriter::new(file))));
    }
    let user = request.user.map(|id| {
        let mut user = UserIdentity::new(id);
        user.email = request.user_email.map(str::to_string);
        user
    });
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
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
    runtime
        .audit
        .flush()
        .map_err(|error| format!("cannot write the audit log: {error}"))?;
    let printed = serde_json::to_string_pretty(&outcome).map_err(|error| error.to_string())?;
    writeln!(std::io::stdout(), "{printed}").map_err(|error| error.to_string())?;
    Ok(matches!(outcome.status, EngagementStatus::Completed))
}

/// The model named by `--model`: `scripted:FILE`, or `openai:MODEL` for an
/// OpenAI-compatible server at `AGENTC_OPENAI_BASE_URL` (default the OpenAI API) with the
/// key in `AGENTC_OPENAI_API_KEY`.
fn model_from_flag(flag: &str) -> Result<Box<dyn Model>, String> {
    if let Some(script_path) = flag.strip_prefix("scripted:") {
        let script = std::fs::read_to_string(script_path)
            .map_err(|error| format!("cannot read `{script_path}`: {error}"))?;
        let model = if script_path.ends_with(".json") {
            ScriptedModel::from_json(&script)
        } else {
            ScriptedModel::from_yaml(&script)
        }
        .map_err(|error| format!("`{script_path}`: {error}"))?;
        return Ok(Box::new(model));
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
        "unknown model `{flag}`: use `scripted:FILE` (a YAML or JSON script of turns) or `openai:MODEL`"
    ))
}

/// `agentc audit verify FILE`: exit 0 when the hash chain is intact, 1 when it is not.
pub fn verify_audit(path: &PathBuf) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: cannot read `{}`: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    match agentc_runtime::verify(std::io::BufReader::new(file)) {
        Ok(chain) => {
            println!("intact: {} entries, head {}", chain.entries, chain.head);
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("tampered: {error}");
            ExitCode::from(1)
        }
    }
}
