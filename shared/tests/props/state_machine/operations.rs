//! The operation steps of the random command sequences: starts, advances, retries and
//! finishes of splits, merges and moves, their commits (`SplitPartition`,
//! `MergePartitions`, `CommitMove`), each produced both valid and invalid, and whole
//! flows that drive one to its end.

use proptest::prelude::*;
use shared::command::{MetaCommand, MetaOutcome};
use shared::model::{
    NodeId, OperationId, OperationKind, OperationProgress, OperationStatus, OperationStep,
    Partition, PartitionStatus,
};
use shared::state::MetaState;

/// Which operation a step names: the newest one (what a flow just started, if its
/// start was accepted), or one picked among all recorded ones by a raw number
/// (sometimes an unknown id).
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    Newest,
    Raw(u64),
}

/// One operation step; resolved against the current state into a command.
#[derive(Debug, Clone)]
pub enum OperationOp {
    /// A split (requested point: none when `point` is 0, else a fraction of the range,
    /// 1 being the range start, which is refused) or a move from the member at index
    /// `from` (past the members: a non-member) to `to`.
    Start {
        partition: u64,
        split: bool,
        point: u16,
        from: u8,
        to: NodeId,
    },
    /// To step number `step` of the operation's kind (out of range: another kind's),
    /// with `done` bytes of progress (above the total when `done` > 1000).
    Advance { op: Pick, step: u8, done: u64 },
    /// Retry of the current step (`skew` 0), a repeat (1), a skipped attempt (2).
    Retry { op: Pick, skew: u8 },
    /// 0 completed, 1 rolled back, 2 failed, 3 running (refused).
    Finish { op: Pick, status: u8 },
    /// Commit of the operation's split (at its point, or at fraction `point` of the
    /// range), or, with `bare`, a split of a picked partition with no operation.
    Split {
        op: Pick,
        bare: bool,
        partition: u64,
        point: u16,
        stale: bool,
    },
    /// Commit of the operation's move, at a stale epoch with `stale`.
    Commit { op: Pick, stale: bool },
    /// Start of a merge of the newest split's children (with `newest_split`, if there
    /// is one), else of a picked partition with the one above it.
    StartMerge { newest_split: bool, partition: u64 },
    /// Commit of the operation's merge (for another kind: of its partition with the one
    /// above it, refused), at a stale epoch with `stale`.
    Merge { op: Pick, stale: bool },
    /// A whole split, then the merge of its children: start, advance to FENCING,
    /// commit, repeat the commit (a no-op), complete it (a no-op).
    DriveMerge { partition: u64, point: u16 },
    /// Start, advance to FENCING, commit the split, then repeat the commit and the
    /// completion (both no-ops).
    DriveSplit { partition: u64, point: u16 },
    /// Start, report progress, retry the copy, advance to SWITCHING, commit the move,
    /// repeat the commit (a no-op), complete it.
    DriveMove {
        partition: u64,
        from: u8,
        to: NodeId,
    },
}

pub fn operation_op() -> impl Strategy<Value = OperationOp> {
    let partition = 0u64..64;
    let pick = prop_oneof![3 => Just(Pick::Newest), 2 => (0u64..64).prop_map(Pick::Raw)];
    let node = 1u64..=7;
    prop_oneof![
        3 => (partition.clone(), any::<bool>(), any::<u16>(), 0u8..4, node.clone())
            .prop_map(|(partition, split, point, from, to)| OperationOp::Start {
                partition, split, point: if point % 3 == 0 { 0 } else { point }, from, to,
            }),
        3 => (pick.clone(), 0u8..5, 0u64..1100)
            .prop_map(|(op, step, done)| OperationOp::Advance { op, step, done }),
        1 => (pick.clone(), 0u8..3).prop_map(|(op, skew)| OperationOp::Retry { op, skew }),
        2 => (pick.clone(), 0u8..4).prop_map(|(op, status)| OperationOp::Finish { op, status }),
        2 => (pick.clone(), prop::bool::weighted(0.3), partition.clone(), any::<u16>(),
              prop::bool::weighted(0.2))
            .prop_map(|(op, bare, partition, point, stale)| OperationOp::Split {
                op, bare, partition, point, stale,
            }),
        2 => (pick.clone(), prop::bool::weighted(0.2))
            .prop_map(|(op, stale)| OperationOp::Commit { op, stale }),
        3 => (partition.clone(), any::<u16>())
            .prop_map(|(partition, point)| OperationOp::DriveSplit { partition, point }),
        3 => (partition.clone(), 0u8..3, node)
            .prop_map(|(partition, from, to)| OperationOp::DriveMove { partition, from, to }),
        1 => (any::<bool>(), partition.clone())
            .prop_map(|(newest_split, partition)| OperationOp::StartMerge { newest_split, partition }),
        2 => (pick, prop::bool::weighted(0.2))
            .prop_map(|(op, stale)| OperationOp::Merge { op, stale }),
        2 => (partition, any::<u16>())
            .prop_map(|(partition, point)| OperationOp::DriveMerge { partition, point }),
    ]
}

/// Splits whole flows into steps, each resolved against the state its turn sees.
pub fn expand_operation(op: &OperationOp) -> Vec<OperationOp> {
    match *op {
        OperationOp::DriveSplit { partition, point } => vec![
            OperationOp::Start {
                partition,
                split: true,
                point: 0,
                from: 0,
                to: 0,
            },
            OperationOp::Advance {
                op: Pick::Newest,
                step: 1,
                done: 0,
            },
            OperationOp::Split {
                op: Pick::Newest,
                bare: false,
                partition,
                point: point.max(2),
                stale: false,
            },
            OperationOp::Split {
                op: Pick::Newest,
                bare: false,
                partition,
                point,
                stale: false,
            },
            OperationOp::Finish {
                op: Pick::Newest,
                status: 0,
            },
        ],
        OperationOp::DriveMove {
            partition,
            from,
            to,
        } => vec![
            OperationOp::Start {
                partition,
                split: false,
                point: 0,
                from,
                to,
            },
            OperationOp::Advance {
                op: Pick::Newest,
                step: 0,
                done: 500,
            },
            OperationOp::Retry {
                op: Pick::Newest,
                skew: 0,
            },
            OperationOp::Advance {
                op: Pick::Newest,
                step: 2,
                done: 0,
            },
            OperationOp::Commit {
                op: Pick::Newest,
                stale: false,
            },
            OperationOp::Commit {
                op: Pick::Newest,
                stale: false,
            },
            OperationOp::Finish {
                op: Pick::Newest,
                status: 0,
            },
        ],
        OperationOp::DriveMerge { partition, point } => {
            let mut steps = expand_operation(&OperationOp::DriveSplit { partition, point });
            let merge = OperationOp::Merge {
                op: Pick::Newest,
                stale: false,
            };
            steps.extend([
                OperationOp::StartMerge {
                    newest_split: true,
                    partition,
                },
                OperationOp::Advance {
                    op: Pick::Newest,
                    step: 1,
                    done: 0,
                },
                merge.clone(),
                merge,
                OperationOp::Finish {
                    op: Pick::Newest,
                    status: 0,
                },
            ]);
            steps
        }
        ref other => vec![other.clone()],
    }
}

/// Mostly an existing partition, sometimes a raw (likely unknown) id.
fn pick_partition(s: &MetaState, raw: u64) -> Option<&Partition> {
    let parts: Vec<&Partition> = s.partitions().collect();
    if raw % 8 == 7 || parts.is_empty() {
        return s.partition(raw);
    }
    Some(parts[raw as usize % parts.len()])
}

fn pick_operation(s: &MetaState, pick: Pick) -> OperationId {
    match pick {
        Pick::Newest => s.operations().last().map_or(1, |o| o.operation_id),
        Pick::Raw(raw) => {
            let ids: Vec<OperationId> = s.operations().map(|o| o.operation_id).collect();
            if raw % 8 == 7 || ids.is_empty() {
                raw
            } else {
                ids[raw as usize % ids.len()]
            }
        }
    }
}

/// The point at fraction `point` / 65536 of the partition's range (0: its start).
fn point_in(p: Option<&Partition>, point: u16) -> u64 {
    let Some(p) = p else {
        return u64::from(point) << 48;
    };
    let width = u128::from(p.range.high - p.range.low) + 1;
    p.range.low + (width * u128::from(point) / 65536) as u64
}

/// The commands an operation step stands for in the current state.
pub fn operation_commands(s: &MetaState, op: &OperationOp) -> Vec<MetaCommand> {
    let cmd = match *op {
        OperationOp::Start {
            partition,
            split,
            point,
            from,
            to,
        } => start(s, partition, split, point, from, to),
        OperationOp::Advance { op, step, done } => advance(s, op, step, done),
        OperationOp::Retry { op, skew } => retry(s, op, skew),
        OperationOp::Finish { op, status } => MetaCommand::FinishOperation {
            operation_id: pick_operation(s, op),
            status: match status {
                0 => OperationStatus::Completed,
                1 => OperationStatus::RolledBack,
                2 => OperationStatus::Failed {
                    reason: "gave up".into(),
                },
                _ => OperationStatus::Running,
            },
            now_ms: 140,
            write_pause_ms: None,
        },
        OperationOp::Split {
            op,
            bare,
            partition,
            point,
            stale,
        } => split(s, (op, bare), partition, point, stale),
        OperationOp::Commit { op, stale } => commit(s, op, stale),
        OperationOp::StartMerge {
            newest_split,
            partition,
        } => start_merge(s, newest_split, partition),
        OperationOp::Merge { op, stale } => merge(s, op, stale),
        OperationOp::DriveSplit { .. }
        | OperationOp::DriveMove { .. }
        | OperationOp::DriveMerge { .. } => {
            unreachable!("{op:?} is expanded first")
        }
    };
    vec![cmd]
}

fn start(
    s: &MetaState,
    partition: u64,
    split: bool,
    point: u16,
    from: u8,
    to: NodeId,
) -> MetaCommand {
    let p = pick_partition(s, partition);
    let kind = if split {
        OperationKind::Split {
            split_point: (point != 0).then(|| point_in(p, point - 1)),
        }
    } else {
        let members: Vec<NodeId> = p.map_or(vec![], |p| p.all_nodes().collect());
        OperationKind::Move {
            from: members.get(usize::from(from)).copied().unwrap_or(8),
            to,
        }
    };
    MetaCommand::StartOperation {
        partition_id: p.map_or(partition, |p| p.partition_id),
        kind,
        requested_by: if from == 3 {
            String::new()
        } else {
            "scaler".into()
        },
        now_ms: 100,
    }
}

fn advance(s: &MetaState, pick: Pick, step: u8, done: u64) -> MetaCommand {
    let operation_id = pick_operation(s, pick);
    let kind = s.operation(operation_id).map(|o| o.kind);
    let steps = kind.as_ref().map_or(
        &[OperationStep::Copying, OperationStep::Fencing][..],
        OperationStep::steps_of,
    );
    let step = steps.get(usize::from(step)).copied().unwrap_or(match kind {
        Some(OperationKind::Move { .. }) => OperationStep::Preparing,
        _ => OperationStep::CatchingUp,
    });
    MetaCommand::AdvanceOperation {
        operation_id,
        step,
        progress: (done > 0).then_some(OperationProgress {
            done_bytes: done,
            total_bytes: Some(1000),
        }),
        now_ms: 110,
    }
}

fn retry(s: &MetaState, pick: Pick, skew: u8) -> MetaCommand {
    let operation_id = pick_operation(s, pick);
    let (step, attempts) = s
        .operation(operation_id)
        .map_or((OperationStep::Copying, 0), |o| (o.step, o.attempts));
    MetaCommand::RetryOperationStep {
        operation_id,
        step,
        attempt: match skew {
            0 => attempts + 1,
            1 => attempts,
            _ => attempts + 2,
        },
        now_ms: 120,
    }
}

fn split(
    s: &MetaState,
    (pick, bare): (Pick, bool),
    partition: u64,
    point: u16,
    stale: bool,
) -> MetaCommand {
    let operation = (!bare).then(|| pick_operation(s, pick));
    let recorded = operation.and_then(|id| s.operation(id));
    let parent = match recorded {
        Some(o) => o.partition_id,
        None => pick_partition(s, partition).map_or(partition, |p| p.partition_id),
    };
    let p = s.partition(parent);
    let split_point = match recorded.map(|o| (o.kind, o.split)) {
        Some((_, Some(done))) => done.split_point,
        Some((
            OperationKind::Split {
                split_point: Some(at),
            },
            _,
        )) => at,
        _ => point_in(p, point),
    };
    let epoch = p.map_or(1, |p| p.epoch);
    MetaCommand::SplitPartition {
        operation_id: operation,
        parent,
        split_point,
        expected_epoch: if stale { epoch - 1 } else { epoch },
        now_ms: 130,
    }
}

fn commit(s: &MetaState, pick: Pick, stale: bool) -> MetaCommand {
    let operation_id = pick_operation(s, pick);
    let recorded = s.operation(operation_id);
    let (from, to) = match recorded.map(|o| o.kind) {
        Some(OperationKind::Move { from, to }) => (from, to),
        _ => (1, 2),
    };
    let partition_id = recorded.map_or(1, |o| o.partition_id);
    let epoch = s.partition(partition_id).map_or(1, |p| p.epoch);
    MetaCommand::CommitMove {
        operation_id,
        partition_id,
        from,
        to,
        expected_epoch: if stale { epoch - 1 } else { epoch },
        now_ms: 150,
    }
}

/// The partition starting right after `p` ends, in its table.
fn above(s: &MetaState, p: &Partition) -> Option<u64> {
    let low = p.range.high.checked_add(1)?;
    s.partitions_of(p.table_id)
        .into_iter()
        .find(|q| q.range.low == low)
        .map(|q| q.partition_id)
}

fn start_merge(s: &MetaState, newest_split: bool, partition: u64) -> MetaCommand {
    let newest = s.operations().filter_map(|o| o.split).last();
    let (left, right) = match newest.filter(|_| newest_split) {
        Some(r) => (r.left, r.right),
        None => {
            let p = pick_partition(s, partition);
            let right = p.and_then(|p| above(s, p)).unwrap_or(partition + 1);
            (p.map_or(partition, |p| p.partition_id), right)
        }
    };
    MetaCommand::StartOperation {
        partition_id: left,
        kind: OperationKind::Merge { right },
        requested_by: "scaler".into(),
        now_ms: 100,
    }
}

fn merge(s: &MetaState, pick: Pick, stale: bool) -> MetaCommand {
    let operation_id = pick_operation(s, pick);
    let recorded = s.operation(operation_id);
    let left = recorded.map_or(1, |o| o.partition_id);
    let right = match recorded.map(|o| o.kind) {
        Some(OperationKind::Merge { right }) => right,
        _ => s
            .partition(left)
            .and_then(|p| above(s, p))
            .unwrap_or(left + 1),
    };
    let epoch = |pid| s.partition(pid).map_or(1, |p| p.epoch);
    let skew = u64::from(stale);
    MetaCommand::MergePartitions {
        operation_id,
        left,
        right,
        expected_epochs: (epoch(left), epoch(right) - skew),
        now_ms: 160,
    }
}

/// Checks what an accepted operation command left behind; `None` if `cmd` is not one.
pub fn check_operation_outcome(
    before: &MetaState,
    s: &MetaState,
    cmd: &MetaCommand,
    outcome: &MetaOutcome,
) -> Option<Result<(), TestCaseError>> {
    let ok = match (cmd, outcome) {
        (
            MetaCommand::StartOperation {
                partition_id, kind, ..
            },
            MetaOutcome::OperationStarted { operation_id },
        ) => {
            s.operation(*operation_id).is_some_and(|o| {
                o.is_running() && o.partition_id == *partition_id && o.kind == *kind
            }) && s
                .running_operation_of(*partition_id)
                .map(|o| o.operation_id)
                == Some(*operation_id)
        }
        (MetaCommand::SplitPartition { .. }, MetaOutcome::PartitionSplit { left, right }) => {
            split_is_sound(before, s, cmd, *left, *right)
        }
        (
            MetaCommand::SplitPartition {
                operation_id: Some(id),
                ..
            },
            MetaOutcome::Unchanged,
        ) => s.operation(*id).is_some_and(|o| o.split.is_some()),
        (MetaCommand::CommitMove { .. }, MetaOutcome::Done) => move_is_sound(before, s, cmd),
        (MetaCommand::MergePartitions { .. }, MetaOutcome::PartitionsMerged { merged }) => {
            merge_is_sound(before, s, cmd, *merged)
        }
        (MetaCommand::MergePartitions { operation_id, .. }, MetaOutcome::Unchanged) => s
            .operation(*operation_id)
            .is_some_and(|o| o.derivation().is_some()),
        (MetaCommand::CommitMove { operation_id, .. }, MetaOutcome::Unchanged) => s
            .operation(*operation_id)
            .is_some_and(|o| o.step == OperationStep::DroppingSource),
        (MetaCommand::FinishOperation { operation_id, .. }, MetaOutcome::Done) => {
            let partition = before.operation(*operation_id).map(|o| o.partition_id);
            s.operation(*operation_id).is_none_or(|o| !o.is_running())
                && partition
                    .and_then(|p| s.partition(p))
                    .is_none_or(|p| p.status == PartitionStatus::Healthy)
        }
        (
            MetaCommand::AdvanceOperation { .. }
            | MetaCommand::RetryOperationStep { .. }
            | MetaCommand::FinishOperation { .. },
            MetaOutcome::Done | MetaOutcome::Unchanged,
        ) => true,
        (
            MetaCommand::StartOperation { .. }
            | MetaCommand::AdvanceOperation { .. }
            | MetaCommand::RetryOperationStep { .. }
            | MetaCommand::FinishOperation { .. }
            | MetaCommand::SplitPartition { .. }
            | MetaCommand::MergePartitions { .. }
            | MetaCommand::CommitMove { .. },
            _,
        ) => false,
        _ => return None,
    };
    Some(check(ok, cmd, outcome))
}

/// The parent is gone; two fresh children tile its range at the split point, on its
/// nodes, one epoch above it; a split operation named completed with them.
fn split_is_sound(
    before: &MetaState,
    s: &MetaState,
    cmd: &MetaCommand,
    left: u64,
    right: u64,
) -> bool {
    let MetaCommand::SplitPartition {
        operation_id,
        parent,
        split_point,
        ..
    } = cmd
    else {
        return false;
    };
    let (Some(p), Some(l), Some(r)) = (
        before.partition(*parent),
        s.partition(left),
        s.partition(right),
    ) else {
        return false;
    };
    let same_place = |c: &Partition| {
        c.table_id == p.table_id
            && c.primary_node_id == p.primary_node_id
            && c.replica_node_ids == p.replica_node_ids
            && c.ready_node_ids == p.ready_node_ids
            && c.epoch == p.epoch + 1
    };
    let recorded = operation_id.is_none_or(|id| {
        s.operation(id).is_none_or(|o| {
            o.status == OperationStatus::Completed
                && o.split.is_some_and(|r| (r.left, r.right) == (left, right))
        })
    });
    s.partition(*parent).is_none()
        && before.partition(left).is_none()
        && before.partition(right).is_none()
        && (l.range.low, l.range.high + 1) == (p.range.low, *split_point)
        && (r.range.low, r.range.high) == (*split_point, p.range.high)
        && same_place(l)
        && same_place(r)
        && recorded
}

/// Both sides are gone; one fresh partition covers both ranges on their nodes, above
/// both epochs, and the merge completed with it.
fn merge_is_sound(before: &MetaState, s: &MetaState, cmd: &MetaCommand, merged: u64) -> bool {
    let MetaCommand::MergePartitions {
        operation_id,
        left,
        right,
        ..
    } = cmd
    else {
        return false;
    };
    let (Some(l), Some(r), Some(m)) = (
        before.partition(*left),
        before.partition(*right),
        s.partition(merged),
    ) else {
        return false;
    };
    s.partition(*left).is_none()
        && s.partition(*right).is_none()
        && before.partition(merged).is_none()
        && (m.range.low, m.range.high) == (l.range.low, r.range.high)
        && m.primary_node_id == l.primary_node_id
        && m.epoch == l.epoch.max(r.epoch) + 1
        && s.operation(*operation_id).is_some_and(|o| {
            o.status == OperationStatus::Completed
                && o.derivation().is_some_and(|d| d.children == [merged])
        })
}

/// `to` took `from`'s place (and role) at the next epoch, ready; the rest is as it was.
fn move_is_sound(before: &MetaState, s: &MetaState, cmd: &MetaCommand) -> bool {
    let MetaCommand::CommitMove {
        operation_id,
        partition_id,
        from,
        to,
        expected_epoch,
        ..
    } = cmd
    else {
        return false;
    };
    let (Some(old), Some(new)) = (before.partition(*partition_id), s.partition(*partition_id))
    else {
        return false;
    };
    let swap = |n: NodeId| if n == *from { *to } else { n };
    let nodes: Vec<NodeId> = old.all_nodes().map(swap).collect();
    new.all_nodes().collect::<Vec<_>>() == nodes
        && new.epoch == expected_epoch + 1
        && new.ready_node_ids.contains(to)
        && !new.ready_node_ids.contains(from)
        && s.operation(*operation_id)
            .is_some_and(|o| o.step == OperationStep::DroppingSource)
}

fn check(ok: bool, cmd: &MetaCommand, outcome: &MetaOutcome) -> Result<(), TestCaseError> {
    prop_assert!(ok, "{:?} gave {:?}", cmd, outcome);
    Ok(())
}
