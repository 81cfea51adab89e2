//! `scale-out`: ten nodes join a balanced cluster; once every agent sees them alive, the
//! leader runs the agent's Scaler (no partition is hot: its scale-out moves and primary
//! hand-overs, within its default concurrency limits), whose moves the executor carries
//! out. Measured: replica moves made against the lower bound of the plan at the start,
//! and the time until the scale-out planner asks for nothing more with no operation
//! running.

use std::collections::BTreeSet;

use shared::model::{NodeId, NodeStatus};

use super::bootstrap::all_see_all_alive;
use super::{Outcome, POLL_US, Run, WARM_UP_US};
use crate::sim::Simulation;
use crate::stats::round;
use crate::time::{Micros, as_ms, secs};

/// Nodes added.
pub const ADDED_NODES: usize = 10;
/// The new nodes must be registered and seen alive within this.
pub const JOIN_DEADLINE_US: Micros = secs(60);
/// The cluster must be balanced within this after the Scaler starts (its default limits
/// run 8 migrations at once, started on 5 s rounds: about 1.6 moves per second).
pub const BALANCE_DEADLINE_US: Micros = secs(3_600);
/// How often the scenario checks for balance.
const BALANCE_POLL_US: Micros = secs(1);
/// Quiet time before the liveness check.
pub const SETTLE_US: Micros = secs(5);

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let added_at = sim.now();
    let added: Vec<NodeId> = (0..ADDED_NODES).map(|_| sim.add_node()).collect();
    out.mark(added_at, &format!("+{ADDED_NODES} nodes"));
    let joined = sim.run_until_true(added_at + JOIN_DEADLINE_US, POLL_US, |s| {
        registered(s, &added) && all_see_all_alive(s)
    });
    let Some(joined) = joined else {
        out.problem("the new nodes did not join in time".into());
        return out;
    };
    out.figure("join_ms", round(as_ms(joined - added_at)));
    out.mark(joined, "rebalancing");
    let before = spread(sim);
    sim.enable_scaler();
    let optimal = sim.rebalance_plan().map_or(0, |p| p.optimal_moves());
    out.figure("optimal_moves", optimal);
    // Planning over every partition is the costly part of a check: once a second, and
    // only with no operation running.
    let balanced = sim.run_until_true(joined + BALANCE_DEADLINE_US, BALANCE_POLL_US, |s| {
        s.log().state().running_operations().next().is_none()
            && s.rebalance_plan().is_some_and(|p| p.is_empty())
    });
    match balanced {
        Some(at) => {
            out.figure("balance_ms", round(as_ms(at - added_at)));
            out.mark(at, "balanced");
        }
        None => out.problem("not balanced within the deadline".into()),
    }
    sim.run_until(sim.now() + SETTLE_US);
    sim.check_healed();
    report(sim, before, optimal, &mut out);
    out
}

fn registered(sim: &Simulation, nodes: &[NodeId]) -> bool {
    let state = sim.log().state();
    nodes.iter().all(|n| {
        state
            .node(*n)
            .is_some_and(|n| n.status == NodeStatus::Healthy)
    })
}

/// Fewest and most copies on a HEALTHY node.
fn spread(sim: &Simulation) -> (usize, usize) {
    let counts: BTreeSet<usize> = sim
        .log()
        .state()
        .nodes()
        .filter(|n| n.status == NodeStatus::Healthy)
        .map(|n| n.partition_ids.len())
        .collect();
    (
        counts.first().copied().unwrap_or(0),
        counts.last().copied().unwrap_or(0),
    )
}

fn report(sim: &Simulation, before: (usize, usize), optimal: usize, out: &mut Outcome) {
    let (Some(r), Some(s)) = (sim.rebalancer(), sim.scaler()) else {
        return;
    };
    let over = if optimal == 0 {
        0.0
    } else {
        (r.moved as f64 / optimal as f64 - 1.0) * 100.0
    };
    let after = spread(sim);
    out.figure("moved_partitions", r.moved);
    out.figure("moves_over_optimal_pct", round(over));
    out.figure("primary_moves", s.hand_overs());
    out.figure("failed_moves", r.failed);
    out.figure("scaler_rounds", s.rounds);
    out.figure("replicas_per_node_min_before", before.0);
    out.figure("replicas_per_node_max_before", before.1);
    out.figure("replicas_per_node_min_after", after.0);
    out.figure("replicas_per_node_max_after", after.1);
    out.line(format!(
        "{} replica moves for a lower bound of {optimal} ({over:+.1}%), {} primary hand-overs, \
         {} failed, in {} Scaler rounds",
        r.moved,
        s.hand_overs(),
        r.failed,
        s.rounds
    ));
    out.line(format!(
        "copies per HEALTHY node: {}..{} before, {}..{} after",
        before.0, before.1, after.0, after.1
    ));
}
