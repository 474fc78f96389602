//! Our failover, measured like e2e scenario 3 (`make bench-fleet`): a private control plane
//! (`ControlPlane::start`), the operator and two fleet workers run by the testkit's kubelet, a
//! 4-shard stream on kinesis-local; SIGKILL the worker holding more shards and time until a
//! marker put into each of the 4 shards after the kill is delivered.
//!
//! The testkit reads `KUBECONFIG` and `KINESIS_ENDPOINT` from the environment, which a running
//! process must not change, so the driver runs this part in a child of itself
//! (`peers-bench --ours-failover`) with both set.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::primitives::Blob;
use kinesis_ingester_api::KinesisShardAssignment;
use kinesis_testkit::{
    control_plane::ControlPlane, file_fleet::FileFleet, fleet::Kubelet, wait_until,
};
use kube::Api;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::kinesis_local::KinesisLocal;

const NAME: &str = "orders";
const LONG: Duration = Duration::from_secs(180);
/// The line the child prints with the figure.
const FIGURE: &str = "OURS_FAILOVER_SECONDS ";

/// Seconds from the kill until all 4 shards are read again, or why it could not be measured.
pub async fn ours(repo: &Path, dir: &Path) -> Result<f64> {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(2))
        .await?
        .context(
            "the private control plane did not start (are the kube binaries cached? `make tools`)",
        )?;
    let kl = KinesisLocal::start(repo, &dir.join("kinesis-local-failover")).await?;
    let result = child(&cp, &kl.endpoint).await;
    kl.stop().await;
    tokio::task::spawn_blocking(move || drop(cp)).await?;
    result
}

async fn child(cp: &ControlPlane, endpoint: &str) -> Result<f64> {
    // helm (the operator's RBAC is rendered from the chart) comes with the kube binaries.
    let mut dirs = vec![cp.bin_dir().to_owned()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(dirs)?;
    let mut c = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--ours-failover")
        .env("KUBECONFIG", cp.kubeconfig())
        .env("KINESIS_ENDPOINT", endpoint)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting peers-bench --ours-failover")?;
    let mut lines = BufReader::new(c.stdout.take().context("stdout")?).lines();
    let mut figure = None;
    while let Some(line) = lines.next_line().await? {
        match line.strip_prefix(FIGURE) {
            Some(s) => figure = s.trim().parse::<f64>().ok(),
            None => println!("{line}"),
        }
    }
    let status = c.wait().await?;
    match figure {
        Some(s) if status.success() => Ok(s),
        _ => bail!("peers-bench --ours-failover exited with {status} without a figure"),
    }
}

/// The child: runs the fleet on the control plane of `KUBECONFIG` and prints the figure.
pub async fn run_child() -> Result<()> {
    let mut f = FileFleet::start(NAME, "peers-failover", 4, "{shardsPerWorker: 2}").await?;
    let kubelet = f.kubelet.take().context("the kubelet")?;
    let result = measure(
        &f.client,
        f.ns.name(),
        &f.kinesis,
        &f.stream,
        &f.out,
        &kubelet,
    )
    .await;
    kubelet.shutdown().await;
    if let Some(operator) = f.operator.take() {
        operator.kill().await;
    }
    let s = result?;
    println!("{FIGURE}{s}");
    Ok(())
}

/// Payloads in the file sink's NDJSON.
fn delivered(out: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["data"].as_str().map(str::to_owned))
        .collect()
}

/// Puts `<tag>-<shard>` into each shard (its starting hash key).
async fn mark_every_shard(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    tag: &str,
) -> Result<Vec<String>> {
    let shards = kinesis.list_shards().stream_name(stream).send().await?;
    let mut markers = Vec::new();
    for s in shards.shards() {
        let key = s
            .hash_key_range()
            .map(|r| r.starting_hash_key().to_owned())
            .context("hash key range")?;
        let m = format!("{tag}-{}", s.shard_id());
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key("marker")
            .explicit_hash_key(key)
            .data(Blob::new(m.clone()))
            .send()
            .await?;
        markers.push(m);
    }
    Ok(markers)
}

async fn wait_markers(out: &Path, markers: &[String], what: &str) -> Result<()> {
    wait_until(what, LONG, || async {
        let got = delivered(out);
        Ok(markers.iter().all(|m| got.contains(m)).then_some(()))
    })
    .await
}

/// Owner of every shard (shard -> worker), once each has one and none is draining.
async fn owners(client: &kube::Client, ns: &str) -> Option<BTreeMap<String, String>> {
    let t = Api::<KinesisShardAssignment>::namespaced(client.clone(), ns)
        .get_opt(NAME)
        .await
        .ok()??;
    let o: Option<BTreeMap<_, _>> = t
        .spec
        .shards
        .iter()
        .map(|s| Some((s.shard_id.clone(), s.owner.clone().filter(|_| !s.draining)?)))
        .collect();
    o.filter(|o| o.len() == 4)
}

/// The worker holding the most shards (the later name on a tie).
fn victim(owners: &BTreeMap<String, String>) -> Option<(String, usize)> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for w in owners.values() {
        *count.entry(w).or_default() += 1;
    }
    count
        .into_iter()
        .max_by_key(|(w, n)| (*n, *w))
        .map(|(w, n)| (w.to_owned(), n))
}

async fn measure(
    client: &kube::Client,
    ns: &str,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    out: &Path,
    kubelet: &Kubelet,
) -> Result<f64> {
    let started = Instant::now();
    let warm = mark_every_shard(kinesis, stream, "before").await?;
    wait_markers(out, &warm, "all 4 shards read before the kill").await?;
    let owners = wait_until("two workers own the 4 shards", LONG, || async {
        let o = owners(client, ns).await;
        Ok(o.filter(|o| o.values().collect::<BTreeSet<_>>().len() == 2))
    })
    .await?;
    let (pod, held) = victim(&owners).context("no owner")?;
    println!(
        "  ours  fleet reading all 4 shards with two workers after {:.1} s; killing {pod} ({held} of 4 shards)",
        started.elapsed().as_secs_f64()
    );
    let killed = Instant::now();
    anyhow::ensure!(kubelet.kill(&pod), "{pod} had no running process");
    let after = mark_every_shard(kinesis, stream, "after").await?;
    wait_markers(out, &after, "all 4 shards read again after the kill").await?;
    Ok(killed.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_victim_holds_the_most_shards() {
        let o = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(s, w)| ((*s).to_owned(), (*w).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            victim(&o(&[
                ("a", "w-0"),
                ("b", "w-1"),
                ("c", "w-1"),
                ("d", "w-0"),
                ("e", "w-1")
            ])),
            Some(("w-1".into(), 3))
        );
        assert_eq!(
            victim(&o(&[("a", "w-0"), ("b", "w-1")])),
            Some(("w-1".into(), 1))
        );
        assert_eq!(victim(&o(&[])), None);
    }
}
