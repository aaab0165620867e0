//! Tool input and output schemas, checked on every call.
//!
//! Every schema is compiled once by `jsonschema`, which implements all of JSON Schema,
//! and that one validator decides every value: on security input there is no second,
//! faster validator whose acceptances would have to be trusted to agree. A refusal is
//! worded here, from `jsonschema`'s error, without the value (see
//! [`CompiledSchema::first_error`]).

type Json = serde_json::Value;

/// A compiled schema.
#[derive(Debug)]
pub(crate) struct CompiledSchema {
    validator: jsonschema::Validator,
}

impl CompiledSchema {
    /// Compiles `schema`; an invalid schema is `jsonschema`'s error.
    pub(crate) fn new(schema: &Json) -> Result<Self, String> {
        let validator = jsonschema::validator_for(schema).map_err(|error| error.to_string())?;
        Ok(CompiledSchema { validator })
    }

    /// The first reason `value` does not match, or `None` when it does.
    ///
    /// The reason names the rule that failed and where it sits in the schema (the
    /// keyword and its schema path), never the value: a refused value must not travel
    /// in a refusal reason (OAS-C8), and `jsonschema`'s own wording quotes it (a whole
    /// refused output, or the names of unexpected properties). The schema path comes
    /// from the tool document alone, so it carries nothing the tool or the model wrote.
    pub(crate) fn first_error(&self, value: &Json) -> Option<String> {
        self.validator
            .validate(value)
            .err()
            .map(|error| value_free_reason(&error))
    }
}

/// `error` as the keyword that failed and its place in the schema, without the value.
fn value_free_reason(error: &jsonschema::ValidationError<'_>) -> String {
    let schema_path = error.schema_path().to_string();
    let place = if schema_path.is_empty() {
        "/".to_string()
    } else {
        schema_path
    };
    format!(
        "fails the schema's `{}` rule at schema path {place}",
        error.kind().keyword()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    /// OAS-C8: a refused value never travels in the reason, whichever keyword refused
    /// it and whichever validator answered; the reason names the rule and its place.
    #[test]
    fn refusal_reason_never_quotes_refused_output() {
        let marker = "MARKER-7f3a";
        let cases = [
            (
                json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
                json!({"n": marker}),
                "`type` rule at schema path /properties/n/type",
            ),
            (
                json!({"type": "object", "additionalProperties": false}),
                json!({marker: 1}),
                "rule at schema path /additionalProperties",
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "integer"}}),
                json!({marker: marker}),
                "`type` rule at schema path /additionalProperties/type",
            ),
            (
                json!({"type": "string", "pattern": "^a"}),
                json!(marker),
                "`pattern` rule at schema path /pattern",
            ),
            (
                json!({"enum": ["a"]}),
                json!({"records": vec![marker; 2_000]}),
                "`enum` rule at schema path /enum",
            ),
        ];
        for (schema, value, expected) in cases {
            let reason = CompiledSchema::new(&schema)
                .unwrap()
                .first_error(&value)
                .unwrap();
            assert!(!reason.contains(marker), "{reason}");
            assert!(reason.contains(expected), "{reason}");
            assert!(reason.len() < 200, "{reason}");
        }
    }

    #[test]
    fn a_refused_value_is_refused_with_the_rule_and_its_place() {
        let schema = CompiledSchema::new(&json!({"type": "object",
            "properties": {"q": {"type": "string", "maxLength": 2}}, "required": ["q"]}))
        .unwrap();
        assert_eq!(schema.first_error(&json!({"q": "ab"})), None);
        let reason = schema.first_error(&json!({"q": "abc"})).unwrap();
        assert!(
            reason.contains("`maxLength` rule at schema path /properties/q/maxLength"),
            "{reason}"
        );
        let reason = schema.first_error(&json!({})).unwrap();
        assert!(reason.contains("required"), "{reason}");
        // Two characters, six bytes: lengths count characters.
        assert_eq!(schema.first_error(&json!({"q": "éé"})), None);
        assert!(schema.first_error(&json!({"q": 1})).is_some());
    }
}
