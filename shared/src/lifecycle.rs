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
pub fn assigner_actions(
    state: &MetaState,
    cfg: &AssignerConfig,
    now_ms: UnixMillis,
) -> Vec<AssignerAction> {
    let mut actions = Vec::new();
    for table in state.tables() {
        let partitions = state.partitions_of(table.table_id);
        let command = match table.status {
            TableStatus::Creating if partitions.is_empty() => {
                match plan_new_table(state, table.table_id, &cfg.placement) {
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
