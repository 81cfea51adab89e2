//! The state is the Raft snapshot: it must survive serialization unchanged.

use shared::model::{OperationStatus, OperationStep, PartitionStatus, TableStatus};
use shared::state::MetaState;

use crate::fixtures::populated;

#[test]
fn populated_state_covers_every_status() {
    let s = populated();
    s.check_invariants().unwrap();
    let statuses: Vec<TableStatus> = s.tables().map(|t| t.status).collect();
    for status in [
        TableStatus::Creating,
        TableStatus::Active,
        TableStatus::Scaling,
        TableStatus::Deleting,
    ] {
        assert!(statuses.contains(&status), "{status:?} missing");
    }
    assert!(s.partitions().any(|p| !p.released_node_ids.is_empty()));
    assert!(s.partitions().any(|p| p.is_ready()));
}

#[test]
fn populated_state_holds_auth_state() {
    let s = populated();
    assert_eq!(s.principals().count(), 2);
    let active = s.table_by_name("active").unwrap().table_id;
    assert_eq!(s.policies_of_table(active).count(), 2);
    assert_eq!(s.signing_keys().count(), 2);
    assert_eq!(s.trusted_keys(999).count(), 2);
    assert_eq!(s.active_signing_key(1).unwrap().kid, "k1");
    assert!(s.is_revoked("j1") && s.is_revoked("j2"));
}

#[test]
fn populated_state_holds_operations() {
    let s = populated();
    let ops: Vec<_> = s.operations().collect();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].status, OperationStatus::Completed);
    assert!(ops[0].split.is_some());
    assert_eq!(ops[1].status, OperationStatus::RolledBack);
    assert_eq!(ops[2].step, OperationStep::Copying);
    assert!(ops[2].progress.is_some());
    let moving = s.running_operation_of(ops[2].partition_id).unwrap();
    assert_eq!(moving.operation_id, ops[2].operation_id);
    let p = s.partition(moving.partition_id).unwrap();
    assert_eq!(p.status, PartitionStatus::Migrating);
}

#[test]
fn snapshot_round_trips_through_postcard() {
    let s = populated();
    let bytes = postcard::to_stdvec(&s).unwrap();
    let back: MetaState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, s);
    back.check_invariants().unwrap();
    // Encoding is deterministic: replicas that hold equal states produce equal snapshots.
    assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
}

#[test]
fn snapshot_round_trips_through_json() {
    let s = populated();
    let text = serde_json::to_string(&s).unwrap();
    let back: MetaState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}

#[test]
fn empty_state_round_trips() {
    let s = MetaState::default();
    let back: MetaState = postcard::from_bytes(&postcard::to_stdvec(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    // Fresh ids still start at 1 after a round trip.
    let mut back = back;
    let spec = crate::fixtures::spec("after", crate::fixtures::on_demand());
    assert_eq!(crate::fixtures::create(&mut back, spec), 1);
}
