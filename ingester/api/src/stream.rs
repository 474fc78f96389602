//! Naming a stream and a place in its shards: the stream reference, starting positions, and the names derived from a spec.

use crate::{
    KinesisIngester, StartingPositionType, StreamSpec,
    sequence::{Position, SequenceNumber},
};

/// Names a stream by name or ARN, as every Kinesis call accepts either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRef {
    /// Stream name (same account and region as the credentials).
    Name(String),
    /// Stream ARN.
    Arn(String),
}

impl StreamRef {
    /// The stream's name, from the name itself or the ARN's last segment.
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) => n,
            Self::Arn(a) => a.rsplit('/').next().unwrap_or(a),
        }
    }
}

impl StreamSpec {
    /// The stream this spec names: the ARN when set, else the name.
    pub fn reference(&self) -> StreamRef {
        match (&self.arn, &self.name) {
            (Some(arn), _) => StreamRef::Arn(arn.clone()),
            (None, Some(name)) => StreamRef::Name(name.clone()),
            // validate() and admission guarantee one of them.
            (None, None) => StreamRef::Name(String::new()),
        }
    }
}

/// Where a shard iterator starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained record.
    TrimHorizon,
    /// After the newest record.
    Latest,
    /// The first record at or after a time, in ms since the Unix epoch.
    AtTimestamp(i64),
    /// At a record (used to resume inside an aggregated record).
    AtSequence(SequenceNumber),
    /// Just after a record.
    AfterSequence(SequenceNumber),
}

impl StartAt {
    /// Where to resume after a checkpoint: after a whole record, or at an aggregated record
    /// whose user records up to the checkpoint's sub-sequence number are then skipped.
    pub fn resume(position: &Position) -> Self {
        match position.sub_sequence {
            None => Self::AfterSequence(position.sequence.clone()),
            Some(_) => Self::AtSequence(position.sequence.clone()),
        }
    }
}

impl KinesisIngester {
    /// The stream the spec names.
    pub fn stream_ref(&self) -> StreamRef {
        self.spec.stream.reference()
    }

    /// Name of the enhanced fan-out consumer: `read.consumerName`, else
    /// `kinesis-ingester-<stream>`.
    pub fn consumer_name(&self) -> String {
        self.spec
            .read
            .consumer_name
            .clone()
            .unwrap_or_else(|| format!("kinesis-ingester-{}", self.stream_ref().name()))
    }

    /// Name of the enhanced fan-out consumer a fleet registers: `read.consumerName`, else
    /// `kinesis-operator-<namespace>-<name>`. One per ingester, so two ingesters on one stream
    /// (other teams, other sinks) never share, and never deregister, each other's consumer; the
    /// same name again after the ingester is re-created, so a retained table's consumer is
    /// adopted instead of leaked. At most 17 + 63 + 1 + 45 = 126 characters (namespace and name
    /// limits), within the consumer name's 128.
    pub fn fleet_consumer_name(&self) -> String {
        if let Some(name) = &self.spec.read.consumer_name {
            return name.clone();
        }
        let ns = self.metadata.namespace.as_deref().unwrap_or("default");
        let name = self.metadata.name.as_deref().unwrap_or_default();
        format!("kinesis-operator-{ns}-{name}")
    }

    /// The configured starting position; an error names what is wrong with the timestamp.
    pub fn start_at(&self) -> Result<StartAt, String> {
        let sp = &self.spec.read.starting_position;
        Ok(match sp.kind {
            StartingPositionType::TrimHorizon => StartAt::TrimHorizon,
            StartingPositionType::Latest => StartAt::Latest,
            StartingPositionType::AtTimestamp => {
                let text = sp.timestamp.as_deref().unwrap_or_default();
                let ts: jiff::Timestamp = text.parse().map_err(|e| {
                    format!("{text:?} is not an RFC 3339 time such as 2026-11-23T15:00:00Z: {e}")
                })?;
                StartAt::AtTimestamp(ts.as_millisecond())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingester(ns: &str, name: &str) -> KinesisIngester {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1",
            "kind": "KinesisIngester",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"stream": {"name": "orders"}, "sink": {"stdout": {}}},
        }))
        .expect("an ingester")
    }

    /// Issue 10 §4: two fleets on one stream used to share `kinesis-ingester-<stream>`, so
    /// deleting one deregistered the other's consumer.
    #[test]
    fn each_fleet_has_its_own_consumer_on_a_shared_stream() {
        let a = ingester("team-a", "orders");
        let b = ingester("team-b", "orders");
        let c = ingester("team-a", "billing");
        assert_eq!(a.fleet_consumer_name(), "kinesis-operator-team-a-orders");
        assert_ne!(a.fleet_consumer_name(), b.fleet_consumer_name());
        assert_ne!(a.fleet_consumer_name(), c.fleet_consumer_name());
        assert_eq!(
            a.fleet_consumer_name(),
            ingester("team-a", "orders").fleet_consumer_name(),
            "stable when re-created"
        );
        let longest = ingester(&"n".repeat(63), &"x".repeat(45)).fleet_consumer_name();
        assert!(longest.len() <= 128, "{}", longest.len());
    }
}
