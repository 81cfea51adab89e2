//! JSON bodies of the partition operation endpoints: split, merge, move, and the
//! operations list.

use serde::{Deserialize, Serialize};

use crate::model::{
    NodeId, Operation, OperationId, OperationKind, OperationProgress, OperationStatus,
    OperationStep, PartitionId, SplitResult,
};

/// `POST /partitions/{id}/split` body (may be empty: `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitPartitionRequest {
    /// First hash of the right child; default: the median of the partition's hashed keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_point: Option<u64>,
}

/// `POST /partitions/{id}/merge` body: merge the partition with the one right above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergePartitionRequest {
    /// The adjacent partition above (held by the same primary and replicas).
    pub right_partition: PartitionId,
}

/// `POST /partitions/{id}/move` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovePartitionRequest {
    /// Node to receive the copy.
    pub target_node: NodeId,
    /// Node giving its copy up; default: the primary (which moves the primary role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<NodeId>,
}

/// One operation, as `GET /operations` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationDescription {
    /// Operation id.
    pub operation_id: OperationId,
    /// Partition operated on (for a completed split, the parent, now gone).
    pub partition_id: PartitionId,
    /// Table name (`None` once the table is gone).
    pub table_name: Option<String>,
    /// `split`, `merge` or `move`.
    pub kind: String,
    /// Split: the requested split point, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_point: Option<u64>,
    /// Merge: the partition above, merged into this one's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_partition: Option<PartitionId>,
    /// Merge: the partition made, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_partition: Option<PartitionId>,
    /// Move: the node giving its copy up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<NodeId>,
    /// Move: the node receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_node: Option<NodeId>,
    /// Current (or last) step.
    pub step: OperationStep,
    /// `RUNNING`, `COMPLETED`, `ROLLED_BACK` or `FAILED`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Time from start to end (or to now, while running), in milliseconds.
    pub elapsed_ms: u64,
    /// Time in the current step, in milliseconds (while running).
    pub step_elapsed_ms: u64,
    /// Retries of the current step.
    pub attempts: u32,
    /// Progress of the current step, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<OperationProgress>,
    /// What a completed split made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitResult>,
    /// How long writes were paused for the switch, in milliseconds, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_pause_ms: Option<u64>,
}

impl OperationDescription {
    /// Describes `op` at `now_ms`, naming its table `table_name`.
    pub fn of(op: &Operation, table_name: Option<String>, now_ms: u64) -> Self {
        let (kind, split_point, from_node, to_node) = match op.kind {
            OperationKind::Split { split_point } => ("split", split_point, None, None),
            OperationKind::Move { from, to } => ("move", None, Some(from), Some(to)),
            OperationKind::Merge { .. } => ("merge", None, None, None),
        };
        let right_partition = match op.kind {
            OperationKind::Merge { right } => Some(right),
            _ => None,
        };
        let merged_partition = op
            .derivation()
            .filter(|_| right_partition.is_some())
            .and_then(|d| d.children.first().copied());
        let (status, failure_reason) = match &op.status {
            OperationStatus::Running => ("RUNNING", None),
            OperationStatus::Completed => ("COMPLETED", None),
            OperationStatus::RolledBack => ("ROLLED_BACK", None),
            OperationStatus::Failed { reason } => ("FAILED", Some(reason.clone())),
        };
        let end = op.finished_at_ms.unwrap_or(now_ms);
        OperationDescription {
            operation_id: op.operation_id,
            partition_id: op.partition_id,
            table_name,
            kind: kind.to_string(),
            split_point,
            right_partition,
            merged_partition,
            from_node,
            to_node,
            step: op.step,
            status: status.to_string(),
            failure_reason,
            requested_by: op.requested_by.clone(),
            started_at: super::format_millis(op.started_at_ms),
            finished_at: op.finished_at_ms.map(super::format_millis),
            elapsed_ms: end.saturating_sub(op.started_at_ms),
            step_elapsed_ms: end.saturating_sub(op.step_started_at_ms),
            attempts: op.attempts,
            progress: op.progress,
            split: op.split,
            write_pause_ms: op.write_pause_ms,
        }
    }

    /// Whether it has ended.
    pub fn finished(&self) -> bool {
        self.status != "RUNNING"
    }
}

/// `GET /operations` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOperationsResponse {
    /// Running and recently finished operations, oldest first.
    pub operations: Vec<OperationDescription>,
}
