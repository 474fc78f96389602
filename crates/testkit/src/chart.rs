//! Renders the Helm chart in `charts/kinesis-operator` with `helm template`, so tests use the same RBAC and manifests that users install.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::rbac::v1::ClusterRole;

/// Release name the tests render the chart with.
pub const RELEASE: &str = "kinesis-operator";

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/kinesis-operator")
}

/// `helm`, from `$HELM` or the `PATH` (`tests/env/with-env.sh` puts the pinned one there).
pub fn helm() -> Command {
    Command::new(std::env::var_os("HELM").unwrap_or_else(|| "helm".into()))
}

/// Runs `cmd` and returns its standard output, or an error with its standard error.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is it installed and on PATH?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("the output is not UTF-8")
}

/// `helm template RELEASE chart --namespace namespace` with extra arguments (`-f`, `--set`,
/// `--show-only`), returning the rendered YAML.
pub fn template(namespace: &str, args: &[&str]) -> Result<String> {
    run(helm()
        .arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .args(args))
}

/// Splits a multi-document YAML stream into its non-empty documents.
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let doc: Option<serde_json::Value> = serde_saphyr::from_str(&current)
                .with_context(|| format!("parsing rendered YAML:\n{current}"))?;
            if let Some(doc) = doc.filter(|d| !d.is_null()) {
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    Ok(docs)
}

/// The operator's ClusterRole as the chart renders it for a cluster-wide install: the exact
/// permissions of the operator (leader election aside, which the chart grants in its own
/// namespace only).
pub fn chart_cluster_role() -> Result<ClusterRole> {
    let yaml = template(
        "kinesis-operator",
        &["--show-only", "templates/clusterrole.yaml"],
    )?;
    let mut docs = documents(&yaml)?;
    if docs.len() != 1 {
        bail!(
            "templates/clusterrole.yaml rendered {} documents, not 1",
            docs.len()
        );
    }
    serde_json::from_value(docs.remove(0)).context("the rendered ClusterRole does not parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_skips_empty_ones_and_keeps_order() {
        let docs = documents("---\n# only a comment\n---\na: 1\n---\nb: 2\n").expect("parses");
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
    }
}
