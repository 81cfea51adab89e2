//! Handlers of the node lifecycle and recovery commands: failure, drain, decommission
//! and partition repair. Like every handler, each validates fully, then mutates.

use std::collections::BTreeSet;

use super::MetaState;
use super::apply::{placement, wrong_status};
use crate::command::{MetaError, MetaOutcome, MetaResult, PartitionChange};
use crate::model::{Node, NodeId, NodeStatus, Partition, TableStatus, UnixMillis};
use crate::validate::MAX_REPAIRS_PER_COMMAND;

/// A new primary must hold the data: while a ready member stays in the set, only a
/// ready member of the current set may be promoted (never a replica still being filled,
/// nor a node joining with this change). With no ready survivor (every copy lost or
/// none filled yet) any member may lead, e.g. an empty replacement.
fn check_promotion(p: &Partition, c: &PartitionChange) -> Result<(), MetaError> {
    let new_primary = c.primary_node_id;
    if new_primary == p.primary_node_id || p.ready_node_ids.contains(&new_primary) {
        return Ok(());
    }
    let stays = |n: &NodeId| *n == new_primary || c.replica_node_ids.contains(n);
    let ready_survivors: Vec<NodeId> = p.ready_node_ids.iter().copied().filter(stays).collect();
    if ready_survivors.is_empty() {
        return Ok(());
    }
    Err(placement(format!(
        "partition {}: node {new_primary} may not become primary, it is not a ready member \
         of the current replica set; promote one of the ready survivors {ready_survivors:?}",
        p.partition_id
    )))
}

fn node_wrong_status(node: &Node, needed: &str) -> MetaError {
    MetaError::NodeWrongStatus {
        node_id: node.node_id,
        status: node.status,
        needed: needed.to_string(),
    }
}

impl MetaState {
    fn node_by_id(&self, id: NodeId) -> Result<&Node, MetaError> {
        self.nodes.get(&id).ok_or(MetaError::UnknownNode(id))
    }

    /// Mutable access to a node already validated to exist.
    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .expect("node validated before mutation")
    }

    pub(super) fn node_failed(
        &mut self,
        node_id: NodeId,
        incarnation: u64,
        now_ms: UnixMillis,
    ) -> MetaResult {
        let node = self.node_by_id(node_id)?;
        if incarnation > node.incarnation {
            return Err(MetaError::Invalid(format!(
                "node {node_id} incarnation {incarnation} never registered (recorded {})",
                node.incarnation
            )));
        }
        // Stale (the node restarted since the decision), repeated, or already out of
        // service: leaders may propose the same decision more than once.
        let healthy_or_draining = matches!(node.status, NodeStatus::Healthy | NodeStatus::Draining);
        if incarnation < node.incarnation || !healthy_or_draining {
            return Ok(MetaOutcome::Unchanged);
        }
        let node = self.node_mut(node_id);
        // A drain outlives the failure: the next incarnation comes back DRAINING. (Set
        // here too for nodes drained before `drain_requested` existed.)
        node.drain_requested |= node.status == NodeStatus::Draining;
        node.status = NodeStatus::Failed;
        node.status_changed_at_ms = now_ms;
        Ok(MetaOutcome::Done)
    }

    pub(super) fn drain_node(
        &mut self,
        node_id: NodeId,
        remove: bool,
        now_ms: UnixMillis,
    ) -> MetaResult {
        let node = self.node_by_id(node_id)?;
        let repeat = match node.status {
            NodeStatus::Healthy => false,
            NodeStatus::Draining => node.remove_when_drained || !remove,
            // A FAILED node holds nothing reachable: it can only be marked for removal
            // (recovery moves its partitions; then it is decommissioned). It stays FAILED.
            NodeStatus::Failed if remove => node.remove_when_drained,
            _ if remove => return Err(node_wrong_status(node, "HEALTHY, DRAINING or FAILED")),
            _ => return Err(node_wrong_status(node, "HEALTHY or DRAINING")),
        };
        if repeat {
            return Ok(MetaOutcome::Unchanged);
        }
        let node = self.node_mut(node_id);
        if node.status == NodeStatus::Healthy {
            node.status = NodeStatus::Draining;
            node.status_changed_at_ms = now_ms;
        }
        node.remove_when_drained |= remove;
        node.drain_requested = true;
        Ok(MetaOutcome::Done)
    }

    pub(super) fn cancel_drain(&mut self, node_id: NodeId, now_ms: UnixMillis) -> MetaResult {
        let node = self.node_by_id(node_id)?;
        match node.status {
            // A HEALTHY node has no drain to cancel (the invariants hold it).
            NodeStatus::Healthy => return Ok(MetaOutcome::Unchanged),
            NodeStatus::Draining | NodeStatus::Failed => {}
            _ => return Err(node_wrong_status(node, "DRAINING, FAILED or HEALTHY")),
        }
        if !node.drain_requested && !node.remove_when_drained {
            return Ok(MetaOutcome::Unchanged);
        }
        let node = self.node_mut(node_id);
        if node.status == NodeStatus::Draining {
            node.status = NodeStatus::Healthy;
            node.status_changed_at_ms = now_ms;
        }
        node.drain_requested = false;
        node.remove_when_drained = false;
        Ok(MetaOutcome::Done)
    }

    pub(super) fn decommission_node(&mut self, node_id: NodeId, now_ms: UnixMillis) -> MetaResult {
        let node = self.node_by_id(node_id)?;
        match node.status {
            NodeStatus::Decommissioned => return Ok(MetaOutcome::Unchanged),
            NodeStatus::Draining | NodeStatus::Failed => {}
            _ => return Err(node_wrong_status(node, "DRAINING or FAILED")),
        }
        if !node.partition_ids.is_empty() {
            return Err(placement(format!(
                "node {node_id} still holds {} partitions; move them off (drain or repair) first",
                node.partition_ids.len()
            )));
        }
        let node = self.node_mut(node_id);
        node.status = NodeStatus::Decommissioned;
        node.status_changed_at_ms = now_ms;
        node.remove_when_drained = false;
        node.drain_requested = false;
        Ok(MetaOutcome::Done)
    }

    fn validate_repairs(&self, changes: &[PartitionChange]) -> Result<(), MetaError> {
        if changes.is_empty() || changes.len() > MAX_REPAIRS_PER_COMMAND {
            return Err(MetaError::Invalid(format!(
                "{} partition changes, need 1 to {MAX_REPAIRS_PER_COMMAND}",
                changes.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for c in changes {
            if !seen.insert(c.partition_id) {
                return Err(MetaError::Invalid(format!(
                    "partition {} is changed twice in one command",
                    c.partition_id
                )));
            }
            self.check_change(c)?;
        }
        Ok(())
    }

    fn check_change(&self, c: &PartitionChange) -> Result<(), MetaError> {
        let p = self
            .partitions
            .get(&c.partition_id)
            .ok_or(MetaError::UnknownPartition(c.partition_id))?;
        if c.expected_epoch != p.epoch {
            return Err(MetaError::StaleEpoch {
                partition_id: c.partition_id,
                expected: c.expected_epoch,
                current: p.epoch,
            });
        }
        let table = self.table_by_id(p.table_id)?;
        if table.status == TableStatus::Deleting {
            return Err(wrong_status(table, "CREATING, ACTIVE or SCALING"));
        }
        // A draining survivor may stay until its own move; nobody else may join but
        // nodes that take new work.
        let may_hold = |n: &Node| {
            n.status.accepts_new_work()
                || (n.status == NodeStatus::Draining && p.all_nodes().any(|m| m == n.node_id))
        };
        // At most MAX_REPLICATION_FACTOR nodes: a drain may hold one above the
        // replication factor while the replacement is filled.
        self.check_node_set(c.primary_node_id, &c.replica_node_ids, may_hold)?;
        check_promotion(p, c)
    }

    pub(super) fn repair_partitions(&mut self, changes: &[PartitionChange]) -> MetaResult {
        self.validate_repairs(changes)?;
        for c in changes {
            self.apply_change(c);
        }
        Ok(MetaOutcome::Done)
    }

    /// Replaces one validated partition's replica set and keeps the node index in sync.
    fn apply_change(&mut self, c: &PartitionChange) {
        let p = self
            .partitions
            .get_mut(&c.partition_id)
            .expect("partition validated");
        let old: BTreeSet<NodeId> = p.all_nodes().collect();
        p.primary_node_id = c.primary_node_id;
        p.replica_node_ids = c.replica_node_ids.clone();
        p.epoch += 1;
        let new: BTreeSet<NodeId> = p.all_nodes().collect();
        p.ready_node_ids.retain(|n| new.contains(n));
        p.released_node_ids.retain(|n| new.contains(n));
        for n in old.difference(&new) {
            self.node_mut(*n).partition_ids.remove(&c.partition_id);
        }
        for n in new.difference(&old) {
            self.node_mut(*n).partition_ids.insert(c.partition_id);
        }
    }
}
