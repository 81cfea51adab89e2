//! The run's report: `report.md` (checks, operations, latency, unavailability per fault
//! kind, faults, control-plane actions, agents' memory and open files) and
//! `report.svg` (latency and throughput over time with fault windows shaded, and each
//! agent's memory).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

mod picture;

use crate::heal::HealReport;
use crate::history::{Event, EventType, Function};
use crate::nemesis::FaultKind;
use crate::run::RunResult;

/// After a fault ends, how long its window still counts for its unavailability (the
/// recovery it caused).
const AFTERMATH_NS: u64 = 5_000_000_000;

/// One completed operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completed {
    /// Read or write.
    pub f: Function,
    /// Ok, fail or info.
    pub kind: EventType,
    /// Invoke time.
    pub invoke_ns: u64,
    /// Completion time.
    pub complete_ns: u64,
}

impl Completed {
    fn latency_ms(&self) -> f64 {
        (self.complete_ns - self.invoke_ns) as f64 / 1e6
    }
}

/// Pairs invokes with completions (what the report counts; the checker does its own,
/// stricter pairing).
pub fn completed(events: &[Event]) -> Vec<Completed> {
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        if e.kind == EventType::Invoke {
            open.insert(e.process, e);
        } else if let Some(invoke) = open.remove(&e.process) {
            out.push(Completed {
                f: invoke.f,
                kind: e.kind,
                invoke_ns: invoke.time_ns,
                complete_ns: e.time_ns.max(invoke.time_ns),
            });
        }
    }
    out
}

/// The value at quantile `q` of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The longest time in `[from, to]` with no successful operation completing: how long
/// clients saw the cluster unavailable in that window. `ok_times` is sorted.
pub fn longest_stall(ok_times: &[u64], from: u64, to: u64) -> u64 {
    let start = ok_times.partition_point(|t| *t < from);
    let mut last = from;
    let mut longest = 0;
    for &t in ok_times[start..].iter().take_while(|t| **t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_sub(last))
}

/// Writes `report.md` and `report.svg` into `out`.
pub fn write(out: &Path, result: &RunResult, events: &[Event]) -> anyhow::Result<()> {
    let ops = completed(events);
    std::fs::write(out.join("report.md"), markdown(result, &ops))?;
    picture::write(&out.join("report.svg"), result, &ops)
}

fn markdown(r: &RunResult, ops: &[Completed]) -> String {
    let mut s = String::new();
    let c = &r.config;
    let _ = writeln!(s, "# Testbed run, seed {}\n", c.seed);
    let _ = writeln!(
        s,
        "{} hosts{} in 3 zones, {} s of faults, {} register clients on {} keys.\n",
        c.hosts,
        if c.join { " (+1 joining mid-run)" } else { "" },
        c.duration.as_secs(),
        c.clients,
        c.keys
    );
    let _ = writeln!(s, "Replay: `{}`\n", replay_command(r));
    if r.failures.is_empty() {
        let _ = writeln!(s, "**Verdict: PASSED** (every check below holds).\n");
    } else {
        let _ = writeln!(s, "**Verdict: FAILED**\n");
        for f in &r.failures {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
    checks(&mut s, r);
    operations(&mut s, ops);
    unavailability(&mut s, r, ops);
    fault_log(&mut s, r);
    control(&mut s, r);
    exits(&mut s, r);
    usage(&mut s, r);
    let _ = writeln!(s, "![latency, throughput and memory over time](report.svg)");
    s
}

/// The command that replays this run.
pub fn replay_command(r: &RunResult) -> String {
    let c = &r.config;
    let kinds: Vec<String> = c.kinds.iter().map(|k| k.name()).collect();
    let nemesis = if kinds.len() == FaultKind::ALL.len() {
        "all".to_string()
    } else if kinds.is_empty() {
        "none".to_string()
    } else {
        kinds.join(",")
    };
    let mut cmd = format!(
        "cargo run --release -p testbed -- run --hosts {} --seed {} --duration {}s --nemesis {nemesis} --fault-min {}ms --fault-max {}ms --gap {}ms --clients {} --keys {}",
        c.hosts,
        c.seed,
        c.duration.as_secs(),
        c.fault_min.as_millis(),
        c.fault_max.as_millis(),
        c.gap.as_millis(),
        c.clients,
        c.keys
    );
    if !c.join {
        cmd.push_str(" --no-join");
    }
    if !c.drain {
        cmd.push_str(" --no-drain");
    }
    cmd
}

fn checks(s: &mut String, r: &RunResult) {
    let _ = writeln!(s, "## Checks\n\n| Check | Result |\n|---|---|");
    match &r.registers {
        Some(reg) => {
            let _ = writeln!(
                s,
                "| Linearizability (per key, Wing–Gong–Lowe) | {} keys, {} operations: {} not linearizable, {} undecided |",
                reg.keys_checked, reg.operations, reg.not_linearizable, reg.unknown
            );
            let _ = writeln!(s, "| Stale reads | {} |", reg.stale_reads.len());
            let _ = writeln!(
                s,
                "| Reads of values never written | {} |",
                reg.phantom_reads.len()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| Linearizability | not checked: {} |",
                r.register_error.as_deref().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(
        s,
        "| Lost acknowledged writes | {} of {} (unverified: {}; unknown-outcome writes found: {}) |",
        r.lost.lost.len(),
        r.lost.acknowledged,
        r.lost.unverified.len(),
        r.lost.unknown_present
    );
    let _ = writeln!(
        s,
        "| Misrouted items | {} ({} partitions and {} keys read from every host's storage) |",
        r.storage.misrouted.len(),
        r.storage.partitions,
        r.storage.keys
    );
    let missing: usize = r.storage.divergent.iter().map(|d| d.2).sum();
    let _ = writeln!(
        s,
        "| Copies that lack keys another copy of their partition holds | {} copies, {missing} keys |",
        r.storage.divergent.len()
    );
    let _ = writeln!(
        s,
        "| Orphaned partition storage | {} (kept by a host that no longer holds the partition) |",
        r.storage.orphaned.len()
    );
    let served = r.control.revocations.iter().filter(|p| p.served).count();
    let _ = writeln!(
        s,
        "| Revoked credentials served | {served} of {} probes (each after the agent applied the revocation) |",
        r.control.revocations.len()
    );
    let _ = writeln!(
        s,
        "| Metadata invariants on every agent | {} |",
        if r.heal.invariant_violations.is_empty() {
            "hold".to_string()
        } else {
            r.heal.invariant_violations.join("; ")
        }
    );
    let heal = match r.heal.after_ms {
        Some(ms) => format!(
            "healed {:.1} s after the last fault (bound {} s)",
            ms as f64 / 1e3,
            r.config.heal_timeout.as_secs()
        ),
        None => format!(
            "NOT healed within {} s: {}",
            r.config.heal_timeout.as_secs(),
            r.heal.problems.join("; ")
        ),
    };
    let _ = writeln!(
        s,
        "| Healing (one leader, metadata replicas equal, all HEALTHY, fully replicated, copies of equal size, a fresh credential accepted everywhere, /healthz true) | {heal} |"
    );
    let settle = match &r.settle {
        None => "not recorded (a run from before this check)".to_string(),
        Some(HealReport {
            after_ms: Some(ms), ..
        }) => format!("settled {:.1} s after the final reads", *ms as f64 / 1e3),
        Some(settle) => format!(
            "NOT settled: {} (the storage checks may see copies mid-change)",
            settle.problems.join("; ")
        ),
    };
    let _ = writeln!(
        s,
        "| Settled before stopping (healed, no operation running) | {settle} |"
    );
    let _ = writeln!(
        s,
        "| /healthz 200 on an agent that cannot serve | {:?} |\n",
        r.heal.healthz_lies
    );
}

fn operations(s: &mut String, ops: &[Completed]) {
    let _ = writeln!(
        s,
        "## Operations\n\n| Operation | ok | fail | info | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|"
    );
    for f in [Function::Read, Function::Write] {
        let mine: Vec<&Completed> = ops.iter().filter(|o| o.f == f).collect();
        let count = |k| mine.iter().filter(|o| o.kind == k).count();
        let mut lat: Vec<f64> = mine
            .iter()
            .filter(|o| o.kind == EventType::Ok)
            .map(|o| o.latency_ms())
            .collect();
        lat.sort_by(f64::total_cmp);
        let _ = writeln!(
            s,
            "| {f:?} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            count(EventType::Ok),
            count(EventType::Fail),
            count(EventType::Info),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    s.push('\n');
}

fn unavailability(s: &mut String, r: &RunResult, ops: &[Completed]) {
    let mut ok_times: Vec<u64> = ops
        .iter()
        .filter(|o| o.kind == EventType::Ok)
        .map(|o| o.complete_ns)
        .collect();
    ok_times.sort_unstable();
    let _ = writeln!(
        s,
        "## Unavailability per fault kind\n\nThe longest time no client operation succeeded, from a fault's start to {} s after its end, and the share of operations completing in that window that did not succeed.\n",
        AFTERMATH_NS / 1_000_000_000
    );
    let _ = writeln!(
        s,
        "| Fault | count | mean stall s | max stall s | not ok |\n|---|---|---|---|---|"
    );
    let mut by_kind: BTreeMap<FaultKind, Vec<(u64, f64)>> = BTreeMap::new();
    for f in &r.faults {
        let to = f.end_ns + AFTERMATH_NS;
        let stall = longest_stall(&ok_times, f.start_ns, to);
        let inside: Vec<&Completed> = ops
            .iter()
            .filter(|o| (f.start_ns..=to).contains(&o.complete_ns))
            .collect();
        let bad = inside.iter().filter(|o| o.kind != EventType::Ok).count();
        let share = if inside.is_empty() {
            0.0
        } else {
            bad as f64 / inside.len() as f64
        };
        by_kind.entry(f.kind).or_default().push((stall, share));
    }
    for (kind, v) in &by_kind {
        let mean = v.iter().map(|x| x.0 as f64).sum::<f64>() / v.len() as f64 / 1e9;
        let max = v.iter().map(|x| x.0).max().unwrap_or(0) as f64 / 1e9;
        let share = v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64;
        let _ = writeln!(
            s,
            "| {} | {} | {mean:.1} | {max:.1} | {:.0}% |",
            kind.name(),
            v.len(),
            share * 100.0
        );
    }
    for (kind, why) in &r.skipped {
        let _ = writeln!(s, "| {} | skipped: {why} | | | |", kind.name());
    }
    s.push('\n');
}

fn fault_log(s: &mut String, r: &RunResult) {
    let _ = writeln!(
        s,
        "## Faults\n\n| start s | end s | kind | hosts | detail |\n|---|---|---|---|---|"
    );
    for f in &r.faults {
        let _ = writeln!(
            s,
            "| {:.1} | {:.1} | {} | {:?} | {} |",
            f.start_ns as f64 / 1e9,
            f.end_ns as f64 / 1e9,
            f.kind.name(),
            f.targets,
            f.detail
        );
    }
    s.push('\n');
}

fn control(s: &mut String, r: &RunResult) {
    let _ = writeln!(
        s,
        "## Control-plane actions\n\n| Action | ok | refused | error |\n|---|---|---|---|"
    );
    let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for a in &r.control.actions {
        let c = counts.entry(a.action.as_str()).or_default();
        let i = if a.outcome.starts_with("ok") {
            0
        } else if a.outcome.starts_with("refused") {
            1
        } else {
            2
        };
        c[i] += 1;
    }
    for (action, c) in counts {
        let _ = writeln!(s, "| {action} | {} | {} | {} |", c[0], c[1], c[2]);
    }
    s.push('\n');
}

fn exits(s: &mut String, r: &RunResult) {
    let _ = writeln!(
        s,
        "## Agents that exited on their own\n\nEach was restarted {} s later, as its service manager would. An exit is by design where the agent cannot go on (its metadata store failed); a panic is a bug and fails the run.\n",
        crate::run::RESTART_DELAY.as_secs()
    );
    if r.exits.is_empty() && r.panics.is_empty() {
        let _ = writeln!(s, "None.\n");
        return;
    }
    let _ = writeln!(s, "| at s | host | status |\n|---|---|---|");
    for e in &r.exits {
        let _ = writeln!(
            s,
            "| {:.1} | {} | {} |",
            e.time_ns as f64 / 1e9,
            e.host,
            e.status
        );
    }
    for (host, line) in &r.panics {
        let _ = writeln!(s, "\nPanic on host {host}: `{line}`");
    }
    s.push('\n');
}

/// One process's samples: (time, RSS, open files).
type Series = Vec<(u64, u64, u64)>;

/// Each host's longest-lived process, as samples (a restart starts a new process).
fn longest_series(r: &RunResult) -> BTreeMap<u16, Series> {
    let mut by_process: BTreeMap<(u16, u32), Series> = BTreeMap::new();
    for u in &r.usage {
        by_process
            .entry((u.host, u.pid))
            .or_default()
            .push((u.time_ns, u.rss_bytes, u.open_files));
    }
    let mut longest: BTreeMap<u16, Series> = BTreeMap::new();
    for ((host, _), series) in by_process {
        let span = |s: &Series| s.last().map_or(0, |l| l.0) - s.first().map_or(0, |f| f.0);
        if longest
            .get(&host)
            .is_none_or(|kept| span(&series) > span(kept))
        {
            longest.insert(host, series);
        }
    }
    longest
}

/// Mean of `f` over the first (or last) tenth of `series`, at least one sample.
fn tenth_mean(series: &Series, last: bool, f: impl Fn(&(u64, u64, u64)) -> u64) -> f64 {
    let n = (series.len() / 10).max(1);
    let slice = if last {
        &series[series.len() - n..]
    } else {
        &series[..n]
    };
    slice.iter().map(&f).sum::<u64>() as f64 / n as f64
}

fn usage(s: &mut String, r: &RunResult) {
    let _ = writeln!(
        s,
        "## Agents' memory and open files\n\nSampled every 2 s. For each host, its longest-running agent process: the mean of the first and of the last tenth of its samples (growth shows as last above first), and the maximum.\n\n| Host | minutes | RSS first MiB | RSS last MiB | RSS max MiB | files first | files last | files max |\n|---|---|---|---|---|---|---|---|"
    );
    let mib = |b: f64| b / (1u64 << 20) as f64;
    for (host, v) in longest_series(r) {
        let minutes = (v[v.len() - 1].0 - v[0].0) as f64 / 60e9;
        let _ = writeln!(
            s,
            "| {host} | {minutes:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            mib(tenth_mean(&v, false, |x| x.1)),
            mib(tenth_mean(&v, true, |x| x.1)),
            mib(v.iter().map(|x| x.1).max().unwrap_or(0) as f64),
            tenth_mean(&v, false, |x| x.2),
            tenth_mean(&v, true, |x| x.2),
            v.iter().map(|x| x.2).max().unwrap_or(0)
        );
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_stall_counts_the_window_edges() {
        let ok = [10, 20, 60, 70];
        assert_eq!(longest_stall(&ok, 0, 100), 40);
        assert_eq!(longest_stall(&ok, 65, 100), 30);
        assert_eq!(longest_stall(&[], 5, 15), 10);
        assert_eq!(longest_stall(&ok, 15, 25), 5);
    }

    #[test]
    fn growth_is_read_off_each_hosts_longest_process() {
        let series: Series = (0..20u64).map(|i| (i, 100 + i * 10, 20)).collect();
        assert_eq!(tenth_mean(&series, false, |x| x.1), 105.0);
        assert_eq!(tenth_mean(&series, true, |x| x.1), 285.0);
        assert_eq!(tenth_mean(&series[..1].to_vec(), true, |x| x.2), 20.0);
    }

    #[test]
    fn quantiles_of_sorted_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn completions_pair_with_their_invokes() {
        let e = |process, kind, time_ns| Event {
            process,
            kind,
            f: Function::Read,
            key: "r1".into(),
            value: None,
            time_ns,
            node: None,
            via: None,
            error: None,
        };
        let ops = completed(&[
            e(1, EventType::Invoke, 10),
            e(2, EventType::Invoke, 11),
            e(2, EventType::Ok, 20),
            e(1, EventType::Info, 30),
        ]);
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].invoke_ns, ops[0].complete_ns), (11, 20));
        assert_eq!((ops[1].kind, ops[1].complete_ns), (EventType::Info, 30));
    }
}
