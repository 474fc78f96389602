//! `make bench-scale`: one ingester over 10, 100 and 1,000 idle shards of the replay server
//! (crates/testkit/src/replay.rs) read by 1, 10 and 100 worker processes (10 shards each), on the
//! local control plane. Per step it prints how long the fleet takes to own every shard, the
//! operator's CPU and RSS at rest, the API server's requests per second by verb (from its own
//! `apiserver_request_total`) at rest and during a rebalance of about 20 % of the shards, the
//! largest object written, and how long a SplitShard of 10 % of the shards (100 at 1,000) at once
//! takes to be fully taken up. It prints figures and fails only when a step does not converge.
//!
//! `SCALE_STEPS` (default `10,100,1000`) and `SCALE_REST_SECONDS` (default 60) shorten it; CI
//! runs `SCALE_STEPS=10,100 SCALE_REST_SECONDS=15` (`make bench-scale-short`).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment, KinesisWorker, ShardState};
use kinesis_testkit::{
    fleet::{Kubelet, OperatorProcess},
    operator_namespace, procstat,
    replay::{self, ReplaySpec},
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};

/// Shards each worker reads.
const PER_WORKER: usize = 10;
/// After the rebalance: 20 % more workers, so about 20 % of the shards move.
const PER_WORKER_AFTER: usize = 8;
/// How long one phase may take before the step fails.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

/// `apiserver_request_total`, summed by (verb, resource[/subresource]).
type Requests = BTreeMap<(String, String), f64>;

async fn api_requests(client: &Client) -> Result<Requests> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
        .context("reading the API server's /metrics")?;
    let mut out = Requests::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *out.entry((label("verb"), resource)).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

/// The objects the operator and its workers read and write. The rest of the API server's
/// traffic is the control plane's own (leader election Leases of every controller, ours
/// included, discovery, the namespace controller); the testkit kubelet's pod LISTs stand in for
/// a real kubelet's watch and are left out too.
const FLEET_RESOURCES: [&str; 8] = [
    "kinesisingesters",
    "kinesisingesters/status",
    "kinesisshardassignments",
    "kinesisworkers",
    "kinesisworkers/status",
    "statefulsets",
    "events",
    "pods",
];

/// Requests per second to the fleet's objects between two scrapes, by verb and by (verb,
/// resource); WATCH (long-lived) is left out.
fn rates(before: &Requests, after: &Requests, secs: f64) -> (BTreeMap<String, f64>, Requests) {
    let mut by_verb = BTreeMap::new();
    let mut by_resource = Requests::new();
    for (key, n) in after {
        let d = n - before.get(key).copied().unwrap_or(0.0);
        let (verb, resource) = key;
        if d <= 0.0
            || verb == "WATCH"
            || (verb == "LIST" && resource == "pods")
            || !FLEET_RESOURCES.contains(&resource.as_str())
        {
            continue;
        }
        *by_verb.entry(verb.clone()).or_default() += d / secs;
        by_resource.insert(key.clone(), d / secs);
    }
    (by_verb, by_resource)
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE")
}

fn show(by_verb: &BTreeMap<String, f64>) -> String {
    by_verb
        .iter()
        .map(|(v, r)| format!("{v} {r:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operator's `kinesis_operator_worker_reports_total` by result, and its reconciliations
/// (`reconciliations` in the map).
async fn reports(operator: &OperatorProcess) -> BTreeMap<String, f64> {
    let Some(port) = operator.metrics_port() else {
        return BTreeMap::new();
    };
    let text = procstat::metrics(port).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let key = if line.starts_with("kinesis_operator_reconciliations_total{") {
            "reconciliations"
        } else if !line.starts_with("kinesis_operator_worker_reports_total{") {
            continue;
        } else if line.contains("result=\"skipped\"") {
            "skipped"
        } else {
            "reconcile"
        };
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(key.to_owned()).or_default() += v;
    }
    out
}

/// Waits until `check` holds, printing its progress every 10 s; `check` returns whether it holds
/// and a line saying how far it is.
async fn converge<F, Fut>(what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let (done, progress) = check().await;
        if done {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < PHASE_LIMIT,
            "{what}: not done after {PHASE_LIMIT:?}: {progress}"
        );
        if said.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  … {what}: {progress} ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// GETs this benchmark made itself, to take out of the API server's counts.
static OWN_GETS: AtomicU64 = AtomicU64::new(0);

/// How many status shards are Reading, out of how many.
async fn reading(api: &Api<KinesisIngester>) -> (usize, usize) {
    OWN_GETS.fetch_add(1, Ordering::Relaxed);
    let Ok(ki) = api.get("scale").await else {
        return (0, 0);
    };
    let shards = ki.status.map(|s| s.shards).unwrap_or_default();
    let n = shards
        .iter()
        .filter(|s| s.state == ShardState::Reading)
        .count();
    (n, shards.len())
}

/// The number of distinct owners in the table, and whether any shard drains.
async fn owners(api: &Api<KinesisShardAssignment>) -> (usize, bool, Vec<String>) {
    OWN_GETS.fetch_add(1, Ordering::Relaxed);
    let Ok(t) = api.get("scale").await else {
        return (0, true, Vec::new());
    };
    let owners: std::collections::BTreeSet<_> = t
        .spec
        .shards
        .iter()
        .filter_map(|s| s.owner.clone())
        .collect();
    let draining = t.spec.shards.iter().any(|s| s.draining);
    (owners.len(), draining, t.spec.finished)
}

#[derive(Debug, Default)]
struct Row {
    shards: usize,
    workers: usize,
    owned_s: f64,
    cpu_rest: f64,
    rss_mib: f64,
    hwm_mib: f64,
    rest: BTreeMap<String, f64>,
    writes_per_worker: f64,
    rebalance_s: f64,
    moved: usize,
    rebalance: BTreeMap<String, f64>,
    largest: (String, usize),
    split: usize,
    split_s: f64,
    skipped: f64,
    reconciled: f64,
    /// API reads per reconciliation at rest.
    reads_per_pass: f64,
}

async fn step(shards: usize, rest: Duration) -> Result<Row> {
    let workers = shards.div_ceil(PER_WORKER);
    eprintln!("step: {shards} shards, {workers} workers");
    let (client, ns, dir) = operator_namespace("scale").await?;
    let server = replay::start(ReplaySpec {
        shards,
        pages_per_shard: 0,
        records_per_page: 0,
        record_bytes: 0,
        payloads: Vec::new(),
    })
    .await?;
    let ki: KinesisIngester = serde_saphyr::from_str(&format!(
        "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: scale}}
spec:
  stream: {{name: scale, region: us-east-1, endpoint: 'http://{}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 2s}}
  sink: {{stdout: {{}}}}
  workers: {{shardsPerWorker: {PER_WORKER}, maxReplicas: 1000}}
",
        server.addr
    ))?;
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let kubelet = Kubelet::start(client.clone(), dir.path(), ns.name())?;
    let pid = operator.pid().context("operator pid")?;
    let ki_api = Api::<KinesisIngester>::namespaced(client.clone(), ns.name());
    let table_api = Api::<KinesisShardAssignment>::namespaced(client.clone(), ns.name());
    let mut row = Row {
        shards,
        workers,
        ..Row::default()
    };

    // Apply → every shard owned and read.
    ki_api.create(&PostParams::default(), &ki).await?;
    row.owned_s = converge("every shard read", || async {
        let (n, total) = reading(&ki_api).await;
        (
            n == shards && total == shards,
            format!("{n}/{shards} shards read"),
        )
    })
    .await?
    .as_secs_f64();
    eprintln!("  every shard read {:.1} s after apply", row.owned_s);

    // At rest: the reports of the first minute settle, then a quiet window.
    let (api0, cpu0, rep0, t0) = (
        api_requests(&client).await?,
        procstat::cpu_seconds(pid)?,
        reports(&operator).await,
        Instant::now(),
    );
    tokio::time::sleep(rest).await; // a measurement window, not a synchronization
    let secs = t0.elapsed().as_secs_f64();
    let (api1, cpu1, rep1) = (
        api_requests(&client).await?,
        procstat::cpu_seconds(pid)?,
        reports(&operator).await,
    );
    row.cpu_rest = (cpu1 - cpu0) / secs;
    row.rss_mib = procstat::status_kib(pid, "VmRSS")? / 1024.0;
    row.hwm_mib = procstat::status_kib(pid, "VmHWM")? / 1024.0;
    let (by_verb, by_resource) = rates(&api0, &api1, secs);
    row.rest = by_verb;
    row.writes_per_worker = by_resource
        .iter()
        .filter(|((verb, _), _)| is_write(verb))
        .map(|(_, r)| r)
        .sum::<f64>()
        / workers as f64;
    let delta = |k: &str| rep1.get(k).copied().unwrap_or(0.0) - rep0.get(k).copied().unwrap_or(0.0);
    row.skipped = delta("skipped") / secs;
    row.reconciled = delta("reconcile") / secs;
    let reads: f64 = by_resource
        .iter()
        .filter(|((verb, _), _)| verb == "GET" || verb == "LIST")
        .map(|(_, r)| r)
        .sum();
    let passes = delta("reconciliations") / secs;
    row.reads_per_pass = if passes > 0.0 { reads / passes } else { 0.0 };
    for ((verb, resource), r) in by_resource.iter().filter(|(_, r)| **r >= 0.05) {
        eprintln!("  at rest: {verb} {resource} {r:.2}/s");
    }

    // Largest object written.
    let table = table_api.get("scale").await?;
    let mut sizes = vec![
        ("shard table".to_owned(), serde_json::to_vec(&table)?.len()),
        (
            "ingester".to_owned(),
            serde_json::to_vec(&ki_api.get("scale").await?)?.len(),
        ),
    ];
    for w in Api::<KinesisWorker>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await?
    {
        sizes.push(("a KinesisWorker".to_owned(), serde_json::to_vec(&w)?.len()));
    }
    row.largest = sizes
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap_or_default();

    // Rebalance: 20 % more workers.
    let before: BTreeMap<String, Option<String>> = table
        .spec
        .shards
        .iter()
        .map(|s| (s.shard_id.clone(), s.owner.clone()))
        .collect();
    let after_workers = shards.div_ceil(PER_WORKER_AFTER);
    let api0 = api_requests(&client).await?;
    let own0 = OWN_GETS.load(Ordering::Relaxed);
    let t0 = Instant::now();
    ki_api
        .patch(
            "scale",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"workers": {"shardsPerWorker": PER_WORKER_AFTER}}}),
            ),
        )
        .await?;
    row.rebalance_s = converge("the rebalance", || async {
        let (n, draining, _) = owners(&table_api).await;
        let (read, total) = reading(&ki_api).await;
        (
            n == after_workers && !draining && read == shards && total == shards,
            format!("{n}/{after_workers} owners, draining {draining}, {read}/{shards} read"),
        )
    })
    .await?
    .as_secs_f64();
    let secs = t0.elapsed().as_secs_f64();
    let (mut by_verb, _) = rates(&api0, &api_requests(&client).await?, secs);
    if let Some(get) = by_verb.get_mut("GET") {
        let own = (OWN_GETS.load(Ordering::Relaxed) - own0) as f64 / secs;
        *get = (*get - own).max(0.0);
    }
    row.rebalance = by_verb;
    let table = table_api.get("scale").await?;
    row.moved = table
        .spec
        .shards
        .iter()
        .filter(|s| before.get(&s.shard_id) != Some(&s.owner))
        .count();

    // SplitShard of 10 % of the shards at once (100 at 1,000).
    row.split = (shards / 10).max(1);
    let parents = server.split(row.split);
    let open = shards + row.split;
    row.split_s = converge("the split taken up", || async {
        let (_, _, finished) = owners(&table_api).await;
        let done = parents.iter().filter(|p| finished.contains(p)).count();
        let (read, total) = reading(&ki_api).await;
        (
            done == parents.len() && read == open && total == open,
            format!(
                "{done}/{} parents finished, {read}/{open} shards read",
                parents.len()
            ),
        )
    })
    .await?
    .as_secs_f64();
    eprintln!(
        "  SplitShard of {} shards taken up in {:.1} s",
        row.split, row.split_s
    );

    kubelet.shutdown().await;
    operator.kill().await;
    // Without the operator, the cleanup finalizer would hold the namespace forever.
    ki_api
        .patch(
            "scale",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    // The next step starts on a quiet API server: the namespace is gone.
    let name = ns.name().to_owned();
    drop(ns);
    let namespaces = Api::<Namespace>::all(client.clone());
    converge("the namespace deleted", || async {
        let gone = matches!(namespaces.get_opt(&name).await, Ok(None));
        (gone, format!("namespace {name} still terminating"))
    })
    .await?;
    Ok(row)
}

#[tokio::test]
#[ignore = "a benchmark: make bench-scale"]
async fn fleet_at_scale() -> Result<()> {
    let steps: Vec<usize> = std::env::var("SCALE_STEPS")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("SCALE_STEPS: comma-separated shard counts")?;
    let rest = Duration::from_secs(
        std::env::var("SCALE_REST_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut rows = Vec::new();
    for shards in steps {
        rows.push(step(shards, rest).await?);
    }
    println!(
        "\nFIGURE fleet at scale (replay server, idle shards polled every 2 s, {PER_WORKER} shards per worker, {} s at rest):",
        rest.as_secs()
    );
    println!(
        "| shards | workers | apply → all read | operator CPU at rest | operator RSS (peak) | fleet API requests/s at rest | API writes/s per worker | reports/s: reconciled / skipped (reads saved/s) | largest object | rebalance (+20 % workers): moved, time | fleet API requests/s during it | SplitShard at once → taken up |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} s | {:.3} cores | {:.0} MiB ({:.0}) | {} | {:.3} | {:.2} / {:.2} ({:.1}) | {} {} B | {} shards, {:.1} s | {} | {} shards: {:.1} s |",
            r.shards,
            r.workers,
            r.owned_s,
            r.cpu_rest,
            r.rss_mib,
            r.hwm_mib,
            show(&r.rest),
            r.writes_per_worker,
            r.reconciled,
            r.skipped,
            r.skipped * r.reads_per_pass,
            r.largest.0,
            r.largest.1,
            r.moved,
            r.rebalance_s,
            show(&r.rebalance),
            r.split,
            r.split_s,
        );
    }
    Ok(())
}
