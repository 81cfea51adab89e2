//! Splits and moves on random ACTIVE tables: random splits keep every table tiling the
//! key space, with children on their parent's nodes above its epoch; random moves keep
//! replica sets distinct, grow the epoch by one per switch and roll back cleanly when
//! recovery changed the partition meanwhile; random merges of split children keep the
//! tiling, on the same nodes above both epochs; random interleavings of operations
//! never run two on one partition, and a partition is busy exactly while one runs.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shared::command::{MetaCommand, MetaError, MetaOutcome, PartitionChange};
use shared::keyspace::check_tiling;
use shared::model::{
    KeyRange, NodeId, OperationId, OperationKind, OperationStatus, OperationStep, Partition,
    PartitionId, PartitionStatus, TableId,
};
use shared::placement::PlacementConfig;
use shared::state::MetaState;

use crate::fixtures::{create, on_demand, place, provisioned, ready_and_activate, register, spec};

/// Nodes of the test cluster (the placement uses 3 per partition).
const NODES: u64 = 6;

/// A cluster of `NODES` nodes with two ACTIVE tables (4 and 9 partitions).
fn cluster() -> (MetaState, Vec<TableId>) {
    let mut s = MetaState::new();
    for n in 1..=NODES {
        s.apply(&register(n, ["a", "b", "c"][n as usize % 3], 1, 1))
            .unwrap();
    }
    let cfg = PlacementConfig::default();
    let mut tables = vec![];
    for (name, capacity) in [("small", on_demand()), ("large", provisioned(100, 9000))] {
        let t = create(&mut s, spec(name, capacity));
        place(&mut s, t, &cfg);
        ready_and_activate(&mut s, t);
        tables.push(t);
    }
    (s, tables)
}

fn apply(s: &mut MetaState, cmd: MetaCommand) -> Result<MetaOutcome, MetaError> {
    let before = s.clone();
    let result = s.apply(&cmd);
    if result.is_err() {
        assert_eq!(*s, before, "rejected {cmd:?} changed the state");
    }
    s.check_invariants().unwrap();
    result
}

fn started(result: Result<MetaOutcome, MetaError>) -> OperationId {
    match result {
        Ok(MetaOutcome::OperationStarted { operation_id }) => operation_id,
        other => panic!("start gave {other:?}"),
    }
}

fn nth_partition(s: &MetaState, raw: usize) -> Partition {
    let parts: Vec<&Partition> = s.partitions().collect();
    parts[raw % parts.len()].clone()
}

/// The point at fraction `at` / 2^16 of the range; 0 is its start (refused).
fn point_in(range: KeyRange, at: u16) -> u64 {
    let width = u128::from(range.high - range.low) + 1;
    range.low + (width * u128::from(at) / 65536) as u64
}

fn tiles(s: &MetaState, table: TableId) -> Result<(), String> {
    let ranges: Vec<KeyRange> = s.partitions_of(table).iter().map(|p| p.range).collect();
    check_tiling(&ranges)
}

fn start(partition_id: PartitionId, kind: OperationKind) -> MetaCommand {
    MetaCommand::StartOperation {
        partition_id,
        kind,
        requested_by: "operator".into(),
        now_ms: 10,
    }
}

fn advance(operation_id: OperationId, step: OperationStep) -> MetaCommand {
    MetaCommand::AdvanceOperation {
        operation_id,
        step,
        progress: None,
        now_ms: 20,
    }
}

fn finish(operation_id: OperationId, status: OperationStatus) -> MetaCommand {
    MetaCommand::FinishOperation {
        operation_id,
        status,
        now_ms: 40,
        write_pause_ms: None,
    }
}

/// Splits `parent` at `point`, through a split operation when `with_op`; returns the
/// result of the commit.
fn split(
    s: &mut MetaState,
    parent: &Partition,
    point: u64,
    with_op: bool,
) -> Result<MetaOutcome, MetaError> {
    let operation_id = if with_op {
        let cmd = start(
            parent.partition_id,
            OperationKind::Split { split_point: None },
        );
        let id = started(apply(s, cmd));
        apply(s, advance(id, OperationStep::Fencing)).unwrap();
        Some(id)
    } else {
        None
    };
    let cmd = MetaCommand::SplitPartition {
        operation_id,
        parent: parent.partition_id,
        split_point: point,
        expected_epoch: parent.epoch,
        now_ms: 30,
    };
    let result = apply(s, cmd);
    if let (Some(id), Err(_)) = (operation_id, &result) {
        apply(s, finish(id, OperationStatus::RolledBack)).unwrap();
    }
    result
}

/// The partition right above `p` in its table, if any.
fn right_neighbour(s: &MetaState, p: &Partition) -> Option<Partition> {
    let above = p.range.high.checked_add(1)?;
    s.partitions_of(p.table_id)
        .into_iter()
        .find(|q| q.range.low == above)
        .cloned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_splits_and_merges_keep_tiling(
        steps in prop::collection::vec((any::<usize>(), any::<u16>(), any::<bool>(), any::<bool>()), 1..60),
    ) {
        let (mut s, tables) = cluster();
        for (raw, at, merge, commit) in steps {
            let p = nth_partition(&s, raw);
            if !merge {
                let _ = split(&mut s, &p, point_in(p.range, at), true);
                continue;
            }
            let Some(r) = right_neighbour(&s, &p) else { continue };
            let kind = OperationKind::Merge { right: r.partition_id };
            let result = apply(&mut s, start(p.partition_id, kind));
            prop_assert_eq!(result.is_ok(), p.same_members(&r), "{:?} {:?}: {:?}", p, r, result);
            let Ok(MetaOutcome::OperationStarted { operation_id: id }) = result else { continue };
            apply(&mut s, advance(id, OperationStep::Fencing)).unwrap();
            if !commit {
                apply(&mut s, finish(id, OperationStatus::RolledBack)).unwrap();
                prop_assert_eq!(s.partition(p.partition_id), Some(&p));
                prop_assert_eq!(s.partition(r.partition_id), Some(&r));
                continue;
            }
            let cmd = MetaCommand::MergePartitions {
                operation_id: id,
                left: p.partition_id,
                right: r.partition_id,
                expected_epochs: (p.epoch, r.epoch),
                now_ms: 30,
            };
            let Ok(MetaOutcome::PartitionsMerged { merged }) = apply(&mut s, cmd) else {
                prop_assert!(false, "merge of {:?} and {:?} refused", p, r);
                continue;
            };
            let m = s.partition(merged).unwrap();
            prop_assert_eq!(m.range, KeyRange { low: p.range.low, high: r.range.high });
            prop_assert_eq!(m.epoch, p.epoch.max(r.epoch) + 1);
            prop_assert!(m.same_members(&p) && m.is_ready());
            prop_assert!(s.partition(p.partition_id).is_none() && s.partition(r.partition_id).is_none());
            for t in &tables {
                prop_assert!(tiles(&s, *t).is_ok(), "{:?}", tiles(&s, *t));
            }
        }
    }

    #[test]
    fn random_splits_keep_tiling_and_raise_epochs(
        splits in prop::collection::vec((any::<usize>(), any::<u16>(), any::<bool>()), 1..40),
    ) {
        let (mut s, tables) = cluster();
        for (raw, at, with_op) in splits {
            let parent = nth_partition(&s, raw);
            let point = point_in(parent.range, at);
            let count = s.partition_count();
            let result = split(&mut s, &parent, point, with_op);
            let inside = parent.range.low < point && point <= parent.range.high;
            prop_assert_eq!(result.is_ok(), inside, "{:?} at {}: {:?}", parent, point, result);
            for t in &tables {
                prop_assert!(tiles(&s, *t).is_ok(), "{:?}", tiles(&s, *t));
            }
            let Ok(MetaOutcome::PartitionSplit { left, right }) = result else {
                prop_assert_eq!(s.partition_count(), count);
                prop_assert!(s.partition(parent.partition_id).is_some());
                continue;
            };
            prop_assert_eq!(s.partition_count(), count + 1);
            prop_assert!(s.partition(parent.partition_id).is_none());
            for child in [left, right] {
                let c = s.partition(child).unwrap();
                prop_assert_eq!(c.epoch, parent.epoch + 1);
                prop_assert_eq!(c.all_nodes().collect::<Vec<_>>(), parent.all_nodes().collect::<Vec<_>>());
                prop_assert!(c.is_ready());
                prop_assert_eq!(c.status, PartitionStatus::Healthy);
            }
            // Every key of the parent is served by a child, at a higher epoch.
            for key in [parent.range.low, point - 1, point, parent.range.high] {
                let owner = s.partitions_of(parent.table_id).into_iter().find(|p| p.range.contains(key));
                prop_assert!(owner.is_some_and(|o| o.epoch > parent.epoch));
            }
        }
    }

    #[test]
    fn random_moves_keep_replicas_distinct_and_raise_epochs(
        moves in prop::collection::vec((any::<usize>(), 0usize..3, 1..=NODES, 0u8..4), 1..30),
    ) {
        let (mut s, _) = cluster();
        for (raw, from_index, to, fate) in moves {
            let p = nth_partition(&s, raw);
            let members: Vec<NodeId> = p.all_nodes().collect();
            let from = members[from_index % members.len()];
            let kind = OperationKind::Move { from, to };
            let result = apply(&mut s, start(p.partition_id, kind));
            prop_assert_eq!(result.is_ok(), !members.contains(&to), "{:?}", result);
            let Ok(MetaOutcome::OperationStarted { operation_id: id }) = result else {
                continue;
            };
            apply(&mut s, advance(id, OperationStep::Switching)).unwrap();
            if fate == 0 {
                // Recovery changed the partition meanwhile: the commit is stale.
                let repair = MetaCommand::RepairPartitions {
                    changes: vec![PartitionChange {
                        partition_id: p.partition_id,
                        expected_epoch: p.epoch,
                        primary_node_id: p.primary_node_id,
                        replica_node_ids: p.replica_node_ids.clone(),
                    }],
                };
                apply(&mut s, repair).unwrap();
            }
            let commit = MetaCommand::CommitMove {
                operation_id: id,
                partition_id: p.partition_id,
                from,
                to,
                expected_epoch: p.epoch,
                now_ms: 30,
            };
            let result = apply(&mut s, commit.clone());
            let after = s.partition(p.partition_id).unwrap().clone();
            if fate == 0 {
                let stale = matches!(result, Err(MetaError::StaleEpoch { .. }));
                prop_assert!(stale, "{:?}", result);
                apply(&mut s, finish(id, OperationStatus::RolledBack)).unwrap();
                prop_assert_eq!(after.all_nodes().collect::<Vec<_>>(), members);
                prop_assert_eq!(s.partition(p.partition_id).unwrap().status, PartitionStatus::Healthy);
                continue;
            }
            prop_assert_eq!(result, Ok(MetaOutcome::Done));
            let swapped: Vec<NodeId> = members.iter().map(|n| if *n == from { to } else { *n }).collect();
            prop_assert_eq!(after.all_nodes().collect::<Vec<_>>(), swapped);
            let distinct: BTreeSet<NodeId> = after.all_nodes().collect();
            prop_assert_eq!(distinct.len(), members.len());
            prop_assert_eq!(after.epoch, p.epoch + 1);
            prop_assert!(after.is_ready());
            prop_assert!(!s.node(from).unwrap().partition_ids.contains(&p.partition_id));
            prop_assert!(s.node(to).unwrap().partition_ids.contains(&p.partition_id));
            // A retried commit changes nothing; the source drops its copy; done.
            prop_assert_eq!(apply(&mut s, commit), Ok(MetaOutcome::Unchanged));
            let end = if fate == 1 {
                OperationStatus::Failed { reason: "source kept its copy".into() }
            } else {
                OperationStatus::Completed
            };
            apply(&mut s, finish(id, end)).unwrap();
            prop_assert_eq!(s.partition(p.partition_id).unwrap().status, PartitionStatus::Healthy);
        }
    }

    #[test]
    fn operations_never_share_a_partition(
        steps in prop::collection::vec((any::<usize>(), 0u8..6, 1..=NODES), 1..80),
    ) {
        let (mut s, _) = cluster();
        for (raw, what, node) in steps {
            let p = nth_partition(&s, raw);
            let running = s.running_operation_of(p.partition_id).map(|o| o.operation_id);
            let cmd = match (what, running) {
                (0 | 1 | 5, _) => {
                    let kind = match (what, right_neighbour(&s, &p)) {
                        (0, _) => OperationKind::Split { split_point: None },
                        (5, Some(r)) => OperationKind::Merge { right: r.partition_id },
                        _ => OperationKind::Move { from: p.primary_node_id, to: node },
                    };
                    let result = apply(&mut s, start(p.partition_id, kind));
                    if running.is_some() {
                        let busy = matches!(result, Err(MetaError::OperationRunning { .. }));
                        prop_assert!(busy, "{:?}", result);
                    }
                    continue;
                }
                (2, Some(id)) => finish(id, OperationStatus::RolledBack),
                (3, Some(id)) => advance(id, OperationStep::Fencing),
                (_, _) => MetaCommand::SplitPartition {
                    operation_id: None,
                    parent: p.partition_id,
                    split_point: point_in(p.range, 32768),
                    expected_epoch: p.epoch,
                    now_ms: 30,
                },
            };
            let result = apply(&mut s, cmd.clone());
            if let (MetaCommand::SplitPartition { .. }, Some(_)) = (&cmd, running) {
                let busy = matches!(result, Err(MetaError::OperationRunning { .. }));
                prop_assert!(busy, "{:?}", result);
            }
            let mut busy: BTreeMap<PartitionId, OperationId> = BTreeMap::new();
            for op in s.running_operations() {
                for pid in op.partitions() {
                    prop_assert!(busy.insert(pid, op.operation_id).is_none());
                }
            }
            for p in s.partitions() {
                prop_assert_eq!(p.status != PartitionStatus::Healthy, busy.contains_key(&p.partition_id));
            }
        }
    }
}
