//! Model check of the shard handoff protocol (docs/model-check.md): stateright explores every interleaving of an operator, a deposed leader, workers, a small Kinesis and a sink, all deciding through the protocol's pure functions, and checks the checkpoint, fencing, ordering and delivery properties.

mod api;
mod model;
mod operator;
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

/// Two workers, a parent with one record that splits into one child of one record, a crash, and
/// five ticks (one lease): small enough for every `cargo test`.
fn bounded() -> Config {
    Config {
        name: "bounded",
        workers: 2,
        parent_records: 1,
        children: vec![1],
        max_epoch: 3,
        faults: 2,
        crashes: 1,
        deletes: 0,
        deposed: 0,
        strict_order: true,
        variant: Variant::default(),
    }
}

/// Everything: a deposed leader, a deleted object, a crash, a parent of two records split into
/// two children, and six ticks.
fn full() -> Config {
    Config {
        name: "full",
        workers: 2,
        parent_records: 2,
        children: vec![1, 1],
        max_epoch: 4,
        faults: 2,
        crashes: 1,
        deletes: 1,
        deposed: 1,
        strict_order: true,
        variant: Variant::default(),
    }
}

#[test]
fn the_bounded_model_keeps_every_checkpoint_and_delivers_every_record() {
    let run = run(bounded(), &[]);
    run.assert_holds(&model::SAFETY);
    run.assert_holds(&[model::ALL_DELIVERED]);
    for example in [
        model::EX_FENCE_WITHOUT_TABLE,
        model::EX_MOVED_AFTER_FENCE,
        model::EX_SELF_FENCED,
        model::EX_CHILD_DELIVERED,
        model::EX_ALL_DELIVERED,
    ] {
        assert!(run.found(example).is_some(), "no example of \"{example}\"");
    }
}

#[test]
#[ignore = "the full model: run by `make model-check`"]
fn the_full_model_keeps_every_checkpoint_and_delivers_every_record() {
    let run = run(full(), &[]);
    run.assert_holds(&model::SAFETY);
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
        variant: Variant {
            fence_without_position: env("V1", 0) == 1,
            gone_at_once: env("V5", 0) == 1,
            sink_delivers_revoked: env("V2", 0) == 1,
            reconcile_before_table: env("V7", 0) == 1,
            fences_unpruned: env("V8", 0) == 1,
            fence_rechecks_expiry: env("VR", 0) == 1,
            worker_keeps_fences: env("VG", 0) == 1,
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

#[test]
#[ignore]
fn census() {
    use stateright::Model as _;
    use std::collections::{HashSet, VecDeque};
    let env = |k: &str, d: u8| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let m = Model::new(Config {
        name: "census",
        workers: env("W", 2),
        parent_records: env("P", 1),
        children: (0..env("C", 0)).map(|_| 1).collect(),
        max_epoch: env("E", 2),
        faults: env("F", 2),
        crashes: env("X", 0),
        deletes: env("D", 0),
        deposed: 0,
        strict_order: true,
        variant: Variant::default(),
    });
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    for s in m.init_states() {
        seen.insert(s.clone());
        queue.push_back(s);
    }
    while let Some(s) = queue.pop_front() {
        if seen.len() > 1_000_000 {
            break;
        }
        for n in m.next_states(&s) {
            if m.within_boundary(&n) && seen.insert(n.clone()) {
                queue.push_back(n);
            }
        }
    }
    let count = |name: &str, f: &dyn Fn(&state::State) -> String| {
        let d: HashSet<String> = seen.iter().map(|s| f(s)).collect();
        println!("{name}: {}", d.len());
    };
    println!("states {}", seen.len());
    count("table", &|s| format!("{:?}", s.table));
    count("objects", &|s| format!("{:?}", s.objects));
    count("objects+table", &|s| {
        format!("{:?}{:?}", s.objects, s.table)
    });
    count("proc0", &|s| format!("{:?}", s.procs[0]));
    count("proc1", &|s| format!("{:?}", s.procs.get(1)));
    count("procs", &|s| format!("{:?}", s.procs));
    count("pass", &|s| format!("{:?}", s.pass));
    count("timers", &|s| format!("{:?}", s.memory));
    count("ages+flags", &|s| {
        format!("{:?}{:?}{}", s.ages, s.unseen, s.dirty)
    });
    count("ghosts", &|s| {
        format!("{:?}{:?}{:?}", s.delivered, s.landed, s.moved)
    });
    count("world-no-procs", &|s| {
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{}",
            s.table, s.objects, s.pass, s.memory, s.ages, s.unseen, s.dirty
        )
    });
    count("procs-held-sink", &|s| {
        format!(
            "{:?}",
            s.procs
                .iter()
                .map(|p| (&p.held, &p.sink))
                .collect::<Vec<_>>()
        )
    });
    count("proc0-held", &|s| format!("{:?}", s.procs[0].held));
    count("proc0-sink", &|s| format!("{:?}", s.procs[0].sink));
    count("proc0-table", &|s| format!("{:?}", s.procs[0].table));
    count("proc0-cached", &|s| format!("{:?}", s.procs[0].cached));
    count("proc0-misc", &|s| {
        format!(
            "{} {} {} {}",
            s.procs[0].up, s.procs[0].incarnation, s.procs[0].since_write, s.procs[0].self_fenced
        )
    });
    count("budgets", &|s| {
        format!(
            "{} {} {} {}",
            s.faults_left, s.crashes_left, s.deletes_left, s.deposed_left
        )
    });
    count("delivered", &|s| format!("{:?}", s.delivered));
    count("landed", &|s| format!("{:?}", s.landed));
    count("moved", &|s| format!("{:?}", s.moved));
    count("split", &|s| format!("{:?}", s.split));
    count("violations", &|s| format!("{:?}", s.violations));
    count("procs-views", &|s| {
        format!(
            "{:?}",
            s.procs
                .iter()
                .map(|p| (&p.table, &p.cached))
                .collect::<Vec<_>>()
        )
    });
}
