//! The operation drivers' decisions (`shared::drive`), on a real state: who drives an
//! operation, when it is void, how a switch commit's result ends it, and when a failed
//! step is retried or rolled back.

use shared::command::{MetaCommand, MetaError, MetaOutcome, PartitionChange};
use shared::drive::{
    Next, SwitchVerdict, next_merge, next_move, next_split, operations_to_drive,
    retry_or_roll_back, switch_verdict,
};
use shared::model::{NodeId, Operation, OperationKind, OperationStep, Partition};
use shared::placement::PlacementConfig;
use shared::state::MetaState;
use shared::validate::MAX_STEP_ATTEMPTS;

use crate::fixtures::{create, place, provisioned, ready_and_activate, register, spec, start};

/// Six nodes, one ACTIVE table of four partitions.
fn cluster() -> MetaState {
    let mut s = MetaState::new();
    for n in 1..=6 {
        s.apply(&register(n, ["a", "b", "c"][n as usize % 3], 1, 1))
            .unwrap();
    }
    let t = create(&mut s, spec("orders", provisioned(100, 3000)));
    place(&mut s, t, &PlacementConfig::default());
    ready_and_activate(&mut s, t);
    s
}

fn first(s: &MetaState) -> Partition {
    s.partitions().next().expect("placed").clone()
}

/// The cluster with a split of its first partition started: the state, the partition
/// and the operation.
fn split_started() -> (MetaState, Partition, Operation) {
    let mut s = cluster();
    let p = first(&s);
    let id = start(
        &mut s,
        p.partition_id,
        OperationKind::Split { split_point: None },
    );
    let op = s.operation(id).unwrap().clone();
    (s, p, op)
}

fn outsider(p: &Partition) -> NodeId {
    (1..=6).find(|n| !p.all_nodes().any(|m| m == *n)).unwrap()
}

#[test]
fn a_move_is_driven_by_its_primary_and_void_once_a_repair_took_its_source() {
    let mut s = cluster();
    let p = first(&s);
    let (from, to) = (p.replica_node_ids[0], outsider(&p));
    let id = start(&mut s, p.partition_id, OperationKind::Move { from, to });
    let op = s.operation(id).unwrap().clone();
    assert_eq!(operations_to_drive(&s, p.primary_node_id), vec![op.clone()]);
    assert!(operations_to_drive(&s, from).is_empty());
    assert_eq!(next_move(&s, &op, from), Next::NotMine);
    match next_move(&s, &op, p.primary_node_id) {
        Next::Go(w) => {
            assert_eq!((w.from, w.to, w.step), (from, to, OperationStep::Copying));
            assert_eq!(w.partition.epoch, p.epoch);
        }
        other => panic!("{other:?}"),
    }
    // A repair replaced the move's source: the move no longer fits.
    let keep: Vec<NodeId> = p.replica_node_ids[1..].to_vec();
    let spare = (1..=6)
        .find(|n| *n != to && !p.all_nodes().any(|m| m == *n))
        .unwrap();
    s.apply(&MetaCommand::RepairPartitions {
        changes: vec![PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: p.primary_node_id,
            replica_node_ids: [keep, vec![spare]].concat(),
        }],
    })
    .unwrap();
    let Next::Void(why) = next_move(&s, &op, p.primary_node_id) else {
        panic!("not void");
    };
    assert!(
        why.contains(&format!("node {from} no longer holds")),
        "{why}"
    );
}

#[test]
fn a_move_to_a_failed_target_is_void_and_a_switched_one_completes() {
    let mut s = cluster();
    let p = first(&s);
    let (from, to) = (p.replica_node_ids[0], outsider(&p));
    let id = start(&mut s, p.partition_id, OperationKind::Move { from, to });
    let mut op = s.operation(id).unwrap().clone();
    s.apply(&MetaCommand::NodeFailed {
        node_id: to,
        incarnation: 1,
        now_ms: 20,
    })
    .unwrap();
    let Next::Void(why) = next_move(&s, &op, p.primary_node_id) else {
        panic!("not void");
    };
    assert!(why.contains(&format!("target node {to}")), "{why}");
    op.step = OperationStep::DroppingSource;
    assert_eq!(next_move(&s, &op, p.primary_node_id), Next::Switched);
}

#[test]
fn a_split_is_staged_first_then_fenced() {
    let (s, p, mut op) = split_started();
    let Next::Go(w) = next_split(&s, &op, p.primary_node_id) else {
        panic!("no work");
    };
    assert!(w.stage_first);
    assert_eq!(w.parent.range, p.range);
    op.step = OperationStep::Fencing;
    let Next::Go(w) = next_split(&s, &op, p.primary_node_id) else {
        panic!("no work");
    };
    assert!(!w.stage_first);
    assert_eq!(next_split(&s, &op, p.replica_node_ids[0]), Next::NotMine);
    op.step = OperationStep::Switched;
    assert_eq!(next_split(&s, &op, p.primary_node_id), Next::Switched);
}

#[test]
fn a_merge_whose_sides_are_no_longer_held_alike_is_void() {
    let mut s = cluster();
    let p = first(&s);
    let split = MetaCommand::SplitPartition {
        operation_id: None,
        parent: p.partition_id,
        split_point: p.range.low + (p.range.high - p.range.low) / 2,
        expected_epoch: p.epoch,
        now_ms: 30,
    };
    let Ok(MetaOutcome::PartitionSplit { left, right }) = s.apply(&split) else {
        panic!("not split");
    };
    let id = start(&mut s, left, OperationKind::Merge { right });
    let op = s.operation(id).unwrap().clone();
    let Next::Go(w) = next_merge(&s, &op, p.primary_node_id) else {
        panic!("no work");
    };
    assert_eq!((w.right, w.range), (right, p.range));
    // A repair gave the right side another member.
    let r = s.partition(right).unwrap().clone();
    let mut replicas = r.replica_node_ids.clone();
    replicas[0] = outsider(&r);
    s.apply(&MetaCommand::RepairPartitions {
        changes: vec![PartitionChange {
            partition_id: right,
            expected_epoch: r.epoch,
            primary_node_id: r.primary_node_id,
            replica_node_ids: replicas,
        }],
    })
    .unwrap();
    assert!(matches!(
        next_merge(&s, &op, p.primary_node_id),
        Next::Void(_)
    ));
}

#[test]
fn a_switch_refused_because_the_partition_moved_on_rolls_back_and_other_refusals_retry() {
    assert_eq!(
        switch_verdict(&Ok(MetaOutcome::Done)),
        SwitchVerdict::Switched
    );
    let stale = MetaError::StaleEpoch {
        partition_id: 1,
        expected: 1,
        current: 2,
    };
    assert!(matches!(
        switch_verdict(&Err(stale)),
        SwitchVerdict::RolledBack(_)
    ));
    let other = MetaError::OperationWrongStep {
        operation_id: 9,
        step: OperationStep::Preparing,
        needed: "Fencing".into(),
    };
    assert!(matches!(
        switch_verdict(&Err(other)),
        SwitchVerdict::Failed(_)
    ));
}

#[test]
fn a_failed_step_is_retried_until_its_attempts_are_spent() {
    let (_, _, mut op) = split_started();
    op.attempts = MAX_STEP_ATTEMPTS - 1;
    assert_eq!(
        retry_or_roll_back(&op, 50),
        Some(MetaCommand::RetryOperationStep {
            operation_id: op.operation_id,
            step: OperationStep::Preparing,
            attempt: MAX_STEP_ATTEMPTS,
            now_ms: 50,
        })
    );
    op.attempts = MAX_STEP_ATTEMPTS;
    assert_eq!(retry_or_roll_back(&op, 50), None);
}
