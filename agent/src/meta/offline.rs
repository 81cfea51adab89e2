//! Surgery on a stopped agent's metadata store (`meta.redb`), for disaster recovery:
//!
//! - [`restore`]: a new one-voter metadata store from a backup (`agent restore`), as
//!   `etcdctl snapshot restore` does;
//! - [`recover`]: this agent the only voter of its cluster's metadata, keeping its whole
//!   log, when a majority of voters is lost for good (`agent recover`), as
//!   `etcd --force-new-cluster` does.
//!
//! Both write what openraft reads at start: a restore writes a snapshot and a purged log
//! up to the backup's index; a recovery appends one membership entry naming this agent
//! the only voter, in a term above every term it saw, so that at start it elects itself
//! and commits its whole log, the new configuration last. The voter manager grows the
//! voter set again as agents join.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
use redb::Database;
use shared::backup::MetaBackup;

use super::log_store::LogStore;
use super::state_machine::{SnapshotImage, encode_image, load_snapshot, persist_snapshot};
use super::types::{Entry, LogId, NodeId, SnapshotMeta, StoreError, StoredMembership, Vote};

use super::META_FILE;

/// Why the surgery was not done. Nothing is changed when it fails before writing.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// A restore must not overwrite metadata.
    #[error(
        "{0} exists: a restore starts a new metadata store and never overwrites one (move it \
         aside first if this agent's metadata is to be replaced)"
    )]
    NotEmpty(PathBuf),
    /// Nothing to recover from.
    #[error("{0} does not exist: this agent has no metadata to recover from")]
    NoStore(PathBuf),
    /// The store holds no log and no snapshot.
    #[error("the metadata store holds no log and no snapshot: nothing to recover")]
    Empty,
    /// The agent still runs (redb holds a lock on the file).
    #[error("{0} is in use: stop the agent first")]
    InUse(PathBuf),
    /// The backup cannot start a cluster.
    #[error("the backup is at index 0: it holds no committed metadata")]
    EmptyBackup,
    /// Reading or writing the store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The log index the new store starts after.
    pub index: u64,
}

/// What a recovery found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Voters of the configuration it replaced.
    pub old_voters: BTreeSet<NodeId>,
    /// Learners of that configuration (they join again as new learners).
    pub old_learners: BTreeSet<NodeId>,
    /// Committed index this agent knew of.
    pub committed: Option<u64>,
    /// Its last log index before the recovery (entries beyond the committed index are
    /// committed by the recovery too).
    pub last_index: u64,
    /// Index of the new one-voter configuration.
    pub membership_index: u64,
    /// Its term.
    pub term: u64,
}

/// Writes a new metadata store into `data_dir` from `backup`, with `me` (reached at
/// `peer_addr`) its only voter. Refuses a data dir that holds a metadata store.
pub fn restore(
    data_dir: &Path,
    me: NodeId,
    peer_addr: &str,
    backup: MetaBackup,
) -> Result<Restored, OfflineError> {
    let path = data_dir.join(META_FILE);
    if path.exists() {
        return Err(OfflineError::NotEmpty(path));
    }
    if backup.applied_index == 0 {
        return Err(OfflineError::EmptyBackup);
    }
    let db = open(&path, |p| Database::create(p))?;
    let mut log = LogStore::open(db.clone())?;
    let log_id = LogId::new(CommittedLeaderId::new(1, me), backup.applied_index);
    let membership = StoredMembership::new(Some(log_id), only_voter(me, peer_addr));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: membership.clone(),
        snapshot_id: format!("restored-{}", backup.applied_index),
    };
    let image = SnapshotImage {
        state: backup.state,
        last_applied: Some(log_id),
        membership,
    };
    persist_snapshot(&db, &meta, &encode_image(&image)?)?;
    // The log starts after the snapshot; the vote is this agent's, not yet a leader's,
    // so it wins an election of one at start.
    log.purge_upto(&log_id)?;
    log.store_vote(&Vote::new(1, me))?;
    log.store_committed(Some(log_id))?;
    Ok(Restored {
        index: backup.applied_index,
    })
}

/// Makes `me` the only voter of the metadata in `data_dir`, keeping every entry of its
/// log (see the module documentation). `peer_addr` is used if the current configuration
/// does not hold this agent's address.
pub fn recover(data_dir: &Path, me: NodeId, peer_addr: &str) -> Result<Recovered, OfflineError> {
    let path = data_dir.join(META_FILE);
    if !path.exists() {
        return Err(OfflineError::NoStore(path));
    }
    let db = open(&path, |p| Database::open(p))?;
    let mut log = LogStore::open(db.clone())?;
    let state = log.log_state()?;
    let last = state.last_log_id.ok_or(OfflineError::Empty)?;
    let current = current_membership(&log, &db, state.last_purged_log_id)?;
    let vote_term = log.stored_vote()?.map_or(0, |v| v.leader_id().term);
    let term = vote_term.max(last.leader_id.term) + 1;
    let addr = current
        .membership()
        .get_node(&me)
        .map_or_else(|| peer_addr.to_string(), |n| n.addr.clone());
    let log_id = LogId::new(CommittedLeaderId::new(term, me), last.index + 1);
    log.append_entries([Entry {
        log_id,
        payload: EntryPayload::Membership(only_voter(me, &addr)),
    }])?;
    log.store_vote(&Vote::new(term, me))?;
    let snapshot = load_snapshot(&db)?.and_then(|(meta, _)| meta.last_log_id);
    let old = current.membership();
    Ok(Recovered {
        old_voters: old.voter_ids().collect(),
        old_learners: old.learner_ids().collect(),
        committed: log.committed().max(snapshot).map(|id| id.index),
        last_index: last.index,
        membership_index: log_id.index,
        term,
    })
}

/// The configuration with `me` as its only voter and no learner.
fn only_voter(me: NodeId, addr: &str) -> Membership<NodeId, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([me])],
        BTreeMap::from([(me, BasicNode::new(addr))]),
    )
}

/// The latest configuration: the last one in the log after the snapshot, else the
/// snapshot's.
fn current_membership(
    log: &LogStore,
    db: &Database,
    purged: Option<LogId>,
) -> Result<StoredMembership, OfflineError> {
    let from = purged.map_or(0, |id| id.index + 1);
    let in_log = log
        .entries_from(from)?
        .into_iter()
        .rev()
        .find_map(|entry| match entry.payload {
            EntryPayload::Membership(m) => Some(StoredMembership::new(Some(entry.log_id), m)),
            _ => None,
        });
    if let Some(membership) = in_log {
        return Ok(membership);
    }
    Ok(match load_snapshot(db)? {
        Some((meta, _)) => meta.last_membership,
        None => StoredMembership::default(),
    })
}

/// Opens `path`, telling a running agent's lock apart from other failures.
fn open(
    path: &Path,
    how: impl FnOnce(&Path) -> Result<Database, redb::DatabaseError>,
) -> Result<Arc<Database>, OfflineError> {
    match how(path) {
        Ok(db) => Ok(Arc::new(db)),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(OfflineError::InUse(path.to_path_buf()))
        }
        Err(e) => Err(StoreError::from(e).into()),
    }
}
