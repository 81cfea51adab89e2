//! The decisions of the operation drivers: which running splits, merges and moves a
//! node drives (those on partitions it leads), what each needs next judged on the
//! metadata (or that it is void and rolls back, or switched already), how the result of
//! its switch commit ends it, and what follows a failed step (retried, up to
//! [`MAX_STEP_ATTEMPTS`], then rolled back). The agent's drivers
//! (`data::plane::operations`) and netsim's executors act on these; only the work
//! between steps (staging, copying, catching up, pausing writes) differs.

use crate::command::{MetaCommand, MetaError, MetaResult};
use crate::model::{
    KeyRange, NodeId, NodeStatus, Operation, OperationId, OperationKind, OperationProgress,
    OperationStatus, OperationStep, PartitionId, TableId, UnixMillis,
};
use crate::split::split_range;
use crate::state::MetaState;
use crate::validate::MAX_STEP_ATTEMPTS;

/// Pause before a failed step is tried again, in milliseconds.
pub const STEP_RETRY_PAUSE_MS: u64 = 500;

/// A move switches once its target is at most this many records behind the primary.
pub const MOVE_SWITCH_LAG_RECORDS: u64 = 16;

/// What a driver does with a running operation, judged on the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<T> {
    /// This node does not lead the partition (any more): nothing to do here.
    NotMine,
    /// The routing switched already (a driver crashed after the commit): finish it as
    /// completed, with no pause measured.
    Switched,
    /// The operation no longer fits the partitions (a failure changed them): finish it
    /// as rolled back, with why.
    Void(String),
    /// Work to do.
    Go(T),
}

/// The partition a driver leads, as the metadata records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Led {
    /// Its table.
    pub table_id: TableId,
    /// Its epoch.
    pub epoch: u64,
    /// Its key range.
    pub range: KeyRange,
}

/// A split's work: stage the children (at Preparing), then fence and commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitWork {
    /// The parent.
    pub parent: Led,
    /// The split point asked for; `None`: chosen from the data (median key hash).
    pub requested: Option<u64>,
    /// Whether the children are still to be staged (the step is Preparing).
    pub stage_first: bool,
}

/// A merge's work: stage the merged partition (at Preparing), then fence both and commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeWork {
    /// The left side (the operation's partition), led here.
    pub left: Led,
    /// The right side.
    pub right: PartitionId,
    /// Its epoch.
    pub right_epoch: u64,
    /// The merged partition's reserved id.
    pub merged: PartitionId,
    /// Its range (both sides').
    pub range: KeyRange,
    /// Whether the merged partition is still to be staged (the step is Preparing).
    pub stage_first: bool,
}

/// A move's work from its recorded step on: copy, catch up, switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveWork {
    /// The partition, led here.
    pub partition: Led,
    /// The node giving up its copy.
    pub from: NodeId,
    /// The node taking it.
    pub to: NodeId,
    /// The step to carry out: Copying, CatchingUp or Switching.
    pub step: OperationStep,
}

/// The running operations on partitions `me` leads.
pub fn operations_to_drive(state: &MetaState, me: NodeId) -> Vec<Operation> {
    state
        .running_operations()
        .filter(|op| {
            state
                .partition(op.partition_id)
                .is_some_and(|p| p.primary_node_id == me)
        })
        .cloned()
        .collect()
}

/// Partition `pid` as the metadata records it, if `me` is its primary.
pub fn led(state: &MetaState, pid: PartitionId, me: NodeId) -> Option<Led> {
    state
        .partition(pid)
        .filter(|p| p.primary_node_id == me)
        .map(|p| Led {
            table_id: p.table_id,
            epoch: p.epoch,
            range: p.range,
        })
}

/// What the split `op` needs next from its driver `me`.
pub fn next_split(state: &MetaState, op: &Operation, me: NodeId) -> Next<SplitWork> {
    let OperationKind::Split { split_point } = op.kind else {
        return Next::Void(format!("operation {} is not a split", op.operation_id));
    };
    if op.step == OperationStep::Switched {
        return Next::Switched;
    }
    match led(state, op.partition_id, me) {
        None => Next::NotMine,
        Some(parent) => Next::Go(SplitWork {
            parent,
            requested: split_point,
            stage_first: op.step == OperationStep::Preparing,
        }),
    }
}

/// The children's ranges of a split of `range` at `point`, or why it cannot be split
/// there (then the split rolls back).
pub fn split_children(range: &KeyRange, point: u64) -> Result<(KeyRange, KeyRange), String> {
    split_range(range, point).map_err(|e| e.to_string())
}

/// What the merge `op` needs next from its driver `me`.
pub fn next_merge(state: &MetaState, op: &Operation, me: NodeId) -> Next<MergeWork> {
    let OperationKind::Merge { right } = op.kind else {
        return Next::Void(format!("operation {} is not a merge", op.operation_id));
    };
    if op.step == OperationStep::Switched {
        return Next::Switched;
    }
    let left = op.partition_id;
    let Some(led_left) = led(state, left, me) else {
        return Next::NotMine;
    };
    // A failure may have changed one side under the operation: then it is void.
    let right_now = state
        .partition(left)
        .zip(state.partition(right))
        .filter(|(l, r)| l.same_members(r))
        .map(|(_, r)| (r.epoch, r.range));
    let (Some((right_epoch, right_range)), Some(merged)) = (right_now, op.reserved_merged) else {
        return Next::Void(format!(
            "partitions {left} and {right} are no longer held alike"
        ));
    };
    Next::Go(MergeWork {
        left: led_left,
        right,
        right_epoch,
        merged,
        range: KeyRange {
            low: led_left.range.low,
            high: right_range.high,
        },
        stage_first: op.step == OperationStep::Preparing,
    })
}

/// What the move `op` needs next from its driver `me`.
pub fn next_move(state: &MetaState, op: &Operation, me: NodeId) -> Next<MoveWork> {
    let OperationKind::Move { from, to } = op.kind else {
        return Next::Void(format!("operation {} is not a move", op.operation_id));
    };
    if op.step == OperationStep::DroppingSource {
        return Next::Switched;
    }
    let pid = op.partition_id;
    let Some(partition) = led(state, pid, me) else {
        return Next::NotMine;
    };
    // A failure may have changed the partition under the operation: then it is void.
    let p = state.partition(pid).expect("led");
    if !p.all_nodes().any(|n| n == from) {
        return Next::Void(format!("node {from} no longer holds partition {pid}"));
    }
    if p.all_nodes().any(|n| n == to) {
        return Next::Void(format!("node {to} already holds partition {pid}"));
    }
    match state.node(to).map(|n| n.status) {
        Some(NodeStatus::Healthy) => {}
        other => return Next::Void(format!("target node {to} is {other:?}")),
    }
    Next::Go(MoveWork {
        partition,
        from,
        to,
        step: op.step,
    })
}

/// Whether a move's target, at `theirs`, is close enough to the primary's `mine` (log
/// sequence numbers) to switch.
pub fn move_may_switch(mine: u64, theirs: u64) -> bool {
    mine.saturating_sub(theirs) <= MOVE_SWITCH_LAG_RECORDS
}

/// How a switch commit (`SplitPartition`, `MergePartitions`, `CommitMove`) ended the
/// operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchVerdict {
    /// Committed: the operation completed.
    Switched,
    /// Refused because the partitions moved on (a repair changed an epoch, a side no
    /// longer fits): nothing switched, roll back.
    RolledBack(String),
    /// Refused for another reason: the step failed and is retried.
    Failed(String),
}

/// The verdict on the result of an operation's switch commit.
pub fn switch_verdict(result: &MetaResult) -> SwitchVerdict {
    match result {
        Ok(_) => SwitchVerdict::Switched,
        Err(
            e @ (MetaError::StaleEpoch { .. }
            | MetaError::Invalid(_)
            | MetaError::InvalidPlacement(_)),
        ) => SwitchVerdict::RolledBack(e.to_string()),
        Err(e) => SwitchVerdict::Failed(e.to_string()),
    }
}

/// What follows a failed step of `op`: the command recording the retry, or `None`
/// when its attempts are spent and it rolls back.
pub fn retry_or_roll_back(op: &Operation, now_ms: UnixMillis) -> Option<MetaCommand> {
    let attempt = op.attempts + 1;
    (attempt <= MAX_STEP_ATTEMPTS).then_some(MetaCommand::RetryOperationStep {
        operation_id: op.operation_id,
        step: op.step,
        attempt,
        now_ms,
    })
}

/// The command recording that operation `id` reached `step`.
pub fn advance(
    id: OperationId,
    step: OperationStep,
    progress: Option<OperationProgress>,
    now_ms: UnixMillis,
) -> MetaCommand {
    MetaCommand::AdvanceOperation {
        operation_id: id,
        step,
        progress,
        now_ms,
    }
}

/// The command ending operation `id`: completed (with the write pause the driver
/// measured, if it did) or rolled back.
pub fn finish(
    id: OperationId,
    completed: bool,
    write_pause_ms: Option<u64>,
    now_ms: UnixMillis,
) -> MetaCommand {
    MetaCommand::FinishOperation {
        operation_id: id,
        status: if completed {
            OperationStatus::Completed
        } else {
            OperationStatus::RolledBack
        },
        now_ms,
        write_pause_ms: write_pause_ms.filter(|_| completed),
    }
}
