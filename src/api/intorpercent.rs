//! A count of nodes written either as a number (`3`) or as a percentage of the pool (`"51%"`),
//! as medik8s' `minHealthy`/`maxUnhealthy` (Kubernetes `intstr.IntOrString`).

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The schema pattern for the string form; medik8s' exact pattern. It also admits plain digit
/// strings (`"3"`), which are read as numbers.
pub const INT_OR_PERCENT_PATTERN: &str = r"^((100|[0-9]{1,2})%|[0-9]+)$";

/// A non-negative number of nodes, or a whole percentage (0-100) of the selected nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    /// An absolute number of nodes.
    Int(u32),
    /// A percentage of the selected nodes, 0 to 100.
    Percent(u8),
}

/// Why an int-or-percent value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {0:?}: expected a non-negative integer or a percentage from 0% to 100%")]
pub struct IntOrPercentError(pub String);

impl IntOrPercent {
    /// Parses the string form: `"51%"` or `"3"`.
    pub fn parse(text: &str) -> Result<Self, IntOrPercentError> {
        let err = || IntOrPercentError(text.to_owned());
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match text.strip_suffix('%') {
            // Mirrors the pattern: one or two digits, or exactly "100".
            Some(number) if all_digits(number) && (number.len() <= 2 || number == "100") => {
                number.parse().map(Self::Percent).map_err(|_| err())
            }
            Some(_) => Err(err()),
            None if all_digits(text) => text.parse().map(Self::Int).map_err(|_| err()),
            None => Err(err()),
        }
    }

    /// The number of nodes this stands for in a pool of `total` nodes.
    ///
    /// Percentages are scaled like Kubernetes' `intstr.GetScaledValueFromIntOrPercent`:
    /// `ceil(percent × total / 100)` when `round_up`, else `floor`. medik8s rounds both
    /// `minHealthy` and `maxUnhealthy` up; we do the same so a pool behaves identically.
    pub fn scaled(&self, total: usize, round_up: bool) -> usize {
        match *self {
            Self::Int(n) => n as usize,
            Self::Percent(p) => {
                let product = p as usize * total;
                if round_up {
                    product.div_ceil(100)
                } else {
                    product / 100
                }
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => serializer.serialize_u32(*n),
            Self::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = IntOrPercent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a percentage such as \"51%\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom(IntOrPercentError(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom(IntOrPercentError(v.to_string())))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                IntOrPercent::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "IntOrPercent".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The structural-schema form of an int-or-string: no `type`, the extension alone (kube's
        // structural rewriter would empty an `anyOf` of types anyway). The pattern only applies to
        // strings; a negative integer is rejected by a CEL rule on each field that uses this
        // type (see `NON_NEGATIVE_INT_OR_PERCENT`).
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": INT_OR_PERCENT_PATTERN,
        })
    }
}

/// CEL rule for int-or-percent fields: a number must not be negative (the pattern only covers
/// the string form).
pub const NON_NEGATIVE_INT_OR_PERCENT: &str = "type(self) == int ? self >= 0 : true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_percentages() {
        for (text, want) in [
            ("0", IntOrPercent::Int(0)),
            ("3", IntOrPercent::Int(3)),
            ("0%", IntOrPercent::Percent(0)),
            ("51%", IntOrPercent::Percent(51)),
            ("100%", IntOrPercent::Percent(100)),
            ("07%", IntOrPercent::Percent(7)),
        ] {
            assert_eq!(IntOrPercent::parse(text), Ok(want), "{text}");
        }
        for text in [
            "", "%", "007%", "101%", "1000%", "-1", "-5%", "5.5%", "five", "5 %", " 5",
        ] {
            assert!(
                IntOrPercent::parse(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn deserializes_from_json_numbers_and_strings() {
        let from = |json: &str| serde_json::from_str::<IntOrPercent>(json);
        assert_eq!(from("2").unwrap(), IntOrPercent::Int(2));
        assert_eq!(from("\"49%\"").unwrap(), IntOrPercent::Percent(49));
        assert_eq!(from("\"2\"").unwrap(), IntOrPercent::Int(2));
        assert!(from("-1").is_err());
        assert!(from("\"120%\"").is_err());
        assert!(from("1.5").is_err());
        assert_eq!(
            serde_json::to_string(&IntOrPercent::Percent(51)).unwrap(),
            "\"51%\""
        );
        assert_eq!(serde_json::to_string(&IntOrPercent::Int(4)).unwrap(), "4");
    }

    #[test]
    fn scales_percentages_like_kubernetes_intstr() {
        // (value, total, round_up, expected)
        let cases = [
            (IntOrPercent::Percent(51), 3, true, 2),  // 1.53 -> 2
            (IntOrPercent::Percent(51), 3, false, 1), // 1.53 -> 1
            (IntOrPercent::Percent(49), 3, true, 2),  // 1.47 -> 2
            (IntOrPercent::Percent(51), 10, true, 6), // 5.1 -> 6
            (IntOrPercent::Percent(50), 4, true, 2),  // exact
            (IntOrPercent::Percent(100), 7, true, 7),
            (IntOrPercent::Percent(0), 7, true, 0),
            (IntOrPercent::Percent(1), 1, true, 1),
            (IntOrPercent::Percent(51), 0, true, 0),
            (IntOrPercent::Int(5), 3, true, 5), // absolute numbers are not capped
        ];
        for (value, total, round_up, want) in cases {
            assert_eq!(
                value.scaled(total, round_up),
                want,
                "{value} of {total}, round_up={round_up}"
            );
        }
    }
}
