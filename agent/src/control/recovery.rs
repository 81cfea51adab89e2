//! Recovery Coordinator (leader only): for every FAILED or DRAINING node that still holds
//! partitions, commits one `RepairPartitions` (promotions, replacements, epochs + 1) for
//! all of them at once; then adds replicas to under-replicated partitions as nodes become
//! available, and decommissions drained nodes marked for removal. The plans are the pure
//! `shared::recovery` functions; level-triggered, so a new leader simply carries on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use shared::command::MetaCommand;
use shared::data::LogPosition;
use shared::failure::GossipState;
use shared::model::{NodeId, NodeStatus, PartitionId, UnixMillis};
use shared::recovery::{RecoveryConfig, nodes_to_decommission, plan_repairs};

use crate::data::plane::DataPlane;
use crate::membership::Membership;
use crate::meta::client::MetaClient;
use crate::seam::Clock;
use crate::seam::MetaLog;
use crate::seam::ReplicaPositions;
use crate::seam::StateHandle;

/// Distinct warnings remembered to log each once; beyond this the memory starts over.
const MAX_REMEMBERED_WARNINGS: usize = 1024;

/// The recovery coordinator of one (leader) node, over a metadata log `M` (openraft in
/// the agent, simulated in `netsim`) and a source `D` of replica log positions.
pub struct RecoveryCoordinator<M = MetaClient, D = DataPlane> {
    meta: Arc<M>,
    state: StateHandle,
    membership: Membership,
    data: Arc<D>,
    config: RecoveryConfig,
    clock: Clock,
    /// Warnings already logged (a blocked drain repeats every pass).
    warned: std::sync::Mutex<BTreeSet<String>>,
}

impl<M: MetaLog, D: ReplicaPositions> RecoveryCoordinator<M, D> {
    /// Creates the coordinator.
    pub fn new(
        meta: Arc<M>,
        state: StateHandle,
        membership: Membership,
        data: Arc<D>,
        config: RecoveryConfig,
        clock: Clock,
    ) -> Self {
        RecoveryCoordinator {
            meta,
            state,
            membership,
            data,
            config,
            clock,
            warned: std::sync::Mutex::default(),
        }
    }

    /// Logs `warning` unless it was logged already (bounded memory).
    fn warn_once(&self, warning: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() >= MAX_REMEMBERED_WARNINGS {
            warned.clear();
        }
        if warned.insert(warning.to_string()) {
            tracing::warn!(%warning, "recovery");
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

    /// The durable log positions of the surviving copies of every partition held by a
    /// failed or draining node, as the survivors report them (0 when one does not answer).
    async fn survivor_positions(&self) -> HashMap<(PartitionId, NodeId), LogPosition> {
        let wanted: BTreeMap<NodeId, Vec<PartitionId>> = self.state.read(|s| {
            let mut wanted: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
            let leaving = s
                .nodes()
                .filter(|n| matches!(n.status, NodeStatus::Failed | NodeStatus::Draining));
            for node in leaving {
                for pid in &node.partition_ids {
                    let Some(p) = s.partition(*pid) else { continue };
                    for survivor in p.all_nodes().filter(|&n| n != node.node_id) {
                        wanted.entry(survivor).or_default().push(*pid);
                    }
                }
            }
            wanted
        });
        if wanted.is_empty() {
            return HashMap::new();
        }
        self.data.collect_positions(wanted).await
    }

    /// Proposes every repair and decommission the current state calls for.
    pub async fn step(&self) {
        let excluded = self.excluded();
        let positions = self.survivor_positions().await;
        let lsn = |pid: PartitionId, node: NodeId| positions.get(&(pid, node)).map_or(0, |p| p.lsn);
        let (plans, failed_before) = self.state.read(|s| {
            let plans = plan_repairs(s, &self.config, &lsn, &excluded);
            (plans, failed_holding_partitions(s))
        });
        for plan in plans {
            // A blocked drain is re-planned every pass: say so once, not every tick.
            for warning in &plan.warnings {
                self.warn_once(warning);
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
