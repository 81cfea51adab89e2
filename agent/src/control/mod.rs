//! Leader-only controllers. Each wakes on every applied metadata entry (and on a tick),
//! does nothing unless this node leads, plans purely in `shared`, and proposes.

pub mod assigner;
pub mod failure;
pub mod keys;
pub mod recovery;
pub mod scaler;
pub mod voters;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::meta::client::MetaClient;
use crate::seam::StateHandle;

/// Runs `step` whenever the state machine applies something, leadership or membership
/// changes, or `tick` elapses, while this node is the leader. Returns once Raft stops.
pub async fn run_on_leader<F, Fut>(
    meta: Arc<MetaClient>,
    state: StateHandle,
    tick: Duration,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut applied = state.subscribe();
    // Server metrics change only with role, leader or membership (the full metrics are
    // republished on every pass of the Raft loop, far too often to wake on).
    let mut server = meta.raft().server_metrics();
    loop {
        if meta.controls_as_leader() {
            step().await;
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = server.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
