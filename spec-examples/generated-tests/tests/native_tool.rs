//! `#[agentc::tool]`: a native tool declared from Rust gets a tool document that
//! `agentc check` accepts (schemas from the Rust types) and a backend that decodes the
//! untrusted input into its typed argument.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_runtime::{Identity, ToolBackend, ToolContext, ToolError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, schemars::JsonSchema)]
struct LookupInput {
    collection: String,
    query: String,
}

#[derive(Serialize, schemars::JsonSchema)]
struct LookupOutput {
    pages: Vec<String>,
}

/// Finds policy documents in a collection.
#[agentc::tool]
async fn lookup_policy_doc(input: LookupInput) -> Result<LookupOutput, ToolError> {
    if input.collection.is_empty() {
        return Err(ToolError::Failed("empty collection".to_string()));
    }
    Ok(LookupOutput {
        pages: vec![format!("{}: {}", input.collection, input.query)],
    })
}

fn context() -> ToolContext {
    ToolContext {
        engagement: "e1".into(),
        agent: "caller".into(),
        identity: Identity::Anonymous,
        credential: None,
        idempotency_key: None,
    }
}

#[test]
fn the_generated_tool_document_passes_agentc_check_and_an_agent_can_use_it() {
    let document = LookupPolicyDocTool::document();
    assert_eq!(document["name"], "lookup_policy_doc");
    assert_eq!(
        document["description"],
        "Finds policy documents in a collection."
    );
    let agent = "kind: openagentspec:v1/agent\nname: policy_agent\ndescription: Answers policy questions.\nintent: You answer policy questions.\nowner: policy@acme.example\ncapabilities:\n  lookup_policy_doc:\n    input_restriction:\n      assertion: recent.lookup_policy_doc.inputs.collection.startsWith(\"hr/\")\n";
    let set = agentc_compiler::check_set(
        &[
            agentc_compiler::SourceInput {
                name: "tool.json".into(),
                bytes: serde_json::to_vec(&document).unwrap(),
            },
            agentc_compiler::SourceInput {
                name: "agent.yaml".into(),
                bytes: agent.as_bytes().to_vec(),
            },
        ],
        &agentc_compiler::CheckOptions::default(),
    );
    assert_eq!(
        set.error_count(),
        0,
        "{}",
        set.view().render_text(&set.diagnostics)
    );
    // A misspelt field is caught against the schema generated from the Rust type.
    let misspelt = agent.replace("inputs.collection", "inputs.colection");
    let set = agentc_compiler::check_set(
        &[
            agentc_compiler::SourceInput {
                name: "tool.json".into(),
                bytes: serde_json::to_vec(&document).unwrap(),
            },
            agentc_compiler::SourceInput {
                name: "agent.yaml".into(),
                bytes: misspelt.into_bytes(),
            },
        ],
        &agentc_compiler::CheckOptions::default(),
    );
    assert!(set.diagnostics.iter().any(|d| d.code.as_str() == "E0507"));
}

#[tokio::test]
async fn the_backend_decodes_typed_input_and_refuses_the_rest() {
    let tool = LookupPolicyDocTool;
    let output = tool
        .invoke(
            &serde_json::json!({"collection": "hr/leave", "query": "parental"}),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(output, serde_json::json!({"pages": ["hr/leave: parental"]}));
    let refused = tool
        .invoke(&serde_json::json!({"collection": 7}), &context())
        .await;
    assert!(
        matches!(refused, Err(ToolError::InvalidInput { .. })),
        "{refused:?}"
    );
    let failed = tool
        .invoke(
            &serde_json::json!({"collection": "", "query": "q"}),
            &context(),
        )
        .await;
    assert!(matches!(failed, Err(ToolError::Failed(_))));
}
