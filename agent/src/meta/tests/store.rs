//! Storage conformance (openraft's suite) and recovery of both stores after a restart.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftSnapshotBuilder, StorageHelper};
use shared::command::{MetaError, MetaOutcome};
use shared::state::MetaState;
use tempfile::TempDir;

use super::support::{init_cluster, log_id, membership, normal, open_db, open_stores, register};
use crate::meta::types::{LogState, StorageError, TypeConfig, Vote};
use crate::meta::{LogStore, StateMachineStore};

/// Opens a fresh redb database in a temporary directory for each suite case.
struct RedbStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(&dir.path().join("meta.redb"));
        let (log, sm, _) = open_stores(&db);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(RedbStoreBuilder).expect("storage suite");
}

#[tokio::test]
async fn restart_recovers_log_vote_committed_snapshot_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let entries = vec![
        membership(1, 1, &[1]),
        normal(1, 2, init_cluster()),
        normal(1, 3, register(1, 5)),
        normal(1, 4, register(2, 5)),
        normal(1, 5, register(2, 3)), // older incarnation: committed, rejected
    ];
    let vote = Vote::new_committed(1, 1);

    let expected_state: MetaState = {
        let db = open_db(&path);
        let (mut log, mut sm, handle) = open_stores(&db);
        log.save_vote(&vote).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();

        let first = sm.apply(entries[..3].to_vec()).await.unwrap();
        assert_eq!(first, vec![Ok(MetaOutcome::Done); 3]);
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));

        let rest = sm.apply(entries[3..].to_vec()).await.unwrap();
        assert!(rest[0].is_ok(), "{rest:?}");
        assert!(
            matches!(rest[1], Err(MetaError::StaleIncarnation { .. })),
            "{rest:?}"
        );
        assert_eq!(handle.applied_index(), 5);

        log.save_committed(Some(log_id(1, 5))).await.unwrap();
        log.purge(log_id(1, 2)).await.unwrap();
        handle.read(|s| s.clone())
    };

    // Reopen: the stores come back from disk alone.
    let db = open_db(&path);
    let (mut log, mut sm, handle) = open_stores(&db);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(
        state,
        LogState {
            last_purged_log_id: Some(log_id(1, 2)),
            last_log_id: Some(log_id(1, 5))
        }
    );
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 5)));
    let snapshot = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot persisted");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));

    // The state machine restarts from the snapshot...
    let (applied, stored_membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(stored_membership.log_id(), &Some(log_id(1, 1)));
    assert_eq!(handle.applied_index(), 3);

    // ...and openraft re-applies the committed log after it.
    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(handle.applied_index(), 5);
    assert!(handle.read(|s| *s == expected_state));
    drop((log, sm, db));
}

#[tokio::test]
async fn install_snapshot_replaces_state_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let entries = vec![
        membership(2, 1, &[1, 2]),
        normal(2, 2, init_cluster()),
        normal(2, 3, register(7, 1)),
    ];

    // Build a snapshot on a "leader" store.
    let leader_dir = tempfile::tempdir().unwrap();
    let leader_db = open_db(&leader_dir.path().join("meta.redb"));
    let (_, mut leader_sm, leader_handle) = open_stores(&leader_db);
    leader_sm.apply(entries).await.unwrap();
    let snapshot = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    {
        let db = open_db(&path);
        let (_, mut sm, handle) = open_stores(&db);
        let rx = handle.subscribe();
        let mut data = sm.begin_receiving_snapshot().await.unwrap();
        *data = (*snapshot.snapshot).clone();
        sm.install_snapshot(&snapshot.meta, data).await.unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(handle.applied_index(), 3);
        assert!(handle.read(|s| leader_handle.read(|l| s == l)));
    }

    let db = open_db(&path);
    let (_, mut sm, handle) = open_stores(&db);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2, 3)));
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("installed snapshot kept");
    assert_eq!(current.meta, snapshot.meta);
    assert!(handle.read(|s| leader_handle.read(|l| s == l)));
}
