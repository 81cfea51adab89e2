//! Pure decisions of the table lifecycle: what the leader's Partition Assigner commits
//! next, and what one agent's reconciler must do to its local partition storage.

use std::collections::BTreeSet;

use crate::command::MetaCommand;
use crate::model::{
    KeyRange, NodeId, NodeStatus, OperationKind, OperationStatus, PartitionId, TableStatus,
    UnixMillis,
};
use crate::placement::{PlacementConfig, plan_new_table};
use crate::state::MetaState;

/// Settings of the Partition Assigner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignerConfig {
    /// Placement of new tables.
    pub placement: PlacementConfig,
    /// A DELETING table is purged after this long even if some node never released.
    pub delete_release_timeout_ms: u64,
    /// Whether the Scaler merges partitions after a capacity decrease: then a SCALING
    /// table with more partitions than its capacity needs is left SCALING for the
    /// Scaler, which activates it once it can merge no more.
    pub merges: bool,
}

/// One step the assigner wants committed, with any warning worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignerAction {
    /// The command to propose.
    pub command: MetaCommand,
    /// Warnings of the planner (e.g. a reduced replication factor).
    pub warnings: Vec<String>,
}

/// The commands that move every table one step along its lifecycle:
/// CREATING without partitions → `AssignPartitions` (one table per call, see below); CREATING (all ready) or SCALING →
/// `ActivateTable`; DELETING and released everywhere (or timed out) → `PurgeTable`.
/// An operation still running on a DELETING table is ended first (rolled back, or
/// completed if its routing already switched): its driver can commit nothing more on a
/// table going away, and the purge waits for it.
/// No partition is placed on a node in `unreachable` (the leader's own liveness view).
pub fn assigner_actions(
    state: &MetaState,
    cfg: &AssignerConfig,
    now_ms: UnixMillis,
    unreachable: &BTreeSet<NodeId>,
) -> Vec<AssignerAction> {
    let mut actions = Vec::new();
    // One new table placed per call: each placement must see the ones before it (or a
    // burst of creations would all land on the same least-loaded nodes); the assigner
    // runs again on every applied entry, so the next table follows at once.
    let mut placed = false;
    for table in state.tables() {
        let partitions = state.partitions_of(table.table_id);
        let command = match table.status {
            TableStatus::Creating if partitions.is_empty() && placed => None,
            TableStatus::Creating if partitions.is_empty() => {
                placed = true;
                match plan_new_table(state, table.table_id, &cfg.placement, unreachable) {
                    Ok(plan) => {
                        actions.push(AssignerAction {
                            command: MetaCommand::AssignPartitions {
                                table_id: table.table_id,
                                partitions: plan.assignments,
                            },
                            warnings: plan.warnings,
                        });
                        continue;
                    }
                    // No live node yet: nothing to do until one registers.
                    Err(_) => None,
                }
            }
            TableStatus::Creating if partitions.iter().all(|p| p.is_ready()) => {
                Some(activate(table.table_id, now_ms))
            }
            TableStatus::Scaling if scaled(state, table, &partitions, cfg) => {
                Some(activate(table.table_id, now_ms))
            }
            TableStatus::Deleting
                if state
                    .running_operations()
                    .any(|op| op.table_id == table.table_id) =>
            {
                for op in state
                    .running_operations()
                    .filter(|op| op.table_id == table.table_id)
                {
                    let status = if op.step.is_switched() {
                        OperationStatus::Completed
                    } else {
                        OperationStatus::RolledBack
                    };
                    actions.push(AssignerAction {
                        command: MetaCommand::FinishOperation {
                            operation_id: op.operation_id,
                            status,
                            now_ms,
                            write_pause_ms: None,
                        },
                        warnings: vec![format!(
                            "operation {} ended: its table is being deleted",
                            op.operation_id
                        )],
                    });
                }
                None
            }
            TableStatus::Deleting => {
                let released = partitions
                    .iter()
                    .all(|p| p.all_nodes().all(|n| p.released_node_ids.contains(&n)));
                let timed_out = now_ms.saturating_sub(table.status_changed_at_ms)
                    >= cfg.delete_release_timeout_ms;
                (released || timed_out).then_some(MetaCommand::PurgeTable {
                    table_id: table.table_id,
                })
            }
            _ => None,
        };
        if let Some(command) = command {
            actions.push(AssignerAction {
                command,
                warnings: Vec::new(),
            });
        }
    }
    actions
}

/// Whether a SCALING table is done: it has at least the partitions its capacity needs
/// (the Scaler splits until it has), not more when merges are on (the Scaler merges
/// until it has not, or activates the table itself when it can merge no more), and no
/// operation on its partitions is running.
fn scaled(
    state: &MetaState,
    table: &crate::model::Table,
    partitions: &[&crate::model::Partition],
    cfg: &AssignerConfig,
) -> bool {
    let target = crate::placement::partition_count(&table.capacity, &cfg.placement) as usize;
    let busy = state
        .running_operations()
        .any(|op| op.table_id == table.table_id);
    partitions.len() >= target && (partitions.len() == target || !cfg.merges) && !busy
}

fn activate(table_id: u64, now_ms: UnixMillis) -> MetaCommand {
    MetaCommand::ActivateTable { table_id, now_ms }
}

/// What one agent must do so its local partition storage matches the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Partitions to allocate locally (assigned here, not yet stored).
    pub allocate: Vec<PartitionId>,
    /// Partitions to report ready (stored here, or about to be, and not yet reported).
    pub report_ready: Vec<PartitionId>,
    /// Partitions of DELETING tables to drop locally and report released.
    pub release: Vec<PartitionId>,
    /// Local partitions the metadata no longer assigns here: drop without reporting.
    pub drop_orphans: Vec<PartitionId>,
    /// Split parents or merge sources stored here whose results are assigned here but
    /// not stored yet: derive those from the local data (no copy over the network).
    pub derive: Vec<LocalDerivation>,
}

/// Partitions to derive locally from the sources of a committed split or merge: each
/// child gets the sources' items whose partition-key hash is in its range, and the
/// log position `data::derived_position` of the sources' positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDerivation {
    /// The split parent or the merged pair (stored locally, gone from the metadata).
    pub sources: Vec<PartitionId>,
    /// Children with their key ranges.
    pub children: Vec<(PartitionId, KeyRange)>,
}

impl ReconcilePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.allocate.is_empty()
            && self.report_ready.is_empty()
            && self.release.is_empty()
            && self.drop_orphans.is_empty()
            && self.derive.is_empty()
    }
}

/// Compares what the metadata assigns to `node_id` with the partitions stored locally.
/// `include_orphans` must be false until the local replica has caught up with the
/// leader, so a stale replica never drops data it still owns.
pub fn reconcile_plan(
    state: &MetaState,
    node_id: NodeId,
    local: &BTreeSet<PartitionId>,
    include_orphans: bool,
) -> ReconcilePlan {
    let mut plan = ReconcilePlan::default();
    let mut assigned = BTreeSet::new();
    let Some(node) = state.node(node_id) else {
        return plan;
    };
    for &pid in &node.partition_ids {
        let Some(p) = state.partition(pid) else {
            continue;
        };
        let deleting = state
            .table(p.table_id)
            .is_some_and(|t| t.status == TableStatus::Deleting);
        if deleting {
            if !p.released_node_ids.contains(&node_id) {
                plan.release.push(pid);
            }
            continue;
        }
        assigned.insert(pid);
        if !local.contains(&pid) {
            plan.allocate.push(pid);
        }
        if !p.ready_node_ids.contains(&node_id) {
            plan.report_ready.push(pid);
        }
    }
    plan.derive = local_derivations(state, local, &plan.allocate);
    let derived: BTreeSet<PartitionId> = plan
        .derive
        .iter()
        .flat_map(|d| d.children.iter().map(|(c, _)| *c))
        .collect();
    plan.allocate.retain(|c| !derived.contains(c));
    if include_orphans {
        let released: BTreeSet<_> = plan.release.iter().copied().collect();
        // A parent is kept until its children are derived from it, and a copy being
        // moved here is kept while its move runs.
        let mut kept: BTreeSet<_> = plan
            .derive
            .iter()
            .flat_map(|d| d.sources.iter().copied())
            .collect();
        kept.extend(state.running_operations().filter_map(|op| match op.kind {
            OperationKind::Move { to, .. } if to == node_id => Some(op.partition_id),
            _ => None,
        }));
        plan.drop_orphans = local
            .iter()
            .filter(|pid| !assigned.contains(pid) && !released.contains(pid) && !kept.contains(pid))
            .copied()
            .collect();
    }
    plan
}

/// Whether the metadata records incarnation `incarnation` of `node_id` as FAILED: an
/// agent that keeps running then rejoins as a new incarnation (a failed node comes back
/// as a new one, never as the one declared dead).
pub fn incarnation_failed(state: &MetaState, node_id: NodeId, incarnation: u64) -> bool {
    state
        .node(node_id)
        .is_some_and(|n| n.status == NodeStatus::Failed && n.incarnation == incarnation)
}

/// Whether the metadata records `node_id` at `incarnation` or a later one.
pub fn registered(state: &MetaState, node_id: NodeId, incarnation: u64) -> bool {
    state
        .node(node_id)
        .is_some_and(|n| n.incarnation >= incarnation)
}

/// What the leader does with a node that joins with an empty data dir (new, or wiped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmptyJoin {
    /// Add it: the metadata credits it with no data (a new node, or one whose former
    /// partitions were all moved away).
    Admit,
    /// The metadata still credits its last incarnation with partition copies it lost:
    /// fail that incarnation first, so recovery replaces them.
    FailFirst {
        /// The incarnation to fail.
        incarnation: u64,
    },
    /// Its former incarnation is FAILED and recovery has not moved all its partitions
    /// yet (those with no other copy wait for an operator to remove the node).
    WaitForRecovery {
        /// Partitions still placed on it.
        partitions: usize,
    },
}

/// Decides how a node joining with an empty data dir is taken in. Registering it at once
/// would make it HEALTHY again while the metadata still places partition copies on it
/// that it no longer has: nothing would replace them.
pub fn empty_join(state: &MetaState, node_id: NodeId) -> EmptyJoin {
    let Some(node) = state.node(node_id) else {
        return EmptyJoin::Admit;
    };
    let partitions = state
        .partitions()
        .filter(|p| p.all_nodes().any(|n| n == node_id))
        .count();
    match node.status {
        _ if partitions == 0 => EmptyJoin::Admit,
        NodeStatus::Healthy | NodeStatus::Suspected | NodeStatus::Draining => {
            EmptyJoin::FailFirst {
                incarnation: node.incarnation,
            }
        }
        NodeStatus::Failed => EmptyJoin::WaitForRecovery { partitions },
        NodeStatus::Decommissioned => EmptyJoin::Admit,
    }
}

/// The epoch at which `node_id`'s copy of `pid` must be filled from its primary before
/// it counts as ready, or `None` when it holds its data already. Epoch 1 is a new
/// table's first placement: every copy starts empty together and no write is taken
/// before all are ready. A later member came with a repair or a move: while other
/// members already serve, it is empty until its primary fills it, and its report is
/// refused if the partition moved on from that epoch meanwhile.
pub fn fill_epoch(state: &MetaState, node_id: NodeId, pid: PartitionId) -> Option<u64> {
    state
        .partition(pid)
        .filter(|p| {
            p.epoch > 1
                && p.primary_node_id != node_id
                && p.ready_node_ids.iter().any(|&n| n != node_id)
        })
        .map(|p| p.epoch)
}

/// The committed splits and merges whose sources are all stored here and some of whose
/// results are to be allocated here: those come from the local data, not empty.
pub fn local_derivations(
    state: &MetaState,
    local: &BTreeSet<PartitionId>,
    to_allocate: &[PartitionId],
) -> Vec<LocalDerivation> {
    state
        .operations()
        .filter_map(|op| {
            let d = op.derivation()?;
            if !d.sources.iter().all(|s| local.contains(s)) {
                return None;
            }
            let children: Vec<(PartitionId, KeyRange)> = d
                .children
                .into_iter()
                .filter(|c| to_allocate.contains(c))
                .filter_map(|c| Some((c, state.partition(c)?.range)))
                .collect();
            (!children.is_empty()).then_some(LocalDerivation {
                sources: d.sources,
                children,
            })
        })
        .collect()
}

/// Honest estimate of a capacity change: recording it takes a couple of commit rounds;
/// each partition to create or remove adds one split or merge round.
pub fn estimate_scaling_seconds(current_partitions: u32, target_partitions: u32) -> u64 {
    const BASE_SECONDS: u64 = 1;
    const SECONDS_PER_PARTITION_CHANGE: u64 = 5;
    BASE_SECONDS
        + u64::from(current_partitions.abs_diff(target_partitions)) * SECONDS_PER_PARTITION_CHANGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{cluster, create_table, provisioned};

    const NOW: u64 = 1_000;

    fn cfg() -> AssignerConfig {
        AssignerConfig {
            placement: PlacementConfig::default(),
            delete_release_timeout_ms: 10_000,
            merges: true,
        }
    }

    fn state_with_nodes(n: usize) -> MetaState {
        let zones = ["z1", "z2", "z0"];
        let zones: Vec<&str> = (0..n).map(|i| zones[i % zones.len()]).collect();
        cluster(&zones)
    }

    fn create(s: &mut MetaState, name: &str, wcu: u64) -> u64 {
        create_table(s, name, provisioned(1, wcu))
    }

    #[test]
    fn an_empty_node_holding_copies_is_failed_first_then_waits_for_recovery() {
        let mut s = state_with_nodes(3);
        create(&mut s, "orders", 100);
        drive(&mut s, NOW, &BTreeSet::new());
        assert_eq!(empty_join(&s, 99), EmptyJoin::Admit, "a new node");
        let incarnation = s.node(1).unwrap().incarnation;
        assert_eq!(empty_join(&s, 1), EmptyJoin::FailFirst { incarnation });
        let fail = MetaCommand::NodeFailed {
            node_id: 1,
            incarnation,
            now_ms: NOW,
        };
        s.apply(&fail).unwrap();
        assert!(matches!(
            empty_join(&s, 1),
            EmptyJoin::WaitForRecovery { partitions } if partitions > 0
        ));
    }

    /// Applies every assigner action and every node's reconcile reports until quiet.
    fn drive(s: &mut MetaState, now: u64, unreachable: &BTreeSet<NodeId>) {
        for _ in 0..50 {
            let mut progressed = false;
            for action in assigner_actions(s, &cfg(), now, unreachable) {
                progressed |= s.apply(&action.command).is_ok();
            }
            let nodes: Vec<NodeId> = s
                .nodes()
                .map(|n| n.node_id)
                .filter(|n| !unreachable.contains(n))
                .collect();
            for node in nodes {
                let plan = reconcile_plan(s, node, &BTreeSet::new(), false);
                if !plan.report_ready.is_empty() {
                    let cmd = MetaCommand::PartitionsReady {
                        node_id: node,
                        partition_ids: plan.report_ready,
                    };
                    progressed |= s.apply(&cmd).is_ok();
                }
                if !plan.release.is_empty() {
                    let cmd = MetaCommand::PartitionsReleased {
                        node_id: node,
                        partition_ids: plan.release,
                    };
                    progressed |= s.apply(&cmd).is_ok();
                }
            }
            if !progressed {
                return;
            }
        }
    }

    #[test]
    fn a_table_goes_creating_assigned_ready_active() {
        let mut s = state_with_nodes(5);
        let id = create(&mut s, "orders", 3000);
        let actions = assigner_actions(&s, &cfg(), NOW, &BTreeSet::new());
        assert!(matches!(
            actions[..],
            [AssignerAction {
                command: MetaCommand::AssignPartitions { .. },
                ..
            }]
        ));
        drive(&mut s, NOW, &BTreeSet::new());
        assert_eq!(s.table(id).unwrap().status, TableStatus::Active);
        assert_eq!(s.partitions_of(id).len(), 3);
        assert!(
            assigner_actions(&s, &cfg(), NOW, &BTreeSet::new()).is_empty(),
            "nothing left to do"
        );
    }

    #[test]
    fn unreachable_nodes_get_no_partitions_and_block_nothing() {
        let mut s = state_with_nodes(4);
        let id = create(&mut s, "orders", 5000);
        let down = BTreeSet::from([2]);
        drive(&mut s, NOW, &down);
        assert_eq!(s.table(id).unwrap().status, TableStatus::Active);
        assert!(
            s.partitions_of(id)
                .iter()
                .all(|p| p.all_nodes().all(|n| n != 2))
        );
    }

    #[test]
    fn delete_purges_once_released_or_after_the_timeout() {
        let mut s = state_with_nodes(3);
        let a = create(&mut s, "aaa", 1000);
        let b = create(&mut s, "bbb", 1000);
        drive(&mut s, NOW, &BTreeSet::new());
        let delete = |name: &str| MetaCommand::DeleteTable {
            table_name: name.into(),
            now_ms: NOW,
        };
        s.apply(&delete("aaa")).unwrap();
        drive(&mut s, NOW, &BTreeSet::new());
        assert!(s.table(a).is_none(), "released everywhere: purged at once");
        // Node 3 holds a replica of every partition (3 nodes, 3 replicas) and is down.
        s.apply(&delete("bbb")).unwrap();
        drive(&mut s, NOW, &BTreeSet::from([3]));
        assert_eq!(
            s.table(b).unwrap().status,
            TableStatus::Deleting,
            "waits for node 3"
        );
        drive(
            &mut s,
            NOW + cfg().delete_release_timeout_ms,
            &BTreeSet::from([3]),
        );
        assert!(s.table(b).is_none(), "purged after the timeout");
    }

    #[test]
    fn a_burst_of_new_tables_is_placed_one_by_one_and_spread() {
        let mut s = state_with_nodes(6);
        for i in 0..6 {
            create(&mut s, &format!("table{i}"), 1000);
        }
        let actions = assigner_actions(&s, &cfg(), NOW, &BTreeSet::new());
        let assigns = actions
            .iter()
            .filter(|a| matches!(a.command, MetaCommand::AssignPartitions { .. }))
            .count();
        assert_eq!(assigns, 1, "one placement per call");
        drive(&mut s, NOW, &BTreeSet::new());
        let primaries: BTreeSet<_> = s.partitions().map(|p| p.primary_node_id).collect();
        assert_eq!(
            primaries.len(),
            6,
            "six one-partition tables, six primaries"
        );
    }

    #[test]
    fn reconcile_allocates_reports_releases_and_drops_orphans_only_when_caught_up() {
        let mut s = state_with_nodes(3);
        let id = create(&mut s, "ttt", 1000);
        drive(&mut s, NOW, &BTreeSet::new());
        let pid = s.partitions_of(id)[0].partition_id;
        let local = BTreeSet::from([pid, 999]);
        let plan = reconcile_plan(&s, 1, &local, false);
        assert!(
            plan.is_empty(),
            "allocated and reported; orphans kept while catching up: {plan:?}"
        );
        let plan = reconcile_plan(&s, 1, &local, true);
        assert_eq!(plan.drop_orphans, vec![999]);
        let plan = reconcile_plan(&s, 1, &BTreeSet::new(), true);
        assert_eq!(plan.allocate, vec![pid]);
        s.apply(&MetaCommand::DeleteTable {
            table_name: "ttt".into(),
            now_ms: NOW,
        })
        .unwrap();
        let plan = reconcile_plan(&s, 1, &local, true);
        assert_eq!((plan.release, plan.drop_orphans), (vec![pid], vec![999]));
    }

    #[test]
    fn split_children_are_derived_from_the_local_parent_which_is_kept_until_then() {
        let mut s = state_with_nodes(3);
        let id = create(&mut s, "ttt", 1000);
        drive(&mut s, NOW, &BTreeSet::new());
        let parent = s.partitions_of(id)[0].clone();
        let op = match s
            .apply(&MetaCommand::StartOperation {
                partition_id: parent.partition_id,
                kind: crate::model::OperationKind::Split { split_point: None },
                requested_by: "test".into(),
                now_ms: NOW,
            })
            .unwrap()
        {
            crate::command::MetaOutcome::OperationStarted { operation_id } => operation_id,
            other => panic!("unexpected {other:?}"),
        };
        for step in [
            crate::model::OperationStep::Preparing,
            crate::model::OperationStep::Fencing,
        ] {
            let _ = s.apply(&MetaCommand::AdvanceOperation {
                operation_id: op,
                step,
                progress: None,
                now_ms: NOW,
            });
        }
        let split_point = 1u64 << 63;
        s.apply(&MetaCommand::SplitPartition {
            operation_id: Some(op),
            parent: parent.partition_id,
            split_point,
            expected_epoch: parent.epoch,
            now_ms: NOW,
        })
        .unwrap();
        let result = s.operation(op).unwrap().split.unwrap();
        let node = parent.primary_node_id;
        let local = BTreeSet::from([parent.partition_id]);
        let plan = reconcile_plan(&s, node, &local, true);
        assert!(plan.allocate.is_empty(), "children are not allocated empty");
        assert!(plan.drop_orphans.is_empty(), "the parent is kept: {plan:?}");
        assert_eq!(plan.derive.len(), 1);
        let d = &plan.derive[0];
        assert_eq!(d.sources, vec![parent.partition_id]);
        let children: Vec<_> = d.children.iter().map(|(c, _)| *c).collect();
        assert_eq!(children, vec![result.left, result.right]);
        assert_eq!(d.children[1].1.low, split_point);
        // Once derived, the parent is an orphan like any other.
        let local = BTreeSet::from([parent.partition_id, result.left, result.right]);
        let plan = reconcile_plan(&s, node, &local, true);
        assert!(plan.derive.is_empty());
        assert_eq!(plan.drop_orphans, vec![parent.partition_id]);
        // Without the parent (a node that lost it), children are allocated empty.
        let plan = reconcile_plan(&s, node, &BTreeSet::new(), true);
        assert_eq!(plan.allocate, vec![result.left, result.right]);

        // Merging the children back: the merged partition comes from both, kept until.
        let op = match s
            .apply(&MetaCommand::StartOperation {
                partition_id: result.left,
                kind: crate::model::OperationKind::Merge {
                    right: result.right,
                },
                requested_by: "test".into(),
                now_ms: NOW,
            })
            .unwrap()
        {
            crate::command::MetaOutcome::OperationStarted { operation_id } => operation_id,
            other => panic!("unexpected {other:?}"),
        };
        s.apply(&MetaCommand::AdvanceOperation {
            operation_id: op,
            step: crate::model::OperationStep::Fencing,
            progress: None,
            now_ms: NOW,
        })
        .unwrap();
        let epoch = parent.epoch + 1;
        let merged = match s
            .apply(&MetaCommand::MergePartitions {
                operation_id: op,
                left: result.left,
                right: result.right,
                expected_epochs: (epoch, epoch),
                now_ms: NOW,
            })
            .unwrap()
        {
            crate::command::MetaOutcome::PartitionsMerged { merged } => merged,
            other => panic!("unexpected {other:?}"),
        };
        let local = BTreeSet::from([result.left, result.right]);
        let plan = reconcile_plan(&s, node, &local, true);
        assert!(
            plan.allocate.is_empty() && plan.drop_orphans.is_empty(),
            "{plan:?}"
        );
        assert_eq!(
            plan.derive,
            vec![LocalDerivation {
                sources: vec![result.left, result.right],
                children: vec![(merged, parent.range)],
            }]
        );
        // With one side only, the merged copy is allocated and filled by its primary.
        let plan = reconcile_plan(&s, node, &BTreeSet::from([result.left]), true);
        assert_eq!((plan.allocate, plan.derive), (vec![merged], vec![]));
    }

    #[test]
    fn a_capacity_decrease_stays_scaling_for_the_scaler_only_when_merges_are_on() {
        let mut s = state_with_nodes(3);
        let id = create(&mut s, "ttt", 3000);
        drive(&mut s, NOW, &BTreeSet::new());
        assert_eq!(s.partitions_of(id).len(), 3);
        s.apply(&MetaCommand::UpdateCapacity {
            table_name: "ttt".into(),
            capacity: provisioned(1, 1000),
            now_ms: NOW,
        })
        .unwrap();
        let none = BTreeSet::new();
        assert!(assigner_actions(&s, &cfg(), NOW, &none).is_empty());
        let no_merges = AssignerConfig {
            merges: false,
            ..cfg()
        };
        let actions = assigner_actions(&s, &no_merges, NOW, &none);
        assert!(matches!(
            actions[..],
            [AssignerAction {
                command: MetaCommand::ActivateTable { .. },
                ..
            }]
        ));
    }

    #[test]
    fn operations_on_a_deleting_table_are_ended_so_the_purge_can_follow() {
        let mut s = state_with_nodes(4);
        let id = create(&mut s, "ttt", 1000);
        drive(&mut s, NOW, &BTreeSet::new());
        let p = s.partitions_of(id)[0].clone();
        let to = (1..=4).find(|n| !p.all_nodes().any(|m| m == *n)).unwrap();
        s.apply(&MetaCommand::StartOperation {
            partition_id: p.partition_id,
            kind: OperationKind::Move {
                from: p.primary_node_id,
                to,
            },
            requested_by: "test".into(),
            now_ms: NOW,
        })
        .unwrap();
        s.apply(&MetaCommand::DeleteTable {
            table_name: "ttt".into(),
            now_ms: NOW,
        })
        .unwrap();
        let later = NOW + cfg().delete_release_timeout_ms;
        let actions = assigner_actions(&s, &cfg(), later, &BTreeSet::new());
        assert!(
            matches!(
                &actions[..],
                [AssignerAction {
                    command: MetaCommand::FinishOperation {
                        status: OperationStatus::RolledBack,
                        ..
                    },
                    ..
                }]
            ),
            "{actions:?}"
        );
        for a in &actions {
            s.apply(&a.command).unwrap();
        }
        let actions = assigner_actions(&s, &cfg(), later, &BTreeSet::new());
        assert!(matches!(
            actions[..],
            [AssignerAction {
                command: MetaCommand::PurgeTable { .. },
                ..
            }]
        ));
    }

    #[test]
    fn scaling_estimate_grows_with_partition_changes() {
        assert_eq!(estimate_scaling_seconds(4, 4), 1);
        assert!(estimate_scaling_seconds(4, 8) > estimate_scaling_seconds(4, 5));
        assert_eq!(
            estimate_scaling_seconds(8, 4),
            estimate_scaling_seconds(4, 8)
        );
    }

    #[test]
    fn a_failed_incarnation_is_given_up_and_a_later_one_counts_as_registered() {
        // testkit registers node 1 at incarnation 1.
        let mut s = state_with_nodes(3);
        assert!(registered(&s, 1, 1) && !registered(&s, 1, 2) && !registered(&s, 9, 1));
        assert!(!incarnation_failed(&s, 1, 1));
        s.apply(&MetaCommand::NodeFailed {
            node_id: 1,
            incarnation: 1,
            now_ms: NOW,
        })
        .unwrap();
        assert!(incarnation_failed(&s, 1, 1));
        assert!(
            !incarnation_failed(&s, 1, 2),
            "a newer incarnation is not the failed one"
        );
    }
}
