//! The dead-letter file: one NDJSON line per record that could not be decoded, with the reason and the raw bytes.

use std::{path::PathBuf, sync::Arc};

use base64::{display::Base64Display, engine::general_purpose::STANDARD};
use serde::{Serialize, Serializer};
use tokio::{fs::File, io::AsyncWriteExt};

use super::{SinkError, SinkStats, error::RejectedItem, ndjson::Millis};
use crate::record::DeadLetter;

/// Appends dead letters to a file, or, without a path, only logs and counts them.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: Option<PathBuf>,
    file: Option<File>,
    buf: Vec<u8>,
    stats: Arc<SinkStats>,
}

impl DeadLetterWriter {
    /// A writer appending to `path` (created on the first dead letter), or logging only.
    pub fn new(path: Option<PathBuf>, stats: Arc<SinkStats>) -> Self {
        Self {
            path,
            file: None,
            buf: Vec::new(),
            stats,
        }
    }

    /// Logs and counts `letter`, and appends it to the file if there is one. The line is
    /// flushed before this returns, so the record may then be checkpointed past.
    pub async fn write(&mut self, letter: &DeadLetter) -> Result<(), SinkError> {
        self.stats.dead_lettered();
        tracing::warn!(
            stream = %letter.shard.stream,
            shard_id = %letter.shard.shard_id,
            sequence_number = %letter.raw.sequence_number,
            category = letter.category,
            reason = %letter.reason,
            "record dead-lettered (cannot be decoded, or the transform failed on it)"
        );
        if self.path.is_none() {
            return Ok(());
        }
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &Line::from(letter))?;
        self.append().await
    }

    /// Logs, counts and appends a `_bulk` item the destination refused (400, e.g. a mapping
    /// error): its status and error, the action and the document as sent, and the record's
    /// stream, shard and sequence number read back from the document.
    pub async fn write_rejected(
        &mut self,
        item: &[u8],
        rejected: &RejectedItem,
    ) -> Result<(), SinkError> {
        self.stats.dead_lettered();
        let mut lines = item.split(|&b| b == b'\n');
        let parse = |line: Option<&[u8]>| {
            line.and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                .unwrap_or_default()
        };
        let action = parse(lines.next());
        let document = parse(lines.next());
        let reason: serde_json::Value = serde_json::from_str(&rejected.reason)
            .unwrap_or_else(|_| rejected.reason.clone().into());
        tracing::warn!(
            stream = %document["stream"],
            shard_id = %document["shardId"],
            sequence_number = %document["sequenceNumber"],
            status = rejected.status,
            reason = %rejected.reason,
            "_bulk item rejected by the destination; dead-lettered"
        );
        if self.path.is_none() {
            return Ok(());
        }
        let line = serde_json::json!({
            "reason": reason,
            "category": "bulk_rejected",
            "status": rejected.status,
            "stream": document["stream"],
            "shardId": document["shardId"],
            "sequenceNumber": document["sequenceNumber"],
            "index": action["index"]["_index"],
            "id": action["index"]["_id"],
            "document": document,
        });
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &line)?;
        self.append().await
    }

    /// Logs, counts and appends an item the sink `sink` gave up delivering after
    /// `deadLetterAfter` (see [`super::SinkPipeline::with_give_up`]): the error and the item as
    /// it was sent, each of its lines as JSON.
    pub async fn write_undelivered(
        &mut self,
        sink: &str,
        item: &[u8],
        error: &SinkError,
        failing: std::time::Duration,
    ) -> Result<(), SinkError> {
        self.stats.dead_lettered();
        let lines: Vec<serde_json::Value> = item
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l)
                    .unwrap_or_else(|_| String::from_utf8_lossy(l).into_owned().into())
            })
            .collect();
        let reason = format!(
            "sink {sink:?} gave up after {}s of failed deliveries: {error}",
            failing.as_secs()
        );
        tracing::warn!(sink, %error, "undelivered item dead-lettered (deadLetterAfter)");
        if self.path.is_none() {
            return Ok(());
        }
        let line = serde_json::json!({
            "reason": reason,
            "category": "sink_gave_up",
            "sink": sink,
            "errorCategory": error.category(),
            "item": lines,
        });
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &line)?;
        self.append().await
    }

    /// Appends `buf` and a newline to the file, flushed.
    async fn append(&mut self) -> Result<(), SinkError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.buf.push(b'\n');
        let result = async {
            let file = match &mut self.file {
                Some(file) => file,
                None => self.file.insert(super::file::open_append(path).await?),
            };
            file.write_all(&self.buf).await?;
            file.flush().await
        }
        .await;
        result.map_err(|e| {
            self.file = None;
            SinkError::io(path.display().to_string(), e)
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    reason: &'a str,
    category: &'static str,
    stream: &'a str,
    shard_id: &'a str,
    sequence_number: &'a str,
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_arrival_timestamp: Option<Millis>,
    #[serde(serialize_with = "base64")]
    data: &'a [u8],
}

impl<'a> From<&'a DeadLetter> for Line<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        Self {
            reason: &d.reason,
            category: d.category,
            stream: &d.shard.stream,
            shard_id: &d.shard.shard_id,
            sequence_number: d.raw.sequence_number.as_str(),
            partition_key: &d.raw.partition_key,
            approximate_arrival_timestamp: d.raw.approximate_arrival_ms.map(Millis),
            data: &d.raw.data,
        }
    }
}

fn base64<S: Serializer>(data: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Base64Display::new(data, &STANDARD))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::record::{RawRecord, ShardContext};

    fn letter(seq: &str) -> DeadLetter {
        DeadLetter {
            raw: RawRecord {
                data: Bytes::from_static(&[0x1f, 0x8b, 0x00]),
                partition_key: "pk".into(),
                sequence_number: seq.parse().expect("seq"),
                approximate_arrival_ms: Some(1_700_000_000_123),
            },
            shard: Arc::new(ShardContext {
                stream: "orders".into(),
                shard_id: "shardId-0".into(),
                hash_range: (0, u128::MAX),
                tag: None,
            }),
            reason: "gzip: corrupt deflate stream".into(),
            category: "gzip",
        }
    }

    #[tokio::test]
    async fn appends_one_line_per_dead_letter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dead.ndjson");
        let stats = Arc::new(SinkStats::default());
        let mut w = DeadLetterWriter::new(Some(path.clone()), stats.clone());
        w.write(&letter("1")).await.expect("write");
        w.write(&letter("2")).await.expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            json!({
                "reason": "gzip: corrupt deflate stream",
                "category": "gzip",
                "stream": "orders",
                "shardId": "shardId-0",
                "sequenceNumber": "1",
                "partitionKey": "pk",
                "approximateArrivalTimestamp": "2023-11-14T22:13:20.123Z",
                "data": "H4sA",
            })
        );
        assert_eq!(lines[1]["sequenceNumber"], "2");
        assert_eq!(stats.dead_letters(), 2);
    }

    #[tokio::test]
    async fn without_a_path_it_only_counts() {
        let stats = Arc::new(SinkStats::default());
        let mut w = DeadLetterWriter::new(None, stats.clone());
        w.write(&letter("1")).await.expect("write");
        assert_eq!(stats.dead_letters(), 1);
    }
}
