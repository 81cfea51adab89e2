//! What the leader learns from the data planes of other agents: where each copy's log
//! stands, and how busy each partition is. The agent asks its peers' data planes over
//! the transport; `netsim` answers from its model.

use std::collections::{BTreeMap, HashMap};

use shared::data::{ItemError, LogPosition, PartitionLoadReport};
use shared::model::{NodeId, PartitionId};

use super::BoxFuture;

/// Where the copies of partitions stand: the durable log position of each asked
/// partition on each asked node (missing when a node does not answer).
pub trait ReplicaPositions: Send + Sync + 'static {
    /// Positions of `wanted` (node → its partitions to report).
    fn collect_positions(
        &self,
        wanted: BTreeMap<NodeId, Vec<PartitionId>>,
    ) -> BoxFuture<'_, HashMap<(PartitionId, NodeId), LogPosition>>;
}

/// How busy partitions are: each asked node reports the partitions it leads (nodes that
/// do not answer are missing).
pub trait ReplicaLoads: Send + Sync + 'static {
    /// Load reports of the primaries on `nodes`.
    fn collect_loads(&self, nodes: Vec<NodeId>) -> BoxFuture<'_, Vec<PartitionLoadReport>>;
}

/// The primary role of a partition handed to one of its ready replicas: the current
/// primary switches it (epoch + 1), as at the end of a move, without moving data.
pub trait PrimaryHandOver: Send + Sync + 'static {
    /// Asks `primary`, the primary of `pid` at `epoch`, to hand its role to `to`.
    fn hand_over(
        &self,
        primary: NodeId,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> BoxFuture<'_, Result<(), ItemError>>;
}
