//! End-to-end scenarios of the operator on the local control plane (kwok nodes) and kinesis-local: the operator and every worker run as real processes under their own ServiceAccounts, so RBAC is real.
//!
//! Each scenario has its own namespace, stream and operator (watching only that namespace).
//! Measured latencies are printed as `FIGURE ...` lines; nothing fails on a slow machine except
//! generous deadlines.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use k8s_openapi::api::apps::v1::StatefulSet;
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment, KinesisWorker};
use kinesis_testkit::{
    file_fleet::FileFleet,
    fleet::{Kubelet, OperatorProcess},
    wait_stream_active, wait_until,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};

const NAME: &str = "orders";
const KEYS: usize = 32;
const LONG: Duration = Duration::from_secs(180);

/// [`wait_until`] for checks that return `None` until they hold.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until(what, timeout, || {
        let fut = check();
        async move { Ok(fut.await) }
    })
    .await
}

/// One scenario's world: the shared file-sink fleet, with the scenarios' helpers.
struct Fleet(FileFleet);

impl std::ops::Deref for Fleet {
    type Target = FileFleet;
    fn deref(&self) -> &FileFleet {
        &self.0
    }
}

impl std::ops::DerefMut for Fleet {
    fn deref_mut(&mut self) -> &mut FileFleet {
        &mut self.0
    }
}

impl Fleet {
    async fn start(prefix: &str, shards: i32, workers: &str) -> Result<Self> {
        Ok(Self(FileFleet::start(NAME, prefix, shards, workers).await?))
    }

    fn kubelet(&self) -> &Kubelet {
        self.kubelet.as_ref().expect("kubelet running")
    }

    async fn ingester(&self) -> Result<KinesisIngester> {
        Ok(
            Api::<KinesisIngester>::namespaced(self.client.clone(), self.ns.name())
                .get(NAME)
                .await?,
        )
    }

    async fn table(&self) -> Result<Option<KinesisShardAssignment>> {
        Ok(
            Api::<KinesisShardAssignment>::namespaced(self.client.clone(), self.ns.name())
                .get_opt(NAME)
                .await?,
        )
    }

    async fn workers(&self) -> Result<Vec<KinesisWorker>> {
        Ok(
            Api::<KinesisWorker>::namespaced(self.client.clone(), self.ns.name())
                .list(&ListParams::default())
                .await?
                .items,
        )
    }

    /// Owner of every shard in the table (shard → owner), only when every shard has one.
    async fn owners(&self) -> Result<Option<BTreeMap<String, String>>> {
        let Some(t) = self.table().await? else {
            return Ok(None);
        };
        let owners: Option<BTreeMap<_, _>> = t
            .spec
            .shards
            .iter()
            .map(|s| Some((s.shard_id.clone(), s.owner.clone().filter(|_| !s.draining)?)))
            .collect();
        Ok(owners.filter(|o| !o.is_empty()))
    }

    async fn wait_ready(&self, what: &str) -> Result<KinesisIngester> {
        poll(what, LONG, || async {
            let ki = self.ingester().await.ok()?;
            let s = ki.status.as_ref()?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && s.observed_generation == ki.metadata.generation).then_some(ki)
        })
        .await
    }

    /// Puts records `0..n`, waits until all are delivered and the ingester is Ready.
    async fn settle(&self, n: usize, what: &str) -> Result<()> {
        produce(&self.kinesis, &self.stream, 0, n).await?;
        wait_delivered(&self.out, n).await?;
        self.wait_ready(what).await?;
        Ok(())
    }

    /// The worker object `name`.
    async fn worker(&self, name: &str) -> Result<KinesisWorker> {
        Ok(
            Api::<KinesisWorker>::namespaced(self.client.clone(), self.ns.name())
                .get(name)
                .await?,
        )
    }

    /// Deletes the ingester and waits until its finalizer has let it go.
    async fn delete_ingester(&self) -> Result<()> {
        let api = Api::<KinesisIngester>::namespaced(self.client.clone(), self.ns.name());
        api.delete(NAME, &Default::default()).await?;
        poll("the ingester is gone (finalizer done)", LONG, || async {
            api.get_opt(NAME).await.ok()?.is_none().then_some(())
        })
        .await
    }

    async fn patch_workers(&self, workers: serde_json::Value) -> Result<()> {
        Api::<KinesisIngester>::namespaced(self.client.clone(), self.ns.name())
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"workers": workers}})),
            )
            .await?;
        Ok(())
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("\n===== {} (last 40 lines)\n", p.display()));
                    out.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
                }
            }
        }
        out
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(k) = self.kubelet.take() {
            k.shutdown().await;
        }
        if let Some(o) = self.operator.take() {
            let status = o.terminate().await?;
            anyhow::ensure!(
                status.success(),
                "the operator exited with {status} on SIGTERM"
            );
        }
        Ok(())
    }
}

/// Runs `body`; on failure, prints the process logs.
async fn scenario<F, Fut>(fleet: Fleet, body: F) -> Result<()>
where
    F: FnOnce(Arc<Fleet>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::FutureExt;
    let fleet = Arc::new(fleet);
    let result = match std::panic::AssertUnwindSafe(body(fleet.clone()))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(anyhow::anyhow!("assertion failed: {msg}"))
        }
    };
    let fleet = Arc::into_inner(fleet).context("the scenario kept the fleet")?;
    if let Err(e) = &result {
        eprintln!("scenario failed: {e:#}\nlogs:{}", fleet.logs());
    }
    let stopped = fleet.stop().await;
    result.and(stopped)
}

/// Payload of record `i`: `k{key}-{i}`, with key `k{i % KEYS}`.
async fn produce(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
) -> Result<()> {
    for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
        let mut req = kinesis.put_records().stream_name(stream);
        for i in chunk {
            let key = format!("k{}", i % KEYS);
            req = req.records(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(&key)
                    .data(Blob::new(format!("{key}-{i}")))
                    .build()?,
            );
        }
        let res = req.send().await?;
        anyhow::ensure!(
            res.failed_record_count().unwrap_or(0) == 0,
            "PutRecords failed for some records"
        );
    }
    Ok(())
}

/// A background producer: batches of 20 records every 100 ms until stopped.
struct Producer {
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Producer {
    fn start(kinesis: aws_sdk_kinesis::Client, stream: String, from: usize) -> Self {
        let next = Arc::new(AtomicUsize::new(from));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (next.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let from = n.load(Ordering::Relaxed);
                // Resharding makes puts fail briefly; retry the same batch.
                if produce(&kinesis, &stream, from, from + 20).await.is_ok() {
                    n.store(from + 20, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        });
        Self { next, stop, task }
    }

    /// Stops and returns the number of records produced (0..n).
    async fn stop(self) -> Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await??;
        Ok(self.next.load(Ordering::Relaxed))
    }
}

fn delivered(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn record_index(payload: &str) -> Option<usize> {
    payload.rsplit_once('-')?.1.parse().ok()
}

/// Waits until records `0..n` were all delivered at least once.
async fn wait_delivered(out: &Path, n: usize) -> Result<Vec<String>> {
    poll(&format!("all {n} records delivered"), LONG, || async {
        let got = delivered(out);
        let mut seen = vec![false; n];
        for p in &got {
            if let Some(i) = record_index(p).filter(|i| *i < n) {
                seen[i] = true;
            }
        }
        seen.iter().all(|s| *s).then_some(got)
    })
    .await
}

fn duplicates(payloads: &[String]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in payloads {
        *counts.entry(p).or_default() += 1;
    }
    let mut d: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p.to_owned())
        .collect();
    d.sort();
    d
}

/// Fails when any payload was delivered more than once, naming `what` re-delivered them.
fn assert_no_duplicates(payloads: &[String], what: &str) {
    let dup = duplicates(payloads);
    assert!(
        dup.is_empty(),
        "{what} re-delivered {} records: {:?}",
        dup.len(),
        &dup[..dup.len().min(10)]
    );
}

/// Per key, records appear in the order they were written (so a child shard's records come
/// after its parent's).
fn assert_key_order(payloads: &[String]) -> Result<()> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for p in payloads.iter().filter(|p| !p.starts_with("marker-")) {
        let (key, i) = p.rsplit_once('-').context("payload shape")?;
        let i: usize = i.parse()?;
        if let Some(prev) = last.insert(key, i) {
            anyhow::ensure!(prev < i, "key {key}: record {i} delivered after {prev}");
        }
    }
    Ok(())
}

/// Counts changes of the worker objects and of the ingester and table over `window`, by
/// polling every 500 ms (the workers write every 6 s, so no change is missed).
async fn measure_writes(fleet: &Fleet, window: Duration) -> Result<(f64, f64, usize)> {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut worker_writes = 0usize;
    let mut other_writes = 0usize;
    let ki_api = Api::<KinesisIngester>::namespaced(fleet.client.clone(), fleet.ns.name());
    let start = Instant::now();
    let mut first = true;
    while start.elapsed() < window {
        let mut objects: Vec<(String, String, bool)> = fleet
            .workers()
            .await?
            .into_iter()
            .map(|w| (w.name_any(), w.resource_version().unwrap_or_default(), true))
            .collect();
        let ki = ki_api.get(NAME).await?;
        objects.push((
            "ingester".into(),
            ki.resource_version().unwrap_or_default(),
            false,
        ));
        if let Some(t) = fleet.table().await? {
            objects.push((
                "table".into(),
                t.resource_version().unwrap_or_default(),
                false,
            ));
        }
        for (name, rv, is_worker) in &objects {
            let changed = last
                .insert(name.clone(), rv.clone())
                .is_some_and(|old| old != *rv);
            if changed && !first {
                if *is_worker {
                    worker_writes += 1
                } else {
                    other_writes += 1
                }
            }
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let workers = fleet.workers().await?.len().max(1);
    let secs = start.elapsed().as_secs_f64();
    Ok((
        worker_writes as f64 / secs / workers as f64,
        (worker_writes + other_writes) as f64 / secs / workers as f64,
        workers,
    ))
}

/// Scenario 1: a 4-shard stream, two workers; every record is delivered once, lag falls to 0,
/// `kubectl get kinesisingesters` shows the columns; API writes per worker are measured.
#[tokio::test]
async fn s1_fleet_reads_every_shard_and_reports_lag() -> Result<()> {
    let fleet = Fleet::start("e2e-basic", 4, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        produce(&f.kinesis, &f.stream, 0, 400).await?;
        let got = wait_delivered(&f.out, 400).await?;
        let owners = poll("both workers own two shards", LONG, || async {
            let o = f.owners().await.ok()??;
            let mut per: BTreeMap<String, usize> = BTreeMap::new();
            for w in o.values() {
                *per.entry(w.clone()).or_default() += 1;
            }
            (per.len() == 2 && per.values().all(|n| *n == 2)).then_some(per)
        })
        .await?;
        assert_eq!(owners.keys().cloned().collect::<Vec<_>>(), vec!["orders-worker-0", "orders-worker-1"]);
        // Checkpoint-only changes reach status at most every status interval (10 s), so the
        // checkpoints are part of what is waited for.
        let ki = poll("status lag 0, Ready, every shard Reading with a checkpoint", LONG, || async {
            let ki = f.wait_ready("Ready").await.ok()?;
            let s = ki.status.as_ref()?;
            let reading = s.shards.iter().all(|s| s.state == kinesis_ingester_api::ShardState::Reading && s.checkpoint.is_some());
            (s.max_millis_behind_latest == Some(0) && s.shards.len() == 4 && s.workers.as_deref() == Some("2/2") && reading).then_some(ki)
        })
        .await?;
        let status = ki.status.clone().context("status")?;
        assert_eq!(status.open_shards, Some(4));
        assert_eq!(status.lag.as_deref(), Some("0s"));
        let dup = duplicates(&delivered(&f.out));
        assert!(dup.is_empty(), "duplicates without any failure: {dup:?}");
        assert!(got.len() >= 400);

        // The printer columns, as a user sees them.
        let out = std::process::Command::new("kubectl")
            .args(["get", "kinesisingesters", "-n", f.ns.name()])
            .output()
            .context("running kubectl (on PATH under make test)")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("FIGURE kubectl get kinesisingesters:\n{text}");
        let header: Vec<&str> = text.lines().next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(header, vec!["NAME", "STREAM", "SHARDS", "WORKERS", "LAG", "READY", "AGE"]);
        let row: Vec<&str> = text.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        assert_eq!(&row[..6], &[NAME, f.stream.as_str(), "4", "2/2", "0s", "True"]);

        // The worker pods and the RBAC the operator created.
        let sts = Api::<StatefulSet>::namespaced(f.client.clone(), f.ns.name()).get("orders-worker").await?;
        assert_eq!(sts.spec.replicas, Some(2));
        assert_eq!(f.kubelet().running(), vec!["orders-worker-0", "orders-worker-1"]);

        // Steady-state API writes.
        let (worker_rate, total_rate, workers) = measure_writes(&f, Duration::from_secs(30)).await?;
        eprintln!("FIGURE steady-state API writes: {worker_rate:.3}/s per worker from worker reports, {total_rate:.3}/s per worker including operator writes ({workers} workers, 30 s)");
        assert!(worker_rate > 0.0, "workers must renew their reports");
        Ok(())
    })
    .await
}

/// Scenario 2: SplitShard, then MergeShards of the two children, while producing. Parents
/// finish before children are read (per-key order holds), nothing is lost or duplicated.
#[tokio::test]
async fn s2_split_then_merge_while_producing() -> Result<()> {
    let fleet = Fleet::start("e2e-reshard", 2, "{shardsPerWorker: 1}").await?;
    scenario(fleet, |f| async move {
        f.settle(200, "Ready before resharding").await?;
        let producer = Producer::start(f.kinesis.clone(), f.stream.clone(), 200);

        // Split shard 0 at the middle of its range.
        let shards = f
            .kinesis
            .list_shards()
            .stream_name(&f.stream)
            .send()
            .await?;
        let parent = shards.shards()[0].clone();
        let range = parent.hash_key_range().context("hash range")?;
        let (lo, hi): (u128, u128) = (
            range.starting_hash_key().parse()?,
            range.ending_hash_key().parse()?,
        );
        let split_at = Instant::now();
        f.kinesis
            .split_shard()
            .stream_name(&f.stream)
            .shard_to_split(parent.shard_id())
            .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
            .send()
            .await?;
        wait_stream_active(&f.kinesis, &f.stream).await?;
        let children = poll("both children read", LONG, || async {
            let t = f.table().await.ok()??;
            let kids: Vec<_> = t
                .spec
                .shards
                .iter()
                .filter(|s| s.parents.contains(&parent.shard_id().to_owned()))
                .collect();
            let parent_done = t.spec.finished.contains(&parent.shard_id().to_owned());
            let reading = kids.len() == 2 && kids.iter().all(|k| k.owner.is_some() && !k.draining);
            (parent_done && reading)
                .then(|| kids.iter().map(|k| k.shard_id.clone()).collect::<Vec<_>>())
        })
        .await?;
        eprintln!(
            "FIGURE SplitShard -> parent finished and both children owned: {:.1}s",
            split_at.elapsed().as_secs_f64()
        );
        // A marker put straight into the upper child: its delivery is the moment the children
        // are read.
        f.kinesis
            .put_record()
            .stream_name(&f.stream)
            .partition_key("marker")
            .explicit_hash_key(hi.to_string())
            .data(Blob::new("marker-in-child"))
            .send()
            .await?;
        poll("the marker in a child shard is delivered", LONG, || async {
            delivered(&f.out)
                .iter()
                .any(|p| p == "marker-in-child")
                .then_some(())
        })
        .await?;
        eprintln!(
            "FIGURE SplitShard -> a record in a child delivered: {:.1}s",
            split_at.elapsed().as_secs_f64()
        );
        let confirmed = poll("children confirmed by their owners", LONG, || async {
            let ws = f.workers().await.ok()?;
            let t = f.table().await.ok()??;
            children
                .iter()
                .all(|c| {
                    let s = t.spec.shards.iter().find(|s| &s.shard_id == c);
                    s.is_some_and(|s| {
                        ws.iter().any(|w| {
                            Some(w.name_any()) == s.owner
                                && w.status
                                    .as_ref()
                                    .is_some_and(|st| st.entry(c, s.epoch).is_some())
                        })
                    })
                })
                .then_some(())
        })
        .await;
        confirmed?;
        eprintln!(
            "FIGURE SplitShard -> children being read (confirmed by their workers): {:.1}s",
            split_at.elapsed().as_secs_f64()
        );

        // Merge the two children back.
        let merge_at = Instant::now();
        f.kinesis
            .merge_shards()
            .stream_name(&f.stream)
            .shard_to_merge(&children[0])
            .adjacent_shard_to_merge(&children[1])
            .send()
            .await?;
        wait_stream_active(&f.kinesis, &f.stream).await?;
        poll(
            "the merged child is read after both parents",
            LONG,
            || async {
                let t = f.table().await.ok()??;
                let done = children.iter().all(|c| t.spec.finished.contains(c));
                let merged = t.spec.shards.iter().find(|s| {
                    s.parents.len() == 2 && s.parents.iter().all(|p| children.contains(p))
                })?;
                (done && merged.owner.is_some()).then_some(())
            },
        )
        .await?;
        eprintln!(
            "FIGURE MergeShards -> merged child owned: {:.1}s",
            merge_at.elapsed().as_secs_f64()
        );
        let n = producer.stop().await?;
        let got = wait_delivered(&f.out, n).await?;
        assert_key_order(&got)?;
        assert_no_duplicates(&got, "resharding");
        eprintln!(
            "FIGURE reshard scenario: {n} records produced, {} delivered, 0 lost, 0 duplicated",
            got.len()
        );
        Ok(())
    })
    .await
}

/// Scenario 3: SIGKILL one worker process (its pod stays, as on a lost node): after its lease
/// expires its shards resume on the other worker from the last checkpoint; nothing is lost.
#[tokio::test]
async fn s3_killed_worker_loses_its_shards_to_a_live_one() -> Result<()> {
    let fleet = Fleet::start("e2e-kill", 4, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        f.settle(200, "Ready before the kill").await?;
        let victim_shards: Vec<String> = f.owners().await?.context("owners")?
            .into_iter()
            .filter(|(_, w)| w == "orders-worker-1")
            .map(|(s, _)| s)
            .collect();
        assert_eq!(victim_shards.len(), 2);
        let producer = Producer::start(f.kinesis.clone(), f.stream.clone(), 200);
        let killed_at = Instant::now();
        assert!(f.kubelet().kill("orders-worker-1"), "the worker process was running");
        let owners = poll("the victim's shards move to orders-worker-0", LONG, || async {
            let o = f.owners().await.ok()??;
            (o.len() == 4 && o.values().all(|w| w == "orders-worker-0")).then_some(o)
        })
        .await?;
        eprintln!("FIGURE worker kill -> shards reassigned: {:.1}s", killed_at.elapsed().as_secs_f64());
        // A marker put straight into one of the victim's shards: its delivery is the moment
        // that shard is read again.
        let range = f
            .kinesis
            .list_shards()
            .stream_name(&f.stream)
            .send()
            .await?
            .shards()
            .iter()
            .find(|s| s.shard_id() == victim_shards[0])
            .and_then(|s| s.hash_key_range().map(|r| r.starting_hash_key().to_owned()))
            .context("the victim shard's range")?;
        f.kinesis
            .put_record()
            .stream_name(&f.stream)
            .partition_key("marker")
            .explicit_hash_key(range)
            .data(Blob::new("marker-after-kill"))
            .send()
            .await?;
        poll("the marker in the victim's shard is delivered", LONG, || async {
            delivered(&f.out).iter().any(|p| p == "marker-after-kill").then_some(())
        })
        .await?;
        eprintln!("FIGURE worker kill -> its shard read again (marker delivered): {:.1}s", killed_at.elapsed().as_secs_f64());
        poll("orders-worker-0 confirms them", LONG, || async {
            let t = f.table().await.ok()??;
            let w0 = f.worker("orders-worker-0").await.ok()?;
            let st = w0.status?;
            victim_shards.iter().all(|s| {
                t.spec.shards.iter().any(|e| &e.shard_id == s && st.entry(s, e.epoch).is_some())
            }).then_some(())
        })
        .await?;
        eprintln!("FIGURE worker kill -> orders-worker-0 reports the shards: {:.1}s", killed_at.elapsed().as_secs_f64());
        assert_eq!(owners.len(), 4);
        let n = producer.stop().await?;
        let got = wait_delivered(&f.out, n).await?;
        let dup = duplicates(&got);
        eprintln!("FIGURE kill scenario: {n} records, {} duplicates (bounded by the last report interval)", dup.len());
        let ki = f.ingester().await?;
        let degraded = ki.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded")).context("Degraded")?;
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "WorkerExpired"));
        Ok(())
    })
    .await
}

/// Scenario 4: change shardsPerWorker 4 → 2 → 4 while producing: the fleet grows to two
/// workers and shrinks back, shards move by draining, and planned handoffs deliver no
/// duplicates.
#[tokio::test]
async fn s4_resizing_the_fleet_moves_shards_without_loss_or_duplicates() -> Result<()> {
    let fleet = Fleet::start("e2e-resize", 4, "{shardsPerWorker: 4}").await?;
    scenario(fleet, |f| async move {
        f.settle(200, "Ready with one worker").await?;
        let producer = Producer::start(f.kinesis.clone(), f.stream.clone(), 200);
        let grow = Instant::now();
        f.patch_workers(serde_json::json!({"shardsPerWorker": 2}))
            .await?;
        poll("two workers with two shards each", LONG, || async {
            let o = f.owners().await.ok()??;
            let w1 = o.values().filter(|w| *w == "orders-worker-1").count();
            (o.len() == 4 && w1 == 2).then_some(())
        })
        .await?;
        let ki = f.wait_ready("Ready with two workers").await?;
        eprintln!(
            "FIGURE scale 1 -> 2 workers, balanced and Ready: {:.1}s",
            grow.elapsed().as_secs_f64()
        );
        assert_eq!(ki.status.as_ref().map(|s| s.replicas), Some(2));

        let shrink = Instant::now();
        f.patch_workers(serde_json::json!({"shardsPerWorker": 4}))
            .await?;
        poll("back to one worker, its pod gone", LONG, || async {
            let o = f.owners().await.ok()??;
            let sts = Api::<StatefulSet>::namespaced(f.client.clone(), f.ns.name())
                .get("orders-worker")
                .await
                .ok()?;
            let one = o.values().all(|w| w == "orders-worker-0") && sts.spec.replicas == Some(1);
            (one && f.kubelet().running() == vec!["orders-worker-0".to_owned()]).then_some(())
        })
        .await?;
        f.wait_ready("Ready with one worker again").await?;
        eprintln!(
            "FIGURE scale 2 -> 1 workers, drained and Ready: {:.1}s",
            shrink.elapsed().as_secs_f64()
        );

        // The scale subresource (what `kubectl scale`, an HPA or KEDA use) overrides the
        // count derived from shardsPerWorker.
        let out = std::process::Command::new("kubectl")
            .args([
                "scale",
                "kinesisingester",
                NAME,
                "--replicas=2",
                "-n",
                f.ns.name(),
            ])
            .output()
            .context("running kubectl scale")?;
        assert!(
            out.status.success(),
            "kubectl scale: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        poll(
            "kubectl scale --replicas=2 gives two balanced workers",
            LONG,
            || async {
                let o = f.owners().await.ok()??;
                (o.values().filter(|w| *w == "orders-worker-1").count() == 2).then_some(())
            },
        )
        .await?;
        assert_eq!(f.ingester().await?.spec.workers.replicas, Some(2));
        let n = producer.stop().await?;
        let got = wait_delivered(&f.out, n).await?;
        assert_no_duplicates(&got, "planned handoffs");
        assert_key_order(&got)?;
        Ok(())
    })
    .await
}

/// Scenario 5: two operator replicas; SIGKILL the leader mid-run. The standby takes the Lease
/// over, the workers keep reading meanwhile, and there are no duplicate workers and no loss.
#[tokio::test]
async fn s5_operator_restart_keeps_the_fleet() -> Result<()> {
    let mut fleet = Fleet::start("e2e-restart", 4, "{shardsPerWorker: 2}").await?;
    fleet.settle(100, "Ready before the restart").await?;
    // A second replica stands by: it must not touch anything while the first leads.
    let standby = OperatorProcess::start(fleet.dir.path(), fleet.ns.name(), &[]).await?;
    let leader = fleet.operator.take().context("the first operator")?;
    leader.kill().await;
    let killed = Instant::now();
    // The workers do not need the operator at steady state.
    produce(&fleet.kinesis, &fleet.stream, 100, 200).await?;
    wait_delivered(&fleet.out, 200).await?;
    fleet.operator = Some(standby);
    scenario(fleet, |f| async move {
        let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
            f.client.clone(),
            f.ns.name(),
        );
        let before = lease
            .get("kinesis-operator-leader")
            .await?
            .spec
            .and_then(|s| s.holder_identity);
        poll("the standby takes the Lease over", LONG, || async {
            let holder = lease
                .get("kinesis-operator-leader")
                .await
                .ok()?
                .spec?
                .holder_identity;
            (holder.is_some() && holder != before).then_some(())
        })
        .await?;
        eprintln!(
            "FIGURE leader killed -> standby holds the Lease: {:.1}s",
            killed.elapsed().as_secs_f64()
        );
        // The new leader reconciles: a resize is carried out.
        f.patch_workers(serde_json::json!({"shardsPerWorker": 4}))
            .await?;
        poll(
            "the new leader shrinks the fleet to one worker",
            LONG,
            || async {
                let o = f.owners().await.ok()??;
                (o.len() == 4 && o.values().all(|w| w == "orders-worker-0")).then_some(())
            },
        )
        .await?;
        eprintln!(
            "FIGURE leader killed -> new leader completed a rebalance: {:.1}s",
            killed.elapsed().as_secs_f64()
        );
        produce(&f.kinesis, &f.stream, 200, 300).await?;
        f.wait_ready("Ready after the failover").await?;
        let got = wait_delivered(&f.out, 300).await?;
        assert!(
            duplicates(&got).is_empty(),
            "a failover and a planned resize must not re-deliver"
        );
        let sts = Api::<StatefulSet>::namespaced(f.client.clone(), f.ns.name())
            .list(&ListParams::default())
            .await?;
        assert_eq!(sts.items.len(), 1, "no duplicate workloads");
        assert_eq!(sts.items[0].spec.replicas, Some(1));
        poll("the removed worker's object is deleted", LONG, || async {
            (f.workers().await.ok()?.len() == 1).then_some(())
        })
        .await?;
        assert_eq!(
            f.kubelet().starts("orders-worker-0"),
            1,
            "the remaining worker was never restarted"
        );
        Ok(())
    })
    .await
}

/// Bad input at runtime: a stream that does not exist is reported as Ready=False and
/// Degraded=StreamNotFound with the stream's name, an event says so, and the operator keeps
/// running (it reconciles a valid ingester created next to it).
#[tokio::test]
async fn s6_a_missing_stream_is_a_condition_not_a_crash() -> Result<()> {
    let fleet = Fleet::start("e2e-missing", 1, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        let endpoint = std::env::var("KINESIS_ENDPOINT")?;
        let ghost: KinesisIngester = serde_saphyr::from_str(&format!(
            "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: ghost}}
spec:
  stream: {{name: no-such-stream, region: us-east-1, endpoint: '{endpoint}'}}
  sink: {{stdout: {{}}}}
"
        ))?;
        let api = Api::<KinesisIngester>::namespaced(f.client.clone(), f.ns.name());
        api.create(&PostParams::default(), &ghost).await?;
        let status = poll("Degraded=StreamNotFound on the ghost", LONG, || async {
            let ki = api.get("ghost").await.ok()?;
            let s = ki.status?;
            let d = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")?;
            (d.reason == "StreamNotFound").then_some(s)
        })
        .await?;
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .context("Ready")?;
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "StreamUnavailable")
        );
        assert!(
            ready.message.contains("no-such-stream"),
            "the message names the stream: {}",
            ready.message
        );
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(f.client.clone(), f.ns.name())
                .list(&ListParams::default())
                .await?;
        assert!(
            events
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("StreamNotFound")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ghost")),
            "a StreamNotFound event on the ghost"
        );
        // The valid ingester beside it is unaffected.
        f.settle(50, "the valid ingester is Ready").await?;
        Ok(())
    })
    .await
}

/// Deletion with `retention: Retain`, then re-creation: the workers release their shards, the
/// shard table outlives the ingester with the final checkpoints, and the new ingester resumes
/// after them: nothing read twice, nothing lost.
#[tokio::test]
async fn s7_retained_checkpoints_survive_delete_and_recreate() -> Result<()> {
    let fleet = Fleet::start("e2e-retain", 2, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        f.settle(100, "Ready before deletion").await?;
        let api = Api::<KinesisIngester>::namespaced(f.client.clone(), f.ns.name());
        let original = f.ingester().await?;
        f.delete_ingester().await?;
        let table = f.table().await?.context("the retained table")?;
        assert_eq!(
            table
                .labels()
                .get("kinesis-operator.dev/retained")
                .map(String::as_str),
            Some("true")
        );
        assert!(
            table.metadata.owner_references.is_none(),
            "garbage collection must not take it"
        );
        assert!(
            table
                .spec
                .shards
                .iter()
                .all(|s| s.owner.is_none() && s.start_after.is_some()),
            "final checkpoints consolidated: {:?}",
            table.spec.shards
        );
        assert!(f.kubelet().running().is_empty(), "every worker stopped");

        produce(&f.kinesis, &f.stream, 100, 200).await?;
        let mut again: KinesisIngester = KinesisIngester::new(NAME, original.spec.clone());
        again.metadata.namespace = Some(f.ns.name().to_owned());
        api.create(&PostParams::default(), &again).await?;
        let got = wait_delivered(&f.out, 200).await?;
        let dup = duplicates(&got);
        assert!(
            dup.is_empty(),
            "re-created ingester re-read {} records: {:?}",
            dup.len(),
            &dup[..dup.len().min(10)]
        );
        let adopted = f.table().await?.context("table")?;
        assert_eq!(
            Some(adopted.spec.ingester_uid.clone()),
            f.ingester().await?.metadata.uid,
            "adopted by the new ingester"
        );
        Ok(())
    })
    .await
}

/// Enhanced fan-out in a fleet with `retention: Delete`: the operator registers one consumer
/// and hands its ARN to the workers; deleting the ingester deregisters it and removes the table.
#[tokio::test]
async fn s8_enhanced_fan_out_consumer_is_deregistered_on_delete() -> Result<()> {
    let fleet = Fleet::start("e2e-efo", 2, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        let api = Api::<KinesisIngester>::namespaced(f.client.clone(), f.ns.name());
        api.patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"read": {"mode": "EnhancedFanOut"}, "checkpoints": {"retention": "Delete"}}})),
        )
        .await?;
        let arn = f.kinesis.describe_stream_summary().stream_name(&f.stream).send().await?
            .stream_description_summary().map(|d| d.stream_arn().to_owned()).context("arn")?;
        let consumers = || async {
            let r = f.kinesis.list_stream_consumers().stream_arn(&arn).send().await.ok()?;
            Some(r.consumers().iter().map(|c| c.consumer_name().to_owned()).collect::<Vec<_>>())
        };
        poll("the table names the consumer", LONG, || async { f.table().await.ok()??.spec.consumer_arn }).await?;
        let registered = consumers().await.context("ListStreamConsumers")?;
        assert_eq!(registered.len(), 1, "one consumer for the whole fleet: {registered:?}");
        produce(&f.kinesis, &f.stream, 0, 100).await?;
        wait_delivered(&f.out, 100).await?;
        f.delete_ingester().await?;
        poll("the consumer is deregistered", LONG, || async { consumers().await?.is_empty().then_some(()) }).await?;
        assert!(f.table().await?.is_none(), "retention: Delete removes the table");
        Ok(())
    })
    .await
}

/// UpdateShardCount 2 → 4 while producing: the operator finds the new shards on its own, the
/// parents finish before their children are read, and nothing is lost or duplicated.
#[tokio::test]
async fn s9_update_shard_count_while_producing() -> Result<()> {
    let fleet = Fleet::start("e2e-scale-stream", 2, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        f.settle(100, "Ready before UpdateShardCount").await?;
        let before: Vec<String> = f.owners().await?.context("owners")?.into_keys().collect();
        let producer = Producer::start(f.kinesis.clone(), f.stream.clone(), 100);
        let started = Instant::now();
        f.kinesis
            .update_shard_count()
            .stream_name(&f.stream)
            .target_shard_count(4)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await?;
        wait_stream_active(&f.kinesis, &f.stream).await?;
        poll(
            "4 open shards read by 2 workers, the old ones finished",
            LONG,
            || async {
                let t = f.table().await.ok()??;
                let parents_done = before.iter().all(|p| t.spec.finished.contains(p));
                let owned = t
                    .spec
                    .shards
                    .iter()
                    .filter(|s| s.owner.is_some() && !s.draining)
                    .count();
                let ki = f.ingester().await.ok()?;
                let open = ki.status.as_ref()?.open_shards;
                (parents_done && owned >= 4 && open == Some(4)).then_some(ki)
            },
        )
        .await?;
        eprintln!(
            "FIGURE UpdateShardCount 2 -> 4: every new shard owned after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        // The table and the status are two writes of one pass: wait for the status to size
        // the fleet to ceil(4 / 2) rather than read it in between.
        poll("ceil(4 / 2) workers in status", LONG, || async {
            let ki = f.ingester().await.ok()?;
            (ki.status.as_ref()?.replicas == 2).then_some(())
        })
        .await?;
        let n = producer.stop().await?;
        let got = wait_delivered(&f.out, n).await?;
        assert_key_order(&got)?;
        assert_no_duplicates(&got, "UpdateShardCount");
        Ok(())
    })
    .await
}

/// A worker frozen (SIGSTOP) for longer than its lease, then thawed: the operator fences its
/// shards and moves them; the thawed worker finds the fences on its next write, stops those
/// shards without storing anything for them, rejoins, and the fleet rebalances. Nothing is lost.
#[tokio::test]
async fn s10_a_frozen_worker_is_fenced_and_rejoins() -> Result<()> {
    let fleet = Fleet::start("e2e-freeze", 4, "{shardsPerWorker: 2}").await?;
    scenario(fleet, |f| async move {
        f.settle(100, "Ready before the freeze").await?;
        let frozen_shards: BTreeMap<String, i64> = f
            .table()
            .await?
            .context("table")?
            .spec
            .shards
            .iter()
            .filter(|s| s.owner.as_deref() == Some("orders-worker-1"))
            .map(|s| (s.shard_id.clone(), s.epoch))
            .collect();
        assert_eq!(frozen_shards.len(), 2);
        let producer = Producer::start(f.kinesis.clone(), f.stream.clone(), 100);
        assert!(
            f.kubelet().signal("orders-worker-1", "STOP"),
            "the worker process was running"
        );
        poll(
            "the frozen worker's shards move to orders-worker-0",
            LONG,
            || async {
                let o = f.owners().await.ok()??;
                (o.len() == 4 && o.values().all(|w| w == "orders-worker-0")).then_some(())
            },
        )
        .await?;
        let fenced = f.worker("orders-worker-1").await?;
        for (shard, epoch) in &frozen_shards {
            assert!(
                fenced.spec.is_fenced(shard, *epoch),
                "{shard}@{epoch} is fenced on the frozen worker"
            );
        }
        assert!(f.kubelet().signal("orders-worker-1", "CONT"), "thaw");
        let thawed = Instant::now();
        poll(
            "the thawed worker rejoins and the fleet is balanced again",
            LONG,
            || async {
                let o = f.owners().await.ok()??;
                (o.values().filter(|w| *w == "orders-worker-1").count() == 2).then_some(())
            },
        )
        .await?;
        eprintln!(
            "FIGURE thawed worker -> rebalanced onto it: {:.1}s",
            thawed.elapsed().as_secs_f64()
        );
        // It never stored a checkpoint for the epochs taken from it.
        let w1 = f.worker("orders-worker-1").await?;
        for (shard, epoch) in &frozen_shards {
            assert!(
                w1.status
                    .as_ref()
                    .and_then(|s| s.entry(shard, *epoch))
                    .is_none(),
                "{shard}@{epoch} must not be reported by the fenced worker any more"
            );
        }
        f.wait_ready("Ready after the rejoin").await?;
        let n = producer.stop().await?;
        let got = wait_delivered(&f.out, n).await?;
        eprintln!(
            "FIGURE freeze scenario: {n} records, {} duplicates",
            duplicates(&got).len()
        );
        Ok(())
    })
    .await
}
