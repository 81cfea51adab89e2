//! The simulated linearizable metadata log: one authoritative `MetaState` and its
//! committed entries, a leader, a term and a voter set. This replaces openraft (whose
//! timers and tasks are not reproducible under a seed); how entries reach it and the
//! replicas is the event loop's job (`sim::log`).

use std::collections::{BTreeSet, VecDeque};

use shared::command::{MetaCommand, MetaResult};
use shared::model::NodeId;
use shared::state::MetaState;

/// States kept at most by default (`SimConfig::kept_versions`), so a replica cut off
/// for long does not hold every version in memory.
pub const DEFAULT_KEPT_VERSIONS: usize = 4096;

/// The log.
pub struct SimLog {
    state: MetaState,
    entries: Vec<MetaCommand>,
    /// The state after each recent entry, oldest first: copies share all they did not
    /// change, so a replica takes the one it reaches instead of applying the entries
    /// again (apply is deterministic: same entries, same state).
    versions: VecDeque<MetaState>,
    /// Index of the entry after which `versions[0]` was taken.
    first_version: u64,
    /// At most this many in `versions`.
    kept_versions: usize,
    /// Replicas that took the current state because theirs was no longer kept.
    pub snapshot_installs: u64,
    /// The leader, while there is one.
    pub leader: Option<NodeId>,
    /// Current term (grows with every election).
    pub term: u64,
    /// Voters.
    pub voters: BTreeSet<NodeId>,
    /// An election is scheduled.
    pub electing: bool,
}

impl SimLog {
    /// A log whose state before entry 1 is `state`, keeping the states after its last
    /// `kept_versions` entries.
    pub fn new(state: MetaState, kept_versions: usize) -> Self {
        SimLog {
            state,
            entries: Vec::new(),
            versions: VecDeque::new(),
            first_version: 1,
            kept_versions,
            snapshot_installs: 0,
            leader: None,
            term: 0,
            voters: BTreeSet::new(),
            electing: false,
        }
    }

    /// The authoritative state (as of the last commit).
    pub fn state(&self) -> &MetaState {
        &self.state
    }

    /// Index of the last committed entry.
    pub fn commit_index(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Entry `index` (1-based).
    pub fn entry(&self, index: u64) -> &MetaCommand {
        &self.entries[(index - 1) as usize]
    }

    /// Commits `cmd` as the next entry: its index and the state machine's result.
    pub fn commit(&mut self, cmd: MetaCommand) -> (u64, MetaResult) {
        let result = self.state.apply(&cmd);
        self.entries.push(cmd);
        self.versions.push_back(self.state.clone());
        if self.versions.len() > self.kept_versions {
            self.forget_versions_before(self.first_version + 1);
        }
        (self.commit_index(), result)
    }

    /// The state right after entry `index`, if still kept.
    pub fn version(&self, index: u64) -> Option<&MetaState> {
        let offset = index.checked_sub(self.first_version)?;
        self.versions.get(usize::try_from(offset).ok()?)
    }

    /// Drops the kept states of entries before `index` (every replica that will apply
    /// is past them; the others apply the entries themselves).
    pub fn forget_versions_before(&mut self, index: u64) {
        while self.first_version < index && self.versions.pop_front().is_some() {
            self.first_version += 1;
        }
    }

    /// Votes needed for a quorum.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(node_id: NodeId) -> MetaCommand {
        MetaCommand::RegisterNode {
            node_id,
            endpoint: format!("http://n{node_id}"),
            peer_addr: format!("n{node_id}:7100"),
            zone: "a".into(),
            incarnation: 1,
            now_ms: 0,
        }
    }

    #[test]
    fn a_kept_version_is_the_state_after_its_entry() {
        let mut log = SimLog::new(MetaState::new(), DEFAULT_KEPT_VERSIONS);
        let mut replayed = MetaState::new();
        for node in 1..=3 {
            let (index, _) = log.commit(register(node));
            replayed.apply(&register(node)).unwrap();
            assert_eq!(log.version(index), Some(&replayed));
        }
        assert_eq!(log.version(0), None);
        assert_eq!(log.version(4), None, "not committed yet");
        log.forget_versions_before(3);
        assert_eq!(log.version(2), None);
        assert_eq!(log.version(3), Some(log.state()));
        log.forget_versions_before(1);
        assert!(log.version(3).is_some(), "forgetting never goes back");
    }

    #[test]
    fn at_most_kept_versions_are_kept() {
        let kept = 8;
        let mut log = SimLog::new(MetaState::new(), kept);
        for _ in 0..=kept {
            let (_, result) = log.commit(MetaCommand::GcRevocations { now_ms: 0 });
            result.unwrap();
        }
        let last = log.commit_index();
        assert!(log.version(last).is_some());
        assert!(log.version(last - kept as u64 + 1).is_some());
        assert!(log.version(last - kept as u64).is_none());
    }
}
