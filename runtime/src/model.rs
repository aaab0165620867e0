//! Models: anything that, given the conversation and the tools on offer, answers with
//! text or with tool calls. The trait carries no transport or engine detail, so a remote
//! chat-completions client and a local inference engine implement it alike.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One tool call the model asks for. Its name is untrusted text until matched against
/// the agent's declared capabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The model's identifier for the call, echoed in the tool's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool or agent name.
    pub name: String,
    /// The arguments, as JSON; the engagement's record of the call, once it passes,
    /// shares them rather than copying them.
    #[serde(default)]
    pub arguments: Arc<serde_json::Value>,
}

/// A model's turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTurn {
    /// A response for the user.
    Text(String),
    /// Calls to make before the model continues.
    ToolCalls(Vec<ToolCall>),
}

/// One message of the conversation the model sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions (the agent's intent, OAS-A4).
    System { content: String },
    /// The user's input, after the input guardrail (OAS-G2).
    User { content: String },
    /// The model's text.
    Assistant { content: String },
    /// The model's tool calls.
    AssistantToolCalls { calls: Vec<ToolCall> },
    /// A tool's answer, or the refusal that replaced it.
    Tool {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        name: String,
        content: serde_json::Value,
    },
}

/// A tool as described to the model (OAS-C1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDescription {
    /// The capability name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its input.
    pub input_schema: serde_json::Value,
}

/// Why the model gave no turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A scripted model has no more turns.
    #[error("the model script has no more turns")]
    ScriptExhausted,
    /// A script could not be read.
    #[error("invalid model script: {0}")]
    InvalidScript(String),
    /// The model or its transport failed.
    #[error("model failed: {0}")]
    Failed(String),
    /// The model server answered with a status outside 2xx.
    #[error("the model server answered with HTTP status {0}")]
    Status(u16),
    /// The model server's answer could not be read as a turn.
    #[error("the model's answer is invalid: {0}")]
    InvalidResponse(String),
    /// The model did not answer in time.
    #[error("the model did not answer in time")]
    Timeout,
}

/// A language model, remote or local.
#[async_trait]
pub trait Model: Send + Sync {
    /// The next turn, given the conversation so far and the tools on offer.
    async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError>;
}

/// A script: the turns a [`ScriptedModel`] gives, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The turns.
    pub turns: Vec<ScriptTurn>,
}

/// One scripted turn: `{text: ...}` or `{tool_calls: [{name, arguments}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScriptTurn {
    /// A text response.
    Text { text: String },
    /// Tool calls.
    ToolCalls { tool_calls: Vec<ToolCall> },
}

/// A model that replays a script, for tests and CI.
///
/// By default it hands out its turns in order, one per call, whatever it is sent. A
/// *positional* scripted model ([`ScriptedModel::positional`]) instead answers with the
/// turn whose index is the number of assistant turns already in the conversation, so
/// one model serves many concurrent engagements and an engagement resumed from a
/// snapshot (after a restart) continues the script where it stopped.
#[derive(Debug)]
pub struct ScriptedModel {
    turns: Mutex<VecDeque<ModelTurn>>,
    script: Vec<ModelTurn>,
    positional: bool,
}

impl ScriptedModel {
    /// Replays the given turns.
    pub fn new(turns: Vec<ModelTurn>) -> Self {
        ScriptedModel {
            script: turns.clone(),
            turns: Mutex::new(turns.into()),
            positional: false,
        }
    }

    /// Answers by position in the conversation instead of by call order: the n-th
    /// assistant turn of every conversation is the script's n-th turn.
    pub fn positional(mut self) -> Self {
        self.positional = true;
        self
    }

    /// Reads a script from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self, ModelError> {
        // The compiler's own YAML layer (with its budgets against hostile input) reads
        // scripts too, so the project has one YAML stack.
        let (documents, diagnostics) = agentc_compiler::syntax::parse_yaml(
            agentc_compiler::span::FileId(0),
            text,
            &agentc_compiler::syntax::SyntaxLimits::default(),
        );
        if let Some(diagnostic) = diagnostics.first() {
            return Err(ModelError::InvalidScript(diagnostic.message.clone()));
        }
        let [document] = documents.as_slice() else {
            return Err(ModelError::InvalidScript(format!(
                "a script is one YAML document, found {}",
                documents.len()
            )));
        };
        let script: Script = serde_json::from_value(document.root.to_json())
            .map_err(|error| ModelError::InvalidScript(error.to_string()))?;
        Ok(Self::from_script(script))
    }

    /// Reads a script from JSON.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let script: Script = serde_json::from_str(text)
            .map_err(|error| ModelError::InvalidScript(error.to_string()))?;
        Ok(Self::from_script(script))
    }

    fn from_script(script: Script) -> Self {
        Self::new(
            script
                .turns
                .into_iter()
                .map(|turn| match turn {
                    ScriptTurn::Text { text } => ModelTurn::Text(text),
                    ScriptTurn::ToolCalls { tool_calls } => ModelTurn::ToolCalls(tool_calls),
                })
                .collect(),
        )
    }

    /// How many turns are left.
    pub fn remaining(&self) -> usize {
        self.turns.lock().map(|turns| turns.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Model for ScriptedModel {
    async fn complete(
        &self,
        messages: &[Message],
        _tools: &[ToolDescription],
    ) -> Result<ModelTurn, ModelError> {
        if self.positional {
            let position = messages
                .iter()
                .filter(|message| {
                    matches!(
                        message,
                        Message::Assistant { .. } | Message::AssistantToolCalls { .. }
                    )
                })
                .count();
            return self
                .script
                .get(position)
                .cloned()
                .ok_or(ModelError::ScriptExhausted);
        }
        let mut turns = self
            .turns
            .lock()
            .map_err(|_| ModelError::Failed("script lock poisoned".to_string()))?;
        turns.pop_front().ok_or(ModelError::ScriptExhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripts_read_from_yaml_and_json() {
        let yaml = "turns:\n  - tool_calls:\n      - name: hr_kb_search\n        arguments: {knowledge_base_id: acme/hr/h, query: leave}\n  - text: done\n";
        let model = ScriptedModel::from_yaml(yaml).unwrap();
        assert_eq!(model.remaining(), 2);
        let first = model.complete(&[], &[]).await.unwrap();
        let ModelTurn::ToolCalls(calls) = first else {
            panic!("expected calls")
        };
        assert_eq!(calls[0].arguments["knowledge_base_id"], "acme/hr/h");
        assert_eq!(
            model.complete(&[], &[]).await.unwrap(),
            ModelTurn::Text("done".into())
        );
        assert_eq!(
            model.complete(&[], &[]).await,
            Err(ModelError::ScriptExhausted)
        );
        // A positional model answers by the number of assistant turns already given.
        let positional = ScriptedModel::from_yaml(yaml).unwrap().positional();
        let first = positional.complete(&[], &[]).await.unwrap();
        assert!(matches!(first, ModelTurn::ToolCalls(_)));
        assert!(matches!(
            positional.complete(&[], &[]).await.unwrap(),
            ModelTurn::ToolCalls(_)
        ));
        let after_calls = [Message::AssistantToolCalls { calls: vec![] }];
        assert_eq!(
            positional.complete(&after_calls, &[]).await.unwrap(),
            ModelTurn::Text("done".into())
        );
        let after_text = [
            Message::AssistantToolCalls { calls: vec![] },
            Message::Assistant {
                content: "done".into(),
            },
        ];
        assert_eq!(
            positional.complete(&after_text, &[]).await,
            Err(ModelError::ScriptExhausted)
        );
        let json = ScriptedModel::from_json(r#"{"turns":[{"text":"hi"}]}"#).unwrap();
        assert_eq!(json.remaining(), 1);
        assert!(ScriptedModel::from_json("{}").is_err());
    }
}
