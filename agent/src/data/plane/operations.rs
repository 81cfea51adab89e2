//! Driving splits and moves. The primary of a partition drives the operations recorded
//! on it in the metadata, step by step, each step committed through Raft before the next
//! begins, so that whichever agent leads the partition next (after a crash, a failover)
//! resumes from the recorded step or rolls the operation back.
//!
//! - Split: choose the split point from the data (median of the hashed keys), stage the
//!   children (copy the parent's items into their tables, here and on every replica at
//!   once, while writes go on), then take the partition's write lock (writes wait: the
//!   pause), bring every replica to the primary's position, commit `SplitPartition`,
//!   finish the children here and on every replica (apply the few records written since
//!   the staging; no data crosses the network), release the lock.
//! - Merge: like a split the other way round, on two adjacent partitions held by the
//!   same nodes: stage the merged partition from both (here and on every replica), then
//!   take both write locks, bring every replica to the primary's positions of both,
//!   commit `MergePartitions`, finish the merged partition everywhere, release.
//! - Move: copy a consistent snapshot to the target, stream the log that follows until
//!   the target is within a few records, then take the write lock (the pause), send the
//!   tail, hand the read lease over if the moving copy is the primary's, commit
//!   `CommitMove` (epoch + 1), release the lock; the source's reconciler drops its copy.
//!
//! The write pause of each operation is measured and exported
//! (`agent_operation_write_pause_seconds`). What to do next, when an operation is void,
//! how a switch commit ends it and what follows a failed step are decided in
//! `shared::drive` (netsim's executors act on the same decisions).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shared::command::{MetaCommand, MetaOutcome};
use shared::data::{DataPeerReply, DataPeerRequest, LogPosition, ReplicaReply, ReplicaRequest};
use shared::drive::{
    self, Led, MergeWork, MoveWork, Next, SplitWork, SwitchVerdict, move_may_switch,
    operations_to_drive, retry_or_roll_back, split_children, switch_verdict,
};
use shared::model::{
    KeyRange, NodeId, Operation, OperationId, OperationKind, OperationProgress, OperationStep,
    PartitionId,
};
use shared::split::choose_split_point;
use tokio::time::Instant;

use super::primary::{Leadership, ReplicateFailure};
use super::{DataPlane, lock};
use crate::metrics::OperationOutcomeLabels;

/// Pause before a failed step is tried again.
const STEP_RETRY_PAUSE: Duration = Duration::from_millis(drive::STEP_RETRY_PAUSE_MS);
/// Catch-up rounds of a move before it switches anyway (under the write lock).
const MOVE_CATCH_UP_ROUNDS: usize = 32;
/// How long replicas may take to derive split children (they wait for the metadata).
const SPLIT_REPLICA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a move's snapshot may take to install on the target.
const MOVE_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a step did not complete: retried, up to `shared::validate::MAX_STEP_ATTEMPTS`,
/// then rolled back.
#[derive(Debug)]
struct StepFailed(String);

impl<E: std::fmt::Display> From<E> for StepFailed {
    fn from(e: E) -> Self {
        StepFailed(e.to_string())
    }
}

/// How an operation ended, when it did.
enum Ended {
    /// The routing switched, with the write pause it took (when measured by this run).
    Completed(Option<Duration>),
    /// Abandoned before the routing switched (routing unchanged), with why.
    RolledBack(String),
}

/// The drivers of the operations on the partitions this agent leads: their own type
/// over the data plane (which they use as the primary: pausing writes, replicating,
/// staging), with their own state (which operations have a driver running).
pub struct OperationDrivers {
    plane: Arc<DataPlane>,
    /// Operations with a driver running on this agent.
    driving: Mutex<HashSet<OperationId>>,
    /// The drivers themselves, for the task of each operation.
    this: Weak<OperationDrivers>,
}

impl OperationDrivers {
    /// The drivers of `plane`'s agent.
    pub fn new(plane: Arc<DataPlane>) -> Arc<Self> {
        Arc::new_cyclic(|this| OperationDrivers {
            plane,
            driving: Mutex::default(),
            this: this.clone(),
        })
    }

    /// Starts a driver for every running operation on a partition this agent leads, on
    /// every applied metadata entry and every `tick`, until the process stops.
    pub async fn run(self: Arc<Self>, tick: Duration) {
        let mut applied = self.plane.state.subscribe();
        loop {
            self.start_drivers();
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    fn start_drivers(&self) {
        let mine: Vec<Operation> = self
            .plane
            .state
            .read(|s| operations_to_drive(s, self.plane.me));
        for op in mine {
            if !lock(&self.driving).insert(op.operation_id) {
                continue;
            }
            let Some(this) = self.this.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                let id = op.operation_id;
                this.drive(op).await;
                lock(&this.driving).remove(&id);
            });
        }
    }

    /// Drives one operation until it ends, this agent stops leading its partition, or a
    /// step fails (then it is retried from the metadata's record, after a pause).
    async fn drive(&self, op: Operation) {
        let kind = kind_name(&op.kind);
        let result = match op.kind {
            OperationKind::Split { .. } => {
                let next = self
                    .plane
                    .state
                    .read(|s| drive::next_split(s, &op, self.plane.me));
                self.drive_split(&op, next).await
            }
            OperationKind::Move { .. } => {
                let next = self
                    .plane
                    .state
                    .read(|s| drive::next_move(s, &op, self.plane.me));
                self.drive_move(&op, next).await
            }
            OperationKind::Merge { .. } => {
                let next = self
                    .plane
                    .state
                    .read(|s| drive::next_merge(s, &op, self.plane.me));
                self.drive_merge(&op, next).await
            }
        };
        match result {
            Ok(Some(ended)) => self.finish(&op, kind, ended).await,
            Ok(None) => {}
            Err(StepFailed(why)) => {
                tracing::info!(operation = op.operation_id, kind, step = ?op.step, %why,
                    "operation step failed");
                let Some(retry) = retry_or_roll_back(&op, self.now_ms()) else {
                    self.finish(&op, kind, Ended::RolledBack(why)).await;
                    return;
                };
                let _ = self.plane.meta.propose(retry).await;
                tokio::time::sleep(STEP_RETRY_PAUSE).await;
            }
        }
    }

    async fn finish(&self, op: &Operation, kind: &'static str, ended: Ended) {
        let (completed, outcome, pause) = match ended {
            Ended::Completed(pause) => (true, "completed", pause),
            Ended::RolledBack(why) => {
                tracing::warn!(operation = op.operation_id, kind, %why, "operation rolled back");
                self.plane.discard_staging(op.partition_id).await;
                (false, "rolled_back", None)
            }
        };
        let pause_ms = pause.map(|p| p.as_millis() as u64);
        let cmd = drive::finish(op.operation_id, completed, pause_ms, self.now_ms());
        if let Ok(Ok(MetaOutcome::Done)) = self.plane.meta.propose(cmd).await {
            self.plane
                .meta
                .metrics()
                .operations_finished
                .get_or_create(&OperationOutcomeLabels { kind, outcome })
                .inc();
        }
    }

    /// The split of `op.partition_id`; `Ok(None)` when this agent no longer leads it.
    async fn drive_split(
        &self,
        op: &Operation,
        next: Next<SplitWork>,
    ) -> Result<Option<Ended>, StepFailed> {
        let pid = op.partition_id;
        let SplitWork {
            parent:
                Led {
                    table_id,
                    epoch,
                    range,
                },
            requested,
            stage_first,
        } = match next {
            Next::Go(work) => work,
            other => return Ok(ended_without_work(other)),
        };
        let split_point = match requested {
            Some(point) => point,
            None => {
                let store = self.plane.store.clone();
                let (hashes, _) =
                    tokio::task::spawn_blocking(move || store.key_hashes(pid)).await??;
                match choose_split_point(&range, &hashes) {
                    Some(point) => point,
                    None => {
                        let why = format!("the range of partition {pid} holds one hash");
                        return Ok(Some(Ended::RolledBack(why)));
                    }
                }
            }
        };
        let (left_range, right_range) = match split_children(&range, split_point) {
            Ok(ranges) => ranges,
            Err(why) => return Ok(Some(Ended::RolledBack(why))),
        };
        if stage_first {
            // Copy the children's data ahead of the fence, here and on every replica at
            // once, so that the fenced part only applies the records written since.
            if let Some((left, right)) = op.reserved_children {
                let children = vec![(left, left_range), (right, right_range)];
                self.stage_everywhere(vec![pid], epoch, children).await;
            }
            self.advance(op, OperationStep::Fencing, None).await?;
        }

        // The pause: from here until the children take writes.
        let writer = self.plane.writer(pid);
        let (fenced, paused, lead) = self.pause_writes(&writer, table_id, pid, epoch).await?;
        let position = self.plane.store.position(pid)?;
        self.bring_all_to(&lead.replicas, pid, epoch, position)
            .await?;
        let replicas_synced = paused.elapsed();
        let cmd = MetaCommand::SplitPartition {
            operation_id: Some(op.operation_id),
            parent: pid,
            split_point,
            expected_epoch: epoch,
            now_ms: self.now_ms(),
        };
        let result = match self.plane.meta.propose(cmd).await {
            Ok(result) => result,
            Err(e) => {
                // The split may have committed: no write may reach the parent until its
                // epoch moved (or the split shows), as after a write in doubt.
                self.plane.primary.fences.fence(pid, epoch);
                return Err(e.into());
            }
        };
        let committed = paused.elapsed();
        match switch_verdict(&result) {
            SwitchVerdict::Switched => {}
            // The epoch moved under the fence (a repair): nothing was split.
            SwitchVerdict::RolledBack(why) => return Ok(Some(Ended::RolledBack(why))),
            SwitchVerdict::Failed(why) => return Err(StepFailed(why)),
        }
        let children: Vec<(PartitionId, KeyRange)> = self.plane.state.read(|s| {
            s.operation(op.operation_id)
                .and_then(|o| o.split)
                .map(|r| {
                    [r.left, r.right]
                        .into_iter()
                        .filter_map(|c| Some((c, s.partition(c)?.range)))
                        .collect()
                })
                .unwrap_or_default()
        });
        self.derive_everywhere(&lead.replicas, vec![pid], children.clone(), vec![position])
            .await?;
        drop(fenced);
        let pause = paused.elapsed();
        self.plane.observe_pause("split", pause);
        tracing::info!(
            partition = pid,
            ?children,
            ?pause,
            ?replicas_synced,
            ?committed,
            "split (pause phases: replicas synced, committed, children derived)"
        );
        Ok(Some(Ended::Completed(Some(pause))))
    }

    /// Derives the new partitions of a committed split or merge here and on the
    /// replicas at once (each derivation is one durable transaction). A replica that
    /// could not derive gets them filled by catch-up at their first write instead.
    async fn derive_everywhere(
        &self,
        replicas: &[NodeId],
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
        positions: Vec<LogPosition>,
    ) -> Result<(), StepFailed> {
        let local = self
            .plane
            .derive_children(sources.clone(), children.clone());
        let asks = replicas.iter().map(|&replica| {
            let request = DataPeerRequest::Replica(ReplicaRequest::Derive {
                sources: sources.clone(),
                children: children.clone(),
                positions: positions.clone(),
            });
            async move {
                let reply = self
                    .plane
                    .rpc(replica, request, SPLIT_REPLICA_TIMEOUT)
                    .await;
                (replica, reply)
            }
        });
        let (local, replies) = tokio::join!(local, futures::future::join_all(asks));
        local?;
        for (replica, reply) in replies {
            if !matches!(
                reply,
                Ok(DataPeerReply::Replica(ReplicaReply::Appended(Ok(_))))
            ) {
                tracing::info!(?sources, replica, ?reply, "replica did not derive");
            }
        }
        Ok(())
    }

    /// Brings every replica to exactly `position` of `pid`, all at once.
    async fn bring_all_to(
        &self,
        replicas: &[NodeId],
        pid: PartitionId,
        epoch: u64,
        position: LogPosition,
    ) -> Result<(), StepFailed> {
        let synced = futures::future::join_all(
            replicas
                .iter()
                .map(|&replica| self.plane.bring_to(replica, pid, epoch, position)),
        )
        .await;
        synced.into_iter().collect::<Result<Vec<()>, String>>()?;
        Ok(())
    }

    /// The merge of `op.partition_id` with `right` (the partition just above it, held
    /// by the same nodes); `Ok(None)` when this agent no longer leads it.
    async fn drive_merge(
        &self,
        op: &Operation,
        next: Next<MergeWork>,
    ) -> Result<Option<Ended>, StepFailed> {
        let left = op.partition_id;
        let MergeWork {
            left:
                Led {
                    table_id,
                    epoch: left_epoch,
                    ..
                },
            right,
            right_epoch,
            merged,
            range,
            stage_first,
        } = match next {
            Next::Go(work) => work,
            other => return Ok(ended_without_work(other)),
        };
        let sources = vec![left, right];
        let children = vec![(merged, range)];
        if stage_first {
            self.stage_everywhere(sources.clone(), left_epoch, children.clone())
                .await;
            self.advance(op, OperationStep::Fencing, None).await?;
        }

        // The pause: both sides' writes wait from here until the merged partition takes
        // them. Only this driver takes two write locks, so the order cannot deadlock.
        let (left_writer, right_writer) = (self.plane.writer(left), self.plane.writer(right));
        let (fenced, paused, lead) = self
            .pause_writes(&left_writer, table_id, left, left_epoch)
            .await?;
        let (fenced_right, _, _) = self
            .pause_writes(&right_writer, table_id, right, right_epoch)
            .await?;
        let positions = vec![
            self.plane.store.position(left)?,
            self.plane.store.position(right)?,
        ];
        let (synced_left, synced_right) = tokio::join!(
            self.bring_all_to(&lead.replicas, left, left_epoch, positions[0]),
            self.bring_all_to(&lead.replicas, right, right_epoch, positions[1]),
        );
        synced_left?;
        synced_right?;
        let replicas_synced = paused.elapsed();
        let cmd = MetaCommand::MergePartitions {
            operation_id: op.operation_id,
            left,
            right,
            expected_epochs: (left_epoch, right_epoch),
            now_ms: self.now_ms(),
        };
        let result = match self.plane.meta.propose(cmd).await {
            Ok(result) => result,
            Err(e) => {
                // The merge may have committed: neither side takes a write until its
                // epoch moved (or the merge shows), as after a write in doubt.
                self.plane.primary.fences.fence(left, left_epoch);
                self.plane.primary.fences.fence(right, right_epoch);
                return Err(e.into());
            }
        };
        match switch_verdict(&result) {
            SwitchVerdict::Switched => {}
            SwitchVerdict::RolledBack(why) => return Ok(Some(Ended::RolledBack(why))),
            SwitchVerdict::Failed(why) => return Err(StepFailed(why)),
        }
        let committed = paused.elapsed();
        self.derive_everywhere(&lead.replicas, sources, children, positions)
            .await?;
        drop(fenced_right);
        drop(fenced);
        let pause = paused.elapsed();
        self.plane.observe_pause("merge", pause);
        tracing::info!(
            left,
            right,
            merged,
            ?pause,
            ?replicas_synced,
            ?committed,
            "merged (pause phases: replicas synced, committed, merged partition derived)"
        );
        Ok(Some(Ended::Completed(Some(pause))))
    }

    /// Takes the partition's write lock (writes wait from now: the pause starts) and
    /// checks this agent still leads it at `epoch`.
    async fn pause_writes<'a>(
        &self,
        writer: &'a tokio::sync::RwLock<()>,
        table_id: u64,
        pid: PartitionId,
        epoch: u64,
    ) -> Result<(tokio::sync::RwLockWriteGuard<'a, ()>, Instant, Leadership), StepFailed> {
        let fenced = writer.write().await;
        let paused = Instant::now();
        let lead = self
            .plane
            .leadership(table_id, pid, Some(epoch), false)
            .map_err(StepFailed::from)?;
        Ok((fenced, paused, lead))
    }

    /// Stages the new partitions of a split or merge here and on the replicas of the
    /// first source (at `epoch`; best effort: a copy that could not stage derives them
    /// in full under the fence instead).
    async fn stage_everywhere(
        &self,
        sources: Vec<PartitionId>,
        epoch: u64,
        children: Vec<(PartitionId, KeyRange)>,
    ) {
        let replicas: Vec<NodeId> = self.plane.state.read(|s| {
            s.partition(sources[0])
                .filter(|p| p.epoch == epoch)
                .map(|p| p.replica_node_ids.clone())
                .unwrap_or_default()
        });
        let local = self.plane.stage(sources.clone(), children.clone());
        let asks = replicas.iter().map(|&replica| {
            let request = DataPeerRequest::Replica(ReplicaRequest::Stage {
                sources: sources.clone(),
                children: children.clone(),
            });
            self.plane.rpc(replica, request, MOVE_SNAPSHOT_TIMEOUT)
        });
        let (local, replies) = tokio::join!(local, futures::future::join_all(asks));
        if let Err(e) = local {
            tracing::info!(?sources, error = %e, "not staged here");
        }
        for (replica, reply) in replicas.iter().zip(replies) {
            if !matches!(
                reply,
                Ok(DataPeerReply::Replica(ReplicaReply::Appended(Ok(_))))
            ) {
                tracing::info!(?sources, replica, ?reply, "not staged there");
            }
        }
    }

    /// The move of `op.partition_id`'s copy from `from` to `to`.
    async fn drive_move(
        &self,
        op: &Operation,
        next: Next<MoveWork>,
    ) -> Result<Option<Ended>, StepFailed> {
        let pid = op.partition_id;
        let MoveWork {
            partition: Led {
                table_id, epoch, ..
            },
            from,
            to,
            mut step,
        } = match next {
            Next::Go(work) => work,
            other => return Ok(ended_without_work(other)),
        };
        if step == OperationStep::Copying {
            let copied = self.copy_snapshot(pid, epoch, to).await?;
            self.advance(op, OperationStep::CatchingUp, Some(copied))
                .await?;
            step = OperationStep::CatchingUp;
        }
        if step == OperationStep::CatchingUp {
            let mut theirs = self.target_position(pid, epoch, to).await?;
            for _ in 0..MOVE_CATCH_UP_ROUNDS {
                let mine = self.plane.store.position(pid)?;
                if move_may_switch(mine.lsn, theirs.lsn) {
                    break;
                }
                theirs = self
                    .plane
                    .catch_up(to, pid, epoch, theirs)
                    .await
                    .map_err(|e| StepFailed(e.to_string()))?;
            }
            self.advance(op, OperationStep::Switching, None).await?;
        }
        // From here every write also goes to the target, and one more catch-up closes
        // the gap: the switch then finds it up to date and sends no tail.
        let _learner = Learner::register(&self.plane, pid, epoch, to);
        let theirs = self.target_position(pid, epoch, to).await?;
        self.plane
            .catch_up(to, pid, epoch, theirs)
            .await
            .map_err(|e| StepFailed(e.to_string()))?;

        // The pause: from here until the new routing is committed.
        let writer = self.plane.writer(pid);
        let (fenced, paused, lead) = self.pause_writes(&writer, table_id, pid, epoch).await?;
        let theirs = self.target_position(pid, epoch, to).await?;
        self.plane
            .catch_up(to, pid, epoch, theirs)
            .await
            .map_err(|e| StepFailed(e.to_string()))?;
        let tail_sent = paused.elapsed();
        let handing_over = from == self.plane.me;
        if handing_over {
            // No reads here from now on, and no replica keeps this primary's grant, so
            // the new primary takes a lease at once instead of waiting one out.
            self.plane.leases.surrender(pid, epoch);
            let releases = lead.replicas.iter().map(|&replica| {
                let request = DataPeerRequest::Replica(ReplicaRequest::ReleaseLease {
                    partition_id: pid,
                    primary: self.plane.me,
                });
                self.plane.rpc(replica, request, self.replica_timeout())
            });
            futures::future::join_all(releases).await;
        }
        let cmd = MetaCommand::CommitMove {
            operation_id: op.operation_id,
            partition_id: pid,
            from,
            to,
            expected_epoch: epoch,
            now_ms: self.now_ms(),
        };
        let released = paused.elapsed();
        let committed = self.plane.meta.propose(cmd).await;
        let pause = paused.elapsed();
        let ended = match committed.as_ref().map(switch_verdict) {
            Ok(SwitchVerdict::Switched) => Ok(Some(Ended::Completed(Some(pause)))),
            Ok(SwitchVerdict::RolledBack(why)) => Ok(Some(Ended::RolledBack(why))),
            Ok(SwitchVerdict::Failed(why)) => Err(StepFailed(why)),
            Err(e) => Err(StepFailed(e.to_string())),
        };
        let completed = matches!(ended, Ok(Some(Ended::Completed(_))));
        if handing_over && !completed {
            self.plane.leases.resume(pid);
        }
        drop(fenced);
        if completed {
            self.plane.observe_pause("move", pause);
            tracing::info!(
                partition = pid,
                from,
                to,
                ?pause,
                ?tail_sent,
                ?released,
                "moved (pause phases: tail sent, leases released, committed)"
            );
        }
        ended
    }

    /// Sends a consistent snapshot of `pid` to the move's target; the bytes copied.
    async fn copy_snapshot(
        &self,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> Result<OperationProgress, StepFailed> {
        let started = Instant::now();
        let (_, bytes) = self
            .plane
            .stream_snapshot(to, pid, epoch)
            .await
            .map_err(|e| StepFailed(format!("node {to}: {e}")))?;
        tracing::info!(partition = pid, to, bytes, took = ?started.elapsed(),
            "copied a partition snapshot to the move's target");
        Ok(OperationProgress {
            done_bytes: bytes,
            total_bytes: Some(bytes),
        })
    }

    /// Where the target's copy of `pid` ends (an empty append answers with it).
    async fn target_position(
        &self,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> Result<LogPosition, StepFailed> {
        let mine = self.plane.store.position(pid)?;
        match self.plane.replicate(to, pid, epoch, mine, Vec::new()).await {
            Ok(pos) | Err(ReplicateFailure::NeedSync(pos)) => Ok(pos),
            Err(e) => Err(StepFailed(e.to_string())),
        }
    }

    /// Commits the operation's next step.
    async fn advance(
        &self,
        op: &Operation,
        step: OperationStep,
        progress: Option<OperationProgress>,
    ) -> Result<(), StepFailed> {
        let cmd = drive::advance(op.operation_id, step, progress, self.now_ms());
        match self.plane.meta.propose(cmd).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(StepFailed(e.to_string())),
        }
    }

    fn replica_timeout(&self) -> Duration {
        Duration::from_millis(self.plane.config.replica_timeout_ms)
    }

    fn now_ms(&self) -> u64 {
        (self.plane.clock)()
    }
}

/// How an operation ends when there is no work for this driver: not at all when it
/// does not lead the partition, completed when the routing switched already, rolled
/// back when void.
fn ended_without_work<T>(next: Next<T>) -> Option<Ended> {
    match next {
        Next::Switched => Some(Ended::Completed(None)),
        Next::Void(why) => Some(Ended::RolledBack(why)),
        Next::NotMine | Next::Go(_) => None,
    }
}

/// A move target registered as a learner of its partition (see `DataPlane::learners`)
/// until dropped.
struct Learner<'a> {
    plane: &'a DataPlane,
    pid: PartitionId,
}

impl<'a> Learner<'a> {
    fn register(plane: &'a DataPlane, pid: PartitionId, epoch: u64, to: NodeId) -> Self {
        lock(&plane.primary.learners).insert(pid, (epoch, to));
        Learner { plane, pid }
    }
}

impl Drop for Learner<'_> {
    fn drop(&mut self) {
        lock(&self.plane.primary.learners).remove(&self.pid);
    }
}

fn kind_name(kind: &OperationKind) -> &'static str {
    match kind {
        OperationKind::Split { .. } => "split",
        OperationKind::Move { .. } => "move",
        OperationKind::Merge { .. } => "merge",
    }
}
