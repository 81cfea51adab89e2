//! The Raft metadata store: openraft types, the redb-backed log and state machine, the
//! peer network that carries Raft RPCs over the agent transport, and the client that
//! proposes and reads through the leader.

pub mod client;
pub mod freshness;
pub mod log_store;
pub mod network;
pub mod offline;
pub mod reachability;
pub mod rpc;
pub mod state_machine;
pub mod step_down;
pub mod types;
pub mod voters;

#[cfg(test)]
pub(crate) mod tests;

/// File name of the metadata database in a data dir (Raft log, vote, state machine
/// snapshot).
pub const META_FILE: &str = "meta.redb";

pub use log_store::{LogReader, LogStore};
pub use network::{PeerNetwork, PeerNetworkFactory};
pub use rpc::{
    Committed, ForwardError, JoinRequest, PeerRequest, PeerResponse, handle_raft_request,
};
pub use state_machine::StateMachineStore;
pub use types::{Raft, StoreError, TypeConfig};
