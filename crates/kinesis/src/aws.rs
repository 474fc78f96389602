//! The AWS SDK configuration every client of the project is built from: one rustls + ring HTTPS stack, the default credential chain, a region, an endpoint override, and an optional role to assume.

use aws_config::SdkConfig;
use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use aws_smithy_http_client::{
    Connector,
    proxy::ProxyConfig,
    tls::{Provider, rustls_provider::CryptoMode},
};

/// Which region, endpoint and identity a client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// Region of every call; the default chain's (`AWS_REGION`, the profile, instance metadata)
    /// when `None`.
    pub region: Option<String>,
    /// Endpoint of every call of the service (an emulator, an S3-compatible store); AWS's when
    /// `None`. STS keeps its own (see [`ClientOptions::sts_endpoint`]).
    pub endpoint: Option<String>,
    /// A role the default chain's credentials assume through STS first (cross-account).
    pub role_arn: Option<String>,
}

/// Overrides of the default credential chain and STS endpoint, for tests.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// STS endpoint for role assumption (default: the regional endpoint).
    pub sts_endpoint: Option<String>,
    /// Base credentials instead of the default chain.
    pub credentials: Option<Credentials>,
    /// Proxy and extra CAs (`spec.network`).
    pub network: crate::net::Network,
}

/// The project's one HTTPS client for the AWS SDK: hyper over rustls with the ring provider,
/// with `HTTPS_PROXY` and `NO_PROXY` from the environment.
pub fn https_client() -> aws_sdk_kinesis::config::SharedHttpClient {
    https_client_with(&crate::net::Network::default())
}

/// [`https_client`] through `network`'s proxy and trusting its CAs. A setting the client
/// refuses (checked at start-up, so not expected) is logged and left out.
pub fn https_client_with(
    network: &crate::net::Network,
) -> aws_sdk_kinesis::config::SharedHttpClient {
    let tls = network
        .tls_context()
        .inspect_err(|e| tracing::error!(error = %e, "CA bundle left out"))
        .unwrap_or_default();
    let proxy = network
        .proxy_config()
        .inspect_err(|e| tracing::error!(error = %e, "proxy left out"))
        .unwrap_or_else(|_| ProxyConfig::disabled());
    // `Builder::build_https` takes no proxy: build each connector with it.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(proxy.clone())
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .tls_context(tls.clone())
            .build()
    })
}

/// The SDK configuration of `target`: the default credential chain (env, profile, IRSA, Pod
/// Identity, IMDS) or `options.credentials`, over [`https_client`], with the region and endpoint
/// applied. With `target.role_arn`, those credentials assume the role through STS first; STS
/// then uses `options.sts_endpoint` (or `AWS_ENDPOINT_URL_STS`, or the regional endpoint), never
/// `target.endpoint`.
pub async fn sdk_config(target: &AwsTarget, options: &ClientOptions) -> SdkConfig {
    let loader = |endpoint: Option<&str>| {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client_with(&options.network));
        if let Some(region) = target.region.clone() {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(creds) = options.credentials.clone() {
            loader = loader.credentials_provider(creds);
        }
        loader
    };
    let config = loader(target.endpoint.as_deref()).load().await;
    let Some(role) = &target.role_arn else {
        return config;
    };
    let sts = loader(options.sts_endpoint.as_deref()).load().await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("kinesis-operator")
        .configure(&sts)
        .build()
        .await;
    config
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    #[tokio::test]
    async fn the_config_carries_the_region_endpoint_and_given_credentials() {
        let target = AwsTarget {
            region: Some("eu-west-3".into()),
            endpoint: Some("http://127.0.0.1:4567".into()),
            role_arn: None,
        };
        let options = ClientOptions {
            sts_endpoint: None,
            credentials: Some(Credentials::from_keys("AKID", "secret", None)),
            ..Default::default()
        };
        let config = sdk_config(&target, &options).await;
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4567"));
        assert!(config.http_client().is_some());
        let creds = config
            .credentials_provider()
            .expect("a provider")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(creds.access_key_id(), "AKID");
    }
}
