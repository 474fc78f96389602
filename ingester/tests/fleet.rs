//! Fleet mode against the local API server and the Kinesis emulator, with the test acting as the operator: ownership, release, fence, reassignment and SIGTERM.

#[macro_use]
mod common;

use std::{collections::HashMap, process::Stdio, time::Duration};

use anyhow::{Context, Result, ensure};
use aws_sdk_kinesis::primitives::Blob;
use common::*;
use kinesis_ingester_api::{
    AssignedShard, CheckpointPosition, Fence, KinesisIngester, KinesisShardAssignment,
    KinesisShardAssignmentSpec, KinesisWorker, KinesisWorkerSpec, WorkerShard,
};
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

/// Puts `payload` to the shard whose range starts at `hash_key`; returns its sequence number.
async fn put_to(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    hash_key: &str,
    payload: &str,
) -> Result<String> {
    let out = kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("k")
        .explicit_hash_key(hash_key)
        .data(Blob::new(payload.as_bytes().to_vec()))
        .send()
        .await?;
    Ok(out.sequence_number().to_owned())
}

/// Puts `{prefix}-{i}` for i in 0..n to one shard; returns the last sequence number.
async fn put_many(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    hash_key: &str,
    prefix: &str,
    n: usize,
) -> Result<String> {
    let mut last = String::new();
    for i in 0..n {
        last = put_to(kinesis, stream, hash_key, &format!("{prefix}-{i}")).await?;
    }
    Ok(last)
}

fn delivered(out: &std::path::Path) -> Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for p in payloads(&lines(out)?) {
        *counts.entry(p).or_default() += 1;
    }
    Ok(counts)
}

fn seq(entry: &WorkerShard) -> Option<&str> {
    entry.position.as_ref().map(|p| p.sequence.as_str())
}

/// Replaces the table's spec through `edit`, retrying on conflicts.
async fn edit_table(
    api: &Api<KinesisShardAssignment>,
    name: &str,
    edit: impl Fn(&mut KinesisShardAssignmentSpec),
) -> Result<()> {
    for _ in 0..10 {
        let mut t = api.get(name).await?;
        edit(&mut t.spec);
        match api.replace(name, &PostParams::default(), &t).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the table kept conflicting")
}

#[tokio::test]
async fn a_worker_reads_releases_obeys_fences_resumes_and_stops() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "fleet").await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 4).await?;
    let mut shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await?
        .shards()
        .to_vec();
    shards.sort_by(|a, b| a.shard_id().cmp(b.shard_id()));
    ensure!(shards.len() == 4, "4 shards");
    let id = |i: usize| shards[i].shard_id().to_owned();
    let key = |i: usize| {
        shards[i]
            .hash_key_range()
            .map(|r| r.starting_hash_key().to_owned())
            .unwrap_or_default()
    };

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    let name = "orders";
    let worker_name = format!("{name}-worker-0");
    let ingester: KinesisIngester = serde_json::from_value(serde_json::json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1",
        "kind": "KinesisIngester",
        "metadata": {"name": name, "namespace": ns.name()},
        "spec": {
            "stream": {"name": stream, "region": "us-east-1", "endpoint": endpoint},
            "read": {"startingPosition": {"type": "TrimHorizon"}, "pollInterval": "200ms"},
            "sink": {
                "file": {"path": "/var/lib/kinesis-ingester/out.ndjson"},
                "batch": {"maxRecords": 50, "maxAge": "100ms"},
            },
            "workers": {"scratch": {"size": "64Mi"}},
        },
    }))?;
    let ingesters: Api<KinesisIngester> = Api::namespaced(client.clone(), ns.name());
    let ingester = ingesters.create(&PostParams::default(), &ingester).await?;
    let uid = ingester.metadata.uid.clone().context("uid")?;

    let workers: Api<KinesisWorker> = Api::namespaced(client.clone(), ns.name());
    let mut worker = KinesisWorker::new(
        &worker_name,
        KinesisWorkerSpec {
            ingester_uid: uid.clone(),
            fences: vec![],
        },
    );
    worker.metadata.namespace = Some(ns.name().to_owned());
    workers.create(&PostParams::default(), &worker).await?;

    let assigned = |i: usize, owner: &str| AssignedShard {
        shard_id: id(i),
        parents: vec![],
        starting_hash_key: shards[i]
            .hash_key_range()
            .map(|r| r.starting_hash_key().to_owned()),
        ending_hash_key: shards[i]
            .hash_key_range()
            .map(|r| r.ending_hash_key().to_owned()),
        owner: Some(owner.to_owned()),
        epoch: 1,
        draining: false,
        start_after: None,
        start_at_timestamp: None,
        rewind: None,
    };
    let other = format!("{name}-worker-1");
    let table = KinesisShardAssignment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.name().to_owned()),
            ..ObjectMeta::default()
        },
        spec: KinesisShardAssignmentSpec {
            ingester_uid: uid.clone(),
            shards: vec![
                assigned(0, &worker_name),
                assigned(1, &worker_name),
                assigned(2, &other),
                assigned(3, &other),
            ],
            ..KinesisShardAssignmentSpec::default()
        },
    };
    let tables: Api<KinesisShardAssignment> = Api::namespaced(client.clone(), ns.name());
    tables.create(&PostParams::default(), &table).await?;

    let mut last = Vec::new();
    for i in 0..4 {
        last.push(put_many(&kinesis, &stream, &key(i), &format!("s{i}"), 5).await?);
    }

    let kubeconfig = std::env::var("KUBECONFIG")?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis-ingester"))
        .args([
            "run",
            "--fleet",
            "--ingester",
            name,
            "--metrics-addr",
            "off",
        ])
        .args(["--report-interval", "5s", "--self-fence-after", "10s"])
        .args(["--shutdown-timeout", "10s"])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", ns.name())
        .env("POD_NAME", &worker_name)
        .env("POD_UID", "pod-uid-1")
        // Outside a pod, the scratch volume is the test's directory: the sink file is `out`.
        .env("KINESIS_INGESTER_SCRATCH_DIR", dir.path())
        .env("AWS_ACCESS_KEY_ID", "000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;

    let status = || async {
        let w = workers.get(&worker_name).await?;
        Ok::<_, anyhow::Error>(w.status.unwrap_or_default())
    };

    // (a) Shards 0 and 1 are read and checkpointed at epoch 1; 2 and 3 are another worker's.
    let s = wait_until("checkpoints of shards 0 and 1 at epoch 1", WAIT, || async {
        let s = status().await?;
        let at = |i: usize| s.entry(&id(i), 1).and_then(seq).map(str::to_owned);
        Ok(
            (at(0).as_deref() == Some(&*last[0]) && at(1).as_deref() == Some(&*last[1]))
                .then_some(s),
        )
    })
    .await?;
    let ids: Vec<_> = s.shards.iter().map(|e| e.shard_id.clone()).collect();
    assert_eq!(ids, [id(0), id(1)], "only its own shards are reported");
    assert!(s.holder.as_ref().is_some_and(|h| h.pod_uid == "pod-uid-1"));
    let got = delivered(&out)?;
    for i in 0..2 {
        for n in 0..5 {
            assert_eq!(got.get(&format!("s{i}-{n}")), Some(&1), "s{i}-{n} once");
        }
    }
    assert!(
        !got.keys()
            .any(|p| p.starts_with("s2-") || p.starts_with("s3-")),
        "shards 2 and 3 are not read: {got:?}"
    );

    // (b) Draining shard 1: released at the last delivered record, and no longer read.
    let asked = tokio::time::Instant::now();
    edit_table(&tables, name, |t| t.shards[1].draining = true).await?;
    let released = wait_until("shard 1 released", WAIT, || async {
        let s = status().await?;
        Ok(s.entry(&id(1), 1).filter(|e| e.released).cloned())
    })
    .await?;
    eprintln!("draining -> released: {:?}", asked.elapsed());
    assert_eq!(
        seq(&released),
        Some(&*last[1]),
        "released at its last delivered record"
    );
    assert!(!released.finished);
    put_many(&kinesis, &stream, &key(1), "s1late", 3).await?;
    let marker = put_to(&kinesis, &stream, &key(0), "s0-marker").await?;
    wait_until("the shard 0 marker delivered", WAIT, || async {
        Ok(delivered(&out)?.contains_key("s0-marker").then_some(()))
    })
    .await?;
    assert!(
        !delivered(&out)?.keys().any(|p| p.starts_with("s1late")),
        "a released shard is not read"
    );

    // (c) Fence shard 0 at epoch 1: the worker stops it and never writes it again.
    let fenced_at = wait_until("shard 0 checkpointed at the marker", WAIT, || async {
        let s = status().await?;
        Ok(s.entry(&id(0), 1)
            .and_then(seq)
            .filter(|p| *p == marker)
            .map(str::to_owned))
    })
    .await?;
    for _ in 0..10 {
        let mut w = workers.get(&worker_name).await?;
        w.spec.fences.push(Fence {
            shard_id: id(0),
            epoch: 1,
            position: None,
        });
        match workers
            .replace(&worker_name, &PostParams::default(), &w)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let check_fenced = |s: &kinesis_ingester_api::KinesisWorkerStatus| {
        if let Some(e) = s.entry(&id(0), 1) {
            assert_eq!(
                seq(e),
                Some(&*fenced_at),
                "a fenced shard's checkpoint never moves"
            );
        }
    };
    wait_until("shard 0 dropped from the status", WAIT, || async {
        let s = status().await?;
        check_fenced(&s);
        Ok(s.entry(&id(0), 1).is_none().then_some(()))
    })
    .await?;
    put_many(&kinesis, &stream, &key(0), "s0fenced", 3).await?;

    // (d) Shard 1 again, at epoch 2, after its released position: exactly the later records.
    let start_after = released.position.clone().context("released position")?;
    edit_table(&tables, name, |t| {
        let s = &mut t.shards[1];
        s.epoch = 2;
        s.draining = false;
        s.start_after = Some(CheckpointPosition {
            sequence: start_after.sequence.clone(),
            sub_sequence: start_after.sub_sequence,
        });
    })
    .await?;
    let last_late = put_to(&kinesis, &stream, &key(1), "s1late-3").await?;
    wait_until("shard 1 checkpointed at epoch 2", WAIT, || async {
        let s = status().await?;
        check_fenced(&s);
        Ok((s.entry(&id(1), 2).and_then(seq) == Some(&*last_late)).then_some(()))
    })
    .await?;
    let got = delivered(&out)?;
    for n in 0..4 {
        assert_eq!(
            got.get(&format!("s1late-{n}")),
            Some(&1),
            "s1late-{n} exactly once"
        );
    }
    for n in 0..5 {
        assert_eq!(
            got.get(&format!("s1-{n}")),
            Some(&1),
            "s1-{n} not read again"
        );
    }
    let s = status().await?;
    assert!(s.entry(&id(1), 1).is_none(), "the epoch-1 entry is dropped");

    // (e) SIGTERM: exit 0, stopped, every remaining entry released.
    let pid = child.id().context("child pid")?;
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(term.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exits 0 after SIGTERM");
    let s = status().await?;
    assert!(s.stopped, "status.stopped");
    assert!(!s.shards.is_empty());
    assert!(
        s.shards.iter().all(|e| e.released),
        "every entry released: {:?}",
        s.shards
    );
    assert_eq!(s.entry(&id(1), 2).and_then(seq), Some(&*last_late));
    check_fenced(&s);
    let got = delivered(&out)?;
    assert!(
        !got.keys()
            .any(|p| p.starts_with("s0fenced") || p.starts_with("s2-") || p.starts_with("s3-")),
        "nothing of a fenced or foreign shard is delivered: {got:?}"
    );
    assert!(got.values().all(|n| *n == 1), "no duplicates: {got:?}");
    Ok(())
}
