//! The HTTP surface (OAS-S1..S3): agent documents, engagements, reviews and discovery.
//! Every 4xx and 5xx answer is a JSON error `{"error": {"status", "code", "message"}}`.

use std::net::SocketAddr;
use std::sync::Arc;

use agentc_runtime::UserIdentity;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::discovery;
use crate::engine::{DecideError, Engine, StartError};
use crate::store::{EngagementRecord, ReviewRecord, StoreError, StoredDecision};

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a machine-readable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} here"),
        )
    }

    fn store(error: &StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            "the server could not read or write its store",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}
        });
        let mut response = (self.status, json_body(&body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentc\""),
            );
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

fn json_body(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_string())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json_body(value),
    )
        .into_response()
}

type Shared = State<Arc<Engine>>;

/// The router over an engine.
pub fn router(engine: Arc<Engine>) -> Router {
    // Discovery is public, but not free: each GET is counted against its client, so
    // that the documents cannot be fetched without bound. The layer is added to the
    // GET handlers only; a POST of an engagement is counted by `caller` instead.
    let limited = || axum::middleware::from_fn_with_state(Arc::clone(&engine), limit_discovery);
    Router::new()
        .route("/agents", get(list_agents).layer(limited()))
        .route(
            "/agents/{name}",
            get(agent_document).layer(limited()).post(start_engagement),
        )
        .route(
            "/agents/{name}/manifest",
            get(agent_manifest).layer(limited()),
        )
        .route(
            "/engagements/{id}",
            get(read_engagement).post(add_engagement_input),
        )
        .route("/reviews", get(list_reviews))
        .route("/reviews/{id}", get(read_review).post(decide_review))
        .route("/llms.txt", get(llms_txt).layer(limited()))
        .route("/openapi.json", get(openapi).layer(limited()))
        .route("/healthz", get(health))
        .route(
            "/.well-known/agent-card.json",
            get(agent_card).layer(limited()),
        )
        .route("/mcp/server-card", get(mcp_server_card).layer(limited()))
        .merge(mcp_router(&engine))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::clone(&engine))
        .merge(console_router_or_none(&engine))
}

/// The review console (`/console`), or no routes when the process cannot draw its
/// session key (then nobody can sign in, rather than sign in with a weak key).
fn console_router_or_none(engine: &Arc<Engine>) -> Router {
    match crate::console::console_router(Arc::clone(engine)) {
        Ok(console) => console,
        Err(error) => {
            tracing::error!(%error, "the review console is not served");
            Router::new()
        }
    }
}

/// AGX-M4: rmcp's streamable-HTTP service at `/mcp`, every request authenticated as the
/// API's are (`caller`: failure limits, the per-user rate limit) before rmcp reads it.
fn mcp_router(engine: &Arc<Engine>) -> Router<Arc<Engine>> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let mut config = StreamableHttpServerConfig::default();
    config.max_request_body_bytes = engine.config().max_body_bytes;
    // The Host header is not trusted for links (`--public-url` is), and every request
    // is authenticated; the loopback names and the public URL's host are accepted.
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(host) = public_host(engine.public_url()) {
        hosts.push(host);
    }
    config = config.with_allowed_hosts(hosts);
    let factory_engine = Arc::clone(engine);
    let service = StreamableHttpService::new(
        move || {
            Ok(crate::mcp::HostedAgentsMcp::new(Arc::clone(
                &factory_engine,
            )))
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(engine),
            authenticate_mcp,
        ))
}

/// The host (and port) of a public URL, as a `Host` header would carry it.
fn public_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| authority.to_string())
}

async fn authenticate_mcp(
    State(engine): Shared,
    peer: Peer,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let user = caller(&engine, peer, request.headers());
    match user {
        Ok(user) => {
            request
                .extensions_mut()
                .insert(agentc_mcp::gateway::GatewayCaller(user));
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn agent_card(State(engine): Shared) -> Response {
    json(
        StatusCode::OK,
        &discovery::agent_card(&engine, engine.public_url()),
    )
}

async fn mcp_server_card(State(engine): Shared) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/mcp-server-card+json")],
        json_body(&discovery::mcp_server_card(engine.public_url())),
    )
        .into_response()
}

async fn unknown_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        "no such route; see /openapi.json or /llms.txt",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

fn path_value(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(value)| value).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the path parameter is not valid",
        )
    })
}

/// The TCP peer's address, when the connection gave one (never a forwarding header a
/// client could write: behind a proxy, every client shares the proxy's address).
#[derive(Debug, Clone, Copy)]
pub struct Peer(Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

impl Peer {
    /// The key the peer is counted under.
    fn key(self) -> String {
        self.0
            .map(crate::auth::address_key)
            .unwrap_or_else(|| "unknown".to_string())
    }
}

/// Refuses a request from an address that has failed to authenticate too often,
/// before its credential is checked, so that guessing is slowed to the limit.
pub(crate) fn check_auth_failures(engine: &Engine, peer: Peer) -> Result<(), ApiError> {
    if let Some(failures) = engine.auth_failures()
        && let Err(wait) = failures.peek(&peer.key())
    {
        tracing::debug!("request refused: too many failed authentications from its address");
        return Err(rate_limited(wait));
    }
    Ok(())
}

/// Counts a failed authentication against the peer's address.
pub(crate) fn record_auth_failure(engine: &Engine, peer: Peer) {
    if let Some(failures) = engine.auth_failures() {
        let _ = failures.check(&peer.key());
    }
}

/// The caller, authenticated and within the rate limit (OAS-C3: the identity becomes
/// the engagement's user). An address over its limit of failed authentications is
/// answered 429 whatever it sends; a request without any credential is not a failed
/// guess and is not counted.
fn caller(engine: &Engine, peer: Peer, headers: &HeaderMap) -> Result<UserIdentity, ApiError> {
    check_auth_failures(engine, peer)?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("\u{0}"))
    };
    let user = engine
        .authenticator()
        .authenticate(text("authorization"), text("x-api-key"))
        .map_err(|failure| {
            use crate::auth::AuthFailure;
            if failure != AuthFailure::Missing {
                record_auth_failure(engine, peer);
            }
            let (code, message) = match failure {
                AuthFailure::Missing => (
                    "unauthenticated",
                    "send `Authorization: Bearer <token>` or `X-Api-Key: <key>`",
                ),
                AuthFailure::Malformed => (
                    "malformed_credentials",
                    "the Authorization header must be `Bearer <token>`",
                ),
                AuthFailure::Unknown => ("invalid_credentials", "the credential is not valid"),
            };
            ApiError::new(StatusCode::UNAUTHORIZED, code, message)
        })?;
    if let Some(limiter) = engine.limiter()
        && let Err(wait) = limiter.check(&user.id)
    {
        return Err(rate_limited(wait));
    }
    Ok(user)
}

/// The answer to a client over its rate limit: 429 with `Retry-After`.
fn rate_limited(wait: std::time::Duration) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {seconds} s"),
    );
    error.retry_after = Some(seconds.max(1));
    error
}

/// Counts a discovery request against its client: the authenticated user when the
/// request carries a valid credential (the user's own bucket), else the peer address.
/// An invalid credential is not an error here, since discovery needs none; it is
/// counted by address like any anonymous request. The address is the TCP peer, never
/// a forwarding header that a client could write: behind a proxy, every client shares
/// the proxy's bucket.
async fn limit_discovery(
    State(engine): Shared,
    peer: Peer,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let headers = request.headers();
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let authorization = headers
            .get("authorization")
            .map(|_| text("authorization").unwrap_or("\u{0}"));
        let api_key = headers
            .get("x-api-key")
            .map(|_| text("x-api-key").unwrap_or("\u{0}"));
        // A credential sent with discovery is a guess like any other: refused from an
        // address over its limit of failures, and counted when it fails.
        if authorization.is_some() || api_key.is_some() {
            check_auth_failures(&engine, peer)?;
        }
        let verdict = match engine.authenticator().authenticate(authorization, api_key) {
            Ok(user) => engine.limiter().map(|limiter| limiter.check(&user.id)),
            Err(failure) => {
                if failure != crate::auth::AuthFailure::Missing {
                    record_auth_failure(&engine, peer);
                }
                engine
                    .anonymous_limiter()
                    .map(|limiter| limiter.check(&peer.key()))
            }
        };
        if let Some(Err(wait)) = verdict {
            return Err(rate_limited(wait));
        }
    }
    Ok(next.run(request).await)
}

/// Reads a JSON object body under the size limit.
async fn json_object(
    engine: &Engine,
    request: Request,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let limit = engine.config().max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // A client sending its body slowly holds a connection; past the timeout it gets
    // 408 and the connection closes (the unread rest of the body is not waited for).
    let timeout = engine.config().body_read_timeout;
    let bytes: Bytes =
        match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), limit)).await
        {
            Ok(read) => read.map_err(|_| too_large())?,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the body did not arrive within {} s", timeout.as_secs_f64()),
                ));
            }
        };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {error}"),
        )
    })?;
    match value {
        serde_json::Value::Object(object) => Ok(object),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "the body must be a JSON object",
        )),
    }
}

/// The `text` input of an engagement (Reading: an agent as a tool takes `{text}`).
fn text_input(
    engine: &Engine,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, ApiError> {
    let Some(value) = body.get("text") else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            "the body needs `text`, the instruction for the agent",
        ));
    };
    let Some(text) = value.as_str() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_type",
            "`text` must be a string",
        ));
    };
    if let Some(extra) = body.keys().find(|key| key.as_str() != "text") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            format!("unknown field `{extra}`; the body is `{{\"text\": ...}}`"),
        ));
    }
    if text.chars().count() > engine.config().max_input_chars {
        // 422 as for any other breach of the request schema (`maxLength`); 413 is for
        // a body over the byte limit.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "input_too_long",
            format!(
                "`text` is longer than {} characters",
                engine.config().max_input_chars
            ),
        ));
    }
    Ok(text.to_string())
}

fn start_error(error: StartError) -> ApiError {
    match error {
        StartError::UnknownAgent => ApiError::not_found("such agent"),
        StartError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry on another instance or later",
        ),
        StartError::Store(error) => ApiError::store(&error),
        StartError::Random(error) => {
            tracing::error!(%error, "no engagement identifier could be made");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not start the engagement",
            )
        }
    }
}

fn see_other(id: &str) -> Response {
    let location = format!("/engagements/{id}");
    let body = serde_json::json!({"engagement": id, "location": location});
    let mut response = json(StatusCode::SEE_OTHER, &body);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The hosted agents, a page at a time, by name.
async fn list_agents(State(engine): Shared, uri: axum::http::Uri) -> Result<Response, ApiError> {
    let page = page_query(uri.query())?;
    let mut list = discovery::agent_list(
        &engine,
        engine.public_url(),
        page.after.as_deref(),
        page.limit,
    );
    if let Some(object) = list.as_object_mut() {
        let next = match object.remove("next_after") {
            Some(serde_json::Value::String(cursor)) => next_link("/agents", page.limit, &cursor),
            _ => serde_json::Value::Null,
        };
        object.insert("next".into(), next);
    }
    Ok(json(StatusCode::OK, &list))
}

/// OAS-S1/S3: the agent document, as YAML.
async fn agent_document(
    State(engine): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_value(path)?;
    let hosted = engine
        .agents()
        .get(&name)
        .ok_or_else(|| ApiError::not_found("such agent"))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/yaml")],
        hosted.document.clone(),
    )
        .into_response())
}

async fn agent_manifest(
    State(engine): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_value(path)?;
    let hosted = engine
        .agents()
        .get(&name)
        .ok_or_else(|| ApiError::not_found("such agent"))?;
    Ok(json(
        StatusCode::OK,
        &discovery::manifest(&engine, &hosted.spec, engine.public_url()),
    ))
}

/// OAS-S3: a POST of JSON to the agent's endpoint starts an engagement; the answer is
/// 303 See Other to where its state is read.
async fn start_engagement(
    State(engine): Shared,
    peer: Peer,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let name = path_value(path)?;
    let user = caller(&engine, peer, request.headers())?;
    if !engine.agents().contains_key(&name) {
        return Err(ApiError::not_found("such agent"));
    }
    let body = json_object(&engine, request).await?;
    let input = text_input(&engine, &body)?;
    let id = engine
        .start(&name, user, input)
        .await
        .map_err(start_error)?;
    Ok(see_other(&id))
}

/// The engagement, if this caller may see it; anyone else gets the same 404 as for an
/// engagement that does not exist.
pub(crate) async fn visible_engagement(
    engine: &Engine,
    user: &UserIdentity,
    id: &str,
) -> Result<EngagementRecord, ApiError> {
    let record = engine
        .store()
        .engagement_summary(id)
        .await
        .map_err(|error| ApiError::store(&error))?
        .ok_or_else(|| ApiError::not_found("such engagement"))?;
    if engine
        .may_read(user, &record)
        .await
        .map_err(|error| ApiError::store(&error))?
    {
        Ok(record)
    } else {
        Err(ApiError::not_found("such engagement"))
    }
}

/// What a failed `exposes` says to the caller: its kind and key, never the evaluation's
/// error text, which may quote the tool data it failed on.
pub const EXPOSES_FAILED: &str = "exposes could not be evaluated";

/// The status as the caller sees it. A failure of `exposes` keeps its kind and key and
/// a fixed detail, whatever was stored (a record written before the runtime stopped
/// recording the error text, or by another runtime).
fn public_status(status: &serde_json::Value) -> serde_json::Value {
    let mut status = status.clone();
    if let Some(reason) = status
        .get_mut("reason")
        .and_then(serde_json::Value::as_object_mut)
        && reason.get("kind").and_then(serde_json::Value::as_str) == Some("exposes")
    {
        reason.retain(|field, _| field == "kind" || field == "key");
        reason.insert(
            "detail".into(),
            serde_json::Value::String(EXPOSES_FAILED.into()),
        );
    }
    status
}

/// OAS-S3 and OAS-X1: the state is the status, the text and the exposes — nothing else
/// of the engagement.
pub(crate) fn engagement_view(record: &EngagementRecord) -> serde_json::Value {
    let mut view = serde_json::json!({
        "id": record.id,
        "agent": record.agent,
        "status": public_status(&record.status),
        "text": record.text,
        "exposes": record.exposes,
    });
    if let Some(review) = record
        .status
        .get("review")
        .and_then(serde_json::Value::as_str)
        && let Some(object) = view.as_object_mut()
    {
        object.insert(
            "review".into(),
            serde_json::Value::String(format!("/reviews/{review}")),
        );
    }
    view
}

/// The longest `?wait=` a client may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// `?wait=SECONDS` of `GET /engagements/{id}`: how long to hold the answer while the
/// engagement runs (1 to 30); other parameters are ignored.
fn wait_query(query: Option<&str>) -> Result<Option<std::time::Duration>, ApiError> {
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "wait" {
            return value
                .parse::<u64>()
                .ok()
                .filter(|seconds| (1..=MAX_WAIT_SECONDS).contains(seconds))
                .map(|seconds| Some(std::time::Duration::from_secs(seconds)))
                .ok_or_else(|| {
                    invalid_query("`wait` must be a whole number of seconds from 1 to 30")
                });
        }
    }
    Ok(None)
}

/// An engagement's state (OAS-X1: status, text, exposes). With `?wait=SECONDS`, the
/// answer is held while the engagement runs, up to that long, so a client learns of
/// its end (or of a review it waits for) at once rather than by polling.
async fn read_engagement(
    State(engine): Shared,
    peer: Peer,
    headers: HeaderMap,
    uri: axum::http::Uri,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_value(path)?;
    let user = caller(&engine, peer, &headers)?;
    let wait = wait_query(uri.query())?;
    // Visibility is checked before any wait, and the waited-for state is shown only
    // through the same check.
    let mut record = visible_engagement(&engine, &user, &id).await?;
    if let Some(limit) = wait
        && crate::store::RUNNING_STATES.contains(&record.state())
    {
        engine
            .wait_while_running(&id, limit)
            .await
            .map_err(|error| ApiError::store(&error))?;
        record = visible_engagement(&engine, &user, &id).await?;
    }
    Ok(json(StatusCode::OK, &engagement_view(&record)))
}

/// Adds user input to an engagement that has yielded; only its own user may.
async fn add_engagement_input(
    State(engine): Shared,
    peer: Peer,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = path_value(path)?;
    let user = caller(&engine, peer, request.headers())?;
    let record = visible_engagement(&engine, &user, &id).await?;
    if record.user.id != user.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_the_user",
            "only the engagement's own user may add input",
        ));
    }
    let body = json_object(&engine, request).await?;
    let input = text_input(&engine, &body)?;
    if record.state() != "completed" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_waiting_for_input",
            format!(
                "the engagement is `{}`; input can be added once it has answered",
                record.state()
            ),
        ));
    }
    engine
        .add_input(&record, input)
        .await
        .map_err(start_error)?;
    Ok(see_other(&id))
}

/// What a reviewer sees: the pending call and the engagement, to decide "given the
/// current engagement" (OAS-C7).
fn review_view(review: &ReviewRecord) -> serde_json::Value {
    serde_json::json!({
        "id": review.id,
        "engagement": review.engagement,
        "agent": review.agent,
        "reviewer": review.reviewer,
        "tool": review.tool,
        "stage": review.stage,
        "inputs": review.inputs,
        "outputs": review.outputs,
        "call_hash": review.call_hash,
        "engagement_state": review.engagement_state,
        "decision": review.decision,
    })
}

/// How many items a list answers by default, and at most (`?limit=`).
pub const DEFAULT_PAGE_LIMIT: usize = 50;
/// The largest `?limit=` a list accepts.
pub const MAX_PAGE_LIMIT: usize = 200;

/// A page of a list: `?limit=N` (1 to [`MAX_PAGE_LIMIT`], default
/// [`DEFAULT_PAGE_LIMIT`]) and `?after=CURSOR`, the `next` link's cursor.
struct PageQuery {
    limit: usize,
    after: Option<String>,
}

fn invalid_query(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// Reads `limit` and `after` from a query string. A cursor is short and made of
/// letters, digits, `_`, `-` and `.` (what the server writes), so it needs no decoding;
/// anything else is refused. Other parameters are ignored.
fn page_query(query: Option<&str>) -> Result<PageQuery, ApiError> {
    let mut page = PageQuery {
        limit: DEFAULT_PAGE_LIMIT,
        after: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                page.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE_LIMIT).contains(limit))
                    .ok_or_else(|| invalid_query("`limit` must be a whole number from 1 to 200"))?;
            }
            "after" => {
                let valid = !value.is_empty()
                    && value.len() <= 200
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !valid {
                    return Err(invalid_query("`after` must be the cursor of a `next` link"));
                }
                page.after = Some(value.to_string());
            }
            _ => {}
        }
    }
    Ok(page)
}

/// The link to the page after `cursor`.
fn next_link(path: &str, limit: usize, cursor: &str) -> serde_json::Value {
    serde_json::Value::String(format!("{path}?limit={limit}&after={cursor}"))
}

/// A review's position in the list: its creation time and identifier.
pub(crate) fn review_cursor(review: &ReviewRecord) -> String {
    format!("{}.{}", review.created_at_ms, review.id)
}

/// A `next` cursor, or `None` when `cursor` is not one.
pub(crate) fn parse_review_cursor_text(cursor: &str) -> Option<(i64, &str)> {
    parse_review_cursor(cursor).ok()
}

fn parse_review_cursor(cursor: &str) -> Result<(i64, &str), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id)))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| invalid_query("`after` must be the cursor of a `next` link"))
}

/// The reviews waiting for the caller, a page at a time, oldest first.
async fn list_reviews(
    State(engine): Shared,
    peer: Peer,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let user = caller(&engine, peer, &headers)?;
    let page = page_query(uri.query())?;
    let after = page.after.as_deref().map(parse_review_cursor).transpose()?;
    let mut names = vec![user.id.as_str()];
    if let Some(email) = &user.email {
        names.push(email);
    }
    let mut reviews = engine
        .store()
        .pending_reviews_page(&names, after, page.limit + 1)
        .await
        .map_err(|error| ApiError::store(&error))?;
    let more = reviews.len() > page.limit;
    reviews.truncate(page.limit);
    let next = match reviews.last() {
        Some(last) if more => next_link("/reviews", page.limit, &review_cursor(last)),
        _ => serde_json::Value::Null,
    };
    let views: Vec<serde_json::Value> = reviews.iter().map(review_view).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"reviews": views, "next": next}),
    ))
}

async fn read_review(
    State(engine): Shared,
    peer: Peer,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_value(path)?;
    let user = caller(&engine, peer, &headers)?;
    let review = engine
        .store()
        .review(&id)
        .await
        .map_err(|error| ApiError::store(&error))?
        .filter(|review| !review.reviewer_is_agent && Engine::is_reviewer(&user, &review.reviewer))
        .ok_or_else(|| ApiError::not_found("such review"))?;
    Ok(json(StatusCode::OK, &review_view(&review)))
}

/// OAS-C7: the named reviewer approves (naming the exact call by its hash) or refuses.
async fn decide_review(
    State(engine): Shared,
    peer: Peer,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = path_value(path)?;
    let user = caller(&engine, peer, request.headers())?;
    let body = json_object(&engine, request).await?;
    let field = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
    let decision = match field("decision") {
        Some("approve") => match field("call_hash") {
            Some(hash) => StoredDecision::Approve {
                call_hash: hash.to_string(),
            },
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_field",
                    "an approval needs `call_hash`, the hash of the call it approves",
                ));
            }
        },
        Some("refuse") => StoredDecision::Refuse {
            reason: field("reason")
                .unwrap_or("refused by the reviewer")
                .to_string(),
        },
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_decision",
                "`decision` must be \"approve\" or \"refuse\"",
            ));
        }
    };
    match engine.decide(&user, &id, decision).await {
        Ok(review) => Ok(json(StatusCode::OK, &review_view(&review))),
        Err(DecideError::NotFound) => Err(ApiError::not_found("such review")),
        Err(DecideError::AlreadyDecided) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            "this review has already been decided",
        )),
        Err(DecideError::WrongCall) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_call",
            "the approval names another call than the pending one (OAS-C7: an approval is bound to the exact call)",
        )),
        Err(DecideError::Store(error)) => Err(ApiError::store(&error)),
    }
}

async fn llms_txt(State(engine): Shared) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        discovery::llms_txt(&engine, engine.public_url()),
    )
        .into_response()
}

async fn openapi(State(engine): Shared) -> Response {
    json(
        StatusCode::OK,
        &discovery::openapi(&engine, engine.public_url()),
    )
}

async fn health(State(engine): Shared) -> Response {
    let state = if engine.is_shutting_down() {
        "shutting_down"
    } else {
        "ok"
    };
    let status = if engine.is_shutting_down() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(
        status,
        &serde_json::json!({"status": state, "running_engagements": engine.running()}),
    )
}
