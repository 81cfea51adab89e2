//! The leader's judgement of which members it can reach, from its Raft contacts: a
//! member that has not answered any peer RPC for a window (counted from when this node
//! became leader, so a new leader gives everyone a window) is unreachable.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::model::NodeId;
use tokio::time::Instant;

use super::types::Raft;
use crate::seam::{PeerContacts, Reachability};

/// Reachability of the Raft members, as this leader's contacts show it.
pub struct RaftReachability {
    raft: Raft,
    contacts: Arc<PeerContacts>,
    window: Duration,
    /// The term in which this node last became leader, and when it noticed.
    leadership: Mutex<Option<(u64, Instant)>>,
}

impl RaftReachability {
    /// Members silent for `window` are unreachable.
    pub fn new(raft: Raft, contacts: Arc<PeerContacts>, window: Duration) -> Self {
        RaftReachability {
            raft,
            contacts,
            window,
            leadership: Mutex::new(None),
        }
    }
}

impl Reachability for RaftReachability {
    fn unreachable(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let since = {
            let mut leadership = self.leadership.lock().unwrap_or_else(|e| e.into_inner());
            match *leadership {
                Some((term, since)) if term == metrics.current_term => since,
                _ => leadership.insert((metrics.current_term, Instant::now())).1,
            }
        };
        let membership = metrics.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.as_str()));
        self.contacts
            .unreachable(members, metrics.id, self.window, since)
    }
}
