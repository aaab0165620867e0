//! A mock of a tool's service, started from its tool document: a wiremock server with
//! one responder that behaves as the document says — docs served, credentials checked
//! per the auth scheme, bad input refused with a structured 4xx, the declared rate limit
//! enforced with 429 and `Retry-After`, the CRUD resource kept in memory, known pitfalls
//! answered correctly, and the operation answered in its output schema.
//!
//! [`Faults`] break one behaviour each. The suite's own tests use them to show that each
//! of the seven tests can fail, and fails for the right reason.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentc_compiler::documents::tool::{AuthScheme, CrudUpdateMethod};
use agentc_runtime::Secret;
use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::checks::same_path;
use crate::schema::synthesize;
use crate::tool::{Endpoint, ToolUnderTest, method_text};

/// Behaviours a mock can be told to break, one per test of the suite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The docs are not served (discovery fails).
    pub no_docs: bool,
    /// Every request is accepted whatever its credential (auth fails).
    pub no_auth_check: bool,
    /// A delete answers 204 but keeps the resource (CRUD fails).
    pub delete_does_not_delete: bool,
    /// Bad input gets a 500 instead of a 4xx (error fails).
    pub server_error_on_bad_input: bool,
    /// The rate limit is not enforced (rate limit fails).
    pub no_rate_limit: bool,
    /// Known pitfalls are no longer handled: they get the ordinary answer (pitfall fails).
    pub pitfalls_regressed: bool,
    /// The operation answers outside its output schema (skill fails).
    pub output_breaks_schema: bool,
}

/// A running mock of one tool.
pub struct ToolMock {
    server: MockServer,
    credential: Option<Secret>,
}

impl std::fmt::Debug for ToolMock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ToolMock")
            .field("uri", &self.server.uri())
            .finish_non_exhaustive()
    }
}

impl ToolMock {
    /// Starts the mock on 127.0.0.1 (a free port). Fails when the tool has no `http`
    /// binding, since there is nothing HTTP to imitate.
    pub async fn start(tool: &ToolUnderTest, faults: Faults) -> Result<ToolMock, String> {
        Self::start_with(tool, faults, false).await
    }

    /// Like [`ToolMock::start`]; with `record`, the mock keeps every request it gets, for
    /// [`ToolMock::requests`] (a dry run's plan).
    pub async fn start_with(
        tool: &ToolUnderTest,
        faults: Faults,
        record: bool,
    ) -> Result<ToolMock, String> {
        let endpoint = tool.endpoint()?;
        let credential = match tool.auth_scheme() {
            AuthScheme::None => None,
            AuthScheme::Basic => Some(format!("agentc:mock-secret-{}", tool.name())),
            _ => Some(format!("agentc-mock-secret-{}", tool.name())),
        };
        let responder = ToolResponder {
            tool: tool.clone(),
            endpoint,
            faults,
            credential: credential.clone(),
            state: Mutex::new(MockState::default()),
        };
        let builder = MockServer::builder();
        let builder = if record {
            builder
        } else {
            builder.disable_request_recording()
        };
        let server = builder.start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(responder)
            .mount(&server)
            .await;
        Ok(ToolMock {
            server,
            credential: credential.map(Secret::new),
        })
    }

    /// The mock's base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// The credential the mock accepts.
    pub fn credential(&self) -> Option<Secret> {
        self.credential.clone()
    }

    /// The requests the mock got, in order, as `METHOD /path?query (credential)`: what a
    /// live run would send to a service that answers as the document says. Empty unless
    /// started with `record`.
    pub async fn requests(&self) -> Vec<String> {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .map(|request| {
                let mut line = format!("{} {}", request.method, request.url.path());
                if let Some(query) = request.url.query() {
                    line.push('?');
                    line.push_str(query);
                }
                let credentialed = request.headers.contains_key("authorization")
                    || request
                        .headers
                        .keys()
                        .any(|name| name.as_str().contains("key"));
                line.push_str(if credentialed {
                    " (with a credential)"
                } else {
                    " (no credential)"
                });
                if !request.body.is_empty() {
                    line.push_str(&format!(", {}-byte body", request.body.len()));
                }
                line
            })
            .collect()
    }
}

#[derive(Default)]
struct MockState {
    accepted: VecDeque<Instant>,
    resources: BTreeMap<String, Value>,
    next_id: u64,
}

struct ToolResponder {
    tool: ToolUnderTest,
    endpoint: Endpoint,
    faults: Faults,
    credential: Option<String>,
    state: Mutex<MockState>,
}

fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"code": code, "message": message}}))
}

/// The path of `location` (a path or an absolute URL).
fn location_path(location: &str) -> String {
    if location.starts_with('/') {
        return location.to_string();
    }
    url::Url::parse(location).map_or_else(|_| location.to_string(), |url| url.path().to_string())
}

impl Respond for ToolResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(mut state) = self.state.lock() else {
            return error(500, "internal", "the mock's state is unavailable");
        };
        let method = request.method.as_str().to_ascii_uppercase();
        let path = request.url.path().to_string();
        let conformance = self.tool.conformance();

        // Docs are public and not rate limited: an agent must be able to find them.
        if let Some(docs) = conformance.and_then(|c| c.docs.as_ref())
            && method == "GET"
        {
            if docs
                .openapi
                .as_ref()
                .is_some_and(|location| location_path(&location.value) == path)
            {
                if self.faults.no_docs {
                    return error(404, "not_found", "no such route");
                }
                return ResponseTemplate::new(200).set_body_json(self.openapi());
            }
            if docs
                .llms_txt
                .as_ref()
                .is_some_and(|location| location_path(&location.value) == path)
            {
                if self.faults.no_docs {
                    return error(404, "not_found", "no such route");
                }
                return ResponseTemplate::new(200).set_body_raw(self.llms_txt(), "text/plain");
            }
        }

        // The declared rate limit, over a sliding window of accepted requests.
        if let Some(limit) = conformance.and_then(|c| c.rate_limit.as_ref())
            && !self.faults.no_rate_limit
        {
            let window = Duration::from_secs(limit.per_seconds.value);
            let now = Instant::now();
            while state
                .accepted
                .front()
                .is_some_and(|at| now.duration_since(*at) >= window)
            {
                state.accepted.pop_front();
            }
            let requests = usize::try_from(limit.requests.value).unwrap_or(usize::MAX);
            if state.accepted.len() >= requests {
                let wait = state.accepted.front().map_or(window, |oldest| {
                    window.saturating_sub(now.duration_since(*oldest))
                });
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return error(429, "rate_limited", "too many requests")
                    .insert_header("retry-after", seconds.max(1).to_string().as_str());
            }
            state.accepted.push_back(now);
        }

        if u64::try_from(request.body.len()).unwrap_or(u64::MAX) > self.tool.max_request_bytes() {
            return error(413, "too_large", "the request body is too large");
        }

        let authenticated = self.authenticated(request);

        // Known pitfalls are answered as the document says is correct.
        if !self.faults.pitfalls_regressed {
            for pitfall in conformance
                .and_then(|c| c.pitfalls.as_deref())
                .unwrap_or_default()
            {
                // A checked HTTP tool's pitfall always records a request (E0308).
                let (Some(recorded), Some(expected_status)) =
                    (&pitfall.request, &pitfall.expect.status)
                else {
                    continue;
                };
                let wants_credential = recorded.authenticated.as_ref().is_none_or(|a| a.value);
                let body_matches = recorded.body.as_ref().is_none_or(|body| {
                    serde_json::from_slice::<Value>(&request.body)
                        .is_ok_and(|sent| sent == body.value)
                });
                let path_matches = {
                    let mut full = path.clone();
                    if let Some(query) = request.url.query() {
                        full.push('?');
                        full.push_str(query);
                    }
                    full == recorded.path.value || path == recorded.path.value
                };
                if method_text(recorded.method) == method
                    && path_matches
                    && body_matches
                    && (!wants_credential || authenticated)
                {
                    let expect = &pitfall.expect;
                    let mut body = expect.body.as_ref().map_or_else(
                        || {
                            expect
                                .body_schema
                                .as_ref()
                                .map_or(json!({}), |schema| synthesize(&schema.value))
                        },
                        |body| body.value.clone(),
                    );
                    if expected_status.value >= 400
                        && body.as_object().is_some_and(|o| o.is_empty())
                    {
                        body = json!({"error": {"code": "refused", "message": pitfall.description.value}});
                    }
                    let status = u16::try_from(expected_status.value).unwrap_or(500);
                    return ResponseTemplate::new(status).set_body_json(body);
                }
            }
        }

        if !authenticated && !self.faults.no_auth_check {
            return error(401, "unauthorized", "a valid credential is required");
        }

        if let Some(crud) = conformance.and_then(|c| c.crud.as_ref()) {
            let collection = crud.path.value.trim_end_matches('/');
            if path == collection && method == "POST" {
                let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
                    return self.bad_input("the body must be a JSON object");
                };
                // When the tool's own operation is this create, its input schema applies.
                let operation_path = self.endpoint.path.split('?').next().unwrap_or_default();
                if operation_path.trim_end_matches('/') == collection
                    && method_text(self.endpoint.method) == "POST"
                    && let Err(problem) = jsonschema::validate(
                        &self.tool.document.input.value,
                        &Value::Object(body.clone()),
                    )
                {
                    return self.bad_input(&format!("invalid input: {problem}"));
                }
                // An upsert replaces the resource its natural key (the read key, else
                // the id field) names.
                if crud.update_method == Some(CrudUpdateMethod::Post) {
                    let key = crud
                        .read_query
                        .as_ref()
                        .or(crud.id_field.as_ref())
                        .map(|key| key.value.clone());
                    let existing = key.and_then(|key| {
                        let wanted = body.get(&key)?.clone();
                        state
                            .resources
                            .iter()
                            .find(|(_, resource)| resource.get(&key) == Some(&wanted))
                            .map(|(id, _)| id.clone())
                    });
                    if let Some(id) = existing
                        && let Some(Value::Object(fields)) = state.resources.get_mut(&id)
                    {
                        for (key, value) in body {
                            fields.insert(key, value);
                        }
                        return ResponseTemplate::new(200)
                            .set_body_json(Value::Object(fields.clone()));
                    }
                }
                state.next_id += 1;
                let id = format!("mock{:012}", state.next_id);
                let mut resource = synthesize(&crud.schema.value);
                if let Value::Object(fields) = &mut resource {
                    for (key, value) in body {
                        fields.insert(key, value);
                    }
                    if let Some(field) = &crud.id_field {
                        fields.insert(field.value.clone(), Value::String(id.clone()));
                    }
                }
                state.resources.insert(id.clone(), resource.clone());
                return ResponseTemplate::new(201)
                    .insert_header("location", format!("{collection}/{id}").as_str())
                    .set_body_json(resource);
            }
            // A read by query: every resource whose field is the value asked for.
            if let Some(query) = &crud.read_query
                && path == collection
                && method == "GET"
            {
                let wanted = request
                    .url
                    .query_pairs()
                    .find(|(key, _)| *key == query.value.as_str())
                    .map(|(_, value)| value.into_owned());
                let found: Vec<Value> = state
                    .resources
                    .values()
                    .filter(|resource| {
                        resource.get(&query.value).is_some_and(|actual| {
                            wanted.as_deref()
                                == Some(&match actual {
                                    Value::String(text) => text.clone(),
                                    other => other.to_string(),
                                })
                        })
                    })
                    .cloned()
                    .collect();
                return ResponseTemplate::new(200).set_body_json(Value::Array(found));
            }
            // The operation's own path wins over an item path it happens to look like
            // (`/tickets/search` beside `/tickets/{id}`).
            let operation_path = self.endpoint.path.split('?').next().unwrap_or_default();
            if let Some(id) = path
                .strip_prefix(collection)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|id| {
                    !id.is_empty() && !id.contains('/') && !same_path(operation_path, &path)
                })
            {
                let id = id.to_string();
                let update = match crud.update_method {
                    Some(CrudUpdateMethod::Patch) => "PATCH",
                    _ => "PUT",
                };
                match method.as_str() {
                    "GET" => {
                        return match state.resources.get(&id) {
                            Some(resource) => ResponseTemplate::new(200).set_body_json(resource),
                            None => error(404, "not_found", "no such resource"),
                        };
                    }
                    "DELETE" if crud.delete.as_ref().is_some_and(|delete| !delete.value) => {
                        return error(405, "method_not_allowed", "delete is not offered");
                    }
                    "DELETE" => {
                        let existed = if self.faults.delete_does_not_delete {
                            state.resources.contains_key(&id)
                        } else {
                            state.resources.remove(&id).is_some()
                        };
                        return if existed {
                            ResponseTemplate::new(204)
                        } else {
                            error(404, "not_found", "no such resource")
                        };
                    }
                    _ if method == update => {
                        let Ok(Value::Object(body)) =
                            serde_json::from_slice::<Value>(&request.body)
                        else {
                            return self.bad_input("the body must be a JSON object");
                        };
                        let Some(resource) = state.resources.get_mut(&id) else {
                            return error(404, "not_found", "no such resource");
                        };
                        if let Value::Object(fields) = resource {
                            for (key, value) in body {
                                if crud
                                    .id_field
                                    .as_ref()
                                    .is_none_or(|field| key != field.value)
                                {
                                    fields.insert(key, value);
                                }
                            }
                        }
                        return ResponseTemplate::new(200).set_body_json(resource.clone());
                    }
                    _ => return error(405, "method_not_allowed", "method not allowed"),
                }
            }
        }

        let operation_path = self.endpoint.path.split('?').next().unwrap_or_default();
        if same_path(operation_path, &path) && method == method_text(self.endpoint.method) {
            let mut input = if method == "GET" {
                query_input(&request.url)
            } else {
                match serde_json::from_slice::<Value>(&request.body) {
                    Ok(input) => input,
                    Err(_) => return self.bad_input("the body is not JSON"),
                }
            };
            // Path parameters (AGX-H1) are part of the input the schema judges.
            if let Value::Object(fields) = &mut input {
                for (name, value) in self.path_parameters(operation_path, &path) {
                    fields.insert(name, value);
                }
            }
            if let Err(problem) = jsonschema::validate(&self.tool.document.input.value, &input) {
                return self.bad_input(&format!("invalid input: {problem}"));
            }
            if self.faults.output_breaks_schema {
                return ResponseTemplate::new(200)
                    .set_body_json(json!("an answer outside the declared schema"));
            }
            let examples = self.tool.examples();
            let output = examples
                .iter()
                .find(|example| example.input.value == input)
                .or_else(|| examples.first())
                .and_then(|example| example.output.as_ref())
                .map_or_else(
                    || synthesize(&self.tool.document.output.value),
                    |output| output.value.clone(),
                );
            return ResponseTemplate::new(200).set_body_json(output);
        }
        if same_path(operation_path, &path) {
            return error(405, "method_not_allowed", "method not allowed");
        }
        error(404, "not_found", "no such route")
    }
}

impl ToolResponder {
    /// The values of the operation's path parameters in `path`, decoded, each read as
    /// JSON when its schema wants a number or boolean.
    fn path_parameters(&self, template: &str, path: &str) -> Vec<(String, Value)> {
        let properties = self.tool.document.input.value.get("properties");
        template
            .split('/')
            .zip(path.split('/'))
            .filter_map(|(part, text)| {
                let name = part.strip_prefix('{')?.strip_suffix('}')?;
                let decoded = percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned();
                let wants_text = properties
                    .and_then(|properties| properties.get(name))
                    .and_then(|property| property.get("type"))
                    .is_none_or(|kind| kind == "string");
                let value = if wants_text {
                    Value::String(decoded)
                } else {
                    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
                };
                Some((name.to_string(), value))
            })
            .collect()
    }
}

/// A GET operation's input, from its query: each value read as JSON when it is JSON
/// (numbers, booleans), otherwise as a string.
fn query_input(url: &url::Url) -> Value {
    let mut input = serde_json::Map::new();
    for (key, value) in url.query_pairs() {
        let parsed = serde_json::from_str::<Value>(&value)
            .ok()
            .filter(|parsed| !parsed.is_string())
            .unwrap_or_else(|| Value::String(value.to_string()));
        input.insert(key.into_owned(), parsed);
    }
    Value::Object(input)
}

impl ToolResponder {
    fn bad_input(&self, message: &str) -> ResponseTemplate {
        if self.faults.server_error_on_bad_input {
            return ResponseTemplate::new(500).set_body_string("internal server error");
        }
        error(400, "invalid_input", message)
    }

    fn authenticated(&self, request: &Request) -> bool {
        let Some(secret) = &self.credential else {
            return true;
        };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        match self.tool.auth_scheme() {
            AuthScheme::None => true,
            AuthScheme::Bearer | AuthScheme::Oauth2 => {
                header("authorization").is_some_and(|value| value == format!("Bearer {secret}"))
            }
            AuthScheme::Basic => header("authorization").is_some_and(|value| {
                value.strip_prefix("Basic ").is_some_and(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .is_ok_and(|decoded| decoded == secret.as_bytes())
                })
            }),
            AuthScheme::ApiKey => {
                header(&self.tool.api_key_header()).is_some_and(|value| &value == secret)
            }
        }
    }

    fn openapi(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (index, (method, path)) in self.tool.operations().into_iter().enumerate() {
            if let Some(object) = paths
                .entry(path)
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                object.insert(
                    method,
                    json!({"operationId": format!("{}_{index}", self.tool.name()), "responses": {}}),
                );
            }
        }
        let operation_path = self.endpoint.path.split('?').next().unwrap_or_default();
        let method = method_text(self.endpoint.method).to_ascii_lowercase();
        if let Some(operation) = paths
            .get_mut(operation_path)
            .and_then(|path| path.get_mut(&method))
        {
            operation["summary"] = json!(self.tool.document.description.value);
            operation["requestBody"] = json!({"content": {"application/json": {"schema": self.tool.document.input.value}}});
            operation["responses"] = json!({"200": {"description": "the output", "content": {"application/json": {"schema": self.tool.document.output.value}}}});
        }
        json!({
            "openapi": "3.1.0",
            "info": {"title": self.tool.name(), "version": "1.0.0", "description": self.tool.document.description.value},
            "paths": paths,
        })
    }

    fn llms_txt(&self) -> String {
        let mut text = format!(
            "# {}\n\n> {}\n\n## Operations\n\n",
            self.tool.name(),
            self.tool.document.description.value
        );
        for (method, path) in self.tool.operations() {
            text.push_str(&format!("- {} {path}\n", method.to_ascii_uppercase()));
        }
        text
    }
}
