//! HTTP JSON tools, bound from a tool document's `http` binding.
//!
//! A call sends the input as the JSON body (as the query string for GET) and reads the
//! JSON response, under a per-call deadline and a response size limit. Only idempotent
//! requests (GET, PUT, DELETE) are retried, and only when the request cannot have had an
//! effect or the server says it is temporarily unavailable. The credential is applied
//! per the tool's `auth` scheme to the outgoing request alone: it is marked sensitive,
//! never logged and never part of an error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};

use crate::credentials::Secret;
use crate::spec::{
    AuthScheme, HttpBindingSpec, HttpMethod, SpecSet, ToolBinding, ToolBindingSpec, ToolEffect,
};
use crate::tools::{Rerun, ToolBackend, ToolContext, ToolError, ToolRegistry};

/// The per-call deadline when the binding names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read, so that a misbehaving server cannot exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How many times a failed idempotent request is repeated.
pub const MAX_RETRIES: u32 = 2;

/// The pause before the first retry; it doubles before each further one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// A client for tools: it does not follow redirects, because a redirect could carry the
/// credential to a host the tool document does not name.
pub fn http_client() -> Result<reqwest::Client, ToolError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| ToolError::Failed(format!("cannot build the HTTP client: {error}")))
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is larger than the limit.
    TooLarge,
    /// The transport failed.
    Transport(reqwest::Error),
}

/// Reads a response body chunk by chunk, refusing it as soon as it passes `limit`, so
/// that an oversized body is never held in memory in full.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if response
        .content_length()
        .is_some_and(|length| length > limit_u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The outcome of one attempt that did not succeed: whether it may be repeated.
enum AttemptError {
    /// The request cannot have had an effect, or the server asked for a later retry.
    Transient(ToolError),
    /// Anything else; repeating it could not help or would not be safe.
    Final(ToolError),
}

/// A tool reached over HTTP with JSON in and out.
#[derive(Debug, Clone)]
pub struct HttpTool {
    name: String,
    client: reqwest::Client,
    method: HttpMethod,
    url: reqwest::Url,
    /// The binding URL as written, when its path has parameters (AGX-H1): each call's
    /// URL is this, filled from the input.
    path_template: Option<String>,
    timeout: Duration,
    max_response_bytes: usize,
    retry_backoff: Duration,
    auth: AuthScheme,
    /// The header that carries each call's idempotency key (AGX-T2).
    idempotency_header: Option<HeaderName>,
    /// What a call does (AGX-T2), when the tool document says.
    effect: Option<ToolEffect>,
}

impl HttpTool {
    /// A tool for `binding`, with its own client.
    pub fn new(
        name: &str,
        binding: &HttpBindingSpec,
        auth: &AuthScheme,
    ) -> Result<Self, ToolError> {
        Self::with_client(http_client()?, name, binding, auth)
    }

    /// A tool for `binding` that shares `client` (and so its connection pool). The URL
    /// must be absolute `http` or `https`.
    pub fn with_client(
        client: reqwest::Client,
        name: &str,
        binding: &HttpBindingSpec,
        auth: &AuthScheme,
    ) -> Result<Self, ToolError> {
        let invalid = |detail: String| ToolError::InvalidBinding {
            tool: name.to_string(),
            detail,
        };
        let parameters = agentc_compiler::path_template::parameters(&binding.url)
            .map_err(|error| invalid(format!("`{}`: {error}", binding.url)))?;
        // The URL is judged (scheme, loopback) with its parameters filled by a
        // placeholder: only the path can vary between calls.
        let placeholder: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|name| (name.clone(), serde_json::Value::String("x".to_string())))
            .collect();
        let judged = agentc_compiler::path_template::fill(&binding.url, &placeholder)
            .map_err(|error| invalid(error.to_string()))?;
        let url = reqwest::Url::parse(&judged)
            .map_err(|error| invalid(format!("`{}` is not a URL: {error}", binding.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("`{}` is not an http(s) URL", binding.url)));
        }
        // A credential never crosses a network in clear text: with one, plain HTTP only
        // on loopback (the one loopback policy, `agentc_compiler::urls`).
        if url.scheme() == "http"
            && *auth != AuthScheme::None
            && !agentc_compiler::urls::is_loopback(&url)
        {
            return Err(invalid(format!(
                "`{}` would send the tool's credential in clear text: use https (plain http is allowed only on loopback)",
                binding.url
            )));
        }
        if let AuthScheme::ApiKey { header } = auth
            && HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(invalid(format!("`{header}` is not a header name")));
        }
        let idempotency_header = match &binding.idempotency_header {
            None => None,
            Some(header) => Some(
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| invalid(format!("`{header}` is not a header name")))?,
            ),
        };
        Ok(HttpTool {
            name: name.to_string(),
            client,
            method: binding.method,
            url,
            path_template: (!parameters.is_empty()).then(|| binding.url.clone()),
            timeout: binding
                .timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            auth: auth.clone(),
            idempotency_header,
            effect: None,
        })
    }

    /// Sets what a call does (AGX-T2, the tool document's `effect`).
    pub fn with_effect(mut self, effect: Option<ToolEffect>) -> Self {
        self.effect = effect;
        self
    }

    /// Sets the response size limit.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Sets the pause before the first retry.
    pub fn with_retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// The per-call deadline, retries included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn method(&self) -> reqwest::Method {
        match self.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        }
    }

    fn failed(&self, detail: impl std::fmt::Display) -> ToolError {
        ToolError::Failed(format!("tool `{}`: {detail}", self.name))
    }

    /// The call's URL and what is left of the input for its body or query: the binding
    /// URL, or its template filled from the input's path parameters (AGX-H1), which
    /// are then not sent again.
    fn url_for(
        &self,
        input: &serde_json::Value,
    ) -> Result<(reqwest::Url, serde_json::Value), ToolError> {
        let Some(template) = &self.path_template else {
            return Ok((self.url.clone(), input.clone()));
        };
        let serde_json::Value::Object(fields) = input else {
            return Err(self.failed("a tool with path parameters takes an object"));
        };
        // The error names the parameter, never its value (which may be refused data).
        let filled = agentc_compiler::path_template::fill(template, fields)
            .map_err(|error| self.failed(error))?;
        let url = reqwest::Url::parse(&filled)
            .map_err(|_| self.failed("the URL filled from the input is not a URL"))?;
        // Filling changes only the path: the call goes where the binding says.
        if url.origin() != self.url.origin() {
            return Err(self.failed("the URL filled from the input leaves the binding's origin"));
        }
        let rest = agentc_compiler::path_template::without_parameters(template, fields);
        Ok((url, serde_json::Value::Object(rest)))
    }

    /// The URL for a GET: the input object's fields become query parameters.
    fn query_url(
        &self,
        base: reqwest::Url,
        input: &serde_json::Value,
    ) -> Result<reqwest::Url, ToolError> {
        let serde_json::Value::Object(fields) = input else {
            return Err(self.failed("a GET tool's input must be an object"));
        };
        let mut url = base;
        {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in fields {
                match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::Array(items) => {
                        for item in items {
                            pairs.append_pair(key, &query_text(item));
                        }
                    }
                    other => {
                        pairs.append_pair(key, &query_text(other));
                    }
                }
            }
        }
        Ok(url)
    }

    /// Adds the credential per the auth scheme. A scheme that needs a credential and has
    /// none fails the call rather than sending it unauthenticated.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        credential: Option<&Secret>,
    ) -> Result<reqwest::RequestBuilder, ToolError> {
        if self.auth == AuthScheme::None {
            return Ok(request);
        }
        let Some(secret) = credential else {
            return Err(ToolError::MissingCredential(self.name.clone()));
        };
        Ok(match &self.auth {
            AuthScheme::None => request,
            AuthScheme::Bearer | AuthScheme::OAuth2 => request.bearer_auth(secret.expose()),
            AuthScheme::Basic => match secret.expose().split_once(':') {
                Some((user, password)) => request.basic_auth(user, Some(password)),
                None => request.basic_auth(secret.expose(), None::<&str>),
            },
            AuthScheme::ApiKey { header } => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| self.failed("the API key header name is invalid"))?;
                // The value is not quoted in the error, since it is the secret.
                let mut value = HeaderValue::from_str(secret.expose())
                    .map_err(|_| self.failed("the credential is not a valid header value"))?;
                value.set_sensitive(true);
                request.header(name, value)
            }
        })
    }

    async fn attempt(
        &self,
        input: &serde_json::Value,
        credential: Option<&Secret>,
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, AttemptError> {
        let (url, rest) = self.url_for(input).map_err(AttemptError::Final)?;
        let request = if self.method == HttpMethod::Get {
            let url = self.query_url(url, &rest).map_err(AttemptError::Final)?;
            self.client.request(self.method(), url)
        } else {
            self.client.request(self.method(), url).json(&rest)
        };
        let request = match (&self.idempotency_header, idempotency_key) {
            (Some(header), Some(key)) => request.header(header.clone(), key),
            // A tool that takes a key is never called without one: a call made without
            // it could not be told apart from its repetition.
            (Some(_), None) => {
                return Err(AttemptError::Final(
                    self.failed("the call has no idempotency key"),
                ));
            }
            (None, _) => request,
        };
        let request = self
            .authorize(request.header(ACCEPT, "application/json"), credential)
            .map_err(AttemptError::Final)?;
        let response = match request.send().await {
            Ok(response) => response,
            // A connection that was never made cannot have had an effect.
            Err(error) if error.is_connect() => {
                return Err(AttemptError::Transient(
                    self.failed(format!("cannot connect: {}", error.without_url())),
                ));
            }
            Err(error) if error.is_timeout() => {
                return Err(AttemptError::Final(ToolError::Timeout(self.name.clone())));
            }
            Err(error) => {
                return Err(AttemptError::Final(
                    self.failed(format!("request failed: {}", error.without_url())),
                ));
            }
        };
        let status = response.status();
        tracing::debug!(tool = %self.name, method = self.method.as_str(), status = status.as_u16(), "tool answered");
        if !status.is_success() {
            let error = ToolError::Status {
                tool: self.name.clone(),
                status: status.as_u16(),
            };
            // Only these statuses say the request was not processed and may be repeated.
            return Err(if matches!(status.as_u16(), 502..=504) {
                AttemptError::Transient(error)
            } else {
                AttemptError::Final(error)
            });
        }
        let body = read_limited(response, self.max_response_bytes)
            .await
            .map_err(|error| {
                AttemptError::Final(match error {
                    ReadError::TooLarge => ToolError::ResponseTooLarge {
                        tool: self.name.clone(),
                        limit: self.max_response_bytes,
                    },
                    ReadError::Transport(error) if error.is_timeout() => {
                        ToolError::Timeout(self.name.clone())
                    }
                    ReadError::Transport(error) => self.failed(format!(
                        "reading the response failed: {}",
                        error.without_url()
                    )),
                })
            })?;
        if body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&body).map_err(|error| {
            AttemptError::Final(self.failed(format!("the response is not JSON: {error}")))
        })
    }

    async fn call_with_retries(
        &self,
        input: &serde_json::Value,
        credential: Option<&Secret>,
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, ToolError> {
        let mut backoff = self.retry_backoff;
        let mut attempt = 0;
        // With a key, the tool itself makes a repetition harmless (AGX-T2).
        let repeatable = self.method.is_idempotent()
            || (self.idempotency_header.is_some() && idempotency_key.is_some());
        loop {
            match self.attempt(input, credential, idempotency_key).await {
                Ok(output) => return Ok(output),
                Err(AttemptError::Transient(error)) if repeatable && attempt < MAX_RETRIES => {
                    attempt += 1;
                    tracing::debug!(tool = %self.name, attempt, %error, "retrying an idempotent request");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(AttemptError::Transient(error) | AttemptError::Final(error)) => {
                    return Err(error);
                }
            }
        }
    }
}

/// A scalar as query text; an object or array inside an array is sent as its JSON.
fn query_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl ToolBackend for HttpTool {
    async fn invoke(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        // The deadline covers every attempt and the pauses between them.
        match tokio::time::timeout(
            self.timeout,
            self.call_with_retries(
                input,
                context.credential.as_ref(),
                context.idempotency_key.as_deref(),
            ),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ToolError::Timeout(self.name.clone())),
        }
    }

    fn rerun(&self) -> Rerun {
        if self.idempotency_header.is_some() {
            Rerun::WithIdempotencyKey
        } else if self.effect == Some(ToolEffect::Read) {
            Rerun::Read
        } else {
            Rerun::Never
        }
    }
}

impl ToolRegistry {
    /// Binds an [`HttpTool`] to every tool whose binding is `http`, all sharing `client`;
    /// returns how many were bound. Backends bound afterwards (mocks) replace them.
    pub fn bind_http_tools(
        &mut self,
        bindings: &[ToolBindingSpec],
        client: &reqwest::Client,
    ) -> Result<usize, ToolError> {
        let mut bound = 0;
        for binding in bindings {
            if let ToolBinding::Http(http) = &binding.binding {
                let tool =
                    HttpTool::with_client(client.clone(), &binding.tool, http, &binding.auth)?
                        .with_effect(binding.effect);
                self.bind(&binding.tool, Arc::new(tool))?;
                bound += 1;
            }
        }
        Ok(bound)
    }

    /// A registry for a set's tools, with every `http` binding bound to a real
    /// [`HttpTool`]; other tools still need a backend bound by hand.
    pub fn with_http_tools(set: &SpecSet) -> Result<Self, ToolError> {
        let mut registry = ToolRegistry::new(&set.tools)?;
        registry.bind_http_tools(&set.bindings, &http_client()?)?;
        Ok(registry)
    }
}
