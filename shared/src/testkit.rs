//! Builders shared by the unit tests of the core.

use crate::command::{MetaCommand, MetaOutcome, TableSpec};
use crate::model::{Attribute, AttributeType, Capacity, CapacityMode, TableId};
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
