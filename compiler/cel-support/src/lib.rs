//! Run-time support for Rust code compiled from CEL by `agentc-cel`.
//!
//! Generated policy functions depend only on std, serde, serde_json, regex and this
//! crate. It holds the error type the functions return ([`CelError`]; callers treat any
//! error as a denied check, OAS-C8), checked integer arithmetic with CEL's overflow
//! errors, and the [`Timestamp`] and [`Duration`] types shared with the interpreter.
//!
//! Nothing here allocates on the success path, and errors carry `'static` messages, so
//! even a failing check does not allocate.

#![forbid(unsafe_code)]
// The trusted path never panics on data: no unwrap, expect, panic or unchecked
// indexing outside tests (clippy.toml allows them in tests).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub mod budget;
pub mod provenance;
pub mod time;

pub use budget::{Meter, Usage};
pub use time::{Duration, Timestamp};

/// An error raised while evaluating a compiled expression: the check is denied.
///
/// It holds only a `'static` message, so that `Result<bool, CelError>` is two words,
/// returned in registers, and no error path allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelError {
    message: &'static str,
}

impl CelError {
    /// Creates an error with a fixed message.
    pub const fn new(message: &'static str) -> Self {
        CelError { message }
    }

    /// Returns the message.
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// The error for selecting an absent field (`no such key`).
    pub const fn no_such_key(_field: &'static str) -> Self {
        CelError::new("no such key")
    }

    /// Compiled code counted more work than its conservative budget allows
    /// ([`budget::Meter`]): its result is not used, and the expression is evaluated by
    /// the interpreter instead, whose answer is the check's. Where no interpreter stands
    /// behind the compiled code, this error denies like any other.
    pub const OVER_COMPILED_BUDGET: CelError =
        CelError::new("evaluation exceeded the compiled code's budget (too much work)");

    /// Whether this is [`CelError::OVER_COMPILED_BUDGET`].
    pub fn is_over_compiled_budget(&self) -> bool {
        *self == CelError::OVER_COMPILED_BUDGET
    }
}

impl fmt::Display for CelError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message)
    }
}

impl std::error::Error for CelError {}

/// The result of a compiled expression.
pub type CelResult<T> = Result<T, CelError>;

/// `a + b` on ints.
#[inline]
pub fn add_int(a: i64, b: i64) -> CelResult<i64> {
    a.checked_add(b)
        .ok_or(CelError::new("integer overflow in addition"))
}

/// `a - b` on ints.
#[inline]
pub fn sub_int(a: i64, b: i64) -> CelResult<i64> {
    a.checked_sub(b)
        .ok_or(CelError::new("integer overflow in subtraction"))
}

/// `a * b` on ints.
#[inline]
pub fn mul_int(a: i64, b: i64) -> CelResult<i64> {
    a.checked_mul(b)
        .ok_or(CelError::new("integer overflow in multiplication"))
}

/// `a / b` on ints.
#[inline]
pub fn div_int(a: i64, b: i64) -> CelResult<i64> {
    if b == 0 {
        return Err(CelError::new("division by zero"));
    }
    a.checked_div(b)
        .ok_or(CelError::new("integer overflow in division"))
}

/// `a % b` on ints.
#[inline]
pub fn rem_int(a: i64, b: i64) -> CelResult<i64> {
    if b == 0 {
        return Err(CelError::new("modulus by zero"));
    }
    a.checked_rem(b)
        .ok_or(CelError::new("integer overflow in modulus"))
}

/// `-a` on ints.
#[inline]
pub fn neg_int(a: i64) -> CelResult<i64> {
    a.checked_neg()
        .ok_or(CelError::new("integer overflow in negation"))
}

/// `a + b` on uints.
#[inline]
pub fn add_uint(a: u64, b: u64) -> CelResult<u64> {
    a.checked_add(b)
        .ok_or(CelError::new("unsigned integer overflow in addition"))
}

/// `a - b` on uints.
#[inline]
pub fn sub_uint(a: u64, b: u64) -> CelResult<u64> {
    a.checked_sub(b)
        .ok_or(CelError::new("unsigned integer overflow in subtraction"))
}

/// `a * b` on uints.
#[inline]
pub fn mul_uint(a: u64, b: u64) -> CelResult<u64> {
    a.checked_mul(b)
        .ok_or(CelError::new("unsigned integer overflow in multiplication"))
}

/// `a / b` on uints.
#[inline]
pub fn div_uint(a: u64, b: u64) -> CelResult<u64> {
    a.checked_div(b).ok_or(CelError::new("division by zero"))
}

/// `a % b` on uints.
#[inline]
pub fn rem_uint(a: u64, b: u64) -> CelResult<u64> {
    a.checked_rem(b).ok_or(CelError::new("modulus by zero"))
}

/// `size(s)` on a string: its length in Unicode code points.
#[inline]
pub fn size_str(text: &str) -> i64 {
    i64::try_from(text.chars().count()).unwrap_or(i64::MAX)
}

/// `size(l)` on a list or a map.
#[inline]
pub fn size_len(length: usize) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

/// `list[index]`: the element, or an `index out of bounds` error.
#[inline]
pub fn index<T>(elements: &[T], index: i64) -> CelResult<&T> {
    usize::try_from(index)
        .ok()
        .and_then(|position| elements.get(position))
        .ok_or(CelError::new("index out of bounds"))
}

/// `int(d)`: truncates a double, or fails when it is out of range.
#[inline]
pub fn int_from_double(number: f64) -> CelResult<i64> {
    if number.is_finite()
        && number > -9_223_372_036_854_775_809.0
        && number < 9_223_372_036_854_775_807.0
    {
        Ok(number.trunc() as i64)
    } else {
        Err(CelError::new("integer overflow in int(double)"))
    }
}

/// CEL equality between an int and a double.
#[inline]
pub fn int_eq_double(integer: i64, double: f64) -> bool {
    double == integer as f64
}

/// CEL ordering between an int and a double; `None` when the double is NaN.
#[inline]
pub fn cmp_int_double(integer: i64, double: f64) -> Option<std::cmp::Ordering> {
    (integer as f64).partial_cmp(&double)
}

/// `t + d`.
#[inline]
pub fn add_timestamp(timestamp: Timestamp, duration: Duration) -> CelResult<Timestamp> {
    Timestamp::from_unix_nanos(timestamp.unix_nanos() + duration.nanos())
        .ok_or(CelError::new("timestamp out of range"))
}

/// `t - d`.
#[inline]
pub fn sub_timestamp_duration(timestamp: Timestamp, duration: Duration) -> CelResult<Timestamp> {
    Timestamp::from_unix_nanos(timestamp.unix_nanos() - duration.nanos())
        .ok_or(CelError::new("timestamp out of range"))
}

/// `t1 - t2`, limited to a signed 64-bit nanosecond count as the reference does.
#[inline]
pub fn sub_timestamps(left: Timestamp, right: Timestamp) -> CelResult<Duration> {
    let difference = left.unix_nanos() - right.unix_nanos();
    if i64::try_from(difference).is_err() {
        return Err(CelError::new("duration out of range"));
    }
    Duration::from_nanos(difference).ok_or(CelError::new("duration out of range"))
}

/// `d1 + d2`.
#[inline]
pub fn add_durations(left: Duration, right: Duration) -> CelResult<Duration> {
    Duration::from_nanos(left.nanos() + right.nanos()).ok_or(CelError::new("duration out of range"))
}

/// `d1 - d2`.
#[inline]
pub fn sub_durations(left: Duration, right: Duration) -> CelResult<Duration> {
    Duration::from_nanos(left.nanos() - right.nanos()).ok_or(CelError::new("duration out of range"))
}

/// `timestamp("...")`.
pub fn parse_timestamp(text: &str) -> CelResult<Timestamp> {
    Timestamp::parse(text).ok_or(CelError::new("cannot parse timestamp"))
}

/// `duration("...")`.
pub fn parse_duration(text: &str) -> CelResult<Duration> {
    Duration::parse(text).ok_or(CelError::new("cannot parse duration"))
}

/// Which calendar field a timestamp accessor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampField {
    /// `getFullYear`.
    FullYear,
    /// `getMonth` (January is 0).
    Month,
    /// `getDate` (the first is 1).
    Date,
    /// `getDayOfMonth` (the first is 0).
    DayOfMonth,
    /// `getDayOfWeek` (Sunday is 0).
    DayOfWeek,
    /// `getDayOfYear` (January 1st is 0).
    DayOfYear,
    /// `getHours`.
    Hours,
    /// `getMinutes`.
    Minutes,
    /// `getSeconds`.
    Seconds,
    /// `getMilliseconds`.
    Milliseconds,
}

/// A timestamp accessor such as `t.getHours()` or `t.getHours("+01:00")`.
pub fn timestamp_field(
    timestamp: Timestamp,
    field: TimestampField,
    zone: Option<&str>,
) -> CelResult<i64> {
    let offset = match zone {
        None => 0,
        Some(zone) => {
            time::parse_time_zone_offset(zone).ok_or(CelError::new("unsupported time zone"))?
        }
    };
    let civil = timestamp.civil(offset);
    let result = match field {
        TimestampField::FullYear => civil.year,
        TimestampField::Month => civil.month - 1,
        TimestampField::Date => civil.day,
        TimestampField::DayOfMonth => civil.day - 1,
        TimestampField::DayOfWeek => civil.day_of_week,
        TimestampField::DayOfYear => civil.day_of_year,
        TimestampField::Hours => civil.hour,
        TimestampField::Minutes => civil.minute,
        TimestampField::Seconds => civil.second,
        TimestampField::Milliseconds => civil.nanos / 1_000_000,
    };
    Ok(i64::try_from(result).unwrap_or(0))
}

/// A duration accessor: `getHours`, `getMinutes`, `getSeconds` or `getMilliseconds`.
pub fn duration_field(duration: Duration, field: TimestampField) -> CelResult<i64> {
    let nanos = duration.nanos();
    let second = time::NANOS_PER_SECOND;
    let result = match field {
        TimestampField::Hours => nanos / (3600 * second),
        TimestampField::Minutes => nanos / (60 * second),
        TimestampField::Seconds => nanos / second,
        TimestampField::Milliseconds => (nanos % second) / 1_000_000,
        _ => return Err(CelError::new("no such overload")),
    };
    Ok(i64::try_from(result).unwrap_or(0))
}

/// A string of the typed engagement. It shares its text with the engagement's CEL value
/// (a reference count, not a copy), so that building the typed engagement a compiled
/// check reads does not copy every string of the calls it sees; text short enough to
/// be kept inline (most identifiers, paths and queries) is kept inline instead, so that
/// reading it from JSON, which has no reference count to share, allocates nothing.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(smol_str::SmolStr);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<Arc<str>> for Text {
    fn from(text: Arc<str>) -> Self {
        Text(smol_str::SmolStr::from(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(smol_str::SmolStr::new(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(smol_str::SmolStr::from(text))
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), formatter)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Text::from(text.as_ref()))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Duration::parse(&text).ok_or_else(|| serde::de::Error::custom("expected a duration"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn arithmetic_errors() {
        assert!(add_int(i64::MAX, 1).is_err());
        assert!(div_int(1, 0).is_err());
        assert!(div_int(i64::MIN, -1).is_err());
        assert!(rem_int(1, 0).is_err());
        assert!(neg_int(i64::MIN).is_err());
        assert_eq!(mul_int(3, 4), Ok(12));
        assert!(index(&[1, 2], 2).is_err());
        assert_eq!(index(&[1, 2], 1), Ok(&2));
        assert!(index(&[1, 2], -1).is_err());
        assert_eq!(size_str("héllo"), 5);
    }

    /// Short text is kept inline and long text shared, and both read back, compare,
    /// order and hash as the text they hold, including at the boundary and for
    /// multi-byte characters.
    #[test]
    fn text_reads_back_whether_inline_or_shared() {
        use std::hash::{BuildHasher, RandomState};
        const INLINE: usize = smol_str::SmolStr::INLINE_CAP;
        let hasher = RandomState::new();
        let samples = [
            String::new(),
            "a".to_string(),
            "x".repeat(INLINE),
            "x".repeat(INLINE + 1),
            "é".repeat(INLINE / 2),
            "é".repeat(INLINE / 2 + 1),
        ];
        for sample in &samples {
            let inline_or_long = Text::from(sample.as_str());
            let shared = Text::from(Arc::<str>::from(sample.as_str()));
            assert_eq!(inline_or_long.as_str(), sample);
            assert_eq!(&*shared, sample);
            assert_eq!(inline_or_long, shared);
            assert_eq!(
                hasher.hash_one(&inline_or_long),
                hasher.hash_one(sample.as_str())
            );
            assert_eq!(hasher.hash_one(&shared), hasher.hash_one(sample.as_str()));
            assert_eq!(inline_or_long.0.is_heap_allocated(), sample.len() > INLINE);
        }
        assert!(Text::from("ab") < Text::from(Arc::<str>::from("b")));
        assert_eq!(Text::default().as_str(), "");
    }

    #[test]
    fn timestamps_round_trip_through_json() {
        let timestamp = parse_timestamp("2024-05-06T07:08:09Z").unwrap();
        let json = serde_json::to_string(&timestamp).unwrap();
        assert_eq!(json, "\"2024-05-06T07:08:09Z\"");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, timestamp);
        assert_eq!(
            timestamp_field(timestamp, TimestampField::Hours, None),
            Ok(7)
        );
    }
}
