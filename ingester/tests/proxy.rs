//! `spec.network` end to end: the `kinesis-ingester` binary reads kinesis-local and delivers to
//! an HTTP sink, both behind TLS fronts signed by a private CA made for the test, all through a
//! real forward proxy (tinyproxy, from Debian's package) whose log shows the tunnels. Without the
//! CA bundle, reads and deliveries fail with an error that names the CA problem and the field.

#[macro_use]
mod common;

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use common::{
    tls::{PrivateCa, Tinyproxy},
    *,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// kinesis-local's address, from `KINESIS_ENDPOINT`.
fn kinesis_addr() -> Result<SocketAddr> {
    let endpoint =
        std::env::var("KINESIS_ENDPOINT").context("KINESIS_ENDPOINT; run with `make test`")?;
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    Ok(hostport.replace("localhost", "127.0.0.1").parse()?)
}

fn write_config(
    dir: &Path,
    name: &str,
    stream: &str,
    kinesis: &str,
    sink: &str,
    network: &str,
) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: {name}}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: '{kinesis}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms}}
  sink:
    http: {{url: '{sink}', timeout: 5s}}
    batch: {{maxRecords: 50, maxAge: 100ms}}
  network:
{network}"
        ),
    )?;
    Ok(path)
}

/// Runs the binary on `config` with its stderr in `log`.
fn start(config: &Path, dir: &Path, log: &Path) -> Result<tokio::process::Child> {
    let mut cmd = binary(config, &dir.join("checkpoints"), free_port()?);
    cmd.stderr(std::fs::File::create(log)?);
    Ok(cmd.spawn()?)
}

async fn wait_for_log(what: &str, log: &Path, needle: &str) -> Result<String> {
    wait_until(what, DEADLINE, || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Ok(text.contains(needle).then_some(text))
    })
    .await
}

#[tokio::test]
async fn reads_and_deliveries_go_through_the_proxy_and_trust_the_private_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = PrivateCa::generate(dir.path())?;
    let proxy = Tinyproxy::start(dir.path()).await?;
    let kinesis_tls = ca.front(kinesis_addr()?).await?;
    let (sink, sink_addr) = line_sink::LineSink::start().await?;
    let sink_tls = ca.front(sink_addr).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let records: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("k{i}"),
                format!("through-the-proxy-{i}").into_bytes(),
            )
        })
        .collect();
    put(&kinesis, &stream, &records).await?;

    let network = format!(
        "    proxy: {{url: '{}', noProxy: [example.invalid]}}\n    caBundle: {{path: '{}'}}\n",
        proxy.url,
        ca.ca.display()
    );
    let config = write_config(
        dir.path(),
        "through",
        &stream,
        &format!("https://localhost:{kinesis_tls}"),
        &format!("https://localhost:{sink_tls}/"),
        &network,
    )?;
    let log = dir.path().join("through.log");
    let mut child = start(&config, dir.path(), &log)?;
    let lines = wait_until("all 20 records delivered over TLS", DEADLINE, || async {
        let lines = sink.lines();
        Ok((lines.len() >= 20).then_some(lines))
    })
    .await
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    let delivered: std::collections::BTreeSet<String> = payloads(
        &lines
            .iter()
            .map(|l| serde_json::from_str(l))
            .collect::<Result<Vec<_>, _>>()?,
    )
    .into_iter()
    .collect();
    assert_eq!(delivered.len(), 20, "every record once: {delivered:?}");
    child.kill().await?;
    let logged = proxy.logged();
    for (what, port) in [("Kinesis", kinesis_tls), ("the sink", sink_tls)] {
        assert!(
            logged.contains(&format!("CONNECT localhost:{port}")),
            "tinyproxy's log shows no tunnel to {what} (localhost:{port}):\n{logged}"
        );
    }

    // Without the bundle: reads fail naming the CA problem and the field.
    let plain_network = format!("    proxy: {{url: '{}'}}\n", proxy.url);
    let config = write_config(
        dir.path(),
        "no-ca-reads",
        &stream,
        &format!("https://localhost:{kinesis_tls}"),
        &format!("https://localhost:{sink_tls}/"),
        &plain_network,
    )?;
    let log = dir.path().join("no-ca-reads.log");
    let _child = start(&config, dir.path(), &log)?;
    let text = wait_for_log("a read error naming the CA", &log, "spec.network.caBundle").await?;
    assert!(text.contains("UnknownIssuer"), "{text}");

    // Reads in plain HTTP (through the proxy too), deliveries over TLS without the bundle.
    let config = write_config(
        dir.path(),
        "no-ca-sink",
        &stream,
        &std::env::var("KINESIS_ENDPOINT")?,
        &format!("https://localhost:{sink_tls}/"),
        &plain_network,
    )?;
    let log = dir.path().join("no-ca-sink.log");
    let before = sink.lines().len();
    let _child = start(&config, dir.path(), &log)?;
    let text = wait_for_log(
        "a delivery error naming the CA",
        &log,
        "spec.network.caBundle",
    )
    .await?;
    assert!(
        text.contains("HTTP request failed") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert_eq!(
        sink.lines().len(),
        before,
        "nothing delivered without trust"
    );
    Ok(())
}
