//! The fleet in containers on a real node (kubelet, containerd, runc; `tests/env/real-node.sh`),
//! from the images `make images` builds: the chart installed under the `restricted` Pod Security
//! Standard with `imagePullPolicy: Never`, the operator on in-cluster config, workers reading
//! kinesis-local and delivering to an HTTP sink on the host through the node's bridge address,
//! a `kubectl delete pod` handoff and an OOM kill through the kubelet. Run by
//! `make test-real-node` (root, one real node per machine); prints FIGURE lines.

use std::{
    net::IpAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{
    TestNamespace,
    chart::run,
    create_stream, kinesis_client, kube_client,
    ledger::{Producer, RecordingSink, explain, figures, produce, wait_delivered},
    unique_name, wait_until,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};

const LONG: Duration = Duration::from_secs(240);
const SHARDS: usize = 4;
/// Static keys, as a cluster without IRSA or EKS Pod Identity gives them: a Secret per
/// namespace, named by the chart's `envFrom` (operator) and `spec.workers.awsCredentials`
/// (workers). The emulator takes any key.
const AWS_KEYS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "000000000000"),
    ("AWS_SECRET_ACCESS_KEY", "test-secret"),
    ("AWS_REGION", "us-east-1"),
];
const AWS_SECRET: &str = "aws-keys";

async fn create_aws_secret(client: &kube::Client, ns: &str) -> Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(AWS_SECRET.into()),
            ..Default::default()
        },
        string_data: Some(
            AWS_KEYS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Whether the pod's container takes its AWS keys from the Secret, not from literal values.
fn has_aws_keys_from_secret(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    let c = spec.map(|s| &s.containers[0]);
    let from_env = c.and_then(|c| c.env.as_ref()).is_some_and(|env| {
        env.iter().any(|e| {
            e.name == "AWS_ACCESS_KEY_ID"
                && e.value.is_none()
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == AWS_SECRET)
        })
    });
    let from_env_from = c.and_then(|c| c.env_from.as_ref()).is_some_and(|sources| {
        sources
            .iter()
            .any(|s| s.secret_ref.as_ref().is_some_and(|r| r.name == AWS_SECRET))
    });
    from_env || from_env_from
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run `make test-real-node`"))
}

fn kubectl(args: &[&str]) -> Result<String> {
    run(Command::new("kubectl").args(args))
}

async fn restrict(client: &kube::Client, ns: &str) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;
    Ok(())
}

/// Seconds from the pod's creation to its Ready condition (the API's one-second timestamps).
fn start_to_ready(pod: &Pod) -> Option<i64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref()?.0.as_second() - created.as_second())
}

fn is_ready(pod: &Pod) -> bool {
    start_to_ready(pod).is_some()
}

/// The host PID of a pod's first container, from containerd on the node.
fn container_pid(node_dir: &str, pod: &Pod) -> Result<u32> {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .context("the pod has no container id")?;
    let id = id.trim_start_matches("containerd://");
    let sock = format!("{node_dir}/containerd.sock");
    let ctr = std::env::var("CONTAINERD_CTR").unwrap_or_else(|_| "ctr".into());
    let tasks = run(Command::new(ctr).args(["-a", &sock, "-n", "k8s.io", "tasks", "ls"]))?;
    tasks
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(id)).then(|| f.next()?.parse().ok())?
        })
        .with_context(|| format!("no task {id} in\n{tasks}"))
}

/// Fills the memory cgroup of the process `pid` from the outside until the kernel's OOM killer,
/// enforcing the container's limit, kills that process (made the first victim by
/// `oom_score_adj` 1000; this host may raise it, never lower it). The filler then exits.
fn oom_kill(pid: u32) -> Result<()> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let memory = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
        .context("no v1 memory cgroup for the container")?;
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), "1000")?;
    let script = format!(
        "import os, time\n\
         open('/sys/fs/cgroup/memory{memory}/cgroup.procs', 'w').write(str(os.getpid()))\n\
         hog = []\n\
         deadline = time.time() + 60\n\
         while time.time() < deadline:\n\
         \x20   try: os.kill({pid}, 0)\n\
         \x20   except ProcessLookupError: break\n\
         \x20   if len(hog) < 256: hog.append(b'x' * (4 << 20))\n\
         \x20   else: time.sleep(0.05)\n"
    );
    // Its own fate does not matter (runc may kill it when it removes the cgroup): the pod's
    // last state, checked by the caller, says whether the worker was OOM-killed.
    let out = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .output()?;
    if !out.status.success() {
        eprintln!(
            "the memory filler ended with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

// Several threads: the sink and the producer run on this runtime while a step blocks in kubectl
// (on one thread, `kubectl delete pod --wait` would stall the sink the deleted worker flushes to).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the real node (root): make test-real-node"]
async fn the_fleet_runs_in_containers_on_the_real_node() -> Result<()> {
    let node_ip: IpAddr = env("REAL_NODE_IP")?.parse()?;
    let node_dir = env("REAL_NODE_DIR")?;
    if let Ok(s) = std::fs::read_to_string(format!("{node_dir}/start-seconds")) {
        println!(
            "FIGURE real node: control plane, containerd, kubelet up and the node Ready in {}s",
            s.trim()
        );
    }
    if let Ok(s) = std::fs::read_to_string(format!("{node_dir}/image-load-seconds")) {
        for l in s.lines() {
            println!("FIGURE image load into containerd (ctr images import): {l}s");
        }
    }
    let client = kube_client().await?;
    let system = TestNamespace::create(&client, "rn-system").await?;
    let apps = TestNamespace::create(&client, "rn-apps").await?;
    restrict(&client, system.name()).await?;
    restrict(&client, apps.name()).await?;
    create_aws_secret(&client, system.name()).await?;
    create_aws_secret(&client, apps.name()).await?;
    let release = unique_name("ko");
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kinesis-operator");
    run(Command::new("helm")
        .args(["install", &release])
        .arg(&chart)
        .args(["--namespace", system.name(), "--set", "replicas=1"])
        .args(["--set", "image.pullPolicy=Never"])
        .args(["--set", &format!("watchNamespace={}", apps.name())])
        .args([
            "--set-json",
            &format!("envFrom=[{{\"secretRef\":{{\"name\":\"{AWS_SECRET}\"}}}}]"),
        ])
        .args([
            "--set-json",
            &format!("allowList.endpoints=[\"http://{node_ip}:*\"]"),
        ]))?;
    let result = scenario(&client, &node_dir, node_ip, system.name(), apps.name()).await;
    if result.is_err() {
        for ns in [system.name(), apps.name()] {
            if let Ok(s) = kubectl(&["get", "pods,events", "-n", ns, "-o", "wide"]) {
                eprintln!("===== {ns}\n{s}");
            }
            if let Ok(s) = kubectl(&[
                "logs",
                "-n",
                ns,
                "--all-containers",
                "--prefix",
                "--tail=40",
                "-l",
                "app.kubernetes.io/managed-by",
            ]) {
                eprintln!("{s}");
            }
        }
    }
    let _ = kubectl(&[
        "delete",
        "kinesisingesters",
        "--all",
        "-n",
        apps.name(),
        "--wait=true",
        "--timeout=60s",
    ]);
    let _ = Command::new("helm")
        .args([
            "uninstall",
            &release,
            "--namespace",
            system.name(),
            "--wait",
        ])
        .output();
    result
}

async fn scenario(
    client: &kube::Client,
    node_dir: &str,
    node_ip: IpAddr,
    system: &str,
    apps: &str,
) -> Result<()> {
    // 1. The operator, from the image, with the chart's ServiceAccount and in-cluster config.
    let selector = "app.kubernetes.io/name=kinesis-operator";
    let pods = Api::<Pod>::namespaced(client.clone(), system);
    let op = wait_until("the operator pod Ready", LONG, || async {
        let list = pods.list(&ListParams::default().labels(selector)).await?;
        Ok(list
            .items
            .into_iter()
            .find(|p| is_ready(p) && has_aws_keys_from_secret(p)))
    })
    .await?;
    let spec = op.spec.clone().unwrap_or_default();
    let c = &spec.containers[0];
    ensure!(
        !c.env.iter().flatten().any(|e| e.name == "KUBECONFIG")
            && !c.args.iter().flatten().any(|a| a.contains("kubeconfig")),
        "the operator must use in-cluster config"
    );
    ensure!(
        c.image
            .as_deref()
            .is_some_and(|i| i.starts_with("ghcr.io/kinesis-operator/kinesis-operator:")),
        "the operator runs the built image, not {:?}",
        c.image
    );
    println!(
        "FIGURE operator pod: created -> Ready in {}s",
        start_to_ready(&op).unwrap_or(-1)
    );

    // 2. Workers reading kinesis-local and delivering to a sink on the host, through the bridge.
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "real-node", SHARDS as i32).await?;
    let kinesis_port = env("KINESIS_ENDPOINT")?
        .rsplit(':')
        .next()
        .context("KINESIS_ENDPOINT has no port")?
        .trim_end_matches('/')
        .to_owned();
    let sink = RecordingSink::new();
    let sink_addr = sink.listen_on(node_ip, "sink").await?;
    let ki: KinesisIngester = serde_saphyr::from_str(&format!(
        "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: fleet}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: 'http://{node_ip}:{kinesis_port}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms, shardSyncInterval: 5s}}
  sink:
    http: {{url: 'http://{sink_addr}/'}}
    batch: {{maxRecords: 100, maxAge: 100ms}}
  workers:
    shardsPerWorker: 2
    awsCredentials: {{secretName: {AWS_SECRET}}}
    resources: {{requests: {{cpu: 20m, memory: 32Mi}}, limits: {{memory: 256Mi}}}}
"
    ))?;
    let kis = Api::<KinesisIngester>::namespaced(client.clone(), apps);
    kis.create(&PostParams::default(), &ki).await?;
    let sts = "fleet-worker";
    wait_until("the worker StatefulSet", LONG, || async {
        Ok(kubectl(&["get", "statefulset", sts, "-n", apps]).ok())
    })
    .await?;
    let workers = Api::<Pod>::namespaced(client.clone(), apps);
    let ready_workers = || async {
        let list = workers.list(&ListParams::default()).await?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && is_ready(p)
                    && has_aws_keys_from_secret(p)
            })
            .collect();
        Ok::<_, anyhow::Error>((ready.len() == SHARDS / 2).then_some(ready))
    };
    let ready = wait_until("both workers Ready with credentials", LONG, ready_workers).await?;
    for p in &ready {
        println!(
            "FIGURE worker pod {}: created -> Ready in {}s",
            p.name_any(),
            start_to_ready(p).unwrap_or(-1)
        );
    }
    produce(&kinesis, &stream, 0, 200).await?;
    wait_delivered(&sink, 200, LONG).await?;
    let status = wait_until("lag in the status", LONG, || async {
        let s = kis.get("fleet").await?.status;
        Ok(s.filter(|s| s.lag.is_some() && s.ready_replicas == 2))
    })
    .await?;
    println!("status: lag {:?}, workers {:?}", status.lag, status.workers);
    // Structured logs through the kubelet: every line of a worker's log is a JSON object.
    let logs = kubectl(&["logs", "fleet-worker-0", "-n", apps])?;
    ensure!(!logs.is_empty(), "the worker logged nothing");
    for l in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).with_context(|| format!("not JSON: {l}"))?;
        ensure!(v.get("level").is_some(), "no level in {l}");
    }

    // 3. `kubectl delete pod`: SIGTERM through the kubelet, a clean handoff.
    let producer = Producer::start(
        kinesis.clone(),
        stream.clone(),
        200,
        20,
        Duration::from_millis(200),
    );
    wait_until("the producer under way", LONG, || async {
        Ok((producer.produced() > 300).then_some(()))
    })
    .await?;
    let log_file = tempfile::NamedTempFile::new()?;
    let mut follow = Command::new("kubectl")
        .args(["logs", "-f", "fleet-worker-0", "-n", apps])
        .stdout(log_file.reopen()?)
        .stderr(Stdio::null())
        .spawn()?;
    let t_del = Instant::now();
    let from = producer.produced();
    let ns = apps.to_owned();
    tokio::task::spawn_blocking(move || {
        kubectl(&[
            "delete",
            "pod",
            "fleet-worker-0",
            "-n",
            &ns,
            "--wait=true",
            "--timeout=120s",
        ])
    })
    .await??;
    let deleted_in = t_del.elapsed();
    let shards_read = wait_until(
        "every shard delivers records produced after the delete",
        LONG,
        || async {
            let mut shards = std::collections::HashSet::new();
            for d in sink.deliveries() {
                if d.payload
                    .rsplit_once('-')
                    .and_then(|(_, i)| i.parse::<usize>().ok())
                    .is_some_and(|i| i >= from)
                {
                    shards.insert(d.shard);
                }
            }
            Ok((shards.len() == SHARDS).then(|| t_del.elapsed()))
        },
    )
    .await?;
    println!(
        "FIGURE kubectl delete pod: pod gone in {:.1}s, every shard read again in {:.1}s",
        deleted_in.as_secs_f64(),
        shards_read.as_secs_f64()
    );
    let _ = follow.wait();
    let said = std::fs::read_to_string(log_file.path())?;
    let after: Vec<&str> = said
        .lines()
        .skip_while(|l| !l.contains("SIGTERM received"))
        .collect();
    println!("the deleted worker after SIGTERM:\n{}", after.join("\n"));
    ensure!(
        said.contains("SIGTERM received"),
        "the deleted worker did not log SIGTERM:\n{said}"
    );
    ensure!(
        said.contains("shard handed back"),
        "the deleted worker handed no shard back:\n{said}"
    );
    wait_until("both workers Ready again", LONG, ready_workers).await?;
    let n = producer.stop().await;
    let got = wait_delivered(&sink, n, LONG).await?;
    let f = figures(&got, n);
    println!("FIGURE delete-pod handoff: {f}");
    ensure!(
        f.lost == 0 && f.duplicated == 0,
        "{f}\n{}",
        explain(&sink.deliveries(), t_del, 10)
    );

    // 4. An OOM kill by the container's memory limit: the kubelet restarts it, it resumes.
    let victim = workers.get("fleet-worker-1").await?;
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .map_or(0, |c| c.restart_count)
    };
    let before = restarts(&victim);
    let pid = container_pid(node_dir, &victim)?;
    let t_oom = Instant::now();
    tokio::task::spawn_blocking(move || oom_kill(pid)).await??;
    let restarted = wait_until(
        "the OOM-killed worker restarted and Ready",
        LONG,
        || async {
            let p = workers.get("fleet-worker-1").await?;
            Ok((restarts(&p) > before && is_ready(&p)).then_some(p))
        },
    )
    .await?;
    let last = restarted
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .context("no last terminated state")?;
    ensure!(
        last.reason.as_deref() == Some("OOMKilled"),
        "last state {last:?}"
    );
    println!(
        "FIGURE OOM kill -> restarted and Ready in {:.1}s",
        t_oom.elapsed().as_secs_f64()
    );
    produce(&kinesis, &stream, n, n + 200).await?;
    let got = wait_delivered(&sink, n + 200, LONG).await?;
    let f = figures(&got, n + 200);
    println!("FIGURE after the OOM kill (at-least-once: redeliveries allowed): {f}");
    if f.lost != 0 {
        bail!("records lost after the OOM kill: {f}");
    }
    Ok(())
}
