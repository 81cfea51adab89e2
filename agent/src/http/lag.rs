//! How far this agent's metadata replica is behind the leader, in time: when gossip
//! shows the leader has applied index `i`, the clock starts for `i`; it stops once this
//! agent has applied `i`. The lag is the age of the oldest index not yet applied here.

use std::collections::VecDeque;
use std::sync::Mutex;

use shared::model::UnixMillis;

/// Leader indexes remembered at most; beyond this the newest are not recorded (the
/// oldest, which decides the lag, is kept).
const MAX_PENDING: usize = 256;

/// Tracks the metadata replication lag of one agent.
#[derive(Default)]
pub struct ApplyLag {
    /// Leader applied indexes not yet applied here, with when each was first seen.
    pending: Mutex<VecDeque<(u64, UnixMillis)>>,
}

impl ApplyLag {
    /// Records the leader's applied index (if known) and this agent's; returns the lag in
    /// milliseconds (0 when caught up).
    pub fn sample(&self, leader_applied: Option<u64>, local_applied: u64, now: UnixMillis) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = leader_applied
            && index > local_applied
            && pending.back().is_none_or(|(last, _)| index > *last)
            && pending.len() < MAX_PENDING
        {
            pending.push_back((index, now));
        }
        while pending
            .front()
            .is_some_and(|(index, _)| *index <= local_applied)
        {
            pending.pop_front();
        }
        pending
            .front()
            .map_or(0, |(_, since)| now.saturating_sub(*since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_unapplied_leader_index() {
        let lag = ApplyLag::default();
        assert_eq!(lag.sample(Some(10), 10, 1000), 0);
        assert_eq!(lag.sample(Some(12), 10, 1000), 0);
        assert_eq!(lag.sample(Some(15), 11, 1300), 300);
        // 12 applied: the clock of 15 (seen at 1300) remains.
        assert_eq!(lag.sample(None, 12, 1500), 200);
        assert_eq!(lag.sample(None, 15, 1600), 0);
    }
}
