//! Start-up of a fleet worker: find its KinesisIngester and its KinesisWorker, and take the worker over with a new incarnation.

use std::{future::Future, path::Path, time::Duration};

use kinesis_ingester_api::{
    Holder, KinesisIngester, KinesisWorker, KinesisWorkerStatus, bounds::SCRATCH_MOUNT_PATH,
};
use kube::{Api, Client, api::PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{FleetError, FleetOptions};
use kinesis_client::backoff::Backoff;

/// A worker that took its object over.
pub struct Started {
    /// The Kubernetes client.
    pub client: Client,
    /// The ingester: its spec is the configuration.
    pub ingester: KinesisIngester,
    /// The worker object as the takeover wrote it (its `status.shards` are the checkpoints).
    pub worker: KinesisWorker,
    /// This process.
    pub holder: Holder,
    /// When the takeover write started: the first successful write.
    pub written_at: Instant,
    /// Whether a previous holder on another pod may still have been running: the worker then
    /// reads nothing until its next write succeeds.
    pub waited_for_twin: bool,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("holder", &self.holder)
            .field("waited_for_twin", &self.waited_for_twin)
            .finish_non_exhaustive()
    }
}

/// Runs `attempt` until it returns a value, waiting with a capped backoff and logging what it
/// waits for; `None` if `shutdown` fires first.
async fn wait_for<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return None,
            r = attempt() => r,
        };
        match result {
            Ok(v) => return Some(v),
            Err(reason) => {
                let delay = backoff.next_delay();
                warn!(%reason, ?delay, "waiting for {what}");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

fn random_incarnation() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Connects to the API, reads the ingester and this worker's object (waiting for the operator
/// to create them), and takes the object over. `None` if `shutdown` fires first.
pub async fn connect(
    options: &FleetOptions,
    shutdown: &CancellationToken,
) -> Result<Option<Started>, FleetError> {
    options.validate()?;
    let client = Client::try_default().await.map_err(FleetError::Client)?;
    let ingesters: Api<KinesisIngester> = Api::namespaced(client.clone(), &options.namespace);
    let workers: Api<KinesisWorker> = Api::namespaced(client.clone(), &options.namespace);
    let (ns, name, pod) = (&options.namespace, &options.ingester, &options.pod_name);

    // The ingester and the worker must belong to the same incarnation of the ingester.
    let what =
        format!("KinesisIngester {ns}/{name} and KinesisWorker {ns}/{pod} of the same ingester");
    let Some((ingester, mut worker)) = wait_for(&what, shutdown, || async {
        let ingester = ingesters.get(name).await.map_err(|e| format!("KinesisIngester {name}: {e}"))?;
        let worker = workers.get(pod).await.map_err(|e| format!("KinesisWorker {pod}: {e}"))?;
        let uid = ingester.metadata.uid.as_deref().unwrap_or_default();
        if uid != worker.spec.ingester_uid {
            return Err(format!("the worker belongs to ingester uid {:?}, the ingester's uid is {uid:?} (a stale object of an earlier incarnation)", worker.spec.ingester_uid));
        }
        Ok((ingester, worker))
    })
    .await
    else {
        return Ok(None);
    };
    ingester.validate_fleet().map_err(|e| FleetError::Spec {
        name: name.clone(),
        message: e.to_string(),
    })?;
    let ingester = relocate(ingester, &options.scratch_dir);
    ingester.start_at().map_err(|message| FleetError::Spec {
        name: name.clone(),
        message,
    })?;

    let holder = Holder {
        pod_uid: options.pod_uid.clone(),
        incarnation: random_incarnation(),
    };
    // Take over: a new incarnation, written with the object's resourceVersion. Every later
    // write of an older process of this pod name then fails with 409 and that process stops.
    let (previous, written_at) = loop {
        let previous = worker.status.clone().unwrap_or_default();
        let mut object = worker.clone();
        object.status = Some(KinesisWorkerStatus {
            holder: Some(holder.clone()),
            renew_time: Some(jiff::Timestamp::now().to_string()),
            stopped: false,
            shards: previous.shards.clone(),
            shards_held: previous.shards_held,
        });
        let started = Instant::now();
        let pp = PostParams::default();
        let written = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            r = workers.replace_status(pod, &pp, &object) => r,
        };
        match written {
            Ok(stored) => {
                worker = stored;
                break (previous, started);
            }
            Err(e) => {
                let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
                if !conflict {
                    warn!(error = %e, "cannot take the worker over yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(None),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                let Some(fresh) =
                    wait_for(&format!("KinesisWorker {ns}/{pod}"), shutdown, || async {
                        workers.get(pod).await.map_err(|e| e.to_string())
                    })
                    .await
                else {
                    return Ok(None);
                };
                worker = fresh;
            }
        }
    };
    let twin = previous
        .holder
        .as_ref()
        .is_some_and(|h| h.pod_uid != holder.pod_uid && !previous.stopped);
    info!(
        worker = %pod,
        incarnation = %holder.incarnation,
        checkpoints = previous.shards.len(),
        "took the worker over"
    );
    if twin {
        warn!(wait = ?options.timings.self_fence_after(), "the previous holder ran in another pod and did not stop cleanly; waiting until it must have self-fenced");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(options.timings.self_fence_after()) => {}
        }
    }
    Ok(Some(Started {
        client,
        ingester,
        worker,
        holder,
        written_at,
        waited_for_twin: twin,
    }))
}

/// The ingester with its files (validated to be below the scratch mount) moved to where the
/// scratch volume is on this machine: unchanged in a pod, another directory outside one.
pub fn relocate(mut ingester: KinesisIngester, scratch_dir: &Path) -> KinesisIngester {
    let moved = |path: &mut String| {
        if let Ok(rest) = Path::new(path.as_str()).strip_prefix(SCRATCH_MOUNT_PATH) {
            *path = scratch_dir.join(rest).to_string_lossy().into_owned();
        }
    };
    for sink in ingester.spec.sink_specs_mut() {
        if let Some(file) = sink.file.as_mut() {
            moved(&mut file.path);
        }
        if let Some(path) = sink.dead_letter_path.as_mut() {
            moved(path);
        }
    }
    ingester
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_move_to_where_the_scratch_volume_is() {
        let ki: KinesisIngester = serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "orders"},
            "spec": {
                "stream": {"name": "s"},
                "sink": {
                    "file": {"path": "/var/lib/kinesis-ingester/out/o.ndjson"},
                    "deadLetterPath": "/var/lib/kinesis-ingester/dead.ndjson",
                },
                "workers": {"scratch": {"size": "1Gi"}},
            },
        }))
        .unwrap();
        let in_pod = relocate(ki.clone(), Path::new(SCRATCH_MOUNT_PATH));
        assert_eq!(in_pod, ki, "unchanged in a pod");
        let local = relocate(ki, Path::new("/tmp/w0"));
        let sink = local.spec.sink.expect("the shorthand");
        assert_eq!(sink.file.unwrap().path, "/tmp/w0/out/o.ndjson");
        assert_eq!(
            sink.dead_letter_path.as_deref(),
            Some("/tmp/w0/dead.ndjson")
        );
    }
}
