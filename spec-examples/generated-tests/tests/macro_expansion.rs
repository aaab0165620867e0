//! The proc macro expands to the same agent code as `agentc build`: the HR example used
//! through `#[agentc::agent]` has the same typed surface as the generated crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[agentc::agent(spec = "../hr")]
mod hr_agents {}

use agentc_runtime::ToolError;
use hr_agents::{
    HrAgent, HrAgentTools, HrKbSearchInput, HrKbSearchOutput, PromptInjectionScannerInput,
    PromptInjectionScannerOutput, UserIdentityCall,
};

struct NoResults;

#[async_trait::async_trait]
impl HrAgentTools for NoResults {
    async fn hr_kb_search(
        &self,
        _input: HrKbSearchInput,
        _call: UserIdentityCall<'_>,
    ) -> Result<HrKbSearchOutput, ToolError> {
        Ok(HrKbSearchOutput { results: vec![] })
    }

    async fn prompt_injection_scanner(
        &self,
        _input: PromptInjectionScannerInput,
    ) -> Result<PromptInjectionScannerOutput, ToolError> {
        Ok(PromptInjectionScannerOutput {
            flagged: false,
            score: 0.0,
        })
    }
}

#[test]
fn the_macro_expands_the_hr_example() {
    let agent = HrAgent::new(
        NoResults,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    assert_eq!(agent.spec().name, "hr_agent");
    assert!(agent.document().contains("short_circuit: 3"));
}
