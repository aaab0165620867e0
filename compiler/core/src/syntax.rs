//! The syntax layer: bytes → a YAML tree with a byte span on every node.
//!
//! We build the tree ourselves from `saphyr-parser`'s event stream instead of using a
//! serde deserializer, for three reasons: every scalar, key and collection keeps its
//! exact span (serde_yaml and most serde layers drop spans of values that parse); hostile
//! input is bounded by our own budgets (nesting depth, node count with alias expansion,
//! file size) before it can cost memory or stack; and problems such as duplicate keys are
//! reported with both places instead of silently keeping one. JSON is a subset of YAML's
//! flow syntax, so the same path reads `.json` files.

use crate::diagnostics::{Diagnostic, FrontEndCode};
use crate::span::{FileId, Span};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// Budgets that bound the time and memory spent on one file, whatever it contains.
#[derive(Clone, Debug)]
pub struct SyntaxLimits {
    /// Largest file read, in bytes.
    pub max_file_bytes: usize,
    /// Deepest nesting of sequences and mappings. Specs are shallow; JSON Schemas inside
    /// tool documents nest a little deeper, and 64 levels leave them ample room.
    pub max_depth: usize,
    /// Most nodes in one file, counting every node an alias expands to, so that an alias
    /// bomb ("billion laughs") stops early instead of exhausting memory.
    pub max_nodes: usize,
    /// Longest scalar. No spec value needs a megabyte; a longer one is hostile or a mistake.
    pub max_scalar_bytes: usize,
}

impl Default for SyntaxLimits {
    fn default() -> Self {
        SyntaxLimits {
            max_file_bytes: 16 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 250_000,
            max_scalar_bytes: 1024 * 1024,
        }
    }
}

/// How a scalar was written, which decides both its type (plain scalars resolve to
/// null, booleans and numbers; quoted ones are always strings) and how to map offsets
/// inside it back to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarForm {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub span: Span,
    /// For scalars: how it was written, and its text as written (after YAML unescaping).
    pub scalar: Option<(ScalarForm, String)>,
}

impl Node {
    /// The word a diagnostic uses for what this node is ("a mapping", "the string `x`").
    pub fn describe(&self) -> String {
        match &self.value {
            NodeValue::Null => "null".to_string(),
            NodeValue::Bool(value) => format!("the boolean `{value}`"),
            NodeValue::Int(value) => format!("the integer `{value}`"),
            NodeValue::Float(value) => format!("the number `{value}`"),
            NodeValue::String(text) => {
                let shown: String = text.chars().take(40).collect();
                if shown.len() < text.len() {
                    format!("the string `{shown}…`")
                } else {
                    format!("the string `{shown}`")
                }
            }
            NodeValue::Sequence(_) => "a list".to_string(),
            NodeValue::Mapping(_) => "a mapping".to_string(),
        }
    }

    /// The text of a scalar key, whatever it resolved to (`true:` gives "true").
    pub fn scalar_text(&self) -> Option<&str> {
        self.scalar.as_ref().map(|(_, text)| text.as_str())
    }

    pub fn as_mapping(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&(Node, Node)> {
        self.as_mapping()?
            .iter()
            .find(|(entry_key, _)| entry_key.scalar_text() == Some(key))
    }

    /// Converts to JSON (for JSON Schemas inside tool documents). Non-string keys
    /// become their text; the caller has already reported anything worse.
    pub fn to_json(&self) -> serde_json::Value {
        // Depth is bounded by `SyntaxLimits::max_depth`, so this recursion is bounded too.
        match &self.value {
            NodeValue::Null => serde_json::Value::Null,
            NodeValue::Bool(value) => serde_json::Value::Bool(*value),
            NodeValue::Int(value) => serde_json::Value::from(*value),
            NodeValue::Float(value) => serde_json::Number::from_f64(*value)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            NodeValue::String(text) => serde_json::Value::String(text.clone()),
            NodeValue::Sequence(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            NodeValue::Mapping(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.scalar_text().unwrap_or_default().to_string(),
                            value.to_json(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// One YAML document of a file (files may hold several, separated by `---`).
#[derive(Clone, Debug)]
pub struct YamlDocument {
    pub root: Node,
}

/// Maps saphyr's character indices to byte offsets. ASCII text (the common case) maps
/// one to one; otherwise we keep a checkpoint every 64 characters, which costs an
/// eighth of the text's size in memory and at most 64 steps per lookup.
struct CharToByte<'a> {
    text: &'a str,
    checkpoints: Option<Vec<usize>>,
}

const CHECKPOINT_EVERY: usize = 64;

impl<'a> CharToByte<'a> {
    fn new(text: &'a str) -> Self {
        if text.is_ascii() {
            return CharToByte {
                text,
                checkpoints: None,
            };
        }
        let checkpoints = text
            .char_indices()
            .map(|(byte, _)| byte)
            .step_by(CHECKPOINT_EVERY)
            .collect();
        CharToByte {
            text,
            checkpoints: Some(checkpoints),
        }
    }

    fn byte_offset(&self, char_index: usize) -> usize {
        let Some(checkpoints) = &self.checkpoints else {
            return char_index.min(self.text.len());
        };
        let Some(&base) = checkpoints.get(char_index / CHECKPOINT_EVERY) else {
            return self.text.len();
        };
        let rest = char_index % CHECKPOINT_EVERY;
        self.text
            .get(base..)
            .and_then(|tail| tail.char_indices().nth(rest))
            .map_or(self.text.len(), |(offset, _)| base + offset)
    }
}

/// A collection being built while its events stream in.
enum Frame {
    Sequence {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        /// Each key's text and its entry's position, so that a repeated key is found
        /// in constant time (a mapping of 100,000 keys is checked in linear time).
        keys: HashMap<String, usize>,
        pending_key: Option<Node>,
    },
}

struct Builder<'a> {
    file: FileId,
    offsets: CharToByte<'a>,
    limits: &'a SyntaxLimits,
    diagnostics: Vec<Diagnostic>,
    anchors: HashMap<usize, (Node, usize)>,
    node_count: usize,
}

/// Parses one file into its documents. Problems become diagnostics; a file with a
/// syntax error yields the documents that were complete before it, which are still
/// checked, so that one typo does not hide every other finding.
pub fn parse_yaml(
    file: FileId,
    text: &str,
    limits: &SyntaxLimits,
) -> (Vec<YamlDocument>, Vec<Diagnostic>) {
    if text.len() > limits.max_file_bytes {
        let diagnostic = Diagnostic::new(
            FrontEndCode::InputBudgetExceeded,
            Span::new(file, 0, 0),
            format!(
                "the file is {} bytes, more than the {} bytes a spec file may have",
                text.len(),
                limits.max_file_bytes
            ),
        );
        return (Vec::new(), vec![diagnostic]);
    }
    // The parser reads a NUL as the end of the input and then reports whatever that
    // cut leaves broken, which says nothing of the NUL: name it instead.
    if let Some(at) = text.find('\0') {
        let diagnostic = Diagnostic::new(
            FrontEndCode::YamlSyntax,
            Span::new(file, at, at + 1),
            "the file contains a NUL byte",
        )
        .with_primary_label("NUL (U+0000) here")
        .with_help("spec files are UTF-8 text: remove the NUL byte (is this a binary file?)");
        return (Vec::new(), vec![diagnostic]);
    }
    let mut builder = Builder {
        file,
        offsets: CharToByte::new(text),
        limits,
        diagnostics: Vec::new(),
        anchors: HashMap::new(),
        node_count: 0,
    };
    let documents = builder.run(text);
    (documents, builder.diagnostics)
}

impl Builder<'_> {
    fn span(&self, start_char: usize, end_char: usize) -> Span {
        Span::new(
            self.file,
            self.offsets.byte_offset(start_char),
            self.offsets.byte_offset(end_char),
        )
    }

    fn run(&mut self, text: &str) -> Vec<YamlDocument> {
        let mut documents = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root: Option<Node> = None;
        for event in Parser::new_from_str(text) {
            let (event, span) = match event {
                Ok(pair) => pair,
                Err(error) => {
                    let at = self.offsets.byte_offset(error.marker().index());
                    // saphyr's own guard against deep flow nesting can fire before our
                    // depth budget sees the events: report it as the budget it is.
                    if error.info().contains("recursion limit") {
                        self.diagnostics.push(
                            Diagnostic::new(
                                FrontEndCode::InputBudgetExceeded,
                                Span::new(self.file, at, at),
                                "nesting is too deep",
                            )
                            .with_primary_label("too deep from here on")
                            .with_note("specs are read with a nesting budget so that hostile files cannot exhaust memory or stack"),
                        );
                        return documents;
                    }
                    self.diagnostics.push(
                        Diagnostic::new(
                            FrontEndCode::YamlSyntax,
                            Span::new(self.file, at, at),
                            format!("invalid YAML: {}", error.info()),
                        )
                        .with_primary_label("the parser stopped here")
                        .with_help(yaml_syntax_help(error.info())),
                    );
                    return documents;
                }
            };
            let start = span.start.index();
            let end = span.end.index();
            let completed: Option<Node> = match event {
                Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
                Event::DocumentStart(_) => {
                    root = None;
                    self.anchors.clear();
                    None
                }
                Event::DocumentEnd => {
                    if let Some(node) = root.take() {
                        documents.push(YamlDocument { root: node });
                    }
                    None
                }
                Event::Alias(anchor) => {
                    let Some((node, size)) = self.anchors.get(&anchor).cloned() else {
                        self.diagnostics.push(Diagnostic::new(
                            FrontEndCode::YamlSyntax,
                            self.span(start, end),
                            "this alias refers to an anchor that is not defined before it",
                        ));
                        return documents;
                    };
                    if !self.count_nodes(size, start, end) {
                        return documents;
                    }
                    Some(node)
                }
                Event::Scalar(value, style, anchor, tag) => {
                    if !self.count_nodes(1, start, end) {
                        return documents;
                    }
                    let form = match style {
                        ScalarStyle::Plain => ScalarForm::Plain,
                        ScalarStyle::SingleQuoted => ScalarForm::SingleQuoted,
                        ScalarStyle::DoubleQuoted => ScalarForm::DoubleQuoted,
                        ScalarStyle::Literal => ScalarForm::Literal,
                        ScalarStyle::Folded => ScalarForm::Folded,
                    };
                    let span = self.span(start, end);
                    if value.len() > self.limits.max_scalar_bytes {
                        self.diagnostics.push(
                            Diagnostic::new(
                                FrontEndCode::InputBudgetExceeded,
                                Span::new(self.file, span.start, span.start),
                                format!(
                                    "this value is {} bytes long, more than the {} bytes a spec value may have",
                                    value.len(),
                                    self.limits.max_scalar_bytes
                                ),
                            )
                            .with_primary_label("the value starts here"),
                        );
                        return documents;
                    }
                    let forced_string = match &tag {
                        None => false,
                        Some(tag) if tag.is_yaml_core_schema() => tag.suffix == "str",
                        Some(tag) => {
                            self.diagnostics.push(
                                Diagnostic::new(
                                    FrontEndCode::UnsupportedYaml,
                                    span,
                                    format!(
                                        "custom YAML tag `{}{}` is not supported in specs",
                                        tag.handle, tag.suffix
                                    ),
                                )
                                .with_help("remove the tag; spec values are plain YAML"),
                            );
                            false
                        }
                    };
                    let resolved = if form == ScalarForm::Plain && !forced_string {
                        resolve_plain_scalar(&value)
                    } else {
                        NodeValue::String(value.to_string())
                    };
                    let node = Node {
                        value: resolved,
                        span,
                        scalar: Some((form, value.into_owned())),
                    };
                    if anchor != 0 {
                        self.anchors.insert(anchor, (node.clone(), 1));
                    }
                    Some(node)
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    if !self.count_nodes(1, start, end) {
                        return documents;
                    }
                    if stack.len() >= self.limits.max_depth {
                        self.diagnostics.push(
                            Diagnostic::new(
                                FrontEndCode::InputBudgetExceeded,
                                self.span(start, end),
                                format!(
                                    "nesting is deeper than {} levels",
                                    self.limits.max_depth
                                ),
                            )
                            .with_primary_label("too deep from here on")
                            .with_note("specs are read with a nesting budget so that hostile files cannot exhaust memory or stack"),
                        );
                        return documents;
                    }
                    let byte_start = self.offsets.byte_offset(start);
                    stack.push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Sequence {
                            start: byte_start,
                            anchor,
                            items: Vec::new(),
                        }
                    } else {
                        Frame::Mapping {
                            start: byte_start,
                            anchor,
                            entries: Vec::new(),
                            keys: HashMap::new(),
                            pending_key: None,
                        }
                    });
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let byte_end = self.offsets.byte_offset(end);
                    match stack.pop() {
                        Some(Frame::Sequence {
                            start,
                            anchor,
                            items,
                        }) => Some(self.finish_collection(
                            NodeValue::Sequence(items),
                            start,
                            byte_end,
                            anchor,
                        )),
                        Some(Frame::Mapping {
                            start,
                            anchor,
                            entries,
                            ..
                        }) => Some(self.finish_collection(
                            NodeValue::Mapping(entries),
                            start,
                            byte_end,
                            anchor,
                        )),
                        None => None,
                    }
                }
            };
            if let Some(node) = completed {
                match stack.last_mut() {
                    None => root = Some(node),
                    Some(Frame::Sequence { items, .. }) => items.push(node),
                    Some(Frame::Mapping {
                        entries,
                        keys,
                        pending_key,
                        ..
                    }) => match pending_key.take() {
                        None => *pending_key = Some(node),
                        Some(key) => {
                            if let Some(diagnostic) = check_key(&key, entries, keys) {
                                self.diagnostics.push(diagnostic);
                            } else {
                                entries.push((key, node));
                            }
                        }
                    },
                }
            }
        }
        documents
    }

    fn finish_collection(
        &mut self,
        value: NodeValue,
        start: usize,
        end: usize,
        anchor: usize,
    ) -> Node {
        let node = Node {
            value,
            span: Span::new(self.file, start, end),
            scalar: None,
        };
        if anchor != 0 {
            let size = count_tree(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        node
    }

    /// Charges `count` nodes to the budget; false (with a diagnostic) once it is spent.
    fn count_nodes(&mut self, count: usize, start: usize, end: usize) -> bool {
        self.node_count = self.node_count.saturating_add(count);
        if self.node_count <= self.limits.max_nodes {
            return true;
        }
        self.diagnostics.push(
            Diagnostic::new(
                FrontEndCode::InputBudgetExceeded,
                self.span(start, end),
                format!(
                    "the file expands to more than {} YAML nodes",
                    self.limits.max_nodes
                ),
            )
            .with_primary_label("the budget ran out here")
            .with_note("aliases count once per use, so an alias bomb (\"billion laughs\") stops here instead of exhausting memory"),
        );
        false
    }
}

/// Counts a tree's nodes without recursion, so a deep anchored tree cannot overflow.
fn count_tree(node: &Node) -> usize {
    let mut count = 0;
    let mut pending = vec![node];
    while let Some(node) = pending.pop() {
        count += 1;
        match &node.value {
            NodeValue::Sequence(items) => pending.extend(items),
            NodeValue::Mapping(entries) => {
                for (key, value) in entries {
                    pending.push(key);
                    pending.push(value);
                }
            }
            _ => {}
        }
    }
    count
}

/// Keys must be scalars, and must not repeat. Returns the diagnostic for a bad key; a
/// good one is added to `keys` with the position its entry will have in `entries`.
fn check_key(
    key: &Node,
    entries: &[(Node, Node)],
    keys: &mut HashMap<String, usize>,
) -> Option<Diagnostic> {
    let Some(text) = key.scalar_text() else {
        return Some(
            Diagnostic::new(
                FrontEndCode::UnsupportedYaml,
                key.span,
                "mapping keys in specs must be plain strings",
            )
            .with_primary_label("this key is a collection"),
        );
    };
    let Some(&position) = keys.get(text) else {
        keys.insert(text.to_string(), entries.len());
        return None;
    };
    let earlier = entries.get(position)?;
    Some(
        Diagnostic::new(
            FrontEndCode::DuplicateKey,
            key.span,
            format!("the key `{text}` appears twice in this mapping"),
        )
        .with_primary_label("second occurrence, ignored")
        .with_secondary(earlier.0.span, "first occurrence")
        .with_help("remove one of them; YAML parsers disagree on which one wins"),
    )
}

fn yaml_syntax_help(info: &str) -> String {
    let mentions_tabs = info
        .split(|character: char| !character.is_ascii_alphabetic())
        .any(|word| word == "tab" || word == "tabs");
    if mentions_tabs {
        "YAML indentation must use spaces, not tabs".to_string()
    } else if info.contains("mapping values are not allowed") {
        "a value containing `: ` must be quoted, e.g. `key: \"a: b\"`".to_string()
    } else {
        "check the indentation and quoting around this position".to_string()
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain_scalar(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        return i64::from_str_radix(hex, 16)
            .map_or_else(|_| NodeValue::String(text.to_string()), NodeValue::Int);
    }
    if let Some(octal) = text.strip_prefix("0o")
        && !octal.is_empty()
        && octal.bytes().all(|byte| (b'0'..=b'7').contains(&byte))
    {
        return i64::from_str_radix(octal, 8)
            .map_or_else(|_| NodeValue::String(text.to_string()), NodeValue::Int);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        // An integer too large for i64 is kept as a float, as YAML libraries do; a range
        // check later reports it against the field it was meant for.
        return text
            .parse::<i64>()
            .map(NodeValue::Int)
            .unwrap_or_else(|_| NodeValue::Float(text.parse::<f64>().unwrap_or(f64::MAX)));
    }
    if looks_like_yaml_float(digits)
        && let Ok(value) = text.parse::<f64>()
    {
        return NodeValue::Float(value);
    }
    NodeValue::String(text.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without a regex engine.
fn looks_like_yaml_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match fraction {
        None => !whole.is_empty() && digits_only(whole),
        Some(fraction) => {
            digits_only(whole)
                && digits_only(fraction)
                && !(whole.is_empty() && fraction.is_empty())
        }
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !exponent.is_empty() && digits_only(exponent)
    });
    mantissa_ok && exponent_ok && (fraction.is_some() || exponent.is_some())
}

/// Maps a byte offset inside a scalar's decoded text to a byte offset in the file, so a
/// CEL error can be placed on the exact character inside the YAML value.
///
/// Decoding (quotes, escapes, block indentation, line folding) means the two texts do
/// not line up one to one. We walk both together: each decoded character is matched to
/// its next occurrence in the raw text, skipping only what decoding removes (quotes,
/// backslashes, indentation and line breaks). The walk is linear and never fails; at
/// worst a position lands on the nearest character that could be matched.
pub fn scalar_offset_to_file(
    source: &str,
    span: Span,
    form: ScalarForm,
    decoded: &str,
    decoded_offset: usize,
) -> usize {
    let Some(raw) = source.get(span.start..span.end) else {
        return span.start;
    };
    // Block scalars start with a header line (`|`, `>-`, ...): content begins after it.
    let mut raw_position = match form {
        ScalarForm::Literal | ScalarForm::Folded => raw.find('\n').map_or(0, |at| at + 1),
        ScalarForm::SingleQuoted | ScalarForm::DoubleQuoted => 1.min(raw.len()),
        ScalarForm::Plain => 0,
    };
    for (offset, decoded_char) in decoded.char_indices() {
        let Some(tail) = raw.get(raw_position..) else {
            break;
        };
        let mut matched = None;
        for (raw_offset, raw_char) in tail.char_indices() {
            if raw_char == decoded_char {
                matched = Some(raw_offset);
                break;
            }
            if !matches!(raw_char, ' ' | '\t' | '\n' | '\r' | '\\' | '"' | '\'') {
                break;
            }
        }
        let Some(raw_offset) = matched else {
            continue;
        };
        if offset >= decoded_offset {
            return span.start + raw_position + raw_offset;
        }
        raw_position += raw_offset + decoded_char.len_utf8();
    }
    span.start + raw_position.min(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<YamlDocument>, Vec<Diagnostic>) {
        parse_yaml(FileId(0), text, &SyntaxLimits::default())
    }

    fn codes(diagnostics: &[Diagnostic]) -> Vec<&'static str> {
        diagnostics.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn spans_are_byte_offsets_even_after_non_ascii_text() {
        let text = "description: \"héllo wörld ✓\"\nname: hr_agent\n";
        let (documents, diagnostics) = parse(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let (_, name) = documents[0].root.get("name").unwrap();
        assert_eq!(&text[name.span.range()], "hr_agent");
    }

    #[test]
    fn plain_scalars_resolve_by_the_core_schema_and_quoted_ones_stay_strings() {
        let (documents, _) = parse("a: 1\nb: '1'\nc: true\nd: yes\ne: ~\nf: 1.5\ng: 0x1F\n");
        let root = &documents[0].root;
        let value = |key| root.get(key).unwrap().1.value.clone();
        assert_eq!(value("a"), NodeValue::Int(1));
        assert_eq!(value("b"), NodeValue::String("1".into()));
        assert_eq!(value("c"), NodeValue::Bool(true));
        assert_eq!(value("d"), NodeValue::String("yes".into()));
        assert_eq!(value("e"), NodeValue::Null);
        assert_eq!(value("f"), NodeValue::Float(1.5));
        assert_eq!(value("g"), NodeValue::Int(31));
    }

    #[test]
    fn multiple_documents_and_json_are_read() {
        let (documents, diagnostics) = parse("a: 1\n---\nb: 2\n");
        assert!(diagnostics.is_empty());
        assert_eq!(documents.len(), 2);
        let (documents, diagnostics) = parse("{\"kind\": \"x\", \"list\": [1, 2]}");
        assert!(diagnostics.is_empty());
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_places() {
        let (_, diagnostics) = parse("name: a\nname: b\n");
        assert_eq!(codes(&diagnostics), ["E0004"]);
        assert_eq!(diagnostics[0].labels.len(), 2);
    }

    /// Issue 23, item 7: repeated keys are found in linear time. A flat mapping of
    /// 120,000 keys (13 MB; 222 s when every key was compared with every earlier one)
    /// is read in well under a second in a release build and a few in a debug one; a
    /// repeat at its end is still found, with both places.
    #[test]
    fn duplicate_key_detection_is_linear() {
        let mut text = String::with_capacity(120_000 * 16);
        for index in 0..120_000 {
            text.push_str(&format!("key_{index:08}: {index}\n"));
        }
        text.push_str("key_00000007: again\n");
        let started = std::time::Instant::now();
        let (documents, diagnostics) = parse(&text);
        let took = started.elapsed();
        assert_eq!(codes(&diagnostics), ["E0004"]);
        assert_eq!(diagnostics[0].labels.len(), 2);
        assert_eq!(documents.len(), 1);
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    }

    #[test]
    fn alias_bombs_hit_the_node_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let previous = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let (_, diagnostics) = parse(&text);
        assert_eq!(codes(&diagnostics), ["E0003"]);
    }

    #[test]
    fn deep_nesting_hits_the_depth_budget_without_overflowing_the_stack() {
        for text in [
            "[".repeat(20_000),
            "{a: ".repeat(20_000),
            (0..20_000)
                .map(|depth| format!("{}- \n", " ".repeat(depth * 2)))
                .collect(),
        ] {
            let (_, diagnostics) = parse(&text);
            assert!(
                codes(&diagnostics).contains(&"E0003") || codes(&diagnostics).contains(&"E0002"),
                "{diagnostics:?}"
            );
        }
    }

    /// A NUL byte is named as what it is, never taken for a tab.
    #[test]
    fn nul_byte_help_names_the_nul_byte() {
        for text in ["a: b\0c\n", "\0", "a:\n  - \0\n", "kind: \"x\0\"\n"] {
            let (_, diagnostics) = parse(text);
            assert_eq!(codes(&diagnostics), ["E0002"], "{text:?}");
            assert!(diagnostics[0].message.contains("NUL"), "{text:?}");
            let help = format!("{:?}", diagnostics[0]);
            assert!(!help.contains("tabs"), "{help}");
            assert!(help.contains("remove the NUL byte"), "{help}");
        }
        assert!(yaml_syntax_help("found a tab character").contains("tabs"));
        assert!(!yaml_syntax_help("did not find expected key (stable)").contains("tabs"));
    }

    #[test]
    fn tabs_and_broken_syntax_are_located_syntax_errors() {
        let (_, diagnostics) = parse("a:\n\t- b\n");
        assert_eq!(codes(&diagnostics), ["E0002"]);
        let (_, diagnostics) = parse("a: [1, 2\n");
        assert_eq!(codes(&diagnostics), ["E0002"]);
    }

    #[test]
    fn offsets_inside_scalars_map_back_into_the_file() {
        for (text, needle) in [
            ("x: size(recent.foo) > 1\n", "foo"),
            ("x: 'a == ''q'' && foo'\n", "foo"),
            ("x: \"a == \\\"q\\\" && foo\"\n", "foo"),
            ("x: |\n  a &&\n  foo\n", "foo"),
            ("x: >-\n  a &&\n  foo\n", "foo"),
            ("x: a &&\n  foo\n", "foo"),
        ] {
            let (documents, diagnostics) = parse(text);
            assert!(diagnostics.is_empty(), "{text}: {diagnostics:?}");
            let (_, node) = documents[0].root.get("x").unwrap();
            let decoded = node.scalar_text().unwrap();
            let decoded_offset = decoded.find(needle).unwrap();
            let form = node.scalar.as_ref().unwrap().0;
            let file_offset = scalar_offset_to_file(text, node.span, form, decoded, decoded_offset);
            assert_eq!(
                &text[file_offset..file_offset + needle.len()],
                needle,
                "{text}"
            );
        }
    }

    #[test]
    fn looks_like_yaml_float_follows_the_core_schema() {
        for yes in ["1.5", ".5", "1.", "1e5", "1.5E-3"] {
            assert!(looks_like_yaml_float(yes), "{yes}");
        }
        for no in ["1", ".", "e5", "1.5.5", "1e", "abc"] {
            assert!(!looks_like_yaml_float(no), "{no}");
        }
    }
}
