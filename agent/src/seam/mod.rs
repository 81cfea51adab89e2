//! The seams at the bottom of the agent: what controllers, drivers, the reconciler and
//! the HTTP API need from the world, as small types and traits. The agent plugs in
//! openraft, QUIC and the system clock; `netsim` plugs in its simulation, so both run
//! the same decision code. Nothing here does IO of its own, and nothing here imports
//! another module of the agent but `metrics`.

mod clock;
mod copies;
#[cfg(test)]
pub(crate) mod fake;
mod keys;
mod liveness;
mod meta;
mod replicas;
mod state;
mod voters;

use std::future::Future;
use std::pin::Pin;

pub use clock::{Clock, system_clock};
pub use copies::{CopyError, LocalCopies};
pub use keys::SigningKeyRing;
pub use liveness::{ContactAges, PeerContacts, Reachability};
pub use meta::{LeaderRoute, MetaClientError, MetaLog};
pub use replicas::{PrimaryHandOver, ReplicaLoads, ReplicaPositions};
pub use state::StateHandle;
pub use voters::{MembersView, VoterMembership};

/// A boxed future, for trait methods that return one.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
