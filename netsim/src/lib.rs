//! `netsim`: many agents' control plane in one process, in virtual time, under one seed.
//!
//! What runs is the agent's own code where it has seams: the foca gossip core
//! (`agent::membership::GossipCore`), the membership view and status reports, the
//! failure detector and recovery coordinator (`agent::control`), and the pure planners
//! and state machine of `shared`. What is simulated: the network ([`network`]), the
//! metadata log in place of openraft ([`metalog`], `sim::log`), the reconciler's copies
//! and the voter manager's schedule. See `netsim/README.md` for the exact split.

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
