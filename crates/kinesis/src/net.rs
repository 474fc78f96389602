//! The outbound network of the AWS SDK clients (`spec.network`): a forward proxy and extra
//! trusted certificate authorities. The ingester builds one [`Network`] at start-up and gives it
//! to every client it builds; its HTTP clients (sinks, transform) apply the same settings.

use std::sync::Arc;

use aws_smithy_http_client::{
    proxy::ProxyConfig,
    tls::{TlsContext, TrustStore},
};

/// A forward proxy for every request (`spec.network.proxy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// e.g. `http://proxy.corp.example:3128`.
    pub url: String,
    /// Hosts reached without the proxy, in `NO_PROXY` syntax.
    pub no_proxy: Vec<String>,
}

/// Outbound settings: a proxy (else `HTTPS_PROXY` and `NO_PROXY` from the environment apply
/// to HTTPS requests) and CA certificates trusted besides the platform's roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// The proxy every request goes through, when set.
    pub proxy: Option<Proxy>,
    /// PEM certificates (already checked to parse) added to the platform's roots.
    pub ca_pem: Option<Arc<[u8]>>,
}

/// A setting the SDK's client cannot use.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The proxy URL was refused.
    #[error("spec.network.proxy.url: {0}")]
    Proxy(String),
    /// The CA bundle was refused by the TLS stack.
    #[error("spec.network.caBundle: {0}")]
    Ca(String),
}

impl Network {
    /// The SDK's proxy settings: `spec.network.proxy` for every request, else `HTTPS_PROXY`
    /// (or `https_proxy`) and `NO_PROXY` for HTTPS requests, else none.
    pub fn proxy_config(&self) -> Result<ProxyConfig, NetworkError> {
        if let Some(p) = &self.proxy {
            let config =
                ProxyConfig::all(p.url.as_str()).map_err(|e| NetworkError::Proxy(e.to_string()))?;
            return Ok(if p.no_proxy.is_empty() {
                config
            } else {
                config.no_proxy(p.no_proxy.join(","))
            });
        }
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let Some(url) = var(["HTTPS_PROXY", "https_proxy"]) else {
            return Ok(ProxyConfig::disabled());
        };
        let config = ProxyConfig::https(url.as_str())
            .map_err(|e| NetworkError::Proxy(format!("HTTPS_PROXY {url:?}: {e}")))?;
        Ok(match var(["NO_PROXY", "no_proxy"]) {
            Some(no) => config.no_proxy(no),
            None => config,
        })
    }

    /// The SDK's TLS settings: the platform's roots, plus the CA bundle.
    pub fn tls_context(&self) -> Result<TlsContext, NetworkError> {
        let mut store = TrustStore::default();
        if let Some(pem) = &self.ca_pem {
            store = store.with_pem_certificate(pem.to_vec());
        }
        TlsContext::builder()
            .with_trust_store(store)
            .build()
            .map_err(|e| NetworkError::Ca(e.to_string()))
    }
}

/// What to add to a TLS error whose cause is an untrusted certificate, so the log says what to
/// do; empty for any other error. `error` is the error's text with its sources.
pub fn tls_hint(error: &str) -> &'static str {
    if error.contains("UnknownIssuer") || error.contains("invalid peer certificate") {
        "; the server's certificate is not signed by a CA this process trusts: add the CA that \
         signed it (or your TLS-inspecting proxy's) to spec.network.caBundle"
    } else {
        ""
    }
}
