//! The data plane as the reconciler's [`LocalCopies`]: copies in the partition store,
//! derivations from staged or local data, fills over the peer transport.

use std::collections::BTreeSet;

use shared::data::LogPosition;
use shared::model::{KeyRange, PartitionId};

use super::DataPlane;
use crate::seam::{BoxFuture, CopyError, LocalCopies};

fn copy_error(e: impl std::fmt::Display) -> CopyError {
    CopyError(e.to_string())
}

impl LocalCopies for DataPlane {
    fn list(&self) -> BTreeSet<PartitionId> {
        self.store.list()
    }

    fn allocate(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
        self.store.allocate(pids).map_err(copy_error)
    }

    fn drop_copies(&self, pids: &[PartitionId]) -> Result<(), CopyError> {
        self.store.drop_partitions(pids).map_err(copy_error)
    }

    fn derive(
        &self,
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
    ) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
        Box::pin(async move {
            self.derive_children(sources, children)
                .await
                .map_err(copy_error)
        })
    }

    fn fill_from_primary(&self, pid: PartitionId) -> BoxFuture<'_, Result<LogPosition, CopyError>> {
        Box::pin(async move {
            DataPlane::fill_from_primary(self, pid)
                .await
                .map_err(copy_error)
        })
    }

    fn discard_abandoned_stagings(&self) -> BoxFuture<'_, ()> {
        Box::pin(DataPlane::discard_abandoned_stagings(self))
    }
}
