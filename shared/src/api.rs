//! JSON request, response and error bodies of the HTTP API (shared by the agent and agentctl).

use serde::{Deserialize, Serialize};

pub mod auth;
pub mod operations;

use crate::command::{MetaError, TableSpec};
use crate::model::{
    Attribute, Capacity, CapacityMode, NodeId, NodeStatus, PartitionId, PartitionStatus,
    TableStatus,
};

/// Capacity as given by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityRequest {
    /// PROVISIONED or ON_DEMAND.
    pub mode: CapacityMode,
    /// Read units (required for PROVISIONED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_units: Option<u64>,
    /// Write units (required for PROVISIONED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_units: Option<u64>,
}

/// A schema as given by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    /// Attributes.
    pub attributes: Vec<Attribute>,
}

/// `POST /tables` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTableRequest {
    /// Table name.
    pub table_name: String,
    /// Partition-key attribute.
    pub partition_key: String,
    /// Sort-key attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
    /// Capacity.
    pub capacity: CapacityRequest,
    /// Schema.
    pub schema: SchemaRequest,
}

/// `POST /tables` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTableResponse {
    /// ARN of the new table.
    pub table_arn: String,
    /// Always CREATING.
    pub status: TableStatus,
}

/// `GET /tables/{name}` response, also an element of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDescription {
    /// ARN.
    pub table_arn: String,
    /// Name.
    pub table_name: String,
    /// Status.
    pub status: TableStatus,
    /// Number of partitions (0 until assigned).
    pub partition_count: u64,
    /// Capacity.
    pub capacity: Capacity,
    /// Partition-key attribute.
    pub partition_key: String,
    /// Sort-key attribute.
    pub sort_key: Option<String>,
    /// Current schema version.
    pub schema_version: u32,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// `GET /tables` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTablesResponse {
    /// Tables ordered by name.
    pub tables: Vec<TableDescription>,
}

/// `PUT /tables/{name}/capacity` body: `{mode, read_units?, write_units?}` as in the spec.
pub type UpdateCapacityRequest = CapacityRequest;

/// `PUT /tables/{name}/capacity` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateCapacityResponse {
    /// Always SCALING.
    pub status: TableStatus,
    /// Estimate of the time until ACTIVE.
    pub estimated_completion_seconds: u64,
}

/// `PUT /tables/{name}/schema` body.
pub type PutSchemaRequest = SchemaRequest;

/// `GET /tables/{name}/schema` and `PUT` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaResponse {
    /// Table name.
    pub table_name: String,
    /// Version number.
    pub version: u32,
    /// Attributes.
    pub attributes: Vec<Attribute>,
    /// When the version was created, RFC 3339.
    pub created_at: String,
}

/// One partition in `GET /tables/{name}/partitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    /// Partition id.
    pub partition_id: PartitionId,
    /// Lowest hash (inclusive).
    pub key_range_low: u64,
    /// Highest hash (inclusive).
    pub key_range_high: u64,
    /// Primary.
    pub primary_node_id: NodeId,
    /// Other replicas.
    pub replica_node_ids: Vec<NodeId>,
    /// Epoch.
    pub epoch: u64,
    /// Status.
    pub status: PartitionStatus,
    /// Whether every replica allocated its storage.
    pub ready: bool,
    /// Whether the partition has fewer live, ready replicas than it should (a failed node
    /// not yet replaced, or no healthy node left to take a replica).
    pub under_replicated: bool,
}

/// `GET /tables/{name}/partitions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionsResponse {
    /// Table name.
    pub table_name: String,
    /// Partitions ordered by key range.
    pub partitions: Vec<PartitionDescription>,
}

/// `GET /cluster` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResponse {
    /// Cluster id (None before bootstrap completes).
    pub cluster_id: Option<String>,
    /// Node answering.
    pub node_id: NodeId,
    /// Current leader.
    pub leader_id: Option<NodeId>,
    /// Leader's HTTP endpoint.
    pub leader_endpoint: Option<String>,
    /// Voters.
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Leader's commit index as known here.
    pub commit_index: u64,
    /// Index applied by this node's state machine.
    pub applied_index: u64,
}

/// `GET /cluster/metadata` response: the answering agent's own replica of the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataReplicaResponse {
    /// Node answering.
    pub node_id: NodeId,
    /// Index of the last entry applied to this replica.
    pub applied_index: u64,
    /// `None` when every structural invariant holds in this replica; else the first
    /// violation found.
    pub invariant_violation: Option<String>,
    /// SHA-256 of this replica's encoded state (hex): equal on every agent that applied
    /// the same entries.
    pub digest: String,
}

/// One node in `GET /clusters/{id}/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDescription {
    /// Node id.
    pub node_id: NodeId,
    /// HTTP endpoint.
    pub endpoint: String,
    /// Zone.
    pub zone: String,
    /// Status: the committed one, except that a HEALTHY node this agent's gossip view
    /// suspects (or has never heard from) shows as SUSPECTED.
    pub status: NodeStatus,
    /// Whether the node is a Raft voter.
    pub is_voter: bool,
    /// Raft role: "voter" or "learner" (or "none").
    pub raft_role: String,
    /// Partitions held (primary or replica).
    pub partitions_owned: u64,
    /// Partitions for which this node is primary.
    pub primaries_owned: u64,
    /// Incarnation.
    pub incarnation: u64,
    /// Last proof of life seen by the answering agent (direct or gossiped), RFC 3339;
    /// the registration time when it has heard nothing yet.
    pub last_heartbeat_at: String,
    /// Milliseconds since that proof of life (`null` when never heard from; 0 for the
    /// answering agent itself).
    pub heartbeat_staleness_ms: Option<u64>,
    /// Load metrics from the node's latest gossiped status report.
    pub metrics: NodeMetrics,
    /// Of a DRAINING node: partitions its drain cannot move now (no other node can take
    /// their replica at the replication factor); empty otherwise. The drain waits; add
    /// a node, or cancel it.
    #[serde(default)]
    pub drain_blocked: Vec<PartitionId>,
}

/// Load metrics of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// CPU use in percent.
    pub cpu_pct: f64,
    /// Disk use in percent.
    pub disk_pct: f64,
    /// Requests served per second by the node.
    pub ops_per_sec: f64,
    /// How far the node's metadata replica is behind the leader, in milliseconds (the
    /// data plane adds its partitions' replication lag).
    pub replication_lag_ms: u64,
}

/// Response of a node drain or removal request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainNodeResponse {
    /// Node id.
    pub node_id: NodeId,
    /// Committed status (DRAINING until it is empty and, if removed, DECOMMISSIONED).
    pub status: NodeStatus,
    /// Whether the node is decommissioned once drained.
    pub remove_when_drained: bool,
    /// Partitions still on the node.
    pub partitions_owned: u64,
}

/// `GET /clusters/{id}/nodes` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesResponse {
    /// Cluster id.
    pub cluster_id: String,
    /// Nodes ordered by id.
    pub nodes: Vec<NodeDescription>,
}

/// Response header of a `WrongPartition` (421) error: the answering agent's current
/// epoch of the key's partition, when it knows the partition.
pub const PARTITION_EPOCH_HEADER: &str = "x-partition-epoch";

/// Error code of a 421: the agent addressed is not the primary of the key's partition at
/// the epoch given; the client refreshes its routes and retries.
pub const WRONG_PARTITION_CODE: &str = "WrongPartition";

/// Error code of a 404 for a missing item.
pub const ITEM_NOT_FOUND_CODE: &str = "ItemNotFound";

/// `PUT /tables/{name}/items/{partition_key}` response: the write is durable on every
/// replica of the partition's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutItemResponse {
    /// Epoch of the primary that applied the write.
    pub epoch: u64,
    /// Log sequence number of the write in its partition.
    pub lsn: u64,
}

/// `DELETE /tables/{name}/items/{partition_key}` response (also when the item was absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteItemResponse {
    /// Epoch of the primary that applied the delete.
    pub epoch: u64,
    /// Log sequence number of the delete in its partition.
    pub lsn: u64,
}

/// `GET /tables/{name}/items/{partition_key}[?sort_key=]` response.
///
/// Keys are in the canonical text form of their attribute type (`decode_key`), e.g. the
/// N key `1.50` comes back as `1.5`. The value is the JSON text as stored, unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResponse {
    /// Partition key.
    pub partition_key: String,
    /// Sort key (tables with a sort key only).
    pub sort_key: Option<String>,
    /// The item's value.
    pub value: Box<serde_json::value::RawValue>,
}

/// One item of a [`QueryResponse`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryItem {
    /// Sort key (canonical text form).
    pub sort_key: String,
    /// The item's value, as stored.
    pub value: Box<serde_json::value::RawValue>,
}

/// `GET /tables/{name}/items/{partition_key}?sort_from=&sort_to=&limit=` response: the
/// items of one partition key in sort-key order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Partition key (canonical text form).
    pub partition_key: String,
    /// Items in ascending sort-key order.
    pub items: Vec<QueryItem>,
    /// Whether the limit cut the result short: query again with `sort_from` set to the
    /// last sort key (bounds are inclusive, so skip that first item).
    pub more: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `TableNotFound`.
    pub code: String,
    /// Human message.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// ARN of a table in a cluster.
pub fn table_arn(cluster_id: &str, table_name: &str) -> String {
    format!("arn:{cluster_id}:table/{table_name}")
}

/// Formats Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn format_millis(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

impl CapacityRequest {
    /// Checks the request and turns it into a capacity.
    pub fn to_capacity(&self) -> Result<Capacity, MetaError> {
        crate::validate::capacity_from_request(self)
    }
}

impl CreateTableRequest {
    /// A request for a table keyed by one string attribute, with no sort key: the most
    /// common shape, for clients and examples.
    pub fn with_string_key(
        table_name: &str,
        partition_key: &str,
        capacity: CapacityRequest,
    ) -> Self {
        CreateTableRequest {
            table_name: table_name.to_string(),
            partition_key: partition_key.to_string(),
            sort_key: None,
            capacity,
            schema: SchemaRequest {
                attributes: vec![Attribute {
                    name: partition_key.to_string(),
                    attr_type: crate::model::AttributeType::S,
                }],
            },
        }
    }

    /// Checks the request (names, keys, schema, capacity) and turns it into a table spec.
    pub fn into_spec(self) -> Result<TableSpec, MetaError> {
        let spec = TableSpec {
            capacity: self.capacity.to_capacity()?,
            table_name: self.table_name,
            partition_key: self.partition_key,
            sort_key: self.sort_key,
            attributes: self.schema.attributes,
        };
        crate::validate::validate_spec(&spec)?;
        Ok(spec)
    }
}
