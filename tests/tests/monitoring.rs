//! What on call sees: the Grafana dashboard and the PrometheusRule name metrics the binaries
//! really expose, the alert rules pass `promtool check rules` and fire on the failures they
//! describe (`promtool test rules`, tests/promtool/alerts_test.yaml), and `helm install` refuses
//! timings that contradict each other.

use std::{collections::BTreeSet, path::Path, process::Command};

use anyhow::{Context, Result};
use kinesis_testkit::chart::{self, chart_dir, documents, helm, run};
use serde_json::Value;

/// `promtool`, from `$PROMTOOL` (tests/env/with-env.sh sets the pinned one) or the `PATH`.
fn promtool() -> Command {
    Command::new(std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into()))
}

/// The rule groups of the chart's PrometheusRule with `args`, written where promtool reads them.
fn rule_file(dir: &Path, args: &[&str]) -> Result<Value> {
    let mut all = vec!["--set", "prometheusRule.enabled=true"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--show-only", "templates/prometheusrule.yaml"]);
    let docs = documents(&chart::template("monitoring", &all)?)?;
    let rule = docs.first().context("no PrometheusRule rendered")?;
    assert_eq!(rule["kind"], "PrometheusRule");
    let spec = rule["spec"].clone();
    // JSON is YAML: promtool reads the spec (`groups:`) as a rule file.
    std::fs::write(dir.join("rules.yaml"), serde_json::to_string_pretty(&spec)?)?;
    Ok(spec)
}

/// The metric names the binaries expose, from their own text exposition after one event of
/// every kind (families without a label set print nothing).
fn exposed_metric_names() -> BTreeSet<String> {
    use kinesis_operator::metrics::{FleetGauges, IngesterLabels};
    let operator = kinesis_operator::metrics::Metrics::new();
    let id = IngesterLabels {
        namespace: "ns".into(),
        name: "orders".into(),
    };
    operator.reconciled(&id, 0.1, Some("transient"));
    operator.write(&id, "assignment", "ok");
    operator.handoff(&id, "rebalance");
    operator.fence(&id, "expired");
    operator.rebalanced(&id);
    operator.topology_error(&id, "throttled");
    operator.set_leader(true);
    operator.set_fleet(
        &id,
        &FleetGauges {
            shards: vec![("reading", 1)],
            workers: vec![("live", 1)],
            max_shards_per_worker: 1,
            max_millis_behind_latest: Some(1),
            ready: true,
            degraded: false,
            suspended: false,
            stream: "orders".into(),
        },
    );
    let ingester = kinesis_ingester::metrics::Metrics::new(std::sync::Arc::new(
        kinesis_ingester::sink::SinkStats::default(),
    ));
    ingester.set_millis_behind("shardId-000000000000", 1);
    ingester.records_in(1, 1);
    ingester.source_error("GetRecords", "throttled");
    ingester.checkpoint_written(Some("conflict"));
    ingester.fleet_report_written("ok");
    ingester.fleet_released("handoff");
    let text = operator.encode() + &ingester.encode();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Metric names in a PromQL expression: the identifiers of our two prefixes.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("kinesis_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_dashboard_query_names_metrics_the_binaries_expose() -> Result<()> {
    let exposed = exposed_metric_names();
    assert!(
        exposed.contains("kinesis_ingester_sink_errors_total")
            && exposed.contains("kinesis_operator_reconcile_duration_seconds_bucket"),
        "the exposition was read: {exposed:?}"
    );
    let text = std::fs::read_to_string(chart_dir().join("dashboards/kinesis.json"))?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is not JSON")?;
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().context("no panels")? {
        assert!(ids.insert(panel["id"].to_string()), "duplicate panel id");
        let title = panel["title"].as_str().unwrap_or_default();
        let targets = panel["targets"]
            .as_array()
            .context("a panel without targets")?;
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            let expr = target["expr"].as_str().context("a target without expr")?;
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no metric");
            for name in names {
                if !exposed.contains(&name) {
                    unknown.push(format!("{title}: {name}"));
                }
                used.insert(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics no binary exposes: {unknown:#?}"
    );
    for wanted in [
        "kinesis_operator_max_millis_behind_latest",
        "kinesis_ingester_millis_behind_latest",
        "kinesis_ingester_records_in_total",
        "kinesis_ingester_bytes_in_total",
        "kinesis_ingester_sink_errors_total",
        "kinesis_operator_rebalances_total",
        "kinesis_operator_handoffs_total",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
    assert!(
        text.contains("kinesis_ingester_millis_behind_latest") && text.contains("shard"),
        "lag per shard"
    );
    // Filters by namespace, stream and ingester; every legend says which ingester (and, for
    // worker series, which pod).
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .context("no variables")?
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for wanted in ["namespace", "stream", "ingester"] {
        assert!(
            variables.contains(&wanted),
            "no ${wanted} filter: {variables:?}"
        );
    }
    for panel in dashboard["panels"].as_array().context("no panels")? {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().context("no targets")? {
            let expr = target["expr"].as_str().unwrap_or_default();
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            if expr.contains("kinesis_operator_leader") {
                continue;
            }
            assert!(
                expr.contains("$ingester") && expr.contains("$namespace"),
                "{title}: {expr} ignores the filters"
            );
            if expr.contains("kinesis_ingester_") {
                assert!(
                    legend.contains("{{ingester}}") && legend.contains("{{pod}}"),
                    "{title}: the legend {legend:?} must name the ingester and the pod"
                );
            } else {
                assert!(
                    legend.contains("{{name}}"),
                    "{title}: the legend {legend:?} must name the ingester"
                );
            }
        }
    }
    let monitors = documents(&chart::template(
        "monitoring",
        &["--set", "serviceMonitor.enabled=true"],
    )?)?;
    let pod_monitor = monitors
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .context("no PodMonitor")?;
    assert!(
        pod_monitor
            .to_string()
            .contains("\"targetLabel\":\"ingester\""),
        "worker series get the ingester label the dashboard filters by: {pod_monitor}"
    );
    // The ConfigMap carries the file unchanged.
    let docs = documents(&chart::template(
        "monitoring",
        &[
            "--set",
            "grafanaDashboard.enabled=true",
            "--show-only",
            "templates/dashboard.yaml",
        ],
    )?)?;
    assert_eq!(docs[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let embedded: Value = serde_json::from_str(
        docs[0]["data"]["kinesis.json"]
            .as_str()
            .context("no kinesis.json")?,
    )?;
    assert_eq!(embedded, dashboard);
    Ok(())
}

#[test]
fn the_alert_rules_pass_promtool_and_name_metrics_the_binaries_expose() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = rule_file(
        dir.path(),
        &["--set", "prometheusRule.alertLabels.team=data"],
    )?;
    let out = run(promtool()
        .arg("check")
        .arg("rules")
        .arg(dir.path().join("rules.yaml")))
    .context("promtool check rules (make tools builds the pinned promtool)")?;
    assert!(out.contains("SUCCESS"), "{out}");

    let exposed = exposed_metric_names();
    let mut alerts = BTreeSet::new();
    let mut unknown = Vec::new();
    for group in spec["groups"].as_array().context("no groups")? {
        for rule in group["rules"].as_array().context("no rules")? {
            let name = rule["alert"].as_str().context("a rule without alert")?;
            alerts.insert(name.to_owned());
            let expr = rule["expr"].as_str().context("a rule without expr")?;
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{name}: {expr} names no metric");
            unknown.extend(
                names
                    .into_iter()
                    .filter(|m| !exposed.contains(m))
                    .map(|m| format!("{name}: {m}")),
            );
            let description = rule["annotations"]["description"].as_str().unwrap_or("");
            assert!(
                description.contains("Check first"),
                "{name}: the description must say what to check first: {description}"
            );
            assert_eq!(rule["labels"]["team"], "data", "{name}: alertLabels");
            assert!(
                ["warning", "critical"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
        }
    }
    assert!(
        unknown.is_empty(),
        "alerts on metrics no binary exposes: {unknown:#?}"
    );
    for wanted in [
        "KinesisIngesterLagHigh",
        "KinesisIngesterNotReady",
        "KinesisIngesterSinkFailing",
        "KinesisIngesterReadErrors",
        "KinesisIngesterNoProgress",
        "KinesisWorkerSelfFenced",
        "KinesisWorkersExpiring",
        "KinesisOperatorNoLeader",
        "KinesisOperatorReconcileErrors",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted}: {alerts:?}");
    }
    Ok(())
}

/// The alerts fire on scripted series of the failures they describe, and stay quiet on a
/// healthy fleet (tests/promtool/alerts_test.yaml, with the chart's default thresholds).
#[test]
fn the_alerts_fire_on_the_failures_they_describe_and_not_on_a_healthy_fleet() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = rule_file(dir.path(), &[])?;
    for group in spec["groups"].as_array_mut().context("no groups")? {
        for rule in group["rules"].as_array_mut().context("no rules")? {
            rule.as_object_mut()
                .context("a rule is not a map")?
                .remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(&spec)?,
    )?;
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("promtool/alerts_test.yaml");
    std::fs::copy(&cases, dir.path().join("alerts_test.yaml"))?;
    let out = run(promtool()
        .current_dir(dir.path())
        .args(["test", "rules", "alerts_test.yaml"]))
    .context("promtool test rules")?;
    assert!(out.contains("SUCCESS"), "{out}");
    Ok(())
}

#[test]
fn the_prometheus_rule_is_off_by_default() -> Result<()> {
    let kinds: Vec<Value> = documents(&chart::template("monitoring", &[])?)?
        .into_iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert!(!kinds.is_empty());
    assert!(
        !kinds.iter().any(|k| k == "PrometheusRule"),
        "the PrometheusRule needs the Prometheus Operator's CRDs: off by default"
    );
    Ok(())
}

/// `helm install` refuses timings the operator and every worker would refuse at start-up, with
/// a message naming both values; the defaults and a consistent change pass.
#[test]
fn contradicting_timings_fail_at_helm_install_naming_the_values() -> Result<()> {
    for (args, wanted) in [
        (
            vec!["--set", "timings.selfFenceAfter=30s"],
            vec!["timings.workerLease (14s)", "timings.selfFenceAfter (30s)"],
        ),
        (
            vec!["--set", "timings.reportInterval=2s"],
            vec!["timings.reportInterval is 2s", "at least 5s"],
        ),
        (
            vec!["--set", "timings.selfFenceAfter=10s"],
            vec![
                "timings.selfFenceAfter (10s)",
                "timings.reportInterval (6s)",
            ],
        ),
        (
            vec![
                "--set",
                "timings.workerLease=1m",
                "--set",
                "timings.selfFenceAfter=59s500ms",
            ],
            vec!["timings.workerLease (1m)", "by more than 1s"],
        ),
    ] {
        let out = helm()
            .arg("template")
            .arg("timings")
            .arg(chart_dir())
            .args(&args)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: {w:?} not in {stderr}");
        }
    }
    for args in [
        vec![],
        vec![
            "--set",
            "timings.workerLease=1m30s",
            "--set",
            "timings.selfFenceAfter=1m",
            "--set",
            "timings.reportInterval=20s",
        ],
    ] {
        run(helm()
            .arg("template")
            .arg("timings")
            .arg(chart_dir())
            .args(&args))
        .with_context(|| format!("{args:?}"))?;
    }
    Ok(())
}
