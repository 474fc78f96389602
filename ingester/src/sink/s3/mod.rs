//! The S3 sink: writes each batch as one object per (shard, partition), named after the sequence range it holds, so a retried upload overwrites the same object.

mod partition;

use std::io::Write;

use aws_sdk_s3::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart},
};
use futures::{StreamExt, TryStreamExt, future::BoxFuture};
use kinesis_client::aws::{AwsTarget, ClientOptions, sdk_config};
use kinesis_ingester_api::{S3Compression, S3Format, S3Sink, sequence::Position};

pub use self::partition::{PartitionKey, Partitioner};
use super::{Batch, Destination, SinkError, error::S3Failure, ndjson::Encoding};

/// Objects at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of each part of a multipart upload.
pub const PART_SIZE: usize = 8 << 20;
/// S3's smallest part, but for the last one.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Objects of one batch uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// Writes batches to a bucket. The client is built on the first batch (loading credentials is
/// asynchronous).
#[derive(Debug)]
pub struct S3Destination {
    spec: S3Sink,
    client: Option<Client>,
    multipart_threshold: usize,
    part_size: usize,
    options: ClientOptions,
}

/// One object of a batch: the items of one shard and partition, in order.
#[derive(Debug, PartialEq, Eq)]
struct Object {
    key: String,
    items: Vec<usize>,
}

impl S3Destination {
    /// A destination for `spec`.
    pub fn new(spec: &S3Sink) -> Self {
        Self {
            spec: spec.clone(),
            client: None,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
            options: ClientOptions::default(),
        }
    }

    /// Builds the client with `options` (e.g. static credentials in tests) instead of the
    /// default credential chain.
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Uploads objects of `threshold` bytes or more in parts of `part_size` bytes (at least
    /// [`MIN_PART_SIZE`]) instead of [`MULTIPART_THRESHOLD`] and [`PART_SIZE`]; lets tests reach
    /// multipart uploads with small objects.
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    /// How `spec` encodes records.
    pub fn encoding(spec: &S3Sink) -> Encoding {
        match spec.format {
            S3Format::Ndjson => Encoding::Ndjson,
            S3Format::Raw => Encoding::Raw,
        }
    }

    async fn client(&mut self) -> Client {
        if let Some(c) = &self.client {
            return c.clone();
        }
        // The endpoint goes on the S3 client below, with path-style addressing.
        let target = AwsTarget {
            region: self.spec.region.clone(),
            endpoint: None,
            role_arn: None,
        };
        let shared = sdk_config(&target, &self.options).await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &self.spec.endpoint {
            // S3-compatible stores: path-style addressing, and checksums only where S3 requires
            // them (not every store accepts the SDK's trailing checksums).
            config = config
                .endpoint_url(endpoint)
                .force_path_style(true)
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                );
        }
        let client = Client::from_conf(config.build());
        self.client = Some(client.clone());
        client
    }

    /// The objects of `batch`: one per (shard, prefix), keyed by the sequence range it holds.
    fn objects(&self, batch: &Batch) -> Result<Vec<Object>, SinkError> {
        let parts = batch.parts();
        if parts.len() != batch.len() {
            return Err(SinkError::Config(
                "sink.s3: the batch carries no partitions".into(),
            ));
        }
        let mut groups: Vec<(&PartitionKey, Vec<usize>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (i, part) in parts.iter().enumerate() {
            let g = *index.entry(&part.key).or_insert_with(|| {
                groups.push((&part.key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        let ext = match (self.spec.format, self.spec.compression) {
            (S3Format::Ndjson, S3Compression::Gzip) => "ndjson.gz",
            (S3Format::Ndjson, S3Compression::None) => "ndjson",
            (S3Format::Raw, S3Compression::Gzip) => "txt.gz",
            (S3Format::Raw, S3Compression::None) => "txt",
        };
        Ok(groups
            .into_iter()
            .filter_map(|(key, items)| {
                let first = &parts[*items.first()?];
                let last = &parts[*items.last()?];
                let key = format!(
                    "{}{}-{}-{}-{}.{ext}",
                    key.prefix,
                    first.stream,
                    key.shard,
                    position(&first.position),
                    position(&last.position)
                );
                Some(Object { key, items })
            })
            .collect())
    }

    /// The body of `object`, compressed as the spec asks.
    fn body(&self, batch: &Batch, object: &Object) -> Result<Vec<u8>, SinkError> {
        let size: usize = object.items.iter().map(|&i| batch.item(i).len()).sum();
        match self.spec.compression {
            S3Compression::None => {
                let mut body = Vec::with_capacity(size);
                for &i in &object.items {
                    body.extend_from_slice(batch.item(i));
                }
                Ok(body)
            }
            S3Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(size / 4),
                    flate2::Compression::default(),
                );
                for &i in &object.items {
                    gz.write_all(batch.item(i))
                        .map_err(|e| SinkError::io("gzip", e))?;
                }
                gz.finish().map_err(|e| SinkError::io("gzip", e))
            }
        }
    }
}

/// A position as it appears in object keys: the sequence number, then `_<sub>` for a KPL user
/// record.
fn position(p: &Position) -> String {
    match p.sub_sequence {
        Some(sub) => format!("{}_{sub}", p.sequence),
        None => p.sequence.to_string(),
    }
}

impl Destination for S3Destination {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            let objects = self.objects(batch)?;
            let client = self.client().await;
            let this = &*self;
            futures::stream::iter(objects)
                .map(|object| {
                    let client = client.clone();
                    async move {
                        let body = this.body(batch, &object)?;
                        this.upload(&client, &object.key, body).await
                    }
                })
                .buffer_unordered(UPLOAD_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            Ok(())
        })
    }
}

impl S3Destination {
    async fn upload(&self, client: &Client, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        if body.len() >= self.multipart_threshold {
            return self.upload_parts(client, key, body).await;
        }
        let mut put = client
            .put_object()
            .bucket(&self.spec.bucket)
            .key(key)
            .content_type(self.content_type());
        if self.spec.compression == S3Compression::Gzip {
            put = put.content_encoding("gzip");
        }
        put.body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify("PutObject", e))?;
        Ok(())
    }

    fn content_type(&self) -> &'static str {
        match self.spec.format {
            S3Format::Ndjson => "application/x-ndjson",
            S3Format::Raw => "application/octet-stream",
        }
    }

    /// A multipart upload; aborted (best effort) when a part fails, so no parts are left behind.
    async fn upload_parts(
        &self,
        client: &Client,
        key: &str,
        body: Vec<u8>,
    ) -> Result<(), SinkError> {
        let bucket = &self.spec.bucket;
        let mut create = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(self.content_type());
        if self.spec.compression == S3Compression::Gzip {
            create = create.content_encoding("gzip");
        }
        let created = create
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", e))?;
        let Some(upload_id) = created.upload_id() else {
            return Err(SinkError::S3 {
                operation: "CreateMultipartUpload",
                failure: S3Failure::Server,
                message: "no UploadId in the response".into(),
            });
        };
        let result = async {
            let mut parts = Vec::new();
            for (n, chunk) in body.chunks(self.part_size).enumerate() {
                let number = i32::try_from(n + 1).unwrap_or(i32::MAX);
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| classify("UploadPart", e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("CompleteMultipartUpload", e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let abort = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = abort {
                tracing::warn!(key, error = %DisplayErrorContext(&e), "cannot abort a failed multipart upload");
            }
        }
        result
    }
}

/// Maps an SDK error to [`SinkError::S3`].
fn classify<E>(operation: &'static str, e: SdkError<E>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = match &e {
        SdkError::ConstructionFailure(_) => S3Failure::Build,
        SdkError::TimeoutError(_) => S3Failure::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => S3Failure::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => S3Failure::Dispatch,
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            match (status, e.code()) {
                (_, Some("NoSuchBucket")) => S3Failure::NoSuchBucket,
                (_, Some("SlowDown" | "Throttling" | "RequestLimitExceeded")) | (429, _) => {
                    S3Failure::Throttled
                }
                (403, _) => S3Failure::AccessDenied,
                (s, _) if s >= 500 => S3Failure::Server,
                _ => S3Failure::Client,
            }
        }
        _ => S3Failure::Dispatch,
    };
    SinkError::S3 {
        operation,
        failure,
        message: DisplayErrorContext(&e).to_string(),
    }
}

#[cfg(test)]
mod tests;
