// `prompt_injection_scanner` is a tool of the set (hr_agent's guardrail), but not one of
// hr_agent's capabilities, so hr_agent cannot call it.
async fn scan(agent: &hr::HrAgent) {
    let mut session = agent.session(None);
    let _ = session
        .call::<hr::capabilities::prompt_injection_scanner>(hr::PromptInjectionScannerInput {
            text: "hello".into(),
        })
        .await;
}

fn main() {
    let _ = scan;
}
