//! The leader's direct view of which peers answer: every successful peer RPC (Raft
//! heartbeats reach every member every heartbeat interval) is recorded per address.
//! Until gossip arrives this is the only liveness signal placement can use, and it
//! costs no Raft write: like SUSPECTED, it is one agent's view, never committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::model::NodeId;
use tokio::time::Instant;

use crate::transport::{BoxFuture, RpcClient, TransportError};

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

/// When each peer address last answered an RPC.
#[derive(Default)]
pub struct PeerContacts {
    last_ok: Mutex<HashMap<String, Instant>>,
}

impl PeerContacts {
    fn record(&self, addr: &str) {
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

/// An [`RpcClient`] that records every successful call in [`PeerContacts`].
pub struct ObservedClient {
    inner: Arc<dyn RpcClient>,
    contacts: Arc<PeerContacts>,
}

impl ObservedClient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RpcClient>, contacts: Arc<PeerContacts>) -> Self {
        ObservedClient { inner, contacts }
    }
}

impl RpcClient for ObservedClient {
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let result = self.inner.call(&addr, request).await;
            if result.is_ok() {
                self.contacts.record(&addr);
            }
            result
        })
    }
}

/// Whether this agent's metadata replica is known to be current: it heard from a Raft
/// leader (a leader: from a majority of voters) recently. Read leases are granted and
/// held only while this is so, so a partition whose copies are all cut off from the
/// majority (which may already have moved it elsewhere) stops serving reads.
pub struct MetaFreshness {
    raft: crate::meta::types::Raft,
    contacts: Arc<PeerContacts>,
    leader_contact: Mutex<Option<Instant>>,
}

impl MetaFreshness {
    /// Freshness of the agent running `raft`, whose peer RPCs are recorded in `contacts`.
    pub fn new(raft: crate::meta::types::Raft, contacts: Arc<PeerContacts>) -> Self {
        MetaFreshness {
            raft,
            contacts,
            leader_contact: Mutex::new(None),
        }
    }

    /// A leader's AppendEntries (heartbeat or log) was just accepted here.
    pub fn heard_from_leader(&self) {
        *self
            .leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether the metadata was confirmed current within `window`.
    pub fn within(&self, window: Duration) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        if !crate::node::meta_client::leads(&metrics) {
            let last = *self
                .leader_contact
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            return last.is_some_and(|t| t.elapsed() <= window);
        }
        let membership = metrics.membership_config.membership();
        let ages = self.contacts.ages();
        let voters: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
            .collect();
        let answered = voters
            .iter()
            .filter(|(id, addr)| {
                *id == metrics.id || ages.get(addr).is_some_and(|age| *age <= window)
            })
            .count();
        answered * 2 > voters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RpcHandler;
    use crate::transport::memory::MemoryNetwork;

    struct Echo;
    impl RpcHandler for Echo {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            Box::pin(async move { request })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peers_answering_recently_are_reachable() {
        let net = MemoryNetwork::new();
        net.register("b", Arc::new(Echo));
        let contacts = Arc::new(PeerContacts::default());
        let client = ObservedClient::new(net.client("a"), contacts.clone());
        let window = Duration::from_secs(1);
        let members = || [(1, "a"), (2, "b"), (3, "c")].into_iter();
        let since = Instant::now();
        let unreachable = || contacts.unreachable(members(), 1, window, since);
        assert!(
            unreachable().is_empty(),
            "everyone gets a window from `since`"
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(unreachable(), BTreeSet::from([2, 3]));
        client.call("b", vec![1]).await.unwrap();
        assert!(client.call("c", vec![1]).await.is_err());
        assert_eq!(unreachable(), BTreeSet::from([3]));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(unreachable(), BTreeSet::from([2, 3]));
    }
}
