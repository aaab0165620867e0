//! The typed roots of compiled checks, built straight from the engagement's data.
//!
//! A compiled check reads typed structs (one per object of the engagement layout).
//! Building them through `serde_json` (CEL value → JSON → `Deserialize`) instantiates
//! serde's visitors and `serde_json`'s value deserializer once per struct in every
//! generated crate, which is most of what such a crate costs to compile. Here each
//! struct gets a small non-generic [`FromCel`] impl (generated: one [`field`] call per
//! field), and everything generic is written once in this crate.
//!
//! A root is read from a [`Source`]: a CEL value, or the JSON a call was made with.
//! The engagement gives each call (`recent.<name>`, the pending call among them) as its
//! JSON ([`FieldLookup::Invocation`]), so that a compiled check costs no CEL value per
//! call; the interpreter's CEL values are built only when something interprets them.
//!
//! Both routes accept exactly what the JSON route through `Deserialize` accepted for
//! the types that compiled CEL reads, so that a check allows and denies the same
//! engagements: numbers convert between `int`, `uint` and `double` as JSON numbers do,
//! timestamps and durations are read from their CEL values or their RFC 3339 /
//! duration text, strings also take the text of timestamps, durations and type values
//! (their JSON form), an absent or `null` optional field is `None`, and anything else
//! that does not fit is an error — which denies (OAS-C8). A JSON value is read as the
//! CEL value `agentc_cel::value_from_json` makes of it would be.
//!
//! In order: [`Source`], [`Object`] and [`Reads`]; [`FromCel`] and its impls over
//! private helpers (`number`, `string`, `list_items`, `entries`, `mismatch`); the entry
//! points generated code calls ([`field`], [`root`], [`root_field`], [`fields`],
//! [`compiled`]); tests that read the same data by both routes. One file because the
//! rules above are one contract: both routes share those private helpers, and the tests
//! that prove they agree need both in view.

// The generic impls and functions here are instantiated once per field type in every
// generated crate, so they pass errors on with `match` rather than `?`, `map` or
// `map_err`: each of those is one more generic function per type for the compiler to
// instantiate, which is what a generated crate spends most of its compile time on.
#![allow(clippy::question_mark)]

use std::collections::BTreeMap;
use std::sync::Arc;

use agentc_cel::engagement::field;
use agentc_cel::{MapKey, Value, ValueMap};
use agentc_runtime::{CheckError, FieldLookup, Invocation, VariableSource};

type Json = serde_json::Value;

/// What a typed root is read from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A CEL value.
    Cel(&'a Value),
    /// A JSON value, read as the CEL value it converts to.
    Json(&'a Json),
    /// A call, `{inputs, outputs?}`, read from its JSON.
    Invocation(&'a Invocation),
}

/// The most keys a JSON object may have to be searched in order rather than hashed.
const SMALL_OBJECT: usize = 8;

/// The fields of an object a typed struct is read from.
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    /// A CEL map.
    Cel(&'a ValueMap),
    /// A JSON object.
    Json(&'a serde_json::Map<String, Json>),
    /// A call's `inputs`, `started_at` and, when it has them, `outputs` and `ended_at`.
    Invocation(&'a Invocation),
}

impl<'a> Object<'a> {
    /// The field `name`, or `None` when the object has no such key.
    pub fn get(self, name: &str) -> Option<Source<'a>> {
        match self {
            Object::Cel(map) => map.get_str(name).map(Source::Cel),
            // A small object is searched in order: comparing a few short keys is
            // cheaper than hashing the name, which a lookup in `serde_json`'s map does.
            Object::Json(map) if map.len() <= SMALL_OBJECT => map
                .iter()
                .find(|(key, _)| key.as_str() == name)
                .map(|(_, value)| Source::Json(value)),
            Object::Json(map) => map.get(name).map(Source::Json),
            Object::Invocation(call) => match name {
                field::INPUTS => Some(Source::Json(&call.inputs)),
                field::OUTPUTS => call.outputs.as_deref().map(Source::Json),
                field::CALL_STARTED_AT => call.started_at().map(Source::Cel),
                field::CALL_ENDED_AT => call.ended_at().map(Source::Cel),
                _ => None,
            },
        }
    }
}

/// Which fields of its typed root one compiled check reads: one bit per field of the
/// root's structs, numbered by the generator (struct by struct, field by field, in the
/// order the structs are written). An agent's typed root holds every field that any of
/// its checks reads; each check converts only its own fields and leaves the others at
/// their defaults, which it never looks at, so that an output check does not convert
/// the call's inputs, nor an input check the other capabilities' calls. A field
/// numbered past the bits is not read.
///
/// The generator numbers a check's bits from the fields its compiled code reads, and
/// only after compiling the check again over a layout that holds nothing else: a check
/// that reached any other field would not compile there, and would read every field.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    bits: &'static [u64],
}

impl Reads {
    /// The fields whose bits are set.
    pub const fn new(bits: &'static [u64]) -> Self {
        Reads { bits }
    }

    /// Whether the field numbered `field` is read.
    #[inline]
    pub fn field(self, field: usize) -> bool {
        match self.bits.get(field / 64) {
            Some(word) => (word >> (field % 64)) & 1 == 1,
            None => false,
        }
    }
}

/// A type that a compiled check's root is built of.
pub trait FromCel: Sized {
    /// Reads the value; a value that does not fit is an error. Of a struct, only the
    /// fields in `reads` are read; the others are their defaults.
    fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError>;

    /// The value of a field that is absent from its object: an error, except for
    /// optional fields.
    fn absent(field: &str) -> Result<Self, CheckError> {
        Err(CheckError::Evaluation(format!("missing field `{field}`")))
    }
}

/// The CEL type name of what a value is (a JSON value: of the CEL value it converts to).
fn type_name(value: Source<'_>) -> &'static str {
    match value {
        Source::Cel(value) => value.type_name(),
        Source::Json(json) => match json {
            Json::Null => "null_type",
            Json::Bool(_) => "bool",
            Json::Number(number) if number.is_i64() => "int",
            Json::Number(number) if number.is_u64() => "uint",
            Json::Number(_) => "double",
            Json::String(_) => "string",
            Json::Array(_) => "list",
            Json::Object(_) => "map",
        },
        Source::Invocation(_) => "map",
    }
}

fn mismatch(expected: &str, value: Source<'_>) -> CheckError {
    CheckError::Evaluation(format!(
        "invalid type: {}, expected {expected}",
        type_name(value)
    ))
}

/// A JSON number as CEL reads it: `int` when it fits, else `uint`, else `double`.
enum Number {
    Int(i64),
    Uint(u64),
    Double(f64),
}

/// The number a value holds, if it is one.
fn number(value: Source<'_>) -> Option<Number> {
    match value {
        Source::Cel(Value::Int(number)) => Some(Number::Int(*number)),
        Source::Cel(Value::Uint(number)) => Some(Number::Uint(*number)),
        Source::Cel(Value::Double(number)) => Some(Number::Double(*number)),
        Source::Json(Json::Number(number)) => Some(match (number.as_i64(), number.as_u64()) {
            (Some(integer), _) => Number::Int(integer),
            (None, Some(unsigned)) => Number::Uint(unsigned),
            (None, None) => Number::Double(number.as_f64().unwrap_or(f64::NAN)),
        }),
        _ => None,
    }
}

/// The text a value holds, if it is a string.
fn string(value: Source<'_>) -> Option<&str> {
    match value {
        Source::Cel(Value::String(text)) => Some(text),
        Source::Json(Json::String(text)) => Some(text),
        _ => None,
    }
}

impl FromCel for bool {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        match value {
            Source::Cel(Value::Bool(flag)) | Source::Json(Json::Bool(flag)) => Ok(*flag),
            other => Err(mismatch("a boolean", other)),
        }
    }
}

impl FromCel for i64 {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        match number(value) {
            Some(Number::Int(number)) => Ok(number),
            Some(Number::Uint(number)) => i64::try_from(number)
                .map_err(|_| CheckError::Evaluation(format!("{number} is out of range for i64"))),
            _ => Err(mismatch("i64", value)),
        }
    }
}

impl FromCel for u64 {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        match number(value) {
            Some(Number::Uint(number)) => Ok(number),
            Some(Number::Int(number)) => u64::try_from(number)
                .map_err(|_| CheckError::Evaluation(format!("{number} is out of range for u64"))),
            _ => Err(mismatch("u64", value)),
        }
    }
}

impl FromCel for f64 {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        match number(value) {
            // A non-finite double has no JSON form (it was `null` on the JSON route).
            Some(Number::Double(number)) if number.is_finite() => Ok(number),
            Some(Number::Int(number)) => Ok(number as f64),
            Some(Number::Uint(number)) => Ok(number as f64),
            _ => Err(mismatch("f64", value)),
        }
    }
}

impl FromCel for agentc_cel_support::Text {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        match value {
            // The engagement's own text, shared rather than copied.
            Source::Cel(Value::String(text) | Value::Type(text)) => {
                Ok(Self::from(Arc::clone(text)))
            }
            Source::Cel(Value::Timestamp(timestamp)) => Ok(Self::from(timestamp.to_string())),
            Source::Cel(Value::Duration(duration)) => Ok(Self::from(duration.to_string())),
            Source::Json(Json::String(text)) => Ok(Self::from(text.as_str())),
            other => Err(mismatch("a string", other)),
        }
    }
}

impl FromCel for agentc_cel_support::Timestamp {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        if let Source::Cel(Value::Timestamp(timestamp)) = value {
            return Ok(*timestamp);
        }
        match string(value) {
            Some(text) => agentc_cel_support::Timestamp::parse(text).ok_or_else(|| {
                CheckError::Evaluation("expected an RFC 3339 timestamp".to_string())
            }),
            None => Err(mismatch("a timestamp", value)),
        }
    }
}

impl FromCel for agentc_cel_support::Duration {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        if let Source::Cel(Value::Duration(duration)) = value {
            return Ok(*duration);
        }
        match string(value) {
            Some(text) => agentc_cel_support::Duration::parse(text)
                .ok_or_else(|| CheckError::Evaluation("expected a duration".to_string())),
            None => Err(mismatch("a duration", value)),
        }
    }
}

impl FromCel for serde_json::Value {
    fn from_cel(value: Source<'_>, _reads: Reads) -> Result<Self, CheckError> {
        Ok(match value {
            Source::Cel(value) => agentc_runtime::check::value_to_json(value),
            // Through the CEL value, so that this reads what the CEL route reads (a
            // nesting deeper than the conversion allows becomes `null` on both).
            Source::Json(json) => {
                agentc_runtime::check::value_to_json(&agentc_cel::value_from_json(json))
            }
            Source::Invocation(call) => agentc_runtime::check::value_to_json(call.cel_value()),
        })
    }
}

impl<T: FromCel> FromCel for Option<T> {
    fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
        if let Source::Cel(Value::Null) | Source::Json(Json::Null) = value {
            return Ok(None);
        }
        match T::from_cel(value, reads) {
            Ok(converted) => Ok(Some(converted)),
            Err(error) => Err(error),
        }
    }

    fn absent(_field: &str) -> Result<Self, CheckError> {
        Ok(None)
    }
}

impl<T: FromCel> FromCel for Vec<T> {
    fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
        // A plain loop rather than `collect`: this is instantiated once per element type
        // in every generated crate, and the iterator adapters cost far more to compile;
        // what is not generic is in `list_items`.
        let items = match list_items(value) {
            Ok(items) => items,
            Err(error) => return Err(error),
        };
        let mut list = Vec::with_capacity(items.len());
        for index in 0..items.len() {
            match T::from_cel(items.get(index), reads) {
                Ok(converted) => list.push(converted),
                Err(error) => return Err(error),
            }
        }
        Ok(list)
    }
}

/// The items of a list value.
enum ListItems<'a> {
    Cel(std::borrow::Cow<'a, [Value]>),
    Json(&'a [Json]),
}

impl ListItems<'_> {
    fn len(&self) -> usize {
        match self {
            ListItems::Cel(items) => items.len(),
            ListItems::Json(items) => items.len(),
        }
    }

    /// The item at `index`, which is in bounds; out of bounds reads as `null`, which no
    /// typed item accepts.
    fn get(&self, index: usize) -> Source<'_> {
        const NULL: Json = Json::Null;
        match self {
            ListItems::Cel(items) => items.get(index).map_or(Source::Json(&NULL), Source::Cel),
            ListItems::Json(items) => Source::Json(items.get(index).unwrap_or(&NULL)),
        }
    }
}

/// The items of a list value; bytes are a list of numbers, as their JSON form was.
fn list_items(value: Source<'_>) -> Result<ListItems<'_>, CheckError> {
    match value {
        Source::Cel(Value::List(items)) => Ok(ListItems::Cel(std::borrow::Cow::Borrowed(items))),
        Source::Cel(Value::Bytes(bytes)) => Ok(ListItems::Cel(std::borrow::Cow::Owned(
            bytes
                .iter()
                .map(|byte| Value::Uint(u64::from(*byte)))
                .collect(),
        ))),
        Source::Json(Json::Array(items)) => Ok(ListItems::Json(items)),
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

/// The entries of an object, in the object's order, with their keys as text.
fn entries(object: Object<'_>) -> Vec<(String, Source<'_>)> {
    match object {
        Object::Cel(map) => map
            .iter()
            .map(|(key, item)| (key_text(key), Source::Cel(item)))
            .collect(),
        Object::Json(map) => map
            .iter()
            .map(|(key, item)| (key.clone(), Source::Json(item)))
            .collect(),
        Object::Invocation(_) => [field::INPUTS, field::OUTPUTS]
            .into_iter()
            .filter_map(|key| Some((key.to_string(), object.get(key)?)))
            .collect(),
    }
}

impl<T: FromCel> FromCel for BTreeMap<String, T> {
    fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
        let fields = match object(value) {
            Ok(fields) => fields,
            Err(error) => return Err(error),
        };
        let mut map = BTreeMap::new();
        for (key, item) in entries(fields) {
            match T::from_cel(item, reads) {
                Ok(converted) => map.insert(key, converted),
                Err(error) => return Err(error),
            };
        }
        Ok(map)
    }
}

/// The fields of an object value; anything else is an error.
pub fn object(value: Source<'_>) -> Result<Object<'_>, CheckError> {
    match value {
        Source::Cel(Value::Map(map)) => Ok(Object::Cel(map)),
        Source::Json(Json::Object(map)) => Ok(Object::Json(map)),
        Source::Invocation(call) => Ok(Object::Invocation(call)),
        other => Err(mismatch("an object", other)),
    }
}

/// One field of an object: read with `T`, or `T`'s absent value when the object has no
/// such key.
pub fn field<T: FromCel>(object: Object<'_>, name: &str, reads: Reads) -> Result<T, CheckError> {
    match object.get(name) {
        Some(value) => T::from_cel(value, reads),
        None => T::absent(name),
    }
}

/// The keys of an open object that its struct does not declare, as JSON (the
/// `extra_fields` of an object whose schema allows more properties).
pub fn extra_fields(
    object: Object<'_>,
    declared: &[&str],
) -> Result<BTreeMap<String, serde_json::Value>, CheckError> {
    let mut extra = BTreeMap::new();
    for (key, item) in entries(object) {
        if declared.contains(&key.as_str()) {
            continue;
        }
        // A JSON value has no fields to choose from.
        let item = match serde_json::Value::from_cel(item, Reads::new(&[])) {
            Ok(item) => item,
            Err(error) => return Err(error),
        };
        extra.insert(key, item);
    }
    Ok(extra)
}

/// One root a compiled check reads, converted from the variable's value; a root that is
/// not bound is an error (a denial), as it is for the interpreter.
pub fn root<T: FromCel>(
    variables: &dyn VariableSource,
    name: &str,
    reads: Reads,
) -> Result<T, CheckError> {
    match bound_variable(variables, name) {
        Ok(value) => T::from_cel(Source::Cel(&value), reads),
        Err(error) => Err(error),
    }
}

/// A root struct built field by field (generated for `recent`'s struct), so that a
/// source that gives single fields, as the engagement does for `recent` with the
/// pending call among them, is not asked to build the whole variable.
pub trait FromRootFields: Sized {
    /// Reads each field in `reads` with [`root_field`]; the others are their defaults.
    fn from_root_fields(
        variables: &dyn VariableSource,
        root: &str,
        reads: Reads,
    ) -> Result<Self, CheckError>;
}

/// A check's root read field by field: see [`FromRootFields`].
pub fn root_by_fields<T: FromRootFields>(
    variables: &dyn VariableSource,
    name: &str,
    reads: Reads,
) -> Result<T, CheckError> {
    T::from_root_fields(variables, name, reads)
}

/// One field of a root variable: read with `T`, or `T`'s absent value when the variable
/// has no such field. A source that gives the variable only whole is asked for it, and
/// the field read from it, so either route reads the same value.
pub fn root_field<T: FromCel>(
    variables: &dyn VariableSource,
    root: &str,
    name: &str,
    reads: Reads,
) -> Result<T, CheckError> {
    match root_field_value(variables, root, name) {
        Ok(RootField::Call(call)) => T::from_cel(Source::Invocation(call), reads),
        Ok(RootField::Value(value)) => T::from_cel(Source::Cel(&value), reads),
        Ok(RootField::Absent) => T::absent(name),
        Err(error) => Err(error),
    }
}

/// What [`root_field`] converts.
enum RootField<'a> {
    /// A call, read from its JSON.
    Call(&'a Invocation),
    /// A CEL value.
    Value(Value),
    /// The variable has no such field.
    Absent,
}

/// The field [`root_field`] converts, or the error of an unbound variable or one that
/// is not an object (not generic, so that it is compiled once).
fn root_field_value<'a>(
    variables: &'a dyn VariableSource,
    root: &str,
    name: &str,
) -> Result<RootField<'a>, CheckError> {
    match variables.field(root, name) {
        FieldLookup::Invocation(call) => Ok(RootField::Call(call)),
        FieldLookup::Found(value) => Ok(RootField::Value(value)),
        FieldLookup::Absent => Ok(RootField::Absent),
        FieldLookup::WholeVariableOnly => {
            let whole = bound_variable(variables, root)?;
            let Value::Map(map) = &whole else {
                return Err(mismatch("an object", Source::Cel(&whole)));
            };
            Ok(match map.get_str(name) {
                Some(value) => RootField::Value(value.clone()),
                None => RootField::Absent,
            })
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
/// runs the compiled expression, with the interpreter behind it for the evaluations that
/// run past the compiled code's conservative budget (see `agentc_cel_support::budget`).
/// A function pointer rather than a closure, so that the runtime's `FnCheck` is
/// instantiated once here instead of once per check.
pub fn compiled(
    roots: &[&str],
    function: fn(&dyn VariableSource) -> Result<Value, CheckError>,
    interpreter: agentc_runtime::CelCheck,
) -> Arc<dyn agentc_runtime::Check> {
    Arc::new(agentc_runtime::FnCheck::new(roots, function).with_interpreter(interpreter))
}

/// The typed root of a guardrail's compiled check: an object of the variables it reads
/// (the guardrail tool's output fields, OAS-G4). A field that is not bound is absent, so
/// it is `None` when optional and an error (a denial) otherwise.
pub fn fields<T: FromCel>(
    variables: &dyn VariableSource,
    names: &[&str],
    reads: Reads,
) -> Result<T, CheckError> {
    T::from_cel(Source::Cel(&bound_fields(variables, names)), reads)
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
    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
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

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    struct Inner {
        id: agentc_cel_support::Text,
        #[serde(flatten)]
        extra_fields: BTreeMap<String, serde_json::Value>,
    }

    /// Every field of the test structs: `Root`'s are numbered 0 to 9, `Inner`'s `id` 10,
    /// and `Call`'s `inputs` and `outputs` 11 and 12, as the generator numbers them.
    const EVERY_FIELD: Reads = Reads::new(&[u64::MAX]);

    /// One field of a test struct, as the generator writes it: read when its bit is
    /// set, its default otherwise.
    macro_rules! read {
        ($reads:expr, $bit:expr, $map:expr, $name:expr) => {
            if $reads.field($bit) {
                field($map, $name, $reads)?
            } else {
                Default::default()
            }
        };
    }

    impl FromCel for Root {
        fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
            let map = object(value)?;
            Ok(Root {
                int: read!(reads, 0, map, "int"),
                uint: read!(reads, 1, map, "uint"),
                double: read!(reads, 2, map, "double"),
                text: read!(reads, 3, map, "text"),
                at: read!(reads, 4, map, "at"),
                span: read!(reads, 5, map, "span"),
                list: read!(reads, 6, map, "list"),
                map: read!(reads, 7, map, "_map"),
                optional: read!(reads, 8, map, "optional"),
                any: read!(reads, 9, map, "any"),
            })
        }
    }

    impl FromCel for Inner {
        fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
            let map = object(value)?;
            Ok(Inner {
                id: read!(reads, 10, map, "id"),
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
    /// a value converts, and on what it converts to; so does `FromCel` over the JSON
    /// that the value is written as (the JSON a call is recorded with), whenever that
    /// JSON converts back to the same CEL value.
    fn agree(value: &Value) {
        let json = agentc_runtime::check::value_to_json(value);
        let through_json: Result<Root, _> = serde_json::from_value(json.clone());
        let direct = Root::from_cel(Source::Cel(value), EVERY_FIELD);
        match (&through_json, &direct) {
            (Ok(left), Ok(right)) => assert_eq!(left, right),
            (Err(_), Err(_)) => {}
            _ => panic!("the routes disagree on {value:?}: {through_json:?} vs {direct:?}"),
        }
        let cel_of_json = agentc_cel::value_from_json(&json);
        let from_cel_of_json = Root::from_cel(Source::Cel(&cel_of_json), EVERY_FIELD);
        let from_json = Root::from_cel(Source::Json(&json), EVERY_FIELD);
        match (&from_cel_of_json, &from_json) {
            (Ok(left), Ok(right)) => assert_eq!(left, right),
            (Err(left), Err(right)) => assert_eq!(left, right),
            _ => panic!(
                "JSON and its CEL value disagree on {json}: {from_cel_of_json:?} vs {from_json:?}"
            ),
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
        assert!(Root::from_cel(Source::Cel(&plain), EVERY_FIELD).is_ok());
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
        assert!(Root::from_cel(Source::Cel(&without("int")), EVERY_FIELD).is_err());
        assert!(
            Root::from_cel(Source::Cel(&with("int", Value::Double(2.0))), EVERY_FIELD).is_err()
        );
        assert_eq!(
            Root::from_cel(Source::Cel(&without("optional")), EVERY_FIELD)
                .unwrap()
                .optional,
            None
        );
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
        let root: Root = fields(&Variables(all.clone()), &names, EVERY_FIELD).unwrap();
        assert_eq!((root.int, root.text.as_str()), (3, "t"));
        // A variable that is not named is not read, and an optional one may be unbound.
        let without_optional: Vec<_> = all
            .iter()
            .filter(|(n, _)| *n != "optional")
            .cloned()
            .collect();
        let root: Root = fields(&Variables(without_optional), &names, EVERY_FIELD).unwrap();
        assert_eq!(root.optional, None);
        assert!(fields::<Root>(&Variables(all.clone()), &names[1..], EVERY_FIELD).is_err());
        // A required field that is not bound denies.
        let without_int: Vec<_> = all.iter().filter(|(n, _)| *n != "int").cloned().collect();
        assert!(fields::<Root>(&Variables(without_int), &names, EVERY_FIELD).is_err());
    }

    #[test]
    fn a_root_is_converted_from_its_variable_and_an_unbound_one_denies() {
        let variables = Variables(vec![("int", Value::Int(42)), ("text", Value::Int(1))]);
        assert_eq!(root::<i64>(&variables, "int", EVERY_FIELD).unwrap(), 42);
        assert!(root::<i64>(&variables, "missing", EVERY_FIELD).is_err());
        assert!(root::<agentc_cel_support::Text>(&variables, "text", EVERY_FIELD).is_err());
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

        fn field(&self, variable: &str, field: &str) -> FieldLookup<'_> {
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
            let id: agentc_cel_support::Text = root_field(&source, "r", "id", EVERY_FIELD).unwrap();
            assert_eq!(id.as_str(), "a");
            assert_eq!(
                root_field::<i64>(&source, "r", "n", EVERY_FIELD).unwrap(),
                2
            );
            assert_eq!(
                root_field::<Option<i64>>(&source, "r", "gone", EVERY_FIELD).unwrap(),
                None
            );
            assert!(root_field::<i64>(&source, "r", "gone", EVERY_FIELD).is_err());
            assert!(root_field::<bool>(&source, "r", "n", EVERY_FIELD).is_err());
            assert!(root_field::<i64>(&source, "unbound", "n", EVERY_FIELD).is_err());
        }
    }

    /// A call as a compiled check reads it: `{inputs, outputs?}`.
    #[derive(Debug, PartialEq)]
    struct Call {
        inputs: Root,
        outputs: Option<Inner>,
    }

    impl FromCel for Call {
        fn from_cel(value: Source<'_>, reads: Reads) -> Result<Self, CheckError> {
            let map = object(value)?;
            Ok(Call {
                inputs: read!(reads, 11, map, "inputs"),
                outputs: read!(reads, 12, map, "outputs"),
            })
        }
    }

    /// The engagement's way of giving `recent.<name>`: the call itself.
    struct RecentCall(Invocation);

    impl VariableSource for RecentCall {
        fn variable(&self, name: &str) -> Option<Value> {
            let mut map = ValueMap::new();
            map.insert(MapKey::String(Arc::from("c")), self.0.cel_value().clone());
            (name == "recent").then(|| Value::Map(Arc::new(map)))
        }

        fn field(&self, variable: &str, field: &str) -> FieldLookup<'_> {
            match (variable, field) {
                ("recent", "c") => FieldLookup::Invocation(&self.0),
                ("recent", _) => FieldLookup::Absent,
                _ => FieldLookup::WholeVariableOnly,
            }
        }
    }

    /// A call read from its JSON is what its CEL value reads as, with and without an
    /// output, and a call that does not fit is refused by both routes.
    #[test]
    fn a_call_reads_the_same_from_its_json_as_from_its_cel_value() {
        let call = Invocation::new(Arc::new(base()));
        let read = Call::from_cel(Source::Invocation(&call), EVERY_FIELD).unwrap();
        assert_eq!(
            read,
            Call::from_cel(Source::Cel(call.cel_value()), EVERY_FIELD).unwrap()
        );
        assert_eq!((read.inputs.int, read.outputs), (3, None));

        let answered = call.with_outputs(Arc::new(json!({"id": "o", "k": [1, 2.5]})));
        let read = Call::from_cel(Source::Invocation(&answered), EVERY_FIELD).unwrap();
        assert_eq!(
            read,
            Call::from_cel(Source::Cel(answered.cel_value()), EVERY_FIELD).unwrap()
        );
        let outputs = read.outputs.unwrap();
        assert_eq!(outputs.id.as_str(), "o");
        assert_eq!(outputs.extra_fields["k"], json!([1, 2.5]));

        // An output without its required `id`, or an input of the wrong type, denies.
        let missing = call.with_outputs(Arc::new(json!({"k": 1})));
        assert!(Call::from_cel(Source::Invocation(&missing), EVERY_FIELD).is_err());
        assert!(Call::from_cel(Source::Cel(missing.cel_value()), EVERY_FIELD).is_err());
        let mut wrong = base();
        wrong["int"] = json!("3");
        let wrong = Invocation::new(Arc::new(wrong));
        assert_eq!(
            Call::from_cel(Source::Invocation(&wrong), EVERY_FIELD).unwrap_err(),
            Call::from_cel(Source::Cel(wrong.cel_value()), EVERY_FIELD).unwrap_err()
        );

        // Given as `recent.c` by a source, the call reads as its CEL value would.
        let source = RecentCall(answered);
        let by_field: Option<Call> = root_field(&source, "recent", "c", EVERY_FIELD).unwrap();
        assert_eq!(by_field.unwrap().inputs.text.as_str(), "t");
        assert_eq!(
            root_field::<Option<Call>>(&source, "recent", "other", EVERY_FIELD).unwrap(),
            None
        );
    }

    /// A check converts only the fields whose bits it has: a field it does not read is
    /// its default, even where its value would not convert, and the same value with the
    /// field's bit set is refused. A call read for its output alone does not convert its
    /// inputs (field 11), which is what an output restriction's check does.
    #[test]
    fn a_check_converts_only_the_fields_it_reads() {
        let mut json = base();
        json["int"] = json!("not a number");
        json["text"] = json!("kept");
        let value = agentc_cel::value_from_json(&json);
        assert!(Root::from_cel(Source::Cel(&value), EVERY_FIELD).is_err());
        // Every field but `int` (bit 0).
        let all_but_int = Reads::new(&[u64::MAX << 1]);
        for source in [Source::Cel(&value), Source::Json(&json)] {
            let root = Root::from_cel(source, all_but_int).unwrap();
            assert_eq!((root.int, root.text.as_str()), (0, "kept"));
        }
        // `text` (bit 3) alone: the others are their defaults, `optional` included.
        let root = Root::from_cel(Source::Json(&json), Reads::new(&[1 << 3])).unwrap();
        assert_eq!(
            (root.text.as_str(), root.uint, &root.optional),
            ("kept", 0, &None)
        );
        // A bit past the end is a field that is not read.
        assert!(!Reads::new(&[u64::MAX]).field(64));
        assert!(Reads::new(&[0, 1]).field(64));

        let call = Invocation::new(Arc::new(json)).with_outputs(Arc::new(json!({"id": "o"})));
        assert!(Call::from_cel(Source::Invocation(&call), EVERY_FIELD).is_err());
        let outputs_only = Reads::new(&[(1 << 12) | (1 << 10)]);
        let read = Call::from_cel(Source::Invocation(&call), outputs_only).unwrap();
        assert_eq!(read.inputs, Root::default());
        assert_eq!(read.outputs.unwrap().id.as_str(), "o");
    }
}
