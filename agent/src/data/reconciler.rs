//! Reconciler: makes this agent's partition copies match what the metadata assigns to
//! it (allocate, derive, fill, release, drop orphans) and reports what it did back
//! through Raft. Generic over its seams ([`MetaLog`], [`LocalCopies`]): the agent runs
//! it over the data plane and openraft, netsim over its simulated copies and log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::command::MetaCommand;
use shared::lifecycle::{ReconcilePlan, fill_epoch, reconcile_plan};
use shared::model::{NodeId, PartitionId};

use crate::seam::{LocalCopies, MetaLog, StateHandle};

/// What one pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing to do: the copies match the metadata.
    Idle,
    /// It acted on copies or reported.
    Acted,
    /// Copies the metadata explains by nothing were kept: the replica could not be
    /// confirmed current (no leader reachable). A later pass judges them again.
    Unconfirmed,
}

/// Reconciles the local partitions of one agent.
pub struct Reconciler<M, C> {
    node_id: NodeId,
    copies: Arc<C>,
    state: StateHandle,
    meta: Arc<M>,
    caught_up: Arc<AtomicBool>,
}

impl<M, C> Clone for Reconciler<M, C> {
    fn clone(&self) -> Self {
        Reconciler {
            node_id: self.node_id,
            copies: self.copies.clone(),
            state: self.state.clone(),
            meta: self.meta.clone(),
            caught_up: self.caught_up.clone(),
        }
    }
}

impl<M: MetaLog, C: LocalCopies> Reconciler<M, C> {
    /// Creates the reconciler; orphans are dropped only once `caught_up` is set.
    pub fn new(
        copies: Arc<C>,
        state: StateHandle,
        meta: Arc<M>,
        caught_up: Arc<AtomicBool>,
    ) -> Self {
        Reconciler {
            node_id: meta.node_id(),
            copies,
            state,
            meta,
            caught_up,
        }
    }

    /// Reconciles on every applied entry and every `tick`, until Raft stops.
    pub async fn run(self, tick: Duration) {
        let mut applied = self.state.subscribe();
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "reconcile step failed; will retry");
            }
            tokio::select! {
                // The state machine is gone: Raft stopped, nothing left to reconcile with.
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One pass: plan, act on local copies, report.
    pub async fn step(&self) -> anyhow::Result<Pass> {
        self.copies.discard_abandoned_stagings().await;
        let local = self.copies.list();
        let orphans = self.caught_up.load(Ordering::Acquire);
        let mut plan = self
            .state
            .read(|s| reconcile_plan(s, self.node_id, &local, orphans));
        let mut kept = false;
        if !plan.drop_orphans.is_empty() {
            plan.drop_orphans = confirmed_orphans(&self.state, self.node_id, &local, || {
                self.meta.read_barrier()
            })
            .await;
            kept = plan.drop_orphans.is_empty();
        }
        if plan.is_empty() {
            return Ok(if kept { Pass::Unconfirmed } else { Pass::Idle });
        }
        for d in &plan.derive {
            // Usually done already by the split or merge itself; this covers a lost
            // request.
            let position = self
                .copies
                .derive(d.sources.clone(), d.children.clone())
                .await?;
            tracing::info!(sources = ?d.sources, children = ?d.children, lsn = position.lsn,
                "derived partitions from local sources");
        }
        self.apply_locally(&plan)?;
        self.report(plan).await?;
        Ok(Pass::Acted)
    }

    /// Splits `pids` into copies that hold their data now and copies filled from their
    /// primary just now (with the epoch they were filled at, see [`fill_epoch`]). The
    /// copies to fill ask all at once.
    async fn filled(&self, pids: Vec<PartitionId>) -> (Vec<PartitionId>, Vec<(PartitionId, u64)>) {
        let mut ready = Vec::new();
        let mut to_fill = Vec::new();
        for pid in pids {
            match self.state.read(|s| fill_epoch(s, self.node_id, pid)) {
                Some(epoch) => to_fill.push((pid, epoch)),
                None => ready.push(pid),
            }
        }
        let fills = to_fill.into_iter().map(|(pid, epoch)| async move {
            match self.copies.fill_from_primary(pid).await {
                Ok(position) => {
                    tracing::info!(
                        partition = pid,
                        lsn = position.lsn,
                        "replica filled from its primary"
                    );
                    Some((pid, epoch))
                }
                // The primary may be failing over: the next pass asks again.
                Err(e) => {
                    tracing::info!(partition = pid, error = %e, "replica not filled yet");
                    None
                }
            }
        });
        let filled = futures::future::join_all(fills)
            .await
            .into_iter()
            .flatten()
            .collect();
        (ready, filled)
    }

    fn apply_locally(&self, plan: &ReconcilePlan) -> anyhow::Result<()> {
        if !plan.allocate.is_empty() {
            self.copies.allocate(&plan.allocate)?;
            tracing::info!(partitions = ?plan.allocate, "allocated partition storage");
        }
        let mut drop: Vec<_> = plan
            .release
            .iter()
            .chain(&plan.drop_orphans)
            .copied()
            .collect();
        drop.retain(|p| !plan.allocate.contains(p));
        if !drop.is_empty() {
            self.copies.drop_copies(&drop)?;
            tracing::info!(partitions = ?drop, "released partition storage");
        }
        Ok(())
    }

    async fn report(&self, plan: ReconcilePlan) -> anyhow::Result<()> {
        let (ready, filled) = self.filled(plan.report_ready).await;
        if !ready.is_empty() {
            let cmd = MetaCommand::PartitionsReady {
                node_id: self.node_id,
                partition_ids: ready,
            };
            self.meta.propose_via_leader(cmd).await?.ok();
        }
        if !filled.is_empty() {
            let cmd = MetaCommand::PartitionsReadyAt {
                node_id: self.node_id,
                partitions: filled,
            };
            // A stale epoch (the partition moved while filling) is refused: refilled next pass.
            self.meta.propose_via_leader(cmd).await?.ok();
        }
        if !plan.release.is_empty() {
            let cmd = MetaCommand::PartitionsReleased {
                node_id: self.node_id,
                partition_ids: plan.release,
            };
            self.meta.propose_via_leader(cmd).await?.ok();
        }
        Ok(())
    }
}

/// The local copies the metadata explains by no assignment, release, derivation or
/// running move, judged on a replica confirmed current by `barrier` (a read index from
/// the leader): a move's copy can arrive from its source before this replica applied
/// the operation that sends it, and a replica cut off from the leader can miss the
/// commit that made it a member. Judged on the replica as it was, such a copy was
/// dropped; its node, primary after the move, restarted empty and served an empty
/// partition (testbed seed 1, issue 15: 29 acknowledged writes lost). Without a
/// confirmed replica nothing is dropped.
async fn confirmed_orphans<B, F>(
    state: &StateHandle,
    node_id: NodeId,
    local: &std::collections::BTreeSet<PartitionId>,
    barrier: B,
) -> Vec<PartitionId>
where
    B: FnOnce() -> F,
    F: std::future::Future<Output = Result<(), crate::seam::MetaClientError>>,
{
    if let Err(e) = barrier().await {
        tracing::debug!(error = %e, "orphans kept: the metadata replica is not confirmed current");
        return Vec::new();
    }
    state.read(|s| reconcile_plan(s, node_id, local, true).drop_orphans)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use shared::command::MetaCommand;
    use shared::model::{KeyRange, OperationKind};
    use shared::state::MetaState;

    use super::*;
    use crate::seam::fake::{RecordingLog, orders_table};
    use crate::seam::{BoxFuture, CopyError, MetaClientError};
    use shared::command::PartitionChange;
    use shared::data::LogPosition;
    use std::sync::Mutex;

    /// Copies in a set; fills succeed unless `fills_fail`.
    #[derive(Default)]
    struct SetCopies {
        held: Mutex<BTreeSet<PartitionId>>,
        fills_fail: AtomicBool,
    }

    impl LocalCopies for SetCopies {
        fn list(&self) -> BTreeSet<PartitionId> {
            self.held.lock().unwrap().clone()
        }

        fn allocate(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
            self.held.lock().unwrap().extend(pids);
            Ok(())
        }

        fn drop_copies(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
            self.held.lock().unwrap().retain(|p| !pids.contains(p));
            Ok(())
        }

        fn derive(
            &self,
            _sources: Vec<PartitionId>,
            children: Vec<(PartitionId, KeyRange)>,
        ) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
            self.held
                .lock()
                .unwrap()
                .extend(children.iter().map(|(c, _)| *c));
            Box::pin(std::future::ready(Ok(LogPosition::default())))
        }

        fn fill_from_primary(
            &self,
            pid: PartitionId,
        ) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
            let result = if self.fills_fail.load(Ordering::SeqCst) {
                Err(CopyError(format!("primary of {pid} unreachable")))
            } else {
                Ok(LogPosition::default())
            };
            Box::pin(std::future::ready(result))
        }

        fn discard_abandoned_stagings(&self) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }

    fn reconciler_of(
        node: NodeId,
        state: MetaState,
    ) -> (
        Reconciler<RecordingLog, SetCopies>,
        Arc<RecordingLog>,
        Arc<SetCopies>,
        StateHandle,
    ) {
        // Reconcilers run on every node: as followers, they report through the leader.
        let log = Arc::new(RecordingLog::follower(node));
        let copies = Arc::new(SetCopies::default());
        let replica = StateHandle::detached(state);
        let caught_up = Arc::new(AtomicBool::new(true));
        let reconciler = Reconciler::new(copies.clone(), replica.clone(), log.clone(), caught_up);
        (reconciler, log, copies, replica)
    }

    #[tokio::test]
    async fn a_repair_copy_is_reported_only_once_filled_and_at_its_epoch() {
        // Node 4 replaces node 3 in partition 1 (epoch 2); nodes 1 and 2 serve.
        let mut s = cluster();
        s.apply(&MetaCommand::RepairPartitions {
            changes: vec![PartitionChange {
                partition_id: 1,
                expected_epoch: 1,
                primary_node_id: 1,
                replica_node_ids: vec![2, 4],
            }],
        })
        .unwrap();
        let (reconciler, log, copies, _) = reconciler_of(4, s);
        copies.fills_fail.store(true, Ordering::SeqCst);
        assert_eq!(reconciler.step().await.unwrap(), Pass::Acted);
        assert_eq!(copies.list(), BTreeSet::from([1]), "allocated");
        assert!(log.taken().is_empty(), "an unfilled copy is not ready");

        copies.fills_fail.store(false, Ordering::SeqCst);
        reconciler.step().await.unwrap();
        assert_eq!(
            log.taken(),
            vec![MetaCommand::PartitionsReadyAt {
                node_id: 4,
                partitions: vec![(1, 2)],
            }]
        );
    }

    #[tokio::test]
    async fn a_new_tables_copies_are_ready_at_once_and_a_matching_node_is_idle() {
        let (reconciler, log, copies, _) = reconciler_of(1, cluster());
        copies.allocate(&[1]).unwrap();
        assert_eq!(reconciler.step().await.unwrap(), Pass::Idle);
        assert!(log.taken().is_empty());

        // A first placement (epoch 1): every copy starts empty together, no fill.
        let mut placed = MetaState::new();
        for cmd in first_placement() {
            placed.apply(&cmd).unwrap();
        }
        let (reconciler, log, copies, _) = reconciler_of(2, placed);
        copies.fills_fail.store(true, Ordering::SeqCst);
        assert_eq!(reconciler.step().await.unwrap(), Pass::Acted);
        assert_eq!(
            log.taken(),
            vec![MetaCommand::PartitionsReady {
                node_id: 2,
                partition_ids: vec![1],
            }]
        );
    }

    #[tokio::test]
    async fn an_orphan_is_dropped_only_on_a_confirmed_replica() {
        // Node 4 holds partition 1, which nothing assigns to it.
        let (reconciler, log, copies, _) = reconciler_of(4, cluster());
        copies.allocate(&[1]).unwrap();
        log.cut_off.store(true, Ordering::SeqCst);
        assert_eq!(reconciler.step().await.unwrap(), Pass::Unconfirmed);
        assert_eq!(copies.list(), BTreeSet::from([1]), "kept while cut off");

        log.cut_off.store(false, Ordering::SeqCst);
        assert_eq!(reconciler.step().await.unwrap(), Pass::Acted);
        assert!(copies.list().is_empty(), "dropped once confirmed");
        assert!(
            log.taken().is_empty(),
            "an orphan is dropped without a report"
        );
    }

    const T0: u64 = 1_796_601_600_000;

    /// Nodes 1 to 4, a table whose one partition (id 1) is assigned to nodes 1, 2, 3.
    fn first_placement() -> Vec<MetaCommand> {
        let mut cmds: Vec<MetaCommand> = (1..=4)
            .map(|id| MetaCommand::RegisterNode {
                node_id: id,
                endpoint: format!("http://127.0.0.1:{}", 7000 + id),
                peer_addr: format!("127.0.0.1:{}", 8000 + id),
                zone: format!("z{id}"),
                incarnation: T0,
                now_ms: T0,
            })
            .collect();
        cmds.extend(orders_table(1, vec![2, 3], T0));
        cmds
    }

    /// [`first_placement`], every copy ready and the table ACTIVE.
    fn cluster() -> MetaState {
        let mut s = MetaState::new();
        let mut apply = |cmd| s.apply(&cmd).unwrap();
        for cmd in first_placement() {
            apply(cmd);
        }
        for node_id in 1..=3 {
            apply(MetaCommand::PartitionsReady {
                node_id,
                partition_ids: vec![1],
            });
        }
        apply(MetaCommand::ActivateTable {
            table_id: 1,
            now_ms: T0,
        });
        s
    }

    #[tokio::test]
    async fn a_moved_copy_that_arrived_before_its_operation_is_not_dropped() {
        // Node 4's replica has not applied the move of partition 1 to it yet, but the
        // move's source has already copied the partition there.
        let stale = cluster();
        let mut current = stale.clone();
        current
            .apply(&MetaCommand::StartOperation {
                partition_id: 1,
                kind: OperationKind::Move { from: 3, to: 4 },
                requested_by: "scaler".into(),
                now_ms: T0 + 1,
            })
            .unwrap();
        let replica = StateHandle::detached(stale);
        let local = BTreeSet::from([1]);
        let judged_on_stale = replica.read(|s| reconcile_plan(s, 4, &local, true).drop_orphans);
        assert_eq!(
            judged_on_stale,
            vec![1],
            "the race: stale, the copy looks orphaned"
        );

        let confirmed = confirmed_orphans(&replica, 4, &local, || async {
            replica.install_detached(current.clone(), 20);
            Ok(())
        })
        .await;
        assert!(confirmed.is_empty(), "{confirmed:?}");
    }

    #[tokio::test]
    async fn without_a_confirmed_replica_nothing_is_dropped_and_a_true_orphan_is() {
        let replica = StateHandle::detached(cluster());
        let local = BTreeSet::from([1]);
        let cut_off = confirmed_orphans(&replica, 4, &local, || async {
            Err(MetaClientError::NoLeader("cut off".into()))
        })
        .await;
        assert!(cut_off.is_empty());
        let confirmed = confirmed_orphans(&replica, 4, &local, || async { Ok(()) }).await;
        assert_eq!(confirmed, vec![1], "no move explains it: a true orphan");
    }
}
