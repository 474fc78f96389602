//! Tenant isolation in a shared cluster, on the local control plane: the chart's admission policy against real pod-bound tokens, and the operator's refusals (see docs/operator.md, "Running in a shared cluster").

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{Pod, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kinesis_ingester_api::{
    INGESTER_LABEL, KinesisIngester, KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus,
    ORDINAL_LABEL, SERVICE_ACCOUNT_LABEL,
};
use kinesis_testkit::{
    FIELD_MANAGER, TestNamespace, chart, create_stream,
    fleet::{OperatorProcess, install_operator_rbac},
    install_kinesis_ingester_crd, kinesis_client, kube_client, unique_name, wait_until,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
    config::AuthInfo,
};

const LONG: Duration = Duration::from_secs(60);

/// Applies a rendered object (server-side), returning its kind and name for clean-up.
async fn apply(
    client: &Client,
    ns: &str,
    doc: &serde_json::Value,
) -> Result<(ApiResource, String)> {
    let obj: DynamicObject = serde_json::from_value(doc.clone())?;
    let types = obj
        .types
        .clone()
        .context("a rendered object without apiVersion/kind")?;
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", types.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let kind = types.kind.to_lowercase();
    let plural = match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{kind}s"),
    };
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
    let name = obj.name_any();
    let api: Api<DynamicObject> = if obj.metadata.namespace.is_some() {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {} {name}", types.kind))?;
    Ok((ar, name))
}

/// A client that authenticates with `token` only (no client certificate, no impersonation).
async fn token_client(token: String) -> Result<Client> {
    let mut config = Config::infer().await?;
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..AuthInfo::default()
    };
    Ok(Client::try_from(config)?)
}

/// A TokenRequest for `sa`, bound to `pod` when given (what the kubelet mounts into a pod).
async fn token(client: &Client, ns: &str, sa: &str, pod: Option<&Pod>) -> Result<String> {
    let bound = pod.map(|p| BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(p.name_any()),
        uid: p.uid(),
    });
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            bound_object_ref: bound,
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let out = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for {sa}"))?;
    out.status
        .and_then(|s| s.token)
        .context("a TokenRequest without a token")
}

/// Updates the status of worker `name` as `client` does (the worker's own call: get, then
/// replace the status), returning the API server's refusal message if any.
async fn update_status(client: &Client, ns: &str, name: &str) -> Result<Result<(), String>> {
    let api = Api::<KinesisWorker>::namespaced(client.clone(), ns);
    let mut w = api.get(name).await?;
    let mut status = w.status.take().unwrap_or_default();
    status.renew_time = Some(jiff::Timestamp::now().to_string());
    w.status = Some(status);
    match api.replace_status(name, &PostParams::default(), &w).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 403 => Ok(Err(s.message)),
        Err(e) => Err(e.into()),
    }
}

async fn worker_object(client: &Client, ns: &str, ingester: &str, n: usize) -> Result<()> {
    let mut w = KinesisWorker::new(
        &format!("{ingester}-worker-{n}"),
        KinesisWorkerSpec {
            ingester_uid: "uid".into(),
            fences: vec![],
        },
    );
    w.metadata.labels = Some(
        [
            (INGESTER_LABEL.to_owned(), ingester.to_owned()),
            (ORDINAL_LABEL.to_owned(), n.to_string()),
        ]
        .into(),
    );
    w.status = Some(KinesisWorkerStatus::default());
    Api::<KinesisWorker>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &w)
        .await?;
    Ok(())
}

/// A worker ServiceAccount with the worker Role's rights on KinesisWorkers, as the operator
/// grants them (`<ingester>-worker`).
async fn worker_account(client: &Client, ns: &str, sa: &str) -> Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}
    }))?;
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(sa, &pp, &Patch::Apply(&account))
        .await?;
    let role: Role = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": sa},
        "rules": [
            {"apiGroups": ["kinesis-operator.dev"], "resources": ["kinesisworkers"], "verbs": ["get"]},
            {"apiGroups": ["kinesis-operator.dev"], "resources": ["kinesisworkers/status"], "verbs": ["update"]},
        ]
    }))?;
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(sa, &pp, &Patch::Apply(&role))
        .await?;
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": sa},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(sa, &pp, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

async fn pod(client: &Client, ns: &str, name: &str, sa: &str) -> Result<Pod> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "worker", "image": "kinesis-ingester:e2e"}]}
    }))?;
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await?)
}

/// With the chart's default values, a worker's pod-bound token updates its own KinesisWorker
/// status and no other (same ingester or another), and a token not bound to a pod updates none.
#[tokio::test]
async fn the_default_admission_policy_lets_a_pod_bound_token_update_only_its_own_worker()
-> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "tenancy-policy").await?;
    let ns = ns.name().to_owned();
    let release = unique_name("vap");
    // The chart's defaults; the binding limited to this namespace, so other tests are unaffected.
    let yaml = chart::template(
        &ns,
        &[
            "--set",
            &format!("watchNamespace={ns}"),
            "--set",
            &format!("fullnameOverride={release}"),
            "--show-only",
            "templates/admission-policy.yaml",
        ],
    )
    .context("the chart renders no admission policy with its default values")?;
    let docs = chart::documents(&yaml)?;
    if docs.len() != 2 {
        bail!(
            "expected the policy and its binding, got {} documents",
            docs.len()
        );
    }
    let mut applied = Vec::new();
    for doc in &docs {
        applied.push(apply(&client, &ns, doc).await?);
    }
    let result = async {
        worker_account(&client, &ns, "a-worker").await?;
        worker_account(&client, &ns, "b-worker").await?;
        for (ingester, n) in [("a", 0), ("a", 1), ("b", 0)] {
            worker_object(&client, &ns, ingester, n).await?;
        }
        let a0 = pod(&client, &ns, "a-worker-0", "a-worker").await?;
        let b0 = pod(&client, &ns, "b-worker-0", "b-worker").await?;
        // A pod named like a worker of `a` but running as `b`'s ServiceAccount.
        let impostor = pod(&client, &ns, "a-worker-1", "b-worker").await?;

        // A plain ServiceAccount token (no pod) is refused once the policy is in force; wait on
        // that, since a new policy takes a moment to reach the API server's admission chain.
        let plain = token_client(token(&client, &ns, "a-worker", None).await?).await?;
        let refused = wait_until("the policy refuses a token without a pod", LONG, || async {
            Ok(update_status(&plain, &ns, "a-worker-0").await?.err())
        })
        .await?;
        assert!(refused.contains("pod-bound token"), "{refused}");

        let own = token_client(token(&client, &ns, "a-worker", Some(&a0)).await?).await?;
        update_status(&own, &ns, "a-worker-0")
            .await?
            .map_err(|m| anyhow::anyhow!("a worker's own status update was refused: {m}"))?;
        let sibling = update_status(&own, &ns, "a-worker-1").await?;
        let msg = sibling.expect_err("pod a-worker-0 updated a-worker-1");
        assert!(
            msg.contains("may update only the status of the KinesisWorker named after it"),
            "{msg}"
        );
        let other = update_status(&own, &ns, "b-worker-0").await?;
        let msg = other.expect_err("pod a-worker-0 updated another ingester's worker");
        assert!(msg.contains("not b-worker-0"), "{msg}");

        let b = token_client(token(&client, &ns, "b-worker", Some(&b0)).await?).await?;
        update_status(&b, &ns, "b-worker-0")
            .await?
            .map_err(|m| anyhow::anyhow!("b's own status update was refused: {m}"))?;
        let msg = update_status(&b, &ns, "a-worker-0")
            .await?
            .expect_err("pod b-worker-0 updated a worker of a");
        assert!(msg.contains("named after it"), "{msg}");

        let imp = token_client(token(&client, &ns, "b-worker", Some(&impostor)).await?).await?;
        let msg = update_status(&imp, &ns, "a-worker-1")
            .await?
            .expect_err("a pod of b's ServiceAccount named a-worker-1 updated a's worker");
        assert!(
            msg.contains("is not the worker ServiceAccount of ingester a"),
            "{msg}"
        );
        // The operator's and people's writes are not affected (this client is the admin).
        update_status(&client, &ns, "a-worker-1")
            .await?
            .map_err(|m| anyhow::anyhow!("the admin's status update was refused: {m}"))?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    for (ar, name) in applied.iter().rev() {
        let _ = Api::<DynamicObject>::all_with(client.clone(), ar)
            .delete(name, &DeleteParams::default())
            .await;
    }
    result
}

/// The `Ready` condition of `name` once its reason is `reason`.
async fn ready_with_reason(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Result<Condition> {
    let api = Api::<KinesisIngester>::namespaced(client.clone(), ns);
    wait_until(
        &format!("{name} Ready with reason {reason}"),
        LONG,
        || async {
            let ki = api.get(name).await?;
            Ok(ki
                .status
                .into_iter()
                .flat_map(|s| s.conditions)
                .find(|c| c.type_ == "Ready" && c.reason == reason))
        },
    )
    .await
}

/// An ingester from `spec` (JSON), created in `ns`.
async fn create_ingester(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Result<()> {
    let ki: KinesisIngester = serde_json::from_value(serde_json::json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
        "metadata": {"name": name}, "spec": spec,
    }))?;
    Api::<KinesisIngester>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ki)
        .await?;
    Ok(())
}

/// An endpoint outside the operator's allow-list (the harness allows `http://127.0.0.1:*`)
/// makes `Ready=False` reason `NotAllowed`, naming the field and the list, and the operator
/// never connects to it (a listener on 127.0.0.2 counts connections).
#[tokio::test]
async fn an_endpoint_outside_the_allow_list_is_not_allowed_and_never_called() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "tenancy-allow").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let accept = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let result = async {
        let endpoint = format!("http://127.0.0.2:{port}");
        create_ingester(
            &client,
            ns.name(),
            "foreign",
            serde_json::json!({
                "stream": {"name": "orders", "region": "us-east-1", "endpoint": endpoint},
                "read": {"mode": "Polling"},
                "sink": {"stdout": {}},
            }),
        )
        .await?;
        let ready = ready_with_reason(&client, ns.name(), "foreign", "NotAllowed").await?;
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("spec.stream.endpoint"),
            "{}",
            ready.message
        );
        assert!(ready.message.contains(&endpoint), "{}", ready.message);
        assert!(
            ready
                .message
                .contains("--allowed-endpoints ([http://127.0.0.1:*])"),
            "{}",
            ready.message
        );
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "the operator connected to an endpoint it refused"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    accept.abort();
    let log = operator.log.clone();
    operator.kill().await;
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    result
}

/// A `<name>-worker` ServiceAccount that the ingester did not make is not adopted: the ingester
/// gets `Ready=False` reason `ForeignObject` naming it, the operator applies nothing over it,
/// and it outlives the ingester (no owner reference for garbage collection to follow).
#[tokio::test]
async fn a_foreign_worker_service_account_is_reported_and_left_alone() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "tenancy-adopt").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "adopt", 1).await?;
    let sa_api = Api::<ServiceAccount>::namespaced(client.clone(), ns.name());
    let theirs: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "orders-worker", "labels": {"team": "payments"}},
    }))?;
    let before = sa_api.create(&PostParams::default(), &theirs).await?;
    let dir = tempfile::tempdir()?;
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let result = async {
        create_ingester(&client, ns.name(), "orders", serde_json::json!({
            "stream": {"name": stream, "region": "us-east-1", "endpoint": std::env::var("KINESIS_ENDPOINT")?},
            "read": {"mode": "Polling"},
            "sink": {"stdout": {}},
        }))
        .await?;
        let ready = ready_with_reason(&client, ns.name(), "orders", "ForeignObject").await?;
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.starts_with("ServiceAccount orders-worker already exists"),
            "{}",
            ready.message
        );
        let after = sa_api.get("orders-worker").await?;
        assert_eq!(after.resource_version(), before.resource_version(), "the ServiceAccount was changed");
        assert!(after.metadata.owner_references.is_none());
        let sts = Api::<StatefulSet>::namespaced(client.clone(), ns.name());
        assert!(sts.get_opt("orders-worker").await?.is_none(), "workers run as a foreign account");

        let api = Api::<KinesisIngester>::namespaced(client.clone(), ns.name());
        api.delete("orders", &DeleteParams::default()).await?;
        wait_until("the ingester is deleted", LONG, || async {
            Ok(api.get_opt("orders").await?.is_none().then_some(()))
        })
        .await?;
        let survivor = sa_api.get("orders-worker").await?;
        assert_eq!(survivor.resource_version(), before.resource_version());
        assert!(
            survivor.metadata.owner_references.is_none(),
            "garbage collection would delete it"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let log = operator.log.clone();
    operator.kill().await;
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    result
}

/// The label the admission policy reads follows `spec.workers.serviceAccountName`, also on
/// worker objects that already exist.
#[tokio::test]
async fn worker_objects_are_labelled_with_the_current_service_account() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "tenancy-sa-label").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "sa-label", 1).await?;
    let dir = tempfile::tempdir()?;
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let workers = Api::<KinesisWorker>::namespaced(client.clone(), ns.name());
    let labelled = |sa: &'static str| {
        let workers = workers.clone();
        async move {
            wait_until(&format!("orders-worker-0 labelled {sa}"), LONG, || async {
                let w = workers.get_opt("orders-worker-0").await?;
                Ok(w.filter(|w| {
                    w.labels().get(SERVICE_ACCOUNT_LABEL).map(String::as_str) == Some(sa)
                })
                .map(|_| ()))
            })
            .await
        }
    };
    let result = async {
        create_ingester(&client, ns.name(), "orders", serde_json::json!({
            "stream": {"name": stream, "region": "us-east-1", "endpoint": std::env::var("KINESIS_ENDPOINT")?},
            "read": {"mode": "Polling"},
            "sink": {"stdout": {}},
            "workers": {"serviceAccountName": "team-a"},
        }))
        .await?;
        labelled("team-a").await?;
        Api::<KinesisIngester>::namespaced(client.clone(), ns.name())
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"workers": {"serviceAccountName": "team-b"}}})),
            )
            .await?;
        labelled("team-b").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let log = operator.log.clone();
    operator.kill().await;
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    result
}
