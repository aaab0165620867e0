//! A call of a remote agent (OAS-N5, OAS-S3) survives a restart of the calling process:
//! the remote engagement's location is saved in the caller's snapshot as soon as the
//! 303 gives it, and the resumed engagement polls that location — it never posts
//! again, so the remote agent runs once — and checks the answer as it would a fresh
//! one. A saved location that does not fit the call or the agent's origin is refused,
//! audited, and never requested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{MemoryLog, REMOTE_DOCUMENT, loopback_server};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentc_compiler::SourceInput;
use agentc_runtime::{
    AuditLog, Checkpoints, EngagementOutcome, EngagementRequest, EngagementSnapshot,
    EngagementStatus, FailureReason, InMemoryCredentials, ModelTurn, RemoteLimits, Runtime,
    ScriptedModel, Secret, SpecSet, ToolCall, ToolRegistry, remote_call_hash, resume_engagement,
    run_engagement,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Keeps every snapshot saved, and counts the remote waits ended.
#[derive(Default)]
struct Saved {
    snapshots: Mutex<Vec<EngagementSnapshot>>,
    remote_saves: Mutex<usize>,
    remote_ends: Mutex<Vec<String>>,
}

#[async_trait]
impl Checkpoints for Saved {
    async fn save(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        self.snapshots.lock().unwrap().push(snapshot.clone());
        Ok(())
    }

    async fn save_remote_wait(&self, snapshot: &EngagementSnapshot) -> Result<(), String> {
        *self.remote_saves.lock().unwrap() += 1;
        self.save(snapshot).await
    }

    async fn end_remote_wait(&self, root_engagement: &str) -> Result<(), String> {
        self.remote_ends
            .lock()
            .unwrap()
            .push(root_engagement.to_string());
        Ok(())
    }
}

/// The desk agent, whose one capability is `vendor_support` on `server`, and whose
/// output restriction wants an answer about shipping.
fn desk_specs(server: &MockServer) -> SpecSet {
    let desk = format!(
        "kind: openagentspec:v1/agent\nname: desk\ndescription: Asks the vendor.\nintent: You ask the vendor.\nowner: ops@acme.example\ncapabilities:\n  oagent://{}/agents/vendor_support:\n    user_identity: false\n    static_identity: vendor_link\n    output_restriction:\n      assertion: recent.vendor_support.outputs.text.startsWith(\"Ships\")\nexposes:\n  vendor_calls: history._total\n",
        server.address()
    );
    SpecSet::from_sources(&[SourceInput {
        name: "desk.yaml".into(),
        bytes: desk.into_bytes(),
    }])
    .unwrap()
}

fn runtime(set: &SpecSet, checkpoints: Arc<Saved>, audit: &MemoryLog) -> Runtime {
    let mut tools = ToolRegistry::new(&set.tools).unwrap();
    tools
        .bind_remote_agents(
            set,
            RemoteLimits {
                allow_loopback_http: true,
                poll_interval: Duration::from_millis(5),
                max_poll_interval: Duration::from_millis(20),
                timeout: Duration::from_secs(10),
                ..RemoteLimits::default()
            },
        )
        .unwrap();
    let mut runtime = Runtime::new(
        tools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    );
    runtime.credentials = Arc::new(
        InMemoryCredentials::new().with_static("vendor_link", Secret::new("company-token")),
    );
    runtime.checkpoints = Some(checkpoints);
    runtime.audit = Arc::new(AuditLog::new(Box::new(audit.clone())));
    runtime
}

fn vendor_call() -> ToolCall {
    ToolCall {
        id: Some("v1".into()),
        name: "vendor_support".into(),
        arguments: json!({"text": "When does o-42 ship?"}).into(),
    }
}

fn script() -> ScriptedModel {
    ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![vendor_call()]),
        ModelTurn::Text("Asked.".into()),
    ])
    .positional()
}

/// A vendor whose agent document checks, which answers the POST with the engagement
/// `x1` (exactly once), and whose engagement keeps running.
async fn running_vendor() -> MockServer {
    let server = loopback_server().await;
    Mock::given(method("GET"))
        .and(path("/agents/vendor_support"))
        .respond_with(ResponseTemplate::new(200).set_body_string(REMOTE_DOCUMENT))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/agents/vendor_support"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", "/engagements/x1"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/engagements/x1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "x1", "status": {"state": "awaiting_review"}, "text": null, "exposes": {}
        })))
        .mount(&server)
        .await;
    server
}

/// Runs `desk` until its remote call's location is saved, then drops the engagement,
/// as a process that stops there would; returns the snapshot, through JSON as a store
/// keeps it.
async fn remote_wait_then_stop(server: &MockServer, set: &SpecSet) -> EngagementSnapshot {
    let saved = Arc::new(Saved::default());
    let first = runtime(set, Arc::clone(&saved), &MemoryLog::default());
    let model = script();
    let engagement = run_engagement(
        &first,
        &model,
        EngagementRequest {
            agent: set.agent("desk").unwrap(),
            user: Some(agentc_runtime::UserIdentity::new("u1")),
            input: "ask the vendor",
            memory: None,
        },
    );
    let reached = async {
        for _ in 0..2000 {
            if !saved.snapshots.lock().unwrap().is_empty() {
                // A few more polls, so that the wait is seen to go on after the save.
                tokio::time::sleep(Duration::from_millis(30)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the remote call never saved its wait");
    };
    tokio::select! {
        outcome = engagement => panic!("the engagement ended instead of waiting: {outcome:?}"),
        () = reached => {}
    }
    // The wait was saved once, and it has not ended: the process stopped inside it.
    assert_eq!(*saved.remote_saves.lock().unwrap(), 1);
    assert!(saved.remote_ends.lock().unwrap().is_empty());
    server.verify().await;
    let snapshot = saved.snapshots.lock().unwrap().last().cloned().unwrap();
    serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap()
}

/// From here on the vendor takes no new engagement: a POST would be the remote agent
/// engaged twice for one call.
async fn vendor_answers(server: &MockServer, answer: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", "/engagements/x2"))
        .expect(0)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/engagements/x1"))
        .respond_with(answer)
        .mount(server)
        .await;
}

async fn resume(
    set: &SpecSet,
    snapshot: EngagementSnapshot,
) -> (EngagementOutcome, Arc<Saved>, Vec<Value>) {
    let saved = Arc::new(Saved::default());
    let audit = MemoryLog::default();
    let second = runtime(set, Arc::clone(&saved), &audit);
    let outcome = resume_engagement(&second, &script(), set.agent("desk").unwrap(), snapshot).await;
    (outcome, saved, audit.entries())
}

fn completed(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "x1", "status": {"state": "completed"}, "text": text,
        "exposes": {"orders_checked": 1}
    }))
}

#[tokio::test]
async fn oas_s3_a_remote_call_resumes_from_its_saved_location_without_posting_again() {
    let server = running_vendor().await;
    let set = desk_specs(&server);
    let snapshot = remote_wait_then_stop(&server, &set).await;
    let wait = snapshot
        .remote
        .clone()
        .expect("the remote engagement is saved");
    assert_eq!(wait.capability, "vendor_support");
    assert_eq!(
        wait.location,
        format!("http://{}/engagements/x1", server.address())
    );
    assert_eq!(
        wait.agent_url,
        format!("http://{}/agents/vendor_support", server.address())
    );
    assert_eq!(wait.call_hash, remote_call_hash(&vendor_call()));
    assert_eq!(snapshot.pending_calls, vec![vendor_call()]);
    assert_eq!(snapshot.engagement.history.len(), 0);

    vendor_answers(&server, completed("Ships Monday.")).await;
    let (outcome, saved, audit) = resume(&set, snapshot.clone()).await;
    assert_eq!(outcome.status, EngagementStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.text.as_deref(), Some("Asked."));
    assert_eq!(outcome.exposes["vendor_calls"], 1);
    assert_eq!(outcome.engagement_id, snapshot.engagement.id);
    // OAS-X1: the recorded output is the remote text and exposes, nothing else.
    assert_eq!(
        outcome.engagement["recent"]["vendor_support"]["outputs"],
        json!({"text": "Ships Monday.", "orders_checked": 1})
    );
    // The resumed wait was saved again (a second restart resumes it too) and ended.
    assert_eq!(*saved.remote_saves.lock().unwrap(), 1);
    assert_eq!(
        *saved.remote_ends.lock().unwrap(),
        vec![snapshot.engagement.id.clone()]
    );
    // The audit trail has the call and its completion, on the same engagement.
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap(),
                entry["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("intended", "vendor_support"),
            ("completed", "vendor_support")
        ]
    );
    server.verify().await;
}

/// The refused call the resumed engagement recorded, and the audit entry of it.
fn refused(outcome: &EngagementOutcome, audit: &[Value]) -> (String, String, Value) {
    let refused = &outcome.snapshot.engagement.refused;
    assert_eq!(refused.len(), 1, "{outcome:?}");
    let entry = audit
        .iter()
        .find(|entry| entry["action"] == "denied" || entry["action"] == "failed")
        .cloned()
        .unwrap_or_else(|| panic!("no refusal audited: {audit:?}"));
    (refused[0].stage.clone(), refused[0].reason.clone(), entry)
}

#[tokio::test]
async fn a_resumed_remote_answer_is_checked_like_a_fresh_one() {
    let server = running_vendor().await;
    let set = desk_specs(&server);
    let snapshot = remote_wait_then_stop(&server, &set).await;

    // OAS-C6: the output restriction is asserted over the polled answer.
    vendor_answers(&server, completed("Closed today.")).await;
    let (outcome, _, audit) = resume(&set, snapshot.clone()).await;
    assert_eq!(outcome.exposes["vendor_calls"], 0, "{outcome:?}");
    let (stage, _, entry) = refused(&outcome, &audit);
    assert_eq!(stage, "output_restriction");
    assert_eq!(entry["detail"]["stage"], "output_restriction");

    // The remote engagement is gone: the call fails, saying so, and is not retried.
    vendor_answers(&server, ResponseTemplate::new(404)).await;
    let (outcome, _, audit) = resume(&set, snapshot.clone()).await;
    assert_eq!(outcome.exposes["vendor_calls"], 0, "{outcome:?}");
    let (stage, reason, entry) = refused(&outcome, &audit);
    assert_eq!(stage, "invoke");
    assert!(reason.contains("404"), "{reason}");
    assert_eq!(entry["action"], "failed");
    assert!(
        entry["detail"]["reason"].as_str().unwrap().contains("404"),
        "{entry}"
    );

    // The remote engagement failed: so does the call.
    vendor_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x1", "status": {"state": "failed", "reason": {"kind": "review_refused"}},
            "text": null, "exposes": {}
        })),
    )
    .await;
    let (outcome, _, audit) = resume(&set, snapshot).await;
    let (stage, reason, _) = refused(&outcome, &audit);
    assert_eq!(stage, "invoke");
    assert!(reason.contains("remote engagement failed"), "{reason}");
    server.verify().await;
}

#[tokio::test]
async fn a_saved_remote_location_that_does_not_fit_is_refused_without_calling_it() {
    let server = running_vendor().await;
    let set = desk_specs(&server);
    let snapshot = remote_wait_then_stop(&server, &set).await;
    // Neither the vendor nor any other host is asked anything from here on.
    server.reset().await;
    Mock::given(any())
        .respond_with(completed("Ships Monday."))
        .expect(0)
        .mount(&server)
        .await;
    let elsewhere = loopback_server().await;
    Mock::given(any())
        .respond_with(completed("Ships Monday."))
        .expect(0)
        .mount(&elsewhere)
        .await;

    let tamper = |change: &dyn Fn(&mut EngagementSnapshot)| {
        let mut snapshot = snapshot.clone();
        change(&mut snapshot);
        snapshot
    };
    let cases: Vec<(&str, EngagementSnapshot)> = vec![
        (
            "another origin",
            tamper(&|snapshot| {
                snapshot.remote.as_mut().unwrap().location =
                    format!("http://{}/engagements/x1", elsewhere.address());
            }),
        ),
        (
            "user information",
            tamper(&|snapshot| {
                snapshot.remote.as_mut().unwrap().location =
                    format!("http://someone:pw@{}/engagements/x1", server.address());
            }),
        ),
        (
            "not a URL",
            tamper(&|snapshot| {
                snapshot.remote.as_mut().unwrap().location = "/engagements/x1".to_string();
            }),
        ),
        (
            "was started at",
            tamper(&|snapshot| {
                snapshot.remote.as_mut().unwrap().agent_url =
                    format!("http://{}/agents/vendor_support", elsewhere.address());
                snapshot.remote.as_mut().unwrap().location =
                    format!("http://{}/engagements/x1", elsewhere.address());
            }),
        ),
        (
            "started for another call",
            tamper(&|snapshot| {
                snapshot.pending_calls[0].arguments =
                    std::sync::Arc::new(json!({"text": "Cancel order o-42."}));
            }),
        ),
        (
            "is of `someone_else`",
            tamper(&|snapshot| {
                snapshot.remote.as_mut().unwrap().capability = "someone_else".to_string();
            }),
        ),
        (
            "more than one result",
            tamper(&|snapshot| {
                snapshot.obtained_output = Some(json!({"text": "Ships Monday."}));
            }),
        ),
    ];
    for (expected, snapshot) in cases {
        let (outcome, saved, audit) = resume(&set, snapshot).await;
        let EngagementStatus::Failed {
            reason: FailureReason::Interrupted { detail },
        } = &outcome.status
        else {
            panic!("{expected}: the engagement did not fail: {outcome:?}");
        };
        assert!(detail.contains(expected), "{expected}: {detail}");
        assert_eq!(outcome.text, None);
        assert!(outcome.exposes.is_empty());
        assert_eq!(*saved.remote_saves.lock().unwrap(), 0, "{expected}");
        // The trail says why the engagement ended.
        assert_eq!(audit.len(), 1, "{expected}: {audit:?}");
        assert_eq!(audit[0]["action"], "denied");
        assert_eq!(audit[0]["subject"], "vendor_support");
        assert_eq!(audit[0]["detail"]["stage"], "resume");
        assert!(
            audit[0]["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{expected}: {audit:?}"
        );
    }
    server.verify().await;
    elsewhere.verify().await;
}

/// `front` delegates to the desk (an agent of the set), which asks the vendor.
fn front_specs(server: &MockServer) -> SpecSet {
    let desk = format!(
        "kind: openagentspec:v1/agent\nname: desk\ndescription: Asks the vendor.\nintent: You ask the vendor.\nowner: ops@acme.example\ncapabilities:\n  oagent://{}/agents/vendor_support:\n    user_identity: false\n    static_identity: vendor_link\nexposes:\n  vendor_calls: history._total\n---\nkind: openagentspec:v1/agent\nname: front\ndescription: Has the desk ask the vendor.\nintent: You delegate vendor questions.\nowner: ops@acme.example\ncapabilities:\n  desk: {{}}\nexposes:\n  delegated: history._total\n",
        server.address()
    );
    SpecSet::from_sources(&[SourceInput {
        name: "front.yaml".into(),
        bytes: desk.into_bytes(),
    }])
    .unwrap()
}

fn front_runtime(set: &SpecSet, checkpoints: Arc<Saved>) -> Runtime {
    let mut runtime = runtime(set, checkpoints, &MemoryLog::default()).with_agents(&set.agents);
    runtime
        .agent_models
        .insert("desk".into(), Arc::new(script()));
    runtime
}

fn front_script() -> ScriptedModel {
    ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![ToolCall {
            id: Some("d1".into()),
            name: "desk".into(),
            arguments: json!({"text": "Ask the vendor when o-42 ships."}).into(),
        }]),
        ModelTurn::Text("The desk has asked.".into()),
    ])
    .positional()
}

#[tokio::test]
async fn a_remote_call_inside_a_called_agent_resumes_the_whole_chain() {
    let server = running_vendor().await;
    let set = front_specs(&server);
    let saved = Arc::new(Saved::default());
    let first = front_runtime(&set, Arc::clone(&saved));
    let model = front_script();
    let engagement = run_engagement(
        &first,
        &model,
        EngagementRequest {
            agent: set.agent("front").unwrap(),
            user: Some(agentc_runtime::UserIdentity::new("u1")),
            input: "when does o-42 ship?",
            memory: None,
        },
    );
    let reached = async {
        for _ in 0..2000 {
            if !saved.snapshots.lock().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the remote call never saved its wait");
    };
    tokio::select! {
        outcome = engagement => panic!("the engagement ended instead of waiting: {outcome:?}"),
        () = reached => {}
    }
    server.verify().await;
    let snapshot = saved.snapshots.lock().unwrap().last().cloned().unwrap();
    let snapshot: EngagementSnapshot =
        serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
    // The outermost engagement is saved, with the desk's wait for the vendor inside.
    assert_eq!(snapshot.engagement.agent, "front");
    assert_eq!(snapshot.remote, None);
    let nested = snapshot.nested.as_deref().unwrap();
    assert_eq!(nested.engagement.agent, "desk");
    assert_eq!(nested.remote.as_ref(), snapshot.remote_wait());
    assert_eq!(snapshot.remote_wait().unwrap().capability, "vendor_support");

    vendor_answers(&server, completed("Ships Monday.")).await;
    let saved = Arc::new(Saved::default());
    let second = front_runtime(&set, Arc::clone(&saved));
    let outcome = resume_engagement(
        &second,
        &front_script(),
        set.agent("front").unwrap(),
        snapshot.clone(),
    )
    .await;
    assert_eq!(outcome.status, EngagementStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.text.as_deref(), Some("The desk has asked."));
    assert_eq!(outcome.exposes["delegated"], 1);
    assert_eq!(
        outcome.engagement["recent"]["desk"]["outputs"],
        json!({"text": "Asked.", "vendor_calls": 1})
    );
    // The resumed wait was ended under the outermost engagement's identifier.
    assert_eq!(
        *saved.remote_ends.lock().unwrap(),
        vec![snapshot.engagement.id.clone()]
    );
    server.verify().await;
}
