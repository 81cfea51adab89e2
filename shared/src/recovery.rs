//! The Recovery Coordinator's pure planner: new replica sets for the partitions of
//! FAILED and DRAINING nodes, and extra replicas for under-replicated partitions.
//!
//! A FAILED node holds nothing reachable: it leaves its replica sets in one step. A
//! DRAINING node still holds its data: it is moved in two steps, so no copy is dropped
//! before another holds the data. First replacements join while it stays (the set may
//! hold one node above the replication factor); then, once every other member reported
//! ready (filled by its primary), it leaves.
//!
//! Plans are level-triggered: the leader runs `plan_repairs` on the committed state
//! every tick and proposes each plan's single `RepairPartitions` command; a plan made
//! against an old epoch is rejected as `StaleEpoch` and simply made again next tick.

use std::cell::OnceCell;
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
    /// Partitions of a DRAINING node that keep it because no node can take the
    /// replacement replica: its drain is blocked until one can.
    pub drain_blocked: Vec<PartitionId>,
}

/// Most partition ids named in one warning.
const WARNING_IDS_MAX: usize = 10;

/// The durable LSN of a partition on a node (0 when unknown), as reported by agents.
type DurableLsn<'a> = &'a dyn Fn(PartitionId, NodeId) -> u64;

/// Plans the recovery of one FAILED or DRAINING node: one `RepairPartitions` command
/// for every partition of a non-DELETING table it holds (at most
/// `MAX_REPAIRS_PER_COMMAND`; the rest waits for the next pass).
///
/// A FAILED node leaves each replica set at once. A DRAINING node is moved in two steps
/// per partition: while no other member is still being filled (not ready), replacements
/// join up to `replication_factor` members besides it, and it stays; once every other
/// member is ready and there are enough of them, it leaves. When no node can take a
/// replacement it stays, and the partition is reported in `drain_blocked` (with a
/// warning). When the set plus the draining node would exceed
/// `MAX_REPLICATION_FACTOR`, the draining node leaves in one step like a FAILED one.
///
/// A partition with no HEALTHY or DRAINING member is left as it is while one of its
/// members is FAILED but not removed: that node may come back with its copy. Only when
/// every member was removed by an operator does it start empty on new nodes.
///
/// A lost primary is replaced by a ready survivor if there is one, then the one with the
/// highest durable LSN (then a HEALTHY rather than a DRAINING one, then fewest primaries
/// counting this pass, then lowest id); missing replicas go to nodes that accept new
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
/// of the ones before it. Plans without a command are left out, unless they warn (a
/// blocked drain, a partition with no live copy: the operator hears of it).
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
    plans.retain(|p| p.command.is_some() || !p.warnings.is_empty());
    plans
}

/// The partitions a drain of HEALTHY node `node_id` would leave stuck on it, because no
/// other node can take their replica (too few nodes accept new work): planned by the
/// recovery planner on the state as if the drain were committed (of a DRAINING node: on
/// the state as it is, which shows a drain that became blocked). Nodes in `excluded` take
/// no replica: those the asking agent's gossip does not see alive, to show why a drain
/// waits now; none, to judge whether it can ever finish. Empty when the drain
/// can finish (as far as the planner's first batch shows). A drain refused on this is
/// never left DRAINING for good with no reason given.
pub fn drain_blockers(
    state: &MetaState,
    node_id: NodeId,
    cfg: &RecoveryConfig,
    excluded: &BTreeSet<NodeId>,
) -> Vec<PartitionId> {
    if state
        .node(node_id)
        .is_some_and(|n| n.status == NodeStatus::Draining)
    {
        // Already draining: what blocks it now (a node failed or unreachable since).
        return plan_node_recovery(state, node_id, cfg, &|_, _| 0, excluded).drain_blocked;
    }
    let mut draining = state.clone();
    let drain = MetaCommand::DrainNode {
        node_id,
        remove: false,
        now_ms: 0,
    };
    if draining.apply(&drain).is_err() {
        return Vec::new();
    }
    plan_node_recovery(&draining, node_id, cfg, &|_, _| 0, excluded).drain_blocked
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

/// Whether a partition needs attention, as the API shows it: fewer than
/// `replication_factor` members that are HEALTHY and ready (even when the cluster has
/// too few nodes to do better; a DRAINING member's copy is on its way out), a member
/// that is FAILED (or otherwise out of service), or a member not ready. The planner's
/// own target is capped by the nodes accepting new work (`Batch::short_target`).
pub fn under_replicated(state: &MetaState, p: &Partition, replication_factor: usize) -> bool {
    let healthy = |n: NodeId| {
        state
            .node(n)
            .is_some_and(|n| n.status == NodeStatus::Healthy)
    };
    let serving = p
        .all_nodes()
        .filter(|n| healthy(*n) && p.ready_node_ids.contains(n))
        .count();
    serving < replication_factor || !p.all_nodes().all(|n| may_stay(state, n)) || !p.is_ready()
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
    /// Primaries held per node, counted on first use (a walk of every partition, which
    /// a round that promotes nobody does not need).
    primaries: OnceCell<BTreeMap<NodeId, usize>>,
    handled: BTreeSet<PartitionId>,
}

impl<'a> Batch<'a> {
    fn new(
        state: &'a MetaState,
        cfg: &RecoveryConfig,
        durable_lsn: DurableLsn<'a>,
        excluded: &BTreeSet<NodeId>,
    ) -> Self {
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
            primaries: OnceCell::new(),
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
        if !plan.drain_blocked.is_empty() {
            let ids = &plan.drain_blocked[..plan.drain_blocked.len().min(WARNING_IDS_MAX)];
            plan.warnings.push(format!(
                "drain of node {node_id} is blocked for {} partitions (e.g. {ids:?}): no node \
                 can take a replacement replica, so the node keeps its copies",
                plan.drain_blocked.len()
            ));
        }
        plan
    }

    /// The planner's own replica target for short partitions: the replication factor,
    /// capped by the nodes accepting new work (no better can be done).
    fn short_target(&self) -> usize {
        self.rf.min(self.state.live_nodes().count())
    }

    fn plan_under_replicated(&mut self) -> RecoveryPlan {
        let mut plan = RecoveryPlan::default();
        let target = self.short_target();
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
        match leaving {
            Some(node_id) if self.is_draining(node_id) => self.drain_step(p, node_id, target, plan),
            _ => self.replace(p, leaving, target, plan),
        }
    }

    /// One step: `leaving` (if any) and every member that may not stay leave at once, and
    /// replacements fill the set up to `target`.
    fn replace(
        &mut self,
        p: &Partition,
        leaving: Option<NodeId>,
        target: usize,
        plan: &mut RecoveryPlan,
    ) -> Option<PartitionChange> {
        let survivors = self.survivors(p, leaving);
        if survivors.is_empty() && self.may_return(p) {
            // FAILED is no proof the data is gone (a pause or a network partition fails
            // a node too): wait for a holder to come back rather than start the
            // partition empty. It once lost every write of a partition whose three
            // holders were cut off at once (issue 14's testbed).
            plan.under_replicated.push(p.partition_id);
            plan.warnings.push(self.no_live_copy_warning(p));
            return None;
        }
        let mut set = survivors.clone();
        self.fill(&mut set, target);
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
        if set.len() == survivors.len() && survivors.len() == p.all_nodes().count() {
            return None;
        }
        Some(self.change(p, &survivors, set, plan))
    }

    /// One step of moving a partition off DRAINING node `draining` without dropping its
    /// copy early: replacements join while no other member is being filled (it stays);
    /// once the others are enough and all ready, it leaves. Members that may not stay
    /// (FAILED) leave at once.
    fn drain_step(
        &mut self,
        p: &Partition,
        draining: NodeId,
        target: usize,
        plan: &mut RecoveryPlan,
    ) -> Option<PartitionChange> {
        let others = self.survivors(p, Some(draining));
        if others.len().max(target) + 1 > MAX_REPLICATION_FACTOR {
            // No room for a temporary extra member: move in one step.
            return self.replace(p, Some(draining), target, plan);
        }
        let all_ready = others.iter().all(|n| p.ready_node_ids.contains(n));
        if all_ready && others.len() >= target {
            return Some(self.change(p, &others, others.clone(), plan));
        }
        let mut set = others.clone();
        if all_ready {
            self.fill(&mut set, target);
            if set.len() < target {
                plan.drain_blocked.push(p.partition_id);
            }
            if set.len() + 1 < target {
                plan.under_replicated.push(p.partition_id);
            }
        }
        // Else a replacement is still being filled: wait for it.
        let unchanged = set.len() == others.len() && others.len() + 1 == p.all_nodes().count();
        if unchanged {
            return None;
        }
        let mut survivors = others;
        survivors.push(draining);
        set.push(draining);
        Some(self.change(p, &survivors, set, plan))
    }

    /// The members of `p` that stay: all but `leaving` and those that may not stay.
    fn survivors(&self, p: &Partition, leaving: Option<NodeId>) -> Vec<NodeId> {
        p.all_nodes()
            .filter(|n| Some(*n) != leaving && may_stay(self.state, *n))
            .collect()
    }

    fn is_draining(&self, node_id: NodeId) -> bool {
        self.state
            .node(node_id)
            .is_some_and(|n| n.status == NodeStatus::Draining)
    }

    /// Adds replacements to `set` up to `target` members, while nodes can take one.
    fn fill(&self, set: &mut Vec<NodeId>, target: usize) {
        while set.len() < target {
            let Some(pick) = self.pick_replacement(set) else {
                break;
            };
            set.push(pick);
        }
    }

    /// The change to `set` (the `survivors` plus replacements), with its primary, booked.
    fn change(
        &mut self,
        p: &Partition,
        survivors: &[NodeId],
        set: Vec<NodeId>,
        plan: &mut RecoveryPlan,
    ) -> PartitionChange {
        let primary = self.choose_primary(p, survivors, &set, plan);
        plan.replaced += set.len() - survivors.len();
        self.book(p, primary, &set);
        let mut replica_node_ids: Vec<NodeId> = set.into_iter().filter(|n| *n != primary).collect();
        replica_node_ids.sort_unstable();
        PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: primary,
            replica_node_ids,
        }
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
        // A replica still being filled (not ready) holds only part of the data: never
        // promote one while a ready survivor exists. Then most data; then a node that is
        // not itself about to leave; then spread.
        let primary = match survivors.iter().min_by_key(|&&n| {
            let not_ready = !p.ready_node_ids.contains(&n);
            let lsn = (self.durable_lsn)(p.partition_id, n);
            let draining = self
                .state
                .node(n)
                .is_some_and(|n| n.status == NodeStatus::Draining);
            (not_ready, Reverse(lsn), draining, self.primaries_of(n), n)
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

    /// Whether a member of `p` is FAILED but not removed by an operator: it may come
    /// back with its copy.
    fn may_return(&self, p: &Partition) -> bool {
        p.all_nodes().any(|n| {
            self.state
                .node(n)
                .is_some_and(|n| n.status == NodeStatus::Failed && !n.remove_when_drained)
        })
    }

    fn no_live_copy_warning(&self, p: &Partition) -> String {
        let holders: Vec<NodeId> = p.all_nodes().collect();
        format!(
            "partition {} has no live copy (its holders {holders:?} are FAILED): left as it \
             is, unavailable until one of them comes back; if they are gone for good, \
             remove them and it starts empty",
            p.partition_id
        )
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
            self.primaries();
            let primaries = self.primaries.get_mut().expect("counted just above");
            let old = primaries.entry(p.primary_node_id).or_default();
            *old = old.saturating_sub(1);
            *primaries.entry(primary).or_default() += 1;
        }
    }

    fn replicas_of(&self, n: NodeId) -> usize {
        self.replicas.get(&n).copied().unwrap_or(0)
    }

    fn primaries(&self) -> &BTreeMap<NodeId, usize> {
        self.primaries.get_or_init(|| {
            let mut primaries = BTreeMap::new();
            for p in self.state.partitions() {
                *primaries.entry(p.primary_node_id).or_default() += 1;
            }
            primaries
        })
    }

    fn primaries_of(&self, n: NodeId) -> usize {
        self.primaries().get(&n).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
