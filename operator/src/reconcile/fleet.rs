//! The fleet pass of a reconcile: read the workers, fence and plan the shard table, write it, size the StatefulSet, and write status.

use k8s_openapi::{
    api::{apps::v1::StatefulSet, core::v1::Pod},
    jiff::Timestamp,
};
use kinesis_ingester_api::{
    INGESTER_LABEL, KinesisIngester, KinesisShardAssignment, KinesisWorker, KinesisWorkerSpec,
    ORDINAL_LABEL, SERVICE_ACCOUNT_LABEL, StartingPositionType, worker_name,
};
use kinesis_protocol::{
    handoff::{self, Liveness, Transition, WorkerState, Workers},
    plan,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::events::EventType,
};
use tracing::{info, warn};

use super::{
    FIELD_MANAGER, Observed, describe, labels, liveness, ordinal, publish, result_label, status,
    workload,
};
use crate::{
    context::Context,
    error::{Error, Result, is_conflict, is_not_found, kube as kerr},
    metrics::IngesterLabels,
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

/// Runs the fleet pass.
pub async fn run(
    ki: &KinesisIngester,
    ctx: &Context,
    observed: Observed,
    topology: Option<&Topology>,
) -> Result<InFlight> {
    let Observed {
        names,
        table,
        mut problem,
    } = observed;
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

    // Workers: drop objects of an earlier incarnation, then judge liveness.
    let worker_api: Api<KinesisWorker> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{INGESTER_LABEL}={name}");
    let listed = worker_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kerr("listing workers"))?
        .items;
    let mut objects = Vec::new();
    for w in listed {
        if w.spec.ingester_uid == uid {
            objects.push(w);
        } else {
            let _ = worker_api.delete(&w.name_any(), &delete_exactly(&w)).await;
        }
    }
    let lives = {
        let mut memory = ctx.memory();
        liveness(
            memory.entry(key.clone()).or_default(),
            &objects,
            ctx.settings.worker_lease,
        )
    };
    let workers: Workers = objects
        .into_iter()
        .zip(lives)
        .map(|(object, liveness)| (object.name_any(), WorkerState { object, liveness }))
        .collect();

    // Plan the table: reports, fences, topology, owners.
    let mut transitions = Vec::new();
    // Suspended: no worker is wanted (`plan::fleet_size`), so every shard is handed back through
    // the same planned handoff as any resize.
    let mut desired = if ki.spec.suspend {
        0
    } else {
        ki.status
            .as_ref()
            .map(|s| s.replicas)
            .unwrap_or(0)
            .max(ki.spec.workers.min_replicas)
    };
    let mut planned = None;
    let now = std::time::Instant::now();
    in_flight.table_wait = ctx
        .memory()
        .get(&key)
        .and_then(|m| handoff::table_write_wait(m.table_written, now));
    if let Some(table) = table.as_ref().filter(|_| in_flight.table_wait.is_some()) {
        // Coalescing: nothing is planned or written until the gap has passed; the fleet's size
        // still follows the table as it is.
        if problem.is_none() {
            let eligible = handoff::eligible(&table.spec, ki.spec.read.strict_order);
            desired = plan::fleet_size(&ki.spec, eligible.len());
        }
        planned = Some(table.clone());
    } else if let Some(table) = &table {
        let mut spec = table.spec.clone();
        let candidates = {
            let mut memory = ctx.memory();
            let m = memory.entry(key.clone()).or_default();
            transitions.extend(handoff::absorb_reports(
                &mut spec,
                &workers,
                &mut m.timers,
                ctx.settings.expiries,
                now,
            ));
            handoff::fence_candidates(&spec, &workers, &mut m.timers, ctx.settings.expiries, now)
        };
        // The size check runs before any fence is written, so that no fence lands without its
        // table write for this reason.
        let longest_owner = worker_name(&name, ki.spec.workers.max_replicas.max(desired));
        let oversized =
            handoff::too_large_after(&spec, topology.map(|t| t.listed.as_slice()), &longest_owner);
        let candidates = if oversized.is_some() {
            Vec::new()
        } else {
            candidates
        };
        for c in candidates {
            // What this pass judged: an expired worker is fenced only while its status is still
            // the one seen expiring (a worker that reported since is alive, and keeps its shards).
            let judged = (c.reason == handoff::FenceReason::Expired)
                .then(|| {
                    ctx.memory()
                        .get(&key)
                        .and_then(|m| m.seen.get(&c.worker).map(|(status, _)| status.clone()))
                })
                .flatten();
            match fence(ctx, &id, &worker_api, &c, &spec, judged.as_deref()).await {
                Ok(Fence::Renewed) => {
                    info!(worker = %c.worker, shard = %c.shard, "the worker reported since it was judged expired; not fencing it");
                }
                Ok(Fence::Written(fenced)) => {
                    ctx.metrics.fence(&id, c.reason.label());
                    ctx.metrics.handoff(&id, c.reason.label());
                    handoff::apply_fence(&mut spec, &fenced, &c.shard, c.epoch);
                    warn!(worker = %c.worker, shard = %c.shard, epoch = c.epoch, reason = c.reason.label(), "fenced a shard off its worker");
                    transitions.push(Transition::AlreadyFenced {
                        shard: c.shard.clone(),
                        owner: c.worker.clone(),
                    });
                }
                Err(e) => {
                    warn!(worker = %c.worker, shard = %c.shard, error = %e, "cannot fence yet; the shard stays put")
                }
            }
        }
        if let Some(t) = topology {
            let pin = (ki.spec.read.starting_position.kind == StartingPositionType::Latest)
                .then(Timestamp::now);
            // The first listing of a stream is not a reshard: one event for all its shards.
            let first = spec.shards.is_empty() && spec.finished.is_empty();
            let merged = handoff::merge_topology(&mut spec, &t.listed, pin);
            if first && !merged.is_empty() {
                let note = format!(
                    "found {} shards of stream {}",
                    merged.len(),
                    ki.stream_ref().name()
                );
                info!(%note, "first listing");
                publish(ctx, ki, EventType::Normal, "ShardsFound", "Plan", note).await;
                transitions.extend(
                    merged
                        .into_iter()
                        .filter(|t| !matches!(t, Transition::Discovered { .. })),
                );
            } else {
                transitions.extend(merged);
            }
        }
        let eligible = handoff::eligible(&spec, ki.spec.read.strict_order);
        if problem.is_none() {
            desired = plan::fleet_size(&ki.spec, eligible.len());
        }
        let assignable: Vec<String> = workers
            .iter()
            .filter(|(n, w)| w.liveness == Liveness::Live && ordinal(&name, n) < desired)
            .map(|(n, _)| n.clone())
            .collect();
        let max_handoffs = handoff::max_handoffs(eligible.len());
        let mut planned_now = handoff::plan_owners(
            &mut spec,
            &assignable,
            &workers,
            ki.spec.read.strict_order,
            max_handoffs,
        );
        if ki.spec.suspend {
            planned_now.extend(handoff::drain_all(&mut spec, &workers, max_handoffs));
        }
        if planned_now
            .iter()
            .any(|t| matches!(t, Transition::Draining { .. }))
        {
            ctx.metrics.rebalanced(&id);
        }
        transitions.extend(planned_now);
        spec.count_shards();
        let mut next = table.clone();
        if let Some(bytes) = oversized.or_else(|| handoff::too_large(&spec)) {
            // Writing would fail at etcd's request limit, possibly mid-handoff: stop here.
            problem = Some(status::StreamProblem {
                reason: "AssignmentTooLarge",
                message: format!(
                    "the shard table would be {bytes} bytes, over the {} byte limit (about 3,000 active shards); split the stream across several ingesters",
                    handoff::MAX_TABLE_BYTES
                ),
            });
            in_flight.problem = true;
        } else if spec != table.spec {
            next.spec = spec;
            let res = Api::<KinesisShardAssignment>::namespaced(ctx.client.clone(), &ns)
                .replace(&name, &PostParams::default(), &next)
                .await;
            ctx.metrics.write(&id, "assignment", result_label(&res));
            next = res.map_err(|e| {
                if is_conflict(&e) {
                    Error::Conflict
                } else {
                    kerr("writing the shard table")(e)
                }
            })?;
            ctx.memory().entry(key.clone()).or_default().table_written = Some(now);
        }
        planned = Some(next);
    }
    for t in &transitions {
        let (reason, note) = describe(t);
        info!(reason, %note, "shard transition");
        match t {
            Transition::Released { .. } => ctx.metrics.handoff(&id, "rebalance"),
            Transition::Finished { .. } => in_flight.refresh_topology = true,
            _ => {}
        }
        if matches!(
            t,
            Transition::Discovered { .. }
                | Transition::Draining { .. }
                | Transition::AlreadyFenced { .. }
                | Transition::OwnerGone { .. }
        ) {
            let kind = if matches!(
                t,
                Transition::AlreadyFenced { .. } | Transition::OwnerGone { .. }
            ) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(ctx, ki, kind, reason, "Plan", note).await;
        }
    }

    // Workload: keep workers that still own shards until they release them.
    let owning_max = planned
        .as_ref()
        .map(|t| handoff::owning_workers(&t.spec))
        .unwrap_or_default()
        .iter()
        .map(|w| ordinal(&name, w))
        .filter(|o| *o != i32::MAX)
        .max()
        .map_or(0, |o| o + 1);
    let replicas = desired.max(owning_max);
    // Worker objects exist before their pods, so workers never need `create`.
    for n in 0..replicas {
        let wname = worker_name(&name, n);
        if !workers.contains_key(&wname) {
            let mut w = KinesisWorker::new(
                &wname,
                KinesisWorkerSpec {
                    ingester_uid: uid.clone(),
                    fences: vec![],
                },
            );
            w.metadata.owner_references = Some(vec![owner.clone()]);
            w.metadata.labels = Some(
                [
                    (INGESTER_LABEL.to_owned(), name.clone()),
                    (ORDINAL_LABEL.to_owned(), n.to_string()),
                    (
                        SERVICE_ACCOUNT_LABEL.to_owned(),
                        names.service_account.clone(),
                    ),
                ]
                .into(),
            );
            let res = worker_api.create(&PostParams::default(), &w).await;
            ctx.metrics.write(&id, "worker", result_label(&res));
            match res {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(kerr("creating a worker object")(e)),
            }
        } else if let Some(w) = workers.get(&wname)
            && w.object.labels().get(SERVICE_ACCOUNT_LABEL) != Some(&names.service_account)
        {
            // Made before the label existed, or spec.workers.serviceAccountName changed: the
            // admission policy lets only this ServiceAccount write the worker's status. Labels
            // are not status, so the worker's liveness is unaffected; a conflict waits a pass.
            let mut o = w.object.clone();
            o.labels_mut().insert(
                SERVICE_ACCOUNT_LABEL.to_owned(),
                names.service_account.clone(),
            );
            let res = worker_api.replace(&wname, &PostParams::default(), &o).await;
            ctx.metrics.write(&id, "worker", result_label(&res));
            if let Some(e) = res.as_ref().err().filter(|e| !is_conflict(e)) {
                warn!(worker = %wname, error = %e, "cannot label a worker object with its ServiceAccount");
            }
        }
    }
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
        .is_some_and(|(h, at)| h == desired_hash && at.elapsed() < REAPPLY_AFTER);
    if !(fresh && previous_replicas.is_some()) {
        if let Some(foreign) = super::adopt::apply(ki, ctx, &names, &owner, &sts).await? {
            warn!(reason = foreign.reason, message = %foreign.message, "not applying the workload");
            in_flight.problem = true;
            problem.get_or_insert(foreign);
        } else {
            ctx.memory().entry(key.clone()).or_default().applied =
                Some((desired_hash, tokio::time::Instant::now()));
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
    let pod_names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
    let ready_pods = pods.iter().filter(|p| pod_ready(p)).count();
    // Worker objects of removed ordinals go once their pod is gone and they own nothing.
    let owning = planned
        .as_ref()
        .map(|t| handoff::owning_workers(&t.spec))
        .unwrap_or_default();
    for (wname, w) in workers
        .iter()
        .filter(|(n, _)| ordinal(&name, n) >= replicas)
    {
        if !owning.contains(wname) && !pod_names.contains(wname) {
            let res = worker_api.delete(wname, &delete_exactly(&w.object)).await;
            if let Some(e) = res.as_ref().err().filter(|e| !is_not_found(e)) {
                warn!(worker = %wname, error = %e, "cannot delete a removed worker's object");
            }
        }
    }

    // Status.
    let previous = ki.status.clone();
    let (next, gauges) = status::compute(&status::StatusInput {
        generation: ki.meta().generation,
        stream_name: ki.stream_ref().name().to_owned(),
        table: planned.as_ref().map(|t| &t.spec),
        workers: &workers,
        desired,
        ready_pods: i32::try_from(ready_pods).unwrap_or(i32::MAX),
        open_shards: topology.map(Topology::open_shards),
        strict_order: ki.spec.read.strict_order,
        problem: problem.clone(),
        selector: workload::selector_string(&name),
        previous: previous.as_ref(),
        suspended: ki.spec.suspend,
        now: Timestamp::now(),
    });
    ctx.metrics.set_fleet(&id, &gauges);
    in_flight.next_expiry = {
        let memory = ctx.memory();
        memory.get(&key).and_then(|m| {
            workers
                .iter()
                .filter(|(_, w)| w.liveness == Liveness::Live)
                .filter_map(|(n, _)| m.seen.get(n))
                .map(|(_, at)| {
                    (*at + ctx.settings.worker_lease)
                        .saturating_duration_since(tokio::time::Instant::now())
                })
                .min()
        })
    };
    in_flight.busy = next
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.status == "True");
    write_status(ki, ctx, &key, previous.as_ref(), next).await?;
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

/// Deletes exactly the object as read: a stale leader, or a decision made on an old read, must
/// not delete a worker object that was re-created or written since (its fences and
/// checkpoints are what keep a handoff safe).
fn delete_exactly(w: &KinesisWorker) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: w.metadata.uid.clone(),
            resource_version: w.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What [`fence`] did.
#[derive(Debug)]
enum Fence {
    /// The fence is in the worker's spec: the object as fenced, whose status holds the last
    /// checkpoint the worker can ever store for that epoch.
    Written(Box<KinesisWorker>),
    /// Not written: the worker's status changed since it was judged expired, so it is alive.
    Renewed,
}

/// Writes the fence for `(shard, epoch)` into the worker's spec, from a fresh read, with a
/// `resourceVersion` precondition; retries on conflicts (the worker writes once per report
/// interval, so this converges at once). With `judged` (the status, as JSON, that made the
/// worker expired), writes nothing when the fresh status differs: the precondition makes that
/// check and the fence one atomic step, so a worker that reports again is never fenced for an
/// expiry it recovered from (found by the model checker, docs/model-check.md).
async fn fence(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<KinesisWorker>,
    c: &handoff::FenceCandidate,
    table: &kinesis_ingester_api::KinesisShardAssignmentSpec,
    judged: Option<&str>,
) -> Result<Fence> {
    for _ in 0..5 {
        let mut w = api
            .get(&c.worker)
            .await
            .map_err(kerr("reading a worker to fence it"))?;
        if w.spec.is_fenced(&c.shard, c.epoch) {
            return Ok(Fence::Written(Box::new(w)));
        }
        if judged.is_some_and(|j| serde_json::to_string(&w.status).unwrap_or_default() != j) {
            return Ok(Fence::Renewed);
        }
        w.spec.fences = handoff::fences_with(&w, c, table);
        let res = api.replace(&c.worker, &PostParams::default(), &w).await;
        ctx.metrics.write(id, "worker_fence", result_label(&res));
        match res {
            Ok(fenced) => return Ok(Fence::Written(Box::new(fenced))),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(kerr("fencing a worker")(e)),
        }
    }
    Err(Error::Conflict)
}

/// Writes status with server-side apply: at once when something other than lag changed or the
/// lag jumped (see [`status::lag_jumped`]), otherwise at most once per status interval.
async fn write_status(
    ki: &KinesisIngester,
    ctx: &Context,
    key: &str,
    previous: Option<&kinesis_ingester_api::KinesisIngesterStatus>,
    next: kinesis_ingester_api::KinesisIngesterStatus,
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
        .is_none_or(|at| at.elapsed() >= ctx.settings.status_interval);
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
        .status_written = Some(tokio::time::Instant::now());
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
