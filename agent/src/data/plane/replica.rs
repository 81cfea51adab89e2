//! The replica's side: it accepts records only from the primary of the newest epoch it
//! knows (its metadata replica, or a newer epoch already seen from a primary), only in
//! log order, and makes them durable before answering. It grants read leases on the same
//! terms, and asks the primary to fill it when it is a new copy.

use shared::data::{
    DataPeerReply, DataPeerRequest, ItemError, LogPosition, ReplicaError, ReplicaReply,
    ReplicaRequest,
};
use shared::lifecycle::{LocalDerivation, local_derivations};
use shared::model::{KeyRange, PartitionId};

use super::{DataPlane, lock};
use crate::data::store::{SnapshotChunk, StoreError};

/// How long a replica being filled waits for the primary to bring it up to date.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl DataPlane {
    /// Serves one replication request from a primary.
    pub(super) async fn on_replica_request(&self, request: ReplicaRequest) -> ReplicaReply {
        match request {
            ReplicaRequest::Append {
                partition_id,
                epoch,
                prev,
                records,
            } => ReplicaReply::Appended(self.append(partition_id, epoch, prev, records).await),
            ReplicaRequest::InstallSnapshot {
                partition_id,
                epoch,
                transfer,
                position,
                items,
                first,
                last,
            } => {
                let chunk = SnapshotChunk {
                    position,
                    items,
                    first,
                    last,
                };
                ReplicaReply::Appended(self.install(partition_id, epoch, transfer, chunk).await)
            }
            ReplicaRequest::Stage { sources, children } => {
                ReplicaReply::Appended(self.stage(sources, children).await)
            }
            ReplicaRequest::Derive {
                sources,
                children,
                positions,
            } => ReplicaReply::Appended(self.derive_at(sources, children, positions).await),
            ReplicaRequest::ReleaseLease {
                partition_id,
                primary,
            } => {
                self.leases.release_grant(partition_id, primary);
                ReplicaReply::Lease(vec![true])
            }
            ReplicaRequest::Lease { primary, entries } => ReplicaReply::Lease(
                entries
                    .into_iter()
                    .map(|(pid, epoch)| {
                        self.accept_epoch(pid, epoch).is_ok()
                            && self.meta_fresh()
                            && self.leases.grant(pid, primary, self.lease_duration())
                    })
                    .collect(),
            ),
        }
    }

    /// Derives the new partitions of a split or merge from the local sources. Sources
    /// that are not at the primary's final `positions` are left alone: the new
    /// partitions' primary fills them by catch-up instead.
    async fn derive_at(
        &self,
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
        positions: Vec<LogPosition>,
    ) -> Result<LogPosition, ReplicaError> {
        let guards: Vec<_> = sources.iter().map(|s| self.replica_lock(*s)).collect();
        let mut held = Vec::with_capacity(guards.len());
        for guard in &guards {
            held.push(guard.lock().await);
        }
        for (source, wanted) in sources.iter().zip(&positions) {
            let mine = self
                .store
                .position(*source)
                .map_err(|e| ReplicaError::Storage(e.to_string()))?;
            if mine != *wanted {
                return Err(ReplicaError::NeedSync { position: mine });
            }
        }
        self.derive_children(sources, children)
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// Stages the new partitions of a split or merge from the local copies of `sources`
    /// (see `ReplicaRequest::Stage`).
    pub(super) async fn stage(
        &self,
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
    ) -> Result<LogPosition, ReplicaError> {
        let store = self.store.clone();
        let from = sources.clone();
        let staged = tokio::task::spawn_blocking(move || store.stage(&from, &children))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        let position = staged.position();
        // A repeated staging (a retried operation) replaced the old tables: keep the new.
        lock(&self.staging.staged).insert(sources[0], staged);
        Ok(position)
    }

    /// Makes the new partitions of a split or merge local: from their staging if it is
    /// of these sources and children (only the records since are applied), else derived
    /// in full from the sources. Called by the operation's driver, on the replicas at
    /// its request, and by the reconciler (a lost request); whichever comes first does
    /// the work.
    pub async fn derive_children(
        &self,
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
    ) -> Result<LogPosition, StoreError> {
        let first = *sources
            .first()
            .ok_or_else(|| StoreError::Corrupt("a derivation needs a source".into()))?;
        let _one_at_a_time = self.staging.deriving.lock().await;
        let staged = lock(&self.staging.staged)
            .remove(&first)
            .filter(|s| s.is_for(&sources, &children));
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(staged) = staged {
                match store.finish_stage(&staged) {
                    Ok(position) => return Ok(position),
                    Err(e) => tracing::info!(?sources, error = %e, "staging not usable"),
                }
            }
            store.derive_local(&sources, &children)
        })
        .await
        .map_err(|e| StoreError::Redb(e.to_string()))?
    }

    /// Drops the new partitions staged here from `first` (the first source of a split
    /// or merge that was abandoned).
    pub(super) async fn discard_staging(&self, first: PartitionId) {
        let Some(staged) = lock(&self.staging.staged).remove(&first) else {
            return;
        };
        let store = self.store.clone();
        let discarded = tokio::task::spawn_blocking(move || store.discard_stage(&staged)).await;
        if !matches!(discarded, Ok(Ok(()))) {
            tracing::warn!(
                partition = first,
                ?discarded,
                "staged partitions not dropped"
            );
        }
    }

    /// Drops the stagings whose split or merge was abandoned (no operation running on
    /// the first source, and none committed from it): a replica is told nothing when an
    /// operation rolls back.
    pub async fn discard_abandoned_stagings(&self) {
        let firsts: Vec<PartitionId> = lock(&self.staging.staged).keys().copied().collect();
        for first in firsts {
            let abandoned = self.state.read(|s| s.running_operation_of(first).is_none())
                && !self.derived_away(first);
            if !abandoned {
                continue;
            }
            self.discard_staging(first).await;
        }
    }

    /// Whether `pid` is a source of a committed split or merge (it takes no more
    /// records).
    fn derived_away(&self, pid: PartitionId) -> bool {
        self.state.read(|s| {
            s.operations()
                .filter_map(|op| op.derivation())
                .any(|d| d.sources.contains(&pid))
        })
    }

    /// The sources (all stored here) and new partitions of the committed split or merge
    /// that made `pid`.
    fn derivation_of(&self, pid: PartitionId) -> Option<LocalDerivation> {
        let local = self.store.list();
        self.state.read(|s| {
            let wanted = [pid];
            local_derivations(s, &local, &wanted).into_iter().next()
        })
    }

    /// Whether this agent is the target of a running move of `pid`: its primary copies
    /// the partition here before the routing swap makes it a member.
    fn staging(&self, pid: PartitionId) -> bool {
        self.state.read(|s| {
            s.running_operation_of(pid).is_some_and(|op| {
                matches!(op.kind, shared::model::OperationKind::Move { to, .. } if to == self.me)
            })
        })
    }

    /// Whether a primary at `epoch` may replicate `pid` here; remembers the newest epoch
    /// accepted so an older primary is refused even if the metadata has not caught up.
    fn accept_epoch(&self, pid: PartitionId, epoch: u64) -> Result<(), ReplicaError> {
        let known = self.state.read(|s| {
            s.partition(pid)
                .map(|p| (p.epoch, p.all_nodes().any(|n| n == self.me)))
        });
        match known {
            Some((current, _)) if current > epoch => {
                return Err(ReplicaError::StaleEpoch { current });
            }
            Some((current, member)) if current == epoch && !member && !self.staging(pid) => {
                return Err(ReplicaError::NotReplica);
            }
            // A newer epoch than the local metadata knows is fine: the primary learned
            // it first. So is a split child or merged partition not yet in the local
            // metadata but derived here at its primary's request (the commit is done). Another unknown
            // partition is not (purged, or never assigned here).
            Some(_) => {}
            None if self.store.list().contains(&pid) && !self.derived_away(pid) => {}
            None => return Err(ReplicaError::NotReplica),
        }
        let mut accepted = lock(&self.replica.accepted);
        let newest = accepted.entry(pid).or_insert(0);
        if epoch < *newest {
            return Err(ReplicaError::StaleEpoch { current: *newest });
        }
        *newest = epoch;
        Ok(())
    }

    /// Whether an append at `epoch`, older than the newest epoch this replica knows of,
    /// is still taken: a write the primary sent just before a change of the replica set
    /// that kept it primary (a replica added or released) would otherwise end in doubt
    /// for nothing. Taken only while this agent is a replica (not the primary) of the
    /// partition as its metadata stands, and its log holds no record of a later epoch
    /// (no newer primary wrote here). A deposed primary gains nothing: the primary that
    /// replaced it is a member of its replica set (a move's target becomes primary
    /// under the old primary's pause; recovery promotes a member) and refuses, so that
    /// write is never acknowledged, and catch-up at the new epoch drops its record.
    fn late_append(&self, pid: PartitionId, epoch: u64) -> bool {
        let replica_now = self.state.read(|s| {
            s.partition(pid).is_some_and(|p| {
                p.primary_node_id != self.me && p.replica_node_ids.contains(&self.me)
            })
        });
        replica_now
            && self
                .store
                .position(pid)
                .is_ok_and(|position| position.epoch <= epoch)
    }

    async fn append(
        &self,
        pid: PartitionId,
        epoch: u64,
        prev: LogPosition,
        records: Vec<shared::data::WriteRecord>,
    ) -> Result<LogPosition, ReplicaError> {
        // One change at a time per partition: a late message must see the effect of the
        // ones before it.
        let guard = self.replica_lock(pid);
        let _one_at_a_time = guard.lock().await;
        match self.accept_epoch(pid, epoch) {
            Err(ReplicaError::StaleEpoch { current }) if self.late_append(pid, epoch) => {
                tracing::debug!(partition = pid, epoch, current, "late append accepted");
            }
            accepted => accepted?,
        }
        let position = self.position_or_allocate(pid).await?;
        if position != prev {
            return Err(ReplicaError::NeedSync { position });
        }
        let store = self.store.clone();
        let sent = records.len() as u64;
        let appended = tokio::task::spawn_blocking(move || store.append(pid, &records))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        match appended {
            Ok(pos) => {
                // A replica's log only grows, and never past what it was sent.
                debug_assert!(
                    pos >= position && pos.lsn <= prev.lsn + sent,
                    "partition {pid}: appended to {pos:?} from {position:?} ({sent} records after {prev:?})"
                );
                self.maybe_trim(pid, position.lsn, pos.lsn);
                Ok(pos)
            }
            Err(StoreError::Gap { .. } | StoreError::Diverged { .. }) => {
                Err(ReplicaError::NeedSync { position })
            }
            Err(e) => Err(ReplicaError::Storage(e.to_string())),
        }
    }

    /// Installs one chunk of a snapshot transfer (see `ReplicaRequest::InstallSnapshot`).
    async fn install(
        &self,
        pid: PartitionId,
        epoch: u64,
        transfer: u64,
        chunk: SnapshotChunk,
    ) -> Result<LogPosition, ReplicaError> {
        let guard = self.replica_lock(pid);
        let _one_at_a_time = guard.lock().await;
        self.accept_epoch(pid, epoch)?;
        let current = self.position_or_allocate(pid).await?;
        if chunk.first {
            // Records of this epoch (or a later one) beyond the snapshot came from this
            // same primary after it made the snapshot: a late one must not roll them back.
            if current.epoch >= epoch && current.lsn > chunk.position.lsn {
                return Err(ReplicaError::NeedSync { position: current });
            }
            lock(&self.replica.installing).insert(pid, transfer);
        } else if lock(&self.replica.installing).get(&pid) != Some(&transfer) {
            // Another transfer started since (or this agent restarted): start again.
            return Err(ReplicaError::NeedSync { position: current });
        }
        let (position, last) = (chunk.position, chunk.last);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.install_snapshot_chunk(pid, &chunk))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        if !last {
            return Ok(LogPosition::default());
        }
        lock(&self.replica.installing).remove(&pid);
        tracing::info!(
            partition = pid,
            lsn = position.lsn,
            "installed a partition snapshot"
        );
        Ok(position)
    }

    /// The local log position, allocating the partition first if the reconciler has not
    /// yet (a replacement replica may hear from its primary first). A split child or
    /// merged partition whose sources are stored here is derived from them instead:
    /// never an empty copy of a partition that the metadata counts as ready.
    async fn position_or_allocate(&self, pid: PartitionId) -> Result<LogPosition, ReplicaError> {
        let derivation = match self.store.position(pid) {
            Ok(pos) => return Ok(pos),
            Err(StoreError::NotAllocated(_)) => self.derivation_of(pid),
            Err(e) => return Err(ReplicaError::Storage(e.to_string())),
        };
        match derivation {
            Some(d) => {
                self.derive_children(d.sources, d.children)
                    .await
                    .map_err(|e| ReplicaError::Storage(e.to_string()))?;
                self.store
                    .position(pid)
                    .map_err(|e| ReplicaError::Storage(e.to_string()))
            }
            None => {
                self.store
                    .allocate(&[pid])
                    .map_err(|e| ReplicaError::Storage(e.to_string()))?;
                Ok(LogPosition::default())
            }
        }
    }

    /// Asks the primary of `pid` to bring this new copy up to date; `Ok` once it is.
    pub async fn fill_from_primary(&self, pid: PartitionId) -> Result<LogPosition, ItemError> {
        let (primary, epoch) = self
            .state
            .read(|s| s.partition(pid).map(|p| (p.primary_node_id, p.epoch)))
            .ok_or(ItemError::WrongPartition {
                current_epoch: None,
                primary: None,
            })?;
        let position = self
            .position_or_allocate(pid)
            .await
            .map_err(|e| ItemError::Unavailable(e.to_string()))?;
        let request = DataPeerRequest::Sync {
            partition_id: pid,
            epoch,
            node_id: self.me,
            position,
        };
        match self.rpc(primary, request, SYNC_TIMEOUT).await {
            Ok(DataPeerReply::Sync(result)) => result,
            Ok(other) => Err(ItemError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(ItemError::Unavailable(e.to_string())),
        }
    }
}
