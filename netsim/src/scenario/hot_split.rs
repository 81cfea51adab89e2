//! `hot-split`: every partition serves a drawn base load (20 to 60% of its share of its
//! table's capacity) and the leader runs the Scaler (the real `plan_scaler`, default
//! settings: hot after 60 s above 110% of the share, a round every 5 s); after 20 s of
//! that, one drawn partition gets 10 times its load, on a quarter of its key range.
//! Measured from the load's start: the split committed, and the busier child's primary
//! copy moved off the parent's node (its `CommitMove`). Then the Scaler stops, the
//! operations in flight end, and the liveness check runs.

use shared::model::PartitionId;

use super::{Outcome, POLL_US, Run, WARM_UP_US};
use crate::rng::SimRng;
use crate::sim::Simulation;
use crate::stats::round;
use crate::time::{Micros, as_ms, secs};

/// How long the Scaler watches the base load before the hot spot starts.
pub const OBSERVE_US: Micros = secs(20);
/// Load factor of the hot partition.
pub const HOT_FACTOR: f64 = 10.0;
/// The child must have moved within this after the load started.
pub const MOVE_DEADLINE_US: Micros = secs(600);
/// Operations in flight must end within this once the Scaler stops.
pub const DRAIN_DEADLINE_US: Micros = secs(120);
/// Quiet time before the liveness check.
pub const SETTLE_US: Micros = secs(5);
/// Mixed into the seed for the scenario's own choice (which partition).
const CHOICE_SALT: u64 = 0x0807_5B17;

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let mut choices = SimRng::new(run.params.seed ^ CHOICE_SALT);
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    sim.enable_scaler();
    sim.run_until(sim.now() + OBSERVE_US);
    let partitions: Vec<PartitionId> = sim
        .log()
        .state()
        .partitions()
        .map(|p| p.partition_id)
        .collect();
    if partitions.is_empty() {
        out.problem("no partition to make hot".into());
        return out;
    }
    let hot = partitions[choices.index(partitions.len())];
    let Some((before, after)) = sim.make_hot(hot, HOT_FACTOR) else {
        out.problem(format!("partition {hot} cannot be made hot"));
        return out;
    };
    let load_at = sim.now();
    out.mark(load_at, &format!("{HOT_FACTOR}x load"));
    let moved = sim.run_until_true(load_at + MOVE_DEADLINE_US, POLL_US, |s| {
        child_moved(s, hot).is_some()
    });
    let split = sim
        .scaler()
        .and_then(|s| s.splits.iter().find(|d| d.parent == hot).copied());
    out.figure("hot_partition", hot);
    out.figure("hot_load_before_ops_per_sec", round(before));
    out.figure("hot_load_ops_per_sec", round(after));
    match split {
        Some(split) => {
            out.figure("split_ms", round(as_ms(split.at - load_at)));
            out.figure("split_write_pause_ms", round(as_ms(split.write_pause)));
            out.mark(split.at, "split");
            let (l, r) = split.children;
            out.line(format!(
                "partition {hot} at {before:.0} -> {after:.0} ops/s: split into {l} ({:.0} \
                 ops/s) and {r} ({:.0} ops/s) {:.1} s after the load started (writes fenced \
                 {:.0} ms)",
                sim.partition_load(l),
                sim.partition_load(r),
                as_ms(split.at - load_at) / 1000.0,
                as_ms(split.write_pause)
            ));
        }
        None => out.problem(format!("partition {hot} was not split in time")),
    }
    match (moved, child_moved(sim, hot)) {
        (Some(_), Some((at, mv))) => {
            out.figure("child_moved_ms", round(as_ms(at - load_at)));
            out.figure("child_load_ops_per_sec", round(mv.ops_per_sec));
            if let Some(split) = split {
                out.figure("split_to_child_moved_ms", round(as_ms(at - split.at)));
            }
            out.mark(at, "child moved");
            out.line(format!(
                "child {} ({:.0} ops/s) moved from node {} to node {} {:.1} s after the load \
                 started (planned {:.1} s after the split)",
                mv.partition_id,
                mv.ops_per_sec,
                mv.from,
                mv.to,
                as_ms(at - load_at) / 1000.0,
                split.map_or(0.0, |s| as_ms(mv.at - s.at) / 1000.0)
            ));
        }
        _ => out.problem("no child of the hot split moved in time".into()),
    }
    sim.stop_scaler();
    let drained = sim.run_until_true(sim.now() + DRAIN_DEADLINE_US, POLL_US, |s| {
        s.rebalancer().is_some_and(|r| r.idle())
    });
    if drained.is_none() {
        out.problem("operations still running after the Scaler stopped".into());
    }
    sim.run_until(sim.now() + SETTLE_US);
    sim.check_healed();
    report(sim, &mut out);
    out
}

/// When the move of a child of the split of `hot` committed, with the move.
fn child_moved(sim: &Simulation, hot: PartitionId) -> Option<(Micros, crate::sim::ChildMove)> {
    let scaler = sim.scaler()?;
    let split = scaler.splits.iter().find(|d| d.parent == hot)?;
    let (l, r) = split.children;
    let committed = &sim.rebalancer()?.committed_at;
    scaler
        .child_moves
        .iter()
        .filter(|m| m.partition_id == l || m.partition_id == r)
        .find_map(|m| Some((*committed.get(&m.partition_id)?, *m)))
}

fn report(sim: &Simulation, out: &mut Outcome) {
    let (Some(s), Some(r)) = (sim.scaler(), sim.rebalancer()) else {
        return;
    };
    out.figure("scaler_rounds", s.rounds);
    out.figure("splits", s.splits.len());
    out.figure("failed_splits", s.failed_splits);
    out.figure("child_moves", s.child_moves.len());
    out.figure("rebalance_moves", s.rebalance_moves);
    out.figure("moved_partitions", r.moved);
    out.figure("failed_moves", r.failed);
    out.figure("hand_overs", s.hand_overs());
    out.line(format!(
        "Scaler: {} rounds, {} splits ({} failed), {} child moves, {} scale-out moves, {} \
         moves committed ({} failed), {} primary hand-overs",
        s.rounds,
        s.splits.len(),
        s.failed_splits,
        s.child_moves.len(),
        s.rebalance_moves,
        r.moved,
        r.failed,
        s.hand_overs()
    ));
}
