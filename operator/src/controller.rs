//! Wiring: the kube-runtime Controller for KinesisIngester, which owns the worker StatefulSets and shard tables and watches worker reports, run behind leader election.

use std::sync::{Arc, atomic::AtomicBool};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kinesis_ingester_api::{
    INGESTER_LABEL, KinesisIngester, KinesisShardAssignment, KinesisWorker,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller,
        events::{Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    context::{Context, Settings},
    leader::{self, LeaderConfig},
    metrics::Metrics,
    reconcile::{error_policy, reconcile},
};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Leader election; `None` runs without it (a single replica).
    pub leader: Option<LeaderConfig>,
    /// Reconcile settings.
    pub settings: Settings,
    /// This replica's name, for events.
    pub instance: String,
    /// Watch only this namespace (a namespaced install); all namespaces when `None`.
    pub watch_namespace: Option<String>,
}

fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How the operator stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop.
    Shutdown,
    /// Lost the leader Lease: the process should exit and start over as a candidate.
    LostLeadership,
}

/// Runs until `stop` fires or leadership is lost.
pub async fn run(
    client: Client,
    config: RunConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Stopped {
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let lost = CancellationToken::new();
    let mut keeper = None;
    if let Some(cfg) = &config.leader {
        if !leader::acquire(&client, cfg, &stop).await {
            return Stopped::Shutdown;
        }
        keeper = Some(tokio::spawn(leader::keep(
            client.clone(),
            cfg.clone(),
            stop.clone(),
            lost.clone(),
        )));
    }
    metrics.set_leader(true);
    let reporter = Reporter {
        controller: "kinesis-operator".into(),
        instance: Some(config.instance.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
        config.settings.clone(),
    ));
    let ns = config.watch_namespace.as_deref();
    let ingesters = scoped::<KinesisIngester>(&client, ns);
    let halt = CancellationToken::new();
    let (h1, h2) = (halt.clone(), halt.clone());
    let reports = Arc::new(crate::report_filter::ReportFilter::default());
    let report_metrics = metrics.clone();
    let controller = Controller::new(ingesters, watcher::Config::default())
        .owns(
            scoped::<StatefulSet>(&client, ns),
            watcher::Config::default().labels(INGESTER_LABEL),
        )
        .owns(
            scoped::<KinesisShardAssignment>(&client, ns),
            watcher::Config::default(),
        )
        .watches(
            scoped::<KinesisWorker>(&client, ns),
            watcher::Config::default(),
            move |w| {
                // Design §7.2: progress alone waits for the periodic pass.
                let admitted = reports.admit(&w);
                report_metrics.worker_report(admitted);
                if !admitted {
                    return None;
                }
                let ns = w.namespace()?;
                let ingester = w.labels().get(INGESTER_LABEL)?.clone();
                Some(ObjectRef::<KinesisIngester>::new(&ingester).within(&ns))
            },
        )
        .graceful_shutdown_on(async move { h1.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((o, _)) => debug!(ingester = %o.name, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile error"),
            }
        });
    info!("controller started");
    let outcome = tokio::select! {
        () = controller => Stopped::Shutdown,
        () = stop.cancelled() => { h2.cancel(); Stopped::Shutdown }
        () = lost.cancelled() => { h2.cancel(); Stopped::LostLeadership }
    };
    metrics.set_leader(false);
    if let Some(k) = keeper {
        if outcome == Stopped::Shutdown {
            // `keep` releases the Lease once `stop` fired.
            let _ = k.await;
        } else {
            k.abort();
        }
    }
    if outcome == Stopped::LostLeadership {
        warn!("lost leadership; exiting so the process restarts as a candidate");
    }
    outcome
}
