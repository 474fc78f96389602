//! The file destination: appends each batch to a local NDJSON file, creating it if missing, and by default syncs it to disk before the batch counts as delivered.

use std::path::{Path, PathBuf};

use futures::{FutureExt, future::BoxFuture};
use tokio::{fs::File, io::AsyncWriteExt};

use super::{Batch, Destination, SinkError};

/// Appends batches to a file.
///
/// The file is opened on the first batch and reopened after any write error, so a file that
/// was removed or rotated away is created again. A batch that failed half-way is written again
/// in full on retry: at-least-once, never less.
#[derive(Debug)]
pub struct FileDestination {
    path: PathBuf,
    file: Option<File>,
    sync: bool,
}

impl FileDestination {
    /// Appends to `path`. With `sync`, each batch is `fsync`ed (data only) before it is
    /// acknowledged, so a checkpoint never covers records a power loss could erase; without it,
    /// a batch counts as delivered once the operating system has it.
    pub fn new(path: impl Into<PathBuf>, sync: bool) -> Self {
        Self {
            path: path.into(),
            file: None,
            sync,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&mut self, body: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&self.path).await?),
        };
        file.write_all(body).await?;
        file.flush().await?;
        if self.sync {
            file.sync_data().await?;
        }
        Ok(())
    }
}

impl Destination for FileDestination {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            let result = self.write(batch.body()).await;
            result.map_err(|e| {
                self.file = None;
                SinkError::io(self.path.display().to_string(), e)
            })
        }
        .boxed()
    }
}

/// Opens `path` for appending, creating it if missing.
pub(super) async fn open_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        record::Chunk,
        sink::{
            batch::{BatchLimits, Batcher},
            ndjson::{Encoding, tests::record},
        },
    };

    fn batch(seqs: std::ops::Range<u64>) -> Batch {
        let mut b = Batcher::new(
            BatchLimits {
                max_records: 100,
                max_bytes: 1 << 20,
                max_age: std::time::Duration::from_secs(1),
            },
            Encoding::Ndjson,
        );
        let chunk = Chunk {
            records: seqs.map(|s| record("s", s, b"x")).collect(),
            shard_id: "s".into(),
            generation: 0,
            checkpoint: kinesis_ingester_api::sequence::Position::whole("1".parse().expect("seq")),
        };
        b.push(chunk, tokio::time::Instant::now()).expect("push");
        b.flush();
        b.pop_ready().expect("batch")
    }

    fn sequence_numbers(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["sequenceNumber"].as_str().expect("seq").to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn appends_exact_lines_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.ndjson");
        let first = batch(1..3);
        let mut dest = FileDestination::new(&path, true);
        dest.send(&first).await.expect("send");
        assert_eq!(std::fs::read(&path).expect("read"), first.body());
        drop(dest);

        let mut dest = FileDestination::new(&path, false);
        dest.send(&batch(3..4)).await.expect("send");
        assert_eq!(sequence_numbers(&path), ["1", "2", "3"]);

        // A failed open is retried on the next send, and creates the file again.
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("a directory where the file was");
        let mut fresh = FileDestination::new(&path, false);
        let err = fresh.send(&batch(5..6)).await.expect_err("a directory");
        assert_eq!(err.category(), "io");
        std::fs::remove_dir(&path).expect("rmdir");
        fresh.send(&batch(5..6)).await.expect("recreated");
        assert_eq!(sequence_numbers(&path), ["5"]);
    }
}
