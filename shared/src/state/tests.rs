//! Unit tests of every command: the success path and each rejection path. Every
//! rejection is checked to leave the state exactly as it was.

use super::*;
use crate::command::{MetaError, MetaOutcome, PartitionAssignment, TableSpec};
use crate::keyspace::even_ranges;
use crate::model::{
    Attribute, AttributeType, Capacity, CapacityMode, KeyRange, NodeStatus, TableStatus,
};
use std::collections::BTreeSet;

mod auth;
mod nodes;
mod ops;

const NOW: u64 = 1_700_000_000_000;

fn register(node_id: NodeId, zone: &str, incarnation: u64) -> MetaCommand {
    MetaCommand::RegisterNode {
        node_id,
        endpoint: format!("http://10.0.0.{node_id}:7070"),
        peer_addr: format!("10.0.0.{node_id}:7100"),
        zone: zone.into(),
        incarnation,
        now_ms: NOW,
    }
}

fn attr(name: &str, t: AttributeType) -> Attribute {
    Attribute {
        name: name.into(),
        attr_type: t,
    }
}

fn provisioned(read_units: u64, write_units: u64) -> Capacity {
    Capacity {
        mode: CapacityMode::Provisioned,
        read_units,
        write_units,
    }
}

fn spec(name: &str) -> TableSpec {
    TableSpec {
        table_name: name.into(),
        partition_key: "pk".into(),
        sort_key: Some("sk".into()),
        capacity: provisioned(10, 10),
        attributes: vec![attr("pk", AttributeType::S), attr("sk", AttributeType::N)],
    }
}

/// Applies a command that must succeed.
fn ok(state: &mut MetaState, cmd: MetaCommand) -> MetaOutcome {
    state
        .apply(&cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
}

/// Applies a command that must fail, and checks that it changed nothing.
fn reject(state: &mut MetaState, cmd: MetaCommand) -> MetaError {
    let before = state.clone();
    let err = state.apply(&cmd).expect_err("command should be rejected");
    assert_eq!(*state, before, "rejected {cmd:?} changed the state");
    err
}

/// A state with a cluster id and nodes 1..=4 in zones a, b, c, a.
fn cluster() -> MetaState {
    let mut s = MetaState::new();
    ok(
        &mut s,
        MetaCommand::InitCluster {
            cluster_id: "c1".into(),
        },
    );
    for (id, zone) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
        ok(&mut s, register(id, zone, 1));
    }
    s
}

fn create(s: &mut MetaState, name: &str) -> TableId {
    let cmd = MetaCommand::CreateTable {
        spec: spec(name),
        now_ms: NOW,
    };
    match ok(s, cmd) {
        MetaOutcome::TableCreated { table_id } => table_id,
        other => panic!("unexpected {other:?}"),
    }
}

/// Two partitions: [1, 2, 3] and [2, 3, 4].
fn two_parts() -> Vec<PartitionAssignment> {
    let r = even_ranges(2);
    vec![
        PartitionAssignment {
            range: r[0],
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        },
        PartitionAssignment {
            range: r[1],
            primary_node_id: 2,
            replica_node_ids: vec![3, 4],
        },
    ]
}

fn assign(s: &mut MetaState, table_id: TableId) -> Vec<PartitionId> {
    let cmd = MetaCommand::AssignPartitions {
        table_id,
        partitions: two_parts(),
    };
    match ok(s, cmd) {
        MetaOutcome::PartitionsAssigned { partition_ids } => partition_ids,
        other => panic!("unexpected {other:?}"),
    }
}

fn ready_all(s: &mut MetaState, table_id: TableId) {
    let parts: Vec<Partition> = s.partitions_of(table_id).into_iter().cloned().collect();
    for p in parts {
        for node_id in p.all_nodes() {
            let cmd = MetaCommand::PartitionsReady {
                node_id,
                partition_ids: vec![p.partition_id],
            };
            ok(s, cmd);
        }
    }
}

/// A cluster with table "orders" ACTIVE on two partitions.
fn active() -> (MetaState, TableId) {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    assign(&mut s, t);
    ready_all(&mut s, t);
    ok(
        &mut s,
        MetaCommand::ActivateTable {
            table_id: t,
            now_ms: NOW + 1,
        },
    );
    (s, t)
}

/// A cluster with table "orders" DELETING.
fn deleting() -> (MetaState, TableId) {
    let (mut s, t) = active();
    ok(&mut s, delete("orders"));
    (s, t)
}

fn delete(name: &str) -> MetaCommand {
    MetaCommand::DeleteTable {
        table_name: name.into(),
        now_ms: NOW + 2,
    }
}

fn status(s: &MetaState, t: TableId) -> TableStatus {
    s.table(t).unwrap().status
}

fn is_wrong_status(e: &MetaError) -> bool {
    matches!(e, MetaError::TableWrongStatus { .. })
}

#[test]
fn default_state_is_empty_and_consistent() {
    let s = MetaState::default();
    assert_eq!(s.cluster_id(), None);
    assert_eq!(s.partition_count(), 0);
    assert_eq!(s.tables().count(), 0);
    s.check_invariants().unwrap();
}

#[test]
fn init_cluster() {
    let mut s = MetaState::new();
    assert_eq!(
        ok(
            &mut s,
            MetaCommand::InitCluster {
                cluster_id: "c1".into()
            }
        ),
        MetaOutcome::Done
    );
    assert_eq!(s.cluster_id(), Some("c1"));
    // Repeats, even with another id, change nothing.
    let before = s.clone();
    ok(
        &mut s,
        MetaCommand::InitCluster {
            cluster_id: "c2".into(),
        },
    );
    assert_eq!(s, before);
    let e = reject(
        &mut s,
        MetaCommand::InitCluster {
            cluster_id: String::new(),
        },
    );
    assert!(matches!(e, MetaError::Invalid(_)));
}

#[test]
fn register_node_new_and_again() {
    let mut s = cluster();
    let n = s.node(1).unwrap();
    assert_eq!(n.status, NodeStatus::Healthy);
    assert_eq!(
        (n.zone.as_str(), n.incarnation, n.last_heartbeat_at_ms),
        ("a", 1, NOW)
    );
    assert!(n.partition_ids.is_empty());
    let t = create(&mut s, "orders");
    assign(&mut s, t);
    let held = s.node(1).unwrap().partition_ids.clone();
    // Restart with a newer incarnation, new address and zone: partitions kept.
    let cmd = MetaCommand::RegisterNode {
        node_id: 1,
        endpoint: "http://h:1".into(),
        peer_addr: "h:2".into(),
        zone: "z".into(),
        incarnation: 5,
        now_ms: NOW + 10,
    };
    ok(&mut s, cmd);
    let n = s.node(1).unwrap();
    assert_eq!(
        (n.endpoint.as_str(), n.peer_addr.as_str(), n.zone.as_str()),
        ("http://h:1", "h:2", "z")
    );
    assert_eq!((n.incarnation, n.last_heartbeat_at_ms), (5, NOW + 10));
    assert_eq!(n.partition_ids, held);
    // Same incarnation is accepted (a repeat), the heartbeat never goes back.
    let mut again = register(1, "z", 5);
    if let MetaCommand::RegisterNode { now_ms, .. } = &mut again {
        *now_ms = NOW;
    }
    ok(&mut s, again);
    assert_eq!(s.node(1).unwrap().last_heartbeat_at_ms, NOW + 10);
}

#[test]
fn register_node_rejections() {
    let mut s = cluster();
    let e = reject(&mut s, register(1, "a", 0));
    assert_eq!(
        e,
        MetaError::StaleIncarnation {
            node_id: 1,
            got: 0,
            current: 1
        }
    );
    let no_peer = MetaCommand::RegisterNode {
        node_id: 9,
        endpoint: "http://x".into(),
        peer_addr: String::new(),
        zone: String::new(),
        incarnation: 1,
        now_ms: NOW,
    };
    assert!(matches!(reject(&mut s, no_peer), MetaError::Invalid(_)));
    let long_zone = register(9, &"z".repeat(crate::validate::NODE_FIELD_MAX_LEN + 1), 1);
    assert!(matches!(reject(&mut s, long_zone), MetaError::Invalid(_)));
}

#[test]
fn create_table() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    assert_eq!(t, 1);
    let table = s.table(t).unwrap();
    assert_eq!(table.status, TableStatus::Creating);
    assert_eq!(
        (table.created_at_ms, table.status_changed_at_ms),
        (NOW, NOW)
    );
    assert_eq!(table.schema_version_id, 1);
    assert_eq!(
        s.schema(t, 1).unwrap().attributes,
        spec("orders").attributes
    );
    assert_eq!(s.table_by_name("orders").unwrap().table_id, t);
    assert_eq!(create(&mut s, "alpha"), 2);
    let names: Vec<_> = s.tables().map(|t| t.table_name.as_str()).collect();
    assert_eq!(names, ["alpha", "orders"]);
}

#[test]
fn create_table_rejections() {
    let mut s = cluster();
    create(&mut s, "orders");
    let dup = MetaCommand::CreateTable {
        spec: spec("orders"),
        now_ms: NOW,
    };
    assert_eq!(reject(&mut s, dup), MetaError::TableExists("orders".into()));
    let bad = MetaCommand::CreateTable {
        spec: spec("no"),
        now_ms: NOW,
    };
    assert!(matches!(reject(&mut s, bad), MetaError::Invalid(_)));
    let mut no_key = spec("other");
    no_key.partition_key = "missing".into();
    let bad = MetaCommand::CreateTable {
        spec: no_key,
        now_ms: NOW,
    };
    assert!(matches!(reject(&mut s, bad), MetaError::Invalid(_)));
}

#[test]
fn assign_partitions() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let ids = assign(&mut s, t);
    assert_eq!(ids, vec![1, 2]);
    let parts = s.partitions_of(t);
    assert_eq!(parts.len(), 2);
    assert!(
        parts
            .iter()
            .all(|p| p.epoch == 1 && p.status == crate::model::PartitionStatus::Healthy)
    );
    assert!(
        parts
            .iter()
            .all(|p| p.ready_node_ids.is_empty() && p.released_node_ids.is_empty())
    );
    assert_eq!(parts[0].range.low, 0);
    let held = |n| {
        s.node(n)
            .unwrap()
            .partition_ids
            .iter()
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (held(1), held(2), held(3), held(4)),
        (vec![1], vec![1, 2], vec![1, 2], vec![2])
    );
    assert_eq!(s.partition_count(), 2);
}

fn assign_cmd(table_id: TableId, partitions: Vec<PartitionAssignment>) -> MetaCommand {
    MetaCommand::AssignPartitions {
        table_id,
        partitions,
    }
}

#[test]
fn assign_partitions_table_rejections() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let e = reject(&mut s, assign_cmd(99, two_parts()));
    assert_eq!(e, MetaError::TableNotFound("99".into()));
    assign(&mut s, t);
    let e = reject(&mut s, assign_cmd(t, two_parts()));
    assert!(matches!(e, MetaError::InvalidPlacement(_)));
    let (mut s, t) = active();
    assert!(is_wrong_status(&reject(&mut s, assign_cmd(t, two_parts()))));
}

#[test]
fn assign_partitions_range_rejections() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let mut gap = two_parts();
    gap[1].range.low += 1;
    let mut overlap = two_parts();
    overlap[1].range.low -= 1;
    let mut short = two_parts();
    short[1].range.high -= 1;
    let mut inverted = two_parts();
    inverted[0].range = KeyRange { low: 5, high: 4 };
    let one_half = vec![two_parts().remove(0)];
    for parts in [gap, overlap, short, inverted, one_half, vec![]] {
        let e = reject(&mut s, assign_cmd(t, parts));
        assert!(matches!(e, MetaError::InvalidPlacement(_)), "{e:?}");
    }
    // Ranges may come in any order.
    let mut reversed = two_parts();
    reversed.reverse();
    ok(&mut s, assign_cmd(t, reversed));
}

#[test]
fn assign_partitions_node_rejections() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let mut dup = two_parts();
    dup[0].replica_node_ids = vec![2, 1];
    assert!(matches!(
        reject(&mut s, assign_cmd(t, dup)),
        MetaError::InvalidPlacement(_)
    ));
    let mut unknown = two_parts();
    unknown[1].replica_node_ids.push(77);
    assert_eq!(
        reject(&mut s, assign_cmd(t, unknown)),
        MetaError::UnknownNode(77)
    );
    let mut too_many = two_parts();
    too_many[0].replica_node_ids = (2..=9).collect();
    assert!(matches!(
        reject(&mut s, assign_cmd(t, too_many)),
        MetaError::InvalidPlacement(_)
    ));
    s.nodes.get_mut(&4).unwrap().status = NodeStatus::Failed;
    assert_eq!(
        reject(&mut s, assign_cmd(t, two_parts())),
        MetaError::UnknownNode(4)
    );
    // A single node per partition is enough.
    let solo: Vec<_> = even_ranges(3)
        .into_iter()
        .map(|range| PartitionAssignment {
            range,
            primary_node_id: 1,
            replica_node_ids: vec![],
        })
        .collect();
    ok(&mut s, assign_cmd(t, solo));
}

#[test]
fn partitions_ready() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let ids = assign(&mut s, t);
    let cmd = MetaCommand::PartitionsReady {
        node_id: 2,
        partition_ids: ids.clone(),
    };
    ok(&mut s, cmd.clone());
    let once = s.clone();
    ok(&mut s, cmd);
    assert_eq!(s, once, "PartitionsReady is idempotent");
    assert!(
        ids.iter()
            .all(|id| s.partition(*id).unwrap().ready_node_ids.contains(&2))
    );
    assert!(!s.partition(ids[0]).unwrap().is_ready());
    ready_all(&mut s, t);
    assert!(s.partitions_of(t).iter().all(|p| p.is_ready()));
}

#[test]
fn partitions_ready_rejections() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    let ids = assign(&mut s, t);
    let ready = |node_id, partition_ids| MetaCommand::PartitionsReady {
        node_id,
        partition_ids,
    };
    assert_eq!(
        reject(&mut s, ready(42, vec![ids[0]])),
        MetaError::UnknownNode(42)
    );
    assert_eq!(
        reject(&mut s, ready(2, vec![ids[0], 99])),
        MetaError::UnknownPartition(99)
    );
    // Node 1 holds partition 1 but not partition 2: nothing is recorded.
    let e = reject(&mut s, ready(1, vec![ids[0], ids[1]]));
    assert!(matches!(e, MetaError::InvalidPlacement(_)));
}

#[test]
fn activate_table() {
    let (s, t) = active();
    let table = s.table(t).unwrap();
    assert_eq!(table.status, TableStatus::Active);
    assert_eq!(table.status_changed_at_ms, NOW + 1);
    let mut again = s.clone();
    let cmd = MetaCommand::ActivateTable {
        table_id: t,
        now_ms: NOW + 9,
    };
    assert_eq!(ok(&mut again, cmd), MetaOutcome::Done);
    assert_eq!(again, s, "activating an ACTIVE table changes nothing");
}

#[test]
fn activate_table_from_scaling() {
    let (mut s, t) = active();
    let cmd = MetaCommand::UpdateCapacity {
        table_name: "orders".into(),
        capacity: provisioned(20, 20),
        now_ms: NOW + 5,
    };
    ok(&mut s, cmd);
    assert_eq!(status(&s, t), TableStatus::Scaling);
    ok(
        &mut s,
        MetaCommand::ActivateTable {
            table_id: t,
            now_ms: NOW + 6,
        },
    );
    assert_eq!(status(&s, t), TableStatus::Active);
    assert_eq!(s.table(t).unwrap().status_changed_at_ms, NOW + 6);
}

#[test]
fn activate_table_rejections() {
    let mut s = cluster();
    let activate = |table_id| MetaCommand::ActivateTable {
        table_id,
        now_ms: NOW,
    };
    assert_eq!(
        reject(&mut s, activate(5)),
        MetaError::TableNotFound("5".into())
    );
    let t = create(&mut s, "orders");
    assert!(
        is_wrong_status(&reject(&mut s, activate(t))),
        "no partitions yet"
    );
    let ids = assign(&mut s, t);
    let cmd = MetaCommand::PartitionsReady {
        node_id: 1,
        partition_ids: vec![ids[0]],
    };
    ok(&mut s, cmd);
    assert!(
        is_wrong_status(&reject(&mut s, activate(t))),
        "not all ready"
    );
    let (mut s, t) = deleting();
    assert!(is_wrong_status(&reject(&mut s, activate(t))));
}

#[test]
fn update_capacity() {
    let (mut s, t) = active();
    let on_demand = Capacity {
        mode: CapacityMode::OnDemand,
        read_units: 0,
        write_units: 0,
    };
    let cmd = MetaCommand::UpdateCapacity {
        table_name: "orders".into(),
        capacity: on_demand,
        now_ms: NOW + 3,
    };
    ok(&mut s, cmd);
    let table = s.table(t).unwrap();
    assert_eq!(
        (table.capacity, table.status),
        (on_demand, TableStatus::Scaling)
    );
    assert_eq!(table.status_changed_at_ms, NOW + 3);
}

#[test]
fn update_capacity_rejections() {
    let update = |name: &str, capacity| MetaCommand::UpdateCapacity {
        table_name: name.into(),
        capacity,
        now_ms: NOW,
    };
    let (mut s, _) = active();
    let e = reject(&mut s, update("nope", provisioned(1, 1)));
    assert_eq!(e, MetaError::TableNotFound("nope".into()));
    assert!(matches!(
        reject(&mut s, update("orders", provisioned(0, 1))),
        MetaError::Invalid(_)
    ));
    let huge = provisioned(crate::validate::MAX_CAPACITY_UNITS + 1, 1);
    assert!(matches!(
        reject(&mut s, update("orders", huge)),
        MetaError::Invalid(_)
    ));
    ok(&mut s, update("orders", provisioned(5, 5)));
    let e = reject(&mut s, update("orders", provisioned(6, 6)));
    assert!(is_wrong_status(&e), "SCALING is not ACTIVE");
    let mut s = cluster();
    create(&mut s, "orders");
    assert!(is_wrong_status(&reject(
        &mut s,
        update("orders", provisioned(1, 1))
    )));
}

fn schema_cmd(name: &str, attributes: Vec<Attribute>) -> MetaCommand {
    MetaCommand::AddSchemaVersion {
        table_name: name.into(),
        attributes,
        now_ms: NOW + 4,
    }
}

#[test]
fn add_schema_version() {
    let (mut s, t) = active();
    let mut attrs = spec("orders").attributes;
    attrs.push(attr("note", AttributeType::S));
    let out = ok(&mut s, schema_cmd("orders", attrs.clone()));
    assert_eq!(out, MetaOutcome::SchemaVersionAdded { version: 2 });
    assert_eq!(s.table(t).unwrap().schema_version_id, 2);
    assert_eq!(s.current_schema(t).unwrap().attributes, attrs);
    assert_eq!(
        s.schema(t, 1).unwrap().attributes,
        spec("orders").attributes
    );
    assert_eq!(s.schema(t, 2).unwrap().created_at_ms, NOW + 4);
    let out = ok(&mut s, schema_cmd("orders", spec("orders").attributes));
    assert_eq!(out, MetaOutcome::SchemaVersionAdded { version: 3 });
    assert_eq!(s.schema_versions(t).count(), 3);
    // Also allowed while CREATING.
    let mut s = cluster();
    create(&mut s, "fresh");
    ok(&mut s, schema_cmd("fresh", spec("fresh").attributes));
}

#[test]
fn add_schema_version_rejections() {
    let (mut s, _) = active();
    let attrs = spec("orders").attributes;
    let e = reject(&mut s, schema_cmd("nope", attrs.clone()));
    assert_eq!(e, MetaError::TableNotFound("nope".into()));
    let no_sort = vec![attr("pk", AttributeType::S)];
    assert!(matches!(
        reject(&mut s, schema_cmd("orders", no_sort)),
        MetaError::IncompatibleSchema(_)
    ));
    let retyped = vec![attr("pk", AttributeType::B), attr("sk", AttributeType::N)];
    assert!(matches!(
        reject(&mut s, schema_cmd("orders", retyped)),
        MetaError::IncompatibleSchema(_)
    ));
    let mut dup = attrs.clone();
    dup.push(attr("sk", AttributeType::N));
    assert!(matches!(
        reject(&mut s, schema_cmd("orders", dup)),
        MetaError::Invalid(_)
    ));
    let mut empty_name = attrs.clone();
    empty_name.push(attr("", AttributeType::N));
    assert!(matches!(
        reject(&mut s, schema_cmd("orders", empty_name)),
        MetaError::Invalid(_)
    ));
    ok(&mut s, delete("orders"));
    assert!(is_wrong_status(&reject(
        &mut s,
        schema_cmd("orders", attrs)
    )));
}

#[test]
fn add_schema_version_limit() {
    let (mut s, t) = active();
    s.tables.get_mut(&t).unwrap().schema_version_id =
        crate::validate::MAX_SCHEMA_VERSIONS_PER_TABLE;
    // Keep the invariants true for the shortcut above: every version must exist.
    let v1 = s.schema(t, 1).unwrap().clone();
    for version in 2..=crate::validate::MAX_SCHEMA_VERSIONS_PER_TABLE {
        let v = SchemaVersion {
            version,
            ..v1.clone()
        };
        s.schemas.get_mut(&t).unwrap().insert(version, v);
    }
    let e = reject(&mut s, schema_cmd("orders", spec("orders").attributes));
    assert!(matches!(e, MetaError::Invalid(_)));
}

#[test]
fn delete_table() {
    for setup in [
        cluster_with_creating as fn() -> (MetaState, TableId),
        active,
        scaling,
    ] {
        let (mut s, t) = setup();
        ok(&mut s, delete("orders"));
        assert_eq!(status(&s, t), TableStatus::Deleting);
        assert_eq!(s.table(t).unwrap().status_changed_at_ms, NOW + 2);
        let once = s.clone();
        let again = MetaCommand::DeleteTable {
            table_name: "orders".into(),
            now_ms: NOW + 50,
        };
        assert_eq!(ok(&mut s, again), MetaOutcome::Done);
        assert_eq!(s, once, "deleting a DELETING table changes nothing");
    }
    let mut s = cluster();
    assert_eq!(
        reject(&mut s, delete("nope")),
        MetaError::TableNotFound("nope".into())
    );
}

fn cluster_with_creating() -> (MetaState, TableId) {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    (s, t)
}

fn scaling() -> (MetaState, TableId) {
    let (mut s, t) = active();
    let cmd = MetaCommand::UpdateCapacity {
        table_name: "orders".into(),
        capacity: provisioned(20, 20),
        now_ms: NOW,
    };
    ok(&mut s, cmd);
    (s, t)
}

#[test]
fn partitions_released() {
    let (mut s, t) = deleting();
    let ids: Vec<_> = s.partitions_of(t).iter().map(|p| p.partition_id).collect();
    let cmd = MetaCommand::PartitionsReleased {
        node_id: 3,
        partition_ids: ids.clone(),
    };
    ok(&mut s, cmd.clone());
    let once = s.clone();
    ok(&mut s, cmd);
    assert_eq!(s, once, "PartitionsReleased is idempotent");
    assert!(
        ids.iter()
            .all(|id| s.partition(*id).unwrap().released_node_ids.contains(&3))
    );
}

#[test]
fn partitions_released_rejections() {
    let release = |node_id, partition_ids| MetaCommand::PartitionsReleased {
        node_id,
        partition_ids,
    };
    let (mut s, t) = active();
    let ids: Vec<_> = s.partitions_of(t).iter().map(|p| p.partition_id).collect();
    assert!(
        is_wrong_status(&reject(&mut s, release(3, ids.clone()))),
        "table not DELETING"
    );
    ok(&mut s, delete("orders"));
    assert_eq!(
        reject(&mut s, release(3, vec![ids[0], 99])),
        MetaError::UnknownPartition(99)
    );
    assert_eq!(
        reject(&mut s, release(99, vec![ids[0]])),
        MetaError::UnknownNode(99)
    );
    let e = reject(&mut s, release(4, vec![ids[1], ids[0]]));
    assert!(
        matches!(e, MetaError::InvalidPlacement(_)),
        "node 4 holds only the second"
    );
}

#[test]
fn purge_table() {
    let (mut s, t) = deleting();
    let other = create(&mut s, "keep");
    assign(&mut s, other);
    ok(&mut s, MetaCommand::PurgeTable { table_id: t });
    assert!(s.table(t).is_none());
    assert!(s.table_by_name("orders").is_none());
    assert!(s.schema(t, 1).is_none());
    assert!(s.partitions_of(t).is_empty());
    assert_eq!(s.partition_count(), 2);
    let kept: BTreeSet<PartitionId> = s.partitions().map(|p| p.partition_id).collect();
    assert!(s.nodes().all(|n| n.partition_ids.is_subset(&kept)));
    // Ids are never reused.
    assert_eq!(create(&mut s, "orders"), other + 1);
}

#[test]
fn purge_table_rejections() {
    let (mut s, t) = active();
    let purge = |table_id| MetaCommand::PurgeTable { table_id };
    assert!(is_wrong_status(&reject(&mut s, purge(t))));
    assert_eq!(
        reject(&mut s, purge(123)),
        MetaError::TableNotFound("123".into())
    );
}

#[test]
fn accessors() {
    let (mut s, t) = active();
    s.nodes.get_mut(&4).unwrap().status = NodeStatus::Suspected;
    assert_eq!(s.nodes().count(), 4);
    assert_eq!(
        s.live_nodes().count(),
        3,
        "only HEALTHY nodes take new work"
    );
    assert_eq!(s.table_count(), 1);
    assert_eq!(s.partitions().count(), 2);
    let lows: Vec<u64> = s.partitions_of(t).iter().map(|p| p.range.low).collect();
    assert!(lows.windows(2).all(|w| w[0] < w[1]));
    assert!(s.partition(999).is_none() && s.node(999).is_none() && s.table(999).is_none());
}

type Corruption = Box<dyn Fn(&mut MetaState)>;

#[test]
fn invariant_checker_catches_corruption() {
    let (s, t) = active();
    let corruptions: Vec<Corruption> = vec![
        Box::new(|s| s.table_ids_by_name.clear()),
        Box::new(move |s| s.tables.get_mut(&t).unwrap().schema_version_id = 7),
        Box::new(|s| s.partitions.get_mut(&1).unwrap().range.high -= 1),
        Box::new(|s| s.partitions.get_mut(&1).unwrap().replica_node_ids.push(1)),
        Box::new(|s| s.partitions.get_mut(&1).unwrap().table_id = 99),
        Box::new(|s| s.partitions.get_mut(&1).unwrap().epoch = 0),
        Box::new(|s| s.nodes.get_mut(&1).unwrap().partition_ids.clear()),
        Box::new(|s| s.nodes.get_mut(&1).unwrap().status = NodeStatus::Decommissioned),
        Box::new(|s| s.nodes.get_mut(&1).unwrap().remove_when_drained = true),
        Box::new(|s| s.nodes.get_mut(&1).unwrap().drain_requested = true),
        Box::new(|s| s.next_partition_id = 1),
        Box::new(|s| {
            s.partitions.get_mut(&1).unwrap().ready_node_ids.insert(4);
        }),
        Box::new(move |s| {
            let schema = s.schemas.get_mut(&t).unwrap().get_mut(&1).unwrap();
            schema.attributes.retain(|a| a.name != "sk");
        }),
    ];
    for (i, corrupt) in corruptions.iter().enumerate() {
        let mut bad = s.clone();
        corrupt(&mut bad);
        assert!(bad.check_invariants().is_err(), "corruption {i} not caught");
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "invariant broken after applying")]
fn apply_panics_on_a_corrupt_state_in_debug() {
    let (mut s, _) = active();
    s.nodes.get_mut(&1).unwrap().partition_ids.clear();
    let _ = s.apply(&MetaCommand::InitCluster {
        cluster_id: "x".into(),
    });
}
