//! Multi-process tests: real `agent` binaries on loopback, each test with its own port
//! range and data directory; every child is killed when a test ends, even on failure.

mod auth;
mod bad_input;
mod bootstrap;
mod certs;
mod data;
mod dev;
mod disaster;
mod failover;
mod harness;
mod health;
mod operations;
mod recovery;
mod rejoin;
mod rolling;
mod service;
