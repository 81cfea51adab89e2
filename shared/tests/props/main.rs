//! Property and round-trip tests of the shared core, compiled as one test binary.

mod auth;
mod drive;
mod fixtures;
mod operations;
mod placement;
mod rebalance;
mod recovery;
mod routing;
mod snapshot;
mod state_machine;
