//! JSON Schema helpers: validation that names the line of the schema that failed,
//! instances synthesized from a schema (what a mock answers when the document gives no
//! example), and the "contains" comparison of expected bodies.

use agentc_compiler::lower::SpannedJson;
use serde_json::{Map, Value, json};

use crate::tool::ToolUnderTest;

/// Why a value does not match a schema: the first error, where it is in the value, and
/// the line of the schema keyword that rejected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SchemaMismatch {
    pub detail: String,
    /// `file:line (/schema/pointer)`.
    pub location: String,
}

/// Validates `instance` against `schema` (a schema of `tool`'s document).
pub(crate) fn validate(
    tool: &ToolUnderTest,
    schema: &SpannedJson,
    instance: &Value,
) -> Result<(), SchemaMismatch> {
    let validator = match jsonschema::validator_for(&schema.value) {
        Ok(validator) => validator,
        Err(error) => {
            return Err(SchemaMismatch {
                detail: format!("the schema itself is invalid: {error}"),
                location: tool.location(schema.span),
            });
        }
    };
    let Some(error) = validator.iter_errors(instance).next() else {
        return Ok(());
    };
    let schema_pointer = error.schema_path().as_str().to_string();
    let instance_pointer = error.instance_path().as_str().to_string();
    let at = if instance_pointer.is_empty() {
        "the body".to_string()
    } else {
        format!("`{instance_pointer}`")
    };
    Err(SchemaMismatch {
        // The error quotes the value, which came from the service.
        detail: format!(
            "{at}: {}",
            crate::redact::excerpt(&error.to_string(), None, 200)
        ),
        location: format!(
            "{} ({})",
            tool.location(schema.span_at(&schema_pointer)),
            if schema_pointer.is_empty() {
                "/"
            } else {
                &schema_pointer
            }
        ),
    })
}

/// A value that matches `schema` for the common keywords (type, properties, required,
/// enum, const, format, minimum, minItems, minLength): what a mock answers when the
/// document gives no example output. Bounded in depth, so a recursive schema ends.
pub(crate) fn synthesize(schema: &Value) -> Value {
    synthesize_at(schema, 0)
}

fn synthesize_at(schema: &Value, depth: usize) -> Value {
    let Some(schema) = schema.as_object() else {
        return json!({});
    };
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    if depth > 16 {
        return Value::Null;
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema.contains_key("properties") => "object",
        _ => "object",
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|names| names.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (name, property) in properties {
                    if required.contains(&name.as_str()) {
                        object.insert(name.clone(), synthesize_at(property, depth + 1));
                    }
                }
            }
            Value::Object(object)
        }
        "array" => {
            let count = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array(
                (0..count.min(8))
                    .map(|_| synthesize_at(&item, depth + 1))
                    .collect(),
            )
        }
        "string" => {
            let text = match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => "2030-01-01T09:00:00Z".to_string(),
                Some("date") => "2030-01-01".to_string(),
                Some("email") => "someone@example.com".to_string(),
                Some("uri" | "url") => "https://example.com/".to_string(),
                Some("uuid") => "00000000-0000-4000-8000-000000000000".to_string(),
                _ => "example".to_string(),
            };
            let minimum = schema
                .get("minLength")
                .and_then(Value::as_u64)
                .and_then(|length| usize::try_from(length).ok())
                .unwrap_or(0);
            if text.len() < minimum {
                Value::String(format!("{text}{}", "x".repeat(minimum - text.len())))
            } else {
                Value::String(text)
            }
        }
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

/// Whether `actual` contains `expected`: equal scalars, every key of an expected object
/// present with a containing value, and arrays equal in length with containing items.
pub(crate) fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected.iter().all(|(key, value)| {
            actual
                .get(key)
                .is_some_and(|actual_value| contains(actual_value, value))
        }),
        (Value::Array(actual), Value::Array(expected)) => {
            actual.len() == expected.len()
                && actual
                    .iter()
                    .zip(expected)
                    .all(|(actual, expected)| contains(actual, expected))
        }
        (Value::Number(actual), Value::Number(expected)) => actual.as_f64() == expected.as_f64(),
        _ => actual == expected,
    }
}

/// At most `limit` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let cut: String = text.chars().take(limit).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn synthesized_values_match_their_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "minLength": 12},
                "status": {"type": "string", "enum": ["confirmed", "tentative"]},
                "at": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "minItems": 2, "items": {"type": "integer", "minimum": 3}},
                "score": {"type": "number", "minimum": 0.5},
                "optional": {"type": "boolean"}
            },
            "required": ["id", "status", "at", "tags", "score"],
            "additionalProperties": false
        });
        let value = synthesize(&schema);
        assert!(jsonschema::is_valid(&schema, &value), "{value}");
        assert!(value.get("optional").is_none());
        assert_eq!(value["tags"], json!([3, 3]));
    }

    #[test]
    fn contains_is_a_subset_comparison() {
        let actual = json!({"error": {"code": "bad", "message": "m"}, "n": 1});
        assert!(contains(&actual, &json!({"error": {"code": "bad"}})));
        assert!(contains(&actual, &json!({"n": 1.0})));
        assert!(!contains(&actual, &json!({"error": {"code": "other"}})));
        assert!(!contains(&actual, &json!({"missing": true})));
        assert!(!contains(&json!([1, 2]), &json!([1])));
    }
}
