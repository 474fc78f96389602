//! Correctness side by side under resharding: a producer on kinesis-local writes records carrying (key, per-key sequence number) into a 2-shard stream, splits one shard and later merges two adjacent open shards while it produces; ours and KCL read the whole stream from TRIM_HORIZON at once and the driver counts lost, duplicated and reordered-per-key records of each.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aws_sdk_kinesis::{primitives::Blob, types::ShardFilterType};
use kinesis_testkit::{create_stream, kinesis_client_at, unique_name, wait_stream_active};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    consumer::{Consumer, Env, Kind, Opts},
    kinesis_local::KinesisLocal,
};

/// What one consumer delivered, against what was put.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub lost: usize,
    pub duplicated: usize,
    /// First deliveries of a record whose key already had a higher sequence number delivered.
    pub order_breaks: usize,
}

/// (key, per-key sequence) in `line`: both consumers print the payload `key=<k> seq=<s>` (ours
/// inside its JSON line).
fn parse(line: &str) -> Option<(u32, u32)> {
    let num = |tag: &str| -> Option<u32> {
        line.split(tag)
            .nth(1)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Some((num("key=")?, num("seq=")?))
}

/// Counts over `arrivals` (in delivery order) for `keys` keys with `per_key` records each.
pub fn tally(arrivals: &[(u32, u32)], keys: u32, per_key: u32) -> Tally {
    let mut seen = HashSet::new();
    let mut high: BTreeMap<u32, u32> = BTreeMap::new();
    let mut t = Tally::default();
    for &(k, s) in arrivals {
        if !seen.insert((k, s)) {
            t.duplicated += 1;
            continue;
        }
        let h = high.entry(k).or_insert(s);
        if s < *h {
            t.order_breaks += 1;
        } else {
            *h = s;
        }
    }
    let expected = (0..keys).flat_map(|k| (0..per_key).map(move |s| (k, s)));
    t.lost = expected.filter(|r| !seen.contains(r)).count();
    t
}

type Arrivals = Arc<Mutex<Vec<(u32, u32)>>>;

fn distinct(a: &Arrivals) -> usize {
    a.lock()
        .map(|v| v.iter().collect::<HashSet<_>>().len())
        .unwrap_or(0)
}

/// Open shards sorted by starting hash key: (id, start, end).
async fn open_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<(String, u128, u128)>> {
    let r = kinesis
        .list_shards()
        .stream_name(stream)
        .shard_filter(
            aws_sdk_kinesis::types::ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()?,
        )
        .send()
        .await
        .context("ListShards")?;
    let mut v = Vec::new();
    for s in r.shards() {
        let range = s.hash_key_range().context("hash key range")?;
        v.push((
            s.shard_id().to_owned(),
            range.starting_hash_key().parse()?,
            range.ending_hash_key().parse()?,
        ));
    }
    v.sort_by_key(|s| s.1);
    Ok(v)
}

/// Runs ours (polling) and KCL over the same resharded stream; `keys` x `per_key` records put
/// at `rate` per second, the split at a third of them and the merge at two thirds.
pub async fn run(
    env: &Env,
    repo: &Path,
    keys: u32,
    per_key: u32,
    rate: f64,
) -> Result<Vec<(Kind, Tally)>> {
    let kl = KinesisLocal::start(repo, &env.dir.path().join("kinesis-local-reshard")).await?;
    let result = run_on(env, &kl.endpoint, keys, per_key, rate).await;
    kl.stop().await;
    result
}

async fn run_on(
    env: &Env,
    endpoint: &str,
    keys: u32,
    per_key: u32,
    rate: f64,
) -> Result<Vec<(Kind, Tally)>> {
    let kinesis = kinesis_client_at(endpoint);
    let stream = create_stream(&kinesis, "peers-reshard", 2).await?;
    let mut consumers = Vec::new();
    // KCL first: it takes a minute or more to take its first lease.
    for kind in [Kind::Kcl, Kind::Ours] {
        let o = Opts {
            endpoint,
            stream: &stream,
            app: unique_name(&format!("reshard-{}", kind.label())),
            echo: true,
        };
        let mut c = Consumer::start(env, kind, &o).await?;
        let out = c.take_stdout().context("stdout")?;
        let arrivals: Arrivals = Arc::default();
        let sink = arrivals.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(r) = parse(&line)
                    && let Ok(mut v) = sink.lock()
                {
                    v.push(r);
                }
            }
        });
        consumers.push((c, arrivals));
    }
    // Resharding starts once both read the 2 shards: kinesis-local answers ListShards with
    // ShardFilter AT_TRIM_HORIZON with every shard, children included, and KCL's first shard sync
    // then finds overlapping hash ranges and never starts ("Hash range of shards returned ...
    // was incomplete"); real Kinesis returns only the shards open at the trim horizon.
    for (c, _) in &mut consumers {
        let up = c.wait_shards(2, Duration::from_secs(240)).await?;
        println!(
            "  {:<5} reading both shards after {:.1} s",
            c.kind.label(),
            up.as_secs_f64()
        );
    }
    let total = (keys * per_key) as usize;
    println!(
        "  putting {total} records ({keys} keys x {per_key}, one producer per key) at {rate:.0}/s; SplitShard at 1/3 of the time, MergeShards at 2/3"
    );
    let start = Instant::now();
    // One producer per key, each putting its own records one after another: the per-key order
    // is the put order, and the keys go in parallel so a slow emulator does not stretch the run.
    let mut producers = Vec::new();
    for key in 0..keys {
        let (kinesis, stream) = (kinesis.clone(), stream.clone());
        let per_key_rate = rate / f64::from(keys);
        producers.push(tokio::spawn(async move {
            for seq in 0..per_key {
                let due = start + Duration::from_secs_f64(f64::from(seq) / per_key_rate);
                tokio::time::sleep_until(due.into()).await;
                kinesis
                    .put_record()
                    .stream_name(&stream)
                    .partition_key(format!("key-{key}"))
                    .data(Blob::new(format!("key={key} seq={seq}")))
                    .send()
                    .await
                    .context("PutRecord")?;
            }
            anyhow::Ok(())
        }));
    }
    let span = Duration::from_secs_f64(total as f64 / rate);
    tokio::time::sleep_until((start + span / 3).into()).await;
    let open = open_shards(&kinesis, &stream).await?;
    let (id, lo, hi) = open.first().context("no open shard")?.clone();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&id)
        .new_starting_hash_key((lo / 2 + hi / 2 + 1).to_string())
        .send()
        .await
        .context("SplitShard")?;
    wait_stream_active(&kinesis, &stream).await?;
    println!("    split {id} at {:.1} s", start.elapsed().as_secs_f64());
    tokio::time::sleep_until((start + span * 2 / 3).into()).await;
    let open = open_shards(&kinesis, &stream).await?;
    let pair = open
        .windows(2)
        .rev()
        .find(|w| w[0].2.checked_add(1) == Some(w[1].1))
        .context("no adjacent open shards")?;
    let (a, b) = (pair[0].0.clone(), pair[1].0.clone());
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&a)
        .adjacent_shard_to_merge(&b)
        .send()
        .await
        .context("MergeShards")?;
    wait_stream_active(&kinesis, &stream).await?;
    println!(
        "    merged {a} and {b} at {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for p in producers {
        p.await??;
    }
    println!(
        "  produced in {:.1} s; waiting until each consumer has every record (at most 4 min)",
        start.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut figures = Vec::new();
    for (c, arrivals) in consumers {
        while distinct(&arrivals) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Late duplicates (a re-read after a checkpoint) have a moment to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = arrivals.lock().map(|v| v.clone()).unwrap_or_default();
        let t = tally(&got, keys, per_key);
        println!(
            "  {:<5} {} of {total} distinct records after {:.1} s; lost {}, duplicated {}, order breaks per key {}",
            c.kind.label(),
            distinct(&arrivals),
            c.spawned.elapsed().as_secs_f64(),
            t.lost,
            t.duplicated,
            t.order_breaks
        );
        figures.push((c.kind, t));
        c.kill().await;
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_output_forms() {
        assert_eq!(parse("key=3 seq=41"), Some((3, 41)));
        assert_eq!(
            parse(r#"{"data":"key=12 seq=7","partitionKey":"key-12"}"#),
            Some((12, 7))
        );
        assert_eq!(parse("t=1 n=2"), None);
    }

    #[test]
    fn tally_counts_lost_duplicated_and_reordered() {
        let clean = [(0, 0), (1, 0), (0, 1), (1, 1)];
        assert_eq!(tally(&clean, 2, 2), Tally::default());
        // key 0: seq 1 before seq 0 (one break), seq 1 again (a duplicate); key 1: seq 1 lost.
        let bad = [(0, 1), (1, 0), (0, 0), (0, 1)];
        assert_eq!(
            tally(&bad, 2, 2),
            Tally {
                lost: 1,
                duplicated: 1,
                order_breaks: 1
            }
        );
    }
}
