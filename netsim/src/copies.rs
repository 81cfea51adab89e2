//! The agents' partition copies, for the agent's own `Reconciler`: which partitions
//! each node holds (kept across restarts, like the partition store on disk) and the
//! fills of new copies from their primaries, which take a drawn copy time and succeed
//! only if the primary runs and is reachable when the copy is done. netsim moves no
//! data: allocating, deriving and dropping change the set at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use agent::seam::{BoxFuture, CopyError, LocalCopies};
use shared::data::LogPosition;
use shared::model::{KeyRange, NodeId, PartitionId};

/// Identifies one fill.
pub type FillId = u64;

/// A fill asked by a node's reconciler, waiting for the loop to schedule it.
#[derive(Debug, Clone, Copy)]
pub struct FillRequest {
    /// Its id.
    pub id: FillId,
    /// The filling node.
    pub node: NodeId,
    /// The partition filled.
    pub partition_id: PartitionId,
}

/// Every node's copies, and the fills in flight.
#[derive(Debug, Default)]
pub struct CopyBoard {
    held: BTreeMap<NodeId, BTreeSet<PartitionId>>,
    next_fill: FillId,
    outgoing: Vec<FillRequest>,
    outcomes: BTreeMap<FillId, Result<(), String>>,
    /// Who to wake when a fill ends (inside a `join_all` of many, only woken futures
    /// are polled again).
    wakers: BTreeMap<FillId, Waker>,
}

impl CopyBoard {
    /// The partitions `node` holds.
    pub fn held(&self, node: NodeId) -> BTreeSet<PartitionId> {
        self.held.get(&node).cloned().unwrap_or_default()
    }

    /// `node` now holds a copy of `pid` (a move's copy arrived).
    pub fn insert(&mut self, node: NodeId, pid: PartitionId) {
        self.held.entry(node).or_default().insert(pid);
    }

    /// Takes the fills asked since the last call.
    pub fn take_outgoing(&mut self) -> Vec<FillRequest> {
        std::mem::take(&mut self.outgoing)
    }

    /// Records how fill `id` ended.
    pub fn resolve(&mut self, id: FillId, outcome: Result<(), String>) {
        self.outcomes.insert(id, outcome);
        if let Some(waker) = self.wakers.remove(&id) {
            waker.wake();
        }
    }
}

/// Shared handle on the [`CopyBoard`].
#[derive(Clone, Default)]
pub struct Copies(Arc<Mutex<CopyBoard>>);

impl Copies {
    /// The board; nothing panics while holding it.
    pub fn lock(&self) -> MutexGuard<'_, CopyBoard> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `node`'s side, as its reconciler uses it.
    pub fn of(&self, node: NodeId) -> SimCopies {
        SimCopies {
            node,
            board: self.clone(),
        }
    }
}

/// One node's copies: the reconciler's `LocalCopies` seam in netsim.
pub struct SimCopies {
    node: NodeId,
    board: Copies,
}

impl LocalCopies for SimCopies {
    fn list(&self) -> BTreeSet<PartitionId> {
        self.board.lock().held(self.node)
    }

    fn allocate(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
        let mut board = self.board.lock();
        board.held.entry(self.node).or_default().extend(pids);
        Ok(())
    }

    fn drop_copies(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
        let mut board = self.board.lock();
        if let Some(held) = board.held.get_mut(&self.node) {
            for pid in pids {
                held.remove(pid);
            }
        }
        Ok(())
    }

    fn derive(
        &self,
        _sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
    ) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
        let mut board = self.board.lock();
        let held = board.held.entry(self.node).or_default();
        held.extend(children.iter().map(|(c, _)| *c));
        Box::pin(std::future::ready(Ok(LogPosition::default())))
    }

    fn fill_from_primary(&self, pid: PartitionId) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
        Box::pin(Fill {
            board: self.board.clone(),
            state: FillState::Unsent(self.node, pid),
        })
    }

    fn discard_abandoned_stagings(&self) -> BoxFuture<'_, ()> {
        // Nothing is staged: netsim's splits copy no data ahead of their fence.
        Box::pin(std::future::ready(()))
    }
}

enum FillState {
    Unsent(NodeId, PartitionId),
    Sent(FillId),
}

/// A fill's future: asked on first poll, ready once the loop resolved it.
struct Fill {
    board: Copies,
    state: FillState,
}

impl Future for Fill {
    type Output = Result<LogPosition, CopyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut board = this.board.lock();
        match this.state {
            FillState::Unsent(node, partition_id) => {
                board.next_fill += 1;
                let id = board.next_fill;
                board.outgoing.push(FillRequest {
                    id,
                    node,
                    partition_id,
                });
                this.state = FillState::Sent(id);
                board.wakers.insert(id, cx.waker().clone());
                Poll::Pending
            }
            // The loop polls the node's reconciler after each resolution.
            FillState::Sent(id) => match board.outcomes.remove(&id) {
                Some(Ok(())) => Poll::Ready(Ok(LogPosition::default())),
                Some(Err(why)) => Poll::Ready(Err(CopyError(why))),
                None => {
                    board.wakers.insert(id, cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }
}
