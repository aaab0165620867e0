//! What the suite's own tests share: a tool document that declares everything the seven
//! tests need, so that each test applies to it and can be shown to pass and to fail.

#![allow(dead_code)]

use agentc_compiler::SourceInput;
use agentc_conformance::{ToolUnderTest, load_tools};

/// A ticket search tool with docs, bearer auth, a small rate limit, an example, a CRUD
/// resource (at another path than the operation, so each test touches its own routes)
/// and a known pitfall. `{url}` is the binding URL.
pub const TICKET_TOOL: &str = r#"kind: openagentspec:v1/tool
name: ticket_search
description: Searches support tickets.
input:
  type: object
  properties:
    query: {type: string}
    limit: {type: integer, minimum: 1}
  required: [query]
  additionalProperties: false
output:
  type: object
  properties:
    tickets:
      type: array
      items:
        type: object
        properties:
          id: {type: string}
          title: {type: string}
        required: [id, title]
  required: [tickets]
binding:
  http: {method: POST, url: "{url}"}
auth: {scheme: bearer}
conformance:
  credential_env: TICKETS_TOKEN
  docs: {openapi: /openapi.json, llms_txt: /llms.txt}
  rate_limit: {requests: 40, per_seconds: 1}
  max_request_bytes: 4096
  examples:
    - name: printer
      input: {query: printer, limit: 5}
      output:
        tickets:
          - {id: T-1, title: Printer jams}
  crud:
    name: ticket
    path: /tickets
    id_field: id
    schema:
      type: object
      properties:
        id: {type: string}
        title: {type: string}
        priority: {type: string, enum: [low, high]}
      required: [id, title, priority]
    create: {title: Printer jams, priority: low}
    update: {title: Printer jams, priority: high}
  pitfalls:
    - name: wildcard_query
      description: A bare `*` query is refused instead of returning every ticket.
      request:
        method: POST
        path: /tickets/search
        body: {query: "*"}
      expect:
        status: 400
        body: {error: {code: query_too_broad}}
"#;

/// The ticket tool document with its binding at `url`.
pub fn ticket_tool_yaml(url: &str) -> String {
    TICKET_TOOL.replace("{url}", url)
}

/// Loads one tool document.
pub fn load_one(yaml: &str) -> ToolUnderTest {
    let tools = load_tools(&[SourceInput {
        name: "tickets.yaml".into(),
        bytes: yaml.as_bytes().to_vec(),
    }])
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(tools.len(), 1);
    tools.into_iter().next().unwrap_or_else(|| unreachable!())
}
