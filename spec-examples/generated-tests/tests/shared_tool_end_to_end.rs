//! One tool, two agents, two implementations (Reading: an agent as a tool).
//!
//! `front_desk` calls `archive_clerk` and `payroll_clerk`, agents of its set that both
//! declare the tool `find_record` (one tool document). The host implements
//! `find_record` once per agent trait, differently; each clerk's call must be served by
//! its own agent's method, as the typed traits promise, and never by the other's
//! (the runtime names the calling agent in the call's context, and the generated
//! hosting binds the shared tool to a dispatcher keyed by it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[agentc::agent(spec = "tests/specs/shared_tool")]
mod desk {}

use std::sync::{Arc, Mutex};

use agentc_runtime::{ModelTurn, ScriptedModel, ToolCall, ToolError, UserIdentity};
use desk::{
    ArchiveClerkTools, FindRecordInput, FindRecordOutput, FrontDesk, FrontDeskTools,
    PayrollClerkTools, UserIdentityCall, agents,
};
use serde_json::json;

/// One served call: the trait whose method ran, the ledger the call asked for, and
/// the engagement it belonged to.
type Served = (&'static str, String, String);

/// Which implementation served which call.
#[derive(Clone, Default)]
struct Host {
    served: Arc<Mutex<Vec<Served>>>,
}

impl Host {
    fn serve(
        &self,
        implementation: &'static str,
        input: FindRecordInput,
        call: &UserIdentityCall<'_>,
    ) -> FindRecordOutput {
        self.served.lock().unwrap().push((
            implementation,
            input.ledger,
            call.engagement().to_string(),
        ));
        FindRecordOutput {
            record: format!("{implementation}:{}", input.key),
        }
    }
}

impl FrontDeskTools for Host {}

#[async_trait::async_trait]
impl ArchiveClerkTools for Host {
    async fn find_record(
        &self,
        input: FindRecordInput,
        call: UserIdentityCall<'_>,
    ) -> Result<FindRecordOutput, ToolError> {
        Ok(self.serve("archive", input, &call))
    }
}

#[async_trait::async_trait]
impl PayrollClerkTools for Host {
    async fn find_record(
        &self,
        input: FindRecordInput,
        call: UserIdentityCall<'_>,
    ) -> Result<FindRecordOutput, ToolError> {
        Ok(self.serve("payroll", input, &call))
    }
}

fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: Some(format!("{name}-1")),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn clerk_model(ledger: &str) -> Arc<ScriptedModel> {
    Arc::new(ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![call(
            "find_record",
            json!({"ledger": ledger, "key": "r-1"}),
        )]),
        ModelTurn::Text(format!("found in {ledger}")),
    ]))
}

#[tokio::test]
async fn a_tool_two_agents_declare_is_served_by_the_calling_agents_own_method() {
    let host = Host::default();
    let mut desk = FrontDesk::new(
        host.clone(),
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    desk.set_callee_model::<agents::archive_clerk>(clerk_model("archive"));
    desk.set_callee_model::<agents::payroll_clerk>(clerk_model("payroll"));
    let model = ScriptedModel::new(vec![
        ModelTurn::ToolCalls(vec![
            call(
                "archive_clerk",
                json!({"text": "record r-1 in the archive"}),
            ),
            call("payroll_clerk", json!({"text": "record r-1 in payroll"})),
        ]),
        ModelTurn::Text("Both clerks answered.".into()),
    ]);
    let outcome = desk
        .engage(&model, Some(UserIdentity::new("emp-7")), "find r-1")
        .await;
    assert!(outcome.completed(), "{:?}", outcome.status);

    let served = host.served.lock().unwrap().clone();
    let by_implementation: Vec<(&str, &str)> = served
        .iter()
        .map(|(implementation, ledger, _)| (*implementation, ledger.as_str()))
        .collect();
    // Each clerk's call ran its own agent's method: the payroll clerk's call is not
    // served by the archive clerk's implementation (the first declaring agent).
    assert_eq!(
        by_implementation,
        vec![("archive", "archive"), ("payroll", "payroll")]
    );
    // And each ran inside its own clerk's nested engagement.
    assert!(served[0].2.starts_with("archive_clerk-"), "{served:?}");
    assert!(served[1].2.starts_with("payroll_clerk-"), "{served:?}");
}
