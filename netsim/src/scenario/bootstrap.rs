//! `bootstrap`: every agent starts within a second; how long until every agent's gossip
//! sees every other alive, and what gossip costs per node once it has converged.

use shared::failure::GossipState;

use super::{Outcome, POLL_US, Run};
use crate::sim::Simulation;
use crate::stats::round;
use crate::time::{Micros, as_ms, secs};

/// Convergence must happen within this (or the run fails).
pub const CONVERGE_DEADLINE_US: Micros = secs(120);
/// Steady-state traffic is measured over this window after convergence.
pub const TRAFFIC_WINDOW_US: Micros = secs(60);

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let sim = &mut run.sim;
    let nodes = sim.agents().len();
    match sim.run_until_true(CONVERGE_DEADLINE_US, POLL_US, all_see_all_alive) {
        Some(at) => {
            out.figure("converge_ms", round(as_ms(at)));
            out.line(format!(
                "gossip converged after {:.0} ms (every agent sees every other alive)",
                as_ms(at)
            ));
            out.mark(at, "converged");
        }
        None => out.problem(format!(
            "gossip did not converge within {} s",
            CONVERGE_DEADLINE_US / 1_000_000
        )),
    }
    let (datagrams, bytes) = traffic(sim);
    let from = sim.now();
    sim.run_until(from + TRAFFIC_WINDOW_US);
    let (datagrams_after, bytes_after) = traffic(sim);
    let per_node_s = |x: u64| x as f64 / nodes as f64 / (TRAFFIC_WINDOW_US as f64 / 1e6);
    let msgs = per_node_s(datagrams_after - datagrams);
    let rate = per_node_s(bytes_after - bytes);
    out.figure("msgs_per_node_per_s", round(msgs));
    out.figure("bytes_per_node_per_s", round(rate));
    out.line(format!(
        "steady gossip: {msgs:.1} datagrams and {rate:.0} bytes sent per node per second"
    ));
    sim.check_healed();
    let false_positives = sim.observer().failures.len();
    out.figure("false_positives", false_positives);
    out
}

/// Whether every agent's gossip sees every other agent alive.
pub fn all_see_all_alive(sim: &Simulation) -> bool {
    let agents = sim.agents();
    agents.values().all(|a| {
        let observations = a.membership.observations();
        agents.keys().filter(|o| **o != a.id).all(|o| {
            observations
                .get(o)
                .is_some_and(|obs| obs.gossip == GossipState::Alive)
        })
    })
}

/// Datagrams and bytes sent by every agent so far.
fn traffic(sim: &Simulation) -> (u64, u64) {
    sim.agents().values().fold((0, 0), |(d, b), a| {
        let t = a.membership.traffic();
        (d + t.sent_datagrams.get(), b + t.sent_bytes.get())
    })
}
