//! A Kinesis stand-in for benchmarks: serves pre-built GetRecords responses from memory (and the DescribeStreamSummary, ListShards and GetShardIterator calls a polling consumer such as the KCL makes), so the consumer, not the emulator, is measured.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine;
use serde_json::{Value, json};

/// What the replay server serves.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// Number of shards.
    pub shards: usize,
    /// GetRecords pages served per shard before the shard ends (0: never ends, and pages are empty).
    pub pages_per_shard: u64,
    /// Records per page.
    pub records_per_page: usize,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// The Data of every record of shard `i` is `payloads[i % len]` instead of `record_bytes` of
    /// a-z (e.g. KPL aggregated records whose keys hash into that shard).
    pub payloads: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Replay {
    spec: ReplaySpec,
    /// The GetRecords body of every full page (one per payload), minus NextShardIterator.
    pages: Vec<Bytes>,
    /// Where each record's page number is written into a copy of each page.
    offsets: Vec<Vec<usize>>,
    pages_served: AtomicU64,
    /// Every shard, open or closed, in creation order.
    shards: Mutex<Vec<ReplayShard>>,
}

/// One shard of the replayed stream.
#[derive(Debug, Clone)]
struct ReplayShard {
    id: String,
    parents: Vec<String>,
    range: (u128, u128),
    /// Split: GetRecords answers its end, with its children.
    closed: bool,
}

impl Replay {
    fn shards(&self) -> std::sync::MutexGuard<'_, Vec<ReplayShard>> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Requests the server has answered, for progress reports.
#[derive(Debug, Clone)]
pub struct ReplayHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    replay: Arc<Replay>,
}

impl ReplayHandle {
    /// Full pages served so far.
    pub fn pages_served(&self) -> u64 {
        self.replay.pages_served.load(Ordering::Relaxed)
    }

    /// Splits the first `count` open shards in the middle of their hash ranges, as `count`
    /// SplitShard calls at once would: each is closed (its readers get its end and the children)
    /// and two children are listed. Returns the parents' ids.
    pub fn split(&self, count: usize) -> Vec<String> {
        let mut shards = self.replay.shards();
        let mut next = shards.len();
        let mut children = Vec::new();
        let mut parents = Vec::new();
        for s in shards.iter_mut().filter(|s| !s.closed).take(count) {
            s.closed = true;
            let mid = s.range.0 + (s.range.1 - s.range.0) / 2;
            for range in [(s.range.0, mid), (mid + 1, s.range.1)] {
                children.push(ReplayShard {
                    id: shard_id(next),
                    parents: vec![s.id.clone()],
                    range,
                    closed: false,
                });
                next += 1;
            }
            parents.push(s.id.clone());
        }
        shards.extend(children);
        parents
    }

    /// Ids of the children of `parent`.
    pub fn children(&self, parent: &str) -> Vec<String> {
        self.replay
            .shards()
            .iter()
            .filter(|s| s.parents.iter().any(|p| p == parent))
            .map(|s| s.id.clone())
            .collect()
    }
}

fn shard_id(i: usize) -> String {
    format!("shardId-{i:012}")
}

/// The start of shard `i`'s hash key range: shards split the key space evenly.
pub fn starting_hash_key(shards: usize, i: usize) -> u128 {
    u128::MAX / shards as u128 * i as u128
}

fn build_pages(spec: &ReplaySpec) -> Vec<Bytes> {
    if spec.payloads.is_empty() {
        let payload: Vec<u8> = (0..spec.record_bytes)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        return vec![build_page(spec, &payload)];
    }
    spec.payloads.iter().map(|p| build_page(spec, p)).collect()
}

/// Sequence numbers are this prefix, the page number (6 digits) and the record's index in the
/// page (6 digits): unique and increasing along a shard, as Kinesis' are.
const SEQ_PREFIX: &str = "495903382714902566085596925383615710959215759891";
const SEQ_KEY: &[u8] = br#""SequenceNumber":""#;

/// Where the page number of each record's sequence number starts in a page body.
fn page_number_offsets(page: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while let Some(i) = page[at..].windows(SEQ_KEY.len()).position(|w| w == SEQ_KEY) {
        let start = at + i + SEQ_KEY.len() + SEQ_PREFIX.len();
        offsets.push(start);
        at = start;
    }
    offsets
}

/// The page number and index in it of a sequence number this server made.
fn parse_sequence(seq: &str) -> Option<(u64, usize)> {
    let rest = seq.strip_prefix(SEQ_PREFIX)?;
    Some((rest.get(..6)?.parse().ok()?, rest.get(6..)?.parse().ok()?))
}

fn build_page(spec: &ReplaySpec, payload: &[u8]) -> Bytes {
    let data = base64::engine::general_purpose::STANDARD.encode(payload);
    let records: Vec<Value> = (0..spec.records_per_page)
        .map(|i| {
            json!({
                "Data": data,
                "PartitionKey": format!("pk-{}", i % 100),
                "SequenceNumber": format!("{SEQ_PREFIX}{:06}{i:06}", 0),
                "ApproximateArrivalTimestamp": 1_795_446_000.5,
            })
        })
        .collect();
    // NextShardIterator is appended per request, so the body ends before the closing brace.
    let mut body = serde_json::to_vec(&json!({ "Records": records, "MillisBehindLatest": 60_000 }))
        .unwrap_or_default();
    body.pop();
    Bytes::from(body)
}

async fn handle(
    State(r): State<Arc<Replay>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut out_headers = HeaderMap::new();
    out_headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().expect("static header"),
    );
    let json_body = |v: Value| Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    let reply = match target.as_str() {
        "DescribeStreamSummary" => {
            let open = r.shards().iter().filter(|s| !s.closed).count();
            json_body(json!({
            "StreamDescriptionSummary": {
                "StreamName": req["StreamName"].as_str().unwrap_or("bench"),
                "StreamARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", req["StreamName"].as_str().unwrap_or("bench")),
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": { "StreamMode": "PROVISIONED" },
                "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": 1_795_446_000.0,
                "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
                "EncryptionType": "NONE",
                "OpenShardCount": open,
                "ConsumerCount": 0,
            }
            }))
        }
        // Every shard starts at the trim horizon and is retained, so each ShardFilter
        // (AT_TRIM_HORIZON, AT_LATEST, FROM_TRIM_HORIZON, ...) selects all of them.
        "ListShards" => json_body(json!({
            "Shards": r.shards().iter().map(|s| {
                let mut shard = json!({
                    "ShardId": s.id,
                    "HashKeyRange": {
                        "StartingHashKey": s.range.0.to_string(),
                        "EndingHashKey": s.range.1.to_string(),
                    },
                    "SequenceNumberRange": if s.closed {
                        json!({ "StartingSequenceNumber": "1", "EndingSequenceNumber": "2" })
                    } else {
                        json!({ "StartingSequenceNumber": "1" })
                    },
                });
                if let Some(p) = s.parents.first() {
                    shard["ParentShardId"] = json!(p);
                }
                shard
            }).collect::<Vec<_>>()
        })),
        "GetShardIterator" => {
            // A consumer resuming from a checkpoint starts at that record's page, or the next
            // one after a page's last record.
            let page = match (
                req["ShardIteratorType"].as_str(),
                req["StartingSequenceNumber"]
                    .as_str()
                    .and_then(parse_sequence),
            ) {
                (Some("AFTER_SEQUENCE_NUMBER"), Some((p, i)))
                    if i + 1 >= r.spec.records_per_page =>
                {
                    p + 1
                }
                (Some("AFTER_SEQUENCE_NUMBER" | "AT_SEQUENCE_NUMBER"), Some((p, _))) => p,
                _ => 0,
            };
            json_body(
                json!({ "ShardIterator": format!("{}/{page}", req["ShardId"].as_str().unwrap_or_default()) }),
            )
        }
        "GetRecords" => {
            let it = req["ShardIterator"].as_str().unwrap_or_default();
            let (shard, n) = it.rsplit_once('/').unwrap_or((it, "0"));
            let n: u64 = n.parse().unwrap_or(0);
            let children: Option<Vec<Value>> = {
                let shards = r.shards();
                shards.iter().any(|s| s.id == shard && s.closed).then(|| {
                    shards
                        .iter()
                        .filter(|c| c.parents.iter().any(|p| p == shard))
                        .map(|c| {
                            json!({
                                "ShardId": c.id,
                                "ParentShards": c.parents,
                                "HashKeyRange": {
                                    "StartingHashKey": c.range.0.to_string(),
                                    "EndingHashKey": c.range.1.to_string(),
                                },
                            })
                        })
                        .collect()
                })
            };
            if let Some(children) = children {
                json_body(
                    json!({ "Records": [], "MillisBehindLatest": 0, "ChildShards": children }),
                )
            } else if r.spec.pages_per_shard == 0 {
                json_body(
                    json!({ "Records": [], "MillisBehindLatest": 0, "NextShardIterator": it }),
                )
            } else if n >= r.spec.pages_per_shard {
                json_body(json!({ "Records": [], "MillisBehindLatest": 0, "ChildShards": [] }))
            } else {
                r.pages_served.fetch_add(1, Ordering::Relaxed);
                let tail = format!(",\"NextShardIterator\":\"{shard}/{}\"}}", n + 1);
                let index: usize = shard
                    .rsplit('-')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                let page = &r.pages[index % r.pages.len()];
                let offsets = &r.offsets[index % r.pages.len()];
                let mut b = Vec::with_capacity(page.len() + tail.len());
                b.extend_from_slice(page);
                let number = format!("{:06}", n % 1_000_000);
                for &o in offsets {
                    b[o..o + 6].copy_from_slice(number.as_bytes());
                }
                b.extend_from_slice(tail.as_bytes());
                Bytes::from(b)
            }
        }
        other => {
            return (
                StatusCode::BAD_REQUEST,
                out_headers,
                json_body(
                    json!({ "__type": "InvalidArgumentException", "message": format!("replay server does not serve {other}") }),
                ),
            );
        }
    };
    (StatusCode::OK, out_headers, reply)
}

/// Starts the server on 127.0.0.1 (a free port) on the current runtime.
pub async fn start(spec: ReplaySpec) -> std::io::Result<ReplayHandle> {
    let pages = build_pages(&spec);
    let shards = (0..spec.shards)
        .map(|i| ReplayShard {
            id: shard_id(i),
            parents: Vec::new(),
            range: (
                starting_hash_key(spec.shards, i),
                if i + 1 == spec.shards {
                    u128::MAX
                } else {
                    starting_hash_key(spec.shards, i + 1) - 1
                },
            ),
            closed: false,
        })
        .collect();
    let replay = Arc::new(Replay {
        shards: Mutex::new(shards),
        offsets: pages.iter().map(|p| page_number_offsets(p)).collect(),
        pages,
        spec,
        pages_served: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/", post(handle))
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(ReplayHandle { addr, replay })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_carry_the_page_and_index() {
        let spec = ReplaySpec {
            shards: 1,
            pages_per_shard: 2,
            records_per_page: 3,
            record_bytes: 4,
            payloads: Vec::new(),
        };
        let page = build_pages(&spec).remove(0);
        let offsets = page_number_offsets(&page);
        assert_eq!(offsets.len(), 3);
        let mut copy = page.to_vec();
        for &o in &offsets {
            copy[o..o + 6].copy_from_slice(b"000042");
        }
        let text = String::from_utf8(copy).expect("utf8");
        assert!(text.contains(&format!("{SEQ_PREFIX}000042000002")));
        assert_eq!(
            parse_sequence(&format!("{SEQ_PREFIX}000042000002")),
            Some((42, 2))
        );
        assert_eq!(parse_sequence("123"), None);
    }
}
