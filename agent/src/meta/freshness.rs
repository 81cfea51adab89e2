//! Whether this agent's metadata replica is fresh: it leads with a quorum of voters
//! answering, or it heard from the leader recently; and whether, as a leader, it still
//! takes writes (not once it is stopping).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::model::NodeId;
use tokio::time::Instant;

use crate::seam::PeerContacts;

/// Whether this agent's metadata replica is known to be current: it heard from a Raft
/// leader (a leader: from a majority of voters) recently. Read leases are granted and
/// held only while this is so, so a partition whose copies are all cut off from the
/// majority (which may already have moved it elsewhere) stops serving reads.
pub struct MetaFreshness {
    raft: super::types::Raft,
    contacts: Arc<PeerContacts>,
    leader_contact: Mutex<Option<Instant>>,
    stopping: AtomicBool,
}

impl MetaFreshness {
    /// Freshness of the agent running `raft`, whose peer RPCs are recorded in `contacts`.
    pub fn new(raft: super::types::Raft, contacts: Arc<PeerContacts>) -> Self {
        MetaFreshness {
            raft,
            contacts,
            leader_contact: Mutex::new(None),
            stopping: AtomicBool::new(false),
        }
    }

    /// This agent is stopping: as a leader it takes no more writes (they are refused as
    /// not written, and their callers retry on the next leader).
    pub fn stop_taking_writes(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether this agent is stopping (see [`MetaFreshness::stop_taking_writes`]).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
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
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if !super::client::leads(&metrics) {
            let last = *self
                .leader_contact
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            return last.is_some_and(|t| t.elapsed() <= window);
        }
        self.quorum_answered(&metrics, window)
    }

    /// Whether this agent leads but no quorum of voters answered it within `window`.
    pub fn leads_without_quorum(&self, window: Duration) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        super::client::leads(&metrics) && !self.quorum_answered(&metrics, window)
    }

    /// Whether a majority of the voters (this one included) answered within `window`.
    fn quorum_answered(
        &self,
        metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        window: Duration,
    ) -> bool {
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
