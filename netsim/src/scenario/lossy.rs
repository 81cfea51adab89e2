//! `lossy`: every link loses a share of datagrams for a long period, and nothing
//! crashes. Every committed `NodeFailed` is a false positive (none allowed up to the
//! promised 10%); suspicions are counted as the leader shows them.

use super::{Outcome, Run, WARM_UP_US};
use crate::faults::Fault;
use crate::time::{Micros, secs};

/// Loss when `--loss` is not given.
pub const DEFAULT_LOSS: f64 = 0.10;
/// Virtual seconds of loss when `--duration` is not given.
pub const DEFAULT_DURATION_S: u64 = 600;
/// Quiet time after the loss stops, before the liveness check.
pub const HEAL_US: Micros = secs(30);

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let (loss, duration) = (run.params.loss, secs(run.params.duration_s));
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let start = sim.now();
    sim.schedule(start, Fault::SetLoss(loss));
    sim.schedule(start + duration, Fault::HealAll);
    out.mark(start, &format!("loss {:.0}%", loss * 100.0));
    out.mark(start + duration, "loss ends");
    sim.run_until(start + duration + HEAL_US);
    sim.check_healed();
    let observer = sim.observer();
    let false_positives = observer
        .failures
        .iter()
        .filter(|f| f.false_positive)
        .count();
    let suspected_max = observer
        .timeline
        .iter()
        .filter(|s| s.at >= start && s.at <= start + duration)
        .map(|s| s.suspected)
        .max()
        .unwrap_or(0);
    out.figure("loss_pct", loss * 100.0);
    out.figure("lossy_s", run.params.duration_s);
    out.figure("false_positives", false_positives);
    out.figure("leader_suspected_max", suspected_max);
    out.line(format!(
        "{:.0}% loss for {} s: {false_positives} false NodeFailed, at most {suspected_max} \
         nodes SUSPECTED at once in the leader's view",
        loss * 100.0,
        run.params.duration_s
    ));
    out
}
