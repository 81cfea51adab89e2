//! The replica's side: it accepts records only from the primary of the newest epoch it
//! knows (its metadata replica, or a newer epoch already seen from a primary), only in
//! log order, and makes them durable before answering. It grants read leases on the same
//! terms, and asks the primary to fill it when it is a new copy.

use shared::data::{
    DataPeerReply, DataPeerRequest, ItemError, LogPosition, ReplicaError, ReplicaReply,
    ReplicaRequest,
};
use shared::model::PartitionId;

use super::{DataPlane, lock};
use crate::data::store::{PartitionSnapshot, StoreError};

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
                position,
                items,
            } => ReplicaReply::Appended(
                self.install(partition_id, epoch, PartitionSnapshot { position, items })
                    .await,
            ),
            ReplicaRequest::StageSplit { parent, children } => {
                ReplicaReply::Appended(self.stage_split(parent, children).await)
            }
            ReplicaRequest::Split {
                parent,
                children,
                position,
            } => ReplicaReply::Appended(self.derive_split(parent, children, position).await),
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

    /// Derives split children from the local parent. A parent that is not at the
    /// primary's final `position` is left alone: the children's primary fills them by
    /// catch-up instead.
    async fn derive_split(
        &self,
        parent: PartitionId,
        children: Vec<(PartitionId, shared::model::KeyRange)>,
        position: LogPosition,
    ) -> Result<LogPosition, ReplicaError> {
        let guard = self.replica_lock(parent);
        let _one_at_a_time = guard.lock().await;
        let mine = self
            .store
            .position(parent)
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        if mine != position {
            return Err(ReplicaError::NeedSync { position: mine });
        }
        self.derive_children(parent, children)
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))
    }

    /// Stages split children from the local copy of `parent` (see `StageSplit`).
    pub(super) async fn stage_split(
        &self,
        parent: PartitionId,
        children: Vec<(PartitionId, shared::model::KeyRange)>,
    ) -> Result<LogPosition, ReplicaError> {
        let store = self.store.clone();
        let staged = tokio::task::spawn_blocking(move || store.stage_split(parent, &children))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        let position = staged.position();
        // A repeated staging (a retried split) replaced the old tables: keep the new one.
        lock(&self.staged).insert(parent, staged);
        Ok(position)
    }

    /// Makes split children local: from their staging if it is of these children (only
    /// the records since are applied), else derived in full from the parent. Called by
    /// the split's driver, on the replicas at its request, and by the reconciler (a
    /// lost request); whichever comes first does the work.
    pub async fn derive_children(
        &self,
        parent: PartitionId,
        children: Vec<(PartitionId, shared::model::KeyRange)>,
    ) -> Result<LogPosition, StoreError> {
        let staged = lock(&self.staged)
            .remove(&parent)
            .filter(|s| s.is_for(parent, &children));
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(staged) = staged {
                match store.finish_split(&staged) {
                    Ok(position) => return Ok(position),
                    Err(e) => tracing::info!(parent, error = %e, "staged split not usable"),
                }
            }
            store.split_local(parent, &children)
        })
        .await
        .map_err(|e| StoreError::Redb(e.to_string()))?
    }

    /// Drops the split stagings whose split was abandoned (no split running on the
    /// parent, and none committed): a replica is told nothing when a split rolls back.
    pub async fn discard_abandoned_stagings(&self) {
        let parents: Vec<PartitionId> = lock(&self.staged).keys().copied().collect();
        for parent in parents {
            let abandoned = self
                .state
                .read(|s| s.running_operation_of(parent).is_none())
                && !self.split_away(parent);
            if !abandoned {
                continue;
            }
            self.discard_staging(parent).await;
        }
    }

    /// Whether `pid` is the parent of a committed split (it takes no more records).
    fn split_away(&self, pid: PartitionId) -> bool {
        self.state.read(|s| {
            s.operations()
                .any(|op| op.partition_id == pid && op.split.is_some())
        })
    }

    /// The parent (stored here) and children of the committed split that made `pid`.
    fn split_source(
        &self,
        pid: PartitionId,
    ) -> Option<(PartitionId, Vec<(PartitionId, shared::model::KeyRange)>)> {
        let local = self.store.list();
        self.state.read(|s| {
            let op = s.operations().find(|op| {
                op.split.is_some_and(|r| r.left == pid || r.right == pid)
                    && local.contains(&op.partition_id)
            })?;
            let r = op.split?;
            let children = [r.left, r.right]
                .into_iter()
                .filter_map(|c| Some((c, s.partition(c)?.range)))
                .collect();
            Some((op.partition_id, children))
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
            // it first. So is a split child not yet in the local metadata but derived
            // here at its primary's request (the split is committed). Another unknown
            // partition is not (purged, or never assigned here).
            Some(_) => {}
            None if self.store.list().contains(&pid) && !self.split_away(pid) => {}
            None => return Err(ReplicaError::NotReplica),
        }
        let mut accepted = lock(&self.accepted);
        let newest = accepted.entry(pid).or_insert(0);
        if epoch < *newest {
            return Err(ReplicaError::StaleEpoch { current: *newest });
        }
        *newest = epoch;
        Ok(())
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
        self.accept_epoch(pid, epoch)?;
        let position = self.position_or_allocate(pid).await?;
        if position != prev {
            return Err(ReplicaError::NeedSync { position });
        }
        let store = self.store.clone();
        let appended = tokio::task::spawn_blocking(move || store.append(pid, &records))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        match appended {
            Ok(pos) => {
                self.maybe_trim(pid, position.lsn, pos.lsn);
                Ok(pos)
            }
            Err(StoreError::Gap { .. } | StoreError::Diverged { .. }) => {
                Err(ReplicaError::NeedSync { position })
            }
            Err(e) => Err(ReplicaError::Storage(e.to_string())),
        }
    }

    async fn install(
        &self,
        pid: PartitionId,
        epoch: u64,
        snapshot: PartitionSnapshot,
    ) -> Result<LogPosition, ReplicaError> {
        let guard = self.replica_lock(pid);
        let _one_at_a_time = guard.lock().await;
        self.accept_epoch(pid, epoch)?;
        // Records of this epoch (or a later one) beyond the snapshot came from this same
        // primary after it made the snapshot: a late snapshot must not roll them back.
        let current = self.position_or_allocate(pid).await?;
        if current.epoch >= epoch && current.lsn > snapshot.position.lsn {
            return Err(ReplicaError::NeedSync { position: current });
        }
        let position = snapshot.position;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.install_snapshot(pid, &snapshot))
            .await
            .map_err(|e| ReplicaError::Storage(e.to_string()))?
            .map_err(|e| ReplicaError::Storage(e.to_string()))?;
        tracing::info!(
            partition = pid,
            lsn = position.lsn,
            "installed a partition snapshot"
        );
        Ok(position)
    }

    /// The local log position, allocating the partition first if the reconciler has not
    /// yet (a replacement replica may hear from its primary first). A split child whose
    /// parent is stored here is derived from it instead: never an empty copy of a child
    /// that the metadata counts as ready.
    async fn position_or_allocate(&self, pid: PartitionId) -> Result<LogPosition, ReplicaError> {
        match self.store.position(pid) {
            Ok(pos) => Ok(pos),
            Err(StoreError::NotAllocated(_)) if self.split_source(pid).is_some() => {
                let (parent, children) = self.split_source(pid).expect("checked just above");
                self.derive_children(parent, children)
                    .await
                    .map_err(|e| ReplicaError::Storage(e.to_string()))?;
                self.store
                    .position(pid)
                    .map_err(|e| ReplicaError::Storage(e.to_string()))
            }
            Err(StoreError::NotAllocated(_)) => {
                self.store
                    .allocate(&[pid])
                    .map_err(|e| ReplicaError::Storage(e.to_string()))?;
                Ok(LogPosition::default())
            }
            Err(e) => Err(ReplicaError::Storage(e.to_string())),
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
