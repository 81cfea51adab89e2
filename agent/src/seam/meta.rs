//! Metadata access: proposing commands and knowing where the leader is. The agent's
//! `MetaClient` implements it over openraft; `netsim` implements it with a
//! simulated linearizable log, so the same controllers run in both.

use shared::command::{MetaCommand, MetaResult};
use shared::model::NodeId;

use super::BoxFuture;
use crate::metrics::AgentMetrics;

/// Why a proposal or read barrier did not complete. Maps to 503 at the API edge.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaClientError {
    /// No leader answered within the wait budget; the command was not applied.
    #[error("no metadata leader reachable: {0}")]
    NoLeader(String),
    /// The leader was reached but the outcome is unknown (the command may have applied).
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// The seam between the controllers (and the reconciler) and the metadata log: who
/// proposes, proposing one command, a read barrier, and the proposer's metrics. The
/// local replica is read through a [`super::StateHandle`]. `MetaClient` implements it
/// over openraft; `netsim` implements it with a simulated linearizable log, so the same
/// controllers run in both.
pub trait MetaLog: Send + Sync + 'static {
    /// The proposing node's id.
    fn node_id(&self) -> NodeId;

    /// Commits `cmd` **only while this node leads** and returns the state machine's
    /// result once the local replica applied it; an error says whether the command may
    /// have applied. What leader-only controllers propose: their decisions come from
    /// this leader's view, so one is never forwarded to a newer leader.
    fn propose(&self, cmd: MetaCommand) -> BoxFuture<'_, Result<MetaResult, MetaClientError>>;

    /// Commits `cmd` through whichever node leads (forwarded from a follower), with the
    /// result once the local replica applied it: what every agent's reconciler reports.
    fn propose_via_leader(
        &self,
        cmd: MetaCommand,
    ) -> BoxFuture<'_, Result<MetaResult, MetaClientError>>;

    /// Returns once the local replica has applied everything the leader had committed
    /// when asked (a read index): what the replica shows is then current.
    fn read_barrier(&self) -> BoxFuture<'_, Result<(), MetaClientError>>;

    /// The proposing agent's metrics.
    fn metrics(&self) -> &AgentMetrics;
}

/// Where the current leader is, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderRoute {
    /// This node leads.
    Local,
    /// Another node leads, reachable at this peer address.
    Remote(NodeId, String),
    /// No leader is known.
    Unknown,
}
