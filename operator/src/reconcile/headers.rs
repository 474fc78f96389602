//! The worker pod's read-only volume of the `sink.http.headersFrom` Secret: the kubelet reads the Secret, so neither the operator nor the worker's ServiceAccount needs any right on Secrets.

use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use kinesis_ingester_api::{HeadersFrom, KinesisIngester, bounds::HEADERS_MOUNT_PATH};

/// Name of the volume.
pub const HEADERS_VOLUME: &str = "http-headers";

fn headers_from(ki: &KinesisIngester) -> Option<&HeadersFrom> {
    // Admission allows one sink with `headersFrom`.
    ki.spec
        .outputs()
        .into_iter()
        .find_map(|o| o.sink.http.as_ref()?.headers_from.as_ref())
}

/// The Secret volume, with only the listed keys when `keys` is set.
pub fn volume(ki: &KinesisIngester) -> Option<Volume> {
    let from = headers_from(ki)?;
    let items = from.keys.iter().map(|k| KeyToPath {
        key: k.clone(),
        path: k.clone(),
        ..Default::default()
    });
    Some(Volume {
        name: HEADERS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(from.secret_name.clone()),
            items: (!from.keys.is_empty()).then(|| items.collect()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Its read-only mount where the ingester reads headers ([`HEADERS_MOUNT_PATH`]).
pub fn mount(ki: &KinesisIngester) -> Option<VolumeMount> {
    headers_from(ki).map(|_| VolumeMount {
        name: HEADERS_VOLUME.into(),
        mount_path: HEADERS_MOUNT_PATH.into(),
        read_only: Some(true),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::workload::{Names, WorkloadSettings, role, stateful_set};

    fn ingester(sink: serde_json::Value) -> KinesisIngester {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u1"},
            "spec": {"stream": {"name": "s"}, "sink": sink},
        }))
        .expect("a valid ingester")
    }

    #[test]
    fn the_secret_is_mounted_read_only_and_the_worker_role_gets_no_secret_rights() {
        let ki = ingester(serde_json::json!({"http": {
            "url": "https://sink.example/ingest",
            "headersFrom": {"secretName": "sink-auth", "keys": ["Authorization"]},
        }}));
        let names = Names::of(&ki, "ns", "orders");
        let owner = kube::Resource::controller_owner_ref(&ki, &()).expect("owner");
        let settings = WorkloadSettings {
            default_image: "i".into(),
            worker_args: vec![],
            grace_period_seconds: 1,
        };
        let pod = stateful_set(&ki, &names, &owner, 1, &settings)
            .spec
            .template
            .spec
            .expect("pod");
        let volumes = pod.volumes.expect("volumes");
        let secret = volumes[0].secret.clone().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("sink-auth"));
        let items = secret.items.expect("only the listed keys");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("Authorization", "Authorization")
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        assert_eq!(mounts[0].mount_path, HEADERS_MOUNT_PATH);
        assert_eq!(mounts[0].read_only, Some(true));
        let rules = role(&names, &owner).rules.expect("rules");
        assert!(
            rules
                .iter()
                .all(|r| r.resources.iter().flatten().all(|res| res != "secrets")),
            "the worker Role must not read Secrets"
        );
        // Without headersFrom the pod has no volume at all.
        let plain = ingester(serde_json::json!({"http": {"url": "https://sink.example/ingest"}}));
        assert!(volume(&plain).is_none() && mount(&plain).is_none());
    }
}
