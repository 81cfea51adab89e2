//! Unit tests of the node lifecycle and recovery commands: NodeFailed, RepairPartitions,
//! DrainNode, DecommissionNode and the status changes of RegisterNode.

use super::*;
use crate::command::{ErrorClass, PartitionChange};
use crate::validate::MAX_REPAIRS_PER_COMMAND;

fn failed(node_id: NodeId, incarnation: u64) -> MetaCommand {
    MetaCommand::NodeFailed {
        node_id,
        incarnation,
        now_ms: NOW + 100,
    }
}

fn drain(node_id: NodeId, remove: bool) -> MetaCommand {
    MetaCommand::DrainNode {
        node_id,
        remove,
        now_ms: NOW + 200,
    }
}

fn decommission(node_id: NodeId) -> MetaCommand {
    MetaCommand::DecommissionNode {
        node_id,
        now_ms: NOW + 300,
    }
}

fn repair(changes: Vec<PartitionChange>) -> MetaCommand {
    MetaCommand::RepairPartitions { changes }
}

/// A repair of one partition, planned against its current epoch.
fn repair_one(s: &MetaState, partition_id: PartitionId, nodes: &[NodeId]) -> MetaCommand {
    repair(vec![change(s, partition_id, nodes)])
}

fn change(s: &MetaState, partition_id: PartitionId, nodes: &[NodeId]) -> PartitionChange {
    PartitionChange {
        partition_id,
        expected_epoch: s.partition(partition_id).map_or(1, |p| p.epoch),
        primary_node_id: nodes[0],
        replica_node_ids: nodes[1..].to_vec(),
    }
}

fn ready(node_id: NodeId, partition_ids: &[PartitionId]) -> MetaCommand {
    MetaCommand::PartitionsReady {
        node_id,
        partition_ids: partition_ids.to_vec(),
    }
}

/// Applies a command that must be accepted without changing anything.
fn unchanged(s: &mut MetaState, cmd: MetaCommand) {
    let before = s.clone();
    assert_eq!(ok(s, cmd), MetaOutcome::Unchanged);
    assert_eq!(*s, before);
}

fn node_status(s: &MetaState, id: NodeId) -> NodeStatus {
    s.node(id).unwrap().status
}

fn is_node_wrong_status(e: &MetaError) -> bool {
    matches!(e, MetaError::NodeWrongStatus { .. })
}

/// Nodes 1..=5 (node 5 in zone b, holding nothing), "orders" ACTIVE on [1, 2, 3] and
/// [2, 3, 4].
fn five() -> (MetaState, Vec<PartitionId>) {
    let (mut s, t) = active();
    ok(&mut s, register(5, "b", 1));
    let ids = s.partitions_of(t).iter().map(|p| p.partition_id).collect();
    (s, ids)
}

#[test]
fn node_failed_applies_once_per_incarnation() {
    let (mut s, _) = active();
    let parts = s.partitions().cloned().collect::<Vec<_>>();
    assert_eq!(ok(&mut s, failed(2, 1)), MetaOutcome::Done);
    let n = s.node(2).unwrap();
    assert_eq!(
        (n.status, n.status_changed_at_ms),
        (NodeStatus::Failed, NOW + 100)
    );
    assert_eq!(
        s.partitions().cloned().collect::<Vec<_>>(),
        parts,
        "recovery is a separate command"
    );
    unchanged(&mut s, failed(2, 1));
    // The node restarts (incarnation 2): the old decision is stale.
    ok(&mut s, register(2, "b", 2));
    assert_eq!(node_status(&s, 2), NodeStatus::Healthy);
    unchanged(&mut s, failed(2, 1));
    assert_eq!(ok(&mut s, failed(2, 2)), MetaOutcome::Done);
}

#[test]
fn node_failed_on_a_draining_or_decommissioned_node() {
    let mut s = cluster();
    ok(&mut s, drain(1, true));
    ok(&mut s, failed(1, 1));
    let n = s.node(1).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained, n.drain_requested),
        (NodeStatus::Failed, true, true)
    );
    ok(&mut s, decommission(1));
    unchanged(&mut s, failed(1, 1));
}

#[test]
fn node_failed_remembers_a_drain_from_before_the_flag_existed() {
    let mut s = cluster();
    ok(&mut s, drain(2, false));
    // A snapshot written before `drain_requested` existed loads it as false.
    s.nodes.get_mut(&2).unwrap().drain_requested = false;
    ok(&mut s, failed(2, 1));
    assert!(s.node(2).unwrap().drain_requested);
    ok(&mut s, register(2, "b", 2));
    assert_eq!(node_status(&s, 2), NodeStatus::Draining);
}

#[test]
fn node_failed_rejections() {
    let mut s = cluster();
    assert_eq!(reject(&mut s, failed(9, 1)), MetaError::UnknownNode(9));
    assert!(matches!(
        reject(&mut s, failed(1, 2)),
        MetaError::Invalid(_)
    ));
}

#[test]
fn repair_partitions_replaces_replica_sets() {
    let (mut s, ids) = five();
    ok(&mut s, failed(2, 1));
    let cmd = repair(vec![
        change(&s, ids[0], &[3, 1, 5]),
        change(&s, ids[1], &[4, 3, 5]),
    ]);
    assert_eq!(ok(&mut s, cmd), MetaOutcome::Done);
    let p = s.partition(ids[0]).unwrap();
    assert_eq!(
        (p.primary_node_id, p.replica_node_ids.clone(), p.epoch),
        (3, vec![1, 5], 2)
    );
    assert_eq!(
        p.ready_node_ids,
        BTreeSet::from([1, 3]),
        "survivors stay ready"
    );
    assert!(s.node(2).unwrap().partition_ids.is_empty());
    let held: Vec<_> = s.node(5).unwrap().partition_ids.iter().copied().collect();
    assert_eq!(held, ids);
    // The same command again is planned against an old epoch.
    let stale = repair(vec![PartitionChange {
        expected_epoch: 1,
        ..change(&s, ids[0], &[3, 1, 5])
    }]);
    let e = reject(&mut s, stale);
    assert_eq!(
        e,
        MetaError::StaleEpoch {
            partition_id: ids[0],
            expected: 1,
            current: 2
        }
    );
    assert_eq!((e.class(), e.code()), (ErrorClass::Conflict, "StaleEpoch"));
}

#[test]
fn repair_partitions_keeps_a_draining_member_but_adds_none() {
    let (mut s, ids) = five();
    ok(&mut s, drain(3, false));
    ok(&mut s, drain(5, false));
    ok(&mut s, failed(1, 1));
    let cmd = repair_one(&s, ids[0], &[3, 2]);
    ok(&mut s, cmd);
    assert_eq!(s.node(3).unwrap().partition_ids.len(), 2);
    let cmd = repair_one(&s, ids[0], &[3, 2, 5]);
    let e = reject(&mut s, cmd);
    assert_eq!(
        e,
        MetaError::UnknownNode(5),
        "draining node 5 is not a member"
    );
}

#[test]
fn repair_partitions_may_keep_a_draining_member_above_the_replication_factor() {
    let (mut s, ids) = five();
    ok(&mut s, drain(1, false));
    // Step one of the drain: node 5 joins, node 1 stays (4 members for a factor of 3).
    let cmd = repair_one(&s, ids[0], &[1, 2, 3, 5]);
    ok(&mut s, cmd);
    let p = s.partition(ids[0]).unwrap();
    assert_eq!(p.all_nodes().count(), 4);
    assert_eq!(p.ready_node_ids, BTreeSet::from([1, 2, 3]));
    // Step two, once node 5 is ready: node 1 leaves, a ready survivor leads.
    ok(&mut s, ready(5, &[ids[0]]));
    let cmd = repair_one(&s, ids[0], &[2, 3, 5]);
    ok(&mut s, cmd);
    assert!(s.node(1).unwrap().partition_ids.is_empty());
}

#[test]
fn repair_partitions_promotes_only_a_ready_member_while_one_survives() {
    let (mut s, ids) = five();
    ok(&mut s, failed(1, 1));
    // Node 5 joins and is not filled yet.
    let cmd = repair_one(&s, ids[0], &[2, 3, 5]);
    ok(&mut s, cmd);
    ok(&mut s, failed(2, 1));
    // Node 3 is ready and stays: neither the unfilled node 5 nor a newcomer may lead.
    for nodes in [&[5, 3][..], &[4, 3, 5][..]] {
        let cmd = repair_one(&s, ids[0], nodes);
        let e = reject(&mut s, cmd);
        match &e {
            MetaError::InvalidPlacement(msg) => {
                assert!(msg.contains("may not become primary"), "{msg}");
                assert!(msg.contains("[3]"), "names the ready survivors: {msg}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (e.class(), e.code()),
            (ErrorClass::Conflict, "InvalidPlacement")
        );
    }
    let cmd = repair_one(&s, ids[0], &[3, 5, 4]);
    ok(&mut s, cmd);
    // An unchanged primary is no promotion, ready or not.
    let cmd = repair_one(&s, ids[0], &[3, 5]);
    ok(&mut s, cmd);
}

#[test]
fn repair_partitions_lets_any_member_lead_without_a_ready_survivor() {
    let (mut s, ids) = five();
    // Every copy lost: an empty newcomer starts the partition.
    for n in [1, 2, 3] {
        ok(&mut s, failed(n, 1));
    }
    let cmd = repair_one(&s, ids[0], &[5, 4]);
    ok(&mut s, cmd);
    // Neither member is ready yet: either may lead.
    let cmd = repair_one(&s, ids[0], &[4, 5]);
    ok(&mut s, cmd);
    assert_eq!(s.partition(ids[0]).unwrap().primary_node_id, 4);
}

#[test]
fn repair_partitions_command_rejections() {
    let (mut s, ids) = five();
    let e = reject(&mut s, repair(vec![]));
    assert!(matches!(e, MetaError::Invalid(_)));
    let too_many = vec![change(&s, ids[0], &[1, 2, 3]); MAX_REPAIRS_PER_COMMAND + 1];
    assert!(matches!(
        reject(&mut s, repair(too_many)),
        MetaError::Invalid(_)
    ));
    let twice = vec![
        change(&s, ids[1], &[2, 3, 4]),
        change(&s, ids[1], &[2, 3, 5]),
    ];
    assert!(matches!(
        reject(&mut s, repair(twice)),
        MetaError::Invalid(_)
    ));
    // One bad change rejects the whole command: the good first one is not applied.
    let unknown = vec![change(&s, ids[0], &[1, 2, 5]), change(&s, 99, &[1])];
    assert_eq!(
        reject(&mut s, repair(unknown)),
        MetaError::UnknownPartition(99)
    );
    ok(&mut s, delete("orders"));
    let cmd = repair_one(&s, ids[0], &[1, 2, 5]);
    let e = reject(&mut s, cmd);
    assert!(is_wrong_status(&e), "DELETING tables are not repaired");
}

#[test]
fn repair_partitions_replica_set_rejections() {
    let (mut s, ids) = five();
    ok(&mut s, failed(4, 1));
    for (nodes, want) in [
        (&[1, 2, 1][..], None),
        (&[1, 2, 3, 5, 6, 7, 8, 9][..], None),
        (&[1, 2, 77][..], Some(77)),
        (&[1, 2, 4][..], Some(4)),
    ] {
        let cmd = repair_one(&s, ids[0], nodes);
        let e = reject(&mut s, cmd);
        match want {
            Some(node) => assert_eq!(e, MetaError::UnknownNode(node)),
            None => assert!(matches!(e, MetaError::InvalidPlacement(_)), "{e:?}"),
        }
    }
    // A FAILED member may not stay either.
    let cmd = repair_one(&s, ids[1], &[2, 3, 4]);
    let e = reject(&mut s, cmd);
    assert_eq!(e, MetaError::UnknownNode(4));
}

#[test]
fn drain_node() {
    let mut s = cluster();
    assert_eq!(ok(&mut s, drain(1, false)), MetaOutcome::Done);
    let n = s.node(1).unwrap();
    assert_eq!(
        (
            n.status,
            n.remove_when_drained,
            n.drain_requested,
            n.status_changed_at_ms
        ),
        (NodeStatus::Draining, false, true, NOW + 200)
    );
    assert_eq!(s.live_nodes().count(), 3);
    unchanged(&mut s, drain(1, false));
    let mut later = drain(1, true);
    if let MetaCommand::DrainNode { now_ms, .. } = &mut later {
        *now_ms = NOW + 999;
    }
    assert_eq!(ok(&mut s, later), MetaOutcome::Done);
    let n = s.node(1).unwrap();
    assert_eq!(
        (n.remove_when_drained, n.status_changed_at_ms),
        (true, NOW + 200)
    );
    unchanged(&mut s, drain(1, false));
    unchanged(&mut s, drain(1, true));
}

#[test]
fn drain_node_rejections() {
    let mut s = cluster();
    assert_eq!(reject(&mut s, drain(9, true)), MetaError::UnknownNode(9));
    ok(&mut s, failed(2, 1));
    // A FAILED node holds nothing reachable to drain: only its removal is accepted.
    let e = reject(&mut s, drain(2, false));
    assert!(is_node_wrong_status(&e), "{e:?}");
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Conflict, "NodeWrongStatus")
    );
    ok(&mut s, decommission(2));
    for remove in [false, true] {
        assert!(is_node_wrong_status(&reject(&mut s, drain(2, remove))));
    }
}

#[test]
fn removing_a_failed_node_marks_it_and_keeps_it_failed() {
    let (mut s, ids) = five();
    ok(&mut s, failed(2, 1));
    assert_eq!(ok(&mut s, drain(2, true)), MetaOutcome::Done);
    let n = s.node(2).unwrap();
    assert_eq!(
        (
            n.status,
            n.remove_when_drained,
            n.drain_requested,
            n.status_changed_at_ms
        ),
        (NodeStatus::Failed, true, true, NOW + 100)
    );
    unchanged(&mut s, drain(2, true));
    assert!(is_node_wrong_status(&reject(&mut s, drain(2, false))));
    // Its partitions move off; then it can be decommissioned.
    assert!(matches!(
        reject(&mut s, decommission(2)),
        MetaError::InvalidPlacement(_)
    ));
    let cmd = repair(vec![
        change(&s, ids[0], &[1, 3, 5]),
        change(&s, ids[1], &[3, 4, 5]),
    ]);
    ok(&mut s, cmd);
    assert_eq!(crate::recovery::nodes_to_decommission(&s), vec![2]);
    ok(&mut s, decommission(2));
    let n = s.node(2).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained, n.drain_requested),
        (NodeStatus::Decommissioned, false, false)
    );
}

#[test]
fn decommission_node() {
    let mut s = cluster();
    ok(&mut s, drain(1, true));
    assert_eq!(ok(&mut s, decommission(1)), MetaOutcome::Done);
    let n = s.node(1).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained, n.status_changed_at_ms),
        (NodeStatus::Decommissioned, false, NOW + 300)
    );
    unchanged(&mut s, decommission(1));
    ok(&mut s, failed(2, 1));
    assert_eq!(ok(&mut s, decommission(2)), MetaOutcome::Done);
}

#[test]
fn decommission_node_rejections() {
    let (mut s, ids) = five();
    assert_eq!(reject(&mut s, decommission(9)), MetaError::UnknownNode(9));
    assert!(is_node_wrong_status(&reject(&mut s, decommission(1))));
    ok(&mut s, drain(1, true));
    let e = reject(&mut s, decommission(1));
    assert!(
        matches!(e, MetaError::InvalidPlacement(_)),
        "still holds partitions"
    );
    let cmd = repair_one(&s, ids[0], &[2, 3, 5]);
    ok(&mut s, cmd);
    ok(&mut s, decommission(1));
}

#[test]
fn new_placements_use_only_nodes_that_take_new_work() {
    let mut s = cluster();
    let t = create(&mut s, "orders");
    ok(&mut s, drain(4, false));
    let e = reject(
        &mut s,
        MetaCommand::AssignPartitions {
            table_id: t,
            partitions: two_parts(),
        },
    );
    assert_eq!(e, MetaError::UnknownNode(4));
}

#[test]
fn registration_revives_failed_nodes_only_with_a_new_incarnation_and_never_decommissioned_ones() {
    let mut s = cluster();
    ok(&mut s, failed(2, 1));
    // A retried registration of the incarnation judged dead does not revive it.
    ok(&mut s, register(2, "b", 1));
    assert_eq!(node_status(&s, 2), NodeStatus::Failed);
    let mut restart = register(2, "b", 2);
    if let MetaCommand::RegisterNode { now_ms, .. } = &mut restart {
        *now_ms = NOW + 500;
    }
    ok(&mut s, restart);
    let n = s.node(2).unwrap();
    assert_eq!(
        (n.status, n.status_changed_at_ms),
        (NodeStatus::Healthy, NOW + 500)
    );
    assert_eq!(s.live_nodes().count(), 4);
    ok(&mut s, failed(3, 1));
    ok(&mut s, decommission(3));
    ok(&mut s, register(3, "c", 1));
    assert_eq!(node_status(&s, 3), NodeStatus::Decommissioned);
    // An operator removed it: a restart (new incarnation) does not re-add it.
    let changed_at = s.node(3).unwrap().status_changed_at_ms;
    ok(&mut s, register(3, "c", 2));
    let n = s.node(3).unwrap();
    assert_eq!(
        (n.status, n.incarnation, n.status_changed_at_ms),
        (NodeStatus::Decommissioned, 2, changed_at)
    );
    assert_eq!(s.live_nodes().count(), 3);
}

#[test]
fn registration_does_not_cancel_a_drain() {
    let mut s = cluster();
    ok(&mut s, drain(1, false));
    ok(&mut s, register(1, "a", 2));
    let n = s.node(1).unwrap();
    assert_eq!(
        (n.status, n.status_changed_at_ms),
        (NodeStatus::Draining, NOW + 200)
    );
    // Failed while draining for removal: back as DRAINING, the removal still stands.
    ok(&mut s, drain(2, true));
    ok(&mut s, failed(2, 1));
    ok(&mut s, register(2, "b", 2));
    let n = s.node(2).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained),
        (NodeStatus::Draining, true)
    );
    // Failed while draining, not for removal: back as DRAINING too, not HEALTHY.
    ok(&mut s, drain(3, false));
    ok(&mut s, failed(3, 1));
    let n = s.node(3).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained, n.drain_requested),
        (NodeStatus::Failed, false, true)
    );
    ok(&mut s, register(3, "c", 2));
    assert_eq!(node_status(&s, 3), NodeStatus::Draining);
    // Removed while FAILED, then restarted: drained and removed as asked.
    ok(&mut s, failed(4, 1));
    ok(&mut s, drain(4, true));
    ok(&mut s, register(4, "a", 2));
    let n = s.node(4).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained),
        (NodeStatus::Draining, true)
    );
}

fn cancel_drain(node_id: NodeId) -> MetaCommand {
    MetaCommand::CancelDrain {
        node_id,
        now_ms: NOW + 400,
    }
}

#[test]
fn cancel_drain_makes_a_draining_node_healthy_and_unmarks_a_failed_one() {
    let mut s = cluster();
    unchanged(&mut s, cancel_drain(1));
    ok(&mut s, drain(1, true));
    assert_eq!(ok(&mut s, cancel_drain(1)), MetaOutcome::Done);
    let n = s.node(1).unwrap();
    assert_eq!(
        (
            n.status,
            n.remove_when_drained,
            n.drain_requested,
            n.status_changed_at_ms
        ),
        (NodeStatus::Healthy, false, false, NOW + 400)
    );
    unchanged(&mut s, cancel_drain(1));
    // Marked for removal while FAILED: the mark goes, the node stays FAILED.
    let incarnation = s.node(2).unwrap().incarnation;
    ok(&mut s, failed(2, incarnation));
    ok(&mut s, drain(2, true));
    assert_eq!(ok(&mut s, cancel_drain(2)), MetaOutcome::Done);
    let n = s.node(2).unwrap();
    assert_eq!(
        (n.status, n.remove_when_drained, n.drain_requested),
        (NodeStatus::Failed, false, false)
    );
    unchanged(&mut s, cancel_drain(2));
    assert_eq!(reject(&mut s, cancel_drain(9)), MetaError::UnknownNode(9));
    assert!(s.check_invariants().is_ok());
}
