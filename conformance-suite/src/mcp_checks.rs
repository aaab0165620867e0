//! The seven tests read for a tool on an MCP server (AGX-M5), side by side with their
//! HTTP reading in `checks.rs`:
//!
//! 1. **Discovery**: `tools/list` lists the tool, its definition matches the document's
//!    pin (AGX-M2), and the server's own input schema accepts the document's examples.
//! 2. **Auth** (streamable HTTP only): an `initialize` without a credential or with a
//!    wrong one is refused with 401/403, and one with the valid credential is accepted.
//!    A stdio server is started by its caller and has no caller credential: skipped.
//! 3. **CRUD**: skipped; it is read on an HTTP resource path, which an MCP tool has not.
//! 4. **Error**: a wrong type, a missing required field and an unknown tool each get a
//!    JSON-RPC error or an `isError` result, and the server still answers `ping` after
//!    each and `tools/list` at the end (never a crash or a hang).
//! 5. **Rate limit**: a burst of `requests + 1` calls gets a tool error (`isError` or a
//!    JSON-RPC error) after at least one success, and a call succeeds again after the
//!    window (`per_seconds`).
//! 6. **Pitfall**: each recorded `tools/call` (`call`) is replayed; whether its result is
//!    an error, and its body, are as `expect` says.
//! 7. **Skill**: each example's call succeeds, and its output (the structured content,
//!    or the text mapped as the runtime maps it) matches the output schema.
//!
//! Each test opens its own session (a stdio server is started for it), so a crash in
//! one cannot pass or fail another. Evidence never shows the credential.

use std::time::Duration;

use agentc_mcp::{McpLimits, McpSession, RawCallOutcome};
use agentc_runtime::{AuthScheme, McpTransport, Secret};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::checks::{Tally, invalid_inputs, no_writes, plain_evidence, valid_input};
use crate::report::{Evidence, Outcome};
use crate::schema::{contains, truncate, validate};
use crate::tool::ToolUnderTest;

/// What every MCP test of one tool is given.
pub(crate) struct McpContext<'a> {
    pub tool: &'a ToolUnderTest,
    /// Where the server is: the mock's URL, or the binding's (live).
    pub transport: McpTransport,
    pub auth: AuthScheme,
    pub secret: Option<Secret>,
    /// Why no valid credential is available, for a scheme that needs one.
    pub missing_secret: Option<String>,
    /// The tool's name on the server.
    pub server_tool: String,
    pub pin: Option<String>,
    /// How long one request may take before it counts as a hang.
    pub timeout: Duration,
    /// The longest wait the rate-limit test accepts.
    pub max_retry_after: Duration,
    /// Whether calls that can change the service may be sent.
    pub writes_allowed: bool,
    /// How many calls that may have changed the service succeeded.
    pub writes: std::sync::atomic::AtomicUsize,
}

/// A call's result as the pitfall and skill tests judge it.
struct CallBody {
    is_error: bool,
    /// The output (success), or the error's text (a JSON object when it is one).
    body: Value,
    /// Every text the server sent, for `body_excludes`.
    text: String,
}

impl McpContext<'_> {
    /// The skip of a test that calls the tool, in a live run without `--allow-writes`
    /// of a tool not marked `read_only`: any MCP call may change the service.
    fn calls_forbidden(&self) -> Option<Outcome> {
        (!self.writes_allowed && self.tool.operation_writes()).then(|| {
            no_writes(&format!(
                "call `{}`, and an MCP call may change the service (mark the tool `read_only: true` if it does not)",
                self.server_tool
            ))
        })
    }

    fn needs_credential(&self) -> bool {
        matches!(self.transport, McpTransport::Http { .. }) && self.auth != AuthScheme::None
    }

    /// Fails `tally` when a credential is needed and none is available.
    fn require_credential(&self, tally: &mut Tally, check: &str) -> bool {
        match &self.missing_secret {
            Some(reason) if self.needs_credential() => {
                tally.fail(plain_evidence(check, reason.clone()));
                false
            }
            _ => true,
        }
    }

    fn limits(&self) -> McpLimits {
        McpLimits {
            connect_timeout: self.timeout,
            ..McpLimits::default()
        }
    }

    /// A session with the valid credential.
    async fn open(&self) -> Result<McpSession, String> {
        let credential = if self.needs_credential() {
            self.secret.as_ref()
        } else {
            None
        };
        McpSession::open(&self.transport, &self.auth, credential, self.limits())
            .await
            .map_err(|error| self.redact(&error))
    }

    /// A session, or the failure that ends the test.
    async fn open_or_fail(&self, tally: &mut Tally, check: &str) -> Option<McpSession> {
        match self.open().await {
            Ok(session) => Some(session),
            Err(error) => {
                tally.fail(plain_evidence(
                    check,
                    format!("no MCP session could be opened: {error}"),
                ));
                None
            }
        }
    }

    fn redact(&self, text: &str) -> String {
        crate::redact::redact(text, self.secret.as_ref()).0
    }

    /// An excerpt of what the server sent, redacted before it is cut.
    fn excerpt(&self, text: &str) -> String {
        crate::redact::excerpt(text, self.secret.as_ref(), 200)
    }

    /// How a call is shown in evidence.
    fn shown_call(&self, name: &str, arguments: &Value) -> String {
        format!(
            "tools/call `{name}` {}",
            truncate(&self.redact(&arguments.to_string()), 160)
        )
    }

    fn evidence(&self, check: &str, call: Option<String>, detail: &str) -> Evidence {
        Evidence {
            check: check.to_string(),
            request: call,
            status: None,
            detail: truncate(&self.redact(detail), 400),
            schema_location: None,
        }
    }

    async fn call(&self, session: &McpSession, name: &str, arguments: &Value) -> RawCallOutcome {
        let arguments = arguments.as_object().cloned().unwrap_or_default();
        let outcome = session.call_tool(name, arguments, self.timeout).await;
        let succeeded =
            matches!(&outcome, RawCallOutcome::Result(result) if result.is_error != Some(true));
        if succeeded && name == self.server_tool && self.tool.operation_writes() {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        outcome
    }

    /// A raw outcome as error flag, body and text; `None` with the reason when there
    /// was no answer.
    fn judge(&self, outcome: RawCallOutcome) -> Result<CallBody, String> {
        match outcome {
            RawCallOutcome::NoAnswer(reason) => Err(reason),
            RawCallOutcome::JsonRpcError { code, message } => Ok(CallBody {
                is_error: true,
                text: message.clone(),
                body: json!({"code": code, "message": message}),
            }),
            RawCallOutcome::Result(result) => {
                let mut text = result
                    .content
                    .iter()
                    .filter_map(|block| block.as_text().map(|text| text.text.clone()))
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Some(structured) = &result.structured_content {
                    text.push('\n');
                    text.push_str(&structured.to_string());
                }
                if result.is_error == Some(true) {
                    let body = serde_json::from_str::<Value>(text.trim())
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::String(text.clone()));
                    return Ok(CallBody {
                        is_error: true,
                        body,
                        text,
                    });
                }
                match agentc_mcp::output::tool_output(result, &self.tool.document.output.value) {
                    Ok(body) => Ok(CallBody {
                        is_error: false,
                        body,
                        text,
                    }),
                    Err(error) => Err(format!("the result is not an output: {error}")),
                }
            }
        }
    }
}

/// Test 1, Discovery: the tool is listed, as pinned, and accepts the examples.
pub(crate) async fn discovery(context: &McpContext<'_>) -> Outcome {
    let mut tally = Tally::default();
    let check = format!("tools/list lists `{}`", context.server_tool);
    if !context.require_credential(&mut tally, &check) {
        return tally.outcome();
    }
    let Some(session) = context.open_or_fail(&mut tally, &check).await else {
        return tally.outcome();
    };
    let listed = session.list_tools().await;
    session.close().await;
    let tools = match listed {
        Ok(tools) => tools,
        Err(error) => {
            tally.fail(context.evidence(&check, None, &format!("tools/list failed: {error}")));
            return tally.outcome();
        }
    };
    let Some(found) = tools.iter().find(|tool| tool.name == context.server_tool) else {
        let names: Vec<&str> = tools
            .iter()
            .take(20)
            .map(|tool| tool.name.as_ref())
            .collect();
        tally.fail(context.evidence(
            &check,
            None,
            &format!(
                "the server lists no such tool (it lists: {})",
                names.join(", ")
            ),
        ));
        return tally.outcome();
    };
    tally.pass(check);
    let definition = agentc_mcp::pin::ToolDefinition::from_listed(found);
    match &context.pin {
        Some(pin) => {
            let check = "its definition matches the document's pin (AGX-M2)";
            if definition.pin() == *pin {
                tally.pass(check);
            } else {
                let document = &context.tool.document;
                let mut differs = Vec::new();
                if definition.description != document.description.value {
                    differs.push("description");
                }
                if definition.input_schema != document.input.value {
                    differs.push("input schema");
                }
                if definition
                    .output_schema
                    .as_ref()
                    .is_some_and(|output| *output != document.output.value)
                {
                    differs.push("output schema");
                }
                let which = if differs.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it differs from the document in its {})",
                        differs.join(", ")
                    )
                };
                tally.fail(context.evidence(
                    check,
                    None,
                    &format!(
                        "the server's definition digests to {}, not {pin}{which}: review the change and re-import the tool (`agentc import mcp`)",
                        definition.pin()
                    ),
                ));
            }
        }
        None => tally.pass("the tool is not pinned (W0605): its definition was not compared"),
    }
    let server_input = Value::Object((*found.input_schema).clone());
    match jsonschema::validator_for(&server_input) {
        Err(error) => tally.fail(context.evidence(
            "the server's input schema is a JSON Schema",
            None,
            &error.to_string(),
        )),
        Ok(validator) => {
            for (index, example) in context.tool.examples().iter().enumerate() {
                let label = example.name.as_ref().map_or_else(
                    || format!("#{}", index + 1),
                    |name| format!("`{}`", name.value),
                );
                let check = format!("the server's input schema accepts example {label}");
                match validator.iter_errors(&example.input.value).next() {
                    None => tally.pass(check),
                    Some(error) => tally.fail(context.evidence(&check, None, &error.to_string())),
                }
            }
        }
    }
    tally.outcome()
}

/// Test 2, Auth: `initialize` without a credential, or with a wrong one, is refused
/// with 401/403; with the valid credential it is accepted. Sent as plain HTTP so that
/// the status itself is the evidence.
pub(crate) async fn auth(context: &McpContext<'_>) -> Outcome {
    let url = match &context.transport {
        McpTransport::Stdio { .. } => {
            return Outcome::Skip {
                reason:
                    "a stdio server is started by its caller and has no caller credential to test"
                        .to_string(),
            };
        }
        McpTransport::Http { url } => url.clone(),
    };
    if context.auth == AuthScheme::None {
        return Outcome::Skip {
            reason: "the tool declares no auth scheme (`auth: none` or no `auth`), so nothing is protected".to_string(),
        };
    }
    let mut tally = Tally::default();
    if !context.require_credential(&mut tally, "a valid credential is accepted") {
        return tally.outcome();
    }
    let client = match reqwest::Client::builder()
        .timeout(context.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tally.fail(plain_evidence("an HTTP client", error.to_string()));
            return tally.outcome();
        }
    };
    let wrong = Secret::new("agentc-conformance-wrong-credential-7f3a".to_string());
    let cases: [(&str, Option<&Secret>, bool); 3] = [
        ("`initialize` without a credential is refused", None, false),
        (
            "`initialize` with a wrong credential is refused",
            Some(&wrong),
            false,
        ),
        (
            "`initialize` with the valid credential is accepted",
            context.secret.as_ref(),
            true,
        ),
    ];
    for (check, credential, accepted) in cases {
        let request = initialize_request(&client, &url, &context.auth, credential);
        let shown = format!(
            "POST {} initialize ({})",
            agentc_mcp::server_label(&context.transport).trim_matches('`'),
            match (credential, accepted) {
                (None, _) => "no credential",
                (Some(_), false) => "a wrong credential",
                (Some(_), true) => "the valid credential",
            }
        );
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tally.fail(context.evidence(check, Some(shown), &format!("no answer: {error}")));
                continue;
            }
        };
        let status = response.status().as_u16();
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
        {
            // End the session the probe opened, as a polite client does.
            let _ = authenticated(
                client.delete(&url).header("mcp-session-id", session),
                &context.auth,
                credential,
            )
            .send()
            .await;
        }
        let passed = if accepted {
            (200..300).contains(&status)
        } else {
            matches!(status, 401 | 403)
        };
        if passed {
            tally.pass(format!("{check} ({status})"));
        } else {
            let mut evidence = context.evidence(
                check,
                Some(shown),
                if accepted {
                    "expected 2xx"
                } else {
                    "expected 401 or 403"
                },
            );
            evidence.status = Some(status);
            tally.fail(evidence);
        }
    }
    tally.outcome()
}

fn authenticated(
    request: reqwest::RequestBuilder,
    scheme: &AuthScheme,
    credential: Option<&Secret>,
) -> reqwest::RequestBuilder {
    match (scheme, credential) {
        (_, None) | (AuthScheme::None, _) => request,
        (AuthScheme::ApiKey { header }, Some(secret)) => {
            request.header(header.as_str(), secret.expose())
        }
        (AuthScheme::Basic, Some(secret)) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(secret.expose());
            request.header("authorization", format!("Basic {encoded}"))
        }
        (AuthScheme::Bearer | AuthScheme::OAuth2, Some(secret)) => {
            request.header("authorization", format!("Bearer {}", secret.expose()))
        }
    }
}

fn initialize_request(
    client: &reqwest::Client,
    url: &str,
    scheme: &AuthScheme,
    credential: Option<&Secret>,
) -> reqwest::RequestBuilder {
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "agentc-conform", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    authenticated(
        client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string()),
        scheme,
        credential,
    )
}

/// Test 3, CRUD: read on an HTTP resource, which an MCP tool has not.
pub(crate) fn crud() -> Outcome {
    Outcome::Skip {
        reason: "the CRUD test is read on an HTTP resource path (`conformance.crud`); an MCP tool has none".to_string(),
    }
}

/// Test 4, Error: invalid arguments and an unknown tool get an error, never a crash.
pub(crate) async fn error(context: &McpContext<'_>) -> Outcome {
    if let Some(skip) = context.calls_forbidden() {
        return skip;
    }
    let mut tally = Tally::default();
    let check = "invalid arguments get an error";
    if !context.require_credential(&mut tally, check) {
        return tally.outcome();
    }
    let (input, _) = valid_input(context.tool);
    let invalid = invalid_inputs(&context.tool.document.input.value, &input, false, &[]);
    let mut cases: Vec<(String, String, Value)> = Vec::new();
    for (what, arguments) in [invalid.wrong_type, invalid.missing_field]
        .into_iter()
        .flatten()
    {
        cases.push((what, context.server_tool.clone(), arguments));
    }
    cases.push((
        "an unknown tool".to_string(),
        "agentc_conformance_no_such_tool".to_string(),
        input.clone(),
    ));
    let Some(mut session) = context.open_or_fail(&mut tally, check).await else {
        return tally.outcome();
    };
    for (what, name, arguments) in cases {
        let check = format!("{what} gets a JSON-RPC error or an `isError` result");
        let shown = context.shown_call(&name, &arguments);
        match context.call(&session, &name, &arguments).await {
            RawCallOutcome::JsonRpcError { code, .. } => {
                tally.pass(format!("{check} (JSON-RPC error {code})"));
            }
            RawCallOutcome::Result(result) if result.is_error == Some(true) => {
                tally.pass(format!("{check} (isError)"));
            }
            RawCallOutcome::Result(_) => tally.fail(context.evidence(
                &check,
                Some(shown),
                "the server answered with a successful result: invalid input was accepted",
            )),
            RawCallOutcome::NoAnswer(reason) => {
                tally.fail(context.evidence(&check, Some(shown), &format!("no answer: {reason}")));
            }
        }
        let alive = format!("the server still answers `ping` after {what}");
        match session.ping(context.timeout).await {
            Ok(()) if session.is_open() => tally.pass(alive),
            Ok(()) => tally.fail(context.evidence(&alive, None, "the connection closed")),
            Err(reason) => {
                tally.fail(context.evidence(&alive, None, &format!("no answer: {reason}")));
                session.close().await;
                match context.open_or_fail(&mut tally, &alive).await {
                    Some(reopened) => session = reopened,
                    None => return tally.outcome(),
                }
            }
        }
    }
    let check = "tools/list still answers after the bad calls";
    match session.list_tools().await {
        Ok(_) => tally.pass(check),
        Err(error) => tally.fail(context.evidence(check, None, &error)),
    }
    session.close().await;
    tally.outcome()
}

/// Test 5, Rate limit: a burst past the declared limit gets a tool error, and a call
/// after the window succeeds.
pub(crate) async fn rate_limit(context: &McpContext<'_>) -> Outcome {
    let Some(limit) = context
        .tool
        .conformance()
        .and_then(|c| c.rate_limit.as_ref())
    else {
        return Outcome::Skip {
            reason: "the tool document declares no rate limit (`conformance.rate_limit`)"
                .to_string(),
        };
    };
    const MAX_BURST: u64 = 1000;
    if limit.requests.value >= MAX_BURST {
        return Outcome::Skip {
            reason: format!(
                "the declared limit ({} requests) is more than this suite bursts ({MAX_BURST})",
                limit.requests.value
            ),
        };
    }
    if let Some(skip) = context.calls_forbidden() {
        return skip;
    }
    let window = Duration::from_secs(limit.per_seconds.value);
    if window > context.max_retry_after {
        return Outcome::Skip {
            reason: format!(
                "the declared window ({} s) is longer than this run waits ({} s)",
                window.as_secs(),
                context.max_retry_after.as_secs()
            ),
        };
    }
    let mut tally = Tally::default();
    let check = format!(
        "a burst of {} calls (limit {} per {} s) gets a tool error past the limit",
        limit.requests.value + 1,
        limit.requests.value,
        limit.per_seconds.value
    );
    if !context.require_credential(&mut tally, &check) {
        return tally.outcome();
    }
    let Some(session) = context.open_or_fail(&mut tally, &check).await else {
        return tally.outcome();
    };
    let (input, _) = valid_input(context.tool);
    let shown = context.shown_call(&context.server_tool, &input);
    let started = Instant::now();
    let mut successes = 0_u64;
    let mut limited = false;
    for _ in 0..=limit.requests.value {
        match context.call(&session, &context.server_tool, &input).await {
            RawCallOutcome::Result(result) if result.is_error != Some(true) => successes += 1,
            RawCallOutcome::Result(_) | RawCallOutcome::JsonRpcError { .. } if successes > 0 => {
                limited = true;
                break;
            }
            RawCallOutcome::Result(_) | RawCallOutcome::JsonRpcError { .. } => {
                tally.fail(context.evidence(
                    &check,
                    Some(shown),
                    "the first call of the burst already failed: a valid call must succeed before the limit",
                ));
                session.close().await;
                return tally.outcome();
            }
            RawCallOutcome::NoAnswer(reason) => {
                tally.fail(context.evidence(
                    &check,
                    Some(shown),
                    &format!("a call of the burst got no answer ({reason}): a limit must be answered, not dropped"),
                ));
                session.close().await;
                return tally.outcome();
            }
        }
    }
    let elapsed = started.elapsed();
    if !limited {
        let detail = if elapsed > window {
            format!(
                "no call was limited, but the burst took {} ms, longer than the window: inconclusive",
                elapsed.as_millis()
            )
        } else {
            "every call succeeded: the limit is not enforced".to_string()
        };
        tally.fail(context.evidence(&check, Some(shown), &detail));
        session.close().await;
        return tally.outcome();
    }
    tally.pass(format!("{check} (after {successes} successes)"));
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let check = "a call after the window succeeds";
    match context.call(&session, &context.server_tool, &input).await {
        RawCallOutcome::Result(result) if result.is_error != Some(true) => tally.pass(check),
        other => {
            let detail = match other {
                RawCallOutcome::NoAnswer(reason) => format!("no answer: {reason}"),
                _ => "the call still gets an error".to_string(),
            };
            tally.fail(context.evidence(check, Some(shown), &detail));
        }
    }
    session.close().await;
    tally.outcome()
}

/// Test 6, Pitfall: every recorded `tools/call` is replayed and its answer is correct.
pub(crate) async fn pitfall(context: &McpContext<'_>) -> Outcome {
    let pitfalls = context
        .tool
        .conformance()
        .and_then(|c| c.pitfalls.as_deref())
        .unwrap_or_default();
    if pitfalls.is_empty() {
        return Outcome::Skip {
            reason: "the tool document lists no known pitfalls (`conformance.pitfalls`)"
                .to_string(),
        };
    }
    if let Some(skip) = context.calls_forbidden() {
        return skip;
    }
    let mut tally = Tally::default();
    if !context.require_credential(&mut tally, "the pitfalls are replayed") {
        return tally.outcome();
    }
    let Some(session) = context
        .open_or_fail(&mut tally, "the pitfalls are replayed")
        .await
    else {
        return tally.outcome();
    };
    for pitfall in pitfalls {
        let check = format!(
            "pitfall `{}`: {}",
            pitfall.name.value, pitfall.description.value
        );
        // A checked MCP tool's pitfall always records a call and `is_error` (E0308).
        let (Some(call), Some(expected_error)) = (&pitfall.call, &pitfall.expect.is_error) else {
            continue;
        };
        let expect = &pitfall.expect;
        let shown = context.shown_call(&context.server_tool, &call.arguments.value);
        let outcome = context
            .call(&session, &context.server_tool, &call.arguments.value)
            .await;
        let answer = match context.judge(outcome) {
            Ok(answer) => answer,
            Err(reason) => {
                tally.fail(context.evidence(&check, Some(shown), &reason));
                continue;
            }
        };
        let mut problems = Vec::new();
        if answer.is_error != expected_error.value {
            problems.push(if expected_error.value {
                "expected an error, and the call succeeded".to_string()
            } else {
                "expected a successful result, and the call failed".to_string()
            });
        }
        if let Some(expected) = &expect.body
            && !contains(&answer.body, &expected.value)
        {
            problems.push(format!(
                "the body does not contain {}",
                truncate(&expected.value.to_string(), 120)
            ));
        }
        for excluded in expect.body_excludes.iter().flatten() {
            if answer.text.contains(&excluded.value)
                || answer.body.to_string().contains(&excluded.value)
            {
                problems.push(format!("the answer contains `{}`", excluded.value));
            }
        }
        if !problems.is_empty() {
            let detail = format!(
                "{}; body: {}",
                problems.join("; "),
                context.excerpt(&answer.body.to_string())
            );
            tally.fail(context.evidence(&check, Some(shown), &detail));
            continue;
        }
        if let Some(schema) = &expect.body_schema
            && let Err(mismatch) = validate(context.tool, schema, &answer.body)
        {
            let mut evidence = context.evidence(
                &check,
                Some(shown),
                &format!("the body breaks its schema: {}", mismatch.detail),
            );
            evidence.schema_location = Some(mismatch.location);
            tally.fail(evidence);
            continue;
        }
        tally.pass(check);
    }
    session.close().await;
    tally.outcome()
}

/// Test 7, Skill: every example is answered, in the output schema.
pub(crate) async fn skill(context: &McpContext<'_>) -> Outcome {
    let examples = context.tool.examples();
    if examples.is_empty() {
        return Outcome::Skip {
            reason: "the tool document gives no example input (`conformance.examples`)".to_string(),
        };
    }
    if let Some(skip) = context.calls_forbidden() {
        return skip;
    }
    let mut tally = Tally::default();
    let check = "the tool answers its examples";
    if !context.require_credential(&mut tally, check) {
        return tally.outcome();
    }
    let Some(session) = context.open_or_fail(&mut tally, check).await else {
        return tally.outcome();
    };
    for (index, example) in examples.iter().enumerate() {
        let label = example.name.as_ref().map_or_else(
            || format!("#{}", index + 1),
            |name| format!("`{}`", name.value),
        );
        let check = format!(
            "`{}` answers example {label} in its output schema",
            context.server_tool
        );
        if let Err(mismatch) = validate(
            context.tool,
            &context.tool.document.input,
            &example.input.value,
        ) {
            let mut evidence = plain_evidence(
                &check,
                format!(
                    "the example breaks the tool's own input schema: {}",
                    mismatch.detail
                ),
            );
            evidence.schema_location = Some(mismatch.location);
            tally.fail(evidence);
            continue;
        }
        let shown = context.shown_call(&context.server_tool, &example.input.value);
        let outcome = context
            .call(&session, &context.server_tool, &example.input.value)
            .await;
        let answer = match context.judge(outcome) {
            Ok(answer) if !answer.is_error => answer,
            Ok(answer) => {
                tally.fail(context.evidence(
                    &check,
                    Some(shown),
                    &format!(
                        "expected a result for a valid example, got an error: {}",
                        context.excerpt(&answer.text)
                    ),
                ));
                continue;
            }
            Err(reason) => {
                tally.fail(context.evidence(&check, Some(shown), &reason));
                continue;
            }
        };
        match validate(context.tool, &context.tool.document.output, &answer.body) {
            Ok(()) => tally.pass(check),
            Err(mismatch) => {
                let mut evidence = context.evidence(
                    &check,
                    Some(shown),
                    &format!(
                        "the output breaks its schema: {}; output: {}",
                        mismatch.detail,
                        context.excerpt(&answer.body.to_string())
                    ),
                );
                evidence.schema_location = Some(mismatch.location);
                tally.fail(evidence);
            }
        }
    }
    session.close().await;
    tally.outcome()
}
