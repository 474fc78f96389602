//! Model check of the shard handoff protocol (docs/model-check.md): stateright explores every interleaving of an operator, a deposed leader, workers, a small Kinesis and a sink, all deciding through the protocol's pure functions, and checks the checkpoint, fencing, ordering and delivery properties.

mod api;
mod model;
mod operator;
mod properties;
mod state;
mod trace;
mod worker;

use std::{collections::BTreeSet, time::Instant};

use stateright::{Checker, HasDiscoveries, Model as _};

use model::{Config, Model, Variant};

/// What a run found.
struct Run {
    model: Model,
    found: Vec<(&'static str, String)>,
}

impl Run {
    fn found(&self, property: &str) -> Option<&str> {
        self.found
            .iter()
            .find(|(p, _)| *p == property)
            .map(|(_, t)| t.as_str())
    }

    /// Fails with the trace if a property of `properties` has a counterexample.
    fn assert_holds(&self, properties: &[&str]) {
        for p in properties {
            if let Some(trace) = self.found(p) {
                panic!(
                    "model {}: counterexample to \"{p}\":\n{trace}",
                    self.model.cfg.name
                );
            }
        }
    }
}

/// Explores `cfg` breadth first (one thread when `stop_at` is set, for the shortest
/// counterexample, and then only until one of those properties has a discovery), and prints
/// the states explored, the time and what was found.
fn run(cfg: Config, stop_at: &[&'static str]) -> Run {
    let started = Instant::now();
    let builder = Model::new(cfg).checker();
    let builder = if stop_at.is_empty() {
        builder.threads(2)
    } else {
        let set: BTreeSet<&'static str> = stop_at.iter().copied().collect();
        builder.finish_when(HasDiscoveries::AnyOf(set))
    };
    let checker = builder.spawn_bfs().join();
    let elapsed = started.elapsed();
    let model = checker.model();
    println!(
        "model {}: {} states ({} generated), depth {}, {:.1} s{}",
        model.cfg.name,
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        elapsed.as_secs_f64(),
        if stop_at.is_empty() {
            ""
        } else {
            " (stopped at the first counterexample)"
        }
    );
    let mut found = Vec::new();
    let properties = model.properties();
    for p in &properties {
        let Some(path) = checker.discovery(p.name) else {
            if !p.expectation.discovery_is_failure() {
                println!("  no example of \"{}\"", p.name);
            }
            continue;
        };
        let steps = path.clone().into_actions().len();
        let trace = trace::render(model, path);
        if p.expectation.discovery_is_failure() {
            println!(
                "  COUNTEREXAMPLE to \"{}\" ({steps} steps):\n{trace}",
                p.name
            );
        } else {
            println!("  example of \"{}\" ({steps} steps)", p.name);
        }
        found.push((p.name, trace));
    }
    let model = Model::new(model.cfg.clone());
    Run { model, found }
}

/// A configuration of two workers over a parent shard of `parent` records that may split into
/// children of `children` records each, with the code as it is on main.
#[allow(clippy::too_many_arguments)]
fn config(
    name: &'static str,
    parent: u8,
    children: &[u8],
    max_epoch: u8,
    faults: u8,
    crashes: u8,
    deletes: u8,
    deposed: u8,
) -> Config {
    Config {
        name,
        workers: 2,
        parent_records: parent,
        children: children.to_vec(),
        max_epoch,
        faults,
        crashes,
        deletes,
        deposed,
        strict_order: true,
        rewind: false,
        variant: Variant::default(),
    }
}

/// A rewind of every shard to TRIM_HORIZON asked at any moment (before, during or after the
/// split and the handoffs), over a parent that may split into `children`. Bounded: in every
/// `cargo test` with one shard; with a split in `make model-check`.
fn rewind(name: &'static str, children: &[u8]) -> Config {
    Config {
        rewind: true,
        ..config(name, 1, children, 3, 0, 0, 0, 0)
    }
}

/// Bounded, in every `cargo test`: a split into one child, two assignments per shard, no faults.
fn split() -> Config {
    config("split", 1, &[1], 2, 0, 0, 0, 0)
}

/// Bounded, in every `cargo test`: one shard, two assignments, one failed write (a periodic
/// status write, a fence or a table write).
fn faults() -> Config {
    config("faults", 1, &[], 2, 1, 0, 0, 0)
}

/// Bounded, in `make model-check`: one shard, a worker crash and restart.
fn crash() -> Config {
    config("crash", 1, &[], 2, 0, 1, 0, 0)
}

/// Bounded, in `make model-check`: one shard and a deposed leader's pass.
fn deposed() -> Config {
    config("deposed", 1, &[], 2, 0, 0, 0, 1)
}

/// Bounded, in every `cargo test`: one shard and a worker object deleted by hand.
fn deleted() -> Config {
    config("deleted", 1, &[], 2, 0, 0, 1, 0)
}

/// The full model of `make model-check`: a split into one child and a failed write (a periodic
/// status write, a fence or a table write) anywhere. Crashes, deletions and a deposed leader run
/// in their own bounded configurations: together with these they grow the state space past what
/// fits in memory here. Deleting an object by hand in the middle of a pass is left out of
/// combined runs for another reason too (docs/model-check.md, "Findings", 4).
fn full() -> Config {
    config("full", 1, &[1], 2, 1, 0, 0, 0)
}

/// Every safety property but the one a worker that heals between an operator's observation and
/// its expiry fence breaks on main (docs/model-check.md, "Findings").
const SAFETY_ON_MAIN: [&str; 6] = [
    model::CHECKPOINTS,
    model::FENCED_ACKS,
    model::FENCED_WRITES,
    model::ORDER,
    model::FENCES_BOUNDED,
    model::NO_LOSS,
];

#[test]
fn a_split_keeps_order_and_every_record_is_delivered() {
    let run = run(split(), &[]);
    run.assert_holds(&model::SAFETY);
    run.assert_holds(&[model::ALL_DELIVERED]);
    for example in [model::EX_CHILD_DELIVERED, model::EX_ALL_DELIVERED] {
        assert!(run.found(example).is_some(), "no example of \"{example}\"");
    }
}

/// Every safety property and delivery hold through a rewind, and some path reads every record
/// again after it.
fn assert_rewind_keeps_every_property(cfg: Config) {
    let run = run(cfg, &[]);
    run.assert_holds(&model::SAFETY);
    run.assert_holds(&[model::ALL_DELIVERED]);
    assert!(
        run.found(model::EX_ALL_REDELIVERED).is_some(),
        "no example of \"{}\"",
        model::EX_ALL_REDELIVERED
    );
}

#[test]
fn a_rewind_is_read_again_from_the_start_and_no_stale_report_moves_it() {
    assert_rewind_keeps_every_property(rewind("rewind", &[]));
}

/// A rewind across a split: the finished parent is read again before its child.
#[test]
#[ignore = "run by `make model-check`"]
fn a_rewind_across_a_split_keeps_every_property() {
    assert_rewind_keeps_every_property(rewind("rewind-split", &[1]));
}

#[test]
fn failed_writes_keep_every_checkpoint_and_every_record_is_delivered() {
    let run = run(faults(), &[]);
    run.assert_holds(&SAFETY_ON_MAIN);
    run.assert_holds(&[model::ALL_DELIVERED]);
    for example in [
        model::EX_FENCE_WITHOUT_TABLE,
        model::EX_MOVED_AFTER_FENCE,
        model::EX_SELF_FENCED,
    ] {
        assert!(run.found(example).is_some(), "no example of \"{example}\"");
    }
}

/// The finding on main: with one failed periodic write, a worker that heals after the
/// operator observed it expired is fenced anyway and delivers until it reads the fence.
#[test]
fn a_worker_that_heals_before_its_expiry_fence_still_delivers() {
    let main = run(faults(), &[model::ONE_DELIVERER]);
    assert!(main.found(model::ONE_DELIVERER).is_some());
}

/// An expiry fence that is not written once the worker's status changed since the observation
/// closes it.
#[test]
#[ignore = "run by `make model-check`"]
fn an_expiry_fence_rechecked_against_the_status_keeps_one_deliverer() {
    let mut cfg = faults();
    cfg.variant.fence_rechecks_expiry = true;
    let run = run(cfg, &[]);
    run.assert_holds(&model::SAFETY);
}

/// A restart heals a worker as a landed write does: the finding on main breaks one property.
#[test]
#[ignore = "run by `make model-check`"]
fn a_crash_and_restart_keep_every_checkpoint() {
    let run = run(crash(), &[]);
    run.assert_holds(&SAFETY_ON_MAIN);
    run.assert_holds(&[model::ALL_DELIVERED]);
}

#[test]
#[ignore = "run by `make model-check`"]
fn a_deposed_leader_keeps_every_property() {
    let run = run(deposed(), &[]);
    run.assert_holds(&model::SAFETY);
    run.assert_holds(&[model::ALL_DELIVERED]);
}

#[test]
fn a_deleted_worker_object_keeps_every_property() {
    let run = run(deleted(), &[]);
    run.assert_holds(&model::SAFETY);
    run.assert_holds(&[model::ALL_DELIVERED]);
}

/// Runs `cfg` with the old code of one defect until `property` has a counterexample, and
/// fails unless it has one.
fn old_code_breaks(mut cfg: Config, old: impl Fn(&mut Variant), property: &'static str) {
    old(&mut cfg.variant);
    // Leaves out the finding on main, so that each counterexample is the defect's own.
    cfg.variant.fence_rechecks_expiry = true;
    let run = run(cfg, &[property]);
    assert!(
        run.found(property).is_some(),
        "the old code keeps \"{property}\""
    );
}

/// Without the epoch floor, a finished parent that a rewind brings back is assigned at an epoch
/// its last owner already reported finished: it counts as read again without being delivered.
#[test]
fn without_the_epoch_floor_a_rewound_parent_counts_as_read() {
    old_code_breaks(
        rewind("no-floor", &[1]),
        |v| v.rewind_without_floor = true,
        model::REWIND_NO_LOSS,
    );
}

/// Defect 9.1.1: a fence without the position, the entry dropped by the fenced worker's next
/// write, and the table write not landed: the checkpoint falls back.
#[test]
fn old_code_defect_1_a_fence_without_its_position_loses_the_checkpoint() {
    let cfg = config("old-d1", 1, &[], 2, 2, 0, 0, 0);
    old_code_breaks(cfg, |v| v.fence_without_position = true, model::CHECKPOINTS);
}

/// Defect 9.1.2: a self-fenced worker's sink delivers after the fence moved its shard.
#[test]
fn old_code_defect_2_a_self_fenced_sink_keeps_delivering() {
    old_code_breaks(
        faults(),
        |v| v.sink_delivers_revoked = true,
        model::ONE_DELIVERER,
    );
}

/// Defect 9.1.5: a deleted worker object moves its shards at once, while its worker reads.
#[test]
fn old_code_defect_5_a_missing_object_moves_shards_at_once() {
    let cfg = config("old-d5", 1, &[], 2, 0, 0, 1, 0);
    old_code_breaks(cfg, |v| v.gone_at_once = true, model::ONE_DELIVERER);
}

/// Defect 9.1.7: a restarted worker reconciles (here on its self-fence) before its first table
/// snapshot and drops the checkpoint it carried over; its next write loses it.
#[test]
fn old_code_defect_7_reconciling_before_the_table_drops_checkpoints() {
    let cfg = config("old-d7", 1, &[], 2, 1, 1, 0, 0);
    old_code_breaks(cfg, |v| v.reconcile_before_table = true, model::CHECKPOINTS);
}

/// Defect 9.1.8: fences are never pruned; one worker's spec gathers a fence per handoff.
#[test]
fn old_code_defect_8_fences_grow_without_pruning() {
    let cfg = config("old-d8", 1, &[], 3, 0, 0, 0, 0);
    old_code_breaks(cfg, |v| v.fences_unpruned = true, model::FENCES_BOUNDED);
}

#[test]
#[ignore = "run by `make model-check`"]
fn the_full_model_keeps_every_property() {
    let run = run(full(), &[]);
    run.assert_holds(&SAFETY_ON_MAIN);
    run.assert_holds(&[model::ALL_DELIVERED]);
}

#[test]
#[ignore]
fn explore() {
    let env = |k: &str, d: u8| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let cfg = Config {
        name: "explore",
        workers: env("W", 2),
        parent_records: env("P", 1),
        children: (0..env("C", 1)).map(|_| env("CR", 1)).collect(),
        max_epoch: env("E", 3),
        faults: env("F", 2),
        crashes: env("X", 0),
        deletes: env("D", 0),
        deposed: env("B", 0),
        strict_order: true,
        rewind: env("R", 0) == 1,
        variant: Variant {
            fence_without_position: env("V1", 0) == 1,
            gone_at_once: env("V5", 0) == 1,
            sink_delivers_revoked: env("V2", 0) == 1,
            reconcile_before_table: env("V7", 0) == 1,
            fences_unpruned: env("V8", 0) == 1,
            fence_rechecks_expiry: env("VR", 0) == 1,
            worker_keeps_fences: env("VG", 0) == 1,
            rewind_without_floor: env("VW", 0) == 1,
        },
    };
    let started = Instant::now();
    let checker = Model::new(cfg).checker();
    let checker = if env("ONE", 0) == 1 {
        checker
    } else {
        checker.threads(2)
    };
    let checker = if std::env::var("TRACE").is_ok() {
        checker.finish_when(HasDiscoveries::AnyFailures)
    } else {
        checker
    };
    let checker = checker
        .timeout(std::time::Duration::from_secs(60 * u64::from(env("M", 1))))
        .spawn_bfs()
        .join();
    println!(
        "explore: {} states ({} generated), depth {}, {:.1} s, done {}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64(),
        checker.is_done()
    );
    let show = std::env::var("TRACE").unwrap_or_default();
    for (name, path) in checker.discoveries() {
        println!("  found {name}");
        if !show.is_empty() && !name.starts_with("example") && name.contains(show.trim()) {
            println!("{}", trace::render(checker.model(), path));
        }
    }
}
