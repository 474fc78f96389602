//! Writes the seed corpus, a few valid inputs per fuzz target, under the directory given (fuzz/corpus).

use std::{fs, io, path::Path};

use kinesis_ingester::decode::testing::{UserRecordSpec, encode_aggregated, frame, gzip};

const DATA_MESSAGE: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/f","logStream":"2024/01/01/[$LATEST]abc","subscriptionFilters":["to-kinesis"],"logEvents":[{"id":"e1","timestamp":1700000000001,"message":"first"},{"id":"e2","timestamp":1700000000002,"message":"{\"level\":\"info\"}"}]}"#;
const CONTROL_MESSAGE: &str = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1700000000000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;

fn user(partition_key: &'static str, data: &'static [u8]) -> UserRecordSpec<'static> {
    UserRecordSpec {
        partition_key,
        explicit_hash_key: None,
        data,
    }
}

fn main() -> io::Result<()> {
    let root = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);
    let write = |target: &str, name: &str, bytes: &[u8]| -> io::Result<()> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)
    };

    write("kpl", "plain", b"not aggregated")?;
    write("kpl", "one", &encode_aggregated(&[user("pk", b"hello")]))?;
    write(
        "kpl",
        "three-shared-key",
        &encode_aggregated(&[user("a", b"1"), user("b", b"2"), user("a", b"3")]),
    )?;
    write(
        "kpl",
        "explicit-hash-key",
        &encode_aggregated(&[
            UserRecordSpec {
                partition_key: "pk",
                explicit_hash_key: Some("340282366920938463463374607431768211455"),
                data: b"high",
            },
            UserRecordSpec {
                partition_key: "pk",
                explicit_hash_key: Some("0"),
                data: b"low",
            },
        ]),
    )?;
    write("kpl", "empty", &encode_aggregated(&[]))?;
    write("kpl", "bad-protobuf", &frame(b"\xff\xff\xff"))?;

    write("cloudwatch", "data-plain", DATA_MESSAGE.as_bytes())?;
    write("cloudwatch", "data-gzip", &gzip(DATA_MESSAGE.as_bytes()))?;
    write("cloudwatch", "control-gzip", &gzip(CONTROL_MESSAGE.as_bytes()))?;

    write("gzip", "text", &gzip(b"hello, world\n"))?;
    write("gzip", "empty", &gzip(b""))?;
    write("gzip", "json", &gzip(DATA_MESSAGE.as_bytes()))?;
    let mut members = gzip(b"first member ").to_vec();
    members.extend_from_slice(&gzip(b"second member"));
    write("gzip", "two-members", &members)?;

    for (name, text) in [
        ("cloudwatch-logs", include_str!("../../examples/cloudwatch-logs.yaml")),
        ("cross-account", include_str!("../../examples/cross-account.yaml")),
        ("efo-elasticsearch", include_str!("../../examples/efo-elasticsearch.yaml")),
        ("kpl-aggregated", include_str!("../../examples/kpl-aggregated.yaml")),
        ("polling-stdout", include_str!("../../examples/polling-stdout.yaml")),
    ] {
        write("config", name, text.as_bytes())?;
    }

    // The ndjson target reads its input through `arbitrary`: any bytes make a record.
    write("ndjson", "text", b"hello \"world\"\n\x00\x01 shard pk 12345678")?;
    write("ndjson", "binary", &[0xff, 0xfe, 0x80, 0x00, 0x10, 0x20, 0x30, 0x41, 0x42])?;
    write("ndjson", "long", &(0u8..=255).collect::<Vec<u8>>())?;
    Ok(())
}
