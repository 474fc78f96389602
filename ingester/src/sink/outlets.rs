//! Several sinks: one pipeline per sink, each fed by its own bounded channel, and what the shard
//! readers hold to feed them ([`Outlets`]).
//!
//! A reader splits each chunk's records among the sinks ([`Router`]) and sends every sink its
//! part, possibly empty, with the chunk's checkpoint; an [`AckJoin`] passes a checkpoint on once
//! every sink acknowledged it. A sink that is slow or down fills its channel, and the readers
//! wait on it: its shards stop moving, the other sinks get what was routed to them before.

use std::sync::Arc;

use futures::{StreamExt, stream::FuturesUnordered};
use kinesis_ingester_api::KinesisIngesterSpec;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    BatchLimits, Deliverable, Partitioner, SinkError, SinkPipeline, SinkStats, dead_letter_writer,
    destination_with, join::AckJoin,
};
use crate::{
    record::{AckFn, Chunk},
    route::{RouteStats, Router},
};

/// The sink stopped taking chunks (it failed or was cancelled).
#[derive(Debug, thiserror::Error)]
#[error("the sink stopped taking records")]
pub struct SinkClosed;

/// The sinks' inputs, as a shard reader holds them. The sinks' inputs close once every clone is
/// dropped.
#[derive(Clone, Debug)]
pub struct Outlets(Kind);

#[derive(Clone, Debug)]
enum Kind {
    /// One sink that takes every record.
    One(mpsc::Sender<Chunk>),
    /// Several sinks, or one with a route.
    Routed {
        router: Arc<Router>,
        senders: Vec<mpsc::Sender<Chunk>>,
        join: Arc<AckJoin>,
    },
}

impl From<mpsc::Sender<Chunk>> for Outlets {
    fn from(tx: mpsc::Sender<Chunk>) -> Self {
        Self(Kind::One(tx))
    }
}

impl Outlets {
    /// Sends `chunk` to the sinks, each its share of the records and the checkpoint; waits while
    /// a sink's channel is full. All or nothing: a slot is reserved in every sink's channel
    /// before anything is sent, so a send dropped while waiting (the reader cancelled) leaves
    /// no sink with a part that the others lack.
    pub async fn send(&self, chunk: Chunk) -> Result<(), SinkClosed> {
        match &self.0 {
            Kind::One(tx) => tx.send(chunk).await.map_err(|_| SinkClosed),
            Kind::Routed {
                router,
                senders,
                join,
            } => {
                let Chunk {
                    records,
                    shard_id,
                    generation,
                    checkpoint,
                } = chunk;
                let parts = router.split(records);
                let mut permits = Vec::with_capacity(senders.len());
                for tx in senders {
                    permits.push(tx.reserve().await.map_err(|_| SinkClosed)?);
                }
                join.sent(&shard_id, generation, &checkpoint);
                for (permit, records) in permits.into_iter().zip(parts) {
                    permit.send(Chunk {
                        records,
                        shard_id: shard_id.clone(),
                        generation,
                        checkpoint: checkpoint.clone(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Delivers everything received so far without waiting for `batch.maxAge`, in every sink.
#[derive(Clone, Debug, Default)]
pub struct Flush(Arc<[Arc<Notify>]>);

impl Flush {
    /// Wakes every sink (a notification is kept until the sink looks).
    pub fn notify(&self) {
        for n in self.0.iter() {
            n.notify_one();
        }
    }
}

/// The category of the last failed send of the first sink that failed since its last delivery,
/// and, when there are several sinks, its name.
pub fn last_failure(sinks: &[SinkHandle]) -> (Option<&'static str>, Option<String>) {
    sinks
        .iter()
        .find_map(|s| Some((s.stats.last_error()?, s)))
        .map_or((None, None), |(category, s)| {
            (
                Some(category),
                (sinks.len() > 1).then(|| s.name.to_string()),
            )
        })
}

/// One sink's counters, for metrics and status.
#[derive(Clone, Debug)]
pub struct SinkHandle {
    /// `sink` for `spec.sink`, else the entry's name.
    pub name: Arc<str>,
    /// What it delivered and how its sends failed.
    pub stats: Arc<SinkStats>,
    queue: mpsc::WeakSender<Chunk>,
}

impl SinkHandle {
    /// Chunks waiting in the sink's channel (it is full while the sink cannot keep up).
    pub fn queued(&self) -> usize {
        self.queue
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Its channel's capacity, in chunks.
    pub fn capacity(&self) -> usize {
        self.queue.upgrade().map_or(0, |tx| tx.max_capacity())
    }
}

/// The running sinks of an ingester.
#[derive(Debug)]
pub struct Sinks {
    /// What the shard readers send to.
    pub outlets: Outlets,
    /// Ends with `Ok` once every sink delivered everything after the outlets closed, or with the
    /// first sink's error (the others are cancelled then).
    pub task: JoinHandle<Result<(), SinkError>>,
    /// Flushes every sink.
    pub flush: Flush,
    /// Each sink's counters, in spec order.
    pub sinks: Vec<SinkHandle>,
    /// The router's counters, when records are routed.
    pub routes: Option<Arc<RouteStats>>,
}

/// How the sinks are run: settings every sink shares.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// Chunks each sink's channel holds.
    pub capacity: usize,
    /// Stops every sink promptly, leaving undelivered records unacknowledged.
    pub cancel: CancellationToken,
    /// The shards whose records may still be delivered and acknowledged.
    pub deliverable: Deliverable,
    /// Proxy and CAs of the HTTP and S3 sinks (`spec.network`).
    pub network: kinesis_client::net::Network,
}

/// Starts a pipeline per sink of `spec` (`spec.sink`, or each of `spec.sinks`) on the current
/// runtime. `ack` is called with a shard's checkpoint once every sink acknowledged it; `totals`
/// counts what all sinks do together. Fails at once on an invalid sink or route.
pub fn spawn_sinks(
    spec: &KinesisIngesterSpec,
    stream_name: &str,
    ack: AckFn,
    totals: &Arc<SinkStats>,
    settings: SinkSettings,
) -> Result<Sinks, SinkError> {
    let outputs = spec.outputs();
    if outputs.is_empty() {
        return Err(SinkError::Config("set exactly one of sink or sinks".into()));
    }
    let routed = outputs.len() > 1 || outputs[0].route.is_some();
    let (router, join) = if routed {
        let router = Router::from_spec(spec).map_err(|e| SinkError::Config(e.to_string()))?;
        (
            Some(Arc::new(router)),
            Some(AckJoin::new(outputs.len(), ack.clone())),
        )
    } else {
        (None, None)
    };
    let mut senders = Vec::with_capacity(outputs.len());
    let mut handles = Vec::with_capacity(outputs.len());
    let mut notifies = Vec::with_capacity(outputs.len());
    let mut tasks = FuturesUnordered::new();
    for (i, output) in outputs.iter().enumerate() {
        let name: Arc<str> = Arc::from(output.name);
        let stats = Arc::new(SinkStats::child_of(totals.clone()));
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let (destination, encoding) =
            destination_with(output.sink, &settings.network).map_err(|e| match e {
                SinkError::Config(m) if routed => {
                    SinkError::Config(format!("{}: {m}", output.field()))
                }
                other => other,
            })?;
        let flush = Arc::new(Notify::new());
        let sink_ack = match &join {
            Some(join) => join.ack_fn(i),
            None => ack.clone(),
        };
        let pipeline = SinkPipeline::new(
            destination,
            BatchLimits::from(&output.sink.batch),
            encoding,
            sink_ack,
            settings.cancel.clone(),
            stats.clone(),
        )
        .with_flush(flush.clone())
        .with_deliverable(settings.deliverable.clone())
        .with_dead_letters(dead_letter_writer(output.sink, stats.clone()))
        .with_partitioner(output.sink.s3.as_ref().map(Partitioner::new))
        .with_give_up(
            name.clone(),
            output.sink.dead_letter_after.as_ref().map(|d| d.get()),
        );
        let span = tracing::info_span!("sink", stream = stream_name, sink = %name);
        tasks.push(tokio::spawn(pipeline.run(rx).instrument(span)));
        handles.push(SinkHandle {
            name,
            stats,
            queue: tx.downgrade(),
        });
        senders.push(tx);
        notifies.push(flush);
    }
    let outlets = match (router.as_ref(), join) {
        (Some(router), Some(join)) => Outlets(Kind::Routed {
            router: router.clone(),
            senders,
            join,
        }),
        _ => Outlets(Kind::One(senders.pop().expect("one sink"))),
    };
    let cancel = settings.cancel;
    let task = tokio::spawn(async move {
        while let Some(done) = tasks.next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    cancel.cancel();
                    return Err(e);
                }
                Err(join_error) => {
                    cancel.cancel();
                    match join_error.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(e) => return Err(SinkError::Config(format!("a sink task ended: {e}"))),
                    }
                }
            }
        }
        Ok(())
    });
    Ok(Sinks {
        outlets,
        task,
        flush: Flush(notifies.into()),
        sinks: handles,
        routes: router.map(|r| r.stats()),
    })
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use kinesis_ingester_api::sequence::Position;

    use super::*;

    fn chunk(checkpoint: u64) -> Chunk {
        Chunk {
            records: Vec::new(),
            shard_id: Arc::from("s-0"),
            generation: 0,
            checkpoint: Position::whole(checkpoint.to_string().parse().expect("sequence")),
        }
    }

    #[tokio::test]
    async fn a_send_dropped_while_a_sink_is_full_leaves_no_part_in_any_sink() {
        let spec: KinesisIngesterSpec = serde_json::from_value(serde_json::json!({
            "stream": {"name": "s"},
            "sinks": [{"name": "a", "stdout": {}}, {"name": "b", "stdout": {}}],
        }))
        .expect("spec");
        let router = Arc::new(Router::from_spec(&spec).expect("router"));
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = acked.clone();
        let join = AckJoin::new(
            2,
            Arc::new(move |_: &str, p: &Position| seen.lock().expect("acks").push(p.clone())),
        );
        let (ta, mut ra) = mpsc::channel(1);
        let (tb, mut rb) = mpsc::channel(1);
        tb.try_send(chunk(1)).expect("fills b");
        let outlets = Outlets(Kind::Routed {
            router,
            senders: vec![ta, tb],
            join: join.clone(),
        });
        // b is full: the send waits, then the reader is cancelled and drops it.
        let mut send = Box::pin(outlets.send(chunk(2)));
        assert!(send.as_mut().now_or_never().is_none(), "waits for b");
        drop(send);
        assert!(
            ra.try_recv().is_err(),
            "a got no part of a chunk b never got"
        );
        assert_eq!(rb.try_recv().map(|c| c.checkpoint), Ok(chunk(1).checkpoint));
        // The next chunk goes to both, and its checkpoint passes once both acknowledge it.
        outlets.send(chunk(3)).await.expect("sent");
        let (a, b) = (
            ra.try_recv().expect("a's part"),
            rb.try_recv().expect("b's part"),
        );
        join.ack_fn(0)("s-0", &a.checkpoint);
        join.ack_fn(1)("s-0", &b.checkpoint);
        assert_eq!(*acked.lock().expect("acks"), vec![chunk(3).checkpoint]);
    }
}
