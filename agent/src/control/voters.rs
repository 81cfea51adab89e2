//! Voter Manager: keeps the Raft membership in line with the nodes' committed status.
//! Promotes caught-up learners until the voter target is reached, replaces failed or
//! decommissioned voters with healthy learners (other zones first), removes failed
//! learners, and adds back as learners registered nodes that are missing (a failed node
//! that rejoined). The voter choice is `shared::placement::plan_voter_change`.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use shared::failure::GossipState;
use shared::model::{NodeId, NodeStatus};
use shared::placement::{VoterCandidate, VoterConfig, plan_voter_change, voter_target};

use crate::membership::Membership;
use crate::meta::voters::RaftVoters;
use crate::seam::{MembersView, StateHandle, VoterMembership};

/// The voter manager of one (leader) node.
pub struct VoterManager<V = RaftVoters> {
    raft_members: Arc<V>,
    state: StateHandle,
    membership: Membership,
    config: VoterConfig,
    max_lag_entries: u64,
}

/// What the committed metadata says about one member of the Raft membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberHealth {
    /// Registered and not failed.
    Live,
    /// Failed or decommissioned: should leave the membership.
    Gone,
    /// Not registered yet (just added as a learner, or the bootstrap voter).
    Unregistered,
}

impl<V: VoterMembership> VoterManager<V> {
    /// Creates the manager.
    pub fn new(
        raft_members: Arc<V>,
        state: StateHandle,
        membership: Membership,
        config: VoterConfig,
        max_lag_entries: u64,
    ) -> Self {
        VoterManager {
            raft_members,
            state,
            membership,
            config,
            max_lag_entries,
        }
    }

    /// One pass: at most one membership change (openraft runs one at a time).
    pub async fn step(&self) {
        let view = self.raft_members.members();
        let (voters, learners) = (&view.voters, &view.learners);
        let members: BTreeSet<NodeId> = voters.union(learners).copied().collect();
        let health = self.state.read(|s| {
            members
                .iter()
                .map(|&id| {
                    let h = match s.node(id).map(|n| n.status) {
                        // This leader runs: a FAILED record of itself is stale and its
                        // rejoin is under way. Removing itself would leave it outside the
                        // membership with a vote no one supersedes (issue 14).
                        Some(NodeStatus::Failed) if id == view.me => MemberHealth::Live,
                        None => MemberHealth::Unregistered,
                        Some(NodeStatus::Failed | NodeStatus::Decommissioned) => MemberHealth::Gone,
                        Some(_) => MemberHealth::Live,
                    };
                    (id, h)
                })
                .collect::<BTreeMap<_, _>>()
        });
        let gone_learners: BTreeSet<NodeId> = learners
            .iter()
            .filter(|id| health.get(id) == Some(&MemberHealth::Gone))
            .copied()
            .collect();
        if !gone_learners.is_empty() {
            // The leader stops replicating to them; they are added back when they rejoin.
            tracing::info!(
                ?gone_learners,
                "removing failed learners from the membership"
            );
            if let Err(e) = self.raft_members.remove(gone_learners).await {
                tracing::warn!(error = %e, "membership change failed; will retry");
            }
            return;
        }
        if let Some(new_voters) = self.plan_voters(&view, &health) {
            tracing::info!(?voters, ?new_voters, "changing the voter set");
            if let Err(e) = self.raft_members.replace_voters(new_voters).await {
                tracing::warn!(error = %e, "membership change failed; will retry");
            }
            return;
        }
        self.add_missing_learners(&members).await;
    }

    /// The new voter set, if the voters should change.
    fn plan_voters(
        &self,
        view: &MembersView,
        health: &BTreeMap<NodeId, MemberHealth>,
    ) -> Option<BTreeSet<NodeId>> {
        let (voters, learners) = (&view.voters, &view.learners);
        let last_index = view.last_log_index;
        // Only learners that have replicated something and are close to the head count;
        // a learner with no progress yet is not "caught up" just because the log is short.
        let caught_up = |id: &NodeId| {
            view.matched
                .get(id)
                .is_some_and(|matched| matched + self.max_lag_entries >= last_index)
        };
        self.state.read(|s| {
            let candidate = |id: NodeId| VoterCandidate {
                node_id: id,
                zone: s.node(id).map(|n| n.zone.clone()).unwrap_or_default(),
            };
            let healthy: Vec<VoterCandidate> = voters
                .iter()
                .filter(|id| health.get(id) != Some(&MemberHealth::Gone))
                .map(|&id| candidate(id))
                .collect();
            let dead: Vec<NodeId> = voters
                .iter()
                .filter(|id| health.get(id) == Some(&MemberHealth::Gone))
                .copied()
                .collect();
            // Only registered learners that accept work: an unregistered one has no known
            // zone, a draining one is on its way out.
            // Caught up is not alive: on a quiet log a dead learner stays "caught up". Only
            // learners this leader's gossip sees alive are promoted, so a new voter set
            // always has a live majority.
            let promotable: Vec<VoterCandidate> = learners
                .iter()
                .filter(|id| caught_up(id))
                .filter(|id| {
                    self.membership
                        .peer(**id)
                        .is_some_and(|p| p.gossip == GossipState::Alive)
                })
                .filter(|id| s.node(**id).is_some_and(|n| n.status.accepts_new_work()))
                .map(|&id| candidate(id))
                .collect();
            let live_nodes = s.nodes().filter(|n| n.status.accepts_new_work()).count();
            let target = voter_target(live_nodes.max(healthy.len()), &self.config);
            plan_voter_change(&healthy, &dead, &promotable, target)
        })
    }

    /// Adds back as learners the registered, live nodes missing from the membership.
    async fn add_missing_learners(&self, members: &BTreeSet<NodeId>) {
        let missing: Vec<(NodeId, String)> = self.state.read(|s| {
            s.nodes()
                .filter(|n| matches!(n.status, NodeStatus::Healthy | NodeStatus::Draining))
                .filter(|n| !members.contains(&n.node_id))
                .map(|n| (n.node_id, n.peer_addr.clone()))
                .collect()
        });
        for (node_id, addr) in missing {
            tracing::info!(node_id, %addr, "adding a rejoined node back as a learner");
            if let Err(e) = self.raft_members.add_learner(node_id, addr).await {
                tracing::warn!(node_id, error = %e, "adding the learner failed; will retry");
            }
        }
    }
}
