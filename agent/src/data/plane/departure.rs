//! This agent's data plane leaving gracefully (SIGTERM): it hands every partition it
//! leads to a ready replica, then asks each primary to drop it from its replica set, so
//! writes go on without it while it is away (`shared::departure` plans both).

use std::time::Duration;

use futures::StreamExt;
use shared::data::{DataPeerReply, DataPeerRequest};
use shared::departure::{plan_departure, plan_hand_overs};
use shared::model::{NodeId, PartitionId};

use super::DataPlane;

/// How long a primary may take to drop this replica (one metadata commit, after the
/// write in flight).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the hand-overs did.
#[derive(Debug, Default)]
pub struct HandOverReport {
    /// Partitions handed to a replica.
    pub handed: usize,
    /// Hand-overs that failed, with why.
    pub failed: Vec<(PartitionId, String)>,
    /// Partitions no usable replica could take.
    pub stranded: Vec<PartitionId>,
}

impl DataPlane {
    /// Hands every partition this agent leads to a ready replica that `usable` accepts,
    /// at most `parallel` at once (each pauses its partition's writes for one switch).
    pub async fn hand_over_all(
        &self,
        usable: &(dyn Fn(NodeId) -> bool + Sync),
        parallel: usize,
    ) -> HandOverReport {
        let plan = self.state.read(|s| plan_hand_overs(s, self.me, usable));
        let results: Vec<(PartitionId, Result<(), String>)> = futures::stream::iter(plan.steps)
            .map(|step| async move {
                let result = self
                    .hand_over(step.partition_id, step.epoch, step.to)
                    .await
                    .map_err(|e| e.to_string());
                (step.partition_id, result)
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        let mut report = HandOverReport {
            stranded: plan.stranded,
            ..HandOverReport::default()
        };
        for (pid, result) in results {
            match result {
                Ok(()) => report.handed += 1,
                Err(why) => report.failed.push((pid, why)),
            }
        }
        report
    }

    /// This agent is stopping: from now on it releases no replica of the partitions it
    /// leads (agents stopping together keep their copies).
    pub fn begin_departure(&self) {
        self.primary
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Leaves every replica set this agent is in (and does not lead) whose other members
    /// `usable` accepts (see `plan_departure`): each primary is asked to drop it between
    /// two writes (`DataPeerRequest::Release`). A primary that does not (unreachable, or
    /// stopping too) keeps it: an epoch change behind a primary's back would leave its
    /// write in flight in doubt. Returns how many replica sets it left.
    pub async fn depart(
        &self,
        usable: &(dyn Fn(NodeId) -> bool + Sync),
        parallel: usize,
    ) -> Result<usize, String> {
        // The hand-overs just committed must be in the local replica: a partition it
        // still seems to lead would keep it.
        self.meta
            .linearizable_barrier()
            .await
            .map_err(|e| e.to_string())?;
        let changes = self.state.read(|s| plan_departure(s, self.me, usable));
        let planned = changes.len();
        let refusals: Vec<String> = futures::stream::iter(changes)
            .map(|c| async move {
                let request = DataPeerRequest::Release {
                    partition_id: c.partition_id,
                    epoch: c.expected_epoch,
                    replica: self.me,
                };
                match self.rpc(c.primary_node_id, request, RELEASE_TIMEOUT).await {
                    Ok(DataPeerReply::Release(Ok(()))) => None,
                    Ok(DataPeerReply::Release(Err(e))) => {
                        Some(format!("partition {}: {e}", c.partition_id))
                    }
                    Ok(other) => Some(format!("partition {}: {other:?}", c.partition_id)),
                    Err(e) => Some(format!("partition {}: {e}", c.partition_id)),
                }
            })
            .buffer_unordered(parallel.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await;
        for why in &refusals {
            tracing::warn!(%why, "replica set not left: the copy stays until this agent is back");
        }
        Ok(planned - refusals.len())
    }
}
