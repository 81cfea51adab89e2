//! `partition`: a minority of the nodes, holding one voter (at times the leader), is cut
//! off both ways for a while, then healed. The majority must keep committing (a new
//! leader if the old one was cut off, the minority failed and its partitions moved); a
//! cut-off primary must stop serving (its read lease lapses without leader contact)
//! before the partition's new primary is committed; after healing the cut-off nodes
//! rejoin with new incarnations and the cluster heals completely.

use std::collections::{BTreeMap, BTreeSet};

use shared::model::{NodeId, NodeStatus, PartitionId};

use super::bootstrap::all_see_all_alive;
use super::{Outcome, POLL_US, Run, WARM_UP_US};
use crate::config::READ_LEASE_US;
use crate::faults::Fault;
use crate::rng::SimRng;
use crate::sim::Simulation;
use crate::stats::{Summary, round};
use crate::time::{Micros, as_ms, secs};

/// Share of the nodes cut off (one in five).
pub const MINORITY_DIVISOR: usize = 5;
/// How long the minority stays cut off.
pub const CUT_US: Micros = secs(30);
/// The healed nodes must be back (HEALTHY, seen alive) within this.
pub const REJOIN_DEADLINE_US: Micros = secs(60);
/// Quiet time before the liveness check.
pub const SETTLE_US: Micros = secs(5);
/// Mixed into the seed for the scenario's own choices.
const CHOICE_SALT: u64 = 0x0000_9A27;
/// Name of the cut.
const CUT: &str = "minority";

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let mut choices = SimRng::new(run.params.seed ^ CHOICE_SALT);
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let minority = pick_minority(sim, &mut choices);
    let majority: BTreeSet<NodeId> = sim
        .agents()
        .keys()
        .copied()
        .filter(|n| !minority.contains(n))
        .collect();
    let leader_cut = sim.log().leader.is_some_and(|l| minority.contains(&l));
    let primaries = primaries_of(sim, &minority);
    let no_live_copy = held_only_by(sim, &minority);
    let cut_at = sim.now();
    for node in &minority {
        let held = sim
            .log()
            .state()
            .node(*node)
            .map(|n| n.partition_ids.clone());
        sim.follow(*node, cut_at, &held.unwrap_or_default());
    }
    let commits_before = sim.observer().commits;
    sim.schedule(
        cut_at,
        Fault::Partition {
            name: CUT.into(),
            from: minority.clone(),
            to: majority,
            both_ways: true,
        },
    );
    out.mark(cut_at, &format!("cut {}", minority.len()));
    let mut lease_lapse = Vec::new();
    let mut overlap = Vec::new();
    while sim.now() < cut_at + CUT_US {
        let next = sim.now() + POLL_US;
        sim.run_until(next);
        watch_leases(sim, &primaries, &mut lease_lapse, cut_at);
    }
    let commits = sim.observer().commits - commits_before;
    let new_leader = sim.log().leader.filter(|l| !minority.contains(l));
    let stranded = measure_overlap(sim, &primaries, &no_live_copy, &mut overlap, &mut out);
    let healed_at = sim.now();
    sim.schedule(healed_at, Fault::Heal(CUT.into()));
    out.mark(healed_at, "healed");
    let back = sim.run_until_true(healed_at + REJOIN_DEADLINE_US, POLL_US, |s| {
        rejoined(s, &minority)
    });
    match back {
        Some(t) => out.figure("rejoin_ms", round(as_ms(t - healed_at))),
        None => out.problem("the cut-off nodes did not rejoin in time".into()),
    }
    sim.run_until(sim.now() + SETTLE_US);
    sim.check_healed();
    let findings = Findings {
        minority,
        commits,
        leader_cut,
        new_leader,
        lease_lapse,
        overlap,
        stranded,
    };
    report(sim, &findings, &mut out);
    out
}

/// What the cut showed, for the report.
struct Findings {
    minority: BTreeSet<NodeId>,
    commits: u64,
    leader_cut: bool,
    new_leader: Option<NodeId>,
    lease_lapse: Vec<Micros>,
    overlap: Vec<Micros>,
    /// Partitions every copy of which was cut off: recovery leaves them where they are
    /// (a FAILED holder may come back with the data; issue 14), so they keep their
    /// cut-off primary until the cut heals.
    stranded: usize,
}

/// One voter (drawn, so at times the leader) and non-voters up to a fifth of the nodes.
fn pick_minority(sim: &Simulation, choices: &mut SimRng) -> BTreeSet<NodeId> {
    let voters: Vec<NodeId> = sim.log().voters.iter().copied().collect();
    let mut minority = BTreeSet::from([voters[choices.index(voters.len())]]);
    let mut others: Vec<NodeId> = sim
        .agents()
        .keys()
        .copied()
        .filter(|n| !sim.log().voters.contains(n))
        .collect();
    let size = (sim.agents().len() / MINORITY_DIVISOR).max(1);
    while minority.len() < size && !others.is_empty() {
        minority.insert(others.swap_remove(choices.index(others.len())));
    }
    minority
}

/// The partitions whose primary is in `nodes`, with that primary.
fn primaries_of(sim: &Simulation, nodes: &BTreeSet<NodeId>) -> BTreeMap<PartitionId, NodeId> {
    sim.log()
        .state()
        .partitions()
        .filter(|p| nodes.contains(&p.primary_node_id))
        .map(|p| (p.partition_id, p.primary_node_id))
        .collect()
}

/// Records, once per cut-off primary, how long after the cut its lease lapsed.
fn watch_leases(
    sim: &Simulation,
    primaries: &BTreeMap<PartitionId, NodeId>,
    lapsed: &mut Vec<Micros>,
    cut_at: Micros,
) {
    let owners: BTreeSet<NodeId> = primaries.values().copied().collect();
    let already = lapsed.len();
    if already == owners.len() {
        return;
    }
    let now = sim.now();
    let lapsed_now = owners
        .iter()
        .filter(|n| !sim.agents()[n].holds_lease(now, READ_LEASE_US))
        .count();
    for _ in already..lapsed_now {
        lapsed.push(now - cut_at);
    }
}

/// The partitions every copy of which is on `nodes`.
fn held_only_by(sim: &Simulation, nodes: &BTreeSet<NodeId>) -> BTreeSet<PartitionId> {
    sim.log()
        .state()
        .partitions()
        .filter(|p| p.all_nodes().all(|n| nodes.contains(&n)))
        .map(|p| p.partition_id)
        .collect()
}

/// For every partition moved off a cut-off primary: how long the old primary's lease
/// outlived the commit of the new primary (0 when it lapsed first, as it must). A
/// partition with a copy outside the cut must have moved; one without (`no_live_copy`)
/// stays, and is counted. Returns that count.
fn measure_overlap(
    sim: &Simulation,
    primaries: &BTreeMap<PartitionId, NodeId>,
    no_live_copy: &BTreeSet<PartitionId>,
    overlap: &mut Vec<Micros>,
    out: &mut Outcome,
) -> usize {
    let observer = sim.observer();
    let mut stranded = 0;
    for (pid, old) in primaries {
        let Some(victim) = observer.victims.get(old) else {
            continue;
        };
        let Some(Some((moved_at, _))) = victim.partitions.get(pid) else {
            if no_live_copy.contains(pid) {
                stranded += 1;
            } else {
                out.problem(format!("partition {pid} kept its cut-off primary {old}"));
            }
            continue;
        };
        let lease_end = sim.agents()[old]
            .leader_contact_at
            .map_or(0, |t| t + READ_LEASE_US);
        let o = lease_end.saturating_sub(*moved_at);
        if o > 0 {
            out.problem(format!(
                "partition {pid}: old primary {old} held its lease {} ms past the new primary",
                o / 1000
            ));
        }
        overlap.push(o);
    }
    stranded
}

fn rejoined(sim: &Simulation, nodes: &BTreeSet<NodeId>) -> bool {
    let state = sim.log().state();
    nodes.iter().all(|n| {
        state
            .node(*n)
            .is_some_and(|r| r.status == NodeStatus::Healthy && r.incarnation > 1)
    }) && all_see_all_alive(sim)
}

fn report(sim: &Simulation, f: &Findings, out: &mut Outcome) {
    let Findings {
        minority,
        commits,
        leader_cut,
        new_leader,
        lease_lapse,
        overlap,
        stranded,
    } = f;
    let (commits, leader_cut) = (*commits, *leader_cut);
    let failed: Vec<Micros> = minority
        .iter()
        .filter_map(|n| sim.observer().victims.get(n))
        .filter_map(|v| v.failed_at.map(|t| t - v.crashed_at))
        .collect();
    if failed.len() != minority.len() {
        out.problem(format!(
            "{} of {} cut-off nodes were failed by the majority",
            failed.len(),
            minority.len()
        ));
    }
    if commits == 0 || new_leader.is_none() {
        out.problem("the majority stopped committing".into());
    }
    let detect = Summary::of(&failed);
    let lapse = Summary::of(lease_lapse);
    out.figure("cut_nodes", minority.len());
    out.figure("leader_cut", leader_cut);
    out.figure("majority_commits", commits);
    detect.put(&mut out.figures, "detect");
    // The margin the read lease has: the earliest failure against the latest lapse.
    out.figure("detect_min_ms", round(detect.min_ms));
    lapse.put(&mut out.figures, "lease_lapse");
    out.figure(
        "serving_overlap_max_ms",
        round(as_ms(overlap.iter().copied().max().unwrap_or(0))),
    );
    out.line(format!(
        "{} nodes cut off (leader among them: {leader_cut}); the majority committed {commits} \
         entries meanwhile",
        minority.len()
    ));
    out.line(format!(
        "cut-off nodes failed after: {}, min {:.0} ms",
        detect.human(),
        detect.min_ms
    ));
    out.line(format!(
        "cut-off primaries' leases lapsed after: {}",
        lapse.human()
    ));
    out.line(format!(
        "{} partitions moved off cut-off primaries; no old lease outlived its new primary: {}",
        overlap.len(),
        overlap.iter().all(|o| *o == 0)
    ));
    out.figure("no_live_copy_partitions", *stranded);
    if *stranded > 0 {
        out.line(format!(
            "{} partitions had every copy cut off: left on their holders (unavailable) until \
             the cut healed, as recovery waits for a FAILED holder rather than start a \
             partition empty",
            stranded
        ));
    }
}
