//! The agent daemon and `agentctl`: all IO around the pure core in `shared`.

pub mod api_client;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod control;
pub mod data;
pub mod data_client;
pub mod dev;
pub mod durable;
#[cfg(test)]
mod golden;
pub mod host;
pub mod http;
pub mod join;
pub mod membership;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod peer_server;
pub mod seam;
pub mod service_manager;
pub mod store_format;
pub mod supervisor;
pub mod transport;
