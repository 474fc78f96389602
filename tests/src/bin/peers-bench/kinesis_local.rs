//! kinesis-local (tests/env/kinesis-local.sh) for the runs that need a real emulator: started in a state directory, stopped by the script.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A running kinesis-local.
pub struct KinesisLocal {
    script: PathBuf,
    state: PathBuf,
    pub endpoint: String,
}

impl KinesisLocal {
    pub async fn start(repo: &Path, state: &Path) -> Result<Self> {
        let script = repo.join("tests/env/kinesis-local.sh");
        let status = tokio::process::Command::new(&script)
            .arg("start")
            .arg(state)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kinesis-local did not start");
        let file = std::fs::read_to_string(state.join("kinesis.env"))?;
        let endpoint = file
            .split("KINESIS_ENDPOINT=")
            .nth(1)
            .context("kinesis.env")?
            .lines()
            .next()
            .context("kinesis.env")?
            .trim()
            .to_owned();
        Ok(Self {
            script,
            state: state.to_owned(),
            endpoint,
        })
    }

    pub async fn stop(self) {
        let _ = tokio::process::Command::new(&self.script)
            .arg("stop")
            .arg(&self.state)
            .status()
            .await;
    }
}
