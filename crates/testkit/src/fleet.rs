//! The fleet harness: runs kinesis-operator as a process under its own ServiceAccount, and plays the kubelet for kwok's worker pods by running one `kinesis-ingester` process per Running pod, under the worker ServiceAccount, with the pod's own arguments and its scratch volume in the harness's directory.
//!
//! kwok marks pods Running without running anything (see ../shared/docs/local-cluster.md), so
//! this harness starts the real binaries. It also lets tests SIGKILL a "pod" or restart the
//! operator.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result};
use k8s_openapi::api::{
    core::v1::{Pod, ServiceAccount},
    rbac::v1::{ClusterRole, Role, RoleBinding},
};
use kinesis_ingester_api::bounds::SCRATCH_MOUNT_PATH;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::FIELD_MANAGER;

/// A binary of the workspace, built next to the running test executable
/// (`target/<profile>/`). `cargo test --workspace` builds every binary first.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    // A test runs from target/<profile>/deps, a binary from target/<profile>.
    let here = exe.parent().context("the executable has no directory")?;
    let candidates = [Some(here), here.parent()];
    candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{name} is missing next to {}: build it first with `cargo build --workspace --bins` (make test and make demo do)",
                exe.display()
            )
        })
}

/// Writes a copy of `$KUBECONFIG` whose user impersonates `user` (e.g.
/// `system:serviceaccount:ns:name`), so a process runs with exactly that account's RBAC.
pub fn impersonating_kubeconfig(dir: &Path, file: &str, user: &str) -> Result<PathBuf> {
    impersonating_kubeconfig_of_pod(dir, file, user, None)
}

/// The same, with the `authentication.kubernetes.io/pod-name` extra that a pod-bound token
/// carries when `pod` is given: what the kubelet's projected token gives a pod's process, and
/// what the chart's admission policy requires of worker ServiceAccounts.
pub fn impersonating_kubeconfig_of_pod(
    dir: &Path,
    file: &str,
    user: &str,
    pod: Option<&str>,
) -> Result<PathBuf> {
    let base = std::env::var("KUBECONFIG").context("KUBECONFIG is not set; run under make test")?;
    let text = std::fs::read_to_string(&base).with_context(|| format!("reading {base}"))?;
    let mut config: serde_json::Value =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {base}"))?;
    let users = config["users"]
        .as_array_mut()
        .context("the kubeconfig has no users")?;
    for u in users {
        u["user"]["as"] = serde_json::Value::String(user.to_owned());
        if let Some(pod) = pod {
            u["user"]["as-user-extra"] =
                serde_json::json!({ "authentication.kubernetes.io/pod-name": [pod] });
        }
    }
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    Ok(path)
}

/// The user name of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Installs the operator's ClusterRole as the Helm chart renders it, and binds it, in
/// `namespace` only, to the ServiceAccount `kinesis-operator` there, with a Role for the leader
/// Lease in the same namespace (what a namespaced chart install grants).
pub async fn install_operator_rbac(client: &Client, namespace: &str) -> Result<()> {
    let role = crate::chart::chart_cluster_role()?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ClusterRole>::all(client.clone())
        .patch(&role.name_any(), &pp, &Patch::Apply(&role))
        .await
        .context("applying the operator ClusterRole")?;
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "kinesis-operator", "namespace": namespace}
    }))?;
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch("kinesis-operator", &pp, &Patch::Apply(&sa))
        .await?;
    let subjects = serde_json::json!([{"kind": "ServiceAccount", "name": "kinesis-operator", "namespace": namespace}]);
    let leases: Role = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "kinesis-operator-leader", "namespace": namespace},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    }))?;
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch("kinesis-operator-leader", &pp, &Patch::Apply(&leases))
        .await?;
    for (name, kind) in [
        ("kinesis-operator", "ClusterRole"),
        ("kinesis-operator-leader", "Role"),
    ] {
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": if kind == "ClusterRole" { role.name_any() } else { name.to_owned() }},
            "subjects": subjects,
        }))?;
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .patch(name, &pp, &Patch::Apply(&binding))
            .await?;
    }
    Ok(())
}

fn emulator_env(cmd: &mut Command) {
    // A spec without `stream.endpoint` reaches the emulator through the SDK's own variable, which
    // a [`Routes`] may point at a proxy for one process.
    if let Ok(endpoint) = std::env::var("KINESIS_ENDPOINT") {
        cmd.env("AWS_ENDPOINT_URL_KINESIS", endpoint);
    }
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
}

fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

/// Where one process's traffic goes instead of straight to its peer (each a Toxiproxy proxy, so
/// a test can break one path of one process).
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// `127.0.0.1:port` that forwards to the API server (the kubeconfig's server is rewritten).
    pub api_server: Option<String>,
    /// `http://127.0.0.1:port` that forwards to Kinesis (`AWS_ENDPOINT_URL_KINESIS`; the spec
    /// must leave `stream.endpoint` out).
    pub kinesis: Option<String>,
    /// `http://127.0.0.1:port` that forwards to the HTTP sink (`HTTP_PROXY`, which the HTTP
    /// sink's client honours: a plain TCP proxy to the sink passes the absolute-form request on).
    pub http_sink: Option<String>,
}

impl Routes {
    fn apply(&self, cmd: &mut Command, kubeconfig: &Path) -> Result<()> {
        if let Some(api) = &self.api_server {
            let text = std::fs::read_to_string(kubeconfig)?;
            let mut config: serde_json::Value = serde_json::from_str(&text)?;
            for c in config["clusters"].as_array_mut().into_iter().flatten() {
                c["cluster"]["server"] = serde_json::Value::String(format!("https://{api}"));
            }
            std::fs::write(kubeconfig, serde_json::to_string(&config)?)?;
        }
        if let Some(k) = &self.kinesis {
            cmd.env("AWS_ENDPOINT_URL_KINESIS", k);
        }
        if let Some(h) = &self.http_sink {
            cmd.env("HTTP_PROXY", h).env("http_proxy", h);
        }
        Ok(())
    }
}

/// Sends SIGTERM to a process.
pub fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// The operator's endpoint allow-list for the emulator on the loopback (`--allowed-endpoints`,
/// chart value `allowList.endpoints`).
pub const LOOPBACK_ENDPOINTS: &str = "http://127.0.0.1:*";

/// A `kinesis-operator run` process for one namespace, as the `kinesis-operator` account.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts the operator watching `namespace`, with the Lease there too.
    pub async fn start(dir: &Path, namespace: &str, extra: &[&str]) -> Result<Self> {
        Self::start_routed(dir, namespace, extra, &Routes::default()).await
    }

    /// [`OperatorProcess::start`] with its traffic sent through `routes`.
    pub async fn start_routed(
        dir: &Path,
        namespace: &str,
        extra: &[&str],
        routes: &Routes,
    ) -> Result<Self> {
        let kubeconfig = impersonating_kubeconfig(
            dir,
            "operator.kubeconfig",
            &service_account_user(namespace, "kinesis-operator"),
        )?;
        let log = dir.join("operator.log");
        let (out, err) = log_file(&log)?;
        let mut cmd = Command::new(workspace_bin("kinesis-operator")?);
        cmd.args([
            "run",
            "--watch-namespace",
            namespace,
            "--namespace",
            namespace,
        ])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--worker-image",
            "kinesis-ingester:e2e",
        ])
        // The emulator is a custom endpoint: allowed as a chart user would list it.
        .arg(format!("--allowed-endpoints={LOOPBACK_ENDPOINTS}"))
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "kinesis-operator-e2e")
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
        emulator_env(&mut cmd);
        routes.apply(&mut cmd, &kubeconfig)?;
        let child = cmd.spawn().context("starting kinesis-operator")?;
        Ok(Self { child, log })
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The port of its /metrics, from the line it logs once it serves them.
    pub fn metrics_port(&self) -> Option<u16> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// SIGKILL, as a crash or a node loss would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM and wait for the exit code.
    pub async fn terminate(mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            sigterm(pid);
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the operator did not stop within 30 s of SIGTERM")?
            .context("waiting for the operator")
    }
}

#[derive(Debug)]
struct WorkerProcess {
    child: Child,
    uid: String,
    terminating: bool,
}

#[derive(Debug, Default)]
struct KubeletState {
    running: HashMap<String, WorkerProcess>,
    /// Pods whose process was killed on purpose: never restarted (a lost node).
    killed: Vec<String>,
    /// How many processes were started, per pod.
    starts: HashMap<String, usize>,
    /// Pods whose traffic goes through proxies (applied when their process starts).
    routes: HashMap<String, Routes>,
    /// Routes of every pod not in `routes`.
    default_routes: Routes,
}

/// Plays the kubelet for the worker pods of one namespace.
#[derive(Debug)]
pub struct Kubelet {
    state: Arc<Mutex<KubeletState>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Starts watching the worker pods of `namespace` (polling every 300 ms).
    pub fn start(client: Client, dir: &Path, namespace: &str) -> Result<Self> {
        Self::start_for(client, dir, namespace, "app.kubernetes.io/component=worker")
    }

    /// Runs the pods of `namespace` that match `labels`: a container whose image is named
    /// `kinesis-operator` (any registry and tag) runs the operator binary, any other runs
    /// `kinesis-ingester`.
    pub fn start_for(client: Client, dir: &Path, namespace: &str, labels: &str) -> Result<Self> {
        Self::start_with(client, dir, namespace, labels, true)
    }

    /// Runs the worker pods of `namespace` with no AWS credentials at all (no keys, no profile,
    /// no instance metadata), like a pod on EKS without IRSA or Pod Identity on a node that
    /// blocks IMDS.
    pub fn start_without_aws_credentials(
        client: Client,
        dir: &Path,
        namespace: &str,
    ) -> Result<Self> {
        Self::start_with(
            client,
            dir,
            namespace,
            "app.kubernetes.io/component=worker",
            false,
        )
    }

    fn start_with(
        client: Client,
        dir: &Path,
        namespace: &str,
        labels: &str,
        aws_credentials: bool,
    ) -> Result<Self> {
        let bins = Bins {
            ingester: workspace_bin("kinesis-ingester")?,
            operator: workspace_bin("kinesis-operator")?,
            aws_credentials,
        };
        let state = Arc::new(Mutex::new(KubeletState::default()));
        let stop = CancellationToken::new();
        let (s, st, dir, ns) = (
            state.clone(),
            stop.clone(),
            dir.to_owned(),
            namespace.to_owned(),
        );
        let lp = ListParams::default().labels(labels);
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            loop {
                if let Ok(list) = pods.list(&lp).await {
                    sync(&s, &list.items, &bins, &dir, &ns);
                }
                tokio::select! {
                    () = st.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        });
        Ok(Self { state, stop, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KubeletState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// SIGKILLs the process of `pod` and never restarts it (the pod stays Running in kwok, as on
    /// a node that lost its network).
    pub fn kill(&self, pod: &str) -> bool {
        let mut state = self.lock();
        state.killed.push(pod.to_owned());
        match state.running.get_mut(pod) {
            Some(p) => p.child.start_kill().is_ok(),
            None => false,
        }
    }

    /// SIGKILLs the process of `pod` as a crash would: the kubelet starts a new one.
    pub fn crash(&self, pod: &str) -> bool {
        let mut state = self.lock();
        match state.running.get_mut(pod) {
            Some(p) => p.child.start_kill().is_ok(),
            None => false,
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process of `pod`, as a paused VM or a
    /// frozen node would; `false` when it has no running process.
    pub fn signal(&self, pod: &str, signal: &str) -> bool {
        let state = self.lock();
        let Some(pid) = state.running.get(pod).and_then(|p| p.child.id()) else {
            return false;
        };
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Sends the traffic of `pod`'s next processes through `routes` (set it before the pod runs).
    pub fn route(&self, pod: &str, routes: Routes) {
        self.lock().routes.insert(pod.to_owned(), routes);
    }

    /// Sends the traffic of every pod without its own [`Kubelet::route`] through `routes`.
    pub fn route_all(&self, routes: Routes) {
        self.lock().default_routes = routes;
    }

    /// The pid of `pod`'s live process.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        self.lock().running.get(pod).and_then(|p| p.child.id())
    }

    /// Pods with a live process.
    pub fn running(&self) -> Vec<String> {
        let mut state = self.lock();
        let mut out = Vec::new();
        for (pod, p) in &mut state.running {
            if matches!(p.child.try_wait(), Ok(None)) {
                out.push(pod.clone());
            }
        }
        out.sort();
        out
    }

    /// Processes started for `pod` so far.
    pub fn starts(&self, pod: &str) -> usize {
        self.lock().starts.get(pod).copied().unwrap_or(0)
    }

    /// SIGTERMs every process and waits for them (up to 40 s each).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let children: Vec<WorkerProcess> = self.lock().running.drain().map(|(_, p)| p).collect();
        let _ = self.task.await;
        for mut p in children {
            if let Some(pid) = p.child.id() {
                sigterm(pid);
            }
            let _ = tokio::time::timeout(Duration::from_secs(40), p.child.wait()).await;
        }
    }
}

/// The binaries a pod may run.
#[derive(Clone, Debug)]
struct Bins {
    ingester: PathBuf,
    operator: PathBuf,
    /// Give the processes the emulator's static credentials.
    aws_credentials: bool,
}

fn sync(state: &Mutex<KubeletState>, pods: &[Pod], bins: &Bins, dir: &Path, ns: &str) {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    // Pods being deleted or gone: SIGTERM (the grace period is the worker's own deadline).
    let live: HashMap<String, &Pod> = pods.iter().map(|p| (p.name_any(), p)).collect();
    let mut gone = Vec::new();
    for (name, proc_) in &mut state.running {
        let deleting = live.get(name).is_none_or(|p| {
            p.metadata.deletion_timestamp.is_some() || p.uid().as_deref() != Some(&proc_.uid)
        });
        let exited = !matches!(proc_.child.try_wait(), Ok(None));
        if deleting && !proc_.terminating && !exited {
            if let Some(pid) = proc_.child.id() {
                sigterm(pid);
            }
            proc_.terminating = true;
        }
        if exited {
            gone.push(name.clone());
        }
    }
    for name in gone {
        state.running.remove(&name);
    }
    // Running pods without a process: start one (a crashed process is restarted, like
    // restartPolicy: Always), unless the test killed it on purpose.
    for pod in pods {
        let name = pod.name_any();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running
            || pod.metadata.deletion_timestamp.is_some()
            || state.running.contains_key(&name)
            || state.killed.contains(&name)
        {
            continue;
        }
        let routes = state
            .routes
            .get(&name)
            .unwrap_or(&state.default_routes)
            .clone();
        match spawn_pod(pod, bins, dir, ns, &routes) {
            Ok(child) => {
                *state.starts.entry(name.clone()).or_default() += 1;
                state.running.insert(
                    name,
                    WorkerProcess {
                        child,
                        uid: pod.uid().unwrap_or_default(),
                        terminating: false,
                    },
                );
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot start a worker process"),
        }
    }
}

fn spawn_pod(pod: &Pod, bins: &Bins, dir: &Path, ns: &str, routes: &Routes) -> Result<Child> {
    let name = pod.name_any();
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let container = spec.containers.first().context("pod without containers")?;
    // The image's own name, without registry, organisation or tag.
    let image = container.image.clone().unwrap_or_default();
    let image_name = image.rsplit('/').next().unwrap_or_default();
    let bin = if image_name.split([':', '@']).next() == Some("kinesis-operator") {
        &bins.operator
    } else {
        &bins.ingester
    };
    // The pod's own arguments, with the endpoints moved to the loopback.
    let mut args = container.args.clone().unwrap_or_default();
    for (flag, value) in [("--metrics-addr", "127.0.0.1:0"), ("--log-format", "text")] {
        if let Some(v) = args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| args.get_mut(i + 1))
        {
            *v = value.to_owned();
        }
    }
    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let kubeconfig = impersonating_kubeconfig_of_pod(
        dir,
        &format!("{name}.kubeconfig"),
        &service_account_user(ns, &sa),
        Some(&name),
    )?;
    let (out, err) = log_file(&dir.join(format!("{name}.log")))?;
    let mut cmd = Command::new(bin);
    // The scratch volume of every pod is this kubelet's directory, shared like one
    // ReadWriteMany volume, so that a scenario reads a single sink file.
    let mounts = container.volume_mounts.iter().flatten();
    if mounts
        .into_iter()
        .any(|m| m.mount_path == SCRATCH_MOUNT_PATH)
    {
        cmd.env("KINESIS_INGESTER_SCRATCH_DIR", dir);
    }
    // Literal environment values of the container (downward-API ones are set below).
    for e in container.env.iter().flatten() {
        if let Some(v) = &e.value {
            cmd.env(&e.name, v);
        }
    }
    cmd.args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", &name)
        .env("POD_UID", pod.uid().unwrap_or_default())
        .env("POD_NAMESPACE", ns)
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    emulator_env(&mut cmd);
    if !bins.aws_credentials {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env("AWS_CONFIG_FILE", "/nonexistent/config");
    }
    routes.apply(&mut cmd, &kubeconfig)?;
    cmd.spawn()
        .with_context(|| format!("starting the process for pod {name}"))
}
