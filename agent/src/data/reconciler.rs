//! Reconciler: makes this agent's partition storage match what the metadata assigns to
//! it (allocate, release, drop orphans) and reports what it did back through Raft.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::command::MetaCommand;
use shared::lifecycle::{ReconcilePlan, reconcile_plan};
use shared::model::{NodeId, PartitionId};

use crate::data::plane::DataPlane;
use crate::data::store::PartitionStore;
use crate::meta::client::MetaClient;
use crate::seam::StateHandle;

/// Reconciles the local partitions of one agent.
#[derive(Clone)]
pub struct Reconciler {
    node_id: NodeId,
    data: Arc<DataPlane>,
    store: Arc<PartitionStore>,
    state: StateHandle,
    meta: Arc<MetaClient>,
    caught_up: Arc<AtomicBool>,
}

impl Reconciler {
    /// Creates the reconciler; orphans are dropped only once `caught_up` is set.
    pub fn new(
        node_id: NodeId,
        data: Arc<DataPlane>,
        state: StateHandle,
        meta: Arc<MetaClient>,
        caught_up: Arc<AtomicBool>,
    ) -> Self {
        Reconciler {
            node_id,
            store: data.store().clone(),
            data,
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

    /// One pass: plan, act on local storage, report.
    pub async fn step(&self) -> anyhow::Result<()> {
        self.data.discard_abandoned_stagings().await;
        let local = self.store.list();
        let orphans = self.caught_up.load(Ordering::Acquire);
        let mut plan = self
            .state
            .read(|s| reconcile_plan(s, self.node_id, &local, orphans));
        if !plan.drop_orphans.is_empty() {
            plan.drop_orphans = confirmed_orphans(&self.state, self.node_id, &local, || {
                self.meta.linearizable_barrier()
            })
            .await;
        }
        if plan.is_empty() {
            return Ok(());
        }
        for d in &plan.derive {
            // Usually done already by the split or merge itself; this covers a lost
            // request.
            let position = self
                .data
                .derive_children(d.sources.clone(), d.children.clone())
                .await?;
            tracing::info!(sources = ?d.sources, children = ?d.children, lsn = position.lsn,
                "derived partitions from local sources");
        }
        self.apply_locally(&plan)?;
        self.report(plan).await
    }

    /// Splits `pids` into copies that hold their data now and copies filled from their
    /// primary just now (with the epoch they were filled at). A copy added to a partition
    /// whose other members already serve (a replacement) is empty until its primary
    /// fills it; it asks now, all such copies at once, and counts as ready only once
    /// filled, and only if the partition is still at that epoch when the report lands.
    /// A new table's copies all start empty together and are ready at once.
    async fn filled(&self, pids: Vec<PartitionId>) -> (Vec<PartitionId>, Vec<(PartitionId, u64)>) {
        let mut ready = Vec::new();
        let mut to_fill = Vec::new();
        for pid in pids {
            // Epoch 1 is a new table's first placement: every copy starts empty, and no
            // write is taken before all are ready. Any later member came with a repair.
            let fill_at = self.state.read(|s| {
                s.partition(pid)
                    .filter(|p| {
                        p.epoch > 1
                            && p.primary_node_id != self.node_id
                            && p.ready_node_ids.iter().any(|&n| n != self.node_id)
                    })
                    .map(|p| p.epoch)
            });
            match fill_at {
                Some(epoch) => to_fill.push((pid, epoch)),
                None => ready.push(pid),
            }
        }
        let fills = to_fill.into_iter().map(|(pid, epoch)| async move {
            match self.data.fill_from_primary(pid).await {
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
            self.store.allocate(&plan.allocate)?;
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
            self.store.drop_partitions(&drop)?;
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
            self.meta.propose(cmd).await?.ok();
        }
        if !filled.is_empty() {
            let cmd = MetaCommand::PartitionsReadyAt {
                node_id: self.node_id,
                partitions: filled,
            };
            // A stale epoch (the partition moved while filling) is refused: refilled next pass.
            self.meta.propose(cmd).await?.ok();
        }
        if !plan.release.is_empty() {
            let cmd = MetaCommand::PartitionsReleased {
                node_id: self.node_id,
                partition_ids: plan.release,
            };
            self.meta.propose(cmd).await?.ok();
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

    use shared::command::{MetaCommand, PartitionAssignment, TableSpec};
    use shared::model::{Capacity, CapacityMode, KeyRange, OperationKind};
    use shared::state::MetaState;

    use super::*;
    use crate::seam::MetaClientError;

    const T0: u64 = 1_796_601_600_000;

    /// Nodes 1 to 4, a table of one partition (id 1) on nodes 1, 2, 3.
    fn cluster() -> MetaState {
        let mut s = MetaState::new();
        let mut apply = |cmd| s.apply(&cmd).unwrap();
        for id in 1..=4 {
            apply(MetaCommand::RegisterNode {
                node_id: id,
                endpoint: format!("http://127.0.0.1:{}", 7000 + id),
                peer_addr: format!("127.0.0.1:{}", 8000 + id),
                zone: format!("z{id}"),
                incarnation: T0,
                now_ms: T0,
            });
        }
        apply(MetaCommand::CreateTable {
            spec: TableSpec {
                table_name: "orders".into(),
                partition_key: "k".into(),
                sort_key: None,
                capacity: Capacity {
                    mode: CapacityMode::Provisioned,
                    read_units: 10,
                    write_units: 10,
                },
                attributes: vec![shared::model::Attribute {
                    name: "k".into(),
                    attr_type: shared::model::AttributeType::S,
                }],
            },
            now_ms: T0,
        });
        apply(MetaCommand::AssignPartitions {
            table_id: 1,
            partitions: vec![PartitionAssignment {
                range: KeyRange {
                    low: 0,
                    high: u64::MAX,
                },
                primary_node_id: 1,
                replica_node_ids: vec![2, 3],
            }],
        });
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
