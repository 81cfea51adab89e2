//! Partition data on this agent: storage and the reconciler that keeps it in line
//! with the metadata.

mod config;
pub mod plane;
pub mod reconciler;
pub mod store;

pub use config::DataConfig;
