//! Readable traces: each step of a counterexample with the parts of the state it changed.

use std::fmt::Write as _;

use stateright::Path;

use crate::model::{Action, Model};
use crate::operator::Op;
use crate::state::{Held, Object, Pass, Phase, Proc, State, Table};

fn op(o: Op) -> &'static str {
    match o {
        Op::Leader => "leader",
        Op::Deposed => "deposed leader",
    }
}

fn action(m: &Model, a: &Action) -> String {
    let w = |w: &u8| m.worker_name(*w);
    let s = |s: &u8| m.shard_name(*s).to_owned();
    match a {
        Action::Tick(mask) => {
            let renewed: Vec<String> = (0..8u8)
                .filter(|w| mask & (1 << w) != 0)
                .map(|w| m.worker_name(w))
                .collect();
            if renewed.is_empty() {
                "clock ticks (no periodic write lands)".into()
            } else {
                format!("clock ticks; periodic write of {}", renewed.join(", "))
            }
        }
        Action::Split => "s0 splits (closes; children listed)".into(),
        Action::Rewind => "the user sets spec.reset (every shard to TRIM_HORIZON)".into(),
        Action::Delete(x) => format!("{}'s object is deleted", w(x)),
        Action::Start(x) => format!("{} starts and takes its object over", w(x)),
        Action::Crash(x) => format!("{} crashes", w(x)),
        Action::SeeTable(x) => format!("{} sees the table", w(x)),
        Action::Write(x) => format!("{} writes its status", w(x)),
        Action::SelfFence(x) => format!("{} self-fences", w(x)),
        Action::Read(x, y) => format!("{} reads {}", w(x), s(y)),
        Action::Deliver(x, y) => format!("{}'s sink delivers {}", w(x), s(y)),
        Action::Observe(o) => format!("{} observes and plans", op(*o)),
        Action::Fence(o, true) => format!("{} writes a fence", op(*o)),
        Action::Fence(o, false) => format!("{}'s fence write fails", op(*o)),
        Action::WriteTable(o, true) => format!("{} writes the table", op(*o)),
        Action::WriteTable(o, false) => format!("{}'s table write fails", op(*o)),
    }
}

/// The table, e.g. `s0 w0@2 after 1 draining | s1 -@0 | finished s0`.
pub fn table(m: &Model, t: &Table) -> String {
    let mut rows: Vec<String> = t
        .rows
        .iter()
        .map(|r| {
            let owner = r.owner.map_or("-".to_owned(), |w| m.worker_name(w));
            let mut row = format!("{} {owner}@{}", m.shard_name(r.shard), r.epoch);
            if r.start_after > 0 {
                let _ = write!(row, " after {}", r.start_after);
            }
            if r.draining {
                row.push_str(" draining");
            }
            row
        })
        .collect();
    if !t.finished.is_empty() {
        let f: Vec<&str> = t.finished.iter().map(|s| m.shard_name(*s)).collect();
        rows.push(format!("finished {}", f.join(",")));
    }
    rows.join(" | ")
}

fn object(m: &Model, o: &Object) -> String {
    let mut out = String::new();
    if !o.fences.is_empty() {
        let f: Vec<String> = o
            .fences
            .iter()
            .map(|f| format!("{}@{} pos {}", m.shard_name(f.shard), f.epoch, f.position))
            .collect();
        let _ = write!(out, "fences [{}] ", f.join(", "));
    }
    match &o.status {
        None => out.push_str("no status"),
        Some(st) => {
            let e: Vec<String> = st
                .shards
                .iter()
                .map(|e| {
                    let flags = match (e.released, e.finished) {
                        (true, _) => " released",
                        (_, true) => " finished",
                        _ => "",
                    };
                    format!(
                        "{}@{} pos {}{flags}",
                        m.shard_name(e.shard),
                        e.epoch,
                        e.position
                    )
                })
                .collect();
            let _ = write!(out, "status (inc {}) [{}]", st.holder, e.join(", "));
        }
    }
    out
}

fn held(m: &Model, h: &Held) -> String {
    let name = format!("{}@{}", m.shard_name(h.shard), h.epoch);
    match h.phase {
        Phase::Frozen {
            position,
            released,
            finished,
        } => format!(
            "{name} frozen pos {position}{}{}",
            if released { " released" } else { "" },
            if finished { " finished" } else { "" }
        ),
        phase => {
            let phase = match phase {
                Phase::Reading => "reading".to_owned(),
                Phase::Paused { .. } => "paused".to_owned(),
                Phase::Draining { last_sent } => format!("draining to {last_sent}"),
                _ => "ending".to_owned(),
            };
            format!("{name} {phase} sent {} acked {}", h.sent, h.acked)
        }
    }
}

fn proc(m: &Model, s: &State, p: &Proc) -> String {
    if !p.up {
        return "down".into();
    }
    let view = match &p.table {
        None => "no table",
        Some(t) if *t == s.table => "current table",
        Some(_) => "old table",
    };
    let h: Vec<String> = p.held.iter().map(|h| held(m, h)).collect();
    let sink: Vec<String> = p
        .sink
        .iter()
        .map(|c| format!("{}:{}@{}", m.shard_name(c.shard), c.record, c.epoch))
        .collect();
    format!(
        "inc {}, wrote {} ticks ago{}, {view}, held [{}], sink [{}]",
        p.incarnation,
        p.since_write,
        if p.self_fenced { ", SELF-FENCED" } else { "" },
        h.join("; "),
        sink.join(" ")
    )
}

fn pass(m: &Model, p: &Pass) -> String {
    let c: Vec<String> = p
        .candidates
        .iter()
        .map(|c| {
            format!(
                "{} {}@{} ({})",
                m.worker_name(c.worker),
                m.shard_name(c.shard),
                c.epoch,
                c.reason.label()
            )
        })
        .collect();
    format!(
        "observed table {}; fences to write [{}]; plan {}",
        table(m, &p.read),
        c.join(", "),
        table(m, &p.spec)
    )
}

/// The lines of `after` that differ from `before` (all of them without `before`).
pub fn state_lines(m: &Model, s: &State) -> Vec<String> {
    let mut out = vec![
        format!("stream: {}", if s.split { "s0 split" } else { "s0 open" }),
        format!("table: {}", table(m, &s.table)),
    ];
    for (w, (o, p)) in s.objects.iter().zip(&s.procs).enumerate() {
        let name = m.worker_name(u8::try_from(w).unwrap_or(0));
        let o = o.as_ref().map_or("deleted".to_owned(), |o| object(m, o));
        out.push(format!("{name} object: {o}"));
        out.push(format!("{name} process: {}", proc(m, s, p)));
    }
    let ages: Vec<String> = s
        .ages
        .iter()
        .enumerate()
        .map(|(w, age)| format!("{} {age}", m.worker_name(u8::try_from(w).unwrap_or(0))))
        .collect();
    out.push(format!("status ages (ticks): {}", ages.join(", ")));
    if let Some(p) = &s.pass {
        out.push(format!("leader pass: {}", pass(m, p)));
    }
    if let Some(p) = &s.deposed {
        out.push(format!("deposed pass: {}", pass(m, p)));
    }
    let d: Vec<String> = s
        .delivered
        .iter()
        .enumerate()
        .map(|(i, bits)| {
            let records: Vec<String> = (0..8)
                .filter(|r| bits & (1 << r) != 0)
                .map(|r| (r + 1).to_string())
                .collect();
            format!(
                "{} {{{}}}",
                m.shard_name(u8::try_from(i).unwrap_or(0)),
                records.join(",")
            )
        })
        .collect();
    out.push(format!("delivered: {}", d.join(" ")));
    out
}

/// A counterexample: the initial state, then each step with the lines it changed.
pub fn render(m: &Model, path: Path<State, Action>) -> String {
    let steps = path.into_vec();
    let mut out = String::new();
    let mut before: Vec<String> = Vec::new();
    let mut last: Option<Action> = None;
    for (n, (state, next)) in steps.iter().enumerate() {
        let lines = state_lines(m, state);
        match &last {
            None => {
                let _ = writeln!(out, "initial state:");
            }
            Some(a) => {
                let _ = writeln!(out, "{n:>2}. {}", action(m, a));
            }
        }
        for l in lines.iter().filter(|l| !before.contains(l)) {
            let _ = writeln!(out, "      {l}");
        }
        before = lines;
        last.clone_from(next);
    }
    out
}
