//! Entities of the metadata store: tables, schema versions, partitions, nodes,
//! principals and signing keys.

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
