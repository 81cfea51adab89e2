//! Structural invariants of `MetaState`, checked after every apply in debug builds.

use std::collections::{BTreeMap, BTreeSet};

use super::MetaState;
use crate::auth::principal_arn;
use crate::auth::secret::validate_principal_name;
use crate::keyspace::check_tiling;
use crate::model::{
    KeyRange, NodeId, NodeStatus, Operation, OperationId, OperationKind, OperationStatus,
    Partition, PartitionId, PartitionStatus, Table, TableId, TableStatus,
};
use crate::validate::{
    FAILURE_REASON_MAX_LEN, MAX_FINISHED_OPERATIONS, MAX_PRINCIPALS, MAX_REPLICATION_FACTOR,
    MAX_REVOCATIONS, MAX_SIGNING_KEYS, MAX_STEP_ATTEMPTS, REQUESTED_BY_MAX_LEN,
};

impl MetaState {
    /// Tables: ids, name index, schema versions with key attributes.
    pub(super) fn check_tables(&self) -> Result<(), String> {
        if self.table_ids_by_name.len() != self.tables.len() {
            return Err(format!(
                "name index has {} entries for {} tables",
                self.table_ids_by_name.len(),
                self.tables.len()
            ));
        }
        for (name, id) in &self.table_ids_by_name {
            match self.tables.get(id) {
                Some(t) if t.table_name == *name => {}
                _ => {
                    return Err(format!(
                        "name index maps {name:?} to table {id}, which has another name"
                    ));
                }
            }
        }
        if let Some(id) = self
            .schemas
            .keys()
            .find(|id| !self.tables.contains_key(*id))
        {
            return Err(format!("schema versions of unknown table {id}"));
        }
        // Computed once: a scan per table would make this O(tables x partitions).
        let with_partitions: BTreeSet<TableId> =
            self.partitions.values().map(|p| p.table_id).collect();
        self.tables
            .iter()
            .try_for_each(|(id, t)| self.check_table(*id, t, with_partitions.contains(id)))
    }

    fn check_table(&self, id: TableId, t: &Table, has_partitions: bool) -> Result<(), String> {
        if t.table_id != id || id == 0 || id >= self.next_table_id {
            return Err(format!(
                "table stored under {id} has id {} (next {})",
                t.table_id, self.next_table_id
            ));
        }
        for version in 1..=t.schema_version_id {
            let Some(s) = self.schema(id, version) else {
                return Err(format!("table {id} misses schema version {version}"));
            };
            if s.table_id != id || s.version != version {
                return Err(format!(
                    "schema ({id}, {version}) is labelled ({}, {})",
                    s.table_id, s.version
                ));
            }
        }
        let current = self
            .schema(id, t.schema_version_id)
            .ok_or(format!("table {id} has no current schema"))?;
        for key in std::iter::once(&t.partition_key).chain(t.sort_key.as_ref()) {
            if !current
                .attributes
                .iter()
                .any(|a| a.name == *key && a.attr_type.is_key_type())
            {
                return Err(format!(
                    "current schema of table {id} lacks key attribute {key:?}"
                ));
            }
        }
        if matches!(t.status, TableStatus::Active | TableStatus::Scaling) && !has_partitions {
            return Err(format!("table {id} is {:?} without partitions", t.status));
        }
        Ok(())
    }

    /// Partitions: owning table, replica sets, ids and epochs.
    pub(super) fn check_partitions(&self) -> Result<(), String> {
        self.partitions
            .iter()
            .try_for_each(|(id, p)| self.check_partition(*id, p))
    }

    fn check_partition(&self, id: PartitionId, p: &Partition) -> Result<(), String> {
        if p.partition_id != id || id == 0 || id >= self.next_partition_id {
            return Err(format!(
                "partition stored under {id} has id {} (next {})",
                p.partition_id, self.next_partition_id
            ));
        }
        if !self.tables.contains_key(&p.table_id) {
            return Err(format!(
                "partition {id} belongs to unknown table {}",
                p.table_id
            ));
        }
        if p.epoch == 0 {
            return Err(format!("partition {id} has epoch 0"));
        }
        let members: BTreeSet<NodeId> = p.all_nodes().collect();
        if members.len() != 1 + p.replica_node_ids.len() || members.len() > MAX_REPLICATION_FACTOR {
            return Err(format!(
                "partition {id} has a bad replica set {:?}",
                (p.primary_node_id, &p.replica_node_ids)
            ));
        }
        // FAILED and DRAINING members are allowed: they stay until recovery replaces them.
        for n in &members {
            match self.nodes.get(n) {
                Some(node) if node.status != NodeStatus::Decommissioned => {}
                _ => {
                    return Err(format!(
                        "partition {id} is on unknown or decommissioned node {n}"
                    ));
                }
            }
        }
        if !p.ready_node_ids.is_subset(&members) || !p.released_node_ids.is_subset(&members) {
            return Err(format!(
                "partition {id} has ready/released nodes outside its replica set"
            ));
        }
        Ok(())
    }

    /// Every table's partitions tile the key space exactly.
    pub(super) fn check_tilings(&self) -> Result<(), String> {
        let mut by_table: BTreeMap<TableId, Vec<KeyRange>> = BTreeMap::new();
        for p in self.partitions.values() {
            by_table.entry(p.table_id).or_default().push(p.range);
        }
        for (table_id, mut ranges) in by_table {
            ranges.sort_unstable();
            check_tiling(&ranges).map_err(|e| format!("partitions of table {table_id}: {e}"))?;
        }
        Ok(())
    }

    /// Each node's `partition_ids` is exactly the set derived from the partitions.
    pub(super) fn check_node_index(&self) -> Result<(), String> {
        let mut derived: BTreeMap<NodeId, BTreeSet<PartitionId>> = BTreeMap::new();
        for p in self.partitions.values() {
            for n in p.all_nodes() {
                derived.entry(n).or_default().insert(p.partition_id);
            }
        }
        let empty = BTreeSet::new();
        for (id, node) in &self.nodes {
            if node.node_id != *id {
                return Err(format!("node stored under {id} has id {}", node.node_id));
            }
            let want = derived.get(id).unwrap_or(&empty);
            if node.partition_ids != *want {
                return Err(format!(
                    "node {id} lists partitions {:?}, holds {want:?}",
                    node.partition_ids
                ));
            }
        }
        Ok(())
    }

    /// Node statuses agree with their flags: only a node being drained, or a FAILED one
    /// (failed while draining, or marked for removal since), has a drain requested or
    /// waits for removal; a decommissioned node holds neither flag.
    pub(super) fn check_node_statuses(&self) -> Result<(), String> {
        for node in self.nodes.values() {
            let draining_or_failed =
                matches!(node.status, NodeStatus::Draining | NodeStatus::Failed);
            for (flag, set) in [
                ("waits for removal", node.remove_when_drained),
                ("has a drain requested", node.drain_requested),
            ] {
                if set && !draining_or_failed {
                    return Err(format!(
                        "node {} is {:?} but {flag}",
                        node.node_id, node.status
                    ));
                }
            }
        }
        Ok(())
    }

    /// Principals: stored under their ARN, which derives from the cluster id and a
    /// valid name; bounded; at least one admin once any principal exists.
    pub(super) fn check_principals(&self) -> Result<(), String> {
        if self.principals.len() > MAX_PRINCIPALS {
            return Err(format!("{} principals", self.principals.len()));
        }
        for (arn, p) in &self.principals {
            let cluster_id = self
                .cluster_id
                .as_deref()
                .ok_or(format!("principal {arn} in a cluster without an id"))?;
            if p.arn != *arn
                || validate_principal_name(&p.name).is_err()
                || principal_arn(cluster_id, &p.name) != *arn
            {
                return Err(format!(
                    "principal stored under {arn} is {:?} named {:?}",
                    p.arn, p.name
                ));
            }
        }
        if !self.principals.is_empty() && !self.principals.values().any(|p| p.admin) {
            return Err("principals exist but none is an admin".into());
        }
        Ok(())
    }

    /// Policies: each names an existing table (by id and name) and principal, covers
    /// some action, has a version; no empty per-table map is left behind.
    pub(super) fn check_policies(&self) -> Result<(), String> {
        for (table_id, by_principal) in &self.policies {
            let table = self
                .tables
                .get(table_id)
                .ok_or(format!("policies of unknown table {table_id}"))?;
            if by_principal.is_empty() {
                return Err(format!("empty policy map of table {table_id}"));
            }
            for (arn, p) in by_principal {
                if !self.principals.contains_key(arn) {
                    return Err(format!("policy on table {table_id} of unknown {arn}"));
                }
                if p.principal != *arn
                    || p.table != table.table_name
                    || p.actions.is_empty()
                    || p.version == 0
                {
                    return Err(format!("policy stored under ({table_id}, {arn}) is {p:?}"));
                }
            }
        }
        Ok(())
    }

    /// Signing keys: stored under their (unique) id, bounded, owned by a known node;
    /// retired exactly when a trust deadline is set.
    pub(super) fn check_signing_keys(&self) -> Result<(), String> {
        if self.signing_keys.len() > MAX_SIGNING_KEYS {
            return Err(format!("{} signing keys", self.signing_keys.len()));
        }
        for (kid, k) in &self.signing_keys {
            if k.kid != *kid
                || !self.nodes.contains_key(&k.node_id)
                || k.retired_at_ms.is_some() != k.trusted_until_ms.is_some()
            {
                return Err(format!("signing key stored under {kid:?} is {k:?}"));
            }
        }
        Ok(())
    }

    /// Revocations: bounded.
    pub(super) fn check_revocations(&self) -> Result<(), String> {
        if self.revocations.len() > MAX_REVOCATIONS {
            return Err(format!("{} revocations", self.revocations.len()));
        }
        Ok(())
    }

    /// Operations: stored under their ids; finished ones bounded; each record is
    /// consistent with itself; a partition is SPLITTING, MERGING or MIGRATING exactly
    /// while one operation of that kind holds it (so never two at once).
    pub(super) fn check_operations(&self) -> Result<(), String> {
        let mut running: BTreeMap<PartitionId, OperationId> = BTreeMap::new();
        let mut finished = 0;
        for (id, op) in &self.operations {
            if op.operation_id != *id || *id == 0 || *id >= self.next_operation_id {
                return Err(format!(
                    "operation stored under {id} has id {} (next {})",
                    op.operation_id, self.next_operation_id
                ));
            }
            check_operation(op)?;
            if !op.is_running() {
                finished += 1;
                continue;
            }
            for pid in op.partitions() {
                if let Some(other) = running.insert(pid, *id) {
                    return Err(format!(
                        "operations {other} and {id} both run on partition {pid}"
                    ));
                }
                match self.partitions.get(&pid) {
                    Some(p) if p.table_id == op.table_id && p.status == op.partition_status() => {}
                    p => {
                        return Err(format!(
                            "running operation {id} on partition {pid} finds {:?}",
                            p.map(|p| (p.table_id, p.status))
                        ));
                    }
                }
            }
        }
        if finished > MAX_FINISHED_OPERATIONS {
            return Err(format!("{finished} finished operations are kept"));
        }
        for p in self.partitions.values() {
            if p.status != PartitionStatus::Healthy && !running.contains_key(&p.partition_id) {
                return Err(format!(
                    "partition {} is {:?} with no running operation",
                    p.partition_id, p.status
                ));
            }
        }
        Ok(())
    }
}

/// One operation record on its own: steps of its kind, times in order, a status that
/// fits the step (completed exactly when switched, but for a move still dropping its
/// source or failed after its switch), a split result exactly when a split completed,
/// bounded strings and retries.
fn check_operation(op: &Operation) -> Result<(), String> {
    let id = op.operation_id;
    let bad = |what: &str| Err(format!("operation {id}: {what}: {op:?}"));
    if op.step.position_in(&op.kind).is_none() {
        return bad("step of another kind");
    }
    if let OperationKind::Move { from, to } = op.kind
        && from == to
    {
        return bad("moves a copy onto its own node");
    }
    let finished_in_order = match op.finished_at_ms {
        None => !op.status.is_finished(),
        Some(at) => op.status.is_finished() && op.step_started_at_ms <= at,
    };
    if op.started_at_ms > op.step_started_at_ms || !finished_in_order {
        return bad("times out of order or finish time without a finish");
    }
    if let OperationKind::Merge { right } = op.kind
        && (right == op.partition_id || op.reserved_merged.is_none())
    {
        return bad("merges a partition with itself, or reserved no id");
    }
    let is_split = matches!(op.kind, OperationKind::Split { .. });
    let in_place = matches!(
        op.kind,
        OperationKind::Split { .. } | OperationKind::Merge { .. }
    );
    let switched = op.step.is_switched();
    // A split or merge switches and completes in one command; a move runs on (and may
    // fail) after its switch, while the source drops its copy.
    let step_fits = match op.status {
        OperationStatus::Completed => switched,
        OperationStatus::RolledBack => !switched,
        OperationStatus::Running | OperationStatus::Failed { .. } => !(in_place && switched),
    };
    if !step_fits {
        return bad("step does not fit the status");
    }
    if op.split.is_some() != (is_split && op.status == OperationStatus::Completed) {
        return bad("split result without a completed split");
    }
    if let (
        Some(r),
        OperationKind::Split {
            split_point: Some(want),
        },
    ) = (op.split, op.kind)
        && r.split_point != want
    {
        return bad("split elsewhere than requested");
    }
    let reason_len = match &op.status {
        OperationStatus::Failed { reason } => reason.len(),
        _ => 0,
    };
    if op.requested_by.is_empty()
        || op.requested_by.len() > REQUESTED_BY_MAX_LEN
        || reason_len > FAILURE_REASON_MAX_LEN
        || op.attempts > MAX_STEP_ATTEMPTS
    {
        return bad("requester, reason or attempts out of bounds");
    }
    Ok(())
}
