//! Networks that are not open (`spec.network`): a forward proxy and a private CA for every
//! outbound connection of the ingester (Kinesis, STS, S3, the HTTP sinks and transform).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most bytes of a CA bundle.
pub const MAX_CA_BUNDLE_BYTES: usize = 1024 * 1024;

/// Outbound network settings of the ingester.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// A forward proxy for every outbound request: Kinesis, STS, S3, the HTTP sinks and the
    /// HTTP transform. Without it, `HTTPS_PROXY` and `NO_PROXY` from the environment apply to
    /// HTTPS requests (and, for the HTTP sinks and transform, `HTTP_PROXY` to plain HTTP ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,

    /// Certificate authorities trusted for every outbound TLS connection, besides the
    /// platform's roots: for a TLS-inspecting proxy, or endpoints signed by a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleSpec>,
}

/// A forward proxy (HTTPS goes through it with `CONNECT`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// The proxy's URL, e.g. `http://proxy.corp.example:3128`; user and password in the URL
    /// are sent as basic authentication.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s/]+/?$"))]
    pub url: String,

    /// Hosts reached without the proxy, as `NO_PROXY` lists them: a name (and its subdomains),
    /// `.suffix`, an IP address or CIDR range, or `*` for all; e.g. `169.254.169.254` for the
    /// instance metadata service and `.svc` for in-cluster sinks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub no_proxy: Vec<String>,
}

/// Where the CA bundle (PEM certificates) is: exactly one of `configMap`, `secret` (a fleet:
/// the worker pods mount it) or `path` (a file, for the standalone ingester).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.configMap), has(self.secret), has(self.path)].filter(x, x).size() == 1").message("network.caBundle: set exactly one of configMap, secret or path").reason(Reason::FieldValueInvalid))]
pub struct CaBundleSpec {
    /// A ConfigMap in the ingester's namespace and its key holding the PEM bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,

    /// A Secret in the ingester's namespace and its key holding the PEM bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,

    /// A PEM file on the machine (the standalone ingester).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: Option<String>,
}

/// One key of a ConfigMap or Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The object's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The key, e.g. `ca.crt`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}
