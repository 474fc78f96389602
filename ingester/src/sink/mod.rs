//! Sinks: batching, delivery with retries, acknowledgement, and the dead-letter file.
//!
//! Chunks arrive on a bounded channel, are encoded into batches ([`Batcher`]), sent to one
//! [`Destination`] with unlimited retries ([`SinkPipeline`]), and acknowledged through the
//! [`AckFn`] in shard order once delivered (at-least-once).

mod batch;
mod bulk;
mod dead_letter;
mod deliverable;
mod error;
mod file;
mod http;
mod join;
pub mod ndjson;
mod outlets;
mod pipeline;
pub mod retry_after;
mod s3;
mod stats;
mod stdout;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use futures::future::BoxFuture;
use kinesis_ingester_api::{KinesisIngesterSpec, SinkSpec};
use tokio::{
    sync::{Notify, mpsc::Receiver},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub(crate) use self::http::read_body;
pub use self::{
    batch::{Batch, BatchLimits, Batcher, ItemPart},
    dead_letter::DeadLetterWriter,
    deliverable::Deliverable,
    error::SinkError,
    file::FileDestination,
    http::HttpDestination,
    join::AckJoin,
    ndjson::Encoding,
    outlets::{
        Flush, Outlets, SinkClosed, SinkHandle, SinkSettings, Sinks, last_failure, spawn_sinks,
    },
    pipeline::SinkPipeline,
    s3::{MIN_PART_SIZE, MULTIPART_THRESHOLD, PART_SIZE, PartitionKey, Partitioner, S3Destination},
    stats::SinkStats,
    stdout::WriterDestination,
};
use crate::record::{AckFn, Chunk};

/// Where batches go. `send` resolves once the destination has accepted every item of the batch;
/// an error means none of it counts as delivered, except [`SinkError::BulkItems`], which names
/// the only items to send again.
pub trait Destination: Send {
    /// Delivers the batch body (its [`Batch::len`] items).
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// The destination and body framing `spec` asks for. Fsyncs file batches.
pub fn destination(spec: &SinkSpec) -> Result<(Box<dyn Destination>, Encoding), SinkError> {
    destination_with(spec, &kinesis_client::net::Network::default())
}

/// [`destination`] with HTTP and S3 requests over `network` (`spec.network`).
pub fn destination_with(
    spec: &SinkSpec,
    network: &kinesis_client::net::Network,
) -> Result<(Box<dyn Destination>, Encoding), SinkError> {
    match (&spec.stdout, &spec.file, &spec.http, &spec.s3) {
        (Some(_), None, None, None) => {
            Ok((Box::new(WriterDestination::stdout()), Encoding::Ndjson))
        }
        (None, Some(file), None, None) => Ok((
            Box::new(FileDestination::new(&file.path, true)),
            Encoding::Ndjson,
        )),
        (None, None, Some(http), None) => Ok((
            Box::new(HttpDestination::with_network(http, network)?),
            HttpDestination::encoding(http)?,
        )),
        (None, None, None, Some(s3)) => Ok((
            Box::new(S3Destination::new(s3).with_client_options(
                kinesis_client::aws::ClientOptions {
                    network: network.clone(),
                    ..Default::default()
                },
            )),
            S3Destination::encoding(s3),
        )),
        _ => Err(SinkError::Config(
            "sink: set exactly one of stdout, file, http or s3".into(),
        )),
    }
}

/// Start-up checks of the standalone ingester: the file sink's and the dead-letter file's paths
/// can be opened for appending (created when missing). A path that cannot is a configuration
/// error naming the field, reported before anything is read. Fleet workers skip this: their
/// volumes may appear later, and their sink errors show in the ingester's conditions.
pub async fn preflight(spec: &KinesisIngesterSpec) -> Result<(), SinkError> {
    for output in spec.outputs() {
        let at = output.field();
        let files = [
            (
                "file.path",
                output.sink.file.as_ref().map(|f| f.path.as_str()),
            ),
            ("deadLetterPath", output.sink.dead_letter_path.as_deref()),
        ];
        for (field, path) in files {
            let Some(path) = path else { continue };
            if let Err(e) = file::open_append(Path::new(path)).await {
                let field = format!("{at}.{field}");
                return Err(SinkError::Config(format!(
                    "{field}: cannot open {path:?} for appending: {e}; create its directory or point {field} at a writable file"
                )));
            }
        }
    }
    Ok(())
}

/// How the rest of the process steers a running sink.
#[derive(Clone, Debug, Default)]
pub struct SinkControl {
    /// Stops the sink promptly, leaving undelivered records unacknowledged.
    pub cancel: CancellationToken,
    /// Each notification delivers what was received so far without waiting for
    /// `batch.maxAge`.
    pub flush: Arc<Notify>,
    /// The shards whose records may still be delivered and acknowledged.
    pub deliverable: Deliverable,
}

/// Starts the sink task for `spec` on the current Tokio runtime.
///
/// Chunks come in on `rx`; `ack(shard_id, checkpoint)` is called in shard order once every
/// record of a chunk was delivered. The task returns `Ok` after `rx` is closed and everything
/// received was delivered and acked, or promptly after `control.cancel` fires. Fails at once on
/// an invalid spec.
pub fn spawn_sink(
    spec: &SinkSpec,
    stream_name: &str,
    rx: Receiver<Chunk>,
    ack: AckFn,
    stats: Arc<SinkStats>,
    control: SinkControl,
) -> Result<JoinHandle<Result<(), SinkError>>, SinkError> {
    let (destination, encoding) = destination(spec)?;
    let pipeline = SinkPipeline::new(
        destination,
        BatchLimits::from(&spec.batch),
        encoding,
        ack,
        control.cancel,
        stats.clone(),
    )
    .with_flush(control.flush)
    .with_deliverable(control.deliverable)
    .with_dead_letters(dead_letter_writer(spec, stats))
    .with_partitioner(spec.s3.as_ref().map(Partitioner::new));
    let span = tracing::info_span!("sink", stream = stream_name);
    Ok(tokio::spawn(pipeline.run(rx).instrument(span)))
}

/// The dead-letter writer of records that cannot be decoded or transformed: the
/// `deadLetterPath` of `spec.sink`, or of the first of `spec.sinks` that has one; else log-only.
pub fn reader_dead_letter_writer(
    spec: &KinesisIngesterSpec,
    stats: Arc<SinkStats>,
) -> DeadLetterWriter {
    let path = spec
        .outputs()
        .iter()
        .find_map(|o| o.sink.dead_letter_path.as_ref().map(PathBuf::from));
    DeadLetterWriter::new(path, stats)
}

/// The dead-letter writer `spec` asks for (`deadLetterPath`, or log-only).
pub fn dead_letter_writer(spec: &SinkSpec, stats: Arc<SinkStats>) -> DeadLetterWriter {
    DeadLetterWriter::new(spec.dead_letter_path.as_ref().map(PathBuf::from), stats)
}
