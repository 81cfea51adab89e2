//! Partition data on this agent: storage and the reconciler that keeps it in line
//! with the metadata.

pub mod plane;
pub mod reconciler;
pub mod store;
