//! Write fencing. A record is named by (LSN, epoch), and catch-up trusts that one name is
//! one record. That holds only if no epoch ever has two primaries' worth of numbering,
//! so a primary writes at an epoch only when it knows every record of that epoch that
//! may exist anywhere: when the epoch began after this process started, and no write of
//! it ended in doubt. Otherwise (a write whose outcome is unknown, or a partition this
//! process found itself leading when it started, which a previous run of the process may
//! have written to) the partition is fenced: writes are refused until the primary has
//! moved it to a new epoch through Raft (same replicas, epoch + 1). Catch-up at the new
//! epoch then tells the old, possibly divergent records apart by their epoch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared::model::PartitionId;
use tokio::time::Instant;

use super::lock;

/// How long a proposed epoch change is waited for before it is proposed again.
const REPROPOSE_AFTER: Duration = Duration::from_secs(1);

/// What a write must do about fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FenceCheck {
    /// Clean: write.
    Write,
    /// Fenced: refuse, and propose the epoch change (again).
    Propose,
    /// Fenced, change already proposed, or the process has not caught up yet: refuse.
    Wait,
}

#[derive(Default)]
struct State {
    /// Set once the metadata replica caught up at start-up and the partitions led then
    /// were fenced; before that nothing is known to be clean.
    armed: bool,
    /// Fenced partitions: the epoch that may not be written, and when its change was
    /// last proposed.
    fenced: HashMap<PartitionId, (u64, Option<Instant>)>,
}

/// The fences of one agent's primaries.
#[derive(Default)]
pub(super) struct Fences {
    state: Mutex<State>,
}

impl Fences {
    /// Start-up: fences every partition this process leads now (at these epochs).
    pub(super) fn arm(&self, led: impl IntoIterator<Item = (PartitionId, u64)>) {
        let mut state = lock(&self.state);
        for (pid, epoch) in led {
            state.fenced.insert(pid, (epoch, None));
        }
        state.armed = true;
    }

    /// Fences `pid` at `epoch` after a write whose outcome is unknown.
    pub(super) fn fence(&self, pid: PartitionId, epoch: u64) {
        let mut state = lock(&self.state);
        let entry = state.fenced.entry(pid).or_insert((epoch, None));
        if epoch >= entry.0 {
            *entry = (epoch, None);
        }
    }

    /// Whether this node may hold a record of `pid` at `epoch` that other copies lack
    /// (a write in doubt, or one a previous run of the process may have made): until
    /// the partition moves to a new epoch, reading it here could return a value the
    /// next primary does not have.
    pub(super) fn in_doubt(&self, pid: PartitionId, epoch: u64) -> bool {
        let state = lock(&self.state);
        state
            .fenced
            .get(&pid)
            .is_some_and(|(fenced, _)| epoch <= *fenced)
    }

    /// Whether a write of `pid` at `epoch` may proceed.
    pub(super) fn check(&self, pid: PartitionId, epoch: u64, now: Instant) -> FenceCheck {
        let mut state = lock(&self.state);
        if !state.armed {
            return FenceCheck::Wait;
        }
        let Some((fenced, proposed)) = state.fenced.get_mut(&pid) else {
            return FenceCheck::Write;
        };
        if epoch > *fenced {
            // The partition moved on: every record of this epoch was numbered by a
            // primary that knew the whole log.
            state.fenced.remove(&pid);
            return FenceCheck::Write;
        }
        if proposed.is_some_and(|at| now.duration_since(at) < REPROPOSE_AFTER) {
            return FenceCheck::Wait;
        }
        *proposed = Some(now);
        FenceCheck::Propose
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_until_the_epoch_moves() {
        let f = Fences::default();
        let now = Instant::now();
        assert_eq!(f.check(1, 3, now), FenceCheck::Wait, "not armed yet");
        f.arm([(1, 3)]);
        assert_eq!(f.check(2, 5, now), FenceCheck::Write, "not led at start-up");
        assert_eq!(f.check(1, 3, now), FenceCheck::Propose);
        assert_eq!(f.check(1, 3, now), FenceCheck::Wait, "proposed already");
        assert_eq!(f.check(1, 3, now + REPROPOSE_AFTER), FenceCheck::Propose);
        assert_eq!(f.check(1, 4, now), FenceCheck::Write, "new epoch");
        assert_eq!(f.check(1, 4, now), FenceCheck::Write);
        assert!(!f.in_doubt(1, 4));
        f.fence(1, 4);
        assert!(f.in_doubt(1, 4), "reads wait for the new epoch too");
        assert_eq!(f.check(1, 4, now), FenceCheck::Propose, "a write in doubt");
        assert_eq!(f.check(1, 5, now), FenceCheck::Write);
        assert!(!f.in_doubt(1, 5));
    }

    #[test]
    fn a_partition_only_read_after_a_write_in_doubt_asks_again_until_its_epoch_moves() {
        // What the read path relies on: a refused epoch change is proposed again.
        let f = Fences::default();
        f.arm([]);
        f.fence(7, 2);
        let now = Instant::now();
        assert!(f.in_doubt(7, 2));
        assert_eq!(f.check(7, 2, now), FenceCheck::Propose);
        let soon = now + Duration::from_millis(1);
        assert_eq!(f.check(7, 2, soon), FenceCheck::Wait);
        assert_eq!(f.check(7, 2, now + REPROPOSE_AFTER), FenceCheck::Propose);
        assert!(f.in_doubt(7, 2), "fenced until the epoch moves");
        assert_eq!(f.check(7, 3, now), FenceCheck::Write);
        assert!(!f.in_doubt(7, 3));
    }
}
