//! The reader manager of a fleet worker: follows the shard table, starts one reader per owned shard, releases drained ones, stops revoked ones at once, and self-fences when its status cannot be written.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError, atomic::AtomicBool},
    time::Duration,
};

use futures::{StreamExt, stream::BoxStream};
use kinesis_ingester_api::{
    KinesisShardAssignment, KinesisShardAssignmentSpec, KinesisWorkerSpec, WorkerShard,
};
use kube::runtime::watcher;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    FleetError,
    phase::{
        Drain, Held, Phase, ShardStep, StopStep, Stopping, begin_release, drain, reader_stopped,
        shard_step,
    },
    report::{Reporter, Written},
};
use kinesis_ingester_api::{StartAt, sequence::Position};
use kinesis_observability::server;
use kinesis_protocol::{
    owned::{Owned, Want, desired, start_position, to_position},
    report::{EntryState, Handed, LiveShard, ReportEntry, SinkHealth, build_status},
};

use crate::{
    checkpoint::Tracker,
    metrics::Metrics,
    sink::{Deliverable, Flush, SinkHandle, last_failure},
    source::{
        coordinator::{ReaderKind, ReaderParts},
        efo::EfoSettings,
        shard::ShardOutcome,
    },
};

/// The shard table's watch events.
pub type TableEvents =
    BoxStream<'static, Result<watcher::Event<KinesisShardAssignment>, watcher::Error>>;

/// Everything the manager needs.
pub struct Worker {
    /// This worker's name (the table's `owner`).
    pub me: String,
    /// UID of the ingester: a table of another incarnation is ignored.
    pub ingester_uid: String,
    /// What readers share. With enhanced fan-out, `kind` is set from the table's consumer.
    pub parts: ReaderParts,
    /// Whether the spec asks for enhanced fan-out (readers wait for the table's consumer).
    pub enhanced_fan_out: bool,
    /// `read.startingPosition`.
    pub default_start: StartAt,
    /// Acknowledged positions (strict: only owned shards).
    pub tracker: Arc<Tracker>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Each sink's counters: their last errors.
    pub sinks: Arc<[SinkHandle]>,
    /// Records waiting for the sink with nothing acknowledged for longer than this make
    /// delivery stuck: reported per shard, and `/readyz` false.
    pub stuck_after: Duration,
    /// `/readyz`.
    pub ready: Arc<AtomicBool>,
    /// Asks the sink to deliver what it holds without waiting for `batch.maxAge`.
    pub sink_flush: Flush,
    /// Cancels the sink (when another process took the worker over).
    pub sink_cancel: CancellationToken,
    /// The shards the sink may deliver: kept equal to the held shards this worker may still
    /// deliver (none while self-fenced).
    pub deliverable: Deliverable,
    /// The table watch.
    pub tables: TableEvents,
    /// Entries of the status at takeover: this worker's checkpoints.
    pub carried: Vec<WorkerShard>,
    /// How often the status is written.
    pub report_interval: Duration,
    /// Stop reading when no write succeeded for this long.
    pub self_fence_after: Duration,
    /// Time a release waits for the sink.
    pub drain_timeout: Duration,
    /// Start of the last successful write.
    pub written_at: Instant,
    /// Read nothing until the next successful write.
    pub self_fenced: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// What is left when the worker stops: the writer, for the final write, and the entries to
/// report in it.
#[derive(Debug)]
pub struct WorkerExit {
    /// The status writer; `None` if its task failed.
    pub reporter: Option<Reporter>,
    /// Every shard held at the end.
    pub entries: BTreeMap<String, ReportEntry>,
}

/// What the writer task tells the manager.
#[derive(Debug)]
enum WriterEvent {
    Written(Instant),
    Fences(KinesisWorkerSpec),
    Replaced(FleetError),
}

/// What the manager and the writer share.
#[derive(Debug, Default)]
struct Shared {
    entries: Mutex<BTreeMap<String, ReportEntry>>,
    urgent: Notify,
}

impl Shared {
    fn entries(&self) -> BTreeMap<String, ReportEntry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Turns the entries held at shutdown into those of the final write: every shard still held is
/// released at its acknowledged position, unless it turned out finished.
pub fn final_entries(
    entries: BTreeMap<String, ReportEntry>,
    tracker: &Tracker,
    metrics: &Metrics,
) -> BTreeMap<String, ReportEntry> {
    entries
        .into_iter()
        .map(|(id, e)| {
            let state = match e.state {
                EntryState::Live => {
                    let finished = tracker.is_finished(&id);
                    if !finished {
                        metrics.fleet_released("shutdown");
                    }
                    EntryState::Frozen {
                        position: tracker.acked(&id),
                        handed: Handed::from_flags(true, finished),
                    }
                }
                // Whatever was kept is released now.
                EntryState::Frozen { position, handed } => EntryState::Frozen {
                    position,
                    handed: Handed::from_flags(true, handed == Handed::Finished),
                },
            };
            (
                id,
                ReportEntry {
                    epoch: e.epoch,
                    state,
                },
            )
        })
        .collect()
}

/// What a live shard's entry reports at `now`: the acknowledged position, the lag (absent while
/// unknown) and how delivery keeps up.
fn live_shard(tracker: &Tracker, metrics: &Metrics, id: &str, now: Instant) -> LiveShard {
    let delivery = tracker.delivery(id, now).unwrap_or_default();
    LiveShard {
        acked: tracker.acked(id),
        millis_behind_latest: metrics.millis_behind(id),
        last_delivery: delivery.last_delivery,
        stalled_for: delivery.stalled_for,
        failing: metrics.failing_reads(id, now),
    }
}

/// What the writer reads besides the entries.
struct Sources {
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    sinks: Arc<[SinkHandle]>,
    stuck_after: Duration,
}

/// Writes the status every `interval` and at once when `shared.urgent` is notified, until
/// `stop` fires or another process takes the worker over. Returns the writer. Delivery health
/// rides on these writes: it never causes one.
async fn write_loop(
    mut reporter: Reporter,
    shared: Arc<Shared>,
    sources: Sources,
    interval: Duration,
    events: mpsc::UnboundedSender<WriterEvent>,
    stop: CancellationToken,
) -> Reporter {
    let Sources {
        tracker,
        metrics,
        sinks,
        stuck_after,
    } = sources;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return reporter,
            _ = tick.tick() => {}
            () = shared.urgent.notified() => tick.reset(),
        }
        let result = reporter
            .write(
                false,
                |holder, stopped, spec| {
                    let now = Instant::now();
                    build_status(
                        holder,
                        jiff::Timestamp::now(),
                        stopped,
                        &shared.entries(),
                        spec,
                        |id| live_shard(&tracker, &metrics, id, now),
                        &{
                            let (last_error, failing_sink) = last_failure(&sinks);
                            SinkHealth {
                                stuck_after,
                                last_error,
                                failing_sink,
                            }
                        },
                    )
                },
                |spec| {
                    let _ = events.send(WriterEvent::Fences(spec.clone()));
                },
            )
            .await;
        match result {
            Ok(Written::Ok(started)) => {
                let _ = events.send(WriterEvent::Written(started));
            }
            Ok(Written::Failed) => {}
            Err(e) => {
                let _ = events.send(WriterEvent::Replaced(e));
                return reporter;
            }
        }
    }
}

/// The manager's state while it runs.
struct State {
    w: Worker,
    held: BTreeMap<String, Held>,
    table: Option<KinesisShardAssignmentSpec>,
    /// Whether a table snapshot (possibly empty) was applied.
    table_seen: bool,
    /// Table events received during a watch (re)start, applied at `InitDone`.
    init: Option<KinesisShardAssignment>,
    spec: KinesisWorkerSpec,
    wanted: BTreeMap<String, Owned>,
    tasks: JoinSet<(String, u64, ShardOutcome)>,
    generation: u64,
    shared: Arc<Shared>,
    reads: bool,
    /// Shutting down: nothing new is read, held shards are being released.
    stopping: bool,
}

impl Worker {
    /// Runs until `stop` fires (then every reader has stopped when it returns) or until another
    /// process takes the worker over. `reporter` is the status writer as the takeover left it.
    pub async fn run(
        self,
        reporter: Reporter,
        stop: CancellationToken,
    ) -> Result<WorkerExit, FleetError> {
        let shared = Arc::new(Shared::default());
        let spec = reporter.spec().clone();
        let mut held = BTreeMap::new();
        for s in &self.carried {
            if !spec.is_fenced(&s.shard_id, s.epoch) {
                let phase = Phase::Frozen {
                    position: s.position.as_ref().and_then(to_position),
                    handed: Handed::from_flags(s.released, s.finished),
                };
                held.insert(
                    s.shard_id.clone(),
                    Held {
                        epoch: s.epoch,
                        generation: 0,
                        start: self.default_start.clone(),
                        phase,
                    },
                );
            }
        }
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            reporter,
            shared.clone(),
            Sources {
                tracker: self.tracker.clone(),
                metrics: self.metrics.clone(),
                sinks: self.sinks.clone(),
                stuck_after: self.stuck_after,
            },
            self.report_interval,
            events_tx,
            writer_stop.clone(),
        ));
        self.metrics.set_fleet_self_fenced(self.self_fenced);
        let reads = !self.enhanced_fan_out;
        let mut s = State {
            w: self,
            held,
            table: None,
            table_seen: false,
            init: None,
            spec,
            wanted: BTreeMap::new(),
            tasks: JoinSet::new(),
            generation: 0,
            shared,
            reads,
            stopping: false,
        };
        s.publish();
        let mut check = tokio::time::interval(Duration::from_millis(200));
        // Set on SIGTERM: every shard is released as the sink drains it, while the status
        // writer keeps renewing; the loop ends once the last release was written.
        let mut stopping: Option<Stopping> = None;
        let result = loop {
            if let Some(st) = &mut stopping {
                match st.step(s.all_handed_back(), Instant::now()) {
                    StopStep::Wait { write_now } => {
                        if write_now {
                            s.shared.urgent.notify_one();
                        }
                    }
                    StopStep::Done => break Ok(()),
                    StopStep::TimedOut => {
                        warn!(
                            "the sink did not drain every released shard in time; stopping with the last acknowledged positions"
                        );
                        break Ok(());
                    }
                }
            }
            tokio::select! {
                biased;
                () = stop.cancelled(), if stopping.is_none() => {
                    // Leave a fifth of the shutdown time for the final write.
                    let deadline = Instant::now() + s.w.drain_timeout * 4 / 5;
                    info!(shards = s.held.len(), "stopping: releasing every shard as the sink drains it, still reporting");
                    s.release_all(deadline);
                    stopping = Some(Stopping::new(deadline));
                }
                Some(event) = events.recv() => match event {
                    WriterEvent::Written(started) => {
                        s.w.written_at = started;
                        if let Some(st) = &mut stopping {
                            st.written(started);
                        }
                        if s.w.self_fenced {
                            info!("a status write succeeded again; resuming from the acknowledged positions");
                            s.w.self_fenced = false;
                            s.w.metrics.set_fleet_self_fenced(false);
                            s.reconcile();
                        }
                    }
                    WriterEvent::Fences(spec) => {
                        info!(fences = spec.fences.len(), "the operator changed this worker's fences");
                        s.spec = spec;
                        s.reconcile();
                    }
                    WriterEvent::Replaced(e) => {
                        error!(error = %e, "stopping every reader and the sink");
                        s.w.sink_cancel.cancel();
                        break Err(e);
                    }
                },
                event = s.w.tables.next() => match event {
                    Some(event) => s.on_table(event),
                    None => {
                        warn!("the shard table watch ended");
                        break Ok(());
                    }
                },
                Some(joined) = s.tasks.join_next() => match joined {
                    Ok((id, generation, outcome)) => s.on_outcome(&id, generation, outcome),
                    Err(e) => warn!(error = %e, "a shard reader panicked"),
                },
                _ = check.tick() => {
                    s.check_self_fence();
                    s.progress();
                }
                () = s.w.tracker.changed.notified() => s.progress(),
            }
            s.update_ready();
            s.sync_deliverable();
        };
        server::set_ready(&s.w.ready, false);
        for h in s.held.values() {
            h.phase.cancel();
        }
        info!(readers = s.tasks.len(), "stopping the shard readers");
        while let Some(joined) = s.tasks.join_next().await {
            if let Ok((id, generation, ShardOutcome::Ended { last_sent, .. })) = joined
                && s.held.get(&id).is_some_and(|h| h.generation == generation)
            {
                s.w.tracker.mark_end(&id, last_sent);
            }
        }
        s.w.metrics.set_shards_reading(0);
        writer_stop.cancel();
        let reporter = match writer.await {
            Ok(r) => Some(r),
            Err(e) => {
                error!(error = %e, "the status writer failed");
                None
            }
        };
        result?;
        Ok(WorkerExit {
            reporter,
            entries: s.entries(),
        })
    }
}

impl State {
    fn entries(&self) -> BTreeMap<String, ReportEntry> {
        self.held
            .iter()
            .map(|(id, h)| {
                (
                    id.clone(),
                    ReportEntry {
                        epoch: h.epoch,
                        state: h.phase.entry(),
                    },
                )
            })
            .collect()
    }

    /// Makes the held shards what the next write reports.
    fn publish(&self) {
        *self
            .shared
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.entries();
    }

    fn on_table(&mut self, event: Result<watcher::Event<KinesisShardAssignment>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(t)) => self.set_table(Some(t)),
            Ok(watcher::Event::Delete(_)) => self.set_table(None),
            Ok(watcher::Event::Init) => self.init = None,
            Ok(watcher::Event::InitApply(t)) => self.init = Some(t),
            Ok(watcher::Event::InitDone) => {
                let t = self.init.take();
                self.set_table(t);
            }
            Err(e) => warn!(error = %e, "watching the shard table failed; retrying"),
        }
    }

    fn set_table(&mut self, table: Option<KinesisShardAssignment>) {
        let table = table.map(|t| t.spec).filter(|t| {
            let ours = t.ingester_uid == self.w.ingester_uid;
            if !ours {
                warn!(uid = %t.ingester_uid, "ignoring a shard table of another incarnation of the ingester");
            }
            ours
        });
        // A consumer registered again (someone deregistered it): shard tasks switch over at
        // their next subscription.
        if let (ReaderKind::EnhancedFanOut(efo), Some(arn)) = (
            &self.w.parts.kind,
            table.as_ref().and_then(|t| t.consumer_arn.as_deref()),
        ) && efo.set_consumer_arn(arn)
        {
            info!(consumer = %arn, "the operator registered the enhanced fan-out consumer again; subscribing with it");
        }
        if !self.reads
            && let Some(arn) = table.as_ref().and_then(|t| t.consumer_arn.as_deref())
        {
            info!(consumer = %arn, "reading through the operator's enhanced fan-out consumer");
            self.w.parts.kind = ReaderKind::EnhancedFanOut(EfoSettings::new(Arc::from(arn)));
            self.reads = true;
        }
        if !self.reads {
            info!(
                "waiting for the operator to register the enhanced fan-out consumer (spec.consumerArn of the shard table)"
            );
        }
        self.table = table;
        self.table_seen = true;
        self.reconcile();
    }

    fn check_self_fence(&mut self) {
        if !self.w.self_fenced && self.w.written_at.elapsed() > self.w.self_fence_after {
            warn!(after = ?self.w.self_fence_after, "no status write succeeded; self-fencing: every reader stops until a write succeeds");
            self.w.self_fenced = true;
            self.w.metrics.set_fleet_self_fenced(true);
            self.reconcile();
        }
    }

    /// Brings the held shards in line with the table, the fences and the self-fence. Nothing
    /// happens before the first table snapshot: with no table every carried checkpoint would
    /// look revoked and be dropped.
    fn reconcile(&mut self) {
        if !self.table_seen {
            self.publish();
            return;
        }
        self.wanted = match &self.table {
            Some(t) => desired(t, &self.spec, &self.w.me, self.w.self_fenced),
            None => BTreeMap::new(),
        };
        let now = Instant::now();
        let deadline = now + self.w.drain_timeout;
        let mut urgent = false;
        let ids: BTreeSet<String> = self
            .held
            .keys()
            .chain(self.wanted.keys())
            .cloned()
            .collect();
        for id in ids {
            let o = self.wanted.get(&id).cloned();
            let mut step = shard_step(o.as_ref(), self.held.get(&id), self.reads, self.stopping);
            if step == ShardStep::Revoke {
                self.revoke(&id);
                // Given again at a higher epoch: decided afresh, as a new claim.
                step = shard_step(o.as_ref(), None, self.reads, self.stopping);
            }
            match (step, o) {
                (ShardStep::Revoke, _) => self.revoke(&id),
                (ShardStep::Start { then_release }, Some(o)) => {
                    let carried = match self.held.get(&id).map(|h| &h.phase) {
                        Some(Phase::Frozen { position, .. }) => position.clone(),
                        _ => None,
                    };
                    let (resume, start) =
                        start_position(&o, carried.as_ref(), &self.w.default_start);
                    self.start(&id, &o, resume, start);
                    if then_release {
                        self.begin_release(&id, deadline);
                    }
                }
                (ShardStep::Resume, Some(o)) => {
                    // What was read before the pause was dropped undelivered and is read again.
                    self.w.tracker.rewind(&id);
                    let resume = self.w.tracker.acked(&id);
                    if let Some(start) = self.held.get(&id).map(|h| h.start.clone()) {
                        self.spawn(&id, &o, resume, start);
                    }
                }
                (ShardStep::Release, _) => self.begin_release(&id, deadline),
                (ShardStep::ReleaseUnread, _) => {
                    if let Some(h) = self.held.get_mut(&id)
                        && let Phase::Frozen { handed, .. } = &mut h.phase
                    {
                        info!(shard = %id, epoch = h.epoch, "released a shard never read by this process");
                        *handed = Handed::Released;
                        self.w.metrics.fleet_released("handoff");
                        urgent = true;
                    }
                }
                (ShardStep::Pause, _) => {
                    if let Some(h) = self.held.get_mut(&id) {
                        h.phase.cancel();
                        h.phase = Phase::Paused { last_sent: None };
                    }
                }
                (ShardStep::Keep, _) | (ShardStep::Start { .. } | ShardStep::Resume, None) => {}
            }
        }
        self.publish();
        if urgent {
            self.shared.urgent.notify_one();
        }
        self.progress();
    }

    /// Stops a shard at once and forgets it: another owner, a higher epoch, fenced, or gone.
    fn revoke(&mut self, id: &str) {
        if let Some(h) = self.held.remove(id) {
            h.phase.cancel();
            if !matches!(h.phase, Phase::Frozen { .. }) {
                info!(shard = %id, epoch = h.epoch, "shard revoked; stopped reading it");
            }
        }
        self.w.tracker.forget(id);
        self.w.metrics.clear_shard(id);
    }

    /// Seeds the tracker for a newly owned shard and starts its reader.
    fn start(&mut self, id: &str, o: &Owned, resume: Option<Position>, start: StartAt) {
        self.w.tracker.seed(id, resume.clone());
        self.spawn(id, o, resume, start);
    }

    fn spawn(&mut self, id: &str, o: &Owned, resume: Option<Position>, start: StartAt) {
        self.generation += 1;
        let generation = self.generation;
        let cancel = CancellationToken::new();
        info!(shard = %id, epoch = o.epoch, ?resume, ?start, "reading an owned shard");
        let reader = self.w.parts.reader(
            id,
            o.hash_range,
            resume,
            start.clone(),
            cancel.clone(),
            generation,
        );
        self.held.insert(
            id.to_owned(),
            Held {
                epoch: o.epoch,
                generation,
                start,
                phase: Phase::Reading(cancel),
            },
        );
        // The sink takes the new reading before its reader can send anything: a chunk it
        // dropped as not (yet) deliverable would leave a gap the next acknowledgement skips.
        self.sync_deliverable();
        let owned_id = id.to_owned();
        self.tasks
            .spawn(async move { (owned_id, generation, reader.await) });
    }

    /// Releases every held shard (on SIGTERM): each is handed back once the sink's requests in
    /// flight for it are acknowledged, so a slow sink delays only its own shards, and the writer
    /// keeps renewing meanwhile.
    fn release_all(&mut self, deadline: Instant) {
        self.stopping = true;
        let ids: Vec<String> = self.held.keys().cloned().collect();
        for id in ids {
            self.begin_release(&id, deadline);
        }
        // Carried shards never read by this process are released as they are.
        for h in self.held.values_mut() {
            if let Phase::Frozen {
                handed: handed @ Handed::Kept,
                ..
            } = &mut h.phase
            {
                *handed = Handed::Released;
            }
        }
        self.publish();
        self.shared.urgent.notify_one();
        self.progress();
    }

    /// Whether every held shard is handed back (released or finished).
    fn all_handed_back(&self) -> bool {
        self.held
            .values()
            .all(|h| matches!(h.phase, Phase::Frozen { handed, .. } if handed.is_back()))
    }

    /// Release step 2 (docs/design.md §3.5): stop the reader and close the shard to new sink
    /// requests; the rest happens as the reader returns and the requests in flight finish.
    /// What was read but not sent is dropped and read again by the next owner, so a slow sink
    /// delays a handoff by one request, not by its whole backlog, and delivers nothing twice.
    fn begin_release(&mut self, id: &str, deadline: Instant) {
        let Some(h) = self.held.get_mut(id) else {
            return;
        };
        self.w.deliverable.close(id);
        info!(shard = %id, epoch = h.epoch, "releasing the shard: stop reading and sending, acknowledge what is in flight");
        let (phase, effects) =
            begin_release(std::mem::replace(&mut h.phase, Phase::Ending), deadline);
        h.phase = phase;
        if effects.cancel_reader {
            h.phase.cancel();
        }
        if effects.flush_sink {
            self.w.sink_flush.notify();
        }
    }

    fn on_outcome(&mut self, id: &str, generation: u64, outcome: ShardOutcome) {
        let Some(h) = self.held.get_mut(id).filter(|h| h.generation == generation) else {
            return;
        };
        match outcome {
            ShardOutcome::Ended { last_sent, .. } => {
                // The operator assigns the children once this shard is finished.
                self.w.tracker.mark_end(id, last_sent);
                h.phase = Phase::Ending;
            }
            ShardOutcome::Stopped { last_sent } => {
                let (phase, effects, on_its_own) =
                    reader_stopped(std::mem::replace(&mut h.phase, Phase::Ending), last_sent);
                h.phase = phase;
                if on_its_own {
                    warn!(shard = %id, "the reader stopped on its own (the sink is gone)");
                }
                if effects.flush_sink {
                    self.w.sink_flush.notify();
                }
            }
        }
        self.progress();
    }

    /// Completes releases whose last chunk the sink acknowledged (or whose time is up) and
    /// shards whose end was delivered; either triggers an immediate write.
    fn progress(&mut self) {
        let now = Instant::now();
        let mut changed = false;
        for (id, h) in &mut self.held {
            // Everything read was acknowledged, or nothing of the shard is in flight any more
            // and nothing new will be sent.
            let drained = match &h.phase {
                Phase::Draining { last_sent, .. } => {
                    self.w.tracker.drained(id, last_sent.as_ref())
                        || self.w.deliverable.closed_and_idle(id)
                }
                _ => false,
            };
            let finished = matches!(h.phase, Phase::Ending) && self.w.tracker.is_finished(id);
            let handed = match drain(&h.phase, drained, finished, now) {
                Drain::Idle => continue,
                Drain::Wait => {
                    self.w.sink_flush.notify();
                    continue;
                }
                Drain::HandBack { handed, in_time } => {
                    if !in_time {
                        warn!(shard = %id, "the sink did not deliver the shard's last records in time; releasing at the last acknowledged position (they may be delivered twice)");
                    }
                    if handed == Handed::Released {
                        self.w.metrics.fleet_released("handoff");
                    }
                    handed
                }
            };
            let position = self.w.tracker.acked(id);
            info!(shard = %id, epoch = h.epoch, ?position, ?handed, "shard handed back");
            h.phase = Phase::Frozen { position, handed };
            self.w.tracker.forget(id);
            self.w.metrics.clear_shard(id);
            changed = true;
        }
        if changed {
            self.publish();
            self.shared.urgent.notify_one();
        }
    }

    /// Lets the sink deliver exactly the current reading of each shard held in a delivering
    /// phase, and nothing while self-fenced: a shard lost, paused or revoked is dropped from
    /// every batch before its next send and never acknowledged, and so is what an earlier
    /// reader of a shard taken back read.
    fn sync_deliverable(&self) {
        let shards = if self.w.self_fenced {
            HashMap::new()
        } else {
            self.held
                .iter()
                .filter(|(_, h)| h.phase.delivers())
                .map(|(id, h)| (Arc::from(id.as_str()), h.generation))
                .collect()
        };
        if self.w.deliverable.set(shards) {
            debug!("the sink's deliverable shards changed");
        }
    }

    fn update_ready(&self) {
        let reading = self
            .held
            .values()
            .filter(|h| matches!(h.phase, Phase::Reading(_)))
            .count();
        self.w.metrics.set_shards_reading(reading);
        let all_read = self.wanted.iter().all(|(id, o)| {
            o.want != Want::Read
                || self
                    .held
                    .get(id)
                    .is_some_and(|h| matches!(h.phase, Phase::Reading(_)))
        });
        let delivering = !self.w.tracker.any_stuck(Instant::now(), self.w.stuck_after);
        // A shard whose Kinesis calls keep failing is held, not read.
        let failing = self
            .w
            .metrics
            .any_failing_reads(Instant::now(), kinesis_protocol::report::READ_ERROR_AFTER);
        server::set_ready(
            &self.w.ready,
            worker_ready(
                self.table_seen && self.reads,
                self.w.self_fenced,
                all_read && !failing,
                delivering,
            ),
        );
    }
}

/// `/readyz` of a worker: it read the table (and has its consumer), is not self-fenced, reads
/// every shard it should (no shard's Kinesis calls failing for 10 s), and its sink is not stuck (records waiting, nothing acknowledged for
/// longer than the threshold).
fn worker_ready(reads: bool, self_fenced: bool, all_read: bool, delivering: bool) -> bool {
    reads && !self_fenced && all_read && delivering
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: &str) -> Position {
        Position::whole(seq.parse().expect("seq"))
    }

    #[test]
    fn a_worker_whose_sink_is_stuck_is_not_ready() {
        let tracker = Tracker::strict();
        tracker.seed("a", Some(pos("5")));
        let stuck_after = Duration::from_secs(30);
        let now = Instant::now();
        let delivering = |at: Instant| !tracker.any_stuck(at, stuck_after);
        assert!(worker_ready(true, false, true, delivering(now)));
        tracker.read("a", &pos("9"));
        assert!(worker_ready(
            true,
            false,
            true,
            delivering(now + Duration::from_secs(29))
        ));
        assert!(
            !worker_ready(true, false, true, delivering(now + Duration::from_secs(31))),
            "records waited 31 s with nothing acknowledged"
        );
        tracker.ack("a", &pos("9"));
        assert!(worker_ready(
            true,
            false,
            true,
            delivering(Instant::now() + Duration::from_secs(600))
        ));
        assert!(!worker_ready(true, true, true, true), "self-fenced");
        assert!(!worker_ready(true, false, false, true), "a shard not read");
    }

    #[test]
    fn a_live_entry_reports_delivery_and_an_unknown_lag_as_absent() {
        let tracker = Tracker::strict();
        let metrics = Metrics::new(Arc::default());
        tracker.seed("a", None);
        tracker.read("a", &pos("9"));
        let later = Instant::now() + Duration::from_secs(45);
        let live = live_shard(&tracker, &metrics, "a", later);
        assert_eq!(
            live.millis_behind_latest, None,
            "never read: unknown, not 0"
        );
        assert_eq!(live.last_delivery, None);
        assert!(
            live.stalled_for
                .is_some_and(|d| d >= Duration::from_secs(44))
        );
        tracker.ack("a", &pos("9"));
        metrics.set_millis_behind("a", 0);
        let live = live_shard(&tracker, &metrics, "a", later);
        assert_eq!(live.millis_behind_latest, Some(0));
        assert!(live.last_delivery.is_some());
        assert_eq!(live.stalled_for, None);
        assert_eq!(live.acked, Some(pos("9")));
    }

    #[test]
    fn the_final_write_releases_every_held_shard_at_its_acked_position() {
        let tracker = Tracker::strict();
        tracker.seed("a", Some(pos("5")));
        tracker.ack("a", &pos("9"));
        tracker.seed("e", None);
        tracker.mark_end("e", None);
        let metrics = Metrics::new(Arc::default());
        let entries: BTreeMap<String, ReportEntry> = [
            ("a", EntryState::Live),
            ("e", EntryState::Live),
            (
                "f",
                EntryState::Frozen {
                    position: Some(pos("3")),
                    handed: Handed::Finished,
                },
            ),
        ]
        .into_iter()
        .map(|(id, state)| (id.to_owned(), ReportEntry { epoch: 1, state }))
        .collect();
        let out = final_entries(entries, &tracker, &metrics);
        assert_eq!(
            out["a"].state,
            EntryState::Frozen {
                position: Some(pos("9")),
                handed: Handed::Released,
            }
        );
        assert!(matches!(
            out["e"].state,
            EntryState::Frozen {
                handed: Handed::Finished,
                ..
            }
        ));
        assert!(matches!(
            out["f"].state,
            EntryState::Frozen {
                handed: Handed::Finished,
                ..
            }
        ));
        assert!(
            metrics
                .encode()
                .contains("kinesis_ingester_fleet_releases_total{reason=\"shutdown\"} 1")
        );
    }
}
