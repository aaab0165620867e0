//! Review (OAS-C7): before going on, the reviewer is asked whether the agent may
//! continue, and the engagement waits for a yes. An approval names the exact call it
//! approves (a hash of the tool name and canonical input), so a changed input needs a
//! new approval.

use async_trait::async_trait;

use crate::spec::ReviewerRef;

/// What is asked of a reviewer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewRequest {
    /// The engagement whose call is reviewed.
    pub engagement: String,
    /// The engagement the user started: `engagement` itself, or, when the call is made
    /// by an agent called as a tool, the outermost engagement of that chain, which is
    /// the one a server stores, saves and resumes.
    pub root_engagement: String,
    /// The agent asking.
    pub agent: String,
    /// Who is asked.
    pub reviewer: ReviewerRef,
    /// The resolved reviewer: the user id, the owner, the named user or the agent.
    pub reviewer_id: String,
    /// The tool to be called.
    pub tool: String,
    /// `input` or `output`.
    pub stage: &'static str,
    /// The pending call's input.
    pub inputs: serde_json::Value,
    /// The pending call's output, when reviewing an output.
    pub outputs: Option<serde_json::Value>,
    /// The hash an approval must carry.
    pub call_hash: String,
    /// The engagement as JSON, so the reviewer decides "given the current engagement"
    /// (`Engagement::to_reviewer_json`: refused calls without their inputs).
    pub engagement_state: serde_json::Value,
}

/// A reviewer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewDecision {
    /// Approves the call whose hash is given.
    Approve { call_hash: String },
    /// Refuses, with a reason.
    Refuse { reason: String },
}

/// Someone (a user, the owner, or another agent) who approves or refuses calls.
#[async_trait]
pub trait Reviewer: Send + Sync {
    /// Decides on one pending call; the engagement waits for the answer.
    async fn review(&self, request: &ReviewRequest) -> ReviewDecision;
}

/// A reviewer that always approves or always refuses (tests, CI).
#[derive(Debug, Clone, Copy)]
pub struct StaticReviewer {
    approve: bool,
}

impl StaticReviewer {
    /// Approves every call, each with its own hash.
    pub fn approving() -> Self {
        StaticReviewer { approve: true }
    }

    /// Refuses every call.
    pub fn refusing() -> Self {
        StaticReviewer { approve: false }
    }
}

#[async_trait]
impl Reviewer for StaticReviewer {
    async fn review(&self, request: &ReviewRequest) -> ReviewDecision {
        if self.approve {
            ReviewDecision::Approve {
                call_hash: request.call_hash.clone(),
            }
        } else {
            ReviewDecision::Refuse {
                reason: "refused by static reviewer".to_string(),
            }
        }
    }
}

/// Whether a reviewing agent's answer approves: its first word is `approve` or
/// `approved`, whatever the case and punctuation around it.
pub fn answer_approves(text: &str) -> bool {
    let first = text
        .split(|c: char| !c.is_alphabetic())
        .find(|word| !word.is_empty())
        .unwrap_or_default()
        .to_lowercase();
    first == "approve" || first == "approved"
}

/// Writes JSON with object keys sorted, so equal values always hash equally whatever
/// order the model wrote the keys in.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(object) => {
                let mut keys: Vec<&String> = object.keys().collect();
                keys.sort();
                out.push('{');
                for (position, key) in keys.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                    out.push(':');
                    if let Some(item) = object.get(*key) {
                        write(item, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (position, item) in items.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Lowercase hex of a SHA-256 digest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::audit::hex_digest(bytes)
}

/// The hash that binds an approval to one call: tool name, stage, canonical input and,
/// for an output review, canonical output.
pub fn call_hash(
    tool: &str,
    stage: &str,
    inputs: &serde_json::Value,
    outputs: Option<&serde_json::Value>,
) -> String {
    let mut text = format!("{tool}\n{stage}\n{}", canonical_json(inputs));
    if let Some(outputs) = outputs {
        text.push('\n');
        text.push_str(&canonical_json(outputs));
    }
    sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_answer_that_starts_with_approve_approves() {
        assert!(answer_approves("approve: the request is within policy"));
        assert!(answer_approves("  **Approved.** Fine."));
        assert!(!answer_approves("deny: salary data"));
        assert!(!answer_approves("I would not approve this"));
        assert!(!answer_approves(""));
        assert!(!answer_approves("approvement"));
    }

    #[test]
    fn call_hash_ignores_key_order_but_not_values() {
        let a = call_hash("t", "input", &json!({"a": 1, "b": 2}), None);
        let b = call_hash("t", "input", &json!({"b": 2, "a": 1}), None);
        let c = call_hash("t", "input", &json!({"a": 1, "b": 3}), None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, call_hash("u", "input", &json!({"a": 1, "b": 2}), None));
    }
}
