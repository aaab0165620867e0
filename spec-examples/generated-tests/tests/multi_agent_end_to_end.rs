//! The generated multi-agent crate, end to end (Reading: an agent as a tool).
//!
//! `office_assistant` calls `hr_helpdesk`, an agent of the same set: the generated
//! `Hosted` runs it as a nested engagement on the same runtime, with its own scripted
//! model and its tools from the host's implementation of `HrHelpdeskTools`, and the
//! callee's text and typed exposes come back to the caller. `vendor_liaison` calls the
//! remote agent `oagent://support.example.net/agents/vendor_support`, bound to the
//! runtime's `RemoteAgentTool` and served here by a loopback server speaking OAS-S3
//! (GET the document, POST → 303 → GET the engagement). Neither agent capability has a
//! method of the host: the runtime runs both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentc_runtime::{
    EngagementStatus, InMemoryCredentials, ModelTurn, RefusalStage, RemoteLimits, ScriptedModel,
    Secret, StaticReviewer, ToolCall, ToolError, UserIdentity,
};
use multi_agent::{
    AgentRequest, CallError, HrHelpdeskTools, LookupPolicyDocInput, LookupPolicyDocOutput,
    LookupPolicyDocOutputPagesItem, OfficeAssistant, OfficeAssistantTools, RemoteAgents,
    SetupError, TeamCreateEventInput, TeamCreateEventOutput, TeamFreeBusyInput, TeamFreeBusyOutput,
    TeamSchedulerTools, UserIdentityCall, VendorLiaison, VendorLiaisonTools, agents, capabilities,
};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The host's tools for every agent of the set that `office_assistant` reaches; it
/// counts the policy look-ups that reach it.
#[derive(Clone, Default)]
struct Host {
    lookups: Arc<AtomicUsize>,
}

// `office_assistant` and `vendor_liaison` use only agents, so their traits have no
// method: the runtime runs agent capabilities.
impl OfficeAssistantTools for Host {}
impl VendorLiaisonTools for Host {}

#[async_trait::async_trait]
impl HrHelpdeskTools for Host {
    async fn lookup_policy_doc(
        &self,
        input: LookupPolicyDocInput,
        call: UserIdentityCall<'_>,
    ) -> Result<LookupPolicyDocOutput, ToolError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        // The nested engagement carries the engaging user's identity (OAS-C3).
        assert_eq!(call.user(), Some("emp-7"));
        assert!(call.engagement().starts_with("hr_helpdesk-"));
        Ok(LookupPolicyDocOutput {
            pages: vec![LookupPolicyDocOutputPagesItem {
                doc_id: format!("pol_{}_1", input.collection),
                title: "Annual leave".into(),
                excerpt: "25 days a year.".into(),
            }],
        })
    }
}

#[async_trait::async_trait]
impl TeamSchedulerTools for Host {
    async fn team_free_busy(
        &self,
        _input: TeamFreeBusyInput,
        _call: UserIdentityCall<'_>,
    ) -> Result<TeamFreeBusyOutput, ToolError> {
        Ok(TeamFreeBusyOutput { busy: Vec::new() })
    }

    async fn team_create_event(
        &self,
        _input: TeamCreateEventInput,
        _call: UserIdentityCall<'_>,
    ) -> Result<TeamCreateEventOutput, ToolError> {
        Ok(TeamCreateEventOutput {
            event_id: "ev-1".into(),
            status: "confirmed".into(),
        })
    }
}

fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: Some(format!("{name}-1")),
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// `hr_helpdesk`'s own model: one look-up in the leave collection, then its answer.
fn helpdesk_model() -> Arc<ScriptedModel> {
    Arc::new(ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![call(
            "lookup_policy_doc",
            json!({"collection": "leave", "query": "annual leave"}),
        )]),
        ModelTurn::Text("You get 25 days a year (pol_leave_1).".into()),
    ]))
}

fn user() -> UserIdentity {
    UserIdentity {
        id: "emp-7".into(),
        email: Some("ana@acme.example".into()),
    }
}

#[tokio::test]
async fn a_local_agent_capability_runs_as_a_nested_engagement_and_its_exposes_come_back() {
    let host = Host::default();
    let mut assistant = OfficeAssistant::new(
        host.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    // `hr_helpdesk` is reviewed by `compliance_reviewer` (OAS-C7); here it approves.
    assistant.runtime_mut().reviewer = Arc::new(StaticReviewer::approving());
    assistant.set_callee_model::<agents::hr_helpdesk>(helpdesk_model());
    let model = ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![call(
            "hr_helpdesk",
            json!({"text": "How much annual leave do I get?"}),
        )]),
        ModelTurn::Text("HR says: 25 days a year.".into()),
    ]);
    let outcome = assistant
        .engage(&model, Some(user()), "How much annual leave do I get?")
        .await;

    assert!(outcome.completed(), "{:?}", outcome.status);
    assert_eq!(host.lookups.load(Ordering::SeqCst), 1);
    let exposes = outcome.exposes.clone().expect("typed exposes");
    assert_eq!(exposes.delegations, vec!["hr_helpdesk".to_string()]);
    assert_eq!(exposes.event_id, "");
    // The nested engagement's text and its exposes are the output the caller's
    // restrictions saw (`documents_found > 0` passed) and recorded.
    let record = outcome.operator_record();
    let output = &record["history"]["_list"][0];
    assert_eq!(output, "hr_helpdesk");
    let recorded = &record["recent"]["hr_helpdesk"]["outputs"];
    assert_eq!(recorded["text"], "You get 25 days a year (pol_leave_1).");
    assert_eq!(recorded["documents_found"], 1);
    assert_eq!(recorded["collection"], "leave");
}

#[tokio::test]
async fn a_refused_review_refuses_the_nested_engagement_before_it_starts() {
    let host = Host::default();
    // The default reviewer refuses, so the reviewed call never reaches `hr_helpdesk`.
    let mut assistant = OfficeAssistant::new(
        host.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    assistant.set_callee_model::<agents::hr_helpdesk>(helpdesk_model());
    let model = ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![call(
            "hr_helpdesk",
            json!({"text": "How much annual leave do I get?"}),
        )]),
        ModelTurn::Text("I could not ask HR.".into()),
    ]);
    let outcome = assistant.engage(&model, Some(user()), "Leave?").await;

    // A refused review refuses the call (OAS-C7): the callee never ran, the model is
    // told, and the engagement goes on to its answer (AGX-L3).
    assert!(
        matches!(&outcome.status, EngagementStatus::Completed),
        "{:?}",
        outcome.status
    );
    assert_eq!(outcome.text.as_deref(), Some("I could not ask HR."));
    assert_eq!(host.lookups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_typed_session_call_of_an_agent_returns_its_typed_reply() {
    let host = Host::default();
    let mut assistant = OfficeAssistant::new(
        host.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    assistant.runtime_mut().reviewer = Arc::new(StaticReviewer::approving());
    assistant.set_callee_model::<agents::hr_helpdesk>(helpdesk_model());
    let mut session = assistant.session(Some(user()));
    let reply = session
        .call::<capabilities::hr_helpdesk>(AgentRequest {
            text: "How much annual leave do I get?".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.text, "You get 25 days a year (pol_leave_1).");
    assert_eq!(reply.exposes.documents_found, 1);
    assert_eq!(reply.exposes.collection, "leave");
    assert_eq!(host.lookups.load(Ordering::SeqCst), 1);

    // The caller's input restriction still applies to a typed call: a question about
    // someone's salary is refused before the callee runs.
    let refused = session
        .call::<capabilities::hr_helpdesk>(AgentRequest {
            text: "What is the salary of Bob?".into(),
        })
        .await;
    match refused {
        Err(CallError::Refused(refusal)) => {
            assert_eq!(refusal.stage, RefusalStage::InputRestriction)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(host.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_session_call_of_an_agent_without_a_model_is_refused() {
    let host = Host::default();
    let mut assistant = OfficeAssistant::new(
        host.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    assistant.runtime_mut().reviewer = Arc::new(StaticReviewer::approving());
    // No model for `hr_helpdesk`, and a session has none of its own: fail closed.
    let mut session = assistant.session(Some(user()));
    let refused = session
        .call::<capabilities::hr_helpdesk>(AgentRequest {
            text: "How much annual leave do I get?".into(),
        })
        .await;
    match refused {
        Err(CallError::Refused(refusal)) => assert_eq!(refusal.stage, RefusalStage::Invoke),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(host.lookups.load(Ordering::SeqCst), 0);
}

const VENDOR_SUPPORT: &str = "kind: openagentspec:v1/agent\nname: vendor_support\ndescription: Answers support cases.\nintent: You answer support cases.\nowner: support@vendor.example\ncapabilities:\n  lookup_case: {}\nexposes:\n  cases_opened: history._total\n";

/// A remote agent's server on the loopback interface, speaking OAS-S3.
async fn vendor_server() -> MockServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(method("GET"))
        .and(path("/agents/vendor_support"))
        .respond_with(ResponseTemplate::new(200).set_body_string(VENDOR_SUPPORT))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/engagements/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "v1", "status": {"state": "completed"}, "text": "Case 881 opened.",
            "exposes": {"cases_opened": 1}
        })))
        .mount(&server)
        .await;
    server
}

fn loopback_remote(server: &MockServer) -> RemoteAgents {
    RemoteAgents::new()
        .with_limits(RemoteLimits {
            allow_loopback_http: true,
            poll_interval: Duration::from_millis(5),
            timeout: Duration::from_secs(5),
            ..RemoteLimits::default()
        })
        .with_endpoint(
            "vendor_support",
            &format!("https://{}/agents/vendor_support", server.address()),
        )
}

fn vendor_liaison(server: &MockServer) -> VendorLiaison {
    let mut liaison = VendorLiaison::with_remote_agents(
        Host::default(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
        &loopback_remote(server),
    )
    .unwrap();
    liaison.runtime_mut().reviewer = Arc::new(StaticReviewer::approving());
    // OAS-C4: the remote agent is given the capability's static identity only.
    liaison.runtime_mut().credentials = Arc::new(
        InMemoryCredentials::new().with_static("vendor_portal", Secret::new("portal-token")),
    );
    liaison
}

fn vendor_model() -> ScriptedModel {
    ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![call(
            "vendor_support",
            json!({"text": "The projector in room 4 is broken."}),
        )]),
        ModelTurn::Text("The vendor opened case 881.".into()),
    ])
}

#[tokio::test]
async fn a_remote_agent_capability_is_called_over_oas_s3_with_the_static_credential() {
    let server = vendor_server().await;
    Mock::given(method("POST"))
        .and(path("/agents/vendor_support"))
        .and(header("authorization", "Bearer portal-token"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", "/engagements/v1"))
        .expect(1)
        .mount(&server)
        .await;
    let liaison = vendor_liaison(&server);
    let outcome = liaison
        .engage(&vendor_model(), Some(user()), "The projector is broken.")
        .await;

    assert!(outcome.completed(), "{:?}", outcome.status);
    assert_eq!(outcome.exposes.clone().unwrap().messages_sent, 1);
    let recorded = &outcome.operator_record()["recent"]["vendor_support"]["outputs"];
    assert_eq!(recorded["text"], "Case 881 opened.");
    assert_eq!(recorded["cases_opened"], 1);
}

#[tokio::test]
async fn a_remote_agent_call_refused_by_a_restriction_never_reaches_the_server() {
    let server = vendor_server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", "/engagements/v1"))
        .expect(0)
        .mount(&server)
        .await;
    let liaison = vendor_liaison(&server);
    // The input restriction wants an `@acme.example` user.
    let outsider = UserIdentity {
        id: "guest-1".into(),
        email: Some("guest@elsewhere.example".into()),
    };
    let outcome = liaison
        .engage(&vendor_model(), Some(outsider), "The projector is broken.")
        .await;

    assert!(outcome.completed(), "{:?}", outcome.status);
    assert_eq!(outcome.exposes.clone().unwrap().messages_sent, 0);
    assert_eq!(
        outcome.operator_record()["refused"][0]["stage"],
        "input_restriction"
    );
}

#[tokio::test]
async fn remote_agents_are_https_only_unless_loopback_http_is_allowed() {
    // Without `allow_loopback_http`, a loopback endpoint is reached over HTTPS, which a
    // plain-HTTP server cannot answer: the call is refused, never downgraded.
    let server = vendor_server().await;
    let strict = RemoteAgents::new().with_endpoint(
        "vendor_support",
        &format!("https://{}/agents/vendor_support", server.address()),
    );
    let mut liaison = VendorLiaison::with_remote_agents(
        Host::default(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
        &strict,
    )
    .unwrap();
    liaison.runtime_mut().reviewer = Arc::new(StaticReviewer::approving());
    // Without the static identity's credential the call is refused before any request.
    let outcome = liaison
        .engage(&vendor_model(), Some(user()), "The projector is broken.")
        .await;
    assert_eq!(
        outcome.operator_record()["refused"][0]["stage"],
        "credentials"
    );
    liaison.runtime_mut().credentials = Arc::new(
        InMemoryCredentials::new().with_static("vendor_portal", Secret::new("portal-token")),
    );
    let outcome = liaison
        .engage(&vendor_model(), Some(user()), "The projector is broken.")
        .await;
    assert_eq!(outcome.operator_record()["refused"][0]["stage"], "invoke");
    let reason = outcome.operator_record()["refused"][0]["reason"].to_string();
    assert!(!reason.contains("portal-token"), "{reason}");

    // A plain `http://` endpoint for a host that is not loopback is refused at setup.
    let public = RemoteAgents::new()
        .with_limits(RemoteLimits {
            allow_loopback_http: true,
            ..RemoteLimits::default()
        })
        .with_endpoint(
            "vendor_support",
            "http://support.example.net/agents/vendor_support",
        );
    assert!(matches!(
        VendorLiaison::with_remote_agents(
            Host::default(),
            std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
            &public
        ),
        Err(SetupError::Tool(ToolError::InvalidBinding { .. }))
    ));
}

#[test]
fn an_endpoint_for_a_name_that_is_not_a_remote_agent_is_a_setup_error() {
    let misspelt =
        RemoteAgents::new().with_endpoint("vendor_suport", "https://127.0.0.1:1/agents/x");
    assert!(matches!(
        VendorLiaison::with_remote_agents(
            Host::default(),
            std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
            &misspelt
        ),
        Err(SetupError::Tool(ToolError::InvalidBinding { .. }))
    ));
    // `hr_helpdesk` is a local agent, run as a nested engagement, not a remote one.
    let local = RemoteAgents::new().with_endpoint("hr_helpdesk", "https://127.0.0.1:1/agents/x");
    assert!(matches!(
        OfficeAssistant::with_remote_agents(
            Host::default(),
            std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
            &local
        ),
        Err(SetupError::Tool(ToolError::InvalidBinding { .. }))
    ));
}
