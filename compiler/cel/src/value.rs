//! Run-time CEL values.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::time::{Duration, Timestamp};
use crate::types::Type;

/// A CEL value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// An unsigned 64-bit integer.
    Uint(u64),
    /// A double.
    Double(f64),
    /// A string.
    String(Arc<str>),
    /// A byte sequence.
    Bytes(Arc<[u8]>),
    /// A list.
    List(Arc<[Value]>),
    /// A map (objects such as the engagement are maps with string keys).
    Map(Arc<ValueMap>),
    /// An instant.
    Timestamp(Timestamp),
    /// A span of time.
    Duration(Duration),
    /// A type value such as `int`, the result of `type(1)`.
    Type(Arc<str>),
}

/// A map key: CEL allows only these four kinds of key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapKey {
    /// A boolean key.
    Bool(bool),
    /// A signed integer key.
    Int(i64),
    /// An unsigned integer key.
    Uint(u64),
    /// A string key.
    String(Arc<str>),
}

impl MapKey {
    /// Converts a value into a map key, if the value's type may be a key.
    pub fn from_value(value: &Value) -> Option<MapKey> {
        match value {
            Value::Bool(flag) => Some(MapKey::Bool(*flag)),
            Value::Int(number) => Some(MapKey::Int(*number)),
            Value::Uint(number) => Some(MapKey::Uint(*number)),
            Value::String(text) => Some(MapKey::String(text.clone())),
            _ => None,
        }
    }

    /// Converts the key back into a value.
    pub fn to_value(&self) -> Value {
        match self {
            MapKey::Bool(flag) => Value::Bool(*flag),
            MapKey::Int(number) => Value::Int(*number),
            MapKey::Uint(number) => Value::Uint(*number),
            MapKey::String(text) => Value::String(text.clone()),
        }
    }
}

/// The most entries a map keeps in a sorted vector; larger maps use a B-tree.
const SMALL_MAP_ENTRIES: usize = 32;

/// The entries of a map value.
#[derive(Clone, Default)]
pub struct ValueMap {
    entries: Entries,
}

/// Small maps (objects, most of all) are a sorted vector, which is faster to search
/// than a B-tree; both keep the entries in key order.
#[derive(Clone)]
enum Entries {
    Small(Vec<(MapKey, Value)>),
    Large(BTreeMap<MapKey, Value>),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Small(Vec::new())
    }
}

impl fmt::Debug for ValueMap {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct EntriesDebug<'m>(&'m ValueMap);
        impl fmt::Debug for EntriesDebug<'_> {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.debug_map().entries(self.0.iter()).finish()
            }
        }
        formatter
            .debug_struct("ValueMap")
            .field("entries", &EntriesDebug(self))
            .finish()
    }
}

impl ValueMap {
    /// Creates an empty map.
    pub fn new() -> Self {
        ValueMap::default()
    }

    /// Builds a map from the fields of a JSON object, whose keys are strings and
    /// distinct: one allocation of the exact size and one sort (which, past about twenty
    /// fields, takes a scratch buffer of its own), rather than an insertion and a shift
    /// of the entries after it per field. Should a key repeat all the same, the last
    /// entry wins, as it would with [`ValueMap::insert`].
    fn from_object_fields(mut entries: Vec<(MapKey, Value)>) -> Self {
        if entries.len() > SMALL_MAP_ENTRIES {
            return ValueMap {
                entries: Entries::Large(entries.into_iter().collect()),
            };
        }
        // Stable, so that equal keys keep their order and the last of them can be kept.
        entries.sort_by(|left, right| left.0.cmp(&right.0));
        if entries
            .windows(2)
            .any(|pair| matches!(pair, [first, second] if first.0 == second.0))
        {
            let mut distinct: Vec<(MapKey, Value)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match distinct.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => distinct.push(entry),
                }
            }
            entries = distinct;
        }
        ValueMap {
            entries: Entries::Small(entries),
        }
    }

    /// Inserts an entry, returning whether the key (under numeric equality) was new.
    pub fn insert(&mut self, key: MapKey, value: Value) -> bool {
        // Numeric keys are equal across kinds (`1 == 1u`), so only they need a lookup
        // under numeric equality; a string or boolean key is a duplicate exactly when
        // the same key is there, which the insertion itself finds.
        let mut duplicate = match &key {
            MapKey::String(_) | MapKey::Bool(_) => false,
            _ => self.get(&key.to_value()).is_some(),
        };
        match &mut self.entries {
            Entries::Small(entries) => {
                match entries.binary_search_by(|(candidate, _)| candidate.cmp(&key)) {
                    Ok(position) => {
                        duplicate = true;
                        if let Some(entry) = entries.get_mut(position) {
                            entry.1 = value;
                        }
                    }
                    Err(position) if entries.len() < SMALL_MAP_ENTRIES => {
                        entries.insert(position, (key, value));
                    }
                    Err(_) => {
                        let mut large: BTreeMap<MapKey, Value> =
                            std::mem::take(entries).into_iter().collect();
                        large.insert(key, value);
                        self.entries = Entries::Large(large);
                    }
                }
            }
            Entries::Large(entries) => {
                duplicate |= entries.insert(key, value).is_some();
            }
        }
        !duplicate
    }

    /// Removes an entry by its exact key, returning whether it was there.
    pub fn remove(&mut self, key: &MapKey) -> bool {
        match &mut self.entries {
            Entries::Small(entries) => {
                match entries.binary_search_by(|(candidate, _)| candidate.cmp(key)) {
                    Ok(position) => {
                        entries.remove(position);
                        true
                    }
                    Err(_) => false,
                }
            }
            Entries::Large(entries) => entries.remove(key).is_some(),
        }
    }

    /// Looks an exact key up.
    fn get_key(&self, key: &MapKey) -> Option<&Value> {
        match &self.entries {
            Entries::Small(entries) => entries
                .binary_search_by(|(candidate, _)| candidate.cmp(key))
                .ok()
                .and_then(|position| entries.get(position))
                .map(|(_, value)| value),
            Entries::Large(entries) => entries.get(key),
        }
    }

    /// Looks a key up, treating numerically equal int, uint and double keys as the same.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        match key {
            Value::Int(number) => self.get_key(&MapKey::Int(*number)).or_else(|| {
                u64::try_from(*number)
                    .ok()
                    .and_then(|unsigned| self.get_key(&MapKey::Uint(unsigned)))
            }),
            Value::Uint(number) => self.get_key(&MapKey::Uint(*number)).or_else(|| {
                i64::try_from(*number)
                    .ok()
                    .and_then(|signed| self.get_key(&MapKey::Int(signed)))
            }),
            Value::Double(number) => {
                if !(number.fract() == 0.0 && number.is_finite()) {
                    return None;
                }
                let as_int = (*number >= -9.223_372_036_854_776e18
                    && *number < 9.223_372_036_854_776e18)
                    .then(|| self.get_key(&MapKey::Int(*number as i64)))
                    .flatten();
                as_int.or_else(|| {
                    (*number >= 0.0 && *number < 1.844_674_407_370_955_2e19)
                        .then(|| self.get_key(&MapKey::Uint(*number as u64)))
                        .flatten()
                })
            }
            Value::String(text) => self.get_str(text),
            other => MapKey::from_value(other).and_then(|candidate| self.get_key(&candidate)),
        }
    }

    /// Looks a string key up.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        match &self.entries {
            // Scanned: objects have few fields, and no key is allocated to look up.
            Entries::Small(entries) => {
                entries
                    .iter()
                    .find_map(|(candidate, value)| match candidate {
                        MapKey::String(text) if **text == *key => Some(value),
                        _ => None,
                    })
            }
            Entries::Large(entries) => entries.get(&MapKey::String(Arc::from(key))),
        }
    }

    /// Looks a string key up, trying the position in `hint` first and remembering where
    /// the key was found. The hint is only a guess: a wrong one costs one comparison.
    #[inline]
    pub fn get_str_hinted(&self, key: &str, hint: &std::sync::atomic::AtomicU32) -> Option<&Value> {
        use std::sync::atomic::Ordering;
        let Entries::Small(entries) = &self.entries else {
            return self.get_str(key);
        };
        let guess = hint.load(Ordering::Relaxed) as usize;
        if let Some((MapKey::String(text), value)) = entries.get(guess)
            && **text == *key
        {
            return Some(value);
        }
        let (position, value) = entries.iter().enumerate().find_map(
            |(position, (candidate, value))| match candidate {
                MapKey::String(text) if **text == *key => Some((position, value)),
                _ => None,
            },
        )?;
        // Small maps have at most 32 entries, so the position always fits.
        hint.store(u32::try_from(position).unwrap_or(0), Ordering::Relaxed);
        Some(value)
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        match &self.entries {
            Entries::Small(entries) => entries.len(),
            Entries::Large(entries) => entries.len(),
        }
    }

    /// Returns whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&MapKey, &Value)> {
        match &self.entries {
            Entries::Small(entries) => MapIter::Small(entries.iter()),
            Entries::Large(entries) => MapIter::Large(entries.iter()),
        }
    }
}

/// An iterator over a map's entries in key order.
enum MapIter<'m> {
    Small(std::slice::Iter<'m, (MapKey, Value)>),
    Large(std::collections::btree_map::Iter<'m, MapKey, Value>),
}

impl<'m> Iterator for MapIter<'m> {
    type Item = (&'m MapKey, &'m Value);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            MapIter::Small(entries) => entries.next().map(|(key, value)| (key, value)),
            MapIter::Large(entries) => entries.next(),
        }
    }
}

impl Value {
    /// Creates a string value.
    pub fn string(text: &str) -> Value {
        Value::String(Arc::from(text))
    }

    /// Returns the name of this value's CEL type, as `type(x)` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null_type",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Timestamp(_) => "google.protobuf.Timestamp",
            Value::Duration(_) => "google.protobuf.Duration",
            Value::Type(_) => "type",
        }
    }

    /// CEL equality: numbers compare by value across int, uint and double; values of
    /// different types are unequal; NaN equals nothing.
    pub fn cel_equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(left), Value::Bool(right)) => left == right,
            (Value::String(left), Value::String(right)) => left == right,
            (Value::Bytes(left), Value::Bytes(right)) => left == right,
            (Value::Timestamp(left), Value::Timestamp(right)) => left == right,
            (Value::Duration(left), Value::Duration(right)) => left == right,
            (Value::Type(left), Value::Type(right)) => left == right,
            (Value::List(left), Value::List(right)) => {
                left.len() == right.len()
                    && left.iter().zip(right.iter()).all(|(a, b)| a.cel_equals(b))
            }
            (Value::Map(left), Value::Map(right)) => {
                left.len() == right.len()
                    && left.iter().all(|(key, value)| {
                        right
                            .get(&key.to_value())
                            .is_some_and(|other_value| value.cel_equals(other_value))
                    })
            }
            _ => matches!(numeric_compare(self, other), Some(Ordering::Equal)),
        }
    }

    /// CEL ordering for `<`, `<=`, `>`, `>=`; `None` when the values are not ordered
    /// against each other (different types, or NaN).
    pub fn cel_compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Bool(left), Value::Bool(right)) => Some(left.cmp(right)),
            (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
            (Value::Bytes(left), Value::Bytes(right)) => Some(left.cmp(right)),
            (Value::Timestamp(left), Value::Timestamp(right)) => Some(left.cmp(right)),
            (Value::Duration(left), Value::Duration(right)) => Some(left.cmp(right)),
            _ => numeric_compare(self, other),
        }
    }
}

/// Compares two numbers of any numeric types exactly (no rounding through f64 for
/// int/uint pairs).
fn numeric_compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Uint(a), Value::Uint(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Uint(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Value::Uint(a), Value::Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::Double(a), Value::Int(b)) => compare_double_with_integer(*a, i128::from(*b)),
        (Value::Double(a), Value::Uint(b)) => compare_double_with_integer(*a, i128::from(*b)),
        (Value::Int(a), Value::Double(b)) => {
            compare_double_with_integer(*b, i128::from(*a)).map(Ordering::reverse)
        }
        (Value::Uint(a), Value::Double(b)) => {
            compare_double_with_integer(*b, i128::from(*a)).map(Ordering::reverse)
        }
        _ => None,
    }
}

fn compare_double_with_integer(double: f64, integer: i128) -> Option<Ordering> {
    // The reference implementation converts the integer to a double, which rounds
    // integers beyond 2^53; matching it keeps results identical across implementations.
    double.partial_cmp(&(integer as f64))
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cel_equals(other)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => formatter.write_str("null"),
            Value::Bool(flag) => write!(formatter, "{flag}"),
            Value::Int(number) => write!(formatter, "{number}"),
            Value::Uint(number) => write!(formatter, "{number}u"),
            Value::Double(number) => write!(formatter, "{number:?}"),
            Value::String(text) => write!(formatter, "{text:?}"),
            Value::Bytes(bytes) => write!(formatter, "b{:?}", String::from_utf8_lossy(bytes)),
            Value::List(elements) => {
                formatter.write_str("[")?;
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    write!(formatter, "{element}")?;
                }
                formatter.write_str("]")
            }
            Value::Map(map) => {
                formatter.write_str("{")?;
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    write!(formatter, "{}: {value}", key.to_value())?;
                }
                formatter.write_str("}")
            }
            Value::Timestamp(timestamp) => write!(formatter, "timestamp({timestamp:?})"),
            Value::Duration(duration) => write!(formatter, "duration({duration})"),
            Value::Type(name) => formatter.write_str(name),
        }
    }
}

/// The deepest JSON nesting converted; deeper parts become `null` so that conversion
/// never recurses without bound.
const MAX_JSON_DEPTH: usize = 128;

/// Converts a JSON value: integers that fit become `Int` (or `Uint` above `i64::MAX`),
/// other numbers `Double`, objects string-keyed maps.
pub fn value_from_json(json: &serde_json::Value) -> Value {
    value_from_json_at_depth(json, None, 0)
}

/// Converts a JSON value guided by a declared type, so that a JSON number declared as a
/// `double` is a `Double` even when written without a fraction (`3`), and a number
/// declared as an `int` is an `Int` even when written `3.0`.
pub fn value_from_json_with_type(json: &serde_json::Value, ty: &Type) -> Value {
    value_from_json_at_depth(json, Some(ty), 0)
}

fn value_from_json_at_depth(json: &serde_json::Value, ty: Option<&Type>, depth: usize) -> Value {
    if depth > MAX_JSON_DEPTH {
        return Value::Null;
    }
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => match ty {
            Some(Type::Double) => Value::Double(number.as_f64().unwrap_or(f64::NAN)),
            Some(Type::Uint) if number.as_u64().is_some() => {
                Value::Uint(number.as_u64().unwrap_or(0))
            }
            Some(Type::Int) => match number.as_i64() {
                Some(integer) => Value::Int(integer),
                None => match number.as_f64() {
                    Some(double) if double.fract() == 0.0 && double.abs() < 9.2e18 => {
                        Value::Int(double as i64)
                    }
                    Some(double) => Value::Double(double),
                    None => Value::Null,
                },
            },
            _ => {
                if let Some(integer) = number.as_i64() {
                    Value::Int(integer)
                } else if let Some(unsigned) = number.as_u64() {
                    Value::Uint(unsigned)
                } else {
                    Value::Double(number.as_f64().unwrap_or(f64::NAN))
                }
            }
        },
        serde_json::Value::String(text) => match ty {
            Some(Type::Timestamp) => match Timestamp::parse(text) {
                Some(timestamp) => Value::Timestamp(timestamp),
                None => Value::string(text),
            },
            _ => Value::string(text),
        },
        serde_json::Value::Array(elements) => {
            let element_type = match ty {
                Some(Type::List(element)) => Some(element.as_ref()),
                _ => None,
            };
            Value::List(
                elements
                    .iter()
                    .map(|element| value_from_json_at_depth(element, element_type, depth + 1))
                    .collect(),
            )
        }
        serde_json::Value::Object(object) => {
            let mut fields = Vec::with_capacity(object.len());
            for (key, value) in object {
                let field_type = match ty {
                    Some(Type::Object(object_type)) => {
                        object_type.fields.get(key).map(|field| &field.ty)
                    }
                    Some(Type::Map(_, value_type)) => Some(value_type.as_ref()),
                    _ => None,
                };
                fields.push((
                    MapKey::String(Arc::from(key.as_str())),
                    value_from_json_at_depth(value, field_type, depth + 1),
                ));
            }
            Value::Map(Arc::new(ValueMap::from_object_fields(fields)))
        }
    }
}

/// The values of the variables an expression is evaluated with.
#[derive(Debug, Clone, Default)]
pub struct Activation {
    variables: BTreeMap<String, Value>,
    container: Option<String>,
    /// What the engagement has seen, for provenance questions (AGX-P1); `None` where
    /// no engagement is behind the expression, where such questions fail (and deny).
    sources: Option<Arc<agentc_cel_support::provenance::Sources>>,
    /// Whether some variable's name has a dot.
    dotted_names: bool,
}

impl Activation {
    /// Creates an activation with no variables.
    pub fn new() -> Self {
        Activation::default()
    }

    /// Binds (or rebinds) a variable.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        self.dotted_names |= name.contains('.');
        self.variables.insert(name, value);
    }

    /// Returns a variable's value, by its exact name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.variables.get(name)
    }

    /// Gives provenance questions (`fromUser()`, `fromTool(…)`, …) their sources.
    pub fn set_sources(&mut self, sources: Arc<agentc_cel_support::provenance::Sources>) {
        self.sources = Some(sources);
    }

    /// The sources provenance questions are answered from, if any.
    pub fn sources(&self) -> Option<&agentc_cel_support::provenance::Sources> {
        self.sources.as_deref()
    }

    /// Whether a dotted name (`a.b`) could name a variable of its own: only when a
    /// variable's name has a dot, or a container is set.
    pub(crate) fn may_resolve_qualified(&self) -> bool {
        self.container.is_some() || self.dotted_names
    }

    /// Sets the container (namespace) that unqualified names are resolved in first, as
    /// [`crate::TypeEnv::set_container`] does for checking.
    pub fn set_container(&mut self, container: impl Into<String>) {
        self.container = Some(container.into());
    }

    /// Resolves a possibly qualified name through the container, as CEL does.
    pub fn resolve(&self, name: &str) -> Option<&Value> {
        if self.container.is_none() && !name.starts_with('.') {
            return self.variables.get(name);
        }
        crate::types::resolution_candidates(self.container.as_deref(), name)
            .iter()
            .find_map(|candidate| self.variables.get(candidate))
    }
}
