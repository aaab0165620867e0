//! The generated HR crate, end to end: a scripted model asks for a knowledge base outside
//! `acme/hr/` and then one inside it; the first call is denied by the compiled input
//! restriction and never reaches the tool, the second is allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentc_runtime::{ModelTurn, RefusalStage, ScriptedModel, ToolCall, ToolError, UserIdentity};
use hr::{
    CallError, HrAgent, HrAgentCall, HrAgentTools, HrKbSearchInput, HrKbSearchOutput,
    HrKbSearchOutputResultsItem, ParseCallError, PromptInjectionScannerInput,
    PromptInjectionScannerOutput, UserIdentityCall, capabilities,
};
use serde_json::json;

/// A mock knowledge base that counts the calls that reach it.
#[derive(Clone, Default)]
struct MockKb {
    searches: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl HrAgentTools for MockKb {
    async fn hr_kb_search(
        &self,
        input: HrKbSearchInput,
        call: UserIdentityCall<'_>,
    ) -> Result<HrKbSearchOutput, ToolError> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        assert!(input.knowledge_base_id.starts_with("acme/hr/"));
        assert_eq!(call.user(), Some("emp-42"));
        Ok(HrKbSearchOutput {
            results: vec![HrKbSearchOutputResultsItem {
                title: "Parental leave".into(),
                snippet: "Employees get 16 weeks.".into(),
                url: "https://kb.acme.example/hr/parental-leave".into(),
            }],
        })
    }

    async fn prompt_injection_scanner(
        &self,
        _input: PromptInjectionScannerInput,
    ) -> Result<PromptInjectionScannerOutput, ToolError> {
        Ok(PromptInjectionScannerOutput {
            flagged: false,
            score: 0.1,
        })
    }
}

fn search(id: &str, knowledge_base: &str) -> ToolCall {
    ToolCall {
        id: Some(id.into()),
        name: "hr_kb_search".into(),
        arguments: json!({"knowledge_base_id": knowledge_base, "query": "parental leave"}).into(),
    }
}

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_search_outside_the_hr_knowledge_base_never_reaches_the_tool() {
    let tools = MockKb::default();
    // The audit trail goes where the host says (there is no default destination).
    let trail = SharedBuffer::default();
    let audit = agentc_runtime::AuditLog::new(Box::new(trail.clone()));
    let agent = HrAgent::new(tools.clone(), std::sync::Arc::new(audit)).unwrap();
    let model = ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![search("1", "acme/finance/payroll")]),
        ModelTurn::ToolCalls(vec![search("2", "acme/hr/handbook")]),
        ModelTurn::Text("You get 16 weeks of parental leave.".into()),
    ]);
    let outcome = agent
        .engage(
            &model,
            Some(UserIdentity::new("emp-42")),
            "How long is parental leave?",
        )
        .await;

    assert!(outcome.completed(), "{:?}", outcome.status);
    // Only the call inside `acme/hr/` reached the tool.
    assert_eq!(tools.searches.load(Ordering::SeqCst), 1);
    let refused = &outcome.operator_record()["refused"];
    assert_eq!(refused.as_array().unwrap().len(), 1);
    assert_eq!(refused[0]["stage"], "input_restriction");
    assert_eq!(
        refused[0]["inputs"]["knowledge_base_id"],
        "acme/finance/payroll"
    );
    // AGX-L3: the compiled check explains its refusal through the interpreter behind
    // it: the failing conjunct and where the spec writes the rule, never the value.
    assert_eq!(
        refused[0]["reason"],
        "assertion is false: conjunct 1 of 2 is false, \
         `recent.hr_kb_search.inputs.knowledge_base_id.startsWith(\"acme/hr/\")` \
         (at hr_agent.yaml:21:9)"
    );

    let exposes = outcome.exposes.expect("typed exposes");
    assert_eq!(exposes.searches, 1);
    assert_eq!(exposes.last_kb, "acme/hr/handbook");
    assert_eq!(exposes.asked_by, "emp-42");

    let written = String::from_utf8(trail.0.lock().unwrap().clone()).unwrap();
    let chain = agentc_runtime::audit::verify(written.as_bytes()).unwrap();
    assert!(chain.entries >= 3, "{written}");
    assert!(written.contains("\"action\":\"denied\""), "{written}");
}

#[tokio::test]
async fn typed_session_calls_are_enforced_too() {
    let tools = MockKb::default();
    let agent = HrAgent::new(
        tools.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    let mut session = agent.session(Some(UserIdentity::new("emp-42")));
    let denied = session
        .call::<capabilities::hr_kb_search>(HrKbSearchInput {
            knowledge_base_id: "acme/legal/contracts".into(),
            query: "nda".into(),
        })
        .await;
    match denied {
        Err(CallError::Refused(refusal)) => {
            assert_eq!(refusal.stage, RefusalStage::InputRestriction)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(tools.searches.load(Ordering::SeqCst), 0);
    let allowed = session
        .call::<capabilities::hr_kb_search>(HrKbSearchInput {
            knowledge_base_id: "acme/hr/benefits".into(),
            query: "dental".into(),
        })
        .await
        .unwrap();
    assert_eq!(allowed.results.len(), 1);
    assert_eq!(tools.searches.load(Ordering::SeqCst), 1);
}

#[test]
fn the_model_s_calls_parse_into_the_closed_enum() {
    let parsed = HrAgentCall::parse(
        "hr_kb_search",
        &json!({"knowledge_base_id": "acme/hr/x", "query": "q"}),
    )
    .unwrap();
    assert_eq!(parsed.name(), "hr_kb_search");
    assert!(matches!(
        HrAgentCall::parse("create_event", &json!({})),
        Err(ParseCallError::Undeclared { .. })
    ));
    assert!(matches!(
        HrAgentCall::parse("hr_kb_search", &json!({"query": 3})),
        Err(ParseCallError::BadArguments { .. })
    ));
    assert!(
        HrAgent::new(
            MockKb::default(),
            std::sync::Arc::new(agentc_runtime::AuditLog::discard())
        )
        .unwrap()
        .document()
        .contains("name: hr_agent")
    );
}
