//! Partition Assigner: drives tables through CREATING → ACTIVE, SCALING → ACTIVE and
//! DELETING → gone, using the pure plan of `shared::lifecycle`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use shared::lifecycle::{AssignerConfig, assigner_actions};
use shared::model::NodeId;

use crate::meta::client::MetaClient;
use crate::seam::Clock;
use crate::seam::PeerContacts;
use crate::seam::StateHandle;

/// The assigner of one (leader) node.
pub struct PartitionAssigner {
    meta: Arc<MetaClient>,
    state: StateHandle,
    config: AssignerConfig,
    clock: Clock,
    contacts: Arc<PeerContacts>,
    unreachable_after: Duration,
    /// The term in which this node last became leader, and when it noticed.
    leadership: std::sync::Mutex<Option<(u64, Instant)>>,
}

impl PartitionAssigner {
    /// Creates the assigner.
    pub fn new(
        meta: Arc<MetaClient>,
        state: StateHandle,
        config: AssignerConfig,
        clock: Clock,
        contacts: Arc<PeerContacts>,
        unreachable_after: Duration,
    ) -> Self {
        PartitionAssigner {
            meta,
            state,
            config,
            clock,
            contacts,
            unreachable_after,
            leadership: std::sync::Mutex::new(None),
        }
    }

    /// Members this leader has not heard from recently: no new partitions go there.
    fn unreachable(&self) -> BTreeSet<NodeId> {
        let metrics = self.meta.raft().metrics().borrow().clone();
        let since = {
            let mut leadership = self.leadership.lock().unwrap_or_else(|e| e.into_inner());
            match *leadership {
                Some((term, since)) if term == metrics.current_term => since,
                _ => leadership.insert((metrics.current_term, Instant::now())).1,
            }
        };
        let membership = metrics.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.as_str()));
        self.contacts
            .unreachable(members, self.meta.node_id(), self.unreachable_after, since)
    }

    /// Proposes every step the current state calls for.
    pub async fn step(&self) {
        let now = (self.clock)();
        let unreachable = self.unreachable();
        let actions = self
            .state
            .read(|s| assigner_actions(s, &self.config, now, &unreachable));
        for action in actions {
            for warning in &action.warnings {
                tracing::warn!(%warning, "placement");
            }
            match self.meta.propose_as_leader(action.command.clone()).await {
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
