//! Kinesis sequence numbers and checkpoint positions, compared as numbers rather than strings.

use std::{cmp::Ordering, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};

/// A Kinesis sequence number: a decimal integer of up to 129 digits.
///
/// Ordering is numeric: `"9" < "10"`, which string comparison gets wrong. Leading zeros are
/// removed when parsing, so equal numbers have equal text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(Arc<str>);

/// A sequence number that is not a decimal integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected a decimal integer")]
pub struct InvalidSequenceNumber(pub String);

impl SequenceNumber {
    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SequenceNumber {
    type Err = InvalidSequenceNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 129 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber(s.to_owned()));
        }
        let trimmed = s.trim_start_matches('0');
        Ok(Self(if trimmed.is_empty() { "0" } else { trimmed }.into()))
    }
}

impl TryFrom<String> for SequenceNumber {
    type Error = InvalidSequenceNumber;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SequenceNumber> for String {
    fn from(s: SequenceNumber) -> Self {
        s.0.to_string()
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is larger; equal lengths compare digit by digit.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position inside a shard: a Kinesis record and, for a KPL-aggregated record, the index of a
/// user record inside it. Ordered by sequence number, then sub-sequence number; a whole record
/// (`sub_sequence: None`) sorts after all of its user records.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The Kinesis record's sequence number.
    pub sequence: SequenceNumber,
    /// Index of the user record inside an aggregated record; `None` means the whole record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence: Option<u64>,
}

impl Position {
    /// The position just after the whole record `sequence`.
    pub fn whole(sequence: SequenceNumber) -> Self {
        Self {
            sequence,
            sub_sequence: None,
        }
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sequence.cmp(&other.sequence).then_with(|| {
            match (self.sub_sequence, other.sub_sequence) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            }
        })
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        s.parse().expect(s)
    }

    #[test]
    fn compares_numerically_not_as_strings() {
        assert!(seq("9") < seq("10"));
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("4959033827149025660855969253836157109592157598913658889")
        );
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("000"), seq("0"));
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
    }

    #[test]
    fn a_whole_record_sorts_after_its_user_records() {
        let user = |n| Position {
            sequence: seq("5"),
            sub_sequence: Some(n),
        };
        assert!(user(0) < user(1));
        assert!(user(99) < Position::whole(seq("5")));
        assert!(Position::whole(seq("5")) < user(0).clone().with_sequence(seq("6")));
    }

    impl Position {
        fn with_sequence(mut self, s: SequenceNumber) -> Self {
            self.sequence = s;
            self
        }
    }
}
