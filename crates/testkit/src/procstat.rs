//! How the benchmarks measure a consumer process, the same way for every consumer: CPU seconds and RSS from `/proc`, counters from its loopback `/metrics`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The body of `GET /metrics` on 127.0.0.1:`port` (HTTP/1.0, read to the end).
pub async fn metrics(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of the unlabelled sample `name` in a Prometheus text body (0 when absent).
pub fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) of a process.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux.
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .context("status field")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// A TCP port on 127.0.0.1 that is free right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `/metrics` on `port` until `name` reaches `at_least`, printing progress every 2 s when
/// asked; returns the body that met it.
pub async fn wait_metric(
    port: u16,
    name: &str,
    at_least: f64,
    timeout: Duration,
    progress: bool,
) -> Result<String> {
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Ok(text) = metrics(port).await {
            let v = value(&text, name);
            if v >= at_least {
                return Ok(text);
            }
            if progress && last_report.elapsed() >= Duration::from_secs(2) {
                println!(
                    "  ... {name} = {v:.0} of {at_least:.0} ({:.0}s)",
                    start.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        }
        if start.elapsed() > timeout {
            bail!("{name} did not reach {at_least} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
