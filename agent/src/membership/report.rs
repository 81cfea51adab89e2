//! Each agent's status report, gossiped as a foca custom broadcast.
//!
//! A report is small (well under 200 bytes) and versioned by (incarnation, version), so a
//! relay can tell a fresh report from a stale one and stop re-gossiping stale ones. A newer
//! report reaching an agent is proof that its origin was alive when it made it.

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};
use shared::model::NodeId;

use super::GossipId;
use super::view::Membership;
use crate::node::Clock;

/// Load figures an agent reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Host CPU busy percentage since the previous report.
    pub cpu_pct: f32,
    /// Used percentage of the file system holding the data dir.
    pub disk_pct: f32,
    /// Item operations per second served by this agent as primary (10 s window).
    pub ops_per_sec: f32,
    /// Partitions (primary or replica) assigned to this agent.
    pub partitions_owned: u32,
    /// How far this agent's metadata replica is behind the leader's, in milliseconds.
    pub replication_lag_ms: u64,
}

/// One agent's status as of one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Origin (relays are not named: foca's sender is the last hop).
    pub node_id: NodeId,
    /// Origin's incarnation.
    pub incarnation: u64,
    /// Grows with every report of one incarnation.
    pub version: u64,
    /// Origin's zone.
    pub zone: String,
    /// Origin's HTTP endpoint.
    pub endpoint: String,
    /// Metadata log index the origin has applied.
    pub applied_index: u64,
    /// Origin's load.
    pub load: LoadSummary,
}

impl StatusReport {
    /// The report's freshness: later reports compare greater.
    pub fn freshness(&self) -> (u64, u64) {
        (self.incarnation, self.version)
    }
}

/// Identifies a report in foca's dissemination backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportKey {
    node_id: NodeId,
    freshness: (u64, u64),
}

impl Invalidates for ReportKey {
    /// A newer report of the same origin replaces an older one still being disseminated.
    fn invalidates(&self, other: &Self) -> bool {
        self.node_id == other.node_id && self.freshness >= other.freshness
    }
}

/// Why a received broadcast was refused.
#[derive(Debug, thiserror::Error)]
#[error("malformed status report: {0}")]
pub struct ReportError(#[from] postcard::Error);

/// Foca's custom broadcast handler: keeps the newest report of every agent in the view.
pub struct StatusBroadcasts {
    membership: Membership,
    clock: Clock,
}

impl StatusBroadcasts {
    /// A handler recording into `membership`.
    pub fn new(membership: Membership, clock: Clock) -> Self {
        StatusBroadcasts { membership, clock }
    }
}

impl BroadcastHandler<GossipId> for StatusBroadcasts {
    type Key = ReportKey;
    type Error = ReportError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&GossipId>,
    ) -> Result<Option<ReportKey>, ReportError> {
        let report: StatusReport = postcard::from_bytes(data)?;
        let key = ReportKey {
            node_id: report.node_id,
            freshness: report.freshness(),
        };
        // Stale or already known: `None`, or foca would re-gossip it forever.
        let fresh = self.membership.accept_report(report, (self.clock)());
        Ok(fresh.then_some(key))
    }
}
