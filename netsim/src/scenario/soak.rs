//! `soak`: random faults for a virtual duration (crashes with later restarts, pauses,
//! one- and two-way partitions of random groups, loss periods), then everything heals
//! and the cluster must heal completely. Used to hunt bugs: every invariant is checked
//! throughout, and a failing seed replays exactly.

use std::collections::BTreeSet;

use shared::model::NodeId;

use super::{Outcome, Run, WARM_UP_US};
use crate::faults::Fault;
use crate::rng::SimRng;
use crate::sim::Simulation;
use crate::time::{Micros, millis, secs};

/// Virtual seconds of faults when `--duration` is not given.
pub const DEFAULT_SOAK_S: u64 = 300;
/// Shortest and longest gap between two faults.
pub const FAULT_GAP_US: (Micros, Micros) = (secs(2), secs(15));
/// How long a crashed node stays down.
pub const DOWN_US: (Micros, Micros) = (secs(5), secs(30));
/// How long a pause lasts.
pub const PAUSE_US: (Micros, Micros) = (millis(500), secs(8));
/// How long a partition lasts.
pub const CUT_US: (Micros, Micros) = (secs(2), secs(20));
/// How long a loss period lasts.
pub const LOSS_US: (Micros, Micros) = (secs(5), secs(30));
/// Highest loss of a loss period, in percent.
pub const LOSS_MAX_PCT: u64 = 15;
/// Quiet time after the last fault before the liveness check.
pub const HEAL_US: Micros = secs(60);
/// Mixed into the seed for the scenario's own choices.
const CHOICE_SALT: u64 = 0x0000_50A4;

/// Faults injected, by kind.
#[derive(Default)]
struct Counts {
    crashes: usize,
    pauses: usize,
    partitions: usize,
    loss_periods: usize,
}

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let mut choices = SimRng::new(run.params.seed ^ CHOICE_SALT);
    let end = WARM_UP_US + secs(run.params.duration_s);
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let mut counts = Counts::default();
    loop {
        let at = sim.now() + choices.between(FAULT_GAP_US.0, FAULT_GAP_US.1);
        if at >= end {
            break;
        }
        sim.run_until(at);
        inject(sim, &mut choices, &mut counts);
    }
    sim.run_until(end);
    let now = sim.now();
    sim.schedule(now, Fault::HealAll);
    let down: Vec<NodeId> = sim
        .agents()
        .values()
        .filter(|a| !a.is_alive())
        .map(|a| a.id)
        .collect();
    for node in down {
        sim.schedule(now, Fault::Restart(node));
    }
    out.mark(now, "faults stop");
    sim.run_until(now + HEAL_US);
    sim.check_healed();
    let failures = sim.observer().failures.len();
    out.figure("soak_s", run.params.duration_s);
    out.figure("crashes", counts.crashes);
    out.figure("pauses", counts.pauses);
    out.figure("partitions_cut", counts.partitions);
    out.figure("loss_periods", counts.loss_periods);
    out.figure("node_failed_commits", failures);
    out.line(format!(
        "{} s of faults: {} crashes, {} pauses, {} partitions, {} loss periods; {failures} \
         NodeFailed committed",
        run.params.duration_s,
        counts.crashes,
        counts.pauses,
        counts.partitions,
        counts.loss_periods
    ));
    out
}

/// One random fault now, with its end scheduled.
fn inject(sim: &mut Simulation, choices: &mut SimRng, counts: &mut Counts) {
    let now = sim.now();
    let running: Vec<NodeId> = sim
        .agents()
        .values()
        .filter(|a| a.is_up())
        .map(|a| a.id)
        .collect();
    if running.is_empty() {
        return;
    }
    let node = running[choices.index(running.len())];
    match choices.index(4) {
        0 if crash_keeps_quorum(sim, node) => {
            sim.schedule(now, Fault::Crash(node));
            let back = now + choices.between(DOWN_US.0, DOWN_US.1);
            sim.schedule(back, Fault::Restart(node));
            counts.crashes += 1;
        }
        1 => {
            let for_us = choices.between(PAUSE_US.0, PAUSE_US.1);
            sim.schedule(now, Fault::Pause { node, for_us });
            counts.pauses += 1;
        }
        2 => {
            let (from, to) = groups(sim, choices);
            let name = format!("soak-{}", counts.partitions);
            let both_ways = choices.chance(0.5);
            sim.schedule(
                now,
                Fault::Partition {
                    name: name.clone(),
                    from,
                    to,
                    both_ways,
                },
            );
            sim.schedule(now + choices.between(CUT_US.0, CUT_US.1), Fault::Heal(name));
            counts.partitions += 1;
        }
        3 => {
            let loss = choices.between(1, LOSS_MAX_PCT) as f64 / 100.0;
            sim.schedule(now, Fault::SetLoss(loss));
            sim.schedule(
                now + choices.between(LOSS_US.0, LOSS_US.1),
                Fault::SetLoss(0.0),
            );
            counts.loss_periods += 1;
        }
        _ => {}
    }
}

/// Whether crashing `node` leaves a quorum of running voters (otherwise the metadata
/// stalls until a restart, which is the partition scenario's business, not a soak's).
fn crash_keeps_quorum(sim: &Simulation, node: NodeId) -> bool {
    let voters = &sim.log().voters;
    if !voters.contains(&node) {
        return true;
    }
    let running = voters.iter().filter(|v| sim.agents()[v].is_up()).count();
    running > sim.log().quorum()
}

/// A random group of up to a third of the nodes, and the rest.
fn groups(sim: &Simulation, choices: &mut SimRng) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let mut all: Vec<NodeId> = sim.agents().keys().copied().collect();
    let size = 1 + choices.index((all.len() / 3).max(1));
    let mut group = BTreeSet::new();
    while group.len() < size && !all.is_empty() {
        group.insert(all.swap_remove(choices.index(all.len())));
    }
    (group, all.into_iter().collect())
}
