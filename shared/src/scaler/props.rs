//! Property tests of the Scaler on random clusters: 3–7 nodes in 1–3 zones, 1–3
//! tables (PROVISIONED or ON_DEMAND, some SCALING up or down), empty nodes joining,
//! a draining or unreachable node, random load patterns and sizes, random running
//! operations (some beyond the limits already) and hot-split children, and random
//! limits. Every plan must respect the limits, give each partition at most one
//! action, leave busy partitions alone, only target usable nodes, never overshoot a
//! capacity target, and not depend on the order of its inputs.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::tests::{Fx, NOW, STEP_MS, add_table, join, rescale, series};
use super::*;
use crate::command::{MetaCommand, PartitionChange};
use crate::model::{Capacity, CapacityMode, NodeStatus, Partition, TableStatus};
use crate::testkit::{cluster, provisioned};

/// One random round.
#[derive(Debug, Clone)]
struct Case {
    zones: Vec<usize>,
    /// (on demand, partitions, replication factor, new partition count if SCALING,
    /// every partition moved onto the first one's nodes, as splits leave them).
    tables: Vec<(bool, u64, usize, Option<u64>, bool)>,
    joining: usize,
    /// Node index drained, node index unreachable.
    draining: Option<usize>,
    unreachable: Option<usize>,
    /// Per partition (cycled): load pattern, level, size class.
    loads: Vec<(u8, usize, usize)>,
    /// (kind, partition index, node index, node index).
    running: Vec<(u8, usize, usize, usize)>,
    /// (partition index, partition index, age in steps).
    children: Vec<(usize, usize, u64)>,
    /// (per node, per cluster, in place, merges on).
    limits: (usize, usize, usize, bool),
}

fn case() -> impl Strategy<Value = Case> {
    let table = (
        any::<bool>(),
        1u64..=12,
        1usize..=3,
        prop::option::of(1u64..=16),
        any::<bool>(),
    );
    (
        prop::collection::vec(0usize..3, 3..=7),
        prop::collection::vec(table, 1..=3),
        0usize..=2,
        sometimes(0usize..9),
        sometimes(0usize..9),
        // Steady loads and cold levels weigh more, so that merges come up too.
        prop::collection::vec(
            (
                prop_oneof![2 => Just(1u8), 1 => 0u8..5],
                0usize..5,
                0..SIZES.len(),
            ),
            1..=20,
        ),
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec((0u8..4, 0usize..64, 0usize..9, 0usize..9), 1..=6),
        ],
        prop::collection::vec((0usize..64, 0usize..64, 0u64..150), 0..=3),
        (1usize..=3, 1usize..=6, 1usize..=5, any::<bool>()),
    )
        .prop_map(
            |(zones, tables, joining, draining, unreachable, loads, running, children, limits)| {
                Case {
                    zones,
                    tables,
                    joining,
                    draining,
                    unreachable,
                    loads,
                    running,
                    children,
                    limits,
                }
            },
        )
}

/// `Some` a quarter of the time.
fn sometimes(values: std::ops::Range<usize>) -> impl Strategy<Value = Option<usize>> {
    prop_oneof![3 => Just(None), 1 => values.prop_map(Some)]
}

const LEVELS: [f64; 5] = [10.0, 10.0, 600.0, 2_500.0, 9_000.0];
/// Size of each size class: mostly empty or small, sometimes above the split size.
const SIZES: [u64; 8] = [
    0,
    0,
    0,
    1 << 20,
    1 << 20,
    1 << 20,
    1 << 30,
    DEFAULT_MAX_PARTITION_SIZE_BYTES + 1,
];

fn samples(pattern: u8, level: f64) -> Vec<LoadSample> {
    match pattern {
        0 => Vec::new(),
        1 => series(NOW - 70_000, |_| level),
        2 => series(
            NOW - 70_000,
            |t| if t == NOW - 20_000 { 1.0 } else { level },
        ),
        3 => series(NOW - 70_000, |t| {
            if t % (4 * STEP_MS) == 0 { level } else { -1.0 }
        }),
        _ => series(NOW - 30_000, |_| level),
    }
}

fn build(c: &Case) -> Fx {
    let names: Vec<String> = (0..c.zones.len())
        .map(|z| format!("z{}", c.zones[z]))
        .collect();
    let zones: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = cluster(&zones);
    for (i, &(on_demand, partitions, rf, scaling, collocated)) in c.tables.iter().enumerate() {
        let capacity = if on_demand {
            Capacity {
                mode: CapacityMode::OnDemand,
                read_units: 0,
                write_units: 0,
            }
        } else {
            provisioned(1, partitions * 1000)
        };
        let name = format!("table{i}");
        let t = add_table(&mut s, &name, capacity, rf);
        if collocated {
            collocate(&mut s, t);
        }
        if let Some(n) = scaling {
            rescale(&mut s, &name, provisioned(1, n * 1000));
        }
    }
    let first_new = c.zones.len() as NodeId + 1;
    for j in 0..c.joining as NodeId {
        join(&mut s, first_new + j, "z0");
    }
    let node_count = c.zones.len() + c.joining;
    if let Some(d) = c.draining.filter(|d| *d < node_count) {
        let drain = MetaCommand::DrainNode {
            node_id: d as NodeId + 1,
            remove: false,
            now_ms: 3,
        };
        s.apply(&drain).unwrap();
    }
    let mut fx = Fx::new(s);
    let pids: Vec<PartitionId> = fx.s.partitions().map(|p| p.partition_id).collect();
    for (i, pid) in pids.iter().enumerate() {
        let (pattern, level, size) = c.loads[i % c.loads.len()];
        let load = fx.loads.entry(*pid).or_default();
        load.samples = samples(pattern, LEVELS[level]);
        load.size_bytes = SIZES[size];
    }
    let node = |i: usize| (i % node_count) as NodeId + 1;
    let pid = |i: usize| pids[i % pids.len()];
    for &(kind, p, a, b) in &c.running {
        fx.running.push(match kind {
            0 => RunningOp::Split {
                partition_id: pid(p),
            },
            1 => RunningOp::Move {
                partition_id: pid(p),
                from: node(a),
                to: node(b),
            },
            2 => RunningOp::Other {
                partition_id: pid(p),
            },
            _ => RunningOp::Merge {
                left: pid(p),
                right: pid(p + 1),
            },
        });
    }
    for &(l, r, age) in &c.children {
        fx.children.push(SplitChildren {
            left: pid(l),
            right: pid(r),
            split_at_ms: NOW - age * STEP_MS,
        });
    }
    if let Some(u) = c.unreachable.filter(|u| *u < node_count) {
        fx.unreachable.insert(node(u));
    }
    fx
}

/// Puts every partition of a table on the nodes of its first partition, led by its
/// primary: first adds those nodes to every replica set (a new primary must be a ready
/// member), reports them ready, then hands over and drops the other members.
fn collocate(s: &mut MetaState, t: TableId) {
    let first = s.partitions_of(t)[0].clone();
    let nodes: Vec<NodeId> = first.all_nodes().collect();
    let widen = |p: &Partition| PartitionChange {
        partition_id: p.partition_id,
        expected_epoch: p.epoch,
        primary_node_id: p.primary_node_id,
        replica_node_ids: nodes
            .iter()
            .copied()
            .filter(|n| *n != p.primary_node_id)
            .collect(),
    };
    let changes = s.partitions_of(t).into_iter().map(widen).collect();
    s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
    let pids: Vec<PartitionId> = s.partitions_of(t).iter().map(|p| p.partition_id).collect();
    for &node_id in &nodes {
        let ready = MetaCommand::PartitionsReady {
            node_id,
            partition_ids: pids.clone(),
        };
        s.apply(&ready).unwrap();
    }
    let narrow = |p: &Partition| PartitionChange {
        partition_id: p.partition_id,
        expected_epoch: p.epoch,
        primary_node_id: first.primary_node_id,
        replica_node_ids: first.replica_node_ids.clone(),
    };
    let changes = s.partitions_of(t).into_iter().map(narrow).collect();
    s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
}

fn config(c: &Case) -> ScalerConfig {
    let (per_node, cluster, in_place, merges) = c.limits;
    ScalerConfig {
        max_migrations_per_node: per_node,
        max_migrations_per_cluster: cluster,
        max_in_place_ops_per_cluster: in_place,
        merge_cold_partitions: merges,
        ..ScalerConfig::default()
    }
}

/// Checks every rule of the module documentation that a plan alone can show.
fn check_plan(fx: &Fx, cfg: &ScalerConfig, plan: &ScalerPlan) -> Result<(), TestCaseError> {
    let busy: BTreeSet<PartitionId> = fx.running.iter().flat_map(RunningOp::partitions).collect();
    let mut seen = BTreeSet::new();
    for a in &plan.actions {
        for pid in a.partitions() {
            prop_assert!(seen.insert(pid), "two actions on {pid}: {plan:?}");
            prop_assert!(!busy.contains(&pid), "action on busy {pid}: {a:?}");
            let p = fx.s.partition(pid).unwrap();
            check_partition(fx, p, a)?;
        }
    }
    check_limits(fx, cfg, plan)?;
    let given: BTreeSet<SplitChildren> = fx.children.iter().copied().collect();
    prop_assert!(plan.settled_children.iter().all(|c| given.contains(c)));
    check_capacity(fx, cfg, plan)
}

fn check_partition(fx: &Fx, p: &Partition, a: &ScalerAction) -> Result<(), TestCaseError> {
    let usable = |n: NodeId| {
        fx.s.node(n).unwrap().status == NodeStatus::Healthy && !fx.unreachable.contains(&n)
    };
    let table = fx.s.table(p.table_id).unwrap();
    prop_assert!(matches!(
        table.status,
        TableStatus::Active | TableStatus::Scaling
    ));
    prop_assert!(p.is_ready() && p.all_nodes().all(usable), "{a:?} on {p:?}");
    match *a {
        ScalerAction::Split { .. } => prop_assert!(p.range.low < p.range.high),
        ScalerAction::Move { from, to, .. } => {
            prop_assert!(p.all_nodes().any(|n| n == from));
            prop_assert!(!p.all_nodes().any(|n| n == to) && usable(to), "{a:?}");
        }
        ScalerAction::HandOverPrimary { from, to, .. } => {
            prop_assert_eq!(from, p.primary_node_id);
            prop_assert!(p.replica_node_ids.contains(&to));
        }
        ScalerAction::Merge { .. } => {}
    }
    Ok(())
}

fn check_limits(fx: &Fx, cfg: &ScalerConfig, plan: &ScalerPlan) -> Result<(), TestCaseError> {
    let mut running: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut planned: BTreeMap<NodeId, usize> = BTreeMap::new();
    let (mut running_in_place, mut running_moves) = (0, 0);
    for op in &fx.running {
        match *op {
            RunningOp::Move { from, to, .. } => {
                running_moves += 1;
                *running.entry(from).or_default() += 1;
                *running.entry(to).or_default() += 1;
            }
            RunningOp::Split { .. } | RunningOp::Merge { .. } => running_in_place += 1,
            RunningOp::Other { .. } => {}
        }
    }
    let moves: Vec<(NodeId, NodeId)> = plan.actions.iter().filter_map(|a| a.migration()).collect();
    for (from, to) in &moves {
        *planned.entry(*from).or_default() += 1;
        *planned.entry(*to).or_default() += 1;
    }
    for (n, k) in &planned {
        let total = k + running.get(n).copied().unwrap_or(0);
        prop_assert!(total <= cfg.max_migrations_per_node, "node {n}: {total}");
    }
    if !moves.is_empty() {
        prop_assert!(running_moves + moves.len() <= cfg.max_migrations_per_cluster);
    }
    let in_place = plan.actions.iter().filter(|a| a.is_in_place()).count();
    if in_place > 0 {
        prop_assert!(running_in_place + in_place <= cfg.max_in_place_ops_per_cluster);
    }
    Ok(())
}

/// Capacity splits never take a table past its target, counting every other change.
fn check_capacity(fx: &Fx, cfg: &ScalerConfig, plan: &ScalerPlan) -> Result<(), TestCaseError> {
    let table_of = |pid: PartitionId| fx.s.partition(pid).map(|p| p.table_id);
    for table in fx.s.tables() {
        let mut count = fx.s.partitions_of(table.table_id).len() as isize;
        for op in &fx.running {
            match *op {
                RunningOp::Split { partition_id }
                    if table_of(partition_id) == Some(table.table_id) =>
                {
                    count += 1
                }
                RunningOp::Merge { left, .. } if table_of(left) == Some(table.table_id) => {
                    count -= 1
                }
                _ => {}
            }
        }
        let mut capacity_splits = 0;
        for a in &plan.actions {
            if a.is_in_place() && table_of(a.partitions()[0]) == Some(table.table_id) {
                match a {
                    ScalerAction::Split {
                        reason: SplitReason::Capacity { .. },
                        ..
                    } => capacity_splits += 1,
                    ScalerAction::Split { .. } => count += 1,
                    _ => count -= 1,
                }
            }
        }
        let target = crate::placement::partition_count(&table.capacity, &cfg.placement) as isize;
        if capacity_splits > 0 {
            prop_assert!(
                count + capacity_splits <= target,
                "table {}: {plan:?}",
                table.table_id
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_respect_every_rule_and_limit(c in case()) {
        let fx = build(&c);
        let cfg = config(&c);
        let plan = fx.plan_with(cfg.clone());
        check_plan(&fx, &cfg, &plan)?;
    }

    #[test]
    fn plans_are_deterministic_whatever_the_input_order(c in case()) {
        let mut fx = build(&c);
        let cfg = config(&c);
        let plan = fx.plan_with(cfg.clone());
        prop_assert_eq!(&fx.plan_with(cfg.clone()), &plan);
        for load in fx.loads.values_mut() {
            load.samples.reverse();
        }
        fx.running.reverse();
        fx.children.reverse();
        fx.s = serde_json::from_str(&serde_json::to_string(&fx.s).unwrap()).unwrap();
        prop_assert_eq!(&fx.plan_with(cfg), &plan);
    }
}

/// The generator reaches every rule: over a fixed sample of cases, every kind of
/// decision is made, and some are deferred by the limits.
#[test]
fn random_cases_reach_every_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..300 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let fx = build(&c);
        let plan = fx.plan_with(config(&c));
        for a in &plan.actions {
            let kind = match a {
                ScalerAction::Split {
                    reason: SplitReason::Hot { .. },
                    ..
                } => "hot",
                ScalerAction::Split {
                    reason: SplitReason::Large { .. },
                    ..
                } => "large",
                ScalerAction::Split {
                    reason: SplitReason::Capacity { .. },
                    ..
                } => "capacity",
                ScalerAction::Merge { .. } => "merge",
                ScalerAction::Move {
                    reason: MoveReason::HotChild { .. },
                    ..
                } => "child",
                ScalerAction::Move {
                    reason: MoveReason::Rebalance,
                    ..
                } => "rebalance",
                ScalerAction::Move {
                    reason: MoveReason::CoLocate { .. },
                    ..
                } => "colocate",
                ScalerAction::HandOverPrimary { .. } => "handover",
            };
            *kinds.entry(kind).or_default() += 1;
        }
        *kinds.entry("deferred").or_default() += plan.deferred;
        *kinds.entry("settled").or_default() += plan.settled_children.len();
        *kinds.entry("complete").or_default() += plan.scaling.iter().filter(|t| t.complete).count();
    }
    eprintln!("{kinds:?}");
    for kind in [
        "hot",
        "large",
        "capacity",
        "merge",
        "child",
        "rebalance",
        "colocate",
        "handover",
        "deferred",
        "settled",
        "complete",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in {kinds:?}"
        );
    }
}
