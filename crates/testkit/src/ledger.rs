//! The ledger of the fault tests: a producer of unique ids `k{key}-{i}`, an HTTP sink that records what each path delivered and when, and the loss, duplicate and per-key order counts.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use aws_sdk_kinesis::primitives::Blob;
use axum::{Router, body::Bytes, extract::State, http::StatusCode};

/// Keys the producer spreads records over.
pub const KEYS: usize = 32;

/// The payload of record `i`: `k{key}-{i}`, its key `k{i % KEYS}` first.
pub fn payload(i: usize) -> String {
    format!("k{}-{i}", i % KEYS)
}

/// Puts records `from..to`: [`payload`]`(i)`, key `k{i % KEYS}`.
pub async fn produce(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
) -> Result<()> {
    for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
        let mut req = kinesis.put_records().stream_name(stream);
        for i in chunk {
            let key = format!("k{}", i % KEYS);
            req = req.records(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(&key)
                    .data(Blob::new(payload(*i)))
                    .build()?,
            );
        }
        let res = req.send().await?;
        anyhow::ensure!(
            res.failed_record_count().unwrap_or(0) == 0,
            "PutRecords failed for some records"
        );
    }
    Ok(())
}

/// A background producer: `batch` records every `every` until stopped; a failed batch is
/// retried (resharding makes puts fail briefly).
#[derive(Debug)]
pub struct Producer {
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    /// Starts producing from id `from`.
    pub fn start(
        kinesis: aws_sdk_kinesis::Client,
        stream: String,
        from: usize,
        batch: usize,
        every: Duration,
    ) -> Self {
        let next = Arc::new(AtomicUsize::new(from));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (next.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let from = n.load(Ordering::Relaxed);
                if produce(&kinesis, &stream, from, from + batch).await.is_ok() {
                    n.store(from + batch, Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        });
        Self { next, stop, task }
    }

    /// Records produced so far (ids `0..n`).
    pub fn produced(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Stops and returns the number of records produced.
    pub async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.next.load(Ordering::Relaxed)
    }
}

/// One delivered record: its payload, the sink listener (path) it came through, and when.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `k{key}-{i}`.
    pub payload: String,
    /// The label of the listener that received it.
    pub path: String,
    /// The shard it was read from.
    pub shard: String,
    /// When the request carrying it was answered.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct SinkState {
    deliveries: Vec<Delivery>,
    /// Outages under way (they may overlap); the sink fails while any is.
    failing: usize,
}

/// An NDJSON HTTP sink on 127.0.0.1 that records every record with the listener it came
/// through; each listener is one labelled path (route a worker to its own one through a proxy).
#[derive(Clone, Debug, Default)]
pub struct RecordingSink {
    state: Arc<Mutex<SinkState>>,
}

impl RecordingSink {
    /// A sink with no listener yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a listener labelled `path` on 127.0.0.1; returns its address.
    pub async fn listen(&self, path: &str) -> Result<SocketAddr> {
        self.listen_on("127.0.0.1".parse()?, path).await
    }

    /// Opens a listener labelled `path` on `ip` (the real node's bridge address, which pods
    /// reach); returns its address.
    pub async fn listen_on(&self, ip: std::net::IpAddr, path: &str) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(answer)
            .with_state((self.clone(), path.to_owned()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    /// Starts an outage: until its [`RecordingSink::heal`], every request gets a 503 and nothing
    /// is recorded. Outages may overlap; the sink answers again when the last one is healed.
    pub fn fail(&self) {
        self.lock().failing += 1;
    }

    /// Ends one outage started by [`RecordingSink::fail`].
    pub fn heal(&self) {
        let mut state = self.lock();
        state.failing = state.failing.saturating_sub(1);
    }

    /// Everything delivered so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Payloads delivered so far, in arrival order.
    pub fn payloads(&self) -> Vec<String> {
        self.lock()
            .deliveries
            .iter()
            .map(|d| d.payload.clone())
            .collect()
    }
}

async fn answer(State((sink, path)): State<(RecordingSink, String)>, body: Bytes) -> StatusCode {
    if sink.lock().failing > 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&body);
    let mut state = sink.lock();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            state.deliveries.push(Delivery {
                payload: v["data"].as_str().unwrap_or_default().to_owned(),
                path: path.clone(),
                shard: v["shardId"].as_str().unwrap_or_default().to_owned(),
                at,
            });
        }
    }
    StatusCode::OK
}

fn record_index(payload: &str) -> Option<usize> {
    payload.rsplit_once('-')?.1.parse().ok()
}

/// What a ledger check found over records `0..produced`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Records produced.
    pub produced: usize,
    /// Ids never delivered.
    pub lost: usize,
    /// Deliveries beyond the first of an id.
    pub duplicated: usize,
    /// Per key, a record delivered (first time) after a later one of the same key.
    pub order_breaks: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "produced {}, lost {}, duplicated {}, order breaks {}",
            self.produced, self.lost, self.duplicated, self.order_breaks
        )
    }
}

/// Counts lost, duplicated and out-of-order records of `0..produced` in `payloads`. Order is
/// judged on first deliveries only (a redelivery of an older record is a duplicate, not a break).
pub fn figures(payloads: &[String], produced: usize) -> Figures {
    let mut seen = HashSet::new();
    let mut duplicated = 0;
    let mut last: HashMap<usize, usize> = HashMap::new();
    let mut order_breaks = 0;
    for p in payloads {
        let Some(i) = record_index(p) else { continue };
        if !seen.insert(i) {
            duplicated += 1;
            continue;
        }
        let key = i % KEYS;
        if let Some(prev) = last.insert(key, i)
            && prev > i
        {
            order_breaks += 1;
        }
    }
    let lost = (0..produced).filter(|i| !seen.contains(i)).count();
    Figures {
        produced,
        lost,
        duplicated,
        order_breaks,
    }
}

/// Describes up to `max` order breaks and the paths of duplicates in `deliveries`, with times
/// relative to `t0`: what a failing scenario prints to show which process did what.
pub fn explain(deliveries: &[Delivery], t0: Instant, max: usize) -> String {
    let mut out = String::new();
    let mut first: HashMap<usize, &Delivery> = HashMap::new();
    let mut last: HashMap<usize, &Delivery> = HashMap::new();
    let mut dup_paths: HashMap<(&str, &str), usize> = HashMap::new();
    let mut breaks = 0;
    let secs = |d: &Delivery| d.at.saturating_duration_since(t0).as_secs_f64();
    for d in deliveries {
        let Some(i) = record_index(&d.payload) else {
            continue;
        };
        if let Some(f) = first.get(&i) {
            *dup_paths
                .entry((f.path.as_str(), d.path.as_str()))
                .or_default() += 1;
            continue;
        }
        first.insert(i, d);
        if let Some(prev) = last.insert(i % KEYS, d)
            && record_index(&prev.payload).is_some_and(|p| p > i)
        {
            breaks += 1;
            if breaks <= max {
                out.push_str(&format!(
                    "order break: {} via {} at {:.1}s after {} via {} at {:.1}s\n",
                    d.payload,
                    d.path,
                    secs(d),
                    prev.payload,
                    prev.path,
                    secs(prev)
                ));
            }
        }
    }
    let mut dups: Vec<_> = dup_paths.into_iter().collect();
    dups.sort();
    for ((a, b), n) in dups {
        out.push_str(&format!("duplicates: {n} first via {a}, again via {b}\n"));
    }
    out
}

/// The longest time between two first deliveries of the same key (every key gets a record
/// several times a second, whatever shard it maps to now): how long records went undelivered.
pub fn longest_gap(deliveries: &[Delivery]) -> Duration {
    let mut seen = HashSet::new();
    let mut last: HashMap<usize, Instant> = HashMap::new();
    let mut longest = Duration::ZERO;
    for d in deliveries {
        let Some(i) = record_index(&d.payload) else {
            continue;
        };
        if !seen.insert(i) {
            continue;
        }
        if let Some(prev) = last.insert(i % KEYS, d.at) {
            longest = longest.max(d.at.saturating_duration_since(prev));
        }
    }
    longest
}

/// Waits until every id of `0..n` reached `sink`; the payloads then.
pub async fn wait_delivered(
    sink: &RecordingSink,
    n: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    crate::wait_until(&format!("all {n} records delivered"), timeout, || async {
        let got = sink.payloads();
        Ok((figures(&got, n).lost == 0).then_some(got))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_loss_duplicates_and_order_breaks() {
        let p = payload;
        // 0 and KEYS share key k0: KEYS delivered before 0 is a break; 1 twice; 2 lost.
        let got = vec![p(KEYS), p(0), p(1), p(1), p(3)];
        let f = figures(&got, 4);
        assert_eq!(
            f,
            Figures {
                produced: 4,
                lost: 1,
                duplicated: 1,
                order_breaks: 1
            }
        );
    }
}
