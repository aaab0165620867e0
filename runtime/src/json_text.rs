//! JSON text for the audit log, written straight into a byte buffer.
//!
//! Every enforced call appends its input to the audit trail, so writing a JSON value is
//! on the path of every tool call. `serde_json::to_writer` reaches the buffer through
//! `io::Write` and its formatter one token at a time, and escapes strings byte by byte;
//! here a string with nothing to escape (nearly every one) is found so eight bytes at a
//! time and copied whole. The text is exactly what `serde_json` writes for the same
//! value, byte for byte (a test holds the two together), so that the log reads the
//! same whichever wrote it.

use std::io::Write as _;

use serde_json::Value;

/// How deep a value is written here before the rest of it is left to `serde_json`:
/// deeper than anything `serde_json` parses by default (128 levels), so that values
/// from the model are always written here, while a deeper value built in code is
/// written as it was before, by `serde_json`.
const MOST_NESTED_LEVELS: usize = 128;

/// Appends `value` as compact JSON text.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    write_nested(out, value, 0)
}

fn write_nested(out: &mut Vec<u8>, value: &Value, depth: usize) -> serde_json::Result<()> {
    if depth >= MOST_NESTED_LEVELS {
        return serde_json::to_writer(&mut *out, value);
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // A number's `Display` is its JSON text (itoa for integers, ryu's shortest
        // form for floats, which are always finite in a `serde_json::Number`).
        Value::Number(number) => write!(out, "{number}").map_err(serde_json::Error::io)?,
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_nested(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (index, (key, item)) in fields.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_nested(out, item, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it: `"` and `\`,
/// and the control characters below U+0020 (the five with short escapes as `\b`, `\t`,
/// `\n`, `\f`, `\r`, the others as `\u00XX`). Everything else, U+007F and non-ASCII
/// text included, is copied as it is.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut copied = 0;
    let mut start = 0;
    while let Some(offset) = first_to_escape(&bytes[start..]) {
        let at = start + offset;
        out.extend_from_slice(&bytes[copied..at]);
        let byte = bytes[at];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(DIGITS[usize::from(byte >> 4)]);
                out.push(DIGITS[usize::from(byte & 0x0f)]);
            }
        }
        copied = at + 1;
        start = copied;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Whether a byte must be escaped in a JSON string.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The offset of the first byte of `bytes` that must be escaped. Eight bytes are
/// tested at a time: with `ones` holding 0x01 in every byte, `(word - ones * n) &
/// !word & 0x80…` has a byte's high bit set for some byte below `n` (`n` ≤ 0x80) if
/// and only if `word` has one, and a byte equal to `c` is a zero byte of `word ^ ones *
/// c`. A word that has one is searched byte by byte (and were the test ever wrong about
/// a word, the search would go on past it rather than miss a byte further on).
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    let any_below =
        |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH_BITS != 0;
    let (words, rest) = bytes.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        let value = u64::from_ne_bytes(*word);
        if (any_below(value, 0x20)
            || any_below(value ^ (ONES * u64::from(b'"')), 1)
            || any_below(value ^ (ONES * u64::from(b'\\')), 1))
            && let Some(offset) = word.iter().position(|byte| needs_escape(*byte))
        {
            return Some(index * 8 + offset);
        }
    }
    rest.iter()
        .position(|byte| needs_escape(*byte))
        .map(|offset| words.len() * 8 + offset)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn written(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, value).unwrap();
        out
    }

    /// Any string: every character below U+0080 is likely, the ones that need escaping
    /// among them, and some beyond.
    fn any_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => (0u32..0x80).prop_map(|code| char::from_u32(code).unwrap_or('a')),
                1 => any::<char>(),
            ],
            0..40,
        )
        .prop_map(|characters| characters.into_iter().collect())
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any_text(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The text is `serde_json`'s, byte for byte.
        #[test]
        fn values_are_written_as_serde_json_writes_them(value in any_value()) {
            prop_assert_eq!(written(&value), serde_json::to_vec(&value).unwrap());
        }

        /// Strings at every length and offset of the eight-byte words, with a byte to
        /// escape anywhere in them, come out as `serde_json` writes them.
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in any_text()) {
            let mut out = Vec::new();
            write_string(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_vec(&text).unwrap());
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_in_every_place() {
        for length in 0..20 {
            for place in 0..length {
                for special in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut bytes = vec![b'a'; length];
                    bytes[place] = special;
                    assert_eq!(first_to_escape(&bytes), Some(place), "{bytes:?}");
                }
                // Bytes next to the ones that need escaping do not.
                for plain in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0xc3] {
                    let mut bytes = vec![b'a'; length];
                    bytes[place] = plain;
                    assert_eq!(first_to_escape(&bytes), None, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn a_value_nested_deeper_than_the_limit_is_still_written_whole() {
        let mut value = json!("leaf \"quoted\"");
        for level in 0..MOST_NESTED_LEVELS + 10 {
            value = if level % 2 == 0 {
                json!([value])
            } else {
                json!({ "k": value })
            };
        }
        assert_eq!(written(&value), serde_json::to_vec(&value).unwrap());
    }
}
