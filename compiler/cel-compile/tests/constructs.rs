//! One small snapshot of generated Rust per CEL construct the compiler supports, so that
//! a change to the code generator reads as a short diff of the construct it touches (the
//! differential corpus in `agentc-cel-differential` checks that the code is right; these
//! show what it is). Regenerate with `INSTA_UPDATE=always cargo test -p agentc-cel-compile`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel::engagement::CapabilityTypes;
use agentc_cel::type_from_json_schema;
use agentc_cel_compile::{compile_function, engagement_layout, format_tokens};

/// One capability with a typed input and output: strings, an int, an optional field, a
/// list of strings and a list of objects.
fn layout() -> agentc_cel::ObjectType {
    let input = type_from_json_schema(&serde_json::json!({
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"}
        },
        "required": ["query", "limit", "tags"]
    }));
    let output = type_from_json_schema(&serde_json::json!({
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}, "score": {"type": "number"}},
                    "required": ["title", "score"]
                }
            }
        },
        "required": ["results"]
    }));
    engagement_layout(&[CapabilityTypes {
        name: "search".to_string(),
        input,
        output,
        collects_results: true,
    }])
}

/// The function compiled from `source`, formatted.
fn compiled(source: &str) -> String {
    let expr = agentc_cel::parse(source).unwrap();
    let function = compile_function("check", &expr, "Engagement", &layout())
        .unwrap_or_else(|error| panic!("`{source}`: {error}"));
    format!("// {source}\n{}", format_tokens(function.tokens).unwrap())
}

macro_rules! construct {
    ($($name:ident: $source:expr;)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(compiled($source));
            }
        )*
    };
}

construct! {
    field_selection_and_string_method: r#"recent.search.inputs.query.startsWith("hr/")"#;
    optional_field_read: r#"recent.search.inputs.note == "x""#;
    has_on_an_optional_field: r#"has(recent.search.inputs.note)"#;
    integer_arithmetic_is_checked: r#"recent.search.inputs.limit * 2 + 1 <= 100"#;
    membership_in_a_literal_list: r#"recent.search.inputs.query in ["a", "b"]"#;
    size_of_a_string_and_a_list: r#"size(recent.search.inputs.query) + size(recent.search.inputs.tags) < 50"#;
    constant_regex_compiled_once: r#"recent.search.inputs.query.matches("^[a-z]+$")"#;
    regex_built_at_run_time: r#"recent.search.inputs.query.matches(recent.search.inputs.tags[0])"#;
    string_concatenation_is_counted: r#"recent.search.inputs.query + "!" == "a!""#;
    logical_operators_absorb_errors: r#"recent.search.inputs.note == "x" || recent.search.inputs.limit > 0"#;
    conditional_of_borrowed_strings: r#"(recent.search.inputs.limit > 0 ? recent.search.inputs.query : "none") == "a""#;
    all_over_a_list_of_objects: r#"recent.search.outputs.results.all(r, r.score >= 0.5)"#;
    exists_with_a_fallible_body: r#"recent.search.outputs.results.exists(r, r.title.matches(recent.search.inputs.query))"#;
    exists_one: r#"recent.search.inputs.tags.exists_one(t, t == "hr")"#;
    filter_and_map_results_are_counted: r#"recent.search.outputs.results.filter(r, r.score > 0.5).map(r, r.title)"#;
    history_and_user: r#"size(history.search) < 10 && user.id != """#;
    timestamps_and_durations: r#"timestamp("2026-01-01T00:00:00Z") - started_at < duration("1h")"#;
    conversions: r#"int(recent.search.inputs.query) + int(double(recent.search.inputs.limit)) > 0"#;
}
