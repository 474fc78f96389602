//! Put-to-delivered latency against kinesis-local at a steady low rate: every consumer reads the same stream at once and writes each record to its stdout, where the driver stamps its arrival.

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use kinesis_testkit::{create_stream, kinesis_client_at, unique_name};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    consumer::{Consumer, Env, Kind, Opts},
    kinesis_local::KinesisLocal,
};

/// Latency figures of one consumer, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub received: usize,
    pub sent: usize,
}

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// (sequence number, latency ms) of the record in `line`: both consumers print the payload
/// `t=<put micros> n=<i>` (ours inside its JSON line).
fn parse(line: &str, now: u128) -> Option<(u64, f64)> {
    let t = line.split("t=").nth(1)?;
    let put: u128 = t.split(' ').next()?.parse().ok()?;
    let n = t.split("n=").nth(1)?;
    let n: u64 = n
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    Some((n, now.saturating_sub(put) as f64 / 1000.0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Seen = Arc<Mutex<(HashSet<u64>, Vec<f64>)>>;

/// Starts kinesis-local (tests/env/kinesis-local.sh), a 4-shard stream, and `kinds` reading it;
/// puts `count` records at `rate` per second; returns each consumer's percentiles.
pub async fn latency(
    env: &Env,
    repo: &Path,
    kinds: &[Kind],
    count: usize,
    rate: f64,
) -> Result<Vec<(Kind, Latency)>> {
    let kl = KinesisLocal::start(repo, &env.dir.path().join("kinesis-local")).await?;
    let result = run(env, &kl.endpoint, kinds, count, rate).await;
    kl.stop().await;
    result
}

async fn run(
    env: &Env,
    endpoint: &str,
    kinds: &[Kind],
    count: usize,
    rate: f64,
) -> Result<Vec<(Kind, Latency)>> {
    let kinesis = kinesis_client_at(endpoint);
    let stream = create_stream(&kinesis, "peers-latency", 4).await?;
    let mut consumers = Vec::new();
    for &kind in kinds {
        let o = Opts {
            endpoint,
            stream: &stream,
            app: unique_name(&format!(
                "lat-{}",
                kind.label().replace([' ', '(', ')'], "")
            )),
            echo: true,
        };
        let mut c = Consumer::start(env, kind, &o).await?;
        let out = c.take_stdout().context("stdout")?;
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((n, ms)) = parse(&line, micros_now())
                    && let Ok(mut s) = sink.lock()
                    && s.0.insert(n)
                {
                    s.1.push(ms);
                }
            }
        });
        consumers.push((c, seen));
    }
    for (c, _) in &mut consumers {
        let up = c.wait_shards(4, Duration::from_secs(240)).await?;
        println!(
            "  {:<14} reading all 4 shards after {:.1} s",
            c.kind.label(),
            up.as_secs_f64()
        );
    }
    println!("  putting {count} records at {rate:.0}/s");
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let payload = format!("t={} n={i}", micros_now());
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("k{}", i % 64))
            .data(Blob::new(payload.into_bytes()))
            .send()
            .await
            .context("PutRecord")?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut figures = Vec::new();
    for (c, seen) in consumers {
        while seen.lock().map(|s| s.0.len()).unwrap_or(0) < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (received, mut ms) = {
            let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            (s.0.len(), s.1.clone())
        };
        ms.sort_by(f64::total_cmp);
        let l = Latency {
            p50: percentile(&ms, 0.50),
            p95: percentile(&ms, 0.95),
            p99: percentile(&ms, 0.99),
            received,
            sent: count,
        };
        println!(
            "  {:<14} {received} of {count} records; put to delivered p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            c.kind.label(),
            l.p50,
            l.p95,
            l.p99
        );
        figures.push((c.kind, l));
        c.kill().await;
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_output_forms() {
        assert_eq!(parse("t=1000000 n=42", 1_250_000), Some((42, 250.0)));
        assert_eq!(
            parse(r#"{"data":"t=1000000 n=7","partitionKey":"k7"}"#, 1_010_000),
            Some((7, 10.0))
        );
        assert_eq!(parse("no payload", 0), None);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
