//! Local inference end to end, offline: a tiny Llama-style model with random weights
//! (written here, nothing downloaded) is loaded through the real mistral.rs loader and
//! runs engagements of the bundled HR example. Random weights know nothing about the
//! tools, so every tool call they produce is valid only because generation is
//! constrained: the test checks that each one parses, names a declared tool and matches
//! the tool's input schema, and that the runtime's input restriction (OAS-C5) then
//! allowed or denied it exactly as computed independently here.

#![cfg(feature = "mistralrs")]
// Test helpers outside `#[test]` functions may fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../xtask/src/tiny_model.rs"]
#[allow(dead_code, unused_imports)]
mod tiny_model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentc_compiler::SourceInput;
use agentc_local_model::{ConstraintLimits, LocalModelFormat, LocalModelSettings};
use agentc_local_model::{LocalModel, LocalModelError};
use agentc_runtime::{
    EngagementOutcome, EngagementRequest, Message, MockTool, Model, ModelError, ModelTurn, Runtime,
    SpecSet, ToolCall, ToolDescription, ToolRegistry, UserIdentity, run_engagement,
};
use async_trait::async_trait;
use serde_json::{Value, json};

/// Wraps the local model and keeps every turn it produced, so the test sees the calls
/// exactly as generated, before the runtime judged them.
struct RecordingModel {
    inner: LocalModel,
    turns: Mutex<Vec<ModelTurn>>,
    offered: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Model for RecordingModel {
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        self.offered
            .lock()
            .unwrap()
            .push(tools.iter().map(|tool| tool.name.clone()).collect());
        let turn = self.inner.complete(messages, tools).await?;
        self.turns.lock().unwrap().push(turn.clone());
        Ok(turn)
    }
}

fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("agentc-local-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// The settings the tests run with: sampling at a temperature (greedy decoding of
/// random weights tends to repeat one call, which OAS-L2 would cut short), a fixed seed,
/// and short strings so that each turn is a few dozen tokens.
fn settings(seed: u64) -> LocalModelSettings {
    LocalModelSettings {
        temperature: 1.0,
        max_tokens: 512,
        seed,
        limits: ConstraintLimits {
            max_string_length: 24,
            max_items: 4,
        },
        force_cpu: true,
        ..LocalModelSettings::default()
    }
}

/// The HR example as bundled, or with its input restriction on the collection negated,
/// so that the calls random weights make (never into `acme/hr/`) are allowed instead of
/// denied and both paths of OAS-C5 are exercised.
fn hr_specs(negate_collection_check: bool) -> SpecSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec-examples/hr");
    let inputs: Vec<SourceInput> = ["hr_agent.yaml", "tools.yaml"]
        .iter()
        .map(|name| {
            let mut text = std::fs::read_to_string(root.join(name)).unwrap();
            if negate_collection_check && *name == "hr_agent.yaml" {
                let check = "recent.hr_kb_search.inputs.knowledge_base_id.startsWith(\"acme/hr/\")";
                assert!(text.contains(check), "the HR example's restriction changed");
                text = text.replace(check, &format!("!{check}"));
            }
            SourceInput {
                name: (*name).to_string(),
                bytes: text.into_bytes(),
            }
        })
        .collect();
    SpecSet::from_sources(&inputs).unwrap()
}

/// The restriction's verdict, computed here without CEL: the collection must (or, in
/// the negated example, must not) start with `acme/hr/`, and the query must be at most
/// 500 characters.
fn expected_allowed(call: &ToolCall, negated: bool) -> bool {
    let collection = call.arguments["knowledge_base_id"].as_str().unwrap();
    let query = call.arguments["query"].as_str().unwrap();
    collection.starts_with("acme/hr/") != negated && query.chars().count() <= 500
}

fn kb_input_schema() -> Value {
    hr_specs(false)
        .tools
        .into_iter()
        .find(|tool| tool.name == "hr_kb_search")
        .unwrap()
        .input_schema
}

struct Run {
    calls: Vec<ToolCall>,
    outcome: EngagementOutcome,
    kb_calls: usize,
}

async fn run_hr(model_path: &Path, seed: u64, negated: bool) -> Run {
    let set = hr_specs(negated);
    let mut tools = ToolRegistry::new(&set.tools).unwrap();
    let kb = MockTool::new(json!({"results": [{
        "title": "Leave", "snippet": "25 days", "url": "https://kb.acme.example/hr/leave"
    }]}));
    tools.bind("hr_kb_search", Arc::new(kb.clone())).unwrap();
    tools
        .bind(
            "prompt_injection_scanner",
            Arc::new(MockTool::new(json!({"flagged": false, "score": 0.1}))),
        )
        .unwrap();
    let mut runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    );
    runtime.max_turns = 4;
    let model = RecordingModel {
        inner: LocalModel::load(model_path, settings(seed)).await.unwrap(),
        turns: Mutex::new(Vec::new()),
        offered: Mutex::new(Vec::new()),
    };
    let outcome = run_engagement(
        &runtime,
        &model,
        EngagementRequest {
            agent: set.agent("hr_agent").unwrap(),
            user: Some(UserIdentity::new("emp42")),
            input: "How much parental leave do I get?",
            memory: None,
        },
    )
    .await;
    // The model is offered exactly the agent's declared capability, every turn.
    for offered in model.offered.lock().unwrap().iter() {
        assert_eq!(offered, &["hr_kb_search".to_string()]);
    }
    let calls = model
        .turns
        .lock()
        .unwrap()
        .iter()
        .filter_map(|turn| match turn {
            ModelTurn::ToolCalls(calls) => Some(calls.clone()),
            ModelTurn::Text(_) => None,
        })
        .flatten()
        .collect();
    Run {
        calls,
        outcome,
        kb_calls: kb.calls(),
    }
}

/// Checks every call of a run against the tool's real schema and the runtime's record,
/// and returns how many were allowed and how many denied.
fn check_run(run: &Run, negated: bool) -> (usize, usize) {
    let set = hr_specs(negated);
    let schema = &set
        .tools
        .iter()
        .find(|tool| tool.name == "hr_kb_search")
        .unwrap()
        .input_schema;
    let validator = jsonschema::validator_for(schema).unwrap();
    let engagement = &run.outcome.engagement;
    let recorded: Vec<&Value> = engagement["history"]["hr_kb_search"]
        .as_array()
        .map(|invocations| invocations.iter().map(|i| &i["inputs"]).collect())
        .unwrap_or_default();
    let refused: Vec<&Value> = engagement["refused"].as_array().unwrap().iter().collect();
    let (mut allowed, mut denied) = (0, 0);
    let (mut next_recorded, mut next_refused) = (0, 0);
    for call in &run.calls {
        assert_eq!(
            call.name, "hr_kb_search",
            "an undeclared tool was generated"
        );
        assert!(
            validator.is_valid(&call.arguments),
            "arguments break the input schema: {}",
            call.arguments
        );
        // The calls are judged in order; each lands in the history when allowed and in
        // the refused list, refused by the input restriction, when denied.
        if expected_allowed(call, negated) {
            assert_eq!(recorded.get(next_recorded), Some(&call.arguments.as_ref()));
            next_recorded += 1;
            allowed += 1;
        } else {
            let refusal = refused
                .get(next_refused)
                .expect("a denied call is recorded");
            assert_eq!(&refusal["inputs"], call.arguments.as_ref());
            assert_eq!(refusal["stage"], "input_restriction", "{refusal}");
            next_refused += 1;
            denied += 1;
        }
    }
    assert_eq!(
        next_recorded,
        recorded.len(),
        "every recorded call was generated"
    );
    assert_eq!(
        next_refused,
        refused.len(),
        "every refusal was of a generated call"
    );
    assert_eq!(run.kb_calls, allowed, "only allowed calls reach the tool");
    (allowed, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_weights_with_constrained_decoding_make_only_valid_calls_that_the_runtime_judges() {
    let directory = scratch("hf");
    tiny_model::write_hugging_face_folder(&directory, &tiny_model::ModelShape::TINY, 7).unwrap();
    let (mut allowed, mut denied, mut runs) = (0, 0, 0);
    let mut statuses = Vec::new();
    // A few seeds, until both verdicts have been seen: each engagement is a handful of
    // turns of a two-layer model, a second or so each on a CPU.
    for seed in 1..=6u64 {
        for negated in [false, true] {
            let run = run_hr(&directory, seed, negated).await;
            runs += 1;
            statuses.push(format!(
                "seed {seed}, negated {negated}: calls {}, status {}",
                serde_json::to_string(&run.calls).unwrap(),
                serde_json::to_string(&run.outcome.status).unwrap()
            ));
            let (run_allowed, run_denied) = check_run(&run, negated);
            allowed += run_allowed;
            denied += run_denied;
        }
        if allowed > 0 && denied > 0 {
            break;
        }
    }
    assert!(
        allowed > 0 && denied > 0,
        "after {runs} engagements: {allowed} allowed, {denied} denied calls; {statuses:#?}"
    );
    eprintln!("{allowed} allowed and {denied} denied calls; {statuses:#?}");
    std::fs::remove_dir_all(&directory).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_generates_the_same_turn_and_the_gguf_layout_loads_too() {
    let directory = scratch("seed");
    tiny_model::write_hugging_face_folder(&directory, &tiny_model::ModelShape::TINY, 7).unwrap();
    let gguf = directory.join("tiny.gguf");
    tiny_model::write_gguf(&gguf, &tiny_model::ModelShape::TINY, 7).unwrap();
    let tools = [ToolDescription {
        name: "hr_kb_search".into(),
        description: "Searches the knowledge base.".into(),
        input_schema: kb_input_schema(),
    }];
    let messages = [
        Message::System {
            content: "You answer HR questions.".into(),
        },
        Message::User {
            content: "Leave?".into(),
        },
    ];
    let turn = |path: PathBuf, seed: u64| {
        let tools = tools.clone();
        let messages = messages.clone();
        async move {
            let model = LocalModel::load(&path, settings(seed)).await.unwrap();
            model.complete(&messages, &tools).await.unwrap()
        }
    };
    let first = turn(directory.clone(), 11).await;
    assert_eq!(first, turn(directory.clone(), 11).await);
    let from_gguf = LocalModel::load(&gguf, settings(11)).await.unwrap();
    assert_eq!(from_gguf.source().format, LocalModelFormat::Gguf);
    let gguf_turn = from_gguf.complete(&messages, &tools).await.unwrap();
    // Either layout yields a valid turn: an answer, or a declared call.
    for turn in [&first, &gguf_turn] {
        if let ModelTurn::ToolCalls(calls) = turn {
            assert!(calls.iter().all(|call| call.name == "hr_kb_search"));
        }
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limit_reached_mid_call_fails_closed() {
    let directory = scratch("limit");
    tiny_model::write_hugging_face_folder(&directory, &tiny_model::ModelShape::TINY, 7).unwrap();
    let tools = [ToolDescription {
        name: "hr_kb_search".into(),
        description: "Searches.".into(),
        input_schema: kb_input_schema(),
    }];
    let messages = [Message::User {
        content: "Leave?".into(),
    }];
    // Three tokens cannot complete any object the constraint admits (the shortest,
    // `{"answer":""}`, is thirteen bytes, one token each).
    let model = LocalModel::load(
        &directory,
        LocalModelSettings {
            max_tokens: 3,
            ..settings(1)
        },
    )
    .await
    .unwrap();
    let error = model.complete(&messages, &tools).await.unwrap_err();
    assert!(
        matches!(&error, ModelError::Failed(detail) if detail.contains("token limit")),
        "{error:?}"
    );
    std::fs::remove_dir_all(&directory).unwrap();
}

#[tokio::test]
async fn paths_that_hold_no_model_are_refused_before_the_engine_is_touched() {
    let missing = std::env::temp_dir().join("agentc-local-model-never-here");
    assert!(matches!(
        LocalModel::load(&missing, settings(1)).await,
        Err(LocalModelError::NotFound { .. })
    ));
    let directory = scratch("empty");
    let error = LocalModel::load(&directory, settings(1)).await.unwrap_err();
    assert!(error.to_string().contains("config.json"), "{error}");
    std::fs::remove_dir_all(&directory).unwrap();
}
