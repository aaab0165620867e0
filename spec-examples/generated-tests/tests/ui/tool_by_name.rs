// The runtime offers no call-a-tool-by-name path to code that holds a generated agent:
// a registered tool's backend is private to the runtime, and the runtime's tools are
// bound when it is made, never swapped after.
fn by_name(agent: &mut hr::HrAgent) {
    let tool = agent.runtime().tools().get("hr_kb_search").unwrap();
    let _ = tool.backend();
    agent.runtime_mut().tools = agentc_runtime::ToolRegistry::default();
}

fn main() {}
