//! Entities of the metadata store: tables, schema versions, partitions, nodes,
//! principals, signing keys and multi-step operations (split, move).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::auth::SecretHash;

/// Identifier of a table, assigned by the state machine (never reused).
pub type TableId = u64;
/// Identifier of a partition, assigned by the state machine (never reused).
pub type PartitionId = u64;
/// Identifier of an agent (also its Raft node id).
pub type NodeId = u64;
/// Milliseconds since the Unix epoch; always passed in, never read from a clock here.
pub type UnixMillis = u64;
/// Identifier of a multi-step operation, assigned by the state machine (never reused).
pub type OperationId = u64;

/// Lifecycle status of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableStatus {
    /// Accepted; partitions not yet assigned or not yet allocated everywhere.
    Creating,
    /// Every partition is allocated on every replica.
    Active,
    /// Deletion requested; agents are releasing storage.
    Deleting,
    /// A capacity change is being applied.
    Scaling,
}

/// How capacity is billed and sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CapacityMode {
    /// Fixed read and write units.
    Provisioned,
    /// Pay per request; starts at a configured partition count.
    OnDemand,
}

/// Provisioned capacity of a table (units are zero for ON_DEMAND).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capacity {
    /// Capacity mode.
    pub mode: CapacityMode,
    /// Read capacity units (RCU).
    pub read_units: u64,
    /// Write capacity units (WCU).
    pub write_units: u64,
}

/// Type of a schema attribute, named as DynamoDB names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttributeType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
    /// Boolean.
    #[serde(rename = "BOOL")]
    Bool,
    /// Null.
    #[serde(rename = "NULL")]
    Null,
    /// String set.
    #[serde(rename = "SS")]
    StringSet,
    /// Number set.
    #[serde(rename = "NS")]
    NumberSet,
    /// Binary set.
    #[serde(rename = "BS")]
    BinarySet,
    /// List.
    L,
    /// Map.
    M,
}

impl AttributeType {
    /// Whether a key attribute (partition or sort key) may have this type.
    pub fn is_key_type(self) -> bool {
        matches!(self, AttributeType::S | AttributeType::N | AttributeType::B)
    }
}

/// One named, typed attribute of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    /// Attribute name.
    pub name: String,
    /// Attribute type.
    #[serde(rename = "type")]
    pub attr_type: AttributeType,
}

/// An immutable version of a table's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// Table the schema belongs to.
    pub table_id: TableId,
    /// Version number, 1 for the schema given at creation, then +1 each change.
    pub version: u32,
    /// Attributes; always contains the key attributes.
    pub attributes: Vec<Attribute>,
    /// When this version was committed.
    pub created_at_ms: UnixMillis,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Table id.
    pub table_id: TableId,
    /// Unique name.
    pub table_name: String,
    /// Name of the partition-key attribute.
    pub partition_key: String,
    /// Name of the sort-key attribute, if any.
    pub sort_key: Option<String>,
    /// Lifecycle status.
    pub status: TableStatus,
    /// Current capacity.
    pub capacity: Capacity,
    /// Current schema version number.
    pub schema_version_id: u32,
    /// When the table was created.
    pub created_at_ms: UnixMillis,
    /// When the status last changed (used by controllers for timeouts).
    pub status_changed_at_ms: UnixMillis,
}

/// An inclusive range of the 64-bit hashed partition-key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRange {
    /// Lowest hash in the range (inclusive).
    pub low: u64,
    /// Highest hash in the range (inclusive).
    pub high: u64,
}

impl KeyRange {
    /// The whole key space.
    pub const FULL: KeyRange = KeyRange {
        low: 0,
        high: u64::MAX,
    };

    /// Whether `hash` falls in this range.
    pub fn contains(&self, hash: u64) -> bool {
        self.low <= hash && hash <= self.high
    }
}

/// Status of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartitionStatus {
    /// Serving normally.
    Healthy,
    /// Being split.
    Splitting,
    /// A replica is being moved.
    Migrating,
    /// Being merged with its neighbour (both partitions of the merge show it).
    Merging,
}

/// A partition: a contiguous range of a table's hashed key space and its replica set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Partition id.
    pub partition_id: PartitionId,
    /// Owning table.
    pub table_id: TableId,
    /// Hashed key range covered.
    pub range: KeyRange,
    /// Node serving as primary.
    pub primary_node_id: NodeId,
    /// Other replicas (never contains the primary).
    pub replica_node_ids: Vec<NodeId>,
    /// Routing epoch; grows on every routing change.
    pub epoch: u64,
    /// Status.
    pub status: PartitionStatus,
    /// Nodes (primary or replicas) that have allocated storage at the current epoch.
    pub ready_node_ids: BTreeSet<NodeId>,
    /// Nodes that released storage after the table was marked DELETING.
    pub released_node_ids: BTreeSet<NodeId>,
}

impl Partition {
    /// The primary followed by the replicas.
    pub fn all_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.primary_node_id).chain(self.replica_node_ids.iter().copied())
    }

    /// Whether `other` has the same primary and the same replicas (in any order).
    pub fn same_members(&self, other: &Partition) -> bool {
        let sorted = |p: &Partition| {
            let mut r = p.replica_node_ids.clone();
            r.sort_unstable();
            r
        };
        self.primary_node_id == other.primary_node_id && sorted(self) == sorted(other)
    }

    /// Whether every node of the replica set reported ready.
    pub fn is_ready(&self) -> bool {
        self.all_nodes().all(|n| self.ready_node_ids.contains(&n))
    }
}

/// Status of a node as recorded in the metadata store (or, for `Suspected`, as shown).
///
/// Committed transitions: HEALTHY or DRAINING → FAILED (`NodeFailed`), HEALTHY →
/// DRAINING (`DrainNode`), FAILED or DRAINING → DECOMMISSIONED (`DecommissionNode`, once
/// it owns nothing), FAILED → HEALTHY, or DRAINING when a drain was requested
/// (`RegisterNode` with a new incarnation). DECOMMISSIONED is final: an operator removed
/// the node, and a restart of its agent does not bring it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Alive; takes new partitions.
    Healthy,
    /// Suspected by gossip: only shown by agents, never committed by any command.
    Suspected,
    /// Declared failed by the leader; recovery moves its partitions elsewhere.
    Failed,
    /// Takes no new work; its partitions are being moved off.
    Draining,
    /// Removed by an operator; owns nothing.
    Decommissioned,
}

impl NodeStatus {
    /// Whether new partitions or replicas may be placed on a node in this status.
    pub fn accepts_new_work(self) -> bool {
        self == NodeStatus::Healthy
    }
}

/// An agent known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node id (also the Raft node id).
    pub node_id: NodeId,
    /// HTTP API endpoint, e.g. `http://127.0.0.1:7070`.
    pub endpoint: String,
    /// QUIC peer address, e.g. `127.0.0.1:7100`.
    pub peer_addr: String,
    /// Availability zone ("" when zones are not used).
    pub zone: String,
    /// Health status.
    pub status: NodeStatus,
    /// Last committed proof of life.
    pub last_heartbeat_at_ms: UnixMillis,
    /// Incarnation; grows every time the agent restarts.
    pub incarnation: u64,
    /// Partitions for which this node is primary or replica (derived, kept in sync by apply).
    pub partition_ids: BTreeSet<PartitionId>,
    /// An operator asked to remove the node once drained: decommission it when it owns nothing.
    #[serde(default)]
    pub remove_when_drained: bool,
    /// When the status last changed (proposer's clock).
    #[serde(default)]
    pub status_changed_at_ms: UnixMillis,
    /// An operator asked to drain the node (`DrainNode`), and it has not been
    /// decommissioned since: a FAILED node that restarts comes back DRAINING, not HEALTHY.
    #[serde(default)]
    pub drain_requested: bool,
}

/// A principal: who may authenticate (with its secret) and be granted access policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `arn:<cluster>:principal/<name>`; the key of the registry.
    pub arn: String,
    /// Name, unique in the cluster (`[A-Za-z0-9_.-]`, 1 to 64 characters).
    pub name: String,
    /// Salted hash of the secret; the secret itself is never stored.
    pub secret: SecretHash,
    /// Cluster administrator: may manage principals, every table and its policies.
    pub admin: bool,
    /// When the principal was created (proposer's clock).
    pub created_at_ms: UnixMillis,
}

/// The public half of a voter's Ed25519 signing key, as published in the metadata store.
/// The private half never leaves its voter's key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// Key id (the JWT `kid`), unique in the cluster and never reused.
    pub kid: String,
    /// Ed25519 public key (a valid curve point, checked when published).
    pub public_key: [u8; 32],
    /// The voter holding the private half.
    pub node_id: NodeId,
    /// When it was published (proposer's clock).
    pub created_at_ms: UnixMillis,
    /// When it stopped signing; `None` while it may sign.
    pub retired_at_ms: Option<UnixMillis>,
    /// Once retired, it verifies tokens until this time (exclusive), then is dropped.
    /// Set exactly when `retired_at_ms` is.
    pub trusted_until_ms: Option<UnixMillis>,
}

impl SigningKeyRecord {
    /// Whether the key may still sign (it is not retired).
    pub fn is_active(&self) -> bool {
        self.retired_at_ms.is_none()
    }

    /// Whether tokens signed by this key still verify at `now_ms`: not retired, or
    /// retired and `now_ms` is before `trusted_until_ms`.
    pub fn is_trusted_at(&self, now_ms: UnixMillis) -> bool {
        self.trusted_until_ms.is_none_or(|until| now_ms < until)
    }
}

/// What a multi-step operation does to its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationKind {
    /// Split the partition in place into two children on the same nodes.
    Split {
        /// Requested split point (first hash of the right child); `None`: the median
        /// of the partition's hashed keys, chosen from the data while `Preparing`.
        split_point: Option<u64>,
    },
    /// Move the copy held by `from` to `to` (the primary role follows the copy).
    Move {
        /// Node giving up its copy (primary or replica).
        from: NodeId,
        /// Node receiving the copy (HEALTHY, not yet a member).
        to: NodeId,
    },
    /// Merge the partition with `right`, the adjacent partition above it held by the
    /// same primary and replicas, into one partition on the same nodes.
    Merge {
        /// The partition whose range starts right after this one's.
        right: PartitionId,
    },
}

/// The step an operation is at. Each kind has its own steps, in this order:
///
/// - Split and merge: `Preparing` → `Fencing` → `Switched`;
/// - Move: `Copying` → `CatchingUp` → `Switching` → `DroppingSource`.
///
/// Steps only move forward. The last step of each kind (`Switched`, `DroppingSource`)
/// means the routing changed; only the commit command (`SplitPartition`,
/// `MergePartitions`, `CommitMove`)
/// enters it, so a leader that finds an operation before it knows the routing is as it
/// was, and one that finds it there knows the switch happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStep {
    /// Split: choosing the split point from the partition's hashed keys (when none was
    /// given) and staging the children; merge: staging the merged copy. Writes flow
    /// normally.
    Preparing,
    /// Split or merge: the primary fences writes for the commit's round trip.
    Fencing,
    /// Split or merge: `SplitPartition` or `MergePartitions` committed; the new
    /// partitions serve (the operation completed).
    Switched,
    /// Move: background copy of a consistent snapshot from the primary to `to`.
    Copying,
    /// Move: streaming the writes that arrived since the snapshot until the lag is small.
    CatchingUp,
    /// Move: writes paused, the tail is sent; `CommitMove` comes next.
    Switching,
    /// Move: `CommitMove` committed, `to` serves; `from` drops its old copy.
    DroppingSource,
}

impl OperationStep {
    /// The steps of `kind`, in order.
    pub fn steps_of(kind: &OperationKind) -> &'static [OperationStep] {
        match kind {
            OperationKind::Split { .. } | OperationKind::Merge { .. } => {
                &[Self::Preparing, Self::Fencing, Self::Switched]
            }
            OperationKind::Move { .. } => &[
                Self::Copying,
                Self::CatchingUp,
                Self::Switching,
                Self::DroppingSource,
            ],
        }
    }

    /// The step an operation of `kind` starts at.
    pub fn first_of(kind: &OperationKind) -> OperationStep {
        Self::steps_of(kind)[0]
    }

    /// Position of this step among the steps of `kind`; `None` if it is not one of them.
    pub fn position_in(self, kind: &OperationKind) -> Option<usize> {
        Self::steps_of(kind).iter().position(|s| *s == self)
    }

    /// Whether this step means the routing switched (entered only by a commit command).
    pub fn is_switched(self) -> bool {
        matches!(self, Self::Switched | Self::DroppingSource)
    }
}

/// Outcome of an operation so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// In progress; the partition is SPLITTING or MIGRATING.
    Running,
    /// Done: the routing switched (and, for a move, the old copy was dropped).
    Completed,
    /// Abandoned before the routing switched; the routing is as it was.
    RolledBack,
    /// Gave up (e.g. a step exhausted its retries); `step` tells whether the routing
    /// switched.
    Failed {
        /// Why, for operators.
        reason: String,
    },
}

impl OperationStatus {
    /// Whether the operation finished (any status but `Running`).
    pub fn is_finished(&self) -> bool {
        *self != OperationStatus::Running
    }
}

/// Progress of the current step, in bytes (e.g. of the copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationProgress {
    /// Bytes done so far.
    pub done_bytes: u64,
    /// Bytes to do in all, when known (never below `done_bytes`).
    pub total_bytes: Option<u64>,
}

/// What a split made: the split point and the two children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SplitResult {
    /// First hash of the right child.
    pub split_point: u64,
    /// Child covering `[parent.low, split_point - 1]`.
    pub left: PartitionId,
    /// Child covering `[split_point, parent.high]`.
    pub right: PartitionId,
}

/// A multi-step operation (split or move) on one partition, as recorded in the metadata
/// store so that any leader can resume or roll it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Operation id.
    pub operation_id: OperationId,
    /// Table of the partition.
    pub table_id: TableId,
    /// Partition operated on (for a completed split, the parent, now gone).
    pub partition_id: PartitionId,
    /// Split or move.
    pub kind: OperationKind,
    /// Current (or, once finished, last) step.
    pub step: OperationStep,
    /// Running or how it ended.
    pub status: OperationStatus,
    /// Who asked for it: `scaler`, or an operator's principal.
    pub requested_by: String,
    /// When it started (proposer's clock).
    pub started_at_ms: UnixMillis,
    /// When the current step started, or was last retried (proposer's clock).
    pub step_started_at_ms: UnixMillis,
    /// When it finished; `None` while running.
    pub finished_at_ms: Option<UnixMillis>,
    /// Retries of the current step (0 on the first try).
    pub attempts: u32,
    /// Progress of the current step, when the step reports one.
    pub progress: Option<OperationProgress>,
    /// What a completed split made; `None` otherwise.
    pub split: Option<SplitResult>,
    /// How long writes were paused for the switch, once finished (driver's measure).
    #[serde(default)]
    pub write_pause_ms: Option<u64>,
    /// Split: the ids its children will have, reserved when it started, so that replicas
    /// can stage the children's data before the switch.
    #[serde(default)]
    pub reserved_children: Option<(PartitionId, PartitionId)>,
    /// Merge: the id the merged partition will have, reserved when it started.
    #[serde(default)]
    pub reserved_merged: Option<PartitionId>,
}

/// Partitions made from others' data in place by a committed split or merge: each new
/// partition holds the items of the sources whose key hashes fall in its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The partitions the data comes from (gone from the routing).
    pub sources: Vec<PartitionId>,
    /// The partitions made, in key order.
    pub children: Vec<PartitionId>,
}

impl Operation {
    /// Whether the operation is still running.
    pub fn is_running(&self) -> bool {
        self.status == OperationStatus::Running
    }

    /// The partition status that marks a partition under an operation of this kind.
    pub fn partition_status(&self) -> PartitionStatus {
        match self.kind {
            OperationKind::Split { .. } => PartitionStatus::Splitting,
            OperationKind::Move { .. } => PartitionStatus::Migrating,
            OperationKind::Merge { .. } => PartitionStatus::Merging,
        }
    }

    /// The partitions the operation holds: its own, and a merge's right neighbour.
    pub fn partitions(&self) -> Vec<PartitionId> {
        match self.kind {
            OperationKind::Merge { right } => vec![self.partition_id, right],
            _ => vec![self.partition_id],
        }
    }

    /// What a committed split or merge derived, and from what; `None` otherwise.
    pub fn derivation(&self) -> Option<Derivation> {
        match self.kind {
            OperationKind::Split { .. } => self.split.map(|r| Derivation {
                sources: vec![self.partition_id],
                children: vec![r.left, r.right],
            }),
            OperationKind::Merge { right } if self.step == OperationStep::Switched => {
                Some(Derivation {
                    sources: vec![self.partition_id, right],
                    children: vec![self.reserved_merged?],
                })
            }
            _ => None,
        }
    }
}
