//! The replay-server runs: throughput per core (plain and KPL-aggregated), idle memory, and failover, one consumer at a time with a fresh lease table.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kinesis_ingester::decode::testing::{UserRecordSpec, encode_aggregated};
use kinesis_testkit::{
    replay::{self, ReplaySpec},
    unique_name,
};

use crate::consumer::{Consumer, Env, Kind, Opts};

pub const RECORD_BYTES: usize = 1024;
pub const USER_RECORDS_PER_PAGE: usize = 10_000;
/// How long a consumer may read nothing before its run ends.
const STALL: Duration = Duration::from_secs(60);
/// User records per KPL aggregated record in the aggregated runs.
const AGGREGATED: usize = 10;

/// Figures of one throughput run.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub startup_s: f64,
    pub mb_per_cpu_s: f64,
    pub records_per_cpu_s: f64,
    pub wall_mb_s: f64,
    pub peak_rss_mib: f64,
    pub read: f64,
    pub expected: f64,
}

fn spec(shards: usize, pages: u64, aggregated: bool) -> ReplaySpec {
    if !aggregated {
        return ReplaySpec {
            shards,
            pages_per_shard: pages,
            records_per_page: USER_RECORDS_PER_PAGE,
            record_bytes: RECORD_BYTES,
            payloads: Vec::new(),
        };
    }
    let data: Vec<u8> = (0..RECORD_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let keys: Vec<String> = (0..AGGREGATED).map(|i| format!("pk-{i}")).collect();
    // The KPL aggregates only user records that hash into one shard, and the KCL drops those
    // that do not: every user record carries an explicit hash key inside its shard's range.
    let payloads = (0..shards)
        .map(|shard| {
            let hash_key = (replay::starting_hash_key(shards, shard) + 1).to_string();
            let users: Vec<UserRecordSpec<'_>> = keys
                .iter()
                .map(|k| UserRecordSpec {
                    partition_key: k,
                    explicit_hash_key: Some(&hash_key),
                    data: &data,
                })
                .collect();
            encode_aggregated(&users).to_vec()
        })
        .collect();
    ReplaySpec {
        shards,
        pages_per_shard: pages,
        records_per_page: USER_RECORDS_PER_PAGE / AGGREGATED,
        record_bytes: 0,
        payloads,
    }
}

/// One consumer reads `shards` x `pages` pages of 10,000 user records of 1 KiB from a fresh
/// replay server. CPU, records and wall time are taken from the moment every shard is read (so the
/// KCL's deliberate start-up sleep is reported apart), peak RSS at the end.
pub async fn throughput(
    env: &Env,
    kind: Kind,
    shards: usize,
    pages: u64,
    aggregated: bool,
) -> Result<Throughput> {
    let expected = (shards as u64 * pages * USER_RECORDS_PER_PAGE as u64) as f64;
    let server = replay::start(spec(shards, pages, aggregated)).await?;
    let endpoint = format!("http://{}", server.addr);
    let o = Opts {
        endpoint: &endpoint,
        stream: "bench",
        app: unique_name(&format!("tp-{}", kind.label().replace(' ', "-"))),
        echo: false,
    };
    let mut c = Consumer::start(env, kind, &o).await?;
    let startup = c.wait_shards(shards, Duration::from_secs(240)).await?;
    let (t0, cpu0, rec0) = (Instant::now(), c.cpu()?, c.records().await);
    // CPU and time are taken at the last record counted: a consumer that stops reading (the
    // KCL sometimes stalls on this server) is reported with what it read, not waited on forever.
    let (mut last_t, mut last_cpu, mut read) = (t0, cpu0, rec0);
    let mut report = Instant::now();
    while read < expected {
        let now = c.records().await;
        if now > read {
            (last_t, last_cpu, read) = (Instant::now(), c.cpu()?, now);
        }
        if last_t.elapsed() > STALL || t0.elapsed() > Duration::from_secs(900) {
            println!(
                "  {} stopped reading at {read:.0} of {expected:.0} records for {} s",
                kind.label(),
                STALL.as_secs()
            );
            break;
        }
        if report.elapsed() > Duration::from_secs(5) {
            println!("    ... {} read {read:.0} of {expected:.0}", kind.label());
            report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (wall, cpu) = ((last_t - t0).as_secs_f64(), last_cpu - cpu0);
    let peak = c.peak_rss_kib()?;
    c.kill().await;
    let counted = read - rec0;
    let mb = counted * RECORD_BYTES as f64 / 1e6;
    let t = Throughput {
        startup_s: startup.as_secs_f64(),
        mb_per_cpu_s: mb / cpu,
        records_per_cpu_s: counted / cpu,
        wall_mb_s: mb / wall,
        peak_rss_mib: peak / 1024.0,
        read,
        expected,
    };
    println!(
        "  {:<5} {}: {read:.0} of {expected:.0} records; start-up {:.1} s; {mb:.0} MB in {wall:.1} s wall, {cpu:.1} CPU-s: {:.0} MB/s per core, {:.0} records/s per core, {:.0} MB/s wall; peak RSS {:.0} MiB",
        kind.label(),
        if aggregated {
            "KPL-aggregated"
        } else {
            "plain"
        },
        t.startup_s,
        t.mb_per_cpu_s,
        t.records_per_cpu_s,
        t.wall_mb_s,
        t.peak_rss_mib
    );
    Ok(t)
}

/// RSS in KiB of one consumer reading idle shards (polled every 200 ms) after `window`, and how
/// many shards it was reading then: a consumer that has not taken all `shards` within 5 minutes is
/// measured with those it has.
pub async fn idle(env: &Env, kind: Kind, shards: usize, window: Duration) -> Result<(f64, f64)> {
    let server = replay::start(spec(shards, 0, false)).await?;
    let endpoint = format!("http://{}", server.addr);
    let o = Opts {
        endpoint: &endpoint,
        stream: "bench",
        app: unique_name("idle"),
        echo: false,
    };
    let mut c = Consumer::start(env, kind, &o).await?;
    match c.wait_shards(shards, Duration::from_secs(300)).await {
        Ok(startup) => println!(
            "  {:<5} all {shards} shards read after {:.1} s",
            kind.label(),
            startup.as_secs_f64()
        ),
        Err(e) => println!("  {:<5} {e:#}", kind.label()),
    }
    // A measurement window, not a synchronisation: RSS is sampled at its end.
    tokio::time::sleep(window).await;
    let (rss, reading) = (c.rss_kib()?, c.shards().await);
    println!(
        "  {:<5} idle, {reading:.0} of {shards} shards read: RSS {:.1} MiB",
        kind.label(),
        rss / 1024.0
    );
    c.kill().await;
    Ok((rss, reading))
}

/// Two KCL workers on 4 idle shards; SIGKILL the one holding more; seconds until the survivor
/// reads all 4.
pub async fn kcl_failover(env: &Env) -> Result<f64> {
    let server = replay::start(spec(4, 0, false)).await?;
    let endpoint = format!("http://{}", server.addr);
    let app = unique_name("failover");
    let o = Opts {
        endpoint: &endpoint,
        stream: "bench",
        app: app.clone(),
        echo: false,
    };
    let mut a = Consumer::start(env, Kind::Kcl, &o).await?;
    a.wait_shards(4, Duration::from_secs(240)).await?;
    let b = Consumer::start(env, Kind::Kcl, &o).await?;
    // Lease-count assignment moves two leases to the new worker; if it never does within the
    // deadline, the first worker (holding all four) is the one killed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while b.shards().await < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut survivor, victim) = if b.shards().await >= a.shards().await {
        (a, b)
    } else {
        (b, a)
    };
    println!(
        "  KCL   failover: killing a worker with {:.0} of 4 shards",
        victim.shards().await
    );
    let t = Instant::now();
    victim.kill().await;
    survivor.wait_shards(4, Duration::from_secs(180)).await?;
    let s = t.elapsed().as_secs_f64();
    survivor.kill().await;
    if s <= 0.0 {
        bail!("failover measured no time");
    }
    Ok(s)
}
