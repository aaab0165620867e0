//! The seven tests, as the shared spec defines them ("The 7-test conformance suite",
//! Agent OSI layer 6). Each returns pass (what it verified), fail (the evidence) or
//! skip (why it cannot apply) — a test that cannot apply is never a pass.
//!
//! In order: the `Context` each test gets, the private `Tally` that turns passes and
//! failures into one outcome, the shared helpers (skip reasons, valid input, requests,
//! evidence); then the tests in the spec's order, `discovery` to `skill`. One file so
//! that the seven read against the spec side by side and share `Tally` and `Context`'s
//! private helpers without widening their visibility.

use std::time::Duration;

use agentc_compiler::documents::tool::{AuthScheme, CrudUpdateMethod, HttpMethod};
use agentc_compiler::lower::SpannedJson;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{Body, Credential, Exchange, Probe};
use crate::report::{Evidence, Outcome};
use crate::schema::{contains, synthesize, truncate, validate};
use crate::tool::{Endpoint, ToolUnderTest, method_text};

/// What every test of one tool is given.
pub(crate) struct Context<'a> {
    pub tool: &'a ToolUnderTest,
    /// The binding's endpoint, or why the HTTP tests cannot apply.
    pub endpoint: Result<Endpoint, String>,
    /// The probe, when there is an endpoint to probe.
    pub probe: Option<Probe>,
    /// The longest `Retry-After` the rate-limit test will wait.
    pub max_retry_after: Duration,
    /// Whether requests that can change the service may be sent.
    pub writes_allowed: bool,
    /// How many requests that may have changed the service succeeded (the operation's,
    /// a pitfall's), for the report's "left behind".
    pub writes: std::sync::atomic::AtomicUsize,
}

/// The skip of a test that would write to a live service run without `--allow-writes`.
pub(crate) fn no_writes(would: &str) -> Outcome {
    Outcome::Skip {
        reason: format!(
            "a live run writes nothing without `--allow-writes`, and this test would {would}"
        ),
    }
}

/// Collects what a test verified and what failed.
#[derive(Default)]
pub(crate) struct Tally {
    checks: Vec<String>,
    evidence: Vec<Evidence>,
}

impl Tally {
    pub(crate) fn pass(&mut self, check: impl Into<String>) {
        self.checks.push(check.into());
    }

    pub(crate) fn fail(&mut self, evidence: Evidence) {
        self.evidence.push(evidence);
    }

    pub(crate) fn outcome(self) -> Outcome {
        if self.evidence.is_empty() {
            Outcome::Pass {
                checks: self.checks,
            }
        } else {
            Outcome::Fail {
                evidence: self.evidence,
                passed: self.checks,
            }
        }
    }
}

pub(crate) fn plain_evidence(check: &str, detail: impl Into<String>) -> Evidence {
    Evidence {
        check: check.to_string(),
        request: None,
        status: None,
        detail: detail.into(),
        schema_location: None,
    }
}

impl Context<'_> {
    /// The endpoint and probe for a test that calls the operation, or the reason the
    /// test is skipped (no endpoint, or a live run without `--allow-writes` and an
    /// operation that may write).
    fn http_calling_the_operation(&self) -> Result<(&Endpoint, &Probe), Outcome> {
        let http = self.http()?;
        if !self.writes_allowed && self.tool.operation_writes() {
            return Err(no_writes(&format!(
                "call `{} {}`, which may change the service (mark the tool `read_only: true` if it does not)",
                method_text(http.0.method),
                http.0.path
            )));
        }
        Ok(http)
    }

    /// The endpoint and probe, or the reason the test is skipped.
    fn http(&self) -> Result<(&Endpoint, &Probe), Outcome> {
        match (&self.endpoint, &self.probe) {
            (Ok(endpoint), Some(probe)) => Ok((endpoint, probe)),
            (Err(reason), _) => Err(Outcome::Skip {
                reason: reason.clone(),
            }),
            (Ok(_), None) => Err(Outcome::Skip {
                reason: "no probe could be built for the tool".to_string(),
            }),
        }
    }

    /// A valid input of the operation: the first example, or one synthesized from the
    /// input schema (said so in the report).
    fn valid_input(&self) -> (Value, &'static str) {
        valid_input(self.tool)
    }

    /// The request for the operation with `input`: a GET sends it as the query (as the
    /// runtime's HTTP tools do), other methods as the JSON body.
    fn operation_request(endpoint: &Endpoint, input: &Value) -> (String, Body) {
        // Path parameters (AGX-H1) go in the path, and only the rest is sent again.
        let (mut path, input) = endpoint.path_for(input);
        if endpoint.method == HttpMethod::Get {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            if let Some(object) = input.as_object() {
                for (key, value) in object {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    serializer.append_pair(key, &text);
                }
            }
            let query = serializer.finish();
            if !query.is_empty() {
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&query);
            }
            (path, Body::None)
        } else {
            (path, Body::Json(input))
        }
    }

    /// Sends the operation with `input` and the given credential.
    async fn call_operation(
        &self,
        endpoint: &Endpoint,
        probe: &Probe,
        input: &Value,
        credential: Credential,
        paced: bool,
    ) -> Exchange {
        let (path, body) = Self::operation_request(endpoint, input);
        let exchange = probe
            .send(method_text(endpoint.method), &path, body, credential, paced)
            .await;
        if self.tool.operation_writes() {
            self.count_write(&exchange);
        }
        exchange
    }

    /// Counts a writing request that succeeded.
    fn count_write(&self, exchange: &Exchange) {
        if is_success(exchange) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Fails `tally` when the scheme needs a credential and none is available.
    fn require_credential(&self, probe: &Probe, tally: &mut Tally, check: &str) -> bool {
        match &probe.missing_secret {
            Some(reason) if probe.scheme() != AuthScheme::None => {
                tally.fail(plain_evidence(check, reason.clone()));
                false
            }
            _ => true,
        }
    }

    /// Evidence for a body that breaks `schema`.
    fn schema_evidence(
        &self,
        probe: &Probe,
        check: &str,
        exchange: &Exchange,
        schema: &SpannedJson,
        body: &Value,
    ) -> Option<Evidence> {
        validate(self.tool, schema, body).err().map(|mismatch| {
            let mut evidence = probe.evidence(
                check,
                exchange,
                &format!("the body breaks its schema: {}", mismatch.detail),
            );
            evidence.schema_location = Some(mismatch.location);
            evidence
        })
    }
}

/// Inputs that break an input schema, each with what is wrong with it.
pub(crate) struct InvalidInputs {
    /// The first declared property given a value of another type.
    pub wrong_type: Option<(String, Value)>,
    /// The first required field left out.
    pub missing_field: Option<(String, Value)>,
}

/// Invalid variants of the valid `input` under `schema` (the error tests of HTTP and
/// MCP tools send the same ones). In a query string every value is text, so a number
/// for a string is no wrong type there: with `in_query`, only a property whose type a
/// text can break (a number, an integer, a boolean) is given a wrong type.
pub(crate) fn invalid_inputs(
    schema: &Value,
    input: &Value,
    in_query: bool,
    path_parameters: &[String],
) -> InvalidInputs {
    let Some(object) = input.as_object() else {
        return InvalidInputs {
            wrong_type: None,
            missing_field: None,
        };
    };
    let wrong_type = schema
        .get("properties")
        .and_then(Value::as_object)
        .and_then(|properties| {
            properties.iter().find_map(|(name, property)| {
                // A path parameter is not input sent as data: it picks the route.
                if path_parameters.contains(name) {
                    return None;
                }
                let kind = property.get("type")?.as_str()?;
                let wrong = match kind {
                    "string" | "array" | "object" if in_query => return None,
                    "string" => json!(12345),
                    "array" | "object" | "boolean" => json!("not the declared type"),
                    "integer" | "number" => json!("not a number"),
                    _ => return None,
                };
                let mut bad = object.clone();
                bad.insert(name.clone(), wrong);
                Some((
                    format!(
                        "a wrong type (`{name}` is not {} {kind})",
                        if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "an"
                        } else {
                            "a"
                        }
                    ),
                    Value::Object(bad),
                ))
            })
        });
    let missing_field = schema
        .get("required")
        .and_then(Value::as_array)
        .and_then(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .find(|name| !path_parameters.iter().any(|parameter| parameter == name))
        })
        .map(|name| {
            let mut bad = object.clone();
            bad.remove(name);
            (
                format!("a missing required field (`{name}`)"),
                Value::Object(bad),
            )
        });
    InvalidInputs {
        wrong_type,
        missing_field,
    }
}

/// A body of more than `limit` bytes, and how it was made. It is the valid input with
/// its first free-form string property (no `maxLength`, `enum`, `const`, `pattern` or
/// `format`) padded, so that only its size is wrong; otherwise an extra `padding` field,
/// which may also make it invalid (said so in the check).
fn oversized_body(schema: &Value, input: &Value, limit: u64) -> (Vec<u8>, &'static str) {
    let length = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let free_string = schema
        .get("properties")
        .and_then(Value::as_object)
        .and_then(|properties| {
            properties.iter().find_map(|(name, property)| {
                let constrained = ["maxLength", "enum", "const", "pattern", "format"]
                    .iter()
                    .any(|keyword| property.get(*keyword).is_some());
                let sent = input.get(name.as_str()).is_some();
                (property.get("type").and_then(Value::as_str) == Some("string")
                    && !constrained
                    && sent)
                    .then_some(name)
            })
        });
    match (free_string, input.as_object()) {
        (Some(name), Some(object)) => {
            let mut padded = object.clone();
            padded.insert(name.clone(), Value::String("x".repeat(length)));
            (
                Value::Object(padded).to_string().into_bytes(),
                "a valid body",
            )
        }
        _ => {
            let mut bytes = Vec::with_capacity(length.saturating_add(16));
            bytes.extend_from_slice(b"{\"padding\":\"");
            bytes.resize(length.saturating_add(12), b'x');
            bytes.extend_from_slice(b"\"}");
            (bytes, "a body padded with an extra field")
        }
    }
}

/// A valid input of the tool: its first example, or one synthesized from the input
/// schema (said so in the report).
pub(crate) fn valid_input(tool: &ToolUnderTest) -> (Value, &'static str) {
    match tool.examples().first() {
        Some(example) => (example.input.value.clone(), "example input"),
        None => (
            synthesize(&tool.document.input.value),
            "input synthesized from the schema",
        ),
    }
}

/// A 2xx, or 303 See Other: the request was carried out and its result is elsewhere (the
/// answer to a POST that starts work, as OAS-S3 requires of an agent server).
fn is_success(exchange: &Exchange) -> bool {
    // `303 See Other` is how an operation that starts work elsewhere answers (an
    // OpenAgentSpec server starting an engagement, OAS-S3); the suite never follows it.
    exchange
        .status()
        .is_some_and(|status| (200..300).contains(&status) || status == 303)
}

/// Test 1, Discovery: the docs are served, parse, and match the declared operations.
pub(crate) async fn discovery(context: &Context<'_>) -> Outcome {
    let (_, probe) = match context.http() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
    let docs = context
        .tool
        .conformance()
        .and_then(|conformance| conformance.docs.as_ref())
        .filter(|docs| docs.openapi.is_some() || docs.llms_txt.is_some());
    let Some(docs) = docs else {
        return Outcome::Skip {
            reason: "the tool document declares no docs location (`conformance.docs.openapi` or `llms_txt`)".to_string(),
        };
    };
    let operations = context.tool.operations();
    let mut tally = Tally::default();
    // The OpenAPI document and its path prefixes, for comparing llms.txt with it.
    let mut openapi: Option<(Value, Vec<String>)> = None;
    if let Some(location) = &docs.openapi {
        let check = "the OpenAPI document is served, parses as OpenAPI 3.x and lists every declared operation";
        // Docs are read without a credential: an agent must find them from the product alone.
        let exchange = probe
            .send(
                "GET",
                &location.value,
                Body::None,
                Credential::Missing,
                true,
            )
            .await;
        match exchange.response() {
            Some(response) if response.status == 200 => match parse_document(&response.text()) {
                None => tally.fail(probe.evidence(
                    check,
                    &exchange,
                    "the body is neither JSON nor YAML",
                )),
                Some(document) => {
                    let version = document
                        .get("openapi")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !version.starts_with("3.") {
                        tally.fail(probe.evidence(
                            check,
                            &exchange,
                            &format!("`openapi` is `{version}`, not 3.x"),
                        ));
                    }
                    let paths = document.get("paths").and_then(Value::as_object);
                    let prefixes = server_prefixes(&document);
                    for (method, path) in &operations {
                        let listed = paths.is_some_and(|paths| {
                            paths.iter().any(|(documented, item)| {
                                item.get(method).is_some()
                                    && prefixes.iter().any(|prefix| {
                                        same_path(&format!("{prefix}{documented}"), path)
                                    })
                            })
                        });
                        if !listed {
                            tally.fail(probe.evidence(
                                check,
                                &exchange,
                                &format!(
                                    "the declared operation `{} {path}` is not in `paths`",
                                    method.to_ascii_uppercase()
                                ),
                            ));
                        }
                    }
                    if tally.evidence.is_empty() {
                        tally.pass(format!(
                            "OpenAPI {version} at {} lists the {} declared operation(s)",
                            location.value,
                            operations.len()
                        ));
                    }
                    documented_operations_answer(
                        probe,
                        &mut tally,
                        &document,
                        &prefixes,
                        context.writes_allowed,
                    )
                    .await;
                    openapi = Some((document, prefixes));
                }
            },
            _ => tally.fail(probe.evidence(check, &exchange, "expected 200")),
        }
    }
    if let Some(location) = &docs.llms_txt {
        let check = "llms.txt is served, starts with a `# ` title and names every declared operation's path";
        let before = tally.evidence.len();
        let exchange = probe
            .send(
                "GET",
                &location.value,
                Body::None,
                Credential::Missing,
                true,
            )
            .await;
        match exchange.response() {
            Some(response) if response.status == 200 => {
                let text = response.text();
                let titled = first_content_line(&text).is_some_and(|line| line.starts_with("# "));
                if !titled {
                    tally.fail(probe.evidence(
                        check,
                        &exchange,
                        "the first line is not a `# ` title",
                    ));
                }
                for (method, path) in &operations {
                    let stem = path.split('{').next().unwrap_or(path);
                    if !text.contains(stem) {
                        tally.fail(probe.evidence(
                            check,
                            &exchange,
                            &format!("`{} {path}` is not mentioned", method.to_ascii_uppercase()),
                        ));
                    }
                }
                // What llms.txt names, the OpenAPI document must list too: an operation
                // documented for agents in one place only is half documented.
                if let Some((document, prefixes)) = &openapi {
                    for (method, path) in operations_named_in(&text) {
                        let listed = document
                            .get("paths")
                            .and_then(Value::as_object)
                            .is_some_and(|paths| {
                                paths.iter().any(|(documented, item)| {
                                    item.get(method.to_ascii_lowercase()).is_some()
                                        && prefixes.iter().any(|prefix| {
                                            same_path(&format!("{prefix}{documented}"), &path)
                                        })
                                })
                            });
                        if !listed {
                            tally.fail(probe.evidence(
                                check,
                                &exchange,
                                &format!("llms.txt names `{method} {path}`, which the OpenAPI document does not list"),
                            ));
                        }
                    }
                }
            }
            _ => tally.fail(probe.evidence(check, &exchange, "expected 200")),
        }
        if tally.evidence.len() == before {
            tally.pass(format!(
                "llms.txt at {} names the {} declared operation(s)",
                location.value,
                operations.len()
            ));
        }
    }
    tally.outcome()
}

/// A docs body as JSON (JSON is YAML, so the compiler's bounded YAML reader reads both).
fn parse_document(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Some(value);
    }
    let (documents, diagnostics) = agentc_compiler::syntax::parse_yaml(
        agentc_compiler::span::FileId(0),
        text,
        &agentc_compiler::syntax::SyntaxLimits::default(),
    );
    if !diagnostics.is_empty() {
        return None;
    }
    documents.first().map(|document| document.root.to_json())
}

/// The path prefixes an OpenAPI document's `servers` put before its paths (`/v1` of
/// `https://host/v1` or of `/v1`); the empty prefix when it names none. A server URL with
/// variables (`{basePath}`) cannot be resolved here, so it adds no prefix.
fn server_prefixes(document: &Value) -> Vec<String> {
    let mut prefixes: Vec<String> = document
        .get("servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|server| server.get("url")?.as_str())
        .filter(|url| !url.contains('{'))
        .map(|url| {
            let path = if url.starts_with('/') {
                url.to_string()
            } else {
                url::Url::parse(url).map_or_else(|_| String::new(), |url| url.path().to_string())
            };
            path.trim_end_matches('/').to_string()
        })
        .collect();
    if prefixes.is_empty() {
        prefixes.push(String::new());
    }
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// The first line of `text` that is not blank and not inside an HTML comment (an
/// `llms.txt` may open with a comment before its `# ` title).
fn first_content_line(text: &str) -> Option<&str> {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        match trimmed.strip_prefix("<!--") {
            Some(comment) => rest = comment.find("-->").and_then(|end| comment.get(end + 3..))?,
            None => return trimmed.lines().next(),
        }
    }
}

/// The operations a text names as `METHOD /path` (upper-case method), in order.
fn operations_named_in(text: &str) -> Vec<(String, String)> {
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '`' | '(' | ')' | '[' | ']' | ','))
        .filter(|word| !word.is_empty())
        .collect();
    let mut named = Vec::new();
    for pair in words.windows(2) {
        if let [method, path] = pair
            && METHODS.contains(method)
            && path.starts_with('/')
        {
            let path = path.trim_end_matches(['.', ':', ';']);
            let path = path.split('?').next().unwrap_or(path).to_string();
            if !named
                .iter()
                .any(|(m, p): &(String, String)| m == method && *p == path)
            {
                named.push(((*method).to_string(), path));
            }
        }
    }
    named
}

/// Discovery the other way: every documented operation without path parameters is
/// asked, and one that answers 404 or 405 is a documented operation the service does not
/// serve. GETs always; other methods only when writes are allowed, with a malformed
/// JSON body that nothing can be made of. Templated paths are not probed:
/// a 404 for a made-up id proves nothing.
async fn documented_operations_answer(
    probe: &Probe,
    tally: &mut Tally,
    document: &Value,
    prefixes: &[String],
    writes_allowed: bool,
) {
    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return;
    };
    let prefix = prefixes.first().map_or("", String::as_str);
    let mut asked = 0;
    let before = tally.evidence.len();
    for (documented, item) in paths {
        if documented.contains('{') {
            continue;
        }
        for method in METHODS {
            if item.get(method).is_none() || (method != "get" && !writes_allowed) {
                continue;
            }
            asked += 1;
            let method = method.to_ascii_uppercase();
            let path = format!("{prefix}{documented}");
            let credential = if probe.missing_secret.is_some() {
                Credential::Missing
            } else {
                Credential::Valid
            };
            // Malformed JSON: a route that exists refuses it (400, 422), one that does
            // not answers 404 or 405, and no service can make anything of it.
            let body = if method == "GET" {
                Body::None
            } else {
                Body::Raw {
                    bytes: b"{\"agentc-conformance\": ".to_vec(),
                    content_type: "application/json",
                }
            };
            let exchange = probe.send(&method, &path, body, credential, true).await;
            if matches!(exchange.status(), Some(404 | 405)) {
                tally.fail(probe.evidence(
                    &format!("the documented operation `{method} {path}` is served"),
                    &exchange,
                    "the OpenAPI document lists it, and the service answers as if it did not exist",
                ));
            }
        }
    }
    if asked > 0 && tally.evidence.len() == before {
        tally.pass(format!(
            "the {asked} documented operation(s) without path parameters are served{}",
            if writes_allowed {
                ""
            } else {
                " (GETs only: other methods are asked with `--allow-writes`)"
            }
        ));
    }
}

/// Whether an OpenAPI path matches a declared one: equal segments, where a documented
/// template segment (`{id}`) matches any declared segment (a template or a value, as in
/// a binding URL `/agents/helpdesk` under `/agents/{name}`).
pub(crate) fn same_path(documented: &str, declared: &str) -> bool {
    let documented: Vec<&str> = documented.trim_end_matches('/').split('/').collect();
    let declared: Vec<&str> = declared.trim_end_matches('/').split('/').collect();
    documented.len() == declared.len()
        && documented
            .iter()
            .zip(&declared)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
}

/// Test 2, Auth: missing, malformed and wrong credentials are refused with 401/403 and a
/// structured body, a valid one is accepted, and no credential is echoed back.
pub(crate) async fn auth(context: &Context<'_>) -> Outcome {
    let (endpoint, probe) = match context.http_calling_the_operation() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
    let scheme = probe.scheme();
    if scheme == AuthScheme::None {
        return Outcome::Skip {
            reason: "the tool declares no auth scheme (`auth: none` or no `auth`), so nothing is protected".to_string(),
        };
    }
    let mut tally = Tally::default();
    if !context.require_credential(probe, &mut tally, "a valid credential is accepted") {
        return tally.outcome();
    }
    let (input, input_kind) = context.valid_input();
    let header = probe.credential_header();
    let wrong_value = "agentc-conformance-wrong-credential-7f3a";
    let (malformed, wrong) = match scheme {
        AuthScheme::Basic => (
            "Basic %%%not-base64%%%".to_string(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("agentc-conformance:{wrong_value}"))
            ),
        ),
        AuthScheme::ApiKey => (
            "malformed key with spaces".to_string(),
            wrong_value.to_string(),
        ),
        _ => ("Bearer".to_string(), format!("Bearer {wrong_value}")),
    };
    let refused_cases = [
        (
            Credential::Missing,
            "a request without a credential is refused with 401/403 and a structured body",
        ),
        (
            Credential::Raw {
                header: header.clone(),
                value: malformed,
                label: "malformed credential",
            },
            "a malformed credential is refused with 401/403 and a structured body",
        ),
        (
            Credential::Raw {
                header,
                value: wrong.clone(),
                label: "wrong credential",
            },
            "a wrong credential is refused with 401/403 and a structured body",
        ),
    ];
    let mut disclosure_reported = false;
    for (credential, check) in refused_cases {
        let exchange = context
            .call_operation(endpoint, probe, &input, credential, true)
            .await;
        match exchange.response() {
            Some(response) if matches!(response.status, 401 | 403) => {
                if response.is_structured() {
                    tally.pass(check);
                } else {
                    tally.fail(probe.evidence(
                        check,
                        &exchange,
                        "the refusal's body is not a JSON object",
                    ));
                }
                let seen = format!("{}\n{}", response.headers_text, response.text());
                if seen.contains(wrong_value) || probe.leaks_secret(&seen) {
                    tally.fail(probe.evidence(
                        "no credential is echoed back",
                        &exchange,
                        "the response repeats the credential it was sent",
                    ));
                } else if !disclosure_reported {
                    // A refusal that hands out a stored token (a debug field, a session
                    // dump) gives a caller without a credential one that works.
                    let (_, held) = crate::redact::redact(&response.text(), None);
                    if !held.is_empty() {
                        disclosure_reported = true;
                        let held: Vec<&str> = held.into_iter().collect();
                        tally.fail(probe.evidence(
                            "a refusal discloses no credential",
                            &exchange,
                            &format!("the refusal holds {}", held.join(", ")),
                        ));
                    }
                }
            }
            _ => tally.fail(probe.evidence(check, &exchange, "expected 401 or 403")),
        }
    }
    let check = "a valid credential is accepted";
    let exchange = context
        .call_operation(endpoint, probe, &input, Credential::Valid, true)
        .await;
    if is_success(&exchange) {
        tally.pass(format!("{check} ({input_kind})"));
        if let Some(response) = exchange.response()
            && probe.leaks_secret(&format!("{}\n{}", response.headers_text, response.text()))
        {
            tally.fail(probe.evidence(
                "no credential is echoed back",
                &exchange,
                "the response repeats the valid credential",
            ));
        }
    } else {
        tally.fail(probe.evidence(
            check,
            &exchange,
            &format!("expected 2xx for a valid credential and the {input_kind}"),
        ));
    }
    tally.outcome()
}

/// Test 3, CRUD: create → read → update → read → delete → read finds nothing, every
/// body in the resource schema and reads returning what was written. The resource's
/// shape is the document's: its item path from `id_field` or the create's `Location`, or
/// reads by `read_query`; updates by PUT or PATCH to the item, or an upsert POST to the
/// collection; a delete, or `delete: false` (reported, with what stays). Each step is a
/// check of its own, so a failure names the step. A resource the test made and did not
/// see deleted gets one more DELETE, and is named in the report if it is still there.
pub(crate) async fn crud(context: &Context<'_>) -> Outcome {
    let (_, probe) = match context.http() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
    let Some(crud) = context.tool.conformance().and_then(|c| c.crud.as_ref()) else {
        return Outcome::Skip {
            reason: "the tool document declares no CRUD resource (`conformance.crud`)".to_string(),
        };
    };
    if !context.writes_allowed {
        return no_writes(&format!(
            "create, update and delete a `{}`",
            crud.name.value
        ));
    }
    let mut tally = Tally::default();
    if !context.require_credential(probe, &mut tally, "the resource can be created") {
        return tally.outcome();
    }
    let resource = CrudSteps {
        context,
        probe,
        crud,
        collection: crud.path.value.trim_end_matches('/').to_string(),
    };
    let mut item = None;
    let delete_offered = crud.delete.as_ref().is_none_or(|delete| delete.value);
    match resource.run(&mut tally, &mut item).await {
        CrudEnd::Gone | CrudEnd::NotCreated | CrudEnd::Kept => {}
        // Without a delete (declared), there is nothing to clean up with.
        CrudEnd::MayRemain if !delete_offered => {}
        CrudEnd::MayRemain => {
            resource
                .leave_nothing_behind(&mut tally, item.as_deref())
                .await
        }
    }
    tally.outcome()
}

/// How a CRUD run ended, for what is left to clean up.
enum CrudEnd {
    /// Nothing was created.
    NotCreated,
    /// The resource was deleted and reads as gone.
    Gone,
    /// The document says delete is not offered; the report says what stays.
    Kept,
    /// The resource was created and may still be there.
    MayRemain,
}

/// One CRUD run's fixed parts.
struct CrudSteps<'a> {
    context: &'a Context<'a>,
    probe: &'a Probe,
    crud: &'a agentc_compiler::documents::tool::CrudResource,
    collection: String,
}

impl CrudSteps<'_> {
    fn name(&self) -> &str {
        &self.crud.name.value
    }

    /// The item path as shown in checks: `/tickets/{id}`.
    fn shown_item(&self) -> String {
        let id = self
            .crud
            .id_field
            .as_ref()
            .map_or("id", |field| field.value.as_str());
        format!("{}/{{{id}}}", self.collection)
    }

    /// The steps in order; `item` is the item's path once known.
    async fn run(&self, tally: &mut Tally, item: &mut Option<String>) -> CrudEnd {
        let (probe, collection, name) = (self.probe, &self.collection, self.name());
        let check =
            format!("`{name}` is created with POST {collection} (200/201, in the resource schema)");
        let created = probe
            .send(
                "POST",
                collection,
                Body::Json(self.crud.create.value.clone()),
                Credential::Valid,
                true,
            )
            .await;
        if !matches!(created.status(), Some(200 | 201)) {
            tally.fail(probe.evidence(&check, &created, "expected 200 or 201"));
            return CrudEnd::NotCreated;
        }
        let body = created
            .response()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        if let Some(evidence) =
            self.context
                .schema_evidence(probe, &check, &created, &self.crud.schema, &body)
        {
            tally.fail(evidence);
            return CrudEnd::MayRemain;
        }
        match self.locate(&created, &body) {
            Ok(located) => *item = located,
            Err(detail) => {
                tally.fail(probe.evidence(&check, &created, &detail));
                return CrudEnd::MayRemain;
            }
        }
        tally.pass(check);
        if !self
            .read_back(tally, item.as_deref(), "create", &self.crud.create.value)
            .await
        {
            return CrudEnd::MayRemain;
        }

        let (method, target) = match self.crud.update_method {
            Some(CrudUpdateMethod::Post) => ("POST", Some(collection.clone())),
            Some(CrudUpdateMethod::Patch) => ("PATCH", item.clone()),
            _ => ("PUT", item.clone()),
        };
        let shown_target = if method == "POST" {
            collection.clone()
        } else {
            self.shown_item()
        };
        let check = format!("`{name}` is updated with {method} {shown_target}");
        let Some(target) = target else {
            tally.fail(plain_evidence(
                &check,
                "the update needs the item's path: declare `id_field`, or answer the create with a `Location`",
            ));
            return CrudEnd::MayRemain;
        };
        let updated = probe
            .send(
                method,
                &target,
                Body::Json(self.crud.update.value.clone()),
                Credential::Valid,
                true,
            )
            .await;
        if !is_success(&updated) {
            tally.fail(probe.evidence(&check, &updated, "expected 2xx"));
            return CrudEnd::MayRemain;
        }
        if let Some(body) = updated
            .response()
            .filter(|r| !r.body.is_empty())
            .map(|r| r.json().unwrap_or(Value::Null))
            && let Some(evidence) =
                self.context
                    .schema_evidence(probe, &check, &updated, &self.crud.schema, &body)
        {
            tally.fail(evidence);
            return CrudEnd::MayRemain;
        }
        tally.pass(check);
        if !self
            .read_back(tally, item.as_deref(), "update", &self.crud.update.value)
            .await
        {
            return CrudEnd::MayRemain;
        }

        if self
            .crud
            .delete
            .as_ref()
            .is_some_and(|delete| !delete.value)
        {
            tally.pass(format!(
                "delete is not offered (`delete: false`): the `{name}` this test wrote stays{}",
                item.as_deref()
                    .map(|item| format!(" at `{item}`"))
                    .unwrap_or_default()
            ));
            return CrudEnd::Kept;
        }
        let check = format!("`{name}` is deleted with DELETE {}", self.shown_item());
        let Some(target) = item.clone() else {
            tally.fail(plain_evidence(
                &check,
                "the delete needs the item's path: declare `id_field`, or answer the create with a `Location`",
            ));
            return CrudEnd::MayRemain;
        };
        let deleted = probe
            .send("DELETE", &target, Body::None, Credential::Valid, true)
            .await;
        if !is_success(&deleted) {
            tally.fail(probe.evidence(&check, &deleted, "expected 2xx"));
            return CrudEnd::MayRemain;
        }
        tally.pass(check);
        if self.reads_as_gone(tally, &target).await {
            CrudEnd::Gone
        } else {
            CrudEnd::MayRemain
        }
    }

    /// Where the created resource lives: at `collection/<id_field>`, at the create's
    /// `Location`, or nowhere of its own (read by `read_query`).
    fn locate(&self, created: &Exchange, body: &Value) -> Result<Option<String>, String> {
        if let Some(field) = &self.crud.id_field {
            return match body.get(&field.value) {
                Some(Value::String(id)) if !id.is_empty() && !id.contains(['/', '?', '#']) => {
                    Ok(Some(format!("{}/{id}", self.collection)))
                }
                Some(Value::Number(id)) => Ok(Some(format!("{}/{id}", self.collection))),
                _ => Err(format!("no usable `{}` in the body", field.value)),
            };
        }
        let location = created
            .response()
            .and_then(|response| header_value(&response.headers_text, "location"));
        match location {
            Some(location) => {
                let path = if location.starts_with('/') {
                    location
                } else {
                    url::Url::parse(&location)
                        .map(|url| url.path().to_string())
                        .map_err(|_| format!("the `Location` `{location}` is not a URL"))?
                };
                Ok(Some(path))
            }
            None if self.crud.read_query.is_some() => Ok(None),
            None => Err(
                "no `Location` and no `id_field`: the resource cannot be found again (declare `id_field`, or `read_query`)"
                    .to_string(),
            ),
        }
    }

    /// Reads the resource back after `after` and checks it holds `written`.
    async fn read_back(
        &self,
        tally: &mut Tally,
        item: Option<&str>,
        after: &str,
        written: &Value,
    ) -> bool {
        let probe = self.probe;
        let Some(query) = &self.crud.read_query else {
            let check = format!(
                "GET {} after {after} gives 200, the resource schema, and what was written",
                self.shown_item()
            );
            let Some(item) = item else {
                tally.fail(plain_evidence(
                    &check,
                    "the resource has no path of its own",
                ));
                return false;
            };
            let read = probe
                .send("GET", item, Body::None, Credential::Valid, true)
                .await;
            if read.status() != Some(200) {
                tally.fail(probe.evidence(&check, &read, "expected 200"));
                return false;
            }
            let body = read
                .response()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            return self.holds_written(tally, &check, &read, &body, written);
        };
        let key = &query.value;
        let check = format!(
            "GET {}?{key}=… after {after} finds the `{}` once, as written",
            self.collection,
            self.name()
        );
        let Some(value) = written.get(key) else {
            tally.fail(plain_evidence(
                &check,
                format!("what was written has no `{key}` to read it by"),
            ));
            return false;
        };
        let read = self.query(key, value).await;
        if read.status() != Some(200) {
            tally.fail(probe.evidence(&check, &read, "expected 200"));
            return false;
        }
        let body = read
            .response()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        let found = resources_with(&body, key, value);
        match found.as_slice() {
            [only] => self.holds_written(tally, &check, &read, only, written),
            _ => {
                tally.fail(probe.evidence(
                    &check,
                    &read,
                    &format!(
                        "the answer holds {} resources with `{key}` = {}{}",
                        found.len(),
                        truncate(&value.to_string(), 60),
                        if found.len() > 1 && after == "update" {
                            ": the update made another one instead of replacing it"
                        } else {
                            ""
                        }
                    ),
                ));
                false
            }
        }
    }

    /// `GET collection?key=value`.
    async fn query(&self, key: &str, value: &Value) -> Exchange {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(key, &text)
            .finish();
        let path = format!("{}?{query}", self.collection);
        self.probe
            .send("GET", &path, Body::None, Credential::Valid, true)
            .await
    }

    /// Checks a read resource against the schema and what was written.
    fn holds_written(
        &self,
        tally: &mut Tally,
        check: &str,
        read: &Exchange,
        resource: &Value,
        written: &Value,
    ) -> bool {
        let schema = &self.crud.schema;
        if let Some(evidence) = self
            .context
            .schema_evidence(self.probe, check, read, schema, resource)
        {
            tally.fail(evidence);
            return false;
        }
        let declared = schema.value.get("properties").and_then(Value::as_object);
        for (key, value) in written.as_object().into_iter().flatten() {
            let in_schema = declared.is_none_or(|properties| properties.contains_key(key));
            if in_schema
                && !resource
                    .get(key)
                    .is_some_and(|actual| contains(actual, value))
            {
                tally.fail(self.probe.evidence(
                    check,
                    read,
                    &format!(
                        "`{key}` does not read back as written ({})",
                        truncate(&value.to_string(), 80)
                    ),
                ));
                return false;
            }
        }
        tally.pass(check);
        true
    }

    /// After the delete: the item gives 404, or a read by query finds nothing.
    async fn reads_as_gone(&self, tally: &mut Tally, item: &str) -> bool {
        let probe = self.probe;
        if let Some(query) = &self.crud.read_query
            && let Some(value) = self.crud.update.value.get(&query.value)
        {
            let check = format!(
                "GET {}?{}=… after delete finds no `{}`",
                self.collection,
                query.value,
                self.name()
            );
            let read = self.query(&query.value, value).await;
            let body = read
                .response()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            let left = resources_with(&body, &query.value, value).len();
            return if matches!(read.status(), Some(200 | 404)) && left == 0 {
                tally.pass(check);
                true
            } else {
                tally.fail(probe.evidence(&check, &read, "the resource is still there"));
                false
            };
        }
        let check = format!("GET {} after delete gives 404", self.shown_item());
        let gone = probe
            .send("GET", item, Body::None, Credential::Valid, true)
            .await;
        if gone.status() == Some(404) {
            tally.pass(check);
            true
        } else {
            tally.fail(probe.evidence(
                &check,
                &gone,
                "expected 404: the resource is still there, or the answer is wrong",
            ));
            false
        }
    }

    /// A resource the test made and did not see deleted: one more DELETE, and if it is
    /// still there, the report says so, so that nothing is left behind unnoticed.
    async fn leave_nothing_behind(&self, tally: &mut Tally, item: Option<&str>) {
        let check = "nothing the run created is left behind";
        let Some(item) = item else {
            tally.fail(plain_evidence(
                check,
                format!(
                    "a `{}` created with POST {} has no path to delete it at: remove it by hand",
                    self.name(),
                    self.collection
                ),
            ));
            return;
        };
        let probe = self.probe;
        let deleted = probe
            .send("DELETE", item, Body::None, Credential::Valid, true)
            .await;
        let still_there = probe
            .send("GET", item, Body::None, Credential::Valid, true)
            .await;
        if still_there.status() != Some(404) {
            tally.fail(plain_evidence(
                check,
                format!(
                    "`{item}`, created with POST {}, could not be deleted (DELETE answered {}, then GET {}): remove it by hand",
                    self.collection,
                    deleted.status().map_or_else(|| "nothing".to_string(), |s| s.to_string()),
                    still_there.status().map_or_else(|| "nothing".to_string(), |s| s.to_string()),
                ),
            ));
        }
    }
}

/// The objects anywhere in `body` whose `key` is `value` (a read by query may answer a
/// list, or a list inside an envelope).
fn resources_with<'v>(body: &'v Value, key: &str, value: &Value) -> Vec<&'v Value> {
    let mut found = Vec::new();
    let mut stack = vec![body];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                if map.get(key) == Some(value) {
                    found.push(node);
                } else {
                    stack.extend(map.values());
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    found
}

/// A header's value from a response's `name: value` lines.
fn header_value(headers_text: &str, name: &str) -> Option<String> {
    headers_text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Test 4, Error: wrong types, missing fields, malformed JSON, an oversized body and an
/// unknown route each get a 4xx with a structured body — never a 5xx or a hang.
pub(crate) async fn error(context: &Context<'_>) -> Outcome {
    let (endpoint, probe) = match context.http_calling_the_operation() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
    let mut tally = Tally::default();
    if !context.require_credential(
        probe,
        &mut tally,
        "bad input is refused with a structured 4xx",
    ) {
        return tally.outcome();
    }
    let (input, _) = context.valid_input();
    let schema = &context.tool.document.input.value;
    let method = method_text(endpoint.method);
    let mut cases: Vec<(String, String, Body)> = Vec::new();

    let in_query = endpoint.method == HttpMethod::Get;
    // The operation's route for the valid input (its path parameters filled), and the
    // input that is sent as data.
    let (operation_path, body_input) = endpoint.path_for(&input);
    let invalid = invalid_inputs(schema, &input, in_query, &endpoint.parameters);
    match invalid.wrong_type {
        Some((what, bad)) => {
            let (path, body) = Context::operation_request(endpoint, &bad);
            cases.push((what, path, body));
        }
        None if endpoint.method != HttpMethod::Get => {
            cases.push((
                "a wrong type (an array where an object is declared)".into(),
                operation_path.clone(),
                Body::Json(json!([])),
            ));
        }
        None => {}
    }
    if let Some((what, bad)) = invalid.missing_field {
        let (path, body) = Context::operation_request(endpoint, &bad);
        cases.push((what, path, body));
    }
    if endpoint.method != HttpMethod::Get {
        cases.push((
            "malformed JSON".into(),
            operation_path.clone(),
            Body::Raw {
                bytes: b"{\"unterminated".to_vec(),
                content_type: "application/json",
            },
        ));
        let limit = context.tool.max_request_bytes();
        let (bytes, how) = oversized_body(schema, &body_input, limit);
        cases.push((
            format!("{how} over the declared limit ({limit} bytes)"),
            operation_path.clone(),
            Body::Raw {
                bytes,
                content_type: "application/json",
            },
        ));
    }
    // Asked with GET: a route that is not there must say so, and a GET can write
    // nothing even on a service that routes carelessly.
    cases.push((
        "an unknown route".into(),
        "/agentc-conformance/no-such-route".into(),
        Body::None,
    ));

    for (what, path, body) in cases {
        let check = format!("{what} gets a structured 4xx");
        let on_the_operation =
            same_path(endpoint.route(), path.split('?').next().unwrap_or_default());
        let sent_with = if on_the_operation { method } else { "GET" };
        let exchange = probe
            .send(sent_with, &path, body, Credential::Valid, true)
            .await;
        if on_the_operation && context.tool.operation_writes() {
            context.count_write(&exchange);
        }
        match exchange.response() {
            // A route that is not there answers every request 404 (or 405): that is not
            // bad input handled, and a misspelt binding must not pass this test.
            Some(response) if on_the_operation && matches!(response.status, 404 | 405) => {
                tally.fail(probe.evidence(
                    &check,
                    &exchange,
                    "the operation's own route answered as if it did not exist: bad input was never judged (is the binding's URL right?)",
                ));
            }
            Some(response)
                if (400..500).contains(&response.status)
                    && !matches!(response.status, 401 | 403 | 429) =>
            {
                if response.is_structured() && response.truncated {
                    tally.pass(format!(
                        "{check} ({}; a JSON body over the suite's read limit, judged by its content type)",
                        response.status
                    ));
                } else if response.is_structured() {
                    tally.pass(format!("{check} ({})", response.status));
                } else {
                    tally.fail(probe.evidence(
                        &check,
                        &exchange,
                        "the error's body is not a JSON object",
                    ));
                }
            }
            Some(response) if response.status >= 500 => {
                tally.fail(probe.evidence(
                    &check,
                    &exchange,
                    "a server error: bad input must get a 4xx",
                ));
            }
            Some(_) => tally.fail(probe.evidence(
                &check,
                &exchange,
                "expected a 4xx that judges the input (not 401, 403 or 429)",
            )),
            None => tally.fail(probe.evidence(&check, &exchange, "no answer")),
        }
    }
    tally.outcome()
}

/// Test 5, Rate limit: a burst past the declared limit gets 429 with `Retry-After`, and a
/// call succeeds again after waiting that long.
pub(crate) async fn rate_limit(context: &Context<'_>) -> Outcome {
    let (endpoint, probe) = match context.http_calling_the_operation() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
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
    let mut tally = Tally::default();
    if !context.require_credential(probe, &mut tally, "a burst past the limit gets 429") {
        return tally.outcome();
    }
    let (input, _) = context.valid_input();
    let window = Duration::from_secs(limit.per_seconds.value);
    let check = format!(
        "a burst of {} requests (limit {} per {} s) gets 429 with Retry-After",
        limit.requests.value + 1,
        limit.requests.value,
        limit.per_seconds.value
    );
    let started = Instant::now();
    let mut limited = None;
    let mut last = None;
    for _ in 0..=limit.requests.value {
        let exchange = context
            .call_operation(endpoint, probe, &input, Credential::Valid, false)
            .await;
        match exchange.status() {
            Some(429) => {
                limited = Some(exchange);
                break;
            }
            Some(_) if is_success(&exchange) => last = Some(exchange),
            _ => {
                tally.fail(probe.evidence(
                    &check,
                    &exchange,
                    "a request of the burst failed otherwise than with 429",
                ));
                return tally.outcome();
            }
        }
    }
    let elapsed = started.elapsed();
    let Some(limited) = limited else {
        let detail = if elapsed > window {
            format!(
                "no 429, but the burst took {} ms, longer than the window: inconclusive",
                elapsed.as_millis()
            )
        } else {
            "every request succeeded: the limit is not enforced".to_string()
        };
        let evidence = match &last {
            Some(exchange) => probe.evidence(&check, exchange, &detail),
            None => plain_evidence(&check, detail),
        };
        tally.fail(evidence);
        return tally.outcome();
    };
    let retry_after = limited
        .response()
        .and_then(|response| response.retry_after.as_deref())
        .map(str::trim)
        .map(|text| text.parse::<u64>().map_err(|_| text.to_string()));
    let seconds = match retry_after {
        Some(Ok(seconds)) => seconds,
        Some(Err(text)) => {
            tally.fail(probe.evidence(
                &check,
                &limited,
                &format!("`Retry-After: {text}` is not a number of seconds"),
            ));
            return tally.outcome();
        }
        None => {
            tally.fail(probe.evidence(&check, &limited, "the 429 has no `Retry-After` header"));
            return tally.outcome();
        }
    };
    if Duration::from_secs(seconds) > context.max_retry_after {
        tally.fail(probe.evidence(
            &check,
            &limited,
            &format!(
                "`Retry-After: {seconds}` is longer than this run waits ({} s)",
                context.max_retry_after.as_secs()
            ),
        ));
        return tally.outcome();
    }
    tally.pass(format!("{check} (Retry-After: {seconds})"));
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(100)).await;
    let check = "a call after waiting Retry-After succeeds";
    let again = context
        .call_operation(endpoint, probe, &input, Credential::Valid, false)
        .await;
    if is_success(&again) {
        tally.pass(check);
    } else {
        tally.fail(probe.evidence(check, &again, "expected 2xx"));
    }
    tally.outcome()
}

/// Test 6, Pitfall: every known pitfall is replayed and the correct behaviour holds.
pub(crate) async fn pitfall(context: &Context<'_>) -> Outcome {
    let (_, probe) = match context.http() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
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
    let writing: Vec<&str> = pitfalls
        .iter()
        .filter(|pitfall| {
            pitfall
                .request
                .as_ref()
                .is_some_and(|request| context.tool.request_writes(request.method))
        })
        .map(|pitfall| pitfall.name.value.as_str())
        .collect();
    if !context.writes_allowed && !writing.is_empty() {
        return no_writes(&format!(
            "replay requests that may change the service (pitfalls `{}`)",
            writing.join("`, `")
        ));
    }
    let mut tally = Tally::default();
    for pitfall in pitfalls {
        let expect = &pitfall.expect;
        // A checked HTTP tool's pitfall always records a request and a status (E0308).
        let (Some(recorded), Some(expected_status)) = (&pitfall.request, &expect.status) else {
            continue;
        };
        let check = format!(
            "pitfall `{}`: {}",
            pitfall.name.value, pitfall.description.value
        );
        let authenticated = recorded.authenticated.as_ref().is_none_or(|a| a.value);
        if authenticated && !context.require_credential(probe, &mut tally, &check) {
            continue;
        }
        let body = recorded
            .body
            .as_ref()
            .map_or(Body::None, |body| Body::Json(body.value.clone()));
        let credential = if authenticated {
            Credential::Valid
        } else {
            Credential::Missing
        };
        let exchange = probe
            .send(
                method_text(recorded.method),
                &recorded.path.value,
                body,
                credential,
                true,
            )
            .await;
        if context.tool.request_writes(recorded.method) {
            context.count_write(&exchange);
        }
        let Some(response) = exchange.response() else {
            tally.fail(probe.evidence(&check, &exchange, "no answer"));
            continue;
        };
        let mut problems = Vec::new();
        if u64::from(response.status) != expected_status.value {
            problems.push(format!("expected status {}", expected_status.value));
        }
        let json = response.json();
        if let Some(expected) = &expect.body
            && !json
                .as_ref()
                .is_some_and(|actual| contains(actual, &expected.value))
        {
            problems.push(format!(
                "the body does not contain {}",
                truncate(&expected.value.to_string(), 120)
            ));
        }
        for excluded in expect.body_excludes.iter().flatten() {
            if response.text().contains(&excluded.value) {
                problems.push(format!("the body contains `{}`", excluded.value));
            }
        }
        if !problems.is_empty() {
            tally.fail(probe.evidence(&check, &exchange, &problems.join("; ")));
            continue;
        }
        if let Some(schema) = &expect.body_schema
            && let Some(evidence) = context.schema_evidence(
                probe,
                &check,
                &exchange,
                schema,
                &json.unwrap_or(Value::Null),
            )
        {
            tally.fail(evidence);
            continue;
        }
        tally.pass(check);
    }
    tally.outcome()
}

/// Test 7, Skill: every declared operation answers a valid example in its declared output
/// schema (the description an agent reads matches the behaviour).
pub(crate) async fn skill(context: &Context<'_>) -> Outcome {
    let (endpoint, probe) = match context.http_calling_the_operation() {
        Ok(http) => http,
        Err(skip) => return skip,
    };
    let examples = context.tool.examples();
    if examples.is_empty() {
        return Outcome::Skip {
            reason: "the tool document gives no example input (`conformance.examples`)".to_string(),
        };
    }
    let mut tally = Tally::default();
    if !context.require_credential(probe, &mut tally, "the operation answers its examples") {
        return tally.outcome();
    }
    let operation = format!("{} {}", method_text(endpoint.method), endpoint.path);
    for (index, example) in examples.iter().enumerate() {
        let label = example.name.as_ref().map_or_else(
            || format!("#{}", index + 1),
            |name| format!("`{}`", name.value),
        );
        let check = format!("{operation} answers example {label} in its output schema");
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
        let exchange = context
            .call_operation(
                endpoint,
                probe,
                &example.input.value,
                Credential::Valid,
                true,
            )
            .await;
        if !is_success(&exchange) {
            tally.fail(probe.evidence(&check, &exchange, "expected 2xx for a valid example"));
            continue;
        }
        let Some(body) = exchange.response().and_then(|r| r.json()) else {
            tally.fail(probe.evidence(&check, &exchange, "the answer is not JSON"));
            continue;
        };
        match context.schema_evidence(
            probe,
            &check,
            &exchange,
            &context.tool.document.output,
            &body,
        ) {
            Some(evidence) => tally.fail(evidence),
            None => tally.pass(check),
        }
    }
    tally.outcome()
}

#[cfg(test)]
mod tests {
    use super::{invalid_inputs, same_path};
    use serde_json::json;

    #[test]
    fn openapi_server_prefixes_come_before_its_paths() {
        use super::server_prefixes;
        assert_eq!(server_prefixes(&json!({})), vec![String::new()]);
        assert_eq!(
            server_prefixes(
                &json!({"servers": [{"url": "https://api.example.com/v1/"}, {"url": "/v1"}]})
            ),
            vec!["/v1".to_string()]
        );
        assert_eq!(
            server_prefixes(&json!({"servers": [{"url": "https://{region}.example.com/{base}"}]})),
            vec![String::new()]
        );
    }

    #[test]
    fn an_llms_txt_title_may_follow_html_comments() {
        use super::first_content_line;
        assert_eq!(
            first_content_line("<!-- generated -->\n\n<!-- two\nlines -->\n# Facts\n"),
            Some("# Facts")
        );
        assert_eq!(first_content_line("\n# Title"), Some("# Title"));
        assert_eq!(first_content_line("<!-- never closed\n# Title"), None);
    }

    #[test]
    fn operations_are_read_from_llms_txt_prose() {
        use super::operations_named_in;
        let text = "# Tickets\n- `POST /tickets/search`: search.\n- GET /tickets/{id}, or (DELETE /tickets/{id}).\n- POST /tickets/search again";
        assert_eq!(
            operations_named_in(text),
            vec![
                ("POST".to_string(), "/tickets/search".to_string()),
                ("GET".to_string(), "/tickets/{id}".to_string()),
                ("DELETE".to_string(), "/tickets/{id}".to_string()),
            ]
        );
    }

    #[test]
    fn in_a_query_a_number_for_a_string_is_no_wrong_type() {
        let schema = json!({
            "type": "object",
            "properties": {"entity": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["entity"],
        });
        let input = json!({"entity": "acme", "limit": 3});
        let in_body = invalid_inputs(&schema, &input, false, &[])
            .wrong_type
            .unwrap();
        assert_eq!(in_body.1["entity"], json!(12345));
        let in_query = invalid_inputs(&schema, &input, true, &[])
            .wrong_type
            .unwrap();
        assert_eq!(in_query.1["limit"], json!("not a number"));
        assert_eq!(in_query.1["entity"], json!("acme"));
        let strings_only = json!({"type": "object", "properties": {"entity": {"type": "string"}}});
        assert!(
            invalid_inputs(&strings_only, &input, true, &[])
                .wrong_type
                .is_none()
        );
    }

    #[test]
    fn template_segments_match_template_segments_only() {
        assert!(same_path("/events/{id}", "/events/{event_id}"));
        assert!(same_path("/events/", "/events"));
        assert!(!same_path("/events/latest", "/events/{event_id}"));
        assert!(!same_path("/events", "/events/{event_id}"));
        assert!(same_path("/agents/{name}", "/agents/helpdesk"));
    }
}
