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
use crate::seam::Clock;

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
    /// Position of the report among the fresh ones this agent took in.
    arrival: u64,
    /// Reports relayed at once (`gossip.max_relayed_reports`).
    relay_limit: u64,
}

impl Invalidates for ReportKey {
    /// A newer report of the same origin replaces an older one still being disseminated,
    /// and so does any report that arrived `relay_limit` arrivals later. Above about a
    /// hundred agents, reports come in faster than the piggybacked space carries them
    /// out, so without this bound the backlog holds one report per agent, mostly never
    /// sent (the newest go first), and foca walks all of it for every datagram.
    fn invalidates(&self, other: &Self) -> bool {
        self.node_id == other.node_id && self.freshness >= other.freshness
            || other.arrival.saturating_add(self.relay_limit) <= self.arrival
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
    /// Fresh reports taken in so far.
    arrivals: u64,
    relay_limit: u64,
}

impl StatusBroadcasts {
    /// A handler recording into `membership`, re-gossiping at most the `relay_limit`
    /// latest fresh reports.
    pub fn new(membership: Membership, clock: Clock, relay_limit: usize) -> Self {
        StatusBroadcasts {
            membership,
            clock,
            arrivals: 0,
            relay_limit: relay_limit.max(1) as u64,
        }
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
        let node_id = report.node_id;
        let freshness = report.freshness();
        // Stale or already known: `None`, or foca would re-gossip it forever.
        if !self.membership.accept_report(report, (self.clock)()) {
            return Ok(None);
        }
        self.arrivals += 1;
        Ok(Some(ReportKey {
            node_id,
            freshness,
            arrival: self.arrivals,
            relay_limit: self.relay_limit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::GossipTraffic;

    fn encoded(node_id: NodeId, version: u64) -> Vec<u8> {
        let report = StatusReport {
            node_id,
            incarnation: 1,
            version,
            zone: "a".into(),
            endpoint: "http://x".into(),
            applied_index: 0,
            load: LoadSummary::default(),
        };
        postcard::to_allocvec(&report).unwrap()
    }

    #[test]
    fn only_the_latest_fresh_reports_are_relayed() {
        let membership = Membership::new(1, GossipTraffic::default());
        let mut handler = StatusBroadcasts::new(membership, Arc::new(|| 0), 2);
        let mut take = |node, version| handler.receive_item(&encoded(node, version), None);
        let first = take(2, 1).unwrap().unwrap();
        assert!(take(2, 1).unwrap().is_none(), "a stale copy is not relayed");
        let second = take(3, 1).unwrap().unwrap();
        // Another origin's report replaces nothing while the backlog has room...
        assert!(!second.invalidates(&first));
        let newer = take(2, 2).unwrap().unwrap();
        assert!(newer.invalidates(&first), "same origin, newer");
        assert!(!first.invalidates(&newer), "never the other way round");
        // ...and ends the relay of reports taken in `relay_limit` arrivals before.
        let third = take(4, 1).unwrap().unwrap();
        assert!(third.invalidates(&second));
        assert!(!third.invalidates(&newer));
    }
}
