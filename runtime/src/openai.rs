//! A client for OpenAI-compatible chat-completions servers (OpenAI itself, vLLM, llama.cpp,
//! Ollama and the like): the conversation and the agent's tools go out, and the answer
//! comes back as text or tool calls. The API key is sent only as the bearer header, marked
//! sensitive; it is never logged, and the server's error text is not passed on because
//! some servers echo part of a rejected key.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::credentials::Secret;
use crate::http::{ReadError, read_limited};
use crate::model::{Message, Model, ModelError, ModelTurn, ToolCall, ToolDescription};

/// How long one completion may take when no other timeout is set.
pub const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer read from the server.
pub const MAX_MODEL_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A chat-completions model reached over HTTP.
#[derive(Clone)]
pub struct OpenAiModel {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    api_key: Option<Secret>,
    model_name: String,
    timeout: Duration,
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenAiModel")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key)
            .field("model_name", &self.model_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// A client for the server at `base_url` (for example `https://api.openai.com/v1`);
    /// requests go to `<base_url>/chat/completions`.
    pub fn new(
        base_url: &str,
        api_key: Option<Secret>,
        model_name: &str,
    ) -> Result<Self, ModelError> {
        let endpoint = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let endpoint = reqwest::Url::parse(&endpoint).map_err(|error| {
            ModelError::Failed(format!("`{base_url}` is not a base URL: {error}"))
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(ModelError::Failed(format!(
                "`{base_url}` is not an http(s) URL"
            )));
        }
        // Redirects are not followed, so that the key goes only to the configured server.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                ModelError::Failed(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(OpenAiModel {
            client,
            endpoint,
            api_key,
            model_name: model_name.to_string(),
            timeout: DEFAULT_MODEL_TIMEOUT,
        })
    }

    /// Sets how long one completion may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL completions are requested from.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The request body for a conversation and the tools on offer.
    pub fn request_body(&self, messages: &[Message], tools: &[ToolDescription]) -> Value {
        let mut body = json!({
            "model": self.model_name,
            "messages": wire_messages(messages),
        });
        if !tools.is_empty()
            && let Some(fields) = body.as_object_mut()
        {
            let tools: Vec<Value> = tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.input_schema,
                        }
                    })
                })
                .collect();
            fields.insert("tools".to_string(), Value::Array(tools));
        }
        body
    }

    async fn complete_inner(
        &self,
        messages: &[Message],
        tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .json(&self.request_body(messages, tools));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                ModelError::Timeout
            } else {
                ModelError::Failed(format!(
                    "the model server could not be reached: {}",
                    error.without_url()
                ))
            }
        })?;
        let status = response.status();
        tracing::debug!(endpoint = %self.endpoint, status = status.as_u16(), "model answered");
        if !status.is_success() {
            return Err(ModelError::Status(status.as_u16()));
        }
        let body = read_limited(response, MAX_MODEL_RESPONSE_BYTES)
            .await
            .map_err(|error| match error {
                ReadError::TooLarge => ModelError::InvalidResponse(format!(
                    "the answer is larger than {MAX_MODEL_RESPONSE_BYTES} bytes"
                )),
                ReadError::Transport(error) => ModelError::Failed(format!(
                    "reading the answer failed: {}",
                    error.without_url()
                )),
            })?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|error| ModelError::InvalidResponse(format!("not JSON: {error}")))?;
        parse_turn(&body)
    }
}

#[async_trait]
impl Model for OpenAiModel {
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        match tokio::time::timeout(self.timeout, self.complete_inner(messages, tools)).await {
            Ok(turn) => turn,
            Err(_) => Err(ModelError::Timeout),
        }
    }
}

/// The conversation in the chat-completions form. The server needs an id on every tool
/// call and the same id on its answer; a call that has none (a scripted turn) is given
/// one here, and answers without an id are matched to those calls in order.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut pending_ids: VecDeque<String> = VecDeque::new();
    let mut generated = 0usize;
    let mut wire = Vec::with_capacity(messages.len());
    for message in messages {
        wire.push(match message {
            Message::System { content } => json!({"role": "system", "content": content}),
            Message::User { content } => json!({"role": "user", "content": content}),
            Message::Assistant { content } => json!({"role": "assistant", "content": content}),
            Message::AssistantToolCalls { calls } => {
                pending_ids.clear();
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|call| {
                        let id = call.id.clone().unwrap_or_else(|| {
                            generated += 1;
                            format!("call_{generated}")
                        });
                        pending_ids.push_back(id.clone());
                        json!({
                            "id": id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": call.arguments.to_string(),
                            }
                        })
                    })
                    .collect();
                json!({"role": "assistant", "content": null, "tool_calls": calls})
            }
            Message::Tool {
                call_id,
                name,
                content,
            } => {
                let id = match call_id {
                    Some(id) => {
                        pending_ids.retain(|pending| pending != id);
                        id.clone()
                    }
                    None => pending_ids.pop_front().unwrap_or_default(),
                };
                let content = match content {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                json!({"role": "tool", "tool_call_id": id, "name": name, "content": content})
            }
        });
    }
    wire
}

fn invalid(detail: &str) -> ModelError {
    ModelError::InvalidResponse(detail.to_string())
}

/// Reads the first choice's message as text or tool calls.
fn parse_turn(body: &Value) -> Result<ModelTurn, ModelError> {
    let message = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .and_then(|choice| choice.get("message"))
        .ok_or_else(|| invalid("the answer has no choices"))?;
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array)
        && !calls.is_empty()
    {
        return calls
            .iter()
            .map(parse_tool_call)
            .collect::<Result<Vec<_>, _>>()
            .map(ModelTurn::ToolCalls);
    }
    match message.get("content") {
        Some(Value::String(text)) => Ok(ModelTurn::Text(text.clone())),
        _ => Err(invalid("the answer has neither text nor tool calls")),
    }
}

fn parse_tool_call(call: &Value) -> Result<ToolCall, ModelError> {
    let function = call
        .get("function")
        .ok_or_else(|| invalid("a tool call has no function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a tool call has no function name"))?;
    // The arguments are a JSON string; some servers send the object itself, and a call
    // without parameters may come with an empty string.
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str(text)
            .map_err(|_| invalid("a tool call's arguments are not JSON"))?,
        Some(other) => other.clone(),
    };
    Ok(ToolCall {
        id: call.get("id").and_then(Value::as_str).map(str::to_string),
        name: name.to_string(),
        arguments: std::sync::Arc::new(arguments),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_get_ids_that_pair_calls_with_answers() {
        let wire = wire_messages(&[
            Message::AssistantToolCalls {
                calls: vec![ToolCall {
                    id: None,
                    name: "t".into(),
                    arguments: json!({"q": 1}).into(),
                }],
            },
            Message::Tool {
                call_id: None,
                name: "t".into(),
                content: json!({"r": 2}),
            },
        ]);
        assert_eq!(wire[0]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            wire[0]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":1}"
        );
        assert_eq!(wire[1]["tool_call_id"], "call_1");
        assert_eq!(wire[1]["content"], "{\"r\":2}");
    }

    #[test]
    fn answers_parse_or_fail() {
        let text = json!({"choices": [{"message": {"role": "assistant", "content": "hi"}}]});
        assert_eq!(parse_turn(&text), Ok(ModelTurn::Text("hi".into())));
        let empty_arguments = json!({"choices": [{"message": {"tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "t", "arguments": ""}}]}}]});
        assert_eq!(
            parse_turn(&empty_arguments),
            Ok(ModelTurn::ToolCalls(vec![ToolCall {
                id: Some("c".into()),
                name: "t".into(),
                arguments: json!({}).into(),
            }]))
        );
        let bad_arguments = json!({"choices": [{"message": {"tool_calls": [
            {"function": {"name": "t", "arguments": "{"}}]}}]});
        assert!(parse_turn(&bad_arguments).is_err());
        assert!(parse_turn(&json!({"choices": []})).is_err());
        assert!(parse_turn(&json!({"choices": [{"message": {"content": null}}]})).is_err());
    }
}
