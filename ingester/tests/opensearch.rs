//! The `_bulk` sink against a real OpenSearch node (tests/env/opensearch.sh, one per test binary): exact document counts, one document per record after a replay, mapping errors dead-lettered, dated indexes.

#[macro_use]
mod common;

use std::{path::Path, sync::OnceLock, time::Duration};

use anyhow::{Context, Result};
use common::*;
use kinesis_ingester::decode::testing::gzip;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(90);

/// The node's URL: `OPENSEARCH_URL` if set, else a node started for this test binary, which
/// stops when the binary exits (the launcher watches our pid).
fn opensearch() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("OPENSEARCH_URL") {
            return url;
        }
        // Under with-env.sh, in its state directory: kept with the node's log when the run
        // fails, removed when it passes.
        let state = match std::env::var_os("TEST_ENV_STATE") {
            Some(dir) => Path::new(&dir).join(format!("opensearch-{}", std::process::id())),
            None => tempfile::Builder::new()
                .prefix("opensearch-it")
                .tempdir()
                .expect("state dir")
                .keep(),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/env/opensearch.sh");
        let status = std::process::Command::new(script)
            .arg("start")
            .arg(&state)
            .arg(std::process::id().to_string())
            .status()
            .expect("run tests/env/opensearch.sh");
        assert!(status.success(), "OpenSearch did not start: {status}");
        let env = std::fs::read_to_string(state.join("opensearch.env")).expect("opensearch.env");
        env.trim()
            .strip_prefix("export OPENSEARCH_URL=")
            .expect("OPENSEARCH_URL line")
            .to_owned()
    })
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .build()
        .expect("client")
}

/// A request to the node; its answer as JSON, failing on a status other than 2xx.
async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    let mut req = client().request(method, format!("{}/{path}", opensearch()));
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status.is_success(), "{path}: HTTP {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Documents in `indexes` (a name or pattern), after a refresh.
async fn count(indexes: &str) -> Result<u64> {
    call(reqwest::Method::POST, &format!("{indexes}/_refresh"), None).await?;
    let v = call(reqwest::Method::GET, &format!("{indexes}/_count"), None).await?;
    v["count"].as_u64().context("count")
}

/// Waits until `indexes` hold `n` documents, and fails if they then hold more.
async fn wait_for_count(indexes: &str, n: u64) -> Result<()> {
    let seen = wait_until(
        &format!("{n} documents in {indexes}"),
        DEADLINE,
        || async move {
            let seen = count(indexes).await?;
            Ok((seen >= n).then_some(seen))
        },
    )
    .await?;
    anyhow::ensure!(seen == n, "{seen} documents in {indexes}, want {n}");
    Ok(())
}

/// Every document of `indexes`: `_index`, `_id`, `_version` and source.
async fn documents(indexes: &str) -> Result<Vec<Value>> {
    let v = call(
        reqwest::Method::POST,
        &format!("{indexes}/_search"),
        Some(json!({"size": 1000, "version": true, "query": {"match_all": {}}})),
    )
    .await?;
    Ok(v["hits"]["hits"].as_array().cloned().unwrap_or_default())
}

/// A sink YAML for `_bulk` into `index`, in batches of 10.
fn bulk_sink(index: &str, extra: &str) -> String {
    format!(
        "    http: {{url: '{}/_bulk', format: ElasticsearchBulk, index: '{index}', timeout: 30s{extra}}}\n    batch: {{maxRecords: 10, maxAge: 100ms}}\n",
        opensearch()
    )
}

/// A unique lowercase suffix for index names.
fn unique() -> String {
    format!("{:x}", fastrand::u64(..))
}

/// A gzip CloudWatch Logs envelope with `events` (id, message) events.
fn envelope(kind: &str, events: &[(String, String)]) -> Vec<u8> {
    let log_events: Vec<_> = events
        .iter()
        .map(|(id, msg)| json!({"id": id, "timestamp": 1_795_446_000_000i64, "message": msg}))
        .collect();
    let body = json!({"messageType": kind, "owner": "123456789012", "logGroup": "/app/web",
        "logStream": "i-1", "subscriptionFilters": ["all"], "logEvents": log_events});
    gzip(body.to_string().as_bytes()).to_vec()
}

#[tokio::test]
async fn cloudwatch_logs_events_are_one_document_each_in_an_index_of_their_arrival_day()
-> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    // 20 envelopes of 5 events, and a control message that indexes nothing.
    let mut records: Vec<(String, Vec<u8>)> = (0..20)
        .map(|e| {
            let events: Vec<_> = (0..5)
                .map(|i| (format!("{e}-{i}"), format!("GET /page/{e}/{i}")))
                .collect();
            (format!("pk-{e}"), envelope("DATA_MESSAGE", &events))
        })
        .collect();
    records.push((
        "c".into(),
        envelope(
            "CONTROL_MESSAGE",
            &[("c".into(), "CWL CONTROL MESSAGE".into())],
        ),
    ));
    put(&kinesis, &stream, &records).await?;

    let prefix = format!("cw-{}", unique());
    let sink = bulk_sink(&format!("{prefix}-{{yyyy.MM.dd}}"), "");
    let cfg = config(&stream, &sink, "  decode: {format: CloudWatchLogs}\n")?;
    let dir = tempfile::tempdir()?;
    let run = Running::start(cfg, sdk_api()?, dir.path());
    wait_for_count(&format!("{prefix}-*"), 100).await?;
    run.shutdown().await?;

    let docs = documents(&format!("{prefix}-*")).await?;
    assert_eq!(docs.len(), 100);
    let mut messages: Vec<&str> = docs
        .iter()
        .map(|d| d["_source"]["data"].as_str().unwrap_or_default())
        .collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 100, "every event once");
    for d in &docs {
        let source = &d["_source"];
        let arrival = source["approximateArrivalTimestamp"]
            .as_str()
            .context("arrival")?;
        let day = arrival[..10].replace('-', ".");
        assert_eq!(d["_index"], format!("{prefix}-{day}"), "{d}");
        let id = format!(
            "{stream}:{}:{}:{}",
            source["shardId"].as_str().unwrap_or_default(),
            source["sequenceNumber"].as_str().unwrap_or_default(),
            source["cloudwatch"]["id"].as_str().unwrap_or_default()
        );
        assert_eq!(d["_id"], id);
        assert_eq!(source["cloudwatch"]["logGroup"], "/app/web");
    }
    Ok(())
}

#[tokio::test]
async fn records_delivered_twice_are_one_document_each() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("pk-{}", i % 7), format!("record-{i}").into_bytes()))
        .chain((0..20).map(|i| {
            // These name their own document: two records per id.
            let body = json!({"order": format!("o-{}", i % 10), "n": i});
            (format!("pk-{i}"), body.to_string().into_bytes())
        }))
        .collect();
    put(&kinesis, &stream, &records).await?;
    let index = format!("twice-{}", unique());
    let sink = bulk_sink(&index, ", documentId: {field: /order}");

    // Delivered once, then replayed from the start (the checkpoints are lost): the second
    // delivery overwrites the same documents.
    for round in 1..=2 {
        let dir = tempfile::tempdir()?;
        let run = Running::start(config(&stream, &sink, "")?, sdk_api()?, dir.path());
        wait_until(&format!("round {round} delivered"), DEADLINE, || {
            let index = index.clone();
            async move {
                let docs = documents(&index).await.unwrap_or_default();
                let versions: u64 = docs.iter().filter_map(|d| d["_version"].as_u64()).sum();
                // 60 documents of one record each, 10 of two: versions add up to
                // (60 + 20) per round.
                Ok((versions == 80 * round).then_some(()))
            }
        })
        .await?;
        run.shutdown().await?;
        assert_eq!(count(&index).await?, 70, "round {round}");
    }
    let docs = documents(&index).await?;
    for d in &docs {
        let id = d["_id"].as_str().unwrap_or_default();
        if id.starts_with("o-") {
            assert_eq!(d["_version"], 4, "{d}");
        } else {
            assert!(id.starts_with(&format!("{stream}:shardId-")), "{id}");
            assert_eq!(d["_version"], 2, "{d}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_mapping_conflict_dead_letters_only_the_bad_records() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let index = format!("conflict-{}", unique());
    call(
        reqwest::Method::PUT,
        &index,
        Some(json!({"mappings": {"properties": {"data": {"type": "long"}}}})),
    )
    .await?;
    let records: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            let data = if i % 6 == 5 {
                format!("bad-{i}")
            } else {
                (1000 + i).to_string()
            };
            (format!("pk-{i}"), data.into_bytes())
        })
        .collect();
    put(&kinesis, &stream, &records).await?;
    let dir = tempfile::tempdir()?;
    let dead = dir.path().join("dead.ndjson");
    let sink = format!(
        "{}    deadLetterPath: '{}'\n",
        bulk_sink(&index, ""),
        dead.display()
    );
    let run = Running::start(config(&stream, &sink, "")?, sdk_api()?, dir.path());
    wait_for_count(&index, 25).await?;
    let dead_lines = wait_for_lines(&dead, 5, DEADLINE).await?;
    // The shard goes on: later records are indexed too.
    put(&kinesis, &stream, &[("late".into(), b"2000".to_vec())]).await?;
    wait_for_count(&index, 26).await?;
    run.shutdown().await?;

    let mut bad: Vec<&str> = dead_lines
        .iter()
        .map(|l| l["document"]["data"].as_str().unwrap_or_default())
        .collect();
    bad.sort_unstable();
    assert_eq!(bad, ["bad-11", "bad-17", "bad-23", "bad-29", "bad-5"]);
    for l in &dead_lines {
        assert_eq!(l["category"], "bulk_rejected");
        assert_eq!(l["status"], 400);
        assert_eq!(l["reason"]["type"], "mapper_parsing_exception", "{l}");
        assert_eq!(l["index"], index.as_str());
    }
    assert_eq!(lines(&dead)?.len(), 5, "each bad record once");
    Ok(())
}

#[tokio::test]
async fn an_ingester_killed_mid_stream_and_restarted_leaves_one_document_per_record() -> Result<()>
{
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("pk-{}", i % 9), format!("killed-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records).await?;
    let index = format!("killed-{}", unique());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("ingester.yaml");
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    std::fs::write(
        &config,
        format!(
            "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: t}}\nspec:\n  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}\n  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms, maxRecordsPerCall: 20}}\n  sink:\n{}",
            bulk_sink(&index, "")
        ),
    )?;
    let checkpoints = dir.path().join("checkpoints");

    let mut first = binary(&config, &checkpoints, free_port()?).spawn()?;
    let index_ref = &index;
    wait_until("some documents indexed", DEADLINE, || async move {
        Ok((count(index_ref).await.unwrap_or(0) >= 60).then_some(()))
    })
    .await?;
    // SIGKILL: no shutdown, no final checkpoint; what was delivered since the last stored
    // checkpoint is delivered again.
    first.kill().await?;
    let after_kill = count(&index).await?;

    let mut second = binary(&config, &checkpoints, free_port()?).spawn()?;
    wait_for_count(&index, 300).await?;
    second.kill().await?;
    let docs = documents(&index).await?;
    let mut data: Vec<&str> = docs
        .iter()
        .map(|d| d["_source"]["data"].as_str().unwrap_or_default())
        .collect();
    data.sort_unstable();
    data.dedup();
    assert_eq!(data.len(), 300, "every record once");
    let versions: u64 = docs.iter().filter_map(|d| d["_version"].as_u64()).sum();
    eprintln!(
        "killed with {after_kill} documents indexed; {} records were indexed again after the restart",
        versions - 300
    );
    Ok(())
}
