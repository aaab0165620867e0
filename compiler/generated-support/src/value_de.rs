//! Typed structs straight from the runtime's CEL values, for compiled checks.
//!
//! A compiled check reads a generated struct (the engagement's typed shape). The runtime
//! keeps the engagement as CEL values, so each check needs that struct built from them.
//! Going through `serde_json::Value` on the way cost a second tree per check; this
//! deserializer reads the CEL values in place. It gives exactly what the JSON route gave
//! ([`agentc_runtime::check::value_to_json`] followed by `serde_json::from_value`):
//! timestamps and durations as their text forms, bytes as a list of numbers, and map keys
//! that are not strings as their JSON text.

use std::fmt;

use agentc_cel::{MapKey, Value};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Why a CEL value does not fit the requested type; checks turn it into a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueDeError(String);

impl fmt::Display for ValueDeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ValueDeError {}

impl de::Error for ValueDeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        ValueDeError(message.to_string())
    }
}

/// Deserializes from one borrowed CEL value.
#[derive(Debug, Clone, Copy)]
pub struct ValueDeserializer<'a>(pub &'a Value);

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = ValueDeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueDeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Int(number) => visitor.visit_i64(*number),
            Value::Uint(number) => visitor.visit_u64(*number),
            Value::Double(number) if number.is_finite() => visitor.visit_f64(*number),
            // JSON has no NaN or infinities; the JSON route turned them into null.
            Value::Double(_) => visitor.visit_unit(),
            Value::String(text) | Value::Type(text) => visitor.visit_str(text),
            Value::Bytes(bytes) => visitor.visit_seq(Items {
                items: bytes.iter().map(|byte| Value::Int(i64::from(*byte))),
            }),
            Value::List(items) => visitor.visit_seq(Items {
                items: items.iter().cloned(),
            }),
            Value::Map(map) => visitor.visit_map(Entries {
                entries: map.iter(),
                value: None,
            }),
            Value::Timestamp(timestamp) => visitor.visit_string(timestamp.to_string()),
            Value::Duration(duration) => visitor.visit_string(duration.to_string()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueDeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            Value::Double(number) if !number.is_finite() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueDeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueDeError> {
        match self.0 {
            // Unit variants, which is what JSON Schema `enum`s of strings become.
            Value::String(text) => visitor.visit_enum(
                IntoDeserializer::<ValueDeError>::into_deserializer(text.as_ref()),
            ),
            other => Err(de::Error::custom(format!(
                "expected a string naming a variant, found {}",
                other.type_name()
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The items of a list (or the bytes of a byte sequence, as numbers).
struct Items<I> {
    items: I,
}

impl<'de, I: Iterator<Item = Value>> SeqAccess<'de> for Items<I> {
    type Error = ValueDeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueDeError> {
        match self.items.next() {
            Some(item) => seed.deserialize(ValueDeserializer(&item)).map(Some),
            None => Ok(None),
        }
    }
}

/// The entries of a map.
struct Entries<'a, I> {
    entries: I,
    value: Option<&'a Value>,
}

impl<'de, 'a, I: Iterator<Item = (&'a MapKey, &'a Value)>> MapAccess<'de> for Entries<'a, I> {
    type Error = ValueDeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ValueDeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        match key {
            MapKey::String(text) => seed
                .deserialize(IntoDeserializer::<ValueDeError>::into_deserializer(
                    text.as_ref(),
                ))
                .map(Some),
            other => {
                let text = agentc_runtime::check::value_to_json(&other.to_value()).to_string();
                seed.deserialize(IntoDeserializer::<ValueDeError>::into_deserializer(text))
                    .map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ValueDeError> {
        match self.value.take() {
            Some(value) => seed.deserialize(ValueDeserializer(value)),
            None => Err(de::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }
}

/// One top-level variable of a check's root: the engagement's CEL value, or the
/// skeleton's JSON stand-in for a variable the check does not read.
pub(crate) enum RootValue<'a> {
    /// A variable the check reads, from the engagement.
    Cel(Value),
    /// A variable the check does not read.
    Json(&'a serde_json::Value),
}

/// The check's root object, built from its variables without an intermediate tree.
pub(crate) struct RootDeserializer<'a> {
    pub(crate) fields: Vec<(&'a str, RootValue<'a>)>,
}

impl<'a> de::Deserializer<'a> for RootDeserializer<'a> {
    type Error = ValueDeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, ValueDeError> {
        visitor.visit_map(RootFields {
            fields: self.fields.into_iter(),
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

struct RootFields<'a, I> {
    fields: I,
    value: Option<RootValue<'a>>,
}

impl<'a, I: Iterator<Item = (&'a str, RootValue<'a>)>> MapAccess<'a> for RootFields<'a, I> {
    type Error = ValueDeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ValueDeError> {
        let Some((name, value)) = self.fields.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(IntoDeserializer::<ValueDeError>::into_deserializer(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ValueDeError> {
        match self.value.take() {
            Some(RootValue::Cel(value)) => seed.deserialize(ValueDeserializer(&value)),
            Some(RootValue::Json(json)) => seed.deserialize(json).map_err(de::Error::custom),
            None => Err(de::Error::custom("a field was asked for before its name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Deserialize)]
    enum Colour {
        #[serde(rename = "red")]
        Red,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Shape {
        name: String,
        sides: i64,
        ratio: f64,
        #[serde(default)]
        note: Option<String>,
        tags: Vec<String>,
        colour: Colour,
        nested: std::collections::BTreeMap<String, u64>,
    }

    /// The direct route must agree with the JSON route it replaces, on success and on
    /// failure alike.
    fn both_routes<T: for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(json: serde_json::Value) {
        let value = agentc_cel::value_from_json(&json);
        let direct = T::deserialize(ValueDeserializer(&value)).ok();
        let through_json =
            serde_json::from_value::<T>(agentc_runtime::check::value_to_json(&value)).ok();
        assert_eq!(direct, through_json, "{json}");
    }

    #[test]
    fn agrees_with_the_json_route() {
        both_routes::<Shape>(
            json!({"name": "sq", "sides": 4, "ratio": 1.5, "tags": ["a"],
            "colour": "red", "nested": {"x": 1}}),
        );
        both_routes::<Shape>(json!({"name": "sq", "sides": 4, "ratio": 1, "note": null,
            "tags": [], "colour": "red", "nested": {}, "extra": true}));
        // Wrong types and missing fields fail on both routes.
        both_routes::<Shape>(json!({"name": 1, "sides": 4, "ratio": 1.5, "tags": [],
            "colour": "red", "nested": {}}));
        both_routes::<Shape>(json!({"name": "sq", "sides": 4.5, "ratio": 1.5, "tags": [],
            "colour": "red", "nested": {}}));
        both_routes::<Shape>(
            json!({"name": "sq", "ratio": 1.5, "tags": [], "colour": "red",
            "nested": {}}),
        );
        both_routes::<Shape>(json!({"name": "sq", "sides": 4, "ratio": 1.5, "tags": [],
            "colour": "blue", "nested": {}}));
        both_routes::<Option<i64>>(json!(null));
        both_routes::<Vec<u8>>(json!([1, 2, 300]));
    }

    #[test]
    fn timestamps_read_as_their_text() {
        let value = Value::Timestamp(
            agentc_cel::Timestamp::parse("2026-01-02T03:04:05Z").unwrap_or_else(|| panic!()),
        );
        let text = String::deserialize(ValueDeserializer(&value)).unwrap();
        assert_eq!(text, "2026-01-02T03:04:05Z");
    }
}
