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
        let plan = self
            .state
            .read(|s| reconcile_plan(s, self.node_id, &local, orphans));
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
