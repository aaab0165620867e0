//! The probe: sends the tests' requests to one tool's service and records what came
//! back, bounded in time and size. It keeps the suite's own requests under the tool's
//! declared rate limit (so that only the rate-limit test ever bursts), never follows a
//! redirect, and never writes the credential into anything it records.

use std::collections::VecDeque;
use std::time::Duration;

use agentc_compiler::documents::tool::AuthScheme;
use agentc_runtime::Secret;
use base64::Engine as _;
use serde_json::Value;
use tokio::time::Instant;

use crate::report::Evidence;

/// The most bytes of a response body the probe reads.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Which credential a request carries.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    /// The valid one.
    Valid,
    /// None at all.
    Missing,
    /// A header written by the test (a malformed or wrong credential), with a label
    /// for the report; the value is a test value, never the real secret.
    Raw {
        header: String,
        value: String,
        label: &'static str,
    },
}

/// A request body.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    None,
    Json(Value),
    Raw {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

/// A response, with at most [`MAX_RESPONSE_BYTES`] of its body.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub headers_text: String,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_RESPONSE_BYTES`] and was cut: what was read is
    /// not the whole body, and must not be judged as if it were.
    pub truncated: bool,
    /// The `Content-Type` header, when there is one.
    pub content_type: Option<String>,
}

impl Response {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the body is a machine-readable error: a JSON object with at least one key.
    /// A body cut at the read limit cannot be parsed, so it is judged by its content
    /// type (a JSON type starting with `{`).
    pub fn is_structured(&self) -> bool {
        if self.truncated {
            let json_type = self.content_type.as_deref().is_some_and(|kind| {
                let kind = kind.to_ascii_lowercase();
                kind.starts_with("application/json") || kind.contains("+json")
            });
            return json_type
                && self.body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
        }
        self.json()
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|object| !object.is_empty())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request and what came of it.
#[derive(Clone, Debug)]
pub(crate) struct Exchange {
    /// `METHOD /path (credential)`.
    pub request: String,
    /// The response, or why there was none (a timeout, a refused connection).
    pub result: Result<Response, String>,
}

impl Exchange {
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().map(|response| response.status)
    }

    pub fn response(&self) -> Option<&Response> {
        self.result.as_ref().ok()
    }
}

/// Keeps requests within `requests` per `window` (a sliding window, which also keeps
/// them within any fixed window of the same length).
#[derive(Debug)]
struct Pacer {
    limit: Option<(usize, Duration)>,
    sent: VecDeque<Instant>,
}

/// Sends requests to one tool's service.
pub(crate) struct Probe {
    client: reqwest::Client,
    base: String,
    scheme: AuthScheme,
    api_key_header: String,
    secret: Option<Secret>,
    /// Why there is no valid credential, for a scheme that needs one.
    pub missing_secret: Option<String>,
    pacer: tokio::sync::Mutex<Pacer>,
}

/// Settings of a probe.
pub(crate) struct ProbeSettings {
    pub base: String,
    pub scheme: AuthScheme,
    pub api_key_header: String,
    pub secret: Option<Secret>,
    pub missing_secret: Option<String>,
    pub rate_limit: Option<(u64, u64)>,
    pub timeout: Duration,
}

impl Probe {
    pub fn new(settings: ProbeSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .no_proxy()
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let limit = settings.rate_limit.map(|(requests, seconds)| {
            (
                usize::try_from(requests).unwrap_or(usize::MAX),
                Duration::from_secs(seconds),
            )
        });
        Ok(Probe {
            client,
            base: settings.base.trim_end_matches('/').to_string(),
            scheme: settings.scheme,
            api_key_header: settings.api_key_header,
            secret: settings.secret,
            missing_secret: settings.missing_secret,
            pacer: tokio::sync::Mutex::new(Pacer {
                limit,
                sent: VecDeque::new(),
            }),
        })
    }

    /// The auth scheme of the tool.
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// The header name and value of the valid credential, if the scheme has one.
    fn valid_header(&self) -> Option<(String, String)> {
        let secret = self.secret.as_ref()?;
        let secret = secret.expose();
        match self.scheme {
            AuthScheme::None => None,
            AuthScheme::Bearer | AuthScheme::Oauth2 => {
                Some(("authorization".to_string(), format!("Bearer {secret}")))
            }
            AuthScheme::Basic => {
                let pair = if secret.contains(':') {
                    secret.to_string()
                } else {
                    format!("{secret}:")
                };
                Some((
                    "authorization".to_string(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ))
            }
            AuthScheme::ApiKey => Some((self.api_key_header.clone(), secret.to_string())),
        }
    }

    /// The header a test credential goes in, for the tool's scheme.
    pub fn credential_header(&self) -> String {
        match self.scheme {
            AuthScheme::ApiKey => self.api_key_header.clone(),
            _ => "authorization".to_string(),
        }
    }

    /// Replaces the valid credential wherever it appears in `text`.
    pub fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) if !secret.expose().is_empty() => {
                text.replace(secret.expose(), "<redacted>")
            }
            _ => text.to_string(),
        }
    }

    /// Whether `text` contains the valid credential.
    pub fn leaks_secret(&self, text: &str) -> bool {
        self.secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() >= 4 && text.contains(secret.expose()))
    }

    /// Waits, if needed, so that one more request stays within the declared limit.
    async fn pace(&self, paced: bool) {
        let mut pacer = self.pacer.lock().await;
        if let (true, Some((requests, window))) = (paced, pacer.limit) {
            loop {
                let now = Instant::now();
                while pacer
                    .sent
                    .front()
                    .is_some_and(|sent| now.duration_since(*sent) >= window)
                {
                    pacer.sent.pop_front();
                }
                if pacer.sent.len() < requests {
                    break;
                }
                // A margin, so that the server's clock has also seen the window pass.
                let until = pacer
                    .sent
                    .front()
                    .map_or(now, |oldest| *oldest + window + Duration::from_millis(50));
                tokio::time::sleep_until(until).await;
            }
        }
        pacer.sent.push_back(Instant::now());
        // Only the last `requests` timestamps matter; keep the queue bounded.
        let keep = pacer.limit.map_or(1, |(requests, _)| requests.max(1));
        while pacer.sent.len() > keep {
            pacer.sent.pop_front();
        }
    }

    /// Sends one request. `paced` keeps it within the declared rate limit.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Body,
        credential: Credential,
        paced: bool,
    ) -> Exchange {
        let label = match &credential {
            Credential::Valid if self.scheme == AuthScheme::None => "no auth scheme",
            Credential::Valid => "valid credential",
            Credential::Missing => "no credential",
            Credential::Raw { label, .. } => label,
        };
        let request_text = format!("{method} {path} ({label})");
        self.pace(paced).await;
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let Ok(method_value) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return Exchange {
                request: request_text,
                result: Err(format!("`{method}` is not an HTTP method")),
            };
        };
        let mut request = self
            .client
            .request(method_value, &url)
            .header("accept", "application/json");
        match &credential {
            Credential::Valid => {
                if let Some((name, value)) = self.valid_header() {
                    let mut header = match reqwest::header::HeaderValue::from_str(&value) {
                        Ok(header) => header,
                        Err(_) => {
                            return Exchange {
                                request: request_text,
                                result: Err(
                                    "the credential is not a valid header value".to_string()
                                ),
                            };
                        }
                    };
                    header.set_sensitive(true);
                    request = request.header(name, header);
                }
            }
            Credential::Missing => {}
            Credential::Raw { header, value, .. } => {
                request = request.header(header.as_str(), value.as_str());
            }
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw {
                bytes,
                content_type,
            } => request.header("content-type", content_type).body(bytes),
        };
        let result = match request.send().await {
            Ok(response) => read_response(response).await,
            Err(error) if error.is_timeout() => Err("no answer in time (a hang)".to_string()),
            Err(error) => Err(format!(
                "no answer: {}",
                self.redact(&error.without_url().to_string())
            )),
        };
        Exchange {
            request: request_text,
            result,
        }
    }

    /// Evidence for a failed check on `exchange`; the body excerpt is redacted.
    pub fn evidence(&self, check: &str, exchange: &Exchange, detail: &str) -> Evidence {
        let detail = match &exchange.result {
            Ok(response) if !response.body.is_empty() => format!(
                "{detail}; body ({}{} bytes): {}",
                if response.truncated { "over " } else { "" },
                response.body.len(),
                crate::redact::excerpt(&response.text(), self.secret.as_ref(), 200)
            ),
            Ok(_) => detail.to_string(),
            Err(reason) => format!("{detail}; {reason}"),
        };
        Evidence {
            check: check.to_string(),
            request: Some(exchange.request.clone()),
            status: exchange.status(),
            detail,
            schema_location: None,
        }
    }
}

async fn read_response(mut response: reqwest::Response) -> Result<Response, String> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let headers_text = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .collect::<Vec<_>>()
        .join("\n");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(error) if error.is_timeout() => {
                return Err("the body did not arrive in time (a hang)".to_string());
            }
            Err(error) => return Err(format!("the body could not be read: {error}")),
        }
    }
    Ok(Response {
        status,
        retry_after,
        headers_text,
        body,
        truncated,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::Response;

    fn cut(body: &[u8], content_type: &str) -> Response {
        Response {
            status: 422,
            retry_after: None,
            headers_text: String::new(),
            body: body.to_vec(),
            truncated: true,
            content_type: Some(content_type.to_string()),
        }
    }

    #[test]
    fn a_cut_body_is_judged_by_its_content_type_never_parsed() {
        assert!(cut(b"{\"detail\": [{\"input\": \"xxxx", "application/json").is_structured());
        assert!(cut(b"  {\"a\":", "application/problem+json").is_structured());
        assert!(!cut(b"{\"detail\":", "text/plain").is_structured());
        assert!(!cut(b"<html>", "application/json").is_structured());
    }
}
