//! `spec.stream.roleArn`: the client assumes the role through STS before it calls Kinesis. STS is a small fake that records the AssumeRole call and hands out credentials; Kinesis is the emulator.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::{Router, extract::State, routing::post};
use kinesis_client::{
    api::{KinesisApi, StreamRef},
    sdk::{ClientOptions, SdkKinesis},
};
use kinesis_ingester_api::StreamSpec;

mod common;

const ASSUMED: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:kinesis-operator</AssumedRoleId>
      <Arn>arn:aws:sts::000000000000:assumed-role/reader/kinesis-operator</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>000000000000</AccessKeyId>
      <SecretAccessKey>assumed-secret</SecretAccessKey>
      <SessionToken>assumed-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;

#[tokio::test]
async fn a_role_arn_is_assumed_through_sts_before_kinesis_is_called() -> Result<()> {
    let kinesis = kinesis_testkit::kinesis_client()?;
    let stream = common::create_stream(&kinesis, 1).await?;
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route(
            "/",
            post(
                |State(calls): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                    calls.lock().expect("lock").push(body);
                    ([("content-type", "text/xml")], ASSUMED)
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sts = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let spec = StreamSpec {
        name: Some(stream.clone()),
        region: Some("us-east-1".into()),
        endpoint: Some(std::env::var("KINESIS_ENDPOINT")?),
        role_arn: Some("arn:aws:iam::000000000000:role/reader".into()),
        ..StreamSpec::default()
    };
    let base = aws_credential_types::Credentials::from_keys("base-key", "base-secret", None);
    let api = SdkKinesis::from_spec_with(
        &spec,
        ClientOptions {
            sts_endpoint: Some(sts),
            credentials: Some(base),
            ..Default::default()
        },
    )
    .await;
    let shards = api.list_shards(&StreamRef::Name(stream)).await?;
    assert_eq!(shards.len(), 1);
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(
        calls.len(),
        1,
        "one AssumeRole call, then cached credentials: {calls:?}"
    );
    assert!(calls[0].contains("Action=AssumeRole"), "{}", calls[0]);
    assert!(
        calls[0].contains("RoleArn=arn%3Aaws%3Aiam%3A%3A000000000000%3Arole%2Freader"),
        "{}",
        calls[0]
    );
    assert!(
        calls[0].contains("RoleSessionName=kinesis-operator"),
        "{}",
        calls[0]
    );
    Ok(())
}
