//! Partition Assigner: drives tables through CREATING → ACTIVE, SCALING → ACTIVE and
//! DELETING → gone, using the pure plan of `shared::lifecycle`.

use std::sync::Arc;

use shared::lifecycle::{AssignerConfig, assigner_actions};

use crate::meta::state_machine::StateHandle;
use crate::node::meta_client::MetaClient;

/// The assigner of one (leader) node.
pub struct PartitionAssigner {
    meta: Arc<MetaClient>,
    state: StateHandle,
    config: AssignerConfig,
    now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl PartitionAssigner {
    /// Creates the assigner.
    pub fn new(
        meta: Arc<MetaClient>,
        state: StateHandle,
        config: AssignerConfig,
        now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        PartitionAssigner {
            meta,
            state,
            config,
            now_ms,
        }
    }

    /// Proposes every step the current state calls for.
    pub async fn step(&self) {
        let now = (self.now_ms)();
        let actions = self.state.read(|s| assigner_actions(s, &self.config, now));
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
