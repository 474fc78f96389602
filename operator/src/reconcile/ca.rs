//! The worker pod's read-only volume of `network.caBundle`: the ConfigMap's or Secret's key,
//! as `ca.pem` under [`CA_BUNDLE_MOUNT_PATH`]. The kubelet reads the object, so the worker's
//! ServiceAccount needs no right on ConfigMaps or Secrets.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use kinesis_ingester_api::{CaBundleSpec, KinesisIngester, bounds::CA_BUNDLE_MOUNT_PATH};

/// Name of the volume.
pub const CA_VOLUME: &str = "ca-bundle";

fn bundle(ki: &KinesisIngester) -> Option<&CaBundleSpec> {
    ki.spec.network.as_ref()?.ca_bundle.as_ref()
}

/// The volume, when the bundle is a ConfigMap's or Secret's key (a `path` is the standalone's).
pub fn volume(ki: &KinesisIngester) -> Option<Volume> {
    let ca = bundle(ki)?;
    let item = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_owned(),
            path: "ca.pem".into(),
            ..Default::default()
        }])
    };
    let mut volume = Volume {
        name: CA_VOLUME.into(),
        ..Default::default()
    };
    if let Some(c) = &ca.config_map {
        volume.config_map = Some(ConfigMapVolumeSource {
            name: c.name.clone(),
            items: item(&c.key),
            ..Default::default()
        });
    } else if let Some(s) = &ca.secret {
        volume.secret = Some(SecretVolumeSource {
            secret_name: Some(s.name.clone()),
            items: item(&s.key),
            ..Default::default()
        });
    } else {
        return None;
    }
    Some(volume)
}

/// Its read-only mount where the ingester reads the bundle.
pub fn mount(ki: &KinesisIngester) -> Option<VolumeMount> {
    volume(ki).map(|_| VolumeMount {
        name: CA_VOLUME.into(),
        mount_path: CA_BUNDLE_MOUNT_PATH.into(),
        read_only: Some(true),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingester(ca: serde_json::Value) -> KinesisIngester {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u1"},
            "spec": {"stream": {"name": "s"}, "sink": {"stdout": {}}, "network": {"caBundle": ca}},
        }))
        .expect("a valid ingester")
    }

    #[test]
    fn a_config_map_or_secret_key_is_mounted_read_only_as_ca_pem_and_a_path_is_not() {
        let cm = ingester(serde_json::json!({"configMap": {"name": "corp-ca", "key": "ca.crt"}}));
        let v = volume(&cm).expect("a volume");
        let source = v.config_map.expect("a ConfigMap volume");
        assert_eq!(source.name, "corp-ca");
        let items = source.items.expect("one item");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("ca.crt", "ca.pem")
        );
        let m = mount(&cm).expect("a mount");
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            (CA_BUNDLE_MOUNT_PATH, Some(true))
        );

        let secret = ingester(serde_json::json!({"secret": {"name": "corp-ca", "key": "bundle"}}));
        let s = volume(&secret)
            .and_then(|v| v.secret)
            .expect("a Secret volume");
        assert_eq!(s.secret_name.as_deref(), Some("corp-ca"));

        let path = ingester(serde_json::json!({"path": "/etc/ssl/corp.pem"}));
        assert_eq!(volume(&path), None);
        assert_eq!(mount(&path), None);
    }
}
