//! A user's crate outside the agentc workspace, with `agentc` (and tokio) as its only
//! dependencies: the attribute macro expands the HR spec, and an engagement runs with
//! its rules enforced. Built and run by `cargo xtask outside` (part of `cargo xtask ci`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentc::{AuditLog, ModelTurn, ScriptedModel, ToolCall, ToolError, UserIdentity};

#[agentc::agent(spec = "specs")]
mod hr {}

use hr::{
    HrAgent, HrAgentTools, HrKbSearchInput, HrKbSearchOutput, PromptInjectionScannerInput,
    PromptInjectionScannerOutput, UserIdentityCall,
};

#[derive(Clone, Default)]
struct Knowledge {
    searches: Arc<AtomicUsize>,
}

#[agentc::async_trait]
impl HrAgentTools for Knowledge {
    async fn hr_kb_search(
        &self,
        _input: HrKbSearchInput,
        _call: UserIdentityCall<'_>,
    ) -> Result<HrKbSearchOutput, ToolError> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        Ok(HrKbSearchOutput { results: vec![] })
    }

    async fn prompt_injection_scanner(
        &self,
        _input: PromptInjectionScannerInput,
    ) -> Result<PromptInjectionScannerOutput, ToolError> {
        Ok(PromptInjectionScannerOutput { flagged: false, score: 0.0 })
    }
}

fn search(id: &str, knowledge_base: &str) -> ToolCall {
    ToolCall {
        id: Some(id.into()),
        name: "hr_kb_search".into(),
        arguments: agentc::serde_json::json!({"knowledge_base_id": knowledge_base, "query": "leave"})
            .into(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let tools = Knowledge::default();
    let agent = HrAgent::new(tools.clone(), Arc::new(AuditLog::discard()))
        .map_err(|error| format!("{error:?}"))?;
    let model = ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![search("1", "acme/finance/payroll")]),
        ModelTurn::ToolCalls(vec![search("2", "acme/hr/handbook")]),
        ModelTurn::Text("16 weeks.".into()),
    ]);
    let outcome = agent
        .engage(&model, Some(UserIdentity::new("emp-42")), "How long is leave?")
        .await;
    let searches = tools.searches.load(Ordering::SeqCst);
    // The search outside `acme/hr/` is refused by the compiled restriction.
    if !outcome.completed() || searches != 1 {
        return Err(format!("expected one search to pass, got {searches}: {:?}", outcome.status));
    }
    println!("outside-workspace crate: one search refused, one allowed");
    Ok(())
}
