//! The Helm chart: it lints and renders, rejects misspelt values, installs, grants the operator and the workers exactly their RBAC, and its pods pass the `restricted` Pod Security Standard; plus the Dockerfiles. The dashboard and alerts are in `monitoring.rs`.

use std::{
    collections::BTreeSet,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Container, Namespace, Pod, PodSpec, SecurityContext, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kinesis_ingester_api::KinesisIngester;
use kinesis_operator::reconcile::workload;
use kinesis_testkit::{
    TestNamespace,
    chart::{self, chart_cluster_role, chart_dir, documents, helm, run},
    install_crd, install_kinesis_ingester_crd, kube_client, unique_name, wait_until,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn full_values() -> String {
    chart_dir()
        .join("ci/full-values.yaml")
        .to_string_lossy()
        .into_owned()
}

fn yaml_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `cmd` with `input` on its standard input; returns (success, stdout + stderr).
fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<(bool, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

// ---------------------------------------------------------------------------------------------
// Without a cluster: lint, schema, values documentation, RBAC rules, Dockerfiles, dashboard.
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_with_default_and_full_values() -> Result<()> {
    run(helm().arg("lint").arg("--strict").arg(chart_dir()))?;
    run(helm()
        .arg("lint")
        .arg("--strict")
        .arg(chart_dir())
        .args(["-f", &full_values()]))?;
    Ok(())
}

#[test]
fn a_misspelt_value_is_rejected_naming_the_key() {
    for (set, key) in [
        ("replicaCoutn=3", "replicaCoutn"),
        ("serviceMonitor.enabeld=true", "enabeld"),
        ("timings.workerLease=16", "workerLease"),
        ("logFormat=xml", "logFormat"),
    ] {
        match chart::template("default", &["--set", set]) {
            Ok(_) => panic!("--set {set} rendered, but the schema must reject it"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains("values don't meet the specifications of the schema")
                        && e.contains(key),
                    "--set {set}: the error must come from the schema and name {key}: {e}"
                );
            }
        }
    }
    let e = chart::template("default", &["--set", "replicas=2,leaderElection=false"])
        .expect_err("two replicas without leader election must not render");
    assert!(format!("{e:#}").contains("needs leaderElection"), "{e:#}");
}

/// Every leaf of `v` as a dotted path (`serviceMonitor.enabled`); maps that are empty by default
/// (`podLabels: {}`) count as leaves.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(map) if !map.is_empty() && !prefix.ends_with("resources") => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn full_values_set_and_the_readme_documents_every_value() -> Result<()> {
    let mut defaults = BTreeSet::new();
    leaves(
        &yaml_file(&chart_dir().join("values.yaml"))?,
        "",
        &mut defaults,
    );
    let mut full = BTreeSet::new();
    leaves(
        &yaml_file(&chart_dir().join("ci/full-values.yaml"))?,
        "",
        &mut full,
    );
    // A default leaf is set when full-values.yaml has it or something below it (`podLabels.x`).
    let unset: Vec<_> = defaults
        .iter()
        .filter(|k| {
            !full
                .iter()
                .any(|f| f == *k || f.starts_with(&format!("{k}.")))
        })
        .collect();
    assert!(
        unset.is_empty(),
        "ci/full-values.yaml does not set {unset:?}"
    );
    let readme = std::fs::read_to_string(chart_dir().join("README.md"))?;
    let undocumented: Vec<_> = defaults
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "the chart README has no table row for {undocumented:?}"
    );
    Ok(())
}

/// The chart is the one source of the operator's RBAC (the e2e tests bind the same rendered
/// ClusterRole): leases are granted only in the release namespace, by the leader-election Role.
#[test]
fn leader_election_is_granted_in_the_release_namespace_only() -> Result<()> {
    let chart = chart_cluster_role()?;
    assert_eq!(chart.metadata.name.as_deref(), Some(chart::RELEASE));
    assert!(
        chart
            .rules
            .iter()
            .flatten()
            .all(|r| r.api_groups.as_deref() != Some(&["coordination.k8s.io".to_owned()])),
        "leases belong in the leader-election Role, not the ClusterRole"
    );
    let leader = documents(&chart::template(
        "ops",
        &["--show-only", "templates/leader-election-rbac.yaml"],
    )?)?;
    let role = leader
        .iter()
        .find(|d| d["kind"] == "Role")
        .context("no leader-election Role")?;
    assert_eq!(role["metadata"]["namespace"], "ops");
    let mut granted: BTreeSet<String> = BTreeSet::new();
    for rule in role["rules"].as_array().context("rules")? {
        assert_eq!(rule["resources"], serde_json::json!(["leases"]));
        for verb in rule["verbs"].as_array().context("verbs")? {
            granted.insert(verb.as_str().unwrap_or_default().to_owned());
        }
    }
    let wanted: BTreeSet<String> = ["create", "get", "update"].map(String::from).into();
    assert_eq!(granted, wanted);
    // The comments that say why each rule exists survive rendering.
    let yaml = chart::template(
        "kinesis-operator",
        &["--show-only", "templates/clusterrole.yaml"],
    )?;
    assert!(
        yaml.contains("# Never used by the operator itself"),
        "{yaml}"
    );
    Ok(())
}

/// Joins continuation lines and drops comments.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

#[test]
fn the_dockerfiles_build_one_binary_into_a_non_root_image_the_chart_uses() -> Result<()> {
    let values = yaml_file(&chart_dir().join("values.yaml"))?;
    for (dir, bin, repository) in [
        (
            "operator",
            "kinesis-operator",
            &values["image"]["repository"],
        ),
        (
            "ingester",
            "kinesis-ingester",
            &values["workerImage"]["repository"],
        ),
    ] {
        let text = std::fs::read_to_string(workspace().join(dir).join("Dockerfile"))?;
        let documented = format!("ghcr.io/kinesis-operator/{bin}");
        assert_eq!(
            repository,
            &json!(documented),
            "the chart's image for {bin}"
        );
        assert!(
            text.contains(&documented),
            "{dir}/Dockerfile names its image"
        );
        let steps = dockerfile_instructions(&text);
        let froms: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i].starts_with("FROM "))
            .collect();
        assert!(froms.len() >= 2, "{dir}/Dockerfile: a multi-stage build");
        let build = steps[froms[0]..froms[froms.len() - 1]].join("\n");
        assert!(
            build.contains(&format!("cargo build --release --locked -p {bin}")),
            "{dir}/Dockerfile builds {bin}: {build}"
        );
        let last = &steps[froms[froms.len() - 1]..];
        assert!(
            last[0].contains(":nonroot") || last.iter().any(|s| s.starts_with("USER 65532")),
            "{dir}/Dockerfile: the final stage runs as 65532: {last:?}"
        );
        assert!(
            last.iter().any(|s| s.starts_with("USER 65532")),
            "{dir}/Dockerfile: USER 65532 in the final stage"
        );
        let copies: Vec<&String> = last.iter().filter(|s| s.starts_with("COPY")).collect();
        assert_eq!(copies.len(), 1, "{dir}/Dockerfile copies only the binary");
        let words: Vec<&str> = copies[0].split_whitespace().collect();
        assert!(
            words.len() == 4
                && words[1].starts_with("--from=")
                && words[2].ends_with(&format!("/{bin}"))
                && words[3].ends_with(&format!("/{bin}")),
            "{dir}/Dockerfile: COPY --from=<stage> <binary> <path>, got {}",
            copies[0]
        );
        assert!(
            last.iter()
                .any(|s| s.starts_with("ENTRYPOINT") && s.contains(&format!("/{bin}\""))),
            "{dir}/Dockerfile: ENTRYPOINT is the binary"
        );
        assert!(
            !last.iter().any(|s| s.starts_with("RUN")),
            "{dir}/Dockerfile: nothing runs in the runtime stage (it has no shell)"
        );
    }
    let ignore = std::fs::read_to_string(workspace().join(".dockerignore"))?;
    for path in ["target/", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            ".dockerignore: {path}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Against the test cluster.
// ---------------------------------------------------------------------------------------------

/// A permissive CRD for a Prometheus Operator kind, so its objects pass a dry run. Left alone
/// when the cluster already has the real one.
async fn ensure_monitoring_crd(client: &Client, kind: &str, plural: &str) -> Result<()> {
    let name = format!("{plural}.monitoring.coreos.com");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    if api.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))?;
    install_crd(client, &crd).await
}

fn kubectl() -> Command {
    Command::new("kubectl")
}

/// `kubectl apply --dry-run=server` of `yaml` (every namespaced object names its namespace);
/// returns what kubectl printed.
fn server_dry_run(yaml: &str) -> Result<String> {
    let (ok, out) = run_with_stdin(
        kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
        yaml,
    )?;
    if !ok {
        bail!("the API server rejected the rendered chart:\n{out}");
    }
    Ok(out)
}

#[tokio::test]
async fn the_rendered_chart_passes_a_server_side_dry_run() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    ensure_monitoring_crd(&client, "ServiceMonitor", "servicemonitors").await?;
    ensure_monitoring_crd(&client, "PodMonitor", "podmonitors").await?;
    ensure_monitoring_crd(&client, "PrometheusRule", "prometheusrules").await?;
    let release = TestNamespace::create(&client, "chart-dry-run").await?;
    let watched = TestNamespace::create(&client, "chart-watched").await?;

    let default = chart::template(release.name(), &[])?;
    let out = server_dry_run(&default)?;
    for object in [
        "deployment.apps/kinesis-operator",
        "clusterrole.rbac.authorization.k8s.io/kinesis-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/kinesis-operator",
        "role.rbac.authorization.k8s.io/kinesis-operator-leader-election",
        "service/kinesis-operator-metrics",
        "serviceaccount/kinesis-operator",
        // On by default: workers write only their own KinesisWorker status.
        "validatingadmissionpolicy.admissionregistration.k8s.io/kinesis-operator-worker-status",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/kinesis-operator-worker-status",
    ] {
        assert!(out.contains(object), "{object} was not applied:\n{out}");
    }

    let watch = format!("watchNamespace={}", watched.name());
    let full = chart::template(release.name(), &["-f", &full_values(), "--set", &watch])?;
    let kinds: BTreeSet<String> = documents(&full)?
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "Role",
        "RoleBinding",
    ] {
        assert!(kinds.contains(kind), "full values render no {kind}");
    }
    assert!(
        !kinds.contains("ClusterRole"),
        "a namespaced install needs no ClusterRole"
    );
    let out = server_dry_run(&full)?;
    assert!(
        out.contains("validatingadmissionpolicy.admissionregistration.k8s.io/kinesis-operator-full-worker-status"),
        "{out}"
    );

    // Control: the dry run does validate (a Deployment with a bad field is rejected).
    let broken = default.replace(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: maybe",
    );
    assert!(server_dry_run(&broken).is_err());
    Ok(())
}

/// Uninstalls a Helm release (its cluster-scoped objects outlive the namespace) when dropped.
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Err(e) = run(helm().args(["uninstall", &self.name, "-n", &self.namespace, "--wait"]))
        {
            eprintln!("could not uninstall {}: {e:#}", self.name);
        }
    }
}

/// `kubectl auth can-i` as `user`: true for yes, false for no.
fn can_i(user: &str, namespace: Option<&str>, args: &[&str]) -> Result<bool> {
    let mut cmd = kubectl();
    cmd.args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as={user}"));
    match namespace {
        Some(ns) => cmd.args(["-n", ns]),
        None => cmd.arg("--all-namespaces"),
    };
    let out = cmd.output().context("running kubectl auth can-i")?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!(
            "kubectl auth can-i {args:?}: {other} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Waits until every `allowed` check says yes (RBAC caches catch up), then requires every
/// `denied` check to say no.
async fn check_rbac(
    user: &str,
    allowed: &[(Option<&str>, Vec<&str>)],
    denied: &[(Option<&str>, Vec<&str>)],
) -> Result<()> {
    for (ns, args) in allowed {
        wait_until(
            &format!("{user} may {args:?} in {ns:?}"),
            Duration::from_secs(30),
            || async move { Ok(can_i(user, *ns, args)?.then_some(())) },
        )
        .await?;
    }
    let mut wrong = Vec::new();
    for (ns, args) in denied {
        if can_i(user, *ns, args)? {
            wrong.push(format!("{args:?} in {ns:?}"));
        }
    }
    assert!(wrong.is_empty(), "{user} may, but must not: {wrong:#?}");
    Ok(())
}

#[tokio::test]
async fn helm_install_runs_the_operator_with_exactly_its_rbac() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "chart-install").await?;
    let other = TestNamespace::create(&client, "chart-other").await?;
    // A unique release name: the ClusterRole and its binding are cluster-wide.
    let name = unique_name("kop");
    run(helm().args(["install", &name]).arg(chart_dir()).args([
        "-n",
        ns.name(),
        "--skip-crds",
        "--set",
        "replicas=3",
    ]))?;
    let _release = Release {
        name: name.clone(),
        namespace: ns.name().to_owned(),
    };
    let fullname = format!("{name}-kinesis-operator");
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await?;
    assert_eq!(deployment.spec.replicas, Some(3));
    let pod = deployment.spec.template.spec.context("no pod template")?;
    let args = pod.containers[0].args.clone().unwrap_or_default().join(" ");
    assert!(
        args.starts_with("run ")
            && args.contains("--worker-image=ghcr.io/kinesis-operator/kinesis-ingester:0.1.0"),
        "{args}"
    );

    let sa = format!("system:serviceaccount:{}:{fullname}", ns.name());
    let here = Some(ns.name());
    let there = Some(other.name());
    let allowed = vec![
        (there, vec!["get", "kinesisingesters"]),
        (there, vec!["list", "kinesisingesters"]),
        (None, vec!["watch", "kinesisingesters"]),
        (there, vec!["patch", "kinesisingesters"]),
        (
            there,
            vec!["patch", "kinesisingesters", "--subresource=status"],
        ),
        (there, vec!["create", "kinesisshardassignments"]),
        (there, vec!["update", "kinesisshardassignments"]),
        (there, vec!["create", "kinesisworkers"]),
        (there, vec!["update", "kinesisworkers"]),
        (there, vec!["delete", "kinesisworkers"]),
        (there, vec!["create", "statefulsets.apps"]),
        (there, vec!["patch", "statefulsets.apps"]),
        (there, vec!["list", "pods"]),
        (there, vec!["create", "roles.rbac.authorization.k8s.io"]),
        (
            there,
            vec!["create", "rolebindings.rbac.authorization.k8s.io"],
        ),
        (there, vec!["create", "events.events.k8s.io"]),
        (
            here,
            vec!["get", "leases.coordination.k8s.io/kinesis-operator-leader"],
        ),
        (
            here,
            vec![
                "update",
                "leases.coordination.k8s.io/kinesis-operator-leader",
            ],
        ),
        (here, vec!["create", "leases.coordination.k8s.io"]),
    ];
    let denied = vec![
        (here, vec!["get", "secrets"]),
        (None, vec!["list", "secrets"]),
        (there, vec!["list", "configmaps"]),
        (there, vec!["create", "pods"]),
        (None, vec!["delete", "namespaces"]),
        (None, vec!["update", "nodes"]),
        (None, vec!["create", "clusterroles"]),
        (there, vec!["escalate", "roles.rbac.authorization.k8s.io"]),
        (there, vec!["bind", "roles.rbac.authorization.k8s.io"]),
        (None, vec!["bind", "clusterroles.rbac.authorization.k8s.io"]),
        (
            there,
            vec!["get", "leases.coordination.k8s.io/kinesis-operator-leader"],
        ),
        (
            there,
            vec![
                "update",
                "leases.coordination.k8s.io/kinesis-operator-leader",
            ],
        ),
        (
            here,
            vec!["get", "leases.coordination.k8s.io/another-lease"],
        ),
        (there, vec!["update", "kinesisingesters"]),
    ];
    check_rbac(&sa, &allowed, &denied).await?;

    // The operator can grant the worker Role it builds without escalate (it holds every rule).
    let (names, ki) = worker_names(other.name())?;
    let mut role = workload::role(&names, &owner(&ki));
    role.metadata.owner_references = None;
    let role = serde_json::to_value(role)?;
    let (ok, out) = run_with_stdin(
        kubectl().args([
            "create",
            "--dry-run=server",
            "-n",
            other.name(),
            &format!("--as={sa}"),
            "-f",
            "-",
        ]),
        &role.to_string(),
    )?;
    assert!(ok, "the operator may not create the worker Role: {out}");
    Ok(())
}

fn example_ingester(namespace: &str) -> Result<KinesisIngester> {
    let mut ki: KinesisIngester = serde_json::from_value(yaml_file(
        &workspace().join("examples/polling-stdout.yaml"),
    )?)?;
    ki.metadata.namespace = Some(namespace.to_owned());
    ki.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    Ok(ki)
}

fn worker_names(namespace: &str) -> Result<(workload::Names, KinesisIngester)> {
    let ki = example_ingester(namespace)?;
    let name = ki.metadata.name.clone().context("the example has a name")?;
    Ok((workload::Names::of(&ki, namespace, &name), ki))
}

fn owner(ki: &KinesisIngester) -> OwnerReference {
    OwnerReference {
        api_version: "kinesis-operator.dev/v1alpha1".into(),
        kind: "KinesisIngester".into(),
        name: ki.metadata.name.clone().unwrap_or_default(),
        uid: ki.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[tokio::test]
async fn the_worker_role_grants_a_worker_only_its_own_ingester() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "chart-worker-rbac").await?;
    let (names, ki) = worker_names(ns.name())?;
    let owner = owner(&ki);
    // Without owner references: the ingester does not exist, and the garbage collector would
    // delete what names it as owner.
    let mut role = workload::role(&names, &owner);
    role.metadata.owner_references = None;
    let mut binding = workload::role_binding(&names, &owner);
    binding.metadata.owner_references = None;
    let mut account =
        workload::service_account(&names, &owner).context("the operator owns the account")?;
    account.metadata.owner_references = None;
    let post = PostParams::default();
    Api::<Role>::namespaced(client.clone(), ns.name())
        .create(&post, &role)
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), ns.name())
        .create(&post, &binding)
        .await?;
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(&post, &account)
        .await?;

    let sa = format!(
        "system:serviceaccount:{}:{}",
        ns.name(),
        names.service_account
    );
    let me = &names.ingester;
    let own_ingester = format!("kinesisingesters/{me}");
    let own_table = format!("kinesisshardassignments/{me}");
    let here = Some(ns.name());
    let allowed = vec![
        (here, vec!["get", own_ingester.as_str()]),
        (here, vec!["watch", own_table.as_str()]),
        (here, vec!["get", own_table.as_str()]),
        (here, vec!["get", "kinesisworkers"]),
        (
            here,
            vec!["update", "kinesisworkers", "--subresource=status"],
        ),
    ];
    let denied = vec![
        (here, vec!["get", "secrets"]),
        (here, vec!["list", "pods"]),
        (here, vec!["get", "configmaps"]),
        (here, vec!["create", "kinesisworkers"]),
        (here, vec!["update", "kinesisworkers"]),
        (here, vec!["delete", "kinesisworkers"]),
        (here, vec!["update", own_table.as_str()]),
        (here, vec!["get", "kinesisingesters/another"]),
        (here, vec!["watch", "kinesisshardassignments/another"]),
        (here, vec!["list", "kinesisingesters"]),
    ];
    check_rbac(&sa, &allowed, &denied).await
}

/// A Pod with `spec`, server-side dry-run created; Ok(()) when admitted.
async fn dry_run_pod(client: &Client, namespace: &str, name: &str, spec: PodSpec) -> Result<()> {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&params, &pod)
        .await?;
    Ok(())
}

async fn create_account(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sa)
        .await?;
    Ok(())
}

#[tokio::test]
async fn operator_and_worker_pods_pass_the_restricted_pod_security_standard() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "chart-restricted").await?;
    Api::<Namespace>::all(client.clone())
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;

    // The operator pod, from the Deployment the chart renders.
    let docs = documents(&chart::template(
        ns.name(),
        &["--show-only", "templates/deployment.yaml"],
    )?)?;
    let deployment: Deployment = serde_json::from_value(docs[0].clone())?;
    let operator_pod = deployment.spec.template.spec.context("no pod template")?;
    let account = operator_pod
        .service_account_name
        .clone()
        .context("no ServiceAccount")?;
    create_account(&client, ns.name(), &account).await?;

    // The worker pod, from the StatefulSet the operator builds.
    let (names, ki) = worker_names(ns.name())?;
    let settings = kinesis_operator::context::Settings::default().workload;
    let sts = workload::stateful_set(&ki, &names, &owner(&ki), 1, &settings);
    let worker_pod = sts.spec.template.spec.context("no pod")?;
    create_account(&client, ns.name(), &names.service_account).await?;

    // Control first: the label is enforced, so a privileged pod is rejected (retried until the
    // namespace label is seen by admission).
    let mut privileged = worker_pod.clone();
    privileged.containers = vec![Container {
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        ..privileged.containers[0].clone()
    }];
    wait_until(
        "a privileged pod to be rejected by PodSecurity",
        Duration::from_secs(30),
        || {
            let (client, privileged, ns) = (client.clone(), privileged.clone(), ns.name());
            async move {
                match dry_run_pod(&client, ns, "privileged", privileged).await {
                    Ok(()) => Ok(None),
                    Err(e) => {
                        let e = format!("{e:#}");
                        if e.contains("violates PodSecurity \"restricted") {
                            Ok(Some(()))
                        } else {
                            bail!("rejected for another reason: {e}")
                        }
                    }
                }
            }
        },
    )
    .await?;

    dry_run_pod(&client, ns.name(), "operator", operator_pod)
        .await
        .context("the operator pod must be admitted under the restricted standard")?;
    dry_run_pod(&client, ns.name(), "worker", worker_pod)
        .await
        .context("the worker pod must be admitted under the restricted standard")?;
    Ok(())
}
