//! Commands of the metadata state machine, their outcomes and their errors.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::auth::{Action, Effect, SecretHash};
use crate::model::{
    Attribute, Capacity, KeyRange, NodeId, NodeStatus, OperationId, OperationKind,
    OperationProgress, OperationStatus, OperationStep, PartitionId, TableId, TableStatus,
    UnixMillis,
};

/// What a client asks for when creating a table (already validated for shape by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Table name.
    pub table_name: String,
    /// Partition-key attribute name.
    pub partition_key: String,
    /// Sort-key attribute name.
    pub sort_key: Option<String>,
    /// Requested capacity.
    pub capacity: Capacity,
    /// Initial schema attributes (must include the key attributes).
    pub attributes: Vec<Attribute>,
}

/// Placement of one new partition, as decided by the Partition Assigner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Key range covered.
    pub range: KeyRange,
    /// Primary node.
    pub primary_node_id: NodeId,
    /// Other replicas.
    pub replica_node_ids: Vec<NodeId>,
}

/// New replica set of one existing partition, as decided by the Recovery Coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// Partition to change.
    pub partition_id: PartitionId,
    /// Epoch the plan was made against; the change applies only at that epoch.
    pub expected_epoch: u64,
    /// New primary node.
    pub primary_node_id: NodeId,
    /// New other replicas.
    pub replica_node_ids: Vec<NodeId>,
}

/// A command of the metadata state machine. Every command is validated by `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Names the cluster; only the first one takes effect.
    InitCluster {
        /// Cluster id.
        cluster_id: String,
    },
    /// An agent announces itself (first join or restart with a new incarnation).
    RegisterNode {
        /// Node id.
        node_id: NodeId,
        /// HTTP endpoint.
        endpoint: String,
        /// QUIC peer address.
        peer_addr: String,
        /// Zone.
        zone: String,
        /// Incarnation; must not go backwards.
        incarnation: u64,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Creates a table in CREATING with schema version 1.
    CreateTable {
        /// The table.
        spec: TableSpec,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Gives a CREATING table its partitions (they must tile the key space).
    AssignPartitions {
        /// Table.
        table_id: TableId,
        /// Partitions, in any order.
        partitions: Vec<PartitionAssignment>,
    },
    /// A node allocated storage for these partitions.
    PartitionsReady {
        /// Reporting node.
        node_id: NodeId,
        /// Partitions now allocated on that node.
        partition_ids: Vec<PartitionId>,
    },
    /// Marks a CREATING or SCALING table ACTIVE (all partitions ready).
    ActivateTable {
        /// Table.
        table_id: TableId,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Records a new capacity; the table goes to SCALING.
    UpdateCapacity {
        /// Table name.
        table_name: String,
        /// New capacity.
        capacity: Capacity,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Adds a new immutable schema version (key attributes unchanged).
    AddSchemaVersion {
        /// Table name.
        table_name: String,
        /// Attributes of the new version.
        attributes: Vec<Attribute>,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Marks a table DELETING.
    DeleteTable {
        /// Table name.
        table_name: String,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// A node released the storage of these partitions of DELETING tables.
    PartitionsReleased {
        /// Reporting node.
        node_id: NodeId,
        /// Released partitions.
        partition_ids: Vec<PartitionId>,
    },
    /// Removes a DELETING table, its partitions and schema versions.
    PurgeTable {
        /// Table.
        table_id: TableId,
    },
    /// The leader's exactly-once decision that one incarnation of a node is dead.
    /// Only the status changes; recovery of its partitions is `RepairPartitions`.
    NodeFailed {
        /// Node.
        node_id: NodeId,
        /// Incarnation judged dead; an older one is stale (the node restarted since).
        incarnation: u64,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Replaces the replica sets of existing partitions, all or none. A set holds at most
    /// `MAX_REPLICATION_FACTOR` nodes (a drain may keep one above the replication factor
    /// while the replacement is filled); a changed primary must be a ready member of the
    /// current set whenever a ready member stays.
    RepairPartitions {
        /// One change per partition, each at most once.
        changes: Vec<PartitionChange>,
    },
    /// Stops placing new work on a node so its partitions can be moved off. On a FAILED
    /// node only `remove: true` is accepted: it stays FAILED and is decommissioned once
    /// recovery moved its partitions off.
    DrainNode {
        /// Node.
        node_id: NodeId,
        /// Decommission the node once it owns nothing (never cleared by a later drain).
        remove: bool,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Removes a DRAINING or FAILED node that owns no partitions from service.
    DecommissionNode {
        /// Node.
        node_id: NodeId,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// A node holds the data of these partitions as of these epochs (a copy filled from
    /// its primary). Rejected (`StaleEpoch`, nothing changed) if any partition has moved
    /// to another epoch since: the copy may lack writes acknowledged without it.
    PartitionsReadyAt {
        /// Reporting node.
        node_id: NodeId,
        /// (partition, epoch the copy was filled at).
        partitions: Vec<(PartitionId, u64)>,
    },
    /// Registers principal `arn:<cluster>:principal/<name>` (the cluster id must be set).
    /// The first principal must be an admin, so the cluster always has one.
    CreatePrincipal {
        /// Name, unique in the cluster.
        name: String,
        /// Salted hash of its secret (the secret itself never enters the log).
        secret: SecretHash,
        /// Cluster administrator.
        admin: bool,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Removes a principal and all its access policies. The last admin cannot be
    /// removed (`LastAdmin`), so the cluster is never locked out.
    DeletePrincipal {
        /// Principal ARN.
        arn: String,
    },
    /// Writes the access policy of one principal on one table (replacing any previous
    /// one); answers its new version.
    PutPolicy {
        /// Table name.
        table_name: String,
        /// Principal ARN.
        principal_arn: String,
        /// Actions covered (at least one).
        actions: BTreeSet<Action>,
        /// Allow or deny.
        effect: Effect,
    },
    /// Removes the access policy of one principal on one table (`Unchanged` if none).
    DeletePolicy {
        /// Table name.
        table_name: String,
        /// Principal ARN.
        principal_arn: String,
    },
    /// Publishes the public half of a voter's new signing key.
    PublishSigningKey {
        /// Key id, unique and never reused.
        kid: String,
        /// Ed25519 public key.
        public_key: [u8; 32],
        /// The voter holding the private half.
        node_id: NodeId,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Stops a key from signing; it still verifies tokens until `trusted_until_ms`
    /// (which the proposer sets past the expiry of every token the key signed, plus the
    /// verifiers' clock skew). Retiring a retired key only moves `trusted_until_ms`.
    RetireSigningKey {
        /// Key id.
        kid: String,
        /// Proposer's clock.
        now_ms: UnixMillis,
        /// Trusted for verification until then (exclusive); at or before `now_ms` the
        /// key is untrusted at once (a compromised key).
        trusted_until_ms: UnixMillis,
    },
    /// Drops retired keys no longer trusted at `now_ms`.
    DropExpiredKeys {
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Revokes a credential until its token would expire.
    RevokeCredential {
        /// The token's `jti`.
        jti: String,
        /// When the token expires, plus the verifiers' clock skew (after this the
        /// entry may be garbage-collected).
        expires_at_ms: UnixMillis,
    },
    /// Forgets revocations of tokens expired at `now_ms` (`expires_at_ms <= now_ms`).
    GcRevocations {
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Records a new split or move of a partition (answers `OperationStarted`) and marks
    /// the partition SPLITTING or MIGRATING. Refused while another operation runs on the
    /// partition (`OperationRunning`, naming it, so a retried start can adopt it).
    StartOperation {
        /// Partition to operate on (its table must be ACTIVE or SCALING).
        partition_id: PartitionId,
        /// Split or move.
        kind: OperationKind,
        /// Who asks: `scaler`, or an operator's principal.
        requested_by: String,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Moves a running operation forward to `step` (a later step of its kind, not the
    /// switched one, which only the commit enters), or updates the progress of its
    /// current step. A stale or repeated advance is `Unchanged`.
    AdvanceOperation {
        /// Operation.
        operation_id: OperationId,
        /// Step to be at.
        step: OperationStep,
        /// Progress within `step`; within the same step it only grows.
        progress: Option<OperationProgress>,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Starts retry number `attempt` (1, 2, ...) of the current step: clears the
    /// progress and restarts the step's clock. A repeated or stale retry is `Unchanged`.
    RetryOperationStep {
        /// Operation.
        operation_id: OperationId,
        /// The step retried (must be the current one).
        step: OperationStep,
        /// The attempts count after this retry; at most `MAX_STEP_ATTEMPTS`.
        attempt: u32,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Ends an operation: `Completed` once the routing switched, `RolledBack` before it,
    /// `Failed` at any step. The partition returns to HEALTHY. Repeats are `Unchanged`.
    FinishOperation {
        /// Operation.
        operation_id: OperationId,
        /// How it ended (not `Running`).
        status: OperationStatus,
        /// Proposer's clock.
        now_ms: UnixMillis,
        /// How long writes were paused for the switch, as the driver measured it.
        write_pause_ms: Option<u64>,
    },
    /// Atomically replaces `parent` by two children `[low, split_point - 1]` and
    /// `[split_point, high]` on the parent's nodes, each at the parent's epoch + 1
    /// (answers `PartitionSplit`). With `operation_id`, that running split operation
    /// completes; a retry after it completed is `Unchanged`. Without one, the split is
    /// a bare atomic command, refused while any operation runs on the parent.
    SplitPartition {
        /// The split operation this commits, if any.
        operation_id: Option<OperationId>,
        /// Partition to split.
        parent: PartitionId,
        /// First hash of the right child; strictly inside the parent's range.
        split_point: u64,
        /// The parent's epoch the split was fenced at.
        expected_epoch: u64,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Atomically replaces the adjacent partitions `left` and `right` (same primary, same
    /// replicas) by one partition covering both ranges, on the same nodes, at the
    /// higher of their epochs + 1, with the id the merge reserved (answers
    /// `PartitionsMerged`). The running merge operation completes; a retry after that is
    /// `Unchanged`.
    MergePartitions {
        /// The merge operation (at step `Fencing`).
        operation_id: OperationId,
        /// The lower partition (the operation's own).
        left: PartitionId,
        /// The upper partition.
        right: PartitionId,
        /// The epochs of `left` and `right` the merge was fenced at.
        expected_epochs: (u64, u64),
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// The routing swap of a move: `to` replaces `from` in the replica set (as primary if
    /// `from` was), at epoch + 1; `to` is ready, `from` leaves. The operation moves to
    /// `DroppingSource`; a retry after that is `Unchanged`.
    CommitMove {
        /// The move operation (at step `Switching`).
        operation_id: OperationId,
        /// Its partition.
        partition_id: PartitionId,
        /// Its source node.
        from: NodeId,
        /// Its target node.
        to: NodeId,
        /// The epoch the move was caught up at.
        expected_epoch: u64,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
    /// Cancels a drain or removal: a DRAINING node takes new work again (HEALTHY); a
    /// FAILED one is no longer marked for removal. Partitions already moved off stay.
    CancelDrain {
        /// Node.
        node_id: NodeId,
        /// Proposer's clock.
        now_ms: UnixMillis,
    },
}

/// The result of a command that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOutcome {
    /// Applied; nothing else to report (older commands also answer idempotent repeats so).
    Done,
    /// A table was created.
    TableCreated {
        /// Its id.
        table_id: TableId,
    },
    /// A schema version was added.
    SchemaVersionAdded {
        /// Its number.
        version: u32,
    },
    /// Partitions were created.
    PartitionsAssigned {
        /// Their ids, in the order of the command.
        partition_ids: Vec<PartitionId>,
    },
    /// A repeated or stale command; nothing changed.
    Unchanged,
    /// An access policy was written.
    PolicyVersion {
        /// Its version for this table and principal: 1 for the first put, then +1 on
        /// every put (it starts at 1 again after the policy was deleted).
        version: u64,
    },
    /// An operation was recorded.
    OperationStarted {
        /// Its id.
        operation_id: OperationId,
    },
    /// A partition was split.
    PartitionSplit {
        /// Child covering the lower part of the parent's range.
        left: PartitionId,
        /// Child covering the upper part, from the split point.
        right: PartitionId,
    },
    /// Two partitions were merged.
    PartitionsMerged {
        /// The partition covering both ranges.
        merged: PartitionId,
    },
}

/// Why a command was rejected. A rejected command changes no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    /// The request is malformed (name, key or schema rules); nothing changed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A table with this name exists; nothing changed.
    #[error("table {0} already exists")]
    TableExists(String),
    /// No such table; nothing changed.
    #[error("table {0} not found")]
    TableNotFound(String),
    /// The table's status does not allow the operation; nothing changed.
    #[error("table {name} is {status:?}, the operation needs {needed}")]
    TableWrongStatus {
        /// Table name.
        name: String,
        /// Current status.
        status: TableStatus,
        /// What the operation needs.
        needed: String,
    },
    /// The new schema changes key attributes; nothing changed.
    #[error("incompatible schema: {0}")]
    IncompatibleSchema(String),
    /// A node id is unknown or not live; nothing changed.
    #[error("node {0} is unknown or not live")]
    UnknownNode(NodeId),
    /// A partition id is unknown; nothing changed.
    #[error("partition {0} not found")]
    UnknownPartition(PartitionId),
    /// A placement breaks an invariant (tiling, distinct replicas, a promotion of a node
    /// that does not hold the data); nothing changed.
    #[error("invalid placement: {0}")]
    InvalidPlacement(String),
    /// A node tried to register with an older incarnation; nothing changed.
    #[error("node {node_id} incarnation {got} is older than {current}")]
    StaleIncarnation {
        /// Node.
        node_id: NodeId,
        /// Offered incarnation.
        got: u64,
        /// Recorded incarnation.
        current: u64,
    },
    /// A partition changed since the plan was made; nothing changed.
    #[error("partition {partition_id} is at epoch {current}, the change expected {expected}")]
    StaleEpoch {
        /// Partition.
        partition_id: PartitionId,
        /// Epoch the change was planned against.
        expected: u64,
        /// Current epoch.
        current: u64,
    },
    /// The node's status does not allow the operation; nothing changed.
    #[error("node {node_id} is {status:?}, the operation needs {needed}")]
    NodeWrongStatus {
        /// Node.
        node_id: NodeId,
        /// Current status.
        status: NodeStatus,
        /// What the operation needs.
        needed: String,
    },
    /// A principal with this ARN exists; nothing changed.
    #[error("principal {0} already exists")]
    PrincipalExists(String),
    /// No principal with this ARN; nothing changed.
    #[error("principal {0} not found")]
    PrincipalNotFound(String),
    /// The principal is the last cluster admin, whose removal would lock the cluster
    /// out; nothing changed.
    #[error("principal {0} is the last admin; create another admin first")]
    LastAdmin(String),
    /// No operation with this id was ever recorded (or, for a commit, its record was
    /// dropped from the bounded history); nothing changed.
    #[error("operation {0} not found")]
    UnknownOperation(OperationId),
    /// Another operation runs on the partition (two never run on one partition at
    /// once); nothing changed.
    #[error("operation {operation_id} is running on partition {partition_id}")]
    OperationRunning {
        /// Partition.
        partition_id: PartitionId,
        /// The running operation.
        operation_id: OperationId,
    },
    /// The operation already finished otherwise; nothing changed.
    #[error("operation {operation_id} already finished as {status:?}")]
    OperationFinished {
        /// Operation.
        operation_id: OperationId,
        /// How it finished.
        status: OperationStatus,
    },
    /// The operation's step does not allow the command; nothing changed.
    #[error("operation {operation_id} is at step {step:?}, the command needs {needed}")]
    OperationWrongStep {
        /// Operation.
        operation_id: OperationId,
        /// Current step.
        step: OperationStep,
        /// What the command needs.
        needed: String,
    },
}

/// HTTP-independent classification of an error, mapped to a status at the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Client error in the request (400).
    BadRequest,
    /// Something named does not exist (404).
    NotFound,
    /// Conflicts with the current state (409).
    Conflict,
}

impl MetaError {
    /// How the API edge should report this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            MetaError::Invalid(_) | MetaError::IncompatibleSchema(_) => ErrorClass::BadRequest,
            MetaError::TableNotFound(_)
            | MetaError::UnknownPartition(_)
            | MetaError::PrincipalNotFound(_)
            | MetaError::UnknownOperation(_) => ErrorClass::NotFound,
            MetaError::TableExists(_)
            | MetaError::PrincipalExists(_)
            | MetaError::LastAdmin(_)
            | MetaError::TableWrongStatus { .. }
            | MetaError::UnknownNode(_)
            | MetaError::InvalidPlacement(_)
            | MetaError::StaleIncarnation { .. }
            | MetaError::StaleEpoch { .. }
            | MetaError::NodeWrongStatus { .. }
            | MetaError::OperationRunning { .. }
            | MetaError::OperationFinished { .. }
            | MetaError::OperationWrongStep { .. } => ErrorClass::Conflict,
        }
    }

    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            MetaError::Invalid(_) => "InvalidRequest",
            MetaError::TableExists(_) => "TableAlreadyExists",
            MetaError::TableNotFound(_) => "TableNotFound",
            MetaError::TableWrongStatus { .. } => "TableNotReady",
            MetaError::IncompatibleSchema(_) => "IncompatibleSchema",
            MetaError::UnknownNode(_) => "UnknownNode",
            MetaError::UnknownPartition(_) => "PartitionNotFound",
            MetaError::InvalidPlacement(_) => "InvalidPlacement",
            MetaError::StaleIncarnation { .. } => "StaleIncarnation",
            MetaError::StaleEpoch { .. } => "StaleEpoch",
            MetaError::NodeWrongStatus { .. } => "NodeWrongStatus",
            MetaError::PrincipalExists(_) => "PrincipalExists",
            MetaError::PrincipalNotFound(_) => "PrincipalNotFound",
            MetaError::LastAdmin(_) => "LastAdmin",
            MetaError::UnknownOperation(_) => "OperationNotFound",
            MetaError::OperationRunning { .. } => "OperationInProgress",
            MetaError::OperationFinished { .. } => "OperationFinished",
            MetaError::OperationWrongStep { .. } => "OperationWrongStep",
        }
    }
}

/// What the state machine returns for each applied command.
pub type MetaResult = Result<MetaOutcome, MetaError>;
