//! `crash`: one node crashes, then five at once, then a whole zone. For each crashed
//! node: time to its first suspicion, to its committed `NodeFailed`; for each partition
//! it held: time to the routing change that moved it off, and to that routing on every
//! agent. After each phase the crashed nodes restart with a new incarnation and rejoin.

use std::collections::BTreeSet;

use shared::model::{NodeId, NodeStatus};

use super::bootstrap::all_see_all_alive;
use super::{Outcome, POLL_US, Run, WARM_UP_US};
use crate::config::zone_name;
use crate::faults::Fault;
use crate::invariants::fully_replicated;
use crate::rng::SimRng;
use crate::sim::Simulation;
use crate::stats::{Summary, round};
use crate::time::{Micros, as_ms, secs};

/// A phase must be healed (failed, rerouted, re-replicated, visible) within this.
pub const PHASE_DEADLINE_US: Micros = secs(120);
/// Restarted nodes must be HEALTHY and seen alive by every agent within this.
pub const REJOIN_DEADLINE_US: Micros = secs(60);
/// Quiet time after each phase.
pub const SETTLE_US: Micros = secs(5);
/// Nodes crashed together in the second phase.
pub const SECOND_PHASE_NODES: usize = 5;
/// Mixed into the seed for the scenario's own choices (which nodes, which zone).
const CHOICE_SALT: u64 = 0x00C4_A511;

/// One phase's crash.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Nodes(usize),
    Zone,
}

/// Measurements over all phases.
#[derive(Default)]
struct Figures {
    suspect: Vec<Micros>,
    detect: Vec<Micros>,
    reroute: Vec<Micros>,
    reroute_after_failed: Vec<Micros>,
    visible: Vec<Micros>,
}

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let mut choices = SimRng::new(run.params.seed ^ CHOICE_SALT);
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let mut figures = Figures::default();
    for phase in [
        Phase::Nodes(1),
        Phase::Nodes(SECOND_PHASE_NODES),
        Phase::Zone,
    ] {
        let victims = pick(sim, &mut choices, phase);
        if victims.is_empty() {
            out.problem(format!("{phase:?}: no node left to crash"));
            continue;
        }
        let at = sim.now();
        out.mark(at, &format!("crash {}", victims.len()));
        for v in &victims {
            sim.schedule(at, Fault::Crash(*v));
        }
        sim.run_until(at);
        let healed = sim.run_until_true(at + PHASE_DEADLINE_US, POLL_US, |s| healed(s, &victims));
        match healed {
            Some(t) => out.line(format!(
                "{phase:?}: {} crashed, healed after {:.1} s",
                victims.len(),
                (t - at) as f64 / 1e6
            )),
            None => out.problem(format!("{phase:?}: not healed within the phase deadline")),
        }
        measure(sim, &victims, &mut figures, &mut out, phase);
        sim.run_until(sim.now() + SETTLE_US);
        for v in &victims {
            sim.schedule(sim.now(), Fault::Restart(*v));
        }
        let back = sim.now();
        if sim
            .run_until_true(back + REJOIN_DEADLINE_US, POLL_US, |s| {
                rejoined(s, &victims)
            })
            .is_none()
        {
            out.problem(format!("{phase:?}: restarted nodes did not rejoin in time"));
        }
    }
    sim.run_until(sim.now() + SETTLE_US);
    sim.check_healed();
    report(sim, &figures, &mut out);
    out
}

/// The victims of `phase`: random running nodes, or every node of a random zone. A
/// phase never takes a quorum of the voters: the metadata would (rightly) stall, which
/// is the `partition` scenario's subject, not this one's.
fn pick(sim: &Simulation, choices: &mut SimRng, phase: Phase) -> Vec<NodeId> {
    let voters = &sim.log().voters;
    let spare_voters = voters.len() - sim.log().quorum();
    let mut running: Vec<NodeId> = sim.alive_agents().into_iter().collect();
    match phase {
        Phase::Nodes(n) => {
            let mut victims = Vec::new();
            let mut voters_taken = 0;
            while victims.len() < n && !running.is_empty() {
                let pick = running.swap_remove(choices.index(running.len()));
                if voters.contains(&pick) {
                    if voters_taken == spare_voters {
                        continue;
                    }
                    voters_taken += 1;
                }
                victims.push(pick);
            }
            victims.sort_unstable();
            victims
        }
        Phase::Zone => {
            let zones = sim.config().zones.max(1);
            let first = choices.index(zones);
            (0..zones)
                .map(|i| zone_name((first + i) % zones))
                .map(|zone| {
                    let mut members = running.clone();
                    members.retain(|id| sim.agents()[id].zone == zone);
                    members
                })
                .find(|members| {
                    members.iter().filter(|m| voters.contains(m)).count() <= spare_voters
                })
                .unwrap_or_default()
        }
    }
}

/// Whether every victim is FAILED and owns nothing, every partition is fully
/// replicated, and every running agent has applied the whole log.
fn healed(sim: &Simulation, victims: &[NodeId]) -> bool {
    let state = sim.log().state();
    let failed = victims.iter().all(|v| {
        state
            .node(*v)
            .is_some_and(|n| n.status == NodeStatus::Failed && n.partition_ids.is_empty())
    });
    let commit = sim.log().commit_index();
    failed
        && fully_replicated(state, sim.config().replication_factor).is_ok()
        && sim
            .agents()
            .values()
            .filter(|a| a.is_alive())
            .all(|a| a.applied() == commit)
}

/// Whether the restarted victims are HEALTHY and every agent sees every other alive.
fn rejoined(sim: &Simulation, victims: &[NodeId]) -> bool {
    let state = sim.log().state();
    victims.iter().all(|v| {
        state
            .node(*v)
            .is_some_and(|n| n.status == NodeStatus::Healthy)
    }) && all_see_all_alive(sim)
}

/// Collects the phase's figures before its victims restart.
fn measure(
    sim: &Simulation,
    victims: &[NodeId],
    figures: &mut Figures,
    out: &mut Outcome,
    phase: Phase,
) {
    let observer = sim.observer();
    let mut detect = Vec::new();
    let wanted: BTreeSet<NodeId> = victims.iter().copied().collect();
    for (node, v) in observer.victims.iter().filter(|(n, _)| wanted.contains(n)) {
        match v.suspected_at {
            Some(t) => figures.suspect.push(t - v.crashed_at),
            None => out.problem(format!("node {node} was never suspected")),
        }
        match v.failed_at {
            Some(t) => detect.push(t - v.crashed_at),
            None => out.problem(format!("node {node} was never failed")),
        }
        for (pid, moved) in &v.partitions {
            let Some((at, index)) = moved else {
                out.problem(format!("partition {pid} of node {node} was never rerouted"));
                continue;
            };
            figures.reroute.push(at - v.crashed_at);
            if let Some(failed) = v.failed_at {
                figures.reroute_after_failed.push(at.saturating_sub(failed));
            }
            if let Some(seen) = observer.visible_at(*index) {
                figures.visible.push(seen - v.crashed_at);
            }
        }
    }
    out.line(format!(
        "  {phase:?} detection: {}",
        Summary::of(&detect).human()
    ));
    figures.detect.extend(detect);
}

fn report(sim: &Simulation, f: &Figures, out: &mut Outcome) {
    let summaries = [
        (
            "suspect",
            "first SUSPECTED after crash",
            Summary::of(&f.suspect),
        ),
        (
            "detect",
            "NodeFailed committed after crash",
            Summary::of(&f.detect),
        ),
        (
            "reroute",
            "partition rerouted after crash",
            Summary::of(&f.reroute),
        ),
        (
            "reroute_after_failed",
            "partition rerouted after NodeFailed",
            Summary::of(&f.reroute_after_failed),
        ),
        (
            "visible",
            "new routing on every agent after crash",
            Summary::of(&f.visible),
        ),
        (
            "propagation",
            "routing commit to apply, per agent",
            Summary::of(&sim.observer().propagation_us),
        ),
    ];
    for (key, what, summary) in summaries {
        out.line(format!("{what}: {}", summary.human()));
        summary.put(&mut out.figures, key);
    }
    let false_positives = sim
        .observer()
        .failures
        .iter()
        .filter(|f| f.false_positive)
        .count();
    out.figure("false_positives", false_positives);
    out.figure("crashed_nodes", f.detect.len());
    // Every detection time, so runs of several seeds can be pooled into one p99.
    let detect_ms: Vec<f64> = f.detect.iter().map(|t| round(as_ms(*t))).collect();
    out.figure("detect_each_ms", detect_ms);
    out.figure("rerouted_partitions", f.reroute.len());
}
