//! A Go-style duration string (`"500ms"`, `"1s"`, `"1m30s"`), as Kubernetes and CEL's `duration()` read it.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern every duration in the spec must match: one or more `<integer><unit>` pairs.
///
/// Units are `ns`, `us`, `ms`, `s`, `m` and `h`. CEL's `duration()` accepts the same strings, so
/// admission rules can compare durations.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ns|us|ms|s|m|h))+$";

/// The largest duration that parses: `2562047h`, about 292 years.
///
/// Go, and so CEL's `duration()` in the API server, count durations in signed 64-bit
/// nanoseconds; a longer text cannot be compared by an admission rule, so it is rejected here
/// too. Each field has its own, much smaller bound (see [`crate::bounds`]).
pub const MAX_DURATION: StdDuration = StdDuration::from_secs(2_562_047 * 3600);

/// The longest duration text accepted, so that parsing and CEL's cost estimate stay small.
pub const MAX_DURATION_TEXT_LEN: usize = 64;

/// A duration written as a Go duration string.
///
/// The original text is kept so that a resource read and written back is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    text: String,
    value: StdDuration,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (expected e.g. \"200ms\", \"1s\" or \"1m30s\")")]
pub struct ParseDurationError {
    text: String,
    reason: &'static str,
}

impl Duration {
    /// The parsed value.
    pub fn get(&self) -> StdDuration {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A duration from milliseconds, written as `"<n>ms"` (or `"<n>s"` when whole seconds).
    pub fn from_millis(ms: u64) -> Self {
        let text = if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        };
        Self {
            text,
            value: StdDuration::from_millis(ms),
        }
    }
}

const TOO_LARGE: &str =
    "it is longer than 2562047h (about 292 years), the most Kubernetes can compare";

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError {
            text: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.len() > MAX_DURATION_TEXT_LEN {
            return Err(err("it is longer than 64 characters"));
        }
        let mut total = StdDuration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("each part must start with a whole number"));
            }
            let number: u64 = rest[..digits].parse().map_err(|_| err(TOO_LARGE))?;
            rest = &rest[digits..];
            if rest.starts_with('.') {
                return Err(err(
                    "fractions are not supported, use a smaller unit (1500ms, not 1.5s)",
                ));
            }
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let part = match &rest[..unit_len] {
                "ns" => Some(StdDuration::from_nanos(number)),
                "us" => Some(StdDuration::from_micros(number)),
                "ms" => Some(StdDuration::from_millis(number)),
                "s" => Some(StdDuration::from_secs(number)),
                "m" => number.checked_mul(60).map(StdDuration::from_secs),
                "h" => number.checked_mul(3600).map(StdDuration::from_secs),
                "" => return Err(err("a number has no unit")),
                _ => return Err(err("the unit must be one of ns, us, ms, s, m, h")),
            };
            rest = &rest[unit_len..];
            total = part
                .and_then(|p| total.checked_add(p))
                .filter(|t| *t <= MAX_DURATION)
                .ok_or_else(|| err(TOO_LARGE))?;
        }
        Ok(Self {
            text: text.to_owned(),
            value: total,
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
            "maxLength": MAX_DURATION_TEXT_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("200ms", StdDuration::from_millis(200)),
            ("1s", StdDuration::from_secs(1)),
            ("1m30s", StdDuration::from_secs(90)),
            ("2h", StdDuration::from_secs(7200)),
            ("1500us", StdDuration::from_micros(1500)),
            ("10ns", StdDuration::from_nanos(10)),
        ];
        for (text, want) in cases {
            let got: Duration = text.parse().expect(text);
            assert_eq!(got.get(), want, "{text}");
            assert_eq!(got.as_str(), text);
        }
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("1", "no unit"),
            ("s", "whole number"),
            ("1.5s", "fractions are not supported"),
            ("10 s", "no unit"),
            ("3d", "ns, us, ms, s, m, h"),
        ] {
            let err = text.parse::<Duration>().expect_err(text).to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
            assert!(err.contains("1m30s"), "the error shows an example: {err}");
        }
    }

    #[test]
    fn rejects_durations_cel_cannot_compare_without_overflowing() {
        let max: Duration = "2562047h".parse().expect("the stated maximum parses");
        assert_eq!(max.get(), MAX_DURATION);
        for text in [
            "9999999999999999h",
            "2562048h",
            "2562047h1s",
            "99999999999999999999s",
            "18446744073709551615m",
            "153722867281m1m",
        ] {
            let err = text.parse::<Duration>().expect_err(text).to_string();
            assert!(err.contains("2562047h"), "{text:?}: {err}");
        }
        let long = "1s".repeat(33);
        let err = long.parse::<Duration>().expect_err("too long").to_string();
        assert!(err.contains("64 characters"), "{err}");
    }

    #[test]
    fn from_millis_writes_the_shortest_text() {
        assert_eq!(Duration::from_millis(2000).as_str(), "2s");
        assert_eq!(Duration::from_millis(250).as_str(), "250ms");
    }
}
