//! Recovery Coordinator (leader only): for every FAILED or DRAINING node that still holds
//! partitions, commits one `RepairPartitions` (promotions, replacements, epochs + 1) for
//! all of them at once; then adds replicas to under-replicated partitions as nodes become
//! available, and decommissions drained nodes marked for removal. The plans are the pure
//! `shared::recovery` functions; level-triggered, so a new leader simply carries on.

use std::collections::BTreeSet;
use std::sync::Arc;

use shared::command::MetaCommand;
use shared::failure::GossipState;
use shared::model::{NodeId, NodeStatus, UnixMillis};
use shared::recovery::{RecoveryConfig, nodes_to_decommission, plan_repairs};

use crate::membership::Membership;
use crate::meta::state_machine::StateHandle;
use crate::node::Clock;
use crate::node::meta_client::MetaClient;

/// The recovery coordinator of one (leader) node.
pub struct RecoveryCoordinator {
    meta: Arc<MetaClient>,
    state: StateHandle,
    membership: Membership,
    config: RecoveryConfig,
    clock: Clock,
}

impl RecoveryCoordinator {
    /// Creates the coordinator.
    pub fn new(
        meta: Arc<MetaClient>,
        state: StateHandle,
        membership: Membership,
        config: RecoveryConfig,
        clock: Clock,
    ) -> Self {
        RecoveryCoordinator {
            meta,
            state,
            membership,
            config,
            clock,
        }
    }

    /// Nodes that must not receive a replacement replica: those this leader's gossip view
    /// does not currently see alive (it may be about to fail them).
    fn excluded(&self) -> BTreeSet<NodeId> {
        self.membership
            .observations()
            .into_iter()
            .filter(|(_, obs)| obs.gossip != GossipState::Alive)
            .map(|(id, _)| id)
            .collect()
    }

    /// Proposes every repair and decommission the current state calls for.
    pub async fn step(&self) {
        let excluded = self.excluded();
        let (plans, failed_before) = self.state.read(|s| {
            // No data plane yet: every replica's durable log position is 0, so promotion
            // falls back to the planner's tie-breaks (fewest primaries, lowest id).
            let plans = plan_repairs(s, &self.config, &|_, _| 0, &excluded);
            (plans, failed_holding_partitions(s))
        });
        for plan in plans {
            for warning in &plan.warnings {
                tracing::warn!(%warning, "recovery");
            }
            let Some(cmd) = plan.command else { continue };
            let changes = match &cmd {
                MetaCommand::RepairPartitions { changes } => changes.len(),
                _ => 0,
            };
            match self.meta.propose(cmd).await {
                Ok(Ok(_)) => {
                    self.meta
                        .metrics()
                        .partitions_repaired
                        .inc_by(changes as u64);
                    tracing::info!(
                        changes,
                        promoted = plan.promoted.len(),
                        replaced = plan.replaced,
                        under_replicated = plan.under_replicated.len(),
                        "recovery committed"
                    );
                }
                // Raced with another change (stale epoch): the next wake re-plans.
                Ok(Err(e)) => tracing::debug!(error = %e, "recovery step rejected"),
                Err(e) => {
                    tracing::warn!(error = %e, "recovery cannot reach the leader");
                    return;
                }
            }
        }
        self.observe_recovered(&failed_before);
        let decommission = self.state.read(nodes_to_decommission);
        for node_id in decommission {
            let cmd = MetaCommand::DecommissionNode {
                node_id,
                now_ms: (self.clock)(),
            };
            match self.meta.propose(cmd).await {
                Ok(Ok(_)) => tracing::info!(node_id, "node drained and decommissioned"),
                Ok(Err(e)) => tracing::debug!(node_id, error = %e, "decommission rejected"),
                Err(_) => return,
            }
        }
    }

    /// Records, for each failed node that held partitions before this step and holds none
    /// now, the time from its committed failure to the end of its recovery.
    fn observe_recovered(&self, failed_before: &[(NodeId, UnixMillis)]) {
        let now = (self.clock)();
        for (node_id, failed_at) in failed_before {
            let recovered = self
                .state
                .read(|s| s.node(*node_id).is_some_and(|n| n.partition_ids.is_empty()));
            if recovered {
                let seconds = now.saturating_sub(*failed_at) as f64 / 1000.0;
                self.meta.metrics().recovery_seconds.observe(seconds);
                tracing::info!(node_id, seconds, "partitions of failed node recovered");
            }
        }
    }
}

/// Failed nodes still holding partitions, with the time their failure was committed.
fn failed_holding_partitions(s: &shared::state::MetaState) -> Vec<(NodeId, UnixMillis)> {
    s.nodes()
        .filter(|n| n.status == NodeStatus::Failed && !n.partition_ids.is_empty())
        .map(|n| (n.node_id, n.status_changed_at_ms))
        .collect()
}
