//! The cluster a run starts from: every agent registered, every table ACTIVE with its
//! partitions placed by the real placement planner and ready everywhere, as committed
//! before virtual time zero.

use std::collections::{BTreeMap, BTreeSet};

use shared::command::{MetaCommand, MetaOutcome, TableSpec};
use shared::model::{Attribute, AttributeType, Capacity, CapacityMode, NodeId, PartitionId};
use shared::placement::{PlacementConfig, plan_new_table};
use shared::state::MetaState;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::time::START_UNIX_MS;

/// Cluster id of every simulated cluster.
pub const CLUSTER_ID: &str = "netsim";

/// Peer address of node `id`.
pub fn peer_addr(id: NodeId) -> String {
    format!("n{id}:7100")
}

/// HTTP endpoint of node `id`.
pub fn endpoint(id: NodeId) -> String {
    format!("http://n{id}:7070")
}

/// The registration of node `id` at `incarnation`.
pub fn register(cfg: &SimConfig, id: NodeId, incarnation: u64, now_ms: u64) -> MetaCommand {
    MetaCommand::RegisterNode {
        node_id: id,
        endpoint: endpoint(id),
        peer_addr: peer_addr(id),
        zone: cfg.zone_of(id),
        incarnation,
        now_ms,
    }
}

fn apply(state: &mut MetaState, cmd: &MetaCommand) -> Result<MetaOutcome, SimError> {
    state
        .apply(cmd)
        .map_err(|e| SimError::Setup(format!("{cmd:?}: {e}")))
}

/// The starting state of `cfg`'s cluster.
pub fn initial_state(cfg: &SimConfig) -> Result<MetaState, SimError> {
    let mut state = MetaState::new();
    apply(
        &mut state,
        &MetaCommand::InitCluster {
            cluster_id: CLUSTER_ID.into(),
        },
    )?;
    for id in 1..=cfg.nodes as NodeId {
        apply(&mut state, &register(cfg, id, 1, START_UNIX_MS))?;
    }
    let placement = PlacementConfig {
        replication_factor: cfg.replication_factor,
        ..PlacementConfig::default()
    };
    for (t, count) in table_sizes(cfg.partitions, cfg.tables)
        .into_iter()
        .enumerate()
    {
        create_table(&mut state, &placement, &format!("t{t:04}"), count)?;
    }
    Ok(state)
}

/// Partitions per table: `partitions` spread as evenly as possible over `tables`.
pub fn table_sizes(partitions: usize, tables: usize) -> Vec<usize> {
    let tables = tables.min(partitions);
    (0..tables)
        .map(|t| partitions / tables + usize::from(t < partitions % tables))
        .collect()
}

/// The spec of table `name` with the capacity that makes placement give it `count`
/// partitions.
pub fn table_spec(placement: &PlacementConfig, name: &str, count: usize) -> TableSpec {
    TableSpec {
        table_name: name.into(),
        partition_key: "pk".into(),
        sort_key: None,
        capacity: Capacity {
            mode: CapacityMode::Provisioned,
            read_units: 1,
            write_units: count as u64 * placement.write_units_per_partition,
        },
        attributes: vec![Attribute {
            name: "pk".into(),
            attr_type: AttributeType::S,
        }],
    }
}

/// Creates one ACTIVE table of `count` partitions, placed and ready.
fn create_table(
    state: &mut MetaState,
    placement: &PlacementConfig,
    name: &str,
    count: usize,
) -> Result<(), SimError> {
    let spec = table_spec(placement, name, count);
    let table_id = match apply(
        state,
        &MetaCommand::CreateTable {
            spec,
            now_ms: START_UNIX_MS,
        },
    )? {
        MetaOutcome::TableCreated { table_id } => table_id,
        other => return Err(SimError::Setup(format!("create table: {other:?}"))),
    };
    let plan = plan_new_table(state, table_id, placement, &BTreeSet::new())
        .map_err(|e| SimError::Setup(e.to_string()))?;
    apply(
        state,
        &MetaCommand::AssignPartitions {
            table_id,
            partitions: plan.assignments,
        },
    )?;
    let mut by_node: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
    for p in state.partitions_of(table_id) {
        for n in p.all_nodes() {
            by_node.entry(n).or_default().push(p.partition_id);
        }
    }
    for (node_id, partition_ids) in by_node {
        apply(
            state,
            &MetaCommand::PartitionsReady {
                node_id,
                partition_ids,
            },
        )?;
    }
    apply(
        state,
        &MetaCommand::ActivateTable {
            table_id,
            now_ms: START_UNIX_MS,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_tile_and_partitions_add_up() {
        let cfg = SimConfig::new(1, 6, 250);
        let state = initial_state(&cfg).expect("set up");
        assert_eq!(state.partition_count(), 250);
        assert_eq!(state.table_count(), 3);
        assert!(state.partitions().all(|p| p.is_ready()));
        state.check_invariants().expect("valid");
    }
}
