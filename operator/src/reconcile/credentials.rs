//! `workers.awsCredentials`: static AWS keys from a Secret, as the worker container's
//! environment, resolved by the kubelet. The operator never reads the Secret, and the worker
//! Role gets no rights on Secrets.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use kinesis_ingester_api::{AWS_CREDENTIAL_KEYS, KinesisIngester};

/// The worker's credential variables, each from the Secret key of the same name; none without
/// `workers.awsCredentials`.
pub fn env(ki: &KinesisIngester) -> Vec<EnvVar> {
    let Some(credentials) = ki.spec.workers.aws_credentials.as_ref() else {
        return Vec::new();
    };
    AWS_CREDENTIAL_KEYS
        .iter()
        .map(|&(key, optional)| EnvVar {
            name: key.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: credentials.secret_name.clone(),
                    key: key.into(),
                    optional: optional.then_some(true),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::reconcile::workload::{Names, WorkloadSettings, role, stateful_set};

    fn ingester(workers: serde_json::Value) -> KinesisIngester {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u1"},
            "spec": {"stream": {"name": "s"}, "sink": {"stdout": {}}, "workers": workers},
        }))
        .expect("a valid ingester")
    }

    fn container_env(ki: &KinesisIngester) -> Vec<EnvVar> {
        let names = Names::of(ki, "ns", "orders");
        let settings = WorkloadSettings {
            default_image: "kinesis-ingester:test".into(),
            worker_args: Vec::new(),
            grace_period_seconds: 30,
        };
        let sts = stateful_set(ki, &names, &OwnerReference::default(), 1, &settings);
        let pod = sts.spec.template.spec.expect("pod");
        pod.containers[0].env.clone().unwrap_or_default()
    }

    #[test]
    fn the_keys_come_from_the_secret_through_the_kubelet() {
        let ki = ingester(serde_json::json!({"awsCredentials": {"secretName": "aws-keys"}}));
        let env = container_env(&ki);
        let from_secret: Vec<(&str, &str, &str, Option<bool>)> = env
            .iter()
            .filter_map(|e| {
                let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
                Some((e.name.as_str(), r.name.as_str(), r.key.as_str(), r.optional))
            })
            .collect();
        assert_eq!(
            from_secret,
            [
                ("AWS_ACCESS_KEY_ID", "aws-keys", "AWS_ACCESS_KEY_ID", None),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "aws-keys",
                    "AWS_SECRET_ACCESS_KEY",
                    None
                ),
                (
                    "AWS_SESSION_TOKEN",
                    "aws-keys",
                    "AWS_SESSION_TOKEN",
                    Some(true)
                ),
            ]
        );
        assert!(
            env.iter().all(|e| e.value.is_none()),
            "no key is copied into the StatefulSet"
        );
        // The worker's own Role still has no rights on Secrets.
        let names = Names::of(&ki, "ns", "orders");
        let rules = role(&names, &OwnerReference::default())
            .rules
            .unwrap_or_default();
        assert!(
            rules
                .iter()
                .all(|r| !r.resources.iter().flatten().any(|x| x == "secrets")),
            "{rules:?}"
        );
    }

    #[test]
    fn without_the_field_the_pod_has_only_its_own_identity() {
        let env = container_env(&ingester(serde_json::json!({})));
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["POD_NAME", "POD_UID", "POD_NAMESPACE"]);
    }
}
