// `hr_kb_search` takes an `HrKbSearchInput`; any other input is a type error.
async fn search(agent: &hr::HrAgent) {
    let mut session = agent.session(None);
    let _ = session
        .call::<hr::capabilities::hr_kb_search>(hr::PromptInjectionScannerInput {
            text: "acme/hr/handbook".into(),
        })
        .await;
}

fn main() {
    let _ = search;
}
