//! Voter Manager: promotes caught-up learners until the voter target is reached,
//! spreading voters across zones (the choice is `shared::placement::learners_to_promote`).

use std::collections::BTreeSet;

use openraft::ChangeMembers;
use shared::placement::{VoterCandidate, VoterConfig, learners_to_promote, voter_target};

use crate::meta::state_machine::StateHandle;
use crate::meta::types::Raft;

/// The voter manager of one (leader) node.
pub struct VoterManager {
    raft: Raft,
    state: StateHandle,
    config: VoterConfig,
    max_lag_entries: u64,
}

impl VoterManager {
    /// Creates the manager.
    pub fn new(raft: Raft, state: StateHandle, config: VoterConfig, max_lag_entries: u64) -> Self {
        VoterManager {
            raft,
            state,
            config,
            max_lag_entries,
        }
    }

    /// Promotes learners if the cluster has fewer voters than its target.
    pub async fn step(&self) {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let target = voter_target(voters.len() + learners.len(), &self.config);
        if voters.len() >= target || learners.is_empty() {
            return;
        }
        let last_index = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        // Only learners that have replicated something and are close to the head count;
        // a learner with no progress yet is not "caught up" just because the log is short.
        let caught_up = learners.into_iter().filter(|id| {
            matches!(replication.get(id), Some(Some(matched))
                if matched.index + self.max_lag_entries >= last_index)
        });
        let (voter_zones, learner_zones) = self.state.read(|s| {
            let zone = |id: u64| {
                s.node(id).map(|n| VoterCandidate {
                    node_id: id,
                    zone: n.zone.clone(),
                })
            };
            // A learner not yet registered has no known zone: it waits for its registration
            // rather than being promoted as if it were alone in a zone.
            let voters: Vec<_> = voters
                .iter()
                .map(|&id| {
                    zone(id).unwrap_or(VoterCandidate {
                        node_id: id,
                        zone: String::new(),
                    })
                })
                .collect();
            let learners: Vec<_> = caught_up.filter_map(zone).collect();
            (voters, learners)
        });
        let promote: BTreeSet<u64> = learners_to_promote(&voter_zones, &learner_zones, target)
            .into_iter()
            .collect();
        if promote.is_empty() {
            return;
        }
        tracing::info!(?promote, target, "promoting learners to voters");
        if let Err(e) = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(promote), true)
            .await
        {
            tracing::warn!(error = %e, "voter promotion failed; will retry");
        }
    }
}
