//! A reader for Python literals (what `repr()` writes for dicts, lists, tuples, strings,
//! numbers, `True`, `False` and `None`), to JSON.
//!
//! AgentDojo exports are JSON, but a field that the exporter stringified with `repr()`
//! (a `'True'` where a boolean belongs, a trajectory as one single-quoted string) is
//! Python, not JSON. This reads exactly that subset and refuses everything else (sets,
//! bytes, `datetime.datetime(...)`, `nan`, triple quotes) with an error that gives the
//! byte offset. Nesting is bounded by [`MAX_DEPTH`], checked before each descent, so no
//! input can exhaust the stack; nothing here panics.

use serde_json::{Map, Value};

/// The deepest nesting of dicts, lists and tuples read; deeper input is an error.
pub const MAX_DEPTH: usize = 64;

/// Reads one Python literal (surrounding whitespace allowed) as JSON. Tuples become
/// arrays; dict keys must be strings or integers (integers become their decimal text).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader { text, at: 0 };
    reader.skip_whitespace();
    let value = reader.value(0)?;
    reader.skip_whitespace();
    if reader.at < text.len() {
        return Err(reader.error("unexpected text after the value"));
    }
    Ok(value)
}

struct Reader<'a> {
    text: &'a str,
    /// Byte offset of the next character; always on a character boundary.
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("Python literal, byte {}: {what}", self.at)
    }

    fn peek(&self) -> Option<char> {
        self.text
            .get(self.at..)
            .and_then(|rest| rest.chars().next())
    }

    fn rest(&self) -> &str {
        self.text.get(self.at..).unwrap_or_default()
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.peek()?;
        self.at += next.len_utf8();
        Some(next)
    }

    fn skip_whitespace(&mut self) {
        while let Some(next) = self.peek() {
            if next.is_whitespace() {
                self.at += next.len_utf8();
            } else if next == '\\' && self.rest().starts_with("\\\n") {
                // An explicit line join between tokens.
                self.at += 2;
            } else {
                break;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        match self.peek() {
            None => Err(self.error("expected a value, found the end of the text")),
            Some('{') => self.dict(depth + 1),
            Some('[') => self.sequence(']', depth + 1),
            Some('(') => self.sequence(')', depth + 1),
            Some('\'' | '"') => self.strings(),
            Some(next) if next.is_ascii_digit() || matches!(next, '-' | '+' | '.') => self.number(),
            Some(next) if next.is_alphabetic() || next == '_' => self.name(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            Err(self.error(&format!("nested more than {MAX_DEPTH} levels deep")))
        } else {
            Ok(())
        }
    }

    /// `[a, b]` or `(a, b)`; `(a)` is `a` itself, as in Python.
    fn sequence(&mut self, close: char, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.bump();
        let mut items = Vec::new();
        let mut trailing_comma = false;
        loop {
            self.skip_whitespace();
            if self.peek() == Some(close) {
                self.bump();
                break;
            }
            if !items.is_empty() && !trailing_comma {
                return Err(self.error(&format!("expected `,` or `{close}`")));
            }
            items.push(self.value(depth)?);
            self.skip_whitespace();
            trailing_comma = self.peek() == Some(',');
            if trailing_comma {
                self.bump();
            }
        }
        if close == ')' && items.len() == 1 && !trailing_comma {
            return Ok(items.pop().unwrap_or(Value::Null));
        }
        Ok(Value::Array(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.bump();
        let mut entries = Map::new();
        let mut trailing_comma = false;
        loop {
            self.skip_whitespace();
            if self.peek() == Some('}') {
                self.bump();
                return Ok(Value::Object(entries));
            }
            if !entries.is_empty() && !trailing_comma {
                return Err(self.error("expected `,` or `}`"));
            }
            let key_at = self.at;
            let key = match self.value(depth)? {
                Value::String(key) => key,
                Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
                _ => {
                    self.at = key_at;
                    return Err(self.error("a dict key must be a string or an integer"));
                }
            };
            self.skip_whitespace();
            if self.peek() != Some(':') {
                return Err(self.error("expected `:` (sets are not supported)"));
            }
            self.bump();
            self.skip_whitespace();
            let value = self.value(depth)?;
            // A repeated key keeps the last value, as Python does.
            entries.insert(key, value);
            self.skip_whitespace();
            trailing_comma = self.peek() == Some(',');
            if trailing_comma {
                self.bump();
            }
        }
    }

    /// One string literal, or several side by side (`'a' "b"` is `'ab'`, as in Python).
    fn strings(&mut self) -> Result<Value, String> {
        let mut text = self.string()?;
        loop {
            let before = self.at;
            self.skip_whitespace();
            if matches!(self.peek(), Some('\'' | '"')) {
                text.push_str(&self.string()?);
            } else {
                self.at = before;
                return Ok(Value::String(text));
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.at;
        let Some(quote) = self.bump() else {
            return Err(self.error("expected a string"));
        };
        let triple: String = std::iter::repeat_n(quote, 3).collect();
        if self
            .text
            .get(start..)
            .is_some_and(|rest| rest.starts_with(&triple))
        {
            self.at = start;
            return Err(self.error("triple-quoted strings are not supported"));
        }
        let mut out = String::new();
        loop {
            let Some(next) = self.bump() else {
                self.at = start;
                return Err(self.error("unterminated string"));
            };
            match next {
                c if c == quote => return Ok(out),
                '\n' | '\r' => {
                    self.at = start;
                    return Err(self.error("unterminated string (a line break inside it)"));
                }
                '\\' => self.escape(&mut out)?,
                c => out.push(c),
            }
        }
    }

    /// After a backslash inside a string: Python's escapes. An unknown escape keeps its
    /// backslash, as Python does.
    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let Some(next) = self.bump() else {
            return Err(self.error("unterminated string (it ends in a backslash)"));
        };
        match next {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'a' => out.push('\u{07}'),
            'b' => out.push('\u{08}'),
            'f' => out.push('\u{0C}'),
            'v' => out.push('\u{0B}'),
            '0'..='7' => {
                let mut code = next.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|digit| digit.to_digit(8)) {
                        Some(digit) => {
                            code = code * 8 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                out.push(self.code_point(code)?);
            }
            'x' => out.push(self.hex_escape(2)?),
            'u' => out.push(self.hex_escape(4)?),
            'U' => out.push(self.hex_escape(8)?),
            'N' => return Err(self.error("named escapes (`\\N{...}`) are not supported")),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, String> {
        let mut code: u32 = 0;
        for _ in 0..digits {
            let Some(digit) = self.peek().and_then(|digit| digit.to_digit(16)) else {
                return Err(self.error(&format!("an escape needs {digits} hex digits")));
            };
            self.bump();
            code = code.saturating_mul(16).saturating_add(digit);
        }
        self.code_point(code)
    }

    fn code_point(&self, code: u32) -> Result<char, String> {
        char::from_u32(code)
            .ok_or_else(|| self.error(&format!("escape U+{code:X} is not a character")))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        while let Some(next) = self.peek() {
            if next.is_ascii_alphanumeric() || matches!(next, '.' | '+' | '-' | '_') {
                self.bump();
            } else {
                break;
            }
        }
        let text = self.text.get(start..self.at).unwrap_or_default();
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        let is_integer = !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit());
        if is_integer {
            if let Ok(value) = text.parse::<i64>() {
                return Ok(Value::from(value));
            }
            if let Ok(value) = text.parse::<u64>() {
                return Ok(Value::from(value));
            }
            self.at = start;
            return Err(self.error("integer out of range"));
        }
        let is_float = digits.bytes().any(|byte| byte.is_ascii_digit())
            && digits.bytes().all(|byte| {
                byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'-' | b'+')
            });
        let parsed = if is_float {
            text.parse::<f64>().ok()
        } else {
            None
        };
        match parsed.and_then(serde_json::Number::from_f64) {
            Some(number) => Ok(Value::Number(number)),
            None => {
                self.at = start;
                Err(self.error("not a number JSON can hold"))
            }
        }
    }

    fn name(&mut self) -> Result<Value, String> {
        let start = self.at;
        while let Some(next) = self.peek() {
            if next.is_alphanumeric() || next == '_' {
                self.bump();
            } else {
                break;
            }
        }
        match self.text.get(start..self.at).unwrap_or_default() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::Null),
            _ => {
                self.at = start;
                Err(self.error(
                    "only True, False and None are read (not other names, calls, bytes or prefixed strings)",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_repr_writes() {
        assert_eq!(parse("True").unwrap(), json!(true));
        assert_eq!(parse(" False ").unwrap(), json!(false));
        assert_eq!(parse("None").unwrap(), json!(null));
        assert_eq!(parse("-12").unwrap(), json!(-12));
        assert_eq!(parse("18446744073709551615").unwrap(), json!(u64::MAX));
        assert_eq!(parse("2.5e-3").unwrap(), json!(0.0025));
        assert_eq!(parse("'it''s'").unwrap(), json!("its"));
        assert_eq!(
            parse(r#"{'function': 'send_email', 'args': {'recipients': ['a@x.io'], 'cc': None}, 'n': (1, 2.0), 'one': (3,), 'paren': (4), 1: "q'uote", 'empty': {}, 'list': [],}"#)
                .unwrap(),
            json!({"function": "send_email", "args": {"recipients": ["a@x.io"], "cc": null},
                   "n": [1, 2.0], "one": [3], "paren": 4, "1": "q'uote", "empty": {}, "list": []})
        );
    }

    #[test]
    fn reads_python_escapes() {
        assert_eq!(
            parse(r"'a\nb\tc\\d\'e\x41\u00e9\U0001F600\101\0'").unwrap(),
            json!("a\nb\tc\\d'eAé😀A\u{0}")
        );
        // An unknown escape keeps its backslash; a backslash-newline joins lines.
        assert_eq!(parse("'\\d\\\nx'").unwrap(), json!("\\dx"));
        assert_eq!(parse("'é ü 日本'").unwrap(), json!("é ü 日本"));
    }

    #[test]
    fn a_repeated_key_keeps_the_last_value() {
        assert_eq!(parse("{'a': 1, 'a': 2}").unwrap(), json!({"a": 2}));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "   ",
            "'unterminated",
            "\"unterminated",
            "'ends in a backslash\\",
            "'line\nbreak'",
            "'''triple'''",
            "[1, 2",
            "[1 2]",
            "{'a' 1}",
            "{'a': 1",
            "{'a': 1 'b': 2}",
            "{1, 2}",
            "{[1]: 2}",
            "{1.5: 2}",
            "datetime.datetime(2024, 5, 15)",
            "b'bytes'",
            "nan",
            "inf",
            "1e999",
            "99999999999999999999999",
            "'\\x4'",
            "'\\ud800'",
            "'\\U00110000'",
            "'\\N{BULLET}'",
            "True False",
            "@",
            "]",
            "-",
            "1.2.3",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&fine).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).unwrap_err().contains("deep"));
        // Far deeper than any stack could take, unterminated, in each kind of bracket.
        for open in ["[", "(", "{'k': "] {
            let hostile = open.repeat(1_000_000);
            assert!(parse(&hostile).unwrap_err().contains("deep"));
        }
    }

    #[test]
    fn errors_give_the_offset() {
        assert_eq!(
            parse("[1, 'abc").unwrap_err(),
            "Python literal, byte 4: unterminated string"
        );
    }
}
