//! Handlers of the multi-step operations (split and merge in place, replica move) and
//! of the routing commits they lead to (`SplitPartition`, `MergePartitions`,
//! `CommitMove`). Like every handler, each validates fully, then mutates.
//!
//! An operation record is the resumable state of a split or move: any leader reads its
//! step and drives it on or rolls it back. Drivers retry, and leaders change between a
//! proposal and its answer, so every command here is safe to repeat: a stale or
//! repeated advance, retry, finish or commit answers `Unchanged` and changes nothing.

use std::cmp::Ordering;

use super::MetaState;
use super::apply::{placement, wrong_status};
use crate::command::{MetaCommand, MetaError, MetaOutcome, MetaResult};
use crate::model::{
    KeyRange, NodeId, Operation, OperationId, OperationKind, OperationProgress, OperationStatus,
    OperationStep, Partition, PartitionId, PartitionStatus, SplitResult, TableId, TableStatus,
    UnixMillis,
};
use crate::validate::{
    FAILURE_REASON_MAX_LEN, MAX_FINISHED_OPERATIONS, MAX_PARTITIONS_PER_TABLE, MAX_STEP_ATTEMPTS,
    REQUESTED_BY_MAX_LEN,
};

/// What looking up an operation id finds.
enum Found<'a> {
    /// The record (running, or finished and still in the history).
    Live(&'a Operation),
    /// A finished operation already dropped from the bounded history.
    Dropped,
}

/// The fields of a `SplitPartition` command.
struct SplitRequest {
    operation_id: Option<OperationId>,
    parent: PartitionId,
    split_point: u64,
    expected_epoch: u64,
    now_ms: UnixMillis,
}

/// The fields of a `MergePartitions` command.
struct MergeRequest {
    operation_id: OperationId,
    left: PartitionId,
    right: PartitionId,
    expected_epochs: (u64, u64),
    now_ms: UnixMillis,
}

/// The fields of a `CommitMove` command.
struct MoveCommit {
    operation_id: OperationId,
    partition_id: PartitionId,
    from: NodeId,
    to: NodeId,
    expected_epoch: u64,
    now_ms: UnixMillis,
}

fn invalid(msg: String) -> MetaError {
    MetaError::Invalid(msg)
}

fn wrong_step(op: &Operation, needed: &str) -> MetaError {
    MetaError::OperationWrongStep {
        operation_id: op.operation_id,
        step: op.step,
        needed: needed.to_string(),
    }
}

fn running_error(op: &Operation) -> MetaError {
    MetaError::OperationRunning {
        partition_id: op.partition_id,
        operation_id: op.operation_id,
    }
}

/// Whether two end statuses are the same outcome; a failure's reason is ignored, since
/// a retried finish may word it anew.
fn same_end(a: &OperationStatus, b: &OperationStatus) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The children's ranges when `split_point` is strictly inside `range` (both children
/// non-empty): `[low, split_point - 1]` and `[split_point, high]`.
fn split_ranges(range: KeyRange, split_point: u64) -> Option<(KeyRange, KeyRange)> {
    (range.low < split_point && split_point <= range.high).then(|| {
        let left = KeyRange {
            low: range.low,
            high: split_point - 1,
        };
        let right = KeyRange {
            low: split_point,
            high: range.high,
        };
        (left, right)
    })
}

fn check_split_point(p: &Partition, split_point: u64) -> Result<(KeyRange, KeyRange), MetaError> {
    split_ranges(p.range, split_point).ok_or_else(|| {
        invalid(format!(
            "split point {split_point} is not strictly inside partition {}'s range \
             [{}, {}]: both children must be non-empty",
            p.partition_id, p.range.low, p.range.high
        ))
    })
}

/// Two partitions may merge when they are of one table, `right` starts right after
/// `left`, and both are held by the same primary and the same replicas (the merged copy
/// is made on each node from its own two copies).
fn check_mergeable(left: &Partition, right: &Partition) -> Result<(), MetaError> {
    let (l, r) = (left.partition_id, right.partition_id);
    if left.table_id != right.table_id || left.range.high.checked_add(1) != Some(right.range.low) {
        return Err(invalid(format!(
            "partition {r} does not start where partition {l} ends in the same table"
        )));
    }
    if !left.same_members(right) {
        return Err(placement(format!(
            "partitions {l} and {r} are not held by the same primary and replicas"
        )));
    }
    Ok(())
}

fn check_progress(progress: Option<OperationProgress>) -> Result<(), MetaError> {
    match progress {
        Some(OperationProgress {
            done_bytes,
            total_bytes: Some(total),
        }) if done_bytes > total => Err(invalid(format!(
            "progress of {done_bytes} bytes done is above the total of {total}"
        ))),
        _ => Ok(()),
    }
}

/// Whether a progress report is news within one step: different, and not behind (a
/// late report of an earlier position must not move progress back).
fn progress_ahead(old: Option<OperationProgress>, new: OperationProgress) -> bool {
    old.is_none_or(|o| new != o && new.done_bytes >= o.done_bytes)
}

/// Position of `step` among the steps of `op`'s kind, or `Invalid`.
fn position(op: &Operation, step: OperationStep) -> Result<usize, MetaError> {
    step.position_in(&op.kind).ok_or_else(|| {
        invalid(format!(
            "{step:?} is not a step of operation {} ({:?})",
            op.operation_id, op.kind
        ))
    })
}

/// Position of an operation's current step (always one of its kind, an invariant).
fn current_position(op: &Operation) -> usize {
    op.step.position_in(&op.kind).unwrap_or(0)
}

fn check_finish_status(status: &OperationStatus) -> Result<(), MetaError> {
    match status {
        OperationStatus::Running => Err(invalid(
            "an operation finishes as COMPLETED, ROLLED_BACK or FAILED, not RUNNING".into(),
        )),
        OperationStatus::Failed { reason } if reason.len() > FAILURE_REASON_MAX_LEN => {
            Err(invalid(format!(
                "failure reason is longer than {FAILURE_REASON_MAX_LEN} bytes"
            )))
        }
        _ => Ok(()),
    }
}

impl MetaState {
    /// An operation by id: running, or finished and still in the bounded history.
    pub fn operation(&self, id: OperationId) -> Option<&Operation> {
        self.operations.get(&id)
    }

    /// Every recorded operation (running and recently finished), oldest first.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
    }

    /// Running operations, oldest first.
    pub fn running_operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values().filter(|op| op.is_running())
    }

    /// The operation running on a partition (its own, or a merge's right neighbour), if
    /// any (never more than one).
    pub fn running_operation_of(&self, partition_id: PartitionId) -> Option<&Operation> {
        self.running_operations().find(|op| {
            op.partition_id == partition_id
                || matches!(op.kind, OperationKind::Merge { right } if right == partition_id)
        })
    }

    /// Routes an operation command to its handler.
    pub(super) fn dispatch_ops(&mut self, cmd: &MetaCommand) -> MetaResult {
        match cmd {
            MetaCommand::StartOperation {
                partition_id,
                kind,
                requested_by,
                now_ms,
            } => self.start_operation(*partition_id, kind, requested_by, *now_ms),
            MetaCommand::AdvanceOperation {
                operation_id,
                step,
                progress,
                now_ms,
            } => self.advance_operation(*operation_id, *step, *progress, *now_ms),
            MetaCommand::RetryOperationStep {
                operation_id,
                step,
                attempt,
                now_ms,
            } => self.retry_operation_step(*operation_id, *step, *attempt, *now_ms),
            MetaCommand::FinishOperation {
                operation_id,
                status,
                now_ms,
                write_pause_ms,
            } => self.finish_operation(*operation_id, status, *now_ms, *write_pause_ms),
            MetaCommand::SplitPartition {
                operation_id,
                parent,
                split_point,
                expected_epoch,
                now_ms,
            } => self.split_partition(&SplitRequest {
                operation_id: *operation_id,
                parent: *parent,
                split_point: *split_point,
                expected_epoch: *expected_epoch,
                now_ms: *now_ms,
            }),
            MetaCommand::MergePartitions {
                operation_id,
                left,
                right,
                expected_epochs,
                now_ms,
            } => self.merge_partitions(&MergeRequest {
                operation_id: *operation_id,
                left: *left,
                right: *right,
                expected_epochs: *expected_epochs,
                now_ms: *now_ms,
            }),
            MetaCommand::CommitMove {
                operation_id,
                partition_id,
                from,
                to,
                expected_epoch,
                now_ms,
            } => self.commit_move(&MoveCommit {
                operation_id: *operation_id,
                partition_id: *partition_id,
                from: *from,
                to: *to,
                expected_epoch: *expected_epoch,
                now_ms: *now_ms,
            }),
            other => unreachable!("{other:?} is not an operation command"),
        }
    }

    fn find_operation(&self, id: OperationId) -> Result<Found<'_>, MetaError> {
        match self.operations.get(&id) {
            Some(op) => Ok(Found::Live(op)),
            None if id != 0 && id < self.next_operation_id => Ok(Found::Dropped),
            None => Err(MetaError::UnknownOperation(id)),
        }
    }

    /// Mutable access to an operation already validated to exist.
    fn operation_mut(&mut self, id: OperationId) -> &mut Operation {
        self.operations
            .get_mut(&id)
            .expect("operation validated before mutation")
    }

    /// Splits and moves change routing, which only ACTIVE or SCALING tables allow: a
    /// CREATING table is still being placed, a DELETING one is going away.
    fn check_table_open(&self, table_id: TableId) -> Result<(), MetaError> {
        let table = self.table_by_id(table_id)?;
        match table.status {
            TableStatus::Active | TableStatus::Scaling => Ok(()),
            _ => Err(wrong_status(table, "ACTIVE or SCALING")),
        }
    }

    fn check_room_for_split(&self, table_id: TableId) -> Result<(), MetaError> {
        let count = self
            .partitions
            .values()
            .filter(|p| p.table_id == table_id)
            .count();
        if count >= MAX_PARTITIONS_PER_TABLE {
            return Err(placement(format!(
                "table {table_id} has {count} partitions, at most \
                 {MAX_PARTITIONS_PER_TABLE}: no room for a split"
            )));
        }
        Ok(())
    }

    /// A move takes the copy `from` holds to `to`: `from` must hold one, `to` must be
    /// HEALTHY and hold none (two copies on one node would count as one).
    fn check_move_nodes(&self, p: &Partition, from: NodeId, to: NodeId) -> Result<(), MetaError> {
        let id = p.partition_id;
        if from == to {
            return Err(invalid(format!(
                "a move of partition {id} from node {from} to itself"
            )));
        }
        if !p.all_nodes().any(|n| n == from) {
            return Err(placement(format!(
                "node {from} holds no copy of partition {id}"
            )));
        }
        let node = self.nodes.get(&to).ok_or(MetaError::UnknownNode(to))?;
        if !node.status.accepts_new_work() {
            return Err(MetaError::NodeWrongStatus {
                node_id: to,
                status: node.status,
                needed: "HEALTHY".into(),
            });
        }
        if p.all_nodes().any(|n| n == to) {
            return Err(placement(format!(
                "node {to} already holds a copy of partition {id}"
            )));
        }
        Ok(())
    }

    fn validate_start(
        &self,
        partition_id: PartitionId,
        kind: &OperationKind,
        requested_by: &str,
    ) -> Result<(), MetaError> {
        if requested_by.is_empty() || requested_by.len() > REQUESTED_BY_MAX_LEN {
            return Err(invalid(format!(
                "requested_by must be 1 to {REQUESTED_BY_MAX_LEN} bytes long"
            )));
        }
        let p = self
            .partitions
            .get(&partition_id)
            .ok_or(MetaError::UnknownPartition(partition_id))?;
        self.check_table_open(p.table_id)?;
        if let Some(op) = self.running_operation_of(partition_id) {
            return Err(running_error(op));
        }
        match *kind {
            OperationKind::Split { split_point } => {
                if let Some(point) = split_point {
                    check_split_point(p, point)?;
                }
                self.check_room_for_split(p.table_id)
            }
            OperationKind::Move { from, to } => self.check_move_nodes(p, from, to),
            OperationKind::Merge { right } => {
                let r = self
                    .partitions
                    .get(&right)
                    .ok_or(MetaError::UnknownPartition(right))?;
                if let Some(op) = self.running_operation_of(right) {
                    return Err(running_error(op));
                }
                check_mergeable(p, r)
            }
        }
    }

    fn start_operation(
        &mut self,
        partition_id: PartitionId,
        kind: &OperationKind,
        requested_by: &str,
        now_ms: UnixMillis,
    ) -> MetaResult {
        self.validate_start(partition_id, kind, requested_by)?;
        let operation_id = self.next_operation_id;
        self.next_operation_id += 1;
        let reserved_children = match kind {
            OperationKind::Split { .. } => {
                let left = self.next_partition_id;
                self.next_partition_id += 2;
                Some((left, left + 1))
            }
            OperationKind::Move { .. } | OperationKind::Merge { .. } => None,
        };
        let reserved_merged = match kind {
            OperationKind::Merge { .. } => {
                let merged = self.next_partition_id;
                self.next_partition_id += 1;
                Some(merged)
            }
            _ => None,
        };
        let p = self
            .partitions
            .get(&partition_id)
            .expect("partition validated");
        let op = Operation {
            operation_id,
            table_id: p.table_id,
            partition_id,
            kind: *kind,
            step: OperationStep::first_of(kind),
            status: OperationStatus::Running,
            requested_by: requested_by.to_string(),
            started_at_ms: now_ms,
            step_started_at_ms: now_ms,
            finished_at_ms: None,
            attempts: 0,
            progress: None,
            split: None,
            write_pause_ms: None,
            reserved_children,
            reserved_merged,
        };
        for pid in op.partitions() {
            self.partitions
                .get_mut(&pid)
                .expect("partition validated")
                .status = op.partition_status();
        }
        self.operations.insert(operation_id, op);
        Ok(MetaOutcome::OperationStarted { operation_id })
    }

    fn advance_operation(
        &mut self,
        id: OperationId,
        step: OperationStep,
        progress: Option<OperationProgress>,
        now_ms: UnixMillis,
    ) -> MetaResult {
        check_progress(progress)?;
        let op = match self.find_operation(id)? {
            Found::Dropped => return Ok(MetaOutcome::Unchanged),
            Found::Live(op) => op,
        };
        let to = position(op, step)?;
        // Progress may still be reported there (the source dropping its copy).
        if step.is_switched() && step != op.step {
            return Err(invalid(format!(
                "only the commit (SplitPartition or CommitMove) enters {step:?}"
            )));
        }
        if !op.is_running() {
            return Ok(MetaOutcome::Unchanged);
        }
        let ahead = progress.is_some_and(|p| progress_ahead(op.progress, p));
        let op = match to.cmp(&current_position(op)) {
            Ordering::Less => return Ok(MetaOutcome::Unchanged),
            Ordering::Equal if !ahead => return Ok(MetaOutcome::Unchanged),
            Ordering::Equal => self.operation_mut(id),
            Ordering::Greater => {
                let op = self.operation_mut(id);
                // Proposers' clocks differ; a step's times never go backwards.
                op.step_started_at_ms = op.step_started_at_ms.max(now_ms);
                op.step = step;
                op.attempts = 0;
                op
            }
        };
        op.progress = progress;
        Ok(MetaOutcome::Done)
    }

    fn retry_operation_step(
        &mut self,
        id: OperationId,
        step: OperationStep,
        attempt: u32,
        now_ms: UnixMillis,
    ) -> MetaResult {
        let op = match self.find_operation(id)? {
            Found::Dropped => return Ok(MetaOutcome::Unchanged),
            Found::Live(op) => op,
        };
        let retried = position(op, step)?;
        if !op.is_running() {
            return Ok(MetaOutcome::Unchanged);
        }
        match retried.cmp(&current_position(op)) {
            Ordering::Less => return Ok(MetaOutcome::Unchanged),
            Ordering::Greater => return Err(wrong_step(op, &format!("{step:?} to retry it"))),
            Ordering::Equal if attempt <= op.attempts => return Ok(MetaOutcome::Unchanged),
            Ordering::Equal => {}
        }
        if attempt != op.attempts + 1 {
            return Err(invalid(format!(
                "retry {attempt} of operation {id} does not follow attempt {}",
                op.attempts
            )));
        }
        if attempt > MAX_STEP_ATTEMPTS {
            return Err(invalid(format!(
                "operation {id} reached {MAX_STEP_ATTEMPTS} retries of {step:?}; finish it"
            )));
        }
        let op = self.operation_mut(id);
        op.attempts = attempt;
        op.step_started_at_ms = op.step_started_at_ms.max(now_ms);
        op.progress = None;
        Ok(MetaOutcome::Done)
    }

    fn finish_operation(
        &mut self,
        id: OperationId,
        status: &OperationStatus,
        now_ms: UnixMillis,
        write_pause_ms: Option<u64>,
    ) -> MetaResult {
        check_finish_status(status)?;
        let op = match self.find_operation(id)? {
            Found::Dropped => return Ok(MetaOutcome::Unchanged),
            Found::Live(op) => op,
        };
        if op.status.is_finished() {
            if same_end(&op.status, status) {
                // A split completes with its commit; its driver reports the pause after.
                if write_pause_ms.is_some() && op.write_pause_ms.is_none() {
                    self.operation_mut(id).write_pause_ms = write_pause_ms;
                    return Ok(MetaOutcome::Done);
                }
                return Ok(MetaOutcome::Unchanged);
            }
            return Err(MetaError::OperationFinished {
                operation_id: id,
                status: op.status.clone(),
            });
        }
        // The status must tell the truth about the routing.
        match status {
            OperationStatus::Completed if !op.step.is_switched() => {
                return Err(wrong_step(op, "a committed switch to complete"));
            }
            OperationStatus::RolledBack if op.step.is_switched() => {
                return Err(wrong_step(op, "no committed switch to roll back"));
            }
            _ => {}
        }
        let partitions = op.partitions();
        self.end_operation(id, status.clone(), now_ms);
        self.operation_mut(id).write_pause_ms = write_pause_ms;
        for pid in partitions {
            if let Some(p) = self.partitions.get_mut(&pid) {
                p.status = PartitionStatus::Healthy;
            }
        }
        Ok(MetaOutcome::Done)
    }

    /// Marks a validated operation finished and keeps the history bounded.
    fn end_operation(&mut self, id: OperationId, status: OperationStatus, now_ms: UnixMillis) {
        let op = self.operation_mut(id);
        op.status = status;
        op.finished_at_ms = Some(op.step_started_at_ms.max(now_ms));
        self.prune_finished();
    }

    /// Drops the oldest finished operations (by finish time, then id) beyond
    /// `MAX_FINISHED_OPERATIONS`.
    fn prune_finished(&mut self) {
        let mut finished: Vec<(UnixMillis, OperationId)> = self
            .operations
            .values()
            .filter_map(|op| op.finished_at_ms.map(|at| (at, op.operation_id)))
            .collect();
        let excess = finished.len().saturating_sub(MAX_FINISHED_OPERATIONS);
        if excess == 0 {
            return;
        }
        finished.sort_unstable();
        for (_, id) in finished.into_iter().take(excess) {
            self.operations.remove(&id);
        }
    }

    /// Checks the split operation a `SplitPartition` names; `Ok(true)` when that split
    /// already committed (a retry).
    fn check_split_operation(&self, id: OperationId, r: &SplitRequest) -> Result<bool, MetaError> {
        let op = match self.find_operation(id)? {
            Found::Live(op) => op,
            // Its outcome is forgotten: whether this split is a retry cannot be told.
            Found::Dropped => return Err(MetaError::UnknownOperation(id)),
        };
        let OperationKind::Split { split_point } = op.kind else {
            return Err(invalid(format!("operation {id} is a move, not a split")));
        };
        if op.partition_id != r.parent || split_point.is_some_and(|p| p != r.split_point) {
            return Err(invalid(format!(
                "operation {id} splits partition {} at {split_point:?}, not partition {} at {}",
                op.partition_id, r.parent, r.split_point
            )));
        }
        match &op.status {
            OperationStatus::Completed
                if op.split.is_some_and(|s| s.split_point == r.split_point) =>
            {
                Ok(true)
            }
            OperationStatus::Running if op.step == OperationStep::Fencing => Ok(false),
            OperationStatus::Running => {
                Err(wrong_step(op, "FENCING (writes to the parent fenced)"))
            }
            status => Err(MetaError::OperationFinished {
                operation_id: id,
                status: status.clone(),
            }),
        }
    }

    fn validate_split(&self, r: &SplitRequest) -> Result<(KeyRange, KeyRange), MetaError> {
        let p = self
            .partitions
            .get(&r.parent)
            .ok_or(MetaError::UnknownPartition(r.parent))?;
        self.check_table_open(p.table_id)?;
        if let Some(op) = self.running_operation_of(r.parent)
            && Some(op.operation_id) != r.operation_id
        {
            return Err(running_error(op));
        }
        if r.expected_epoch != p.epoch {
            return Err(MetaError::StaleEpoch {
                partition_id: r.parent,
                expected: r.expected_epoch,
                current: p.epoch,
            });
        }
        let ranges = check_split_point(p, r.split_point)?;
        self.check_room_for_split(p.table_id)?;
        Ok(ranges)
    }

    fn split_partition(&mut self, r: &SplitRequest) -> MetaResult {
        if let Some(id) = r.operation_id
            && self.check_split_operation(id, r)?
        {
            return Ok(MetaOutcome::Unchanged);
        }
        let (left_range, right_range) = self.validate_split(r)?;
        let parent = self
            .partitions
            .remove(&r.parent)
            .expect("partition validated");
        let reserved = r
            .operation_id
            .and_then(|id| self.operation(id)?.reserved_children);
        let (left, right) = match reserved {
            Some(ids) => ids,
            None => {
                let left = self.next_partition_id;
                self.next_partition_id += 2;
                (left, left + 1)
            }
        };
        // Both children start on the parent's nodes, with its ready copies: no data
        // moves. The new epoch makes requests at the parent's epoch retry.
        for (partition_id, range) in [(left, left_range), (right, right_range)] {
            let child = Partition {
                partition_id,
                range,
                epoch: parent.epoch + 1,
                status: PartitionStatus::Healthy,
                ..parent.clone()
            };
            self.partitions.insert(partition_id, child);
        }
        for n in parent.all_nodes() {
            let held = &mut self
                .nodes
                .get_mut(&n)
                .expect("member is known")
                .partition_ids;
            held.remove(&r.parent);
            held.extend([left, right]);
        }
        if let Some(id) = r.operation_id {
            let op = self.operation_mut(id);
            op.step = OperationStep::Switched;
            op.step_started_at_ms = op.step_started_at_ms.max(r.now_ms);
            op.attempts = 0;
            op.progress = None;
            op.split = Some(SplitResult {
                split_point: r.split_point,
                left,
                right,
            });
            self.end_operation(id, OperationStatus::Completed, r.now_ms);
        }
        Ok(MetaOutcome::PartitionSplit { left, right })
    }

    /// Checks the merge operation a `MergePartitions` names; `Ok(true)` when that merge
    /// already committed (a retry).
    fn check_merge_operation(&self, r: &MergeRequest) -> Result<bool, MetaError> {
        let id = r.operation_id;
        let op = match self.find_operation(id)? {
            Found::Live(op) => op,
            Found::Dropped => return Err(MetaError::UnknownOperation(id)),
        };
        if op.kind != (OperationKind::Merge { right: r.right }) || op.partition_id != r.left {
            return Err(invalid(format!(
                "operation {id} is {:?} of partition {}, not a merge of partitions {} and {}",
                op.kind, op.partition_id, r.left, r.right
            )));
        }
        match &op.status {
            OperationStatus::Completed => Ok(true),
            OperationStatus::Running if op.step == OperationStep::Fencing => Ok(false),
            OperationStatus::Running => Err(wrong_step(op, "FENCING (writes to both fenced)")),
            status => Err(MetaError::OperationFinished {
                operation_id: id,
                status: status.clone(),
            }),
        }
    }

    fn validate_merge(&self, r: &MergeRequest) -> Result<(&Partition, &Partition), MetaError> {
        let get = |pid| {
            self.partitions
                .get(&pid)
                .ok_or(MetaError::UnknownPartition(pid))
        };
        let (left, right) = (get(r.left)?, get(r.right)?);
        self.check_table_open(left.table_id)?;
        for (p, expected) in [(left, r.expected_epochs.0), (right, r.expected_epochs.1)] {
            if p.epoch != expected {
                return Err(MetaError::StaleEpoch {
                    partition_id: p.partition_id,
                    expected,
                    current: p.epoch,
                });
            }
        }
        check_mergeable(left, right)?;
        Ok((left, right))
    }

    fn merge_partitions(&mut self, r: &MergeRequest) -> MetaResult {
        if self.check_merge_operation(r)? {
            return Ok(MetaOutcome::Unchanged);
        }
        let (left, right) = self.validate_merge(r)?;
        let merged_id = self
            .operation(r.operation_id)
            .and_then(|op| op.reserved_merged)
            .ok_or_else(|| invalid(format!("merge {} reserved no id", r.operation_id)))?;
        // Same nodes, so the merged copy is ready exactly where both were; the new epoch
        // is above both, so requests at either old epoch retry.
        let merged = Partition {
            partition_id: merged_id,
            range: KeyRange {
                low: left.range.low,
                high: right.range.high,
            },
            epoch: left.epoch.max(right.epoch) + 1,
            status: PartitionStatus::Healthy,
            ready_node_ids: left
                .ready_node_ids
                .intersection(&right.ready_node_ids)
                .copied()
                .collect(),
            released_node_ids: Default::default(),
            ..left.clone()
        };
        let nodes: Vec<NodeId> = merged.all_nodes().collect();
        self.partitions.remove(&r.left);
        self.partitions.remove(&r.right);
        self.partitions.insert(merged_id, merged);
        for n in nodes {
            let held = &mut self
                .nodes
                .get_mut(&n)
                .expect("member is known")
                .partition_ids;
            held.remove(&r.left);
            held.remove(&r.right);
            held.insert(merged_id);
        }
        let op = self.operation_mut(r.operation_id);
        op.step = OperationStep::Switched;
        op.step_started_at_ms = op.step_started_at_ms.max(r.now_ms);
        op.attempts = 0;
        op.progress = None;
        self.end_operation(r.operation_id, OperationStatus::Completed, r.now_ms);
        Ok(MetaOutcome::PartitionsMerged { merged: merged_id })
    }

    /// Checks the move operation a `CommitMove` names; `Ok(true)` when the switch
    /// already committed (a retry).
    fn check_move_operation(&self, c: &MoveCommit) -> Result<bool, MetaError> {
        let id = c.operation_id;
        let op = match self.find_operation(id)? {
            Found::Live(op) => op,
            Found::Dropped => return Err(MetaError::UnknownOperation(id)),
        };
        let kind = OperationKind::Move {
            from: c.from,
            to: c.to,
        };
        if op.kind != kind || op.partition_id != c.partition_id {
            return Err(invalid(format!(
                "operation {id} is {:?} of partition {}, not {kind:?} of partition {}",
                op.kind, op.partition_id, c.partition_id
            )));
        }
        if op.step.is_switched() {
            return Ok(true);
        }
        if op.status.is_finished() {
            return Err(MetaError::OperationFinished {
                operation_id: id,
                status: op.status.clone(),
            });
        }
        if op.step != OperationStep::Switching {
            return Err(wrong_step(op, "SWITCHING (writes paused, tail sent)"));
        }
        Ok(false)
    }

    fn validate_commit(&self, c: &MoveCommit) -> Result<(), MetaError> {
        let p = self
            .partitions
            .get(&c.partition_id)
            .ok_or(MetaError::UnknownPartition(c.partition_id))?;
        self.check_table_open(p.table_id)?;
        if c.expected_epoch != p.epoch {
            return Err(MetaError::StaleEpoch {
                partition_id: c.partition_id,
                expected: c.expected_epoch,
                current: p.epoch,
            });
        }
        self.check_move_nodes(p, c.from, c.to)
    }

    fn commit_move(&mut self, c: &MoveCommit) -> MetaResult {
        if self.check_move_operation(c)? {
            return Ok(MetaOutcome::Unchanged);
        }
        self.validate_commit(c)?;
        let p = self
            .partitions
            .get_mut(&c.partition_id)
            .expect("partition validated");
        if p.primary_node_id == c.from {
            p.primary_node_id = c.to;
        } else {
            for n in p.replica_node_ids.iter_mut().filter(|n| **n == c.from) {
                *n = c.to;
            }
        }
        p.epoch += 1;
        // `to` was filled and caught up before the switch; `from` no longer serves.
        p.ready_node_ids.remove(&c.from);
        p.ready_node_ids.insert(c.to);
        p.released_node_ids.remove(&c.from);
        for (node, held) in [(c.from, false), (c.to, true)] {
            let ids = &mut self
                .nodes
                .get_mut(&node)
                .expect("node validated")
                .partition_ids;
            if held {
                ids.insert(c.partition_id);
            } else {
                ids.remove(&c.partition_id);
            }
        }
        let op = self.operation_mut(c.operation_id);
        op.step = OperationStep::DroppingSource;
        op.step_started_at_ms = op.step_started_at_ms.max(c.now_ms);
        op.attempts = 0;
        op.progress = None;
        Ok(MetaOutcome::Done)
    }
}
