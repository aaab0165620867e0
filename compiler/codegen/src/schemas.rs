//! The JSON Schema each generated type reports through its `schemars::JsonSchema` impl.
//!
//! Generated types do not derive `JsonSchema`: the derive rebuilds a schema from the
//! Rust type, which loses what the tool document said (`minimum`, `pattern`, `format`,
//! descriptions), and its expansion was about a tenth of a generated crate's compile
//! time. Instead each type's impl returns a schema written here, as JSON text:
//! - for a type that comes from a tool document, the part of the document's schema it
//!   was translated from, as the document wrote it;
//! - for a type that comes from a CEL type (an agent's `exposes`), or from a part of a
//!   tool's schema that is not self-contained, a schema written from the CEL type.
//!
//! Every schema is self-contained (no `$ref`), so it means the same wherever schemars
//! places it (inline, or under another schema's `$defs`).

use agentc_cel::{ObjectType, Type};
use serde_json::{Map, Value, json};

/// Keywords whose value is resolved against the document a schema sits in.
const REFERENCE_KEYWORDS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// Keywords of a document's root that must not travel with a part of it.
const ROOT_ONLY_KEYWORDS: &[&str] = &["$schema", "$id"];

/// Whether `schema` resolves anything against its document, at any depth.
fn refers_elsewhere(schema: &Value) -> bool {
    match schema {
        Value::Object(object) => object.iter().any(|(key, value)| {
            REFERENCE_KEYWORDS.contains(&key.as_str()) || refers_elsewhere(value)
        }),
        Value::Array(items) => items.iter().any(refers_elsewhere),
        _ => false,
    }
}

/// The schema a generated struct reports: `document_part` (the part of a tool's schema
/// the struct was translated from) when it is self-contained, otherwise one written from
/// the struct's CEL type. `description` is added when the schema has none.
pub fn struct_schema(
    object: &ObjectType,
    document_part: Option<&Value>,
    description: Option<&str>,
) -> Value {
    let self_contained = document_part
        .filter(|part| !refers_elsewhere(part))
        .and_then(Value::as_object);
    let mut schema = match self_contained {
        Some(part) => {
            let mut part = part.clone();
            for keyword in ROOT_ONLY_KEYWORDS {
                part.remove(*keyword);
            }
            part
        }
        None => object_schema(object),
    };
    if let Some(description) = description
        && !schema.contains_key("description")
    {
        schema.insert("description".to_string(), json!(description));
    }
    Value::Object(schema)
}

/// A JSON Schema for values of a CEL type, as the generated Rust types serialize them:
/// closed objects list their properties (the always-present ones required), open ones
/// allow more; timestamps and durations are their text forms; `dyn` allows anything.
fn type_schema(ty: &Type) -> Value {
    match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::Int => json!({"type": "integer", "format": "int64"}),
        Type::Uint => json!({"type": "integer", "format": "uint64", "minimum": 0}),
        Type::Double => json!({"type": "number", "format": "double"}),
        Type::String => json!({"type": "string"}),
        Type::Timestamp => json!({"type": "string", "format": "date-time"}),
        Type::Duration => json!({"type": "string"}),
        Type::List(element) => json!({"type": "array", "items": type_schema(element)}),
        Type::Map(key, value) if **key == Type::String => {
            json!({"type": "object", "additionalProperties": type_schema(value)})
        }
        Type::Object(object) => Value::Object(object_schema(object)),
        _ => Value::Bool(true),
    }
}

fn object_schema(object: &ObjectType) -> Map<String, Value> {
    let properties: Map<String, Value> = object
        .fields
        .iter()
        .map(|(name, field)| {
            let schema = type_schema(&field.ty);
            let schema = if field.nullable {
                json!({"anyOf": [schema, {"type": "null"}]})
            } else {
                schema
            };
            (name.clone(), schema)
        })
        .collect();
    let required: Vec<Value> = object
        .fields
        .iter()
        .filter(|(_, field)| field.always_present)
        .map(|(name, _)| json!(name))
        .collect();
    let mut schema = Map::new();
    schema.insert("type".to_string(), json!("object"));
    schema.insert("properties".to_string(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".to_string(), Value::Array(required));
    }
    schema.insert("additionalProperties".to_string(), json!(object.open));
    schema
}

/// The part of `schema` that describes `field` of an object, a list's items or a map's
/// values: how [`agentc_cel::type_from_json_schema`] walks a schema, so that each
/// generated type is paired with the part it was translated from.
pub fn property<'a>(schema: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    schema?.get("properties")?.get(field)
}

/// See [`property`].
pub fn items(schema: Option<&Value>) -> Option<&Value> {
    schema?.get("items")
}

/// See [`property`].
pub fn additional_properties(schema: Option<&Value>) -> Option<&Value> {
    schema?.get("additionalProperties")
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentc_cel::type_from_json_schema;

    fn object_type(schema: &Value) -> ObjectType {
        match type_from_json_schema(schema) {
            Type::Object(object) => object,
            other => panic!("expected an object type, got {other:?}"),
        }
    }

    #[test]
    fn a_self_contained_tool_schema_is_reported_as_written() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A search.",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                "query": {"type": "string", "pattern": "^[a-z ]+$"}
            },
            "required": ["query"]
        });
        let reported = struct_schema(&object_type(&schema), Some(&schema), Some("unused"));
        let mut expected = schema.clone();
        if let Some(object) = expected.as_object_mut() {
            object.remove("$schema");
        }
        // The bounds and pattern that a derive would lose are kept.
        assert_eq!(reported, expected);
    }

    #[test]
    fn a_schema_that_refers_elsewhere_is_written_from_the_type() {
        let schema = json!({
            "type": "object",
            "properties": {
                "when": {"$ref": "#/$defs/time"},
                "count": {"type": "integer"}
            },
            "required": ["count"],
            "$defs": {"time": {"type": "string"}}
        });
        let reported = struct_schema(&object_type(&schema), Some(&schema), Some("A request."));
        assert_eq!(
            reported,
            json!({
                "type": "object",
                "description": "A request.",
                "properties": {
                    "count": {"type": "integer", "format": "int64"},
                    "when": true
                },
                "required": ["count"],
                "additionalProperties": false
            })
        );
    }

    #[test]
    fn a_cel_type_gets_a_closed_schema_with_its_required_fields() {
        let schema = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "scores": {"type": "object", "additionalProperties": {"type": "number"}},
                "flag": {"type": "boolean"}
            },
            "required": ["tags", "flag"],
            "additionalProperties": true
        });
        let reported = struct_schema(&object_type(&schema), None, Some("Exposes."));
        assert_eq!(
            reported,
            json!({
                "type": "object",
                "description": "Exposes.",
                "properties": {
                    "flag": {"type": "boolean"},
                    "scores": {"type": "object", "additionalProperties": {"type": "number", "format": "double"}},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["flag", "tags"],
                "additionalProperties": true
            })
        );
    }

    #[test]
    fn parts_are_found_the_way_the_type_translation_walks_the_schema() {
        let schema = json!({
            "properties": {"results": {"type": "array", "items": {"type": "object", "properties": {}}}},
            "additionalProperties": {"type": "string"}
        });
        let results = property(Some(&schema), "results");
        assert_eq!(
            items(results),
            Some(&json!({"type": "object", "properties": {}}))
        );
        assert_eq!(
            additional_properties(Some(&schema)),
            Some(&json!({"type": "string"}))
        );
        assert_eq!(property(Some(&schema), "missing"), None);
        assert_eq!(property(None, "results"), None);
    }
}
