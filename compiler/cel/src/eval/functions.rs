//! The built-in functions: the prepared dispatch, the general lookup by name, the type
//! conversions, and the string functions.

use std::sync::Arc;

use crate::time::{self, Duration, NANOS_PER_SECOND, Timestamp};
use crate::value::Value;

use super::ops::timestamp_overflow;
use super::prepare::{Call, Dispatch};
use super::{EvalError, EvalResult, MAX_LIST_LENGTH, MAX_VALUE_BYTES, compile_regex, no_overload};

/// Calls a function with its target (for a member call) and arguments, through the
/// dispatch chosen when the program was prepared.
pub(super) fn apply(call: &Call, all: &[&Value]) -> EvalResult {
    match (call.dispatch, all) {
        (Dispatch::Size, [Value::List(elements)]) => Ok(Value::Int(elements.len() as i64)),
        (Dispatch::Size, [Value::Map(map)]) => Ok(Value::Int(map.len() as i64)),
        (Dispatch::Contains, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.contains(&**part)))
        }
        (Dispatch::StartsWith, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.starts_with(&**part)))
        }
        (Dispatch::EndsWith, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.ends_with(&**part)))
        }
        (Dispatch::Matches, [Value::String(text), Value::String(_)]) => match &call.regex {
            Some(Ok(regex)) => Ok(Value::Bool(regex.is_match(text))),
            Some(Err(error)) => Err(error.clone()),
            None => call_function(&call.function, call.has_target, all),
        },
        _ => call_function(&call.function, call.has_target, all),
    }
}

fn check_string_size(text: String) -> EvalResult {
    if text.len() > MAX_VALUE_BYTES {
        return Err(EvalError::new("string result is too large"));
    }
    Ok(Value::String(Arc::from(text)))
}

/// Formats a double the way CEL's reference implementation does (Go's `%g` with the
/// shortest representation): plain notation for exponents in [-4, 21), else scientific.
pub(crate) fn format_double(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_string();
    }
    if number.is_infinite() {
        return if number > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if number == 0.0 {
        return if number.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if number < 0.0 { "-" } else { "" };
    if !(-4..21).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.abs()
        );
    }
    let digit_count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let point = exponent + 1;
    let text = if point <= 0 {
        format!(
            "0.{}{digits}",
            "0".repeat(usize::try_from(-point).unwrap_or(0))
        )
    } else if point >= digit_count {
        format!(
            "{digits}{}",
            "0".repeat(usize::try_from(point - digit_count).unwrap_or(0))
        )
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        format!("{whole}.{fraction}")
    };
    format!("{sign}{text}")
}

/// Calls a function by name; `all` is the target (for a member call) followed by the
/// arguments.
fn call_function(function: &str, has_target: bool, all: &[&Value]) -> EvalResult {
    let unsupported = || no_overload(function, all);
    match (function, all) {
        ("size", [value]) => match value {
            Value::String(text) => Ok(Value::Int(text.chars().count() as i64)),
            Value::Bytes(bytes) => Ok(Value::Int(bytes.len() as i64)),
            Value::List(elements) => Ok(Value::Int(elements.len() as i64)),
            Value::Map(map) => Ok(Value::Int(map.len() as i64)),
            _ => Err(unsupported()),
        },
        ("contains", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.contains(&**part)))
        }
        ("startsWith", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.starts_with(&**part)))
        }
        ("endsWith", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.ends_with(&**part)))
        }
        ("matches", [Value::String(text), Value::String(pattern)]) => {
            Ok(Value::Bool(compile_regex(pattern)?.is_match(text)))
        }
        ("lowerAscii", [Value::String(text)]) => {
            Ok(Value::String(Arc::from(text.to_ascii_lowercase())))
        }
        ("upperAscii", [Value::String(text)]) => {
            Ok(Value::String(Arc::from(text.to_ascii_uppercase())))
        }
        ("trim", [Value::String(text)]) => Ok(Value::string(text.trim())),
        ("replace", [Value::String(text), Value::String(old), Value::String(new)]) => {
            replace(text, old, new, -1)
        }
        (
            "replace",
            [
                Value::String(text),
                Value::String(old),
                Value::String(new),
                Value::Int(limit),
            ],
        ) => replace(text, old, new, *limit),
        ("split", [Value::String(text), Value::String(separator)]) => split(text, separator, -1),
        (
            "split",
            [
                Value::String(text),
                Value::String(separator),
                Value::Int(limit),
            ],
        ) => split(text, separator, *limit),
        ("sum", [Value::List(elements)]) if has_target => sum(elements),
        ("join", [Value::List(elements)]) => join(elements, ""),
        ("join", [Value::List(elements), Value::String(separator)]) => join(elements, separator),
        ("indexOf", [Value::String(text), Value::String(part)]) => index_of(text, part, 0, false),
        ("indexOf", [Value::String(text), Value::String(part), Value::Int(start)]) => {
            index_of(text, part, *start, false)
        }
        ("lastIndexOf", [Value::String(text), Value::String(part)]) => {
            let length = text.chars().count() as i64;
            index_of(text, part, length, true)
        }
        ("lastIndexOf", [Value::String(text), Value::String(part), Value::Int(start)]) => {
            index_of(text, part, *start, true)
        }
        ("substring", [Value::String(text), Value::Int(start)]) => {
            let length = text.chars().count() as i64;
            substring(text, *start, length)
        }
        ("substring", [Value::String(text), Value::Int(start), Value::Int(end)]) => {
            substring(text, *start, *end)
        }
        ("charAt", [Value::String(text), Value::Int(index)]) => {
            let length = text.chars().count() as i64;
            if *index < 0 || *index > length {
                return Err(EvalError::new("index out of range"));
            }
            Ok(text
                .chars()
                .nth(usize::try_from(*index).unwrap_or(usize::MAX))
                .map(|character| Value::String(Arc::from(character.to_string())))
                .unwrap_or_else(|| Value::string("")))
        }
        (
            "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
            | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            [Value::Timestamp(timestamp), rest @ ..],
        ) if has_target => {
            let offset = match rest {
                [] => 0,
                [Value::String(zone)] => time::parse_time_zone_offset(zone).ok_or_else(|| {
                    EvalError::new(
                        "unsupported time zone (use UTC or a fixed offset such as +01:00)",
                    )
                })?,
                _ => return Err(unsupported()),
            };
            let civil = timestamp.civil(offset);
            let result = match function {
                "getFullYear" => civil.year,
                "getMonth" => civil.month - 1,
                "getDate" => civil.day,
                "getDayOfMonth" => civil.day - 1,
                "getDayOfWeek" => civil.day_of_week,
                "getDayOfYear" => civil.day_of_year,
                "getHours" => civil.hour,
                "getMinutes" => civil.minute,
                "getSeconds" => civil.second,
                _ => civil.nanos / 1_000_000,
            };
            Ok(Value::Int(i64::try_from(result).unwrap_or(0)))
        }
        (
            "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            [Value::Duration(duration)],
        ) if has_target => {
            let nanos = duration.nanos();
            let result = match function {
                "getHours" => nanos / (3600 * NANOS_PER_SECOND),
                "getMinutes" => nanos / (60 * NANOS_PER_SECOND),
                "getSeconds" => nanos / NANOS_PER_SECOND,
                _ => (nanos % NANOS_PER_SECOND) / 1_000_000,
            };
            Ok(Value::Int(i64::try_from(result).unwrap_or(0)))
        }
        (_, [value]) if !has_target => convert(function, value),
        _ => {
            let known = matches!(
                function,
                "size"
                    | "sum"
                    | "contains"
                    | "startsWith"
                    | "endsWith"
                    | "matches"
                    | "lowerAscii"
                    | "upperAscii"
                    | "trim"
                    | "replace"
                    | "split"
                    | "join"
                    | "indexOf"
                    | "lastIndexOf"
                    | "substring"
                    | "charAt"
                    | "getFullYear"
                    | "getMonth"
                    | "getDate"
                    | "getDayOfMonth"
                    | "getDayOfWeek"
                    | "getDayOfYear"
                    | "getHours"
                    | "getMinutes"
                    | "getSeconds"
                    | "getMilliseconds"
            );
            if known {
                Err(unsupported())
            } else {
                Err(EvalError::new(format!("unknown function: {function}")))
            }
        }
    }
}

fn convert(function: &str, value: &Value) -> EvalResult {
    let unsupported = || no_overload(function, &[value]);
    match function {
        "int" => match value {
            Value::Int(number) => Ok(Value::Int(*number)),
            Value::Uint(number) => i64::try_from(*number)
                .map(Value::Int)
                .map_err(|_| EvalError::new("integer overflow in int(uint)")),
            Value::Double(number) => {
                if number.is_finite()
                    && *number > -9_223_372_036_854_775_809.0
                    && *number < 9_223_372_036_854_775_807.0
                {
                    Ok(Value::Int(number.trunc() as i64))
                } else {
                    Err(EvalError::new("integer overflow in int(double)"))
                }
            }
            Value::String(text) => text
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| EvalError::new("cannot convert string to int")),
            Value::Timestamp(timestamp) => i64::try_from(timestamp.unix_seconds())
                .map(Value::Int)
                .map_err(|_| EvalError::new("integer overflow in int(timestamp)")),
            _ => Err(unsupported()),
        },
        "uint" => match value {
            Value::Uint(number) => Ok(Value::Uint(*number)),
            Value::Int(number) => u64::try_from(*number)
                .map(Value::Uint)
                .map_err(|_| EvalError::new("unsigned integer overflow in uint(int)")),
            Value::Double(number) => {
                if number.is_finite() && *number > -1.0 && *number < 18_446_744_073_709_551_615.0 {
                    Ok(Value::Uint(number.trunc() as u64))
                } else {
                    Err(EvalError::new("unsigned integer overflow in uint(double)"))
                }
            }
            Value::String(text) => text
                .parse::<u64>()
                .map(Value::Uint)
                .map_err(|_| EvalError::new("cannot convert string to uint")),
            _ => Err(unsupported()),
        },
        "double" => match value {
            Value::Double(number) => Ok(Value::Double(*number)),
            Value::Int(number) => Ok(Value::Double(*number as f64)),
            Value::Uint(number) => Ok(Value::Double(*number as f64)),
            Value::String(text) => text
                .parse::<f64>()
                .map(Value::Double)
                .map_err(|_| EvalError::new("cannot convert string to double")),
            _ => Err(unsupported()),
        },
        "string" => match value {
            Value::String(text) => Ok(Value::String(text.clone())),
            Value::Int(number) => Ok(Value::String(Arc::from(number.to_string()))),
            Value::Uint(number) => Ok(Value::String(Arc::from(number.to_string()))),
            Value::Double(number) => Ok(Value::String(Arc::from(format_double(*number)))),
            Value::Bool(flag) => Ok(Value::String(Arc::from(flag.to_string()))),
            Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Value::string(text)),
                Err(_) => Err(EvalError::new(
                    "invalid UTF-8 in bytes, cannot convert to string",
                )),
            },
            Value::Timestamp(timestamp) => Ok(Value::String(Arc::from(timestamp.to_string()))),
            Value::Duration(duration) => Ok(Value::String(Arc::from(duration.to_string()))),
            _ => Err(unsupported()),
        },
        "bytes" => match value {
            Value::Bytes(bytes) => Ok(Value::Bytes(bytes.clone())),
            Value::String(text) => Ok(Value::Bytes(Arc::from(text.as_bytes()))),
            _ => Err(unsupported()),
        },
        "bool" => match value {
            Value::Bool(flag) => Ok(Value::Bool(*flag)),
            Value::String(text) => match &**text {
                "1" | "t" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                "0" | "f" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                _ => Err(EvalError::new("cannot convert string to bool")),
            },
            _ => Err(unsupported()),
        },
        "timestamp" => match value {
            Value::Timestamp(timestamp) => Ok(Value::Timestamp(*timestamp)),
            Value::String(text) => Timestamp::parse(text)
                .map(Value::Timestamp)
                .ok_or_else(|| EvalError::new("cannot parse the string as a timestamp")),
            Value::Int(seconds) => {
                Timestamp::from_unix_nanos(i128::from(*seconds) * NANOS_PER_SECOND)
                    .map(Value::Timestamp)
                    .ok_or_else(timestamp_overflow)
            }
            _ => Err(unsupported()),
        },
        "duration" => match value {
            Value::Duration(duration) => Ok(Value::Duration(*duration)),
            Value::String(text) => Duration::parse(text)
                .map(Value::Duration)
                .ok_or_else(|| EvalError::new("cannot parse the string as a duration")),
            _ => Err(unsupported()),
        },
        "dyn" => Ok(value.clone()),
        "type" => Ok(Value::Type(Arc::from(value.type_name()))),
        _ => Err(EvalError::new(format!("unknown function: {function}"))),
    }
}

fn replace(text: &str, old: &str, new: &str, limit: i64) -> EvalResult {
    let mut output = String::new();
    let mut rest = text;
    let mut replaced: i64 = 0;
    if old.is_empty() {
        // Replacing the empty string inserts `new` between characters, as Go does.
        let mut characters = text.chars();
        loop {
            if limit < 0 || replaced < limit {
                output.push_str(new);
                replaced += 1;
            }
            if output.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("string result is too large"));
            }
            match characters.next() {
                Some(character) => output.push(character),
                None => break,
            }
        }
        return check_string_size(output);
    }
    while limit < 0 || replaced < limit {
        let Some(position) = rest.find(old) else {
            break;
        };
        output.push_str(&rest[..position]);
        output.push_str(new);
        rest = &rest[position + old.len()..];
        replaced += 1;
        if output.len() > MAX_VALUE_BYTES {
            return Err(EvalError::new("string result is too large"));
        }
    }
    output.push_str(rest);
    check_string_size(output)
}

fn split(text: &str, separator: &str, limit: i64) -> EvalResult {
    if limit == 0 {
        return Ok(Value::List(Arc::from(Vec::new())));
    }
    // A split of a long text could make more parts than any list may hold; refuse that
    // before building them (each part is a value of its own, far larger than its text).
    let too_long = || EvalError::new("list result is too large");
    let parts: Vec<Value> = if separator.is_empty() {
        if text.chars().count() > MAX_LIST_LENGTH {
            return Err(too_long());
        }
        let characters: Vec<char> = text.chars().collect();
        let count = if limit < 0 {
            characters.len()
        } else {
            usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .min(characters.len())
        };
        let mut parts: Vec<Value> = characters
            .iter()
            .take(count.saturating_sub(1))
            .map(|character| Value::String(Arc::from(character.to_string())))
            .collect();
        let rest: String = characters.iter().skip(count.saturating_sub(1)).collect();
        if !rest.is_empty() {
            parts.push(Value::String(Arc::from(rest)));
        }
        parts
    } else if limit < 0 {
        text.split(separator)
            .take(MAX_LIST_LENGTH + 1)
            .map(Value::string)
            .collect()
    } else {
        text.splitn(usize::try_from(limit).unwrap_or(usize::MAX), separator)
            .take(MAX_LIST_LENGTH + 1)
            .map(Value::string)
            .collect()
    };
    if parts.len() > MAX_LIST_LENGTH {
        return Err(too_long());
    }
    Ok(Value::List(Arc::from(parts)))
}

/// `list.sum()` (AGX-T1): the total of ints (checked), of uints (checked), or of
/// numbers of which any is a double (a double); 0 for an empty list. JSON numbers
/// become ints or doubles by how they are written, so a list of amounts may mix them.
fn sum(elements: &[Value]) -> EvalResult {
    let overflow = || EvalError::new("integer overflow in sum()");
    if elements
        .iter()
        .any(|element| matches!(element, Value::Double(_)))
    {
        let mut total = 0.0;
        for element in elements {
            total += match element {
                Value::Double(number) => *number,
                Value::Int(number) => *number as f64,
                Value::Uint(number) => *number as f64,
                other => return Err(no_overload("sum", &[other])),
            };
        }
        return Ok(Value::Double(total));
    }
    match elements.first() {
        None | Some(Value::Int(_)) => {
            let mut total: i64 = 0;
            for element in elements {
                let Value::Int(number) = element else {
                    return Err(no_overload("sum", &[element]));
                };
                total = total.checked_add(*number).ok_or_else(overflow)?;
            }
            Ok(Value::Int(total))
        }
        Some(Value::Uint(_)) => {
            let mut total: u64 = 0;
            for element in elements {
                let Value::Uint(number) = element else {
                    return Err(no_overload("sum", &[element]));
                };
                total = total.checked_add(*number).ok_or_else(overflow)?;
            }
            Ok(Value::Uint(total))
        }
        Some(other) => Err(no_overload("sum", &[other])),
    }
}

fn join(elements: &[Value], separator: &str) -> EvalResult {
    let mut output = String::new();
    for (index, element) in elements.iter().enumerate() {
        let Value::String(text) = element else {
            return Err(no_overload("join", &[element]));
        };
        if index > 0 {
            output.push_str(separator);
        }
        output.push_str(text);
        if output.len() > MAX_VALUE_BYTES {
            return Err(EvalError::new("string result is too large"));
        }
    }
    check_string_size(output)
}

fn index_of(text: &str, part: &str, start: i64, reverse: bool) -> EvalResult {
    let characters: Vec<char> = text.chars().collect();
    let needle: Vec<char> = part.chars().collect();
    let length = characters.len() as i64;
    if start < 0 || start > length {
        return Err(EvalError::new("index out of range"));
    }
    let start = usize::try_from(start).unwrap_or(0);
    let matches_at = |position: usize| {
        characters
            .get(position..position + needle.len())
            .is_some_and(|window| window == needle.as_slice())
    };
    let found = if reverse {
        (0..=start).rev().find(|position| matches_at(*position))
    } else {
        (start..=characters.len()).find(|position| matches_at(*position))
    };
    Ok(Value::Int(found.map_or(-1, |position| position as i64)))
}

fn substring(text: &str, start: i64, end: i64) -> EvalResult {
    let length = text.chars().count() as i64;
    if start < 0 || start > length || end < start || end > length {
        return Err(EvalError::new("substring range is out of range"));
    }
    let result: String = text
        .chars()
        .skip(usize::try_from(start).unwrap_or(0))
        .take(usize::try_from(end - start).unwrap_or(0))
        .collect();
    Ok(Value::String(Arc::from(result)))
}
