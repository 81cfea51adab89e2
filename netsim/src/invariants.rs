//! The promises checked during every run, one function per property. Safety properties
//! are checked as the log commits (and over every replica periodically); the liveness
//! property once the faults have stopped and the cluster had time to heal.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use shared::command::{MetaCommand, MetaOutcome, MetaResult};
use shared::failure::GossipState;
use shared::keyspace::check_tiling;
use shared::model::{KeyRange, NodeId, NodeStatus, PartitionId, TableId};
use shared::state::MetaState;

use crate::agent::SimAgent;
use crate::time::Micros;
use crate::truth::Truth;

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Virtual time it was seen, in microseconds.
    pub at_us: Micros,
    /// Which property.
    pub property: &'static str,
    /// What exactly.
    pub detail: String,
}

/// Most violations kept (a broken run can break a promise at every commit).
const VIOLATIONS_KEPT_MAX: usize = 100;

/// Partition records compared by the epoch check: table, range, epoch.
type Epochs = BTreeMap<PartitionId, (TableId, KeyRange, u64)>;

/// The checker's memory between checks.
pub struct Invariants {
    epochs: Epochs,
    failed: BTreeSet<(NodeId, u64)>,
    window_us: Micros,
    violations: Vec<Violation>,
    total: usize,
}

impl Invariants {
    /// A checker starting from `state`; `window_us` is the failure confirmation window.
    pub fn new(state: &MetaState, window_us: Micros) -> Self {
        Invariants {
            epochs: epochs_of(state),
            failed: BTreeSet::new(),
            window_us,
            violations: Vec::new(),
            total: 0,
        }
    }

    /// Violations seen (the first `VIOLATIONS_KEPT_MAX`).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Violations seen in all.
    pub fn count(&self) -> usize {
        self.total
    }

    fn record(&mut self, at_us: Micros, property: &'static str, result: Result<(), String>) {
        if let Err(detail) = result {
            self.total += 1;
            if self.violations.len() < VIOLATIONS_KEPT_MAX {
                self.violations.push(Violation {
                    at_us,
                    property,
                    detail,
                });
            }
        }
    }

    /// Checks what `cmd`, just committed with `result`, may have broken in `state`.
    /// `live_incarnation` gives the incarnation of a node's running process, if any.
    pub fn after_commit(
        &mut self,
        at: Micros,
        cmd: &MetaCommand,
        result: &MetaResult,
        state: &MetaState,
        truth: &Truth,
        live_incarnation: &dyn Fn(NodeId) -> Option<u64>,
    ) {
        let applied = matches!(result, Ok(o) if *o != MetaOutcome::Unchanged);
        if let (
            MetaCommand::NodeFailed {
                node_id,
                incarnation,
                ..
            },
            true,
        ) = (cmd, applied)
        {
            let once = node_failed_once(&mut self.failed, *node_id, *incarnation);
            self.record(at, "node_failed_once_per_incarnation", once);
            let alive = live_incarnation(*node_id) == Some(*incarnation);
            let justified = node_failed_justified(truth, *node_id, alive, at, self.window_us);
            self.record(at, "node_failed_only_when_impaired", justified);
        }
        if applied && changes_routing(cmd) {
            self.record(at, "partitions_tile_key_space", partitions_tile(state));
            self.record(at, "replicas_distinct", replicas_distinct(state));
            let grown = epochs_grow(&self.epochs, state);
            self.record(at, "epochs_only_grow", grown);
            self.epochs = epochs_of(state);
        }
    }

    /// Checks the beliefs of every running agent's replica.
    pub fn check_replicas(&mut self, at: Micros, agents: &BTreeMap<NodeId, SimAgent>) {
        let one = one_primary_per_epoch(agents);
        self.record(at, "one_serving_primary_per_epoch", one);
    }

    /// The liveness check, once faults stopped and the cluster had time to heal.
    pub fn check_healed(
        &mut self,
        at: Micros,
        state: &MetaState,
        commit_index: u64,
        agents: &BTreeMap<NodeId, SimAgent>,
        replication_factor: usize,
    ) {
        self.record(
            at,
            "healed_node_statuses",
            node_statuses_true(state, agents),
        );
        let replicated = fully_replicated(state, replication_factor);
        self.record(at, "healed_fully_replicated", replicated);
        let same = routing_identical(state, commit_index, agents);
        self.record(at, "healed_routing_identical", same);
        self.record(at, "healed_gossip_views", gossip_views_true(agents));
    }
}

/// Whether `cmd` can change ranges, members or epochs of partitions.
fn changes_routing(cmd: &MetaCommand) -> bool {
    matches!(
        cmd,
        MetaCommand::AssignPartitions { .. }
            | MetaCommand::RepairPartitions { .. }
            | MetaCommand::SplitPartition { .. }
            | MetaCommand::MergePartitions { .. }
            | MetaCommand::CommitMove { .. }
            | MetaCommand::PurgeTable { .. }
    )
}

fn epochs_of(state: &MetaState) -> Epochs {
    state
        .partitions()
        .map(|p| (p.partition_id, (p.table_id, p.range, p.epoch)))
        .collect()
}

/// `NodeFailed` is committed at most once per (node, incarnation).
pub fn node_failed_once(
    failed: &mut BTreeSet<(NodeId, u64)>,
    node: NodeId,
    incarnation: u64,
) -> Result<(), String> {
    if failed.insert((node, incarnation)) {
        Ok(())
    } else {
        Err(format!(
            "NodeFailed committed twice for node {node} incarnation {incarnation}"
        ))
    }
}

/// `NodeFailed` is never committed for a node whose judged incarnation is running and
/// was working (up, reachable from a majority, links within the promised loss) for the
/// whole confirmation window.
pub fn node_failed_justified(
    truth: &Truth,
    node: NodeId,
    incarnation_running: bool,
    at: Micros,
    window: Micros,
) -> Result<(), String> {
    if incarnation_running && truth.fine_throughout(node, at, window) {
        Err(format!(
            "node {node} failed although alive and reachable for the whole {} ms window",
            window / 1_000
        ))
    } else {
        Ok(())
    }
}

/// The partitions of every table tile its key space.
pub fn partitions_tile(state: &MetaState) -> Result<(), String> {
    // One walk over the partitions (`partitions_of` per table walks them all each time:
    // 10^8 steps per routing commit at 1,000 tables and 100,000 partitions).
    let mut ranges: BTreeMap<TableId, Vec<KeyRange>> = BTreeMap::new();
    for p in state.partitions() {
        ranges.entry(p.table_id).or_default().push(p.range);
    }
    for (table_id, mut ranges) in ranges {
        ranges.sort_by_key(|r| r.low);
        check_tiling(&ranges).map_err(|e| {
            let name = state.table(table_id).map_or("?", |t| t.table_name.as_str());
            format!("table {name}: {e}")
        })?;
    }
    Ok(())
}

/// No node holds two copies of one partition.
pub fn replicas_distinct(state: &MetaState) -> Result<(), String> {
    for p in state.partitions() {
        let members: Vec<NodeId> = p.all_nodes().collect();
        let distinct: BTreeSet<NodeId> = members.iter().copied().collect();
        if distinct.len() != members.len() {
            return Err(format!(
                "partition {} has members {members:?}",
                p.partition_id
            ));
        }
    }
    Ok(())
}

/// Epochs only grow: per partition, and a new partition covering keys of a removed one
/// starts above it.
pub fn epochs_grow(before: &Epochs, state: &MetaState) -> Result<(), String> {
    let gone: Vec<&(TableId, KeyRange, u64)> = before
        .iter()
        .filter(|(id, _)| state.partition(**id).is_none())
        .map(|(_, v)| v)
        .collect();
    for p in state.partitions() {
        match before.get(&p.partition_id) {
            Some((_, _, e)) if p.epoch < *e => {
                return Err(format!(
                    "partition {} went from epoch {e} to {}",
                    p.partition_id, p.epoch
                ));
            }
            Some(_) => {}
            None => {
                let overlaps = |r: &KeyRange| r.low <= p.range.high && p.range.low <= r.high;
                if let Some((_, _, e)) = gone
                    .iter()
                    .find(|(t, r, e)| *t == p.table_id && overlaps(r) && p.epoch <= *e)
                {
                    return Err(format!(
                        "new partition {} at epoch {} covers keys of a removed one at {e}",
                        p.partition_id, p.epoch
                    ));
                }
            }
        }
    }
    Ok(())
}

/// No two running agents both believe, from their own replica, that they are the
/// primary of one partition at one epoch.
pub fn one_primary_per_epoch(agents: &BTreeMap<NodeId, SimAgent>) -> Result<(), String> {
    let mut believed: BTreeMap<(PartitionId, u64), NodeId> = BTreeMap::new();
    for agent in agents.values().filter(|a| a.is_alive()) {
        let mine: Vec<(PartitionId, u64)> = agent.replica.read(|s| {
            s.node(agent.id)
                .map(|n| {
                    n.partition_ids
                        .iter()
                        .filter_map(|pid| s.partition(*pid))
                        .filter(|p| p.primary_node_id == agent.id)
                        .map(|p| (p.partition_id, p.epoch))
                        .collect()
                })
                .unwrap_or_default()
        });
        for key in mine {
            if let Some(other) = believed.insert(key, agent.id) {
                return Err(format!(
                    "agents {other} and {} both primary of partition {} at epoch {}",
                    agent.id, key.0, key.1
                ));
            }
        }
    }
    Ok(())
}

/// Every running node is HEALTHY at its current incarnation; every crashed one FAILED.
pub fn node_statuses_true(
    state: &MetaState,
    agents: &BTreeMap<NodeId, SimAgent>,
) -> Result<(), String> {
    for agent in agents.values() {
        let Some(node) = state.node(agent.id) else {
            return Err(format!("node {} is not registered", agent.id));
        };
        let ok = if agent.is_alive() {
            node.status == NodeStatus::Healthy && node.incarnation == agent.incarnation
        } else {
            matches!(node.status, NodeStatus::Failed | NodeStatus::Decommissioned)
        };
        if !ok {
            return Err(format!(
                "node {} is {:?} at incarnation {} but its process is {:?} at {}",
                agent.id, node.status, node.incarnation, agent.process, agent.incarnation
            ));
        }
    }
    Ok(())
}

/// Every partition has `min(replication_factor, healthy nodes)` HEALTHY members, all
/// ready.
pub fn fully_replicated(state: &MetaState, replication_factor: usize) -> Result<(), String> {
    let healthy = state
        .nodes()
        .filter(|n| n.status == NodeStatus::Healthy)
        .count();
    let wanted = replication_factor.min(healthy);
    for p in state.partitions() {
        let members: Vec<NodeId> = p.all_nodes().collect();
        let all_healthy = members.iter().all(|n| {
            state
                .node(*n)
                .is_some_and(|n| n.status == NodeStatus::Healthy)
        });
        if members.len() != wanted || !all_healthy || !p.is_ready() {
            return Err(format!(
                "partition {} has members {members:?}, ready {:?} (want {wanted} healthy)",
                p.partition_id, p.ready_node_ids
            ));
        }
    }
    Ok(())
}

/// Every running agent applied the whole log, and its routing equals the log's.
pub fn routing_identical(
    state: &MetaState,
    commit_index: u64,
    agents: &BTreeMap<NodeId, SimAgent>,
) -> Result<(), String> {
    for agent in agents.values().filter(|a| a.is_alive()) {
        if agent.applied() != commit_index {
            return Err(format!(
                "agent {} applied {} of {commit_index} entries",
                agent.id,
                agent.applied()
            ));
        }
        let same = agent
            .replica
            .read(|s| s.partitions().eq(state.partitions()));
        if !same {
            return Err(format!(
                "agent {}'s routing differs from the log's",
                agent.id
            ));
        }
    }
    Ok(())
}

/// Every running agent's gossip sees every other running agent alive.
pub fn gossip_views_true(agents: &BTreeMap<NodeId, SimAgent>) -> Result<(), String> {
    let running: Vec<NodeId> = agents
        .values()
        .filter(|a| a.is_alive())
        .map(|a| a.id)
        .collect();
    for agent in agents.values().filter(|a| a.is_alive()) {
        for other in running.iter().filter(|o| **o != agent.id) {
            let seen = agent.membership.peer(*other).map(|p| p.gossip);
            if seen != Some(GossipState::Alive) {
                let foca = agent.core.as_ref().and_then(|c| c.foca_state(*other));
                return Err(format!(
                    "agent {} sees agent {other} as {seen:?} (its foca: {foca:?})",
                    agent.id
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::initial_state;
    use crate::config::SimConfig;

    #[test]
    fn a_second_failure_of_one_incarnation_is_caught() {
        let mut failed = BTreeSet::new();
        assert!(node_failed_once(&mut failed, 4, 1).is_ok());
        assert!(node_failed_once(&mut failed, 4, 2).is_ok());
        assert!(node_failed_once(&mut failed, 4, 1).is_err());
    }

    #[test]
    fn failing_a_working_running_node_is_caught() {
        let truth = Truth::default();
        let window = 3_000_000;
        assert!(node_failed_justified(&truth, 2, true, 10_000_000, window).is_err());
        assert!(node_failed_justified(&truth, 2, false, 10_000_000, window).is_ok());
    }

    #[test]
    fn a_valid_cluster_passes_and_a_shrunk_epoch_does_not() {
        let state = initial_state(&SimConfig::new(1, 6, 40)).expect("set up");
        assert!(partitions_tile(&state).is_ok());
        assert!(replicas_distinct(&state).is_ok());
        let mut before = epochs_of(&state);
        assert!(epochs_grow(&before, &state).is_ok());
        let (_, (_, _, epoch)) = before.iter_mut().next().expect("a partition");
        *epoch += 1;
        assert!(epochs_grow(&before, &state).is_err());
    }
}
