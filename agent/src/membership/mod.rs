//! SWIM gossip membership (foca) carried in QUIC datagrams: each agent's view of which
//! agents are alive, suspected or down, with each agent's latest status report.
//! SUSPECTED is this view only; a failure is decided by the Raft leader alone.

mod driver;
mod identity;
pub mod report;
mod swim;
mod view;

pub use driver::{
    DISCOVERY_INTERVAL, DriverParts, GossipDriver, GossipLeave, LocalMember, STATE_REFRESH,
    StatusSource, foca_config,
};
pub use identity::GossipId;
pub use swim::{CoreParts, GossipCore, GossipEffects};
pub use view::{Membership, PeerRecord};

#[cfg(test)]
mod tests;
