//! Durations in Go's syntax (`"300s"`, `"5m"`, `"1h30m"`, `"1.5h"`), as medik8s writes them with
//! `metav1.Duration`, so NodeHealthCheck manifests move over unchanged.
//!
//! The text the user wrote is kept and written back as is: a controller that round-trips an object
//! must not rewrite `"5m"` into `"5m0s"` and cause a needless update.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The schema pattern of a non-negative duration; the same language as medik8s' CRDs, so the
/// apiserver rejects exactly what medik8s' apiserver rejects. [`parse_go_duration`] accepts the
/// same language, so nothing the apiserver admits fails to parse here.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// The schema pattern of a duration that may be negative (medik8s' `healthyDelay`).
pub const SIGNED_DURATION_PATTERN: &str = r"^-?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Longest duration text the schema admits. Bounded so the apiserver's CEL cost estimate for rules
/// that call `duration()` on these strings stays small.
pub const DURATION_MAX_LENGTH: u32 = 64;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not in Go duration syntax (`<number><unit>` repeated, units ns, us, µs, ms, s, m, h).
    #[error(
        "invalid duration {0:?}: expected Go duration syntax such as \"300s\", \"5m\" or \"1h30m\""
    )]
    Syntax(String),
    /// The value does not fit in Go's `time.Duration` (about 292 years).
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Parses a non-negative duration in Go syntax into a [`std::time::Duration`].
///
/// Accepts exactly the language of [`DURATION_PATTERN`]; values above Go's maximum
/// (`i64::MAX` nanoseconds) are rejected, because the apiserver's CEL `duration()` rejects them too.
pub fn parse_go_duration(text: &str) -> Result<StdDuration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_owned());
    let overflow = || DurationError::Overflow(text.to_owned());
    if text.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return Err(syntax());
        }
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                if frac_len == 0 {
                    return Err(syntax());
                }
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        let (unit_nanos, unit_len) = unit_of(after_number).ok_or_else(syntax)?;
        rest = &after_number[unit_len..];

        let int_value: u128 = int_part.parse().map_err(|_| overflow())?;
        let mut nanos = int_value.checked_mul(unit_nanos).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Digits past 30 cannot change the result (units are at most 3.6e12 ns), and keeping
            // them would overflow the scale.
            let digits = &frac_part[..frac_part.len().min(30)];
            let scale = 10u128.pow(digits.len() as u32);
            let frac_value: u128 = digits.parse().map_err(|_| syntax())?;
            nanos += frac_value * unit_nanos / scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
    }
    let secs = (total / 1_000_000_000) as u64;
    let subsec = (total % 1_000_000_000) as u32;
    Ok(StdDuration::new(secs, subsec))
}

/// The unit at the start of `s`: its length in nanoseconds and in bytes. Longest match first, so
/// `ms` is not read as `m` followed by garbage.
fn unit_of(s: &str) -> Option<(u128, usize)> {
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("h", 3600 * 1_000_000_000),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| s.starts_with(unit))
        .map(|(unit, nanos)| (*nanos, unit.len()))
}

/// Formats a duration in Go syntax, choosing the largest units that keep it exact
/// (`"1h30m"`, `"300ms"`, `"1500us"`).
pub fn format_go_duration(value: StdDuration) -> String {
    let nanos = value.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if !nanos.is_multiple_of(1_000_000_000) {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = value.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A non-negative duration written in Go syntax (`"300s"`, `"5m"`, `"1h30m"`, `"1.5h"`).
///
/// Equality and ordering compare the length of time, not the text: `"5m"` equals `"300s"`.
#[derive(Clone)]
pub struct Duration {
    text: String,
    value: StdDuration,
}

impl Duration {
    /// Parses Go duration syntax.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        Ok(Self {
            value: parse_go_duration(text)?,
            text: text.to_owned(),
        })
    }

    /// A duration of whole seconds, written as Go would (`from_secs(300)` is `"5m"`).
    pub fn from_secs(secs: u64) -> Self {
        StdDuration::from_secs(secs).into()
    }

    /// The length of time.
    pub fn get(&self) -> StdDuration {
        self.value
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<StdDuration> for Duration {
    fn from(value: StdDuration) -> Self {
        Self {
            text: format_go_duration(value),
            value,
        }
    }
}

impl From<Duration> for StdDuration {
    fn from(value: Duration) -> Self {
        value.value
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl Eq for Duration {}
impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Duration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl std::hash::Hash for Duration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({:?})", self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
        })
    }
}

/// A duration in Go syntax that may be negative (`"-1s"`): medik8s' `healthyDelay`, where a
/// negative value means "never on its own; wait for a person".
#[derive(Clone, PartialEq, Eq)]
pub struct SignedDuration {
    negative: bool,
    magnitude: Duration,
}

impl SignedDuration {
    /// Parses Go duration syntax with an optional leading `-`.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let value = parse_go_duration(unsigned).map_err(|err| match err {
            DurationError::Syntax(_) => DurationError::Syntax(text.to_owned()),
            DurationError::Overflow(_) => DurationError::Overflow(text.to_owned()),
        })?;
        Ok(Self {
            // "-0s" is zero, not "never".
            negative: negative && !value.is_zero(),
            magnitude: Duration {
                text: unsigned.to_owned(),
                value,
            },
        })
    }

    /// A non-negative value.
    pub fn positive(value: StdDuration) -> Self {
        Self {
            negative: false,
            magnitude: value.into(),
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The length of time, or `None` when negative.
    pub fn non_negative(&self) -> Option<StdDuration> {
        (!self.negative).then_some(self.magnitude.value)
    }
}

impl fmt::Display for SignedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.magnitude.text)
    }
}

impl fmt::Debug for SignedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedDuration(\"{self}\")")
    }
}

impl FromStr for SignedDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SignedDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SignedDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for SignedDuration {
    fn schema_name() -> Cow<'static, str> {
        "SignedDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": SIGNED_DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> StdDuration {
        StdDuration::from_millis(n)
    }

    #[test]
    fn parses_go_syntax() {
        let cases: &[(&str, StdDuration)] = &[
            ("300s", StdDuration::from_secs(300)),
            ("5m", StdDuration::from_secs(300)),
            ("1h30m", StdDuration::from_secs(5400)),
            ("1.5h", StdDuration::from_secs(5400)),
            ("2h45m", StdDuration::from_secs(9900)),
            ("300ms", ms(300)),
            ("1.5s", ms(1500)),
            ("10us", StdDuration::from_micros(10)),
            ("10µs", StdDuration::from_micros(10)),
            ("7ns", StdDuration::from_nanos(7)),
            ("1m0s", StdDuration::from_secs(60)),
            ("0s", StdDuration::ZERO),
            ("0.000000001s", StdDuration::from_nanos(1)),
            ("1h1m1s1ms1us1ns", StdDuration::new(3661, 1_001_001)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for text in [
            "", "5", "0", "s", "m5", "5 m", "-5m", "+5m", "5min", "5M", "1.h", ".5h", "5d",
            "1h 30m", "5mm", "abc",
        ] {
            assert!(
                matches!(parse_go_duration(text), Err(DurationError::Syntax(_))),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn rejects_values_go_cannot_hold() {
        assert!(matches!(
            parse_go_duration("2562048h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_go_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(parse_go_duration("2562047h").is_ok());
    }

    #[test]
    fn formats_with_the_largest_exact_units() {
        for (value, want) in [
            (StdDuration::from_secs(300), "5m"),
            (StdDuration::from_secs(5400), "1h30m"),
            (StdDuration::from_secs(3601), "1h1s"),
            (ms(1500), "1500ms"),
            (StdDuration::from_micros(3), "3us"),
            (StdDuration::from_nanos(3), "3ns"),
            (StdDuration::ZERO, "0s"),
        ] {
            assert_eq!(format_go_duration(value), want);
            assert_eq!(
                parse_go_duration(want),
                Ok(value),
                "formatted text parses back"
            );
        }
    }

    #[test]
    fn keeps_the_written_text_and_compares_by_value() {
        let written: Duration = serde_json::from_str("\"1.5h\"").unwrap();
        assert_eq!(serde_json::to_string(&written).unwrap(), "\"1.5h\"");
        assert_eq!(written, Duration::parse("90m").unwrap());
        assert!(Duration::parse("59s").unwrap() < Duration::from_secs(60));
        assert!(serde_json::from_str::<Duration>("\"5 minutes\"").is_err());
        assert!(serde_json::from_str::<Duration>("300").is_err());
    }

    #[test]
    fn signed_durations_allow_a_leading_minus() {
        let never = SignedDuration::parse("-1s").unwrap();
        assert!(never.is_negative());
        assert_eq!(never.non_negative(), None);
        assert_eq!(never.to_string(), "-1s");
        let delay = SignedDuration::parse("90s").unwrap();
        assert_eq!(delay.non_negative(), Some(StdDuration::from_secs(90)));
        assert!(!SignedDuration::parse("-0s").unwrap().is_negative());
        assert!(SignedDuration::parse("--1s").is_err());
        assert_eq!(
            serde_json::to_string(&SignedDuration::parse("-5m").unwrap()).unwrap(),
            "\"-5m\""
        );
    }
}
