//! The Raft membership a leader manages: who votes, who learns and how far each has
//! replicated, and the changes the Voter Manager makes. The agent implements it over
//! openraft's membership API (`meta::voters`); a simulation can implement it over its
//! own log.

use std::collections::{BTreeMap, BTreeSet};

use shared::model::NodeId;

use super::BoxFuture;

/// The membership as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersView {
    /// This node (the leader).
    pub me: NodeId,
    /// Voters.
    pub voters: BTreeSet<NodeId>,
    /// Learners (not voting).
    pub learners: BTreeSet<NodeId>,
    /// Index of the leader's last log entry.
    pub last_log_index: u64,
    /// Highest log index each member is known to hold (absent: no progress yet).
    pub matched: BTreeMap<NodeId, u64>,
}

/// Changes of the Raft membership (each one committed through the log).
pub trait VoterMembership: Send + Sync + 'static {
    /// The membership now.
    fn members(&self) -> MembersView;

    /// Removes `nodes` from the membership.
    fn remove(&self, nodes: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>>;

    /// Makes `voters` the voter set (the others stay learners).
    fn replace_voters(&self, voters: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>>;

    /// Adds `node`, reachable at `addr`, as a learner.
    fn add_learner(&self, node: NodeId, addr: String) -> BoxFuture<'_, Result<(), String>>;
}
