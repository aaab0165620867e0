//! AGX-M1: a `tools/call` result as the tool's output.
//!
//! - A result marked `isError` is a tool error. Its content is not passed on: it is the
//!   server's text, which no output check has seen.
//! - `structuredContent`, when present, is the output.
//! - Otherwise the text content is mapped per the tool document's output schema. A
//!   single text block that is a JSON object is that object (how many servers return
//!   JSON). Otherwise, when the schema is an object with exactly one string property,
//!   the text blocks, joined by newlines, are that property (`{text: …}` for a tool
//!   imported without an output schema).
//! - Anything else is an error: an answer the output schema cannot hold is refused, not
//!   guessed at.
//!
//! The output then goes through the output schema and the output restriction like any
//! tool's output.

use rmcp::model::{CallToolResult, ContentBlock};

/// Why a result is not an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// The server marked the result as an error (`isError`).
    #[error("the MCP server reported an error for this call (its text is not shown)")]
    ReportedError,
    /// Text content, and an output schema with no single string property to hold it.
    #[error(
        "the MCP server answered with text, and the output schema has no single string property to hold it"
    )]
    TextWithoutPlace,
    /// No text and no structured content.
    #[error("the MCP server answered with neither structured content nor text")]
    Empty,
}

/// The output of a call, from its result and the tool document's output schema.
pub fn tool_output(
    result: CallToolResult,
    output_schema: &serde_json::Value,
) -> Result<serde_json::Value, OutputError> {
    if result.is_error == Some(true) {
        return Err(OutputError::ReportedError);
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    let texts: Vec<String> = result
        .content
        .into_iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text),
            _ => None,
        })
        .collect();
    if texts.is_empty() {
        return Err(OutputError::Empty);
    }
    if let [only] = texts.as_slice()
        && let Ok(object @ serde_json::Value::Object(_)) = serde_json::from_str(only)
    {
        return Ok(object);
    }
    match single_string_property(output_schema) {
        Some(property) => {
            let mut object = serde_json::Map::new();
            object.insert(
                property.to_string(),
                serde_json::Value::String(texts.join("\n")),
            );
            Ok(serde_json::Value::Object(object))
        }
        None => Err(OutputError::TextWithoutPlace),
    }
}

/// The one property of an object schema, when it has exactly one and it is a string.
fn single_string_property(schema: &serde_json::Value) -> Option<&str> {
    let properties = schema.get("properties")?.as_object()?;
    let mut entries = properties.iter();
    let (name, property) = entries.next()?;
    if entries.next().is_some() {
        return None;
    }
    (property.get("type")? == "string").then_some(name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_schema() -> serde_json::Value {
        serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    }

    #[test]
    fn agx_m1_structured_content_is_the_output() {
        let result = CallToolResult::structured(serde_json::json!({"files": ["a.txt"]}));
        assert_eq!(
            tool_output(result, &text_schema()),
            Ok(serde_json::json!({"files": ["a.txt"]}))
        );
    }

    #[test]
    fn agx_m1_text_fills_the_one_string_property_and_json_text_is_an_object() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("line 1"),
            ContentBlock::text("line 2"),
        ]);
        assert_eq!(
            tool_output(result, &text_schema()),
            Ok(serde_json::json!({"text": "line 1\nline 2"}))
        );
        let result = CallToolResult::success(vec![ContentBlock::text(r#"{"total": 3}"#)]);
        assert_eq!(
            tool_output(result, &serde_json::json!({"type": "object"})),
            Ok(serde_json::json!({"total": 3}))
        );
    }

    #[test]
    fn agx_m1_an_error_result_is_an_error_and_its_text_is_not_passed_on() {
        let result =
            CallToolResult::error(vec![ContentBlock::text("secret path /etc/shadow denied")]);
        let error = tool_output(result, &text_schema()).unwrap_err();
        assert_eq!(error, OutputError::ReportedError);
        assert!(!error.to_string().contains("shadow"));
    }

    #[test]
    fn agx_m1_text_the_schema_cannot_hold_is_refused() {
        let two = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
        let result = CallToolResult::success(vec![ContentBlock::text("plain")]);
        assert_eq!(
            tool_output(result, &two),
            Err(OutputError::TextWithoutPlace)
        );
        let result = CallToolResult::success(vec![]);
        assert_eq!(tool_output(result, &text_schema()), Err(OutputError::Empty));
    }
}
