//! The pure core of the control plane: model, state machine, routing, placement, failure
//! and recovery decisions, and API types.
//!
//! Nothing here does IO, reads a clock or spawns a task: time is always an argument.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod command;
pub mod data;
pub mod departure;
pub mod drive;
pub mod failure;
pub mod format;
pub mod keyspace;
pub mod lifecycle;
pub mod model;
pub mod placement;
pub mod rebalance;
pub mod recovery;
pub mod scaler;
pub mod split;
pub mod state;
#[cfg(test)]
mod testkit;
pub mod validate;
