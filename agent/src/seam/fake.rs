//! Test doubles of the seams, shared by the unit tests of the modules that run over
//! them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use shared::command::{MetaCommand, MetaOutcome, MetaResult};
use shared::model::NodeId;

use super::{BoxFuture, MetaClientError, MetaLog};
use crate::metrics::AgentMetrics;

/// A metadata log that records what is proposed (every proposal succeeds, except a
/// leader-only one on a `follower`) and whose read barrier fails while `cut_off` is set.
#[derive(Default)]
pub struct RecordingLog {
    /// The proposing node (0 reads as node 1).
    pub node_id: NodeId,
    /// What was proposed, in order.
    pub committed: Mutex<Vec<MetaCommand>>,
    /// The leader cannot be reached: barriers fail.
    pub cut_off: AtomicBool,
    /// This node does not lead: leader-only proposals fail.
    pub follower: bool,
    metrics: AgentMetrics,
}

impl RecordingLog {
    /// A log proposing as `node_id`.
    pub fn of(node_id: NodeId) -> Self {
        RecordingLog {
            node_id,
            ..RecordingLog::default()
        }
    }

    /// A log proposing as `node_id`, a follower.
    pub fn follower(node_id: NodeId) -> Self {
        RecordingLog {
            follower: true,
            ..RecordingLog::of(node_id)
        }
    }

    /// What was proposed so far.
    pub fn taken(&self) -> Vec<MetaCommand> {
        std::mem::take(&mut *self.committed.lock().unwrap())
    }
}

impl MetaLog for RecordingLog {
    fn node_id(&self) -> NodeId {
        self.node_id.max(1)
    }

    fn propose(&self, cmd: MetaCommand) -> BoxFuture<'_, Result<MetaResult, MetaClientError>> {
        if self.follower {
            let refused = MetaClientError::NoLeader("this node does not lead".into());
            return Box::pin(std::future::ready(Err(refused)));
        }
        self.propose_via_leader(cmd)
    }

    fn propose_via_leader(
        &self,
        cmd: MetaCommand,
    ) -> BoxFuture<'_, Result<MetaResult, MetaClientError>> {
        self.committed.lock().unwrap().push(cmd);
        Box::pin(std::future::ready(Ok(Ok(MetaOutcome::Done))))
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), MetaClientError>> {
        let result = if self.cut_off.load(Ordering::SeqCst) {
            Err(MetaClientError::NoLeader("cut off".into()))
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }
}

/// The commands that create table `orders` (id 1, a string partition key `k`) and
/// assign its one partition (id 1, the whole key space) to `primary` and `replicas`.
pub fn orders_table(primary: NodeId, replicas: Vec<NodeId>, now_ms: u64) -> [MetaCommand; 2] {
    use shared::command::{PartitionAssignment, TableSpec};
    use shared::model::{Attribute, AttributeType, Capacity, CapacityMode, KeyRange};
    let spec = TableSpec {
        table_name: "orders".into(),
        partition_key: "k".into(),
        sort_key: None,
        capacity: Capacity {
            mode: CapacityMode::Provisioned,
            read_units: 10,
            write_units: 10,
        },
        attributes: vec![Attribute {
            name: "k".into(),
            attr_type: AttributeType::S,
        }],
    };
    [
        MetaCommand::CreateTable { spec, now_ms },
        MetaCommand::AssignPartitions {
            table_id: 1,
            partitions: vec![PartitionAssignment {
                range: KeyRange {
                    low: 0,
                    high: u64::MAX,
                },
                primary_node_id: primary,
                replica_node_ids: replicas,
            }],
        },
    ]
}
