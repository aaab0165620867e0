//! The operators: field selection, indexing, the relations (comparison and `in`) and
//! arithmetic.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::ast::BinaryOp;
use crate::time::{Duration, Timestamp};
use crate::value::{MapKey, Value};

use super::{EvalError, EvalResult, MAX_LIST_LENGTH, MAX_VALUE_BYTES, no_overload};

pub(super) fn select_field<'v>(object: &'v Value, field: &str) -> Result<&'v Value, EvalError> {
    match object {
        Value::Map(map) => map
            .get_str(field)
            .ok_or_else(|| EvalError::new(format!("no such key: '{field}'"))),
        other => Err(EvalError::new(format!(
            "cannot select field '{field}' from a value of type {}",
            other.type_name()
        ))),
    }
}

pub(super) fn index_value<'v>(container: &'v Value, key: &Value) -> Result<&'v Value, EvalError> {
    match container {
        Value::List(elements) => {
            let index: Option<i128> = match key {
                Value::Int(number) => Some(i128::from(*number)),
                Value::Uint(number) => Some(i128::from(*number)),
                Value::Double(number) if number.fract() == 0.0 && number.is_finite() => {
                    Some(*number as i128)
                }
                _ => None,
            };
            let Some(index) = index else {
                return Err(no_overload("_[_]", &[container, key]));
            };
            usize::try_from(index)
                .ok()
                .and_then(|position| elements.get(position))
                .ok_or_else(|| EvalError::new("index out of bounds"))
        }
        Value::Map(map) => {
            if MapKey::from_value(key).is_none() && !matches!(key, Value::Double(_)) {
                return Err(no_overload("_[_]", &[container, key]));
            }
            map.get(key).ok_or_else(|| EvalError::new("no such key"))
        }
        other => Err(no_overload("_[_]", &[other, key])),
    }
}

/// A relational operator (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`), whose result is a
/// boolean.
#[inline]
pub(super) fn relation(op: BinaryOp, left: &Value, right: &Value) -> Result<bool, EvalError> {
    // The common policy comparisons (two numbers of one type) first, without the
    // general checks below; the results are the same as the general path's.
    let ordering = match (left, right) {
        (Value::Int(left), Value::Int(right)) => Some(left.cmp(right)),
        (Value::Double(left), Value::Double(right)) => {
            let Some(ordering) = left.partial_cmp(right) else {
                // A NaN operand: unequal to everything, and every ordering is false.
                return Ok(op == BinaryOp::NotEqual);
            };
            Some(ordering)
        }
        _ => None,
    };
    if let Some(ordering) = ordering {
        match op {
            BinaryOp::Equal => return Ok(ordering == Ordering::Equal),
            BinaryOp::NotEqual => return Ok(ordering != Ordering::Equal),
            BinaryOp::Less => return Ok(ordering == Ordering::Less),
            BinaryOp::LessEqual => return Ok(ordering != Ordering::Greater),
            BinaryOp::Greater => return Ok(ordering == Ordering::Greater),
            BinaryOp::GreaterEqual => return Ok(ordering != Ordering::Less),
            _ => {}
        }
    }
    general_relation(op, left, right)
}

/// [`relation`] for every other pair of operands.
#[inline(never)]
fn general_relation(op: BinaryOp, left: &Value, right: &Value) -> Result<bool, EvalError> {
    match op {
        BinaryOp::Equal => Ok(left.cel_equals(right)),
        BinaryOp::NotEqual => Ok(!left.cel_equals(right)),

        BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => {
            let ordering = left.cel_compare(right);
            let orderable = |value: &Value| {
                matches!(
                    value,
                    Value::Bool(_)
                        | Value::Int(_)
                        | Value::Uint(_)
                        | Value::Double(_)
                        | Value::String(_)
                        | Value::Bytes(_)
                        | Value::Timestamp(_)
                        | Value::Duration(_)
                )
            };
            let numeric =
                |value: &Value| matches!(value, Value::Int(_) | Value::Uint(_) | Value::Double(_));
            let same_kind = std::mem::discriminant(left) == std::mem::discriminant(right)
                || (numeric(left) && numeric(right));
            if !(orderable(left) && orderable(right) && same_kind) {
                return Err(no_overload(op.symbol(), &[left, right]));
            }
            // A NaN operand makes every ordering comparison false.
            let Some(ordering) = ordering else {
                return Ok(false);
            };
            Ok(match op {
                BinaryOp::Less => ordering == Ordering::Less,
                BinaryOp::LessEqual => ordering != Ordering::Greater,
                BinaryOp::Greater => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            })
        }
        BinaryOp::In => match right {
            Value::List(elements) => Ok(elements.iter().any(|element| element.cel_equals(left))),
            Value::Map(map) => Ok(map.get(left).is_some()),
            other => Err(no_overload("@in", &[left, other])),
        },
        _ => Err(no_overload(op.symbol(), &[left, right])),
    }
}

pub(super) fn binary_operation(op: BinaryOp, left: &Value, right: &Value) -> EvalResult {
    match op {
        BinaryOp::Equal
        | BinaryOp::NotEqual
        | BinaryOp::Less
        | BinaryOp::LessEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterEqual
        | BinaryOp::In => relation(op, left, right).map(Value::Bool),
        BinaryOp::Add => add(left, right),
        BinaryOp::Subtract => subtract(left, right),
        BinaryOp::Multiply => match (left, right) {
            (Value::Int(a), Value::Int(b)) => a
                .checked_mul(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in multiplication")),
            (Value::Uint(a), Value::Uint(b)) => a
                .checked_mul(*b)
                .map(Value::Uint)
                .ok_or_else(|| EvalError::new("unsigned integer overflow in multiplication")),
            (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a * b)),
            _ => Err(no_overload("*", &[left, right])),
        },
        BinaryOp::Divide => match (left, right) {
            (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
                Err(EvalError::new("division by zero"))
            }
            (Value::Int(a), Value::Int(b)) => a
                .checked_div(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in division")),
            (Value::Uint(a), Value::Uint(b)) => Ok(Value::Uint(a / b)),
            (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a / b)),
            _ => Err(no_overload("/", &[left, right])),
        },
        BinaryOp::Remainder => match (left, right) {
            (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
                Err(EvalError::new("modulus by zero"))
            }
            (Value::Int(a), Value::Int(b)) => a
                .checked_rem(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in modulus")),
            (Value::Uint(a), Value::Uint(b)) => Ok(Value::Uint(a % b)),
            _ => Err(no_overload("%", &[left, right])),
        },
        BinaryOp::And | BinaryOp::Or => Err(no_overload(op.symbol(), &[left, right])),
    }
}

pub(super) fn timestamp_overflow() -> EvalError {
    EvalError::new("timestamp out of range")
}

fn duration_overflow() -> EvalError {
    EvalError::new("duration out of range")
}

fn add(left: &Value, right: &Value) -> EvalResult {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => a
            .checked_add(*b)
            .map(Value::Int)
            .ok_or_else(|| EvalError::new("integer overflow in addition")),
        (Value::Uint(a), Value::Uint(b)) => a
            .checked_add(*b)
            .map(Value::Uint)
            .ok_or_else(|| EvalError::new("unsigned integer overflow in addition")),
        (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a + b)),
        (Value::String(a), Value::String(b)) => {
            if a.len() + b.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("string result is too large"));
            }
            let mut text = String::with_capacity(a.len() + b.len());
            text.push_str(a);
            text.push_str(b);
            Ok(Value::String(Arc::from(text)))
        }
        (Value::Bytes(a), Value::Bytes(b)) => {
            if a.len() + b.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("bytes result is too large"));
            }
            Ok(Value::Bytes(a.iter().chain(b.iter()).copied().collect()))
        }
        (Value::List(a), Value::List(b)) => {
            if a.len() + b.len() > MAX_LIST_LENGTH {
                return Err(EvalError::new("list result is too large"));
            }
            Ok(Value::List(a.iter().chain(b.iter()).cloned().collect()))
        }
        (Value::Timestamp(t), Value::Duration(d)) | (Value::Duration(d), Value::Timestamp(t)) => {
            Timestamp::from_unix_nanos(t.unix_nanos() + d.nanos())
                .map(Value::Timestamp)
                .ok_or_else(timestamp_overflow)
        }
        (Value::Duration(a), Value::Duration(b)) => Duration::from_nanos(a.nanos() + b.nanos())
            .map(Value::Duration)
            .ok_or_else(duration_overflow),
        _ => Err(no_overload("+", &[left, right])),
    }
}

fn subtract(left: &Value, right: &Value) -> EvalResult {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => a
            .checked_sub(*b)
            .map(Value::Int)
            .ok_or_else(|| EvalError::new("integer overflow in subtraction")),
        (Value::Uint(a), Value::Uint(b)) => a
            .checked_sub(*b)
            .map(Value::Uint)
            .ok_or_else(|| EvalError::new("unsigned integer overflow in subtraction")),
        (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a - b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => {
            // The reference implementation computes the difference as a signed 64-bit
            // nanosecond count, so differences beyond about 292 years are range errors.
            let difference = a.unix_nanos() - b.unix_nanos();
            if i64::try_from(difference).is_err() {
                return Err(duration_overflow());
            }
            Duration::from_nanos(difference)
                .map(Value::Duration)
                .ok_or_else(duration_overflow)
        }
        (Value::Timestamp(t), Value::Duration(d)) => {
            Timestamp::from_unix_nanos(t.unix_nanos() - d.nanos())
                .map(Value::Timestamp)
                .ok_or_else(timestamp_overflow)
        }
        (Value::Duration(a), Value::Duration(b)) => Duration::from_nanos(a.nanos() - b.nanos())
            .map(Value::Duration)
            .ok_or_else(duration_overflow),
        _ => Err(no_overload("-", &[left, right])),
    }
}
