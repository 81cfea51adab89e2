//! The identity an agent has in SWIM gossip.

use foca::Identity;
use serde::{Deserialize, Serialize};
use shared::model::NodeId;

/// A member of the gossip cluster: node id, peer address and incarnation. Foca compares
/// members by `addr()`, the node id, so a restarted agent (new incarnation) replaces its
/// previous identity everywhere instead of being a second member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GossipId {
    /// Node id (also the Raft node id).
    pub node_id: NodeId,
    /// QUIC peer address ("host:port").
    pub peer_addr: String,
    /// The agent's incarnation, as registered through Raft (grows on every start).
    pub incarnation: u64,
    /// Bumped each time foca renews the identity after gossip declared it down while the
    /// process kept running (a refuted or false suspicion, never a restart).
    pub generation: u32,
}

impl GossipId {
    /// The first identity of an agent process.
    pub fn new(node_id: NodeId, peer_addr: String, incarnation: u64) -> Self {
        GossipId {
            node_id,
            peer_addr,
            incarnation,
            generation: 0,
        }
    }
}

impl Identity for GossipId {
    type Addr = NodeId;

    /// Opting in to renewal lets foca rejoin on its own after a false "down".
    fn renew(&self) -> Option<Self> {
        Some(GossipId {
            generation: self.generation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.node_id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.generation) > (adversary.incarnation, adversary.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_incarnation_or_generation_wins() {
        let a = GossipId::new(3, "h:1".into(), 10);
        let renewed = a.renew().expect("renewable");
        assert_eq!(renewed.addr(), a.addr());
        assert!(renewed.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&renewed));
        let restarted = GossipId::new(3, "h:1".into(), 11);
        assert!(restarted.win_addr_conflict(&renewed));
    }
}
