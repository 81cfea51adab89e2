//! Partition Assigner: drives tables through CREATING → ACTIVE, SCALING → ACTIVE and
//! DELETING → gone, using the pure plan of `shared::lifecycle`.

use std::sync::Arc;

use shared::lifecycle::{AssignerConfig, assigner_actions};

use crate::meta::client::MetaClient;
use crate::meta::reachability::RaftReachability;
use crate::seam::{Clock, MetaLog, Reachability, StateHandle};

/// The assigner of one (leader) node, over a metadata log `M` (openraft in the agent,
/// simulated in `netsim`) and a judge `R` of which members are reachable.
pub struct PartitionAssigner<M = MetaClient, R = RaftReachability> {
    meta: Arc<M>,
    state: StateHandle,
    config: AssignerConfig,
    clock: Clock,
    reachability: Arc<R>,
}

impl<M: MetaLog, R: Reachability> PartitionAssigner<M, R> {
    /// Creates the assigner.
    pub fn new(
        meta: Arc<M>,
        state: StateHandle,
        config: AssignerConfig,
        clock: Clock,
        reachability: Arc<R>,
    ) -> Self {
        PartitionAssigner {
            meta,
            state,
            config,
            clock,
            reachability,
        }
    }

    /// Proposes every step the current state calls for; unreachable members get no new
    /// partitions.
    pub async fn step(&self) {
        let now = (self.clock)();
        let unreachable = self.reachability.unreachable();
        let actions = self
            .state
            .read(|s| assigner_actions(s, &self.config, now, &unreachable));
        for action in actions {
            for warning in &action.warnings {
                tracing::warn!(%warning, "placement");
            }
            match self.meta.propose(action.command.clone()).await {
                Ok(Ok(_)) => {}
                // A racing change (e.g. a delete) made the step moot: the next wake re-plans.
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, command = ?action.command, "assigner step rejected")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "assigner cannot reach the leader");
                    return;
                }
            }
        }
    }
}
