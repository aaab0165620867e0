//! Timestamps and durations: parsing, formatting and calendar arithmetic.
//!
//! Implemented here rather than with a date crate because CEL needs only RFC 3339
//! parsing, the proleptic Gregorian calendar and fixed UTC offsets, and the crate must
//! stay small and pure. Time zones by name are not supported (there is no tz database),
//! and using one is an evaluation error.

use std::fmt;

/// Nanoseconds in one second.
pub const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Seconds from 0001-01-01T00:00:00Z to the Unix epoch, negated.
const MIN_TIMESTAMP_SECONDS: i128 = -62_135_596_800;
/// Seconds from the Unix epoch to 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i128 = 253_402_300_799;
/// The largest duration CEL allows, about 10,000 years, in seconds.
const MAX_DURATION_SECONDS: i128 = 315_576_000_000;

/// An instant, as nanoseconds since 1970-01-01T00:00:00Z, within years 0001 to 9999.
/// The default is the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_nanos: i128,
}

/// A signed span of time in nanoseconds, within about ±10,000 years. The default is
/// zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    nanos: i128,
}

impl Timestamp {
    /// Creates a timestamp from nanoseconds since the Unix epoch, if it is in range.
    pub fn from_unix_nanos(unix_nanos: i128) -> Option<Timestamp> {
        let seconds = unix_nanos.div_euclid(NANOS_PER_SECOND);
        (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS)
            .contains(&seconds)
            .then_some(Timestamp { unix_nanos })
    }

    /// Returns nanoseconds since the Unix epoch.
    pub fn unix_nanos(self) -> i128 {
        self.unix_nanos
    }

    /// Returns whole seconds since the Unix epoch, rounded towards negative infinity.
    pub fn unix_seconds(self) -> i128 {
        self.unix_nanos.div_euclid(NANOS_PER_SECOND)
    }

    /// Parses an RFC 3339 timestamp such as `2009-02-13T23:31:30Z` or
    /// `2009-02-13T23:31:30.5+01:00`.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        let number = |from: usize, length: usize| -> Option<i128> {
            let slice = bytes.get(from..from + length)?;
            if !slice.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(slice).ok()?.parse().ok()
        };
        let separator =
            |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|b| allowed.contains(b));
        let year = number(0, 4)?;
        let month = number(5, 2)?;
        let day = number(8, 2)?;
        let hour = number(11, 2)?;
        let minute = number(14, 2)?;
        let second = number(17, 2)?;
        if !(separator(4, b"-")
            && separator(7, b"-")
            && separator(10, b"Tt")
            && separator(13, b":")
            && separator(16, b":"))
        {
            return None;
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut position = 19;
        let mut fraction_nanos: i128 = 0;
        if bytes.get(position) == Some(&b'.') {
            position += 1;
            let start = position;
            while bytes.get(position).is_some_and(u8::is_ascii_digit) {
                position += 1;
            }
            let digits = bytes.get(start..position)?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            for (index, digit) in digits.iter().enumerate() {
                let place = 8 - index as u32;
                fraction_nanos += i128::from(digit - b'0') * 10i128.pow(place);
            }
        }
        let offset_seconds = match bytes.get(position) {
            Some(b'Z' | b'z') => {
                position += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                let sign = if *sign == b'-' { -1 } else { 1 };
                let hours = number(position + 1, 2)?;
                if !separator(position + 3, b":") {
                    return None;
                }
                let minutes = number(position + 4, 2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                position += 6;
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return None,
        };
        if position != bytes.len() {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let local_seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
        let unix_seconds = local_seconds - offset_seconds;
        Timestamp::from_unix_nanos(unix_seconds * NANOS_PER_SECOND + fraction_nanos)
    }

    /// Returns the calendar fields of this instant shifted by `offset_seconds`.
    pub fn civil(self, offset_seconds: i128) -> CivilTime {
        let local_seconds = self.unix_seconds() + offset_seconds;
        let days = local_seconds.div_euclid(86_400);
        let seconds_of_day = local_seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: seconds_of_day / 3600,
            minute: (seconds_of_day % 3600) / 60,
            second: seconds_of_day % 60,
            nanos: self.unix_nanos.rem_euclid(NANOS_PER_SECOND),
            day_of_week: (days + 4).rem_euclid(7),
            day_of_year: days - days_from_civil(year, 1, 1),
        }
    }
}

/// Calendar fields of an instant in some time zone.
pub struct CivilTime {
    /// The year, such as 2024.
    pub year: i128,
    /// The month, 1 to 12.
    pub month: i128,
    /// The day of the month, 1 to 31.
    pub day: i128,
    /// The hour, 0 to 23.
    pub hour: i128,
    /// The minute, 0 to 59.
    pub minute: i128,
    /// The second, 0 to 59.
    pub second: i128,
    /// The nanoseconds within the second.
    pub nanos: i128,
    /// Sunday is 0.
    pub day_of_week: i128,
    /// January 1st is 0.
    pub day_of_year: i128,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let civil = self.civil(0);
        write!(
            formatter,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            civil.year, civil.month, civil.day, civil.hour, civil.minute, civil.second
        )?;
        write_fraction(formatter, civil.nanos)?;
        formatter.write_str("Z")
    }
}

fn write_fraction(formatter: &mut fmt::Formatter<'_>, nanos: i128) -> fmt::Result {
    if nanos == 0 {
        return Ok(());
    }
    // Fractions are printed with 3, 6 or 9 digits, as protobuf's JSON mapping does.
    if nanos % 1_000_000 == 0 {
        write!(formatter, ".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        write!(formatter, ".{:06}", nanos / 1_000)
    } else {
        write!(formatter, ".{nanos:09}")
    }
}

impl Duration {
    /// Creates a duration from nanoseconds, if it is within CEL's range.
    pub fn from_nanos(nanos: i128) -> Option<Duration> {
        (nanos.abs() / NANOS_PER_SECOND <= MAX_DURATION_SECONDS).then_some(Duration { nanos })
    }

    /// Returns the duration in nanoseconds.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Parses a Go-style duration such as `1h2m3.5s`, `-1.5h` or `100ms`.
    pub fn parse(text: &str) -> Option<Duration> {
        let (negative, mut rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        if rest == "0" {
            return Some(Duration { nanos: 0 });
        }
        if rest.is_empty() {
            return None;
        }
        let mut total: i128 = 0;
        while !rest.is_empty() {
            let number_length = rest
                .find(|character: char| !(character.is_ascii_digit() || character == '.'))
                .unwrap_or(rest.len());
            let (number, after_number) = rest.split_at(number_length);
            if number.is_empty() || number == "." {
                return None;
            }
            let unit_length = after_number
                .find(|character: char| character.is_ascii_digit() || character == '.')
                .unwrap_or(after_number.len());
            let (unit, after_unit) = after_number.split_at(unit_length);
            let unit_nanos: i128 = match unit {
                "h" => 3_600 * NANOS_PER_SECOND,
                "m" => 60 * NANOS_PER_SECOND,
                "s" => NANOS_PER_SECOND,
                "ms" => 1_000_000,
                "us" | "µs" | "μs" => 1_000,
                "ns" => 1,
                _ => return None,
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if fraction.contains('.') || whole.len() > 20 {
                return None;
            }
            let whole_value: i128 = if whole.is_empty() {
                0
            } else {
                whole.parse().ok()?
            };
            let mut component = whole_value.checked_mul(unit_nanos)?;
            let mut scale = unit_nanos;
            for digit in fraction.bytes().take(30) {
                scale /= 10;
                component = component.checked_add(i128::from(digit - b'0') * scale)?;
            }
            total = total.checked_add(component)?;
            rest = after_unit;
        }
        Duration::from_nanos(if negative { -total } else { total })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CEL's string(duration) prints seconds with a fraction, such as `1.5s`.
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.abs();
        write!(formatter, "{sign}{}", magnitude / NANOS_PER_SECOND)?;
        let nanos = magnitude % NANOS_PER_SECOND;
        if nanos != 0 {
            let text = format!("{nanos:09}");
            write!(formatter, ".{}", text.trim_end_matches('0'))?;
        }
        formatter.write_str("s")
    }
}

/// Parses a time zone argument: `UTC`, `Z`, or a fixed offset `+05:30`, `-08:00`, `02:00`.
pub fn parse_time_zone_offset(zone: &str) -> Option<i128> {
    if zone.eq_ignore_ascii_case("utc") || zone == "Z" || zone.eq_ignore_ascii_case("gmt") {
        return Some(0);
    }
    let (sign, rest) = match zone.as_bytes().first() {
        Some(b'+') => (1, zone.get(1..)?),
        Some(b'-') => (-1, zone.get(1..)?),
        _ => (1, zone),
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i128 = hours.parse().ok()?;
    let minutes: i128 = minutes.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

fn is_leap_year(year: i128) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i128, month: i128) -> i128 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_timestamps() {
        let parsed = Timestamp::parse("2009-02-13T23:31:30Z");
        assert_eq!(parsed.map(|t| t.unix_seconds()), Some(1_234_567_890));
        let with_offset = Timestamp::parse("2009-02-14T00:31:30.250+01:00");
        assert_eq!(
            with_offset.map(|t| t.to_string()),
            Some("2009-02-13T23:31:30.250Z".to_string())
        );
        assert!(Timestamp::parse("0001-01-01T00:00:00Z").is_some());
        assert!(Timestamp::parse("9999-12-31T23:59:59.999999999Z").is_some());
        assert!(Timestamp::parse("2009-02-30T00:00:00Z").is_none());
        assert!(Timestamp::parse("2009-02-13").is_none());
        assert!(Timestamp::parse("").is_none());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(
            Duration::parse("1h2m3.5s").map(Duration::nanos),
            Some(3_723_500_000_000)
        );
        assert_eq!(
            Duration::parse("-1.5h").map(Duration::nanos),
            Some(-5_400_000_000_000)
        );
        assert_eq!(
            Duration::parse("100ms").map(Duration::nanos),
            Some(100_000_000)
        );
        assert!(Duration::parse("1x").is_none());
        assert!(Duration::parse("").is_none());
        assert!(Duration::parse("99999999999999999999999h").is_none());
        assert_eq!(
            Duration::parse("1.5s").map(|d| d.to_string()),
            Some("1.5s".to_string())
        );
    }
}
