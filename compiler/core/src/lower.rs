//! Lowering: YAML nodes → typed document values, recording every problem and going on.
//!
//! Each document type is declared once with [`spec_struct!`] or [`spec_enum!`], which
//! generate the Rust type (with serde and schemars derives, so `agentc schema` comes
//! from the same declaration) and its [`FromNode`] implementation. A field that fails to
//! lower is reported and left out; the rest of the document is still read, so one
//! mistake gives one diagnostic, not ten.

use crate::diagnostics::{Diagnostic, FrontEndCode, did_you_mean};
use crate::span::{Span, Spanned};
use crate::syntax::{Node, NodeValue};
use schemars::JsonSchema;
use serde::{Serialize, Serializer};

/// Collects the diagnostics of a lowering pass.
#[derive(Default)]
pub struct LowerContext {
    pub diagnostics: Vec<Diagnostic>,
}

impl LowerContext {
    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Reports a value of the wrong type, with a hint when a YAML quirk is the likely cause.
    pub fn wrong_type(&mut self, node: &Node, expected: &str) {
        let mut diagnostic = Diagnostic::new(
            FrontEndCode::WrongType,
            node.span,
            format!("expected {expected}, found {}", node.describe()),
        )
        .with_primary_label(format!("expected {expected}"));
        if let Some(help) = wrong_type_help(node, expected) {
            diagnostic = diagnostic.with_help(help);
        }
        self.report(diagnostic);
    }
}

fn wrong_type_help(node: &Node, expected: &str) -> Option<String> {
    let text = node.scalar_text()?;
    match (&node.value, expected) {
        (NodeValue::String(_), "a boolean")
            if matches!(text, "yes" | "no" | "on" | "off" | "Yes" | "No" | "y" | "n") =>
        {
            Some(format!(
                "YAML 1.2 reads `{text}` as a string: write `true` or `false`"
            ))
        }
        (NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_), "a string") => {
            Some(format!("quote it to make it a string: `\"{text}\"`"))
        }
        (NodeValue::Null, _) if text.is_empty() => {
            Some("the value is missing: write it after the `:`".to_string())
        }
        _ => None,
    }
}

/// A type that can be read from a YAML node.
pub trait FromNode: Sized {
    /// How a diagnostic names what was expected ("a string", "a mapping").
    fn expected() -> String;

    /// Reads the value, reporting problems into `context`; `None` when it could not.
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self>;

    /// The value of an absent key, for types where absence is allowed.
    fn when_absent() -> Option<Self> {
        None
    }
}

impl FromNode for String {
    fn expected() -> String {
        "a string".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        match &node.value {
            NodeValue::String(text) => Some(text.clone()),
            _ => {
                context.wrong_type(node, "a string");
                None
            }
        }
    }
}

impl FromNode for bool {
    fn expected() -> String {
        "a boolean".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        match node.value {
            NodeValue::Bool(value) => Some(value),
            _ => {
                context.wrong_type(node, "a boolean");
                None
            }
        }
    }
}

impl FromNode for u64 {
    fn expected() -> String {
        "a non-negative integer".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        match node.value {
            NodeValue::Int(value) => match u64::try_from(value) {
                Ok(value) => Some(value),
                Err(_) => {
                    context.report(
                        Diagnostic::new(
                            FrontEndCode::OutOfRange,
                            node.span,
                            format!("expected a non-negative integer, found `{value}`"),
                        )
                        .with_primary_label("must be 0 or more"),
                    );
                    None
                }
            },
            NodeValue::Float(value) if value.is_finite() && value.fract() == 0.0 && value > 0.0 => {
                context.report(
                    Diagnostic::new(
                        FrontEndCode::OutOfRange,
                        node.span,
                        "this integer is too large",
                    )
                    .with_primary_label(format!("at most {}", i64::MAX)),
                );
                None
            }
            _ => {
                context.wrong_type(node, "an integer");
                None
            }
        }
    }
}

impl FromNode for f64 {
    fn expected() -> String {
        "a number".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        match node.value {
            // Integers are exact in f64 up to 2^53; spec numbers (rates, durations) are far below.
            #[allow(clippy::cast_precision_loss)]
            NodeValue::Int(value) => Some(value as f64),
            NodeValue::Float(value) if value.is_finite() => Some(value),
            NodeValue::Float(_) => {
                context.report(
                    Diagnostic::new(
                        FrontEndCode::OutOfRange,
                        node.span,
                        "infinite and NaN numbers are not allowed here",
                    )
                    .with_primary_label("must be a finite number"),
                );
                None
            }
            _ => {
                context.wrong_type(node, "a number");
                None
            }
        }
    }
}

/// Any YAML value, kept as JSON: used for JSON Schemas and free-form context.
impl FromNode for serde_json::Value {
    fn expected() -> String {
        "a value".to_string()
    }
    fn from_node(node: &Node, _context: &mut LowerContext) -> Option<Self> {
        Some(node.to_json())
    }
}

impl<T: FromNode> FromNode for Spanned<T> {
    fn expected() -> String {
        T::expected()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        T::from_node(node, context).map(|value| Spanned::new(value, node.span))
    }
}

impl<T: FromNode> FromNode for Option<T> {
    fn expected() -> String {
        format!("{} or null", T::expected())
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        if node.value == NodeValue::Null {
            return Some(None);
        }
        T::from_node(node, context).map(Some)
    }
    fn when_absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn expected() -> String {
        format!("a list of {}", T::expected())
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        let NodeValue::Sequence(items) = &node.value else {
            context.wrong_type(node, "a list");
            return None;
        };
        Some(
            items
                .iter()
                .filter_map(|item| T::from_node(item, context))
                .collect(),
        )
    }
}

/// A YAML mapping with user-chosen keys (capabilities, exposes), in document order.
#[derive(Clone, Debug)]
pub struct SpannedMap<V> {
    pub entries: Vec<(Spanned<String>, V)>,
    pub span: Span,
}

impl<V> Default for SpannedMap<V> {
    fn default() -> Self {
        SpannedMap {
            entries: Vec::new(),
            span: Span::default(),
        }
    }
}

impl<V> SpannedMap<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries
            .iter()
            .find(|(entry_key, _)| entry_key.value == key)
            .map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Spanned<String>, &V)> {
        self.entries.iter().map(|(key, value)| (key, value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V: FromNode> FromNode for SpannedMap<V> {
    fn expected() -> String {
        "a mapping".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        let NodeValue::Mapping(entries) = &node.value else {
            context.wrong_type(node, "a mapping");
            return None;
        };
        let mut lowered = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(key_text) = key.scalar_text() else {
                continue;
            };
            if let Some(value) = V::from_node(value, context) {
                lowered.push((Spanned::new(key_text.to_string(), key.span), value));
            }
        }
        Some(SpannedMap {
            entries: lowered,
            span: node.span,
        })
    }
}

impl<V: Serialize> Serialize for SpannedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in &self.entries {
            map.serialize_entry(&key.value, value)?;
        }
        map.end()
    }
}

impl<V: JsonSchema> JsonSchema for SpannedMap<V> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value_schema = generator.subschema_for::<V>();
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": value_schema,
        })
    }
}

/// Reads the fields of a mapping node for a struct: tracks which keys were used so the
/// rest can be reported as unknown, with a did-you-mean among the known ones.
pub struct MappingReader<'node> {
    pub node: &'node Node,
    entries: &'node [(Node, Node)],
}

impl<'node> MappingReader<'node> {
    pub fn new(node: &'node Node, context: &mut LowerContext) -> Option<Self> {
        match &node.value {
            NodeValue::Mapping(entries) => Some(MappingReader { node, entries }),
            _ => {
                context.wrong_type(node, "a mapping");
                None
            }
        }
    }

    /// Reads one field. The outer `Option` is `None` when the field could not be read
    /// (already reported); `when_absent` decides whether a missing key is fine.
    pub fn field<T: FromNode>(&self, key: &str, context: &mut LowerContext) -> Option<T> {
        match self
            .entries
            .iter()
            .find(|(entry_key, _)| entry_key.scalar_text() == Some(key))
        {
            Some((_, value)) => T::from_node(value, context),
            None => {
                let absent = T::when_absent();
                if absent.is_none() {
                    context.report(
                        Diagnostic::new(
                            FrontEndCode::MissingKey,
                            self.key_anchor(),
                            format!("missing required key `{key}`"),
                        )
                        .with_primary_label(format!("this mapping needs `{key}`"))
                        .with_help(format!("add `{key}:` with {}", T::expected())),
                    );
                }
                absent
            }
        }
    }

    /// The keys of `known` that the mapping has, in `known`'s order.
    pub fn present_keys(&self, known: &[&'static str]) -> Vec<&'static str> {
        known
            .iter()
            .copied()
            .filter(|key| {
                self.entries
                    .iter()
                    .any(|(entry_key, _)| entry_key.scalar_text() == Some(key))
            })
            .collect()
    }

    /// Reports every key that is not in `known`.
    pub fn reject_unknown_keys(&self, known: &[&str], what: &str, context: &mut LowerContext) {
        for (key, _) in self.entries {
            let Some(text) = key.scalar_text() else {
                continue;
            };
            if known.contains(&text) {
                continue;
            }
            let mut diagnostic = Diagnostic::new(
                FrontEndCode::UnknownKey,
                key.span,
                format!("unknown key `{text}` in {what}"),
            );
            diagnostic = match did_you_mean(text, known.iter().copied()) {
                Some(suggestion) => diagnostic
                    .with_primary_label(format!("did you mean `{suggestion}`?"))
                    .with_help(format!("rename it to `{suggestion}`")),
                None => diagnostic
                    .with_primary_label("not a key of this mapping")
                    .with_note(format!("the keys allowed here are: {}", known.join(", "))),
            };
            context.report(diagnostic);
        }
    }

    /// Where a "missing key" error points: the mapping's first key, or the mapping.
    fn key_anchor(&self) -> Span {
        self.entries
            .first()
            .map_or(self.node.span, |(key, _)| key.span)
    }
}

/// Declares a spec struct: the type with serde/schemars derives, and its lowering.
///
/// Each field is `req name: Type` (a missing key is an error) or `opt name: Type` (the
/// field is `Option<Type>`; absent or null gives `None`). The YAML key is the field name.
#[macro_export]
macro_rules! spec_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident ($what:literal) {
            $( $(#[$field_meta:meta])* $mode:ident $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $( $(#[$field_meta])* pub $field: $crate::spec_field_type!($mode $ty), )*
            /// Where the whole mapping is in the source.
            #[serde(skip)]
            #[schemars(skip)]
            pub span: $crate::span::Span,
            /// The keys present in the mapping, including those whose value failed to
            /// lower, so later checks (such as "exactly one binding") do not mistake an
            /// invalid value for an absent one.
            #[serde(skip)]
            #[schemars(skip)]
            pub present_keys: Vec<&'static str>,
        }

        impl $name {
            /// The keys this mapping allows, in declaration order.
            pub const KEYS: &'static [&'static str] = &[ $( stringify!($field), )* ];
        }

        impl $crate::lower::FromNode for $name {
            fn expected() -> String {
                format!("a mapping ({})", $what)
            }
            fn from_node(
                node: &$crate::syntax::Node,
                context: &mut $crate::lower::LowerContext,
            ) -> Option<Self> {
                let reader = $crate::lower::MappingReader::new(node, context)?;
                reader.reject_unknown_keys(Self::KEYS, $what, context);
                $( let $field = $crate::spec_struct!(@read $mode reader context $field $ty); )*
                let present_keys = reader.present_keys(Self::KEYS);
                Some($name { $( $field: $field?, )* span: node.span, present_keys })
            }
        }
    };
    (@read req $reader:ident $context:ident $field:ident $ty:ty) => {
        $reader.field::<$ty>(stringify!($field), $context)
    };
    // An optional field that fails to lower is reported and then treated as absent, so
    // the rest of the document is still checked and one mistake does not cascade.
    (@read opt $reader:ident $context:ident $field:ident $ty:ty) => {
        Some($reader.field::<Option<$ty>>(stringify!($field), $context).flatten())
    };
}

/// The Rust type of a `spec_struct!` field: `opt` fields are optional.
#[macro_export]
macro_rules! spec_field_type {
    (req $ty:ty) => { $ty };
    (opt $ty:ty) => { Option<$ty> };
}

/// Declares a closed set of string values: the enum with serde/schemars derives, its
/// lowering (an unknown value gets a did-you-mean), and its text.
#[macro_export]
macro_rules! spec_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            pub const VALUES: &'static [&'static str] = &[ $( $text, )* ];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }

        impl $crate::lower::FromNode for $name {
            fn expected() -> String {
                format!("one of {}", Self::VALUES.join(", "))
            }
            fn from_node(
                node: &$crate::syntax::Node,
                context: &mut $crate::lower::LowerContext,
            ) -> Option<Self> {
                let $crate::syntax::NodeValue::String(text) = &node.value else {
                    context.wrong_type(node, &format!("{} (a string)", $what));
                    return None;
                };
                match text.as_str() {
                    $( $text => Some($name::$variant), )*
                    _ => {
                        $crate::lower::report_invalid_enum_value(
                            node, text, $what, Self::VALUES, context,
                        );
                        None
                    }
                }
            }
        }
    };
}

pub fn report_invalid_enum_value(
    node: &Node,
    text: &str,
    what: &str,
    values: &[&str],
    context: &mut LowerContext,
) {
    let mut diagnostic = Diagnostic::new(
        FrontEndCode::InvalidEnumValue,
        node.span,
        format!("`{text}` is not a valid {what}"),
    )
    .with_note(format!("the allowed values are: {}", values.join(", ")));
    diagnostic = match did_you_mean(text, values.iter().copied()) {
        Some(suggestion) => diagnostic.with_primary_label(format!("did you mean `{suggestion}`?")),
        None => diagnostic.with_primary_label("not an allowed value"),
    };
    context.report(diagnostic);
}

/// A CEL expression as written in a YAML scalar: its decoded text, where the scalar is,
/// and how it was written, so a position inside the expression maps back into the file.
#[derive(Clone, Debug)]
pub struct CelText {
    pub text: String,
    pub span: Span,
    pub form: crate::syntax::ScalarForm,
}

impl CelText {
    /// The file span of a byte range inside the expression text.
    pub fn span_of(&self, source: &str, start: usize, end: usize) -> Span {
        let map = |offset| {
            crate::syntax::scalar_offset_to_file(source, self.span, self.form, &self.text, offset)
        };
        let file_start = map(start);
        // The end maps as "just after the last character", so a one-character error
        // covers exactly that character.
        let file_end = if end > start {
            let last = self.text[..end.min(self.text.len())]
                .char_indices()
                .next_back()
                .map_or(start, |(offset, _)| offset);
            let last_char_len = self.text[last..].chars().next().map_or(0, char::len_utf8);
            map(last) + last_char_len
        } else {
            file_start
        };
        Span::new(self.span.file, file_start, file_end)
    }
}

impl FromNode for CelText {
    fn expected() -> String {
        "a CEL expression (a string)".to_string()
    }
    fn from_node(node: &Node, context: &mut LowerContext) -> Option<Self> {
        match (&node.value, &node.scalar) {
            (NodeValue::String(text), Some((form, _))) => Some(CelText {
                text: text.clone(),
                span: node.span,
                form: *form,
            }),
            // `true`/`false` are valid CEL too, and YAML reads them as booleans: keep their text.
            (NodeValue::Bool(_), Some((form, raw))) => Some(CelText {
                text: raw.clone(),
                span: node.span,
                form: *form,
            }),
            _ => {
                context.wrong_type(node, "a CEL expression (a string)");
                None
            }
        }
    }
}

impl Serialize for CelText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl JsonSchema for CelText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CelExpression".into()
    }
    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A CEL expression (https://github.com/google/cel-spec)."
        })
    }
}

/// A JSON value read from YAML (a JSON Schema, say) that remembers where each of its
/// parts is, so an error found by JSON Pointer points at the exact YAML node.
#[derive(Clone, Debug)]
pub struct SpannedJson {
    pub value: serde_json::Value,
    pub span: Span,
    /// JSON Pointer → span, for every node, in document order.
    pointers: Vec<(String, Span)>,
}

impl SpannedJson {
    /// The span of the node at `pointer`, or of its nearest ancestor that exists.
    pub fn span_at(&self, pointer: &str) -> Span {
        let mut pointer = pointer;
        loop {
            if let Some((_, span)) = self
                .pointers
                .iter()
                .find(|(candidate, _)| candidate == pointer)
            {
                return *span;
            }
            match pointer.rfind('/') {
                Some(at) => pointer = &pointer[..at],
                None => return self.span,
            }
        }
    }
}

impl FromNode for SpannedJson {
    fn expected() -> String {
        "a JSON value".to_string()
    }
    fn from_node(node: &Node, _context: &mut LowerContext) -> Option<Self> {
        let mut pointers = Vec::new();
        // Iterative walk: depth is bounded by the syntax budget, but no recursion is needed.
        let mut pending: Vec<(String, &Node)> = vec![(String::new(), node)];
        while let Some((pointer, current)) = pending.pop() {
            match &current.value {
                NodeValue::Sequence(items) => {
                    for (index, item) in items.iter().enumerate().rev() {
                        pending.push((format!("{pointer}/{index}"), item));
                    }
                }
                NodeValue::Mapping(entries) => {
                    for (key, value) in entries.iter().rev() {
                        let token = key
                            .scalar_text()
                            .unwrap_or_default()
                            .replace('~', "~0")
                            .replace('/', "~1");
                        pending.push((format!("{pointer}/{token}"), value));
                    }
                }
                _ => {}
            }
            pointers.push((pointer, current.span));
        }
        Some(SpannedJson {
            value: node.to_json(),
            span: node.span,
            pointers,
        })
    }
}

impl Serialize for SpannedJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl JsonSchema for SpannedJson {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonSchemaDocument".into()
    }
    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["object", "boolean"],
            "description": "A JSON Schema (draft 2020-12 unless `$schema` says otherwise)."
        })
    }
}
