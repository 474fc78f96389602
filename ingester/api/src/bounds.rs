//! The allowed range of every duration and size in the spec, shared by the CRD's CEL rules, the standalone validator and the code that uses the values.

use std::time::Duration as StdDuration;

use kube::core::{Reason, Rule};

use crate::Duration;

/// Where worker pods mount `spec.workers.scratch`: the only writable directory of a worker, so
/// `sink.file.path` and `sink.deadLetterPath` of a fleet must be below it.
pub const SCRATCH_MOUNT_PATH: &str = "/var/lib/kinesis-ingester";

/// Where worker pods mount the Secret of `sink.http.headersFrom` (read-only, one file per key).
/// The standalone ingester reads the same files from `$KINESIS_INGESTER_HEADERS_DIR`.
pub const HEADERS_MOUNT_PATH: &str = "/etc/kinesis-ingester/headers";

/// Where a worker pod mounts `network.caBundle` (as the file `ca.pem`).
pub const CA_BUNDLE_MOUNT_PATH: &str = "/etc/kinesis-ingester/ca";

/// Environment variable that overrides [`CA_BUNDLE_MOUNT_PATH`] (tests).
pub const CA_BUNDLE_DIR_ENV: &str = "KINESIS_INGESTER_CA_DIR";

/// Environment variable that overrides [`HEADERS_MOUNT_PATH`] (standalone runs, tests).
pub const HEADERS_DIR_ENV: &str = "KINESIS_INGESTER_HEADERS_DIR";

/// The range of one duration field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationBounds {
    /// Path of the field below `spec`, e.g. `read.pollInterval`.
    pub field: &'static str,
    /// Shortest allowed value.
    pub min: StdDuration,
    /// Longest allowed value.
    pub max: StdDuration,
    /// Why the range is what it is.
    pub why: &'static str,
}

/// `read.pollInterval`: 200ms to 5m.
pub const POLL_INTERVAL: DurationBounds = DurationBounds {
    field: "read.pollInterval",
    min: StdDuration::from_millis(200),
    max: StdDuration::from_secs(5 * 60),
    why: "Kinesis allows 5 GetRecords calls per shard per second, and a shard iterator expires after 5 minutes",
};

/// `read.shardSyncInterval`: 1s to 24h.
pub const SHARD_SYNC_INTERVAL: DurationBounds = DurationBounds {
    field: "read.shardSyncInterval",
    min: StdDuration::from_secs(1),
    max: StdDuration::from_secs(24 * 3600),
    why: "each sync is a ListShards call, limited per stream, and a reshard must be noticed within a day",
};

/// `sink.batch.maxAge`: 10ms to 15m.
pub const BATCH_MAX_AGE: DurationBounds = DurationBounds {
    field: "sink.batch.maxAge",
    min: StdDuration::from_millis(10),
    max: StdDuration::from_secs(15 * 60),
    why: "records wait in memory, unacknowledged, until their batch is sent",
};

/// `sink.http.timeout`: 1s to 5m.
pub const HTTP_TIMEOUT: DurationBounds = DurationBounds {
    field: "sink.http.timeout",
    min: StdDuration::from_secs(1),
    max: StdDuration::from_secs(5 * 60),
    why: "a shorter timeout fails most bulk requests, and a longer one stalls the shards behind a hung endpoint",
};

/// `transform.http.timeout`: 1s to 15m.
pub const TRANSFORM_TIMEOUT: DurationBounds = DurationBounds {
    field: "transform.http.timeout",
    min: StdDuration::from_secs(1),
    max: StdDuration::from_secs(15 * 60),
    why: "a Lambda runs at most 15 minutes, and a shard waits for its batch",
};

/// `transform.http.retryDuration`: 0s to 24h.
pub const TRANSFORM_RETRY_DURATION: DurationBounds = DurationBounds {
    field: "transform.http.retryDuration",
    min: StdDuration::ZERO,
    max: StdDuration::from_secs(24 * 3600),
    why: "a shard reads nothing else while its batch is retried, and Kinesis keeps records 24h by default",
};

/// `sink.deadLetterAfter`: 1s to 24h.
pub const DEAD_LETTER_AFTER: DurationBounds = DurationBounds {
    field: "sink.deadLetterAfter",
    min: StdDuration::from_secs(1),
    max: StdDuration::from_secs(24 * 3600),
    why: "a shorter wait dead-letters records on a blip, and Kinesis keeps records 24h by default",
};

/// `workers.autoscaling.targetLag`: 1s to 24h.
pub const TARGET_LAG: DurationBounds = DurationBounds {
    field: "workers.autoscaling.targetLag",
    min: StdDuration::from_secs(1),
    max: StdDuration::from_secs(24 * 3600),
    why: "a caught-up shard's MillisBehindLatest moves between 0 and a second, so a smaller target never settles",
};

/// `workers.autoscaling.scaleUpStabilization`: 0s to 1h.
pub const SCALE_UP_STABILIZATION: DurationBounds =
    stabilization("workers.autoscaling.scaleUpStabilization");

/// `workers.autoscaling.scaleDownStabilization`: 0s to 1h.
pub const SCALE_DOWN_STABILIZATION: DurationBounds =
    stabilization("workers.autoscaling.scaleDownStabilization");

/// An autoscaler's stabilization window: 0s to 1h.
const fn stabilization(field: &'static str) -> DurationBounds {
    DurationBounds {
        field,
        min: StdDuration::ZERO,
        max: StdDuration::from_secs(3600),
        why: "the operator remembers an hour of recommendations",
    }
}

/// Every bounded duration of the spec.
pub const DURATIONS: [DurationBounds; 10] = [
    POLL_INTERVAL,
    SHARD_SYNC_INTERVAL,
    BATCH_MAX_AGE,
    HTTP_TIMEOUT,
    TRANSFORM_TIMEOUT,
    TRANSFORM_RETRY_DURATION,
    DEAD_LETTER_AFTER,
    TARGET_LAG,
    SCALE_UP_STABILIZATION,
    SCALE_DOWN_STABILIZATION,
];

impl DurationBounds {
    /// What the value must be, e.g. `must be between 200ms and 5m: <why>`.
    pub fn requirement(&self) -> String {
        format!(
            "must be between {} and {}: {}",
            go_text(self.min),
            go_text(self.max),
            self.why
        )
    }

    /// The CEL rule on the field itself, so the API server names the field.
    pub fn rule(&self) -> Rule {
        Rule::new(format!(
            "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
            go_text(self.min),
            go_text(self.max)
        ))
        .message(format!("{} {}", self.field, self.requirement()).as_str())
        .reason(Reason::FieldValueInvalid)
    }

    /// Whether `value` is in range.
    pub fn contains(&self, value: &Duration) -> bool {
        (self.min..=self.max).contains(&value.get())
    }

    /// `value` forced into the range: what the code uses, so that a resource stored before these
    /// bounds existed cannot stall or crash anything.
    pub fn clamp(&self, value: &Duration) -> StdDuration {
        value.get().clamp(self.min, self.max)
    }
}

/// The range of `workers.scratch.size`: 1Mi to 16Ti.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeBounds {
    /// Path of the field below `spec`.
    pub field: &'static str,
    /// Smallest allowed value, as a quantity.
    pub min: &'static str,
    /// Largest allowed value, as a quantity.
    pub max: &'static str,
}

/// `workers.scratch.size`.
pub const SCRATCH_SIZE: SizeBounds = SizeBounds {
    field: "workers.scratch.size",
    min: "1Mi",
    max: "16Ti",
};

/// The pattern of a scratch size: a whole number of Mi, Gi or Ti.
pub const SIZE_PATTERN: &str = "^[1-9][0-9]{0,9}(Mi|Gi|Ti)$";

impl SizeBounds {
    /// What the value must be.
    pub fn requirement(&self) -> String {
        format!("must be between {} and {}", self.min, self.max)
    }

    /// The CEL rule on the field itself.
    pub fn rule(&self) -> Rule {
        Rule::new(format!(
            "quantity(self).compareTo(quantity('{}')) >= 0 && quantity(self).compareTo(quantity('{}')) <= 0",
            self.min, self.max
        ))
        .message(format!("{} {}", self.field, self.requirement()).as_str())
        .reason(Reason::FieldValueInvalid)
    }

    /// Whether `value` (which matches [`SIZE_PATTERN`]) is in range.
    pub fn contains(&self, value: &str) -> bool {
        match (bytes(value), bytes(self.min), bytes(self.max)) {
            (Some(v), Some(min), Some(max)) => (min..=max).contains(&v),
            _ => false,
        }
    }
}

/// Bytes of a size such as `512Mi`; `None` when it is not one or does not fit in a u64.
pub fn bytes(size: &str) -> Option<u64> {
    let digits = size.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = size.split_at(digits);
    let shift = match unit {
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return None,
    };
    let number: u64 = number.parse().ok()?;
    number.checked_mul(1u64 << shift)
}

/// `d` written the way Go prints it for whole units: `200ms`, `10s`, `5m`, `24h`.
fn go_text(d: StdDuration) -> String {
    let ms = d.as_millis();
    if ms == 0 || !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_written_the_way_go_reads_them() {
        let texts: Vec<(String, String)> = DURATIONS
            .iter()
            .map(|b| (go_text(b.min), go_text(b.max)))
            .collect();
        assert_eq!(
            texts,
            [
                ("200ms", "5m"),
                ("1s", "24h"),
                ("10ms", "15m"),
                ("1s", "5m"),
                ("1s", "15m"),
                ("0ms", "24h"),
                ("1s", "24h"),
                ("1s", "24h"),
                ("0ms", "1h"),
                ("0ms", "1h"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        for b in DURATIONS {
            assert!(b.min < b.max, "{}", b.field);
            for text in [go_text(b.min), go_text(b.max)] {
                let parsed: Duration = text.parse().expect("a bound parses");
                assert!(b.contains(&parsed), "{}: {text}", b.field);
            }
        }
    }

    #[test]
    fn clamp_keeps_values_in_range() {
        let d = |t: &str| t.parse::<Duration>().expect(t);
        assert_eq!(
            SHARD_SYNC_INTERVAL.clamp(&d("0s")),
            StdDuration::from_secs(1)
        );
        assert_eq!(
            SHARD_SYNC_INTERVAL.clamp(&d("2562047h")),
            StdDuration::from_secs(24 * 3600)
        );
        assert_eq!(POLL_INTERVAL.clamp(&d("1s")), StdDuration::from_secs(1));
        assert!(!POLL_INTERVAL.contains(&d("199ms")));
        assert!(POLL_INTERVAL.contains(&d("4m59s")));
    }

    #[test]
    fn sizes_are_read_in_binary_units_without_overflow() {
        assert_eq!(bytes("1Mi"), Some(1 << 20));
        assert_eq!(bytes("16Ti"), Some(16 << 40));
        assert_eq!(bytes("1G"), None);
        assert_eq!(bytes("Mi"), None);
        assert_eq!(bytes("99999999999999Ti"), None);
        assert!(SCRATCH_SIZE.contains("512Mi"));
        assert!(SCRATCH_SIZE.contains("16Ti"));
        assert!(!SCRATCH_SIZE.contains("17Ti"));
        assert!(!SCRATCH_SIZE.contains("0Mi"));
    }
}
