//! Remote agents as capabilities (OAS-N3, OAS-N5, OAS-S3): a capability
//! `oagent://host/path/name` is an agent on another server, called like a tool with
//! `{text}` (Reading: an agent as a tool).
//!
//! A call resolves the reference to `https://host/path/name`, GETs the agent document
//! there and checks it with the compiler (it must be exactly one valid agent of that
//! name), POSTs `{"text": ...}` to the same URL, expects `303 See Other` with a
//! `Location` on the same origin, and polls that engagement's JSON state until it has
//! completed or failed. The output is `{text}` plus the remote agent's `exposes`.
//!
//! While polling, no connection or a 429, 502, 503 or 504 answer is tried again (the
//! remote engagement is stored on its server and outlives a restart there); any other
//! failure ends the call.
//!
//! The remote engagement also outlives a restart of the calling server: when the
//! runtime saves wait points, the engagement's location is saved in the caller's
//! snapshot ([`RemoteWait`]) as soon as the 303 has given it, and a resumed engagement
//! polls that location instead of posting again, so the remote agent runs once per
//! call. A saved location is followed only if it is on the agent's origin and belongs
//! to the pending call (its hash); its answer is then checked like a fresh one.
//!
//! Every response is read under a size limit and the whole call under a deadline. Plain
//! HTTP is refused unless the client is built for loopback tests and the host is a
//! loopback address. Redirects are never followed automatically, and the `Location`
//! must stay on the agent's origin, so the credential (the capability's static
//! identity, OAS-C4, sent as a bearer token) never reaches another host.

use agentc_compiler::urls::is_loopback;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use tokio::sync::OnceCell;

use crate::context::RemoteWait;
use crate::context::{Runtime, WaitPoint};
use crate::credentials::Identity;
use crate::engagement::Engagement;
use crate::http::{ReadError, http_client, read_limited};
use crate::model::ToolCall;
use crate::review::call_hash;
use crate::spec::{AgentSpec, CapabilityKind, CapabilitySpec, SpecSet};
use crate::tools::{ToolBackend, ToolContext, ToolError, ToolRegistry};

/// The hash that binds a saved remote engagement to the call that started it: the
/// capability's name and the call's canonical input, under their own stage name so
/// that it can never be mistaken for a review's approval hash.
pub fn remote_call_hash(call: &ToolCall) -> String {
    call_hash(&call.name, "remote", &call.arguments, None)
}

/// The limits a remote agent call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteLimits {
    /// The largest agent document accepted.
    pub max_document_bytes: usize,
    /// The largest engagement state accepted.
    pub max_response_bytes: usize,
    /// The whole call, from the first request to the completed engagement.
    pub timeout: Duration,
    /// The first pause between polls; it doubles up to `max_poll_interval`.
    pub poll_interval: Duration,
    /// The longest pause between polls.
    pub max_poll_interval: Duration,
    /// Whether `http://` is allowed for loopback hosts (tests only); any other host
    /// must be HTTPS.
    pub allow_loopback_http: bool,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        RemoteLimits {
            max_document_bytes: 1024 * 1024,
            max_response_bytes: 1024 * 1024,
            timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(50),
            max_poll_interval: Duration::from_secs(2),
            allow_loopback_http: false,
        }
    }
}

/// Resolves a remote agent's HTTPS URL (as the checker gives it, OAS-N5) to the URL it
/// is fetched from: itself, or its `http://` form for a loopback host when `limits`
/// allow it. Anything else that is not HTTPS is refused.
pub fn resolve_agent_url(https_url: &str, limits: &RemoteLimits) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(https_url)
        .map_err(|error| format!("`{https_url}` is not a URL: {error}"))?;
    if limits.allow_loopback_http && is_loopback(&url) && url.scheme() == "https" {
        url.set_scheme("http")
            .map_err(|()| format!("`{https_url}` cannot be used over HTTP"))?;
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if limits.allow_loopback_http && is_loopback(&url) => Ok(url),
        _ => Err(format!(
            "refusing `{url}`: remote agents are reached over HTTPS only"
        )),
    }
}

/// Why a remote engagement's state was not read.
enum StateRead {
    /// It may be read if tried again.
    Again(ToolError),
    /// It will not be.
    Failed(ToolError),
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Why a remote engagement's location is not followed, or `None` when it may be: it
/// must be on the agent's origin (the credential goes with it) and carry no user
/// information (which the client would send as a second credential).
fn location_refusal(location: &reqwest::Url, agent: &reqwest::Url) -> Option<&'static str> {
    if !same_origin(location, agent) {
        Some("the Location leads to another origin; it is not followed with the credential")
    } else if !location.username().is_empty() || location.password().is_some() {
        Some("the Location carries user information; it is not followed")
    } else {
        None
    }
}

/// The [`RemoteAgentTool`] bound to a remote agent `capability`, or why there is
/// none: a saved remote engagement is resumed only through the client the capability
/// has now, with that client's URL, credential handling and limits.
fn bound_remote<'a>(
    runtime: &'a Runtime,
    capability: &CapabilitySpec,
) -> Result<&'a RemoteAgentTool, String> {
    let CapabilityKind::RemoteAgent { .. } = &capability.kind else {
        return Err(format!(
            "the snapshot has a remote engagement for `{}`, which is not a remote agent",
            capability.name
        ));
    };
    runtime
        .tools
        .get(&capability.name)
        .and_then(|tool| tool.backend().ok())
        .and_then(|backend| crate::tools::backend_as::<RemoteAgentTool>(backend.as_ref()))
        .ok_or_else(|| {
            format!(
                "`{}` is not bound to a remote agent client, so its saved engagement cannot be polled",
                capability.name
            )
        })
}

/// Whether a saved remote engagement may be resumed for the pending `call` of an
/// agent's `capability`: the capability is a remote agent bound to a
/// [`RemoteAgentTool`], the wait names it and this very call (name and input, by
/// hash), it was posted to the URL the capability has now, and its location is a URL
/// on that URL's origin. Returns the client and the location to poll.
pub(crate) fn remote_wait_fits<'a>(
    runtime: &'a Runtime,
    capability: &CapabilitySpec,
    call: &ToolCall,
    wait: &RemoteWait,
) -> Result<(&'a RemoteAgentTool, reqwest::Url), String> {
    if wait.capability != call.name || capability.name != call.name {
        return Err(format!(
            "the saved remote engagement is of `{}`, but the call is to `{}`",
            wait.capability, call.name
        ));
    }
    if wait.call_hash != remote_call_hash(call) {
        return Err(format!(
            "the saved remote engagement of `{}` was started for another call",
            call.name
        ));
    }
    let remote = bound_remote(runtime, capability)?;
    let location = remote.saved_location(wait)?;
    Ok((remote, location))
}

/// The output of a call of a remote agent resumed from its saved engagement
/// (`wait`): the location is polled, with the credential of the capability's identity
/// as for a fresh call, until the remote engagement completes or fails, within the
/// runtime's agent deadline and the client's own limit. Nothing is posted, so the
/// remote agent is not engaged a second time. With a wait point the wait is saved
/// again and the engagement parked while it lasts, so that a further restart resumes
/// it once more. The caller checks the answer as it would a fresh one.
pub(crate) async fn resume_remote_call(
    runtime: &Runtime,
    agent: &AgentSpec,
    engagement: &Engagement,
    call: &ToolCall,
    point: Option<&WaitPoint<'_>>,
    wait: &RemoteWait,
) -> Result<serde_json::Value, ToolError> {
    let failed = |detail: String| ToolError::Agent {
        agent: call.name.clone(),
        detail,
    };
    let capability = agent
        .capability_index(&call.name)
        .and_then(|index| agent.capabilities.get(index))
        .ok_or_else(|| failed(format!("it is not a capability of `{}`", agent.name)))?;
    let (remote, location) = remote_wait_fits(runtime, capability, call, wait).map_err(failed)?;
    let identity = Identity::choose(
        capability.user_identity,
        engagement.shared_user_id(),
        capability.static_identity.as_ref(),
    );
    let credential = runtime
        .credentials
        .credential(&capability.name, &identity)
        .map_err(|error| failed(error.to_string()))?;
    let context = ToolContext::for_call(engagement, &agent.name, identity, credential);
    tracing::info!(agent = %remote.name, engagement = %engagement.id(), "resuming the wait for a remote engagement");
    let within = runtime.agent_timeout.min(remote.limits.timeout);
    remote
        .wait_for(point, engagement, wait.clone(), &location, &context, within)
        .await
}

/// A remote agent reached over HTTP (OAS-S3), bound as the backend of its capability.
#[derive(Debug, Clone)]
pub struct RemoteAgentTool {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    limits: RemoteLimits,
    /// Set once the agent document has been fetched and checked.
    checked: Arc<OnceCell<()>>,
}

impl RemoteAgentTool {
    /// A tool for the agent `name` whose document is at `https_url`.
    pub fn new(
        client: reqwest::Client,
        name: &str,
        https_url: &str,
        limits: RemoteLimits,
    ) -> Result<Self, ToolError> {
        let url =
            resolve_agent_url(https_url, &limits).map_err(|detail| ToolError::InvalidBinding {
                tool: name.to_string(),
                detail,
            })?;
        Ok(RemoteAgentTool {
            name: name.to_string(),
            url,
            client,
            limits,
            checked: Arc::new(OnceCell::new()),
        })
    }

    /// The URL the agent document is fetched from and engagements are posted to.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    fn failed(&self, detail: impl Into<String>) -> ToolError {
        ToolError::Agent {
            agent: self.name.clone(),
            detail: detail.into(),
        }
    }

    async fn read(&self, response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ToolError> {
        read_limited(response, limit)
            .await
            .map_err(|error| match error {
                ReadError::TooLarge => ToolError::ResponseTooLarge {
                    tool: self.name.clone(),
                    limit,
                },
                ReadError::Transport(error) => self.failed(format!(
                    "reading the answer failed: {}",
                    error.without_url()
                )),
            })
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        context: &ToolContext,
    ) -> reqwest::RequestBuilder {
        match &context.credential {
            Some(secret) => request.bearer_auth(secret.expose()),
            None => request,
        }
    }

    /// GETs `url` with the credential, and reads a successful answer under `limit` bytes;
    /// any other status is an error.
    async fn get_limited(
        &self,
        url: &reqwest::Url,
        accept: &str,
        limit: usize,
        failure: &str,
        context: &ToolContext,
    ) -> Result<Vec<u8>, ToolError> {
        let response = self
            .authorize(self.client.get(url.clone()), context)
            .header(ACCEPT, accept)
            .send()
            .await
            .map_err(|error| self.failed(format!("{failure}: {}", error.without_url())))?;
        if !response.status().is_success() {
            return Err(ToolError::Status {
                tool: self.name.clone(),
                status: response.status().as_u16(),
            });
        }
        self.read(response, limit).await
    }

    /// Fetches the agent document and checks it with the compiler: it must be exactly
    /// one agent, named as the capability, with no error.
    async fn check_document(&self, context: &ToolContext) -> Result<(), ToolError> {
        let bytes = self
            .get_limited(
                &self.url,
                "application/yaml, application/json;q=0.9",
                self.limits.max_document_bytes,
                "cannot fetch the agent document",
                context,
            )
            .await?;
        // Named by its URL, the document is a remote agent's to the checker: its own
        // capabilities (tools on its own server) are not resolved here.
        let set = agentc_compiler::check_set(
            &[agentc_compiler::SourceInput {
                name: self.url.to_string(),
                bytes,
            }],
            &agentc_compiler::CheckOptions::default(),
        );
        if set.error_count() > 0 {
            return Err(self.failed(format!(
                "the agent document at {} has {} error(s)",
                self.url,
                set.error_count()
            )));
        }
        let agents: Vec<&str> = set
            .documents
            .iter()
            .filter_map(|loaded| match &loaded.document {
                agentc_compiler::documents::Document::Agent(agent) => {
                    Some(agent.name.value.as_str())
                }
                _ => None,
            })
            .collect();
        if agents != [self.name.as_str()] || set.documents.len() != 1 {
            return Err(self.failed(format!(
                "the document at {} is not exactly the agent `{}`",
                self.url, self.name
            )));
        }
        Ok(())
    }

    /// Starts an engagement of the remote agent (OAS-S3): checks its document once,
    /// POSTs `{text}`, and returns the location of the engagement's state from the
    /// `303 See Other`, on the agent's origin only.
    async fn start(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<reqwest::Url, ToolError> {
        self.checked
            .get_or_try_init(|| self.check_document(context))
            .await?;
        let Some(text) = input.get("text").and_then(serde_json::Value::as_str) else {
            return Err(self.failed("the input has no `text`"));
        };
        let response = self
            .authorize(self.client.post(self.url.clone()), context)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(serde_json::json!({ "text": text }).to_string())
            .send()
            .await
            .map_err(|error| {
                self.failed(format!(
                    "cannot start the engagement: {}",
                    error.without_url()
                ))
            })?;
        // OAS-S3: the answer to the POST is 303 See Other with the engagement's address.
        if response.status() != reqwest::StatusCode::SEE_OTHER {
            return Err(ToolError::Status {
                tool: self.name.clone(),
                status: response.status().as_u16(),
            });
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| self.failed("the 303 answer has no Location"))?;
        let state_url = self
            .url
            .join(location)
            .map_err(|_| self.failed("the Location is not a URL"))?;
        if let Some(refusal) = location_refusal(&state_url, &self.url) {
            return Err(self.failed(refusal));
        }
        Ok(state_url)
    }

    /// The location of a saved remote engagement, if it may be polled: saved for this
    /// agent's URL, and an absolute URL on its origin without user information. A
    /// saved location is data from the store, so it gets the checks a `Location`
    /// header gets, and the URL it was posted to must still be this agent's (a
    /// capability moved to another host since does not follow its old engagement).
    pub(crate) fn saved_location(&self, wait: &RemoteWait) -> Result<reqwest::Url, String> {
        if wait.agent_url != self.url.as_str() {
            return Err(format!(
                "the saved remote engagement was started at {}, not at this agent's {}",
                wait.agent_url, self.url
            ));
        }
        let location = reqwest::Url::parse(&wait.location).map_err(|error| {
            format!("the saved location of the remote engagement is not a URL: {error}")
        })?;
        match location_refusal(&location, &self.url) {
            Some(refusal) => Err(format!(
                "the saved location of the remote engagement is refused: {refusal}"
            )),
            None => Ok(location),
        }
    }

    /// Polls a remote engagement's state until it has completed (its output) or
    /// failed (an error).
    async fn poll(
        &self,
        state_url: &reqwest::Url,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let mut pause = self.limits.poll_interval;
        loop {
            let body = match self.read_state(state_url, context).await {
                Ok(body) => body,
                Err(StateRead::Again(error)) => {
                    // The remote engagement is stored on its server and outlives a
                    // restart there, so the poll goes on, within the call's deadline.
                    tracing::info!(agent = %self.name, %error, "remote engagement unreachable for now; polling again");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(self.limits.max_poll_interval);
                    continue;
                }
                Err(StateRead::Failed(error)) => return Err(error),
            };
            let state: serde_json::Value = serde_json::from_slice(&body).map_err(|error| {
                self.failed(format!("the engagement state is not JSON: {error}"))
            })?;
            match state
                .pointer("/status/state")
                .and_then(serde_json::Value::as_str)
            {
                Some("completed") => return self.output(&state),
                Some("failed") => {
                    return Err(self.failed(format!(
                        "the remote engagement failed: {}",
                        state
                            .pointer("/status/reason")
                            .map(serde_json::Value::to_string)
                            .unwrap_or_default()
                    )));
                }
                Some(_) => {}
                None => return Err(self.failed("the engagement state has no status")),
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2).min(self.limits.max_poll_interval);
        }
    }

    async fn engage(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let state_url = self.start(input, context).await?;
        self.poll(&state_url, context).await
    }

    /// A call of this remote agent made at a wait point: the engagement is started,
    /// its location saved in the caller's snapshot at once ([`RemoteWait`]), and then
    /// polled, all within `deadline` (the runtime's agent deadline) and the client's
    /// own limit. The deadline is kept here rather than around this call so that a
    /// wait that was saved is always ended, even when it times out; only a process
    /// that stops leaves it saved, for the next start to resume.
    pub(crate) async fn call_at_wait_point(
        &self,
        point: &WaitPoint<'_>,
        engagement: &Engagement,
        call: &ToolCall,
        context: &ToolContext,
        deadline: Duration,
    ) -> Result<serde_json::Value, ToolError> {
        let started = tokio::time::Instant::now();
        let within = deadline.min(self.limits.timeout);
        let state_url = tokio::time::timeout(within, self.start(&call.arguments, context))
            .await
            .map_err(|_| ToolError::Timeout(self.name.clone()))??;
        let wait = RemoteWait {
            capability: self.name.clone(),
            agent_url: self.url.to_string(),
            location: state_url.to_string(),
            call_hash: remote_call_hash(call),
        };
        let left = within.saturating_sub(started.elapsed());
        self.wait_for(Some(point), engagement, wait, &state_url, context, left)
            .await
    }

    /// Polls the remote engagement `wait` for at most `within`; with a wait point, the
    /// wait is saved first and ended after, so that for as long as it lasts a restart
    /// resumes the caller's engagement here.
    async fn wait_for(
        &self,
        point: Option<&WaitPoint<'_>>,
        engagement: &Engagement,
        wait: RemoteWait,
        state_url: &reqwest::Url,
        context: &ToolContext,
        within: Duration,
    ) -> Result<serde_json::Value, ToolError> {
        let mut parked = None;
        if let Some(point) = point {
            match point.save_remote(engagement, wait).await {
                Ok(()) => parked = Some(point),
                // The remote engagement has started and is left to run: the call
                // still polls it, as it would without a store, and only a restart
                // before it answers is lost (the engagement then fails as
                // interrupted, never replayed).
                Err(detail) => tracing::warn!(
                    agent = %self.name,
                    engagement = %engagement.id(),
                    %detail,
                    "the remote engagement's location could not be saved"
                ),
            }
        }
        let result = tokio::time::timeout(within, self.poll(state_url, context))
            .await
            .unwrap_or_else(|_| Err(ToolError::Timeout(self.name.clone())));
        if let Some(point) = parked
            && let Err(detail) = point.end_remote_wait(engagement).await
        {
            return Err(self.failed(format!(
                "the end of the wait for the remote engagement could not be saved: {detail}"
            )));
        }
        result
    }

    /// Reads a remote engagement's state. A failure that may pass is told apart from
    /// one that will not: no connection, or 429, 502, 503 or 504 (the server is
    /// restarting, overloaded, or behind a gateway that lost it for a moment) may pass;
    /// any other status, an answer over the size limit or a broken body will not.
    async fn read_state(
        &self,
        url: &reqwest::Url,
        context: &ToolContext,
    ) -> Result<Vec<u8>, StateRead> {
        let response = self
            .authorize(self.client.get(url.clone()), context)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| {
                StateRead::Again(self.failed(format!(
                    "cannot read the engagement: {}",
                    error.without_url()
                )))
            })?;
        let status = response.status();
        if !status.is_success() {
            let error = ToolError::Status {
                tool: self.name.clone(),
                status: status.as_u16(),
            };
            return Err(if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                StateRead::Again(error)
            } else {
                StateRead::Failed(error)
            });
        }
        self.read(response, self.limits.max_response_bytes)
            .await
            .map_err(StateRead::Failed)
    }

    /// The output of a completed remote engagement: `{text}` and its exposes, and
    /// nothing else of what the server sent (OAS-X1).
    fn output(&self, state: &serde_json::Value) -> Result<serde_json::Value, ToolError> {
        let Some(text) = state.get("text").and_then(serde_json::Value::as_str) else {
            return Err(self.failed("the completed engagement has no text"));
        };
        let mut output = serde_json::Map::new();
        output.insert("text".into(), serde_json::Value::String(text.to_string()));
        if let Some(exposes) = state.get("exposes").and_then(serde_json::Value::as_object) {
            for (key, value) in exposes {
                output.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        Ok(serde_json::Value::Object(output))
    }
}

#[async_trait]
impl ToolBackend for RemoteAgentTool {
    async fn invoke(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        match tokio::time::timeout(self.limits.timeout, self.engage(input, context)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Timeout(self.name.clone())),
        }
    }
}

impl ToolRegistry {
    /// Binds a [`RemoteAgentTool`] to every remote agent the set's agents use as a
    /// capability; returns how many were bound. Two remote agents of one name at
    /// different URLs cannot share the name's schema slot, so that is an error.
    pub fn bind_remote_agents(
        &mut self,
        set: &SpecSet,
        limits: RemoteLimits,
    ) -> Result<usize, ToolError> {
        let client = http_client()?;
        let mut bound: Vec<(String, String)> = Vec::new();
        for agent in &set.agents {
            for capability in &agent.capabilities {
                let CapabilityKind::RemoteAgent { url } = &capability.kind else {
                    continue;
                };
                if let Some((_, other)) = bound.iter().find(|(name, _)| name == &capability.name) {
                    if other != url {
                        return Err(ToolError::InvalidBinding {
                            tool: capability.name.clone(),
                            detail: format!("two remote agents share the name: {other} and {url}"),
                        });
                    }
                    continue;
                }
                let tool = RemoteAgentTool::new(client.clone(), &capability.name, url, limits)?;
                self.bind(&capability.name, Arc::new(tool))?;
                bound.push((capability.name.clone(), url.clone()));
            }
        }
        Ok(bound.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_in_tests() {
        let strict = RemoteLimits::default();
        assert!(resolve_agent_url("https://support.example.net/agents/v", &strict).is_ok());
        assert_eq!(
            resolve_agent_url("https://127.0.0.1:8080/agents/v", &strict)
                .unwrap()
                .scheme(),
            "https"
        );
        assert!(resolve_agent_url("http://support.example.net/agents/v", &strict).is_err());
        assert!(resolve_agent_url("http://127.0.0.1:8080/agents/v", &strict).is_err());
        let tests = RemoteLimits {
            allow_loopback_http: true,
            ..RemoteLimits::default()
        };
        assert_eq!(
            resolve_agent_url("https://127.0.0.1:8080/agents/v", &tests)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/agents/v"
        );
        // Loopback HTTP for tests never extends to other hosts.
        assert!(resolve_agent_url("http://support.example.net/agents/v", &tests).is_err());
        assert!(resolve_agent_url("ftp://127.0.0.1/agents/v", &tests).is_err());
    }

    #[test]
    fn locations_must_stay_on_the_origin() {
        let base = reqwest::Url::parse("https://a.example/agents/x").unwrap();
        assert!(same_origin(&base, &base.join("/engagements/1").unwrap()));
        assert!(!same_origin(
            &base,
            &base.join("https://b.example/engagements/1").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &base.join("http://a.example/engagements/1").unwrap()
        ));
    }
}
