//! This agent's data plane leaving gracefully (SIGTERM): it hands every partition it
//! leads to a ready replica, then leaves every replica set in one command, so writes go
//! on without it while it is away (`shared::departure` plans both).

use std::time::Duration;

use futures::StreamExt;
use shared::command::MetaCommand;
use shared::data::{DataPeerReply, DataPeerRequest};
use shared::departure::{plan_departure, plan_hand_overs};
use shared::model::{NodeId, PartitionId};

use super::DataPlane;

/// Attempts of the departure command (a partition's epoch may move between the plan and
/// the commit: the command is planned again).
const DEPARTURE_ATTEMPTS: usize = 3;

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

    /// Leaves every replica set this agent is in (and does not lead) whose other members
    /// `usable` accepts (see `plan_departure`): each primary is
    /// asked to drop it between two writes (`DataPeerRequest::Release`); the partitions
    /// whose primary did not do so are left in one metadata command. Returns how many
    /// replica sets it left.
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
        let asked = changes.len();
        let released: Vec<bool> = futures::stream::iter(changes)
            .map(|c| async move {
                let request = DataPeerRequest::Release {
                    partition_id: c.partition_id,
                    epoch: c.expected_epoch,
                    replica: self.me,
                };
                let reply = self.rpc(c.primary_node_id, request, RELEASE_TIMEOUT).await;
                matches!(reply, Ok(DataPeerReply::Release(Ok(()))))
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        let by_primaries = released.iter().filter(|&&r| r).count();
        if by_primaries == asked {
            return Ok(asked);
        }
        // A primary that did not answer has no write in flight to this replica either.
        let mut last = String::new();
        for _ in 0..DEPARTURE_ATTEMPTS {
            let changes = self.state.read(|s| plan_departure(s, self.me, usable));
            if changes.is_empty() {
                return Ok(asked);
            }
            match self
                .meta
                .propose(MetaCommand::RepairPartitions { changes })
                .await
            {
                Ok(Ok(_)) => return Ok(asked),
                Ok(Err(e)) => last = e.to_string(),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}
