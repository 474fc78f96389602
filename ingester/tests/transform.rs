//! `spec.transform` end to end on kinesis-local, VRL and Firehose's contract over HTTP: records are
//! reshaped, dropped or dead-lettered with the error, and the checkpoint moves past all of them.

#[macro_use]
mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use kinesis_ingester::decode::testing::{UserRecordSpec, encode_aggregated};
use kinesis_ingester_api::ReadMode;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// Text becomes `{"message": …}`; `debug` records are dropped; a `level` that is there but not
/// a string fails `upcase!` (dead letter); the rest gain the shard id and the KPL sub-sequence number.
const PROGRAM: &str = r#"
  if is_string(.) { . = {"message": .} }
  if .level == "debug" { abort }
  if exists(.level) { .level = upcase!(.level) }
  .shard = %kinesis.shard_id
  .sub = %kinesis.sub_sequence_number
"#;

fn program_yaml() -> String {
    let indented: String = PROGRAM.lines().map(|l| format!("        {l}\n")).collect();
    format!("  transform:\n    vrl:\n      source: |\n{indented}")
}

/// A record with key `k` and `doc` as its JSON payload.
fn json_record(doc: Value) -> (String, Vec<u8>) {
    ("k".to_owned(), doc.to_string().into_bytes())
}

/// A record with key `k`: a KPL aggregate of `docs`, one user record each.
fn aggregate(docs: &[Value]) -> (String, Vec<u8>) {
    let datas: Vec<String> = docs.iter().map(Value::to_string).collect();
    let users: Vec<UserRecordSpec<'_>> = datas
        .iter()
        .map(|d| UserRecordSpec {
            partition_key: "k",
            explicit_hash_key: None,
            data: d.as_bytes(),
        })
        .collect();
    ("k".to_owned(), encode_aggregated(&users).to_vec())
}

/// The delivered payloads, parsed as JSON.
fn docs(lines: &[Value]) -> Result<Vec<Value>> {
    Ok(payloads(lines)
        .iter()
        .map(|p| serde_json::from_str(p))
        .collect::<Result<_, _>>()?)
}

/// A one-shard stream holding `records`, and where an ingester of it writes.
struct Stage {
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    dir: tempfile::TempDir,
    out: std::path::PathBuf,
    dead: std::path::PathBuf,
}

impl Stage {
    async fn new(records: &[(String, Vec<u8>)]) -> Result<Self> {
        let kinesis = kinesis_client()?;
        let stream = create_stream(&kinesis, 1).await?;
        put(&kinesis, &stream, records).await?;
        let dir = tempfile::tempdir()?;
        let (out, dead) = (
            dir.path().join("out.ndjson"),
            dir.path().join("dead.ndjson"),
        );
        Ok(Self {
            kinesis,
            stream,
            dir,
            out,
            dead,
        })
    }

    /// Starts an ingester with `transform` (YAML under `spec:`) into the file sink, with
    /// checkpoints kept across starts.
    fn start(&self, transform: &str, mode: ReadMode) -> Result<Running> {
        let ki = config(
            &self.stream,
            &file_sink(&self.out, Some(&self.dead)),
            transform,
        )?;
        Ok(Running::start(
            with_mode(ki, mode),
            sdk_api()?,
            self.dir.path(),
        ))
    }

    /// Puts one more record, restarts, and returns what is delivered after `before` lines: it
    /// must be that record alone (nothing read again, no dead letter written twice).
    async fn restart_delivers_only_a_new_record(
        &self,
        transform: &str,
        mode: ReadMode,
        before: usize,
        dead_letters: usize,
    ) -> Result<()> {
        put(
            &self.kinesis,
            &self.stream,
            &[json_record(json!({"i": 300, "level": "info"}))],
        )
        .await?;
        let run = self.start(transform, mode)?;
        let lines = wait_for_lines(&self.out, before + 1, DEADLINE).await?;
        run.shutdown().await?;
        let after = docs(&lines[before..])?;
        assert_eq!(after.len(), 1, "nothing read again: {after:?}");
        assert_eq!(after[0]["i"], 300);
        assert_eq!(
            common::lines(&self.dead)?.len(),
            dead_letters,
            "no dead letter written twice"
        );
        Ok(())
    }
}

both_modes!(records_are_reshaped_dropped_or_dead_lettered_and_all_checkpointed);

async fn records_are_reshaped_dropped_or_dead_lettered_and_all_checkpointed(
    mode: ReadMode,
) -> Result<()> {
    // 30 JSON records: every third is debug (10 dropped), #10 and #20 have a numeric level
    // (2 dead letters), 18 delivered. Then a text record, a KPL aggregate of an info, a debug
    // and a numeric-level user record, and a debug record last (dropped: the checkpoint must
    // still pass it).
    let mut records: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            let level = match i {
                10 | 20 => json!(7),
                i if i % 3 == 0 => json!("debug"),
                _ => json!("info"),
            };
            json_record(json!({"i": i, "level": level}))
        })
        .collect();
    records.push(("k".into(), b"plain text".to_vec()));
    records.push(aggregate(&[
        json!({"i": 100, "level": "warn"}),
        json!({"i": 101, "level": "debug"}),
        json!({"i": 102, "level": 1}),
    ]));
    records.push(json_record(json!({"i": 200, "level": "debug"})));
    let stage = Stage::new(&records).await?;
    let run = stage.start(&program_yaml(), mode)?;
    let want = 18 + 1 + 1;
    let lines = wait_for_lines(&stage.out, want, DEADLINE).await?;
    let dead_lines = wait_for_lines(&stage.dead, 3, DEADLINE).await?;
    run.shutdown().await?;

    let docs = docs(&lines)?;
    assert_eq!(docs.len(), want, "nothing dropped is delivered: {docs:?}");
    let delivered: Vec<i64> = docs.iter().filter_map(|d| d["i"].as_i64()).collect();
    let expected: Vec<i64> = (0..30)
        .filter(|i| i % 3 != 0 && *i != 10 && *i != 20)
        .chain([100])
        .collect();
    assert_eq!(delivered, expected, "in order, each once");
    assert!(docs.iter().all(|d| {
        d["shard"]
            .as_str()
            .is_some_and(|s| s.starts_with("shardId-"))
    }));
    let text = docs
        .iter()
        .find(|d| d["message"] == "plain text")
        .expect("the text record");
    assert_eq!(text["level"], Value::Null, "{text}");
    let warn = docs
        .iter()
        .find(|d| d["i"] == 100)
        .expect("the KPL user record");
    assert_eq!(
        (warn["level"].clone(), warn["sub"].clone()),
        (json!("WARN"), json!(0))
    );

    // The dead letters are #10, #20 and the aggregate's user record 2, with the error.
    let reasons: Vec<(String, String)> = dead_lines
        .iter()
        .map(|l| {
            (
                l["category"].as_str().unwrap_or_default().to_owned(),
                l["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(dead_lines.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|(c, r)| c == "transform" && r.starts_with("transform: ")),
        "{reasons:?}"
    );
    assert!(reasons[2].1.contains("user record 2"), "{reasons:?}");

    // Restarted, it resumes after the last record, which was dropped: only a new record comes.
    stage
        .restart_delivers_only_a_new_record(&program_yaml(), mode, want, 3)
        .await
}

fn http_yaml(url: &str, retry: &str) -> String {
    format!("  transform:\n    http: {{url: '{url}', timeout: 1s, retryDuration: {retry}}}\n")
}

/// Records every 5th a debug line (dropped), #7 text (ProcessingFailed), the rest JSON (Ok),
/// then a KPL aggregate of two JSON user records.
fn lambda_records() -> Vec<(String, Vec<u8>)> {
    let mut records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| match i {
            7 => ("k".to_owned(), b"not json".to_vec()),
            i if i % 5 == 0 => json_record(json!({"i": i, "level": "debug"})),
            _ => json_record(json!({"i": i, "level": "info"})),
        })
        .collect();
    records.push(aggregate(&[json!({"i": 100}), json!({"i": 101})]));
    records
}

#[tokio::test]
async fn a_firehose_transform_behind_http_is_retried_through_faults_and_judged_per_record()
-> Result<()> {
    use common::firehose_lambda::{Fault, FirehoseLambda};
    let lambda = FirehoseLambda::start().await?;
    // The first batch meets every fault before it is answered properly.
    lambda.fail_next([
        Fault::Status(503),
        Fault::DuplicateId,
        Fault::MissingRecord,
        Fault::Slow(Duration::from_secs(3)),
        Fault::Status(429),
    ]);
    let stage = Stage::new(&lambda_records()).await?;
    let transform = http_yaml(&lambda.url, "60s");
    let run = stage.start(&transform, ReadMode::Polling)?;
    let want = 40 - 8 - 1 + 2;
    let lines = wait_for_lines(&stage.out, want, DEADLINE).await?;
    let dead_lines = wait_for_lines(&stage.dead, 1, DEADLINE).await?;
    run.shutdown().await?;

    let docs = docs(&lines)?;
    let delivered: Vec<i64> = docs.iter().filter_map(|d| d["i"].as_i64()).collect();
    let expected: Vec<i64> = (0..40)
        .filter(|i| i % 5 != 0 && *i != 7)
        .chain([100, 101])
        .collect();
    assert_eq!(
        delivered, expected,
        "in order, each once, nothing dropped delivered"
    );
    assert!(docs.iter().all(|d| {
        d["transformed"] == true
            && d["shard"]
                .as_str()
                .is_some_and(|s| s.starts_with("shardId-"))
    }));
    let subs: Vec<&Value> = docs[docs.len() - 2..].iter().map(|d| &d["sub"]).collect();
    assert_eq!(
        subs,
        [&json!("0"), &json!("1")],
        "KPL user records carry their subsequenceNumber"
    );
    assert_eq!(dead_lines.len(), 1);
    assert_eq!(dead_lines[0]["category"], "transform");
    assert!(
        dead_lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ProcessingFailed")),
        "{}",
        dead_lines[0]
    );
    // Five refused attempts, then the answer; each attempt sent the same batch.
    let requests = lambda.requests();
    assert!(requests.len() >= 6, "{} requests", requests.len());
    assert_eq!(
        requests[0]["records"], requests[5]["records"],
        "a retry sends the same batch"
    );
    assert_eq!(requests[0]["records"][0]["recordId"], "0");
    assert!(requests[0]["records"][0]["kinesisRecordMetadata"]["sequenceNumber"].is_string());
    assert!(requests[0]["invocationId"].is_string());
    stage
        .restart_delivers_only_a_new_record(&transform, ReadMode::Polling, want, 1)
        .await
}

#[tokio::test]
async fn a_transform_down_for_longer_than_retry_duration_dead_letters_and_moves_on() -> Result<()> {
    use common::firehose_lambda::FirehoseLambda;
    let lambda = FirehoseLambda::start().await?;
    lambda.set_down(Some(503));
    let records: Vec<_> = (0..3).map(|i| json_record(json!({"i": i}))).collect();
    let stage = Stage::new(&records).await?;
    let transform = http_yaml(&lambda.url, "2s");
    let run = stage.start(&transform, ReadMode::Polling)?;
    let dead_lines = wait_for_lines(&stage.dead, 3, DEADLINE).await?;
    for l in &dead_lines {
        let reason = l["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("gave up") && reason.contains("HTTP 503"),
            "{reason}"
        );
    }
    assert_eq!(
        common::lines(&stage.out)?.len(),
        0,
        "nothing delivered while the transform is down"
    );
    run.shutdown().await?;

    // Back up: a new record is delivered, and the dead-lettered ones are not read again.
    lambda.set_down(None);
    stage
        .restart_delivers_only_a_new_record(&transform, ReadMode::Polling, 0, 3)
        .await
}
