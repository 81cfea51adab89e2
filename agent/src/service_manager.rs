//! Telling the service manager (systemd, `Type=notify`) how the agent is: `READY=1` once
//! its metadata replica has caught up with the leader, `WATCHDOG=1` while its runtime
//! runs tasks, `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` each is a no-op.

use sd_notify::NotifyState;

/// Announces readiness (the metadata replica caught up with the leader).
pub fn announce_ready() {
    send(&[
        NotifyState::Ready,
        NotifyState::Status("serving: metadata replica caught up"),
    ]);
}

/// Pings the watchdog at half its period, if the service manager enabled one; a wedged
/// runtime stops the pings and the service manager restarts the agent.
pub async fn feed_watchdog() {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(period / 2);
    loop {
        ticks.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

/// Says the agent is stopping.
pub fn announce_stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(why) = sd_notify::notify(states) {
        tracing::warn!(%why, "cannot notify the service manager");
    }
}
