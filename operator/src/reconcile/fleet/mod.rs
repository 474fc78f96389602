//! The fleet pass of a reconcile: observe the workers, plan the fences and the shard table
//! ([`plan`], pure), write them in the protocol's order ([`act`]), size the StatefulSet, and
//! write status.

mod act;
mod plan;

use std::collections::BTreeSet;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kinesis_ingester_api::{
    INGESTER_LABEL, KinesisIngester, KinesisShardAssignment, KinesisWorker,
};
use kinesis_protocol::handoff::{self, Transition, WorkerState, Workers};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::events::EventType,
};
use tracing::{info, warn};

pub(super) use self::act::{Cas, cas_replace};
use self::plan::Now;
use super::{
    FIELD_MANAGER, Observed, describe, labels, liveness, publish, result_label, status, workload,
};
use crate::{
    context::Context,
    error::{Error, Result, kube as kerr},
    topology::Topology,
};

/// What the next requeue depends on.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Handoffs or scaling in progress: requeue soon.
    pub busy: bool,
    /// The stream cannot be read: back off.
    pub problem: bool,
    /// A shard finished: list the stream again.
    pub refresh_topology: bool,
    /// When the next live worker would expire if it does not report again: the reconcile
    /// after that moment fences it without waiting for the periodic requeue.
    pub next_expiry: Option<std::time::Duration>,
    /// The table was written less than the coalescing gap ago: plan again after this.
    pub table_wait: Option<std::time::Duration>,
}

/// Runs the fleet pass: observe, plan (pure, [`plan`]), act ([`act`], in the protocol's
/// write order), status.
pub async fn run(
    ki: &KinesisIngester,
    ctx: &Context,
    observed: Observed,
    topology: Option<&Topology>,
) -> Result<InFlight> {
    let now = Now::read();
    let Observed {
        names,
        table,
        mut problem,
    } = observed;
    // A transform that does not compile stops the fleet (see `transform::stopped`).
    if problem.is_none() {
        problem = super::transform::problem(ki);
    }
    let ns = names.namespace.clone();
    let name = names.ingester.clone();
    let uid = ki.uid().ok_or(Error::MissingMetadata("uid"))?;
    let owner = ki
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    let key = super::key_of(ki);
    let id = labels(ki);
    let mut in_flight = InFlight {
        problem: problem.is_some(),
        ..InFlight::default()
    };

    // Observe the workers: objects of an earlier incarnation go; the rest are judged live or not.
    let worker_api: Api<KinesisWorker> = Api::namespaced(ctx.client.clone(), &ns);
    let (objects, stale): (Vec<_>, Vec<_>) = worker_api
        .list(&ListParams::default().labels(&format!("{INGESTER_LABEL}={name}")))
        .await
        .map_err(kerr("listing workers"))?
        .items
        .into_iter()
        .partition(|w| w.spec.ingester_uid == uid);
    act::delete_workers(&worker_api, &stale).await;
    let lives = {
        let mut memory = ctx.memory();
        liveness(
            memory.entry(key.clone()).or_default(),
            &objects,
            ctx.settings.worker_lease,
            now.tokio,
        )
    };
    let workers: Workers = objects
        .into_iter()
        .zip(lives)
        .map(|(object, liveness)| (object.name_any(), WorkerState { object, liveness }))
        .collect();

    // The table: plan the fences, write them, plan the table with the fences that landed,
    // write it. Coalescing: nothing is planned or written until the gap has passed; the
    // fleet's size still follows the table as it is.
    in_flight.table_wait = ctx
        .memory()
        .get(&key)
        .and_then(|m| handoff::table_write_wait(m.table_written, now.mono));
    let mut transitions = Vec::new();
    // The autoscaler decides before the table is planned, from the reports of this pass.
    let autoscaled = table.as_ref().and_then(|t| {
        let mut memory = ctx.memory();
        let m = memory.entry(key.clone()).or_default();
        plan::autoscale(
            ki,
            &t.spec,
            &workers,
            &mut m.autoscale,
            now,
            problem.is_some(),
        )
    });
    let sizing = match &autoscaled {
        _ if problem.is_some() => plan::Sizing::Recorded,
        Some(d) => plan::Sizing::Autoscaled(d.size),
        None => plan::Sizing::ByShards,
    };
    let (desired, planned) = match table {
        None => (plan::recorded_size(ki), None),
        Some(table) if in_flight.table_wait.is_some() => {
            let desired = plan::coalesced_size(ki, &table.spec, sizing);
            (desired, Some(table))
        }
        Some(table) => {
            let mut fp = {
                let mut memory = ctx.memory();
                let m = memory.entry(key.clone()).or_default();
                plan::fences(
                    ki,
                    &table.spec,
                    &workers,
                    &mut m.timers,
                    ctx.settings.expiries,
                    topology,
                    now,
                )
            };
            let candidates = std::mem::take(&mut fp.candidates);
            let fenced = act::fence_all(ctx, &id, &worker_api, candidates, &fp.spec, |c| {
                ctx.memory()
                    .get(&key)
                    .and_then(|m| m.seen.get(&c.worker).map(|(status, _)| status.clone()))
            })
            .await;
            let tp = plan::table(ki, fp, fenced.landed(), &workers, topology, sizing, now);
            if tp.rebalanced {
                ctx.metrics.rebalanced(&id);
            }
            if let Some(note) = tp.shards_found.clone() {
                info!(%note, "first listing");
                publish(ctx, ki, EventType::Normal, "ShardsFound", "Plan", note).await;
            }
            if let Some(e) = &tp.reset_error {
                warn!(error = %e, "spec.reset not applied");
                publish(
                    ctx,
                    ki,
                    EventType::Warning,
                    "ResetInvalid",
                    "Plan",
                    e.to_string(),
                )
                .await;
            }
            transitions = tp.transitions;
            let written = if let Some(too_large) = tp.too_large {
                // Writing would fail at etcd's request limit, possibly mid-handoff: stop here.
                problem = Some(too_large);
                in_flight.problem = true;
                table
            } else {
                let api = Api::<KinesisShardAssignment>::namespaced(ctx.client.clone(), &ns);
                let written = act::write_table(ctx, &id, &api, &table, tp.spec, fenced).await?;
                if written.metadata.resource_version != table.metadata.resource_version {
                    ctx.memory().entry(key.clone()).or_default().table_written = Some(now.mono);
                }
                written
            };
            (tp.desired, Some(written))
        }
    };
    for t in &transitions {
        let (reason, note) = describe(t);
        info!(reason, %note, "shard transition");
        match t {
            Transition::Released { .. } => ctx.metrics.handoff(&id, "rebalance"),
            Transition::Finished { .. } => in_flight.refresh_topology = true,
            Transition::StreamRecreated { .. } => {
                ctx.memory().entry(key.clone()).or_default().recreated =
                    Some((now.tokio, note.clone()));
            }
            _ => {}
        }
        let kind = match t {
            Transition::AlreadyFenced { .. }
            | Transition::OwnerGone { .. }
            | Transition::StreamRecreated { .. } => EventType::Warning,
            Transition::Rewound { unknown, .. } if !unknown.is_empty() => EventType::Warning,
            Transition::Rewound { .. } => EventType::Normal,
            Transition::Discovered { .. } | Transition::Draining { .. } => EventType::Normal,
            _ => continue,
        };
        publish(ctx, ki, kind, reason, "Plan", note).await;
    }
    let planned_spec = planned.as_ref().map(|t| &t.spec);

    // Workload: keep workers that still own shards until they release them.
    let replicas = plan::replicas(&name, desired, planned_spec);
    let writes = plan::worker_objects(ki, &owner, &uid, &names.service_account, replicas, &workers);
    act::write_workers(ctx, &id, &worker_api, writes).await?;
    let sts_api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);
    let previous_replicas = sts_api
        .get_opt(&names.workload)
        .await
        .map_err(kerr("reading the StatefulSet"))?
        .map(|s| s.spec.replicas.unwrap_or(0));
    let sts = workload::stateful_set(ki, &names, &owner, replicas, &ctx.settings.workload);
    // The workload is applied when it changed, when the StatefulSet is missing, and every
    // REAPPLY_AFTER in case someone edited it; not on every worker report.
    let desired_hash = workload_hash(&names, &owner, &sts);
    let fresh = ctx
        .memory()
        .get(&key)
        .and_then(|m| m.applied)
        .is_some_and(|(h, at)| {
            h == desired_hash && now.tokio.saturating_duration_since(at) < REAPPLY_AFTER
        });
    if !(fresh && previous_replicas.is_some()) {
        if let Some(foreign) = super::adopt::apply(ki, ctx, &names, &owner, &sts).await? {
            warn!(reason = foreign.reason, message = %foreign.message, "not applying the workload");
            in_flight.problem = true;
            problem.get_or_insert(foreign);
        } else {
            ctx.memory().entry(key.clone()).or_default().applied = Some((desired_hash, now.tokio));
        }
    }
    if previous_replicas.is_some_and(|p| p != replicas) {
        publish(
            ctx,
            ki,
            EventType::Normal,
            "Scaling",
            "Scale",
            format!("workers {} → {replicas}", previous_replicas.unwrap_or(0)),
        )
        .await;
    }

    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&workload::selector_string(&name)))
        .await
        .map_err(kerr("listing worker pods"))?
        .items;
    let pod_names: BTreeSet<String> = pods.iter().map(ResourceExt::name_any).collect();
    let ready_pods = pods.iter().filter(|p| pod_ready(p)).count();
    // Worker objects of removed ordinals go once their pod is gone and they own nothing.
    act::delete_workers(
        &worker_api,
        plan::removable_workers(&name, &workers, replicas, planned_spec, &pod_names),
    )
    .await;

    // A problem found while planning the table also sizes the fleet as recorded.
    let autoscaled = autoscaled.filter(|_| problem.is_none());
    if let Some(d) = autoscaled
        .as_ref()
        .filter(|d| d.size != plan::recorded_size(ki))
    {
        info!(reason = d.reason.as_str(), message = %d.message, "autoscaled");
        publish(
            ctx,
            ki,
            EventType::Normal,
            "Autoscaled",
            "Scale",
            d.message.clone(),
        )
        .await;
    }

    // Status.
    let previous = ki.status.clone();
    // Without a decision (a stream problem), the last one stays shown while autoscaling is on.
    let autoscaling = match autoscaled {
        Some(d) => Some(plan::autoscaling_status(ki, d, now)),
        None if plan::autoscale_policy(ki).is_some() => {
            previous.as_ref().and_then(|s| s.autoscaling.clone())
        }
        None => None,
    };
    let recreated = ctx
        .memory()
        .get(&key)
        .and_then(|m| m.recreated.clone())
        .filter(|(at, _)| {
            now.tokio.saturating_duration_since(*at) < super::STREAM_RECREATED_SHOWN_FOR
        })
        .map(|(_, note)| note);
    let (next, gauges) = status::compute(&status::StatusInput {
        generation: ki.meta().generation,
        stream_name: ki.stream_ref().name().to_owned(),
        table: planned_spec,
        workers: &workers,
        desired,
        ready_pods: i32::try_from(ready_pods).unwrap_or(i32::MAX),
        open_shards: topology.map(Topology::open_shards),
        strict_order: ki.spec.read.strict_order,
        problem: problem.clone(),
        selector: workload::selector_string(&name),
        previous: previous.as_ref(),
        suspended: ki.spec.suspend,
        autoscaling,
        recreated,
        now: now.wall,
    });
    ctx.metrics.set_fleet(&id, &gauges);
    in_flight.next_expiry = ctx
        .memory()
        .get(&key)
        .and_then(|m| plan::next_expiry(&workers, &m.seen, ctx.settings.worker_lease, now));
    in_flight.busy = next
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.status == "True");
    write_status(ki, ctx, &key, previous.as_ref(), next, now).await?;
    if let Some(p) = &problem {
        let was = ki
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
            .map(|c| c.reason.clone());
        if was.as_deref() != Some(p.reason) {
            publish(
                ctx,
                ki,
                EventType::Warning,
                p.reason,
                "ReadStream",
                p.message.clone(),
            )
            .await;
        }
    }
    Ok(in_flight)
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Writes status with server-side apply: at once when something other than lag changed or the
/// lag jumped (see [`status::lag_jumped`]), otherwise at most once per status interval.
async fn write_status(
    ki: &KinesisIngester,
    ctx: &Context,
    key: &str,
    previous: Option<&kinesis_ingester_api::KinesisIngesterStatus>,
    next: kinesis_ingester_api::KinesisIngesterStatus,
    now: Now,
) -> Result<()> {
    let structural = previous.is_none_or(|p| {
        status::structurally_different(p, &next)
            || status::lag_jumped(p.max_millis_behind_latest, next.max_millis_behind_latest)
    });
    let changed = previous != Some(&next);
    let due = ctx
        .memory()
        .get(key)
        .and_then(|m| m.status_written)
        .is_none_or(|at| now.tokio.saturating_duration_since(at) >= ctx.settings.status_interval);
    if !changed || !(structural || due) {
        return Ok(());
    }
    let api: Api<KinesisIngester> =
        Api::namespaced(ctx.client.clone(), &ki.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": kinesis_ingester_api::API_VERSION,
        "kind": kinesis_ingester_api::KIND,
        "status": next,
    });
    let res = api
        .patch_status(
            &ki.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    ctx.metrics.write(&labels(ki), "status", result_label(&res));
    res.map_err(kerr("writing status"))?;
    ctx.memory()
        .entry(key.to_owned())
        .or_default()
        .status_written = Some(now.tokio);
    Ok(())
}

/// How long an applied workload is trusted before it is applied again.
const REAPPLY_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// A hash of everything the workload pass applies (ServiceAccount, Role, RoleBinding,
/// StatefulSet), so an unchanged workload is not sent again.
fn workload_hash(
    names: &workload::Names,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    sts: &StatefulSet,
) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let objects = serde_json::json!([
        workload::service_account(names, owner),
        workload::role(names, owner),
        workload::role_binding(names, owner),
        sts,
    ]);
    let mut h = DefaultHasher::new();
    objects.to_string().hash(&mut h);
    h.finish()
}
