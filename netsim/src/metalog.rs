//! The simulated linearizable metadata log: one authoritative `MetaState` and its
//! committed entries, a leader, a term and a voter set. This replaces openraft (whose
//! timers and tasks are not reproducible under a seed); how entries reach it and the
//! replicas is the event loop's job (`sim::log`).

use std::collections::BTreeSet;

use shared::command::{MetaCommand, MetaResult};
use shared::model::NodeId;
use shared::state::MetaState;

/// The log.
pub struct SimLog {
    state: MetaState,
    entries: Vec<MetaCommand>,
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
    /// A log whose state before entry 1 is `state`.
    pub fn new(state: MetaState) -> Self {
        SimLog {
            state,
            entries: Vec::new(),
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
        (self.commit_index(), result)
    }

    /// Votes needed for a quorum.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}
