//! The stdout destination: writes each batch to standard output (or any blocking writer) off the async threads, and flushes it.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use futures::{FutureExt, future::BoxFuture};

use super::{Batch, Destination, SinkError};

/// Writes batches to a blocking writer on Tokio's blocking pool, flushing after each; standard
/// output in production. (The body is copied once per batch for the hand-off.)
#[derive(Debug)]
pub struct WriterDestination<W> {
    writer: Arc<Mutex<W>>,
    name: &'static str,
}

impl WriterDestination<std::io::Stdout> {
    /// Writes to the process's standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout(), "stdout")
    }
}

impl<W: Write + Send + 'static> WriterDestination<W> {
    /// Writes to `writer`; `name` appears in errors.
    pub fn new(writer: W, name: &'static str) -> Self {
        Self {
            writer: Arc::new(Mutex::new(writer)),
            name,
        }
    }

    /// The writer, e.g. to read what a test wrote.
    pub fn writer(&self) -> Arc<Mutex<W>> {
        self.writer.clone()
    }
}

impl<W: Write + Send + 'static> Destination for WriterDestination<W> {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        let (writer, body, name) = (self.writer.clone(), batch.body().to_vec(), self.name);
        async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut w = writer
                    .lock()
                    .map_err(|_| std::io::Error::other("writer lock poisoned"))?;
                w.write_all(&body)?;
                w.flush()
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
            written.map_err(|e| SinkError::io(name, e))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::sequence::Position;

    use super::*;
    use crate::{
        record::Chunk,
        sink::{BatchLimits, Batcher, ndjson::Encoding, ndjson::tests::record},
    };

    #[tokio::test]
    async fn writes_each_batch_whole_and_in_order() {
        let mut batcher = Batcher::new(
            BatchLimits {
                max_records: 2,
                max_bytes: 1 << 20,
                max_age: std::time::Duration::from_secs(1),
            },
            Encoding::Ndjson,
        );
        let chunk = Chunk {
            records: (1..5).map(|s| record("s", s, b"x")).collect(),
            shard_id: "s".into(),
            generation: 0,
            checkpoint: Position::whole("4".parse().expect("seq")),
        };
        batcher
            .push(chunk, tokio::time::Instant::now())
            .expect("push");
        let mut dest = WriterDestination::new(Vec::new(), "memory");
        let mut expected = Vec::new();
        while let Some(batch) = batcher.pop_ready() {
            dest.send(&batch).await.expect("send");
            expected.extend_from_slice(batch.body());
        }
        let written = dest.writer().lock().expect("lock").clone();
        assert_eq!(written, expected);
        assert_eq!(written.iter().filter(|&&b| b == b'\n').count(), 4);
    }
}
