//! A graceful stop (SIGTERM), in order: not ready any more, the gossip cluster left (no
//! view counts on this agent, so nothing is placed on it), the partitions it leads
//! handed to ready replicas, every replica set left (each primary drops it between two
//! writes). The HTTP API then drains, and the metadata leadership is handed on
//! (`meta::step_down`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::failure::GossipState;
use shared::model::NodeId;

use crate::config::ShutdownConfig;
use crate::data::plane::DataPlane;
use crate::membership::{GossipLeave, Membership};
use crate::meta::client::MetaClient;
use crate::service_manager;

/// What a graceful stop needs.
#[derive(Clone)]
pub struct Departure {
    /// Proposals through this agent (its leader-only controllers stop).
    pub meta: Arc<MetaClient>,
    /// The data plane whose partitions are handed over.
    pub data: Arc<DataPlane>,
    /// The gossip view (which replicas are alive to take over).
    pub membership: Membership,
    /// Leaves the gossip cluster.
    pub gossip: GossipLeave,
    /// Readiness: set when the stop begins (`/readyz` answers 503 from then on).
    pub leaving: Arc<AtomicBool>,
    /// Budget and parallelism.
    pub config: ShutdownConfig,
}

impl Departure {
    /// Runs the stop's steps up to the HTTP drain, within the configured budget.
    pub async fn run(self) {
        let started = tokio::time::Instant::now();
        self.leaving.store(true, Ordering::Release);
        service_manager::announce_stopping();
        // A stopping leader must not place work on itself while it hands work away.
        self.meta.pause_leader_controllers();
        tracing::info!("stopping: handing partitions over before exit");
        let budget = Duration::from_millis(self.config.handover_timeout_ms);
        if tokio::time::timeout(budget, self.hand_over_and_leave())
            .await
            .is_err()
        {
            tracing::warn!(
                ?budget,
                "hand-overs not finished within the budget: exiting anyway (what is left waits for failure detection)"
            );
        }
        tracing::info!(took = ?started.elapsed(), "partitions handed over");
    }

    async fn hand_over_and_leave(&self) {
        // First out of gossip: no view counts on this agent any more (nothing is placed
        // on it), and agents stopping at the same time see each other go, so they hand
        // nothing to each other and keep their copies.
        self.data.begin_departure();
        // Who is alive as this agent leaves (its own view stops following gossip then).
        let alive: BTreeSet<NodeId> = self
            .membership
            .observations()
            .into_iter()
            .filter(|(_, o)| o.gossip == GossipState::Alive)
            .map(|(id, _)| id)
            .collect();
        let alive = |n| alive.contains(&n);
        self.gossip.leave().await;
        let report = self
            .data
            .hand_over_all(&alive, self.config.handover_parallelism)
            .await;
        tracing::info!(
            handed = report.handed,
            failed = report.failed.len(),
            stranded = ?report.stranded,
            "hand-overs done"
        );
        for (partition, why) in &report.failed {
            tracing::warn!(partition, %why, "partition not handed over");
        }
        match self
            .data
            .depart(&alive, self.config.handover_parallelism)
            .await
        {
            Ok(left) => tracing::info!(left, "left the replica sets"),
            Err(why) => tracing::warn!(%why, "could not leave the replica sets"),
        }
    }
}
