//! The JSON Schemas the generated HR crate's types report through `schemars`: a tool's
//! types report the tool document's own schema (with the keywords a `#[derive]` would
//! lose), an agent's exposes type one written from its CEL type, and every schema is
//! self-contained, so it works inside a user's own derived schema too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hr::{
    HrAgentExposes, HrKbSearchInput, HrKbSearchOutput, HrKbSearchOutputResultsItem,
    PromptInjectionScannerOutput,
};
use schemars::{JsonSchema, schema_for};
use serde_json::{Value, json};

/// A type's schema as `schema_for!` gives it, without the keys schemars adds at the top.
fn reported(schema: schemars::Schema) -> Value {
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    value
}

#[test]
fn a_tool_input_reports_the_tool_documents_schema() {
    assert_eq!(
        reported(schema_for!(HrKbSearchInput)),
        json!({
            "type": "object",
            "properties": {
                "knowledge_base_id": {
                    "type": "string",
                    "description": "Collection path, such as `acme/hr/handbook`."
                },
                "query": {"type": "string", "description": "Free-text search query."}
            },
            "required": ["knowledge_base_id", "query"],
            "additionalProperties": false,
            "description": "The input of tool `hr_kb_search`: Searches one collection of Acme's knowledge base and returns matching articles."
        })
    );
}

#[test]
fn keywords_a_derive_would_lose_are_kept_at_every_depth() {
    // `format: uri` on a nested item's field, and `minimum`/`maximum` on a number.
    let output = reported(schema_for!(HrKbSearchOutput));
    assert_eq!(
        output["properties"]["results"]["items"]["properties"]["url"],
        json!({"type": "string", "format": "uri"})
    );
    let item = reported(schema_for!(HrKbSearchOutputResultsItem));
    assert_eq!(item["properties"]["url"]["format"], json!("uri"));
    assert_eq!(item["required"], json!(["title", "snippet", "url"]));
    let scanner = reported(schema_for!(PromptInjectionScannerOutput));
    assert_eq!(scanner["properties"]["score"]["minimum"], json!(0));
    assert_eq!(scanner["properties"]["score"]["maximum"], json!(1));
}

#[test]
fn an_exposes_type_reports_a_closed_schema_of_its_fields() {
    let exposes = reported(schema_for!(HrAgentExposes));
    assert_eq!(exposes["type"], json!("object"));
    assert_eq!(exposes["additionalProperties"], json!(false));
    assert_eq!(
        exposes["required"],
        json!(["asked_by", "last_kb", "searches"])
    );
    assert_eq!(
        exposes["properties"]["searches"],
        json!({"type": "integer", "format": "int64"})
    );
}

/// A user's own type that holds a generated one.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct SavedSearch {
    input: HrKbSearchInput,
    output: HrKbSearchOutput,
}

#[test]
fn generated_schemas_work_inside_a_users_derived_schema() {
    let schema = schema_for!(SavedSearch).to_value();
    let definitions = schema["$defs"]
        .as_object()
        .expect("the generated types are defined");
    // Each generated type is defined once, as it reports itself, and referred to by name.
    assert_eq!(
        definitions.get("HrKbSearchInput"),
        Some(&reported(schema_for!(HrKbSearchInput)))
    );
    assert_eq!(
        schema["properties"]["output"],
        json!({"$ref": "#/$defs/HrKbSearchOutput"})
    );
    // No schema of a generated type refers to anything: the nested item is inline.
    let text = serde_json::to_string(&definitions["HrKbSearchOutput"]).unwrap();
    assert!(!text.contains("$ref"), "{text}");
}
