//! `spec.network` at start-up: the proxy, and the CA bundle read, checked and kept, for every
//! client the ingester builds (the AWS SDK's, and the HTTP sinks' and transform's).

use std::{path::PathBuf, sync::Arc};

use kinesis_client::net::{Network, Proxy};
use kinesis_ingester_api::{KinesisIngesterSpec, MAX_CA_BUNDLE_BYTES, bounds};

/// A `spec.network` setting that cannot be used, naming the field and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct NetError {
    /// e.g. `spec.network.caBundle.path`.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// The network `spec` asks for: its proxy, and its CA bundle read from the file (`path`) or
/// from where a worker pod mounts the ConfigMap or Secret.
pub fn load(spec: &KinesisIngesterSpec) -> Result<Network, NetError> {
    let Some(net) = &spec.network else {
        return Ok(Network::default());
    };
    let proxy = net.proxy.as_ref().map(|p| Proxy {
        url: p.url.clone(),
        no_proxy: p.no_proxy.clone(),
    });
    let ca_pem = match &net.ca_bundle {
        None => None,
        Some(ca) => {
            let (field, path) = match &ca.path {
                Some(path) => ("spec.network.caBundle.path", PathBuf::from(path)),
                None => {
                    let dir = std::env::var_os(bounds::CA_BUNDLE_DIR_ENV).map_or_else(
                        || PathBuf::from(bounds::CA_BUNDLE_MOUNT_PATH),
                        PathBuf::from,
                    );
                    ("spec.network.caBundle", dir.join("ca.pem"))
                }
            };
            Some(read_bundle(field, &path)?)
        }
    };
    let network = Network { proxy, ca_pem };
    // The SDK's client takes the same settings; refuse them here, not at the first call.
    network.proxy_config().map_err(|e| NetError {
        field: "spec.network.proxy.url",
        message: e.to_string(),
    })?;
    Ok(network)
}

/// The PEM bundle at `path`: at most 1 MiB, holding at least one certificate.
fn read_bundle(field: &'static str, path: &std::path::Path) -> Result<Arc<[u8]>, NetError> {
    let fail = |message: String| NetError { field, message };
    let bytes = std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            let mut buf = Vec::new();
            f.take(MAX_CA_BUNDLE_BYTES as u64 + 1).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .map_err(|e| {
            fail(format!(
                "cannot read the CA bundle {}: {e}; in a fleet the worker pods mount the ConfigMap or Secret there (check that it and its key exist), standalone set caBundle.path to a PEM file",
                path.display()
            ))
        })?;
    if bytes.len() > MAX_CA_BUNDLE_BYTES {
        return Err(fail(format!(
            "the CA bundle {} is over {MAX_CA_BUNDLE_BYTES} bytes",
            path.display()
        )));
    }
    match reqwest::Certificate::from_pem_bundle(&bytes) {
        Ok(certs) if !certs.is_empty() => Ok(bytes.into()),
        Ok(_) => Err(fail(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))),
        Err(e) => Err(fail(format!(
            "{} is not a PEM certificate bundle: {e}",
            path.display()
        ))),
    }
}

/// An HTTP client builder on the process's TLS stack, through `network`'s proxy (else the
/// environment's `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`) and trusting its CAs besides the
/// platform's roots.
pub fn http_client(network: &Network) -> Result<reqwest::ClientBuilder, String> {
    // Already installed (by main or an earlier client) is fine: that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().tls_backend_rustls();
    if let Some(p) = &network.proxy {
        let proxy = reqwest::Proxy::all(p.url.as_str())
            .map_err(|e| format!("spec.network.proxy.url: {e}"))?
            .no_proxy(reqwest::NoProxy::from_string(&p.no_proxy.join(",")));
        builder = builder.proxy(proxy);
    }
    if let Some(pem) = &network.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("spec.network.caBundle: {e}"))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}
