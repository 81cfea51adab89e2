//! Unit tests of the multi-step operations: StartOperation, AdvanceOperation,
//! RetryOperationStep, FinishOperation, SplitPartition and CommitMove, their
//! idempotent repeats, the bounded history and the invariants on operations.
//!
//! `active()` gives partition 1 = [0, 2^63 - 1] on nodes 1 (primary), 2, 3 and
//! partition 2 = [2^63, MAX] on nodes 2 (primary), 3, 4; node 4 is free for moves of 1.

use super::*;
use crate::command::PartitionChange;
use crate::model::{
    Operation, OperationId, OperationKind, OperationProgress, OperationStatus, OperationStep,
    PartitionStatus,
};
use crate::validate::{
    FAILURE_REASON_MAX_LEN, MAX_FINISHED_OPERATIONS, MAX_STEP_ATTEMPTS, REQUESTED_BY_MAX_LEN,
};

/// The middle of partition 1's range.
const MID: u64 = 1 << 62;

fn split_kind(split_point: Option<u64>) -> OperationKind {
    OperationKind::Split { split_point }
}

fn move_kind(from: NodeId, to: NodeId) -> OperationKind {
    OperationKind::Move { from, to }
}

fn start_cmd(partition_id: PartitionId, kind: OperationKind) -> MetaCommand {
    MetaCommand::StartOperation {
        partition_id,
        kind,
        requested_by: "scaler".into(),
        now_ms: NOW + 10,
    }
}

fn start(s: &mut MetaState, partition_id: PartitionId, kind: OperationKind) -> OperationId {
    match ok(s, start_cmd(partition_id, kind)) {
        MetaOutcome::OperationStarted { operation_id } => operation_id,
        other => panic!("unexpected {other:?}"),
    }
}

fn progress(done_bytes: u64, total_bytes: Option<u64>) -> Option<OperationProgress> {
    Some(OperationProgress {
        done_bytes,
        total_bytes,
    })
}

fn advance(
    operation_id: OperationId,
    step: OperationStep,
    progress: Option<OperationProgress>,
) -> MetaCommand {
    MetaCommand::AdvanceOperation {
        operation_id,
        step,
        progress,
        now_ms: NOW + 20,
    }
}

fn retry(operation_id: OperationId, step: OperationStep, attempt: u32) -> MetaCommand {
    MetaCommand::RetryOperationStep {
        operation_id,
        step,
        attempt,
        now_ms: NOW + 30,
    }
}

fn finish(operation_id: OperationId, status: OperationStatus) -> MetaCommand {
    MetaCommand::FinishOperation {
        operation_id,
        status,
        now_ms: NOW + 100,
        write_pause_ms: None,
    }
}

fn failed_status(reason: &str) -> OperationStatus {
    OperationStatus::Failed {
        reason: reason.into(),
    }
}

fn split(
    operation_id: Option<OperationId>,
    parent: PartitionId,
    split_point: u64,
    expected_epoch: u64,
) -> MetaCommand {
    MetaCommand::SplitPartition {
        operation_id,
        parent,
        split_point,
        expected_epoch,
        now_ms: NOW + 50,
    }
}

fn commit(
    operation_id: OperationId,
    partition_id: PartitionId,
    from: NodeId,
    to: NodeId,
    expected_epoch: u64,
) -> MetaCommand {
    MetaCommand::CommitMove {
        operation_id,
        partition_id,
        from,
        to,
        expected_epoch,
        now_ms: NOW + 60,
    }
}

/// Applies a command that must be accepted without changing anything.
fn unchanged(s: &mut MetaState, cmd: MetaCommand) {
    let before = s.clone();
    assert_eq!(ok(s, cmd), MetaOutcome::Unchanged);
    assert_eq!(*s, before);
}

fn op(s: &MetaState, id: OperationId) -> &Operation {
    s.operation(id).expect("operation recorded")
}

fn part(s: &MetaState, id: PartitionId) -> &Partition {
    s.partition(id).expect("partition exists")
}

fn is_invalid(e: &MetaError) -> bool {
    matches!(e, MetaError::Invalid(_))
}

fn is_wrong_step(e: &MetaError) -> bool {
    matches!(e, MetaError::OperationWrongStep { .. })
}

/// A split of partition 1 (at `point` if given), advanced to FENCING.
fn split_at_fencing(s: &mut MetaState, point: Option<u64>) -> OperationId {
    let id = start(s, 1, split_kind(point));
    ok(s, advance(id, OperationStep::Fencing, None));
    id
}

/// A move of partition 1's copy on `from` to node 4, advanced to SWITCHING.
fn move_at_switching(s: &mut MetaState, from: NodeId) -> OperationId {
    let id = start(s, 1, move_kind(from, 4));
    ok(s, advance(id, OperationStep::Switching, None));
    id
}

#[test]
fn start_operation_records_and_marks_the_partition() {
    let (mut s, t) = active();
    let split_id = start(&mut s, 1, split_kind(None));
    let move_id = start(&mut s, 2, move_kind(3, 1));
    assert_eq!((split_id, move_id), (1, 2));
    let o = op(&s, split_id);
    assert_eq!((o.table_id, o.partition_id), (t, 1));
    assert_eq!(
        (o.step, &o.status, o.requested_by.as_str()),
        (
            OperationStep::Preparing,
            &OperationStatus::Running,
            "scaler"
        )
    );
    assert_eq!(
        (o.started_at_ms, o.step_started_at_ms, o.finished_at_ms),
        (NOW + 10, NOW + 10, None)
    );
    assert_eq!((o.attempts, o.progress, o.split), (0, None, None));
    assert_eq!(op(&s, move_id).step, OperationStep::Copying);
    assert_eq!(part(&s, 1).status, PartitionStatus::Splitting);
    assert_eq!(part(&s, 2).status, PartitionStatus::Migrating);
    assert_eq!(s.running_operation_of(1).unwrap().operation_id, split_id);
    assert_eq!(s.running_operation_of(2).unwrap().operation_id, move_id);
    assert_eq!(s.operations().count(), 2);
    assert_eq!(s.running_operations().count(), 2);
    assert!(s.operation(3).is_none() && s.running_operation_of(9).is_none());
    // A SCALING table takes operations too; an explicit split point inside is fine.
    let (mut s, _) = scaling();
    start(&mut s, 1, split_kind(Some(MID)));
}

#[test]
fn start_operation_rejections() {
    let (mut s, _) = active();
    let mut cmd = start_cmd(1, split_kind(None));
    if let MetaCommand::StartOperation { requested_by, .. } = &mut cmd {
        *requested_by = String::new();
    }
    assert!(is_invalid(&reject(&mut s, cmd.clone())));
    if let MetaCommand::StartOperation { requested_by, .. } = &mut cmd {
        *requested_by = "x".repeat(REQUESTED_BY_MAX_LEN + 1);
    }
    assert!(is_invalid(&reject(&mut s, cmd)));
    assert_eq!(
        reject(&mut s, start_cmd(9, split_kind(None))),
        MetaError::UnknownPartition(9)
    );
    // Split points outside the range, or leaving a child empty.
    for point in [0, 1 << 63, u64::MAX] {
        let e = reject(&mut s, start_cmd(1, split_kind(Some(point))));
        assert!(is_invalid(&e), "split point {point}");
    }
    // Moves: onto itself, from a non-member, to an unknown, busy or member node.
    assert!(is_invalid(&reject(&mut s, start_cmd(1, move_kind(2, 2)))));
    let e = reject(&mut s, start_cmd(1, move_kind(4, 1)));
    assert!(
        matches!(e, MetaError::InvalidPlacement(_)),
        "4 holds no copy"
    );
    assert_eq!(
        reject(&mut s, start_cmd(1, move_kind(1, 9))),
        MetaError::UnknownNode(9)
    );
    let e = reject(&mut s, start_cmd(1, move_kind(1, 2)));
    assert!(
        matches!(e, MetaError::InvalidPlacement(_)),
        "2 holds a copy"
    );
    let drain = MetaCommand::DrainNode {
        node_id: 4,
        remove: false,
        now_ms: NOW,
    };
    let mut drained = s.clone();
    ok(&mut drained, drain);
    let e = reject(&mut drained, start_cmd(1, move_kind(1, 4)));
    assert!(matches!(e, MetaError::NodeWrongStatus { node_id: 4, .. }));
    // Two operations never run on one partition.
    let running = start(&mut s, 1, split_kind(None));
    for kind in [split_kind(None), move_kind(1, 4)] {
        assert_eq!(
            reject(&mut s, start_cmd(1, kind)),
            MetaError::OperationRunning {
                partition_id: 1,
                operation_id: running
            }
        );
    }
    // Only ACTIVE or SCALING tables.
    let (mut s, _) = deleting();
    assert!(is_wrong_status(&reject(
        &mut s,
        start_cmd(1, split_kind(None))
    )));
    let (mut s, t) = cluster_with_creating();
    assign(&mut s, t);
    assert!(is_wrong_status(&reject(
        &mut s,
        start_cmd(1, split_kind(None))
    )));
}

#[test]
fn advance_operation_moves_forward_only() {
    let (mut s, _) = active();
    let id = start(&mut s, 1, move_kind(1, 4));
    ok(
        &mut s,
        advance(id, OperationStep::Copying, progress(10, Some(100))),
    );
    assert_eq!(op(&s, id).progress, progress(10, Some(100)));
    ok(
        &mut s,
        advance(id, OperationStep::Copying, progress(50, Some(100))),
    );
    // Repeats and late reports of an earlier position change nothing.
    unchanged(
        &mut s,
        advance(id, OperationStep::Copying, progress(50, Some(100))),
    );
    unchanged(
        &mut s,
        advance(id, OperationStep::Copying, progress(20, Some(100))),
    );
    unchanged(&mut s, advance(id, OperationStep::Copying, None));
    ok(&mut s, retry(id, OperationStep::Copying, 1));
    // Steps may be skipped (a small partition needs no catching up).
    ok(&mut s, advance(id, OperationStep::Switching, None));
    let o = op(&s, id);
    assert_eq!(
        (o.step, o.attempts, o.progress),
        (OperationStep::Switching, 0, None)
    );
    // The retry's proposer had a later clock: the new step cannot start before it.
    assert_eq!(o.step_started_at_ms, NOW + 30);
    unchanged(
        &mut s,
        advance(id, OperationStep::CatchingUp, progress(1, None)),
    );
    unchanged(&mut s, advance(id, OperationStep::Switching, None));
    // A proposer with a late clock never moves a step's start back.
    let late = MetaCommand::AdvanceOperation {
        operation_id: id,
        step: OperationStep::Switching,
        progress: progress(1, None),
        now_ms: 5,
    };
    ok(&mut s, late);
    assert_eq!(op(&s, id).step_started_at_ms, NOW + 30);
    // Finished: every advance is stale.
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    unchanged(
        &mut s,
        advance(id, OperationStep::Switching, progress(9, None)),
    );
}

#[test]
fn advance_operation_rejections() {
    let (mut s, _) = active();
    let id = start(&mut s, 1, move_kind(1, 4));
    assert_eq!(
        reject(&mut s, advance(99, OperationStep::Copying, None)),
        MetaError::UnknownOperation(99)
    );
    assert_eq!(
        reject(&mut s, advance(0, OperationStep::Copying, None)),
        MetaError::UnknownOperation(0)
    );
    // A step of the other kind; the switched step, which only the commit enters.
    for step in [OperationStep::Fencing, OperationStep::DroppingSource] {
        assert!(
            is_invalid(&reject(&mut s, advance(id, step, None))),
            "{step:?}"
        );
    }
    let e = reject(
        &mut s,
        advance(id, OperationStep::Copying, progress(101, Some(100))),
    );
    assert!(is_invalid(&e), "more done than the total");
    let split_id = start(&mut s, 2, split_kind(None));
    let e = reject(&mut s, advance(split_id, OperationStep::Switched, None));
    assert!(is_invalid(&e));
}

#[test]
fn retry_operation_step_counts_attempts_once() {
    let (mut s, _) = active();
    let id = start(&mut s, 1, move_kind(1, 4));
    ok(
        &mut s,
        advance(id, OperationStep::Copying, progress(10, None)),
    );
    ok(&mut s, retry(id, OperationStep::Copying, 1));
    let o = op(&s, id);
    assert_eq!(
        (o.attempts, o.progress, o.step_started_at_ms),
        (1, None, NOW + 30)
    );
    unchanged(&mut s, retry(id, OperationStep::Copying, 1));
    ok(&mut s, retry(id, OperationStep::Copying, 2));
    let e = reject(&mut s, retry(id, OperationStep::Copying, 4));
    assert!(is_invalid(&e), "attempt 3 was skipped");
    let e = reject(&mut s, retry(id, OperationStep::Switching, 1));
    assert!(is_wrong_step(&e), "not at that step yet");
    assert!(is_invalid(&reject(
        &mut s,
        retry(id, OperationStep::Fencing, 1)
    )));
    assert_eq!(
        reject(&mut s, retry(77, OperationStep::Copying, 1)),
        MetaError::UnknownOperation(77)
    );
    // A retry of a step the operation already left is stale.
    ok(&mut s, advance(id, OperationStep::CatchingUp, None));
    unchanged(&mut s, retry(id, OperationStep::Copying, 3));
    // The hard stop on retries.
    for attempt in 1..=MAX_STEP_ATTEMPTS {
        ok(&mut s, retry(id, OperationStep::CatchingUp, attempt));
    }
    let e = reject(
        &mut s,
        retry(id, OperationStep::CatchingUp, MAX_STEP_ATTEMPTS + 1),
    );
    assert!(is_invalid(&e));
    ok(
        &mut s,
        finish(id, failed_status("catching up never converged")),
    );
    unchanged(
        &mut s,
        retry(id, OperationStep::CatchingUp, MAX_STEP_ATTEMPTS + 1),
    );
}

#[test]
fn finish_operation_frees_the_partition_once() {
    let (mut s, _) = active();
    let id = start(&mut s, 1, move_kind(1, 4));
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    let o = op(&s, id);
    assert_eq!(
        (&o.status, o.finished_at_ms),
        (&OperationStatus::RolledBack, Some(NOW + 100))
    );
    assert_eq!(part(&s, 1).status, PartitionStatus::Healthy);
    assert!(s.running_operation_of(1).is_none());
    unchanged(&mut s, finish(id, OperationStatus::RolledBack));
    assert_eq!(
        reject(&mut s, finish(id, OperationStatus::Completed)),
        MetaError::OperationFinished {
            operation_id: id,
            status: OperationStatus::RolledBack
        }
    );
    // Failed at any step; a repeat worded anew is still a repeat.
    let id = start(&mut s, 1, split_kind(None));
    ok(&mut s, finish(id, failed_status("split point not found")));
    unchanged(&mut s, finish(id, failed_status("timed out")));
    // A new operation may start once the last one finished.
    start(&mut s, 1, move_kind(1, 4));
}

#[test]
fn finish_operation_rejections() {
    let (mut s, _) = active();
    let id = start(&mut s, 1, move_kind(1, 4));
    assert!(is_invalid(&reject(
        &mut s,
        finish(id, OperationStatus::Running)
    )));
    let long = failed_status(&"r".repeat(FAILURE_REASON_MAX_LEN + 1));
    assert!(is_invalid(&reject(&mut s, finish(id, long))));
    assert_eq!(
        reject(&mut s, finish(5, OperationStatus::RolledBack)),
        MetaError::UnknownOperation(5)
    );
    // Completed only once the routing switched, rolled back only before.
    let e = reject(&mut s, finish(id, OperationStatus::Completed));
    assert!(is_wrong_step(&e));
    ok(&mut s, advance(id, OperationStep::Switching, None));
    ok(&mut s, commit(id, 1, 1, 4, 1));
    let e = reject(&mut s, finish(id, OperationStatus::RolledBack));
    assert!(is_wrong_step(&e));
    let split_id = start(&mut s, 2, split_kind(None));
    let e = reject(&mut s, finish(split_id, OperationStatus::Completed));
    assert!(is_wrong_step(&e), "a split completes by SplitPartition");
}

#[test]
fn bare_split_replaces_the_parent_by_two_children() {
    let (mut s, t) = active();
    let parent = part(&s, 1).clone();
    let outcome = ok(&mut s, split(None, 1, MID, 1));
    assert_eq!(outcome, MetaOutcome::PartitionSplit { left: 3, right: 4 });
    assert!(s.partition(1).is_none());
    let (left, right) = (part(&s, 3), part(&s, 4));
    assert_eq!((left.range.low, left.range.high), (0, MID - 1));
    assert_eq!(
        (right.range.low, right.range.high),
        (MID, parent.range.high)
    );
    for child in [left, right] {
        assert_eq!(child.table_id, t);
        assert_eq!(child.primary_node_id, parent.primary_node_id);
        assert_eq!(child.replica_node_ids, parent.replica_node_ids);
        assert_eq!(child.ready_node_ids, parent.ready_node_ids);
        assert_eq!(child.epoch, parent.epoch + 1);
        assert_eq!(child.status, PartitionStatus::Healthy);
    }
    let lows: Vec<u64> = s.partitions_of(t).iter().map(|p| p.range.low).collect();
    assert_eq!(lows, [0, MID, 1 << 63]);
    for n in 1..=3 {
        assert!(
            s.node(n)
                .unwrap()
                .partition_ids
                .is_superset(&BTreeSet::from([3, 4]))
        );
        assert!(!s.node(n).unwrap().partition_ids.contains(&1));
    }
    // A retry of a bare split finds the parent gone.
    assert_eq!(
        reject(&mut s, split(None, 1, MID, 1)),
        MetaError::UnknownPartition(1)
    );
    // Ids are never reused; a child splits again at its edges.
    assert_eq!(
        ok(&mut s, split(None, 4, parent.range.high, 2)),
        MetaOutcome::PartitionSplit { left: 5, right: 6 }
    );
    assert_eq!(part(&s, 6).range.low, part(&s, 6).range.high);
    ok(&mut s, split(None, 3, 1, 2));
    assert_eq!(part(&s, 7).range, KeyRange { low: 0, high: 0 });
    let e = reject(&mut s, split(None, 7, 0, 3));
    assert!(is_invalid(&e), "a one-key partition cannot split");
}

/// Reports one node ready for one partition.
fn ready(node_id: NodeId, partition_id: PartitionId) -> MetaCommand {
    MetaCommand::PartitionsReady {
        node_id,
        partition_ids: vec![partition_id],
    }
}

#[test]
fn split_with_an_operation_completes_it() {
    let (mut s, _) = active();
    let id = split_at_fencing(&mut s, None);
    let cmd = split(Some(id), 1, MID, 1);
    assert_eq!(
        ok(&mut s, cmd.clone()),
        MetaOutcome::PartitionSplit { left: 3, right: 4 }
    );
    let o = op(&s, id);
    assert_eq!(
        (o.step, &o.status, o.finished_at_ms),
        (
            OperationStep::Switched,
            &OperationStatus::Completed,
            Some(NOW + 50)
        )
    );
    let result = o.split.unwrap();
    assert_eq!((result.split_point, result.left, result.right), (MID, 3, 4));
    assert!(s.running_operation_of(3).is_none() && s.running_operation_of(4).is_none());
    // Retries of the split and of a finish are harmless; a rollback is a lie.
    unchanged(&mut s, cmd);
    unchanged(&mut s, finish(id, OperationStatus::Completed));
    let e = reject(&mut s, finish(id, OperationStatus::RolledBack));
    assert!(matches!(e, MetaError::OperationFinished { .. }));
    // The requested split point is the one used.
    let id = start(&mut s, 3, split_kind(Some(7)));
    ok(&mut s, advance(id, OperationStep::Fencing, None));
    assert!(is_invalid(&reject(&mut s, split(Some(id), 3, 8, 2))));
    ok(&mut s, split(Some(id), 3, 7, 2));
}

#[test]
fn split_partition_rejections() {
    let (mut s, _) = active();
    assert_eq!(
        reject(&mut s, split(None, 9, MID, 1)),
        MetaError::UnknownPartition(9)
    );
    for point in [0, 1 << 63] {
        assert!(is_invalid(&reject(&mut s, split(None, 1, point, 1))));
    }
    assert_eq!(
        reject(&mut s, split(None, 1, MID, 2)),
        MetaError::StaleEpoch {
            partition_id: 1,
            expected: 2,
            current: 1
        }
    );
    // The operation named: unknown, not at FENCING, of another partition or kind.
    assert_eq!(
        reject(&mut s, split(Some(1), 1, MID, 1)),
        MetaError::UnknownOperation(1)
    );
    let id = start(&mut s, 1, split_kind(None));
    assert!(is_wrong_step(&reject(&mut s, split(Some(id), 1, MID, 1))));
    // A bare split, or one of another operation, while an operation runs.
    ok(&mut s, advance(id, OperationStep::Fencing, None));
    let running = MetaError::OperationRunning {
        partition_id: 1,
        operation_id: id,
    };
    assert_eq!(reject(&mut s, split(None, 1, MID, 1)), running);
    let move_id = start(&mut s, 2, move_kind(4, 1));
    let inside_2 = (1 << 63) + 5;
    assert!(is_invalid(&reject(
        &mut s,
        split(Some(move_id), 2, inside_2, 1)
    )));
    assert!(is_invalid(&reject(&mut s, split(Some(id), 2, inside_2, 1))));
    // Rolled back: the split may not happen any more.
    let (mut s, _) = active();
    let id = split_at_fencing(&mut s, None);
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    let e = reject(&mut s, split(Some(id), 1, MID, 1));
    assert!(matches!(e, MetaError::OperationFinished { .. }));
    // Only ACTIVE or SCALING tables.
    let (mut s, _) = deleting();
    assert!(is_wrong_status(&reject(&mut s, split(None, 1, MID, 1))));
    let (mut s, t) = cluster_with_creating();
    assign(&mut s, t);
    assert!(is_wrong_status(&reject(&mut s, split(None, 1, MID, 1))));
}

#[test]
fn commit_move_of_a_replica_swaps_it_in_place() {
    let (mut s, _) = active();
    ok(&mut s, ready(2, 1));
    let id = move_at_switching(&mut s, 2);
    let cmd = commit(id, 1, 2, 4, 1);
    assert_eq!(ok(&mut s, cmd.clone()), MetaOutcome::Done);
    let p = part(&s, 1);
    assert_eq!(
        (p.primary_node_id, p.replica_node_ids.clone()),
        (1, vec![4, 3])
    );
    assert_eq!(p.epoch, 2);
    assert_eq!(p.ready_node_ids, BTreeSet::from([1, 3, 4]));
    assert_eq!(
        p.status,
        PartitionStatus::Migrating,
        "until the source dropped its copy"
    );
    assert!(!s.node(2).unwrap().partition_ids.contains(&1));
    assert!(s.node(4).unwrap().partition_ids.contains(&1));
    let o = op(&s, id);
    assert_eq!(
        (o.step, &o.status),
        (OperationStep::DroppingSource, &OperationStatus::Running)
    );
    assert_eq!(o.step_started_at_ms, NOW + 60);
    // Retries after the switch, even once completed, are harmless.
    unchanged(&mut s, cmd.clone());
    ok(&mut s, retry(id, OperationStep::DroppingSource, 1));
    let dropping = advance(id, OperationStep::DroppingSource, progress(3, Some(8)));
    ok(&mut s, dropping);
    assert_eq!(op(&s, id).progress, progress(3, Some(8)));
    ok(&mut s, finish(id, OperationStatus::Completed));
    assert_eq!(part(&s, 1).status, PartitionStatus::Healthy);
    unchanged(&mut s, cmd);
}

#[test]
fn commit_move_of_the_primary_hands_the_role_over() {
    let (mut s, _) = active();
    let id = move_at_switching(&mut s, 1);
    ok(&mut s, commit(id, 1, 1, 4, 1));
    let p = part(&s, 1);
    assert_eq!(
        (p.primary_node_id, p.replica_node_ids.clone()),
        (4, vec![2, 3])
    );
    assert_eq!(p.ready_node_ids, BTreeSet::from([2, 3, 4]));
    // A move may fail after its switch (the source never dropped its copy).
    ok(&mut s, finish(id, failed_status("source unreachable")));
    assert_eq!(part(&s, 1).status, PartitionStatus::Healthy);
}

#[test]
fn commit_move_operation_rejections() {
    let (mut s, _) = active();
    assert_eq!(
        reject(&mut s, commit(3, 1, 1, 4, 1)),
        MetaError::UnknownOperation(3)
    );
    let id = start(&mut s, 1, move_kind(1, 4));
    let e = reject(&mut s, commit(id, 1, 1, 4, 1));
    assert!(is_wrong_step(&e), "not at SWITCHING");
    ok(&mut s, advance(id, OperationStep::Switching, None));
    for bad in [
        commit(id, 1, 2, 4, 1),
        commit(id, 1, 1, 3, 1),
        commit(id, 2, 1, 4, 1),
    ] {
        assert!(is_invalid(&reject(&mut s, bad)));
    }
    let split_id = start(&mut s, 2, split_kind(None));
    assert!(is_invalid(&reject(&mut s, commit(split_id, 2, 2, 1, 1))));
    assert_eq!(
        reject(&mut s, commit(id, 1, 1, 4, 0)),
        MetaError::StaleEpoch {
            partition_id: 1,
            expected: 0,
            current: 1
        }
    );
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    let e = reject(&mut s, commit(id, 1, 1, 4, 1));
    assert!(matches!(e, MetaError::OperationFinished { .. }));
}

#[test]
fn commit_move_replica_set_rejections() {
    let repair = |s: &MetaState, nodes: &[NodeId]| MetaCommand::RepairPartitions {
        changes: vec![PartitionChange {
            partition_id: 1,
            expected_epoch: s.partition(1).unwrap().epoch,
            primary_node_id: nodes[0],
            replica_node_ids: nodes[1..].to_vec(),
        }],
    };
    // Recovery moved the source off meanwhile.
    let (mut s, _) = active();
    let id = move_at_switching(&mut s, 3);
    let cmd = repair(&s, &[1, 2]);
    ok(&mut s, cmd);
    let e = reject(&mut s, commit(id, 1, 3, 4, 2));
    assert!(matches!(e, MetaError::InvalidPlacement(_)));
    // Recovery put the target in meanwhile.
    let (mut s, _) = active();
    let id = move_at_switching(&mut s, 3);
    let cmd = repair(&s, &[1, 2, 3, 4]);
    ok(&mut s, cmd);
    let e = reject(&mut s, commit(id, 1, 3, 4, 2));
    assert!(matches!(e, MetaError::InvalidPlacement(_)));
    // The target failed meanwhile.
    let (mut s, _) = active();
    let id = move_at_switching(&mut s, 3);
    let fail = MetaCommand::NodeFailed {
        node_id: 4,
        incarnation: 1,
        now_ms: NOW,
    };
    ok(&mut s, fail);
    let e = reject(&mut s, commit(id, 1, 3, 4, 1));
    assert!(matches!(e, MetaError::NodeWrongStatus { node_id: 4, .. }));
    // The table is being deleted.
    let (mut s, _) = active();
    let id = move_at_switching(&mut s, 3);
    ok(&mut s, delete("orders"));
    assert!(is_wrong_status(&reject(&mut s, commit(id, 1, 3, 4, 1))));
}

#[test]
fn purge_waits_for_running_operations() {
    let (mut s, t) = active();
    let id = start(&mut s, 2, move_kind(4, 1));
    ok(&mut s, delete("orders"));
    assert_eq!(
        reject(&mut s, MetaCommand::PurgeTable { table_id: t }),
        MetaError::OperationRunning {
            partition_id: 2,
            operation_id: id
        }
    );
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    ok(&mut s, MetaCommand::PurgeTable { table_id: t });
    // The history outlives the table.
    assert_eq!(op(&s, id).table_id, t);
}

#[test]
fn finished_history_is_bounded_oldest_first() {
    let (mut s, _) = active();
    let total = MAX_FINISHED_OPERATIONS as u64 + 5;
    for i in 0..total {
        let id = start(&mut s, 1, split_kind(None));
        let cmd = MetaCommand::FinishOperation {
            operation_id: id,
            status: OperationStatus::RolledBack,
            now_ms: NOW + i,
            write_pause_ms: None,
        };
        ok(&mut s, cmd);
    }
    assert_eq!(s.operations().count(), MAX_FINISHED_OPERATIONS);
    assert_eq!(s.operations().next().unwrap().operation_id, 6);
    // Repeats about a dropped operation stay harmless; a commit cannot tell.
    unchanged(&mut s, finish(1, OperationStatus::RolledBack));
    unchanged(&mut s, advance(1, OperationStep::Fencing, None));
    unchanged(&mut s, retry(1, OperationStep::Preparing, 1));
    assert_eq!(
        reject(&mut s, split(Some(1), 1, MID, 1)),
        MetaError::UnknownOperation(1)
    );
    assert_eq!(
        reject(&mut s, commit(1, 1, 1, 4, 1)),
        MetaError::UnknownOperation(1)
    );
    // Running operations are never dropped.
    let running = start(&mut s, 2, split_kind(None));
    let id = start(&mut s, 1, split_kind(None));
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    assert!(s.operation(running).is_some_and(|o| o.is_running()));
}

#[test]
fn operations_survive_the_snapshot_and_old_snapshots_load() {
    let (mut s, _) = active();
    let id = split_at_fencing(&mut s, Some(MID));
    ok(&mut s, split(Some(id), 1, MID, 1));
    let moving = start(&mut s, 3, move_kind(1, 4));
    ok(
        &mut s,
        advance(moving, OperationStep::Copying, progress(5, Some(9))),
    );
    let failed = start(&mut s, 2, split_kind(None));
    ok(&mut s, finish(failed, failed_status("why")));
    let bytes = postcard::to_stdvec(&s).unwrap();
    assert_eq!(postcard::from_bytes::<MetaState>(&bytes).unwrap(), s);
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<MetaState>(&text).unwrap(), s);
    // A JSON dump from before operations existed loads with none, ids from 1.
    let (old, _) = active();
    let mut value = serde_json::to_value(&old).unwrap();
    let fields = value.as_object_mut().unwrap();
    fields.remove("operations");
    fields.remove("next_operation_id");
    let mut back: MetaState = serde_json::from_value(value).unwrap();
    assert_eq!(back, old);
    assert_eq!(start(&mut back, 1, split_kind(None)), 1);
}

type Corruption = Box<dyn Fn(&mut MetaState)>;

fn op_mut(s: &mut MetaState, id: OperationId) -> &mut Operation {
    s.operations.get_mut(&id).unwrap()
}

#[test]
fn invariant_checker_catches_corrupt_operations() {
    let (mut s, _) = active();
    let split_id = start(&mut s, 1, split_kind(None));
    let move_id = start(&mut s, 2, move_kind(4, 1));
    s.check_invariants().unwrap();
    let corruptions: Vec<Corruption> = vec![
        Box::new(|s| s.partitions.get_mut(&1).unwrap().status = PartitionStatus::Healthy),
        Box::new(|s| s.partitions.get_mut(&1).unwrap().status = PartitionStatus::Migrating),
        Box::new(move |s| op_mut(s, move_id).partition_id = 1),
        Box::new(move |s| op_mut(s, split_id).step = OperationStep::Copying),
        Box::new(move |s| op_mut(s, split_id).step = OperationStep::Switched),
        Box::new(move |s| op_mut(s, split_id).finished_at_ms = Some(NOW)),
        Box::new(move |s| op_mut(s, split_id).status = OperationStatus::RolledBack),
        Box::new(move |s| op_mut(s, split_id).operation_id = 7),
        Box::new(move |s| op_mut(s, split_id).started_at_ms = NOW + 11),
        Box::new(move |s| op_mut(s, split_id).requested_by.clear()),
        Box::new(move |s| op_mut(s, split_id).attempts = MAX_STEP_ATTEMPTS + 1),
        Box::new(move |s| op_mut(s, move_id).kind = move_kind(4, 4)),
        Box::new(move |s| op_mut(s, move_id).table_id = 9),
        Box::new(|s| s.next_operation_id = 2),
        Box::new(move |s| {
            op_mut(s, move_id).status = OperationStatus::Completed;
            op_mut(s, move_id).finished_at_ms = Some(NOW + 20);
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
fn epoch_check_catches_a_child_below_its_parent() {
    let (s, _) = active();
    let before = s.epochs();
    let mut after = s.partitions.clone();
    let mut child = after.remove(&1).unwrap();
    child.partition_id = 9;
    child.range.high = MID;
    assert!(super::super::epochs_grew(&before, &after).is_ok());
    after.insert(9, child.clone());
    assert!(
        super::super::epochs_grew(&before, &after).is_err(),
        "same epoch"
    );
    child.epoch += 1;
    after.insert(9, child);
    assert!(super::super::epochs_grew(&before, &after).is_ok());
    after.get_mut(&2).unwrap().epoch = 0;
    assert!(
        super::super::epochs_grew(&before, &after).is_err(),
        "went back"
    );
}

#[test]
fn operation_errors_are_classified() {
    use crate::command::ErrorClass;
    let errors = [
        (
            MetaError::UnknownOperation(1),
            ErrorClass::NotFound,
            "OperationNotFound",
        ),
        (
            MetaError::OperationRunning {
                partition_id: 1,
                operation_id: 2,
            },
            ErrorClass::Conflict,
            "OperationInProgress",
        ),
        (
            MetaError::OperationFinished {
                operation_id: 1,
                status: OperationStatus::Completed,
            },
            ErrorClass::Conflict,
            "OperationFinished",
        ),
        (
            MetaError::OperationWrongStep {
                operation_id: 1,
                step: OperationStep::Copying,
                needed: "SWITCHING".into(),
            },
            ErrorClass::Conflict,
            "OperationWrongStep",
        ),
    ];
    for (e, class, code) in errors {
        assert_eq!((e.class(), e.code()), (class, code), "{e}");
    }
}

fn merge_kind(right: PartitionId) -> OperationKind {
    OperationKind::Merge { right }
}

fn merge(
    operation_id: OperationId,
    left: PartitionId,
    right: PartitionId,
    epochs: (u64, u64),
) -> MetaCommand {
    MetaCommand::MergePartitions {
        operation_id,
        left,
        right,
        expected_epochs: epochs,
        now_ms: NOW + 70,
    }
}

/// `active()` with partition 1 split at `MID` into 3 and 4 (nodes 1, 2, 3, epoch 2).
fn split_children() -> (MetaState, TableId) {
    let (mut s, t) = active();
    ok(&mut s, split(None, 1, MID, 1));
    (s, t)
}

#[test]
fn merge_of_adjacent_co_located_partitions_restores_one_range() {
    let (mut s, t) = split_children();
    let parent_range = KeyRange {
        low: 0,
        high: (1 << 63) - 1,
    };
    let id = start(&mut s, 3, merge_kind(4));
    assert_eq!(op(&s, id).reserved_merged, Some(5));
    for pid in [3, 4] {
        assert_eq!(part(&s, pid).status, PartitionStatus::Merging);
        assert_eq!(s.running_operation_of(pid).unwrap().operation_id, id);
    }
    // Neither side takes another operation meanwhile.
    for pid in [3, 4] {
        let e = reject(&mut s, start_cmd(pid, split_kind(None)));
        assert!(matches!(e, MetaError::OperationRunning { .. }), "{e:?}");
    }
    // Committed only from FENCING, at both epochs.
    assert!(is_wrong_step(&reject(&mut s, merge(id, 3, 4, (2, 2)))));
    ok(&mut s, advance(id, OperationStep::Fencing, None));
    assert!(matches!(
        reject(&mut s, merge(id, 3, 4, (2, 1))),
        MetaError::StaleEpoch {
            partition_id: 4,
            ..
        }
    ));
    assert!(is_invalid(&reject(&mut s, merge(id, 4, 3, (2, 2)))));
    let cmd = merge(id, 3, 4, (2, 2));
    assert_eq!(
        ok(&mut s, cmd.clone()),
        MetaOutcome::PartitionsMerged { merged: 5 }
    );
    assert!(s.partition(3).is_none() && s.partition(4).is_none());
    let merged = part(&s, 5);
    assert_eq!(merged.range, parent_range);
    assert_eq!(merged.epoch, 3);
    assert_eq!(
        (merged.primary_node_id, merged.status),
        (1, PartitionStatus::Healthy)
    );
    assert!(merged.is_ready());
    for n in 1..=3 {
        let held = &s.node(n).unwrap().partition_ids;
        assert!(held.contains(&5) && !held.contains(&3) && !held.contains(&4));
    }
    let o = op(&s, id);
    assert_eq!(
        (o.step, &o.status),
        (OperationStep::Switched, &OperationStatus::Completed)
    );
    assert_eq!(
        o.derivation(),
        Some(crate::model::Derivation {
            sources: vec![3, 4],
            children: vec![5]
        })
    );
    let lows: Vec<u64> = s.partitions_of(t).iter().map(|p| p.range.low).collect();
    assert_eq!(lows, [0, 1 << 63]);
    // A retry and a finish after the commit are harmless.
    unchanged(&mut s, cmd);
    unchanged(&mut s, finish(id, OperationStatus::Completed));
}

#[test]
fn merge_rejections_and_rollback() {
    let (mut s, _) = split_children();
    // Partitions 4 and 2 are adjacent but not on the same nodes; 3 and 2 are not adjacent.
    assert!(matches!(
        reject(&mut s, start_cmd(4, merge_kind(2))),
        MetaError::InvalidPlacement(_)
    ));
    assert!(is_invalid(&reject(&mut s, start_cmd(3, merge_kind(2)))));
    assert!(
        is_invalid(&reject(&mut s, start_cmd(4, merge_kind(3)))),
        "order matters"
    );
    assert!(is_invalid(&reject(&mut s, start_cmd(3, merge_kind(3)))));
    assert_eq!(
        reject(&mut s, start_cmd(3, merge_kind(9))),
        MetaError::UnknownPartition(9)
    );
    let busy = start(&mut s, 4, split_kind(None));
    assert!(matches!(
        reject(&mut s, start_cmd(3, merge_kind(4))),
        MetaError::OperationRunning { .. }
    ));
    ok(&mut s, finish(busy, OperationStatus::RolledBack));
    // A rollback frees both partitions; the merge may not commit any more.
    let id = start(&mut s, 3, merge_kind(4));
    ok(&mut s, advance(id, OperationStep::Fencing, None));
    let e = reject(&mut s, finish(id, OperationStatus::Completed));
    assert!(is_wrong_step(&e), "a merge completes by MergePartitions");
    ok(&mut s, finish(id, OperationStatus::RolledBack));
    for pid in [3, 4] {
        assert_eq!(part(&s, pid).status, PartitionStatus::Healthy);
    }
    let e = reject(&mut s, merge(id, 3, 4, (2, 2)));
    assert!(matches!(e, MetaError::OperationFinished { .. }));
    // A repair that moves a copy of one side in the meantime voids the commit.
    let id = start(&mut s, 3, merge_kind(4));
    ok(&mut s, advance(id, OperationStep::Fencing, None));
    ok(
        &mut s,
        MetaCommand::RepairPartitions {
            changes: vec![PartitionChange {
                partition_id: 4,
                expected_epoch: 2,
                primary_node_id: 1,
                replica_node_ids: vec![2, 4],
            }],
        },
    );
    assert!(matches!(
        reject(&mut s, merge(id, 3, 4, (2, 3))),
        MetaError::InvalidPlacement(_)
    ));
}
