//! The primary's side: it serves item requests for the partitions it leads. A write gets
//! the next LSN and is made durable locally and on every replica of the epoch before it
//! is acknowledged; a replica that is behind or diverged is caught up from the log, or
//! from a snapshot when the log no longer reaches back far enough. Reads are served only
//! under a read lease. The primary also hands its role over to a ready replica when the
//! Scaler asks (a switch without a move).

use std::time::Duration;

use shared::command::{MetaCommand, PartitionChange};
use shared::data::{
    DataPeerReply, DataPeerRequest, ItemError, ItemReply, ItemRequest, ItemResult, LogPosition,
    MAX_QUERY_BYTES, ReplicaError, ReplicaReply, ReplicaRequest, WriteRecord,
};
use shared::drive::{self, Led};
use shared::model::{NodeId, PartitionId, TableStatus};
use tokio::time::Instant;

use super::fence::FenceCheck;
use super::{DataPlane, lock};
use crate::data::store::{SnapshotChunk, StoreError};
use crate::metrics::OperationLabels;

/// Records sent per catch-up message.
const CATCH_UP_BATCH: usize = 512;
/// Bytes of keys and values per catch-up message (well under the transport's limit).
const CATCH_UP_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Catch-up messages (log batches or a snapshot) before giving up on a replica for now.
const MAX_CATCH_UP_ROUNDS: usize = 64;
/// How long a replica may take to install a snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);
/// A primary writes only while its replicas confirmed it within this many lease renewal
/// intervals (`data.lease_renew_interval_ms`): one missed renewal is tolerated.
const WRITE_CONFIRM_RENEWALS: u32 = 2;
/// Numbers the snapshot transfers of this process (with the node id: unique).
static SNAPSHOT_TRANSFERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Why replicating to one replica failed.
#[derive(Debug)]
pub(super) enum ReplicateFailure {
    /// The replica's log ends elsewhere: catch it up.
    NeedSync(LogPosition),
    /// The replica knows a newer epoch: this node is no longer the primary.
    Stale(u64),
    /// No usable answer.
    Failed(String),
}

impl std::fmt::Display for ReplicateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicateFailure::NeedSync(pos) => write!(f, "replica log at {pos:?}"),
            ReplicateFailure::Stale(epoch) => write!(f, "replica is at epoch {epoch}"),
            ReplicateFailure::Failed(why) => f.write_str(why),
        }
    }
}

/// What the primary knows about a partition it leads, checked against its metadata.
pub(super) struct Leadership {
    pub(super) epoch: u64,
    pub(super) replicas: Vec<NodeId>,
}

impl DataPlane {
    /// Serves an item request as the partition's primary.
    pub(super) async fn serve(&self, request: ItemRequest) -> ItemResult {
        let at = request.address();
        let lead = self.leadership(at.table_id, at.partition_id, at.epoch, true)?;
        let pid = at.partition_id;
        match request {
            ItemRequest::Write {
                partition_key,
                sort_key,
                op,
                ..
            } => {
                // On its own task: a caller that gives up (a client disconnecting) must not
                // cancel a write half way, after its record may have left this node.
                let Some(this) = self.this.upgrade() else {
                    return Err(ItemError::Unavailable("shutting down".into()));
                };
                let write = async move { this.write(at, lead, partition_key, sort_key, op).await };
                let result = tokio::spawn(write)
                    .await
                    .unwrap_or_else(|e| Err(ItemError::OutcomeUnknown(e.to_string())));
                if result.is_ok() {
                    self.primary.activity.record_op(pid);
                }
                result
            }
            ItemRequest::Get {
                partition_key,
                sort_key,
                ..
            } => {
                let _no_write_in_flight = self.readable(pid, &lead).await?;
                self.primary.activity.record_op(pid);
                let value = self
                    .store
                    .get(pid, &partition_key, sort_key.as_deref())
                    .map_err(unavailable)?;
                Ok(ItemReply::Item(value))
            }
            ItemRequest::Query {
                partition_key,
                sort_from,
                sort_to,
                limit,
                ..
            } => {
                let _no_write_in_flight = self.readable(pid, &lead).await?;
                self.primary.activity.record_op(pid);
                let (mut items, mut more) = self
                    .store
                    .query(
                        pid,
                        &partition_key,
                        sort_from.as_deref(),
                        sort_to.as_deref(),
                        limit,
                    )
                    .map_err(unavailable)?;
                // At least one item, then stop before the answer passes the byte cap.
                let mut bytes = 0;
                let fits = items
                    .iter()
                    .take_while(|(_, value)| {
                        bytes += value.len();
                        bytes <= MAX_QUERY_BYTES
                    })
                    .count()
                    .max(1)
                    .min(items.len());
                if fits < items.len() {
                    items.truncate(fits);
                    more = true;
                }
                Ok(ItemReply::Items { items, more })
            }
        }
    }

    /// This node's leadership of the partition per its metadata, at `epoch` if given;
    /// with `serving`, the table must also take item requests (ACTIVE or SCALING).
    pub(super) fn leadership(
        &self,
        table_id: u64,
        pid: PartitionId,
        epoch: Option<u64>,
        serving: bool,
    ) -> Result<Leadership, ItemError> {
        self.state.read(|s| {
            let Some(p) = s.partition(pid).filter(|p| p.table_id == table_id) else {
                return Err(ItemError::WrongPartition {
                    current_epoch: None,
                    primary: None,
                });
            };
            if p.primary_node_id != self.me || epoch.is_some_and(|e| e != p.epoch) {
                return Err(ItemError::WrongPartition {
                    current_epoch: Some(p.epoch),
                    primary: Some(p.primary_node_id),
                });
            }
            let table = s
                .table(table_id)
                .ok_or_else(|| ItemError::TableNotFound(format!("table {table_id}")))?;
            let takes_items = matches!(table.status, TableStatus::Active | TableStatus::Scaling);
            // Filling a new copy is also needed while a table is still CREATING.
            let fillable = table.status != TableStatus::Deleting;
            if (serving && !takes_items) || !fillable {
                return Err(ItemError::TableNotWritable {
                    name: table.table_name.clone(),
                    status: table.status,
                });
            }
            Ok(Leadership {
                epoch: p.epoch,
                replicas: p.replica_node_ids.clone(),
            })
        })
    }

    /// Waits until no write of `pid` is in flight, then checks that this primary may
    /// serve a read: nothing here in doubt, and a live lease. The guard keeps writes out
    /// until the read is done. A read once returned a write still in flight, which its
    /// failure then left on this node only: the next primary lacked it (issue 14).
    async fn readable(
        &self,
        pid: PartitionId,
        lead: &Leadership,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<()>, ItemError> {
        let guard = self.writer(pid).read_owned().await;
        if self.primary.fences.in_doubt(pid, lead.epoch) {
            // Reads ask for the new epoch too. Only writes did: a partition whose last
            // write ended in doubt, and whose epoch change was refused (the voters were
            // paused), stayed unreadable for good once nothing wrote to it (testbed
            // seed 2: 35 acknowledged writes could not be read back).
            if self.primary.fences.check(pid, lead.epoch, Instant::now()) == FenceCheck::Propose {
                self.bump_epochs(vec![(pid, lead.epoch)]);
            }
            return Err(ItemError::Unavailable(format!(
                "partition {pid} is moving to a new epoch after a write in doubt; retry"
            )));
        }
        self.ensure_lease(pid, lead, Duration::ZERO).await?;
        Ok(guard)
    }

    /// Reads need a live lease: every replica confirmed this primary within the lease
    /// (or, without replicas, the metadata did), with at least `left` of it to run. A
    /// lease with less is renewed on the spot when the replicas answer; otherwise the
    /// call is refused.
    async fn ensure_lease(
        &self,
        pid: PartitionId,
        lead: &Leadership,
        left: Duration,
    ) -> Result<(), ItemError> {
        if self.leases.holds(pid, lead.epoch, Instant::now() + left) {
            return Ok(());
        }
        if self.leases.is_surrendered(pid, lead.epoch) {
            // Handing the partition over: asking for grants would hold up the next primary.
            return Err(ItemError::Unavailable(format!(
                "partition {pid} is moving to another primary; retry"
            )));
        }
        let confirmed = if lead.replicas.is_empty() {
            let started = Instant::now();
            let still_primary = self.meta.linearizable_barrier().await.is_ok()
                && self.state.read(|s| {
                    s.partition(pid)
                        .is_some_and(|p| p.primary_node_id == self.me && p.epoch == lead.epoch)
                });
            if still_primary {
                self.leases
                    .renew(self.me, pid, lead.epoch, started + self.lease_duration());
            }
            // The renewal may have been refused (a grant this agent gave another
            // primary is still running): only a lease actually held counts.
            still_primary && self.leases.holds(pid, lead.epoch, Instant::now())
        } else {
            self.confirm_replicas(pid, lead.epoch, &lead.replicas).await
        };
        if confirmed {
            Ok(())
        } else {
            Err(ItemError::Unavailable(
                "this primary holds no read lease (its replicas do not confirm it)".into(),
            ))
        }
    }

    /// One write, acknowledged once durable here and on every replica of the epoch.
    async fn write(
        &self,
        at: shared::data::PartitionAddress,
        lead: Leadership,
        partition_key: Vec<u8>,
        sort_key: Option<Vec<u8>>,
        op: shared::data::WriteOp,
    ) -> ItemResult {
        let pid = at.partition_id;
        let writer = self.writer(pid);
        let _one_at_a_time = writer.write().await;
        // The epoch may have moved while this write waited for the lock.
        let lead = match self.leadership(at.table_id, pid, Some(lead.epoch), true) {
            Ok(current) => current,
            Err(e) => return Err(e),
        };
        match self.primary.fences.check(pid, lead.epoch, Instant::now()) {
            FenceCheck::Write => {}
            check => {
                if check == FenceCheck::Propose {
                    self.bump_epochs(vec![(pid, lead.epoch)]);
                }
                return Err(ItemError::Unavailable(format!(
                    "partition {pid} is moving to a new epoch before it takes writes; retry"
                )));
            }
        }
        // Writes need replicas that confirmed this primary recently, not just a live
        // lease: one sent to a replica that stopped answering (frozen, cut off) ends in
        // doubt (504) when the replication times out, where refused now it is certainly
        // not written (503).
        let recent = self
            .lease_duration()
            .saturating_sub(self.write_confirm_window());
        if self.ensure_lease(pid, &lead, recent).await.is_err() {
            // Known before anything is written: refusing now leaves the data unchanged.
            return Err(ItemError::Unavailable(format!(
                "replicas of partition {pid} cannot all be reached; nothing was written"
            )));
        }
        let position = self.store.position(pid).map_err(unavailable)?;
        if position.epoch > lead.epoch {
            // The log already holds records of a newer primary: this agent's metadata is
            // behind its own copy. Writing now would put an older epoch after a newer one.
            return Err(ItemError::Unavailable(format!(
                "partition {pid}: this agent leads epoch {} but its copy holds epoch {}; \
                 nothing was written",
                lead.epoch, position.epoch
            )));
        }
        let record = WriteRecord {
            lsn: position.lsn + 1,
            epoch: lead.epoch,
            partition_key,
            sort_key,
            op,
        };
        let store = self.store.clone();
        let local_record = record.clone();
        let local = tokio::task::spawn_blocking(move || store.append(pid, &[local_record]));
        let remote = futures::future::join_all(
            lead.replicas
                .iter()
                .map(|&r| self.replicate(r, pid, lead.epoch, position, vec![record.clone()])),
        );
        let learner = self.learner(pid, lead.epoch);
        let learned = async {
            match learner {
                Some(n) => Some(
                    self.replicate(n, pid, lead.epoch, position, vec![record.clone()])
                        .await,
                ),
                None => None,
            }
        };
        let (local, remote, learned) = tokio::join!(local, remote, learned);
        // From here on the record may be on some copies: any failure leaves the outcome
        // unknown, and the partition moves to a new epoch before the next write.
        let in_doubt = |why: String| {
            self.primary.fences.fence(pid, lead.epoch);
            self.bump_epochs(vec![(pid, lead.epoch)]);
            ItemError::OutcomeUnknown(why)
        };
        match local {
            Ok(Ok(at)) => debug_assert_eq!(
                (at.lsn, at.epoch),
                (record.lsn, record.epoch),
                "partition {pid}: the local log does not end at the record just appended"
            ),
            Ok(Err(e)) => return Err(in_doubt(format!("local append: {e}"))),
            Err(e) => return Err(in_doubt(format!("local append: {e}"))),
        }
        self.maybe_trim(pid, position.lsn, record.lsn);
        let mut failed = Vec::new();
        for (&replica, result) in lead.replicas.iter().zip(remote) {
            let outcome = match result {
                Ok(pos) => Ok(pos),
                // Behind or diverged: bring it to this primary's position, record included.
                Err(ReplicateFailure::NeedSync(theirs)) => {
                    self.catch_up(replica, pid, lead.epoch, theirs).await
                }
                Err(other) => Err(other),
            };
            match outcome {
                Ok(pos) => self
                    .primary
                    .activity
                    .record_ack(pid, replica, pos, record.lsn),
                Err(ReplicateFailure::Stale(current)) => {
                    return Err(in_doubt(format!(
                        "replica {replica} is at epoch {current}: this node is no longer the primary"
                    )));
                }
                Err(e) => {
                    self.replica_failing(pid, lead.epoch, replica, record.lsn);
                    failed.push(format!("{replica} ({e})"));
                }
            }
        }
        if !failed.is_empty() {
            return Err(in_doubt(format!(
                "replicas {} did not acknowledge",
                failed.join(", ")
            )));
        }
        if let (Some(target), Some(result)) = (learner, learned) {
            self.keep_learner_up(pid, lead.epoch, target, result).await;
        }
        // No lease renewal here: replicas record the grants that back a lease only for
        // lease requests, and a lease must never outlast the grants behind it.
        Ok(ItemReply::Written {
            lsn: record.lsn,
            epoch: lead.epoch,
        })
    }

    /// The move target that writes to `pid` at `epoch` also go to, if any.
    fn learner(&self, pid: PartitionId, epoch: u64) -> Option<NodeId> {
        lock(&self.primary.learners)
            .get(&pid)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, n)| *n)
    }

    /// Brings a move target that missed a write up to date; one that cannot be is
    /// dropped (best effort: the switch sends it the tail under the pause instead). A
    /// target's failure never fails a write: it is not a member yet.
    async fn keep_learner_up(
        &self,
        pid: PartitionId,
        epoch: u64,
        target: NodeId,
        result: Result<LogPosition, ReplicateFailure>,
    ) {
        let kept = match result {
            Ok(_) => true,
            Err(ReplicateFailure::NeedSync(theirs)) => {
                self.catch_up(target, pid, epoch, theirs).await.is_ok()
            }
            Err(_) => false,
        };
        if !kept {
            tracing::debug!(partition = pid, target, "move target dropped as a learner");
            lock(&self.primary.learners).remove(&pid);
        }
    }

    /// Asks every replica to confirm this primary at `epoch` (a lease renewal); renews
    /// the lease and returns true when all do.
    async fn confirm_replicas(&self, pid: PartitionId, epoch: u64, replicas: &[NodeId]) -> bool {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.config.replica_timeout_ms);
        let asks = replicas.iter().map(|&r| {
            let request = DataPeerRequest::Replica(ReplicaRequest::Lease {
                primary: self.me,
                entries: vec![(pid, epoch)],
            });
            self.rpc(r, request, timeout)
        });
        let all = futures::future::join_all(asks)
            .await
            .into_iter()
            .all(|reply| {
                matches!(reply, Ok(DataPeerReply::Replica(ReplicaReply::Lease(granted)))
                if granted == [true])
            });
        if all && self.meta_fresh() {
            self.leases
                .renew(self.me, pid, epoch, started + self.lease_duration());
        }
        all && self.leases.holds(pid, epoch, Instant::now())
    }

    /// Notes that `replica` did not confirm; once it has failed to for
    /// `replica_drop_after_ms`, asks (through Raft, fenced by the epoch) that it leave the
    /// partition's replica set, so writes continue without it. The leader's recovery then
    /// adds a replacement.
    pub(super) fn replica_failing(&self, pid: PartitionId, epoch: u64, replica: NodeId, lsn: u64) {
        let failing_for = self.primary.activity.record_behind(pid, replica, lsn);
        if failing_for < Duration::from_millis(self.config.replica_drop_after_ms) {
            return;
        }
        let change = self.state.read(|s| {
            let p = s.partition(pid).filter(|p| p.epoch == epoch)?;
            let replicas: Vec<NodeId> = p
                .replica_node_ids
                .iter()
                .copied()
                .filter(|&n| n != replica)
                .collect();
            (replicas.len() < p.replica_node_ids.len()).then_some(PartitionChange {
                partition_id: pid,
                expected_epoch: epoch,
                primary_node_id: p.primary_node_id,
                replica_node_ids: replicas,
            })
        });
        let Some(change) = change else { return };
        let meta = self.meta.clone();
        tracing::warn!(
            partition = pid,
            replica,
            ?failing_for,
            "dropping an unresponsive replica"
        );
        tokio::spawn(async move {
            let cmd = MetaCommand::RepairPartitions {
                changes: vec![change],
            };
            match meta.propose(cmd).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(partition = pid, error = %e, "replica drop rejected"),
                Err(e) => tracing::warn!(partition = pid, error = %e, "replica drop not proposed"),
            }
        });
    }

    /// How recently the replicas must have confirmed this primary for it to write:
    /// [`WRITE_CONFIRM_RENEWALS`] lease renewal intervals.
    fn write_confirm_window(&self) -> Duration {
        Duration::from_millis(self.config.lease_renew_interval_ms) * WRITE_CONFIRM_RENEWALS
    }

    /// The configured read lease.
    pub(super) fn lease_duration(&self) -> Duration {
        Duration::from_millis(self.config.read_lease_ms)
    }

    /// Whether this agent's metadata was confirmed current within a lease: leases are
    /// granted and renewed only then (see `MetaFreshness`).
    pub(super) fn meta_fresh(&self) -> bool {
        self.freshness.within(self.lease_duration())
    }

    /// Sends records following `prev` to `replica`.
    pub(super) async fn replicate(
        &self,
        replica: NodeId,
        pid: PartitionId,
        epoch: u64,
        prev: LogPosition,
        records: Vec<WriteRecord>,
    ) -> Result<LogPosition, ReplicateFailure> {
        let request = ReplicaRequest::Append {
            partition_id: pid,
            epoch,
            prev,
            records,
        };
        let timeout = Duration::from_millis(self.config.replica_timeout_ms);
        self.to_replica(replica, request, timeout).await
    }

    async fn to_replica(
        &self,
        replica: NodeId,
        request: ReplicaRequest,
        timeout: Duration,
    ) -> Result<LogPosition, ReplicateFailure> {
        match self
            .rpc(replica, DataPeerRequest::Replica(request), timeout)
            .await
        {
            Ok(DataPeerReply::Replica(ReplicaReply::Appended(result))) => match result {
                Ok(pos) => Ok(pos),
                Err(ReplicaError::NeedSync { position }) => {
                    Err(ReplicateFailure::NeedSync(position))
                }
                Err(ReplicaError::StaleEpoch { current }) => Err(ReplicateFailure::Stale(current)),
                Err(e) => Err(ReplicateFailure::Failed(e.to_string())),
            },
            Ok(other) => Err(ReplicateFailure::Failed(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(ReplicateFailure::Failed(e.to_string())),
        }
    }

    /// Brings `replica` from `theirs` to this primary's position: the missing log
    /// records when this log still holds them and the replica's log is a prefix of it,
    /// else a snapshot. Call with the partition's write lock held.
    pub(super) async fn catch_up(
        &self,
        replica: NodeId,
        pid: PartitionId,
        epoch: u64,
        mut theirs: LogPosition,
    ) -> Result<LogPosition, ReplicateFailure> {
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            let mine = self.store.position(pid).map_err(failed)?;
            if theirs == mine {
                return Ok(theirs);
            }
            // Same (LSN, epoch) means the same record: one primary per epoch numbers them.
            let prefix = theirs.lsn <= mine.lsn
                && self.store.epoch_at(pid, theirs.lsn).map_err(failed)? == Some(theirs.epoch);
            let records = if prefix {
                self.store
                    .log_after(pid, theirs.lsn, CATCH_UP_BATCH)
                    .map_err(failed)?
                    .map(cap_batch)
            } else {
                None
            };
            let result = match records {
                Some(records) => self.replicate(replica, pid, epoch, theirs, records).await,
                None => self.send_snapshot(replica, pid, epoch).await,
            };
            theirs = match result {
                Ok(pos) | Err(ReplicateFailure::NeedSync(pos)) => pos,
                Err(e) => return Err(e),
            };
        }
        Err(ReplicateFailure::Failed(format!(
            "catch-up of replica {replica} did not converge"
        )))
    }

    async fn send_snapshot(
        &self,
        replica: NodeId,
        pid: PartitionId,
        epoch: u64,
    ) -> Result<LogPosition, ReplicateFailure> {
        let (position, bytes) = self.stream_snapshot(replica, pid, epoch).await?;
        tracing::info!(
            partition = pid,
            replica,
            bytes,
            lsn = position.lsn,
            "sent a partition snapshot"
        );
        Ok(position)
    }

    /// Sends a consistent copy of `pid` to `node` as a stream of chunks (read from one
    /// transaction while the previous chunk travels); the position the node reached and
    /// the item bytes sent.
    pub(super) async fn stream_snapshot(
        &self,
        node: NodeId,
        pid: PartitionId,
        epoch: u64,
    ) -> Result<(LogPosition, u64), ReplicateFailure> {
        let transfer =
            (self.me << 40) | SNAPSHOT_TRANSFERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(1);
        let store = self.store.clone();
        let chunk_bytes = self.config.snapshot_chunk_bytes;
        let reader = tokio::task::spawn_blocking(move || {
            store.snapshot_chunks(pid, chunk_bytes, |chunk| {
                tx.blocking_send(chunk)
                    .map_err(|_| StoreError::Redb("snapshot transfer abandoned".into()))
            })
        });
        let mut bytes = 0u64;
        let mut reached = LogPosition::default();
        while let Some(chunk) = rx.recv().await {
            bytes += chunk
                .items
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
            let request = ReplicaRequest::InstallSnapshot {
                partition_id: pid,
                epoch,
                transfer,
                position: chunk.position,
                items: chunk.items,
                first: chunk.first,
                last: chunk.last,
            };
            match self.to_replica(node, request, SNAPSHOT_TIMEOUT).await {
                Ok(pos) => reached = pos,
                Err(e) => {
                    // The reader stops at its next chunk.
                    drop(rx);
                    let _ = reader.await;
                    return Err(e);
                }
            }
        }
        reader
            .await
            .map_err(|e| ReplicateFailure::Failed(e.to_string()))?
            .map_err(failed)?;
        Ok((reached, bytes))
    }

    /// A replica being filled asks to be brought up to date (then it reports ready).
    pub(super) async fn on_sync(
        &self,
        pid: PartitionId,
        epoch: u64,
        replica: NodeId,
        position: LogPosition,
    ) -> Result<LogPosition, ItemError> {
        let table_id = self
            .state
            .read(|s| s.partition(pid).map(|p| p.table_id))
            .ok_or(ItemError::WrongPartition {
                current_epoch: None,
                primary: None,
            })?;
        let writer = self.writer(pid);
        let _one_at_a_time = writer.write().await;
        let lead = self.leadership(table_id, pid, Some(epoch), false)?;
        if !lead.replicas.contains(&replica) {
            return Err(ItemError::Invalid(format!(
                "node {replica} is not a replica of partition {pid} at epoch {epoch}"
            )));
        }
        match self.catch_up(replica, pid, lead.epoch, position).await {
            Ok(pos) => {
                self.primary.activity.record_ack(pid, replica, pos, pos.lsn);
                Ok(pos)
            }
            Err(ReplicateFailure::Stale(current)) => Err(ItemError::WrongPartition {
                current_epoch: Some(current),
                primary: None,
            }),
            Err(e) => Err(ItemError::Unavailable(e.to_string())),
        }
    }

    /// Hands the primary role of `pid` to its ready replica `to` (a scale-out primary
    /// move; no data moves): writes wait on the partition's lock while `to` is brought
    /// exactly up to date, this primary surrenders its read lease and the replicas
    /// release their grants to it, then one `RepairPartitions` makes `to` the primary and
    /// this node a replica, epoch + 1. A single commit: a crash before it changes
    /// nothing, after it the hand-over is done.
    pub(super) async fn hand_over(
        &self,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> Result<(), ItemError> {
        let Some(Led {
            table_id,
            epoch: current,
            ..
        }) = self.state.read(|s| drive::led(s, pid, self.me))
        else {
            return Err(ItemError::WrongPartition {
                current_epoch: None,
                primary: None,
            });
        };
        let ready = self.state.read(|s| {
            s.partition(pid)
                .is_some_and(|p| p.replica_node_ids.contains(&to) && p.ready_node_ids.contains(&to))
        });
        if current != epoch || !ready {
            return Err(ItemError::Invalid(format!(
                "node {to} is not a ready replica of partition {pid} at epoch {epoch}"
            )));
        }
        let writer = self.writer(pid);
        let _paused_writes = writer.write().await;
        let paused = Instant::now();
        let lead = self.leadership(table_id, pid, Some(epoch), false)?;
        let position = self.store.position(pid).map_err(unavailable)?;
        self.bring_to(to, pid, epoch, position)
            .await
            .map_err(ItemError::Unavailable)?;
        self.leases.surrender(pid, epoch);
        let releases = lead.replicas.iter().map(|&replica| {
            let request = DataPeerRequest::Replica(ReplicaRequest::ReleaseLease {
                partition_id: pid,
                primary: self.me,
            });
            self.rpc(
                replica,
                request,
                Duration::from_millis(self.config.replica_timeout_ms),
            )
        });
        futures::future::join_all(releases).await;
        let replicas: Vec<NodeId> = lead
            .replicas
            .iter()
            .map(|&r| if r == to { self.me } else { r })
            .collect();
        let cmd = MetaCommand::RepairPartitions {
            changes: vec![PartitionChange {
                partition_id: pid,
                expected_epoch: epoch,
                primary_node_id: to,
                replica_node_ids: replicas,
            }],
        };
        match self.meta.propose(cmd).await {
            Ok(Ok(_)) => {
                self.observe_pause("handover", paused.elapsed());
                tracing::info!(partition = pid, to, pause = ?paused.elapsed(), "handed the primary role over");
                Ok(())
            }
            Ok(Err(e)) => {
                self.leases.resume(pid);
                Err(ItemError::Invalid(e.to_string()))
            }
            Err(e) => {
                self.leases.resume(pid);
                Err(ItemError::Unavailable(e.to_string()))
            }
        }
    }

    /// Takes `replica` out of `pid`'s replica set at `epoch` (a stopping replica asks):
    /// under the writer lock, so the epoch changes between two writes and none is left
    /// in doubt by a replica that moved to the new epoch first.
    pub(super) async fn release(
        &self,
        pid: PartitionId,
        epoch: u64,
        replica: NodeId,
    ) -> Result<(), ItemError> {
        if self
            .primary
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Agents stopping together (a whole cluster): copies are kept, not given up.
            return Err(ItemError::Unavailable(format!(
                "the primary of partition {pid} is stopping too: the replica keeps its copy"
            )));
        }
        let known = self.state.read(|s| s.partition(pid).map(|p| p.epoch));
        if known.is_some_and(|known| known < epoch) {
            // The replica saw a newer epoch first (a hand-over just committed).
            self.meta
                .linearizable_barrier()
                .await
                .map_err(unavailable)?;
        }
        let writer = self.writer(pid);
        let _paused_writes = writer.write().await;
        let paused = Instant::now();
        let change = self.state.read(|s| {
            let p = s.partition(pid).filter(|p| p.epoch == epoch)?;
            (p.primary_node_id == self.me && p.replica_node_ids.contains(&replica)).then(|| {
                PartitionChange {
                    partition_id: pid,
                    expected_epoch: epoch,
                    primary_node_id: self.me,
                    replica_node_ids: p
                        .replica_node_ids
                        .iter()
                        .copied()
                        .filter(|&r| r != replica)
                        .collect(),
                }
            })
        });
        let Some(change) = change else {
            return Err(ItemError::Invalid(format!(
                "this node does not lead partition {pid} at epoch {epoch} with replica {replica}"
            )));
        };
        let cmd = MetaCommand::RepairPartitions {
            changes: vec![change],
        };
        match self.meta.propose(cmd).await {
            Ok(Ok(_)) => {
                self.observe_pause("release", paused.elapsed());
                Ok(())
            }
            Ok(Err(e)) => Err(ItemError::Invalid(e.to_string())),
            Err(e) => Err(ItemError::Unavailable(e.to_string())),
        }
    }

    /// Brings `replica` to exactly `position` (usually it is there already: every
    /// acknowledged write reached it).
    pub(super) async fn bring_to(
        &self,
        replica: NodeId,
        pid: PartitionId,
        epoch: u64,
        position: LogPosition,
    ) -> Result<(), String> {
        let theirs = match self
            .replicate(replica, pid, epoch, position, Vec::new())
            .await
        {
            Ok(pos) if pos == position => return Ok(()),
            Ok(pos) | Err(ReplicateFailure::NeedSync(pos)) => pos,
            Err(e) => return Err(format!("replica {replica}: {e}")),
        };
        match self.catch_up(replica, pid, epoch, theirs).await {
            Ok(pos) if pos == position => Ok(()),
            Ok(pos) => Err(format!("replica {replica} ended at {pos:?}")),
            Err(e) => Err(format!("replica {replica}: {e}")),
        }
    }

    /// Records the write pause of an operation or hand-over of `kind`.
    pub(super) fn observe_pause(&self, kind: &'static str, pause: Duration) {
        self.meta
            .metrics()
            .write_pause_seconds
            .get_or_create(&OperationLabels { kind })
            .observe(pause.as_secs_f64());
    }
}

/// At least one record, then only as many as fit in `CATCH_UP_BATCH_BYTES`.
fn cap_batch(mut records: Vec<WriteRecord>) -> Vec<WriteRecord> {
    let mut bytes = 0;
    let fits = records
        .iter()
        .take_while(|r| {
            bytes += r.partition_key.len() + r.sort_key.as_ref().map_or(0, Vec::len);
            if let shared::data::WriteOp::Put(value) = &r.op {
                bytes += value.len();
            }
            bytes <= CATCH_UP_BATCH_BYTES
        })
        .count()
        .max(1);
    records.truncate(fits);
    records
}

fn unavailable(e: impl std::fmt::Display) -> ItemError {
    ItemError::Unavailable(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> ReplicateFailure {
    ReplicateFailure::Failed(e.to_string())
}
