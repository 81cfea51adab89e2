//! `netsim`: many agents' control plane in one process, in virtual time, under one seed.
//!
//! What runs is the agent's own code where it has seams: the foca gossip core
//! (`agent::membership::GossipCore`), the membership view and status reports, the
//! leader's controllers (`agent::control`: failure detector, recovery coordinator,
//! assigner, voter manager, Scaler), every agent's reconciler, the operation drivers'
//! decisions (`shared::drive`), and the pure planners and state machine of `shared`.
//! What is simulated: the network ([`network`]), the metadata log in place of openraft
//! ([`metalog`], `sim::log`), the partition copies and their fills ([`copies`]), the
//! work between operation steps, and load. See `netsim/README.md` for the exact split.

pub mod agent;
pub mod cluster;
pub mod config;
pub mod copies;
pub mod error;
pub mod event;
pub mod faults;
pub mod invariants;
pub mod leader;
pub mod metalog;
pub mod network;
pub mod observe;
pub mod plot;
pub mod rng;
pub mod scenario;
pub mod seam;
pub mod sim;
pub mod stats;
pub mod time;
pub mod trace;
pub mod truth;

pub use config::SimConfig;
pub use error::SimError;
pub use sim::Simulation;
