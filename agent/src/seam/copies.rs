//! The partition copies this node holds: what the reconciler reads and changes. The
//! agent's `DataPlane` keeps them in redb and fills them over the peer transport;
//! `netsim` keeps a set per node and fills after a drawn copy time.

use std::collections::BTreeSet;

use shared::data::LogPosition;
use shared::model::{KeyRange, PartitionId};

use super::BoxFuture;

/// Why a local copy could not be allocated, dropped, derived or filled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(pub String);

/// The local copies of partitions and the actions on them.
pub trait LocalCopies: Send + Sync + 'static {
    /// The partitions held here.
    fn list(&self) -> BTreeSet<PartitionId>;

    /// Makes empty copies of `pids` (idempotent: a held copy keeps its data).
    fn allocate(&self, pids: &[PartitionId]) -> Result<(), CopyError>;

    /// Drops the copies of `pids` and their data.
    fn drop_copies(&self, pids: &[PartitionId]) -> Result<(), CopyError>;

    /// Makes `children` (new partitions of a committed split or merge) from the local
    /// copies of `sources`; where the children's logs start.
    fn derive(
        &self,
        sources: Vec<PartitionId>,
        children: Vec<(PartitionId, KeyRange)>,
    ) -> BoxFuture<'_, Result<LogPosition, CopyError>>;

    /// Fills the (new, empty) local copy of `pid` from its primary; where it ends.
    fn fill_from_primary(&self, pid: PartitionId) -> BoxFuture<'_, Result<LogPosition, CopyError>>;

    /// Drops what was staged here for a split or merge that was abandoned.
    fn discard_abandoned_stagings(&self) -> BoxFuture<'_, ()>;
}
