//! AGX-T2: calls journaled at their invocation, so that a server taking an engagement
//! over after the one running it died never sends a call that returned again, sends one
//! cut off mid-call again only when its tool allows (it only reads, or takes an
//! idempotency key, the same on every attempt), and otherwise ends the engagement with
//! the call's outcome unknown. Each rule with its allowed and its denied path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use agentc_compiler::SourceInput;
use agentc_runtime::{
    CallJournal, Checkpoints, EngagementRequest, EngagementSnapshot, EngagementStatus,
    FailureReason, ModelTurn, Rerun, Runtime, ScriptedModel, SpecSet, ToolBackend, ToolCall,
    ToolContext, ToolError, ToolRegistry, resume_engagement, run_engagement,
};
use async_trait::async_trait;
use serde_json::{Value, json};

const SPECS: &str = r#"kind: openagentspec:v1/tool
name: send
description: Sends a payment.
input:
  type: object
  properties:
    to: {type: string}
  required: [to]
output:
  type: object
  properties:
    sent: {type: boolean}
  required: [sent]
binding:
  native: {function: tests::send}
---
kind: openagentspec:v1/agent
name: sender
description: Sends payments.
intent: You send payments.
owner: finance@acme.example
capabilities:
  send: {}
exposes:
  sent: history._total
"#;

fn set() -> SpecSet {
    SpecSet::from_sources(&[SourceInput {
        name: "specs.yaml".into(),
        bytes: SPECS.as_bytes().to_vec(),
    }])
    .unwrap()
}

/// A tool that records each call's idempotency key and says how it may be rerun.
struct Send {
    rerun: Rerun,
    answer: Value,
    keys: Mutex<Vec<Option<String>>>,
}

impl Send {
    fn new(rerun: Rerun, answer: Value) -> Arc<Self> {
        Arc::new(Send {
            rerun,
            answer,
            keys: Mutex::new(Vec::new()),
        })
    }

    fn keys(&self) -> Vec<Option<String>> {
        self.keys.lock().unwrap().clone()
    }
}

#[async_trait]
impl ToolBackend for Send {
    async fn invoke(&self, _input: &Value, context: &ToolContext) -> Result<Value, ToolError> {
        self.keys
            .lock()
            .unwrap()
            .push(context.idempotency_key.clone());
        Ok(self.answer.clone())
    }

    fn rerun(&self) -> Rerun {
        self.rerun
    }
}

/// The journal, kept in memory; `fail` refuses every journal write.
#[derive(Default)]
struct Journal {
    snapshots: Mutex<Vec<EngagementSnapshot>>,
    fail: bool,
}

#[async_trait]
impl Checkpoints for Journal {
    async fn save(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        self.snapshots.lock().unwrap().push(snapshot.clone());
        Ok(())
    }

    async fn journal(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        if self.fail {
            return Err("the store is unreachable".into());
        }
        self.snapshots.lock().unwrap().push(snapshot.clone());
        Ok(())
    }

    fn journals(&self) -> bool {
        true
    }
}

fn runtime_with(set: &SpecSet, tool: Arc<Send>, journal: Arc<Journal>) -> Runtime {
    let mut tools = ToolRegistry::new(&set.tools).unwrap();
    tools.bind("send", tool).unwrap();
    let mut runtime =
        Runtime::new(tools, Arc::new(agentc_runtime::AuditLog::discard())).with_agents(&set.agents);
    runtime.checkpoints = Some(journal);
    runtime
}

fn model() -> ScriptedModel {
    ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![ToolCall {
            id: Some("c1".into()),
            name: "send".into(),
            arguments: json!({"to": "acct-9"}).into(),
        }]),
        ModelTurn::Text("Sent.".into()),
    ])
    .positional()
}

/// Runs the engagement to its end with a journal; returns what was journaled.
async fn journaled_run(set: &SpecSet, tool: Arc<Send>) -> Vec<EngagementSnapshot> {
    let journal = Arc::new(Journal::default());
    let runtime = runtime_with(set, tool, Arc::clone(&journal));
    let outcome = run_engagement(
        &runtime,
        &model(),
        EngagementRequest {
            agent: set.agent("sender").unwrap(),
            user: None,
            input: "Send the payment",
            memory: None,
        },
    )
    .await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    journal.snapshots.lock().unwrap().clone()
}

#[tokio::test]
async fn agx_t2_a_call_is_journaled_before_it_is_sent_and_once_it_answered() {
    let set = set();
    let tool = Send::new(Rerun::Never, json!({"sent": true}));
    let journal = journaled_run(&set, Arc::clone(&tool)).await;
    let marks: Vec<Option<CallJournal>> = journal.iter().map(|snapshot| snapshot.journal).collect();
    assert_eq!(
        marks,
        [Some(CallJournal::Invoking), Some(CallJournal::Returned)]
    );
    assert_eq!(journal[0].pending_calls[0].name, "send");
    assert!(journal[0].obtained_output.is_none());
    assert_eq!(journal[1].obtained_output, Some(json!({"sent": true})));
    // Without the key mechanism, no key is sent.
    assert_eq!(tool.keys(), [None]);
}

#[tokio::test]
async fn agx_t2_a_call_cut_off_mid_call_without_a_key_is_never_sent_again() {
    let set = set();
    let first = Send::new(Rerun::Never, json!({"sent": true}));
    let invoking = journaled_run(&set, first).await.remove(0);
    // Denied: taken over mid-call, the call is not made again; the outcome is unknown.
    let second = Send::new(Rerun::Never, json!({"sent": true}));
    let runtime = runtime_with(&set, Arc::clone(&second), Arc::new(Journal::default()));
    let outcome =
        resume_engagement(&runtime, &model(), set.agent("sender").unwrap(), invoking).await;
    assert!(
        matches!(
            &outcome.status,
            EngagementStatus::Failed {
                reason: FailureReason::OutcomeUnknown { tool, .. }
            } if tool == "send"
        ),
        "{:?}",
        outcome.status
    );
    assert!(second.keys().is_empty(), "the call was sent again");
}

#[tokio::test]
async fn agx_t2_a_call_cut_off_mid_call_with_a_key_is_sent_again_with_the_same_key() {
    let set = set();
    let first = Send::new(Rerun::WithIdempotencyKey, json!({"sent": true}));
    let invoking = journaled_run(&set, Arc::clone(&first)).await.remove(0);
    let key = first.keys()[0].clone().expect("a key is sent");
    assert_eq!(key.len(), 64, "a SHA-256 in hex: {key}");
    // Allowed: the same call, the same key, so the tool has its effect once.
    let second = Send::new(Rerun::WithIdempotencyKey, json!({"sent": true}));
    let runtime = runtime_with(&set, Arc::clone(&second), Arc::new(Journal::default()));
    let outcome =
        resume_engagement(&runtime, &model(), set.agent("sender").unwrap(), invoking).await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(second.keys(), [Some(key.clone())]);
    // A read-only tool is sent again too (with no key, as it takes none).
    let reader = Send::new(Rerun::Read, json!({"sent": true}));
    let invoking = journaled_run(&set, Arc::clone(&reader)).await.remove(0);
    let again = Send::new(Rerun::Read, json!({"sent": true}));
    let runtime = runtime_with(&set, Arc::clone(&again), Arc::new(Journal::default()));
    let outcome =
        resume_engagement(&runtime, &model(), set.agent("sender").unwrap(), invoking).await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert_eq!(again.keys(), [None]);
    // Another engagement's call gets another key.
    let other = Send::new(Rerun::WithIdempotencyKey, json!({"sent": true}));
    journaled_run(&set, Arc::clone(&other)).await;
    assert_ne!(other.keys()[0].as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn agx_t2_a_call_that_returned_is_never_sent_again() {
    let set = set();
    let first = Send::new(Rerun::Never, json!({"sent": true}));
    let returned = journaled_run(&set, first).await.remove(1);
    let second = Send::new(Rerun::Never, json!({"sent": false}));
    let runtime = runtime_with(&set, Arc::clone(&second), Arc::new(Journal::default()));
    let outcome =
        resume_engagement(&runtime, &model(), set.agent("sender").unwrap(), returned).await;
    assert_eq!(outcome.status, EngagementStatus::Completed);
    assert!(second.keys().is_empty());
    assert_eq!(outcome.exposes["sent"], json!(1));
}

#[tokio::test]
async fn agx_t2_a_refused_answer_is_never_journaled() {
    let set = set();
    // The answer breaks the output schema: refused, so it is stored nowhere.
    let tool = Send::new(Rerun::Never, json!({"leaked": "REFUSED-VALUE-31"}));
    let journal = Arc::new(Journal::default());
    let runtime = runtime_with(&set, tool, Arc::clone(&journal));
    run_engagement(
        &runtime,
        &model(),
        EngagementRequest {
            agent: set.agent("sender").unwrap(),
            user: None,
            input: "Send the payment",
            memory: None,
        },
    )
    .await;
    let snapshots = journal.snapshots.lock().unwrap();
    assert_eq!(snapshots.len(), 1, "only the call's start");
    assert_eq!(snapshots[0].journal, Some(CallJournal::Invoking));
    assert!(
        !serde_json::to_string(&*snapshots)
            .unwrap()
            .contains("REFUSED-VALUE-31")
    );
}

#[tokio::test]
async fn agx_t2_a_call_whose_journal_cannot_be_written_is_not_sent() {
    let set = set();
    let tool = Send::new(Rerun::Never, json!({"sent": true}));
    let journal = Arc::new(Journal {
        fail: true,
        ..Journal::default()
    });
    let runtime = runtime_with(&set, Arc::clone(&tool), journal);
    let outcome = run_engagement(
        &runtime,
        &model(),
        EngagementRequest {
            agent: set.agent("sender").unwrap(),
            user: None,
            input: "Send the payment",
            memory: None,
        },
    )
    .await;
    assert!(
        matches!(
            &outcome.status,
            EngagementStatus::Failed {
                reason: FailureReason::Interrupted { .. }
            }
        ),
        "{:?}",
        outcome.status
    );
    assert!(
        tool.keys().is_empty(),
        "the call was sent without its journal"
    );
}
