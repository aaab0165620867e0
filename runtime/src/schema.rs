//! Tool input and output schemas, checked on every call.
//!
//! Every schema is compiled by `jsonschema`, which implements all of JSON Schema and
//! words the reasons a value is refused. Most tool schemas use a small part of it —
//! `type`, `properties`, `required`, `additionalProperties`, `items` and the length
//! and count bounds — and for those a value is also answered by [`Shape`], a direct
//! walk over the value that costs a fraction of the general validator's accept (no
//! hashing of property names, no dynamic dispatch per keyword). A schema with any
//! other keyword, or with a keyword in a form the walk does not read, is answered by
//! `jsonschema` alone. A value the walk refuses is refused; the general validator then
//! only words the reason. The walk accepts and refuses exactly what `jsonschema` does
//! for the schemas it takes, which a differential test over generated schemas and
//! values pins.

use std::collections::BTreeSet;

type Json = serde_json::Value;

/// A compiled schema: the general validator, and the direct walk when the schema
/// uses only what the walk reads.
#[derive(Debug)]
pub(crate) struct CompiledSchema {
    general: jsonschema::Validator,
    shape: Option<Shape>,
}

impl CompiledSchema {
    /// Compiles `schema`; an invalid schema is `jsonschema`'s error.
    pub(crate) fn new(schema: &Json) -> Result<Self, String> {
        let general = jsonschema::validator_for(schema).map_err(|error| error.to_string())?;
        Ok(CompiledSchema {
            general,
            shape: Shape::read(schema, 0),
        })
    }

    /// The first reason `value` does not match, or `None` when it does.
    ///
    /// The reason names the rule that failed and where it sits in the schema (the
    /// keyword and its schema path), never the value: a refused value must not travel
    /// in a refusal reason (OAS-C8), and `jsonschema`'s own wording quotes it (a whole
    /// refused output, or the names of unexpected properties). The schema path comes
    /// from the tool document alone, so it carries nothing the tool or the model wrote.
    pub(crate) fn first_error(&self, value: &Json) -> Option<String> {
        let accepted = match &self.shape {
            Some(shape) => shape.accepts(value),
            None => self.general.is_valid(value),
        };
        if accepted {
            return None;
        }
        // Both answers come from the same schema; should they ever disagree, the value
        // is still refused, with a generic reason.
        Some(self.general.validate(value).err().map_or_else(
            || "does not match the schema".to_string(),
            |error| value_free_reason(&error),
        ))
    }

    /// Whether the direct walk answers for this schema.
    #[cfg(test)]
    pub(crate) fn has_shape(&self) -> bool {
        self.shape.is_some()
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

/// The JSON types a `type` keyword allows, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const OBJECT: u8 = 4;
    const ARRAY: u8 = 8;
    const NUMBER: u8 = 16;
    const INTEGER: u8 = 32;
    const STRING: u8 = 64;

    fn bit(name: &str) -> Option<u8> {
        Some(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "object" => Self::OBJECT,
            "array" => Self::ARRAY,
            "number" => Self::NUMBER,
            "integer" => Self::INTEGER,
            "string" => Self::STRING,
            _ => return None,
        })
    }

    /// The types of `type`: one name or a non-empty list of distinct names.
    fn read(keyword: &Json) -> Option<Types> {
        match keyword {
            Json::String(name) => Self::bit(name).map(Types),
            Json::Array(names) if !names.is_empty() => {
                let mut bits = 0u8;
                for name in names {
                    let bit = Self::bit(name.as_str()?)?;
                    if bits & bit != 0 {
                        return None;
                    }
                    bits |= bit;
                }
                Some(Types(bits))
            }
            _ => None,
        }
    }

    fn allows(self, value: &Json) -> bool {
        let bits = self.0;
        match value {
            Json::Null => bits & Self::NULL != 0,
            Json::Bool(_) => bits & Self::BOOLEAN != 0,
            Json::Object(_) => bits & Self::OBJECT != 0,
            Json::Array(_) => bits & Self::ARRAY != 0,
            Json::String(_) => bits & Self::STRING != 0,
            Json::Number(number) => {
                bits & Self::NUMBER != 0 || (bits & Self::INTEGER != 0 && is_integer(number))
            }
        }
    }
}

/// Whether a number is an integer as JSON Schema counts them: one with no fractional
/// part, however it is written (`1.0` is an integer).
fn is_integer(number: &serde_json::Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|float| float.fract() == 0.0)
}

/// The keywords that only annotate a schema: they never change what it accepts.
/// `format` is one of them for the default dialect (2020-12), where `jsonschema`
/// treats it as an annotation unless told otherwise.
const ANNOTATIONS: [&str; 9] = [
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
    "format",
];

/// The part of a schema the direct walk reads.
#[derive(Debug, Default)]
struct Shape {
    types: Option<Types>,
    /// Declared properties, in the schema's order.
    properties: Vec<(String, Shape)>,
    required: Vec<String>,
    /// `additionalProperties: false`.
    closed: bool,
    items: Option<Box<Shape>>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

/// How deeply nested a schema the walk takes; a deeper one is left to `jsonschema`.
const DEEPEST_SHAPE: usize = 32;

impl Shape {
    /// The shape of `schema`, or `None` when it uses anything the walk does not read.
    fn read(schema: &Json, depth: usize) -> Option<Shape> {
        if depth > DEEPEST_SHAPE {
            return None;
        }
        let Json::Object(keywords) = schema else {
            return None;
        };
        let mut shape = Shape::default();
        for (keyword, value) in keywords {
            match keyword.as_str() {
                "type" => shape.types = Some(Types::read(value)?),
                "properties" => {
                    let Json::Object(properties) = value else {
                        return None;
                    };
                    for (name, property) in properties {
                        shape
                            .properties
                            .push((name.clone(), Shape::read(property, depth + 1)?));
                    }
                }
                "required" => {
                    let Json::Array(names) = value else {
                        return None;
                    };
                    let mut seen = BTreeSet::new();
                    for name in names {
                        let name = name.as_str()?;
                        if !seen.insert(name) {
                            return None;
                        }
                        shape.required.push(name.to_string());
                    }
                }
                "additionalProperties" => shape.closed = !value.as_bool()?,
                "items" => shape.items = Some(Box::new(Shape::read(value, depth + 1)?)),
                "minLength" => shape.min_length = Some(value.as_u64()?),
                "maxLength" => shape.max_length = Some(value.as_u64()?),
                "minItems" => shape.min_items = Some(value.as_u64()?),
                "maxItems" => shape.max_items = Some(value.as_u64()?),
                other if ANNOTATIONS.contains(&other) => {}
                _ => return None,
            }
        }
        Some(shape)
    }

    /// Whether `value` matches.
    fn accepts(&self, value: &Json) -> bool {
        if let Some(types) = self.types
            && !types.allows(value)
        {
            return false;
        }
        match value {
            Json::Object(members) => {
                // Required names are looked up in order: tool inputs have a few keys, and
                // comparing short names costs less than hashing them.
                let has = |name: &str| members.iter().any(|(key, _)| key == name);
                if !self.required.iter().all(|name| has(name)) {
                    return false;
                }
                members.iter().all(|(key, member)| {
                    match self.properties.iter().find(|(name, _)| name == key) {
                        Some((_, property)) => property.accepts(member),
                        None => !self.closed,
                    }
                })
            }
            Json::Array(items) => {
                let count = items.len() as u64;
                self.min_items.is_none_or(|least| count >= least)
                    && self.max_items.is_none_or(|most| count <= most)
                    && self
                        .items
                        .as_ref()
                        .is_none_or(|item| items.iter().all(|element| item.accepts(element)))
            }
            Json::String(text) => {
                if self.min_length.is_none() && self.max_length.is_none() {
                    return true;
                }
                // Lengths count characters (code points), not bytes.
                let length = text.chars().count() as u64;
                self.min_length.is_none_or(|least| length >= least)
                    && self.max_length.is_none_or(|most| length <= most)
            }
            Json::Null | Json::Bool(_) | Json::Number(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
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

    /// The schemas of the bundled examples are all answered by the walk.
    #[test]
    fn the_common_keywords_are_walked_and_the_rest_left_to_jsonschema() {
        let walked = [
            json!({"type": "object", "properties": {"q": {"type": "string", "maxLength": 5}},
                "required": ["q"], "additionalProperties": false}),
            json!({"type": "array", "items": {"type": ["integer", "null"]}, "maxItems": 3}),
            json!({"type": "string", "format": "uri", "description": "a link"}),
            json!({}),
        ];
        for schema in walked {
            assert!(
                CompiledSchema::new(&schema).unwrap().has_shape(),
                "{schema}"
            );
        }
        let general = [
            json!({"type": "string", "pattern": "^a"}),
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}),
            json!({"properties": {"a": true}}),
            json!({"additionalProperties": {"type": "string"}}),
            json!({"type": ["string", "string"]}),
            json!({"maxLength": 2.5}),
            json!({"items": [{"type": "string"}]}),
            json!({"$ref": "#/$defs/a", "$defs": {"a": {}}}),
            json!({"type": "object", "minimum": 1}),
        ];
        for schema in general {
            let compiled = CompiledSchema::new(&schema);
            assert!(
                compiled.is_err() || !compiled.unwrap().has_shape(),
                "{schema}"
            );
        }
    }

    #[test]
    fn a_refused_value_is_refused_with_the_rule_and_its_place() {
        let schema = CompiledSchema::new(&json!({"type": "object",
            "properties": {"q": {"type": "string", "maxLength": 2}}, "required": ["q"]}))
        .unwrap();
        assert!(schema.has_shape());
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

    fn type_name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "null", "boolean", "object", "array", "number", "integer", "string",
        ])
    }

    fn bound() -> impl Strategy<Value = Option<u64>> {
        prop::option::of(0u64..4)
    }

    const NAMES: [&str; 4] = ["a", "b", "é", "kb"];

    /// Schemas made of the keywords the walk reads, nested a few levels.
    fn walked_schema() -> impl Strategy<Value = Json> {
        let leaf = (
            prop::option::of(prop::collection::vec(type_name(), 1..3)),
            bound(),
            bound(),
            bound(),
            bound(),
            prop::option::of(prop::sample::select(vec!["uri", "email", "date-time"])),
        )
            .prop_map(
                |(types, min_length, max_length, min_items, max_items, format)| {
                    let mut schema = serde_json::Map::new();
                    if let Some(format) = format {
                        schema.insert("format".into(), json!(format));
                    }
                    if let Some(mut types) = types {
                        types.dedup();
                        let unique: BTreeSet<_> = types.iter().collect();
                        if unique.len() == types.len() {
                            schema.insert(
                                "type".into(),
                                if types.len() == 1 {
                                    json!(types[0])
                                } else {
                                    json!(types)
                                },
                            );
                        }
                    }
                    for (keyword, bound) in [
                        ("minLength", min_length),
                        ("maxLength", max_length),
                        ("minItems", min_items),
                        ("maxItems", max_items),
                    ] {
                        if let Some(bound) = bound {
                            schema.insert(keyword.into(), json!(bound));
                        }
                    }
                    Json::Object(schema)
                },
            );
        leaf.prop_recursive(3, 16, 4, |inner| {
            (
                inner.clone(),
                prop::collection::vec((prop::sample::select(NAMES.to_vec()), inner.clone()), 0..3),
                prop::collection::btree_set(prop::sample::select(NAMES.to_vec()), 0..3),
                prop::option::of(any::<bool>()),
                prop::option::of(inner),
            )
                .prop_map(|(base, properties, required, additional, items)| {
                    let mut schema = base.as_object().cloned().unwrap_or_default();
                    if !properties.is_empty() {
                        let properties: serde_json::Map<_, _> = properties
                            .into_iter()
                            .map(|(name, schema)| (name.to_string(), schema))
                            .collect();
                        schema.insert("properties".into(), Json::Object(properties));
                    }
                    if !required.is_empty() {
                        schema.insert("required".into(), json!(required));
                    }
                    if let Some(additional) = additional {
                        schema.insert("additionalProperties".into(), json!(additional));
                    }
                    if let Some(items) = items {
                        schema.insert("items".into(), items);
                    }
                    Json::Object(schema)
                })
        })
    }

    /// Values of every JSON type, with the names and lengths the schemas test.
    fn value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|number| json!(number)),
            (0u64..3).prop_map(|number| json!(number)),
            any::<u64>().prop_map(|number| json!(number)),
            prop::sample::select(vec![0.0, 1.0, -2.0, 1.5, -0.5, 1e300, 4_294_967_296.0])
                .prop_map(|number| json!(number)),
            "[aé]{0,5}".prop_map(Json::String),
            prop::sample::select(vec![
                "not a uri",
                "https://a.example/b",
                "2024-01-01T00:00:00Z"
            ])
            .prop_map(|text| json!(text)),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                prop::collection::vec((prop::sample::select(NAMES.to_vec()), inner), 0..4)
                    .prop_map(|members| {
                        Json::Object(
                            members
                                .into_iter()
                                .map(|(name, value)| (name.to_string(), value))
                                .collect(),
                        )
                    }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The walk accepts exactly what `jsonschema` accepts, for every schema it
        /// takes, so answering a call by the walk changes no verdict.
        #[test]
        fn the_walk_and_jsonschema_agree(
            schema in walked_schema(),
            values in prop::collection::vec(value(), 1..6),
        ) {
            let compiled = CompiledSchema::new(&schema).unwrap();
            prop_assert!(compiled.has_shape(), "{}", schema);
            let shape = compiled.shape.as_ref().unwrap();
            for value in &values {
                prop_assert_eq!(
                    shape.accepts(value),
                    compiled.general.is_valid(value),
                    "schema {} value {}", schema, value
                );
            }
        }
    }
}
