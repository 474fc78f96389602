//! The standalone `kinesis-ingester` refuses a configuration it cannot run at start-up: it exits 1
//! with one line naming the field, before any Kinesis call, instead of retrying forever.

#[macro_use]
mod common;

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result};
use common::*;

/// A spec for `kinesis-ingester run`: `stream` and `sink` are YAML flow maps.
fn spec(stream: &str, sink: &str) -> String {
    format!(
        "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: t}}\nspec:\n  stream: {stream}\n  sink: {sink}\n"
    )
}

/// Runs the binary on `yaml` without a region in the environment and with instance metadata off,
/// and returns its exit code and stderr. Nothing listens on the endpoint: the process must stop
/// before calling it.
async fn run(dir: &Path, yaml: &str) -> Result<(Option<i32>, String)> {
    let config = dir.join("ingester.yaml");
    std::fs::write(&config, yaml)?;
    let mut cmd = binary(&config, &dir.join("checkpoints"), free_port()?);
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .stderr(Stdio::piped());
    let child = cmd.spawn()?;
    // A deadline, not a timing claim: before the fix the process retried for ever.
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the ingester kept running: a static configuration error must stop it")??;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    ))
}

/// Asserts exit 1 and exactly one error, which names `field`.
fn assert_refused(case: &str, (code, stderr): (Option<i32>, String), field: &str) {
    assert_eq!(code, Some(1), "{case}: exit code; stderr:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{case}: one error; stderr:\n{stderr}");
    // The error is the last thing printed; a spec with invalid fields lists one per line.
    let error = &stderr[stderr.find("error:").unwrap_or_default()..];
    assert!(
        error.contains(field),
        "{case}: the error names {field}:\n{error}"
    );
    assert!(
        !stderr.contains("cannot list shards"),
        "{case}: no Kinesis call was tried:\n{stderr}"
    );
}

#[tokio::test]
async fn static_configuration_errors_exit_1_naming_the_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let endpoint = "http://127.0.0.1:9";
    let stream = format!("{{name: s, region: us-east-1, endpoint: '{endpoint}'}}");
    let missing_dir = dir.path().join("missing").join("out.ndjson");
    let a_directory = dir.path().join("a-directory");
    std::fs::create_dir(&a_directory)?;

    let cases = [
        (
            "file sink in a directory that does not exist",
            spec(
                &stream,
                &format!("{{file: {{path: '{}'}}}}", missing_dir.display()),
            ),
            "spec.sink.file.path",
        ),
        (
            "file sink path that is a directory",
            spec(
                &stream,
                &format!("{{file: {{path: '{}'}}}}", a_directory.display()),
            ),
            "spec.sink.file.path",
        ),
        (
            "dead-letter file in a directory that does not exist",
            spec(
                &stream,
                &format!(
                    "{{stdout: {{}}, deadLetterPath: '{}'}}",
                    missing_dir.display()
                ),
            ),
            "spec.sink.deadLetterPath",
        ),
        (
            "no region anywhere",
            spec(
                &format!("{{name: s, endpoint: '{endpoint}'}}"),
                "{stdout: {}}",
            ),
            "spec.stream.region",
        ),
        (
            "endpoint without a scheme",
            spec(
                "{name: s, region: us-east-1, endpoint: '127.0.0.1:9'}",
                "{stdout: {}}",
            ),
            "spec.stream.endpoint",
        ),
    ];
    for (case, yaml, field) in cases {
        assert_refused(case, run(dir.path(), &yaml).await?, field);
    }

    // Control: a writable path and a region pass the checks and the process runs (it is then
    // stopped by SIGTERM), so the cases above fail for their own reason.
    let good = dir.path().join("out.ndjson");
    let config = dir.path().join("good.yaml");
    std::fs::write(
        &config,
        spec(
            &stream,
            &format!("{{file: {{path: '{}'}}}}", good.display()),
        ),
    )?;
    let port = free_port()?;
    let mut child = binary(&config, &dir.path().join("checkpoints"), port).spawn()?;
    wait_until(
        "the metrics endpoint answers",
        Duration::from_secs(60),
        || async move { metrics(port).await.map(Some) },
    )
    .await?;
    assert!(good.exists(), "the start-up check created the sink file");
    let pid = child.id().context("child pid")?;
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "a runnable spec exits 0 on SIGTERM");
    Ok(())
}
