//! Pure planning: how many workers to run, which shards may be read, and which worker reads which shard.
//!
//! No I/O and no Kubernetes types: everything here is a function of plain data, so the
//! reconciler's decisions are unit-tested directly.

use std::collections::{BTreeMap, BTreeSet};

use kinesis_ingester_api::{KinesisIngesterSpec, WorkersSpec};

/// The number of workers an ingester runs for `readable` shards: none while `spec.suspend`
/// (every shard is handed back and the table keeps the positions), else [`desired_workers`].
pub fn fleet_size(spec: &KinesisIngesterSpec, readable: usize) -> i32 {
    if spec.suspend {
        0
    } else {
        desired_workers(&spec.workers, readable)
    }
}

/// A shard as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardView {
    /// Shard id.
    pub id: String,
    /// Parent shard ids (one after a split, two after a merge).
    pub parents: Vec<String>,
    /// Read to its end and checkpointed.
    pub finished: bool,
}

/// The number of workers to run for `readable` shards: `replicas` when set, else
/// `ceil(readable / shardsPerWorker)`, kept within `minReplicas..=maxReplicas`.
pub fn desired_workers(spec: &WorkersSpec, readable: usize) -> i32 {
    let per_worker = usize::try_from(spec.shards_per_worker.max(1)).unwrap_or(1);
    let derived = i32::try_from(readable.div_ceil(per_worker)).unwrap_or(i32::MAX);
    let wanted = spec.replicas.unwrap_or(derived);
    let (min, max) = (spec.min_replicas, spec.max_replicas.max(spec.min_replicas));
    wanted.clamp(min, max)
}

/// Shards that may be read now: not finished and, with `strict_order`, whose parents are all
/// finished. A parent that is not listed (past retention) counts as finished.
pub fn readable_shards(shards: &[ShardView], strict_order: bool) -> Vec<String> {
    let by_id: BTreeMap<&str, &ShardView> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    shards
        .iter()
        .filter(|s| !s.finished)
        .filter(|s| {
            !strict_order
                || s.parents
                    .iter()
                    .all(|p| by_id.get(p.as_str()).is_none_or(|parent| parent.finished))
        })
        .map(|s| s.id.clone())
        .collect()
}

/// A balanced assignment of `shards` to `workers` that moves as few shards as possible from
/// `current`: every worker gets `floor(n/w)` or `ceil(n/w)` shards, a shard stays with its worker
/// whenever that fits, and only the excess of over-full workers and the shards of gone workers
/// move. Deterministic for the same input.
pub fn assign(
    shards: &[String],
    workers: &[String],
    current: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if workers.is_empty() {
        return out;
    }
    let wanted: BTreeSet<&str> = shards.iter().map(String::as_str).collect();
    let alive: BTreeSet<&str> = workers.iter().map(String::as_str).collect();

    // What each live worker keeps, before capacity limits.
    let mut kept: BTreeMap<&str, Vec<&str>> =
        workers.iter().map(|w| (w.as_str(), Vec::new())).collect();
    for (shard, worker) in current {
        if wanted.contains(shard.as_str()) && alive.contains(worker.as_str()) {
            kept.entry(worker.as_str())
                .or_default()
                .push(shard.as_str());
        }
    }

    // Capacities: the workers holding the most get the `n % w` extra slots, so fewer shards move.
    let (base, extra) = (wanted.len() / workers.len(), wanted.len() % workers.len());
    let mut order: Vec<&str> = kept.keys().copied().collect();
    order.sort_by(|a, b| kept[b].len().cmp(&kept[a].len()).then(a.cmp(b)));
    let capacity: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, base + usize::from(i < extra)))
        .collect();

    // Keep what fits; the rest (and every unassigned shard) is placed below.
    let mut loads: BTreeMap<&str, usize> = BTreeMap::new();
    for (worker, mut held) in kept {
        held.sort_unstable();
        let cap = capacity[worker];
        for shard in held.iter().take(cap) {
            out.insert((*shard).to_owned(), worker.to_owned());
        }
        loads.insert(worker, held.len().min(cap));
    }
    for shard in &wanted {
        if out.contains_key(*shard) {
            continue;
        }
        // The worker with the most room left (then the fewest shards, then by name).
        let target = loads
            .iter()
            .filter(|(w, load)| **load < capacity[**w])
            .min_by(|(wa, la), (wb, lb)| la.cmp(lb).then(wa.cmp(wb)))
            .map(|(w, _)| *w);
        if let Some(worker) = target {
            out.insert((*shard).to_owned(), worker.to_owned());
            *loads.entry(worker).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:03}")).collect()
    }

    fn moved(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> usize {
        after
            .iter()
            .filter(|(s, w)| before.get(*s).is_some_and(|b| b != *w))
            .count()
    }

    fn loads(a: &BTreeMap<String, String>) -> Vec<usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for w in a.values() {
            *counts.entry(w).or_default() += 1;
        }
        counts.into_values().collect()
    }

    #[test]
    fn worker_count_follows_shards_per_worker_within_bounds_or_explicit_replicas() {
        let spec = |per, min, max, replicas| WorkersSpec {
            shards_per_worker: per,
            min_replicas: min,
            max_replicas: max,
            replicas,
            ..WorkersSpec::default()
        };
        assert_eq!(desired_workers(&spec(4, 1, 10, None), 10), 3, "ceil(10/4)");
        assert_eq!(
            desired_workers(&spec(4, 1, 10, None), 0),
            1,
            "never below min"
        );
        assert_eq!(
            desired_workers(&spec(1, 1, 10, None), 1000),
            10,
            "never above max"
        );
        assert_eq!(
            desired_workers(&spec(4, 1, 10, Some(7)), 10),
            7,
            "explicit replicas win"
        );
        assert_eq!(
            desired_workers(&spec(4, 2, 10, Some(0)), 10),
            2,
            "explicit replicas stay within bounds"
        );
    }

    #[test]
    fn children_wait_for_their_parents_unless_strict_order_is_off() {
        let shard = |id: &str, parents: &[&str], finished| ShardView {
            id: id.into(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            finished,
        };
        let shards = vec![
            shard("p", &[], false),
            shard("c1", &["p"], false),
            shard("c2", &["p"], false),
            shard("done", &[], true),
            shard("m", &["done", "gone"], false),
        ];
        assert_eq!(
            readable_shards(&shards, true),
            ["p", "m"],
            "children of p wait; a merge child of a finished and an expired parent may start"
        );
        assert_eq!(readable_shards(&shards, false), ["p", "c1", "c2", "m"]);
        let mut shards = shards;
        shards[0].finished = true;
        assert_eq!(readable_shards(&shards, true), ["c1", "c2", "m"]);
    }

    #[test]
    fn a_fresh_assignment_is_balanced_and_deterministic() {
        let shards = names("s", 10);
        let workers = names("w", 3);
        let a = assign(&shards, &workers, &BTreeMap::new());
        assert_eq!(a.len(), 10);
        let mut l = loads(&a);
        l.sort_unstable();
        assert_eq!(l, [3, 3, 4]);
        assert_eq!(a, assign(&shards, &workers, &BTreeMap::new()));
    }

    #[test]
    fn an_unchanged_input_moves_nothing() {
        let shards = names("s", 1000);
        let workers = names("w", 100);
        let a = assign(&shards, &workers, &BTreeMap::new());
        assert_eq!(moved(&a, &assign(&shards, &workers, &a)), 0);
    }

    #[test]
    fn adding_a_worker_moves_only_what_it_takes() {
        let shards = names("s", 100);
        let before = assign(&shards, &names("w", 4), &BTreeMap::new());
        let after = assign(&shards, &names("w", 5), &before);
        assert_eq!(
            moved(&before, &after),
            20,
            "the new worker takes its 20 and nothing else moves"
        );
        assert!(loads(&after).iter().all(|l| *l == 20));
    }

    #[test]
    fn removing_a_worker_moves_only_its_shards() {
        let shards = names("s", 100);
        let workers = names("w", 5);
        let before = assign(&shards, &workers, &BTreeMap::new());
        let after = assign(&shards, &workers[..4], &before);
        let on_gone = before.values().filter(|w| *w == "w004").count();
        assert_eq!(moved(&before, &after), on_gone);
        assert!(after.values().all(|w| w != "w004"));
        assert!(loads(&after).iter().all(|l| *l == 25));
    }

    #[test]
    fn a_reshard_moves_no_existing_shard_when_the_balance_allows() {
        let workers = names("w", 4);
        let before = assign(&names("s", 8), &workers, &BTreeMap::new());
        // s000 split into two children: 9 readable shards, the parent finished.
        let mut shards: Vec<String> = names("s", 8).into_iter().skip(1).collect();
        shards.extend(["c1".to_owned(), "c2".to_owned()]);
        let after = assign(&shards, &workers, &before);
        assert_eq!(after.len(), 9);
        assert_eq!(
            moved(&before, &after),
            0,
            "the children fill the room; no shard changes owner"
        );
        let mut l = loads(&after);
        l.sort_unstable();
        assert_eq!(l, [2, 2, 2, 3]);
    }

    #[test]
    fn an_uneven_assignment_is_rebalanced_with_the_fewest_moves() {
        // 4 / 4 / 2 over 3 workers: the balanced 4 / 3 / 3 is one move away.
        let shards = names("s", 10);
        let workers = names("w", 3);
        let owner = |i: usize| {
            if i < 4 {
                "w000"
            } else if i < 8 {
                "w001"
            } else {
                "w002"
            }
        };
        let current: BTreeMap<String, String> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), owner(i).to_owned()))
            .collect();
        let after = assign(&shards, &workers, &current);
        assert_eq!(moved(&current, &after), 1);
        let mut l = loads(&after);
        l.sort_unstable();
        assert_eq!(l, [3, 3, 4]);
    }

    #[test]
    fn no_workers_means_no_assignment() {
        assert!(assign(&names("s", 3), &[], &BTreeMap::new()).is_empty());
    }
}
