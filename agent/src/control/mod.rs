//! Leader-only controllers. Each wakes on every applied metadata entry (and on a tick),
//! does nothing unless this node leads, plans purely in `shared`, and proposes.

pub mod assigner;
pub mod voters;

use std::sync::Arc;
use std::time::Duration;

use crate::meta::state_machine::StateHandle;
use crate::node::meta_client::{LeaderRoute, MetaClient};

/// Runs `step` whenever the state machine applies something or `tick` elapses, while
/// this node is the leader. Never returns.
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
    let mut metrics = meta.raft().metrics();
    loop {
        if meta.leader() == LeaderRoute::Local {
            step().await;
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
