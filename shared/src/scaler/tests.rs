//! Unit tests of the Scaler's rules and their boundaries, on small clusters built with
//! committed commands. `Fx` holds one round's inputs.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::command::{MetaCommand, PartitionChange};
use crate::model::{Capacity, CapacityMode, NodeStatus, OperationKind};
use crate::placement::plan_new_table;
use crate::testkit::{cluster, create_table, provisioned};

/// "Now" of every test round.
pub(super) const NOW: u64 = 10_000_000;
/// Interval of the synthetic load reports.
pub(super) const STEP_MS: u64 = 5_000;

/// Creates an ACTIVE table placed by the placement planner with `rf` replicas.
pub(super) fn add_table(s: &mut MetaState, name: &str, capacity: Capacity, rf: usize) -> TableId {
    let t = create_table(s, name, capacity);
    let cfg = PlacementConfig {
        replication_factor: rf,
        ..PlacementConfig::default()
    };
    let plan = plan_new_table(s, t, &cfg, &BTreeSet::new()).unwrap();
    let assign = MetaCommand::AssignPartitions {
        table_id: t,
        partitions: plan.assignments,
    };
    s.apply(&assign).unwrap();
    let mut by_node: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
    for p in s.partitions_of(t) {
        for n in p.all_nodes() {
            by_node.entry(n).or_default().push(p.partition_id);
        }
    }
    for (node_id, partition_ids) in by_node {
        let ready = MetaCommand::PartitionsReady {
            node_id,
            partition_ids,
        };
        s.apply(&ready).unwrap();
    }
    s.apply(&MetaCommand::ActivateTable {
        table_id: t,
        now_ms: 1,
    })
    .unwrap();
    t
}

/// Registers an empty HEALTHY node.
pub(super) fn join(s: &mut MetaState, node_id: NodeId, zone: &str) {
    let cmd = MetaCommand::RegisterNode {
        node_id,
        endpoint: format!("http://j{node_id}"),
        peer_addr: format!("j{node_id}:7100"),
        zone: zone.into(),
        incarnation: 1,
        now_ms: 0,
    };
    s.apply(&cmd).unwrap();
}

/// Moves a table to SCALING with a new capacity.
pub(super) fn rescale(s: &mut MetaState, name: &str, capacity: Capacity) {
    let cmd = MetaCommand::UpdateCapacity {
        table_name: name.into(),
        capacity,
        now_ms: 2,
    };
    s.apply(&cmd).unwrap();
}

/// A partition's load reported every `STEP_MS` from `from_ms` to `NOW`.
pub(super) fn series(from_ms: u64, ops: impl Fn(u64) -> f64) -> Vec<LoadSample> {
    (from_ms..=NOW)
        .step_by(STEP_MS as usize)
        .map(|at_ms| LoadSample {
            at_ms,
            ops_per_sec: ops(at_ms),
        })
        .collect()
}

/// The inputs of one round.
pub(super) struct Fx {
    pub s: MetaState,
    pub loads: BTreeMap<PartitionId, PartitionLoad>,
    pub running: Vec<RunningOp>,
    pub children: Vec<SplitChildren>,
    pub unreachable: BTreeSet<NodeId>,
    pub now: u64,
}

impl Fx {
    pub fn new(s: MetaState) -> Self {
        Fx {
            s,
            loads: BTreeMap::new(),
            running: Vec::new(),
            children: Vec::new(),
            unreachable: BTreeSet::new(),
            now: NOW,
        }
    }

    pub fn plan_with(&self, cfg: ScalerConfig) -> ScalerPlan {
        let input = ScalerInput {
            state: &self.s,
            loads: &self.loads,
            running: &self.running,
            hot_split_children: &self.children,
            unreachable: &self.unreachable,
            now_ms: self.now,
        };
        plan_scaler(&input, &cfg.check().unwrap())
    }

    pub fn plan(&self) -> ScalerPlan {
        self.plan_with(ScalerConfig::default())
    }

    /// A load of `ops` sustained over the last 70 s (more than the default window).
    pub fn steady(&mut self, pid: PartitionId, ops: f64) {
        self.loads.entry(pid).or_default().samples = series(NOW - 70_000, |_| ops);
    }

    pub fn size(&mut self, pid: PartitionId, bytes: u64) {
        self.loads.entry(pid).or_default().size_bytes = bytes;
    }

    pub fn pids(&self, t: TableId) -> Vec<PartitionId> {
        self.s
            .partitions_of(t)
            .iter()
            .map(|p| p.partition_id)
            .collect()
    }
}

fn splits(plan: &ScalerPlan) -> Vec<(PartitionId, SplitReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match *a {
            ScalerAction::Split {
                partition_id,
                reason,
                ..
            } => Some((partition_id, reason)),
            _ => None,
        })
        .collect()
}

fn moves(plan: &ScalerPlan) -> Vec<(PartitionId, NodeId, NodeId, MoveReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match *a {
            ScalerAction::Move {
                partition_id,
                from,
                to,
                reason,
                ..
            } => Some((partition_id, from, to, reason)),
            _ => None,
        })
        .collect()
}

/// Three nodes, one table of 2 partitions (share 2,000 ops/s each: threshold 2,200).
fn two_partitions() -> (Fx, Vec<PartitionId>) {
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "orders", provisioned(2000, 2000), 3);
    let fx = Fx::new(s);
    let pids = fx.pids(t);
    assert_eq!(pids.len(), 2);
    (fx, pids)
}

fn on_demand() -> Capacity {
    Capacity {
        mode: CapacityMode::OnDemand,
        read_units: 0,
        write_units: 0,
    }
}

// ---- Configuration --------------------------------------------------------------

#[test]
fn defaults_pass_the_checks() {
    assert_eq!(
        ScalerConfig::default().check().unwrap(),
        CheckedScalerConfig::default()
    );
    let cfg = ScalerConfig::default();
    assert_eq!(cfg.hot_window_ms, 60_000);
    assert_eq!(cfg.hot_threshold_percent, 110);
}

#[test]
fn bad_settings_are_refused_with_the_field() {
    let check = |f: fn(&mut ScalerConfig)| {
        let mut cfg = ScalerConfig::default();
        f(&mut cfg);
        cfg.check().unwrap_err()
    };
    assert_eq!(
        check(|c| c.max_migrations_per_node = 0),
        ScalerConfigError::Zero {
            field: "max_migrations_per_node"
        }
    );
    assert!(matches!(
        check(|c| c.max_sample_gap_ms = c.hot_window_ms + 1),
        ScalerConfigError::GapLongerThanWindow { .. }
    ));
    assert_eq!(
        check(|c| c.hot_threshold_percent = 99),
        ScalerConfigError::ThresholdBelowShare(99)
    );
    assert_eq!(
        check(|c| c.merge_max_load_percent = 100),
        ScalerConfigError::MergeLimitOutOfRange {
            field: "merge_max_load_percent",
            value: 100
        }
    );
    assert!(matches!(
        check(|c| c.max_partitions_per_table = MAX_PARTITIONS_PER_TABLE + 1),
        ScalerConfigError::TooManyPartitions(_)
    ));
}

// ---- Hot ----------------------------------------------------------------------------

#[test]
fn sustained_load_above_the_threshold_splits() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 2_500.0);
    fx.steady(p[1], 1_000.0);
    let plan = fx.plan();
    match splits(&plan)[..] {
        [
            (
                pid,
                SplitReason::Hot {
                    sustained_ops_per_sec,
                    threshold_ops_per_sec,
                },
            ),
        ] => {
            assert_eq!(pid, p[0]);
            assert_eq!(sustained_ops_per_sec, 2_500.0);
            assert!((threshold_ops_per_sec - 2_200.0).abs() < 1e-9);
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn the_threshold_is_exclusive() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 2_200.0);
    fx.steady(p[1], 2_200.1);
    assert_eq!(
        splits(&fx.plan()).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![p[1]]
    );
}

#[test]
fn a_spike_or_a_dip_is_not_sustained() {
    let (mut fx, p) = two_partitions();
    // Hot throughout but one sample in the window at the threshold.
    fx.loads.entry(p[0]).or_default().samples = series(NOW - 70_000, |t| {
        if t == NOW - 30_000 { 2_000.0 } else { 9_000.0 }
    });
    // A single spike.
    fx.loads.entry(p[1]).or_default().samples = series(NOW - 70_000, |t| {
        if t == NOW - 10_000 { 9_000.0 } else { 100.0 }
    });
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn the_samples_must_cover_the_whole_window() {
    let (mut fx, p) = two_partitions();
    // Observed for 40 s only (a fresh child): not yet hot.
    fx.loads.entry(p[0]).or_default().samples = series(NOW - 40_000, |_| 9_000.0);
    // A 20 s silence in the middle.
    let mut gappy = series(NOW - 70_000, |_| 9_000.0);
    gappy.retain(|s| !(NOW - 40_000..NOW - 20_000).contains(&s.at_ms));
    fx.loads.entry(p[1]).or_default().samples = gappy;
    assert!(fx.plan().actions.is_empty());
    // Observed from exactly `max_sample_gap_ms` after the window's start: covered.
    fx.loads.entry(p[0]).or_default().samples = series(NOW - 45_000, |_| 9_000.0);
    assert_eq!(splits(&fx.plan()).len(), 1);
    // The last report older than the gap: not covered.
    fx.now = NOW + DEFAULT_MAX_SAMPLE_GAP_MS + 1;
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn tiny_tables_are_hot_only_above_the_floor() {
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "tiny", provisioned(1, 1), 3);
    let mut fx = Fx::new(s);
    let p = fx.pids(t)[0];
    fx.steady(p, DEFAULT_HOT_MIN_OPS_PER_SEC as f64);
    assert!(fx.plan().actions.is_empty(), "share 2.2 ops/s, floor 100");
    fx.steady(p, DEFAULT_HOT_MIN_OPS_PER_SEC as f64 + 1.0);
    assert_eq!(splits(&fx.plan()).len(), 1);
}

#[test]
fn on_demand_partitions_have_a_fixed_limit() {
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "ondemand", on_demand(), 3);
    let mut fx = Fx::new(s);
    let p = fx.pids(t);
    let limit = DEFAULT_ON_DEMAND_PARTITION_OPS_LIMIT as f64;
    fx.steady(p[0], limit);
    fx.steady(p[1], limit + 1.0);
    let got = splits(&fx.plan());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, p[1]);
}

// ---- Large, order and limits --------------------------------------------------------

#[test]
fn partitions_above_the_size_limit_split() {
    let (mut fx, p) = two_partitions();
    fx.size(p[0], DEFAULT_MAX_PARTITION_SIZE_BYTES);
    fx.size(p[1], DEFAULT_MAX_PARTITION_SIZE_BYTES + 1);
    assert_eq!(
        splits(&fx.plan()),
        vec![(
            p[1],
            SplitReason::Large {
                size_bytes: DEFAULT_MAX_PARTITION_SIZE_BYTES + 1,
                max_size_bytes: DEFAULT_MAX_PARTITION_SIZE_BYTES
            }
        )]
    );
}

#[test]
fn hot_before_large_highest_pressure_first_within_the_in_place_limit() {
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "orders", provisioned(1, 5000), 3);
    let mut fx = Fx::new(s);
    let p = fx.pids(t);
    // Share (5001 / 5) * 1.1 = 1100.22 ops/s.
    fx.steady(p[0], 1_500.0);
    fx.steady(p[1], 3_000.0);
    fx.size(p[2], 3 * DEFAULT_MAX_PARTITION_SIZE_BYTES);
    fx.size(p[3], 2 * DEFAULT_MAX_PARTITION_SIZE_BYTES);
    fx.steady(p[4], 2_000.0);
    let order: Vec<_> = splits(&fx.plan()).iter().map(|s| s.0).collect();
    assert_eq!(order, vec![p[1], p[4], p[0], p[2], p[3]]);
    let cfg = ScalerConfig {
        max_in_place_ops_per_cluster: 3,
        ..ScalerConfig::default()
    };
    // One split already running takes a slot.
    fx.running.push(RunningOp::Split { partition_id: p[0] });
    let plan = fx.plan_with(cfg);
    let order: Vec<_> = splits(&plan).iter().map(|s| s.0).collect();
    assert_eq!(order, vec![p[1], p[4]]);
    assert_eq!(plan.deferred, 2);
}

#[test]
fn partitions_under_an_operation_or_with_an_unusable_member_are_left_alone() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 9_000.0);
    fx.steady(p[1], 9_000.0);
    fx.running.push(RunningOp::Other { partition_id: p[0] });
    assert_eq!(
        splits(&fx.plan()).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![p[1]]
    );
    fx.unreachable.insert(2);
    assert!(
        fx.plan().actions.is_empty(),
        "every partition has a copy on node 2"
    );
    fx.unreachable.clear();
    fx.s.nodes_mut_for_tests().get_mut(&3).unwrap().status = NodeStatus::Draining;
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn committed_operations_are_running_ops_and_hold_their_partitions() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 9_000.0);
    fx.steady(p[1], 9_000.0);
    let start = |partition_id, kind| MetaCommand::StartOperation {
        partition_id,
        kind,
        requested_by: "scaler".into(),
        now_ms: 5,
    };
    fx.s.apply(&start(p[0], OperationKind::Split { split_point: None }))
        .unwrap();
    assert_eq!(
        running_ops(&fx.s),
        vec![RunningOp::Split { partition_id: p[0] }]
    );
    // Even without being told, the SPLITTING status keeps the partition out.
    assert_eq!(
        splits(&fx.plan()).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![p[1]]
    );
    join(&mut fx.s, 4, "");
    fx.s.apply(&start(p[1], OperationKind::Move { from: 2, to: 4 }))
        .unwrap();
    fx.running = running_ops(&fx.s);
    assert_eq!(
        fx.running[1],
        RunningOp::Move {
            partition_id: p[1],
            from: 2,
            to: 4
        }
    );
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn deleting_tables_are_left_alone() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 9_000.0);
    let delete = MetaCommand::DeleteTable {
        table_name: "orders".into(),
        now_ms: 5,
    };
    fx.s.apply(&delete).unwrap();
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn heat_splits_stop_at_the_partition_cap() {
    let (mut fx, p) = two_partitions();
    fx.steady(p[0], 9_000.0);
    fx.steady(p[1], 9_000.0);
    let cfg = |max| ScalerConfig {
        max_partitions_per_table: max,
        ..ScalerConfig::default()
    };
    assert_eq!(splits(&fx.plan_with(cfg(3))).len(), 1);
    assert!(fx.plan_with(cfg(2)).actions.is_empty());
}

// ---- Capacity ---------------------------------------------------------------------

#[test]
fn a_capacity_raise_splits_the_busiest_partitions_until_the_count_fits() {
    let (mut fx, p) = two_partitions();
    rescale(&mut fx.s, "orders", provisioned(2000, 3000));
    fx.steady(p[1], 500.0);
    let plan = fx.plan();
    let target = 3;
    assert_eq!(
        splits(&plan),
        vec![(
            p[1],
            SplitReason::Capacity {
                partitions: 2,
                target
            }
        )]
    );
    let t = fx.s.partition(p[0]).unwrap().table_id;
    let progress = plan.scaling[0];
    assert_eq!(progress.table_id, t);
    assert_eq!(
        (progress.partitions, progress.target, progress.in_flight),
        (2, 3, 1)
    );
    assert_eq!(progress.splits_remaining, 0);
    assert!(!progress.complete);
    // The planned split is now running: nothing more to plan, still not complete.
    fx.running.push(RunningOp::Split { partition_id: p[1] });
    let plan = fx.plan();
    assert!(plan.actions.is_empty());
    assert!(!plan.scaling[0].complete);
}

#[test]
fn growing_several_fold_takes_doubling_waves() {
    let (mut fx, _) = two_partitions();
    rescale(&mut fx.s, "orders", provisioned(2000, 8000));
    let plan = fx.plan();
    // Each partition splits at most once per round: 2 now, 4 more later.
    assert_eq!(splits(&plan).len(), 2);
    let progress = plan.scaling[0];
    assert_eq!((progress.target, progress.splits_remaining), (8, 4));
    // 2 (planned) → 4 → 8: the wave in flight then one of 4 splits.
    let est = ScalerConfig::default().op_estimates();
    let wave = (est.split_ms + est.planning_interval_ms).div_ceil(1000);
    assert_eq!(progress.estimated_completion_seconds, 2 * wave);
}

#[test]
fn an_active_table_below_its_capacity_count_is_split_too() {
    let (mut fx, _) = two_partitions();
    rescale(&mut fx.s, "orders", provisioned(2000, 3000));
    let t = fx.s.table_by_name("orders").unwrap().table_id;
    fx.s.apply(&MetaCommand::ActivateTable {
        table_id: t,
        now_ms: 3,
    })
    .unwrap();
    let plan = fx.plan();
    assert_eq!(splits(&plan).len(), 1);
    assert!(
        plan.scaling.is_empty(),
        "only SCALING tables report progress"
    );
}

#[test]
fn heat_splits_count_towards_the_capacity_target() {
    let (mut fx, p) = two_partitions();
    rescale(&mut fx.s, "orders", provisioned(2000, 3000));
    fx.steady(p[0], 9_000.0);
    let plan = fx.plan();
    assert!(matches!(splits(&plan)[..], [(pid, SplitReason::Hot { .. })] if pid == p[0]));
}

#[test]
fn a_scaling_table_at_its_count_is_complete() {
    let (mut fx, _) = two_partitions();
    rescale(&mut fx.s, "orders", provisioned(1000, 2000));
    let plan = fx.plan();
    assert!(plan.actions.is_empty());
    assert!(plan.scaling[0].complete);
    assert_eq!(plan.scaling[0].estimated_completion_seconds, 0);
}

// ---- Merges -----------------------------------------------------------------------

/// Nodes in `zones` holding a table of `write_units / 1000` partitions of `rf` copies,
/// scaled down to 1, each partition steady at `ops`.
fn shrunk(zones: &[&str], write_units: u64, rf: usize, ops: f64) -> (Fx, Vec<PartitionId>) {
    let mut s = cluster(zones);
    let t = add_table(&mut s, "orders", provisioned(1, write_units), rf);
    rescale(&mut s, "orders", provisioned(1, 1000));
    let mut fx = Fx::new(s);
    let p = fx.pids(t);
    for &pid in &p {
        fx.steady(pid, ops);
    }
    (fx, p)
}

/// One node holding a table of 4 partitions, scaled down to 1.
fn shrinking() -> (Fx, Vec<PartitionId>) {
    shrunk(&[""], 4000, 1, 10.0)
}

fn merging() -> ScalerConfig {
    ScalerConfig {
        merge_cold_partitions: true,
        ..ScalerConfig::default()
    }
}

fn merges(plan: &ScalerPlan) -> Vec<(PartitionId, PartitionId)> {
    plan.actions
        .iter()
        .filter_map(|a| match *a {
            ScalerAction::Merge { left, right, .. } => Some((left, right)),
            _ => None,
        })
        .collect()
}

#[test]
fn without_merges_the_decrease_completes() {
    let (fx, _) = shrinking();
    let plan = fx.plan_with(ScalerConfig {
        merge_cold_partitions: false,
        ..ScalerConfig::default()
    });
    assert!(plan.actions.is_empty());
    assert!(plan.scaling[0].complete);
}

#[test]
fn a_decrease_merges_disjoint_cold_adjacent_pairs() {
    let (fx, p) = shrinking();
    let plan = fx.plan_with(merging());
    assert_eq!(merges(&plan), vec![(p[0], p[1]), (p[2], p[3])]);
    assert_eq!(plan.scaling[0].in_flight, 2);
    assert!(!plan.scaling[0].complete);
}

#[test]
fn merges_need_cold_observed_partitions_on_the_same_nodes() {
    let (mut fx, p) = shrinking();
    // Merged capacity 1001 ops/s, 50%: 500.5. p0 + p1 = 510 is too busy.
    fx.steady(p[0], 500.0);
    // p3 unobserved: never merged.
    fx.loads.remove(&p[3]);
    let plan = fx.plan_with(merging());
    assert_eq!(merges(&plan), vec![(p[1], p[2])]);
    // Observed once: nothing merges yet, but the table is not done either.
    let (mut fx, p) = shrinking();
    fx.loads.clear();
    fx.steady(p[0], 1.0);
    let plan = fx.plan_with(merging());
    assert!(
        merges(&plan).is_empty() && !plan.scaling[0].complete,
        "{plan:?}"
    );
    // Too large together.
    let (mut fx, p) = shrinking();
    fx.size(p[0], DEFAULT_MAX_PARTITION_SIZE_BYTES / 2);
    fx.size(p[1], 1);
    // (p1, p2) would do too; pairs at even positions come first.
    assert_eq!(merges(&fx.plan_with(merging())), vec![(p[2], p[3])]);
    // Different replica sets.
    let (mut fx, p) = shrunk(&["", "", ""], 2000, 2, 1.0);
    let differ =
        fx.s.partition(p[0])
            .unwrap()
            .all_nodes()
            .collect::<BTreeSet<_>>()
            != fx
                .s
                .partition(p[1])
                .unwrap()
                .all_nodes()
                .collect::<BTreeSet<_>>();
    if !differ {
        // Placement put both on the same pair: make them differ.
        let q = fx.s.partition(p[1]).unwrap().clone();
        let spare = (1..=3).find(|n| !q.all_nodes().any(|m| m == *n)).unwrap();
        let change = PartitionChange {
            partition_id: q.partition_id,
            expected_epoch: q.epoch,
            primary_node_id: q.primary_node_id,
            replica_node_ids: vec![spare],
        };
        fx.s.apply(&MetaCommand::RepairPartitions {
            changes: vec![change],
        })
        .unwrap();
    }
    let plan = fx.plan_with(merging());
    assert!(merges(&plan).is_empty(), "not on the same nodes: {plan:?}");
    let colocate = MoveReason::CoLocate { with: p[0] };
    assert!(
        moves(&plan).iter().any(|m| m.0 == p[1] && m.3 == colocate),
        "a co-location step instead: {plan:?}"
    );
}

/// Applies a planned co-location step to the state (as the operations would commit it).
fn carry_out(s: &mut MetaState, action: &ScalerAction) {
    match *action {
        ScalerAction::Move {
            partition_id,
            from,
            to,
            expected_epoch,
            ..
        } => {
            let started = s.apply(&MetaCommand::StartOperation {
                partition_id,
                kind: OperationKind::Move { from, to },
                requested_by: "scaler".into(),
                now_ms: NOW,
            });
            let Ok(crate::command::MetaOutcome::OperationStarted { operation_id }) = started else {
                panic!("{started:?}");
            };
            s.apply(&MetaCommand::AdvanceOperation {
                operation_id,
                step: crate::model::OperationStep::Switching,
                progress: None,
                now_ms: NOW,
            })
            .unwrap();
            s.apply(&MetaCommand::CommitMove {
                operation_id,
                partition_id,
                from,
                to,
                expected_epoch,
                now_ms: NOW,
            })
            .unwrap();
            s.apply(&MetaCommand::FinishOperation {
                operation_id,
                status: crate::model::OperationStatus::Completed,
                now_ms: NOW,
                write_pause_ms: None,
            })
            .unwrap();
        }
        ScalerAction::HandOverPrimary {
            partition_id,
            to,
            expected_epoch,
            ..
        } => {
            let p = s.partition(partition_id).unwrap().clone();
            let replicas = p
                .replica_node_ids
                .iter()
                .map(|&r| if r == to { p.primary_node_id } else { r })
                .collect();
            s.apply(&MetaCommand::RepairPartitions {
                changes: vec![PartitionChange {
                    partition_id,
                    expected_epoch,
                    primary_node_id: to,
                    replica_node_ids: replicas,
                }],
            })
            .unwrap();
        }
        ref other => panic!("not a co-location step: {other:?}"),
    }
}

#[test]
fn pairs_apart_are_brought_together_step_by_step_then_merged() {
    // Six nodes in three zones, 2 partitions of 3 copies: placed apart.
    let (mut fx, p) = shrunk(&["a", "b", "c", "a", "b", "c"], 2000, 3, 1.0);
    let zones = |s: &MetaState, pid| {
        let p = s.partition(pid).unwrap();
        let z: BTreeSet<String> = p
            .all_nodes()
            .map(|n| s.node(n).unwrap().zone.clone())
            .collect();
        z.len()
    };
    let mut steps = 0;
    let merged = loop {
        let plan = fx.plan_with(merging());
        assert!(!plan.scaling[0].complete, "pending merge: {plan:?}");
        if let [(l, r)] = merges(&plan)[..] {
            break (l, r);
        }
        assert_eq!(plan.actions.len(), 1, "one step per round: {plan:?}");
        carry_out(&mut fx.s, &plan.actions[0]);
        steps += 1;
        assert!(steps <= 4, "at most 3 moves and a hand-over");
    };
    assert_eq!(merged, (p[0], p[1]));
    let (l, r) = (fx.s.partition(p[0]).unwrap(), fx.s.partition(p[1]).unwrap());
    assert_eq!(l.primary_node_id, r.primary_node_id);
    assert_eq!(zones(&fx.s, p[1]), 3, "the pair keeps its zone spread");
}

#[test]
fn a_decrease_that_cannot_merge_is_complete_and_rebalancing_waits_while_merging() {
    // Too large to merge: nothing to do, complete (the caller activates the table).
    let (mut fx, p) = shrinking();
    for &pid in &p {
        fx.size(pid, DEFAULT_MAX_PARTITION_SIZE_BYTES / 3);
    }
    let plan = fx.plan_with(merging());
    assert!(plan.actions.is_empty());
    assert!(plan.scaling[0].complete);
    // A new empty node gets no scale-out move while a table still merges.
    let (mut fx, _) = shrinking();
    join(&mut fx.s, 9, "");
    let plan = fx.plan_with(merging());
    assert!(moves(&plan).is_empty(), "{plan:?}");
    assert_eq!(merges(&plan).len(), 2);
}

#[test]
fn merges_wait_for_a_slot() {
    let (fx, _) = shrinking();
    let cfg = ScalerConfig {
        max_in_place_ops_per_cluster: 1,
        ..merging()
    };
    let plan = fx.plan_with(cfg);
    assert_eq!(merges(&plan).len(), 1);
    assert_eq!(plan.scaling[0].merges_remaining, 1);
    assert_eq!(plan.deferred, 1);
}

// ---- Hot children ---------------------------------------------------------------

/// Three nodes holding every copy of two "children" led by node 1 (as a split leaves
/// them), and an empty fourth node.
fn children() -> (Fx, SplitChildren) {
    let (mut fx, p) = two_partitions();
    let changes = p
        .iter()
        .map(|pid| PartitionChange {
            partition_id: *pid,
            expected_epoch: fx.s.partition(*pid).unwrap().epoch,
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        })
        .collect();
    fx.s.apply(&MetaCommand::RepairPartitions { changes })
        .unwrap();
    join(&mut fx.s, 4, "");
    let pair = SplitChildren {
        left: p[0],
        right: p[1],
        split_at_ms: NOW - 1_000,
    };
    fx.children.push(pair);
    (fx, pair)
}

#[test]
fn the_busier_child_moves_to_the_least_loaded_node() {
    let (mut fx, pair) = children();
    fx.steady(pair.left, 300.0);
    fx.steady(pair.right, 900.0);
    let plan = fx.plan();
    let got = moves(&plan);
    assert_eq!(
        got,
        vec![(
            pair.right,
            1,
            4,
            MoveReason::HotChild {
                sibling: pair.left,
                ops_per_sec: 900.0
            }
        )]
    );
    assert_eq!(plan.settled_children, vec![pair]);
}

#[test]
fn a_child_alone_on_its_node_stays() {
    let (mut fx, pair) = children();
    fx.steady(pair.right, 900.0);
    // Node 1 serves nothing else: moving the child would only move the hot spot.
    let plan = fx.plan();
    assert!(moves(&plan).iter().all(|m| m.3 == MoveReason::Rebalance));
    assert_eq!(plan.settled_children, vec![pair]);
}

#[test]
fn a_child_move_that_would_not_lower_the_peak_is_settled() {
    let (mut fx, pair) = children();
    fx.steady(pair.left, 300.0);
    fx.steady(pair.right, 900.0);
    // Node 4 already serves more than the child's node would keep.
    let mut s = fx.s.clone();
    let other = add_table(&mut s, "other", provisioned(1, 1000), 1);
    fx.s = s;
    let q = fx.pids(other)[0];
    let holder = fx.s.partition(q).unwrap().primary_node_id;
    fx.steady(q, 50_000.0);
    let plan = fx.plan();
    assert!(
        moves(&plan)
            .iter()
            .all(|m| !matches!(m.3, MoveReason::HotChild { .. })),
        "node {holder} is busy: {plan:?}"
    );
    assert_eq!(plan.settled_children, vec![pair]);
}

#[test]
fn child_moves_wait_for_data_and_slots_and_expire() {
    let (mut fx, pair) = children();
    // No report since the split yet.
    let plan = fx.plan();
    assert!(plan.settled_children.is_empty());
    assert!(moves(&plan).iter().all(|m| m.3 == MoveReason::Rebalance));
    // Reported, but node 4 is busy with two migrations already.
    fx.steady(pair.left, 300.0);
    fx.steady(pair.right, 900.0);
    fx.running.push(RunningOp::Move {
        partition_id: 999,
        from: 1,
        to: 4,
    });
    fx.running.push(RunningOp::Move {
        partition_id: 998,
        from: 2,
        to: 4,
    });
    let plan = fx.plan();
    assert!(plan.actions.is_empty(), "{plan:?}");
    assert!(plan.settled_children.is_empty());
    // Past the deadline: settled without a move.
    fx.running.clear();
    fx.now = pair.split_at_ms + DEFAULT_CHILD_MOVE_DEADLINE_MS;
    let plan = fx.plan();
    assert_eq!(plan.settled_children, vec![pair]);
}

#[test]
fn vanished_children_are_settled() {
    let (mut fx, pair) = children();
    fx.children.push(SplitChildren {
        left: 12_345,
        right: 12_346,
        split_at_ms: NOW,
    });
    fx.steady(pair.left, 300.0);
    fx.steady(pair.right, 900.0);
    let plan = fx.plan();
    assert_eq!(plan.settled_children.len(), 2);
    assert_eq!(moves(&plan).len(), 1);
}

// ---- Scale-out --------------------------------------------------------------------

/// Four nodes with a table of 40 partitions × 3 copies, and an empty fifth node.
fn joined() -> Fx {
    let mut s = cluster(&["", "", "", ""]);
    add_table(&mut s, "orders", provisioned(1, 40_000), 3);
    join(&mut s, 5, "");
    Fx::new(s)
}

#[test]
fn a_joining_node_receives_moves_within_its_limit() {
    let fx = joined();
    let plan = fx.plan();
    let got = moves(&plan);
    assert_eq!(got.len(), DEFAULT_MAX_MIGRATIONS_PER_NODE);
    assert!(got.iter().all(|m| m.2 == 5 && m.3 == MoveReason::Rebalance));
    assert!(plan.deferred > 0);
    let cfg = ScalerConfig {
        max_migrations_per_node: 100,
        max_migrations_per_cluster: 5,
        ..ScalerConfig::default()
    };
    assert_eq!(moves(&fx.plan_with(cfg)).len(), 5);
}

#[test]
fn an_empty_node_is_filled_to_the_even_share_even_within_the_tolerance() {
    // 6 copies on 3 nodes, then node 4 joins: the band [floor - 1, ceil + 1] = [0, 3]
    // already holds it, but an empty node is filled to the floor (1).
    let (mut fx, _) = two_partitions();
    join(&mut fx.s, 4, "");
    let got = moves(&fx.plan());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].2, got[0].3), (4, MoveReason::Rebalance));
    // Once it holds a copy the tolerance applies again: nothing more to do.
    let mut s = cluster(&["", "", "", ""]);
    add_table(&mut s, "orders", provisioned(2000, 2000), 3);
    assert!(Fx::new(s).plan().actions.is_empty());
}

#[test]
fn no_scale_out_move_touches_a_node_with_a_migration_in_flight() {
    let mut fx = joined();
    fx.running.push(RunningOp::Move {
        partition_id: 1,
        from: 1,
        to: 5,
    });
    let plan = fx.plan();
    assert!(moves(&plan).is_empty(), "{plan:?}");
    assert!(plan.deferred > 0);
}

#[test]
fn unreachable_nodes_take_no_part_in_scale_out() {
    let mut fx = joined();
    fx.unreachable.insert(5);
    assert!(fx.plan().actions.is_empty());
}

#[test]
fn primaries_are_handed_over_once_no_copy_needs_to_move() {
    let mut s = cluster(&["", "", ""]);
    let t = add_table(&mut s, "orders", provisioned(1, 30_000), 3);
    let changes = s
        .partitions_of(t)
        .iter()
        .map(|p| PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        })
        .collect();
    s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
    let plan = Fx::new(s).plan();
    let handovers = plan
        .actions
        .iter()
        .filter(|a| matches!(a, ScalerAction::HandOverPrimary { .. }))
        .count();
    assert_eq!(handovers, plan.actions.len());
    assert!(handovers >= 18, "{plan:?}");
}

// ---- Determinism and estimates ------------------------------------------------------

#[test]
fn plans_do_not_depend_on_the_order_of_the_inputs() {
    let (mut fx, pair) = children();
    fx.steady(pair.left, 3_000.0);
    fx.steady(pair.right, 2_900.0);
    fx.running.push(RunningOp::Other { partition_id: 77 });
    fx.running.push(RunningOp::Split { partition_id: 78 });
    let plan = fx.plan();
    assert!(!plan.actions.is_empty());
    for l in fx.loads.values_mut() {
        l.samples.reverse();
    }
    fx.running.reverse();
    fx.children.insert(0, pair);
    assert_eq!(fx.plan(), plan);
}

/// Operation timings for the estimate tests: 2 s splits, 60 s moves, 5 s rounds.
fn estimates() -> OpEstimates {
    OpEstimates {
        split_ms: 2_000,
        migration_ms: 60_000,
        planning_interval_ms: 5_000,
        concurrent_splits: 4,
        concurrent_migrations: 2,
    }
}

#[test]
fn a_decrease_estimate_counts_the_co_location_moves_and_the_bytes() {
    let est = estimates();
    assert_eq!(migration_estimate_ms(0), MIN_MIGRATION_ESTIMATE_MS);
    assert_eq!(migration_estimate_ms(10 * MIGRATION_BYTES_PER_SEC), 10_000);
    // One node: 4 partitions all together, 4 -> 2 is one merge wave and no move.
    let (fx, p) = shrinking();
    let t = fx.s.partition(p[0]).unwrap().table_id;
    let together = decrease_completion_seconds(&fx.s, t, 2, 0, &est);
    assert_eq!(together, capacity_completion_seconds(4, 2, 0, &est));
    // Six nodes, two partitions apart: three copies to move first, 10 s each.
    let mut s = cluster(&["a", "b", "c", "a", "b", "c"]);
    let t = add_table(&mut s, "orders", provisioned(1, 2000), 3);
    let apart = decrease_completion_seconds(&s, t, 1, 10 * MIGRATION_BYTES_PER_SEC, &est);
    let moves = estimated_completion_seconds(
        0,
        3,
        &OpEstimates {
            migration_ms: 10_000,
            ..est
        },
    );
    assert_eq!(apart, capacity_completion_seconds(2, 1, 0, &est) + moves);
}

#[test]
fn estimates_count_waves() {
    let est = estimates();
    assert_eq!(estimated_completion_seconds(0, 0, &est), 0);
    assert_eq!(estimated_completion_seconds(4, 0, &est), 7);
    assert_eq!(estimated_completion_seconds(5, 0, &est), 14);
    assert_eq!(estimated_completion_seconds(0, 3, &est), 130);
    assert_eq!(estimated_completion_seconds(1, 1, &est), 72);
    // 1 → 2 → 4 → 8 (doubling), then 8 → 12 → 16 (4 at a time).
    assert_eq!(capacity_completion_seconds(1, 16, 0, &est), 5 * 7);
    assert_eq!(capacity_completion_seconds(16, 16, 3, &est), 7);
    // 16 → 12 → 8 → 5: at most 4 merges at a time, and at most half the partitions.
    assert_eq!(capacity_completion_seconds(16, 5, 0, &est), 3 * 7);
    assert_eq!(capacity_completion_seconds(8, 3, 0, &est), 2 * 7);
    // Fewer partitions than the concurrency: 3 → 2 → 1.
    assert_eq!(capacity_completion_seconds(3, 1, 0, &est), 2 * 7);
}
