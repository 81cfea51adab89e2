//! The Recovery Coordinator's pure planner: new replica sets for the partitions of
//! FAILED and DRAINING nodes, and extra replicas for under-replicated partitions.
//!
//! Plans are level-triggered: the leader runs `plan_repairs` on the committed state
//! every tick and proposes each plan's single `RepairPartitions` command; a plan made
//! against an old epoch is rejected as `StaleEpoch` and simply made again next tick.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::command::{MetaCommand, PartitionChange};
use crate::model::{NodeId, NodeStatus, Partition, PartitionId, TableStatus};
use crate::state::MetaState;
use crate::validate::{MAX_REPAIRS_PER_COMMAND, MAX_REPLICATION_FACTOR};

/// Tunables of the Recovery Coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Target nodes per partition, primary included.
    pub replication_factor: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            replication_factor: 3,
        }
    }
}

/// One batch of repairs: at most one command, and what it does, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The `RepairPartitions` command to propose (`None` when there is nothing to do).
    pub command: Option<MetaCommand>,
    /// Partitions whose primary changes, with the new primary.
    pub promoted: Vec<(PartitionId, NodeId)>,
    /// Replacement replicas added.
    pub replaced: usize,
    /// Partitions left with fewer nodes than wanted (no node could take a replica).
    pub under_replicated: Vec<PartitionId>,
    /// What the operator should know (lost data, partitions that cannot move).
    pub warnings: Vec<String>,
}

/// The durable LSN of a partition on a node (0 when unknown), as reported by agents.
type DurableLsn<'a> = &'a dyn Fn(PartitionId, NodeId) -> u64;

/// Plans the recovery of one FAILED or DRAINING node: one `RepairPartitions` command
/// for every partition of a non-DELETING table it holds (at most
/// `MAX_REPAIRS_PER_COMMAND`; the rest waits for the next pass). The node leaves each
/// replica set; a lost primary is replaced by the survivor with the highest durable LSN
/// (then a HEALTHY rather than a DRAINING one, then fewest primaries counting this pass,
/// then lowest id); missing replicas go to nodes that accept new
/// work and are not `excluded`, zones unused by the set first, then least loaded, then
/// lowest id. Any other member that may not stay (FAILED) leaves too.
pub fn plan_node_recovery(
    state: &MetaState,
    node_id: NodeId,
    cfg: &RecoveryConfig,
    durable_lsn: &dyn Fn(PartitionId, NodeId) -> u64,
    excluded: &BTreeSet<NodeId>,
) -> RecoveryPlan {
    Batch::new(state, cfg, durable_lsn, excluded).plan_node(node_id)
}

/// The whole-cluster pass: one plan per FAILED or DRAINING node that still holds
/// partitions of non-DELETING tables (by node id), then one plan adding replicas to
/// partitions with fewer than `min(replication_factor, nodes accepting new work)`
/// HEALTHY or DRAINING nodes, so a partition short of replicas is repaired as soon as a
/// node joins. Later plans skip partitions an earlier plan of the pass already changes
/// (each command is planned against the current epochs), and every plan books the load
/// of the ones before it. Plans without a command are left out.
pub fn plan_repairs(
    state: &MetaState,
    cfg: &RecoveryConfig,
    durable_lsn: &dyn Fn(PartitionId, NodeId) -> u64,
    excluded: &BTreeSet<NodeId>,
) -> Vec<RecoveryPlan> {
    let mut batch = Batch::new(state, cfg, durable_lsn, excluded);
    let leaving: Vec<NodeId> = state
        .nodes()
        .filter(|n| matches!(n.status, NodeStatus::Failed | NodeStatus::Draining))
        .map(|n| n.node_id)
        .collect();
    let mut plans: Vec<RecoveryPlan> = leaving.into_iter().map(|n| batch.plan_node(n)).collect();
    plans.push(batch.plan_under_replicated());
    plans.retain(|p| p.command.is_some());
    plans
}

/// DRAINING (or FAILED) nodes waiting for removal that own nothing any more: ready for
/// `DecommissionNode`.
pub fn nodes_to_decommission(state: &MetaState) -> Vec<NodeId> {
    state
        .nodes()
        .filter(|n| n.remove_when_drained && n.partition_ids.is_empty())
        .filter(|n| matches!(n.status, NodeStatus::Draining | NodeStatus::Failed))
        .map(|n| n.node_id)
        .collect()
}

/// Whether a partition needs attention: fewer than `min(replication_factor, nodes
/// accepting new work)` HEALTHY or DRAINING members, a member that is FAILED (or
/// otherwise out of service), or a member not ready.
pub fn under_replicated(state: &MetaState, p: &Partition, replication_factor: usize) -> bool {
    let target = replication_factor.min(state.live_nodes().count());
    let serving = p.all_nodes().filter(|n| may_stay(state, *n)).count();
    serving < target || serving < p.all_nodes().count() || !p.is_ready()
}

/// Whether a member may stay in its partition's replica set (HEALTHY or DRAINING).
fn may_stay(state: &MetaState, node_id: NodeId) -> bool {
    state
        .node(node_id)
        .is_some_and(|n| matches!(n.status, NodeStatus::Healthy | NodeStatus::Draining))
}

fn deleting(state: &MetaState, p: &Partition) -> bool {
    state
        .table(p.table_id)
        .is_none_or(|t| t.status == TableStatus::Deleting)
}

/// The planning state of one pass: node loads including what earlier changes booked,
/// and the partitions already changed.
struct Batch<'a> {
    state: &'a MetaState,
    durable_lsn: DurableLsn<'a>,
    rf: usize,
    /// Nodes that may take a new replica, with their zone, by id.
    candidates: Vec<(NodeId, &'a str)>,
    /// Replicas (primary included) held per node.
    replicas: BTreeMap<NodeId, usize>,
    /// Primaries held per node.
    primaries: BTreeMap<NodeId, usize>,
    handled: BTreeSet<PartitionId>,
}

impl<'a> Batch<'a> {
    fn new(
        state: &'a MetaState,
        cfg: &RecoveryConfig,
        durable_lsn: DurableLsn<'a>,
        excluded: &BTreeSet<NodeId>,
    ) -> Self {
        let mut primaries = BTreeMap::new();
        for p in state.partitions() {
            *primaries.entry(p.primary_node_id).or_default() += 1;
        }
        Batch {
            state,
            durable_lsn,
            rf: cfg.replication_factor.clamp(1, MAX_REPLICATION_FACTOR),
            candidates: state
                .live_nodes()
                .filter(|n| !excluded.contains(&n.node_id))
                .map(|n| (n.node_id, n.zone.as_str()))
                .collect(),
            replicas: state
                .nodes()
                .map(|n| (n.node_id, n.partition_ids.len()))
                .collect(),
            primaries,
            handled: BTreeSet::new(),
        }
    }

    fn plan_node(&mut self, node_id: NodeId) -> RecoveryPlan {
        let mut plan = RecoveryPlan::default();
        let state = self.state;
        let Some(node) = state.node(node_id) else {
            plan.warnings
                .push(format!("node {node_id} is unknown: nothing to recover"));
            return plan;
        };
        if !matches!(node.status, NodeStatus::Failed | NodeStatus::Draining) {
            plan.warnings.push(format!(
                "node {node_id} is {:?}, neither FAILED nor DRAINING: nothing to recover",
                node.status
            ));
            return plan;
        }
        let parts = node
            .partition_ids
            .iter()
            .filter_map(|id| state.partition(*id));
        let rf = self.rf;
        self.plan_changes(parts, Some(node_id), rf, &mut plan);
        plan
    }

    fn plan_under_replicated(&mut self) -> RecoveryPlan {
        let mut plan = RecoveryPlan::default();
        let target = self.rf.min(self.state.live_nodes().count());
        let state = self.state;
        // Partitions with a member that may not stay belong to that member's node plan.
        let short = state.partitions().filter(|p| {
            let members = p.all_nodes().count();
            members < target && p.all_nodes().all(|n| may_stay(state, n))
        });
        self.plan_changes(short, None, target, &mut plan);
        plan
    }

    /// Plans a change for each partition (skipping DELETING tables and partitions
    /// already changed) into one command, bounded by `MAX_REPAIRS_PER_COMMAND`.
    fn plan_changes(
        &mut self,
        parts: impl Iterator<Item = &'a Partition>,
        leaving: Option<NodeId>,
        target: usize,
        plan: &mut RecoveryPlan,
    ) {
        let mut changes = Vec::new();
        let mut deferred = 0usize;
        for p in parts {
            if self.handled.contains(&p.partition_id) || deleting(self.state, p) {
                continue;
            }
            if changes.len() == MAX_REPAIRS_PER_COMMAND {
                deferred += 1;
                continue;
            }
            if let Some(change) = self.change_for(p, leaving, target, plan) {
                self.handled.insert(p.partition_id);
                changes.push(change);
            }
        }
        if deferred > 0 {
            plan.warnings.push(format!(
                "{deferred} partitions left for the next pass (at most \
                 {MAX_REPAIRS_PER_COMMAND} changes per command)"
            ));
        }
        if !changes.is_empty() {
            plan.command = Some(MetaCommand::RepairPartitions { changes });
        }
    }

    /// The new replica set of one partition, or `None` when it cannot or need not change.
    fn change_for(
        &mut self,
        p: &Partition,
        leaving: Option<NodeId>,
        target: usize,
        plan: &mut RecoveryPlan,
    ) -> Option<PartitionChange> {
        let survivors: Vec<NodeId> = p
            .all_nodes()
            .filter(|n| Some(*n) != leaving && may_stay(self.state, *n))
            .collect();
        let mut set = survivors.clone();
        while set.len() < target {
            let Some(pick) = self.pick_replacement(&set) else {
                break;
            };
            set.push(pick);
        }
        let added = set.len() - survivors.len();
        if set.len() < target {
            plan.under_replicated.push(p.partition_id);
        }
        if set.is_empty() {
            plan.warnings.push(format!(
                "partition {} has no node to move to: left where it is",
                p.partition_id
            ));
            return None;
        }
        if added == 0 && survivors.len() == p.all_nodes().count() {
            return None;
        }
        let primary = self.choose_primary(p, &survivors, &set, plan);
        plan.replaced += added;
        self.book(p, primary, &set);
        let mut replica_node_ids: Vec<NodeId> = set.into_iter().filter(|n| *n != primary).collect();
        replica_node_ids.sort_unstable();
        Some(PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: primary,
            replica_node_ids,
        })
    }

    /// Keeps the primary if it stays, else promotes the most up-to-date survivor, else
    /// (no survivor) starts the first replacement as an empty primary.
    fn choose_primary(
        &self,
        p: &Partition,
        survivors: &[NodeId],
        set: &[NodeId],
        plan: &mut RecoveryPlan,
    ) -> NodeId {
        if survivors.contains(&p.primary_node_id) {
            return p.primary_node_id;
        }
        // Most data first; then a node that is not itself about to leave; then spread.
        let primary = match survivors.iter().min_by_key(|&&n| {
            let lsn = (self.durable_lsn)(p.partition_id, n);
            let draining = self
                .state
                .node(n)
                .is_some_and(|n| n.status == NodeStatus::Draining);
            (Reverse(lsn), draining, self.primaries_of(n), n)
        }) {
            Some(&best) => best,
            None => {
                plan.warnings.push(self.no_survivor_warning(p, set[0]));
                set[0]
            }
        };
        plan.promoted.push((p.partition_id, primary));
        primary
    }

    fn no_survivor_warning(&self, p: &Partition, new_primary: NodeId) -> String {
        let failed: Vec<NodeId> = p
            .all_nodes()
            .filter(|n| !may_stay(self.state, *n))
            .collect();
        if failed.is_empty() {
            format!(
                "partition {} had no copy but on draining node {}: node {new_primary} starts \
                 empty unless the data is copied from it",
                p.partition_id, p.primary_node_id
            )
        } else {
            format!(
                "partition {} lost every copy (failed nodes {failed:?}): its data is lost; \
                 node {new_primary} starts it empty",
                p.partition_id
            )
        }
    }

    /// The node for one more replica of a partition now on `set`, if any.
    fn pick_replacement(&self, set: &[NodeId]) -> Option<NodeId> {
        let zone_of = |n: NodeId| self.state.node(n).map_or("", |n| n.zone.as_str());
        self.candidates
            .iter()
            .filter(|(n, _)| !set.contains(n))
            .min_by_key(|(n, zone)| {
                let same_zone = set.iter().filter(|m| zone_of(**m) == *zone).count();
                (same_zone, self.replicas_of(*n), *n)
            })
            .map(|(n, _)| *n)
    }

    /// Books the load moved by one change, for the picks that follow.
    fn book(&mut self, p: &Partition, primary: NodeId, set: &[NodeId]) {
        for n in p.all_nodes().filter(|n| !set.contains(n)) {
            let count = self.replicas.entry(n).or_default();
            *count = count.saturating_sub(1);
        }
        for &n in set.iter().filter(|n| !p.all_nodes().any(|m| m == **n)) {
            *self.replicas.entry(n).or_default() += 1;
        }
        if primary != p.primary_node_id {
            let old = self.primaries.entry(p.primary_node_id).or_default();
            *old = old.saturating_sub(1);
            *self.primaries.entry(primary).or_default() += 1;
        }
    }

    fn replicas_of(&self, n: NodeId) -> usize {
        self.replicas.get(&n).copied().unwrap_or(0)
    }

    fn primaries_of(&self, n: NodeId) -> usize {
        self.primaries.get(&n).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
