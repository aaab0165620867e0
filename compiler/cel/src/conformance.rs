//! A runner for the official CEL conformance tests (`cel-spec` "simple" suite).
//!
//! The test files are text-format protocol buffers. Rather than depend on a protobuf
//! library, this module has a small reader for the text format that builds a generic tree
//! of fields, which is enough to pull out expressions, bindings, declarations and
//! expected results. Tests that need protobuf message types cannot run without message
//! descriptors and are counted separately as not applicable.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::types::{Type, TypeEnv};
use crate::value::{Activation, MapKey, Value, ValueMap};
use crate::{check, evaluate, parse};

/// A node of a parsed text-format protocol buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum TextNode {
    /// A scalar written without quotes: a number, an enum name, `true`.
    Scalar(String),
    /// A quoted string, as raw bytes after escape processing.
    Bytes(Vec<u8>),
    /// A nested message: its fields in order (repeated fields appear repeatedly).
    Message(Vec<(String, TextNode)>),
}

impl TextNode {
    /// Returns the first field with the given name.
    pub fn get(&self, name: &str) -> Option<&TextNode> {
        match self {
            TextNode::Message(fields) => fields
                .iter()
                .find(|(field_name, _)| field_name == name)
                .map(|(_, node)| node),
            _ => None,
        }
    }

    /// Returns every field with the given name, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextNode> + 'a {
        let fields: &[(String, TextNode)] = match self {
            TextNode::Message(fields) => fields,
            _ => &[],
        };
        fields
            .iter()
            .filter(move |(field_name, _)| field_name == name)
            .map(|(_, node)| node)
    }

    /// Returns the node as text: a quoted string decoded as UTF-8, or a scalar.
    pub fn text(&self) -> Option<String> {
        match self {
            TextNode::Scalar(text) => Some(text.clone()),
            TextNode::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            TextNode::Message(_) => None,
        }
    }

    fn field_names(&self) -> Vec<&str> {
        match self {
            TextNode::Message(fields) => fields.iter().map(|(name, _)| name.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// An error in a text-format file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text format error at byte {offset}: {message}")]
pub struct TextFormatError {
    /// Where the problem is.
    pub offset: usize,
    /// What the problem is.
    pub message: String,
}

/// Parses a text-format protocol buffer into a generic tree.
pub fn parse_text_format(source: &str) -> Result<TextNode, TextFormatError> {
    let mut reader = TextReader {
        bytes: source.as_bytes(),
        position: 0,
        depth: 0,
    };
    let fields = reader.read_fields(None)?;
    Ok(TextNode::Message(fields))
}

struct TextReader<'a> {
    bytes: &'a [u8],
    position: usize,
    depth: usize,
}

impl TextReader<'_> {
    fn error(&self, message: &str) -> TextFormatError {
        TextFormatError {
            offset: self.position,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_space(&mut self) {
        while let Some(byte) = self.peek() {
            if byte.is_ascii_whitespace() || byte == b',' || byte == b';' {
                self.position += 1;
            } else if byte == b'#' {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.position += 1;
                }
            } else {
                break;
            }
        }
    }

    fn read_fields(
        &mut self,
        close: Option<u8>,
    ) -> Result<Vec<(String, TextNode)>, TextFormatError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(self.error("nesting too deep"));
        }
        let mut fields = Vec::new();
        loop {
            self.skip_space();
            match (self.peek(), close) {
                (None, None) => break,
                (None, Some(_)) => return Err(self.error("unexpected end of input")),
                (Some(byte), Some(expected)) if byte == expected => {
                    self.position += 1;
                    break;
                }
                _ => {}
            }
            let name = self.read_field_name()?;
            self.skip_space();
            let has_colon = self.peek() == Some(b':');
            if has_colon {
                self.position += 1;
                self.skip_space();
            }
            if self.peek() == Some(b'[') {
                self.position += 1;
                loop {
                    self.skip_space();
                    if self.peek() == Some(b']') {
                        self.position += 1;
                        break;
                    }
                    let value = self.read_value()?;
                    fields.push((name.clone(), value));
                }
            } else {
                let value = self.read_value()?;
                fields.push((name, value));
            }
        }
        self.depth -= 1;
        Ok(fields)
    }

    fn read_field_name(&mut self) -> Result<String, TextFormatError> {
        if self.peek() == Some(b'[') {
            // An extension or Any type URL such as `[type.googleapis.com/x.Y]`.
            let start = self.position;
            while self.peek().is_some_and(|b| b != b']') {
                self.position += 1;
            }
            self.position += 1;
            let end = self.position.min(self.bytes.len());
            return Ok(
                String::from_utf8_lossy(self.bytes.get(start..end).unwrap_or(&[])).into_owned(),
            );
        }
        let start = self.position;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.position += 1;
        }
        if start == self.position {
            return Err(self.error("expected a field name"));
        }
        Ok(
            String::from_utf8_lossy(self.bytes.get(start..self.position).unwrap_or(&[]))
                .into_owned(),
        )
    }

    fn read_value(&mut self) -> Result<TextNode, TextFormatError> {
        self.skip_space();
        match self.peek() {
            Some(b'{') => {
                self.position += 1;
                Ok(TextNode::Message(self.read_fields(Some(b'}'))?))
            }
            Some(b'<') => {
                self.position += 1;
                Ok(TextNode::Message(self.read_fields(Some(b'>'))?))
            }
            Some(b'"' | b'\'') => {
                let mut bytes = Vec::new();
                // Adjacent string literals are concatenated, as in C.
                while let Some(quote @ (b'"' | b'\'')) = self.peek() {
                    self.position += 1;
                    self.read_string_body(quote, &mut bytes)?;
                    self.skip_space_only();
                }
                Ok(TextNode::Bytes(bytes))
            }
            Some(_) => {
                let start = self.position;
                while self.peek().is_some_and(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+')
                }) {
                    self.position += 1;
                }
                if start == self.position {
                    return Err(self.error("expected a value"));
                }
                Ok(TextNode::Scalar(
                    String::from_utf8_lossy(self.bytes.get(start..self.position).unwrap_or(&[]))
                        .into_owned(),
                ))
            }
            None => Err(self.error("expected a value")),
        }
    }

    fn skip_space_only(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.position += 1;
        }
    }

    fn read_string_body(&mut self, quote: u8, output: &mut Vec<u8>) -> Result<(), TextFormatError> {
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.position += 1;
            if byte == quote {
                return Ok(());
            }
            if byte != b'\\' {
                output.push(byte);
                continue;
            }
            let Some(escape) = self.peek() else {
                return Err(self.error("unterminated escape"));
            };
            self.position += 1;
            match escape {
                b'n' => output.push(b'\n'),
                b't' => output.push(b'\t'),
                b'r' => output.push(b'\r'),
                b'a' => output.push(0x07),
                b'b' => output.push(0x08),
                b'f' => output.push(0x0c),
                b'v' => output.push(0x0b),
                b'0'..=b'7' => {
                    let mut value = u32::from(escape - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(digit @ b'0'..=b'7') => {
                                value = value * 8 + u32::from(digit - b'0');
                                self.position += 1;
                            }
                            _ => break,
                        }
                    }
                    output.push(u8::try_from(value & 0xff).unwrap_or(0));
                }
                b'x' | b'X' => {
                    let mut value = 0u32;
                    for _ in 0..2 {
                        match self.peek().and_then(|b| char::from(b).to_digit(16)) {
                            Some(digit) => {
                                value = value * 16 + digit;
                                self.position += 1;
                            }
                            None => break,
                        }
                    }
                    output.push(u8::try_from(value & 0xff).unwrap_or(0));
                }
                b'u' | b'U' => {
                    let count = if escape == b'u' { 4 } else { 8 };
                    let mut value = 0u32;
                    for _ in 0..count {
                        match self.peek().and_then(|b| char::from(b).to_digit(16)) {
                            Some(digit) => {
                                value = value.saturating_mul(16).saturating_add(digit);
                                self.position += 1;
                            }
                            None => break,
                        }
                    }
                    let character = char::from_u32(value).unwrap_or('\u{fffd}');
                    let mut buffer = [0u8; 4];
                    output.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
                }
                other => output.push(other),
            }
        }
    }
}

/// The outcome of one conformance test that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The test's identifier, `file/section/test`.
    pub id: String,
    /// Why it failed.
    pub reason: String,
}

/// The results of running one conformance file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// The file's `name` field, such as `basic`.
    pub name: String,
    /// How many tests the file holds.
    pub total: usize,
    /// How many tests need protobuf message types and were not run.
    pub not_applicable: usize,
    /// The identifiers of the tests that passed.
    pub passed: Vec<String>,
    /// The tests that failed, with reasons.
    pub failed: Vec<TestFailure>,
}

/// Markers of tests that need protobuf message types, enums or `Any` values.
const PROTOBUF_MARKERS: &[&str] = &[
    "object_value",
    "message_type",
    "TestAllTypes",
    "enum_value",
    "cel.expr.conformance",
    "google.protobuf.Any",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.NullValue",
    "google.protobuf.Int",
    "google.protobuf.UInt",
    "google.protobuf.Bool",
    "google.protobuf.String",
    "google.protobuf.Bytes",
    "google.protobuf.Double",
    "google.protobuf.Float",
    "google.protobuf.Empty",
    "google.protobuf.FieldMask",
    "wrapper",
    "proto2",
    "proto3",
];

/// Runs every test of one conformance file, given the file's contents.
pub fn run_file(contents: &str) -> FileReport {
    let mut report = FileReport::default();
    let root = match parse_text_format(contents) {
        Ok(root) => root,
        Err(error) => {
            report.failed.push(TestFailure {
                id: "<file>".to_string(),
                reason: error.to_string(),
            });
            return report;
        }
    };
    report.name = root
        .get("name")
        .and_then(TextNode::text)
        .unwrap_or_default();
    for section in root.all("section") {
        let section_name = section
            .get("name")
            .and_then(TextNode::text)
            .unwrap_or_default();
        for test in section.all("test") {
            let test_name = test
                .get("name")
                .and_then(TextNode::text)
                .unwrap_or_default();
            let id = format!("{}/{section_name}/{test_name}", report.name);
            report.total += 1;
            if needs_protobuf(test) {
                report.not_applicable += 1;
                continue;
            }
            // Each test runs on its own thread-free path, and a panic would be a bug; the
            // crate forbids panics, so no unwinding guard is needed here.
            match run_test(test) {
                Ok(()) => report.passed.push(id),
                Err(reason) => report.failed.push(TestFailure { id, reason }),
            }
        }
    }
    report
}

fn needs_protobuf(test: &TextNode) -> bool {
    let rendered = format!("{test:?}");
    if PROTOBUF_MARKERS
        .iter()
        .any(|marker| rendered.contains(marker))
    {
        return true;
    }
    // Message construction (`Foo{a: 1}`) always names a protobuf message type.
    let Some(Ok(expr)) = test
        .get("expr")
        .and_then(TextNode::text)
        .map(|text| parse(&text))
    else {
        return false;
    };
    let mut stack = vec![&expr];
    while let Some(node) = stack.pop() {
        if matches!(node.kind, crate::ast::ExprKind::Struct { .. }) {
            return true;
        }
        stack.extend(node.children());
    }
    false
}

fn run_test(test: &TextNode) -> Result<(), String> {
    let expr_text = test
        .get("expr")
        .and_then(TextNode::text)
        .ok_or("test has no expr")?;
    let flag = |name: &str| test.get(name).and_then(TextNode::text).as_deref() == Some("true");
    let disable_check = flag("disable_check");
    let check_only = flag("check_only");
    let expects_error = test.get("eval_error").is_some() || test.get("any_eval_errors").is_some();
    if test.get("unknown").is_some() || test.get("any_unknowns").is_some() {
        return Err("unknown-value (partial evaluation) results are not supported".to_string());
    }
    let container = test.get("container").and_then(TextNode::text);

    let expr = match parse(&expr_text) {
        Ok(expr) => expr,
        Err(diagnostics) => {
            return if expects_error {
                Ok(())
            } else {
                Err(format!(
                    "parse error: {}",
                    diagnostics
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ))
            };
        }
    };

    let mut env = TypeEnv::new();
    if let Some(container) = &container {
        env.set_container(container.clone());
    }
    for declaration in test.all("type_env") {
        let name = declaration
            .get("name")
            .and_then(TextNode::text)
            .unwrap_or_default();
        if let Some(ident) = declaration.get("ident") {
            let ty = ident.get("type").map(type_from_node).unwrap_or(Type::Dyn);
            env.declare(name, ty);
        } else if declaration.get("function").is_some() {
            return Err("function declarations are not supported".to_string());
        }
    }

    let mut checked_type = None;
    if !disable_check {
        match check(&expr, &env) {
            Ok(ty) => checked_type = Some(ty),
            Err(diagnostics) => {
                return if expects_error {
                    Ok(())
                } else {
                    Err(format!(
                        "check error: {}",
                        diagnostics
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ))
                };
            }
        }
    }

    if let Some(typed_result) = test.get("typed_result")
        && let Some(expected_type) = typed_result.get("deduced_type")
        && let Some(actual_type) = &checked_type
    {
        let expected = type_from_node(expected_type);
        if !types_match(&expected, actual_type) {
            return Err(format!(
                "deduced type mismatch: expected {expected}, got {actual_type}"
            ));
        }
    }
    if check_only {
        return Ok(());
    }

    let mut activation = Activation::new();
    if let Some(container) = &container {
        activation.set_container(container.clone());
    }
    for binding in test.all("bindings") {
        let name = binding
            .get("key")
            .and_then(TextNode::text)
            .unwrap_or_default();
        let Some(expr_value) = binding.get("value") else {
            continue;
        };
        let Some(value_node) = expr_value.get("value") else {
            return Err("bindings other than plain values are not supported".to_string());
        };
        activation.insert(name, value_from_node(value_node)?);
    }

    let result = evaluate(&expr, &activation);
    if expects_error {
        return match result {
            Err(_) => Ok(()),
            Ok(value) => Err(format!("expected an error, got {value}")),
        };
    }
    let expected = match test.get("value") {
        Some(node) => value_from_node(node)?,
        None => match test
            .get("typed_result")
            .and_then(|typed| typed.get("result"))
        {
            Some(node) => value_from_node(node)?,
            None => Value::Bool(true),
        },
    };
    match result {
        Ok(actual) if values_identical(&actual, &expected) => Ok(()),
        Ok(actual) => Err(format!("expected {expected}, got {actual}")),
        Err(error) => Err(format!("expected {expected}, got error: {error}")),
    }
}

/// Compares values strictly: the same type and the same contents (NaN equals NaN), so
/// that `1` and `1u` are told apart as the conformance suite expects.
fn values_identical(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Double(a), Value::Double(b)) => (a.is_nan() && b.is_nan()) || a == b,
        (Value::List(a), Value::List(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| values_identical(x, y))
        }
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter().all(|(key, value)| {
                    b.iter().any(|(other_key, other_value)| {
                        key == other_key && values_identical(value, other_value)
                    })
                })
        }
        _ => std::mem::discriminant(left) == std::mem::discriminant(right) && left == right,
    }
}

fn types_match(expected: &Type, actual: &Type) -> bool {
    match (expected, actual) {
        (Type::List(a), Type::List(b)) => types_match(a, b),
        (Type::Map(ak, av), Type::Map(bk, bv)) => types_match(ak, bk) && types_match(av, bv),
        _ => expected == actual,
    }
}

fn type_from_node(node: &TextNode) -> Type {
    if let Some(primitive) = node.get("primitive").and_then(TextNode::text) {
        return match primitive.as_str() {
            "BOOL" => Type::Bool,
            "INT64" => Type::Int,
            "UINT64" => Type::Uint,
            "DOUBLE" => Type::Double,
            "STRING" => Type::String,
            "BYTES" => Type::Bytes,
            _ => Type::Dyn,
        };
    }
    if let Some(list) = node.get("list_type") {
        return Type::List(Box::new(
            list.get("elem_type")
                .map(type_from_node)
                .unwrap_or(Type::Dyn),
        ));
    }
    if let Some(map) = node.get("map_type") {
        return Type::Map(
            Box::new(map.get("key_type").map(type_from_node).unwrap_or(Type::Dyn)),
            Box::new(
                map.get("value_type")
                    .map(type_from_node)
                    .unwrap_or(Type::Dyn),
            ),
        );
    }
    if let Some(well_known) = node.get("well_known").and_then(TextNode::text) {
        return match well_known.as_str() {
            "TIMESTAMP" => Type::Timestamp,
            "DURATION" => Type::Duration,
            _ => Type::Dyn,
        };
    }
    if node.get("null").is_some() {
        return Type::Null;
    }
    if node.get("type").is_some() {
        return Type::TypeType;
    }
    Type::Dyn
}

fn value_from_node(node: &TextNode) -> Result<Value, String> {
    let fields = node.field_names();
    let Some(kind) = fields.first() else {
        return Err("empty value".to_string());
    };
    let Some(content) = node.get(kind) else {
        return Err("empty value".to_string());
    };
    let scalar = || content.text().unwrap_or_default();
    match *kind {
        "null_value" => Ok(Value::Null),
        "bool_value" => Ok(Value::Bool(scalar() == "true")),
        "int64_value" => scalar()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|error| format!("bad int64_value: {error}")),
        "uint64_value" => scalar()
            .parse::<u64>()
            .map(Value::Uint)
            .map_err(|error| format!("bad uint64_value: {error}")),
        "double_value" => {
            let text = scalar();
            let lowered = text.to_ascii_lowercase();
            let parsed = match lowered.as_str() {
                "inf" | "infinity" => Ok(f64::INFINITY),
                "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                _ => lowered.trim_end_matches('f').parse::<f64>(),
            };
            parsed
                .map(Value::Double)
                .map_err(|error| format!("bad double_value: {error}"))
        }
        "string_value" => match content {
            TextNode::Bytes(bytes) => String::from_utf8(bytes.clone())
                .map(|text| Value::String(Arc::from(text)))
                .map_err(|_| "string_value is not UTF-8".to_string()),
            _ => Ok(Value::String(Arc::from(scalar()))),
        },
        "bytes_value" => match content {
            TextNode::Bytes(bytes) => Ok(Value::Bytes(Arc::from(bytes.as_slice()))),
            _ => Ok(Value::Bytes(Arc::from(scalar().as_bytes()))),
        },
        "type_value" => Ok(Value::Type(Arc::from(scalar()))),
        "list_value" => {
            let mut elements = Vec::new();
            for element in content.all("values") {
                elements.push(value_from_node(element)?);
            }
            Ok(Value::List(Arc::from(elements)))
        }
        "map_value" => {
            let mut map = ValueMap::new();
            for entry in content.all("entries") {
                let key = entry
                    .get("key")
                    .map(value_from_node)
                    .ok_or("map entry without key")??;
                let value = entry
                    .get("value")
                    .map(value_from_node)
                    .ok_or("map entry without value")??;
                let key = MapKey::from_value(&key).ok_or("unsupported map key")?;
                map.insert(key, value);
            }
            Ok(Value::Map(Arc::new(map)))
        }
        other => Err(format!("unsupported expected value kind `{other}`")),
    }
}

/// Summarises reports as `(passed, failed, not_applicable)` totals.
pub fn totals(reports: &[FileReport]) -> (usize, usize, usize) {
    reports
        .iter()
        .fold((0, 0, 0), |(passed, failed, skipped), report| {
            (
                passed + report.passed.len(),
                failed + report.failed.len(),
                skipped + report.not_applicable,
            )
        })
}

/// Parses a known-failures list: one `file/section/test` identifier per line, optionally
/// followed by whitespace and a reason; blank lines and `#` comments are ignored.
pub fn parse_known_failures(contents: &str) -> BTreeMap<String, String> {
    contents
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((id, reason)) => (id.to_string(), reason.trim().to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}
