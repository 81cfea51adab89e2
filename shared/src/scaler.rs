//! The Scaler's pure planner: which partitions to split (hot, large, or for a capacity
//! change), which adjacent cold partitions to merge, and which copies to migrate (one
//! child of a hot split, and the scale-out moves of `plan_rebalance`), within the
//! concurrency limits. The leader's Scaler task gathers the inputs, calls
//! `plan_scaler` each round, and starts one operation per action.
//!
//! # Rules
//!
//! - **Hot**: a partition whose load stayed above its threshold for the whole hot
//!   window is split. *Sustained* means every valid sample of the last
//!   `hot_window_ms` is above the threshold and the samples cover the window (no gap
//!   longer than `max_sample_gap_ms`, counting from the window's start and up to
//!   `now`): a spike, or a partition observed for less than the window (a fresh child)
//!   is not hot. The threshold of a PROVISIONED table is `hot_threshold_percent` of the
//!   partition's share of the table's capacity (`(read_units + write_units) / its
//!   partition count`, one unit taken as one op/s); an ON_DEMAND table has a fixed
//!   per-partition limit. Either way a partition below `hot_min_ops_per_sec` is never
//!   hot: the share shrinks with every split, so a table that uses more than its
//!   provisioned capacity would otherwise be split until its partitions are idle.
//! - **Hot child**: after a hot split (reported in `hot_split_children`), the busier
//!   child's primary copy moves to the least-loaded usable node that does not reduce
//!   the partition's zone spread, if that lowers the load of the busier of the two
//!   nodes (node load: the latest load of the partitions it leads). It waits for a
//!   first load report of the children; once the move is planned, or is no longer
//!   worth it, or the children are gone, or the pair is older than
//!   `child_move_deadline_ms`, the pair is *settled* (the caller forgets it).
//! - **Large**: a partition above `max_partition_size_bytes` is split.
//! - **Capacity**: a table in SCALING, or ACTIVE with fewer partitions than its
//!   capacity needs (`placement::partition_count`), has its busiest (then largest,
//!   then widest) partitions split until the count, counting splits running or
//!   planned, reaches the target. Each partition splits at most once per round, so
//!   the count at most doubles per round: `c` to `t` takes at least `log2(t / c)`.
//! - **Merge** (only with `merge_cold_partitions`): a SCALING table with more
//!   partitions than its capacity needs merges adjacent partitions whose combined load
//!   (the highest samples of a covered window) and size stay under
//!   `merge_max_load_percent` and `merge_max_size_percent` of what one partition may
//!   carry, so that the merged partition is neither hot nor large. A merge is an
//!   in-place operation like a split (no data moves between nodes), so it needs both
//!   partitions held by the same primary and replicas: a pair that is not gets one
//!   co-location step per round first (a move of one of the right partition's copies
//!   onto a node of the left one, then a primary hand-over), pairs needing the fewest
//!   steps first, never more pairs than merges needed. While a table merges, scale-out
//!   moves wait (they would spread the pairs again). When no pair can merge any more
//!   the table is `complete` in `ScalerPlan::scaling`, and the caller activates it.
//! - **Scale-out**: `plan_rebalance` (with `rebalance.tolerance` as the imbalance
//!   tolerance, or none while a usable node holds nothing: it just joined, or came back
//!   after a failure and owns nothing until the Scaler gives it work) gives replica
//!   moves, turned into `Move` actions; its primary handovers are only issued once it
//!   plans no replica move, as the plan counts them as done after the migrations.
//!
//! # Limits
//!
//! At most one action per partition per round; never one on a partition that has a
//! running operation (or is not HEALTHY, not ready, of a table neither ACTIVE nor
//! SCALING, or with a member not HEALTHY or unreachable). A migration occupies a slot on
//! its source and on its target: no node takes part in more than
//! `max_migrations_per_node` migrations and the cluster runs no more than
//! `max_migrations_per_cluster`, counting the running ones; splits and merges together
//! are capped by `max_in_place_ops_per_cluster`. A limit already exceeded (e.g. by an
//! operator) only stops new actions. `plan_rebalance` plans from the committed
//! placement and cannot see migrations in flight, so its moves that touch a node with a
//! migration running (or planned this round) wait for the next round rather than
//! double-book it.
//!
//! # Order
//!
//! Deterministic: equal inputs give equal plans, whatever the order of the samples,
//! of the running operations or of the hot-split children. Splits and merges come
//! first, by pressure: hot (by load over threshold), then large (by size over the
//! limit), then capacity splits (table by table), then merges; migrations follow:
//! hot children (busiest first), then scale-out moves in the planner's order, then
//! primary handovers. When a limit is reached, what comes later waits for a later
//! round (counted in `ScalerPlan::deferred`).

mod load;
mod plan;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{NodeId, Operation, OperationKind, PartitionId, TableId, UnixMillis};
use crate::placement::PlacementConfig;
use crate::rebalance::RebalanceConfig;
use crate::state::MetaState;
use crate::validate::MAX_PARTITIONS_PER_TABLE;

/// Default length of the window a partition must stay hot throughout: 60 s.
pub const DEFAULT_HOT_WINDOW_MS: u64 = 60_000;
/// Default longest silence between load samples that still covers a window: 15 s. The
/// agents report 10-second means every few seconds; a longer silence is missing data.
pub const DEFAULT_MAX_SAMPLE_GAP_MS: u64 = 15_000;
/// Default hot threshold: 110% of the partition's share of the provisioned capacity.
pub const DEFAULT_HOT_THRESHOLD_PERCENT: u64 = 110;
/// Default load below which no partition is hot, whatever its share: 100 ops/s.
pub const DEFAULT_HOT_MIN_OPS_PER_SEC: u64 = 100;
/// Default per-partition limit of ON_DEMAND tables: 4,000 ops/s (a partition's 3,000
/// reads and 1,000 writes per second in DynamoDB's model).
pub const DEFAULT_ON_DEMAND_PARTITION_OPS_LIMIT: u64 = 4_000;
/// Default size above which a partition is split: 10 GiB.
pub const DEFAULT_MAX_PARTITION_SIZE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Default most migrations one node takes part in at once (as source or target): 2, so
/// that copies never starve the node's foreground traffic.
pub const DEFAULT_MAX_MIGRATIONS_PER_NODE: usize = 2;
/// Default most migrations running in the cluster at once: 8.
pub const DEFAULT_MAX_MIGRATIONS_PER_CLUSTER: usize = 8;
/// Default most splits and merges running in the cluster at once: 8 (each fences
/// writes to its partition for a Raft round trip).
pub const DEFAULT_MAX_IN_PLACE_OPS_PER_CLUSTER: usize = 8;
/// Default highest load of a merged partition, in percent of what one partition may
/// carry: 50, far enough below the hot threshold that a merge is not split back.
pub const DEFAULT_MERGE_MAX_LOAD_PERCENT: u64 = 50;
/// Default highest size of a merged partition, in percent of the split size: 50.
pub const DEFAULT_MERGE_MAX_SIZE_PERCENT: u64 = 50;
/// Default time after a hot split past which its child move is no longer planned: 10
/// min. Past it the load has been re-observed for many windows, and a still hot child
/// is split again by the hot rule.
pub const DEFAULT_CHILD_MOVE_DEADLINE_MS: u64 = 600_000;
/// Default estimate of one split or merge, end to end: 2 s.
pub const DEFAULT_SPLIT_ESTIMATE_MS: u64 = 2_000;
/// Default estimate of one migration, end to end: 60 s.
pub const DEFAULT_MIGRATION_ESTIMATE_MS: u64 = 60_000;
/// Default time between two Scaler rounds: 5 s (a wave of operations is noticed done
/// and the next one planned up to this much later).
pub const DEFAULT_PLANNING_INTERVAL_MS: u64 = 5_000;

/// Tunables of the Scaler; `check` turns them into a `CheckedScalerConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerConfig {
    /// Window a partition must stay above its threshold throughout to be hot.
    pub hot_window_ms: u64,
    /// Longest silence between samples that still covers a window.
    pub max_sample_gap_ms: u64,
    /// Hot threshold, in percent of the partition's share of its table's capacity.
    pub hot_threshold_percent: u64,
    /// Load below which no partition is hot, whatever its share.
    pub hot_min_ops_per_sec: u64,
    /// Hot threshold of a partition of an ON_DEMAND table.
    pub on_demand_partition_ops_limit: u64,
    /// Size above which a partition is split.
    pub max_partition_size_bytes: u64,
    /// Most partitions a table may reach by splits.
    pub max_partitions_per_table: usize,
    /// Most migrations one node takes part in at once (source or target).
    pub max_migrations_per_node: usize,
    /// Most migrations in the cluster at once.
    pub max_migrations_per_cluster: usize,
    /// Most splits and merges in the cluster at once.
    pub max_in_place_ops_per_cluster: usize,
    /// Whether a capacity decrease merges adjacent cold partitions.
    pub merge_cold_partitions: bool,
    /// Highest combined load of two partitions to merge, in percent of one's capacity.
    pub merge_max_load_percent: u64,
    /// Highest combined size of two partitions to merge, in percent of the split size.
    pub merge_max_size_percent: u64,
    /// Age of a hot split past which its child is no longer moved.
    pub child_move_deadline_ms: u64,
    /// Estimate of one split or merge, for `estimated_completion_seconds`.
    pub split_estimate_ms: u64,
    /// Estimate of one migration, for `estimated_completion_seconds`.
    pub migration_estimate_ms: u64,
    /// Time between two rounds of the Scaler, for `estimated_completion_seconds`.
    pub planning_interval_ms: u64,
    /// Scale-out planner settings; `tolerance` is the imbalance tolerance.
    pub rebalance: RebalanceConfig,
    /// Placement settings; gives the partition count a capacity needs.
    pub placement: PlacementConfig,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            hot_window_ms: DEFAULT_HOT_WINDOW_MS,
            max_sample_gap_ms: DEFAULT_MAX_SAMPLE_GAP_MS,
            hot_threshold_percent: DEFAULT_HOT_THRESHOLD_PERCENT,
            hot_min_ops_per_sec: DEFAULT_HOT_MIN_OPS_PER_SEC,
            on_demand_partition_ops_limit: DEFAULT_ON_DEMAND_PARTITION_OPS_LIMIT,
            max_partition_size_bytes: DEFAULT_MAX_PARTITION_SIZE_BYTES,
            max_partitions_per_table: MAX_PARTITIONS_PER_TABLE,
            max_migrations_per_node: DEFAULT_MAX_MIGRATIONS_PER_NODE,
            max_migrations_per_cluster: DEFAULT_MAX_MIGRATIONS_PER_CLUSTER,
            max_in_place_ops_per_cluster: DEFAULT_MAX_IN_PLACE_OPS_PER_CLUSTER,
            merge_cold_partitions: true,
            merge_max_load_percent: DEFAULT_MERGE_MAX_LOAD_PERCENT,
            merge_max_size_percent: DEFAULT_MERGE_MAX_SIZE_PERCENT,
            child_move_deadline_ms: DEFAULT_CHILD_MOVE_DEADLINE_MS,
            split_estimate_ms: DEFAULT_SPLIT_ESTIMATE_MS,
            migration_estimate_ms: DEFAULT_MIGRATION_ESTIMATE_MS,
            planning_interval_ms: DEFAULT_PLANNING_INTERVAL_MS,
            rebalance: RebalanceConfig::default(),
            placement: PlacementConfig::default(),
        }
    }
}

/// Why a Scaler configuration is unusable. Checking never changes anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalerConfigError {
    /// A window, limit or size that must be positive is 0.
    #[error("{field} must be greater than 0")]
    Zero {
        /// Name of the field.
        field: &'static str,
    },
    /// Samples further apart than the window could never show a sustained load.
    #[error("max_sample_gap_ms ({gap_ms}) must not exceed hot_window_ms ({window_ms})")]
    GapLongerThanWindow {
        /// The configured gap.
        gap_ms: u64,
        /// The configured window.
        window_ms: u64,
    },
    /// A threshold below the share would call a partition hot at its fair load.
    #[error("hot_threshold_percent ({0}) must be at least 100")]
    ThresholdBelowShare(u64),
    /// A merged partition must stay below the split limits, or it would be split back.
    #[error("{field} ({value}) must be between 1 and 99")]
    MergeLimitOutOfRange {
        /// Name of the field.
        field: &'static str,
        /// The configured value.
        value: u64,
    },
    /// More partitions than the state machine accepts for one table.
    #[error("max_partitions_per_table ({0}) exceeds the limit of {MAX_PARTITIONS_PER_TABLE}")]
    TooManyPartitions(usize),
}

impl ScalerConfig {
    /// Checks every field and returns the configuration as a `CheckedScalerConfig`.
    pub fn check(self) -> Result<CheckedScalerConfig, ScalerConfigError> {
        let positive = [
            ("hot_window_ms", self.hot_window_ms),
            ("max_sample_gap_ms", self.max_sample_gap_ms),
            (
                "on_demand_partition_ops_limit",
                self.on_demand_partition_ops_limit,
            ),
            ("max_partition_size_bytes", self.max_partition_size_bytes),
            (
                "max_partitions_per_table",
                self.max_partitions_per_table as u64,
            ),
            (
                "max_migrations_per_node",
                self.max_migrations_per_node as u64,
            ),
            (
                "max_migrations_per_cluster",
                self.max_migrations_per_cluster as u64,
            ),
            (
                "max_in_place_ops_per_cluster",
                self.max_in_place_ops_per_cluster as u64,
            ),
            ("planning_interval_ms", self.planning_interval_ms),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ScalerConfigError::Zero { field });
        }
        if self.max_sample_gap_ms > self.hot_window_ms {
            return Err(ScalerConfigError::GapLongerThanWindow {
                gap_ms: self.max_sample_gap_ms,
                window_ms: self.hot_window_ms,
            });
        }
        if self.hot_threshold_percent < 100 {
            return Err(ScalerConfigError::ThresholdBelowShare(
                self.hot_threshold_percent,
            ));
        }
        let merge = [
            ("merge_max_load_percent", self.merge_max_load_percent),
            ("merge_max_size_percent", self.merge_max_size_percent),
        ];
        if let Some(&(field, value)) = merge.iter().find(|(_, v)| !(1..100).contains(v)) {
            return Err(ScalerConfigError::MergeLimitOutOfRange { field, value });
        }
        if self.max_partitions_per_table > MAX_PARTITIONS_PER_TABLE {
            return Err(ScalerConfigError::TooManyPartitions(
                self.max_partitions_per_table,
            ));
        }
        Ok(CheckedScalerConfig(self))
    }

    /// The per-operation estimates these settings imply.
    pub fn op_estimates(&self) -> OpEstimates {
        OpEstimates {
            split_ms: self.split_estimate_ms,
            migration_ms: self.migration_estimate_ms,
            planning_interval_ms: self.planning_interval_ms,
            concurrent_splits: self.max_in_place_ops_per_cluster,
            concurrent_migrations: self.max_migrations_per_cluster,
        }
    }
}

/// A `ScalerConfig` that passed `ScalerConfig::check`. Its `Default` holds the default
/// settings, which pass every check (a unit test holds them to it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckedScalerConfig(ScalerConfig);

impl CheckedScalerConfig {
    /// The checked settings.
    pub fn get(&self) -> &ScalerConfig {
        &self.0
    }
}

/// One observation of a partition's load, as its primary reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// When it was observed (leader's clock, like `now_ms`).
    pub at_ms: UnixMillis,
    /// Operations per second served (reads and writes); negative or non-finite values
    /// are invalid and ignored.
    pub ops_per_sec: f64,
}

/// What the leader observed of one partition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartitionLoad {
    /// Load samples, in any order.
    pub samples: Vec<LoadSample>,
    /// Size of the partition's data on its primary.
    pub size_bytes: u64,
}

/// An operation already running, as the Scaler needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunningOp {
    /// A split of the partition.
    Split {
        /// The partition being split.
        partition_id: PartitionId,
    },
    /// A merge of two adjacent partitions.
    Merge {
        /// The lower partition.
        left: PartitionId,
        /// The upper partition.
        right: PartitionId,
    },
    /// A migration of the copy held by `from` to `to`.
    Move {
        /// The partition whose copy moves.
        partition_id: PartitionId,
        /// Node giving up its copy.
        from: NodeId,
        /// Node receiving the copy.
        to: NodeId,
    },
    /// Any other operation that holds the partition (no slot counted).
    Other {
        /// The partition held.
        partition_id: PartitionId,
    },
}

impl RunningOp {
    /// The running operation a committed operation record stands for.
    pub fn from_operation(op: &Operation) -> RunningOp {
        match op.kind {
            OperationKind::Split { .. } => RunningOp::Split {
                partition_id: op.partition_id,
            },
            OperationKind::Move { from, to } => RunningOp::Move {
                partition_id: op.partition_id,
                from,
                to,
            },
            OperationKind::Merge { right } => RunningOp::Merge {
                left: op.partition_id,
                right,
            },
        }
    }

    /// The partitions the operation holds.
    pub fn partitions(&self) -> Vec<PartitionId> {
        match *self {
            RunningOp::Merge { left, right } => vec![left, right],
            RunningOp::Split { partition_id }
            | RunningOp::Move { partition_id, .. }
            | RunningOp::Other { partition_id } => vec![partition_id],
        }
    }
}

/// The operations running according to the metadata, oldest first: what the leader's
/// Scaler passes as `ScalerInput::running` (with any it started but not yet committed).
pub fn running_ops(state: &MetaState) -> Vec<RunningOp> {
    state
        .running_operations()
        .map(RunningOp::from_operation)
        .collect()
}

/// The two children of a completed hot split whose follow-up move is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SplitChildren {
    /// The lower child.
    pub left: PartitionId,
    /// The upper child.
    pub right: PartitionId,
    /// When the split committed (leader's clock).
    pub split_at_ms: UnixMillis,
}

/// Everything one round of the Scaler looks at.
#[derive(Debug, Clone, Copy)]
pub struct ScalerInput<'a> {
    /// The committed metadata: tables, partitions, nodes and their statuses.
    pub state: &'a MetaState,
    /// Observed load and size of each partition (a partition missing has no samples).
    pub loads: &'a BTreeMap<PartitionId, PartitionLoad>,
    /// Operations running now.
    pub running: &'a [RunningOp],
    /// Hot splits whose child move is pending (kept by the caller until settled).
    pub hot_split_children: &'a [SplitChildren],
    /// Nodes the leader cannot reach now: they neither receive nor give anything.
    pub unreachable: &'a BTreeSet<NodeId>,
    /// Now, on the leader's clock.
    pub now_ms: UnixMillis,
}

/// Why a partition is split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitReason {
    /// Its load stayed above its threshold for the whole hot window.
    Hot {
        /// Lowest load over the window.
        sustained_ops_per_sec: f64,
        /// The threshold it stayed above.
        threshold_ops_per_sec: f64,
    },
    /// It grew above the size limit.
    Large {
        /// Its size.
        size_bytes: u64,
        /// The limit.
        max_size_bytes: u64,
    },
    /// Its table has fewer partitions than its capacity needs.
    Capacity {
        /// Partitions of the table, counting splits and merges running or planned.
        partitions: usize,
        /// Partitions the capacity needs.
        target: usize,
    },
}

/// Why a copy is migrated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MoveReason {
    /// The busier child of a hot split leaves its parent's node.
    HotChild {
        /// The other child, which stays.
        sibling: PartitionId,
        /// The moved child's latest load.
        ops_per_sec: f64,
    },
    /// A scale-out move of the rebalancing planner.
    Rebalance,
    /// A copy brought onto the nodes of the adjacent partition it is to merge with.
    CoLocate {
        /// The partition whose nodes the copy joins.
        with: PartitionId,
    },
}

/// One decision of the Scaler; the caller starts one operation for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalerAction {
    /// Split the partition in place (the split point is chosen from its data).
    Split {
        /// The partition.
        partition_id: PartitionId,
        /// Its epoch when planned.
        expected_epoch: u64,
        /// Why.
        reason: SplitReason,
    },
    /// Merge two adjacent cold partitions held by the same nodes, in place.
    Merge {
        /// The lower partition.
        left: PartitionId,
        /// The upper partition.
        right: PartitionId,
        /// Epochs of `left` and `right` when planned.
        expected_epochs: (u64, u64),
        /// Partitions of the table (counting running and planned changes) and target.
        partitions: usize,
        /// Partitions the capacity needs.
        target: usize,
    },
    /// Migrate the copy held by `from` to `to` (the primary role follows the copy).
    Move {
        /// The partition.
        partition_id: PartitionId,
        /// Node giving up its copy.
        from: NodeId,
        /// Node receiving it (HEALTHY, reachable, not a member).
        to: NodeId,
        /// Its epoch when planned.
        expected_epoch: u64,
        /// Why.
        reason: MoveReason,
    },
    /// Hand the primary role to a ready replica (no data moves; scale-out only).
    HandOverPrimary {
        /// The partition.
        partition_id: PartitionId,
        /// Current primary.
        from: NodeId,
        /// The replica taking over.
        to: NodeId,
        /// Its epoch when planned.
        expected_epoch: u64,
    },
}

impl ScalerAction {
    /// The partitions the action operates on.
    pub fn partitions(&self) -> Vec<PartitionId> {
        match *self {
            ScalerAction::Merge { left, right, .. } => vec![left, right],
            ScalerAction::Split { partition_id, .. }
            | ScalerAction::Move { partition_id, .. }
            | ScalerAction::HandOverPrimary { partition_id, .. } => vec![partition_id],
        }
    }

    /// Source and target of a migration; `None` for other actions.
    pub fn migration(&self) -> Option<(NodeId, NodeId)> {
        match *self {
            ScalerAction::Move { from, to, .. } => Some((from, to)),
            _ => None,
        }
    }

    /// Whether the action is a split or a merge (capped together).
    pub fn is_in_place(&self) -> bool {
        matches!(
            self,
            ScalerAction::Split { .. } | ScalerAction::Merge { .. }
        )
    }
}

/// Progress of one SCALING table towards the partition count its capacity needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableScaling {
    /// The table.
    pub table_id: TableId,
    /// Its partitions now (committed).
    pub partitions: usize,
    /// Partitions its capacity needs.
    pub target: usize,
    /// Splits and merges on its partitions running or planned this round.
    pub in_flight: usize,
    /// Splits still needed beyond those.
    pub splits_remaining: usize,
    /// Merges possible and wanted but not planned this round (limits).
    pub merges_remaining: usize,
    /// Nothing left to do: the caller may activate the table.
    pub complete: bool,
    /// Honest estimate of the time until complete.
    pub estimated_completion_seconds: u64,
}

/// The decisions of one Scaler round.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScalerPlan {
    /// Actions to start, in order (see the module documentation).
    pub actions: Vec<ScalerAction>,
    /// Hot-split children whose move is done with (planned now, or no longer needed):
    /// the caller stops passing them.
    pub settled_children: Vec<SplitChildren>,
    /// Progress of every SCALING table, by table id.
    pub scaling: Vec<TableScaling>,
    /// Decisions held back by a limit or a busy node, for a later round.
    pub deferred: usize,
}

/// Plans one round of the Scaler (see the module documentation). Deterministic.
pub fn plan_scaler(input: &ScalerInput<'_>, cfg: &CheckedScalerConfig) -> ScalerPlan {
    plan::Round::new(input, cfg.get()).run()
}

/// How long operations take, for estimates (fill from measured durations when known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpEstimates {
    /// One split or merge, end to end.
    pub split_ms: u64,
    /// One migration, end to end.
    pub migration_ms: u64,
    /// Between two Scaler rounds: each wave is noticed done up to this late.
    pub planning_interval_ms: u64,
    /// Splits and merges that run at once.
    pub concurrent_splits: usize,
    /// Migrations that run at once.
    pub concurrent_migrations: usize,
}

/// Copy rate a migration's estimate assumes: 20 MB/s (the live-operation benchmark
/// measures 19 to 33 MB/s per move on loopback, whole moves).
pub const MIGRATION_BYTES_PER_SEC: u64 = 20_000_000;
/// Shortest estimate of one migration: 1 s (its steps' commits and round trips).
pub const MIN_MIGRATION_ESTIMATE_MS: u64 = 1_000;

/// Estimate of one migration of `bytes` at [`MIGRATION_BYTES_PER_SEC`].
pub fn migration_estimate_ms(bytes: u64) -> u64 {
    (bytes.saturating_mul(1000) / MIGRATION_BYTES_PER_SEC).max(MIN_MIGRATION_ESTIMATE_MS)
}

/// Seconds until a decrease of table `table_id` to `target` partitions is done: the
/// merge waves, plus the co-location moves of the pairs the planner takes first (at
/// even positions: the first with the second, ...), each copying at most
/// `largest_bytes`. Pairs beyond the first wave are assumed to need one move per copy.
pub fn decrease_completion_seconds(
    state: &MetaState,
    table_id: TableId,
    target: usize,
    largest_bytes: u64,
    est: &OpEstimates,
) -> u64 {
    let parts = state.partitions_of(table_id);
    let merges = parts.len().saturating_sub(target);
    let first_wave: Vec<usize> = parts
        .chunks_exact(2)
        .take(merges)
        .map(|pair| plan::co_location_moves(pair[0], pair[1]))
        .collect();
    let later = merges.saturating_sub(first_wave.len());
    let copies = parts.first().map_or(0, |p| p.all_nodes().count());
    let moves = first_wave.iter().sum::<usize>() + later * copies;
    let est = OpEstimates {
        migration_ms: migration_estimate_ms(largest_bytes),
        ..*est
    };
    capacity_completion_seconds(parts.len(), target, 0, &est)
        + estimated_completion_seconds(0, moves as u64, &est)
}

/// Seconds until `remaining_splits` splits (or merges) and `remaining_moves`
/// migrations are done, run in waves of the allowed concurrency, each wave taking one
/// operation's time plus a planning interval; splits and migrations are not assumed to
/// overlap. Rounded up; 0 when nothing remains.
pub fn estimated_completion_seconds(
    remaining_splits: u64,
    remaining_moves: u64,
    est: &OpEstimates,
) -> u64 {
    let split_waves = remaining_splits.div_ceil(est.concurrent_splits.max(1) as u64);
    let move_waves = remaining_moves.div_ceil(est.concurrent_migrations.max(1) as u64);
    waves_ms(split_waves, est.split_ms, est.planning_interval_ms)
        .saturating_add(waves_ms(
            move_waves,
            est.migration_ms,
            est.planning_interval_ms,
        ))
        .div_ceil(1000)
}

/// Seconds until a table goes from `partitions` to `target` partitions by splits (or
/// merges), counting the `in_flight` operations already running or planned as done
/// but taking one wave: each wave splits each partition at most once (merges at most
/// half of them) and at most `concurrent_splits` in all. Rounded up.
pub fn capacity_completion_seconds(
    partitions: usize,
    target: usize,
    in_flight: usize,
    est: &OpEstimates,
) -> u64 {
    // The operations in flight are the current wave; the others follow it.
    let waves =
        split_waves(partitions, target, est.concurrent_splits.max(1)) + u64::from(in_flight > 0);
    waves_ms(waves, est.split_ms, est.planning_interval_ms).div_ceil(1000)
}

/// Waves of splits (or merges) that take a table from `from` to `to` partitions.
fn split_waves(from: usize, to: usize, concurrency: usize) -> u64 {
    let (mut count, to) = (from.max(1), to.max(1));
    let mut waves = 0;
    // Every wave changes the count by at least one, so this takes at most
    // |to - from| iterations (bounded by the partition limit per table).
    while count != to {
        count = if count < to {
            (count * 2).min(count + concurrency).min(to)
        } else {
            (count - count / 2)
                .max(count.saturating_sub(concurrency))
                .max(to)
        };
        waves += 1;
    }
    waves
}

fn waves_ms(waves: u64, op_ms: u64, interval_ms: u64) -> u64 {
    waves.saturating_mul(op_ms.saturating_add(interval_ms))
}
