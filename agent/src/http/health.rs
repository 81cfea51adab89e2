//! This agent's view of every node's health: committed status, refined by the gossip
//! view (SUSPECTED), heartbeat staleness, and the metadata replication lag. Shared by
//! the cluster health API, `/metrics` and the gossiped status report.

use std::sync::Arc;

use shared::failure::{heartbeat_staleness_ms, view_status};
use shared::model::{Node, NodeStatus, UnixMillis};

use crate::http::lag::ApplyLag;
use crate::membership::Membership;
use crate::meta::client::MetaClient;
use crate::metrics::NodeSample;
use crate::seam::Clock;
use crate::seam::LeaderRoute;
use crate::seam::StateHandle;

/// One node's health as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// Status shown (the committed one, or SUSPECTED).
    pub status: NodeStatus,
    /// Last proof of life; `None` when never heard from.
    pub last_heartbeat_ms: Option<UnixMillis>,
    /// Time since then.
    pub staleness_ms: Option<u64>,
}

/// Health view of one agent.
#[derive(Clone)]
pub struct HealthView {
    meta: Arc<MetaClient>,
    state: StateHandle,
    membership: Membership,
    lag: Arc<ApplyLag>,
    clock: Clock,
}

impl HealthView {
    /// Creates the view.
    pub fn new(
        meta: Arc<MetaClient>,
        state: StateHandle,
        membership: Membership,
        clock: Clock,
    ) -> Self {
        HealthView {
            meta,
            state,
            membership,
            lag: Arc::default(),
            clock,
        }
    }

    /// The gossip membership view.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// One node's health; this agent is always alive to itself.
    pub fn node(&self, node: &Node, now: UnixMillis) -> NodeHealth {
        if node.node_id == self.meta.node_id() {
            return NodeHealth {
                status: node.status,
                last_heartbeat_ms: Some(now),
                staleness_ms: Some(0),
            };
        }
        let obs = self.membership.peer(node.node_id).map(|p| p.observation());
        NodeHealth {
            status: view_status(node, obs.as_ref()),
            last_heartbeat_ms: obs.as_ref().and_then(|o| o.last_proof_of_life_ms),
            staleness_ms: obs.as_ref().and_then(|o| heartbeat_staleness_ms(o, now)),
        }
    }

    /// Every registered node, for the per-node metrics.
    pub fn samples(&self) -> Vec<NodeSample> {
        let now = (self.clock)();
        self.state.read(|s| {
            s.nodes()
                .map(|n| {
                    let h = self.node(n, now);
                    NodeSample {
                        node_id: n.node_id,
                        status: h.status,
                        staleness_ms: h.staleness_ms,
                    }
                })
                .collect()
        })
    }

    /// The leader's applied index: its own if this agent leads, else as last gossiped.
    pub fn leader_applied(&self) -> Option<u64> {
        match self.meta.leader() {
            LeaderRoute::Local => Some(self.state.applied_index()),
            LeaderRoute::Remote(leader, _) => {
                self.membership.report(leader).map(|r| r.applied_index)
            }
            LeaderRoute::Unknown => None,
        }
    }

    /// Entries the leader applied that this agent has not.
    pub fn applied_lag_entries(&self) -> u64 {
        self.leader_applied()
            .map_or(0, |l| l.saturating_sub(self.state.applied_index()))
    }

    /// How long this agent's metadata replica has been behind the leader, in ms.
    pub fn replication_lag_ms(&self) -> u64 {
        self.lag.sample(
            self.leader_applied(),
            self.state.applied_index(),
            (self.clock)(),
        )
    }
}
