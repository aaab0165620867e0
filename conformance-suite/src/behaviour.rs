//! OpenAgentSpec behaviour conformance: clause-by-clause cases kept as data, one YAML
//! file per clause, each naming the clause it checks, with the specs, a scripted model,
//! mocked tool outputs and the expected engagement outcome. The format is plain data
//! (documented in `conformance-suite/cases/README.md`), so another implementation of
//! OpenAgentSpec can run the same files; this module runs them on agentc's runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentc_compiler::SourceInput;
use agentc_runtime::model::{Message, Script, ToolDescription};
use agentc_runtime::{
    EngagementOutcome, EngagementRequest, EngagementStatus, Identity, InMemoryCredentials, Memory,
    Model, ModelError, ModelTurn, Runtime, SpecSet, StaticReviewer, ToolBackend, ToolContext,
    ToolError, ToolRegistry, UserIdentity, run_engagement,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::report::{JunitCase, JunitOutcome, JunitSuite, junit_xml};
use crate::schema::{contains, truncate};

/// The largest case file read (cases are small; this bounds hostile input).
const MAX_CASE_FILE_BYTES: u64 = 1024 * 1024;

/// One case file: one clause, its specs, and its cases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The clause checked, e.g. `OAS-C5`, or an agentc extension's, e.g. `AGX-P1`.
    pub clause: String,
    /// What the clause requires, in a sentence.
    pub title: String,
    /// The spec documents (agents and tools), as one multi-document YAML text.
    pub specs: String,
    pub cases: Vec<Case>,
}

/// One case: one or more engagements of an agent (later ones share the first's memory).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// `allowed` or `denied`: which path of the clause the case takes.
    pub path: CasePath,
    #[serde(flatten)]
    pub engagement: EngagementCase,
    /// Further engagements of the same agent, with the memory the first one left
    /// (OAS-L1); each has its own model, tools and expectation.
    #[serde(default)]
    pub then: Vec<EngagementCase>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CasePath {
    Allowed,
    Denied,
}

/// One engagement to run and what must come of it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngagementCase {
    pub agent: String,
    #[serde(default)]
    pub user: Option<CaseUser>,
    pub input: String,
    /// The scripted model's turns: `{text}` or `{tool_calls: [{name, arguments}]}`.
    pub model: Vec<Value>,
    /// Each tool's outputs, in turn (the last repeats); a tool not listed has no backend.
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<Value>>,
    /// `approve` or `refuse` (the default: anything not configured is denied).
    #[serde(default)]
    pub reviewer: Option<String>,
    /// Static credential sets: `{set: secret}`. The secrets must never appear in the
    /// outcome, the engagement or what the model saw; every case checks that.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    pub expect: Expectation,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseUser {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// What must come of an engagement. Every key is optional; each given one is checked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `completed` or `failed`.
    pub status: String,
    /// For a failure: its kind (`guardrail`, `short_circuit`, `review_refused`, ...).
    #[serde(default)]
    pub failure: Option<String>,
    /// The agent's text, exactly.
    #[serde(default)]
    pub text: Option<String>,
    /// The exposes, exactly (OAS-X1: these keys and nothing else).
    #[serde(default)]
    pub exposes: Option<serde_json::Map<String, Value>>,
    /// How many times each tool's backend ran (a refused call never reaches it).
    #[serde(default)]
    pub tool_calls: BTreeMap<String, usize>,
    /// The identity each call of a tool was made with: `user:ID`, `static:SET`,
    /// `anonymous`, in order (OAS-C3, OAS-C4).
    #[serde(default)]
    pub identities: BTreeMap<String, Vec<String>>,
    /// JSON the engagement contains (a subset: objects by key, arrays item by item).
    #[serde(default)]
    pub engagement: Option<Value>,
    /// JSON Pointers that must not exist in the engagement (e.g. an output that is not
    /// recorded, OAS-C2).
    #[serde(default)]
    pub engagement_absent: Vec<String>,
    /// Texts the model must have been given, and texts it must not have been given.
    #[serde(default)]
    pub model_saw: Vec<String>,
    #[serde(default)]
    pub model_did_not_see: Vec<String>,
}

/// Why case files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("cannot read `{path}`: {detail}")]
    Read { path: String, detail: String },
    #[error("`{path}` is not a valid case file: {detail}")]
    Invalid { path: String, detail: String },
}

/// A case file and its name.
#[derive(Clone, Debug)]
pub struct LoadedCaseFile {
    pub path: String,
    pub file: CaseFile,
}

/// The case files under `paths` (directories are searched for `.yaml`, sorted).
pub fn load_case_files(paths: &[PathBuf]) -> Result<Vec<LoadedCaseFile>, CaseError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|error| CaseError::Read {
                path: path.display().to_string(),
                detail: error.to_string(),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|path| load_case_file(path)).collect()
}

/// Reads one case file (YAML, through the compiler's bounded YAML reader).
pub fn load_case_file(path: &Path) -> Result<LoadedCaseFile, CaseError> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|error| CaseError::Read {
            path: name.clone(),
            detail: error.to_string(),
        })?
        .len();
    if size > MAX_CASE_FILE_BYTES {
        return Err(CaseError::Invalid {
            path: name,
            detail: format!("larger than {MAX_CASE_FILE_BYTES} bytes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|error| CaseError::Read {
        path: name.clone(),
        detail: error.to_string(),
    })?;
    let file = parse_case_file(&text).map_err(|detail| CaseError::Invalid {
        path: name.clone(),
        detail,
    })?;
    Ok(LoadedCaseFile { path: name, file })
}

/// Parses a case file's text.
pub fn parse_case_file(text: &str) -> Result<CaseFile, String> {
    let (documents, diagnostics) = agentc_compiler::syntax::parse_yaml(
        agentc_compiler::span::FileId(0),
        text,
        &agentc_compiler::syntax::SyntaxLimits::default(),
    );
    if let Some(diagnostic) = diagnostics.first() {
        return Err(diagnostic.message.clone());
    }
    let [document] = documents.as_slice() else {
        return Err(format!(
            "a case file is one YAML document, found {}",
            documents.len()
        ));
    };
    let file: CaseFile =
        serde_json::from_value(document.root.to_json()).map_err(|error| error.to_string())?;
    if !file.clause.starts_with("OAS-") && !file.clause.starts_with("AGX-") {
        return Err(format!(
            "`clause: {}` names neither an OpenAgentSpec clause (OAS-…) nor an agentc \
             extension (AGX-…, docs/spec-extensions.md)",
            file.clause
        ));
    }
    Ok(file)
}

/// The result of one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    pub file: String,
    pub clause: String,
    pub case: String,
    pub path: CasePath,
    pub passed: bool,
    /// What did not hold, one line each.
    pub problems: Vec<String>,
    pub duration_ms: u64,
}

/// The results of a run of case files.
#[derive(Clone, Debug, Serialize)]
pub struct BehaviourReport {
    pub passed: usize,
    pub failed: usize,
    /// The clauses the cases cover, sorted.
    pub clauses: Vec<String>,
    pub cases: Vec<CaseReport>,
    pub duration_ms: u64,
}

impl BehaviourReport {
    pub fn failed(&self) -> bool {
        self.failed > 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for case in &self.cases {
            text.push_str(&format!(
                "  {}  {:<7} {:<8} {}\n",
                if case.passed { "pass" } else { "FAIL" },
                case.clause,
                match case.path {
                    CasePath::Allowed => "allowed",
                    CasePath::Denied => "denied",
                },
                case.case
            ));
            for problem in &case.problems {
                text.push_str(&format!("        - {problem}\n"));
            }
        }
        text.push_str(&format!(
            "{}: {} passed, {} failed ({} clauses: {})\n",
            if self.failed() { "FAILED" } else { "ok" },
            self.passed,
            self.failed,
            self.clauses.len(),
            self.clauses.join(" ")
        ));
        text
    }

    /// JUnit XML: one `<testsuite>` per case file (clause), one `<testcase>` per case.
    pub fn to_junit(&self, timestamp: &str) -> String {
        let mut suites: Vec<JunitSuite> = Vec::new();
        for case in &self.cases {
            if suites.last().is_none_or(|suite| {
                suite.properties.first().map(|(_, file)| file) != Some(&case.file)
            }) {
                suites.push(JunitSuite {
                    name: case.clause.clone(),
                    properties: vec![("file".to_string(), case.file.clone())],
                    cases: Vec::new(),
                });
            }
            if let Some(suite) = suites.last_mut() {
                suite.cases.push(JunitCase {
                    name: case.case.clone(),
                    classname: format!("agentc.runtime.{}", case.clause),
                    time_ms: case.duration_ms,
                    outcome: if case.passed {
                        JunitOutcome::Pass
                    } else {
                        JunitOutcome::Fail {
                            message: case.problems.first().cloned().unwrap_or_default(),
                            kind: case.clause.clone(),
                            body: case.problems.join("\n"),
                        }
                    },
                });
            }
        }
        junit_xml(
            "agentc conform --runtime",
            &suites,
            self.duration_ms,
            timestamp,
        )
    }
}

/// Runs every case of every file on the runtime.
pub async fn run_case_files(files: &[LoadedCaseFile]) -> BehaviourReport {
    let started = Instant::now();
    let mut cases = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    for loaded in files {
        if !clauses.contains(&loaded.file.clause) {
            clauses.push(loaded.file.clause.clone());
        }
        for case in &loaded.file.cases {
            let case_started = Instant::now();
            let problems = run_case(&loaded.path, &loaded.file, case).await;
            cases.push(CaseReport {
                file: loaded.path.clone(),
                clause: loaded.file.clause.clone(),
                case: case.name.clone(),
                path: case.path,
                passed: problems.is_empty(),
                problems,
                duration_ms: u64::try_from(case_started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
    }
    clauses.sort();
    let passed = cases.iter().filter(|case| case.passed).count();
    BehaviourReport {
        passed,
        failed: cases.len() - passed,
        clauses,
        cases,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Runs one case: its engagements in order, sharing memory; returns what did not hold.
pub async fn run_case(file_name: &str, file: &CaseFile, case: &Case) -> Vec<String> {
    let inputs = [SourceInput {
        name: format!("{file_name}#specs"),
        bytes: file.specs.as_bytes().to_vec(),
    }];
    let specs = match SpecSet::from_sources(&inputs) {
        Ok(specs) => specs,
        Err(error) => {
            let checked = agentc_compiler::check_set(&inputs, &Default::default());
            return vec![format!(
                "the case's specs do not load: {error}\n{}",
                checked.view().render_text(&checked.diagnostics)
            )];
        }
    };
    let mut memory = Memory::new();
    let mut problems = Vec::new();
    for (index, engagement) in std::iter::once(&case.engagement)
        .chain(&case.then)
        .enumerate()
    {
        let prefix = if index == 0 {
            String::new()
        } else {
            format!("engagement {}: ", index + 1)
        };
        for problem in run_engagement_case(&specs, engagement, &mut memory).await {
            problems.push(format!("{prefix}{problem}"));
        }
    }
    problems
}

/// A mocked tool of a case: answers in turn, and records each call's identity.
struct CaseTool {
    outputs: Vec<Value>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl ToolBackend for CaseTool {
    async fn invoke(&self, _input: &Value, context: &ToolContext) -> Result<Value, ToolError> {
        let mut calls = self
            .calls
            .lock()
            .map_err(|_| ToolError::Failed("the case tool's record is unavailable".into()))?;
        let identity = match &context.identity {
            Identity::User(user) => format!("user:{user}"),
            Identity::Static(set) => format!("static:{set}"),
            Identity::Anonymous => "anonymous".to_string(),
        };
        let index = calls.len();
        calls.push(identity);
        self.outputs
            .get(index)
            .or_else(|| self.outputs.last())
            .cloned()
            .ok_or_else(|| ToolError::Failed("the case gives this tool no output".into()))
    }
}

/// A scripted model that also keeps everything it was sent, so a case can say what the
/// model saw (OAS-L1) and check that no secret reached it.
struct RecordingModel {
    turns: Mutex<std::collections::VecDeque<ModelTurn>>,
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Model for RecordingModel {
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        let seen = serde_json::to_string(&(messages, tools)).unwrap_or_default();
        self.seen
            .lock()
            .map_err(|_| ModelError::Failed("record unavailable".into()))?
            .push(seen);
        self.turns
            .lock()
            .map_err(|_| ModelError::Failed("script unavailable".into()))?
            .pop_front()
            .ok_or(ModelError::ScriptExhausted)
    }
}

async fn run_engagement_case(
    specs: &SpecSet,
    case: &EngagementCase,
    memory: &mut Memory,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(agent) = specs.agent(&case.agent) else {
        return vec![format!(
            "no agent named `{}` in the case's specs",
            case.agent
        )];
    };
    let script: Script = match serde_json::from_value(serde_json::json!({"turns": case.model})) {
        Ok(script) => script,
        Err(error) => return vec![format!("the model script is invalid: {error}")],
    };
    let turns = script
        .turns
        .into_iter()
        .map(|turn| match turn {
            agentc_runtime::model::ScriptTurn::Text { text } => ModelTurn::Text(text),
            agentc_runtime::model::ScriptTurn::ToolCalls { tool_calls } => {
                ModelTurn::ToolCalls(tool_calls)
            }
        })
        .collect();
    let model = RecordingModel {
        turns: Mutex::new(turns),
        seen: Mutex::new(Vec::new()),
    };
    let mut registry = match ToolRegistry::new(&specs.tools) {
        Ok(registry) => registry,
        Err(error) => return vec![format!("the tools do not register: {error}")],
    };
    let mut backends = BTreeMap::new();
    for (name, outputs) in &case.tools {
        let backend = Arc::new(CaseTool {
            outputs: outputs.clone(),
            calls: Mutex::new(Vec::new()),
        });
        if let Err(error) = registry.bind(name, backend.clone()) {
            return vec![format!("tool `{name}`: {error}")];
        }
        backends.insert(name.clone(), backend);
    }
    // The behaviour cases observe calls through recording tools and the model, not the
    // trail: none is kept.
    let mut runtime = Runtime::new(registry, Arc::new(agentc_runtime::AuditLog::discard()))
        .with_agents(&specs.agents);
    let mut credentials = InMemoryCredentials::new();
    for (set, secret) in &case.credentials {
        credentials = credentials.with_static(set, agentc_runtime::Secret::new(secret.clone()));
    }
    runtime.credentials = Arc::new(credentials);
    runtime.reviewer = Arc::new(match case.reviewer.as_deref() {
        Some("approve") => StaticReviewer::approving(),
        None | Some("refuse") => StaticReviewer::refusing(),
        Some(other) => {
            return vec![format!("`reviewer: {other}`: write `approve` or `refuse`")];
        }
    });
    let user = case.user.as_ref().map(|user| UserIdentity {
        id: user.id.clone(),
        email: user.email.clone(),
    });
    let outcome = run_engagement(
        &runtime,
        &model,
        EngagementRequest {
            agent,
            user,
            input: &case.input,
            memory: Some(memory),
        },
    )
    .await;
    let seen = model
        .seen
        .lock()
        .map(|seen| seen.join("\n"))
        .unwrap_or_default();
    compare(&case.expect, &outcome, &backends, &seen, &mut problems);

    // Secrets never reach the model, the engagement, the exposes or the text.
    let shown = serde_json::to_string(&outcome).unwrap_or_default();
    for secret in case.credentials.values() {
        if secret.len() >= 4 && (shown.contains(secret.as_str()) || seen.contains(secret.as_str()))
        {
            problems.push("a credential appears in the outcome or in what the model saw".into());
        }
    }
    problems
}

fn compare(
    expect: &Expectation,
    outcome: &EngagementOutcome,
    backends: &BTreeMap<String, Arc<CaseTool>>,
    seen: &str,
    problems: &mut Vec<String>,
) {
    let status = serde_json::to_value(&outcome.status).unwrap_or_default();
    let state = status
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if state != expect.status {
        problems.push(format!(
            "expected status `{}`, got `{state}` ({})",
            expect.status,
            truncate(&status.to_string(), 160)
        ));
    }
    if let Some(failure) = &expect.failure {
        let kind = match &outcome.status {
            EngagementStatus::Failed { reason } => {
                serde_json::to_value(reason).ok().and_then(|reason| {
                    reason
                        .get("kind")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            }
            _ => None,
        };
        if kind.as_deref() != Some(failure.as_str()) {
            problems.push(format!(
                "expected failure `{failure}`, got {}",
                kind.map_or_else(|| "none".to_string(), |kind| format!("`{kind}`"))
            ));
        }
    }
    if let Some(text) = &expect.text
        && outcome.text.as_deref() != Some(text.as_str())
    {
        problems.push(format!("expected text {text:?}, got {:?}", outcome.text));
    }
    if let Some(exposes) = &expect.exposes
        && &outcome.exposes != exposes
    {
        problems.push(format!(
            "expected exposes {}, got {}",
            Value::Object(exposes.clone()),
            Value::Object(outcome.exposes.clone())
        ));
    }
    for (tool, expected) in &expect.tool_calls {
        let calls = backends
            .get(tool)
            .and_then(|backend| backend.calls.lock().ok().map(|calls| calls.len()))
            .unwrap_or(0);
        if calls != *expected {
            problems.push(format!(
                "expected `{tool}` to run {expected} time(s), it ran {calls}"
            ));
        }
    }
    for (tool, expected) in &expect.identities {
        let calls = backends
            .get(tool)
            .and_then(|backend| backend.calls.lock().ok().map(|calls| calls.clone()))
            .unwrap_or_default();
        if &calls != expected {
            problems.push(format!(
                "expected `{tool}` to be called as {expected:?}, it was called as {calls:?}"
            ));
        }
    }
    if let Some(expected) = &expect.engagement
        && !contains(&outcome.engagement, expected)
    {
        problems.push(format!(
            "the engagement does not contain {}; it is {}",
            truncate(&expected.to_string(), 300),
            truncate(&outcome.engagement.to_string(), 600)
        ));
    }
    for pointer in &expect.engagement_absent {
        if outcome.engagement.pointer(pointer).is_some() {
            problems.push(format!(
                "the engagement has `{pointer}`, which must be absent"
            ));
        }
    }
    for text in &expect.model_saw {
        if !seen.contains(text.as_str()) {
            problems.push(format!("the model was never given {text:?}"));
        }
    }
    for text in &expect.model_did_not_see {
        if seen.contains(text.as_str()) {
            problems.push(format!("the model was given {text:?}"));
        }
    }
}
