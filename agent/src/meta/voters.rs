//! [`VoterMembership`] over openraft's membership API.

use std::collections::BTreeSet;

use openraft::{BasicNode, ChangeMembers};
use shared::model::NodeId;

use super::types::Raft;
use crate::seam::{BoxFuture, MembersView, VoterMembership};

/// The Raft membership of this node's metadata store.
pub struct RaftVoters(pub Raft);

impl RaftVoters {
    async fn change(&self, change: ChangeMembers<NodeId, BasicNode>) -> Result<(), String> {
        self.0
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl VoterMembership for RaftVoters {
    fn members(&self) -> MembersView {
        let metrics = self.0.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let matched = metrics
            .replication
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, m)| Some((id, m?.index)))
            .collect();
        MembersView {
            me: metrics.id,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            matched,
        }
    }

    fn remove(&self, nodes: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.change(ChangeMembers::RemoveNodes(nodes)))
    }

    fn replace_voters(&self, voters: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.change(ChangeMembers::ReplaceAllVoters(voters)))
    }

    fn add_learner(&self, node: NodeId, addr: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .add_learner(node, BasicNode::new(addr), false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
