//! The leader's direct view of which peers answer: every successful peer RPC (Raft
//! heartbeats reach every member every heartbeat interval) is recorded per address.
//! Until gossip arrives this is the only liveness signal placement can use, and it
//! costs no Raft write: like SUSPECTED, it is one agent's view, never committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use shared::model::NodeId;
use tokio::time::Instant;

/// How long ago each peer address last proved it is reachable by answering this node:
/// the failure detector counts it as a proof of life. [`PeerContacts`] records real peer
/// RPCs; `netsim` derives it from its simulated Raft heartbeats.
pub trait ContactAges: Send + Sync + 'static {
    /// Age of the last answer, by peer address (absent: never answered).
    fn ages(&self) -> HashMap<String, Duration>;
}

impl ContactAges for PeerContacts {
    fn ages(&self) -> HashMap<String, Duration> {
        PeerContacts::ages(self)
    }
}

/// The members a leader should not place new work on: those it cannot reach now. The
/// Partition Assigner judges by its Raft contacts (`meta::reachability`); the Scaler,
/// and `netsim`, by the gossip view (`membership::Membership`).
pub trait Reachability: Send + Sync + 'static {
    /// Members not reachable now (never this node).
    fn unreachable(&self) -> BTreeSet<NodeId>;
}

/// When each peer address last answered an RPC.
#[derive(Default)]
pub struct PeerContacts {
    last_ok: Mutex<HashMap<String, Instant>>,
}

impl PeerContacts {
    /// The peer at `addr` answered just now.
    pub fn record(&self, addr: &str) {
        let mut map = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(addr.to_string(), Instant::now());
    }

    /// How long ago each peer address last answered an RPC.
    pub fn ages(&self) -> HashMap<String, Duration> {
        let map = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.iter()
            .map(|(addr, t)| (addr.clone(), now.duration_since(*t)))
            .collect()
    }

    /// Members (id, peer address) that have not answered within `window`; `me` never
    /// counts. `since` is when this node started watching (became leader): a member is
    /// given the whole window from then before it counts as unreachable.
    pub fn unreachable<'a>(
        &self,
        members: impl Iterator<Item = (NodeId, &'a str)>,
        me: NodeId,
        window: Duration,
        since: Instant,
    ) -> BTreeSet<NodeId> {
        let map = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        members
            .filter(|(id, addr)| {
                let heard = map.get(*addr).map_or(since, |t| (*t).max(since));
                *id != me && now.duration_since(heard) > window
            })
            .map(|(id, _)| id)
            .collect()
    }
}
