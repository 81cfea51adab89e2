//! Command handlers. Each one validates everything first and mutates last, so that
//! every early return leaves the state untouched.

use std::collections::BTreeSet;

use super::{MetaState, retain_entries, update_entries};
use crate::command::{
    MetaCommand, MetaError, MetaOutcome, MetaResult, PartitionAssignment, TableSpec,
};
use crate::keyspace::check_tiling;
use crate::model::{
    Attribute, Capacity, KeyRange, Node, NodeId, NodeStatus, Partition, PartitionId,
    PartitionStatus, SchemaVersion, Table, TableId, TableStatus, UnixMillis,
};
use crate::validate::{
    self, CLUSTER_ID_MAX_LEN, MAX_PARTITIONS_PER_TABLE, MAX_REPLICATION_FACTOR,
    MAX_SCHEMA_VERSIONS_PER_TABLE, NODE_FIELD_MAX_LEN,
};

/// The status of a registered node after it registers again; `restarted` when the
/// incarnation is newer than the recorded one.
fn status_after_registration(node: &Node, restarted: bool) -> NodeStatus {
    match node.status {
        // A restart does not cancel a drain.
        NodeStatus::Healthy | NodeStatus::Draining => node.status,
        // Never committed; a registration is proof of life anyway.
        NodeStatus::Suspected => NodeStatus::Healthy,
        // An operator removed it: a restart (say by a service manager) does not re-add it.
        NodeStatus::Decommissioned => node.status,
        // A repeat from the incarnation judged dead (a retried request) must not revive it.
        NodeStatus::Failed if !restarted => node.status,
        // It failed while draining (for removal or not): the drain still stands.
        NodeStatus::Failed if node.drain_requested || node.remove_when_drained => {
            NodeStatus::Draining
        }
        NodeStatus::Failed => NodeStatus::Healthy,
    }
}

/// The fields of a `RegisterNode` command.
struct Registration<'a> {
    node_id: NodeId,
    endpoint: &'a str,
    peer_addr: &'a str,
    zone: &'a str,
    incarnation: u64,
    now_ms: UnixMillis,
}

pub(super) fn wrong_status(table: &Table, needed: &str) -> MetaError {
    MetaError::TableWrongStatus {
        name: table.table_name.clone(),
        status: table.status,
        needed: needed.to_string(),
    }
}

pub(super) fn placement(msg: String) -> MetaError {
    MetaError::InvalidPlacement(msg)
}

impl MetaState {
    /// Routes a command to its handler.
    pub(super) fn dispatch(&mut self, cmd: &MetaCommand) -> MetaResult {
        match cmd {
            MetaCommand::InitCluster { cluster_id } => self.init_cluster(cluster_id),
            MetaCommand::RegisterNode {
                node_id,
                endpoint,
                peer_addr,
                zone,
                incarnation,
                now_ms,
            } => self.register_node(&Registration {
                node_id: *node_id,
                endpoint,
                peer_addr,
                zone,
                incarnation: *incarnation,
                now_ms: *now_ms,
            }),
            MetaCommand::CreateTable { spec, now_ms } => self.create_table(spec, *now_ms),
            MetaCommand::AssignPartitions {
                table_id,
                partitions,
            } => self.assign_partitions(*table_id, partitions),
            MetaCommand::PartitionsReady {
                node_id,
                partition_ids,
            } => self.partitions_ready(*node_id, partition_ids),
            MetaCommand::PartitionsReadyAt {
                node_id,
                partitions,
            } => self.partitions_ready_at(*node_id, partitions),
            MetaCommand::ActivateTable { table_id, now_ms } => {
                self.activate_table(*table_id, *now_ms)
            }
            MetaCommand::UpdateCapacity {
                table_name,
                capacity,
                now_ms,
            } => self.update_capacity(table_name, capacity, *now_ms),
            MetaCommand::AddSchemaVersion {
                table_name,
                attributes,
                now_ms,
            } => self.add_schema_version(table_name, attributes, *now_ms),
            MetaCommand::DeleteTable { table_name, now_ms } => {
                self.delete_table(table_name, *now_ms)
            }
            MetaCommand::PartitionsReleased {
                node_id,
                partition_ids,
            } => self.partitions_released(*node_id, partition_ids),
            MetaCommand::PurgeTable { table_id } => self.purge_table(*table_id),
            MetaCommand::NodeFailed {
                node_id,
                incarnation,
                now_ms,
            } => self.node_failed(*node_id, *incarnation, *now_ms),
            MetaCommand::RepairPartitions { changes } => self.repair_partitions(changes),
            MetaCommand::DrainNode {
                node_id,
                remove,
                now_ms,
            } => self.drain_node(*node_id, *remove, *now_ms),
            MetaCommand::DecommissionNode { node_id, now_ms } => {
                self.decommission_node(*node_id, *now_ms)
            }
            MetaCommand::CancelDrain { node_id, now_ms } => self.cancel_drain(*node_id, *now_ms),
            MetaCommand::CreatePrincipal { .. }
            | MetaCommand::DeletePrincipal { .. }
            | MetaCommand::PutPolicy { .. }
            | MetaCommand::DeletePolicy { .. }
            | MetaCommand::PublishSigningKey { .. }
            | MetaCommand::RetireSigningKey { .. }
            | MetaCommand::DropExpiredKeys { .. }
            | MetaCommand::RevokeCredential { .. }
            | MetaCommand::GcRevocations { .. } => self.dispatch_auth(cmd),
            MetaCommand::StartOperation { .. }
            | MetaCommand::AdvanceOperation { .. }
            | MetaCommand::RetryOperationStep { .. }
            | MetaCommand::FinishOperation { .. }
            | MetaCommand::SplitPartition { .. }
            | MetaCommand::MergePartitions { .. }
            | MetaCommand::CommitMove { .. } => self.dispatch_ops(cmd),
        }
    }

    pub(super) fn table_id_by_name(&self, name: &str) -> Result<TableId, MetaError> {
        self.table_ids_by_name
            .get(name)
            .copied()
            .ok_or_else(|| MetaError::TableNotFound(name.to_string()))
    }

    pub(super) fn table_by_id(&self, id: TableId) -> Result<&Table, MetaError> {
        self.tables
            .get(&id)
            .ok_or_else(|| MetaError::TableNotFound(id.to_string()))
    }

    /// Mutable access to a table already validated to exist.
    fn table_mut(&mut self, id: TableId) -> &mut Table {
        self.tables
            .get_mut(&id)
            .expect("table validated before mutation")
    }

    fn has_partitions(&self, table_id: TableId) -> bool {
        self.partitions.values().any(|p| p.table_id == table_id)
    }

    fn init_cluster(&mut self, cluster_id: &str) -> MetaResult {
        if cluster_id.is_empty() || cluster_id.len() > CLUSTER_ID_MAX_LEN {
            return Err(MetaError::Invalid(format!(
                "cluster id must be 1 to {CLUSTER_ID_MAX_LEN} bytes long"
            )));
        }
        // Only the first InitCluster names the cluster; repeats are harmless no-ops.
        if self.cluster_id.is_none() {
            self.cluster_id = Some(cluster_id.to_string());
        }
        Ok(MetaOutcome::Done)
    }

    fn validate_registration(&self, reg: &Registration<'_>) -> Result<(), MetaError> {
        if reg.peer_addr.is_empty() {
            return Err(MetaError::Invalid(format!(
                "node {} registered without a peer address",
                reg.node_id
            )));
        }
        for (what, value) in [
            ("endpoint", reg.endpoint),
            ("peer address", reg.peer_addr),
            ("zone", reg.zone),
        ] {
            if value.len() > NODE_FIELD_MAX_LEN {
                return Err(MetaError::Invalid(format!(
                    "node {what} is longer than {NODE_FIELD_MAX_LEN} bytes"
                )));
            }
        }
        match self.nodes.get(&reg.node_id) {
            Some(node) if reg.incarnation < node.incarnation => Err(MetaError::StaleIncarnation {
                node_id: reg.node_id,
                got: reg.incarnation,
                current: node.incarnation,
            }),
            _ => Ok(()),
        }
    }

    fn register_node(&mut self, reg: &Registration<'_>) -> MetaResult {
        self.validate_registration(reg)?;
        let node = self.nodes.entry(reg.node_id).or_insert_with(|| Node {
            node_id: reg.node_id,
            endpoint: String::new(),
            peer_addr: String::new(),
            zone: String::new(),
            status: NodeStatus::Healthy,
            last_heartbeat_at_ms: reg.now_ms,
            incarnation: reg.incarnation,
            partition_ids: BTreeSet::new(),
            remove_when_drained: false,
            status_changed_at_ms: reg.now_ms,
            drain_requested: false,
        });
        let status = status_after_registration(node, reg.incarnation > node.incarnation);
        if status != node.status {
            node.status = status;
            node.status_changed_at_ms = reg.now_ms;
        }
        node.endpoint = reg.endpoint.to_string();
        node.peer_addr = reg.peer_addr.to_string();
        node.zone = reg.zone.to_string();
        node.incarnation = reg.incarnation;
        // Proposers' clocks differ; the last proof of life must not move backwards.
        node.last_heartbeat_at_ms = node.last_heartbeat_at_ms.max(reg.now_ms);
        Ok(MetaOutcome::Done)
    }

    fn create_table(&mut self, spec: &TableSpec, now_ms: UnixMillis) -> MetaResult {
        validate::validate_spec(spec)?;
        if self.table_ids_by_name.contains_key(&spec.table_name) {
            return Err(MetaError::TableExists(spec.table_name.clone()));
        }
        let table_id = self.next_table_id;
        self.next_table_id += 1;
        self.tables.insert(
            table_id,
            Table {
                table_id,
                table_name: spec.table_name.clone(),
                partition_key: spec.partition_key.clone(),
                sort_key: spec.sort_key.clone(),
                status: TableStatus::Creating,
                capacity: spec.capacity,
                schema_version_id: 1,
                created_at_ms: now_ms,
                status_changed_at_ms: now_ms,
            },
        );
        self.table_ids_by_name
            .insert(spec.table_name.clone(), table_id);
        let v1 = SchemaVersion {
            table_id,
            version: 1,
            attributes: spec.attributes.clone(),
            created_at_ms: now_ms,
        };
        self.schemas.entry(table_id).or_default().insert(1, v1);
        Ok(MetaOutcome::TableCreated { table_id })
    }

    /// Checks one replica set: bounded size, distinct nodes, all known and allowed to
    /// hold it by `may_hold` (else `UnknownNode`).
    pub(super) fn check_node_set(
        &self,
        primary: NodeId,
        replicas: &[NodeId],
        may_hold: impl Fn(&Node) -> bool,
    ) -> Result<(), MetaError> {
        let count = 1 + replicas.len();
        if count > MAX_REPLICATION_FACTOR {
            return Err(placement(format!(
                "{count} nodes for one partition, at most {MAX_REPLICATION_FACTOR}"
            )));
        }
        let mut seen = BTreeSet::new();
        for node_id in std::iter::once(primary).chain(replicas.iter().copied()) {
            if !seen.insert(node_id) {
                return Err(placement(format!(
                    "node {node_id} appears twice in one replica set"
                )));
            }
            match self.nodes.get(&node_id) {
                Some(n) if may_hold(n) => {}
                _ => return Err(MetaError::UnknownNode(node_id)),
            }
        }
        Ok(())
    }

    fn validate_assignment(
        &self,
        table_id: TableId,
        parts: &[PartitionAssignment],
    ) -> Result<(), MetaError> {
        let table = self.table_by_id(table_id)?;
        if table.status != TableStatus::Creating {
            return Err(wrong_status(table, "CREATING"));
        }
        if self.has_partitions(table_id) {
            return Err(placement(format!(
                "table {table_id} already has partitions"
            )));
        }
        if parts.len() > MAX_PARTITIONS_PER_TABLE {
            return Err(placement(format!(
                "{} partitions, at most {MAX_PARTITIONS_PER_TABLE} per table",
                parts.len()
            )));
        }
        let mut ranges: Vec<KeyRange> = parts.iter().map(|p| p.range).collect();
        ranges.sort_unstable();
        check_tiling(&ranges).map_err(placement)?;
        // New placements go only to nodes that take new work.
        parts.iter().try_for_each(|p| {
            self.check_node_set(p.primary_node_id, &p.replica_node_ids, |n| {
                n.status.accepts_new_work()
            })
        })
    }

    fn assign_partitions(
        &mut self,
        table_id: TableId,
        parts: &[PartitionAssignment],
    ) -> MetaResult {
        self.validate_assignment(table_id, parts)?;
        let mut partition_ids = Vec::with_capacity(parts.len());
        for a in parts {
            let partition_id = self.next_partition_id;
            self.next_partition_id += 1;
            let partition = Partition {
                partition_id,
                table_id,
                range: a.range,
                primary_node_id: a.primary_node_id,
                replica_node_ids: a.replica_node_ids.clone(),
                epoch: 1,
                status: PartitionStatus::Healthy,
                ready_node_ids: BTreeSet::new(),
                released_node_ids: BTreeSet::new(),
            };
            for node_id in partition.all_nodes() {
                let node = self.nodes.get_mut(&node_id).expect("node validated");
                node.partition_ids.insert(partition_id);
            }
            self.partitions.insert(partition_id, partition);
            partition_ids.push(partition_id);
        }
        Ok(MetaOutcome::PartitionsAssigned { partition_ids })
    }

    /// Checks that `node_id` exists and holds a replica of every partition in `ids`.
    fn check_node_holds(&self, node_id: NodeId, ids: &[PartitionId]) -> Result<(), MetaError> {
        if !self.nodes.contains_key(&node_id) {
            return Err(MetaError::UnknownNode(node_id));
        }
        for id in ids {
            let p = self
                .partitions
                .get(id)
                .ok_or(MetaError::UnknownPartition(*id))?;
            if !p.all_nodes().any(|n| n == node_id) {
                return Err(placement(format!(
                    "node {node_id} holds no replica of partition {id}"
                )));
            }
        }
        Ok(())
    }

    fn partitions_ready(&mut self, node_id: NodeId, ids: &[PartitionId]) -> MetaResult {
        self.check_node_holds(node_id, ids)?;
        for id in ids {
            let p = self.partitions.get_mut(id).expect("partition validated");
            p.ready_node_ids.insert(node_id);
        }
        Ok(MetaOutcome::Done)
    }

    fn partitions_ready_at(&mut self, node_id: NodeId, at: &[(PartitionId, u64)]) -> MetaResult {
        let ids: Vec<PartitionId> = at.iter().map(|(id, _)| *id).collect();
        self.check_node_holds(node_id, &ids)?;
        for (id, epoch) in at {
            let current = self.partitions[id].epoch;
            if current != *epoch {
                return Err(MetaError::StaleEpoch {
                    partition_id: *id,
                    expected: *epoch,
                    current,
                });
            }
        }
        self.partitions_ready(node_id, &ids)
    }

    fn activate_table(&mut self, table_id: TableId, now_ms: UnixMillis) -> MetaResult {
        let table = self.table_by_id(table_id)?;
        match table.status {
            // A repeat from a new leader is harmless.
            TableStatus::Active => return Ok(MetaOutcome::Done),
            TableStatus::Deleting => return Err(wrong_status(table, "CREATING or SCALING")),
            TableStatus::Scaling => {}
            TableStatus::Creating => {
                let parts = self.partitions_of(table_id);
                if parts.is_empty() || !parts.iter().all(|p| p.is_ready()) {
                    return Err(wrong_status(table, "all partitions ready"));
                }
            }
        }
        let table = self.table_mut(table_id);
        table.status = TableStatus::Active;
        table.status_changed_at_ms = now_ms;
        Ok(MetaOutcome::Done)
    }

    fn update_capacity(
        &mut self,
        name: &str,
        capacity: &Capacity,
        now_ms: UnixMillis,
    ) -> MetaResult {
        let table_id = self.table_id_by_name(name)?;
        let table = self.table_by_id(table_id)?;
        if table.status != TableStatus::Active {
            return Err(wrong_status(table, "ACTIVE"));
        }
        validate::validate_capacity(capacity)?;
        let table = self.table_mut(table_id);
        table.capacity = *capacity;
        table.status = TableStatus::Scaling;
        table.status_changed_at_ms = now_ms;
        Ok(MetaOutcome::Done)
    }

    fn add_schema_version(
        &mut self,
        name: &str,
        attributes: &[Attribute],
        now_ms: UnixMillis,
    ) -> MetaResult {
        let table_id = self.table_id_by_name(name)?;
        let table = self.table_by_id(table_id)?;
        if table.status == TableStatus::Deleting {
            return Err(wrong_status(table, "CREATING, ACTIVE or SCALING"));
        }
        let current = self
            .schema(table_id, table.schema_version_id)
            .map_or(&[][..], |s| s.attributes.as_slice());
        validate::check_schema_compatible(table, current, attributes)?;
        let version = table.schema_version_id + 1;
        if version > MAX_SCHEMA_VERSIONS_PER_TABLE {
            return Err(MetaError::Invalid(format!(
                "table {name} reached the limit of {MAX_SCHEMA_VERSIONS_PER_TABLE} schema versions"
            )));
        }
        let schema = SchemaVersion {
            table_id,
            version,
            attributes: attributes.to_vec(),
            created_at_ms: now_ms,
        };
        self.schemas
            .entry(table_id)
            .or_default()
            .insert(version, schema);
        self.table_mut(table_id).schema_version_id = version;
        Ok(MetaOutcome::SchemaVersionAdded { version })
    }

    fn delete_table(&mut self, name: &str, now_ms: UnixMillis) -> MetaResult {
        let table_id = self.table_id_by_name(name)?;
        let table = self.table_mut(table_id);
        if table.status != TableStatus::Deleting {
            table.status = TableStatus::Deleting;
            table.status_changed_at_ms = now_ms;
        }
        Ok(MetaOutcome::Done)
    }

    fn partitions_released(&mut self, node_id: NodeId, ids: &[PartitionId]) -> MetaResult {
        self.check_node_holds(node_id, ids)?;
        for id in ids {
            let table_id = self.partitions[id].table_id;
            let table = self.table_by_id(table_id)?;
            if table.status != TableStatus::Deleting {
                return Err(wrong_status(table, "DELETING"));
            }
        }
        for id in ids {
            let p = self.partitions.get_mut(id).expect("partition validated");
            p.released_node_ids.insert(node_id);
        }
        Ok(MetaOutcome::Done)
    }

    fn purge_table(&mut self, table_id: TableId) -> MetaResult {
        let table = self.table_by_id(table_id)?;
        if table.status != TableStatus::Deleting {
            return Err(wrong_status(table, "DELETING"));
        }
        // A running operation's partition must exist until it finishes; its driver
        // sees the table DELETING and rolls it back (or fails it) first.
        if let Some(op) = self.running_operations().find(|op| op.table_id == table_id) {
            return Err(MetaError::OperationRunning {
                partition_id: op.partition_id,
                operation_id: op.operation_id,
            });
        }
        let name = table.table_name.clone();
        self.tables.remove(&table_id);
        self.table_ids_by_name.remove(&name);
        self.schemas.remove(&table_id);
        self.policies.remove(&table_id);
        let doomed: BTreeSet<PartitionId> = self
            .partitions
            .values()
            .filter(|p| p.table_id == table_id)
            .map(|p| p.partition_id)
            .collect();
        retain_entries(&mut self.partitions, |id, _| !doomed.contains(id));
        update_entries(
            &mut self.nodes,
            |n| n.partition_ids.iter().any(|id| doomed.contains(id)),
            |n| n.partition_ids.retain(|id| !doomed.contains(id)),
        );
        Ok(MetaOutcome::Done)
    }
}
