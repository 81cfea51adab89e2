//! The applied-state seam: read access to this agent's replica of the metadata, and a
//! watch of its applied index. The state machine writes it; netsim installs each
//! simulated replica's state directly.

use std::sync::{Arc, PoisonError, RwLock};

use shared::state::MetaState;
use tokio::sync::watch;

/// State shared between the state machine and its read handles.
struct Shared {
    state: RwLock<MetaState>,
    applied: watch::Sender<u64>,
}

/// Cheap, clonable read access to the replicated `MetaState` for the rest of the agent.
#[derive(Clone)]
pub struct StateHandle {
    shared: Arc<Shared>,
}

impl StateHandle {
    /// Runs `f` on the current state under a read lock; never hold it across an `.await`.
    pub fn read<R>(&self, f: impl FnOnce(&MetaState) -> R) -> R {
        // A poisoned lock means `apply` panicked, which stops Raft anyway; keep readers alive.
        let state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&state)
    }

    /// Index of the last applied log entry (0 if nothing was applied).
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// A replica holding `state` as of log entry `applied`: the state machine's own.
    pub(crate) fn new(state: MetaState, applied: u64) -> StateHandle {
        let (applied, _) = watch::channel(applied);
        StateHandle {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                applied,
            }),
        }
    }

    /// Runs `f` on the state under the write lock (the state machine applies so, so
    /// readers see whole batches).
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut MetaState) -> R) -> R {
        let mut state = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// Publishes `index` as the applied index (after an apply batch or a snapshot).
    pub(crate) fn publish_applied(&self, index: u64) {
        self.shared.applied.send_replace(index);
    }

    /// A handle on a fixed state that no Raft updates: for tests and the simulator, which
    /// run controllers and the gossip driver without a metadata store.
    pub fn detached(state: MetaState) -> StateHandle {
        let (applied, _) = watch::channel(0);
        StateHandle {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                applied,
            }),
        }
    }

    /// Replaces this replica by `state` as of log entry `index`: the simulator, which has
    /// no Raft, brings each agent's detached handle up to date this way.
    pub fn install_detached(&self, state: MetaState, index: u64) {
        *self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner) = state;
        self.shared.applied.send_replace(index);
    }

    /// Watches the applied index; it changes after every apply batch and snapshot install.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }
}
