//! Pure placement planners: partition counts, initial assignment, voter selection.
//!
//! Planners read a `MetaState` and return a plan; the caller proposes it through Raft
//! and `MetaState::apply` validates it again. Every planner is deterministic: equal
//! inputs give equal plans, whichever node computes them.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::PartitionAssignment;
use crate::keyspace::even_ranges;
use crate::model::{Capacity, CapacityMode, KeyRange, Node, NodeId, TableId};
use crate::state::MetaState;
use crate::validate::{MAX_PARTITIONS_PER_TABLE, MAX_REPLICATION_FACTOR};

/// Tunables of the initial placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementConfig {
    /// Nodes (primary plus replicas) per partition.
    pub replication_factor: usize,
    /// Write capacity units one partition serves.
    pub write_units_per_partition: u64,
    /// Read capacity units one partition serves.
    pub read_units_per_partition: u64,
    /// Partitions of a new ON_DEMAND table.
    pub on_demand_initial_partitions: u32,
    /// Most partitions a table gets at creation.
    pub max_partitions_per_table: u32,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            replication_factor: 3,
            write_units_per_partition: 1000,
            read_units_per_partition: 3000,
            on_demand_initial_partitions: 4,
            max_partitions_per_table: 4096,
        }
    }
}

/// Partitions a table of this capacity starts with (at least 1, at most the config's cap).
pub fn partition_count(capacity: &Capacity, cfg: &PlacementConfig) -> u32 {
    let wanted = match capacity.mode {
        CapacityMode::Provisioned => {
            let w = capacity
                .write_units
                .div_ceil(cfg.write_units_per_partition.max(1));
            let r = capacity
                .read_units
                .div_ceil(cfg.read_units_per_partition.max(1));
            w.max(r)
        }
        CapacityMode::OnDemand => u64::from(cfg.on_demand_initial_partitions),
    };
    let cap = u64::from(cfg.max_partitions_per_table).min(MAX_PARTITIONS_PER_TABLE as u64);
    // Both bounds fit in u32, so the conversion cannot fail.
    u32::try_from(wanted.clamp(1, cap.max(1))).unwrap_or(1)
}

/// The partitions of a new table and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementPlan {
    /// One assignment per partition, ordered by key range.
    pub assignments: Vec<PartitionAssignment>,
    /// Nodes per partition actually used (may be below the configured factor).
    pub replication_factor: usize,
    /// Why the plan is weaker than configured (fewer nodes or zones), for the operator.
    pub warnings: Vec<String>,
}

/// Why no plan could be made. Planning never changes state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No HEALTHY, non-excluded node exists to hold partitions.
    #[error("no healthy node to place partitions on")]
    NoLiveNodes,
    /// The table id names no table.
    #[error("table {0} not found")]
    TableNotFound(TableId),
}

/// A candidate node and the load it carries, including what this plan added.
#[derive(Debug, Clone)]
struct Candidate {
    node_id: NodeId,
    zone: usize,
    partitions: usize,
    primaries: usize,
}

/// Loads of all usable (HEALTHY, not excluded) nodes, ordered by node id, with zones interned as indices.
struct Loads {
    nodes: Vec<Candidate>,
    zone_count: usize,
}

impl Loads {
    fn from_state(state: &MetaState, excluded: &BTreeSet<NodeId>) -> Self {
        let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
        for p in state.partitions() {
            *primaries.entry(p.primary_node_id).or_default() += 1;
        }
        let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
        let mut nodes = Vec::new();
        let usable = |n: &&Node| n.status.accepts_new_work() && !excluded.contains(&n.node_id);
        for n in state.nodes().filter(usable) {
            let next = zones.len();
            nodes.push(Candidate {
                node_id: n.node_id,
                zone: *zones.entry(n.zone.as_str()).or_insert(next),
                partitions: n.partition_ids.len(),
                primaries: primaries.get(&n.node_id).copied().unwrap_or(0),
            });
        }
        Loads {
            nodes,
            zone_count: zones.len(),
        }
    }

    /// Picks `rf` distinct nodes for one range and books their load.
    ///
    /// Each pick takes the node minimising (replicas of this partition already in its
    /// zone, partitions held, primaries held, node id): zones are spread first, then
    /// load. Within a zone every pick is a least-loaded node of that zone, so a zone
    /// whose loads are within 1 of each other stays so (the k smallest of values
    /// within 1 of each other, incremented, stay within 1), and a wider spread (a node
    /// that joined late) never widens.
    ///
    /// Primaries only break ties: the first pick prefers the fewest primaries (it is
    /// the likely primary), later picks prefer the most, so that nodes short of
    /// primaries are not spent as plain replicas and stay available to lead the next
    /// partitions. This keeps primaries as even as replicas in practice.
    fn place(&mut self, range: KeyRange, rf: usize) -> PartitionAssignment {
        let mut chosen: Vec<usize> = Vec::with_capacity(rf);
        let mut in_zone = vec![0usize; self.zone_count];
        for pick in 0..rf {
            let best = (0..self.nodes.len())
                .filter(|i| !chosen.contains(i))
                .min_by_key(|&i| {
                    let c = &self.nodes[i];
                    let primaries = if pick == 0 {
                        c.primaries
                    } else {
                        usize::MAX - c.primaries
                    };
                    (in_zone[c.zone], c.partitions, primaries, c.node_id)
                })
                .expect("rf never exceeds the number of candidates");
            in_zone[self.nodes[best].zone] += 1;
            chosen.push(best);
        }
        // The primary is the chosen node with the fewest primaries.
        let primary = *chosen
            .iter()
            .min_by_key(|&&i| (self.nodes[i].primaries, self.nodes[i].node_id))
            .expect("rf >= 1");
        for &i in &chosen {
            self.nodes[i].partitions += 1;
        }
        self.nodes[primary].primaries += 1;
        let mut replica_node_ids: Vec<NodeId> = chosen
            .iter()
            .filter(|&&i| i != primary)
            .map(|&i| self.nodes[i].node_id)
            .collect();
        replica_node_ids.sort_unstable();
        PartitionAssignment {
            range,
            primary_node_id: self.nodes[primary].node_id,
            replica_node_ids,
        }
    }
}

/// The replication factor to use, with a warning for each reason it differs from `cfg`.
fn effective_rf(cfg: &PlacementConfig, healthy: usize, warnings: &mut Vec<String>) -> usize {
    let mut rf = cfg.replication_factor.clamp(1, MAX_REPLICATION_FACTOR);
    if rf != cfg.replication_factor {
        warnings.push(format!(
            "replication factor {} is outside 1..={MAX_REPLICATION_FACTOR}; using {rf}",
            cfg.replication_factor
        ));
    }
    if healthy < rf {
        warnings.push(format!(
            "replication factor reduced from {rf} to {healthy}: only {healthy} healthy nodes"
        ));
        rf = healthy;
    }
    rf
}

/// Plans the partitions of a new table on HEALTHY nodes not in `excluded` (e.g. nodes
/// the leader cannot reach): even ranges, `rf` replicas each, zones spread first, then
/// least-loaded nodes, primaries spread too. Deterministic.
pub fn plan_new_table(
    state: &MetaState,
    table_id: TableId,
    cfg: &PlacementConfig,
    excluded: &BTreeSet<NodeId>,
) -> Result<PlacementPlan, PlacementError> {
    let table = state
        .table(table_id)
        .ok_or(PlacementError::TableNotFound(table_id))?;
    let mut loads = Loads::from_state(state, excluded);
    if loads.nodes.is_empty() {
        return Err(PlacementError::NoLiveNodes);
    }
    let mut warnings = Vec::new();
    let rf = effective_rf(cfg, loads.nodes.len(), &mut warnings);
    // A single zone (often "") means zones are not in use: nothing to warn about.
    if loads.zone_count > 1 && loads.zone_count < rf {
        warnings.push(format!(
            "only {} zones for {rf} replicas: some zones hold two replicas of a partition",
            loads.zone_count
        ));
    }
    let assignments = even_ranges(partition_count(&table.capacity, cfg))
        .into_iter()
        .map(|range| loads.place(range, rf))
        .collect();
    Ok(PlacementPlan {
        assignments,
        replication_factor: rf,
        warnings,
    })
}

/// How many Raft voters the cluster should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterConfig {
    /// Voters in a small cluster.
    pub voters_small: usize,
    /// Voters in a large cluster.
    pub voters_large: usize,
    /// Nodes from which a cluster counts as large.
    pub large_cluster_min_nodes: usize,
}

impl Default for VoterConfig {
    fn default() -> Self {
        VoterConfig {
            voters_small: 3,
            voters_large: 5,
            large_cluster_min_nodes: 7,
        }
    }
}

/// Number of voters wanted for `node_count` nodes: never more than there are nodes, and
/// odd, because an even voter count tolerates no more failures than one voter fewer while
/// needing a larger quorum.
pub fn voter_target(node_count: usize, cfg: &VoterConfig) -> usize {
    let wanted = if node_count >= cfg.large_cluster_min_nodes {
        cfg.voters_large
    } else {
        cfg.voters_small
    };
    largest_odd_at_most(wanted.min(node_count))
}

/// The largest odd number not above `n` (0 for 0).
fn largest_odd_at_most(n: usize) -> usize {
    if n % 2 == 1 || n == 0 { n } else { n - 1 }
}

/// A node that is, or could become, a Raft voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterCandidate {
    /// Node id.
    pub node_id: NodeId,
    /// Zone ("" when zones are not used).
    pub zone: String,
}

/// Learners to promote so the voters reach `target` (or the largest odd count the
/// learners allow): zones without a voter first, then zones with the fewest voters, then
/// lowest node id. Deterministic, in promotion order.
pub fn learners_to_promote(
    voters: &[VoterCandidate],
    learners: &[VoterCandidate],
    target: usize,
) -> Vec<NodeId> {
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for v in voters {
        *per_zone.entry(v.zone.as_str()).or_default() += 1;
    }
    // A learner listed twice, or already a voter, is not a candidate.
    let mut pool: Vec<&VoterCandidate> = learners
        .iter()
        .filter(|l| !voters.iter().any(|v| v.node_id == l.node_id))
        .collect();
    pool.sort_by_key(|l| l.node_id);
    pool.dedup_by_key(|l| l.node_id);
    // Promote only to an odd voter count (or the target): a step to an even count adds
    // quorum size without adding fault tolerance, so wait for one more learner instead.
    let reachable = (voters.len() + pool.len()).min(target);
    let goal = if reachable == target {
        target
    } else {
        largest_odd_at_most(reachable)
    };
    let needed = goal.saturating_sub(voters.len());
    let mut promoted = Vec::with_capacity(needed);
    for _ in 0..needed {
        let (i, _) = pool
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| {
                (
                    per_zone.get(l.zone.as_str()).copied().unwrap_or(0),
                    l.node_id,
                )
            })
            .expect("pool holds at least `needed` learners");
        let pick = pool.remove(i);
        *per_zone.entry(pick.zone.as_str()).or_default() += 1;
        promoted.push(pick.node_id);
    }
    promoted
}

/// The new full voter set, or `None` for no change. `voters` are the healthy voters
/// (one also listed in `dead_voters` counts as dead), `dead_voters` the voters judged
/// dead, `caught_up_learners` the learners fit to vote.
///
/// Without dead voters this only promotes learners (as `learners_to_promote`). With dead
/// voters it removes them all, promoting learners to keep the count odd; if the set
/// would still be even (or empty) it keeps the dead voters until a learner can replace
/// one: an even voter set tolerates no more failures than one voter fewer while needing
/// a larger quorum. Never returns a set containing a dead voter, nor the current set.
pub fn plan_voter_change(
    voters: &[VoterCandidate],
    dead_voters: &[NodeId],
    caught_up_learners: &[VoterCandidate],
    target: usize,
) -> Option<BTreeSet<NodeId>> {
    let dead: BTreeSet<NodeId> = dead_voters.iter().copied().collect();
    let healthy: Vec<VoterCandidate> = voters
        .iter()
        .filter(|v| !dead.contains(&v.node_id))
        .cloned()
        .collect();
    let learners: Vec<VoterCandidate> = caught_up_learners
        .iter()
        .filter(|l| !dead.contains(&l.node_id))
        .cloned()
        .collect();
    let mut promoted = learners_to_promote(&healthy, &learners, target);
    let mut new: BTreeSet<NodeId> = healthy.iter().map(|v| v.node_id).collect();
    if dead.is_empty() {
        if promoted.is_empty() {
            return None;
        }
        new.extend(promoted);
        return Some(new);
    }
    if (new.len() + promoted.len()).is_multiple_of(2) {
        promoted.pop();
    }
    new.extend(promoted);
    // Removing a dead voter always changes the set, so only the parity is left to check.
    (new.len() % 2 == 1).then_some(new)
}

#[cfg(test)]
mod tests;
