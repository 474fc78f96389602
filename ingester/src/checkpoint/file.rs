//! A checkpoint store in a local directory: one JSON file per shard, replaced atomically.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use futures::{FutureExt, future::BoxFuture};

use super::{CheckpointError, CheckpointStore, ShardCheckpoint};

/// Checkpoints in `<dir>/<stream>/<shard id>.json`.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store for `stream` under `dir`; the directory is created if missing.
    pub fn open(dir: &Path, stream: &str) -> Result<Self, CheckpointError> {
        let dir = dir.join(stream);
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl CheckpointStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<HashMap<String, ShardCheckpoint>, CheckpointError>> {
        async move {
            let mut out = HashMap::new();
            let mut entries = tokio::fs::read_dir(&self.dir)
                .await
                .map_err(Self::io(&self.dir))?;
            while let Some(entry) = entries.next_entry().await.map_err(Self::io(&self.dir))? {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let text = tokio::fs::read(&path).await.map_err(Self::io(&path))?;
                let cp: ShardCheckpoint =
                    serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                out.insert(cp.shard_id.clone(), cp);
            }
            Ok(out)
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        checkpoint: &'a ShardCheckpoint,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        async move {
            let path = self.dir.join(format!("{}.json", checkpoint.shard_id));
            let tmp = path.with_extension("json.tmp");
            let body =
                serde_json::to_vec_pretty(checkpoint).map_err(|e| CheckpointError::Corrupt {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            // Write, fsync, then rename: a crash leaves the old or the new checkpoint, never half.
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(Self::io(&tmp))?;
            let mut file = file;
            tokio::io::AsyncWriteExt::write_all(&mut file, &body)
                .await
                .map_err(Self::io(&tmp))?;
            file.sync_all().await.map_err(Self::io(&tmp))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(Self::io(&path))?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_ingester_api::sequence::Position;

    #[tokio::test]
    async fn saved_checkpoints_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), "orders").unwrap();
        let cp = ShardCheckpoint {
            shard_id: "shardId-000000000001".into(),
            position: Some(Position {
                sequence: "49590338271490256608559692538361571095921575989136588898"
                    .parse()
                    .unwrap(),
                sub_sequence: Some(3),
            }),
            finished: false,
        };
        store.save(&cp).await.unwrap();
        let done = ShardCheckpoint {
            shard_id: "shardId-000000000000".into(),
            position: None,
            finished: true,
        };
        store.save(&done).await.unwrap();
        let reopened = FileStore::open(dir.path(), "orders").unwrap();
        let all = reopened.load().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&cp.shard_id], cp);
        assert_eq!(all[&done.shard_id], done);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), "s").unwrap();
        std::fs::write(dir.path().join("s/shardId-1.json"), b"{not json").unwrap();
        let err = store.load().await.unwrap_err().to_string();
        assert!(
            err.contains("shardId-1.json") && err.contains("corrupt"),
            "{err}"
        );
    }
}
