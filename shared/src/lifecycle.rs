//! Pure decisions of the table lifecycle: what the leader's Partition Assigner commits
//! next, and what one agent's reconciler must do to its local partition storage.

use std::collections::BTreeSet;

use crate::command::MetaCommand;
use crate::model::{NodeId, PartitionId, TableStatus, UnixMillis};
use crate::placement::{PlacementConfig, plan_new_table};
use crate::state::MetaState;

/// Settings of the Partition Assigner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignerConfig {
    /// Placement of new tables.
    pub placement: PlacementConfig,
    /// A DELETING table is purged after this long even if some node never released.
    pub delete_release_timeout_ms: u64,
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
/// CREATING without partitions → `AssignPartitions`; CREATING (all ready) or SCALING →
/// `ActivateTable`; DELETING and released everywhere (or timed out) → `PurgeTable`.
/// No partition is placed on a node in `unreachable` (the leader's own liveness view).
pub fn assigner_actions(
    state: &MetaState,
    cfg: &AssignerConfig,
    now_ms: UnixMillis,
    unreachable: &BTreeSet<NodeId>,
) -> Vec<AssignerAction> {
    let mut actions = Vec::new();
    for table in state.tables() {
        let partitions = state.partitions_of(table.table_id);
        let command = match table.status {
            TableStatus::Creating if partitions.is_empty() => {
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
            TableStatus::Scaling => Some(activate(table.table_id, now_ms)),
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
}

impl ReconcilePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.allocate.is_empty()
            && self.report_ready.is_empty()
            && self.release.is_empty()
            && self.drop_orphans.is_empty()
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
    if include_orphans {
        let released: BTreeSet<_> = plan.release.iter().copied().collect();
        plan.drop_orphans = local
            .iter()
            .filter(|pid| !assigned.contains(pid) && !released.contains(pid))
            .copied()
            .collect();
    }
    plan
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

    /// Applies every assigner action and every node's reconcile reports until quiet.
    fn drive(s: &mut MetaState, now: u64, unreachable: &BTreeSet<NodeId>) {
        for _ in 0..10 {
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
    fn scaling_estimate_grows_with_partition_changes() {
        assert_eq!(estimate_scaling_seconds(4, 4), 1);
        assert!(estimate_scaling_seconds(4, 8) > estimate_scaling_seconds(4, 5));
        assert_eq!(
            estimate_scaling_seconds(8, 4),
            estimate_scaling_seconds(4, 8)
        );
    }
}
