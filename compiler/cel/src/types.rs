//! CEL types as the checker sees them, and their derivation from JSON Schema.

use std::collections::BTreeMap;
use std::fmt;

/// A static CEL type.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `bool`.
    Bool,
    /// `int` (signed 64-bit).
    Int,
    /// `uint` (unsigned 64-bit).
    Uint,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// `null_type`.
    Null,
    /// `google.protobuf.Timestamp`.
    Timestamp,
    /// `google.protobuf.Duration`.
    Duration,
    /// `list(T)`.
    List(Box<Type>),
    /// `map(K, V)`.
    Map(Box<Type>, Box<Type>),
    /// An object with declared fields, such as a tool's input or the engagement.
    Object(ObjectType),
    /// Any type; checked at run time.
    Dyn,
    /// The type of type values, such as the value of `type(1)`.
    TypeType,
    /// The type of an expression that already produced a diagnostic; it is compatible
    /// with everything so that one mistake is not reported many times.
    Error,
}

/// An object type: named fields, each with its type and whether it is always present.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectType {
    /// A display name, such as `recent` or `hr_kb.inputs`.
    pub name: String,
    /// The declared fields.
    pub fields: BTreeMap<String, FieldType>,
    /// Whether fields beyond the declared ones may exist; such fields are `Dyn` and
    /// selecting them is not an error.
    pub open: bool,
}

/// The type of one object field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldType {
    /// The field's type.
    pub ty: Type,
    /// Whether the field is always present; an optional field must be guarded by `has()`.
    pub always_present: bool,
    /// Whether the field's value may also be `null` (a schema's `anyOf: [T, null]` or
    /// `type: [T, "null"]`). The checker types such a field as `T`, so that a misspelt
    /// field or method under it is an error at check time; comparing it with `null` is
    /// allowed, and any other use of a `null` is an error at run time, which denies. A
    /// layout that stores values (compiled checks) must keep such a field dynamic.
    pub nullable: bool,
}

impl FieldType {
    /// A field that is never `null`.
    pub fn new(ty: Type, always_present: bool) -> Self {
        FieldType {
            ty,
            always_present,
            nullable: false,
        }
    }
}

impl Type {
    /// Whether values of this type are checked only at run time.
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Type::Dyn | Type::Error)
    }

    /// Whether this is one of the three numeric types.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Uint | Type::Double)
    }

    /// Whether a value of type `other` may be used where this type is expected, or the
    /// other way round; `Dyn` is compatible with everything.
    pub fn is_compatible_with(&self, other: &Type) -> bool {
        if self.is_dynamic() || other.is_dynamic() {
            return true;
        }
        match (self, other) {
            (Type::List(left), Type::List(right)) => left.is_compatible_with(right),
            (Type::Map(left_key, left_value), Type::Map(right_key, right_value)) => {
                left_key.is_compatible_with(right_key) && left_value.is_compatible_with(right_value)
            }
            (Type::Object(_), Type::Object(_)) => true,
            // Objects are represented as string-keyed maps at run time.
            (Type::Object(_), Type::Map(key, _)) | (Type::Map(key, _), Type::Object(_)) => {
                key.is_compatible_with(&Type::String)
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    /// Returns the most specific type that covers both, or `Dyn` when they differ.
    pub fn join(&self, other: &Type) -> Type {
        if self == other {
            return self.clone();
        }
        match (self, other) {
            (Type::Error, _) | (_, Type::Error) => Type::Error,
            (Type::List(left), Type::List(right)) => Type::List(Box::new(left.join(right))),
            (Type::Map(left_key, left_value), Type::Map(right_key, right_value)) => Type::Map(
                Box::new(left_key.join(right_key)),
                Box::new(left_value.join(right_value)),
            ),
            _ => Type::Dyn,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => formatter.write_str("bool"),
            Type::Int => formatter.write_str("int"),
            Type::Uint => formatter.write_str("uint"),
            Type::Double => formatter.write_str("double"),
            Type::String => formatter.write_str("string"),
            Type::Bytes => formatter.write_str("bytes"),
            Type::Null => formatter.write_str("null_type"),
            Type::Timestamp => formatter.write_str("google.protobuf.Timestamp"),
            Type::Duration => formatter.write_str("google.protobuf.Duration"),
            Type::List(element) => write!(formatter, "list({element})"),
            Type::Map(key, value) => write!(formatter, "map({key}, {value})"),
            Type::Object(object) => write!(formatter, "object `{}`", object.name),
            Type::Dyn => formatter.write_str("dyn"),
            Type::TypeType => formatter.write_str("type"),
            Type::Error => formatter.write_str("*error*"),
        }
    }
}

/// The deepest JSON Schema nesting translated; deeper parts become `Dyn`.
const MAX_SCHEMA_DEPTH: usize = 32;

/// Translates a JSON Schema into a CEL type.
///
/// Objects become object types (closed unless `additionalProperties` is `true` or a schema), with
/// `required` properties always present; arrays become lists. A property that may also be
/// `null` (`anyOf`/`oneOf` of one schema and `{type: null}`, or `type: [T, "null"]`) has
/// the type of its non-null schema and is marked [`FieldType::nullable`]; elsewhere such
/// a schema is `Dyn`. Other `anyOf`/`oneOf`, `$ref` and anything unrecognised become
/// `Dyn`, so that the checker never rejects what the schema might allow.
pub fn type_from_json_schema(schema: &serde_json::Value) -> Type {
    type_from_json_schema_at_depth(schema, "object", 0)
}

fn type_from_json_schema_at_depth(schema: &serde_json::Value, name: &str, depth: usize) -> Type {
    if depth > MAX_SCHEMA_DEPTH {
        return Type::Dyn;
    }
    let Some(object) = schema.as_object() else {
        return Type::Dyn;
    };
    if object.contains_key("$ref") || object.contains_key("anyOf") || object.contains_key("oneOf") {
        return Type::Dyn;
    }
    if let Some(values) = object.get("enum").and_then(|values| values.as_array()) {
        if !values.is_empty() && values.iter().all(|value| value.is_string()) {
            return Type::String;
        }
        return Type::Dyn;
    }
    let type_name = match object.get("type") {
        Some(serde_json::Value::String(type_name)) => type_name.as_str(),
        Some(serde_json::Value::Array(names)) => {
            // `["string", "null"]` is a nullable string; a value that may be null must be
            // checked at run time, so it is Dyn unless only one non-null type is named
            // without null.
            let non_null: Vec<&str> = names
                .iter()
                .filter_map(|name| name.as_str())
                .filter(|name| *name != "null")
                .collect();
            if non_null.len() == 1 && non_null.len() == names.len() {
                non_null.first().copied().unwrap_or("")
            } else {
                return Type::Dyn;
            }
        }
        _ => {
            if object.contains_key("properties") {
                "object"
            } else {
                return Type::Dyn;
            }
        }
    };
    match type_name {
        "string" => Type::String,
        "integer" => Type::Int,
        "number" => Type::Double,
        "boolean" => Type::Bool,
        "null" => Type::Null,
        "array" => match object.get("items") {
            Some(items) => Type::List(Box::new(type_from_json_schema_at_depth(
                items,
                name,
                depth + 1,
            ))),
            None => Type::List(Box::new(Type::Dyn)),
        },
        "object" => {
            let required: Vec<&str> = object
                .get("required")
                .and_then(|required| required.as_array())
                .map(|names| names.iter().filter_map(|name| name.as_str()).collect())
                .unwrap_or_default();
            let properties = object
                .get("properties")
                .and_then(|properties| properties.as_object());
            // An object with declared `properties` is closed for typing unless the schema
            // says outright that more are allowed (`additionalProperties: true` or a
            // schema). JSON Schema's default would leave it open, but then a misspelt
            // field in a restriction (`inputs.knowldge_base_id`) would type as `dyn`,
            // fail at run time and deny every call; an error at check time is the
            // useful answer, and the fix (declare the field, or allow more) is one line.
            let open = match object.get("additionalProperties") {
                Some(serde_json::Value::Bool(true)) => true,
                Some(additional) => additional.is_object(),
                None => false,
            };
            let Some(properties) = properties else {
                if let Some(additional) = object.get("additionalProperties")
                    && additional.is_object()
                {
                    return Type::Map(
                        Box::new(Type::String),
                        Box::new(type_from_json_schema_at_depth(additional, name, depth + 1)),
                    );
                }
                return Type::Map(Box::new(Type::String), Box::new(Type::Dyn));
            };
            let mut fields = BTreeMap::new();
            for (field_name, field_schema) in properties {
                let field_name_path = format!("{name}.{field_name}");
                let (schema_of_value, nullable) = match non_null_schema(field_schema) {
                    Some(inner) => (inner, true),
                    None => (std::borrow::Cow::Borrowed(field_schema), false),
                };
                let field_type =
                    type_from_json_schema_at_depth(&schema_of_value, &field_name_path, depth + 1);
                fields.insert(
                    field_name.clone(),
                    FieldType {
                        ty: field_type,
                        always_present: required.contains(&field_name.as_str()),
                        nullable,
                    },
                );
            }
            Type::Object(ObjectType {
                name: name.to_string(),
                fields,
                open,
            })
        }
        _ => Type::Dyn,
    }
}

/// For a schema that allows one kind of value or `null`, the schema of that value:
/// `anyOf`/`oneOf` of exactly two schemas, one of them `{type: "null"}`, gives the other;
/// `type: [T, "null"]` gives the schema itself with `type: T`. `None` for anything else.
fn non_null_schema(schema: &serde_json::Value) -> Option<std::borrow::Cow<'_, serde_json::Value>> {
    let object = schema.as_object()?;
    if object.contains_key("$ref") {
        return None;
    }
    let is_null = |member: &serde_json::Value| {
        member.get("type").and_then(|name| name.as_str()) == Some("null")
            && member.as_object().is_some_and(|member| {
                member
                    .keys()
                    .all(|key| matches!(key.as_str(), "type" | "description" | "title"))
            })
    };
    for combinator in ["anyOf", "oneOf"] {
        let Some(members) = object.get(combinator) else {
            continue;
        };
        if object.contains_key(if combinator == "anyOf" {
            "oneOf"
        } else {
            "anyOf"
        }) {
            return None;
        }
        let [first, second] = members.as_array()?.as_slice() else {
            return None;
        };
        return match (is_null(first), is_null(second)) {
            (true, false) => Some(std::borrow::Cow::Borrowed(second)),
            (false, true) => Some(std::borrow::Cow::Borrowed(first)),
            _ => None,
        };
    }
    let names = object.get("type")?.as_array()?;
    let [first, second] = names.as_slice() else {
        return None;
    };
    let inner = match (first.as_str()?, second.as_str()?) {
        ("null", inner) | (inner, "null") if inner != "null" => inner,
        _ => return None,
    };
    let mut narrowed = object.clone();
    narrowed.insert("type".into(), serde_json::Value::String(inner.to_string()));
    Some(std::borrow::Cow::Owned(serde_json::Value::Object(narrowed)))
}

/// The variables visible to an expression, with their types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeEnv {
    variables: BTreeMap<String, Type>,
    container: Option<String>,
    /// Where provenance questions may be asked (AGX-P1): each capability's output
    /// type, by name; `None` where there is no engagement.
    sources: Option<BTreeMap<String, Type>>,
}

impl TypeEnv {
    /// Creates an environment with no variables.
    pub fn new() -> Self {
        TypeEnv::default()
    }

    /// Declares (or redeclares) a variable.
    pub fn declare(&mut self, name: impl Into<String>, ty: Type) {
        self.variables.insert(name.into(), ty);
    }

    /// Returns the type of a declared variable, by its exact name.
    pub fn lookup(&self, name: &str) -> Option<&Type> {
        self.variables.get(name)
    }

    /// Sets the container (namespace) that unqualified names are resolved in first:
    /// with container `a.b`, the name `x` means `a.b.x`, then `a.x`, then `x`.
    pub fn set_container(&mut self, container: impl Into<String>) {
        self.container = Some(container.into());
    }

    /// Resolves a possibly qualified name through the container, as CEL does.
    pub fn resolve(&self, name: &str) -> Option<&Type> {
        resolution_candidates(self.container.as_deref(), name)
            .iter()
            .find_map(|candidate| self.variables.get(candidate))
    }

    /// Allows provenance questions (`fromUser()`, `fromTool(name, field)`, …), whose
    /// `fromTool` may name these capabilities and the paths of their output types.
    pub fn declare_sources(&mut self, outputs: BTreeMap<String, Type>) {
        self.sources = Some(outputs);
    }

    /// The capabilities' output types provenance questions may name, when allowed.
    pub fn sources(&self) -> Option<&BTreeMap<String, Type>> {
        self.sources.as_ref()
    }

    /// Returns the names of all declared variables, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }
}

/// The names a reference may denote, most specific first: a name with a leading dot is
/// absolute; otherwise it is tried inside each enclosing namespace of the container.
pub(crate) fn resolution_candidates(container: Option<&str>, name: &str) -> Vec<String> {
    if let Some(absolute) = name.strip_prefix('.') {
        return vec![absolute.to_string()];
    }
    let mut candidates = Vec::new();
    if let Some(container) = container.filter(|container| !container.is_empty()) {
        let parts: Vec<&str> = container.split('.').collect();
        for length in (1..=parts.len()).rev() {
            let prefix = parts.get(..length).unwrap_or(&[]).join(".");
            candidates.push(format!("{prefix}.{name}"));
        }
    }
    candidates.push(name.to_string());
    candidates
}
