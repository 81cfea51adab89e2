//! Builders shared by the unit tests of the core.

use crate::command::{MetaCommand, MetaOutcome, PartitionAssignment, TableSpec};
use crate::keyspace::even_ranges;
use crate::model::{
    Attribute, AttributeType, Capacity, CapacityMode, NodeId, PartitionId, TableId,
};
use crate::state::MetaState;

/// A state with one HEALTHY node per entry of `zones` (ids from 1), in that zone.
pub fn cluster(zones: &[&str]) -> MetaState {
    let mut s = MetaState::new();
    for (i, zone) in zones.iter().enumerate() {
        let cmd = MetaCommand::RegisterNode {
            node_id: i as u64 + 1,
            endpoint: format!("http://n{i}"),
            peer_addr: format!("n{i}:7100"),
            zone: zone.to_string(),
            incarnation: 1,
            now_ms: 0,
        };
        s.apply(&cmd).unwrap();
    }
    s
}

/// Creates a CREATING table keyed by a string `pk`; returns its id.
pub fn create_table(s: &mut MetaState, name: &str, capacity: Capacity) -> TableId {
    let spec = TableSpec {
        table_name: name.into(),
        partition_key: "pk".into(),
        sort_key: None,
        capacity,
        attributes: vec![Attribute {
            name: "pk".into(),
            attr_type: AttributeType::S,
        }],
    };
    match s.apply(&MetaCommand::CreateTable { spec, now_ms: 0 }) {
        Ok(MetaOutcome::TableCreated { table_id }) => table_id,
        other => panic!("{other:?}"),
    }
}

/// A PROVISIONED capacity.
pub fn provisioned(read_units: u64, write_units: u64) -> Capacity {
    Capacity {
        mode: CapacityMode::Provisioned,
        read_units,
        write_units,
    }
}

/// A table with one partition per entry of `sets` (primary first), all ready.
pub fn table_on(s: &mut MetaState, name: &str, sets: &[&[NodeId]]) -> Vec<PartitionId> {
    let t = create_table(s, name, provisioned(1, 1));
    let partitions = even_ranges(sets.len() as u32)
        .into_iter()
        .zip(sets)
        .map(|(range, set)| PartitionAssignment {
            range,
            primary_node_id: set[0],
            replica_node_ids: set[1..].to_vec(),
        })
        .collect();
    let ids = match s.apply(&MetaCommand::AssignPartitions {
        table_id: t,
        partitions,
    }) {
        Ok(MetaOutcome::PartitionsAssigned { partition_ids }) => partition_ids,
        other => panic!("{other:?}"),
    };
    ready(s, &ids);
    ids
}

/// Reports every member of each partition ready.
pub fn ready(s: &mut MetaState, ids: &[PartitionId]) {
    for id in ids {
        let members: Vec<NodeId> = s.partition(*id).unwrap().all_nodes().collect();
        for node_id in members {
            let cmd = MetaCommand::PartitionsReady {
                node_id,
                partition_ids: vec![*id],
            };
            s.apply(&cmd).unwrap();
        }
    }
}
