//! `make bench-peers`: our release `kinesis-ingester` and a KCL 3 consumer side by side in one run (throughput per core, RSS, idle memory, latency, failover), printed and written as one table.
//!
//! Figures only: nothing here fails on a slow machine. `--short` (CI) reads one small run per
//! consumer and fails only when a consumer misses or duplicates records.

mod chart;
mod consumer;
mod correctness;
mod fleet_failover;
mod kinesis_local;
mod latency;
mod runs;

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use chart::{Pair, Panel};
use consumer::{Env, Kind, Moto};

/// One row: what, ours, KCL, and how many times better ours is (`higher` says which way is better).
struct Row {
    what: String,
    ours: f64,
    kcl: f64,
    unit: &'static str,
    higher_is_better: bool,
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cell(v: f64, unit: &str) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else {
        format!("{} {unit}", fmt(v)).trim_end().to_owned()
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("| figure | ours | KCL 3 | ours vs KCL |\n|---|---:|---:|---:|\n");
    for r in rows {
        let factor = if r.higher_is_better {
            r.ours / r.kcl
        } else {
            r.kcl / r.ours
        };
        let versus = if r.ours == r.kcl {
            "same".to_owned()
        } else if !factor.is_finite() {
            "n/a".to_owned()
        } else if factor >= 1.0 {
            format!("{factor:.1}x better")
        } else {
            format!("{:.1}x worse", 1.0 / factor)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {versus} |",
            r.what,
            cell(r.ours, r.unit),
            cell(r.kcl, r.unit),
        );
    }
    s
}

/// The sections of the full run, in order (`--only` picks some).
const SECTIONS: [&str; 5] = ["throughput", "memory", "latency", "failover", "correctness"];

struct Args {
    ingester: PathBuf,
    short: bool,
    out: Option<PathBuf>,
    only: Option<Vec<String>>,
}

fn args() -> Result<Args> {
    let mut it = std::env::args_os().skip(1);
    let ingester = it
        .next()
        .map(PathBuf::from)
        .context(
            "usage: peers-bench PATH-TO-RELEASE-kinesis-ingester [--short] [--out FILE] [--only SECTION,...]",
        )?;
    let (mut short, mut out, mut only) = (false, None, None);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--short") => short = true,
            Some("--out") => out = it.next().map(PathBuf::from),
            Some("--only") => {
                let list: Vec<String> = it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .context("--only needs a list")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = list.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                    bail!("unknown section {bad:?}: one of {SECTIONS:?}");
                }
                only = Some(list);
            }
            _ => bail!("unknown argument {a:?}"),
        }
    }
    Ok(Args {
        ingester,
        short,
        out,
        only,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--ours-failover") {
        return fleet_failover::run_child().await;
    }
    let a = args()?;
    let kcl_classpath = std::env::var("KCL_PEER_CP")
        .context("KCL_PEER_CP is not set: run through `make bench-peers` (bench/peers/setup.sh)")?;
    let moto_server = std::env::var("MOTO_SERVER").context("MOTO_SERVER is not set")?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repo root")?
        .to_path_buf();
    let dir = tempfile::tempdir()?;
    let moto = Moto::start(moto_server.as_ref(), &dir.path().join("moto.log")).await?;
    let env = Env {
        ingester: a.ingester,
        kcl_classpath,
        moto_endpoint: moto.endpoint.clone(),
        // Our worker lease is 14 s (operator Settings::worker_lease); the short form only
        // checks counts, so it shortens KCL's lease cycle to start reading sooner.
        kcl_failover_ms: if a.short { 3_000 } else { 14_000 },
        kcl_reporter_ms: a.short.then_some(1_000),
        dir,
    };
    let result = if a.short {
        short(&env).await
    } else {
        full(&env, &repo, a.only.as_deref()).await
    };
    moto.stop().await;
    let (text, svg) = result?;
    println!("\n{text}");
    if let Some(out) = a.out {
        std::fs::write(&out, &text)?;
        println!("written to {}", out.display());
        if let Some(svg) = svg {
            let path = out.with_extension("svg");
            std::fs::write(&path, svg)?;
            println!("chart written to {}", path.display());
        }
    }
    Ok(())
}

/// One small run per consumer (8 shards x 1 page = 80,000 records): both must read every
/// record exactly once.
async fn short(env: &Env) -> Result<(String, Option<String>)> {
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for kind in [Kind::Ours, Kind::Kcl] {
        let t = runs::throughput(env, kind, 8, 1, false).await?;
        if t.read != t.expected {
            bail!("{} read {} records of {}", kind.label(), t.read, t.expected);
        }
        figures.push(t);
    }
    let (o, k) = (&figures[0], &figures[1]);
    rows.push(Row {
        what: "records read (of 80,000)".into(),
        ours: o.read,
        kcl: k.read,
        unit: "",
        higher_is_better: true,
    });
    rows.push(Row {
        what: "start-up to all shards read".into(),
        ours: o.startup_s,
        kcl: k.startup_s,
        unit: "s",
        higher_is_better: false,
    });
    rows.push(Row {
        what: "throughput per core (small run)".into(),
        ours: o.mb_per_cpu_s,
        kcl: k.mb_per_cpu_s,
        unit: "MB/s",
        higher_is_better: true,
    });
    Ok((table(&rows), None))
}

async fn full(
    env: &Env,
    repo: &std::path::Path,
    only: Option<&[String]>,
) -> Result<(String, Option<String>)> {
    let want = |section: &str| only.is_none_or(|o| o.iter().any(|s| s == section));
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    if want("throughput") {
        throughput(env, &mut rows, &mut panels).await?;
    }
    if want("memory") {
        memory(env, &mut rows).await?;
    }
    if want("latency") {
        latency(env, repo, &mut rows, &mut panels).await?;
    }
    if want("failover") {
        failover(env, repo, &mut rows).await;
    }
    if want("correctness") {
        correctness(env, repo, &mut rows).await?;
    }
    let chart = (!panels.is_empty()).then(|| chart::svg(&panels));
    Ok((table(&rows), chart))
}

async fn throughput(env: &Env, rows: &mut Vec<Row>, panels: &mut Vec<Panel>) -> Result<()> {
    let mut throughput = Panel {
        title: "Throughput per CPU-second of the consumer".into(),
        unit: "MB/s",
        pairs: Vec::new(),
    };
    println!(
        "throughput: 8 shards x 6 pages x 10,000 records x 1 KiB from the replay server, one consumer at a time"
    );
    for aggregated in [false, true] {
        let o = runs::throughput(env, Kind::Ours, 8, 6, aggregated).await?;
        let k = runs::throughput(env, Kind::Kcl, 8, 6, aggregated).await?;
        let tag = if aggregated { " (KPL-aggregated)" } else { "" };
        throughput.pairs.push(Pair {
            label: if aggregated {
                "KPL-aggregated".into()
            } else {
                "plain records".into()
            },
            ours: o.mb_per_cpu_s,
            kcl: k.mb_per_cpu_s,
        });
        rows.push(Row {
            what: format!("MB/s per CPU-second{tag}"),
            ours: o.mb_per_cpu_s,
            kcl: k.mb_per_cpu_s,
            unit: "",
            higher_is_better: true,
        });
        rows.push(Row {
            what: format!("records/s per CPU-second{tag}"),
            ours: o.records_per_cpu_s,
            kcl: k.records_per_cpu_s,
            unit: "",
            higher_is_better: true,
        });
        rows.push(Row {
            what: format!("wall MB/s{tag}"),
            ours: o.wall_mb_s,
            kcl: k.wall_mb_s,
            unit: "",
            higher_is_better: true,
        });
        rows.push(Row {
            what: format!("peak RSS{tag}"),
            ours: o.peak_rss_mib,
            kcl: k.peak_rss_mib,
            unit: "MiB",
            higher_is_better: false,
        });
        rows.push(Row {
            what: format!("records lost{tag}"),
            ours: o.expected - o.read.min(o.expected),
            kcl: k.expected - k.read.min(k.expected),
            unit: "",
            higher_is_better: false,
        });
        if !aggregated {
            rows.push(Row {
                what: "start-up to all 8 shards read".into(),
                ours: o.startup_s,
                kcl: k.startup_s,
                unit: "s",
                higher_is_better: false,
            });
        }
    }
    panels.push(throughput);
    Ok(())
}

async fn memory(env: &Env, rows: &mut Vec<Row>) -> Result<()> {
    println!("memory: 1 and 1,000 idle shards, polled every 200 ms");
    let window = Duration::from_secs(10);
    let mut idle = Vec::new();
    for kind in [Kind::Ours, Kind::Kcl] {
        let (one, _) = runs::idle(env, kind, 1, window).await?;
        let (rss, reading) = runs::idle(env, kind, 1000, window).await?;
        let many = if reading >= 1.0 { rss } else { f64::NAN };
        let per_shard = (many - one) / (reading - 1.0).max(1.0);
        idle.push((many, per_shard, reading));
    }
    rows.push(Row {
        what: format!(
            "RSS, 1,000 idle shards (shards read within 5 min: ours {:.0}, KCL {:.0})",
            idle[0].2, idle[1].2
        ),
        ours: idle[0].0 / 1024.0,
        kcl: idle[1].0 / 1024.0,
        unit: "MiB",
        higher_is_better: false,
    });
    rows.push(Row {
        what: "RSS per idle shard read, above 1 shard".into(),
        ours: idle[0].1,
        kcl: idle[1].1,
        unit: "KiB",
        higher_is_better: false,
    });
    Ok(())
}

async fn latency(
    env: &Env,
    repo: &std::path::Path,
    rows: &mut Vec<Row>,
    panels: &mut Vec<Panel>,
) -> Result<()> {
    println!("latency: kinesis-local, 4 shards, 600 records at 20/s, all consumers at once");
    let lat = latency::latency(
        env,
        repo,
        &[Kind::Ours, Kind::OursFanOut, Kind::Kcl],
        600,
        20.0,
    )
    .await?;
    let get = |k: Kind| {
        lat.iter()
            .find(|(x, _)| *x == k)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    let (o, f, k) = (get(Kind::Ours), get(Kind::OursFanOut), get(Kind::Kcl));
    for (p, ov, kv) in [
        ("p50", o.p50, k.p50),
        ("p95", o.p95, k.p95),
        ("p99", o.p99, k.p99),
    ] {
        rows.push(Row {
            what: format!("latency {p}, polling 200 ms"),
            ours: ov,
            kcl: kv,
            unit: "ms",
            higher_is_better: false,
        });
    }
    let latency_panel = Panel {
        title: "Put to delivered, kinesis-local, polling 200 ms".into(),
        unit: "ms",
        pairs: [
            ("p50", o.p50, k.p50),
            ("p95", o.p95, k.p95),
            ("p99", o.p99, k.p99),
        ]
        .into_iter()
        .map(|(label, ours, kcl)| Pair {
            label: label.into(),
            ours,
            kcl,
        })
        .collect(),
    };
    rows.push(Row {
        what: "latency p99, ours with fan-out".into(),
        ours: f.p99,
        kcl: k.p99,
        unit: "ms",
        higher_is_better: false,
    });
    rows.push(Row {
        what: "latency records lost".into(),
        ours: (o.sent - o.received) as f64,
        kcl: (k.sent - k.received) as f64,
        unit: "",
        higher_is_better: false,
    });
    panels.push(latency_panel);
    Ok(())
}

async fn failover(env: &Env, repo: &std::path::Path, rows: &mut Vec<Row>) {
    println!(
        "failover: two workers on 4 shards, SIGKILL the one holding more, until all 4 are read again (KCL failoverTimeMillis {} = our worker lease)",
        env.kcl_failover_ms
    );
    let (of, why) = match fleet_failover::ours(repo, env.dir.path()).await {
        Ok(s) => {
            println!(
                "  ours  failover: {s:.1} s until a marker in each of the 4 shards is delivered"
            );
            (s, String::new())
        }
        Err(e) => {
            println!("  ours  failover: {e:#}");
            (f64::NAN, format!("; ours not measured: {e}"))
        }
    };
    let kf = runs::kcl_failover(env).await.unwrap_or_else(|e| {
        println!("  KCL failover: {e:#}");
        f64::NAN
    });
    println!("  KCL   failover: {kf:.1} s until the survivor reads all 4 shards");
    rows.push(Row {
        what: format!(
            "failover, kill to shards read again (worker lease = KCL failoverTimeMillis = {} s{why})",
            env.kcl_failover_ms / 1000
        ),
        ours: of,
        kcl: kf,
        unit: "s",
        higher_is_better: false,
    });
}

async fn correctness(env: &Env, repo: &std::path::Path, rows: &mut Vec<Row>) -> Result<()> {
    let (keys, per_key, rate) = (16, 150, 100.0);
    println!(
        "correctness: kinesis-local, 2 shards, split and merge while producing {} records, ours and KCL at once",
        keys * per_key
    );
    let figures = correctness::run(env, repo, keys, per_key, rate).await?;
    let get = |k: Kind| {
        figures
            .iter()
            .find(|(x, _)| *x == k)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let (o, k) = (get(Kind::Ours), get(Kind::Kcl));
    let n = keys * per_key;
    for (what, ov, kv) in [
        ("lost", o.lost, k.lost),
        ("duplicated", o.duplicated, k.duplicated),
        ("order breaks per key", o.order_breaks, k.order_breaks),
    ] {
        rows.push(Row {
            what: format!("split + merge, {n} records: {what}"),
            ours: ov as f64,
            kcl: kv as f64,
            unit: "",
            higher_is_better: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_which_way_and_how_much() {
        let row = |ours, kcl, higher_is_better| Row {
            what: "x".into(),
            ours,
            kcl,
            unit: "ms",
            higher_is_better,
        };
        let t = table(&[
            row(100.0, 400.0, false),
            row(100.0, 400.0, true),
            row(0.0, 0.0, false),
            row(f64::NAN, 62.4, false),
        ]);
        let lines: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(lines[0], "| x | 100 ms | 400 ms | 4.0x better |");
        assert_eq!(lines[1], "| x | 100 ms | 400 ms | 4.0x worse |");
        assert_eq!(lines[2], "| x | 0 ms | 0 ms | same |");
        assert_eq!(lines[3], "| x | n/a | 62.4 ms | n/a |");
    }
}
