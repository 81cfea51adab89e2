//! Unit tests of the recovery planner on small, hand-checked clusters. Every plan is
//! applied to the state it was made from, which must accept it.

use super::*;
use crate::command::{MetaError, MetaOutcome};
use crate::model::TableId;
use crate::placement::{PlacementConfig, plan_new_table};
use crate::testkit::{cluster, create_table, provisioned, ready, table_on};
use crate::validate::MAX_REPLICATION_FACTOR;

const NOW: u64 = 5_000;

fn rf(replication_factor: usize) -> RecoveryConfig {
    RecoveryConfig { replication_factor }
}

fn no_lsn(_: PartitionId, _: NodeId) -> u64 {
    0
}

fn fail(s: &mut MetaState, node_id: NodeId) {
    let incarnation = s.node(node_id).unwrap().incarnation;
    let cmd = MetaCommand::NodeFailed {
        node_id,
        incarnation,
        now_ms: NOW,
    };
    assert_eq!(s.apply(&cmd), Ok(MetaOutcome::Done));
}

fn drain(s: &mut MetaState, node_id: NodeId, remove: bool) {
    let cmd = MetaCommand::DrainNode {
        node_id,
        remove,
        now_ms: NOW,
    };
    assert_eq!(s.apply(&cmd), Ok(MetaOutcome::Done));
}

/// Applies a plan's command, which must be accepted, and checks the invariants.
fn apply(s: &mut MetaState, plan: &RecoveryPlan) {
    let cmd = plan.command.as_ref().expect("a command");
    assert_eq!(s.apply(cmd), Ok(MetaOutcome::Done), "{cmd:?}");
    s.check_invariants().unwrap();
}

fn changes(plan: &RecoveryPlan) -> &[PartitionChange] {
    match &plan.command {
        Some(MetaCommand::RepairPartitions { changes }) => changes,
        other => panic!("unexpected {other:?}"),
    }
}

fn members(s: &MetaState, id: PartitionId) -> (NodeId, Vec<NodeId>) {
    let p = s.partition(id).unwrap();
    (p.primary_node_id, p.replica_node_ids.clone())
}

#[test]
fn the_survivor_with_the_highest_durable_lsn_is_promoted() {
    let mut s = cluster(&["a", "b", "c", "a", "b"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    fail(&mut s, 1);
    let lsn = |_: PartitionId, n: NodeId| if n == 3 { 20 } else { 10 };
    let plan = plan_node_recovery(&s, 1, &rf(3), &lsn, &BTreeSet::new());
    assert_eq!(plan.promoted, vec![(ids[0], 3)]);
    assert_eq!((plan.replaced, plan.warnings.len()), (1, 0));
    let epoch = s.partition(ids[0]).unwrap().epoch;
    assert_eq!(changes(&plan)[0].expected_epoch, epoch);
    apply(&mut s, &plan);
    // Zone a lost its replica: node 4 (zone a) replaces node 1.
    assert_eq!(members(&s, ids[0]), (3, vec![2, 4]));
    assert_eq!(s.partition(ids[0]).unwrap().epoch, epoch + 1);
    assert_eq!(
        s.partition(ids[0]).unwrap().ready_node_ids,
        BTreeSet::from([2, 3])
    );
    assert!(s.node(1).unwrap().partition_ids.is_empty());
}

#[test]
fn a_replica_still_being_filled_is_never_promoted_over_a_ready_one() {
    let mut s = cluster(&["a", "b", "c", "a", "b"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    // Node 3 fails; node 4 replaces it and is still being filled (not ready).
    fail(&mut s, 3);
    let plan = plan_node_recovery(&s, 3, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plan);
    let (_, replicas) = members(&s, ids[0]);
    let filling = *replicas.iter().find(|&&n| n != 2).unwrap();
    assert!(
        !s.partition(ids[0])
            .unwrap()
            .ready_node_ids
            .contains(&filling)
    );
    // Then the primary fails. Even with a higher reported LSN, the filling replica loses.
    fail(&mut s, 1);
    let lsn = |_: PartitionId, n: NodeId| if n == filling { 99 } else { 1 };
    let plan = plan_node_recovery(&s, 1, &rf(3), &lsn, &BTreeSet::new());
    assert_eq!(plan.promoted, vec![(ids[0], 2)]);
    apply(&mut s, &plan);
}

#[test]
fn promotion_ties_go_to_fewest_primaries_then_lowest_id() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    // Node 2 already leads partition 3; partitions 1 and 2 lose primary 1.
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[1, 3, 2], &[2, 3, 4]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    // Node 3 has fewer primaries; then, counting that promotion, 2 and 3 tie at one
    // each and the lowest id wins.
    assert_eq!(plan.promoted, vec![(ids[0], 3), (ids[1], 2)]);
    apply(&mut s, &plan);
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.promoted, vec![(ids[0], 2)], "lowest id");
}

#[test]
fn replacements_spread_over_unused_zones_then_load() {
    // Node 1 (zone a) fails; the survivors are in zones b and c; 4 and 5 are in zone a,
    // 6 is in zone b.
    let mut s = cluster(&["a", "b", "c", "a", "a", "b"]);
    let sets: Vec<&[NodeId]> = vec![&[2, 1, 3]; 4];
    let ids = table_on(&mut s, "orders", &sets);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert!(plan.promoted.is_empty(), "primary 2 survives");
    apply(&mut s, &plan);
    let added: Vec<NodeId> = ids
        .iter()
        .map(|id| {
            let (_, replicas) = members(&s, *id);
            *replicas.iter().find(|n| **n != 3).unwrap()
        })
        .collect();
    assert_eq!(
        added,
        vec![4, 5, 4, 5],
        "zone a first, then the least loaded"
    );
}

#[test]
fn excluded_nodes_take_no_replica() {
    let mut s = cluster(&["a", "b", "c", "a", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::from([4]));
    apply(&mut s, &plan);
    assert_eq!(members(&s, ids[0]), (2, vec![3, 5]));
}

#[test]
fn a_partition_short_of_nodes_is_repaired_once_a_node_registers() {
    let mut s = cluster(&["a", "b", "c"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[2, 3, 1]]);
    fail(&mut s, 3);
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0].under_replicated, ids);
    assert_eq!(plans[0].replaced, 0);
    apply(&mut s, &plans[0]);
    assert_eq!(members(&s, ids[1]), (2, vec![1]));
    let p = s.partition(ids[1]).unwrap();
    // Only 2 nodes accept work: the planner can do no better, but the partition is
    // still short of its factor, and shown so.
    assert!(under_replicated(&s, p, 3));
    assert!(!under_replicated(&s, p, 2));
    assert!(plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new()).is_empty());
    // Node 4 joins: both partitions get their third replica in one command.
    let join = MetaCommand::RegisterNode {
        node_id: 4,
        endpoint: "http://n4".into(),
        peer_addr: "n4:7100".into(),
        zone: "c".into(),
        incarnation: 1,
        now_ms: NOW,
    };
    s.apply(&join).unwrap();
    assert!(under_replicated(&s, s.partition(ids[0]).unwrap(), 3));
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 1);
    assert_eq!((plans[0].replaced, changes(&plans[0]).len()), (2, 2));
    apply(&mut s, &plans[0]);
    assert_eq!(members(&s, ids[0]), (1, vec![2, 4]));
    let p = s.partition(ids[0]).unwrap();
    assert!(under_replicated(&s, p, 3), "node 4 is not ready yet");
    ready(&mut s, &ids);
    assert!(!under_replicated(&s, s.partition(ids[0]).unwrap(), 3));
}

#[test]
fn a_draining_node_is_emptied_then_decommissioned() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[3, 1, 2], &[2, 3, 4]]);
    drain(&mut s, 1, true);
    assert!(
        nodes_to_decommission(&s).is_empty(),
        "still holds partitions"
    );
    // Step one: node 4 joins both partitions of node 1, which keeps its copies.
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 1);
    assert_eq!((plans[0].replaced, plans[0].promoted.len()), (2, 0));
    assert!(plans[0].warnings.is_empty(), "{:?}", plans[0].warnings);
    apply(&mut s, &plans[0]);
    assert_eq!(members(&s, ids[0]), (1, vec![2, 3, 4]));
    assert_eq!(members(&s, ids[1]), (3, vec![1, 2, 4]));
    // Nothing more until node 4 is filled; not even half of it.
    assert!(plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new()).is_empty());
    let cmd = MetaCommand::PartitionsReady {
        node_id: 4,
        partition_ids: vec![ids[0]],
    };
    s.apply(&cmd).unwrap();
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(
        changes(&plans[0]).len(),
        1,
        "only the filled partition moves on"
    );
    // Step two, once filled: node 1 leaves; a ready survivor takes its primary (node 4,
    // which leads nothing yet).
    ready(&mut s, &ids);
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].promoted, vec![(ids[0], 4)]);
    assert_eq!(plans[0].replaced, 0);
    apply(&mut s, &plans[0]);
    assert!(s.node(1).unwrap().partition_ids.is_empty());
    assert_eq!(members(&s, ids[0]), (4, vec![2, 3]));
    assert!(
        ids.iter()
            .all(|id| s.partition(*id).unwrap().all_nodes().count() == 3)
    );
    assert_eq!(nodes_to_decommission(&s), vec![1]);
    let cmd = MetaCommand::DecommissionNode {
        node_id: 1,
        now_ms: NOW,
    };
    assert_eq!(s.apply(&cmd), Ok(MetaOutcome::Done));
    assert!(nodes_to_decommission(&s).is_empty());
}

#[test]
fn a_draining_survivor_stays_when_another_node_fails() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    drain(&mut s, 2, false);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plan);
    // Node 2 may stay until its own move, but a HEALTHY survivor is the better primary.
    assert_eq!(members(&s, ids[0]), (3, vec![2, 4]));
}

#[test]
fn a_partition_whose_every_holder_failed_waits_for_one_to_come_back() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    for n in [1, 2, 3] {
        fail(&mut s, n);
    }
    // Cut off or paused, not necessarily gone: nothing starts empty on node 4.
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert!(plans.iter().all(|p| p.command.is_none()), "{plans:?}");
    assert!(plans.iter().any(|p| p.under_replicated == ids));
    assert!(plans[0].warnings[0].contains("no live copy"), "{plans:?}");
    // Node 2 comes back (a new incarnation): it is promoted, and the set is refilled.
    let rejoin = MetaCommand::RegisterNode {
        node_id: 2,
        endpoint: "http://b".into(),
        peer_addr: "b:1".into(),
        zone: "b".into(),
        incarnation: s.node(2).unwrap().incarnation + 1,
        now_ms: NOW,
    };
    s.apply(&rejoin).unwrap();
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plans[0]);
    let (primary, replicas) = members(&s, ids[0]);
    assert_eq!(primary, 2);
    assert!(replicas.contains(&4), "{replicas:?}");
}

#[test]
fn a_partition_whose_every_holder_was_removed_starts_empty_with_a_warning() {
    let mut s = cluster(&["a", "b"]);
    let ids = table_on(&mut s, "orders", &[&[1], &[2]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(1), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.command, None, "node 1 may come back");
    // The operator removes it: its copy is gone for good.
    let remove = MetaCommand::DrainNode {
        node_id: 1,
        remove: true,
        now_ms: NOW,
    };
    s.apply(&remove).unwrap();
    let plan = plan_node_recovery(&s, 1, &rf(1), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.promoted, vec![(ids[0], 2)]);
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("lost"), "{:?}", plan.warnings);
    apply(&mut s, &plan);
    assert_eq!(members(&s, ids[0]), (2, vec![]));
    // Nowhere to go: the partition stays on the failed node and is reported.
    let mut s = cluster(&["a"]);
    let ids = table_on(&mut s, "orders", &[&[1]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(1), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.command, None);
    assert_eq!(plan.under_replicated, ids);
    assert_eq!(plan.warnings.len(), 1);
}

#[test]
fn two_failed_nodes_sharing_partitions_give_plans_that_all_apply() {
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[2, 4, 5], &[1, 5, 6]]);
    fail(&mut s, 1);
    fail(&mut s, 2);
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(
        changes(&plans[0]).len(),
        2,
        "node 1's plan also drops node 2"
    );
    assert_eq!(
        changes(&plans[1]).len(),
        1,
        "partition 1 is not planned twice"
    );
    for plan in &plans {
        apply(&mut s, plan);
    }
    for id in &ids {
        let p = s.partition(*id).unwrap();
        assert_eq!(p.all_nodes().count(), 3);
        assert!(p.all_nodes().all(|n| n > 2));
    }
    assert!(plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new()).is_empty());
}

#[test]
fn a_stale_plan_is_rejected_and_changes_nothing() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    table_on(&mut s, "orders", &[&[1, 2, 3]]);
    fail(&mut s, 1);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plan);
    let before = s.clone();
    let again = s.apply(plan.command.as_ref().unwrap());
    assert!(matches!(
        again,
        Err(crate::command::MetaError::StaleEpoch { .. })
    ));
    assert_eq!(s, before);
}

#[test]
fn deleting_tables_and_healthy_nodes_are_left_alone() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    table_on(&mut s, "orders", &[&[1, 2, 3]]);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!((plan.command.is_none(), plan.warnings.len()), (true, 1));
    let plan = plan_node_recovery(&s, 99, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!((plan.command.is_none(), plan.warnings.len()), (true, 1));
    let delete = MetaCommand::DeleteTable {
        table_name: "orders".into(),
        now_ms: NOW,
    };
    s.apply(&delete).unwrap();
    fail(&mut s, 1);
    assert!(plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new()).is_empty());
}

/// Places a table of `partitions` partitions over the cluster with the real planner.
fn place(s: &mut MetaState, name: &str, partitions: u64) -> TableId {
    let t = create_table(s, name, provisioned(1, partitions));
    let cfg = PlacementConfig {
        write_units_per_partition: 1,
        ..PlacementConfig::default()
    };
    let plan = plan_new_table(s, t, &cfg, &BTreeSet::new()).unwrap();
    let cmd = MetaCommand::AssignPartitions {
        table_id: t,
        partitions: plan.assignments,
    };
    s.apply(&cmd).unwrap();
    t
}

#[test]
fn hundreds_of_partitions_of_one_node_fit_in_one_small_command() {
    /// Most bytes one recovery command may take in the Raft log in this scenario.
    const MAX_COMMAND_BYTES: usize = 64 * 1024;
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    place(&mut s, "big", 700);
    let held = s.node(1).unwrap().partition_ids.len();
    assert!(held >= 300, "node 1 holds {held}");
    fail(&mut s, 1);
    let lsn = |p: PartitionId, n: NodeId| p * 7 + n;
    let plan = plan_node_recovery(&s, 1, &rf(3), &lsn, &BTreeSet::new());
    assert_eq!(changes(&plan).len(), held);
    assert_eq!(plan.replaced, held);
    let bytes = postcard::to_stdvec(plan.command.as_ref().unwrap())
        .unwrap()
        .len();
    println!("{held} partition changes: {bytes} bytes in postcard");
    assert!(bytes < MAX_COMMAND_BYTES, "{bytes} bytes");
    apply(&mut s, &plan);
    assert!(s.node(1).unwrap().partition_ids.is_empty());
    // Every partition had one replica per zone: the zone-a replacement is always node 4.
    assert_eq!(s.node(4).unwrap().partition_ids.len(), 700);
    let loads: Vec<usize> = (2..=6)
        .map(|n| s.node(n).unwrap().partition_ids.len())
        .collect();
    assert_eq!(loads.iter().sum::<usize>(), 700 * 3);
    assert!(plan_repairs(&s, &rf(3), &lsn, &BTreeSet::new()).is_empty());
}

#[test]
fn plans_are_deterministic() {
    let mut s = cluster(&["a", "b", "c", "a", "b", "c", "a"]);
    place(&mut s, "one", 40);
    place(&mut s, "two", 25);
    let all: Vec<PartitionId> = s.partitions().map(|p| p.partition_id).collect();
    ready(&mut s, &all);
    fail(&mut s, 3);
    drain(&mut s, 5, false);
    let a = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    let b = plan_repairs(&s.clone(), &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    // Node 3's partitions move in the first pass (keeping node 5 where it is a member);
    // node 5's get a replacement in the first pass (those not shared with node 3) or
    // the second, and leave it once the replacement is filled.
    let mut passes = 0;
    loop {
        let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
        if plans.is_empty() {
            break;
        }
        plans.iter().for_each(|plan| apply(&mut s, plan));
        ready(&mut s, &all);
        passes += 1;
        assert!(passes <= 3, "{passes} passes");
    }
    assert!(s.node(3).unwrap().partition_ids.is_empty());
    assert!(s.node(5).unwrap().partition_ids.is_empty());
}

#[test]
fn a_drain_keeps_the_copy_when_no_node_can_take_a_replica() {
    let mut s = cluster(&["a", "b", "c"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[2, 3, 1]]);
    drain(&mut s, 1, true);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.command, None, "the copies on node 1 are not dropped");
    assert_eq!(plan.drain_blocked, ids);
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("blocked"), "{:?}", plan.warnings);
    // The pass reports it too, without a command, and node 1 is not decommissioned.
    let plans = plan_repairs(&s, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plans.len(), 1);
    assert_eq!(
        (plans[0].command.is_none(), &plans[0].drain_blocked),
        (true, &ids)
    );
    assert!(nodes_to_decommission(&s).is_empty());
    // A node registers: the drain goes on.
    let join = MetaCommand::RegisterNode {
        node_id: 4,
        endpoint: "http://n4".into(),
        peer_addr: "n4:7100".into(),
        zone: "a".into(),
        incarnation: 1,
        now_ms: NOW,
    };
    s.apply(&join).unwrap();
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert!(plan.drain_blocked.is_empty());
    assert_eq!(plan.replaced, 2);
    apply(&mut s, &plan);
    // Excluded nodes take no replica either: blocked again for what is left.
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    drain(&mut s, 1, false);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::from([4]));
    assert_eq!((plan.command, plan.drain_blocked), (None, ids));
}

#[test]
fn a_drain_with_a_failed_member_drops_it_at_once_and_keeps_the_draining_copy() {
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    drain(&mut s, 2, false);
    fail(&mut s, 1);
    // Node 2's plan: node 1 (FAILED) leaves, node 2 stays, two replacements join.
    let lsn = |_: PartitionId, n: NodeId| if n == 3 { 5 } else { 9 };
    let plan = plan_node_recovery(&s, 2, &rf(3), &lsn, &BTreeSet::new());
    // Node 2 has the most data but is leaving; both are ready: LSN first.
    assert_eq!(plan.promoted, vec![(ids[0], 2)]);
    assert_eq!(plan.replaced, 2);
    apply(&mut s, &plan);
    let (primary, replicas) = members(&s, ids[0]);
    assert_eq!((primary, replicas.len()), (2, 3));
    assert!(!replicas.contains(&1) && replicas.contains(&3));
    // Filled: node 2 leaves and a ready survivor leads.
    ready(&mut s, &ids);
    let plan = plan_node_recovery(&s, 2, &rf(3), &lsn, &BTreeSet::new());
    assert_eq!(plan.promoted.len(), 1);
    apply(&mut s, &plan);
    assert!(s.node(2).unwrap().partition_ids.is_empty());
    assert_eq!(s.partition(ids[0]).unwrap().all_nodes().count(), 3);
}

#[test]
fn a_drain_without_room_for_an_extra_member_moves_in_one_step() {
    let zones = ["a"; MAX_REPLICATION_FACTOR + 1];
    let mut s = cluster(&zones);
    let full: Vec<NodeId> = (1..=MAX_REPLICATION_FACTOR as NodeId).collect();
    let ids = table_on(&mut s, "orders", &[&full]);
    drain(&mut s, 1, false);
    let plan = plan_node_recovery(
        &s,
        1,
        &rf(MAX_REPLICATION_FACTOR),
        &no_lsn,
        &BTreeSet::new(),
    );
    assert_eq!(plan.replaced, 1);
    apply(&mut s, &plan);
    let p = s.partition(ids[0]).unwrap();
    assert_eq!(p.all_nodes().count(), MAX_REPLICATION_FACTOR);
    assert!(!p.all_nodes().any(|n| n == 1));
}

#[test]
fn a_drain_waits_for_a_member_still_being_filled() {
    let mut s = cluster(&["a", "b", "c", "a", "b"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    // Node 3 fails; node 4 replaces it and is not filled yet.
    fail(&mut s, 3);
    let plan = plan_node_recovery(&s, 3, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plan);
    drain(&mut s, 1, false);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plan, RecoveryPlan::default(), "no second copy in flight");
    ready(&mut s, &ids);
    let plan = plan_node_recovery(&s, 1, &rf(3), &no_lsn, &BTreeSet::new());
    assert_eq!(plan.replaced, 1);
}

#[test]
fn under_replicated_counts_healthy_ready_members_against_the_full_factor() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[1, 2, 3, 4]]);
    let part = |s: &MetaState, i: usize| s.partition(ids[i]).unwrap().clone();
    assert!(!under_replicated(&s, &part(&s, 0), 3));
    assert!(
        under_replicated(&s, &part(&s, 0), 4),
        "3 copies of 4 wanted"
    );
    // A draining copy is on its way out: it does not count.
    drain(&mut s, 1, false);
    assert!(under_replicated(&s, &part(&s, 0), 3));
    assert!(
        !under_replicated(&s, &part(&s, 1), 3),
        "3 HEALTHY ready copies remain"
    );
    // A FAILED member needs attention even above the factor.
    fail(&mut s, 4);
    assert!(under_replicated(&s, &part(&s, 1), 2));
}

#[test]
fn a_copy_filled_at_an_older_epoch_is_not_reported_ready() {
    let mut s = cluster(&["a", "b", "c", "a"]);
    let ids = table_on(&mut s, "orders", &[&[1, 2, 3]]);
    fail(&mut s, 3);
    let plan = plan_node_recovery(&s, 3, &rf(3), &no_lsn, &BTreeSet::new());
    apply(&mut s, &plan);
    let (_, replicas) = members(&s, ids[0]);
    let filling = *replicas.iter().find(|&&n| n != 2).unwrap();
    let epoch = s.partition(ids[0]).unwrap().epoch;
    let report = |at: u64| MetaCommand::PartitionsReadyAt {
        node_id: filling,
        partitions: vec![(ids[0], at)],
    };
    // Filled at an epoch the partition has left: it may lack writes since.
    let before = s.clone();
    assert!(matches!(
        s.apply(&report(epoch - 1)),
        Err(MetaError::StaleEpoch { .. })
    ));
    assert_eq!(s, before, "a rejected report changes nothing");
    assert_eq!(s.apply(&report(epoch)), Ok(MetaOutcome::Done));
    assert!(
        s.partition(ids[0])
            .unwrap()
            .ready_node_ids
            .contains(&filling)
    );
}
