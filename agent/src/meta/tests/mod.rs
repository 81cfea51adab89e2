//! Tests of the metadata store: openraft's conformance suite, restart recovery, wire codec,
//! and in-process clusters over an in-memory transport.

mod cluster;
mod codec;
mod network;
mod store;
pub(crate) mod support;
