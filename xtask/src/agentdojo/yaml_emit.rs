//! JSON values written as block YAML, for the generated tool documents.
//!
//! Small containers of simple scalars go on one line in flow style (`{type: string}`),
//! multi-line strings become literal blocks (`|-`), and any string a YAML reader could
//! take for something else (`true`, `null`, `1.5`, `a: b`, a leading `-`) is written
//! double-quoted. The caller parses the result back with the project's own YAML reader
//! and compares it with the value written, so a mistake here is an error, never a
//! silently different document.

use serde_json::Value;

/// The longest line a flow-style container may make.
const FLOW_WIDTH: usize = 96;

/// `value` (an object) as the top level of one YAML document, each key at column 0.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(entries) if !entries.is_empty() => {
            for (key, field) in entries {
                out.push_str(&key_text(key));
                out.push(':');
                field_value(field, 0, &mut out);
            }
        }
        other => {
            out.push_str(&flow(other).unwrap_or_else(|| quoted(&other.to_string())));
            out.push('\n');
        }
    }
    out
}

/// After `key:`, the value: a scalar on the same line (a multi-line string as a literal
/// block), a container on the same line in flow style when it is short, else on the
/// lines below, indented past `indent` (the key's column).
fn field_value(value: &Value, indent: usize, out: &mut String) {
    let line = match value {
        Value::String(text) => {
            if let Some(block) = literal_block(text, indent + 2) {
                out.push(' ');
                out.push_str(&block);
                return;
            }
            Some(scalar_text(text, false))
        }
        Value::Array(_) | Value::Object(_) => {
            flow(value).filter(|line| indent + line.len() < FLOW_WIDTH)
        }
        scalar => flow(scalar),
    };
    match line {
        Some(line) => {
            out.push(' ');
            out.push_str(&line);
            out.push('\n');
        }
        None => {
            out.push('\n');
            block(value, indent + 2, out);
        }
    }
}

/// A non-empty container in block style, its entries at column `indent`.
fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(entries) => {
            for (key, field) in entries {
                out.push_str(&pad);
                out.push_str(&key_text(key));
                out.push(':');
                field_value(field, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                sequence_item(item, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&flow(scalar).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// After `- ` at column `indent`: an item of a block sequence.
fn sequence_item(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Object(entries) if !entries.is_empty() => {
            let too_long = flow(item).is_none_or(|line| indent + 2 + line.len() >= FLOW_WIDTH);
            if !too_long {
                field_value(item, indent, out);
                return;
            }
            // `- key: value` with the item's other keys aligned under the first.
            let mut first = true;
            let pad = " ".repeat(indent + 2);
            for (key, field) in entries {
                if first {
                    out.push(' ');
                    first = false;
                } else {
                    out.push_str(&pad);
                }
                out.push_str(&key_text(key));
                out.push(':');
                field_value(field, indent + 2, out);
            }
        }
        other => field_value(other, indent, out),
    }
}

/// `value` on one line in flow style, if it has no multi-line string.
fn flow(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => {
            if text.contains('\n') {
                return None;
            }
            scalar_text(text, true)
        }
        Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(flow).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Object(entries) => {
            let entries: Option<Vec<String>> = entries
                .iter()
                .map(|(key, field)| Some(format!("{}: {}", key_text(key), flow(field)?)))
                .collect();
            format!("{{{}}}", entries?.join(", "))
        }
    })
}

fn key_text(key: &str) -> String {
    scalar_text(key, true)
}

/// A string as a plain scalar when that is unambiguous (in flow context when
/// `in_flow`), else double-quoted.
fn scalar_text(text: &str, in_flow: bool) -> String {
    if is_plain_safe(text, in_flow) {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// Printable ASCII starting with a letter, `_` or `$` and not ending in a space, with no
/// `#`, quote, backslash or flow indicator (`,[]{}`), a `:` only inside a word and only
/// outside flow context, and no word some YAML reader resolves to a boolean or null.
fn is_plain_safe(text: &str, in_flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let bytes = text.as_bytes();
    let colon_ok = |at: usize| {
        !in_flow
            && bytes
                .get(at + 1)
                .is_some_and(|next| !next.is_ascii_whitespace())
    };
    (first.is_ascii_alphabetic() || first == '_' || first == '$')
        && !text.ends_with(' ')
        && !text.contains("  ")
        && text.char_indices().all(|(at, c)| match c {
            ':' => colon_ok(at),
            '#' | '"' | '\\' | ',' | '[' | ']' | '{' | '}' => false,
            c => c == ' ' || c.is_ascii_graphic(),
        })
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// YAML's double-quoted form: `\\`, `\"`, the usual control escapes, and `\u`/`\U` for
/// anything YAML does not allow unescaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML 1.2's printable characters, less the byte order mark and the characters older
/// readers take for line breaks (NEL, LS, PS).
fn is_printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && !matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// A multi-line string as a literal block (`|-`, or `|` when it ends in one line break),
/// its lines at column `indent`; `None` when a literal block cannot hold it exactly.
fn literal_block(text: &str, indent: usize) -> Option<String> {
    if !text.contains('\n') || text.ends_with("\n\n") || text.starts_with([' ', '\n']) {
        return None;
    }
    if text.chars().any(|c| c != '\n' && !is_printable(c)) {
        return None;
    }
    let (body, header) = match text.strip_suffix('\n') {
        Some(body) => (body, "|"),
        None => (text, "|-"),
    };
    let pad = " ".repeat(indent);
    let mut out = format!("{header}\n");
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentc_compiler::span::FileId;
    use agentc_compiler::syntax::{SyntaxLimits, parse_yaml};
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let text = document(value);
        let (documents, diagnostics) = parse_yaml(FileId(0), &text, &SyntaxLimits::default());
        assert!(diagnostics.is_empty(), "{text}\n{diagnostics:?}");
        assert_eq!(documents.len(), 1, "{text}");
        documents[0].root.to_json()
    }

    #[test]
    fn awkward_strings_survive_a_round_trip() {
        let value = json!({
            "kind": "openagentspec:v1/tool",
            "plain": "send_email",
            "words": ["Plain words, it's fine (really)!", "a:b", "a:", "a: b", "a :b", "x #y", "x#y", "two  spaces", "`tick`", "true", "True", "null", "~", "yes", "1.5", "0x1F", "-", "- a", "a: b", "#c", "", " lead", "trail ", "'q'", "\"dq\"", "back\\slash"],
            "multi": "line one\n  indented\n\nafter a blank line",
            "multi_end": "ends\nwith a break\n",
            "multi_ends_twice": "ends\n\n",
            "multi_lead": " leading\nspace",
            "controls": "bell\u{7} del\u{7f} nel\u{85} bom\u{feff} ls\u{2028} tab\there",
            "unicode": "é 日本 😀",
            "nested": {"a": [{"b": {"c": [1, 2.5, null, false]}}], "empty": {}, "none": []},
            "list_of_lists": [[1, [2]], []],
            "long": vec!["a long string that will not fit on one flow line"; 4],
            "long_objects": [{"name": "x", "description": "a description long enough to push the flow form past the width"}, {"k": 1}],
        });
        assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn short_schemas_stay_on_one_line() {
        let text = document(&json!({"output": {"type": "string", "x-agentc-trust": "trusted"}}));
        assert_eq!(text, "output: {type: string, x-agentc-trust: trusted}\n");
        let text =
            document(&json!({"kind": "openagentspec:v1/tool", "binding": {"function": "a::b"}}));
        assert_eq!(
            text,
            "kind: openagentspec:v1/tool\nbinding: {function: \"a::b\"}\n"
        );
    }
}
