// hr_agent declares `hr_kb_search`, so an implementation of its tools must handle it.
struct OnlyScanner;

#[async_trait::async_trait]
impl hr::HrAgentTools for OnlyScanner {
    async fn prompt_injection_scanner(
        &self,
        _input: hr::PromptInjectionScannerInput,
    ) -> Result<hr::PromptInjectionScannerOutput, agentc_runtime::ToolError> {
        Ok(hr::PromptInjectionScannerOutput { flagged: false, score: 0.0 })
    }
}

fn main() {}
