//! The metadata state machine: `MetaState` and its deterministic `apply`.
//!
//! `MetaState` is what Raft replicates (its serialized form is the snapshot). Every
//! command is validated in full before anything is mutated, so a rejected command is
//! a committed no-op that returns a typed `MetaError`. In debug and test builds the
//! invariants are checked after every command; a violation is a bug and panics.

mod apply;
mod auth;
mod invariants;
mod nodes;
mod ops;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::auth::Policy;
use crate::command::{MetaCommand, MetaResult};
#[cfg(debug_assertions)]
use crate::model::KeyRange;
use crate::model::{
    Node, NodeId, Operation, OperationId, Partition, PartitionId, Principal, SchemaVersion,
    SigningKeyRecord, Table, TableId, UnixMillis,
};

/// The replicated metadata: cluster id, tables, schema versions, partitions, nodes,
/// access control (principals, access policies, signing keys, revocations) and
/// multi-step operations (splits and moves).
///
/// Its maps are persistent ([`OrdMap`]): a clone is cheap and shares every entry the
/// two copies have not changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    cluster_id: Option<String>,
    tables: OrdMap<TableId, Table>,
    table_ids_by_name: OrdMap<String, TableId>,
    /// Schema versions by table, then by version number. Nested rather than keyed by
    /// a tuple so the state also serializes to JSON (for debugging dumps).
    schemas: OrdMap<TableId, BTreeMap<u32, SchemaVersion>>,
    partitions: OrdMap<PartitionId, Partition>,
    nodes: OrdMap<NodeId, Node>,
    next_table_id: u64,
    next_partition_id: u64,
    /// Principals by ARN.
    #[serde(default)]
    principals: OrdMap<String, Principal>,
    /// Access policies by table, then by principal ARN (nested like `schemas`). Those
    /// of a DELETING table stay until it is purged but are not usable.
    #[serde(default)]
    policies: OrdMap<TableId, BTreeMap<String, Policy>>,
    /// Published signing keys (public halves) by key id.
    #[serde(default)]
    signing_keys: OrdMap<String, SigningKeyRecord>,
    /// Revoked credential ids, each with the time its token expires.
    #[serde(default)]
    revocations: OrdMap<String, UnixMillis>,
    /// Multi-step operations (split, move) by id: every running one, and the latest
    /// `MAX_FINISHED_OPERATIONS` finished ones.
    #[serde(default)]
    operations: OrdMap<OperationId, Operation>,
    /// The id of the next operation; ids below it and absent from `operations` belong
    /// to finished operations dropped from the history.
    #[serde(default = "first_id")]
    next_operation_id: u64,
}

/// Drops the entries of `map` that `keep` refuses (`OrdMap` has no `retain`); entries
/// kept are not touched, so they stay shared with other copies of the state.
fn retain_entries<K: Ord + Clone, V: Clone>(
    map: &mut OrdMap<K, V>,
    mut keep: impl FnMut(&K, &V) -> bool,
) {
    let doomed: Vec<K> = map
        .iter()
        .filter(|(k, v)| !keep(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    for key in doomed {
        map.remove(&key);
    }
}

/// Runs `change` on the entries of `map` that `select` picks (`OrdMap` has no
/// `values_mut`); only those are copied out of what other copies of the state share.
fn update_entries<K: Ord + Clone, V: Clone>(
    map: &mut OrdMap<K, V>,
    select: impl Fn(&V) -> bool,
    mut change: impl FnMut(&mut V),
) {
    let picked: Vec<K> = map
        .iter()
        .filter(|(_, v)| select(v))
        .map(|(k, _)| k.clone())
        .collect();
    for key in picked {
        if let Some(value) = map.get_mut(&key) {
            change(value);
        }
    }
}

/// Ids start at 1 so 0 can never name a real entity (also the default of id counters
/// missing from older snapshots).
fn first_id() -> u64 {
    1
}

impl Default for MetaState {
    fn default() -> Self {
        MetaState {
            cluster_id: None,
            tables: OrdMap::new(),
            table_ids_by_name: OrdMap::new(),
            schemas: OrdMap::new(),
            partitions: OrdMap::new(),
            nodes: OrdMap::new(),
            next_table_id: first_id(),
            next_partition_id: first_id(),
            principals: OrdMap::new(),
            policies: OrdMap::new(),
            signing_keys: OrdMap::new(),
            revocations: OrdMap::new(),
            operations: OrdMap::new(),
            next_operation_id: first_id(),
        }
    }
}

impl MetaState {
    /// An empty state (same as `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster id, once `InitCluster` applied.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// A table by id.
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.tables.get(&id)
    }

    /// A table by name.
    pub fn table_by_name(&self, name: &str) -> Option<&Table> {
        self.tables.get(self.table_ids_by_name.get(name)?)
    }

    /// All tables, ordered by name.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.table_ids_by_name
            .values()
            .filter_map(|id| self.tables.get(id))
    }

    /// Number of tables.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// One schema version of a table.
    pub fn schema(&self, table_id: TableId, version: u32) -> Option<&SchemaVersion> {
        self.schemas.get(&table_id)?.get(&version)
    }

    /// The current schema version of a table.
    pub fn current_schema(&self, table_id: TableId) -> Option<&SchemaVersion> {
        self.schema(table_id, self.table(table_id)?.schema_version_id)
    }

    /// All schema versions of a table, oldest first.
    pub fn schema_versions(&self, table_id: TableId) -> impl Iterator<Item = &SchemaVersion> {
        self.schemas
            .get(&table_id)
            .into_iter()
            .flat_map(|v| v.values())
    }

    /// A partition by id.
    pub fn partition(&self, id: PartitionId) -> Option<&Partition> {
        self.partitions.get(&id)
    }

    /// All partitions, ordered by id.
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.values()
    }

    /// The partitions of one table, ordered by range start.
    pub fn partitions_of(&self, table_id: TableId) -> Vec<&Partition> {
        let mut parts: Vec<&Partition> = self
            .partitions
            .values()
            .filter(|p| p.table_id == table_id)
            .collect();
        parts.sort_by_key(|p| p.range.low);
        parts
    }

    /// Number of partitions of all tables.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// All nodes, ordered by id.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Nodes that accept new work (HEALTHY), ordered by id.
    pub fn live_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.status.accepts_new_work())
    }

    /// Applies one command: validates it fully, then mutates (or changes nothing and
    /// returns the error). Deterministic; never panics on any input.
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResult {
        #[cfg(debug_assertions)]
        let epochs_before = self.epochs();
        let result = self.dispatch(cmd);
        #[cfg(debug_assertions)]
        self.assert_after_apply(cmd, &epochs_before);
        result
    }

    /// Checks every structural invariant; `Err` describes the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_tables()?;
        self.check_partitions()?;
        self.check_tilings()?;
        self.check_node_index()?;
        self.check_node_statuses()?;
        self.check_principals()?;
        self.check_policies()?;
        self.check_signing_keys()?;
        self.check_revocations()?;
        self.check_operations()
    }

    /// Direct access for tests of other modules that need states no command makes yet.
    #[cfg(test)]
    pub(crate) fn nodes_mut_for_tests(&mut self) -> &mut OrdMap<NodeId, Node> {
        &mut self.nodes
    }

    /// What the epoch checks after apply compare against: each partition's table,
    /// range and epoch.
    #[cfg(debug_assertions)]
    fn epochs(&self) -> BTreeMap<PartitionId, (TableId, KeyRange, u64)> {
        self.partitions
            .iter()
            .map(|(id, p)| (*id, (p.table_id, p.range, p.epoch)))
            .collect()
    }

    /// A broken invariant after apply is a bug in apply, not a user error: stop loudly.
    #[cfg(debug_assertions)]
    fn assert_after_apply(
        &self,
        cmd: &MetaCommand,
        before: &BTreeMap<PartitionId, (TableId, KeyRange, u64)>,
    ) {
        if let Err(e) = self.check_invariants() {
            panic!("invariant broken after applying {cmd:?}: {e}");
        }
        if let Err(e) = epochs_grew(before, &self.partitions) {
            panic!("{e} after applying {cmd:?}");
        }
    }
}

/// Epochs only grow, per partition and per key: a partition keeps or raises its epoch,
/// and a new partition covering keys of one that is gone (a split child) starts above
/// it, so a request carrying the old routing's epoch is always recognised as stale.
#[cfg(debug_assertions)]
fn epochs_grew(
    before: &BTreeMap<PartitionId, (TableId, KeyRange, u64)>,
    after: &OrdMap<PartitionId, Partition>,
) -> Result<(), String> {
    let gone: Vec<&(TableId, KeyRange, u64)> = before
        .iter()
        .filter(|(id, _)| !after.contains_key(*id))
        .map(|(_, v)| v)
        .collect();
    for (id, p) in after {
        match before.get(id) {
            Some((_, _, epoch)) if p.epoch < *epoch => {
                return Err(format!(
                    "epoch of partition {id} went from {epoch} to {}",
                    p.epoch
                ));
            }
            Some(_) => {}
            None => {
                let overlaps = |r: &KeyRange| r.low <= p.range.high && p.range.low <= r.high;
                if let Some((_, _, epoch)) = gone
                    .iter()
                    .find(|(t, r, e)| *t == p.table_id && overlaps(r) && p.epoch <= *e)
                {
                    return Err(format!(
                        "new partition {id} at epoch {} covers keys of a removed partition \
                         at epoch {epoch}",
                        p.epoch
                    ));
                }
            }
        }
    }
    Ok(())
}
