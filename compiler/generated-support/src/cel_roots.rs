//! The typed roots of compiled checks, built straight from the runtime's CEL values.
//!
//! A compiled check reads typed structs (one per object of the engagement layout).
//! Building them through `serde_json` (CEL value → JSON → `Deserialize`) instantiates
//! serde's visitors and `serde_json`'s value deserializer once per struct in every
//! generated crate, which is most of what such a crate costs to compile. Here each
//! struct gets a small non-generic [`FromCel`] impl (generated: one [`field`] call per
//! field), and everything generic is written once in this crate.
//!
//! The conversion accepts exactly what the JSON route accepted for the types that
//! compiled CEL reads, so that a check allows and denies the same engagements: numbers
//! convert between `int`, `uint` and `double` as JSON numbers do, timestamps and
//! durations are read from their CEL values or their RFC 3339 / duration text, strings
//! also take the text of timestamps, durations and type values (their JSON form), an
//! absent or `null` optional field is `None`, and anything else that does not fit is an
//! error — which denies (OAS-C8).

// The generic impls and functions here are instantiated once per field type in every
// generated crate, so they pass errors on with `match` rather than `?`, `map` or
// `map_err`: each of those is one more generic function per type for the compiler to
// instantiate, which is what a generated crate spends most of its compile time on.
#![allow(clippy::question_mark)]

use std::collections::BTreeMap;
use std::sync::Arc;

use agentc_cel::{MapKey, Value, ValueMap};
use agentc_runtime::{CheckError, FieldLookup, VariableSource};

/// A type that a compiled check's root is built of, read from a CEL value.
pub trait FromCel: Sized {
    /// Reads the value; a value that does not fit is an error.
    fn from_cel(value: &Value) -> Result<Self, CheckError>;

    /// The value of a field that is absent from its object: an error, except for
    /// optional fields.
    fn absent(field: &str) -> Result<Self, CheckError> {
        Err(CheckError::Evaluation(format!("missing field `{field}`")))
    }
}

fn mismatch(expected: &str, value: &Value) -> CheckError {
    CheckError::Evaluation(format!(
        "invalid type: {}, expected {expected}",
        value.type_name()
    ))
}

impl FromCel for bool {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            Value::Bool(flag) => Ok(*flag),
            other => Err(mismatch("a boolean", other)),
        }
    }
}

impl FromCel for i64 {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            Value::Int(number) => Ok(*number),
            Value::Uint(number) => i64::try_from(*number)
                .map_err(|_| CheckError::Evaluation(format!("{number} is out of range for i64"))),
            other => Err(mismatch("i64", other)),
        }
    }
}

impl FromCel for u64 {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            Value::Uint(number) => Ok(*number),
            Value::Int(number) => u64::try_from(*number)
                .map_err(|_| CheckError::Evaluation(format!("{number} is out of range for u64"))),
            other => Err(mismatch("u64", other)),
        }
    }
}

impl FromCel for f64 {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            // A non-finite double has no JSON form (it was `null` on the JSON route).
            Value::Double(number) if number.is_finite() => Ok(*number),
            Value::Int(number) => Ok(*number as f64),
            Value::Uint(number) => Ok(*number as f64),
            other => Err(mismatch("f64", other)),
        }
    }
}

impl FromCel for agentc_cel_support::Text {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            // The engagement's own text, shared rather than copied.
            Value::String(text) | Value::Type(text) => Ok(Self::from(Arc::clone(text))),
            Value::Timestamp(timestamp) => Ok(Self::from(timestamp.to_string())),
            Value::Duration(duration) => Ok(Self::from(duration.to_string())),
            other => Err(mismatch("a string", other)),
        }
    }
}

impl FromCel for agentc_cel_support::Timestamp {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            Value::Timestamp(timestamp) => Ok(*timestamp),
            Value::String(text) => agentc_cel_support::Timestamp::parse(text).ok_or_else(|| {
                CheckError::Evaluation("expected an RFC 3339 timestamp".to_string())
            }),
            other => Err(mismatch("a timestamp", other)),
        }
    }
}

impl FromCel for agentc_cel_support::Duration {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        match value {
            Value::Duration(duration) => Ok(*duration),
            Value::String(text) => agentc_cel_support::Duration::parse(text)
                .ok_or_else(|| CheckError::Evaluation("expected a duration".to_string())),
            other => Err(mismatch("a duration", other)),
        }
    }
}

impl FromCel for serde_json::Value {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        Ok(agentc_runtime::check::value_to_json(value))
    }
}

impl<T: FromCel> FromCel for Option<T> {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        if let Value::Null = value {
            return Ok(None);
        }
        match T::from_cel(value) {
            Ok(converted) => Ok(Some(converted)),
            Err(error) => Err(error),
        }
    }

    fn absent(_field: &str) -> Result<Self, CheckError> {
        Ok(None)
    }
}

impl<T: FromCel> FromCel for Vec<T> {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        // A plain loop rather than `collect`: this is instantiated once per element type
        // in every generated crate, and the iterator adapters cost far more to compile;
        // what is not generic is in `list_items`.
        let items = match list_items(value) {
            Ok(items) => items,
            Err(error) => return Err(error),
        };
        let mut list = Vec::with_capacity(items.len());
        for item in items.iter() {
            match T::from_cel(item) {
                Ok(converted) => list.push(converted),
                Err(error) => return Err(error),
            }
        }
        Ok(list)
    }
}

/// The items of a list value; bytes are a list of numbers, as their JSON form was.
fn list_items(value: &Value) -> Result<std::borrow::Cow<'_, [Value]>, CheckError> {
    match value {
        Value::List(items) => Ok(std::borrow::Cow::Borrowed(items)),
        Value::Bytes(bytes) => Ok(std::borrow::Cow::Owned(
            bytes
                .iter()
                .map(|byte| Value::Uint(u64::from(*byte)))
                .collect(),
        )),
        other => Err(mismatch("a list", other)),
    }
}

/// A map key as the JSON route wrote it: strings as they are, other keys as their JSON
/// text.
fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::String(text) => text.to_string(),
        other => agentc_runtime::check::value_to_json(&other.to_value()).to_string(),
    }
}

impl<T: FromCel> FromCel for BTreeMap<String, T> {
    fn from_cel(value: &Value) -> Result<Self, CheckError> {
        let entries = match object(value) {
            Ok(entries) => entries,
            Err(error) => return Err(error),
        };
        let mut map = BTreeMap::new();
        for (key, item) in entries.iter() {
            match T::from_cel(item) {
                Ok(converted) => map.insert(key_text(key), converted),
                Err(error) => return Err(error),
            };
        }
        Ok(map)
    }
}

/// The map of an object value; anything else is an error.
pub fn object(value: &Value) -> Result<&ValueMap, CheckError> {
    match value {
        Value::Map(map) => Ok(map),
        other => Err(mismatch("an object", other)),
    }
}

/// One field of an object: read with `T`, or `T`'s absent value when the object has no
/// such key.
pub fn field<T: FromCel>(map: &ValueMap, name: &str) -> Result<T, CheckError> {
    match map.get_str(name) {
        Some(value) => T::from_cel(value),
        None => T::absent(name),
    }
}

/// The keys of an open object that its struct does not declare, as JSON (the
/// `extra_fields` of an object whose schema allows more properties).
pub fn extra_fields(
    map: &ValueMap,
    declared: &[&str],
) -> Result<BTreeMap<String, serde_json::Value>, CheckError> {
    Ok(map
        .iter()
        .map(|(key, item)| (key_text(key), item))
        .filter(|(key, _)| !declared.contains(&key.as_str()))
        .map(|(key, item)| (key, agentc_runtime::check::value_to_json(item)))
        .collect())
}

/// One root a compiled check reads, converted from the variable's value; a root that is
/// not bound is an error (a denial), as it is for the interpreter.
pub fn root<T: FromCel>(variables: &dyn VariableSource, name: &str) -> Result<T, CheckError> {
    match bound_variable(variables, name) {
        Ok(value) => T::from_cel(&value),
        Err(error) => Err(error),
    }
}

/// A root struct built field by field (generated for `recent`'s struct), so that a
/// source that gives single fields, as the engagement does for `recent` with the
/// pending call among them, is not asked to build the whole variable.
pub trait FromRootFields: Sized {
    /// Reads each field with [`root_field`].
    fn from_root_fields(variables: &dyn VariableSource, root: &str) -> Result<Self, CheckError>;
}

/// A check's root read field by field: see [`FromRootFields`].
pub fn root_by_fields<T: FromRootFields>(
    variables: &dyn VariableSource,
    name: &str,
) -> Result<T, CheckError> {
    T::from_root_fields(variables, name)
}

/// One field of a root variable: read with `T`, or `T`'s absent value when the variable
/// has no such field. A source that gives the variable only whole is asked for it, and
/// the field read from it, so either route reads the same value.
pub fn root_field<T: FromCel>(
    variables: &dyn VariableSource,
    root: &str,
    name: &str,
) -> Result<T, CheckError> {
    match root_field_value(variables, root, name) {
        Ok(Some(value)) => T::from_cel(&value),
        Ok(None) => T::absent(name),
        Err(error) => Err(error),
    }
}

/// What [`root_field`] converts: the field's value, `None` when the variable has no such
/// field, or the error of an unbound variable or one that is not an object (not
/// generic, so that it is compiled once).
fn root_field_value(
    variables: &dyn VariableSource,
    root: &str,
    name: &str,
) -> Result<Option<Value>, CheckError> {
    match variables.field(root, name) {
        FieldLookup::Found(value) => Ok(Some(value)),
        FieldLookup::Absent => Ok(None),
        FieldLookup::WholeVariableOnly => {
            let whole = bound_variable(variables, root)?;
            Ok(object(&whole)?.get_str(name).cloned())
        }
    }
}

/// A variable's value, or the error that denies when it is not bound (not generic).
fn bound_variable(variables: &dyn VariableSource, name: &str) -> Result<Value, CheckError> {
    variables
        .variable(name)
        .ok_or_else(|| CheckError::Evaluation(format!("no such attribute `{name}`")))
}

/// A compiled check: the generated function that builds the check's typed root and
/// runs the compiled expression. A function pointer rather than a closure, so that the
/// runtime's `FnCheck` is instantiated once here instead of once per check.
pub fn compiled(
    roots: &[&str],
    function: fn(&dyn VariableSource) -> Result<Value, CheckError>,
) -> Arc<dyn agentc_runtime::Check> {
    Arc::new(agentc_runtime::FnCheck::new(roots, function))
}

/// The typed root of a guardrail's compiled check: an object of the variables it reads
/// (the guardrail tool's output fields, OAS-G4). A field that is not bound is absent, so
/// it is `None` when optional and an error (a denial) otherwise.
pub fn fields<T: FromCel>(variables: &dyn VariableSource, names: &[&str]) -> Result<T, CheckError> {
    T::from_cel(&bound_fields(variables, names))
}

/// The object [`fields`] converts (not generic, so that it is compiled once).
fn bound_fields(variables: &dyn VariableSource, names: &[&str]) -> Value {
    let mut map = ValueMap::new();
    for name in names {
        if let Some(value) = variables.variable(name) {
            map.insert(MapKey::String(Arc::from(*name)), value);
        }
    }
    Value::Map(Arc::new(map))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    /// A struct shaped as `agentc-cel`'s `struct_definitions` writes them, with the
    /// `FromCel` impl the generator writes beside it, and `Deserialize` for the JSON
    /// route it replaces.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Root {
        int: i64,
        uint: u64,
        double: f64,
        text: agentc_cel_support::Text,
        at: agentc_cel_support::Timestamp,
        span: agentc_cel_support::Duration,
        list: Vec<i64>,
        #[serde(rename = "_map")]
        map: BTreeMap<String, bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        optional: Option<Inner>,
        any: serde_json::Value,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Inner {
        id: agentc_cel_support::Text,
        #[serde(flatten)]
        extra_fields: BTreeMap<String, serde_json::Value>,
    }

    impl FromCel for Root {
        fn from_cel(value: &Value) -> Result<Self, CheckError> {
            let map = object(value)?;
            Ok(Root {
                int: field(map, "int")?,
                uint: field(map, "uint")?,
                double: field(map, "double")?,
                text: field(map, "text")?,
                at: field(map, "at")?,
                span: field(map, "span")?,
                list: field(map, "list")?,
                map: field(map, "_map")?,
                optional: field(map, "optional")?,
                any: field(map, "any")?,
            })
        }
    }

    impl FromCel for Inner {
        fn from_cel(value: &Value) -> Result<Self, CheckError> {
            let map = object(value)?;
            Ok(Inner {
                id: field(map, "id")?,
                extra_fields: extra_fields(map, &["id"])?,
            })
        }
    }

    fn base() -> serde_json::Value {
        json!({
            "int": 3, "uint": 4, "double": 1.5, "text": "t",
            "at": "2030-01-01T00:00:00Z", "span": "90s",
            "list": [1, 2], "_map": {"a": true},
            "optional": {"id": "x", "more": [1]}, "any": {"k": null}
        })
    }

    /// The JSON route (CEL value → JSON → `Deserialize`) and `FromCel` agree on whether
    /// a value converts, and on what it converts to.
    fn agree(value: &Value) {
        let through_json: Result<Root, _> =
            serde_json::from_value(agentc_runtime::check::value_to_json(value));
        let direct = Root::from_cel(value);
        match (&through_json, &direct) {
            (Ok(left), Ok(right)) => assert_eq!(left, right),
            (Err(_), Err(_)) => {}
            _ => panic!("the routes disagree on {value:?}: {through_json:?} vs {direct:?}"),
        }
    }

    fn with(key: &str, replacement: Value) -> Value {
        let Value::Map(map) = agentc_cel::value_from_json(&base()) else {
            panic!("not a map")
        };
        let mut map = ValueMap::clone(&map);
        map.insert(MapKey::String(Arc::from(key)), replacement);
        Value::Map(Arc::new(map))
    }

    fn without(key: &str) -> Value {
        let mut json = base();
        json.as_object_mut().unwrap().remove(key);
        agentc_cel::value_from_json(&json)
    }

    #[test]
    fn from_cel_accepts_and_refuses_what_the_json_route_did() {
        let plain = agentc_cel::value_from_json(&base());
        assert!(Root::from_cel(&plain).is_ok());
        agree(&plain);
        let timestamp = agentc_cel_support::Timestamp::parse("2031-05-06T07:08:09Z").unwrap();
        let duration = agentc_cel_support::Duration::parse("2h").unwrap();
        let cases = [
            ("int", Value::Uint(7)),
            ("int", Value::Uint(u64::MAX)),
            ("int", Value::Double(2.0)),
            ("int", Value::String("3".into())),
            ("uint", Value::Int(5)),
            ("uint", Value::Int(-1)),
            ("double", Value::Int(-4)),
            ("double", Value::Uint(9)),
            ("double", Value::Double(f64::NAN)),
            ("double", Value::Double(f64::INFINITY)),
            ("text", Value::Timestamp(timestamp)),
            ("text", Value::Duration(duration)),
            ("text", Value::Type("int".into())),
            ("text", Value::Int(1)),
            ("text", Value::Null),
            ("at", Value::Timestamp(timestamp)),
            ("at", Value::String("yesterday".into())),
            ("span", Value::Duration(duration)),
            ("span", Value::String("1h30m".into())),
            ("span", Value::Int(3)),
            ("list", Value::Bytes(Arc::from(&b"ab"[..]))),
            ("list", Value::List(Arc::from(vec![Value::Double(1.5)]))),
            ("list", Value::Null),
            ("optional", Value::Null),
            ("optional", Value::Int(1)),
            ("optional", agentc_cel::value_from_json(&json!({"more": 1}))),
            ("any", Value::Timestamp(timestamp)),
            ("any", Value::Null),
        ];
        for (key, replacement) in cases {
            agree(&with(key, replacement));
        }
        for key in ["int", "optional", "any", "_map", "at"] {
            agree(&without(key));
        }
        // Map keys that are not strings become their JSON text, as on the JSON route.
        let mut keyed = ValueMap::new();
        keyed.insert(MapKey::Int(1), Value::Bool(true));
        keyed.insert(MapKey::Bool(false), Value::Bool(false));
        agree(&with("_map", Value::Map(Arc::new(keyed))));
        // A required field that is missing or mistyped denies.
        assert!(Root::from_cel(&without("int")).is_err());
        assert!(Root::from_cel(&with("int", Value::Double(2.0))).is_err());
        assert_eq!(Root::from_cel(&without("optional")).unwrap().optional, None);
    }

    struct Variables(Vec<(&'static str, Value)>);

    impl VariableSource for Variables {
        fn variable(&self, name: &str) -> Option<Value> {
            self.0
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn fields_reads_the_bound_variables_and_an_unbound_required_one_denies() {
        let Value::Map(base) = agentc_cel::value_from_json(&base()) else {
            panic!("not a map")
        };
        let all: Vec<(&'static str, Value)> = [
            "int", "uint", "double", "text", "at", "span", "list", "_map", "optional", "any",
        ]
        .into_iter()
        .map(|name| (name, base.get_str(name).cloned().unwrap()))
        .collect();
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        let root: Root = fields(&Variables(all.clone()), &names).unwrap();
        assert_eq!((root.int, root.text.as_str()), (3, "t"));
        // A variable that is not named is not read, and an optional one may be unbound.
        let without_optional: Vec<_> = all
            .iter()
            .filter(|(n, _)| *n != "optional")
            .cloned()
            .collect();
        let root: Root = fields(&Variables(without_optional), &names).unwrap();
        assert_eq!(root.optional, None);
        assert!(fields::<Root>(&Variables(all.clone()), &names[1..]).is_err());
        // A required field that is not bound denies.
        let without_int: Vec<_> = all.iter().filter(|(n, _)| *n != "int").cloned().collect();
        assert!(fields::<Root>(&Variables(without_int), &names).is_err());
    }

    #[test]
    fn a_root_is_converted_from_its_variable_and_an_unbound_one_denies() {
        let variables = Variables(vec![("int", Value::Int(42)), ("text", Value::Int(1))]);
        assert_eq!(root::<i64>(&variables, "int").unwrap(), 42);
        assert!(root::<i64>(&variables, "missing").is_err());
        assert!(root::<agentc_cel_support::Text>(&variables, "text").is_err());
    }

    /// A source of one variable `r`, answering field lookups itself or not at all.
    struct OneVariable {
        value: Value,
        by_field: bool,
    }

    impl VariableSource for OneVariable {
        fn variable(&self, name: &str) -> Option<Value> {
            (name == "r").then(|| self.value.clone())
        }

        fn field(&self, variable: &str, field: &str) -> FieldLookup {
            if !self.by_field || variable != "r" {
                return FieldLookup::WholeVariableOnly;
            }
            match &self.value {
                Value::Map(map) => match map.get_str(field) {
                    Some(value) => FieldLookup::Found(value.clone()),
                    None => FieldLookup::Absent,
                },
                _ => FieldLookup::WholeVariableOnly,
            }
        }
    }

    /// Read field by field or from the whole variable, a root field is the same value,
    /// an absent optional field is `None`, and an absent required field, a field of the
    /// wrong type or an unbound variable is an error (a denial).
    #[test]
    fn root_fields_read_the_same_by_either_route() {
        let value = agentc_cel::value_from_json(&json!({"id": "a", "n": 2}));
        for by_field in [true, false] {
            let source = OneVariable {
                value: value.clone(),
                by_field,
            };
            let id: agentc_cel_support::Text = root_field(&source, "r", "id").unwrap();
            assert_eq!(id.as_str(), "a");
            assert_eq!(root_field::<i64>(&source, "r", "n").unwrap(), 2);
            assert_eq!(
                root_field::<Option<i64>>(&source, "r", "gone").unwrap(),
                None
            );
            assert!(root_field::<i64>(&source, "r", "gone").is_err());
            assert!(root_field::<bool>(&source, "r", "n").is_err());
            assert!(root_field::<i64>(&source, "unbound", "n").is_err());
        }
    }
}
