//! Batching: encodes chunks into request bodies that close on a record count, a byte size or an age, and keeps each chunk's checkpoint with the batch holding its last record.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use kinesis_ingester_api::{BatchSpec, bounds};
use tokio::time::Instant;

use super::{
    ndjson::Encoding,
    s3::{PartitionKey, Partitioner},
};
use kinesis_ingester_api::sequence::Position;

use crate::record::{Chunk, Reading};

/// When a batch closes: whichever limit is reached first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most records in a batch.
    pub max_records: usize,
    /// Most encoded bytes in a batch; a single larger record is sent alone.
    pub max_bytes: usize,
    /// Longest a record waits in an open batch.
    pub max_age: Duration,
}

impl From<&BatchSpec> for BatchLimits {
    fn from(spec: &BatchSpec) -> Self {
        Self {
            max_records: usize::try_from(spec.max_records).unwrap_or(1).max(1),
            max_bytes: usize::try_from(spec.max_bytes).unwrap_or(1).max(1),
            max_age: bounds::BATCH_MAX_AGE.clamp(&spec.max_age),
        }
    }
}

/// Encoded records to send together, and the checkpoints to acknowledge once they are delivered.
#[derive(Debug, Default)]
pub struct Batch {
    body: Vec<u8>,
    /// End offset in `body` of each item.
    ends: Vec<usize>,
    /// The shard (and reader generation) of each item.
    shards: Vec<Reading>,
    checkpoints: Vec<(Reading, Position)>,
    /// The records of each shard in the body, in order of first appearance.
    ranges: Vec<SequenceRange>,
    /// The partition and position of each item, when the batcher partitions (the S3 sink).
    parts: Vec<ItemPart>,
}

/// The first and last record of one shard in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRange {
    /// Stream name.
    pub stream: Arc<str>,
    /// Shard id.
    pub shard_id: Arc<str>,
    /// Position of the shard's first record in the batch.
    pub first: Position,
    /// Position of its last record in the batch.
    pub last: Position,
}

/// Where an item goes among a batch's objects, and its position in its shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemPart {
    /// Its object group.
    pub key: PartitionKey,
    /// Its stream.
    pub stream: Arc<str>,
    /// Its sequence (and sub-sequence) number.
    pub position: Position,
}

impl Batch {
    /// The request body: every item, in order.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Items (records) in the body.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True for a batch that only carries checkpoints (of chunks without records).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The encoded bytes of item `i`.
    pub fn item(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.body[start..self.ends[i]]
    }

    /// The shard (and reader generation) of each item, in order.
    pub fn shards(&self) -> &[Reading] {
        &self.shards
    }

    /// The partition of each item, in order; empty unless the batcher partitions.
    pub fn parts(&self) -> &[ItemPart] {
        &self.parts
    }

    /// `(reading, checkpoint)` pairs to acknowledge, in order, once every item is delivered.
    pub fn checkpoints(&self) -> &[(Reading, Position)] {
        &self.checkpoints
    }

    /// The first and last record of each shard in the batch.
    pub fn ranges(&self) -> &[SequenceRange] {
        &self.ranges
    }

    /// A key that names this batch's content, the same each time the same records of the same
    /// shards make a batch: the MD5, in hex, of the stream, shard and first and last position
    /// of every shard in it. Sent as the NDJSON sink's `Idempotency-Key`.
    pub fn idempotency_key(&self) -> String {
        use md5::{Digest, Md5};
        let mut hash = Md5::new();
        hash.update(b"kinesis-ingester/v1\n");
        for r in &self.ranges {
            for part in [&*r.stream, &*r.shard_id] {
                hash.update(part.as_bytes());
                hash.update(b"\n");
            }
            for p in [&r.first, &r.last] {
                hash.update(p.sequence.as_str().as_bytes());
                if let Some(sub) = p.sub_sequence {
                    hash.update(format!(".{sub}").as_bytes());
                }
                hash.update(b"\n");
            }
        }
        format!("{:x}", hash.finalize())
    }

    /// Widens the range of `record`'s shard to take it in.
    fn note(&mut self, record: &crate::record::Record) {
        match self.ranges.last_mut() {
            Some(last) if last.shard_id == record.shard.shard_id => {
                last.last.clone_from(&record.position);
            }
            _ => match self
                .ranges
                .iter_mut()
                .find(|r| r.shard_id == record.shard.shard_id)
            {
                Some(range) => range.last.clone_from(&record.position),
                None => self.ranges.push(SequenceRange {
                    stream: record.shard.stream.clone(),
                    shard_id: record.shard.shard_id.clone(),
                    first: record.position.clone(),
                    last: record.position.clone(),
                }),
            },
        }
    }

    /// Keeps only the items at the given indexes (ascending), e.g. the failed items of a `_bulk`
    /// request, so a retry sends just those. Out-of-range indexes are ignored.
    pub fn retain_items(&mut self, keep: &[usize]) {
        let mut body = Vec::with_capacity(self.body.len());
        let mut ends = Vec::with_capacity(keep.len());
        let mut shards = Vec::with_capacity(keep.len());
        let mut parts = Vec::new();
        for &i in keep.iter().filter(|&&i| i < self.len()) {
            body.extend_from_slice(self.item(i));
            ends.push(body.len());
            shards.push(self.shards[i].clone());
            if let Some(part) = self.parts.get(i) {
                parts.push(part.clone());
            }
        }
        self.body = body;
        self.ends = ends;
        self.shards = shards;
        self.parts = parts;
    }

    /// Drops every item and checkpoint of a reading `keep` rejects (a shard the worker lost, or
    /// an earlier generation of one): such records are never sent again and never
    /// acknowledged. Returns how many items went.
    pub fn retain_shards(&mut self, mut keep: impl FnMut(&Reading) -> bool) -> usize {
        self.checkpoints.retain(|(shard, _)| keep(shard));
        let kept: Vec<usize> = (0..self.len()).filter(|&i| keep(&self.shards[i])).collect();
        let dropped = self.len() - kept.len();
        if dropped > 0 {
            self.retain_items(&kept);
            let shards = &self.shards;
            self.ranges
                .retain(|r| shards.iter().any(|s| s.shard_id == r.shard_id));
        }
        dropped
    }
}

/// Turns chunks into batches. Pure: the caller passes the time and drives the age limit.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    encoding: Encoding,
    open: Batch,
    opened_at: Option<Instant>,
    ready: VecDeque<Batch>,
    spare: Option<Vec<u8>>,
    /// Set for the S3 sink: each item's partition is recorded and a batch spans at most
    /// `max_open` partitions.
    partitioner: Option<Partitioner>,
    /// The partitions of the open batch.
    open_partitions: HashSet<PartitionKey>,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(limits: BatchLimits, encoding: Encoding) -> Self {
        Self {
            limits,
            encoding,
            open: Batch::default(),
            opened_at: None,
            ready: VecDeque::new(),
            spare: None,
            partitioner: None,
            open_partitions: HashSet::new(),
        }
    }

    /// Records each item's partition (key prefix) and closes a batch before it would span more
    /// than the partitioner's `max_open` partitions.
    pub fn set_partitioner(&mut self, partitioner: Option<Partitioner>) {
        self.partitioner = partitioner;
    }

    /// The partition of `record`, reusing the previous item's prefix when it is the same.
    fn part_of(&self, record: &crate::record::Record) -> Option<ItemPart> {
        let partitioner = self.partitioner.as_ref()?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let prefix = partitioner.prefix(record, now_ms);
        let prefix = match self.open.parts.last() {
            Some(last) if *last.key.prefix == *prefix => last.key.prefix.clone(),
            _ => Arc::from(prefix),
        };
        Some(ItemPart {
            key: PartitionKey {
                prefix,
                shard: record.shard.shard_id.clone(),
            },
            stream: record.shard.stream.clone(),
            position: record.position.clone(),
        })
    }

    /// Adds a chunk's records, closing batches as limits are reached. Its checkpoint goes with
    /// the batch holding its last record; a chunk without records rides with the open batch, or
    /// becomes a checkpoint-only batch at once when no batch is open. A batch closed in the
    /// middle of a chunk carries the position of its last record of that chunk, so every batch
    /// acknowledges exactly what it delivered: the rest of the chunk may never be sent (a
    /// planned handoff drops it), and its records must not be read again by the next owner.
    pub fn push(&mut self, chunk: Chunk, now: Instant) -> Result<(), serde_json::Error> {
        let reading = chunk.reading();
        let last = chunk.records.len().saturating_sub(1);
        // Records of this chunk in the open batch.
        let mut in_open = 0;
        for (i, record) in chunk.records.iter().enumerate() {
            let part = self.part_of(record);
            if let (Some(part), Some(partitioner)) = (&part, &self.partitioner)
                && !self.open.is_empty()
                && !self.open_partitions.contains(&part.key)
                && self.open_partitions.len() >= partitioner.max_open
            {
                // One partition too many: close the batch before this record.
                if in_open > 0 {
                    let delivered = chunk.records[i - 1].position.clone();
                    self.open.checkpoints.push((reading.clone(), delivered));
                }
                self.close();
                in_open = 0;
            }
            let start = self.open.body.len();
            self.encoding.write(&mut self.open.body, record)?;
            if !self.open.is_empty() && self.open.body.len() > self.limits.max_bytes {
                // This record does not fit: close the batch without it and start the next.
                let mut next = self.spare.take().unwrap_or_default();
                next.extend_from_slice(&self.open.body[start..]);
                self.open.body.truncate(start);
                if in_open > 0 {
                    let delivered = chunk.records[i - 1].position.clone();
                    self.open.checkpoints.push((reading.clone(), delivered));
                }
                self.close();
                self.open.body = next;
                in_open = 0;
            }
            self.open.ends.push(self.open.body.len());
            self.open.note(record);
            self.open.shards.push(reading.clone());
            in_open += 1;
            if let Some(part) = part {
                self.open_partitions.insert(part.key.clone());
                self.open.parts.push(part);
            }
            self.opened_at.get_or_insert(now);
            if self.open.len() >= self.limits.max_records
                || self.open.body.len() >= self.limits.max_bytes
            {
                if i < last {
                    let delivered = record.position.clone();
                    self.open.checkpoints.push((reading.clone(), delivered));
                }
                self.close();
                in_open = 0;
            }
        }
        let checkpoint = (chunk.reading(), chunk.checkpoint);
        if !self.open.is_empty() {
            self.open.checkpoints.push(checkpoint);
        } else if let Some(last) = self.ready.back_mut() {
            last.checkpoints.push(checkpoint);
        } else {
            self.ready.push_back(Batch {
                checkpoints: vec![checkpoint],
                ..Batch::default()
            });
        }
        Ok(())
    }

    /// When the open batch reaches its age limit, if a batch is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.max_age)
    }

    /// Closes the open batch if its age limit has passed at `now`.
    pub fn poll_age(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.close();
        }
    }

    /// Closes the open batch whatever its size (at shutdown).
    pub fn flush(&mut self) {
        if !self.open.is_empty() {
            self.close();
        }
    }

    /// The oldest closed batch, to deliver next.
    pub fn pop_ready(&mut self) -> Option<Batch> {
        self.ready.pop_front()
    }

    /// Records held in closed and open batches.
    pub fn pending_records(&self) -> usize {
        self.ready.iter().map(Batch::len).sum::<usize>() + self.open.len()
    }

    /// Returns a delivered batch so its body's memory is reused.
    pub fn recycle(&mut self, batch: Batch) {
        let mut body = batch.body;
        body.clear();
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < body.capacity())
        {
            self.spare = Some(body);
        }
    }

    fn close(&mut self) {
        let body = self.spare.take().unwrap_or_default();
        let open = std::mem::replace(
            &mut self.open,
            Batch {
                body,
                ..Batch::default()
            },
        );
        self.ready.push_back(open);
        self.opened_at = None;
        self.open_partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ndjson::tests::record;

    fn limits(max_records: usize, max_bytes: usize, max_age_ms: u64) -> BatchLimits {
        BatchLimits {
            max_records,
            max_bytes,
            max_age: Duration::from_millis(max_age_ms),
        }
    }

    fn chunk(shard: &str, seqs: std::ops::Range<u64>, checkpoint: u64) -> Chunk {
        Chunk {
            records: seqs.map(|s| record(shard, s, b"payload")).collect(),
            shard_id: shard.into(),
            generation: 0,
            checkpoint: Position::whole(checkpoint.to_string().parse().expect("seq")),
        }
    }

    fn acks(b: &Batch) -> Vec<(String, String)> {
        b.checkpoints()
            .iter()
            .map(|(s, p)| (s.shard_id.to_string(), p.sequence.to_string()))
            .collect()
    }

    fn line_len() -> usize {
        let mut buf = Vec::new();
        Encoding::Ndjson
            .write(&mut buf, &record("s", 1, b"payload"))
            .expect("encode");
        buf.len()
    }

    #[test]
    fn closes_on_max_records_and_acks_with_the_last_record() {
        let mut b = Batcher::new(limits(3, 1 << 20, 1000), Encoding::Ndjson);
        b.push(chunk("s", 1..8, 7), Instant::now()).expect("push");
        let first = b.pop_ready().expect("first batch");
        let second = b.pop_ready().expect("second batch");
        assert_eq!((first.len(), second.len()), (3, 3));
        // Closed mid-chunk: each acknowledges its own last record, so what it delivered is
        // not read again if the rest of the chunk is dropped (a planned handoff).
        assert_eq!(acks(&first), [("s".into(), "3".into())]);
        assert_eq!(acks(&second), [("s".into(), "6".into())]);
        assert!(b.pop_ready().is_none());
        assert_eq!(b.pending_records(), 1);
        b.flush();
        let last = b.pop_ready().expect("flushed batch");
        assert_eq!(last.len(), 1);
        assert_eq!(acks(&last), [("s".into(), "7".into())]);
    }

    #[test]
    fn closes_on_max_bytes_without_exceeding_them() {
        let line = line_len();
        let mut b = Batcher::new(limits(100, line * 2 + line / 2, 1000), Encoding::Ndjson);
        b.push(chunk("s", 1..6, 5), Instant::now()).expect("push");
        let mut sizes = Vec::new();
        while let Some(batch) = b.pop_ready() {
            assert!(batch.body().len() <= line * 2 + line / 2);
            sizes.push(batch.len());
        }
        assert_eq!(sizes, [2, 2]);
        assert_eq!(b.pending_records(), 1);
        b.flush();
        let all: Vec<_> = std::iter::from_fn(|| b.pop_ready()).collect();
        assert_eq!(acks(&all[0]), [("s".into(), "5".into())]);

        // A record larger than the limit is sent alone rather than held forever.
        let mut b = Batcher::new(limits(100, 10, 1000), Encoding::Ndjson);
        b.push(chunk("s", 1..3, 2), Instant::now()).expect("push");
        let first = b.pop_ready().expect("first");
        assert_eq!(
            (first.len(), acks(&first)),
            (1, vec![("s".into(), "1".into())])
        );
        let second = b.pop_ready().expect("second");
        assert_eq!((second.len(), acks(&second).len()), (1, 1));
    }

    #[test]
    fn closes_on_age_counted_from_the_first_record() {
        let t0 = Instant::now();
        let mut b = Batcher::new(limits(100, 1 << 20, 1000), Encoding::Ndjson);
        assert_eq!(b.deadline(), None);
        b.push(chunk("s", 1..2, 1), t0).expect("push");
        b.push(chunk("s", 2..3, 2), t0 + Duration::from_millis(900))
            .expect("push");
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(1000)));
        b.poll_age(t0 + Duration::from_millis(999));
        assert!(b.pop_ready().is_none());
        b.poll_age(t0 + Duration::from_millis(1000));
        let batch = b.pop_ready().expect("aged batch");
        assert_eq!(batch.len(), 2);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn empty_chunks_are_acked_in_order_without_forcing_a_batch() {
        let mut b = Batcher::new(limits(100, 1 << 20, 1000), Encoding::Ndjson);
        let now = Instant::now();
        // Nothing open: the checkpoint is ready at once, with nothing to send.
        b.push(chunk("a", 0..0, 1), now).expect("push");
        let only = b.pop_ready().expect("checkpoint-only batch");
        assert!(only.is_empty());
        assert_eq!(acks(&only), [("a".into(), "1".into())]);
        // A batch is open: the empty chunk waits behind it and closes nothing.
        b.push(chunk("a", 2..4, 3), now).expect("push");
        b.push(chunk("b", 0..0, 9), now).expect("push");
        b.push(chunk("a", 0..0, 4), now).expect("push");
        assert!(b.pop_ready().is_none());
        b.flush();
        let batch = b.pop_ready().expect("batch");
        assert_eq!(batch.len(), 2);
        assert_eq!(
            acks(&batch),
            [
                ("a".into(), "3".into()),
                ("b".into(), "9".into()),
                ("a".into(), "4".into())
            ]
        );
    }

    #[test]
    fn retain_items_keeps_just_those_items_in_order() {
        let mut b = Batcher::new(limits(100, 1 << 20, 1000), Encoding::bulk("i"));
        b.push(chunk("s", 1..5, 4), Instant::now()).expect("push");
        b.flush();
        let mut batch = b.pop_ready().expect("batch");
        let (one, three) = (batch.item(1).to_vec(), batch.item(3).to_vec());
        batch.retain_items(&[1, 3, 99]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.body(), [one, three].concat());
        assert_eq!(batch.checkpoints().len(), 1);
    }

    #[test]
    fn the_idempotency_key_follows_the_shards_and_sequence_ranges_of_a_batch() {
        let key = |chunks: Vec<Chunk>| {
            let mut b = Batcher::new(limits(100, 1 << 20, 1000), Encoding::Ndjson);
            for c in chunks {
                b.push(c, Instant::now()).expect("push");
            }
            b.flush();
            let batch = b.pop_ready().expect("batch");
            (batch.idempotency_key(), batch.ranges().len())
        };
        let (a, shards) = key(vec![
            chunk("a", 1..4, 3),
            chunk("b", 7..9, 8),
            chunk("a", 4..6, 5),
        ]);
        assert_eq!(shards, 2);
        assert_eq!(a.len(), 32);
        // The same records again: the same key.
        let again = key(vec![
            chunk("a", 1..4, 3),
            chunk("b", 7..9, 8),
            chunk("a", 4..6, 5),
        ]);
        assert_eq!(again.0, a);
        // One record more or less, or another shard: another key.
        assert_ne!(
            key(vec![
                chunk("a", 1..4, 3),
                chunk("b", 7..9, 8),
                chunk("a", 4..7, 6)
            ])
            .0,
            a
        );
        assert_ne!(
            key(vec![
                chunk("a", 1..4, 3),
                chunk("c", 7..9, 8),
                chunk("a", 4..6, 5)
            ])
            .0,
            a
        );
        assert_ne!(
            key(vec![
                chunk("a", 2..4, 3),
                chunk("b", 7..9, 8),
                chunk("a", 4..6, 5)
            ])
            .0,
            a
        );
    }

    #[test]
    fn a_dropped_shard_leaves_the_key_and_ranges_of_the_rest() {
        let mut b = Batcher::new(limits(100, 1 << 20, 1000), Encoding::Ndjson);
        b.push(chunk("a", 1..4, 3), Instant::now()).expect("push");
        b.push(chunk("b", 7..9, 8), Instant::now()).expect("push");
        b.flush();
        let mut both = b.pop_ready().expect("batch");
        let mut only_a = Batcher::new(limits(100, 1 << 20, 1000), Encoding::Ndjson);
        only_a
            .push(chunk("a", 1..4, 3), Instant::now())
            .expect("push");
        only_a.flush();
        let only_a = only_a.pop_ready().expect("batch");
        assert_ne!(both.idempotency_key(), only_a.idempotency_key());
        both.retain_shards(|s| &*s.shard_id == "a");
        assert_eq!(both.idempotency_key(), only_a.idempotency_key());
        assert_eq!(both.ranges(), only_a.ranges());
    }
}
