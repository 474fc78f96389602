//! The size budget of docs/design.md §5 as a test: the shard table, a worker object and the ingester status for a 1,000-shard stream read by 100 workers, serialized as the API server stores them.

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::{
        AppliedReset, AssignedShard, CheckpointPosition, DeliveryStuck, Holder,
        KinesisIngesterStatus, KinesisShardAssignmentSpec, KinesisWorkerSpec, KinesisWorkerStatus,
        ShardRewind, ShardState, ShardStatus, WorkerShard,
    };

    const SHARDS: usize = 1000;
    const WORKERS: usize = 100;
    const SEQ: &str = "49655121380712095233960537406412683491498406931375063042";

    fn id(i: usize) -> String {
        format!("shardId-{i:012}")
    }

    fn pos() -> CheckpointPosition {
        CheckpointPosition {
            sequence: SEQ.into(),
            sub_sequence: Some(3),
        }
    }

    fn size<T: serde::Serialize>(v: &T) -> usize {
        serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
    }

    #[test]
    fn a_thousand_shards_fit_the_budget() {
        let table = KinesisShardAssignmentSpec {
            ingester_uid: "6f1c2f0e-8a55-4c1e-9a64-0d3c8e0c9f11".into(),
            stream_arn: Some("arn:aws:kinesis:us-east-1:123456789012:stream/orders".into()),
            consumer_arn: None,
            stream_created: Some("2026-03-02T10:15:30.123456789Z".into()),
            // The largest reset: 100 unknown shard ids of 128 characters.
            reset: Some(AppliedReset {
                request_id: "r".repeat(63),
                applied_at: "2026-03-02T10:15:30.123456789Z".into(),
                to: "AtTimestamp 2026-03-02T10:15:30.123456789Z".into(),
                shards: SHARDS as i32,
                unknown_shards: (0..100).map(|i| format!("{i:0128}")).collect(),
            }),
            shards: (0..SHARDS)
                .map(|i| AssignedShard {
                    shard_id: id(i),
                    parents: vec![id(i + 5000)],
                    starting_hash_key: Some("170141183460469231731687303715884105728".into()),
                    ending_hash_key: Some("173543007129678616366321049790201782271".into()),
                    owner: Some(format!("orders-worker-{}", i % WORKERS)),
                    epoch: 12,
                    draining: false,
                    start_after: Some(pos()),
                    // A rewound shard: no pin (the rewind replaced it), a position taken since.
                    start_at_timestamp: None,
                    rewind: Some(ShardRewind {
                        timestamp: Some("2026-03-02T10:15:30.123456789Z".into()),
                    }),
                })
                .collect(),
            finished: (0..SHARDS).map(|i| id(i + 5000)).collect(),
            shard_count: SHARDS as i32,
        };
        let worker_spec = KinesisWorkerSpec {
            ingester_uid: table.ingester_uid.clone(),
            fences: vec![],
        };
        let worker_status = KinesisWorkerStatus {
            holder: Some(Holder {
                pod_uid: "0d8b6b8e-3f4a-4a8e-b1a2-2b7f0c1e9d33".into(),
                incarnation: "9f2a6c1d0b3e4f5a".into(),
            }),
            renew_time: Some("2026-03-02T10:15:30Z".into()),
            stopped: false,
            shards_held: (SHARDS / WORKERS) as i32,
            shards: (0..SHARDS / WORKERS)
                .map(|i| WorkerShard {
                    shard_id: id(i),
                    epoch: 12,
                    position: Some(pos()),
                    millis_behind_latest: Some(1200),
                    released: false,
                    finished: false,
                    last_delivery: Some("2026-03-02T10:15:29Z".into()),
                    delivery_stuck: None,
                    read_error: None,
                    waiting_seconds: None,
                })
                .collect(),
        };
        let status = KinesisIngesterStatus {
            shards: (0..SHARDS)
                .map(|i| ShardStatus {
                    shard_id: id(i),
                    parent_shard_ids: vec![id(i + 5000)],
                    owner: Some(format!("orders-worker-{}", i % WORKERS)),
                    state: ShardState::Reading,
                    millis_behind_latest: Some(1200),
                    checkpoint: Some(format!("{SEQ}/3")),
                    last_checkpoint: Some("2026-03-02T10:15:24Z".into()),
                })
                .collect(),
            ..Default::default()
        };
        let (t, w, s) = (
            size(&table),
            size(&worker_spec) + size(&worker_status),
            size(&status),
        );
        println!(
            "FIGURE object sizes for {SHARDS} shards / {WORKERS} workers: shard table {t} B, one KinesisWorker {w} B (spec+status), ingester status {s} B"
        );
        // The worst case: the sink is down and every shard reports its delivery stuck.
        let mut stuck_status = worker_status.clone();
        for e in &mut stuck_status.shards {
            e.delivery_stuck = Some(DeliveryStuck {
                stalled_seconds: 86_400,
                threshold_seconds: 30,
                sink_error: Some("bulk_response".into()),
                sink: None,
            });
        }
        let stuck = size(&worker_spec) + size(&stuck_status);
        println!("FIGURE one KinesisWorker with every shard delivery-stuck: {stuck} B");
        assert!(stuck < 4_000, "a stuck worker object grew to {stuck} bytes");
        // etcd's request limit is 1.5 MiB; the operator keeps the table under 1 MiB.
        assert!(t < 450_000, "the shard table grew to {t} bytes");
        assert!(w < 3_000, "a worker object grew to {w} bytes");
        // 262 KB with a checkpoint time per shard; written at most once per report interval.
        assert!(s < 280_000, "the ingester status grew to {s} bytes");
    }
}
